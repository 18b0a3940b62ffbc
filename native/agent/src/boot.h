/* Everything PID 1 does around the container: console, mounts, kernel
 * command line, loopback, the vsock connection to the host, power-off. */
#ifndef HUSK_BOOT_H
#define HUSK_BOOT_H

#include <stddef.h>

/* PID 1 only: /dev, console on fds 0-2, /proc, /sys, /dev/pts, /dev/shm,
 * then reads husk.* from /proc/cmdline into cfg. */
void boot_early(void);
/* Makes sure fds 0, 1 and 2 are open (on /dev/null if need be). */
void boot_std_fds(void);
/* Brings up the loopback interface (best effort). */
void boot_loopback(void);
/* Connects to the host (CID 2) on cfg.port, retrying for up to 10 s. */
int boot_connect(void);
/* Mounts the container rootfs (and the husk.binds tag). 0 or -errno, with
 * a one-line description of the failure in err. */
int boot_rootfs(char *err, size_t errlen);
/* husk.defer_root: boot_rootfs on first need (SETUP, a RUN without SETUP),
 * again after a failure; a no-op once mounted or without the token. */
int boot_ensure_root(char *err, size_t errlen);
/* The default container mounts (proc, sysfs, cgroup2, an rbind of /dev),
 * best effort; for hosts that send no SETUP. */
void boot_container_mounts(void);
/* Test hooks (HUSK_TEST_HOOKS builds only; NULL otherwise). */
const char *boot_hook(const char *name);
/* Syncs and powers the VM off (test mode: kills processes and exits). */
_Noreturn void system_poweroff(int code);

#endif
