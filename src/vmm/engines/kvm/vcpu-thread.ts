// Worker thread of one vCPU (loaded by vcpu-worker.ts): the KVM_RUN loop
// with the engine's port and MMIO handlers (UART, virtio-mmio registers, a
// few legacy ports). Every module of this thread stays clear of the ESM
// wrappers of node:fs and node:worker_threads and of `performance`: in a
// fresh worker they cost ~3 ms of CPU before vCPU 0's first KVM_RUN.
import { VcpuLoop, CTL, describeExit, type StopReason } from './vcpu.js';
import { Uart } from './uart.js';
import { CmosRtc } from './cmos-rtc.js';
import { MmioRegisters, MmioState, waitResetAck } from '../../virtio/mmio.js';
import { eventfdSignal, mmapShared, writeFd, type Mapping } from '../../../sys/io.js';
import { irqLine, EXIT, getRegs, RUN } from '../../../sys/kvm.js';
import { gettid, installKickHandler } from '../../../sys/thread-signal.js';
import { processCpuUs, threadCpuUs } from '../../../sys/cpu-clock.js';
import { handleInt3 } from './pvm-quirks.js';
import { LAYOUT, UART_IRQ, UART_PORT } from './layout.js';

export interface VcpuWorkerData {
  index: number;
  vcpuFd: number;
  vmFd: number;
  runSize: number;
  ctl: SharedArrayBuffer;
  uart: SharedArrayBuffer;
  consoleFd: number;
  devices: { state: SharedArrayBuffer; changeFd: number; kickFds: number[] }[];
  memFd: number;
  memSize: number;
  pvm: boolean;
  /** the process has Node's compile cache on: the worker turns it on too (workers do not inherit it) */
  compileCache: boolean;
}

export type VcpuToMain =
  /** right before the first KVM_RUN: wall clock (ms since the epoch, Date.now), the process's and this thread's CPU time so far (µs) */
  | { type: 'running'; tid: number; wallMs: number; cpuUs: number; threadCpuUs: number }
  | { type: 'log'; msg: string }
  | { type: 'exit'; reason: StopReason; exits: number };

const { workerData, parentPort } = process.getBuiltinModule('node:worker_threads');
const d = workerData as VcpuWorkerData;
const post = (m: VcpuToMain) => parentPort!.postMessage(m);
const log = (msg: string) => post({ type: 'log', msg: `vcpu${d.index}: ${msg}` });
const ctl = new Int32Array(d.ctl);

const uart = new Uart(d.uart, (b) => { try { writeFd(d.consoleFd, b); } catch { /* log gone */ } }, (level) => irqLine(d.vmFd, UART_IRQ, level));
const devices = d.devices.map((dev) => {
  const state = new MmioState(dev.state);
  return new MmioRegisters(state, {
    changed: () => eventfdSignal(dev.changeFd),
    reset: () => {
      eventfdSignal(dev.changeFd);
      if (!waitResetAck(state)) log('virtio-mmio: device did not acknowledge a reset in time');
    },
    notify: (q) => { const fd = dev.kickFds[q]; if (fd !== undefined) eventfdSignal(fd); },
  });
});

const rtc = new CmosRtc();
let memory: Mapping | undefined;
let int3s = 0;
const mmioEnd = LAYOUT.mmioBase + devices.length * 0x1000;

installKickHandler();
const loop = new VcpuLoop(d.vcpuFd, d.runSize, ctl, {
  ioIn(port, size) {
    if (port >= UART_PORT && port < UART_PORT + 8) return uart.read(port - UART_PORT);
    if (rtc.handles(port)) return rtc.read(port);
    return size === 1 ? 0xff : size === 2 ? 0xffff : 0xffffffff;
  },
  ioOut(port, _size, value) {
    if (port >= UART_PORT && port < UART_PORT + 8) uart.write(port - UART_PORT, value);
    else if (rtc.handles(port)) rtc.write(port, value);
  },
  mmioRead(addr, size) {
    if (addr >= LAYOUT.mmioBase && addr < mmioEnd) {
      const rel = addr - LAYOUT.mmioBase;
      return devices[rel >> 12]!.read(rel & 0xfff, size);
    }
    return 0xffffffff;
  },
  mmioWrite(addr, size, value) {
    if (addr >= LAYOUT.mmioBase && addr < mmioEnd) {
      const rel = addr - LAYOUT.mmioBase;
      devices[rel >> 12]!.write(rel & 0xfff, size, value);
    }
  },
  other(reason, run) {
    if (d.pvm && (reason === EXIT.INTERNAL_ERROR || reason === EXIT.EXCEPTION)) {
      memory ??= mmapShared(d.memFd, d.memSize, 0);
      if (handleInt3(d.vcpuFd, memory.bytes)) {
        if (int3s++ === 0) log('int3 delivered as #BP (PVM quirk)');
        return true;
      }
    }
    let rip = '?';
    try { rip = getRegs(d.vcpuFd).rip.toString(16); } catch { /* ignore */ }
    log(`${describeExit(reason, run)} at rip ${rip}, suberror ${run.getUint32(RUN.u, true)}`);
    return false;
  },
});

Atomics.store(ctl, CTL.tids + d.index, gettid());
post({ type: 'running', tid: gettid(), wallMs: Date.now(), cpuUs: processCpuUs(), threadCpuUs: threadCpuUs() });
let reason: StopReason;
try {
  reason = loop.loop();
} catch (err) {
  reason = { kind: 'error', detail: err instanceof Error ? err.stack ?? err.message : String(err) };
}
Atomics.store(ctl, CTL.tids + d.index, 0);
loop.close();
memory?.unmap();
post({ type: 'exit', reason, exits: loop.exits });
