// Worker thread that serves one or more virtio devices, each over
// vhost-user (tcg: QEMU connects to its socket) or over the kvm engine's
// in-process virtio-mmio transport. It blocks in epoll_wait on the sockets,
// the queues' kick eventfds and the devices' own fds; the main thread wakes
// it through `controlFd`. Every device in one worker shares its thread: a
// worker costs a V8 isolate (~20 ms of CPU to start), so the kvm engine
// hosts all its devices in one. A prestarted worker (worker-pool.ts) loads
// its device's code first and then gets its device from DeviceHost.
import { parentPort, workerData, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Poller, EPOLLIN, closeFd, eventfdDrain } from '../../sys/io.js';
import { acceptUnix } from '../../sys/unix-socket.js';
import { VhostUserBackend } from './backend.js';
import { createDevice, loadDeviceCode, type DeviceLateConfig, type DeviceSpec } from '../devices/factory.js';
import { MmioBackend, type MmioWorkerTransport } from '../virtio/mmio-backend.js';
import { threadCpuUs } from '../../sys/cpu-clock.js';

export interface HostedDevice {
  spec: DeviceSpec;
  /** vhost-user listening socket, or -1 with `mmio` (kvm engine: in-process virtio-mmio) */
  listenFd: number;
  mmio?: MmioWorkerTransport;
}

export interface DeviceWorkerData {
  devices: HostedDevice[];
  controlFd: number;
  port: MessagePort;
}

export type WorkerToMain =
  /** `device`: index into DeviceWorkerData.devices */
  | { type: 'log'; device: number; msg: string }
  | { type: 'stats'; stats: Record<string, number>[] }
  | { type: 'connected'; device: number }
  /** every device has published itself (virtio-mmio) or listens (vhost-user); `threadCpuUs`: this thread's CPU so far */
  | { type: 'ready'; threadCpuUs: number }
  | { type: 'closed'; stats: Record<string, number>[] }
  /** answer to `configure` (in order per device); `error`: refused, nothing changed */
  | { type: 'configured'; device: number; error?: string };
export type MainToWorker =
  | { type: 'stats' }
  | { type: 'stop' }
  /** late configuration of device `device` (index into DeviceWorkerData.devices) */
  | { type: 'configure'; device: number; config: DeviceLateConfig };

const prestart = (workerData as { prestart?: DeviceSpec['kind'] } | undefined)?.prestart;
const data: DeviceWorkerData = prestart
  ? (await Promise.all([
    new Promise<DeviceWorkerData>((resolve) => parentPort!.once('message', resolve)),
    loadDeviceCode(prestart),
  ]))[0]
  : workerData as DeviceWorkerData;
const port = data.port;
const post = (m: WorkerToMain) => port.postMessage(m);

const poller = new Poller();
let running = true;
/** vhost-user devices whose frontend has not gone yet: the worker ends when none is left */
let open = data.devices.length;

const devices = await Promise.all(data.devices.map((d) => createDevice(d.spec)));
const hosted = data.devices.map((d, index) => {
  const log = (msg: string) => post({ type: 'log', device: index, msg });
  const device = devices[index]!;
  const h = { device, backend: undefined as VhostUserBackend | MmioBackend | undefined, listening: !d.mmio, listenFd: d.listenFd };
  if (d.mmio) {
    h.backend = new MmioBackend(d.mmio, device, poller, log);
  } else {
    poller.add(d.listenFd, EPOLLIN, () => {
      const fd = acceptUnix(d.listenFd);
      poller.remove(d.listenFd);
      closeFd(d.listenFd);
      h.listening = false;
      const backend = new VhostUserBackend(fd, device, poller, log);
      backend.onClose = () => { if (--open === 0) running = false; };
      h.backend = backend;
      post({ type: 'connected', device: index });
    });
  }
  return h;
});
const stats = () => hosted.map((h) => h.device.stats());

/** Applies a late configuration; returns why it was refused, or undefined. */
function configure(index: number, config: DeviceLateConfig): string | undefined {
  const h = hosted[index];
  const spec = data.devices[index]?.spec;
  if (!h || !spec) return `no device ${index}`;
  if (config.kind !== spec.kind) return `device ${index} is ${spec.kind}, not ${config.kind}`;
  if (!h.device.configure) return `a ${spec.kind} device takes no configuration`;
  try {
    h.device.configure(config);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

poller.add(data.controlFd, EPOLLIN, () => {
  eventfdDrain(data.controlFd);
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
    const msg = m.message as MainToWorker;
    if (msg.type === 'stats') post({ type: 'stats', stats: stats() });
    else if (msg.type === 'stop') running = false;
    else if (msg.type === 'configure') {
      const error = configure(msg.device, msg.config);
      post({ type: 'configured', device: msg.device, ...(error !== undefined ? { error } : {}) });
    }
  }
});

post({ type: 'ready', threadCpuUs: threadCpuUs() });

try {
  while (running) poller.poll(-1);
} catch (err) {
  post({ type: 'log', device: -1, msg: `device worker failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}` });
} finally {
  for (const h of hosted) {
    h.backend?.close('device stopped');
    if (h.listening) closeFd(h.listenFd);
  }
  const final = stats();
  hosted.forEach((h) => h.device.close());
  poller.close();
  post({ type: 'closed', stats: final });
  port.close();
  parentPort?.close();
}
