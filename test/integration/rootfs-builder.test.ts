// rootfs-builder against real images: a multi-layer image built here by
// podman (busybox base via `podman import`, then RUN steps that leave a
// whiteout, an opaque directory, a hardlink, symlinks, a setuid file, a
// device node, a chowned file, and a COPY carrying an xattr), saved as an
// oci-archive and as a docker-archive. The bundle's rootfs must equal, file
// by file, what podman itself mounts for the image and what `umoci unpack`
// makes; then the bundle runs under `husk run`.
//
// podman runs with a private config and store in a scratch directory
// (default_ulimits as DESIGN.md §1 says; chroot isolation for RUN, since
// crun cannot run on these hybrid-cgroup hosts); nothing needs a registry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { bundle as busyboxBundle, husk, scratch, uniqueId } from '../helpers/husk.js';
import { createBundle, ensureCachedBundle } from '../../rootfs-builder/build.js';
import { lsetxattr } from '../../rootfs-builder/native.js';
import { diffTrees, snapshotTree } from '../../rootfs-builder/tree.js';
import { makeTar } from '../../rootfs-builder/layout-writer.js';
import type { Spec } from '../../src/oci/spec.js';

let tmp: ReturnType<typeof scratch>;
let env: Record<string, string>;
let ociTar: string;
let dockerTar: string;
let ociDir: string;
const IMAGE = 'localhost/husk-rootfs-test:latest';

function podman(args: string[]) {
  return execa('podman', args, { env, reject: false, stdin: 'ignore' });
}

async function podmanOk(args: string[]): Promise<string> {
  const r = await podman(args);
  if (r.exitCode !== 0) throw new Error(`podman ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const CONTAINERFILE = `FROM localhost/husk-rootfs-base:latest
RUN mkdir -p /data/sub /opq/deep /gonedir && echo one > /data/a && echo two > /data/sub/b && echo lower > /opq/old && echo deep > /opq/deep/x && echo bye > /gone && echo bye > /gonedir/f
COPY xattr-file /data/xattr-file
RUN rm /gone && rm -rf /gonedir /opq && mkdir /opq && echo new > /opq/new && ln /data/a /data/a-hard && ln -s ../data/a /link && ln -s /data/sub /abs-link && echo s > /suid && chmod 4755 /suid && chmod 2710 /data/sub && mknod /dev-null c 1 3 && echo owned > /owned && chown 1000:50 /owned
USER alice
WORKDIR /data
ENV FOO=bar
EXPOSE 8080/tcp 53/udp
LABEL org.example.k=v
CMD ["echo", "hi"]
`;

beforeAll(async () => {
  tmp = scratch('husk-rootfs-it-');
  const conf = path.join(tmp.dir, 'podman');
  fs.mkdirSync(conf);
  fs.writeFileSync(path.join(conf, 'containers.conf'), '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n');
  fs.writeFileSync(path.join(conf, 'storage.conf'), `[storage]\ndriver = "overlay"\ngraphroot = "${conf}/storage"\nrunroot = "${conf}/run"\n`);
  env = { CONTAINERS_CONF: path.join(conf, 'containers.conf'), CONTAINERS_STORAGE_CONF: path.join(conf, 'storage.conf') };

  // Base layer: the busybox example rootfs plus a user and groups.
  const base = busyboxBundle(path.join(tmp.dir, 'base'), { args: ['sh'] });
  fs.writeFileSync(path.join(base, 'rootfs/etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n');
  fs.writeFileSync(path.join(base, 'rootfs/etc/group'), 'root:x:0:\nalice:x:1000:\nstaff:x:50:alice\n');
  await execa('tar', ['-C', path.join(base, 'rootfs'), '-cf', path.join(tmp.dir, 'base.tar'), '.']);
  await podmanOk(['import', path.join(tmp.dir, 'base.tar'), 'localhost/husk-rootfs-base:latest']);

  const ctx = path.join(tmp.dir, 'ctx');
  fs.mkdirSync(ctx);
  fs.writeFileSync(path.join(ctx, 'xattr-file'), 'xattr\n');
  lsetxattr(path.join(ctx, 'xattr-file'), 'user.husk', Buffer.from('from-the-host'));
  fs.writeFileSync(path.join(ctx, 'Containerfile'), CONTAINERFILE);
  await podmanOk(['build', '--isolation=chroot', '-t', IMAGE, '-f', path.join(ctx, 'Containerfile'), ctx]);

  ociTar = path.join(tmp.dir, 'image-oci.tar');
  dockerTar = path.join(tmp.dir, 'image-docker.tar');
  ociDir = path.join(tmp.dir, 'image-oci-dir');
  await podmanOk(['save', '--format', 'oci-archive', '-o', ociTar, IMAGE]);
  await podmanOk(['save', '--format', 'docker-archive', '-o', dockerTar, IMAGE]);
  await podmanOk(['save', '--format', 'oci-dir', '-o', ociDir, IMAGE]);
});

afterAll(async () => {
  if (env) {
    await podman(['image', 'umount', '--all', '--force']);
    await podman(['system', 'reset', '--force']);
  }
  tmp?.cleanup();
});

describe('rootfs-builder on a podman-built multi-layer image', () => {
  let podmanTree: ReturnType<typeof snapshotTree>;

  it('builds the same tree from the oci-archive as podman mounts and umoci unpacks', async () => {
    const b = await createBundle(ociTar, path.join(tmp.dir, 'bundle-oci'));
    const mine = snapshotTree(path.join(b.dir, 'rootfs'), { mtimes: true });

    const mnt = (await podmanOk(['image', 'mount', IMAGE])).trim();
    podmanTree = snapshotTree(mnt, { mtimes: true });
    await podmanOk(['image', 'umount', IMAGE]);
    // The overlay mount's own root directory is podman's (0555), not the image's.
    expect(diffTrees(mine, podmanTree, (p) => p === '/')).toEqual([]);

    const umociOut = path.join(tmp.dir, 'umoci-bundle');
    const tag = fs.readFileSync(path.join(ociDir, 'index.json'), 'utf8').includes('ref.name') ? JSON.parse(fs.readFileSync(path.join(ociDir, 'index.json'), 'utf8')).manifests[0].annotations['org.opencontainers.image.ref.name'] : 'latest';
    await execa('umoci', ['unpack', '--image', `${ociDir}:${tag}`, umociOut]);
    expect(diffTrees(mine, snapshotTree(path.join(umociOut, 'rootfs'), { mtimes: true }))).toEqual([]);

    // The features the image was made to have are really there.
    expect(mine.has('/gone')).toBe(false);
    expect(mine.has('/gonedir')).toBe(false);
    expect(mine.has('/opq/old')).toBe(false);
    expect(mine.has('/opq/deep')).toBe(false);
    expect(mine.get('/opq/new')?.type).toBe('file');
    expect(mine.get('/data/a-hard')?.linkGroup).toBe('/data/a');
    expect(mine.get('/link')).toMatchObject({ type: 'symlink', data: '../data/a' });
    expect(mine.get('/abs-link')).toMatchObject({ type: 'symlink', data: '/data/sub' });
    expect(mine.get('/suid')?.mode).toBe('4755');
    expect(mine.get('/data/sub')?.mode).toBe('2710');
    expect(mine.get('/dev-null')).toMatchObject({ type: 'char', data: '1,3' });
    expect(mine.get('/owned')).toMatchObject({ uid: 1000, gid: 50 });
    expect(mine.get('/data/xattr-file')?.xattrs).toEqual({ 'user.husk': Buffer.from('from-the-host').toString('base64') });
    expect(mine.get('/bin/busybox')?.mode).toBe('0755');
  });

  it('builds the same tree from the docker-archive', async () => {
    const b = await createBundle(dockerTar, path.join(tmp.dir, 'bundle-docker'));
    expect(b.image.format).toBe('docker');
    expect(diffTrees(snapshotTree(path.join(b.dir, 'rootfs'), { mtimes: true }), podmanTree, (p) => p === '/')).toEqual([]);
  });

  it('writes config.json from the image config on top of the runc spec defaults', () => {
    const spec = JSON.parse(fs.readFileSync(path.join(tmp.dir, 'bundle-oci/config.json'), 'utf8')) as Spec;
    expect(spec.process!.args).toEqual(['echo', 'hi']);
    expect(spec.process!.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [50] });
    expect(spec.process!.cwd).toBe('/data');
    expect(spec.process!.env).toContain('FOO=bar');
    expect(spec.process!.env).toContain('HOME=/home/alice');
    expect(spec.process!.env!.some((e) => e.startsWith('PATH='))).toBe(true);
    expect(spec.annotations!['org.opencontainers.image.exposedPorts']!.split(',').sort()).toEqual(['53/udp', '8080/tcp']);
    expect(spec.annotations!['org.example.k']).toBe('v');
    expect(spec.annotations!['org.opencontainers.image.architecture']).toBe('amd64');
    expect(spec.linux!.namespaces!.map((n) => n.type)).toEqual(['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup']);
    expect(spec.linux!.maskedPaths).toContain('/proc/kcore');
    expect(spec.mounts!.map((m) => m.destination)).toContain('/dev/pts');
    expect(spec.root).toEqual({ path: 'rootfs', readonly: false });
  });
});

describe('husk bundle create + husk run', () => {
  it('`husk bundle create --image` makes a bundle that `husk run --bundle` runs', async () => {
    const root = path.join(tmp.dir, 'state');
    const dir = path.join(tmp.dir, 'cli-bundle');
    const created = await husk(root, ['bundle', 'create', '--image', ociTar, dir]);
    expect(created.exitCode, Buffer.from(created.stderr as Uint8Array).toString()).toBe(0);
    const r = await husk(root, ['run', '--bundle', dir, uniqueId('img')]);
    expect(r.exitCode, Buffer.from(r.stderr as Uint8Array).toString()).toBe(0);
    expect(Buffer.from(r.stdout as Uint8Array).toString()).toBe('hi\n');
  });

  it('`husk run --image ARCHIVE --rm ID echo hi` prints hi', async () => {
    const env = { ...process.env, HUSK_CACHE_DIR: path.join(tmp.dir, 'run-image-cache') };
    const r = await husk(path.join(tmp.dir, 'state'), ['run', '--image', ociTar, '--rm', uniqueId('runimg'), 'echo', 'hi'], { env });
    expect(r.exitCode, Buffer.from(r.stderr as Uint8Array).toString()).toBe(0);
    expect(Buffer.from(r.stdout as Uint8Array).toString()).toBe('hi\n');
  });

  it('`husk bundle create` fails with one line and leaves nothing for a bad archive', async () => {
    const root = path.join(tmp.dir, 'state');
    const bad = path.join(tmp.dir, 'not-an-image.tar');
    fs.writeFileSync(bad, makeTar([{ name: 'hello.txt', content: 'hi' }]));
    const dir = path.join(tmp.dir, 'bad-bundle');
    const r = await husk(root, ['bundle', 'create', '--image', bad, dir]);
    const err = Buffer.from(r.stderr as Uint8Array).toString();
    expect(r.exitCode).not.toBe(0);
    expect(err).toMatch(/^husk: .*not-an-image\.tar: neither an OCI image layout \(index\.json\) nor a docker-archive \(manifest\.json\)\n$/);
    expect(fs.existsSync(dir)).toBe(false);
  });
});

describe('ensureCachedBundle (what `husk run --image` uses)', () => {
  it('builds once per image, safely under concurrent callers, and runs', async () => {
    const cache = path.join(tmp.dir, 'cache');
    const before = process.env.HUSK_CACHE_DIR;
    process.env.HUSK_CACHE_DIR = cache;
    try {
      const [a, b] = await Promise.all([ensureCachedBundle(ociTar), ensureCachedBundle(dockerTar)]);
      expect(a).toBe(b); // same image ID from both archive formats
      expect(path.dirname(a)).toBe(path.join(cache, 'bundles'));
      expect(fs.readdirSync(path.join(cache, 'bundles'))).toEqual([path.basename(a)]); // no partial dirs left
      const spec = JSON.parse(fs.readFileSync(path.join(a, 'config.json'), 'utf8')) as Spec;
      expect(spec.root).toEqual({ path: 'rootfs', readonly: true });
      const variant = await ensureCachedBundle(ociTar, { args: ['echo', 'from the cache'] });
      expect(JSON.parse(fs.readFileSync(path.join(variant, 'config.json'), 'utf8')).process.args).toEqual(['echo', 'from the cache']);
      const r = await husk(path.join(tmp.dir, 'state'), ['run', '--bundle', variant, uniqueId('cached')]);
      expect(r.exitCode, Buffer.from(r.stderr as Uint8Array).toString()).toBe(0);
      expect(Buffer.from(r.stdout as Uint8Array).toString()).toBe('from the cache\n');
    } finally {
      if (before === undefined) delete process.env.HUSK_CACHE_DIR;
      else process.env.HUSK_CACHE_DIR = before;
    }
  });
});
