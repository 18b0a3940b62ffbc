// The VM's size from the container's resources. The container's memory
// limit becomes guest RAM plus room for the guest kernel and agent; CPU
// quota or cpuset size becomes the vCPU count. Annotations override both.
import os from 'node:os';
import type { Spec } from '../oci/spec.js';

/** Guest RAM never goes below this: the kernel, agent and page cache need it. */
export const MIN_MEMORY_MIB = 128;
/** Added to a container memory limit for the guest kernel and agent. */
export const GUEST_OVERHEAD_MIB = 64;
export const DEFAULT_MEMORY_MIB = 512;
export const DEFAULT_VCPUS = 1;

export interface MachineSize { vcpus: number; memoryMiB: number }

function cpusetCount(cpus: string): number {
  let n = 0;
  for (const part of cpus.split(',')) {
    const [a, b] = part.split('-').map((x) => Number(x.trim()));
    if (a === undefined || Number.isNaN(a)) continue;
    n += b === undefined || Number.isNaN(b) ? 1 : Math.max(0, b - a + 1);
  }
  return n;
}

export function machineSize(spec: Spec): MachineSize {
  const hostCpus = os.availableParallelism();
  let vcpus = DEFAULT_VCPUS;
  let memoryMiB = DEFAULT_MEMORY_MIB;
  const res = spec.linux?.resources;
  const cpu = res?.cpu;
  if (cpu?.quota && cpu.quota > 0) vcpus = Math.ceil(cpu.quota / (cpu.period && cpu.period > 0 ? cpu.period : 100_000));
  if (cpu?.cpus) vcpus = Math.max(1, cpusetCount(cpu.cpus));
  const limit = res?.memory?.limit;
  if (limit && limit > 0) memoryMiB = Math.max(MIN_MEMORY_MIB, Math.ceil(limit / (1 << 20)) + GUEST_OVERHEAD_MIB);
  const a = spec.annotations ?? {};
  if (a['husk.vcpus']) vcpus = Number.parseInt(a['husk.vcpus'], 10);
  if (a['husk.memory_mib']) memoryMiB = Number.parseInt(a['husk.memory_mib'], 10);
  if (!Number.isInteger(vcpus) || vcpus < 1) throw new Error(`invalid vCPU count ${a['husk.vcpus'] ?? vcpus}`);
  if (!Number.isInteger(memoryMiB) || memoryMiB < MIN_MEMORY_MIB) {
    throw new Error(`invalid VM memory ${a['husk.memory_mib'] ?? memoryMiB} MiB (minimum ${MIN_MEMORY_MIB})`);
  }
  return { vcpus: Math.min(vcpus, Math.max(hostCpus, 1), 8), memoryMiB };
}
