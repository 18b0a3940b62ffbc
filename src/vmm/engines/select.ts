// Which engine runs the CPU: kvm (in-process, hardware virtualization) when
// /dev/kvm exists and can run a standard guest, tcg (QEMU) otherwise. The
// choice can be forced with HUSK_ENGINE=kvm|tcg or the annotation
// `husk.engine`; the reason is always given in one line.
import fs from 'node:fs';
import { isPvmHost } from './kvm/pvm-quirks.js';

export type EngineName = 'kvm' | 'tcg';
export interface EngineChoice {
  engine: EngineName;
  reason: string;
}

export interface SelectOptions {
  /** OCI annotations of the container (`husk.engine`) */
  annotations?: Record<string, string>;
  /** an explicit choice from the caller (wins over env and annotation) */
  force?: EngineName;
  env?: NodeJS.ProcessEnv;
  /** for tests: where /dev/kvm and /sys/module are */
  devKvm?: string;
  sysModule?: string;
}

function parse(v: string | undefined, what: string): EngineName | undefined {
  if (v === undefined || v === '') return undefined;
  if (v === 'kvm' || v === 'tcg') return v;
  throw new Error(`${what}=${v}: the engine must be kvm or tcg`);
}

export function selectEngine(opts: SelectOptions = {}): EngineChoice {
  if (opts.force) return { engine: opts.force, reason: `engine ${opts.force} requested by the caller` };
  const env = opts.env ?? process.env;
  const fromEnv = parse(env.HUSK_ENGINE, 'HUSK_ENGINE');
  if (fromEnv) return { engine: fromEnv, reason: `HUSK_ENGINE=${fromEnv}` };
  const fromAnn = parse(opts.annotations?.['husk.engine'], 'annotation husk.engine');
  if (fromAnn) return { engine: fromAnn, reason: `annotation husk.engine=${fromAnn}` };
  const dev = opts.devKvm ?? '/dev/kvm';
  if (!fs.existsSync(dev)) return { engine: 'tcg', reason: `${dev} does not exist: no hardware virtualization, using QEMU TCG` };
  try {
    fs.accessSync(dev, fs.constants.R_OK | fs.constants.W_OK);
  } catch {
    return { engine: 'tcg', reason: `${dev} is not accessible to this user, using QEMU TCG` };
  }
  if (isPvmHost(opts.sysModule)) {
    return {
      engine: 'tcg',
      reason: `${dev} is PVM (module kvm_pvm): it interprets a standard guest kernel and cannot run its user space, using QEMU TCG`,
    };
  }
  return { engine: 'kvm', reason: `${dev} is usable: in-process KVM` };
}
