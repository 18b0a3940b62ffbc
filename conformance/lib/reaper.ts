// The caller's side of the pid file, as conmon and containerd's shim use
// it: a child subreaper inherits the process named in --pid-file when
// `create` exits, and reaps it to learn the container's exit status.
import { libc, lastErrno } from '../../src/sys/libc.js';

const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;
const c_prctl = libc.func('int prctl(int option, unsigned long arg2, unsigned long arg3, unsigned long arg4, unsigned long arg5)');
const c_waitpid = libc.func('int waitpid(int pid, _Out_ int *status, int options)');

export function setSubreaper(on: boolean): void {
  if (c_prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0) !== 0) throw new Error(`prctl(PR_SET_CHILD_SUBREAPER): errno ${lastErrno()}`);
}

export type WaitResult = { exited: number } | { signaled: number };

/** waitpid(pid, WNOHANG): undefined while it runs; throws when it is not our child. */
export function tryWait(pid: number): WaitResult | undefined {
  const st = new Int32Array(1);
  const r = c_waitpid(pid, st, WNOHANG);
  if (r === 0) return undefined;
  if (r < 0) throw new Error(`waitpid(${pid}): errno ${lastErrno()} (not a child of this subreaper)`);
  const s = st[0]!;
  if ((s & 0x7f) === 0) return { exited: (s >> 8) & 0xff };
  return { signaled: s & 0x7f };
}
