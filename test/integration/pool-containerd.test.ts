// The pool with containerd's runc shim: a task on a pooled VM (host network,
// the default size) whose pid, the thin process, the shim reaps.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { HUSK, husk, processesMentioning, scratch } from '../helpers/husk.js';
import { isSameProcessAlive } from '../../src/sys/process.js';
import { CTR_IMAGE, startContainerdWithBusybox, type Containerd } from '../helpers/containerd.js';

let tmp: ReturnType<typeof scratch>;
let ctd: Containerd;
let root = '';
let wrapper = '';

const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');

async function readyPid(): Promise<number> {
  const f = await husk(root, ['pool', 'fill', '--size', '1', '--wait'], { encoding: 'utf8' });
  expect(f.exitCode, String(f.stderr)).toBe(0);
  const s = JSON.parse(String((await husk(root, ['pool', 'status'], { encoding: 'utf8' })).stdout)) as { entries: { pid: number; state: string }[] };
  const ready = s.entries.filter((e) => e.state === 'ready');
  expect(ready).toHaveLength(1);
  return ready[0]!.pid;
}

beforeAll(async () => {
  tmp = scratch('husk-pool-ctd-');
  root = path.join(tmp.dir, 'root');
  // The shim names its own --root; this test's pool lives in another one, so the wrapper drops the shim's.
  wrapper = path.join(tmp.dir, 'husk-pooled');
  fs.writeFileSync(wrapper, [
    '#!/bin/sh',
    'n=$#; i=0',
    'while [ $i -lt $n ]; do a=$1; shift; i=$((i+1))',
    '  case "$a" in --root) shift; i=$((i+1)); continue ;; --root=*) continue ;; esac',
    '  set -- "$@" "$a"',
    'done',
    `exec ${HUSK} --root ${root} "$@"`,
    '',
  ].join('\n'), { mode: 0o755 });
  ctd = await startContainerdWithBusybox(path.join(tmp.dir, 'ctd'));
});
afterAll(async () => {
  await ctd?.stop();
  if (root) await husk(root, ['pool', 'drain']);
  tmp?.cleanup();
});

describe('husk pool with containerd', () => {
  it('runs a task on the pooled VM: output, exit code, and nothing of it left', async () => {
    const pooled = await readyPid();
    const r = await ctd.ctr(['run', '--rm', '--net-host', '--runc-binary', wrapper, CTR_IMAGE, 'ctd-pool', 'sh', '-c', 'echo hi; exit 7']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('hi');
    expect(r.exitCode).toBe(7);
    // The pooled VM served it (its VMM is gone with the task; pid 1 may not have reaped it yet).
    expect(isSameProcessAlive(pooled)).toBe(false);
    expect(await processesMentioning('ctd-pool')).toEqual([]);
  });

  it('relays ctr task kill through the thin process', async () => {
    await readyPid();
    const run = ctd.ctr(['run', '--rm', '--net-host', '--runc-binary', wrapper, CTR_IMAGE, 'ctd-pool-kill', 'sh', '-c', 'trap "exit 21" TERM; while :; do sleep 0.1; done']);
    for (let i = 0; ; i++) {
      const t = await ctd.ctr(['task', 'ls']);
      if (/ctd-pool-kill\s+\d+\s+RUNNING/.test(out(t))) break;
      if (i > 600) throw new Error(`task never ran: ${out(t)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const st = JSON.parse(fs.readFileSync(path.join(root, 'ctd-pool-kill', 'state.json'), 'utf8')) as { pid: number; husk: { pooledVmmPid?: number } };
    expect(st.husk.pooledVmmPid).toBeGreaterThan(0);
    expect(st.pid).not.toBe(st.husk.pooledVmmPid);
    const k = await ctd.ctr(['task', 'kill', '--signal', 'SIGTERM', 'ctd-pool-kill']);
    expect(k.exitCode, err(k)).toBe(0);
    expect((await run).exitCode).toBe(21);
    expect(await processesMentioning('ctd-pool-kill')).toEqual([]);
  });
});
