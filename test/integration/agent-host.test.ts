// The guest agent's own tests (native/agent/test): its protocol handling on
// a socketpair (`make test`) and its PID 1 paths in PID, mount and network
// namespaces of this host (`make nstest`, root), e.g. the deferred root of
// pooled VMs. Run here so that CI runs them with everything else.
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import path from 'node:path';
import { ROOT_DIR } from '../helpers/husk.js';

const AGENT = path.join(ROOT_DIR, 'native/agent');

describe('guest agent host tests', () => {
  for (const target of ['test', 'nstest']) {
    it(`make -C native/agent ${target}`, async () => {
      const r = await execa('make', ['-s', '-C', AGENT, target], { reject: false, all: true });
      expect(r.exitCode, String(r.all).split('\n').filter((l) => !l.startsWith('husk-agent:')).slice(-30).join('\n')).toBe(0);
    });
  }
});
