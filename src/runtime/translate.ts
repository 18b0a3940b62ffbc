// OCI config -> what the guest agent needs: the process spec (user, caps,
// rlimits, ...) and the container set-up (mounts, hostname, masked paths).
// Host-side work only: numbers and flags are resolved here so the agent
// stays small.
import path from 'node:path';
import type { Process, Spec, Mount } from '../oci/spec.js';
import type { AgentDevice, AgentMount, ProcessSpec, SetupSpec } from '../agent/client.js';
import { compileSeccomp } from '../oci/seccomp/compile.js';
import { encodeCgroupSetup } from './guest-cgroup.js';

export class SpecError extends Error {}

const RLIMITS: Record<string, number> = {
  RLIMIT_CPU: 0, RLIMIT_FSIZE: 1, RLIMIT_DATA: 2, RLIMIT_STACK: 3, RLIMIT_CORE: 4, RLIMIT_RSS: 5,
  RLIMIT_NPROC: 6, RLIMIT_NOFILE: 7, RLIMIT_MEMLOCK: 8, RLIMIT_AS: 9, RLIMIT_LOCKS: 10,
  RLIMIT_SIGPENDING: 11, RLIMIT_MSGQUEUE: 12, RLIMIT_NICE: 13, RLIMIT_RTPRIO: 14, RLIMIT_RTTIME: 15,
};

export const CAPABILITIES = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** Capability names -> bit mask; unknown names are skipped (runc warns and ignores them too). */
export function capMask(names: string[] | undefined): bigint {
  let m = 0n;
  for (const n of names ?? []) {
    const i = CAPABILITIES.indexOf(n.toUpperCase().startsWith('CAP_') ? n.toUpperCase() : `CAP_${n.toUpperCase()}`);
    if (i >= 0) m |= 1n << BigInt(i);
  }
  return m;
}

/** rlimit values: the spec uses uint64 where 2^64-1 means unlimited. */
function rlimitValue(v: number): bigint {
  if (!Number.isFinite(v) || v < 0) return 0xffffffffffffffffn;
  if (v >= Number.MAX_SAFE_INTEGER) return 0xffffffffffffffffn;
  return BigInt(Math.trunc(v));
}

export function processSpec(p: Process, extra: { stdin: boolean; seccomp?: unknown; log?: (msg: string) => void }): ProcessSpec {
  const spec: ProcessSpec = {
    args: p.args ?? [],
    env: p.env ?? [],
    cwd: p.cwd,
    stdin: extra.stdin,
    terminal: !!p.terminal,
    uid: p.user?.uid ?? 0,
    gid: p.user?.gid ?? 0,
    gids: p.user?.additionalGids ?? [],
    noNewPrivileges: !!p.noNewPrivileges,
  };
  if (p.consoleSize) spec.winsize = { rows: p.consoleSize.height, cols: p.consoleSize.width };
  if (p.user?.umask !== undefined) spec.umask = p.user.umask;
  if (p.oomScoreAdj !== undefined) spec.oomScoreAdj = p.oomScoreAdj;
  if (p.rlimits) {
    spec.rlimits = p.rlimits.map((r) => {
      const resource = RLIMITS[r.type];
      if (resource === undefined) throw new SpecError(`unknown rlimit type ${r.type}`);
      return { resource, soft: rlimitValue(r.soft), hard: rlimitValue(r.hard) };
    });
  }
  if (extra.seccomp !== undefined && extra.seccomp !== null) {
    let compiled;
    try {
      // runc's reading of several conditions on one argument: alternatives, not all at once.
      compiled = compileSeccomp(extra.seccomp, { sameArgumentOr: true });
    } catch (err) {
      throw new SpecError(err instanceof Error ? err.message : String(err));
    }
    if (compiled.unknownSyscalls.length) extra.log?.(`seccomp: syscalls unknown on x86_64 ignored: ${compiled.unknownSyscalls.join(' ')}`);
    spec.seccomp = { program: compiled.program, flags: compiled.flags };
  }
  if (p.capabilities) {
    const c = p.capabilities;
    spec.caps = {
      bounding: capMask(c.bounding), effective: capMask(c.effective), permitted: capMask(c.permitted),
      inheritable: capMask(c.inheritable), ambient: capMask(c.ambient),
    };
  }
  return spec;
}

// mount(2) flags and the OCI option words that set or clear them.
const MS = {
  RDONLY: 1, NOSUID: 2, NODEV: 4, NOEXEC: 8, SYNCHRONOUS: 16, REMOUNT: 32, MANDLOCK: 64, DIRSYNC: 128,
  NOATIME: 1024, NODIRATIME: 2048, BIND: 4096, REC: 16384, SILENT: 32768, UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18, SLAVE: 1 << 19, SHARED: 1 << 20, RELATIME: 1 << 21, STRICTATIME: 1 << 24,
} as const;
const FLAG_OPTIONS: Record<string, [set: boolean, flag: number]> = {
  ro: [true, MS.RDONLY], rw: [false, MS.RDONLY], nosuid: [true, MS.NOSUID], suid: [false, MS.NOSUID],
  nodev: [true, MS.NODEV], dev: [false, MS.NODEV], noexec: [true, MS.NOEXEC], exec: [false, MS.NOEXEC],
  sync: [true, MS.SYNCHRONOUS], async: [false, MS.SYNCHRONOUS], dirsync: [true, MS.DIRSYNC],
  remount: [true, MS.REMOUNT], mand: [true, MS.MANDLOCK], nomand: [false, MS.MANDLOCK],
  noatime: [true, MS.NOATIME], atime: [false, MS.NOATIME], nodiratime: [true, MS.NODIRATIME], diratime: [false, MS.NODIRATIME],
  bind: [true, MS.BIND], rbind: [true, MS.BIND | MS.REC], relatime: [true, MS.RELATIME], norelatime: [false, MS.RELATIME],
  strictatime: [true, MS.STRICTATIME], nostrictatime: [false, MS.STRICTATIME], silent: [true, MS.SILENT], loud: [false, MS.SILENT],
};
const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE, rprivate: MS.PRIVATE | MS.REC, shared: MS.SHARED, rshared: MS.SHARED | MS.REC,
  slave: MS.SLAVE, rslave: MS.SLAVE | MS.REC, unbindable: MS.UNBINDABLE, runbindable: MS.UNBINDABLE | MS.REC,
};
// Options that only matter to the host side (idmap, SELinux relabel, ...) and have no guest meaning.
const HOST_ONLY_OPTIONS = new Set(['z', 'Z', 'U', 'idmap', 'ridmap', 'tmpcopyup', 'notmpcopyup', 'copy', 'nocopy', 'chown']);

export interface MountOptions { flags: number; propagation: number; data: string }

export function parseMountOptions(options: string[] | undefined): MountOptions {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options ?? []) {
    const f = FLAG_OPTIONS[o];
    if (f) { flags = f[0] ? flags | f[1] : flags & ~f[1]; continue; }
    const p = PROPAGATION[o];
    if (p !== undefined) { propagation = p; continue; }
    if (HOST_ONLY_OPTIONS.has(o)) continue;
    data.push(o);
  }
  return { flags, propagation, data: data.join(',') };
}

export function isBindMount(m: Mount): boolean {
  return m.type === 'bind' || (m.options ?? []).some((o) => o === 'bind' || o === 'rbind');
}

/** A bind-mount source exported to the guest through the bind-mounts virtio-fs device. */
export interface BindExport {
  name: string;
  hostPath: string;
  readonly: boolean;
}

/** Where the agent mounts the bind-mounts virtio-fs device inside the guest. */
export const GUEST_BINDS_DIR = '/run/husk/binds';

export function setupSpec(spec: Spec, bundleDir: string): { setup: SetupSpec; exports: BindExport[] } {
  const exports: BindExport[] = [];
  const mounts: AgentMount[] = [];
  for (const m of spec.mounts ?? []) {
    if (typeof m.destination !== 'string' || !m.destination.startsWith('/')) {
      throw new SpecError(`mount destination ${String(m.destination)} is not an absolute path`);
    }
    const opts = parseMountOptions(m.options);
    if (isBindMount(m)) {
      if (!m.source) throw new SpecError(`bind mount to ${m.destination} has no source`);
      const name = `m${exports.length}`;
      exports.push({ name, hostPath: path.resolve(bundleDir, m.source), readonly: (opts.flags & MS.RDONLY) !== 0 });
      mounts.push({ type: 'bind', source: `${GUEST_BINDS_DIR}/${name}`, destination: m.destination, flags: opts.flags | MS.BIND, propagation: opts.propagation, data: '' });
    } else {
      const type = m.type ?? 'none';
      mounts.push({ type, source: m.source ?? type, destination: m.destination, flags: opts.flags, propagation: opts.propagation, data: opts.data });
    }
  }
  const linux = spec.linux ?? {};
  const devices = (linux.devices ?? []).map((d): AgentDevice => {
    if (!['c', 'b', 'u', 'p'].includes(d.type)) throw new SpecError(`device ${d.path}: unknown type ${d.type}`);
    if (typeof d.path !== 'string' || !d.path.startsWith('/')) throw new SpecError(`device path ${String(d.path)} is not absolute`);
    if (d.type !== 'p' && (!Number.isInteger(d.major) || !Number.isInteger(d.minor))) throw new SpecError(`device ${d.path} needs major and minor numbers`);
    // Linux's device number limits (12-bit major, 20-bit minor).
    if (d.type !== 'p' && (d.major! < 0 || d.major! > 0xfff || d.minor! < 0 || d.minor! > 0xfffff)) throw new SpecError(`device ${d.path}: major/minor out of range`);
    return { type: d.type as AgentDevice['type'], major: d.major ?? 0, minor: d.minor ?? 0, mode: (d.fileMode ?? 0) & 0o7777, uid: d.uid ?? 0, gid: d.gid ?? 0, path: d.path };
  });
  const setup: SetupSpec = {
    devices,
    mounts,
    masked: linux.maskedPaths ?? [],
    readonly: linux.readonlyPaths ?? [],
    sysctl: linux.sysctl ?? {},
    rootfsReadonly: !!spec.root?.readonly,
  };
  if (spec.hostname !== undefined) setup.hostname = spec.hostname;
  setup.resources = encodeCgroupSetup(spec);
  if (spec.domainname !== undefined) setup.domainname = spec.domainname;
  return { setup, exports };
}
