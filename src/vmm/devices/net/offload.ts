// Checksum offload between the guest and passt (virtio 1.x §5.1.6).
// Under TCG every byte the guest checksums costs emulated instructions, so:
//  - RX (VIRTIO_NET_F_GUEST_CSUM): frames from passt carry checksums passt
//    computed itself (TCP, UDPv6, ICMP; UDPv4 may carry none), and they
//    cross only a local socket, so the device marks them DATA_VALID and the
//    guest skips verifying them.
//  - TX (VIRTIO_NET_F_CSUM): the guest leaves the L4 checksum partial
//    (pseudo-header sum at csum_start + csum_offset). passt (as packaged)
//    never verifies L4 checksums of tap frames, but a frame that leaves the
//    device must be a valid one whatever passt or a capture (-p) does with
//    it: the device completes the checksum before the frame goes to passt.
// No segmentation offloads: with the 65520-byte MTU a TCP segment already
// fills an IP packet, so TSO/GSO would save the guest nothing.
// Every header field is guest-controlled and checked against the frame.

export const VIRTIO_NET_F_CSUM = 1n << 0n;
export const VIRTIO_NET_F_GUEST_CSUM = 1n << 1n;

export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;

/** Where the device must finish a checksum the guest left partial. */
export interface PartialCsum { start: number; offset: number }

/**
 * Reads the TX header's offload request for a frame of `frameLen` bytes.
 * Returns null (nothing to do), a PartialCsum, or a string saying why the
 * frame must be dropped.
 */
export function txOffload(hdr: Uint8Array, frameLen: number, csumNegotiated: boolean): PartialCsum | null | string {
  if (hdr.byteLength < 10) return 'short virtio-net header';
  const flags = hdr[0]!;
  const gsoType = hdr[1]!;
  // No HOST_TSO/UFO was offered: a segmentation request is a driver bug or an attack.
  if (gsoType !== VIRTIO_NET_HDR_GSO_NONE) return `gso_type ${gsoType} without segmentation offload`;
  if (flags & ~VIRTIO_NET_HDR_F_NEEDS_CSUM) return `unknown tx header flags 0x${flags.toString(16)}`;
  if (!(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)) return null;
  if (!csumNegotiated) return 'NEEDS_CSUM without VIRTIO_NET_F_CSUM';
  const start = hdr[6]! | (hdr[7]! << 8);
  const offset = hdr[8]! | (hdr[9]! << 8);
  // The checksum covers at least its own field, after the Ethernet header, inside the frame.
  if (start < 14 || start + offset + 2 > frameLen) return `csum_start ${start} + csum_offset ${offset} outside a ${frameLen}-byte frame`;
  return { start, offset };
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** One's-complement sum of `b` as big-endian 16-bit words (odd tail padded), not folded. */
export function onesSum(b: Uint8Array): number {
  const n = b.byteLength;
  let i = 0;
  let sum = 0;
  // Word-aligned start (an even offset that is not a multiple of 4: one word first).
  if (b.byteOffset & 1) return onesSumBytes(b);
  if (b.byteOffset & 2 && n >= 2) { sum += (b[0]! << 8) | b[1]!; i = 2; }
  // The bulk as native (little-endian) 32-bit loads: a one's-complement sum is
  // independent of byte order up to swapping the folded result (RFC 1071 §2(B)).
  // Each half is at most 0xffff, so the two running sums stay exact far beyond any frame.
  const words = (n - i) >>> 2;
  if (words > 0) {
    const u32 = new Uint32Array(b.buffer, b.byteOffset + i, words);
    let lo = 0;
    let hi = 0;
    for (let k = 0; k < words; k++) {
      const w = u32[k]!;
      lo += w & 0xffff;
      hi += w >>> 16;
    }
    const native = fold(lo + hi);
    sum += LITTLE_ENDIAN ? ((native & 0xff) << 8) | (native >>> 8) : native;
    i += words * 4;
  }
  return sum + onesSumBytes(b.subarray(i));
}

/** onesSum one byte pair at a time (any alignment; the short head and tail of a frame). */
function onesSumBytes(b: Uint8Array): number {
  const n = b.byteLength;
  let sum = 0;
  let i = 0;
  for (; i + 2 <= n; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < n) sum += b[i]! << 8;
  return sum;
}

/** Folds a sum to 16 bits with end-around carry. */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/** Completes a partial checksum in place: the field holds the pseudo-header sum the guest put there. */
export function completeChecksum(frame: Uint8Array, c: PartialCsum): void {
  const at = c.start + c.offset;
  if (c.start < 0 || at + 2 > frame.byteLength) throw new RangeError('checksum field outside the frame');
  const csum = (~fold(onesSum(frame.subarray(c.start)))) & 0xffff;
  // 0 means "no checksum" to UDP; one's complement has two zeros, send the other one.
  const v = csum === 0 ? 0xffff : csum;
  frame[at] = v >>> 8;
  frame[at + 1] = v & 0xff;
}
