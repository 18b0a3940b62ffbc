// rootfs-builder semantics on hand-made images: whiteouts and opaque
// directories (wherever the marker sits in the layer), binary xattrs,
// compressions, docker-archives, platform selection, digest checks, and the
// image config -> config.json conversion (user resolution, args, env).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createBundle } from '../../rootfs-builder/build.js';
import { imageSpec, readFileInRoot, resolveUser } from '../../rootfs-builder/config.js';
import { ImageError } from '../../rootfs-builder/errors.js';
import { parsePlatform, platformMatches } from '../../rootfs-builder/image.js';
import { makeTar, tarDirectory, writeDockerArchiveDir, writeMultiArchLayout, writeOciLayout, type TarEntry } from '../../rootfs-builder/layout-writer.js';
import { lgetxattrs } from '../../rootfs-builder/native.js';
import type { Spec } from '../../src/oci/spec.js';

let tmp: string;
let seq = 0;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-rootfs-unit-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const next = (p: string) => path.join(tmp, `${p}-${seq++}`);

async function build(layers: TarEntry[][], opts: { compression?: 'none' | 'gzip' | 'zstd'; config?: object } = {}) {
  const dir = next('img');
  writeOciLayout(dir, { layers: layers.map((l) => ({ tar: makeTar(l), compression: opts.compression ?? 'gzip' })), config: opts.config });
  const out = next('bundle');
  await createBundle(dir, out);
  return { rootfs: path.join(out, 'rootfs'), bundle: out, spec: JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Spec };
}

const ls = (dir: string) => fs.readdirSync(dir).sort();

describe('layers', () => {
  it('applies whiteouts to lower layers only, wherever they sit in the layer', async () => {
    const { rootfs } = await build([
      [{ name: 'a' }, { name: 'a/lower', content: '1' }, { name: 'a/keep', content: '1' }, { name: 'b', content: 'x' }],
      [{ name: 'a/new', content: '2' }, { name: 'a/.wh.lower', content: '' }, { name: 'a/.wh.new', content: '' }, { name: '.wh.b', content: '' }, { name: '.wh.missing', content: '' }],
    ]);
    expect(ls(path.join(rootfs, 'a'))).toEqual(['keep', 'new']);
    expect(fs.existsSync(path.join(rootfs, 'b'))).toBe(false);
  });

  it('opaque directories hide every lower entry, even deep under dirs the layer also writes', async () => {
    const { rootfs } = await build([
      [{ name: 'd' }, { name: 'd/old', content: '1' }, { name: 'd/sub' }, { name: 'd/sub/old', content: '1' }, { name: 'other', content: 'kept' }],
      // marker after the layer's own entries: they must survive it
      [{ name: 'd' }, { name: 'd/sub' }, { name: 'd/sub/new', content: '2' }, { name: 'd/.wh..wh..opq', content: '' }, { name: 'd/.wh..wh.plnk' }],
    ]);
    expect(ls(path.join(rootfs, 'd'))).toEqual(['sub']);
    expect(ls(path.join(rootfs, 'd/sub'))).toEqual(['new']);
    expect(fs.readFileSync(path.join(rootfs, 'other'), 'utf8')).toBe('kept');
  });

  it('replaces files by dirs and dirs by files or symlinks, and keeps metadata', async () => {
    const mtime = new Date(1_600_000_000_000);
    const { rootfs } = await build([
      [{ name: 'x', content: 'file' }, { name: 'y' }, { name: 'y/inner', content: 'z' }],
      [{ name: 'x', mode: 0o750, uid: 12, gid: 34, mtime }, { name: 'y', type: 'symlink', linkname: 'x' }, { name: 'f', content: 'q', mode: 0o4711, uid: 5, gid: 6, mtime }],
    ]);
    const x = fs.lstatSync(path.join(rootfs, 'x'));
    expect(x.isDirectory()).toBe(true);
    expect([x.mode & 0o7777, x.uid, x.gid, x.mtimeMs]).toEqual([0o750, 12, 34, mtime.getTime()]);
    expect(fs.readlinkSync(path.join(rootfs, 'y'))).toBe('x');
    const f = fs.lstatSync(path.join(rootfs, 'f'));
    expect([f.mode & 0o7777, f.uid, f.gid, f.mtimeMs]).toEqual([0o4711, 5, 6, mtime.getTime()]);
  });

  it('keeps binary xattr values byte for byte, and makes hardlinks and fifos', async () => {
    const bin = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x80, 0xff, 0x00, 0x20, 0xc3, 0x28]);
    const { rootfs } = await build([[
      { name: 'cap', content: 'x', xattrs: { 'user.bin': bin, 'user.text': 'héllo' } },
      { name: 'cap-link', type: 'link', linkname: 'cap' },
      { name: 'pipe', type: 'fifo' },
      { name: `${'long-name-'.repeat(12)}/${'file-'.repeat(25)}`, content: 'deep' },
    ]]);
    const xs = lgetxattrs(path.join(rootfs, 'cap'));
    expect(xs.get('user.bin')).toEqual(bin);
    expect(xs.get('user.text')?.toString()).toBe('héllo');
    expect(fs.statSync(path.join(rootfs, 'cap')).ino).toBe(fs.statSync(path.join(rootfs, 'cap-link')).ino);
    expect(fs.lstatSync(path.join(rootfs, 'pipe')).isFIFO()).toBe(true);
    expect(fs.readFileSync(path.join(rootfs, `${'long-name-'.repeat(12)}/${'file-'.repeat(25)}`), 'utf8')).toBe('deep');
  });

  it.each(['none', 'gzip', 'zstd'] as const)('reads %s layers', async (compression) => {
    const { rootfs } = await build([[{ name: 'hello', content: 'world' }]], { compression });
    expect(fs.readFileSync(path.join(rootfs, 'hello'), 'utf8')).toBe('world');
  });

  it('reads docker-archives (dir and tar; plain and gzip layers) and checks diff_ids', async () => {
    const dir = next('docker');
    const { configDigest } = writeDockerArchiveDir(dir, { layers: [{ tar: makeTar([{ name: 'a', content: '1' }]) }, { tar: makeTar([{ name: 'b', content: '2' }]), compression: 'gzip' }] });
    const tarFile = `${dir}.tar`;
    tarDirectory(dir, tarFile);
    for (const archive of [dir, tarFile]) {
      const r = await createBundle(archive, next('bundle'));
      expect(r.image.id).toBe(configDigest);
      expect(ls(path.join(r.dir, 'rootfs'))).toEqual(['a', 'b']);
    }
    const layer = fs.readdirSync(dir).find((n) => n.endsWith('.tar'))!;
    fs.writeFileSync(path.join(dir, layer), makeTar([{ name: 'a', content: 'tampered' }]));
    await expect(createBundle(dir, next('bundle'))).rejects.toThrow(/layer diff_id mismatch: expected sha256:[0-9a-f]{64}, got/);
  });

  it('picks linux/amd64 from a multi-platform index by default, or the --platform asked for', async () => {
    const dir = next('multi');
    writeMultiArchLayout(dir, [
      { layers: [{ tar: makeTar([{ name: 'arch', content: 'arm64' }]) }], platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { layers: [{ tar: makeTar([{ name: 'arch', content: 'amd64' }]) }], platform: { os: 'linux', architecture: 'amd64' } },
    ]);
    const amd = await createBundle(dir, next('bundle'));
    expect(fs.readFileSync(path.join(amd.dir, 'rootfs/arch'), 'utf8')).toBe('amd64');
    const arm = await createBundle(dir, next('bundle'), { platform: 'linux/arm64' });
    expect(fs.readFileSync(path.join(arm.dir, 'rootfs/arch'), 'utf8')).toBe('arm64');
    await expect(createBundle(dir, next('bundle'), { platform: 'linux/s390x' })).rejects.toThrow(/no image for linux\/s390x \(the archive has linux\/arm64\/v8, linux\/amd64\)/);
    await expect(createBundle(dir, next('bundle'), { platform: 'linux' })).rejects.toThrow(ImageError);
  });

  it('refuses a destination that exists and is not empty, and leaves it alone', async () => {
    const dir = next('img');
    writeOciLayout(dir, { layers: [{ tar: makeTar([{ name: 'a', content: '1' }]) }] });
    const dest = next('busy');
    fs.mkdirSync(dest);
    fs.writeFileSync(path.join(dest, 'mine'), 'x');
    await expect(createBundle(dir, dest)).rejects.toThrow(/already exists and is not an empty directory/);
    expect(ls(dest)).toEqual(['mine']);
  });
});

describe('platforms', () => {
  it('parses and matches os/arch/variant', () => {
    expect(parsePlatform(undefined)).toEqual({ os: 'linux', architecture: 'amd64', variant: undefined });
    expect(parsePlatform('linux/x86_64').architecture).toBe('amd64');
    expect(platformMatches(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: 'v8' })).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm64/v8'), { os: 'linux', architecture: 'arm64' })).toBe(true);
    expect(platformMatches(parsePlatform('linux/arm/v6'), { os: 'linux', architecture: 'arm', variant: 'v7' })).toBe(false);
    expect(() => parsePlatform('amd64')).toThrow(/expected OS\/ARCH/);
  });
});

describe('config.json from the image config', () => {
  let rootfs: string;
  beforeAll(() => {
    rootfs = next('rootfs');
    fs.mkdirSync(path.join(rootfs, 'etc'), { recursive: true });
    fs.mkdirSync(path.join(rootfs, 'real'), { recursive: true });
    fs.writeFileSync(path.join(rootfs, 'real/passwd'), 'root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1002:Bob:/home/bob:/bin/sh\n');
    fs.symlinkSync('/real/passwd', path.join(rootfs, 'etc/passwd')); // absolute: resolved inside the rootfs
    fs.writeFileSync(path.join(rootfs, 'etc/group'), 'root:x:0:\nbob:x:1002:\nwheel:x:10:bob,alice\naudio:x:29:bob\n');
  });

  it('resolves users and groups against the rootfs', () => {
    expect(resolveUser(rootfs, '')).toEqual({ user: { uid: 0, gid: 0 }, home: '/root' });
    expect(resolveUser(rootfs, 'bob')).toEqual({ user: { uid: 1001, gid: 1002, additionalGids: [10, 29] }, home: '/home/bob' });
    expect(resolveUser(rootfs, 'bob:wheel').user).toEqual({ uid: 1001, gid: 10 });
    expect(resolveUser(rootfs, '1001').user).toEqual({ uid: 1001, gid: 1002 });
    expect(resolveUser(rootfs, '4242').user).toEqual({ uid: 4242, gid: 0 });
    expect(resolveUser(rootfs, '4242:77').user).toEqual({ uid: 4242, gid: 77 });
    expect(() => resolveUser(rootfs, 'nobody')).toThrow(/^unable to find user nobody: no matching entries in passwd file$/);
    expect(() => resolveUser(rootfs, 'bob:nogroup')).toThrow(/unable to find group nogroup/);
  });

  it('never reads outside the rootfs through symlinks', () => {
    const outside = next('outside');
    fs.writeFileSync(outside, 'secret');
    fs.symlinkSync(`../../../../../../../..${outside}`, path.join(rootfs, 'escape'));
    expect(readFileInRoot(rootfs, 'escape')).toBeUndefined();
    expect(readFileInRoot(rootfs, 'etc/passwd')).toContain('bob');
  });

  it('maps Entrypoint, Cmd, Env, WorkingDir, labels and ports', () => {
    const config = {
      os: 'linux', architecture: 'amd64',
      config: {
        Entrypoint: ['/bin/app'], Cmd: ['--serve'], Env: ['PATH=/app/bin', 'A=b=c'], WorkingDir: 'srv', User: 'bob',
        ExposedPorts: { '80/tcp': {} }, Labels: { 'org.opencontainers.image.os': 'from-label', x: '' }, StopSignal: 'SIGQUIT',
      },
      rootfs: { type: 'layers', diff_ids: [] },
    };
    const spec = imageSpec(config, rootfs);
    expect(spec.process!.args).toEqual(['/bin/app', '--serve']);
    expect(spec.process!.env).toEqual(['PATH=/app/bin', 'A=b=c', 'HOME=/home/bob']);
    expect(spec.process!.cwd).toBe('/srv');
    expect(spec.process!.terminal).toBe(false);
    expect(spec.annotations).toMatchObject({
      'org.opencontainers.image.os': 'from-label', 'org.opencontainers.image.exposedPorts': '80/tcp',
      'org.opencontainers.image.stopSignal': 'SIGQUIT', x: '',
    });
    expect(imageSpec(config, rootfs, { args: ['--check'] }).process!.args).toEqual(['/bin/app', '--check']);
    expect(() => imageSpec({ config: {} }, rootfs)).toThrow(/no Entrypoint or Cmd/);
  });
});
