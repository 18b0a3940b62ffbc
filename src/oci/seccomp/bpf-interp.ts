// A small classic-BPF interpreter for seccomp programs, used by the tests to
// run a compiled filter on synthetic struct seccomp_data. `validate()` applies
// the checks the kernel makes when a filter is installed (bpf_check_classic +
// seccomp_check_filter), so a program that passes here loads there.

import {
  BPF_A, BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_DIV, BPF_IMM, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_JSET,
  BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MAXINSNS, BPF_MEM, BPF_MEMWORDS, BPF_MISC, BPF_MUL, BPF_NEG, BPF_OR,
  BPF_RET, BPF_RSH, BPF_ST, BPF_STX, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X, BPF_XOR, SECCOMP_DATA_SIZE,
  decode, type Insn,
} from './bpf.js';

export interface SeccompData {
  /** Syscall number (as the u32 the filter sees; -1 may be given as 0xffffffff or -1). */
  nr: number;
  arch: number;
  instructionPointer?: bigint;
  /** Up to six 64-bit arguments (missing ones are 0). */
  args?: readonly (bigint | number)[];
}

const ALU_OPS = new Set([BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_AND, BPF_OR, BPF_XOR, BPF_LSH, BPF_RSH, BPF_NEG]);
const JMP_OPS = new Set([BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET]);

function toInsns(program: Uint8Array | readonly Insn[]): readonly Insn[] {
  return program instanceof Uint8Array ? decode(program) : program;
}

/** Throws (one line) if the kernel would refuse to install this seccomp program. */
export function validate(program: Uint8Array | readonly Insn[]): void {
  const p = toInsns(program);
  if (p.length === 0 || p.length > BPF_MAXINSNS) throw new Error(`BPF: program length ${p.length} not in 1..${BPF_MAXINSNS}`);
  p.forEach((i, pc) => {
    const cls = i.code & 0x07;
    const bad = (why: string): never => { throw new Error(`BPF: instruction ${pc} (code 0x${i.code.toString(16)}): ${why}`); };
    switch (cls) {
      case BPF_LD:
        if (i.code === (BPF_LD | BPF_W | BPF_ABS)) {
          if (i.k % 4 !== 0 || i.k >= SECCOMP_DATA_SIZE) bad(`load offset ${i.k} not an aligned word of seccomp_data`);
        } else if (i.code === (BPF_LD | BPF_W | BPF_LEN) || i.code === (BPF_LD | BPF_IMM)) {
          // allowed
        } else if (i.code === (BPF_LD | BPF_MEM)) {
          if (i.k >= BPF_MEMWORDS) bad('scratch index out of range');
        } else bad('load mode not allowed in seccomp');
        break;
      case BPF_LDX:
        if (i.code === (BPF_LDX | BPF_W | BPF_LEN) || i.code === (BPF_LDX | BPF_IMM)) break;
        if (i.code === (BPF_LDX | BPF_MEM)) { if (i.k >= BPF_MEMWORDS) bad('scratch index out of range'); break; }
        bad('load mode not allowed in seccomp');
        break;
      case BPF_ST:
      case BPF_STX:
        if (i.code !== cls) bad('bad store');
        if (i.k >= BPF_MEMWORDS) bad('scratch index out of range');
        break;
      case BPF_ALU: {
        const op = i.code & 0xf0;
        if (!ALU_OPS.has(op) || (i.code & ~0xf8) !== BPF_ALU) bad('ALU op not allowed in seccomp');
        if (op === BPF_DIV && (i.code & BPF_X) === BPF_K && i.k === 0) bad('division by constant 0');
        break;
      }
      case BPF_JMP: {
        const op = i.code & 0xf0;
        if (!JMP_OPS.has(op) || (i.code & ~0xf8) !== BPF_JMP) bad('jump op not allowed');
        if (op === BPF_JA) {
          if (i.code !== (BPF_JMP | BPF_JA)) bad('bad ja');
          if (pc + 1 + i.k >= p.length) bad(`ja +${i.k} leaves the program`);
        } else if (pc + 1 + i.jt >= p.length || pc + 1 + i.jf >= p.length) bad(`jump +${i.jt}/+${i.jf} leaves the program`);
        break;
      }
      case BPF_RET:
        if (i.code !== (BPF_RET | BPF_K) && i.code !== (BPF_RET | BPF_A)) bad('bad ret');
        break;
      case BPF_MISC:
        if (i.code !== (BPF_MISC | BPF_TAX) && i.code !== (BPF_MISC | BPF_TXA)) bad('bad misc op');
        break;
    }
  });
  if ((p[p.length - 1]!.code & 0x07) !== BPF_RET) throw new Error('BPF: the last instruction is not a return');
}

/** The 64 bytes of struct seccomp_data (little-endian). */
export function seccompData(d: SeccompData): Uint8Array {
  const b = new Uint8Array(SECCOMP_DATA_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, d.nr >>> 0, true);
  v.setUint32(4, d.arch >>> 0, true);
  v.setBigUint64(8, BigInt.asUintN(64, d.instructionPointer ?? 0n), true);
  (d.args ?? []).forEach((a, i) => v.setBigUint64(16 + 8 * i, BigInt.asUintN(64, BigInt(a)), true));
  return b;
}

/** Runs the program on `data` and returns the 32-bit SECCOMP_RET_* value. */
export function run(program: Uint8Array | readonly Insn[], data: SeccompData, opts: { validate?: boolean } = {}): number {
  const p = toInsns(program);
  if (opts.validate !== false) validate(p);
  const view = new DataView(seccompData(data).buffer);
  const mem = new Uint32Array(BPF_MEMWORDS);
  let A = 0;
  let X = 0;
  let steps = 0;
  for (let pc = 0; pc < p.length; pc++) {
    if (++steps > p.length) throw new Error('BPF: ran more steps than instructions (backward jump?)');
    const i = p[pc]!;
    const cls = i.code & 0x07;
    const src = (i.code & BPF_X) === BPF_X ? X : i.k;
    switch (cls) {
      case BPF_LD:
        if ((i.code & 0xe0) === BPF_ABS) A = view.getUint32(i.k, true);
        else if ((i.code & 0xe0) === BPF_LEN) A = SECCOMP_DATA_SIZE;
        else if ((i.code & 0xe0) === BPF_MEM) A = mem[i.k]!;
        else A = i.k >>> 0;
        break;
      case BPF_LDX:
        if ((i.code & 0xe0) === BPF_LEN) X = SECCOMP_DATA_SIZE;
        else if ((i.code & 0xe0) === BPF_MEM) X = mem[i.k]!;
        else X = i.k >>> 0;
        break;
      case BPF_ST: mem[i.k] = A; break;
      case BPF_STX: mem[i.k] = X; break;
      case BPF_ALU:
        switch (i.code & 0xf0) {
          case BPF_ADD: A = (A + src) >>> 0; break;
          case BPF_SUB: A = (A - src) >>> 0; break;
          case BPF_MUL: A = Math.imul(A, src) >>> 0; break;
          case BPF_DIV: if (src === 0) return 0; A = Math.floor(A / src) >>> 0; break;
          case BPF_AND: A = (A & src) >>> 0; break;
          case BPF_OR: A = (A | src) >>> 0; break;
          case BPF_XOR: A = (A ^ src) >>> 0; break;
          case BPF_LSH: A = src >= 32 ? 0 : (A << src) >>> 0; break;
          case BPF_RSH: A = src >= 32 ? 0 : A >>> src; break;
          case BPF_NEG: A = (-A) >>> 0; break;
        }
        break;
      case BPF_JMP: {
        const op = i.code & 0xf0;
        if (op === BPF_JA) { pc += i.k; break; }
        const s = src >>> 0;
        const cond = op === BPF_JEQ ? A === s : op === BPF_JGT ? A > s : op === BPF_JGE ? A >= s : (A & s) !== 0;
        pc += cond ? i.jt : i.jf;
        break;
      }
      case BPF_RET:
        return ((i.code & 0x18) === BPF_A ? A : i.k) >>> 0;
      case BPF_MISC:
        if ((i.code & 0xf8) === BPF_TXA) A = X; else X = A;
        break;
    }
  }
  throw new Error('BPF: fell off the end of the program');
}
