// `create` on a pooled VM: win an entry, start the thin process that will
// be the container's pid, and hand the entry the container (its stdio and
// the thin process's channel go as fds), and start pool VMMs (fill, successors).
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Spec } from '../../oci/spec.js';
import { projectRoot, guestAssets } from '../../vmm/assets.js';
import { DEFAULT_MEMORY_MIB, DEFAULT_VCPUS, machineSize } from '../resources.js';
import { closeFd } from '../../sys/io.js';
import { connectUnix, FdSocket, socketPair } from '../../sys/unix-socket.js';
import { claimEntry, claimSocket, engineRequest, listEntries, poolKey, readPoolConfig } from './pool-store.js';
import type { ClaimReply, ClaimRequest } from './claim-request.js';

export interface PooledCreate {
  root: string;
  id: string;
  spec: Spec;
  consoleSocket?: string;
  debug: boolean;
  preserveFds: number;
}

export class PooledCreateError extends Error {}

/** Starts one pool VMM, detached (it counts the pool again under its lock and may end at once). */
export function spawnPoolVm(root: string, debug: boolean, afterSeconds = 0): void {
  const args = ['--no-warnings', path.join(projectRoot(), 'bin/husk.js'), '--root', path.resolve(root)];
  if (debug) args.push('--debug');
  args.push('pool-vm');
  // A delayed one waits in sleep(1), not in Node: nothing of its start-up runs before its time.
  const child = afterSeconds > 0
    ? spawn('/bin/sh', ['-c', `sleep ${afterSeconds} && exec "$0" "$@"`, process.execPath, ...args], { detached: true, stdio: 'ignore' })
    : spawn(process.execPath, args, { detached: true, stdio: 'ignore' });
  child.unref();
}

/**
 * Starts pool VMMs until the pool has its size. Only for callers outside
 * any client's process tree (`husk pool fill`): create never fills, the
 * claimed VMM starts its own successor (pool-vm.ts).
 */
export function fillPool(root: string, debug: boolean): number {
  const { size } = readPoolConfig(root);
  const missing = size - listEntries(root).filter((e) => !e.claimed).length;
  for (let i = 0; i < missing; i++) spawnPoolVm(root, debug);
  return Math.max(0, missing);
}

/** The pool's key for this container, or undefined when a pooled VM cannot serve it. */
function pooledKey(o: PooledCreate): string | undefined {
  if (o.preserveFds) return undefined; // fds beyond stdio are relayed by a VMM of its own
  const ns = (o.spec.linux?.namespaces ?? []).find((n) => n.type === 'network');
  if (ns && !ns.path) return undefined; // a new, empty namespace: only lo, and a pooled VM has eth0
  let size;
  try {
    size = machineSize(o.spec);
  } catch {
    return undefined; // the VMM of its own reports it
  }
  if (size.vcpus !== DEFAULT_VCPUS || size.memoryMiB !== DEFAULT_MEMORY_MIB) return undefined;
  const assets = guestAssets();
  return poolKey({ engine: engineRequest(o.spec), ...size, kernel: assets.kernel, initrd: assets.initrd, debug: o.debug });
}

/**
 * Creates the container on a pooled VM and returns the pid for the pid file,
 * or undefined when the pool has nothing for it (create boots a VM of its
 * own). Throws PooledCreateError with the VMM's message when the pooled VM
 * failed to create the container. For a root whose pool has a size (create
 * checks before it loads this module).
 */
export async function createOnPooledVm(o: PooledCreate): Promise<number | undefined> {
  const key = pooledKey(o);
  const entry = key ? claimEntry(o.root, key) : undefined;
  if (!entry) return undefined;

  const [mine, theirs] = socketPair();
  const netns = (o.spec.linux?.namespaces ?? []).find((n) => n.type === 'network')?.path;
  const args = ['--no-warnings', path.join(projectRoot(), 'bin/husk.js'), '--root', path.resolve(o.root), 'vmm-thin', o.id];
  if (netns) args.push('--netns', netns);
  const thin = spawn(process.execPath, args, { detached: true, stdio: ['inherit', 'inherit', 'inherit', theirs] });
  closeFd(theirs);
  const thinExited = new Promise<void>((resolve) => thin.once('exit', () => resolve()));
  let reply: ClaimReply | undefined;
  try {
    const request: ClaimRequest = { v: 1, root: path.resolve(o.root), id: o.id, consoleSocket: o.consoleSocket && path.resolve(o.consoleSocket), thinPid: thin.pid! };
    reply = exchange(claimSocket(entry.dir), request, [0, 1, 2, mine]);
  } finally {
    closeFd(mine);
  }
  if (!reply || reply.decline) {
    // Nothing was done for this container: it boots a VM of its own. (An entry that never
    // answered puts itself back into the pool after a while, if it still runs.)
    thin.kill('SIGKILL');
    await thinExited;
    return undefined;
  }
  if (!reply.ok) {
    // The pooled VMM ends once it has cleaned up, and the thin process with it.
    await Promise.race([thinExited, new Promise((r) => setTimeout(r, 5000))]);
    throw new PooledCreateError(reply.error);
  }
  thin.unref();
  return thin.pid!;
}

/** Sends the request with its fds and waits (blocking: create has nothing else to do) for the one-line reply; undefined when the entry is gone. */
function exchange(socketPath: string, request: ClaimRequest, fds: number[]): ClaimReply | undefined {
  let fd: number;
  try {
    fd = connectUnix(socketPath);
  } catch {
    return undefined;
  }
  const sock = new FdSocket(fd, 64 * 1024);
  try {
    sock.send(Buffer.from(JSON.stringify(request) + '\n'), fds);
    let text = '';
    for (;;) {
      const r = sock.recv(64 * 1024);
      if (!r) break;
      text += Buffer.from(r.data).toString('utf8');
      r.fds.forEach(closeFd);
      if (text.includes('\n')) break;
    }
    const line = text.slice(0, text.indexOf('\n'));
    const reply = JSON.parse(line) as ClaimReply;
    if (typeof reply.ok !== 'boolean') return undefined;
    return reply;
  } catch {
    return undefined;
  } finally {
    sock.close();
  }
}
