// Main-thread handle on a device worker: creates the listening vhost-user
// sockets (so QEMU can connect as soon as it starts), runs the devices in
// one worker thread, and relays their log and statistics.
import { Worker, MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { takePrestartedWorker, workerScript } from './worker-pool.js';
import { listenUnix } from '../../sys/unix-socket.js';
import { closeFd, eventfd, eventfdSignal } from '../../sys/io.js';
import type { DeviceLateConfig, DeviceSpec } from '../devices/factory.js';
import type { HostedDevice, MainToWorker, WorkerToMain } from './device-worker.js';
import type { MmioWorkerTransport } from '../virtio/mmio-backend.js';

export interface DeviceAttachment {
  spec: DeviceSpec;
  /** a vhost-user socket path to listen on, or the kvm engine's virtio-mmio wiring */
  transport: string | MmioWorkerTransport;
}

export interface DeviceHostOptions {
  /**
   * Start the worker when this resolves true (never when false). The kvm
   * engine passes "vCPU 0 entered KVM_RUN": the devices are first touched
   * when the guest probes virtio, and until they are published the vCPU
   * waits in the register read, so they stay off the path to the guest's
   * first instruction. Default: at once.
   */
  startWhen?: Promise<boolean>;
  /** the worker has published every device; its thread's CPU time so far (µs) */
  onReady?: (threadCpuUs: number) => void;
}

type Stats = Record<string, number>;

export class DeviceHost {
  /** per device: its spec and vhost-user socket ('' for a virtio-mmio device of the kvm engine) */
  readonly devices: { spec: DeviceSpec; socketPath: string }[];
  private readonly controlFd: number;
  private readonly listenFds: number[];
  private port?: MessagePort;
  private statsWaiters: ((s: Stats[]) => void)[] = [];
  /** per device, the configure() calls the worker has not answered yet (it answers in order) */
  private configureWaiters = new Map<number, PromiseWithResolvers<void>[]>();
  private lastStats: Stats[];
  private ended = false;
  private closedDone = false;
  private readonly closedResolve: (s: Stats[]) => void;
  /** Resolves with the devices' final statistics when the worker has stopped (or never started). */
  readonly closed: Promise<Stats[]>;

  constructor(attachments: DeviceAttachment[], log: (msg: string) => void, opts: DeviceHostOptions = {}) {
    this.devices = attachments.map((a) => ({ spec: a.spec, socketPath: typeof a.transport === 'string' ? a.transport : '' }));
    this.lastStats = attachments.map(() => ({}));
    this.listenFds = [];
    try {
      for (const a of attachments) this.listenFds.push(typeof a.transport === 'string' ? listenUnix(a.transport, 1) : -1);
    } catch (err) {
      this.listenFds.forEach(closeFd);
      throw err;
    }
    this.controlFd = eventfd();
    const closed = Promise.withResolvers<Stats[]>();
    this.closed = closed.promise;
    this.closedResolve = closed.resolve;
    const hosted: HostedDevice[] = attachments.map((a, i) => ({
      spec: a.spec, listenFd: this.listenFds[i]!, mmio: typeof a.transport === 'string' ? undefined : a.transport,
    }));
    const spawn = () => this.spawn(hosted, log, opts.onReady);
    if (!opts.startWhen) spawn();
    else opts.startWhen.then((go) => (go && !this.ended ? spawn() : this.end()), () => this.end());
  }

  private spawn(hosted: HostedDevice[], log: (msg: string) => void, onReady?: (cpuUs: number) => void): void {
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const data = { devices: hosted, controlFd: this.controlFd, port: port2 };
    // A worker prestarted for this one device kind has loaded its code already (worker-pool.ts).
    const started = hosted.length === 1 ? takePrestartedWorker(hosted[0]!.spec.kind) : undefined;
    if (started) started.postMessage(data, [port2]);
    const worker = started ?? new Worker(workerScript(), { workerData: data, transferList: [port2], stdout: false, stderr: false });
    const kind = (i: number) => this.devices[i]?.spec.kind ?? 'devices';
    const onMessage = (m: WorkerToMain) => {
      if (m.type === 'log') log(`${kind(m.device)}: ${m.msg}`);
      else if (m.type === 'ready') onReady?.(m.threadCpuUs);
      else if (m.type === 'stats' || m.type === 'closed') {
        this.lastStats = m.stats;
        if (m.type === 'closed') this.ended = true;
        this.statsWaiters.splice(0).forEach((w) => w(m.stats));
      } else if (m.type === 'configured') {
        const w = this.configureWaiters.get(m.device)?.shift();
        if (m.error === undefined) w?.resolve();
        else w?.reject(new Error(m.error));
      }
    };
    port1.on('message', onMessage);
    worker.on('error', (err) => log(`${this.devices.map((d) => d.spec.kind).join('+')}: worker error: ${err.stack ?? err.message}`));
    worker.on('exit', () => {
      // Messages the worker posted just before ending may still be queued.
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) onMessage(m.message as WorkerToMain);
      port1.close();
      this.end();
    });
    // Idle workers must not keep `husk` alive on their own.
    worker.unref();
    port1.unref();
  }

  /** The worker is gone (or will never run): release what the main thread owns. */
  private end(): void {
    if (this.closedDone) return;
    this.closedDone = true;
    this.ended = true;
    closeFd(this.controlFd); // owned here, so a late tell() never hits a reused fd number
    if (!this.port) this.listenFds.forEach(closeFd); // a started worker closes its own
    this.statsWaiters.splice(0).forEach((w) => w(this.lastStats));
    for (const list of this.configureWaiters.values()) list.splice(0).forEach((w) => w.reject(new Error('the device worker is gone')));
    this.closedResolve(this.lastStats);
  }

  private tell(msg: MainToWorker): boolean {
    if (this.ended || !this.port) return false;
    this.port.postMessage(msg);
    eventfdSignal(this.controlFd);
    return true;
  }

  /** The devices' counters (e.g. FUSE opcodes served), in attachment order. */
  stats(): Promise<Stats[]> {
    if (this.ended || !this.port) return Promise.resolve(this.lastStats);
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve);
      this.tell({ type: 'stats' });
    });
  }

  /**
   * Late configuration of device `index` (in attachment order): a deferred
   * fs device's root or exports, a net device's passt socket. Rejects with
   * the device's reason when it refuses, or when the worker is gone or not
   * started; a net device owns the fd only once this resolved.
   */
  configure(index: number, config: DeviceLateConfig): Promise<void> {
    if (!Number.isInteger(index) || index < 0 || index >= this.devices.length) {
      return Promise.reject(new Error(`no device ${index} in this host`));
    }
    if (this.ended || !this.port) return Promise.reject(new Error('the device worker is not running'));
    const w = Promise.withResolvers<void>();
    const list = this.configureWaiters.get(index) ?? [];
    list.push(w);
    this.configureWaiters.set(index, list);
    this.tell({ type: 'configure', device: index, config });
    return w.promise;
  }

  async stop(): Promise<Stats[]> {
    if (!this.port) this.end(); // not started yet: it never will
    else this.tell({ type: 'stop' });
    return this.closed;
  }
}
