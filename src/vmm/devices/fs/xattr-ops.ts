// Extended attributes. O_PATH fds cannot be used with f*xattr(), so these
// go through /proc/self/fd/N, which resolves to the inode itself. Only
// regular files and directories qualify: for a symlink that path would be
// the one place where a guest-made link could be resolved on the host.
import { S_IFDIR, S_IFREG, getxattr as sysGetxattr, listxattr as sysListxattr, procPath, removexattr as sysRemovexattr, setxattr as sysSetxattr } from '../../../sys/fsops.js';
import type { Reply, Request } from './fuse-io.js';
import { GETXATTR_IN_SIZE, SETXATTR_IN_SIZE, u32Out } from './fuse-protocol.js';
import { E, fail, inodeOf, isSynthetic, mustWrite, type FsContext, type OpResult } from './fs-context.js';
import type { Inode } from './inode-table.js';

const XATTR_NAME_MAX = 255;
const XATTR_SIZE_MAX = 64 * 1024;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;

function xattrPath(ino: Inode): string {
  if (ino.type !== S_IFREG && ino.type !== S_IFDIR) fail(E.ENOTSUP);
  return procPath(ino.fd);
}

function xattrName(req: Request, off: number): { bytes: Buffer; next: number } {
  const n = req.cstring(off, XATTR_NAME_MAX + 1);
  if (n.bytes.length === 1) fail(E.EINVAL);
  return n;
}

/** size 0 asks for the needed size; otherwise the value, or ERANGE if it is larger. */
function sized(req: Request, out: Reply, call: (buf: Buffer | null) => number): OpResult {
  const size = req.u32(0);
  if (size === 0) return u32Out(call(null));
  const buf = Buffer.alloc(Math.min(size, XATTR_SIZE_MAX, out.bodyCapacity));
  return buf.subarray(0, call(buf));
}

export function getxattr(ctx: FsContext, req: Request, out: Reply): OpResult {
  req.need(GETXATTR_IN_SIZE);
  const ino = inodeOf(ctx, req.nodeid);
  const name = xattrName(req, GETXATTR_IN_SIZE).bytes;
  // The synthetic root has no attributes.
  if (isSynthetic(ino)) fail(E.ENODATA);
  const path = xattrPath(ino);
  return sized(req, out, (buf) => sysGetxattr(path, name, buf));
}

export function listxattr(ctx: FsContext, req: Request, out: Reply): OpResult {
  req.need(GETXATTR_IN_SIZE);
  const ino = inodeOf(ctx, req.nodeid);
  if (isSynthetic(ino)) return sized(req, out, () => 0);
  const path = xattrPath(ino);
  return sized(req, out, (buf) => sysListxattr(path, buf));
}

export function setxattr(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  mustWrite(ino);
  req.need(SETXATTR_IN_SIZE);
  const size = req.u32(0);
  const flags = req.u32(4);
  if (size > XATTR_SIZE_MAX) fail(E.E2BIG);
  if (flags & ~(XATTR_CREATE | XATTR_REPLACE)) fail(E.EINVAL);
  const path = xattrPath(ino);
  const name = xattrName(req, SETXATTR_IN_SIZE);
  req.need(name.next + size);
  sysSetxattr(path, name.bytes, req.args.subarray(name.next, name.next + size), flags);
  return new Uint8Array(0);
}

export function removexattr(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  mustWrite(ino);
  const path = xattrPath(ino);
  sysRemovexattr(path, xattrName(req, 0).bytes);
  return new Uint8Array(0);
}
