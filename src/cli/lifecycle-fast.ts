// The fast path for the verbs podman/conmon and containerd's shim call for
// every container (create, start, kill, delete, and the hidden vmm verb
// that create starts): each call pays Node's start-up, so these skip
// commander. Only the exact forms below are handled; anything else (other
// flags, help, a missing or extra argument, an out-of-range value) returns
// undefined and goes to the full command line, which gives the same result
// or commander's own error.
import { reportError } from './errors.js';

interface Globals { root: string; log?: string; logFormat?: string; debug: boolean }

/** A verb's flags: name -> takes a value (string) or is a switch (boolean). */
export type FlagSpec = Record<string, 'value' | 'switch'>;

export interface ParsedArgs { positionals: string[]; values: Map<string, string>; switches: Set<string> }

/** Parses flags (in any order among the positionals, as commander does); undefined on anything unusual. */
export function parseVerbArgs(argv: string[], flags: FlagSpec, aliases: Record<string, string> = {}): ParsedArgs | undefined {
  const p: ParsedArgs = { positionals: [], values: new Map(), switches: new Set() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-') || a === '-') { p.positionals.push(a); continue; }
    const eq = a.indexOf('=');
    const [raw, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const flag = aliases[raw] ?? raw;
    const kind = flags[flag];
    if (!kind || p.values.has(flag) || p.switches.has(flag)) return undefined;
    if (kind === 'switch') {
      if (inline !== undefined) return undefined;
      p.switches.add(flag);
    } else {
      const v = inline ?? argv[++i];
      if (v === undefined || v === '' || (inline === undefined && v.startsWith('-'))) return undefined;
      p.values.set(flag, v);
    }
  }
  return p;
}

/** A small non-negative count (--preserve-fds) or undefined when commander should judge it. */
function count(v: string | undefined, max: number): number | undefined {
  if (v === undefined) return 0;
  return /^\d{1,3}$/.test(v) && Number(v) <= max ? Number(v) : undefined;
}

async function guarded(g: Globals, run: () => Promise<void>): Promise<number> {
  try {
    await run();
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    reportError(g, err instanceof Error ? err.message : String(err));
    return 1;
  }
}

/** argv from the verb on; undefined when this is not a form handled here. */
export function tryLifecycleFast(g: Globals, argv: string[]): Promise<number | undefined> | undefined {
  const verb = argv[0];
  const rest = argv.slice(1);
  const lifecycle = () => import('../runtime/lifecycle.js');
  switch (verb) {
    case 'create': {
      const p = parseVerbArgs(rest, { '--bundle': 'value', '--pid-file': 'value', '--console-socket': 'value', '--no-pivot': 'switch', '--no-new-keyring': 'switch', '--preserve-fds': 'value' }, { '-b': '--bundle' });
      const preserveFds = count(p?.values.get('--preserve-fds'), 64);
      if (!p || p.positionals.length !== 1 || preserveFds === undefined) return undefined;
      return guarded(g, async () => (await lifecycle()).create({
        root: g.root, id: p.positionals[0]!, bundle: p.values.get('--bundle') ?? '.', pidFile: p.values.get('--pid-file'),
        consoleSocket: p.values.get('--console-socket'), debug: g.debug, preserveFds,
      }));
    }
    case 'start': {
      const p = parseVerbArgs(rest, {});
      if (!p || p.positionals.length !== 1) return undefined;
      return guarded(g, async () => (await lifecycle()).start(g.root, p.positionals[0]!));
    }
    case 'kill': {
      const p = parseVerbArgs(rest, { '--all': 'switch' }, { '-a': '--all' });
      if (!p || p.positionals.length < 1 || p.positionals.length > 2) return undefined;
      return guarded(g, async () => (await lifecycle()).kill(g.root, p.positionals[0]!, p.positionals[1] ?? 'SIGTERM', p.switches.has('--all')));
    }
    case 'delete': {
      const p = parseVerbArgs(rest, { '--force': 'switch' }, { '-f': '--force' });
      if (!p || p.positionals.length !== 1) return undefined;
      return guarded(g, async () => (await lifecycle()).del(g.root, p.positionals[0]!, p.switches.has('--force')));
    }
    case 'vmm': {
      const p = parseVerbArgs(rest, { '--console-socket': 'value', '--preserve-fds': 'value' });
      const preserveFds = count(p?.values.get('--preserve-fds'), 64);
      if (!p || p.positionals.length !== 1 || preserveFds === undefined) return undefined;
      return guarded(g, async () => {
        (await import('../runtime/prestart.js')).prestartContainerWorkers(g.root, p.positionals[0]!);
        const { vmmDaemon } = await import('../runtime/vmm-daemon.js');
        const code = await vmmDaemon({ root: g.root, id: p.positionals[0]!, consoleSocket: p.values.get('--console-socket'), debug: g.debug, statusFd: 3 + preserveFds, preserveFds });
        process.exit(code);
      });
    }
    case 'vmm-thin': {
      // The container's pid on a pooled VM: the least it loads, the sooner create returns.
      const p = parseVerbArgs(rest, { '--netns': 'value' });
      if (!p || p.positionals.length !== 1) return undefined;
      return guarded(g, async () => {
        const { thinVmm } = await import('../runtime/pool/thin-vmm.js');
        await thinVmm({ netns: p.values.get('--netns') });
      });
    }
    case 'pool-vm': {
      const p = parseVerbArgs(rest, {});
      if (!p || p.positionals.length !== 0) return undefined;
      return guarded(g, async () => {
        const { poolVm } = await import('../runtime/pool/pool-vm.js');
        process.exit(await poolVm({ root: g.root, debug: g.debug }));
      });
    }
    default:
      return undefined;
  }
}
