// The container as host tools see it through its pid. Clients that join the
// mount namespace of the container's pid (the VMM process) expect to land in
// the container: podman cp copies to and from the root they find there, and
// podman top (psgo) lists /proc there. Neither asks the runtime. Left alone,
// the VMM's namespace is the host's: podman cp would write into the host's /
// and podman top would list host processes.
//
// So once the container has started, the VMM's main thread moves into a
// private mount namespace of its own and builds the container's view there:
//  - the rootfs, with the spec's bind mounts at their destinations, is bound
//    over "/". setns(2) into a mount namespace starts at the topmost mount on
//    its root, so joiners see the container's tree; the VMM's own root stays
//    the host's mount underneath, so its own paths (state, sockets, /proc) are
//    unchanged;
//  - /proc in that tree is ProcViewFs: the guest's container processes.
// Nothing of it reaches the host's namespace (every mount there is private)
// or the guest (whose virtio-fs workers live in the host's namespace).
import fs from 'node:fs';
import path from 'node:path';
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_PATH, S_IFDIR, S_IFLNK, S_IFMT, closeQuiet, fstat, openat } from '../../sys/fsops.js';
import { detach, enterPrivateMountNamespace, mount, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY, MS_REC, MS_REMOUNT, MS_SHARED } from '../../sys/mount.js';
import type { Mount } from '../../oci/spec.js';
import { isBindMount, parseMountOptions } from '../translate.js';
import { ProcViewFs } from './proc-fs.js';
import { emptySnapshot, parseProcFiles, type ProcSnapshot } from './snapshot.js';

/** Larger than any request of ours: the kernel wants room for max_write + headers and at least 8 KiB. */
const READ_BUFFER = 64 * 1024 + 4096;
/** A snapshot older than this is taken again on the next lookup, not only on a listing. */
const STALE_MS = 1000;
/** A guest that does not answer leaves the listing empty rather than hanging the reader. */
const FETCH_TIMEOUT_MS = 3000;

export interface ContainerViewOptions {
  /** The container's rootfs on the host. */
  rootfs: string;
  /** The spec's mounts: bind mounts are placed in the view too (resolved against bundleDir). */
  mounts: Mount[];
  bundleDir: string;
  /** root.readonly: the view's rootfs is read-only too (podman cp into it fails, as with runc). */
  readonly?: boolean;
  /** The agent's PROCFS answer (RESULT payload); undefined: an agent without it, no /proc view. */
  fetch?: () => Promise<Uint8Array>;
  log: (msg: string) => void;
}

/**
 * Opens `rel` (a path inside the tree of dirfd) one component at a time,
 * following no symlink: the tree is the container's to change. O_PATH fd, or
 * undefined when a component is missing, a symlink or not a directory.
 */
function openBeneath(dirfd: number, rel: string): number | undefined {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) return undefined;
  let fd = openat(dirfd, '.', O_PATH | O_DIRECTORY | O_CLOEXEC);
  for (let i = 0; i < parts.length; i++) {
    let next: number;
    try {
      next = openat(fd, parts[i]!, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    } catch {
      closeQuiet(fd);
      return undefined;
    }
    closeQuiet(fd);
    fd = next;
    const type = fstat(fd).mode & S_IFMT;
    if (type === S_IFLNK || (i < parts.length - 1 && type !== S_IFDIR)) {
      closeQuiet(fd);
      return undefined;
    }
  }
  return fd;
}

const fdPath = (fd: number) => `/proc/self/fd/${fd}`;

export class ContainerView {
  private readonly procFs = new ProcViewFs();
  private readonly buf = Buffer.alloc(READ_BUFFER);
  private readonly fuseFd: number;
  private readonly o: ContainerViewOptions;
  private closed = false;
  private taking?: Promise<ProcSnapshot>;

  private constructor(fuseFd: number, o: ContainerViewOptions) {
    this.fuseFd = fuseFd;
    this.o = o;
  }

  /**
   * Builds the view in a private mount namespace of the calling (main)
   * thread. Returns null (logged) when the host does not allow it; a failure
   * after the namespace exists leaves the VMM there, which changes nothing
   * for the VMM itself.
   */
  static enter(o: ContainerViewOptions): ContainerView | null {
    const fds: number[] = [];
    let fuseFd = -1;
    try {
      const binds = o.mounts.filter((m) => isBindMount(m) && m.source).map((m) => ({ m, source: path.resolve(o.bundleDir, m.source!) }));
      enterPrivateMountNamespace();
      ContainerView.dropForeignMounts(o, binds.map((b) => b.source));
      // The rootfs becomes a shared mount of its own (in this namespace only)
      // and its peer is stacked on "/": what is mounted below the rootfs from
      // here on shows in the peer too, and unmounting it here unmounts both.
      mount(o.rootfs, o.rootfs, '', MS_BIND | MS_REC, null);
      // Mount flags are copied to binds of a mount: the peer on "/" is read-only as well.
      if (o.readonly) mount('', o.rootfs, '', MS_BIND | MS_REMOUNT | MS_RDONLY, null);
      mount('', o.rootfs, '', MS_SHARED, null);
      const root = openat(AT_FDCWD, o.rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
      fds.push(root);
      mount(o.rootfs, '/', '', MS_BIND | MS_REC, null);
      // Binds first: a bind over a directory that holds proc would hide the view.
      for (const b of binds) ContainerView.bind(root, b.m, b.source, o.log);
      if (o.fetch) {
        const proc = openBeneath(root, 'proc');
        if (proc === undefined || (fstat(proc).mode & S_IFMT) !== S_IFDIR) {
          if (proc !== undefined) closeQuiet(proc);
          o.log('container view: the rootfs has no /proc directory; podman top shows nothing');
        } else {
          fds.push(proc);
          fuseFd = fs.openSync('/dev/fuse', 'r+');
          mount('husk-proc', fdPath(proc), 'fuse', MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
            `fd=${fuseFd},rootmode=40555,user_id=0,group_id=0,allow_other`);
        }
      }
    } catch (e) {
      if (fuseFd >= 0) fs.closeSync(fuseFd);
      o.log(`no container view in the VMM's mount namespace: ${(e as Error).message}`);
      return null;
    } finally {
      for (const fd of fds) closeQuiet(fd);
    }
    const view = new ContainerView(fuseFd, o);
    if (fuseFd >= 0) view.next();
    return view;
  }

  /**
   * The new namespace holds a copy of every host mount, and a copy pins what
   * it mounts for as long as this process lives: other containers' network
   * namespaces (nsfs) and root file systems (overlay) would outlive their
   * removal by the host. This process needs neither, so they are detached here.
   */
  private static dropForeignMounts(o: ContainerViewOptions, bindSources: string[]): void {
    const needed = [path.resolve(o.rootfs), ...bindSources];
    // A mount the rootfs or a bind source lies on (or in) stays.
    const mine = (mp: string) => needed.some((p) => p === mp || p.startsWith(mp === '/' ? '/' : `${mp}/`) || mp.startsWith(`${p}/`));
    let dropped = 0;
    for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      // id parent major:minor root mountpoint options [optional...] - fstype source super
      const fields = line.split(' ');
      const sep = fields.indexOf('-');
      if (sep < 0 || fields.length < sep + 2) continue;
      const fstype = fields[sep + 1]!;
      const mountPoint = fields[4]!.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
      if ((fstype !== 'nsfs' && fstype !== 'overlay') || mine(mountPoint)) continue;
      try {
        detach(mountPoint);
        dropped++;
      } catch { /* already gone with a parent */ }
    }
    if (dropped) o.log(`container view: detached ${dropped} foreign mounts from the VMM's namespace`);
  }

  /** One bind mount of the spec at its destination in the view (skipped, logged, when it cannot be placed safely). */
  private static bind(root: number, m: Mount, source: string, log: (msg: string) => void): void {
    const destination = path.posix.normalize(`/${m.destination}`);
    const parentRel = path.posix.dirname(destination);
    const base = path.posix.basename(destination);
    const parent = openBeneath(root, parentRel);
    const dest = parent === undefined || base === '' || base === '..' ? undefined : openBeneath(parent, base);
    try {
      if (dest === undefined) {
        log(`container view: no place for the bind mount at ${m.destination}`);
        return;
      }
      const rec = (m.options ?? []).includes('rbind') ? MS_REC : 0;
      mount(source, fdPath(dest), '', MS_BIND | rec, null);
      // The new mount's root is reached by name from its parent (the fd still names the directory below it).
      if (parseMountOptions(m.options).flags & MS_RDONLY) mount('', `${fdPath(parent!)}/${base}`, '', MS_BIND | MS_REMOUNT | MS_RDONLY | rec, null);
    } catch (e) {
      log(`container view: bind mount at ${m.destination}: ${(e as Error).message}`);
    } finally {
      if (dest !== undefined) closeQuiet(dest);
      if (parent !== undefined) closeQuiet(parent);
    }
  }

  /** Unmounts the /proc view (here and in the stacked peer): the kernel ends the connection and the pending read returns. */
  close(): void {
    if (this.closed || this.fuseFd < 0) return;
    this.closed = true;
    try { detach(`${this.o.rootfs}/proc`); } catch (e) { this.o.log(`container view: unmounting /proc: ${(e as Error).message}`); }
  }

  /** One read of /dev/fuse at a time, in libuv's thread pool (it blocks until the kernel has a request). */
  private next(): void {
    fs.read(this.fuseFd, this.buf, 0, this.buf.length, null, (err, n) => {
      if (err || n === 0) {
        if (!this.closed) this.o.log(`container view: /proc stopped: ${err?.message ?? 'end of file'}`);
        fs.close(this.fuseFd, () => {});
        return;
      }
      const request = Buffer.from(this.buf.subarray(0, n));
      this.next();
      void this.serve(request);
    });
  }

  private async serve(request: Buffer): Promise<void> {
    if (ProcViewFs.startsListing(request) || Date.now() - this.procFs.snapshot.takenAt > STALE_MS) {
      // Requests that arrive while a snapshot is being taken wait for that one.
      this.taking ??= this.take().finally(() => { this.taking = undefined; });
      this.procFs.setSnapshot(await this.taking);
    }
    const reply = Buffer.alloc(READ_BUFFER);
    const len = this.procFs.handle({ readable: [request], writable: [reply] });
    if (len === 0 || this.closed) return;
    try {
      fs.writeSync(this.fuseFd, reply, 0, len);
    } catch (e) {
      // ENOENT: the request was interrupted; its reader is gone.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.o.log(`container view: /proc reply: ${(e as Error).message}`);
    }
  }

  private async take(): Promise<ProcSnapshot> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const payload = await Promise.race([
        this.o.fetch!(),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('the guest did not answer')), FETCH_TIMEOUT_MS); }),
      ]);
      return parseProcFiles(payload);
    } catch (e) {
      this.o.log(`container view: no snapshot of the guest's processes: ${(e as Error).message}`);
      return emptySnapshot();
    } finally {
      clearTimeout(timer);
    }
  }
}
