/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-volume IO arbitration.
 *
 * Workload. Every IO of a served volume passes here, so the common case (no
 * overlap) must cost little: one small allocation for the IO's range
 * request, one range-lock insert and one remove. Overlap is rare except
 * for clustered applications writing shared metadata blocks, where it is
 * the whole point.
 *
 * Design. One ts_rl per volume, in units of TS_VOLUME_BLOCK: reads take
 * their range SHARED, writes and unmaps EXCL. A granted IO is submitted to
 * the volume; its completion releases the range (which may grant, and so
 * submit, the IOs waiting behind it on this same thread) and then calls
 * the caller back. Releasing before the callback lets a caller that issues
 * its next IO from the callback find the range free. Because the volume
 * completes every submitted IO, a hold always ends and waiting IO always
 * goes: there is no cycle (frontends take their own locks, such as the
 * iSCSI engine's COMPARE AND WRITE ranges, before this one, never after).
 *
 * The arbiters live in a registry keyed by (pool, volume id), so every
 * frontend of a volume in this process shares one; the registry owns the
 * volume handle it opened.
 *
 * Recursion: a release grants waiters on the releasing thread, and a
 * granted IO that completes inline (a read of unwritten blocks) releases in
 * turn, so a chain of k waiting IOs may nest k deep; k is bounded by the
 * frontends' queue depths (hundreds), a few hundred bytes of stack each.
 *
 * THREAD SAFETY: g_arb_mu guards the registry and reference counts. The IO
 * path touches only the ts_rl (its own mutex), the volume (its own) and
 * atomic counters.
 */
#include "volumedriver/arbiter/arbiter.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/rangelock/rangelock.h"

enum arb_op { ARB_READ, ARB_WRITE, ARB_UNMAP };

struct ts_arb {
	struct ts_arb *next; /* registry */
	struct ts_vpool *pool;
	uint64_t vol_id;
	unsigned refs;
	struct ts_volume *vol;
	struct ts_rl *rl;
	atomic_uint_fast64_t n[3]; /* per enum arb_op */
};

struct arb_io {
	struct ts_rl_req rl;
	struct ts_arb *a;
	enum arb_op op;
	uint64_t off, len;
	void *buf;
	ts_volume_cb cb;
	void *arg;
};

static pthread_mutex_t g_arb_mu = PTHREAD_MUTEX_INITIALIZER;
static struct ts_arb *g_arbs;

int ts_arb_open(struct ts_vpool *pool, uint64_t vol_id, struct ts_arb **out)
{
	struct ts_arb *a;
	int rc;

	if (!pool || !out)
		return -EINVAL;
	pthread_mutex_lock(&g_arb_mu);
	for (a = g_arbs; a; a = a->next)
		if (a->pool == pool && a->vol_id == vol_id)
			break;
	if (a) {
		a->refs++;
		pthread_mutex_unlock(&g_arb_mu);
		*out = a;
		return 0;
	}
	rc = -ENOMEM;
	a = ts_calloc(1, sizeof(*a));
	if (!a)
		goto fail;
	rc = ts_rl_create(&a->rl);
	if (rc)
		goto fail;
	rc = ts_volume_open(pool, vol_id, &a->vol);
	if (rc)
		goto fail;
	a->pool = pool;
	a->vol_id = vol_id;
	a->refs = 1;
	a->next = g_arbs;
	g_arbs = a;
	pthread_mutex_unlock(&g_arb_mu);
	*out = a;
	return 0;
fail:
	if (a)
		ts_rl_destroy(a->rl);
	ts_free(a);
	pthread_mutex_unlock(&g_arb_mu);
	return rc;
}

void ts_arb_close(struct ts_arb *a)
{
	struct ts_arb **pp;

	if (!a)
		return;
	pthread_mutex_lock(&g_arb_mu);
	if (--a->refs) {
		pthread_mutex_unlock(&g_arb_mu);
		return;
	}
	for (pp = &g_arbs; *pp != a; pp = &(*pp)->next)
		;
	*pp = a->next;
	pthread_mutex_unlock(&g_arb_mu);
	ts_volume_close(a->vol);
	ts_rl_destroy(a->rl);
	ts_free(a);
}

struct ts_volume *ts_arb_volume(struct ts_arb *a)
{
	return a ? a->vol : NULL;
}

/* ---- the IO path ---- */

static void arb_done(void *arg, int status)
{
	struct arb_io *io = arg;
	ts_volume_cb cb = io->cb;
	void *cb_arg = io->arg;

	ts_rl_unlock(io->a->rl, &io->rl);
	ts_free(io);
	cb(cb_arg, status);
}

static int arb_start(struct arb_io *io)
{
	struct ts_volume *v = io->a->vol;

	switch (io->op) {
	case ARB_READ:
		return ts_volume_read(v, io->off, io->len, io->buf, arb_done, io);
	case ARB_WRITE:
		return ts_volume_write(v, io->off, io->len, io->buf, arb_done, io);
	case ARB_UNMAP:
		return ts_volume_unmap(v, io->off, io->len, arb_done, io);
	}
	return -EINVAL;
}

/* A waiting IO got its range (on the releasing thread). */
static void arb_granted(struct ts_rl_req *r, void *arg)
{
	struct arb_io *io = arg;
	int rc;

	(void)r;
	rc = arb_start(io);
	if (rc < 0) {
		ts_volume_cb cb = io->cb;
		void *cb_arg = io->arg;

		ts_rl_unlock(io->a->rl, &io->rl);
		ts_free(io);
		cb(cb_arg, rc); /* the submitter was told 0: the error comes here */
	}
}

static int arb_submit(struct ts_arb *a, enum arb_op op, uint64_t off, uint64_t len, void *buf,
		      ts_volume_cb cb, void *arg)
{
	struct arb_io *io;
	int rc;

	if (!a || !cb || (op != ARB_UNMAP && !buf) || !len || off % TS_VOLUME_BLOCK ||
	    len % TS_VOLUME_BLOCK || off + len < off)
		return -EINVAL;
	io = ts_malloc(sizeof(*io));
	if (!io)
		return -ENOMEM;
	*io = (struct arb_io){.a = a, .op = op, .off = off, .len = len, .buf = buf, .cb = cb, .arg = arg};
	rc = ts_rl_lock_async(a->rl, &io->rl, off / TS_VOLUME_BLOCK, len / TS_VOLUME_BLOCK,
			      op == ARB_READ ? TS_RL_SHARED : TS_RL_EXCL, arb_granted, io);
	if (rc < 0) {
		ts_free(io);
		return rc;
	}
	atomic_fetch_add_explicit(&a->n[op], 1, memory_order_relaxed);
	if (rc == 0)
		return 0; /* waits: arb_granted submits it */
	rc = arb_start(io);
	if (rc < 0) {
		ts_rl_unlock(a->rl, &io->rl);
		ts_free(io);
	}
	return rc;
}

int ts_arb_read(struct ts_arb *a, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		void *arg)
{
	return arb_submit(a, ARB_READ, off, len, buf, cb, arg);
}

int ts_arb_write(struct ts_arb *a, uint64_t off, uint64_t len, const void *buf, ts_volume_cb cb,
		 void *arg)
{
	return arb_submit(a, ARB_WRITE, off, len, (void *)(uintptr_t)buf, cb, arg);
}

int ts_arb_unmap(struct ts_arb *a, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg)
{
	return arb_submit(a, ARB_UNMAP, off, len, NULL, cb, arg);
}

void ts_arb_stats(struct ts_arb *a, struct ts_arb_stats *out)
{
	struct ts_rl_stats rs;

	ts_rl_stats(a->rl, &rs);
	out->reads = atomic_load(&a->n[ARB_READ]);
	out->writes = atomic_load(&a->n[ARB_WRITE]);
	out->unmaps = atomic_load(&a->n[ARB_UNMAP]);
	out->waited = rs.waited;
	out->in_flight = rs.held;
	out->waiting = rs.waiting;
}
