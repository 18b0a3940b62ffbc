// pause/resume, update and events --stats on a running container: husk
// (the whole VM frozen; resources and stats through the guest agent)
// against runc (the cgroup freezer) in the same run, each with its own
// --root. Prints JSON medians over BENCH_RUNS rounds (default 10) and
// node -e 0 as the floor every husk call pays.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle } from '../rootfs-builder/example-bundle.js';
import { projectRoot } from '../src/vmm/assets.js';
import { median, printJson, round } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 10);
const RUNC = process.env.BENCH_RUNC ?? '/usr/sbin/runc';
const HUSK = path.join(projectRoot(), 'bin/husk');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-pause-'));
const errFile = path.join(work, 'stderr');

function call(cmd: string, args: string[]): number {
  const t0 = performance.now();
  // stderr to a file: the process create leaves behind inherits it and must not hold a pipe open.
  const errFd = fs.openSync(errFile, 'w');
  let r;
  try {
    r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', errFd] });
  } finally {
    fs.closeSync(errFd);
  }
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${path.basename(cmd)} ${args.join(' ')} exited ${r.status}: ${fs.readFileSync(errFile, 'utf8')}`);
  return ms;
}

function measure(bin: string, root: string, bundle: string, id: string) {
  const g = ['--root', root];
  call(bin, [...g, 'create', '--bundle', bundle, id]);
  try {
    call(bin, [...g, 'start', id]);
    const pause: number[] = [];
    const resume: number[] = [];
    const stats: number[] = [];
    const update: number[] = [];
    for (let i = -1; i < RUNS; i++) {
      const p = call(bin, [...g, 'pause', id]);
      const r = call(bin, [...g, 'resume', id]);
      const s = call(bin, [...g, 'events', '--stats', id]);
      const u = call(bin, [...g, 'update', '--pids-limit', String(100 + i + 1), id]);
      if (i < 0) continue; // warm-up round
      pause.push(p); resume.push(r); stats.push(s); update.push(u);
    }
    return { pauseMs: round(median(pause)), resumeMs: round(median(resume)), statsMs: round(median(stats)), updateMs: round(median(update)) };
  } finally {
    call(bin, [...g, 'delete', '--force', id]);
  }
}

try {
  const bundle = makeBusyboxBundle(path.join(work, 'bundle'), { args: ['sleep', '100000'] });
  const spec = JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8'));
  spec.linux.resources = { ...(spec.linux.resources ?? {}), pids: { limit: 100 } };
  fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(spec));
  const node: number[] = [];
  for (let i = 0; i < RUNS; i++) node.push(call(process.execPath, ['-e', '0']));
  const runc = measure(RUNC, path.join(work, 'root-runc'), bundle, `bench-pause-r-${process.pid}`);
  const husk = measure(HUSK, path.join(work, 'root-husk'), bundle, `bench-pause-h-${process.pid}`);
  const ratio = Object.fromEntries(Object.entries(husk).map(([k, v]) => [k, round(v / runc[k as keyof typeof runc], 2)]));
  printJson({ runs: RUNS, engine: 'tcg unless HUSK_ENGINE says otherwise', nodeStartMs: round(median(node)), husk, runc, ratio });
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
