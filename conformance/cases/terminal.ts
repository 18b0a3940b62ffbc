// config.md#process (terminal, consoleSize) and the console socket: the
// runtime sends the pty master to --console-socket; we are the receiver.
import path from 'node:path';
import type { Case, Ctx } from '../lib/case.js';
import type { Config } from '../lib/bundle.js';
import { ConsoleReceiver, TerminalReader } from '../lib/console.js';
import { contains, ensure, fail, matches, until } from '../lib/check.js';

async function withTerminal(ctx: Ctx, script: string, edit: ((c: Config) => void) | undefined, body: (t: TerminalReader, ptyName: string) => Promise<void>): Promise<void> {
  const recv = new ConsoleReceiver(path.join(ctx.dir, 'console.sock'));
  let term: TerminalReader | undefined;
  try {
    const b = ctx.bundle(['sh', '-c', script], (c) => { c.process.terminal = true; edit?.(c); });
    let creating = true;
    const create = ctx.rt.create(b.dir, b.id, { consoleSocket: recv.path }).finally(() => { creating = false; });
    let got: Awaited<ReturnType<ConsoleReceiver['receive']>>;
    try {
      got = await recv.receive(60_000, () => creating);
    } catch (e) {
      const c = await create;
      fail(`${(e as Error).message} (create exit ${c.code}: ${c.stderr.trim()})`);
    }
    term = new TerminalReader(got.master);
    const c = await create;
    if (c.code !== 0) fail(`create failed (exit ${c.code}): ${c.stderr.trim()}`);
    await ctx.rt.mustStart(b.id);
    await body(term, got.name);
  } finally {
    term?.close();
    recv.close();
  }
}

const shown = (t: TerminalReader) => t.output.replace(/\r\n/g, '\n');

export const terminalCases: Case[] = [
  {
    name: 'terminal.console-socket',
    section: 'config.md#process (terminal), runc CLI --console-socket',
    title: 'with terminal true the pty master arrives on the console socket and the program\'s stdio is that terminal',
    async run(ctx) {
      await withTerminal(ctx, 'for f in 0 1 2; do test -t $f && echo "fd$f-tty"; done; echo "name=$(tty)"; echo END', undefined, async (t, name) => {
        // The message's data names the pty (runc sends the master's path, /dev/ptmx); only its presence is checked.
        ensure(name.length > 0, 'the console message carried no name');
        await until(() => shown(t).includes('END\n'), 'END on the terminal', 30_000);
        const out = shown(t);
        contains(out, 'fd0-tty\nfd1-tty\nfd2-tty\n', 'isatty of fds 0-2');
        matches(out, /name=\/dev\/(pts\/\d+|console)\n/, 'tty name inside');
      });
    },
  },
  {
    name: 'terminal.input',
    section: 'config.md#process (terminal)',
    title: 'what is written to the pty master is the program\'s input',
    async run(ctx) {
      await withTerminal(ctx, 'echo READY; read line; echo "got:$line"; echo END', undefined, async (t) => {
        await until(() => shown(t).includes('READY\n'), 'READY on the terminal', 30_000);
        t.write('hello conformance\r');
        await until(() => shown(t).includes('END\n'), 'END on the terminal', 30_000);
        contains(shown(t), 'got:hello conformance\n', 'echoed input');
      });
    },
  },
  {
    name: 'terminal.console-size',
    section: 'config.md#process (consoleSize)',
    title: 'consoleSize sets the terminal\'s rows and columns',
    async run(ctx) {
      await withTerminal(ctx, 'echo "size=$(stty size)"; echo END', (c) => { c.process.consoleSize = { height: 31, width: 97 }; }, async (t) => {
        await until(() => shown(t).includes('END\n'), 'END on the terminal', 30_000);
        contains(shown(t), 'size=31 97\n', 'stty size');
      });
    },
  },
  {
    name: 'terminal.dev-console',
    section: 'config-linux.md#default-devices (/dev/console)',
    title: 'with a terminal, /dev/console is a character device (the container\'s pty)',
    async run(ctx) {
      await withTerminal(ctx, 'stat -c "%F" /dev/console; echo END', undefined, async (t) => {
        await until(() => shown(t).includes('END\n'), 'END on the terminal', 30_000);
        contains(shown(t), 'character special file\n', 'stat /dev/console');
      });
    },
  },
];
