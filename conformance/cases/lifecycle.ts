// runtime.md: the lifecycle, the state of a container and the operations
// on it (create, start, state, kill, delete), plus the runc CLI contract
// around them (pid file, list).
import fs from 'node:fs';
import path from 'node:path';
import type { Case, Ctx } from '../lib/case.js';
import { alive, ensure, equal, fail, until } from '../lib/check.js';
import { setSubreaper, tryWait } from '../lib/reaper.js';

const SLEEPER = ['sh', '-c', 'touch /ran; exec sleep 1000'];

async function created(ctx: Ctx, args = SLEEPER, edit?: Parameters<Ctx['bundle']>[1]) {
  const b = ctx.bundle(args, edit);
  const pidFile = path.join(ctx.dir, `${b.id}.pid`);
  const c = await ctx.rt.mustCreate(b.dir, b.id, { pidFile });
  return { ...b, pidFile, outFile: c.outFile };
}

async function running(ctx: Ctx, args = SLEEPER, edit?: Parameters<Ctx['bundle']>[1]) {
  const b = await created(ctx, args, edit);
  await ctx.rt.mustStart(b.id);
  return b;
}

async function expectError(ctx: Ctx, args: string[], what: string): Promise<void> {
  const r = await ctx.rt.cli(args);
  if (r.code === 0) fail(`${what}: \`${args.join(' ')}\` succeeded, expected an error`);
}

export const lifecycleCases: Case[] = [
  {
    name: 'create.state-created',
    section: 'runtime.md#create, runtime.md#state',
    title: 'after create the state is "created" with ociVersion, id, pid and an absolute bundle path; the program has not run',
    async run(ctx) {
      const b = await created(ctx);
      const st = await ctx.rt.state(b.id);
      ensure(typeof st.ociVersion === 'string' && st.ociVersion.length > 0, `state.ociVersion missing: ${JSON.stringify(st)}`);
      equal(st.id, b.id, 'state.id');
      equal(st.status, 'created', 'state.status');
      ensure(Number.isInteger(st.pid) && (st.pid as number) > 0, `state.pid must be a positive integer, got ${JSON.stringify(st.pid)}`);
      ensure(typeof st.bundle === 'string' && path.isAbsolute(st.bundle), `state.bundle must be absolute, got ${JSON.stringify(st.bundle)}`);
      equal(fs.realpathSync(st.bundle as string), fs.realpathSync(b.dir), 'state.bundle');
      ensure(!fs.existsSync(path.join(b.rootfs, 'ran')), 'create ran the user-specified program (runtime.md#create: it MUST NOT)');
    },
  },
  {
    name: 'create.pid-file',
    section: 'runtime.md#state (pid), runc CLI --pid-file',
    title: 'the pid file holds the state\'s pid, a live host process',
    async run(ctx) {
      const b = await created(ctx);
      const text = fs.readFileSync(b.pidFile, 'utf8');
      ensure(/^\d+\n?$/.test(text), `pid file content: ${JSON.stringify(text)}`);
      const st = await ctx.rt.state(b.id);
      equal(Number(text), st.pid, 'pid file vs state.pid');
      ensure(alive(Number(text)), `pid ${text} is not a live process`);
    },
  },
  {
    name: 'create.duplicate-id',
    section: 'runtime.md#create',
    title: 'create with an id already in use fails and leaves the first container as it was',
    async run(ctx) {
      const b = await created(ctx);
      const b2 = ctx.bundle(SLEEPER);
      const r = await ctx.rt.create(b2.dir, b.id);
      if (r.code === 0) fail('a second create with the same id succeeded');
      equal((await ctx.rt.state(b.id)).status, 'created', 'first container status');
      equal(fs.realpathSync((await ctx.rt.state(b.id)).bundle as string), fs.realpathSync(b.dir), 'first container bundle');
    },
  },
  {
    name: 'create.bad-executable',
    section: 'runtime.md#lifecycle, config.md#process (args)',
    title: 'a process whose executable does not exist is an error at create or start, not a running container',
    async run(ctx) {
      const b = ctx.bundle(['/no/such/program']);
      const c = await ctx.rt.create(b.dir, b.id);
      if (c.code !== 0) return;
      const s = await ctx.rt.cli(['start', b.id]);
      if (s.code === 0) fail('create and start both succeeded for a missing executable');
    },
  },
  {
    name: 'start.running',
    section: 'runtime.md#start, runtime.md#state',
    title: 'start runs the program and the state becomes "running"',
    async run(ctx) {
      const b = await running(ctx);
      equal((await ctx.rt.state(b.id)).status, 'running', 'state.status after start');
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run (/ran)');
    },
  },
  {
    name: 'start.twice',
    section: 'runtime.md#start',
    title: 'start of a running container is an error and does not disturb it',
    async run(ctx) {
      const b = await running(ctx);
      await expectError(ctx, ['start', b.id], 'second start');
      equal((await ctx.rt.state(b.id)).status, 'running', 'state.status');
    },
  },
  {
    name: 'start.stopped',
    section: 'runtime.md#start',
    title: 'start of a stopped container is an error',
    async run(ctx) {
      const b = await running(ctx, ['true']);
      await ctx.rt.waitStatus(b.id, 'stopped');
      await expectError(ctx, ['start', b.id], 'start after stop');
      equal((await ctx.rt.state(b.id)).status, 'stopped', 'state.status');
    },
  },
  {
    name: 'state.stopped',
    section: 'runtime.md#state, runtime.md#lifecycle',
    title: 'when the program exits the state becomes "stopped" and the pid-file process goes away',
    async run(ctx) {
      const b = await running(ctx, ['sh', '-c', 'sleep 0.5']);
      const pid = Number(fs.readFileSync(b.pidFile, 'utf8'));
      const st = await ctx.rt.waitStatus(b.id, 'stopped');
      equal(st.id, b.id, 'state.id');
      await until(() => !alive(pid), `pid ${pid} to exit`, 15_000);
    },
  },
  {
    name: 'state.annotations',
    section: 'runtime.md#state, config.md#annotations',
    title: 'the state carries config.json\'s annotations',
    async run(ctx) {
      const annotations = { 'org.example.conformance': 'yes', 'org.example.other': 'a b=c' };
      const b = await created(ctx, SLEEPER, (c) => { c.annotations = annotations; });
      equal((await ctx.rt.state(b.id)).annotations, annotations, 'state.annotations');
    },
  },
  {
    name: 'state.unknown-id',
    section: 'runtime.md#query-state, runtime.md#kill, runtime.md#delete, runtime.md#start',
    title: 'state, start, kill and delete of an unknown id are errors',
    async run(ctx) {
      const id = ctx.id();
      for (const verb of [['state'], ['start'], ['kill'], ['delete']]) await expectError(ctx, [...verb, id], verb[0]!);
    },
  },
  {
    name: 'kill.term-running',
    section: 'runtime.md#kill',
    title: 'kill TERM reaches the program (its trap runs) and the container stops',
    async run(ctx) {
      const b = await running(ctx, ['sh', '-c', 'trap "touch /got-term; exit 3" TERM; touch /ran; while :; do sleep 0.1; done']);
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run');
      const k = await ctx.rt.cli(['kill', b.id, 'TERM']);
      equal(k.code, 0, `kill exit code (${k.stderr.trim()})`);
      await ctx.rt.waitStatus(b.id, 'stopped');
      ensure(fs.existsSync(path.join(b.rootfs, 'got-term')), 'the TERM trap did not run');
    },
  },
  {
    name: 'kill.signal-number',
    section: 'runtime.md#kill',
    title: 'kill with a numeric signal (10 = SIGUSR1) delivers that signal',
    async run(ctx) {
      const b = await running(ctx, ['sh', '-c', 'trap "touch /got-usr1" USR1; touch /ran; while :; do sleep 0.1; done']);
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run');
      const k = await ctx.rt.cli(['kill', b.id, '10']);
      equal(k.code, 0, `kill exit code (${k.stderr.trim()})`);
      await until(() => fs.existsSync(path.join(b.rootfs, 'got-usr1')), 'the USR1 trap to run', 15_000);
      equal((await ctx.rt.state(b.id)).status, 'running', 'state.status after USR1');
    },
  },
  {
    name: 'kill.created',
    section: 'runtime.md#kill',
    title: 'kill KILL of a created container stops it without the program ever running',
    async run(ctx) {
      const b = await created(ctx);
      const k = await ctx.rt.cli(['kill', b.id, 'KILL']);
      equal(k.code, 0, `kill exit code (${k.stderr.trim()})`);
      await ctx.rt.waitStatus(b.id, 'stopped');
      ensure(!fs.existsSync(path.join(b.rootfs, 'ran')), 'the program ran');
    },
  },
  {
    name: 'kill.stopped',
    section: 'runtime.md#kill',
    title: 'kill of a stopped container is an error',
    async run(ctx) {
      const b = await running(ctx, ['true']);
      await ctx.rt.waitStatus(b.id, 'stopped');
      await expectError(ctx, ['kill', b.id, 'KILL'], 'kill after stop');
    },
  },
  {
    name: 'delete.running',
    section: 'runtime.md#delete',
    title: 'delete (no --force) of a running container is an error with no effect on it',
    async run(ctx) {
      const b = await running(ctx);
      await expectError(ctx, ['delete', b.id], 'delete while running');
      equal((await ctx.rt.state(b.id)).status, 'running', 'state.status');
      ensure(alive(Number(fs.readFileSync(b.pidFile, 'utf8'))), 'the pid-file process died');
    },
  },
  {
    name: 'delete.stopped',
    section: 'runtime.md#delete',
    title: 'delete of a stopped container removes it: state is an error and list omits it',
    async run(ctx) {
      const b = await running(ctx, ['true']);
      await ctx.rt.waitStatus(b.id, 'stopped');
      const d = await ctx.rt.cli(['delete', b.id]);
      equal(d.code, 0, `delete exit code (${d.stderr.trim()})`);
      await expectError(ctx, ['state', b.id], 'state after delete');
      const l = await ctx.rt.cli(['list', '--format', 'json']);
      equal(l.code, 0, 'list exit code');
      const ids = (JSON.parse(l.stdout.trim() || 'null') ?? []).map((c: { id: string }) => c.id);
      ensure(!ids.includes(b.id), `list still shows ${b.id}`);
    },
  },
  {
    name: 'delete.force',
    section: 'runtime.md#delete, runc CLI delete --force',
    title: 'delete --force stops a running container and removes it; the pid-file process is gone',
    async run(ctx) {
      const b = await running(ctx);
      const pid = Number(fs.readFileSync(b.pidFile, 'utf8'));
      const d = await ctx.rt.cli(['delete', '--force', b.id]);
      equal(d.code, 0, `delete --force exit code (${d.stderr.trim()})`);
      await until(() => !alive(pid), `pid ${pid} to exit`, 15_000);
      await expectError(ctx, ['state', b.id], 'state after delete --force');
    },
  },
  {
    name: 'list.json',
    section: 'runtime.md#state, runc CLI list',
    title: 'list --format json shows each container with its id, pid and status',
    async run(ctx) {
      const a = await running(ctx);
      const c = await created(ctx);
      const l = await ctx.rt.cli(['list', '--format', 'json']);
      equal(l.code, 0, `list exit code (${l.stderr.trim()})`);
      const items = JSON.parse(l.stdout) as { id: string; pid: number; status: string }[];
      const byId = new Map(items.map((i) => [i.id, i]));
      equal(byId.get(a.id)?.status, 'running', `list status of ${a.id}`);
      equal(byId.get(c.id)?.status, 'created', `list status of ${c.id}`);
      equal(byId.get(a.id)?.pid, Number(fs.readFileSync(a.pidFile, 'utf8')), 'list pid');
    },
  },
  {
    name: 'pid-file.exit-status',
    section: 'runtime.md#lifecycle, runc CLI --pid-file (conmon/shim contract)',
    title: 'a subreaper that reaps the pid-file process gets the program\'s exit status (7)',
    async run(ctx) {
      setSubreaper(true);
      try {
        const b = await running(ctx, ['sh', '-c', 'sleep 0.3; exit 7']);
        const pid = Number(fs.readFileSync(b.pidFile, 'utf8'));
        let res: ReturnType<typeof tryWait>;
        await until(() => (res = tryWait(pid)) !== undefined, `pid ${pid} to exit`);
        equal(res!, { exited: 7 }, 'wait status of the pid-file process');
        equal((await ctx.rt.state(b.id)).status, 'stopped', 'state.status');
      } finally {
        setSubreaper(false);
      }
    },
  },
  {
    name: 'exit.zero',
    section: 'runtime.md#lifecycle, runc CLI run',
    title: 'run exits 0 when the program exits 0',
    async run(ctx) {
      const r = await ctx.inside('exit 0');
      equal(r.code, 0, `run exit code (stderr: ${r.stderr.trim()})`);
    },
  },
  {
    name: 'exit.seven',
    section: 'runtime.md#lifecycle, runc CLI run',
    title: 'run exits 7 when the program exits 7',
    async run(ctx) {
      const r = await ctx.inside('exit 7');
      equal(r.code, 7, `run exit code (stderr: ${r.stderr.trim()})`);
    },
  },
  {
    name: 'exit.signal',
    section: 'runtime.md#kill, runc CLI run',
    title: 'run exits 128+9 when the program is killed by SIGKILL',
    async run(ctx) {
      const b = ctx.bundle(['sh', '-c', 'touch /ran; exec sleep 1000']);
      const done = ctx.rt.run(b.dir, b.id);
      let finished = false;
      void done.then(() => { finished = true; }, () => { finished = true; });
      await until(() => finished || fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run');
      if (finished) fail(`run ended early: ${(await done).stderr.trim()}`);
      const k = await ctx.rt.cli(['kill', b.id, 'KILL']);
      equal(k.code, 0, `kill exit code (${k.stderr.trim()})`);
      const r = await done;
      equal(r.code, 137, 'run exit code');
    },
  },
];
