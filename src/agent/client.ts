// Talks to the guest agent over the vsock stream that the vsock device
// bridges to a unix socket. Everything the agent sends is checked: a guest
// that sends garbage ends the session with an error, it never crashes husk.
import net from 'node:net';
import type { Writable } from 'node:stream';
import {
  FrameReader, MsgType, PROTOCOL_VERSION, ProtocolError, Tag, TlvWriter,
  attrInt, attrString, encodeFrame, parseTlv, type Frame,
} from './protocol.js';

export interface ProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  /** forward stdin with STDIN messages; otherwise the process gets /dev/null */
  stdin?: boolean;
}

export interface ExitStatus {
  /** exit code, or 128+signal */
  status: number;
  waitStatus: number;
}

/** The agent refused or failed to start a process (e.g. executable not found). */
export class AgentError extends Error {
  readonly errno: number;
  constructor(message: string, errno: number) {
    super(message);
    this.errno = errno;
  }
}

interface ProcState {
  stdout: Writable;
  stderr: Writable;
  started: PromiseWithResolvers<number>;
  exited: PromiseWithResolvers<ExitStatus>;
}

export class RunningProcess {
  readonly id: number;
  readonly started: Promise<number>;
  readonly exited: Promise<ExitStatus>;
  private readonly conn: AgentConnection;
  constructor(conn: AgentConnection, id: number, started: Promise<number>, exited: Promise<ExitStatus>) {
    this.conn = conn;
    this.id = id;
    this.started = started;
    this.exited = exited;
  }
  signal(signo: number): void {
    this.conn.send(MsgType.SIGNAL, this.id, new TlvWriter().u32(Tag.SIGNO, signo).finish());
  }
  writeStdin(data: Uint8Array): void {
    for (let o = 0; o < data.byteLength; o += 65536) {
      this.conn.send(MsgType.STDIN, this.id, data.subarray(o, o + 65536));
    }
  }
  closeStdin(): void {
    this.conn.send(MsgType.STDIN, this.id);
  }
}

export interface Hello {
  version: number;
  agent: string;
}

export class AgentConnection {
  readonly hello: Hello;
  private readonly sock: net.Socket;
  private readonly reader: FrameReader;
  private readonly procs = new Map<number, ProcState>();
  private nextId = 1;
  private failure?: Error;
  /** Settles when the connection ends; rejects if it ended through a protocol error. */
  readonly closed: Promise<void>;

  private constructor(sock: net.Socket, reader: FrameReader, hello: Hello) {
    this.sock = sock;
    this.reader = reader;
    this.hello = hello;
    const closed = Promise.withResolvers<void>();
    this.closed = closed.promise;
    this.closed.catch(() => {});
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e: Error) => this.fail(e));
    sock.on('close', () => {
      this.fail(new ProtocolError('the agent connection closed'));
      if (this.failure && !(this.failure instanceof ProtocolError && this.failure.message === 'the agent connection closed')) closed.reject(this.failure);
      else closed.resolve();
    });
    this.drain();
  }

  /** Waits on `server` for the agent to connect and say HELLO. */
  static accept(server: net.Server, timeoutMs: number): Promise<AgentConnection> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        server.off('connection', onConn);
        reject(new Error(`the guest agent did not connect within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      const onConn = (sock: net.Socket) => {
        server.off('connection', onConn);
        const reader = new FrameReader();
        const onData = (d: Buffer) => {
          reader.push(d);
          let f: Frame | null;
          try {
            f = reader.next();
          } catch (err) {
            return done(err as Error);
          }
          if (!f) return;
          if (f.type !== MsgType.HELLO) return done(new ProtocolError(`agent sent message type ${f.type} before HELLO`));
          try {
            const attrs = parseTlv(f.payload);
            const version = attrInt(attrs, Tag.VERSION);
            if (version !== PROTOCOL_VERSION) return done(new ProtocolError(`agent speaks protocol ${version}, husk speaks ${PROTOCOL_VERSION}`));
            done(undefined, { version, agent: attrString(attrs, Tag.AGENT) ?? 'unknown' });
          } catch (err) {
            done(err as Error);
          }
        };
        const onClose = () => done(new ProtocolError('the agent closed its connection before HELLO'));
        const done = (err?: Error, hello?: Hello) => {
          clearTimeout(timer);
          sock.off('data', onData);
          sock.off('close', onClose);
          if (err) { sock.destroy(); reject(err); return; }
          sock.pause();
          resolve(new AgentConnection(sock, reader, hello!));
          sock.resume();
        };
        sock.on('data', onData);
        sock.on('close', onClose);
      };
      server.on('connection', onConn);
    });
  }

  send(type: number, id: number, payload?: Uint8Array): void {
    if (this.failure) throw this.failure;
    this.sock.write(encodeFrame(type, id, payload));
  }

  run(spec: ProcessSpec, stdout: Writable, stderr: Writable): RunningProcess {
    const id = this.nextId++;
    const w = new TlvWriter();
    for (const a of spec.args) w.string(Tag.ARG, a);
    for (const e of spec.env) w.string(Tag.ENV, e);
    w.string(Tag.CWD, spec.cwd);
    if (spec.stdin) w.u8(Tag.STDIN, 1);
    const st: ProcState = {
      stdout, stderr,
      started: Promise.withResolvers<number>(),
      exited: Promise.withResolvers<ExitStatus>(),
    };
    st.started.promise.catch(() => {});
    st.exited.promise.catch(() => {});
    this.procs.set(id, st);
    this.send(MsgType.RUN, id, w.finish());
    return new RunningProcess(this, id, st.started.promise, st.exited.promise);
  }

  poweroff(): void {
    if (!this.failure) this.sock.write(encodeFrame(MsgType.POWEROFF, 0));
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(d: Buffer): void {
    this.reader.push(d);
    this.drain();
  }

  private drain(): void {
    try {
      for (let f = this.reader.next(); f; f = this.reader.next()) this.handle(f);
    } catch (err) {
      this.fail(err as Error);
      this.sock.destroy();
    }
  }

  private handle(f: Frame): void {
    const st = this.procs.get(f.id);
    switch (f.type) {
      case MsgType.STDOUT:
      case MsgType.STDERR: {
        if (!st) throw new ProtocolError(`agent sent output for unknown process ${f.id}`);
        const out = f.type === MsgType.STDOUT ? st.stdout : st.stderr;
        // Backpressure: stop reading the guest until our consumer drains.
        if (!out.write(f.payload)) {
          this.sock.pause();
          out.once('drain', () => this.sock.resume());
        }
        return;
      }
      case MsgType.STARTED: {
        if (!st) throw new ProtocolError(`agent started unknown process ${f.id}`);
        const pid = attrInt(parseTlv(f.payload), Tag.PID);
        if (pid === undefined) throw new ProtocolError('STARTED without PID');
        st.started.resolve(pid);
        return;
      }
      case MsgType.EXIT: {
        if (!st) throw new ProtocolError(`agent reported exit of unknown process ${f.id}`);
        const attrs = parseTlv(f.payload);
        const status = attrInt(attrs, Tag.STATUS, true);
        if (status === undefined || status < 0 || status > 255) throw new ProtocolError('EXIT without a valid STATUS');
        this.procs.delete(f.id);
        st.exited.resolve({ status, waitStatus: attrInt(attrs, Tag.WAITSTATUS) ?? 0 });
        return;
      }
      case MsgType.ERROR: {
        const attrs = parseTlv(f.payload);
        const msg = attrString(attrs, Tag.MESSAGE) ?? 'agent error';
        const err = new AgentError(msg.replace(/[\r\n]+/g, ' ').slice(0, 500), attrInt(attrs, Tag.ERRNO, true) ?? 0);
        if (st) {
          this.procs.delete(f.id);
          st.started.reject(err);
          st.exited.reject(err);
        }
        return;
      }
      default:
        throw new ProtocolError(`agent sent unexpected message type ${f.type}`);
    }
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const st of this.procs.values()) {
      st.started.reject(err);
      st.exited.reject(err);
    }
    this.procs.clear();
  }
}
