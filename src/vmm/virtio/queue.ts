// Split virtqueue (virtio 1.x §2.7), device side. Everything read from the
// rings is guest-controlled: indices are bounded, chains are length- and
// loop-checked, and a bad chain is reported as an error, never followed.
import { GuestMemory, GuestMemoryError, dv } from '../memory.js';

const VIRTQ_DESC_F_NEXT = 1;
const VIRTQ_DESC_F_WRITE = 2;
const VIRTQ_DESC_F_INDIRECT = 4;
const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Upper bound for the bytes of one chain (guards against absurd chains). */
const MAX_CHAIN_BYTES = 64 * 1024 * 1024;

export class QueueError extends Error {}

/** One descriptor chain: guest buffers the device reads, then the ones it writes. */
export interface DescriptorChain {
  readonly head: number;
  readonly readable: Uint8Array[];
  readonly writable: Uint8Array[];
}

export interface QueueLayout {
  size: number;
  descGpa: number;
  availGpa: number;
  usedGpa: number;
}

export class Virtqueue {
  readonly size: number;
  private readonly desc: DataView;
  private readonly avail: DataView;
  private readonly used: DataView;
  private readonly memory: GuestMemory;
  /** next avail ring slot to consume (free-running u16) */
  lastAvail: number;
  private usedIdx: number;
  private readonly signalGuest: () => void;
  indirect = true;

  constructor(memory: GuestMemory, layout: QueueLayout, signalGuest: () => void, lastAvail = 0) {
    const { size } = layout;
    if (size < 1 || size > 32768 || (size & (size - 1)) !== 0) throw new QueueError(`bad queue size ${size}`);
    this.size = size;
    this.memory = memory;
    this.desc = dv(memory.slice(layout.descGpa, 16 * size));
    this.avail = dv(memory.slice(layout.availGpa, 6 + 2 * size));
    this.used = dv(memory.slice(layout.usedGpa, 6 + 8 * size));
    this.lastAvail = lastAvail & 0xffff;
    this.usedIdx = this.used.getUint16(2, true);
    this.signalGuest = signalGuest;
  }

  /** Number of chains the driver has made available and we have not taken. */
  pending(): number {
    return (this.avail.getUint16(2, true) - this.lastAvail) & 0xffff;
  }

  /**
   * Takes the next available chain, or returns null when there is none.
   * A malformed chain throws QueueError after being consumed (the caller
   * should complete it with len 0 via `push(err.head, 0)`).
   */
  pop(): DescriptorChain | null {
    const availIdx = this.avail.getUint16(2, true);
    if (availIdx === this.lastAvail) return null;
    if (((availIdx - this.lastAvail) & 0xffff) > this.size) {
      throw new QueueError(`driver made ${(availIdx - this.lastAvail) & 0xffff} buffers available on a queue of ${this.size}`);
    }
    const head = this.avail.getUint16(4 + 2 * (this.lastAvail % this.size), true);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    try {
      return this.walk(head);
    } catch (err) {
      const e = new ChainError(head, err instanceof Error ? err.message : String(err));
      throw e;
    }
  }

  private walk(head: number): DescriptorChain {
    if (head >= this.size) throw new QueueError(`descriptor head ${head} out of range`);
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    let table = this.desc;
    let tableSize = this.size;
    let idx = head;
    let seen = 0;
    let total = 0;
    let indirectUsed = false;
    for (;;) {
      if (idx >= tableSize) throw new QueueError(`descriptor index ${idx} out of range`);
      if (++seen > tableSize) throw new QueueError('descriptor chain loops');
      const o = idx * 16;
      // Two 32-bit halves, not getBigUint64: a BigInt per descriptor is garbage on the hot path.
      const addrHigh = table.getUint32(o + 4, true);
      if (addrHigh > 0x1fffff) throw new QueueError('descriptor address out of range');
      const addr = addrHigh * 0x1_0000_0000 + table.getUint32(o, true);
      const len = table.getUint32(o + 8, true);
      const flags = table.getUint16(o + 12, true);
      const next = table.getUint16(o + 14, true);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        if (!this.indirect || indirectUsed || table !== this.desc) throw new QueueError('unexpected indirect descriptor');
        if (len === 0 || len % 16 !== 0 || len / 16 > 32768) throw new QueueError(`bad indirect table length ${len}`);
        table = dv(this.memory.slice(addr, len));
        tableSize = len / 16;
        idx = 0;
        seen = 0;
        indirectUsed = true;
        continue;
      }
      total += len;
      if (total > MAX_CHAIN_BYTES) throw new QueueError('descriptor chain too long');
      const buf = this.memory.slice(addr, len);
      if (flags & VIRTQ_DESC_F_WRITE) writable.push(buf);
      else {
        if (writable.length) throw new QueueError('readable descriptor after a writable one');
        readable.push(buf);
      }
      if (!(flags & VIRTQ_DESC_F_NEXT)) break;
      idx = next;
    }
    return { head, readable, writable };
  }

  /** Gives back the chain just popped, untouched (the device found nothing to put in it). */
  unpop(): void {
    this.lastAvail = (this.lastAvail - 1) & 0xffff;
  }

  /**
   * Returns a chain to the driver with `len` bytes written. With `publish`
   * false the entry is written but the driver does not see it until
   * `publish()`: a frame spread over several chains (virtio-net's mergeable
   * buffers) must appear all at once, or a driver polling concurrently finds
   * its first buffer without the rest and drops the frame.
   */
  push(head: number, len: number, publish = true): void {
    const slot = this.usedIdx % this.size;
    this.used.setUint32(4 + 8 * slot, head, true);
    this.used.setUint32(8 + 8 * slot, len, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    if (publish) this.publish();
  }

  /** Makes every entry pushed so far visible to the driver. */
  publish(): void {
    // x86 keeps stores in order; the ring entries are visible before the index.
    this.used.setUint16(2, this.usedIdx, true);
  }

  /**
   * Asks the driver not to kick (used ring flag NO_NOTIFY) or to kick again.
   * Meant for a device that is working through the queue anyway: the driver
   * then adds buffers without an exit per buffer. Only a hint (the driver
   * may kick regardless); see kicksOnAndEmpty() for turning it off safely.
   */
  suppressKicks(on: boolean): void {
    this.used.setUint16(0, on ? VIRTQ_USED_F_NO_NOTIFY : 0, true);
  }

  /**
   * Turns kicks back on and tells whether the queue is still empty. A driver
   * that added a buffer while kicks were off did not kick: the store of the
   * flag must be visible before the avail index is read again, or that
   * buffer waits for a kick that never comes. When this returns false the
   * caller must service the queue (and may suppress kicks again).
   */
  kicksOnAndEmpty(): boolean {
    this.suppressKicks(false);
    fullFence();
    return this.pending() === 0;
  }

  /** Interrupts the driver unless it asked not to be. */
  notify(): void {
    // The used index we just stored must be visible before we read the flag:
    // x86 may let this load pass that store, and a driver that re-enables
    // interrupts at that moment then sees neither new buffers nor an interrupt
    // (a lost wake-up that stalls the queue for good; virtio 1.x §2.7.7.2).
    fullFence();
    if (this.avail.getUint16(0, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) return;
    this.signalGuest();
  }
}

const fenceCell = new Int32Array(new SharedArrayBuffer(4));
/** A full memory barrier: a locked read-modify-write orders every earlier store before every later load. */
function fullFence(): void {
  Atomics.exchange(fenceCell, 0, 0);
}

/** A malformed chain; `head` must still be returned to the driver. */
export class ChainError extends QueueError {
  readonly head: number;
  constructor(head: number, message: string) {
    super(message);
    this.head = head;
  }
}

export { GuestMemoryError };

/**
 * Services every chain the driver has made available: `handle` returns the
 * bytes it wrote into the chain. A malformed chain is completed empty and
 * reported through `onBadChain`; a broken ring (index or ring address out of
 * bounds) stops the loop and is logged. The driver is interrupted every
 * `notifyEvery` chains and once at the end. Returns the chains completed.
 */
export function serviceQueue(
  vq: Virtqueue,
  handle: (chain: DescriptorChain) => number,
  opts: { label: string; log: (msg: string) => void; onBadChain?: () => void; notifyEvery?: number },
): number {
  const every = opts.notifyEvery ?? Infinity;
  let done = 0;
  let unsignalled = 0;
  for (;;) {
    let chain: DescriptorChain | null;
    let written = 0;
    try {
      chain = vq.pop();
      if (!chain) break;
      written = handle(chain);
    } catch (err) {
      if (err instanceof ChainError) {
        opts.onBadChain?.();
        opts.log(`${opts.label}: bad chain: ${err.message}`);
        chain = { head: err.head, readable: [], writable: [] };
      } else if (err instanceof QueueError || err instanceof GuestMemoryError) {
        opts.log(`${opts.label}: queue broken: ${err.message}`);
        break;
      } else {
        throw err;
      }
    }
    vq.push(chain.head, written);
    done++;
    if (++unsignalled >= every) { vq.notify(); unsignalled = 0; }
  }
  if (unsignalled) vq.notify();
  return done;
}

/** Total byte length of a list of buffers. */
export function totalLength(bufs: Uint8Array[]): number {
  let n = 0;
  for (const b of bufs) n += b.byteLength;
  return n;
}

/** Copies up to `len` bytes starting at byte `offset` of a scattered buffer list. */
export function gather(bufs: Uint8Array[], offset: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let pos = 0;
  let skip = offset;
  for (const b of bufs) {
    if (pos >= len) break;
    if (skip >= b.byteLength) { skip -= b.byteLength; continue; }
    const part = b.subarray(skip, skip + (len - pos));
    out.set(part, pos);
    pos += part.byteLength;
    skip = 0;
  }
  return pos === len ? out : out.subarray(0, pos);
}

/** Copies bytes from `offset` of a scattered buffer list into `out` (no allocation); returns bytes copied. */
export function gatherInto(bufs: Uint8Array[], offset: number, out: Uint8Array): number {
  let pos = 0;
  let skip = offset;
  for (const b of bufs) {
    if (pos >= out.byteLength) break;
    if (skip >= b.byteLength) { skip -= b.byteLength; continue; }
    const part = b.subarray(skip, skip + (out.byteLength - pos));
    out.set(part, pos);
    pos += part.byteLength;
    skip = 0;
  }
  return pos;
}

/** Copies `data` into a scattered buffer list starting at `offset`; returns bytes copied. */
export function scatter(bufs: Uint8Array[], offset: number, data: Uint8Array): number {
  let pos = 0;
  let skip = offset;
  for (const b of bufs) {
    if (pos >= data.byteLength) break;
    if (skip >= b.byteLength) { skip -= b.byteLength; continue; }
    const n = Math.min(b.byteLength - skip, data.byteLength - pos);
    b.set(data.subarray(pos, pos + n), skip);
    pos += n;
    skip = 0;
  }
  return pos;
}

/** Views of the part of a scattered buffer list from `offset` on (no copy). */
export function sliceFrom(bufs: Uint8Array[], offset: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = offset;
  for (const b of bufs) {
    if (skip >= b.byteLength) { skip -= b.byteLength; continue; }
    out.push(skip ? b.subarray(skip) : b);
    skip = 0;
  }
  return out;
}
