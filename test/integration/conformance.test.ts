// The OCI conformance suite (conformance/) against husk and runc in one
// run: the runner must exit 0 and every case in conformance/expected-husk.json
// must pass for husk. runc's column is informational.
import { describe, expect, it } from 'vitest';
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { HUSK, ROOT_DIR, scratch } from '../helpers/husk.js';

const RUNC = '/usr/sbin/runc';
const RUNNER = path.join(ROOT_DIR, 'dist/conformance/runner.js');

interface Report {
  runtimes: { name: string }[];
  cases: { name: string; results: Record<string, { result: string; message?: string; reason?: string }> }[];
}

describe('OCI conformance suite', () => {
  it('husk passes every case in conformance/expected-husk.json (runc alongside)', async () => {
    const tmp = scratch('husk-conf-test-');
    try {
      const json = path.join(tmp.dir, 'report.json');
      const runtimes = ['--runtime', `husk=${HUSK}`];
      if (fs.existsSync(RUNC)) runtimes.push('--runtime', `runc=${RUNC}`);
      const r = await execa(process.execPath, [RUNNER, ...runtimes, '--json', json], { reject: false, all: true, timeout: 15 * 60_000 });
      const report = JSON.parse(fs.readFileSync(json, 'utf8')) as Report;
      const expected = (JSON.parse(fs.readFileSync(path.join(ROOT_DIR, 'conformance/expected-husk.json'), 'utf8')) as { cases: string[] }).cases;
      expect(expected.length).toBeGreaterThan(0);
      const husk = new Map(report.cases.map((c) => [c.name, c.results.husk!]));
      const notPassing = expected.filter((n) => husk.get(n)?.result !== 'pass').map((n) => `${n}: ${JSON.stringify(husk.get(n) ?? 'not run')}`);
      expect(notPassing, r.all).toEqual([]);
      expect(r.exitCode, r.all).toBe(0);
    } finally {
      tmp.cleanup();
    }
  });
});
