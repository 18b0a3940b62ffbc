// Process facts Node lacks: liveness that survives pid reuse (start time
// from /proc). Plain fs only, so read-only verbs stay cheap to start.
import fs from 'node:fs';
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

