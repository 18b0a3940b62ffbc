// What a virtio device backend sees. Backends know guest memory, their
// queues, a poller for their own fds and a log; they never learn whether
// QEMU (vhost-user, tcg engine) or husk itself (virtio-mmio, kvm engine)
// runs the CPU.
import type { GuestMemory } from '../memory.js';
import type { Virtqueue } from './queue.js';
import type { Poller } from '../../sys/io.js';
import type { DeviceLateConfig } from '../devices/factory.js';

export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_RNG = 4;
export const VIRTIO_ID_BALLOON = 5;
export const VIRTIO_ID_VSOCK = 19;
export const VIRTIO_ID_FS = 26;

export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_RING_F_INDIRECT_DESC = 1n << 28n;

/** The transport's side, handed to a device when it is attached. */
export interface DeviceEnv {
  /** Current guest memory (may be replaced by the transport; always read it through env). */
  readonly memory: GuestMemory;
  /** The queue with this index when it is ready to use, else undefined. */
  queue(index: number): Virtqueue | undefined;
  readonly poller: Poller;
  log(msg: string): void;
  /** The feature bits the driver accepted (0 until it did; absent in bare test harnesses). */
  driverFeatures?(): bigint;
}

export interface VirtioDevice {
  readonly deviceId: number;
  /** Queues the transport serves for this device. */
  readonly queueCount: number;
  readonly queueMaxSize: number;
  /** Device-specific feature bits (the transport adds VERSION_1 and ring features). */
  readonly deviceFeatures: bigint;
  /** The device configuration space. */
  readConfig(): Uint8Array;
  attach(env: DeviceEnv): void;
  /** The driver made buffers available on queue `index`. */
  notify(index: number): void;
  /** The driver reset the device or went away: drop per-session state. */
  reset(): void;
  /** Device-side record for tests and diagnostics. */
  stats(): Record<string, number>;
  /**
   * Binds what a pre-booted VM's device could not know at boot (the host
   * side of a deferred fs device, the passt socket of a net device).
   * Throws, leaving the device as it was, when it refuses.
   */
  configure?(config: DeviceLateConfig): void;
  close(): void;
}
