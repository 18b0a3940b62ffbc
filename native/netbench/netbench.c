/* netbench: the TCP endpoint bench/net runs inside its containers, with
 * husk and with runc alike. busybox nc moves 1 KiB per read(2)/write(2) and
 * needs a pipe to wc or from dd besides, so under an emulated CPU it
 * measures system-call cost more than the network; this tool moves data in
 * 1 MiB calls, the way iperf3 or any bulk transfer does.
 *
 *   netbench sink PORT               accept one connection on PORT (IPv4 and
 *                                    IPv6), read to EOF, print the byte count
 *   netbench source HOST PORT BYTES  connect to HOST (numeric IPv4/IPv6),
 *                                    send BYTES zero bytes, close
 *
 * Exit status 0 on success, 1 with a one-line message on stderr otherwise. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (1 << 20)

static char buf[BUF_SIZE];

static int fail(const char *what)
{
	fprintf(stderr, "netbench: %s: %s\n", what, strerror(errno));
	return 1;
}

static int parse_num(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -1;
	*out = v;
	return 0;
}

static int sink(unsigned port)
{
	int one = 1, off = 0;
	int l = socket(AF_INET6, SOCK_STREAM, 0);
	if (l < 0)
		return fail("socket");
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(l, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
	struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = IN6ADDR_ANY_INIT };
	if (bind(l, (struct sockaddr *)&a, sizeof(a)) < 0)
		return fail("bind");
	if (listen(l, 1) < 0)
		return fail("listen");
	int s = accept(l, NULL, NULL);
	if (s < 0)
		return fail("accept");
	close(l);
	unsigned long long total = 0;
	for (;;) {
		ssize_t n = read(s, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("read");
		if (n == 0)
			break;
		total += (unsigned long long)n;
	}
	close(s);
	printf("%llu\n", total);
	return fflush(stdout) == 0 ? 0 : fail("stdout");
}

static int source(const char *host, unsigned port, unsigned long long bytes)
{
	struct sockaddr_storage ss;
	socklen_t len;
	memset(&ss, 0, sizeof(ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		len = sizeof(*a4);
	} else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		len = sizeof(*a6);
	} else {
		fprintf(stderr, "netbench: %s is not a numeric IPv4 or IPv6 address\n", host);
		return 1;
	}
	int s = socket(ss.ss_family, SOCK_STREAM, 0);
	if (s < 0)
		return fail("socket");
	if (connect(s, (struct sockaddr *)&ss, len) < 0)
		return fail("connect");
	while (bytes) {
		size_t want = bytes < sizeof(buf) ? (size_t)bytes : sizeof(buf);
		ssize_t n = write(s, buf, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("write");
		bytes -= (unsigned long long)n;
	}
	/* Half-close and wait for the peer's close: everything was delivered. */
	if (shutdown(s, SHUT_WR) < 0)
		return fail("shutdown");
	for (;;) {
		ssize_t n = read(s, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail("waiting for the peer to close"); /* e.g. reset: not all delivered */
		if (n == 0)
			break;
	}
	close(s);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned long long port, bytes;
	if (argc == 3 && !strcmp(argv[1], "sink") && !parse_num(argv[2], 65535, &port) && port)
		return sink((unsigned)port);
	if (argc == 5 && !strcmp(argv[1], "source") && !parse_num(argv[3], 65535, &port) && port &&
	    !parse_num(argv[4], 1ULL << 50, &bytes))
		return source(argv[2], (unsigned)port, bytes);
	fprintf(stderr, "usage: netbench sink PORT | netbench source HOST PORT BYTES\n");
	return 2;
}
