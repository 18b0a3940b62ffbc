// The thin process (`husk vmm-thin ID`) that stands for a container served
// by a pooled VMM. `create` starts it, so it is the descendant that clients
// (conmon, containerd's shim) reap: its pid goes into the pid file and the
// state, it exits with the container's exit status, and signals sent to it
// reach the container. Like a VMM of its own, it sits in the container's
// network namespace (`--network container:ID` and pods name
// /proc/PID/ns/net) and, once the container has started, in the mount
// namespace holding the container's view (podman cp and top join it).
// Everything is loaded up front: after joining that mount namespace, its
// root is the container's.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { joinNetworkNamespace } from '../../sys/namespace.js';
import { joinMountNamespaceOf } from '../../sys/mount.js';
import { RELAYED, readLines, sendLine, type ToThin } from './thin-channel.js';

/** The channel to the pooled VMM: create hands it over as fd 3. */
export const THIN_CHANNEL_FD = 3;

export function thinVmm(o: { netns?: string }): Promise<never> {
  if (o.netns) joinNetworkNamespace(o.netns);
  const sock = new net.Socket({ fd: THIN_CHANNEL_FD, readable: true, writable: true });
  sock.on('error', () => {});
  for (const sig of RELAYED) process.on(sig, () => sendLine(sock, { t: 'signal', signo: os.constants.signals[sig] }));
  readLines<ToThin>(sock, (m) => {
    if (m.t === 'mntns' && Number.isInteger(m.pid)) {
      try {
        joinMountNamespaceOf(m.pid, (p) => fs.openSync(p, 'r'), fs.closeSync);
      } catch { /* the container view stays out of reach; nothing else depends on it */ }
      sendLine(sock, { t: 'ack' });
    } else if (m.t === 'exit' && Number.isInteger(m.status)) {
      process.exit(m.status & 0xff);
    }
  });
  // The pooled VMM went away without an exit status: the container is lost.
  sock.on('close', () => process.exit(255));
  return new Promise<never>(() => {});
}
