// Builds the built-in example bundle: a rootfs holding Debian's static
// busybox (package busybox-static) with its applets, and a config.json.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { defaultSpec } from '../src/oci/default-spec.js';

export const BUSYBOX = process.env.HUSK_BUSYBOX ?? '/bin/busybox';

export interface ExampleBundleOptions {
  args: string[];
  env?: string[];
  cwd?: string;
  readonlyRoot?: boolean;
}

/** Creates `dir` (which must not exist yet, or be empty) as an OCI bundle. */
export function makeBusyboxBundle(dir: string, opts: ExampleBundleOptions): string {
  if (!fs.existsSync(BUSYBOX)) throw new Error(`${BUSYBOX} not found: install Debian's busybox-static`);
  const rootfs = path.join(dir, 'rootfs');
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'home', 'var']) {
    fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  }
  fs.chmodSync(path.join(rootfs, 'tmp'), 0o1777);
  fs.copyFileSync(BUSYBOX, path.join(rootfs, 'bin/busybox'));
  fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => /^[\w.[-]+$/.test(a) && a !== 'busybox');
  for (const a of applets) {
    const link = path.join(rootfs, 'bin', a);
    if (!fs.existsSync(link)) fs.symlinkSync('busybox', link);
  }
  fs.writeFileSync(path.join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  fs.writeFileSync(path.join(rootfs, 'etc/hostname'), 'husk\n');
  const spec = defaultSpec(opts.args, false);
  spec.process!.env = opts.env ?? spec.process!.env;
  spec.process!.cwd = opts.cwd ?? '/';
  spec.root = { path: 'rootfs', readonly: opts.readonlyRoot ?? false };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(spec, null, 2));
  return dir;
}
