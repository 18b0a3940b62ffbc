// The device side of vhost-user: QEMU (the frontend) tells us where guest
// memory and the rings are and hands us kick/call eventfds; we run a
// VirtioDevice on them. One backend serves one connection.
import { GuestMemory, GuestMemoryError, type MemoryRegion } from '../memory.js';
import { Virtqueue } from '../virtio/queue.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, type DeviceEnv, type VirtioDevice } from '../virtio/device.js';
import { FdSocket } from '../../sys/unix-socket.js';
import { closeFd, eventfdDrain, eventfdSignal, mmapShared, EPOLLIN, type Mapping, type Poller } from '../../sys/io.js';
import {
  FLAG_NEED_REPLY, FLAG_REPLY, FLAG_VERSION, F_PROTOCOL_FEATURES, HEADER_SIZE, MAX_PAYLOAD,
  ProtocolFeature, Req, VRING_IDX_MASK, VRING_NOFD_MASK, reqName,
} from './protocol.js';

interface RingState {
  size: number;
  descAddr: number;
  availAddr: number;
  usedAddr: number;
  base: number;
  kickFd: number;
  callFd: number;
  enabled: boolean;
  started: boolean;
  vq?: Virtqueue;
}

export class VhostUserProtocolError extends Error {}

export class VhostUserBackend {
  private readonly sock: FdSocket;
  private readonly device: VirtioDevice;
  private readonly poller: Poller;
  private readonly logFn: (msg: string) => void;
  private memory = new GuestMemory([]);
  private mappings: Mapping[] = [];
  private readonly rings: RingState[];
  private ackedFeatures = 0n;
  private protocolFeatures = 0n;
  private closed = false;
  onClose: () => void = () => {};

  static readonly PROTOCOL_FEATURES = ProtocolFeature.REPLY_ACK | ProtocolFeature.CONFIG | ProtocolFeature.MQ;

  constructor(connFd: number, device: VirtioDevice, poller: Poller, log: (msg: string) => void) {
    this.sock = new FdSocket(connFd, HEADER_SIZE + MAX_PAYLOAD);
    this.device = device;
    this.poller = poller;
    this.logFn = log;
    this.rings = Array.from({ length: device.queueCount }, () => ({
      size: 0, descAddr: 0, availAddr: 0, usedAddr: 0, base: 0,
      kickFd: -1, callFd: -1, enabled: false, started: false,
    }));
    const backend = this;
    const env: DeviceEnv = {
      get memory() { return backend.memory; },
      queue: (i) => backend.rings[i]?.vq,
      poller,
      log,
      driverFeatures: () => backend.ackedFeatures,
    };
    device.attach(env);
    poller.add(connFd, EPOLLIN, () => this.onReadable());
  }

  private get features(): bigint {
    return VIRTIO_F_VERSION_1 | VIRTIO_RING_F_INDIRECT_DESC | F_PROTOCOL_FEATURES | this.device.deviceFeatures;
  }

  private onReadable(): void {
    try {
      const msg = this.sock.recv(HEADER_SIZE);
      if (msg === null) return this.close('frontend closed the connection');
      if (msg === undefined) return;
      if (msg.data.byteLength < HEADER_SIZE) {
        msg.fds.forEach(closeFd);
        throw new VhostUserProtocolError('short vhost-user header');
      }
      const h = new DataView(msg.data.buffer, msg.data.byteOffset, HEADER_SIZE);
      const request = h.getUint32(0, true);
      const flags = h.getUint32(4, true);
      const size = h.getUint32(8, true);
      if (size > MAX_PAYLOAD) {
        msg.fds.forEach(closeFd);
        throw new VhostUserProtocolError(`vhost-user payload of ${size} bytes`);
      }
      const payload = new Uint8Array(size);
      let got = 0;
      const fds = [...msg.fds];
      while (got < size) {
        const part = this.sock.recv(size - got);
        if (!part) throw new VhostUserProtocolError('connection closed inside a message');
        payload.set(part.data, got);
        got += part.data.byteLength;
        fds.push(...part.fds);
      }
      this.dispatch(request, flags, new DataView(payload.buffer), fds);
    } catch (err) {
      this.close(`vhost-user: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private reply(request: number, payload: Uint8Array): void {
    const out = new Uint8Array(HEADER_SIZE + payload.byteLength);
    const h = new DataView(out.buffer);
    h.setUint32(0, request, true);
    h.setUint32(4, FLAG_VERSION | FLAG_REPLY, true);
    h.setUint32(8, payload.byteLength, true);
    out.set(payload, HEADER_SIZE);
    this.sock.send(out);
  }

  private replyU64(request: number, value: bigint): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, value, true);
    this.reply(request, b);
  }

  private ring(index: number): RingState {
    const r = this.rings[index];
    if (!r) throw new VhostUserProtocolError(`queue index ${index} out of range`);
    return r;
  }

  private dispatch(request: number, flags: number, p: DataView, fds: number[]): void {
    let ack = 0n;
    const need = (n: number) => {
      if (p.byteLength < n) throw new VhostUserProtocolError(`${reqName.get(request)} payload too short`);
    };
    const takeFd = (): number => {
      const fd = fds.shift();
      if (fd === undefined) throw new VhostUserProtocolError(`${reqName.get(request)} without fd`);
      return fd;
    };
    switch (request) {
      case Req.GET_FEATURES:
        return this.replyU64(request, this.features);
      case Req.SET_FEATURES: {
        need(8);
        this.ackedFeatures = p.getBigUint64(0, true) & this.features;
        for (const r of this.rings) r.vq && (r.vq.indirect = (this.ackedFeatures & VIRTIO_RING_F_INDIRECT_DESC) !== 0n);
        break;
      }
      case Req.GET_PROTOCOL_FEATURES:
        return this.replyU64(request, VhostUserBackend.PROTOCOL_FEATURES);
      case Req.SET_PROTOCOL_FEATURES:
        need(8);
        this.protocolFeatures = p.getBigUint64(0, true) & VhostUserBackend.PROTOCOL_FEATURES;
        break;
      case Req.GET_QUEUE_NUM:
        return this.replyU64(request, BigInt(this.device.queueCount));
      case Req.SET_OWNER:
        break;
      case Req.RESET_OWNER:
        this.resetDevice();
        break;
      case Req.SET_MEM_TABLE:
        this.setMemTable(p, fds);
        fds.length = 0;
        break;
      case Req.SET_VRING_NUM: {
        need(8);
        const r = this.ring(p.getUint32(0, true));
        const num = p.getUint32(4, true);
        if (num < 1 || num > this.device.queueMaxSize || (num & (num - 1))) {
          throw new VhostUserProtocolError(`bad ring size ${num}`);
        }
        r.size = num;
        break;
      }
      case Req.SET_VRING_ADDR: {
        need(40);
        const r = this.ring(p.getUint32(0, true));
        const toNum = (v: bigint) => {
          if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhostUserProtocolError('ring address out of range');
          return Number(v);
        };
        r.descAddr = toNum(p.getBigUint64(8, true));
        r.usedAddr = toNum(p.getBigUint64(16, true));
        r.availAddr = toNum(p.getBigUint64(24, true));
        break;
      }
      case Req.SET_VRING_BASE: {
        need(8);
        const r = this.ring(p.getUint32(0, true));
        r.base = p.getUint32(4, true) & 0xffff;
        break;
      }
      case Req.GET_VRING_BASE: {
        need(8);
        const index = p.getUint32(0, true);
        const r = this.ring(index);
        this.stopRing(r);
        const out = new Uint8Array(8);
        const v = new DataView(out.buffer);
        v.setUint32(0, index, true);
        v.setUint32(4, r.base, true);
        return this.reply(request, out);
      }
      case Req.SET_VRING_KICK:
      case Req.SET_VRING_CALL:
      case Req.SET_VRING_ERR: {
        need(8);
        const v = Number(p.getBigUint64(0, true) & 0xffffn);
        const r = this.ring(v & VRING_IDX_MASK);
        const fd = v & VRING_NOFD_MASK ? -1 : takeFd();
        if (request === Req.SET_VRING_KICK) {
          if (r.kickFd >= 0) { this.poller.remove(r.kickFd); closeFd(r.kickFd); }
          r.kickFd = fd;
          // Without protocol features a ring is enabled by its kick fd.
          if (!(this.ackedFeatures & F_PROTOCOL_FEATURES)) r.enabled = true;
          this.startRing(v & VRING_IDX_MASK);
        } else if (request === Req.SET_VRING_CALL) {
          if (r.callFd >= 0) closeFd(r.callFd);
          r.callFd = fd;
        } else if (fd >= 0) {
          closeFd(fd);
        }
        break;
      }
      case Req.SET_VRING_ENABLE: {
        need(8);
        const index = p.getUint32(0, true);
        const r = this.ring(index);
        r.enabled = p.getUint32(4, true) !== 0;
        if (r.enabled) this.startRing(index);
        break;
      }
      case Req.GET_CONFIG: {
        need(12);
        const offset = p.getUint32(0, true);
        const size = p.getUint32(4, true);
        const out = new Uint8Array(12 + size);
        out.set(new Uint8Array(p.buffer, p.byteOffset, 12));
        const cfg = this.device.readConfig();
        if (offset <= cfg.byteLength) out.set(cfg.subarray(offset, offset + size), 12);
        return this.reply(request, out);
      }
      case Req.SET_CONFIG:
      case Req.SET_VRING_ENDIAN:
      case Req.NET_SET_MTU:
      case Req.SEND_RARP:
        break;
      case Req.SET_SLAVE_REQ_FD:
      case Req.SET_LOG_FD:
        break;
      default:
        this.logFn(`vhost-user: unsupported request ${request}`);
        ack = 1n;
    }
    fds.forEach(closeFd);
    if (flags & FLAG_NEED_REPLY && this.protocolFeatures & ProtocolFeature.REPLY_ACK) {
      this.replyU64(request, ack);
    }
  }

  private setMemTable(p: DataView, fds: number[]): void {
    if (p.byteLength < 8) throw new VhostUserProtocolError('SET_MEM_TABLE payload too short');
    const n = p.getUint32(0, true);
    if (n > 8 || p.byteLength < 8 + 32 * n || fds.length !== n) {
      fds.forEach(closeFd);
      throw new VhostUserProtocolError(`SET_MEM_TABLE with ${n} regions and ${fds.length} fds`);
    }
    const regions: MemoryRegion[] = [];
    const mappings: Mapping[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const o = 8 + 32 * i;
        const gpa = Number(p.getBigUint64(o, true));
        const size = Number(p.getBigUint64(o + 8, true));
        const frontendAddr = Number(p.getBigUint64(o + 16, true));
        const mmapOffset = Number(p.getBigUint64(o + 24, true));
        const m = mmapShared(fds[i]!, size + mmapOffset, 0);
        mappings.push(m);
        regions.push({ gpa, size, frontendAddr, bytes: m.bytes.subarray(mmapOffset, mmapOffset + size) });
      }
    } finally {
      fds.forEach(closeFd); // the mappings keep the memory alive
    }
    this.mappings.forEach((m) => m.unmap());
    this.mappings = mappings;
    this.memory = new GuestMemory(regions);
    // Rings that are running must be re-resolved against the new table.
    this.rings.forEach((r, i) => { if (r.started) { r.started = false; r.vq = undefined; this.startRing(i); } });
  }

  private startRing(index: number): void {
    const r = this.ring(index);
    if (r.started || !r.enabled || r.kickFd < 0 || r.size === 0 || this.memory.regions.length === 0) return;
    try {
      const layout = {
        size: r.size,
        descGpa: this.memory.frontendToGuest(r.descAddr),
        availGpa: this.memory.frontendToGuest(r.availAddr),
        usedGpa: this.memory.frontendToGuest(r.usedAddr),
      };
      r.vq = new Virtqueue(this.memory, layout, () => { if (r.callFd >= 0) eventfdSignal(r.callFd); }, r.base);
      r.vq.indirect = (this.ackedFeatures & VIRTIO_RING_F_INDIRECT_DESC) !== 0n;
    } catch (err) {
      if (err instanceof GuestMemoryError) {
        this.logFn(`vhost-user: queue ${index}: ${err.message}`);
        return;
      }
      throw err;
    }
    r.started = true;
    const kick = r.kickFd;
    this.poller.add(kick, EPOLLIN, () => {
      eventfdDrain(kick);
      if (r.started) this.device.notify(index);
    });
    // Buffers may already be waiting.
    this.device.notify(index);
  }

  private stopRing(r: RingState): void {
    if (r.vq) r.base = r.vq.lastAvail;
    r.started = false;
    r.vq = undefined;
    if (r.kickFd >= 0) { this.poller.remove(r.kickFd); closeFd(r.kickFd); r.kickFd = -1; }
  }

  private resetDevice(): void {
    this.rings.forEach((r) => this.stopRing(r));
    this.device.reset();
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.logFn(reason);
    this.poller.remove(this.sock.fd);
    for (const r of this.rings) {
      this.stopRing(r);
      if (r.callFd >= 0) closeFd(r.callFd);
    }
    this.device.reset();
    this.mappings.forEach((m) => m.unmap());
    this.mappings = [];
    this.sock.close();
    this.onClose();
  }
}
