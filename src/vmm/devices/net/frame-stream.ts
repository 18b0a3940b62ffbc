// passt's stream framing (`passt --fd`, qemu's `-netdev stream`): each
// Ethernet frame is preceded by its length as a 4-byte big-endian number.
// The reader copes with any split of the byte stream and refuses lengths
// no Ethernet frame can have instead of buffering them.

/** Largest frame we accept either way: 64 KiB MTU (passt's 65520) plus the Ethernet header, rounded up. */
export const MAX_FRAME = 65536 + 14;
/** Shortest frame: an Ethernet header. */
export const MIN_FRAME = 14;
export const LEN_SIZE = 4;

export class FrameStreamError extends Error {}

/**
 * Incremental parser: feed it whatever read(2) returned, take whole frames out.
 * Frames are views into an internal buffer valid until the next `push`.
 */
export class FrameReader {
  private buf: Uint8Array;
  private start = 0;
  private end = 0;

  constructor(capacity = 4 * (MAX_FRAME + LEN_SIZE)) {
    if (capacity < MAX_FRAME + LEN_SIZE) throw new RangeError('frame reader capacity below one frame');
    this.buf = new Uint8Array(capacity);
  }

  /** Bytes buffered but not yet returned as frames. */
  get buffered(): number { return this.end - this.start; }

  /** Free space at the end of the buffer for the next read (compacts first). */
  space(): Uint8Array {
    if (this.start > 0 && (this.start === this.end || this.buf.byteLength - this.end < MAX_FRAME + LEN_SIZE)) {
      this.buf.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    return this.buf.subarray(this.end);
  }

  /** Records that `n` bytes were written into the array `space()` returned. */
  commit(n: number): void {
    if (n < 0 || this.end + n > this.buf.byteLength) throw new RangeError('commit beyond the buffer');
    this.end += n;
  }

  /** Copies bytes in (for tests and callers that did not read into `space()`). */
  push(data: Uint8Array): void {
    let off = 0;
    while (off < data.byteLength) {
      const s = this.space();
      if (s.byteLength === 0) throw new FrameStreamError('frame reader full: take frames out first');
      const n = Math.min(s.byteLength, data.byteLength - off);
      s.set(data.subarray(off, off + n));
      this.commit(n);
      off += n;
    }
  }

  /** The length of the next frame if its length prefix is complete, else -1 (throws on an impossible length). */
  peekLength(): number {
    if (this.end - this.start < LEN_SIZE) return -1;
    const b = this.buf;
    const s = this.start;
    const len = ((b[s]! << 24) | (b[s + 1]! << 16) | (b[s + 2]! << 8) | b[s + 3]!) >>> 0;
    if (len > MAX_FRAME || len < MIN_FRAME) throw new FrameStreamError(`frame length ${len} out of range (${MIN_FRAME}..${MAX_FRAME})`);
    return len;
  }

  /** The next whole frame (a view, still buffered), or null when more bytes are needed. */
  peek(): Uint8Array | null {
    const len = this.peekLength();
    if (len < 0 || this.end - this.start < LEN_SIZE + len) return null;
    return this.buf.subarray(this.start + LEN_SIZE, this.start + LEN_SIZE + len);
  }

  /** Drops the frame `peek` returned. */
  drop(): void {
    const len = this.peekLength();
    if (len < 0 || this.end - this.start < LEN_SIZE + len) throw new RangeError('no whole frame to drop');
    this.start += LEN_SIZE + len;
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** The next whole frame, consumed (a view valid until the next `push`/`space`), or null. */
  next(): Uint8Array | null {
    const f = this.peek();
    if (f) this.drop();
    return f;
  }
}

/** The 4-byte big-endian length prefix of a frame of `len` bytes. */
export function lengthPrefix(len: number, out = new Uint8Array(LEN_SIZE)): Uint8Array {
  if (len > MAX_FRAME || len < MIN_FRAME) throw new FrameStreamError(`frame length ${len} out of range`);
  out[0] = len >>> 24; out[1] = (len >>> 16) & 0xff; out[2] = (len >>> 8) & 0xff; out[3] = len & 0xff;
  return out;
}
