/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group IO path: the request queue and its workers, the stripe range
 * lock, member IO batches, and the stripe primitives (fetch with decode,
 * put, full-stripe encode, read-modify-write of parity).
 *
 * Workload. Block IO from the main cache: small random reads and writes,
 * large sequential writes, flushes. Reads must stay cheap while healthy: a
 * read touches only the members holding its bytes (never whole stripes).
 * Writes covering whole stripes encode; smaller writes update parity from
 * old^new deltas (read-modify-write with ec_encode_data_update).
 *
 * Structure. Requests are queued to a few worker threads; a worker runs one
 * request at a time, issuing its member IOs in parallel and waiting for them
 * (member completions only signal). Overlapping requests are ordered by a
 * stripe range lock (shared for reads, exclusive for writes and resync):
 * degraded reads decode from several chunks of a stripe and must not see a
 * half-applied parity update.
 *
 * Invariants. A write sets the regions' write-intent bits durably before any
 * stripe in them is written (agrp_bitmap.c); writes that skip a slot set
 * its out-of-date bit first; a write to a stripe with data roles missing is
 * preceded by a rescue record (agrp_rescue.c). Member IO errors fail the
 * member (generation bump on the others) and the request carries on
 * degraded; a read that would decode an untrusted region fails with -EIO.
 * A member IO failing with TS_ERR_FENCED is not a member failure: another
 * engine owns the group (docs/fencing.md). The group is then fenced for
 * good: the request stops where it is, and this and every later request
 * fails with TS_ERR_FENCED before touching a member (no member is failed,
 * no bitmap, rescue record or superblock is written, no write hook runs,
 * so nothing is copied to the replica journals either).
 *
 * THREAD SAFETY: see agrp.h. g->ranges (a ts_rl, its own leaf mutex) holds the
 * in-flight stripe ranges; queue_lock/queue_cond guard the request queue (leaf). Order: range ->
 * state -> bm -> queue. Each worker owns its scratch and rescue slot (no
 * lock). A fan-out's lock (dataplane/member) is a leaf held by nothing else.
 * User callbacks run on a worker with no group lock held.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

enum req_op { REQ_READ, REQ_WRITE, REQ_FLUSH };

struct agrp_req {
	enum req_op op;
	uint64_t off, len;
	void *buf;
	ts_agrp_cb cb;
	void *arg;
	struct agrp_req *next;
};


/* ------------------------------------------------------------------ */
/* member IO batches */

void agrp_batch_add(struct ts_member_fanout *b, struct mio *x, struct ts_member *m, unsigned slot,
		    enum ts_member_op op, uint32_t flags, uint64_t off, uint64_t len, void *buf)
{
	memset(x, 0, sizeof(*x));
	x->slot = slot;
	x->fio.io.op = op;
	x->fio.io.flags = flags;
	x->fio.io.offset = off;
	x->fio.io.len = len;
	x->fio.io.buf = buf;
	if (m)
		ts_member_fanout_add(b, &x->fio, m); /* a submit error lands in fio.status */
	else
		x->fio.status = TS_ERR_MEMBER_FAILED;
}

/* ------------------------------------------------------------------ */
/* range lock */

/*
 * Blocking: a worker thread waits for the overlapping holds before it (FIFO,
 * so a rejoin's whole-volume hold is not starved by a stream of IO).
 * s0 <= s1 < nstripes always, so ts_rl_lock() cannot refuse the range.
 */
void agrp_range_acquire(struct ts_agrp *g, struct range *r, uint64_t s0, uint64_t s1, int excl)
{
	int rc;

	memset(r, 0, sizeof(*r));
	rc = ts_rl_lock(g->ranges, &r->rl, s0, s1 - s0 + 1, excl ? TS_RL_EXCL : TS_RL_SHARED);
	assert(rc == 0);
	(void)rc;
}

void agrp_range_release(struct ts_agrp *g, struct range *r)
{
	ts_rl_unlock(g->ranges, &r->rl);
}

/* ------------------------------------------------------------------ */
/* stripe primitives (caller holds the stripe's range lock) */

/*
 * Make bufs[r] hold bytes [o, o+l) of every role r in \p want of stripe s,
 * reading live members and decoding the rest. Read errors fail the member
 * and the fetch is retried. \p trust_all ignores the untrusted marks
 * (rebuild of a member that must be rebuilt anyway).
 */
int agrp_stripe_fetch(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint32_t o, uint32_t l,
			uint64_t want, uint8_t **bufs, int trust_all)
{
	for (unsigned attempt = 0; attempt <= g->n; attempt++) {
		uint64_t live = agrp_live_mask(g), dead = dead_roles(g, s, live), rd = want & ~dead;
		uint8_t *frags[MAXN];
		struct mio x[MAXN];
		struct ts_member_fanout b;
		unsigned cnt = 0, got = 0, bad = 0;

		if (agrp_fenced(g))
			return TS_ERR_FENCED;
		if ((unsigned)popcount64(dead) > g->m)
			return TS_ERR_DEGRADED;
		if (want & dead) {
			if (!trust_all && agrp_region_untrusted(g, s))
				return -EIO;
			for (unsigned r = 0; r < g->n && got < g->k; r++)
				if (!(dead & (1ull << r))) {
					rd |= 1ull << r;
					got++;
				}
		}
		for (unsigned r = 0; r < g->n; r++) {
			frags[r] = (want & (1ull << r)) ? bufs[r] : sc->fetch + (size_t)r * g->chunk;
		}
		ts_member_fanout_init(&b);
		for (unsigned r = 0; r < g->n; r++) {
			unsigned sl = slot_of(g, s, r);

			if (rd & (1ull << r))
				agrp_batch_add(&b, &x[cnt++], g->slot[sl].m, sl, TS_MEMBER_READ, 0,
					  moff(g, s, o), l, frags[r]);
		}
		ts_member_fanout_wait(&b);
		for (unsigned j = 0; j < cnt; j++) {
			if (x[j].fio.status) {
				agrp_member_fail(g, x[j].slot, x[j].fio.status);
				bad = 1;
			}
		}
		if (agrp_fenced(g))
			return TS_ERR_FENCED;
		if (bad)
			continue;
		if (want & dead)
			return ts_ec_decode(g->ec, l, frags, dead);
		return 0;
	}
	return TS_ERR_DEGRADED;
}

/*
 * Write pieces to members: for each role in \p roles, \p l bytes at chunk
 * offset o from bufs[r]. Slots not live are skipped. Failed writes fail the
 * member and set its out-of-date bit. Returns 0 unless more than m are out.
 */
int agrp_stripe_put(struct ts_agrp *g, uint64_t s, const uint32_t *o, const uint32_t *l,
		      uint64_t roles, uint8_t *const *bufs)
{
	uint64_t live = agrp_live_mask(g), failed = 0, ood = 0;
	struct mio x[MAXN];
	struct ts_member_fanout b;
	unsigned cnt = 0;

	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	/* slots not live miss this write: out of date from now on (durably first) */
	ood = ((1ull << g->n) - 1) & ~live;
	if (ood)
		agrp_bm_mark(g, region_of(g, s), region_of(g, s), 0, ood);
	live = agrp_live_mask(g);
	ts_member_fanout_init(&b);
	for (unsigned r = 0; r < g->n; r++) {
		unsigned sl = slot_of(g, s, r);

		if (!(roles & (1ull << r)) || !(live & (1ull << sl)))
			continue;
		agrp_batch_add(&b, &x[cnt++], g->slot[sl].m, sl, TS_MEMBER_WRITE, 0, moff(g, s, o[r]),
			  l[r], bufs[r]);
	}
	ts_member_fanout_wait(&b);
	for (unsigned j = 0; j < cnt; j++) {
		if (x[j].fio.status) {
			agrp_member_fail(g, x[j].slot, x[j].fio.status);
			failed |= 1ull << x[j].slot;
		}
	}
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	if (failed)
		agrp_bm_mark(g, region_of(g, s), region_of(g, s), 0, failed);
	if ((unsigned)popcount64(~agrp_live_mask(g) & ((g->n == 64) ? ~0ull : ((1ull << g->n) - 1))) >
	    g->m)
		return TS_ERR_DEGRADED;
	return 0;
}

/* Recompute and write all parity of stripe s from its data (resync). */
int agrp_stripe_resync_parity(struct ts_agrp *g, struct scratch *sc, uint64_t s)
{
	uint8_t *bufs[MAXN];
	uint32_t o[MAXN] = { 0 }, l[MAXN];
	uint64_t data = (1ull << g->k) - 1;
	int rc;

	for (unsigned r = 0; r < g->n; r++) {
		bufs[r] = sc->work + (size_t)r * g->chunk;
		l[r] = g->chunk;
	}
	rc = agrp_stripe_fetch(g, sc, s, 0, g->chunk, data, bufs, 1);
	if (rc)
		return rc;
	ts_ec_encode(g->ec, g->chunk, bufs, bufs + g->k);
	return agrp_stripe_put(g, s, o, l, ((1ull << g->n) - 1) & ~data, bufs);
}

/*
 * Write \p len bytes of stripe data at stripe-relative offset \p soff
 * (0 <= soff < k*chunk) from \p src.
 */
static int stripe_write_inner(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			      uint64_t len, const uint8_t *src)
{
	uint8_t *bufs[MAXN];
	uint32_t o[MAXN], l[MAXN];
	unsigned k = g->k, d0 = (unsigned)(soff / g->chunk), d1 = (unsigned)((soff + len - 1) / g->chunk);
	uint64_t roles = 0, want = 0;
	uint32_t lo = g->chunk, hi = 0;
	int rc;

	if (soff == 0 && len == (uint64_t)k * g->chunk) {
		for (unsigned r = 0; r < k; r++)
			bufs[r] = (uint8_t *)src + (size_t)r * g->chunk;
		for (unsigned p = 0; p < g->m; p++)
			bufs[k + p] = sc->work + (size_t)(k + p) * g->chunk;
		ts_ec_encode(g->ec, g->chunk, bufs, bufs + k);
		for (unsigned r = 0; r < g->n; r++) {
			o[r] = 0;
			l[r] = g->chunk;
		}
		return agrp_stripe_put(g, s, o, l, (g->n == 64) ? ~0ull : (1ull << g->n) - 1, bufs);
	}
	/* read-modify-write over the union [lo, hi) of the touched chunk ranges */
	for (unsigned d = d0; d <= d1; d++) {
		uint64_t a = TS_MAX(soff, (uint64_t)d * g->chunk), e = TS_MIN(soff + len, (uint64_t)(d + 1) * g->chunk);

		o[d] = (uint32_t)(a - (uint64_t)d * g->chunk);
		l[d] = (uint32_t)(e - a);
		lo = TS_MIN(lo, o[d]);
		hi = TS_MAX(hi, o[d] + l[d]);
		want |= 1ull << d;
	}
	for (unsigned r = 0; r < g->n; r++)
		bufs[r] = sc->work + (size_t)r * g->chunk;
	{
		uint64_t dead = dead_roles(g, s, agrp_live_mask(g));

		for (unsigned p = k; p < g->n; p++)
			if (!(dead & (1ull << p)))
				want |= 1ull << p;
	}
	rc = agrp_stripe_fetch(g, sc, s, lo, hi - lo, want, bufs, 0);
	if (rc)
		return rc;
	{
		uint8_t *par[TS_EC_MAX_M];

		for (unsigned d = d0; d <= d1; d++) {
			const uint8_t *nw = src + ((uint64_t)d * g->chunk + o[d] - soff);
			uint8_t *old = bufs[d] + (o[d] - lo);

			for (uint32_t i = 0; i < l[d]; i++)
				sc->delta[i] = old[i] ^ nw[i];
			for (unsigned p = 0; p < g->m; p++)
				par[p] = (want & (1ull << (k + p))) ? bufs[k + p] + (o[d] - lo) : NULL;
			ts_ec_update(g->ec, l[d], d, sc->delta, par);
			bufs[d] = (uint8_t *)nw; /* write the new data straight from the caller */
			roles |= 1ull << d;
		}
	}
	for (unsigned p = k; p < g->n; p++) {
		if (!(want & (1ull << p)))
			continue;
		o[p] = lo;
		l[p] = hi - lo;
		roles |= 1ull << p;
	}
	return agrp_stripe_put(g, s, o, l, roles, bufs);
}

static int stripe_write(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			uint64_t len, const uint8_t *src)
{
	int rec = agrp_rescue_record(g, sc, s, soff, len, src), rc;

	if (rec < 0)
		return rec;
	rc = stripe_write_inner(g, sc, s, soff, len, src);
	if (rec)
		agrp_rescue_forget(g, sc);
	return rc;
}

/* ------------------------------------------------------------------ */
/* requests */

static int do_read(struct ts_agrp *g, struct scratch *sc, uint64_t off, uint64_t len, uint8_t *buf)
{
	uint64_t kc = (uint64_t)g->k * g->chunk, s0 = off / kc, s1 = (off + len - 1) / kc;
	uint64_t npieces = TS_DIV_ROUND_UP(len, g->chunk) + 1, live = agrp_live_mask(g), pos;
	struct mio *x = ts_calloc(npieces, sizeof(*x));
	uint64_t *vpos = ts_calloc(npieces, sizeof(*vpos));
	struct range rg;
	struct ts_member_fanout b;
	unsigned cnt = 0;
	int rc = 0;

	if (!x || !vpos) {
		rc = -ENOMEM;
		goto fail;
	}
	if (agrp_fenced(g)) {
		rc = TS_ERR_FENCED;
		goto fail;
	}
	agrp_range_acquire(g, &rg, s0, s1, 0);
	live = agrp_live_mask(g); /* after the range lock: a rejoin holds it while it changes membership */
	/* healthy fast path: one member IO per chunk piece, all in parallel */
	ts_member_fanout_init(&b);
	for (pos = off; pos < off + len; cnt++) {
		uint64_t s = pos / kc, so = pos % kc, e = TS_MIN(off + len, (pos / g->chunk + 1) * g->chunk);
		unsigned d = (unsigned)(so / g->chunk), sl = slot_of(g, s, d);

		if (live & (1ull << sl)) {
			agrp_batch_add(&b, &x[cnt], g->slot[sl].m, sl, TS_MEMBER_READ, 0,
				  moff(g, s, so % g->chunk), e - pos, buf + (pos - off));
		} else {
			/* absent from the snapshot: decode, but do not fail the slot (it may have rejoined since) */
			x[cnt].slot = sl;
			x[cnt].fio.status = TS_ERR_DEGRADED;
		}
		vpos[cnt] = pos;
		pos = e;
	}
	ts_member_fanout_wait(&b);
	/* failed or missing pieces: decode */
	for (unsigned j = 0; j < cnt && !rc; j++) {
		uint64_t s = vpos[j] / kc, so = vpos[j] % kc;
		uint64_t e = (j + 1 < cnt) ? vpos[j + 1] : off + len;
		unsigned d = (unsigned)(so / g->chunk);
		uint8_t *bufs[MAXN] = { 0 };

		if (!x[j].fio.status)
			continue;
		if (x[j].fio.status != TS_ERR_DEGRADED)
			agrp_member_fail(g, x[j].slot, x[j].fio.status); /* no-op if already out */
		if (agrp_fenced(g)) {
			rc = TS_ERR_FENCED; /* not one byte a fenced owner read is returned */
			break;
		}
		bufs[d] = buf + (vpos[j] - off);
		rc = agrp_stripe_fetch(g, sc, s, (uint32_t)(so % g->chunk), (uint32_t)(e - vpos[j]),
				  1ull << d, bufs, 0);
	}
	agrp_range_release(g, &rg);
fail:
	ts_free(x);
	ts_free(vpos);
	return rc;
}

static int do_write(struct ts_agrp *g, struct scratch *sc, uint64_t off, uint64_t len,
		    const uint8_t *buf)
{
	uint64_t kc = (uint64_t)g->k * g->chunk, s0 = off / kc, s1 = (off + len - 1) / kc;
	uint64_t r0 = region_of(g, s0), r1 = region_of(g, s1), all, live;
	struct range rg;
	int rc = 0;

	agrp_range_acquire(g, &rg, s0, s1, 1);
	all = (g->n == 64) ? ~0ull : (1ull << g->n) - 1;
	live = agrp_live_mask(g);
	if (agrp_fenced(g)) { /* before the hook: a stale owner copies nothing to the journals */
		rc = TS_ERR_FENCED;
		goto out;
	}
	if ((unsigned)popcount64(all & ~live) > g->m) {
		rc = TS_ERR_DEGRADED;
		goto out;
	}
	if (g->opts.write_hook) {
		rc = g->opts.write_hook(g->opts.write_hook_ctx, off, len, buf, all & ~live);
		if (rc == TS_ERR_FENCED)
			agrp_set_fenced(g, -1); /* a journal refused it: the same verdict as a member's */
		if (!rc && agrp_fenced(g))
			rc = TS_ERR_FENCED;
		if (rc)
			goto out;
	}
	agrp_bm_mark(g, r0, r1, 1, all & ~live);
	for (uint64_t pos = off; pos < off + len && !rc;) {
		uint64_t s = pos / kc, e = TS_MIN(off + len, (s + 1) * kc);

		rc = stripe_write(g, sc, s, pos % kc, e - pos, buf + (pos - off));
		pos = e;
	}
	/* members failed while it was applied: the hook sees the write again,
	 * with the slots that missed it (the data is the same, now final) */
	if (rc == 0 && !agrp_fenced(g) && g->opts.write_hook && (live & ~agrp_live_mask(g)))
		rc = g->opts.write_hook(g->opts.write_hook_ctx, off, len, buf, all & ~agrp_live_mask(g));
	agrp_bm_write_done(g, r0, r1);
out:
	agrp_range_release(g, &rg);
	return rc;
}

int agrp_do_flush(struct ts_agrp *g)
{
	uint64_t live, seq;
	struct mio x[MAXN];
	struct ts_member_fanout b;
	unsigned cnt = 0;

	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	pthread_mutex_lock(&g->bm_lock);
	seq = g->done_seq;
	pthread_mutex_unlock(&g->bm_lock);
	live = agrp_live_mask(g);
	ts_member_fanout_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	ts_member_fanout_wait(&b);
	for (unsigned j = 0; j < cnt; j++)
		if (x[j].fio.status)
			agrp_member_fail(g, x[j].slot, x[j].fio.status);
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	if ((unsigned)popcount64(agrp_live_mask(g)) < g->k)
		return TS_ERR_DEGRADED;
	/* everything completed up to seq is durable: idle regions are clean */
	agrp_bm_clear_where(g, 0, seq, 1);
	return 0;
}

void *agrp_worker_main(void *arg)
{
	struct worker *w = arg;
	struct ts_agrp *g = w->g;

	for (;;) {
		struct agrp_req *rq;
		int rc;

		pthread_mutex_lock(&g->queue_lock);
		while (!g->qhead && !g->stop)
			pthread_cond_wait(&g->queue_cond, &g->queue_lock);
		rq = g->qhead;
		if (!rq) {
			pthread_mutex_unlock(&g->queue_lock);
			break;
		}
		g->qhead = rq->next;
		if (!g->qhead)
			g->qtail = NULL;
		pthread_mutex_unlock(&g->queue_lock);
		if (rq->op == REQ_READ)
			rc = do_read(g, &w->sc, rq->off, rq->len, rq->buf);
		else if (rq->op == REQ_WRITE)
			rc = do_write(g, &w->sc, rq->off, rq->len, rq->buf);
		else
			rc = agrp_do_flush(g);
		rq->cb(rq->arg, rc);
		ts_free(rq);
	}
	return NULL;
}

static int enqueue(struct ts_agrp *g, enum req_op op, uint64_t off, uint64_t len, void *buf,
		   ts_agrp_cb cb, void *arg)
{
	struct agrp_req *rq;

	if (!g || !cb)
		return -EINVAL;
	if (op != REQ_FLUSH &&
	    (!buf || len == 0 || off % g->bs || len % g->bs || off > ts_agrp_size(g) ||
	     len > ts_agrp_size(g) - off))
		return -EINVAL;
	rq = ts_calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->op = op;
	rq->off = off;
	rq->len = len;
	rq->buf = buf;
	rq->cb = cb;
	rq->arg = arg;
	pthread_mutex_lock(&g->queue_lock);
	if (g->qtail)
		g->qtail->next = rq;
	else
		g->qhead = rq;
	g->qtail = rq;
	pthread_cond_signal(&g->queue_cond);
	pthread_mutex_unlock(&g->queue_lock);
	return 0;
}

int ts_agrp_read(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf, ts_agrp_cb cb, void *arg)
{
	return enqueue(g, REQ_READ, off, len, buf, cb, arg);
}

int ts_agrp_write(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf, ts_agrp_cb cb,
		  void *arg)
{
	return enqueue(g, REQ_WRITE, off, len, (void *)buf, cb, arg);
}

int ts_agrp_flush(struct ts_agrp *g, ts_agrp_cb cb, void *arg)
{
	return enqueue(g, REQ_FLUSH, 0, 0, NULL, cb, arg);
}

static int sync_io(struct ts_agrp *g, enum req_op op, uint64_t off, uint64_t len, void *buf)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;

	return ts_member_wait(&w, enqueue(g, op, off, len, buf, ts_member_wake, &w));
}

int ts_agrp_read_sync(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf)
{
	return sync_io(g, REQ_READ, off, len, buf);
}

int ts_agrp_write_sync(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf)
{
	return sync_io(g, REQ_WRITE, off, len, (void *)buf);
}

int ts_agrp_flush_sync(struct ts_agrp *g)
{
	return sync_io(g, REQ_FLUSH, 0, 0, NULL);
}
