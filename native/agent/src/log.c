/* Console logging, fatal errors and allocation helpers. */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "boot.h"

static void vlog(const char *fmt, va_list ap)
{
	char line[1024];
	int saved = errno;
	int n;

	/* With husk.debug, a monotonic time in ms: where SETUP, RUN and START spend theirs. */
	if (cfg.debug) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		n = snprintf(line, sizeof line, "husk-agent: [%ld.%03ld] ", (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
			     (ts.tv_nsec / 1000) % 1000);
	} else {
		n = snprintf(line, sizeof line, "husk-agent: ");
	}
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	size_t len;

	if (m < 0)
		m = 0;
	len = (size_t)n + (size_t)m;
	if (len > sizeof line - 2)
		len = sizeof line - 2;
	line[len++] = '\n';
	/* One write per line so lines from different sources do not mix. */
	while (write(2, line, len) < 0 && errno == EINTR)
		;
	errno = saved;
}

void log_info(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;
	if (!cfg.debug)
		return;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

_Noreturn void fatal(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
	system_poweroff(1);
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		fatal("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

const char *errstr(int err, char *buf, size_t len)
{
	snprintf(buf, len, "%s", strerror(err));
	if (buf[0])
		buf[0] = (char)tolower((unsigned char)buf[0]);
	return buf;
}
