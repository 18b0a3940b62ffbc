// The fast path for `husk exec` in the forms podman, containerd's shim and
// scripts use (`exec [--pid-file P] [--process F] [-d] [-t] [--console-socket S]
// [--preserve-fds N] ID [CMD...]`): exec's latency is Node's start-up plus
// this, so commander is skipped. Anything else goes to the full command line.
import { reportError } from './errors.js';

interface Globals { root: string; log?: string; logFormat?: string; debug: boolean }

/** argv from the verb on; undefined when not a form this path knows. */
export async function tryExecFast(g: Globals, argv: string[]): Promise<number | undefined> {
  const o = { processFile: undefined as string | undefined, pidFile: undefined as string | undefined, consoleSocket: undefined as string | undefined, detach: false, tty: false, preserveFds: 0 };
  let i = 1;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('-')) break;
    const eq = a.indexOf('=');
    const [flag, inline] = a.startsWith('--') && eq > 0 ? [a.slice(0, eq), a.slice(eq + 1)] : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '-d' || flag === '--detach') { if (inline !== undefined) return undefined; o.detach = true; }
    else if (flag === '-t' || flag === '--tty') { if (inline !== undefined) return undefined; o.tty = true; }
    else if (flag === '-p' || flag === '--process') o.processFile = value();
    else if (flag === '--pid-file') o.pidFile = value();
    else if (flag === '--console-socket') o.consoleSocket = value();
    else if (flag === '--preserve-fds') {
      const v = value();
      if (v === undefined || !/^\d+$/.test(v) || Number(v) > 64) return undefined;
      o.preserveFds = Number(v);
    } else return undefined;
    if ([o.processFile, o.pidFile, o.consoleSocket].some((v) => v === '')) return undefined;
  }
  if (i >= argv.length || argv.slice(i).length === 0) return undefined;
  const id = argv[i]!;
  const args = argv.slice(i + 1);
  if (!o.processFile && args.length === 0) return undefined;
  try {
    const { exec } = await import('../runtime/exec.js');
    return await exec({
      root: g.root, id, args, processFile: o.processFile, detach: o.detach, pidFile: o.pidFile, tty: o.tty,
      consoleSocket: o.consoleSocket, env: [], additionalGids: [], caps: [], noNewPrivs: false, preserveFds: o.preserveFds, debug: g.debug,
    });
  } catch (e) {
    reportError(g, `exec failed: ${e instanceof Error ? e.message : String(e)}`);
    return 255;
  }
}
