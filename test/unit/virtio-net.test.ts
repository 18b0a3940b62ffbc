// The virtio-net device against a simulated guest driver (rings in a plain
// buffer) and a socketpair standing in for passt's end of the stream.
import { readFromPeer } from '../helpers/net-peer.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeVirtioDriver } from '../helpers/fake-virtio-driver.js';
import { Poller, closeFd, readFd, setNonBlocking, writeFd } from '../../src/sys/io.js';
import { setSendBuffer, socketPair } from '../../src/sys/unix-socket.js';
import { NET_HDR_SIZE, VIRTIO_NET_F_MRG_RXBUF, VirtioNetDevice } from '../../src/vmm/devices/net/virtio-net.js';
import { lengthPrefix } from '../../src/vmm/devices/net/frame-stream.js';
import {
  VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_HDR_F_DATA_VALID, VIRTIO_NET_HDR_F_NEEDS_CSUM,
  completeChecksum, fold, onesSum, txOffload,
} from '../../src/vmm/devices/net/offload.js';

const MEM = 8 << 20;
const QSIZE = 256;
const MTU = 65520;

class FakeDriver extends FakeVirtioDriver {
  rxBufs = new Map<number, { addr: number; len: number }[]>();
  constructor() { super(MEM, QSIZE); }
  sendFrame(frame: Uint8Array, hdr?: Uint8Array): void {
    const a = this.alloc(NET_HDR_SIZE + frame.byteLength);
    this.bytes.fill(0, a, a + NET_HDR_SIZE);
    if (hdr) this.bytes.set(hdr, a);
    this.bytes.set(frame, a + NET_HDR_SIZE);
    this.add(1, [{ addr: a, len: NET_HDR_SIZE + frame.byteLength, write: false }]);
  }
  /** As Linux sends with SG: the header alone, then the frame in pieces of `piece` bytes. */
  sendScattered(frame: Uint8Array, hdr: Uint8Array, piece: number): void {
    const bufs = [{ addr: this.alloc(NET_HDR_SIZE), len: NET_HDR_SIZE, write: false }];
    this.bytes.set(hdr, bufs[0]!.addr);
    for (let o = 0; o < frame.byteLength; o += piece) {
      const part = frame.subarray(o, o + piece);
      const a = this.alloc(part.byteLength);
      this.bytes.set(part, a);
      bufs.push({ addr: a, len: part.byteLength, write: false });
    }
    this.add(1, bufs);
  }
  /** The virtio-net header of the first buffer of each received frame. */
  rxHeaders(): Uint8Array[] {
    return this.used(0).map((u) => this.rxBufs.get(u.head)![0]!).map((b) => this.bytes.slice(b.addr, b.addr + NET_HDR_SIZE));
  }
  giveRx(n: number, size: number): void {
    for (let i = 0; i < n; i++) {
      const a = this.alloc(size);
      const head = this.add(0, [{ addr: a, len: size, write: true }]);
      this.rxBufs.set(head, [{ addr: a, len: size }]);
    }
  }
  /** Reassembles received frames (num_buffers from the first buffer's header). */
  received(): Uint8Array[] {
    const frames: Uint8Array[] = [];
    const used = this.used(0);
    for (let i = 0; i < used.length;) {
      const first = this.rxBufs.get(used[i]!.head)![0]!;
      const num = this.v.getUint16(first.addr + 10, true);
      const parts: Uint8Array[] = [];
      for (let k = 0; k < num; k++) {
        const u = used[i + k]!;
        const buf = this.rxBufs.get(u.head)![0]!;
        const skip = k === 0 ? NET_HDR_SIZE : 0;
        parts.push(this.bytes.slice(buf.addr + skip, buf.addr + u.len));
      }
      frames.push(Buffer.concat(parts));
      i += num;
    }
    return frames;
  }
}

let poller: Poller;
let dev: VirtioNetDevice;
let drv: FakeDriver;
let peer: number;
let logs: string[];
let features: bigint;

function ethFrame(len: number, seed: number): Uint8Array {
  const f = new Uint8Array(len);
  for (let i = 0; i < len; i++) f[i] = (i * 7 + seed) & 0xff;
  return f;
}

/** Reads what the device sent to "passt" until `n` bytes arrived. */
const readPeer = (n: number): Uint8Array => readFromPeer(poller, peer, n);

function writePeer(data: Uint8Array): void {
  let o = 0;
  for (let i = 0; i < 100000 && o < data.byteLength; i++) {
    const k = writeFd(peer, data.subarray(o));
    if (k > 0) o += k;
    poller.poll(0);
  }
  poller.poll(0);
}

beforeEach(() => {
  poller = new Poller();
  drv = new FakeDriver();
  const [a, b] = socketPair();
  peer = b;
  setNonBlocking(peer);
  logs = [];
  features = VIRTIO_NET_F_MRG_RXBUF;
  dev = new VirtioNetDevice({ fd: a, mac: '02:11:22:33:44:55', mtu: MTU });
  dev.attach({ memory: drv.mem, queue: (i) => drv.queues[i], poller, log: (m) => logs.push(m), driverFeatures: () => features });
});
afterEach(() => {
  dev.close();
  closeFd(peer);
  poller.close();
});

describe('virtio-net device', () => {
  it('announces MAC, link up and MTU in its config space', () => {
    const c = dev.readConfig();
    expect([...c.subarray(0, 6)]).toEqual([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    const v = new DataView(c.buffer);
    expect(v.getUint16(6, true)).toBe(1);
    expect(v.getUint16(10, true)).toBe(MTU);
  });

  it('sends guest frames to passt with a big-endian length prefix', () => {
    const f1 = ethFrame(60, 1);
    const f2 = ethFrame(MTU + 14, 2);
    drv.sendFrame(f1);
    drv.sendFrame(f2);
    dev.notify(1);
    const got = readPeer(8 + f1.byteLength + f2.byteLength);
    expect(Buffer.from(got.subarray(0, 4))).toEqual(Buffer.from(lengthPrefix(60)));
    expect(Buffer.from(got.subarray(4, 64))).toEqual(Buffer.from(f1));
    expect(new DataView(got.buffer, got.byteOffset).getUint32(64)).toBe(MTU + 14);
    expect(Buffer.from(got.subarray(68))).toEqual(Buffer.from(f2));
    expect(drv.used(1)).toHaveLength(2);
  });

  it('queues what passt cannot take yet and sends it in order when the socket drains', () => {
    // 24 frames of 64 KiB: far more than the socketpair's default buffer holds.
    const frames = Array.from({ length: 24 }, (_, i) => ethFrame(MTU + 14 - i, 20 + i));
    for (const f of frames) drv.sendFrame(f);
    dev.notify(1);
    expect(dev.stats().outBytes).toBeGreaterThan(0);
    const total = frames.reduce((n, f) => n + 4 + f.byteLength, 0);
    const got = readPeer(total);
    expect(got.byteLength).toBe(total);
    let o = 0;
    for (const f of frames) {
      expect(new DataView(got.buffer, got.byteOffset).getUint32(o)).toBe(f.byteLength);
      expect(Buffer.compare(got.subarray(o + 4, o + 4 + f.byteLength), f)).toBe(0);
      o += 4 + f.byteLength;
    }
    expect(dev.stats().outBytes).toBe(0);
    expect(drv.used(1)).toHaveLength(24);
  });

  it('drops a frame larger than the MTU and completes malformed chains empty, then goes on', () => {
    drv.sendFrame(ethFrame(MTU + 15, 3)); // one byte over
    drv.sendFrame(ethFrame(10, 4)); // shorter than an Ethernet header
    const a = drv.alloc(64);
    // a chain whose next descriptor is out of range, and one that loops on itself
    drv.add(1, [{ addr: a, len: 64, write: false, flags: 1, next: QSIZE + 5 }]);
    const loopHead = drv.nextDesc[1]! % QSIZE;
    drv.add(1, [{ addr: a, len: 64, write: false, flags: 1, next: loopHead }]);
    // a buffer outside guest memory
    drv.add(1, [{ addr: MEM - 8, len: 4096, write: false }]);
    const good = ethFrame(100, 5);
    drv.sendFrame(good);
    dev.notify(1);
    const got = readPeer(104);
    expect(Buffer.from(got.subarray(4))).toEqual(Buffer.from(good));
    const used = drv.used(1);
    expect(used).toHaveLength(6);
    expect(used.every((u) => u.len === 0)).toBe(true);
    const s = dev.stats();
    expect(s.txDropped).toBe(2);
    expect(s.badChains).toBe(3);
    expect(s.txFrames).toBe(1);
  });

  it('fills mergeable rx buffers: a 64 KiB frame spans several, small frames one each', () => {
    drv.giveRx(64, 4096);
    dev.notify(0);
    const big = ethFrame(MTU + 14, 6);
    const small = ethFrame(42, 7);
    writePeer(Buffer.concat([lengthPrefix(big.byteLength), big, lengthPrefix(small.byteLength), small]));
    const frames = drv.received();
    expect(frames.map((f) => f.byteLength)).toEqual([big.byteLength, small.byteLength]);
    expect(Buffer.from(frames[0]!)).toEqual(Buffer.from(big));
    expect(Buffer.from(frames[1]!)).toEqual(Buffer.from(small));
  });

  it('makes a frame spanning several buffers visible to the driver all at once', () => {
    // A driver polling concurrently must never see the first buffer (num_buffers = n) without the rest.
    const vq = drv.queues[0]!;
    drv.giveRx(2, 4096);
    const a = vq.pop()!;
    const b = vq.pop()!;
    vq.push(a.head, 4096, false);
    vq.push(b.head, 100, false);
    expect(drv.used(0)).toEqual([]);
    vq.publish();
    expect(drv.used(0)).toEqual([{ head: a.head, len: 4096 }, { head: b.head, len: 100 }]);
  });

  it('holds frames until the guest posts buffers', () => {
    const f = ethFrame(1514, 8);
    writePeer(Buffer.concat([lengthPrefix(f.byteLength), f]));
    expect(drv.received()).toEqual([]);
    drv.giveRx(1, 1024); // not enough for the frame: nothing is taken
    dev.notify(0);
    expect(drv.received()).toEqual([]);
    drv.giveRx(2, 1024);
    dev.notify(0);
    const frames = drv.received();
    expect(frames).toHaveLength(1);
    expect(Buffer.from(frames[0]!)).toEqual(Buffer.from(f));
  });

  it('asks for no TX kicks while it works through the queue, and for kicks again once it is drained', () => {
    drv.sendFrame(ethFrame(60, 1));
    dev.notify(1);
    expect(drv.usedFlags(1)).toBe(0);
    // passt lags: 24 frames of 64 KiB exceed what the device holds for it; it stops
    // taking chains and the guest need not kick (passt's EPOLLOUT resumes the queue).
    for (let i = 0; i < 24; i++) drv.sendFrame(ethFrame(MTU + 14, i));
    dev.notify(1);
    expect(drv.used(1).length).toBeLessThan(25);
    expect(drv.usedFlags(1)).toBe(1);
    readPeer(4 + 60 + 24 * (4 + MTU + 14));
    expect(drv.used(1).length).toBeGreaterThan(0);
    expect(drv.usedFlags(1)).toBe(0);
  });

  it('goes on with TX chains when passt takes what the device held for it while the device was still taking chains', () => {
    // passt reads on its own CPU: within one pass the device can fill the socket, stop at
    // its high-water mark, and then find the socket drained when it writes what it holds.
    // Nothing would bring it back then (kicks are off, nothing is left for EPOLLOUT): it
    // must go on by itself. The drain is staged at that moment, just before each write-out.
    // A socket that holds ~2 MiB (the kernel doubles what it is given), as passt's holds 8:
    // the device writes straight into it until it is full, then holds up to its 1 MiB
    // high-water mark and stops; the drain then makes room for all it holds.
    setSendBuffer((dev as unknown as { fd: number }).fd, 1 << 20);
    const frames = 64;
    const total = frames * (4 + MTU + 14);
    const got: Uint8Array[] = [];
    let gotBytes = 0;
    const drain = () => {
      for (;;) {
        const b = new Uint8Array(1 << 20);
        const k = readFd(peer, b);
        if (k <= 0) return;
        got.push(b.subarray(0, k));
        gotBytes += k;
      }
    };
    const d = dev as unknown as { flushOut(): void };
    const flushOut = d.flushOut.bind(dev);
    d.flushOut = () => { drain(); flushOut(); };
    for (let i = 0; i < frames; i++) drv.sendFrame(ethFrame(MTU + 14, i));
    dev.notify(1); // the one kick
    for (let i = 0; i < 100 && gotBytes < total; i++) { poller.poll(0); drain(); }
    expect(gotBytes).toBe(total);
    expect(drv.used(1)).toHaveLength(frames);
    const all = Buffer.concat(got);
    for (let i = 0, o = 0; i < frames; i++, o += 4 + MTU + 14) {
      expect(Buffer.compare(all.subarray(o + 4, o + 4 + MTU + 14), ethFrame(MTU + 14, i))).toBe(0);
    }
  });

  it('takes RX kicks only while it waits for buffers, and does not miss buffers posted meanwhile', () => {
    const f = ethFrame(1514, 8);
    drv.giveRx(4, 2048);
    writePeer(Buffer.concat([lengthPrefix(f.byteLength), f]));
    expect(drv.received()).toHaveLength(1);
    expect(drv.usedFlags(0)).toBe(1); // buffers to spare
    // Four frames for the three buffers left: the device runs out and wants kicks again.
    writePeer(Buffer.concat(Array.from({ length: 4 }, () => [lengthPrefix(f.byteLength), f]).flat()));
    expect(drv.received()).toHaveLength(3);
    expect(drv.usedFlags(0)).toBe(0);
    drv.giveRx(1, 2048);
    dev.notify(0);
    expect(drv.received()).toHaveLength(1);
  });

  it('a length beyond any frame from passt takes the link down without crashing', () => {
    drv.giveRx(4, 4096);
    dev.notify(0);
    const bad = new Uint8Array(8);
    new DataView(bad.buffer).setUint32(0, 0x7fffffff);
    writePeer(bad);
    expect(logs.join('\n')).toMatch(/link down: malformed stream from passt: frame length 2147483647/);
    expect(dev.stats().linkDown).toBe(1);
    drv.sendFrame(ethFrame(60, 9));
    dev.notify(1);
    expect(dev.stats().txDropped).toBe(1);
    expect(drv.used(1)).toHaveLength(1);
  });

  it('passt going away in the middle of a frame is logged; the device keeps serving the guest', () => {
    drv.giveRx(4, 4096);
    dev.notify(0);
    const f = ethFrame(3000, 10);
    const bytes = Buffer.concat([lengthPrefix(f.byteLength), f]);
    writePeer(bytes.subarray(0, 1000));
    closeFd(peer);
    peer = socketPair()[0]; // something for afterEach to close
    for (let i = 0; i < 10; i++) poller.poll(0);
    expect(logs.join('\n')).toMatch(/link down: passt closed the connection/);
    expect(drv.received()).toEqual([]);
    drv.sendFrame(ethFrame(60, 11));
    dev.notify(1);
    expect(drv.used(1)).toHaveLength(1);
    expect(dev.stats().txDropped).toBe(1);
  });
});

// ---- checksum offload ----

/** Straightforward RFC 1071 sum (16-bit words, end-around carry) to check the fast one against. */
function refSum(b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < b.byteLength; i += 2) {
    s += (b[i]! << 8) | (i + 1 < b.byteLength ? b[i + 1]! : 0);
    s = (s & 0xffff) + (s >>> 16);
  }
  return s;
}

function hdr(flags: number, gsoType: number, start: number, offset: number): Uint8Array {
  const h = new Uint8Array(NET_HDR_SIZE);
  const v = new DataView(h.buffer);
  h[0] = flags; h[1] = gsoType;
  v.setUint16(6, start, true);
  v.setUint16(8, offset, true);
  return h;
}

/** An Ethernet + IPv4 + TCP (or UDP) frame whose L4 checksum field holds the pseudo-header sum, as Linux leaves it. */
function partialFrame(proto: 6 | 17, payload: number, seed: number): { frame: Uint8Array; start: number; offset: number } {
  const l4h = proto === 6 ? 20 : 8;
  const l4len = l4h + payload;
  const f = new Uint8Array(14 + 20 + l4len);
  const v = new DataView(f.buffer);
  v.setUint16(12, 0x0800);
  f[14] = 0x45; v.setUint16(16, 20 + l4len); f[22] = 64; f[23] = proto;
  f.set([10, 88, 0, 2], 26); f.set([10, 88, 0, 1], 30);
  for (let i = 34; i < f.byteLength; i++) f[i] = (i * 13 + seed) & 0xff;
  const offset = proto === 6 ? 16 : 6;
  if (proto === 17) v.setUint16(38, l4len);
  const pseudo = fold(onesSum(f.subarray(26, 34)) + proto + l4len);
  v.setUint16(34 + offset, pseudo);
  return { frame: f, start: 34, offset };
}

/** True when the L4 checksum of an IPv4 frame made by partialFrame verifies. */
function l4Valid(f: Uint8Array): boolean {
  const proto = f[23]!;
  const l4len = f.byteLength - 34;
  return fold(onesSum(f.subarray(26, 34)) + proto + l4len + onesSum(f.subarray(34))) === 0xffff;
}

describe('checksum offload: header checks and arithmetic', () => {
  it('the fast sum equals the RFC 1071 sum for every length and alignment', () => {
    const data = ethFrame(70000, 42);
    // byteOffset 0 and 2 mod 4 take the 32-bit path, odd ones the byte path.
    for (const [off, len] of [[0, 0], [0, 1], [1, 3], [3, 7], [2, 65535], [1, 65536], [0, 69999], [34, 65486], [6, 5], [4, 65537]] as const) {
      const b = data.subarray(off, off + len);
      expect(fold(onesSum(b))).toBe(refSum(b));
    }
    // All ones: the largest partial sums.
    const ff = new Uint8Array(65540).fill(0xff);
    for (const off of [0, 2, 3]) expect(fold(onesSum(ff.subarray(off)))).toBe(refSum(ff.subarray(off)));
  });

  it('completes partial TCP and UDP checksums into valid ones (odd lengths too)', () => {
    for (const [proto, payload] of [[6, 0], [6, 1], [6, 65000], [17, 3], [17, 1472]] as const) {
      const p = partialFrame(proto, payload, payload);
      expect(l4Valid(p.frame)).toBe(false);
      completeChecksum(p.frame, p);
      expect(l4Valid(p.frame)).toBe(true);
    }
  });

  it('accepts only checksum requests that lie inside the frame', () => {
    expect(txOffload(hdr(0, 0, 0, 0), 60, true)).toBeNull();
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 16), 54, true)).toEqual({ start: 34, offset: 16 });
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 16), 54, false)).toMatch(/without VIRTIO_NET_F_CSUM/);
    // malicious or broken: field past the end, start inside the Ethernet header, 16-bit extremes, segmentation, unknown flags
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 19), 54, true)).toMatch(/outside/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 53, 0), 54, true)).toMatch(/outside/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 4, 0), 54, true)).toMatch(/outside/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0xffff, 0xffff), 65534, true)).toMatch(/outside/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 34, 0xffff), 65534, true)).toMatch(/outside/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 1, 34, 16), 54, true)).toMatch(/gso_type 1/);
    expect(txOffload(hdr(0, 0x80, 0, 0), 54, true)).toMatch(/gso_type 128/);
    expect(txOffload(hdr(VIRTIO_NET_HDR_F_DATA_VALID, 0, 0, 0), 54, true)).toMatch(/flags 0x2/);
    expect(txOffload(new Uint8Array(4), 54, true)).toMatch(/short/);
    expect(() => completeChecksum(new Uint8Array(40), { start: 34, offset: 6 })).toThrow(RangeError);
  });
});

describe('virtio-net device with checksum offload', () => {
  it('offers both checksum offloads', () => {
    expect(dev.deviceFeatures & VIRTIO_NET_F_CSUM).toBe(VIRTIO_NET_F_CSUM);
    expect(dev.deviceFeatures & VIRTIO_NET_F_GUEST_CSUM).toBe(VIRTIO_NET_F_GUEST_CSUM);
  });

  it('completes the checksum of a partial frame, also one scattered over descriptors, before passt sees it', () => {
    features = VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_CSUM;
    const a = partialFrame(6, 9000, 1);
    const b = partialFrame(17, 1001, 2);
    drv.sendFrame(a.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, a.start, a.offset));
    drv.sendScattered(b.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, b.start, b.offset), 333);
    dev.notify(1);
    const got = readPeer(8 + a.frame.byteLength + b.frame.byteLength);
    const fa = got.subarray(4, 4 + a.frame.byteLength);
    const fb = got.subarray(8 + a.frame.byteLength);
    expect(fb.byteLength).toBe(b.frame.byteLength);
    expect(l4Valid(fa)).toBe(true);
    expect(l4Valid(fb)).toBe(true);
    // only the checksum field changed
    expect(Buffer.from(fa.subarray(0, 50))).toEqual(Buffer.from(a.frame.subarray(0, 50)));
    expect(Buffer.from(fa.subarray(52))).toEqual(Buffer.from(a.frame.subarray(52)));
    expect(dev.stats().txCsum).toBe(2);
  });

  it('drops frames with out-of-range offload fields, returns their buffers, and keeps going', () => {
    features = VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_CSUM;
    const p = partialFrame(6, 100, 3);
    const len = p.frame.byteLength;
    drv.sendFrame(p.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, len - 1, 0));
    drv.sendFrame(p.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 0xffff, 0xffff));
    drv.sendFrame(p.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, 2, 0));
    drv.sendFrame(p.frame, hdr(0, 4, 0, 0)); // TCPv6 segmentation was never offered
    drv.sendFrame(p.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, p.start, p.offset));
    dev.notify(1);
    const got = readPeer(4 + len);
    expect(got.byteLength).toBe(4 + len);
    expect(l4Valid(got.subarray(4))).toBe(true);
    expect(drv.used(1).map((u) => u.len)).toEqual([0, 0, 0, 0, 0]);
    const s = dev.stats();
    expect(s.txDropped).toBe(4);
    expect(s.txBadHeader).toBe(4);
    expect(s.txFrames).toBe(1);
    expect(logs.join('\n')).toMatch(/tx frame dropped: csum_start 65535/);
  });

  it('refuses NEEDS_CSUM from a driver that did not accept VIRTIO_NET_F_CSUM', () => {
    const p = partialFrame(6, 10, 4);
    drv.sendFrame(p.frame, hdr(VIRTIO_NET_HDR_F_NEEDS_CSUM, 0, p.start, p.offset));
    drv.sendFrame(p.frame);
    dev.notify(1);
    const got = readPeer(4 + p.frame.byteLength);
    expect(Buffer.from(got.subarray(4))).toEqual(Buffer.from(p.frame));
    expect(dev.stats().txBadHeader).toBe(1);
  });

  it('marks received frames DATA_VALID only when the driver accepted GUEST_CSUM', () => {
    drv.giveRx(8, 4096);
    dev.notify(0);
    const f = ethFrame(200, 5);
    writePeer(Buffer.concat([lengthPrefix(f.byteLength), f]));
    features = VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_GUEST_CSUM;
    writePeer(Buffer.concat([lengthPrefix(f.byteLength), f]));
    const h = drv.rxHeaders();
    expect(h.map((x) => x[0])).toEqual([0, VIRTIO_NET_HDR_F_DATA_VALID]);
    expect(h.every((x) => x[1] === 0 && x[10] === 1)).toBe(true);
  });
});
