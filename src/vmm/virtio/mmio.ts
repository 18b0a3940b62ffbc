// virtio-mmio transport, version 2 (virtio 1.2 §4.2.2), register side.
//
// The transport state of one device lives in a SharedArrayBuffer so that
// two kinds of thread can use it: vCPU threads answer the guest's register
// reads and writes (MmioRegisters, synchronous, no device code involved) and
// the device's worker thread turns "queue ready", "driver ok" and "reset"
// into Virtqueues for the unchanged VirtioDevice (MmioBackend). Queue
// notifications never come here (they are KVM ioeventfds, i.e. kick fds)
// and interrupts leave through KVM irqfds (call fds); the register side only
// sees InterruptStatus/InterruptACK.
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC } from './device.js';

export const MMIO_MAGIC = 0x74726976; // "virt"
export const MMIO_VERSION = 2;
export const MMIO_VENDOR = 0x4b535548; // "HUSK"
export const MMIO_SIZE = 0x1000;
export const MAX_QUEUES = 16;
export const CONFIG_MAX = 256;

export const Reg = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceID: 0x008,
  VendorID: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptACK: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac,
  SHMLenLow: 0x0b0,
  SHMLenHigh: 0x0b4,
  SHMBaseLow: 0x0b8,
  SHMBaseHigh: 0x0bc,
  ConfigGeneration: 0x0fc,
  Config: 0x100,
} as const;

export const Status = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** Features the transport itself offers on top of the device's. */
export const TRANSPORT_FEATURES = VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC;

/** Int32 word indices in the shared state. */
export const W = {
  deviceId: 0,
  featLo: 1,
  featHi: 2,
  queueCount: 3,
  queueMax: 4,
  configLen: 5,
  status: 6,
  isr: 7,
  devFeatSel: 8,
  drvFeatSel: 9,
  drvFeatLo: 10,
  drvFeatHi: 11,
  queueSel: 12,
  configGen: 13,
  /** bumped by the register side on every reset */
  resetGen: 14,
  /** set to resetGen by the device side when it has dropped its queues */
  resetAck: 15,
  /** 1 once the device side has published id, features and config */
  published: 16,
  shmSel: 17,
  /** register-side counters for tests and diagnostics */
  mmioReads: 18,
  mmioWrites: 19,
  /** per-queue blocks start here */
  queues: 32,
} as const;
export const Q = { num: 0, ready: 1, descLo: 2, descHi: 3, drvLo: 4, drvHi: 5, devLo: 6, devHi: 7 } as const;
const QWORDS = 8;
const CONFIG_WORD = W.queues + MAX_QUEUES * QWORDS;
export const STATE_BYTES = CONFIG_WORD * 4 + CONFIG_MAX;

/** The shared state of one virtio-mmio device (a view over a SharedArrayBuffer). */
export class MmioState {
  readonly sab: SharedArrayBuffer;
  readonly w: Int32Array;
  readonly config: Uint8Array;

  constructor(sab = new SharedArrayBuffer(STATE_BYTES)) {
    if (sab.byteLength < STATE_BYTES) throw new Error('virtio-mmio state buffer too small');
    this.sab = sab;
    this.w = new Int32Array(sab, 0, CONFIG_WORD);
    this.config = new Uint8Array(sab, CONFIG_WORD * 4, CONFIG_MAX);
  }

  get(i: number): number { return Atomics.load(this.w, i); }
  set(i: number, v: number): void { Atomics.store(this.w, i, v | 0); }
  q(index: number, field: number): number { return Atomics.load(this.w, W.queues + index * QWORDS + field); }
  setQ(index: number, field: number, v: number): void { Atomics.store(this.w, W.queues + index * QWORDS + field, v | 0); }

  /** Device side: what the device offers. Called once, before the guest probes. */
  publish(d: { deviceId: number; deviceFeatures: bigint; queueCount: number; queueMaxSize: number; config: Uint8Array }): void {
    if (d.queueCount > MAX_QUEUES) throw new Error(`virtio-mmio: ${d.queueCount} queues (max ${MAX_QUEUES})`);
    if (d.config.byteLength > CONFIG_MAX) throw new Error('virtio-mmio: config space too large');
    const f = d.deviceFeatures | TRANSPORT_FEATURES;
    this.set(W.deviceId, d.deviceId);
    this.set(W.featLo, Number(f & 0xffffffffn));
    this.set(W.featHi, Number((f >> 32n) & 0xffffffffn));
    this.set(W.queueCount, d.queueCount);
    this.set(W.queueMax, d.queueMaxSize);
    this.config.set(d.config);
    this.set(W.configLen, d.config.byteLength);
    this.set(W.published, 1);
    Atomics.notify(this.w, W.published);
  }

  offeredFeatures(): bigint {
    return (BigInt(this.get(W.featHi) >>> 0) << 32n) | BigInt(this.get(W.featLo) >>> 0);
  }

  driverFeatures(): bigint {
    return (BigInt(this.get(W.drvFeatHi) >>> 0) << 32n) | BigInt(this.get(W.drvFeatLo) >>> 0);
  }

  /** Device side: raise "used buffer" in InterruptStatus (before signalling the irqfd). */
  raiseUsed(): void {
    Atomics.or(this.w, W.isr, 1);
  }

  queueAddr(index: number, lo: number): number {
    const hi = this.q(index, lo + 1) >>> 0;
    return hi * 0x100000000 + (this.q(index, lo) >>> 0);
  }
}

export interface MmioRegisterHooks {
  /** the device side must look at the state again (queue ready, status change) */
  changed(): void;
  /** the guest reset the device: returns when the device side has let go of its queues */
  reset(): void;
  /** QueueNotify written (only when no ioeventfd caught it) */
  notify?(queue: number): void;
}

/**
 * Register semantics, run on a vCPU thread for each trapped access. The
 * guest is untrusted: every value is checked, nothing here can throw on
 * guest input, and odd accesses read as 0 / are ignored.
 */
export class MmioRegisters {
  readonly state: MmioState;
  private readonly hooks: MmioRegisterHooks;
  /** waits for the device side to publish (worker start-up), ms */
  publishTimeoutMs = 5000;

  constructor(state: MmioState, hooks: MmioRegisterHooks) {
    this.state = state;
    this.hooks = hooks;
  }

  private ensurePublished(): boolean {
    const s = this.state;
    if (s.get(W.published)) return true;
    Atomics.wait(s.w, W.published, 0, this.publishTimeoutMs);
    return s.get(W.published) === 1;
  }

  read(offset: number, size: number): number {
    const s = this.state;
    Atomics.add(s.w, W.mmioReads, 1);
    if (offset >= Reg.Config) {
      if (!this.ensurePublished()) return 0;
      const o = offset - Reg.Config;
      const len = s.get(W.configLen);
      if (o + size > len || (size !== 1 && size !== 2 && size !== 4)) return 0;
      let v = 0;
      for (let i = size - 1; i >= 0; i--) v = v * 256 + s.config[o + i]!;
      return v >>> 0;
    }
    if (size !== 4 || offset & 3) return 0;
    if (offset !== Reg.MagicValue && offset !== Reg.Version && !this.ensurePublished()) return 0;
    const qsel = s.get(W.queueSel);
    const qvalid = qsel >= 0 && qsel < s.get(W.queueCount);
    switch (offset) {
      case Reg.MagicValue: return MMIO_MAGIC;
      case Reg.Version: return MMIO_VERSION;
      case Reg.DeviceID: return s.get(W.deviceId) >>> 0;
      case Reg.VendorID: return MMIO_VENDOR;
      case Reg.DeviceFeatures: {
        const sel = s.get(W.devFeatSel);
        return sel === 0 ? s.get(W.featLo) >>> 0 : sel === 1 ? s.get(W.featHi) >>> 0 : 0;
      }
      case Reg.QueueNumMax: return qvalid ? s.get(W.queueMax) >>> 0 : 0;
      case Reg.QueueReady: return qvalid ? s.q(qsel, Q.ready) >>> 0 : 0;
      case Reg.InterruptStatus: return s.get(W.isr) >>> 0;
      case Reg.Status: return s.get(W.status) >>> 0;
      case Reg.SHMLenLow:
      case Reg.SHMLenHigh:
      case Reg.SHMBaseLow:
      case Reg.SHMBaseHigh:
        return 0xffffffff; // no shared memory regions (length ~0 = absent)
      case Reg.ConfigGeneration: return s.get(W.configGen) >>> 0;
      default: return 0;
    }
  }

  write(offset: number, size: number, value: number): void {
    const s = this.state;
    Atomics.add(s.w, W.mmioWrites, 1);
    if (offset >= Reg.Config) return; // fs and vsock config is read-only
    if (size !== 4 || offset & 3) return;
    value >>>= 0;
    const status = s.get(W.status);
    const qsel = s.get(W.queueSel);
    const qvalid = qsel >= 0 && qsel < s.get(W.queueCount);
    // Queue registers may change only while the queue is not ready, before DRIVER_OK.
    const qwritable = qvalid && s.q(qsel, Q.ready) === 0;
    switch (offset) {
      case Reg.DeviceFeaturesSel: s.set(W.devFeatSel, value); break;
      case Reg.DriverFeaturesSel: s.set(W.drvFeatSel, value); break;
      case Reg.DriverFeatures: {
        if (!(status & Status.DRIVER) || status & (Status.FEATURES_OK | Status.FAILED)) break;
        const sel = s.get(W.drvFeatSel);
        if (sel === 0) s.set(W.drvFeatLo, value & s.get(W.featLo));
        else if (sel === 1) s.set(W.drvFeatHi, value & s.get(W.featHi));
        break;
      }
      case Reg.QueueSel: s.set(W.queueSel, value); break;
      case Reg.QueueNum:
        if (qwritable) s.setQ(qsel, Q.num, value);
        break;
      case Reg.QueueDescLow: if (qwritable) s.setQ(qsel, Q.descLo, value); break;
      case Reg.QueueDescHigh: if (qwritable) s.setQ(qsel, Q.descHi, value); break;
      case Reg.QueueDriverLow: if (qwritable) s.setQ(qsel, Q.drvLo, value); break;
      case Reg.QueueDriverHigh: if (qwritable) s.setQ(qsel, Q.drvHi, value); break;
      case Reg.QueueDeviceLow: if (qwritable) s.setQ(qsel, Q.devLo, value); break;
      case Reg.QueueDeviceHigh: if (qwritable) s.setQ(qsel, Q.devHi, value); break;
      case Reg.QueueReady: {
        if (!qvalid) break;
        const ready = value === 1 ? 1 : 0;
        if (ready) {
          const num = s.q(qsel, Q.num);
          // A queue the device cannot use stays not ready (the driver reads it back).
          if (num < 1 || num > s.get(W.queueMax) || (num & (num - 1)) !== 0) break;
          if (!(status & Status.FEATURES_OK)) break;
        }
        if (s.q(qsel, Q.ready) !== ready) {
          s.setQ(qsel, Q.ready, ready);
          this.hooks.changed();
        }
        break;
      }
      case Reg.QueueNotify:
        if (value < s.get(W.queueCount)) this.hooks.notify?.(value);
        break;
      case Reg.InterruptACK:
        Atomics.and(s.w, W.isr, ~value);
        break;
      case Reg.Status: this.writeStatus(status, value); break;
      case Reg.SHMSel: s.set(W.shmSel, value); break;
      default: break;
    }
  }

  private writeStatus(old: number, value: number): void {
    const s = this.state;
    if (value === 0) {
      this.reset();
      return;
    }
    value &= 0xff;
    // The driver may only add bits (§2.1.2); anything else is a driver bug: ignore it.
    if ((old & value) !== old) return;
    if (value & Status.FEATURES_OK && !(old & Status.FEATURES_OK)) {
      // Accept only a subset of what we offered that includes VERSION_1 (no legacy).
      const drv = s.driverFeatures();
      if ((drv & ~s.offeredFeatures()) !== 0n || (drv & VIRTIO_F_VERSION_1) === 0n) value &= ~Status.FEATURES_OK;
    }
    if (value & Status.DRIVER_OK && !(value & Status.FEATURES_OK)) value &= ~Status.DRIVER_OK;
    s.set(W.status, value);
    if ((value ^ old) & (Status.DRIVER_OK | Status.FAILED)) this.hooks.changed();
  }

  private reset(): void {
    const s = this.state;
    // Queues stop first, then the device side drops them, then registers clear:
    // when the guest sees status 0 the device no longer touches its rings.
    for (let i = 0; i < MAX_QUEUES; i++) s.setQ(i, Q.ready, 0);
    Atomics.add(s.w, W.resetGen, 1);
    this.hooks.reset();
    for (let i = 0; i < MAX_QUEUES; i++) {
      for (let f = 0; f < QWORDS; f++) s.setQ(i, f, 0);
    }
    for (const i of [W.devFeatSel, W.drvFeatSel, W.drvFeatLo, W.drvFeatHi, W.queueSel, W.isr, W.shmSel]) s.set(i, 0);
    s.set(W.status, 0);
  }
}

/** Register side of a reset: waits (bounded) until the device side acknowledged it. */
export function waitResetAck(state: MmioState, timeoutMs = 2000): boolean {
  const gen = state.get(W.resetGen);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ack = state.get(W.resetAck);
    if (ack === gen) return true;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    Atomics.wait(state.w, W.resetAck, ack, left);
  }
}
