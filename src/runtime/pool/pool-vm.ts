// A pooled VMM (`husk pool-vm`, started by `husk pool fill` or by the VMM
// of the entry a container just claimed, never by `create`):
// boots a VM of the default size to its agent's HELLO, with nothing mounted
// and no network attached, and waits as a pool entry (pool-store.ts). The
// `create` that claims it hands over the container (claim-request.ts): the
// container's stdio and the thin process's channel arrive as fds. From
// there it is the container's VMM (vmm-daemon.ts runContainer), except that
// the pid clients know is the thin process, a descendant of that `create`
// (clients reap it; they could not reap this process), which takes the exit
// status from here. With an idle timeout set, an entry nobody claims for
// that long powers off.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { Readable } from 'node:stream';
import path from 'node:path';
import { Sandbox } from '../sandbox.js';
import { GuestNet } from '../guest-net.js';
import { DEFAULT_MEMORY_MIB, DEFAULT_VCPUS } from '../resources.js';
import { guestAssets } from '../../vmm/assets.js';
import { loadBundle } from '../../oci/bundle.js';
import { containerDir, stateFile, type ContainerState } from '../state.js';
import { processStartTime } from '../../sys/process.js';
import { lockFile } from '../../sys/flock.js';
import { dup } from '../../sys/fsops.js';
import { closeFd, setCloexec } from '../../sys/io.js';
import { FdSocket } from '../../sys/unix-socket.js';
import { daemonLog, runContainer, type CreateStatus } from '../vmm-daemon.js';
import { claimSocket, engineRequest, entrySocketDir, listEntries, poolDir, poolKey, readPoolConfig } from './pool-store.js';
import { closeStream, readableFd, writableFd } from './fd-streams.js';
import { readLines, sendLine, type FromThin } from './thin-channel.js';
import { parseClaimRequest, type ClaimRequest } from './claim-request.js';
import { spawnPoolVm } from './claim-client.js';
import { inStartingNetworkNamespace } from '../../sys/namespace.js';
import type { NetworkPlan } from '../network.js';

/** The nice value of a pooled VM (its VMM, QEMU and their threads) until it is claimed. */
const IDLE_NICE = 19;

/** Sets the nice value of every thread of `pid` (nice is per thread on Linux). */
function renice(pid: number, nice: number): void {
  let tids: string[];
  try {
    tids = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return;
  }
  for (const tid of tids) {
    try { os.setPriority(Number(tid), nice); } catch { /* thread gone */ }
  }
}

/** How long a claimer has between winning the entry and sending its request. */
const CLAIM_CONNECT_MS = 10_000;

interface Claim { request: ClaimRequest; fds: number[]; reply: (s: CreateStatus & { decline?: boolean }) => void }

/**
 * How long a claimed VM's successor waits before it starts: a boot (~0.4 s
 * of CPU) next to a container's own start slowed `podman run` by ~90 ms on
 * this 2-CPU machine even at nice 19, so it waits until that start is over.
 */
export const SUCCESSOR_DELAY_SECONDS = 1;

export async function poolVm(o: { root: string; debug: boolean }): Promise<number> {
  const pdir = poolDir(o.root);
  // Only into a pool that is there and wants VMs: a successor that wakes after a drain (or
  // after its state root was removed) ends without leaving anything behind.
  if (!fs.existsSync(pdir) || readPoolConfig(o.root).size === 0) return 0;
  const entryDir = fs.mkdtempSync(path.join(pdir, 'e-'));
  const socketDir = entrySocketDir(entryDir);
  // One log for the VM's whole life: the entry's until a container claims it, then the container's.
  const logTo = { dir: entryDir };
  const log = (msg: string) => daemonLog(logTo.dir)(msg);
  const removeEntry = () => {
    fs.rmSync(entryDir, { recursive: true, force: true });
    fs.rmSync(socketDir, { recursive: true, force: true });
  };
  process.on('uncaughtException', (err) => { log(`fatal: ${err.stack ?? err.message}`); removeEntry(); process.exit(255); });

  const size = { vcpus: DEFAULT_VCPUS, memoryMiB: DEFAULT_MEMORY_MIB }; // machineSize() of a spec that asks for nothing
  const assets = guestAssets();
  const key = poolKey({ engine: engineRequest(undefined), ...size, kernel: assets.kernel, initrd: assets.initrd, debug: o.debug });
  // Counted and published under the pool's lock, so concurrent fills never overshoot the size.
  const lock = lockFile(path.join(pdir, '.fill.lock'));
  try {
    const config = readPoolConfig(o.root);
    const others = listEntries(o.root).filter((e) => !e.claimed).length;
    if (others >= config.size) {
      removeEntry();
      return 0;
    }
    const tmp = path.join(entryDir, '.entry.json');
    fs.writeFileSync(tmp, JSON.stringify({ pid: process.pid, startTime: processStartTime(process.pid), key }));
    fs.renameSync(tmp, path.join(entryDir, 'entry.json'));
  } finally {
    lock.release();
  }

  // Until a container claims it, this VM gets the CPU nobody else wants: it must not slow the containers running.
  const stopEarly = () => { fs.writeFileSync(path.join(entryDir, 'retired'), ''); };
  process.on('SIGTERM', stopEarly);
  renice(process.pid, IDLE_NICE);
  let sandbox: Sandbox;
  try {
    sandbox = await Sandbox.bootPooled({ stateDir: entryDir, socketDir, log, debug: o.debug, size });
  } catch (err) {
    const msg = `pooled boot failed: ${(err as Error).message}`;
    log(msg);
    try { fs.appendFileSync(path.join(pdir, 'pool.log'), `${new Date().toISOString()} ${msg}\n`); } catch { /* best effort */ }
    removeEntry();
    return 1;
  }
  process.off('SIGTERM', stopEarly);
  for (;;) {
    const claim = await waitForClaim(o.root, entryDir, sandbox, log);
    if (!claim) {
      await sandbox.stop(1000);
      removeEntry();
      return 0;
    }
    const accepted = await acceptClaim(o.root, claim, log);
    if (!accepted) {
      // Not for this container (it has no network, ...): back into the pool once it listens again.
      fs.rmSync(path.join(entryDir, 'claimed'), { force: true });
      continue;
    }
    return serveClaim(o, entryDir, sandbox, claim, accepted, (dir) => { logTo.dir = dir; });
  }
}

/** Resolves with the claim, or undefined once the entry retired (idle, drained, or its VM died). */
async function waitForClaim(root: string, entryDir: string, sandbox: Sandbox, log: (m: string) => void): Promise<Claim | undefined> {
  const ready = path.join(entryDir, 'ready');
  const server = net.createServer({ pauseOnConnect: true });
  fs.rmSync(claimSocket(entryDir), { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(claimSocket(entryDir), resolve);
  });
  const result = Promise.withResolvers<Claim | undefined>();
  /** Takes the entry out of the pool unless a create claimed it first. */
  const retired = path.join(entryDir, 'retired');
  const retire = (why: string) => {
    try {
      fs.renameSync(ready, retired);
    } catch {
      if (!fs.existsSync(retired)) return false; // claimed: the claimer is on its way
    }
    log(`leaving the pool: ${why}`);
    result.resolve(undefined);
    return true;
  };
  const idleSeconds = readPoolConfig(root).idleSeconds;
  const idle = idleSeconds > 0 ? setInterval(() => { retire('idle'); }, idleSeconds * 1000) : undefined;
  // A claimer that won the entry but never sent its request (it died): back into the pool.
  const claimed = path.join(entryDir, 'claimed');
  let claimedSince = 0;
  const orphanCheck = setInterval(() => {
    if (!fs.existsSync(claimed)) { claimedSince = 0; return; }
    claimedSince ||= Date.now();
    if (Date.now() - claimedSince < CLAIM_CONNECT_MS) return;
    log('claimed but never contacted: back in the pool');
    fs.rmSync(claimed, { force: true });
    fs.writeFileSync(ready, '');
    claimedSince = 0;
  }, 1000);
  orphanCheck.unref();
  const onTerm = () => { retire('asked to stop'); };
  process.on('SIGTERM', onTerm);
  void sandbox.vm.engine.exited.then(() => { fs.rmSync(ready, { force: true }); result.resolve(undefined); });

  server.on('connection', (sock) => {
    readClaim(sock).then((c) => {
      if (!c || !fs.existsSync(claimed)) {
        c?.fds.forEach(closeFd);
        sock.destroy();
        return;
      }
      result.resolve({
        ...c,
        reply: (s) => {
          try { sock.end(JSON.stringify(s) + '\n'); } catch { /* the claimer went away */ }
        },
      });
    }, () => sock.destroy());
  });
  if (fs.existsSync(retired)) retire('asked to stop');
  else fs.writeFileSync(ready, '');
  log('ready in the pool');
  try {
    return await result.promise;
  } finally {
    clearInterval(idle);
    clearInterval(orphanCheck);
    process.off('SIGTERM', onTerm);
    server.close();
  }
}

/** The container's bundle and network plan when this VM can serve it; undefined (declined, answered) when not. */
async function acceptClaim(root: string, claim: Claim, log: (m: string) => void): Promise<{ netPlan: NetworkPlan } | undefined> {
  const decline = (error: string) => {
    log(`declined ${claim.request.id}: ${error}`);
    claim.reply({ ok: false, error, decline: true });
    claim.fds.forEach((fd) => { try { closeFd(fd); } catch { /* closed */ } });
    return undefined;
  };
  if (path.resolve(claim.request.root) !== path.resolve(root)) return decline('pool entry of another state root');
  try {
    const dir = containerDir(root, claim.request.id);
    const state = JSON.parse(fs.readFileSync(stateFile(dir), 'utf8')) as ContainerState;
    const netPlan = await GuestNet.plan(loadBundle(state.bundle).spec, dir, log);
    // Only lo: a pooled VM has eth0, so this container boots a VM of its own.
    if (!netPlan) return decline('the container has no network to attach');
    return { netPlan };
  } catch (err) {
    return decline((err as Error).message);
  }
}

/** The claim request and its fds, from a connection paused by the server (we read it with recvmsg). */
async function readClaim(sock: net.Socket): Promise<{ request: ClaimRequest; fds: number[] } | undefined> {
  const handleFd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (handleFd === undefined || handleFd < 0) return undefined;
  const fdSock = new FdSocket(dup(handleFd), 64 * 1024);
  try {
    setCloexec(fdSock.fd);
    const deadline = Date.now() + 5000;
    let data = Buffer.alloc(0);
    const fds: number[] = [];
    while (Date.now() < deadline) {
      const r = fdSock.recv(64 * 1024 - data.length);
      if (r === null) break;
      if (r === undefined) { await new Promise((res) => setTimeout(res, 1)); continue; }
      fds.push(...r.fds);
      data = Buffer.concat([data, r.data]);
      if (data.includes(10)) break;
    }
    const request = parseClaimRequest(data.toString('utf8'), fds.length);
    if (!request) {
      fds.forEach(closeFd);
      return undefined;
    }
    return { request, fds };
  } finally {
    fdSock.close();
  }
}

async function serveClaim({ root, debug }: { root: string; debug: boolean }, entryDir: string, sandbox: Sandbox, claim: Claim, accepted: { netPlan: NetworkPlan }, logInto: (dir: string) => void): Promise<number> {
  const { request, fds } = claim;
  const [stdinFd, stdoutFd, stderrFd, thinFd] = fds as [number, number, number, number];
  const dir = containerDir(root, request.id);
  // From here this VMM is the container's, at the container's priority.
  const log = daemonLog(dir);
  renice(process.pid, 0);
  renice(sandbox.vm.engine.pid, 0);
  try {
    const earlier = fs.readFileSync(path.join(entryDir, 'vmm.log'), 'utf8');
    fs.appendFileSync(path.join(dir, 'vmm.log'), earlier.split('\n').filter(Boolean).map((l) => `${l} [pooled]\n`).join(''));
    fs.renameSync(path.join(entryDir, 'console.log'), path.join(dir, 'console.log'));
  } catch { /* logs are best effort */ }
  logInto(dir);
  fs.rmSync(entryDir, { recursive: true, force: true });
  log(`claimed pooled VM (VMM pid ${process.pid}) for ${request.id}; the container's pid is ${request.thinPid}`);
  process.on('SIGTERM', () => log('SIGTERM ignored: this VMM serves a container'));

  const thin = new net.Socket({ fd: thinFd, readable: true, writable: true });
  thin.on('error', () => {});
  const acks: (() => void)[] = [];
  let relay: ((signo: number) => void) | undefined;
  readLines<FromThin>(thin, (m) => {
    if (m.t === 'ack') acks.shift()?.();
    else if (m.t === 'signal' && Number.isInteger(m.signo) && m.signo > 0 && m.signo < 65) relay?.(m.signo);
  });
  const thinGone = new Promise<void>((resolve) => thin.once('close', () => resolve()));
  // The thin process is the pid clients know, as runc's container init is: when it dies
  // before the container exited (SIGKILL from outside husk), the container dies with it.
  let exitSent = false;
  let thinDead = false;
  void thinGone.then(() => {
    if (exitSent) return;
    thinDead = true;
    log(`the container's pid ${request.thinPid} is gone: killing the container`);
    relay?.(os.constants.signals.SIGKILL);
  });
  let stdin: NodeJS.ReadableStream | undefined;
  let stdinClosed = false;
  let networkLost: (msg: string) => void = () => {};
  const stdout = writableFd(stdoutFd);
  const stderr = writableFd(stderrFd);
  return runContainer({ root, id: request.id, consoleSocket: request.consoleSocket, preserveFds: 0 }, log, {
    pid: request.thinPid,
    pidStartTime: processStartTime(request.thinPid),
    stateExtra: { pooledVmmPid: process.pid, pooledVmmStartTime: processStartTime(process.pid), pooledSocketDir: entrySocketDir(entryDir) },
    // The container may have exited (and its stdin fd closed) by the time start asks for this.
    get stdin() { return (stdin ??= stdinClosed ? Readable.from([]) : readableFd(stdinFd)); },
    stdout,
    stderr,
    async sandbox(c) {
      networkLost = c.onNetworkLost;
      try {
        // The container's socket dir holds only its control socket: the VM's sockets are the entry's.
        fs.mkdirSync(c.socketDir, { recursive: true, mode: 0o700 });
        await sandbox.claim(c.bundle, c.dir, accepted.netPlan, c.duringSetup);
      } catch (err) {
        // Not handed over: runContainer stops only a sandbox it got.
        await sandbox.stop(0, false);
        throw err;
      }
      return sandbox;
    },
    afterCreated: () => sandbox.startNetwork(networkLost),
    report: (s) => {
      claim.reply(s);
      // This VM's successor (it starts SUCCESSOR_DELAY_SECONDS later). Started from here, never from create: a process that create or
      // its VMM leaves behind is adopted by the client's subreaper (conmon, containerd's shim),
      // which then waits for it before it exits itself.
      if (s.ok) inStartingNetworkNamespace(() => spawnPoolVm(root, debug, SUCCESSOR_DELAY_SECONDS));
    },
    onSignal: (r) => {
      relay = r;
      if (thinDead) r(os.constants.signals.SIGKILL);
    },
    async viewEntered() {
      const acked = new Promise<void>((resolve) => acks.push(resolve));
      sendLine(thin, { t: 'mntns', pid: process.pid });
      await Promise.race([acked, thinGone, new Promise((r) => setTimeout(r, 2000))]);
    },
    async exited(status) {
      // EOF on the container's output first, then the status: clients read both.
      await Promise.all([closeStream(stdout), closeStream(stderr), ...(stdin ? [closeStream(stdin)] : [])]);
      if (!stdin) {
        stdinClosed = true;
        closeFd(stdinFd);
      }
      exitSent = true;
      sendLine(thin, { t: 'exit', status });
      await Promise.race([thinGone, new Promise((r) => setTimeout(r, 1000))]);
    },
  });
}
