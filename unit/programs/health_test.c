/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The daemons' health endpoint (programs/health.h) over real TCP on
 * loopback: /healthz always 200, /readyz 503 with the reason until the
 * callback says ready, then 200; unknown paths 404; a request that is not a
 * GET, too long, or never sent is 400; bad addresses refused.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "programs/health.h"

static atomic_int g_ready = 1;

static int ready(void *arg, char *why, size_t len)
{
	cr_assert_eq(arg, &g_ready);
	if (atomic_load(&g_ready))
		snprintf(why, len, "passive: waiting for the Lease");
	return atomic_load(&g_ready);
}

/* Send \p req (may be NULL: send nothing) to 127.0.0.1:\p port; the whole answer into \p out. */
static void ask(unsigned port, const char *req, char *out, size_t cap)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t n = 0;
	ssize_t r;

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s", strerror(errno));
	if (req)
		cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (n + 1 < cap && (r = read(fd, out + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	out[n] = '\0';
	close(fd);
}

Test(health, probes)
{
	struct ts_health *h;
	char buf[2048], big[1500];
	unsigned port;

	cr_assert_eq(ts_health_start("127.0.0.1:0", ready, &g_ready, &h), 0);
	port = ts_health_port(h);
	cr_assert_gt(port, 0u);
	ask(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 200 ", 13), "%s", buf);
	cr_assert(strstr(buf, "\r\n\r\nok\n"), "%s", buf);
	ask(port, "GET /readyz HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 503 ", 13), "%s", buf);
	cr_assert(strstr(buf, "passive: waiting for the Lease"), "%s", buf);
	atomic_store(&g_ready, 0);
	ask(port, "GET /readyz HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 200 ", 13), "%s", buf);
	ask(port, "GET /metrics HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 404 ", 13), "%s", buf);
	ask(port, "POST /healthz HTTP/1.1\r\n\r\n", buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 400 ", 13), "%s", buf);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ask(port, big, buf, sizeof(buf));
	cr_assert(!strncmp(buf, "HTTP/1.0 400 ", 13), "too long: %s", buf);
	ask(port, NULL, buf, sizeof(buf)); /* silent: answered after the request timeout */
	cr_assert(!strncmp(buf, "HTTP/1.0 400 ", 13), "silent: %s", buf);
	ask(port, "GET /healthz\r\n", buf, sizeof(buf)); /* HTTP/0.9 style still served */
	cr_assert(!strncmp(buf, "HTTP/1.0 200 ", 13), "%s", buf);
	ts_health_stop(h);
	ts_health_stop(NULL);
}

Test(health, bad_addresses)
{
	struct ts_health *h = NULL;
	struct ts_health *a;

	cr_assert_eq(ts_health_start("nonsense", NULL, NULL, &h), -EINVAL);
	cr_assert_eq(ts_health_start("127.0.0.1:70000", NULL, NULL, &h), -EINVAL);
	cr_assert_eq(ts_health_start("not.an.ip:80", NULL, NULL, &h), -EINVAL);
	cr_assert_null(h);
	cr_assert_eq(ts_health_start("127.0.0.1:0", NULL, NULL, &a), 0);
	char addr[32];

	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ts_health_port(a));
	cr_assert_eq(ts_health_start(addr, NULL, NULL, &h), -EADDRINUSE);
	ts_health_stop(a);
}
