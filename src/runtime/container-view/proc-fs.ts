// A read-only FUSE file system that looks like /proc for the container's
// processes: /proc/PID/{stat,status,cmdline,ns/pid} and /proc/{stat,uptime},
// all from the guest's snapshot. It is what ps-like tools that read /proc in
// the container pid's mount namespace (podman top's psgo) find there.
//
// Node ids are computed from the pid and the file, so they need no table
// and FORGET needs no work. Open files and directories copy what they show
// at open time: a read sees one consistent snapshot, as with procfs.
import os from 'node:os';
import type { RequestBuffers } from '../../vmm/devices/fs/fuse-server.js';
import { Request, Reply, BadRequest } from '../../vmm/devices/fs/fuse-io.js';
import {
  FUSE_KERNEL_VERSION, FUSE_ROOT_ID, INIT_IN_MIN_SIZE, INIT_OUT_SIZE, Op, READ_IN_SIZE, STATFS_OUT_SIZE,
  FOPEN_DIRECT_IO, attrOut, entryOut, openOut, timeoutFromSeconds, writeDirent, align8, DIRENT_HEADER_SIZE,
  DT_DIR, DT_LNK, DT_REG,
} from '../../vmm/devices/fs/fuse-protocol.js';
import { S_IFDIR, S_IFLNK, S_IFREG, type Stat } from '../../sys/fsops.js';
import { SysError } from '../../sys/libc.js';
import { PID_MAX, PROCESS_FILES, TOP_FILES, emptySnapshot, type ProcSnapshot } from './snapshot.js';

const E = os.constants.errno;
/** The minor this server speaks over /dev/fuse (struct sizes as in fuse-protocol.ts). */
const OUR_MINOR = 31;
const MAX_HANDLES = 1024;
/** Nothing is cached by the kernel: every lookup sees the newest snapshot. */
const NO_CACHE = timeoutFromSeconds(0);

// Node ids: 1 root, 2.. top files; a process owns 8 ids from pidNode(pid, 0).
const TOP_BASE = 2;
const PID_SHIFT = 3;
const PID_ID0 = 16;
const SLOT = { dir: 0, stat: 1, status: 2, cmdline: 3, ns: 4, nsPid: 5 } as const;
type Slot = (typeof SLOT)[keyof typeof SLOT];
const FILE_SLOTS: Record<string, Slot> = { stat: SLOT.stat, status: SLOT.status, cmdline: SLOT.cmdline };

type Node =
  | { kind: 'root' }
  | { kind: 'top'; name: string }
  | { kind: 'pid'; pid: number; slot: Slot };

function pidNode(pid: number, slot: Slot): number {
  return PID_ID0 + pid * (1 << PID_SHIFT) + slot;
}

interface DirEntry { name: string; nodeid: number; type: number }

export class ProcViewFs {
  private snap: ProcSnapshot = emptySnapshot();
  private readonly handles = new Map<number, Buffer | DirEntry[]>();
  private nextHandle = 1;

  setSnapshot(s: ProcSnapshot): void {
    this.snap = s;
  }

  get snapshot(): ProcSnapshot {
    return this.snap;
  }

  /** Whether `request` (raw bytes) starts a listing of /proc: the moment to take a new snapshot. */
  static startsListing(request: Uint8Array): boolean {
    if (request.byteLength < 24) return false;
    const v = Buffer.from(request.buffer, request.byteOffset, request.byteLength);
    const opcode = v.readUInt32LE(4);
    return opcode === Op.OPENDIR && v.readBigUInt64LE(16) === BigInt(FUSE_ROOT_ID);
  }

  /** Handles one request; returns the reply length written into `writable` (0: no reply). */
  handle(bufs: RequestBuffers): number {
    const out = new Reply(bufs.writable);
    let req: Request;
    try {
      req = new Request(bufs.readable);
    } catch (e) {
      if (e instanceof BadRequest) return out.send(e.unique, -e.errno, null);
      throw e;
    }
    if (req.opcode === Op.FORGET || req.opcode === Op.BATCH_FORGET || req.opcode === Op.INTERRUPT) return 0;
    try {
      const body = this.dispatch(req, out.bodyCapacity);
      return out.send(req.unique, 0, body);
    } catch (e) {
      // FsError from here, SysError from the request decoder (bad names, short arguments).
      const errno = e instanceof FsError || e instanceof SysError ? e.errno : E.EIO;
      return out.send(req.unique, -errno, null);
    }
  }

  private dispatch(req: Request, room: number): Uint8Array {
    switch (req.opcode) {
      case Op.INIT: return this.init(req);
      case Op.DESTROY: this.handles.clear(); return new Uint8Array(0);
      case Op.LOOKUP: return this.lookup(req);
      case Op.GETATTR: return attrOut(this.stat(this.node(req.nodeid)), NO_CACHE);
      case Op.READLINK: return this.readlink(req);
      case Op.OPEN: return this.open(req);
      case Op.READ: return this.read(req);
      case Op.RELEASE: case Op.RELEASEDIR: this.handles.delete(req.id(0)); return new Uint8Array(0);
      case Op.OPENDIR: return this.opendir(req);
      case Op.READDIR: return this.readdir(req, room);
      case Op.FLUSH: return new Uint8Array(0);
      case Op.ACCESS: if (req.u32(0) & 2) throw new FsError(E.EROFS); this.node(req.nodeid); return new Uint8Array(0);
      case Op.STATFS: { const b = Buffer.alloc(STATFS_OUT_SIZE); b.writeUInt32LE(4096, 40); b.writeUInt32LE(255, 44); b.writeUInt32LE(4096, 48); return b; }
      default: throw new FsError(E.ENOSYS);
    }
  }

  private init(req: Request): Uint8Array {
    req.need(INIT_IN_MIN_SIZE);
    const b = Buffer.alloc(INIT_OUT_SIZE);
    b.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    b.writeUInt32LE(OUR_MINOR, 4);
    if (req.u32(0) > FUSE_KERNEL_VERSION) return b.subarray(0, 8);
    if (req.u32(0) < FUSE_KERNEL_VERSION || req.u32(4) < OUR_MINOR) throw new FsError(E.EPROTO);
    b.writeUInt32LE(req.u32(8), 8); // max_readahead
    b.writeUInt32LE(0, 12); // no optional features
    b.writeUInt32LE(4096, 20); // max_write: nothing is written
    b.writeUInt32LE(1, 24); // time_gran
    return b;
  }

  /** The node an id stands for, if it exists in the current snapshot. */
  private node(nodeid: number): Node {
    if (nodeid === FUSE_ROOT_ID) return { kind: 'root' };
    if (nodeid >= TOP_BASE && nodeid < TOP_BASE + TOP_FILES.length) {
      const name = TOP_FILES[nodeid - TOP_BASE]!;
      if (this.snap.top.has(name)) return { kind: 'top', name };
    }
    if (nodeid >= PID_ID0) {
      const pid = Math.floor((nodeid - PID_ID0) / (1 << PID_SHIFT));
      const slot = ((nodeid - PID_ID0) % (1 << PID_SHIFT)) as Slot;
      if (pid >= 1 && pid <= PID_MAX && slot <= SLOT.nsPid && this.snap.processes.has(pid)) {
        if (slot !== SLOT.nsPid || this.snap.pidNamespace) return { kind: 'pid', pid, slot };
      }
    }
    throw new FsError(E.ENOENT);
  }

  private children(n: Node): DirEntry[] {
    if (n.kind === 'root') {
      const out: DirEntry[] = [];
      TOP_FILES.forEach((name, i) => { if (this.snap.top.has(name)) out.push({ name, nodeid: TOP_BASE + i, type: DT_REG }); });
      for (const pid of [...this.snap.processes.keys()].sort((a, b) => a - b)) out.push({ name: String(pid), nodeid: pidNode(pid, SLOT.dir), type: DT_DIR });
      return out;
    }
    if (n.kind === 'pid' && n.slot === SLOT.dir) {
      const out: DirEntry[] = PROCESS_FILES.map((name) => ({ name, nodeid: pidNode(n.pid, FILE_SLOTS[name]!), type: DT_REG }));
      out.push({ name: 'ns', nodeid: pidNode(n.pid, SLOT.ns), type: DT_DIR });
      return out;
    }
    if (n.kind === 'pid' && n.slot === SLOT.ns) {
      return this.snap.pidNamespace ? [{ name: 'pid', nodeid: pidNode(n.pid, SLOT.nsPid), type: DT_LNK }] : [];
    }
    throw new FsError(E.ENOTDIR);
  }

  private lookup(req: Request): Uint8Array {
    const parent = this.node(req.nodeid);
    const name = req.name(0).bytes.subarray(0, -1).toString('latin1');
    const hit = this.children(parent).find((c) => c.name === name);
    if (!hit) throw new FsError(E.ENOENT);
    return entryOut(hit.nodeid, this.stat(this.node(hit.nodeid)), NO_CACHE);
  }

  private contents(n: Node): Buffer {
    if (n.kind === 'top') return this.snap.top.get(n.name)!;
    if (n.kind === 'pid') {
      const name = PROCESS_FILES.find((f) => FILE_SLOTS[f] === n.slot);
      if (name) return this.snap.processes.get(n.pid)!.get(name)!;
    }
    throw new FsError(E.EISDIR);
  }

  private stat(n: Node): Stat {
    const sec = BigInt(Math.floor(this.snap.takenAt / 1000));
    const base = {
      nlink: 1, uid: 0, gid: 0, blksize: 4096, blocks: 0n, size: 0n, ino: 0n,
      atimeSec: sec, atimeNsec: 0, mtimeSec: sec, mtimeNsec: 0, ctimeSec: sec, ctimeNsec: 0,
      rdevMajor: 0, rdevMinor: 0, devMajor: 0, devMinor: 0,
    };
    if (n.kind === 'root' || (n.kind === 'pid' && (n.slot === SLOT.dir || n.slot === SLOT.ns))) {
      return { ...base, mode: S_IFDIR | 0o555, nlink: 2 };
    }
    if (n.kind === 'pid' && n.slot === SLOT.nsPid) return { ...base, mode: S_IFLNK | 0o777, size: BigInt(this.snap.pidNamespace!.length) };
    return { ...base, mode: S_IFREG | 0o444, size: BigInt(this.contents(n).length) };
  }

  private readlink(req: Request): Uint8Array {
    const n = this.node(req.nodeid);
    if (n.kind !== 'pid' || n.slot !== SLOT.nsPid) throw new FsError(E.EINVAL);
    return Buffer.from(this.snap.pidNamespace!, 'latin1');
  }

  private newHandle(v: Buffer | DirEntry[]): number {
    if (this.handles.size >= MAX_HANDLES) throw new FsError(E.EMFILE);
    const fh = this.nextHandle++;
    this.handles.set(fh, v);
    return fh;
  }

  private open(req: Request): Uint8Array {
    const n = this.node(req.nodeid);
    if ((req.u32(0) & 3) !== 0) throw new FsError(E.EROFS); // O_WRONLY or O_RDWR
    return openOut(this.newHandle(this.contents(n)), FOPEN_DIRECT_IO);
  }

  private read(req: Request): Uint8Array {
    req.need(READ_IN_SIZE);
    const data = this.handles.get(req.id(0));
    if (!Buffer.isBuffer(data)) throw new FsError(E.EBADF);
    const off = req.u64(8);
    if (off >= BigInt(data.length)) return new Uint8Array(0);
    return data.subarray(Number(off), Number(off) + req.u32(16));
  }

  private opendir(req: Request): Uint8Array {
    const n = this.node(req.nodeid);
    const entries = [
      { name: '.', nodeid: req.nodeid, type: DT_DIR },
      { name: '..', nodeid: FUSE_ROOT_ID, type: DT_DIR },
      ...this.children(n),
    ];
    return openOut(this.newHandle(entries));
  }

  private readdir(req: Request, room: number): Uint8Array {
    req.need(READ_IN_SIZE);
    const entries = this.handles.get(req.id(0));
    if (!Array.isArray(entries)) throw new FsError(E.EBADF);
    const size = Math.min(req.u32(16), room);
    const out = Buffer.alloc(size);
    let used = 0;
    for (let i = Number(req.u64(8)); i < entries.length; i++) {
      const e = entries[i]!;
      const name = Buffer.from(e.name, 'latin1');
      if (used + align8(DIRENT_HEADER_SIZE + name.length) > size) break;
      used += writeDirent(out, used, BigInt(e.nodeid), BigInt(i + 1), e.type, name);
    }
    return out.subarray(0, used);
  }
}

class FsError extends Error {
  readonly errno: number;
  constructor(errno: number) {
    super(`errno ${errno}`);
    this.errno = errno;
  }
}
