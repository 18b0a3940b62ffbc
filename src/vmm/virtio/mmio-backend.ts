// virtio-mmio transport, device side: runs in the device's worker thread
// next to the unchanged VirtioDevice. It maps guest memory (the engine's
// memfd), publishes the device's id/features/config into the shared
// register state, and turns "queue ready" into a Virtqueue whose kick fd is
// the queue's KVM ioeventfd and whose call fd is the device's KVM irqfd.
import { GuestMemory, GuestMemoryError, type MemoryRegion } from '../memory.js';
import { Virtqueue, QueueError } from './queue.js';
import { VIRTIO_RING_F_INDIRECT_DESC, type DeviceEnv, type VirtioDevice } from './device.js';
import { MmioState, Q, Status, W } from './mmio.js';
import { EPOLLIN, eventfdDrain, eventfdSignal, mmapShared, type Mapping, type Poller } from '../../sys/io.js';

/** What a device worker needs to serve one device over virtio-mmio (all structured-cloneable). */
export interface MmioWorkerTransport {
  kind: 'mmio';
  state: SharedArrayBuffer;
  /** guest RAM: one memfd, regions at file offsets */
  memFd: number;
  memRegions: { gpa: number; size: number; offset: number }[];
  /** per queue: the eventfd KVM signals on QueueNotify (ioeventfd) */
  kickFds: number[];
  /** the eventfd that raises the device's interrupt line (irqfd) */
  callFd: number;
  /** signalled by vCPU threads when queue/status registers changed */
  changeFd: number;
}

interface QueueRun {
  vq?: Virtqueue;
  started: boolean;
}

export class MmioBackend {
  private readonly t: MmioWorkerTransport;
  private readonly state: MmioState;
  private readonly device: VirtioDevice;
  private readonly poller: Poller;
  private readonly log: (msg: string) => void;
  private readonly mapping: Mapping;
  private readonly memory: GuestMemory;
  private readonly queues: QueueRun[];
  private seenReset: number;
  private driverOk = false;
  private closed = false;

  constructor(t: MmioWorkerTransport, device: VirtioDevice, poller: Poller, log: (msg: string) => void) {
    this.t = t;
    this.state = new MmioState(t.state);
    this.device = device;
    this.poller = poller;
    this.log = log;
    const end = Math.max(...t.memRegions.map((r) => r.offset + r.size));
    this.mapping = mmapShared(t.memFd, end, 0);
    const regions: MemoryRegion[] = t.memRegions.map((r) => ({
      gpa: r.gpa, size: r.size, bytes: this.mapping.bytes.subarray(r.offset, r.offset + r.size),
    }));
    this.memory = new GuestMemory(regions);
    if (t.kickFds.length !== device.queueCount) throw new Error(`virtio-mmio: ${t.kickFds.length} kick fds for ${device.queueCount} queues`);
    this.queues = Array.from({ length: device.queueCount }, () => ({ started: false }));
    this.seenReset = this.state.get(W.resetGen);
    const backend = this;
    const env: DeviceEnv = {
      get memory() { return backend.memory; },
      queue: (i) => backend.queues[i]?.vq,
      poller,
      log,
      driverFeatures: () => backend.state.driverFeatures(),
    };
    device.attach(env);
    poller.add(t.changeFd, EPOLLIN, () => {
      eventfdDrain(t.changeFd);
      this.reconcile();
    });
    this.state.publish({
      deviceId: device.deviceId,
      deviceFeatures: device.deviceFeatures,
      queueCount: device.queueCount,
      queueMaxSize: device.queueMaxSize,
      config: device.readConfig(),
    });
    this.reconcile();
  }

  /** Brings the queues in line with the register state (idempotent). */
  reconcile(): void {
    if (this.closed) return;
    const s = this.state;
    const gen = s.get(W.resetGen);
    if (gen !== this.seenReset) {
      this.queues.forEach((_, i) => this.stopQueue(i));
      this.driverOk = false;
      this.device.reset();
      this.seenReset = gen;
      s.set(W.resetAck, gen);
      Atomics.notify(s.w, W.resetAck);
    }
    const status = s.get(W.status);
    const ok = (status & Status.DRIVER_OK) !== 0 && (status & Status.FAILED) === 0;
    this.driverOk = ok;
    for (let i = 0; i < this.queues.length; i++) {
      const ready = s.q(i, Q.ready) === 1;
      if (ready && ok && !this.queues[i]!.started) this.startQueue(i);
      else if ((!ready || !ok) && this.queues[i]!.started) this.stopQueue(i);
    }
  }

  private startQueue(index: number): void {
    const s = this.state;
    const q = this.queues[index]!;
    const callFd = this.t.callFd;
    try {
      q.vq = new Virtqueue(this.memory, {
        size: s.q(index, Q.num),
        descGpa: s.queueAddr(index, Q.descLo),
        availGpa: s.queueAddr(index, Q.drvLo),
        usedGpa: s.queueAddr(index, Q.devLo),
      }, () => { s.raiseUsed(); eventfdSignal(callFd); });
      q.vq.indirect = (s.driverFeatures() & VIRTIO_RING_F_INDIRECT_DESC) !== 0n;
    } catch (err) {
      if (err instanceof GuestMemoryError || err instanceof QueueError) {
        this.log(`virtio-mmio: queue ${index}: ${err.message}`);
        s.set(W.status, s.get(W.status) | Status.DEVICE_NEEDS_RESET);
        return;
      }
      throw err;
    }
    q.started = true;
    const kick = this.t.kickFds[index]!;
    this.poller.add(kick, EPOLLIN, () => {
      eventfdDrain(kick);
      if (q.started) this.device.notify(index);
    });
    // Buffers the driver made available before DRIVER_OK (or before the queue started).
    this.device.notify(index);
  }

  private stopQueue(index: number): void {
    const q = this.queues[index]!;
    if (!q.started) return;
    q.started = false;
    q.vq = undefined;
    this.poller.remove(this.t.kickFds[index]!);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.log(reason);
    this.queues.forEach((_, i) => this.stopQueue(i));
    this.poller.remove(this.t.changeFd);
    this.device.reset();
    // Nobody waits for a reset that will never be acknowledged.
    this.state.set(W.resetAck, this.state.get(W.resetGen));
    this.state.set(W.published, 1);
    Atomics.notify(this.state.w, W.resetAck);
    Atomics.notify(this.state.w, W.published);
    this.mapping.unmap();
  }
}
