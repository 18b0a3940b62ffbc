// Reading an image out of an archive: an OCI image layout (index.json ->
// [image index ->] manifest -> config + layers) or a docker-archive
// (manifest.json -> config + layer tars). Picks the platform, checks every
// digest and size it can before any layer is touched, and describes the
// layers to apply in order.
import crypto from 'node:crypto';
import { ImageError } from './errors.js';
import { readJson, type ImageSource } from './source.js';

export const MT = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
} as const;

export type Compression = 'none' | 'gzip' | 'zstd';

const LAYER_TYPES: Record<string, Compression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
  'application/vnd.docker.image.rootfs.diff.tar': 'none',
  'application/vnd.docker.image.rootfs.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip': 'gzip',
  'application/vnd.docker.image.rootfs.diff.tar.zstd': 'zstd',
};

export interface ImageConfig {
  architecture?: string;
  os?: string;
  variant?: string;
  'os.version'?: string;
  'os.features'?: string[];
  author?: string;
  created?: string;
  config?: {
    User?: string;
    ExposedPorts?: Record<string, unknown> | null;
    Env?: string[] | null;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Volumes?: Record<string, unknown> | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    StopSignal?: string;
  } | null;
  rootfs?: { type?: string; diff_ids?: string[] };
}

export interface LayerRef {
  /** member of the archive holding the blob */
  member: string;
  /** digest of the blob as stored, when the archive states one */
  digest?: string;
  /** size of the blob as stored, when the archive states one */
  size?: number;
  mediaType: string;
  /** undefined: detect from the first bytes (docker-archive) */
  compression?: Compression;
  /** digest of the uncompressed tar, from the config's rootfs.diff_ids */
  diffId: string;
}

export interface ResolvedImage {
  format: 'oci' | 'docker';
  /** the image's identity: digest of its config (podman's and docker's image ID) */
  id: string;
  manifestDigest?: string;
  config: ImageConfig;
  layers: LayerRef[];
  /** platform of the chosen image, os/arch[/variant] */
  platform: string;
}

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

const ARCH_ALIASES: Record<string, string> = { x86_64: 'amd64', 'x86-64': 'amd64', aarch64: 'arm64', armhf: 'arm', armel: 'arm', i386: '386' };

export function parsePlatform(s: string | undefined): Platform {
  const text = s ?? 'linux/amd64';
  const parts = text.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
    throw new ImageError(`invalid platform ${JSON.stringify(text)}: expected OS/ARCH[/VARIANT], e.g. linux/amd64`);
  }
  const architecture = ARCH_ALIASES[parts[1]!] ?? parts[1]!;
  return { os: parts[0]!, architecture, variant: parts[2] };
}

function normVariant(arch: string, variant: string | undefined): string | undefined {
  if (arch === 'arm64' && (variant === undefined || variant === '' || variant === 'v8')) return 'v8';
  if (arch === 'arm' && (variant === undefined || variant === '')) return 'v7';
  return variant || undefined;
}

export function platformMatches(want: Platform, have: { os?: string; architecture?: string; variant?: string }): boolean {
  if (have.os !== want.os) return false;
  const arch = ARCH_ALIASES[have.architecture ?? ''] ?? have.architecture;
  if (arch !== want.architecture) return false;
  if (want.variant === undefined) return true;
  return normVariant(arch, have.variant) === normVariant(want.architecture, want.variant);
}

export function platformString(p: { os?: string; architecture?: string; variant?: string }): string {
  return [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/');
}

const DIGEST_RE = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export function checkDigest(d: unknown, what: string): string {
  if (typeof d !== 'string' || !DIGEST_RE.test(d)) throw new ImageError(`${what}: invalid digest ${JSON.stringify(d)}`);
  return d;
}

export function digestOf(buf: Buffer, algo = 'sha256'): string {
  return `${algo}:${crypto.createHash(algo).update(buf).digest('hex')}`;
}

function blobName(digest: string): string {
  const [algo, hex] = digest.split(':');
  return `blobs/${algo}/${hex}`;
}

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

function asDescriptor(v: unknown, what: string): Descriptor {
  const d = v as Descriptor;
  if (typeof d !== 'object' || d === null) throw new ImageError(`${what}: descriptor is not an object`);
  checkDigest(d.digest, what);
  if (!Number.isSafeInteger(d.size) || d.size < 0) throw new ImageError(`${what}: invalid size in descriptor`);
  return d;
}

/** Reads a blob named by a descriptor and checks its size and digest. */
function readBlob(src: ImageSource, d: Descriptor, what: string): unknown {
  const name = blobName(d.digest);
  const size = src.size(name);
  if (size === undefined) throw new ImageError(`${src.where}: ${what} blob ${d.digest} is missing`);
  if (size !== d.size) throw new ImageError(`${src.where}: ${what} blob ${d.digest} has ${size} bytes, the descriptor says ${d.size}`);
  const { raw, value } = readJson(src, name, `${what} blob`);
  const algo = d.digest.split(':')[0]!;
  const got = digestOf(raw, algo);
  if (got !== d.digest) throw new ImageError(`${src.where}: ${what} blob digest mismatch: expected ${d.digest}, got ${got}`);
  return value;
}

const REF_KEYS = ['org.opencontainers.image.ref.name', 'io.containerd.image.name'];

function refMatches(d: Descriptor, ref: string): boolean {
  return REF_KEYS.some((k) => {
    const v = d.annotations?.[k];
    return v !== undefined && (v === ref || v.endsWith(`:${ref}`) || v.endsWith(`/${ref}`));
  });
}

export interface ResolveOptions {
  platform?: string;
  /** picks one image when the archive holds several (OCI ref name or docker repo tag) */
  ref?: string;
}

export function resolveImage(src: ImageSource, opts: ResolveOptions = {}): ResolvedImage {
  const want = parsePlatform(opts.platform);
  if (src.has('index.json') && (src.has('oci-layout') || !src.has('manifest.json'))) return resolveOci(src, want, opts);
  if (src.has('manifest.json')) return resolveDocker(src, want, opts);
  throw new ImageError(`${src.where}: neither an OCI image layout (index.json) nor a docker-archive (manifest.json)`);
}

function checkConfig(src: ImageSource, config: ImageConfig, want: Platform, explicit: boolean): void {
  if (typeof config !== 'object' || config === null) throw new ImageError(`${src.where}: image config is not an object`);
  const ids = config.rootfs?.diff_ids;
  if (!Array.isArray(ids)) throw new ImageError(`${src.where}: image config has no rootfs.diff_ids`);
  ids.forEach((id, i) => checkDigest(id, `${src.where}: rootfs.diff_ids[${i}]`));
  if ((config.os || config.architecture) && !platformMatches(want, config)) {
    const have = platformString(config);
    throw new ImageError(`${src.where}: the image is for ${have}, not ${platformString(want)}${explicit ? '' : ' (choose another with --platform)'}`);
  }
}

function resolveOci(src: ImageSource, want: Platform, opts: ResolveOptions): ResolvedImage {
  if (src.has('oci-layout')) {
    const layout = readJson(src, 'oci-layout', 'oci-layout').value as { imageLayoutVersion?: string };
    if (typeof layout?.imageLayoutVersion !== 'string' || !layout.imageLayoutVersion.startsWith('1.')) {
      throw new ImageError(`${src.where}: unsupported OCI layout version ${JSON.stringify(layout?.imageLayoutVersion)}`);
    }
  }
  const index = readJson(src, 'index.json', 'index').value as { manifests?: unknown[] };
  if (!Array.isArray(index?.manifests) || index.manifests.length === 0) throw new ImageError(`${src.where}: index.json lists no manifests`);
  let top = index.manifests.map((m, i) => asDescriptor(m, `${src.where}: index.json manifests[${i}]`));
  if (opts.ref !== undefined) {
    top = top.filter((d) => refMatches(d, opts.ref!));
    if (top.length === 0) throw new ImageError(`${src.where}: no image named ${opts.ref} in the archive`);
  }

  // Flatten nested indexes into candidate manifests.
  const candidates: Descriptor[] = [];
  const walk = (d: Descriptor, depth: number) => {
    const mt = d.mediaType;
    if (mt === MT.ociIndex || mt === MT.dockerList) {
      if (depth > 4) throw new ImageError(`${src.where}: image indexes nested too deep`);
      const sub = readBlob(src, d, 'image index') as { manifests?: unknown[] };
      if (!Array.isArray(sub?.manifests)) throw new ImageError(`${src.where}: image index ${d.digest} lists no manifests`);
      sub.manifests.forEach((m, i) => walk(asDescriptor(m, `${src.where}: index ${d.digest} manifests[${i}]`), depth + 1));
    } else if (mt === undefined || mt === MT.ociManifest || mt === MT.dockerManifest) {
      candidates.push(d);
    } // other artifact types are not images: skip
  };
  top.forEach((d) => walk(d, 0));
  let matching = candidates.filter((d) => !d.platform || platformMatches(want, d.platform));
  if (matching.length === 0) {
    const have = [...new Set(candidates.map((d) => platformString(d.platform ?? {})))].join(', ');
    throw new ImageError(`${src.where}: no image for ${platformString(want)} (the archive has ${have || 'no images'})`);
  }
  const distinct = [...new Map(matching.map((d) => [d.digest, d])).values()];
  if (distinct.length > 1) {
    const withPlatform = distinct.filter((d) => d.platform);
    if (withPlatform.length === 1) matching = withPlatform;
    else {
      const names = distinct.map((d) => REF_KEYS.map((k) => d.annotations?.[k]).find(Boolean) ?? d.digest.slice(0, 19));
      throw new ImageError(`${src.where}: the archive holds ${distinct.length} images (${names.join(', ')}); choose one with --ref NAME`);
    }
  } else matching = distinct;
  const md = matching[0]!;
  const manifest = readBlob(src, md, 'manifest') as { schemaVersion?: number; mediaType?: string; config?: unknown; layers?: unknown[] };
  if (manifest?.schemaVersion !== 2) throw new ImageError(`${src.where}: manifest ${md.digest} has unsupported schemaVersion ${manifest?.schemaVersion}`);
  if (manifest.mediaType === MT.ociIndex || manifest.mediaType === MT.dockerList) throw new ImageError(`${src.where}: ${md.digest} is an index, not a manifest`);
  const cd = asDescriptor(manifest.config, `${src.where}: manifest config`);
  if (cd.mediaType && cd.mediaType !== MT.ociConfig && cd.mediaType !== MT.dockerConfig) {
    throw new ImageError(`${src.where}: manifest ${md.digest} is not a container image (config type ${cd.mediaType})`);
  }
  const config = readBlob(src, cd, 'config') as ImageConfig;
  checkConfig(src, config, want, opts.platform !== undefined);
  if (!Array.isArray(manifest.layers)) throw new ImageError(`${src.where}: manifest ${md.digest} has no layers list`);
  const diffIds = config.rootfs!.diff_ids!;
  if (diffIds.length !== manifest.layers.length) {
    throw new ImageError(`${src.where}: manifest has ${manifest.layers.length} layers but the config lists ${diffIds.length} diff_ids`);
  }
  const layers = manifest.layers.map((l, i): LayerRef => {
    const d = asDescriptor(l, `${src.where}: layer ${i + 1}`);
    const mediaType = d.mediaType ?? '';
    const compression = LAYER_TYPES[mediaType];
    if (compression === undefined) throw new ImageError(`${src.where}: layer ${i + 1} has unsupported media type ${JSON.stringify(mediaType)}`);
    const member = blobName(d.digest);
    const size = src.size(member);
    if (size === undefined) throw new ImageError(`${src.where}: layer blob ${d.digest} is missing`);
    if (size !== d.size) throw new ImageError(`${src.where}: layer blob ${d.digest} has ${size} bytes, the manifest says ${d.size}`);
    return { member, digest: d.digest, size: d.size, mediaType, compression, diffId: diffIds[i]! };
  });
  return { format: 'oci', id: cd.digest, manifestDigest: md.digest, config, layers, platform: platformString(config.os ? config : md.platform ?? {}) };
}

interface DockerEntry {
  Config?: string;
  RepoTags?: string[] | null;
  Layers?: string[];
}

function resolveDocker(src: ImageSource, want: Platform, opts: ResolveOptions): ResolvedImage {
  const entries = readJson(src, 'manifest.json', 'manifest.json').value as DockerEntry[];
  if (!Array.isArray(entries) || entries.length === 0) throw new ImageError(`${src.where}: manifest.json lists no images`);
  let chosen = entries;
  if (opts.ref !== undefined) {
    chosen = entries.filter((e) => (e.RepoTags ?? []).some((t) => t === opts.ref || t.endsWith(`/${opts.ref}`)));
    if (chosen.length === 0) throw new ImageError(`${src.where}: no image tagged ${opts.ref} in the archive`);
  }
  if (chosen.length > 1) {
    const names = chosen.map((e) => e.RepoTags?.[0] ?? e.Config ?? '?');
    throw new ImageError(`${src.where}: the archive holds ${chosen.length} images (${names.join(', ')}); choose one with --ref NAME`);
  }
  const e = chosen[0]!;
  if (typeof e.Config !== 'string' || !Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === 'string')) {
    throw new ImageError(`${src.where}: manifest.json entry lacks Config or Layers`);
  }
  const { raw, value } = readJson(src, e.Config, 'image config');
  const id = digestOf(raw);
  // Names like "<hex>.json" or "blobs/sha256/<hex>" state the config digest: hold them to it.
  const named = /(?:^|\/)([a-f0-9]{64})(?:\.json)?$/.exec(e.Config)?.[1];
  if (named && `sha256:${named}` !== id) throw new ImageError(`${src.where}: config ${e.Config} digest mismatch: got ${id}`);
  const config = value as ImageConfig;
  checkConfig(src, config, want, opts.platform !== undefined);
  const diffIds = config.rootfs!.diff_ids!;
  if (diffIds.length !== e.Layers.length) {
    throw new ImageError(`${src.where}: manifest.json has ${e.Layers.length} layers but the config lists ${diffIds.length} diff_ids`);
  }
  const layers = e.Layers.map((member, i): LayerRef => {
    if (!src.has(member)) throw new ImageError(`${src.where}: layer ${member} is missing`);
    const blob = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(member)?.[1];
    return { member, digest: blob ? `sha256:${blob}` : undefined, mediaType: 'application/vnd.docker.image.rootfs.diff.tar', diffId: diffIds[i]! };
  });
  return { format: 'docker', id, config, layers, platform: platformString(config) };
}
