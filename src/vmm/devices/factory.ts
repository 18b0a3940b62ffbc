// Builds a device backend from a plain, serializable description, so the
// same device can be started inside any worker by either engine. Each
// worker loads only its own device's code: workers start while QEMU waits
// for them, so their start-up is on the boot path.
import type { VirtioDevice } from '../virtio/device.js';
import type { VirtioFsOptions } from './fs/virtio-fs.js';
import type { ExportSpec } from './fs/synthetic-root.js';
import type { VsockDeviceOptions } from './vsock/vsock-device.js';
import type { NetDeviceOptions } from './net/virtio-net.js';

export type DeviceSpec =
  | ({ kind: 'fs' } & VirtioFsOptions)
  | ({ kind: 'vsock' } & VsockDeviceOptions)
  | ({ kind: 'net' } & NetDeviceOptions);

/**
 * What a device started without it gets later (Vm.configureDevice): a
 * deferred fs device its root or exports, a net device its passt socket
 * (`fd` is a number in this process's fd table, which worker threads share;
 * the device owns it once configure succeeded, the caller until then).
 */
export type DeviceLateConfig =
  | { kind: 'fs'; root?: string; exports?: ExportSpec[]; readonly?: boolean; keepCache?: boolean }
  | { kind: 'net'; fd: number };

const code = {
  fs: () => import('./fs/virtio-fs.js'),
  vsock: () => import('./vsock/vsock-device.js'),
  net: () => import('./net/virtio-net.js'),
};

/** Loads the code of one kind of device (a worker waiting for its device does this early). */
export async function loadDeviceCode(kind: DeviceSpec['kind']): Promise<void> {
  await code[kind]();
}

export async function createDevice(spec: DeviceSpec): Promise<VirtioDevice> {
  switch (spec.kind) {
    case 'fs': return new (await code.fs()).VirtioFsDevice(spec);
    case 'vsock': return new (await code.vsock()).VsockDevice(spec);
    case 'net': return new (await code.net()).VirtioNetDevice(spec);
  }
}
