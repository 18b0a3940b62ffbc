// A private containerd 1.6 (own root, state and socket) for tests, with the
// busybox image imported; tasks use husk through `ctr run --runc-binary`.
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { IMAGE, setupPodman } from './podman.js';

export const CTR_IMAGE = 'localhost/husk-busybox:latest';

export interface Containerd {
  address: string;
  ctr(args: string[], opts?: Parameters<typeof execa>[2]): ReturnType<typeof execa>;
  stop(): Promise<void>;
}

export function containerdAvailable(): boolean {
  return fs.existsSync('/usr/bin/containerd') && fs.existsSync('/usr/bin/ctr') && fs.existsSync('/usr/bin/containerd-shim-runc-v2');
}

export async function startContainerd(dir: string, ociArchive: string): Promise<Containerd> {
  fs.mkdirSync(dir, { recursive: true });
  // Unix socket paths are short-limited: keep the address short.
  const address = `/run/husk-ctd-${process.pid}.sock`;
  const config = path.join(dir, 'config.toml');
  fs.writeFileSync(config, [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "/run/husk-ctd-${process.pid}"`,
    '[grpc]',
    `  address = "${address}"`,
    '[plugins."io.containerd.grpc.v1.cri"]',
    '  disable_cgroup = true',
    '',
  ].join('\n'));
  const log = fs.openSync(path.join(dir, 'containerd.log'), 'a');
  const daemon: ChildProcess = spawn('containerd', ['--config', config], { stdio: ['ignore', log, log] });
  fs.closeSync(log);
  const ctr = (args: string[], opts: Parameters<typeof execa>[2] = {}) =>
    execa('ctr', ['--address', address, ...args], { reject: false, stdin: 'ignore', ...opts } as never);
  const stop = async () => {
    daemon.kill('SIGTERM');
    await new Promise((r) => (daemon.exitCode !== null ? r(null) : daemon.once('exit', r)));
    for (const p of [`/run/husk-ctd-${process.pid}`, address, `${address}.ttrpc`]) fs.rmSync(p, { recursive: true, force: true });
  };
  try {
    for (let i = 0; ; i++) {
      if ((await ctr(['version'])).exitCode === 0) break;
      if (i > 200) throw new Error(`containerd did not start: ${fs.readFileSync(path.join(dir, 'containerd.log'), 'utf8').slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const imp = await ctr(['image', 'import', '--base-name', 'localhost/husk-busybox', ociArchive]);
    if (imp.exitCode !== 0) throw new Error(`ctr image import failed: ${imp.stderr}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { address, ctr, stop };
}

/** A private containerd in `dir` with the test busybox image, exported from a private podman set-up. */
export async function startContainerdWithBusybox(dir: string): Promise<Containerd> {
  const pm = await setupPodman(path.join(dir, 'podman'));
  const archive = path.join(dir, 'busybox-oci.tar');
  try {
    const save = await pm.run(['save', '--format', 'oci-archive', '-o', archive, IMAGE]);
    if (save.exitCode !== 0) throw new Error(`podman save: ${save.stderr}`);
  } finally {
    await pm.cleanup();
  }
  return startContainerd(path.join(dir, 'containerd'), archive);
}
