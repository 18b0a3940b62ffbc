// Progress of layer extraction on stderr: only for layers big enough to be
// worth it; an updating line on a terminal, a few plain lines otherwise.
import type { LayerProgress } from './build.js';

const BIG = 16 << 20;
const MB = (n: number) => (n / 1048576).toFixed(1);

export function stderrProgress(prefix: string, stream: NodeJS.WriteStream = process.stderr): (p: LayerProgress) => void {
  const tty = !!stream.isTTY;
  let lastLayer = -1;
  let lastQuarter = -1;
  let lastDraw = 0;
  return (p) => {
    if (p.total < BIG) return;
    const pct = p.total ? Math.min(100, Math.floor((p.done / p.total) * 100)) : 100;
    const line = `${prefix}: layer ${p.layer}/${p.layers} ${p.digest.slice(0, 19)}: ${MB(p.done)}/${MB(p.total)} MB (${pct}%)`;
    if (tty) {
      const now = Date.now();
      if (p.done !== p.total && p.layer === lastLayer && now - lastDraw < 100) return;
      lastDraw = now;
      lastLayer = p.layer;
      stream.write(`\r\x1b[K${line}${p.done >= p.total ? '\n' : ''}`);
      return;
    }
    const quarter = Math.floor(pct / 25);
    if (p.layer !== lastLayer || quarter !== lastQuarter) {
      lastLayer = p.layer;
      lastQuarter = quarter;
      stream.write(`${line}\n`);
    }
  };
}
