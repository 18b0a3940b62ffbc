// `husk run [--bundle DIR] ID`: create + start + wait, in the foreground.
import type { Command } from 'commander';
import { globalOptions } from './main.js';
import { runContainer } from '../runtime/run.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('create and run a container, wait for it, and exit with its status')
    .argument('<container-id>')
    .option('-b, --bundle <dir>', 'path to the bundle directory', '.')
    .action(async (id: string, o: { bundle: string }, cmd: Command) => {
      const g = globalOptions(cmd);
      const debug = g.debug ? (m: string) => process.stderr.write(`husk: debug: ${m}\n`) : undefined;
      process.exitCode = await runContainer({ root: g.root, id, bundle: o.bundle, debug });
    });
}
