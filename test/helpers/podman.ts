// A private podman set-up for tests: its own storage, run dir and
// containers.conf (husk registered as a runtime), and a busybox image
// imported from the example rootfs; nothing global is touched.
import { execa } from 'execa';
import { expect } from 'vitest';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { HUSK, ROOT_DIR, processesMentioning } from './husk.js';
import { makeBusyboxBundle } from '../../rootfs-builder/example-bundle.js';
import { writePodmanConf } from './podman-conf.js';

export const IMAGE = 'localhost/husk-busybox:latest';

export interface Podman {
  dir: string;
  run(args: string[], opts?: Parameters<typeof execa>[2]): ReturnType<typeof execa>;
  cleanup(): Promise<void>;
}

export function podmanAvailable(): boolean {
  return fs.existsSync('/usr/bin/podman') && fs.existsSync('/usr/bin/conmon');
}

/**
 * `extraConf`: more containers.conf lines (e.g. a private [network] section).
 * `huskBinary`: what podman runs as husk (e.g. a wrapper that adds --root).
 */
export async function setupPodman(dir: string, extraConf: string[] = [], huskBinary = HUSK): Promise<Podman> {
  fs.mkdirSync(dir, { recursive: true });
  const conf = writePodmanConf(dir, { husk: huskBinary }, extraConf);
  const env = { ...process.env, CONTAINERS_CONF: conf, HUSK_TEST_ROOT: ROOT_DIR };
  const base = ['--root', path.join(dir, 'storage'), '--runroot', path.join(dir, 'run'), '--runtime', 'husk'];
  const run = (args: string[], opts: Parameters<typeof execa>[2] = {}) =>
    execa('podman', [...base, ...args], { env, reject: false, stdin: 'ignore', ...opts } as never);
  const images = await run(['images', '-q', IMAGE]);
  if (!String(images.stdout).trim()) {
    const b = makeBusyboxBundle(path.join(dir, 'image-src'), { args: ['sh'] });
    const tar = path.join(dir, 'busybox.tar');
    await execa('tar', ['-C', path.join(b, 'rootfs'), '-cf', tar, '.']);
    const imp = await run(['import', '--change', 'CMD ["sh"]', tar, IMAGE]);
    if (imp.exitCode !== 0) throw new Error(`podman import failed: ${imp.stderr}`);
  }
  return {
    dir,
    run,
    async cleanup() {
      await run(['rm', '-af', '-t', '0']);
      await run(['system', 'reset', '-f']).catch(() => {});
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Nothing of the container may outlive `podman rm`: no VMM, QEMU or passt.
 * podman's own conmon runs its exit command (`podman container cleanup`, which
 * may call husk) after the container is gone and can still be finishing, as
 * with runc; those must end too, a moment later.
 */
export async function expectNothingLeft(id: string): Promise<void> {
  const vmParts = (line: string) => / vmm |qemu-system|passt/.test(line);
  expect((await processesMentioning(id)).filter(vmParts)).toEqual([]);
  let left: string[] = [];
  const end = Date.now() + 60_000;
  while ((left = await processesMentioning(id)).length && Date.now() < end) await new Promise((r) => setTimeout(r, 200));
  expect(left).toEqual([]);
}

/** GET `url`: the body on 200, undefined otherwise (connection refused, timeout, other status). */
export function httpGet(url: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 3000 }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.statusCode === 200 ? body : undefined));
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => { req.destroy(); resolve(undefined); });
  });
}
