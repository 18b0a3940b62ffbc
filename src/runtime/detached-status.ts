// A detached husk process (the VMM behind `create`, the exec shim behind
// `exec --detach`) reports one JSON line on an extra pipe once its work has
// started or failed; the caller returns only after that line.
import type { ChildProcess } from 'node:child_process';

/**
 * Waits for the status line on the child's stdio[fd]. On success the child is
 * let go (unref'd, pipe closed) and undefined returned; on failure, once the
 * child has exited, its error is returned: `died` when it never reported,
 * `failed` when it reported a failure without a message.
 */
export async function awaitDetachedStatus(child: ChildProcess, fd: number, died: string, failed: string): Promise<string | undefined> {
  const pipe = child.stdio[fd]!;
  const status = await new Promise<{ ok: boolean; error?: string }>((resolve) => {
    let buf = '';
    pipe.on('data', (d: Buffer) => { buf += d.toString(); });
    pipe.on('error', () => {});
    pipe.on('close', () => {
      try { resolve(JSON.parse(buf.split('\n')[0]!)); } catch { resolve({ ok: false, error: died }); }
    });
  });
  if (!status.ok) {
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    return status.error ?? failed;
  }
  child.unref();
  (pipe as unknown as { destroy(): void }).destroy();
  return undefined;
}
