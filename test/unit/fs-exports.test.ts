// Multi-export mode: one FUSE server carries several host paths (the
// sources of a container's bind mounts) under a synthetic, read-only root.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FuseServer, type ExportSpec } from '../../src/vmm/devices/fs/fuse-server.js';
import { VirtioFsDevice } from '../../src/vmm/devices/fs/virtio-fs.js';
import { SYNTHETIC_ROOT_INO } from '../../src/vmm/devices/fs/synthetic-root.js';
import {
  FuseDriver, cstr, parseAttr, parseDirents, parseEntry, u32s, u64s, type Dirent, type Entry,
} from '../../src/vmm/devices/fs/fuse-driver.js';
import { ATTR_OUT_SIZE, FATTR_MODE, FATTR_SIZE, FATTR_UID, Op, STATFS_OUT_SIZE } from '../../src/vmm/devices/fs/fuse-protocol.js';

const E = os.constants.errno;
const O_RDONLY = 0;
const O_WRONLY = 1;
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_TRUNC = 0o1000;
const S_IFMT = 0o170000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFIFO = 0o010000;
const DT_DIR = 4;
const DT_REG = 8;

let top: string;
let server: FuseServer;
let drv: FuseDriver;
let specs: ExportSpec[];

function init(d: FuseDriver): void {
  d.ok(Op.INIT, 0, [u32s(7, 36, 128 * 1024, 0x7fffffff, 0), Buffer.alloc(44)]);
}

function lookup(parent: number, name: string): Entry {
  return parseEntry(drv.ok(Op.LOOKUP, parent, [cstr(name)]));
}

function getattr(nodeid: number): ReturnType<typeof parseAttr> {
  const body = drv.ok(Op.GETATTR, nodeid, [u32s(0, 0), u64s(0)]);
  expect(body.length).toBe(ATTR_OUT_SIZE);
  return parseAttr(body, 16);
}

function openFile(nodeid: number, flags: number): number {
  return Number(drv.ok(Op.OPEN, nodeid, [u32s(flags, 0)]).readBigUInt64LE(0));
}

function readAll(nodeid: number): string {
  const fh = openFile(nodeid, O_RDONLY);
  const data = drv.ok(Op.READ, nodeid, [u64s(fh, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]).toString();
  drv.ok(Op.RELEASE, nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
  return data;
}

function writeReq(nodeid: number, fh: number, data: string): ReturnType<FuseDriver['call']> {
  const b = Buffer.from(data);
  return drv.call(Op.WRITE, nodeid, [u64s(fh, 0), u32s(b.length, 0), u64s(0), u32s(0, 0), b]);
}

function listDir(nodeid: number, plus: boolean, size = 4096): Dirent[] {
  const fh = drv.ok(Op.OPENDIR, nodeid, [u32s(O_RDONLY, 0)]).readBigUInt64LE(0);
  const all: Dirent[] = [];
  let off = 0n;
  for (;;) {
    const ents = parseDirents(drv.ok(plus ? Op.READDIRPLUS : Op.READDIR, nodeid, [u64s(fh, off), u32s(size, 0), u64s(0), u32s(0, 0)]), plus);
    if (ents.length === 0) break;
    all.push(...ents);
    off = ents[ents.length - 1]!.off;
  }
  drv.ok(Op.RELEASEDIR, nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
  return all;
}

/** SETATTR arguments: fuse_setattr_in with `valid`, size, mode and uid. */
function setattrArgs(valid: number, o: { size?: number; mode?: number; uid?: number } = {}): Buffer[] {
  return [u32s(valid, 0), u64s(0, o.size ?? 0, 0, 0, 0, 0), u32s(0, 0, 0, o.mode ?? 0, 0, o.uid ?? 0, 0, 0)];
}

/** Every host file under `dir`, with its content (symlinks by target). */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const n of fs.readdirSync(d).sort()) {
      const p = path.join(d, n);
      const st = fs.lstatSync(p);
      const rel = path.relative(top, p);
      if (st.isDirectory()) {
        out[rel] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else if (st.isSymbolicLink()) out[rel] = `link ${fs.readlinkSync(p)}`;
      else out[rel] = `file ${(st.mode & 0o7777).toString(8)} ${st.uid} ${fs.readFileSync(p, 'utf8')}`;
    }
  };
  walk(dir);
  return out;
}

beforeEach(() => {
  top = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fuse-exp-'));
  fs.mkdirSync(path.join(top, 'data', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(top, 'data', 'a.txt'), 'alpha');
  fs.writeFileSync(path.join(top, 'data', 'sub', 'b.txt'), 'beta');
  fs.symlinkSync('../etc/secret', path.join(top, 'data', 'up-link'));
  fs.mkdirSync(path.join(top, 'etc'));
  fs.writeFileSync(path.join(top, 'etc', 'hosts'), '127.0.0.1 localhost\n');
  fs.writeFileSync(path.join(top, 'etc', 'resolv.conf'), 'nameserver 10.0.0.1\n');
  fs.writeFileSync(path.join(top, 'etc', 'secret'), 'host secret');
  fs.mkdirSync(path.join(top, 'out'));
  fs.mkdirSync(path.join(top, 'out2'));
  fs.writeFileSync(path.join(top, 'out', 'f'), 'in out');
  // The same directory again, reached through a symlink the host chose.
  fs.symlinkSync(path.join(top, 'data'), path.join(top, 'data-link'));
  specs = [
    { name: 'data', path: path.join(top, 'data'), readonly: true },
    { name: 'hosts', path: path.join(top, 'etc', 'hosts'), readonly: true },
    { name: 'resolv.conf', path: path.join(top, 'etc', 'resolv.conf'), readonly: false },
    { name: 'out', path: path.join(top, 'out'), readonly: false },
    { name: 'out2', path: path.join(top, 'out2'), readonly: false },
    { name: 'data-rw', path: path.join(top, 'data-link'), readonly: false },
  ];
  server = new FuseServer({ exports: specs });
  drv = new FuseDriver(server);
  init(drv);
});

afterEach(() => {
  server.close();
  fs.rmSync(top, { recursive: true, force: true });
});

describe('synthetic root', () => {
  it('is a read-only, root-owned directory listing the export names', () => {
    const a = getattr(1);
    expect(a.mode).toBe(S_IFDIR | 0o555);
    expect([a.uid, a.gid]).toEqual([0, 0]);
    expect(a.nlink).toBe(2 + specs.length);
    expect(a.ino).toBe(SYNTHETIC_ROOT_INO);
    // Stable across calls.
    expect(getattr(1)).toEqual(a);

    const names = ['.', '..', ...specs.map((s) => s.name)];
    const plain = listDir(1, false);
    expect(plain.map((d) => d.name)).toEqual(names);
    const byName = new Map(plain.map((d) => [d.name, d]));
    expect(byName.get('.')!.type).toBe(DT_DIR);
    expect(byName.get('.')!.ino).toBe(SYNTHETIC_ROOT_INO);
    expect(byName.get('data')!.type).toBe(DT_DIR);
    expect(byName.get('data')!.ino).toBe(BigInt(fs.statSync(path.join(top, 'data')).ino));
    expect(byName.get('hosts')!.type).toBe(DT_REG);
    expect(byName.get('hosts')!.ino).toBe(BigInt(fs.statSync(path.join(top, 'etc', 'hosts')).ino));

    // A tiny buffer still makes progress one entry at a time, and resumes.
    expect(listDir(1, false, 40).map((d) => d.name)).toEqual(names);

    const plus = listDir(1, true, 300);
    expect(plus.map((d) => d.name)).toEqual(names);
    for (const d of plus) {
      if (d.name === '.' || d.name === '..') {
        expect(d.entry!.nodeid).toBe(0);
        continue;
      }
      const e = lookup(1, d.name);
      expect(d.entry!.nodeid).toBe(e.nodeid);
      expect(d.entry!.attr).toEqual(e.attr);
    }
    expect(server.stats()).toMatchObject({ INIT: 1, GETATTR: 2, OPENDIR: 3, READDIR: expect.any(Number), READDIRPLUS: expect.any(Number), RELEASEDIR: 3 });
  });

  it('looks up exports by name only', () => {
    expect(lookup(1, '.').nodeid).toBe(1);
    expect(lookup(1, '.').attr.mode).toBe(S_IFDIR | 0o555);
    expect(drv.call(Op.LOOKUP, 1, [cstr('..')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.LOOKUP, 1, [cstr('nope')]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.LOOKUP, 1, [cstr('etc')]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.LOOKUP, 1, [cstr('data/a.txt')]).error).toBe(-E.EINVAL);
    // A prefix or a name with a trailing byte is not the export.
    expect(drv.call(Op.LOOKUP, 1, [cstr('dat')]).error).toBe(-E.ENOENT);
    expect(drv.call(Op.LOOKUP, 1, [cstr(Buffer.from([0x64, 0x61, 0x74, 0x61, 0xff]))]).error).toBe(-E.ENOENT);
    const data = lookup(1, 'data');
    expect(data.attr.mode & S_IFMT).toBe(S_IFDIR);
    expect(lookup(1, 'data').nodeid).toBe(data.nodeid);
    // An export path that is a symlink was resolved on the host: a directory.
    expect(lookup(1, 'data-rw').attr.mode & S_IFMT).toBe(S_IFDIR);
  });

  it('refuses every modification', () => {
    const out = lookup(1, 'out');
    const f = lookup(out.nodeid, 'f');
    const attempts: [string, ReturnType<FuseDriver['call']>][] = [
      ['setattr', drv.call(Op.SETATTR, 1, setattrArgs(FATTR_MODE, { mode: 0o777 }))],
      ['mkdir', drv.call(Op.MKDIR, 1, [u32s(0o755, 0), cstr('new')])],
      ['mknod', drv.call(Op.MKNOD, 1, [u32s(S_IFIFO | 0o644, 0, 0, 0), cstr('fifo')])],
      ['create', drv.call(Op.CREATE, 1, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('new')])],
      ['symlink', drv.call(Op.SYMLINK, 1, [cstr('ln'), cstr('/etc')])],
      ['link', drv.call(Op.LINK, 1, [u64s(f.nodeid), cstr('ln')])],
      ['unlink', drv.call(Op.UNLINK, 1, [cstr('hosts')])],
      ['rmdir', drv.call(Op.RMDIR, 1, [cstr('out')])],
      ['rename in root', drv.call(Op.RENAME, 1, [u64s(1), cstr('out'), cstr('moved')])],
      ['rename into root', drv.call(Op.RENAME, out.nodeid, [u64s(1), cstr('f'), cstr('f')])],
      ['rename2 out of root', drv.call(Op.RENAME2, 1, [u64s(out.nodeid), u32s(0, 0), cstr('out2'), cstr('x')])],
      ['setxattr', drv.call(Op.SETXATTR, 1, [u32s(1, 0), cstr('user.x'), Buffer.from('1')])],
      ['removexattr', drv.call(Op.REMOVEXATTR, 1, [cstr('user.x')])],
      ['access W_OK', drv.call(Op.ACCESS, 1, [u32s(2, 0)])],
    ];
    for (const [what, r] of attempts) expect(r.error, what).toBe(-E.EROFS);
    expect(drv.call(Op.OPEN, 1, [u32s(O_RDONLY, 0)]).error).toBe(-E.EISDIR);
    expect(drv.call(Op.READLINK, 1).error).toBe(-E.EINVAL);
    expect(fs.readdirSync(path.join(top, 'out'))).toEqual(['f']);
    expect(fs.readdirSync(top).sort()).toEqual(['data', 'data-link', 'etc', 'out', 'out2']);
  });

  it('answers the harmless requests sensibly', () => {
    const s = drv.ok(Op.STATFS, 1);
    expect(s.length).toBe(STATFS_OUT_SIZE);
    expect(s.readUInt32LE(40)).toBe(4096); // bsize
    expect(s.readUInt32LE(44)).toBe(255); // namelen
    expect(s.readUInt32LE(48)).toBe(4096); // frsize
    expect(s.readBigUInt64LE(16)).toBe(0n); // bavail: nothing can be created here
    expect(drv.call(Op.ACCESS, 1, [u32s(5, 0)], { uid: 1000, gid: 1000 }).error).toBe(0);
    expect(drv.call(Op.ACCESS, 1, [u32s(0, 0)]).error).toBe(0);
    expect(drv.call(Op.GETXATTR, 1, [u32s(64, 0), cstr('user.x')]).error).toBe(-E.ENODATA);
    expect(drv.ok(Op.LISTXATTR, 1, [u32s(0, 0)]).readUInt32LE(0)).toBe(0);
    const fh = drv.ok(Op.OPENDIR, 1, [u32s(O_RDONLY, 0)]).readBigUInt64LE(0);
    expect(drv.call(Op.FSYNCDIR, 1, [u64s(fh), u32s(0, 0)]).error).toBe(0);
    // A directory handle of the root is no file handle.
    expect(drv.call(Op.READ, 1, [u64s(fh, 0), u32s(10, 0), u64s(0), u32s(0, 0)]).error).toBe(-E.EBADF);
    expect(writeReq(1, Number(fh), 'x').error).toBe(-E.EBADF);
    drv.ok(Op.RELEASEDIR, 1, [u64s(fh), u32s(0, 0), u64s(0)]);
    // The root and the export roots survive FORGET and DESTROY.
    const data = lookup(1, 'data');
    drv.call(Op.FORGET, 1, [u64s(100)]);
    drv.call(Op.FORGET, data.nodeid, [u64s(100)]);
    expect(drv.call(Op.DESTROY, 0).error).toBe(0);
    expect(server.openCounts()).toEqual({ inodes: 1 + specs.length, handles: 0 });
    init(drv);
    expect(lookup(1, 'data').nodeid).toBe(data.nodeid);
    expect(readAll(lookup(data.nodeid, 'a.txt').nodeid)).toBe('alpha');
  });
});

describe('directory and file exports', () => {
  it('serve a directory export like the passthrough', () => {
    const data = lookup(1, 'data');
    expect(listDir(data.nodeid, false).map((d) => d.name).sort()).toEqual(['.', '..', 'a.txt', 'sub', 'up-link']);
    const plus = listDir(data.nodeid, true);
    const sub = plus.find((d) => d.name === 'sub')!.entry!;
    expect(sub.attr.mode & S_IFMT).toBe(S_IFDIR);
    expect(readAll(lookup(sub.nodeid, 'b.txt').nodeid)).toBe('beta');
    expect(readAll(lookup(data.nodeid, 'a.txt').nodeid)).toBe('alpha');
    // Symlinks below an export are never followed.
    const up = lookup(data.nodeid, 'up-link');
    expect(up.attr.mode & S_IFMT).toBe(S_IFLNK);
    expect(drv.call(Op.OPEN, up.nodeid, [u32s(O_RDONLY, 0)]).error).toBe(-E.ELOOP);
    expect(drv.call(Op.LOOKUP, up.nodeid, [cstr('x')]).error).toBe(-E.ENOTDIR);
    // No name climbs out of the export: "." is the export root itself.
    expect(lookup(data.nodeid, '.').nodeid).toBe(data.nodeid);
    expect(drv.call(Op.LOOKUP, data.nodeid, [cstr('..')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.LOOKUP, sub.nodeid, [cstr('..')]).error).toBe(-E.EINVAL);
    expect(drv.call(Op.LOOKUP, data.nodeid, [cstr('../etc')]).error).toBe(-E.EINVAL);
    const st = drv.ok(Op.STATFS, data.nodeid);
    expect(st.readUInt32LE(40)).toBeGreaterThan(0);
  });

  it('serve a file export as that file alone', () => {
    const hosts = lookup(1, 'hosts');
    expect(hosts.attr.mode & S_IFMT).toBe(S_IFREG);
    expect(hosts.attr.ino).toBe(BigInt(fs.statSync(path.join(top, 'etc', 'hosts')).ino));
    expect(readAll(hosts.nodeid)).toBe('127.0.0.1 localhost\n');
    const resolv = lookup(1, 'resolv.conf');
    expect(readAll(resolv.nodeid)).toBe('nameserver 10.0.0.1\n');

    // Its siblings cannot be named from it.
    for (const name of ['secret', 'resolv.conf', 'hosts', '.']) {
      expect(drv.call(Op.LOOKUP, hosts.nodeid, [cstr(name)]).error, name).toBe(-E.ENOTDIR);
    }
    for (const name of ['..', '../secret', '../etc/secret']) {
      expect(drv.call(Op.LOOKUP, hosts.nodeid, [cstr(name)]).error, name).toBe(-E.EINVAL);
    }
    expect(drv.call(Op.OPENDIR, hosts.nodeid, [u32s(O_RDONLY, 0)]).error).toBe(-E.ENOTDIR);
    expect(drv.call(Op.MKDIR, resolv.nodeid, [u32s(0o755, 0), cstr('x')]).error).toBe(-E.ENOTDIR);
    expect(drv.call(Op.CREATE, resolv.nodeid, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('x')]).error).toBe(-E.ENOTDIR);
    expect(drv.call(Op.RENAME, resolv.nodeid, [u64s(resolv.nodeid), cstr('secret'), cstr('x')]).error).toBe(-E.ENOTDIR);

    // No node id the server knows refers to the host directory or a sibling.
    const etc = fs.statSync(path.join(top, 'etc')).ino;
    const secret = fs.statSync(path.join(top, 'etc', 'secret')).ino;
    for (let id = 1; id < 64; id++) {
      const r = drv.call(Op.GETATTR, id, [u32s(0, 0), u64s(0)]);
      if (r.error !== 0) continue;
      const ino = parseAttr(r.body, 16).ino;
      expect(ino).not.toBe(BigInt(etc));
      expect(ino).not.toBe(BigInt(secret));
    }
    expect(fs.readFileSync(path.join(top, 'etc', 'secret'), 'utf8')).toBe('host secret');
  });

  it('writes through a read-write export land on the host', () => {
    const out = lookup(1, 'out');
    const c = drv.ok(Op.CREATE, out.nodeid, [u32s(O_CREAT | O_RDWR, 0o640, 0, 0), cstr('new.txt')]);
    const e = parseEntry(c);
    const fh = Number(c.readBigUInt64LE(c.length - 16));
    expect(writeReq(e.nodeid, fh, 'written').error).toBe(0);
    expect(drv.call(Op.FALLOCATE, e.nodeid, [u64s(fh, 0, 100), u32s(1, 0)]).error).toBe(0); // KEEP_SIZE
    drv.ok(Op.RELEASE, e.nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
    expect(fs.readFileSync(path.join(top, 'out', 'new.txt'), 'utf8')).toBe('written');
    const d = parseEntry(drv.ok(Op.MKDIR, out.nodeid, [u32s(0o750, 0), cstr('dir')]));
    drv.ok(Op.RENAME, out.nodeid, [u64s(d.nodeid), cstr('new.txt'), cstr('moved.txt')]);
    drv.ok(Op.SYMLINK, d.nodeid, [cstr('ln'), cstr('moved.txt')]);
    drv.ok(Op.LINK, out.nodeid, [u64s(e.nodeid), cstr('hard.txt')]);
    drv.ok(Op.SETATTR, e.nodeid, setattrArgs(FATTR_MODE, { mode: 0o600 }));
    drv.ok(Op.SETXATTR, e.nodeid, [u32s(2, 0), cstr('user.k'), Buffer.from('v1')]);
    drv.ok(Op.UNLINK, out.nodeid, [cstr('f')]);
    expect(fs.readFileSync(path.join(top, 'out', 'dir', 'moved.txt'), 'utf8')).toBe('written');
    expect(fs.statSync(path.join(top, 'out', 'hard.txt')).ino).toBe(fs.statSync(path.join(top, 'out', 'dir', 'moved.txt')).ino);
    expect(fs.statSync(path.join(top, 'out', 'hard.txt')).mode & 0o7777).toBe(0o600);
    expect(fs.readlinkSync(path.join(top, 'out', 'dir', 'ln'))).toBe('moved.txt');
    expect(fs.existsSync(path.join(top, 'out', 'f'))).toBe(false);

    // A read-write file export can be rewritten in place.
    const resolv = lookup(1, 'resolv.conf');
    const rfh = openFile(resolv.nodeid, O_WRONLY | O_TRUNC);
    expect(writeReq(resolv.nodeid, rfh, 'nameserver 1.1.1.1\n').error).toBe(0);
    expect(fs.readFileSync(path.join(top, 'etc', 'resolv.conf'), 'utf8')).toBe('nameserver 1.1.1.1\n');
    drv.ok(Op.SETATTR, resolv.nodeid, setattrArgs(FATTR_SIZE, { size: 10 }));
    expect(fs.readFileSync(path.join(top, 'etc', 'resolv.conf'), 'utf8')).toBe('nameserver');
  });
});

describe('read-only exports', () => {
  it('refuse every modifying operation with EROFS and leave the host alone', () => {
    const before = snapshot(top);
    const data = lookup(1, 'data');
    const a = lookup(data.nodeid, 'a.txt');
    const sub = lookup(data.nodeid, 'sub');
    const hosts = lookup(1, 'hosts');
    const fh = openFile(a.nodeid, O_RDONLY);
    const hfh = openFile(hosts.nodeid, O_RDONLY);
    const attempts: [string, ReturnType<FuseDriver['call']>][] = [
      ['setattr mode', drv.call(Op.SETATTR, a.nodeid, setattrArgs(FATTR_MODE, { mode: 0o777 }))],
      ['setattr size', drv.call(Op.SETATTR, a.nodeid, setattrArgs(FATTR_SIZE, { size: 0 }))],
      ['setattr uid', drv.call(Op.SETATTR, data.nodeid, setattrArgs(FATTR_UID, { uid: 1234 }))],
      ['setattr file export', drv.call(Op.SETATTR, hosts.nodeid, setattrArgs(FATTR_SIZE, { size: 0 }))],
      ['create', drv.call(Op.CREATE, data.nodeid, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('new')])],
      ['create existing', drv.call(Op.CREATE, data.nodeid, [u32s(O_CREAT | O_RDONLY, 0o644, 0, 0), cstr('a.txt')])],
      ['mknod', drv.call(Op.MKNOD, sub.nodeid, [u32s(S_IFIFO | 0o644, 0, 0, 0), cstr('fifo')])],
      ['mkdir', drv.call(Op.MKDIR, data.nodeid, [u32s(0o755, 0), cstr('d')])],
      ['symlink', drv.call(Op.SYMLINK, data.nodeid, [cstr('ln'), cstr('a.txt')])],
      ['link', drv.call(Op.LINK, sub.nodeid, [u64s(a.nodeid), cstr('hard')])],
      ['unlink', drv.call(Op.UNLINK, data.nodeid, [cstr('a.txt')])],
      ['rmdir', drv.call(Op.RMDIR, data.nodeid, [cstr('sub')])],
      ['rename', drv.call(Op.RENAME, data.nodeid, [u64s(sub.nodeid), cstr('a.txt'), cstr('a.txt')])],
      ['rename2', drv.call(Op.RENAME2, data.nodeid, [u64s(data.nodeid), u32s(2, 0), cstr('a.txt'), cstr('sub')])],
      ['write', writeReq(a.nodeid, fh, 'x')],
      ['write file export', writeReq(hosts.nodeid, hfh, 'x')],
      ['fallocate', drv.call(Op.FALLOCATE, a.nodeid, [u64s(fh, 0, 100), u32s(0, 0)])],
      ['setxattr', drv.call(Op.SETXATTR, a.nodeid, [u32s(1, 0), cstr('user.x'), Buffer.from('1')])],
      ['setxattr dir', drv.call(Op.SETXATTR, data.nodeid, [u32s(1, 0), cstr('user.x'), Buffer.from('1')])],
      ['removexattr', drv.call(Op.REMOVEXATTR, a.nodeid, [cstr('user.x')])],
      ['open O_WRONLY', drv.call(Op.OPEN, a.nodeid, [u32s(O_WRONLY, 0)])],
      ['open O_RDWR', drv.call(Op.OPEN, a.nodeid, [u32s(O_RDWR, 0)])],
      ['open O_TRUNC', drv.call(Op.OPEN, a.nodeid, [u32s(O_RDONLY | O_TRUNC, 0)])],
      ['open file export O_RDWR', drv.call(Op.OPEN, hosts.nodeid, [u32s(O_RDWR, 0)])],
      ['access W_OK', drv.call(Op.ACCESS, a.nodeid, [u32s(2, 0)])],
    ];
    for (const [what, r] of attempts) expect(r.error, what).toBe(-E.EROFS);
    // Reading still works.
    expect(drv.ok(Op.READ, a.nodeid, [u64s(fh, 0), u32s(100, 0), u64s(0), u32s(0, 0)]).toString()).toBe('alpha');
    expect(drv.call(Op.ACCESS, a.nodeid, [u32s(4, 0)]).error).toBe(0);
    expect(drv.call(Op.GETXATTR, a.nodeid, [u32s(0, 0), cstr('user.none')]).error).toBe(-E.ENODATA);
    expect(drv.call(Op.LISTXATTR, a.nodeid, [u32s(0, 0)]).error).toBe(0);
    expect(snapshot(top)).toEqual(before);
    const counts = server.stats();
    expect(counts['SETATTR']).toBe(4);
    expect(counts['WRITE']).toBe(2);
    expect(counts['OPEN']).toBe(6);
  });

  it('the server-wide readonly option makes every export read-only', () => {
    const ro = new FuseServer({ exports: specs, readonly: true });
    try {
      const d = new FuseDriver(ro);
      init(d);
      const out = parseEntry(d.ok(Op.LOOKUP, 1, [cstr('out')]));
      expect(d.call(Op.MKDIR, out.nodeid, [u32s(0o755, 0), cstr('n')]).error).toBe(-E.EROFS);
      const resolv = parseEntry(d.ok(Op.LOOKUP, 1, [cstr('resolv.conf')]));
      expect(d.call(Op.OPEN, resolv.nodeid, [u32s(O_WRONLY, 0)]).error).toBe(-E.EROFS);
    } finally {
      ro.close();
    }
    expect(fs.readdirSync(path.join(top, 'out'))).toEqual(['f']);
  });
});

describe('across exports', () => {
  it('RENAME and LINK between exports are EXDEV', () => {
    const out = lookup(1, 'out');
    const out2 = lookup(1, 'out2');
    const f = lookup(out.nodeid, 'f');
    expect(drv.call(Op.RENAME, out.nodeid, [u64s(out2.nodeid), cstr('f'), cstr('f')]).error).toBe(-E.EXDEV);
    expect(drv.call(Op.RENAME2, out.nodeid, [u64s(out2.nodeid), u32s(1, 0), cstr('f'), cstr('g')]).error).toBe(-E.EXDEV);
    expect(drv.call(Op.LINK, out2.nodeid, [u64s(f.nodeid), cstr('f')]).error).toBe(-E.EXDEV);
    // A read-only file must not gain a writable name through a hard link.
    const hosts = lookup(1, 'hosts');
    expect(drv.call(Op.LINK, out.nodeid, [u64s(hosts.nodeid), cstr('hosts')]).error).toBe(-E.EXDEV);
    // Nor may a read-only export's file be moved into a writable one (or back).
    const data = lookup(1, 'data');
    expect(drv.call(Op.RENAME, data.nodeid, [u64s(out.nodeid), cstr('a.txt'), cstr('a.txt')]).error).toBe(-E.EXDEV);
    expect(drv.call(Op.RENAME, out.nodeid, [u64s(data.nodeid), cstr('f'), cstr('f')]).error).toBe(-E.EXDEV);
    // The same host directory through two exports is still two exports.
    const dataRw = lookup(1, 'data-rw');
    expect(drv.call(Op.RENAME, dataRw.nodeid, [u64s(out.nodeid), cstr('a.txt'), cstr('a.txt')]).error).toBe(-E.EXDEV);
    expect(fs.readdirSync(path.join(top, 'out'))).toEqual(['f']);
    expect(fs.readdirSync(path.join(top, 'out2'))).toEqual([]);
    expect(fs.existsSync(path.join(top, 'data', 'a.txt'))).toBe(true);
    // Within one export both work.
    drv.ok(Op.LINK, out.nodeid, [u64s(f.nodeid), cstr('f2')]);
    drv.ok(Op.RENAME, out.nodeid, [u64s(out.nodeid), cstr('f2'), cstr('f3')]);
    expect(fs.readdirSync(path.join(top, 'out')).sort()).toEqual(['f', 'f3']);
  });

  it('one host directory exported read-only and read-write keeps both flags apart', () => {
    // Look up through the writable export first, so a table keyed only by
    // (dev, ino) would hand its node id to the read-only export.
    const rw = lookup(1, 'data-rw');
    const rwA = lookup(rw.nodeid, 'a.txt');
    const rwSub = listDir(rw.nodeid, true).find((d) => d.name === 'sub')!.entry!;
    const ro = lookup(1, 'data');
    const roA = lookup(ro.nodeid, 'a.txt');
    const roSub = listDir(ro.nodeid, true).find((d) => d.name === 'sub')!.entry!;
    expect(ro.nodeid).not.toBe(rw.nodeid);
    expect(roA.nodeid).not.toBe(rwA.nodeid);
    expect(roSub.nodeid).not.toBe(rwSub.nodeid);
    expect(ro.attr.ino).toBe(rw.attr.ino);
    expect(roA.attr.ino).toBe(rwA.attr.ino);

    const fh = openFile(rwA.nodeid, O_RDWR);
    expect(writeReq(rwA.nodeid, fh, 'ALPHA').error).toBe(0);
    expect(fs.readFileSync(path.join(top, 'data', 'a.txt'), 'utf8')).toBe('ALPHA');
    // The read-only view sees the change but cannot make one.
    expect(readAll(roA.nodeid)).toBe('ALPHA');
    expect(drv.call(Op.OPEN, roA.nodeid, [u32s(O_WRONLY, 0)]).error).toBe(-E.EROFS);
    expect(drv.call(Op.SETATTR, roA.nodeid, setattrArgs(FATTR_SIZE, { size: 0 })).error).toBe(-E.EROFS);
    expect(drv.call(Op.CREATE, roSub.nodeid, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('x')]).error).toBe(-E.EROFS);
    // A handle opened writable through one export is not usable via the other's node.
    expect(drv.call(Op.SETATTR, roA.nodeid, [u32s(FATTR_SIZE | (1 << 6), 0), u64s(fh, 0, 0, 0, 0, 0), u32s(0, 0, 0, 0, 0, 0, 0, 0)]).error).toBe(-E.EROFS);
    // And the writable side stays writable after the read-only lookups.
    parseEntry(drv.ok(Op.CREATE, rwSub.nodeid, [u32s(O_CREAT | O_RDWR, 0o644, 0, 0), cstr('x')]));
    expect(fs.existsSync(path.join(top, 'data', 'sub', 'x'))).toBe(true);
    expect(fs.readFileSync(path.join(top, 'data', 'a.txt'), 'utf8')).toBe('ALPHA');
  });
});

describe('construction', () => {
  const bad: [string, string][] = [
    ['', 'must not be empty'],
    ['.', 'reserved'],
    ['..', 'reserved'],
    ['a/b', 'single path component'],
    ['/abs', 'single path component'],
    ['nul\0byte', 'NUL'],
    ['x'.repeat(256), 'longer than 255 bytes'],
  ];
  for (const [name, why] of bad) {
    it(`rejects the export name ${JSON.stringify(name.slice(0, 20))}`, () => {
      expect(() => new FuseServer({ exports: [{ name, path: top, readonly: false }] })).toThrow(why);
    });
  }

  it('rejects duplicate names, bad paths and mixed modes with clear errors', () => {
    const a = { name: 'a', path: path.join(top, 'data'), readonly: false };
    expect(() => new FuseServer({ exports: [a, { ...a, readonly: true }] })).toThrow(/"a" is used twice/);
    expect(() => new FuseServer({ exports: [{ ...a, path: 'relative/dir' }] })).toThrow(/must be absolute/);
    expect(() => new FuseServer({ exports: [{ ...a, path: path.join(top, 'missing') }] })).toThrow(/cannot resolve/);
    expect(() => new FuseServer({ root: top, exports: [a] })).toThrow(/exactly one of root and exports/);
    expect(() => new FuseServer({})).toThrow(/exactly one of root and exports/);
    expect(() => new VirtioFsDevice({ tag: 'binds', exports: [a, a] })).toThrow(/used twice/);
    // The valid ones pass, and an empty export list is an empty root.
    const dev = new VirtioFsDevice({ tag: 'binds', exports: [a] });
    dev.close();
    const empty = new FuseServer({ exports: [] });
    try {
      const d = new FuseDriver(empty);
      init(d);
      const fh = d.ok(Op.OPENDIR, 1, [u32s(0, 0)]).readBigUInt64LE(0);
      const names = parseDirents(d.ok(Op.READDIR, 1, [u64s(fh, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]), false).map((x) => x.name);
      expect(names).toEqual(['.', '..']);
    } finally {
      empty.close();
    }
  });
});

describe('hostile requests', () => {
  it('random and mutated requests never write to read-only exports or outside', () => {
    const logs: string[] = [];
    // Read-only directory and file exports next to one writable export.
    const fz = new FuseServer({
      exports: [
        { name: 'data', path: path.join(top, 'data'), readonly: true },
        { name: 'hosts', path: path.join(top, 'etc', 'hosts'), readonly: true },
        { name: 'out', path: path.join(top, 'out'), readonly: false },
      ],
      log: (m) => logs.push(m),
    });
    try {
      const d = new FuseDriver(fz);
      init(d);
      const before = { data: snapshot(path.join(top, 'data')), etc: snapshot(path.join(top, 'etc')) };
      let seed = 0x2545f491;
      const rnd = (): number => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const int = (n: number) => Math.floor(rnd() * n);
      const names = ['data', 'hosts', 'out', 'a.txt', 'sub', 'up-link', 'f', '.', 'x'];
      const name = () => cstr(names[int(names.length)]!);
      const node = () => int(12);
      const make = (): Buffer => {
        const n = node();
        switch (int(16)) {
          case 0: return d.request(Op.LOOKUP, n, [name()]);
          case 1: return d.request(Op.SETATTR, n, setattrArgs(0x1ff & (1 << int(9)), { size: 0, mode: 0o777, uid: 7 }));
          case 2: return d.request(Op.MKDIR, n, [u32s(0o755, 0), name()]);
          case 3: return d.request(Op.CREATE, n, [u32s(O_CREAT | [O_RDONLY, O_WRONLY, O_RDWR | O_TRUNC][int(3)]!, 0o644, 0, 0), name()]);
          case 4: return d.request(Op.UNLINK, n, [name()]);
          case 5: return d.request(Op.RMDIR, n, [name()]);
          case 6: return d.request(Op.RENAME, n, [u64s(node()), name(), name()]);
          case 7: return d.request(Op.RENAME2, n, [u64s(node()), u32s(int(3), 0), name(), name()]);
          case 8: return d.request(Op.LINK, n, [u64s(node()), name()]);
          case 9: return d.request(Op.SYMLINK, n, [name(), cstr('/etc/passwd')]);
          case 10: return d.request(Op.OPEN, n, [u32s([O_RDONLY, O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC][int(4)]!, 0)]);
          case 11: return d.request(Op.WRITE, n, [u64s(int(6), 0), u32s(3, 0), u64s(0), u32s(0, 0), Buffer.from('pwn')]);
          case 12: return d.request(Op.OPENDIR, n, [u32s(0, 0)]);
          case 13: return d.request(Op.READDIRPLUS, n, [u64s(int(6), int(5)), u32s(4096, 0), u64s(0), u32s(0, 0)]);
          case 14: return d.request(Op.SETXATTR, n, [u32s(1, 0), cstr('user.a'), Buffer.from('v')]);
          default: return d.request(Op.FALLOCATE, n, [u64s(int(6), 0, 10), u32s(0, 0)]);
        }
      };
      for (let i = 0; i < 4000; i++) {
        let b = make();
        if (i % 3 === 0) {
          for (let m = 1 + int(3); m > 0; m--) {
            const what = int(3);
            if (what === 0) b[int(b.length)] = int(256);
            else if (what === 1) b = b.subarray(0, int(b.length + 1));
            else if (b.length >= 48) b.writeBigUInt64LE(BigInt(int(12)), 40);
          }
        }
        expect(d.raw(b).written).toBeGreaterThanOrEqual(0);
      }
      expect(snapshot(path.join(top, 'data'))).toEqual(before.data);
      expect(snapshot(path.join(top, 'etc'))).toEqual(before.etc);
      expect(fs.readdirSync(top).sort()).toEqual(['data', 'data-link', 'etc', 'out', 'out2']);
      expect(fs.readdirSync(path.join(top, 'out2'))).toEqual([]);
      expect(logs.filter((l) => !l.startsWith('fuse: INIT'))).toEqual([]);
      // Plenty of requests got past parsing, so the checks above mean something.
      expect(fz.stats()['LOOKUP']).toBeGreaterThan(100);
      expect(Object.values(fz.stats()).reduce((x, y) => x + y, 0)).toBe(4001);
    } finally {
      fz.close();
    }
  });
});
