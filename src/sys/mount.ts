// Mount namespace and mount calls Node lacks. Like a network namespace, a
// mount namespace set with unshare(2) belongs to the calling thread only
// (its fs_struct is copied): called on the main thread, it is the namespace
// /proc/PID/ns/mnt names, while worker threads started earlier keep theirs.
import { libc, check } from './libc.js';

const c_unshare = libc.func('int unshare(int flags)');
const c_setns = libc.func('int setns(int fd, int nstype)');
const c_mount = libc.func('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
const c_umount2 = libc.func('int umount2(const char *target, int flags)');

const CLONE_NEWNS = 0x00020000;
const CLONE_FS = 0x00000200;
export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_BIND = 0x1000;
export const MS_REMOUNT = 0x20;
export const MS_REC = 0x4000;
const MS_PRIVATE = 1 << 18;
export const MS_SHARED = 1 << 20;
const MNT_DETACH = 2;
const UMOUNT_NOFOLLOW = 8;

/**
 * Moves the calling thread into a new mount namespace whose mounts are all
 * private, so that nothing mounted in it reaches the host's namespace.
 */
export function enterPrivateMountNamespace(): void {
  check('unshare', c_unshare(CLONE_NEWNS) as number);
  check('mount', c_mount(null, '/', null, MS_REC | MS_PRIVATE, null) as number);
}

/**
 * Moves the calling thread into the mount namespace of process `pid` (its
 * root and cwd become that namespace's root). setns refuses a thread whose
 * fs_struct other threads share, as all of Node's do: unshared first.
 */
export function joinMountNamespaceOf(pid: number, open: (path: string) => number, close: (fd: number) => void): void {
  const fd = open(`/proc/${pid}/ns/mnt`);
  try {
    check('unshare', c_unshare(CLONE_FS) as number);
    check('setns', c_setns(fd, CLONE_NEWNS) as number);
  } finally {
    close(fd);
  }
}

export function mount(source: string, target: string, fstype: string, flags: number, data: string | null): void {
  check('mount', c_mount(source, target, fstype, flags, data) as number);
}

/** Lazy unmount; a symlink at `target` is not followed. */
export function detach(target: string): void {
  check('umount2', c_umount2(target, MNT_DETACH | UMOUNT_NOFOLLOW) as number);
}
