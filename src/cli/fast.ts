// The fast path for `husk state ID`: clients call it often (podman polls
// it), so it skips commander and loads only the state store; exec and the
// lifecycle verbs have fast paths of their own. Anything they do not
// recognise goes to the full command line.
import { publicState, readState, DEFAULT_ROOT } from '../runtime/state.js';
import { reportError } from './errors.js';

const LIFECYCLE_VERBS = new Set(['create', 'start', 'kill', 'delete', 'vmm', 'vmm-thin', 'pool-vm']);

/** Handles `[--root R] [--log F] [--log-format X] [--debug] [--systemd-cgroup] state ID`; undefined when not that. */
export function tryFastPath(argv: string[]): number | undefined | Promise<number | undefined> {
  const g: { root: string; log?: string; logFormat?: string; debug: boolean } = { root: DEFAULT_ROOT, debug: false };
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    if (flag === '--root' || flag === '--log' || flag === '--log-format') {
      const v = inline ?? argv[++i];
      if (v === undefined) return undefined;
      if (flag === '--root') g.root = v;
      else if (flag === '--log') g.log = v;
      else g.logFormat = v;
    } else if (a === '--debug' || a === '--systemd-cgroup') {
      if (a === '--debug') g.debug = true;
      continue;
    } else break;
  }
  if (argv[i] === 'exec') return import('./exec-fast.js').then((m) => m.tryExecFast(g, argv.slice(i)));
  if (LIFECYCLE_VERBS.has(argv[i]!)) return import('./lifecycle-fast.js').then((m) => m.tryLifecycleFast(g, argv.slice(i)));
  if (argv[i] !== 'state' || argv.length !== i + 2 || argv[i + 1]!.startsWith('-')) return undefined;
  try {
    process.stdout.write(JSON.stringify(publicState(readState(g.root, argv[i + 1]!)), null, 2) + '\n');
    return 0;
  } catch (err) {
    reportError(g, err instanceof Error ? err.message : String(err));
    return 1;
  }
}
