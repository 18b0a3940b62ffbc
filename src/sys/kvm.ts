// The KVM API through koffi: ioctl numbers, struct layouts (x86_64) and thin
// wrappers. Everything here is a plain system call; policy lives in
// src/vmm/engines/kvm/.
import { libc, koffi, check, lastErrno, SysError } from './libc.js';
import os from 'node:os';

const E = os.constants.errno;

const c_open = libc.func('int open(const char *path, int flags, int mode)');
// ioctl is variadic in C; declaring fixed prototypes keeps each call cheap.
const c_ioctl_ptr = libc.func('ioctl', 'int', ['int', 'unsigned long', 'void *']);
const c_ioctl_int = libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']);
const c_mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const c_munmap = libc.func('int munmap(void *addr, size_t length)');

// _IO/_IOW/_IOR/_IOWR with KVMIO = 0xAE
const io = (nr: number) => 0xae00 | nr;
const iow = (nr: number, size: number) => (0x40000000 | (size << 16) | 0xae00 | nr) >>> 0;
const ior = (nr: number, size: number) => (0x80000000 | (size << 16) | 0xae00 | nr) >>> 0;
const iowr = (nr: number, size: number) => (0xc0000000 | (size << 16) | 0xae00 | nr) >>> 0;

export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, 8),
  CREATE_VCPU: io(0x41),
  SET_USER_MEMORY_REGION: iow(0x46, 32),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, 8),
  IRQFD: iow(0x76, 32),
  CREATE_PIT2: iow(0x77, 64),
  IOEVENTFD: iow(0x79, 64),
  RUN: io(0x80),
  GET_REGS: ior(0x81, 144),
  SET_REGS: iow(0x82, 144),
  GET_SREGS: ior(0x83, 312),
  SET_SREGS: iow(0x84, 312),
  SET_CPUID2: iow(0x90, 8),
  GET_LAPIC: ior(0x8e, 1024),
  SET_LAPIC: iow(0x8f, 1024),
  GET_VCPU_EVENTS: ior(0x9f, 64),
  SET_VCPU_EVENTS: iow(0xa0, 64),
  GET_TSC_KHZ: io(0xa3),
} as const;

export const KVM_CAP = {
  IRQCHIP: 0,
  USER_MEMORY: 3,
  PIT2: 33,
  IRQFD: 32,
  IOEVENTFD: 36,
  NR_VCPUS: 9,
  MAX_VCPUS: 66,
  IMMEDIATE_EXIT: 136,
} as const;

export const EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6,
  IRQ_WINDOW_OPEN: 7, SHUTDOWN: 8, FAIL_ENTRY: 9, INTR: 10, INTERNAL_ERROR: 17, SYSTEM_EVENT: 24,
} as const;
export const exitName = (r: number) => Object.entries(EXIT).find(([, v]) => v === r)?.[0] ?? `exit ${r}`;

/** Byte offsets inside struct kvm_run (x86_64). */
export const RUN = {
  immediateExit: 1,
  exitReason: 8,
  /** the exit-specific union */
  u: 32,
  io: { direction: 32, size: 33, port: 34, count: 36, dataOffset: 40 },
  mmio: { physAddr: 32, data: 40, len: 48, isWrite: 52 },
} as const;

export function ioctlPtr(fd: number, req: number, arg: Uint8Array | null, name: string): number {
  for (;;) {
    const r = c_ioctl_ptr(fd, req, arg);
    if (r >= 0) return r;
    const e = lastErrno();
    if (e !== E.EINTR) throw new SysError(name, e);
  }
}

export function ioctlInt(fd: number, req: number, arg: number | bigint, name: string): number {
  for (;;) {
    const r = c_ioctl_int(fd, req, arg);
    if (r >= 0) return r;
    const e = lastErrno();
    if (e !== E.EINTR) throw new SysError(name, e);
  }
}

/** KVM_RUN once: 0, or -errno (EINTR when a signal or immediate_exit stopped it). */
export function kvmRun(vcpuFd: number): number {
  const r = c_ioctl_int(vcpuFd, KVM.RUN, 0);
  return r < 0 ? -lastErrno() : r;
}
export const EINTR = E.EINTR;
export const EAGAIN = E.EAGAIN;

export function openKvm(path = '/dev/kvm'): number {
  const O_RDWR = 2, O_CLOEXEC = 0o2000000;
  return check(`open ${path}`, c_open(path, O_RDWR | O_CLOEXEC, 0));
}

export function checkExtension(fd: number, cap: number): number {
  return c_ioctl_int(fd, KVM.CHECK_EXTENSION, cap);
}

/** A shared mapping that also exposes its host address (for KVM memory slots). */
export interface AddrMapping {
  readonly addr: bigint;
  /** a view of the start of the mapping (all of it unless mapFd was told less) */
  readonly bytes: Uint8Array;
  unmap(): void;
}

/**
 * Maps `length` bytes of `fd` shared. `bytes` views only the first `viewLength`
 * of them: V8 counts a view's size as external memory, and a view of all guest
 * RAM makes it start a full garbage collection for memory nobody allocated.
 */
export function mapFd(fd: number, length: number, offset = 0, viewLength = length): AddrMapping {
  const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
  const ptr = c_mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const addr = BigInt(koffi.address(ptr));
  if (addr === 0xffffffffffffffffn) throw new SysError('mmap', lastErrno());
  const bytes = new Uint8Array(koffi.view(ptr, Math.min(viewLength, length)));
  let mapped = true;
  return { addr, bytes, unmap() { if (mapped) { mapped = false; c_munmap(ptr, length); } } };
}

export function setUserMemoryRegion(vmFd: number, slot: number, gpa: number, size: number, hostAddr: bigint): void {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint32(0, slot, true);
  v.setUint32(4, 0, true);
  v.setBigUint64(8, BigInt(gpa), true);
  v.setBigUint64(16, BigInt(size), true);
  v.setBigUint64(24, hostAddr, true);
  ioctlPtr(vmFd, KVM.SET_USER_MEMORY_REGION, b, 'KVM_SET_USER_MEMORY_REGION');
}

export function createPit2(vmFd: number): void {
  ioctlPtr(vmFd, KVM.CREATE_PIT2, new Uint8Array(64), 'KVM_CREATE_PIT2');
}

// struct kvm_irq_level (native endian), reused: the UART drives its line for every byte it sends
const irqLevelBytes = new Uint8Array(8);
const irqLevel = new Uint32Array(irqLevelBytes.buffer);
export function irqLine(vmFd: number, irq: number, level: number): void {
  irqLevel[0] = irq;
  irqLevel[1] = level;
  ioctlPtr(vmFd, KVM.IRQ_LINE, irqLevelBytes, 'KVM_IRQ_LINE');
}

/** KVM_IRQFD: a write to `fd` raises (edge) GSI `gsi`. */
export function irqfd(vmFd: number, fd: number, gsi: number, deassign = false): void {
  const b = new Uint8Array(32);
  const v = new DataView(b.buffer);
  v.setUint32(0, fd, true);
  v.setUint32(4, gsi, true);
  v.setUint32(8, deassign ? 1 : 0, true);
  ioctlPtr(vmFd, KVM.IRQFD, b, 'KVM_IRQFD');
}

/** KVM_IOEVENTFD on MMIO: a guest write of `datamatch` (len bytes) at `addr` signals `fd` without exiting. */
export function ioeventfd(vmFd: number, fd: number, addr: number, len: number, datamatch: number | null, deassign = false): void {
  const b = new Uint8Array(64);
  const v = new DataView(b.buffer);
  const DATAMATCH = 1, DEASSIGN = 4;
  v.setBigUint64(0, BigInt(datamatch ?? 0), true);
  v.setBigUint64(8, BigInt(addr), true);
  v.setUint32(16, len, true);
  v.setInt32(20, fd, true);
  v.setUint32(24, (datamatch !== null ? DATAMATCH : 0) | (deassign ? DEASSIGN : 0), true);
  ioctlPtr(vmFd, KVM.IOEVENTFD, b, 'KVM_IOEVENTFD');
}

/** struct kvm_cpuid_entry2 */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

const MAX_CPUID = 256;
export function getSupportedCpuid(kvmFd: number): CpuidEntry[] {
  const b = new Uint8Array(8 + 40 * MAX_CPUID);
  const v = new DataView(b.buffer);
  v.setUint32(0, MAX_CPUID, true);
  ioctlPtr(kvmFd, KVM.GET_SUPPORTED_CPUID, b, 'KVM_GET_SUPPORTED_CPUID');
  const n = v.getUint32(0, true);
  const out: CpuidEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + 40 * i;
    out.push({
      function: v.getUint32(o, true), index: v.getUint32(o + 4, true), flags: v.getUint32(o + 8, true),
      eax: v.getUint32(o + 12, true), ebx: v.getUint32(o + 16, true), ecx: v.getUint32(o + 20, true), edx: v.getUint32(o + 24, true),
    });
  }
  return out;
}

export function setCpuid(vcpuFd: number, entries: CpuidEntry[]): void {
  const b = new Uint8Array(8 + 40 * entries.length);
  const v = new DataView(b.buffer);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + 40 * i;
    v.setUint32(o, e.function, true); v.setUint32(o + 4, e.index, true); v.setUint32(o + 8, e.flags, true);
    v.setUint32(o + 12, e.eax >>> 0, true); v.setUint32(o + 16, e.ebx >>> 0, true);
    v.setUint32(o + 20, e.ecx >>> 0, true); v.setUint32(o + 24, e.edx >>> 0, true);
  });
  ioctlPtr(vcpuFd, KVM.SET_CPUID2, b, 'KVM_SET_CPUID2');
}

/** struct kvm_regs, in order. */
export const REG_NAMES = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags'] as const;
export type Regs = Record<(typeof REG_NAMES)[number], bigint>;

export function getRegs(vcpuFd: number): Regs {
  const b = new Uint8Array(144);
  ioctlPtr(vcpuFd, KVM.GET_REGS, b, 'KVM_GET_REGS');
  const v = new DataView(b.buffer);
  const r = {} as Regs;
  REG_NAMES.forEach((n, i) => { r[n] = v.getBigUint64(8 * i, true); });
  return r;
}

export function setRegs(vcpuFd: number, r: Partial<Regs>): void {
  const b = new Uint8Array(144);
  ioctlPtr(vcpuFd, KVM.GET_REGS, b, 'KVM_GET_REGS');
  const v = new DataView(b.buffer);
  REG_NAMES.forEach((n, i) => { const x = r[n]; if (x !== undefined) v.setBigUint64(8 * i, x, true); });
  ioctlPtr(vcpuFd, KVM.SET_REGS, b, 'KVM_SET_REGS');
}

/** struct kvm_segment */
export interface Segment {
  base: bigint; limit: number; selector: number; type: number;
  present: number; dpl: number; db: number; s: number; l: number; g: number; avl: number; unusable?: number;
}
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: { base: bigint; limit: number }; idt: { base: bigint; limit: number };
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apicBase: bigint;
}
const SEG_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

function readSeg(v: DataView, o: number): Segment {
  return {
    base: v.getBigUint64(o, true), limit: v.getUint32(o + 8, true), selector: v.getUint16(o + 12, true),
    type: v.getUint8(o + 14), present: v.getUint8(o + 15), dpl: v.getUint8(o + 16), db: v.getUint8(o + 17),
    s: v.getUint8(o + 18), l: v.getUint8(o + 19), g: v.getUint8(o + 20), avl: v.getUint8(o + 21), unusable: v.getUint8(o + 22),
  };
}
function writeSeg(v: DataView, o: number, s: Segment): void {
  v.setBigUint64(o, s.base, true); v.setUint32(o + 8, s.limit >>> 0, true); v.setUint16(o + 12, s.selector, true);
  v.setUint8(o + 14, s.type); v.setUint8(o + 15, s.present); v.setUint8(o + 16, s.dpl); v.setUint8(o + 17, s.db);
  v.setUint8(o + 18, s.s); v.setUint8(o + 19, s.l); v.setUint8(o + 20, s.g); v.setUint8(o + 21, s.avl);
  v.setUint8(o + 22, s.unusable ?? 0);
}

export function getSregs(vcpuFd: number): Sregs {
  const b = new Uint8Array(312);
  ioctlPtr(vcpuFd, KVM.GET_SREGS, b, 'KVM_GET_SREGS');
  const v = new DataView(b.buffer);
  const s = {} as Sregs;
  SEG_NAMES.forEach((n, i) => { s[n] = readSeg(v, 24 * i); });
  s.gdt = { base: v.getBigUint64(192, true), limit: v.getUint16(200, true) };
  s.idt = { base: v.getBigUint64(208, true), limit: v.getUint16(216, true) };
  s.cr0 = v.getBigUint64(224, true); s.cr2 = v.getBigUint64(232, true); s.cr3 = v.getBigUint64(240, true);
  s.cr4 = v.getBigUint64(248, true); s.cr8 = v.getBigUint64(256, true); s.efer = v.getBigUint64(264, true);
  s.apicBase = v.getBigUint64(272, true);
  return s;
}

export function setSregs(vcpuFd: number, s: Sregs): void {
  const b = new Uint8Array(312);
  ioctlPtr(vcpuFd, KVM.GET_SREGS, b, 'KVM_GET_SREGS'); // keeps the interrupt bitmap
  const v = new DataView(b.buffer);
  SEG_NAMES.forEach((n, i) => writeSeg(v, 24 * i, s[n]));
  v.setBigUint64(192, s.gdt.base, true); v.setUint16(200, s.gdt.limit, true);
  v.setBigUint64(208, s.idt.base, true); v.setUint16(216, s.idt.limit, true);
  v.setBigUint64(224, s.cr0, true); v.setBigUint64(232, s.cr2, true); v.setBigUint64(240, s.cr3, true);
  v.setBigUint64(248, s.cr4, true); v.setBigUint64(256, s.cr8, true); v.setBigUint64(264, s.efer, true);
  v.setBigUint64(272, s.apicBase, true);
  ioctlPtr(vcpuFd, KVM.SET_SREGS, b, 'KVM_SET_SREGS');
}

/** Sets the local APIC's LINT0 to ExtINT and LINT1 to NMI (what firmware leaves for Linux). */
export function setLapicVirtualWire(vcpuFd: number): void {
  const b = new Uint8Array(1024);
  ioctlPtr(vcpuFd, KVM.GET_LAPIC, b, 'KVM_GET_LAPIC');
  const v = new DataView(b.buffer);
  const LVT_LINT0 = 0x350, LVT_LINT1 = 0x360, DM_EXTINT = 0x700, DM_NMI = 0x400;
  v.setUint32(LVT_LINT0, (v.getUint32(LVT_LINT0, true) & ~0x700) | DM_EXTINT, true);
  v.setUint32(LVT_LINT1, (v.getUint32(LVT_LINT1, true) & ~0x700) | DM_NMI, true);
  ioctlPtr(vcpuFd, KVM.SET_LAPIC, b, 'KVM_SET_LAPIC');
}

/** Injects exception `nr` (no error code) into the vCPU through KVM_SET_VCPU_EVENTS. */
export function injectException(vcpuFd: number, nr: number): void {
  const b = new Uint8Array(64);
  ioctlPtr(vcpuFd, KVM.GET_VCPU_EVENTS, b, 'KVM_GET_VCPU_EVENTS');
  b[0] = 1; // exception.injected
  b[1] = nr;
  b[2] = 0; // has_error_code
  b[3] = 0; // pending
  new DataView(b.buffer).setUint32(4, 0, true);
  // flags (offset 20) = 0: leave NMI, SIPI, SMM and interrupt-shadow state alone
  new DataView(b.buffer).setUint32(20, 0, true);
  ioctlPtr(vcpuFd, KVM.SET_VCPU_EVENTS, b, 'KVM_SET_VCPU_EVENTS');
}
