// File system syscalls Node lacks (the *at family, statx, getdents64,
// xattrs by path, fallocate...), declared against glibc through koffi.
// Every wrapper throws SysError carrying the errno on failure.
//
// Path and name arguments are either JS strings (only for paths we build,
// such as /proc/self/fd/N) or NUL-terminated byte buffers: file names from
// the guest are bytes, not necessarily UTF-8, and must reach the kernel
// unchanged.
import { libc, check, checkRetry, SysError } from './libc.js';

export type CPath = string | Uint8Array;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_EMPTY_PATH = 0x1000;
export const AT_STATX_SYNC_AS_STAT = 0;

// x86_64 (and generic) open flags.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;
export const O_ACCMODE = 3;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_TRUNC = 0o1000;
export const O_APPEND = 0o2000;
export const O_NONBLOCK = 0o4000;
export const O_DSYNC = 0o10000;
export const O_DIRECT = 0o40000;
export const O_LARGEFILE = 0o100000;
export const O_DIRECTORY = 0o200000;
export const O_NOFOLLOW = 0o400000;
export const O_NOATIME = 0o1000000;
export const O_CLOEXEC = 0o2000000;
export const O_SYNC = 0o4010000;
export const O_PATH = 0o10000000;

export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;

export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;

const EINVAL = 22;

const c = {
  openat: libc.func('int openat(int dirfd, const char *path, int flags, ...)'),
  close: libc.func('int close(int fd)'),
  dup: libc.func('int dup(int fd)'),
  statx: libc.func('int statx(int dirfd, const char *path, int flags, uint32_t mask, void *buf)'),
  mkdirat: libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)'),
  mknodat: libc.func('int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)'),
  symlinkat: libc.func('int symlinkat(const char *target, int dirfd, const char *path)'),
  readlinkat: libc.func('intptr_t readlinkat(int dirfd, const char *path, void *buf, size_t size)'),
  unlinkat: libc.func('int unlinkat(int dirfd, const char *path, int flags)'),
  renameat2: libc.func(
    'int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, uint32_t flags)',
  ),
  linkat: libc.func('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)'),
  fchownat: libc.func('int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)'),
  fchmod: libc.func('int fchmod(int fd, uint32_t mode)'),
  fchmodat: libc.func('int fchmodat(int dirfd, const char *path, uint32_t mode, int flags)'),
  utimensat: libc.func('int utimensat(int dirfd, const char *path, const void *times, int flags)'),
  getdents64: libc.func('intptr_t getdents64(int fd, void *buf, size_t count)'),
  lseek: libc.func('int64_t lseek(int fd, int64_t offset, int whence)'),
  ftruncate: libc.func('int ftruncate(int fd, int64_t length)'),
  fallocate: libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)'),
  fsync: libc.func('int fsync(int fd)'),
  fdatasync: libc.func('int fdatasync(int fd)'),
  fstatfs: libc.func('int fstatfs(int fd, void *buf)'),
  getxattr: libc.func('intptr_t getxattr(const char *path, const char *name, void *value, size_t size)'),
  setxattr: libc.func('int setxattr(const char *path, const char *name, const void *value, size_t size, int flags)'),
  listxattr: libc.func('intptr_t listxattr(const char *path, void *list, size_t size)'),
  removexattr: libc.func('int removexattr(const char *path, const char *name)'),
};

/** Refuses byte paths that are not NUL-terminated: C would read past them. */
function p(path: CPath): CPath {
  if (typeof path !== 'string' && (path.length === 0 || path[path.length - 1] !== 0)) {
    throw new SysError('path', EINVAL);
  }
  return path;
}

/** Path of an fd through procfs: reopens the inode itself, never a name. */
export function procPath(fd: number): string {
  return `/proc/self/fd/${fd}`;
}

export function openat(dirfd: number, path: CPath, flags: number, mode = 0): number {
  return checkRetry('openat', () => c.openat(dirfd, p(path), flags, 'uint32_t', mode) as number);
}

export function close(fd: number): void {
  // No retry on EINTR: on Linux the fd is gone even then.
  check('close', c.close(fd) as number);
}

/** close() for cleanup paths, where a second error must not hide the first. */
export function closeQuiet(fd: number): void {
  try {
    close(fd);
  } catch {
    // The fd is gone either way.
  }
}

export function dup(fd: number): number {
  return check('dup', c.dup(fd) as number);
}

/** The statx fields the FUSE server needs (x86_64 struct statx layout). */
export interface Stat {
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  blksize: number;
  ino: bigint;
  size: bigint;
  blocks: bigint;
  atimeSec: bigint;
  atimeNsec: number;
  mtimeSec: bigint;
  mtimeNsec: number;
  ctimeSec: bigint;
  ctimeNsec: number;
  rdevMajor: number;
  rdevMinor: number;
  devMajor: number;
  devMinor: number;
}

const STATX_BASIC_STATS = 0x7ff;
// One buffer per thread is enough: callers are synchronous.
const statxBuf = Buffer.alloc(256);

export function statx(dirfd: number, path: CPath, flags: number): Stat {
  const b = statxBuf;
  check('statx', c.statx(dirfd, p(path), flags, STATX_BASIC_STATS, b) as number);
  return {
    blksize: b.readUInt32LE(4),
    nlink: b.readUInt32LE(16),
    uid: b.readUInt32LE(20),
    gid: b.readUInt32LE(24),
    mode: b.readUInt16LE(28),
    ino: b.readBigUInt64LE(32),
    size: b.readBigUInt64LE(40),
    blocks: b.readBigUInt64LE(48),
    atimeSec: b.readBigInt64LE(64),
    atimeNsec: b.readUInt32LE(72),
    ctimeSec: b.readBigInt64LE(96),
    ctimeNsec: b.readUInt32LE(104),
    mtimeSec: b.readBigInt64LE(112),
    mtimeNsec: b.readUInt32LE(120),
    rdevMajor: b.readUInt32LE(128),
    rdevMinor: b.readUInt32LE(132),
    devMajor: b.readUInt32LE(136),
    devMinor: b.readUInt32LE(140),
  };
}

/** stat of what an fd refers to (O_PATH fds included), never following a symlink. */
export function fstat(fd: number): Stat {
  return statx(fd, '', AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
}

export function mkdirat(dirfd: number, path: CPath, mode: number): void {
  check('mkdirat', c.mkdirat(dirfd, p(path), mode) as number);
}

/** glibc's makedev() encoding of a 64-bit dev_t. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major >>> 0);
  const mi = BigInt(minor >>> 0);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

export function mknodat(dirfd: number, path: CPath, mode: number, dev: bigint): void {
  check('mknodat', c.mknodat(dirfd, p(path), mode, dev) as number);
}

export function symlinkat(target: CPath, dirfd: number, path: CPath): void {
  check('symlinkat', c.symlinkat(p(target), dirfd, p(path)) as number);
}

/** Link target as raw bytes (PATH_MAX at most). */
export function readlinkat(dirfd: number, path: CPath): Buffer {
  const buf = Buffer.allocUnsafe(4096);
  const n = check('readlinkat', Number(c.readlinkat(dirfd, p(path), buf, buf.length)));
  return buf.subarray(0, n);
}

export function unlinkat(dirfd: number, path: CPath, flags: number): void {
  check('unlinkat', c.unlinkat(dirfd, p(path), flags) as number);
}

export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export const RENAME_WHITEOUT = 4;

export function renameat2(olddirfd: number, oldpath: CPath, newdirfd: number, newpath: CPath, flags: number): void {
  check('renameat2', c.renameat2(olddirfd, p(oldpath), newdirfd, p(newpath), flags) as number);
}

export function linkat(olddirfd: number, oldpath: CPath, newdirfd: number, newpath: CPath, flags: number): void {
  check('linkat', c.linkat(olddirfd, p(oldpath), newdirfd, p(newpath), flags) as number);
}

/** uid/gid of -1 leave that id unchanged. */
export function fchownat(dirfd: number, path: CPath, uid: number, gid: number, flags: number): void {
  check('fchownat', c.fchownat(dirfd, p(path), uid >>> 0, gid >>> 0, flags) as number);
}

export function fchmod(fd: number, mode: number): void {
  check('fchmod', c.fchmod(fd, mode) as number);
}

export function fchmodat(dirfd: number, path: CPath, mode: number, flags: number): void {
  check('fchmodat', c.fchmodat(dirfd, p(path), mode, flags) as number);
}

/** A timestamp for utimensat; nsec may be UTIME_NOW or UTIME_OMIT. */
export interface TimeSpec {
  sec: bigint;
  nsec: number;
}

export function utimensat(dirfd: number, path: CPath, atime: TimeSpec, mtime: TimeSpec, flags: number): void {
  const ts = Buffer.alloc(32);
  ts.writeBigInt64LE(atime.sec, 0);
  ts.writeBigInt64LE(BigInt(atime.nsec), 8);
  ts.writeBigInt64LE(mtime.sec, 16);
  ts.writeBigInt64LE(BigInt(mtime.nsec), 24);
  check('utimensat', c.utimensat(dirfd, p(path), ts, flags) as number);
}

/** Fills buf with struct linux_dirent64 records; returns the byte count (0 at end). */
export function getdents64(fd: number, buf: Uint8Array): number {
  return checkRetry('getdents64', () => Number(c.getdents64(fd, buf, buf.length)));
}

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

export function lseek(fd: number, offset: bigint, whence: number): bigint {
  const r = c.lseek(fd, offset, whence) as number | bigint;
  check('lseek', Number(r));
  return BigInt(r);
}

export function ftruncate(fd: number, length: bigint): void {
  checkRetry('ftruncate', () => c.ftruncate(fd, length) as number);
}

export function fallocate(fd: number, mode: number, offset: bigint, len: bigint): void {
  checkRetry('fallocate', () => c.fallocate(fd, mode, offset, len) as number);
}

export function fsync(fd: number): void {
  checkRetry('fsync', () => c.fsync(fd) as number);
}

export function fdatasync(fd: number): void {
  checkRetry('fdatasync', () => c.fdatasync(fd) as number);
}

export interface StatFs {
  bsize: number;
  blocks: bigint;
  bfree: bigint;
  bavail: bigint;
  files: bigint;
  ffree: bigint;
  namelen: number;
  frsize: number;
}

/** fstatfs (works on O_PATH fds); x86_64 struct statfs layout. */
export function fstatfs(fd: number): StatFs {
  const b = Buffer.alloc(120);
  check('fstatfs', c.fstatfs(fd, b) as number);
  return {
    bsize: Number(b.readBigInt64LE(8)),
    blocks: b.readBigUInt64LE(16),
    bfree: b.readBigUInt64LE(24),
    bavail: b.readBigUInt64LE(32),
    files: b.readBigUInt64LE(40),
    ffree: b.readBigUInt64LE(48),
    namelen: Number(b.readBigInt64LE(64)),
    frsize: Number(b.readBigInt64LE(72)),
  };
}

/** With an empty buf returns the value's size; otherwise fills buf and returns the length. */
export function getxattr(path: CPath, name: CPath, buf: Uint8Array | null): number {
  return check('getxattr', Number(c.getxattr(p(path), p(name), buf, buf ? buf.length : 0)));
}

export function setxattr(path: CPath, name: CPath, value: Uint8Array, flags: number): void {
  check('setxattr', c.setxattr(p(path), p(name), value, value.length, flags) as number);
}

export function listxattr(path: CPath, buf: Uint8Array | null): number {
  return check('listxattr', Number(c.listxattr(p(path), buf, buf ? buf.length : 0)));
}

export function removexattr(path: CPath, name: CPath): void {
  check('removexattr', c.removexattr(p(path), p(name)) as number);
}
