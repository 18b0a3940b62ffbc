// Process facts Node lacks: liveness that survives pid reuse (start time
// from /proc), advisory file locks (flock), and the parent-death signal.
import fs from 'node:fs';
import { libc, checkRetry } from './libc.js';

const c_flock = libc.func('int flock(int fd, int op)');
const LOCK_EX = 2;
const LOCK_UN = 8;

/** Process start time in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if gone. */
export function processStartTime(pid: number): number | undefined {
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (rest[0] === 'Z' || rest[0] === 'X') return undefined; // a zombie has exited
    return Number(rest[19]);
  } catch {
    return undefined;
  }
}

/** True when `pid` runs and is the same process that had `startTime`. */
export function isSameProcessAlive(pid: number, startTime?: number): boolean {
  const st = processStartTime(pid);
  return st !== undefined && (startTime === undefined || st === startTime);
}

/** Takes an exclusive flock on `file` (created if missing); blocks until it is ours. */
export function lockFile(file: string): { release(): void } {
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600); // Node opens with O_CLOEXEC itself
  checkRetry('flock', () => c_flock(fd, LOCK_EX));
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      c_flock(fd, LOCK_UN);
      fs.closeSync(fd);
    },
  };
}
