// `husk --debug run` says which engine it chose and why. On this project's
// machines /dev/kvm is PVM, so the choice must be tcg with that reason (and
// the container still runs).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { bundle, husk, scratch, uniqueId } from '../helpers/husk.js';
import { selectEngine } from '../../src/vmm/engines/select.js';

let tmp: ReturnType<typeof scratch>;
beforeAll(() => { tmp = scratch(); });
afterAll(() => tmp.cleanup());

const text = (b: unknown) => Buffer.from(b as Uint8Array).toString();

describe('engine selection in husk run', () => {
  it('reports the engine and its reason in --debug output', async () => {
    const b = bundle(path.join(tmp.dir, 'b'), { args: ['true'] });
    const env = { ...process.env };
    delete env.HUSK_ENGINE;
    const r = await husk(path.join(tmp.dir, 'state'), ['--debug', 'run', '--bundle', b, uniqueId('sel')], { env, extendEnv: false });
    const err = text(r.stderr);
    expect(r.exitCode, err).toBe(0);
    const expected = selectEngine({ env: {} });
    expect(err).toContain(`engine ${expected.engine}: ${expected.reason}`);
    if (fs.existsSync('/sys/module/kvm_pvm')) {
      expect(err).toMatch(/engine tcg: \/dev\/kvm is PVM \(module kvm_pvm\)/);
      expect(err).toMatch(/engine tcg exited/);
    }
  });
});
