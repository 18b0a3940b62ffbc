// Per-container lock: serializes husk invocations that change one container.
import fs from 'node:fs';
import path from 'node:path';
import { lockFile } from '../sys/flock.js';
import { NotFoundError, containerDir, stateFile } from './state.js';

/** Serializes husk invocations on one container (flock on a file in its directory). */
export function lockContainer(root: string, id: string): { release(): void } {
  const dir = containerDir(root, id);
  if (!fs.existsSync(dir)) throw new NotFoundError(id);
  const lock = lockFile(path.join(dir, '.lock'));
  if (!fs.existsSync(stateFile(dir)) && !fs.existsSync(path.join(dir, '.creating'))) {
    // deleted while we waited
    lock.release();
    throw new NotFoundError(id);
  }
  return lock;
}

