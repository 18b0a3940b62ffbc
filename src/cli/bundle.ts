// `husk bundle create --image ARCHIVE DIR [COMMAND...]`: an OCI bundle
// (config.json + rootfs/) from an OCI image layout or a docker-archive
// (directory or tar), without a registry or a container engine.
import type { Command } from 'commander';

interface CreateOptions {
  image: string;
  platform?: string;
  ref?: string;
  readonly?: boolean;
  quiet?: boolean;
}

export function registerBundle(program: Command): void {
  const bundle = program.command('bundle').description('make OCI bundles from container images');
  bundle
    .command('create')
    .description('unpack an image archive (OCI layout or docker-archive, dir or tar) into a new bundle DIR')
    .requiredOption('--image <archive>', 'OCI image layout or docker-archive: a directory or an uncompressed tar')
    .option('--platform <os/arch[/variant]>', 'image to pick from a multi-platform index (default linux/amd64)')
    .option('--ref <name>', 'image to pick when the archive holds several (OCI ref name or repo tag)')
    .option('--readonly', 'mark the rootfs read-only in config.json', false)
    .option('-q, --quiet', 'no progress on stderr', false)
    .argument('<dir>', 'bundle directory to create (must not exist, or be empty)')
    .argument('[command...]', "command to run instead of the image's Cmd")
    .action(async (dir: string, command: string[], o: CreateOptions) => {
      const { createBundle, removePartialBuilds } = await import('../../rootfs-builder/build.js');
      const { stderrProgress } = await import('../../rootfs-builder/progress.js');
      const onSignal = (sig: NodeJS.Signals) => {
        removePartialBuilds();
        process.exit(sig === 'SIGINT' ? 130 : 143);
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      try {
        await createBundle(o.image, dir, {
          platform: o.platform,
          ref: o.ref,
          args: command.length ? command : undefined,
          readonlyRoot: !!o.readonly,
          onProgress: o.quiet ? undefined : stderrProgress('husk'),
          onWarning: o.quiet ? undefined : (m) => process.stderr.write(`husk: warning: ${m}\n`),
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
    });
}
