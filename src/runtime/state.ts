// The state root: one directory per container, created atomically, with
// state.json replaced atomically (write to a temp file, then rename).
import fs from 'node:fs';
import path from 'node:path';

export const DEFAULT_ROOT = '/run/husk';

export class StateError extends Error {}

const ID_RE = /^[\w+\-.]+$/;

export function validateId(id: string): void {
  if (!id || !ID_RE.test(id) || id === '.' || id === '..' || id.length > 1024) {
    throw new StateError(`invalid container id format: ${id}`);
  }
}

export function containerDir(root: string, id: string): string {
  validateId(id);
  return path.join(path.resolve(root), id);
}

/** Creates the container's directory; fails if the id is taken. */
export function createContainerDir(root: string, id: string): string {
  const dir = containerDir(root, id);
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o711 });
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new StateError(`container with given ID already exists: ${id}`);
    throw err;
  }
  return dir;
}

export function writeJsonAtomic(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function removeContainerDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
