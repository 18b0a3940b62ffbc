// The guest kernel the tests boot is the one kernel/build.sh makes from
// kernel/patches/: its cache entry records every patch it applied.
import { describe, expect, it } from 'vitest';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../src/vmm/assets.js';

const root = projectRoot();

describe('guest kernel build', () => {
  it('was built with exactly the patches in kernel/patches/', () => {
    const entry = path.dirname(fs.realpathSync(path.join(root, 'kernel/build/vmlinux')));
    const info = JSON.parse(fs.readFileSync(path.join(entry, 'build-info.json'), 'utf8')) as { patches?: { name: string; sha256: string }[] };
    const dir = path.join(root, 'kernel/patches');
    const want = fs.readdirSync(dir).filter((f) => f.endsWith('.patch')).sort()
      .map((name) => ({ name, sha256: crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, name))).digest('hex') }));
    expect(want.length).toBeGreaterThan(0);
    expect(info.patches).toEqual(want);
  });
});
