/* PID 1 set-up: console, mounts, kernel command line, loopback, vsock, power-off. */
#include "boot.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"
#include "proc.h"

/* <linux/vm_sockets.h> is not part of musl; this is the kernel ABI. */
struct sockaddr_vm_abi {
	sa_family_t svm_family;
	unsigned short svm_reserved1;
	unsigned int svm_port;
	unsigned int svm_cid;
	unsigned char svm_flags;
	unsigned char svm_zero[3];
};
_Static_assert(sizeof(struct sockaddr_vm_abi) == 16, "sockaddr_vm is 16 bytes");
#define VMADDR_CID_HOST_ABI 2u

#ifdef HUSK_TEST_HOOKS
/* Only in the namespace test build (make nstest; never in the initramfs):
 * a unix socket instead of vsock, a bind mount instead of virtio-fs, and a
 * file instead of /dev/console, so PID 1 mode can run in a PID namespace. */
#include <sys/un.h>
static const char *hook(const char *name)
{
	return getenv(name);
}
#else
static const char *hook(const char *name)
{
	(void)name;
	return NULL;
}
#endif

const char *boot_hook(const char *name)
{
	return hook(name);
}

#define CONNECT_TIMEOUT_MS 10000
#define CONNECT_RETRY_MS 10

static int mnt(const char *src, const char *target, const char *type,
	       unsigned long flags, const char *data)
{
	char e[128];
	if (mount(src, target, type, flags, data) < 0) {
		int err = errno;
		log_info("mount %s on %s (%s): %s", src, target, type, errstr(err, e, sizeof e));
		return -err;
	}
	log_debug("mounted %s on %s (%s%s%s)", src, target, type, data ? ", " : "", data ? data : "");
	return 0;
}

static void mkdir_if_missing(const char *path)
{
	char e[128];
	if (mkdir(path, 0755) < 0 && errno != EEXIST)
		log_info("mkdir %s: %s", path, errstr(errno, e, sizeof e));
}

void boot_std_fds(void)
{
	for (int fd = 0; fd < 3; fd++) {
		if (fcntl(fd, F_GETFD) >= 0)
			continue;
		int n = open("/dev/null", O_RDWR);
		if (n >= 0 && n != fd) {
			dup2(n, fd);
			close(n);
		}
	}
}

static void setup_console(void)
{
	const char *file = hook("HUSK_TEST_CONSOLE");
	int fd = file ? open(file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
		      : open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0)
		fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return;
	for (int i = 0; i < 3; i++)
		if (fd != i)
			dup2(fd, i);
	if (fd > 2)
		close(fd);
	else
		fcntl(fd, F_SETFD, 0);
}

static void parse_cmdline(void)
{
	char line[8192];
	ssize_t n = 0;
	const char *fake = hook("HUSK_TEST_CMDLINE");
	int fd = fake ? -1 : open("/proc/cmdline", O_RDONLY | O_CLOEXEC);

	if (fake) {
		snprintf(line, sizeof line, "%s", fake);
	} else if (fd < 0) {
		log_info("cannot open /proc/cmdline; using defaults");
		return;
	} else {
		while (n < (ssize_t)sizeof line - 1) {
			ssize_t r = read(fd, line + n, sizeof line - 1 - (size_t)n);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				break;
			n += r;
		}
		close(fd);
		line[n] = '\0';
	}

	for (char *save = NULL, *tok = strtok_r(line, " \t\n", &save); tok;
	     tok = strtok_r(NULL, " \t\n", &save)) {
		if (strncmp(tok, "husk.fs=", 8) == 0) {
			const char *v = tok + 8;
			if (*v && strlen(v) < sizeof cfg.fs_tag)
				snprintf(cfg.fs_tag, sizeof cfg.fs_tag, "%s", v);
			else
				log_info("ignoring invalid %s", tok);
		} else if (strncmp(tok, "husk.port=", 10) == 0) {
			char *end;
			unsigned long long v;
			errno = 0;
			v = strtoull(tok + 10, &end, 10);
			if (errno || end == tok + 10 || *end || v == 0 || v >= 0xffffffffull)
				log_info("ignoring invalid %s", tok);
			else
				cfg.port = (unsigned)v;
		} else if (strncmp(tok, "husk.binds=", 11) == 0) {
			const char *v = tok + 11;
			if (*v && strlen(v) < sizeof cfg.binds_tag)
				snprintf(cfg.binds_tag, sizeof cfg.binds_tag, "%s", v);
			else
				log_info("ignoring invalid %s", tok);
		} else if (strcmp(tok, "husk.bench") == 0) {
			cfg.bench = 1;
		} else if (strcmp(tok, "husk.defer_root") == 0) {
			cfg.defer_root = 1;
		} else if (strcmp(tok, "husk.debug") == 0 ||
			   (strncmp(tok, "husk.debug=", 11) == 0 && strcmp(tok + 11, "0") != 0)) {
			cfg.debug = 1;
		}
	}
}

static void dev_symlink(const char *target, const char *link)
{
	char e[128];
	if (symlink(target, link) < 0 && errno != EEXIST)
		log_info("symlink %s -> %s: %s", link, target, errstr(errno, e, sizeof e));
}

void boot_early(void)
{
	int dev_err;

	mkdir_if_missing("/dev");
	dev_err = mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") < 0 ? errno : 0;
	setup_console();
	if (dev_err && dev_err != EBUSY)
		log_info("mount devtmpfs on /dev: %s", strerror(dev_err));

	mkdir_if_missing("/proc");
	mnt("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	parse_cmdline(); /* from here on, debug logging works */
	log_debug("%s starting as PID 1 (husk.fs=%s husk.port=%u)", AGENT_NAME, cfg.fs_tag, cfg.port);
	if (!dev_err)
		log_debug("mounted devtmpfs on /dev");
	log_debug("mounted proc on /proc");

	mkdir_if_missing("/sys");
	mnt("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mkdir_if_missing("/dev/pts");
	mnt("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
	    "newinstance,ptmxmode=0666,mode=0620,gid=5");
	mkdir_if_missing("/dev/shm");
	mnt("shm", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777");
	/* devtmpfs has no /dev/fd & co (udev usually makes them). */
	dev_symlink("/proc/self/fd", "/dev/fd");
	dev_symlink("/proc/self/fd/0", "/dev/stdin");
	dev_symlink("/proc/self/fd/1", "/dev/stdout");
	dev_symlink("/proc/self/fd/2", "/dev/stderr");
	mkdir_if_missing("/tmp");
}

void boot_loopback(void)
{
	struct ifreq ifr;
	char e[128];
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	if (s < 0) {
		log_debug("loopback: socket: %s", errstr(errno, e, sizeof e));
		return;
	}
	memset(&ifr, 0, sizeof ifr);
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
		log_debug("loopback: SIOCGIFFLAGS: %s", errstr(errno, e, sizeof e));
	} else {
		ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
		if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
			log_info("loopback: SIOCSIFFLAGS: %s", errstr(errno, e, sizeof e));
		else
			log_debug("loopback interface up");
	}
	close(s);
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int boot_connect(void)
{
	struct sockaddr_vm_abi sa;
	long long start = now_ms(), last_log = start;
	unsigned attempts = 0;
	char e[128];

	memset(&sa, 0, sizeof sa);
	sa.svm_family = AF_VSOCK;
	sa.svm_cid = VMADDR_CID_HOST_ABI;
	sa.svm_port = cfg.port;

#ifdef HUSK_TEST_HOOKS
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	const char *unix_path = hook("HUSK_TEST_SOCKET");
	if (unix_path)
		snprintf(su.sun_path, sizeof su.sun_path, "%s", unix_path);
#endif
	for (;;) {
		int err, fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct sockaddr *addr = (struct sockaddr *)&sa;
		socklen_t addrlen = sizeof sa;
#ifdef HUSK_TEST_HOOKS
		if (unix_path) {
			if (fd >= 0)
				close(fd);
			fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
			addr = (struct sockaddr *)&su;
			addrlen = sizeof su;
		}
#endif
		attempts++;
		if (fd >= 0) {
			if (connect(fd, addr, addrlen) == 0) {
				log_debug("connected to host vsock port %u (attempt %u)", cfg.port, attempts);
				return fd;
			}
			err = errno;
			close(fd);
		} else {
			err = errno;
		}
		if (now_ms() - start >= CONNECT_TIMEOUT_MS)
			fatal("cannot connect to host vsock port %u after %u attempts: %s",
			      cfg.port, attempts, errstr(err, e, sizeof e));
		if (now_ms() - last_log >= 1000 || attempts == 1) {
			log_debug("connect to host vsock port %u: %s; retrying", cfg.port,
				  errstr(err, e, sizeof e));
			last_log = now_ms();
		}
		nanosleep(&(struct timespec){ .tv_nsec = CONNECT_RETRY_MS * 1000000L }, NULL);
	}
}

/* Prepares ROOTFS_DIR/rel as a mountpoint: refuses symlinks and non-dirs
 * (the image could point them anywhere in the agent's tree), creates it if
 * missing. */
static int container_mountpoint(const char *rel, char *path, size_t len)
{
	struct stat st;
	char e[128];

	snprintf(path, len, "%s/%s", ROOTFS_DIR, rel);
	if (lstat(path, &st) == 0) {
		if (!S_ISDIR(st.st_mode)) {
			log_info("%s is not a directory; not mounting it", path);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT || (mkdir(path, 0755) < 0 && errno != EEXIST)) {
		log_info("mountpoint %s: %s", path, errstr(errno, e, sizeof e));
		return -1;
	}
	return 0;
}

static void mkdir_p(const char *path)
{
	char p[256];
	snprintf(p, sizeof p, "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = '\0';
			mkdir_if_missing(p);
			*s = '/';
		}
	}
	mkdir_if_missing(p);
}

/* What boot_rootfs mounted, so that a retry after a failure (deferred root:
 * a later SETUP or RUN) mounts only what is still missing. */
static int rootfs_mounted, binds_mounted;

/* Mounts virtio-fs `tag` on `dir` (in the namespace test build: a bind of
 * the directory the hook variable names); on failure, err says so. */
static int mount_tag(const char *tag, const char *dir, const char *test_hook, char *err, size_t errlen)
{
	char e[128];
	int r = hook(test_hook) ? mnt(hook(test_hook), dir, "none", MS_BIND, NULL)
				: mnt(tag, dir, "virtiofs", 0, NULL);

	if (r < 0)
		snprintf(err, errlen, "mount virtiofs \"%s\" on %s: %s", tag, dir, errstr(-r, e, sizeof e));
	return r;
}

int boot_rootfs(char *err, size_t errlen)
{
	int r;

	if (!rootfs_mounted) {
		mkdir_if_missing(ROOTFS_DIR);
		if ((r = mount_tag(cfg.fs_tag, ROOTFS_DIR, "HUSK_TEST_ROOTFS", err, errlen)) < 0)
			return r;
		rootfs_mounted = 1;
	}
	if (cfg.binds_tag[0] && !binds_mounted) {
		/* Sources of the container's bind mounts (SETUP MOUNT type bind). */
		mkdir_p(BINDS_DIR);
		if ((r = mount_tag(cfg.binds_tag, BINDS_DIR, "HUSK_TEST_BINDS", err, errlen)) < 0)
			return r;
		binds_mounted = 1;
	}
	return 0;
}

int boot_ensure_root(char *err, size_t errlen)
{
	if (!cfg.defer_root || cfg.test_mode || (rootfs_mounted && (binds_mounted || !cfg.binds_tag[0])))
		return 0;
	log_debug("husk.defer_root: mounting the rootfs now");
	return boot_rootfs(err, errlen);
}

void boot_container_mounts(void)
{
	char path[256], e[128];

	/* Best effort: a container without /sys still runs. */
	if (container_mountpoint("proc", path, sizeof path) == 0)
		mnt("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	if (container_mountpoint("sys", path, sizeof path) == 0 &&
	    mnt("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0) {
		struct stat st;
		snprintf(path, sizeof path, "%s/sys/fs/cgroup", ROOTFS_DIR);
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (mount("cgroup2", path, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
				log_debug("mount cgroup2 on %s: %s", path, errstr(errno, e, sizeof e));
			else
				log_debug("mounted cgroup2 on %s", path);
		}
	}
	/* The agent's /dev with its /dev/pts and /dev/shm. */
	if (container_mountpoint("dev", path, sizeof path) == 0)
		mnt("/dev", path, "none", MS_BIND | MS_REC, NULL);
}

_Noreturn void system_poweroff(int code)
{
	char e[128];

	if (cfg.test_mode) {
		proc_kill_all();
		exit(code);
	}
	log_debug("powering off");
	sync();
	/* Kernel cmdline reboot=t and QEMU -no-reboot turn a reboot into exit. */
	reboot(RB_AUTOBOOT);
	log_info("reboot: %s", errstr(errno, e, sizeof e));
	reboot(RB_POWER_OFF);
	log_info("power off: %s", errstr(errno, e, sizeof e));
	/* PID 1 exiting panics the kernel; with panic=-1 that reboots too. */
	_exit(code ? code : 1);
}
