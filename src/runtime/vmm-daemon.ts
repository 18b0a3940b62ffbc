// The VMM process behind `create`: the host process whose pid goes into
// --pid-file. It boots the VM, prepares the container's process in the
// guest (held before execve), serves start/kill on its control socket,
// relays stdio and signals, and exits with the container's exit status.
// Its stdio belongs to the container: its own messages go to vmm.log only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { loadBundle } from '../oci/bundle.js';
import { containerDir, publicState, stateFile, writeState, type ContainerState } from './state.js';
import { runGuestHooks, runHooks } from './hooks.js';
import type { Hooks } from '../oci/spec.js';
import { Sandbox } from './sandbox.js';
import { processSpec } from './translate.js';
import { controlSocketPath, serveControl, type ControlReply, type ControlRequest } from './control.js';
import { sendPtyMaster, type HostTerminal } from './console.js';
import { AgentError, type RunningProcess } from '../agent/client.js';
import { processStartTime } from '../sys/process.js';
import { flush, forwardStdin } from './stdio.js';
import { setCloexec } from '../sys/io.js';

export interface DaemonOptions {
  root: string;
  id: string;
  consoleSocket?: string;
  debug: boolean;
  /** fd on which `create` waits for one JSON status line */
  statusFd: number;
}

const RELAYED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGCONT'];

export async function vmmDaemon(o: DaemonOptions): Promise<number> {
  const dir = containerDir(o.root, o.id);
  const log = (msg: string) => {
    try { fs.appendFileSync(path.join(dir, 'vmm.log'), `${new Date().toISOString()} ${msg}\n`); } catch { /* state dir gone */ }
  };
  process.on('uncaughtException', (err) => { log(`fatal: ${err.stack ?? err.message}`); process.exit(255); });
  // The status fd must not leak into QEMU: create waits for it to close.
  setCloexec(o.statusFd);
  // The container's stdio may go away (its reader exits): that is the container's business, not a crash.
  for (const s of [process.stdout, process.stderr]) s.on('error', (e) => log(`container stdio: ${e.message}`));
  let reported = false;
  const report = (status: { ok: true } | { ok: false; error: string }) => {
    if (reported) return;
    reported = true;
    try { fs.writeSync(o.statusFd, JSON.stringify(status) + '\n'); fs.closeSync(o.statusFd); } catch { /* create went away */ }
  };

  let state = JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as ContainerState;
  const save = (patch: Partial<ContainerState>, husk: Partial<ContainerState['husk']> = {}) => {
    state = { ...state, ...patch, husk: { ...state.husk, ...husk } };
    writeState(dir, state);
  };
  let sandbox: Sandbox | undefined;
  let terminal: HostTerminal | undefined;
  let control: net.Server | undefined;
  try {
    const bundle = loadBundle(state.bundle);
    const spec = bundle.spec;
    sandbox = await Sandbox.boot({ stateDir: dir, socketDir: state.husk.socketDir, bundle, log, debug: o.debug, setup: true,
      onNetworkLost: (msg) => save({}, { networkError: msg }) });
    const proc = processSpec(spec.process!, { stdin: !spec.process!.terminal, seccomp: bundle.seccomp, log });
    let out: NodeJS.WritableStream = process.stdout;
    let err: NodeJS.WritableStream = process.stderr;
    if (spec.process!.terminal) {
      terminal = sendPtyMaster(o.consoleSocket!);
      out = err = terminal.output;
      if (!proc.winsize) {
        const ws = terminal.size();
        if (ws.rows && ws.cols) proc.winsize = ws;
      }
    }
    const running = sandbox.agent.run(proc, out as never, err as never, true);
    try {
      await running.created;
    } catch (e) {
      if (e instanceof AgentError) throw new Error(`unable to start container process: ${e.message}`);
      throw e;
    }
    save({ pid: process.pid }, { vmmStartTime: processStartTime(process.pid), engine: sandbox.vm.engine.name, ...(sandbox.net ? { passtPid: sandbox.net.passt.pid, passtStartTime: processStartTime(sandbox.net.passt.pid) } : {}) });
    for (const phase of ['prestart', 'createRuntime', 'createContainer'] as const) {
      await runHooks(spec.hooks, phase, publicState(state));
    }
    control = await serveControl(controlSocketPath(state.husk.socketDir), (req) => handleControl(req, running, spec.hooks));
    save({ status: 'created' });
    report({ ok: true });
    for (const sig of RELAYED) process.on(sig, () => { try { running.signal(os.constants.signals[sig]); } catch { /* gone */ } });
    const engineGone = sandbox.vm.engine.exited.then(() => ({ status: 255, waitStatus: 0, lost: true }));
    const exit = await Promise.race([running.exited.catch(() => ({ status: 255, waitStatus: 0, lost: true })), engineGone]);
    if ('lost' in exit) log('the VM went away before the container process exited');
    save({ status: 'stopped' }, { exitStatus: exit.status });
    await flush(out);
    await flush(err);
    return exit.status;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`create failed: ${msg}`);
    report({ ok: false, error: msg });
    if (state.status !== 'creating') save({ status: 'stopped' }, { exitStatus: 255 });
    return 255;
  } finally {
    control?.close();
    terminal?.close();
    await sandbox?.stop(2000);
    fs.rmSync(state.husk.socketDir, { recursive: true, force: true });
  }

  async function handleControl(req: ControlRequest, running: RunningProcess, hooks: Hooks | undefined): Promise<ControlReply> {
    switch (req.op) {
      case 'ping':
        return { ok: true };
      case 'start': {
        if (state.status !== 'created') return { ok: false, error: `cannot start a container that is ${state.status}` };
        await runGuestHooks(sandbox!.agent, hooks, 'startContainer', publicState(state));
        running.start();
        try {
          await running.started;
        } catch (e) {
          return { ok: false, error: `unable to start container process: ${(e as Error).message}` };
        }
        save({ status: 'running' });
        // A failing poststart hook is a warning, as in the runtime spec.
        await runHooks(hooks, 'poststart', publicState(state), (m) => log(`warning: ${m}`));
        if (terminal) {
          terminal.input.on('data', (d: Buffer) => { try { running.writeStdin(d); } catch { /* gone */ } });
          process.on('SIGWINCH', () => { try { const ws = terminal!.size(); running.resize(ws.rows, ws.cols); } catch { /* gone */ } });
        } else {
          forwardStdin(running);
        }
        return { ok: true };
      }
      case 'kill':
        running.signal(req.signal);
        return { ok: true };
      default:
        return { ok: false, error: 'unknown control request' };
    }
  }
}
