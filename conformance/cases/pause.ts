// runc CLI: pause/resume (runtime.md has no pause; runc's contract: status
// "paused", the processes frozen, errors when not running / not paused)
// and events --stats (runc's stats JSON). A counter file in the rootfs
// shows whether the container runs: frozen while paused, moving after.
import fs from 'node:fs';
import path from 'node:path';
import type { Case, Ctx } from '../lib/case.js';
import { ensure, equal, fail, sleep, until } from '../lib/check.js';

const COUNTER = ['sh', '-c', 'i=0; while :; do i=$((i+1)); echo $i > /c.new; mv /c.new /counter; sleep 0.1; done'];

async function counting(ctx: Ctx) {
  const b = ctx.bundle(COUNTER);
  await ctx.rt.mustCreate(b.dir, b.id);
  await ctx.rt.mustStart(b.id);
  const count = () => {
    try { return Number(fs.readFileSync(path.join(b.rootfs, 'counter'), 'utf8').trim() || 0); } catch { return 0; }
  };
  await until(() => count() >= 3, 'the counter to run', 60_000);
  return { ...b, count };
}

async function mustCli(ctx: Ctx, args: string[]) {
  const r = await ctx.rt.cli(args);
  if (r.code !== 0) fail(`\`${args.join(' ')}\` failed (exit ${r.code}): ${r.stderr.trim()}`);
  return r;
}

export const pauseCases: Case[] = [
  {
    name: 'pause.freeze-resume',
    section: 'runc CLI pause/resume, runtime.md#state (status)',
    title: 'pause freezes every process (state "paused", a counter stops); resume lets it run on (state "running")',
    async run(ctx) {
      const c = await counting(ctx);
      await mustCli(ctx, ['pause', c.id]);
      equal((await ctx.rt.state(c.id)).status, 'paused', 'status after pause');
      const frozen = c.count();
      await sleep(1500);
      equal(c.count(), frozen, 'counter while paused');
      await mustCli(ctx, ['resume', c.id]);
      equal((await ctx.rt.state(c.id)).status, 'running', 'status after resume');
      await until(() => c.count() > frozen + 2, 'the counter to advance after resume', 60_000);
    },
  },
  {
    name: 'pause.errors',
    section: 'runc CLI pause/resume',
    title: 'resume of a running container and pause of a paused or stopped one fail; the state is unchanged',
    async run(ctx) {
      const c = await counting(ctx);
      const r = await ctx.rt.cli(['resume', c.id]);
      ensure(r.code !== 0, 'resume of a running container succeeded');
      ensure(/not paused/.test(r.stderr), `resume error: ${r.stderr.trim()}`);
      equal((await ctx.rt.state(c.id)).status, 'running', 'status');
      await mustCli(ctx, ['pause', c.id]);
      const p = await ctx.rt.cli(['pause', c.id]);
      ensure(p.code !== 0, 'pause of a paused container succeeded');
      ensure(/not running/.test(p.stderr), `pause error: ${p.stderr.trim()}`);
      equal((await ctx.rt.state(c.id)).status, 'paused', 'status');
      await mustCli(ctx, ['kill', c.id, 'KILL']);
      await ctx.rt.waitStatus(c.id, 'stopped');
      const s = await ctx.rt.cli(['pause', c.id]);
      ensure(s.code !== 0, 'pause of a stopped container succeeded');
    },
  },
  {
    name: 'pause.delete-force',
    section: 'runc CLI pause, runtime.md#delete',
    title: 'delete --force of a paused container removes it',
    async run(ctx) {
      const c = await counting(ctx);
      await mustCli(ctx, ['pause', c.id]);
      await mustCli(ctx, ['delete', '--force', c.id]);
      const st = await ctx.rt.cli(['state', c.id]);
      ensure(st.code !== 0, 'state of a deleted container succeeded');
    },
  },
  {
    name: 'events.stats',
    section: 'runc CLI events --stats',
    title: 'events --stats prints one {"type":"stats"} line with cpu, memory and pids figures of the running container',
    async run(ctx) {
      const c = await counting(ctx);
      const r = await mustCli(ctx, ['events', '--stats', c.id]);
      const lines = r.stdout.trim().split('\n');
      equal(lines.length, 1, 'lines printed');
      let ev: { type?: string; id?: string; data?: { cpu?: { usage?: { total?: number } }; memory?: { usage?: { usage?: number } }; pids?: { current?: number } } };
      try { ev = JSON.parse(lines[0]!); } catch { return fail(`not JSON: ${lines[0]!.slice(0, 200)}`); }
      equal(ev.type, 'stats', 'type');
      equal(ev.id, c.id, 'id');
      ensure((ev.data?.cpu?.usage?.total ?? 0) > 0, `cpu.usage.total: ${JSON.stringify(ev.data?.cpu)}`);
      ensure((ev.data?.memory?.usage?.usage ?? 0) > 0, `memory.usage.usage: ${JSON.stringify(ev.data?.memory?.usage)}`);
      ensure((ev.data?.pids?.current ?? 0) >= 1, `pids.current: ${JSON.stringify(ev.data?.pids)}`);
    },
  },
  {
    name: 'events.stopped',
    section: 'runc CLI events',
    title: 'events of a stopped container fails with "is not running"',
    async run(ctx) {
      const b = ctx.bundle(['true']);
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.mustStart(b.id);
      await ctx.rt.waitStatus(b.id, 'stopped');
      const r = await ctx.rt.cli(['events', '--stats', b.id]);
      ensure(r.code !== 0, 'events of a stopped container succeeded');
      ensure(/is not running/.test(r.stderr), `events error: ${r.stderr.trim()}`);
    },
  },
];
