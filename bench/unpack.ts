// Unpack benchmark: rootfs-builder against `umoci unpack` on the same OCI
// layout (a Debian bookworm minbase tree made by debootstrap, one gzip
// layer, about 200 MB unpacked), measured in the same run, alternating.
// Prints JSON: median wall time and median peak RSS (GNU time's %M) for
// each, and whether the two trees are identical.
//
//   node dist/bench/unpack.js          (BENCH_RUNS=5; BENCH_ROOTFS=DIR to use an existing tree)
//
// The image is made once and cached in ${HUSK_CACHE_DIR:-/var/cache/husk}/bench/.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { diffTrees, snapshotTree } from '../rootfs-builder/tree.js';
import { median, printJson, round } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const ROOT = path.resolve(import.meta.dirname, '../..');
const CACHE = path.join(process.env.HUSK_CACHE_DIR || '/var/cache/husk', 'bench');
const LAYOUT = path.join(CACHE, 'debootstrap-bookworm-oci');
const REF = 'debootstrap';

class Hasher extends Transform {
  hash = crypto.createHash('sha256');
  bytes = 0;
  override _transform(c: Buffer, _e: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(c);
    this.bytes += c.length;
    cb(null, c);
  }
  hex(): string {
    return this.hash.digest('hex');
  }
}

function run(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal})`);
}

/** Makes the OCI layout from a debootstrap tree (once). */
async function ensureImage(): Promise<void> {
  if (fs.existsSync(path.join(LAYOUT, 'index.json'))) return;
  fs.mkdirSync(CACHE, { recursive: true });
  let tree = process.env.BENCH_ROOTFS;
  const scratch = `${LAYOUT}.partial-${process.pid}`;
  fs.rmSync(scratch, { recursive: true, force: true });
  fs.mkdirSync(path.join(scratch, 'blobs/sha256'), { recursive: true });
  try {
    if (!tree) {
      tree = path.join(scratch, 'debootstrap');
      process.stderr.write('bench: debootstrap --variant=minbase bookworm (once; needs the Debian mirror)\n');
      run('debootstrap', ['--variant=minbase', 'bookworm', tree, 'http://deb.debian.org/debian']);
    }
    process.stderr.write(`bench: packing ${tree} into an OCI layout\n`);
    const tarProc = spawn('tar', ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--sort=name', '-C', tree, '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const diff = new Hasher();
    const blob = new Hasher();
    const tmpBlob = path.join(scratch, 'blobs/sha256/layer.tmp');
    await pipeline(tarProc.stdout, diff, zlib.createGzip({ level: 6 }), blob, fs.createWriteStream(tmpBlob));
    const blobDigest = blob.hex();
    fs.renameSync(tmpBlob, path.join(scratch, 'blobs/sha256', blobDigest));
    const put = (obj: unknown) => {
      const b = Buffer.from(JSON.stringify(obj));
      const d = crypto.createHash('sha256').update(b).digest('hex');
      fs.writeFileSync(path.join(scratch, 'blobs/sha256', d), b);
      return { digest: `sha256:${d}`, size: b.length };
    };
    const config = put({
      os: 'linux', architecture: 'amd64', created: new Date().toISOString(),
      config: { Cmd: ['/bin/bash'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
      rootfs: { type: 'layers', diff_ids: [`sha256:${diff.hex()}`] },
    });
    const manifest = put({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${blobDigest}`, size: blob.bytes }],
    });
    fs.writeFileSync(path.join(scratch, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    fs.writeFileSync(path.join(scratch, 'index.json'), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest, annotations: { 'org.opencontainers.image.ref.name': REF } }],
    }));
    fs.rmSync(path.join(scratch, 'debootstrap'), { recursive: true, force: true });
    fs.renameSync(scratch, LAYOUT);
  } catch (err) {
    fs.rmSync(scratch, { recursive: true, force: true });
    throw err;
  }
}

interface Sample { seconds: number; peakRssMiB: number }

/** Runs a command under GNU time: wall seconds and peak RSS. */
function timed(cmd: string, args: string[]): Sample {
  const r = spawnSync('/usr/bin/time', ['-f', 'HUSKTIME %e %M', cmd, ...args], { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  const m = /HUSKTIME ([\d.]+) (\d+)/.exec(r.stderr ?? '');
  if (r.status !== 0 || !m) throw new Error(`${cmd} failed: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`);
  return { seconds: Number(m[1]), peakRssMiB: Number(m[2]) / 1024 };
}

function summary(samples: Sample[]) {
  return {
    medianSeconds: round(median(samples.map((s) => s.seconds)), 2),
    medianPeakRssMiB: round(median(samples.map((s) => s.peakRssMiB)), 1),
    maxPeakRssMiB: round(Math.max(...samples.map((s) => s.peakRssMiB)), 1),
    samples: samples.map((s) => ({ seconds: s.seconds, peakRssMiB: round(s.peakRssMiB, 1) })),
  };
}

async function main(): Promise<void> {
  await ensureImage();
  const work = fs.mkdtempSync(path.join(CACHE, 'run-'));
  const node = process.execPath;
  const cli = path.join(ROOT, 'dist/rootfs-builder/cli.js');
  const husk: Sample[] = [];
  const umoci: Sample[] = [];
  let treeDiffs: string[] | undefined;
  try {
    for (let i = 0; i < RUNS; i++) {
      const a = path.join(work, `husk-${i}`);
      const b = path.join(work, `umoci-${i}`);
      // Alternate which goes first so page-cache warmth favours neither.
      const order = i % 2 === 0 ? ['husk', 'umoci'] : ['umoci', 'husk'];
      for (const who of order) {
        if (who === 'husk') husk.push(timed(node, [cli, 'create', '-q', '--image', LAYOUT, a]));
        else umoci.push(timed('umoci', ['unpack', '--image', `${LAYOUT}:${REF}`, b]));
      }
      if (treeDiffs === undefined) {
        treeDiffs = diffTrees(snapshotTree(path.join(a, 'rootfs'), { mtimes: true }), snapshotTree(path.join(b, 'rootfs'), { mtimes: true }));
      }
      fs.rmSync(a, { recursive: true, force: true });
      fs.rmSync(b, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  const index = JSON.parse(fs.readFileSync(path.join(LAYOUT, 'index.json'), 'utf8'));
  const manifest = JSON.parse(fs.readFileSync(path.join(LAYOUT, 'blobs/sha256', index.manifests[0].digest.slice(7)), 'utf8'));
  const h = summary(husk);
  const u = summary(umoci);
  printJson({
    bench: 'unpack',
    image: { source: process.env.BENCH_ROOTFS ? `tree ${process.env.BENCH_ROOTFS}` : 'debootstrap --variant=minbase bookworm', layout: LAYOUT, layerGzipMiB: round(manifest.layers[0].size / 1048576, 1) },
    runs: RUNS,
    husk: { command: `node dist/rootfs-builder/cli.js create -q --image ${LAYOUT} DIR`, ...h },
    umoci: { command: `umoci unpack --image ${LAYOUT}:${REF} DIR`, ...u },
    timeRatio: round(h.medianSeconds / u.medianSeconds, 2),
    identicalTrees: treeDiffs?.length === 0,
    treeDifferences: treeDiffs?.slice(0, 20),
    goals: { notSlowerThanUmoci: h.medianSeconds <= u.medianSeconds, peakRssUnder100MiB: h.maxPeakRssMiB < 100 },
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${(err as Error).message}\n`);
  process.exit(1);
});
