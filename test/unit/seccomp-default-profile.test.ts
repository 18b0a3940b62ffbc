// A representative podman/containers-common default profile (OCI form, as
// podman hands it to the runtime for the default capabilities):
// test/fixtures/seccomp-default.json. Not byte-identical to upstream, but with
// its tricky parts: ENOSYS default, an EPERM list, clone MASKED_EQ, clone3 ->
// ENOSYS, personality EQ values, socket AF_VSOCK / NETLINK_AUDIT rules, names
// from other arches, and x86_64 + x86 + x32.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, X32_SYSCALL_BIT } from '../../src/oci/seccomp/bpf.js';
import { run, validate } from '../../src/oci/seccomp/bpf-interp.js';
import { compileSeccomp } from '../../src/oci/seccomp/compile.js';
import { SYSCALLS_X86_64 } from '../../src/oci/seccomp/syscalls-x86_64.js';
import { SYSCALLS_X86 } from '../../src/oci/seccomp/syscalls-x86.js';
import { SYSCALLS_X32 } from '../../src/oci/seccomp/syscalls-x32.js';

const profile: unknown = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../fixtures/seccomp-default.json'), 'utf8'));
const compiled = compileSeccomp(profile);
const ALLOW = SECCOMP_RET_ALLOW;
const ERRNO = (e: number): number => (SECCOMP_RET_ERRNO | e) >>> 0;
const EPERM = ERRNO(1);
const EINVAL = ERRNO(22);
const ENOSYS = ERRNO(38);
const x64 = (name: string, args: (number | bigint)[] = []): number => run(compiled.program, { nr: SYSCALLS_X86_64.get(name)!, arch: AUDIT_ARCH_X86_64, args }, { validate: false });

describe('podman-style default seccomp profile', () => {
  it('compiles to a valid program well under 4096 instructions', () => {
    validate(compiled.program);
    expect(compiled.instructions).toBeLessThan(2000);
    expect(compiled.flags).toBe(0);
    // Names of other arches are ignored and reported.
    expect(compiled.unknownSyscalls).toEqual(expect.arrayContaining(['arm_fadvise64_64', 's390_runtime_instr', 'riscv_flush_icache', 'cachestat', 'fchmodat2']));
    expect(compiled.unknownSyscalls).not.toContain('read');
    expect(compiled.unknownSyscalls).not.toContain('socketcall'); // i386
  });

  it('allows the everyday syscalls and refuses the privileged ones with EPERM', () => {
    for (const n of ['read', 'write', 'openat', 'close', 'mmap', 'execve', 'exit_group', 'rt_sigaction', 'futex', 'epoll_wait', 'getpid', 'mkdir', 'statx', 'chroot', 'arch_prctl']) expect([n, x64(n)]).toEqual([n, ALLOW]);
    for (const n of ['reboot', 'mount', 'umount2', 'unshare', 'setns', 'kexec_load', 'init_module', 'ptrace', 'swapon', 'bpf', 'settimeofday', 'open_by_handle_at', 'userfaultfd']) expect([n, x64(n)]).toEqual([n, EPERM]);
  });

  it('gives ENOSYS to what it does not name (default) and to numbers past its table', () => {
    for (const n of ['add_key', 'request_key', 'keyctl', 'lookup_dcookie' /* named: EPERM */]) expect([n, x64(n)]).toEqual([n, n === 'lookup_dcookie' ? EPERM : ENOSYS]);
    expect(run(compiled.program, { nr: 451, arch: AUDIT_ARCH_X86_64 })).toBe(ENOSYS);
    expect(run(compiled.program, { nr: 9999, arch: AUDIT_ARCH_X86_64 })).toBe(ENOSYS);
  });

  it('clone: allowed without namespace flags (MASKED_EQ 0x7e020000 == 0); clone3 -> ENOSYS', () => {
    const SIGCHLD = 17;
    const CLONE_THREAD_FLAGS = 0x3d0f00; // pthread_create
    expect(x64('clone', [SIGCHLD])).toBe(ALLOW);
    expect(x64('clone', [CLONE_THREAD_FLAGS])).toBe(ALLOW);
    expect(x64('clone', [0x01000000 | 0x00200000 | SIGCHLD])).toBe(ALLOW); // CLONE_CHILD_SETTID|CLONE_CHILD_CLEARTID
    for (const ns of [0x00020000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x02000000]) {
      expect([ns, x64('clone', [ns | SIGCHLD])]).toEqual([ns, ENOSYS]);
    }
    expect(x64('clone', [0x1_0000_0000n | BigInt(SIGCHLD)])).toBe(ALLOW); // high bits outside the mask
    expect(x64('clone3')).toBe(ENOSYS);
  });

  it('personality: only the five listed values', () => {
    for (const v of [0, 8, 0x20000, 0x20008, 0xffffffff]) expect([v, x64('personality', [v])]).toEqual([v, ALLOW]);
    for (const v of [0x0040000, 1, 0x20009, 0x1_0000_0000n, 0xffffffff_ffffffffn]) expect([v, x64('personality', [v])]).toEqual([v, ENOSYS]);
  });

  it('socket: AF_VSOCK -> EPERM, NETLINK_AUDIT -> EINVAL, the rest allowed', () => {
    const AF_INET = 2, AF_UNIX = 1, AF_NETLINK = 16, AF_VSOCK = 40, SOCK_STREAM = 1, SOCK_RAW = 3, NETLINK_ROUTE = 0, NETLINK_AUDIT = 9;
    expect(x64('socket', [AF_VSOCK, SOCK_STREAM, 0])).toBe(EPERM);
    expect(x64('socket', [AF_NETLINK, SOCK_RAW, NETLINK_AUDIT])).toBe(EINVAL);
    expect(x64('socket', [AF_NETLINK, SOCK_RAW, NETLINK_ROUTE])).toBe(ALLOW);
    expect(x64('socket', [AF_INET, SOCK_STREAM, 0])).toBe(ALLOW);
    expect(x64('socket', [AF_UNIX, SOCK_STREAM, 0])).toBe(ALLOW);
    expect(x64('socket', [AF_INET, SOCK_RAW, 9])).toBe(ALLOW); // protocol 9 is only special for AF_NETLINK
    expect(x64('socket', [BigInt(AF_VSOCK) | 0x1_0000_0000n, SOCK_STREAM, 0])).toBe(ALLOW); // 64-bit compare
  });

  it('applies to i386 and x32 calls with their own numbers', () => {
    const i386 = (n: string, args: number[] = []): number => run(compiled.program, { nr: SYSCALLS_X86.get(n)!, arch: AUDIT_ARCH_I386, args }, { validate: false });
    const x32 = (n: string, args: number[] = []): number => run(compiled.program, { nr: X32_SYSCALL_BIT | SYSCALLS_X32.get(n)!, arch: AUDIT_ARCH_X86_64, args }, { validate: false });
    expect(i386('read')).toBe(ALLOW);
    expect(i386('socketcall')).toBe(ALLOW);
    expect(i386('waitpid')).toBe(ALLOW);
    expect(i386('reboot')).toBe(EPERM);
    expect(i386('vm86')).toBe(EPERM);
    expect(i386('personality', [8])).toBe(ALLOW);
    expect(i386('personality', [9])).toBe(ENOSYS);
    expect(x32('read')).toBe(ALLOW);
    expect(x32('rt_sigaction')).toBe(ALLOW);
    expect(x32('reboot')).toBe(EPERM);
    expect(x32('socket', [40, 1, 0])).toBe(EPERM);
    expect(run(compiled.program, { nr: 0, arch: 0xc00000b7 })).toBe(0x80000000); // aarch64: killed
  });
});
