// Late-bound device backends in a real VM (tcg engine: QEMU runs the CPU,
// husk's backends serve vhost-user from their workers): a virtio-fs device
// started `deferred` is probed by the guest kernel at boot, answers errors
// while it has nothing to serve, and serves bind sources once
// Vm.configureDevice gave them. The agent mounts only the rootfs here
// (no husk.binds= on the command line); the guest mounts the deferred
// device itself through processes the agent runs. Likewise a virtio-net
// device started without its wire drops what the guest sends until it is
// handed the socket of a real passt, and from then on carries a TCP
// connection from the guest to a server on this host.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { bundle, scratch } from '../helpers/husk.js';
import { Vm } from '../../src/vmm/vm.js';
import { guestAssets } from '../../src/vmm/assets.js';
import { guestCmdline } from '../../src/vmm/cmdline.js';
import { AgentConnection } from '../../src/agent/client.js';
import type { DeviceSpec } from '../../src/vmm/devices/factory.js';
import { readNamespace } from '../../src/runtime/network.js';
import { socketPair } from '../../src/sys/unix-socket.js';
import { closeFd } from '../../src/sys/io.js';
import { spawn } from 'node:child_process';

const AGENT_PORT = 1024;
const BOOT_TIMEOUT_MS = 180_000;

let tmp: ReturnType<typeof scratch>;
beforeAll(() => { tmp = scratch('husk-late-'); });
afterAll(() => tmp.cleanup());

/** Runs `sh -c script` in the guest (chrooted in the rootfs, as root); its status and output. */
async function sh(agent: AgentConnection, script: string): Promise<{ status: number; out: string }> {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (d: Buffer) => chunks.push(d));
  const p = agent.run({ args: ['/bin/sh', '-c', script], env: ['PATH=/bin'], cwd: '/' }, out, out);
  const { status } = await p.exited;
  await new Promise((r) => setImmediate(r));
  return { status, out: Buffer.concat(chunks).toString() };
}

interface Booted { vm: Vm; agent: AgentConnection; logs: string[]; diag: () => string; stop: () => Promise<void> }

/** Boots the busybox rootfs (device 0) and vsock (device 1) plus `extra` (devices 2..), and waits for the agent. */
async function boot(name: string, extra: DeviceSpec[]): Promise<Booted> {
  const dir = path.join(tmp.dir, name);
  const b = bundle(path.join(dir, 'bundle'), { args: ['sh'] });
  const socketDir = path.join(dir, 's');
  fs.mkdirSync(socketDir);
  const vsockBase = path.join(socketDir, 'vsock');
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(`${vsockBase}_${AGENT_PORT}`, resolve); });
  const logs: string[] = [];
  const assets = guestAssets();
  const consoleLog = path.join(dir, 'console.log');
  const agentReady = AgentConnection.accept(server, BOOT_TIMEOUT_MS);
  const vm = Vm.start({
    stateDir: socketDir,
    kernel: assets.kernel,
    initrd: assets.initrd,
    cmdline: guestCmdline({ rootfsTag: 'rootfs', agentPort: AGENT_PORT }),
    vcpus: 1,
    memoryMiB: 256,
    consoleLog,
    engine: 'tcg',
    devices: [
      { kind: 'fs', tag: 'rootfs', root: path.join(b, 'rootfs'), readonly: false },
      { kind: 'vsock', guestCid: 3, udsPath: vsockBase },
      ...extra,
    ],
  }, (m) => logs.push(m));
  const diag = () => `vmm log:\n${logs.join('\n')}\nconsole tail:\n${fs.existsSync(consoleLog) ? fs.readFileSync(consoleLog, 'latin1').slice(-3000) : ''}`;
  let agent: AgentConnection | undefined;
  const stop = async () => {
    try { agent?.poweroff(); } catch { /* gone */ }
    await vm.stop(5000);
    agent?.close();
    server.close();
  };
  try {
    agent = await Promise.race([agentReady, vm.engine.exited.then((e): never => { throw new Error(`VM exited (${e.signal ?? e.code})\n${diag()}`); })]);
  } catch (err) {
    await stop();
    throw err;
  }
  return { vm, agent, logs, diag, stop };
}

describe('late device configuration in a real VM (tcg)', () => {
  it('a deferred virtio-fs device answers errors, then serves the exports configureDevice gave it', async () => {
    const data = path.join(tmp.dir, 'data');
    fs.mkdirSync(data);
    fs.writeFileSync(path.join(data, 'file'), 'late bound\n');
    const { vm, agent, diag, stop } = await boot('fs', [{ kind: 'fs', tag: 'binds', deferred: true }]);
    try {
      // Before configure: the guest's mount gets no working file system; nothing crashed.
      const before = await sh(agent, 'mkdir -p /tmp/early && mount -t virtiofs binds /tmp/early; ls /tmp/early >/dev/null 2>&1; echo ls=$?; umount /tmp/early 2>/dev/null; echo done');
      expect(before.out, diag()).toMatch(/ls=[1-9]/);
      expect(before.out, diag()).toMatch(/done/);
      const early = (await vm.deviceStats()).fs2!;
      expect(early.unconfigured, diag()).toBeGreaterThan(0);
      expect(early.INIT ?? 0).toBe(0);

      // Refusals leave everything as it was.
      await expect(vm.configureDevice(1, { kind: 'fs', root: data })).rejects.toThrow(/device 1 is vsock, not fs/);
      await expect(vm.configureDevice(0, { kind: 'fs', root: data })).rejects.toThrow(/configured already/);
      await expect(vm.configureDevice(3, { kind: 'fs', root: data })).rejects.toThrow(/no device 3/);

      await vm.configureDevice(2, { kind: 'fs', exports: [{ name: 'data', path: data, readonly: true }] });
      const after = await sh(agent, 'mkdir -p /tmp/b && mount -t virtiofs binds /tmp/b && cat /tmp/b/data/file && ls /tmp/b && { (echo x > /tmp/b/data/new) 2>/dev/null; echo write=$?; }');
      expect(after.status, `${after.out}\n${diag()}`).toBe(0);
      expect(after.out).toBe('late bound\ndata\nwrite=1\n');
      expect(fs.existsSync(path.join(data, 'new'))).toBe(false);
      const served = (await vm.deviceStats()).fs2!;
      expect(served.INIT, diag()).toBeGreaterThanOrEqual(1);
      expect(served.READ).toBeGreaterThan(0);

      // Configured and mounted: a second configure is refused, the guest keeps its tree.
      await expect(vm.configureDevice(2, { kind: 'fs', root: tmp.dir })).rejects.toThrow(/configured already/);
      expect((await sh(agent, 'cat /tmp/b/data/file')).out).toBe('late bound\n');
    } finally {
      await stop();
    }
  }, BOOT_TIMEOUT_MS + 60_000);

  it('a virtio-net device without a wire drops guest frames, then carries TCP through a real passt once attached', async () => {
    // The guest copies this host's interface, as passt expects; passt maps the gateway to the host's loopback.
    const t = await readNamespace(undefined);
    const v4 = t?.addresses.find((a) => a.family === 4);
    const gw = t?.routes.find((r) => r.family === 4 && r.prefix === 0 && r.gateway)?.gateway;
    expect(v4 && gw, 'this host has an IPv4 default route').toBeTruthy();
    const received: string[] = [];
    const server = net.createServer((c) => {
      c.on('data', (d) => { received.push(d.toString()); c.end('pong\n'); });
      c.on('error', () => {});
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as net.AddressInfo).port;

    const { vm, agent, diag, stop } = await boot('net', [{ kind: 'net', fd: -1, mac: '02:42:ac:11:00:02', mtu: 1500 }]);
    let passt: ReturnType<typeof spawn> | undefined;
    const passtLog: string[] = [];
    try {
      const up = `ip link set eth0 up && ip addr add ${v4!.address}/${v4!.prefix} dev eth0 && ip route add default via ${gw}`;
      const before = await sh(agent, `${up} && cat /sys/class/net/eth0/carrier && { ping -c 2 -W 1 ${gw} >/dev/null 2>&1; echo ping=$?; }`);
      // link up (carrier 1), but nothing answers: no wire yet
      expect(before.out, diag()).toBe('1\nping=1\n');
      const unwired = (await vm.deviceStats()).net2!;
      expect(unwired.txUnattached, diag()).toBeGreaterThan(0);
      expect(unwired.txFrames).toBe(0);
      expect(unwired.rxFrames).toBe(0);

      const [deviceFd, passtFd] = socketPair();
      try {
        passt = spawn('passt', ['-f', '-q', '-1', '--runas', '65534:65534', '--fd', '3', '-i', t!.ifname, '-m', '1500', '-t', 'none', '-u', 'none'], {
          stdio: ['ignore', 'pipe', 'pipe', passtFd],
        });
        passt.stdout!.on('data', (d) => passtLog.push(String(d)));
        passt.stderr!.on('data', (d) => passtLog.push(String(d)));
      } finally {
        closeFd(passtFd);
      }
      // A device with a wire refuses another; the caller keeps that fd.
      const [spare, sparePeer] = socketPair();
      await vm.configureDevice(2, { kind: 'net', fd: deviceFd });
      await expect(vm.configureDevice(2, { kind: 'net', fd: spare })).rejects.toThrow(/attached to passt already/);
      closeFd(spare);
      closeFd(sparePeer);

      // The unanswered pings left the gateway's neighbour entry FAILED (connects would get
      // EHOSTUNREACH until it expires): forget it. stdin stays open until the reply came:
      // the guest does not half-close first (as in network.test.ts).
      const after = await sh(agent, `ip neigh flush dev eth0 >/dev/null 2>&1; (echo ping; sleep 5) | timeout 60 nc ${gw} ${port}`);
      expect(after.out, `${diag()}\npasst: ${passtLog.join('')}`).toBe('pong\n');
      expect(received.join('')).toBe('ping\n');
      const wired = (await vm.deviceStats()).net2!;
      expect(wired.txFrames).toBeGreaterThan(0);
      expect(wired.rxFrames).toBeGreaterThan(0);
      expect(wired.linkDown).toBe(0);
    } finally {
      await stop();
      server.close();
      if (passt && passt.exitCode === null && passt.signalCode === null) {
        // -1: passt quits once the device's end closed (the VM stopped); make sure.
        const exited = new Promise((r) => passt!.once('exit', r));
        passt.kill('SIGTERM');
        await exited;
      }
    }
  }, BOOT_TIMEOUT_MS + 60_000);
});
