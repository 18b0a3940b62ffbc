/* The container's pid namespace: creation by the init's fork, joining by
 * later RUNs (setns before fork, back after: they stay the agent's
 * children), and PS / signalling every process in it. */
#include "container.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "bufq.h"
#include "log.h"
#include "procfs.h"
#include "proto.h"

#define PS_MAX 4096          /* processes listed */
#define CMDLINE_MAX 4000     /* bytes of one command line */

static int own_ns = -1;      /* the agent's pid namespace */
static int ctr_ns = -1;      /* the container's, while its init lives */
static pid_t ctr_init;
static char ctr_ns_id[64];   /* readlink of its ns/pid: "pid:[N]" */
static int ctr_gone;         /* the init has exited: the container takes no process */

int ctr_enter(int init)
{
	if (init) {
		if (own_ns < 0 && (own_ns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC)) < 0)
			return -errno;
		return unshare(CLONE_NEWPID) < 0 ? -errno : 0;
	}
	if (ctr_ns < 0)
		return ctr_gone ? -ESRCH : 0; /* no init yet (or no SETUP): the agent's namespace */
	return setns(ctr_ns, CLONE_NEWPID) < 0 ? -errno : 0;
}

int ctr_is_live(void)
{
	return ctr_ns >= 0;
}

int ctr_enter_live(void)
{
	if (ctr_ns < 0)
		return -ESRCH;
	return setns(ctr_ns, CLONE_NEWPID) < 0 ? -errno : 0;
}

void ctr_leave(int init, pid_t pid)
{
	char path[64];
	ssize_t n;

	if (own_ns >= 0 && (init || ctr_ns >= 0) && setns(own_ns, CLONE_NEWPID) < 0)
		fatal("setns back to the agent's pid namespace: %s", strerror(errno));
	if (!init || pid <= 0)
		return;
	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
	ctr_ns = open(path, O_RDONLY | O_CLOEXEC);
	n = readlink(path, ctr_ns_id, sizeof ctr_ns_id - 1);
	ctr_ns_id[n > 0 ? n : 0] = '\0';
	ctr_init = pid;
	log_debug("container pid namespace %s, init pid %d", ctr_ns_id, (int)pid);
}

void ctr_reaped(pid_t pid)
{
	if (pid != ctr_init || ctr_ns < 0)
		return;
	close(ctr_ns);
	ctr_ns = -1;
	ctr_init = 0;
	ctr_gone = 1;
	procfs_container_gone();
	log_debug("the container's init exited");
}

/* ------------------------------------------------------------------ */
/* /proc of the agent (it sees every guest process) */

struct pinfo {
	pid_t pid;          /* in the agent's namespace */
	uint32_t inner;     /* in the container's */
	pid_t ppid;         /* agent's namespace */
	uint32_t uid;
};

static int in_container(pid_t pid)
{
	char path[64], link[64];
	ssize_t n;

	snprintf(path, sizeof path, "/proc/%d/ns/pid", (int)pid);
	n = readlink(path, link, sizeof link - 1);
	if (n <= 0)
		return 0;
	link[n] = '\0';
	return strcmp(link, ctr_ns_id) == 0;
}

static int read_status(pid_t pid, struct pinfo *pi)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	pi->pid = pid;
	pi->inner = 0;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "PPid:", 5)) {
			pi->ppid = (pid_t)strtol(line + 5, NULL, 10);
		} else if (!strncmp(line, "Uid:", 4)) {
			pi->uid = (uint32_t)strtoul(line + 4, NULL, 10);
		} else if (!strncmp(line, "NSpid:", 6)) {
			/* The last number is the pid in the innermost namespace. */
			char *p = line + 6, *end;
			for (;;) {
				unsigned long v = strtoul(p, &end, 10);
				if (end == p)
					break;
				pi->inner = (uint32_t)v;
				p = end;
			}
		}
	}
	fclose(f);
	return pi->inner ? 0 : -1;
}

/* The container's processes, in pid order of the agent's /proc. */
static size_t list(struct pinfo *out, size_t max)
{
	DIR *d;
	struct dirent *e;
	size_t n = 0;

	if (ctr_ns < 0 || !(d = opendir("/proc")))
		return 0;
	while ((e = readdir(d)) && n < max) {
		char *end;
		long pid = strtol(e->d_name, &end, 10);
		if (*end || pid <= 1)
			continue;
		if (in_container((pid_t)pid) && read_status((pid_t)pid, &out[n]) == 0)
			n++;
	}
	closedir(d);
	return n;
}

uint32_t ctr_inner_pid(pid_t pid)
{
	struct pinfo pi;
	if (ctr_ns < 0 || !in_container(pid) || read_status(pid, &pi) < 0)
		return 0;
	return pi.inner;
}

/* u32 pid, u32 ppid (0: outside the container), u32 uid, then the command
 * line (arguments NUL-separated, or "[comm]" for kernel-less ones). */
static void put_entry(struct buf *b, const struct pinfo *pi, const struct pinfo *all, size_t n)
{
	char path[64], cmd[CMDLINE_MAX];
	uint32_t ppid = 0;
	ssize_t len = 0;
	uint8_t head[12];
	int fd;

	for (size_t i = 0; i < n; i++)
		if (all[i].pid == pi->ppid)
			ppid = all[i].inner;
	snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pi->pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
		len = read(fd, cmd, sizeof cmd);
		close(fd);
	}
	if (len <= 0) {
		char comm[64] = "";
		snprintf(path, sizeof path, "/proc/%d/comm", (int)pi->pid);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
			ssize_t r = read(fd, comm, sizeof comm - 1);
			comm[r > 0 ? r : 0] = '\0';
			comm[strcspn(comm, "\n")] = '\0';
			close(fd);
		}
		len = snprintf(cmd, sizeof cmd, "[%s]", comm);
	}
	while (len > 0 && cmd[len - 1] == '\0')
		len--;
	wr32(head, pi->inner);
	wr32(head + 4, ppid);
	wr32(head + 8, pi->uid);
	buf_put_u16(b, A_PSENTRY);
	buf_put_u32(b, (uint32_t)(12 + len));
	buf_put(b, head, 12);
	buf_put(b, cmd, (size_t)len);
}

void ctr_handle_ps(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	struct tlv t;
	uint16_t tag;
	const uint8_t *val;
	uint32_t vlen, signo = 0;
	int r, have_sig = 0;
	struct buf b;

	tlv_begin(&t, payload, n);
	while ((r = tlv_next(&t, &tag, &val, &vlen)) > 0) {
		if (tag != A_SIGNO)
			continue;
		if (vlen != 4 || rd32(val) >= _NSIG) {
			conn_send_error(c, id, EINVAL, "PS: invalid SIGNO");
			return;
		}
		signo = rd32(val);
		have_sig = 1;
	}
	if (r < 0) {
		conn_send_error(c, id, EINVAL, "PS: malformed TLV payload");
		return;
	}
	if (ctr_ns < 0) {
		conn_send_error(c, id, ESRCH, "container not running");
		return;
	}
	struct pinfo *all = xcalloc(PS_MAX, sizeof *all);
	size_t np = list(all, PS_MAX);
	buf_init(&b);
	for (size_t i = 0; i < np && b.len < MAX_PAYLOAD - CMDLINE_MAX - 64; i++) {
		put_entry(&b, &all[i], all, np);
		/* The agent's own children are not reaped here, so no pid is reused
		 * between the listing and the signal except by another exit. */
		if (have_sig && kill(all[i].pid, (int)signo) < 0 && errno != ESRCH)
			log_debug("PS: kill %d: %s", (int)all[i].pid, strerror(errno));
	}
	log_debug("PS id=%u: %zu processes%s", id, np, have_sig ? " signalled" : "");
	conn_send(c, T_PS_LIST, id, b.data, b.len);
	buf_free(&b);
	free(all);
}
