// Device workers started ahead of need. A worker's start-up (a new isolate
// loading koffi and its device's code) is on the boot path: QEMU waits for
// every vhost-user backend before it runs the guest. The VMM process starts
// the workers it expects to need first thing, so that start-up overlaps its
// own loading; DeviceHost then hands each one its device (see device-worker.ts).
import { Worker } from 'node:worker_threads';
import path from 'node:path';
import { projectRoot } from '../assets.js';
import type { DeviceSpec } from '../devices/factory.js';

export type DeviceKind = DeviceSpec['kind'];

/** The compiled worker script (tests that load this module from src/ still run the built worker). */
export function workerScript(): URL | string {
  if (import.meta.url.endsWith('.js')) return new URL('./device-worker.js', import.meta.url);
  return path.join(projectRoot(), 'dist/src/vmm/vhost-user/device-worker.js');
}

interface Waiting { worker: Worker; dead: boolean }
const waiting = new Map<DeviceKind, Waiting[]>();

/** Starts one idle worker per entry of `kinds`; each loads its device's code and waits for its device. */
export function prestartDeviceWorkers(kinds: DeviceKind[]): void {
  for (const kind of kinds) {
    const worker = new Worker(workerScript(), { workerData: { prestart: kind }, stdout: false, stderr: false });
    const w: Waiting = { worker, dead: false };
    // A worker that fails before it is used is only a lost head start: DeviceHost starts a fresh one.
    worker.on('error', () => { w.dead = true; });
    worker.on('exit', () => { w.dead = true; });
    worker.unref();
    const list = waiting.get(kind) ?? [];
    list.push(w);
    waiting.set(kind, list);
  }
}

/** A started, still idle worker for `kind` (it is no longer handed out), or undefined. */
export function takePrestartedWorker(kind: DeviceKind): Worker | undefined {
  const list = waiting.get(kind) ?? [];
  for (let w = list.shift(); w; w = list.shift()) {
    if (w.dead) continue;
    w.worker.removeAllListeners();
    return w.worker;
  }
  return undefined;
}

/** Ends the workers nobody took (the VM needed fewer devices than guessed). */
export function releasePrestartedWorkers(): void {
  for (const list of waiting.values()) for (const w of list.splice(0)) void w.worker.terminate();
}
