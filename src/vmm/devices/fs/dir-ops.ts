// Directory handles and listings. Listings come from getdents64 on the
// handle's fd; the d_off cookies become the FUSE offsets, and every request
// seeks to the offset the kernel asks for, so entries that did not fit into
// one reply are simply read again by the next.
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_RDONLY, S_IFDIR, SEEK_SET, getdents64, lseek, openat, procPath, type Stat } from '../../../sys/fsops.js';
import type { Reply, Request } from './fuse-io.js';
import {
  DIRENT_HEADER_SIZE, ENTRY_OUT_SIZE, READ_IN_SIZE, RELEASE_IN_SIZE, align8, openOut, writeDirent, writeEntryOut,
} from './fuse-protocol.js';
import { E, fail, handleOf, inodeOf, isSynthetic, type FsContext, type OpResult } from './fs-context.js';
import { fsyncFile } from './file-ops.js';
import { lookupAt } from './node-ops.js';
import { listSyntheticRoot } from './synthetic-root.js';

const DENTS_MAX = 64 * 1024;
// Big enough for one linux_dirent64 with a 255-byte name.
const DENTS_MIN = 512;
const dentsBuf = Buffer.alloc(DENTS_MAX);

export function opendir(ctx: FsContext, req: Request): OpResult {
  const ino = inodeOf(ctx, req.nodeid);
  if (ino.type !== S_IFDIR) fail(E.ENOTDIR);
  // The synthetic root is listed from the export table, not from a host fd.
  if (isSynthetic(ino)) return openOut(ctx.handles.add(-1, ino.nodeid, true, null).fh);
  const fd = openat(AT_FDCWD, procPath(ino.fd), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  return openOut(ctx.handles.add(fd, ino.nodeid, true, ino.export).fh);
}

export function releasedir(ctx: FsContext, req: Request): OpResult {
  req.need(RELEASE_IN_SIZE);
  ctx.handles.remove(handleOf(ctx, req.id(0), true));
  return new Uint8Array(0);
}

export function fsyncdir(ctx: FsContext, req: Request): OpResult {
  return fsyncFile(ctx, req, true);
}

function isDotOrDotDot(name: Buffer): boolean {
  return name[0] === 0x2e && (name.length === 1 || (name.length === 2 && name[1] === 0x2e));
}

function list(ctx: FsContext, req: Request, out: Reply, plus: boolean): OpResult {
  req.need(READ_IN_SIZE);
  const h = handleOf(ctx, req.id(0), true);
  if (h.export === null) return listSyntheticRoot(ctx, req, out, plus);
  const exp = h.export;
  const limit = Math.min(req.u32(16), out.bodyCapacity);
  lseek(h.fd, BigInt.asIntN(64, req.u64(8)), SEEK_SET);
  const n = getdents64(h.fd, dentsBuf.subarray(0, Math.min(DENTS_MAX, Math.max(DENTS_MIN, limit))));
  const body = Buffer.alloc(limit);
  let pos = 0;
  for (let p = 0; p + 19 < n; ) {
    // struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const reclen = dentsBuf.readUInt16LE(p + 16);
    if (reclen < 20 || p + reclen > n) break;
    const ino = dentsBuf.readBigUInt64LE(p);
    const off = dentsBuf.readBigUInt64LE(p + 8);
    let type = dentsBuf[p + 18]!;
    const nul = dentsBuf.indexOf(0, p + 19);
    const name = dentsBuf.subarray(p + 19, nul < 0 || nul > p + reclen ? p + reclen : nul);
    p += reclen;

    const entSize = plus ? ENTRY_OUT_SIZE : 0;
    const size = align8(entSize + DIRENT_HEADER_SIZE + name.length);
    if (pos + size > limit) break;
    if (plus) {
      // Each entry we return with a node id counts as a lookup the kernel
      // will FORGET. "." and ".." (which the kernel ignores here, and ".."
      // may lie outside the share) and vanished entries get node id 0.
      let found: { nodeid: number; st: Stat } | null = null;
      if (!isDotOrDotDot(name)) {
        try {
          const r = lookupAt(ctx, exp, h.fd, Buffer.concat([name, Buffer.of(0)]));
          found = { nodeid: r.ino.nodeid, st: r.st };
          type = (r.st.mode >> 12) & 0xf;
        } catch {
          found = null;
        }
      }
      writeEntryOut(body, pos, found ? found.nodeid : 0, found ? found.st : null, ctx.timeout);
    }
    pos += entSize + writeDirent(body, pos + entSize, ino, off, type, name);
  }
  return body.subarray(0, pos);
}

export function readdir(ctx: FsContext, req: Request, out: Reply): OpResult {
  return list(ctx, req, out, false);
}

export function readdirplus(ctx: FsContext, req: Request, out: Reply): OpResult {
  return list(ctx, req, out, true);
}
