// The driver side of FUSE, in miniature: encodes requests the way the Linux
// virtiofs driver lays them out and decodes the replies. It lets tests and
// benchmarks drive a FuseServer without a guest. Requests and reply buffers
// are cut into several segments, as descriptor chains may be.
import type { RequestBuffers } from './fuse-server.js';
import { ENTRY_OUT_SIZE, IN_HEADER_SIZE, OUT_HEADER_SIZE, align8 } from './fuse-protocol.js';

export interface FuseTarget {
  handle(req: RequestBuffers): number;
}

export interface Attr {
  ino: bigint;
  size: bigint;
  blocks: bigint;
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
  atimensec: number;
  mtimensec: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize: number;
}

export interface Entry {
  nodeid: number;
  entryValid: bigint;
  attrValid: bigint;
  attr: Attr;
}

export interface Dirent {
  ino: bigint;
  off: bigint;
  type: number;
  name: string;
  /** READDIRPLUS only (nodeid 0 = no entry). */
  entry?: Entry;
}

export interface CallResult {
  /** Bytes the server reported writing (0 = no reply). */
  written: number;
  /** fuse_out_header.error (0 or -errno); NaN when there was no reply. */
  error: number;
  unique: bigint;
  body: Buffer;
}

export interface CallOptions {
  uid?: number;
  gid?: number;
  /** Device-writable bytes offered, header included (default 64 KiB + header). */
  outSize?: number;
  /** Overrides fuse_in_header.len. */
  len?: number;
}

export function parseAttr(b: Buffer, off: number): Attr {
  return {
    ino: b.readBigUInt64LE(off),
    size: b.readBigUInt64LE(off + 8),
    blocks: b.readBigUInt64LE(off + 16),
    atime: b.readBigInt64LE(off + 24),
    mtime: b.readBigInt64LE(off + 32),
    ctime: b.readBigInt64LE(off + 40),
    atimensec: b.readUInt32LE(off + 48),
    mtimensec: b.readUInt32LE(off + 52),
    mode: b.readUInt32LE(off + 60),
    nlink: b.readUInt32LE(off + 64),
    uid: b.readUInt32LE(off + 68),
    gid: b.readUInt32LE(off + 72),
    rdev: b.readUInt32LE(off + 76),
    blksize: b.readUInt32LE(off + 80),
  };
}

export function parseEntry(b: Buffer, off = 0): Entry {
  return {
    nodeid: Number(b.readBigUInt64LE(off)),
    entryValid: b.readBigUInt64LE(off + 16),
    attrValid: b.readBigUInt64LE(off + 24),
    attr: parseAttr(b, off + 40),
  };
}

export function parseDirents(b: Buffer, plus: boolean): Dirent[] {
  const out: Dirent[] = [];
  let p = 0;
  while (p < b.length) {
    const entry = plus ? parseEntry(b, p) : undefined;
    const d = p + (plus ? ENTRY_OUT_SIZE : 0);
    const namelen = b.readUInt32LE(d + 16);
    out.push({
      ino: b.readBigUInt64LE(d),
      off: b.readBigUInt64LE(d + 8),
      type: b.readUInt32LE(d + 20),
      name: b.subarray(d + 24, d + 24 + namelen).toString('latin1'),
      ...(entry ? { entry } : {}),
    });
    p = d + align8(24 + namelen);
  }
  return out;
}

/** Cuts `buf` into segments of cycling sizes (views of one buffer). */
export function segment(buf: Uint8Array, sizes: number[]): Uint8Array[] {
  const segs: Uint8Array[] = [];
  let p = 0;
  for (let i = 0; p < buf.length; i++) {
    const n = Math.max(1, sizes[i % sizes.length]!);
    segs.push(buf.subarray(p, Math.min(buf.length, p + n)));
    p += n;
  }
  if (segs.length === 0) segs.push(buf.subarray(0, 0));
  return segs;
}

export function cstr(s: string | Uint8Array): Buffer {
  return Buffer.concat([typeof s === 'string' ? Buffer.from(s) : Buffer.from(s), Buffer.of(0)]);
}

export function u32s(...v: number[]): Buffer {
  const b = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => b.writeUInt32LE(x >>> 0, i * 4));
  return b;
}

export function u64s(...v: (number | bigint)[]): Buffer {
  const b = Buffer.alloc(v.length * 8);
  v.forEach((x, i) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(x)), i * 8));
  return b;
}

export class FuseDriver {
  private readonly target: FuseTarget;
  private nextUnique = 1n;
  /** Segment sizes the readable part of each request is cut into. */
  readSplit = [7, 33, 5, 64, 3, 4096];
  /** Segment sizes of the writable part. */
  writeSplit = [16, 100, 7, 4096, 13];
  uid = 0;
  gid = 0;

  constructor(target: FuseTarget) {
    this.target = target;
  }

  /** Sends raw request bytes (header included). */
  raw(request: Uint8Array, outSize = 64 * 1024 + OUT_HEADER_SIZE): CallResult {
    const out = new Uint8Array(outSize);
    const written = this.target.handle({
      readable: segment(Uint8Array.from(request), this.readSplit),
      writable: segment(out, this.writeSplit),
    });
    if (written > outSize) throw new Error(`server claims ${written} bytes written into ${outSize}`);
    const b = Buffer.from(out.buffer, 0, outSize);
    if (written < OUT_HEADER_SIZE) return { written, error: NaN, unique: 0n, body: Buffer.alloc(0) };
    const len = b.readUInt32LE(0);
    return {
      written,
      error: b.readInt32LE(4),
      unique: b.readBigUInt64LE(8),
      body: Buffer.from(b.subarray(OUT_HEADER_SIZE, Math.min(len, written))),
    };
  }

  request(opcode: number, nodeid: number | bigint, args: Uint8Array[], o: CallOptions = {}): Buffer {
    const argBytes = Buffer.concat(args);
    const h = Buffer.alloc(IN_HEADER_SIZE);
    h.writeUInt32LE(o.len ?? IN_HEADER_SIZE + argBytes.length, 0);
    h.writeUInt32LE(opcode, 4);
    h.writeBigUInt64LE(this.nextUnique++, 8);
    h.writeBigUInt64LE(BigInt(nodeid), 16);
    h.writeUInt32LE(o.uid ?? this.uid, 24);
    h.writeUInt32LE(o.gid ?? this.gid, 28);
    h.writeUInt32LE(4242, 32);
    return Buffer.concat([h, argBytes]);
  }

  call(opcode: number, nodeid: number | bigint, args: Uint8Array[] = [], o: CallOptions = {}): CallResult {
    return this.raw(this.request(opcode, nodeid, args, o), o.outSize);
  }

  /** Asserts success; returns the reply body. */
  ok(opcode: number, nodeid: number | bigint, args: Uint8Array[] = [], o: CallOptions = {}): Buffer {
    const r = this.call(opcode, nodeid, args, o);
    if (r.error !== 0) throw new Error(`opcode ${opcode} failed: ${r.error}`);
    return r.body;
  }
}
