// A comparable description of a directory tree (paths, types, modes,
// owners, link targets, device numbers, xattrs, hardlink groups, content
// digests), used to check a built rootfs against a reference unpacker
// (podman's own mount of the image, or umoci) and by the unpack benchmark.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { lgetxattrs } from './native.js';

export interface TreeEntry {
  type: 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';
  mode: string;
  uid: number;
  gid: number;
  /** symlink target, or content sha256 for files, or major,minor for devices */
  data?: string;
  xattrs?: Record<string, string>;
  /** for files with more than one link: the smallest path sharing the inode */
  linkGroup?: string;
  mtime?: number;
}

export interface SnapshotOptions {
  /** xattr names to keep (default: user.*, security.capability, trusted.* except overlay's) */
  xattrFilter?: (name: string) => boolean;
  /** record file/symlink mtimes (seconds) */
  mtimes?: boolean;
}

const defaultXattrs = (n: string) => (n.startsWith('user.') || n === 'security.capability') && !n.startsWith('user.overlay.');

export function snapshotTree(root: string, opts: SnapshotOptions = {}): Map<string, TreeEntry> {
  const keep = opts.xattrFilter ?? defaultXattrs;
  const out = new Map<string, TreeEntry>();
  const inodes = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = rel === '' ? root : path.join(root, rel);
    const st = fs.lstatSync(abs);
    const type: TreeEntry['type'] = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file'
      : st.isCharacterDevice() ? 'char' : st.isBlockDevice() ? 'block' : st.isFIFO() ? 'fifo' : 'socket';
    const e: TreeEntry = { type, mode: (st.mode & 0o7777).toString(8).padStart(4, '0'), uid: st.uid, gid: st.gid };
    if (type === 'symlink') e.data = fs.readlinkSync(abs);
    else if (type === 'file') {
      const h = crypto.createHash('sha256');
      const fd = fs.openSync(abs, 'r');
      try {
        const buf = Buffer.allocUnsafe(1 << 20);
        let n: number;
        while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
      } finally {
        fs.closeSync(fd);
      }
      e.data = h.digest('hex');
      if (st.nlink > 1) {
        const key = `${st.dev}:${st.ino}`;
        const first = inodes.get(key);
        if (first === undefined) inodes.set(key, rel);
        e.linkGroup = first ?? rel;
      }
    } else if (type === 'char' || type === 'block') {
      const rdev = BigInt(st.rdev);
      const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
      const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
      e.data = `${major},${minor}`;
    }
    if (opts.mtimes && type !== 'dir') e.mtime = Math.floor(st.mtimeMs / 1000);
    try {
      const xs = [...lgetxattrs(abs)].filter(([n]) => keep(n));
      if (xs.length) e.xattrs = Object.fromEntries(xs.map(([n, v]) => [n, v.toString('base64')]));
    } catch { /* no xattr support */ }
    out.set(rel === '' ? '/' : `/${rel}`, e);
    if (type === 'dir') for (const n of fs.readdirSync(abs).sort()) walk(rel === '' ? n : `${rel}/${n}`);
  };
  walk('');
  // Hardlink groups named by the smallest path, independent of walk order.
  const groups = new Map<string, string[]>();
  for (const [p, e] of out) if (e.linkGroup !== undefined) groups.set(e.linkGroup, [...(groups.get(e.linkGroup) ?? []), p]);
  for (const members of groups.values()) {
    const name = [...members].sort()[0]!;
    for (const m of members) out.get(m)!.linkGroup = name;
  }
  return out;
}

/** Lines describing every difference between two snapshots (empty if equal). */
export function diffTrees(a: Map<string, TreeEntry>, b: Map<string, TreeEntry>, ignore: (p: string) => boolean = () => false): string[] {
  const diffs: string[] = [];
  for (const [p, ea] of a) {
    if (ignore(p)) continue;
    const eb = b.get(p);
    if (!eb) {
      diffs.push(`only in first: ${p}`);
      continue;
    }
    const ja = JSON.stringify(ea);
    const jb = JSON.stringify(eb);
    if (ja !== jb) diffs.push(`${p}: ${ja} != ${jb}`);
  }
  for (const p of b.keys()) if (!ignore(p) && !a.has(p)) diffs.push(`only in second: ${p}`);
  return diffs;
}
