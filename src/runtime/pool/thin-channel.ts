// The line protocol between a pooled VMM and the thin process that stands
// for its container (the pid clients know): one JSON object per line over
// a socketpair that `create` made.
//   pooled VMM -> thin: { t: 'mntns', pid }  join that process's mount namespace, then ack
//                       { t: 'exit', status } exit with it
//   thin -> pooled VMM: { t: 'signal', signo } a signal the thin process got
//                       { t: 'ack' }
import type net from 'node:net';

/** Signals the container's pid relays to the container (the VMM's own list too). */
export const RELAYED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'];

export type ToThin = { t: 'mntns'; pid: number } | { t: 'exit'; status: number };
export type FromThin = { t: 'signal'; signo: number } | { t: 'ack' };

/** Calls `onMessage` for each well-formed line; anything else is ignored (the peer is ours, but a line may be cut by a crash). */
export function readLines<T>(sock: net.Socket, onMessage: (m: T) => void): void {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    buf += d;
    if (buf.length > 1 << 16) buf = ''; // nothing of ours is this long
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try { onMessage(JSON.parse(line) as T); } catch { /* not a message */ }
    }
  });
}

export function sendLine(sock: net.Socket, m: ToThin | FromThin): void {
  if (!sock.destroyed) sock.write(JSON.stringify(m) + '\n');
}
