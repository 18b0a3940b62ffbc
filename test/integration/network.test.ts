// Networking with real podman networks (netavark: a bridge + veth in a
// namespace podman hands to the runtime, aardvark-dns for names):
// the guest's eth0 copies the namespace, passt carries the traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { bundle, husk, scratch, uniqueId } from '../helpers/husk.js';
import { IMAGE, httpGet, setupPodman, type Podman } from '../helpers/podman.js';
import { guestTcpRmem } from '../../src/runtime/guest-net.js';
import { DEFAULT_MEMORY_MIB } from '../../src/runtime/resources.js';

let tmp: ReturnType<typeof scratch>;
let pm: Podman;
const NET = `husk-net-${process.pid}`;
// A subnet of our own, away from podman's default 10.88.0.0/16.
const SUBNET_OCTET = 100 + (process.pid % 100);
const SUBNET = `10.213.${SUBNET_OCTET}.0/24`;
const HOST_PORT = 18080;
let gateway = '';
let serverId = '';
let serverIp = '';

const out = (r: { stdout?: unknown }) => String(r.stdout ?? '');
const err = (r: { stderr?: unknown }) => String(r.stderr ?? '');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it gives a value; a generous bound (boots are slow on a loaded machine), not a timing claim. */
async function waitFor<T>(what: string, f: () => Promise<T | undefined>, limitMs = 120_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    const v = await f();
    if (v !== undefined) return v;
    await sleep(200);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function stateOf(id: string): { husk: { passtPid?: number; socketDir: string; networkError?: string } } {
  return JSON.parse(fs.readFileSync(path.join('/run/husk', id, 'state.json'), 'utf8'));
}

beforeAll(async () => {
  tmp = scratch('husk-net-');
  // DESIGN.md §3: podman's networks here are netavark bridges (scripts/setup.sh installs it).
  expect(fs.existsSync('/usr/lib/podman/netavark'), 'netavark is not installed').toBe(true);
  pm = await setupPodman(path.join(tmp.dir, 'podman'), [
    '[network]',
    'network_backend = "netavark"',
    `network_config_dir = "${path.join(tmp.dir, 'networks')}"`,
  ]);
  const c = await pm.run(['network', 'create', '--subnet', SUBNET, NET]);
  expect(c.exitCode, err(c)).toBe(0);
  gateway = out(await pm.run(['network', 'inspect', NET, '--format', '{{(index .Subnets 0).Gateway}}'])).trim();
  expect(gateway).toBe(`10.213.${SUBNET_OCTET}.1`);
});

afterAll(async () => {
  await pm?.run(['rm', '-af', '-t', '0']);
  await pm?.run(['network', 'rm', '-f', NET]);
  await pm?.cleanup();
  tmp?.cleanup();
});

describe('podman networks with --runtime husk', () => {
  it('gives eth0 the address podman assigned and serves a published port (80 inside, privileged) on 127.0.0.1', async () => {
    const r = await pm.run(['run', '-d', '--name', 'web', '--network', NET, '-p', `${HOST_PORT}:80`, IMAGE, 'sh', '-c',
      'mkdir -p /www && echo page-from-husk > /www/index.html && ip -4 -o addr show dev eth0 && exec httpd -f -p 80 -h /www']);
    expect(r.exitCode, err(r)).toBe(0);
    serverId = out(r).trim();
    serverIp = out(await pm.run(['inspect', '--format', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, serverId])).trim();
    expect(serverIp).toMatch(new RegExp(`^10\\.213\\.${SUBNET_OCTET}\\.\\d+$`));
    const line = await waitFor('ip addr output', async () => {
      const l = out(await pm.run(['logs', serverId]));
      return l.includes('eth0') ? l : undefined;
    });
    expect(line).toContain(`inet ${serverIp}/24`);
    const body = await waitFor('the published port', () => httpGet(`http://127.0.0.1:${HOST_PORT}/index.html`));
    expect(body).toBe('page-from-husk\n');
  });

  it('reaches a server on the host at the bridge gateway, both ways', async () => {
    const seen: string[] = [];
    const server = net.createServer((s) => {
      s.once('data', (d) => { seen.push(`${s.remoteAddress} ${String(d).trim()}`); s.end(`pong:${String(d).trim()}\n`); });
    });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, gateway, resolve); });
    const port = (server.address() as net.AddressInfo).port;
    try {
      // stdin stays open until the reply came: the guest does not half-close first. Even so, this
      // passt (Debian 0.0~git20230309, README) now and then never forwards the server's FIN under
      // load: `-w 10` makes nc give up 10 s after its input ended instead of waiting for ever.
      // Every case here checks the reply, which has come by then.
      const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'sh', '-c', `(echo ping-from-guest; sleep 5) | nc -w 10 ${gateway} ${port}`]);
      // (stderr is not checked: podman 4.3's `run --rm` sometimes races for the exit code under load)
      expect(out(r), err(r)).toBe('pong:ping-from-guest');
      expect(seen).toHaveLength(1);
      // The host sees the container's own address, as with runc.
      expect(seen[0]).toMatch(new RegExp(`^(::ffff:)?10\\.213\\.${SUBNET_OCTET}\\.\\d+ ping-from-guest$`));
    } finally {
      server.close();
    }
  });

  it('guest TCP retransmits on passt\'s time scale, not after Linux\'s 200 ms floor, on the connected and the default route', async () => {
    // The host sends NET_RTO_MIN: every route of eth0, the agent's own prefix route included,
    // carries rto_min. /proc/net/tcp shows each socket's RTO in 1/100 s: Linux never goes
    // below 20 (200 ms) without the metric; the configured 100 ms gives about 10.
    const other = Object.values(os.networkInterfaces()).flat()
      .find((a) => a && a.family === 'IPv4' && !a.internal && !a.address.startsWith(`10.213.${SUBNET_OCTET}.`))?.address;
    expect(other, 'the host needs an IPv4 address outside the test network').toBeDefined();
    const held: net.Socket[] = [];
    const server = net.createServer((s) => { held.push(s); });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '0.0.0.0', resolve); });
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'sh', '-c',
        `sleep 30 | nc ${gateway} ${port} & sleep 30 | nc ${other} ${port} & ` +
        `while [ "$(awk '$4 == "01"' /proc/net/tcp | wc -l)" -lt 2 ]; do sleep 0.2; done; cat /proc/net/tcp`]);
      expect(r.exitCode, err(r)).toBe(0);
      const portHex = port.toString(16).toUpperCase().padStart(4, '0');
      const rtos = out(r).split('\n').map((l) => l.trim().split(/\s+/))
        .filter((f) => f[3] === '01' && f[2]?.endsWith(`:${portHex}`)).map((f) => Number(f[12]));
      expect(rtos).toHaveLength(2);
      for (const rto of rtos) expect(rto).toBeLessThan(20);
    } finally {
      for (const s of held) s.destroy();
      server.close();
    }
  });

  it('lets guest TCP sockets buffer more for passt (bounded by the namespace), and the container\'s own sysctl wins', async () => {
    // A runc container in the same namespace could use up to the namespace's tcp_rmem maximum.
    const nsMax = Number(fs.readFileSync('/proc/sys/net/ipv4/tcp_rmem', 'utf8').trim().split(/\s+/)[2]);
    const expected = guestTcpRmem(DEFAULT_MEMORY_MIB, nsMax);
    expect(expected, `tcp_rmem maximum ${nsMax} here leaves nothing to raise`).toBeDefined();
    const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'cat', '/proc/sys/net/ipv4/tcp_rmem']);
    expect(out(r).trim().split(/\s+/).join(' '), err(r)).toBe(expected);
    const own = await pm.run(['run', '--rm', '--network', NET, '--sysctl', 'net.ipv4.tcp_rmem=4096 65536 1048576', IMAGE, 'cat', '/proc/sys/net/ipv4/tcp_rmem']);
    expect(out(own).trim().split(/\s+/).join(' '), err(own)).toBe('4096 65536 1048576');
  });

  it('bulk data crosses intact both ways with checksum offload negotiated by the guest', async () => {
    // The device marks passt's frames DATA_VALID and completes the guest's partial checksums:
    // 8 MiB of random bytes each way must arrive unchanged.
    const SIZE = 8 << 20;
    const sha = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
    // host -> container: the bench's pattern (busybox nc ends on the network's EOF while its stdin stays open)
    const sink = await pm.run(['run', '-d', '--network', NET, IMAGE, 'sh', '-c',
      'cat /sys/class/net/eth0/device/features; sleep 100000 | nc -l -p 5002 | sha256sum']);
    expect(sink.exitCode, err(sink)).toBe(0);
    const id = out(sink).trim();
    const ip = out(await pm.run(['inspect', '--format', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, id])).trim();
    const down = crypto.randomBytes(SIZE);
    let logs = '';
    await waitFor('the container to read the stream', async () => {
      await new Promise<void>((resolve) => {
        const s = net.connect(5002, ip, () => s.end(down));
        s.on('error', () => resolve());
        s.on('close', () => resolve());
        s.resume();
      });
      logs = out(await pm.run(['logs', id])).trim();
      return logs.split('\n').length >= 2 ? logs : undefined;
    });
    const [features, downSum] = logs.split('\n').map((l) => l.trim().split(/\s+/)[0]!);
    // virtio feature bits 0 (CSUM) and 1 (GUEST_CSUM), as the guest kernel accepted them
    expect(features?.slice(0, 2)).toBe('11');
    expect(downSum).toBe(sha(down));

    // container -> host: the guest leaves checksums partial, the device completes them
    let got: Buffer[] = [];
    const server = net.createServer((s) => {
      got = [];
      s.on('data', (d) => got.push(d));
      s.on('end', () => s.end());
      s.on('error', () => {});
    });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, gateway, resolve); });
    const port = (server.address() as net.AddressInfo).port;
    try {
      const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'sh', '-c',
        `head -c ${SIZE} /dev/urandom > /tmp/d && sha256sum /tmp/d && nc ${gateway} ${port} < /tmp/d`]);
      const upSum = out(r).trim().split(/\s+/)[0];
      const up = Buffer.concat(got);
      expect(up.byteLength, err(r)).toBe(SIZE);
      expect(sha(up)).toBe(upSum);
    } finally {
      server.close();
      // removed only now: the bridge (and the gateway's address) lives while a container is attached
      await pm.run(['rm', '-f', '-t', '0', id]);
    }
  });

  it('reaches a second container on the same network by IP and by name (aardvark-dns)', async () => {
    expect(serverIp).not.toBe('');
    const r = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'sh', '-c',
      `(printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n'; sleep 5) | nc -w 10 ${serverIp} 80`]);
    expect(out(r), err(r)).toMatch(/^HTTP\/1\.[01] 200 OK/);
    expect(out(r)).toContain('page-from-husk');
    const n = await pm.run(['run', '--rm', '--network', NET, IMAGE, 'nslookup', 'web']);
    expect(out(n), err(n)).toContain(serverIp);
  });

  it('--network container:web joins web\'s namespace, never the host\'s: same address, outbound works, web keeps its port', async () => {
    // The VMM stands for the container on the host: podman names /proc/PID/ns/net of it for container:web.
    const pid = Number(out(await pm.run(['inspect', '--format', '{{.State.Pid}}', serverId])).trim());
    const sandboxKey = out(await pm.run(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', serverId])).trim();
    expect(fs.readlinkSync(`/proc/${pid}/ns/net`)).toBe(`net:[${fs.statSync(sandboxKey).ino}]`);
    const server = net.createServer((s) => { s.once('data', (d) => s.end(`pong:${String(d).trim()}\n`)); });
    await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, gateway, resolve); });
    const port = (server.address() as net.AddressInfo).port;
    try {
      // Two passts share web's namespace here, and now and then (2 of ~10 runs) the sidecar's first
      // connection got no reply with Debian's passt; a second container is given one more try.
      let r;
      for (let attempt = 0; attempt < 2; attempt++) {
        r = await pm.run(['run', '--rm', '--network', 'container:web', IMAGE, 'sh', '-c',
          `ip -4 -o addr show dev eth0; (echo sidecar; sleep 5) | nc -w 10 ${gateway} ${port}`]);
        expect(out(r), err(r)).toContain(`inet ${serverIp}/24`);
        if (out(r).includes('pong:sidecar')) break;
      }
      expect(out(r!)).toContain('pong:sidecar');
    } finally {
      server.close();
    }
    // The second VM's passt forwards no inbound ports (they are web's): web still answers.
    expect(await httpGet(`http://127.0.0.1:${HOST_PORT}/index.html`)).toBe('page-from-husk\n');
  });

  it('hooks run in the runtime\'s network namespace while the state\'s pid is in the container\'s', async () => {
    const sandboxKey = out(await pm.run(['inspect', '--format', '{{.NetworkSettings.SandboxKey}}', serverId])).trim();
    const b = bundle(path.join(tmp.dir, 'hooks-netns'), { args: ['true'] });
    const seen = path.join(tmp.dir, 'hooks-netns.txt');
    const hook = path.join(tmp.dir, 'netns-hook.sh');
    fs.writeFileSync(hook, `#!/bin/sh\npid=$(sed 's/.*"pid":\\([0-9]*\\).*/\\1/')\necho "$1 $(readlink /proc/self/ns/net) $(readlink /proc/$pid/ns/net)" >> ${seen}\n`, { mode: 0o755 });
    const cfgPath = path.join(b, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.linux.namespaces = cfg.linux.namespaces.map((n: { type: string }) => (n.type === 'network' ? { type: 'network', path: sandboxKey } : n));
    cfg.hooks = { prestart: [{ path: hook, args: [hook, 'prestart'] }], poststart: [{ path: hook, args: [hook, 'poststart'] }] };
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = await husk(path.join(tmp.dir, 'husk-root'), ['run', '--bundle', b, uniqueId('hooks-netns')]);
    expect(r.exitCode, String(r.stderr)).toBe(0);
    const mine = fs.readlinkSync('/proc/self/ns/net');
    const container = `net:[${fs.statSync(sandboxKey).ino}]`;
    expect(fs.readFileSync(seen, 'utf8')).toBe(`prestart ${mine} ${container}\npoststart ${mine} ${container}\n`);
  });

  it('no network namespace in config.json (runc: the host\'s): the guest gets the host\'s address and reaches host servers', async () => {
    const route = JSON.parse(execFileSync('ip', ['-j', '-4', 'route', 'show', 'default'], { encoding: 'utf8' }))[0];
    const hostAddr = JSON.parse(execFileSync('ip', ['-j', '-4', 'addr', 'show', 'dev', route.dev], { encoding: 'utf8' }))[0]
      .addr_info.find((a: { scope: string }) => a.scope === 'global');
    const server = net.createServer((s) => { s.once('data', (d) => s.end(`pong:${String(d).trim()}\n`)); });
    await new Promise<void>((resolve) => server.listen(0, gateway, resolve));
    const port = (server.address() as net.AddressInfo).port;
    const b = bundle(path.join(tmp.dir, 'hostns'), { args: ['sh', '-c',
      `ip -4 -o addr show dev eth0 scope global; (echo hostns; sleep 5) | nc -w 10 ${gateway} ${port}`] });
    const cfgPath = path.join(b, 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.linux.namespaces = cfg.linux.namespaces.filter((n: { type: string }) => n.type !== 'network');
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    try {
      const r = await husk(path.join(tmp.dir, 'husk-root'), ['run', '--bundle', b, uniqueId('hostns')], { encoding: 'utf8' });
      expect(String(r.stderr)).toBe('');
      expect(String(r.stdout)).toContain(`inet ${hostAddr.local}/${hostAddr.prefixlen}`);
      expect(String(r.stdout)).toContain('pong:hostns');
      expect(r.exitCode).toBe(0);
    } finally {
      server.close();
    }
  });

  it('--network none gives the guest only lo', async () => {
    const r = await pm.run(['run', '--rm', '--network', 'none', IMAGE, 'sh', '-c', 'ls /sys/class/net; ip -o addr']);
    expect(out(r).split('\n')[0], err(r)).toBe('lo');
    expect(out(r)).not.toContain('eth0');
    expect(out(r)).toContain('inet 127.0.0.1/8');
  });

  it('rm -f leaves no passt process and no socket behind', async () => {
    const st = stateOf(serverId);
    const pid = st.husk.passtPid!;
    expect(pid).toBeGreaterThan(0);
    expect(fs.readFileSync(`/proc/${pid}/comm`, 'utf8')).toMatch(/^passt/);
    expect(fs.existsSync(st.husk.socketDir)).toBe(true);
    expect((await pm.run(['rm', '-f', '-t', '0', serverId])).exitCode).toBe(0);
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    expect(fs.existsSync(st.husk.socketDir)).toBe(false);
    expect(fs.existsSync(path.join('/run/husk', serverId))).toBe(false);
    expect(await httpGet(`http://127.0.0.1:${HOST_PORT}/index.html`)).toBeUndefined();
  });

  it('a passt that dies is reported in vmm.log and the state; the container keeps running', async () => {
    const r = await pm.run(['run', '-d', '--network', NET, IMAGE, 'sleep', '1000']);
    expect(r.exitCode, err(r)).toBe(0);
    const id = out(r).trim();
    const pid = await waitFor('passt pid', async () => {
      try { return stateOf(id).husk.passtPid; } catch { return undefined; }
    });
    process.kill(pid, 'SIGKILL');
    const st = await waitFor('the state to record it', async () => stateOf(id).husk.networkError ? stateOf(id) : undefined);
    expect(st.husk.networkError).toMatch(/^passt \(pid \d+\) exited \(SIGKILL\)/);
    expect(fs.readFileSync(path.join('/run/husk', id, 'vmm.log'), 'utf8')).toMatch(/passt \(pid \d+\) exited \(SIGKILL\)/);
    expect(out(await pm.run(['inspect', '--format', '{{.State.Status}}', id])).trim()).toBe('running');
    expect((await pm.run(['rm', '-f', '-t', '0', id])).exitCode).toBe(0);
    expect(fs.existsSync(path.join('/run/husk', id))).toBe(false);
  });
  it('IPv6: a dual-stack network gives eth0 podman\'s IPv6 address, and the gateway answers over IPv6', async () => {
    const net6 = `${NET}-6`;
    const c = await pm.run(['network', 'create', '--subnet', `10.214.${SUBNET_OCTET}.0/24`, '--subnet', `fd00:214:${SUBNET_OCTET}::/64`, net6]);
    expect(c.exitCode, err(c)).toBe(0);
    const gw6 = `fd00:214:${SUBNET_OCTET}::1`;
    const r = await pm.run(['run', '-d', '--network', net6, IMAGE, 'sh', '-c', 'ip -6 -o addr show dev eth0 scope global; exec sleep 1000']);
    expect(r.exitCode, err(r)).toBe(0);
    const id = out(r).trim();
    try {
      const ip6 = out(await pm.run(['inspect', '--format', `{{(index .NetworkSettings.Networks "${net6}").GlobalIPv6Address}}`, id])).trim();
      expect(ip6).toMatch(new RegExp(`^fd00:214:${SUBNET_OCTET}::[0-9a-f]+$`));
      const logs = await waitFor('ip -6 output', async () => {
        const l = out(await pm.run(['logs', id]));
        return l.includes('inet6') ? l : undefined;
      });
      expect(logs).toContain(`inet6 ${ip6}/64`);
      const server = net.createServer((s) => { s.once('data', (d) => s.end(`pong6:${String(d).trim()}\n`)); });
      // The bridge's address is tentative (duplicate address detection) for a moment.
      await waitFor('the IPv6 gateway address', () => new Promise<true | undefined>((resolve) => {
        server.once('error', () => resolve(undefined));
        server.listen(0, gw6, () => resolve(true));
      }));
      const port = (server.address() as net.AddressInfo).port;
      try {
        const g = await pm.run(['run', '-d', '--network', net6, IMAGE, 'sh', '-c', `(echo v6; sleep 5) | nc -w 10 ${gw6} ${port}`]);
        expect(g.exitCode, err(g)).toBe(0);
        const client = out(g).trim();
        await pm.run(['wait', client]);
        expect(out(await pm.run(['logs', client])).trim()).toBe('pong6:v6');
        await pm.run(['rm', '-f', '-t', '0', client]);
      } finally {
        server.close();
      }
    } finally {
      await pm.run(['rm', '-f', '-t', '0', id]);
      await pm.run(['network', 'rm', net6]);
    }
  });
});
