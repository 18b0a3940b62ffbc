// Builds a device backend from a plain, serializable description, so the
// same device can be started inside any worker by either engine.
import type { VirtioDevice } from '../virtio/device.js';
import { VirtioFsDevice, type VirtioFsOptions } from './fs/virtio-fs.js';
import { VsockDevice, type VsockDeviceOptions } from './vsock/vsock-device.js';
import { VirtioNetDevice, type NetDeviceOptions } from './net/virtio-net.js';

export type DeviceSpec =
  | ({ kind: 'fs' } & VirtioFsOptions)
  | ({ kind: 'vsock' } & VsockDeviceOptions)
  | ({ kind: 'net' } & NetDeviceOptions);

export function createDevice(spec: DeviceSpec): VirtioDevice {
  switch (spec.kind) {
    case 'fs': return new VirtioFsDevice(spec);
    case 'vsock': return new VsockDevice(spec);
    case 'net': return new VirtioNetDevice(spec);
  }
}
