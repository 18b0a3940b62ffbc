/* husk guest agent: PID 1 of the microVM (or, with --test-fd, a host process
 * speaking the protocol on an inherited socket). Start-up and main loop. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "boot.h"
#include "cgroup.h"
#include "log.h"
#include "proc.h"
#include "proto.h"
#include "setup.h"
#include "container.h"
#include "procfs.h"

/* Stop reading process output while this much is queued for the host. */
#define OUT_HIGH_WATER (1u << 20)
/* Stop reading host messages while this much stdin waits for processes. */
#define STDIN_HIGH_WATER (4u << 20)
/* Bytes read from the host per loop iteration, for fairness. */
#define READ_BUDGET (1u << 20)
/* How long POWEROFF waits for queued messages to reach the host. */
#define POWEROFF_FLUSH_MS 2000

struct agent_cfg cfg = {
	.fs_tag = "rootfs",
	.port = 1024,
	.devnull_fd = -1,
};

static int poweroff_requested;

static const char *type_name(uint16_t t)
{
	static const char *const names[] = {
		"?", "HELLO", "RUN", "STARTED", "STDOUT", "STDERR",
		"STDIN", "EXIT", "SIGNAL", "POWEROFF", "ERROR", "CREATED",
		"START", "SETUP", "SETUP_DONE", "RESIZE", "PS", "PS_LIST", "FD_DATA",
	};
	return t < sizeof names / sizeof names[0] ? names[t] : "?";
}

static int on_message(struct conn *c, const struct msg *m)
{
	log_debug("recv %s (type %u) id=%u len=%u", type_name(m->type), m->type, m->id, m->len);
	switch (m->type) {
	case T_RUN:
		if (setup_before_run(c, m->id) == 0)
			proc_handle_run(c, m->id, m->payload, m->len);
		break;
	case T_START:
		proc_handle_start(c, m->id, m->payload, m->len);
		break;
	case T_SETUP:
		setup_handle(c, m->id, m->payload, m->len);
		break;
	case T_RESIZE:
		proc_handle_resize(c, m->id, m->payload, m->len);
		break;
	case T_STDIN:
		proc_handle_stdin(c, m->id, m->payload, m->len);
		break;
	case T_SIGNAL:
		proc_handle_signal(c, m->id, m->payload, m->len);
		break;
	case T_PS:
		ctr_handle_ps(c, m->id, m->payload, m->len);
		break;
	case T_FD_DATA:
		proc_handle_fd_data(c, m->id, m->payload, m->len);
		break;
	case T_POWEROFF:
		poweroff_requested = 1;
		break;
	case T_UPDATE:
		cgroup_handle_update(c, m->id, m->payload, m->len);
		break;
	case T_STATS:
		cgroup_handle_stats(c, m->id, m->payload, m->len);
		break;
	case T_PROCFS:
		procfs_handle(c, m->id, m->payload, m->len);
		break;
	default:
		conn_send_error(c, m->id, ENOSYS, "unknown message type %u", m->type);
		break;
	}
	/* Stop reading when powering off, or when stdin piles up (flow control:
	 * the host's writes block until processes consume their input). */
	return poweroff_requested || proc_stdin_pending() >= STDIN_HIGH_WATER;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Best effort: push queued messages to the host for up to ms milliseconds. */
static void flush_for(struct conn *c, int ms)
{
	long long deadline = now_ms() + ms;

	while (!bq_empty(&c->out)) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		long long left = deadline - now_ms();
		if (conn_flush(c) < 0 || bq_empty(&c->out) || left <= 0)
			return;
		if (poll(&p, 1, (int)left) < 0 && errno != EINTR)
			return;
	}
}

static _Noreturn void connection_lost(int eof)
{
	char e[128];
	if (eof && cfg.test_mode)
		log_debug("connection to the host closed; exiting");
	else if (eof)
		log_info("connection to the host closed; powering off");
	else
		log_info("connection to the host failed: %s; powering off", errstr(errno, e, sizeof e));
	system_poweroff(cfg.test_mode && eof ? 0 : 1);
}

static void send_hello(struct conn *c)
{
	struct buf b;
	buf_init(&b);
	tlv_put_u32(&b, A_VERSION, PROTOCOL_VERSION);
	tlv_put_str(&b, A_AGENT, AGENT_NAME);
	tlv_put_u32(&b, A_FEATURES, FEATURE_EXTENSION_A | FEATURE_EXTENSION_B | FEATURE_CGROUP | FEATURE_NET |
					    FEATURE_PROCFS | FEATURE_NET_RTO_MIN | FEATURE_DEFER_ROOT);
	conn_send(c, T_HELLO, 0, b.data, b.len);
	buf_free(&b);
	log_debug("send HELLO");
}

static _Noreturn void main_loop(struct conn *c, int sfd)
{
	struct pollfd *pfd = NULL;
	struct proc_ref *ref = NULL;
	size_t cap = 0;

	for (;;) {
		if (conn_flush(c) < 0)
			connection_lost(0);

		size_t need = 2 + proc_max_pollfds();
		if (need > cap) {
			cap = need * 2;
			pfd = xrealloc(pfd, cap * sizeof *pfd);
			ref = xrealloc(ref, cap * sizeof *ref);
		}
		int read_host = proc_stdin_pending() < STDIN_HIGH_WATER;
		pfd[0] = (struct pollfd){
			.fd = c->fd,
			.events = (short)((read_host ? POLLIN : 0) | (bq_empty(&c->out) ? 0 : POLLOUT)),
		};
		pfd[1] = (struct pollfd){ .fd = sfd, .events = POLLIN };
		size_t n = 2 + proc_pollfds(pfd + 2, ref + 2, c->out.bytes < OUT_HIGH_WATER);

		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			fatal("poll: %s", strerror(errno));
		}

		/* Output first, then exits (which drain what is left), then requests. */
		proc_dispatch(c, pfd + 2, ref + 2, n - 2);

		if (pfd[1].revents) {
			struct signalfd_siginfo si[16];
			while (read(sfd, si, sizeof si) > 0)
				;
			proc_reap(c);
		}

		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			int r = conn_read(c, on_message, READ_BUDGET);
			if (r > 0)
				connection_lost(1);
			if (r < 0)
				connection_lost(0);
		} else if (pfd[0].revents & POLLNVAL) {
			fatal("host connection fd is not valid");
		}

		if (poweroff_requested) {
			log_debug("POWEROFF requested");
			flush_for(c, POWEROFF_FLUSH_MS);
			system_poweroff(0);
		}
	}
}

static _Noreturn void usage(void)
{
	fprintf(stderr,
		"usage: husk-agent            (as PID 1 of a husk microVM)\n"
		"       husk-agent --test-fd N [--debug]\n"
		"  --test-fd N  speak the agent protocol on the connected socket N: no\n"
		"               mounts, no chroot, POWEROFF exits 0 (for host tests)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	int test_fd = -1;
	sigset_t mask;
	struct conn conn;
	char e[128];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--test-fd") == 0 && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);
			if (*end || end == argv[i] || v < 0 || v > 1 << 20)
				usage();
			test_fd = (int)v;
		} else if (strcmp(argv[i], "--debug") == 0) {
			cfg.debug = 1;
		} else if (getpid() != 1) {
			usage();
		}
		/* As PID 1, ignore stray arguments the kernel may pass. */
	}
	if (test_fd < 0 && getpid() != 1)
		usage();
	cfg.test_mode = test_fd >= 0;

	/* SIGCHLD arrives through a signalfd; broken pipes are errors, not signals. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (cfg.test_mode) {
		if (fcntl(test_fd, F_GETFD) < 0)
			usage();
		boot_std_fds();
		/* Reap orphans like PID 1 does. */
		prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
		log_debug("%s in test mode on fd %d", AGENT_NAME, test_fd);
	} else {
		boot_early();
		boot_std_fds();
		boot_loopback();
		if (cfg.bench) {
			/* Boot baseline without husk's devices: the same kernel and init, no virtio-fs or vsock. */
			log_info("ready");
			system_poweroff(0);
		}
	}

	cfg.devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (cfg.devnull_fd < 0)
		fatal("open /dev/null: %s", errstr(errno, e, sizeof e));
	int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0)
		fatal("signalfd: %s", errstr(errno, e, sizeof e));

	int fd = cfg.test_mode ? test_fd : boot_connect();
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	conn_init(&conn, fd);

	if (!cfg.test_mode) {
		/* Connected first, so a failure here reaches the host as an ERROR.
		 * husk.defer_root: mounted later (boot_ensure_root), the host sets
		 * the virtio-fs directories only when it hands out a container. */
		char err[512];
		int r = cfg.defer_root ? 0 : boot_rootfs(err, sizeof err);
		if (r < 0) {
			conn_send_error(&conn, 0, -r, "%s", err);
			flush_for(&conn, POWEROFF_FLUSH_MS);
			fatal("%s", err);
		}
		cgroup_init();
	}

	send_hello(&conn);
	main_loop(&conn, sfd);
}
