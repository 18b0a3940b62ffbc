// The few libc calls layer extraction needs that Node lacks: xattrs without
// following symlinks, and mknod for device nodes and FIFOs. koffi is loaded
// on first use only: it costs about 15 MB of RSS, and most layers carry no
// xattrs or device nodes.
import { createRequire } from 'node:module';
import os from 'node:os';
import type koffiType from 'koffi';

type KoffiFn = (...args: unknown[]) => unknown;
let koffi: typeof koffiType | undefined;
let fns: Record<'lsetxattr' | 'fsetxattr' | 'llistxattr' | 'lgetxattr' | 'mknod', KoffiFn> | undefined;

function lib() {
  if (!fns) {
    koffi = createRequire(import.meta.url)('koffi') as typeof koffiType;
    const libc = koffi.load('libc.so.6');
    fns = {
      lsetxattr: libc.func('int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
      fsetxattr: libc.func('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)'),
      llistxattr: libc.func('intptr_t llistxattr(const char *path, void *list, size_t size)'),
      lgetxattr: libc.func('intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)'),
      mknod: libc.func('int mknod(const char *path, uint32_t mode, uint64_t dev)'),
    };
  }
  return fns;
}

const names = new Map<number, string>(Object.entries(os.constants.errno).map(([n, v]) => [v, n]));

/** A failed call, shaped like Node's fs errors (code = errno name). */
export class NativeError extends Error {
  readonly code: string;
  constructor(call: string, target: string) {
    const errno = koffi!.errno();
    const code = names.get(errno) ?? `errno ${errno}`;
    super(`${call} ${target}: ${code}`);
    this.code = code;
  }
}

export function lsetxattr(path: string, name: string, value: Buffer): void {
  if ((lib().lsetxattr(path, name, value, value.length, 0) as number) < 0) throw new NativeError('lsetxattr', path);
}

export function fsetxattr(fd: number, name: string, value: Buffer, what: string): void {
  if ((lib().fsetxattr(fd, name, value, value.length, 0) as number) < 0) throw new NativeError('fsetxattr', what);
}

/** All xattrs of a path (not following a final symlink), name -> value. */
export function lgetxattrs(path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const size = Number(lib().llistxattr(path, null, 0));
  if (size < 0) throw new NativeError('llistxattr', path);
  if (size === 0) return out;
  const list = Buffer.alloc(size);
  const n = Number(lib().llistxattr(path, list, size));
  if (n < 0) throw new NativeError('llistxattr', path);
  for (const name of list.subarray(0, n).toString('utf8').split('\0').filter(Boolean)) {
    const len = Number(lib().lgetxattr(path, name, null, 0));
    if (len < 0) continue;
    const v = Buffer.alloc(len);
    const got = Number(lib().lgetxattr(path, name, v, len));
    if (got >= 0) out.set(name, v.subarray(0, got));
  }
  return out;
}

export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFIFO = 0o010000;

export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

export function mknod(path: string, mode: number, dev: bigint): void {
  if ((lib().mknod(path, mode, dev) as number) < 0) throw new NativeError('mknod', path);
}
