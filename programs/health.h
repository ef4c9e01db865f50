/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The daemons' health endpoint for kubelet's probes (`--health-addr
 * HOST:PORT`): plain HTTP/1.0 on TCP, two paths.
 *
 *   GET /healthz   200 "ok" while the process serves this thread at all
 *                  (liveness: a hung process stops answering)
 *   GET /readyz    200 "ready" when \p ready answers 0, else 503 with the
 *                  reason it wrote (readiness: a passive controller replica
 *                  is alive but not ready)
 *
 * Anything else is 404; a request that is not a GET line within 2 s or
 * 1 KiB is 400 and closed. One thread, one connection at a time (probes are
 * tiny and periodic).
 *
 * THREAD SAFETY: \p ready is called from the health thread.
 */
#ifndef TS_PROGRAMS_HEALTH_H
#define TS_PROGRAMS_HEALTH_H

#include <stddef.h>

struct ts_health;

/** 0 when ready; else non-zero with a one-line reason in \p why (\p len bytes). */
typedef int (*ts_health_ready_fn)(void *arg, char *why, size_t len);

/**
 * Listen on \p addr ("HOST:PORT"; PORT 0 picks one, see ts_health_port) and
 * serve. 0 and *\p out, -EINVAL (bad address), -EADDRINUSE, -errno.
 */
int ts_health_start(const char *addr, ts_health_ready_fn ready, void *arg,
		    struct ts_health **out);

/** The port listened on. */
unsigned ts_health_port(const struct ts_health *h);

/** Stop and free (NULL is a no-op). */
void ts_health_stop(struct ts_health *h);

#endif /* TS_PROGRAMS_HEALTH_H */
