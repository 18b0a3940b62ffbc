// The vsock device against a simulated guest driver (rings in a plain
// buffer) and real host unix sockets.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeVirtioDriver } from '../helpers/fake-virtio-driver.js';
import { Poller } from '../../src/sys/io.js';
import { VsockDevice } from '../../src/vmm/devices/vsock/vsock-device.js';
import { HDR_SIZE, Op, decodeHeader, encodeHeader, type VsockHeader } from '../../src/vmm/devices/vsock/packet.js';

const MEM = 4 << 20;
const QSIZE = 64;
const GUEST_CID = 3n;

class FakeDriver extends FakeVirtioDriver {
  constructor() { super(MEM, QSIZE); }
  sendTx(h: Partial<VsockHeader>, data = new Uint8Array(0)): void {
    const full: VsockHeader = { srcCid: GUEST_CID, dstCid: 2n, srcPort: 5000, dstPort: 1024, len: data.byteLength, type: 1, op: Op.RW, flags: 0, bufAlloc: 65536, fwdCnt: 0, ...h };
    const ha = this.alloc(HDR_SIZE);
    this.bytes.set(encodeHeader(full), ha);
    const bufs = [{ addr: ha, len: HDR_SIZE, write: false }];
    if (data.byteLength) { const da = this.alloc(data.byteLength); this.bytes.set(data, da); bufs.push({ addr: da, len: data.byteLength, write: false }); }
    this.add(1, bufs);
  }
  rxBuffers: Map<number, number> = new Map();
  giveRx(n: number, size = 4096): void {
    for (let i = 0; i < n; i++) {
      const a = this.alloc(HDR_SIZE + size);
      const head = this.add(0, [{ addr: a, len: HDR_SIZE, write: true }, { addr: a + HDR_SIZE, len: size, write: true }]);
      this.rxBuffers.set(head, a);
    }
  }
  /** Packets the device completed on the rx queue since the last call. */
  takeRx(): { h: VsockHeader; data: Uint8Array }[] {
    return this.used(0).map(({ head, len }) => {
      const a = this.rxBuffers.get(head)!;
      return { h: decodeHeader(this.bytes.subarray(a, a + HDR_SIZE)), data: this.bytes.slice(a + HDR_SIZE, a + len) };
    });
  }
}

let dir: string;
let poller: Poller;
let dev: VsockDevice;
let drv: FakeDriver;
/** true while the transport has stopped the rings (a paused VM): queue() answers undefined */
let ringsStopped = false;
const logs: string[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-vsock-'));
  poller = new Poller();
  drv = new FakeDriver();
  dev = new VsockDevice({ guestCid: 3, udsPath: path.join(dir, 'v.sock') });
  ringsStopped = false;
  dev.attach({ memory: drv.mem, queue: (i) => (ringsStopped ? undefined : drv.queues[i]), poller, log: (m) => logs.push(m) });
});
afterEach(() => {
  dev.close();
  poller.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the device's poller and node's loop until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    poller.poll(0);
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * A host server on port 1024 and a guest connection to it, established.
 * `onSocket` sets up the accepted host socket (e.g. pauses it) before any data flows.
 */
async function guestConnected(onSocket: (s: net.Socket) => void = () => {}): Promise<{ server: net.Server; hostSock: net.Socket }> {
  let hostSock: net.Socket | undefined;
  const server = net.createServer((s) => { hostSock = s; onSocket(s); });
  await new Promise<void>((r) => server.listen(path.join(dir, 'v.sock_1024'), r));
  drv.giveRx(16);
  drv.sendTx({ op: Op.REQUEST });
  dev.notify(1);
  expect(drv.takeRx().map((p) => p.h.op)).toEqual([Op.RESPONSE]);
  await until(() => hostSock !== undefined, 'host accept');
  return { server, hostSock: hostSock! };
}

describe('vsock device', () => {
  it('bridges a guest connection to a host unix socket, both ways, with credit', async () => {
    const received: Buffer[] = [];
    let hostSock: net.Socket | undefined;
    const server = net.createServer((s) => { hostSock = s; s.on('data', (d) => received.push(d)); });
    await new Promise<void>((r) => server.listen(path.join(dir, 'v.sock_1024'), r));
    drv.giveRx(16);
    drv.sendTx({ op: Op.REQUEST });
    dev.notify(1);
    const resp = drv.takeRx();
    expect(resp.map((p) => p.h.op)).toEqual([Op.RESPONSE]);
    expect(resp[0]!.h.dstPort).toBe(5000);
    expect(resp[0]!.h.srcPort).toBe(1024);
    await until(() => hostSock !== undefined, 'host accept');

    drv.sendTx({ op: Op.RW }, new TextEncoder().encode('hello host'));
    dev.notify(1);
    await until(() => Buffer.concat(received).toString() === 'hello host', 'data on host');

    hostSock!.write('hello guest');
    let got = '';
    await until(() => { got += drv.takeRx().map((p) => Buffer.from(p.data).toString()).join(''); return got === 'hello guest'; }, 'data in guest');

    // Credit: the guest advertised 16 bytes of buffer and consumed nothing.
    drv.sendTx({ op: Op.CREDIT_UPDATE, bufAlloc: 16 + 11, fwdCnt: 0 });
    dev.notify(1);
    hostSock!.write('x'.repeat(100));
    let pkts: { h: VsockHeader; data: Uint8Array }[] = [];
    await until(() => { pkts = pkts.concat(drv.takeRx()); return pkts.some((p) => p.h.op === Op.CREDIT_REQUEST); }, 'credit request');
    expect(pkts.filter((p) => p.h.op === Op.RW).reduce((n, p) => n + p.data.byteLength, 0)).toBe(16);
    drv.sendTx({ op: Op.CREDIT_UPDATE, bufAlloc: 1000, fwdCnt: 27 });
    dev.notify(1);
    await until(() => { pkts = pkts.concat(drv.takeRx()); return pkts.filter((p) => p.h.op === Op.RW).reduce((n, p) => n + p.data.byteLength, 0) === 100; }, 'rest of data');
    server.close();
  });

  it('stays quiet while its rings are stopped (VM paused) and delivers what waited once they restart', async () => {
    const { server, hostSock } = await guestConnected();

    ringsStopped = true;
    hostSock.write('while paused');
    // Level-triggered epoll would report the socket on every poll if the device kept watching it
    // while it cannot deliver: the data must be reported once, then never again until the restart.
    let events = 0;
    for (let i = 0; i < 40; i++) {
      events += poller.poll(0);
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(events).toBe(1);
    expect(drv.takeRx()).toEqual([]);

    ringsStopped = false;
    dev.notify(0); // the transport restarts the ring and lets the device look at it
    let got = '';
    await until(() => { got += drv.takeRx().map((p) => Buffer.from(p.data).toString()).join(''); return got === 'while paused'; }, 'data after resume');
    server.close();
  });

  it('gives credit back when a full host socket drains, without waiting for a guest kick', async () => {
    // The guest sends up to the 256 KiB credit while the host reader stalls; the
    // socket fills and the device holds the rest. When the reader resumes, the
    // device alone must tell the guest (a guest out of credit sends nothing, so
    // no kick will come): a lost update here stalled `cat` of a 5 MB file.
    let hostBytes = 0;
    const { server, hostSock } = await guestConnected((s) => { s.pause(); s.on('data', (d) => { hostBytes += d.byteLength; }); });

    const CREDIT = 256 * 1024;
    const chunk = new Uint8Array(4096).fill(7);
    let fwdSeen = 0;
    const credits = () => { for (const p of drv.takeRx()) if (p.h.op === Op.CREDIT_UPDATE) fwdSeen = Math.max(fwdSeen, p.h.fwdCnt); };
    for (let sent = 0; sent < CREDIT;) {
      for (let i = 0; i < 16 && sent < CREDIT; i++, sent += chunk.byteLength) drv.sendTx({ op: Op.RW }, chunk);
      dev.notify(1);
      drv.giveRx(4);
      dev.notify(0);
      credits();
    }
    expect(fwdSeen).toBeLessThan(CREDIT); // the host socket really filled up
    hostSock.resume();
    await until(() => { credits(); return fwdSeen === CREDIT; }, 'a credit update for every byte written to the host');
    await until(() => hostBytes === CREDIT, 'every byte on the host');
    server.close();
  });

  it('resets a connect to a port nobody listens on', () => {
    drv.giveRx(4);
    drv.sendTx({ op: Op.REQUEST, dstPort: 999 });
    dev.notify(1);
    expect(drv.takeRx().map((p) => p.h.op)).toEqual([Op.RST]);
  });

  it('survives garbage: wrong cid, short header, oversized length, unknown op', () => {
    drv.giveRx(8);
    drv.sendTx({ op: Op.REQUEST, srcCid: 7n });
    drv.sendTx({ op: Op.RW, len: 1 << 20 });
    drv.sendTx({ op: 99 });
    drv.sendTx({ op: Op.RW }, Uint8Array.of(1, 2, 3));
    dev.notify(1);
    const ops = drv.takeRx().map((p) => p.h.op);
    expect(ops.every((o) => o === Op.RST)).toBe(true);
    expect(dev.stats().badPackets).toBeGreaterThanOrEqual(3);
  });

  it('connects a host client to a guest port with CONNECT', async () => {
    drv.giveRx(8);
    const client = net.connect(path.join(dir, 'v.sock'));
    client.on('error', () => {});
    await new Promise<void>((r) => client.once('connect', () => r()));
    client.write('CONNECT 52\n');
    let req: VsockHeader | undefined;
    await until(() => { req = drv.takeRx().find((p) => p.h.op === Op.REQUEST)?.h ?? req; return !!req; }, 'request');
    expect(req!.dstPort).toBe(52);
    const lines: string[] = [];
    client.on('data', (d) => lines.push(d.toString()));
    drv.sendTx({ op: Op.RESPONSE, srcPort: 52, dstPort: req!.srcPort });
    dev.notify(1);
    await until(() => lines.join('').startsWith(`OK ${req!.srcPort}\n`), 'OK line');
    client.destroy();
  });
});
