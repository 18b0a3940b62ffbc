// Talks to the guest agent over the vsock stream that the vsock device
// bridges to a unix socket. Everything the agent sends is checked: a guest
// that sends garbage ends the session with an error, it never crashes husk.
import net from 'node:net';
import type { Writable } from 'node:stream';
import {
  FEATURE_EXTENSION_A, FEATURE_EXTENSION_B, FEATURE_PROCFS, FrameReader, MsgType, PROTOCOL_VERSION, ProtocolError, Tag, TlvWriter,
  attrInt, attrString, encodeFrame, parseTlv, winsizeBytes, type Frame,
} from './protocol.js';
import { encodeNetwork, type GuestNetwork } from './net-attrs.js';

export interface ProcessSpec {
  args: string[];
  env: string[];
  cwd: string;
  /** forward stdin with STDIN messages; otherwise the process gets /dev/null */
  stdin?: boolean;
  terminal?: boolean;
  winsize?: { rows: number; cols: number };
  uid?: number;
  gid?: number;
  gids?: number[];
  umask?: number;
  rlimits?: { resource: number; soft: bigint; hard: bigint }[];
  caps?: { bounding: bigint; effective: bigint; permitted: bigint; inheritable: bigint; ambient: bigint };
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  seccomp?: { program: Uint8Array; flags: number };
  /** extension B: fds 3..3+extraFds-1 of the process are relayed with FD_DATA */
  extraFds?: number;
}

/** One mount for SETUP, already translated from OCI options to mount(2) terms. */
export interface AgentMount {
  type: string;
  source: string;
  destination: string;
  flags: number;
  propagation: number;
  data: string;
}

export interface AgentDevice {
  type: 'c' | 'b' | 'u' | 'p';
  major: number;
  minor: number;
  /** permission bits; 0 = 0666 */
  mode: number;
  uid: number;
  gid: number;
  path: string;
}

export interface SetupSpec {
  devices?: AgentDevice[];
  hostname?: string;
  domainname?: string;
  mounts: AgentMount[];
  masked: string[];
  readonly: string[];
  sysctl: Record<string, string>;
  rootfsReadonly: boolean;
  /** extension C: CG_NAMESPACE and resource attributes (tags 60-67) for the container's cgroup, already encoded */
  resources?: Uint8Array;
  /** eth0's configuration (only for an agent with FEATURE_NET) */
  network?: GuestNetwork;
}

function u64le(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
  return b;
}

export function encodeRun(spec: ProcessSpec, hold: boolean): Uint8Array {
  const w = new TlvWriter();
  for (const a of spec.args) w.string(Tag.ARG, a);
  for (const e of spec.env) w.string(Tag.ENV, e);
  w.string(Tag.CWD, spec.cwd);
  if (spec.stdin) w.u8(Tag.STDIN, 1);
  if (spec.terminal) w.u8(Tag.TERMINAL, 1);
  if (spec.winsize) w.bytes(Tag.WINSIZE, winsizeBytes(spec.winsize));
  if (spec.uid !== undefined) w.u32(Tag.UID, spec.uid);
  if (spec.gid !== undefined) w.u32(Tag.GID, spec.gid);
  if (spec.gids) {
    const b = new Uint8Array(4 * spec.gids.length);
    spec.gids.forEach((g, i) => new DataView(b.buffer).setUint32(4 * i, g, true));
    w.bytes(Tag.GIDS, b);
  }
  if (spec.umask !== undefined) w.u32(Tag.UMASK, spec.umask);
  for (const r of spec.rlimits ?? []) {
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    v.setUint32(0, r.resource, true);
    v.setBigUint64(8, BigInt.asUintN(64, r.soft), true);
    v.setBigUint64(16, BigInt.asUintN(64, r.hard), true);
    w.bytes(Tag.RLIMIT, b);
  }
  if (spec.caps) {
    const c = spec.caps;
    w.bytes(Tag.CAPS, Buffer.concat([c.bounding, c.effective, c.permitted, c.inheritable, c.ambient].map(u64le)));
  }
  if (spec.noNewPrivileges) w.u8(Tag.NO_NEW_PRIVS, 1);
  if (spec.oomScoreAdj !== undefined) w.i32(Tag.OOM_SCORE_ADJ, spec.oomScoreAdj);
  if (spec.seccomp) {
    w.bytes(Tag.SECCOMP, spec.seccomp.program);
    w.u32(Tag.SECCOMP_FLAGS, spec.seccomp.flags);
  }
  if (hold) w.u8(Tag.HOLD, 1);
  if (spec.extraFds) w.u32(Tag.EXTRA_FDS, spec.extraFds);
  return w.finish();
}


export function encodeSetup(s: SetupSpec): Uint8Array {
  const w = new TlvWriter();
  // First: the cgroup namespace flag must reach the agent before the MOUNTs.
  if (s.resources?.byteLength) w.raw(s.resources);
  if (s.hostname !== undefined) w.string(Tag.HOSTNAME, s.hostname);
  if (s.domainname !== undefined) w.string(Tag.DOMAINNAME, s.domainname);
  for (const m of s.mounts) {
    for (const str of [m.type, m.source, m.destination, m.data]) {
      if (str.includes('\0')) throw new ProtocolError('mount field contains NUL');
    }
    const head = new Uint8Array(8);
    new DataView(head.buffer).setUint32(0, m.flags >>> 0, true);
    new DataView(head.buffer).setUint32(4, m.propagation >>> 0, true);
    const strs = new TextEncoder().encode(`${m.type}\0${m.source}\0${m.destination}\0${m.data}\0`);
    w.bytes(Tag.MOUNT, Buffer.concat([head, strs]));
  }
  for (const p of s.masked) w.string(Tag.MASKED, p);
  for (const p of s.readonly) w.string(Tag.READONLY, p);
  for (const [k, v] of Object.entries(s.sysctl)) w.string(Tag.SYSCTL, `${k}=${v}`);
  for (const d of s.devices ?? []) {
    if (d.path.includes('\0')) throw new ProtocolError('device path contains NUL');
    const head = new Uint8Array(24);
    const v = new DataView(head.buffer);
    [d.type.charCodeAt(0), d.major, d.minor, d.mode, d.uid, d.gid].forEach((n, i) => v.setUint32(4 * i, n >>> 0, true));
    w.bytes(Tag.DEVICE, Buffer.concat([head, new TextEncoder().encode(`${d.path}\0`)]));
  }
  if (s.rootfsReadonly) w.u8(Tag.ROOTFS_RO, 1);
  if (s.network) encodeNetwork(w, s.network);
  return w.finish();
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
  created: PromiseWithResolvers<number>;
  started: PromiseWithResolvers<number>;
  exited: PromiseWithResolvers<ExitStatus>;
  /** extension B: bytes from the process's fd (null: EOF) */
  onFdData?: (fd: number, data: Uint8Array | null) => void;
  /** its pid in the container's pid namespace (STARTED's CPID) */
  cpid?: number;
}

/** One process of the container, from PS_LIST (pids of the container's pid namespace). */
export interface PsEntry {
  pid: number;
  /** 0: its parent is outside the container (the agent) */
  ppid: number;
  uid: number;
  args: string[];
}

export function parsePsList(payload: Uint8Array): PsEntry[] {
  const out: PsEntry[] = [];
  for (const a of parseTlv(payload)) {
    if (a.tag !== Tag.PSENTRY) continue;
    if (a.value.byteLength < 12) throw new ProtocolError('PSENTRY shorter than 12 bytes');
    const v = new DataView(a.value.buffer, a.value.byteOffset, 12);
    const cmd = new TextDecoder('utf-8', { fatal: false }).decode(a.value.subarray(12));
    out.push({ pid: v.getUint32(0, true), ppid: v.getUint32(4, true), uid: v.getUint32(8, true), args: cmd.split('\0') });
  }
  return out;
}

export class RunningProcess {
  readonly id: number;
  /** held processes (RUN with HOLD): resolves with the guest pid once prepared */
  readonly created: Promise<number>;
  readonly started: Promise<number>;
  readonly exited: Promise<ExitStatus>;
  private readonly conn: AgentConnection;
  private readonly st: ProcState;
  constructor(conn: AgentConnection, id: number, st: ProcState) {
    this.conn = conn;
    this.st = st;
    this.id = id;
    this.created = st.created.promise;
    this.started = st.started.promise;
    this.exited = st.exited.promise;
  }
  /** Lets a held process execve. */
  start(): void {
    this.conn.send(MsgType.START, this.id);
  }
  resize(rows: number, cols: number): void {
    this.conn.send(MsgType.RESIZE, this.id, new TlvWriter().bytes(Tag.WINSIZE, winsizeBytes({ rows, cols })).finish());
  }
  signal(signo: number): void {
    this.conn.send(MsgType.SIGNAL, this.id, new TlvWriter().u32(Tag.SIGNO, signo).finish());
  }
  /** The pid in the container's pid namespace (extension B), once started. */
  get containerPid(): number | undefined {
    return this.st.cpid;
  }
  /** Where bytes the process writes to a relayed fd go (extension B). */
  onFdData(handler: (fd: number, data: Uint8Array | null) => void): void {
    this.st.onFdData = handler;
  }
  /** Bytes for relayed fd `fd` of the process; null = EOF. */
  writeFd(fd: number, data: Uint8Array | null): void {
    const head = new Uint8Array(4);
    new DataView(head.buffer).setUint32(0, fd, true);
    if (!data) { this.conn.send(MsgType.FD_DATA, this.id, head); return; }
    for (let o = 0; o < data.byteLength; o += 65536) {
      this.conn.send(MsgType.FD_DATA, this.id, Buffer.concat([head, data.subarray(o, o + 65536)]));
    }
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
  features?: number;
}

export class AgentConnection {
  readonly hello: Hello;
  private readonly sock: net.Socket;
  private readonly reader: FrameReader;
  private readonly procs = new Map<number, ProcState>();
  private nextId = 1;
  private failure?: Error;
  private setupWaiter?: PromiseWithResolvers<void>;
  /** requests answered by one RESULT or ERROR with their id (UPDATE, STATS) */
  private readonly requests = new Map<number, PromiseWithResolvers<Uint8Array>>();
  private readonly psWaiters = new Map<number, PromiseWithResolvers<PsEntry[]>>();

  private constructor(sock: net.Socket, reader: FrameReader, hello: Hello) {
    this.sock = sock;
    this.reader = reader;
    this.hello = hello;
    sock.on('data', (d: Buffer) => this.onData(d));
    sock.on('error', (e: Error) => this.fail(e));
    sock.on('close', () => this.fail(new ProtocolError('the agent connection closed')));
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
            done(undefined, { version, agent: attrString(attrs, Tag.AGENT) ?? 'unknown', features: attrInt(attrs, Tag.FEATURES) ?? 0 });
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

  /** True when the agent implements extension A (SETUP, HOLD/START, full process spec). */
  get extended(): boolean {
    return ((this.hello.features ?? 0) & FEATURE_EXTENSION_A) !== 0;
  }

  /** Runs a process; with `hold` it is prepared but waits for start(). */
  run(spec: ProcessSpec, stdout: Writable, stderr: Writable, hold = false): RunningProcess {
    const id = this.nextId++;
    const st: ProcState = {
      stdout, stderr,
      created: Promise.withResolvers<number>(),
      started: Promise.withResolvers<number>(),
      exited: Promise.withResolvers<ExitStatus>(),
    };
    for (const p of [st.created, st.started, st.exited]) p.promise.catch(() => {});
    this.procs.set(id, st);
    this.send(MsgType.RUN, id, encodeRun(spec, hold));
    return new RunningProcess(this, id, st);
  }

  /** Prepares the container in the guest (mounts, hostname, ...). */
  setup(spec: SetupSpec): Promise<void> {
    if (this.setupWaiter) throw new ProtocolError('SETUP already sent');
    this.setupWaiter = Promise.withResolvers<void>();
    this.send(MsgType.SETUP, 0, encodeSetup(spec));
    return this.setupWaiter.promise;
  }

  /** Sends a request (own id) and resolves with the payload of its RESULT; ERROR rejects with AgentError. */
  request(type: number, payload?: Uint8Array): Promise<Uint8Array> {
    const id = this.nextId++;
    const w = Promise.withResolvers<Uint8Array>();
    this.requests.set(id, w);
    try {
      this.send(type, id, payload);
    } catch (err) {
      this.requests.delete(id);
      throw err;
    }
    return w.promise;
  }

  /** True when the agent implements extension B (exec into the container's pid namespace, PS, extra fds). */
  get execCapable(): boolean {
    return ((this.hello.features ?? 0) & FEATURE_EXTENSION_B) !== 0;
  }

  /** True when the agent answers PROCFS (extension D): the container's /proc files. */
  get procfsCapable(): boolean {
    return ((this.hello.features ?? 0) & FEATURE_PROCFS) !== 0;
  }

  /** The container's processes; with `signal`, each is sent that signal (kill --all). */
  ps(signal?: number): Promise<PsEntry[]> {
    const id = this.nextId++;
    const w = Promise.withResolvers<PsEntry[]>();
    this.psWaiters.set(id, w);
    const t = new TlvWriter();
    if (signal !== undefined) t.u32(Tag.SIGNO, signal);
    try {
      this.send(MsgType.PS, id, t.finish());
    } catch (err) {
      this.psWaiters.delete(id);
      throw err;
    }
    return w.promise;
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
    const req = this.requests.get(f.id);
    if (req && (f.type === MsgType.RESULT || f.type === MsgType.ERROR)) {
      this.requests.delete(f.id);
      if (f.type === MsgType.RESULT) { req.resolve(f.payload); return; }
      const attrs = parseTlv(f.payload);
      const msg = (attrString(attrs, Tag.MESSAGE) ?? 'agent error').replace(/[\r\n]+/g, ' ').slice(0, 500);
      req.reject(new AgentError(msg, attrInt(attrs, Tag.ERRNO, true) ?? 0));
      return;
    }
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
      case MsgType.STARTED:
      case MsgType.CREATED: {
        if (!st) throw new ProtocolError(`agent reported unknown process ${f.id}`);
        const attrs = parseTlv(f.payload);
        const pid = attrInt(attrs, Tag.PID);
        if (pid === undefined) throw new ProtocolError('STARTED/CREATED without PID');
        st.cpid = attrInt(attrs, Tag.CPID) ?? st.cpid;
        st.created.resolve(pid);
        if (f.type === MsgType.STARTED) st.started.resolve(pid);
        return;
      }
      case MsgType.FD_DATA: {
        if (!st) throw new ProtocolError(`agent sent fd data for unknown process ${f.id}`);
        if (f.payload.byteLength < 4) throw new ProtocolError('FD_DATA shorter than 4 bytes');
        const fd = new DataView(f.payload.buffer, f.payload.byteOffset, 4).getUint32(0, true);
        st.onFdData?.(fd, f.payload.byteLength === 4 ? null : f.payload.subarray(4));
        return;
      }
      case MsgType.PS_LIST: {
        const w = this.psWaiters.get(f.id);
        if (!w) throw new ProtocolError(`agent sent PS_LIST for unknown request ${f.id}`);
        this.psWaiters.delete(f.id);
        w.resolve(parsePsList(f.payload));
        return;
      }
      case MsgType.SETUP_DONE: {
        if (!this.setupWaiter) throw new ProtocolError('agent sent SETUP_DONE without SETUP');
        this.setupWaiter.resolve();
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
          st.created.reject(err);
          st.started.reject(err);
          st.exited.reject(err);
        } else if (f.id === 0 && this.setupWaiter) {
          this.setupWaiter.reject(err);
        } else if (this.psWaiters.has(f.id)) {
          this.psWaiters.get(f.id)!.reject(err);
          this.psWaiters.delete(f.id);
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
      st.created.reject(err);
      st.started.reject(err);
      st.exited.reject(err);
    }
    this.setupWaiter?.reject(err);
    this.procs.clear();
    for (const r of this.requests.values()) r.reject(err);
    this.requests.clear();
    for (const w of this.psWaiters.values()) w.reject(err);
    this.psWaiters.clear();
  }
}
