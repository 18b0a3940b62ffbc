// The VMM daemon's control socket: one JSON request per connection,
// one JSON reply. husk verbs (start, kill, ...) are its clients.
import net from 'node:net';
import path from 'node:path';

export type ControlRequest =
  | { op: 'start' }
  | { op: 'kill'; signal: number; all: boolean }
  | { op: 'ping' }
  | import('./vm-ops.js').VmOpRequest;

export type ControlReply = { ok: true; [k: string]: unknown } | { ok: false; error: string };

export function controlSocketPath(socketDir: string): string {
  return path.join(socketDir, 'control.sock');
}

const MAX_REQUEST = 64 * 1024;

export function serveControl(socketPath: string, handle: (req: ControlRequest) => Promise<ControlReply>): Promise<net.Server> {
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => {});
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) { sock.destroy(); return; }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.pause();
      let req: ControlRequest;
      try {
        req = JSON.parse(buf.slice(0, nl)) as ControlRequest;
      } catch {
        sock.end(JSON.stringify({ ok: false, error: 'bad control request' }) + '\n');
        return;
      }
      handle(req)
        .catch((err: unknown): ControlReply => ({ ok: false, error: err instanceof Error ? err.message : String(err) }))
        .then((reply) => sock.end(JSON.stringify(reply) + '\n'));
    });
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
