// virtio-vsock device whose host end is unix sockets (the hybrid model):
//  - a guest connect to host port P is bridged to a connect() on `${udsPath}_${P}`;
//  - a host client that connects to `udsPath` and writes "CONNECT P\n" gets a
//    stream to guest port P and reads "OK <hostport>\n" first.
// Everything in a guest packet is untrusted: lengths, ports, CIDs and
// credit values are checked, and a misbehaving stream is reset, not trusted.
import { type DeviceEnv, type VirtioDevice, VIRTIO_ID_VSOCK } from '../../virtio/device.js';
import { ChainError, QueueError, gather, scatter, serviceQueue, sliceFrom, totalLength, type Virtqueue } from '../../virtio/queue.js';
import { GuestMemoryError } from '../../memory.js';
import { acceptUnix, connectUnix, listenUnix, shutdownWrite } from '../../../sys/unix-socket.js';
import {
  EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, closeFd, readFd, setNonBlocking, writeFd,
} from '../../../sys/io.js';
import {
  HDR_SIZE, HOST_CID, MAX_PKT_PAYLOAD, Op, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM,
  decodeHeader, encodeHeader, type VsockHeader,
} from './packet.js';

const RXQ = 0;
const TXQ = 1;
/** Receive buffer we advertise to the guest per connection. */
const BUF_ALLOC = 256 * 1024;
const CREDIT_UPDATE_THRESHOLD = BUF_ALLOC / 4;
const FIRST_EPHEMERAL_PORT = 0x40000000;
const MAX_CONNECT_LINE = 64;

type ConnState = 'handshake' | 'requesting' | 'established' | 'closing';

class Conn {
  state: ConnState;
  readonly fd: number;
  hostPort: number;
  guestPort: number;
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  /** bytes sent to the guest */
  txCnt = 0;
  /** bytes from the guest written to the host socket */
  fwdCnt = 0;
  lastSentFwdCnt = 0;
  /** guest data not yet accepted by the host socket */
  outBuf: Uint8Array[] = [];
  outBytes = 0;
  /** host socket has data we could not deliver (no rx buffer or no credit) */
  rxBlocked = false;
  guestShutdown = 0;
  hostEof = false;
  line = '';
  interest = 0;
  hostWriteShut = false;
  /** taken out of epoll after a hang-up it could not act on yet (avoids a level-triggered spin) */
  parked = false;
  constructor(state: ConnState, fd: number, hostPort: number, guestPort: number) {
    this.state = state;
    this.fd = fd;
    this.hostPort = hostPort;
    this.guestPort = guestPort;
  }
  get key(): string { return `${this.hostPort}/${this.guestPort}`; }
  credit(): number {
    return this.peerBufAlloc - ((this.txCnt - this.peerFwdCnt) >>> 0);
  }
}

export interface VsockDeviceOptions {
  guestCid: number;
  /** Base path of the host unix sockets (see the file comment). */
  udsPath: string;
}

export class VsockDevice implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_VSOCK;
  readonly queueCount = 3; // rx, tx, event (the event queue carries nothing we send)
  readonly queueMaxSize = 1024;
  readonly deviceFeatures = 0n;
  private env?: DeviceEnv;
  private readonly guestCid: bigint;
  private readonly udsPath: string;
  private listenFd = -1;
  private readonly conns = new Map<string, Conn>();
  private readonly byFd = new Map<number, Conn>();
  /** packets without payload waiting for an rx buffer */
  private readonly control: VsockHeader[] = [];
  private nextPort = FIRST_EPHEMERAL_PORT;
  private readonly hdrBuf = new Uint8Array(HDR_SIZE);
  private readonly counters: Record<string, number> = {
    connections: 0, guestConnects: 0, hostConnects: 0, rxPackets: 0, txPackets: 0,
    rxBytes: 0, txBytes: 0, resets: 0, badPackets: 0,
  };

  constructor(opts: VsockDeviceOptions) {
    this.guestCid = BigInt(opts.guestCid);
    this.udsPath = opts.udsPath;
  }

  readConfig(): Uint8Array {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, this.guestCid, true);
    return b;
  }

  attach(env: DeviceEnv): void {
    this.env = env;
    this.listenFd = listenUnix(this.udsPath, 64);
    setNonBlocking(this.listenFd);
    env.poller.add(this.listenFd, EPOLLIN, () => this.acceptHost());
  }

  stats(): Record<string, number> {
    return { ...this.counters, open: this.conns.size };
  }

  notify(index: number): void {
    if (index === TXQ) this.processTx();
    // Any kick may mean new rx buffers: retry what was waiting for them.
    this.flushRx();
  }

  reset(): void {
    for (const c of [...this.conns.values()]) this.drop(c);
    for (const c of [...this.byFd.values()]) this.drop(c);
    this.control.length = 0;
  }

  close(): void {
    this.reset();
    if (this.listenFd >= 0) {
      this.env?.poller.remove(this.listenFd);
      closeFd(this.listenFd);
      this.listenFd = -1;
    }
  }

  // ---- guest -> host ----

  private processTx(): void {
    const vq = this.env?.queue(TXQ);
    if (!vq) return;
    serviceQueue(vq, (chain) => {
      try {
        this.handleTxPacket(chain.readable);
      } catch (err) {
        this.counters.badPackets!++;
        this.env!.log(`vsock: tx packet: ${err instanceof Error ? err.message : String(err)}`);
      }
      return 0;
    }, { label: 'vsock tx', log: this.env!.log, onBadChain: () => { this.counters.badPackets!++; } });
  }

  private handleTxPacket(readable: Uint8Array[]): void {
    const total = totalLength(readable);
    if (total < HDR_SIZE) { this.counters.badPackets!++; return; }
    const h = decodeHeader(gather(readable, 0, HDR_SIZE));
    this.counters.txPackets!++;
    if (h.srcCid !== this.guestCid || h.dstCid !== BigInt(HOST_CID)) { this.counters.badPackets!++; return; }
    if (h.len > MAX_PKT_PAYLOAD || h.len > total - HDR_SIZE) {
      this.counters.badPackets!++;
      return this.sendRst(h.dstPort, h.srcPort);
    }
    if (h.type !== TYPE_STREAM) {
      if (h.op !== Op.RST) this.sendRst(h.dstPort, h.srcPort);
      return;
    }
    const conn = this.conns.get(`${h.dstPort}/${h.srcPort}`);
    if (conn) {
      conn.peerBufAlloc = h.bufAlloc;
      conn.peerFwdCnt = h.fwdCnt;
    }
    switch (h.op) {
      case Op.REQUEST:
        if (conn) return this.sendRst(h.dstPort, h.srcPort);
        return this.guestConnect(h);
      case Op.RESPONSE:
        if (!conn || conn.state !== 'requesting') return this.sendRst(h.dstPort, h.srcPort);
        conn.state = 'established';
        this.hostWrite(conn, [new TextEncoder().encode(`OK ${conn.hostPort}\n`)], false);
        this.updateInterest(conn);
        return;
      case Op.RST:
        if (conn) this.drop(conn);
        return;
      case Op.SHUTDOWN:
        if (!conn) return this.sendRst(h.dstPort, h.srcPort);
        conn.guestShutdown |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND);
        this.afterGuestShutdown(conn);
        return;
      case Op.RW:
        if (!conn || (conn.state !== 'established' && conn.state !== 'closing')) return this.sendRst(h.dstPort, h.srcPort);
        if (h.len === 0) return;
        this.counters.txBytes! += h.len;
        this.hostWrite(conn, limit(sliceFrom(readable, HDR_SIZE), h.len), true);
        return;
      case Op.CREDIT_UPDATE:
        if (conn) this.updateInterest(conn);
        return;
      case Op.CREDIT_REQUEST:
        if (conn) this.queueControl(conn, Op.CREDIT_UPDATE);
        return;
      default:
        this.counters.badPackets!++;
        this.sendRst(h.dstPort, h.srcPort);
    }
  }

  private guestConnect(h: VsockHeader): void {
    this.counters.guestConnects!++;
    let fd: number;
    try {
      fd = connectUnix(`${this.udsPath}_${h.dstPort}`);
      setNonBlocking(fd);
    } catch {
      return this.sendRst(h.dstPort, h.srcPort);
    }
    const conn = new Conn('established', fd, h.dstPort, h.srcPort);
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    this.register(conn);
    this.queueControl(conn, Op.RESPONSE);
    this.updateInterest(conn);
  }

  /** Writes guest data to the host socket, buffering what does not fit. */
  private hostWrite(conn: Conn, bufs: Uint8Array[], counted: boolean): void {
    let written = 0;
    for (const b of bufs) {
      if (conn.outBuf.length === 0) {
        let off = 0;
        while (off < b.byteLength) {
          let n: number;
          try {
            n = writeFd(conn.fd, b.subarray(off));
          } catch {
            // host side went away: tell the guest
            this.sendRst(conn.hostPort, conn.guestPort);
            this.drop(conn);
            return;
          }
          if (n < 0) break;
          off += n;
        }
        if (counted) written += off;
        if (off < b.byteLength) { conn.outBuf.push(b.slice(off)); conn.outBytes += b.byteLength - off; }
      } else {
        conn.outBuf.push(b.slice());
        conn.outBytes += b.byteLength;
      }
    }
    if (conn.outBytes > BUF_ALLOC + MAX_CONNECT_LINE) {
      // The guest ignored our credit: it does not get to make us buffer more.
      this.env!.log(`vsock: guest port ${conn.guestPort} overran its credit; resetting`);
      this.sendRst(conn.hostPort, conn.guestPort);
      this.drop(conn);
      return;
    }
    if (counted) this.forwarded(conn, written);
    this.updateInterest(conn);
  }

  private forwarded(conn: Conn, n: number): void {
    if (n <= 0) return;
    conn.fwdCnt = (conn.fwdCnt + n) >>> 0;
    if (((conn.fwdCnt - conn.lastSentFwdCnt) >>> 0) >= CREDIT_UPDATE_THRESHOLD) {
      this.queueControl(conn, Op.CREDIT_UPDATE);
    }
  }

  private flushOut(conn: Conn): void {
    let n = 0;
    while (conn.outBuf.length) {
      const b = conn.outBuf[0]!;
      let w: number;
      try {
        w = writeFd(conn.fd, b);
      } catch {
        this.sendRst(conn.hostPort, conn.guestPort);
        this.drop(conn);
        return;
      }
      if (w < 0) break;
      n += w;
      conn.outBytes -= w;
      if (w === b.byteLength) conn.outBuf.shift();
      else conn.outBuf[0] = b.subarray(w);
    }
    // The handshake line is not guest data; count only what the guest sent.
    this.forwarded(conn, n);
    if (conn.guestShutdown) this.afterGuestShutdown(conn);
    else this.updateInterest(conn);
  }

  /**
   * The guest will send no more: once its data is written, half-close the
   * host socket; when neither side has anything left, finish with RST.
   */
  private afterGuestShutdown(conn: Conn): void {
    if (!(conn.guestShutdown & SHUTDOWN_SEND) || conn.outBuf.length) return this.updateInterest(conn);
    if (conn.guestShutdown & SHUTDOWN_RCV || conn.hostEof) {
      this.sendRst(conn.hostPort, conn.guestPort);
      return this.drop(conn);
    }
    if (!conn.hostWriteShut) {
      conn.hostWriteShut = true;
      shutdownWrite(conn.fd);
    }
    this.updateInterest(conn);
  }

  // ---- host -> guest ----

  private acceptHost(): void {
    for (;;) {
      let fd: number;
      try {
        fd = acceptUnix(this.listenFd, true);
      } catch (err) {
        this.env!.log(`vsock: accept: ${(err as Error).message}`);
        return;
      }
      if (fd < 0) return;
      const conn = new Conn('handshake', fd, 0, 0);
      this.byFd.set(fd, conn);
      conn.interest = EPOLLIN;
      this.env!.poller.add(fd, EPOLLIN, (ev) => this.onHostEvent(conn, ev));
    }
  }

  private readHandshake(conn: Conn): void {
    const buf = new Uint8Array(MAX_CONNECT_LINE);
    const n = readFd(conn.fd, buf, MAX_CONNECT_LINE - conn.line.length);
    if (n < 0) return;
    if (n === 0) return this.drop(conn);
    conn.line += Buffer.from(buf.subarray(0, n)).toString('latin1');
    const nl = conn.line.indexOf('\n');
    if (nl < 0) {
      if (conn.line.length >= MAX_CONNECT_LINE) this.drop(conn);
      return;
    }
    const m = /^CONNECT (\d{1,10})$/.exec(conn.line.slice(0, nl));
    const port = m ? Number(m[1]) : NaN;
    if (!(port >= 0 && port <= 0xffffffff) || nl !== conn.line.length - 1) {
      writeFdQuiet(conn.fd, 'ERROR bad CONNECT line\n');
      return this.drop(conn);
    }
    this.counters.hostConnects!++;
    conn.guestPort = port;
    conn.hostPort = this.allocPort(port);
    conn.state = 'requesting';
    conn.line = '';
    this.conns.set(conn.key, conn);
    this.counters.connections!++;
    this.queueControl(conn, Op.REQUEST);
    this.updateInterest(conn);
  }

  private allocPort(guestPort: number): number {
    for (;;) {
      const p = this.nextPort;
      this.nextPort = this.nextPort >= 0xfffffff0 ? FIRST_EPHEMERAL_PORT : this.nextPort + 1;
      if (!this.conns.has(`${p}/${guestPort}`)) return p;
    }
  }

  private onHostEvent(conn: Conn, events: number): void {
    if (conn.state === 'handshake') {
      if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) this.readHandshake(conn);
      this.flushRx();
      return;
    }
    if (events & EPOLLOUT) this.flushOut(conn);
    const readable = this.byFd.has(conn.fd) && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) !== 0;
    if (readable) conn.rxBlocked = true;
    // Also when only EPOLLOUT fired: draining the host socket may have queued a
    // credit update (or a reset), and a guest out of credit waits for it.
    this.flushRx();
    if (readable && events & (EPOLLHUP | EPOLLERR) && conn.rxBlocked && this.byFd.get(conn.fd) === conn) {
      conn.parked = true;
      this.env!.poller.remove(conn.fd);
    }
  }

  /** Fills guest rx buffers: control packets first, then data from host sockets with credit. */
  private flushRx(): void {
    const vq = this.env?.queue(RXQ);
    if (!vq) {
      // Ring stopped (VM paused): stop polling blocked sockets until it restarts, or epoll spins.
      for (const conn of this.conns.values()) this.updateInterest(conn);
      return;
    }
    // A second pass sends what the first one queued (e.g. a CREDIT_REQUEST).
    for (let pass = 0; pass < 2; pass++) {
      const pending = this.control.length;
      this.flushRxOnce(vq);
      if (this.control.length === 0 || this.control.length === pending) break;
    }
  }

  private flushRxOnce(vq: Virtqueue): void {
    let pushed = false;
    try {
      while (this.control.length) {
        const chain = vq.pop();
        if (!chain) break;
        const h = this.control.shift()!;
        const n = scatter(chain.writable, 0, encodeHeader(h, this.hdrBuf));
        vq.push(chain.head, n === HDR_SIZE ? HDR_SIZE : 0);
        this.counters.rxPackets!++;
        pushed = true;
      }
      if (this.control.length === 0) {
        for (const conn of this.conns.values()) {
          if (!conn.rxBlocked || conn.state !== 'established') continue;
          if (this.deliver(conn, vq)) pushed = true;
        }
      }
    } catch (err) {
      if (err instanceof ChainError) {
        this.env!.log(`vsock: bad rx chain: ${err.message}`);
        vq.push(err.head, 0);
        pushed = true;
      } else if (err instanceof QueueError || err instanceof GuestMemoryError) {
        this.env!.log(`vsock: rx queue broken: ${err.message}`);
      } else throw err;
    }
    if (pushed) vq.notify();
    // Conns touched above may have changed what they wait for.
    for (const conn of this.conns.values()) this.updateInterest(conn);
  }

  /** Moves host socket data into rx buffers while there is credit; true if any packet was pushed. */
  private deliver(conn: Conn, vq: Virtqueue): boolean {
    let pushed = false;
    while (conn.rxBlocked && !(conn.guestShutdown & SHUTDOWN_RCV)) {
      const credit = conn.credit();
      if (credit <= 0) break;
      const chain = vq.pop();
      if (!chain) break;
      const space = totalLength(chain.writable) - HDR_SIZE;
      const first = sliceFrom(chain.writable, HDR_SIZE)[0];
      if (space <= 0 || !first) {
        vq.push(chain.head, 0);
        pushed = true;
        continue;
      }
      const want = Math.min(first.byteLength, credit, MAX_PKT_PAYLOAD);
      let n: number;
      try {
        n = readFd(conn.fd, first, want);
      } catch {
        n = 0;
      }
      if (n < 0) { vq.unpop(); conn.rxBlocked = false; break; }
      if (n === 0) {
        vq.unpop();
        conn.rxBlocked = false;
        conn.hostEof = true;
        conn.state = 'closing';
        this.queueControl(conn, Op.SHUTDOWN, SHUTDOWN_RCV | SHUTDOWN_SEND);
        break;
      }
      const h = this.header(conn, Op.RW, 0, n);
      scatter(chain.writable, 0, encodeHeader(h, this.hdrBuf));
      conn.txCnt = (conn.txCnt + n) >>> 0;
      this.counters.rxBytes! += n;
      this.counters.rxPackets!++;
      vq.push(chain.head, HDR_SIZE + n);
      pushed = true;
    }
    return pushed;
  }

  // ---- bookkeeping ----

  private header(conn: Conn, op: number, flags = 0, len = 0): VsockHeader {
    conn.lastSentFwdCnt = conn.fwdCnt;
    return {
      srcCid: BigInt(HOST_CID), dstCid: this.guestCid, srcPort: conn.hostPort, dstPort: conn.guestPort,
      len, type: TYPE_STREAM, op, flags, bufAlloc: BUF_ALLOC, fwdCnt: conn.fwdCnt,
    };
  }

  private queueControl(conn: Conn, op: number, flags = 0): void {
    this.control.push(this.header(conn, op, flags));
  }

  private sendRst(hostPort: number, guestPort: number): void {
    this.counters.resets!++;
    this.control.push({
      srcCid: BigInt(HOST_CID), dstCid: this.guestCid, srcPort: hostPort, dstPort: guestPort,
      len: 0, type: TYPE_STREAM, op: Op.RST, flags: 0, bufAlloc: 0, fwdCnt: 0,
    });
  }

  private register(conn: Conn): void {
    this.conns.set(conn.key, conn);
    this.byFd.set(conn.fd, conn);
    this.counters.connections!++;
    conn.interest = 0;
    this.env!.poller.add(conn.fd, 0, (ev) => this.onHostEvent(conn, ev));
  }

  /** Polls the host socket only for what can make progress now (level-triggered epoll). */
  private updateInterest(conn: Conn): void {
    if (!this.byFd.has(conn.fd) || conn.parked) return;
    let want = 0;
    if (conn.outBuf.length) want |= EPOLLOUT;
    const canRead = conn.state === 'established' && !conn.hostEof && !(conn.guestShutdown & SHUTDOWN_RCV);
    if (canRead && !conn.rxBlocked && conn.credit() > 0) want |= EPOLLIN;
    if (conn.state === 'handshake') want = EPOLLIN;
    if (want !== conn.interest) {
      conn.interest = want;
      this.env!.poller.modify(conn.fd, want);
    }
    if (canRead && conn.credit() <= 0 && conn.rxBlocked) {
      // Out of credit with data waiting: ask the guest how much it has consumed.
      if (!this.control.some((h) => h.op === Op.CREDIT_REQUEST && h.srcPort === conn.hostPort && h.dstPort === conn.guestPort)) {
        this.queueControl(conn, Op.CREDIT_REQUEST);
      }
    }
  }

  private drop(conn: Conn): void {
    if (this.conns.get(conn.key) === conn) this.conns.delete(conn.key);
    if (this.byFd.get(conn.fd) === conn) {
      this.byFd.delete(conn.fd);
      if (!conn.parked) this.env?.poller.remove(conn.fd);
      closeFd(conn.fd);
    }
  }
}

function limit(bufs: Uint8Array[], len: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let left = len;
  for (const b of bufs) {
    if (left <= 0) break;
    const part = b.byteLength > left ? b.subarray(0, left) : b;
    out.push(part);
    left -= part.byteLength;
  }
  return out;
}

function writeFdQuiet(fd: number, text: string): void {
  try { writeFd(fd, new TextEncoder().encode(text)); } catch { /* peer gone */ }
}
