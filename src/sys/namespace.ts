// Joining a network namespace (setns(2)), which Node lacks. A network
// namespace belongs to a thread, not a process: this moves the calling thread
// only. Called on the main thread, it is the namespace /proc/PID/ns/net names,
// and the one child processes spawned from that thread start in.
import fs from 'node:fs';
import { libc, check } from './libc.js';

const c_setns = libc.func('int setns(int fd, int nstype)');
const CLONE_NEWNET = 0x40000000;

export function joinNetworkNamespace(nsPath: string): void {
  const fd = fs.openSync(nsPath, 'r');
  try {
    check('setns', c_setns(fd, CLONE_NEWNET));
  } finally {
    fs.closeSync(fd);
  }
}
