// The VMM process's head start: before it loads the rest of husk it starts
// the device workers its container will most likely need (worker-pool.ts),
// guessed from the config that create saved. A wrong guess costs an idle
// worker (ended once the VM runs) or a worker started later, never a failure.
import fs from 'node:fs';
import path from 'node:path';
import { containerDir } from './state.js';
import { isBindMount } from './translate.js';
import { networkNamespace } from './network.js';
import { prestartDeviceWorkers, type DeviceKind } from '../vmm/vhost-user/worker-pool.js';
import type { Spec } from '../oci/spec.js';

export function prestartContainerWorkers(root: string, id: string): void {
  let spec: Spec;
  try {
    spec = JSON.parse(fs.readFileSync(path.join(containerDir(root, id), 'config.json'), 'utf8')) as Spec;
  } catch {
    return; // the VMM reports what is wrong
  }
  // As Sandbox.boot builds them: rootfs, vsock, bind mounts, network (none only in a new, empty namespace).
  const kinds: DeviceKind[] = ['fs', 'vsock'];
  if ((spec.mounts ?? []).some(isBindMount)) kinds.push('fs');
  if (networkNamespace(spec).kind !== 'new') kinds.push('net');
  prestartDeviceWorkers(kinds);
}
