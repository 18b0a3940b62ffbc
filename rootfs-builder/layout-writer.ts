// Writing small OCI image layouts and docker-archives from hand-made layer
// tars: for tests (crafted and edge-case images) and the unpack benchmark.
// Not used when building bundles.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type { ImageConfig } from './image.js';

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'block-device' | 'fifo';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  mtime?: Date;
  devmajor?: number;
  devminor?: number;
  /** xattrs, written as SCHILY.xattr.* PAX records (values byte for byte) */
  xattrs?: Record<string, Buffer | string>;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

const TYPEFLAG: Record<NonNullable<TarEntry['type']>, string> = {
  file: '0', link: '1', symlink: '2', 'character-device': '3', 'block-device': '4', directory: '5', fifo: '6',
};

function octal(h: Buffer, off: number, len: number, v: number): void {
  h.write(Math.max(0, Math.floor(v)).toString(8).padStart(len - 1, '0') + '\0', off, 'latin1');
}

function header(name: string, type: string, size: number, e: Partial<TarEntry> = {}): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, Math.min(100, Buffer.byteLength(name)), 'utf8');
  octal(h, 100, 8, e.mode ?? 0o644);
  octal(h, 108, 8, e.uid ?? 0);
  octal(h, 116, 8, e.gid ?? 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, (e.mtime ?? new Date(1_700_000_000_000)).getTime() / 1000);
  h.write(type, 156, 'latin1');
  if (e.linkname) h.write(e.linkname, 157, Math.min(100, Buffer.byteLength(e.linkname)), 'utf8');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  octal(h, 329, 8, e.devmajor ?? 0);
  octal(h, 337, 8, e.devminor ?? 0);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);

/**
 * Builds an uncompressed tar in memory (tests only: such layers are small).
 * A writer of its own, so crafted entries (`..`, absolute names, binary
 * xattr values) are written exactly as given.
 */
export function makeTar(entries: TarEntry[]): Buffer {
  const out: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? (e.content !== undefined ? 'file' : 'directory');
    const content = typeof e.content === 'string' ? Buffer.from(e.content) : e.content ?? Buffer.alloc(0);
    const recs: Buffer[] = [];
    if (Buffer.byteLength(e.name) > 99) recs.push(paxRecord('path', Buffer.from(e.name)));
    if (e.linkname && Buffer.byteLength(e.linkname) > 99) recs.push(paxRecord('linkpath', Buffer.from(e.linkname)));
    for (const [k, v] of Object.entries(e.xattrs ?? {})) recs.push(paxRecord(`SCHILY.xattr.${k}`, Buffer.isBuffer(v) ? v : Buffer.from(v)));
    if (recs.length) {
      const body = Buffer.concat(recs);
      out.push(header('PaxHeader', 'x', body.length), body, pad(body.length));
    }
    const size = type === 'file' ? content.length : 0;
    const mode = e.mode ?? (type === 'directory' ? 0o755 : type === 'symlink' ? 0o777 : 0o644);
    out.push(header(type === 'directory' && !e.name.endsWith('/') ? `${e.name}/` : e.name, TYPEFLAG[type], size, { ...e, mode }));
    if (size) out.push(content, pad(size));
  }
  out.push(Buffer.alloc(1024));
  return Buffer.concat(out);
}

export type LayerCompression = 'none' | 'gzip' | 'zstd';

export function compress(tarBuf: Buffer, c: LayerCompression): Buffer {
  if (c === 'gzip') return zlib.gzipSync(tarBuf);
  if (c === 'zstd') return (zlib as unknown as { zstdCompressSync: (b: Buffer) => Buffer }).zstdCompressSync(tarBuf);
  return tarBuf;
}

const sha256 = (b: Buffer) => `sha256:${crypto.createHash('sha256').update(b).digest('hex')}`;

const LAYER_MT: Record<LayerCompression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

export interface LayoutLayer {
  tar: Buffer;
  compression?: LayerCompression;
}

export interface LayoutImage {
  layers: LayoutLayer[];
  config?: Partial<ImageConfig>;
  ref?: string;
  platform?: { os: string; architecture: string; variant?: string };
}

export interface WrittenImage {
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  /** blob paths relative to the layout, for tests that corrupt them */
  layerBlobs: string[];
}

function writeBlob(dir: string, data: Buffer): string {
  const d = sha256(data);
  const p = path.join(dir, 'blobs/sha256', d.slice(7));
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  return d;
}

/** Writes one image's blobs (layers, config, manifest) into an OCI layout dir. */
export function writeImageBlobs(dir: string, img: LayoutImage): WrittenImage & { manifestSize: number } {
  const layerDescs = img.layers.map((l) => {
    const c = l.compression ?? 'gzip';
    const blob = compress(l.tar, c);
    return { mediaType: LAYER_MT[c], digest: writeBlob(dir, blob), size: blob.length };
  });
  const platform = img.platform ?? { os: 'linux', architecture: 'amd64' };
  const config = {
    ...platform,
    created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['sh'] },
    ...img.config,
    rootfs: { type: 'layers', diff_ids: img.layers.map((l) => sha256(l.tar)) },
  };
  const configBuf = Buffer.from(JSON.stringify(config));
  const configDigest = writeBlob(dir, configBuf);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBuf.length },
    layers: layerDescs,
  }));
  const manifestDigest = writeBlob(dir, manifest);
  return {
    manifestDigest,
    manifestSize: manifest.length,
    configDigest,
    layerDigests: layerDescs.map((d) => d.digest),
    layerBlobs: layerDescs.map((d) => `blobs/sha256/${d.digest.slice(7)}`),
  };
}

/** A single-image OCI layout directory. */
export function writeOciLayout(dir: string, img: LayoutImage): WrittenImage {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const w = writeImageBlobs(dir, img);
  const desc: Record<string, unknown> = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: w.manifestDigest, size: w.manifestSize };
  if (img.ref) desc.annotations = { 'org.opencontainers.image.ref.name': img.ref };
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [desc] }));
  return w;
}

/** A multi-platform layout: index.json -> image index -> one manifest per platform. */
export function writeMultiArchLayout(dir: string, images: LayoutImage[], ref?: string): WrittenImage[] {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const written = images.map((img) => ({ img, w: writeImageBlobs(dir, img) }));
  const index = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: written.map(({ img, w }) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: w.manifestDigest,
      size: w.manifestSize,
      platform: img.platform ?? { os: 'linux', architecture: 'amd64' },
    })),
  }));
  const indexDigest = writeBlob(dir, index);
  const desc: Record<string, unknown> = { mediaType: 'application/vnd.oci.image.index.v1+json', digest: indexDigest, size: index.length };
  if (ref) desc.annotations = { 'org.opencontainers.image.ref.name': ref };
  fs.writeFileSync(path.join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [desc] }));
  return written.map(({ w }) => w);
}

/** A docker-archive directory (manifest.json + <hex>.json config + <hex>.tar layers). */
export function writeDockerArchiveDir(dir: string, img: LayoutImage & { repoTag?: string }): { configDigest: string } {
  fs.mkdirSync(dir, { recursive: true });
  const layers = img.layers.map((l) => {
    const blob = compress(l.tar, l.compression ?? 'none');
    const name = `${sha256(l.tar).slice(7)}.tar`;
    fs.writeFileSync(path.join(dir, name), blob);
    return name;
  });
  const config = Buffer.from(JSON.stringify({
    os: 'linux', architecture: 'amd64', config: { Cmd: ['sh'] }, ...img.config,
    rootfs: { type: 'layers', diff_ids: img.layers.map((l) => sha256(l.tar)) },
  }));
  const configDigest = sha256(config);
  fs.writeFileSync(path.join(dir, `${configDigest.slice(7)}.json`), config);
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify([{ Config: `${configDigest.slice(7)}.json`, RepoTags: img.repoTag ? [img.repoTag] : null, Layers: layers }]));
  return { configDigest };
}

/** Packs a directory (layout or docker-archive) into an uncompressed tar file, as `podman save` does. */
export function tarDirectory(dir: string, out: string): void {
  const entries: TarEntry[] = [];
  const walk = (rel: string) => {
    for (const n of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      const st = fs.statSync(path.join(dir, r));
      if (st.isDirectory()) {
        entries.push({ name: r, type: 'directory' });
        walk(r);
      } else entries.push({ name: r, content: fs.readFileSync(path.join(dir, r)) });
    }
  };
  walk('');
  fs.writeFileSync(out, makeTar(entries));
}
