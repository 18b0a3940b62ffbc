// virtio-fs device: queue 0 is the high-priority queue (FORGET, INTERRUPT),
// queues 1.. carry FUSE requests. Each descriptor chain is one request that
// the FUSE passthrough server answers in place, in guest memory.
// A deferred device (pre-booted VMs) has its queues, tag and config space
// from the start but learns what it serves only at configure(); until then
// every request gets EIO.
import { type DeviceEnv, type VirtioDevice, VIRTIO_ID_FS } from '../../virtio/device.js';
import { serviceQueue } from '../../virtio/queue.js';
import type { DeviceLateConfig } from '../factory.js';
import { FuseServer, type ExportSpec, type RequestBuffers } from './fuse-server.js';
import { BadRequest, Reply, Request } from './fuse-io.js';
import { Op } from './fuse-protocol.js';

const EIO = 5;

export interface VirtioFsOptions {
  /** Host directory shared as the file system root (exactly one of root and exports). */
  root?: string;
  /**
   * Several host paths behind one device (bind-mount sources): the file
   * system root is then a read-only directory with one entry per export.
   * Names are single path components, unique, not "." or "..".
   */
  exports?: ExportSpec[];
  tag: string;
  readonly?: boolean;
  requestQueues?: number;
  /** The guest keeps file pages across opens (see FuseServerOptions.keepCache). */
  keepCache?: boolean;
  /**
   * Neither root nor exports yet: configure() supplies them (readonly and
   * keepCache given here are the defaults configure() may override).
   */
  deferred?: boolean;
}

export class VirtioFsDevice implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_FS;
  readonly queueCount: number;
  readonly queueMaxSize = 1024;
  readonly deviceFeatures = 0n;
  private env?: DeviceEnv;
  private readonly tag: string;
  private server?: FuseServer;
  private readonly defaults: { readonly: boolean; keepCache: boolean };
  private readonly deferred: boolean;
  private badChains = 0;
  /** requests answered with EIO because the device was not configured yet */
  private unconfigured = 0;

  constructor(opts: VirtioFsOptions) {
    const tagBytes = Buffer.byteLength(opts.tag);
    if (tagBytes === 0 || tagBytes > 36) throw new Error(`virtio-fs tag must be 1-36 bytes: ${opts.tag}`);
    this.tag = opts.tag;
    this.queueCount = 1 + (opts.requestQueues ?? 1);
    this.defaults = { readonly: opts.readonly ?? false, keepCache: opts.keepCache ?? false };
    this.deferred = opts.deferred ?? false;
    if (this.deferred) {
      if (opts.root !== undefined || opts.exports !== undefined) throw new Error('a deferred virtio-fs device takes neither root nor exports');
      return;
    }
    this.server = this.newServer(opts.root, opts.exports, this.defaults.readonly, this.defaults.keepCache);
  }

  /** Whether the device has something to serve (always, unless deferred and not configured yet). */
  get configured(): boolean {
    return this.server !== undefined;
  }

  /**
   * Gives a deferred device its root or exports. Refused (throws, nothing
   * changes) for a device that serves something already: the guest may have
   * seen that tree, and swapping it under a mounted file system would show
   * it an inconsistent one.
   */
  configure(config: DeviceLateConfig): void {
    if (config.kind !== 'fs') throw new Error(`virtio-fs device ${this.tag} cannot take a ${config.kind} configuration`);
    if (this.server) throw new Error(`virtio-fs device ${this.tag} is configured already`);
    this.server = this.newServer(
      config.root, config.exports, config.readonly ?? this.defaults.readonly, config.keepCache ?? this.defaults.keepCache,
    );
  }

  private newServer(root: string | undefined, exports: ExportSpec[] | undefined, readonly: boolean, keepCache: boolean): FuseServer {
    return new FuseServer({
      ...(exports !== undefined ? { exports } : {}),
      ...(root !== undefined ? { root } : {}),
      readonly,
      keepCache,
      log: (m) => this.env?.log(`virtio-fs: ${m}`),
    });
  }

  /** One FUSE request (descriptor chain); returns the bytes written into its writable part. */
  handle(req: RequestBuffers): number {
    if (this.server) return this.server.handle(req);
    return this.refuse(req);
  }

  /** Answers a request that reached a device with nothing to serve: EIO (FORGETs get no reply). */
  private refuse(req: RequestBuffers): number {
    this.unconfigured++;
    if (this.unconfigured === 1) this.env?.log('virtio-fs: request before the device was configured: EIO');
    const out = new Reply(req.writable);
    try {
      const r = new Request(req.readable);
      if (r.opcode === Op.FORGET || r.opcode === Op.BATCH_FORGET) return 0;
      return out.send(r.unique, -EIO, null);
    } catch (e) {
      return out.send(e instanceof BadRequest ? e.unique : 0n, -EIO, null);
    }
  }

  readConfig(): Uint8Array {
    // struct virtio_fs_config { u8 tag[36]; le32 num_request_queues; }
    const b = new Uint8Array(40);
    b.set(Buffer.from(this.tag));
    new DataView(b.buffer).setUint32(36, this.queueCount - 1, true);
    return b;
  }

  attach(env: DeviceEnv): void {
    this.env = env;
  }

  notify(index: number): void {
    const vq = this.env?.queue(index);
    if (!vq) return;
    // Interrupt in batches so a long run of requests does not starve the guest.
    serviceQueue(vq, (chain) => this.handle(chain), {
      label: 'virtio-fs', log: this.env!.log, onBadChain: () => { this.badChains++; }, notifyEvery: 16,
    });
  }

  reset(): void {
    // The FUSE session ends with the driver; inodes are dropped at DESTROY/close.
  }

  stats(): Record<string, number> {
    return { ...this.server?.stats(), badChains: this.badChains, ...(this.deferred ? { unconfigured: this.unconfigured } : {}) };
  }

  close(): void {
    this.server?.close();
  }
}
