// Linux x86_64 boot, the 64-bit protocol (Documentation/x86/boot.rst): load
// the vmlinux ELF's PT_LOAD segments at their physical addresses, write the
// zero page (setup header, e820 map, cmdline and initrd pointers), identity
// page tables and a GDT, and enter startup_64 in long mode with %rsi = zero
// page. Pure functions over a guest-memory byte view: unit-testable
// without KVM.
import fs from 'node:fs';
import { LAYOUT } from './layout.js';

export class BootError extends Error {}

export interface LoadedKernel {
  /** physical entry point (startup_64) */
  entry: number;
  /** [start, end) of the loaded image in guest physical memory */
  start: number;
  end: number;
}

interface Segment { offset: number; paddr: number; filesz: number; memsz: number; vaddr: bigint }

/** Parses the ELF header and PT_LOAD program headers (`head` must hold them). */
function elfSegments(head: Uint8Array, fileSize: number, memSize: number): { entryVirt: bigint; segs: Segment[] } {
  const v = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (head.byteLength < 64 || v.getUint32(0, false) !== 0x7f454c46) throw new BootError('kernel is not an ELF file (need an uncompressed vmlinux)');
  if (head[4] !== 2 || head[5] !== 1) throw new BootError('kernel is not a 64-bit little-endian ELF');
  if (v.getUint16(18, true) !== 62) throw new BootError('kernel is not x86_64');
  const entryVirt = v.getBigUint64(24, true);
  const phoff = Number(v.getBigUint64(32, true));
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  const segs: Segment[] = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + 56 > head.byteLength) throw new BootError('truncated ELF program headers');
    if (v.getUint32(o, true) !== 1) continue; // PT_LOAD
    const seg = {
      offset: Number(v.getBigUint64(o + 8, true)),
      vaddr: v.getBigUint64(o + 16, true),
      paddr: Number(v.getBigUint64(o + 24, true)),
      filesz: Number(v.getBigUint64(o + 32, true)),
      memsz: Number(v.getBigUint64(o + 40, true)),
    };
    if (seg.offset + seg.filesz > fileSize || seg.filesz > seg.memsz) throw new BootError('ELF segment beyond end of file');
    if (seg.paddr < LAYOUT.highMemory || seg.paddr + seg.memsz > memSize) {
      throw new BootError(`ELF segment at 0x${seg.paddr.toString(16)}+0x${seg.memsz.toString(16)} does not fit guest memory`);
    }
    segs.push(seg);
  }
  if (segs.length === 0) throw new BootError('ELF has no loadable segments');
  return { entryVirt, segs };
}

function placed(entryVirt: bigint, segs: Segment[]): LoadedKernel {
  let start = Infinity, end = 0, entry = -1;
  for (const s of segs) {
    start = Math.min(start, s.paddr);
    end = Math.max(end, s.paddr + s.memsz);
    if (entryVirt >= s.vaddr && entryVirt < s.vaddr + BigInt(s.memsz)) entry = s.paddr + Number(entryVirt - s.vaddr);
  }
  // vmlinux's e_entry is already physical (phys_startup_64); map it when it is virtual.
  if (entry < 0) entry = Number(entryVirt & 0x7fffffffn);
  return { entry, start, end };
}

/** Loads an ELF64 x86_64 vmlinux into `mem` (guest physical address 0 = mem[0]). */
export function loadVmlinux(elf: Uint8Array, mem: Uint8Array): LoadedKernel {
  const { entryVirt, segs } = elfSegments(elf, elf.byteLength, mem.byteLength);
  for (const s of segs) {
    mem.set(elf.subarray(s.offset, s.offset + s.filesz), s.paddr);
    mem.fill(0, s.paddr + s.filesz, s.paddr + s.memsz);
  }
  return placed(entryVirt, segs);
}

/** Puts `len` bytes of the open file `fd` at `fileOffset` into guest memory at `gpa`. */
export type SegmentCopy = (fd: number, fileOffset: number, gpa: number, len: number) => void;

/** Reads a segment straight into the guest memory view (no copy of the file). */
export function readSegmentInto(mem: Uint8Array): SegmentCopy {
  return (fd, fileOffset, gpa, len) => {
    for (let done = 0; done < len;) {
      const n = fs.readSync(fd, mem, gpa + done, len - done, fileOffset + done);
      if (n <= 0) throw new BootError('short read of the kernel image');
      done += n;
    }
  };
}

/** Where loadVmlinuxInto puts a kernel: guest RAM's size, a segment copy, and zeroing of a range (a segment's bss). */
export interface GuestSink {
  memSize: number;
  copy: SegmentCopy;
  zero(gpa: number, len: number): void;
}

/**
 * Like loadVmlinux, from the file: only the headers are read here, each
 * segment goes to guest memory through `copy`, its bss through `zero`
 * (the engine does both inside the kernel, on the guest's memfd).
 */
export function loadVmlinuxInto(file: string, sink: GuestSink): LoadedKernel {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = new Uint8Array(Math.min(size, 16384));
    fs.readSync(fd, head, 0, head.byteLength, 0);
    const { entryVirt, segs } = elfSegments(head, size, sink.memSize);
    for (const s of segs) {
      sink.copy(fd, s.offset, s.paddr, s.filesz);
      sink.zero(s.paddr + s.filesz, s.memsz - s.filesz);
    }
    return placed(entryVirt, segs);
  } finally {
    fs.closeSync(fd);
  }
}

/** loadVmlinuxInto a guest-memory view (`copy` defaults to reading into it). */
export function loadVmlinuxFile(file: string, mem: Uint8Array, copy: SegmentCopy = readSegmentInto(mem)): LoadedKernel {
  return loadVmlinuxInto(file, { memSize: mem.byteLength, copy, zero: (gpa, len) => mem.fill(0, gpa, gpa + len) });
}

export const E820_RAM = 1;
export const E820_RESERVED = 2;
export interface E820Entry { addr: number; size: number; type: number }

export function e820Map(memSize: number): E820Entry[] {
  return [
    { addr: 0, size: LAYOUT.ebdaStart, type: E820_RAM },
    { addr: LAYOUT.ebdaStart, size: LAYOUT.highMemory - LAYOUT.ebdaStart, type: E820_RESERVED },
    { addr: LAYOUT.highMemory, size: memSize - LAYOUT.highMemory, type: E820_RAM },
  ];
}

/** struct boot_params offsets used here. */
export const BP = {
  extRamdiskImage: 0x0c0,
  extRamdiskSize: 0x0c4,
  extCmdLinePtr: 0x0c8,
  e820Entries: 0x1e8,
  setupSects: 0x1f1,
  bootFlag: 0x1fe,
  header: 0x202,
  version: 0x206,
  typeOfLoader: 0x210,
  loadflags: 0x211,
  ramdiskImage: 0x218,
  ramdiskSize: 0x21c,
  cmdLinePtr: 0x228,
  initrdAddrMax: 0x22c,
  kernelAlignment: 0x230,
  cmdlineSize: 0x238,
  e820Table: 0x2d0,
} as const;

export interface BootParamsInput {
  memSize: number;
  cmdline: string;
  initrd?: { addr: number; size: number };
}

/** Writes cmdline and the zero page into guest memory. */
export function writeBootParams(mem: Uint8Array, o: BootParamsInput): void {
  const cmd = Buffer.from(o.cmdline + '\0');
  if (cmd.byteLength > LAYOUT.cmdlineMax) throw new BootError(`kernel command line longer than ${LAYOUT.cmdlineMax - 1} bytes`);
  mem.set(cmd, LAYOUT.cmdline);
  const zp = mem.subarray(LAYOUT.zeroPage, LAYOUT.zeroPage + 4096);
  zp.fill(0);
  const v = new DataView(zp.buffer, zp.byteOffset, 4096);
  v.setUint16(BP.bootFlag, 0xaa55, true);
  v.setUint32(BP.header, 0x53726448, true); // "HdrS"
  v.setUint16(BP.version, 0x020f, true);
  v.setUint8(BP.typeOfLoader, 0xff); // undefined boot loader
  v.setUint8(BP.loadflags, 0x01); // LOADED_HIGH
  v.setUint32(BP.cmdLinePtr, LAYOUT.cmdline, true);
  v.setUint32(BP.cmdlineSize, cmd.byteLength - 1, true);
  v.setUint32(BP.kernelAlignment, 0x01000000, true);
  v.setUint32(BP.initrdAddrMax, 0x7fffffff, true);
  if (o.initrd) {
    v.setUint32(BP.ramdiskImage, o.initrd.addr, true);
    v.setUint32(BP.ramdiskSize, o.initrd.size, true);
  }
  const map = e820Map(o.memSize);
  v.setUint8(BP.e820Entries, map.length);
  map.forEach((e, i) => {
    const p = BP.e820Table + 20 * i;
    v.setBigUint64(p, BigInt(e.addr), true);
    v.setBigUint64(p + 8, BigInt(e.size), true);
    v.setUint32(p + 16, e.type, true);
  });
}

/** Where an initrd of `size` bytes goes: page-aligned, at the top of RAM. */
export function initrdAddress(memSize: number, size: number, kernelEnd: number): number {
  const addr = Math.floor((Math.min(memSize, 0x7fffffff) - size) / 4096) * 4096;
  if (addr < kernelEnd) throw new BootError('initrd does not fit above the kernel');
  return addr;
}

const PTE_P = 1, PTE_RW = 2, PTE_PS = 0x80;

/** PML4 -> PDPT -> PD with 512 2 MiB pages: identity map of [0, 1 GiB). */
export function writePageTables(mem: Uint8Array): void {
  const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  mem.fill(0, LAYOUT.pml4, LAYOUT.pd + 4096);
  v.setBigUint64(LAYOUT.pml4, BigInt(LAYOUT.pdpt | PTE_P | PTE_RW), true);
  v.setBigUint64(LAYOUT.pdpt, BigInt(LAYOUT.pd | PTE_P | PTE_RW), true);
  for (let i = 0; i < 512; i++) {
    v.setBigUint64(LAYOUT.pd + 8 * i, (BigInt(i) << 21n) | BigInt(PTE_P | PTE_RW | PTE_PS), true);
  }
}

/** GDT entry from flags (bits 8-15 access, 12-15 of the high word: G/DB/L/AVL), base and limit. */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  return ((BigInt(base) & 0xff000000n) << 32n)
    | ((BigInt(flags) & 0xf0ffn) << 40n)
    | ((BigInt(limit) & 0xf0000n) << 32n)
    | ((BigInt(base) & 0xffffffn) << 16n)
    | (BigInt(limit) & 0xffffn);
}

export const BOOT_CS = 0x10;
export const BOOT_DS = 0x18;
export const BOOT_TSS = 0x20;
export const GDT_ENTRIES = [
  0n,
  0n,
  gdtEntry(0xa09b, 0, 0xfffff), // __BOOT_CS: 64-bit code, present, DPL 0
  gdtEntry(0xc093, 0, 0xfffff), // __BOOT_DS: data, read/write, 4 GiB
  gdtEntry(0x808b, 0, 0xfffff), // TSS (busy)
] as const;

export function writeGdt(mem: Uint8Array): void {
  const v = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  GDT_ENTRIES.forEach((e, i) => v.setBigUint64(LAYOUT.gdt + 8 * i, e, true));
  v.setBigUint64(LAYOUT.idt, 0n, true);
}

/** kvm_segment fields for GDT entry `index` (what the CPU caches when the selector is loaded). */
export function segmentFromGdt(index: number) {
  const e = GDT_ENTRIES[index]!;
  const hi = Number(e >> 32n);
  const g = (hi >> 23) & 1;
  const rawLimit = (hi & 0xf0000) | Number(e & 0xffffn);
  return {
    base: 0n,
    limit: g ? ((rawLimit << 12) | 0xfff) >>> 0 : rawLimit,
    selector: index * 8,
    type: (hi >> 8) & 0xf,
    present: (hi >> 15) & 1,
    dpl: (hi >> 13) & 3,
    db: (hi >> 22) & 1,
    s: (hi >> 12) & 1,
    l: (hi >> 21) & 1,
    g,
    avl: (hi >> 20) & 1,
    unusable: 0,
  };
}

export const CR0_PE = 1n, CR0_PG = 1n << 31n, CR4_PAE = 1n << 5n, EFER_LME = 1n << 8n, EFER_LMA = 1n << 10n;

/** Special registers for long-mode entry. */
export function longModeSregs() {
  const code = segmentFromGdt(BOOT_CS / 8);
  const data = segmentFromGdt(BOOT_DS / 8);
  return {
    cs: code, ds: data, es: data, fs: data, gs: data, ss: data,
    tr: segmentFromGdt(BOOT_TSS / 8),
    gdt: { base: BigInt(LAYOUT.gdt), limit: GDT_ENTRIES.length * 8 - 1 },
    idt: { base: BigInt(LAYOUT.idt), limit: 7 },
    cr0: CR0_PE | CR0_PG | (1n << 4n) /* ET */,
    cr3: BigInt(LAYOUT.pml4),
    cr4: CR4_PAE,
    efer: EFER_LME | EFER_LMA,
  };
}

/** General registers at entry: %rip = startup_64, %rsi = zero page. */
export function entryRegs(entry: number) {
  return {
    rip: BigInt(entry),
    rsi: BigInt(LAYOUT.zeroPage),
    rsp: BigInt(LAYOUT.stack),
    rbp: BigInt(LAYOUT.stack),
    rflags: 2n,
  };
}
