// The pool of pre-booted VMs, as files under the state root: <root>/@pool
// ('@' is not allowed in a container id, so no container can collide).
//   config.json        { size, idleSeconds } (absent: size 0, the pool is off)
//   <entry>/entry.json { pid, startTime, key } written by the entry's pool VMM
//   <entry>/ready      exists while the entry waits for a container
//   socketDirFor(<entry>)/claim.sock where the claimer hands the entry its
//                      container (socket paths are short, state roots may not be)
// An entry is claimed by renaming `ready` away: rename(2) is atomic, so of
// concurrent `create`s exactly one wins an entry. Plain fs only: `create`
// reads this before it decides how to start a VMM.
import fs from 'node:fs';
import path from 'node:path';
import type { Spec } from '../../oci/spec.js';
import { isSameProcessAlive } from '../../sys/process.js';
import { socketDirFor } from '../state.js';

export interface PoolConfig {
  /** pre-booted VMs kept ready (0: no pool) */
  size: number;
  /** an entry nobody claimed for this long powers off and is not replaced (0: never) */
  idleSeconds: number;
}

export const DEFAULT_IDLE_SECONDS = 0;
export const MAX_POOL_SIZE = 16;

export interface EntryInfo {
  pid: number;
  startTime?: number;
  /** what the pooled VM is (poolKey): only a container wanting the same gets it */
  key: string;
}

export interface Entry extends EntryInfo {
  dir: string;
  /** waits for a container */
  ready: boolean;
  /** a create won it (or it serves a container): it no longer counts toward the size */
  claimed: boolean;
}

export function poolDir(root: string): string {
  return path.join(path.resolve(root), '@pool');
}

export function readPoolConfig(root: string): PoolConfig {
  try {
    const c = JSON.parse(fs.readFileSync(path.join(poolDir(root), 'config.json'), 'utf8')) as Partial<PoolConfig>;
    const size = Number.isInteger(c.size) && c.size! > 0 ? Math.min(c.size!, MAX_POOL_SIZE) : 0;
    const idleSeconds = Number.isInteger(c.idleSeconds) && c.idleSeconds! >= 0 ? c.idleSeconds! : DEFAULT_IDLE_SECONDS;
    return { size, idleSeconds };
  } catch {
    return { size: 0, idleSeconds: DEFAULT_IDLE_SECONDS };
  }
}

export function writePoolConfig(root: string, config: PoolConfig): void {
  const dir = poolDir(root);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = path.join(dir, `.config.${process.pid}`);
  fs.writeFileSync(tmp, JSON.stringify(config) + '\n');
  fs.renameSync(tmp, path.join(dir, 'config.json'));
}

/** The pool's entries whose VMM still runs; entries of a VMM that died are removed on the way. */
export function listEntries(root: string): Entry[] {
  const dir = poolDir(root);
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.startsWith('e-'));
  } catch {
    return [];
  }
  const out: Entry[] = [];
  for (const name of names) {
    const d = path.join(dir, name);
    let info: EntryInfo;
    try {
      info = JSON.parse(fs.readFileSync(path.join(d, 'entry.json'), 'utf8')) as EntryInfo;
    } catch {
      continue; // still being written (or half removed): not an entry yet
    }
    if (!isSameProcessAlive(info.pid, info.startTime)) {
      fs.rmSync(entrySocketDir(d), { recursive: true, force: true });
      fs.rmSync(d, { recursive: true, force: true });
      continue;
    }
    out.push({ ...info, dir: d, ready: fs.existsSync(path.join(d, 'ready')), claimed: fs.existsSync(path.join(d, 'claimed')) });
  }
  return out;
}

/**
 * What a VM must be for this container: engine request, size, guest assets
 * (path and mtime, so a rebuilt kernel or agent is never served stale) and
 * debug. The pool VMM computes the same from its own boot.
 */
export function poolKey(parts: { engine: string; vcpus: number; memoryMiB: number; kernel: string; initrd: string; debug: boolean }): string {
  const stamp = (p: string) => {
    try {
      const st = fs.statSync(p);
      return `${p}@${st.size}:${st.mtimeMs}`;
    } catch {
      return `${p}@missing`;
    }
  };
  return JSON.stringify([parts.engine, parts.vcpus, parts.memoryMiB, stamp(parts.kernel), stamp(parts.initrd), parts.debug]);
}

/** The engine a container asks for (HUSK_ENGINE, then its annotation), 'auto' when it does not. */
export function engineRequest(spec: Spec | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return env.HUSK_ENGINE || spec?.annotations?.['husk.engine'] || 'auto';
}

/**
 * Claims a ready entry with this key: its `ready` file is renamed to
 * `claimed`; undefined when none is left. The winner alone may connect.
 */
export function claimEntry(root: string, key: string): Entry | undefined {
  for (const e of listEntries(root)) {
    if (!e.ready || e.key !== key) continue;
    try {
      fs.renameSync(path.join(e.dir, 'ready'), path.join(e.dir, 'claimed'));
      return e;
    } catch {
      // another create won it
    }
  }
  return undefined;
}

/** The entry's short socket directory: its VM's sockets and claim.sock. */
export function entrySocketDir(entryDir: string): string {
  return socketDirFor(entryDir);
}

export function claimSocket(entryDir: string): string {
  return path.join(entrySocketDir(entryDir), 'claim.sock');
}
