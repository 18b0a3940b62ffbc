// A minimal QMP client (QEMU Machine Protocol): one connection per call
// sequence, the capabilities handshake, then commands answered in order.
// QMP is JSON objects separated by newlines; asynchronous events
// (`{"event": ...}`) may arrive between replies and are skipped.
import net from 'node:net';

export class QmpError extends Error {}

const MAX_LINE = 1 << 20;

export class QmpClient {
  private readonly sock: net.Socket;
  private buf = '';
  private waiters: { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }[] = [];
  private failure?: Error;

  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(new QmpError(`QMP: ${e.message}`)));
    sock.on('close', () => this.fail(new QmpError('QMP connection closed')));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpClient> {
    const sock = net.connect(socketPath);
    const c = new QmpClient(sock);
    const timer = setTimeout(() => c.fail(new QmpError('QMP: QEMU did not answer in time')), timeoutMs);
    try {
      const greeting = await c.next();
      if (!('QMP' in greeting)) throw new QmpError('QMP: no greeting');
      await c.execute('qmp_capabilities');
      return c;
    } catch (e) {
      c.close();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Runs one command; resolves with its `return` value, rejects with its `error`. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.sock.write(JSON.stringify(args ? { execute: command, arguments: args } : { execute: command }) + '\n');
    for (;;) {
      const msg = await this.next();
      if ('event' in msg) continue;
      if ('error' in msg) {
        const e = msg.error as { desc?: string } | undefined;
        throw new QmpError(`QMP ${command}: ${e?.desc ?? 'failed'}`);
      }
      if ('return' in msg) return msg.return;
    }
  }

  close(): void {
    this.sock.destroy();
  }

  private next(): Promise<Record<string, unknown>> {
    if (this.failure) return Promise.reject(this.failure);
    const line = this.takeLine();
    if (line) return Promise.resolve(line);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private takeLine(): Record<string, unknown> | undefined {
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) return undefined;
      const text = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (!text) continue;
      try {
        const v = JSON.parse(text) as unknown;
        if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
      } catch { /* fall through */ }
      this.fail(new QmpError('QMP: malformed message'));
      return undefined;
    }
  }

  private onData(d: string): void {
    this.buf += d;
    if (this.buf.length > MAX_LINE) { this.fail(new QmpError('QMP: message too long')); return; }
    while (this.waiters.length) {
      const line = this.takeLine();
      if (!line) break;
      this.waiters.shift()!.resolve(line);
    }
  }

  /** Ends the session: pending and later calls reject with err. */
  fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    this.waiters.splice(0).forEach((w) => w.reject(err));
    this.sock.destroy();
  }
}

/** Connects, runs the commands in order, disconnects; returns the last result. Fails after timeoutMs overall. */
export async function qmpRun(socketPath: string, commands: string[], timeoutMs = 30_000): Promise<unknown> {
  const c = await QmpClient.connect(socketPath, timeoutMs);
  const timer = setTimeout(() => c.fail(new QmpError(`QMP: no answer to ${commands.join(', ')} in ${timeoutMs / 1000} s`)), timeoutMs);
  try {
    let last: unknown;
    for (const cmd of commands) last = await c.execute(cmd);
    return last;
  } finally {
    clearTimeout(timer);
    c.close();
  }
}
