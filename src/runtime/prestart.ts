// The VMM process's head start: before it loads the rest of husk it starts
// the device workers its container will most likely need (worker-pool.ts),
// guessed from the config that create saved. A wrong guess costs an idle
// worker (ended once the VM runs) or a worker started later, never a failure.
import fs from 'node:fs';
import path from 'node:path';
import { containerDir } from './state.js';
import { prestartDeviceWorkers, type DeviceKind } from '../vmm/vhost-user/worker-pool.js';
import type { Spec } from '../oci/spec.js';

/** The devices Sandbox.boot will most likely build for `spec`, by kind. */
export function expectedDeviceKinds(spec: Spec): DeviceKind[] {
  // Rootfs and vsock always; bind mounts (translate.ts isBindMount); a network unless the container
  // gets a new, empty namespace (network.ts networkNamespace). Tested here without those modules:
  // they load seccomp and more, and this runs before anything else (test/unit/prestart.test.ts
  // checks that both agree).
  const kinds: DeviceKind[] = ['fs', 'vsock'];
  if ((spec.mounts ?? []).some((m) => m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind'))) kinds.push('fs');
  const netns = (spec.linux?.namespaces ?? []).find((n) => n.type === 'network');
  if (!netns || netns.path) kinds.push('net');
  return kinds;
}

export function prestartContainerWorkers(root: string, id: string): void {
  let spec: Spec;
  try {
    spec = JSON.parse(fs.readFileSync(path.join(containerDir(root, id), 'config.json'), 'utf8')) as Spec;
  } catch {
    return; // the VMM reports what is wrong
  }
  prestartDeviceWorkers(expectedDeviceKinds(spec));
}
