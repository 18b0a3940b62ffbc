/* Container processes: spawning, output forwarding, stdin, signals, exit. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "agent.h"
#include "bufq.h"
#include "cgroup.h"
#include "log.h"
#include "proto.h"
#include "setup.h"
#include "container.h"
#include "fdrelay.h"

/* Kernel ABI that musl's headers do not carry. */
#define CAP_VERSION_3 0x20080522u
struct cap_header_abi {
	uint32_t version;
	int pid;
};
struct cap_data_abi {
	uint32_t effective, permitted, inheritable;
};
struct sock_filter_abi {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};
struct sock_fprog_abi {
	unsigned short len;
	struct sock_filter_abi *filter;
};
#define SECCOMP_SET_MODE_FILTER_ABI 1
#define SECCOMP_MODE_FILTER_ABI 2
#define SECCOMP_FILTER_FLAG_NEW_LISTENER_ABI 8u
#define SECCOMP_MAX_INSNS 4096u
#define MAX_GIDS 65536u
#define PTMX_MAJOR 5
#define PTMX_MINOR 2

#define READ_CHUNK 65536u           /* max payload of one STDOUT/STDERR */
#define DRAIN_MAX (2u << 20)        /* max bytes read from a pipe after exit */
#define STATUS_MAX 4000u            /* exec error report: i32 errno + text */

enum { K_STATUS, K_OUT, K_ERR, K_IN, K_FD /* + relayed fd index */ };

enum stdin_state {
	IN_NONE,    /* RUN without STDIN=1: stdin is /dev/null */
	IN_OPEN,    /* accepting STDIN messages */
	IN_CLOSED,  /* host sent the zero-length STDIN (fd closes once drained) */
	IN_BROKEN,  /* the process closed its end; further input is dropped */
	IN_TERM,    /* TERMINAL: input goes to the pty master; never closed */
};

enum phase {
	PH_CREATING, /* HOLD: waiting for the child to be ready (CREATED) */
	PH_HELD,     /* HOLD: CREATED sent, waiting for START */
	PH_STARTING, /* waiting for the exec outcome (STARTED or ERROR) */
	PH_RUNNING,  /* STARTED sent: output is forwarded */
};

struct proc {
	struct proc *next;
	uint32_t id;
	pid_t pid;
	enum phase phase;
	int hold;               /* RUN with HOLD=1 */
	int start_requested;    /* START received */
	int start_fd;           /* HOLD: write end of the start pipe, until START */
	int pty_fd;             /* TERMINAL: the pty master, else -1 */
	/* CLOEXEC pipe: EOF without data = exec ok; i32 errno + text = failure;
	 * with HOLD first an i32 0 = ready (CREATED). */
	int status_fd;
	size_t status_len;
	char status[STATUS_MAX];
	int out_fd, err_fd, in_fd;
	enum stdin_state in_state;
	struct bq in_q;
	struct fdrelay *relay;  /* EXTRA_FDS, else NULL */
};

static struct proc *procs;
static size_t nprocs;
static uint8_t iobuf[READ_CHUNK];

static struct proc *find_id(uint32_t id)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static struct proc *find_pid(pid_t pid)
{
	for (struct proc *p = procs; p; p = p->next)
		if (p->pid == pid)
			return p;
	return NULL;
}

static void close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

static void proc_free(struct proc *p)
{
	for (struct proc **pp = &procs; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			nprocs--;
			break;
		}
	}
	close_fd(&p->status_fd);
	close_fd(&p->out_fd);
	close_fd(&p->err_fd);
	close_fd(&p->in_fd);
	close_fd(&p->start_fd);
	close_fd(&p->pty_fd);
	bq_clear(&p->in_q);
	fdr_free(p->relay);
	free(p);
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* ------------------------------------------------------------------ */
/* The child: from fork to execve. Only the agent's single thread forks, so
 * the libc calls used here are safe. Failures are reported on the status
 * pipe as i32 errno + one-line message, then the child exits 127. */

struct rlimit_rec {
	uint32_t resource;
	uint64_t soft, hard;
};

struct spawn {
	char **argv, **envp;
	const char *cwd;        /* NULL: "/" */
	const char *path;       /* PATH of envp, NULL: DEFAULT_PATH */
	int in_fd, out_fd, err_fd, status_fd;
	int tty_fd;             /* TERMINAL: the pty slave (stdin/out/err), else -1 */
	int start_fd;           /* HOLD: read end of the start pipe, else -1 */
	int have_uid, have_gid, have_gids, have_umask, have_caps, have_oom, nnp;
	uint32_t uid, gid, umask;
	gid_t *gids;
	size_t ngids;
	struct rlimit_rec *rlimits;
	size_t nrlimits;
	uint64_t caps[5];       /* bounding, effective, permitted, inheritable, ambient */
	int32_t oom_score_adj;
	struct sock_filter_abi *filter;
	size_t nfilter;
	uint32_t seccomp_flags;
	int init;               /* the container's init: PID 1 of its own pid namespace */
	unsigned nextra;        /* EXTRA_FDS: extra[i] becomes fd 3+i */
	int *extra;
};

/* Go-style %q of s, truncated, into dst. */
static const char *quote(char *dst, size_t len, const char *s)
{
	size_t o = 0;
	const size_t max = len - 8; /* room for an escape, '"', "..." and NUL */

	dst[o++] = '"';
	for (; *s && o < max; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)ch;
		} else if (ch == '\n') {
			dst[o++] = '\\';
			dst[o++] = 'n';
		} else if (ch == '\t') {
			dst[o++] = '\\';
			dst[o++] = 't';
		} else if (ch < 0x20 || ch == 0x7f) {
			o += (size_t)snprintf(dst + o, len - o, "\\x%02x", ch);
		} else {
			dst[o++] = (char)ch;
		}
	}
	if (*s) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o++] = '"';
	dst[o] = '\0';
	return dst;
}

static _Noreturn PRINTF_LIKE(3, 4) void child_fail(int fd, int err, const char *fmt, ...)
{
	char msg[STATUS_MAX];
	int32_t e = err > 0 ? err : EIO;
	size_t len;
	int n;
	va_list ap;

	memcpy(msg, &e, sizeof e);
	va_start(ap, fmt);
	n = vsnprintf(msg + 4, sizeof msg - 4, fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	len = 4 + (size_t)n;
	if (len > sizeof msg - 1)
		len = sizeof msg - 1;
	/* Below PIPE_BUF: one atomic write. */
	while (write(fd, msg, len) < 0 && errno == EINTR)
		;
	_exit(127);
}

static void close_from(unsigned first, unsigned last)
{
	if (first > last)
		return;
#ifdef SYS_close_range
	if (syscall(SYS_close_range, first, last, 0) == 0)
		return;
#endif
	/* Old kernel: walk the fd table up to the soft limit. */
	long max = sysconf(_SC_OPEN_MAX);
	if (max < 0 || max > 1048576)
		max = 1048576;
	for (long fd = first; fd < max && (unsigned long)fd <= last; fd++)
		close((int)fd);
}

/* Closes every fd >= first (>= 3) except keep1 and keep2 (-1: none). */
static void close_all_but(int keep1, int keep2, unsigned first)
{
	int lo = keep1 < keep2 ? keep1 : keep2, hi = keep1 < keep2 ? keep2 : keep1;
	unsigned from = first;

	if (lo >= (int)first) {
		close_from(from, (unsigned)lo - 1);
		from = (unsigned)lo + 1;
	}
	if (hi >= (int)first) {
		close_from(from, (unsigned)hi - 1);
		from = (unsigned)hi + 1;
	}
	close_from(from, ~0u);
}

static int install_seccomp(const struct spawn *s)
{
	struct sock_fprog_abi prog = { .len = (unsigned short)s->nfilter, .filter = s->filter };

	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER_ABI, s->seccomp_flags, &prog) == 0)
		return 0;
	if (errno == ENOSYS && s->seccomp_flags == 0 &&
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER_ABI, &prog, 0, 0) == 0)
		return 0;
	return -1;
}

/* The highest capability the kernel knows. */
static int last_cap(void)
{
	int cap = 0;
	while (cap < 64 && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0)
		cap++;
	return cap - 1;
}

static void held_exit(int sig)
{
	_exit(128 + sig);
}

/* The signals whose default action ends a process. */
static void held_signals(void (*handler)(int))
{
	static const int term[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM,
				    SIGPIPE, SIGVTALRM, SIGPROF, SIGXCPU, SIGXFSZ, SIGPWR, SIGSYS };
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = handler;
	for (size_t i = 0; i < sizeof term / sizeof term[0]; i++)
		sigaction(term[i], &sa, NULL);
	for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
		sigaction(sig, &sa, NULL);
}

static _Noreturn void child(const struct spawn *s)
{
	char q[1200], e[128], full[4096];
	const char *name = s->argv[0];
	int sfd = s->status_fd, start_fd = s->start_fd, oom_fd = -1, last = 63;
	uint64_t valid = ~0ull;
	sigset_t none;

	/* stdio: all source fds are > 2 because fds 0-2 are always open in the agent. */
	if (s->tty_fd >= 0) {
		if (dup2(s->tty_fd, 0) < 0 || dup2(s->tty_fd, 1) < 0 || dup2(s->tty_fd, 2) < 0)
			child_fail(sfd, errno, "setting up the terminal: %s", errstr(errno, e, sizeof e));
	} else if (dup2(s->in_fd, 0) < 0 || dup2(s->out_fd, 1) < 0 || dup2(s->err_fd, 2) < 0) {
		child_fail(sfd, errno, "setting up stdio: %s", errstr(errno, e, sizeof e));
	}
	if (s->nextra) {
		/* Extra fds become 3..3+n-1: first move everything we keep above them. */
		int top = 3 + (int)s->nextra, tmp[FDRELAY_MAX];
		if ((sfd = fcntl(sfd, F_DUPFD_CLOEXEC, top)) < 0)
			child_fail(s->status_fd, errno, "moving fds: %s", errstr(errno, e, sizeof e));
		if (start_fd >= 0 && (start_fd = fcntl(start_fd, F_DUPFD_CLOEXEC, top)) < 0)
			child_fail(sfd, errno, "moving fds: %s", errstr(errno, e, sizeof e));
		for (unsigned i = 0; i < s->nextra; i++)
			if ((tmp[i] = fcntl(s->extra[i], F_DUPFD_CLOEXEC, top)) < 0)
				child_fail(sfd, errno, "moving fds: %s", errstr(errno, e, sizeof e));
		for (unsigned i = 0; i < s->nextra; i++)
			if (dup2(tmp[i], 3 + (int)i) < 0)
				child_fail(sfd, errno, "preserved fd %u: %s", 3 + i, errstr(errno, e, sizeof e));
	}
	close_all_but(sfd, start_fd, 3 + s->nextra);

	/* Signals: default dispositions, nothing blocked. */
	for (int sig = 1; sig < _NSIG; sig++) {
		struct sigaction sa;
		if (sig == SIGKILL || sig == SIGSTOP)
			continue;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_DFL;
		sigaction(sig, &sa, NULL); /* EINVAL for libc-internal signals: fine */
	}
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	setsid();
	if (s->tty_fd >= 0 && ioctl(0, TIOCSCTTY, 0) < 0)
		child_fail(sfd, errno, "setting the controlling terminal: %s", errstr(errno, e, sizeof e));
	/* The container's init mounts its proc (which shows its pid namespace). */
	if (s->init) {
		char msg[1024];
		if (setup_init_proc(msg, sizeof msg) < 0)
			child_fail(sfd, EIO, "%s", msg);
	}
	/* The agent's /proc, before the chroot (the container may have none). */
	if (s->have_oom && (oom_fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC)) < 0)
		child_fail(sfd, errno, "open /proc/self/oom_score_adj: %s", errstr(errno, e, sizeof e));

	if (cgroup_join(q, sizeof q) < 0)
		child_fail(sfd, errno, "%s", q);
	if (!cfg.test_mode && (chdir(ROOTFS_DIR) < 0 || chroot(".") < 0))
		child_fail(sfd, errno, "chroot to %s: %s", ROOTFS_DIR, errstr(errno, e, sizeof e));
	if (chdir(s->cwd ? s->cwd : "/") < 0)
		child_fail(sfd, errno, "chdir to cwd (%s) set in config.json failed: %s",
			   quote(q, sizeof q, s->cwd ? s->cwd : "/"), errstr(errno, e, sizeof e));

	if (s->have_umask)
		umask((mode_t)s->umask);
	for (size_t i = 0; i < s->nrlimits; i++) {
		const struct rlimit_rec *r = &s->rlimits[i];
		struct rlimit rl = { .rlim_cur = r->soft, .rlim_max = r->hard };
		if (setrlimit((int)r->resource, &rl) < 0)
			child_fail(sfd, errno, "error setting rlimit type %u: %s", r->resource,
				   errstr(errno, e, sizeof e));
	}
	if (oom_fd >= 0) {
		char v[16];
		int n = snprintf(v, sizeof v, "%d", (int)s->oom_score_adj);
		if (write(oom_fd, v, (size_t)n) != n)
			child_fail(sfd, errno, "set oom_score_adj to %d: %s", (int)s->oom_score_adj,
				   errstr(errno, e, sizeof e));
		close(oom_fd);
	}

	/* Without NO_NEW_PRIVS, installing a filter needs CAP_SYS_ADMIN: before
	 * the user and capabilities change (with it: just before execve). */
	if (s->filter && !s->nnp && install_seccomp(s) < 0)
		child_fail(sfd, errno, "error loading seccomp filter: %s", errstr(errno, e, sizeof e));

	if (s->have_caps) {
		last = last_cap();
		valid = last >= 63 ? ~0ull : (1ull << (last + 1)) - 1;
		/* The bounding set shrinks while CAP_SETPCAP is still effective. */
		for (int cap = 0; cap <= last; cap++) {
			if (s->caps[0] >> cap & 1 || prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1)
				continue;
			if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
				child_fail(sfd, errno, "drop capability %d from the bounding set: %s", cap,
					   errstr(errno, e, sizeof e));
		}
		/* Keep the permitted set through setuid. */
		if ((s->have_uid || s->have_gid) && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
			child_fail(sfd, errno, "prctl(PR_SET_KEEPCAPS): %s", errstr(errno, e, sizeof e));
	}
	if (s->have_gids && setgroups(s->ngids, s->gids) < 0)
		child_fail(sfd, errno, "setgroups: %s", errstr(errno, e, sizeof e));
	if (s->have_gid && setresgid(s->gid, s->gid, s->gid) < 0)
		child_fail(sfd, errno, "setgid %u: %s", s->gid, errstr(errno, e, sizeof e));
	if (s->have_uid && setresuid(s->uid, s->uid, s->uid) < 0)
		child_fail(sfd, errno, "setuid %u: %s", s->uid, errstr(errno, e, sizeof e));

	if (s->have_caps) {
		struct cap_header_abi h = { .version = CAP_VERSION_3, .pid = 0 };
		struct cap_data_abi d[2];
		uint64_t eff = s->caps[1] & valid, prm = s->caps[2] & valid, inh = s->caps[3] & valid;
		uint64_t amb = s->caps[4] & valid;

		if (s->have_uid || s->have_gid)
			prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
		d[0] = (struct cap_data_abi){ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh };
		d[1] = (struct cap_data_abi){ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32),
					      (uint32_t)(inh >> 32) };
		if (syscall(SYS_capset, &h, d) < 0)
			child_fail(sfd, errno, "capset: %s", errstr(errno, e, sizeof e));
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && amb)
			child_fail(sfd, errno, "clear ambient capabilities: %s", errstr(errno, e, sizeof e));
		for (int cap = 0; cap <= last; cap++)
			if (amb >> cap & 1 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
				child_fail(sfd, errno, "raise ambient capability %d: %s", cap,
					   errstr(errno, e, sizeof e));
	}
	if (s->nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(sfd, errno, "prctl(PR_SET_NO_NEW_PRIVS): %s", errstr(errno, e, sizeof e));

	/* The executable, looked up as the container user. */
	if (name[0] == '\0')
		child_fail(sfd, ENOENT, "exec: \"\": executable file not found in $PATH");
	if (strchr(name, '/')) {
		struct stat st;
		/* What execve would say, known before a HOLD. */
		if (stat(name, &st) < 0)
			child_fail(sfd, errno, "exec: %s: %s", quote(q, sizeof q, name),
				   errstr(errno, e, sizeof e));
		if (S_ISDIR(st.st_mode) || !(st.st_mode & 0111))
			child_fail(sfd, EACCES, "exec: %s: %s", quote(q, sizeof q, name),
				   errstr(EACCES, e, sizeof e));
		snprintf(full, sizeof full, "%s", name);
	} else {
		/* Like Go's exec.LookPath (which runc uses): the first PATH entry that
		 * is an executable non-directory wins; an empty entry means ".". */
		size_t nlen = strlen(name);
		const char *dir = s->path ? s->path : DEFAULT_PATH;
		int found = 0;
		for (;;) {
			const char *end = strchrnul(dir, ':');
			size_t dlen = (size_t)(end - dir);
			struct stat st;

			if (dlen == 0) {
				dir = ".";
				dlen = 1;
			}
			if (dlen + 1 + nlen < sizeof full) {
				memcpy(full, dir, dlen);
				full[dlen] = '/';
				memcpy(full + dlen + 1, name, nlen + 1);
				if (stat(full, &st) == 0 && !S_ISDIR(st.st_mode) && (st.st_mode & 0111)) {
					found = 1;
					break;
				}
			}
			if (*end == '\0')
				break;
			dir = end + 1;
		}
		if (!found)
			child_fail(sfd, ENOENT, "exec: %s: executable file not found in $PATH",
				   quote(q, sizeof q, name));
	}

	if (start_fd >= 0) {
		/* HOLD: ready (CREATED), then wait for START. */
		int32_t ready = 0;
		char go;
		ssize_t r;
		/* As PID 1 of its namespace the held init would ignore the
		 * terminating signals `kill` sends (no handler): until START they
		 * end it, as they end runc's waiting init. */
		if (s->init)
			held_signals(held_exit);
		while (write(sfd, &ready, sizeof ready) < 0 && errno == EINTR)
			;
		while ((r = read(start_fd, &go, 1)) < 0 && errno == EINTR)
			;
		if (r != 1)
			_exit(127); /* the agent dropped the process */
		close(start_fd);
		if (s->init)
			held_signals(SIG_DFL);
	}
	if (s->filter && s->nnp && install_seccomp(s) < 0)
		child_fail(sfd, errno, "error loading seccomp filter: %s", errstr(errno, e, sizeof e));
	execve(full, s->argv, s->envp);
	child_fail(sfd, errno, "exec: %s: %s", quote(q, sizeof q, full), errstr(errno, e, sizeof e));
}

/* ------------------------------------------------------------------ */
/* RUN */

static void close_pair(int p[2])
{
	close_fd(&p[0]);
	close_fd(&p[1]);
}

/* Opens a pty master at path (a ptmx node) and its slave. 0 or -errno. */
static int try_ptmx(const char *path, int *master, int *slave)
{
	struct stat st;
	int unlock = 0, err;
	unsigned n;
	int m = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC), sl;

	if (m < 0)
		return -errno;
	if (fstat(m, &st) < 0 || !S_ISCHR(st.st_mode) || major(st.st_rdev) != PTMX_MAJOR ||
	    minor(st.st_rdev) != PTMX_MINOR) {
		close(m);
		return -ENOTTY;
	}
	if (ioctl(m, TIOCSPTLCK, &unlock) < 0)
		goto fail;
	sl = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (sl < 0) {
		/* Before Linux 4.13: by name, in the devpts next to the ptmx. */
		char spath[4200];
		size_t dlen = (size_t)(strrchr(path, '/') - path);
		int in_pts = dlen >= 4 && memcmp(path + dlen - 4, "/pts", 4) == 0;
		if (ioctl(m, TIOCGPTN, &n) < 0)
			goto fail;
		snprintf(spath, sizeof spath, "%.*s%s/%u", (int)dlen, path, in_pts ? "" : "/pts", n);
		sl = open(spath, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (sl < 0)
			goto fail;
	}
	*master = m;
	*slave = sl;
	return 0;
fail:
	err = errno;
	close(m);
	return -err;
}

/* A new pty: in the container's devpts when it has one (so that the process
 * sees its terminal as /dev/pts/N of its own /dev), else in the agent's. */
static int open_pty(int *master, int *slave, const struct winsize *ws)
{
	char path[4096];
	int r = -ENOENT;

	if (!cfg.test_mode && root_resolve(ROOTFS_DIR, "/dev/pts/ptmx", path, sizeof path) == 0)
		r = try_ptmx(path, master, slave);
	if (r < 0)
		r = try_ptmx("/dev/ptmx", master, slave);
	if (r < 0)
		r = try_ptmx("/dev/pts/ptmx", master, slave);
	if (r == 0 && ws && ioctl(*master, TIOCSWINSZ, ws) < 0) {
		r = -errno;
		close(*master);
		close(*slave);
	}
	return r;
}

#define BAD(...)                                                   \
	do {                                                       \
		conn_send_error(c, id, EINVAL, "RUN: " __VA_ARGS__); \
		return;                                            \
	} while (0)

#define NEED_LEN(name, want)                                                        \
	do {                                                                        \
		if (vlen != (want))                                                 \
			BAD("%s must be %u bytes, not %u", name, (unsigned)(want), vlen); \
	} while (0)

void proc_handle_run(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	size_t nargs = 0, nenv = 0, strbytes = 0, nrl = 0;
	const uint8_t *cwd = NULL, *val, *gids_v = NULL, *filter_v = NULL;
	uint32_t cwdlen = 0, vlen, gids_len = 0, filter_len = 0;
	uint16_t tag;
	int want_stdin = 0, terminal = 0, hold = 0, have_ws = 0, r;
	struct winsize ws = { 0 };
	struct spawn s = { .tty_fd = -1, .start_fd = -1 };
	struct tlv t;
	char e[128];

	if (id == 0) {
		conn_send_error(c, id, EINVAL, "RUN needs a non-zero id");
		return;
	}
	if (find_id(id)) {
		conn_send_error(c, id, EEXIST, "process id %u is already in use", id);
		return;
	}

	/* Pass 1: validate and size. For repeated attributes the last one wins
	 * (ARG, ENV and RLIMIT accumulate). */
	tlv_begin(&t, payload, n);
	while ((r = tlv_next(&t, &tag, &val, &vlen)) > 0) {
		switch (tag) {
		case A_ARG:
		case A_ENV:
		case A_CWD:
			if (!tlv_str_ok(val, vlen))
				BAD("%s contains a NUL byte",
				    tag == A_ARG ? "ARG" : tag == A_ENV ? "ENV" : "CWD");
			if (tag == A_ARG)
				nargs++;
			else if (tag == A_ENV)
				nenv++;
			else {
				cwd = val;
				cwdlen = vlen;
			}
			strbytes += (size_t)vlen + 1;
			break;
		case A_STDIN:
			NEED_LEN("STDIN", 1);
			want_stdin = val[0] != 0;
			break;
		case A_TERMINAL:
			NEED_LEN("TERMINAL", 1);
			terminal = val[0] != 0;
			break;
		case A_WINSIZE:
			NEED_LEN("WINSIZE", 4);
			ws.ws_row = rd16(val);
			ws.ws_col = rd16(val + 2);
			have_ws = 1;
			break;
		case A_UID:
			NEED_LEN("UID", 4);
			s.uid = rd32(val);
			s.have_uid = 1;
			break;
		case A_GID:
			NEED_LEN("GID", 4);
			s.gid = rd32(val);
			s.have_gid = 1;
			break;
		case A_GIDS:
			if (vlen % 4 || vlen / 4 > MAX_GIDS)
				BAD("GIDS of %u bytes (a multiple of 4, at most %u groups)", vlen, MAX_GIDS);
			gids_v = val;
			gids_len = vlen;
			s.have_gids = 1;
			break;
		case A_UMASK:
			NEED_LEN("UMASK", 4);
			s.umask = rd32(val);
			if (s.umask > 0777)
				BAD("invalid UMASK 0%o", s.umask);
			s.have_umask = 1;
			break;
		case A_RLIMIT:
			NEED_LEN("RLIMIT", 24);
			if (rd32(val) >= RLIMIT_NLIMITS)
				BAD("unknown RLIMIT resource %u", rd32(val));
			if (rd64(val + 8) > rd64(val + 16))
				BAD("RLIMIT %u: soft limit above the hard limit", rd32(val));
			nrl++;
			break;
		case A_CAPS:
			NEED_LEN("CAPS", 40);
			for (int i = 0; i < 5; i++)
				s.caps[i] = rd64(val + 8 * i);
			s.have_caps = 1;
			break;
		case A_NO_NEW_PRIVS:
			NEED_LEN("NO_NEW_PRIVS", 1);
			s.nnp = val[0] != 0;
			break;
		case A_OOM_SCORE_ADJ:
			NEED_LEN("OOM_SCORE_ADJ", 4);
			s.oom_score_adj = (int32_t)rd32(val);
			if (s.oom_score_adj < -1000 || s.oom_score_adj > 1000)
				BAD("OOM_SCORE_ADJ %d is not in [-1000, 1000]", (int)s.oom_score_adj);
			s.have_oom = 1;
			break;
		case A_SECCOMP:
			if (vlen == 0 || vlen % 8 || vlen / 8 > SECCOMP_MAX_INSNS)
				BAD("SECCOMP of %u bytes (1 to %u filter instructions of 8 bytes)", vlen,
				    SECCOMP_MAX_INSNS);
			filter_v = val;
			filter_len = vlen;
			break;
		case A_SECCOMP_FLAGS:
			NEED_LEN("SECCOMP_FLAGS", 4);
			s.seccomp_flags = rd32(val);
			if (s.seccomp_flags & SECCOMP_FILTER_FLAG_NEW_LISTENER_ABI)
				BAD("seccomp user notification (SECCOMP_FILTER_FLAG_NEW_LISTENER) is not supported");
			break;
		case A_HOLD:
			NEED_LEN("HOLD", 1);
			hold = val[0] != 0;
			break;
		case A_EXTRA_FDS:
			NEED_LEN("EXTRA_FDS", 4);
			s.nextra = rd32(val);
			if (s.nextra > FDRELAY_MAX)
				BAD("EXTRA_FDS %u (at most %u)", s.nextra, FDRELAY_MAX);
			break;
		default:
			break; /* unknown or irrelevant tags are ignored */
		}
	}
	if (r < 0)
		BAD("malformed TLV payload");
	if (nargs == 0) {
		conn_send_error(c, id, EINVAL, "RUN without ARG");
		return;
	}
	if (cwd && (cwdlen == 0 || cwd[0] != '/'))
		BAD("CWD must be an absolute path");

	/* Pass 2: copy into NUL-terminated strings and arrays. */
	char **argv = xcalloc(nargs + 1, sizeof *argv);
	char **envp = xcalloc(nenv + 1, sizeof *envp);
	char *strs = xmalloc(strbytes), *sp = strs;
	const char *path = NULL, *cwdstr = NULL;
	size_t ai = 0, ei = 0;

	s.rlimits = xcalloc(nrl, sizeof *s.rlimits);
	s.ngids = gids_len / 4;
	s.gids = xcalloc(s.ngids, sizeof *s.gids);
	for (size_t i = 0; i < s.ngids; i++)
		s.gids[i] = rd32(gids_v + 4 * i);
	if (filter_v) {
		s.nfilter = filter_len / 8;
		s.filter = xcalloc(s.nfilter, sizeof *s.filter);
		for (size_t i = 0; i < s.nfilter; i++) {
			const uint8_t *f = filter_v + 8 * i;
			s.filter[i] = (struct sock_filter_abi){ rd16(f), f[2], f[3], rd32(f + 4) };
		}
	}
	tlv_begin(&t, payload, n);
	while (tlv_next(&t, &tag, &val, &vlen) > 0) {
		if (tag == A_RLIMIT) {
			s.rlimits[s.nrlimits++] = (struct rlimit_rec){ rd32(val), rd64(val + 8), rd64(val + 16) };
			continue;
		}
		if (tag != A_ARG && tag != A_ENV && tag != A_CWD)
			continue;
		if (vlen)
			memcpy(sp, val, vlen);
		sp[vlen] = '\0';
		if (tag == A_ARG) {
			argv[ai++] = sp;
		} else if (tag == A_ENV) {
			envp[ei++] = sp;
			if (strncmp(sp, "PATH=", 5) == 0)
				path = sp + 5; /* the last one wins, as with setenv */
		} else {
			cwdstr = sp; /* the last one wins */
		}
		sp += vlen + 1;
	}

	int outp[2] = { -1, -1 }, errp[2] = { -1, -1 }, stp[2] = { -1, -1 }, inp[2] = { -1, -1 };
	int startp[2] = { -1, -1 }, master = -1, slave = -1, out_dup = -1, in_dup = -1, fork_err_pre = 0;
	if (terminal) {
		r = open_pty(&master, &slave, have_ws ? &ws : NULL);
		if (r < 0) {
			conn_send_error(c, id, -r, "cannot allocate a terminal: %s", errstr(-r, e, sizeof e));
			goto out;
		}
		out_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
		in_dup = fcntl(master, F_DUPFD_CLOEXEC, 3);
	}
	/* The container's init (first RUN after SETUP): its pty on /dev/console. */
	setup_console(slave);
	if ((terminal && (out_dup < 0 || in_dup < 0)) ||
	    (!terminal && (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
			   (want_stdin && pipe2(inp, O_CLOEXEC) < 0))) ||
	    pipe2(stp, O_CLOEXEC) < 0 || (hold && pipe2(startp, O_CLOEXEC) < 0)) {
		int err = errno;
		close_pair(outp);
		close_pair(errp);
		close_pair(stp);
		close_pair(inp);
		close_pair(startp);
		close_fd(&master);
		close_fd(&slave);
		close_fd(&out_dup);
		close_fd(&in_dup);
		conn_send_error(c, id, err, "pipe: %s", errstr(err, e, sizeof e));
		goto out;
	}

	s.argv = argv;
	s.envp = envp;
	s.cwd = cwdstr;
	s.path = path;
	s.in_fd = want_stdin ? inp[0] : cfg.devnull_fd;
	s.out_fd = outp[1];
	s.err_fd = errp[1];
	s.status_fd = stp[1];
	s.tty_fd = slave;
	s.start_fd = startp[0];
	int extra[FDRELAY_MAX];
	struct fdrelay *relay = NULL;
	s.extra = extra;
	s.init = setup_take_init();
	if (s.nextra && !(relay = fdr_create(s.nextra, extra))) {
		s.nextra = 0;
		fork_err_pre = errno;
	}
	/* The init gets a new pid namespace; later processes join it. */
	if (!fork_err_pre && (r = ctr_enter(s.init)) < 0)
		fork_err_pre = -r;
	pid_t pid = -1;
	if (!fork_err_pre) {
		pid = fork();
		if (pid == 0)
			child(&s);
	}
	int fork_err = fork_err_pre ? fork_err_pre : errno;
	if (!fork_err_pre)
		ctr_leave(s.init, pid);
	for (unsigned i = 0; i < s.nextra; i++)
		close(extra[i]);
	if (pid < 0 && fork_err == ENOMEM && !s.init)
		fork_err = ESRCH; /* the container's init is dying: its namespace takes no process */
	close_fd(&outp[1]);
	close_fd(&errp[1]);
	close_fd(&stp[1]);
	close_fd(&inp[0]);
	close_fd(&startp[0]);
	close_fd(&slave);
	if (pid < 0) {
		close_pair(outp);
		close_pair(errp);
		close_pair(stp);
		close_pair(inp);
		close_pair(startp);
		close_fd(&master);
		close_fd(&out_dup);
		close_fd(&in_dup);
		fdr_free(relay);
		if (fork_err == ESRCH)
			conn_send_error(c, id, ESRCH, "container not running");
		else
			conn_send_error(c, id, fork_err, "fork: %s", errstr(fork_err, e, sizeof e));
		goto out;
	}

	struct proc *p = xcalloc(1, sizeof *p);
	p->id = id;
	p->pid = pid;
	p->phase = hold ? PH_CREATING : PH_STARTING;
	p->hold = hold;
	p->start_fd = startp[1];
	p->pty_fd = master;
	p->status_fd = stp[0];
	p->relay = relay;
	if (terminal) {
		p->out_fd = out_dup;
		p->err_fd = -1;
		p->in_fd = in_dup;
		p->in_state = IN_TERM;
	} else {
		p->out_fd = outp[0];
		p->err_fd = errp[0];
		p->in_fd = inp[1];
		p->in_state = want_stdin ? IN_OPEN : IN_NONE;
	}
	bq_init(&p->in_q);
	set_nonblock(p->status_fd);
	set_nonblock(p->out_fd);
	if (p->err_fd >= 0)
		set_nonblock(p->err_fd);
	if (p->in_fd >= 0)
		set_nonblock(p->in_fd);
	/* Append, so poll order follows RUN order. */
	struct proc **pp = &procs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	nprocs++;
	log_debug("RUN id=%u: pid %d, argv[0]=%s, %zu args, %zu env, cwd=%s%s%s%s", id, (int)pid,
		  argv[0], nargs, nenv, cwdstr ? cwdstr : "/", want_stdin ? ", stdin pipe" : "",
		  terminal ? ", terminal" : "", hold ? ", held" : "");
out:
	free(argv);
	free(envp);
	free(strs);
	free(s.rlimits);
	free(s.gids);
	free(s.filter);
}

#undef BAD
#undef NEED_LEN

/* ------------------------------------------------------------------ */
/* Status pipe, output, exit */

static void send_u32_msg(struct conn *c, uint16_t type, uint32_t id, uint16_t tag, uint32_t v)
{
	struct buf b;
	buf_init(&b);
	tlv_put_u32(&b, tag, v);
	conn_send(c, type, id, b.data, b.len);
	buf_free(&b);
}

/* Reads what is in the status pipe. Returns 1 at EOF (or error), 0 if the
 * pipe would block. */
static int read_status(struct proc *p)
{
	for (;;) {
		char tmp[512];
		ssize_t r = read(p->status_fd, tmp, sizeof tmp);
		if (r > 0) {
			size_t take = (size_t)r;
			if (take > STATUS_MAX - p->status_len)
				take = STATUS_MAX - p->status_len;
			memcpy(p->status + p->status_len, tmp, take);
			p->status_len += take;
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return 1;
	}
}

/* The exec outcome is known. Returns 0 if the process runs (STARTED sent),
 * -1 if exec failed (ERROR sent, p freed). */
static int exec_outcome(struct conn *c, struct proc *p)
{
	close_fd(&p->status_fd);
	if (p->status_len >= 4) {
		int32_t err;
		memcpy(&err, p->status, 4);
		conn_send_error(c, p->id, err, "%.*s", (int)(p->status_len - 4), p->status + 4);
		log_debug("RUN id=%u: failed: %.*s", p->id, (int)(p->status_len - 4), p->status + 4);
		proc_free(p); /* the child, if not yet reaped, is reaped as an orphan */
		return -1;
	}
	p->phase = PH_RUNNING;
	log_debug("send STARTED id=%u pid=%d", p->id, (int)p->pid);
	struct buf b;
	uint32_t cpid = ctr_inner_pid(p->pid);
	buf_init(&b);
	tlv_put_u32(&b, A_PID, (uint32_t)p->pid);
	if (cpid)
		tlv_put_u32(&b, A_CPID, cpid);
	conn_send(c, T_STARTED, p->id, b.data, b.len);
	buf_free(&b);
	return 0;
}

/* Acts on what the status pipe has said so far (eof: it is at EOF, the
 * child exec'd or is gone). Returns -1 if p was freed. */
static int status_advance(struct conn *c, struct proc *p, int eof)
{
	if (p->phase == PH_CREATING) {
		int32_t first = 1;
		if (p->status_len >= 4)
			memcpy(&first, p->status, 4);
		if (first == 0) {
			/* Ready and waiting for START. */
			p->status_len -= 4;
			memmove(p->status, p->status + 4, p->status_len);
			p->phase = p->start_requested ? PH_STARTING : PH_HELD;
			log_debug("send CREATED id=%u pid=%d", p->id, (int)p->pid);
			send_u32_msg(c, T_CREATED, p->id, A_PID, (uint32_t)p->pid);
		} else if (!eof) {
			return 0; /* the whole failure message comes with EOF */
		} else if (p->status_len >= 4) {
			return exec_outcome(c, p); /* ERROR */
		} else {
			conn_send_error(c, p->id, ECHILD, "the process ended before it was created");
			proc_free(p);
			return -1;
		}
	}
	if (p->phase == PH_STARTING && eof)
		return exec_outcome(c, p);
	return 0;
}

/* Reads one chunk from an output pipe. Returns bytes read, 0 at EOF/error
 * (fd closed), -1 if it would block. */
static ssize_t forward_output(struct conn *c, struct proc *p, int *fd, uint16_t type)
{
	for (;;) {
		ssize_t r = read(*fd, iobuf, sizeof iobuf);
		if (r > 0) {
			conn_send(c, type, p->id, iobuf, (size_t)r);
			return r;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return -1;
		close_fd(fd);
		return 0;
	}
}

static void drain_output(struct conn *c, struct proc *p, int *fd, uint16_t type)
{
	size_t total = 0;
	ssize_t r;

	/* A grandchild may still hold the pipe and keep writing: bounded. */
	while (*fd >= 0 && total < DRAIN_MAX && (r = forward_output(c, p, fd, type)) > 0)
		total += (size_t)r;
	close_fd(fd);
}

static void process_exited(struct conn *c, struct proc *p, int ws)
{
	int status;
	struct buf b;

	if (p->phase == PH_CREATING || p->phase == PH_STARTING) {
		/* The child is gone, so all it wrote is in the pipe. */
		read_status(p);
		if (status_advance(c, p, 1) < 0)
			return;
	}
	/* A held process that never started ends with EXIT alone. */
	drain_output(c, p, &p->out_fd, T_STDOUT);
	if (p->err_fd >= 0)
		drain_output(c, p, &p->err_fd, T_STDERR);
	fdr_drain(c, p->id, p->relay);

	if (WIFEXITED(ws))
		status = WEXITSTATUS(ws);
	else if (WIFSIGNALED(ws))
		status = 128 + WTERMSIG(ws);
	else
		status = 255;
	log_debug("send EXIT id=%u pid=%d status=%d waitstatus=0x%x", p->id, (int)p->pid, status, ws);
	buf_init(&b);
	tlv_put_u32(&b, A_STATUS, (uint32_t)status);
	tlv_put_u32(&b, A_WAITSTATUS, (uint32_t)ws);
	conn_send(c, T_EXIT, p->id, b.data, b.len);
	buf_free(&b);
	proc_free(p);
}

void proc_reap(struct conn *c)
{
	for (;;) {
		int ws;
		pid_t pid = waitpid(-1, &ws, WNOHANG);
		if (pid < 0 && errno == EINTR)
			continue;
		if (pid <= 0)
			return;
		ctr_reaped(pid);
		struct proc *p = find_pid(pid);
		if (p)
			process_exited(c, p, ws);
		else
			log_debug("reaped pid %d (status 0x%x)", (int)pid, ws);
	}
}

/* ------------------------------------------------------------------ */
/* STDIN */

/* Writes queued stdin; closes the pipe when drained after the host's EOF. */
static void stdin_flush(struct proc *p)
{
	if (p->in_fd < 0)
		return;
	int r = bq_write(&p->in_q, p->in_fd);
	if (r < 0) {
		/* EPIPE: the process closed its stdin; drop what is left. */
		log_debug("stdin of id %u: %s; dropping input", p->id, strerror(errno));
		bq_clear(&p->in_q);
		close_fd(&p->in_fd);
		p->in_state = IN_BROKEN;
	} else if (r == 1 && p->in_state == IN_CLOSED) {
		close_fd(&p->in_fd);
	}
}

void proc_handle_stdin(struct conn *c, uint32_t id, const uint8_t *data, size_t n)
{
	struct proc *p = find_id(id);

	if (!p) {
		conn_send_error(c, id, ESRCH, "STDIN: no process with id %u", id);
		return;
	}
	switch (p->in_state) {
	case IN_NONE:
		conn_send_error(c, id, EBADF, "STDIN: process id %u was started without STDIN", id);
		return;
	case IN_BROKEN:
		return; /* like writing to a closed pipe, minus the signal */
	case IN_CLOSED:
		if (n)
			conn_send_error(c, id, EBADF, "STDIN: stdin of process id %u is already closed", id);
		return;
	case IN_TERM:
		if (n == 0) {
			/* No EOF on a terminal (the master stays open, as a detached
			 * runc console does); a ^D in the data is the way to send one. */
			log_debug("STDIN id=%u: zero-length STDIN ignored for a terminal", id);
			return;
		}
		bq_push2(&p->in_q, data, n, NULL, 0);
		stdin_flush(p);
		return;
	case IN_OPEN:
		break;
	}
	if (n == 0)
		p->in_state = IN_CLOSED;
	else
		bq_push2(&p->in_q, data, n, NULL, 0);
	stdin_flush(p);
}

size_t proc_stdin_pending(void)
{
	size_t total = 0;
	for (struct proc *p = procs; p; p = p->next)
		total += p->in_q.bytes + fdr_pending(p->relay);
	return total;
}

/* ------------------------------------------------------------------ */
/* SIGNAL */

void proc_handle_signal(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	struct proc *p = find_id(id);
	const uint8_t *val;
	uint32_t vlen, signo = 0;
	uint16_t tag;
	int r, have = 0;
	struct tlv t;
	char e[128];

	tlv_begin(&t, payload, n);
	while ((r = tlv_next(&t, &tag, &val, &vlen)) > 0) {
		if (tag != A_SIGNO)
			continue;
		if (vlen != 4) {
			conn_send_error(c, id, EINVAL, "SIGNAL: SIGNO must be 4 bytes, not %u", vlen);
			return;
		}
		signo = rd32(val);
		have = 1;
	}
	if (r < 0 || !have) {
		conn_send_error(c, id, EINVAL, "SIGNAL: %s", r < 0 ? "malformed TLV payload" : "no SIGNO");
		return;
	}
	if (signo >= _NSIG) {
		conn_send_error(c, id, EINVAL, "SIGNAL: invalid signal number %u", signo);
		return;
	}
	if (!p) {
		conn_send_error(c, id, ESRCH, "SIGNAL: no process with id %u", id);
		return;
	}
	/* p is not reaped yet, so p->pid cannot have been reused. */
	log_debug("SIGNAL id=%u pid=%d signo=%u", id, (int)p->pid, signo);
	if (kill(p->pid, (int)signo) < 0)
		conn_send_error(c, id, errno, "kill: %s", errstr(errno, e, sizeof e));
}

/* ------------------------------------------------------------------ */
/* START (HOLD) and RESIZE (TERMINAL) */

void proc_handle_start(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	struct proc *p = find_id(id);
	char go = 's';

	(void)payload; /* empty; anything in it is ignored */
	(void)n;
	if (!p) {
		conn_send_error(c, id, ESRCH, "START: no process with id %u", id);
		return;
	}
	if (!p->hold || p->start_requested) {
		conn_send_error(c, id, EINVAL, "START: process id %u %s", id,
				p->hold ? "was already started" : "was not created with HOLD");
		return;
	}
	p->start_requested = 1;
	/* The pipe is empty: one byte always fits. EPIPE means the child is
	 * gone; its EXIT follows. */
	while (write(p->start_fd, &go, 1) < 0 && errno == EINTR)
		;
	close_fd(&p->start_fd);
	if (p->phase == PH_HELD)
		p->phase = PH_STARTING;
	log_debug("START id=%u pid=%d", id, (int)p->pid);
}

void proc_handle_resize(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	struct proc *p = find_id(id);
	struct winsize ws = { 0 };
	const uint8_t *val;
	uint32_t vlen;
	uint16_t tag;
	int r, have = 0;
	struct tlv t;
	char e[128];

	tlv_begin(&t, payload, n);
	while ((r = tlv_next(&t, &tag, &val, &vlen)) > 0) {
		if (tag != A_WINSIZE)
			continue;
		if (vlen != 4) {
			conn_send_error(c, id, EINVAL, "RESIZE: WINSIZE must be 4 bytes, not %u", vlen);
			return;
		}
		ws.ws_row = rd16(val);
		ws.ws_col = rd16(val + 2);
		have = 1;
	}
	if (r < 0 || !have) {
		conn_send_error(c, id, EINVAL, "RESIZE: %s", r < 0 ? "malformed TLV payload" : "no WINSIZE");
		return;
	}
	if (!p) {
		conn_send_error(c, id, ESRCH, "RESIZE: no process with id %u", id);
		return;
	}
	if (p->pty_fd < 0) {
		conn_send_error(c, id, ENOTTY, "RESIZE: process id %u has no terminal", id);
		return;
	}
	log_debug("RESIZE id=%u: %ux%u", id, ws.ws_row, ws.ws_col);
	if (ioctl(p->pty_fd, TIOCSWINSZ, &ws) < 0)
		conn_send_error(c, id, errno, "RESIZE: %s", errstr(errno, e, sizeof e));
}

/* ------------------------------------------------------------------ */
/* poll() integration */

size_t proc_max_pollfds(void)
{
	return nprocs * (4 + FDRELAY_MAX);
}

static size_t add(struct pollfd *pfd, struct proc_ref *ref, size_t i, struct proc *p,
		  int kind, int fd, short events)
{
	pfd[i].fd = fd;
	pfd[i].events = events;
	pfd[i].revents = 0;
	ref[i].id = p->id;
	ref[i].kind = kind;
	return i + 1;
}

size_t proc_pollfds(struct pollfd *pfd, struct proc_ref *ref, int read_output)
{
	size_t i = 0;

	for (struct proc *p = procs; p; p = p->next) {
		if (p->phase == PH_CREATING || p->phase == PH_STARTING) {
			if (p->status_fd >= 0)
				i = add(pfd, ref, i, p, K_STATUS, p->status_fd, POLLIN);
		} else if (p->phase == PH_RUNNING && read_output) {
			if (p->out_fd >= 0)
				i = add(pfd, ref, i, p, K_OUT, p->out_fd, POLLIN);
			if (p->err_fd >= 0)
				i = add(pfd, ref, i, p, K_ERR, p->err_fd, POLLIN);
		}
		if (p->in_fd >= 0 && !bq_empty(&p->in_q))
			i = add(pfd, ref, i, p, K_IN, p->in_fd, POLLOUT);
		if (p->phase == PH_RUNNING)
			i += fdr_pollfds(p->relay, pfd + i, ref + i, p->id, K_FD, read_output);
	}
	return i;
}

void proc_dispatch(struct conn *c, const struct pollfd *pfd, const struct proc_ref *ref, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct proc *p;

		if (!pfd[i].revents)
			continue;
		/* Earlier events may have freed the process or closed the fd. */
		p = find_id(ref[i].id);
		if (!p)
			continue;
		switch (ref[i].kind) {
		case K_STATUS:
			if ((p->phase == PH_CREATING || p->phase == PH_STARTING) &&
			    p->status_fd == pfd[i].fd)
				status_advance(c, p, read_status(p));
			break;
		case K_OUT:
			if (p->out_fd == pfd[i].fd)
				forward_output(c, p, &p->out_fd, T_STDOUT);
			break;
		case K_ERR:
			if (p->err_fd == pfd[i].fd)
				forward_output(c, p, &p->err_fd, T_STDERR);
			break;
		case K_IN:
			if (p->in_fd == pfd[i].fd)
				stdin_flush(p);
			break;
		default:
			if (ref[i].kind >= K_FD)
				fdr_dispatch(c, p->id, p->relay, (unsigned)(ref[i].kind - K_FD), pfd[i].revents);
			break;
		}
	}
}

void proc_kill_all(void)
{
	for (struct proc *p = procs; p; p = p->next) {
		kill(-p->pid, SIGKILL);
		kill(p->pid, SIGKILL);
	}
}

/* ------------------------------------------------------------------ */
/* FD_DATA (extension B) */

void proc_handle_fd_data(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	struct proc *p = find_id(id);

	if (!p) {
		conn_send_error(c, id, ESRCH, "FD_DATA: no process with id %u", id);
		return;
	}
	fdr_input(c, id, p->relay, payload, n);
}
