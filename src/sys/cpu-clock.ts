// CPU time of this thread and of the whole process, exact to the
// nanosecond (clock_gettime). process.threadCpuUsage() and cpuUsage() read
// getrusage(), whose figure for a running thread can lag by a scheduler
// tick (4 ms here): too coarse for set-up steps of a millisecond.
import { libc, check } from './libc.js';

const c_clock_gettime = libc.func('int clock_gettime(int clk, _Out_ int64_t *tp)');
const CLOCK_PROCESS_CPUTIME_ID = 2;
const CLOCK_THREAD_CPUTIME_ID = 3;
const ts = new BigInt64Array(2);

function read(clock: number): number {
  check('clock_gettime', c_clock_gettime(clock, ts));
  return Number(ts[0]!) * 1e6 + Number(ts[1]!) / 1000;
}

/** CPU time of the calling thread, µs. */
export function threadCpuUs(): number {
  return read(CLOCK_THREAD_CPUTIME_ID);
}

/** CPU time of the whole process (all threads), µs. */
export function processCpuUs(): number {
  return read(CLOCK_PROCESS_CPUTIME_ID);
}

const c_getrusage = libc.func('int getrusage(int who, _Out_ uint8_t *usage)');
const RUSAGE_CHILDREN = -1;
const rusage = new Uint8Array(144); // struct rusage: ru_utime and ru_stime (timeval) first

/** User + system CPU of every waited-for child process so far, µs (whole lives: start to exit). */
export function childrenCpuUs(): number {
  check('getrusage', c_getrusage(RUSAGE_CHILDREN, rusage));
  const t = new BigInt64Array(rusage.buffer, 0, 4);
  return Number(t[0]! + t[2]!) * 1e6 + Number(t[1]! + t[3]!);
}
