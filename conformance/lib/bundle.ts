// Bundles for conformance cases: the busybox example rootfs, a config a
// case edits, and the host adjustments every runtime gets alike.
import fs from 'node:fs';
import path from 'node:path';
import { makeBusyboxBundle } from '../../rootfs-builder/example-bundle.js';

/** config.json as plain JSON: cases set fields the spec defines, typed or not. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Config = Record<string, any>;

export interface Bundle {
  dir: string;
  rootfs: string;
  config: Config;
}

/**
 * Adjustments for this host, the same for every runtime so that all run one
 * config: no linux.resources (the host's cgroups are a v1/v2 hybrid that
 * runc cannot apply every controller on) and a cgroup under
 * /husk-conformance, so nothing lands in the host's top-level cgroups.
 */
export function hostAdjust(config: Config, id: string): void {
  config.linux ??= {};
  delete config.linux.resources;
  config.linux.cgroupsPath = `/husk-conformance/${id}`;
}

export function buildBundle(dir: string, id: string, args: string[], edit?: (c: Config, b: { dir: string; rootfs: string }) => void): Bundle {
  makeBusyboxBundle(dir, { args });
  const file = path.join(dir, 'config.json');
  const config = JSON.parse(fs.readFileSync(file, 'utf8')) as Config;
  hostAdjust(config, id);
  const rootfs = path.join(dir, 'rootfs');
  edit?.(config, { dir, rootfs });
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return { dir, rootfs, config };
}

/** Writes an executable host script (for hooks). */
export function writeScript(file: string, body: string): string {
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}
