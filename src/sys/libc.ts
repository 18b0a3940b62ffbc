// The one place that loads libc through koffi. Other src/sys modules declare
// the functions they need against `libc` and turn failures into SysError.
import type koffiModule from 'koffi';
import { createRequire } from 'node:module';
import os from 'node:os';

const require = createRequire(import.meta.url);

/**
 * koffi's native module. Its entry point also loads https and zlib for its
 * installer's tools (10-25 ms in every husk process and device worker, all
 * on the paths clients time); the prebuilt module for this platform is
 * loaded directly when it is there and matches, through the entry point otherwise.
 */
function loadKoffi(): typeof koffiModule {
  try {
    const native = require(`koffi/build/koffi/${process.platform}_${process.arch}/koffi.node`) as typeof koffiModule & { version?: string };
    if (native.version === (require('koffi/package.json') as { version: string }).version) return native;
  } catch { /* another layout or libc: let koffi find its module */ }
  return require('koffi') as typeof koffiModule;
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
