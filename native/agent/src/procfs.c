/* PROCFS (extension D): the /proc files of the container's processes, as
 * the container sees them, for the host's /proc view (`podman top` reads
 * /proc in the mount namespace of the container's host pid, the VMM).
 *
 * The files come from a proc instance of the container's pid namespace,
 * mounted on first use by a child forked into that namespace: pids,
 * parent pids and NSpid read as inside the container, and nothing of the
 * agent's namespace shows. The mount goes when the container's init does. */
#include "procfs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"
#include "bufq.h"
#include "container.h"
#include "log.h"
#include "proto.h"

#define PROC_DIR "/run/husk/ctrproc"
#define FILE_MAX 4096          /* bytes of one file sent (status is ~1.4 KiB) */
/* Room kept for one process's three files when deciding to list another. */
#define PER_PROCESS_MAX (3 * (FILE_MAX + 32))

static int mounted;

/* Mounts the container's proc on PROC_DIR from a child in its namespace. */
static int mount_container_proc(char *err, size_t errlen)
{
	char e[96];
	pid_t pid;
	int status, r;

	if (mounted)
		return 0;
	if (!ctr_is_live()) {
		snprintf(err, errlen, "container not running");
		errno = ESRCH;
		return -1;
	}
	mkdir("/run", 0755);
	mkdir("/run/husk", 0755);
	if (mkdir(PROC_DIR, 0555) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "mkdir %s: %s", PROC_DIR, errstr(errno, e, sizeof e));
		return -1;
	}
	if ((r = ctr_enter_live()) < 0) {
		snprintf(err, errlen, "container not running");
		errno = -r;
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		/* A proc mount shows the pid namespace of its mounter: this child's. */
		_exit(mount("proc", PROC_DIR, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) < 0 ? 1 : 0);
	}
	r = errno;
	ctr_leave(0, 0);
	if (pid < 0) {
		snprintf(err, errlen, "fork: %s", errstr(r, e, sizeof e));
		errno = r;
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "mounting the container's proc failed");
		errno = EIO;
		return -1;
	}
	mounted = 1;
	log_debug("container proc mounted on %s", PROC_DIR);
	return 0;
}

void procfs_container_gone(void)
{
	if (!mounted)
		return;
	if (umount2(PROC_DIR, MNT_DETACH) < 0)
		log_debug("umount %s: %s", PROC_DIR, strerror(errno));
	mounted = 0;
}

/* One PROC_FILE attribute: u32 pid, name, NUL, contents. */
static void put_attr(struct buf *b, uint32_t pid, const char *name, const char *data, size_t len)
{
	size_t nlen = strlen(name);

	buf_put_u16(b, A_PROC_FILE);
	buf_put_u32(b, (uint32_t)(4 + nlen + 1 + len));
	buf_put_u32(b, pid);
	buf_put(b, name, nlen + 1);
	buf_put(b, data, len);
}

/* A file's contents (at most FILE_MAX); nothing when it is gone: the host
 * lists what remains. */
static void put_file(struct buf *b, uint32_t pid, const char *name, const char *path)
{
	char data[FILE_MAX];
	size_t len = 0;
	ssize_t r;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

	if (fd < 0)
		return;
	while (len < sizeof data && (r = read(fd, data + len, sizeof data - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		len += (size_t)r;
	}
	close(fd);
	put_attr(b, pid, name, data, len);
}

static void put_link(struct buf *b, uint32_t pid, const char *name, const char *path)
{
	char link[128];
	ssize_t n = readlink(path, link, sizeof link);

	if (n > 0 && (size_t)n < sizeof link)
		put_attr(b, pid, name, link, (size_t)n);
}

void procfs_handle(struct conn *c, uint32_t id, const uint8_t *p, size_t n)
{
	char err[160], path[96];
	struct dirent *e;
	struct buf b;
	DIR *d;
	int first = 1;

	(void)p;
	(void)n;
	if (mount_container_proc(err, sizeof err) < 0) {
		conn_send_error(c, id, errno ? errno : EIO, "PROCFS: %s", err);
		return;
	}
	if (!(d = opendir(PROC_DIR))) {
		conn_send_error(c, id, errno, "PROCFS: %s", strerror(errno));
		return;
	}
	buf_init(&b);
	put_file(&b, 0, "stat", PROC_DIR "/stat");
	put_file(&b, 0, "uptime", PROC_DIR "/uptime");
	while ((e = readdir(d)) && b.len + PER_PROCESS_MAX < MAX_PAYLOAD) {
		char *end;
		unsigned long pid = strtoul(e->d_name, &end, 10);
		if (*end || end == e->d_name || pid == 0 || pid > 0x3fffffff)
			continue;
		if (first) {
			/* Every process of the container shares this namespace. */
			snprintf(path, sizeof path, PROC_DIR "/%lu/ns/pid", pid);
			put_link(&b, 0, "ns/pid", path);
			first = 0;
		}
		snprintf(path, sizeof path, PROC_DIR "/%lu/stat", pid);
		put_file(&b, (uint32_t)pid, "stat", path);
		snprintf(path, sizeof path, PROC_DIR "/%lu/status", pid);
		put_file(&b, (uint32_t)pid, "status", path);
		snprintf(path, sizeof path, PROC_DIR "/%lu/cmdline", pid);
		put_file(&b, (uint32_t)pid, "cmdline", path);
	}
	closedir(d);
	conn_send(c, T_RESULT, id, b.data, b.len);
	buf_free(&b);
}
