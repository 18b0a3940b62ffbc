// The VMM daemon's side of `husk exec`: one control connection per exec'd
// process. After the JSON request the connection carries agent-protocol
// frames (id 0): STDIN, SIGNAL, RESIZE, FD_DATA from the exec process;
// STARTED (PID = the pid in the container's pid namespace), STDOUT, STDERR,
// FD_DATA, EXIT, ERROR back. The daemon multiplexes the process as one more
// RUN on its agent connection.
import type net from 'node:net';
import { Writable } from 'node:stream';
import type { AgentConnection, ProcessSpec, RunningProcess } from '../agent/client.js';
import { FrameReader, MsgType, Tag, TlvWriter, attrInt, encodeFrame, parseTlv, type Frame } from '../agent/protocol.js';
import { processSpec } from './translate.js';
import type { ExecRequest } from './control.js';
import { flush } from './stdio.js';

export interface ExecContext {
  agent: AgentConnection;
  /** the container's seccomp profile (runc applies it to exec'd processes too) */
  seccomp?: unknown;
  /** why an exec is refused now (e.g. the container stopped), or undefined */
  refuse(): string | undefined;
  log(msg: string): void;
}

/** A stream of frames of one type on the exec connection. */
class FrameWritable extends Writable {
  private readonly sock: net.Socket;
  private readonly type: number;
  constructor(sock: net.Socket, type: number) {
    super();
    this.sock = sock;
    this.type = type;
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.sock.destroyed) { cb(); return; }
    for (let o = 0; o < chunk.byteLength; o += 65536) {
      const ok = this.sock.write(encodeFrame(this.type, 0, chunk.subarray(o, o + 65536)));
      if (!ok && o + 65536 >= chunk.byteLength) { this.sock.once('drain', () => cb()); return; }
    }
    cb();
  }
}

// Exec'd processes still being served: when the container's init exits the
// kernel kills them; the daemon gives their EXIT a moment to reach their hosts.
const active = new Set<Promise<unknown>>();

/** Resolves when every exec'd process has been reported, or after ms. */
export function execsSettled(ms: number): Promise<void> {
  if (!active.size) return Promise.resolve();
  return Promise.race([Promise.allSettled([...active]).then(() => {}), new Promise<void>((r) => setTimeout(r, ms).unref())]);
}

// The container's seccomp profile compiled once, not per exec.
const compiled = new WeakMap<object, ProcessSpec['seccomp']>();
function containerSeccomp(ctx: ExecContext): ProcessSpec['seccomp'] {
  const key = ctx.seccomp as object;
  if (!compiled.has(key)) {
    const probe = processSpec({ cwd: '/', user: { uid: 0, gid: 0 }, args: ['-'] }, { stdin: false, seccomp: ctx.seccomp, log: ctx.log });
    compiled.set(key, probe.seccomp);
  }
  return compiled.get(key);
}

export function serveExec(ctx: ExecContext, req: ExecRequest, sock: net.Socket, rest: Buffer): void {
  const send = (type: number, payload?: Uint8Array) => { if (!sock.destroyed) sock.write(encodeFrame(type, 0, payload)); };
  const fail = (msg: string) => {
    send(MsgType.ERROR, new TlvWriter().i32(Tag.ERRNO, 0).string(Tag.MESSAGE, msg.replace(/[\r\n]+/g, ' ')).finish());
    sock.end();
  };
  const why = ctx.refuse();
  if (why) { fail(why); return; }
  if (!ctx.agent.execCapable) { fail('the guest agent cannot exec into the container (no protocol extension B)'); return; }

  let running: RunningProcess;
  let out: FrameWritable;
  let err: FrameWritable;
  try {
    const p = req.process;
    const spec = processSpec(p, { stdin: !p.terminal, log: ctx.log });
    if (ctx.seccomp !== undefined && ctx.seccomp !== null) spec.seccomp = containerSeccomp(ctx);
    if (!Number.isInteger(req.extraFds) || req.extraFds < 0 || req.extraFds > 64) throw new Error(`invalid number of preserved fds: ${req.extraFds}`);
    if (req.extraFds) spec.extraFds = req.extraFds;
    out = new FrameWritable(sock, MsgType.STDOUT);
    err = p.terminal ? out : new FrameWritable(sock, MsgType.STDERR);
    running = ctx.agent.run(spec, out, err);
  } catch (e) {
    fail((e as Error).message);
    return;
  }
  let done = false;
  running.onFdData((fd, data) => {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, fd, true);
    send(MsgType.FD_DATA, data ? Buffer.concat([head, data]) : head);
  });
  running.started.then(
    () => send(MsgType.STARTED, new TlvWriter().u32(Tag.PID, running.containerPid ?? 0).finish()),
    () => {},
  );
  const reported = Promise.withResolvers<void>();
  active.add(reported.promise);
  void reported.promise.then(() => active.delete(reported.promise));
  sock.on('close', () => reported.resolve());
  running.exited.then(
    async (e) => {
      done = true;
      // After every byte of output still queued in the writables.
      await flush(out);
      await flush(err);
      send(MsgType.EXIT, new TlvWriter().u32(Tag.STATUS, e.status).u32(Tag.WAITSTATUS, e.waitStatus).finish());
      sock.end();
      reported.resolve();
    },
    (e: Error) => { done = true; fail(`unable to start container process: ${e.message}`); reported.resolve(); },
  );

  // Requests from the exec process.
  const reader = new FrameReader();
  const onFrame = (f: Frame) => {
    switch (f.type) {
      case MsgType.STDIN:
        if (f.payload.byteLength) running.writeStdin(f.payload);
        else if (!req.process.terminal) running.closeStdin();
        return;
      case MsgType.SIGNAL: {
        const signo = attrInt(parseTlv(f.payload), Tag.SIGNO);
        if (signo !== undefined && signo > 0 && signo < 65) running.signal(signo);
        return;
      }
      case MsgType.RESIZE: {
        const ws = parseTlv(f.payload).find((a) => a.tag === Tag.WINSIZE);
        if (ws && ws.value.byteLength === 4) {
          const v = new DataView(ws.value.buffer, ws.value.byteOffset, 4);
          running.resize(v.getUint16(0, true), v.getUint16(2, true));
        }
        return;
      }
      case MsgType.FD_DATA: {
        if (f.payload.byteLength < 4) return;
        const fd = new DataView(f.payload.buffer, f.payload.byteOffset, 4).getUint32(0, true);
        running.writeFd(fd, f.payload.byteLength === 4 ? null : f.payload.subarray(4));
        return;
      }
      default:
        ctx.log(`exec: unexpected frame type ${f.type} from the exec process`);
    }
  };
  const onData = (d: Buffer) => {
    reader.push(d);
    try {
      for (let f = reader.next(); f; f = reader.next()) onFrame(f);
    } catch (e) {
      ctx.log(`exec: ${(e as Error).message}`);
      sock.destroy();
    }
  };
  // The exec process went away: so does its process (nothing is left behind).
  sock.on('close', () => { if (!done) { try { running.signal(9); } catch { /* agent gone */ } } });
  sock.on('data', onData);
  if (rest.byteLength) onData(rest);
  sock.resume();
}
