/* The container's pid namespace (protocol extension B): its init is PID 1
 * of a new pid namespace, later processes (exec) join it; PS lists and
 * signals the processes in it. */
#ifndef HUSK_CONTAINER_H
#define HUSK_CONTAINER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct conn;

/* Around the fork of a RUN: ctr_enter makes the next child the init of a
 * new pid namespace (init) or a member of the container's (a later RUN
 * while the init lives); ctr_leave returns the agent to its own namespace
 * and, for the init, remembers the namespace. 0 or -errno. */
int ctr_enter(int init);
void ctr_leave(int init, pid_t pid);
/* True while the container's init lives (its pid namespace exists). */
int ctr_is_live(void);
/* Like ctr_enter for a later process, but -ESRCH unless the init lives. */
int ctr_enter_live(void);

/* The agent reaped pid: if it is the container's init, its namespace is gone. */
void ctr_reaped(pid_t pid);

/* pid (in the agent's namespace) -> pid in the container's namespace, 0 if
 * not in it. */
uint32_t ctr_inner_pid(pid_t pid);

/* PS (type 16): lists (and with SIGNO signals) the container's processes. */
void ctr_handle_ps(struct conn *c, uint32_t id, const uint8_t *p, size_t n);

#endif
