// Everything the kvm engine does only because the host's /dev/kvm is PVM
// (module kvm_pvm: software nested virtualization that interprets a
// standard guest kernel and cannot run its user space). On a hardware
// KVM host none of this is active. See DESIGN.md §1.
import { getRegs, getSregs, injectException, setRegs, type CpuidEntry } from '../../../sys/kvm.js';

/** True when the host's KVM is PVM. */
export function isPvmHost(sysModule = '/sys/module'): boolean {
  // not a static import: every vCPU thread loads this module (see vcpu-thread.ts)
  return process.getBuiltinModule('node:fs').existsSync(`${sysModule}/kvm_pvm`);
}

export const PVM_CLEARED_CPUID = ['cx16', 'popcnt', 'smap', 'rdpid', 'fsgsbase', 'pku', 'pcid', 'invpcid', 'rdrand', 'rdseed'];

/**
 * Command-line additions PVM's instruction emulator needs: no XSAVE, and
 * none of the instructions the kernel patches in through alternatives that
 * the emulator cannot execute (found: CMPXCHG16B, POPCNT, CLAC/STAC of SMAP;
 * cleared as a precaution: RDPID and FSGSBASE of the entry code, PKU,
 * PCID/INVPCID, RDRAND/RDSEED), no kvmclock (its pvclock page is not
 * kept up to date for an emulated guest), and the TSC frequency given
 * because calibrating it against the PIT takes minutes when interpreted.
 */
export function pvmCmdline(tscKhz: number): string[] {
  const extra = ['noxsave', `clearcpuid=${PVM_CLEARED_CPUID.join(',')}`, 'no-kvmclock'];
  if (tscKhz > 0) extra.push(`tsc_early_khz=${tscKhz}`);
  return extra;
}

/** KVM paravirtual features (CPUID 0x40000001 EAX) whose guest side is a hypercall. */
export const KVM_PV_HYPERCALL_FEATURES = {
  PV_UNHALT: 7, // KVM_HC_KICK_CPU (paravirtual spinlocks)
  PV_TLB_FLUSH: 9, // flushes through IPIs/hypercalls
  PV_SEND_IPI: 11, // KVM_HC_SEND_IPI
  PV_SCHED_YIELD: 13, // KVM_HC_SCHED_YIELD
} as const;

/**
 * CPUID for a standard guest on PVM: no paravirtual feature the guest uses
 * through a hypercall. With two vCPUs the guest sends IPIs with
 * KVM_HC_SEND_IPI, and on PVM the `vmcall` of a non-PVM guest never
 * completes: the AP spun at that instruction (rip constant over seconds)
 * while the BSP waited for it in a spin lock. Without the feature bits the
 * guest uses the local APIC (ICR writes), which PVM emulates.
 */
export function pvmCpuid(entries: CpuidEntry[]): CpuidEntry[] {
  const mask = Object.values(KVM_PV_HYPERCALL_FEATURES).reduce((m, bit) => m | (1 << bit), 0);
  return entries.map((e) => (e.function === 0x40000001 ? { ...e, eax: (e.eax & ~mask) >>> 0 } : e));
}

/** Reads `len` bytes at guest virtual address `gva` through the guest's 4-level page tables. */
export function readGuestVirtual(mem: Uint8Array, cr3: bigint, gva: bigint, len: number): Uint8Array | null {
  const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i++) {
    const pa = translate(v, cr3, gva + BigInt(i));
    if (pa === null || pa >= mem.byteLength) return null;
    out[i] = mem[pa]!;
  }
  return out;
}

function translate(v: DataView, cr3: bigint, gva: bigint): number | null {
  let table = Number(cr3 & 0x000ffffffffff000n);
  for (let level = 3; level >= 0; level--) {
    const idx = Number((gva >> BigInt(12 + 9 * level)) & 0x1ffn);
    const at = table + idx * 8;
    if (at + 8 > v.byteLength) return null;
    const e = v.getBigUint64(at, true);
    if (!(e & 1n)) return null;
    const base = Number(e & 0x000ffffffffff000n);
    if (level > 0 && level < 3 && e & 0x80n) {
      const pageBits = 12 + 9 * level;
      const mask = (1n << BigInt(pageBits)) - 1n;
      return Number((e & 0x000ffffffffff000n & ~mask) | (gva & mask));
    }
    if (level === 0) return base + Number(gva & 0xfffn);
    table = base;
  }
  return null;
}

/**
 * PVM's emulator stops at `int3` (the kernel's int3 self-test and text
 * patching use it) with an internal-error exit. When the instruction at
 * %rip is 0xCC, deliver it as the CPU would: %rip past it, #BP injected.
 * Returns true when handled.
 */
export function handleInt3(vcpuFd: number, mem: Uint8Array): boolean {
  const regs = getRegs(vcpuFd);
  const sregs = getSregs(vcpuFd);
  const op = readGuestVirtual(mem, sregs.cr3, regs.rip, 1);
  if (!op || op[0] !== 0xcc) return false;
  setRegs(vcpuFd, { rip: regs.rip + 1n });
  injectException(vcpuFd, 3);
  return true;
}
