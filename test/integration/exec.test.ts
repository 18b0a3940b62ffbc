// `husk exec` and `husk ps` against a real VM: the exec'd process runs in
// the container (its pid namespace, rootfs, hostname), with the caller's
// streams, and its host process exits with its status.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import tty from 'node:tty';
import { execa } from 'execa';
import { HUSK, bundle, husk, huskDetached, processesMentioning, scratch, uniqueId } from '../helpers/husk.js';
import { setSubreaper, tryWait, type WaitResult } from '../../conformance/lib/reaper.js';
import { ConsoleReceiver } from '../../conformance/lib/console.js';
import { setWinsize } from '../../src/sys/pty.js';

let tmp: ReturnType<typeof scratch>;
let root: string;
let id: string;
let b: string;

const text = (x: unknown) => Buffer.from(x as Uint8Array).toString();

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function reap(pid: number): Promise<WaitResult> {
  let r: WaitResult | undefined;
  await until(() => (r = tryWait(pid)) !== undefined, `exit of host process ${pid}`);
  return r!;
}

async function guestPids(): Promise<number[]> {
  const r = await husk(root, ['ps', '--format', 'json', id]);
  expect(r.exitCode, text(r.stderr)).toBe(0);
  return JSON.parse(text(r.stdout)) as number[];
}

beforeAll(async () => {
  setSubreaper(true);
  tmp = scratch('husk-exec-');
  root = path.join(tmp.dir, 'state');
  b = bundle(path.join(tmp.dir, 'b'), { args: ['sh', '-c', 'echo init-was-here > /tmp/init; exec sleep 100000'] });
  const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
  spec.hostname = 'exechost';
  fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(spec));
  id = uniqueId('exec');
  const c = await huskDetached(root, ['create', '--bundle', b, id], tmp.dir);
  expect(c.exitCode, text(c.stderr)).toBe(0);
  expect((await husk(root, ['start', id])).exitCode).toBe(0);
  await until(() => fs.existsSync(path.join(b, 'rootfs/tmp/init')), 'the init to run');
});

afterAll(async () => {
  if (id) await husk(root, ['delete', '--force', id]);
  setSubreaper(false);
  tmp?.cleanup();
});

describe('husk exec', () => {
  it('runs in the container: its pid namespace, rootfs and hostname; the init is pid 1', async () => {
    const r = await husk(root, ['exec', id, 'sh', '-c', 'echo pid=$$; cat /proc/1/cmdline | tr "\\0" " "; echo; cat /tmp/init; hostname']);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    const lines = text(r.stdout).split('\n');
    expect(lines[0]).toMatch(/^pid=\d+$/);
    expect(lines[0]).not.toBe('pid=1');
    expect(lines[1]).toBe('sleep 100000 ');
    expect(lines[2]).toBe('init-was-here');
    expect(lines[3]).toBe('exechost');
  });

  it('uses the caller\'s stdio and returns the exit status', async () => {
    const r = await husk(root, ['exec', id, 'sh', '-c', 'echo out; echo err >&2; exit 3']);
    expect(r.exitCode).toBe(3);
    expect(text(r.stdout)).toBe('out\n');
    expect(text(r.stderr)).toBe('err\n');
    const cat = await husk(root, ['exec', id, 'sh', '-c', 'cat; echo done'], { stdin: 'pipe', input: 'from stdin\n' });
    expect(cat.exitCode).toBe(0);
    expect(text(cat.stdout)).toBe('from stdin\ndone\n');
    const killed = await husk(root, ['exec', id, 'sh', '-c', 'kill -9 $$']);
    expect(killed.exitCode).toBe(137);
  });

  it('applies -e, --cwd, --user and --additional-gids over the container\'s process', async () => {
    const r = await husk(root, ['exec', '-e', 'X=1', '--cwd', '/tmp', '-u', '1000:1000', '-g', '5,6', id, 'sh', '-c', 'id; pwd; echo X=$X; echo PATH=$PATH']);
    expect(r.exitCode, text(r.stderr)).toBe(0);
    const lines = text(r.stdout).split('\n');
    expect(lines[0]).toBe('uid=1000 gid=1000 groups=5,6');
    expect(lines[1]).toBe('/tmp');
    expect(lines[2]).toBe('X=1');
    expect(lines[3]).toMatch(/^PATH=.*\/bin/); // the container's env is the base
  });

  it('runs a --process file as it is', async () => {
    const pf = path.join(tmp.dir, 'process.json');
    fs.writeFileSync(pf, JSON.stringify({ args: ['sh', '-c', 'echo $A; id -u; pwd; exit 4'], env: ['A=from-json'], cwd: '/etc', user: { uid: 7, gid: 8 } }));
    const r = await husk(root, ['exec', '--process', pf, id]);
    expect(r.exitCode, text(r.stderr)).toBe(4);
    expect(text(r.stdout)).toBe('from-json\n7\n/etc\n');
  });

  it('--detach --pid-file: the host process outlives exec, exits with the status and relays signals', async () => {
    const pidFile = path.join(tmp.dir, 'exec.pid');
    const out = path.join(tmp.dir, 'detached.out');
    const fd = fs.openSync(out, 'w');
    const r = await husk(root, ['exec', '--detach', '--pid-file', pidFile, id, 'sh', '-c', 'trap "echo got-usr1; exit 9" USR1; echo ready; while :; do sleep 0.1; done'], { stdout: fd, stderr: fd });
    fs.closeSync(fd);
    expect(r.exitCode).toBe(0);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(tryWait(pid)).toBeUndefined();
    await until(() => fs.readFileSync(out, 'utf8').includes('ready'), 'output of the detached process');
    process.kill(pid, 'SIGUSR1');
    expect(await reap(pid)).toEqual({ exited: 9 });
    expect(fs.readFileSync(out, 'utf8')).toBe('ready\ngot-usr1\n');

    const quick = await husk(root, ['exec', '-d', '--pid-file', pidFile, id, 'sh', '-c', 'exit 5'], { stdout: 'ignore', stderr: 'ignore' });
    expect(quick.exitCode).toBe(0);
    expect(await reap(Number(fs.readFileSync(pidFile, 'utf8')))).toEqual({ exited: 5 });
  });

  it('--tty with --console-socket: the process gets a pty, sees resizes and exits with its code', async () => {
    const sock = path.join(tmp.dir, 'console.sock');
    const rx = new ConsoleReceiver(sock);
    const pidFile = path.join(tmp.dir, 'tty.pid');
    try {
      const execP = husk(root, ['exec', '-d', '-t', '--console-socket', sock, '--pid-file', pidFile, id, 'sh', '-c', 'tty; stty size; read x; stty size; exit 6']);
      const cons = await rx.receive();
      expect(cons.name).toMatch(/^\/dev\/pts\/\d+$/);
      setWinsize(cons.master, 30, 100);
      const r = await execP;
      expect(r.exitCode, text(r.stderr)).toBe(0);
      const input = new tty.ReadStream(cons.master);
      let screen = '';
      input.on('data', (d: Buffer) => { screen += d.toString(); });
      input.on('error', () => {});
      await until(() => /\d+ \d+\r\n/.test(screen), 'the first size');
      expect(screen).toMatch(/^\/dev\/pts\/\d+\r\n/);
      setWinsize(cons.master, 40, 120);
      await new Promise((res) => setTimeout(res, 500));
      fs.writeSync(cons.master, '\n');
      await until(() => /40 120\r\n/.test(screen), 'the new size');
      expect(await reap(Number(fs.readFileSync(pidFile, 'utf8')))).toEqual({ exited: 6 });
      input.destroy();
    } finally {
      rx.close();
    }
  });

  it('runs 10 execs at once, each with its own output and status', async () => {
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) =>
      husk(root, ['exec', id, 'sh', '-c', `for j in 1 2 3; do echo ${i}-$j; sleep 0.05; done; echo e${i} >&2; exit ${i}`])));
    runs.forEach((r, i) => {
      expect(r.exitCode).toBe(i);
      expect(text(r.stdout)).toBe(`${i}-1\n${i}-2\n${i}-3\n`);
      expect(text(r.stderr)).toBe(`e${i}\n`);
    });
  });

  it('--preserve-fds relays fds 3.. as byte streams both ways', async () => {
    const inFile = path.join(tmp.dir, 'in3');
    const outFile = path.join(tmp.dir, 'out4');
    fs.writeFileSync(inFile, 'through fd 3\n');
    const inFd = fs.openSync(inFile, 'r');
    const outFd = fs.openSync(outFile, 'w');
    try {
      // stdio entries 3 and 4 become husk's fds 3 and 4.
      const r = await execa(HUSK, ['--root', root, 'exec', '--preserve-fds', '2', id, 'sh', '-c', 'cat <&3 >&4; echo more >&4'],
        { reject: false, stdio: ['ignore', 'pipe', 'pipe', inFd, outFd], encoding: 'buffer' });
      expect(r.exitCode, text(r.stderr)).toBe(0);
    } finally {
      fs.closeSync(inFd);
      fs.closeSync(outFd);
    }
    expect(fs.readFileSync(outFile, 'utf8')).toBe('through fd 3\nmore\n');
  });

  it('answers bad input like runc and leaves nothing behind', async () => {
    const before = await guestPids();
    const missing = await husk(root, ['exec', id, 'nosuchbin']);
    expect(missing.exitCode).toBe(255);
    expect(text(missing.stderr)).toBe('husk: exec failed: unable to start container process: exec: "nosuchbin": executable file not found in $PATH\n');
    const unknown = await husk(root, ['exec', 'no-such-ctr', 'true']);
    expect(unknown.exitCode).toBe(255);
    expect(text(unknown.stderr)).toContain('container does not exist');
    const bad = path.join(tmp.dir, 'bad.json');
    fs.writeFileSync(bad, '{bad');
    const malformed = await husk(root, ['exec', '--process', bad, id]);
    expect(malformed.exitCode).toBe(255);
    expect(text(malformed.stderr)).toMatch(/^husk: exec failed: .*JSON/);
    fs.writeFileSync(bad, '{"cwd":"/"}');
    const noArgs = await husk(root, ['exec', '--process', bad, id]);
    expect(noArgs.exitCode).toBe(255);
    expect(text(noArgs.stderr)).toBe('husk: exec failed: process args cannot be empty\n');
    const detachedMissing = await husk(root, ['exec', '-d', '--pid-file', path.join(tmp.dir, 'never.pid'), id, '/no/such']);
    expect(detachedMissing.exitCode).toBe(255);
    expect(text(detachedMissing.stderr)).toContain('exec: "/no/such": no such file or directory');
    expect(fs.existsSync(path.join(tmp.dir, 'never.pid'))).toBe(false);
    expect(await guestPids()).toEqual(before);
    expect(await processesMentioning('exec-shim')).toEqual([]);
  });
});

describe('husk create --preserve-fds', () => {
  it('relays the caller\'s fds 3.. to the container\'s process', async () => {
    const cb = bundle(path.join(tmp.dir, 'pf'), { args: ['sh', '-c', 'read line <&3; echo "got $line" >&4; echo done >&4'] });
    const cid = uniqueId('pfd');
    const inFile = path.join(tmp.dir, 'pf-in');
    const outFile = path.join(tmp.dir, 'pf-out');
    fs.writeFileSync(inFile, 'hello over fd 3\n');
    const fds = [fs.openSync(inFile, 'r'), fs.openSync(outFile, 'w'), fs.openSync('/dev/null', 'w')];
    try {
      // The VMM daemon keeps fds 3 and 4 (and stdout/stderr: files, not pipes we would wait on).
      const c = await execa(HUSK, ['--root', root, 'create', '--preserve-fds', '2', '--bundle', cb, cid],
        { reject: false, stdio: ['ignore', fds[2]!, fds[2]!, fds[0]!, fds[1]!] });
      expect(c.exitCode).toBe(0);
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
    expect((await husk(root, ['start', cid])).exitCode).toBe(0);
    await until(async () => text((await husk(root, ['state', cid])).stdout).includes('"stopped"'), 'the container to finish');
    expect(fs.readFileSync(outFile, 'utf8')).toBe('got hello over fd 3\ndone\n');
    expect((await husk(root, ['delete', cid])).exitCode).toBe(0);
  });
});

describe('husk ps and kill --all', () => {
  it('lists the container\'s processes by their pids in its namespace and signals them all', async () => {
    const pidFile = path.join(tmp.dir, 'bg.pid');
    const r = await husk(root, ['exec', '-d', '--pid-file', pidFile, id, 'sh', '-c', 'sleep 1000 & wait'], { stdout: 'ignore', stderr: 'ignore' });
    expect(r.exitCode).toBe(0);
    const hostPid = Number(fs.readFileSync(pidFile, 'utf8'));
    const table = async () => text((await husk(root, ['ps', id])).stdout).trim().split('\n');
    await until(async () => (await table()).some((l) => l.endsWith(' sleep 1000')), 'the background sleep');
    const rows = await table();
    expect(rows[0]).toMatch(/^UID\s+PID\s+PPID\s+CMD$/);
    const parsed = rows.slice(1).map((l) => { const [uid, pid, ppid, ...cmd] = l.trim().split(/\s+/); return { uid, pid: Number(pid), ppid: Number(ppid), cmd: cmd.join(' ') }; });
    expect(parsed[0]).toEqual({ uid: '0', pid: 1, ppid: 0, cmd: 'sleep 100000' });
    const sh = parsed.find((p) => p.cmd === 'sh -c sleep 1000 & wait')!;
    const sleep = parsed.find((p) => p.cmd === 'sleep 1000')!;
    expect(sh.ppid).toBe(0); // its parent is the agent, outside the container
    expect(sleep.ppid).toBe(sh.pid);
    expect(await guestPids()).toEqual(parsed.map((p) => p.pid));

    const k = await husk(root, ['kill', '--all', id, 'KILL']);
    expect(k.exitCode, text(k.stderr)).toBe(0);
    expect(await reap(hostPid)).toEqual({ exited: 137 });
    await until(async () => text((await husk(root, ['state', id])).stdout).includes('"stopped"'), 'the container to stop');
    const after = await husk(root, ['exec', id, 'true']);
    expect(after.exitCode).toBe(255);
    expect(text(after.stderr)).toBe('husk: exec failed: cannot exec in a stopped container\n');
    const ps = await husk(root, ['ps', id]);
    expect(ps.exitCode).not.toBe(0);
  });
});
