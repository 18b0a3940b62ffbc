// Open files: OPEN/CREATE hand out file handles backed by real host fds,
// READ/WRITE move data directly between those fds and guest memory.
import fs from 'node:fs';
import {
  AT_EMPTY_PATH, AT_FDCWD, O_ACCMODE, O_APPEND, O_CLOEXEC, O_CREAT, O_DSYNC, O_EXCL, O_LARGEFILE,
  O_NOATIME, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, O_SYNC, O_TRUNC,
  S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, SEEK_DATA, SEEK_END, SEEK_HOLE, SEEK_SET,
  close, closeQuiet, dup, fallocate as sysFallocate, fchmod, fchownat, fdatasync, fstat, fsync as sysFsync, lseek as sysLseek,
  openat, procPath, unlinkat, type Stat,
} from '../../../sys/fsops.js';
import { SysError } from '../../../sys/libc.js';
import type { Reply, Request } from './fuse-io.js';
import {
  CREATE_IN_SIZE, FALLOCATE_IN_SIZE, FLUSH_IN_SIZE, FSYNC_IN_SIZE, FUSE_FSYNC_FDATASYNC, LSEEK_IN_SIZE,
  OPEN_IN_SIZE, READ_IN_SIZE, RELEASE_IN_SIZE, WRITE_IN_SIZE, entryOut, openOut, u32Out,
} from './fuse-protocol.js';
import { E, fail, handleOf, inodeOf, mustWrite, mustWriteExport, type FsContext, type OpResult } from './fs-context.js';
import type { Export, Inode } from './inode-table.js';
import { lookupChild } from './node-ops.js';

/**
 * Guest open flags we pass on. O_CREAT/O_EXCL/O_NOFOLLOW/O_DIRECTORY/O_PATH/
 * O_TMPFILE never reach a reopen; O_DIRECT is dropped because guest buffer
 * alignment says nothing about the host file system's.
 */
const OPEN_PASS = O_ACCMODE | O_APPEND | O_TRUNC | O_NONBLOCK | O_DSYNC | O_SYNC | O_NOATIME | O_LARGEFILE;
const MAX_OFF = BigInt(Number.MAX_SAFE_INTEGER);
const MAX_OFF_T = 0x7fffffffffffffffn;
// FALLOC_FL_KEEP_SIZE | PUNCH_HOLE | COLLAPSE_RANGE | ZERO_RANGE | INSERT_RANGE | UNSHARE_RANGE
const FALLOC_KNOWN = 0x01 | 0x02 | 0x08 | 0x10 | 0x20 | 0x40;

/** Host open flags for guest `flags`; write access or O_TRUNC needs a writable export. */
function hostFlags(exp: Export | null, flags: number): number {
  if ((flags & O_ACCMODE) !== O_RDONLY || flags & O_TRUNC) mustWriteExport(exp);
  return (flags & OPEN_PASS) | O_CLOEXEC;
}

/** Only regular files may be opened: a host device node or fifo must never be. */
function requireRegular(ino: Inode): void {
  if (ino.type === S_IFREG) return;
  if (ino.type === S_IFDIR) fail(E.EISDIR);
  if (ino.type === S_IFLNK) fail(E.ELOOP);
  fail(E.EACCES);
}

function offsetArg(v: bigint): number {
  if (v > MAX_OFF) fail(E.EINVAL);
  return Number(v);
}

export function open(ctx: FsContext, req: Request): OpResult {
  req.need(OPEN_IN_SIZE);
  const ino = inodeOf(ctx, req.nodeid);
  requireRegular(ino);
  const fd = openat(AT_FDCWD, procPath(ino.fd), hostFlags(ino.export, req.u32(0)));
  return openOut(ctx.handles.add(fd, ino.nodeid, false, ino.export).fh, ctx.openFlags);
}

function entryAndOpen(entry: Uint8Array, open: Uint8Array): Uint8Array {
  return Buffer.concat([entry, open]);
}

export function create(ctx: FsContext, req: Request): OpResult {
  const parent = inodeOf(ctx, req.nodeid);
  mustWrite(parent);
  req.need(CREATE_IN_SIZE);
  const flags = req.u32(0);
  const mode = req.u32(4);
  const umask = req.u32(8);
  if (parent.type !== S_IFDIR) fail(E.ENOTDIR);
  const name = req.name(CREATE_IN_SIZE).bytes;
  if ((mode & S_IFMT) !== 0 && (mode & S_IFMT) !== S_IFREG) fail(E.EINVAL);
  const perm = mode & ~umask & 0o7777;
  const base = hostFlags(parent.export, flags);
  const parentSt = fstat(parent.fd);

  let fd: number;
  try {
    // O_EXCL|O_NOFOLLOW: we only ever create here; an existing name (maybe a
    // symlink or a device node) is never opened through this path.
    fd = openat(parent.fd, name, base | O_CREAT | O_EXCL | O_NOFOLLOW, perm);
  } catch (e) {
    if (e instanceof SysError && e.errno === E.EEXIST && !(flags & O_EXCL)) return openExisting(ctx, parent, name, base);
    throw e;
  }
  let pathFd = -1;
  let st: Stat;
  try {
    fchownat(fd, '', req.uid, parentSt.mode & S_ISGID ? -1 : req.gid, AT_EMPTY_PATH);
    fchmod(fd, perm);
    pathFd = openat(AT_FDCWD, procPath(fd), O_PATH | O_CLOEXEC);
    st = fstat(pathFd);
  } catch (e) {
    closeQuiet(fd);
    if (pathFd >= 0) closeQuiet(pathFd);
    try {
      unlinkat(parent.fd, name, 0);
    } catch {
      // Best effort; report the original error.
    }
    throw e;
  }
  const ino = ctx.inodes.ref(pathFd, st, parent.export!);
  const h = ctx.handles.add(fd, ino.nodeid, false, ino.export);
  return entryAndOpen(entryOut(ino.nodeid, st, ctx.timeout), openOut(h.fh, ctx.openFlags));
}

/** CREATE without O_EXCL on a name that exists: an ordinary lookup + open. */
function openExisting(ctx: FsContext, parent: Inode, name: Buffer, flags: number): OpResult {
  const { ino, st } = lookupChild(ctx, parent, name);
  try {
    requireRegular(ino);
    const fd = openat(AT_FDCWD, procPath(ino.fd), flags);
    const h = ctx.handles.add(fd, ino.nodeid, false, ino.export);
    return entryAndOpen(entryOut(ino.nodeid, flags & O_TRUNC ? fstat(ino.fd) : st, ctx.timeout), openOut(h.fh, ctx.openFlags));
  } catch (e) {
    ctx.inodes.forget(ino.nodeid, 1);
    throw e;
  }
}

/** Drops the first `n` bytes of an iovec list. */
function advance(iov: Uint8Array[], n: number): Uint8Array[] {
  let i = 0;
  while (i < iov.length && n >= iov[i]!.length) n -= iov[i++]!.length;
  const rest = iov.slice(i);
  if (n > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(n);
  return rest;
}

export function read(ctx: FsContext, req: Request, out: Reply): OpResult {
  req.need(READ_IN_SIZE);
  const h = handleOf(ctx, req.id(0), false);
  const offset = offsetArg(req.u64(8));
  let iov = out.bodyViews(req.u32(16));
  let total = 0;
  // preadv straight into guest memory. A short read means EOF to FUSE, so
  // keep going after partial reads (libuv also caps one call at IOV_MAX).
  while (iov.length > 0) {
    const n = fs.readvSync(h.fd, iov, offset + total);
    if (n === 0) break;
    total += n;
    iov = advance(iov, n);
  }
  return total;
}

export function write(ctx: FsContext, req: Request): OpResult {
  req.need(WRITE_IN_SIZE);
  const h = handleOf(ctx, req.id(0), false);
  mustWriteExport(h.export);
  const offset = offsetArg(req.u64(8));
  const size = req.u32(16);
  const data = req.payload(WRITE_IN_SIZE, size);
  const n = size === 0 ? 0 : fs.writevSync(h.fd, data, offset);
  return u32Out(n);
}

export function flush(ctx: FsContext, req: Request): OpResult {
  req.need(FLUSH_IN_SIZE);
  const h = handleOf(ctx, req.id(0), false);
  // close() of a duplicate reports deferred write errors (NFS and friends)
  // the way the guest's close() expects, while the handle stays open.
  close(dup(h.fd));
  return new Uint8Array(0);
}

export function release(ctx: FsContext, req: Request): OpResult {
  req.need(RELEASE_IN_SIZE);
  ctx.handles.remove(handleOf(ctx, req.id(0), false));
  return new Uint8Array(0);
}

export function fsyncFile(ctx: FsContext, req: Request, dir: boolean): OpResult {
  req.need(FSYNC_IN_SIZE);
  const h = handleOf(ctx, req.id(0), dir);
  // The synthetic root's handle has no host fd and nothing to sync.
  if (h.fd < 0) return new Uint8Array(0);
  if (req.u32(8) & FUSE_FSYNC_FDATASYNC) fdatasync(h.fd);
  else sysFsync(h.fd);
  return new Uint8Array(0);
}

export function fsync(ctx: FsContext, req: Request): OpResult {
  return fsyncFile(ctx, req, false);
}

export function fallocate(ctx: FsContext, req: Request): OpResult {
  req.need(FALLOCATE_IN_SIZE);
  const h = handleOf(ctx, req.id(0), false);
  mustWriteExport(h.export);
  const offset = req.u64(8);
  const length = req.u64(16);
  const mode = req.u32(24);
  if (offset > MAX_OFF_T || length > MAX_OFF_T) fail(E.EINVAL);
  if (mode & ~FALLOC_KNOWN) fail(E.EOPNOTSUPP);
  sysFallocate(h.fd, mode, offset, length);
  return new Uint8Array(0);
}

export function lseek(ctx: FsContext, req: Request): OpResult {
  req.need(LSEEK_IN_SIZE);
  const h = handleOf(ctx, req.id(0), false);
  const whence = req.u32(16);
  // SEEK_CUR would expose the shared fd position; the kernel only sends DATA/HOLE.
  if (![SEEK_SET, SEEK_END, SEEK_DATA, SEEK_HOLE].includes(whence)) fail(E.EINVAL);
  const pos = sysLseek(h.fd, BigInt.asIntN(64, req.u64(8)), whence);
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(pos, 0);
  return b;
}
