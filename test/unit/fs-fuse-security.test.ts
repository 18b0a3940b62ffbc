// The guest is untrusted: escape attempts and malformed requests must end in
// error replies, never in host paths outside the share or an exception.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FuseServer } from '../../src/vmm/devices/fs/fuse-server.js';
import { FuseDriver, cstr, parseEntry, u32s, u64s } from '../../src/vmm/devices/fs/fuse-driver.js';
import { IN_HEADER_SIZE, Op } from '../../src/vmm/devices/fs/fuse-protocol.js';

const E = os.constants.errno;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

let top: string; // holds the share and a "secret" next to it
let dir: string;
let server: FuseServer;
let drv: FuseDriver;
const logs: string[] = [];

beforeEach(() => {
  top = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fuse-sec-'));
  dir = path.join(top, 'share');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(top, 'secret'), 'host secret');
  fs.mkdirSync(path.join(dir, 'a'));
  fs.writeFileSync(path.join(dir, 'a', 'inside'), 'inside');
  fs.symlinkSync('/etc/passwd', path.join(dir, 'passwd-link'));
  fs.symlinkSync('../secret', path.join(dir, 'rel-link'));
  fs.symlinkSync('/etc', path.join(dir, 'etc-link'));
  logs.length = 0;
  server = new FuseServer({ root: dir, log: (m) => logs.push(m) });
  drv = new FuseDriver(server);
  drv.ok(Op.INIT, 0, [u32s(7, 36, 0, 0x7fffffff, 0), Buffer.alloc(44)]);
});

afterEach(() => {
  server.close();
  fs.rmSync(top, { recursive: true, force: true });
});

function lookupErr(parent: number, name: string | Buffer): number {
  return drv.call(Op.LOOKUP, parent, [cstr(name)]).error;
}

describe('names never leave the share', () => {
  it('refuses "..", multi-component and empty names', () => {
    const a = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr('a')])).nodeid;
    for (const bad of ['..', '../../..', 'a/b', '../secret', '/etc/passwd', 'a/../..', '']) {
      expect(lookupErr(1, bad), bad).toBe(-E.EINVAL);
      expect(lookupErr(a, bad), bad).toBe(-E.EINVAL);
    }
    expect(lookupErr(1, 'x'.repeat(256))).toBe(-E.ENAMETOOLONG);
    // A name with no NUL terminator in the request.
    expect(drv.call(Op.LOOKUP, 1, [Buffer.from('secret')]).error).toBe(-E.EINVAL);
    // "." is the directory itself, not its parent.
    expect(parseEntry(drv.ok(Op.LOOKUP, a, [cstr('.')])).nodeid).toBe(a);
  });

  it('treats a symlink to /etc/passwd as a symlink, never as its target', () => {
    const l = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr('passwd-link')]));
    expect(l.attr.mode & S_IFMT).toBe(S_IFLNK);
    expect(l.attr.size).toBe(BigInt('/etc/passwd'.length));
    expect(l.attr.ino).toBe(BigInt(fs.lstatSync(path.join(dir, 'passwd-link')).ino));
    expect(drv.call(Op.OPEN, l.nodeid, [u32s(O_RDONLY, 0)]).error).toBe(-E.ELOOP);
    expect(drv.call(Op.OPEN, l.nodeid, [u32s(O_RDWR, 0)]).error).toBe(-E.ELOOP);
    expect(drv.call(Op.OPENDIR, l.nodeid, [u32s(0, 0)]).error).toBe(-E.ENOTDIR);
    expect(drv.ok(Op.READLINK, l.nodeid).toString()).toBe('/etc/passwd');
    // xattrs and truncation must not reach the target either.
    expect(drv.call(Op.GETXATTR, l.nodeid, [u32s(64, 0), cstr('user.x')]).error).toBe(-E.ENOTSUP);
    expect(drv.call(Op.SETXATTR, l.nodeid, [u32s(1, 0), cstr('user.x'), Buffer.from('1')]).error).toBe(-E.ENOTSUP);
    const trunc = drv.call(Op.SETATTR, l.nodeid, [u32s(1 << 3, 0), u64s(0, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0, 0, 0, 0, 0)]);
    expect(trunc.error).toBe(-E.EINVAL);
    const chmod = drv.call(Op.SETATTR, l.nodeid, [u32s(1, 0), u64s(0, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0o777, 0, 0, 0, 0)]);
    expect(chmod.error).toBe(-E.EOPNOTSUPP);
    // chown changes the link itself.
    const chown = drv.call(Op.SETATTR, l.nodeid, [u32s(2, 0), u64s(0, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0, 0, 4321, 0, 0)]);
    expect(chown.error).toBe(0);
    expect(fs.lstatSync(path.join(dir, 'passwd-link')).uid).toBe(4321);
    expect(fs.statSync('/etc/passwd').uid).toBe(0);
  });

  it('cannot look up through a symlinked directory', () => {
    const etc = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr('etc-link')]));
    expect(etc.attr.mode & S_IFMT).toBe(S_IFLNK);
    expect(lookupErr(etc.nodeid, 'passwd')).toBe(-E.ENOTDIR);
    expect(drv.call(Op.CREATE, etc.nodeid, [u32s(O_CREAT | O_WRONLY, 0o644, 0, 0), cstr('evil')]).error).toBe(-E.ENOTDIR);
    expect(drv.call(Op.MKDIR, etc.nodeid, [u32s(0o755, 0), cstr('evil')]).error).toBe(-E.ENOTDIR);
    expect(fs.existsSync('/etc/evil')).toBe(false);
  });

  it('CREATE over an existing symlink does not write to its target', () => {
    const before = fs.readFileSync(path.join(top, 'secret'), 'utf8');
    const r = drv.call(Op.CREATE, 1, [u32s(O_CREAT | O_WRONLY | 0o1000, 0o644, 0, 0), cstr('rel-link')]);
    expect(r.error).toBe(-E.ELOOP);
    expect(fs.readFileSync(path.join(top, 'secret'), 'utf8')).toBe(before);
    expect(fs.lstatSync(path.join(dir, 'rel-link')).isSymbolicLink()).toBe(true);
  });

  it('RENAME and LINK with ".." names are refused and nothing moves out', () => {
    const a = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr('a')])).nodeid;
    const inside = parseEntry(drv.ok(Op.LOOKUP, a, [cstr('inside')])).nodeid;
    const attempts: [number, number, string, string][] = [
      [a, a, 'inside', '../../outside'],
      [a, 1, 'inside', '..'],
      [1, 1, '..', 'stolen'],
      [a, a, '../../secret', 'stolen'],
      [1, a, 'a', '../x'],
    ];
    for (const [from, to, oldName, newName] of attempts) {
      expect(drv.call(Op.RENAME, from, [u64s(to), cstr(oldName), cstr(newName)]).error, `${oldName} -> ${newName}`).toBe(-E.EINVAL);
      expect(drv.call(Op.RENAME2, from, [u64s(to), u32s(0, 0), cstr(oldName), cstr(newName)]).error).toBe(-E.EINVAL);
    }
    expect(drv.call(Op.LINK, 1, [u64s(inside), cstr('../linked')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.SYMLINK, 1, [cstr('../evil'), cstr('/etc/passwd')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.UNLINK, a, [cstr('../../secret')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.RMDIR, a, [cstr('..')]).error).toBe(-E.EINVAL);
    expect(fs.readdirSync(top).sort()).toEqual(['secret', 'share']);
    expect(fs.readFileSync(path.join(dir, 'a', 'inside'), 'utf8')).toBe('inside');
    // The root directory itself cannot be renamed away through ".".
    expect(drv.call(Op.RENAME, 1, [u64s(1), cstr('.'), cstr('moved')]).error).not.toBe(0);
    expect(fs.existsSync(dir)).toBe(true);
  });

  it('LINK of a symlink links the symlink, never the host file it names', () => {
    const l = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr('passwd-link')]));
    const r = drv.call(Op.LINK, 1, [u64s(l.nodeid), cstr('hard-to-link')]);
    expect(r.error).toBe(0);
    expect(parseEntry(r.body).nodeid).toBe(l.nodeid);
    const st = fs.lstatSync(path.join(dir, 'hard-to-link'));
    expect(st.isSymbolicLink()).toBe(true);
    expect(st.ino).toBe(fs.lstatSync(path.join(dir, 'passwd-link')).ino);
    expect(fs.statSync('/etc/passwd').nlink).toBe(1);
  });

  it('a symlink the guest creates is stored, never followed', () => {
    const l = parseEntry(drv.ok(Op.SYMLINK, 1, [cstr('esc'), cstr('../../../../../../etc/shadow')]));
    expect(drv.call(Op.OPEN, l.nodeid, [u32s(O_RDONLY, 0)]).error).toBe(-E.ELOOP);
    expect(lookupErr(l.nodeid, 'x')).toBe(-E.ENOTDIR);
    expect(drv.ok(Op.READLINK, l.nodeid).toString()).toBe('../../../../../../etc/shadow');
  });

  it('never opens device nodes or fifos on the host', () => {
    const rdev = (1 << 8) | 1; // 1:1 is /dev/mem
    const mem = parseEntry(drv.ok(Op.MKNOD, 1, [u32s(S_IFCHR | 0o666, rdev, 0, 0), cstr('mem')]));
    expect(drv.call(Op.OPEN, mem.nodeid, [u32s(O_RDONLY, 0)]).error).toBe(-E.EACCES);
    expect(drv.call(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('mem')]).error).toBe(-E.EACCES);
    expect(drv.call(Op.SETATTR, mem.nodeid, [u32s(1 << 3, 0), u64s(0, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0, 0, 0, 0, 0)]).error).toBe(-E.EINVAL);
  });
});

describe('malformed requests', () => {
  it('unknown node ids and file handles get errors', () => {
    expect(drv.call(Op.GETATTR, 999, [u32s(0, 0), u64s(0)]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.LOOKUP, 999, [cstr('a')]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.GETATTR, 0xffffffffffffffffn, [u32s(0, 0), u64s(0)]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.READ, 1, [u64s(12345, 0), u32s(10, 0), u64s(0), u32s(0, 0)]).error).toBe(-E.EBADF);
    expect(drv.call(Op.WRITE, 1, [u64s(2n ** 63n, 0), u32s(1, 0), u64s(0), u32s(0, 0), Buffer.from('x')]).error).toBe(-E.EBADF);
    expect(drv.call(Op.RELEASE, 1, [u64s(7), u32s(0, 0), u64s(0)]).error).toBe(-E.EBADF);
    expect(drv.call(Op.RENAME, 1, [u64s(424242), cstr('a'), cstr('b')]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.LINK, 1, [u64s(424242), cstr('b')]).error).toBe(-E.ENOENT);
    // A directory handle is not a file handle and vice versa.
    const dfh = drv.ok(Op.OPENDIR, 1, [u32s(0, 0)]).readBigUInt64LE(0);
    expect(drv.call(Op.READ, 1, [u64s(dfh, 0), u32s(10, 0), u64s(0), u32s(0, 0)]).error).toBe(-E.EBADF);
    // FORGET of unknown ids has no reply and no effect.
    expect(drv.call(Op.FORGET, 31337, [u64s(5)]).written).toBe(0);
  });

  it('truncated and inconsistent requests get error replies', () => {
    const short = drv.raw(Buffer.from([1, 2, 3]));
    expect(short.written).toBe(16);
    expect(short.error).toBe(-E.EINVAL);

    // Header claims more bytes than the chain holds: the unique is still echoed.
    const req = drv.request(Op.LOOKUP, 1, [cstr('a')], { len: 4096 });
    const r = drv.raw(req);
    expect(r.error).toBe(-E.EINVAL);
    expect(r.unique).toBe(req.readBigUInt64LE(8));
    expect(drv.raw(drv.request(Op.LOOKUP, 1, [cstr('a')], { len: 12 })).error).toBe(-E.EINVAL);

    // Extension area (fuse_in_header.total_extlen) larger than the request.
    const ext = drv.request(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]);
    ext.writeUInt16LE(100, 36);
    expect(drv.raw(ext).error).toBe(-E.EINVAL);
    // A trailing extension is never read as arguments: this MKDIR has no name.
    const withExt = drv.request(Op.MKDIR, 1, [u32s(0o755, 0), cstr('fromext')]);
    withExt.writeUInt16LE(1, 36);
    expect(drv.raw(withExt).error).toBe(-E.EINVAL);
    expect(fs.existsSync(path.join(dir, 'fromext'))).toBe(false);

    // Structs cut short.
    for (const op of [Op.READ, Op.WRITE, Op.SETATTR, Op.MKNOD, Op.MKDIR, Op.CREATE, Op.RENAME2, Op.OPEN, Op.RELEASE, Op.FALLOCATE, Op.LSEEK, Op.SETXATTR]) {
      expect(drv.call(op, 1, [Buffer.alloc(3)]).error, `op ${op}`).toBe(-E.EINVAL);
    }
    // WRITE claiming more data than it carries.
    const fs0 = parseEntry(drv.ok(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('w')]));
    expect(fs0.nodeid).toBeGreaterThan(1);
    expect(drv.call(Op.WRITE, fs0.nodeid, [u64s(1, 0), u32s(1 << 20, 0), u64s(0), u32s(0, 0), Buffer.from('abc')]).error).toBe(-E.EINVAL);
    // SETXATTR value size beyond the request.
    expect(drv.call(Op.SETXATTR, 1, [u32s(100, 0), cstr('user.a'), Buffer.from('x')]).error).toBe(-E.EINVAL);
    // RENAME whose second name is missing.
    expect(drv.call(Op.RENAME, 1, [u64s(1), cstr('a')]).error).toBe(-E.EINVAL);
    // BATCH_FORGET claiming a billion entries.
    expect(drv.call(Op.BATCH_FORGET, 0, [u32s(1e9, 0), u64s(1, 1)]).written).toBe(0);
    expect(drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]).error).toBe(0);
  });

  it('reply buffers that are too small yield 0 or a bare error', () => {
    const tiny = drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)], { outSize: 8 });
    expect(tiny.written).toBe(0);
    const small = drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)], { outSize: 40 });
    expect(small.written).toBe(16);
    expect(small.error).toBe(-E.EIO);
    expect(drv.call(Op.LOOKUP, 1, [cstr('a')], { outSize: 0 }).written).toBe(0);
  });

  it('survives random and mutated requests without throwing', () => {
    // mulberry32: small, deterministic, well spread over all bits.
    let seed = 0x9e3779b9;
    const rnd = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (n: number) => Math.floor(rnd() * n);
    const f = parseEntry(drv.ok(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('fz')]));
    const fh = 1;
    const io = (op: number) => drv.request(op, f.nodeid, [u64s(fh, 0), u32s(100, 0), u64s(0), u32s(0, 0), Buffer.from('data')]);
    const corpus = [
      drv.request(Op.LOOKUP, 1, [cstr('a')]),
      drv.request(Op.GETATTR, f.nodeid, [u32s(0, 0), u64s(0)]),
      drv.request(Op.SETATTR, f.nodeid, [u32s(0x1ff, 0), u64s(fh, 10, 0, 5, 5, 0), u32s(0, 0, 0, 0o644, 0, 0, 0, 0)]),
      drv.request(Op.MKDIR, 1, [u32s(0o755, 0), cstr('d')]),
      drv.request(Op.MKNOD, 1, [u32s(0o010644, 0, 0, 0), cstr('n')]),
      drv.request(Op.SYMLINK, 1, [cstr('s'), cstr('/etc/passwd')]),
      drv.request(Op.RENAME2, 1, [u64s(1), u32s(0, 0), cstr('fz'), cstr('fz')]),
      drv.request(Op.LINK, 1, [u64s(f.nodeid), cstr('l')]),
      drv.request(Op.OPEN, f.nodeid, [u32s(O_RDWR, 0)]),
      drv.request(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('c')]),
      io(Op.READ),
      io(Op.WRITE),
      drv.request(Op.OPENDIR, 1, [u32s(0, 0)]),
      drv.request(Op.READDIRPLUS, 1, [u64s(2, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]),
      drv.request(Op.SETXATTR, f.nodeid, [u32s(1, 0), cstr('user.a'), Buffer.from('v')]),
      drv.request(Op.GETXATTR, f.nodeid, [u32s(64, 0), cstr('user.a')]),
      drv.request(Op.LISTXATTR, f.nodeid, [u32s(64, 0)]),
      drv.request(Op.FALLOCATE, f.nodeid, [u64s(fh, 0, 100), u32s(0, 0)]),
      drv.request(Op.LSEEK, f.nodeid, [u64s(fh, 0), u32s(3, 0)]),
      drv.request(Op.BATCH_FORGET, 0, [u32s(2, 0), u64s(f.nodeid, 1, 2, 1)]),
      drv.request(Op.ACCESS, 1, [u32s(7, 0)]),
      drv.request(Op.STATFS, 1, []),
    ];
    const ops = new Map<string, number>();
    for (let i = 0; i < 5000; i++) {
      let b: Buffer;
      if (i % 10 === 0) {
        b = Buffer.alloc(int(300));
        for (let j = 0; j < b.length; j++) b[j] = int(256);
      } else {
        b = Buffer.from(corpus[int(corpus.length)]!);
        for (let m = 1 + int(4); m > 0; m--) {
          const what = int(6);
          if (what === 0 && b.length > 0) b[int(b.length)] = int(256);
          else if (what === 1) b = b.subarray(0, int(b.length + 1));
          else if (what === 2) b = Buffer.concat([b, Buffer.alloc(int(64), int(256))]);
          else if (what === 3 && b.length >= 4) b.writeUInt32LE(int(2) ? b.length : int(1 << 16), 0);
          else if (what === 4 && b.length >= 24) b.writeBigUInt64LE(BigInt(int(6)), 16);
          else if (what === 5 && b.length >= 48) b.writeBigUInt64LE(BigInt(int(8)), 40); // fh / node id args
        }
      }
      const r = drv.raw(b, int(4) === 0 ? int(200) : 70000);
      expect(r.written).toBeGreaterThanOrEqual(0);
      const op = b.length >= 8 ? b.readUInt32LE(4) : -1;
      ops.set(String(op), (ops.get(String(op)) ?? 0) + 1);
    }
    expect(ops.size).toBeGreaterThan(20);
    // Nothing escaped the share, nothing blew up, and the server still works.
    expect(fs.readdirSync(top).sort()).toEqual(['secret', 'share']);
    expect(fs.readFileSync(path.join(top, 'secret'), 'utf8')).toBe('host secret');
    expect(logs.filter((l) => !l.startsWith('fuse: INIT'))).toEqual([]);
    drv.ok(Op.INIT, 0, [u32s(7, 36, 0, 0x7fffffff, 0), Buffer.alloc(44)]);
    expect(drv.call(Op.GETATTR, 1, [u32s(0, 0), u64s(0)]).error).toBe(0);
  });
});
