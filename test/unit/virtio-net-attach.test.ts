// A virtio-net device created without its wire (fd -1, pre-booted VMs):
// link up, guest frames dropped and counted, nothing received; once
// configure() hands it the socket to passt (here a socketpair with the
// 4-byte big-endian length framing) frames flow both ways. A second
// attach is refused and leaves the caller's fd alone.
import { readFromPeer } from '../helpers/net-peer.js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeVirtioDriver } from '../helpers/fake-virtio-driver.js';
import { Poller, closeFd, readFd, setNonBlocking, writeFd } from '../../src/sys/io.js';
import { socketPair } from '../../src/sys/unix-socket.js';
import { NET_HDR_SIZE, VIRTIO_NET_F_MRG_RXBUF, VirtioNetDevice } from '../../src/vmm/devices/net/virtio-net.js';
import { lengthPrefix } from '../../src/vmm/devices/net/frame-stream.js';
import fs from 'node:fs';

const MEM = 4 << 20;
const QSIZE = 64;
const MTU = 1500;

class Driver extends FakeVirtioDriver {
  rx = new Map<number, number>();
  constructor() { super(MEM, QSIZE, 3); }
  sendFrame(frame: Uint8Array): void {
    const a = this.alloc(NET_HDR_SIZE + frame.byteLength);
    this.bytes.fill(0, a, a + NET_HDR_SIZE);
    this.bytes.set(frame, a + NET_HDR_SIZE);
    this.add(1, [{ addr: a, len: NET_HDR_SIZE + frame.byteLength, write: false }]);
  }
  giveRx(n: number): void {
    for (let i = 0; i < n; i++) {
      const a = this.alloc(4096);
      this.rx.set(this.add(0, [{ addr: a, len: 4096, write: true }]), a);
    }
  }
  /** Frames received (each fits one 4 KiB buffer here). */
  received(): Buffer[] {
    return this.used(0).map((u) => {
      const a = this.rx.get(u.head)!;
      expect(this.v.getUint16(a + 10, true)).toBe(1); // num_buffers
      return Buffer.from(this.bytes.slice(a + NET_HDR_SIZE, a + u.len));
    });
  }
}

let poller: Poller;
let drv: Driver;
let dev: VirtioNetDevice;
let logs: string[];
const toClose: number[] = [];

const frame = (len: number, seed: number) => Uint8Array.from({ length: len }, (_, i) => (i * 13 + seed) & 0xff);
const isOpen = (fd: number) => fs.existsSync(`/proc/self/fd/${fd}`);

function pump(): void {
  for (let i = 0; i < 20; i++) poller.poll(0);
}

const readPeer = (peer: number, n: number): Buffer => Buffer.from(readFromPeer(poller, peer, n));

beforeEach(() => {
  poller = new Poller();
  drv = new Driver();
  logs = [];
  dev = new VirtioNetDevice({ fd: -1, mac: '02:aa:bb:cc:dd:ee', mtu: MTU });
  dev.attach({ memory: drv.mem, queue: (i) => drv.queues[i], poller, log: (m) => logs.push(m), driverFeatures: () => VIRTIO_NET_F_MRG_RXBUF });
});
afterEach(() => {
  dev.close();
  toClose.splice(0).forEach((fd) => { if (isOpen(fd)) closeFd(fd); });
  poller.close();
});

describe('virtio-net device without a wire', () => {
  it('reports the link up with its MAC and MTU', () => {
    const c = dev.readConfig();
    const v = new DataView(c.buffer);
    expect([...c.subarray(0, 6)]).toEqual([0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
    expect(v.getUint16(6, true)).toBe(1);
    expect(v.getUint16(10, true)).toBe(MTU);
  });

  it('completes and drops guest frames (counted) and delivers nothing', () => {
    drv.giveRx(4);
    dev.notify(0);
    drv.sendFrame(frame(60, 1));
    drv.sendFrame(frame(1514, 2));
    dev.notify(1);
    pump();
    expect(drv.used(1).map((u) => u.len)).toEqual([0, 0]);
    expect(drv.received()).toEqual([]);
    expect(dev.stats()).toMatchObject({ txUnattached: 2, txFrames: 0, txDropped: 0, rxFrames: 0, linkDown: 0 });
  });

  it('once attached, frames flow both ways with the length-prefix framing', () => {
    drv.sendFrame(frame(60, 3));
    dev.notify(1); // dropped: no wire yet
    const [mine, peer] = socketPair();
    toClose.push(mine, peer);
    setNonBlocking(peer);
    drv.giveRx(4);
    dev.notify(0);
    dev.configure({ kind: 'net', fd: mine });

    const out = frame(98, 4);
    drv.sendFrame(out);
    dev.notify(1);
    const got = readPeer(peer, 4 + out.byteLength);
    expect(got.subarray(0, 4)).toEqual(Buffer.from(lengthPrefix(out.byteLength)));
    expect(got.subarray(4)).toEqual(Buffer.from(out));
    // nothing from before the attach reached passt
    expect(readFd(peer, Buffer.alloc(16))).toBeLessThan(0);

    const a = frame(42, 5);
    const b = frame(1514, 6);
    const stream = Buffer.concat([lengthPrefix(a.byteLength), a, lengthPrefix(b.byteLength), b]);
    expect(writeFd(peer, stream)).toBe(stream.byteLength);
    pump();
    expect(drv.received()).toEqual([Buffer.from(a), Buffer.from(b)]);
    expect(dev.stats()).toMatchObject({ txUnattached: 1, txFrames: 1, rxFrames: 2, linkDown: 0 });

    // the device owns the socket now: closing the device closes it
    dev.close();
    expect(isOpen(mine)).toBe(false);
  });

  it('takes the socket before the transport attached it, and polls it from then on', () => {
    const early = new VirtioNetDevice({ fd: -1, mac: '02:aa:bb:cc:dd:ef', mtu: MTU });
    const [mine, peer] = socketPair();
    toClose.push(mine, peer);
    setNonBlocking(peer);
    try {
      early.configure({ kind: 'net', fd: mine });
      early.attach({ memory: drv.mem, queue: (i) => drv.queues[i], poller, log: (m) => logs.push(m) });
      drv.giveRx(2);
      early.notify(0);
      const f = frame(70, 7);
      writeFd(peer, Buffer.concat([lengthPrefix(f.byteLength), f]));
      pump();
      expect(drv.received()).toEqual([Buffer.from(f)]);
    } finally {
      early.close();
    }
  });

  it('refuses a second attach and a wrong kind, leaving those fds to the caller', () => {
    const [first, p1] = socketPair();
    const [second, p2] = socketPair();
    toClose.push(first, p1, second, p2);
    expect(() => dev.configure({ kind: 'fs', root: '/' })).toThrow(/cannot take a fs configuration/);
    expect(() => dev.configure({ kind: 'net', fd: -1 })).toThrow(/bad passt socket fd/);
    dev.configure({ kind: 'net', fd: first });
    expect(() => dev.configure({ kind: 'net', fd: second })).toThrow(/attached to passt already/);
    dev.close();
    expect(isOpen(first)).toBe(false);
    expect(isOpen(second)).toBe(true);
  });

  it('a device created with its socket refuses an attach', () => {
    const [mine, peer] = socketPair();
    const [other, p2] = socketPair();
    toClose.push(peer, other, p2);
    const wired = new VirtioNetDevice({ fd: mine, mac: '02:aa:bb:cc:dd:ee', mtu: MTU });
    try {
      expect(() => wired.configure({ kind: 'net', fd: other })).toThrow(/attached to passt already/);
    } finally {
      wired.close();
    }
    expect(isOpen(mine)).toBe(false);
  });
});
