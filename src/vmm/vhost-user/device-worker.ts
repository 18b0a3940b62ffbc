// Worker thread that serves one virtio device over vhost-user. It blocks in
// epoll_wait on the vhost-user socket, the queues' kick eventfds and the
// device's own fds; the main thread wakes it through `controlFd`.
import { parentPort, workerData, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { Poller, EPOLLIN, closeFd, eventfdDrain } from '../../sys/io.js';
import { acceptUnix } from '../../sys/unix-socket.js';
import { VhostUserBackend } from './backend.js';
import { createDevice, loadDeviceCode, type DeviceSpec } from '../devices/factory.js';
import { MmioBackend, type MmioWorkerTransport } from '../virtio/mmio-backend.js';

export interface DeviceWorkerData {
  spec: DeviceSpec;
  /** vhost-user listening socket, or -1 with `mmio` (kvm engine: in-process virtio-mmio) */
  listenFd: number;
  mmio?: MmioWorkerTransport;
  controlFd: number;
  port: MessagePort;
}

export type WorkerToMain =
  | { type: 'log'; msg: string }
  | { type: 'stats'; stats: Record<string, number> }
  | { type: 'connected' }
  | { type: 'closed'; stats: Record<string, number> };
export type MainToWorker = { type: 'stats' } | { type: 'stop' };

// A prestarted worker (worker-pool.ts) loads its device's code, then gets its device from DeviceHost.
const prestart = (workerData as { prestart?: DeviceSpec['kind'] } | undefined)?.prestart;
const data: DeviceWorkerData = prestart
  ? (await Promise.all([
    new Promise<DeviceWorkerData>((resolve) => parentPort!.once('message', resolve)),
    loadDeviceCode(prestart),
  ]))[0]
  : workerData as DeviceWorkerData;
const port = data.port;
const post = (m: WorkerToMain) => port.postMessage(m);
const log = (msg: string) => post({ type: 'log', msg });

const poller = new Poller();
const device = await createDevice(data.spec);
let running = true;
let backend: VhostUserBackend | MmioBackend | undefined;
let listening = !data.mmio;

if (data.mmio) backend = new MmioBackend(data.mmio, device, poller, log);
else poller.add(data.listenFd, EPOLLIN, () => {
  const fd = acceptUnix(data.listenFd);
  poller.remove(data.listenFd);
  closeFd(data.listenFd);
  listening = false;
  backend = new VhostUserBackend(fd, device, poller, log);
  backend.onClose = () => { running = false; };
  post({ type: 'connected' });
});

poller.add(data.controlFd, EPOLLIN, () => {
  eventfdDrain(data.controlFd);
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
    const msg = m.message as MainToWorker;
    if (msg.type === 'stats') post({ type: 'stats', stats: device.stats() });
    else if (msg.type === 'stop') running = false;
  }
});

try {
  while (running) poller.poll(-1);
} catch (err) {
  log(`device worker failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}`);
} finally {
  backend?.close('device stopped');
  if (listening) closeFd(data.listenFd);
  const stats = device.stats();
  device.close();
  poller.close();
  post({ type: 'closed', stats });
  port.close();
  parentPort?.close();
}
