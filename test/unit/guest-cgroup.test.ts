// OCI linux.resources -> agent resource attributes, cgroup files -> runc's
// stats JSON, and the runc-style flag parsing of `update`/`events`.
import { describe, expect, it } from 'vitest';
import { Tag, TlvWriter, parseTlv } from '../../src/agent/protocol.js';
import { encodeCgroupSetup, encodeResources, eventLine, oomKills, parseStatFiles, runcStats, sharesToWeight } from '../../src/runtime/guest-cgroup.js';
import { parseBytes, parseDuration, updateResources } from '../../src/cli/vmops.js';

const MAX = (1n << 64n) - 1n;
const attrs = (b: Uint8Array) => parseTlv(b).map((a) => {
  const v = new DataView(a.value.buffer, a.value.byteOffset, a.value.byteLength);
  if (a.tag === Tag.CG_CPU_MAX) return [a.tag, v.getBigUint64(0, true), v.getBigUint64(8, true)];
  if (a.tag === Tag.CG_CPU_WEIGHT) return [a.tag, v.getUint32(0, true)];
  return [a.tag, v.getBigUint64(0, true)];
});

describe('encodeResources', () => {
  it('maps memory, swap (memory+swap -> swap alone), reservation, cpu and pids like runc on cgroup v2', () => {
    expect(attrs(encodeResources({
      memory: { limit: 100 << 20, swap: 300 << 20, reservation: 50 << 20 },
      cpu: { quota: 50000, period: 100000, shares: 1024 },
      pids: { limit: 64 },
    }))).toEqual([
      [Tag.CG_MEMORY_MAX, BigInt(100 << 20)],
      [Tag.CG_MEMORY_SWAP_MAX, BigInt(200 << 20)],
      [Tag.CG_MEMORY_LOW, BigInt(50 << 20)],
      [Tag.CG_CPU_MAX, 50000n, 100000n],
      [Tag.CG_CPU_WEIGHT, 39],
      [Tag.CG_PIDS_MAX, 64n],
    ]);
  });

  it('-1 means unlimited, 0 and absent leave the value alone', () => {
    expect(attrs(encodeResources({ memory: { limit: -1, swap: -1 }, cpu: { quota: -1 }, pids: { limit: -1 } }))).toEqual([
      [Tag.CG_MEMORY_MAX, MAX], [Tag.CG_MEMORY_SWAP_MAX, MAX], [Tag.CG_CPU_MAX, MAX, 0n], [Tag.CG_PIDS_MAX, MAX],
    ]);
    expect(encodeResources({ memory: { limit: 0 }, pids: { limit: 0 } }).byteLength).toBe(0);
    expect(encodeResources(undefined).byteLength).toBe(0);
  });

  it('refuses what a VM cannot change on update, and limits above the VM', () => {
    expect(() => encodeResources({ blockIO: { weight: 300 } }, { update: true })).toThrow('cannot update blockIO of a VM container');
    expect(() => encodeResources({ cpu: { cpus: '0-3' } }, { update: true })).toThrow(/no vCPU hot-plug/);
    expect(() => encodeResources({ hugepageLimits: [{ pageSize: '2MB', limit: 1 }], rdma: { mlx4: { hcaHandles: 2 } } }, { update: true })).toThrow('cannot update hugepageLimits, rdma');
    expect(() => encodeResources({ memory: { limit: 1 << 30 } }, { update: true, vmMemoryMiB: 264 }))
      .toThrow(/^memory limit 1073741824 exceeds the 209715200 bytes the VM has for the container/);
    expect(encodeResources({ memory: { limit: 200 << 20 } }, { update: true, vmMemoryMiB: 264 }).byteLength).toBeGreaterThan(0);
    // at create, fields the guest cannot apply are not an error (podman sends devices and more)
    expect(() => encodeResources({ blockIO: { weight: 300 }, devices: [{ allow: false, access: 'rwm' }] })).not.toThrow();
    // empty objects are not requests
    expect(() => encodeResources({ blockIO: {}, devices: [] }, { update: true })).not.toThrow();
  });

  it('rejects values cgroup v2 cannot take', () => {
    expect(() => encodeResources({ memory: { limit: 100, swap: 50 } })).toThrow('smaller than the memory limit');
    expect(() => encodeResources({ memory: { swap: 50 } })).toThrow('needs a memory limit');
    expect(() => encodeResources({ cpu: { period: 10 } })).toThrow('out of range');
    expect(() => encodeResources({ memory: { limit: '1g' as unknown as number } })).toThrow('invalid memory limit');
  });

  it('SETUP: CG_NAMESPACE first when the spec has a cgroup namespace, then the resources', () => {
    const withNs = parseTlv(encodeCgroupSetup({ ociVersion: '1.0.2', linux: { namespaces: [{ type: 'pid' }, { type: 'cgroup' }], resources: { pids: { limit: 5 } } } }));
    expect(withNs.map((a) => a.tag)).toEqual([Tag.CG_NAMESPACE, Tag.CG_PIDS_MAX]);
    expect([...withNs[0]!.value]).toEqual([1]);
    const without = parseTlv(encodeCgroupSetup({ ociVersion: '1.0.2', linux: { namespaces: [{ type: 'pid' }] } }));
    expect(without).toEqual([]);
  });

  it('converts shares to weights over the whole range', () => {
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(262144)).toBe(10000);
    expect(sharesToWeight(1024)).toBe(39);
  });
});

describe('runc stats from the guest cgroup', () => {
  const file = (name: string, content: string) => {
    const enc = new TextEncoder();
    return { name, content, bytes: new Uint8Array([...enc.encode(name), 0, ...enc.encode(content)]) };
  };
  const payload = (files: { bytes: Uint8Array }[], extra: (w: TlvWriter) => void = () => {}) => {
    const w = new TlvWriter();
    for (const f of files) w.bytes(Tag.CG_FILE, f.bytes);
    extra(w);
    return w.finish();
  };

  it('maps cpu.stat, memory.* and pids.* to runc field names', () => {
    const files = parseStatFiles(payload([
      file('cpu.stat', 'usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n'),
      file('memory.current', '4096\n'), file('memory.max', 'max\n'), file('memory.peak', '8192\n'),
      file('memory.stat', 'anon 100\nfile 200\nkernel_stack 16\nslab 4\n'),
      file('memory.events', 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n'),
      file('memory.swap.current', '0\n'), file('memory.swap.max', '0\n'),
      file('pids.current', '3\n'), file('pids.max', '64\n'),
    ]));
    const s = runcStats(files) as Record<string, Record<string, unknown>>;
    expect(s.cpu).toEqual({ usage: { total: 1_500_000, kernel: 500_000, user: 1_000_000 }, throttling: { periods: 7, throttledPeriods: 2, throttledTime: 30_000 } });
    expect(s.memory).toMatchObject({ cache: 200, usage: { usage: 4096, max: 8192, failcnt: 3 }, swap: { limit: 0, usage: 4096 }, raw: { anon: 100, file: 200 } });
    expect(s.pids).toEqual({ current: 3, limit: 64 });
    expect(oomKills(files)).toBe(1);
    expect(eventLine({ type: 'stats', id: 'x', data: s })).toContain('"usage":{"limit":18446744073709551615,"usage":4096');
  });

  it('ignores what a guest should not send: odd names, oversize values, garbage numbers', () => {
    const files = parseStatFiles(payload([
      file('../etc/passwd', 'x'), file('memory.current', 'lots'), file('pids.current', '-5'),
      { bytes: new Uint8Array(20000).fill(97) }, { bytes: new Uint8Array([0, 65]) },
    ], (w) => w.string(Tag.MESSAGE, 'not a file')));
    expect([...files.keys()].sort()).toEqual(['memory.current', 'pids.current']);
    const s = runcStats(files) as Record<string, Record<string, Record<string, unknown>>>;
    expect(s.memory!.usage!.usage).toBe(0);
    expect(s.pids).toEqual({ current: 0, limit: 0 });
  });
});

describe('update and events flags', () => {
  it('parses sizes and durations as runc does', () => {
    expect(parseBytes('256m')).toBe(256 << 20);
    expect(parseBytes('1g')).toBe(1 << 30);
    expect(parseBytes('1GiB')).toBe(1 << 30);
    expect(parseBytes('4096')).toBe(4096);
    expect(parseBytes('-1')).toBe(-1);
    expect(() => parseBytes('lots')).toThrow('invalid value for a size: lots');
    expect(parseDuration('5s')).toBe(5000);
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('250ms')).toBe(250);
    expect(() => parseDuration('5')).toThrow('invalid duration');
    expect(() => parseDuration('0s')).toThrow('greater than 0');
  });

  it('builds linux.resources from the individual flags', () => {
    expect(updateResources({ memory: '100m', memorySwap: '-1', cpuQuota: '50000', cpuPeriod: '100000', cpuShare: '512', pidsLimit: '10' })).toEqual({
      memory: { limit: 100 << 20, swap: -1 }, cpu: { quota: 50000, period: 100000, shares: 512 }, pids: { limit: 10 },
    });
    expect(updateResources({ blkioWeight: '300' })).toEqual({ blockIO: { weight: 300 } });
    expect(() => updateResources({ resources: '/no/such/file' })).toThrow('open /no/such/file: no such file or directory');
  });
});
