// A running microVM: husk's device backends (one worker each) plus the
// engine that runs the CPU. Stopping it leaves no process or socket behind.
import fs from 'node:fs';
import { DeviceHost } from './vhost-user/device-host.js';
import { startQemu } from './engines/tcg/qemu.js';
import { KvmMachine } from './engines/kvm/machine.js';
import { selectEngine } from './engines/select.js';
import { releasePrestartedWorkers } from './vhost-user/worker-pool.js';
import { deviceSocketPath, type EngineExit, type MachineConfig, type RunningEngine } from './engine.js';

export class Vm {
  readonly config: MachineConfig;
  readonly engine: RunningEngine;
  readonly devices: DeviceHost[];
  private stopping?: Promise<EngineExit>;
  private readonly log: (msg: string) => void;

  private constructor(config: MachineConfig, engine: RunningEngine, devices: DeviceHost[], log: (msg: string) => void) {
    this.config = config;
    this.log = log;
    this.engine = engine;
    this.devices = devices;
  }

  /** Starts the device backends and the engine (kvm: husk runs the vCPUs; tcg: QEMU does). */
  static start(config: MachineConfig, log: (msg: string) => void): Vm {
    const devices: DeviceHost[] = [];
    const choice = selectEngine({ force: config.engine, annotations: config.annotations });
    log(`engine ${choice.engine}: ${choice.reason}`);
    let kvm: KvmMachine | undefined;
    try {
      if (choice.engine === 'kvm') kvm = new KvmMachine(config, log);
      config.devices.forEach((spec, i) => {
        devices.push(new DeviceHost(spec, kvm ? kvm.transport(i) : deviceSocketPath(config.stateDir, i, spec.kind), log));
      });
      releasePrestartedWorkers();
      const engine = kvm
        ? kvm.start(Promise.all(devices.map((d) => d.closed)))
        : startQemu(config, devices.map((d) => d.socketPath));
      const vm = new Vm(config, engine, devices, log);
      engine.exited.then((e) => {
        log(`engine ${engine.name} exited (${e.signal ?? e.code})`);
        // With the frontend gone, the device workers end on their own; make sure.
        devices.forEach((d) => void d.stop());
      });
      return vm;
    } catch (err) {
      devices.forEach((d) => void d.stop());
      const machine = kvm;
      if (machine) void Promise.all(devices.map((d) => d.closed)).then(() => machine.release());
      throw err;
    }
  }

  /** Device-side records (e.g. FUSE opcodes served), by device kind and index. */
  async deviceStats(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {};
    await Promise.all(this.devices.map(async (d, i) => { out[`${d.spec.kind}${i}`] = await d.stats(); }));
    return out;
  }

  /** Waits up to `graceMs` for the guest to power off, then kills the engine. */
  stop(graceMs = 0): Promise<EngineExit> {
    this.stopping ??= (async () => {
      const timer = setTimeout(() => this.engine.kill('SIGKILL'), graceMs);
      if (graceMs === 0) this.engine.kill('SIGKILL');
      const exit = await this.engine.exited;
      clearTimeout(timer);
      const stats = await Promise.all(this.devices.map((d) => d.stop()));
      for (const d of this.devices) if (d.socketPath) fs.rmSync(d.socketPath, { force: true });
      this.devices.forEach((d, i) => this.log(`device ${d.spec.kind}${i} served ${JSON.stringify(stats[i])}`));
      return exit;
    })();
    return this.stopping;
  }
}
