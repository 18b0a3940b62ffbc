// Loading and checking a bundle: config.json must parse and describe a
// process husk can run; every problem is one clear line, never a trace.
import fs from 'node:fs';
import path from 'node:path';
import type { Spec } from './spec.js';
import { preciseJsonReviver } from './seccomp/compile.js';

export class BundleError extends Error {}

export interface Bundle {
  /** absolute bundle directory */
  dir: string;
  spec: Spec;
  /** absolute path of the root filesystem */
  rootfs: string;
  /** linux.seccomp parsed with exact 64-bit integers (JSON numbers above 2^53 lose precision otherwise) */
  seccomp?: unknown;
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/** Validates the parts of a spec husk depends on; returns it typed. */
export function validateSpec(raw: unknown): Spec {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BundleError('config.json: top level must be a JSON object');
  const s = raw as Record<string, unknown>;
  if (typeof s.ociVersion !== 'string') throw new BundleError('config.json: ociVersion must be a string');
  const root = s.root as Record<string, unknown> | undefined;
  if (typeof root !== 'object' || root === null || typeof root.path !== 'string' || root.path === '') {
    throw new BundleError('config.json: root.path is required');
  }
  const p = s.process as Record<string, unknown> | undefined;
  if (typeof p !== 'object' || p === null) throw new BundleError('config.json: process is required');
  if (!isStringArray(p.args) || p.args.length === 0) throw new BundleError('config.json: process.args must be a non-empty array of strings');
  if (p.env !== undefined && !isStringArray(p.env)) throw new BundleError('config.json: process.env must be an array of strings');
  if (typeof p.cwd !== 'string' || !p.cwd.startsWith('/')) throw new BundleError('config.json: process.cwd must be an absolute path');
  if (p.terminal !== undefined && typeof p.terminal !== 'boolean') throw new BundleError('config.json: process.terminal must be a boolean');
  const u = p.user as Record<string, unknown> | undefined;
  if (u !== undefined && (typeof u !== 'object' || u === null || !Number.isInteger(u.uid) || !Number.isInteger(u.gid))) {
    throw new BundleError('config.json: process.user needs integer uid and gid');
  }
  for (const str of [...p.args, ...((p.env as string[] | undefined) ?? []), p.cwd]) {
    if (str.includes('\0')) throw new BundleError('config.json: process strings must not contain NUL');
  }
  if (s.annotations !== undefined) {
    const a = s.annotations;
    if (typeof a !== 'object' || a === null || Array.isArray(a) || !Object.values(a).every((v) => typeof v === 'string')) {
      throw new BundleError('config.json: annotations must map strings to strings');
    }
  }
  return raw as Spec;
}

export function loadBundle(dir: string): Bundle {
  const abs = path.resolve(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new BundleError(`bundle ${abs} does not exist`);
  }
  if (!st.isDirectory()) throw new BundleError(`bundle ${abs} is not a directory`);
  const cfgPath = path.join(abs, 'config.json');
  let text: string;
  try {
    text = fs.readFileSync(cfgPath, 'utf8');
  } catch {
    throw new BundleError(`${cfgPath}: no such file`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new BundleError(`${cfgPath}: invalid JSON: ${(err as Error).message}`);
  }
  const spec = validateSpec(raw);
  const rootfs = path.resolve(abs, spec.root!.path);
  let rst: fs.Stats;
  try {
    rst = fs.statSync(rootfs);
  } catch {
    throw new BundleError(`rootfs ${rootfs} does not exist`);
  }
  if (!rst.isDirectory()) throw new BundleError(`rootfs ${rootfs} is not a directory`);
  const seccomp = spec.linux?.seccomp === undefined
    ? undefined
    : (JSON.parse(text, preciseJsonReviver) as Spec).linux?.seccomp;
  return { dir: abs, spec, rootfs, seccomp };
}
