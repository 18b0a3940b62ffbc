// Classic BPF (struct sock_filter) for seccomp: opcode constants, encoding,
// and a small assembler with symbolic labels that turns out-of-range
// conditional jumps into chained long jumps.
//
// struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; } -- 8 bytes, host
// (= little-endian, x86_64) byte order. Jumps are forward only: a conditional
// jump skips jt/jf (0..255) instructions, BPF_JA skips k (32 bits).

export const BPF_LD = 0x00;
export const BPF_LDX = 0x01;
export const BPF_ST = 0x02;
export const BPF_STX = 0x03;
export const BPF_ALU = 0x04;
export const BPF_JMP = 0x05;
export const BPF_RET = 0x06;
export const BPF_MISC = 0x07;

export const BPF_W = 0x00;
export const BPF_H = 0x08;
export const BPF_B = 0x10;

export const BPF_IMM = 0x00;
export const BPF_ABS = 0x20;
export const BPF_IND = 0x40;
export const BPF_MEM = 0x60;
export const BPF_LEN = 0x80;
export const BPF_MSH = 0xa0;

export const BPF_ADD = 0x00;
export const BPF_SUB = 0x10;
export const BPF_MUL = 0x20;
export const BPF_DIV = 0x30;
export const BPF_OR = 0x40;
export const BPF_AND = 0x50;
export const BPF_LSH = 0x60;
export const BPF_RSH = 0x70;
export const BPF_NEG = 0x80;
export const BPF_MOD = 0x90;
export const BPF_XOR = 0xa0;

export const BPF_JA = 0x00;
export const BPF_JEQ = 0x10;
export const BPF_JGT = 0x20;
export const BPF_JGE = 0x30;
export const BPF_JSET = 0x40;

export const BPF_K = 0x00;
export const BPF_X = 0x08;
export const BPF_A = 0x10;

export const BPF_TAX = 0x00;
export const BPF_TXA = 0x80;

export const BPF_MAXINSNS = 4096;
export const BPF_MEMWORDS = 16;

/** SECCOMP_RET_* (include/uapi/linux/seccomp.h). */
export const SECCOMP_RET_KILL_PROCESS = 0x80000000;
export const SECCOMP_RET_KILL_THREAD = 0x00000000;
export const SECCOMP_RET_TRAP = 0x00030000;
export const SECCOMP_RET_ERRNO = 0x00050000;
export const SECCOMP_RET_USER_NOTIF = 0x7fc00000;
export const SECCOMP_RET_TRACE = 0x7ff00000;
export const SECCOMP_RET_LOG = 0x7ffc0000;
export const SECCOMP_RET_ALLOW = 0x7fff0000;
export const SECCOMP_RET_ACTION_FULL = 0xffff0000;
export const SECCOMP_RET_DATA = 0x0000ffff;

/** AUDIT_ARCH_* (include/uapi/linux/audit.h). */
export const AUDIT_ARCH_X86_64 = 0xc000003e;
export const AUDIT_ARCH_I386 = 0x40000003;
export const X32_SYSCALL_BIT = 0x40000000;

/** struct seccomp_data offsets: int nr; u32 arch; u64 instruction_pointer; u64 args[6]. */
export const SECCOMP_DATA_NR = 0;
export const SECCOMP_DATA_ARCH = 4;
export const SECCOMP_DATA_IP = 8;
export const SECCOMP_DATA_SIZE = 64;
/** Offset of the low (lo) or high (hi) 32-bit half of args[i] on a little-endian machine. */
export function argOffset(index: number, half: 'lo' | 'hi'): number {
  return 16 + 8 * index + (half === 'hi' ? 4 : 0);
}

export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export function encode(program: readonly Insn[]): Uint8Array {
  const out = new Uint8Array(program.length * 8);
  const v = new DataView(out.buffer);
  program.forEach((i, n) => {
    v.setUint16(n * 8, i.code, true);
    v.setUint8(n * 8 + 2, i.jt);
    v.setUint8(n * 8 + 3, i.jf);
    v.setUint32(n * 8 + 4, i.k >>> 0, true);
  });
  return out;
}

export function decode(bytes: Uint8Array): Insn[] {
  if (bytes.byteLength % 8 !== 0) throw new Error(`BPF program of ${bytes.byteLength} bytes is not a whole number of instructions`);
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Insn[] = [];
  for (let o = 0; o < bytes.byteLength; o += 8) {
    out.push({ code: v.getUint16(o, true), jt: v.getUint8(o + 2), jf: v.getUint8(o + 3), k: v.getUint32(o + 4, true) });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Assembler

/** A jump target: a label name, or NEXT (the instruction that follows). */
export type Target = string;
export const NEXT: Target = '';

type Item =
  | { kind: 'label'; name: string }
  | { kind: 'insn'; code: number; k: number }
  | { kind: 'ja'; target: Target }
  | { kind: 'jcond'; code: number; k: number; jt: Target; jf: Target };

/**
 * Builds a program from instructions and labels. Conditional jumps name their
 * targets symbolically; `assemble()` lays the program out and, for every
 * conditional jump whose target is more than 255 instructions away, inserts a
 * `ja` trampoline right after it (a BPF_JA has a 32-bit offset), repeating
 * until every offset fits. All jumps must go forward.
 */
export class Assembler {
  private items: Item[] = [];
  private labels = new Set<string>();
  private seq = 0;

  /** A fresh, unique label name. */
  label(hint = 'L'): string {
    return `${hint}#${this.seq++}`;
  }

  bind(name: string): this {
    if (this.labels.has(name)) throw new Error(`BPF assembler: label ${name} bound twice`);
    this.labels.add(name);
    this.items.push({ kind: 'label', name });
    return this;
  }

  /** Load the 32-bit word at `offset` of struct seccomp_data into A. */
  ld(offset: number): this {
    this.items.push({ kind: 'insn', code: BPF_LD | BPF_W | BPF_ABS, k: offset });
    return this;
  }

  andK(k: number): this {
    this.items.push({ kind: 'insn', code: BPF_ALU | BPF_AND | BPF_K, k: k >>> 0 });
    return this;
  }

  ret(k: number): this {
    this.items.push({ kind: 'insn', code: BPF_RET | BPF_K, k: k >>> 0 });
    return this;
  }

  ja(target: Target): this {
    this.items.push({ kind: 'ja', target });
    return this;
  }

  /** if (A <op> k) goto jt else goto jf, with op one of BPF_JEQ/JGT/JGE/JSET. */
  jmp(op: number, k: number, jt: Target, jf: Target): this {
    this.items.push({ kind: 'jcond', code: BPF_JMP | op | BPF_K, k: k >>> 0, jt, jf });
    return this;
  }

  jeq(k: number, jt: Target, jf: Target = NEXT): this { return this.jmp(BPF_JEQ, k, jt, jf); }
  jgt(k: number, jt: Target, jf: Target = NEXT): this { return this.jmp(BPF_JGT, k, jt, jf); }
  jge(k: number, jt: Target, jf: Target = NEXT): this { return this.jmp(BPF_JGE, k, jt, jf); }
  jset(k: number, jt: Target, jf: Target = NEXT): this { return this.jmp(BPF_JSET, k, jt, jf); }

  assemble(): Insn[] {
    for (const it of this.items) {
      const refs = it.kind === 'ja' ? [it.target] : it.kind === 'jcond' ? [it.jt, it.jf] : [];
      for (const r of refs) if (r !== NEXT && !this.labels.has(r)) throw new Error(`BPF assembler: label ${r} is never bound`);
    }
    // far[n] = which targets of the n-th item get a trampoline after it.
    const far = new Map<number, { jt: boolean; jf: boolean }>();
    for (;;) {
      // Layout: the position of every item (a label takes none), with the
      // trampolines of a conditional jump placed directly after it.
      const pos: number[] = [];
      const labelPos = new Map<string, number>();
      let pc = 0;
      this.items.forEach((it, n) => {
        pos[n] = pc;
        if (it.kind === 'label') { labelPos.set(it.name, pc); return; }
        pc += 1;
        const f = far.get(n);
        if (f) pc += Number(f.jt) + Number(f.jf);
      });
      const resolve = (t: Target, after: number): number => (t === NEXT ? after : labelPos.get(t)!);
      let grew = false;
      const out: Insn[] = [];
      this.items.forEach((it, n) => {
        if (it.kind === 'label') return;
        const here = pos[n]!;
        if (it.kind === 'insn') { out.push({ code: it.code, jt: 0, jf: 0, k: it.k }); return; }
        const f = far.get(n) ?? { jt: false, jf: false };
        const after = here + 1 + Number(f.jt) + Number(f.jf); // first instruction past the trampolines
        if (it.kind === 'ja') {
          const off = resolve(it.target, after) - here - 1;
          if (off < 0) throw new Error('BPF assembler: backward jump');
          out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: off });
          return;
        }
        const dt = resolve(it.jt, after);
        const df = resolve(it.jf, after);
        if (dt < here + 1 || df < here + 1) throw new Error('BPF assembler: backward jump');
        // Trampolines: [ja jt-target]? [ja jf-target]? right after the jump.
        let slot = here + 1;
        const tSlot = f.jt ? slot++ : -1;
        const fSlot = f.jf ? slot++ : -1;
        const jtOff = (f.jt ? tSlot : dt) - here - 1;
        const jfOff = (f.jf ? fSlot : df) - here - 1;
        if (!f.jt && jtOff > 255) { far.set(n, { ...f, jt: true }); grew = true; }
        if (!f.jf && jfOff > 255) { far.set(n, { ...(far.get(n) ?? f), jf: true }); grew = true; }
        out.push({ code: it.code, jt: Math.min(jtOff, 255), jf: Math.min(jfOff, 255), k: it.k });
        if (f.jt) out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: dt - tSlot - 1 });
        if (f.jf) out.push({ code: BPF_JMP | BPF_JA, jt: 0, jf: 0, k: df - fSlot - 1 });
      });
      if (!grew) return out;
    }
  }
}
