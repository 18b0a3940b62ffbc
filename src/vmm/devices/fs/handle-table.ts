// File handles (the `fh` of OPEN/OPENDIR replies) -> real host fds.
import { closeQuiet } from '../../../sys/fsops.js';
import type { Export } from './inode-table.js';

export interface Handle {
  readonly fh: number;
  readonly fd: number;
  readonly nodeid: number;
  readonly dir: boolean;
  /** The export the handle was opened in (null: the synthetic root), checked by WRITE/FALLOCATE. */
  readonly export: Export | null;
}

export class HandleTable {
  private readonly byFh = new Map<number, Handle>();
  private nextFh = 1;

  get size(): number {
    return this.byFh.size;
  }

  add(fd: number, nodeid: number, dir: boolean, exp: Export | null): Handle {
    const h: Handle = { fh: this.nextFh++, fd, nodeid, dir, export: exp };
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
    if (h.fd >= 0) closeQuiet(h.fd);
  }

  close(): void {
    for (const h of this.byFh.values()) if (h.fd >= 0) closeQuiet(h.fd);
    this.byFh.clear();
  }
}
