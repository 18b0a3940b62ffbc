/* Extra fds of a process (protocol extension B, EXTRA_FDS / FD_DATA): fd
 * 3+i of the process is one end of a socketpair whose other end the agent
 * relays to the host as FD_DATA byte streams, both ways. */
#ifndef HUSK_FDRELAY_H
#define HUSK_FDRELAY_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>

struct conn;
struct proc_ref;

#define FDRELAY_MAX 64u

struct fdrelay;

/* n socketpairs; the process's ends are stored in child[0..n). NULL on
 * failure (errno set). */
struct fdrelay *fdr_create(unsigned n, int *child);
void fdr_free(struct fdrelay *r);

/* Bytes from the host not yet taken by the process. */
size_t fdr_pending(const struct fdrelay *r);
/* pollfds for the relay's fds, kinds base+i; reads only if read_output. */
size_t fdr_pollfds(struct fdrelay *r, struct pollfd *pfd, struct proc_ref *ref, uint32_t id,
		   int base, int read_output);
void fdr_dispatch(struct conn *c, uint32_t id, struct fdrelay *r, unsigned i, short revents);
/* FD_DATA from the host: u32 fd, then bytes (none: EOF). */
void fdr_input(struct conn *c, uint32_t id, struct fdrelay *r, const uint8_t *p, size_t n);
/* The process exited: forwards what its fds still hold (bounded), then EOF. */
void fdr_drain(struct conn *c, uint32_t id, struct fdrelay *r);

#endif
