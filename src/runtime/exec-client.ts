// The host process of one exec'd process (`husk exec`, or the detached
// process behind `exec --detach` whose pid goes into --pid-file): it opens
// an exec request on the VMM daemon's control socket and relays its stdio
// (or the pty it sent over the console socket), its preserved fds and the
// signals it receives; its exit status is the process's.
import net from 'node:net';
import os from 'node:os';
import { FrameReader, MsgType, Tag, TlvWriter, attrInt, attrString, encodeFrame, parseTlv, winsizeBytes, type Frame } from '../agent/protocol.js';
import type { ExecRequest } from './control.js';
// console.js and fd-relay.js load koffi: imported only when needed (exec's start-up is on the clock).
import type { HostTerminal } from './console.js';
import type { FdRelay } from './fd-relay.js';
import { flush } from './stdio.js';

/** The process could not be started (nothing runs in the guest). */
export class ExecStartError extends Error {}

export interface ExecClientOptions {
  socketPath: string;
  request: ExecRequest;
  /** process.terminal: where the pty master goes; without it the caller's own terminal is used */
  consoleSocket?: string;
  /** the process runs: its pid in the container's pid namespace */
  onStarted?: (pid: number) => void;
}

const RELAYED: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGCONT', 'SIGALRM'];

export async function execRelay(o: ExecClientOptions): Promise<number> {
  const p = o.request.process;
  let terminal: HostTerminal | undefined;
  let ownRaw = false;
  const relayFds = o.request.extraFds ? (await import('./fd-relay.js')).relayFds : undefined;
  if (p.terminal && o.consoleSocket) {
    terminal = (await import('./console.js')).sendPtyMaster(o.consoleSocket);
    const ws = terminal.size();
    if (!p.consoleSize && ws.rows && ws.cols) p.consoleSize = { height: ws.rows, width: ws.cols };
  } else if (p.terminal && process.stdout.isTTY && !p.consoleSize) {
    p.consoleSize = { height: process.stdout.rows, width: process.stdout.columns };
  }
  const out: NodeJS.WritableStream = terminal ? terminal.output : process.stdout;
  const err: NodeJS.WritableStream = terminal ? terminal.output : process.stderr;
  const input: NodeJS.ReadableStream = terminal ? terminal.input : process.stdin;
  for (const s of [out, err]) s.on('error', () => {}); // a reader that went away is the process's business
  const size = () => (terminal ? terminal.size() : { rows: process.stdout.rows ?? 0, cols: process.stdout.columns ?? 0 });

  return new Promise<number>((resolve, reject) => {
    const sock = net.connect(o.socketPath);
    const reader = new FrameReader();
    let started = false;
    let finished = false;
    let relay: FdRelay | undefined;
    const send = (type: number, payload?: Uint8Array) => { if (!sock.destroyed) sock.write(encodeFrame(type, 0, payload)); };
    const handlers = new Map<string, () => void>();

    const finish = async (result: { code: number } | { error: string }) => {
      if (finished) return;
      finished = true;
      for (const [sig, h] of handlers) process.off(sig, h);
      input.removeAllListeners('data');
      input.removeAllListeners('end');
      if (ownRaw) (process.stdin as NodeJS.ReadStream).setRawMode?.(false);
      (input as NodeJS.ReadStream).pause?.();
      sock.destroy();
      await relay?.flush();
      relay?.close();
      await flush(out);
      await flush(err);
      terminal?.close();
      if ('code' in result) resolve(result.code);
      else if (!started) reject(new ExecStartError(result.error));
      else resolve(255);
    };

    const onStarted = (pid: number) => {
      started = true;
      o.onStarted?.(pid);
      for (const sig of RELAYED) {
        const h = () => send(MsgType.SIGNAL, new TlvWriter().u32(Tag.SIGNO, os.constants.signals[sig]).finish());
        handlers.set(sig, h);
        process.on(sig, h);
      }
      if (p.terminal) {
        const h = () => { const ws = size(); if (ws.rows && ws.cols) send(MsgType.RESIZE, new TlvWriter().bytes(Tag.WINSIZE, winsizeBytes(ws)).finish()); };
        handlers.set('SIGWINCH', h);
        process.on('SIGWINCH', h);
        if (!terminal && process.stdin.isTTY) { process.stdin.setRawMode(true); ownRaw = true; }
        // A size set while the process was starting raised no SIGWINCH we listened to.
        const ws = size();
        if (ws.rows && ws.cols && (ws.rows !== p.consoleSize?.height || ws.cols !== p.consoleSize?.width)) h();
      }
      input.on('data', (d: Buffer) => { for (let i = 0; i < d.byteLength; i += 65536) send(MsgType.STDIN, d.subarray(i, i + 65536)); });
      input.on('end', () => send(MsgType.STDIN));
      input.on('error', () => {});
      if (relayFds) {
        relay = relayFds(o.request.extraFds, (fd, data) => {
          const head = new Uint8Array(4);
          new DataView(head.buffer).setUint32(0, fd, true);
          send(MsgType.FD_DATA, data ? Buffer.concat([head, data]) : head);
        });
      }
    };

    const write = (stream: NodeJS.WritableStream, data: Uint8Array) => {
      if (!stream.write(data)) {
        sock.pause();
        stream.once('drain', () => sock.resume());
      }
    };

    const onFrame = (f: Frame) => {
      switch (f.type) {
        case MsgType.STDOUT: write(out, f.payload); return;
        case MsgType.STDERR: write(err, f.payload); return;
        case MsgType.STARTED: onStarted(attrInt(parseTlv(f.payload), Tag.PID) ?? 0); return;
        case MsgType.FD_DATA: {
          if (f.payload.byteLength < 4) return;
          const fd = new DataView(f.payload.buffer, f.payload.byteOffset, 4).getUint32(0, true);
          relay?.fromGuest(fd, f.payload.byteLength === 4 ? null : f.payload.subarray(4));
          return;
        }
        case MsgType.EXIT: {
          const status = attrInt(parseTlv(f.payload), Tag.STATUS);
          void finish({ code: status !== undefined && status >= 0 && status <= 255 ? status : 255 });
          return;
        }
        case MsgType.ERROR:
          void finish({ error: attrString(parseTlv(f.payload), Tag.MESSAGE) ?? 'exec failed' });
          return;
      }
    };

    sock.on('connect', () => sock.write(JSON.stringify(o.request) + '\n'));
    sock.on('data', (d: Buffer) => {
      reader.push(d);
      try {
        for (let f = reader.next(); f; f = reader.next()) onFrame(f);
      } catch (e) {
        void finish({ error: (e as Error).message });
      }
    });
    sock.on('error', (e) => void finish({ error: started ? 'the container\'s VMM went away' : `cannot reach the container's VMM: ${e.message}` }));
    sock.on('close', () => void finish({ error: started ? 'the container\'s VMM went away' : 'the container\'s VMM closed the exec request' }));
  });
}
