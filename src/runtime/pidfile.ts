// Pid files the way clients expect them: complete or absent (temp file +
// rename). Its own module: `exec` writes one and should load little.
import fs from 'node:fs';
import path from 'node:path';

export function writePidFile(file: string, pid: number): void {
  const abs = path.resolve(file);
  const tmp = path.join(path.dirname(abs), `.${path.basename(abs)}.${process.pid}.tmp`);
  fs.writeFileSync(tmp, String(pid));
  fs.renameSync(tmp, abs);
}
