// File handles (the `fh` of OPEN/OPENDIR replies) -> real host fds.
import { closeQuiet } from '../../../sys/fsops.js';

export interface Handle {
  readonly fh: number;
  readonly fd: number;
  readonly nodeid: number;
  readonly dir: boolean;
}

export class HandleTable {
  private readonly byFh = new Map<number, Handle>();
  private nextFh = 1;

  get size(): number {
    return this.byFh.size;
  }

  add(fd: number, nodeid: number, dir: boolean): Handle {
    const h: Handle = { fh: this.nextFh++, fd, nodeid, dir };
    this.byFh.set(h.fh, h);
    return h;
  }

  /** The handle, if it exists and is of the wanted kind (file or directory). */
  get(fh: number, dir: boolean): Handle | undefined {
    const h = this.byFh.get(fh);
    return h && h.dir === dir ? h : undefined;
  }

  remove(h: Handle): void {
    this.byFh.delete(h.fh);
    closeQuiet(h.fd);
  }

  close(): void {
    for (const h of this.byFh.values()) closeQuiet(h.fd);
    this.byFh.clear();
  }
}
