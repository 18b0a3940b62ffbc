// runc's pause, resume, update and events verbs (the VM is frozen as a
// whole; resources and stats are the container's cgroup inside the guest).
import fs from 'node:fs';
import type { Command } from 'commander';
import { globalOptions } from './main.js';
import type { LinuxResources } from '../oci/spec.js';

const verbs = () => import('../runtime/vm-verbs.js');

/** A byte size as runc takes it: a number with an optional b/k/m/g/t suffix (binary units); -1 = unlimited. */
export function parseBytes(v: string): number {
  const m = /^(-1|\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(v.trim());
  if (!m) throw new Error(`invalid value for a size: ${v}`);
  if (m[1] === '-1') return -1;
  const pow = ' kmgtp'.indexOf((m[2] || ' ').toLowerCase());
  const n = Math.floor(Number(m[1]) * 1024 ** pow);
  if (!Number.isSafeInteger(n)) throw new Error(`invalid value for a size: ${v}`);
  return n;
}

function parseInteger(v: string): number {
  if (!/^-?\d+$/.test(v.trim())) throw new Error(`invalid number: ${v}`);
  return Number(v);
}

/** A Go duration such as 5s, 500ms, 1m30s. */
export function parseDuration(v: string): number {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  let ms = 0;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(v))) { ms += Number(m[1]) * unit[m[2]!]!; end = re.lastIndex; }
  if (end !== v.length || v.length === 0) throw new Error(`invalid duration: ${v}`);
  if (ms <= 0) throw new Error('duration for stats must be greater than 0');
  return ms;
}

interface UpdateFlags {
  resources?: string;
  blkioWeight?: string; cpuPeriod?: string; cpuQuota?: string; cpuShare?: string;
  cpuRtPeriod?: string; cpuRtRuntime?: string; cpusetCpus?: string; cpusetMems?: string;
  kernelMemory?: string; kernelMemoryTcp?: string; memory?: string; memoryReservation?: string;
  memorySwap?: string; pidsLimit?: string; l3CacheSchema?: string; memBwSchema?: string;
}

/** The resources an `update` call asks for: the file (or stdin) wins over flags, as in runc. */
export function updateResources(o: UpdateFlags): LinuxResources {
  if (o.resources !== undefined) {
    let text: string;
    try {
      text = fs.readFileSync(o.resources === '-' ? 0 : o.resources, 'utf8');
    } catch (err) {
      throw new Error(`open ${o.resources}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
    }
    let r: unknown;
    try {
      r = JSON.parse(text);
    } catch (err) {
      throw new Error(`decoding resources: ${(err as Error).message}`);
    }
    if (!r || typeof r !== 'object' || Array.isArray(r)) throw new Error('decoding resources: not a JSON object');
    return r as LinuxResources;
  }
  const r: Record<string, Record<string, unknown>> = {};
  const set = (group: string, key: string, v: unknown) => { (r[group] ??= {})[key] = v; };
  if (o.memory !== undefined) set('memory', 'limit', parseBytes(o.memory));
  if (o.memoryReservation !== undefined) set('memory', 'reservation', parseBytes(o.memoryReservation));
  if (o.memorySwap !== undefined) set('memory', 'swap', parseBytes(o.memorySwap));
  if (o.kernelMemory !== undefined) set('memory', 'kernel', parseBytes(o.kernelMemory));
  if (o.kernelMemoryTcp !== undefined) set('memory', 'kernelTCP', parseBytes(o.kernelMemoryTcp));
  if (o.cpuPeriod !== undefined) set('cpu', 'period', parseInteger(o.cpuPeriod));
  if (o.cpuQuota !== undefined) set('cpu', 'quota', parseInteger(o.cpuQuota));
  if (o.cpuShare !== undefined) set('cpu', 'shares', parseInteger(o.cpuShare));
  if (o.cpuRtPeriod !== undefined) set('cpu', 'realtimePeriod', parseInteger(o.cpuRtPeriod));
  if (o.cpuRtRuntime !== undefined) set('cpu', 'realtimeRuntime', parseInteger(o.cpuRtRuntime));
  if (o.cpusetCpus !== undefined) set('cpu', 'cpus', o.cpusetCpus);
  if (o.cpusetMems !== undefined) set('cpu', 'mems', o.cpusetMems);
  if (o.pidsLimit !== undefined) set('pids', 'limit', parseInteger(o.pidsLimit));
  if (o.blkioWeight !== undefined && parseInteger(o.blkioWeight) !== 0) set('blockIO', 'weight', parseInteger(o.blkioWeight));
  if (o.l3CacheSchema !== undefined || o.memBwSchema !== undefined) r.intelRdt = { l3CacheSchema: o.l3CacheSchema, memBwSchema: o.memBwSchema };
  return r as LinuxResources;
}

export function registerVmOps(program: Command): void {
  program
    .command('pause')
    .description('freeze the container\'s VM (every vCPU stopped, devices quiet)')
    .argument('<container-id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await (await verbs()).pause(globalOptions(cmd).root, id);
    });

  program
    .command('resume')
    .description('let a paused container\'s VM run again')
    .argument('<container-id>')
    .action(async (id: string, _o: unknown, cmd: Command) => {
      await (await verbs()).resume(globalOptions(cmd).root, id);
    });

  const update = program
    .command('update')
    .description('update the resource limits of the container\'s cgroup in the VM')
    .argument('<container-id>')
    .option('-r, --resources <file>', 'JSON linux.resources to apply (- = stdin); other flags are then ignored');
  for (const [flag, what] of [
    ['blkio-weight', 'block I/O weight (not supported in a VM)'], ['cpu-period', 'CPU CFS period (µs)'],
    ['cpu-quota', 'CPU CFS quota (µs)'], ['cpu-share', 'CPU shares'], ['cpu-rt-period', 'realtime period (not supported)'],
    ['cpu-rt-runtime', 'realtime runtime (not supported)'], ['cpuset-cpus', 'CPUs to use (not supported: vCPUs are fixed)'],
    ['cpuset-mems', 'memory nodes (not supported)'], ['kernel-memory', 'kernel memory limit (not supported)'],
    ['kernel-memory-tcp', 'kernel TCP memory limit (not supported)'], ['memory', 'memory limit (bytes, or 256m, 1g; -1 = unlimited)'],
    ['memory-reservation', 'memory soft limit'], ['memory-swap', 'memory+swap limit (-1 = unlimited swap)'],
    ['pids-limit', 'maximum number of pids'], ['l3-cache-schema', 'Intel RDT L3 schema (not supported)'],
    ['mem-bw-schema', 'Intel RDT MBA schema (not supported)'],
  ] as const) update.option(`--${flag} <value>`, what);
  update.action(async (id: string, o: UpdateFlags, cmd: Command) => {
    const resources = updateResources(o);
    await (await verbs()).update(globalOptions(cmd).root, id, resources);
  });

  program
    .command('events')
    .description('print the container\'s events (stats, oom) as JSON lines until it stops')
    .argument('<container-id>')
    .option('--interval <duration>', 'stats collection interval', '5s')
    .option('--stats', 'print the container\'s stats once, then exit', false)
    .action(async (id: string, o: { interval: string; stats: boolean }, cmd: Command) => {
      const root = globalOptions(cmd).root;
      const v = await verbs();
      const intervalMs = parseDuration(o.interval);
      if (o.stats) {
        const r = await v.stats(root, id);
        const { eventLine } = await import('../runtime/guest-cgroup.js');
        process.stdout.write(eventLine({ type: 'stats', id, data: r.stats }) + '\n');
        return;
      }
      await v.events(root, id, { intervalMs, write: (line) => process.stdout.write(line + '\n') });
    });
}
