/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Common helpers: error strings, the allocation wrapper with failure
 * injection, logfmt logging and small IO helpers.
 *
 * The allocation wrapper exists so unit tests can make any allocation fail
 * and check that every caller returns -ENOMEM and leaks nothing. Its only
 * state is one atomic countdown; when it is negative injection is off.
 */
#include "dataplane/common/ts_common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <libgen.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static atomic_long g_alloc_countdown = -1;
static atomic_int g_log_level = -1;

static const char *const g_ts_err_text[] = {
	[0] = "tessera error",
	[1] = "on-disk structure is corrupt",
	[2] = "disk belongs to another format, cluster or node",
	[3] = "geometry mismatch",
	[4] = "device too small",
	[5] = "stale member",
	[6] = "not enough members to serve the request",
	[7] = "no free extents",
	[8] = "unsupported on-disk format version",
	[9] = "member IO failed",
	[10] = "fenced: another engine owns the array group",
};

const char *ts_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err <= TS_ERR_BASE && err > TS_ERR_LAST)
		return g_ts_err_text[TS_ERR_BASE - err];
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}

static int alloc_should_fail(void)
{
	long v = atomic_load(&g_alloc_countdown);
	while (v >= 0) {
		if (v == 0)
			return 1;
		if (atomic_compare_exchange_weak(&g_alloc_countdown, &v, v - 1))
			return 0;
	}
	return 0;
}

void ts_alloc_fail_after(long n)
{
	atomic_store(&g_alloc_countdown, n);
}

void *ts_malloc(size_t size)
{
	return alloc_should_fail() ? NULL : malloc(size);
}

void *ts_calloc(size_t n, size_t size)
{
	return alloc_should_fail() ? NULL : calloc(n, size);
}

void *ts_realloc(void *p, size_t size)
{
	return alloc_should_fail() ? NULL : realloc(p, size);
}

void *ts_aligned_alloc(size_t align, size_t size)
{
	void *p = NULL;

	if (alloc_should_fail())
		return NULL;
	if (posix_memalign(&p, align, size ? size : align) != 0)
		return NULL;
	return p;
}

char *ts_strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = ts_malloc(n);

	if (d)
		memcpy(d, s, n);
	return d;
}

void ts_free(void *p)
{
	free(p);
}

void ts_log_set_level(enum ts_log_level lvl)
{
	atomic_store(&g_log_level, (int)lvl);
}

static int log_level(void)
{
	int lvl = atomic_load(&g_log_level);
	if (lvl >= 0)
		return lvl;
	lvl = TS_LOG_INFO;
	const char *e = getenv("TS_LOG_LEVEL");
	if (e) {
		if (!strcasecmp(e, "debug"))
			lvl = TS_LOG_DEBUG;
		else if (!strcasecmp(e, "warn"))
			lvl = TS_LOG_WARN;
		else if (!strcasecmp(e, "error"))
			lvl = TS_LOG_ERROR;
	}
	atomic_store(&g_log_level, lvl);
	return lvl;
}

void ts_log(enum ts_log_level lvl, const char *mod, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };
	char msg[1024];
	struct timespec ts;
	struct tm tm;
	va_list ap;

	if ((int)lvl < log_level())
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s mod=%s msg=\"%s\"\n",
		tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		ts.tv_nsec / 1000000, names[lvl], mod, msg);
}

int ts_parse_size(const char *s, uint64_t *out)
{
	static const char units[] = "KMGTP";
	unsigned long long v;
	const char *u;
	unsigned shift = 0;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end && (u = strchr(units, *end >= 'a' ? *end - 32 : *end)) && *u) {
		shift = 10 * (unsigned)(u - units + 1);
		end++;
		if (*end == 'i')
			end++;
	}
	if (*end == 'B' || (*end == 'b' && shift))
		end++;
	if (*end)
		return -EINVAL;
	if (v > (unsigned long long)INT64_MAX >> shift)
		return -ERANGE;
	*out = (uint64_t)v << shift;
	return 0;
}

uint64_t ts_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void ts_deadline_ms(struct timespec *ts, unsigned ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void ts_stop_init(struct ts_stop *s)
{
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->stop = false;
}

void ts_stop_fini(struct ts_stop *s)
{
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
}

bool ts_stop_nap(struct ts_stop *s, unsigned ms)
{
	struct timespec ts;
	bool stop;

	ts_deadline_ms(&ts, ms);
	pthread_mutex_lock(&s->lock);
	while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) != ETIMEDOUT)
		;
	stop = s->stop;
	pthread_mutex_unlock(&s->lock);
	return stop;
}

void ts_stop_set(struct ts_stop *s)
{
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

int ts_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const char *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int ts_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	char *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int ts_uuid_generate(uint8_t out[16])
{
	size_t got = 0;

	while (got < 16) {
		ssize_t n = getrandom(out + got, 16 - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		got += (size_t)n;
	}
	out[6] = (uint8_t)((out[6] & 0x0f) | 0x40); /* version 4 */
	out[8] = (uint8_t)((out[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	return 0;
}

void ts_uuid_format(const uint8_t u[16], char out[37])
{
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int ts_uuid_parse(const char *s, uint8_t out[16])
{
	int j = 0;

	if (strlen(s) != 36)
		return -EINVAL;
	for (int i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -EINVAL;
			i++;
			continue;
		}
		int hi = hexval(s[i]), lo = hexval(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

int ts_file_write_atomic(const char *path, const void *buf, size_t len)
{
	char tmp[4096], dir[4096];
	int fd = -1, dfd = -1, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp) ||
	    snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = ts_pwrite_full(fd, buf, len, 0);
	if (rc == 0 && fsync(fd) != 0)
		rc = -errno;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc != 0) {
		unlink(tmp);
		return rc;
	}
	dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return -errno;
	if (fsync(dfd) != 0)
		rc = -errno;
	close(dfd);
	return rc;
}

int ts_file_read_all(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	if ((size_t)st.st_size > max) {
		rc = -EFBIG;
		goto out;
	}
	buf = ts_malloc((size_t)st.st_size + 1);
	if (!buf) {
		rc = -ENOMEM;
		goto out;
	}
	rc = st.st_size ? ts_pread_full(fd, buf, (size_t)st.st_size, 0) : 0;
	if (rc != 0) {
		ts_free(buf);
		goto out;
	}
	buf[st.st_size] = '\0';
	*out = buf;
	if (len)
		*len = (size_t)st.st_size;
out:
	close(fd);
	return rc;
}

int ts_mkdir_p(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf))
		return -EINVAL;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}
