// A console-socket receiver, the caller's side of `--console-socket`: a
// unix stream socket on which the runtime sends one message whose data is
// the pty name and whose SCM_RIGHTS carries the pty master.
import fs from 'node:fs';
import tty from 'node:tty';
import { acceptUnix, FdSocket, listenUnix } from '../../src/sys/unix-socket.js';
import { closeFd, setNonBlocking } from '../../src/sys/io.js';
import { fail, sleep } from './check.js';

export interface ReceivedConsole {
  name: string;
  master: number;
}

export class ConsoleReceiver {
  readonly path: string;
  private readonly fd: number;

  constructor(socketPath: string) {
    this.path = socketPath;
    this.fd = listenUnix(socketPath);
    setNonBlocking(this.fd);
  }

  /** Waits for the runtime to connect and send the master. */
  async receive(timeoutMs = 60_000, stillWaiting: () => boolean = () => true): Promise<ReceivedConsole> {
    const end = Date.now() + timeoutMs;
    let conn = -1;
    while ((conn = acceptUnix(this.fd, true)) < 0) {
      if (Date.now() > end) fail('no connection on the console socket');
      if (!stillWaiting()) fail('the runtime finished without connecting to the console socket');
      await sleep(20);
    }
    const sock = new FdSocket(conn, 4096);
    try {
      let msg: ReturnType<FdSocket['recv']>;
      while ((msg = sock.recv(4096)) === undefined) {
        if (Date.now() > end) fail('nothing received on the console socket');
        await sleep(20);
      }
      if (!msg) fail('the console socket closed without a message');
      if (msg.fds.length !== 1) {
        for (const f of msg.fds) closeFd(f);
        fail(`expected one fd with the console message, got ${msg.fds.length}`);
      }
      return { name: Buffer.from(msg.data).toString(), master: msg.fds[0]! };
    } finally {
      sock.close();
    }
  }

  close(): void {
    closeFd(this.fd);
    fs.rmSync(this.path, { force: true });
  }
}

/** Collects what the terminal shows; reading stops at EIO (every slave closed). */
export class TerminalReader {
  private text = '';
  private done = false;
  private readonly stream: tty.ReadStream;
  readonly master: number;

  constructor(master: number) {
    this.master = master;
    // A tty stream polls the fd (epoll): no thread-pool read left hanging.
    this.stream = new tty.ReadStream(master);
    this.stream.on('data', (d) => { this.text += d.toString(); });
    this.stream.on('error', () => { this.done = true; });
    this.stream.on('end', () => { this.done = true; });
  }

  get output(): string { return this.text; }
  get closed(): boolean { return this.done; }

  write(s: string): void {
    fs.writeSync(this.master, s);
  }

  close(): void {
    this.stream.destroy();
  }
}
