// config.md#posix-platform-hooks: hooks run by the runtime at lifecycle
// points, with the container's state on stdin. Hook programs here are
// small sh scripts on the host appending to a log file.
import fs from 'node:fs';
import path from 'node:path';
import type { Case, Ctx } from '../lib/case.js';
import type { Config } from '../lib/bundle.js';
import { writeScript } from '../lib/bundle.js';
import { ensure, equal, fail, sleep, until } from '../lib/check.js';

const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const PHASES = ['prestart', 'createRuntime', 'createContainer', 'poststart', 'poststop'] as const;

interface Logged { phase: string; state: Record<string, unknown> }

/** A host hook script: `hook PHASE` appends "PHASE <state JSON>" to `log`. */
function loggingHook(ctx: Ctx, log: string): string {
  return writeScript(path.join(ctx.dir, 'log-hook.sh'), `printf '%s %s\\n' "$1" "$(cat)" >> '${log}'`);
}

function readLog(log: string): Logged[] {
  if (!fs.existsSync(log)) return [];
  return fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map((line) => {
    const sp = line.indexOf(' ');
    const phase = line.slice(0, sp);
    try {
      return { phase, state: JSON.parse(line.slice(sp + 1)) as Record<string, unknown> };
    } catch {
      return fail(`${phase} hook received no state JSON on stdin: ${JSON.stringify(line.slice(sp + 1, sp + 200))}`);
    }
  });
}

function withHooks(hooks: Record<string, unknown[]>) {
  return (c: Config) => { c.hooks = hooks; };
}

export const hookCases: Case[] = [
  {
    name: 'hooks.order',
    section: 'config.md#posix-platform-hooks, runtime.md#lifecycle',
    title: 'prestart, createRuntime, createContainer run during create (in that order), poststart during start, poststop during delete',
    async run(ctx) {
      const log = path.join(ctx.dir, 'hooks.log');
      const hook = loggingHook(ctx, log);
      const hooks = Object.fromEntries(PHASES.map((p) => [p, [{ path: hook, args: ['log-hook.sh', p], env: [PATH] }]]));
      const b = ctx.bundle(['sh', '-c', 'sleep 0.5'], withHooks(hooks));
      await ctx.rt.mustCreate(b.dir, b.id);
      equal(readLog(log).map((l) => l.phase), ['prestart', 'createRuntime', 'createContainer'], 'hooks run by create');
      await ctx.rt.mustStart(b.id);
      equal(readLog(log).map((l) => l.phase), ['prestart', 'createRuntime', 'createContainer', 'poststart'], 'hooks run by the time start returned');
      await ctx.rt.waitStatus(b.id, 'stopped');
      const d = await ctx.rt.cli(['delete', b.id]);
      equal(d.code, 0, `delete exit code (${d.stderr.trim()})`);
      equal(readLog(log).map((l) => l.phase), [...PHASES], 'hooks run by delete');
    },
  },
  {
    name: 'hooks.state-stdin',
    section: 'config.md#posix-platform-hooks, runtime.md#state',
    title: 'every hook gets the state on stdin: id, bundle, ociVersion; a pid before stop; poststart sees "running", poststop "stopped"',
    async run(ctx) {
      const log = path.join(ctx.dir, 'hooks.log');
      const hook = loggingHook(ctx, log);
      const hooks = Object.fromEntries(PHASES.map((p) => [p, [{ path: hook, args: ['log-hook.sh', p], env: [PATH] }]]));
      const b = ctx.bundle(['sh', '-c', 'sleep 0.5'], withHooks(hooks));
      await ctx.rt.mustCreate(b.dir, b.id);
      const pid = (await ctx.rt.state(b.id)).pid;
      await ctx.rt.mustStart(b.id);
      await ctx.rt.waitStatus(b.id, 'stopped');
      await ctx.rt.cli(['delete', b.id]);
      const logged = readLog(log);
      equal(logged.map((l) => l.phase), [...PHASES], 'hooks run');
      for (const { phase, state } of logged) {
        equal(state.id, b.id, `${phase}: state.id`);
        ensure(typeof state.ociVersion === 'string', `${phase}: state.ociVersion missing`);
        equal(fs.realpathSync(String(state.bundle)), fs.realpathSync(b.dir), `${phase}: state.bundle`);
        if (phase !== 'poststop') equal(state.pid, pid, `${phase}: state.pid`);
      }
      for (const { phase, state } of logged.slice(0, 3)) {
        ensure(state.status === 'creating' || state.status === 'created', `${phase}: state.status ${JSON.stringify(state.status)}, expected creating or created`);
      }
      equal(logged[3]!.state.status, 'running', 'poststart: state.status');
      equal(logged[4]!.state.status, 'stopped', 'poststop: state.status');
    },
  },
  {
    name: 'hooks.args-env',
    section: 'config.md#posix-platform-hooks (path, args, env)',
    title: 'a hook runs `path` with exactly `args` (args[0] is argv0) and exactly `env`',
    async run(ctx) {
      const out = path.join(ctx.dir, 'hook.out');
      const hook = writeScript(path.join(ctx.dir, 'args-hook.sh'),
        `cat > /dev/null; { printf '[%s]' "$@"; echo; echo "FOO=$FOO"; echo "EMPTY=\${EMPTY-unset}"; echo "HOME=\${HOME-unset}"; } > '${out}'`);
      const b = ctx.bundle(['true'], withHooks({ prestart: [{ path: hook, args: ['args-hook', 'a b', '', '--c'], env: [PATH, 'FOO=x y=z', 'EMPTY='] }] }));
      await ctx.rt.mustCreate(b.dir, b.id);
      equal(fs.readFileSync(out, 'utf8'), '[a b][][--c]\nFOO=x y=z\nEMPTY=\nHOME=unset\n', 'what the hook saw');
    },
  },
  {
    name: 'hooks.prestart-fails',
    section: 'config.md#prestart, runtime.md#lifecycle',
    title: 'a failing prestart hook makes create an error and the program never runs',
    async run(ctx) {
      const hook = writeScript(path.join(ctx.dir, 'fail.sh'), 'cat > /dev/null; exit 1');
      const b = ctx.bundle(['touch', '/ran'], withHooks({ prestart: [{ path: hook, env: [PATH] }] }));
      const c = await ctx.rt.create(b.dir, b.id);
      if (c.code === 0) {
        // Tolerated only if the container is not usable: start must fail too.
        const s = await ctx.rt.cli(['start', b.id]);
        if (s.code === 0) fail('create and start succeeded despite a failing prestart hook');
      }
      await sleep(300);
      ensure(!fs.existsSync(path.join(b.rootfs, 'ran')), 'the program ran despite the failing prestart hook');
      const st = await ctx.rt.cli(['state', b.id]);
      if (st.code === 0) equal((JSON.parse(st.stdout) as { status: string }).status, 'stopped', 'state.status after the failed create');
    },
  },
  {
    name: 'hooks.poststart-fails',
    section: 'config.md#poststart',
    title: 'a failing poststart hook is a warning: the next poststart hook runs and the container keeps running',
    async run(ctx) {
      const mark = path.join(ctx.dir, 'second-ran');
      const bad = writeScript(path.join(ctx.dir, 'fail.sh'), 'cat > /dev/null; exit 1');
      const good = writeScript(path.join(ctx.dir, 'good.sh'), `cat > /dev/null; touch '${mark}'`);
      const b = ctx.bundle(['sh', '-c', 'touch /ran; exec sleep 1000'], withHooks({ poststart: [{ path: bad, env: [PATH] }, { path: good, env: [PATH] }] }));
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.cli(['start', b.id]);
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run', 15_000);
      ensure(fs.existsSync(mark), 'the poststart hook after the failing one did not run');
      equal((await ctx.rt.state(b.id)).status, 'running', 'state.status');
    },
  },
  {
    name: 'hooks.poststop-fails',
    section: 'config.md#poststop',
    title: 'a failing poststop hook is a warning: the next one runs and delete still removes the container',
    async run(ctx) {
      const mark = path.join(ctx.dir, 'second-ran');
      const bad = writeScript(path.join(ctx.dir, 'fail.sh'), 'cat > /dev/null; exit 1');
      const good = writeScript(path.join(ctx.dir, 'good.sh'), `cat > /dev/null; touch '${mark}'`);
      const b = ctx.bundle(['true'], withHooks({ poststop: [{ path: bad, env: [PATH] }, { path: good, env: [PATH] }] }));
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.mustStart(b.id);
      await ctx.rt.waitStatus(b.id, 'stopped');
      const d = await ctx.rt.cli(['delete', b.id]);
      equal(d.code, 0, `delete exit code (${d.stderr.trim()})`);
      ensure(fs.existsSync(mark), 'the poststop hook after the failing one did not run');
      const st = await ctx.rt.cli(['state', b.id]);
      ensure(st.code !== 0, 'the container still exists after delete');
    },
  },
  {
    name: 'hooks.timeout',
    section: 'config.md#posix-platform-hooks (timeout)',
    title: 'a prestart hook that outlives its timeout (1 s) fails create',
    async run(ctx) {
      const hook = writeScript(path.join(ctx.dir, 'slow.sh'), 'cat > /dev/null; exec sleep 20');
      const b = ctx.bundle(['touch', '/ran'], withHooks({ prestart: [{ path: hook, env: [PATH], timeout: 1 }] }));
      const t0 = Date.now();
      const c = await ctx.rt.create(b.dir, b.id);
      const took = Date.now() - t0;
      if (c.code === 0) fail('create succeeded although the prestart hook timed out');
      ensure(took < 15_000, `create took ${took} ms: the 1 s timeout was not enforced`);
    },
  },
  {
    name: 'hooks.start-container',
    section: 'config.md#startcontainer-hooks',
    title: 'startContainer hooks resolve and run in the container namespace, before the program',
    async run(ctx) {
      const b = ctx.bundle(['sh', '-c', 'test -f /hook-ran && touch /saw-hook; touch /ran'], (c, { rootfs }) => {
        fs.mkdirSync(path.join(rootfs, 'conformance-hooks'));
        // This path exists only inside the rootfs: on the host it does not.
        writeScript(path.join(rootfs, 'conformance-hooks/start.sh'), 'cat > /dev/null; touch /hook-ran');
        c.hooks = { startContainer: [{ path: '/conformance-hooks/start.sh', env: [PATH] }] };
      });
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.mustStart(b.id);
      await ctx.rt.waitStatus(b.id, 'stopped');
      ensure(fs.existsSync(path.join(b.rootfs, 'hook-ran')), 'the startContainer hook did not run in the container (no /hook-ran in the rootfs)');
      ensure(fs.existsSync(path.join(b.rootfs, 'saw-hook')), 'the program ran before the startContainer hook');
    },
  },
];
