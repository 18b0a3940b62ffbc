/* Extra fds relayed as byte streams (see fdrelay.h). */
#include "fdrelay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bufq.h"
#include "log.h"
#include "proc.h"
#include "proto.h"

#define CHUNK 65536u
#define DRAIN_MAX (2u << 20)

struct rfd {
	int fd;          /* the agent's end, non-blocking */
	int rd_eof;      /* the process side reached EOF (sent to the host) */
	int host_eof;    /* the host sent EOF: shut down writing once q drains */
	struct bq q;     /* host -> process */
};

struct fdrelay {
	unsigned n;
	struct rfd f[];
};

static uint8_t chunk[4 + CHUNK];

struct fdrelay *fdr_create(unsigned n, int *child)
{
	struct fdrelay *r = xcalloc(1, sizeof *r + n * sizeof r->f[0]);

	r->n = n;
	for (unsigned i = 0; i < n; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			int err = errno;
			for (unsigned j = 0; j < i; j++)
				close(child[j]);
			r->n = i;
			fdr_free(r);
			errno = err;
			return NULL;
		}
		r->f[i].fd = sv[0];
		fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
		bq_init(&r->f[i].q);
		child[i] = sv[1];
	}
	return r;
}

void fdr_free(struct fdrelay *r)
{
	if (!r)
		return;
	for (unsigned i = 0; i < r->n; i++) {
		if (r->f[i].fd >= 0)
			close(r->f[i].fd);
		bq_clear(&r->f[i].q);
	}
	free(r);
}

size_t fdr_pending(const struct fdrelay *r)
{
	size_t t = 0;
	for (unsigned i = 0; r && i < r->n; i++)
		t += r->f[i].q.bytes;
	return t;
}

size_t fdr_pollfds(struct fdrelay *r, struct pollfd *pfd, struct proc_ref *ref, uint32_t id,
		   int base, int read_output)
{
	size_t k = 0;
	for (unsigned i = 0; r && i < r->n; i++) {
		struct rfd *f = &r->f[i];
		short ev = 0;
		if (f->fd < 0)
			continue;
		if (read_output && !f->rd_eof)
			ev |= POLLIN;
		if (!bq_empty(&f->q))
			ev |= POLLOUT;
		if (!ev)
			continue;
		pfd[k] = (struct pollfd){ .fd = f->fd, .events = ev };
		ref[k] = (struct proc_ref){ .id = id, .kind = base + (int)i };
		k++;
	}
	return k;
}

static void send_eof(struct conn *c, uint32_t id, unsigned i)
{
	uint8_t h[4];
	wr32(h, 3 + i);
	conn_send(c, T_FD_DATA, id, h, 4);
}

/* One read: bytes forwarded, 0 at EOF (sent), -1 would block. */
static ssize_t forward(struct conn *c, uint32_t id, struct fdrelay *r, unsigned i)
{
	struct rfd *f = &r->f[i];
	for (;;) {
		ssize_t n = read(f->fd, chunk + 4, CHUNK);
		if (n > 0) {
			wr32(chunk, 3 + i);
			conn_send(c, T_FD_DATA, id, chunk, 4 + (size_t)n);
			return n;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -1;
		f->rd_eof = 1;
		send_eof(c, id, i);
		return 0;
	}
}

static void flush_in(struct rfd *f)
{
	if (f->fd < 0)
		return;
	int w = bq_write(&f->q, f->fd);
	if (w < 0) {
		bq_clear(&f->q); /* the process closed its end: input is dropped */
		f->host_eof = 0;
	} else if (w == 1 && f->host_eof) {
		shutdown(f->fd, SHUT_WR);
		f->host_eof = 0;
	}
}

void fdr_dispatch(struct conn *c, uint32_t id, struct fdrelay *r, unsigned i, short revents)
{
	if (!r || i >= r->n || r->f[i].fd < 0)
		return;
	if (revents & POLLOUT)
		flush_in(&r->f[i]);
	if (revents & (POLLIN | POLLHUP | POLLERR) && !r->f[i].rd_eof)
		forward(c, id, r, i);
}

void fdr_input(struct conn *c, uint32_t id, struct fdrelay *r, const uint8_t *p, size_t n)
{
	if (n < 4) {
		conn_send_error(c, id, EINVAL, "FD_DATA shorter than its fd number");
		return;
	}
	uint32_t fdno = rd32(p);
	if (!r || fdno < 3 || fdno - 3 >= r->n) {
		conn_send_error(c, id, EBADF, "FD_DATA: process id %u has no relayed fd %u", id, fdno);
		return;
	}
	struct rfd *f = &r->f[fdno - 3];
	if (n == 4)
		f->host_eof = 1;
	else
		bq_push2(&f->q, p + 4, n - 4, NULL, 0);
	flush_in(f);
}

void fdr_drain(struct conn *c, uint32_t id, struct fdrelay *r)
{
	for (unsigned i = 0; r && i < r->n; i++) {
		size_t total = 0;
		ssize_t got;
		if (r->f[i].fd < 0 || r->f[i].rd_eof)
			continue;
		/* A child of the process may still hold its end: bounded. */
		while (total < DRAIN_MAX && (got = forward(c, id, r, i)) > 0)
			total += (size_t)got;
		if (!r->f[i].rd_eof)
			send_eof(c, id, i);
		r->f[i].rd_eof = 1;
	}
}
