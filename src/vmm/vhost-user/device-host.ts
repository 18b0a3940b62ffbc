// Main-thread handle on a device worker: creates the listening vhost-user
// socket (so QEMU can connect as soon as it starts), runs the device in a
// worker thread, and relays its log and statistics.
import { Worker, MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { takePrestartedWorker, workerScript } from './worker-pool.js';
import { listenUnix } from '../../sys/unix-socket.js';
import { closeFd, eventfd, eventfdSignal } from '../../sys/io.js';
import type { DeviceSpec } from '../devices/factory.js';
import type { MainToWorker, WorkerToMain } from './device-worker.js';
import type { MmioWorkerTransport } from '../virtio/mmio-backend.js';


export class DeviceHost {
  /** the vhost-user socket ('' for a virtio-mmio device of the kvm engine) */
  readonly socketPath: string;
  readonly spec: DeviceSpec;
  private readonly worker: Worker;
  private readonly port: import('node:worker_threads').MessagePort;
  private readonly controlFd: number;
  private statsWaiters: ((s: Record<string, number>) => void)[] = [];
  private lastStats: Record<string, number> = {};
  private ended = false;
  /** Resolves with the device's final statistics when the worker has stopped. */
  readonly closed: Promise<Record<string, number>>;

  /** `transport`: a vhost-user socket path to listen on, or the kvm engine's virtio-mmio wiring. */
  constructor(spec: DeviceSpec, transport: string | MmioWorkerTransport, log: (msg: string) => void) {
    this.spec = spec;
    const mmio = typeof transport === 'string' ? undefined : transport;
    this.socketPath = mmio ? '' : transport as string;
    const listenFd = mmio ? -1 : listenUnix(this.socketPath, 1);
    this.controlFd = eventfd();
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const closed = Promise.withResolvers<Record<string, number>>();
    this.closed = closed.promise;
    const data = { spec, listenFd, mmio, controlFd: this.controlFd, port: port2 };
    const started = takePrestartedWorker(spec.kind);
    if (started) started.postMessage(data, [port2]);
    this.worker = started ?? new Worker(workerScript(), { workerData: data, transferList: [port2], stdout: false, stderr: false });
    const onMessage = (m: WorkerToMain) => {
      if (m.type === 'log') log(`${spec.kind}: ${m.msg}`);
      else if (m.type === 'stats') {
        this.lastStats = m.stats;
        this.statsWaiters.splice(0).forEach((w) => w(m.stats));
      } else if (m.type === 'closed') {
        this.lastStats = m.stats;
        this.ended = true;
        this.statsWaiters.splice(0).forEach((w) => w(m.stats));
      }
    };
    port1.on('message', onMessage);
    this.worker.on('error', (err) => log(`${spec.kind}: worker error: ${err.stack ?? err.message}`));
    this.worker.on('exit', () => {
      // Messages the worker posted just before ending may still be queued.
      for (let m = receiveMessageOnPort(port1); m; m = receiveMessageOnPort(port1)) onMessage(m.message as WorkerToMain);
      this.ended = true;
      closeFd(this.controlFd); // owned here, so a late tell() never hits a reused fd number
      port1.close();
      closed.resolve(this.lastStats);
    });
    // Idle workers must not keep `husk` alive on their own.
    this.worker.unref();
    port1.unref();
  }

  private tell(msg: MainToWorker): void {
    if (this.ended) return;
    this.port.postMessage(msg);
    eventfdSignal(this.controlFd);
  }

  /** The device's counters (e.g. FUSE opcodes served). */
  stats(): Promise<Record<string, number>> {
    if (this.ended) return Promise.resolve(this.lastStats);
    return new Promise((resolve) => {
      this.statsWaiters.push(resolve);
      this.tell({ type: 'stats' });
    });
  }

  async stop(): Promise<Record<string, number>> {
    this.tell({ type: 'stop' });
    return this.closed;
  }
}
