// State shared by the operation modules, and the helpers they all use to
// resolve guest-supplied ids.
import os from 'node:os';
import { SysError } from '../../../sys/libc.js';
import { fstat, type Stat } from '../../../sys/fsops.js';
import type { Request, Reply } from './fuse-io.js';
import type { Timeout } from './fuse-protocol.js';
import type { Inode, InodeTable } from './inode-table.js';
import type { Handle, HandleTable } from './handle-table.js';

export const E = os.constants.errno;

export interface FsContext {
  readonly inodes: InodeTable;
  readonly handles: HandleTable;
  readonly readonly: boolean;
  /** Entry and attribute cache validity handed to the kernel. */
  readonly timeout: Timeout;
}

/**
 * What an operation hands back: a reply body to send after a success header,
 * a number of body bytes it already placed in guest memory (zero-copy READ),
 * or null for requests that get no reply (FORGET).
 */
export type OpResult = Uint8Array | number | null;
export type OpHandler = (ctx: FsContext, req: Request, out: Reply) => OpResult;

export function fail(errno: number, what = 'fuse'): never {
  throw new SysError(what, errno);
}

/** The inode behind a guest node id; unknown ids are ENOENT, never a crash. */
export function inodeOf(ctx: FsContext, nodeid: number): Inode {
  const ino = ctx.inodes.get(nodeid);
  if (!ino) fail(E.ENOENT, 'nodeid');
  return ino;
}

export function handleOf(ctx: FsContext, fh: number, dir: boolean): Handle {
  const h = ctx.handles.get(fh, dir);
  if (!h) fail(E.EBADF, 'fh');
  return h;
}

export function mustWrite(ctx: FsContext): void {
  if (ctx.readonly) fail(E.EROFS);
}

export function statOf(ino: Inode): Stat {
  return fstat(ino.fd);
}
