/* PROCFS (protocol extension D): the /proc files of the container's
 * processes, read from a proc instance of its pid namespace. */
#ifndef HUSK_PROCFS_H
#define HUSK_PROCFS_H

#include <stddef.h>
#include <stdint.h>

struct conn;

/* PROCFS (type 24): answers RESULT with PROC_FILE attributes, or ERROR. */
void procfs_handle(struct conn *c, uint32_t id, const uint8_t *p, size_t n);

/* The container's init is gone: its proc instance is unmounted. */
void procfs_container_gone(void);

#endif
