/* husk agent protocol v1 (docs/agent-protocol.md): framing, TLV payloads and
 * the buffered, non-blocking connection to the host. */
#ifndef HUSK_PROTO_H
#define HUSK_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "bufq.h"
#include "log.h"

#define HDR_LEN 12u
#define MAX_PAYLOAD 1048576u

enum msg_type {
	T_HELLO = 1,
	T_RUN = 2,
	T_STARTED = 3,
	T_STDOUT = 4,
	T_STDERR = 5,
	T_STDIN = 6,
	T_EXIT = 7,
	T_SIGNAL = 8,
	T_POWEROFF = 9,
	T_ERROR = 10,
	/* extension A */
	T_CREATED = 11,
	T_START = 12,
	T_SETUP = 13,
	T_SETUP_DONE = 14,
	T_RESIZE = 15,
	/* extension B: exec, ps, extra fds */
	T_PS = 16,
	T_PS_LIST = 17,
	T_FD_DATA = 18,
	/* extension C: the container's cgroup */
	T_UPDATE = 20,
	T_STATS = 21,
	T_RESULT = 22,
	/* extension D: the container's /proc files */
	T_PROCFS = 24,
};

enum tlv_tag {
	A_VERSION = 1,
	A_AGENT = 2,
	A_ARG = 3,
	A_ENV = 4,
	A_CWD = 5,
	A_PID = 6,
	A_STATUS = 7,
	A_WAITSTATUS = 8,
	A_SIGNO = 9,
	A_ERRNO = 10,
	A_MESSAGE = 11,
	A_STDIN = 12,
	/* extension A: RUN */
	A_TERMINAL = 13,
	A_WINSIZE = 14,
	A_UID = 15,
	A_GID = 16,
	A_GIDS = 17,
	A_UMASK = 18,
	A_RLIMIT = 19,
	A_CAPS = 20,
	A_NO_NEW_PRIVS = 21,
	A_OOM_SCORE_ADJ = 22,
	A_SECCOMP = 23,
	A_SECCOMP_FLAGS = 24,
	A_HOLD = 25,
	/* extension A: SETUP */
	A_HOSTNAME = 26,
	A_DOMAINNAME = 27,
	A_MOUNT = 28,
	A_MASKED = 29,
	A_READONLY = 30,
	A_SYSCTL = 31,
	A_ROOTFS_RO = 32,
	A_DEVICE = 33,
	/* HELLO */
	A_FEATURES = 40,
	/* extension B */
	A_EXTRA_FDS = 41,
	A_PSENTRY = 42,
	A_CPID = 43,
	/* extension C: SETUP/UPDATE resources, STATS results */
	A_CG_MEMORY_MAX = 60,
	A_CG_MEMORY_SWAP_MAX = 61,
	A_CG_MEMORY_LOW = 62,
	A_CG_CPU_MAX = 63,
	A_CG_CPU_WEIGHT = 64,
	A_CG_PIDS_MAX = 65,
	A_CG_FILE = 66,
	A_CG_NAMESPACE = 67,
	/* extension D: RESULT of PROCFS */
	A_PROC_FILE = 68,
	/* networking (SETUP) */
	A_NET_LINK = 50,
	A_NET_ADDR = 51,
	A_NET_ROUTE = 52,
	A_NET_RTO_MIN = 90,
};

/* FEATURES bits in HELLO. */
#define FEATURE_EXTENSION_A 1u
#define FEATURE_EXTENSION_B 2u
#define FEATURE_CGROUP 4u
#define FEATURE_NET 8u
#define FEATURE_PROCFS 16u
#define FEATURE_NET_RTO_MIN 32u
#define FEATURE_DEFER_ROOT 64u /* understands husk.defer_root */

/* ---- TLV ---- */

struct tlv {
	const uint8_t *p;
	size_t left;
};

void tlv_begin(struct tlv *t, const uint8_t *p, size_t n);
/* 1: tag, val and len set; 0: end of payload; -1: attribute overruns payload. */
int tlv_next(struct tlv *t, uint16_t *tag, const uint8_t **val, uint32_t *len);
/* A string value is valid if it holds no NUL byte. */
int tlv_str_ok(const uint8_t *val, uint32_t len);

void tlv_put_u32(struct buf *b, uint16_t tag, uint32_t v);
void tlv_put_str(struct buf *b, uint16_t tag, const char *s);

/* ---- connection ---- */

struct msg {
	uint16_t type, flags;
	uint32_t id;
	uint32_t len;
	const uint8_t *payload; /* NULL when len == 0 */
};

struct conn {
	int fd;
	/* input state machine */
	int state;
	uint8_t hdr[HDR_LEN];
	size_t hdr_got;
	struct msg cur;
	uint8_t *body;
	size_t body_got;
	size_t discard_left;
	/* output */
	struct bq out;
};

/* Returns non-zero to stop reading (conn_read returns after this message). */
typedef int (*msg_handler)(struct conn *c, const struct msg *m);

void conn_init(struct conn *c, int fd);
/* Queues one message (payload <= MAX_PAYLOAD). */
void conn_send(struct conn *c, uint16_t type, uint32_t id, const void *payload, size_t len);
void conn_send_error(struct conn *c, uint32_t id, int err, const char *fmt, ...) PRINTF_LIKE(4, 5);
/* Writes what the socket takes now: 0 ok (possibly data left), -1 error. */
int conn_flush(struct conn *c);
/* Reads and dispatches messages until the socket would block or about
 * `budget` bytes were read. 0: ok, 1: EOF, -1: error (errno set). */
int conn_read(struct conn *c, msg_handler h, size_t budget);

#endif
