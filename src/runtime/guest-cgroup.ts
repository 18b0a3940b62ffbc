// linux.resources -> the container's cgroup in the guest (agent protocol
// extension C), and the cgroup's files -> runc's stats JSON. The VM itself
// is sized at create (resources.ts); inside it, the cgroup v2 limits apply
// as runc applies them on a cgroup v2 host.
import { Tag, TlvWriter, parseTlv } from '../agent/protocol.js';
import type { LinuxResources, Spec } from '../oci/spec.js';
import { GUEST_OVERHEAD_MIB } from './resources.js';

export class ResourceError extends Error {}

const MAX = (1n << 64n) - 1n;

function int(v: unknown, what: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw new ResourceError(`invalid ${what}: ${JSON.stringify(v)}`);
  return v;
}

function isEmpty(v: unknown): boolean {
  if (v === undefined || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === 'object') return Object.values(v as object).every(isEmpty);
  return false;
}

/** cgroup v1 cpu.shares (2..262144) -> cgroup v2 cpu.weight (1..10000), the usual linear map. */
export function sharesToWeight(shares: number): number {
  if (shares <= 2) return 1;
  if (shares >= 262144) return 10000;
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

export interface EncodeOptions {
  /** `update`: fields a VM cannot change answer with an error instead of being left alone */
  update?: boolean;
  /** guest RAM (MiB): memory limits above what the container can get are refused on update */
  vmMemoryMiB?: number;
}

/** The TLV attributes (tags 60-65) for `res`; empty when nothing applies. */
export function encodeResources(res: LinuxResources | undefined, o: EncodeOptions = {}): Uint8Array {
  const w = new TlvWriter();
  if (!res) return w.finish();
  if (o.update) {
    const unsupported = ['blockIO', 'hugepageLimits', 'rdma', 'network', 'devices', 'intelRdt', 'unified']
      .filter((k) => !isEmpty(res[k]));
    const mem = (res.memory ?? {}) as Record<string, unknown>;
    const cpu = (res.cpu ?? {}) as Record<string, unknown>;
    if (!isEmpty(mem.kernel) || !isEmpty(mem.kernelTCP)) unsupported.push('memory.kernel');
    if (!isEmpty(mem.swappiness)) unsupported.push('memory.swappiness (cgroup v2 has none)');
    if (!isEmpty(cpu.realtimeRuntime) || !isEmpty(cpu.realtimePeriod)) unsupported.push('cpu.realtime');
    if (!isEmpty(cpu.cpus) || !isEmpty(cpu.mems)) unsupported.push('cpu.cpus/mems (the VM\'s vCPUs are fixed at create; no vCPU hot-plug)');
    if (unsupported.length) throw new ResourceError(`cannot update ${unsupported.join(', ')} of a VM container`);
  }
  const limit = int(res.memory?.limit, 'memory limit');
  const swap = int(res.memory?.swap, 'memory swap');
  const reservation = int(res.memory?.reservation, 'memory reservation');
  if (limit !== undefined && limit !== 0) {
    if (limit < -1) throw new ResourceError(`invalid memory limit: ${limit}`);
    if (limit > 0 && o.update && o.vmMemoryMiB !== undefined) {
      const room = Math.max(0, o.vmMemoryMiB - GUEST_OVERHEAD_MIB) * (1 << 20);
      if (limit > room) {
        throw new ResourceError(`memory limit ${limit} exceeds the ${room} bytes the VM has for the container ` +
          `(${o.vmMemoryMiB} MiB guest RAM sized at create): the VM cannot grow; recreate the container with a larger limit`);
      }
    }
    w.u64(Tag.CG_MEMORY_MAX, limit === -1 ? MAX : BigInt(limit));
  }
  if (swap !== undefined && swap !== 0) {
    // OCI swap is memory+swap (cgroup v1); cgroup v2 limits swap alone.
    if (swap === -1) w.u64(Tag.CG_MEMORY_SWAP_MAX, MAX);
    else if (swap < -1) throw new ResourceError(`invalid memory swap: ${swap}`);
    else if (limit === undefined || limit <= 0) throw new ResourceError('a memory+swap limit needs a memory limit too');
    else if (swap < limit) throw new ResourceError(`memory+swap limit ${swap} is smaller than the memory limit ${limit}`);
    else w.u64(Tag.CG_MEMORY_SWAP_MAX, BigInt(swap - limit));
  }
  if (reservation !== undefined && reservation !== 0) {
    w.u64(Tag.CG_MEMORY_LOW, reservation === -1 ? MAX : BigInt(Math.max(0, reservation)));
  }
  const quota = int(res.cpu?.quota, 'cpu quota');
  const period = int(res.cpu?.period, 'cpu period');
  if ((quota !== undefined && quota !== 0) || (period !== undefined && period !== 0)) {
    if (period !== undefined && period !== 0 && (period < 1000 || period > 1_000_000)) throw new ResourceError(`cpu period ${period} out of range 1000-1000000`);
    if (quota !== undefined && quota > 0 && quota < 1000) throw new ResourceError(`cpu quota ${quota} is below 1000`);
    const b = new Uint8Array(16);
    const v = new DataView(b.buffer);
    v.setBigUint64(0, quota === undefined || quota === 0 || quota < 0 ? MAX : BigInt(quota), true);
    v.setBigUint64(8, BigInt(period ?? 0), true);
    // A period alone keeps the quota unlimited only if none was set: cgroup v2 needs both in one write.
    w.bytes(Tag.CG_CPU_MAX, b);
  }
  const shares = int(res.cpu?.shares, 'cpu shares');
  if (shares !== undefined && shares !== 0) w.u32(Tag.CG_CPU_WEIGHT, sharesToWeight(shares));
  const pids = int((res.pids as { limit?: unknown } | undefined)?.limit, 'pids limit');
  if (pids !== undefined && pids !== 0) w.u64(Tag.CG_PIDS_MAX, pids < 0 ? MAX : BigInt(pids));
  return w.finish();
}

/** SETUP's extension C attributes: CG_NAMESPACE first (the spec asks for a cgroup namespace), then the resources. */
export function encodeCgroupSetup(spec: Spec): Uint8Array {
  const w = new TlvWriter();
  if (spec.linux?.namespaces?.some((n) => n.type === 'cgroup')) w.u8(Tag.CG_NAMESPACE, 1);
  return w.raw(encodeResources(spec.linux?.resources)).finish();
}

/** The cgroup files of a STATS result, by name; guest text, bounded and never trusted. */
export function parseStatFiles(payload: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  for (const a of parseTlv(payload)) {
    if (a.tag !== Tag.CG_FILE) continue;
    const nul = a.value.indexOf(0);
    if (nul <= 0 || nul > 64 || a.value.byteLength > 16384) continue;
    const name = new TextDecoder().decode(a.value.subarray(0, nul));
    if (!/^[a-z.]+$/.test(name)) continue;
    out.set(name, new TextDecoder().decode(a.value.subarray(nul + 1)));
  }
  return out;
}

/** Stands for "max" (2^64-1, as runc prints it) until eventLine() writes the JSON. */
export const U64_MAX = '__u64_max__';

/** One JSON line of `events`, with U64_MAX written as the exact number. */
export function eventLine(ev: Record<string, unknown>): string {
  return JSON.stringify(ev).replaceAll(`"${U64_MAX}"`, '18446744073709551615');
}

function num(s: string | undefined): number | typeof U64_MAX {
  if (s === undefined) return 0;
  const t = s.trim();
  if (t === 'max') return U64_MAX;
  const n = Number(t.split(/\s+/)[0]);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

function keyed(s: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of (s ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (!k || v === undefined || !/^[a-z_0-9]+$/.test(k)) continue;
    const n = Number(v);
    if (Number.isFinite(n) && n >= 0) out[k] = n;
  }
  return out;
}

/** runc's `events` stats object from the guest cgroup's files (cgroup v2 field mapping). */
export function runcStats(files: Map<string, string>): Record<string, unknown> {
  const cpu = keyed(files.get('cpu.stat'));
  const memStat = keyed(files.get('memory.stat'));
  const events = keyed(files.get('memory.events'));
  const count = (s: string | undefined) => { const n = num(s); return typeof n === 'number' ? n : 0; };
  const memUsage = count(files.get('memory.current'));
  const swapUsage = count(files.get('memory.swap.current'));
  const pidsMax = files.get('pids.max')?.trim();
  return {
    cpu: {
      usage: {
        total: (cpu.usage_usec ?? 0) * 1000,
        kernel: (cpu.system_usec ?? 0) * 1000,
        user: (cpu.user_usec ?? 0) * 1000,
      },
      throttling: {
        periods: cpu.nr_periods ?? 0,
        throttledPeriods: cpu.nr_throttled ?? 0,
        throttledTime: (cpu.throttled_usec ?? 0) * 1000,
      },
    },
    memory: {
      cache: memStat.file ?? 0,
      usage: { limit: num(files.get('memory.max')), usage: memUsage, max: count(files.get('memory.peak')), failcnt: events.max ?? 0 },
      // As runc on cgroup v2: "swap" is memory+swap.
      swap: { limit: num(files.get('memory.swap.max')), usage: memUsage + swapUsage, failcnt: 0 },
      kernel: { limit: 0, usage: (memStat.kernel_stack ?? 0) + (memStat.slab ?? 0), failcnt: 0 },
      kernelTCP: { limit: 0, failcnt: 0 },
      raw: memStat,
    },
    pids: { current: count(files.get('pids.current')), limit: pidsMax === 'max' || pidsMax === undefined ? 0 : count(pidsMax) },
    blkio: {},
    hugetlb: {},
    intel_rdt: {},
    network_interfaces: null,
  };
}

/** The OOM-kill counter of memory.events (what `events` watches for "oom"). */
export function oomKills(files: Map<string, string>): number {
  const e = keyed(files.get('memory.events'));
  return e.oom_kill ?? e.oom ?? 0;
}
