// Multi-export mode: one virtio-fs device carries several host trees (the
// sources of a container's bind mounts). Node id 1 is then a read-only
// directory that exists only in this server; its entries are the export
// names, and looking one up yields that export's root, a pinned inode. The
// root has no host fd (its fd is -1, so any syscall that reaches it by
// mistake fails), and nothing below an export can name it: ".." is refused
// for every name, inodes keep no parent pointers, and every inode is keyed
// by its export, so lookups never leave the export they started in.
import fs from 'node:fs';
import path from 'node:path';
import {
  AT_FDCWD, O_CLOEXEC, O_NOFOLLOW, O_PATH, S_IFDIR, S_IFMT, closeQuiet, fstat, openat, type Stat,
} from '../../../sys/fsops.js';
import type { Reply, Request } from './fuse-io.js';
import {
  DIRENT_HEADER_SIZE, DT_DIR, ENTRY_OUT_SIZE, READ_IN_SIZE, STATFS_OUT_SIZE, align8, writeDirent, writeEntryOut,
} from './fuse-protocol.js';
import { E, fail, type FsContext, type OpResult, type SyntheticRoot } from './fs-context.js';
import type { Export, Inode, InodeTable } from './inode-table.js';

/** A host path shared under `name` in the synthetic root. */
export interface ExportSpec {
  name: string;
  path: string;
  readonly: boolean;
}

/**
 * st_ino of the synthetic root. Host inode numbers of export roots are
 * passed through, so pick a value no common file system hands out to a
 * directory (tmpfs and many others number their root 1 or 2).
 */
export const SYNTHETIC_ROOT_INO = 0x7fff_ffff_ffff_fff0n;
const NAME_MAX = 255;

/** Throws a descriptive Error unless every export name can be a directory entry, once. */
export function validateExportNames(specs: readonly ExportSpec[]): void {
  const seen = new Set<string>();
  for (const spec of specs) {
    const name: unknown = spec.name;
    if (typeof name !== 'string') throw new Error('virtio-fs export name must be a string');
    const shown = JSON.stringify(name);
    const bytes = Buffer.from(name, 'utf8');
    if (bytes.length === 0) throw new Error('virtio-fs export name must not be empty');
    if (bytes.toString('utf8') !== name) throw new Error(`virtio-fs export name ${shown} is not valid Unicode`);
    if (name.includes('/')) throw new Error(`virtio-fs export name ${shown} must be a single path component (no '/')`);
    if (name.includes('\0')) throw new Error(`virtio-fs export name ${shown} must not contain NUL`);
    if (name === '.' || name === '..') throw new Error(`virtio-fs export name ${shown} is reserved`);
    if (bytes.length > NAME_MAX) throw new Error(`virtio-fs export name ${shown} is longer than ${NAME_MAX} bytes`);
    if (seen.has(name)) throw new Error(`virtio-fs export name ${shown} is used twice`);
    seen.add(name);
  }
}

/** The fixed attributes of the synthetic root: root-owned, 0555, nlink 2 + exports. */
function rootStat(exports: number): Stat {
  const now = Date.now();
  const sec = BigInt(Math.floor(now / 1000));
  const nsec = (now % 1000) * 1_000_000;
  return {
    mode: S_IFDIR | 0o555, nlink: 2 + exports, uid: 0, gid: 0, blksize: 4096, ino: SYNTHETIC_ROOT_INO,
    size: 0n, blocks: 0n, atimeSec: sec, atimeNsec: nsec, mtimeSec: sec, mtimeNsec: nsec,
    ctimeSec: sec, ctimeNsec: nsec, rdevMajor: 0, rdevMinor: 0, devMajor: 0, devMinor: 0,
  };
}

/**
 * Opens every export and registers node id 1 and the export roots (node ids
 * 2.. in the given order) in `inodes`, which must be empty. An export path
 * that is a symlink is resolved here, once (the host chose it); the result
 * is opened O_PATH|O_NOFOLLOW, so nothing below it is ever followed. An
 * export may be a directory or a single file; a file export exposes that
 * file only, as no operation reaches its directory. `forceReadonly` makes
 * every export read-only (the server-wide readonly option).
 */
export function buildSyntheticRoot(inodes: InodeTable, specs: readonly ExportSpec[], forceReadonly: boolean): SyntheticRoot {
  validateExportNames(specs);
  const opened: { exp: Export; fd: number; st: Stat }[] = [];
  try {
    specs.forEach((spec, id) => {
      if (typeof spec.path !== 'string' || !path.isAbsolute(spec.path)) {
        throw new Error(`virtio-fs export ${JSON.stringify(spec.name)}: path must be absolute: ${String(spec.path)}`);
      }
      let real: string;
      try {
        real = fs.realpathSync(spec.path);
      } catch (e) {
        throw new Error(`virtio-fs export ${JSON.stringify(spec.name)}: cannot resolve ${spec.path}: ${e instanceof Error ? e.message : String(e)}`);
      }
      const fd = openat(AT_FDCWD, real, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      let st: Stat;
      try {
        st = fstat(fd);
      } catch (e) {
        closeQuiet(fd);
        throw e;
      }
      opened.push({ exp: { id, name: spec.name, readonly: forceReadonly || spec.readonly === true }, fd, st });
    });
  } catch (e) {
    for (const o of opened) closeQuiet(o.fd);
    throw e;
  }
  const inode = inodes.pin(-1, S_IFDIR, null, null);
  const exports = opened.map((o) => inodes.pin(o.fd, o.st.mode, o.exp, o.st));
  const byName = new Map(exports.map((ino) => [ino.export!.name, ino]));
  return { inode, stat: rootStat(exports.length), exports, byName };
}

/** LOOKUP in the synthetic root: "." is the root itself, anything else an export name. */
export function lookupExport(ctx: FsContext, name: Buffer): { ino: Inode; st: Stat } {
  const root = ctx.synthetic!;
  // `name` comes NUL-terminated from the request; export names are UTF-8.
  const text = name.subarray(0, name.length - 1);
  if (text.length === 1 && text[0] === 0x2e) return { ino: ctx.inodes.again(root.inode), st: root.stat };
  const ino = root.byName.get(text.toString('utf8'));
  if (!ino || !Buffer.from(ino.export!.name, 'utf8').equals(text)) fail(E.ENOENT);
  return { ino: ctx.inodes.again(ino), st: fstat(ino.fd) };
}

export function syntheticStatfs(ctx: FsContext): OpResult {
  // An empty, full file system: nothing can be created in the root itself.
  const b = Buffer.alloc(STATFS_OUT_SIZE);
  b.writeBigUInt64LE(BigInt(ctx.synthetic!.exports.length + 1), 24); // files
  b.writeUInt32LE(4096, 40); // bsize
  b.writeUInt32LE(NAME_MAX, 44); // namelen
  b.writeUInt32LE(4096, 48); // frsize
  return b;
}

/** ACCESS on the root: r-x for everyone, never writable. */
export function syntheticAccess(mask: number): OpResult {
  if (mask & 2) fail(E.EROFS);
  return new Uint8Array(0);
}

/**
 * READDIR/READDIRPLUS of the root: ".", "..", then the exports. Entry k has
 * offset k + 1, so an offset from an earlier reply resumes after it.
 */
export function listSyntheticRoot(ctx: FsContext, req: Request, out: Reply, plus: boolean): OpResult {
  req.need(READ_IN_SIZE);
  const root = ctx.synthetic!;
  const limit = Math.min(req.u32(16), out.bodyCapacity);
  const start = req.u64(8);
  const total = 2 + root.exports.length;
  const body = Buffer.alloc(limit);
  let pos = 0;
  for (let k = start < BigInt(total) ? Number(start) : total; k < total; k++) {
    const exp = k >= 2 ? root.exports[k - 2]! : null;
    const name = exp ? Buffer.from(exp.export!.name, 'utf8') : Buffer.from(k === 0 ? '.' : '..');
    const entSize = plus ? ENTRY_OUT_SIZE : 0;
    if (pos + align8(entSize + DIRENT_HEADER_SIZE + name.length) > limit) break;
    let st: Stat | null = null;
    if (exp) {
      try {
        st = fstat(exp.fd);
      } catch {
        st = null;
      }
    }
    const ino = exp ? (st ? st.ino : 0n) : SYNTHETIC_ROOT_INO;
    const type = exp ? (st ? (st.mode & S_IFMT) >> 12 : 0) : DT_DIR;
    if (plus) {
      // As for host directories: "." and ".." get no entry; each export
      // returned with a node id counts as a lookup the kernel will FORGET
      // (export roots are pinned, so that is only bookkeeping).
      if (exp && st) ctx.inodes.again(exp);
      writeEntryOut(body, pos, exp && st ? exp.nodeid : 0, exp ? st : null, ctx.timeout);
    }
    pos += entSize + writeDirent(body, pos + entSize, ino, BigInt(k + 1), type, name);
  }
  return body.subarray(0, pos);
}
