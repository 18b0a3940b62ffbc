// The tiny guest of bench/kvm's exit-cost figure, run by the engine's own
// VcpuLoop: real mode at 0x1000, `mov dx,0x500; l: out dx,al; jmp l`, so
// every exit is one port write. Used on the bench's main thread and in its
// worker (kvm-loop-worker.ts), where the engine runs its vCPUs.
import { VcpuLoop, CTL_BYTES, vcpuMmapSize } from '../src/vmm/engines/kvm/vcpu.js';
import { KVM, getSregs, ioctlInt, mapFd, openKvm, setRegs, setSregs, setUserMemoryRegion } from '../src/sys/kvm.js';
import { closeFd, memfdCreate } from '../src/sys/io.js';
import { threadCpuUs } from '../src/sys/cpu-clock.js';

export interface PerExit { wall: number; cpu: number }

export interface LoopGuest {
  /** runs `n` exits; mean ns per exit, wall clock and this thread's CPU time */
  run(n: number): PerExit;
  close(): void;
}

export function loopGuest(): LoopGuest {
  const kvm = openKvm();
  const vm = ioctlInt(kvm, KVM.CREATE_VM, 0, 'KVM_CREATE_VM');
  const memFd = memfdCreate('bench', 0x10000);
  const mem = mapFd(memFd, 0x10000);
  mem.bytes.set([0xba, 0x00, 0x05, 0xee, 0xeb, 0xfd], 0x1000);
  setUserMemoryRegion(vm, 0, 0, 0x10000, mem.addr);
  const vcpu = ioctlInt(vm, KVM.CREATE_VCPU, 0, 'KVM_CREATE_VCPU');
  const s = getSregs(vcpu);
  s.cs.base = 0n; s.cs.selector = 0;
  setSregs(vcpu, s);
  setRegs(vcpu, { rip: 0x1000n, rflags: 2n });
  let outs = 0;
  const loop = new VcpuLoop(vcpu, vcpuMmapSize(kvm), new Int32Array(new SharedArrayBuffer(CTL_BYTES)), {
    ioIn: () => 0xff,
    ioOut: (port) => { if (port === 0x500) outs++; },
    mmioRead: () => 0,
    mmioWrite: () => {},
    other: () => false,
  });
  return {
    run(n) {
      const before = outs;
      const t = process.hrtime.bigint();
      const c = threadCpuUs();
      const r = loop.loop(loop.exits + n);
      const cpu = threadCpuUs() - c;
      const ns = Number(process.hrtime.bigint() - t);
      if (r.kind !== 'stopped' || outs - before < n) throw new Error(`guest loop ended: ${JSON.stringify(r)}`);
      return { wall: ns / n, cpu: (cpu * 1000) / n };
    },
    close() { loop.close(); closeFd(vcpu); closeFd(vm); mem.unmap(); closeFd(memFd); closeFd(kvm); },
  };
}
