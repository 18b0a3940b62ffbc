// Applying one layer (a tar, maybe compressed) onto a rootfs directory, as a
// stream: blob -> digest check -> decompress -> diff_id check -> tar-stream.
// Nothing is held whole in memory; file data goes to disk chunk by chunk.
//
// Containment: every entry name is made relative (absolute names and `..`
// components are refused), and every directory on the way to an entry is
// checked with lstat to be a real directory of the rootfs; an entry whose
// path would go through a symlink is refused, so a layer cannot plant
// `x -> /etc` and then write `x/passwd`. Existing files are unlinked before
// they are replaced and new files are created O_EXCL|O_NOFOLLOW, so a
// symlink left by a lower layer is never followed either. Hardlink targets
// get the same checks.
//
// Whiteouts (OCI image-spec layer.md): `.wh.NAME` removes NAME from lower
// layers, `.wh..wh..opq` hides every lower entry of its directory; neither
// touches what the same layer adds, wherever the marker is in the tar.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createRequire } from 'node:module';
import { Transform, pipeline, type Readable, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import tar from 'tar-stream';
import { ImageError, errCode } from './errors.js';
import type { Compression, LayerRef } from './image.js';
import type { ImageSource } from './source.js';
import { fsetxattr, lsetxattr, makedev, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from './native.js';

const P = path.posix;

// tar-stream decodes PAX record values as UTF-8, which garbles binary xattr
// values (security.capability is binary). Re-decode the SCHILY.xattr.* values
// byte for byte (latin1) so they reach setxattr unchanged.
(function patchPaxDecoding() {
  const require = createRequire(import.meta.url);
  const headers = require(P.join(P.dirname(require.resolve('tar-stream')), 'headers.js')) as {
    decodePax: (buf: Buffer) => Record<string, string>;
    huskPatched?: boolean;
  };
  if (headers.huskPatched) return;
  headers.decodePax = (buf: Buffer) => {
    const result: Record<string, string> = {};
    let b = buf;
    while (b.length) {
      let i = 0;
      while (i < b.length && b[i] !== 32) i++;
      const len = parseInt(b.subarray(0, i).toString(), 10);
      if (!len || len > b.length) return result;
      const rec = b.subarray(i + 1, len - 1);
      const eq = rec.indexOf(0x3d);
      if (eq === -1) return result;
      const key = rec.subarray(0, eq).toString('utf8');
      const value = rec.subarray(eq + 1);
      result[key] = key.startsWith('SCHILY.xattr.') ? value.toString('latin1') : value.toString('utf8');
      b = b.subarray(len);
    }
    return result;
  };
  headers.huskPatched = true;
})();

// Every chunk of a layer is a fresh Buffer that dies young, and V8 only
// collects when its (small) JS heap asks for it or external memory grew by
// about 64 MB, so peak RSS would grow by that much for nothing. A scavenge
// every few MB of layer data keeps the peak flat and costs well under 1%.
const GC_EVERY = 4 << 20;
const collectGarbage: (() => void) | undefined = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as (o?: { type: 'minor' | 'major' }) => void;
    return () => gc({ type: 'minor' });
  } catch {
    return undefined;
  }
})();

/** Passes bytes through, hashing them and counting them. */
class HashTap extends Transform {
  private hash: crypto.Hash;
  private algo: string;
  private onBytes?: (n: number) => void;
  bytes = 0;
  digest = '';
  constructor(algo: string, onBytes?: (n: number) => void) {
    super({ highWaterMark: 64 << 10 });
    this.algo = algo;
    this.onBytes = onBytes;
    this.hash = crypto.createHash(algo);
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    this.digest = `${this.algo}:${this.hash.digest('hex')}`;
    cb();
  }
}

/** The layer stream itself failed (truncated, corrupt) while an entry was read. */
class StreamFailure extends Error {
  override readonly cause: Error;
  constructor(cause: Error) {
    super(cause.message);
    this.cause = cause;
  }
}

/** The tar header fields used here (tar-stream's Header, pax typed). */
type Hdr = Omit<tar.Header, 'pax'> & { pax?: Record<string, string> | null };

interface Times {
  atime: number;
  mtime: number;
}

/** State shared by all layers of one rootfs. */
export class RootfsWriter {
  readonly root: string;
  readonly isRoot = process.getuid?.() === 0;
  /** relative paths known to be real directories ('' is the root) */
  private knownDirs = new Set<string>(['']);
  /** directory times, set once all layers are in (writing children changes them) */
  private dirTimes = new Map<string, Times>();
  /** paths the current layer has put in place */
  private layerPaths = new Set<string>();
  private what = '';
  private entryName = '';
  readonly warnings: string[] = [];

  constructor(root: string) {
    this.root = path.resolve(root);
  }

  private fail(msg: string): never {
    throw new ImageError(`${this.what}: entry ${JSON.stringify(this.entryName)}: ${msg}`);
  }

  private warn(msg: string): void {
    this.warnings.push(`${this.what}: ${this.entryName}: ${msg}`);
  }

  /** Normalizes a tar name to a rootfs-relative path; '' is the root itself. */
  private clean(name: string, kind = 'path'): string {
    if (name.includes('\0')) this.fail(`${kind} contains NUL`);
    if (name.startsWith('/')) this.fail(`absolute ${kind} would escape the rootfs`);
    const parts = name.split('/').filter((c) => c !== '' && c !== '.');
    if (parts.includes('..')) this.fail(`${kind} with ".." would escape the rootfs`);
    return parts.join('/');
  }

  private abs(rel: string): string {
    return rel === '' ? this.root : `${this.root}/${rel}`;
  }

  private lstat(rel: string): fs.Stats | undefined {
    try {
      return fs.lstatSync(this.abs(rel));
    } catch (err) {
      if (errCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Makes sure `rel` is a real directory (not a symlink) of the rootfs, all
   * the way down; creates missing ones when `create`. False if missing.
   */
  private ensureDir(rel: string, create: boolean): boolean {
    if (this.knownDirs.has(rel)) return true;
    if (!this.ensureDir(P.dirname(rel) === '.' ? '' : P.dirname(rel), create)) return false;
    const st = this.lstat(rel);
    if (st === undefined) {
      if (!create) return false;
      fs.mkdirSync(this.abs(rel), 0o755);
      this.layerPaths.add(rel);
    } else if (st.isSymbolicLink()) {
      this.fail(`path goes through the symlink /${rel}: refusing to follow it (it could lead out of the rootfs)`);
    } else if (!st.isDirectory()) {
      this.fail(`/${rel} is not a directory`);
    }
    this.knownDirs.add(rel);
    return true;
  }

  /** Removes a path (recursively for directories) and forgets what was known under it. */
  private remove(rel: string, st: fs.Stats): void {
    if (st.isDirectory()) {
      fs.rmSync(this.abs(rel), { recursive: true, force: true });
      const prefix = `${rel}/`;
      for (const d of this.knownDirs) if (d === rel || d.startsWith(prefix)) this.knownDirs.delete(d);
      for (const d of this.dirTimes.keys()) if (d === rel || d.startsWith(prefix)) this.dirTimes.delete(d);
    } else {
      fs.unlinkSync(this.abs(rel));
    }
  }

  private whiteout(parent: string, name: string): void {
    if (name === '' || name === '.' || name === '..' || name.includes('/')) this.fail('invalid whiteout name');
    if (!this.ensureDir(parent, false)) return; // nothing below to hide
    const rel = parent === '' ? name : `${parent}/${name}`;
    if (this.layerPaths.has(rel)) return; // whiteouts hide lower layers only
    const st = this.lstat(rel);
    if (st) this.remove(rel, st);
  }

  /** Opaque directory: drops everything under `dir` that this layer did not add. */
  private opaque(dir: string): void {
    this.ensureDir(dir, true);
    this.layerPaths.add(dir);
    const prune = (d: string) => {
      for (const name of fs.readdirSync(this.abs(d))) {
        const rel = d === '' ? name : `${d}/${name}`;
        if (this.layerPaths.has(rel)) {
          if (this.knownDirs.has(rel)) prune(rel);
        } else {
          const st = this.lstat(rel);
          if (st) this.remove(rel, st);
        }
      }
    };
    prune(dir);
  }

  private times(h: Hdr): Times {
    const pax = h.pax ?? {};
    const mtime = pax.mtime !== undefined && Number.isFinite(Number(pax.mtime)) ? Number(pax.mtime) : (h.mtime?.getTime() ?? 0) / 1000;
    const atime = pax.atime !== undefined && Number.isFinite(Number(pax.atime)) ? Number(pax.atime) : mtime;
    return { atime, mtime };
  }

  private xattrs(h: Hdr): [string, Buffer][] {
    const out: [string, Buffer][] = [];
    for (const [k, v] of Object.entries(h.pax ?? {})) {
      if (k.startsWith('SCHILY.xattr.')) out.push([k.slice(13), Buffer.from(v, 'latin1')]);
      else if (k.startsWith('LIBARCHIVE.xattr.')) out.push([decodeURIComponent(k.slice(17)), Buffer.from(v, 'base64')]);
    }
    return out;
  }

  private setXattrs(h: Hdr, set: (name: string, value: Buffer) => void): void {
    for (const [name, value] of this.xattrs(h)) {
      try {
        set(name, value);
      } catch (err) {
        const code = errCode(err);
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP' || code === 'EPERM') this.warn(`xattr ${name} not set (${code})`);
        else throw err;
      }
    }
  }

  private owner(h: Hdr): { uid: number; gid: number } {
    return { uid: h.uid ?? 0, gid: h.gid ?? 0 };
  }

  /** Starts a layer: the layer's own paths are tracked for whiteout rules. */
  beginLayer(what: string): void {
    this.what = what;
    this.layerPaths.clear();
  }

  /** Applies one tar entry; `data` is its content stream (always consumed). */
  async entry(h: Hdr, data: Readable): Promise<void> {
    this.entryName = h.name;
    let drained = false;
    try {
      const rel = this.clean(h.name);
      const base = P.basename(rel);
      const parent = rel.includes('/') ? P.dirname(rel) : '';
      if (base.startsWith('.wh.')) {
        if (base === '.wh..wh..opq') this.opaque(parent);
        else if (!base.startsWith('.wh..wh.')) this.whiteout(parent, base.slice(4));
        return; // other .wh..wh.* names are aufs bookkeeping: not content
      }
      const mode = (h.mode ?? 0o644) & 0o7777;
      const { uid, gid } = this.owner(h);
      const t = this.times(h);
      if (rel === '') {
        if (h.type === 'directory') {
          if (this.isRoot) fs.chownSync(this.root, uid, gid);
          fs.chmodSync(this.root, mode);
          this.setXattrs(h, (n, v) => lsetxattr(this.root, n, v));
          this.dirTimes.set('', t);
        }
        return;
      }
      this.ensureDir(parent, true);
      const abs = this.abs(rel);
      const existing = this.lstat(rel);
      this.layerPaths.add(rel);
      if (h.type === 'directory') {
        if (existing && !existing.isDirectory()) this.remove(rel, existing);
        if (!existing || !existing.isDirectory()) fs.mkdirSync(abs, 0o700);
        this.knownDirs.add(rel);
        if (this.isRoot) fs.lchownSync(abs, uid, gid);
        fs.chmodSync(abs, mode);
        this.setXattrs(h, (n, v) => lsetxattr(abs, n, v));
        this.dirTimes.set(rel, t);
        return;
      }
      if (h.type === 'link') {
        const target = this.clean(h.linkname ?? '', 'hardlink target');
        if (target === '' || !this.ensureDir(target.includes('/') ? P.dirname(target) : '', false)) {
          this.fail(`hardlink target ${JSON.stringify(h.linkname)} does not exist`);
        }
        const tst = this.lstat(target);
        if (!tst) this.fail(`hardlink target ${JSON.stringify(h.linkname)} does not exist`);
        if (tst.isDirectory()) this.fail(`hardlink target ${JSON.stringify(h.linkname)} is a directory`);
        if (target === rel) return;
        if (existing) this.remove(rel, existing);
        fs.linkSync(this.abs(target), abs);
        return;
      }
      if (existing) this.remove(rel, existing);
      switch (h.type) {
        case 'file':
        case 'contiguous-file': {
          const fd = fs.openSync(abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
          try {
            drained = true;
            const it = (data as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
            for (;;) {
              let r: IteratorResult<Buffer>;
              try {
                r = await it.next();
              } catch (err) {
                throw new StreamFailure(err as Error);
              }
              if (r.done) break;
              const chunk = r.value;
              let off = 0;
              while (off < chunk.length) off += fs.writeSync(fd, chunk, off, chunk.length - off);
            }
            if (this.isRoot) fs.fchownSync(fd, uid, gid);
            fs.fchmodSync(fd, mode);
            this.setXattrs(h, (n, v) => fsetxattr(fd, n, v, abs));
            fs.futimesSync(fd, t.atime, t.mtime);
          } finally {
            fs.closeSync(fd);
          }
          return;
        }
        case 'symlink':
          fs.symlinkSync(h.linkname ?? '', abs);
          if (this.isRoot) fs.lchownSync(abs, uid, gid);
          this.setXattrs(h, (n, v) => lsetxattr(abs, n, v));
          fs.lutimesSync(abs, t.atime, t.mtime);
          return;
        case 'character-device':
        case 'block-device':
        case 'fifo': {
          const kind = h.type === 'fifo' ? S_IFIFO : h.type === 'block-device' ? S_IFBLK : S_IFCHR;
          if (kind !== S_IFIFO && !this.isRoot) {
            this.warn('device node skipped (needs root)');
            return;
          }
          mknod(abs, kind | mode, kind === S_IFIFO ? 0n : makedev(h.devmajor ?? 0, h.devminor ?? 0));
          if (this.isRoot) fs.lchownSync(abs, uid, gid);
          fs.chmodSync(abs, mode);
          this.setXattrs(h, (n, v) => lsetxattr(abs, n, v));
          fs.lutimesSync(abs, t.atime, t.mtime);
          return;
        }
        default:
          this.warn(`entry type ${h.type} skipped`);
      }
    } catch (err) {
      if (err instanceof ImageError || err instanceof StreamFailure) throw err;
      const msg = (err as Error).message.replace(this.root, '<rootfs>');
      this.fail(msg);
    } finally {
      if (!drained) data.resume();
    }
  }

  /** Sets directory times, deepest first, once every layer is in. */
  finish(): void {
    const dirs = [...this.dirTimes.entries()].sort((a, b) => b[0].length - a[0].length);
    for (const [rel, t] of dirs) {
      const st = this.lstat(rel);
      if (st?.isDirectory()) fs.lutimesSync(this.abs(rel), t.atime, t.mtime);
    }
  }
}

/** Reads the first bytes of a blob to tell gzip and zstd from a plain tar. */
export function sniffCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

export interface ApplyLayerOptions {
  /** e.g. "layer 2/5 sha256:abc..." for messages */
  what: string;
  onBytes?: (n: number) => void;
}

/** Streams one layer blob onto the rootfs and checks its digest and diff_id. */
export async function applyLayer(src: ImageSource, layer: LayerRef, w: RootfsWriter, opts: ApplyLayerOptions): Promise<void> {
  const what = opts.what;
  const compression = layer.compression ?? sniffCompression(src.head(layer.member, 4));
  const raw = src.open(layer.member);
  const blobTap = new HashTap((layer.digest ?? 'sha256:').split(':')[0]!, opts.onBytes);
  let sinceGc = 0;
  const tarTap = new HashTap(layer.diffId.split(':')[0]!, (n) => {
    sinceGc += n;
    if (sinceGc >= GC_EVERY) {
      sinceGc = 0;
      collectGarbage?.();
    }
  });
  const stages: NodeJS.ReadWriteStream[] = [blobTap];
  if (compression === 'gzip') stages.push(zlib.createGunzip({ chunkSize: 64 << 10 }));
  else if (compression === 'zstd') {
    const z = zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream };
    if (!z.createZstdDecompress) throw new ImageError(`${what}: zstd layers need a Node with zlib zstd support`);
    stages.push(z.createZstdDecompress());
  }
  stages.push(tarTap);
  const extract = tar.extract();
  let streamError: Error | undefined;
  const chain = (pipeline as unknown as (...s: unknown[]) => Readable)(raw, ...stages, (err: Error | null) => {
    if (err) {
      streamError = err;
      extract.destroy(err);
    }
  });
  chain.pipe(extract as unknown as NodeJS.WritableStream);
  w.beginLayer(what);
  try {
    for await (const entry of extract) {
      await w.entry(entry.header as Hdr, entry as unknown as Readable);
    }
  } catch (err) {
    raw.destroy();
    if (err instanceof ImageError) throw err;
    const e = streamError ?? (err instanceof StreamFailure ? err.cause : (err as Error));
    const msg = e.message === 'Unexpected end of data' || (e as { code?: string }).code === 'Z_BUF_ERROR' ? 'unexpected end of data' : e.message;
    throw new ImageError(`${what}: truncated or corrupt layer (${msg})`);
  }
  if (!tarTap.digest) await finished(tarTap);
  if (layer.digest && blobTap.digest !== layer.digest) {
    throw new ImageError(`${what}: layer digest mismatch: expected ${layer.digest}, got ${blobTap.digest}`);
  }
  if (tarTap.digest !== layer.diffId) {
    throw new ImageError(`${what}: layer diff_id mismatch: expected ${layer.diffId}, got ${tarTap.digest}`);
  }
}
