// Intel MultiProcessor Specification 1.4 table: without ACPI this is how
// the guest kernel learns its CPUs (for SMP) and the IO-APIC with its ISA
// interrupt routing (the virtio-mmio and UART IRQs).
import { LAYOUT } from './layout.js';

const IOAPIC_PINS = 24;
const APIC_VERSION = 0x14;
const IOAPIC_VERSION = 0x11;

function checksum(b: Uint8Array): number {
  let s = 0;
  for (const x of b) s = (s + x) & 0xff;
  return (0x100 - s) & 0xff;
}

/** Builds the MP floating pointer (16 bytes) followed by the configuration table. */
export function buildMpTable(cpus: number, at: number = LAYOUT.mptable): Uint8Array {
  if (cpus < 1 || cpus > 254) throw new Error(`bad vCPU count ${cpus}`);
  const entries: Uint8Array[] = [];
  const ioapicId = cpus; // APIC ids 0..cpus-1 are the CPUs
  for (let i = 0; i < cpus; i++) {
    const e = new Uint8Array(20);
    const v = new DataView(e.buffer);
    e[0] = 0; // processor
    e[1] = i; // local APIC id
    e[2] = APIC_VERSION;
    e[3] = 1 | (i === 0 ? 2 : 0); // enabled, bootstrap processor
    v.setUint32(4, 0x600, true); // cpu signature: family 6
    v.setUint32(8, 0x201, true); // feature flags: FPU, APIC
    entries.push(e);
  }
  const bus = new Uint8Array(8);
  bus[0] = 1; bus[1] = 0; bus.set(Buffer.from('ISA   '), 2);
  entries.push(bus);
  const ioapic = new Uint8Array(8);
  ioapic[0] = 2; ioapic[1] = ioapicId; ioapic[2] = IOAPIC_VERSION; ioapic[3] = 1;
  new DataView(ioapic.buffer).setUint32(4, LAYOUT.ioapic, true);
  entries.push(ioapic);
  for (let pin = 0; pin < IOAPIC_PINS; pin++) {
    const e = new Uint8Array(8);
    // type 3 (I/O interrupt), INT, flags 0 (bus default: ISA = edge, active high), bus 0 irq pin -> ioapic pin
    e[0] = 3; e[1] = 0; e[4] = 0; e[5] = pin; e[6] = ioapicId; e[7] = pin;
    entries.push(e);
  }
  const lint0 = new Uint8Array([4, 3, 0, 0, 0, 0, 0xff, 0]); // ExtINT -> all LAPICs LINT0
  const lint1 = new Uint8Array([4, 1, 0, 0, 0, 0, 0xff, 1]); // NMI -> all LAPICs LINT1
  entries.push(lint0, lint1);

  const bodyLen = entries.reduce((n, e) => n + e.byteLength, 0);
  const tableLen = 44 + bodyLen;
  const out = new Uint8Array(16 + tableLen);
  const fp = out.subarray(0, 16);
  const fv = new DataView(fp.buffer, fp.byteOffset, 16);
  fp.set(Buffer.from('_MP_'));
  fv.setUint32(4, at + 16, true); // physical address of the config table
  fp[8] = 1; // length in 16-byte units
  fp[9] = 4; // spec revision 1.4
  fp[10] = 0;
  fp[10] = checksum(fp);

  const t = out.subarray(16);
  const tv = new DataView(t.buffer, t.byteOffset, tableLen);
  t.set(Buffer.from('PCMP'));
  tv.setUint16(4, tableLen, true);
  t[6] = 4;
  t.set(Buffer.from('HUSK    '), 8);
  t.set(Buffer.from('MICROVM     '), 16);
  tv.setUint16(34, entries.length, true);
  tv.setUint32(36, LAYOUT.lapic, true);
  let o = 44;
  for (const e of entries) { t.set(e, o); o += e.byteLength; }
  t[7] = 0;
  t[7] = checksum(t);
  return out;
}

/** Writes the MP table into guest memory at LAYOUT.mptable (must fit below 640 KiB). */
export function writeMpTable(mem: Uint8Array, cpus: number): void {
  const table = buildMpTable(cpus);
  if (LAYOUT.mptable + table.byteLength > 0xa0000) throw new Error('MP table does not fit below 640 KiB');
  mem.set(table, LAYOUT.mptable);
}
