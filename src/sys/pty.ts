// Pseudo-terminals for containers with process.terminal: the master goes to
// the caller's console socket, husk keeps the slave and bridges it to the
// guest's terminal.
import { libc, check } from './libc.js';

const c_openpty = libc.func('int openpty(_Out_ int *amaster, _Out_ int *aslave, char *name, void *termp, void *winp)');
const c_ioctl_ptr = libc.func('int ioctl(int fd, unsigned long request, void *arg)');
const c_ioctl_int = libc.func('ioctl', 'int', ['int', 'unsigned long', 'int']);
const c_ptsname_r = libc.func('int ptsname_r(int fd, char *buf, size_t buflen)');

const c_tcgetattr = libc.func('int tcgetattr(int fd, _Out_ uint8_t *termios)');
const c_tcsetattr = libc.func('int tcsetattr(int fd, int act, const uint8_t *termios)');
const c_cfmakeraw = libc.func('void cfmakeraw(_Inout_ uint8_t *termios)');
const TERMIOS_SIZE = 60; // struct termios on x86_64 glibc

const TIOCGWINSZ = 0x5413;
const TIOCSWINSZ = 0x5414;
const TIOCSCTTY = 0x540e;

export interface Pty { master: number; slave: number; name: string }

export function openPty(): Pty {
  const m = new Int32Array(1);
  const s = new Int32Array(1);
  check('openpty', c_openpty(m, s, null, null, null));
  const buf = Buffer.alloc(128);
  check('ptsname_r', c_ptsname_r(m[0]!, buf, buf.length));
  return { master: m[0]!, slave: s[0]!, name: buf.toString('utf8', 0, buf.indexOf(0)) };
}

export function getWinsize(fd: number): { rows: number; cols: number } {
  const ws = Buffer.alloc(8);
  check('ioctl(TIOCGWINSZ)', c_ioctl_ptr(fd, TIOCGWINSZ, ws));
  return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
}

export function setWinsize(fd: number, rows: number, cols: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(cols, 2);
  check('ioctl(TIOCSWINSZ)', c_ioctl_ptr(fd, TIOCSWINSZ, ws));
}

/** Makes `fd` the controlling terminal of the calling session leader (for SIGWINCH). */
export function setControllingTty(fd: number): void {
  check('ioctl(TIOCSCTTY)', c_ioctl_int(fd, TIOCSCTTY, 0));
}

/**
 * Fully raw mode (cfmakeraw: no echo, no line editing, no output
 * processing). libuv's raw mode keeps ONLCR, which would turn the guest's
 * "\r\n" into "\r\r\n" a second time.
 */
export function makeRaw(fd: number): void {
  const t = new Uint8Array(TERMIOS_SIZE);
  check('tcgetattr', c_tcgetattr(fd, t));
  c_cfmakeraw(t);
  check('tcsetattr', c_tcsetattr(fd, 0, t));
}
