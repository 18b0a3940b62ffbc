// The pool of pre-booted VMs (husk pool), through podman: a container of the
// default size with a network starts on a pooled VM, whose thin process is
// the pid podman knows; everything a VMM of its own does must still hold.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { HUSK, husk, processesMentioning, scratch } from '../helpers/husk.js';
import { IMAGE, expectNothingLeft, httpGet, setupPodman, type Podman } from '../helpers/podman.js';
import { guestTcpRmem } from '../../src/runtime/guest-net.js';
import { DEFAULT_MEMORY_MIB } from '../../src/runtime/resources.js';

let tmp: ReturnType<typeof scratch>;
let pm: Podman;
let root = '';
// A network of our own (netavark bridge), away from podman's default and network.test.ts's.
const NET = `husk-pool-${process.pid}`;
const SUBNET_OCTET = 100 + (process.pid % 100);
const SUBNET = `10.215.${SUBNET_OCTET}.0/24`;

const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');

interface PoolStatus { size: number; ready: number; entries: { pid: number; state: string; dir: string }[] }

async function status(): Promise<PoolStatus> {
  const r = await husk(root, ['pool', 'status'], { encoding: 'utf8' });
  expect(r.exitCode, String(r.stderr)).toBe(0);
  return JSON.parse(String(r.stdout)) as PoolStatus;
}

/** Fills the pool to one ready VM and returns its VMM's pid. */
async function readyEntry(): Promise<number> {
  const r = await husk(root, ['pool', 'fill', '--size', '1', '--wait'], { encoding: 'utf8' });
  expect(r.exitCode, String(r.stderr)).toBe(0);
  const s = await status();
  const ready = s.entries.filter((e) => e.state === 'ready');
  expect(ready).toHaveLength(1);
  return ready[0]!.pid;
}

function alive(pid: number): boolean {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX]/.test(st);
  } catch {
    return false;
  }
}

/** The nice value of a process's main thread (field 19 of /proc/PID/stat). */
function niceOf(pid: number): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[16]);
}

function childrenOf(pid: number): number[] {
  return fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((p) => {
    try {
      const st = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      return Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === pid;
    } catch {
      return false;
    }
  });
}

beforeAll(async () => {
  tmp = scratch('husk-pool-');
  root = path.join(tmp.dir, 'root');
  // podman gives the runtime no --root: a wrapper keeps this test's pool apart from every other husk user.
  const wrapper = path.join(tmp.dir, 'husk-pooled');
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec ${HUSK} --root ${root} "$@"\n`, { mode: 0o755 });
  pm = await setupPodman(path.join(tmp.dir, 'podman'), [
    '[network]',
    'network_backend = "netavark"',
    `network_config_dir = "${path.join(tmp.dir, 'networks')}"`,
  ], wrapper);
  const c = await pm.run(['network', 'create', '--subnet', SUBNET, NET]);
  expect(c.exitCode, err(c)).toBe(0);
});
afterAll(async () => {
  await pm?.run(['rm', '-af', '-t', '0']);
  await pm?.run(['network', 'rm', '-f', NET]);
  await pm?.cleanup();
  if (root) await husk(root, ['pool', 'drain']);
  tmp.cleanup();
});

describe('husk pool with podman', () => {
  it('boots a ready VM at idle priority and reports it', async () => {
    const pid = await readyEntry();
    const s = await status();
    expect(s.size).toBe(1);
    expect(s.ready).toBe(1);
    expect(niceOf(pid)).toBe(19);
    // QEMU runs the pooled guest, niced like its VMM.
    const qemu = childrenOf(pid).filter((c) => fs.readFileSync(`/proc/${c}/cmdline`, 'utf8').includes('qemu-system'));
    expect(qemu).toHaveLength(1);
    expect(niceOf(qemu[0]!)).toBe(19);
  });

  it('runs a container on the pooled VM: output, exit code, its address, and the pool refills', async () => {
    const pooled = await readyEntry();
    const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'sh', '-c', 'echo hi; ip -4 -o addr show eth0 | tr -s " " | cut -d" " -f4; cat /proc/sys/net/ipv4/tcp_rmem; exit 7']);
    expect(err(r)).toBe('');
    expect(r.exitCode).toBe(7);
    const [hi, addr, rmem] = out(r).split('\n');
    expect(hi).toBe('hi');
    // The address podman gave the container on its network reached the pooled guest's eth0.
    expect(addr).toMatch(new RegExp(`^10\\.215\\.${SUBNET_OCTET}\\.\\d+/24$`));
    // The larger TCP receive buffer for passt, bounded by the container's namespace, as on a VM of its own.
    const nsMax = Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8').trim().split(/\s+/)[2]);
    expect(rmem!.trim().split(/\s+/).join(' ')).toBe(guestTcpRmem(DEFAULT_MEMORY_MIB, nsMax));
    // The entry served this container and is gone; the VMM that served it started its successor
    // (a second later, so as not to slow this container's start): it appears without a fill.
    expect(alive(pooled)).toBe(false);
    let successor: PoolStatus['entries'] = [];
    for (let i = 0; i < 600 && !successor.some((e) => e.state === 'ready'); i++) {
      await new Promise((r) => setTimeout(r, 100));
      successor = (await status()).entries;
    }
    expect(successor.map((e) => e.state)).toEqual(['ready']);
    const again = await readyEntry();
    expect(again).toBe(successor[0]!.pid);
    expect(again).not.toBe(pooled);
    // A process that exits while `start` is still answering (its stdin was never opened).
    const t = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'true']);
    expect(err(t)).toBe('');
    expect(t.exitCode).toBe(0);
    expect(alive(again)).toBe(false);
  });

  it('serves a published port once passt, started after the process is created, runs', async () => {
    await readyEntry();
    const c = await pm.run(['run', '-d', '--network', NET, '-p', '18091:80', IMAGE, 'sh', '-c', 'mkdir -p /www && echo page-from-pool > /www/index.html && exec httpd -f -p 80 -h /www']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    try {
      let body: string | undefined;
      for (let i = 0; i < 100 && body === undefined; i++) {
        body = await httpGet('http://127.0.0.1:18091/index.html');
        if (body === undefined) await new Promise((r) => setTimeout(r, 200));
      }
      expect(body).toBe('page-from-pool\n');
    } finally {
      await pm.run(['rm', '-f', '-t', '0', id]);
    }
    await expectNothingLeft(id);
  });

  it('relays SIGTERM through the thin process; podman top and cp see the container', async () => {
    const pooled = await readyEntry();
    const vol = path.join(tmp.dir, 'vol');
    fs.mkdirSync(vol, { recursive: true });
    fs.writeFileSync(path.join(vol, 'f.txt'), 'from host');
    const c = await pm.run(['run', '-d', '--network', NET, '-v', `${vol}:/data`, IMAGE, 'sh', '-c', 'trap "exit 12" TERM; cat /data/f.txt > /data/seen.txt; while :; do sleep 0.1; done']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    expect(alive(pooled)).toBe(true); // now the container's VMM
    const st = JSON.parse(fs.readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { pid: number; husk: { pooledVmmPid?: number } };
    expect(st.husk.pooledVmmPid).toBe(pooled);
    expect(st.pid).not.toBe(pooled);
    expect(niceOf(pooled)).toBe(0);
    const inspectPid = out(await pm.run(['inspect', '--format', '{{.State.Pid}}', id]));
    expect(Number(inspectPid)).toBe(st.pid);
    // The bind mount came through the pooled VM's deferred bind-source device.
    const seen = () => { try { return fs.readFileSync(path.join(vol, 'seen.txt'), 'utf8'); } catch { return ''; } };
    for (let i = 0; seen() !== 'from host'; i++) {
      if (i > 300) throw new Error('the container never wrote /data/seen.txt');
      await new Promise((r) => setTimeout(r, 100));
    }
    // podman top joins the thin process's mount namespace: the guest's processes, not the host's.
    const top = await pm.run(['top', id, 'pid', 'args']);
    expect(top.exitCode, err(top)).toBe(0);
    expect(out(top)).toMatch(/^\s*1\s+sh -c trap/m);
    // podman cp lands in the container's rootfs, never in the host's /.
    const name = `pool-cp-${process.pid}.txt`;
    const src = path.join(tmp.dir, name);
    fs.writeFileSync(src, 'copied');
    expect((await pm.run(['cp', src, `${id}:/${name}`])).exitCode).toBe(0);
    expect(fs.existsSync(`/${name}`)).toBe(false);
    const cat = await pm.run(['exec', id, 'cat', `/${name}`]);
    expect(out(cat)).toBe('copied');
    const s = await pm.run(['stop', '-t', '60', id]);
    expect(s.exitCode, err(s)).toBe(0);
    expect(out(await pm.run(['inspect', '--format', '{{.State.ExitCode}}', id]))).toBe('12');
    expect((await pm.run(['rm', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
    expect(alive(pooled)).toBe(false);
    expect(fs.existsSync(path.join(root, id))).toBe(false);
  });

  it('a container whose pid (the thin process) is SIGKILLed from outside ends with it, as with runc', async () => {
    const pooled = await readyEntry();
    const c = await pm.run(['run', '-d', '--network', NET, IMAGE, 'sleep', '1000']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    const st = JSON.parse(fs.readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { pid: number; husk: { pooledVmmPid?: number } };
    expect(st.husk.pooledVmmPid).toBe(pooled);
    process.kill(st.pid, 'SIGKILL');
    // The pooled VMM kills the container and ends, as runc's container ends with its init.
    for (let i = 0; i < 600 && alive(pooled); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive(pooled)).toBe(false);
    expect(fs.readFileSync(path.join(root, id, 'vmm.log'), 'utf8')).toMatch(/is gone: killing the container/);
    let state = '';
    for (let i = 0; i < 300 && state !== 'exited'; i++) {
      state = out(await pm.run(['inspect', '--format', '{{.State.Status}}', id])).trim();
      if (state !== 'exited') await new Promise((r) => setTimeout(r, 100));
    }
    expect(state).toBe('exited');
    expect(out(await pm.run(['inspect', '--format', '{{.State.ExitCode}}', id])).trim()).toBe('137');
    expect((await pm.run(['rm', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
  });

  it('a pooled VMM killed with SIGKILL loses its container; rm then leaves nothing, its VM\'s sockets neither', async () => {
    const pooled = await readyEntry();
    const c = await pm.run(['run', '-d', '--network', NET, IMAGE, 'sleep', '1000']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    const st = JSON.parse(fs.readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { husk: { pooledVmmPid?: number; pooledSocketDir?: string } };
    expect(st.husk.pooledVmmPid).toBe(pooled);
    expect(fs.existsSync(st.husk.pooledSocketDir!)).toBe(true);
    process.kill(pooled, 'SIGKILL');
    let state = '';
    for (let i = 0; i < 300 && state !== 'exited'; i++) {
      state = out(await pm.run(['inspect', '--format', '{{.State.Status}}', id])).trim();
      if (state !== 'exited') await new Promise((r) => setTimeout(r, 100));
    }
    expect(state).toBe('exited');
    expect((await pm.run(['rm', '-f', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
    expect(fs.existsSync(st.husk.pooledSocketDir!)).toBe(false);
  });

  it('declines a container with only lo (it boots a VM of its own) and keeps the entry ready', async () => {
    const pooled = await readyEntry();
    const r = await pm.run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'ls /sys/class/net']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('lo');
    expect(r.exitCode).toBe(0);
    const s = await status();
    expect(s.entries.filter((e) => e.state === 'ready').map((e) => e.pid)).toEqual([pooled]);
  });

  it('drain powers off the unclaimed VMs and leaves no process or file of the pool', async () => {
    const pooled = await readyEntry();
    const r = await husk(root, ['pool', 'drain'], { encoding: 'utf8' });
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(alive(pooled)).toBe(false);
    const s = await status();
    expect(s.size).toBe(0);
    expect(s.entries).toEqual([]);
    expect(await processesMentioning(root)).toEqual([]);
  });

  it('rejects a bad pool size with a one-line error', async () => {
    const r = await husk(root, ['pool', 'fill', '--size', 'lots'], { encoding: 'utf8' });
    expect(r.exitCode).not.toBe(0);
    expect(String(r.stderr)).toMatch(/^husk: .*invalid size: lots/);
    expect(String(r.stderr).trim().split('\n')).toHaveLength(1);
  });
});
