// Late configuration through a real device worker (from dist/): DeviceHost
// forwards `configure` to the worker, which answers in order per device;
// refusals (second configure, kind mismatch, unknown device, a device with
// nothing to configure) come back as rejections, and a worker that is gone
// rejects at once. The net device owns the passt socket once attached: the
// worker closes it when it stops.
import { mmioTransport, published } from '../helpers/mmio-transport.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { scratch } from '../helpers/husk.js';
import { DeviceHost, type DeviceAttachment } from '../../src/vmm/vhost-user/device-host.js';
import type { MmioWorkerTransport } from '../../src/vmm/virtio/mmio-backend.js';
import { closeFd, memfdCreate, readFd } from '../../src/sys/io.js';
import { socketPair } from '../../src/sys/unix-socket.js';

const MEM = 1 << 20;
let tmp: ReturnType<typeof scratch>;
const fds: number[] = [];
beforeAll(() => { tmp = scratch('husk-devconf-'); });
afterAll(() => { fds.forEach(closeFd); tmp.cleanup(); });

const transport = (memFd: number, queues: number): MmioWorkerTransport => mmioTransport(memFd, MEM, queues, fds);

describe('DeviceHost.configure', () => {
  it('configures a deferred fs device and a net device in one worker, and relays refusals', async () => {
    const memFd = memfdCreate('husk-devconf-test', MEM);
    fds.push(memFd);
    const root = path.join(tmp.dir, 'root');
    fs.mkdirSync(root, { recursive: true });
    const atts: DeviceAttachment[] = [
      { spec: { kind: 'fs', tag: 'binds', deferred: true }, transport: transport(memFd, 2) },
      { spec: { kind: 'net', fd: -1, mac: '02:00:00:00:00:01', mtu: 1500 }, transport: transport(memFd, 3) },
      { spec: { kind: 'vsock', guestCid: 3, udsPath: path.join(tmp.dir, 'v.sock') }, transport: transport(memFd, 3) },
    ];
    const host = new DeviceHost(atts, () => {});
    for (const a of atts) expect(await published(a)).toBe(true);
    expect((await host.stats())[0]).toEqual({ badChains: 0, unconfigured: 0 });

    await expect(host.configure(0, { kind: 'net', fd: 0 })).rejects.toThrow(/device 0 is fs, not net/);
    await expect(host.configure(0, { kind: 'fs', exports: [{ name: '..', path: root, readonly: true }] })).rejects.toThrow();
    await expect(host.configure(0, { kind: 'fs', exports: [{ name: 'r', path: root, readonly: true }] })).resolves.toBeUndefined();
    await expect(host.configure(0, { kind: 'fs', root })).rejects.toThrow(/configured already/);
    await expect(host.configure(2, { kind: 'net', fd: 0 })).rejects.toThrow(/device 2 is vsock, not net/);
    await expect(host.configure(3, { kind: 'fs', root })).rejects.toThrow(/no device 3/);

    const [mine, peer] = socketPair();
    const [other, otherPeer] = socketPair();
    fds.push(peer, other, otherPeer);
    // two requests in flight at once are answered in order
    const [first, second] = await Promise.allSettled([
      host.configure(1, { kind: 'net', fd: mine }),
      host.configure(1, { kind: 'net', fd: other }),
    ]);
    expect(first.status).toBe('fulfilled');
    expect(second.status).toBe('rejected');
    expect(String((second as PromiseRejectedResult).reason)).toMatch(/attached to passt already/);

    await host.stop();
    // the worker owned `mine` and closed it: passt's end sees EOF; `other` stayed the caller's
    expect(readFd(peer, Buffer.alloc(8))).toBe(0);
    expect(fs.existsSync(`/proc/self/fd/${other}`)).toBe(true);
    await expect(host.configure(0, { kind: 'fs', root })).rejects.toThrow(/not running/);
  });

  it('rejects when the worker never started', async () => {
    const memFd = memfdCreate('husk-devconf-test', MEM);
    fds.push(memFd);
    const atts: DeviceAttachment[] = [{ spec: { kind: 'fs', tag: 'binds', deferred: true }, transport: transport(memFd, 2) }];
    const never = new DeviceHost(atts, () => {}, { startWhen: Promise.resolve(false) });
    await never.closed;
    await expect(never.configure(0, { kind: 'fs', root: tmp.dir })).rejects.toThrow(/not running/);
  });
});
