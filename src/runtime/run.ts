// `husk run`: boot a microVM for the bundle, run its process through the
// agent, relay stdio and signals, and return the process's exit status.
import net from 'node:net';
import os from 'node:os';
import fs from 'node:fs';
import path from 'node:path';
import { loadBundle } from '../oci/bundle.js';
import { createContainerDir, removeContainerDir, writeJsonAtomic } from './state.js';
import { Vm } from '../vmm/vm.js';
import { guestAssets } from '../vmm/assets.js';
import { AgentConnection, AgentError, type RunningProcess } from '../agent/client.js';
import { guestCmdline } from '../vmm/cmdline.js';

export const AGENT_PORT = 1024;
const GUEST_CID = 3;
const ROOTFS_TAG = 'rootfs';

export interface RunOptions {
  root: string;
  id: string;
  bundle: string;
  debug?: (msg: string) => void;
}

export class RunError extends Error {}

const RELAYED_SIGNALS: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

export async function runContainer(opts: RunOptions): Promise<number> {
  const bundle = loadBundle(opts.bundle);
  const proc = bundle.spec.process!;
  if (proc.terminal) throw new RunError('process.terminal is true but husk run has no terminal support yet: set terminal to false');
  const assets = guestAssets();
  const dir = createContainerDir(opts.root, opts.id);
  const log = (msg: string) => {
    fs.appendFileSync(path.join(dir, 'vmm.log'), `${new Date().toISOString()} ${msg}\n`);
    opts.debug?.(msg);
  };
  let vm: Vm | undefined;
  let agentServer: net.Server | undefined;
  let agent: AgentConnection | undefined;
  const relays = new Map<NodeJS.Signals, () => void>();
  try {
    writeJsonAtomic(path.join(dir, 'state.json'), { id: opts.id, bundle: bundle.dir, status: 'creating', created: new Date().toISOString() });
    const vsockBase = path.join(dir, 'vsock.sock');
    agentServer = net.createServer();
    await new Promise<void>((resolve, reject) => {
      agentServer!.once('error', reject);
      agentServer!.listen(`${vsockBase}_${AGENT_PORT}`, resolve);
    });
    const agentReady = AgentConnection.accept(agentServer, Number(process.env.HUSK_BOOT_TIMEOUT_MS ?? 120_000));
    vm = Vm.start({
      stateDir: dir,
      kernel: assets.kernel,
      initrd: assets.initrd,
      cmdline: guestCmdline({ rootfsTag: ROOTFS_TAG, agentPort: AGENT_PORT, debug: !!opts.debug }),
      vcpus: 1,
      memoryMiB: 256,
      consoleLog: path.join(dir, 'console.log'),
      devices: [
        { kind: 'fs', tag: ROOTFS_TAG, root: bundle.rootfs, readonly: bundle.spec.root?.readonly ?? false },
        { kind: 'vsock', guestCid: GUEST_CID, udsPath: vsockBase },
      ],
    }, log);
    const engineGone = vm.engine.exited.then((e) => {
      throw new RunError(`the VM stopped before its agent was ready (engine exit ${e.signal ?? e.code}); see ${dir}/console.log`);
    });
    agent = await Promise.race([agentReady, engineGone]);
    log(`agent ready: ${agent.hello.agent}, protocol ${agent.hello.version}`);
    const running = agent.run(
      { args: proc.args!, env: proc.env ?? [], cwd: proc.cwd, stdin: !process.stdin.isTTY },
      process.stdout,
      process.stderr,
    );
    for (const sig of RELAYED_SIGNALS) {
      const relay = () => running.signal(signalNumber(sig));
      relays.set(sig, relay);
      process.on(sig, relay);
    }
    try {
      await running.started;
    } catch (err) {
      if (err instanceof AgentError) throw new RunError(`unable to start container process: ${err.message}`);
      throw err;
    }
    if (!process.stdin.isTTY) forwardStdin(running);
    const exit = await Promise.race([running.exited, vm.engine.exited.then(() => {
      throw new RunError(`the VM stopped while the container was running; see ${dir}/console.log`);
    })]);
    await flush(process.stdout);
    await flush(process.stderr);
    return exit.status;
  } finally {
    for (const [sig, relay] of relays) process.off(sig, relay);
    process.stdin.destroy();
    if (agent) agent.poweroff();
    if (vm) await vm.stop(agent ? 3000 : 0);
    agent?.close();
    agentServer?.close();
    removeContainerDir(dir);
  }
}

function forwardStdin(running: RunningProcess): void {
  process.stdin.on('data', (d: Buffer) => { try { running.writeStdin(d); } catch { /* agent gone */ } });
  process.stdin.on('end', () => { try { running.closeStdin(); } catch { /* agent gone */ } });
  process.stdin.on('error', () => {});
}

function flush(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => stream.write('', () => resolve()));
}

export function signalNumber(sig: NodeJS.Signals): number {
  const n = (os.constants.signals as Record<string, number>)[sig];
  if (n === undefined) throw new RunError(`unknown signal ${sig}`);
  return n;
}
