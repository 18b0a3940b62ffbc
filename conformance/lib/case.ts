// What a conformance case is and the context it runs in.
import fs from 'node:fs';
import path from 'node:path';
import { buildBundle, type Bundle, type Config } from './bundle.js';
import type { DetachedResult, Runtime, RuntimeInfo, Stdio } from './runtime.js';
import { fail } from './check.js';

export interface Case {
  /** unique, stable: expected-husk.json lists these */
  name: string;
  /** runtime-spec section(s), e.g. "runtime.md#state" */
  section: string;
  /** what is checked, one line */
  title: string;
  /** a reason when the case cannot apply to this runtime (e.g. a VM runtime and host namespaces) */
  notApplicable?: (rt: RuntimeInfo) => string | undefined;
  run(ctx: Ctx): Promise<void>;
}

export interface CaseBundle extends Bundle {
  id: string;
}

export interface InsideResult extends DetachedResult {
  bundle: CaseBundle;
}

let idSeq = 0;

export class Ctx {
  readonly rt: Runtime;
  /** scratch directory of this case for this runtime */
  readonly dir: string;
  private readonly ids: string[] = [];
  private bundles = 0;

  constructor(rt: Runtime, dir: string) {
    this.rt = rt;
    this.dir = dir;
    fs.mkdirSync(dir, { recursive: true });
  }

  /** A fresh container id, deleted (--force) when the case ends. */
  id(): string {
    const id = `cf${process.pid}-${idSeq++}`;
    this.ids.push(id);
    return id;
  }

  /** A busybox bundle running `args`, with the case's edits to config.json. */
  bundle(args: string[], edit?: (c: Config, b: { dir: string; rootfs: string }) => void): CaseBundle {
    const id = this.id();
    const dir = path.join(this.dir, `bundle${this.bundles++}`);
    return { ...buildBundle(dir, id, args, edit), id };
  }

  /** Runs `sh -c script` in the foreground (`run`) and returns its exit code and output files. */
  async inside(script: string, edit?: (c: Config, b: { dir: string; rootfs: string }) => void, io: Stdio = {}): Promise<InsideResult> {
    const b = this.bundle(['sh', '-c', script], edit);
    const r = await this.rt.run(b.dir, b.id, io);
    return { ...r, bundle: b };
  }

  /** inside() that must exit 0; returns stdout. */
  async insideOk(script: string, edit?: (c: Config, b: { dir: string; rootfs: string }) => void, io: Stdio = {}): Promise<string> {
    const r = await this.inside(script, edit, io);
    if (r.code !== 0) fail(`container exited ${r.code ?? r.signal}; stderr: ${r.stderr.trim().slice(0, 300)}; stdout: ${r.stdout.trim().slice(0, 300)}`);
    return r.stdout;
  }

  async cleanup(): Promise<void> {
    for (const id of this.ids) await this.rt.remove(id);
  }
}
