// compileSeccomp: OCI linux.seccomp -> BPF, checked by running the program in
// the test interpreter on synthetic seccomp_data.
import { describe, expect, it } from 'vitest';
import {
  AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS,
  SECCOMP_RET_KILL_THREAD, SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP, X32_SYSCALL_BIT,
} from '../../src/oci/seccomp/bpf.js';
import { run, validate } from '../../src/oci/seccomp/bpf-interp.js';
import { SeccompError, compileSeccomp, preciseJsonReviver, type CompileOptions } from '../../src/oci/seccomp/compile.js';
import { SYSCALLS_X86_64 } from '../../src/oci/seccomp/syscalls-x86_64.js';
import { SYSCALLS_X86 } from '../../src/oci/seccomp/syscalls-x86.js';
import { SYSCALLS_X32 } from '../../src/oci/seccomp/syscalls-x32.js';

const ALLOW = SECCOMP_RET_ALLOW;
const ERRNO = (e: number): number => (SECCOMP_RET_ERRNO | e) >>> 0;
const EPERM = ERRNO(1);
const ENOSYS = ERRNO(38);
const nr64 = (n: string): number => SYSCALLS_X86_64.get(n)!;

type Filter = (nr: number, args?: (bigint | number)[], arch?: number) => number;

function compile(profile: unknown, opts?: CompileOptions): Filter & { instructions: number; unknown: string[] } {
  const c = compileSeccomp(profile, opts);
  validate(c.program);
  expect(c.instructions).toBe(c.program.length / 8);
  const f = (nr: number, args: (bigint | number)[] = [], arch = AUDIT_ARCH_X86_64): number => run(c.program, { nr, arch, args }, { validate: false });
  return Object.assign(f, { instructions: c.instructions, unknown: c.unknownSyscalls });
}

/** A syscall by name on x86_64. */
const sys = (f: Filter, name: string, args: (bigint | number)[] = []): number => f(nr64(name), args);

describe('actions', () => {
  it('default action and its errno', () => {
    expect(sys(compile({ defaultAction: 'SCMP_ACT_ALLOW' }), 'read')).toBe(ALLOW);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_ERRNO' }), 'read')).toBe(EPERM);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 13 }), 'read')).toBe(ERRNO(13));
    expect(sys(compile({ defaultAction: 'SCMP_ACT_KILL' }), 'read')).toBe(SECCOMP_RET_KILL_THREAD);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_KILL_THREAD' }), 'read')).toBe(SECCOMP_RET_KILL_THREAD);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_KILL_PROCESS' }), 'read')).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_TRAP' }), 'read')).toBe(SECCOMP_RET_TRAP);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_LOG' }), 'read')).toBe(SECCOMP_RET_LOG);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_TRACE' }), 'read')).toBe((SECCOMP_RET_TRACE | 1) >>> 0);
    expect(sys(compile({ defaultAction: 'SCMP_ACT_TRACE', defaultErrnoRet: 7 }), 'read')).toBe((SECCOMP_RET_TRACE | 7) >>> 0);
  });

  it('rule actions; a rule errnoRet defaults to EPERM, not to defaultErrnoRet', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      syscalls: [
        { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' },
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
        { names: ['rmdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 30 },
        { names: ['reboot'], action: 'SCMP_ACT_KILL_PROCESS' },
        { names: ['kill'], action: 'SCMP_ACT_TRAP' },
        { names: ['getpid'], action: 'SCMP_ACT_LOG' },
        { names: ['ptrace'], action: 'SCMP_ACT_TRACE', errnoRet: 99 },
        { names: ['unshare'], action: 'SCMP_ACT_KILL' },
      ],
    });
    expect(sys(f, 'read')).toBe(ALLOW);
    expect(sys(f, 'write')).toBe(ALLOW);
    expect(sys(f, 'mkdir')).toBe(EPERM);
    expect(sys(f, 'rmdir')).toBe(ERRNO(30));
    expect(sys(f, 'reboot')).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(sys(f, 'kill')).toBe(SECCOMP_RET_TRAP);
    expect(sys(f, 'getpid')).toBe(SECCOMP_RET_LOG);
    expect(sys(f, 'ptrace')).toBe((SECCOMP_RET_TRACE | 99) >>> 0);
    expect(sys(f, 'unshare')).toBe(SECCOMP_RET_KILL_THREAD);
    expect(sys(f, 'open')).toBe(ENOSYS);
  });

  it('a syscall named with the default action costs nothing', () => {
    const a = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }] });
    const b = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO' }, { names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' }] });
    expect(b.instructions).toBe(a.instructions);
    expect(sys(b, 'read')).toBe(ALLOW);
  });
});

describe('architectures', () => {
  const profile = (architectures?: string[]) => ({
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures,
    syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO' }],
  });

  it('kills calls from an arch the filter does not cover', () => {
    const f = compile(profile());
    expect(f(nr64('mkdir'))).toBe(EPERM);
    expect(f(nr64('mkdir'), [], 0xc00000b7 /* AUDIT_ARCH_AARCH64 */)).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(f(SYSCALLS_X86.get('mkdir')!, [], AUDIT_ARCH_I386)).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(f(nr64('getpid'))).toBe(ALLOW);
  });

  it('SCMP_ARCH_X86 adds the i386 numbering', () => {
    const f = compile(profile(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']));
    expect(f(SYSCALLS_X86.get('mkdir')!, [], AUDIT_ARCH_I386)).toBe(EPERM); // 39
    expect(f(39)).toBe(ALLOW); // getpid on x86_64
    expect(f(SYSCALLS_X86.get('read')!, [], AUDIT_ARCH_I386)).toBe(ALLOW);
    expect(f(nr64('mkdir'), [], 0xc00000b7)).toBe(SECCOMP_RET_KILL_PROCESS);
  });

  it('x32 calls (nr | 0x40000000) are killed unless SCMP_ARCH_X32 is listed; nr -1 is not', () => {
    const without = compile(profile(['SCMP_ARCH_X86_64']));
    expect(without(X32_SYSCALL_BIT | SYSCALLS_X32.get('read')!)).toBe(SECCOMP_RET_KILL_PROCESS);
    expect(without(-1)).toBe(ALLOW);
    const withX32 = compile(profile(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32']));
    expect(withX32(X32_SYSCALL_BIT | SYSCALLS_X32.get('mkdir')!)).toBe(EPERM);
    expect(withX32(X32_SYSCALL_BIT | SYSCALLS_X32.get('read')!)).toBe(ALLOW);
    expect(withX32(nr64('mkdir'))).toBe(EPERM);
    expect(withX32(-1)).toBe(ALLOW);
    // x32's own numbers: rt_sigaction is 512 there, 13 on x86_64.
    const sig = compile({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X32'], syscalls: [{ names: ['rt_sigaction'], action: 'SCMP_ACT_ERRNO', errnoRet: 5 }] });
    expect(sig(X32_SYSCALL_BIT | 512)).toBe(ERRNO(5));
    expect(sig(X32_SYSCALL_BIT | 13)).toBe(ALLOW);
    expect(sig(13)).toBe(ERRNO(5));
  });

  it('other architectures are accepted and reported, unknown ones are an error', () => {
    const c = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM', 'SCMP_ARCH_X86_64'] });
    expect(c.ignoredArchitectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_VAX'] })).toThrow(/unknown architecture "SCMP_ARCH_VAX"/);
  });
});

describe('argument comparisons (64-bit)', () => {
  const M = 0xffffffffffffffffn;
  const interesting = [
    0n, 1n, 2n, 0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn, 0x100000000n, 0x100000001n, 0x1fffffffen,
    0x1ffffffffn, 0x200000000n, 0x5_0000_0005n, 0x4_0000_0006n, 0x6_0000_0004n, 0x7fffffffffffffffn, 0x8000000000000000n,
    M - 1n, M,
  ];
  const ref: Record<string, (a: bigint, v: bigint) => boolean> = {
    SCMP_CMP_EQ: (a, v) => a === v,
    SCMP_CMP_NE: (a, v) => a !== v,
    SCMP_CMP_LT: (a, v) => a < v,
    SCMP_CMP_LE: (a, v) => a <= v,
    SCMP_CMP_GT: (a, v) => a > v,
    SCMP_CMP_GE: (a, v) => a >= v,
  };

  for (const [op, holds] of Object.entries(ref)) {
    it(`${op} on every pair of values, including ones whose high halves differ`, () => {
      for (const v of interesting) {
        const f = compile({
          defaultAction: 'SCMP_ACT_ALLOW',
          syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ERRNO', errnoRet: 9, args: [{ index: 3, value: v, op }] }],
        });
        for (const a of interesting) {
          const got = sys(f, 'personality', [0, 0, 0, a]);
          expect([op, v, a, got]).toEqual([op, v, a, holds(a, v) ? ERRNO(9) : ALLOW]);
        }
      }
    });
  }

  it('SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo, across both halves', () => {
    const cases: [bigint, bigint][] = [
      [0x7e020000n, 0n], // podman/docker clone: no namespace flags
      [0xff00000000000000n, 0x1200000000000000n], // high half only
      [0xf0000000000000f0n, 0x1000000000000020n], // both halves, partial masks
      [0xffffffffn, 0x12345678n], // low half only, full mask
      [M, 0xdeadbeef00c0ffeen], // full 64-bit mask = EQ
      [0x0fn, 0xf0n], // valueTwo outside the mask: never matches
    ];
    const values = [...interesting, 0x11000000_00000000n, 0x12ffffff_ffffffffn, 0x1f0000ff_000000f2n, 0x10000000_00000020n, 0x12345678n, 0xabcdef00_12345678n,
      0xdeadbeef00c0ffeen, 0x00020000n, 0x01000011n, 0x10000000n];
    for (const [mask, want] of cases) {
      const f = compile({
        defaultAction: 'SCMP_ACT_ERRNO',
        syscalls: [{ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: mask, valueTwo: want, op: 'SCMP_CMP_MASKED_EQ' }] }],
      });
      for (const a of values) {
        expect([mask, want, a, sys(f, 'clone', [a])]).toEqual([mask, want, a, (a & mask) === want ? ALLOW : EPERM]);
      }
    }
  });

  it('keeps 64-bit values exact through JSON with preciseJsonReviver', () => {
    const text = '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["ioctl"],"action":"SCMP_ACT_ERRNO","args":[{"index":1,"value":18446744073709551615,"op":"SCMP_CMP_EQ"},{"index":2,"value":9007199254740993,"op":"SCMP_CMP_EQ"}]}]}';
    expect(() => compileSeccomp(JSON.parse(text))).toThrow(/preciseJsonReviver/);
    const f = compile(JSON.parse(text, preciseJsonReviver));
    expect(sys(f, 'ioctl', [0, 0xffffffffffffffffn, 9007199254740993n])).toBe(EPERM);
    expect(sys(f, 'ioctl', [0, 0xffffffffffffffffn, 9007199254740992n])).toBe(ALLOW);
    expect(sys(f, 'ioctl', [0, 0xfffffffffffffffen, 9007199254740993n])).toBe(ALLOW);
  });

  it('accepts bigint values and every argument index 0..5', () => {
    for (let index = 0; index <= 5; index++) {
      const f = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['ioctl'], action: 'SCMP_ACT_ERRNO', args: [{ index, value: 0xc0ffee_0000_0001n, op: 'SCMP_CMP_EQ' }] }] });
      const args = [0n, 0n, 0n, 0n, 0n, 0n];
      args[index] = 0xc0ffee_0000_0001n;
      expect(sys(f, 'ioctl', args)).toBe(EPERM);
      args[index] = 1n;
      expect(sys(f, 'ioctl', args)).toBe(ALLOW);
    }
  });
});

describe('rules', () => {
  it('conditions of one rule are ANDed (also on the same argument)', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['fcntl'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 3, op: 'SCMP_CMP_EQ' }, { index: 1, value: 4, op: 'SCMP_CMP_EQ' }] },
        { names: ['ioctl'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 10, op: 'SCMP_CMP_GE' }, { index: 1, value: 20, op: 'SCMP_CMP_LE' }] },
      ],
    });
    expect(sys(f, 'fcntl', [3, 4])).toBe(EPERM);
    expect(sys(f, 'fcntl', [3, 5])).toBe(ALLOW);
    expect(sys(f, 'fcntl', [2, 4])).toBe(ALLOW);
    for (const [x, r] of [[9, ALLOW], [10, EPERM], [15, EPERM], [20, EPERM], [21, ALLOW]] as const) expect(sys(f, 'ioctl', [0, x])).toBe(r);
  });

  it('sameArgumentOr reproduces runc: one argument compared twice -> ORed rules', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['ioctl'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: 10, op: 'SCMP_CMP_EQ' }, { index: 1, value: 20, op: 'SCMP_CMP_EQ' }] }],
    }, { sameArgumentOr: true });
    expect(sys(f, 'ioctl', [0, 10])).toBe(EPERM);
    expect(sys(f, 'ioctl', [0, 20])).toBe(EPERM);
    expect(sys(f, 'ioctl', [0, 15])).toBe(ALLOW);
  });

  it('rules for one syscall: conditional ones in profile order first, then the first unconditional one', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      syscalls: [
        { names: ['socket'], action: 'SCMP_ACT_ALLOW' }, // unconditional, listed first
        { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 97, args: [{ index: 0, value: 40, op: 'SCMP_CMP_EQ' }] },
        { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 22, args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }, { index: 2, value: 9, op: 'SCMP_CMP_EQ' }] },
        { names: ['socket'], action: 'SCMP_ACT_ERRNO', errnoRet: 23, args: [{ index: 0, value: 16, op: 'SCMP_CMP_EQ' }] }, // after the more specific one
        { names: ['socket'], action: 'SCMP_ACT_KILL' }, // a second unconditional rule: ignored
      ],
    });
    expect(sys(f, 'socket', [2, 1, 0])).toBe(ALLOW);
    expect(sys(f, 'socket', [40, 1, 0])).toBe(ERRNO(97));
    expect(sys(f, 'socket', [16, 3, 9])).toBe(ERRNO(22));
    expect(sys(f, 'socket', [16, 3, 0])).toBe(ERRNO(23));
  });

  it('a syscall with only conditional rules falls back to the default action', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ERRNO',
      defaultErrnoRet: 38,
      syscalls: [{ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0, op: 'SCMP_CMP_EQ' }] },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0xffffffff, op: 'SCMP_CMP_EQ' }] }],
    });
    expect(sys(f, 'personality', [0])).toBe(ALLOW);
    expect(sys(f, 'personality', [0xffffffff])).toBe(ALLOW);
    expect(sys(f, 'personality', [0xffffffffffffffffn])).toBe(ENOSYS);
    expect(sys(f, 'personality', [8])).toBe(ENOSYS);
  });

  it('the same name in several entries merges; names in one entry share its rule', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir', 'mkdirat'], action: 'SCMP_ACT_ERRNO', errnoRet: 30, args: [{ index: 0, value: 1, op: 'SCMP_CMP_NE' }] }],
    });
    expect(sys(f, 'mkdir', [0])).toBe(ERRNO(30));
    expect(sys(f, 'mkdirat', [5])).toBe(ERRNO(30));
    expect(sys(f, 'mkdirat', [1])).toBe(ALLOW);
  });
});

describe('unknown syscalls and newer syscalls', () => {
  it('ignores names unknown on every filtered arch and lists them once', () => {
    const f = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['no_such_call', 'mkdir', 'arm_fadvise64_64', 'no_such_call', 'socketcall'], action: 'SCMP_ACT_ERRNO' }],
    });
    expect(f.unknown).toEqual(['no_such_call', 'arm_fadvise64_64', 'socketcall']);
    expect(sys(f, 'mkdir')).toBe(EPERM);
    // socketcall exists on i386: known once SCMP_ARCH_X86 is in.
    const c = compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86'], syscalls: [{ names: ['socketcall'], action: 'SCMP_ACT_ERRNO' }] });
    expect(c.unknownSyscalls).toEqual([]);
    expect(run(c.program, { nr: 102, arch: AUDIT_ARCH_I386 })).toBe(EPERM);
  });

  it('like runc, numbers above the largest the profile names get ENOSYS unless the default allows', () => {
    const profile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read', 'exit_group'], action: 'SCMP_ACT_ALLOW' }] };
    const f = compile(profile);
    expect(sys(f, 'read')).toBe(ALLOW);
    expect(sys(f, 'getpid')).toBe(EPERM); // 39 < exit_group (231)
    expect(f(232)).toBe(ENOSYS);
    expect(f(1000)).toBe(ENOSYS);
    expect(f(-1)).toBe(EPERM);
    const off = compile(profile, { enosysAboveProfile: false });
    expect(off(1000)).toBe(EPERM);
    const allow = compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO' }] });
    expect(allow(1000)).toBe(ALLOW);
  });
});

describe('flags', () => {
  it('maps SECCOMP_FILTER_FLAG_* names to bits', () => {
    expect(compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW' }).flags).toBe(0);
    expect(compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_LOG', 'SECCOMP_FILTER_FLAG_SPEC_ALLOW'] }).flags).toBe(6);
    expect(compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_TSYNC'] }).flags).toBe(1);
    expect(compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV'] }).flags).toBe(0);
  });
});

describe('malformed or unsupported profiles', () => {
  const bad: [string, unknown, RegExp][] = [
    ['not an object', 'SCMP_ACT_ALLOW', /must be an object/],
    ['no defaultAction', { syscalls: [] }, /defaultAction: action must be a string/],
    ['bad default action', { defaultAction: 'SCMP_ACT_MAYBE' }, /defaultAction: unknown action "SCMP_ACT_MAYBE"/],
    ['bad rule action', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'ALLOW' }] }, /syscalls\[0\]: unknown action "ALLOW"/],
    ['notify', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_NOTIFY' }] }, /SCMP_ACT_NOTIFY .* not supported/],
    ['notify default', { defaultAction: 'SCMP_ACT_NOTIFY' }, /not supported/],
    ['listenerPath', { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/seccomp.sock' }, /listenerPath .* not supported/],
    ['new listener flag', { defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_NEW_LISTENER'] }, /NEW_LISTENER .* not supported/],
    ['unknown flag', { defaultAction: 'SCMP_ACT_ALLOW', flags: ['SECCOMP_FILTER_FLAG_FAST'] }, /unknown flag "SECCOMP_FILTER_FLAG_FAST"/],
    ['bad op', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 1, op: 'SCMP_CMP_LIKE' }] }] }, /syscalls\[0\]\.args\[0\]: unknown op "SCMP_CMP_LIKE"/],
    ['index 6', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 6, value: 1, op: 'SCMP_CMP_EQ' }] }] }, /index 6 is not in 0\.\.5/],
    ['index -1', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: -1, value: 1, op: 'SCMP_CMP_EQ' }] }] }, /index -1 is not in 0\.\.5/],
    ['value not an integer', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: '1', op: 'SCMP_CMP_EQ' }] }] }, /value must be an unsigned 64-bit integer/],
    ['negative value', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: -1, op: 'SCMP_CMP_EQ' }] }] }, /out of the unsigned 64-bit range/],
    ['value >= 2^64', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 2n ** 64n, op: 'SCMP_CMP_EQ' }] }] }, /out of the unsigned 64-bit range/],
    ['value rounded by JSON.parse', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: [{ index: 0, value: 2 ** 60 + 2 ** 10, op: 'SCMP_CMP_EQ' }] }] }, /above 2\^53 and may have been rounded by JSON\.parse; parse config\.json with preciseJsonReviver/],
    ['errnoRet with ALLOW', { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', errnoRet: 1 }] }, /errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE/],
    ['defaultErrnoRet with KILL', { defaultAction: 'SCMP_ACT_KILL', defaultErrnoRet: 1 }, /errnoRet is only valid/],
    ['errnoRet out of range', { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 70000 }, /errno 70000 is not an integer in 0\.\.65535/],
    ['names not an array', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: 'read', action: 'SCMP_ACT_ERRNO' }] }, /names must be an array of strings/],
    ['args not an array', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ERRNO', args: {} }] }, /args must be an array/],
    ['syscalls not an array', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: {} }, /syscalls must be an array/],
  ];
  for (const [what, profile, msg] of bad) {
    it(`${what} -> one-line SeccompError`, () => {
      let err: unknown;
      try { compileSeccomp(profile); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(SeccompError);
      const m = (err as Error).message;
      expect(m).toMatch(/^seccomp: /);
      expect(m).toMatch(msg);
      expect(m).not.toContain('\n');
    });
  }

  it('accepts null args/architectures/flags/syscalls and empty names (Go zero values)', () => {
    const f = compile({ defaultAction: 'SCMP_ACT_ALLOW', architectures: null, flags: null, syscalls: [{ names: [], action: 'SCMP_ACT_ERRNO' }, { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', args: null }] });
    expect(sys(f, 'mkdir')).toBe(EPERM);
    expect(compile({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: null }).instructions).toBeGreaterThan(0);
  });
});

describe('program size and jump range', () => {
  it('every x86_64, i386 and x32 syscall with its own errno (many distinct returns per block)', () => {
    const names = [...new Set([...SYSCALLS_X86_64.keys(), ...SYSCALLS_X86.keys(), ...SYSCALLS_X32.keys()])];
    const errno = (n: string): number => 1 + (names.indexOf(n) % 4000);
    const c = compileSeccomp({
      defaultAction: 'SCMP_ACT_KILL_PROCESS',
      architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
      syscalls: names.map((n) => ({ names: [n], action: 'SCMP_ACT_ERRNO', errnoRet: errno(n) })),
    });
    validate(c.program);
    expect(c.instructions).toBeLessThanOrEqual(4096);
    expect(c.unknownSyscalls).toEqual([]);
    for (const [n, nr] of SYSCALLS_X86_64) expect([n, run(c.program, { nr, arch: AUDIT_ARCH_X86_64 }, { validate: false })]).toEqual([n, ERRNO(errno(n))]);
    for (const [n, nr] of SYSCALLS_X86) expect([n, run(c.program, { nr, arch: AUDIT_ARCH_I386 }, { validate: false })]).toEqual([n, ERRNO(errno(n))]);
    for (const [n, nr] of SYSCALLS_X32) expect([n, run(c.program, { nr: X32_SYSCALL_BIT | nr, arch: AUDIT_ARCH_X86_64 }, { validate: false })]).toEqual([n, ERRNO(errno(n))]);
    // Holes in the table and numbers past the end.
    expect(run(c.program, { nr: 1000, arch: AUDIT_ARCH_X86_64 })).toBe(ENOSYS);
  });

  it('a syscall with hundreds of argument rules (a body far beyond 255 instructions)', () => {
    const rules = Array.from({ length: 300 }, (_, i) => ({
      names: ['ioctl'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 + i, args: [{ index: 1, value: 0x1_0000_0000n * BigInt(i) + BigInt(i), op: 'SCMP_CMP_EQ' }],
    }));
    const f = compile({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['read', 'write', 'openat', 'close'], action: 'SCMP_ACT_LOG' }, ...rules, { names: ['mkdir', 'rmdir', 'clone3'], action: 'SCMP_ACT_TRAP' }],
    });
    for (let i = 0; i < 300; i += 7) expect(sys(f, 'ioctl', [0, 0x1_0000_0000n * BigInt(i) + BigInt(i)])).toBe(ERRNO(1 + i));
    expect(sys(f, 'ioctl', [0, 0x1_0000_0000n * 3n + 4n])).toBe(ALLOW);
    expect(sys(f, 'read')).toBe(SECCOMP_RET_LOG);
    expect(sys(f, 'clone3')).toBe(SECCOMP_RET_TRAP);
    expect(sys(f, 'mkdir')).toBe(SECCOMP_RET_TRAP);
    expect(sys(f, 'getpid')).toBe(ALLOW);
  });

  it('refuses a profile that needs more than 4096 instructions', () => {
    const rules = Array.from({ length: 1000 }, (_, i) => ({ names: ['ioctl'], action: 'SCMP_ACT_ERRNO', args: [{ index: 1, value: i, op: 'SCMP_CMP_EQ' }] }));
    expect(() => compileSeccomp({ defaultAction: 'SCMP_ACT_ALLOW', syscalls: rules })).toThrow(/^seccomp: the profile compiles to \d+ BPF instructions, more than the kernel's limit of 4096$/);
  });
});
