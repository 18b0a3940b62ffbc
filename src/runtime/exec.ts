// `husk exec` and `husk ps`: runc's semantics on top of the VMM daemon's
// exec requests (exec-server.ts) and the agent's PS.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Process, Spec } from '../oci/spec.js';
import { containerDir, readState, type ContainerState } from './state.js';
import { controlRequest, controlSocketPath, type ExecRequest } from './control.js';
import { execRelay } from './exec-client.js';
import { writePidFile } from './pidfile.js';
import { awaitDetachedStatus } from './detached-status.js';
import type { PsEntry } from '../agent/client.js';

export class ExecError extends Error {}

export interface ExecOptions {
  root: string;
  id: string;
  args: string[];
  processFile?: string;
  detach: boolean;
  pidFile?: string;
  tty: boolean;
  consoleSocket?: string;
  env: string[];
  cwd?: string;
  user?: string;
  additionalGids: number[];
  caps: string[];
  noNewPrivs: boolean;
  preserveFds: number;
  debug: boolean;
}

function runningState(root: string, id: string): ContainerState {
  const st = readState(root, id);
  if (st.status === 'stopped') throw new ExecError('cannot exec in a stopped container');
  if (st.status === 'creating') throw new ExecError('cannot exec in a container that is being created');
  return st;
}

function parseUser(u: string): { uid: number; gid?: number } {
  const m = /^(\d+)(?::(\d+))?$/.exec(u);
  if (!m) throw new ExecError(`invalid user ${JSON.stringify(u)}: only numeric uid[:gid] is supported (the user database is inside the VM)`);
  return { uid: Number(m[1]), gid: m[2] === undefined ? undefined : Number(m[2]) };
}

/** The process to run, built like runc's: a --process file as is, else the container's process with the flags applied. */
export function execProcess(o: ExecOptions, st: ContainerState): Process {
  let p: Process;
  if (o.processFile) {
    let text: string;
    try {
      text = fs.readFileSync(path.resolve(o.processFile), 'utf8');
    } catch (e) {
      throw new ExecError(`open ${o.processFile}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`);
    }
    try {
      p = JSON.parse(text) as Process;
    } catch (e) {
      throw new ExecError((e as Error).message);
    }
    if (!p || typeof p !== 'object' || Array.isArray(p)) throw new ExecError('process must be a JSON object');
  } else {
    let spec: Spec;
    try {
      spec = JSON.parse(fs.readFileSync(path.join(containerDir(o.root, o.id), 'config.json'), 'utf8')) as Spec;
    } catch (e) {
      throw new ExecError(`reading the container's config: ${(e as Error).message}`);
    }
    const base = spec.process ?? { cwd: '/', user: { uid: 0, gid: 0 } };
    p = { ...base, user: { ...base.user }, args: o.args, terminal: o.tty };
    delete p.consoleSize;
    if (o.env.length) p.env = [...(base.env ?? []), ...o.env];
    if (o.cwd) p.cwd = o.cwd;
    if (o.user) {
      const u = parseUser(o.user);
      p.user.uid = u.uid;
      if (u.gid !== undefined) p.user.gid = u.gid;
    }
    if (o.additionalGids.length) p.user.additionalGids = [...(p.user.additionalGids ?? []), ...o.additionalGids];
    if (o.noNewPrivs) p.noNewPrivileges = true;
    if (o.caps.length && p.capabilities) {
      const c = p.capabilities;
      for (const k of ['bounding', 'effective', 'permitted', 'ambient'] as const) c[k] = [...new Set([...(c[k] ?? []), ...o.caps])];
    }
  }
  if (typeof p.cwd !== 'string' || p.cwd === '') throw new ExecError('Cwd property must not be empty');
  if (!p.cwd.startsWith('/')) throw new ExecError('Cwd must be an absolute path');
  if (!Array.isArray(p.args) || p.args.length === 0) throw new ExecError('process args cannot be empty');
  if (p.args.some((a) => typeof a !== 'string') || (p.env ?? []).some((e) => typeof e !== 'string')) throw new ExecError('process args and env must be strings');
  if (!p.user || typeof p.user !== 'object') p.user = { uid: 0, gid: 0 };
  if (!Number.isInteger(p.user.uid) || !Number.isInteger(p.user.gid) || p.user.uid < 0 || p.user.gid < 0) throw new ExecError('process user uid and gid must be non-negative integers');
  void st;
  return p;
}

export async function exec(o: ExecOptions): Promise<number> {
  const st = runningState(o.root, o.id);
  const proc = execProcess(o, st);
  if (proc.terminal && o.detach && !o.consoleSocket) throw new ExecError('cannot allocate tty if husk will detach without setting console socket');
  if (!proc.terminal && o.consoleSocket) throw new ExecError('cannot use console socket if husk will not detach or allocate tty');
  const request: ExecRequest = { op: 'exec', process: proc, extraFds: o.preserveFds };
  const socketPath = controlSocketPath(st.husk.socketDir);

  if (!o.detach) {
    return execRelay({
      socketPath, request, consoleSocket: o.consoleSocket,
      onStarted: () => { if (o.pidFile) writePidFile(o.pidFile, process.pid); },
    });
  }
  // Detached: a process that outlives us holds the streams and exits with the status.
  const { projectRoot } = await import('../vmm/assets.js');
  const args = ['--no-warnings', path.join(projectRoot(), 'bin/husk.js'), '--root', path.resolve(o.root), 'exec-shim', o.id];
  if (o.consoleSocket) args.push('--console-socket', path.resolve(o.consoleSocket));
  const extra = Array.from({ length: o.preserveFds }, (_, i) => 3 + i);
  const child = spawn(process.execPath, args, {
    detached: true,
    // With a terminal the process's stdio is the pty: the shim keeps none of ours (a caller may wait for EOF on them).
    stdio: [...(proc.terminal ? ['ignore', 'ignore', 'ignore'] as const : ['inherit', 'inherit', 'inherit'] as const), ...extra, 'pipe'],
    env: { ...process.env, HUSK_EXEC_REQUEST: JSON.stringify(request), HUSK_EXEC_STATUS_FD: String(3 + o.preserveFds) },
  });
  const failed = await awaitDetachedStatus(child, 3 + o.preserveFds, 'the exec process died before the process started', 'exec failed');
  if (failed) throw new ExecError(failed);
  if (o.pidFile) writePidFile(o.pidFile, child.pid!);
  return 0;
}

/** The detached exec process (hidden verb `exec-shim`). */
export async function execShim(root: string, id: string, consoleSocket: string | undefined): Promise<number> {
  const statusFd = Number(process.env.HUSK_EXEC_STATUS_FD);
  const request = JSON.parse(process.env.HUSK_EXEC_REQUEST ?? '{}') as ExecRequest;
  delete process.env.HUSK_EXEC_REQUEST;
  delete process.env.HUSK_EXEC_STATUS_FD;
  const report = (v: { ok: boolean; error?: string }) => {
    try { fs.writeSync(statusFd, JSON.stringify(v) + '\n'); fs.closeSync(statusFd); } catch { /* exec went away */ }
  };
  try {
    const st = runningState(root, id);
    return await execRelay({ socketPath: controlSocketPath(st.husk.socketDir), request, consoleSocket, onStarted: () => report({ ok: true }) });
  } catch (e) {
    report({ ok: false, error: (e as Error).message });
    return 255;
  }
}

/** The container's processes (pids of its pid namespace in the guest). */
export async function ps(root: string, id: string): Promise<PsEntry[]> {
  const st = readState(root, id);
  if (st.status === 'stopped') throw new ExecError('cannot ps a container that has stopped');
  const reply = await controlRequest(controlSocketPath(st.husk.socketDir), { op: 'ps' });
  if (!reply.ok) throw new ExecError(reply.error);
  return reply.processes as PsEntry[];
}
