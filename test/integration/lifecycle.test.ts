// runc's lifecycle driven the way conmon and containerd's shim drive it:
// create (VM booted, process held), state, start, kill, delete, with the
// VMM process as the pid in --pid-file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { bundle, husk, huskDetached, processesMentioning, scratch, uniqueId } from '../helpers/husk.js';

let tmp: ReturnType<typeof scratch>;
let root: string;

beforeAll(() => {
  tmp = scratch('husk-life-');
  root = path.join(tmp.dir, 'state');
});
afterAll(() => tmp.cleanup());

const text = (b: unknown) => Buffer.from(b as Uint8Array).toString();

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stateOf(id: string) {
  const r = await husk(root, ['state', id]);
  expect(r.exitCode, text(r.stderr)).toBe(0);
  return JSON.parse(text(r.stdout));
}

const alive = (pid: number) => fs.existsSync(`/proc/${pid}`) && !/^\S+ \(.*\) [ZX]/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));

describe('lifecycle: create, start, state, kill, delete', () => {
  it('create holds the process; start runs it; state follows; delete cleans up', async () => {
    const b = bundle(path.join(tmp.dir, 'b1'), { args: ['sh', '-c', 'echo started > /tmp/proof; echo out; trap "echo got-term; exit 42" TERM; while :; do sleep 0.1; done'] });
    const id = uniqueId('life');
    const pidFile = path.join(tmp.dir, 'b1.pid');
    const c = await huskDetached(root, ['create', '--bundle', b, '--pid-file', pidFile, id], tmp.dir);
    const out = c.outFile;
    expect(c.exitCode, text(c.stderr)).toBe(0);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect(alive(pid)).toBe(true);
    let st = await stateOf(id);
    expect(st).toMatchObject({ id, pid, status: 'created', bundle: b, ociVersion: expect.any(String) });
    expect(fs.existsSync(path.join(b, 'rootfs/tmp/proof'))).toBe(false);

    const s = await husk(root, ['start', id]);
    expect(s.exitCode, text(s.stderr)).toBe(0);
    st = await stateOf(id);
    expect(st.status).toBe('running');
    await until(() => fs.existsSync(out) && fs.readFileSync(out, 'utf8').includes('out\n'), 'container output');
    expect(fs.readFileSync(path.join(b, 'rootfs/tmp/proof'), 'utf8')).toBe('started\n');

    const again = await husk(root, ['start', id]);
    expect(again.exitCode).not.toBe(0);

    const notForced = await husk(root, ['delete', id]);
    expect(notForced.exitCode).not.toBe(0);
    expect(text(notForced.stderr)).toMatch(/cannot delete container .* that is not stopped: running/);

    const k = await husk(root, ['kill', id, 'TERM']);
    expect(k.exitCode, text(k.stderr)).toBe(0);
    await until(() => !alive(pid), 'VMM exit after SIGTERM');
    expect(fs.readFileSync(out, 'utf8')).toContain('got-term');
    st = await stateOf(id);
    expect(st.status).toBe('stopped');

    const d = await husk(root, ['delete', id]);
    expect(d.exitCode, text(d.stderr)).toBe(0);
    const gone = await husk(root, ['state', id]);
    expect(gone.exitCode).toBe(1);
    expect(text(gone.stderr)).toMatch(/does not exist/);
    expect(await processesMentioning(id)).toEqual([]);
  });

  it('delete --force stops a running container and leaves nothing behind', async () => {
    const b = bundle(path.join(tmp.dir, 'b2'), { args: ['sleep', '1000'] });
    const id = uniqueId('force');
    const pidFile = path.join(tmp.dir, 'b2.pid');
    expect((await huskDetached(root, ['run', '-d', '--bundle', b, '--pid-file', pidFile, id], tmp.dir)).exitCode).toBe(0);
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    expect((await stateOf(id)).status).toBe('running');
    const d = await husk(root, ['delete', '--force', id]);
    expect(d.exitCode, text(d.stderr)).toBe(0);
    expect(alive(pid)).toBe(false);
    expect(fs.existsSync(path.join(root, id))).toBe(false);
    expect(await processesMentioning(id)).toEqual([]);
  });

  it('unknown ids and bad signals answer like runc', async () => {
    for (const verb of [['state'], ['start'], ['kill'], ['delete']]) {
      const r = await husk(root, [...verb, 'no-such-container']);
      expect(r.exitCode).toBe(1);
      expect(text(r.stderr)).toMatch(/^husk: container does not exist/m);
    }
    expect((await husk(root, ['delete', '--force', 'no-such-container'])).exitCode).toBe(0);
    const b = bundle(path.join(tmp.dir, 'b3'), { args: ['true'] });
    const id = uniqueId('sig');
    expect((await huskDetached(root, ['create', '--bundle', b, id], tmp.dir)).exitCode).toBe(0);
    const r = await husk(root, ['kill', id, 'SIGNOPE']);
    expect(r.exitCode).toBe(1);
    expect(text(r.stderr)).toMatch(/invalid signal/);
    const ids = JSON.parse(text((await husk(root, ['list', '--format', 'json'])).stdout)).map((c: { id: string }) => c.id);
    expect(ids).toContain(id);
    expect((await husk(root, ['delete', id])).exitCode).toBe(0);
  });

  it('a create that fails (missing executable) leaves no state, process or pid file', async () => {
    const b = bundle(path.join(tmp.dir, 'b4'), { args: ['/nope'] });
    const id = uniqueId('fail');
    const pidFile = path.join(tmp.dir, 'b4.pid');
    const r = await huskDetached(root, ['create', '--bundle', b, '--pid-file', pidFile, id], tmp.dir);
    expect(r.exitCode).toBe(1);
    expect(text(r.stderr)).toMatch(/exec: "\/nope": no such file or directory/);
    expect(fs.existsSync(pidFile)).toBe(false);
    expect(fs.existsSync(path.join(root, id))).toBe(false);
    expect(await processesMentioning(id)).toEqual([]);
  });

  it('concurrent calls on one id do not corrupt its state', async () => {
    const b = bundle(path.join(tmp.dir, 'b5'), { args: ['sleep', '1000'] });
    const id = uniqueId('conc');
    const creates = await Promise.all([1, 2, 3].map(() => huskDetached(root, ['create', '--bundle', b, id], tmp.dir)));
    expect(creates.filter((r) => r.exitCode === 0)).toHaveLength(1);
    for (const r of creates.filter((x) => x.exitCode !== 0)) expect(text(r.stderr)).toMatch(/already exists/);
    const starts = await Promise.all([1, 2, 3].map(() => husk(root, ['start', id])));
    expect(starts.filter((r) => r.exitCode === 0)).toHaveLength(1);
    expect((await stateOf(id)).status).toBe('running');
    const dels = await Promise.all([1, 2].map(() => husk(root, ['delete', '--force', id])));
    expect(dels.every((r) => r.exitCode === 0)).toBe(true);
    expect(fs.existsSync(path.join(root, id))).toBe(false);
  });
});

describe('terminal over --console-socket', () => {
  it('sends the pty master, runs the process on a tty, and relays window-size changes', async () => {
    const { listenUnix, acceptUnix, FdSocket } = await import('../../src/sys/unix-socket.js');
    const { setWinsize } = await import('../../src/sys/pty.js');
    const tty = await import('node:tty');
    const b = bundle(path.join(tmp.dir, 'tty'), { args: ['sh', '-c', 'tty; stty size; read x; stty size; exit 5'] });
    const spec = JSON.parse(fs.readFileSync(path.join(b, 'config.json'), 'utf8'));
    spec.process.terminal = true;
    spec.process.consoleSize = { height: 25, width: 80 };
    fs.writeFileSync(path.join(b, 'config.json'), JSON.stringify(spec));
    const sockPath = path.join(tmp.dir, 'console.sock');
    const listenFd = listenUnix(sockPath);
    const id = uniqueId('tty');
    const pidFile = path.join(tmp.dir, 'tty.pid');
    const created = huskDetached(root, ['create', '--bundle', b, '--console-socket', sockPath, '--pid-file', pidFile, id], tmp.dir);
    // Blocking accept is fine: create connects before it returns.
    const conn = new FdSocket(acceptUnix(listenFd));
    const msg = conn.recv(4096)!;
    conn.close();
    expect(Buffer.from(msg.data).toString()).toMatch(/^\/dev\/pts\/\d+$/);
    expect(msg.fds).toHaveLength(1);
    const master = msg.fds[0]!;
    expect((await created).exitCode).toBe(0);
    const input = new tty.ReadStream(master);
    let screen = '';
    input.on('data', (d: Buffer) => { screen += d.toString(); });
    input.on('error', () => {});
    expect((await husk(root, ['start', id])).exitCode).toBe(0);
    await until(() => /25 80\r\n/.test(screen), "the first size");
    expect(screen).toMatch(/\/dev\/pts\/\d+/);
    setWinsize(master, 40, 120);
    // Give the relay a moment, then let the shell print the size again.
    await new Promise((r) => setTimeout(r, 500));
    fs.writeSync(master, '\n');
    await until(() => /40 120\r\n/.test(screen), "the new size");
    expect(screen).not.toContain("\r\r\n");
    const pid = Number(fs.readFileSync(pidFile, 'utf8'));
    await until(() => !alive(pid), 'VMM exit');
    expect((await stateOf(id)).status).toBe('stopped');
    input.destroy();
    expect((await husk(root, ['delete', id])).exitCode).toBe(0);
    fs.rmSync(sockPath, { force: true });
  });
});
