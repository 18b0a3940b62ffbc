/* husk guest agent: configuration shared by all parts of the agent. */
#ifndef HUSK_AGENT_H
#define HUSK_AGENT_H

#define AGENT_NAME "husk-agent 0.1.0"
#define PROTOCOL_VERSION 1u

/* Directory where the container rootfs is mounted in the guest. */
#define ROOTFS_DIR "/rootfs"
/* Where the virtio-fs tag husk.binds=TAG (sources of bind mounts) is mounted. */
#define BINDS_DIR "/run/husk/binds"

/* PATH used to look up argv[0] when the process environment has none. */
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct agent_cfg {
	int test_mode;      /* --test-fd: no mounts, no chroot, POWEROFF exits */
	int debug;          /* husk.debug / --debug */
	int bench;          /* husk.bench: report ready on the console and power off (boot baseline) */
	int defer_root;     /* husk.defer_root: mount the rootfs and binds at SETUP or first RUN, not at boot */
	char fs_tag[256];   /* husk.fs=TAG */
	char binds_tag[256]; /* husk.binds=TAG, "" = none */
	unsigned port;      /* husk.port=N */
	int devnull_fd;     /* /dev/null, stdin of processes without STDIN=1 */
};

extern struct agent_cfg cfg;

#endif
