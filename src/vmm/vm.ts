// A running microVM: husk's device backends (in device worker threads) plus the
// engine that runs the CPU. Stopping it leaves no process or socket behind.
import fs from 'node:fs';
import { DeviceHost } from './vhost-user/device-host.js';
import { startQemu } from './engines/tcg/qemu.js';
import { KvmMachine } from './engines/kvm/machine.js';
import { selectEngine } from './engines/select.js';
import { releasePrestartedWorkers } from './vhost-user/worker-pool.js';
import { deviceSocketPath, type EngineExit, type MachineConfig, type RunningEngine } from './engine.js';
import type { DeviceLateConfig } from './devices/factory.js';

/** Optional observers (benchmarks). */
export interface VmHooks {
  /** every device backend is up; CPU time of their worker thread so far (µs) */
  onDevicesReady?: (threadCpuUs: number) => void;
}

export class Vm {
  readonly config: MachineConfig;
  readonly engine: RunningEngine;
  /** the device workers: kvm hosts all devices in one, tcg one per device (each serves its own QEMU connection) */
  readonly hosts: DeviceHost[];
  /** set with the kvm engine (its first-KVM_RUN record and set-up timings) */
  readonly kvm?: KvmMachine;
  private stopping?: Promise<EngineExit>;
  private readonly log: (msg: string) => void;

  private constructor(config: MachineConfig, engine: RunningEngine, hosts: DeviceHost[], log: (msg: string) => void, kvm?: KvmMachine) {
    this.config = config;
    this.log = log;
    this.engine = engine;
    this.hosts = hosts;
    this.kvm = kvm;
  }

  /** Starts the device backends and the engine (kvm: husk runs the vCPUs; tcg: QEMU does). */
  static start(config: MachineConfig, log: (msg: string) => void, hooks: VmHooks = {}): Vm {
    const hosts: DeviceHost[] = [];
    const choice = selectEngine({ force: config.engine, annotations: config.annotations });
    log(`engine ${choice.engine}: ${choice.reason}`);
    let kvm: KvmMachine | undefined;
    let engine: RunningEngine | undefined;
    try {
      if (choice.engine === 'kvm') {
        const machine = kvm = new KvmMachine(config, log);
        // vCPUs first; the device worker starts once vCPU 0 runs (see DeviceHostOptions.startWhen).
        engine = machine.start(() => Promise.all(hosts.map((h) => h.closed)));
        hosts.push(new DeviceHost(config.devices.map((spec, i) => ({ spec, transport: machine.transport(i) })), log, {
          startWhen: machine.firstRun.then((r) => r !== undefined),
          onReady: hooks.onDevicesReady,
        }));
      } else {
        let ready = 0;
        const onReady = hooks.onDevicesReady && ((us: number) => { if (++ready === config.devices.length) hooks.onDevicesReady!(us); });
        config.devices.forEach((spec, i) => {
          hosts.push(new DeviceHost([{ spec, transport: deviceSocketPath(config.stateDir, i, spec.kind) }], log, { onReady }));
        });
        engine = startQemu(config, hosts.map((h) => h.devices[0]!.socketPath));
      }
      releasePrestartedWorkers(); // guessed for devices this VM does not have
      const running = engine;
      const vm = new Vm(config, running, hosts, log, kvm);
      running.exited.then((e) => {
        log(`engine ${running.name} exited (${e.signal ?? e.code})`);
        // With the frontend gone, the device workers end on their own; make sure.
        hosts.forEach((h) => void h.stop());
      });
      return vm;
    } catch (err) {
      hosts.forEach((h) => void h.stop());
      // A started kvm engine releases KVM itself once its vCPUs and the device hosts are gone.
      if (engine) engine.kill('SIGKILL');
      else if (kvm) {
        const machine = kvm;
        void Promise.all(hosts.map((h) => h.closed)).then(() => machine.release());
      }
      throw err;
    }
  }

  /** Every device with its host, in config order. */
  private devices(): { kind: string; socketPath: string }[] {
    return this.hosts.flatMap((h) => h.devices.map((d) => ({ kind: d.spec.kind, socketPath: d.socketPath })));
  }

  /**
   * Late configuration of device `deviceIndex` (config order, as in
   * MachineConfig.devices), whichever host serves it (see DeviceHost.configure).
   */
  configureDevice(deviceIndex: number, config: DeviceLateConfig): Promise<void> {
    const kind = this.config.devices[deviceIndex]?.kind;
    if (kind && kind !== config.kind) return Promise.reject(new Error(`device ${deviceIndex} is ${kind}, not ${config.kind}`));
    let local = deviceIndex;
    if (Number.isInteger(deviceIndex) && deviceIndex >= 0) {
      for (const h of this.hosts) {
        if (local < h.devices.length) return h.configure(local, config);
        local -= h.devices.length;
      }
    }
    return Promise.reject(new Error(`no device ${deviceIndex} in this VM`));
  }

  /** Device-side records (e.g. FUSE opcodes served), by device kind and index. */
  async deviceStats(): Promise<Record<string, Record<string, number>>> {
    const stats = (await Promise.all(this.hosts.map((h) => h.stats()))).flat();
    const out: Record<string, Record<string, number>> = {};
    this.devices().forEach((d, i) => { out[`${d.kind}${i}`] = stats[i] ?? {}; });
    return out;
  }

  /** Waits up to `graceMs` for the guest to power off, then kills the engine. */
  stop(graceMs = 0): Promise<EngineExit> {
    this.stopping ??= (async () => {
      const timer = setTimeout(() => this.engine.kill('SIGKILL'), graceMs);
      if (graceMs === 0) this.engine.kill('SIGKILL');
      const exit = await this.engine.exited;
      clearTimeout(timer);
      const stats = (await Promise.all(this.hosts.map((h) => h.stop()))).flat();
      const devices = this.devices();
      for (const d of devices) if (d.socketPath) fs.rmSync(d.socketPath, { force: true });
      devices.forEach((d, i) => this.log(`device ${d.kind}${i} served ${JSON.stringify(stats[i])}`));
      return exit;
    })();
    return this.stopping;
  }
}
