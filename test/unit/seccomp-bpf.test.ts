// The BPF assembler (labels, long-jump trampolines) and the test interpreter.
import { describe, expect, it } from 'vitest';
import {
  Assembler, BPF_ABS, BPF_JA, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, NEXT, decode, encode, type Insn,
} from '../../src/oci/seccomp/bpf.js';
import { run, seccompData, validate } from '../../src/oci/seccomp/bpf-interp.js';

const ins = (code: number, jt: number, jf: number, k: number): Insn => ({ code, jt, jf, k });

describe('BPF encoding', () => {
  it('is struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, little-endian', () => {
    const b = encode([ins(0x15, 1, 2, 0xc000003e)]);
    expect([...b]).toEqual([0x15, 0x00, 0x01, 0x02, 0x3e, 0x00, 0x00, 0xc0]);
    expect(decode(b)).toEqual([ins(0x15, 1, 2, 0xc000003e)]);
    expect(() => decode(new Uint8Array(7))).toThrow(/whole number/);
  });

  it('seccomp_data puts args low half first', () => {
    const d = seccompData({ nr: -1, arch: 0xc000003e, args: [0x1122334455667788n] });
    const v = new DataView(d.buffer);
    expect(v.getUint32(0, true)).toBe(0xffffffff);
    expect(v.getUint32(16, true)).toBe(0x55667788);
    expect(v.getUint32(20, true)).toBe(0x11223344);
  });
});

describe('BPF assembler', () => {
  it('resolves short jumps to labels and NEXT', () => {
    const a = new Assembler();
    const yes = a.label();
    a.ld(0).jeq(7, yes, NEXT).ret(1).bind(yes).ret(2);
    const p = a.assemble();
    expect(p).toHaveLength(4);
    expect(p[1]).toEqual(ins(BPF_JMP | BPF_JEQ | BPF_K, 1, 0, 7));
    expect(run(p, { nr: 7, arch: 0 })).toBe(2);
    expect(run(p, { nr: 8, arch: 0 })).toBe(1);
  });

  it('chains a BPF_JA trampoline for targets beyond 255, on either branch', () => {
    for (const far of [256, 300, 1500]) {
      const a = new Assembler();
      const t = a.label('t');
      const f = a.label('f');
      a.ld(0).jeq(1, t, NEXT).jeq(2, NEXT, f).ret(22);
      for (let i = 0; i < far; i++) a.ret(100 + i); // padding
      a.bind(t).ret(11);
      for (let i = 0; i < far; i++) a.ret(100 + i);
      a.bind(f).ret(33);
      const p = a.assemble();
      validate(p);
      expect(p.filter((x) => x.code === (BPF_JMP | BPF_JA))).toHaveLength(2);
      expect(run(p, { nr: 1, arch: 0 })).toBe(11);
      expect(run(p, { nr: 2, arch: 0 })).toBe(22);
      expect(run(p, { nr: 3, arch: 0 })).toBe(33);
    }
  });

  it('relaxes repeatedly when trampolines push other jumps out of reach', () => {
    const a = new Assembler();
    const end = a.label('end');
    a.ld(0);
    for (let i = 0; i < 300; i++) a.jeq(i, end);
    a.ret(1).bind(end).ret(2);
    const p = a.assemble();
    validate(p);
    for (const nr of [0, 1, 150, 299]) expect(run(p, { nr, arch: 0 })).toBe(2);
    expect(run(p, { nr: 300, arch: 0 })).toBe(1);
  });

  it('refuses unbound labels and backward jumps', () => {
    const a = new Assembler();
    a.ja('nowhere').ret(0);
    expect(() => a.assemble()).toThrow(/never bound/);
    const b = new Assembler();
    const back = b.label();
    b.bind(back).ld(0).jeq(1, back).ret(0);
    expect(() => b.assemble()).toThrow(/backward/);
  });
});

describe('BPF validation (the kernel checks)', () => {
  const ld = (k: number): Insn => ins(BPF_LD | BPF_W | BPF_ABS, 0, 0, k);
  const ret = (k: number): Insn => ins(BPF_RET | BPF_K, 0, 0, k);
  it('accepts a minimal filter and rejects broken ones', () => {
    expect(() => validate([ret(0x7fff0000)])).not.toThrow();
    expect(() => validate([])).toThrow(/length/);
    expect(() => validate(Array.from({ length: 4097 }, () => ret(0)))).toThrow(/length/);
    expect(() => validate([ld(0)])).toThrow(/last instruction/);
    expect(() => validate([ld(2), ret(0)])).toThrow(/aligned/);
    expect(() => validate([ld(64), ret(0)])).toThrow(/aligned/);
    expect(() => validate([ins(BPF_JMP | BPF_JEQ, 5, 0, 0), ret(0)])).toThrow(/leaves/);
    expect(() => validate([ins(BPF_JMP | BPF_JA, 0, 0, 1), ret(0)])).toThrow(/leaves/);
    expect(() => validate([ins(BPF_LD | 0x08 | BPF_ABS, 0, 0, 0), ret(0)])).toThrow(/not allowed/);
  });
});
