/* Byte buffers: a growable buffer for building payloads and a FIFO of
 * chunks that is written out to a non-blocking fd as it becomes writable. */
#ifndef HUSK_BUFQ_H
#define HUSK_BUFQ_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len, cap;
};

void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_put(struct buf *b, const void *p, size_t n);
void buf_put_u8(struct buf *b, uint8_t v);
void buf_put_u16(struct buf *b, uint16_t v);
void buf_put_u32(struct buf *b, uint32_t v);

struct chunk;

struct bq {
	struct chunk *head, *tail;
	size_t bytes; /* bytes not yet written */
};

void bq_init(struct bq *q);
/* Appends a chunk holding a[0..alen) followed by b[0..blen) (either may be empty). */
void bq_push2(struct bq *q, const void *a, size_t alen, const void *b, size_t blen);
/* Writes as much as the fd takes. Returns 1 when the queue is empty,
 * 0 when the fd would block, -1 on error (errno set). */
int bq_write(struct bq *q, int fd);
void bq_clear(struct bq *q);
static inline int bq_empty(const struct bq *q) { return q->head == NULL; }

/* Little-endian helpers. */
static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static inline void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

#endif
