// `husk run` in the foreground: boot a microVM for the bundle, run its
// process through the agent, relay stdio and signals, and return the
// process's exit status. (`run --detach` is create + start instead.)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadBundle } from '../oci/bundle.js';
import { OCI_VERSION, createContainerDir, publicState, removeContainerDir, socketDirFor, writeState, type ContainerState } from './state.js';
import { runCreateHooks, runGuestHooks, runHooks } from './hooks.js';
import { controlSocketPath, serveControl } from './control.js';
import { VmOps } from './vm-ops.js';
import { serveExec } from './exec-server.js';
import { processStartTime } from '../sys/process.js';
import { flush, forwardStdin } from './stdio.js';
import type net from 'node:net';
import { Sandbox } from './sandbox.js';
import { processSpec } from './translate.js';
import { AgentError, type RunningProcess } from '../agent/client.js';
import { writePidFile } from './lifecycle.js';

export interface RunOptions {
  root: string;
  id: string;
  bundle: string;
  debug?: (msg: string) => void;
  /** written once the process runs: in the foreground the VMM is this process */
  pidFile?: string;
}

export class RunError extends Error {}

const RELAYED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

export async function runContainer(opts: RunOptions): Promise<number> {
  const bundle = loadBundle(opts.bundle);
  const proc = bundle.spec.process!;
  const useTty = !!proc.terminal;
  if (useTty && !(process.stdin.isTTY && process.stdout.isTTY)) {
    throw new RunError('process.terminal is true but husk run is not attached to a terminal (use --console-socket with --detach, or set terminal to false)');
  }
  const dir = createContainerDir(opts.root, opts.id);
  const log = (msg: string) => {
    fs.appendFileSync(path.join(dir, 'vmm.log'), `${new Date().toISOString()} ${msg}\n`);
    opts.debug?.(msg);
  };
  let sandbox: Sandbox | undefined;
  let control: net.Server | undefined;
  /** poststop runs once the create-time hooks ran (runc: for a container that was created) */
  let hooksRan = false;
  const relays = new Map<NodeJS.Signals, () => void>();
  let state: ContainerState = {
    ociVersion: OCI_VERSION, id: opts.id, pid: process.pid, status: 'creating', bundle: bundle.dir, rootfs: bundle.rootfs,
    created: new Date().toISOString(), owner: os.userInfo().username, annotations: bundle.spec.annotations ?? {},
    husk: { socketDir: socketDirFor(dir), vmmStartTime: processStartTime(process.pid) },
  };
  try {
    writeState(dir, state);
    sandbox = await Sandbox.boot({ stateDir: dir, socketDir: socketDirFor(dir), bundle, log, debug: !!opts.debug, setup: true });
    const spec = processSpec(proc, { stdin: !useTty && !process.stdin.isTTY, seccomp: bundle.seccomp, log });
    if (useTty) spec.winsize = { rows: process.stdout.rows, cols: process.stdout.columns };
    // With hooks, run is create + start: the process is held until the create-time hooks ran.
    const hooks = bundle.spec.hooks;
    const hold = !!hooks && Object.values(hooks).some((list) => list?.length);
    const running = sandbox.agent.run(spec, process.stdout, process.stderr, hold);
    for (const sig of RELAYED_SIGNALS) {
      const relay = () => { try { running.signal(os.constants.signals[sig]); } catch { /* gone */ } };
      relays.set(sig, relay);
      process.on(sig, relay);
    }
    try {
      if (hold) {
        await running.created;
        hooksRan = true;
        await runCreateHooks(hooks, publicState(state));
        state = { ...state, status: 'created' };
        writeState(dir, state);
        await runGuestHooks(sandbox.agent, hooks, 'startContainer', publicState(state));
        running.start();
      }
      await running.started;
    } catch (err) {
      if (err instanceof AgentError) throw new RunError(`unable to start container process: ${err.message}`);
      throw err;
    }
    // Other husk calls (state, kill) reach this foreground VMM like a detached one.
    const vmOps = new VmOps({
      status: () => state.status, setStatus: (s) => { state = { ...state, status: s }; writeState(dir, state); },
      vm: sandbox.vm, agent: sandbox.agent, log,
    });
    const agent = sandbox.agent;
    control = await serveControl(controlSocketPath(state.husk.socketDir), async (req) => {
      if (req.op === 'kill') return vmOps.signal(running, req.signal, req.all);
      if (req.op === 'ping') return { ok: true };
      if (req.op === 'pause' || req.op === 'resume' || req.op === 'update' || req.op === 'stats') return vmOps.handle(req);
      if (req.op === 'ps') return vmOps.ps();
      return { ok: false, error: 'cannot start an already running container' };
    }, (req, sock, rest) => serveExec({ agent, seccomp: bundle.seccomp, log, refuse: () => (state.status === 'paused' ? 'cannot exec in a paused container' : undefined) }, req, sock, rest));
    state = { ...state, status: 'running' };
    writeState(dir, state);
    if (opts.pidFile) writePidFile(opts.pidFile, process.pid);
    await runHooks(hooks, 'poststart', publicState(state), warn);
    if (useTty) attachTerminal(running);
    else if (!process.stdin.isTTY) forwardStdin(running);
    const vmGone = sandbox.vm.engine.exited.then(() => {
      throw new RunError(`the VM stopped while the container was running; see ${dir}/console.log`);
    });
    const exit = await Promise.race([running.exited, vmGone]);
    await flush(process.stdout);
    await flush(process.stderr);
    return exit.status;
  } finally {
    control?.close();
    for (const [sig, relay] of relays) process.off(sig, relay);
    if (process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.destroy();
    await sandbox?.stop();
    if (hooksRan) await runHooks(bundle.spec.hooks, 'poststop', publicState({ ...state, status: 'stopped' }), warn);
    removeContainerDir(dir);
  }
}

/** Failing poststart and poststop hooks are warnings (runtime spec), on husk's stderr as with runc. */
function warn(msg: string): void {
  process.stderr.write(`husk: warning: ${msg}\n`);
}

function attachTerminal(running: RunningProcess): void {
  process.stdin.setRawMode(true);
  process.stdin.on('data', (d: Buffer) => { try { running.writeStdin(d); } catch { /* gone */ } });
  process.stdout.on('resize', () => { try { running.resize(process.stdout.rows, process.stdout.columns); } catch { /* gone */ } });
}
