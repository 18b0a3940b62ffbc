/* Networking (SETUP attributes NET_LINK, NET_ADDR, NET_ROUTE, NET_RTO_MIN): configures
 * the guest's virtio-net interface with rtnetlink, the way the container's
 * namespace on the host is configured (same addresses, routes; passt on the
 * host carries the traffic). The interface is found by the MAC the host
 * gives, never by name. */
#include "net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"
#include "log.h"

/* The rtnetlink ABI (linux/netlink.h, linux/rtnetlink.h): musl ships no
 * kernel headers, and these layouts and numbers never change. */
#define NETLINK_ROUTE 0
#define NLM_F_REQUEST 0x1
#define NLM_F_ACK 0x4
#define NLM_F_REPLACE 0x100
#define NLM_F_CREATE 0x400
#define NLMSG_ERROR 0x2
#define RTM_NEWLINK 16
#define RTM_NEWADDR 20
#define RTM_NEWROUTE 24
#define IFLA_ADDRESS 1
#define IFLA_MTU 4
#define IFA_ADDRESS 1
#define IFA_LOCAL 2
#define IFA_F_NODAD 0x02
#define RTA_DST 1
#define RTA_OIF 4
#define RTA_GATEWAY 5
#define RTA_PREFSRC 7
#define RTA_METRICS 8
#define RTAX_LOCK 1
#define RTAX_RTO_MIN 13
#define IFA_FLAGS 8
#define IFA_F_NOPREFIXROUTE 0x200
#define RTPROT_KERNEL 2
#define RT_TABLE_MAIN 254
#define RTPROT_BOOT 3
#define RT_SCOPE_UNIVERSE 0
#define RT_SCOPE_LINK 253
#define RTN_UNICAST 1
#define RTNH_F_ONLINK 4

struct nlmsghdr {
	uint32_t nlmsg_len;
	uint16_t nlmsg_type, nlmsg_flags;
	uint32_t nlmsg_seq, nlmsg_pid;
};
struct nlmsgerr {
	int error;
	struct nlmsghdr msg;
};
struct sockaddr_nl {
	unsigned short nl_family, nl_pad;
	uint32_t nl_pid, nl_groups;
};
struct rtattr {
	unsigned short rta_len, rta_type;
};
struct ifinfomsg {
	unsigned char ifi_family, ifi_pad;
	unsigned short ifi_type;
	int ifi_index;
	unsigned ifi_flags, ifi_change;
};
struct ifaddrmsg {
	uint8_t ifa_family, ifa_prefixlen, ifa_flags, ifa_scope;
	uint32_t ifa_index;
};
struct rtmsg {
	unsigned char rtm_family, rtm_dst_len, rtm_src_len, rtm_tos, rtm_table, rtm_protocol, rtm_scope,
		rtm_type;
	unsigned rtm_flags;
};
#define NL_ALIGN(n) (((n) + 3u) & ~3u)
#define NLMSG_HDRLEN ((unsigned)NL_ALIGN(sizeof(struct nlmsghdr)))
#define NLMSG_LENGTH(n) ((n) + NLMSG_HDRLEN)
#define NLMSG_DATA(h) ((void *)((char *)(h) + NLMSG_HDRLEN))
#define RTA_LENGTH(n) (NL_ALIGN(sizeof(struct rtattr)) + (n))
#define RTA_DATA(a) ((void *)((char *)(a) + RTA_LENGTH(0)))

#define LINK_LEN 12
#define ADDR_LEN 20
#define ROUTE_LEN 36

static int link_index; /* eth0's ifindex once NET_LINK was applied */
/* NET_RTO_MIN: TCP's minimum retransmission timeout (ms) on every route of eth0, 0 = the kernel's 200 ms */
static uint32_t rto_min_ms;
#define RTO_MIN_MAX_MS 1000

static int addr_len(uint8_t family)
{
	return family == 4 ? 4 : family == 6 ? 16 : -1;
}

int net_check(uint16_t tag, const uint8_t *v, uint32_t len, char *msg, size_t msglen)
{
	switch (tag) {
	case A_NET_LINK: {
		uint32_t mtu;
		if (len != LINK_LEN)
			goto badlen;
		memcpy(&mtu, v, 4);
		if (mtu < 68 || mtu > 65535) {
			snprintf(msg, msglen, "NET_LINK: MTU %u out of range", mtu);
			return -EINVAL;
		}
		if (v[4] & 1) {
			snprintf(msg, msglen, "NET_LINK: multicast MAC");
			return -EINVAL;
		}
		return 0;
	}
	case A_NET_ADDR:
		if (len != ADDR_LEN)
			goto badlen;
		if (addr_len(v[0]) < 0 || v[1] > addr_len(v[0]) * 8) {
			snprintf(msg, msglen, "NET_ADDR: bad family %u or prefix /%u", v[0], v[1]);
			return -EINVAL;
		}
		return 0;
	case A_NET_ROUTE:
		if (len != ROUTE_LEN)
			goto badlen;
		if (addr_len(v[0]) < 0 || v[1] > addr_len(v[0]) * 8 || v[2] > 1) {
			snprintf(msg, msglen, "NET_ROUTE: bad family %u, prefix /%u or gateway flag", v[0], v[1]);
			return -EINVAL;
		}
		return 0;
	case A_NET_RTO_MIN: {
		uint32_t ms;
		if (len != 4)
			goto badlen;
		memcpy(&ms, v, 4);
		if (ms < 1 || ms > RTO_MIN_MAX_MS) {
			snprintf(msg, msglen, "NET_RTO_MIN: %u ms out of range (1..%u)", ms, RTO_MIN_MAX_MS);
			return -EINVAL;
		}
		return 0;
	}
	default:
		return 0;
	}
badlen:
	snprintf(msg, msglen, "network attribute %u has length %u", tag, len);
	return -EINVAL;
}

/* ---- rtnetlink ---- */

struct nlreq {
	struct nlmsghdr nh;
	char body[256];
};

static void add_rta(struct nlreq *r, unsigned short type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)r + NL_ALIGN(r->nh.nlmsg_len));
	a->rta_type = type;
	a->rta_len = (unsigned short)RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->nh.nlmsg_len = NL_ALIGN(r->nh.nlmsg_len) + NL_ALIGN(a->rta_len);
}

/* RTA_METRICS with NET_RTO_MIN, locked: TCP reads RTAX_RTO_MIN only from a locked metric. */
static void add_rto_min(struct nlreq *r)
{
	struct rtattr *m = (struct rtattr *)((char *)r + NL_ALIGN(r->nh.nlmsg_len));
	uint32_t lock = 1u << RTAX_RTO_MIN;
	unsigned start = NL_ALIGN(r->nh.nlmsg_len);

	m->rta_type = RTA_METRICS;
	r->nh.nlmsg_len = start + (unsigned)RTA_LENGTH(0);
	add_rta(r, RTAX_LOCK, &lock, 4);
	add_rta(r, RTAX_RTO_MIN, &rto_min_ms, 4);
	m->rta_len = (unsigned short)(r->nh.nlmsg_len - start);
}

/* Sends one request and waits for its acknowledgement: 0 or -errno. */
static int nl_talk(struct nlreq *r)
{
	static uint32_t seq;
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	char buf[4096];
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
	int err = -EIO;

	if (fd < 0)
		return -errno;
	r->nh.nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
	r->nh.nlmsg_seq = ++seq;
	if (sendto(fd, r, r->nh.nlmsg_len, 0, (struct sockaddr *)&sa, sizeof sa) < 0) {
		err = -errno;
		goto out;
	}
	for (;;) {
		ssize_t n = recv(fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		for (size_t off = 0; off + sizeof(struct nlmsghdr) <= (size_t)n;) {
			struct nlmsghdr *h = (struct nlmsghdr *)(buf + off);
			if (h->nlmsg_len < sizeof *h || h->nlmsg_len > (size_t)n - off)
				break;
			if (h->nlmsg_seq == r->nh.nlmsg_seq && h->nlmsg_type == NLMSG_ERROR &&
			    h->nlmsg_len >= NLMSG_LENGTH(sizeof(int))) {
				struct nlmsgerr *e = NLMSG_DATA(h);
				err = e->error;
				goto out;
			}
			off += NL_ALIGN(h->nlmsg_len);
		}
	}
out:
	close(fd);
	return err;
}

/* The Ethernet interface with this MAC; with mac NULL, the first Ethernet interface. */
static int find_by_mac(const uint8_t mac[6])
{
	struct if_nameindex *ifs = if_nameindex(), *i;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), found = 0;

	if (ifs && s >= 0) {
		for (i = ifs; i->if_index && !found; i++) {
			struct ifreq ifr;
			memset(&ifr, 0, sizeof ifr);
			snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", i->if_name);
			if (ioctl(s, SIOCGIFHWADDR, &ifr) == 0 && ifr.ifr_hwaddr.sa_family == ARPHRD_ETHER &&
			    (!mac || memcmp(ifr.ifr_hwaddr.sa_data, mac, 6) == 0))
				found = (int)i->if_index;
		}
	}
	if (ifs)
		if_freenameindex(ifs);
	if (s >= 0)
		close(s);
	return found;
}

static int apply_link(const uint8_t *v, char *msg, size_t msglen)
{
	struct nlreq r;
	struct ifinfomsg *ifi;
	uint32_t mtu;
	int idx, err, set_mac = 0;

	memcpy(&mtu, v, 4);
	idx = find_by_mac(v + 4);
	/* A pooled VM (husk.defer_root) was booted before its container's MAC
	 * was known: its one virtio-net interface takes that MAC now. */
	if (!idx && cfg.defer_root && (idx = find_by_mac(NULL)) != 0)
		set_mac = 1;
	if (!idx) {
		snprintf(msg, msglen, "no network interface with MAC %02x:%02x:%02x:%02x:%02x:%02x", v[4], v[5],
			 v[6], v[7], v[8], v[9]);
		return -ENODEV;
	}
	memset(&r, 0, sizeof r);
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof *ifi);
	r.nh.nlmsg_type = RTM_NEWLINK;
	ifi = NLMSG_DATA(&r.nh);
	ifi->ifi_family = AF_UNSPEC;
	ifi->ifi_index = idx;
	ifi->ifi_flags = IFF_UP;
	ifi->ifi_change = IFF_UP;
	add_rta(&r, IFLA_MTU, &mtu, 4);
	if (set_mac)
		add_rta(&r, IFLA_ADDRESS, v + 4, 6);
	err = nl_talk(&r);
	if (err < 0) {
		snprintf(msg, msglen, "setting up the network interface (MTU %u%s): %s", mtu, set_mac ? ", new MAC" : "", strerror(-err));
		return err;
	}
	link_index = idx;
	log_debug("SETUP: network interface %d up, MTU %u", idx, mtu);
	return 0;
}

/* One route on eth0: dst/len, via gw (NULL: on-link), from prefsrc (NULL: the kernel's choice). */
static int route_add(const uint8_t *v_dst, uint8_t family, uint8_t len, const uint8_t *gw, const uint8_t *prefsrc,
		     unsigned char protocol, unsigned flags)
{
	struct nlreq r;
	struct rtmsg *rt;
	int alen = addr_len(family);
	uint32_t oif = (uint32_t)link_index;

	memset(&r, 0, sizeof r);
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof *rt);
	r.nh.nlmsg_type = RTM_NEWROUTE;
	r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	rt = NLMSG_DATA(&r.nh);
	rt->rtm_family = family == 4 ? AF_INET : AF_INET6;
	rt->rtm_dst_len = len;
	rt->rtm_table = RT_TABLE_MAIN;
	rt->rtm_protocol = protocol;
	rt->rtm_scope = gw ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
	rt->rtm_type = RTN_UNICAST;
	rt->rtm_flags = flags;
	if (len)
		add_rta(&r, RTA_DST, v_dst, (size_t)alen);
	if (gw)
		add_rta(&r, RTA_GATEWAY, gw, (size_t)alen);
	if (prefsrc)
		add_rta(&r, RTA_PREFSRC, prefsrc, (size_t)alen);
	add_rta(&r, RTA_OIF, &oif, 4);
	if (rto_min_ms)
		add_rto_min(&r);
	return nl_talk(&r);
}

static int apply_addr(const uint8_t *v, char *msg, size_t msglen)
{
	struct nlreq r;
	struct ifaddrmsg *ifa;
	int alen = addr_len(v[0]), err;
	/* With NET_RTO_MIN the prefix route is ours (with the metric), not the kernel's. */
	int own_prefix = rto_min_ms && v[1] < alen * 8;
	uint32_t flags;

	memset(&r, 0, sizeof r);
	r.nh.nlmsg_len = NLMSG_LENGTH(sizeof *ifa);
	r.nh.nlmsg_type = RTM_NEWADDR;
	r.nh.nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
	ifa = NLMSG_DATA(&r.nh);
	ifa->ifa_family = v[0] == 4 ? AF_INET : AF_INET6;
	ifa->ifa_prefixlen = v[1];
	/* No duplicate address detection: passt is the only other node on this link. */
	flags = v[0] == 6 ? IFA_F_NODAD : 0;
	ifa->ifa_flags = (uint8_t)flags;
	ifa->ifa_scope = RT_SCOPE_UNIVERSE;
	ifa->ifa_index = (unsigned)link_index;
	add_rta(&r, IFA_LOCAL, v + 4, (size_t)alen);
	add_rta(&r, IFA_ADDRESS, v + 4, (size_t)alen);
	if (own_prefix) {
		flags |= IFA_F_NOPREFIXROUTE;
		add_rta(&r, IFA_FLAGS, &flags, 4);
	}
	err = nl_talk(&r);
	if (err == 0 && own_prefix) {
		uint8_t net[16];
		memcpy(net, v + 4, 16);
		for (int bit = v[1]; bit < alen * 8; bit++)
			net[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
		err = route_add(net, v[0], v[1], NULL, v[0] == 4 ? v + 4 : NULL, RTPROT_KERNEL, 0);
	}
	if (err < 0) {
		char a[INET6_ADDRSTRLEN] = "?";
		inet_ntop(ifa->ifa_family, v + 4, a, sizeof a);
		snprintf(msg, msglen, "adding address %s/%u: %s", a, v[1], strerror(-err));
	}
	return err;
}

static int route_once(const uint8_t *v, unsigned flags)
{
	return route_add(v + 4, v[0], v[1], v[2] ? v + 20 : NULL, NULL, RTPROT_BOOT, flags);
}

static int apply_route(const uint8_t *v, char *msg, size_t msglen)
{
	int err = route_once(v, 0);

	/* A gateway outside every connected prefix (a /32 address) is still on this link. */
	if (err == -ENETUNREACH && v[2])
		err = route_once(v, RTNH_F_ONLINK);
	if (err < 0) {
		char d[INET6_ADDRSTRLEN] = "?", g[INET6_ADDRSTRLEN] = "";
		int af = v[0] == 4 ? AF_INET : AF_INET6;
		inet_ntop(af, v + 4, d, sizeof d);
		if (v[2])
			inet_ntop(af, v + 20, g, sizeof g);
		snprintf(msg, msglen, "adding route %s/%u%s%s: %s", d, v[1], v[2] ? " via " : "", g, strerror(-err));
	}
	return err;
}

int net_apply(uint16_t tag, const uint8_t *v, uint32_t len, char *msg, size_t msglen)
{
	(void)len; /* checked by net_check */
	if (tag == A_NET_LINK)
		return apply_link(v, msg, msglen);
	if (tag == A_NET_RTO_MIN) {
		/* Before NET_ADDR and NET_ROUTE (the host sends it right after NET_LINK): they carry it. */
		memcpy(&rto_min_ms, v, 4);
		log_debug("SETUP: TCP minimum RTO %u ms on eth0's routes", rto_min_ms);
		return 0;
	}
	if (!link_index) {
		snprintf(msg, msglen, "network attribute %u before NET_LINK", tag);
		return -EINVAL;
	}
	if (tag == A_NET_ADDR)
		return apply_addr(v, msg, msglen);
	if (tag == A_NET_ROUTE)
		return apply_route(v, msg, msglen);
	return 0;
}
