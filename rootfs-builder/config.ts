// Image config -> runtime config.json (OCI image-spec conversion.md), on top
// of the same defaults `runc spec` writes (namespaces, masked and read-only
// paths, default mounts, capabilities).
import fs from 'node:fs';
import path from 'node:path';
import { DEFAULT_PATH, defaultSpec } from '../src/oci/default-spec.js';
import type { Spec, User } from '../src/oci/spec.js';
import { ImageError, errCode } from './errors.js';
import type { ImageConfig } from './image.js';

const P = path.posix;

/**
 * Reads a file of the rootfs the way a process chrooted into it would see
 * it: symlinks (absolute or relative) resolve inside the rootfs, never out
 * of it. Undefined if missing or not a regular file.
 */
export function readFileInRoot(rootfs: string, file: string, limit = 4 << 20): string | undefined {
  const pending = file.split('/').filter((c) => c !== '' && c !== '.');
  const done: string[] = [];
  let hops = 0;
  while (pending.length) {
    const c = pending.shift()!;
    if (c === '..') {
      done.pop();
      continue;
    }
    const abs = path.join(rootfs, ...done, c);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch (err) {
      if (errCode(err) === 'ENOENT' || errCode(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    if (st.isSymbolicLink()) {
      if (++hops > 40) return undefined;
      const target = fs.readlinkSync(abs);
      if (target.startsWith('/')) done.length = 0;
      pending.unshift(...target.split('/').filter((x) => x !== '' && x !== '.'));
      continue;
    }
    done.push(c);
    if (pending.length && !st.isDirectory()) return undefined;
    if (!pending.length) {
      if (!st.isFile() || st.size > limit) return undefined;
      return fs.readFileSync(abs, 'utf8');
    }
  }
  return undefined;
}

interface PasswdEntry { name: string; uid: number; gid: number; home: string }
interface GroupEntry { name: string; gid: number; members: string[] }

function parsePasswd(text: string | undefined): PasswdEntry[] {
  if (!text) return [];
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    if (line.startsWith('#') || f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) return [];
    return [{ name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]! }];
  });
}

function parseGroup(text: string | undefined): GroupEntry[] {
  if (!text) return [];
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    if (line.startsWith('#') || f.length < 4 || !/^\d+$/.test(f[2]!)) return [];
    return [{ name: f[0]!, gid: Number(f[2]), members: f[3]!.split(',').filter(Boolean) }];
  });
}

const isNum = (s: string) => /^\d+$/.test(s) && Number(s) <= 0xffffffff;

export interface ResolvedUser {
  user: User;
  home: string;
}

/** Resolves the image's `User` (user, uid, user:group, uid:gid, ...) against the rootfs. */
export function resolveUser(rootfs: string, spec: string | undefined): ResolvedUser {
  const text = (spec ?? '').trim();
  const passwd = parsePasswd(readFileInRoot(rootfs, 'etc/passwd'));
  if (text === '') {
    const rootEntry = passwd.find((e) => e.uid === 0);
    return { user: { uid: 0, gid: 0 }, home: rootEntry?.home || '/root' };
  }
  const colon = text.indexOf(':');
  const u = colon === -1 ? text : text.slice(0, colon);
  const g = colon === -1 ? undefined : text.slice(colon + 1);
  let entry: PasswdEntry | undefined;
  let uid: number;
  let gid: number;
  if (isNum(u)) {
    uid = Number(u);
    entry = passwd.find((e) => e.uid === uid);
    gid = entry?.gid ?? 0;
  } else {
    entry = passwd.find((e) => e.name === u);
    if (!entry) throw new ImageError(`unable to find user ${u}: no matching entries in passwd file`);
    uid = entry.uid;
    gid = entry.gid;
  }
  const user: User = { uid, gid };
  if (g !== undefined && g !== '') {
    if (isNum(g)) user.gid = Number(g);
    else {
      const grp = parseGroup(readFileInRoot(rootfs, 'etc/group')).find((e) => e.name === g);
      if (!grp) throw new ImageError(`unable to find group ${g}: no matching entries in group file`);
      user.gid = grp.gid;
    }
  } else if (!isNum(u) && entry) {
    const extra = parseGroup(readFileInRoot(rootfs, 'etc/group'))
      .filter((e) => e.members.includes(entry!.name) && e.gid !== user.gid)
      .map((e) => e.gid);
    if (extra.length) user.additionalGids = [...new Set(extra)];
  }
  return { user, home: entry?.home || '/' };
}

export interface SpecOptions {
  /** replaces the image's Cmd (Entrypoint stays), like `docker run IMAGE ARGS...` */
  args?: string[];
  readonlyRoot?: boolean;
  terminal?: boolean;
  /** root.path to write (default "rootfs") */
  rootPath?: string;
}

/** The process arguments: Entrypoint + (args or Cmd). */
export function processArgs(config: ImageConfig, args?: string[]): string[] {
  const c = config.config ?? {};
  const entrypoint = Array.isArray(c.Entrypoint) ? c.Entrypoint : [];
  const cmd = args && args.length ? args : Array.isArray(c.Cmd) ? c.Cmd : [];
  const all = [...entrypoint, ...cmd];
  if (all.length === 0) throw new ImageError('the image has no Entrypoint or Cmd: give the command to run');
  if (!all.every((a) => typeof a === 'string')) throw new ImageError('the image Entrypoint/Cmd must be strings');
  return all;
}

/** Builds config.json for a rootfs made from `config`. */
export function imageSpec(config: ImageConfig, rootfs: string, opts: SpecOptions = {}): Spec {
  const c = config.config ?? {};
  const terminal = opts.terminal ?? false;
  const spec = defaultSpec(processArgs(config, opts.args), terminal);
  const proc = spec.process!;
  const { user, home } = resolveUser(rootfs, c.User);
  proc.user = user;
  const env = Array.isArray(c.Env) ? c.Env.filter((e) => typeof e === 'string' && e.includes('=')) : [];
  const has = (name: string) => env.some((e) => e.startsWith(`${name}=`));
  if (!has('PATH')) env.unshift(`PATH=${DEFAULT_PATH}`);
  if (terminal && !has('TERM')) env.push('TERM=xterm');
  if (!has('HOME')) env.push(`HOME=${home}`);
  proc.env = env;
  const wd = typeof c.WorkingDir === 'string' && c.WorkingDir !== '' ? c.WorkingDir : '/';
  proc.cwd = P.resolve('/', wd);
  spec.root = { path: opts.rootPath ?? 'rootfs', readonly: opts.readonlyRoot ?? false };

  const ann: Record<string, string> = {};
  const put = (k: string, v: unknown) => {
    if (typeof v === 'string' && v !== '') ann[k] = v;
  };
  put('org.opencontainers.image.os', config.os);
  put('org.opencontainers.image.architecture', config.architecture);
  put('org.opencontainers.image.variant', config.variant);
  put('org.opencontainers.image.os.version', config['os.version']);
  if (Array.isArray(config['os.features'])) put('org.opencontainers.image.os.features', config['os.features'].join(','));
  put('org.opencontainers.image.author', config.author);
  put('org.opencontainers.image.created', config.created);
  put('org.opencontainers.image.stopSignal', c.StopSignal);
  if (c.ExposedPorts && typeof c.ExposedPorts === 'object') put('org.opencontainers.image.exposedPorts', Object.keys(c.ExposedPorts).join(','));
  // Labels take precedence over the implicit annotations (conversion.md).
  if (c.Labels && typeof c.Labels === 'object') for (const [k, v] of Object.entries(c.Labels)) if (typeof v === 'string') ann[k] = v;
  if (Object.keys(ann).length) spec.annotations = ann;
  return spec;
}
