// Streams over fds received with SCM_RIGHTS (a pooled VMM gets the
// container's stdio this way), chosen the way Node picks them for its own
// stdio: a tty, a pipe or socket (non-blocking, through libuv), or a file.
import fs from 'node:fs';
import net from 'node:net';
import tty from 'node:tty';

export function writableFd(fd: number): NodeJS.WritableStream {
  if (tty.isatty(fd)) return new tty.WriteStream(fd);
  const st = fs.fstatSync(fd);
  if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd, readable: false, writable: true });
  return fs.createWriteStream('', { fd, autoClose: true });
}

/** Created on first use: a pipe or tty stream starts reading as soon as it exists. */
export function readableFd(fd: number): NodeJS.ReadableStream {
  if (tty.isatty(fd)) return new tty.ReadStream(fd);
  const st = fs.fstatSync(fd);
  if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd, readable: true, writable: false });
  return fs.createReadStream('', { fd, autoClose: true });
}

/** Ends a stream made here so its fd closes (the reader then sees EOF once every holder closed it). */
export function closeStream(s: NodeJS.WritableStream | NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve) => {
    const d = s as unknown as { destroy(): void; once(e: string, f: () => void): void; closed?: boolean; destroyed?: boolean };
    if (d.closed || d.destroyed) { resolve(); return; }
    d.once('close', () => resolve());
    d.destroy();
    setTimeout(resolve, 500).unref();
  });
}
