// The vCPU run loop: KVM_RUN, look at the exit, answer it, again. It runs
// synchronously in its own worker thread (one per vCPU); a stop request is
// a flag plus kvm_run.immediate_exit plus a signal to the thread, so a vCPU
// blocked inside KVM_RUN (e.g. a halted guest) returns at once.
import { EXIT, EAGAIN, EINTR, RUN, exitName, kvmRun, mapFd, ioctlInt, KVM, type AddrMapping } from '../../../sys/kvm.js';

export interface ExitHandlers {
  /** port input: return the value (size 1, 2 or 4 bytes) */
  ioIn(port: number, size: number): number;
  ioOut(port: number, size: number, value: number): void;
  mmioRead(addr: number, size: number): number;
  mmioWrite(addr: number, size: number, value: number): void;
  /** exits the loop does not know; return true to keep running */
  other(reason: number, run: DataView): boolean;
}

export type StopReason =
  | { kind: 'stopped' }
  | { kind: 'shutdown'; detail: string }
  | { kind: 'error'; detail: string };

/** Control words shared by the engine and all its vCPU threads (pause: 1 = park; parked: threads parked now). */
export const CTL = { stop: 0, pause: 1, parked: 2, tids: 8 } as const;
export const CTL_BYTES = 4 * (8 + 64);

export class VcpuLoop {
  readonly fd: number;
  readonly run: AddrMapping;
  private readonly view: DataView;
  private readonly u32: Uint32Array;
  private readonly ctl: Int32Array;
  private readonly h: ExitHandlers;
  exits = 0;

  constructor(vcpuFd: number, runSize: number, ctl: Int32Array, handlers: ExitHandlers) {
    this.fd = vcpuFd;
    this.run = mapFd(vcpuFd, runSize, 0);
    this.view = new DataView(this.run.bytes.buffer, this.run.bytes.byteOffset, runSize);
    this.u32 = new Uint32Array(this.run.bytes.buffer, this.run.bytes.byteOffset, runSize >> 2);
    this.ctl = ctl;
    this.h = handlers;
  }

  /** Runs until stopped, shut down, or failed. `maxExits` bounds it (benchmarks). */
  loop(maxExits = Infinity): StopReason {
    const v = this.view;
    const u32 = this.u32;
    const h = this.h;
    const fd = this.fd;
    const ctl = this.ctl;
    while (this.exits < maxExits) {
      if (Atomics.load(ctl, CTL.stop)) return { kind: 'stopped' };
      if (Atomics.load(ctl, CTL.pause)) { this.park(); continue; }
      const r = kvmRun(fd);
      if (r < 0) {
        if (r === -EINTR) { v.setUint8(RUN.immediateExit, 0); continue; }
        // An application processor woken from wait-for-SIPI (INIT/SIPI arrived): run again.
        if (r === -EAGAIN) continue;
        return { kind: 'error', detail: `KVM_RUN failed: errno ${-r}` };
      }
      this.exits++;
      const reason = u32[RUN.exitReason >> 2]!;
      if (reason === EXIT.IO) {
        const dir = v.getUint8(RUN.io.direction);
        const size = v.getUint8(RUN.io.size);
        const port = v.getUint16(RUN.io.port, true);
        const count = v.getUint32(RUN.io.count, true);
        let off = v.getUint32(RUN.io.dataOffset, true); // offset into the kvm_run mapping (a few pages)
        for (let i = 0; i < count; i++, off += size) {
          if (dir === 1) {
            const val = size === 1 ? v.getUint8(off) : size === 2 ? v.getUint16(off, true) : v.getUint32(off, true);
            h.ioOut(port, size, val);
          } else {
            const val = h.ioIn(port, size);
            if (size === 1) v.setUint8(off, val);
            else if (size === 2) v.setUint16(off, val, true);
            else v.setUint32(off, val, true);
          }
        }
      } else if (reason === EXIT.MMIO) {
        const lo = v.getUint32(RUN.mmio.physAddr, true);
        const hi = v.getUint32(RUN.mmio.physAddr + 4, true);
        const addr = hi * 0x100000000 + lo;
        const len = v.getUint32(RUN.mmio.len, true);
        const d = RUN.mmio.data;
        if (v.getUint8(RUN.mmio.isWrite)) {
          const val = len === 1 ? v.getUint8(d) : len === 2 ? v.getUint16(d, true) : len === 4 ? v.getUint32(d, true) : Number(v.getBigUint64(d, true) & 0xffffffffn);
          h.mmioWrite(addr, len, val);
        } else {
          const val = h.mmioRead(addr, len) >>> 0;
          v.setBigUint64(d, 0n, true);
          if (len === 1) v.setUint8(d, val);
          else if (len === 2) v.setUint16(d, val, true);
          else v.setUint32(d, val, true);
        }
      } else if (reason === EXIT.SHUTDOWN) {
        return { kind: 'shutdown', detail: 'triple fault (guest reboot or crash)' };
      } else if (reason === EXIT.SYSTEM_EVENT) {
        return { kind: 'shutdown', detail: `system event ${v.getUint32(RUN.u, true)}` };
      } else if (reason === EXIT.INTR || reason === EXIT.HLT || reason === EXIT.IRQ_WINDOW_OPEN) {
        continue;
      } else if (!h.other(reason, v)) {
        return { kind: 'error', detail: describeExit(reason, v) };
      }
    }
    return { kind: 'stopped' };
  }

  /** Pause: the vCPU is between exits (a safe point, no exit half-handled); sleeps until resumed or stopped. */
  private park(): void {
    const ctl = this.ctl;
    Atomics.add(ctl, CTL.parked, 1);
    Atomics.notify(ctl, CTL.parked);
    while (Atomics.load(ctl, CTL.pause) && !Atomics.load(ctl, CTL.stop)) Atomics.wait(ctl, CTL.pause, 1, 1000);
    Atomics.sub(ctl, CTL.parked, 1);
    this.view.setUint8(RUN.immediateExit, 0);
  }

  close(): void {
    this.run.unmap();
  }
}

export function describeExit(reason: number, v: DataView): string {
  const words: string[] = [];
  for (let i = 0; i < 8; i++) words.push(v.getUint32(RUN.u + 4 * i, true).toString(16));
  return `unhandled exit ${exitName(reason)} (${reason}), data ${words.join(' ')}`;
}

export function vcpuMmapSize(kvmFd: number): number {
  return ioctlInt(kvmFd, KVM.GET_VCPU_MMAP_SIZE, 0, 'KVM_GET_VCPU_MMAP_SIZE');
}
