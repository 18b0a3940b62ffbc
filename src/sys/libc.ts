// The one place that loads libc through koffi. Other src/sys modules declare
// the functions they need against `libc` and turn failures into SysError.
import type KoffiModule from 'koffi';
import { createRequire } from 'node:module';
import os from 'node:os';

type Koffi = typeof KoffiModule;

/**
 * koffi's package entry also loads its installer's helpers (https, zlib,
 * crypto): ~25 ms of CPU in every thread that imports it, more than the
 * whole native addon. Load the addon itself where we know its path and use
 * the entry only as the fallback (other platforms, other layouts). The
 * addon exports the same API (the entry only adds deprecated aliases).
 */
function loadKoffi(): Koffi {
  const require = createRequire(import.meta.url);
  const triplet = `${process.platform}_${process.arch}`; // glibc (libc.so.6 below)
  try {
    const native = require(`koffi/build/koffi/${triplet}/koffi.node`) as Koffi & { version?: string };
    const pkg = require('koffi/package.json') as { version: string };
    if (native.version === pkg.version) return native;
  } catch { /* fall back to the package entry */ }
  return require('koffi') as Koffi;
}

const koffi = loadKoffi();
export const libc = koffi.load('libc.so.6');

/** A failed system call: carries the positive errno and the call's name. */
export class SysError extends Error {
  readonly errno: number;
  readonly syscall: string;
  constructor(syscall: string, errno: number) {
    super(`${syscall}: ${errnoName(errno)}`);
    this.errno = errno;
    this.syscall = syscall;
  }
}

const errnoNames = new Map<number, string>(
  Object.entries(os.constants.errno).map(([name, no]) => [no, name]),
);
export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/** Last errno of the calling thread (koffi saves it right after each call). */
export function lastErrno(): number {
  return koffi.errno();
}

/** Throws SysError when a libc call returned -1 (or a negative number). */
export function check(syscall: string, ret: number): number {
  if (ret < 0) throw new SysError(syscall, koffi.errno());
  return ret;
}

/** Like check() but retries on EINTR. */
export function checkRetry(syscall: string, call: () => number): number {
  for (;;) {
    const ret = call();
    if (ret >= 0) return ret;
    const e = koffi.errno();
    if (e !== os.constants.errno.EINTR) throw new SysError(syscall, e);
  }
}

export { koffi };
