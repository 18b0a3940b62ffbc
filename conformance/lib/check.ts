// Assertions and waiting for conformance cases. A failed check throws
// CaseFailure with a message meant for the report.
import fs from 'node:fs';
import { isDeepStrictEqual } from 'node:util';

export class CaseFailure extends Error {}

export function fail(msg: string): never {
  throw new CaseFailure(msg);
}

export function ensure(cond: unknown, msg: string): asserts cond {
  if (!cond) fail(msg);
}

const show = (v: unknown) => (typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v) ?? String(v));

export function equal<T>(actual: T, expected: T, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) fail(`${what}: expected ${show(expected)}, got ${show(actual)}`);
}

export function contains(haystack: string, needle: string, what: string): void {
  if (!haystack.includes(needle)) fail(`${what}: expected to contain ${show(needle)}, got ${show(clip(haystack))}`);
}

export function matches(s: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(s);
  if (!m) fail(`${what}: expected to match ${re}, got ${show(clip(s))}`);
  return m;
}

export function clip(s: string, n = 400): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `cond` every 50 ms until it is true; fails with `what` after `ms`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) fail(`timed out after ${ms / 1000}s waiting for ${what}`);
    await sleep(50);
  }
}

/** A host process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) [ZX]/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}
