// Image archive -> OCI bundle (config.json + rootfs/), built in a temporary
// sibling directory and renamed into place, so a bundle either exists whole
// or not at all. Also the per-image bundle cache used by `husk run --image`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { applyLayer, RootfsWriter } from './apply.js';
import { imageSpec, processArgs } from './config.js';
import { ImageError, asImageError, errCode } from './errors.js';
import { resolveImage, type ResolvedImage } from './image.js';
import { openSource } from './source.js';
import type { Spec } from '../src/oci/spec.js';

export interface LayerProgress {
  layer: number;
  layers: number;
  digest: string;
  /** bytes of the blob read so far, and its size (as stored: compressed) */
  done: number;
  total: number;
}

export interface BuildOptions {
  /** os/arch[/variant]; default linux/amd64 */
  platform?: string;
  /** picks one image in an archive holding several */
  ref?: string;
  /** replaces the image's Cmd */
  args?: string[];
  readonlyRoot?: boolean;
  terminal?: boolean;
  onProgress?: (p: LayerProgress) => void;
  onWarning?: (msg: string) => void;
}

export interface BuildResult {
  dir: string;
  image: ResolvedImage;
  warnings: string[];
}

const partials = new Set<string>();

/** Removes bundles still being built by this process (call on SIGINT/SIGTERM). */
export function removePartialBuilds(): void {
  for (const d of partials) fs.rmSync(d, { recursive: true, force: true });
  partials.clear();
}

function tempSibling(dest: string): string {
  const base = path.basename(dest);
  return path.join(path.dirname(dest), `.${base}.partial-${process.pid}-${crypto.randomBytes(4).toString('hex')}`);
}

/** Builds the rootfs and config.json of `img` into `work` (an empty directory). */
async function buildInto(work: string, archive: string, img: ResolvedImage, opts: BuildOptions): Promise<string[]> {
  const src = openSource(archive);
  try {
    const rootfs = path.join(work, 'rootfs');
    fs.mkdirSync(rootfs, 0o755);
    const w = new RootfsWriter(rootfs);
    for (const [i, layer] of img.layers.entries()) {
      const short = (layer.digest ?? layer.diffId).slice(0, 19);
      const what = `layer ${i + 1}/${img.layers.length} (${short})`;
      const total = layer.size ?? src.size(layer.member) ?? 0;
      let done = 0;
      const report = opts.onProgress;
      report?.({ layer: i + 1, layers: img.layers.length, digest: layer.digest ?? layer.diffId, done, total });
      await applyLayer(src, layer, w, {
        what,
        onBytes: report
          ? (n) => {
              done += n;
              report({ layer: i + 1, layers: img.layers.length, digest: layer.digest ?? layer.diffId, done, total });
            }
          : undefined,
      });
    }
    w.finish();
    const spec = imageSpec(img.config, rootfs, { args: opts.args, readonlyRoot: opts.readonlyRoot, terminal: opts.terminal });
    writeJsonAtomic(path.join(work, 'config.json'), spec);
    for (const m of w.warnings) opts.onWarning?.(m);
    return w.warnings;
  } finally {
    src.close();
  }
}

function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
  fs.writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  fs.renameSync(tmp, file);
}

/**
 * Creates the bundle `dir` (which must not exist, or be an empty directory)
 * from an image archive. On any failure nothing is left behind.
 */
export async function createBundle(archive: string, dir: string, opts: BuildOptions = {}): Promise<BuildResult> {
  const dest = path.resolve(dir);
  const src = openSource(archive);
  let img: ResolvedImage;
  try {
    img = resolveImage(src, opts);
  } finally {
    src.close();
  }
  let destIsEmptyDir = false;
  try {
    const st = fs.lstatSync(dest);
    if (!st.isDirectory() || fs.readdirSync(dest).length > 0) throw new ImageError(`${dest} already exists and is not an empty directory`);
    destIsEmptyDir = true;
  } catch (err) {
    if (errCode(err) !== 'ENOENT') throw asImageError(err, dest);
  }
  if (!fs.existsSync(path.dirname(dest))) throw new ImageError(`${path.dirname(dest)} does not exist`);
  const work = tempSibling(dest);
  partials.add(work);
  try {
    fs.mkdirSync(work, 0o700);
    const warnings = await buildInto(work, archive, img, opts);
    fs.chmodSync(work, 0o755);
    if (destIsEmptyDir) fs.rmdirSync(dest);
    fs.renameSync(work, dest);
    return { dir: dest, image: img, warnings };
  } catch (err) {
    throw asImageError(err, `building ${dest}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
    partials.delete(work);
  }
}

export function cacheRoot(): string {
  return path.join(process.env.HUSK_CACHE_DIR || '/var/cache/husk', 'bundles');
}

/** Removes leftovers of builds whose process is gone (a crash or SIGKILL mid-build). */
function sweepStale(root: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(root);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /\.partial-(\d+)-[0-9a-f]+$/.exec(n);
    if (!m) continue;
    const pid = Number(m[1]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch (err) {
      alive = errCode(err) !== 'ESRCH';
    }
    if (!alive) fs.rmSync(path.join(root, n), { recursive: true, force: true });
  }
}

export interface CacheOptions {
  platform?: string;
  ref?: string;
  /** replaces the image's Cmd; a variant config.json is made for it */
  args?: string[];
  onProgress?: (p: LayerProgress) => void;
}

/**
 * The bundle for an image archive, from the cache
 * (`${HUSK_CACHE_DIR:-/var/cache/husk}/bundles/<sha256-imageid>/`), built once
 * (temp dir + rename: two concurrent callers both succeed, one build wins).
 * The cached rootfs is shared by every run of the image, so its config says
 * `root.readonly: true`. With `args`, returns a variant bundle directory whose
 * config.json runs Entrypoint + args on the same rootfs.
 */
export async function ensureCachedBundle(archive: string, opts: { platform?: string; args?: string[] } & CacheOptions = {}): Promise<string> {
  const src = openSource(archive);
  let img: ResolvedImage;
  try {
    img = resolveImage(src, opts);
  } finally {
    src.close();
  }
  const root = cacheRoot();
  try {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw asImageError(err, `bundle cache ${root}`);
  }
  sweepStale(root);
  const final = path.join(root, img.id.replace(':', '-'));
  if (!fs.existsSync(path.join(final, 'config.json'))) {
    const work = tempSibling(final);
    partials.add(work);
    try {
      fs.mkdirSync(work, 0o700);
      await buildInto(work, archive, img, { platform: opts.platform, ref: opts.ref, readonlyRoot: true, onProgress: opts.onProgress });
      fs.chmodSync(work, 0o755);
      try {
        fs.renameSync(work, final);
      } catch (err) {
        // Another husk finished the same image first: use its bundle.
        const code = errCode(err);
        if ((code !== 'ENOTEMPTY' && code !== 'EEXIST') || !fs.existsSync(path.join(final, 'config.json'))) throw err;
      }
    } catch (err) {
      throw asImageError(err, `building cached bundle for ${archive}`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
      partials.delete(work);
    }
  }
  if (!opts.args || opts.args.length === 0) return final;
  const args = processArgs(img.config, opts.args);
  const key = crypto.createHash('sha256').update(JSON.stringify(args)).digest('hex').slice(0, 16);
  const variant = path.join(final, 'variants', key);
  if (!fs.existsSync(path.join(variant, 'config.json'))) {
    const base = JSON.parse(fs.readFileSync(path.join(final, 'config.json'), 'utf8')) as Spec;
    base.process!.args = args;
    base.root = { path: path.join(final, 'rootfs'), readonly: true };
    fs.mkdirSync(variant, { recursive: true });
    writeJsonAtomic(path.join(variant, 'config.json'), base);
  }
  return variant;
}
