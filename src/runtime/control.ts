// The VMM daemon's control socket: one JSON request per connection,
// one JSON reply. husk verbs (start, kill, ...) are its clients.
import net from 'node:net';
import path from 'node:path';

export type ControlRequest =
  | { op: 'start' }
  | { op: 'kill'; signal: number; all: boolean }
  | { op: 'ping' }
  | import('./vm-ops.js').VmOpRequest
  | { op: 'ps'; signal?: number }
  | ExecRequest;

/**
 * A long-lived request (`husk exec`): after the JSON line the connection
 * carries agent-protocol frames both ways (see exec-server.ts).
 */
export interface ExecRequest {
  op: 'exec';
  /** the OCI process, as runc's --process file holds it */
  process: import('../oci/spec.js').Process;
  /** fds 3..3+extraFds-1 of the caller are relayed */
  extraFds: number;
}

export type StreamHandler = (req: ExecRequest, sock: net.Socket, rest: Buffer) => void;

export type ControlReply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

export function controlSocketPath(socketDir: string): string {
  return path.join(socketDir, 'control.sock');
}

const MAX_REQUEST = 64 * 1024;

export function serveControl(socketPath: string, handle: (req: ControlRequest) => Promise<ControlReply>, stream?: StreamHandler): Promise<net.Server> {
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    sock.on('error', () => {});
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const nl = buf.indexOf(10);
      if (nl < 0) {
        if (buf.length > MAX_REQUEST) sock.destroy();
        return;
      }
      if (nl > MAX_REQUEST) { sock.destroy(); return; }
      sock.pause();
      sock.off('data', onData);
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.subarray(0, nl).toString('utf8')) as ControlRequest;
      } catch {
        sock.end(JSON.stringify({ ok: false, error: 'bad control request' }) + '\n');
        return;
      }
      if (req.op === 'exec' && stream) { stream(req, sock, buf.subarray(nl + 1)); return; }
      handle(req)
        .catch((err: unknown): ControlReply => ({ ok: false, error: err instanceof Error ? err.message : String(err) }))
        .then((reply) => sock.end(JSON.stringify(reply) + '\n'));
    };
    sock.on('data', onData);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve(server));
  });
}

export class ControlError extends Error {}

export function controlRequest(socketPath: string, req: ControlRequest, timeoutMs = 60_000): Promise<ControlReply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new ControlError('the container\'s VMM did not answer')); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => { buf += d; });
    sock.on('error', (err) => { clearTimeout(timer); reject(new ControlError(`cannot reach the container's VMM: ${err.message}`)); });
    sock.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlReply);
      } catch {
        reject(new ControlError('the container\'s VMM went away'));
      }
    });
  });
}
