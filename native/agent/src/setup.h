/* Container set-up (protocol extension A): SETUP / SETUP_DONE, the default
 * container mounts for hosts that send no SETUP, and path resolution inside
 * the container rootfs. */
#ifndef HUSK_SETUP_H
#define HUSK_SETUP_H

#include <stddef.h>
#include <stdint.h>

struct conn;

void setup_handle(struct conn *c, uint32_t id, const uint8_t *p, size_t n);

/* Called for every RUN before it is handled. The first one mounts the
 * default container mounts unless SETUP was received. Returns 0 if the RUN
 * may go on, -1 if the container is unusable (ERROR sent). */
int setup_before_run(struct conn *c, uint32_t id);

/* The first RUN after SETUP (the container's init): with TERMINAL, binds its
 * pty slave (slave_fd) on <rootfs>/dev/console, creating an empty file there
 * if needed; a failure is logged and ignored. Does nothing for any later RUN,
 * after a first RUN without TERMINAL (slave_fd -1), without SETUP or in test
 * mode. */
void setup_console(int slave_fd);

/* Resolves `path` (absolute, inside the container) under `root` like
 * securejoin: symlinks are followed component by component with `root` as
 * the root ("/.." stays at the root, absolute targets restart at the root).
 * Components that do not exist are kept as they are. out = root + the
 * resolved path, never outside root. 0 or -errno (ELOOP, ENAMETOOLONG, ...). */
int root_resolve(const char *root, const char *path, char *out, size_t outlen);

/* Extension B: 1 once, for the container's init (the first RUN after
 * SETUP), which gets its own pid namespace. */
int setup_take_init(void);

/* In the container's init, after it entered its pid namespace and before
 * the chroot: mounts every proc of the SETUP again (replacing the agent's),
 * then the mounts, masked and read-only paths below them. 0, or -1 with a
 * message in err. */
int setup_init_proc(char *err, size_t errlen);

#endif
