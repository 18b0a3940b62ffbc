// Drives one OCI runtime binary through its runc-style CLI, with a private
// --root. The container's stdio always goes to real files (never pipes we
// wait on): a runtime's long-lived process (runc's init, a VM runtime's
// VMM) inherits it, as with conmon.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { alive, fail } from './check.js';

export type RuntimeKind = 'vm' | 'container';

export interface RuntimeInfo {
  name: string;
  bin: string;
  /** 'vm': every container has its own kernel (husk, kata-like); 'container': shares the host kernel (runc, crun) */
  kind: RuntimeKind;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Stdio {
  /** file whose content becomes the container's stdin (default /dev/null) */
  stdinFile?: string;
}

export interface DetachedResult extends CliResult {
  outFile: string;
  errFile: string;
}

const CLI_TIMEOUT_MS = 60_000;

let seq = 0;

export class Runtime {
  readonly info: RuntimeInfo;
  readonly root: string;
  private readonly logDir: string;
  /** pids seen for each id (pid files, state): killed if delete --force fails at cleanup */
  private readonly pids = new Map<string, number>();

  constructor(info: RuntimeInfo, workDir: string) {
    this.info = info;
    this.root = path.join(workDir, `root-${info.name}`);
    this.logDir = path.join(workDir, `io-${info.name}`);
    fs.mkdirSync(this.root, { recursive: true });
    fs.mkdirSync(this.logDir, { recursive: true });
  }

  get name(): string { return this.info.name; }

  /** Runs `bin --root ROOT ...args` with the given stdio fds; never throws on a non-zero exit. */
  spawn(args: string[], stdio: [number | 'ignore', number | 'pipe', number | 'pipe'], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.info.bin, ['--root', this.root, ...args], { stdio });
      let stdout = '';
      let stderr = '';
      child.stdout?.on('data', (d: Buffer) => { stdout += d.toString(); });
      child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`${this.name} ${args.join(' ')}: no exit after ${timeoutMs / 1000}s`));
      }, timeoutMs);
      child.on('error', (e) => { clearTimeout(timer); reject(e); });
      child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }); });
    });
  }

  /** A short verb whose output we read (state, start, kill, delete, list). */
  cli(args: string[], timeoutMs = CLI_TIMEOUT_MS): Promise<CliResult> {
    return this.spawn(args, ['ignore', 'pipe', 'pipe'], timeoutMs);
  }

  /**
   * A verb whose child outlives it or carries the container's stdio
   * (create, run): stdout/stderr are files, stdin is a file or /dev/null.
   */
  async withFiles(args: string[], io: Stdio = {}, timeoutMs = CLI_TIMEOUT_MS): Promise<DetachedResult> {
    const tag = `${Date.now().toString(36)}-${seq++}`;
    const outFile = path.join(this.logDir, `${tag}.out`);
    const errFile = path.join(this.logDir, `${tag}.err`);
    const inFd = fs.openSync(io.stdinFile ?? '/dev/null', 'r');
    const outFd = fs.openSync(outFile, 'w');
    const errFd = fs.openSync(errFile, 'w');
    try {
      const r = await this.spawn(args, [inFd, outFd, errFd], timeoutMs);
      return { ...r, stdout: fs.readFileSync(outFile, 'utf8'), stderr: fs.readFileSync(errFile, 'utf8'), outFile, errFile };
    } finally {
      fs.closeSync(inFd);
      fs.closeSync(outFd);
      fs.closeSync(errFd);
    }
  }

  async create(bundle: string, id: string, o: { pidFile?: string; consoleSocket?: string } & Stdio = {}): Promise<DetachedResult> {
    const args = ['create', '--bundle', bundle];
    if (o.pidFile) args.push('--pid-file', o.pidFile);
    if (o.consoleSocket) args.push('--console-socket', o.consoleSocket);
    args.push(id);
    const r = await this.withFiles(args, o);
    if (r.code === 0 && o.pidFile) {
      const pid = Number(fs.readFileSync(o.pidFile, 'utf8'));
      if (pid > 0) this.pids.set(id, pid);
    }
    return r;
  }

  /** create that must succeed. */
  async mustCreate(bundle: string, id: string, o: { pidFile?: string; consoleSocket?: string } & Stdio = {}): Promise<DetachedResult> {
    const r = await this.create(bundle, id, o);
    if (r.code !== 0) fail(`create failed (exit ${r.code}): ${r.stderr.trim()}`);
    return r;
  }

  async mustStart(id: string): Promise<void> {
    const r = await this.cli(['start', id]);
    if (r.code !== 0) fail(`start failed (exit ${r.code}): ${r.stderr.trim()}`);
  }

  /** Foreground `run`: waits for the container's process; the exit code is the runtime's. */
  run(bundle: string, id: string, io: Stdio = {}, timeoutMs = 120_000): Promise<DetachedResult> {
    return this.withFiles(['run', '--bundle', bundle, id], io, timeoutMs);
  }

  async state(id: string): Promise<Record<string, unknown>> {
    const r = await this.cli(['state', id]);
    if (r.code !== 0) fail(`state ${id} failed (exit ${r.code}): ${r.stderr.trim()}`);
    try {
      const st = JSON.parse(r.stdout) as Record<string, unknown>;
      if (typeof st.pid === 'number' && st.pid > 0) this.pids.set(id, st.pid);
      return st;
    } catch {
      return fail(`state ${id} printed no JSON: ${JSON.stringify(r.stdout.slice(0, 200))}`);
    }
  }

  async waitStatus(id: string, status: string, ms = 30_000): Promise<Record<string, unknown>> {
    const end = Date.now() + ms;
    let last: unknown;
    for (;;) {
      const st = await this.state(id);
      if (st.status === status) return st;
      last = st.status;
      if (Date.now() > end) fail(`container ${id} still "${String(last)}" after ${ms / 1000}s, expected "${status}"`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Best-effort cleanup: delete --force. When that fails (a broken or wedged
   * runtime), the container's process seen earlier is SIGKILLed so that no
   * container outlives the run.
   */
  async remove(id: string): Promise<void> {
    let ok = false;
    try { ok = (await this.cli(['delete', '--force', id], 30_000)).code === 0; } catch { /* wedged */ }
    const pid = this.pids.get(id);
    this.pids.delete(id);
    if (!ok && pid && alive(pid)) {
      try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
    }
  }
}
