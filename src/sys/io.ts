// Raw fd I/O, eventfd, epoll and mmap through libc: what worker threads use
// to wait on kick eventfds and to map guest memory shared by memfd.
import { libc, koffi, check, lastErrno, SysError } from './libc.js';
import os from 'node:os';

const E = os.constants.errno;

const c_read = libc.func('intptr_t read(int fd, void *buf, size_t count)');
const c_write = libc.func('intptr_t write(int fd, const void *buf, size_t count)');
const c_close = libc.func('int close(int fd)');
const c_eventfd = libc.func('int eventfd(unsigned int initval, int flags)');
const c_epoll_create1 = libc.func('int epoll_create1(int flags)');
const c_epoll_ctl = libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
const c_epoll_wait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
const c_mmap = libc.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)');
const c_munmap = libc.func('int munmap(void *addr, size_t length)');
const c_fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');
const c_memfd_create = libc.func('int memfd_create(const char *name, unsigned int flags)');
const c_ftruncate = libc.func('int ftruncate(int fd, int64_t length)');
const c_lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)');
const c_sendfile = libc.func('intptr_t sendfile(int out_fd, int in_fd, void *offset, size_t count)');
const c_fallocate = libc.func('int fallocate(int fd, int mode, int64_t offset, int64_t len)');

export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const O_NONBLOCK = 0o4000;
const F_GETFL = 3;
const F_SETFL = 4;
const F_SETFD = 2;
const FD_CLOEXEC = 1;

/** read(2) into buf; returns bytes read, 0 at EOF, -1 when it would block. */
export function readFd(fd: number, buf: Uint8Array, len = buf.byteLength): number {
  for (;;) {
    const n = Number(c_read(fd, buf, len));
    if (n >= 0) return n;
    const e = lastErrno();
    if (e === E.EINTR) continue;
    if (e === E.EAGAIN) return -1;
    throw new SysError('read', e);
  }
}

/** write(2) from buf; returns bytes written, -1 when it would block. */
export function writeFd(fd: number, buf: Uint8Array, len = buf.byteLength): number {
  for (;;) {
    const n = Number(c_write(fd, buf, len));
    if (n >= 0) return n;
    const e = lastErrno();
    if (e === E.EINTR) continue;
    if (e === E.EAGAIN) return -1;
    throw new SysError('write', e);
  }
}

export function closeFd(fd: number): void {
  if (fd >= 0) c_close(fd);
}

export function setNonBlocking(fd: number, on = true): void {
  const fl = check('fcntl', c_fcntl(fd, F_GETFL, 0));
  check('fcntl', c_fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

export function setCloexec(fd: number): void {
  check('fcntl', c_fcntl(fd, F_SETFD, FD_CLOEXEC));
}

export function eventfd(flags = EFD_CLOEXEC | EFD_NONBLOCK): number {
  return check('eventfd', c_eventfd(0, flags));
}

const u64 = new BigUint64Array(1);
const u64bytes = new Uint8Array(u64.buffer);
/** Adds 1 to an eventfd (signals it). */
export function eventfdSignal(fd: number): void {
  u64[0] = 1n;
  writeFd(fd, u64bytes, 8);
}
/** Drains an eventfd; returns false when it was not signalled. */
export function eventfdDrain(fd: number): boolean {
  return readFd(fd, u64bytes, 8) === 8;
}

export function memfdCreate(name: string, size: number): number {
  const MFD_CLOEXEC = 1;
  const fd = check('memfd_create', c_memfd_create(name, MFD_CLOEXEC));
  check('ftruncate', c_ftruncate(fd, size));
  return fd;
}

/** Makes `len` bytes of `fd` at `offset` read as zeros (FALLOC_FL_PUNCH_HOLE; partial pages are zeroed). */
export function punchHole(fd: number, offset: number, len: number): void {
  const FALLOC_FL_KEEP_SIZE = 1, FALLOC_FL_PUNCH_HOLE = 2;
  if (len > 0) check('fallocate', c_fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len));
}

/**
 * Copies `len` bytes from `inFd` at `inOffset` to `outFd` at `outOffset`
 * inside the kernel (sendfile): no user-space buffer and no page faults on
 * a mapping of `outFd`. Moves `outFd`'s file position.
 */
export function copyFdRange(inFd: number, inOffset: number, outFd: number, outOffset: number, len: number): void {
  if (Number(c_lseek(outFd, outOffset, 0)) !== outOffset) throw new SysError('lseek', lastErrno());
  const off = new BigInt64Array([BigInt(inOffset)]);
  for (let done = 0; done < len;) {
    const n = Number(c_sendfile(outFd, inFd, off, len - done));
    if (n < 0) {
      const e = lastErrno();
      if (e === E.EINTR || e === E.EAGAIN) continue;
      throw new SysError('sendfile', e);
    }
    if (n === 0) throw new SysError('sendfile', E.EIO); // the file is shorter than it said
    done += n;
  }
}

/** A shared mapping of an fd; `bytes` is a zero-copy view over it. */
export interface Mapping {
  readonly bytes: Uint8Array;
  unmap(): void;
}

export function mmapShared(fd: number, length: number, offset = 0): Mapping {
  const PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;
  const ptr = c_mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  const addr = koffi.address(ptr);
  if (addr === 0xffffffffffffffffn) throw new SysError('mmap', lastErrno());
  const bytes = new Uint8Array(koffi.view(ptr, length));
  let mapped = true;
  return {
    bytes,
    unmap() {
      if (mapped) { mapped = false; c_munmap(ptr, length); }
    },
  };
}

/** A level-triggered epoll set whose callbacks run on the calling thread. */
export class Poller {
  readonly fd: number;
  private readonly handlers = new Map<number, (events: number) => void>();
  private readonly buf = new Uint8Array(12 * 64);
  private readonly view = new DataView(this.buf.buffer);
  private readonly evbuf = new Uint8Array(12);
  private readonly evview = new DataView(this.evbuf.buffer);

  constructor() {
    this.fd = check('epoll_create1', c_epoll_create1(0o2000000));
  }

  private ctl(op: number, fd: number, events: number): void {
    this.evview.setUint32(0, events, true);
    this.evview.setUint32(4, fd, true); // data.fd (low half of data.u64)
    this.evview.setUint32(8, 0, true);
    check('epoll_ctl', c_epoll_ctl(this.fd, op, fd, this.evbuf));
  }

  add(fd: number, events: number, handler: (events: number) => void): void {
    this.ctl(EPOLL_CTL_ADD, fd, events);
    this.handlers.set(fd, handler);
  }

  modify(fd: number, events: number): void {
    this.ctl(EPOLL_CTL_MOD, fd, events);
  }

  remove(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    try { this.ctl(EPOLL_CTL_DEL, fd, 0); } catch { /* fd may be closed already */ }
  }

  has(fd: number): boolean {
    return this.handlers.has(fd);
  }

  /** Waits once (timeout ms, -1 = forever) and dispatches ready fds. */
  poll(timeout = -1): number {
    let n: number;
    for (;;) {
      n = c_epoll_wait(this.fd, this.buf, 64, timeout);
      if (n >= 0) break;
      const e = lastErrno();
      if (e !== E.EINTR) throw new SysError('epoll_wait', e);
    }
    for (let i = 0; i < n; i++) {
      const events = this.view.getUint32(i * 12, true);
      const fd = this.view.getInt32(i * 12 + 4, true);
      this.handlers.get(fd)?.(events);
    }
    return n;
  }

  close(): void {
    closeFd(this.fd);
    this.handlers.clear();
  }
}
