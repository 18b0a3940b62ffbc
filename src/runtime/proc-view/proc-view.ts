// The container's processes where host tools look for them. podman top
// (psgo) joins the mount namespace of the container's pid, here the VMM
// process, and lists /proc there; it never asks the runtime. So the VMM's
// main thread moves into a private mount namespace of its own and mounts
// ProcViewFs over /proc in it: psgo then reads the guest's processes, with
// the container's pids, instead of the host's.
//
// Once entered, the VMM's main thread must not open anything under /proc
// (the server answering it is that same thread). It enters only after the
// start hooks ran; worker threads started earlier keep the host's /proc.
import fs from 'node:fs';
import os from 'node:os';
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_NOFOLLOW, O_PATH, closeQuiet, fstat, openat } from '../../sys/fsops.js';
import { enterPrivateMountNamespace, mount, detach, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_RDONLY } from '../../sys/mount.js';
import { ProcViewFs } from './proc-fs.js';
import { emptySnapshot, parseProcFiles, type ProcSnapshot } from './snapshot.js';

/** Larger than any request of ours: the kernel wants room for max_write + headers and at least 8 KiB. */
const READ_BUFFER = 64 * 1024 + 4096;
/** A snapshot older than this is taken again on the next lookup, not only on a listing. */
const STALE_MS = 1000;
/** A guest that does not answer leaves the listing empty rather than hanging the reader. */
const FETCH_TIMEOUT_MS = 3000;

export interface ProcViewOptions {
  /** The container's rootfs on the host: its /etc/passwd and /etc/group name users in the view, as in the container. */
  rootfs?: string;
  /** The agent's PROCFS answer (RESULT payload). */
  fetch: () => Promise<Uint8Array>;
  log: (msg: string) => void;
}

/**
 * Binds the container's /etc/<name> over the host's, in the private
 * namespace only. The rootfs is the container's to change: each step
 * refuses symlinks, and only a regular file is bound.
 */
function bindContainerFile(rootfs: string, name: string, log: (msg: string) => void): void {
  const fds: number[] = [];
  try {
    fds.push(openat(AT_FDCWD, rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC));
    fds.push(openat(fds[0]!, 'etc', O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    const fd = openat(fds[1]!, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    fds.push(fd);
    if ((fstat(fd).mode & 0o170000) !== 0o100000) return;
    mount(`/proc/self/fd/${fd}`, `/etc/${name}`, '', MS_BIND, null);
  } catch (e) {
    // No such file in the container: names fall back to the host's, or to numbers.
    if ((e as { errno?: number }).errno !== os.constants.errno.ENOENT) log(`/proc view: /etc/${name}: ${(e as Error).message}`);
  } finally {
    for (const fd of fds) closeQuiet(fd);
  }
}

export class ProcView {
  private readonly fs = new ProcViewFs();
  private readonly buf = Buffer.alloc(READ_BUFFER);
  private closed = false;
  private taking?: Promise<ProcSnapshot>;

  private readonly fd: number;
  private readonly o: ProcViewOptions;

  private constructor(fd: number, o: ProcViewOptions) {
    this.fd = fd;
    this.o = o;
  }

  /** Enters the private namespace and serves /proc there; null (logged) when the host does not allow it. */
  static enter(o: ProcViewOptions): ProcView | null {
    let fd = -1;
    try {
      enterPrivateMountNamespace();
      // Before /proc is replaced: the binds go through /proc/self/fd.
      if (o.rootfs) for (const f of ['passwd', 'group']) bindContainerFile(o.rootfs, f, o.log);
      fd = fs.openSync('/dev/fuse', 'r+');
      mount('husk-proc', '/proc', 'fuse', MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
        `fd=${fd},rootmode=40555,user_id=0,group_id=0,allow_other`);
    } catch (e) {
      if (fd >= 0) fs.closeSync(fd);
      o.log(`no /proc view of the container's processes: ${(e as Error).message}`);
      return null;
    }
    const view = new ProcView(fd, o);
    view.next();
    return view;
  }

  /** Unmounts the view: the kernel ends the connection and the pending read returns. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try { detach('/proc'); } catch (e) { this.o.log(`unmounting the /proc view: ${(e as Error).message}`); }
  }

  /** One read of /dev/fuse at a time, in libuv's thread pool (it blocks until the kernel has a request). */
  private next(): void {
    fs.read(this.fd, this.buf, 0, this.buf.length, null, (err, n) => {
      if (err || n === 0) {
        // ENODEV: unmounted. Anything else also ends the view: nothing to serve.
        if (!this.closed) this.o.log(`the /proc view stopped: ${err?.message ?? 'end of file'}`);
        fs.close(this.fd, () => {});
        return;
      }
      const request = Buffer.from(this.buf.subarray(0, n));
      this.next();
      void this.serve(request);
    });
  }

  private async serve(request: Buffer): Promise<void> {
    const snap = this.fs.snapshot;
    if (ProcViewFs.startsListing(request) || Date.now() - snap.takenAt > STALE_MS) {
      // Requests that arrive while a snapshot is being taken wait for that one.
      this.taking ??= this.take().finally(() => { this.taking = undefined; });
      this.fs.setSnapshot(await this.taking);
    }
    const reply = Buffer.alloc(READ_BUFFER);
    const len = this.fs.handle({ readable: [request], writable: [reply] });
    if (len === 0) return;
    try {
      fs.writeSync(this.fd, reply, 0, len);
    } catch (e) {
      // ENOENT: the request was interrupted; its reader is gone.
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !this.closed) this.o.log(`/proc view reply: ${(e as Error).message}`);
    }
  }

  private async take(): Promise<ProcSnapshot> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const payload = await Promise.race([
        this.o.fetch(),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('the guest did not answer')), FETCH_TIMEOUT_MS); }),
      ]);
      return parseProcFiles(payload);
    } catch (e) {
      this.o.log(`/proc view: no snapshot of the guest's processes: ${(e as Error).message}`);
      return emptySnapshot();
    } finally {
      clearTimeout(timer);
    }
  }
}
