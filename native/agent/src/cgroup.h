/* The container's cgroup inside the guest (protocol extension C): cgroup2
 * mounted privately by the agent, one cgroup that every container process
 * joins before execve, linux.resources applied at SETUP and by UPDATE, and
 * the cgroup's files read back by STATS. */
#ifndef HUSK_CGROUP_H
#define HUSK_CGROUP_H

#include <stddef.h>
#include <stdint.h>

struct conn;

/* Where the agent mounts cgroup2, and the container's cgroup below it. */
#define CGROUP_MNT "/run/husk/cgroup"
#define CGROUP_NAME "container"

/* Mounts cgroup2, enables memory/cpu/pids for children and creates the
 * container's cgroup. Failures are logged: the container then runs in the
 * root cgroup and UPDATE/STATS answer ENOTSUP. */
void cgroup_init(void);

/* In a spawned child, before chroot: moves the calling process into the
 * container's cgroup. 0 (also when there is no cgroup) or -1 with errno set
 * and a message in err. */
int cgroup_join(char *err, size_t errlen);
/* (With CG_NAMESPACE, cgroup_join also unshares a cgroup namespace rooted at the container's cgroup.) */

/* 1 if tag is one of the resource attributes (60-65). */
int cgroup_is_attr(uint16_t tag);
/* 1 if tag belongs to SETUP: the resource attributes and CG_NAMESPACE (67). */
int cgroup_is_setup_attr(uint16_t tag);

/* SETUP: like cgroup_attr, plus CG_NAMESPACE (the host sends it before any
 * MOUNT, so the cgroup mount below already sees it). */
int cgroup_setup_attr(uint16_t tag, const uint8_t *val, uint32_t len, int apply, char *err, size_t errlen);

/* With a cgroup namespace: the directory to bind on the container's cgroup
 * mount point (its own cgroup as the root); NULL: mount cgroup2 as usual. */
const char *cgroup_ns_root(void);

/* Checks (apply == 0) or applies one resource attribute. 0, or -1 with
 * errno set and a message in err. */
int cgroup_attr(uint16_t tag, const uint8_t *val, uint32_t len, int apply, char *err, size_t errlen);

/* UPDATE (type 20) and STATS (type 21); both answer RESULT or ERROR. */
void cgroup_handle_update(struct conn *c, uint32_t id, const uint8_t *p, size_t n);
void cgroup_handle_stats(struct conn *c, uint32_t id, const uint8_t *p, size_t n);

#endif
