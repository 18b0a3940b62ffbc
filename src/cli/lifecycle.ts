// The runc lifecycle verbs: create, start, state, kill, delete, list, spec,
// and the hidden `vmm` verb that `create` starts as the container's VMM.
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { globalOptions } from './main.js';

// Verbs load what they need when they run: every husk call pays Node's
// start-up, and `state` should pay little more.
const lifecycle = () => import('../runtime/lifecycle.js');

function collectInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`invalid number: ${v}`);
  return n;
}

export function registerLifecycle(program: Command): void {
  program
    .command('create')
    .description('create a container: boot its VM and prepare its process (start runs it)')
    .argument('<container-id>')
    .option('-b, --bundle <dir>', 'path to the bundle directory', '.')
    .option('--pid-file <file>', 'write the pid of the container\'s VMM process here')
    .option('--console-socket <path>', 'unix socket that receives the pty master (process.terminal)')
    .option('--no-pivot', 'accepted for runc compatibility (the guest has its own root)')
    .option('--no-new-keyring', 'accepted for runc compatibility (the guest has its own keyrings)')
    .option('--preserve-fds <n>', 'relay the caller\'s fds 3..3+n-1 to the container process as byte streams', collectInt, 0)
    .action(async (id: string, o: { bundle: string; pidFile?: string; consoleSocket?: string; preserveFds: number }, cmd: Command) => {
      const g = globalOptions(cmd);
      if (o.preserveFds > 64) throw new Error(`invalid number of preserved fds: ${o.preserveFds} (at most 64)`);
      await (await lifecycle()).create({ root: g.root, id, bundle: o.bundle, pidFile: o.pidFile, consoleSocket: o.consoleSocket, debug: g.debug, preserveFds: o.preserveFds });
    });

  program
    .command('start')
    .description('start the process of a created container')
    .argument('<container-id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await (await lifecycle()).start(globalOptions(cmd).root, id);
    });

  program
    .command('state')
    .description('print the state of a container as JSON')
    .argument('<container-id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      const { publicState, readState } = await import('../runtime/state.js');
      process.stdout.write(JSON.stringify(publicState(readState(globalOptions(cmd).root, id)), null, 2) + '\n');
    });

  program
    .command('kill')
    .description('send a signal (default SIGTERM) to the container process')
    .argument('<container-id>')
    .argument('[signal]', 'signal name (KILL, SIGKILL) or number', 'SIGTERM')
    .option('-a, --all', 'send the signal to every process in the container', false)
    .action(async (id: string, signal: string, o: { all: boolean }, cmd: Command) => {
      await (await lifecycle()).kill(globalOptions(cmd).root, id, signal, o.all);
    });

  program
    .command('delete')
    .description('delete a container\'s state (and with --force stop it first)')
    .argument('<container-id>')
    .option('-f, --force', 'stop a running container first', false)
    .action(async (id: string, o: { force: boolean }, cmd: Command) => {
      await (await lifecycle()).del(globalOptions(cmd).root, id, o.force);
    });

  program
    .command('list')
    .alias('ps-all')
    .description('list containers')
    .option('-f, --format <format>', 'table or json', 'table')
    .option('-q, --quiet', 'print only ids', false)
    .action(async (o: { format: string; quiet: boolean }, cmd: Command) => {
      const items = (await lifecycle()).list(globalOptions(cmd).root);
      if (o.quiet) { for (const c of items) process.stdout.write(`${c.id}\n`); return; }
      if (o.format === 'json') { process.stdout.write(JSON.stringify(items) + '\n'); return; }
      if (o.format !== 'table') throw new Error(`invalid format option: ${o.format}`);
      const rows = [['ID', 'PID', 'STATUS', 'BUNDLE', 'CREATED', 'OWNER'],
        ...items.map((c) => [c.id, c.pid, c.status, c.bundle, c.created, c.owner].map(String))];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) process.stdout.write(r.map((v, i) => v.padEnd(widths[i]! + 3)).join('').trimEnd() + '\n');
    });

  program
    .command('spec')
    .description('write a default config.json into the bundle directory')
    .option('-b, --bundle <dir>', 'bundle directory', '.')
    .option('--rootless', 'accepted; the default spec is the same', false)
    .action(async (o: { bundle: string }) => {
      const { defaultSpec } = await import('../oci/default-spec.js');
      const file = path.join(o.bundle, 'config.json');
      if (fs.existsSync(file)) throw new Error(`File ${file} exists. Remove it first`);
      fs.writeFileSync(file, JSON.stringify(defaultSpec(), null, '\t') + '\n');
    });

  program
    .command('vmm', { hidden: true })
    .argument('<container-id>')
    .option('--console-socket <path>')
    .option('--preserve-fds <n>', '', collectInt, 0)
    .action(async (id: string, o: { consoleSocket?: string; preserveFds: number }, cmd: Command) => {
      const g = globalOptions(cmd);
      const { vmmDaemon } = await import('../runtime/vmm-daemon.js');
      const code = await vmmDaemon({ root: g.root, id, consoleSocket: o.consoleSocket, debug: g.debug, statusFd: 3 + o.preserveFds, preserveFds: o.preserveFds });
      process.exit(code);
    });
}
