// `husk pool status|fill|drain`: the pool's size for a state root, and the
// entries that are booting, ready or claimed.
import fs from 'node:fs';
import path from 'node:path';
import { fillPool } from './claim-client.js';
import { listEntries, poolDir, readPoolConfig, writePoolConfig, type Entry } from './pool-store.js';
import { isSameProcessAlive } from '../../sys/process.js';

export class PoolError extends Error {}

const FILL_TIMEOUT_MS = Number(process.env.HUSK_BOOT_TIMEOUT_MS ?? 120_000);

function entryState(e: Entry): 'ready' | 'claimed' | 'booting' {
  return e.ready ? 'ready' : e.claimed ? 'claimed' : 'booting';
}

export function poolStatus(root: string) {
  const config = readPoolConfig(root);
  const entries = listEntries(root);
  return {
    size: config.size,
    idleSeconds: config.idleSeconds,
    ready: entries.filter((e) => e.ready).length,
    entries: entries.map((e) => ({ pid: e.pid, state: entryState(e), dir: e.dir })),
  };
}

/** The last lines pool VMMs wrote about failed boots (their entries are gone). */
function failures(root: string): string {
  try {
    return fs.readFileSync(path.join(poolDir(root), 'pool.log'), 'utf8').trim().split('\n').slice(-1)[0] ?? '';
  } catch {
    return '';
  }
}

export async function fill(root: string, debug: boolean, size: number, idleSeconds: number | undefined, wait: boolean): Promise<void> {
  const before = readPoolConfig(root);
  writePoolConfig(root, { size, idleSeconds: idleSeconds ?? before.idleSeconds });
  const spare = listEntries(root).filter((e) => !e.claimed);
  if (spare.length > size) await retire(spare.slice(size));
  if (size === 0) return;
  const failedBefore = failures(root);
  fillPool(root, debug);
  if (!wait) return;
  const deadline = Date.now() + FILL_TIMEOUT_MS;
  for (;;) {
    const ready = listEntries(root).filter((e) => e.ready).length;
    if (ready >= size) return;
    const failed = failures(root);
    if (failed && failed !== failedBefore) throw new PoolError(`a pooled VM failed to boot: ${failed}`);
    if (Date.now() > deadline) throw new PoolError(`the pool has ${ready} of ${size} VMs ready after ${FILL_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function drain(root: string): Promise<void> {
  if (!fs.existsSync(poolDir(root))) return; // no pool was ever set up here: nothing to write
  const config = readPoolConfig(root);
  writePoolConfig(root, { ...config, size: 0 });
  await retire(listEntries(root).filter((e) => !e.claimed));
}

/** Takes entries out of the pool (no create can win them any more) and waits for their VMMs to end. */
async function retire(entries: Entry[]): Promise<void> {
  for (const e of entries) {
    try { fs.renameSync(path.join(e.dir, 'ready'), path.join(e.dir, 'retired')); } catch { /* booting, or claimed just now */ }
    if (fs.existsSync(path.join(e.dir, 'claimed'))) continue;
    fs.writeFileSync(path.join(e.dir, 'retired'), '');
    try { process.kill(e.pid, 'SIGTERM'); } catch { /* gone */ }
  }
  const deadline = Date.now() + 10_000;
  for (const e of entries) {
    while (isSameProcessAlive(e.pid, e.startTime) && !fs.existsSync(path.join(e.dir, 'claimed'))) {
      if (Date.now() > deadline) {
        try { process.kill(e.pid, 'SIGKILL'); } catch { /* gone */ }
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
