/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group resync: rebuild a returning or replacement member's
 * out-of-date regions and make it live again.
 *
 * Workload. A member back after an outage has only the regions it missed
 * rebuilt; a replacement has every region rebuilt. Regions are one stripe on
 * members below 64 GiB, so runs of out-of-date stripes are batched across
 * regions (RB_STRIPES stripes per member IO) to make a rebuild stream.
 *
 * Invariants. The slot stays not-live (never read) until every out-of-date
 * region is rebuilt and flushed; the last pass and the flip to live happen
 * under an exclusive range lock of the whole volume, with a generation bump.
 * A region's out-of-date bit is cleared only after its rebuilt chunks are
 * flushed. If the group is then complete, regions left untrusted by a
 * degraded assembly get parity recomputed from data.
 *
 * THREAD SAFETY: runs on the caller's thread of ts_agrp_add_member() or
 * ts_agrp_replace(), with its own scratch. Each span is rebuilt under its
 * range lock (IO elsewhere keeps flowing); bm_lock and state_lock are taken
 * inside the range lock, never the other way round.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

#define RB_STRIPES 32u /* stripes rebuilt per batch: one IO per member of 32 chunks */

/*
 * Rebuild slot \p sl's chunks of stripes [s, s+cnt) (cnt <= RB_STRIPES) onto
 * its (not live) member, without FUA. Stripe s is chunk s of every member,
 * so the run is one contiguous range on each member: read it from k live
 * members at once (one IO each), decode every stripe in memory, write the
 * rebuilt chunks with one IO. \p rb holds n * RB_STRIPES chunks.
 */
static int rebuild_stripes(struct ts_agrp *g, struct scratch *sc, uint8_t *rb, unsigned sl,
			   uint64_t s, uint64_t cnt)
{
	const size_t span = (size_t)RB_STRIPES * g->chunk;

	for (unsigned attempt = 0; attempt <= g->n; attempt++) {
		uint64_t live = agrp_live_mask(g) & ~(1ull << sl), src = 0;
		struct mio x[MAXN];
		struct ts_member_fanout b;
		unsigned nsrc = 0, bad = 0;
		int rc = 0;

		for (unsigned i = 0; i < g->n && nsrc < g->k; i++)
			if (live & (1ull << i)) {
				src |= 1ull << i;
				nsrc++;
			}
		if (nsrc < g->k)
			return TS_ERR_DEGRADED;
		ts_member_fanout_init(&b);
		for (unsigned i = 0, j = 0; i < g->n; i++)
			if (src & (1ull << i))
				agrp_batch_add(&b, &x[j++], g->slot[i].m, i, TS_MEMBER_READ, 0,
					  moff(g, s, 0), cnt * g->chunk, rb + i * span);
		ts_member_fanout_wait(&b);
		for (unsigned j = 0; j < nsrc; j++)
			if (x[j].fio.status) {
				agrp_member_fail(g, x[j].slot, x[j].fio.status);
				bad = 1;
			}
		if (agrp_fenced(g))
			return TS_ERR_FENCED;
		if (bad)
			continue; /* again with the members still live */
		for (uint64_t j = 0; j < cnt && rc == 0; j++) {
			uint8_t *frags[MAXN];
			uint64_t missing = 0;

			for (unsigned role = 0; role < g->n; role++) {
				unsigned i = slot_of(g, s + j, role);

				if (src & (1ull << i)) {
					frags[role] = rb + i * span + j * g->chunk;
				} else {
					missing |= 1ull << role;
					frags[role] = i == sl ? rb + sl * span + j * g->chunk
							      : sc->fetch + (size_t)role * g->chunk;
				}
			}
			rc = ts_ec_decode(g->ec, g->chunk, frags, missing);
		}
		if (rc == 0)
			rc = ts_member_rw_sync(g->slot[sl].m, TS_MEMBER_WRITE, 0, moff(g, s, 0),
					       cnt * g->chunk, rb + sl * span);
		return rc;
	}
	return TS_ERR_DEGRADED;
}

/*
 * Rebuild slot \p sl's out-of-date regions among [r0, r1] (the caller holds
 * their stripes' range lock): runs of consecutive out-of-date stripes in
 * batches, one flush of the member, then the regions' bits are cleared with
 * one bitmap write. Regions are one stripe on members below 64 GiB, so
 * batching across regions is what makes a rebuild stream.
 */
static int rebuild_span(struct ts_agrp *g, struct scratch *sc, uint8_t *rb, unsigned sl,
			uint64_t r0, uint64_t r1)
{
	uint64_t run0 = 0, runlen = 0, nbits = 0;
	struct bm_dirty d[2];
	uint64_t live, bad;
	unsigned nd = 0;
	int rc = 0;

	for (uint64_t r = r0; r <= r1 + 1 && rc == 0; r++) {
		int ood = r <= r1 && agrp_bm_test(g, 1 + sl, r);

		if (ood && agrp_bm_test(g, ~0u, r))
			ts_log(TS_LOG_WARN, "agrp",
			       "rebuilding from a region dirty at a degraded assembly slot=%u region=%llu",
			       sl, (unsigned long long)r);
		if (ood && runlen && run0 + runlen == r * g->region_stripes) {
			runlen = region_last(g, r) + 1 - run0; /* extends the run */
		} else {
			/* flush the run so far, in batches */
			for (uint64_t o = 0; o < runlen && rc == 0; o += RB_STRIPES)
				rc = rebuild_stripes(g, sc, rb, sl, run0 + o,
						     TS_MIN((uint64_t)RB_STRIPES, runlen - o));
			runlen = 0;
			if (ood) {
				run0 = r * g->region_stripes;
				runlen = region_last(g, r) + 1 - run0;
			}
		}
		nbits += ood;
	}
	if (rc || !nbits)
		return rc;
	rc = ts_member_rw_sync(g->slot[sl].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	if (rc)
		return rc;
	live = agrp_live_mask(g);
	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = r0; r <= r1; r++) {
		uint64_t blk = r / 8 / AGRP_BM_BLOCK;

		if (!bit_get(g->bm[1 + sl], r))
			continue;
		bit_set(g->bm[1 + sl], r, 0);
		if (!nd || d[nd - 1].block != blk)
			d[nd++] = (struct bm_dirty){ 1 + sl, blk };
	}
	bad = agrp_bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	agrp_fail_mask(g, bad, -EIO);
	return 0;
}

/*
 * Bring slot \p sl (member attached, not live) up to date and make it live:
 * rebuild its out-of-date regions region by region under each region's
 * lock, then once more under a lock of the whole volume, and flip it live
 * with a generation bump. If the group is then complete, regions left
 * untrusted by a degraded assembly get parity recomputed from data.
 */
int agrp_resync_slot(struct ts_agrp *g, unsigned sl)
{
	struct scratch sc = { 0 };
	struct range rg;
	uint64_t per = TS_MAX(1u, RB_STRIPES / g->region_stripes); /* regions per span */
	uint8_t *rb;
	int rc, any_untrusted = 0;

	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	rc = agrp_scratch_alloc(g, &sc);
	if (rc)
		return rc;
	rb = ts_aligned_alloc(4096, (size_t)g->n * RB_STRIPES * g->chunk);
	if (!rb) {
		agrp_scratch_free(&sc);
		return -ENOMEM;
	}
	/* spans of regions covering up to RB_STRIPES stripes, each under its
	 * own range lock, so IO elsewhere keeps flowing */
	for (uint64_t r0 = 0; r0 < g->nregions && !rc; r0 += per) {
		uint64_t r1 = TS_MIN(g->nregions, r0 + per) - 1;
		int any = 0;

		for (uint64_t r = r0; r <= r1 && !any; r++)
			any = agrp_bm_test(g, 1 + sl, r);
		if (!any)
			continue;
		agrp_range_acquire(g, &rg, r0 * g->region_stripes, region_last(g, r1), 1);
		rc = rebuild_span(g, &sc, rb, sl, r0, r1);
		agrp_range_release(g, &rg);
	}
	if (rc)
		goto out;
	agrp_range_acquire(g, &rg, 0, g->nstripes - 1, 1);
	for (uint64_t r0 = 0; r0 < g->nregions && !rc; r0 += per)
		rc = rebuild_span(g, &sc, rb, sl, r0, TS_MIN(g->nregions, r0 + per) - 1);
	if (!rc) { /* the returning member gets the current bitmaps */
		pthread_mutex_lock(&g->bm_lock);
		rc = agrp_bm_io_member(g, g->slot[sl].m, TS_MEMBER_WRITE, NULL);
		pthread_mutex_unlock(&g->bm_lock);
	}
	if (!rc) {
		pthread_mutex_lock(&g->state_lock);
		g->slot[sl].live = 1;
		g->generation++;
		rc = agrp_sb_write_locked(g, 0, 0);
		if (!rc && !g->slot[sl].live)
			rc = TS_ERR_MEMBER_FAILED;
		if (rc)
			g->slot[sl].live = 0;
		ts_log(TS_LOG_INFO, "agrp", "member rejoined slot=%u generation=%llu rc=%d", sl,
		       (unsigned long long)g->generation, rc);
		pthread_mutex_unlock(&g->state_lock);
	}
	if (!rc)
		agrp_rescue_clear(g); /* writes before the rejoin are whole now */
	if (!rc && agrp_live_mask(g) == (1ull << g->n) - 1) {
		for (uint64_t r = 0; r < g->nregions && !rc; r++) {
			if (!agrp_bm_test(g, ~0u, r))
				continue;
			any_untrusted = 1;
			for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++)
				rc = agrp_stripe_resync_parity(g, &sc, s);
		}
		if (!rc && any_untrusted) {
			pthread_mutex_lock(&g->bm_lock);
			memset(g->untrusted, 0, g->bitmap_bytes); /* next flush clears intent */
			pthread_mutex_unlock(&g->bm_lock);
		}
	}
	agrp_range_release(g, &rg);
out:
	ts_free(rb);
	agrp_scratch_free(&sc);
	return rc;
}
