/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group rescue records: closing the degraded write hole.
 *
 * Workload. Only writes to stripes whose data roles are partly missing pay
 * for a record (one FUA write per live member before the stripe write, one
 * after); healthy writes never come here.
 *
 * Invariants. Before writing a stripe whose data roles are partly missing,
 * the worker durably records the missing roles' post-write values in its
 * rescue slot on the live members, and invalidates the record once the
 * stripe write is done, before the stripe lock is released: at most one
 * valid record per stripe exists and it describes the stripe's last write.
 * A degraded assembly repairs dirty stripes from data (no data role missing)
 * or data + record; whatever is left is marked untrusted. Records are
 * checked by magic, CRC of the header and CRC of the payload; sequence
 * numbers pick the newest. docs/ec-layout.md has the on-disk layout.
 *
 * THREAD SAFETY: worker i owns rescue slot i on every member (no lock);
 * rescue_seq is atomic. agrp_rescue_clear() runs only under an exclusive
 * range lock of the whole volume or before workers start; agrp_rescue_replay()
 * only during assembly, before workers start.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <stdatomic.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

#define RESCUE_MAGIC 0x4555435345525354ull /* "TSRESCUE" */

/* ---- rescue records: the degraded write hole ---- */

static uint64_t rescue_off(const struct ts_agrp *g, unsigned slot)
{
	return TS_AGRP_SB_AREA + (uint64_t)(1 + g->n) * g->bitmap_bytes +
	       (uint64_t)slot * (AGRP_BM_BLOCK + (uint64_t)g->m * g->chunk);
}

uint64_t agrp_rescue_size(const struct ts_agrp *g)
{
	return AGRP_BM_BLOCK + (uint64_t)g->m * g->chunk;
}

static void put64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Header: magic, seq, stripe, dead-role mask, payload crc; crc of the header at 4092. */
static void rescue_seal(uint8_t *rec, uint64_t seq, uint64_t s, uint64_t dead, uint64_t plen)
{
	uint32_t pcrc = crc32_iscsi(rec + AGRP_BM_BLOCK, (int)plen, 0xffffffffu), hcrc;

	memset(rec, 0, AGRP_BM_BLOCK);
	put64le(rec, RESCUE_MAGIC);
	put64le(rec + 8, seq);
	put64le(rec + 16, s);
	put64le(rec + 24, dead);
	put64le(rec + 32, plen);
	put64le(rec + 40, pcrc);
	hcrc = crc32_iscsi(rec, (int)AGRP_BM_BLOCK - 4, 0xffffffffu);
	memcpy(rec + AGRP_BM_BLOCK - 4, &hcrc, 4);
}

static int rescue_check(const struct ts_agrp *g, const uint8_t *rec, uint64_t *seq, uint64_t *s,
			uint64_t *dead)
{
	uint32_t hcrc;
	uint64_t plen;

	memcpy(&hcrc, rec + AGRP_BM_BLOCK - 4, 4);
	if (get64le(rec) != RESCUE_MAGIC ||
	    hcrc != crc32_iscsi((unsigned char *)rec, (int)AGRP_BM_BLOCK - 4, 0xffffffffu))
		return 0;
	*seq = get64le(rec + 8);
	*s = get64le(rec + 16);
	*dead = get64le(rec + 24);
	plen = get64le(rec + 32);
	if (*s >= g->nstripes || plen != (uint64_t)popcount64(*dead) * g->chunk ||
	    plen > (uint64_t)g->m * g->chunk || (*dead >> g->k))
		return 0;
	return get64le(rec + 40) == crc32_iscsi((unsigned char *)rec + AGRP_BM_BLOCK, (int)plen,
						 0xffffffffu);
}

/*
 * Before a write to stripe s while data roles are missing: record, durably
 * on every live member, the values the missing data roles will have after
 * this write (decoded now, merged with the new bytes). Parity torn by a crash
 * can then be recomputed from the live data plus this record.
 */
int agrp_rescue_record(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			 uint64_t len, const uint8_t *src)
{
	uint64_t live = agrp_live_mask(g), dd = dead_roles(g, s, live) & ((1ull << g->k) - 1);
	uint8_t *bufs[MAXN] = { 0 }, *pay = sc->rescue + AGRP_BM_BLOCK;
	struct mio x[MAXN];
	struct ts_member_fanout b;
	unsigned j = 0, cnt = 0;
	int rc;

	uint64_t need = 0;

	if (!dd || sc->wid < 0)
		return 0;
	/* members failed since the write began: more than m out, nothing can
	 * be written (and the record has room for m roles) */
	if ((unsigned)popcount64(dead_roles(g, s, live)) > g->m)
		return TS_ERR_DEGRADED;
	for (unsigned r = 0; r < g->k; r++) {
		if (!(dd & (1ull << r)))
			continue;
		bufs[r] = pay + (size_t)(j++) * g->chunk;
		/* roles the write covers whole need no old bytes */
		if (soff > (uint64_t)r * g->chunk || soff + len < (uint64_t)(r + 1) * g->chunk)
			need |= 1ull << r;
	}
	rc = need ? agrp_stripe_fetch(g, sc, s, 0, g->chunk, need, bufs, 0) : 0;
	if (rc)
		return rc;
	for (unsigned r = 0; r < g->k; r++) {
		uint64_t a = (uint64_t)r * g->chunk, e = a + g->chunk;
		uint64_t lo = TS_MAX(a, soff), hi = TS_MIN(e, soff + len);

		if ((dd & (1ull << r)) && lo < hi)
			memcpy(bufs[r] + (lo - a), src + (lo - soff), hi - lo);
	}
	rescue_seal(sc->rescue, atomic_fetch_add(&g->rescue_seq, 1) + 1, s, dd, (uint64_t)j * g->chunk);
	ts_member_fanout_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  rescue_off(g, (unsigned)sc->wid),
				  AGRP_BM_BLOCK + (uint64_t)j * g->chunk, sc->rescue);
	ts_member_fanout_wait(&b);
	for (unsigned i = 0; i < cnt; i++)
		if (x[i].fio.status)
			agrp_member_fail(g, x[i].slot, x[i].fio.status);
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	return 1;
}

/*
 * The write the record covered is complete: invalidate the record (FUA)
 * before the stripe lock is released, so at most one valid record per
 * stripe exists and it describes the stripe's last write.
 */
void agrp_rescue_forget(struct ts_agrp *g, struct scratch *sc)
{
	uint64_t live = agrp_live_mask(g);
	struct mio x[MAXN];
	struct ts_member_fanout b;
	unsigned cnt = 0;

	memset(sc->rescue, 0, AGRP_BM_BLOCK);
	ts_member_fanout_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  rescue_off(g, (unsigned)sc->wid), AGRP_BM_BLOCK, sc->rescue);
	ts_member_fanout_wait(&b);
	for (unsigned i = 0; i < cnt; i++)
		if (x[i].fio.status)
			agrp_member_fail(g, x[i].slot, x[i].fio.status);
}

/* Forget every rescue record (the group went through a rejoin). */
void agrp_rescue_clear(struct ts_agrp *g)
{
	uint8_t *zero = ts_aligned_alloc(4096, AGRP_BM_BLOCK);
	uint64_t live = agrp_live_mask(g);

	if (!zero)
		return;
	memset(zero, 0, AGRP_BM_BLOCK);
	for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++) {
		struct mio x[MAXN];
		struct ts_member_fanout b;
		unsigned cnt = 0;

		ts_member_fanout_init(&b);
		for (unsigned i = 0; i < g->n; i++)
			if (live & (1ull << i))
				agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
					  rescue_off(g, w), AGRP_BM_BLOCK, zero);
		ts_member_fanout_wait(&b);
	}
	ts_free(zero);
}

/*
 * Degraded assembly: for every stripe of a dirty region, make parity agree
 * with data again if we can: all data present -> recompute from data; data
 * roles missing but covered by the newest rescue record of the stripe ->
 * recompute from the live data plus the record. Otherwise the region is
 * marked untrusted.
 */
int agrp_rescue_replay(struct ts_agrp *g, struct scratch *sc)
{
	const uint64_t rs = agrp_rescue_size(g), datamask = (1ull << g->k) - 1;
	uint8_t *recs = ts_aligned_alloc(4096, rs * AGRP_RESCUE_SLOTS);
	uint64_t seq[AGRP_RESCUE_SLOTS] = { 0 }, st[AGRP_RESCUE_SLOTS], dm[AGRP_RESCUE_SLOTS];
	uint64_t live = agrp_live_mask(g), maxseq = 0, nuntrusted = 0;
	int rc = 0;

	if (!recs)
		return -ENOMEM;
	for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++) {
		for (unsigned i = 0; i < g->n && !seq[w]; i++) {
			if (!(live & (1ull << i)) ||
			    ts_member_rw_sync(g->slot[i].m, TS_MEMBER_READ, 0, rescue_off(g, w), rs,
					      recs + w * rs))
				continue;
			if (!rescue_check(g, recs + w * rs, &seq[w], &st[w], &dm[w]))
				seq[w] = 0;
		}
		maxseq = TS_MAX(maxseq, seq[w]);
	}
	atomic_store(&g->rescue_seq, maxseq);
	for (uint64_t r = 0; r < g->nregions && !rc; r++) {
		if (!bit_get(g->bm[0], r))
			continue;
		for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++) {
			uint64_t dd = dead_roles(g, s, live) & datamask;
			uint8_t *bufs[MAXN];
			uint32_t o[MAXN] = { 0 }, l[MAXN];
			int best = -1;

			if (!dd) {
				rc = agrp_stripe_resync_parity(g, sc, s);
				continue;
			}
			for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++)
				if (seq[w] && st[w] == s && (best < 0 || seq[w] > seq[best]))
					best = (int)w;
			if (best < 0 || (dd & ~dm[best])) {
				bit_set(g->untrusted, r, 1);
				nuntrusted++;
				break;
			}
			for (unsigned ro = 0; ro < g->n; ro++) {
				bufs[ro] = sc->work + (size_t)ro * g->chunk;
				l[ro] = g->chunk;
			}
			rc = agrp_stripe_fetch(g, sc, s, 0, g->chunk, datamask & ~dd, bufs, 1);
			if (rc)
				break;
			for (unsigned ro = 0, j = 0; ro < g->k; ro++) {
				if (!(dm[best] & (1ull << ro)))
					continue;
				if (dd & (1ull << ro))
					memcpy(bufs[ro], recs + best * rs + AGRP_BM_BLOCK + (size_t)j * g->chunk,
					       g->chunk);
				j++;
			}
			ts_ec_encode(g->ec, g->chunk, bufs, bufs + g->k);
			rc = agrp_stripe_put(g, s, o, l, ((1ull << g->n) - 1) & ~datamask, bufs);
		}
	}
	for (unsigned i = 0; i < g->n && !rc; i++)
		if (live & (1ull << i))
			rc = ts_member_rw_sync(g->slot[i].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	/* repairs are durable: the records are spent (a stale one left behind
	 * could later outlive the invalidated record of a newer write) */
	if (!rc)
		agrp_rescue_clear(g);
	if (nuntrusted)
		ts_log(TS_LOG_WARN, "agrp", "dirty regions not recoverable while degraded regions=%llu",
		       (unsigned long long)nuntrusted);
	ts_free(recs);
	return rc;
}
