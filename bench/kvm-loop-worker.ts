// bench/kvm's TypeScript loop in a worker thread, where the engine runs each
// vCPU (vcpu-worker.ts): each message is a run length, the reply its ns per exit.
import { parentPort } from 'node:worker_threads';
import { loopGuest } from './kvm-guest.js';

const guest = loopGuest();
parentPort!.on('message', (n: number) => {
  if (n < 0) { guest.close(); parentPort!.close(); return; }
  parentPort!.postMessage(guest.run(n));
});
