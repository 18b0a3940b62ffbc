/* SETUP (extension A): hostname, mounts, masked and read-only paths,
 * sysctls, device nodes and a read-only root, applied to the container rootfs
 * in the guest; the container's /dev/console. */
#include "setup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "agent.h"
#include "boot.h"
#include "cgroup.h"
#include "log.h"
#include "net.h"
#include "proto.h"

/* Kernel ABI values musl may not define. */
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef MS_LAZYTIME
#define MS_LAZYTIME (1 << 25)
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442 /* the same on every architecture */
#endif
#define MOUNT_ATTR_RDONLY_ABI 0x1ull
struct mount_attr_abi {
	uint64_t attr_set, attr_clr, propagation, userns_fd;
};

/* mount(2) flags a MOUNT record may carry. Propagation belongs in its own
 * field; MS_MOVE makes no sense for a new mount. */
#define MOUNT_FLAGS_OK                                                                      \
	(MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_SYNCHRONOUS | MS_REMOUNT |       \
	 MS_MANDLOCK | MS_DIRSYNC | MS_NOSYMFOLLOW | MS_NOATIME | MS_NODIRATIME | MS_BIND | \
	 MS_REC | MS_SILENT | MS_RELATIME | MS_STRICTATIME | MS_LAZYTIME)
#define PROPAGATION_KINDS (MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE)

#define MAX_LINKS 255
#define HOSTNAME_MAX 64

static enum { S_NONE, S_DONE, S_FAILED } state;
static int run_seen;
static int console_pending; /* the next RUN is the first after SETUP */
static int init_pending;    /* the same, for setup_take_init() */
static uint8_t *setup_payload; /* the applied SETUP, for setup_init_proc() */
static size_t setup_len;

/* The first failure: errno and one-line message. */
static int fail_err;
static char fail_msg[1024];

static PRINTF_LIKE(2, 3) int fail(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(fail_msg, sizeof fail_msg, fmt, ap);
	va_end(ap);
	fail_err = err > 0 ? err : EIO;
	return -1;
}

static const char *es(int err)
{
	static char e[128];
	return errstr(err, e, sizeof e);
}

/* ------------------------------------------------------------------ */
/* Paths inside the rootfs */

int root_resolve(const char *root, const char *path, char *out, size_t outlen)
{
	char rem[2 * PATH_MAX], tmp[2 * PATH_MAX], link[PATH_MAX];
	size_t rootlen = strlen(root), rlen;
	int links = 0;
	char *p = rem;

	while (rootlen > 0 && root[rootlen - 1] == '/')
		rootlen--; /* "/" is the empty prefix */
	if (rootlen + 2 > outlen || strlen(path) >= sizeof rem)
		return -ENAMETOOLONG;
	memcpy(out, root, rootlen);
	out[rootlen] = '\0';
	rlen = rootlen;
	strcpy(rem, path);

	for (;;) {
		struct stat st;
		char *end, *next;
		size_t clen, newlen;

		while (*p == '/')
			p++;
		if (!*p)
			break;
		end = strchrnul(p, '/');
		clen = (size_t)(end - p);
		next = *end ? end + 1 : end;
		if (clen == 1 && p[0] == '.') {
			p = next;
			continue;
		}
		if (clen == 2 && p[0] == '.' && p[1] == '.') {
			/* Never above the root. */
			if (rlen > rootlen) {
				rlen = (size_t)(strrchr(out + rootlen, '/') - out);
				out[rlen] = '\0';
			}
			p = next;
			continue;
		}
		newlen = rlen + 1 + clen;
		if (newlen + 1 > outlen)
			return -ENAMETOOLONG;
		out[rlen] = '/';
		memcpy(out + rlen + 1, p, clen);
		out[newlen] = '\0';
		if (lstat(out, &st) < 0) {
			if (errno != ENOENT)
				return -errno;
			/* Missing: kept as is (the caller may create it). */
			rlen = newlen;
			p = next;
			continue;
		}
		if (!S_ISLNK(st.st_mode)) {
			rlen = newlen;
			p = next;
			continue;
		}
		if (++links > MAX_LINKS)
			return -ELOOP;
		ssize_t n = readlink(out, link, sizeof link - 1);
		if (n < 0)
			return -errno;
		link[n] = '\0';
		out[rlen] = '\0'; /* drop the link itself */
		if (link[0] == '/') {
			rlen = rootlen; /* absolute targets are relative to the root */
			out[rlen] = '\0';
		}
		if ((size_t)n + 1 + strlen(next) >= sizeof tmp)
			return -ENAMETOOLONG;
		snprintf(tmp, sizeof tmp, "%s/%s", link, next);
		strcpy(rem, tmp);
		p = rem;
	}
	if (rlen == 0) {
		out[0] = '/';
		out[1] = '\0';
	}
	return 0;
}

/* Creates the missing components of resolved (root + path, from root_resolve):
 * directories, and the last one as an empty file if `file`. Existing
 * components must not be symlinks (nothing in the rootfs changes during
 * SETUP, so that would be a race with the host). */
static int make_path(char *resolved, size_t rootlen, int file)
{
	struct stat st;
	size_t len = strlen(resolved);

	for (size_t i = rootlen + 1; i <= len; i++) {
		int last = i == len;
		if (!last && resolved[i] != '/')
			continue;
		resolved[i] = '\0';
		if (lstat(resolved, &st) == 0) {
			if (S_ISLNK(st.st_mode)) {
				if (!last)
					resolved[i] = '/';
				return -ELOOP;
			}
			if (!last && !S_ISDIR(st.st_mode)) {
				resolved[i] = '/';
				return -ENOTDIR;
			}
		} else if (errno != ENOENT) {
			int err = errno;
			if (!last)
				resolved[i] = '/';
			return -err;
		} else if (last && file) {
			int fd = open(resolved, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0755);
			if (fd < 0 && errno != EEXIST)
				return -errno;
			if (fd >= 0)
				close(fd);
		} else if (mkdir(resolved, 0755) < 0 && errno != EEXIST) {
			int err = errno;
			if (!last)
				resolved[i] = '/';
			return -err;
		}
		if (!last)
			resolved[i] = '/';
	}
	return 0;
}

/* Defence in depth: the resolved path, all symlinks followed by the kernel,
 * is ROOTFS_DIR or below it. */
static int within_rootfs(const char *path)
{
	char real[PATH_MAX];
	size_t n = strlen(ROOTFS_DIR);

	if (!realpath(path, real))
		return -errno;
	if (strncmp(real, ROOTFS_DIR, n) != 0 || (real[n] != '\0' && real[n] != '/'))
		return -EXDEV;
	return 0;
}

/* Resolves a container path; with create, makes it exist (file or dir). */
static int container_path(const char *cpath, char *out, size_t len, int create, int file)
{
	int r = root_resolve(ROOTFS_DIR, cpath, out, len);
	if (r == 0 && create)
		r = make_path(out, strlen(ROOTFS_DIR), file);
	if (r == 0 && create)
		r = within_rootfs(out);
	return r;
}

/* ------------------------------------------------------------------ */
/* Mount helpers */

static int do_mount(const char *what, const char *src, const char *dst, const char *cdst,
		    const char *type, unsigned long flags, const char *data)
{
	if (mount(src, dst, type, flags, data) < 0)
		return fail(errno, "%s on %s: %s", what, cdst, es(errno));
	log_debug("SETUP: %s on %s (flags 0x%lx%s%s)", what, cdst, flags, data ? ", " : "",
		  data ? data : "");
	return 0;
}

/* Per-mount flags currently on the mount holding path (for bind remounts,
 * which replace them all). */
static unsigned long mount_flags_of(const char *path)
{
	struct statvfs sv;
	unsigned long f = 0;

	if (statvfs(path, &sv) < 0)
		return 0;
	if (sv.f_flag & ST_NOSUID)
		f |= MS_NOSUID;
	if (sv.f_flag & ST_NODEV)
		f |= MS_NODEV;
	if (sv.f_flag & ST_NOEXEC)
		f |= MS_NOEXEC;
	if (sv.f_flag & ST_NOATIME)
		f |= MS_NOATIME;
	if (sv.f_flag & ST_NODIRATIME)
		f |= MS_NODIRATIME;
	if (sv.f_flag & ST_RELATIME)
		f |= MS_RELATIME;
	return f;
}

/* Makes the mount at path read-only (with its submounts if recursive). */
static int make_ro(const char *path, const char *cpath, int recursive)
{
	struct mount_attr_abi a = { .attr_set = MOUNT_ATTR_RDONLY_ABI };

	if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &a, sizeof a) == 0) {
		log_debug("SETUP: %s is read-only%s", cpath, recursive ? " (recursively)" : "");
		return 0;
	}
	if (errno != ENOSYS)
		return fail(errno, "making %s read-only: %s", cpath, es(errno));
	/* Before Linux 5.12: the top mount only. */
	return do_mount("read-only remount", NULL, path, cpath, NULL,
			MS_REMOUNT | MS_BIND | MS_RDONLY | mount_flags_of(path), NULL);
}

/* The device nodes and links a container needs in a fresh /dev tmpfs. */
static int populate_dev(void)
{
	const char *dev = ROOTFS_DIR "/dev";
	static const struct {
		const char *name;
		unsigned maj, min;
	} nodes[] = {
		{ "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 },
		{ "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
	};
	static const char *const links[][2] = {
		{ "/proc/self/fd", "fd" },     { "/proc/self/fd/0", "stdin" },
		{ "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
		{ "pts/ptmx", "ptmx" },
	};
	char path[64], host[64];
	struct stat st;

	for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dev, nodes[i].name);
		if (mknod(path, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) == 0) {
			if (chmod(path, 0666) < 0)
				return fail(errno, "chmod /dev/%s: %s", nodes[i].name, es(errno));
			continue;
		}
		if (errno != EPERM)
			return fail(errno, "mknod /dev/%s: %s", nodes[i].name, es(errno));
		/* No mknod (device cgroup, user namespace): bind the agent's node. */
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
		if (fd < 0)
			return fail(errno, "create /dev/%s: %s", nodes[i].name, es(errno));
		close(fd);
		snprintf(host, sizeof host, "/dev/%s", nodes[i].name);
		if (do_mount("bind of the device", host, path, host, NULL, MS_BIND, NULL) < 0)
			return -1;
	}
	for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", dev, links[i][1]);
		if (symlink(links[i][0], path) < 0 && errno != EEXIST)
			return fail(errno, "symlink /dev/%s: %s", links[i][1], es(errno));
	}
	if (stat("/proc/kcore", &st) == 0) {
		snprintf(path, sizeof path, "%s/core", dev);
		if (symlink("/proc/kcore", path) < 0 && errno != EEXIST)
			return fail(errno, "symlink /dev/core: %s", es(errno));
	}
	log_debug("SETUP: device nodes and links in /dev");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Records */

struct mount_rec {
	uint32_t flags, prop;
	const char *type, *source, *dest, *data;
};

/* u32 flags, u32 propagation, then exactly four NUL-terminated strings. */
static int parse_mount(const uint8_t *v, uint32_t len, struct mount_rec *m)
{
	const char *s[4];
	const uint8_t *p = v + 8, *end = v + len;

	if (len < 8 + 4)
		return fail(EINVAL, "MOUNT of %u bytes is too short", len);
	m->flags = rd32(v);
	m->prop = rd32(v + 4);
	for (int i = 0; i < 4; i++) {
		const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
		if (!nul)
			return fail(EINVAL, "MOUNT: string %d is not NUL-terminated", i + 1);
		s[i] = (const char *)p;
		p = nul + 1;
	}
	if (p != end)
		return fail(EINVAL, "MOUNT: %zu bytes after the fourth string", (size_t)(end - p));
	m->type = s[0];
	m->source = s[1];
	m->dest = s[2];
	m->data = s[3];

	if (!m->type[0])
		return fail(EINVAL, "MOUNT on %s: empty type", m->dest);
	if (m->dest[0] != '/')
		return fail(EINVAL, "MOUNT: destination \"%s\" is not an absolute path", m->dest);
	if (strlen(m->dest) >= PATH_MAX - sizeof ROOTFS_DIR)
		return fail(EINVAL, "MOUNT: destination is too long");
	if (m->flags & ~(uint32_t)MOUNT_FLAGS_OK)
		return fail(EINVAL, "MOUNT on %s: invalid flags 0x%x", m->dest,
			    m->flags & ~(uint32_t)MOUNT_FLAGS_OK);
	if (m->prop) {
		uint32_t kind = m->prop & ~(uint32_t)MS_REC;
		if (kind != MS_SHARED && kind != MS_PRIVATE && kind != MS_SLAVE && kind != MS_UNBINDABLE)
			return fail(EINVAL, "MOUNT on %s: invalid propagation 0x%x", m->dest, m->prop);
	}
	if ((!strcmp(m->type, "bind") || (m->flags & MS_BIND)) && m->source[0] != '/')
		return fail(EINVAL, "MOUNT on %s: bind source \"%s\" is not an absolute path",
			    m->dest, m->source);
	if (!strcmp(m->type, "virtiofs") && !m->source[0])
		return fail(EINVAL, "MOUNT on %s: virtiofs without a tag", m->dest);
	return 0;
}

static int apply_mount(const struct mount_rec *m)
{
	char dst[PATH_MAX], hooked[PATH_MAX];
	const char *src = m->source, *type = m->type, *data = m->data[0] ? m->data : NULL;
	unsigned long flags = m->flags;
	int bind = !strcmp(type, "bind") || (flags & MS_BIND), file = 0, r;
	const char *tags = boot_hook("HUSK_TEST_TAGS");

	if (!strcmp(type, "virtiofs") && tags) {
		/* Test hook: virtio-fs tag T is the directory $HUSK_TEST_TAGS/T. */
		snprintf(hooked, sizeof hooked, "%s/%s", tags, src);
		src = hooked;
		bind = 1;
	}
	if ((!strcmp(type, "cgroup") || !strcmp(type, "cgroup2")) && cgroup_ns_root()) {
		/* A cgroup namespace: the container's own cgroup is the root it sees. */
		src = cgroup_ns_root();
		type = "bind";
		data = NULL;
		flags |= MS_BIND;
		bind = 1;
	}
	if (bind) {
		struct stat st;
		if (stat(src, &st) < 0)
			return fail(errno, "bind mount on %s: source %s: %s", m->dest, src, es(errno));
		file = !S_ISDIR(st.st_mode);
	}
	r = container_path(m->dest, dst, sizeof dst, 1, file);
	if (r < 0)
		return fail(-r, "mount destination %s: %s", m->dest, es(-r));

	if (bind) {
		unsigned long rest = flags & ~(unsigned long)(MS_BIND | MS_REC | MS_REMOUNT);
		if (do_mount("bind mount", src, dst, m->dest, NULL, MS_BIND | (flags & MS_REC), NULL) < 0)
			return -1;
		/* A bind ignores the other flags: they take a remount. */
		if (rest && do_mount("bind remount", NULL, dst, m->dest, NULL,
				     MS_REMOUNT | MS_BIND | rest, NULL) < 0)
			return -1;
	} else {
		char what[300];
		int cgroup = !strcmp(type, "cgroup") || !strcmp(type, "cgroup2");
		if (cgroup) {
			type = "cgroup2";
			data = NULL; /* cgroup v1 options mean nothing to cgroup2 */
		}
		snprintf(what, sizeof what, "mount %s", type);
		if (mount(src[0] ? src : type, dst, type, flags, data) < 0) {
			int err = errno;
			if (cgroup && (err == ENODEV || err == EBUSY)) {
				/* A guest kernel without cgroup2: the container runs without it. */
				log_info("SETUP: mount cgroup2 on %s: %s; skipped", m->dest, es(err));
				return 0;
			}
			return fail(err, "%s on %s: %s", what, m->dest, es(err));
		}
		log_debug("SETUP: %s on %s (flags 0x%lx%s%s)", what, m->dest, flags,
			  data ? ", " : "", data ? data : "");
	}
	if (m->prop && do_mount("propagation change", NULL, dst, m->dest, NULL, m->prop, NULL) < 0)
		return -1;
	if (!strcmp(type, "tmpfs") && !strcmp(dst, ROOTFS_DIR "/dev"))
		return populate_dev();
	return 0;
}

/*
 * Resolves a path that masking or read-only marking applies to: 1 with dst
 * and st filled when it exists inside the rootfs, 0 when it is missing (the
 * spec says to skip it), -1 after fail() otherwise.
 */
static int existing_container_path(const char *what, const char *cpath, char *dst, size_t dstlen, struct stat *st)
{
	int r = container_path(cpath, dst, dstlen, 0, 0);

	if (r == -ENOENT || r == -ENOTDIR)
		return 0;
	if (r < 0)
		return fail(-r, "%s %s: %s", what, cpath, es(-r));
	if (lstat(dst, st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		return fail(errno, "%s %s: %s", what, cpath, es(errno));
	}
	if ((r = within_rootfs(dst)) < 0)
		return fail(-r, "%s %s: %s", what, cpath, es(-r));
	return 1;
}

static int apply_masked(const char *cpath)
{
	char dst[PATH_MAX];
	struct stat st;
	int r = existing_container_path("masked path", cpath, dst, sizeof dst, &st);

	if (r <= 0)
		return r;
	if (S_ISDIR(st.st_mode))
		return do_mount("masking tmpfs", "tmpfs", dst, cpath, "tmpfs", MS_RDONLY, NULL);
	return do_mount("masking /dev/null", "/dev/null", dst, cpath, NULL, MS_BIND, NULL);
}

static int apply_readonly(const char *cpath)
{
	char dst[PATH_MAX];
	struct stat st;
	int r = existing_container_path("read-only path", cpath, dst, sizeof dst, &st);

	if (r <= 0)
		return r;
	if (do_mount("read-only bind", dst, dst, cpath, NULL, MS_BIND | MS_REC, NULL) < 0)
		return -1;
	return make_ro(dst, cpath, 1);
}

/* "key=value" with a key like net.ipv4.ip_forward: path under /proc/sys. */
static int sysctl_path(const char *kv, char *path, size_t len, const char **value)
{
	const char *eq = strchr(kv, '=');
	size_t klen, o;

	if (!eq || eq == kv)
		return fail(EINVAL, "SYSCTL \"%s\" is not key=value", kv);
	klen = (size_t)(eq - kv);
	o = (size_t)snprintf(path, len, "/proc/sys/");
	if (o + klen + 1 > len)
		return fail(EINVAL, "SYSCTL key is too long");
	for (size_t i = 0; i < klen; i++)
		path[o + i] = kv[i] == '.' ? '/' : kv[i];
	path[o + klen] = '\0';
	/* No empty, "." or ".." component: the path stays in /proc/sys. */
	for (char *c = path + o;;) {
		char *e = strchrnul(c, '/');
		size_t n = (size_t)(e - c);
		if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
			return fail(EINVAL, "SYSCTL: invalid key \"%.*s\"", (int)klen, kv);
		if (!*e)
			break;
		c = e + 1;
	}
	*value = eq + 1;
	return 0;
}

static int apply_sysctl(const char *kv)
{
	char path[512];
	const char *value;
	size_t n, off = 0;
	int fd;

	if (sysctl_path(kv, path, sizeof path, &value) < 0)
		return -1;
	fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return fail(errno, "sysctl %s: open %s: %s", kv, path, es(errno));
	n = strlen(value);
	while (off < n || n == 0) {
		ssize_t w = write(fd, value + off, n - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			int err = errno;
			close(fd);
			return fail(err, "sysctl %s: write %s: %s", kv, path, es(err));
		}
		off += (size_t)w;
		if (n == 0)
			break;
	}
	close(fd);
	log_debug("SETUP: sysctl %s", kv);
	return 0;
}

/* u32 type, major, minor, mode, uid, gid, then the NUL-terminated path. */
struct device_rec {
	uint32_t type, major, minor, mode, uid, gid;
	const char *path;
};

#define DEVICE_FIXED 24u

static int parse_device(const uint8_t *v, uint32_t len, struct device_rec *d)
{
	const char *base;
	size_t plen;

	if (len < DEVICE_FIXED + 2)
		return fail(EINVAL, "DEVICE of %u bytes is too short", len);
	if (memchr(v + DEVICE_FIXED, 0, len - DEVICE_FIXED) != v + len - 1)
		return fail(EINVAL, "DEVICE: the path must end with its only NUL byte");
	d->type = rd32(v);
	d->major = rd32(v + 4);
	d->minor = rd32(v + 8);
	d->mode = rd32(v + 12);
	d->uid = rd32(v + 16);
	d->gid = rd32(v + 20);
	d->path = (const char *)v + DEVICE_FIXED;
	plen = len - DEVICE_FIXED - 1;

	if (d->type != 'c' && d->type != 'b' && d->type != 'u' && d->type != 'p')
		return fail(EINVAL, "DEVICE %s: invalid type 0x%x", d->path, d->type);
	if (d->path[0] != '/')
		return fail(EINVAL, "DEVICE: path \"%s\" is not absolute", d->path);
	if (plen >= PATH_MAX - sizeof ROOTFS_DIR)
		return fail(EINVAL, "DEVICE: path is too long");
	/* A node, not a directory: no trailing slash, no "." or ".." at the end. */
	base = strrchr(d->path, '/') + 1;
	if (!base[0] || !strcmp(base, ".") || !strcmp(base, ".."))
		return fail(EINVAL, "DEVICE: invalid path \"%s\"", d->path);
	if (d->mode & ~07777u)
		return fail(EINVAL, "DEVICE %s: mode 0%o has more than permission bits", d->path,
			    d->mode);
	/* Linux dev_t: 12-bit major, 20-bit minor. */
	if (d->major > 0xfffu || d->minor > 0xfffffu)
		return fail(EINVAL, "DEVICE %s: invalid number %u:%u", d->path, d->major, d->minor);
	return 0;
}

/* mknod inside the rootfs: the directory is resolved (and created) like a
 * MOUNT destination, the last component is never followed (an existing
 * entry, symlink or node, is replaced). */
static int apply_device(const struct device_rec *d)
{
	char dir[PATH_MAX], cdir[PATH_MAX], node[PATH_MAX];
	const char *base = strrchr(d->path, '/') + 1;
	size_t dlen = (size_t)(base - d->path);
	mode_t perm = d->mode ? (mode_t)d->mode : 0666, kind;
	int r;

	kind = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
	memcpy(cdir, d->path, dlen);
	cdir[dlen] = '\0';
	r = container_path(cdir, dir, sizeof dir, 1, 0);
	if (r < 0)
		return fail(-r, "device %s: %s", d->path, es(-r));
	if ((size_t)snprintf(node, sizeof node, "%s/%s", strcmp(dir, "/") ? dir : "", base) >=
	    sizeof node)
		return fail(ENAMETOOLONG, "device %s: %s", d->path, es(ENAMETOOLONG));
	if (unlink(node) < 0 && errno != ENOENT)
		return fail(errno, "device %s: removing the existing entry: %s", d->path, es(errno));
	if (mknod(node, kind | perm, d->type == 'p' ? 0 : makedev(d->major, d->minor)) < 0)
		return fail(errno, "mknod %s: %s", d->path, es(errno));
	if (fchownat(AT_FDCWD, node, (uid_t)d->uid, (gid_t)d->gid, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(errno, "chown %s: %s", d->path, es(errno));
	/* After the chown (which clears set-id bits), and whatever the umask. */
	if (fchmodat(AT_FDCWD, node, perm, 0) < 0)
		return fail(errno, "chmod %s: %s", d->path, es(errno));
	log_debug("SETUP: device %s (%c %u:%u 0%o %u:%u)", d->path, (char)d->type, d->major,
		  d->minor, (unsigned)perm, d->uid, d->gid);
	return 0;
}

/* ------------------------------------------------------------------ */
/* SETUP */

static int tlv_string(const uint8_t *val, uint32_t len, char *out, size_t outlen,
		      const char *name)
{
	if (!tlv_str_ok(val, len))
		return fail(EINVAL, "%s contains a NUL byte", name);
	if (len >= outlen)
		return fail(EINVAL, "%s of %u bytes is too long", name, len);
	memcpy(out, val, len);
	out[len] = '\0';
	return 0;
}

/* One attribute: validate only (apply == 0), or validate and apply. DEVICE
 * records are only applied in the device pass (apply == 2, after every other
 * attribute, so after the mounts), which applies nothing else. */
static int setup_attr(uint16_t tag, const uint8_t *val, uint32_t len, int apply, int *rootfs_ro)
{
	struct device_rec d = { 0 };

	if (apply == 2 && tag != A_DEVICE)
		return 0;
	char s[PATH_MAX];
	char path[512];
	const char *value;
	struct mount_rec m = { 0 };

	switch (tag) {
	case A_HOSTNAME:
	case A_DOMAINNAME: {
		const char *name = tag == A_HOSTNAME ? "HOSTNAME" : "DOMAINNAME";
		if (tlv_string(val, len, s, HOSTNAME_MAX + 1, name) < 0)
			return -1;
		if (!apply)
			return 0;
		if ((tag == A_HOSTNAME ? sethostname(s, len) : setdomainname(s, len)) < 0)
			return fail(errno, "%s %s: %s", tag == A_HOSTNAME ? "sethostname" : "setdomainname",
				    s, es(errno));
		log_debug("SETUP: %s %s", name, s);
		return 0;
	}
	case A_MOUNT:
		if (parse_mount(val, len, &m) < 0)
			return -1;
		return apply ? apply_mount(&m) : 0;
	case A_DEVICE:
		if (parse_device(val, len, &d) < 0)
			return -1;
		return apply == 2 ? apply_device(&d) : 0;
	case A_MASKED:
	case A_READONLY: {
		const char *name = tag == A_MASKED ? "MASKED" : "READONLY";
		if (tlv_string(val, len, s, PATH_MAX - sizeof ROOTFS_DIR, name) < 0)
			return -1;
		if (s[0] != '/')
			return fail(EINVAL, "%s path \"%s\" is not absolute", name, s);
		if (!apply)
			return 0;
		return tag == A_MASKED ? apply_masked(s) : apply_readonly(s);
	}
	case A_SYSCTL:
		if (tlv_string(val, len, s, sizeof s, "SYSCTL") < 0 ||
		    sysctl_path(s, path, sizeof path, &value) < 0)
			return -1;
		return apply ? apply_sysctl(s) : 0;
	case A_ROOTFS_RO:
		if (len != 1)
			return fail(EINVAL, "ROOTFS_RO must be 1 byte, not %u", len);
		*rootfs_ro = val[0] != 0;
		return 0;
	case A_NET_LINK:
	case A_NET_ADDR:
	case A_NET_ROUTE:
	case A_NET_RTO_MIN: {
		int r = net_check(tag, val, len, s, sizeof s);
		if (r == 0 && apply)
			r = net_apply(tag, val, len, s, sizeof s);
		return r < 0 ? fail(-r, "%s", s) : 0;
	}
	default:
		if (cgroup_is_setup_attr(tag)) {
			if (cgroup_setup_attr(tag, val, len, apply, s, sizeof s) < 0)
				return fail(errno, "%s", s);
			return 0;
		}
		return 0; /* unknown tags are ignored */
	}
}

static int setup_pass(const uint8_t *p, size_t n, int apply)
{
	struct tlv t;
	uint16_t tag;
	const uint8_t *val;
	uint32_t len;
	int r, rootfs_ro = 0;

	tlv_begin(&t, p, n);
	while ((r = tlv_next(&t, &tag, &val, &len)) > 0)
		if (setup_attr(tag, val, len, apply, &rootfs_ro) < 0)
			return -1;
	if (r < 0)
		return fail(EINVAL, "malformed TLV payload");
	if (apply == 1) {
		/* Device nodes after all mounts (a /dev tmpfs, ...). */
		tlv_begin(&t, p, n);
		while (tlv_next(&t, &tag, &val, &len) > 0)
			if (setup_attr(tag, val, len, 2, &rootfs_ro) < 0)
				return -1;
	}
	if (apply && rootfs_ro)
		return make_ro(ROOTFS_DIR, "/", 0);
	return 0;
}

void setup_handle(struct conn *c, uint32_t id, const uint8_t *p, size_t n)
{
	if (id != 0) {
		conn_send_error(c, id, EINVAL, "SETUP must have id 0, not %u", id);
		return;
	}
	if (run_seen || state != S_NONE) {
		conn_send_error(c, 0, EINVAL, "SETUP: %s",
				run_seen ? "the container already runs processes" : "already set up");
		return;
	}
	/* Everything is checked before anything is done: a malformed SETUP
	 * changes nothing (the host may send a corrected one). */
	if (setup_pass(p, n, 0) < 0) {
		conn_send_error(c, 0, fail_err, "SETUP: %s", fail_msg);
		return;
	}
	/* husk.defer_root: the rootfs comes now; a failure changes nothing
	 * either (a later SETUP tries the mount again). */
	char err[512];
	int r = boot_ensure_root(err, sizeof err);
	if (r < 0) {
		log_info("SETUP: %s", err);
		conn_send_error(c, 0, -r, "%s", err);
		return;
	}
	if (!cfg.test_mode && setup_pass(p, n, 1) < 0) {
		state = S_FAILED;
		log_info("SETUP failed: %s", fail_msg);
		conn_send_error(c, 0, fail_err, "%s", fail_msg);
		return;
	}
	state = S_DONE;
	/* Kept for the container's init, which mounts its own proc (see
	 * setup_init_proc). */
	setup_payload = xmalloc(n ? n : 1);
	if (n)
		memcpy(setup_payload, p, n);
	setup_len = n;
	log_debug("send SETUP_DONE%s", cfg.test_mode ? " (test mode: checked, nothing applied)" : "");
	conn_send(c, T_SETUP_DONE, 0, NULL, 0);
}

int setup_before_run(struct conn *c, uint32_t id)
{
	char err[512];
	int r;

	if (state == S_FAILED) {
		conn_send_error(c, id, fail_err, "container set-up failed: %s", fail_msg);
		return -1;
	}
	/* husk.defer_root without SETUP: the rootfs comes with the first RUN
	 * (a failed mount fails this RUN only; the next one tries again). */
	if ((r = boot_ensure_root(err, sizeof err)) < 0) {
		log_info("RUN: %s", err);
		conn_send_error(c, id, -r, "%s", err);
		return -1;
	}
	if (!run_seen) {
		run_seen = 1;
		console_pending = state == S_DONE && !cfg.test_mode;
		init_pending = console_pending;
		if (state == S_NONE && !cfg.test_mode)
			boot_container_mounts();
	}
	return 0;
}

void setup_console(int slave_fd)
{
	char dst[PATH_MAX], src[64];
	int r;

	if (!console_pending)
		return;
	console_pending = 0;
	if (slave_fd < 0)
		return;
	r = container_path("/dev/console", dst, sizeof dst, 1, 1);
	if (r < 0) {
		log_info("/dev/console: %s; the container has no console", es(-r));
		return;
	}
	/* The fd's magic link names the slave whichever devpts it is in. */
	snprintf(src, sizeof src, "/proc/self/fd/%d", slave_fd);
	if (mount(src, dst, NULL, MS_BIND, NULL) < 0) {
		log_info("bind of the terminal on /dev/console: %s; the container has no console",
			 es(errno));
		return;
	}
	log_debug("SETUP: the init's terminal is bound on /dev/console");
}

/* ------------------------------------------------------------------ */
/* The container's pid namespace (protocol extension B) */

int setup_take_init(void)
{
	int r = init_pending;
	init_pending = 0;
	return r;
}

/* Is the container path c at or below the proc mount destination d? */
static int below(const char *c, const char *d)
{
	size_t n = strlen(d);
	while (n > 1 && d[n - 1] == '/')
		n--;
	if (n == 1 && d[0] == '/')
		return 1;
	return strncmp(c, d, n) == 0 && (c[n] == '\0' || c[n] == '/');
}

int setup_init_proc(char *err, size_t errlen)
{
	struct tlv t;
	uint16_t tag;
	const uint8_t *val;
	uint32_t len;
	struct mount_rec m;
	const char *procs[64];
	size_t nproc = 0;
	char dst[PATH_MAX], s[PATH_MAX];

	if (!setup_payload)
		return 0;
	/* In the child, fd 2 is the container's stderr: no agent logs there. */
	cfg.debug = 0;
	/* 1. Every proc mount again, from this process (a proc mount shows the
	 *    mounter's pid namespace), in place of the agent's; submounts go too. */
	tlv_begin(&t, setup_payload, setup_len);
	while (tlv_next(&t, &tag, &val, &len) > 0) {
		if (tag != A_MOUNT || parse_mount(val, len, &m) < 0 || strcmp(m.type, "proc"))
			continue;
		if (nproc < sizeof procs / sizeof procs[0])
			procs[nproc++] = m.dest;
		int r = container_path(m.dest, dst, sizeof dst, 0, 0);
		if (r < 0) {
			snprintf(err, errlen, "proc mount on %s: %s", m.dest, es(-r));
			return -1;
		}
		if (umount2(dst, MNT_DETACH) < 0 && errno != EINVAL) {
			snprintf(err, errlen, "unmounting the agent's proc on %s: %s", m.dest, es(errno));
			return -1;
		}
		if (apply_mount(&m) < 0) {
			snprintf(err, errlen, "%s", fail_msg);
			return -1;
		}
	}
	if (!nproc)
		return 0;
	/* 2. What lay below them: later mounts, masked and read-only paths. */
	int seen = 0;
	tlv_begin(&t, setup_payload, setup_len);
	while (tlv_next(&t, &tag, &val, &len) > 0) {
		int under = 0, r = 0;
		if (tag == A_MOUNT) {
			if (parse_mount(val, len, &m) < 0)
				continue;
			if (!strcmp(m.type, "proc")) {
				seen++;
				continue;
			}
			for (size_t i = 0; i < nproc && i < (size_t)seen; i++)
				under |= below(m.dest, procs[i]) && strcmp(m.dest, procs[i]) != 0;
			if (under)
				r = apply_mount(&m);
		} else if (tag == A_MASKED || tag == A_READONLY) {
			if (len >= sizeof s || !tlv_str_ok(val, len))
				continue;
			memcpy(s, val, len);
			s[len] = '\0';
			for (size_t i = 0; i < nproc; i++)
				under |= below(s, procs[i]);
			if (under)
				r = tag == A_MASKED ? apply_masked(s) : apply_readonly(s);
		}
		if (r < 0) {
			snprintf(err, errlen, "%s", fail_msg);
			return -1;
		}
	}
	return 0;
}
