// OCI lifecycle hooks, run on the host with the container state on stdin,
// at runc's points: prestart/createRuntime/createContainer during create,
// startContainer/poststart during start, poststop during delete.
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import type { Hook, Hooks } from '../oci/spec.js';
import type { AgentConnection } from '../agent/client.js';

export class HookError extends Error {}

export type HookPhase = keyof Hooks;

type SpawnIn = <T>(f: () => T) => T;

function runHook(phase: HookPhase, hook: Hook, stateJson: string, spawnIn: SpawnIn): Promise<void> {
  return new Promise((resolve, reject) => {
    const [argv0, ...rest] = hook.args && hook.args.length ? hook.args : [hook.path];
    // The VMM sits in the container's network namespace; hooks run in the runtime's, as with runc.
    const child = spawnIn(() => spawn(hook.path, rest, {
      argv0,
      env: Object.fromEntries((hook.env ?? []).map((e) => {
        const i = e.indexOf('=');
        return i < 0 ? [e, ''] : [e.slice(0, i), e.slice(i + 1)];
      })),
      stdio: ['pipe', 'ignore', 'pipe'],
    }));
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

/**
 * Runs the hooks of one phase in order. Without `warn`, the first failure
 * stops them and throws; with it (poststart, poststop: failures are only
 * warnings in the runtime spec) each failure is reported and the rest still run.
 */
export async function runHooks(hooks: Hooks | undefined, phase: HookPhase, state: unknown, warn?: (msg: string) => void): Promise<void> {
  const list = hooks?.[phase] ?? [];
  if (!list.length) return;
  const json = JSON.stringify(state);
  // (loaded here: verbs without hooks never load the native-call layer for it)
  const { inStartingNetworkNamespace } = await import('../sys/namespace.js');
  for (const h of list) {
    try {
      await runHook(phase, h, json, inStartingNetworkNamespace);
    } catch (err) {
      if (!warn) throw err;
      warn((err as Error).message);
    }
  }
}

/** The hooks of create, in runc's order, while the process waits; the first failure fails create. */
export async function runCreateHooks(hooks: Hooks | undefined, state: unknown): Promise<void> {
  for (const phase of ['prestart', 'createRuntime', 'createContainer'] as const) await runHooks(hooks, phase, state);
}

/**
 * startContainer hooks run in the container (runtime spec: their path
 * resolves in the container namespace), so inside the guest, through the
 * agent, with the state on stdin. argv[0] is the hook's path.
 */
export async function runGuestHooks(agent: AgentConnection, hooks: Hooks | undefined, phase: HookPhase, state: unknown): Promise<void> {
  const json = new TextEncoder().encode(JSON.stringify(state));
  for (const hook of hooks?.[phase] ?? []) {
    let stderr = '';
    const errSink = new Writable({ write(chunk: Buffer, _e, cb) { if (stderr.length < 4096) stderr += chunk.toString(); cb(); } });
    const outSink = new Writable({ write(_c, _e, cb) { cb(); } });
    const proc = agent.run({ args: [hook.path, ...(hook.args ?? []).slice(1)], env: hook.env ?? [], cwd: '/', stdin: true }, outSink, errSink);
    try {
      await proc.started;
    } catch (err) {
      throw new HookError(`${phase} hook ${hook.path}: ${(err as Error).message}`);
    }
    proc.writeStdin(json);
    proc.closeStdin();
    let timedOut = false;
    const timer = hook.timeout && hook.timeout > 0 ? setTimeout(() => { timedOut = true; proc.signal(9); }, hook.timeout * 1000) : undefined;
    const exit = await proc.exited.finally(() => { if (timer) clearTimeout(timer); });
    if (timedOut) throw new HookError(`${phase} hook ${hook.path} timed out after ${hook.timeout}s`);
    if (exit.status !== 0) {
      throw new HookError(`${phase} hook ${hook.path} failed (exit status ${exit.status})${stderr ? `: ${stderr.trim().split('\n')[0]}` : ''}`);
    }
  }
}
