// Host side of the agent protocol (docs/agent-protocol.md): framing and TLV.
export const PROTOCOL_VERSION = 1;
export const HEADER_SIZE = 12;
export const MAX_PAYLOAD = 1 << 20;

export const MsgType = {
  HELLO: 1,
  RUN: 2,
  STARTED: 3,
  STDOUT: 4,
  STDERR: 5,
  STDIN: 6,
  EXIT: 7,
  SIGNAL: 8,
  POWEROFF: 9,
  ERROR: 10,
  CREATED: 11,
  START: 12,
  SETUP: 13,
  SETUP_DONE: 14,
  RESIZE: 15,
  // extension B: exec, ps, extra fds
  PS: 16,
  PS_LIST: 17,
  FD_DATA: 18,
  // extension C: the container's cgroup in the guest
  UPDATE: 20,
  STATS: 21,
  RESULT: 22,
  /** extension D: the container's /proc files */
  PROCFS: 24,
} as const;

export const Tag = {
  VERSION: 1,
  AGENT: 2,
  ARG: 3,
  ENV: 4,
  CWD: 5,
  PID: 6,
  STATUS: 7,
  WAITSTATUS: 8,
  SIGNO: 9,
  ERRNO: 10,
  MESSAGE: 11,
  STDIN: 12,
  TERMINAL: 13,
  WINSIZE: 14,
  UID: 15,
  GID: 16,
  GIDS: 17,
  UMASK: 18,
  RLIMIT: 19,
  CAPS: 20,
  NO_NEW_PRIVS: 21,
  OOM_SCORE_ADJ: 22,
  SECCOMP: 23,
  SECCOMP_FLAGS: 24,
  HOLD: 25,
  HOSTNAME: 26,
  DOMAINNAME: 27,
  MOUNT: 28,
  MASKED: 29,
  READONLY: 30,
  SYSCTL: 31,
  ROOTFS_RO: 32,
  DEVICE: 33,
  FEATURES: 40,
  EXTRA_FDS: 41,
  PSENTRY: 42,
  CPID: 43,
  // extension C
  CG_MEMORY_MAX: 60,
  CG_MEMORY_SWAP_MAX: 61,
  CG_MEMORY_LOW: 62,
  CG_CPU_MAX: 63,
  CG_CPU_WEIGHT: 64,
  CG_PIDS_MAX: 65,
  CG_FILE: 66,
  PROC_FILE: 68,
  CG_NAMESPACE: 67,
  // networking (docs/agent-protocol.md, "Networking")
  NET_LINK: 50,
  NET_ADDR: 51,
  NET_ROUTE: 52,
  // TCP's minimum RTO on eth0's routes (docs/agent-protocol.md, "TCP minimum RTO")
  NET_RTO_MIN: 90,
} as const;

/** FEATURES bit: the agent implements extension A (full process spec, SETUP, HOLD/START, RESIZE). */
export const FEATURE_EXTENSION_A = 1;
/** FEATURES bit: extension B (container pid namespace, exec'd processes join it, PS, EXTRA_FDS/FD_DATA). */
export const FEATURE_EXTENSION_B = 2;
/** FEATURES bit: the agent runs the container in its own cgroup (UPDATE, STATS, SETUP resources). */
export const FEATURE_CGROUP = 4;
/** FEATURES bit: the agent configures eth0 from SETUP's NET_* attributes. */
export const FEATURE_NET = 8;
/** FEATURES bit: extension D, PROCFS (the container's /proc files for the host's /proc view). */
export const FEATURE_PROCFS = 16;
/** FEATURES bit: SETUP's NET_RTO_MIN sets TCP's minimum retransmission timeout on eth0's routes. */
export const FEATURE_NET_RTO_MIN = 32;
/** FEATURES bit: extension F, the agent understands husk.defer_root (mounts the rootfs at SETUP or first RUN). */
export const FEATURE_DEFER_ROOT = 1 << 6;

export interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Uint8Array;
}

export class ProtocolError extends Error {}

export function encodeFrame(type: number, id: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  if (payload.byteLength > MAX_PAYLOAD) throw new ProtocolError(`message of ${payload.byteLength} bytes exceeds 1 MiB`);
  const out = new Uint8Array(HEADER_SIZE + payload.byteLength);
  const v = new DataView(out.buffer);
  v.setUint32(0, payload.byteLength, true);
  v.setUint16(4, type, true);
  v.setUint16(6, 0, true);
  v.setUint32(8, id, true);
  out.set(payload, HEADER_SIZE);
  return out;
}

/** Incremental frame parser for a byte stream. */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;

  push(data: Uint8Array): void {
    this.chunks.push(data);
    this.buffered += data.byteLength;
  }

  private peek(n: number): Uint8Array {
    if (this.chunks[0]!.byteLength < n) {
      const all = new Uint8Array(this.buffered);
      let o = 0;
      for (const c of this.chunks) { all.set(c, o); o += c.byteLength; }
      this.chunks = [all];
    }
    return this.chunks[0]!.subarray(0, n);
  }

  private consume(n: number): void {
    this.buffered -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      if (c.byteLength <= n) { this.chunks.shift(); n -= c.byteLength; }
      else { this.chunks[0] = c.subarray(n); n = 0; }
    }
  }

  /** The next complete frame, or null. Throws ProtocolError on an oversized frame. */
  next(): Frame | null {
    if (this.buffered < HEADER_SIZE) return null;
    const h = this.peek(HEADER_SIZE);
    const v = new DataView(h.buffer, h.byteOffset, HEADER_SIZE);
    const len = v.getUint32(0, true);
    if (len > MAX_PAYLOAD) throw new ProtocolError(`agent sent a ${len}-byte message (limit 1 MiB)`);
    if (this.buffered < HEADER_SIZE + len) return null;
    const type = v.getUint16(4, true);
    const flags = v.getUint16(6, true);
    const id = v.getUint32(8, true);
    const whole = this.peek(HEADER_SIZE + len);
    const payload = whole.slice(HEADER_SIZE);
    this.consume(HEADER_SIZE + len);
    return { type, flags, id, payload };
  }
}

export type Attr = { tag: number; value: Uint8Array };

export class TlvWriter {
  private parts: Uint8Array[] = [];
  private add(tag: number, value: Uint8Array): this {
    const h = new Uint8Array(6);
    const v = new DataView(h.buffer);
    v.setUint16(0, tag, true);
    v.setUint32(2, value.byteLength, true);
    this.parts.push(h, value);
    return this;
  }
  string(tag: number, s: string): this {
    if (s.includes('\0')) throw new ProtocolError('string contains NUL');
    return this.add(tag, new TextEncoder().encode(s));
  }
  u32(tag: number, n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n, true);
    return this.add(tag, b);
  }
  u64(tag: number, n: bigint): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, n), true);
    return this.add(tag, b);
  }
  u8(tag: number, n: number): this {
    return this.add(tag, Uint8Array.of(n));
  }
  i32(tag: number, n: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, n, true);
    return this.add(tag, b);
  }
  bytes(tag: number, value: Uint8Array): this {
    return this.add(tag, value);
  }
  /** Appends attributes encoded elsewhere. */
  raw(encoded: Uint8Array): this {
    this.parts.push(encoded);
    return this;
  }
  finish(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** WINSIZE's value: rows, cols (u16 each). */
export function winsizeBytes(ws: { rows: number; cols: number }): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint16(0, ws.rows, true);
  new DataView(b.buffer).setUint16(2, ws.cols, true);
  return b;
}

export function parseTlv(payload: Uint8Array): Attr[] {
  const out: Attr[] = [];
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let o = 0;
  while (o < payload.byteLength) {
    if (o + 6 > payload.byteLength) throw new ProtocolError('truncated attribute header');
    const tag = v.getUint16(o, true);
    const len = v.getUint32(o + 2, true);
    o += 6;
    if (len > payload.byteLength - o) throw new ProtocolError('attribute overruns message');
    out.push({ tag, value: payload.subarray(o, o + len) });
    o += len;
  }
  return out;
}

export function attrString(attrs: Attr[], tag: number): string | undefined {
  const a = attrs.find((x) => x.tag === tag);
  return a ? new TextDecoder('utf-8', { fatal: false }).decode(a.value) : undefined;
}

export function attrInt(attrs: Attr[], tag: number, signed = false): number | undefined {
  const a = attrs.find((x) => x.tag === tag);
  if (!a || a.value.byteLength !== 4) return undefined;
  const v = new DataView(a.value.buffer, a.value.byteOffset, 4);
  return signed ? v.getInt32(0, true) : v.getUint32(0, true);
}
