/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group bitmaps: the write-intent bitmap (one bit per region of
 * region_stripes stripes) and one out-of-date bitmap per slot, kept in
 * memory and persisted block by block to every live member's metadata area.
 *
 * Workload. Every write marks its regions (usually already set: no IO);
 * flushes clear idle regions lazily; rebuilds clear a slot's out-of-date
 * bits once the regions are rebuilt and flushed.
 *
 * Invariants. A bit is set durably (FUA on the live members) before the
 * write it covers is issued. The intent bit of a region is cleared only by a
 * flush that began after the region's last completed write and while no
 * write is in flight there, and never while the region is untrusted. The
 * untrusted map lives in memory only: it is derived from intent at a
 * degraded assembly and cleared once parity is recomputed.
 *
 * THREAD SAFETY: bm_lock guards the bitmaps, the region counters (inflight,
 * last_done, done_seq) and their persistence; member IO is issued and waited
 * for with it held. Members whose bitmap write fails are failed after
 * bm_lock is dropped (member_fail takes state_lock, which comes before
 * bm_lock). Order: range -> state -> bm -> queue.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"

/* ------------------------------------------------------------------ */
/* bitmaps (bm_lock) */

static uint64_t bm_member_off(const struct ts_agrp *g, unsigned which, uint64_t block)
{
	return TS_AGRP_SB_AREA + (uint64_t)which * g->bitmap_bytes + block * AGRP_BM_BLOCK;
}

/*
 * Persist the bitmap blocks flagged in \p dirty (pairs of bitmap index and
 * block) to the members in \p live. Called with bm_lock held; returns the
 * mask of slots whose write failed (the caller fails them after unlocking).
 */
uint64_t agrp_bm_persist_locked(struct ts_agrp *g, uint64_t live, const struct bm_dirty *d,
				  unsigned nd)
{
	struct mio x[MAXN * 4];
	uint64_t bad = 0;
	unsigned done = 0;

	while (done < nd) {
		unsigned cnt = 0, upto = done;
		struct ts_member_fanout b;

		ts_member_fanout_init(&b);
		for (; upto < nd && cnt + g->n <= TS_ARRAY_SIZE(x); upto++) {
			for (unsigned i = 0; i < g->n; i++) {
				if (!(live & (1ull << i)))
					continue;
				agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
					  bm_member_off(g, d[upto].which, d[upto].block),
					  AGRP_BM_BLOCK,
					  g->bm[d[upto].which] + d[upto].block * AGRP_BM_BLOCK);
			}
		}
		ts_member_fanout_wait(&b);
		for (unsigned j = 0; j < cnt; j++) {
			if (x[j].fio.status == TS_ERR_FENCED) /* cppcheck-suppress uninitvar */
				agrp_set_fenced(g, (int)x[j].slot);
			else if (x[j].fio.status) /* cppcheck-suppress uninitvar ; x[0..cnt) set by batch_add */
				bad |= 1ull << x[j].slot;
		}
		done = upto;
	}
	return bad;
}

void agrp_fail_mask(struct ts_agrp *g, uint64_t bad, int err)
{
	for (unsigned i = 0; i < g->n; i++)
		if (bad & (1ull << i))
			agrp_member_fail(g, i, err);
}

/*
 * Set bits durably: intent bit for regions r0..r1 (if \p intent) and the
 * out-of-date bit of every slot in \p ood for those regions. Bumps the
 * in-flight count of the regions when \p intent.
 */
void agrp_bm_mark(struct ts_agrp *g, uint64_t r0, uint64_t r1, int intent, uint64_t ood)
{
	struct bm_dirty d[64];
	uint64_t live = agrp_live_mask(g), bad = 0;
	unsigned nd = 0;

	if (agrp_fenced(g))
		return; /* nothing is written any more; the IO fails on its own checks */
	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = r0; r <= r1; r++) {
		if (intent)
			g->inflight[r]++;
		for (unsigned w = 0; w <= g->n; w++) {
			if (w == 0 ? !intent : !(ood & (1ull << (w - 1))))
				continue;
			if (bit_get(g->bm[w], r))
				continue;
			bit_set(g->bm[w], r, 1);
			if (nd && d[nd - 1].which == w && d[nd - 1].block == r / 8 / AGRP_BM_BLOCK)
				continue;
			if (nd == TS_ARRAY_SIZE(d)) {
				bad |= agrp_bm_persist_locked(g, live, d, nd);
				nd = 0;
			}
			d[nd].which = w;
			d[nd].block = r / 8 / AGRP_BM_BLOCK;
			nd++;
		}
	}
	if (nd)
		bad |= agrp_bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	agrp_fail_mask(g, bad, -EIO);
}

void agrp_bm_write_done(struct ts_agrp *g, uint64_t r0, uint64_t r1)
{
	pthread_mutex_lock(&g->bm_lock);
	g->done_seq++;
	for (uint64_t r = r0; r <= r1; r++) {
		g->inflight[r]--;
		g->last_done[r] = g->done_seq;
	}
	pthread_mutex_unlock(&g->bm_lock);
}

/* Clear bits of bitmap \p which for the regions in which pred holds; persist. */
void agrp_bm_clear_where(struct ts_agrp *g, unsigned which, uint64_t upto_seq, int check_idle)
{
	uint64_t live = agrp_live_mask(g), bad = 0;
	struct bm_dirty d[64];
	unsigned nd = 0;

	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = 0; r < g->nregions; r++) {
		if (!bit_get(g->bm[which], r))
			continue;
		if (check_idle && (g->inflight[r] || g->last_done[r] > upto_seq ||
				   bit_get(g->untrusted, r)))
			continue;
		bit_set(g->bm[which], r, 0);
		if (nd && d[nd - 1].block == r / 8 / AGRP_BM_BLOCK)
			continue;
		if (nd == TS_ARRAY_SIZE(d)) {
			bad |= agrp_bm_persist_locked(g, live, d, nd);
			nd = 0;
		}
		d[nd].which = which;
		d[nd].block = r / 8 / AGRP_BM_BLOCK;
		nd++;
	}
	if (nd)
		bad |= agrp_bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	agrp_fail_mask(g, bad, -EIO);
}

int agrp_region_untrusted(struct ts_agrp *g, uint64_t s)
{
	int v;

	pthread_mutex_lock(&g->bm_lock);
	v = bit_get(g->untrusted, region_of(g, s));
	pthread_mutex_unlock(&g->bm_lock);
	return v;
}

/* Write/read all bitmaps of member \p mem (sync). */
int agrp_bm_io_member(struct ts_agrp *g, struct ts_member *mem, enum ts_member_op op,
			uint8_t *tmp)
{
	for (unsigned w = 0; w <= g->n; w++) {
		uint8_t *buf = op == TS_MEMBER_READ ? tmp : g->bm[w];
		int rc = ts_member_rw_sync(mem, op, op == TS_MEMBER_WRITE ? TS_MEMBER_FUA : 0,
					   bm_member_off(g, w, 0), g->bitmap_bytes, buf);

		if (rc)
			return rc;
		if (op == TS_MEMBER_READ)
			for (uint32_t i = 0; i < g->bitmap_bytes; i++)
				g->bm[w][i] |= tmp[i];
	}
	return 0;
}

/* Clear one bit durably on the live members. */
int agrp_bm_test(struct ts_agrp *g, unsigned which, uint64_t r)
{
	int v;

	pthread_mutex_lock(&g->bm_lock);
	v = bit_get(which == ~0u ? g->untrusted : g->bm[which], r);
	pthread_mutex_unlock(&g->bm_lock);
	return v;
}
