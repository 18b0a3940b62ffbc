/* Console logging, fatal errors and allocation helpers. */
#ifndef HUSK_LOG_H
#define HUSK_LOG_H

#include <stddef.h>

#define PRINTF_LIKE(a, b) __attribute__((format(printf, a, b)))

/* Always written (to fd 2, the console when PID 1), prefixed "husk-agent: ". */
void log_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Written only with husk.debug / --debug. */
void log_debug(const char *fmt, ...) PRINTF_LIKE(1, 2);
/* Logs one line, then powers the VM off (test mode: exits 1). */
_Noreturn void fatal(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Allocation that cannot fail: on out-of-memory the agent is fatal. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);

/* strerror() with a lower-case first letter, the way Go/runc print errors. */
const char *errstr(int err, char *buf, size_t len);

#endif
