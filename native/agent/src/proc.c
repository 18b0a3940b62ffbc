/* Container processes: spawning, output forwarding, stdin, signals, exit. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "bufq.h"
#include "log.h"
#include "proto.h"

#define READ_CHUNK 65536u           /* max payload of one STDOUT/STDERR */
#define DRAIN_MAX (2u << 20)        /* max bytes read from a pipe after exit */
#define STATUS_MAX 4000u            /* exec error report: i32 errno + text */

enum { K_STATUS, K_OUT, K_ERR, K_IN };

enum stdin_state {
	IN_NONE,    /* RUN without STDIN=1: stdin is /dev/null */
	IN_OPEN,    /* accepting STDIN messages */
	IN_CLOSED,  /* host sent the zero-length STDIN (fd closes once drained) */
	IN_BROKEN,  /* the process closed its end; further input is dropped */
};

struct proc {
	struct proc *next;
	uint32_t id;
	pid_t pid;
	int starting;           /* exec not yet confirmed: STARTED not sent */
	int status_fd;          /* CLOEXEC pipe: EOF without data = exec ok */
	size_t status_len;
	char status[STATUS_MAX];
	int out_fd, err_fd, in_fd;
	enum stdin_state in_state;
	struct bq in_q;
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
	bq_clear(&p->in_q);
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

struct spawn {
	char **argv, **envp;
	const char *cwd;        /* NULL: "/" */
	const char *path;       /* PATH of envp, NULL: DEFAULT_PATH */
	int in_fd, out_fd, err_fd, status_fd;
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

static _Noreturn void child(const struct spawn *s)
{
	char q[1200], e[128];
	const char *name = s->argv[0];
	int sfd = s->status_fd;
	sigset_t none;

	/* stdio: all source fds are > 2 because fds 0-2 are always open in the agent. */
	if (dup2(s->in_fd, 0) < 0 || dup2(s->out_fd, 1) < 0 || dup2(s->err_fd, 2) < 0)
		child_fail(sfd, errno, "setting up stdio: %s", errstr(errno, e, sizeof e));
	close_from(3, (unsigned)sfd - 1);
	close_from((unsigned)sfd + 1, ~0u);

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

	if (!cfg.test_mode && (chdir(ROOTFS_DIR) < 0 || chroot(".") < 0))
		child_fail(sfd, errno, "chroot to %s: %s", ROOTFS_DIR, errstr(errno, e, sizeof e));
	if (chdir(s->cwd ? s->cwd : "/") < 0)
		child_fail(sfd, errno, "chdir to cwd (%s) set in config.json failed: %s",
			   quote(q, sizeof q, s->cwd ? s->cwd : "/"), errstr(errno, e, sizeof e));

	if (name[0] == '\0')
		child_fail(sfd, ENOENT, "exec: \"\": executable file not found in $PATH");
	if (strchr(name, '/')) {
		execve(name, s->argv, s->envp);
		child_fail(sfd, errno, "exec: %s: %s", quote(q, sizeof q, name),
			   errstr(errno, e, sizeof e));
	}

	/* Like Go's exec.LookPath (which runc uses): the first PATH entry that is
	 * an executable non-directory wins; an empty entry means ".". */
	size_t nlen = strlen(name);
	const char *dir = s->path ? s->path : DEFAULT_PATH;
	for (;;) {
		const char *end = strchrnul(dir, ':');
		size_t dlen = (size_t)(end - dir);
		char full[4096];
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
				execve(full, s->argv, s->envp);
				child_fail(sfd, errno, "exec: %s: %s", quote(q, sizeof q, full),
					   errstr(errno, e, sizeof e));
			}
		}
		if (*end == '\0')
			break;
		dir = end + 1;
	}
	child_fail(sfd, ENOENT, "exec: %s: executable file not found in $PATH",
		   quote(q, sizeof q, name));
}

/* ------------------------------------------------------------------ */
/* RUN */

static void close_pair(int p[2])
{
	close_fd(&p[0]);
	close_fd(&p[1]);
}

void proc_handle_run(struct conn *c, uint32_t id, const uint8_t *payload, size_t n)
{
	size_t nargs = 0, nenv = 0, strbytes = 0;
	const uint8_t *cwd = NULL, *val;
	uint32_t cwdlen = 0, vlen;
	uint16_t tag;
	int want_stdin = 0, r;
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

	/* Pass 1: validate and size. */
	tlv_begin(&t, payload, n);
	while ((r = tlv_next(&t, &tag, &val, &vlen)) > 0) {
		switch (tag) {
		case A_ARG:
		case A_ENV:
		case A_CWD:
			if (!tlv_str_ok(val, vlen)) {
				conn_send_error(c, id, EINVAL, "RUN: %s contains a NUL byte",
						tag == A_ARG ? "ARG" : tag == A_ENV ? "ENV" : "CWD");
				return;
			}
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
			if (vlen != 1) {
				conn_send_error(c, id, EINVAL, "RUN: STDIN must be 1 byte, not %u", vlen);
				return;
			}
			want_stdin = val[0] != 0;
			break;
		default:
			break; /* unknown or irrelevant tags are ignored */
		}
	}
	if (r < 0) {
		conn_send_error(c, id, EINVAL, "RUN: malformed TLV payload");
		return;
	}
	if (nargs == 0) {
		conn_send_error(c, id, EINVAL, "RUN without ARG");
		return;
	}
	if (cwd && (cwdlen == 0 || cwd[0] != '/')) {
		conn_send_error(c, id, EINVAL, "RUN: CWD must be an absolute path");
		return;
	}

	/* Pass 2: copy into NUL-terminated strings. */
	char **argv = xcalloc(nargs + 1, sizeof *argv);
	char **envp = xcalloc(nenv + 1, sizeof *envp);
	char *strs = xmalloc(strbytes), *sp = strs;
	const char *path = NULL, *cwdstr = NULL;
	size_t ai = 0, ei = 0;

	tlv_begin(&t, payload, n);
	while (tlv_next(&t, &tag, &val, &vlen) > 0) {
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
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 ||
	    pipe2(stp, O_CLOEXEC) < 0 || (want_stdin && pipe2(inp, O_CLOEXEC) < 0)) {
		int err = errno;
		close_pair(outp);
		close_pair(errp);
		close_pair(stp);
		close_pair(inp);
		conn_send_error(c, id, err, "pipe: %s", errstr(err, e, sizeof e));
		goto out;
	}

	struct spawn s = {
		.argv = argv, .envp = envp, .cwd = cwdstr, .path = path,
		.in_fd = want_stdin ? inp[0] : cfg.devnull_fd,
		.out_fd = outp[1], .err_fd = errp[1], .status_fd = stp[1],
	};
	pid_t pid = fork();
	if (pid == 0)
		child(&s);
	int fork_err = errno;
	close_fd(&outp[1]);
	close_fd(&errp[1]);
	close_fd(&stp[1]);
	close_fd(&inp[0]);
	if (pid < 0) {
		close_pair(outp);
		close_pair(errp);
		close_pair(stp);
		close_pair(inp);
		conn_send_error(c, id, fork_err, "fork: %s", errstr(fork_err, e, sizeof e));
		goto out;
	}

	struct proc *p = xcalloc(1, sizeof *p);
	p->id = id;
	p->pid = pid;
	p->starting = 1;
	p->status_fd = stp[0];
	p->out_fd = outp[0];
	p->err_fd = errp[0];
	p->in_fd = inp[1];
	p->in_state = want_stdin ? IN_OPEN : IN_NONE;
	bq_init(&p->in_q);
	set_nonblock(p->status_fd);
	set_nonblock(p->out_fd);
	set_nonblock(p->err_fd);
	if (p->in_fd >= 0)
		set_nonblock(p->in_fd);
	/* Append, so poll order follows RUN order. */
	struct proc **pp = &procs;
	while (*pp)
		pp = &(*pp)->next;
	*pp = p;
	nprocs++;
	log_debug("RUN id=%u: pid %d, argv[0]=%s, %zu args, %zu env, cwd=%s%s", id, (int)pid,
		  argv[0], nargs, nenv, cwdstr ? cwdstr : "/", want_stdin ? ", stdin pipe" : "");
out:
	free(argv);
	free(envp);
	free(strs);
}

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
	p->starting = 0;
	log_debug("send STARTED id=%u pid=%d", p->id, (int)p->pid);
	send_u32_msg(c, T_STARTED, p->id, A_PID, (uint32_t)p->pid);
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

	if (p->starting) {
		/* The child is gone, so all it wrote is in the pipe. */
		read_status(p);
		if (exec_outcome(c, p) < 0)
			return;
	}
	drain_output(c, p, &p->out_fd, T_STDOUT);
	drain_output(c, p, &p->err_fd, T_STDERR);

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
		total += p->in_q.bytes;
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
/* poll() integration */

size_t proc_max_pollfds(void)
{
	return nprocs * 4;
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
		if (p->starting) {
			if (p->status_fd >= 0)
				i = add(pfd, ref, i, p, K_STATUS, p->status_fd, POLLIN);
		} else if (read_output) {
			if (p->out_fd >= 0)
				i = add(pfd, ref, i, p, K_OUT, p->out_fd, POLLIN);
			if (p->err_fd >= 0)
				i = add(pfd, ref, i, p, K_ERR, p->err_fd, POLLIN);
		}
		if (p->in_fd >= 0 && !bq_empty(&p->in_q))
			i = add(pfd, ref, i, p, K_IN, p->in_fd, POLLOUT);
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
			if (p->starting && p->status_fd == pfd[i].fd && read_status(p))
				exec_outcome(c, p);
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
