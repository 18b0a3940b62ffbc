// The /proc view podman top reads in the VMM's mount namespace: the PROCFS
// snapshot parser (guest data) and the FUSE file system built on it.
import { describe, expect, it } from 'vitest';
import { FuseDriver, cstr, parseDirents, parseEntry, u32s, u64s } from '../../src/vmm/devices/fs/fuse-driver.js';
import { Op, FUSE_ROOT_ID } from '../../src/vmm/devices/fs/fuse-protocol.js';
import { TlvWriter, Tag } from '../../src/agent/protocol.js';
import { parseProcFiles } from '../../src/runtime/container-view/snapshot.js';
import { ProcViewFs } from '../../src/runtime/container-view/proc-fs.js';

function procFile(pid: number, name: string, data: string | Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt32LE(pid);
  return Buffer.concat([h, Buffer.from(name), Buffer.from([0]), Buffer.isBuffer(data) ? data : Buffer.from(data)]);
}

function payload(files: Buffer[]): Uint8Array {
  const w = new TlvWriter();
  for (const f of files) w.bytes(Tag.PROC_FILE, f);
  return w.finish();
}

const SAMPLE = payload([
  procFile(0, 'stat', 'cpu 1 2 3\nbtime 1795340052\n'),
  procFile(0, 'uptime', '1.73 1.20\n'),
  procFile(0, 'ns/pid', 'pid:[4026532076]'),
  procFile(1, 'stat', '1 (sleep) S 0 1 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 150 1 1\n'),
  procFile(1, 'status', 'Name:\tsleep\nPPid:\t0\nUid:\t0\t0\t0\t0\n'),
  procFile(1, 'cmdline', 'sleep\0100000\0'),
  procFile(7, 'stat', '7 (sh) S 0 7 7 0'),
  procFile(7, 'status', 'Name:\tsh\n'),
  procFile(7, 'cmdline', 'sh\0'),
]);

describe('PROCFS snapshot', () => {
  it('keeps the top files, the namespace and every complete process', () => {
    const s = parseProcFiles(SAMPLE, 1000);
    expect([...s.top.keys()]).toEqual(['stat', 'uptime']);
    expect(s.pidNamespace).toBe('pid:[4026532076]');
    expect([...s.processes.keys()]).toEqual([1, 7]);
    expect(s.processes.get(1)!.get('cmdline')!.toString()).toBe('sleep\0100000\0');
    expect(s.takenAt).toBe(1000);
  });

  it('drops what a guest should not send: unknown names, huge pids, oversized files, half-listed processes, bad links', () => {
    const s = parseProcFiles(payload([
      procFile(0, 'environ', 'SECRET=1'),
      procFile(0, 'ns/pid', '../../etc/passwd'),
      procFile(0, 'stat', Buffer.alloc(5000, 0x41)),
      procFile(5_000_000, 'stat', 'x'),
      procFile(3, 'stat', '3 (a) S'),
      procFile(3, 'status', 'Name: a'), // no cmdline: exited while listed
      procFile(4, 'maps', 'x'),
      Buffer.from([1, 2, 3]),
    ]));
    expect(s.top.size).toBe(0);
    expect(s.pidNamespace).toBeUndefined();
    expect(s.processes.size).toBe(0);
  });

  it('rejects a payload whose attributes overrun it', () => {
    const bad = Buffer.from(payload([procFile(1, 'stat', 'x')])).subarray(0, 9);
    expect(() => parseProcFiles(bad)).toThrow(/overruns|truncated/);
  });
});

describe('the /proc view file system', () => {
  function mounted() {
    const fsys = new ProcViewFs();
    const drv = new FuseDriver(fsys);
    drv.ok(Op.INIT, 0, [u32s(7, 38, 65536, 0)]);
    fsys.setSnapshot(parseProcFiles(SAMPLE));
    return { fsys, drv };
  }
  const lookup = (drv: FuseDriver, parent: number, name: string) => parseEntry(drv.ok(Op.LOOKUP, parent, [cstr(name)]));
  function readAll(drv: FuseDriver, nodeid: number): string {
    const fh = drv.ok(Op.OPEN, nodeid, [u32s(0, 0)]).readBigUInt64LE(0);
    const data = drv.ok(Op.READ, nodeid, [u64s(fh, 0), u32s(65536, 0), u64s(0), u32s(0, 0)]).toString('latin1');
    drv.ok(Op.RELEASE, nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
    return data;
  }
  function list(drv: FuseDriver, nodeid: number): string[] {
    const fh = drv.ok(Op.OPENDIR, nodeid, [u32s(0, 0)]).readBigUInt64LE(0);
    const names = parseDirents(drv.ok(Op.READDIR, nodeid, [u64s(fh, 0), u32s(65536, 0), u64s(0), u32s(0, 0)]), false).map((d) => d.name);
    drv.ok(Op.RELEASEDIR, nodeid, [u64s(fh), u32s(0, 0), u64s(0)]);
    return names;
  }

  it('lists the container\'s pids and the top files at its root', () => {
    const { drv } = mounted();
    expect(list(drv, FUSE_ROOT_ID)).toEqual(['.', '..', 'stat', 'uptime', '1', '7']);
  });

  it('serves each process\'s files and the ns/pid link as the guest sent them', () => {
    const { drv } = mounted();
    const p1 = lookup(drv, FUSE_ROOT_ID, '1');
    expect(p1.attr.mode & 0o170000).toBe(0o040000);
    expect(list(drv, p1.nodeid)).toEqual(['.', '..', 'stat', 'status', 'cmdline', 'ns']);
    expect(readAll(drv, lookup(drv, p1.nodeid, 'cmdline').nodeid)).toBe('sleep\0100000\0');
    expect(readAll(drv, lookup(drv, p1.nodeid, 'status').nodeid)).toContain('Name:\tsleep');
    const link = lookup(drv, lookup(drv, p1.nodeid, 'ns').nodeid, 'pid');
    expect(drv.ok(Op.READLINK, link.nodeid).toString()).toBe('pid:[4026532076]');
    expect(readAll(drv, lookup(drv, FUSE_ROOT_ID, 'stat').nodeid)).toContain('btime 1795340052');
  });

  it('answers ENOENT for anything else, host pids and self included', () => {
    const { drv } = mounted();
    for (const name of ['2', 'self', 'thread-self', 'meminfo', '..x']) expect(drv.call(Op.LOOKUP, FUSE_ROOT_ID, [cstr(name)]).error).toBe(-2);
    const p1 = lookup(drv, FUSE_ROOT_ID, '1');
    expect(drv.call(Op.LOOKUP, p1.nodeid, [cstr('environ')]).error).toBe(-2);
    expect(drv.call(Op.LOOKUP, p1.nodeid, [cstr('..')]).error).toBe(-22);
    expect(drv.call(Op.GETATTR, 999_999_999, [u32s(0, 0), u64s(0)]).error).toBe(-2);
  });

  it('follows the newest snapshot: a process that is gone disappears, open files keep their contents', () => {
    const { fsys, drv } = mounted();
    const p7 = lookup(drv, FUSE_ROOT_ID, '7');
    const cmd = lookup(drv, p7.nodeid, 'cmdline').nodeid;
    const fh = drv.ok(Op.OPEN, cmd, [u32s(0, 0)]).readBigUInt64LE(0);
    fsys.setSnapshot(parseProcFiles(payload([procFile(0, 'uptime', '9 9\n')])));
    expect(list(drv, FUSE_ROOT_ID)).toEqual(['.', '..', 'uptime']);
    expect(drv.call(Op.GETATTR, p7.nodeid, [u32s(0, 0), u64s(0)]).error).toBe(-2);
    expect(drv.ok(Op.READ, cmd, [u64s(fh, 0), u32s(100, 0), u64s(0), u32s(0, 0)]).toString()).toBe('sh\0');
  });

  it('is read-only and bounds its handles', () => {
    const { drv } = mounted();
    const stat = lookup(drv, FUSE_ROOT_ID, 'stat').nodeid;
    expect(drv.call(Op.OPEN, stat, [u32s(1, 0)]).error).toBe(-30); // O_WRONLY: EROFS
    expect(drv.call(Op.WRITE, stat, [u64s(1, 0), u32s(1, 0), u64s(0), u32s(0, 0), Buffer.from('x')]).error).toBe(-38);
    expect(drv.call(Op.READ, stat, [u64s(12345, 0), u32s(10, 0), u64s(0), u32s(0, 0)]).error).toBe(-9);
    let last = 0;
    for (let i = 0; i < 1100; i++) last = drv.call(Op.OPEN, stat, [u32s(0, 0)]).error;
    expect(last).toBe(-24); // EMFILE
  });

  it('tells a listing of the root (the moment to take a snapshot) from other requests', () => {
    const drv = new FuseDriver({ handle: () => 0 });
    expect(ProcViewFs.startsListing(drv.request(Op.OPENDIR, FUSE_ROOT_ID, [u32s(0, 0)]))).toBe(true);
    expect(ProcViewFs.startsListing(drv.request(Op.OPENDIR, 16 + 8, [u32s(0, 0)]))).toBe(false);
    expect(ProcViewFs.startsListing(drv.request(Op.LOOKUP, FUSE_ROOT_ID, [cstr('1')]))).toBe(false);
  });
});
