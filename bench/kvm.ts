// bench/kvm: JSON with
//  - setup: CPU time of the husk process from its start to vCPU 0's first
//    KVM_RUN of the kvm engine booting the project's kernel (Vm.start, as
//    husk does it), with its parts (Node's own start, module loading, the
//    machine set-up steps, the vCPU thread, other threads); medians of
//    several fresh processes (bench/kvm-setup.ts). Also reported: the
//    device worker's own CPU until its devices are up (it starts after the
//    first KVM_RUN) and an empty worker thread's CPU, the floor every
//    thread costs in Node.
//  - nodeBare: the floor under that figure, fresh Node processes that do
//    nothing, run alternately with the set-up runs (as many): their CPU at
//    their first line (read as setup's nodeStart is) and a whole `node -e 0`
//    (getrusage of children), with setup's ratio to them.
//  - exitCost: ns per VM exit of the TypeScript vCPU loop (the engine's
//    VcpuLoop, in a worker thread as the engine runs it, and on the main
//    thread) against a minimal C loop doing the same work per exit, same
//    tiny guest (port I/O in a loop). The C loop stays up in a child
//    process; the three alternate in short runs (order rotated every
//    round) after a warm-up, so load changes hit all of them alike; the
//    ratio is the median of the per-round ratios.
// Numbers only, never assertions. Needs /dev/kvm and cc.
// Run: .tools/node/bin/node dist/bench/kvm.js [exits per run] [setup runs] [rounds]
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Worker } from 'node:worker_threads';
import { median, printJson, round } from './lib.js';
import { projectRoot } from '../src/vmm/assets.js';
import { childrenCpuUs } from '../src/sys/cpu-clock.js';
import { loopGuest, type PerExit } from './kvm-guest.js';

type Tree = { [k: string]: number | Tree | null };

/** Field-wise median of several runs' JSON (same shape; a null is a run without that number), rounded. */
function medianTree(runs: Tree[]): Tree {
  const out: Tree = {};
  for (const k of Object.keys(runs[0]!)) {
    const vs = runs.map((r) => r[k]);
    const nums = vs.filter((v): v is number => typeof v === 'number');
    const trees = vs.filter((v): v is Tree => typeof v === 'object' && v !== null);
    out[k] = nums.length ? round(median(nums)) : trees.length ? medianTree(trees) : null;
  }
  return out;
}

/**
 * `runs` rounds of: one set-up measurement (a fresh process, kvm-setup.ts), then the floor
 * under it, fresh Node processes that do nothing: their CPU at their first line (read as
 * kvm-setup reads Node's own start) and a whole `node -e 0` (getrusage of children). The
 * three alternate so that a change in the machine's load hits them alike; ratios are medians
 * of the per-round ratios.
 */
function setupAndFloor(runs: number) {
  const setupScript = path.join(projectRoot(), 'dist/bench/kvm-setup.js');
  const bareScript = path.join(projectRoot(), 'dist/bench/node-bare.js');
  const results: Tree[] = [];
  const firstLine: number[] = [];
  const whole: number[] = [];
  for (let i = 0; i < runs; i++) {
    results.push(JSON.parse(execFileSync(process.execPath, [setupScript], { encoding: 'utf8', env: { ...process.env } })) as Tree);
    firstLine.push(Number(execFileSync(process.execPath, [bareScript], { encoding: 'utf8' })));
    const before = childrenCpuUs();
    const r = spawnSync(process.execPath, ['-e', '0']);
    if (r.status !== 0) throw new Error('node -e 0 failed');
    whole.push((childrenCpuUs() - before) / 1000);
  }
  const setupMs = results.map((r) => r.cpuMsToFirstRun as number);
  const ratio = (floor: number[]) => round(median(setupMs.map((x, i) => x / floor[i]!)), 2);
  return {
    setup: { runs, ...medianTree(results), cpuMsToFirstRunRuns: setupMs.map((x) => round(x)), goalCpuMs: 30 },
    nodeBare: {
      runs,
      cpuMsAtFirstLine: round(median(firstLine)),
      cpuMsWholeProcess: round(median(whole)),
      setupOverFirstLine: ratio(firstLine),
      setupOverWholeProcess: ratio(whole),
      cpuMsAtFirstLineRuns: firstLine.map((x) => round(x)),
      cpuMsWholeProcessRuns: whole.map((x) => round(x)),
    },
  };
}

function buildC(): string {
  const out = path.join(projectRoot(), 'dist/bench/kvm-loop');
  const src = path.join(projectRoot(), 'bench/kvm-loop.c');
  if (!fs.existsSync(out) || fs.statSync(out).mtimeMs < fs.statSync(src).mtimeMs) {
    fs.mkdirSync(path.dirname(out), { recursive: true });
    execFileSync('cc', ['-O2', '-o', out, src]);
  }
  return out;
}

type Runner = (n: number) => Promise<PerExit>;

/** The C loop, up in a child process: a run length in, ns per exit out. */
function cLoop(bin: string): { run: Runner; close(): void } {
  const child = spawn(bin, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  return {
    async run(n) {
      child.stdin.write(`${n}\n`);
      const line = await lines.next();
      if (line.done) throw new Error('the C loop ended');
      const [wall, cpu] = line.value.split(' ').map(Number);
      return { wall: wall!, cpu: cpu! };
    },
    close() { child.stdin.end(); },
  };
}

/** VcpuLoop in a worker thread, as the engine runs it. */
function workerLoop(): { run: Runner; close(): Promise<number> } {
  const w = new Worker(new URL('./kvm-loop-worker.js', import.meta.url));
  let pending: { resolve: (ns: PerExit) => void; reject: (e: Error) => void } | undefined;
  w.on('message', (ns: PerExit) => { pending?.resolve(ns); pending = undefined; });
  w.on('error', (e) => { pending?.reject(e); pending = undefined; });
  return {
    run: (n) => new Promise((resolve, reject) => {
      pending = { resolve, reject };
      w.postMessage(n);
    }),
    close: () => { w.postMessage(-1); return w.terminate(); },
  };
}

async function exitCost(exits: number, rounds: number) {
  const c = cLoop(buildC());
  const worker = workerLoop();
  const main = loopGuest();
  const runners: Record<'c' | 'tsWorker' | 'tsMain', Runner> = {
    c: c.run,
    tsWorker: worker.run,
    tsMain: async (n) => main.run(n),
  };
  const names = Object.keys(runners) as (keyof typeof runners)[];
  type Series = Record<keyof typeof runners, number[]>;
  const wall: Series = { c: [], tsWorker: [], tsMain: [] };
  const cpu: Series = { c: [], tsWorker: [], tsMain: [] };
  // Each round runs every loop `exits` times in slices of at most SLICE exits, interleaved with
  // the order rotated per slice: a change in the machine's load lands on all three alike.
  const SLICE = 2500;
  try {
    for (let i = 0; i < 2; i++) for (const k of names) await runners[k](Math.min(exits, SLICE)); // warm-up: JIT, caches
    for (let r = 0; r < rounds; r++) {
      const sum = { c: { wall: 0, cpu: 0 }, tsWorker: { wall: 0, cpu: 0 }, tsMain: { wall: 0, cpu: 0 } };
      for (let done = 0, s = 0; done < exits; s++) {
        const n = Math.min(SLICE, exits - done);
        for (let j = 0; j < names.length; j++) {
          const k = names[(r + s + j) % names.length]!;
          const x = await runners[k](n);
          sum[k].wall += x.wall * n;
          sum[k].cpu += x.cpu * n;
        }
        done += n;
      }
      for (const k of names) { wall[k].push(sum[k].wall / exits); cpu[k].push(sum[k].cpu / exits); }
    }
  } finally {
    c.close();
    await worker.close();
    main.close();
  }
  const ratio = (s: Series, k: 'tsWorker' | 'tsMain') => round(median(s[k].map((x, i) => x / s.c[i]!)), 3);
  const runs = (xs: number[]) => xs.map((x) => round(x, 0));
  const summary = (s: Series) => ({
    cNsPerExit: round(median(s.c)),
    tsNsPerExit: round(median(s.tsWorker)),
    tsMainThreadNsPerExit: round(median(s.tsMain)),
    tsOverC: ratio(s, 'tsWorker'),
    tsMainThreadOverC: ratio(s, 'tsMain'),
  });
  return {
    exitsPerRun: exits,
    rounds,
    sliceExits: SLICE,
    // CPU time of the looping thread: what an exit costs, whatever else the shared machine runs
    cpu: summary(cpu),
    // wall clock: also counts the time either loop waited for a CPU
    wall: summary(wall),
    goalTsOverC: 1.1,
    runs: {
      cCpu: runs(cpu.c), tsCpu: runs(cpu.tsWorker), tsMainThreadCpu: runs(cpu.tsMain),
      cWall: runs(wall.c), tsWall: runs(wall.tsWorker), tsMainThreadWall: runs(wall.tsMain),
    },
  };
}

async function main() {
  const exits = Number(process.argv[2] ?? 20000);
  const setupRuns = Number(process.argv[3] ?? 7);
  const rounds = Number(process.argv[4] ?? 15);
  // 0 setup runs: the exit cost alone
  const setup = setupRuns > 0 ? setupAndFloor(setupRuns) : undefined;
  const cost = await exitCost(exits, rounds);
  printJson({
    host: { kvm: fs.existsSync('/sys/module/kvm_pvm') ? 'pvm' : 'kvm', cpus: os.cpus().length, node: process.version },
    ...setup,
    exitCost: cost,
  });
}

await main();
