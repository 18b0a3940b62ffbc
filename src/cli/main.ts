// husk's command line: runc's global flags and verbs. Errors become one
// line on stderr (and a JSON line in --log with --log-format json), never a
// stack trace.
import { Command, CommanderError } from 'commander';
import { DEFAULT_ROOT } from '../runtime/state.js';
import { reportError } from './errors.js';
import { SPEC_VERSION, VERSION } from './version.js';
import { registerRun } from './run.js';
import { registerLifecycle } from './lifecycle.js';
import { registerBundle } from './bundle.js';
import { registerVmOps } from './vmops.js';
import { registerExec } from './exec.js';
import { registerPool } from './pool.js';


export interface GlobalOptions {
  root: string;
  log?: string;
  logFormat: 'text' | 'json';
  debug: boolean;
  systemdCgroup: boolean;
}


export function buildProgram(): Command {
  const program = new Command('husk')
    .description('OCI runtime that runs every container in its own microVM')
    .option('--root <dir>', 'root directory for container state', DEFAULT_ROOT)
    .option('--log <file>', 'log file (default: stderr)')
    .option('--log-format <format>', 'log format: text or json', 'text')
    .option('--debug', 'log what husk and the VM do', false)
    .option('--systemd-cgroup', 'accepted for runc compatibility; the VM has its own cgroups', false)
    .version(`husk version ${VERSION}\nspec: ${SPEC_VERSION}`, '-v, --version')
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .showSuggestionAfterError(false)
    // runc's order: global flags before the verb; `exec ID cmd -x` keeps -x for cmd.
    .enablePositionalOptions();
  registerRun(program);
  registerLifecycle(program);
  registerBundle(program);
  registerVmOps(program);
  registerExec(program);
  registerPool(program);
  program
    .command('features')
    .description('print the OCI runtime features document (and the VM engine husk picks here)')
    .action(async () => {
      const { features } = await import('./features.js');
      process.stdout.write(JSON.stringify(features(), null, 2) + '\n');
    });
  return program;
}

export function globalOptions(cmd: Command): GlobalOptions {
  let root: Command = cmd;
  while (root.parent) root = root.parent;
  const o = root.opts();
  return {
    root: o.root,
    log: o.log,
    logFormat: o.logFormat === 'json' ? 'json' : 'text',
    debug: !!o.debug,
    systemdCgroup: !!o.systemdCgroup,
  };
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.version' || err.code === 'commander.helpDisplayed' || err.code === 'commander.help') return 0;
      reportError(program.opts(), err.message.replace(/^error: /, ''));
      return err.exitCode || 1;
    }
    reportError(program.opts(), err instanceof Error ? err.message : String(err));
    return 1;
  }
}
