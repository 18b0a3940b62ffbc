// podman 4.3 (through conmon) with husk as its OCI runtime.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import { scratch } from '../helpers/husk.js';
import { IMAGE, expectNothingLeft, setupPodman, type Podman } from '../helpers/podman.js';

let tmp: ReturnType<typeof scratch>;
let pm: Podman;

beforeAll(async () => {
  tmp = scratch('husk-podman-');
  pm = await setupPodman(path.join(tmp.dir, 'podman'));
});
afterAll(async () => {
  await pm?.cleanup();
  tmp.cleanup();
});

const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');

async function until(cond: () => boolean, what: string, ms = 90_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('podman --runtime husk', () => {
  it('runs a command and returns its output and exit code', async () => {
    const r = await pm.run(['run', '--rm', '--network', 'none', IMAGE, 'echo', 'hi']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('hi');
    expect(r.exitCode).toBe(0);
    const e = await pm.run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'exit 7']);
    expect(e.exitCode).toBe(7);
    // The container's init is PID 1 of its pid namespace, which ignores even a
    // SIGKILL it sends itself (as with runc): a SIGKILLed child gives 137.
    const k = await pm.run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'sleep 100 & kill -9 $!; wait $!']);
    expect(k.exitCode).toBe(137);
  });

  it('stop -t 2 of a process that ignores TERM ends with 137; kill -s USR1 reaches the process', async () => {
    const c = await pm.run(['run', '-d', '--network', 'none', IMAGE, 'sh', '-c',
      'trap "" TERM; trap "echo got-usr1" USR1; echo ready; while :; do sleep 0.1; done']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    for (let i = 0; !out(await pm.run(['logs', id])).includes('ready'); i++) {
      if (i > 300) throw new Error('container never became ready');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await pm.run(['kill', '-s', 'USR1', id])).exitCode).toBe(0);
    for (let i = 0; !out(await pm.run(['logs', id])).includes('got-usr1'); i++) {
      if (i > 100) throw new Error(`USR1 never arrived: ${out(await pm.run(['logs', id]))}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await pm.run(['stop', '-t', '2', id])).exitCode).toBe(0);
    expect(out(await pm.run(['inspect', '--format', '{{.State.ExitCode}}', id]))).toBe('137');
    expect((await pm.run(['rm', id])).exitCode).toBe(0);
  });

  it('sizes the guest from --memory and honours --read-only', async () => {
    const r = await pm.run(['run', '--rm', '--network', 'none', '--memory', '1g', '--read-only', IMAGE, 'sh', '-c',
      'grep MemTotal /proc/meminfo; touch /x 2>/dev/null && echo writable || echo read-only']);
    expect(err(r)).toBe('');
    const kib = Number(/MemTotal:\s+(\d+) kB/.exec(out(r))![1]);
    // 1 GiB for the container plus the guest's own overhead, minus what the kernel keeps.
    expect(kib).toBeGreaterThan(1000 * 1024);
    expect(kib).toBeLessThan(1100 * 1024);
    expect(out(r)).toMatch(/read-only$/);
  });

  it('rm -f leaves nothing behind: no VMM or QEMU process, no state, no mounts', async () => {
    const c = await pm.run(['run', '-d', '--network', 'none', '-v', `${tmp.dir}:/data`, IMAGE, 'sleep', '1000']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    expect((await pm.run(['rm', '-f', '-t', '0', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
    expect(fs.existsSync(path.join('/run/husk', id))).toBe(false);
    expect(fs.readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(id);
  });

  it('applies user, hostname, env, workdir, volumes and every tmpfs inside the guest', async () => {
    const vol = path.join(tmp.dir, 'vol');
    fs.mkdirSync(vol);
    fs.writeFileSync(path.join(vol, 'f.txt'), 'from host');
    const r = await pm.run(['run', '--rm', '--network', 'none', '--user', '1000:1000', '--hostname', 'boxy', '-e', 'FOO=bar',
      '-w', '/tmp', '-v', `${vol}:/data:ro`, '--tmpfs', '/t1', '--tmpfs', '/t2', IMAGE,
      'sh', '-c', 'id -u; id -g; hostname; echo $FOO; pwd; cat /data/f.txt; echo; touch /data/x 2>/dev/null || echo ro-ok; grep -E " /t[12] " /proc/mounts | cut -d" " -f2,3 | sort']);
    expect(err(r)).toBe('');
    expect(out(r).split('\n')).toEqual(['1000', '1000', 'boxy', 'bar', '/tmp', 'from host', 'ro-ok', '/t1 tmpfs', '/t2 tmpfs']);
  });

  it('relays SIGTERM on podman stop (no wait for the SIGKILL timeout)', async () => {
    const c = await pm.run(['run', '-d', '--network', 'none', IMAGE, 'sh', '-c', 'trap "exit 12" TERM; while :; do sleep 0.1; done']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    const s = await pm.run(['stop', '-t', '60', id]);
    expect(s.exitCode, err(s)).toBe(0);
    const code = await pm.run(['inspect', '--format', '{{.State.ExitCode}}', id]);
    expect(out(code)).toBe('12');
    expect((await pm.run(['rm', id])).exitCode).toBe(0);
    await expectNothingLeft(id);
  });

  it('gives -it a tty under script, relays a resize, and exits with the code', async () => {
    // Our own pty is script's terminal (setsid -c makes it the controlling tty),
    // so resizing it sends SIGWINCH down the real chain: script -> podman -> conmon -> husk -> guest.
    const { openPty, setWinsize } = await import('../../src/sys/pty.js');
    const tty = await import('node:tty');
    const pty = openPty();
    setWinsize(pty.master, 30, 100);
    const cmd = `podman --root ${pm.dir}/storage --runroot ${pm.dir}/run --runtime husk run -it --rm --network none ${IMAGE} sh -c 'tty; stty size; read x; stty size; exit 3'`;
    const child = execa('setsid', ['-c', 'script', '-qec', cmd, '/dev/null'], {
      env: { ...process.env, CONTAINERS_CONF: path.join(pm.dir, 'containers.conf') }, reject: false,
      stdin: pty.slave, stdout: pty.slave, stderr: pty.slave,
    });
    fs.closeSync(pty.slave);
    const input = new tty.ReadStream(pty.master);
    let screen = '';
    input.on('data', (d: Buffer) => { screen += d.toString(); });
    input.on('error', () => {});
    try {
      await until(() => /30 100\r\n/.test(screen), 'the first size');
      expect(screen).toMatch(/\/dev\/pts\/\d+/);
      setWinsize(pty.master, 40, 120);
      // The new size travels through three processes; then let the shell print it again.
      await new Promise((r) => setTimeout(r, 1000));
      fs.writeSync(pty.master, '\n');
      await until(() => /40 120\r\n/.test(screen), 'the new size');
      expect((await child).exitCode).toBe(3);
    } catch (e) {
      throw new Error(`${(e as Error).message}; the terminal showed ${JSON.stringify(screen)}`);
    } finally {
      child.kill('SIGKILL');
      input.destroy();
    }
  });

  it('reports a missing executable like runc (exit 127)', async () => {
    const r = await pm.run(['run', '--rm', '--network', 'none', IMAGE, '/no/such/thing']);
    expect(r.exitCode).toBe(127);
    expect(err(r)).toMatch(/no such file or directory/);
  });
});

describe('podman exec and top with husk', () => {
  let ctr = '';
  beforeAll(async () => {
    const c = await pm.run(['run', '-d', '--network', 'none', IMAGE, 'sh', '-c', 'echo ready; exec sleep 100000']);
    expect(c.exitCode, err(c)).toBe(0);
    ctr = out(c).trim();
    for (let i = 0; !out(await pm.run(['logs', ctr])).includes('ready'); i++) {
      if (i > 600) throw new Error('container never became ready');
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => {
    if (ctr) await pm.run(['rm', '-f', '-t', '0', ctr]);
  });

  it('runs a command in the container and propagates its exit code', async () => {
    const r = await pm.run(['exec', ctr, 'echo', 'hi']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('hi');
    expect(r.exitCode).toBe(0);
    const e = await pm.run(['exec', ctr, 'sh', '-c', 'exit 3']);
    expect(e.exitCode).toBe(3);
    const pid1 = await pm.run(['exec', ctr, 'cat', '/proc/1/cmdline']);
    expect(out(pid1).replace(/\0/g, ' ').trim()).toBe('sleep 100000');
  });

  it('honours -e, -w and -u', async () => {
    const r = await pm.run(['exec', '-e', 'X=1', '-w', '/tmp', '-u', '1000', ctr, 'sh', '-c', 'id -u; pwd; echo X=$X']);
    expect(err(r)).toBe('');
    expect(out(r)).toBe('1000\n/tmp\nX=1');
    expect(r.exitCode).toBe(0);
  });

  it('relays --preserve-fds', async () => {
    const file = path.join(tmp.dir, 'preserved.out');
    const fd = fs.openSync(file, 'w');
    try {
      const r = await execa('podman', ['--root', `${pm.dir}/storage`, '--runroot', `${pm.dir}/run`, '--runtime', 'husk', 'exec', '--preserve-fds', '1', ctr, 'sh', '-c', 'echo through-fd-3 >&3'],
        { env: { ...process.env, CONTAINERS_CONF: path.join(pm.dir, 'containers.conf') }, reject: false, stdio: ['ignore', 'pipe', 'pipe', fd] });
      expect(r.exitCode, err(r)).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.readFileSync(file, 'utf8')).toBe('through-fd-3\n');
  });

  it('runs ten execs at once, each with its own output', async () => {
    const runs = await Promise.all(Array.from({ length: 10 }, (_, i) => pm.run(['exec', ctr, 'sh', '-c', `echo out-${i}; exit ${i}`])));
    runs.forEach((r, i) => {
      expect(out(r)).toBe(`out-${i}`);
      expect(r.exitCode).toBe(i);
    });
  });

  it('gives exec -it a working tty that follows resizes', async () => {
    const conf = path.join(pm.dir, 'containers.conf');
    // Under script (a pty of 30x100), a background job resizes that pty while the
    // exec'd shell polls its own size: podman -> conmon -> husk -> guest pty.
    const inner = 'first=$(stty size); echo first=$first; i=0; while [ "$(stty size)" = "$first" ] && [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done; echo now=$(stty size); exit 5';
    const podman = `podman --root ${pm.dir}/storage --runroot ${pm.dir}/run --runtime husk exec -it ${ctr} sh -c '${inner}'`;
    const resizer = '(sleep 3; stty rows 40 cols 120 </dev/tty; sleep 8; stty rows 50 cols 130 </dev/tty) &';
    const r = await execa('script', ['-qec', `stty rows 30 cols 100; ${resizer} ${podman}`, '/dev/null'], {
      env: { ...process.env, CONTAINERS_CONF: conf }, reject: false, stdin: 'ignore',
    });
    const o = String(r.stdout);
    const first = /first=(\d+ \d+)/.exec(o)?.[1];
    const now = /now=(\d+ \d+)/.exec(o)?.[1];
    expect(['30 100', '40 120'], o).toContain(first);
    expect(['40 120', '50 130'], o).toContain(now);
    expect(now).not.toBe(first);
    expect(r.exitCode, o).toBe(5);
  });

  it('lists the guest\'s container processes with plain podman top', async () => {
    // podman's psgo reads /proc in the mount namespace of the container's pid
    // (the VMM): husk's /proc view there shows the guest's processes.
    // USER names come from the container's /etc/passwd, as with runc (the host has no "husktop").
    expect((await pm.run(['exec', ctr, 'sh', '-c', 'echo husktop:x:4242:4242::/:/bin/sh >> /etc/passwd'])).exitCode).toBe(0);
    const bg = await pm.run(['exec', '-d', '-u', '4242', ctr, 'sleep', '4242']);
    expect(bg.exitCode, err(bg)).toBe(0);
    const r = await pm.run(['top', ctr]);
    expect(r.exitCode, err(r)).toBe(0);
    const [header, ...rows] = out(r).split('\n');
    expect(header!.split(/\s+/)).toEqual(['USER', 'PID', 'PPID', '%CPU', 'ELAPSED', 'TTY', 'TIME', 'COMMAND']);
    const init = rows.find((l) => /^root\s+1\s+0\s+.*sleep 100000\s*$/.test(l));
    expect(init, out(r)).toBeDefined();
    const execd = rows.find((l) => /^husktop\s+\d+\s+0\s+.*sleep 4242\s*$/.test(l));
    expect(execd, out(r)).toBeDefined();
    expect(rows.length, out(r)).toBe(2); // nothing of the host: no VMM, QEMU, conmon
    // ELAPSED is measured against the guest's boot time: seconds, not the host's uptime.
    expect(init!.split(/\s+/)[4], out(r)).toMatch(/^(\d+m)?\d+(\.\d+)?s$/);
    const custom = await pm.run(['top', ctr, 'pid', 'comm', 'state']);
    expect(custom.exitCode, err(custom)).toBe(0);
    expect(out(custom).split('\n').slice(1).map((l) => l.trim().split(/\s+/).slice(0, 2).join(' ')).sort()).toEqual(['1 sleep', expect.stringMatching(/^\d+ sleep$/)].sort());
    await pm.run(['exec', ctr, 'pkill', '-f', 'sleep 4242']);
  });

  it('podman cp copies into and out of the running container\'s rootfs and volumes, never the host\'s /', async () => {
    // podman cp joins the mount namespace of the container's pid (the VMM)
    // and copies at the root it finds there: husk's container view.
    const vol = path.join(tmp.dir, 'cp-vol');
    fs.mkdirSync(vol, { recursive: true });
    fs.writeFileSync(path.join(vol, 'on-host.txt'), 'volume file\n');
    const c = await pm.run(['run', '-d', '--network', 'none', '-v', `${vol}:/data`, IMAGE, 'sh', '-c', 'echo made-in-guest > /guest.txt; exec sleep 100000']);
    expect(c.exitCode, err(c)).toBe(0);
    const id = out(c).trim();
    try {
      for (let i = 0; (await pm.run(['exec', id, 'test', '-e', '/guest.txt'])).exitCode !== 0; i++) {
        if (i > 300) throw new Error('container never wrote /guest.txt');
        await new Promise((r) => setTimeout(r, 100));
      }
      const name = `husk-cp-${process.pid}.txt`;
      const src = path.join(tmp.dir, name);
      fs.writeFileSync(src, 'copied in\n');
      expect((await pm.run(['cp', src, `${id}:/${name}`])).exitCode).toBe(0);
      expect(fs.existsSync(`/${name}`)).toBe(false); // not the host's root
      expect(out(await pm.run(['exec', id, 'cat', `/${name}`]))).toBe('copied in');
      const back = path.join(tmp.dir, 'guest-back.txt');
      const r = await pm.run(['cp', `${id}:/guest.txt`, back]);
      expect(r.exitCode, err(r)).toBe(0);
      expect(fs.readFileSync(back, 'utf8')).toBe('made-in-guest\n');
      // The VMM's namespace does not pin the other container's root file system.
      const pid = out(await pm.run(['inspect', '-f', '{{.State.Pid}}', id])).trim();
      const otherRoot = out(await pm.run(['inspect', '-f', '{{.GraphDriver.Data.MergedDir}}', ctr])).trim();
      expect(otherRoot).toMatch(/merged$/);
      expect(fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8')).not.toContain(otherRoot);
      // A volume is where it is in the container.
      expect((await pm.run(['cp', src, `${id}:/data/copied.txt`])).exitCode).toBe(0);
      expect(fs.readFileSync(path.join(vol, 'copied.txt'), 'utf8')).toBe('copied in\n');
      const fromVol = path.join(tmp.dir, 'from-vol.txt');
      expect((await pm.run(['cp', `${id}:/data/on-host.txt`, fromVol])).exitCode).toBe(0);
      expect(fs.readFileSync(fromVol, 'utf8')).toBe('volume file\n');
    } finally {
      await pm.run(['rm', '-f', '-t', '0', id]);
    }
    // --read-only: the copy fails as with runc.
    const ro = await pm.run(['run', '-d', '--read-only', '--network', 'none', IMAGE, 'sleep', '100000']);
    expect(ro.exitCode, err(ro)).toBe(0);
    try {
      const src = path.join(tmp.dir, 'ro-src.txt');
      fs.writeFileSync(src, 'x');
      const r = await pm.run(['cp', src, `${out(ro).trim()}:/ro.txt`]);
      expect(r.exitCode).not.toBe(0);
      expect(err(r)).toMatch(/read-only file system/);
    } finally {
      await pm.run(['rm', '-f', '-t', '0', out(ro).trim()]);
    }
  });

  it('lists the container\'s processes with podman top and ps(1) options', async () => {
    // With ps(1) options podman 4.3 runs ps inside the container through the
    // runtime's exec: the guest's processes, pid 1 the container's init.
    const r = await pm.run(['top', ctr, '-ef']);
    expect(r.exitCode, err(r)).toBe(0);
    const rows = out(r).split('\n');
    expect(rows.some((l) => /^\s*1\s+\S+\s+sleep 100000$/.test(l)), out(r)).toBe(true);
    expect(out(r)).not.toContain('kthreadd'); // no kernel threads: the container's pid namespace only
  });
});
