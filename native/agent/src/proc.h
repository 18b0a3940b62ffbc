/* Container processes: RUN/START/STDIN/SIGNAL/RESIZE handling, spawning (fork, chroot,
 * PATH lookup, execve), output forwarding and exit reporting. */
#ifndef HUSK_PROC_H
#define HUSK_PROC_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

struct conn;

void proc_handle_run(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void proc_handle_stdin(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void proc_handle_signal(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void proc_handle_start(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void proc_handle_resize(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void proc_handle_fd_data(struct conn *c, uint32_t id, const uint8_t *p, size_t n);

/* Reaps every exited child (orphans too); sends EXIT for our processes
 * after draining their output. */
void proc_reap(struct conn *c);

/* poll() integration. */
struct proc_ref {
	uint32_t id;
	int kind;
};
size_t proc_max_pollfds(void);
/* Fills pollfds for all processes; output pipes only if read_output. */
size_t proc_pollfds(struct pollfd *pfd, struct proc_ref *ref, int read_output);
void proc_dispatch(struct conn *c, const struct pollfd *pfd, const struct proc_ref *ref, size_t n);

/* Bytes of STDIN accepted from the host but not yet taken by processes. */
size_t proc_stdin_pending(void);

/* SIGKILLs every process (and its process group). */
void proc_kill_all(void);

#endif
