// Engine selection: kvm only where /dev/kvm can run a standard guest;
// PVM and missing KVM fall back to tcg with a one-line reason; env and
// annotation force a choice.
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { selectEngine } from '../../src/vmm/engines/select.js';

function fakeHost(opts: { kvm: boolean; pvm: boolean }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-select-'));
  fs.mkdirSync(path.join(dir, 'module'));
  if (opts.kvm) fs.writeFileSync(path.join(dir, 'kvm'), '');
  if (opts.pvm) fs.mkdirSync(path.join(dir, 'module/kvm_pvm'));
  return { devKvm: path.join(dir, 'kvm'), sysModule: path.join(dir, 'module'), env: {}, cleanup: () => fs.rmSync(dir, { recursive: true }) };
}

describe('selectEngine', () => {
  it('picks kvm on a host with a usable, non-PVM /dev/kvm', () => {
    const h = fakeHost({ kvm: true, pvm: false });
    try {
      expect(selectEngine(h)).toEqual({ engine: 'kvm', reason: expect.stringMatching(/usable/) });
    } finally { h.cleanup(); }
  });

  it('falls back to tcg on PVM and says why in one line', () => {
    const h = fakeHost({ kvm: true, pvm: true });
    try {
      const c = selectEngine(h);
      expect(c.engine).toBe('tcg');
      expect(c.reason).toMatch(/PVM \(module kvm_pvm\).*cannot run its user space/);
      expect(c.reason).not.toMatch(/\n/);
    } finally { h.cleanup(); }
  });

  it('falls back to tcg without /dev/kvm', () => {
    const h = fakeHost({ kvm: false, pvm: false });
    try {
      expect(selectEngine(h)).toMatchObject({ engine: 'tcg', reason: expect.stringMatching(/does not exist/) });
    } finally { h.cleanup(); }
  });

  it('is forced by HUSK_ENGINE, then the husk.engine annotation, then the caller', () => {
    const h = fakeHost({ kvm: true, pvm: true });
    try {
      expect(selectEngine({ ...h, env: { HUSK_ENGINE: 'kvm' } })).toEqual({ engine: 'kvm', reason: 'HUSK_ENGINE=kvm' });
      expect(selectEngine({ ...h, annotations: { 'husk.engine': 'kvm' } }).engine).toBe('kvm');
      expect(selectEngine({ ...h, env: { HUSK_ENGINE: 'tcg' }, annotations: { 'husk.engine': 'kvm' } }).engine).toBe('tcg');
      expect(selectEngine({ ...h, force: 'kvm', env: { HUSK_ENGINE: 'tcg' } }).engine).toBe('kvm');
      expect(() => selectEngine({ ...h, env: { HUSK_ENGINE: 'hvf' } })).toThrow(/kvm or tcg/);
    } finally { h.cleanup(); }
  });

  it('on this machine: agrees with /sys/module/kvm_pvm', () => {
    const c = selectEngine({ env: {} });
    if (fs.existsSync('/sys/module/kvm_pvm')) expect(c.engine).toBe('tcg');
    else if (!fs.existsSync('/dev/kvm')) expect(c.engine).toBe('tcg');
  });
});
