// The commander-free path for create/start/kill/delete/vmm: it handles the
// forms clients use and hands everything else to commander; where both
// handle a call, the answer (stderr, exit code, JSON log line) is the same.
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { parseVerbArgs, tryLifecycleFast } from '../../src/cli/lifecycle-fast.js';
import { husk, scratch } from '../helpers/husk.js';

const g = { root: '/nonexistent-husk-root', debug: false };

describe('lifecycle fast path: parsing', () => {
  const flags = { '--bundle': 'value', '--pid-file': 'value', '--no-pivot': 'switch' } as const;

  it('takes flags in any order among the positionals, with = or a separate value, and aliases', () => {
    const p = parseVerbArgs(['--pid-file=/p', 'id1', '-b', '/b', '--no-pivot'], flags, { '-b': '--bundle' })!;
    expect(p.positionals).toEqual(['id1']);
    expect(p.values.get('--bundle')).toBe('/b');
    expect(p.values.get('--pid-file')).toBe('/p');
    expect(p.switches.has('--no-pivot')).toBe(true);
  });

  it('gives up on anything unusual', () => {
    expect(parseVerbArgs(['--other', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['--bundle'], flags)).toBeUndefined();
    expect(parseVerbArgs(['--bundle', '--no-pivot', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['--bundle=', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['--bundle', 'a', '--bundle', 'b', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['--no-pivot=true', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['-bx', 'id'], flags, { '-b': '--bundle' })).toBeUndefined();
    expect(parseVerbArgs(['--', 'id'], flags)).toBeUndefined();
    expect(parseVerbArgs(['-h'], flags)).toBeUndefined();
  });

  it('leaves to commander the calls it does not know (no side effect, no promise)', () => {
    for (const argv of [
      ['start'], ['start', 'a', 'b'], ['start', '--help', 'a'],
      ['kill'], ['kill', 'id', 'TERM', 'extra'], ['kill', 'id', '-9'],
      ['delete', '--force=1', 'id'], ['delete'],
      ['create', '--preserve-fds', '65', 'id'], ['create', '--preserve-fds', 'x', 'id'], ['create', 'a', 'b'],
      ['vmm'], ['vmm', '--preserve-fds', '-1', 'id'],
      ['state', 'id'], ['list'], ['run', 'id'],
    ]) {
      expect(tryLifecycleFast(g, argv), argv.join(' ')).toBeUndefined();
    }
  });
});

describe('lifecycle fast path: same answers as commander', () => {
  const s = scratch('husk-fast-');
  afterAll(() => s.cleanup());
  const root = path.join(s.dir, 'root');
  fs.mkdirSync(root);

  // `--` before the id is a form only commander takes: the same call through both paths.
  const cases: [string, string[], string[]][] = [
    ['start of an unknown id', ['start', 'nosuch'], ['start', '--', 'nosuch']],
    ['kill of an unknown id', ['kill', 'nosuch', 'KILL'], ['kill', '--', 'nosuch', 'KILL']],
    ['kill with a bad signal', ['kill', '--all', 'nosuch', 'NOSIG'], ['kill', '--all', '--', 'nosuch', 'NOSIG']],
    ['delete of an unknown id', ['delete', 'nosuch'], ['delete', '--', 'nosuch']],
    ['delete --force of an unknown id', ['delete', '-f', 'nosuch'], ['delete', '-f', '--', 'nosuch']],
    ['create from a missing bundle', ['create', '--bundle', path.join(s.dir, 'nobundle'), 'c1'], ['create', '--bundle', path.join(s.dir, 'nobundle'), '--', 'c1']],
  ];

  for (const [what, fast, full] of cases) {
    it(what, async () => {
      const answers = [];
      for (const argv of [fast, full]) {
        const log = path.join(s.dir, `log-${answers.length}.json`);
        const r = await husk(root, ['--log-format', 'json', '--log', log, ...argv]);
        const entries = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => {
          const { time, ...rest } = JSON.parse(l) as { time: string };
          expect(Number.isNaN(Date.parse(time))).toBe(false);
          return rest;
        }) : [];
        answers.push({ code: r.exitCode, stderr: r.stderr.toString(), entries });
      }
      expect(answers[0]).toEqual(answers[1]);
      expect(fs.readdirSync(root)).toEqual([]);
    });
  }
});
