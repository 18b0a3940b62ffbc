// Joining a network namespace (setns(2)), which Node lacks. A network
// namespace belongs to a thread, not a process: this moves the calling thread
// only. Called on the main thread, it is the namespace /proc/PID/ns/net names,
// and the one child processes spawned from that thread start in.
import fs from 'node:fs';
import { libc, check } from './libc.js';

const c_setns = libc.func('int setns(int fd, int nstype)');
const CLONE_NEWNET = 0x40000000;

/** The namespace this thread was in before its first join (an fd), kept to spawn there. */
let startingNamespace: number | undefined;

function setns(fd: number): void {
  check('setns', c_setns(fd, CLONE_NEWNET));
}

export function joinNetworkNamespace(nsPath: string): void {
  const fd = fs.openSync(nsPath, 'r');
  try {
    const before = startingNamespace ?? fs.openSync('/proc/thread-self/ns/net', 'r');
    setns(fd);
    startingNamespace = before;
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs `f` with this thread in the namespace `fd` refers to, then returns it to the one it is in now. */
function inNamespaceFd<T>(fd: number, f: () => T): T {
  const current = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    setns(fd);
    try {
      return f();
    } finally {
      setns(current);
    }
  } finally {
    fs.closeSync(current);
  }
}

/**
 * Runs `f` back in the namespace this thread started in, then returns to the
 * one it is in now. For spawning children that belong to the runtime's side,
 * not the container's (Node forks a child from the calling thread).
 */
export function inStartingNetworkNamespace<T>(f: () => T): T {
  return startingNamespace === undefined ? f() : inNamespaceFd(startingNamespace, f);
}

/** Runs `f` in the network namespace `nsPath` names, then returns this thread to the one it is in now. */
export function inNetworkNamespace<T>(nsPath: string, f: () => T): T {
  const target = fs.openSync(nsPath, 'r');
  try {
    return inNamespaceFd(target, f);
  } finally {
    fs.closeSync(target);
  }
}
