// Boot benchmark: `husk run` of `true` against bare QEMU TCG booting the
// same kernel and initramfs (agent in bench mode: it reports ready on the
// console and powers off, with no husk devices), measured in the same run.
// Prints JSON medians; the goal (husk adds <= 10%) is read off `ratio`.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle } from '../rootfs-builder/example-bundle.js';
import { guestAssets, projectRoot } from '../src/vmm/assets.js';
import { MICROVM_MACHINE, QEMU_BINARY, TCG_CMDLINE } from '../src/vmm/engines/tcg/qemu.js';
import { machineSize } from '../src/runtime/resources.js';
import { guestCmdline } from '../src/vmm/cmdline.js';
import { median, printJson, round } from './lib.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const READY_MARK = 'husk-agent: ready';

interface Sample { readyMs: number; exitMs: number; rssKiB?: number }

function rssExcludingGuest(pid: number): number | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const anon = Number(/RssAnon:\s+(\d+)/.exec(s)?.[1] ?? 0);
    const file = Number(/RssFile:\s+(\d+)/.exec(s)?.[1] ?? 0);
    return anon + file; // RssShmem (the memfd guest RAM) left out on purpose
  } catch {
    return undefined;
  }
}

/** Runs a command, timing when `mark` first appears in its output and when it exits. */
function timed(cmd: string, args: string[], mark: RegExp, sampleRss: boolean): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let readyMs = NaN;
    let text = '';
    let peak = 0;
    const timer = sampleRss ? setInterval(() => { peak = Math.max(peak, rssExcludingGuest(child.pid!) ?? 0); }, 20) : undefined;
    const onData = (d: Buffer) => {
      if (!Number.isNaN(readyMs)) return;
      text += d.toString();
      if (mark.test(text)) readyMs = performance.now() - t0;
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => {
      const exitMs = performance.now() - t0;
      if (timer) clearInterval(timer);
      if (code !== 0) return reject(new Error(`${cmd} exited ${code}: ${text.slice(-2000)}`));
      if (Number.isNaN(readyMs)) return reject(new Error(`${cmd}: never saw ${mark}: ${text.slice(-2000)}`));
      resolve({ readyMs, exitMs, rssKiB: sampleRss ? peak : undefined });
    });
  });
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-boot-'));
  try {
    const bundle = makeBusyboxBundle(path.join(work, 'bundle'), { args: ['true'] });
    const assets = guestAssets();
    const husk = path.join(projectRoot(), 'bin/husk');
    // The same machine size husk gives this bundle, so only husk's own work differs.
    const size = machineSize(JSON.parse(fs.readFileSync(path.join(bundle, 'config.json'), 'utf8')));
    const bare = [
      '-accel', 'tcg,thread=multi', '-M', MICROVM_MACHINE,
      '-cpu', 'max', '-smp', String(size.vcpus), '-m', `${size.memoryMiB}M`, '-object', `memory-backend-memfd,id=mem,size=${size.memoryMiB}M,share=on`,
      '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'stdio', '-monitor', 'none',
      '-kernel', assets.kernel, '-initrd', assets.initrd,
      '-append', `${guestCmdline({ rootfsTag: 'rootfs', agentPort: 1024 })} ${TCG_CMDLINE} husk.bench`,
    ];
    const huskSamples: Sample[] = [];
    const qemuSamples: Sample[] = [];
    for (let i = 0; i < RUNS; i++) {
      // Interleaved so that machine noise hits both alike.
      qemuSamples.push(await timed(QEMU_BINARY, bare, new RegExp(READY_MARK), false));
      huskSamples.push(await timed(husk, ['--root', path.join(work, 'state'), '--debug', 'run', '--bundle', bundle, `bench-${process.pid}-${i}`], /agent ready/, true));
    }
    const h = { readyMs: median(huskSamples.map((s) => s.readyMs)), exitMs: median(huskSamples.map((s) => s.exitMs)) };
    const q = { readyMs: median(qemuSamples.map((s) => s.readyMs)), exitMs: median(qemuSamples.map((s) => s.exitMs)) };
    printJson({
      benchmark: 'boot',
      engine: 'tcg',
      runs: RUNS,
      husk: { readyMs: round(h.readyMs), exitMs: round(h.exitMs), rssMiBExcludingGuest: round(median(huskSamples.map((s) => s.rssKiB!)) / 1024) },
      bareQemu: { readyMs: round(q.readyMs), exitMs: round(q.exitMs) },
      ratio: { ready: round(h.readyMs / q.readyMs, 3), exit: round(h.exitMs / q.exitMs, 3) },
      goal: 'husk adds no more than 10% over bare QEMU (ratio <= 1.10)',
      samples: { husk: huskSamples, bareQemu: qemuSamples },
    });
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/boot: ${(err as Error).message}\n`);
  process.exit(1);
});
