// The VMM process behind `create`: the host process whose pid goes into
// --pid-file. It boots the VM, prepares the container's process in the
// guest (held before execve), serves start/kill on its control socket,
// relays stdio and signals, and exits with the container's exit status.
// Its stdio belongs to the container: its own messages go to vmm.log only.
// The same flow serves a VM from the pool (pool/pool-vm.ts): there the VM is
// booted already, the container's stdio arrives as fds, and a thin process
// (pool/thin-vmm.ts) is the pid and takes the exit status (ContainerSide).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { loadBundle, type Bundle } from '../oci/bundle.js';
import { containerDir, publicState, stateFile, writeState, type ContainerState } from './state.js';
import { runCreateHooks, runGuestHooks, runHooks } from './hooks.js';
import type { Hooks, Mount } from '../oci/spec.js';
import { Sandbox } from './sandbox.js';
import { processSpec } from './translate.js';
import { controlSocketPath, serveControl, type ControlReply, type ControlRequest } from './control.js';
import { sendPtyMaster, type HostTerminal } from './console.js';
import { AgentError, type RunningProcess } from '../agent/client.js';
import { processStartTime } from '../sys/process.js';
import { flush, forwardStdin } from './stdio.js';
import { setCloexec } from '../sys/io.js';
import { VmOps } from './vm-ops.js';
import { execsSettled, serveExec } from './exec-server.js';
import { relayFds } from './fd-relay.js';
import { MsgType } from '../agent/protocol.js';
import type { ContainerView } from './container-view/container-view.js';
import { RELAYED } from './pool/thin-channel.js';

export interface DaemonOptions {
  root: string;
  id: string;
  consoleSocket?: string;
  debug: boolean;
  /** fd on which `create` waits for one JSON status line */
  statusFd: number;
  /** create --preserve-fds: fds 3..3+n-1 are relayed to the container's process */
  preserveFds?: number;
}

export type CreateStatus = { ok: true } | { ok: false; error: string };

export interface SandboxRequest {
  bundle: Bundle;
  /** the container's state directory and its socket directory (state.husk.socketDir) */
  dir: string;
  socketDir: string;
  onNetworkLost: (msg: string) => void;
  /** host work that can overlap the guest's SETUP (called at most once) */
  duringSetup: () => void;
}

/** Where the container meets the host: differs between a VMM of its own and a pooled one. */
export interface ContainerSide {
  /** the pid clients know (pid file, state), and its start time */
  pid: number;
  pidStartTime?: number;
  /** more fields for state.husk (the pooled VMM's own pid) */
  stateExtra?: Partial<ContainerState['husk']>;
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  /** the VM with its agent, ready for SETUP/RUN of this bundle */
  sandbox(c: SandboxRequest): Promise<Sandbox>;
  /** tells `create` how it went (once) */
  report(status: CreateStatus): void;
  /** calls `relay` with each signal sent to the container's pid */
  onSignal(relay: (signo: number) => void): void;
  /** the container's process is created (held before execve) */
  afterCreated?(): void;
  /** the container view is entered: the pid must be in it before start returns */
  viewEntered?(): Promise<void>;
  /** the container has exited with `status` and its output is flushed */
  exited?(status: number): Promise<void>;
}

export async function vmmDaemon(o: DaemonOptions): Promise<number> {
  const log = daemonLog(containerDir(o.root, o.id));
  process.on('uncaughtException', (err) => { log(`fatal: ${err.stack ?? err.message}`); process.exit(255); });
  // The status fd must not leak into QEMU: create waits for it to close.
  setCloexec(o.statusFd);
  for (let fd = 3; fd < 3 + (o.preserveFds ?? 0); fd++) setCloexec(fd);
  let reported = false;
  return runContainer(o, log, {
    pid: process.pid,
    pidStartTime: processStartTime(process.pid),
    // Read only from start on: Node makes process.stdin when first asked for.
    get stdin() { return process.stdin; },
    stdout: process.stdout,
    stderr: process.stderr,
    sandbox: (c) => Sandbox.boot({ stateDir: c.dir, socketDir: c.socketDir, bundle: c.bundle, log, debug: o.debug, setup: true, onNetworkLost: c.onNetworkLost }),
    report(status) {
      if (reported) return;
      reported = true;
      try { fs.writeSync(o.statusFd, JSON.stringify(status) + '\n'); fs.closeSync(o.statusFd); } catch { /* create went away */ }
    },
    onSignal(relay) {
      for (const sig of RELAYED) process.on(sig, () => relay(os.constants.signals[sig]));
    },
  });
}

export function daemonLog(dir: string): (msg: string) => void {
  return (msg: string) => {
    try { fs.appendFileSync(path.join(dir, 'vmm.log'), `${new Date().toISOString()} ${msg}\n`); } catch { /* state dir gone */ }
  };
}

/** The container's life in its VM, from SETUP to its exit status; `side` is how it meets the host. */
export async function runContainer(o: Pick<DaemonOptions, 'root' | 'id' | 'consoleSocket' | 'preserveFds'>, log: (msg: string) => void, side: ContainerSide): Promise<number> {
  const dir = containerDir(o.root, o.id);
  // The container's stdio may go away (its reader exits): that is the container's business, not a crash.
  for (const s of [side.stdout, side.stderr]) s.on('error', (e: Error) => log(`container stdio: ${e.message}`));

  let state = JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as ContainerState;
  const save = (patch: Partial<ContainerState>, husk: Partial<ContainerState['husk']> = {}) => {
    state = { ...state, ...patch, husk: { ...state.husk, ...husk } };
    writeState(dir, state);
  };
  let sandbox: Sandbox | undefined;
  let terminal: HostTerminal | undefined;
  let control: net.Server | undefined;
  let vmOps: VmOps | undefined;
  let relay: ReturnType<typeof relayFds> | undefined;
  let view: ContainerView | null | undefined;
  let viewModule: Promise<typeof import('./container-view/container-view.js')> | undefined;
  let viewOf: { rootfs: string; bundleDir: string; mounts: Mount[]; readonly: boolean } | undefined;
  try {
    const bundle = loadBundle(state.bundle);
    viewOf = { rootfs: bundle.rootfs, bundleDir: bundle.dir, mounts: bundle.spec.mounts ?? [], readonly: !!bundle.spec.root?.readonly };
    const spec = bundle.spec;
    // The process spec (seccomp compiled) is built while the guest works on SETUP when the side can say when.
    let built: ReturnType<typeof processSpec> | undefined;
    const build = () => (built ??= processSpec(spec.process!, { stdin: !spec.process!.terminal, seccomp: bundle.seccomp, log }));
    sandbox = await side.sandbox({ bundle, dir, socketDir: state.husk.socketDir, onNetworkLost: (msg) => save({}, { networkError: msg }), duringSetup: build });
    const proc = build();
    if (o.preserveFds) {
      if (!sandbox.agent.execCapable) throw new Error('the guest agent cannot relay preserved fds (no protocol extension B)');
      proc.extraFds = o.preserveFds;
    }
    let out: NodeJS.WritableStream = side.stdout;
    let err: NodeJS.WritableStream = side.stderr;
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
    side.afterCreated?.();
    save({ pid: side.pid }, { ...side.stateExtra, vmmStartTime: side.pidStartTime, engine: sandbox.vm.engine.name, ...(sandbox.net ? { passtPid: sandbox.net.passt.pid, passtStartTime: processStartTime(sandbox.net.passt.pid) } : {}) });
    await runCreateHooks(spec.hooks, publicState(state));
    if (o.preserveFds) {
      const r = relayFds(o.preserveFds, (fd, data) => { try { running.writeFd(fd, data); } catch { /* agent gone */ } });
      running.onFdData((fd, data) => r.fromGuest(fd, data));
      relay = r;
    }
    const execCtx = {
      agent: sandbox.agent, seccomp: bundle.seccomp, log,
      refuse: () => (state.status === 'stopped' ? 'cannot exec in a stopped container'
        : state.status === 'paused' ? 'cannot exec in a paused container' : undefined),
    };
    vmOps = new VmOps({ status: () => state.status, setStatus: (s) => save({ status: s }), vm: sandbox.vm, agent: sandbox.agent, log });
    control = await serveControl(controlSocketPath(state.husk.socketDir), (req) => handleControl(req, running, spec.hooks),
      (req, sock, rest) => serveExec(execCtx, req, sock, rest));
    save({ status: 'created' });
    side.report({ ok: true });
    // Loaded while the container waits for start, which enters it.
    viewModule = import('./container-view/container-view.js');
    side.onSignal((signo) => { try { running.signal(signo); } catch { /* gone */ } });
    const engineGone = sandbox.vm.engine.exited.then(() => ({ status: 255, waitStatus: 0, lost: true }));
    const exit = await Promise.race([running.exited.catch(() => ({ status: 255, waitStatus: 0, lost: true })), engineGone]);
    if ('lost' in exit) log('the VM went away before the container process exited');
    save({ status: 'stopped' }, { exitStatus: exit.status });
    log(`container process exited with status ${exit.status}`);
    await execsSettled(2000);
    await flush(out);
    await flush(err);
    await relay?.flush();
    await side.exited?.(exit.status);
    return exit.status;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    log(`create failed: ${msg}`);
    side.report({ ok: false, error: msg });
    if (state.status !== 'creating') save({ status: 'stopped' }, { exitStatus: 255 });
    return 255;
  } finally {
    control?.close();
    view?.close();
    // The terminal closes with this process, as a runc container's pty closes
    // with its process: closing it earlier lets podman see the end of the
    // output while the pid it watches still runs (and miss the exit code).
    // The pid file's process must end as soon as the container has: delete reaps passt.
    await sandbox?.stop(2000, false);
    log('VM stopped');
    terminal?.close();
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
        // After the last hook this process spawns: from here, whoever joins this
        // process's mount namespace (podman cp, podman top) finds the container.
        if (viewModule && viewOf) {
          const agent = sandbox!.agent;
          view = (await viewModule).ContainerView.enter({ ...viewOf, log, fetch: agent.procfsCapable ? () => agent.request(MsgType.PROCFS) : undefined });
          if (view) await side.viewEntered?.();
        }
        if (terminal) {
          terminal.input.on('data', (d: Buffer) => { try { running.writeStdin(d); } catch { /* gone */ } });
          const syncSize = () => { try { const ws = terminal!.size(); if (ws.rows && ws.cols) running.resize(ws.rows, ws.cols); } catch { /* gone */ } };
          process.on('SIGWINCH', syncSize);
          // The caller may have sized the terminal between create and start (podman does, after attach).
          syncSize();
        } else {
          forwardStdin(running, side.stdin);
        }
        return { ok: true };
      }
      case 'kill':
        return vmOps!.signal(running, req.signal, req.all);
      case 'pause':
      case 'resume':
      case 'update':
      case 'stats':
        return vmOps!.handle(req);
      case 'ps':
        return vmOps!.ps();
      default:
        return { ok: false, error: 'unknown control request' };
    }
  }
}
