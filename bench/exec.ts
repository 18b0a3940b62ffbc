// exec benchmark: `husk exec ID true` against `runc exec ID true`, each on a
// running `sleep` container of its own (same busybox bundle), measured in
// the same run, plus `node -e 0` (Node's start-up, which every husk call
// pays). Prints JSON medians of BENCH_RUNS samples (default 15) and the
// ratios; the goal is husk <= 2 x runc + Node's start-up.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle } from '../rootfs-builder/example-bundle.js';
import { projectRoot } from '../src/vmm/assets.js';
import { median, printJson, round } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 15);
const RUNC = process.env.BENCH_RUNC ?? '/usr/sbin/runc';
const HUSK = path.join(projectRoot(), 'bin/husk');

interface Done { code: number | null; ms: number; stderr: string }

/** Runs to completion; stdio goes to files or /dev/null (a detached VMM may inherit it). */
function run(cmd: string, args: string[], errFile: string): Promise<Done> {
  const errFd = fs.openSync(errFile, 'w');
  return new Promise<Done>((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', errFd] });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, ms: performance.now() - t0, stderr: fs.readFileSync(errFile, 'utf8') }));
  }).finally(() => fs.closeSync(errFd));
}

async function ok(cmd: string, args: string[], errFile: string): Promise<Done> {
  const r = await run(cmd, args, errFile);
  if (r.code !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim().slice(-1000)}`);
  return r;
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-exec-'));
  const err = path.join(work, 'err');
  const bundle = makeBusyboxBundle(path.join(work, 'bundle'), { args: ['sleep', '100000'] });
  const rt = [
    { name: 'husk', bin: HUSK, root: path.join(work, 'husk-root'), id: `bench-exec-h-${process.pid}` },
    { name: 'runc', bin: RUNC, root: path.join(work, 'runc-root'), id: `bench-exec-r-${process.pid}` },
  ];
  const samples: Record<string, number[]> = { husk: [], runc: [], node: [] };
  try {
    for (const r of rt) {
      await ok(r.bin, ['--root', r.root, 'create', '--bundle', bundle, r.id], err);
      await ok(r.bin, ['--root', r.root, 'start', r.id], err);
    }
    // Warm-up (page cache, Node's compile cache), then interleaved samples.
    for (const r of rt) await ok(r.bin, ['--root', r.root, 'exec', r.id, 'true'], err);
    for (let i = 0; i < RUNS; i++) {
      for (const r of rt) samples[r.name]!.push((await ok(r.bin, ['--root', r.root, 'exec', r.id, 'true'], err)).ms);
      samples.node!.push((await ok(process.execPath, ['-e', '0'], err)).ms);
    }
  } finally {
    for (const r of rt) await run(r.bin, ['--root', r.root, 'delete', '--force', r.id], err).catch(() => undefined);
    fs.rmSync(work, { recursive: true, force: true });
  }
  const m = { husk: median(samples.husk!), runc: median(samples.runc!), node: median(samples.node!) };
  printJson({
    benchmark: 'exec',
    runs: RUNS,
    engine: 'tcg',
    median_ms: { husk_exec_true: round(m.husk), runc_exec_true: round(m.runc), node_e_0: round(m.node) },
    ratio_husk_to_runc: round(m.husk / m.runc, 2),
    ratio_husk_to_runc_plus_node: round(m.husk / (m.runc + m.node), 2),
    goal: 'husk_exec_true <= 2 * runc_exec_true + node_e_0',
    goal_met: m.husk <= 2 * m.runc + m.node,
  });
}

await main();
