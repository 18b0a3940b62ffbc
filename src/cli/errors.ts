// runc-style error reporting: one line on stderr; with --log-format json
// also `{"level":"error","msg":...,"time":...}` in the --log file.
import fs from 'node:fs';

export function reportError(opts: { log?: string; logFormat?: string }, message: string): void {
  const line = message.split('\n')[0]!.trim();
  process.stderr.write(`husk: ${line}\n`);
  if (opts.log) {
    const entry = opts.logFormat === 'json'
      ? JSON.stringify({ level: 'error', msg: line, time: new Date().toISOString() })
      : `time="${new Date().toISOString()}" level=error msg="${line.replace(/"/g, '\\"')}"`;
    try { fs.appendFileSync(opts.log, entry + '\n'); } catch { /* the log is best effort */ }
  }
}
