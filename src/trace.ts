// TEMP: timing marks for the critical path (HUSK_TRACE=file).
import fs from 'node:fs';
const file = process.env.HUSK_TRACE;
export function mark(label: string): void {
  if (!file) return;
  fs.appendFileSync(file, `${(performance.timeOrigin + performance.now()).toFixed(1)} ${process.pid} ${label}\n`);
}
if (file && !(globalThis as { __traced?: boolean }).__traced) {
  (globalThis as { __traced?: boolean }).__traced = true;
  fs.appendFileSync(file, `${performance.timeOrigin.toFixed(1)} ${process.pid} node-origin ${process.argv.slice(2).join(' ').slice(0, 60)}\n`);
}
