// Gathering a FUSE request out of a descriptor chain and scattering the
// reply back. The chain's buffers are views into guest memory that another
// vCPU may rewrite at any moment, so the header and arguments are copied once
// into private memory before they are validated or used (no double fetch);
// only WRITE payloads are used in place.
import { SysError } from '../../../sys/libc.js';
import { IN_HEADER_SIZE, OUT_HEADER_SIZE, Op, WRITE_IN_SIZE } from './fuse-protocol.js';

const EINVAL = 22;
const E2BIG = 7;
const ENAMETOOLONG = 36;
const ERANGE = 34;
const NAME_MAX = 255;
const PATH_MAX = 4096;

/** Largest argument block of any request but WRITE (SETXATTR: 64 KiB value + name). */
export const MAX_ARGS = 128 * 1024;

/** A request the server could not even parse: reply `errno` to `unique`. */
export class BadRequest extends Error {
  readonly unique: bigint;
  readonly errno: number;
  readonly opcode: number;
  constructor(unique: bigint, opcode: number, errno: number, why: string) {
    super(why);
    this.unique = unique;
    this.errno = errno;
    this.opcode = opcode;
  }
}

function totalLength(segs: Uint8Array[]): number {
  let n = 0;
  for (const s of segs) n += s.length;
  return n;
}

/** Copies `len` bytes starting at chain offset `start` into `dst`. */
function gather(segs: Uint8Array[], start: number, dst: Uint8Array): void {
  let skip = start;
  let pos = 0;
  for (const s of segs) {
    if (pos === dst.length) break;
    if (skip >= s.length) {
      skip -= s.length;
      continue;
    }
    const n = Math.min(s.length - skip, dst.length - pos);
    dst.set(s.subarray(skip, skip + n), pos);
    pos += n;
    skip = 0;
  }
}

/** Views (no copy) of the chain bytes [start, start+len). */
function slice(segs: Uint8Array[], start: number, len: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let skip = start;
  let left = len;
  for (const s of segs) {
    if (left === 0) break;
    if (skip >= s.length) {
      skip -= s.length;
      continue;
    }
    const n = Math.min(s.length - skip, left);
    if (n > 0) out.push(s.subarray(skip, skip + n));
    left -= n;
    skip = 0;
  }
  return out;
}

export class Request {
  readonly opcode: number;
  readonly unique: bigint;
  /** -1 when the guest sent a nodeid no JS number can hold (never a valid one). */
  readonly nodeid: number;
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** Private copy of the argument bytes (for WRITE only the fuse_write_in). */
  readonly args: Buffer;
  private readonly readable: Uint8Array[];
  private readonly argsEnd: number;

  constructor(readable: Uint8Array[]) {
    const total = totalLength(readable);
    const hdr = Buffer.alloc(IN_HEADER_SIZE);
    gather(readable, 0, hdr);
    const unique = total >= 16 ? hdr.readBigUInt64LE(8) : 0n;
    const opcode = total >= 8 ? hdr.readUInt32LE(4) : 0;
    if (total < IN_HEADER_SIZE) throw new BadRequest(unique, opcode, EINVAL, 'request shorter than fuse_in_header');
    const len = hdr.readUInt32LE(0);
    if (len < IN_HEADER_SIZE || len > total) throw new BadRequest(unique, opcode, EINVAL, `bad request length ${len}`);
    // Extensions (7.38 security context, supplementary groups) trail the
    // arguments; we negotiate none, but must not read them as arguments.
    const extLen = hdr.readUInt16LE(36) * 8;
    if (extLen > len - IN_HEADER_SIZE) throw new BadRequest(unique, opcode, EINVAL, 'bad extension length');
    this.opcode = opcode;
    this.unique = unique;
    this.nodeid = u64ToNumber(hdr.readBigUInt64LE(16));
    this.uid = hdr.readUInt32LE(24);
    this.gid = hdr.readUInt32LE(28);
    this.pid = hdr.readUInt32LE(32);
    this.readable = readable;
    this.argsEnd = len - extLen;
    let argLen = this.argsEnd - IN_HEADER_SIZE;
    if (opcode === Op.WRITE) argLen = Math.min(argLen, WRITE_IN_SIZE);
    else if (argLen > MAX_ARGS) throw new BadRequest(unique, opcode, E2BIG, 'arguments too large');
    this.args = Buffer.alloc(argLen);
    gather(readable, IN_HEADER_SIZE, this.args);
  }

  /** Throws EINVAL unless the arguments hold at least `n` bytes. */
  need(n: number): void {
    if (this.args.length < n) throw new SysError('request', EINVAL);
  }

  /** WRITE payload: `len` bytes after `skip` argument bytes, as views into guest memory. */
  payload(skip: number, len: number): Uint8Array[] {
    const start = IN_HEADER_SIZE + skip;
    if (len < 0 || start + len > this.argsEnd) throw new SysError('request', EINVAL);
    return slice(this.readable, start, len);
  }

  /** The NUL-terminated string at `off`: returns it (NUL included) and the offset after it. */
  cstring(off: number, max = PATH_MAX): { bytes: Buffer; next: number } {
    const end = off <= this.args.length ? this.args.indexOf(0, off) : -1;
    if (end < 0) throw new SysError('request', EINVAL);
    if (end - off >= max) throw new SysError('request', max === PATH_MAX ? ENAMETOOLONG : ERANGE);
    return { bytes: this.args.subarray(off, end + 1), next: end + 1 };
  }

  /**
   * A directory entry name at `off`: one path component, never "..", never
   * empty, never containing '/'. "." is allowed (it names the directory
   * itself and cannot leave it).
   */
  name(off: number): { bytes: Buffer; next: number } {
    const s = this.cstring(off, PATH_MAX);
    const n = s.bytes.length - 1;
    if (n === 0 || s.bytes.indexOf(0x2f) !== -1 || (n === 2 && s.bytes[0] === 0x2e && s.bytes[1] === 0x2e)) {
      throw new SysError('name', EINVAL);
    }
    if (n > NAME_MAX) throw new SysError('name', ENAMETOOLONG);
    return s;
  }

  u32(off: number): number {
    this.need(off + 4);
    return this.args.readUInt32LE(off);
  }

  u64(off: number): bigint {
    this.need(off + 8);
    return this.args.readBigUInt64LE(off);
  }

  /** A u64 that must fit a JS number (node ids, file handles); -1 otherwise. */
  id(off: number): number {
    return u64ToNumber(this.u64(off));
  }
}

export function u64ToNumber(v: bigint): number {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : -1;
}

/** Writes the reply into the chain's device-writable buffers. */
export class Reply {
  readonly capacity: number;
  private readonly segs: Uint8Array[];

  constructor(writable: Uint8Array[]) {
    this.segs = writable;
    this.capacity = totalLength(writable);
  }

  /** Room for the reply body after the out header. */
  get bodyCapacity(): number {
    return Math.max(0, this.capacity - OUT_HEADER_SIZE);
  }

  /** Writes header + body; returns the bytes written, or 0 if even that does not fit. */
  send(unique: bigint, error: number, body: Uint8Array | null): number {
    const len = OUT_HEADER_SIZE + (body ? body.length : 0);
    if (len > this.capacity) return 0;
    this.header(unique, error, len - OUT_HEADER_SIZE);
    if (body && body.length > 0) this.scatter(OUT_HEADER_SIZE, body);
    return len;
  }

  /** Writes only the out header, for bodies already placed with bodyViews(); 0 if it does not fit. */
  header(unique: bigint, error: number, bodyLen: number): number {
    if (OUT_HEADER_SIZE + bodyLen > this.capacity) return 0;
    const h = Buffer.alloc(OUT_HEADER_SIZE);
    h.writeUInt32LE(OUT_HEADER_SIZE + bodyLen, 0);
    h.writeInt32LE(error, 4);
    h.writeBigUInt64LE(unique, 8);
    this.scatter(0, h);
    return OUT_HEADER_SIZE + bodyLen;
  }

  /** Views of the first `len` body bytes in guest memory, for zero-copy reads. */
  bodyViews(len: number): Uint8Array[] {
    return slice(this.segs, OUT_HEADER_SIZE, Math.min(len, this.bodyCapacity));
  }

  private scatter(start: number, src: Uint8Array): void {
    let skip = start;
    let pos = 0;
    for (const s of this.segs) {
      if (pos === src.length) break;
      if (skip >= s.length) {
        skip -= s.length;
        continue;
      }
      const n = Math.min(s.length - skip, src.length - pos);
      s.set(src.subarray(pos, pos + n), skip);
      pos += n;
      skip = 0;
    }
  }
}
