// Network benchmark: one private podman set-up and one bridge network, the
// same busybox containers run with husk and with runc in the same run:
//  - host -> container TCP throughput: the host streams BENCH_NET_MB MiB to
//    a sink in the container; timed from connect until the container has
//    read everything and closed (so nothing is left in buffers);
//  - container -> host: a source in the container sends to a host server on
//    the bridge gateway; timed at the host from the first to the last byte;
// The in-container endpoint is native/netbench (static, 1 MiB reads and
// writes), copied into the image both runtimes use. busybox nc moves 1 KiB
// per system call and needs a pipe to wc / from dd besides: under husk's
// emulated CPU (tcg) that measured the guest's system-call cost, not the
// network, while bulk transfers (iperf3, any real server) use large
// buffers; busybox `wc -c` alone, counting 64 MiB from a pipe in the guest,
// takes ~2 s there (a per-byte loop). BENCH_NET_TOOL=nc measures with busybox
// nc as before. 256 MiB per transfer by default (BENCH_NET_MB): at 64 MiB a
// runc transfer lasts ~30 ms and connection set-up weighs in the figure.
//  - request latency: TCP connect + HTTP GET of a small page from `httpd`
//    in the container (passt accepts on the container's behalf, so a bare
//    connect() would not reach the guest: a request-response does).
// Throughput samples alternate between runc and husk (runc, husk, runc, ...):
// the machine is shared and its speed drifts, and a runtime measured in one
// block would meet a different machine than the other.
// Prints JSON medians (BENCH_RUNS, default 5; BENCH_NET_REQUESTS latency
// samples, default 50) and husk/runc ratios. For profiling one part:
// BENCH_NET_ONLY=h2c|c2h|latency (comma-separated) runs only those parts,
// BENCH_NET_RUNTIMES=husk (or runc) only that runtime; the JSON then holds
// what ran, and the ratio and goal only when both runtimes ran every part.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle } from '../rootfs-builder/example-bundle.js';
import { projectRoot } from '../src/vmm/assets.js';
import { median, printJson, round } from './lib.js';
import { writePodmanConf } from '../test/helpers/podman-conf.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const MIB = Number(process.env.BENCH_NET_MB ?? 256);
const REQUESTS = Number(process.env.BENCH_NET_REQUESTS ?? 50);
const IMAGE = 'localhost/husk-busybox:latest';
const HUSK = path.join(projectRoot(), 'bin/husk');
const NET = `husk-bench-${process.pid}`;
const SUBNET_OCTET = 150 + (process.pid % 50);
const SINK_PORT = 5001;
const TOOL = process.env.BENCH_NET_TOOL ?? 'netbench';
const NETBENCH = path.join(projectRoot(), 'native/netbench/build/netbench');
const PARTS = new Set((process.env.BENCH_NET_ONLY ?? 'h2c,c2h,latency').split(','));
const RUNTIMES = (process.env.BENCH_NET_RUNTIMES ?? 'runc,husk').split(',');

interface Done { code: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<Done> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type Pm = (args: string[]) => Promise<Done>;

async function setup(work: string): Promise<Pm> {
  const backend = fs.existsSync('/usr/lib/podman/netavark') ? 'netavark' : 'cni';
  const conf = writePodmanConf(work, { husk: HUSK }, [
    '[network]',
    `network_backend = "${backend}"`,
    `network_config_dir = "${path.join(work, 'networks')}"`,
  ]);
  const env = { ...process.env, CONTAINERS_CONF: conf };
  const base = ['--root', path.join(work, 'storage'), '--runroot', path.join(work, 'run')];
  const pm: Pm = (args) => run('podman', [...base, ...args], env);
  const b = makeBusyboxBundle(path.join(work, 'image-src'), { args: ['sh'] });
  if (!fs.existsSync(NETBENCH)) throw new Error(`${NETBENCH} is missing: make -C native/netbench (scripts/setup.sh builds it)`);
  fs.copyFileSync(NETBENCH, path.join(b, 'rootfs/bin/netbench'));
  fs.chmodSync(path.join(b, 'rootfs/bin/netbench'), 0o755);
  const tar = path.join(work, 'busybox.tar');
  const t = await run('tar', ['-C', path.join(b, 'rootfs'), '-cf', tar, '.'], env);
  if (t.code !== 0) throw new Error(`tar: ${t.stderr}`);
  const imp = await pm(['import', '--change', 'CMD ["sh"]', tar, IMAGE]);
  if (imp.code !== 0) throw new Error(`podman import: ${imp.stderr}`);
  const n = await pm(['network', 'create', '--subnet', `10.213.${SUBNET_OCTET}.0/24`, NET]);
  if (n.code !== 0) throw new Error(`podman network create: ${n.stderr}`);
  return pm;
}

async function startContainer(pm: Pm, runtime: string, script: string): Promise<{ id: string; ip: string }> {
  const r = await pm(['run', '-d', '--runtime', runtime, '--network', NET, IMAGE, 'sh', '-c', script]);
  if (r.code !== 0) throw new Error(`podman run (${runtime}): ${r.stderr.trim()}`);
  const id = r.stdout.trim();
  const ip = (await pm(['inspect', '--format', `{{(index .NetworkSettings.Networks "${NET}").IPAddress}}`, id])).stdout.trim();
  return { id, ip };
}

/** Connects until the container's listener answers (passt accepts early; a reset means not yet). */
async function streamTo(ip: string, bytes: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const chunk = Buffer.alloc(256 * 1024, 0x5a);
    const t0 = performance.now();
    const s = net.connect(SINK_PORT, ip);
    let sent = 0;
    let failed = false;
    const pump = () => {
      while (sent < bytes) {
        const n = Math.min(chunk.byteLength, bytes - sent);
        sent += n;
        if (!s.write(n === chunk.byteLength ? chunk : chunk.subarray(0, n))) return void s.once('drain', pump);
      }
      s.end();
    };
    s.on('connect', pump);
    s.on('error', () => { failed = true; });
    s.on('close', () => resolve(failed ? undefined : performance.now() - t0));
    s.resume();
  });
}

/** One host -> container sample, in Mbit/s. */
async function hostToContainer(pm: Pm, runtime: string): Promise<number> {
  // nc: stdin kept open, busybox nc ends on the network's EOF, not on its stdin's.
  const c = await startContainer(pm, runtime, TOOL === 'nc' ? `sleep 100000 | nc -l -p ${SINK_PORT} | wc -c` : `exec netbench sink ${SINK_PORT}`);
  let ms: number | undefined;
  for (let tries = 0; tries < 200 && ms === undefined; tries++) {
    // A refused or reset stream means the sink is not listening yet: try again.
    ms = await streamTo(c.ip, MIB * 1024 * 1024);
    if (ms === undefined) await sleep(200);
  }
  if (ms === undefined) throw new Error(`${runtime}: the container never accepted`);
  // Count what the container read: a sink that closed early would time nothing.
  let count = '';
  for (let k = 0; k < 100 && !count; k++) {
    count = (await pm(['logs', c.id])).stdout.trim();
    if (!count) await sleep(100);
  }
  await pm(['rm', '-f', '-t', '0', c.id]);
  if (Number(count) !== MIB * 1024 * 1024) throw new Error(`${runtime}: the container read ${count || 'nothing'} of ${MIB * 1024 * 1024} bytes`);
  return (MIB * 8 * 1.048576) / (ms / 1000);
}

/** One container -> host sample, in Mbit/s. */
async function containerToHost(pm: Pm, runtime: string, gateway: string): Promise<number> {
  const got = Promise.withResolvers<number>();
  const server = net.createServer((s) => {
    let first = 0;
    let n = 0;
    s.on('data', (d) => { if (!first) first = performance.now(); n += d.byteLength; });
    s.on('end', () => { s.end(); if (n === MIB * 1024 * 1024) got.resolve(performance.now() - first); else got.reject(new Error(`${runtime}: got ${n} bytes`)); });
  });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, gateway, resolve); });
  const port = (server.address() as net.AddressInfo).port;
  const r = await pm(['run', '--rm', '--runtime', runtime, '--network', NET, IMAGE, 'sh', '-c',
    TOOL === 'nc' ? `dd if=/dev/zero bs=65536 count=${MIB * 16} 2>/dev/null | nc ${gateway} ${port}` : `exec netbench source ${gateway} ${port} ${MIB * 1024 * 1024}`]);
  server.close();
  if (r.code !== 0) throw new Error(`${runtime}: container -> host: exit ${r.code}: ${r.stderr.trim()}`);
  const ms = await got.promise;
  return (MIB * 8 * 1.048576) / (ms / 1000);
}

function get(url: string, agent: http.Agent): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, { agent, timeout: 5000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode === 200)); });
    req.on('error', () => resolve(false));
    req.on('timeout', () => { req.destroy(); resolve(false); });
  });
}

async function requestLatency(pm: Pm, runtime: string): Promise<number[]> {
  const c = await startContainer(pm, runtime, 'mkdir -p /www && echo ok > /www/i && exec httpd -f -p 80 -h /www');
  const agent = new http.Agent({ keepAlive: false });
  const url = `http://${c.ip}/i`;
  for (let i = 0; i < 300 && !(await get(url, agent)); i++) await sleep(200);
  const ms: number[] = [];
  for (let i = 0; i < REQUESTS; i++) {
    const t0 = performance.now();
    if (!(await get(url, agent))) throw new Error(`${runtime}: request failed`);
    ms.push(performance.now() - t0);
  }
  await pm(['rm', '-f', '-t', '0', c.id]);
  return ms;
}

async function main(): Promise<void> {
  if (TOOL !== 'netbench' && TOOL !== 'nc') throw new Error(`BENCH_NET_TOOL must be netbench or nc, not ${TOOL}`);
  for (const p of PARTS) if (!['h2c', 'c2h', 'latency'].includes(p)) throw new Error(`BENCH_NET_ONLY: unknown part ${p} (h2c, c2h, latency)`);
  for (const rt of RUNTIMES) if (rt !== 'husk' && rt !== 'runc') throw new Error(`BENCH_NET_RUNTIMES: unknown runtime ${rt} (husk, runc)`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-bench-net-'));
  let pm: Pm | undefined;
  try {
    pm = await setup(work);
    const gateway = `10.213.${SUBNET_OCTET}.1`;
    const result: Record<string, Record<string, number>> = {};
    const samples: Record<string, number[]> = {};
    // Samples alternate between the runtimes (runc, husk, runc, husk, ...) so that both
    // meet the same moments of a noisy machine; the bridge (and the gateway
    // address) exists once a container is attached.
    const keep = await Promise.all(RUNTIMES.map((rt) => startContainer(pm!, rt, 'exec sleep 100000')));
    const parts: [string, string, (rt: string) => Promise<number>][] = [
      ['h2c', 'hostToContainerMbps', (rt) => hostToContainer(pm!, rt)],
      ['c2h', 'containerToHostMbps', (rt) => containerToHost(pm!, rt, gateway)],
    ];
    for (const [part, key, measure] of parts) {
      if (!PARTS.has(part)) continue;
      for (let i = 0; i < RUNS; i++) {
        for (const rt of RUNTIMES) (samples[`${rt}.${key}`] ??= []).push(round(await measure(rt)));
      }
    }
    for (const rt of RUNTIMES) {
      const r: Record<string, number> = {};
      for (const [, key] of parts) if (samples[`${rt}.${key}`]) r[key] = round(median(samples[`${rt}.${key}`]!));
      if (PARTS.has('latency')) r.requestLatencyMs = round(median(await requestLatency(pm, rt)), 2);
      result[rt] = r;
    }
    for (const k of keep) await pm(['rm', '-f', '-t', '0', k.id]);
    const h = result.husk;
    const r = result.runc;
    const complete = h && r && ['h2c', 'c2h', 'latency'].every((p) => PARTS.has(p));
    printJson({
      runs: RUNS, mib: MIB, requests: REQUESTS, engine: 'tcg', network: 'podman bridge', tool: TOOL === 'nc' ? 'busybox nc' : 'netbench (1 MiB buffers)',
      ...result,
      ...(complete ? {
        ratio: {
          hostToContainer: round(h.hostToContainerMbps! / r.hostToContainerMbps!, 3),
          containerToHost: round(h.containerToHostMbps! / r.containerToHostMbps!, 3),
          requestLatency: round(h.requestLatencyMs! / r.requestLatencyMs!, 2),
        },
        goal: { text: 'TCP throughput at least 30% of runc (ratio >= 0.3 both ways)', met: h.hostToContainerMbps! / r.hostToContainerMbps! >= 0.3 && h.containerToHostMbps! / r.containerToHostMbps! >= 0.3 },
      } : {}),
      samples,
    });
  } finally {
    if (pm) {
      await pm(['rm', '-af', '-t', '0']);
      await pm(['network', 'rm', '-f', NET]);
      await pm(['system', 'reset', '-f']);
    }
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`bench/net: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
