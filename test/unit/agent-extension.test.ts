// Protocol extension A of the real guest agent binary in its host test mode
// (--test-fd): the full process spec (user, groups, umask, rlimits,
// capabilities, no_new_privs, seccomp, terminal), HOLD/START, RESIZE, and
// SETUP parsing. Test mode does not chroot and does not mount: SETUP is
// checked completely and answered with SETUP_DONE, but nothing is applied
// (native/agent's `make nstest` applies it in PID 1 mode). The uid/capability
// tests need root, as the agent in the guest is.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MsgType, Tag, TlvWriter, attrInt, attrString, encodeFrame, parseTlv, type Frame } from '../../src/agent/protocol.js';
import { startTestAgent, type TestAgent } from '../helpers/test-agent.js';

const isRoot = process.getuid?.() === 0;
const EPERM = 1, ENOENT = 2, ESRCH = 3, EINVAL = 22, ENOTTY = 25;

let agent: TestAgent;
beforeEach(() => { agent = startTestAgent(); });
afterEach(() => agent.stop());
const waitFor = (pred: (f: Frame) => boolean, what: string) => agent.waitFor(pred, what);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function runPayload(args: string[], extra?: (w: TlvWriter) => void): Uint8Array {
  const w = new TlvWriter();
  args.forEach((a) => w.string(Tag.ARG, a));
  w.string(Tag.ENV, 'PATH=/usr/local/bin:/usr/bin:/bin').string(Tag.CWD, '/');
  extra?.(w);
  return w.finish();
}

function run(id: number, args: string[], extra?: (w: TlvWriter) => void): void {
  agent.sock.write(encodeFrame(MsgType.RUN, id, runPayload(args, extra)));
}

function output(id: number, type: number = MsgType.STDOUT): string {
  return Buffer.concat(agent.frames.filter((f) => f.id === id && f.type === type).map((f) => f.payload)).toString();
}

async function exitOf(id: number): Promise<number> {
  const f = await waitFor((x) => x.id === id && x.type === MsgType.EXIT, `EXIT ${id}`);
  return attrInt(parseTlv(f.payload), Tag.STATUS, true)!;
}

async function errorOf(id: number): Promise<{ errno: number; message: string }> {
  const f = await waitFor((x) => x.id === id && x.type === MsgType.ERROR, `ERROR ${id}`);
  const a = parseTlv(f.payload);
  return { errno: attrInt(a, Tag.ERRNO)!, message: attrString(a, Tag.MESSAGE)! };
}

function u64s(...v: bigint[]): Uint8Array {
  const b = new Uint8Array(8 * v.length);
  v.forEach((x, i) => new DataView(b.buffer).setBigUint64(8 * i, x, true));
  return b;
}

function winsize(rows: number, cols: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint16(0, rows, true);
  new DataView(b.buffer).setUint16(2, cols, true);
  return b;
}

function statusField(text: string, key: string): string {
  const line = text.split('\n').find((l) => l.startsWith(`${key}:`));
  if (!line) throw new Error(`${key} not in ${text}`);
  return line.slice(key.length + 1).trim();
}

// A seccomp filter that makes mkdir/mkdirat fail with EPERM and allows the rest.
function mkdirFilter(): Uint8Array | undefined {
  const arch = ({ x64: { audit: 0xc000003e, nrs: [83, 258] }, arm64: { audit: 0xc00000b7, nrs: [34] } } as const)[
    process.arch as 'x64' | 'arm64'];
  if (!arch) return undefined;
  const ALLOW = 0x7fff0000, ERRNO = 0x00050000;
  const insns: [number, number, number, number][] = [
    [0x20, 0, 0, 4], // ld [4] (arch)
    [0x15, 1, 0, arch.audit], // jeq arch: skip the next
    [0x06, 0, 0, ALLOW],
    [0x20, 0, 0, 0], // ld [0] (syscall nr)
  ];
  for (const nr of arch.nrs) insns.push([0x15, 0, 1, nr], [0x06, 0, 0, ERRNO | EPERM]);
  insns.push([0x06, 0, 0, ALLOW]);
  const b = new Uint8Array(8 * insns.length);
  const v = new DataView(b.buffer);
  insns.forEach(([code, jt, jf, k], i) => {
    v.setUint16(8 * i, code, true);
    v.setUint8(8 * i + 2, jt);
    v.setUint8(8 * i + 3, jf);
    v.setUint32(8 * i + 4, k, true);
  });
  return b;
}

function mountRecord(type: string, source: string, destination: string, data = '', flags = 0, propagation = 0): Uint8Array {
  const head = new Uint8Array(8);
  new DataView(head.buffer).setUint32(0, flags >>> 0, true);
  new DataView(head.buffer).setUint32(4, propagation >>> 0, true);
  return Buffer.concat([head, Buffer.from(`${type}\0${source}\0${destination}\0${data}\0`)]);
}

function setup(id: number, build: (w: TlvWriter) => void): void {
  const w = new TlvWriter();
  build(w);
  agent.sock.write(encodeFrame(MsgType.SETUP, id, w.finish()));
}

describe('guest agent extension A (test mode)', () => {
  it('announces FEATURES bit 0 in HELLO', async () => {
    const h = await waitFor((f) => f.type === MsgType.HELLO, 'HELLO');
    expect(attrInt(parseTlv(h.payload), Tag.FEATURES)! & 1).toBe(1);
  });

  it('HOLD creates the process without running it; START runs it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-hold-'));
    const marker = path.join(dir, 'ran');
    try {
      run(1, ['sh', '-c', `touch ${marker}; echo started`], (w) => w.u8(Tag.HOLD, 1));
      const created = await waitFor((f) => f.id === 1 && f.type === MsgType.CREATED, 'CREATED');
      const pid = attrInt(parseTlv(created.payload), Tag.PID)!;
      expect(pid).toBeGreaterThan(0);
      await sleep(300);
      expect(fs.existsSync(marker)).toBe(false);
      expect(agent.frames.some((f) => f.id === 1 && f.type === MsgType.STARTED)).toBe(false);
      agent.sock.write(encodeFrame(MsgType.START, 1));
      expect(await exitOf(1)).toBe(0);
      const started = agent.frames.find((f) => f.id === 1 && f.type === MsgType.STARTED)!;
      expect(attrInt(parseTlv(started.payload), Tag.PID)).toBe(pid);
      expect(output(1)).toBe('started\n');
      expect(fs.existsSync(marker)).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('HOLD of a missing executable is an ERROR, and START/SIGNAL errors are reported', async () => {
    run(2, ['no-such-command-xyz'], (w) => w.u8(Tag.HOLD, 1));
    expect(await errorOf(2)).toEqual({ errno: ENOENT, message: 'exec: "no-such-command-xyz": executable file not found in $PATH' });
    expect(agent.frames.some((f) => f.id === 2 && f.type === MsgType.CREATED)).toBe(false);
    agent.sock.write(encodeFrame(MsgType.START, 3));
    expect((await errorOf(3)).errno).toBe(ESRCH);
    // a held process ended by SIGNAL: EXIT, never STARTED
    run(4, ['true'], (w) => w.u8(Tag.HOLD, 1));
    await waitFor((f) => f.id === 4 && f.type === MsgType.CREATED, 'CREATED');
    agent.sock.write(encodeFrame(MsgType.SIGNAL, 4, new TlvWriter().u32(Tag.SIGNO, 15).finish()));
    expect(await exitOf(4)).toBe(143);
    expect(agent.frames.some((f) => f.id === 4 && f.type === MsgType.STARTED)).toBe(false);
  });

  it.skipIf(!isRoot)('sets UID, GID and exactly the GIDS', async () => {
    const gids = new Uint8Array(8);
    new DataView(gids.buffer).setUint32(0, 3000, true);
    new DataView(gids.buffer).setUint32(4, 3001, true);
    run(5, ['id'], (w) => w.u32(Tag.UID, 1234).u32(Tag.GID, 2345).bytes(Tag.GIDS, gids));
    expect(await exitOf(5)).toBe(0);
    expect(output(5)).toMatch(/^uid=1234 gid=2345 groups=(2345,)?3000,3001\n$/);
    run(6, ['sh', '-c', 'id -u; id -G; grep CapEff /proc/self/status'], (w) => w.u32(Tag.UID, 1000).bytes(Tag.GIDS, new Uint8Array(0)));
    expect(await exitOf(6)).toBe(0);
    const lines = output(6).split('\n');
    expect(lines.slice(0, 2)).toEqual(['1000', '0']);
    expect(statusField(output(6), 'CapEff')).toBe('0000000000000000');
  });

  it('sets UMASK, RLIMIT and OOM_SCORE_ADJ', async () => {
    const rl = new Uint8Array(24);
    const v = new DataView(rl.buffer);
    v.setUint32(0, 7, true); // RLIMIT_NOFILE
    v.setBigUint64(8, 123n, true);
    v.setBigUint64(16, 456n, true);
    run(7, ['sh', '-c', 'umask; ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj'],
      (w) => w.u32(Tag.UMASK, 0o027).bytes(Tag.RLIMIT, rl).i32(Tag.OOM_SCORE_ADJ, 555));
    expect(await exitOf(7)).toBe(0);
    expect(output(7).split(/\s+/).filter(Boolean)).toEqual(['0027', '123', '456', '555']);
  });

  it('sets NO_NEW_PRIVS', async () => {
    run(8, ['grep', 'NoNewPrivs', '/proc/self/status'], (w) => w.u8(Tag.NO_NEW_PRIVS, 1));
    expect(await exitOf(8)).toBe(0);
    expect(statusField(output(8), 'NoNewPrivs')).toBe('1');
  });

  it.skipIf(!isRoot)('sets the five capability sets (kept through the uid change)', async () => {
    const x = (1n << 0n) | (1n << 10n); // CAP_CHOWN, CAP_NET_BIND_SERVICE
    run(9, ['grep', 'Cap', '/proc/self/status'], (w) => w.u32(Tag.UID, 1000).u32(Tag.GID, 1000).bytes(Tag.CAPS, u64s(x, x, x, x, x)));
    expect(await exitOf(9)).toBe(0);
    for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) {
      expect(BigInt(`0x${statusField(output(9), k)}`), k).toBe(x);
    }
    // as root: execve makes permitted = bounding
    const sysAdmin = 1n << 21n;
    run(10, ['grep', 'Cap', '/proc/self/status'], (w) => w.bytes(Tag.CAPS, u64s(sysAdmin, sysAdmin, sysAdmin, 0n, 0n)));
    expect(await exitOf(10)).toBe(0);
    expect(BigInt(`0x${statusField(output(10), 'CapBnd')}`)).toBe(sysAdmin);
    expect(BigInt(`0x${statusField(output(10), 'CapEff')}`)).toBe(sysAdmin);
  });

  const filter = mkdirFilter();
  it.skipIf(!filter)('installs a SECCOMP filter (with and without NO_NEW_PRIVS)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-seccomp-'));
    try {
      for (const [id, nnp] of [[11, true], [12, false]] as const) {
        run(id, ['sh', '-c', `mkdir ${dir}/x || echo refused; grep Seccomp: /proc/self/status`], (w) => {
          w.bytes(Tag.SECCOMP, filter!).u32(Tag.SECCOMP_FLAGS, 0);
          if (nnp) w.u8(Tag.NO_NEW_PRIVS, 1);
        });
        expect(await exitOf(id)).toBe(0);
        expect(output(id)).toMatch(/^refused\nSeccomp:\s+2\n$/);
        expect(output(id, MsgType.STDERR)).toMatch(/not permitted/);
      }
      expect(fs.existsSync(path.join(dir, 'x'))).toBe(false);
      run(13, ['true'], (w) => w.bytes(Tag.SECCOMP, filter!.subarray(0, 12)));
      expect((await errorOf(13)).errno).toBe(EINVAL);
      run(14, ['true'], (w) => w.bytes(Tag.SECCOMP, new Uint8Array(8 * 4097)));
      expect((await errorOf(14)).errno).toBe(EINVAL);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives TERMINAL processes a pty sized by WINSIZE and RESIZE', async () => {
    run(15, ['sh', '-c', 'tty; stty size; read line; stty size; echo "got $line"'],
      (w) => w.u8(Tag.TERMINAL, 1).bytes(Tag.WINSIZE, winsize(33, 111)));
    await waitFor(() => output(15).includes('33 111'), 'first stty size');
    agent.sock.write(encodeFrame(MsgType.RESIZE, 15, new TlvWriter().bytes(Tag.WINSIZE, winsize(44, 99)).finish()));
    agent.sock.write(encodeFrame(MsgType.STDIN, 15)); // no EOF on a terminal: ignored
    agent.sock.write(encodeFrame(MsgType.STDIN, 15, Buffer.from('hello\n')));
    expect(await exitOf(15)).toBe(0);
    const lines = output(15).split('\r\n');
    expect(lines[0]).toMatch(/^\/dev\/pts\/\d+$/);
    expect(lines.slice(1)).toEqual(['33 111', 'hello', '44 99', 'got hello', '']);
    expect(agent.frames.some((f) => f.id === 15 && f.type === MsgType.STDERR)).toBe(false);
    // RESIZE of a process without a terminal, of nothing, and malformed
    run(16, ['sleep', '5']);
    await waitFor((f) => f.id === 16 && f.type === MsgType.STARTED, 'STARTED');
    agent.sock.write(encodeFrame(MsgType.RESIZE, 16, new TlvWriter().bytes(Tag.WINSIZE, winsize(1, 1)).finish()));
    expect((await errorOf(16)).errno).toBe(ENOTTY);
    agent.sock.write(encodeFrame(MsgType.RESIZE, 17, new TlvWriter().bytes(Tag.WINSIZE, winsize(1, 1)).finish()));
    expect((await errorOf(17)).errno).toBe(ESRCH);
    agent.sock.write(encodeFrame(MsgType.RESIZE, 18, new TlvWriter().bytes(Tag.WINSIZE, new Uint8Array(3)).finish()));
    expect((await errorOf(18)).errno).toBe(EINVAL);
  });

  it('rejects malformed RUN attributes with EINVAL', async () => {
    const bad: ((w: TlvWriter) => void)[] = [
      (w) => w.bytes(Tag.TERMINAL, new Uint8Array(0)),
      (w) => w.bytes(Tag.WINSIZE, new Uint8Array(2)),
      (w) => w.bytes(Tag.UID, new Uint8Array(2)),
      (w) => w.bytes(Tag.GIDS, new Uint8Array(3)),
      (w) => w.u32(Tag.UMASK, 0o1777),
      (w) => w.bytes(Tag.RLIMIT, new Uint8Array(16)),
      (w) => w.bytes(Tag.CAPS, new Uint8Array(39)),
      (w) => w.i32(Tag.OOM_SCORE_ADJ, -5000),
      (w) => w.u32(Tag.SECCOMP_FLAGS, 8), // NEW_LISTENER
      (w) => w.bytes(Tag.HOLD, new Uint8Array(2)),
    ];
    bad.forEach((b, i) => run(100 + i, ['true'], b));
    for (let i = 0; i < bad.length; i++) expect((await errorOf(100 + i)).errno, `case ${i}`).toBe(EINVAL);
    run(120, ['echo', 'alive']);
    expect(await exitOf(120)).toBe(0);
  });

  it('checks SETUP: malformed records get ERROR EINVAL and change nothing; a valid one gets SETUP_DONE', async () => {
    await waitFor((f) => f.type === MsgType.HELLO, 'HELLO');
    const MS_BIND = 4096, MS_REC = 16384, MS_MOVE = 8192, MS_PRIVATE = 1 << 18, MS_SLAVE = 1 << 19;
    const head = (flags: number, prop: number) => {
      const h = new Uint8Array(8);
      new DataView(h.buffer).setUint32(0, flags, true);
      new DataView(h.buffer).setUint32(4, prop, true);
      return h;
    };
    const bad: ((w: TlvWriter) => void)[] = [
      (w) => w.bytes(Tag.MOUNT, new Uint8Array(7)),
      (w) => w.bytes(Tag.MOUNT, Buffer.concat([head(0, 0), Buffer.from('proc\0proc\0/proc\0')])), // three strings
      (w) => w.bytes(Tag.MOUNT, Buffer.concat([head(0, 0), Buffer.from('proc\0proc\0/proc\0\0x')])), // trailing byte
      (w) => w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', 'proc')), // relative destination
      (w) => w.bytes(Tag.MOUNT, mountRecord('', 'proc', '/proc')),
      (w) => w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', '/proc', '', MS_MOVE)),
      (w) => w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', '/proc', '', 1 << 30)),
      (w) => w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', '/proc', '', 0, MS_REC)),
      (w) => w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', '/proc', '', 0, MS_PRIVATE | MS_SLAVE)),
      (w) => w.bytes(Tag.MOUNT, mountRecord('bind', 'relative/source', '/x', '', MS_BIND)),
      (w) => w.bytes(Tag.MOUNT, mountRecord('virtiofs', '', '/x')),
      (w) => w.string(Tag.HOSTNAME, 'h'.repeat(65)),
      (w) => w.bytes(Tag.DOMAINNAME, Buffer.from('a\0b')),
      (w) => w.string(Tag.MASKED, 'relative'),
      (w) => w.string(Tag.READONLY, ''),
      (w) => w.string(Tag.SYSCTL, 'no-value'),
      (w) => w.string(Tag.SYSCTL, 'net/../../etc/passwd=1'),
      (w) => w.bytes(Tag.ROOTFS_RO, new Uint8Array(0)),
    ];
    for (const [i, b] of bad.entries()) {
      const before = agent.frames.length;
      setup(0, b);
      const f = await waitFor((x) => agent.frames.indexOf(x) >= before && (x.type === MsgType.ERROR || x.type === MsgType.SETUP_DONE), `answer ${i}`);
      expect(f.type, `case ${i}`).toBe(MsgType.ERROR);
      expect(attrInt(parseTlv(f.payload), Tag.ERRNO), `case ${i}`).toBe(EINVAL);
    }
    // an attribute that overruns the payload, and a SETUP with a non-zero id
    agent.sock.write(encodeFrame(MsgType.SETUP, 0, Uint8Array.of(28, 0, 255, 255, 255, 255)));
    setup(9, () => {});
    expect((await errorOf(9)).errno).toBe(EINVAL);

    const before = agent.frames.length;
    setup(0, (w) => {
      w.string(Tag.HOSTNAME, 'box').string(Tag.DOMAINNAME, 'example.org');
      w.bytes(Tag.MOUNT, mountRecord('proc', 'proc', '/proc', '', 2 | 4 | 8));
      w.bytes(Tag.MOUNT, mountRecord('tmpfs', 'tmpfs', '/dev', 'mode=755,size=65536k', 2 | (1 << 24)));
      w.bytes(Tag.MOUNT, mountRecord('devpts', 'devpts', '/dev/pts', 'newinstance,ptmxmode=0666,mode=0620,gid=5', 2 | 8));
      w.bytes(Tag.MOUNT, mountRecord('bind', '/run/husk/binds/m0', '/data', '', MS_BIND | MS_REC | 1, MS_PRIVATE | MS_REC));
      w.bytes(Tag.MOUNT, mountRecord('cgroup', 'cgroup', '/sys/fs/cgroup', '', 1 | 2 | 4 | 8));
      w.string(Tag.MASKED, '/proc/kcore').string(Tag.READONLY, '/proc/sys').string(Tag.SYSCTL, 'net.ipv4.ip_forward=1');
      w.u8(Tag.ROOTFS_RO, 1).bytes(999, Buffer.from('unknown tags are ignored'));
    });
    await waitFor((f) => agent.frames.indexOf(f) >= before && f.type === MsgType.SETUP_DONE, 'SETUP_DONE');
    const errors = agent.frames.slice(before).filter((f) => f.type === MsgType.ERROR);
    expect(errors).toEqual([]);
    // only once
    setup(0, () => {});
    await waitFor((f) => agent.frames.indexOf(f) > before && f.type === MsgType.ERROR && f.id === 0, 'second SETUP refused');
    run(21, ['echo', 'ok']);
    expect(await exitOf(21)).toBe(0);
    expect(output(21)).toBe('ok\n');
  });

  it('refuses SETUP after the first RUN', async () => {
    run(22, ['true']);
    expect(await exitOf(22)).toBe(0);
    setup(0, () => {});
    const e = await errorOf(0);
    expect(e.errno).toBe(EINVAL);
    expect(e.message).toMatch(/already runs processes/);
  });
});
