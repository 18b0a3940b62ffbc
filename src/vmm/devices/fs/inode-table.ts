// Node ids the guest kernel knows -> O_PATH fds on the host. An O_PATH fd
// pins the inode itself, so later renames (by the guest or the host) never
// make a node id point somewhere else, and nothing is ever resolved by path.
import { closeQuiet, S_IFMT, type Stat } from '../../../sys/fsops.js';
import { FUSE_ROOT_ID } from './fuse-protocol.js';

export interface Inode {
  readonly nodeid: number;
  /** O_PATH | O_NOFOLLOW fd. */
  readonly fd: number;
  /** S_IFMT bits: an inode never changes type. */
  readonly type: number;
  readonly key: string;
  /** Lookups the kernel holds (FORGET gives them back). */
  nlookup: number;
}

function keyOf(st: Stat): string {
  return `${st.devMajor}:${st.devMinor}:${st.ino}`;
}

export class InodeTable {
  private readonly byId = new Map<number, Inode>();
  private readonly byKey = new Map<string, Inode>();
  private nextId = FUSE_ROOT_ID + 1;

  /** `rootFd` becomes node id 1, which is never forgotten. */
  constructor(rootFd: number, rootStat: Stat) {
    const root: Inode = { nodeid: FUSE_ROOT_ID, fd: rootFd, type: rootStat.mode & S_IFMT, key: keyOf(rootStat), nlookup: 1 };
    this.byId.set(root.nodeid, root);
    this.byKey.set(root.key, root);
  }

  get size(): number {
    return this.byId.size;
  }

  get(nodeid: number): Inode | undefined {
    return this.byId.get(nodeid);
  }

  /**
   * Takes one lookup reference on the inode `fd` refers to. When the same
   * (dev, ino) is already known its node id is reused and `fd` is closed, so
   * hard links and repeated lookups share one node id.
   */
  ref(fd: number, st: Stat): Inode {
    const key = keyOf(st);
    const known = this.byKey.get(key);
    if (known) {
      closeQuiet(fd);
      known.nlookup++;
      return known;
    }
    const ino: Inode = { nodeid: this.nextId++, fd, type: st.mode & S_IFMT, key, nlookup: 1 };
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
    if (!ino || nodeid === FUSE_ROOT_ID) return;
    ino.nlookup = Math.max(0, ino.nlookup - n);
    if (ino.nlookup > 0) return;
    this.byId.delete(nodeid);
    this.byKey.delete(ino.key);
    closeQuiet(ino.fd);
  }

  /** Forgets everything but the root (DESTROY, re-INIT). */
  reset(): void {
    for (const ino of [...this.byId.values()]) {
      if (ino.nodeid !== FUSE_ROOT_ID) this.forget(ino.nodeid, Infinity);
    }
  }

  /** Closes every fd, the root's included. */
  close(): void {
    for (const ino of this.byId.values()) closeQuiet(ino.fd);
    this.byId.clear();
    this.byKey.clear();
  }
}
