// FUSE wire protocol (include/uapi/linux/fuse.h): opcodes, flags, struct
// sizes and encoders for the replies the server builds. Little endian only
// (x86_64 and arm64 guests).
import type { Stat } from '../../../sys/fsops.js';

export const FUSE_KERNEL_VERSION = 7;
/** The minor we speak: Linux 6.1's virtiofs driver sends 7.36. */
export const FUSE_OUR_MINOR = 36;
/** Oldest kernel minor we accept: struct sizes below are stable from here on. */
export const FUSE_MIN_MINOR = 31;
export const FUSE_ROOT_ID = 1;
/** d_type of a READDIR entry (the S_IFMT bits of its mode >> 12). */
export const DT_DIR = 4;
export const DT_REG = 8;
export const DT_LNK = 10;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
} as const;

const opNames = new Map<number, string>(Object.entries(Op).map(([k, v]) => [v, k]));
/** Name for stats; unknown opcodes share one bucket so a guest cannot grow the map. */
export function opName(opcode: number): string {
  return opNames.get(opcode) ?? 'UNKNOWN';
}

// fuse_init_in/out flags (low 32 bits; we need nothing from flags2).
export const FUSE_ASYNC_READ = 1 << 0;
export const FUSE_POSIX_LOCKS = 1 << 1;
export const FUSE_ATOMIC_O_TRUNC = 1 << 3;
export const FUSE_EXPORT_SUPPORT = 1 << 4;
export const FUSE_BIG_WRITES = 1 << 5;
export const FUSE_DONT_MASK = 1 << 6;
export const FUSE_AUTO_INVAL_DATA = 1 << 12;
export const FUSE_DO_READDIRPLUS = 1 << 13;
export const FUSE_READDIRPLUS_AUTO = 1 << 14;
export const FUSE_WRITEBACK_CACHE = 1 << 16;
export const FUSE_PARALLEL_DIROPS = 1 << 18;
export const FUSE_MAX_PAGES = 1 << 22;
export const FUSE_SETXATTR_EXT = 1 << 29;
export const FUSE_INIT_EXT = 1 << 30;

// fuse_setattr_in.valid
export const FATTR_MODE = 1 << 0;
export const FATTR_UID = 1 << 1;
export const FATTR_GID = 1 << 2;
export const FATTR_SIZE = 1 << 3;
export const FATTR_ATIME = 1 << 4;
export const FATTR_MTIME = 1 << 5;
export const FATTR_FH = 1 << 6;
export const FATTR_ATIME_NOW = 1 << 7;
export const FATTR_MTIME_NOW = 1 << 8;

export const FUSE_FSYNC_FDATASYNC = 1;

// Struct sizes (protocol 7.31+).
export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;
export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;
export const INIT_IN_SIZE = 64; // 7.36 sends flags2 and padding; older sends 16
export const INIT_IN_MIN_SIZE = 16;
export const INIT_OUT_SIZE = 64;
export const OPEN_IN_SIZE = 8;
export const OPEN_OUT_SIZE = 16;
export const CREATE_IN_SIZE = 16;
export const MKNOD_IN_SIZE = 16;
export const MKDIR_IN_SIZE = 8;
export const RENAME_IN_SIZE = 8;
export const RENAME2_IN_SIZE = 16;
export const LINK_IN_SIZE = 8;
export const SETATTR_IN_SIZE = 88;
export const GETATTR_IN_SIZE = 16;
export const READ_IN_SIZE = 40;
export const WRITE_IN_SIZE = 40;
export const WRITE_OUT_SIZE = 8;
export const RELEASE_IN_SIZE = 24;
export const FLUSH_IN_SIZE = 24;
export const FSYNC_IN_SIZE = 16;
export const FORGET_IN_SIZE = 8;
export const BATCH_FORGET_IN_SIZE = 8;
export const FORGET_ONE_SIZE = 16;
export const ACCESS_IN_SIZE = 8;
export const STATFS_OUT_SIZE = 80;
export const GETXATTR_IN_SIZE = 8;
export const GETXATTR_OUT_SIZE = 8;
export const SETXATTR_IN_SIZE = 8; // compat size: we do not negotiate FUSE_SETXATTR_EXT
export const FALLOCATE_IN_SIZE = 32;
export const LSEEK_IN_SIZE = 24;
export const LSEEK_OUT_SIZE = 8;
export const DIRENT_HEADER_SIZE = 24;

/** Records in READDIR replies are padded to 8 bytes. */
export function align8(n: number): number {
  return (n + 7) & ~7;
}

/** Cache validity for entries and attributes (seconds + nanoseconds). */
export interface Timeout {
  sec: bigint;
  nsec: number;
}

export function timeoutFromSeconds(s: number): Timeout {
  const v = Number.isFinite(s) && s > 0 ? s : 0;
  const sec = Math.floor(v);
  return { sec: BigInt(sec), nsec: Math.min(999_999_999, Math.round((v - sec) * 1e9)) };
}

/** Linux's new_encode_dev(): the 32-bit dev_t format of fuse_attr.rdev and fuse_mknod_in.rdev. */
export function encodeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function decodeDev(dev: number): { major: number; minor: number } {
  return { major: (dev & 0xfff00) >>> 8, minor: (dev & 0xff) | ((dev >>> 12) & 0xfff00) };
}

/** struct fuse_attr at `off`. */
export function writeAttr(b: Buffer, off: number, st: Stat): void {
  b.writeBigUInt64LE(st.ino, off);
  b.writeBigUInt64LE(st.size, off + 8);
  b.writeBigUInt64LE(st.blocks, off + 16);
  // Timestamps before 1970 are negative; the kernel reads the u64 back as s64.
  b.writeBigUInt64LE(BigInt.asUintN(64, st.atimeSec), off + 24);
  b.writeBigUInt64LE(BigInt.asUintN(64, st.mtimeSec), off + 32);
  b.writeBigUInt64LE(BigInt.asUintN(64, st.ctimeSec), off + 40);
  b.writeUInt32LE(st.atimeNsec, off + 48);
  b.writeUInt32LE(st.mtimeNsec, off + 52);
  b.writeUInt32LE(st.ctimeNsec, off + 56);
  b.writeUInt32LE(st.mode, off + 60);
  b.writeUInt32LE(st.nlink, off + 64);
  b.writeUInt32LE(st.uid, off + 68);
  b.writeUInt32LE(st.gid, off + 72);
  b.writeUInt32LE(encodeDev(st.rdevMajor, st.rdevMinor), off + 76);
  b.writeUInt32LE(st.blksize, off + 80);
  b.writeUInt32LE(0, off + 84);
}

/** struct fuse_entry_out at `off`; nodeid 0 with no stat is a "no entry" record (READDIRPLUS). */
export function writeEntryOut(b: Buffer, off: number, nodeid: number, st: Stat | null, t: Timeout): void {
  b.fill(0, off, off + ENTRY_OUT_SIZE);
  if (st === null) return;
  b.writeBigUInt64LE(BigInt(nodeid), off);
  b.writeBigUInt64LE(0n, off + 8); // generation: nodeids are never reused
  b.writeBigUInt64LE(t.sec, off + 16);
  b.writeBigUInt64LE(t.sec, off + 24);
  b.writeUInt32LE(t.nsec, off + 32);
  b.writeUInt32LE(t.nsec, off + 36);
  writeAttr(b, off + 40, st);
}

export function entryOut(nodeid: number, st: Stat, t: Timeout): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  writeEntryOut(b, 0, nodeid, st, t);
  return b;
}

export function attrOut(st: Stat, t: Timeout): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  b.writeBigUInt64LE(t.sec, 0);
  b.writeUInt32LE(t.nsec, 8);
  writeAttr(b, 16, st);
  return b;
}

// fuse_open_out.open_flags
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;

export function openOut(fh: number, openFlags = 0): Buffer {
  const b = Buffer.alloc(OPEN_OUT_SIZE);
  b.writeBigUInt64LE(BigInt(fh), 0);
  b.writeUInt32LE(openFlags, 8);
  return b;
}

/** A reply holding one u32 followed by 4 bytes of padding (write_out, getxattr_out). */
export function u32Out(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
}

/** fuse_dirent header + name + padding at `off`; returns the record size. */
export function writeDirent(b: Buffer, off: number, ino: bigint, nextOff: bigint, type: number, name: Uint8Array): number {
  const size = align8(DIRENT_HEADER_SIZE + name.length);
  b.writeBigUInt64LE(ino, off);
  b.writeBigUInt64LE(nextOff, off + 8);
  b.writeUInt32LE(name.length, off + 16);
  b.writeUInt32LE(type, off + 20);
  b.set(name, off + DIRENT_HEADER_SIZE);
  b.fill(0, off + DIRENT_HEADER_SIZE + name.length, off + size);
  return size;
}
