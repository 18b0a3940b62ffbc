// Inode and namespace operations: lookups, attributes, and creating,
// linking, renaming and removing directory entries. Every name is resolved
// with an *at() call relative to an O_PATH fd and never follows a symlink,
// so nothing the guest names can lead outside the shared directory.
import {
  AT_EMPTY_PATH, AT_FDCWD, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, AT_SYMLINK_NOFOLLOW,
  O_CLOEXEC, O_NOFOLLOW, O_PATH, O_WRONLY,
  RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT,
  S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, S_ISGID,
  UTIME_NOW, UTIME_OMIT,
  closeQuiet, fchmod, fchmodat, fchownat, fstat, fstatfs, ftruncate, linkat, makedev, mkdirat, mknodat,
  openat, procPath, readlinkat, renameat2, symlinkat, unlinkat, utimensat,
  type Stat, type TimeSpec,
} from '../../../sys/fsops.js';
import { SysError } from '../../../sys/libc.js';
import { u64ToNumber, type Request } from './fuse-io.js';
import {
  ACCESS_IN_SIZE, BATCH_FORGET_IN_SIZE, FATTR_ATIME, FATTR_ATIME_NOW, FATTR_FH, FATTR_GID, FATTR_MODE,
  FATTR_MTIME, FATTR_MTIME_NOW, FATTR_SIZE, FATTR_UID, FORGET_IN_SIZE, FORGET_ONE_SIZE, LINK_IN_SIZE,
  MKDIR_IN_SIZE, MKNOD_IN_SIZE, RENAME2_IN_SIZE, RENAME_IN_SIZE, SETATTR_IN_SIZE, STATFS_OUT_SIZE,
  attrOut, decodeDev, entryOut,
} from './fuse-protocol.js';
import { E, fail, inodeOf, isSynthetic, mustWrite, type FsContext, type OpResult } from './fs-context.js';
import type { Export, Inode } from './inode-table.js';
import { lookupExport, syntheticAccess, syntheticStatfs } from './synthetic-root.js';

const PERM_MASK = 0o7777;

function isDot(name: Buffer): boolean {
  return name.length === 2 && name[0] === 0x2e;
}

/** Looks `name` up under `parent` and takes a lookup reference on the result. */
export function lookupChild(ctx: FsContext, parent: Inode, name: Buffer): { ino: Inode; st: Stat } {
  if (parent.type !== S_IFDIR) fail(E.ENOTDIR);
  if (isSynthetic(parent)) return lookupExport(ctx, name);
  if (isDot(name)) {
    const st = fstat(parent.fd);
    return { ino: ctx.inodes.again(parent), st };
  }
  return lookupAt(ctx, parent.export!, parent.fd, name);
}

/**
 * `name` (a validated single component, not "." or "..") under directory fd
 * `dirfd`, which lies in export `exp`; the result belongs to the same export.
 */
export function lookupAt(ctx: FsContext, exp: Export, dirfd: number, name: Uint8Array): { ino: Inode; st: Stat } {
  const fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
  let st: Stat;
  try {
    st = fstat(fd);
  } catch (e) {
    closeQuiet(fd);
    throw e;
  }
  return { ino: ctx.inodes.ref(fd, st, exp), st };
}

function parentDir(ctx: FsContext, req: Request): Inode {
  const parent = inodeOf(ctx, req.nodeid);
  if (parent.type !== S_IFDIR) fail(E.ENOTDIR);
  return parent;
}

/**
 * Gives a node just created under `parent` the caller's ownership and the
 * exact mode asked for (our own process umask must not leak in), then
 * returns its fuse_entry_out. A setgid directory's group is kept, as the
 * kernel does for local creates. On failure the new entry is removed again.
 */
export function adoptNew(
  ctx: FsContext, req: Request, parent: Inode, parentSt: Stat, name: Buffer, mode: number | null,
): Uint8Array {
  let fd = -1;
  let st: Stat;
  try {
    fd = openat(parent.fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    const gid = parentSt.mode & S_ISGID ? -1 : req.gid;
    fchownat(fd, '', req.uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    // chown clears setuid/setgid bits, so the mode goes on afterwards.
    if (mode !== null) fchmodat(AT_FDCWD, procPath(fd), mode & PERM_MASK, 0);
    st = fstat(fd);
  } catch (e) {
    if (fd >= 0) closeQuiet(fd);
    try {
      unlinkat(parent.fd, name, mode !== null && (mode & S_IFMT) === S_IFDIR ? AT_REMOVEDIR : 0);
    } catch {
      // Best effort; report the original error.
    }
    throw e;
  }
  const ino = ctx.inodes.ref(fd, st, parent.export!);
  return entryOut(ino.nodeid, st, ctx.timeout);
}

export function lookup(ctx: FsContext, req: Request): OpResult {
  const parent = inodeOf(ctx, req.nodeid);
  const { ino, st } = lookupChild(ctx, parent, req.name(0).bytes);
  return entryOut(ino.nodeid, st, ctx.timeout);
}

function lookupCount(v: bigint): number {
  const n = u64ToNumber(v);
  return n < 0 ? Infinity : n;
}

export function forget(ctx: FsContext, req: Request): OpResult {
  if (req.args.length >= FORGET_IN_SIZE) ctx.inodes.forget(req.nodeid, lookupCount(req.u64(0)));
  return null;
}

export function batchForget(ctx: FsContext, req: Request): OpResult {
  if (req.args.length < BATCH_FORGET_IN_SIZE) return null;
  // Trust the bytes present, not the count the guest claims.
  const count = Math.min(req.u32(0), Math.floor((req.args.length - BATCH_FORGET_IN_SIZE) / FORGET_ONE_SIZE));
  for (let i = 0; i < count; i++) {
    const off = BATCH_FORGET_IN_SIZE + i * FORGET_ONE_SIZE;
    ctx.inodes.forget(req.id(off), lookupCount(req.u64(off + 8)));
  }
  return null;
}

export function getattr(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  if (isSynthetic(ino)) return attrOut(ctx.synthetic!.stat, ctx.timeout);
  return attrOut(fstat(ino.fd), ctx.timeout);
}

function timeArg(req: Request, valid: number, setBit: number, nowBit: number, secOff: number, nsecOff: number): TimeSpec {
  if (valid & nowBit) return { sec: 0n, nsec: UTIME_NOW };
  if (!(valid & setBit)) return { sec: 0n, nsec: UTIME_OMIT };
  const nsec = req.u32(nsecOff);
  if (nsec > 999_999_999) fail(E.EINVAL);
  return { sec: BigInt.asIntN(64, req.u64(secOff)), nsec };
}

export function setattr(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  mustWrite(ino);
  req.need(SETATTR_IN_SIZE);
  const valid = req.u32(0);
  // The kernel passes the open file for ftruncate(); a stale or foreign fh
  // just means we work on the inode instead.
  const fh = valid & FATTR_FH ? ctx.handles.get(req.id(8), false) : undefined;
  const h = fh && fh.nodeid === ino.nodeid ? fh : undefined;
  const symlink = ino.type === S_IFLNK;

  if (valid & (FATTR_UID | FATTR_GID)) {
    const uid = valid & FATTR_UID ? req.u32(76) : -1;
    const gid = valid & FATTR_GID ? req.u32(80) : -1;
    fchownat(ino.fd, '', uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
  }
  if (valid & FATTR_MODE) {
    const mode = req.u32(68) & PERM_MASK;
    if (h) fchmod(h.fd, mode);
    else if (symlink) fail(E.EOPNOTSUPP);
    else fchmodat(AT_FDCWD, procPath(ino.fd), mode, 0);
  }
  if (valid & FATTR_SIZE) {
    if (ino.type === S_IFDIR) fail(E.EISDIR);
    if (ino.type !== S_IFREG) fail(E.EINVAL);
    const size = req.u64(16);
    if (size > 0x7fffffffffffffffn) fail(E.EINVAL);
    if (h) ftruncate(h.fd, size);
    else {
      // A regular file (an inode's type never changes), so reopening it
      // through procfs cannot reach a device or fifo.
      const fd = openat(AT_FDCWD, procPath(ino.fd), O_WRONLY | O_CLOEXEC);
      try {
        ftruncate(fd, size);
      } finally {
        closeQuiet(fd);
      }
    }
  }
  if (valid & (FATTR_ATIME | FATTR_MTIME | FATTR_ATIME_NOW | FATTR_MTIME_NOW)) {
    const atime = timeArg(req, valid, FATTR_ATIME, FATTR_ATIME_NOW, 32, 56);
    const mtime = timeArg(req, valid, FATTR_MTIME, FATTR_MTIME_NOW, 40, 60);
    if (h) utimensat(h.fd, '', atime, mtime, AT_EMPTY_PATH);
    else if (symlink) utimensat(ino.fd, '', atime, mtime, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    else utimensat(AT_FDCWD, procPath(ino.fd), atime, mtime, 0);
  }
  return attrOut(fstat(ino.fd), ctx.timeout);
}

export function readlink(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  if (ino.type !== S_IFLNK) fail(E.EINVAL);
  return readlinkat(ino.fd, '');
}

/** Permission bits for a new node: the request's mode less the request's umask. */
function newMode(mode: number, umask: number): number {
  return mode & ~umask & PERM_MASK;
}

export function mknod(ctx: FsContext, req: Request): OpResult {
  const parent = parentDir(ctx, req);
  mustWrite(parent);
  req.need(MKNOD_IN_SIZE);
  const mode = req.u32(0);
  const umask = req.u32(8);
  const name = req.name(MKNOD_IN_SIZE).bytes;
  let type = mode & S_IFMT;
  if (type === 0) type = S_IFREG;
  if (![S_IFREG, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK].includes(type)) fail(E.EINVAL);
  const { major, minor } = decodeDev(req.u32(4));
  const dev = type === S_IFCHR || type === S_IFBLK ? makedev(major, minor) : 0n;
  const perm = newMode(mode, umask);
  const parentSt = fstat(parent.fd);
  mknodat(parent.fd, name, type | perm, dev);
  return adoptNew(ctx, req, parent, parentSt, name, type | perm);
}

export function mkdir(ctx: FsContext, req: Request): OpResult {
  const parent = parentDir(ctx, req);
  mustWrite(parent);
  req.need(MKDIR_IN_SIZE);
  const name = req.name(MKDIR_IN_SIZE).bytes;
  const parentSt = fstat(parent.fd);
  // Directories inherit a setgid parent's S_ISGID; keep it when setting the mode.
  const perm = newMode(req.u32(0), req.u32(4)) | (parentSt.mode & S_ISGID);
  mkdirat(parent.fd, name, perm);
  return adoptNew(ctx, req, parent, parentSt, name, S_IFDIR | perm);
}

export function symlink(ctx: FsContext, req: Request): OpResult {
  const parent = parentDir(ctx, req);
  mustWrite(parent);
  const name = req.name(0);
  // The target is stored as text and never resolved on the host.
  const target = req.cstring(name.next).bytes;
  if (target.length === 1) fail(E.ENOENT);
  const parentSt = fstat(parent.fd);
  symlinkat(target, parent.fd, name.bytes);
  return adoptNew(ctx, req, parent, parentSt, name.bytes, null);
}

export function unlink(ctx: FsContext, req: Request): OpResult {
  const parent = parentDir(ctx, req);
  mustWrite(parent);
  unlinkat(parent.fd, req.name(0).bytes, 0);
  return new Uint8Array(0);
}

export function rmdir(ctx: FsContext, req: Request): OpResult {
  const parent = parentDir(ctx, req);
  mustWrite(parent);
  unlinkat(parent.fd, req.name(0).bytes, AT_REMOVEDIR);
  return new Uint8Array(0);
}

function doRename(ctx: FsContext, req: Request, argSize: number, flags: number): OpResult {
  req.need(argSize);
  const oldParent = parentDir(ctx, req);
  const newParent = inodeOf(ctx, req.id(0));
  if (newParent.type !== S_IFDIR) fail(E.ENOTDIR);
  mustWrite(oldParent, newParent);
  if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) fail(E.EINVAL);
  const oldName = req.name(argSize);
  const newName = req.name(oldName.next);
  renameat2(oldParent.fd, oldName.bytes, newParent.fd, newName.bytes, flags);
  return new Uint8Array(0);
}

export function rename(ctx: FsContext, req: Request): OpResult {
  return doRename(ctx, req, RENAME_IN_SIZE, 0);
}

export function rename2(ctx: FsContext, req: Request): OpResult {
  return doRename(ctx, req, RENAME2_IN_SIZE, req.u32(8));
}

export function link(ctx: FsContext, req: Request): OpResult {
  req.need(LINK_IN_SIZE);
  const old = inodeOf(ctx, req.id(0));
  const parent = parentDir(ctx, req);
  mustWrite(parent, old);
  const name = req.name(LINK_IN_SIZE).bytes;
  if (old.type === S_IFDIR) fail(E.EPERM);
  try {
    linkat(old.fd, '', parent.fd, name, AT_EMPTY_PATH);
  } catch (e) {
    // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH (ENOENT without it); procfs
    // works for everything but symlinks, which we must not follow.
    if (!(e instanceof SysError) || e.errno !== E.ENOENT || old.type === S_IFLNK) throw e;
    linkat(AT_FDCWD, procPath(old.fd), parent.fd, name, AT_SYMLINK_FOLLOW);
  }
  const { ino, st } = lookupChild(ctx, parent, name);
  return entryOut(ino.nodeid, st, ctx.timeout);
}

export function statfs(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  if (isSynthetic(ino)) return syntheticStatfs(ctx);
  const s = fstatfs(ino.fd);
  const b = Buffer.alloc(STATFS_OUT_SIZE);
  b.writeBigUInt64LE(s.blocks, 0);
  b.writeBigUInt64LE(s.bfree, 8);
  b.writeBigUInt64LE(s.bavail, 16);
  b.writeBigUInt64LE(s.files, 24);
  b.writeBigUInt64LE(s.ffree, 32);
  b.writeUInt32LE(s.bsize >>> 0, 40);
  b.writeUInt32LE(s.namelen >>> 0, 44);
  b.writeUInt32LE(s.frsize >>> 0, 48);
  return b;
}

/**
 * The guest kernel checks permissions itself (virtiofs mounts with
 * default_permissions), so ACCESS is rare; answer it from the mode bits for
 * the caller's uid/gid rather than with our own (root) credentials.
 */
export function access(ctx: FsContext, req: Request): OpResult {
  req.need(ACCESS_IN_SIZE);
  const mask = req.u32(0) & 7;
  const ino = inodeOf(ctx, req.nodeid);
  if (isSynthetic(ino)) return syntheticAccess(mask);
  const st = fstat(ino.fd);
  if (mask & 2 && ino.export!.readonly) fail(E.EROFS);
  if (req.uid === 0) {
    if (mask & 1 && ino.type !== S_IFDIR && (st.mode & 0o111) === 0) fail(E.EACCES);
  } else {
    const bits = req.uid === st.uid ? st.mode >> 6 : req.gid === st.gid ? st.mode >> 3 : st.mode;
    if (mask & ~bits & 7) fail(E.EACCES);
  }
  return new Uint8Array(0);
}

