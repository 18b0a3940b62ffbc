// pause/resume (the whole VM frozen), update (the container's cgroup in the
// guest) and events (stats read from that cgroup), through husk directly,
// podman and containerd. Readings come from the container itself (a file in
// its rootfs or its stdout), never from timing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { HUSK, bundle, husk, huskDetached, processesMentioning, scratch, uniqueId } from '../helpers/husk.js';
import { IMAGE, expectNothingLeft, setupPodman, type Podman } from '../helpers/podman.js';
import { CTR_IMAGE, startContainerdWithBusybox, type Containerd } from '../helpers/containerd.js';

let tmp: ReturnType<typeof scratch>;
let root: string;

beforeAll(() => {
  tmp = scratch('husk-pause-');
  root = path.join(tmp.dir, 'state');
});
afterAll(async () => {
  // A failed test must not leave its VM running: force-delete whatever is left in our root.
  for (const id of fs.existsSync(root) ? fs.readdirSync(root) : []) await husk(root, ['delete', '--force', id]);
  tmp.cleanup();
});

const text = (b: unknown) => Buffer.from(b as Uint8Array).toString();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function stateOf(id: string) {
  const r = await husk(root, ['state', id]);
  expect(r.exitCode, text(r.stderr)).toBe(0);
  return JSON.parse(text(r.stdout)) as { status: string; pid: number };
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));

// A counter the container advances every 0.1 s, plus what the guest cgroup says about itself;
// /tmp/oom makes it allocate more than its memory limit once.
// The script is PID 1 of the container's pid namespace (as with runc): it needs a
// TERM handler to be ended by TERM. The background sleep keeps a second process in the cgroup.
const COUNTER = [
  "trap 'exit 143' TERM; sleep 100000 & true",
  'cat /proc/self/cgroup > /tmp/selfcg; cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); i=0',
  'while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter',
  'cat $cg/memory.max > /tmp/memmax.new; mv /tmp/memmax.new /tmp/memmax',
  'cat $cg/pids.max > /tmp/pidsmax.new; mv /tmp/pidsmax.new /tmp/pidsmax',
  'if [ -e /tmp/oom ]; then rm /tmp/oom; dd if=/dev/zero of=/dev/null bs=200M count=1 2>/dev/null; echo dd-exit-$? > /tmp/oomdone; fi',
  'sleep 0.1; done',
].join('; ');

function counterBundle(name: string, limitMiB = 200, cgroupNs = true): string {
  const b = bundle(path.join(tmp.dir, name), { args: ['sh', '-c', COUNTER] });
  const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
  spec.linux.resources = { ...(spec.linux.resources ?? {}), memory: { limit: limitMiB << 20 }, pids: { limit: 100 } };
  if (!cgroupNs) spec.linux.namespaces = spec.linux.namespaces.filter((n: { type: string }) => n.type !== 'cgroup');
  fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(spec));
  return b;
}

const read = (b: string, f: string) => {
  try { return fs.readFileSync(path.join(b, 'rootfs/tmp', f), 'utf8').trim(); } catch { return ''; }
};
const counter = (b: string) => Number(read(b, 'counter') || 0);

async function runningCounter(name: string): Promise<{ b: string; id: string; pid: number }> {
  const b = counterBundle(name);
  const id = uniqueId(name);
  const pidFile = path.join(tmp.dir, `${name}.pid`);
  const c = await huskDetached(root, ['create', '--bundle', b, '--pid-file', pidFile, id], tmp.dir);
  expect(c.exitCode, text(c.stderr)).toBe(0);
  expect((await husk(root, ['start', id])).exitCode).toBe(0);
  await until(() => counter(b) >= 3, 'the counter to run');
  return { b, id, pid: Number(fs.readFileSync(pidFile, 'utf8')) };
}

describe('husk pause / resume', () => {
  it('freezes the container (counter stops, state paused) and resumes it (counter advances)', async () => {
    const { b, id, pid } = await runningCounter('pr');
    const p = await husk(root, ['pause', id]);
    expect(p.exitCode, text(p.stderr)).toBe(0);
    expect((await stateOf(id)).status).toBe('paused');
    const listed = JSON.parse(text((await husk(root, ['list', '--format', 'json'])).stdout)) as { id: string; status: string }[];
    expect(listed.find((c) => c.id === id)?.status).toBe('paused');
    const frozen = counter(b);
    // A window in which the running container would have advanced the counter many times.
    await sleep(2000);
    expect(counter(b)).toBe(frozen);

    const again = await husk(root, ['pause', id]);
    expect(again.exitCode).toBe(1);
    expect(text(again.stderr)).toBe('husk: container not running\n');

    const r = await husk(root, ['resume', id]);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    expect((await stateOf(id)).status).toBe('running');
    await until(() => counter(b) > frozen + 2, 'the counter to advance after resume');

    const notPaused = await husk(root, ['resume', id]);
    expect(notPaused.exitCode).toBe(1);
    expect(text(notPaused.stderr)).toBe('husk: container not paused\n');

    expect((await husk(root, ['delete', '--force', id])).exitCode).toBe(0);
    expect(alive(pid)).toBe(false);
  });

  it('a signal sent while paused is delivered after resume; SIGKILL thaws like runc', async () => {
    const { b, id, pid } = await runningCounter('pk');
    expect((await husk(root, ['pause', id])).exitCode).toBe(0);
    const k = await husk(root, ['kill', id, 'TERM']);
    expect(k.exitCode, text(k.stderr)).toBe(0);
    await sleep(1000);
    expect(alive(pid)).toBe(true);
    expect((await stateOf(id)).status).toBe('paused');
    const frozen = counter(b);
    expect((await husk(root, ['resume', id])).exitCode).toBe(0);
    await until(() => !alive(pid), 'the container to end after resume');
    expect((await stateOf(id)).status).toBe('stopped');
    // It died of the TERM, not after running on.
    expect(counter(b)).toBeLessThanOrEqual(frozen + 1);
    expect((await husk(root, ['delete', id])).exitCode).toBe(0);

    const second = await runningCounter('pk9');
    expect((await husk(root, ['pause', second.id])).exitCode).toBe(0);
    expect((await husk(root, ['kill', second.id, 'KILL'])).exitCode).toBe(0);
    await until(() => !alive(second.pid), 'SIGKILL to end a paused container');
    expect((await stateOf(second.id)).status).toBe('stopped');
    expect((await husk(root, ['delete', second.id])).exitCode).toBe(0);
  });

  it('delete --force of a paused container works and leaves nothing behind', async () => {
    const { id, pid } = await runningCounter('pd');
    expect((await husk(root, ['pause', id])).exitCode).toBe(0);
    const d = await husk(root, ['delete', '--force', id]);
    expect(d.exitCode, text(d.stderr)).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(fs.existsSync(path.join(root, id))).toBe(false);
    expect(await processesMentioning(id)).toEqual([]);
    const gone = await husk(root, ['pause', id]);
    expect(gone.exitCode).toBe(1);
    expect(text(gone.stderr)).toMatch(/does not exist/);
  });

  it('a created container can be paused and resumed back to created (as runc allows), then started', async () => {
    const b = counterBundle('pc', 200, false);
    const id = uniqueId('pc');
    expect((await huskDetached(root, ['create', '--bundle', b, id], tmp.dir)).exitCode).toBe(0);
    expect((await husk(root, ['pause', id])).exitCode).toBe(0);
    expect((await stateOf(id)).status).toBe('paused');
    const early = await husk(root, ['start', id]);
    expect(early.exitCode).toBe(1);
    expect(text(early.stderr)).toBe('husk: cannot start a container in the paused state\n');
    expect((await husk(root, ['resume', id])).exitCode).toBe(0);
    expect((await stateOf(id)).status).toBe('created');
    expect((await husk(root, ['start', id])).exitCode).toBe(0);
    await until(() => counter(b) >= 2, 'the counter');
    // Without a cgroup namespace the container sees the guest's hierarchy and its place in it.
    expect(read(b, 'selfcg')).toBe('0::/container');
    await until(() => read(b, 'memmax') !== '', 'memory.max');
    expect(read(b, 'memmax')).toBe(String(200 << 20));
    expect((await husk(root, ['delete', '--force', id])).exitCode).toBe(0);
  });
});

describe('husk run (foreground VMM)', () => {
  it('serves pause, resume, update and stats like a detached container', async () => {
    const b = counterBundle('fg');
    const id = uniqueId('fg');
    const run = execa(HUSK, ['--root', root, 'run', '--bundle', b, id], { reject: false, stdin: 'ignore' });
    await until(() => counter(b) >= 3, 'the counter to run');
    expect((await husk(root, ['pause', id])).exitCode).toBe(0);
    expect((await stateOf(id)).status).toBe('paused');
    const frozen = counter(b);
    await sleep(1500);
    expect(counter(b)).toBe(frozen);
    expect((await husk(root, ['resume', id])).exitCode).toBe(0);
    await until(() => counter(b) > frozen + 2, 'the counter to advance after resume');
    expect((await husk(root, ['update', '--pids-limit', '50', id])).exitCode).toBe(0);
    await until(() => read(b, 'pidsmax') === '50', 'pids.max = 50 in the guest');
    const s = await husk(root, ['events', '--stats', id]);
    expect(JSON.parse(text(s.stdout)).data.pids.limit).toBe(50);
    expect((await husk(root, ['kill', id, 'KILL'])).exitCode).toBe(0);
    expect((await run).exitCode).toBe(137);
  });
});

describe('husk update and events', () => {
  it('applies resources to the guest cgroup, refuses what a VM cannot do, reports stats and OOM', async () => {
    const { b, id, pid } = await runningCounter('up');
    await until(() => read(b, 'memmax') !== '', 'the container to report memory.max');
    // A cgroup namespace (in the default spec): the container's cgroup is its root, as with runc on cgroup v2.
    expect(read(b, 'selfcg')).toBe('0::/');
    expect(fs.readFileSync(path.join(b, 'rootfs/tmp/memmax'), 'utf8')).toBe(`${200 << 20}\n`);
    expect(read(b, 'memmax')).toBe(String(200 << 20));
    expect(read(b, 'pidsmax')).toBe('100');

    const u = await husk(root, ['update', '--memory', '100m', id]);
    expect(u.exitCode, text(u.stderr)).toBe(0);
    await until(() => read(b, 'memmax') === String(100 << 20), 'memory.max = 100 MiB in the guest');

    const file = path.join(tmp.dir, 'res.json');
    fs.writeFileSync(file, JSON.stringify({ pids: { limit: 64 }, cpu: { quota: 50000, period: 100000 } }));
    const r = await husk(root, ['update', '--resources', file, id]);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    await until(() => read(b, 'pidsmax') === '64', 'pids.max = 64 in the guest');
    const viaStdin = await husk(root, ['update', '-r', '-', id], { input: JSON.stringify({ memory: { limit: 150 << 20 } }), stdin: undefined });
    expect(viaStdin.exitCode, text(viaStdin.stderr)).toBe(0);
    await until(() => read(b, 'memmax') === String(150 << 20), 'memory.max = 150 MiB in the guest');

    const big = await husk(root, ['update', '--memory', '1g', id]);
    expect(big.exitCode).toBe(1);
    expect(text(big.stderr)).toMatch(/^husk: memory limit 1073741824 exceeds the 209715200 bytes the VM has for the container .*\n$/);
    const blkio = await husk(root, ['update', '--blkio-weight', '300', id]);
    expect(blkio.exitCode).toBe(1);
    expect(text(blkio.stderr)).toBe('husk: cannot update blockIO of a VM container\n');
    const cpus = await husk(root, ['update', '--cpuset-cpus', '0-3', id]);
    expect(cpus.exitCode).toBe(1);
    expect(text(cpus.stderr)).toMatch(/cpu\.cpus\/mems .*no vCPU hot-plug/);
    const badJson = await husk(root, ['update', '-r', '-', id], { input: '{nope', stdin: undefined });
    expect(badJson.exitCode).toBe(1);
    expect(text(badJson.stderr)).toMatch(/^husk: decoding resources: /);
    const badSize = await husk(root, ['update', '--memory', 'lots', id]);
    expect(badSize.exitCode).toBe(1);
    expect(text(badSize.stderr)).toBe('husk: invalid value for a size: lots\n');
    expect(read(b, 'memmax')).toBe(String(150 << 20));

    const s = await husk(root, ['events', '--stats', id]);
    expect(s.exitCode, text(s.stderr)).toBe(0);
    const lines = text(s.stdout).trim().split('\n');
    expect(lines).toHaveLength(1);
    const ev = JSON.parse(lines[0]!);
    expect(ev.type).toBe('stats');
    expect(ev.id).toBe(id);
    expect(ev.data.cpu.usage.total).toBeGreaterThan(0);
    expect(ev.data.cpu.usage.total).toBeGreaterThanOrEqual(ev.data.cpu.usage.user);
    expect(ev.data.cpu.throttling.periods).toBeGreaterThan(0); // the 50 % quota is in force
    expect(ev.data.memory.usage.usage).toBeGreaterThan(0);
    expect(ev.data.memory.usage.usage).toBeLessThan(150 << 20);
    expect(ev.data.memory.usage.limit).toBe(150 << 20);
    expect(ev.data.pids.current).toBeGreaterThanOrEqual(2); // sh and its background sleep
    expect(ev.data.pids.limit).toBe(64);
    // "max" is printed as runc does, 2^64-1
    expect(lines[0]).toMatch(/"swap":\{"limit":18446744073709551615,/);

    // Streaming: stats every interval and an "oom" event when the container's cgroup OOM-kills.
    const events = execa(HUSK, ['--root', root, 'events', '--interval', '1s', id], { reject: false, stdin: 'ignore' });
    let seen = '';
    events.stdout!.on('data', (d: Buffer) => { seen += d.toString(); });
    await until(() => (seen.match(/"type":"stats"/g) ?? []).length >= 2, 'two stats events');
    fs.writeFileSync(path.join(b, 'rootfs/tmp/oom'), '');
    await until(() => read(b, 'oomdone') !== '', 'the allocation to end');
    expect(read(b, 'oomdone')).toBe('dd-exit-137');
    await until(() => seen.includes(`{"type":"oom","id":"${id}"}`), 'the oom event');
    for (const line of seen.trim().split('\n')) expect(JSON.parse(line).id).toBe(id);

    // Paused: stats cannot be read from a frozen guest, and update is refused with a reason.
    expect((await husk(root, ['pause', id])).exitCode).toBe(0);
    const frozenStats = await husk(root, ['events', '--stats', id]);
    expect(frozenStats.exitCode).toBe(1);
    expect(text(frozenStats.stderr)).toMatch(/paused/);
    const frozenUpdate = await husk(root, ['update', '--memory', '90m', id]);
    expect(frozenUpdate.exitCode).toBe(1);
    expect(text(frozenUpdate.stderr)).toMatch(/paused container/);
    expect((await husk(root, ['resume', id])).exitCode).toBe(0);

    // The stream ends by itself when the container stops.
    expect((await husk(root, ['kill', id, 'KILL'])).exitCode).toBe(0);
    const done = await events;
    expect(done.exitCode).toBe(0);
    await until(() => !alive(pid), 'VMM exit');
    const stopped = await husk(root, ['update', '--memory', '90m', id]);
    expect(stopped.exitCode).toBe(1);
    expect(text(stopped.stderr)).toBe('husk: container not running\n');
    const stoppedEvents = await husk(root, ['events', '--stats', id]);
    expect(stoppedEvents.exitCode).toBe(1);
    expect(text(stoppedEvents.stderr)).toBe(`husk: container with id ${id} is not running\n`);
    expect((await husk(root, ['delete', id])).exitCode).toBe(0);
    const unknown = await husk(root, ['update', '--memory', '90m', 'no-such-container']);
    expect(text(unknown.stderr)).toMatch(/^husk: container does not exist/);
  });
});

describe('podman pause / unpause / update', () => {
  let pm: Podman;
  beforeAll(async () => { pm = await setupPodman(path.join(tmp.dir, 'podman')); });
  afterAll(async () => { await pm?.cleanup(); });

  const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
  const lastCount = async (id: string) => {
    const nums = out(await pm.run(['logs', id])).split('\n').map((l) => /^n=(\d+)/.exec(l)?.[1]).filter(Boolean);
    return Number(nums.at(-1) ?? 0);
  };

  it('pause stops a running counter, unpause lets it go on; update --memory reaches the guest cgroup', async () => {
    const c = await pm.run(['run', '-d', '--network', 'none', '--memory', '300m', IMAGE, 'sh', '-c',
      'cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup); i=0; while :; do i=$((i+1)); echo "n=$i max=$(cat $cg/memory.max)"; sleep 0.1; done']);
    expect(c.exitCode, String(c.stderr)).toBe(0);
    const id = out(c).trim();
    await until(async () => (await lastCount(id)) >= 3, 'the counter in podman logs');
    const p = await pm.run(['pause', id]);
    expect(p.exitCode, String(p.stderr)).toBe(0);
    expect(out(await pm.run(['inspect', '--format', '{{.State.Status}}', id]))).toBe('paused');
    const frozen = await lastCount(id);
    await sleep(2000);
    expect(await lastCount(id)).toBe(frozen);
    const u = await pm.run(['unpause', id]);
    expect(u.exitCode, String(u.stderr)).toBe(0);
    expect(out(await pm.run(['inspect', '--format', '{{.State.Status}}', id]))).toBe('running');
    await until(async () => (await lastCount(id)) > frozen + 2, 'the counter to advance after unpause');

    const up = await pm.run(['update', '--memory', '256m', id]);
    expect(up.exitCode, String(up.stderr)).toBe(0);
    await until(async () => out(await pm.run(['logs', id])).includes(`max=${256 << 20}`), 'memory.max = 256 MiB in the guest');
    const tooBig = await pm.run(['update', '--memory', '2g', id]);
    expect(tooBig.exitCode).not.toBe(0);
    expect(String(tooBig.stderr)).toMatch(/memory limit 2147483648 exceeds the 314572800 bytes the VM has for the container/);

    expect((await pm.run(['rm', '-f', '-t', '0', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
  });
});

describe('containerd: ctr task pause / resume', () => {
  let ctd: Containerd;
  beforeAll(async () => {
    ctd = await startContainerdWithBusybox(path.join(tmp.dir, 'ctd'));
  });
  afterAll(async () => {
    await ctd?.stop();
  });

  const taskStatus = async (name: string) => {
    const t = String((await ctd.ctr(['task', 'ls'])).stdout ?? '');
    return new RegExp(`^${name}\\s+\\d+\\s+(\\w+)`, 'm').exec(t)?.[1];
  };

  it('pauses and resumes a task (PAUSED in ctr task ls)', async () => {
    const name = 'ctd-pause';
    const countFile = path.join(tmp.dir, 'ctd-count');
    fs.writeFileSync(countFile, '');
    const run = ctd.ctr(['run', '--rm', '--runc-binary', HUSK, '--mount', `type=bind,src=${countFile},dst=/count,options=rbind:rw`,
      CTR_IMAGE, name, 'sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done']);
    const count = () => Number(fs.readFileSync(countFile, 'utf8').trim() || 0);
    await until(async () => (await taskStatus(name)) === 'RUNNING' && count() >= 3, 'the task to run');
    const p = await ctd.ctr(['task', 'pause', name]);
    expect(p.exitCode, String(p.stderr)).toBe(0);
    expect(await taskStatus(name)).toBe('PAUSED');
    const frozen = count();
    await sleep(2000);
    expect(count()).toBe(frozen);
    const r = await ctd.ctr(['task', 'resume', name]);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    expect(await taskStatus(name)).toBe('RUNNING');
    await until(() => count() > frozen + 2, 'the counter to advance after resume');
    expect((await ctd.ctr(['task', 'kill', '--signal', 'SIGKILL', name])).exitCode).toBe(0);
    const done = await run;
    expect(done.exitCode).toBe(137);
    expect(await processesMentioning(name)).toEqual([]);
  });
});
