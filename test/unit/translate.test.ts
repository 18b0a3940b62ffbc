import { describe, expect, it } from 'vitest';
import os from 'node:os';
import { capMask, parseMountOptions, processSpec, setupSpec, SpecError } from '../../src/runtime/translate.js';
import { machineSize, MIN_MEMORY_MIB } from '../../src/runtime/resources.js';
import { parseSignal } from '../../src/runtime/lifecycle.js';
import { defaultSpec } from '../../src/oci/default-spec.js';

describe('OCI -> agent translation', () => {
  it('maps mount options to flags, propagation and data', () => {
    expect(parseMountOptions(['nosuid', 'noexec', 'nodev', 'ro'])).toEqual({ flags: 1 | 2 | 4 | 8, propagation: 0, data: '' });
    expect(parseMountOptions(['rbind', 'rprivate', 'rw'])).toEqual({ flags: 4096 | 16384, propagation: (1 << 18) | 16384, data: '' });
    expect(parseMountOptions(['mode=755', 'size=65536k', 'strictatime', 'Z'])).toEqual({ flags: 1 << 24, propagation: 0, data: 'mode=755,size=65536k' });
    expect(parseMountOptions(['ro', 'rw']).flags & 1).toBe(0);
  });

  it('turns bind mounts into exports of the binds device and keeps others as they are', () => {
    const spec = defaultSpec(['true'], false);
    spec.mounts!.push({ destination: '/data', type: 'bind', source: 'vol', options: ['rbind', 'ro'] });
    spec.hostname = 'box';
    const { setup, exports } = setupSpec(spec, '/b');
    expect(exports).toEqual([{ name: 'm0', hostPath: '/b/vol', readonly: true }]);
    const data = setup.mounts.find((m) => m.destination === '/data')!;
    expect(data).toMatchObject({ type: 'bind', source: '/run/husk/binds/m0' });
    expect(data.flags & 1).toBe(1);
    expect(setup.mounts.find((m) => m.destination === '/proc')).toMatchObject({ type: 'proc', source: 'proc' });
    expect(setup.hostname).toBe('box');
    expect(setup.masked).toContain('/proc/kcore');
    expect(setup.rootfsReadonly).toBe(true);
    spec.mounts!.push({ destination: 'relative', type: 'tmpfs' });
    expect(() => setupSpec(spec, '/b')).toThrow(SpecError);
  });

  it('maps capabilities, rlimits and user', () => {
    expect(capMask(['CAP_CHOWN', 'CAP_KILL', 'CAP_NOPE'])).toBe((1n << 0n) | (1n << 5n));
    const p = processSpec({
      cwd: '/', args: ['x'], user: { uid: 1000, gid: 100, additionalGids: [5, 6], umask: 0o27 },
      rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 4096 }], noNewPrivileges: true, oomScoreAdj: 100,
    }, { stdin: false });
    expect(p).toMatchObject({ uid: 1000, gid: 100, gids: [5, 6], umask: 0o27, noNewPrivileges: true, oomScoreAdj: 100 });
    expect(p.rlimits).toEqual([{ resource: 7, soft: 1024n, hard: 4096n }]);
    expect(() => processSpec({ cwd: '/', args: ['x'], user: { uid: 0, gid: 0 }, rlimits: [{ type: 'RLIMIT_BOGUS', soft: 1, hard: 1 }] }, { stdin: false })).toThrow(/unknown rlimit/);
  });

  it('sizes the VM from resources and annotations', () => {
    const spec = defaultSpec(['true'], false);
    expect(machineSize(spec)).toEqual({ vcpus: 1, memoryMiB: 512 });
    spec.linux!.resources = { memory: { limit: 256 * 1024 * 1024 }, cpu: { quota: 150000, period: 100000 } };
    expect(machineSize(spec).memoryMiB).toBe(256 + 64);
    expect(machineSize(spec).vcpus).toBe(Math.min(2, os.availableParallelism()));
    spec.linux!.resources = { memory: { limit: 1024 } };
    expect(machineSize(spec).memoryMiB).toBe(MIN_MEMORY_MIB);
    spec.annotations = { 'husk.memory_mib': '64' };
    expect(() => machineSize(spec)).toThrow(/minimum/);
  });

  it('parses signals like runc', () => {
    expect(parseSignal('KILL')).toBe(9);
    expect(parseSignal('SIGTERM')).toBe(15);
    expect(parseSignal('15')).toBe(15);
    expect(parseSignal('sigusr1')).toBe(10);
    expect(parseSignal('RTMIN+2')).toBe(36);
    expect(() => parseSignal('NOPE')).toThrow(/invalid signal/);
    expect(() => parseSignal('0')).toThrow(/invalid signal/);
  });
});
