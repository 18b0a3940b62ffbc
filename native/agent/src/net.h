/* Networking attributes of SETUP (NET_LINK, NET_ADDR, NET_ROUTE): eth0 is
 * configured with rtnetlink from what the host read in the container's
 * network namespace. */
#ifndef HUSK_NET_H
#define HUSK_NET_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

/* Validates one attribute (non-network tags pass). 0 or -errno with msg set. */
int net_check(uint16_t tag, const uint8_t *v, uint32_t len, char *msg, size_t msglen);
/* Applies one validated attribute, in SETUP order: NET_LINK first. 0 or -errno with msg set. */
int net_apply(uint16_t tag, const uint8_t *v, uint32_t len, char *msg, size_t msglen);

#endif
