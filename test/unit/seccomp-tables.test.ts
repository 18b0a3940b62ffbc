// The committed syscall tables against the uapi headers they were generated
// from (skipped where the headers are not installed), plus a few fixed points.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import { SYSCALLS_X86_64 } from '../../src/oci/seccomp/syscalls-x86_64.js';
import { SYSCALLS_X86 } from '../../src/oci/seccomp/syscalls-x86.js';
import { SYSCALLS_X32 } from '../../src/oci/seccomp/syscalls-x32.js';

const DIR = '/usr/include/x86_64-linux-gnu/asm/';

function parseHeader(file: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of fs.readFileSync(DIR + file, 'utf8').split('\n')) {
    const r = /^#define __NR_(\w+) (?:\(__X32_SYSCALL_BIT \+ (\d+)\)|(\d+))$/.exec(line);
    if (r) m.set(r[1]!, Number(r[2] ?? r[3]));
  }
  return m;
}

describe('seccomp syscall tables', () => {
  it('have well-known numbers', () => {
    expect(SYSCALLS_X86_64.get('read')).toBe(0);
    expect(SYSCALLS_X86_64.get('mkdir')).toBe(83);
    expect(SYSCALLS_X86_64.get('mkdirat')).toBe(258);
    expect(SYSCALLS_X86_64.get('clone3')).toBe(435);
    expect(SYSCALLS_X86_64.has('socketcall')).toBe(false);
    expect(SYSCALLS_X86.get('socketcall')).toBe(102);
    expect(SYSCALLS_X86.get('mkdir')).toBe(39);
    expect(SYSCALLS_X32.get('rt_sigaction')).toBe(512);
    expect(SYSCALLS_X32.has('uselib')).toBe(false);
  });

  for (const [file, table] of [['unistd_64.h', SYSCALLS_X86_64], ['unistd_32.h', SYSCALLS_X86], ['unistd_x32.h', SYSCALLS_X32]] as const) {
    it.skipIf(!fs.existsSync(DIR + file))(`match ${file}`, () => {
      const header = parseHeader(file);
      // A newer header may add syscalls; every committed entry must still agree.
      for (const [name, nr] of table) expect([name, header.get(name)]).toEqual([name, nr]);
      expect(table.size).toBeGreaterThan(300);
    });
  }
});
