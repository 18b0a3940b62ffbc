// Node ids the guest kernel knows -> O_PATH fds on the host. An O_PATH fd
// pins the inode itself, so later renames (by the guest or the host) never
// make a node id point somewhere else, and nothing is ever resolved by path.
//
// Every inode belongs to exactly one export (single-root mode has one
// export, the root). Inode identity is (export, dev, ino): the same host
// inode reached through two exports gets two node ids, each carrying its own
// export's read-only flag, so a read-only export can never hand out write
// access that a read-write export of the same host files has, and vice versa
// a read-write export is not degraded by a read-only one. Inodes hold no
// parent pointers: nothing can be resolved upwards from an inode.
import { closeQuiet, S_IFMT, type Stat } from '../../../sys/fsops.js';

/** One shared host tree (or single non-directory file). */
export interface Export {
  /** Index in the server's export list; part of every inode key. */
  readonly id: number;
  /** Entry name in the synthetic root ('' in single-root mode). */
  readonly name: string;
  /** Every modification under this export is refused with EROFS. */
  readonly readonly: boolean;
}

export interface Inode {
  readonly nodeid: number;
  /** O_PATH | O_NOFOLLOW fd; -1 for the synthetic root, so any syscall on it fails closed. */
  readonly fd: number;
  /** S_IFMT bits: an inode never changes type. */
  readonly type: number;
  readonly key: string;
  /** The export this inode was reached through; null only for the synthetic root. */
  readonly export: Export | null;
  /** Roots (node id 1, export roots) are never forgotten. */
  readonly pinned: boolean;
  /** Lookups the kernel holds (FORGET gives them back). */
  nlookup: number;
}

function keyOf(exp: Export, st: Stat): string {
  return `${exp.id}:${st.devMajor}:${st.devMinor}:${st.ino}`;
}

export class InodeTable {
  private readonly byId = new Map<number, Inode>();
  private readonly byKey = new Map<string, Inode>();
  private nextId = 1;

  get size(): number {
    return this.byId.size;
  }

  get(nodeid: number): Inode | undefined {
    return this.byId.get(nodeid);
  }

  /**
   * Registers an inode that lives as long as the server: the root (the first
   * one pinned becomes node id 1) and the export roots. `fd` -1 with a null
   * export is the synthetic root of multi-export mode.
   */
  pin(fd: number, type: number, exp: Export | null, st: Stat | null): Inode {
    const key = exp && st ? keyOf(exp, st) : `synthetic:${this.nextId}`;
    const ino: Inode = { nodeid: this.nextId++, fd, type: type & S_IFMT, key, export: exp, pinned: true, nlookup: 1 };
    this.byId.set(ino.nodeid, ino);
    this.byKey.set(key, ino);
    return ino;
  }

  /**
   * Takes one lookup reference on the inode `fd` refers to, reached through
   * export `exp`. When the same (export, dev, ino) is already known its node
   * id is reused and `fd` is closed, so hard links and repeated lookups share
   * one node id.
   */
  ref(fd: number, st: Stat, exp: Export): Inode {
    const key = keyOf(exp, st);
    const known = this.byKey.get(key);
    if (known) {
      closeQuiet(fd);
      known.nlookup++;
      return known;
    }
    const ino: Inode = { nodeid: this.nextId++, fd, type: st.mode & S_IFMT, key, export: exp, pinned: false, nlookup: 1 };
    this.byId.set(ino.nodeid, ino);
    this.byKey.set(key, ino);
    return ino;
  }

  /** Adds a reference to an inode already in the table (LOOKUP of "."). */
  again(ino: Inode): Inode {
    ino.nlookup++;
    return ino;
  }

  /** Drops `n` lookups; at zero the fd is closed. Unknown ids are ignored (FORGET has no reply). */
  forget(nodeid: number, n: number): void {
    const ino = this.byId.get(nodeid);
    if (!ino || ino.pinned) return;
    ino.nlookup = Math.max(0, ino.nlookup - n);
    if (ino.nlookup > 0) return;
    this.byId.delete(nodeid);
    this.byKey.delete(ino.key);
    closeQuiet(ino.fd);
  }

  /** Forgets everything but the pinned roots (DESTROY, re-INIT). */
  reset(): void {
    for (const ino of [...this.byId.values()]) {
      if (!ino.pinned) this.forget(ino.nodeid, Infinity);
    }
  }

  /** Closes every fd, the roots' included. */
  close(): void {
    for (const ino of this.byId.values()) if (ino.fd >= 0) closeQuiet(ino.fd);
    this.byId.clear();
    this.byKey.clear();
  }
}
