// containerd 1.6 (containerd-shim-runc-v2) with husk as the runc binary.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { HUSK, processesMentioning, scratch } from '../helpers/husk.js';
import { IMAGE, setupPodman, type Podman } from '../helpers/podman.js';
import { CTR_IMAGE, startContainerd, type Containerd } from '../helpers/containerd.js';

let tmp: ReturnType<typeof scratch>;
let pm: Podman;
let ctd: Containerd;

beforeAll(async () => {
  tmp = scratch('husk-ctd-');
  pm = await setupPodman(path.join(tmp.dir, 'podman'));
  const archive = path.join(tmp.dir, 'busybox-oci.tar');
  const save = await pm.run(['save', '--format', 'oci-archive', '-o', archive, IMAGE]);
  if (save.exitCode !== 0) throw new Error(`podman save: ${save.stderr}`);
  ctd = await startContainerd(path.join(tmp.dir, 'containerd'), archive);
});
afterAll(async () => {
  await ctd?.stop();
  await pm?.cleanup();
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
