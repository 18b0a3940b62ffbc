// A simulated guest driver for device unit tests: split virtqueues in a
// plain buffer that stands in for guest memory, chains made available as a
// driver would, and the device's used entries read back.
import { GuestMemory } from '../../src/vmm/memory.js';
import { Virtqueue } from '../../src/vmm/virtio/queue.js';

/** One descriptor; `flags`/`next` override what add() would write (for malformed chains). */
export interface FakeDescriptor { addr: number; len: number; write: boolean; flags?: number; next?: number }

const align = (n: number) => (n + 0xfff) & ~0xfff;
/** Buffers handed out by alloc() start here, above the rings. */
const BUFFERS_START = 0x100000;

export class FakeVirtioDriver {
  readonly bytes: Uint8Array;
  readonly v: DataView;
  readonly mem: GuestMemory;
  readonly queues: Virtqueue[] = [];
  readonly nextDesc: number[];
  private readonly availIdx: number[];
  private readonly usedSeen: number[];
  private readonly rings: { desc: number; avail: number; used: number }[] = [];
  private bufPtr = BUFFERS_START;

  constructor(readonly memSize: number, readonly qsize: number, queueCount = 2) {
    this.bytes = new Uint8Array(memSize);
    this.v = new DataView(this.bytes.buffer);
    this.mem = new GuestMemory([{ gpa: 0, size: memSize, bytes: this.bytes }]);
    this.nextDesc = new Array<number>(queueCount).fill(0);
    this.availIdx = new Array<number>(queueCount).fill(0);
    this.usedSeen = new Array<number>(queueCount).fill(0);
    let at = 0x1000;
    for (let q = 0; q < queueCount; q++) {
      const desc = at;
      const avail = desc + 16 * qsize;
      const used = align(avail + 6 + 2 * qsize);
      at = align(used + 6 + 8 * qsize);
      this.rings.push({ desc, avail, used });
      this.queues.push(new Virtqueue(this.mem, { size: qsize, descGpa: desc, availGpa: avail, usedGpa: used }, () => {}));
    }
    if (at > BUFFERS_START) throw new Error('fake driver: rings do not fit below the buffers');
  }

  alloc(n: number): number {
    const p = this.bufPtr;
    this.bufPtr += (n + 15) & ~15;
    if (this.bufPtr > this.memSize) throw new Error('fake guest out of memory');
    return p;
  }

  /** Writes a chain into queue `q`'s descriptor table and makes it available; returns its head. */
  add(q: number, bufs: FakeDescriptor[]): number {
    const { desc, avail } = this.rings[q]!;
    const head = this.nextDesc[q]! % this.qsize;
    bufs.forEach((x, i) => {
      const d = (head + i) % this.qsize;
      this.v.setBigUint64(desc + 16 * d, BigInt(x.addr), true);
      this.v.setUint32(desc + 16 * d + 8, x.len, true);
      this.v.setUint16(desc + 16 * d + 12, x.flags ?? ((x.write ? 2 : 0) | (i < bufs.length - 1 ? 1 : 0)), true);
      this.v.setUint16(desc + 16 * d + 14, x.next ?? (d + 1) % this.qsize, true);
    });
    this.nextDesc[q] = this.nextDesc[q]! + bufs.length;
    const ai = this.availIdx[q]!;
    this.v.setUint16(avail + 4 + 2 * (ai % this.qsize), head, true);
    this.availIdx[q] = (ai + 1) & 0xffff;
    this.v.setUint16(avail + 2, this.availIdx[q]!, true);
    return head;
  }

  /** The used ring's flags of queue `q` (1: the device asks for no kicks). */
  usedFlags(q: number): number {
    return this.v.getUint16(this.rings[q]!.used, true);
  }

  /** The chains the device completed on queue `q` since the last call. */
  used(q: number): { head: number; len: number }[] {
    const { used } = this.rings[q]!;
    const out = [];
    const usedIdx = this.v.getUint16(used + 2, true);
    while (this.usedSeen[q] !== usedIdx) {
      const slot = this.usedSeen[q]! % this.qsize;
      out.push({ head: this.v.getUint32(used + 4 + 8 * slot, true), len: this.v.getUint32(used + 8 + 8 * slot, true) });
      this.usedSeen[q] = (this.usedSeen[q]! + 1) & 0xffff;
    }
    return out;
  }
}
