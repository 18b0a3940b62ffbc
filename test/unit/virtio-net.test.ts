// The virtio-net device against a simulated guest driver (rings in a plain
// buffer) and a socketpair standing in for passt's end of the stream.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GuestMemory } from '../../src/vmm/memory.js';
import { Virtqueue } from '../../src/vmm/virtio/queue.js';
import { Poller, closeFd, readFd, setNonBlocking, writeFd } from '../../src/sys/io.js';
import { socketPair } from '../../src/sys/unix-socket.js';
import { NET_HDR_SIZE, VIRTIO_NET_F_MRG_RXBUF, VirtioNetDevice } from '../../src/vmm/devices/net/virtio-net.js';
import { lengthPrefix } from '../../src/vmm/devices/net/frame-stream.js';

const MEM = 8 << 20;
const QSIZE = 256;
const MTU = 65520;

class FakeDriver {
  bytes = new Uint8Array(MEM);
  v = new DataView(this.bytes.buffer);
  mem = new GuestMemory([{ gpa: 0, size: MEM, bytes: this.bytes }]);
  queues: Virtqueue[] = [];
  availIdx = [0, 0];
  usedSeen = [0, 0];
  nextDesc = [0, 0];
  bufPtr = 0x100000;
  base = [0x1000, 0x10000];
  rxBufs = new Map<number, { addr: number; len: number }[]>();
  constructor() {
    for (let q = 0; q < 2; q++) {
      const b = this.base[q]!;
      this.queues.push(new Virtqueue(this.mem, { size: QSIZE, descGpa: b, availGpa: b + 0x1000, usedGpa: b + 0x2000 }, () => {}));
    }
  }
  alloc(n: number): number { const p = this.bufPtr; this.bufPtr += (n + 15) & ~15; if (this.bufPtr > MEM) throw new Error('fake guest out of memory'); return p; }
  /** Adds a chain; `raw` descriptors are written as given (for malformed chains). */
  add(q: number, bufs: { addr: number; len: number; write: boolean; next?: number; flags?: number }[]): number {
    const b = this.base[q]!;
    const head = this.nextDesc[q]! % QSIZE;
    bufs.forEach((x, i) => {
      const d = (head + i) % QSIZE;
      this.v.setBigUint64(b + 16 * d, BigInt(x.addr), true);
      this.v.setUint32(b + 16 * d + 8, x.len, true);
      this.v.setUint16(b + 16 * d + 12, x.flags ?? ((x.write ? 2 : 0) | (i < bufs.length - 1 ? 1 : 0)), true);
      this.v.setUint16(b + 16 * d + 14, x.next ?? (d + 1) % QSIZE, true);
    });
    this.nextDesc[q] = this.nextDesc[q]! + bufs.length;
    const ai = this.availIdx[q]!;
    this.v.setUint16(b + 0x1000 + 4 + 2 * (ai % QSIZE), head, true);
    this.availIdx[q] = (ai + 1) & 0xffff;
    this.v.setUint16(b + 0x1000 + 2, this.availIdx[q]!, true);
    return head;
  }
  sendFrame(frame: Uint8Array): void {
    const a = this.alloc(NET_HDR_SIZE + frame.byteLength);
    this.bytes.fill(0, a, a + NET_HDR_SIZE);
    this.bytes.set(frame, a + NET_HDR_SIZE);
    this.add(1, [{ addr: a, len: NET_HDR_SIZE + frame.byteLength, write: false }]);
  }
  giveRx(n: number, size: number): void {
    for (let i = 0; i < n; i++) {
      const a = this.alloc(size);
      const head = this.add(0, [{ addr: a, len: size, write: true }]);
      this.rxBufs.set(head, [{ addr: a, len: size }]);
    }
  }
  used(q: number): { head: number; len: number }[] {
    const b = this.base[q]!;
    const out = [];
    const usedIdx = this.v.getUint16(b + 0x2000 + 2, true);
    while (this.usedSeen[q] !== usedIdx) {
      const slot = this.usedSeen[q]! % QSIZE;
      out.push({ head: this.v.getUint32(b + 0x2000 + 4 + 8 * slot, true), len: this.v.getUint32(b + 0x2000 + 8 + 8 * slot, true) });
      this.usedSeen[q] = (this.usedSeen[q]! + 1) & 0xffff;
    }
    return out;
  }
  /** Reassembles received frames (num_buffers from the first buffer's header). */
  received(): Uint8Array[] {
    const frames: Uint8Array[] = [];
    const used = this.used(0);
    for (let i = 0; i < used.length;) {
      const first = this.rxBufs.get(used[i]!.head)![0]!;
      const num = this.v.getUint16(first.addr + 10, true);
      const parts: Uint8Array[] = [];
      for (let k = 0; k < num; k++) {
        const u = used[i + k]!;
        const buf = this.rxBufs.get(u.head)![0]!;
        const skip = k === 0 ? NET_HDR_SIZE : 0;
        parts.push(this.bytes.slice(buf.addr + skip, buf.addr + u.len));
      }
      frames.push(Buffer.concat(parts));
      i += num;
    }
    return frames;
  }
}

let poller: Poller;
let dev: VirtioNetDevice;
let drv: FakeDriver;
let peer: number;
let logs: string[];

function ethFrame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

/** Reads what the device sent to "passt" until `n` bytes arrived. */
function readPeer(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let got = 0;
  for (let i = 0; i < 10000 && got < n; i++) {
    poller.poll(0);
    const k = readFd(peer, out.subarray(got));
    if (k > 0) got += k;
  }
  return out.subarray(0, got);
}

function writePeer(data: Uint8Array): void {
  let o = 0;
  for (let i = 0; i < 100000 && o < data.byteLength; i++) {
    const k = writeFd(peer, data.subarray(o));
    if (k > 0) o += k;
    poller.poll(0);
  }
  poller.poll(0);
}

beforeEach(() => {
  poller = new Poller();
  drv = new FakeDriver();
  const [a, b] = socketPair();
  peer = b;
  setNonBlocking(peer);
  logs = [];
  dev = new VirtioNetDevice({ fd: a, mac: '02:11:22:33:44:55', mtu: MTU });
  dev.attach({ memory: drv.mem, queue: (i) => drv.queues[i], poller, log: (m) => logs.push(m), driverFeatures: () => VIRTIO_NET_F_MRG_RXBUF });
});
afterEach(() => {
  dev.close();
  closeFd(peer);
  poller.close();
});

describe('virtio-net device', () => {
  it('announces MAC, link up and MTU in its config space', () => {
    const c = dev.readConfig();
    expect([...c.subarray(0, 6)]).toEqual([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    const v = new DataView(c.buffer);
    expect(v.getUint16(6, true)).toBe(1);
    expect(v.getUint16(10, true)).toBe(MTU);
  });

  it('sends guest frames to passt with a big-endian length prefix', () => {
    const f1 = ethFrame(60, 1);
    const f2 = ethFrame(MTU + 14, 2);
    drv.sendFrame(f1);
    drv.sendFrame(f2);
    dev.notify(1);
    const got = readPeer(8 + f1.byteLength + f2.byteLength);
    expect(Buffer.from(got.subarray(0, 4))).toEqual(Buffer.from(lengthPrefix(60)));
    expect(Buffer.from(got.subarray(4, 64))).toEqual(Buffer.from(f1));
    expect(new DataView(got.buffer, got.byteOffset).getUint32(64)).toBe(MTU + 14);
    expect(Buffer.from(got.subarray(68))).toEqual(Buffer.from(f2));
    expect(drv.used(1)).toHaveLength(2);
  });

  it('drops a frame larger than the MTU and completes malformed chains empty, then goes on', () => {
    drv.sendFrame(ethFrame(MTU + 15, 3)); // one byte over
    drv.sendFrame(ethFrame(10, 4)); // shorter than an Ethernet header
    const a = drv.alloc(64);
    // a chain whose next descriptor is out of range, and one that loops on itself
    drv.add(1, [{ addr: a, len: 64, write: false, flags: 1, next: QSIZE + 5 }]);
    const loopHead = drv.nextDesc[1]! % QSIZE;
    drv.add(1, [{ addr: a, len: 64, write: false, flags: 1, next: loopHead }]);
    // a buffer outside guest memory
    drv.add(1, [{ addr: MEM - 8, len: 4096, write: false }]);
    const good = ethFrame(100, 5);
    drv.sendFrame(good);
    dev.notify(1);
    const got = readPeer(104);
    expect(Buffer.from(got.subarray(4))).toEqual(Buffer.from(good));
    const used = drv.used(1);
    expect(used).toHaveLength(6);
    expect(used.every((u) => u.len === 0)).toBe(true);
    const s = dev.stats();
    expect(s.txDropped).toBe(2);
    expect(s.badChains).toBe(3);
    expect(s.txFrames).toBe(1);
  });

  it('fills mergeable rx buffers: a 64 KiB frame spans several, small frames one each', () => {
    drv.giveRx(64, 4096);
    dev.notify(0);
    const big = ethFrame(MTU + 14, 6);
    const small = ethFrame(42, 7);
    writePeer(Buffer.concat([lengthPrefix(big.byteLength), big, lengthPrefix(small.byteLength), small]));
    const frames = drv.received();
    expect(frames.map((f) => f.byteLength)).toEqual([big.byteLength, small.byteLength]);
    expect(Buffer.from(frames[0]!)).toEqual(Buffer.from(big));
    expect(Buffer.from(frames[1]!)).toEqual(Buffer.from(small));
  });

  it('holds frames until the guest posts buffers', () => {
    const f = ethFrame(1514, 8);
    writePeer(Buffer.concat([lengthPrefix(f.byteLength), f]));
    expect(drv.received()).toEqual([]);
    drv.giveRx(1, 1024); // not enough for the frame: nothing is taken
    dev.notify(0);
    expect(drv.received()).toEqual([]);
    drv.giveRx(2, 1024);
    dev.notify(0);
    const frames = drv.received();
    expect(frames).toHaveLength(1);
    expect(Buffer.from(frames[0]!)).toEqual(Buffer.from(f));
  });

  it('a length beyond any frame from passt takes the link down without crashing', () => {
    drv.giveRx(4, 4096);
    dev.notify(0);
    const bad = new Uint8Array(8);
    new DataView(bad.buffer).setUint32(0, 0x7fffffff);
    writePeer(bad);
    expect(logs.join('\n')).toMatch(/link down: malformed stream from passt: frame length 2147483647/);
    expect(dev.stats().linkDown).toBe(1);
    drv.sendFrame(ethFrame(60, 9));
    dev.notify(1);
    expect(dev.stats().txDropped).toBe(1);
    expect(drv.used(1)).toHaveLength(1);
  });

  it('passt going away in the middle of a frame is logged; the device keeps serving the guest', () => {
    drv.giveRx(4, 4096);
    dev.notify(0);
    const f = ethFrame(3000, 10);
    const bytes = Buffer.concat([lengthPrefix(f.byteLength), f]);
    writePeer(bytes.subarray(0, 1000));
    closeFd(peer);
    peer = socketPair()[0]; // something for afterEach to close
    for (let i = 0; i < 10; i++) poller.poll(0);
    expect(logs.join('\n')).toMatch(/link down: passt closed the connection/);
    expect(drv.received()).toEqual([]);
    drv.sendFrame(ethFrame(60, 11));
    dev.notify(1);
    expect(drv.used(1)).toHaveLength(1);
    expect(dev.stats().txDropped).toBe(1);
  });
});
