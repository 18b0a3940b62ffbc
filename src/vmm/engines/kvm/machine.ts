// The kvm engine: husk itself is the VMM. This module creates the VM
// (memory from a memfd, in-kernel IRQ chip and PIT, CPUID), loads the
// kernel, wires each virtio-mmio device (ioeventfd per queue = kick fd,
// irqfd per device = call fd) and runs one worker thread per vCPU. The
// device backends run unchanged in a device worker (DeviceHost, see vm.ts).
import fs from 'node:fs';
import module from 'node:module';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { projectRoot } from '../../assets.js';
import type { EngineExit, MachineConfig, RunningEngine } from '../../engine.js';
import type { MmioWorkerTransport } from '../../virtio/mmio-backend.js';
import { MmioState, MMIO_SIZE, Reg, STATE_BYTES } from '../../virtio/mmio.js';
import { closeFd, copyFdRange, eventfd, memfdCreate, punchHole } from '../../../sys/io.js';
import {
  KVM, KVM_CAP, checkExtension, createPit2, getSregs, getSupportedCpuid, ioctlInt, ioeventfd, irqfd,
  mapFd, openKvm, setCpuid, setLapicVirtualWire, setRegs, setSregs, setUserMemoryRegion,
  type AddrMapping, type CpuidEntry,
} from '../../../sys/kvm.js';
import { kickThread } from '../../../sys/thread-signal.js';
import { threadCpuUs } from '../../../sys/cpu-clock.js';
import { LAYOUT, DEVICE_IRQS, mmioAddress } from './layout.js';
import { entryRegs, initrdAddress, loadVmlinuxInto, longModeSregs, writeBootParams, writeGdt, writePageTables } from './boot.js';
import { writeMpTable } from './mptable.js';
import { isPvmHost, pvmCmdline, pvmCpuid } from './pvm-quirks.js';
import { CTL, CTL_BYTES, vcpuMmapSize, type StopReason } from './vcpu.js';
import { UART_STATE_BYTES } from './uart.js';
import type { VcpuToMain, VcpuWorkerData } from './vcpu-thread.js';

export interface KvmOptions {
  /** host workarounds for PVM (default: detected) */
  pvm?: boolean;
}

/** vCPU 0 about to enter KVM_RUN for the first time. */
export interface FirstRun {
  /** wall clock, ms since the epoch */
  wallMs: number;
  /** CPU time of the whole process so far, µs */
  cpuUs: number;
  /** CPU time of vCPU 0's thread so far (isolate start, modules, loop set-up), µs */
  vcpuThreadCpuUs: number;
}

function workerScript(): URL | string {
  if (import.meta.url.endsWith('.js')) return new URL('./vcpu-worker.js', import.meta.url);
  return path.join(projectRoot(), 'dist/src/vmm/engines/kvm/vcpu-worker.js');
}

interface DeviceWiring {
  state: SharedArrayBuffer;
  kickFds: number[];
  callFd: number;
  changeFd: number;
  irq: number;
  base: number;
}

/** CPUID for vCPU `index`: APIC ids and the hypervisor bit. */
export function vcpuCpuid(supported: CpuidEntry[], index: number, count: number): CpuidEntry[] {
  return supported.map((e) => {
    const c = { ...e };
    if (c.function === 1) {
      c.ebx = ((c.ebx & 0x0000ffff) | ((count & 0xff) << 16) | (index << 24)) >>> 0;
      c.ecx = (c.ecx | (1 << 31)) >>> 0;
    } else if (c.function === 0xb || c.function === 0x1f) {
      c.edx = index;
    }
    return c;
  });
}

export class KvmMachine {
  readonly config: MachineConfig;
  readonly pvm: boolean;
  readonly cmdline: string;
  private readonly log: (msg: string) => void;
  private readonly kvmFd: number;
  private readonly vmFd: number;
  private readonly memFd: number;
  private readonly memSize: number;
  private readonly mem: AddrMapping;
  private readonly vcpuFds: number[] = [];
  private readonly runMaps: AddrMapping[] = [];
  private readonly runSize: number;
  private readonly wiring: DeviceWiring[] = [];
  private readonly ctl = new SharedArrayBuffer(CTL_BYTES);
  private released = false;
  private readonly firstRunDone = Promise.withResolvers<FirstRun | undefined>();
  /** Resolves when vCPU 0 enters KVM_RUN for the first time; undefined when the engine ended before. */
  readonly firstRun = this.firstRunDone.promise;
  /** main-thread CPU time of each set-up step of the constructor, µs */
  readonly setupCpuUs: Record<'kvm' | 'memory' | 'devices' | 'vcpus' | 'kernel' | 'tables', number>;

  constructor(config: MachineConfig, log: (msg: string) => void, opts: KvmOptions = {}) {
    this.config = config;
    this.log = log;
    this.pvm = opts.pvm ?? isPvmHost();
    this.memSize = config.memoryMiB * 1024 * 1024;
    if (this.memSize > LAYOUT.ramLimit) throw new Error(`kvm engine: at most ${LAYOUT.ramLimit >> 20} MiB of guest memory for now`);
    if (config.devices.length > DEVICE_IRQS.length) throw new Error(`kvm engine: at most ${DEVICE_IRQS.length} devices`);
    const fds: number[] = [];
    let mem: AddrMapping | undefined;
    const cpu = { kvm: 0, memory: 0, devices: 0, vcpus: 0, kernel: 0, tables: 0 };
    let t = threadCpuUs();
    const mark = (step: keyof typeof cpu) => { const now = threadCpuUs(); cpu[step] = now - t; t = now; };
    this.setupCpuUs = cpu;
    try {
      this.kvmFd = openKvm(); fds.push(this.kvmFd);
      const api = ioctlInt(this.kvmFd, KVM.GET_API_VERSION, 0, 'KVM_GET_API_VERSION');
      if (api !== 12) throw new Error(`KVM API version ${api}, need 12`);
      for (const [name, cap] of [['IRQCHIP', KVM_CAP.IRQCHIP], ['IRQFD', KVM_CAP.IRQFD], ['IOEVENTFD', KVM_CAP.IOEVENTFD], ['IMMEDIATE_EXIT', KVM_CAP.IMMEDIATE_EXIT]] as const) {
        if (checkExtension(this.kvmFd, cap) <= 0) throw new Error(`KVM lacks KVM_CAP_${name}`);
      }
      this.vmFd = ioctlInt(this.kvmFd, KVM.CREATE_VM, 0, 'KVM_CREATE_VM'); fds.push(this.vmFd);
      this.runSize = vcpuMmapSize(this.kvmFd);
      try { ioctlInt(this.vmFd, KVM.SET_TSS_ADDR, LAYOUT.tss, 'KVM_SET_TSS_ADDR'); } catch (e) { log(`kvm: ${(e as Error).message} (ignored)`); }
      ioctlInt(this.vmFd, KVM.CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP');
      createPit2(this.vmFd);
      mark('kvm');

      this.memFd = memfdCreate('husk-guest-ram', this.memSize); fds.push(this.memFd);
      // JS sees only base memory, where the boot tables go; KVM and the kernel loader use the fd and the address.
      this.mem = mem = mapFd(this.memFd, this.memSize, 0, LAYOUT.highMemory);
      setUserMemoryRegion(this.vmFd, 0, 0, this.memSize, this.mem.addr);
      mark('memory');

      // Devices: state, eventfds, KVM wiring.
      config.devices.forEach((_, i) => {
        const base = mmioAddress(i);
        const queues = config.devices[i]!.kind === 'fs' ? 1 + ((config.devices[i] as { requestQueues?: number }).requestQueues ?? 1) : 3;
        const kickFds = Array.from({ length: queues }, () => eventfd());
        const callFd = eventfd();
        const changeFd = eventfd();
        fds.push(...kickFds, callFd, changeFd);
        kickFds.forEach((fd, q) => ioeventfd(this.vmFd, fd, base + Reg.QueueNotify, 4, q));
        irqfd(this.vmFd, callFd, DEVICE_IRQS[i]!);
        this.wiring.push({ state: new MmioState().sab, kickFds, callFd, changeFd, irq: DEVICE_IRQS[i]!, base });
      });
      mark('devices');

      // vCPUs
      const supported = getSupportedCpuid(this.kvmFd);
      const cpuid = this.pvm ? pvmCpuid(supported) : supported;
      for (let i = 0; i < config.vcpus; i++) {
        const fd = ioctlInt(this.vmFd, KVM.CREATE_VCPU, i, 'KVM_CREATE_VCPU'); fds.push(fd);
        this.vcpuFds.push(fd);
        setCpuid(fd, vcpuCpuid(cpuid, i, config.vcpus));
        setLapicVirtualWire(fd);
        this.runMaps.push(mapFd(fd, this.runSize));
      }
      mark('vcpus');

      // Kernel, boot parameters, tables.
      const g = this.mem.bytes;
      // The kernel copies file pages into the memfd: no 15 MB read through a mapping (page fault per page).
      const toGuest = (fd: number, off: number, gpa: number, len: number) => copyFdRange(fd, off, this.memFd, gpa, len);
      const kernel = loadVmlinuxInto(config.kernel, {
        memSize: this.memSize, copy: toGuest, zero: (gpa, len) => punchHole(this.memFd, gpa, len),
      });
      let initrd: { addr: number; size: number } | undefined;
      if (config.initrd) {
        const fd = fs.openSync(config.initrd, 'r');
        try {
          const size = fs.fstatSync(fd).size;
          const addr = initrdAddress(this.memSize, size, kernel.end);
          toGuest(fd, 0, addr, size);
          initrd = { addr, size };
        } finally {
          fs.closeSync(fd);
        }
      }
      mark('kernel');
      const parts = [config.cmdline];
      if (this.pvm) {
        let khz = 0;
        try { khz = ioctlInt(this.vcpuFds[0]!, KVM.GET_TSC_KHZ, 0, 'KVM_GET_TSC_KHZ'); } catch { /* leave it to calibration */ }
        parts.push(...pvmCmdline(khz));
      }
      this.wiring.forEach((w) => parts.push(`virtio_mmio.device=${MMIO_SIZE / 1024}K@0x${w.base.toString(16)}:${w.irq}`));
      this.cmdline = parts.join(' ');
      writeBootParams(g, { memSize: this.memSize, cmdline: this.cmdline, initrd });
      writePageTables(g);
      writeGdt(g);
      writeMpTable(g, config.vcpus);
      const bsp = this.vcpuFds[0]!;
      setSregs(bsp, { ...getSregs(bsp), ...longModeSregs() });
      setRegs(bsp, entryRegs(kernel.entry));
      mark('tables');
      log(`kvm: ${config.vcpus} vCPU, ${config.memoryMiB} MiB, kernel entry 0x${kernel.entry.toString(16)}${this.pvm ? ', PVM quirks on' : ''}`);
      log(`kvm: cmdline: ${this.cmdline}`);
      log(`kvm: set-up CPU ms: ${Object.entries(cpu).map(([k, v]) => `${k} ${(v / 1000).toFixed(1)}`).join(', ')}`);
    } catch (err) {
      this.runMaps.forEach((m) => m.unmap());
      mem?.unmap();
      fds.reverse().forEach(closeFd);
      throw err;
    }
  }

  /** The virtio-mmio wiring of device `index`, for its DeviceHost. */
  transport(index: number): MmioWorkerTransport {
    const w = this.wiring[index]!;
    return {
      kind: 'mmio', state: w.state, memFd: this.memFd,
      memRegions: [{ gpa: 0, size: this.memSize, offset: 0 }],
      kickFds: w.kickFds, callFd: w.callFd, changeFd: w.changeFd,
    };
  }

  /** Starts the vCPU threads. `devicesClosed()` resolves when the device workers have let go of their fds. */
  start(devicesClosed: () => Promise<unknown>): RunningEngine {
    const ctl = new Int32Array(this.ctl);
    const uart = new SharedArrayBuffer(UART_STATE_BYTES);
    const consoleFd = fs.openSync(this.config.consoleLog, 'a');
    const exited = Promise.withResolvers<EngineExit>();
    let live = this.vcpuFds.length;
    let first: StopReason | undefined;
    let killSignal: NodeJS.Signals | null = null;
    const workers: Worker[] = [];
    const stopAll = () => {
      Atomics.store(ctl, CTL.stop, 1);
      Atomics.notify(ctl, CTL.pause); // parked threads see the stop
      this.runMaps.forEach((m) => { m.bytes[1] = 1; }); // kvm_run.immediate_exit
      this.kickAll();
    };
    let kicker: NodeJS.Timeout | undefined;
    const onExit = (index: number, reason: StopReason, exits: number) => {
      this.log(`kvm: vcpu${index} ${reason.kind}${'detail' in reason ? `: ${reason.detail}` : ''} after ${exits} exits`);
      first ??= reason;
      if (!Atomics.load(ctl, CTL.stop)) {
        stopAll();
        // A thread can be between its stop check and KVM_RUN: kick until all are out.
        kicker = setInterval(() => this.kickAll(), 20);
      }
      if (--live === 0) {
        clearInterval(kicker);
        fs.closeSync(consoleFd);
        const code = first?.kind === 'error' ? 1 : killSignal ? null : 0;
        this.firstRunDone.resolve(undefined);
        exited.resolve({ code, signal: killSignal });
        void devicesClosed().then(() => this.release());
      }
    };
    this.vcpuFds.forEach((fd, index) => {
      const data: VcpuWorkerData = {
        index, vcpuFd: fd, vmFd: this.vmFd, runSize: this.runSize, ctl: this.ctl, uart, consoleFd,
        devices: this.wiring.map((w) => ({ state: w.state, changeFd: w.changeFd, kickFds: w.kickFds })),
        memFd: this.memFd, memSize: this.memSize, pvm: this.pvm,
        compileCache: module.getCompileCacheDir?.() !== undefined,
      };
      const worker = new Worker(workerScript(), { workerData: data, stdout: false, stderr: false });
      let done = false;
      worker.on('message', (m: VcpuToMain) => {
        if (m.type === 'log') this.log(m.msg);
        else if (m.type === 'running' && index === 0) this.firstRunDone.resolve({ wallMs: m.wallMs, cpuUs: m.cpuUs, vcpuThreadCpuUs: m.threadCpuUs });
        else if (m.type === 'exit') { done = true; onExit(index, m.reason, m.exits); }
      });
      worker.on('error', (err) => this.log(`kvm: vcpu${index} worker error: ${err.stack ?? err.message}`));
      worker.on('exit', () => { if (!done) onExit(index, { kind: 'error', detail: 'worker ended' }, 0); });
      workers.push(worker);
    });
    return {
      name: 'kvm',
      pid: process.pid,
      exited: exited.promise,
      kill: (signal: NodeJS.Signals = 'SIGKILL') => {
        if (live === 0 || Atomics.load(ctl, CTL.stop)) return;
        killSignal = signal;
        stopAll();
        kicker = setInterval(() => this.kickAll(), 20);
      },
      pause: async () => {
        if (live === 0 || Atomics.load(ctl, CTL.stop)) throw new Error('the VM is not running');
        Atomics.store(ctl, CTL.pause, 1);
        // Out of KVM_RUN at once (immediate_exit + signal), then each vCPU parks at the top of its loop.
        const deadline = Date.now() + 10_000;
        while (Atomics.load(ctl, CTL.parked) < live) {
          if (Atomics.load(ctl, CTL.stop)) throw new Error('the VM stopped while pausing');
          if (Date.now() > deadline) {
            Atomics.store(ctl, CTL.pause, 0);
            Atomics.notify(ctl, CTL.pause);
            throw new Error('the vCPUs did not stop in time');
          }
          this.runMaps.forEach((m) => { m.bytes[1] = 1; });
          this.kickAll();
          await new Promise((r) => setTimeout(r, 5));
        }
      },
      resume: async () => {
        Atomics.store(ctl, CTL.pause, 0);
        Atomics.notify(ctl, CTL.pause);
      },
    };
  }

  private kickAll(): void {
    const ctl = new Int32Array(this.ctl);
    this.vcpuFds.forEach((_, i) => {
      const tid = Atomics.load(ctl, CTL.tids + i);
      if (tid > 0) kickThread(tid);
    });
  }

  /** Closes KVM and the eventfds (after vCPU and device threads are gone). */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.runMaps.forEach((m) => m.unmap());
    this.vcpuFds.forEach(closeFd);
    for (const w of this.wiring) {
      w.kickFds.forEach(closeFd);
      closeFd(w.callFd);
      closeFd(w.changeFd);
    }
    closeFd(this.vmFd);
    this.mem.unmap();
    closeFd(this.memFd);
    closeFd(this.kvmFd);
  }
}
