// One device worker hosting several virtio-mmio devices (what the kvm
// engine does): both devices publish themselves into their own register
// state, statistics come back per device, stop ends the worker; and a host
// told never to start (the engine ended before its first KVM_RUN) spawns
// nothing and still resolves `closed`. Real worker threads (from dist/).
import { mmioTransport, published } from '../helpers/mmio-transport.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { scratch } from '../helpers/husk.js';
import { DeviceHost, type DeviceAttachment } from '../../src/vmm/vhost-user/device-host.js';
import { MmioState, W } from '../../src/vmm/virtio/mmio.js';
import type { MmioWorkerTransport } from '../../src/vmm/virtio/mmio-backend.js';
import { closeFd, memfdCreate } from '../../src/sys/io.js';

const MEM = 1 << 20;
let tmp: ReturnType<typeof scratch>;
const fds: number[] = [];
beforeAll(() => { tmp = scratch('husk-devhost-'); });
afterAll(() => { fds.forEach(closeFd); tmp.cleanup(); });

const transport = (memFd: number, queues: number): MmioWorkerTransport => mmioTransport(memFd, MEM, queues, fds);

function devices(): DeviceAttachment[] {
  const memFd = memfdCreate('husk-devhost-test', MEM);
  fds.push(memFd);
  const root = path.join(tmp.dir, 'root');
  fs.mkdirSync(root, { recursive: true });
  return [
    { spec: { kind: 'fs', tag: 'rootfs', root, readonly: true }, transport: transport(memFd, 2) },
    { spec: { kind: 'vsock', guestCid: 3, udsPath: path.join(tmp.dir, `v${fds.length}.sock`) }, transport: transport(memFd, 3) },
  ];
}

const stateOf = (a: DeviceAttachment) => new MmioState((a.transport as MmioWorkerTransport).state);

describe('DeviceHost with several devices in one worker', () => {
  it('publishes every device, reports statistics per device and stops', async () => {
    const atts = devices();
    const logs: string[] = [];
    const ready = Promise.withResolvers<number>();
    const host = new DeviceHost(atts, (m) => logs.push(m), { onReady: (us) => ready.resolve(us) });
    expect(await published(atts[0]!)).toBe(true);
    expect(await published(atts[1]!)).toBe(true);
    expect(stateOf(atts[0]!).get(W.deviceId)).toBe(26); // virtio-fs
    expect(stateOf(atts[1]!).get(W.deviceId)).toBe(19); // virtio-vsock
    expect(stateOf(atts[0]!).get(W.queueCount)).toBe(2);
    expect(stateOf(atts[1]!).get(W.queueCount)).toBe(3);
    expect(await ready.promise).toBeGreaterThan(0);
    const stats = await host.stats();
    expect(stats).toHaveLength(2);
    expect(stats[0]).toHaveProperty('badChains', 0); // the fs device's counters first
    const final = await host.stop();
    expect(final).toHaveLength(2);
    expect(await host.closed).toBe(final);
    // each device logs under its own kind
    expect(logs.filter((l) => l.endsWith('device stopped')).map((l) => l.split(':')[0]).sort()).toEqual(['fs', 'vsock']);
  });

  it('never starts when told so, and stop() before the start resolves at once without a worker', async () => {
    const atts = devices();
    const never = new DeviceHost(atts, () => {}, { startWhen: Promise.resolve(false) });
    expect(await never.closed).toEqual([{}, {}]);
    expect(await never.stats()).toEqual([{}, {}]);

    const later = Promise.withResolvers<boolean>();
    const stopped = new DeviceHost(atts, () => {}, { startWhen: later.promise });
    expect(await stopped.stop()).toEqual([{}, {}]);
    later.resolve(true); // too late: the host has ended
    await new Promise((r) => setTimeout(r, 500));
    expect(stateOf(atts[0]!).get(W.published)).toBe(0);
    expect(stateOf(atts[1]!).get(W.published)).toBe(0);
  });
});
