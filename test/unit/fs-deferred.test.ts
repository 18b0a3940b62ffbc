// A deferred virtio-fs device (pre-booted VMs): it exists with its queues,
// tag and config space before it knows what it serves, answers EIO until
// configure() gives it a root or exports, and refuses a second configure.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { VirtioFsDevice } from '../../src/vmm/devices/fs/virtio-fs.js';
import { FuseDriver, cstr, parseEntry, u32s, u64s } from '../../src/vmm/devices/fs/fuse-driver.js';
import { IN_HEADER_SIZE, OUT_HEADER_SIZE, Op } from '../../src/vmm/devices/fs/fuse-protocol.js';
import { FakeVirtioDriver } from '../helpers/fake-virtio-driver.js';
import { Poller } from '../../src/sys/io.js';

const E = os.constants.errno;
const KERNEL_FLAGS = 0x7fffffff;

let top: string;
let dev: VirtioFsDevice;
let logs: string[];

function init(d: FuseDriver): ReturnType<FuseDriver['call']> {
  return d.call(Op.INIT, 0, [u32s(7, 36, 128 * 1024, KERNEL_FLAGS, 0), Buffer.alloc(44)]);
}

/** Reads a whole small file through FUSE: LOOKUP of each path component, OPEN, READ. */
function readPath(d: FuseDriver, names: string[]): string {
  let node = 1;
  for (const n of names) node = parseEntry(d.ok(Op.LOOKUP, node, [cstr(n)])).nodeid;
  const fh = Number(d.ok(Op.OPEN, node, [u32s(0, 0)]).readBigUInt64LE(0));
  const data = d.ok(Op.READ, node, [u64s(fh, 0), u32s(4096, 0), u64s(0), u32s(0, 0)]).toString();
  d.ok(Op.RELEASE, node, [u64s(fh), u32s(0, 0), u64s(0)]);
  return data;
}

beforeEach(() => {
  top = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-fs-deferred-'));
  fs.mkdirSync(path.join(top, 'root'));
  fs.writeFileSync(path.join(top, 'root', 'hello'), 'from the root');
  fs.mkdirSync(path.join(top, 'data'));
  fs.writeFileSync(path.join(top, 'data', 'file'), 'bind source');
  logs = [];
  dev = new VirtioFsDevice({ tag: 'binds', deferred: true });
});
afterEach(() => {
  dev.close();
  fs.rmSync(top, { recursive: true, force: true });
});

describe('deferred virtio-fs device', () => {
  it('has its tag and queues before it is configured', () => {
    expect(dev.configured).toBe(false);
    expect(dev.queueCount).toBe(2);
    const c = dev.readConfig();
    expect(Buffer.from(c.subarray(0, 5)).toString()).toBe('binds');
    expect(new DataView(c.buffer).getUint32(36, true)).toBe(1);
  });

  it('answers EIO before configure (counted), then serves a root', () => {
    const d = new FuseDriver(dev);
    const before = init(d);
    expect(before.error).toBe(-E.EIO);
    expect(before.unique).toBe(1n);
    expect(d.call(Op.LOOKUP, 1, [cstr('hello')]).error).toBe(-E.EIO);
    // FORGET never gets a reply, configured or not
    expect(d.call(Op.FORGET, 5, [u64s(1)]).written).toBe(0);
    // a request too short to parse still gets EIO, not a crash
    expect(d.raw(Buffer.alloc(8)).error).toBe(-E.EIO);
    expect(dev.stats()).toEqual({ badChains: 0, unconfigured: 4 });

    dev.configure({ kind: 'fs', root: path.join(top, 'root') });
    expect(dev.configured).toBe(true);
    expect(init(d).error).toBe(0);
    expect(readPath(d, ['hello'])).toBe('from the root');
    expect(dev.stats()).toMatchObject({ INIT: 1, LOOKUP: 1, OPEN: 1, READ: 1, unconfigured: 4 });
  });

  it('serves exports once configured with them, read-only where asked', () => {
    const d = new FuseDriver(dev);
    expect(init(d).error).toBe(-E.EIO);
    dev.configure({ kind: 'fs', exports: [{ name: 'data', path: path.join(top, 'data'), readonly: true }] });
    expect(init(d).error).toBe(0);
    expect(readPath(d, ['data', 'file'])).toBe('bind source');
    const dir = parseEntry(d.ok(Op.LOOKUP, 1, [cstr('data')])).nodeid;
    const create = d.call(Op.CREATE, dir, [u32s(0o101, 0o644, 0o22, 0), cstr('new')]);
    expect(create.error).toBe(-E.EROFS);
    expect(fs.existsSync(path.join(top, 'data', 'new'))).toBe(false);
  });

  it('takes readonly from configure over the construction default', () => {
    dev.configure({ kind: 'fs', root: path.join(top, 'root'), readonly: true });
    const d = new FuseDriver(dev);
    expect(init(d).error).toBe(0);
    expect(d.call(Op.MKDIR, 1, [u32s(0o755, 0o22), cstr('x')]).error).toBe(-E.EROFS);
    expect(fs.existsSync(path.join(top, 'root', 'x'))).toBe(false);
  });

  it('refuses a second configure, and one after INIT was served, keeping the first tree', () => {
    dev.configure({ kind: 'fs', root: path.join(top, 'root') });
    expect(() => dev.configure({ kind: 'fs', root: path.join(top, 'data') })).toThrow(/configured already/);
    const d = new FuseDriver(dev);
    expect(init(d).error).toBe(0);
    expect(() => dev.configure({ kind: 'fs', exports: [] })).toThrow(/configured already/);
    expect(readPath(d, ['hello'])).toBe('from the root');
    // a device created with its root is configured from the start
    const eager = new VirtioFsDevice({ tag: 'rootfs', root: path.join(top, 'root') });
    try {
      const e = new FuseDriver(eager);
      expect(init(e).error).toBe(0);
      expect(() => eager.configure({ kind: 'fs', root: path.join(top, 'data') })).toThrow(/configured already/);
      expect(eager.stats()).not.toHaveProperty('unconfigured');
    } finally {
      eager.close();
    }
  });

  it('keeps the export validation: a bad configuration is refused and a good one still works', () => {
    const a = { name: 'a', path: path.join(top, 'data'), readonly: false };
    expect(() => dev.configure({ kind: 'fs', exports: [a, a] })).toThrow(/used twice/);
    expect(() => dev.configure({ kind: 'fs', exports: [{ ...a, name: '..' }] })).toThrow();
    expect(() => dev.configure({ kind: 'fs', root: path.join(top, 'missing') })).toThrow();
    expect(() => dev.configure({ kind: 'fs', root: path.join(top, 'root'), exports: [a] })).toThrow(/exactly one of root and exports/);
    expect(() => dev.configure({ kind: 'fs' })).toThrow(/exactly one of root and exports/);
    expect(() => dev.configure({ kind: 'net', fd: 0 })).toThrow(/cannot take a net configuration/);
    expect(dev.configured).toBe(false);
    dev.configure({ kind: 'fs', exports: [a] });
    const d = new FuseDriver(dev);
    expect(init(d).error).toBe(0);
    expect(readPath(d, ['a', 'file'])).toBe('bind source');
  });

  it('refuses root or exports together with deferred', () => {
    expect(() => new VirtioFsDevice({ tag: 't', deferred: true, root: top })).toThrow(/neither root nor exports/);
    expect(() => new VirtioFsDevice({ tag: 't', deferred: true, exports: [] })).toThrow(/neither root nor exports/);
  });

  it('completes requests on its virtqueue with EIO before configure', () => {
    const drv = new FakeVirtioDriver(4 << 20, 64, 2);
    const poller = new Poller();
    try {
      dev.attach({ memory: drv.mem, queue: (i) => drv.queues[i], poller, log: (m) => logs.push(m) });
      const req = new FuseDriver({ handle: () => 0 }).request(Op.LOOKUP, 1, [cstr('hello')]);
      const inAddr = drv.alloc(req.length);
      drv.bytes.set(req, inAddr);
      const outAddr = drv.alloc(4096);
      const head = drv.add(1, [{ addr: inAddr, len: req.length, write: false }, { addr: outAddr, len: 4096, write: true }]);
      dev.notify(1);
      expect(drv.used(1)).toEqual([{ head, len: OUT_HEADER_SIZE }]);
      const v = new DataView(drv.bytes.buffer, outAddr);
      expect(v.getInt32(4, true)).toBe(-E.EIO);
      expect(v.getBigUint64(8, true)).toBe(new DataView(req.buffer, req.byteOffset).getBigUint64(8, true));
      expect(req.length).toBeGreaterThan(IN_HEADER_SIZE);
      expect(logs.some((l) => l.includes('before the device was configured'))).toBe(true);
    } finally {
      poller.close();
    }
  });
});
