// rootfs-builder command line: `example DIR [-- CMD...]` makes the built-in
// example bundle from Debian's busybox-static.
import { makeBusyboxBundle } from './example-bundle.js';

const [verb, dir, sep, ...cmd] = process.argv.slice(2);
if (verb !== 'example' || !dir || (sep !== undefined && sep !== '--')) {
  process.stderr.write('usage: rootfs-builder example DIR [-- CMD ARGS...]\n');
  process.exit(2);
}
try {
  makeBusyboxBundle(dir, { args: cmd.length ? cmd : ['sh', '-c', 'echo hello from husk'] });
  process.stdout.write(`${dir}\n`);
} catch (err) {
  process.stderr.write(`rootfs-builder: ${(err as Error).message}\n`);
  process.exit(1);
}
