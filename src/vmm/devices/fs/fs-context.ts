// State shared by the operation modules, and the helpers they all use to
// resolve guest-supplied ids.
import os from 'node:os';
import { SysError } from '../../../sys/libc.js';
import { fstat, type Stat } from '../../../sys/fsops.js';
import type { Request, Reply } from './fuse-io.js';
import type { Timeout } from './fuse-protocol.js';
import type { Export, Inode, InodeTable } from './inode-table.js';
import type { Handle, HandleTable } from './handle-table.js';

export const E = os.constants.errno;

/**
 * Multi-export mode: node id 1 is a directory that exists only here. Its
 * entries are the exports, whose roots are pinned inodes.
 */
export interface SyntheticRoot {
  readonly inode: Inode;
  /** Attributes reported for node id 1 (fixed at construction). */
  readonly stat: Stat;
  /** Export roots in listing order. */
  readonly exports: readonly Inode[];
  readonly byName: ReadonlyMap<string, Inode>;
}

export interface FsContext {
  readonly inodes: InodeTable;
  readonly handles: HandleTable;
  /** Set in multi-export mode only. */
  readonly synthetic: SyntheticRoot | null;
  /** Entry and attribute cache validity handed to the kernel. */
  readonly timeout: Timeout;
  /**
   * open_out flags for regular files: FOPEN_KEEP_CACHE once INIT agreed on
   * AUTO_INVAL_DATA, so the guest keeps a file's pages across opens (an exec
   * of the same binary reads nothing again) and still drops them when a
   * refreshed attribute shows the file changed on the host.
   */
  openFlags: number;
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

/** The synthetic root of multi-export mode (no host fd behind it). */
export function isSynthetic(ino: Inode): boolean {
  return ino.export === null;
}

/** EROFS unless modifications are allowed in export `exp` (null: the synthetic root). */
export function mustWriteExport(exp: Export | null): void {
  if (exp === null || exp.readonly) fail(E.EROFS);
}

/**
 * Checks a modification that touches every inode given. The synthetic root
 * is read-only; inodes of two different exports are two file systems to the
 * guest (EXDEV, which like Linux's cross-mount check comes before EROFS);
 * a read-only export is EROFS.
 */
export function mustWrite(...inos: Inode[]): void {
  for (const ino of inos) if (ino.export === null) fail(E.EROFS);
  const exp = inos[0]!.export!;
  for (const ino of inos) if (ino.export !== exp) fail(E.EXDEV);
  mustWriteExport(exp);
}

export function statOf(ino: Inode): Stat {
  return fstat(ino.fd);
}
