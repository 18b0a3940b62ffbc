// containerd 1.6 (containerd-shim-runc-v2) with husk as the runc binary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUSK, processesMentioning, scratch } from '../helpers/husk.js';
import { CTR_IMAGE, startContainerdWithBusybox, type Containerd } from '../helpers/containerd.js';

let tmp: ReturnType<typeof scratch>;
let ctd: Containerd;

beforeAll(async () => {
  tmp = scratch('husk-ctd-');
  ctd = await startContainerdWithBusybox(tmp.dir);
});
afterAll(async () => {
  await ctd?.stop();
  tmp?.cleanup();
});

const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');

describe('ctr run --runc-binary husk', () => {
  it('prints output and propagates exit codes', async () => {
    const r = await ctd.ctr(['run', '--rm', '--runc-binary', HUSK, CTR_IMAGE, 'ctd-hi', 'echo', 'hi']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('hi');
    expect(r.exitCode).toBe(0);
    const e = await ctd.ctr(['run', '--rm', '--runc-binary', HUSK, CTR_IMAGE, 'ctd-exit', 'sh', '-c', 'exit 7']);
    expect(e.exitCode).toBe(7);
  });

  it('kills a task with ctr task kill', async () => {
    const run = ctd.ctr(['run', '--rm', '--runc-binary', HUSK, CTR_IMAGE, 'ctd-kill', 'sh', '-c', 'trap "exit 21" TERM; echo up; while :; do sleep 0.1; done']);
    for (let i = 0; ; i++) {
      const t = await ctd.ctr(['task', 'ls']);
      if (/ctd-kill\s+\d+\s+RUNNING/.test(out(t))) break;
      if (i > 600) throw new Error(`task never ran: ${out(t)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const k = await ctd.ctr(['task', 'kill', '--signal', 'SIGTERM', 'ctd-kill']);
    expect(k.exitCode, err(k)).toBe(0);
    const r = await run;
    expect(r.exitCode).toBe(21);
    expect(await processesMentioning('ctd-kill')).toEqual([]);
  });

  it('reports runtime errors through the JSON log', async () => {
    const r = await ctd.ctr(['run', '--rm', '--runc-binary', HUSK, CTR_IMAGE, 'ctd-err', '/no/such/binary']);
    expect(r.exitCode).not.toBe(0);
    expect(err(r)).toMatch(/exec: "\/no\/such\/binary": no such file or directory/);
  });
});

describe('ctr task exec and ps with husk', () => {
  it('execs into a running task and lists its processes', async () => {
    const run = ctd.ctr(['run', '--rm', '--runc-binary', HUSK, CTR_IMAGE, 'ctd-exec', 'sh', '-c', 'echo up; exec sleep 100000']);
    for (let i = 0; ; i++) {
      const t = await ctd.ctr(['task', 'ls']);
      if (/ctd-exec\s+\d+\s+RUNNING/.test(out(t))) break;
      if (i > 600) throw new Error(`task never ran: ${out(t)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const e = await ctd.ctr(['task', 'exec', '--exec-id', 'x', 'ctd-exec', 'echo', 'hi']);
    expect(err(e)).toBe('');
    expect(out(e)).toBe('hi');
    expect(e.exitCode).toBe(0);
    const code = await ctd.ctr(['task', 'exec', '--exec-id', 'y', 'ctd-exec', 'sh', '-c', 'exit 3']);
    expect(code.exitCode).toBe(3);

    const bg = ctd.ctr(['task', 'exec', '--exec-id', 'bg', 'ctd-exec', 'sleep', '1000']);
    let ps = '';
    for (let i = 0; ; i++) {
      ps = out(await ctd.ctr(['task', 'ps', 'ctd-exec']));
      if (ps.trim().split('\n').length >= 3) break;
      if (i > 300) throw new Error(`ps never showed the exec'd process: ${ps}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const pids = ps.trim().split('\n').slice(1).map((l) => Number(l.trim().split(/\s+/)[0]));
    expect(pids).toContain(1); // the task's init, pid 1 of its namespace in the guest
    expect(pids).toHaveLength(2);

    const k = await ctd.ctr(['task', 'kill', '--signal', 'SIGKILL', 'ctd-exec']);
    expect(k.exitCode, err(k)).toBe(0);
    expect((await run).exitCode).toBe(137);
    await bg;
    expect(await processesMentioning('ctd-exec')).toEqual([]);
  });
});
