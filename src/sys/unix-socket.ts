// AF_UNIX stream sockets at the fd level, with SCM_RIGHTS fd passing:
// vhost-user carries memory fds and eventfds this way, which Node's net
// module cannot receive.
import { libc, koffi, check, lastErrno, SysError } from './libc.js';
import os from 'node:os';
import { closeFd } from './io.js';

const E = os.constants.errno;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CMSG_CLOEXEC = 0x40000000;
const MSG_NOSIGNAL = 0x4000;

const c_socket = libc.func('int socket(int domain, int type, int protocol)');
const c_socketpair = libc.func('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
const c_bind = libc.func('int bind(int fd, const void *addr, uint32_t len)');
const c_listen = libc.func('int listen(int fd, int backlog)');
const c_accept4 = libc.func('int accept4(int fd, void *addr, void *len, int flags)');
const c_connect = libc.func('int connect(int fd, const void *addr, uint32_t len)');
const c_recvmsg = libc.func('intptr_t recvmsg(int fd, void *msg, int flags)');
const c_sendmsg = libc.func('intptr_t sendmsg(int fd, const void *msg, int flags)');
const c_setsockopt = libc.func('int setsockopt(int fd, int level, int name, const int *value, uint32_t len)');
const SO_SNDBUF = 7;
const SO_SNDBUFFORCE = 32;

function sockaddrUn(path: string): Buffer {
  const p = Buffer.from(path);
  if (p.length >= 108) throw new Error(`unix socket path too long: ${path}`);
  const sa = Buffer.alloc(110);
  sa.writeUInt16LE(AF_UNIX, 0);
  p.copy(sa, 2);
  return sa;
}

export function listenUnix(path: string, backlog = 4): number {
  const fd = check('socket', c_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  try {
    const sa = sockaddrUn(path);
    check('bind', c_bind(fd, sa, 2 + Buffer.byteLength(path) + 1));
    check('listen', c_listen(fd, backlog));
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return fd;
}

/**
 * Binds an abstract socket (`@name`), which lives in the calling thread's
 * network namespace and vanishes with its last fd: a lock on a namespace that
 * needs no file and cannot go stale. null when another socket holds the name.
 */
export function bindAbstract(name: string): number | null {
  const fd = check('socket', c_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sa = sockaddrUn(`\0${name}`);
  if (c_bind(fd, sa, 2 + 1 + Buffer.byteLength(name)) < 0) {
    const errno = lastErrno();
    closeFd(fd);
    if (errno === E.EADDRINUSE) return null;
    throw new SysError('bind', errno);
  }
  return fd;
}

/** accept4(); returns -1 when no connection is pending (non-blocking listener). */
export function acceptUnix(fd: number, nonBlocking = false): number {
  for (;;) {
    const c = c_accept4(fd, null, null, SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0));
    if (c >= 0) return c;
    const e = lastErrno();
    if (e === E.EINTR) continue;
    if (e === E.EAGAIN) return -1;
    throw new SysError('accept4', e);
  }
}

/** Starts a connect; with nonBlocking it may complete later (EINPROGRESS is not an error). */
export function connectUnix(path: string, nonBlocking = false): number {
  const fd = check('socket', c_socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0), 0));
  const sa = sockaddrUn(path);
  if (c_connect(fd, sa, 2 + Buffer.byteLength(path) + 1) < 0) {
    const e = lastErrno();
    if (!(nonBlocking && e === E.EINPROGRESS)) {
      closeFd(fd);
      throw new SysError('connect', e);
    }
  }
  return fd;
}

export function socketPair(): [number, number] {
  const sv = new Int32Array(2);
  check('socketpair', c_socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
  return [sv[0]!, sv[1]!];
}

/**
 * Raises a socket's send buffer to `bytes` (the kernel doubles it for its
 * bookkeeping). SO_SNDBUFFORCE passes net.core.wmem_max when we may
 * (CAP_NET_ADMIN); otherwise the plain option, which the kernel caps.
 */
export function setSendBuffer(fd: number, bytes: number): void {
  const v = Int32Array.of(bytes);
  if (c_setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, v, 4) === 0) return;
  check('setsockopt(SO_SNDBUF)', c_setsockopt(fd, SOL_SOCKET, SO_SNDBUF, v, 4));
}

const MAX_FDS = 8;
/**
 * Native scratch memory for msghdr + iovec + control buffer: recvmsg needs
 * real addresses inside its msghdr, which JS-owned buffers do not have.
 */
class MsgScratch {
  readonly ptr = koffi.alloc('uint8_t', 64 + 16 + 16 + 4 * MAX_FDS + 8);
  readonly bytes = new Uint8Array(koffi.view(this.ptr, 64 + 16 + 16 + 4 * MAX_FDS + 8));
  readonly view = new DataView(this.bytes.buffer);
  readonly base = koffi.address(this.ptr);
  // layout: [0,56) msghdr, [64,80) iovec, [80, ...) cmsg buffer
  prepare(dataAddr: bigint, dataLen: number, controlLen: number): void {
    const v = this.view;
    this.bytes.fill(0, 0, 80);
    v.setBigUint64(16, this.base + 64n, true); // msg_iov
    v.setBigUint64(24, 1n, true); // msg_iovlen
    v.setBigUint64(32, controlLen ? this.base + 80n : 0n, true); // msg_control
    v.setBigUint64(40, BigInt(controlLen), true); // msg_controllen
    v.setBigUint64(64, dataAddr, true); // iov_base
    v.setBigUint64(72, BigInt(dataLen), true); // iov_len
  }
}

/**
 * A blocking/non-blocking message socket with fd passing. Data goes through
 * a native buffer of `bufSize` bytes.
 */
export class FdSocket {
  readonly fd: number;
  private readonly scratch = new MsgScratch();
  private readonly dataPtr: unknown;
  private readonly data: Uint8Array;
  private readonly dataAddr: bigint;

  constructor(fd: number, bufSize = 4096 + 64) {
    this.fd = fd;
    this.dataPtr = koffi.alloc('uint8_t', bufSize);
    this.data = new Uint8Array(koffi.view(this.dataPtr, bufSize));
    this.dataAddr = koffi.address(this.dataPtr);
  }

  /**
   * recvmsg() of up to `len` bytes. Returns the bytes (copied), the fds that
   * came with them, or null at EOF; undefined when it would block.
   */
  recv(len: number): { data: Uint8Array; fds: number[] } | null | undefined {
    if (len > this.data.byteLength) throw new Error('recv: length exceeds buffer');
    const s = this.scratch;
    const controlLen = 16 + 4 * MAX_FDS;
    s.prepare(this.dataAddr, len, controlLen);
    let n: number;
    for (;;) {
      n = Number(c_recvmsg(this.fd, s.ptr, MSG_CMSG_CLOEXEC));
      if (n >= 0) break;
      const e = lastErrno();
      if (e === E.EINTR) continue;
      if (e === E.EAGAIN) return undefined;
      throw new SysError('recvmsg', e);
    }
    const fds: number[] = [];
    const ctlLen = Number(s.view.getBigUint64(40, true));
    let off = 80;
    while (off + 16 <= 80 + ctlLen) {
      const cmsgLen = Number(s.view.getBigUint64(off, true));
      const level = s.view.getInt32(off + 8, true);
      const type = s.view.getInt32(off + 12, true);
      if (cmsgLen < 16) break;
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = off + 16; p + 4 <= off + cmsgLen; p += 4) fds.push(s.view.getInt32(p, true));
      }
      off += (cmsgLen + 7) & ~7;
    }
    if (n === 0 && fds.length === 0) return null;
    return { data: this.data.slice(0, n), fds };
  }

  /** sendmsg() of all of `data` (blocking), with optional fds on the first chunk. */
  send(data: Uint8Array, fds: number[] = []): void {
    if (fds.length > MAX_FDS) throw new Error('too many fds');
    let sent = 0;
    while (sent < data.byteLength || (sent === 0 && data.byteLength === 0)) {
      const chunk = Math.min(data.byteLength - sent, this.data.byteLength);
      this.data.set(data.subarray(sent, sent + chunk));
      const withFds = sent === 0 && fds.length > 0;
      const controlLen = withFds ? ((16 + 4 * fds.length + 7) & ~7) : 0;
      const s = this.scratch;
      s.prepare(this.dataAddr, chunk, controlLen);
      if (withFds) {
        s.view.setBigUint64(80, BigInt(16 + 4 * fds.length), true);
        s.view.setInt32(88, SOL_SOCKET, true);
        s.view.setInt32(92, SCM_RIGHTS, true);
        fds.forEach((f, i) => s.view.setInt32(96 + 4 * i, f, true));
      }
      const n = Number(c_sendmsg(this.fd, s.ptr, MSG_NOSIGNAL));
      if (n < 0) {
        const e = lastErrno();
        if (e === E.EINTR) continue;
        throw new SysError('sendmsg', e);
      }
      sent += n;
      if (data.byteLength === 0) break;
    }
  }

  close(): void {
    closeFd(this.fd);
    koffi.free(this.dataPtr);
    koffi.free(this.scratch.ptr);
  }
}

const c_shutdown = libc.func('int shutdown(int fd, int how)');
/** Half-closes a socket for writing (the peer reads EOF); errors are ignored. */
export function shutdownWrite(fd: number): void {
  c_shutdown(fd, 1);
}
