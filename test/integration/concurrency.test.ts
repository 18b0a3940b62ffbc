// Many clients on one container at once, the way a busy engine polls it:
// 20 `state` / `kill SIGCONT` calls fired together with `start`, then again
// together with `kill KILL` and the VMM's exit. Every call must either
// succeed or fail like runc (exit 1, one `husk: ...` line, no stack trace);
// `state` must always print a valid state; afterwards state.json is intact
// and `delete` leaves nothing behind.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { bundle, husk, huskDetached, processesMentioning, scratch, uniqueId } from '../helpers/husk.js';

let tmp: ReturnType<typeof scratch>;
let root: string;

beforeAll(() => {
  tmp = scratch('husk-conc-');
  root = path.join(tmp.dir, 'state');
});
afterAll(() => tmp.cleanup());

const text = (b: unknown) => Buffer.from(b as Uint8Array).toString();
const alive = (pid: number) => {
  try {
    return !/^\S+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

async function until(cond: () => boolean, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const STATUSES = ['created', 'running', 'stopped'];
type Verb = 'state' | 'kill';
interface Outcome { verb: Verb; exitCode: number | undefined; stdout: string; stderr: string; status?: string }

/**
 * 20 calls, alternating `state` and `kill SIGCONT`, all in flight at once;
 * with `spreadMs`, call i is launched i * spreadMs later (to cover a window).
 */
function burst(id: string, spreadMs = 0): Promise<Outcome>[] {
  return Array.from({ length: 20 }, async (_, i) => {
    const verb: Verb = i % 2 ? 'kill' : 'state';
    if (spreadMs) await new Promise((r) => setTimeout(r, i * spreadMs));
    const r = await husk(root, verb === 'state' ? ['state', id] : ['kill', id, 'SIGCONT'], { timeout: 180_000 });
    return { verb, exitCode: r.exitCode, stdout: text(r.stdout), stderr: text(r.stderr) };
  });
}

/** Each call succeeded or failed cleanly; a successful `state` printed a valid state. */
function check(id: string, pid: number, outcomes: Outcome[]): Outcome[] {
  for (const o of outcomes) {
    const what = `${o.verb} -> exit ${o.exitCode}\nstdout: ${o.stdout}\nstderr: ${o.stderr}`;
    expect(o.stderr, what).not.toMatch(/^\s+at /m);
    if (o.exitCode === 0) {
      expect(o.stderr, what).toBe('');
      if (o.verb === 'state') {
        const st = JSON.parse(o.stdout) as { id: string; pid: number; status: string; ociVersion: string };
        expect(STATUSES, what).toContain(st.status);
        expect(st.id, what).toBe(id);
        expect(st.pid, what).toBe(st.status === 'stopped' ? 0 : pid);
        o.status = st.status;
      } else {
        expect(o.stdout, what).toBe('');
      }
    } else {
      expect(o.exitCode, what).toBe(1);
      expect(o.stdout, what).toBe('');
      expect(o.stderr, what).toMatch(/^husk: [^\n]+\n?$/);
    }
  }
  return outcomes;
}

function summary(outcomes: Outcome[]): Record<string, number> {
  const s: Record<string, number> = {};
  for (const o of outcomes) {
    const k = o.exitCode === 0 ? `${o.verb}:${o.status ?? 'ok'}` : `${o.verb}:${o.stderr.trim()}`;
    s[k] = (s[k] ?? 0) + 1;
  }
  return s;
}

describe('concurrent clients on one container', () => {
  it('20 state/kill calls racing start, then kill KILL and the exit: clean answers, intact state, clean delete', async () => {
    const b = bundle(path.join(tmp.dir, 'b'), { args: ['sleep', '100000'] });
    const id = uniqueId('conc');
    const pidFile = path.join(tmp.dir, 'vmm.pid');
    const c = await huskDetached(root, ['create', '--bundle', b, '--pid-file', pidFile, id], tmp.dir);
    expect(c.exitCode, text(c.stderr)).toBe(0);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).toBe(true);
    const socketDir = (JSON.parse(fs.readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { husk: { socketDir: string } }).husk.socketDir;

    // While it starts.
    const [s, ...starting] = await Promise.all([husk(root, ['start', id], { timeout: 180_000 }), ...burst(id)]);
    expect(s.exitCode, text(s.stderr)).toBe(0);
    const during = check(id, pid, starting);
    expect(during.filter((o) => o.verb === 'state' && o.exitCode === 0).length, JSON.stringify(summary(during))).toBeGreaterThan(0);
    for (const o of during) if (o.verb === 'state' && o.exitCode === 0) expect(['created', 'running']).toContain(o.status);
    const after = await husk(root, ['state', id]);
    expect(after.exitCode, text(after.stderr)).toBe(0);
    expect(JSON.parse(text(after.stdout)).status).toBe('running');
    expect(alive(pid)).toBe(true);

    // While it stops: the burst races `kill KILL` and the VMM's exit
    // (spread over ~0.2 s so that some calls land after the exit).
    const killing = husk(root, ['kill', id, 'KILL'], { timeout: 180_000 });
    const stopping = Promise.all(burst(id, 10));
    const k = await killing;
    expect(k.exitCode, text(k.stderr)).toBe(0);
    await until(() => !alive(pid), 'VMM exit after SIGKILL');
    const stopped = check(id, pid, await stopping);
    // Any `kill` that failed did so because the container was (being) stopped.
    for (const o of stopped) if (o.verb === 'kill' && o.exitCode !== 0) expect(o.stderr).not.toMatch(/does not exist|corrupt/);

    // Afterwards: state.json parses, state says stopped, delete cleans up.
    const raw = JSON.parse(fs.readFileSync(path.join(root, id, 'state.json'), 'utf8')) as { id: string };
    expect(raw.id).toBe(id);
    const st = await husk(root, ['state', id]);
    expect(st.exitCode, text(st.stderr)).toBe(0);
    expect(JSON.parse(text(st.stdout))).toMatchObject({ id, status: 'stopped', pid: 0 });
    const d = await husk(root, ['delete', id]);
    expect(d.exitCode, text(d.stderr)).toBe(0);
    expect(text(d.stderr)).toBe('');
    expect(fs.existsSync(path.join(root, id))).toBe(false);
    expect(fs.existsSync(socketDir)).toBe(false);
    expect(await processesMentioning(id)).toEqual([]);
    const gone = await husk(root, ['state', id]);
    expect(gone.exitCode).toBe(1);
    expect(text(gone.stderr)).toMatch(/^husk: container does not exist/);
  });
});
