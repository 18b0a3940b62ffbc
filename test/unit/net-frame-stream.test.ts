// passt's stream framing: any split of the byte stream, impossible lengths.
import { describe, expect, it } from 'vitest';
import { FrameReader, FrameStreamError, MAX_FRAME, lengthPrefix } from '../../src/vmm/devices/net/frame-stream.js';

function framed(...frames: Uint8Array[]): Uint8Array {
  return Buffer.concat(frames.flatMap((f) => [lengthPrefix(f.byteLength), f]));
}
const frame = (n: number, fill: number) => new Uint8Array(n).fill(fill);

describe('passt frame stream', () => {
  it('returns whole frames however the stream is split', () => {
    const frames = [frame(60, 1), frame(1514, 2), frame(MAX_FRAME, 3), frame(14, 4)];
    const bytes = framed(...frames);
    for (const chunk of [1, 3, 7, 1000, bytes.byteLength]) {
      const r = new FrameReader();
      const got: Uint8Array[] = [];
      for (let o = 0; o < bytes.byteLength; o += chunk) {
        r.push(bytes.subarray(o, o + chunk));
        for (let f = r.next(); f; f = r.next()) got.push(f.slice());
      }
      expect(got.map((f) => [f.byteLength, f[0]])).toEqual(frames.map((f) => [f.byteLength, f[0]]));
      expect(r.buffered).toBe(0);
    }
  });

  it('keeps a partial frame until the rest arrives, and peek does not consume', () => {
    const r = new FrameReader();
    const bytes = framed(frame(100, 9));
    r.push(bytes.subarray(0, 2));
    expect(r.next()).toBeNull();
    r.push(bytes.subarray(2, 50));
    expect(r.peek()).toBeNull();
    r.push(bytes.subarray(50));
    expect(r.peek()?.byteLength).toBe(100);
    expect(r.peek()?.byteLength).toBe(100);
    r.drop();
    expect(r.next()).toBeNull();
  });

  it('refuses a length larger than any frame or shorter than an Ethernet header', () => {
    for (const len of [MAX_FRAME + 1, 0xffffffff, 0, 13]) {
      const r = new FrameReader();
      const b = new Uint8Array(8);
      new DataView(b.buffer).setUint32(0, len);
      r.push(b);
      expect(() => r.next()).toThrow(FrameStreamError);
    }
    expect(() => lengthPrefix(MAX_FRAME + 1)).toThrow(FrameStreamError);
  });

  it('reads straight into its buffer (space/commit) across compactions', () => {
    const r = new FrameReader();
    const bytes = framed(...Array.from({ length: 40 }, (_, i) => frame(9000, i)));
    let o = 0;
    let n = 0;
    while (o < bytes.byteLength) {
      const s = r.space();
      const k = Math.min(s.byteLength, 20000, bytes.byteLength - o);
      s.set(bytes.subarray(o, o + k));
      r.commit(k);
      o += k;
      for (let f = r.next(); f; f = r.next()) { expect(f[0]).toBe(n); n++; }
    }
    expect(n).toBe(40);
  });
});
