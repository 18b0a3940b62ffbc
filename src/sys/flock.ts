// Advisory file locks (flock), which Node lacks.
import fs from 'node:fs';
import { libc, checkRetry } from './libc.js';

const c_flock = libc.func('int flock(int fd, int op)');
const LOCK_EX = 2;
const LOCK_UN = 8;

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
