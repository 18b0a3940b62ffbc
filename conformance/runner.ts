// The conformance runner: every case against every runtime given, one
// after the other, then a table on stdout and optionally a JSON report.
//
//   node dist/conformance/runner.js --runtime husk=/work/main/bin/husk --runtime runc=/usr/sbin/runc \
//     [--only NAME|PREFIX.] [--json out.json] [--expected FILE] [--expect-for husk] [--update-expected] [--keep]
//
// A runtime is NAME=PATH[:vm|:container]; without the suffix, names that
// mention husk are VM runtimes and others share the host kernel. Exit
// status: 1 when a case listed in the expected file (default
// conformance/expected-husk.json, for the runtime named husk) did not pass.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { allCases } from './cases/index.js';
import { Ctx, type Case } from './lib/case.js';
import { Runtime, type RuntimeInfo, type RuntimeKind } from './lib/runtime.js';

export type Outcome = { result: 'pass'; ms: number } | { result: 'fail'; message: string; ms: number } | { result: 'n/a'; reason: string };

export interface Report {
  started: string;
  durationMs: number;
  runtimes: RuntimeInfo[];
  cases: { name: string; section: string; title: string; results: Record<string, Outcome> }[];
  expected?: { runtime: string; file: string; failed: { name: string; why: string }[] };
}

const PROJECT = path.resolve(import.meta.dirname, '../..');
const CASE_TIMEOUT_MS = 180_000;

interface Options {
  runtimes: RuntimeInfo[];
  only: string[];
  json?: string;
  expected: string;
  expectFor: string;
  updateExpected: boolean;
  keep: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`conformance: ${msg}\nusage: runner.js --runtime NAME=PATH[:vm|:container] ... [--only NAME|PREFIX.] [--json FILE] [--expected FILE] [--expect-for NAME] [--update-expected] [--keep]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { runtimes: [], only: [], expected: path.join(PROJECT, 'conformance/expected-husk.json'), expectFor: 'husk', updateExpected: false, keep: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const val = () => argv[++i] ?? usage(`${a} needs a value`);
    switch (a) {
      case '--runtime': {
        const m = /^([\w.-]+)=(.+?)(?::(vm|container))?$/.exec(val());
        if (!m) usage('--runtime takes NAME=PATH[:vm|:container]');
        const bin = path.resolve(m[2]!);
        if (!fs.existsSync(bin)) usage(`runtime binary ${bin} does not exist`);
        const kind = (m[3] as RuntimeKind | undefined) ?? (/husk/i.test(m[1]!) ? 'vm' : 'container');
        o.runtimes.push({ name: m[1]!, bin, kind });
        break;
      }
      case '--only': o.only.push(...val().split(',').filter(Boolean)); break;
      case '--json': o.json = path.resolve(val()); break;
      case '--expected': o.expected = path.resolve(val()); break;
      case '--expect-for': o.expectFor = val(); break;
      case '--update-expected': o.updateExpected = true; break;
      case '--keep': o.keep = true; break;
      default: usage(`unknown argument ${a}`);
    }
  }
  if (!o.runtimes.length) usage('give at least one --runtime');
  if (new Set(o.runtimes.map((r) => r.name)).size !== o.runtimes.length) usage('runtime names must differ');
  return o;
}

function selected(c: Case, only: string[]): boolean {
  if (!only.length) return true;
  return only.some((o) => c.name === o || (o.endsWith('.') && c.name.startsWith(o)) || c.name.startsWith(`${o}.`));
}

/** The case running now: its containers are removed if the runner is interrupted. */
let current: Ctx | undefined;
let workToRemove: string | undefined;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    process.stderr.write(`conformance: ${sig}: removing the current case's containers\n`);
    void (current?.cleanup() ?? Promise.resolve()).finally(() => {
      if (workToRemove) fs.rmSync(workToRemove, { recursive: true, force: true });
      process.exit(130);
    });
  });
}

async function runOne(c: Case, rt: Runtime, dir: string): Promise<Outcome> {
  const reason = c.notApplicable?.(rt.info);
  if (reason) return { result: 'n/a', reason };
  const ctx = new Ctx(rt, dir);
  current = ctx;
  const t0 = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      c.run(ctx),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`case timed out after ${CASE_TIMEOUT_MS / 1000}s`)), CASE_TIMEOUT_MS); }),
    ]);
    return { result: 'pass', ms: Date.now() - t0 };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    const flat = message.replace(/\s+/g, ' ').trim();
    return { result: 'fail', message: flat.length > 600 ? `${flat.slice(0, 600)}...` : flat, ms: Date.now() - t0 };
  } finally {
    clearTimeout(timer);
    await ctx.cleanup();
    current = undefined;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]! + 2))).join('').trimEnd()).join('\n') + '\n';
}

function readExpected(file: string): string[] {
  if (!fs.existsSync(file)) return [];
  const data = JSON.parse(fs.readFileSync(file, 'utf8')) as { cases?: string[] } | string[];
  return Array.isArray(data) ? data : (data.cases ?? []);
}

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const cases = allCases.filter((c) => selected(c, o.only));
  if (!cases.length) usage(`no case matches --only ${o.only.join(',')}`);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'husk-conformance-'));
  if (!o.keep) workToRemove = work;
  const runtimes = o.runtimes.map((info) => new Runtime(info, work));
  const started = new Date();
  const report: Report = { started: started.toISOString(), durationMs: 0, runtimes: o.runtimes, cases: [] };
  process.stderr.write(`conformance: ${cases.length} cases x ${runtimes.length} runtimes (${runtimes.map((r) => `${r.name}=${r.info.bin} [${r.info.kind}]`).join(', ')}); work dir ${work}\n`);
  for (const c of cases) {
    const results: Record<string, Outcome> = {};
    for (const rt of runtimes) {
      const out = await runOne(c, rt, path.join(work, rt.name, c.name));
      results[rt.name] = out;
      const detail = out.result === 'fail' ? `: ${out.message}` : out.result === 'n/a' ? ` (${out.reason})` : '';
      process.stderr.write(`  ${c.name} [${rt.name}] ${out.result}${'ms' in out ? ` ${(out.ms / 1000).toFixed(1)}s` : ''}${detail}\n`);
    }
    report.cases.push({ name: c.name, section: c.section, title: c.title, results });
  }
  report.durationMs = Date.now() - started.getTime();

  // The table.
  const names = runtimes.map((r) => r.name);
  const rows = [['CASE', ...names.map((n) => n.toUpperCase()), 'SECTION'], ...report.cases.map((c) => [c.name, ...names.map((n) => c.results[n]!.result), c.section])];
  let text = table(rows);
  for (const n of names) {
    const rs = report.cases.map((c) => c.results[n]!);
    const count = (k: Outcome['result']) => rs.filter((r) => r.result === k).length;
    const ms = rs.reduce((s, r) => s + ('ms' in r ? r.ms : 0), 0);
    text += `${n}: ${count('pass')} pass, ${count('fail')} fail, ${count('n/a')} not applicable (${(ms / 1000).toFixed(0)} s)\n`;
  }
  const na = report.cases.flatMap((c) => names.flatMap((n) => { const r = c.results[n]!; return r.result === 'n/a' ? [`  ${c.name} [${n}]: ${r.reason}`] : []; }));
  if (na.length) text += `\nNot applicable:\n${na.join('\n')}\n`;
  const failed = report.cases.flatMap((c) => names.flatMap((n) => { const r = c.results[n]!; return r.result === 'fail' ? [`  ${c.name} [${n}] (${c.section}): ${r.message}`] : []; }));
  if (failed.length) text += `\nFailures:\n${failed.join('\n')}\n`;
  text += `\nTotal time ${(report.durationMs / 1000).toFixed(0)} s\n`;

  // Expectations for one runtime (husk): each listed case must pass.
  let code = 0;
  const target = runtimes.find((r) => r.name === o.expectFor);
  if (target) {
    const expected = readExpected(o.expected);
    const known = new Set(allCases.map((c) => c.name));
    for (const e of expected) if (!known.has(e)) text += `warning: ${path.basename(o.expected)} lists an unknown case ${e}\n`;
    const miss: { name: string; why: string }[] = [];
    for (const c of report.cases) {
      if (!expected.includes(c.name)) continue;
      const r = c.results[target.name]!;
      if (r.result !== 'pass') miss.push({ name: c.name, why: r.result === 'fail' ? r.message : `not applicable: ${r.reason}` });
    }
    report.expected = { runtime: target.name, file: o.expected, failed: miss };
    if (miss.length) {
      code = 1;
      text += `\nFAILED: ${miss.length} case(s) that ${target.name} is expected to pass (${path.relative(process.cwd(), o.expected)}):\n${miss.map((m) => `  ${m.name}: ${m.why}`).join('\n')}\n`;
    } else {
      text += `\nOK: every case run from ${path.basename(o.expected)} passed for ${target.name}.\n`;
    }
    const passing = report.cases.filter((c) => c.results[target.name]!.result === 'pass').map((c) => c.name);
    const newly = passing.filter((n) => !expected.includes(n));
    if (newly.length && !o.updateExpected) text += `${target.name} now also passes (add to ${path.basename(o.expected)}): ${newly.join(', ')}\n`;
    if (o.updateExpected) {
      const ran = new Set(report.cases.map((c) => c.name));
      const next = allCases.map((c) => c.name).filter((n) => (ran.has(n) ? passing.includes(n) : expected.includes(n)));
      fs.writeFileSync(o.expected, JSON.stringify({ runtime: target.name, cases: next }, null, 2) + '\n');
      text += `wrote ${next.length} cases to ${o.expected}\n`;
    }
  }
  process.stdout.write(text);
  if (o.json) fs.writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
  if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
  return code;
}

main().then((code) => process.exit(code), (e: unknown) => {
  process.stderr.write(`conformance: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(2);
});
