// Crafted image archives that must fail: entries escaping the rootfs (by
// name, through a symlink, by hardlink), a wrong layer digest, truncated
// layers. Each fails with one ImageError line and leaves nothing behind:
// no bundle, no partial directory, nothing written outside.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { createBundle } from '../../rootfs-builder/build.js';
import { ImageError } from '../../rootfs-builder/errors.js';
import { makeTar, tarDirectory, writeOciLayout, type TarEntry } from '../../rootfs-builder/layout-writer.js';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-rootfs-sec-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const base: TarEntry[] = [{ name: 'etc' }, { name: 'etc/hostname', content: 'x\n' }, { name: 'tmp', mode: 0o1777 }];

let seq = 0;
function layout(layers: TarEntry[][], compression: 'none' | 'gzip' = 'gzip') {
  const dir = path.join(tmp, `img-${seq++}`);
  const w = writeOciLayout(dir, { layers: layers.map((l) => ({ tar: makeTar(l), compression })) });
  return { dir, ...w };
}

/** Expects a clean failure: ImageError, one line, no bundle, no partial dirs next to it. */
async function expectFailure(archive: string, pattern: RegExp): Promise<string> {
  const parent = fs.mkdtempSync(path.join(tmp, 'out-'));
  const dest = path.join(parent, 'bundle');
  const err = await createBundle(archive, dest).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ImageError);
  const msg = (err as Error).message;
  expect(msg).toMatch(pattern);
  expect(msg).not.toContain('\n');
  expect(fs.readdirSync(parent)).toEqual([]);
  return msg;
}

describe('rootfs-builder refuses crafted archives', () => {
  it('a path-traversal entry (..)', async () => {
    const victim = path.join(tmp, 'victim-dotdot');
    const rel = path.relative('/', victim);
    const img = layout([[...base, { name: `../../../../../../../../${rel}`, content: 'pwned' }]]);
    await expectFailure(img.dir, /entry "\.\.\/.*": path with "\.\." would escape the rootfs/);
    expect(fs.existsSync(victim)).toBe(false);
  });

  it('an absolute entry name', async () => {
    const victim = path.join(tmp, 'victim-abs');
    const img = layout([[...base, { name: victim, content: 'pwned' }]]);
    await expectFailure(img.dir, /absolute path would escape the rootfs/);
    expect(fs.existsSync(victim)).toBe(false);
  });

  it('a symlink, then a write through it (same layer and a later layer)', async () => {
    const outside = fs.mkdtempSync(path.join(tmp, 'outside-'));
    const same = layout([[...base, { name: 'evil', type: 'symlink', linkname: outside }, { name: 'evil/pwned', content: 'pwned' }]]);
    await expectFailure(same.dir, /entry "evil\/pwned": path goes through the symlink \/evil/);
    const rel = layout([[...base, { name: 'up', type: 'symlink', linkname: '../../../../../../../..' }], [{ name: `up${outside}/pwned`, content: 'pwned' }]]);
    await expectFailure(rel.dir, /path goes through the symlink \/up/);
    // A directory entry through the symlink, and a whiteout through it.
    const dirThrough = layout([[...base, { name: 'evil', type: 'symlink', linkname: outside }, { name: 'evil/sub' }]]);
    await expectFailure(dirThrough.dir, /goes through the symlink \/evil/);
    fs.writeFileSync(path.join(outside, 'keep'), 'keep');
    const whiteoutThrough = layout([[...base, { name: 'evil', type: 'symlink', linkname: outside }], [{ name: 'evil/.wh.keep', content: '' }]]);
    await expectFailure(whiteoutThrough.dir, /goes through the symlink \/evil/);
    expect(fs.readdirSync(outside)).toEqual(['keep']);
  });

  it('a file replacing a symlink is written in the rootfs, never through the link', async () => {
    const outside = path.join(tmp, 'outside-file');
    fs.writeFileSync(outside, 'original');
    const img = layout([[...base, { name: 'etc/passwd', type: 'symlink', linkname: outside }], [{ name: 'etc/passwd', content: 'root:x:0:0::/root:/bin/sh\n' }]]);
    const dest = path.join(tmp, 'replaced-bundle');
    await createBundle(img.dir, dest);
    expect(fs.readFileSync(outside, 'utf8')).toBe('original');
    expect(fs.lstatSync(path.join(dest, 'rootfs/etc/passwd')).isFile()).toBe(true);
  });

  it('a hardlink to a file outside the rootfs, or through a symlink', async () => {
    const secret = path.join(tmp, 'secret');
    fs.writeFileSync(secret, 'secret');
    const abs = layout([[...base, { name: 'leak', type: 'link', linkname: secret }]]);
    await expectFailure(abs.dir, /absolute hardlink target would escape the rootfs/);
    const up = layout([[...base, { name: 'leak', type: 'link', linkname: `../../../../../../../..${secret}` }]]);
    await expectFailure(up.dir, /hardlink target with "\.\." would escape/);
    const via = layout([[...base, { name: 'd', type: 'symlink', linkname: tmp }, { name: 'leak', type: 'link', linkname: 'd/secret' }]]);
    await expectFailure(via.dir, /goes through the symlink \/d/);
    expect(fs.statSync(secret).nlink).toBe(1);
  });

  it('a wrong layer digest (same size, one byte changed)', async () => {
    const img = layout([base, [{ name: 'data', content: 'x'.repeat(4096) }]], 'none');
    const blob = path.join(img.dir, img.layerBlobs[1]!);
    const buf = fs.readFileSync(blob);
    buf[600] = buf[600]! ^ 0xff; // inside the file's data: the tar still parses
    fs.writeFileSync(blob, buf);
    const msg = await expectFailure(img.dir, /layer 2\/2 \(sha256:[0-9a-f]{12}\): layer digest mismatch: expected sha256:[0-9a-f]{64}, got sha256:[0-9a-f]{64}/);
    expect(msg).toContain(img.layerDigests[1]);
  });

  it('a blob whose size differs from its descriptor', async () => {
    const img = layout([base]);
    fs.appendFileSync(path.join(img.dir, img.layerBlobs[0]!), 'junk');
    await expectFailure(img.dir, /layer blob sha256:[0-9a-f]{64} has \d+ bytes, the manifest says \d+/);
  });

  it('a truncated layer (gzip and plain tar), even with digests that match the truncated blob', async () => {
    for (const compression of ['gzip', 'none'] as const) {
      const big = (await import('node:crypto')).randomBytes(200_000); // incompressible: a cut gzip stream really ends early
      const dir = path.join(tmp, `trunc-${compression}`);
      const tarBuf = makeTar([...base, { name: 'big', content: big }]);
      const cut = tarBuf.subarray(0, 100_000);
      const blob = compression === 'gzip' ? (await import('node:zlib')).gzipSync(tarBuf).subarray(0, 100_000) : cut;
      // Write a layout whose manifest and diff_id describe the truncated blob exactly.
      writeOciLayout(dir, { layers: [{ tar: Buffer.from('placeholder'), compression: 'none' }] });
      const crypto = await import('node:crypto');
      const sha = (b: Buffer) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;
      fs.rmSync(path.join(dir, 'blobs'), { recursive: true });
      fs.mkdirSync(path.join(dir, 'blobs/sha256'), { recursive: true });
      const put = (b: Buffer) => {
        const d = sha(b);
        fs.writeFileSync(path.join(dir, 'blobs/sha256', d.slice(7)), b);
        return { digest: d, size: b.length };
      };
      const layer = put(blob);
      const config = put(Buffer.from(JSON.stringify({ os: 'linux', architecture: 'amd64', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [sha(cut)] } })));
      const manifest = put(Buffer.from(JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: `application/vnd.oci.image.layer.v1.tar${compression === 'gzip' ? '+gzip' : ''}`, ...layer }],
      })));
      fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest }] }));
      await expectFailure(dir, /layer 1\/1 \(sha256:[0-9a-f]{12}\): truncated or corrupt layer \((unexpected end of (data|file))\)/);
    }
  });

  it('a truncated archive tar and a truncated layer inside it', async () => {
    const img = layout([base, [{ name: 'data', content: 'y'.repeat(100_000) }]], 'none');
    const archive = path.join(tmp, 'archive.tar');
    tarDirectory(img.dir, archive);
    const cut = path.join(tmp, 'archive-cut.tar');
    fs.writeFileSync(cut, fs.readFileSync(archive).subarray(0, fs.statSync(archive).size - 60_000));
    await expectFailure(cut, /archive-cut\.tar: truncated tar archive|has \d+ bytes, the manifest says|is missing/);
  });

  it('the CLI prints the error as one line and exits non-zero', () => {
    const img = layout([[...base, { name: '../escape', content: 'x' }]]);
    const cli = path.resolve(import.meta.dirname, '../../dist/rootfs-builder/cli.js');
    const dest = path.join(tmp, 'cli-out');
    let stderr = '';
    let status = 0;
    try {
      execFileSync(process.execPath, [cli, 'create', '-q', '--image', img.dir, dest], { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      stderr = String((e as { stderr: Buffer }).stderr);
      status = (e as { status: number }).status;
    }
    expect(status).toBe(1);
    expect(stderr).toMatch(/^rootfs-builder: layer 1\/1 \(sha256:[0-9a-f]{12}\): entry "\.\.\/escape": path with "\.\." would escape the rootfs\n$/);
    expect(fs.existsSync(dest)).toBe(false);
  });
});
