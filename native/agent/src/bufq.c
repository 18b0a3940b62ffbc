/* Byte buffers and chunk queues. */
#include "bufq.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "log.h"

struct chunk {
	struct chunk *next;
	size_t len, off;
	uint8_t data[];
};

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_put(struct buf *b, const void *p, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len)
		fatal("buffer size overflow");
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_put_u8(struct buf *b, uint8_t v) { buf_put(b, &v, 1); }

void buf_put_u16(struct buf *b, uint16_t v)
{
	uint8_t t[2];
	wr16(t, v);
	buf_put(b, t, 2);
}

void buf_put_u32(struct buf *b, uint32_t v)
{
	uint8_t t[4];
	wr32(t, v);
	buf_put(b, t, 4);
}

void bq_init(struct bq *q)
{
	q->head = q->tail = NULL;
	q->bytes = 0;
}

void bq_push2(struct bq *q, const void *a, size_t alen, const void *b, size_t blen)
{
	struct chunk *c;

	if (alen > SIZE_MAX / 4 || blen > SIZE_MAX / 4)
		fatal("chunk size overflow");
	if (alen + blen == 0)
		return;
	c = xmalloc(sizeof *c + alen + blen);
	c->next = NULL;
	c->len = alen + blen;
	c->off = 0;
	if (alen)
		memcpy(c->data, a, alen);
	if (blen)
		memcpy(c->data + alen, b, blen);
	if (q->tail)
		q->tail->next = c;
	else
		q->head = c;
	q->tail = c;
	q->bytes += c->len;
}

int bq_write(struct bq *q, int fd)
{
	while (q->head) {
		struct iovec iov[32];
		int n = 0;
		ssize_t w;

		for (struct chunk *c = q->head; c && n < 32; c = c->next, n++) {
			iov[n].iov_base = c->data + c->off;
			iov[n].iov_len = c->len - c->off;
		}
		w = writev(fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		q->bytes -= (size_t)w;
		while (w > 0) {
			struct chunk *c = q->head;
			size_t left = c->len - c->off;
			if ((size_t)w < left) {
				c->off += (size_t)w;
				break;
			}
			w -= (ssize_t)left;
			q->head = c->next;
			free(c);
		}
		if (!q->head)
			q->tail = NULL;
	}
	return 1;
}

void bq_clear(struct bq *q)
{
	struct chunk *c = q->head;
	while (c) {
		struct chunk *next = c->next;
		free(c);
		c = next;
	}
	bq_init(q);
}
