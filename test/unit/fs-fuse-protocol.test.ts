// Wire-level pieces: struct encoders, chain gathering/scattering, fd hygiene.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FuseServer } from '../../src/vmm/devices/fs/fuse-server.js';
import { FuseDriver, cstr, parseEntry, segment, u32s, u64s } from '../../src/vmm/devices/fs/fuse-driver.js';
import { Reply, Request } from '../../src/vmm/devices/fs/fuse-io.js';
import {
  ATTR_OUT_SIZE, ENTRY_OUT_SIZE, Op, align8, attrOut, decodeDev, encodeDev, entryOut, opName, timeoutFromSeconds,
} from '../../src/vmm/devices/fs/fuse-protocol.js';
import { fstat, openat, close, AT_FDCWD, O_PATH, O_CLOEXEC, makedev } from '../../src/sys/fsops.js';

describe('codecs', () => {
  it('encodes dev_t like the kernel (new_encode_dev) and glibc (makedev)', () => {
    expect(encodeDev(8, 1)).toBe(0x801);
    expect(encodeDev(259, 0x12345)).toBe(((0x12345 & 0xff) | (259 << 8) | ((0x12345 & ~0xff) << 12)) >>> 0);
    expect(decodeDev(encodeDev(259, 0x12345))).toEqual({ major: 259, minor: 0x12345 });
    expect(makedev(8, 1)).toBe(0x801n);
    expect(makedev(0x1234, 0x56789)).toBe(0x100056723489n); // glibc makedev()
  });

  it('struct sizes and dirent alignment', () => {
    const fd = openat(AT_FDCWD, os.tmpdir(), O_PATH | O_CLOEXEC);
    const st = fstat(fd);
    close(fd);
    expect(entryOut(5, st, timeoutFromSeconds(1.5)).length).toBe(ENTRY_OUT_SIZE);
    expect(ENTRY_OUT_SIZE).toBe(128);
    expect(attrOut(st, timeoutFromSeconds(1)).length).toBe(ATTR_OUT_SIZE);
    expect(ATTR_OUT_SIZE).toBe(104);
    expect(timeoutFromSeconds(1.5)).toEqual({ sec: 1n, nsec: 500_000_000 });
    expect([align8(24), align8(25), align8(31), align8(32)]).toEqual([24, 32, 32, 32]);
    expect(opName(Op.READDIRPLUS)).toBe('READDIRPLUS');
    expect(opName(12345)).toBe('UNKNOWN');
  });
});

describe('chains', () => {
  it('gathers a request from one-byte segments and keeps WRITE data in place', () => {
    const drv = new FuseDriver({ handle: () => 0 });
    const bytes = drv.request(Op.WRITE, 7, [u64s(3, 100), u32s(5, 0), u64s(0), u32s(0, 0), Buffer.from('hello')]);
    const segs = segment(bytes, [1]);
    const req = new Request(segs);
    expect([req.opcode, req.nodeid, req.id(0), Number(req.u64(8)), req.u32(16)]).toEqual([Op.WRITE, 7, 3, 100, 5]);
    expect(req.args.length).toBe(40);
    const data = req.payload(40, 5);
    expect(data.length).toBe(5);
    expect(data[0]!.buffer).toBe(bytes.buffer); // views, not copies
    expect(Buffer.concat(data).toString()).toBe('hello');
    expect(() => req.payload(40, 6)).toThrow();
  });

  it('scatters replies over segments and refuses to overflow', () => {
    const buf = new Uint8Array(40);
    const out = new Reply(segment(buf, [3, 5]));
    expect(out.send(9n, 0, Buffer.from('0123456789abcdefXYZ'))).toBe(35);
    const b = Buffer.from(buf);
    expect(b.readUInt32LE(0)).toBe(35);
    expect(b.readBigUInt64LE(8)).toBe(9n);
    expect(b.subarray(16, 35).toString()).toBe('0123456789abcdefXYZ');
    expect(out.send(9n, 0, Buffer.alloc(25))).toBe(0);
    expect(out.header(9n, 0, 30)).toBe(0);
    expect(new Reply([]).send(1n, -5, null)).toBe(0);
  });

  it('serves a whole session through one-byte segments', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fuse-seg-'));
    const server = new FuseServer({ root: dir });
    try {
      const drv = new FuseDriver(server);
      drv.readSplit = [1];
      drv.writeSplit = [1, 2, 3];
      drv.ok(Op.INIT, 0, [u32s(7, 36, 0, 0x7fffffff, 0), Buffer.alloc(44)]);
      const r = drv.ok(Op.CREATE, 1, [u32s(0o102, 0o644, 0, 0), cstr('f')]);
      const e = parseEntry(r);
      const fh = r.readBigUInt64LE(ENTRY_OUT_SIZE);
      const data = Buffer.from('segmented '.repeat(300));
      const w = drv.ok(Op.WRITE, e.nodeid, [u64s(fh, 0), u32s(data.length, 0), u64s(0), u32s(0, 0), data]);
      expect(w.readUInt32LE(0)).toBe(data.length);
      const back = drv.ok(Op.READ, e.nodeid, [u64s(fh, 0), u32s(8192, 0), u64s(0), u32s(0, 0)]);
      expect(back).toEqual(data);
      expect(fs.readFileSync(path.join(dir, 'f'))).toEqual(data);
    } finally {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('fd hygiene', () => {
  it('closes every fd it opened', () => {
    const fds = () => fs.readdirSync('/proc/self/fd').length;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fuse-fd-'));
    for (const n of ['a', 'b', 'c']) fs.writeFileSync(path.join(dir, n), n);
    const before = fds();
    const server = new FuseServer({ root: dir });
    const drv = new FuseDriver(server);
    drv.ok(Op.INIT, 0, [u32s(7, 36, 0, 0x7fffffff, 0), Buffer.alloc(44)]);
    const ids: number[] = [];
    for (const n of ['a', 'b', 'c']) {
      const e = parseEntry(drv.ok(Op.LOOKUP, 1, [cstr(n)]));
      ids.push(e.nodeid);
      drv.ok(Op.OPEN, e.nodeid, [u32s(0, 0)]);
    }
    const dfh = drv.ok(Op.OPENDIR, 1, [u32s(0, 0)]).readBigUInt64LE(0);
    drv.ok(Op.READDIRPLUS, 1, [u64s(dfh, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]);
    expect(fds()).toBeGreaterThan(before + 6);
    // Forgetting every lookup closes the O_PATH fds; close() does the rest.
    drv.call(Op.BATCH_FORGET, 0, [u32s(3, 0), ...ids.map((id) => u64s(id, 2))]);
    expect(server.openCounts()).toEqual({ inodes: 1, handles: 4 });
    server.close();
    expect(fds()).toBe(before);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
