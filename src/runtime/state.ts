// The state root: one directory per container holding state.json (replaced
// atomically: temp file + rename) and a lock file that serializes husk
// invocations on one id. Sockets live in a short per-container directory
// elsewhere, because unix socket paths are limited to 107 bytes and
// containerd's state roots are long.
import fs from 'node:fs';
import path from 'node:path';
import { isSameProcessAlive } from '../sys/process.js';

export const DEFAULT_ROOT = '/run/husk';
export const SOCKET_BASE = process.env.HUSK_SOCKET_DIR ?? '/run/husk-sock';
export const OCI_VERSION = '1.2.0';

export type Status = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  ociVersion: string;
  id: string;
  /** host pid of the VMM process (0 once stopped) */
  pid: number;
  status: Status;
  bundle: string;
  rootfs: string;
  created: string;
  owner: string;
  annotations: Record<string, string>;
  /** husk's own fields */
  husk: {
    /** start time of the VMM process, so a reused pid is not mistaken for it */
    vmmStartTime?: number;
    socketDir: string;
    exitStatus?: number;
    engine?: string;
    /** pid of the container's passt (absent: the guest has only lo) */
    passtPid?: number;
    passtStartTime?: number;
    /** why the container lost its network while it ran (passt died) */
    networkError?: string;
    /** a pooled VM's VMM, when the container runs on one (`pid` is then its thin process) */
    pooledVmmPid?: number;
    pooledVmmStartTime?: number;
    /** the pooled VM's own socket directory (its vhost-user and vsock sockets), removed at delete */
    pooledSocketDir?: string;
  };
}

export class StateError extends Error {}
/** The id names no container (clients match the text "does not exist"). */
export class NotFoundError extends StateError {
  constructor(id: string) {
    super(`container does not exist: ${id}`);
  }
}

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

export function socketDirFor(stateDir: string): string {
  // node:crypto loaded on demand: `husk state` never needs it.
  const crypto = process.getBuiltinModule('node:crypto');
  return path.join(SOCKET_BASE, crypto.createHash('sha256').update(stateDir).digest('hex').slice(0, 16));
}

let tmpSeq = 0;

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
  const tmp = `${file}.${process.pid}.${tmpSeq++}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(value), { mode: 0o600 });
  fs.renameSync(tmp, file);
}

export function stateFile(dir: string): string {
  return path.join(dir, 'state.json');
}

export function writeState(dir: string, state: ContainerState): void {
  writeJsonAtomic(stateFile(dir), state);
}

/** Reads a container's state, with the status corrected when its VMM has died. */
export function readState(root: string, id: string): ContainerState {
  const dir = containerDir(root, id);
  let text: string;
  try {
    text = fs.readFileSync(stateFile(dir), 'utf8');
  } catch {
    throw new NotFoundError(id);
  }
  let st: ContainerState;
  try {
    st = JSON.parse(text) as ContainerState;
  } catch {
    throw new StateError(`state of container ${id} is corrupt`);
  }
  return withLiveStatus(st);
}

export function withLiveStatus(st: ContainerState): ContainerState {
  if (st.status !== 'stopped' && st.pid > 0 && !isSameProcessAlive(st.pid, st.husk?.vmmStartTime)) {
    return { ...st, status: 'stopped', pid: 0 };
  }
  if (st.status === 'stopped') return { ...st, pid: 0 };
  return st;
}

export function listContainerIds(root: string): string[] {
  try {
    return fs.readdirSync(path.resolve(root), { withFileTypes: true })
      .filter((d) => d.isDirectory() && ID_RE.test(d.name) && fs.existsSync(stateFile(path.join(path.resolve(root), d.name))))
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

export function removeContainerDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** The state as `husk state` prints it (runc's fields). */
export function publicState(st: ContainerState): Record<string, unknown> {
  return {
    ociVersion: st.ociVersion,
    id: st.id,
    pid: st.pid,
    status: st.status,
    bundle: st.bundle,
    rootfs: st.rootfs,
    created: st.created,
    owner: st.owner,
    annotations: st.annotations,
  };
}
