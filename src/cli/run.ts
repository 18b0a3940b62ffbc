// `husk run [--bundle DIR] ID`: create + start + wait, in the foreground;
// with --detach: create + start, then return (the VMM keeps running).
import type { Command } from 'commander';
import { globalOptions } from './main.js';

export function registerRun(program: Command): void {
  program
    .command('run')
    .description('create and run a container, wait for it, and exit with its status')
    .argument('<container-id>')
    .argument('[command...]', 'with --image: the command to run instead of the image\'s')
    .option('-b, --bundle <dir>', 'path to the bundle directory', '.')
    .option('--image <archive>', 'run an image archive (OCI layout or docker-archive); the bundle is built and cached')
    .option('--platform <os/arch>', 'with --image: platform to pick from a multi-arch index')
    .option('--rm', 'accepted: husk run in the foreground always removes the container\'s state', false)
    .option('-d, --detach', 'detach from the container\'s process', false)
    .option('--pid-file <file>', 'write the pid of the container\'s VMM process here (in the foreground: husk itself)')
    .option('--console-socket <path>', 'unix socket that receives the pty master (with --detach)')
    .option('--no-pivot', 'accepted for runc compatibility')
    .option('--no-new-keyring', 'accepted for runc compatibility')
    .action(async (id: string, command: string[], o: { bundle: string; image?: string; platform?: string; detach: boolean; pidFile?: string; consoleSocket?: string }, cmd: Command) => {
      const g = globalOptions(cmd);
      if (command.length && !o.image) throw new Error('a command after the container id needs --image (a bundle has its own process.args)');
      if (o.image) o.bundle = await (await import('../../rootfs-builder/build.js')).ensureCachedBundle(o.image, { platform: o.platform, args: command.length ? command : undefined });
      if (o.detach) {
        const { create, start } = await import('../runtime/lifecycle.js');
        await create({ root: g.root, id, bundle: o.bundle, pidFile: o.pidFile, consoleSocket: o.consoleSocket, debug: g.debug });
        await start(g.root, id);
        return;
      }
      const debug = g.debug ? (m: string) => process.stderr.write(`husk: debug: ${m}\n`) : undefined;
      const { runContainer } = await import('../runtime/run.js');
      process.exitCode = await runContainer({ root: g.root, id, bundle: o.bundle, debug, pidFile: o.pidFile });
    });
}
