// An in-process virtio-mmio transport for device-host unit tests (the kvm
// engine's wiring without a VM): fresh eventfds, recorded in `fds` so the
// test can close them.
import { MmioState, W } from '../../src/vmm/virtio/mmio.js';
import type { MmioWorkerTransport } from '../../src/vmm/virtio/mmio-backend.js';
import type { DeviceAttachment } from '../../src/vmm/vhost-user/device-host.js';
import { eventfd } from '../../src/sys/io.js';

export function mmioTransport(memFd: number, memSize: number, queues: number, fds: number[]): MmioWorkerTransport {
  const kickFds = Array.from({ length: queues }, () => eventfd());
  const callFd = eventfd();
  const changeFd = eventfd();
  fds.push(...kickFds, callFd, changeFd);
  return { kind: 'mmio', state: new MmioState().sab, memFd, memRegions: [{ gpa: 0, size: memSize, offset: 0 }], kickFds, callFd, changeFd };
}

/** True once the device behind `a` has published itself into its register state (false after `timeoutMs`). */
export async function published(a: DeviceAttachment, timeoutMs = 20_000): Promise<boolean> {
  const s = new MmioState((a.transport as MmioWorkerTransport).state);
  const r = Atomics.waitAsync(s.w, W.published, 0, timeoutMs);
  if (r.async) await r.value;
  return s.get(W.published) === 1;
}
