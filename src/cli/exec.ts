// `exec`, `ps` and the hidden `exec-shim` verb (the detached process of
// `exec --detach`). Errors of exec follow runc: "exec failed: ...", exit 255.
import type { Command } from 'commander';
import { globalOptions } from './main.js';
import { reportError } from './errors.js';
import type { ExecOptions } from '../runtime/exec.js';

const execMod = () => import('../runtime/exec.js');

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

function count(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 64) throw new Error(`invalid number of fds: ${v}`);
  return n;
}

function gids(v: string, prev: number[]): number[] {
  const out = [...prev];
  for (const g of v.split(',')) {
    const n = Number(g);
    if (!/^\d+$/.test(g) || !Number.isInteger(n)) throw new Error(`invalid additional gid: ${g}`);
    out.push(n);
  }
  return out;
}

/** commander's names for ExecOptions' fields (`--process`, `--cap`). */
type ExecFlags = Omit<ExecOptions, 'root' | 'id' | 'args' | 'processFile' | 'caps' | 'debug'> & { process?: string; cap: string[] };

export function registerExec(program: Command): void {
  program
    .command('exec')
    .description('run a process in a running container (inside its VM)')
    .argument('<container-id>')
    .argument('[command...]', 'command and arguments (unless --process)')
    .option('-p, --process <file>', 'process.json with the whole process (runtime-spec process object)')
    .option('-d, --detach', 'detach: a background host process holds the streams and exits with the status', false)
    .option('--pid-file <file>', 'write the pid of the host process of the exec\'d process here')
    .option('-t, --tty', 'allocate a pseudo-TTY', false)
    .option('--console-socket <path>', 'unix socket that receives the pty master')
    .option('-e, --env <KEY=VALUE>', 'set an environment variable (repeatable)', collect, [])
    .option('--cwd <dir>', 'current working directory in the container')
    .option('-u, --user <uid[:gid]>', 'numeric user (and group) id')
    .option('-g, --additional-gids <gid>', 'additional group ids (repeatable or comma-separated)', gids, [])
    .option('-c, --cap <cap>', 'add a capability (repeatable)', collect, [])
    .option('--no-new-privs', 'set no_new_privs for the process', false)
    .option('--preserve-fds <n>', 'relay the caller\'s fds 3..3+n-1 to the process as byte streams', count, 0)
    .option('--process-label <label>', 'accepted for runc compatibility (no SELinux in the guest)')
    .option('--apparmor <profile>', 'accepted for runc compatibility (no AppArmor in the guest)')
    .option('--cgroup <path>', 'accepted for runc compatibility (the VM is the container\'s cgroup)')
    .option('--ignore-paused', 'accepted for runc compatibility')
    .passThroughOptions()
    .action(async (id: string, command: string[], o: ExecFlags, cmd: Command) => {
      const g = globalOptions(cmd);
      try {
        const code = await (await execMod()).exec({
          root: g.root, id, args: command, processFile: o.process, detach: o.detach, pidFile: o.pidFile,
          tty: o.tty, consoleSocket: o.consoleSocket, env: o.env, cwd: o.cwd, user: o.user,
          additionalGids: o.additionalGids, caps: o.cap, noNewPrivs: o.noNewPrivs, preserveFds: o.preserveFds, debug: g.debug,
        });
        process.exitCode = code;
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        reportError(g, `exec failed: ${msg}`);
        process.exitCode = 255;
      }
    });

  program
    .command('exec-shim', { hidden: true })
    .argument('<container-id>')
    .option('--console-socket <path>')
    .action(async (id: string, o: { consoleSocket?: string }, cmd: Command) => {
      const code = await (await execMod()).execShim(globalOptions(cmd).root, id, o.consoleSocket);
      process.exit(code);
    });

  program
    .command('ps')
    .description('list the processes of a container (pids of its pid namespace inside the VM)')
    .argument('<container-id>')
    .argument('[ps-options...]', 'accepted for runc compatibility (the table has fixed columns)')
    .option('-f, --format <format>', 'table or json', 'table')
    .passThroughOptions()
    .action(async (id: string, _psArgs: string[], o: { format: string }, cmd: Command) => {
      if (o.format !== 'table' && o.format !== 'json') throw new Error(`invalid format option: ${o.format}`);
      const procs = await (await execMod()).ps(globalOptions(cmd).root, id);
      if (o.format === 'json') { process.stdout.write(JSON.stringify(procs.map((p) => p.pid)) + '\n'); return; }
      const rows = [['UID', 'PID', 'PPID', 'CMD'], ...procs.map((p) => [String(p.uid), String(p.pid), String(p.ppid), p.args.join(' ')])];
      const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
      for (const r of rows) process.stdout.write(r.map((v, i) => (i === 3 ? v : i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ') + '\n');
    });
}
