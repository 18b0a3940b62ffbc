// virtio-net device whose wire is a stream socket to passt (`passt --fd`):
// frames the guest puts on the TX queue go to passt with a 4-byte length
// prefix, frames passt sends fill the guest's RX buffers (mergeable RX
// buffers, so a 64 KiB frame may span several small guest buffers).
// Checksum offload both ways (offload.ts): the TCG guest neither verifies
// what passt computed nor computes what the device can finish on the host.
// No segmentation offloads: with a 65520-byte MTU the guest already hands
// over full-sized IP packets.
// Under TCG every guest kick is an emulated MMIO exit: the device asks for
// none (used ring NO_NOTIFY) while it works through TX or holds RX buffers
// to spare, and turns kicks back on (then looks again) before it waits.
// Guest descriptor chains and passt's stream are both untrusted: a bad
// chain is completed empty, an oversized frame is dropped and counted, a
// malformed stream or a passt that goes away is logged and the link is
// treated as down, never a crash.
// A pre-booted VM's device starts without a wire (fd -1: passt runs in the
// container's network namespace, known only later): the link reports up,
// guest frames are dropped and counted, nothing arrives, until configure()
// hands it the socket.
import { type DeviceEnv, type VirtioDevice, VIRTIO_ID_NET } from '../../virtio/device.js';
import type { DeviceLateConfig } from '../factory.js';
import { ChainError, QueueError, gather, gatherInto, scatter, totalLength, type DescriptorChain, type Virtqueue } from '../../virtio/queue.js';
import { GuestMemoryError } from '../../memory.js';
import { EPOLLERR, EPOLLHUP, EPOLLIN, EPOLLOUT, closeFd, readFd, setNonBlocking, writeFd } from '../../../sys/io.js';
import { FrameReader, FrameStreamError, LEN_SIZE, MAX_FRAME, MIN_FRAME, lengthPrefix } from './frame-stream.js';
import { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_HDR_F_DATA_VALID, completeChecksum, txOffload } from './offload.js';

export { VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM };

const RXQ = 0;
const TXQ = 1;

export const VIRTIO_NET_F_MTU = 1n << 3n;
export const VIRTIO_NET_F_MAC = 1n << 5n;
export const VIRTIO_NET_F_MRG_RXBUF = 1n << 15n;
export const VIRTIO_NET_F_STATUS = 1n << 16n;
const VIRTIO_NET_S_LINK_UP = 1;

/** virtio_net_hdr_v1 (VERSION_1: always 12 bytes, num_buffers included). */
export const NET_HDR_SIZE = 12;
/** Bytes of guest TX data we hold for passt before we stop taking TX chains. */
const OUT_HIGH_WATER = 1 << 20;
/** At most this many guest buffers for one received frame (guards a driver posting tiny buffers). */
const MAX_MERGE_BUFFERS = 256;

export interface NetDeviceOptions {
  /** connected stream socket to passt (the worker owns it from now on), or -1: attached later by configure() */
  fd: number;
  /** the guest's MAC address, aa:bb:cc:dd:ee:ff */
  mac: string;
  /** MTU announced to the guest (VIRTIO_NET_F_MTU) */
  mtu: number;
}

export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`bad MAC address ${mac}`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export class VirtioNetDevice implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  // rx, tx, and the slot of a control queue that is never offered (no
  // VIRTIO_NET_F_CTRL_VQ): every engine wires three queues per device.
  readonly queueCount = 3;
  readonly queueMaxSize = 1024;
  readonly deviceFeatures = VIRTIO_NET_F_CSUM | VIRTIO_NET_F_GUEST_CSUM | VIRTIO_NET_F_MAC | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MRG_RXBUF | VIRTIO_NET_F_STATUS;
  private env?: DeviceEnv;
  private fd: number;
  private readonly mac: Uint8Array;
  private readonly mtu: number;
  private readonly reader = new FrameReader();
  /** frames (with length prefix) waiting for passt to accept them */
  private out: Uint8Array[] = [];
  private outBytes = 0;
  private interest = 0;
  /** RX: passt has data (or we hold a frame) that waits for guest buffers */
  private rxWaiting = false;
  /** RX: we asked the guest not to kick when it posts buffers (we had enough) */
  private rxKicksOff = false;
  private down = false;
  /** a socket to passt was given (at construction or by configure()); it may have gone down since */
  private wired: boolean;
  private readonly hdr = new Uint8Array(NET_HDR_SIZE);
  /** Where a TX frame is assembled when it can go to passt right away. */
  private readonly staging = new Uint8Array(LEN_SIZE + MAX_FRAME);
  private readonly counters: Record<string, number> = {
    txFrames: 0, txBytes: 0, txDropped: 0, txBadHeader: 0, txCsum: 0, rxFrames: 0, rxBytes: 0, rxDropped: 0, badChains: 0, linkDown: 0,
    txUnattached: 0,
  };

  constructor(opts: NetDeviceOptions) {
    if (!Number.isInteger(opts.fd) || opts.fd < -1) throw new Error(`bad passt socket fd ${opts.fd}`);
    this.fd = opts.fd;
    this.wired = opts.fd >= 0;
    this.mac = parseMac(opts.mac);
    if (!Number.isInteger(opts.mtu) || opts.mtu < 68 || opts.mtu > MAX_FRAME - 14) throw new Error(`bad MTU ${opts.mtu}`);
    this.mtu = opts.mtu;
  }

  readConfig(): Uint8Array {
    // mac[6], status u16, max_virtqueue_pairs u16, mtu u16
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    b.set(this.mac, 0);
    v.setUint16(6, this.down ? 0 : VIRTIO_NET_S_LINK_UP, true);
    v.setUint16(8, 1, true);
    v.setUint16(10, this.mtu, true);
    return b;
  }

  attach(env: DeviceEnv): void {
    this.env = env;
    if (this.fd >= 0) this.watchSocket();
  }

  /**
   * Takes the socket to passt for a device created without one (fd -1);
   * from then on the device is as if created with it. Refused (throws, the
   * caller keeps the fd) when it has had a socket already.
   */
  configure(config: DeviceLateConfig): void {
    if (config.kind !== 'net') throw new Error(`virtio-net device cannot take a ${config.kind} configuration`);
    if (!Number.isInteger(config.fd) || config.fd < 0) throw new Error(`bad passt socket fd ${config.fd}`);
    if (this.wired) throw new Error('virtio-net device is attached to passt already');
    if (this.env) this.watchSocket(config.fd);
    this.fd = config.fd;
    this.wired = true;
  }

  /** Polls passt's socket (before the fd is recorded: if this throws, the caller still owns it). */
  private watchSocket(fd = this.fd): void {
    setNonBlocking(fd);
    this.env!.poller.add(fd, EPOLLIN, (ev) => this.onSocket(ev));
    this.interest = EPOLLIN;
  }

  stats(): Record<string, number> {
    return { ...this.counters, outBytes: this.outBytes };
  }

  notify(index: number): void {
    if (index === TXQ) this.processTx();
    else if (index === RXQ) this.flushRx();
  }

  reset(): void {
    // The driver starts over: frames half delivered or queued for passt belong to the old session.
    this.out = [];
    this.outBytes = 0;
    this.rxKicksOff = false;
    this.updateInterest();
  }

  close(): void {
    // The VMM log keeps what the device saw: drops and bad chains explain a slow or broken network.
    if (this.env && this.counters.txFrames! + this.counters.rxFrames! > 0) {
      this.env.log(`counters: ${Object.entries(this.stats()).map(([k, v]) => `${k} ${v}`).join(', ')}`);
    }
    this.linkDown(null);
  }

  // ---- guest -> passt ----

  private processTx(): void {
    const vq = this.env?.queue(TXQ);
    if (!vq) return;
    // passt may take everything we held for it while we were still taking chains:
    // then nothing (no EPOLLOUT, no kick while kicks are off) would bring us back.
    while (this.takeTx(vq) && this.outBytes < OUT_HIGH_WATER);
  }

  /**
   * Moves TX chains to passt until the queue is empty or we hold
   * OUT_HIGH_WATER bytes for passt, then writes what we hold. Returns true
   * when it stopped for passt with chains left in the queue.
   */
  private takeTx(vq: Virtqueue): boolean {
    let done = 0;
    let stopped = false;
    let broken = false;
    // No kicks while we work through the queue: the guest adds frames without an exit each.
    vq.suppressKicks(true);
    for (;;) {
      let drained = false;
      // Stop taking chains while passt lags behind: the guest's queue fills and it backs off.
      // Kicks stay off then: passt's EPOLLOUT (or the caller) brings us back.
      while (this.outBytes < OUT_HIGH_WATER) {
        let chain: DescriptorChain | null;
        try {
          chain = vq.pop();
        } catch (err) {
          if (err instanceof ChainError) {
            this.counters.badChains!++;
            this.env!.log(`net: bad tx chain: ${err.message}`);
            vq.push(err.head, 0);
            done++;
            continue;
          }
          if (err instanceof QueueError || err instanceof GuestMemoryError) {
            // Nothing more to take from this queue; the next kick tries (and logs) again.
            this.env!.log(`net: tx queue broken: ${err.message}`);
            vq.suppressKicks(false);
            broken = true;
            break;
          }
          throw err;
        }
        if (!chain) { drained = true; break; }
        this.txChain(chain);
        vq.push(chain.head, 0);
        done++;
      }
      if (broken) break;
      if (!drained) { stopped = true; break; }
      if (vq.kicksOnAndEmpty()) break;
      vq.suppressKicks(true);
    }
    if (done) vq.notify();
    this.flushOut();
    return stopped;
  }

  private txChain(chain: DescriptorChain): void {
    const total = totalLength(chain.readable);
    const len = total - NET_HDR_SIZE;
    if (chain.writable.length || len < MIN_FRAME || len > this.mtu + 14) {
      // Larger than the MTU we announced, shorter than an Ethernet header, or not a TX chain.
      this.counters.txDropped!++;
      return;
    }
    if (this.down) { this.counters.txDropped!++; return; }
    if (!this.wired) { this.counters.txUnattached!++; return; }
    const csum = txOffload(gather(chain.readable, 0, NET_HDR_SIZE), len, (this.features() & VIRTIO_NET_F_CSUM) !== 0n);
    if (typeof csum === 'string') {
      this.counters.txDropped!++;
      if (this.counters.txBadHeader!++ < 8) this.env!.log(`net: tx frame dropped: ${csum}`);
      return;
    }
    // Nothing queued for passt: build the frame in the staging buffer and write it at once
    // (no allocation per frame); only what the socket does not take is copied and queued.
    const direct = this.out.length === 0;
    const frame = direct ? this.staging.subarray(0, LEN_SIZE + len) : new Uint8Array(LEN_SIZE + len);
    lengthPrefix(len, frame);
    gatherInto(chain.readable, NET_HDR_SIZE, frame.subarray(LEN_SIZE));
    if (csum) {
      completeChecksum(frame.subarray(LEN_SIZE), csum);
      this.counters.txCsum!++;
    }
    this.counters.txFrames!++;
    this.counters.txBytes! += len;
    let queued: Uint8Array = frame;
    if (direct) {
      let n: number;
      try {
        n = writeFd(this.fd, frame);
      } catch (err) {
        return this.linkDown(`writing to passt: ${(err as Error).message}`);
      }
      if (n === frame.byteLength) return;
      queued = frame.slice(Math.max(n, 0));
    }
    this.out.push(queued);
    this.outBytes += queued.byteLength;
  }

  private flushOut(): void {
    while (this.out.length && !this.down) {
      const b = this.out[0]!;
      let n: number;
      try {
        n = writeFd(this.fd, b);
      } catch (err) {
        return this.linkDown(`writing to passt: ${(err as Error).message}`);
      }
      if (n < 0) break;
      this.outBytes -= n;
      if (n === b.byteLength) this.out.shift();
      else this.out[0] = b.subarray(n);
    }
    this.updateInterest();
  }

  // ---- passt -> guest ----

  private onSocket(events: number): void {
    if (events & EPOLLOUT) {
      this.flushOut();
      // Room again: take the TX chains we left waiting.
      if (this.outBytes < OUT_HIGH_WATER) this.processTx();
    }
    if (this.down) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      this.rxWaiting = true;
      this.flushRx();
    }
  }

  /** Moves frames from passt into guest buffers until either side runs dry. */
  private flushRx(): void {
    const vq = this.env?.queue(RXQ);
    if (!vq || this.down || !this.wired) return;
    try {
      for (;;) {
        const frame = this.reader.peek();
        if (frame) {
          const r = this.deliver(vq, frame);
          if (r === 'no-buffers') {
            // Out of guest buffers: now we want the guest's kick when it posts more. Buffers
            // posted before it saw kicks on came without one: look once more.
            if (this.rxKicksOff) { this.rxKicksOff = false; vq.kicksOnAndEmpty(); continue; }
            break;
          }
          // Buffers to spare: the guest may post more without a kick each.
          if (!this.rxKicksOff) { this.rxKicksOff = true; vq.suppressKicks(true); }
          this.reader.drop();
          // Interrupt per frame (free while the guest polls with interrupts off): the
          // guest starts on the first frame of a burst while we copy the rest, instead
          // of waiting for the whole burst (and acknowledging it) in lock-step.
          vq.notify();
          continue;
        }
        if (!this.rxWaiting) break;
        const space = this.reader.space();
        let n: number;
        try {
          n = readFd(this.fd, space);
        } catch (err) {
          this.linkDown(`reading from passt: ${(err as Error).message}`);
          break;
        }
        if (n < 0) { this.rxWaiting = false; break; }
        if (n === 0) { this.linkDown('passt closed the connection'); break; }
        this.reader.commit(n);
      }
    } catch (err) {
      if (err instanceof FrameStreamError) this.linkDown(`malformed stream from passt: ${err.message}`);
      else if (err instanceof QueueError || err instanceof GuestMemoryError) this.env!.log(`net: rx queue broken: ${err.message}`);
      else throw err;
    }
    this.updateInterest();
  }

  /**
   * Copies one frame into as many RX chains as it needs (mergeable buffers;
   * one chain without VIRTIO_NET_F_MRG_RXBUF). Leaves the queue untouched
   * when the guest has not posted enough buffers yet.
   */
  private deliver(vq: Virtqueue, frame: Uint8Array): 'ok' | 'dropped' | 'no-buffers' {
    const features = this.features();
    const mergeable = (features & VIRTIO_NET_F_MRG_RXBUF) !== 0n;
    const need = NET_HDR_SIZE + frame.byteLength;
    const chains: DescriptorChain[] = [];
    let room = 0;
    while (room < need) {
      let chain: DescriptorChain | null;
      try {
        chain = vq.pop();
      } catch (err) {
        if (!(err instanceof ChainError)) throw err;
        // A guest that posts a malformed buffer loses this frame: every chain taken goes back empty.
        this.counters.badChains!++;
        this.counters.rxDropped!++;
        this.env!.log(`net: bad rx chain: ${err.message}`);
        for (const c of chains) vq.push(c.head, 0);
        vq.push(err.head, 0);
        return 'dropped';
      }
      if (!chain) {
        for (let i = 0; i < chains.length; i++) vq.unpop();
        return 'no-buffers';
      }
      const cap = totalLength(chain.writable);
      chains.push(chain);
      room += cap;
      if (cap < (chains.length === 1 ? NET_HDR_SIZE : 1) || (!mergeable && room < need) || chains.length > MAX_MERGE_BUFFERS) {
        // The guest cannot take this frame the way it set up its buffers: drop it, return the buffers empty.
        for (const c of chains) vq.push(c.head, 0);
        this.counters.rxDropped!++;
        return 'dropped';
      }
    }
    this.hdr.fill(0);
    // passt computed every checksum it sends (offload.ts): the guest need not verify them.
    if (features & VIRTIO_NET_F_GUEST_CSUM) this.hdr[0] = VIRTIO_NET_HDR_F_DATA_VALID;
    new DataView(this.hdr.buffer).setUint16(10, chains.length, true);
    let off = 0;
    chains.forEach((c, i) => {
      let n = 0;
      if (i === 0) n += scatter(c.writable, 0, this.hdr);
      const part = frame.subarray(off, off + totalLength(c.writable) - n);
      n += scatter(c.writable, n, part);
      off += part.byteLength;
      vq.push(c.head, n, false);
    });
    // All buffers of the frame at once: the guest reads num_buffers from the first one.
    vq.publish();
    this.counters.rxFrames!++;
    this.counters.rxBytes! += frame.byteLength;
    return 'ok';
  }

  // ---- bookkeeping ----

  /** What the driver accepted (bare test harnesses: mergeable buffers only). */
  private features(): bigint {
    return this.env?.driverFeatures?.() ?? VIRTIO_NET_F_MRG_RXBUF;
  }

  /** Polls passt's socket for what can make progress (level-triggered epoll). */
  private updateInterest(): void {
    if (this.down || !this.env || this.fd < 0) return;
    let want = 0;
    if (this.out.length) want |= EPOLLOUT;
    if (!this.rxWaiting) want |= EPOLLIN;
    if (want !== this.interest) {
      this.interest = want;
      this.env.poller.modify(this.fd, want);
    }
  }

  /** passt is gone or misbehaved: stop using the socket; the guest keeps running without a wire. */
  private linkDown(reason: string | null): void {
    if (this.fd < 0) return;
    if (reason) {
      this.counters.linkDown!++;
      this.env?.log(`net: link down: ${reason}`);
    }
    this.down = true;
    this.env?.poller.remove(this.fd);
    closeFd(this.fd);
    this.fd = -1;
    this.out = [];
    this.outBytes = 0;
  }
}

