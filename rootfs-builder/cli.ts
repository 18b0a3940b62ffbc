// rootfs-builder command line:
//   example DIR [-- CMD...]      the built-in example bundle from Debian's busybox-static
//   create [--platform P] [--ref NAME] [--readonly] [-q] --image ARCHIVE DIR [-- CMD...]
//                                a bundle from an OCI layout or docker-archive (as `husk bundle create`)
import { makeBusyboxBundle } from './example-bundle.js';
import { createBundle, removePartialBuilds } from './build.js';
import { stderrProgress } from './progress.js';

const USAGE = 'usage: rootfs-builder example DIR [-- CMD ARGS...]\n'
  + '       rootfs-builder create [--platform OS/ARCH] [--ref NAME] [--readonly] [-q] --image ARCHIVE DIR [-- CMD ARGS...]\n';

function usage(): never {
  process.stderr.write(USAGE);
  process.exit(2);
}

async function main(argv: string[]): Promise<void> {
  const verb = argv.shift();
  if (verb === 'example') {
    const [dir, sep, ...cmd] = argv;
    if (!dir || (sep !== undefined && sep !== '--')) usage();
    makeBusyboxBundle(dir, { args: cmd.length ? cmd : ['sh', '-c', 'echo hello from husk'] });
    process.stdout.write(`${dir}\n`);
    return;
  }
  if (verb !== 'create') usage();
  const o: { image?: string; platform?: string; ref?: string; readonly: boolean; quiet: boolean } = { readonly: false, quiet: false };
  let dir: string | undefined;
  let cmd: string[] = [];
  while (argv.length) {
    const a = argv.shift()!;
    if (a === '--') {
      cmd = argv.splice(0);
    } else if (a === '--image' || a === '--platform' || a === '--ref') {
      const v = argv.shift();
      if (v === undefined) usage();
      o[a.slice(2) as 'image' | 'platform' | 'ref'] = v;
    } else if (a === '--readonly') o.readonly = true;
    else if (a === '-q' || a === '--quiet') o.quiet = true;
    else if (!a.startsWith('-') && dir === undefined) dir = a;
    else usage();
  }
  if (!o.image || !dir) usage();
  process.once('SIGINT', () => { removePartialBuilds(); process.exit(130); });
  process.once('SIGTERM', () => { removePartialBuilds(); process.exit(143); });
  await createBundle(o.image, dir, {
    platform: o.platform,
    ref: o.ref,
    args: cmd.length ? cmd : undefined,
    readonlyRoot: o.readonly,
    onProgress: o.quiet ? undefined : stderrProgress('rootfs-builder'),
    onWarning: o.quiet ? undefined : (m) => process.stderr.write(`rootfs-builder: warning: ${m}\n`),
  });
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`rootfs-builder: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`);
  process.exit(1);
});
