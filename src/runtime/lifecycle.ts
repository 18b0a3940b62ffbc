// The runc verbs on top of the state store and the VMM daemon. What only
// create needs is loaded in create: start, kill and delete run for every
// container and each pays its imports.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  OCI_VERSION, StateError, containerDir, createContainerDir, listContainerIds, publicState,
  readState, removeContainerDir, socketDirFor, stateFile, writeJsonAtomic, writeState, type ContainerState,
} from './state.js';
import { controlRequest, controlSocketPath, type ControlReply, type ControlRequest } from './control.js';
import { lockContainer } from './lock.js';
import { isSameProcessAlive } from '../sys/process.js';
import { runHooks } from './hooks.js';
import type { Spec } from '../oci/spec.js';
import { writePidFile } from './pidfile.js';

export class LifecycleError extends Error {}

export interface CreateOptions {
  root: string;
  id: string;
  bundle: string;
  pidFile?: string;
  consoleSocket?: string;
  debug: boolean;
  /** fds 3..3+n-1 are relayed to the container process (see fd-relay.ts) */
  preserveFds?: number;
}

/** Writes a pid file the way clients expect (now in pidfile.ts; kept here for callers). */
export { writePidFile };

export async function create(o: CreateOptions): Promise<void> {
  const [{ loadBundle }, { spawn }, { projectRoot }, { awaitDetachedStatus }, { readPoolConfig }] = await Promise.all([
    import('../oci/bundle.js'), import('node:child_process'), import('../vmm/assets.js'), import('./detached-status.js'), import('./pool/pool-store.js'),
  ]);
  const bundle = loadBundle(o.bundle);
  if (bundle.spec.process!.terminal && !o.consoleSocket) {
    throw new LifecycleError('cannot allocate tty if husk will detach without setting console socket');
  }
  if (!bundle.spec.process!.terminal && o.consoleSocket) {
    throw new LifecycleError('cannot use console socket if husk will not detach or allocate tty');
  }
  const dir = createContainerDir(o.root, o.id);
  const marker = path.join(dir, '.creating');
  fs.writeFileSync(marker, '');
  const lock = lockContainer(o.root, o.id);
  let ok = false;
  try {
    const st: ContainerState = {
      ociVersion: OCI_VERSION,
      id: o.id,
      pid: 0,
      status: 'creating',
      bundle: bundle.dir,
      rootfs: bundle.rootfs,
      created: new Date().toISOString(),
      owner: os.userInfo().username,
      annotations: bundle.spec.annotations ?? {},
      husk: { socketDir: socketDirFor(dir) },
    };
    writeState(dir, st);
    // The config as created: delete runs its poststop hooks even if the bundle is gone by then.
    writeJsonAtomic(path.join(dir, 'config.json'), bundle.spec);
    if (readPoolConfig(o.root).size > 0) {
      const { createOnPooledVm, PooledCreateError } = await import('./pool/claim-client.js');
      try {
        const pid = await createOnPooledVm({ root: o.root, id: o.id, spec: bundle.spec, consoleSocket: o.consoleSocket, debug: o.debug, preserveFds: o.preserveFds ?? 0 });
        if (pid !== undefined) {
          if (o.pidFile) writePidFile(o.pidFile, pid);
          ok = true;
          return;
        }
      } catch (err) {
        if (err instanceof PooledCreateError) throw new LifecycleError(err.message);
        throw err;
      }
    }
    // --no-warnings: Node's own warnings must never land on the container's stderr.
    const args = ['--no-warnings', path.join(projectRoot(), 'bin/husk.js'), '--root', path.resolve(o.root)];
    if (o.debug) args.push('--debug');
    args.push('vmm', o.id);
    if (o.consoleSocket) args.push('--console-socket', path.resolve(o.consoleSocket));
    const nfds = o.preserveFds ?? 0;
    if (nfds) args.push('--preserve-fds', String(nfds));
    // The daemon keeps our stdio (the container's) and preserved fds, and reports on fd 3+n.
    const extra = Array.from({ length: nfds }, (_, i) => 3 + i);
    const child = spawn(process.execPath, args, { detached: true, stdio: ['inherit', 'inherit', 'inherit', ...extra, 'pipe'] });
    const failed = await awaitDetachedStatus(child, 3 + nfds, 'the VMM process died while creating the container', 'create failed');
    if (failed) throw new LifecycleError(failed);
    if (o.pidFile) writePidFile(o.pidFile, child.pid!);
    ok = true;
  } finally {
    fs.rmSync(marker, { force: true });
    lock.release();
    if (!ok) {
      fs.rmSync(socketDirFor(dir), { recursive: true, force: true });
      removeContainerDir(dir);
    }
  }
}

/** One request to the container's VMM; a VMM that is gone reads like runc's `container not running`. */
export async function control(st: ContainerState, req: ControlRequest): Promise<ControlReply & { ok: true }> {
  let reply: ControlReply;
  try {
    reply = await controlRequest(controlSocketPath(st.husk.socketDir), req);
  } catch (err) {
    // The VMM exited between our state check and the request: say it like runc.
    if (!isSameProcessAlive(st.pid, st.husk.vmmStartTime)) throw new LifecycleError('container not running');
    throw err;
  }
  if (!reply.ok) throw new LifecycleError(reply.error);
  return reply;
}

export async function start(root: string, id: string): Promise<void> {
  const lock = lockContainer(root, id);
  try {
    const st = readState(root, id);
    if (st.status === 'stopped') throw new LifecycleError('cannot start a container that has stopped');
    if (st.status === 'paused') throw new LifecycleError('cannot start a container in the paused state');
    if (st.status !== 'created') throw new LifecycleError(`cannot start an already running container`);
    await control(st, { op: 'start' });
  } finally {
    lock.release();
  }
}

export function state(root: string, id: string): Record<string, unknown> {
  return publicState(readState(root, id));
}

export function parseSignal(sig: string): number {
  const s = sig.trim().toUpperCase();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n <= 64) return n;
  } else {
    const name = s.startsWith('SIG') ? s : `SIG${s}`;
    const n = (os.constants.signals as Record<string, number>)[name];
    if (n !== undefined) return n;
    const rt = /^SIGRTMIN(?:\+(\d+))?$/.exec(name) ?? /^SIGRTMAX(?:-(\d+))?$/.exec(name);
    if (rt) {
      const off = Number(rt[1] ?? 0);
      const v = name.startsWith('SIGRTMIN') ? 34 + off : 64 - off;
      if (v >= 34 && v <= 64) return v;
    }
  }
  throw new LifecycleError(`invalid signal: ${sig}`);
}

export async function kill(root: string, id: string, signal: string, all: boolean): Promise<void> {
  const signo = parseSignal(signal);
  const lock = lockContainer(root, id);
  try {
    const st = readState(root, id);
    if (st.status === 'stopped') throw new LifecycleError('container not running');
    await control(st, { op: 'kill', signal: signo, all });
  } finally {
    lock.release();
  }
}

/** Waits for the VMM process to exit; SIGKILLs it after `graceMs`. */
async function reapVmm(st: ContainerState, graceMs: number): Promise<void> {
  const deadline = Date.now() + graceMs;
  while (isSameProcessAlive(st.pid, st.husk.vmmStartTime)) {
    if (Date.now() > deadline) {
      try { process.kill(st.pid, 'SIGKILL'); } catch { /* gone */ }
      await new Promise((r) => setTimeout(r, 50));
      if (Date.now() > deadline + 5000) break;
      continue;
    }
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A pooled VM's VMM (not the pid clients know: that is its thin process) ends once its VM has. */
async function reapPooledVmm(st: ContainerState, graceMs: number): Promise<void> {
  const pid = st.husk.pooledVmmPid;
  if (!pid) return;
  await reapVmm({ ...st, pid, husk: { ...st.husk, vmmStartTime: st.husk.pooledVmmStartTime } }, graceMs);
}

/**
 * passt quits when its VMM's socket closes, and the VMM signals it on the way
 * out without waiting for it (closing its port sockets takes a while): wait
 * here, so that nothing is left once delete returns; SIGKILL after `graceMs`.
 */
async function reapPasst(st: ContainerState, graceMs: number): Promise<void> {
  const pid = st.husk.passtPid;
  if (!pid) return;
  const deadline = Date.now() + graceMs;
  while (isSameProcessAlive(pid, st.husk.passtStartTime)) {
    if (Date.now() > deadline) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
      if (Date.now() > deadline + 5000) break;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function del(root: string, id: string, force: boolean): Promise<void> {
  let lock;
  try {
    lock = lockContainer(root, id);
  } catch (err) {
    // runc: `delete --force` of a missing container is not an error.
    if (force && err instanceof StateError) return;
    throw err;
  }
  try {
    const st = readState(root, id);
    if (st.status === 'running' || st.status === 'paused') {
      if (!force) throw new LifecycleError(`cannot delete container ${id} that is not stopped: ${st.status}`);
    }
    if (st.status !== 'stopped') {
      try { await control(st, { op: 'kill', signal: 9, all: true }); } catch { /* the daemon may be wedged */ }
    }
    // A stopped container's VMM may still be tearing down (passt, sockets): let it finish.
    await reapVmm(st, 5000);
    await reapPooledVmm(st, 5000);
    await reapPasst(st, 2000);
    fs.rmSync(st.husk.socketDir, { recursive: true, force: true });
    // A pooled VMM removes its VM's sockets on the way out, unless it was killed.
    const pooled = st.husk.pooledSocketDir;
    if (pooled && path.dirname(pooled) === path.dirname(st.husk.socketDir)) fs.rmSync(pooled, { recursive: true, force: true });
    const dir = containerDir(root, id);
    await runPoststop(dir, { ...publicState(st), status: 'stopped' });
    fs.rmSync(stateFile(dir), { force: true });
    removeContainerDir(dir);
  } finally {
    lock.release();
  }
}

export function list(root: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const id of listContainerIds(root)) {
    try { out.push(publicState(readState(root, id))); } catch { /* deleted meanwhile */ }
  }
  return out;
}

async function runPoststop(dir: string, st: Record<string, unknown>): Promise<void> {
  let spec: Spec;
  try {
    spec = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Spec;
  } catch {
    return;
  }
  // Poststop failures are warnings (runtime spec): the container is deleted anyway.
  await runHooks(spec.hooks, 'poststop', st, (m) => process.stderr.write(`husk: warning: ${m}\n`));
}
