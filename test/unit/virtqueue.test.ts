import { describe, expect, it } from 'vitest';
import { GuestMemory } from '../../src/vmm/memory.js';
import { ChainError, Virtqueue, gather, scatter, sliceFrom } from '../../src/vmm/virtio/queue.js';

const MEM = 1 << 20;
const DESC = 0x1000, AVAIL = 0x2000, USED = 0x3000;

function setup(size = 8) {
  const bytes = new Uint8Array(MEM);
  const mem = new GuestMemory([{ gpa: 0, size: MEM, bytes }]);
  const v = new DataView(bytes.buffer);
  let signals = 0;
  const vq = new Virtqueue(mem, { size, descGpa: DESC, availGpa: AVAIL, usedGpa: USED }, () => { signals++; });
  const desc = (i: number, addr: number, len: number, flags: number, next = 0) => {
    v.setBigUint64(DESC + 16 * i, BigInt(addr), true);
    v.setUint32(DESC + 16 * i + 8, len, true);
    v.setUint16(DESC + 16 * i + 12, flags, true);
    v.setUint16(DESC + 16 * i + 14, next, true);
  };
  let availIdx = 0;
  const offer = (head: number) => {
    v.setUint16(AVAIL + 4 + 2 * (availIdx % size), head, true);
    availIdx = (availIdx + 1) & 0xffff;
    v.setUint16(AVAIL + 2, availIdx, true);
  };
  return { bytes, v, vq, desc, offer, signals: () => signals };
}

describe('split virtqueue', () => {
  it('pops a readable+writable chain and completes it in the used ring', () => {
    const q = setup();
    q.bytes.set([1, 2, 3, 4], 0x10000);
    q.desc(0, 0x10000, 4, 1, 1);
    q.desc(1, 0x20000, 16, 2);
    q.offer(0);
    expect(q.vq.pending()).toBe(1);
    const c = q.vq.pop()!;
    expect(c.head).toBe(0);
    expect([...c.readable[0]!]).toEqual([1, 2, 3, 4]);
    expect(c.writable[0]!.byteLength).toBe(16);
    c.writable[0]!.set([9, 9], 0);
    q.vq.push(c.head, 2);
    q.vq.notify();
    expect(q.v.getUint16(USED + 2, true)).toBe(1);
    expect(q.v.getUint32(USED + 4, true)).toBe(0);
    expect(q.v.getUint32(USED + 8, true)).toBe(2);
    expect(q.bytes[0x20000]).toBe(9);
    expect(q.signals()).toBe(1);
    expect(q.vq.pop()).toBeNull();
  });

  it('honours VIRTQ_AVAIL_F_NO_INTERRUPT', () => {
    const q = setup();
    q.v.setUint16(AVAIL, 1, true);
    q.vq.notify();
    expect(q.signals()).toBe(0);
  });

  it('rejects a looping chain', () => {
    const q = setup();
    q.desc(0, 0x10000, 4, 1, 1);
    q.desc(1, 0x10000, 4, 1, 0);
    q.offer(0);
    expect(() => q.vq.pop()).toThrow(ChainError);
  });

  it('rejects buffers outside guest memory and out-of-range indices', () => {
    const q = setup();
    q.desc(0, MEM - 2, 4, 0);
    q.offer(0);
    expect(() => q.vq.pop()).toThrow(/outside guest memory/);
    q.desc(1, 0x10000, 4, 1, 200);
    q.offer(1);
    expect(() => q.vq.pop()).toThrow(/out of range/);
    q.offer(100);
    expect(() => q.vq.pop()).toThrow(/head 100 out of range/);
  });

  it('rejects a readable descriptor after a writable one', () => {
    const q = setup();
    q.desc(0, 0x10000, 4, 2 | 1, 1);
    q.desc(1, 0x10000, 4, 0);
    q.offer(0);
    expect(() => q.vq.pop()).toThrow(/readable descriptor after a writable/);
  });

  it('follows an indirect table when negotiated, and refuses it otherwise', () => {
    const q = setup();
    const table = 0x40000;
    q.v.setBigUint64(table, 0x10000n, true); q.v.setUint32(table + 8, 8, true); q.v.setUint16(table + 12, 1, true); q.v.setUint16(table + 14, 1, true);
    q.v.setBigUint64(table + 16, 0x20000n, true); q.v.setUint32(table + 24, 32, true); q.v.setUint16(table + 28, 2, true);
    q.desc(0, table, 32, 4);
    q.offer(0);
    const c = q.vq.pop()!;
    expect(c.readable.map((b) => b.byteLength)).toEqual([8]);
    expect(c.writable.map((b) => b.byteLength)).toEqual([32]);
    q.vq.indirect = false;
    q.offer(0);
    expect(() => q.vq.pop()).toThrow(/indirect/);
  });

  it('refuses a driver index that runs ahead by more than the queue size', () => {
    const q = setup(4);
    q.v.setUint16(AVAIL + 2, 9, true);
    expect(() => q.vq.pop()).toThrow(/available on a queue of 4/);
  });

  it('unpop gives the chain back', () => {
    const q = setup();
    q.desc(0, 0x10000, 4, 0);
    q.offer(0);
    expect(q.vq.pop()!.head).toBe(0);
    q.vq.unpop();
    expect(q.vq.pop()!.head).toBe(0);
  });
});

describe('scatter/gather helpers', () => {
  it('cross buffer boundaries', () => {
    const a = new Uint8Array(3), b = new Uint8Array(5);
    expect(scatter([a, b], 1, Uint8Array.of(1, 2, 3, 4, 5, 6))).toBe(6);
    expect([...a, ...b]).toEqual([0, 1, 2, 3, 4, 5, 6, 0]);
    expect([...gather([a, b], 2, 4)]).toEqual([2, 3, 4, 5]);
    expect(sliceFrom([a, b], 4).map((x) => x.byteLength)).toEqual([4]);
    expect(gather([a, b], 6, 10).byteLength).toBe(2);
  });
});
