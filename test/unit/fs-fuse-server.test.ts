// FuseServer against a real temp directory: requests are encoded as the
// Linux driver would send them, split over several segments.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FuseServer, OFFERED_INIT_FLAGS } from '../../src/vmm/devices/fs/fuse-server.js';
import {
  FuseDriver, cstr, parseAttr, parseDirents, parseEntry, u32s, u64s, type Entry,
} from '../../src/vmm/devices/fs/fuse-driver.js';
import {
  FUSE_AUTO_INVAL_DATA, FOPEN_KEEP_CACHE,
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, FATTR_ATIME, FATTR_FH, FATTR_GID, FATTR_MODE, FATTR_MTIME, FATTR_MTIME_NOW,
  FATTR_SIZE, FATTR_UID, FUSE_DO_READDIRPLUS, FUSE_EXPORT_SUPPORT, FUSE_POSIX_LOCKS, FUSE_WRITEBACK_CACHE,
  INIT_OUT_SIZE, OPEN_OUT_SIZE, Op, STATFS_OUT_SIZE,
} from '../../src/vmm/devices/fs/fuse-protocol.js';

const E = os.constants.errno;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_TRUNC = 0o1000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const S_IFCHR = 0o020000;
/** Everything a 6.1 kernel offers in fuse_init_in.flags (bits 0-30). */
const KERNEL_FLAGS = 0x7fffffff;

let dir: string;
let server: FuseServer;
let drv: FuseDriver;

function initServer(d: FuseDriver, flags = KERNEL_FLAGS): Buffer {
  return d.ok(Op.INIT, 0, [u32s(7, 36, 128 * 1024, flags, 0), Buffer.alloc(44)]);
}

function lookup(parent: number, name: string): Entry {
  return parseEntry(drv.ok(Op.LOOKUP, parent, [cstr(name)]));
}

function openFile(nodeid: number, flags: number): number {
  return Number(drv.ok(Op.OPEN, nodeid, [u32s(flags, 0)]).readBigUInt64LE(0));
}

function readFile(fh: number, nodeid: number, offset: number, size: number): Buffer {
  return drv.ok(Op.READ, nodeid, [u64s(fh, offset), u32s(size, 0), u64s(0), u32s(0, 0)]);
}

function writeFile(fh: number, nodeid: number, offset: number, data: Buffer): number {
  return drv.ok(Op.WRITE, nodeid, [u64s(fh, offset), u32s(data.length, 0), u64s(0), u32s(0, 0), data]).readUInt32LE(0);
}

function listDir(nodeid: number, plus: boolean, size = 4096): ReturnType<typeof parseDirents> {
  const fh = drv.ok(Op.OPENDIR, nodeid, [u32s(O_RDONLY, 0)]).readBigUInt64LE(0);
  const all: ReturnType<typeof parseDirents> = [];
  let off = 0n;
  for (;;) {
    const body = drv.ok(plus ? Op.READDIRPLUS : Op.READDIR, nodeid, [u64s(fh, off), u32s(size, 0), u64s(0), u32s(0, 0)]);
    const ents = parseDirents(body, plus);
    if (ents.length === 0) break;
    all.push(...ents);
    off = ents[ents.length - 1]!.off;
  }
  drv.ok(Op.RELEASEDIR, nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
  return all;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fuse-'));
  server = new FuseServer({ root: dir });
  drv = new FuseDriver(server);
});

afterEach(() => {
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('INIT', () => {
  it('negotiates 7.36 with only the flags we implement', () => {
    const r = drv.call(Op.INIT, 0, [u32s(7, 36, 65536, KERNEL_FLAGS, 0), Buffer.alloc(44)]);
    expect(r.error).toBe(0);
    expect(r.body.length).toBe(INIT_OUT_SIZE);
    expect(r.body.readUInt32LE(0)).toBe(7);
    expect(r.body.readUInt32LE(4)).toBe(36);
    expect(r.body.readUInt32LE(8)).toBe(65536); // max_readahead echoed
    const flags = r.body.readUInt32LE(12);
    expect(flags).toBe(OFFERED_INIT_FLAGS);
    expect(flags & FUSE_DO_READDIRPLUS).toBeTruthy();
    expect(flags & (FUSE_WRITEBACK_CACHE | FUSE_EXPORT_SUPPORT | FUSE_POSIX_LOCKS)).toBe(0);
    expect(r.body.readUInt32LE(20)).toBe(1024 * 1024); // max_write
    expect(r.body.readUInt16LE(28)).toBe(256); // max_pages
    expect(server.stats()).toEqual({ INIT: 1 });
  });

  it('only answers flags the kernel offered', () => {
    const body = initServer(drv, FUSE_DO_READDIRPLUS);
    expect(body.readUInt32LE(12)).toBe(FUSE_DO_READDIRPLUS);
  });

  it('refuses requests before INIT and too old protocols', () => {
    expect(drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]).error).toBe(-E.EIO);
    expect(drv.call(Op.INIT, 0, [u32s(7, 20, 0, 0)]).error).toBe(-E.EPROTO);
    expect(drv.call(Op.INIT, 0, [u32s(6, 40, 0, 0)]).error).toBe(-E.EPROTO);
    const newer = drv.call(Op.INIT, 0, [u32s(8, 0, 0, 0)]);
    expect(newer.error).toBe(0);
    expect(newer.body.readUInt32LE(0)).toBe(7);
  });

  it('keeps the guest\'s page cache across opens only with keepCache and AUTO_INVAL_DATA', () => {
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    const openFlags = (d: FuseDriver, nodeid: number) => d.ok(Op.OPEN, nodeid, [u32s(O_RDONLY, 0)]).readUInt32LE(8);
    // Without keepCache (binds shared with the host): every open reads again.
    initServer(drv);
    expect(openFlags(drv, lookup(1, 'f').nodeid)).toBe(0);
    const cached = new FuseServer({ root: dir, keepCache: true });
    try {
      const d = new FuseDriver(cached);
      expect(initServer(d).readUInt32LE(12) & FUSE_AUTO_INVAL_DATA).toBeTruthy();
      const f = parseEntry(d.ok(Op.LOOKUP, 1, [cstr('f')])).nodeid;
      expect(openFlags(d, f)).toBe(FOPEN_KEEP_CACHE);
      // A kernel without AUTO_INVAL_DATA would never drop stale pages: no KEEP_CACHE then.
      initServer(d, KERNEL_FLAGS & ~FUSE_AUTO_INVAL_DATA);
      expect(openFlags(d, parseEntry(d.ok(Op.LOOKUP, 1, [cstr('f')])).nodeid)).toBe(0);
    } finally {
      cached.close();
    }
  });

  it('DESTROY drops every node and handle', () => {
    initServer(drv);
    fs.writeFileSync(path.join(dir, 'f'), 'x');
    const e = lookup(1, 'f');
    openFile(e.nodeid, O_RDONLY);
    expect(server.openCounts()).toEqual({ inodes: 2, handles: 1 });
    expect(drv.call(Op.DESTROY, 0).error).toBe(0);
    expect(server.openCounts()).toEqual({ inodes: 1, handles: 0 });
    expect(drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]).error).toBe(-E.EIO);
    initServer(drv);
    expect(drv.call(Op.GETATTR, e.nodeid, [u32s(0, 0), u64s(0)]).error).toBe(-E.ENOENT);
  });
});

describe('passthrough', () => {
  beforeEach(() => {
    initServer(drv);
  });

  it('LOOKUP and GETATTR show host modes, owners and sizes', () => {
    const f = path.join(dir, 'file');
    fs.writeFileSync(f, 'hello world');
    fs.chmodSync(f, 0o640);
    fs.chownSync(f, 1234, 5678);
    const st = fs.statSync(f);
    const e = lookup(1, 'file');
    expect(e.nodeid).toBeGreaterThan(1);
    expect(e.attr.mode).toBe(S_IFREG | 0o640);
    expect(e.attr.uid).toBe(1234);
    expect(e.attr.gid).toBe(5678);
    expect(e.attr.size).toBe(11n);
    expect(e.attr.ino).toBe(BigInt(st.ino));
    expect(e.entryValid).toBe(1n);
    const body = drv.ok(Op.GETATTR, e.nodeid, [u32s(0, 0), u64s(0)]);
    expect(body.length).toBe(ATTR_OUT_SIZE);
    const a = parseAttr(body, 16);
    expect(a.mode).toBe(S_IFREG | 0o640);
    expect(a.mtime).toBe(BigInt(Math.floor(st.mtimeMs / 1000)));
    // The root and a second lookup of the same inode share a node id.
    expect(lookup(1, 'file').nodeid).toBe(e.nodeid);
    expect(parseAttr(drv.ok(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]), 16).mode & S_IFMT).toBe(S_IFDIR);
    expect(lookup(1, '.').nodeid).toBe(1);
    expect(drv.call(Op.LOOKUP, 1, [cstr('missing')]).error).toBe(-E.ENOENT);
  });

  it('FORGET gives lookups back and closes the fd at zero', () => {
    fs.writeFileSync(path.join(dir, 'f'), '');
    const id = lookup(1, 'f').nodeid;
    lookup(1, 'f');
    expect(server.openCounts().inodes).toBe(2);
    expect(drv.call(Op.FORGET, id, [u64s(1)]).written).toBe(0);
    expect(server.openCounts().inodes).toBe(2);
    expect(drv.call(Op.BATCH_FORGET, 0, [u32s(1, 0), u64s(id, 1)]).written).toBe(0);
    expect(server.openCounts().inodes).toBe(1);
    expect(drv.call(Op.GETATTR, id, [u32s(0, 0), u64s(0)]).error).toBe(-E.ENOENT);
    // The root is never forgotten.
    drv.call(Op.FORGET, 1, [u64s(100)]);
    expect(drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]).error).toBe(0);
  });

  it('READ returns host file data across reply segments', () => {
    const data = Buffer.alloc(20000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
    fs.writeFileSync(path.join(dir, 'blob'), data);
    const e = lookup(1, 'blob');
    const fh = openFile(e.nodeid, O_RDONLY);
    expect(readFile(fh, e.nodeid, 1000, 8192)).toEqual(data.subarray(1000, 9192));
    expect(readFile(fh, e.nodeid, 19990, 4096)).toEqual(data.subarray(19990));
    expect(readFile(fh, e.nodeid, 30000, 4096).length).toBe(0);
    expect(drv.ok(Op.FLUSH, e.nodeid, [u64s(fh), u32s(0, 0), u64s(0)]).length).toBe(0);
    expect(drv.ok(Op.RELEASE, e.nodeid, [u64s(fh), u32s(0, 0), u64s(0)]).length).toBe(0);
    expect(drv.call(Op.READ, e.nodeid, [u64s(fh, 0), u32s(10, 0), u64s(0), u32s(0, 0)]).error).toBe(-E.EBADF);
    expect(server.stats()).toMatchObject({ INIT: 1, LOOKUP: 1, OPEN: 1, READ: 4, FLUSH: 1, RELEASE: 1 });
  });

  it('CREATE + WRITE land on the host with the caller uid/gid and umask', () => {
    const r = drv.ok(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, S_IFREG | 0o666, 0o027, 0), cstr('new.txt')], {
      uid: 1001,
      gid: 1002,
    });
    expect(r.length).toBe(ENTRY_OUT_SIZE + OPEN_OUT_SIZE);
    const e = parseEntry(r);
    const fh = Number(r.readBigUInt64LE(ENTRY_OUT_SIZE));
    expect(e.attr.uid).toBe(1001);
    expect(e.attr.gid).toBe(1002);
    expect(e.attr.mode).toBe(S_IFREG | 0o640);
    const payload = Buffer.from('written through fuse\n'.repeat(500));
    expect(writeFile(fh, e.nodeid, 0, payload)).toBe(payload.length);
    expect(writeFile(fh, e.nodeid, payload.length, Buffer.from('tail'))).toBe(4);
    drv.ok(Op.FSYNC, e.nodeid, [u64s(fh), u32s(1, 0)]);
    drv.ok(Op.RELEASE, e.nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
    const host = path.join(dir, 'new.txt');
    expect(fs.readFileSync(host)).toEqual(Buffer.concat([payload, Buffer.from('tail')]));
    const st = fs.statSync(host);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([1001, 1002, 0o640]);
    // O_EXCL on an existing name fails; without it the file is opened (and truncated).
    expect(drv.call(Op.CREATE, 1, [u32s(O_CREAT | O_EXCL | O_WRONLY, 0o644, 0, 0), cstr('new.txt')]).error).toBe(-E.EEXIST);
    const again = drv.ok(Op.CREATE, 1, [u32s(O_CREAT | O_TRUNC | O_WRONLY, 0o600, 0, 0), cstr('new.txt')]);
    expect(parseEntry(again).nodeid).toBe(e.nodeid);
    expect(fs.statSync(host).size).toBe(0);
    expect(fs.statSync(host).mode & 0o7777).toBe(0o640); // an existing file keeps its mode
  });

  it('OPEN with O_TRUNC and write access truncates', () => {
    fs.writeFileSync(path.join(dir, 't'), 'abcdef');
    const e = lookup(1, 't');
    const fh = openFile(e.nodeid, O_WRONLY | O_TRUNC);
    expect(fs.readFileSync(path.join(dir, 't')).length).toBe(0);
    writeFile(fh, e.nodeid, 0, Buffer.from('xy'));
    expect(fs.readFileSync(path.join(dir, 't'), 'utf8')).toBe('xy');
  });

  it('MKDIR, MKNOD, SYMLINK, READLINK, LINK, RENAME, UNLINK, RMDIR', () => {
    const d = parseEntry(drv.ok(Op.MKDIR, 1, [u32s(0o777, 0o022), cstr('sub')], { uid: 500, gid: 501 }));
    let st = fs.statSync(path.join(dir, 'sub'));
    expect(st.isDirectory()).toBe(true);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([500, 501, 0o755]);
    expect(d.attr.mode).toBe(S_IFDIR | 0o755);
    expect(drv.call(Op.MKDIR, 1, [u32s(0o777, 0), cstr('sub')]).error).toBe(-E.EEXIST);

    const fifo = parseEntry(drv.ok(Op.MKNOD, d.nodeid, [u32s(S_IFIFO | 0o666, 0, 0o002, 0), cstr('pipe')], { uid: 7, gid: 8 }));
    expect(fifo.attr.mode).toBe(S_IFIFO | 0o664);
    st = fs.lstatSync(path.join(dir, 'sub', 'pipe'));
    expect(st.isFIFO()).toBe(true);
    expect([st.uid, st.gid]).toEqual([7, 8]);

    const l = parseEntry(drv.ok(Op.SYMLINK, d.nodeid, [cstr('ln'), cstr('../some/where')], { uid: 600, gid: 601 }));
    expect(l.attr.mode & S_IFMT).toBe(S_IFLNK);
    expect(fs.readlinkSync(path.join(dir, 'sub', 'ln'))).toBe('../some/where');
    st = fs.lstatSync(path.join(dir, 'sub', 'ln'));
    expect([st.uid, st.gid]).toEqual([600, 601]);
    expect(drv.ok(Op.READLINK, l.nodeid).toString()).toBe('../some/where');

    fs.writeFileSync(path.join(dir, 'orig'), 'data');
    const orig = lookup(1, 'orig');
    const hl = parseEntry(drv.ok(Op.LINK, d.nodeid, [u64s(orig.nodeid), cstr('hard')]));
    expect(hl.nodeid).toBe(orig.nodeid);
    expect(hl.attr.nlink).toBe(2);
    expect(fs.readFileSync(path.join(dir, 'sub', 'hard'), 'utf8')).toBe('data');

    drv.ok(Op.RENAME, 1, [u64s(d.nodeid), cstr('orig'), cstr('moved')]);
    expect(fs.existsSync(path.join(dir, 'orig'))).toBe(false);
    expect(fs.readFileSync(path.join(dir, 'sub', 'moved'), 'utf8')).toBe('data');
    // The node id follows the inode, not the old name.
    expect(parseAttr(drv.ok(Op.GETATTR, orig.nodeid, [u32s(0, 0), u64s(0)]), 16).size).toBe(4n);

    const NOREPLACE = 1;
    const EXCHANGE = 2;
    expect(drv.call(Op.RENAME2, d.nodeid, [u64s(d.nodeid), u32s(NOREPLACE, 0), cstr('moved'), cstr('hard')]).error).toBe(-E.EEXIST);
    fs.writeFileSync(path.join(dir, 'sub', 'other'), 'other');
    drv.ok(Op.RENAME2, d.nodeid, [u64s(d.nodeid), u32s(EXCHANGE, 0), cstr('moved'), cstr('other')]);
    expect(fs.readFileSync(path.join(dir, 'sub', 'moved'), 'utf8')).toBe('other');
    expect(drv.call(Op.RENAME2, d.nodeid, [u64s(d.nodeid), u32s(0x100, 0), cstr('moved'), cstr('x')]).error).toBe(-E.EINVAL);

    expect(drv.call(Op.RMDIR, 1, [cstr('sub')]).error).toBe(-E.ENOTEMPTY);
    for (const n of ['moved', 'other', 'hard', 'ln', 'pipe']) drv.ok(Op.UNLINK, d.nodeid, [cstr(n)]);
    expect(fs.readdirSync(path.join(dir, 'sub'))).toEqual([]);
    drv.ok(Op.RMDIR, 1, [cstr('sub')]);
    expect(fs.existsSync(path.join(dir, 'sub'))).toBe(false);
  });

  it('creates device nodes with the rdev the guest encoded', () => {
    const rdev = (5 << 8) | 1; // new_encode_dev(5, 1): /dev/console
    const e = parseEntry(drv.ok(Op.MKNOD, 1, [u32s(S_IFCHR | 0o600, rdev, 0, 0), cstr('console')]));
    expect(e.attr.mode).toBe(S_IFCHR | 0o600);
    expect(e.attr.rdev).toBe(rdev);
    const st = fs.lstatSync(path.join(dir, 'console'));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(rdev);
  });

  it('new nodes in a setgid directory keep its group', () => {
    const sg = path.join(dir, 'sg');
    fs.mkdirSync(sg);
    fs.chownSync(sg, 0, 777);
    fs.chmodSync(sg, 0o2775);
    const p = lookup(1, 'sg');
    const d = parseEntry(drv.ok(Op.MKDIR, p.nodeid, [u32s(0o755, 0), cstr('child')], { uid: 10, gid: 20 }));
    expect(d.attr.gid).toBe(777);
    expect(d.attr.uid).toBe(10);
    expect(d.attr.mode).toBe(S_IFDIR | 0o2755);
    const f = parseEntry(drv.ok(Op.CREATE, p.nodeid, [u32s(O_CREAT | O_WRONLY, 0o644, 0, 0), cstr('f')], { uid: 10, gid: 20 }));
    expect([f.attr.uid, f.attr.gid]).toEqual([10, 777]);
  });

  it('READDIR and READDIRPLUS list every entry with offsets that resume', () => {
    const names = ['a', 'bb', 'c.txt', 'dir', 'ln'];
    for (let i = 0; i < 40; i++) names.push(`file-with-a-longer-name-${i}`);
    for (const n of names) {
      if (n === 'dir') fs.mkdirSync(path.join(dir, n));
      else if (n === 'ln') fs.symlinkSync('/etc/passwd', path.join(dir, n));
      else fs.writeFileSync(path.join(dir, n), n);
    }
    const plain = listDir(1, false, 512);
    expect(plain.map((d) => d.name).sort()).toEqual(['.', '..', ...names].sort());
    expect(plain.find((d) => d.name === 'dir')!.type).toBe(4); // DT_DIR
    expect(plain.find((d) => d.name === 'ln')!.type).toBe(10); // DT_LNK

    const before = server.openCounts().inodes;
    const plus = listDir(1, true, 1024);
    expect(plus.map((d) => d.name).sort()).toEqual(['.', '..', ...names].sort());
    for (const d of plus) {
      if (d.name === '.' || d.name === '..') {
        expect(d.entry!.nodeid).toBe(0);
        continue;
      }
      expect(d.entry!.nodeid).toBeGreaterThan(1);
      expect(d.entry!.attr.ino).toBe(d.ino);
      const st = fs.lstatSync(path.join(dir, d.name));
      expect(d.entry!.attr.mode).toBe(st.mode);
    }
    expect(server.openCounts().inodes).toBe(before + names.length);
    // Records are 8-byte aligned.
    const fh = drv.ok(Op.OPENDIR, 1, [u32s(0, 0)]).readBigUInt64LE(0);
    const body = drv.ok(Op.READDIR, 1, [u64s(fh, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]);
    expect(body.length % 8).toBe(0);
    expect(drv.call(Op.READDIR, 1, [u64s(fh + 99n, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]).error).toBe(-E.EBADF);
    expect(drv.call(Op.OPENDIR, lookup(1, 'a').nodeid, [u32s(0, 0)]).error).toBe(-E.ENOTDIR);
    expect(drv.call(Op.OPEN, 1, [u32s(0, 0)]).error).toBe(-E.EISDIR);
  });

  it('SETATTR changes mode, owner, size and times (also through an fh)', () => {
    const f = path.join(dir, 's');
    fs.writeFileSync(f, '0123456789');
    const e = lookup(1, 's');
    const setattr = (valid: number, o: { fh?: number; size?: number; atime?: number; mtime?: number; mode?: number; uid?: number; gid?: number }) =>
      drv.call(Op.SETATTR, e.nodeid, [
        u32s(valid, 0),
        u64s(o.fh ?? 0, o.size ?? 0, 0, o.atime ?? 0, o.mtime ?? 0, 0),
        u32s(0, 0, 0, o.mode ?? 0, 0, o.uid ?? 0, o.gid ?? 0, 0),
      ]);
    let r = setattr(FATTR_MODE | FATTR_UID | FATTR_GID, { mode: 0o4711, uid: 4000, gid: 4001 });
    expect(r.error).toBe(0);
    expect(r.body.length).toBe(ATTR_OUT_SIZE);
    let st = fs.statSync(f);
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o4711, 4000, 4001]);
    expect(parseAttr(r.body, 16).mode).toBe(S_IFREG | 0o4711);

    r = setattr(FATTR_SIZE, { size: 3 });
    expect(r.error).toBe(0);
    expect(fs.readFileSync(f, 'utf8')).toBe('012');

    const fh = openFile(e.nodeid, O_RDWR);
    expect(setattr(FATTR_SIZE | FATTR_FH, { fh, size: 1 }).error).toBe(0);
    expect(fs.readFileSync(f, 'utf8')).toBe('0');

    expect(setattr(FATTR_ATIME | FATTR_MTIME, { atime: 1_000_000, mtime: 2_000_000 }).error).toBe(0);
    st = fs.statSync(f);
    expect([st.atimeMs, st.mtimeMs]).toEqual([1e9, 2e9]);
    const now = Date.now() / 1000;
    expect(setattr(FATTR_MTIME | FATTR_MTIME_NOW, {}).error).toBe(0);
    st = fs.statSync(f);
    expect(st.atimeMs).toBe(1e9); // untouched
    expect(Math.abs(st.mtimeMs / 1000 - now)).toBeLessThan(5);

    fs.mkdirSync(path.join(dir, 'd'));
    const d = lookup(1, 'd');
    expect(
      drv.call(Op.SETATTR, d.nodeid, [u32s(FATTR_SIZE, 0), u64s(0, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0, 0, 0, 0, 0)]).error,
    ).toBe(-E.EISDIR);
  });

  it('xattrs on files and directories', () => {
    fs.writeFileSync(path.join(dir, 'x'), '');
    const e = lookup(1, 'x');
    const value = Buffer.from('hello');
    drv.ok(Op.SETXATTR, e.nodeid, [u32s(value.length, 0), cstr('user.test'), value]);
    expect(drv.ok(Op.GETXATTR, e.nodeid, [u32s(0, 0), cstr('user.test')]).readUInt32LE(0)).toBe(5);
    expect(drv.ok(Op.GETXATTR, e.nodeid, [u32s(64, 0), cstr('user.test')]).toString()).toBe('hello');
    expect(drv.call(Op.GETXATTR, e.nodeid, [u32s(2, 0), cstr('user.test')]).error).toBe(-E.ERANGE);
    expect(drv.ok(Op.LISTXATTR, e.nodeid, [u32s(256, 0)]).toString()).toContain('user.test\0');
    expect(drv.call(Op.SETXATTR, e.nodeid, [u32s(1, 1), cstr('user.test'), Buffer.from('z')]).error).toBe(-E.EEXIST);
    drv.ok(Op.REMOVEXATTR, e.nodeid, [cstr('user.test')]);
    expect(drv.call(Op.GETXATTR, e.nodeid, [u32s(64, 0), cstr('user.test')]).error).toBe(-E.ENODATA);
    drv.ok(Op.SETXATTR, 1, [u32s(1, 0), cstr('user.dir'), Buffer.from('d')]);
    expect(drv.ok(Op.GETXATTR, 1, [u32s(8, 0), cstr('user.dir')]).toString()).toBe('d');
  });

  it('STATFS, ACCESS, FALLOCATE, LSEEK and unknown opcodes', () => {
    const sf = drv.ok(Op.STATFS, 1);
    expect(sf.length).toBe(STATFS_OUT_SIZE);
    const host = fs.statfsSync(dir);
    expect(sf.readUInt32LE(40)).toBe(host.bsize);
    expect(sf.readBigUInt64LE(0)).toBe(BigInt(host.blocks));

    fs.writeFileSync(path.join(dir, 'p'), '');
    fs.chmodSync(path.join(dir, 'p'), 0o640);
    fs.chownSync(path.join(dir, 'p'), 100, 200);
    const e = lookup(1, 'p');
    expect(drv.call(Op.ACCESS, e.nodeid, [u32s(4 | 2, 0)], { uid: 100, gid: 1 }).error).toBe(0);
    expect(drv.call(Op.ACCESS, e.nodeid, [u32s(4, 0)], { uid: 5, gid: 200 }).error).toBe(0);
    expect(drv.call(Op.ACCESS, e.nodeid, [u32s(2, 0)], { uid: 5, gid: 200 }).error).toBe(-E.EACCES);
    expect(drv.call(Op.ACCESS, e.nodeid, [u32s(4, 0)], { uid: 5, gid: 5 }).error).toBe(-E.EACCES);
    expect(drv.call(Op.ACCESS, e.nodeid, [u32s(1, 0)], { uid: 0, gid: 0 }).error).toBe(-E.EACCES);

    const fh = openFile(e.nodeid, O_RDWR);
    drv.ok(Op.FALLOCATE, e.nodeid, [u64s(fh, 0, 1 << 20), u32s(0, 0)]);
    expect(fs.statSync(path.join(dir, 'p')).size).toBe(1 << 20);
    writeFile(fh, e.nodeid, 65536, Buffer.from('data'));
    const SEEK_DATA = 3;
    const pos = drv.ok(Op.LSEEK, e.nodeid, [u64s(fh, 0), u32s(SEEK_DATA, 0)]).readBigUInt64LE(0);
    expect(pos).toBeLessThanOrEqual(65536n);
    expect(drv.call(Op.LSEEK, e.nodeid, [u64s(fh, 0), u32s(1, 0)]).error).toBe(-E.EINVAL);

    expect(drv.call(Op.GETLK, e.nodeid, [Buffer.alloc(48)]).error).toBe(-E.ENOSYS);
    expect(drv.call(9999, 1).error).toBe(-E.ENOSYS);
    expect(server.stats()['UNKNOWN']).toBe(1);
  });

  it('readonly mode refuses every change', () => {
    const ro = new FuseServer({ root: dir, readonly: true });
    try {
      const d = new FuseDriver(ro);
      initServer(d);
      fs.writeFileSync(path.join(dir, 'r'), 'keep');
      const e = parseEntry(d.ok(Op.LOOKUP, 1, [cstr('r')]));
      expect(d.call(Op.MKDIR, 1, [u32s(0o755, 0), cstr('n')]).error).toBe(-E.EROFS);
      expect(d.call(Op.UNLINK, 1, [cstr('r')]).error).toBe(-E.EROFS);
      expect(d.call(Op.OPEN, e.nodeid, [u32s(O_WRONLY, 0)]).error).toBe(-E.EROFS);
      expect(d.call(Op.CREATE, 1, [u32s(O_CREAT | O_WRONLY, 0o644, 0, 0), cstr('c')]).error).toBe(-E.EROFS);
      const fh = Number(d.ok(Op.OPEN, e.nodeid, [u32s(O_RDONLY, 0)]).readBigUInt64LE(0));
      expect(d.call(Op.WRITE, e.nodeid, [u64s(fh, 0), u32s(1, 0), u64s(0), u32s(0, 0), Buffer.from('x')]).error).toBe(-E.EROFS);
      expect(fs.readFileSync(path.join(dir, 'r'), 'utf8')).toBe('keep');
      expect(fs.readdirSync(dir)).toEqual(['r']);
    } finally {
      ro.close();
    }
  });
});
