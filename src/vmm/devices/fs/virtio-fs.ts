// virtio-fs device: queue 0 is the high-priority queue (FORGET, INTERRUPT),
// queues 1.. carry FUSE requests. Each descriptor chain is one request that
// the FUSE passthrough server answers in place, in guest memory.
import { type DeviceEnv, type VirtioDevice, VIRTIO_ID_FS } from '../../virtio/device.js';
import { serviceQueue } from '../../virtio/queue.js';
import { FuseServer, type ExportSpec } from './fuse-server.js';

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
}

export class VirtioFsDevice implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_FS;
  readonly queueCount: number;
  readonly queueMaxSize = 1024;
  readonly deviceFeatures = 0n;
  private env?: DeviceEnv;
  private readonly tag: string;
  private readonly server: FuseServer;
  private badChains = 0;

  constructor(opts: VirtioFsOptions) {
    const tagBytes = Buffer.byteLength(opts.tag);
    if (tagBytes === 0 || tagBytes > 36) throw new Error(`virtio-fs tag must be 1-36 bytes: ${opts.tag}`);
    this.tag = opts.tag;
    this.queueCount = 1 + (opts.requestQueues ?? 1);
    this.server = new FuseServer({
      ...(opts.exports !== undefined ? { exports: opts.exports } : {}),
      ...(opts.root !== undefined ? { root: opts.root } : {}),
      readonly: opts.readonly ?? false,
      keepCache: opts.keepCache ?? false,
      log: (m) => this.env?.log(`virtio-fs: ${m}`),
    });
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
    serviceQueue(vq, (chain) => this.server.handle(chain), {
      label: 'virtio-fs', log: this.env!.log, onBadChain: () => { this.badChains++; }, notifyEvery: 16,
    });
  }

  reset(): void {
    // The FUSE session ends with the driver; inodes are dropped at DESTROY/close.
  }

  stats(): Record<string, number> {
    return { ...this.server.stats(), badChains: this.badChains };
  }

  close(): void {
    this.server.close();
  }
}
