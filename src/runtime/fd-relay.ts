// --preserve-fds for a VM: host fds cannot enter the guest, so fds
// 3..3+N-1 of the caller are relayed as byte streams to fds 3..3+N-1 of
// the guest process (a socketpair end there). What the host fd yields
// (read from its current offset, until EOF) goes to the process; what the
// process writes goes to the host fd (at its current offset / appended).
// Access mode decides the directions: O_RDONLY read only, O_WRONLY write
// only, O_RDWR both. Not relayable: a listening socket (no connection can
// be carried), seeks, ioctls, fd-specific state; the guest sees a stream.
import fs from 'node:fs';
import net from 'node:net';
import { libc } from '../sys/libc.js';

const c_fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');
const F_GETFL = 3;
const O_ACCMODE = 3;

export interface FdRelay {
  /** bytes (null: EOF) the guest process wrote to its fd */
  fromGuest(fd: number, data: Uint8Array | null): void;
  /** Resolves once what the guest wrote so far has been handed to the OS. */
  flush(): Promise<void>;
  close(): void;
}

interface One {
  write?: (d: Uint8Array) => void;
  flush?: () => Promise<void>;
  end?: () => void;
  destroy(): void;
}

/** Starts relaying fds first..first+n-1; `toGuest(fd, bytes|null)` sends to the guest. */
export function relayFds(n: number, toGuest: (fd: number, data: Uint8Array | null) => void, first = 3): FdRelay {
  const ones = new Map<number, One>();
  for (let fd = first; fd < first + n; fd++) {
    const guestFd = 3 + (fd - first);
    let mode: number;
    let st: fs.Stats;
    try {
      mode = c_fcntl(fd, F_GETFL, 0);
      st = fs.fstatSync(fd);
    } catch {
      mode = -1;
    }
    if (mode < 0) { toGuest(guestFd, null); continue; }
    const acc = mode & O_ACCMODE;
    const readable = acc === 0 || acc === 2;
    const writable = acc === 1 || acc === 2;
    if (st!.isSocket() || st!.isFIFO()) {
      const s = new net.Socket({ fd, readable, writable, allowHalfOpen: true });
      s.on('error', () => { if (readable) toGuest(guestFd, null); });
      if (readable) {
        s.on('data', (d: Buffer) => toGuest(guestFd, d));
        s.on('end', () => toGuest(guestFd, null));
      } else {
        toGuest(guestFd, null);
      }
      ones.set(guestFd, {
        write: writable ? (d) => s.write(d) : undefined,
        flush: writable ? () => new Promise<void>((r) => { if (s.destroyed || !s.writable) r(); else s.write('', () => r()); }) : undefined,
        end: writable ? () => s.end() : undefined,
        destroy: () => s.destroy(),
      });
    } else {
      let r: fs.ReadStream | undefined;
      let w: fs.WriteStream | undefined;
      if (readable) {
        r = fs.createReadStream('', { fd, autoClose: false });
        r.on('data', (d) => toGuest(guestFd, d as Buffer));
        r.on('end', () => toGuest(guestFd, null));
        r.on('error', () => toGuest(guestFd, null));
      } else {
        toGuest(guestFd, null);
      }
      if (writable) {
        w = fs.createWriteStream('', { fd, autoClose: false });
        w.on('error', () => {});
      }
      ones.set(guestFd, {
        write: w ? (d) => w.write(d) : undefined,
        flush: w ? () => new Promise<void>((res) => { if (w.destroyed || w.writableEnded) res(); else w.write('', () => res()); }) : undefined,
        // The host fd stays open (it is the caller's): EOF from the guest ends nothing here.
        end: undefined,
        destroy: () => { r?.destroy(); w?.destroy(); },
      });
    }
  }
  return {
    fromGuest(fd, data) {
      const o = ones.get(fd);
      if (!o) return;
      if (data) o.write?.(data);
      else o.end?.();
    },
    async flush() {
      await Promise.all([...ones.values()].map((o) => o.flush?.()));
    },
    close() {
      for (const o of ones.values()) o.destroy();
      ones.clear();
    },
  };
}
