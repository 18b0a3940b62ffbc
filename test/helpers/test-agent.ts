// The real guest agent binary in its host test mode (--test-fd 3 over a
// socketpair), with the frames it sends collected for assertions.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { FrameReader, type Frame } from '../../src/agent/protocol.js';

export const AGENT = path.resolve(import.meta.dirname, '../../native/agent/build/husk-agent');

export interface TestAgent {
  child: ChildProcess;
  sock: Duplex;
  /** every frame received so far, in order */
  frames: Frame[];
  /** the first received frame matching `pred` (waits up to 10 s) */
  waitFor(pred: (f: Frame) => boolean, what: string): Promise<Frame>;
  stop(): Promise<void>;
}

export function startTestAgent(): TestAgent {
  const child = spawn(AGENT, ['--test-fd', '3'], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
  const sock = child.stdio[3] as Duplex;
  const reader = new FrameReader();
  const frames: Frame[] = [];
  const waiters: (() => void)[] = [];
  sock.on('data', (d: Buffer) => {
    reader.push(d);
    for (let f = reader.next(); f; f = reader.next()) frames.push(f);
    waiters.splice(0).forEach((w) => w());
  });
  return {
    child,
    sock,
    frames,
    async waitFor(pred, what) {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const f = frames.find(pred);
        if (f) return f;
        if (Date.now() > deadline) throw new Error(`no ${what}; got types ${frames.map((x) => x.type)}`);
        await new Promise<void>((r) => { waiters.push(r); setTimeout(r, 100); });
      }
    },
    async stop() {
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await new Promise((r) => child.once('exit', r));
    },
  };
}
