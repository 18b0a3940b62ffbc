// runc's `exec`, `ps` and `kill --all` (the runtime-spec defines no exec
// operation; these follow the runc CLI contract that podman and
// containerd's shim use, with the process object of config.md#process).
import fs from 'node:fs';
import path from 'node:path';
import type { Case, Ctx } from '../lib/case.js';
import { contains, ensure, equal, fail, until } from '../lib/check.js';
import { setSubreaper, tryWait, type WaitResult } from '../lib/reaper.js';

const SLEEPER = ['sh', '-c', 'echo x > /ran; exec sleep 1000'];

async function running(ctx: Ctx) {
  const b = ctx.bundle(SLEEPER);
  await ctx.rt.mustCreate(b.dir, b.id);
  await ctx.rt.mustStart(b.id);
  await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run', 60_000);
  return b;
}

/** `exec` with stdio in files; returns exit code and output. */
function exec(ctx: Ctx, args: string[]) {
  return ctx.rt.withFiles(['exec', ...args]);
}

async function reap(pid: number): Promise<WaitResult> {
  let r: WaitResult | undefined;
  await until(() => (r = tryWait(pid)) !== undefined, `pid ${pid} to exit`, 60_000);
  return r!;
}

export const execCases: Case[] = [
  {
    name: 'exec.in-container',
    section: 'runc CLI exec; config.md#process',
    title: 'exec runs in the running container (its rootfs and pid namespace) with the caller\'s stdio and exit code',
    async run(ctx) {
      const b = await running(ctx);
      const r = await exec(ctx, [b.id, 'sh', '-c', 'cat /ran; echo pid=$$; tr "\\0" " " < /proc/1/cmdline; echo; echo err >&2; exit 3']);
      equal(r.code, 3, `exec exit code (stderr: ${r.stderr.trim()})`);
      const lines = r.stdout.split('\n');
      equal(lines[0], 'x', 'a file the program wrote');
      ensure(/^pid=\d+$/.test(lines[1]!) && lines[1] !== 'pid=1', `the exec'd process is not pid 1 of the container: ${lines[1]}`);
      equal(lines[2], 'sleep 1000 ', 'pid 1 of the namespace is the container\'s program');
      equal(r.stderr, 'err\n', 'stderr');
    },
  },
  {
    name: 'exec.flags',
    section: 'runc CLI exec (--env, --cwd, --user, --additional-gids); config.md#process',
    title: 'exec -e, --cwd, --user uid:gid and --additional-gids shape the process; the container\'s env is its base',
    async run(ctx) {
      const b = await running(ctx);
      const r = await exec(ctx, ['-e', 'X=1', '--cwd', '/tmp', '--user', '1000:1001', '--additional-gids', '5', b.id, 'sh', '-c', 'id; pwd; echo X=$X; echo $PATH']);
      equal(r.code, 0, `exec exit code (stderr: ${r.stderr.trim()})`);
      const lines = r.stdout.split('\n');
      equal(lines[0], 'uid=1000 gid=1001 groups=5', 'id');
      equal(lines[1], '/tmp', 'cwd');
      equal(lines[2], 'X=1', 'added env');
      contains(lines[3] ?? '', '/bin', 'PATH from the container\'s env');
    },
  },
  {
    name: 'exec.process-file',
    section: 'runc CLI exec --process; config.md#process',
    title: 'exec --process runs the process object as given (args, env, cwd, user)',
    async run(ctx) {
      const b = await running(ctx);
      const pf = path.join(ctx.dir, 'process.json');
      fs.writeFileSync(pf, JSON.stringify({ terminal: false, user: { uid: 7, gid: 8 }, args: ['sh', '-c', 'echo $A; id -u; id -g; pwd; exit 4'], env: ['A=from-file', 'PATH=/bin'], cwd: '/etc' }));
      const r = await exec(ctx, ['--process', pf, b.id]);
      equal(r.code, 4, `exec exit code (stderr: ${r.stderr.trim()})`);
      equal(r.stdout, 'from-file\n7\n8\n/etc\n', 'output');
    },
  },
  {
    name: 'exec.detach-pid-file',
    section: 'runc CLI exec --detach --pid-file',
    title: 'exec --detach returns at once; a subreaper reaps the pid-file process with the exec\'d process\'s status (5)',
    async run(ctx) {
      const b = await running(ctx);
      setSubreaper(true);
      try {
        const pidFile = path.join(ctx.dir, 'exec.pid');
        const r = await exec(ctx, ['--detach', '--pid-file', pidFile, b.id, 'sh', '-c', 'sleep 0.5; exit 5']);
        equal(r.code, 0, `exec --detach exit code (stderr: ${r.stderr.trim()})`);
        const pid = Number(fs.readFileSync(pidFile, 'utf8'));
        ensure(pid > 0, 'pid file content');
        equal(await reap(pid), { exited: 5 }, 'wait status of the pid-file process');
        equal((await ctx.rt.state(b.id)).status, 'running', 'the container still runs');
      } finally {
        setSubreaper(false);
      }
    },
  },
  {
    name: 'exec.missing-executable',
    section: 'runc CLI exec',
    title: 'exec of a missing executable exits 255 with runc\'s "executable file not found in $PATH"',
    async run(ctx) {
      const b = await running(ctx);
      const r = await exec(ctx, [b.id, 'no-such-binary']);
      equal(r.code, 255, 'exit code');
      // runc's stderr is a logrus line (quotes escaped): match the words.
      contains(r.stderr, 'no-such-binary', 'error message');
      contains(r.stderr, 'executable file not found in $PATH', 'error message');
      equal((await ctx.rt.state(b.id)).status, 'running', 'the container still runs');
    },
  },
  {
    name: 'exec.bad-input',
    section: 'runc CLI exec',
    title: 'exec into an unknown or stopped container, or with a malformed process.json, exits 255 and runs nothing',
    async run(ctx) {
      const unknown = await exec(ctx, ['no-such-container', 'true']);
      equal(unknown.code, 255, 'exit code for an unknown container');
      contains(unknown.stderr, 'does not exist', 'message for an unknown container');
      const b = await running(ctx);
      const pf = path.join(ctx.dir, 'bad.json');
      fs.writeFileSync(pf, '{"args": ["sh", "-c", "echo ran > /bad"');
      const bad = await exec(ctx, ['--process', pf, b.id]);
      equal(bad.code, 255, 'exit code for a malformed process.json');
      ensure(!fs.existsSync(path.join(b.rootfs, 'bad')), 'a malformed process.json ran something');
      const k = await ctx.rt.cli(['kill', b.id, 'KILL']);
      equal(k.code, 0, `kill (${k.stderr.trim()})`);
      await ctx.rt.waitStatus(b.id, 'stopped');
      const stopped = await exec(ctx, [b.id, 'sh', '-c', 'echo ran > /late']);
      equal(stopped.code, 255, 'exit code for a stopped container');
      contains(stopped.stderr, 'cannot exec in a stopped container', 'message for a stopped container');
      ensure(!fs.existsSync(path.join(b.rootfs, 'late')), 'exec into a stopped container ran something');
    },
  },
  {
    name: 'ps.json',
    section: 'runc CLI ps --format json',
    title: 'ps --format json lists one pid per process of the container (the program and an exec\'d one)',
    async run(ctx) {
      const b = await running(ctx);
      setSubreaper(true);
      try {
        const pidFile = path.join(ctx.dir, 'bg.pid');
        const e = await exec(ctx, ['--detach', '--pid-file', pidFile, b.id, 'sleep', '300']);
        equal(e.code, 0, `exec --detach (${e.stderr.trim()})`);
        let pids: unknown;
        await until(async () => {
          const r = await ctx.rt.cli(['ps', '--format', 'json', b.id]);
          if (r.code !== 0) fail(`ps failed (exit ${r.code}): ${r.stderr.trim()}`);
          pids = JSON.parse(r.stdout);
          return Array.isArray(pids) && pids.length === 2;
        }, 'two processes in ps', 30_000);
        ensure((pids as unknown[]).every((p) => Number.isInteger(p) && (p as number) > 0), `pids: ${JSON.stringify(pids)}`);
        const k = await ctx.rt.cli(['kill', b.id, 'KILL']);
        equal(k.code, 0, 'kill');
        const r = await reap(Number(fs.readFileSync(pidFile, 'utf8')));
        ensure(JSON.stringify(r) === '{"signaled":9}' || JSON.stringify(r) === '{"exited":137}', `exec'd process after its container's init died: ${JSON.stringify(r)}`);
      } finally {
        setSubreaper(false);
      }
    },
  },
  {
    name: 'kill.all',
    section: 'runtime.md#kill, runc CLI kill --all',
    title: 'kill --all TERM reaches every process of the container, exec\'d ones too (their traps run)',
    async run(ctx) {
      // The init waits for the other trap: when it exits, the kernel SIGKILLs the rest of its namespace.
      const b = ctx.bundle(['sh', '-c', 'trap "echo init > /init-term; while [ ! -f /exec-term ]; do sleep 0.1; done; exit 0" TERM; echo x > /ran; while :; do sleep 0.1; done']);
      await ctx.rt.mustCreate(b.dir, b.id);
      await ctx.rt.mustStart(b.id);
      await until(() => fs.existsSync(path.join(b.rootfs, 'ran')), 'the program to run', 60_000);
      setSubreaper(true);
      try {
        const pidFile = path.join(ctx.dir, 'trap.pid');
        const e = await exec(ctx, ['--detach', '--pid-file', pidFile, b.id, 'sh', '-c', 'trap "echo exec > /exec-term; exit 6" TERM; echo x > /exec-ready; while :; do sleep 0.1; done']);
        equal(e.code, 0, `exec --detach (${e.stderr.trim()})`);
        await until(() => fs.existsSync(path.join(b.rootfs, 'exec-ready')), 'the exec\'d process to run');
        const k = await ctx.rt.cli(['kill', '--all', b.id, 'TERM']);
        equal(k.code, 0, `kill --all (${k.stderr.trim()})`);
        equal(await reap(Number(fs.readFileSync(pidFile, 'utf8'))), { exited: 6 }, 'the exec\'d process\'s status');
        await ctx.rt.waitStatus(b.id, 'stopped');
        ensure(fs.existsSync(path.join(b.rootfs, 'init-term')), 'the program\'s TERM trap did not run');
        ensure(fs.existsSync(path.join(b.rootfs, 'exec-term')), 'the exec\'d process\'s TERM trap did not run');
      } finally {
        setSubreaper(false);
      }
    },
  },
];
