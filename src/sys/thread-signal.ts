// Interrupting one thread: a vCPU worker blocked in KVM_RUN returns EINTR
// when a signal is delivered to its thread. The signal gets a no-op C
// handler (never a JS callback: it runs in signal context), so it stops the
// ioctl and nothing else; SA_RESTART keeps other system calls going.
import { libc, koffi, check } from './libc.js';

const c_gettid = libc.func('int gettid(void)');
const c_getpid = libc.func('int getpid(void)');
const c_tgkill = libc.func('int tgkill(int tgid, int tid, int sig)');
const c_dlsym = libc.func('void *dlsym(void *handle, const char *name)');
const c_sigaction = libc.func('int sigaction(int sig, const void *act, void *oldact)');

/** A real-time signal nobody else in the process uses (glibc keeps SIGRTMIN..+2). */
export const KICK_SIGNAL = 34 + 8;

let installed = false;
/** Installs a no-op handler for KICK_SIGNAL (idempotent, process-wide). */
export function installKickHandler(): void {
  if (installed) return;
  // getpid ignores its argument and is async-signal-safe: a C no-op handler.
  const handler = c_dlsym(null, 'getpid');
  if (!handler) throw new Error('dlsym(getpid) failed');
  const act = new Uint8Array(152); // struct sigaction: handler, mask[128], flags, restorer
  const v = new DataView(act.buffer);
  v.setBigUint64(0, BigInt(koffi.address(handler)), true);
  const SA_RESTART = 0x10000000;
  v.setInt32(136, SA_RESTART, true);
  check('sigaction', c_sigaction(KICK_SIGNAL, act, null));
  installed = true;
}

export function gettid(): number {
  return c_gettid();
}

/** Sends KICK_SIGNAL to thread `tid` of this process; false when it is gone. */
export function kickThread(tid: number): boolean {
  return c_tgkill(c_getpid(), tid, KICK_SIGNAL) === 0;
}
