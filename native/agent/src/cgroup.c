/* The container's cgroup in the guest: see cgroup.h. The agent itself stays
 * in the root cgroup (exempt from the no-internal-processes rule), so the
 * container's limits never throttle the agent. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"
#include "cgroup.h"
#include "log.h"
#include "proto.h"

#define CG_DIR CGROUP_MNT "/" CGROUP_NAME
/* Largest cgroup file STATS returns (memory.stat is about 1.5 KiB). */
#define FILE_MAX 8192
#define U64_MAX_VAL 0xffffffffffffffffull

static int ready;
/* SETUP asked for a cgroup namespace (spec linux.namespaces has "cgroup"). */
static int want_ns;

static void mkdir_quiet(const char *p)
{
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		log_debug("cgroup: mkdir %s: %s", p, strerror(errno));
}

static int write_file(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = write(fd, val, strlen(val));
	int err = errno;
	close(fd);
	if (n < 0) {
		errno = err;
		return -1;
	}
	return 0;
}

static PRINTF_LIKE(4, 5) int cg_fail(char *err, size_t errlen, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	errno = errnum;
	return -1;
}

void cgroup_init(void)
{
	char e[128];

#ifdef HUSK_TEST_HOOKS
	/* The namespace test (make nstest) shares the host's cgroup hierarchy: leave it alone. */
	log_debug("cgroup: none in the namespace test build");
	return;
#endif
	mkdir_quiet("/run");
	mkdir_quiet("/run/husk");
	mkdir_quiet(CGROUP_MNT);
	if (mount("cgroup2", CGROUP_MNT, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
		log_info("cgroup: mount cgroup2 on %s: %s; the container runs without a cgroup",
			 CGROUP_MNT, errstr(errno, e, sizeof e));
		return;
	}
	/* One controller at a time: a kernel without one still gets the others. */
	static const char *const ctl[] = { "+memory", "+cpu", "+pids" };
	for (size_t i = 0; i < sizeof ctl / sizeof ctl[0]; i++)
		if (write_file(CGROUP_MNT "/cgroup.subtree_control", ctl[i]) < 0)
			log_info("cgroup: enable %s: %s", ctl[i] + 1, errstr(errno, e, sizeof e));
	if (mkdir(CG_DIR, 0755) < 0 && errno != EEXIST) {
		log_info("cgroup: mkdir %s: %s", CG_DIR, errstr(errno, e, sizeof e));
		return;
	}
	ready = 1;
	log_debug("cgroup: %s ready", CG_DIR);
}

int cgroup_join(char *err, size_t errlen)
{
	char e[128];
	if (!ready)
		return 0;
	if (write_file(CG_DIR "/cgroup.procs", "0") < 0) {
		int saved = errno;
		snprintf(err, errlen, "joining the container's cgroup: %s", errstr(saved, e, sizeof e));
		errno = saved;
		return -1;
	}
	if (want_ns && unshare(CLONE_NEWCGROUP) < 0) {
		int saved = errno;
		snprintf(err, errlen, "unsharing the cgroup namespace: %s", errstr(saved, e, sizeof e));
		errno = saved;
		return -1;
	}
	return 0;
}

const char *cgroup_ns_root(void)
{
	return ready && want_ns ? CG_DIR : NULL;
}

int cgroup_is_setup_attr(uint16_t tag)
{
	return cgroup_is_attr(tag) || tag == A_CG_NAMESPACE;
}

int cgroup_setup_attr(uint16_t tag, const uint8_t *val, uint32_t len, int apply, char *err, size_t errlen)
{
	if (tag != A_CG_NAMESPACE)
		return cgroup_attr(tag, val, len, apply, err, errlen);
	if (len != 1)
		return cg_fail(err, errlen, EINVAL, "CG_NAMESPACE must be 1 byte, not %u", len);
	if (apply)
		want_ns = val[0] != 0;
	return 0;
}

int cgroup_is_attr(uint16_t tag)
{
	return tag >= A_CG_MEMORY_MAX && tag <= A_CG_PIDS_MAX;
}


/* "max" for UINT64_MAX, else the number. */
static void fmt_limit(char *out, size_t len, uint64_t v)
{
	if (v == U64_MAX_VAL)
		snprintf(out, len, "max");
	else
		snprintf(out, len, "%llu", (unsigned long long)v);
}

int cgroup_attr(uint16_t tag, const uint8_t *val, uint32_t len, int apply, char *err, size_t errlen)
{
	char v[64], e[128];
	const char *file;
	uint32_t want = tag == A_CG_CPU_MAX ? 16 : tag == A_CG_CPU_WEIGHT ? 4 : 8;

	if (len != want)
		return cg_fail(err, errlen, EINVAL, "resource attribute %u must be %u bytes, not %u", tag, want, len);
	switch (tag) {
	case A_CG_MEMORY_MAX:
		file = "memory.max";
		fmt_limit(v, sizeof v, rd64(val));
		break;
	case A_CG_MEMORY_SWAP_MAX:
		file = "memory.swap.max";
		fmt_limit(v, sizeof v, rd64(val));
		break;
	case A_CG_MEMORY_LOW:
		file = "memory.low";
		fmt_limit(v, sizeof v, rd64(val));
		break;
	case A_CG_PIDS_MAX:
		file = "pids.max";
		fmt_limit(v, sizeof v, rd64(val));
		break;
	case A_CG_CPU_WEIGHT: {
		uint32_t w = rd32(val);
		if (w < 1 || w > 10000)
			return cg_fail(err, errlen, EINVAL, "cpu weight %u out of range 1-10000", w);
		file = "cpu.weight";
		snprintf(v, sizeof v, "%u", w);
		break;
	}
	case A_CG_CPU_MAX: {
		uint64_t quota = rd64(val), period = rd64(val + 8);
		char q[32];
		if (period != 0 && (period < 1000 || period > 1000000))
			return cg_fail(err, errlen, EINVAL, "cpu period %llu out of range 1000-1000000",
				       (unsigned long long)period);
		if (quota != U64_MAX_VAL && quota < 1000)
			return cg_fail(err, errlen, EINVAL, "cpu quota %llu below 1000", (unsigned long long)quota);
		file = "cpu.max";
		fmt_limit(q, sizeof q, quota);
		if (period)
			snprintf(v, sizeof v, "%s %llu", q, (unsigned long long)period);
		else
			snprintf(v, sizeof v, "%s", q);
		break;
	}
	default:
		return 0;
	}
	if (!apply)
		return 0;
	if (!ready)
		return cg_fail(err, errlen, ENOTSUP, "the guest has no container cgroup");
	char path[128];
	snprintf(path, sizeof path, "%s/%s", CG_DIR, file);
	if (write_file(path, v) < 0) {
		int saved = errno;
		return cg_fail(err, errlen, saved, "writing %s to %s: %s", v, file, errstr(saved, e, sizeof e));
	}
	log_debug("cgroup: %s = %s", file, v);
	return 0;
}

void cgroup_handle_update(struct conn *c, uint32_t id, const uint8_t *p, size_t n)
{
	struct tlv t;
	uint16_t tag;
	const uint8_t *val;
	uint32_t len;
	char msg[256];
	int r;

	/* Everything is checked before anything is written. */
	for (int apply = 0; apply < 2; apply++) {
		if (apply && !ready && !cfg.test_mode) {
			conn_send_error(c, id, ENOTSUP, "the guest has no container cgroup");
			return;
		}
		if (apply && cfg.test_mode)
			break;
		tlv_begin(&t, p, n);
		while ((r = tlv_next(&t, &tag, &val, &len)) > 0) {
			if (cgroup_is_attr(tag) && cgroup_attr(tag, val, len, apply, msg, sizeof msg) < 0) {
				conn_send_error(c, id, errno, "%s", msg);
				return;
			}
		}
		if (r < 0) {
			conn_send_error(c, id, EINVAL, "UPDATE: malformed TLV payload");
			return;
		}
	}
	conn_send(c, T_RESULT, id, NULL, 0);
}

/* Appends CGFILE "name\0contents" for one file of the container's cgroup (missing files are skipped). */
static void put_file(struct buf *b, const char *name)
{
	static char data[FILE_MAX];
	char path[128];
	size_t nlen = strlen(name), got = 0;

	snprintf(path, sizeof path, "%s/%s", CG_DIR, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	while (got < sizeof data) {
		ssize_t r = read(fd, data + got, sizeof data - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	buf_put_u16(b, A_CG_FILE);
	buf_put_u32(b, (uint32_t)(nlen + 1 + got));
	buf_put(b, name, nlen);
	buf_put_u8(b, 0);
	buf_put(b, data, got);
}

void cgroup_handle_stats(struct conn *c, uint32_t id, const uint8_t *p, size_t n)
{
	static const char *const files[] = {
		"memory.current", "memory.max", "memory.stat", "memory.events", "memory.peak",
		"memory.swap.current", "memory.swap.max", "cpu.stat", "cpu.max", "cpu.weight",
		"pids.current", "pids.max",
	};
	struct buf b;

	(void)p;
	(void)n;
	if (!ready) {
		conn_send_error(c, id, ENOTSUP, "the guest has no container cgroup");
		return;
	}
	buf_init(&b);
	for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
		put_file(&b, files[i]);
	conn_send(c, T_RESULT, id, b.data, b.len);
	buf_free(&b);
}
