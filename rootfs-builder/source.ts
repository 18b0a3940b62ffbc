// An image archive as a set of named members: a directory (OCI layout or an
// unpacked docker-archive) or an uncompressed tar of one. Members are read
// with ranged streams; JSON members are read whole but size-capped.
import fs from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { ImageError, errCode } from './errors.js';
import { indexTar, normalizeMemberName, type TarMember } from './tar-index.js';

const JSON_LIMIT = 16 << 20;
const READ_CHUNK = 64 << 10;

export interface ImageSource {
  /** the archive path, for messages */
  readonly where: string;
  has(name: string): boolean;
  /** byte size of a member, or undefined if absent */
  size(name: string): number | undefined;
  /** the first `n` bytes (fewer if the member is shorter) */
  head(name: string, n: number): Buffer;
  /** streams a member's bytes */
  open(name: string): Readable;
  close(): void;
}

/** Rejects member names that are absolute or climb (from manifests we do not trust). */
export function checkMemberName(name: string, where: string): string {
  if (typeof name !== 'string' || name === '' || name.startsWith('/') || name.split('/').includes('..') || name.includes('\0')) {
    throw new ImageError(`${where}: invalid member name ${JSON.stringify(name)}`);
  }
  return normalizeMemberName(name);
}

class DirSource implements ImageSource {
  readonly where: string;
  constructor(where: string) {
    this.where = where;
  }
  private p(name: string): string {
    return path.join(this.where, checkMemberName(name, this.where));
  }
  has(name: string): boolean {
    return this.size(name) !== undefined;
  }
  size(name: string): number | undefined {
    try {
      const st = fs.statSync(this.p(name));
      return st.isFile() ? st.size : undefined;
    } catch (err) {
      if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
  }
  head(name: string, n: number): Buffer {
    const fd = fs.openSync(this.p(name), 'r');
    try {
      const b = Buffer.alloc(n);
      return b.subarray(0, fs.readSync(fd, b, 0, n, 0));
    } finally {
      fs.closeSync(fd);
    }
  }
  open(name: string): Readable {
    return fs.createReadStream(this.p(name), { highWaterMark: READ_CHUNK });
  }
  close(): void {}
}

class TarSource implements ImageSource {
  private fd: number;
  readonly where: string;
  private members: Map<string, TarMember>;
  constructor(where: string, members: Map<string, TarMember>) {
    this.where = where;
    this.members = members;
    this.fd = fs.openSync(where, 'r');
  }
  private m(name: string): TarMember | undefined {
    return this.members.get(checkMemberName(name, this.where));
  }
  has(name: string): boolean {
    return this.m(name) !== undefined;
  }
  size(name: string): number | undefined {
    return this.m(name)?.size;
  }
  head(name: string, n: number): Buffer {
    const m = this.m(name);
    if (!m) throw new ImageError(`${this.where}: no ${name} in the archive`);
    const b = Buffer.alloc(Math.min(n, m.size));
    fs.readSync(this.fd, b, 0, b.length, m.offset);
    return b;
  }
  open(name: string): Readable {
    const m = this.m(name);
    if (!m) throw new ImageError(`${this.where}: no ${name} in the archive`);
    if (m.size === 0) return fs.createReadStream('/dev/null');
    return fs.createReadStream(this.where, { start: m.offset, end: m.offset + m.size - 1, highWaterMark: READ_CHUNK });
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

export function openSource(archive: string): ImageSource {
  let st: fs.Stats;
  try {
    st = fs.statSync(archive);
  } catch {
    throw new ImageError(`image archive ${archive} does not exist`);
  }
  if (st.isDirectory()) return new DirSource(archive);
  if (!st.isFile()) throw new ImageError(`${archive}: not a file or directory`);
  const magic = Buffer.alloc(4);
  const fd = fs.openSync(archive, 'r');
  try {
    fs.readSync(fd, magic, 0, 4, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (magic[0] === 0x1f && magic[1] === 0x8b) throw new ImageError(`${archive}: compressed archive; decompress it first (gunzip)`);
  if (magic.readUInt32LE(0) === 0xfd2fb528) throw new ImageError(`${archive}: compressed archive; decompress it first (zstd -d)`);
  return new TarSource(archive, indexTar(archive));
}

/** Reads and parses a JSON member (size-capped). */
export function readJson(src: ImageSource, name: string, what: string): { raw: Buffer; value: unknown } {
  const size = src.size(name);
  if (size === undefined) throw new ImageError(`${src.where}: ${what} ${name} is missing`);
  if (size > JSON_LIMIT) throw new ImageError(`${src.where}: ${what} ${name} is too large (${size} bytes)`);
  const raw = src.head(name, size);
  try {
    return { raw, value: JSON.parse(raw.toString('utf8')) };
  } catch (err) {
    throw new ImageError(`${src.where}: ${what} ${name} is not valid JSON: ${(err as Error).message}`);
  }
}
