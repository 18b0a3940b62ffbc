// Relaying the caller's stdio to a process in the guest: shared by the
// foreground `run` and the VMM daemon behind `create`.
import type { RunningProcess } from '../agent/client.js';

/** Forwards our stdin (or `stdin`) to the process; EOF closes its stdin. */
export function forwardStdin(running: RunningProcess, stdin: NodeJS.ReadableStream = process.stdin): void {
  stdin.on('data', (d: Buffer) => { try { running.writeStdin(d); } catch { /* agent gone */ } });
  stdin.on('end', () => { try { running.closeStdin(); } catch { /* agent gone */ } });
  stdin.on('error', () => {});
}

/** Resolves once everything written to `stream` so far has been handed to the OS. */
export function flush(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}
