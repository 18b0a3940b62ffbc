// Guest physical memory as the device side sees it: a few regions, each a
// zero-copy view of a shared mapping. Every guest-supplied address goes
// through slice(), which refuses anything not wholly inside one region.

export class GuestMemoryError extends Error {}

export interface MemoryRegion {
  /** guest physical address of the first byte */
  readonly gpa: number;
  readonly size: number;
  /** view of the region's bytes (length === size) */
  readonly bytes: Uint8Array;
  /** address of the region in the frontend's (QEMU's) address space, for vhost-user ring addresses */
  readonly frontendAddr?: number;
}

export class GuestMemory {
  readonly regions: readonly MemoryRegion[];

  constructor(regions: MemoryRegion[]) {
    for (const r of regions) {
      if (r.bytes.byteLength !== r.size) throw new GuestMemoryError('region view size mismatch');
    }
    this.regions = [...regions].sort((a, b) => a.gpa - b.gpa);
  }

  private find(gpa: number, len: number): MemoryRegion {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) {
      throw new GuestMemoryError(`bad guest range ${gpa}+${len}`);
    }
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + len <= r.gpa + r.size) return r;
    }
    throw new GuestMemoryError(`guest range 0x${gpa.toString(16)}+${len} is outside guest memory`);
  }

  /** A view of guest bytes [gpa, gpa+len); throws GuestMemoryError when out of bounds. */
  slice(gpa: number, len: number): Uint8Array {
    const r = this.find(gpa, len);
    const off = gpa - r.gpa;
    return r.bytes.subarray(off, off + len);
  }

  /** Translates a frontend (vhost-user master) virtual address into a guest physical one. */
  frontendToGuest(addr: number): number {
    for (const r of this.regions) {
      if (r.frontendAddr !== undefined && addr >= r.frontendAddr && addr < r.frontendAddr + r.size) {
        return r.gpa + (addr - r.frontendAddr);
      }
    }
    throw new GuestMemoryError(`frontend address 0x${addr.toString(16)} is not in any memory region`);
  }
}

/** Little-endian accessors on a byte view. */
export function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
