// OCI lifecycle hooks, run on the host with the container state on stdin,
// at runc's points: prestart/createRuntime/createContainer during create,
// startContainer/poststart during start, poststop during delete.
import { spawn } from 'node:child_process';
import type { Hook, Hooks } from '../oci/spec.js';

export class HookError extends Error {}

export type HookPhase = keyof Hooks;

function runHook(phase: HookPhase, hook: Hook, stateJson: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const [argv0, ...rest] = hook.args && hook.args.length ? hook.args : [hook.path];
    const child = spawn(hook.path, rest, {
      argv0,
      env: Object.fromEntries((hook.env ?? []).map((e) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
      })),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => { if (stderr.length < 4096) stderr += d.toString(); });
    child.stdin!.on('error', () => {});
    child.stdin!.end(stateJson);
    const timer = hook.timeout && hook.timeout > 0
      ? setTimeout(() => { child.kill('SIGKILL'); reject(new HookError(`${phase} hook ${hook.path} timed out after ${hook.timeout}s`)); }, hook.timeout * 1000)
      : undefined;
    child.on('error', (err) => { if (timer) clearTimeout(timer); reject(new HookError(`${phase} hook ${hook.path}: ${err.message}`)); });
    child.on('exit', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 0) return resolve();
      const why = signal ? `killed by ${signal}` : `exit status ${code}`;
      reject(new HookError(`${phase} hook ${hook.path} failed (${why})${stderr ? `: ${stderr.trim().split('\n')[0]}` : ''}`));
    });
  });
}

/** Runs the hooks of one phase in order; the first failure stops them and throws. */
export async function runHooks(hooks: Hooks | undefined, phase: HookPhase, state: unknown): Promise<void> {
  const list = hooks?.[phase] ?? [];
  const json = JSON.stringify(state);
  for (const h of list) await runHook(phase, h, json);
}
