// Compiles an OCI runtime-spec `linux.seccomp` object into a classic BPF
// program for an x86_64 guest kernel (the agent installs it with
// seccomp(SECCOMP_SET_MODE_FILTER, flags) right before execve; see
// docs/agent-protocol.md, RUN attributes SECCOMP and SECCOMP_FLAGS).
// https://github.com/opencontainers/runtime-spec/blob/main/config-linux.md#seccomp
//
// Program layout (all jumps forward; see bpf.ts for the assembler):
//
//   ld arch
//   jeq AUDIT_ARCH_X86_64 -> X64
//   jeq AUDIT_ARCH_I386   -> I386          (only if SCMP_ARCH_X86 is listed)
//   ret KILL_PROCESS                        (any other arch: "bad arch")
// X64:
//   ld nr
//   jset 0x40000000 -> X32                  (x32 ABI bit)
//   [jgt <largest x86_64 nr named in the profile> -> ret ERRNO(ENOSYS)
//    (nr -1 excepted)]
//   <syscall scan, x86_64 numbers>
//   ret <default>
// X32:
//   jeq 0xffffffff -> ret <default>         (nr -1: a tracer skipped the call)
//   [stub] <syscall scan, x32 numbers | 0x40000000> ret <default>
//                                           (only if SCMP_ARCH_X32 is listed,
//                                            else ret KILL_PROCESS)
// I386:
//   ld nr; [stub]; <syscall scan, i386 numbers>; ret <default>
//
// A syscall scan is a linear scan over the syscalls the profile names, by
// ascending number, cut into blocks of at most ~255 instructions:
//
//   jeq nr1 -> R_ALLOW          one instruction per syscall whose outcome
//   jeq nr2 -> R_ERRNO1         does not depend on its arguments
//   jeq nr3 -> B3               (a syscall with argument rules)
//   ...
//   ja NEXT_BLOCK               (the last block: ret <default>)
//   R_ALLOW:  ret ALLOW         one return per distinct action in the block
//   R_ERRNO1: ret ERRNO|1
//   B3: <argument rules of nr3>
//   NEXT_BLOCK: ...
//
// so every conditional jump of the scan stays within the 255-instruction
// reach of jt/jf. Whatever still ends up out of reach (a single syscall with
// hundreds of rules, say) is fixed by the assembler with a BPF_JA trampoline
// (32-bit offset) right after the jump. Syscalls with argument rules are not
// blocked from the kernel's per-syscall action cache; the others (a constant
// outcome per nr) are cached by the kernel after the first call.
//
// Semantics (documented deviations from runc + libseccomp):
//   * For one syscall, the rules WITH argument conditions are tried first, in
//     profile order, and the first whose conditions all hold decides. If none
//     does, the first unconditional rule naming the syscall decides; if there
//     is none, the default action. (libseccomp builds a decision tree whose
//     precedence between overlapping rules is not specified; "specific
//     before unconditional, then profile order" gives what the common
//     profiles mean, e.g. podman's socket(AF_NETLINK, *, NETLINK_AUDIT) ->
//     EINVAL rule followed by two broader ALLOW rules.)
//   * Several conditions in one rule are ANDed, even on the same argument
//     (runc instead splits a rule that compares one argument twice into
//     separate ORed rules; CompileOptions.sameArgumentOr restores that).
//   * Comparisons are unsigned 64-bit on every arch (i386 and x32 arguments
//     reach the filter zero-extended).
//   * A syscall rule's errnoRet defaults to EPERM (runtime-spec; it does not
//     inherit defaultErrnoRet). SCMP_ACT_TRACE uses errnoRet (default EPERM)
//     as its message, like runc.
//   * Like runc, when the default action is not ALLOW/LOG/TRACE, syscall
//     numbers above the largest one the profile names (per arch) get
//     ERRNO(ENOSYS), so that newer syscalls look unimplemented and libc
//     falls back (CompileOptions.enosysAboveProfile = false turns that off).
//   * Syscall names unknown on every enabled arch are ignored (and listed in
//     unknownSyscalls) as runc does; architectures other than
//     x86_64/x86/x32 are accepted but cannot occur on the guest.
//   * Calls from another arch get SECCOMP_RET_KILL_PROCESS (libseccomp's
//     default bad-arch action is KILL, i.e. kill-thread).
//   * Unsupported (error): SCMP_ACT_NOTIFY, listenerPath,
//     SECCOMP_FILTER_FLAG_NEW_LISTENER. SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
//     only matters with a listener and is dropped.

import {
  AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, Assembler, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_MAXINSNS, NEXT, SECCOMP_DATA_ARCH,
  SECCOMP_DATA_NR, SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_KILL_THREAD,
  SECCOMP_RET_LOG, SECCOMP_RET_TRACE, SECCOMP_RET_TRAP, X32_SYSCALL_BIT, argOffset, encode, type Target,
} from './bpf.js';
import { SYSCALLS_X32 } from './syscalls-x32.js';
import { SYSCALLS_X86 } from './syscalls-x86.js';
import { SYSCALLS_X86_64 } from './syscalls-x86_64.js';

export interface SeccompArg {
  index: number;
  value: number | bigint;
  valueTwo?: number | bigint;
  op: string;
}

export interface SeccompSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[] | null;
}

/** runtime-spec LinuxSeccomp. */
export interface SeccompProfile {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[] | null;
  flags?: string[] | null;
  listenerPath?: string;
  listenerMetadata?: string;
  syscalls?: SeccompSyscall[] | null;
}

export interface CompileOptions {
  /** runc's -ENOSYS for syscall numbers above the profile's largest (default true). */
  enosysAboveProfile?: boolean;
  /** runc's quirk: a rule comparing one argument more than once becomes one rule per condition, ORed (default false: ANDed). */
  sameArgumentOr?: boolean;
}

export interface CompiledSeccomp {
  /** struct sock_filter[], little-endian, for the SECCOMP RUN attribute. */
  program: Uint8Array;
  /** SECCOMP_FILTER_FLAG_* bits for the SECCOMP_FLAGS RUN attribute. */
  flags: number;
  /** Syscall names (deduplicated, in profile order) known on none of the filtered arches; ignored. */
  unknownSyscalls: string[];
  /** Listed architectures that cannot occur on the x86_64 guest (accepted and ignored). */
  ignoredArchitectures: string[];
  /** program.length / 8. */
  instructions: number;
}

export class SeccompError extends Error {
  override name = 'SeccompError';
}

const EPERM = 1;
const ENOSYS = 38;
const BAD_ARCH_ACTION = SECCOMP_RET_KILL_PROCESS;

export const SECCOMP_FILTER_FLAG_TSYNC = 1;
export const SECCOMP_FILTER_FLAG_LOG = 2;
export const SECCOMP_FILTER_FLAG_SPEC_ALLOW = 4;
export const SECCOMP_FILTER_FLAG_NEW_LISTENER = 8;
export const SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 16;
export const SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 32;

const FLAGS: Record<string, number> = {
  SECCOMP_FILTER_FLAG_TSYNC,
  SECCOMP_FILTER_FLAG_LOG,
  SECCOMP_FILTER_FLAG_SPEC_ALLOW,
  SECCOMP_FILTER_FLAG_TSYNC_ESRCH,
  SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV: 0, // listener-only: dropped
};

const X86_ARCHES = new Set(['SCMP_ARCH_X86_64', 'SCMP_ARCH_NATIVE', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
const OTHER_ARCHES = new Set([
  'SCMP_ARCH_ARM', 'SCMP_ARCH_AARCH64', 'SCMP_ARCH_MIPS', 'SCMP_ARCH_MIPS64', 'SCMP_ARCH_MIPS64N32', 'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64', 'SCMP_ARCH_MIPSEL64N32', 'SCMP_ARCH_PPC', 'SCMP_ARCH_PPC64', 'SCMP_ARCH_PPC64LE', 'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X', 'SCMP_ARCH_PARISC', 'SCMP_ARCH_PARISC64', 'SCMP_ARCH_RISCV64', 'SCMP_ARCH_LOONGARCH64',
  'SCMP_ARCH_M68K', 'SCMP_ARCH_SH', 'SCMP_ARCH_SHEB',
]);

const OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;
type Op = (typeof OPS)[number];

interface Cond {
  index: number;
  op: Op;
  value: bigint;
  valueTwo: bigint;
}

interface Rule {
  action: number;
  conds: Cond[];
}

/** What one syscall number does on one arch. */
interface Entry {
  nr: number;
  /** Rules with conditions, in profile order. */
  conds: Rule[];
  /** Action of the first unconditional rule, if any. */
  uncond?: number;
}

function fail(msg: string): never {
  throw new SeccompError(`seccomp: ${msg}`);
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function errnoValue(v: unknown, where: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) fail(`${where}: errno ${JSON.stringify(v)} is not an integer in 0..65535`);
  return v as number;
}

function parseAction(name: unknown, errnoRet: number | undefined, where: string): number {
  if (typeof name !== 'string') return fail(`${where}: action must be a string`);
  const withErrno = (base: number): number => (base | (errnoRet ?? EPERM)) >>> 0;
  let act: number;
  switch (name) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD': act = SECCOMP_RET_KILL_THREAD; break;
    case 'SCMP_ACT_KILL_PROCESS': act = SECCOMP_RET_KILL_PROCESS; break;
    case 'SCMP_ACT_TRAP': act = SECCOMP_RET_TRAP; break;
    case 'SCMP_ACT_ALLOW': act = SECCOMP_RET_ALLOW; break;
    case 'SCMP_ACT_LOG': act = SECCOMP_RET_LOG; break;
    case 'SCMP_ACT_ERRNO': return withErrno(SECCOMP_RET_ERRNO);
    case 'SCMP_ACT_TRACE': return withErrno(SECCOMP_RET_TRACE);
    case 'SCMP_ACT_NOTIFY': return fail(`${where}: SCMP_ACT_NOTIFY (seccomp user notification) is not supported by husk`);
    default: return fail(`${where}: unknown action ${JSON.stringify(name)}`);
  }
  if (errnoRet !== undefined) fail(`${where}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not ${name}`);
  return act >>> 0;
}

function u64(v: unknown, where: string): bigint {
  if (v === undefined || v === null) return 0n;
  let b: bigint;
  if (typeof v === 'bigint') b = v;
  else if (typeof v === 'number' && Number.isSafeInteger(v)) b = BigInt(v);
  else if (typeof v === 'number' && Number.isInteger(v) && v > 0) {
    // JSON.parse rounds integers above 2^53: refuse rather than filter on a different value.
    return fail(`${where} ${v} is above 2^53 and may have been rounded by JSON.parse; parse config.json with preciseJsonReviver`);
  } else return fail(`${where} must be an unsigned 64-bit integer, got ${JSON.stringify(v)}`);
  if (b < 0n || b > 0xffffffffffffffffn) fail(`${where} ${b} is out of the unsigned 64-bit range`);
  return b;
}

/**
 * A JSON.parse reviver that turns integers beyond Number.MAX_SAFE_INTEGER into
 * exact bigints (from the source text), so 64-bit seccomp argument values
 * survive: JSON.parse(text, preciseJsonReviver).
 */
export function preciseJsonReviver(this: unknown, _key: string, value: unknown, context?: { source?: string }): unknown {
  if (typeof value === 'number' && !Number.isSafeInteger(value) && context?.source !== undefined && /^-?\d+$/.test(context.source)) return BigInt(context.source);
  return value;
}

function parseRule(s: unknown, i: number, opts: CompileOptions): { names: string[]; rules: Rule[] } {
  const where = `syscalls[${i}]`;
  if (!isObject(s)) return fail(`${where} must be an object`);
  if (!Array.isArray(s.names) || s.names.some((n) => typeof n !== 'string')) fail(`${where}: names must be an array of strings`);
  const action = parseAction(s.action, errnoValue(s.errnoRet, where), where);
  const args = s.args ?? [];
  if (!Array.isArray(args)) return fail(`${where}: args must be an array`);
  const conds = args.map((a: unknown, j): Cond => {
    const w = `${where}.args[${j}]`;
    if (!isObject(a)) return fail(`${w} must be an object`);
    if (typeof a.index !== 'number' || !Number.isInteger(a.index) || a.index < 0 || a.index > 5) fail(`${w}: index ${JSON.stringify(a.index)} is not in 0..5`);
    if (!OPS.includes(a.op as Op)) fail(`${w}: unknown op ${JSON.stringify(a.op)}`);
    return { index: a.index as number, op: a.op as Op, value: u64(a.value, `${w}.value`), valueTwo: u64(a.valueTwo, `${w}.valueTwo`) };
  });
  const counts = new Map<number, number>();
  conds.forEach((c) => counts.set(c.index, (counts.get(c.index) ?? 0) + 1));
  const split = opts.sameArgumentOr && [...counts.values()].some((n) => n > 1);
  const rules = split ? conds.map((c) => ({ action, conds: [c] })) : [{ action, conds }];
  return { names: s.names as string[], rules };
}

/** Emits code that falls through when `c` holds and jumps to `failTo` when it does not. */
function emitCond(asm: Assembler, c: Cond, failTo: Target): void {
  const hi = Number(c.value >> 32n);
  const lo = Number(c.value & 0xffffffffn);
  const ldHi = (): void => { asm.ld(argOffset(c.index, 'hi')); };
  const ldLo = (): void => { asm.ld(argOffset(c.index, 'lo')); };
  const pass = asm.label('pass');
  switch (c.op) {
    case 'SCMP_CMP_EQ':
      ldHi(); asm.jeq(hi, NEXT, failTo);
      ldLo(); asm.jeq(lo, NEXT, failTo);
      break;
    case 'SCMP_CMP_NE':
      ldHi(); asm.jeq(hi, NEXT, pass);
      ldLo(); asm.jeq(lo, failTo, NEXT);
      break;
    case 'SCMP_CMP_GT':
    case 'SCMP_CMP_GE':
      // hi > vhi: pass; hi < vhi: fail; equal: compare the low halves.
      ldHi(); asm.jgt(hi, pass, NEXT); asm.jeq(hi, NEXT, failTo);
      ldLo(); asm.jmp(c.op === 'SCMP_CMP_GT' ? BPF_JGT : BPF_JGE, lo, NEXT, failTo);
      break;
    case 'SCMP_CMP_LT':
    case 'SCMP_CMP_LE':
      // hi < vhi: pass; hi > vhi: fail; equal: compare the low halves.
      ldHi(); asm.jge(hi, NEXT, pass); asm.jeq(hi, NEXT, failTo);
      ldLo(); asm.jmp(c.op === 'SCMP_CMP_LT' ? BPF_JGE : BPF_JGT, lo, failTo, NEXT);
      break;
    case 'SCMP_CMP_MASKED_EQ': {
      // (arg & value) == valueTwo, half by half.
      const mask = c.value;
      const want = c.valueTwo;
      if ((want & ~mask & 0xffffffffffffffffn) !== 0n) { asm.ja(failTo); break; } // can never match
      for (const [m, w, ld] of [[Number(mask >> 32n), Number(want >> 32n), ldHi], [Number(mask & 0xffffffffn), Number(want & 0xffffffffn), ldLo]] as const) {
        if (m === 0) continue; // (x & 0) == 0 always
        ld();
        if (m !== 0xffffffff) asm.andK(m);
        asm.jmp(BPF_JEQ, w, NEXT, failTo);
      }
      break;
    }
  }
  asm.bind(pass);
}

function condSizeBound(c: Cond): number {
  return c.op === 'SCMP_CMP_EQ' || c.op === 'SCMP_CMP_NE' ? 4 : c.op === 'SCMP_CMP_MASKED_EQ' ? 6 : 5;
}

function bodySizeBound(e: Entry): number {
  return 1 + e.conds.reduce((n, r) => n + 1 + r.conds.reduce((m, c) => m + condSizeBound(c), 0), 0);
}

/** The scan over one arch's syscalls (A holds nr), ending in `ret default`. */
function emitScan(asm: Assembler, entries: Entry[], defaultAction: number): void {
  // A syscall whose every outcome is the default needs no code.
  const live = entries.filter((e) => e.conds.length > 0 || (e.uncond !== undefined && e.uncond !== defaultAction));
  const REACH = 255;
  let i = 0;
  while (i < live.length) {
    const block: Entry[] = [];
    const actions = new Set<number>();
    let bodies = 0;
    while (i < live.length) {
      const e = live[i]!;
      const newAction = e.conds.length === 0 && !actions.has(e.uncond!) ? 1 : 0;
      const body = e.conds.length > 0 ? bodySizeBound(e) : 0;
      // jeqs + the closing ja/ret + returns + bodies must stay within reach of the first jeq.
      if (block.length > 0 && block.length + 1 + 1 + actions.size + newAction + bodies + body > REACH) break;
      block.push(e);
      if (e.conds.length === 0) actions.add(e.uncond!);
      bodies += body;
      i++;
    }
    const retLabel = new Map<number, string>();
    for (const a of actions) retLabel.set(a, asm.label('ret'));
    const bodyLabel = new Map<Entry, string>();
    for (const e of block) {
      let target: string;
      if (e.conds.length === 0) target = retLabel.get(e.uncond!)!;
      else { target = asm.label(`sys${e.nr}`); bodyLabel.set(e, target); }
      asm.jeq(e.nr >>> 0, target);
    }
    const last = i >= live.length;
    const nextBlock = asm.label('block');
    if (last) asm.ret(defaultAction); else asm.ja(nextBlock);
    for (const [a, l] of retLabel) asm.bind(l).ret(a);
    for (const [e, l] of bodyLabel) {
      asm.bind(l);
      for (const r of e.conds) {
        const next = asm.label('rule');
        for (const c of r.conds) emitCond(asm, c, next);
        asm.ret(r.action).bind(next);
      }
      asm.ret(e.uncond ?? defaultAction);
    }
    if (!last) asm.bind(nextBlock);
  }
  if (live.length === 0) asm.ret(defaultAction);
}

interface Section {
  entries: Entry[];
  /** Largest nr the profile names on this arch (ENOSYS stub), or undefined. */
  max?: number;
}

function buildSection(table: ReadonlyMap<string, number>, bit: number, named: { name: string; rules: Rule[] }[]): Section {
  const byNr = new Map<number, Entry>();
  let max: number | undefined;
  for (const { name, rules } of named) {
    const base = table.get(name);
    if (base === undefined) continue;
    const nr = (base | bit) >>> 0;
    max = max === undefined ? nr : Math.max(max, nr);
    let e = byNr.get(nr);
    if (!e) { e = { nr, conds: [] }; byNr.set(nr, e); }
    for (const r of rules) {
      if (r.conds.length > 0) e.conds.push(r);
      else if (e.uncond === undefined) e.uncond = r.action;
    }
  }
  return { entries: [...byNr.values()].sort((a, b) => a.nr - b.nr), max };
}

export function compileSeccomp(profile: unknown, opts: CompileOptions = {}): CompiledSeccomp {
  if (!isObject(profile)) fail('linux.seccomp must be an object');
  const p = profile as Record<string, unknown>;
  if (typeof p.listenerPath === 'string' && p.listenerPath !== '') fail('listenerPath (seccomp user notification) is not supported by husk');
  else if (p.listenerPath !== undefined && typeof p.listenerPath !== 'string') fail('listenerPath must be a string');
  const defaultAction = parseAction(p.defaultAction, errnoValue(p.defaultErrnoRet, 'defaultErrnoRet'), 'defaultAction');

  let flags = 0;
  const flagList = p.flags ?? [];
  if (!Array.isArray(flagList)) fail('flags must be an array');
  for (const f of flagList as unknown[]) {
    if (f === 'SECCOMP_FILTER_FLAG_NEW_LISTENER') fail('SECCOMP_FILTER_FLAG_NEW_LISTENER (seccomp user notification) is not supported by husk');
    if (typeof f !== 'string' || !Object.hasOwn(FLAGS, f)) fail(`unknown flag ${JSON.stringify(f)}`);
    flags |= FLAGS[f as string]!;
  }

  const archList = p.architectures ?? [];
  if (!Array.isArray(archList)) fail('architectures must be an array');
  const ignoredArchitectures: string[] = [];
  let x86 = false;
  let x32 = false;
  for (const a of archList as unknown[]) {
    if (typeof a === 'string' && X86_ARCHES.has(a)) {
      if (a === 'SCMP_ARCH_X86') x86 = true;
      if (a === 'SCMP_ARCH_X32') x32 = true;
    } else if (typeof a === 'string' && OTHER_ARCHES.has(a)) {
      if (!ignoredArchitectures.includes(a)) ignoredArchitectures.push(a);
    } else fail(`unknown architecture ${JSON.stringify(a)}`);
  }

  const sysList = p.syscalls ?? [];
  if (!Array.isArray(sysList)) fail('syscalls must be an array');
  const named: { name: string; rules: Rule[] }[] = [];
  (sysList as unknown[]).forEach((s, i) => {
    const { names, rules } = parseRule(s, i, opts);
    for (const name of names) named.push({ name, rules });
  });

  const tables: ReadonlyMap<string, number>[] = [SYSCALLS_X86_64];
  if (x86) tables.push(SYSCALLS_X86);
  if (x32) tables.push(SYSCALLS_X32);
  const unknownSyscalls = [...new Set(named.map((n) => n.name))].filter((n) => !tables.some((t) => t.has(n)));

  const allowish = [SECCOMP_RET_ALLOW, SECCOMP_RET_LOG].includes(defaultAction) || (defaultAction & 0xffff0000) >>> 0 === SECCOMP_RET_TRACE;
  const enosys = (SECCOMP_RET_ERRNO | ENOSYS) >>> 0;
  const stub = opts.enosysAboveProfile !== false && !allowish && defaultAction !== enosys;

  const asm = new Assembler();
  const emitSection = (sec: Section): void => {
    if (stub && sec.max !== undefined) {
      // nr -1 (a tracer skipped the call) is above any max: it gets the default action.
      const inRange = asm.label('inrange');
      const retEnosys = asm.label('enosys');
      asm.jgt(sec.max, NEXT, inRange).jeq(0xffffffff, NEXT, retEnosys).ret(defaultAction);
      asm.bind(retEnosys).ret(enosys).bind(inRange);
    }
    emitScan(asm, sec.entries, defaultAction);
  };

  const secX64 = asm.label('x86_64');
  const secI386 = asm.label('i386');
  const secX32 = asm.label('x32');
  asm.ld(SECCOMP_DATA_ARCH).jeq(AUDIT_ARCH_X86_64, secX64);
  if (x86) asm.jeq(AUDIT_ARCH_I386, secI386);
  asm.ret(BAD_ARCH_ACTION);

  asm.bind(secX64).ld(SECCOMP_DATA_NR).jset(X32_SYSCALL_BIT, secX32);
  emitSection(buildSection(SYSCALLS_X86_64, 0, named));

  const notSkipped = asm.label('x32nr');
  asm.bind(secX32).jeq(0xffffffff, NEXT, notSkipped).ret(defaultAction).bind(notSkipped);
  if (x32) emitSection(buildSection(SYSCALLS_X32, X32_SYSCALL_BIT, named));
  else asm.ret(BAD_ARCH_ACTION);

  if (x86) {
    asm.bind(secI386).ld(SECCOMP_DATA_NR);
    emitSection(buildSection(SYSCALLS_X86, 0, named));
  }

  const insns = asm.assemble();
  if (insns.length > BPF_MAXINSNS) fail(`the profile compiles to ${insns.length} BPF instructions, more than the kernel's limit of ${BPF_MAXINSNS}`);
  return { program: encode(insns), flags, unknownSyscalls, ignoredArchitectures, instructions: insns.length };
}
