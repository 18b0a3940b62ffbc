/* husk agent protocol v1: framing, TLV and the host connection. */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ST_HDR, ST_BODY, ST_DISCARD };

void tlv_begin(struct tlv *t, const uint8_t *p, size_t n)
{
	t->p = p;
	t->left = p ? n : 0;
}

int tlv_next(struct tlv *t, uint16_t *tag, const uint8_t **val, uint32_t *len)
{
	uint32_t l;

	if (t->left == 0)
		return 0;
	if (t->left < 6)
		return -1;
	l = rd32(t->p + 2);
	if (l > t->left - 6)
		return -1;
	*tag = rd16(t->p);
	*len = l;
	*val = t->p + 6;
	t->p += 6 + (size_t)l;
	t->left -= 6 + (size_t)l;
	return 1;
}

int tlv_str_ok(const uint8_t *val, uint32_t len)
{
	return len == 0 || memchr(val, 0, len) == NULL;
}

void tlv_put_u32(struct buf *b, uint16_t tag, uint32_t v)
{
	buf_put_u16(b, tag);
	buf_put_u32(b, 4);
	buf_put_u32(b, v);
}

void tlv_put_str(struct buf *b, uint16_t tag, const char *s)
{
	size_t n = strlen(s);
	buf_put_u16(b, tag);
	buf_put_u32(b, (uint32_t)n);
	buf_put(b, s, n);
}

void conn_init(struct conn *c, int fd)
{
	memset(c, 0, sizeof *c);
	c->fd = fd;
	c->state = ST_HDR;
	bq_init(&c->out);
}

void conn_send(struct conn *c, uint16_t type, uint32_t id, const void *payload, size_t len)
{
	uint8_t h[HDR_LEN];

	if (len > MAX_PAYLOAD)
		fatal("internal error: message type %u of %zu bytes", type, len);
	wr32(h, (uint32_t)len);
	wr16(h + 4, type);
	wr16(h + 6, 0);
	wr32(h + 8, id);
	bq_push2(&c->out, h, HDR_LEN, payload, len);
}

void conn_send_error(struct conn *c, uint32_t id, int err, const char *fmt, ...)
{
	char text[4096];
	struct buf b;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof text, fmt, ap);
	va_end(ap);
	/* MESSAGE is one line. */
	for (char *p = text; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	log_debug("send ERROR id=%u errno=%d: %s", id, err, text);
	buf_init(&b);
	tlv_put_u32(&b, A_ERRNO, (uint32_t)(err > 0 ? err : EIO));
	tlv_put_str(&b, A_MESSAGE, text);
	conn_send(c, T_ERROR, id, b.data, b.len);
	buf_free(&b);
}

int conn_flush(struct conn *c)
{
	return bq_write(&c->out, c->fd) < 0 ? -1 : 0;
}

/* Called when a complete header is in c->hdr. Returns the handler's stop flag. */
static int header_done(struct conn *c, msg_handler h)
{
	c->cur.len = rd32(c->hdr);
	c->cur.type = rd16(c->hdr + 4);
	c->cur.flags = rd16(c->hdr + 6);
	c->cur.id = rd32(c->hdr + 8);
	c->cur.payload = NULL;
	c->hdr_got = 0;

	if (c->cur.len > MAX_PAYLOAD) {
		conn_send_error(c, c->cur.id, E2BIG,
				"message of %u bytes exceeds the limit of %u bytes",
				c->cur.len, MAX_PAYLOAD);
		c->discard_left = c->cur.len;
		c->state = ST_DISCARD;
		return 0;
	}
	if (c->cur.len == 0) {
		c->state = ST_HDR;
		return h(c, &c->cur);
	}
	c->body = malloc(c->cur.len);
	if (!c->body) {
		conn_send_error(c, c->cur.id, ENOMEM, "no memory for a message of %u bytes", c->cur.len);
		c->discard_left = c->cur.len;
		c->state = ST_DISCARD;
		return 0;
	}
	c->body_got = 0;
	c->state = ST_BODY;
	return 0;
}

int conn_read(struct conn *c, msg_handler h, size_t budget)
{
	static uint8_t scratch[65536];
	size_t used = 0;

	while (used < budget) {
		ssize_t r;

		switch (c->state) {
		case ST_HDR:
			r = read(c->fd, c->hdr + c->hdr_got, HDR_LEN - c->hdr_got);
			if (r > 0) {
				used += (size_t)r;
				c->hdr_got += (size_t)r;
				if (c->hdr_got == HDR_LEN && header_done(c, h))
					return 0;
				continue;
			}
			break;
		case ST_BODY:
			r = read(c->fd, c->body + c->body_got, c->cur.len - c->body_got);
			if (r > 0) {
				used += (size_t)r;
				c->body_got += (size_t)r;
				if (c->body_got == c->cur.len) {
					int stop;
					c->state = ST_HDR;
					c->cur.payload = c->body;
					stop = h(c, &c->cur);
					free(c->body);
					c->body = NULL;
					c->cur.payload = NULL;
					if (stop)
						return 0;
				}
				continue;
			}
			break;
		default: /* ST_DISCARD */
			r = read(c->fd, scratch,
				 c->discard_left < sizeof scratch ? c->discard_left : sizeof scratch);
			if (r > 0) {
				used += (size_t)r;
				c->discard_left -= (size_t)r;
				if (c->discard_left == 0)
					c->state = ST_HDR;
				continue;
			}
			break;
		}
		if (r == 0)
			return 1;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return -1;
	}
	return 0;
}
