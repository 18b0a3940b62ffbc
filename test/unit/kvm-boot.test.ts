// The kvm engine's boot layout against the Linux x86 boot protocol
// (Documentation/arch/x86/boot.rst, zero-page.rst) and the MP spec 1.4:
// pure functions over a byte array (and a memfd), no /dev/kvm needed.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  BOOT_CS, BOOT_DS, BP, CR0_PE, CR0_PG, CR4_PAE, E820_RAM, E820_RESERVED, EFER_LMA, EFER_LME,
  entryRegs, initrdAddress, loadVmlinux, loadVmlinuxFile, loadVmlinuxInto, longModeSregs, segmentFromGdt, writeBootParams, writeGdt, writePageTables,
} from '../../src/vmm/engines/kvm/boot.js';
import { LAYOUT } from '../../src/vmm/engines/kvm/layout.js';
import { buildMpTable } from '../../src/vmm/engines/kvm/mptable.js';
import { readGuestVirtual, pvmCmdline, pvmCpuid } from '../../src/vmm/engines/kvm/pvm-quirks.js';
import { vcpuCpuid } from '../../src/vmm/engines/kvm/machine.js';
import { closeFd, copyFdRange, memfdCreate, punchHole } from '../../src/sys/io.js';
import { mapFd } from '../../src/sys/kvm.js';

const MEM = 64 << 20;
const dv = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, b.byteLength);

describe('zero page (struct boot_params)', () => {
  const mem = new Uint8Array(MEM);
  writeBootParams(mem, { memSize: MEM, cmdline: 'console=ttyS0 root=rootfs', initrd: { addr: 0x3000000, size: 12345 } });
  const zp = dv(mem.subarray(LAYOUT.zeroPage, LAYOUT.zeroPage + 4096));

  it('has the setup header magic, loader type and pointers the 64-bit protocol reads', () => {
    expect(zp.getUint16(BP.bootFlag, true)).toBe(0xaa55);
    expect(zp.getUint32(BP.header, true)).toBe(0x53726448); // "HdrS"
    expect(zp.getUint16(BP.version, true)).toBeGreaterThanOrEqual(0x020c);
    expect(zp.getUint8(BP.typeOfLoader)).toBe(0xff);
    expect(zp.getUint32(BP.cmdLinePtr, true)).toBe(LAYOUT.cmdline);
    expect(zp.getUint32(BP.ramdiskImage, true)).toBe(0x3000000);
    expect(zp.getUint32(BP.ramdiskSize, true)).toBe(12345);
    // the sentinel byte must stay 0 or the kernel wipes fields it considers stale
    expect(zp.getUint8(0x1ef)).toBe(0);
  });

  it('stores the NUL-terminated command line where cmd_line_ptr points', () => {
    const at = LAYOUT.cmdline;
    const s = Buffer.from(mem.subarray(at, at + 64)).toString('latin1');
    expect(s.slice(0, s.indexOf('\0'))).toBe('console=ttyS0 root=rootfs');
    expect(zp.getUint32(BP.cmdlineSize, true)).toBe('console=ttyS0 root=rootfs'.length);
  });

  it('refuses a command line longer than COMMAND_LINE_SIZE', () => {
    expect(() => writeBootParams(new Uint8Array(MEM), { memSize: MEM, cmdline: 'x'.repeat(3000) })).toThrow(/command line/);
  });

  it('describes RAM with an e820 map: base memory, the reserved EBDA/BIOS hole, high memory', () => {
    const n = zp.getUint8(BP.e820Entries);
    const entries = Array.from({ length: n }, (_, i) => {
      const o = BP.e820Table + 20 * i;
      return { addr: Number(zp.getBigUint64(o, true)), size: Number(zp.getBigUint64(o + 8, true)), type: zp.getUint32(o + 16, true) };
    });
    expect(entries).toEqual([
      { addr: 0, size: 0x9fc00, type: E820_RAM },
      { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
      { addr: 0x100000, size: MEM - 0x100000, type: E820_RAM },
    ]);
    // boot structures live in RAM the kernel knows about, below the MP table
    for (const a of [LAYOUT.zeroPage, LAYOUT.pml4, LAYOUT.cmdline, LAYOUT.gdt]) expect(a).toBeLessThan(0x9fc00);
  });

  it('places an initrd page-aligned at the top of RAM and above the kernel', () => {
    const a = initrdAddress(MEM, 70000, 0x2000000);
    expect(a % 4096).toBe(0);
    expect(a + 70000).toBeLessThanOrEqual(MEM);
    expect(() => initrdAddress(MEM, 60 << 20, 0x2000000)).toThrow(/initrd/);
  });
});

describe('page tables, GDT and long-mode registers', () => {
  const mem = new Uint8Array(MEM);
  writePageTables(mem);
  writeGdt(mem);
  const v = dv(mem);

  it('identity-maps the first GiB with 2 MiB pages: PML4[0] -> PDPT[0] -> PD[0..511]', () => {
    expect(v.getBigUint64(LAYOUT.pml4, true)).toBe(BigInt(LAYOUT.pdpt | 3));
    expect(v.getBigUint64(LAYOUT.pdpt, true)).toBe(BigInt(LAYOUT.pd | 3));
    for (const i of [0, 1, 8, 511]) {
      expect(v.getBigUint64(LAYOUT.pd + 8 * i, true)).toBe((BigInt(i) << 21n) | 0x83n);
    }
    expect(v.getBigUint64(LAYOUT.pml4 + 8, true)).toBe(0n);
    // a walk through them translates addresses to themselves
    mem[0x1234567] = 0xab;
    expect(readGuestVirtual(mem, BigInt(LAYOUT.pml4), 0x1234567n, 1)?.[0]).toBe(0xab);
    expect(readGuestVirtual(mem, BigInt(LAYOUT.pml4), 0x40000000n, 1)).toBeNull(); // beyond 1 GiB: unmapped
  });

  it('has __BOOT_CS (0x10) as 64-bit code and __BOOT_DS (0x18) as flat data, as the protocol requires', () => {
    expect(BOOT_CS).toBe(0x10);
    expect(BOOT_DS).toBe(0x18);
    const cs = v.getBigUint64(LAYOUT.gdt + BOOT_CS, true);
    const ds = v.getBigUint64(LAYOUT.gdt + BOOT_DS, true);
    expect(cs).toBe(0x00af9b000000ffffn);
    expect(ds).toBe(0x00cf93000000ffffn);
    const code = segmentFromGdt(BOOT_CS / 8);
    expect(code).toMatchObject({ selector: 0x10, l: 1, db: 0, s: 1, present: 1, dpl: 0, type: 0xb, g: 1, limit: 0xffffffff });
    const data = segmentFromGdt(BOOT_DS / 8);
    expect(data).toMatchObject({ selector: 0x18, l: 0, db: 1, s: 1, present: 1, type: 3, limit: 0xffffffff });
  });

  it('enters long mode with paging on the identity map and %rsi = zero page', () => {
    const s = longModeSregs();
    expect(s.cr0 & CR0_PE).toBe(CR0_PE);
    expect(s.cr0 & CR0_PG).toBe(CR0_PG);
    expect(s.cr4 & CR4_PAE).toBe(CR4_PAE);
    expect(s.efer & (EFER_LME | EFER_LMA)).toBe(EFER_LME | EFER_LMA);
    expect(s.cr3).toBe(BigInt(LAYOUT.pml4));
    expect(s.cs.selector).toBe(BOOT_CS);
    for (const seg of [s.ds, s.es, s.ss]) expect(seg.selector).toBe(BOOT_DS);
    expect(s.gdt).toEqual({ base: BigInt(LAYOUT.gdt), limit: 5 * 8 - 1 });
    const r = entryRegs(0x1000000);
    expect(r).toMatchObject({ rip: 0x1000000n, rsi: BigInt(LAYOUT.zeroPage), rflags: 2n });
    // interrupts off (IF clear) at entry
    expect(r.rflags & 0x200n).toBe(0n);
  });
});

describe('vmlinux loading', () => {
  function fakeElf(): Uint8Array {
    // ELF64 header + 1 PT_LOAD: vaddr 0xffffffff81000000 -> paddr 0x1000000, 16 bytes of file, 64 of memory
    const b = new Uint8Array(0x100);
    const v = dv(b);
    b.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
    v.setUint16(18, 62, true);
    v.setBigUint64(24, 0x1000000n, true); // e_entry (physical, as vmlinux has)
    v.setBigUint64(32, 64n, true);
    v.setUint16(54, 56, true);
    v.setUint16(56, 1, true);
    v.setUint32(64, 1, true);
    v.setBigUint64(64 + 8, 0xc0n, true);
    v.setBigUint64(64 + 16, 0xffffffff81000000n, true);
    v.setBigUint64(64 + 24, 0x1000000n, true);
    v.setBigUint64(64 + 32, 16n, true);
    v.setBigUint64(64 + 40, 64n, true);
    b.fill(0xee, 0xc0, 0xd0);
    return b;
  }

  it('copies PT_LOAD segments to their physical addresses and zeroes the bss part', () => {
    const mem = new Uint8Array(MEM).fill(0x55, 0x1000000, 0x1000100);
    const k = loadVmlinux(fakeElf(), mem);
    expect(k).toEqual({ entry: 0x1000000, start: 0x1000000, end: 0x1000040 });
    expect(mem[0x1000000]).toBe(0xee);
    expect(mem[0x100000f]).toBe(0xee);
    expect(mem[0x1000010]).toBe(0);
    expect(mem[0x100003f]).toBe(0);
    expect(mem[0x1000040]).toBe(0x55);
  });

  it('loads into a memfd as the engine does: segments by sendfile, bss by punching a hole, JS viewing only base memory', () => {
    const elf = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'husk-boot-')), 'vmlinux');
    fs.writeFileSync(elf, fakeElf());
    const memFd = memfdCreate('husk-boot-test', MEM);
    const guest = mapFd(memFd, MEM, 0, LAYOUT.highMemory);
    try {
      expect(guest.bytes.byteLength).toBe(LAYOUT.highMemory);
      const dirty = new Uint8Array(0x100).fill(0x55);
      fs.writeSync(memFd, dirty, 0, dirty.byteLength, 0x1000000); // memory that was not zero
      const k = loadVmlinuxInto(elf, { memSize: MEM, copy: (fd, off, gpa, len) => copyFdRange(fd, off, memFd, gpa, len), zero: (gpa, len) => punchHole(memFd, gpa, len) });
      expect(k).toEqual({ entry: 0x1000000, start: 0x1000000, end: 0x1000040 });
      const back = new Uint8Array(0x100);
      fs.readSync(memFd, back, 0, back.byteLength, 0x1000000);
      expect([...back.subarray(0, 0x10)].every((b) => b === 0xee)).toBe(true);
      expect([...back.subarray(0x10, 0x40)].every((b) => b === 0)).toBe(true); // bss, inside one page
      expect([...back.subarray(0x40)].every((b) => b === 0x55)).toBe(true); // past the segment: untouched
      expect(() => loadVmlinuxInto(elf, { memSize: 0x1000020, copy: () => {}, zero: () => {} })).toThrow(/does not fit/);
    } finally {
      guest.unmap();
      closeFd(memFd);
      fs.rmSync(path.dirname(elf), { recursive: true, force: true });
    }
  });

  it('rejects what it cannot boot: not ELF, segments outside guest memory', () => {
    expect(() => loadVmlinux(new Uint8Array(100), new Uint8Array(MEM))).toThrow(/not an ELF/);
    expect(() => loadVmlinux(fakeElf(), new Uint8Array(0x1000020))).toThrow(/does not fit/);
  });

  const vmlinux = path.resolve(import.meta.dirname, '../../kernel/build/vmlinux');
  it.skipIf(!fs.existsSync(vmlinux))("loads the project's kernel with its entry at startup_64 (16 MiB)", () => {
    const mem = new Uint8Array(128 << 20);
    const k = loadVmlinux(fs.readFileSync(vmlinux), mem);
    expect(k.entry).toBe(0x1000000);
    expect(k.start).toBe(0x1000000);
    expect(k.end).toBeLessThan(128 << 20);
    // the engine's loader reads segments straight from the file: same result
    const mem2 = new Uint8Array(128 << 20);
    expect(loadVmlinuxFile(vmlinux, mem2)).toEqual(k);
    expect(Buffer.compare(mem.subarray(k.start, k.end), mem2.subarray(k.start, k.end))).toBe(0);
    // and as the engine does it: each segment copied by the kernel (sendfile) into the guest's memfd
    const memFd = memfdCreate('husk-boot-test', 128 << 20);
    const guest = mapFd(memFd, 128 << 20);
    try {
      expect(loadVmlinuxFile(vmlinux, guest.bytes, (fd, off, gpa, len) => copyFdRange(fd, off, memFd, gpa, len))).toEqual(k);
      expect(Buffer.compare(mem.subarray(k.start, k.end), guest.bytes.subarray(k.start, k.end))).toBe(0);
    } finally {
      guest.unmap();
      closeFd(memFd);
    }
  });
});

describe('MP table', () => {
  const sum = (b: Uint8Array) => b.reduce((s, x) => (s + x) & 0xff, 0);
  it('has a valid floating pointer and configuration table with one entry per CPU, ISA bus, IO-APIC and 24 pins', () => {
    const t = buildMpTable(2, LAYOUT.mptable);
    const fp = t.subarray(0, 16);
    expect(Buffer.from(fp.subarray(0, 4)).toString()).toBe('_MP_');
    expect(sum(fp)).toBe(0);
    expect(dv(fp).getUint32(4, true)).toBe(LAYOUT.mptable + 16);
    const cfg = t.subarray(16);
    const cv = dv(cfg);
    expect(Buffer.from(cfg.subarray(0, 4)).toString()).toBe('PCMP');
    expect(cv.getUint16(4, true)).toBe(cfg.byteLength);
    expect(sum(cfg)).toBe(0);
    expect(cv.getUint32(36, true)).toBe(LAYOUT.lapic);
    const count = cv.getUint16(34, true);
    expect(count).toBe(2 + 1 + 1 + 24 + 2);
    // processors first: APIC ids 0 and 1, CPU 0 is the bootstrap processor
    expect([cfg[44], cfg[45], cfg[47]]).toEqual([0, 0, 3]);
    expect([cfg[64], cfg[65], cfg[67]]).toEqual([0, 1, 1]);
    // IO-APIC entry with id 2 (after the CPUs) at 0xfec00000
    const io = 44 + 40 + 8;
    expect([cfg[io], cfg[io + 1]]).toEqual([2, 2]);
    expect(cv.getUint32(io + 4, true)).toBe(LAYOUT.ioapic);
    // ISA IRQ 5 (first virtio-mmio device) routed to IO-APIC pin 5
    const pin5 = io + 8 + 5 * 8;
    expect([cfg[pin5], cfg[pin5 + 5], cfg[pin5 + 6], cfg[pin5 + 7]]).toEqual([3, 5, 2, 5]);
    expect(LAYOUT.mptable + t.byteLength).toBeLessThanOrEqual(0xa0000);
  });
});

describe('CPUID per vCPU and PVM quirks', () => {
  it('gives every vCPU its APIC id and the hypervisor bit', () => {
    const base = [
      { function: 1, index: 0, flags: 0, eax: 0x806e9, ebx: 0x00010800, ecx: 0x7ffafbff, edx: 0xbfebfbff },
      { function: 0xb, index: 0, flags: 1, eax: 1, ebx: 1, ecx: 0x100, edx: 0 },
    ];
    const c = vcpuCpuid(base, 1, 2);
    expect(c[0]!.ebx >>> 24).toBe(1);
    expect((c[0]!.ebx >>> 16) & 0xff).toBe(2);
    expect(c[0]!.ecx >>> 31).toBe(1);
    expect(c[1]!.edx).toBe(1);
    expect(base[0]!.ebx).toBe(0x00010800); // input untouched
  });

  it('on PVM, hides the KVM paravirtual features a guest uses through hypercalls (SMP: PV IPIs) and nothing else', () => {
    const kvmFeatures = 0x0100fefb; // what this host's KVM_GET_SUPPORTED_CPUID reports
    const base = [
      { function: 1, index: 0, flags: 0, eax: 0x806e9, ebx: 0x00010800, ecx: 0x7ffafbff, edx: 0xbfebfbff },
      { function: 0x40000000, index: 0, flags: 0, eax: 0x40000001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d },
      { function: 0x40000001, index: 0, flags: 0, eax: kvmFeatures, ebx: 0, ecx: 0, edx: 0 },
    ];
    const c = pvmCpuid(base);
    const eax = c[2]!.eax;
    for (const bit of [7, 9, 11, 13]) expect((eax >>> bit) & 1, `bit ${bit}`).toBe(0);
    // everything else stays: clocksource bits, async PF, steal time, PV EOI, MSI ext dest id, stable bit
    expect(eax | (1 << 7) | (1 << 9) | (1 << 11) | (1 << 13)).toBe(kvmFeatures);
    expect(c.slice(0, 2)).toEqual(base.slice(0, 2));
    expect(base[2]!.eax).toBe(kvmFeatures); // input untouched
  });

  it('PVM command-line workarounds are the ones measured (DESIGN.md §1)', () => {
    const c = pvmCmdline(2596096);
    expect(c).toContain('noxsave');
    expect(c).toContain('no-kvmclock');
    expect(c).toContain('tsc_early_khz=2596096');
    expect(c.find((x) => x.startsWith('clearcpuid='))!.split('=')[1]!.split(',')).toEqual(expect.arrayContaining(['cx16', 'popcnt', 'smap']));
    expect(pvmCmdline(0)).not.toContain('tsc_early_khz=0');
  });
});
