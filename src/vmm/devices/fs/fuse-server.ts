// FUSE passthrough server behind virtio-fs: one call of handle() per
// descriptor chain. Everything in a request is guest-controlled; handle()
// turns every failure into an error reply and never throws.
import { AT_FDCWD, O_CLOEXEC, O_DIRECTORY, O_PATH, S_IFDIR, closeQuiet, fstat, openat, type Stat } from '../../../sys/fsops.js';
import { SysError } from '../../../sys/libc.js';
import { BadRequest, Reply, Request } from './fuse-io.js';
import {
  FUSE_ASYNC_READ, FUSE_ATOMIC_O_TRUNC, FUSE_BIG_WRITES, FUSE_DO_READDIRPLUS, FUSE_DONT_MASK,
  FUSE_KERNEL_VERSION, FUSE_MAX_PAGES, FUSE_MIN_MINOR, FUSE_OUR_MINOR, FUSE_PARALLEL_DIROPS,
  FUSE_READDIRPLUS_AUTO, FUSE_AUTO_INVAL_DATA, FOPEN_KEEP_CACHE, INIT_IN_MIN_SIZE, INIT_OUT_SIZE, Op, opName, timeoutFromSeconds,
} from './fuse-protocol.js';
import { E, fail, type FsContext, type OpHandler, type OpResult, type SyntheticRoot } from './fs-context.js';
import { InodeTable } from './inode-table.js';
import { buildSyntheticRoot, type ExportSpec } from './synthetic-root.js';
import { HandleTable } from './handle-table.js';
import * as node from './node-ops.js';
import * as file from './file-ops.js';
import * as dir from './dir-ops.js';
import * as xattr from './xattr-ops.js';

/** One request = one virtio descriptor chain. readable: driver->device buffers (FUSE in header + args + write data), writable: device->driver buffers (FUSE out header + reply data). Both are views straight into guest memory; never keep them after returning. */
export interface RequestBuffers {
  readable: Uint8Array[];
  writable: Uint8Array[];
}

export type { ExportSpec } from './synthetic-root.js';

export interface FuseServerOptions {
  /** Host directory served as the file system root (exactly one of root and exports). */
  root?: string;
  /**
   * Multi-export mode: node id 1 is a synthetic read-only directory whose
   * entries are these exports (directories or single files), each confined
   * to itself and read-only or not on its own.
   */
  exports?: readonly ExportSpec[];
  /** Refuse every modification with EROFS (in multi-export mode: every export is read-only). */
  readonly?: boolean;
  log?: (msg: string) => void;
  /** Entry/attribute cache validity in seconds (default 1). */
  timeout?: number;
  /**
   * Let the guest keep a file's cached pages when it opens the file again
   * (with AUTO_INVAL_DATA: dropped once a refreshed attribute shows a change
   * on the host, so host writes show within the attribute timeout). For a
   * tree the guest owns, like the container's rootfs. Without it every open
   * reads the file again: host writes show at the next open.
   */
  keepCache?: boolean;
}

/** Largest WRITE/READ payload we accept, and the page count that covers it. */
export const MAX_WRITE = 1024 * 1024;
const MAX_PAGES = MAX_WRITE / 4096;

/**
 * INIT flags we offer (and which the kernel must also offer). Each is either
 * implemented here or only relaxes kernel-side behaviour our synchronous
 * server is fine with:
 *  ASYNC_READ, PARALLEL_DIROPS  - concurrency the kernel may use
 *  ATOMIC_O_TRUNC               - OPEN passes O_TRUNC through
 *  BIG_WRITES, MAX_PAGES        - max_write / max_pages below
 *  DONT_MASK                    - we apply the request's umask ourselves
 *  DO_READDIRPLUS, READDIRPLUS_AUTO - READDIRPLUS is implemented
 *  AUTO_INVAL_DATA              - the kernel drops a file's cached pages when
 *                                 its mtime or size changed; with it, opens
 *                                 keep the page cache (FsContext.openFlags)
 */
export const OFFERED_INIT_FLAGS =
  FUSE_ASYNC_READ | FUSE_ATOMIC_O_TRUNC | FUSE_BIG_WRITES | FUSE_DONT_MASK | FUSE_DO_READDIRPLUS |
  FUSE_READDIRPLUS_AUTO | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_AUTO_INVAL_DATA;

const ops = new Map<number, OpHandler>([
  [Op.LOOKUP, node.lookup],
  [Op.FORGET, node.forget],
  [Op.BATCH_FORGET, node.batchForget],
  [Op.GETATTR, node.getattr],
  [Op.SETATTR, node.setattr],
  [Op.READLINK, node.readlink],
  [Op.SYMLINK, node.symlink],
  [Op.MKNOD, node.mknod],
  [Op.MKDIR, node.mkdir],
  [Op.UNLINK, node.unlink],
  [Op.RMDIR, node.rmdir],
  [Op.RENAME, node.rename],
  [Op.RENAME2, node.rename2],
  [Op.LINK, node.link],
  [Op.STATFS, node.statfs],
  [Op.ACCESS, node.access],
  [Op.OPEN, file.open],
  [Op.CREATE, file.create],
  [Op.READ, file.read],
  [Op.WRITE, file.write],
  [Op.FLUSH, file.flush],
  [Op.RELEASE, file.release],
  [Op.FSYNC, file.fsync],
  [Op.FALLOCATE, file.fallocate],
  [Op.LSEEK, file.lseek],
  [Op.OPENDIR, dir.opendir],
  [Op.READDIR, dir.readdir],
  [Op.READDIRPLUS, dir.readdirplus],
  [Op.RELEASEDIR, dir.releasedir],
  [Op.FSYNCDIR, dir.fsyncdir],
  [Op.GETXATTR, xattr.getxattr],
  [Op.SETXATTR, xattr.setxattr],
  [Op.LISTXATTR, xattr.listxattr],
  [Op.REMOVEXATTR, xattr.removexattr],
]);

const MAX_ERRNO = 4095;
const MAX_LOG_LINES = 100;

/** errno for a thrown value: SysError, Node's fs errors (negative errno), else EIO. */
function errnoOf(e: unknown): number {
  if (e instanceof SysError) return e.errno;
  if (e instanceof BadRequest) return e.errno;
  if (e instanceof Error && 'errno' in e && typeof e.errno === 'number') {
    const n = Math.abs(e.errno);
    if (n > 0 && n <= MAX_ERRNO) return n;
  }
  return E.EIO;
}

export class FuseServer {
  private readonly ctx: FsContext;
  private readonly counts = new Map<string, number>();
  private readonly logFn: (msg: string) => void;
  private logLines = 0;
  private initialized = false;
  private closed = false;
  private readonly keepCache: boolean;

  constructor(opts: FuseServerOptions) {
    this.keepCache = opts.keepCache ?? false;
    this.logFn = opts.log ?? (() => {});
    const hasRoot = opts.root !== undefined;
    const hasExports = opts.exports !== undefined;
    if (hasRoot === hasExports) throw new Error('FUSE server needs exactly one of root and exports');
    const inodes = new InodeTable();
    const readonly = opts.readonly ?? false;
    let synthetic: SyntheticRoot | null = null;
    if (opts.exports) {
      synthetic = buildSyntheticRoot(inodes, opts.exports, readonly);
    } else {
      const rootFd = openat(AT_FDCWD, opts.root!, O_PATH | O_DIRECTORY | O_CLOEXEC);
      let st: Stat;
      try {
        st = fstat(rootFd);
        if ((st.mode & 0o170000) !== S_IFDIR) fail(E.ENOTDIR, 'root');
      } catch (e) {
        closeQuiet(rootFd);
        throw e;
      }
      inodes.pin(rootFd, st.mode, { id: 0, name: '', readonly }, st);
    }
    this.ctx = {
      inodes,
      handles: new HandleTable(),
      synthetic,
      timeout: timeoutFromSeconds(opts.timeout ?? 1),
      openFlags: 0,
    };
  }

  /** Handles one request and returns the number of bytes written into `writable` (0 for requests that get no reply, e.g. FORGET). Never throws: any failure becomes a FUSE error reply (negative errno) or, when even that cannot be written, returns 0. */
  handle(req: RequestBuffers): number {
    try {
      return this.handleUnsafe(req);
    } catch (e) {
      this.log(`fuse: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      return 0;
    }
  }

  /** Record of served operations for tests/diagnostics: counts per opcode name, e.g. {INIT:1, LOOKUP:12, READ:3}. */
  stats(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }

  /** Closes every fd the server holds; later requests get EIO. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.ctx.handles.close();
    this.ctx.inodes.close();
  }

  /** Open inodes and file handles, for tests and leak checks. */
  openCounts(): { inodes: number; handles: number } {
    return { inodes: this.ctx.inodes.size, handles: this.ctx.handles.size };
  }

  private handleUnsafe(bufs: RequestBuffers): number {
    const out = new Reply(bufs.writable);
    let req: Request;
    try {
      req = new Request(bufs.readable);
    } catch (e) {
      this.count('INVALID');
      const unique = e instanceof BadRequest ? e.unique : 0n;
      return out.send(unique, -errnoOf(e), null);
    }
    const name = opName(req.opcode);
    this.count(name);
    const noReply = req.opcode === Op.FORGET || req.opcode === Op.BATCH_FORGET;
    let result: OpResult;
    try {
      result = this.dispatch(req, out);
    } catch (e) {
      if (!(e instanceof SysError) && !(e instanceof Error && 'errno' in e)) {
        this.log(`fuse: ${name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      }
      return noReply ? 0 : out.send(req.unique, -errnoOf(e), null);
    }
    if (result === null) return 0;
    if (typeof result === 'number') return out.header(req.unique, 0, result);
    // A chain too small for a well-formed reply only comes from a broken or
    // hostile driver; tell it EIO if even that fits.
    return out.send(req.unique, 0, result) || out.send(req.unique, -E.EIO, null);
  }

  private dispatch(req: Request, out: Reply): OpResult {
    if (this.closed) fail(E.EIO);
    if (req.opcode === Op.INIT) return this.init(req);
    if (!this.initialized) fail(E.EIO);
    if (req.opcode === Op.DESTROY) return this.destroy();
    const op = ops.get(req.opcode);
    if (!op) fail(E.ENOSYS);
    return op(this.ctx, req, out);
  }

  private init(req: Request): OpResult {
    req.need(INIT_IN_MIN_SIZE);
    const major = req.u32(0);
    const minor = req.u32(4);
    const maxReadahead = req.u32(8);
    const kernelFlags = req.u32(12);
    const b = Buffer.alloc(INIT_OUT_SIZE);
    b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    b.writeUInt32LE(FUSE_OUR_MINOR, 4);
    // A newer major: answer with ours only and the kernel retries INIT with it.
    if (major > FUSE_KERNEL_VERSION) return b.subarray(0, 8);
    if (major < FUSE_KERNEL_VERSION || minor < FUSE_MIN_MINOR) fail(E.EPROTO);
    // A second INIT (guest kernel restarted without DESTROY) starts afresh.
    if (this.initialized) this.reset();
    const flags = (kernelFlags & OFFERED_INIT_FLAGS) >>> 0;
    this.ctx.openFlags = this.keepCache && flags & FUSE_AUTO_INVAL_DATA ? FOPEN_KEEP_CACHE : 0;
    b.writeUInt32LE(maxReadahead, 8);
    b.writeUInt32LE(flags, 12);
    b.writeUInt16LE(0, 16); // max_background: kernel default
    b.writeUInt16LE(0, 18); // congestion_threshold: kernel default
    b.writeUInt32LE(MAX_WRITE, 20);
    b.writeUInt32LE(1, 24); // time_gran: nanoseconds
    b.writeUInt16LE(MAX_PAGES, 28);
    this.initialized = true;
    this.log(`fuse: INIT kernel ${major}.${minor} flags 0x${kernelFlags.toString(16)} -> 7.${FUSE_OUR_MINOR} flags 0x${flags.toString(16)}`);
    return b;
  }

  private destroy(): OpResult {
    this.reset();
    this.initialized = false;
    return new Uint8Array(0);
  }

  private reset(): void {
    this.ctx.handles.close();
    this.ctx.inodes.reset();
  }

  private count(name: string): void {
    this.counts.set(name, (this.counts.get(name) ?? 0) + 1);
  }

  private log(msg: string): void {
    if (this.logLines >= MAX_LOG_LINES) return;
    this.logLines++;
    this.logFn(msg);
  }
}
