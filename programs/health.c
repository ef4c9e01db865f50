/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The health endpoint (health.h): a listening socket and one thread that
 * polls it and a stop pipe, answering one request per connection.
 */
#include "programs/health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

#define REQ_MAX 1024
#define REQ_TIMEOUT_MS 2000

struct ts_health {
	int lfd, stop_pipe[2];
	unsigned port;
	ts_health_ready_fn ready;
	void *arg;
	pthread_t thread;
};

static void reply(int fd, int code, const char *text)
{
	char buf[512];
	const char *what = code == 200 ? "OK" : code == 503 ? "Service Unavailable"
			 : code == 404 ? "Not Found" : "Bad Request";
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.0 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n%s\n",
			 code, what, strlen(text) + 1, text);

	if (n > 0 && write(fd, buf, (size_t)n) < 0)
		return; /* the prober went away: nothing to do */
}

/* Read up to the end of the request line, at most REQ_MAX bytes and REQ_TIMEOUT_MS. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;

	while (n + 1 < cap) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&p, 1, REQ_TIMEOUT_MS) <= 0)
			return -ETIMEDOUT;
		r = read(fd, buf + n, cap - 1 - n);
		if (r <= 0)
			return -EIO;
		n += (size_t)r;
		buf[n] = '\0';
		if (strstr(buf, "\r\n") || strchr(buf, '\n'))
			return 0;
	}
	return -E2BIG;
}

static void serve_one(struct ts_health *h, int fd)
{
	char req[REQ_MAX], why[256] = "";

	if (read_line(fd, req, sizeof(req))) {
		reply(fd, 400, "bad request");
		return;
	}
	if (!strncmp(req, "GET /healthz ", 13) || !strncmp(req, "GET /healthz\r", 13)) {
		reply(fd, 200, "ok");
	} else if (!strncmp(req, "GET /readyz ", 12) || !strncmp(req, "GET /readyz\r", 12)) {
		if (!h->ready || h->ready(h->arg, why, sizeof(why)) == 0)
			reply(fd, 200, "ready");
		else
			reply(fd, 503, why[0] ? why : "not ready");
	} else if (!strncmp(req, "GET ", 4)) {
		reply(fd, 404, "not found: /healthz and /readyz are served");
	} else {
		reply(fd, 400, "bad request");
	}
}

static void *health_main(void *arg)
{
	struct ts_health *h = arg;

	for (;;) {
		struct pollfd p[2] = { { h->lfd, POLLIN, 0 }, { h->stop_pipe[0], POLLIN, 0 } };
		int fd;

		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		fd = accept(h->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		serve_one(h, fd);
		close(fd);
	}
	return NULL;
}

static int parse_addr(const char *addr, struct sockaddr_in *sa)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	char host[64];
	char *end;
	unsigned long port;

	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return -EINVAL;
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || port > 65535)
		return -EINVAL;
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (!host[0] || !strcmp(host, "0.0.0.0"))
		sa->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -EINVAL;
	return 0;
}

int ts_health_start(const char *addr, ts_health_ready_fn ready, void *arg,
		    struct ts_health **out)
{
	struct sockaddr_in sa;
	socklen_t sl = sizeof(sa);
	struct ts_health *h;
	int one = 1, rc;

	*out = NULL;
	rc = parse_addr(addr, &sa);
	if (rc)
		return rc;
	h = ts_calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->ready = ready;
	h->arg = arg;
	h->stop_pipe[0] = h->stop_pipe[1] = -1;
	h->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (h->lfd < 0 || setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(h->lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(h->lfd, 16) ||
	    getsockname(h->lfd, (struct sockaddr *)&sa, &sl) || pipe(h->stop_pipe)) {
		rc = -errno;
		goto fail;
	}
	h->port = ntohs(sa.sin_port);
	rc = -pthread_create(&h->thread, NULL, health_main, h);
	if (rc)
		goto fail;
	*out = h;
	return 0;
fail:
	if (h->lfd >= 0)
		close(h->lfd);
	if (h->stop_pipe[0] >= 0) {
		close(h->stop_pipe[0]);
		close(h->stop_pipe[1]);
	}
	ts_free(h);
	return rc;
}

unsigned ts_health_port(const struct ts_health *h)
{
	return h->port;
}

void ts_health_stop(struct ts_health *h)
{
	if (!h)
		return;
	if (write(h->stop_pipe[1], "x", 1) != 1)
		ts_log(TS_LOG_WARN, "health", "stop: %s", strerror(errno));
	pthread_join(h->thread, NULL);
	close(h->lfd);
	close(h->stop_pipe[0]);
	close(h->stop_pipe[1]);
	ts_free(h);
}
