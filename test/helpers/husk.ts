// Shared by integration tests: run the real `bin/husk` and make bundles.
import { execa, type Options } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeBusyboxBundle, type ExampleBundleOptions } from '../../rootfs-builder/example-bundle.js';

export const ROOT_DIR = path.resolve(import.meta.dirname, '../..');
export const HUSK = path.join(ROOT_DIR, 'bin/husk');

/** A scratch directory removed by the returned cleanup function. */
export function scratch(prefix = 'husk-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function bundle(dir: string, opts: ExampleBundleOptions): string {
  return makeBusyboxBundle(dir, opts);
}

let seq = 0;
export function uniqueId(prefix = 't'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${seq++}`;
}

/** Runs husk with a private --root; never throws on a non-zero exit. */
export function husk(root: string, args: string[], opts: Options = {}) {
  return execa(HUSK, ['--root', root, ...args], { reject: false, stdin: 'ignore', encoding: 'buffer', stripFinalNewline: false, ...opts } as Options);
}

/** Host processes whose command line mentions `needle` (e.g. a state dir). */
export async function processesMentioning(needle: string): Promise<string[]> {
  const out: string[] = [];
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(needle) && Number(pid) !== process.pid) out.push(`${pid} ${cmd}`);
    } catch { /* gone */ }
  }
  return out;
}

/**
 * For verbs whose VMM outlives them (create, run -d): the container's stdio
 * is inherited by the VMM, so like conmon we hand files, not pipes we would
 * wait on. Returns the exit code and what husk itself printed.
 */
export async function huskDetached(root: string, args: string[], logDir: string) {
  const tag = `${Date.now()}-${seq++}`;
  const out = path.join(logDir, `detached-${tag}.out`);
  const err = path.join(logDir, `detached-${tag}.err`);
  // Real fds (execa's {file} would pipe through this process and wait for EOF).
  const outFd = fs.openSync(out, 'w');
  const errFd = fs.openSync(err, 'w');
  try {
    const r = await husk(root, args, { stdout: outFd, stderr: errFd });
    return { exitCode: r.exitCode, stdout: fs.readFileSync(out), stderr: fs.readFileSync(err), outFile: out };
  } finally {
    fs.closeSync(outFd);
    fs.closeSync(errFd);
  }
}
