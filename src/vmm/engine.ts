// The seam between "who runs the CPU" and everything else. A MachineConfig
// is engine-neutral; each engine turns it into a running guest whose
// devices are the same husk backends.
import type { DeviceSpec } from './devices/factory.js';

export interface MachineConfig {
  /** directory for sockets and logs of this VM (exists, private) */
  stateDir: string;
  kernel: string;
  /** '' = no initrd (kvm engine only) */
  initrd: string;
  /** kernel command line without device entries (engines add their own) */
  cmdline: string;
  vcpus: number;
  memoryMiB: number;
  devices: DeviceSpec[];
  /** the guest kernel's serial console is written here, never to the container's stdio */
  consoleLog: string;
  /** forces the engine; otherwise HUSK_ENGINE, then this host's capabilities (engines/select.ts) */
  engine?: 'kvm' | 'tcg';
  /** the container's OCI annotations (`husk.engine` chooses the engine) */
  annotations?: Record<string, string>;
}

export interface EngineExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningEngine {
  readonly name: string;
  /** host pid of the process that runs the CPU (QEMU for tcg, husk itself for kvm) */
  readonly pid: number;
  readonly exited: Promise<EngineExit>;
  kill(signal?: NodeJS.Signals): void;
  /** Freezes the guest: every vCPU stopped at a safe point, devices quiet; resolves once it is so. */
  pause(): Promise<void>;
  /** Lets a paused guest run again. */
  resume(): Promise<void>;
}

/** Where the engine expects the vhost-user socket of device i (for engines that use vhost-user). */
export function deviceSocketPath(stateDir: string, index: number, kind: string): string {
  return `${stateDir}/${kind}${index}.vhost.sock`;
}
