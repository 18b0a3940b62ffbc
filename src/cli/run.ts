// `husk run [--bundle DIR] ID`: create + start + wait, in the foreground;
// with --detach: create + start, then return (the VMM keeps running).
import type { Command } from 'commander';
import { globalOptions } from './main.js';
import { runContainer } from '../runtime/run.js';
import { create, start } from '../runtime/lifecycle.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('create and run a container, wait for it, and exit with its status')
    .argument('<container-id>')
    .option('-b, --bundle <dir>', 'path to the bundle directory', '.')
    .option('-d, --detach', 'detach from the container\'s process', false)
    .option('--pid-file <file>', 'write the pid of the container\'s VMM process here (with --detach)')
    .option('--console-socket <path>', 'unix socket that receives the pty master (with --detach)')
    .option('--no-pivot', 'accepted for runc compatibility')
    .option('--no-new-keyring', 'accepted for runc compatibility')
    .action(async (id: string, o: { bundle: string; detach: boolean; pidFile?: string; consoleSocket?: string }, cmd: Command) => {
      const g = globalOptions(cmd);
      if (o.detach) {
        await create({ root: g.root, id, bundle: o.bundle, pidFile: o.pidFile, consoleSocket: o.consoleSocket, debug: g.debug });
        await start(g.root, id);
        return;
      }
      const debug = g.debug ? (m: string) => process.stderr.write(`husk: debug: ${m}\n`) : undefined;
      process.exitCode = await runContainer({ root: g.root, id, bundle: o.bundle, debug });
    });
}
