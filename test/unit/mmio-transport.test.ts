// virtio-mmio (version 2) register state machine, as the Linux driver
// drives it: probe, feature negotiation, queue setup, DRIVER_OK, interrupt
// status/ack, reset; plus the device side turning ready queues into
// Virtqueues for an unchanged VirtioDevice.
import { describe, expect, it } from 'vitest';
import {
  MMIO_MAGIC, MmioRegisters, MmioState, Reg, Status, TRANSPORT_FEATURES, W, waitResetAck,
} from '../../src/vmm/virtio/mmio.js';
import { MmioBackend } from '../../src/vmm/virtio/mmio-backend.js';
import { VIRTIO_F_VERSION_1, type DeviceEnv, type VirtioDevice } from '../../src/vmm/virtio/device.js';
import { Poller, eventfd, eventfdSignal, closeFd, memfdCreate } from '../../src/sys/io.js';

function published(opts: Partial<{ features: bigint; queues: number; max: number; config: Uint8Array }> = {}) {
  const state = new MmioState();
  state.publish({
    deviceId: 26, deviceFeatures: opts.features ?? (1n << 3n), queueCount: opts.queues ?? 2,
    queueMaxSize: opts.max ?? 256, config: opts.config ?? new Uint8Array([0x72, 0x6f, 0x6f, 0x74, 0, 0, 0, 0]),
  });
  const events: string[] = [];
  const regs = new MmioRegisters(state, {
    changed: () => events.push('changed'),
    reset: () => events.push('reset'),
    notify: (q) => events.push(`notify${q}`),
  });
  return { state, regs, events };
}

/** What Linux's virtio_mmio + virtio core do up to FEATURES_OK. */
function negotiate(regs: MmioRegisters, accept: bigint): number {
  regs.write(Reg.Status, 4, 0);
  regs.write(Reg.Status, 4, Status.ACKNOWLEDGE);
  regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER);
  regs.write(Reg.DriverFeaturesSel, 4, 0);
  regs.write(Reg.DriverFeatures, 4, Number(accept & 0xffffffffn));
  regs.write(Reg.DriverFeaturesSel, 4, 1);
  regs.write(Reg.DriverFeatures, 4, Number(accept >> 32n));
  regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK);
  return regs.read(Reg.Status, 4);
}

function setupQueue(regs: MmioRegisters, q: number, num: number, desc: number, avail: number, used: number): void {
  regs.write(Reg.QueueSel, 4, q);
  regs.write(Reg.QueueNum, 4, num);
  regs.write(Reg.QueueDescLow, 4, desc); regs.write(Reg.QueueDescHigh, 4, 0);
  regs.write(Reg.QueueDriverLow, 4, avail); regs.write(Reg.QueueDriverHigh, 4, 0);
  regs.write(Reg.QueueDeviceLow, 4, used); regs.write(Reg.QueueDeviceHigh, 4, 0);
  regs.write(Reg.QueueReady, 4, 1);
}

describe('virtio-mmio registers', () => {
  it('identifies as a version 2 device with the published id, vendor and config', () => {
    const { regs } = published();
    expect(regs.read(Reg.MagicValue, 4)).toBe(MMIO_MAGIC);
    expect(regs.read(Reg.Version, 4)).toBe(2);
    expect(regs.read(Reg.DeviceID, 4)).toBe(26);
    expect(regs.read(Reg.Config, 4)).toBe(0x746f6f72);
    expect(regs.read(Reg.Config + 1, 1)).toBe(0x6f);
    expect(regs.read(Reg.Config + 2, 2)).toBe(0x746f);
    expect(regs.read(Reg.Config + 6, 4)).toBe(0); // crosses the end: reads 0
    expect(regs.read(Reg.Config + 200, 4)).toBe(0);
    expect(regs.read(Reg.MagicValue + 1, 4)).toBe(0); // unaligned
    expect(regs.read(Reg.SHMLenLow, 4)).toBe(0xffffffff); // no shared memory region
    expect(regs.read(Reg.SHMLenHigh, 4)).toBe(0xffffffff);
  });

  it('offers device features plus VERSION_1 and INDIRECT_DESC, selected by DeviceFeaturesSel', () => {
    const { regs } = published({ features: 1n << 3n });
    const offered = (1n << 3n) | TRANSPORT_FEATURES;
    regs.write(Reg.DeviceFeaturesSel, 4, 0);
    expect(regs.read(Reg.DeviceFeatures, 4)).toBe(Number(offered & 0xffffffffn));
    regs.write(Reg.DeviceFeaturesSel, 4, 1);
    expect(regs.read(Reg.DeviceFeatures, 4)).toBe(1); // bit 32 = VERSION_1
    regs.write(Reg.DeviceFeaturesSel, 4, 2);
    expect(regs.read(Reg.DeviceFeatures, 4)).toBe(0);
  });

  it('accepts FEATURES_OK only for a subset of the offer that includes VERSION_1', () => {
    const { regs, state } = published();
    expect(negotiate(regs, VIRTIO_F_VERSION_1 | (1n << 3n)) & Status.FEATURES_OK).toBeTruthy();
    expect(state.driverFeatures()).toBe(VIRTIO_F_VERSION_1 | (1n << 3n));
    // legacy driver (no VERSION_1): refused
    expect(negotiate(regs, 1n << 3n) & Status.FEATURES_OK).toBe(0);
    // bits we never offered are masked off when written, so the subset holds
    expect(negotiate(regs, VIRTIO_F_VERSION_1 | (1n << 40n)) & Status.FEATURES_OK).toBeTruthy();
    expect(state.driverFeatures()).toBe(VIRTIO_F_VERSION_1);
  });

  it('ignores feature writes outside the DRIVER phase and after FEATURES_OK', () => {
    const { regs, state } = published();
    regs.write(Reg.DriverFeatures, 4, 0xffffffff); // status 0
    expect(state.driverFeatures()).toBe(0n);
    negotiate(regs, VIRTIO_F_VERSION_1);
    regs.write(Reg.DriverFeaturesSel, 4, 0);
    regs.write(Reg.DriverFeatures, 4, 1 << 3);
    expect(state.driverFeatures()).toBe(VIRTIO_F_VERSION_1);
  });

  it('refuses status transitions that clear bits and DRIVER_OK without FEATURES_OK', () => {
    const { regs } = published();
    regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER);
    regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.DRIVER_OK);
    expect(regs.read(Reg.Status, 4)).toBe(Status.ACKNOWLEDGE | Status.DRIVER);
    regs.write(Reg.Status, 4, Status.ACKNOWLEDGE);
    expect(regs.read(Reg.Status, 4)).toBe(Status.ACKNOWLEDGE | Status.DRIVER);
  });

  it('sets up queues: size limits, ready only after FEATURES_OK, registers frozen while ready', () => {
    const { regs, state, events } = published({ max: 256 });
    regs.write(Reg.QueueSel, 4, 0);
    expect(regs.read(Reg.QueueNumMax, 4)).toBe(256);
    regs.write(Reg.QueueSel, 4, 7); // no such queue
    expect(regs.read(Reg.QueueNumMax, 4)).toBe(0);
    setupQueue(regs, 0, 128, 0x1000, 0x2000, 0x3000);
    expect(regs.read(Reg.QueueReady, 4)).toBe(0); // before FEATURES_OK
    negotiate(regs, VIRTIO_F_VERSION_1);
    setupQueue(regs, 0, 512, 0x1000, 0x2000, 0x3000); // over the max
    expect(regs.read(Reg.QueueReady, 4)).toBe(0);
    setupQueue(regs, 0, 100, 0x1000, 0x2000, 0x3000); // not a power of 2
    expect(regs.read(Reg.QueueReady, 4)).toBe(0);
    setupQueue(regs, 0, 128, 0x1000, 0x2000, 0x3000);
    expect(regs.read(Reg.QueueReady, 4)).toBe(1);
    expect(events).toContain('changed');
    expect(state.queueAddr(0, 2)).toBe(0x1000);
    regs.write(Reg.QueueDescLow, 4, 0x9000); // ignored while ready
    expect(state.queueAddr(0, 2)).toBe(0x1000);
    regs.write(Reg.QueueDescHigh, 4, 0); // high halves too
    regs.write(Reg.QueueSel, 4, 1);
    regs.write(Reg.QueueDescHigh, 4, 1);
    expect(state.queueAddr(1, 2)).toBe(0x100000000);
  });

  it('QueueNotify reaches the notify hook only for existing queues (ioeventfd fallback)', () => {
    const { regs, events } = published({ queues: 2 });
    regs.write(Reg.QueueNotify, 4, 1);
    regs.write(Reg.QueueNotify, 4, 9);
    expect(events.filter((e) => e.startsWith('notify'))).toEqual(['notify1']);
  });

  it('InterruptStatus reflects the device side; InterruptACK clears only the written bits', () => {
    const { regs, state } = published();
    state.raiseUsed();
    state.set(W.isr, state.get(W.isr) | 2);
    expect(regs.read(Reg.InterruptStatus, 4)).toBe(3);
    regs.write(Reg.InterruptACK, 4, 1);
    expect(regs.read(Reg.InterruptStatus, 4)).toBe(2);
  });

  it('reset (status 0) waits for the device side, then clears queues, features and status', () => {
    const { regs, state, events } = published();
    negotiate(regs, VIRTIO_F_VERSION_1);
    setupQueue(regs, 0, 64, 0x1000, 0x2000, 0x3000);
    regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
    state.raiseUsed();
    const gen = state.get(W.resetGen);
    events.length = 0;
    regs.write(Reg.Status, 4, 0);
    expect(events).toEqual(['reset']);
    expect(state.get(W.resetGen)).toBe(gen + 1);
    expect(regs.read(Reg.Status, 4)).toBe(0);
    expect(regs.read(Reg.InterruptStatus, 4)).toBe(0);
    regs.write(Reg.QueueSel, 4, 0);
    expect(regs.read(Reg.QueueReady, 4)).toBe(0);
    expect(state.driverFeatures()).toBe(0n);
    expect(state.queueAddr(0, 2)).toBe(0);
  });
});

class FakeDevice implements VirtioDevice {
  readonly deviceId = 26;
  readonly queueCount = 2;
  readonly queueMaxSize = 256;
  readonly deviceFeatures = 0n;
  env?: DeviceEnv;
  notified: number[] = [];
  resets = 0;
  readConfig() { return new Uint8Array([1, 2, 3, 4]); }
  attach(env: DeviceEnv) { this.env = env; }
  notify(i: number) { this.notified.push(i); }
  reset() { this.resets++; }
  stats() { return {}; }
  close() {}
}

describe('virtio-mmio device side (MmioBackend)', () => {
  it('publishes the device, starts ready queues at DRIVER_OK, kicks reach the device, reset drops queues', () => {
    const memSize = 1 << 20;
    const memFd = memfdCreate('mmio-test', memSize);
    const kickFds = [eventfd(), eventfd()];
    const callFd = eventfd();
    const changeFd = eventfd();
    const poller = new Poller();
    const device = new FakeDevice();
    const state = new MmioState();
    const backend = new MmioBackend({
      kind: 'mmio', state: state.sab, memFd, memRegions: [{ gpa: 0, size: memSize, offset: 0 }], kickFds, callFd, changeFd,
    }, device, poller, () => {});
    const regs = new MmioRegisters(state, {
      changed: () => eventfdSignal(changeFd),
      reset: () => { eventfdSignal(changeFd); poller.poll(0); expect(waitResetAck(state, 100)).toBe(true); },
    });
    try {
      expect(regs.read(Reg.DeviceID, 4)).toBe(26);
      expect(regs.read(Reg.Config, 4)).toBe(0x04030201);
      negotiate(regs, VIRTIO_F_VERSION_1);
      setupQueue(regs, 1, 64, 0x1000, 0x2000, 0x3000);
      poller.poll(0);
      expect(device.env!.queue(1)).toBeUndefined(); // not before DRIVER_OK
      regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
      poller.poll(0);
      const vq = device.env!.queue(1);
      expect(vq?.size).toBe(64);
      expect(device.notified).toEqual([1]); // buffers made available before DRIVER_OK
      eventfdSignal(kickFds[1]!); // what KVM does on a QueueNotify write
      poller.poll(0);
      expect(device.notified).toEqual([1, 1]);
      // the device's interrupt sets InterruptStatus before the irqfd fires
      vq!.notify();
      expect(regs.read(Reg.InterruptStatus, 4)).toBe(1);
      const resets = device.resets;
      regs.write(Reg.Status, 4, 0);
      expect(device.resets).toBe(resets + 1);
      expect(device.env!.queue(1)).toBeUndefined();
      eventfdSignal(kickFds[1]!);
      poller.poll(0);
      expect(device.notified).toEqual([1, 1]);
      // a queue in memory the guest does not have is refused, not followed
      negotiate(regs, VIRTIO_F_VERSION_1);
      setupQueue(regs, 0, 64, 0x7ffff000, 0x2000, 0x3000);
      regs.write(Reg.Status, 4, Status.ACKNOWLEDGE | Status.DRIVER | Status.FEATURES_OK | Status.DRIVER_OK);
      poller.poll(0);
      expect(device.env!.queue(0)).toBeUndefined();
      expect(regs.read(Reg.Status, 4) & Status.DEVICE_NEEDS_RESET).toBeTruthy();
    } finally {
      backend.close('test done');
      poller.close();
      [...kickFds, callFd, changeFd, memFd].forEach(closeFd);
    }
  });
});
