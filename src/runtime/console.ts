// process.terminal: a host pty whose master goes to the caller over the
// console socket (runc's protocol: one message, data = pty name,
// SCM_RIGHTS = the master fd) and whose slave husk bridges to the guest.
import fs from 'node:fs';
import tty from 'node:tty';
import { openPty, getWinsize, makeRaw, setControllingTty } from '../sys/pty.js';
import { connectUnix, FdSocket } from '../sys/unix-socket.js';
import { closeFd } from '../sys/io.js';

export class ConsoleError extends Error {}

export interface HostTerminal {
  /** reads what the user types (from the master side) */
  input: tty.ReadStream;
  /** writes what the guest's terminal shows */
  output: fs.WriteStream;
  size(): { rows: number; cols: number };
  close(): void;
}

export function sendPtyMaster(consoleSocket: string): HostTerminal {
  const pty = openPty();
  try {
    let fd: number;
    try {
      fd = connectUnix(consoleSocket);
    } catch (err) {
      throw new ConsoleError(`cannot connect to console socket ${consoleSocket}: ${(err as Error).message}`);
    }
    const sock = new FdSocket(fd, 256);
    try {
      sock.send(Buffer.from(pty.name), [pty.master]);
    } finally {
      sock.close();
    }
  } catch (err) {
    closeFd(pty.master);
    closeFd(pty.slave);
    throw err;
  }
  closeFd(pty.master);
  // As session leader, take the slave as controlling terminal: size changes then raise SIGWINCH here.
  try { setControllingTty(pty.slave); } catch { /* not a session leader: resize relaying is lost */ }
  // The guest's pty does the line discipline; this one only carries bytes.
  makeRaw(pty.slave);
  const input = new tty.ReadStream(pty.slave);
  // EIO once the master side (the caller's end) is closed: the terminal is simply gone.
  input.on('error', () => {});
  const outFd = fs.openSync(`/proc/self/fd/${pty.slave}`, 'w');
  const output = fs.createWriteStream('', { fd: outFd, autoClose: true });
  output.on('error', () => {});
  return {
    input,
    output,
    size: () => getWinsize(pty.slave),
    close() {
      input.destroy();
      output.destroy();
    },
  };
}
