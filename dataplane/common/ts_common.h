/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Tessera's common ground: error codes, the allocation wrapper, logging and a
 * few helpers every module uses.
 *
 * Errors: every function that can fail returns 0 (or a non-negative count) on
 * success and a negative value on failure: either -errno, or one of the
 * project codes below, which sit below the errno range. ts_strerror() names
 * both.
 *
 * Memory: all allocations go through ts_malloc()/ts_calloc()/ts_realloc()/
 * ts_free() so tests can make the N-th allocation fail
 * (ts_alloc_fail_after()). On the IO path a failed allocation returns
 * -ENOMEM; nothing aborts.
 *
 * Logging: ts_log() writes one structured line (logfmt) to stderr:
 * `ts=... level=info mod=pem msg="..." key=value ...`.
 *
 * THREAD SAFETY: everything here is safe to call from any thread. The failure
 * injection counter is an atomic.
 */
#ifndef TS_COMMON_H
#define TS_COMMON_H

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/** Project error codes (all negative, below -4095, the errno range). */
enum ts_err {
	TS_ERR_BASE = -10000,
	TS_ERR_CORRUPT = -10001,      /**< on-disk structure failed its checksum or sanity checks */
	TS_ERR_FOREIGN = -10002,      /**< disk belongs to another format, cluster or node */
	TS_ERR_GEOMETRY = -10003,     /**< extent size / block size / k+m mismatch */
	TS_ERR_TOO_SMALL = -10004,    /**< device too small for the requested layout */
	TS_ERR_STALE = -10005,        /**< member generation older than the group's */
	TS_ERR_DEGRADED = -10006,     /**< not enough members to serve the request */
	TS_ERR_NO_SPACE = -10007,     /**< no free extents */
	TS_ERR_VERSION = -10008,      /**< unsupported on-disk format version */
	TS_ERR_MEMBER_FAILED = -10009, /**< a member reported an IO error */
	TS_ERR_FENCED = -10010,       /**< a member refused the IO: another engine owns the group (docs/fencing.md) */
	TS_ERR_LAST = -10011,
};

/** Human-readable text for 0, -errno or a TS_ERR_* code. Never NULL; static storage. */
const char *ts_strerror(int err);

/* ---- allocation wrapper ---- */
void *ts_malloc(size_t size);
void *ts_calloc(size_t n, size_t size);
void *ts_realloc(void *p, size_t size);
/** Aligned allocation (alignment a power of two, >= sizeof(void*)); free with ts_free(). */
void *ts_aligned_alloc(size_t align, size_t size);
char *ts_strdup(const char *s);
void ts_free(void *p);
/**
 * Test hook: after \p n more successful allocations, every allocation fails
 * (returns NULL) until ts_alloc_fail_after(-1) disarms it.
 */
void ts_alloc_fail_after(long n);

/* ---- logging ---- */
enum ts_log_level { TS_LOG_DEBUG = 0, TS_LOG_INFO, TS_LOG_WARN, TS_LOG_ERROR };
/** Set the minimum level printed (default INFO; env TS_LOG_LEVEL=debug|info|warn|error). */
void ts_log_set_level(enum ts_log_level lvl);
/**
 * Log one line. \p mod is the module name; \p fmt a printf format for the
 * message, which may be followed by logfmt pairs written by the caller
 * (e.g. ts_log(TS_LOG_WARN, "pem", "bad superblock disk=%s", path)).
 */
void ts_log(enum ts_log_level lvl, const char *mod, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- helpers ---- */
#define TS_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define TS_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TS_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TS_DIV_ROUND_UP(a, b) (((a) + (b) - 1) / (b))
#define TS_ALIGN_UP(a, b) (TS_DIV_ROUND_UP(a, b) * (b))

/**
 * Parse a size: decimal digits, then an optional binary unit K, M, G, T, P
 * (any case, each may be followed by `i` and/or `B`; all are powers of 1024),
 * or a lone `B`. Returns 0 and *\p out (may be 0), -EINVAL (empty, junk) or
 * -ERANGE (beyond INT64_MAX).
 */
int ts_parse_size(const char *s, uint64_t *out);

/** Monotonic clock in nanoseconds. */
uint64_t ts_now_ns(void);

struct timespec;
/**
 * \p ms from now on CLOCK_REALTIME, into *\p ts: the absolute deadline
 * pthread_cond_timedwait() takes (default condition attributes).
 */
void ts_deadline_ms(struct timespec *ts, unsigned ms);

/**
 * A background thread's stop flag and the wait between its rounds: the
 * thread sleeps in ts_stop_nap(), the owner wakes it for good with
 * ts_stop_set() and then joins it. Init before the thread starts, fini after
 * it was joined.
 */
struct ts_stop {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};
void ts_stop_init(struct ts_stop *s);
void ts_stop_fini(struct ts_stop *s);
/** Wait \p ms or until stopped; true once stopped. */
bool ts_stop_nap(struct ts_stop *s, unsigned ms);
/** Stop: every nap returns true from now on, a running one at once. */
void ts_stop_set(struct ts_stop *s);

/**
 * Write all of \p len bytes at \p off (retrying short writes and EINTR).
 * Returns 0 or -errno.
 */
int ts_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/** Read all of \p len bytes at \p off; reading past EOF returns -EIO. 0 or -errno. */
int ts_pread_full(int fd, void *buf, size_t len, uint64_t off);

/**
 * Replace the file at \p path with \p len bytes atomically and durably:
 * write a temporary file beside it (`<path>.<pid>.tmp`, so leftovers of a
 * crash end in `.tmp`), fsync, rename over \p path, fsync the directory. A crash leaves either the old or the new content. 0 or -errno.
 */
int ts_file_write_atomic(const char *path, const void *buf, size_t len);

/**
 * Read a whole (small) file into a NUL-terminated buffer the caller frees
 * with ts_free(). \p max bounds the size (-EFBIG beyond). 0 or -errno.
 */
int ts_file_read_all(const char *path, size_t max, char **out, size_t *len);

/** mkdir -p with mode 0700 for created components. 0 or -errno. */
int ts_mkdir_p(const char *path);

/** Fill \p out with 16 random bytes (getrandom). 0 or -errno. */
int ts_uuid_generate(uint8_t out[16]);
/** Format a uuid as 36 chars + NUL into \p out (37 bytes). */
void ts_uuid_format(const uint8_t uuid[16], char out[37]);
/** Parse the 36-char form. 0 or -EINVAL. */
int ts_uuid_parse(const char *s, uint8_t out[16]);

#endif /* TS_COMMON_H */
