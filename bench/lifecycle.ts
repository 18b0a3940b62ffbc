// Lifecycle benchmark, each part against a baseline measured in the same run:
//  (a) create + start + wait for exit + delete of a bundle running `true`,
//      husk against runc (each with its own --root in a temp dir);
//  (b) the CLI's own cost: `husk state ID` and `husk kill ID SIGCONT` on a
//      running `sleep` container against `node -e 0` with the same Node;
//  (c) `podman run --rm IMAGE true` with husk against podman with runc, both
//      through one private podman set-up (storage, run dir, containers.conf);
//      husk both with a VM booted per container and with a pool of one
//      pre-booted VM (`husk pool`), which is refilled between runs.
// Prints JSON medians (BENCH_RUNS, default 5; the cheap CLI calls of (b) take
// BENCH_CLI_RUNS samples, default max(20, BENCH_RUNS)).
import { spawn, type StdioOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle } from '../rootfs-builder/example-bundle.js';
import { projectRoot } from '../src/vmm/assets.js';
import { median, printJson, round } from './lib.js';
import { writePodmanConf } from '../test/helpers/podman-conf.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const CLI_RUNS = Number(process.env.BENCH_CLI_RUNS ?? Math.max(20, RUNS));
const RUNC = process.env.BENCH_RUNC ?? '/usr/sbin/runc';
const PODMAN = '/usr/bin/podman';
const IMAGE = 'localhost/husk-busybox:latest';
const HUSK = path.join(projectRoot(), 'bin/husk');
const NODE = process.execPath;

interface Done { code: number | null; ms: number; stdout: string; stderr: string }

let seq = 0;
/**
 * Runs a command to completion with stdout/stderr in real files (a VMM left
 * behind by `create` inherits them: never a pipe this process would wait on).
 */
function exec(work: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Done> {
  const base = path.join(work, `out-${seq++}`);
  const outFd = fs.openSync(`${base}.out`, 'w');
  const errFd = fs.openSync(`${base}.err`, 'w');
  const stdio: StdioOptions = ['ignore', outFd, errFd];
  return new Promise<Done>((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio, env: env ?? process.env });
    child.on('error', reject);
    child.on('exit', (code) => {
      const ms = performance.now() - t0;
      const read = (f: string) => { const s = fs.readFileSync(f, 'utf8'); fs.rmSync(f, { force: true }); return s; };
      resolve({ code, ms, stdout: read(`${base}.out`), stderr: read(`${base}.err`) });
    });
  }).finally(() => {
    fs.closeSync(outFd);
    fs.closeSync(errFd);
  });
}

async function ok(work: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Done> {
  const r = await exec(work, cmd, args, env);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(-2000)}`);
  return r;
}

/** Alive and not a zombie (an exited container process may linger unreaped under pid 1). */
function alive(pid: number): boolean {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitExit(pid: number, timeoutMs = 120_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > end) throw new Error(`pid ${pid} did not exit within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface LifeSample { createMs: number; startMs: number; exitMs: number; deleteMs: number; totalMs: number }

/** create, start, wait for the process (husk: its VMM; runc: the container init) to exit, delete. */
async function lifecycle(work: string, bin: string, root: string, bundle: string, id: string): Promise<LifeSample> {
  const pidFile = path.join(work, `${id}.pid`);
  const t0 = performance.now();
  const c = await ok(work, bin, ['--root', root, 'create', '--bundle', bundle, '--pid-file', pidFile, id]);
  const pid = Number(fs.readFileSync(pidFile, 'utf8'));
  const s = await ok(work, bin, ['--root', root, 'start', id]);
  const t1 = performance.now();
  await waitExit(pid);
  const exitMs = performance.now() - t1;
  const d = await ok(work, bin, ['--root', root, 'delete', id]);
  const totalMs = performance.now() - t0;
  fs.rmSync(pidFile, { force: true });
  return { createMs: c.ms, startMs: s.ms, exitMs, deleteMs: d.ms, totalMs };
}

function summarize<T extends object>(samples: T[]): Record<keyof T, number> {
  const out = {} as Record<keyof T, number>;
  for (const k of Object.keys(samples[0]!) as (keyof T)[]) out[k] = round(median(samples.map((s) => s[k] as number)));
  return out;
}

async function benchLifecycle(work: string) {
  const bundle = makeBusyboxBundle(path.join(work, 'bundle-true'), { args: ['true'] });
  const roots = { husk: path.join(work, 'root-husk'), runc: path.join(work, 'root-runc') };
  const husk: LifeSample[] = [];
  const runc: LifeSample[] = [];
  // One untimed round each (page cache, first-use directories), then interleaved rounds.
  await lifecycle(work, HUSK, roots.husk, bundle, `bench-life-h-${process.pid}-w`);
  await lifecycle(work, RUNC, roots.runc, bundle, `bench-life-r-${process.pid}-w`);
  for (let i = 0; i < RUNS; i++) {
    runc.push(await lifecycle(work, RUNC, roots.runc, bundle, `bench-life-r-${process.pid}-${i}`));
    husk.push(await lifecycle(work, HUSK, roots.husk, bundle, `bench-life-h-${process.pid}-${i}`));
  }
  const h = summarize(husk);
  const r = summarize(runc);
  const rounded = (xs: LifeSample[]) => xs.map((x) => summarize([x]));
  return { husk: h, runc: r, ratio: round(h.totalMs / r.totalMs, 2), samples: { husk: rounded(husk), runc: rounded(runc) } };
}

async function benchCli(work: string) {
  const bundle = makeBusyboxBundle(path.join(work, 'bundle-sleep'), { args: ['sleep', '100000'] });
  const root = path.join(work, 'root-cli');
  const id = `bench-cli-${process.pid}`;
  await ok(work, HUSK, ['--root', root, 'create', '--bundle', bundle, id]);
  try {
    await ok(work, HUSK, ['--root', root, 'start', id]);
    const st = JSON.parse((await ok(work, HUSK, ['--root', root, 'state', id])).stdout) as { status: string };
    if (st.status !== 'running') throw new Error(`bench container is ${st.status}, not running`);
    const node: number[] = [];
    const state: number[] = [];
    const kill: number[] = [];
    const calls = () => [
      async () => node.push((await ok(work, NODE, ['-e', '0'])).ms),
      async () => state.push((await ok(work, HUSK, ['--root', root, 'state', id])).ms),
      async () => kill.push((await ok(work, HUSK, ['--root', root, 'kill', id, 'SIGCONT'])).ms),
    ];
    for (const f of calls()) await f(); // warm-up, not recorded
    node.length = state.length = kill.length = 0;
    for (let i = 0; i < CLI_RUNS; i++) for (const f of calls()) await f();
    const n = median(node);
    const s = median(state);
    const k = median(kill);
    return {
      runs: CLI_RUNS,
      nodeStartMs: round(n),
      stateMs: round(s),
      killSigcontMs: round(k),
      ratio: { state: round(s / n, 2), kill: round(k / n, 2) },
      overMs: { state: round(s - n), kill: round(k - n) },
      samples: { node: node.map((x) => round(x)), state: state.map((x) => round(x)), kill: kill.map((x) => round(x)) },
    };
  } finally {
    await exec(work, HUSK, ['--root', root, 'delete', '--force', id]);
  }
}

/** A private podman (own storage, run dir, containers.conf) with husk and runc registered. */
async function benchPodman(work: string) {
  if (!fs.existsSync(PODMAN) || !fs.existsSync('/usr/bin/conmon')) return { error: 'podman or conmon is not installed' };
  const dir = path.join(work, 'podman');
  fs.mkdirSync(dir, { recursive: true });
  // husk-pooled: husk with a pool of one pre-booted VM (`husk pool`), on a root of its own.
  const poolRoot = path.join(work, 'root-pool');
  const pooled = path.join(dir, 'husk-pooled');
  fs.writeFileSync(pooled, `#!/bin/sh\nexec ${HUSK} --root ${poolRoot} "$@"\n`, { mode: 0o755 });
  const poolReady = async () => {
    const t0 = performance.now();
    await ok(work, HUSK, ['--root', poolRoot, 'pool', 'fill', '--size', '1', '--wait']);
    return performance.now() - t0;
  };
  const conf = writePodmanConf(dir, { husk: HUSK, runc: RUNC, 'husk-pooled': pooled });
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const base = ['--root', path.join(dir, 'storage'), '--runroot', path.join(dir, 'run')];
  const pm = (args: string[]) => exec(work, PODMAN, [...base, ...args], env);
  try {
    const src = makeBusyboxBundle(path.join(dir, 'image-src'), { args: ['sh'] });
    const tar = path.join(dir, 'busybox.tar');
    const t = await exec(work, 'tar', ['-C', path.join(src, 'rootfs'), '-cf', tar, '.']);
    if (t.code !== 0) return { error: `tar: ${t.stderr.trim()}` };
    const imp = await pm(['import', '--change', 'CMD ["sh"]', tar, IMAGE]);
    if (imp.code !== 0) return { error: `podman import: ${imp.stderr.trim()}` };
    const runWith = (runtime: string) => pm(['--runtime', runtime, 'run', '--rm', IMAGE, 'true']);
    // Warm-up (and the check that each runtime works here at all).
    const probe: Record<string, string | undefined> = {};
    await poolReady();
    for (const rt of ['runc', 'husk', 'husk-pooled']) {
      await poolReady();
      const r = await runWith(rt);
      if (r.code !== 0) probe[rt] = `podman --runtime ${rt} run failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
    }
    if (probe.husk) return { error: probe.husk };
    if (probe['husk-pooled']) return { error: probe['husk-pooled'] };
    const husk: number[] = [];
    const runc: number[] = [];
    const pooledMs: number[] = [];
    const refillMs: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Every run starts with the pool ready. refillMs: from the end of a pooled run until
      // `husk pool fill --wait` has the pool ready again (it boots one if the successor, which
      // the VMM that served the run starts a second after the claim, has not appeared yet).
      await poolReady();
      const p = await runWith('husk-pooled');
      if (p.code !== 0) throw new Error(`podman --runtime husk-pooled: exit ${p.code}: ${p.stderr.trim()}`);
      pooledMs.push(p.ms);
      refillMs.push(await poolReady());
      if (!probe.runc) {
        const r = await runWith('runc');
        if (r.code !== 0) throw new Error(`podman --runtime runc: exit ${r.code}: ${r.stderr.trim()}`);
        runc.push(r.ms);
      }
      const h = await runWith('husk');
      if (h.code !== 0) throw new Error(`podman --runtime husk: exit ${h.code}: ${h.stderr.trim()}`);
      husk.push(h.ms);
    }
    const hm = median(husk);
    const pm_ = median(pooledMs);
    const pooledResult = { huskMs: round(pm_), refillMs: round(median(refillMs)) };
    const samples = { husk: husk.map((x) => round(x)), huskPooled: pooledMs.map((x) => round(x)), refill: refillMs.map((x) => round(x)) };
    if (probe.runc) return { huskMs: round(hm), pooled: pooledResult, runc: { error: probe.runc }, samples };
    const rm = median(runc);
    return {
      huskMs: round(hm), runcMs: round(rm), ratio: round(hm / rm, 2),
      pooled: { ...pooledResult, ratio: round(pm_ / rm, 2) },
      samples: { ...samples, runc: runc.map((x) => round(x)) },
    };
  } finally {
    await pm(['rm', '-af', '-t', '0']).catch(() => {});
    await pm(['system', 'reset', '-f']).catch(() => {});
    await exec(work, HUSK, ['--root', poolRoot, 'pool', 'drain']).catch(() => {});
  }
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-life-'));
  try {
    const lifecycleResult = await benchLifecycle(work);
    const cli = await benchCli(work);
    const podman = await benchPodman(work);
    printJson({
      benchmark: 'lifecycle',
      engine: 'tcg',
      runs: RUNS,
      node: { binary: NODE, version: process.version },
      createStartExitDelete: lifecycleResult,
      cli,
      podmanRunTrue: { ...podman, network: 'podman default', cgroupManager: 'cgroupfs' },
      goals: {
        state: { goal: '`husk state` within 1.3x of bare Node start-up (cli.ratio.state <= 1.3)', ratio: cli.ratio.state, met: cli.ratio.state <= 1.3 },
        podman: 'ratio' in podman && podman.pooled && 'ratio' in podman.pooled
          ? {
            goal: 'podman with husk within 2x of podman with runc (with the pool: podmanRunTrue.pooled.ratio <= 2)',
            ratio: podman.pooled.ratio, met: (podman.pooled.ratio as number) <= 2,
            withoutPool: { ratio: podman.ratio, met: (podman.ratio as number) <= 2 },
          }
          : { goal: 'podman with husk within 2x of podman with runc', ratio: null, met: null, note: 'podman with runc could not be measured here' },
      },
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/lifecycle: ${(err as Error).message}\n`);
  process.exit(1);
});
