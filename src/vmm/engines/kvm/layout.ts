// Guest physical memory map of the kvm engine (x86_64). Low memory holds
// what the Linux 64-bit boot protocol reads before the kernel has its own
// page tables; devices live in a window below 4 GiB.
export const LAYOUT = {
  /** GDT used at entry: null, null, __BOOT_CS (0x10), __BOOT_DS (0x18), TSS (0x20) */
  gdt: 0x500,
  idt: 0x520,
  /** struct boot_params ("zero page") */
  zeroPage: 0x7000,
  /** boot stack top (grows down below the page tables) */
  stack: 0x8ff0,
  pml4: 0x9000,
  pdpt: 0xa000,
  /** one page directory of 2 MiB pages: identity maps the first GiB */
  pd: 0xb000,
  cmdline: 0x20000,
  cmdlineMax: 2048,
  /** MP floating pointer + configuration table: the last KiB of base memory (the kernel scans it) */
  mptable: 0x9fc00,
  /** end of usable base memory */
  ebdaStart: 0x9fc00,
  highMemory: 0x100000,
  /** virtio-mmio windows, one page per device */
  mmioBase: 0xd0000000,
  /** guest RAM above this would overlap the device window */
  ramLimit: 0xc0000000,
  ioapic: 0xfec00000,
  lapic: 0xfee00000,
  /** KVM's real-mode TSS and identity-map pages (Intel VMX), under 4 GiB, outside RAM */
  tss: 0xfffbd000,
  identityMap: 0xfffbc000,
} as const;

/** IRQ lines for virtio-mmio devices (IO-APIC pins; 4 is the UART). */
export const DEVICE_IRQS = [5, 6, 7, 9, 10, 11, 12, 13, 14, 15] as const;
export const UART_IRQ = 4;
export const UART_PORT = 0x3f8;

export function mmioAddress(index: number): number {
  return LAYOUT.mmioBase + index * 0x1000;
}
