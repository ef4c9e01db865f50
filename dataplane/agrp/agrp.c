/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group: Reed-Solomon k+m over members reached through the async
 * member interface. This file is the group object: creation, assembly from
 * the members' superblocks, membership (add a returning member, replace a
 * slot, fail a member), superblock writes, state queries and close. The IO
 * path is agrp_io.c, the bitmaps agrp_bitmap.c, the degraded write hole
 * agrp_rescue.c, rebuild and rejoin agrp_resync.c.
 *
 * Workload. Membership changes are rare (a member fails, comes back or is
 * replaced) and run on the caller's thread while IO keeps flowing on the
 * group's workers. Assembly runs once, before any worker starts.
 *
 * Invariants. The generation in the superblocks of the live members is
 * bumped on every membership change; a member with an older generation is
 * stale: never read, only resynced before it rejoins. A group that has lost
 * more than m members leaves the superblocks alone (as md does), so the
 * members lost last are still current when they come back. At assembly with
 * all members present, dirty regions get their parity recomputed from data;
 * a degraded assembly replays the rescue records (agrp_rescue.c) and marks
 * what it cannot repair untrusted. docs/ec-layout.md discusses the choice.
 *
 * THREAD SAFETY: see agrp.h. state_lock guards slot states, generation and
 * superblock writes (agrp_sb_write_locked() is called with it held and takes
 * no other lock, member IO completions take none). Order: range -> state ->
 * bm -> queue. Slot member pointers change only in add_member/replace for a
 * slot that is not live; IO paths dereference them only for slots they saw
 * live. Create and assemble own the group alone until workers_start().
 */
#include "dataplane/agrp/agrp.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

uint64_t agrp_live_mask(struct ts_agrp *g)
{
	uint64_t mask = 0;

	pthread_mutex_lock(&g->state_lock);
	for (unsigned i = 0; i < g->n; i++)
		if (g->slot[i].live)
			mask |= 1ull << i;
	pthread_mutex_unlock(&g->state_lock);
	return mask;
}

/* ------------------------------------------------------------------ */
/* superblocks and membership (state_lock) */

static void fill_sb(struct ts_agrp *g, struct agrp_sb *sb, unsigned idx, uint64_t gen)
{
	memset(sb, 0, sizeof(*sb));
	memcpy(sb->info.group_uuid, g->uuid, 16);
	sb->info.k = g->k;
	sb->info.m = g->m;
	sb->info.chunk_size = g->chunk;
	sb->info.member_index = idx;
	sb->info.generation = gen;
	sb->info.nstripes = g->nstripes;
	sb->info.data_offset = g->data_off;
	for (unsigned i = 0; i < g->n; i++) {
		memcpy(sb->info.slots[i].uuid, g->slot[i].uuid, 16);
		sb->info.slots[i].node_id = g->slot[i].node_id;
	}
	sb->seq = g->sb_seq;
	sb->region_stripes = g->region_stripes;
	sb->bitmap_bytes = g->bitmap_bytes;
	sb->block_size = g->bs;
}

/*
 * Write the superblock (current generation) to every live slot plus the
 * slots in \p extra with generation \p extra_gen. A live member whose write
 * fails is failed, which bumps the generation, and the round is redone.
 * Called with state_lock held. Returns 0, or the extra members' error.
 */
int agrp_sb_write_locked(struct ts_agrp *g, uint64_t extra, uint64_t extra_gen)
{
	uint8_t *bufs = ts_aligned_alloc(4096, (size_t)g->n * AGRP_SB_SIZE);
	int rc = 0;

	if (!bufs)
		return -ENOMEM;
	for (unsigned round = 0; round <= g->n && !agrp_fenced(g); round++) {
		struct mio x[MAXN];
		struct ts_member_fanout b;
		struct agrp_sb sb;
		unsigned cnt = 0, failed = 0;

		g->sb_seq++;
		ts_member_fanout_init(&b);
		for (unsigned i = 0; i < g->n; i++) {
			int ex = !!(extra & (1ull << i));

			if (!g->slot[i].live && !ex)
				continue;
			fill_sb(g, &sb, i, ex && !g->slot[i].live ? extra_gen : g->generation);
			agrp_sb_encode(&sb, bufs + (size_t)i * AGRP_SB_SIZE);
			agrp_batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  (g->sb_seq % 2) * AGRP_SB_SIZE, AGRP_SB_SIZE,
				  bufs + (size_t)i * AGRP_SB_SIZE);
		}
		ts_member_fanout_wait(&b);
		for (unsigned j = 0; j < cnt; j++) {
			unsigned i = x[j].slot;

			if (!x[j].fio.status)
				continue;
			if (x[j].fio.status == TS_ERR_FENCED) {
				agrp_set_fenced(g, (int)i);
				rc = TS_ERR_FENCED;
			} else if (g->slot[i].live) {
				ts_log(TS_LOG_WARN, "agrp", "superblock write failed slot=%u err=%s", i,
				       ts_strerror(x[j].fio.status));
				g->slot[i].live = 0;
				failed = 1;
			} else {
				rc = x[j].fio.status;
			}
		}
		if (!failed || agrp_fenced(g))
			break;
		g->generation++;
	}
	ts_free(bufs);
	return agrp_fenced(g) ? TS_ERR_FENCED : rc;
}

void agrp_set_fenced(struct ts_agrp *g, int slot)
{
	if (atomic_exchange(&g->fenced, 1))
		return;
	ts_log(TS_LOG_WARN, "agrp",
	       "group fenced: a member refused IO (another engine owns the group) slot=%d node=%u; "
	       "every IO fails from now on, members are left as they are",
	       slot, slot >= 0 ? g->slot[slot].node_id : 0u);
}

int ts_agrp_fenced(struct ts_agrp *g)
{
	return g ? agrp_fenced(g) : 0;
}

/*
 * Member \p i failed an IO: take it out, bump the generation on the others.
 * A fenced IO is not a member failure: the group is fenced instead, and a
 * fenced group changes nothing on any member (a stale owner must not).
 */
void agrp_member_fail(struct ts_agrp *g, unsigned i, int err)
{
	if (err == TS_ERR_FENCED)
		agrp_set_fenced(g, (int)i);
	if (agrp_fenced(g))
		return;
	pthread_mutex_lock(&g->state_lock);
	if (g->slot[i].live) {
		unsigned left = 0;

		g->slot[i].live = 0;
		for (unsigned j = 0; j < g->n; j++)
			left += g->slot[j].live != 0;
		if (left < g->k) {
			/* the group has failed (no IO can succeed): leave the
			 * superblocks alone, as md does, so the members lost last
			 * are still current when they come back, instead of being
			 * made stale by a generation only the survivors carry */
			ts_log(TS_LOG_ERROR, "agrp",
			       "member failed slot=%u node=%u err=\"%s\" group failed live=%u k=%u",
			       i, g->slot[i].node_id, ts_strerror(err), left, g->k);
		} else {
			g->generation++;
			ts_log(TS_LOG_WARN, "agrp",
			       "member failed slot=%u node=%u err=\"%s\" generation=%llu", i,
			       g->slot[i].node_id, ts_strerror(err),
			       (unsigned long long)g->generation);
			agrp_sb_write_locked(g, 0, 0);
		}
	}
	pthread_mutex_unlock(&g->state_lock);
}

/* ------------------------------------------------------------------ */
/* state queries */

uint64_t ts_agrp_size(const struct ts_agrp *g)
{
	return g->nstripes * g->k * g->chunk;
}

uint32_t ts_agrp_block_size(const struct ts_agrp *g)
{
	return g->bs;
}

uint64_t ts_agrp_generation(struct ts_agrp *g)
{
	uint64_t v;

	pthread_mutex_lock(&g->state_lock);
	v = g->generation;
	pthread_mutex_unlock(&g->state_lock);
	return v;
}

uint64_t ts_agrp_live_mask(struct ts_agrp *g)
{
	return agrp_live_mask(g);
}

void ts_agrp_stats(struct ts_agrp *g, struct ts_agrp_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->live_mask = agrp_live_mask(g);
	st->region_stripes = g->region_stripes;
	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = 0; r < g->nregions; r++) {
		int ood = 0;

		for (unsigned i = 0; i < g->n && !ood; i++)
			ood = bit_get(g->bm[1 + i], r);
		if (ood) {
			uint64_t first = r * g->region_stripes;

			st->ood_regions++;
			st->ood_stripes += TS_MIN((uint64_t)g->region_stripes, g->nstripes - first);
		}
	}
	pthread_mutex_unlock(&g->bm_lock);
}

void ts_agrp_get_info(struct ts_agrp *g, struct ts_agrp_info *info)
{
	struct agrp_sb sb;

	pthread_mutex_lock(&g->state_lock);
	fill_sb(g, &sb, 0, g->generation);
	pthread_mutex_unlock(&g->state_lock);
	*info = sb.info;
}

/* ------------------------------------------------------------------ */
/* lifecycle */

void agrp_scratch_free(struct scratch *sc)
{
	ts_free(sc->fetch);
	ts_free(sc->work);
	ts_free(sc->delta);
	ts_free(sc->rescue);
	memset(sc, 0, sizeof(*sc));
	sc->wid = -1;
}

int agrp_scratch_alloc(const struct ts_agrp *g, struct scratch *sc)
{
	sc->fetch = ts_aligned_alloc(64, (size_t)g->n * g->chunk);
	sc->work = ts_aligned_alloc(64, (size_t)g->n * g->chunk);
	sc->delta = ts_aligned_alloc(64, g->chunk);
	sc->rescue = ts_aligned_alloc(4096, agrp_rescue_size(g));
	sc->wid = -1;
	if (!sc->fetch || !sc->work || !sc->delta || !sc->rescue) {
		agrp_scratch_free(sc);
		return -ENOMEM;
	}
	return 0;
}

/* Member layout for a member of \p size bytes (docs/ec-layout.md). */
static int layout(uint64_t size, unsigned n, unsigned m, uint32_t chunk, struct agrp_sb *sb)
{
	uint64_t approx, rs, nbits, bb, doff;

	if (size <= TS_AGRP_SB_AREA + chunk)
		return TS_ERR_TOO_SMALL;
	approx = (size - TS_AGRP_SB_AREA) / chunk;
	rs = TS_DIV_ROUND_UP(approx, AGRP_MAX_REGION_BITS);
	nbits = TS_DIV_ROUND_UP(approx, rs);
	bb = TS_ALIGN_UP(TS_DIV_ROUND_UP(nbits, 8), AGRP_BM_BLOCK);
	doff = TS_ALIGN_UP(TS_AGRP_SB_AREA + (1 + n) * bb +
				   AGRP_RESCUE_SLOTS * (AGRP_BM_BLOCK + (uint64_t)m * chunk),
			   chunk);
	if (doff + chunk > size)
		return TS_ERR_TOO_SMALL;
	sb->region_stripes = (uint32_t)rs;
	sb->bitmap_bytes = (uint32_t)bb;
	sb->info.data_offset = doff;
	sb->info.nstripes = (size - doff) / chunk;
	return 0;
}

static void workers_stop(struct ts_agrp *g)
{
	pthread_mutex_lock(&g->queue_lock);
	g->stop = 1;
	pthread_cond_broadcast(&g->queue_cond);
	pthread_mutex_unlock(&g->queue_lock);
	for (unsigned i = 0; i < g->nworkers; i++) {
		pthread_join(g->workers[i].tid, NULL);
		agrp_scratch_free(&g->workers[i].sc);
	}
	g->nworkers = 0;
}

static int workers_start(struct ts_agrp *g)
{
	unsigned want = g->opts.nthreads ? g->opts.nthreads : 4;

	want = TS_MIN(want, MAX_THREADS);
	for (unsigned i = 0; i < want; i++) {
		struct worker *w = &g->workers[i];

		w->g = g;
		if (agrp_scratch_alloc(g, &w->sc))
			goto fail;
		w->sc.wid = (int)i;
		if (pthread_create(&w->tid, NULL, agrp_worker_main, w)) {
			agrp_scratch_free(&w->sc);
			goto fail;
		}
		g->nworkers++;
	}
	return 0;
fail:
	workers_stop(g);
	return -ENOMEM;
}

static void group_free(struct ts_agrp *g)
{
	if (!g)
		return;
	workers_stop(g);
	for (unsigned w = 0; w <= MAXN; w++)
		ts_free(g->bm[w]);
	ts_free(g->untrusted);
	ts_free(g->inflight);
	ts_free(g->last_done);
	ts_ec_destroy(g->ec);
	ts_rl_destroy(g->ranges);
	pthread_mutex_destroy(&g->state_lock);
	pthread_mutex_destroy(&g->bm_lock);
	pthread_mutex_destroy(&g->queue_lock);
	pthread_cond_destroy(&g->queue_cond);
	ts_free(g);
}

static int group_alloc(const struct agrp_sb *sb, const struct ts_agrp_opts *opts,
		       struct ts_agrp **out)
{
	struct ts_agrp *g = ts_calloc(1, sizeof(*g));
	int rc = -ENOMEM;

	if (!g)
		return -ENOMEM;
	if (ts_rl_create(&g->ranges)) {
		ts_free(g);
		return -ENOMEM;
	}
	pthread_mutex_init(&g->state_lock, NULL);
	pthread_mutex_init(&g->bm_lock, NULL);
	pthread_mutex_init(&g->queue_lock, NULL);
	pthread_cond_init(&g->queue_cond, NULL);
	if (opts)
		g->opts = *opts;
	g->k = sb->info.k;
	g->m = sb->info.m;
	g->n = g->k + g->m;
	g->chunk = sb->info.chunk_size;
	g->bs = sb->block_size;
	g->nstripes = sb->info.nstripes;
	g->data_off = sb->info.data_offset;
	g->region_stripes = sb->region_stripes;
	g->bitmap_bytes = sb->bitmap_bytes;
	g->nregions = TS_DIV_ROUND_UP(g->nstripes, g->region_stripes);
	g->generation = sb->info.generation;
	g->sb_seq = sb->seq;
	memcpy(g->uuid, sb->info.group_uuid, 16);
	for (unsigned i = 0; i < g->n; i++) {
		memcpy(g->slot[i].uuid, sb->info.slots[i].uuid, 16);
		g->slot[i].node_id = sb->info.slots[i].node_id;
	}
	rc = ts_ec_create(g->k, g->m, &g->ec);
	if (rc)
		goto fail;
	rc = -ENOMEM;
	for (unsigned w = 0; w <= g->n; w++) {
		g->bm[w] = ts_aligned_alloc(4096, g->bitmap_bytes);
		if (!g->bm[w])
			goto fail;
		memset(g->bm[w], 0, g->bitmap_bytes);
	}
	g->untrusted = ts_calloc(1, g->bitmap_bytes);
	g->inflight = ts_calloc(g->nregions, sizeof(*g->inflight));
	g->last_done = ts_calloc(g->nregions, sizeof(*g->last_done));
	if (!g->untrusted || !g->inflight || !g->last_done)
		goto fail;
	*out = g;
	return 0;
fail:
	group_free(g);
	return rc;
}

static int same_geometry(const struct agrp_sb *a, const struct agrp_sb *b)
{
	return a->info.k == b->info.k && a->info.m == b->info.m &&
	       a->info.chunk_size == b->info.chunk_size && a->info.nstripes == b->info.nstripes &&
	       a->info.data_offset == b->info.data_offset &&
	       a->region_stripes == b->region_stripes && a->bitmap_bytes == b->bitmap_bytes &&
	       a->block_size == b->block_size;
}

int ts_agrp_distrust_absent(struct ts_agrp *g)
{
	uint64_t all, absent;

	if (!g)
		return -EINVAL;
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	all = g->n >= 64 ? ~0ull : (1ull << g->n) - 1;
	absent = all & ~agrp_live_mask(g);
	if (!absent || !g->nregions)
		return 0;
	agrp_bm_mark(g, 0, g->nregions - 1, 0, absent);
	ts_log(TS_LOG_INFO, "agrp", "absent members distrusted in full mask=0x%llx regions=%llu",
	       (unsigned long long)absent, (unsigned long long)g->nregions);
	return __builtin_popcountll(absent);
}

int ts_agrp_add_member(struct ts_agrp *g, struct ts_member *mem)
{
	struct agrp_sb sb;
	unsigned idx;
	int rc;

	if (!g || !mem)
		return -EINVAL;
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	rc = agrp_sb_read(mem, &sb);
	if (rc)
		return rc;
	if (memcmp(sb.info.group_uuid, g->uuid, 16))
		return TS_ERR_FOREIGN;
	idx = sb.info.member_index;
	if (idx >= g->n || sb.info.k != g->k || sb.info.m != g->m || sb.info.chunk_size != g->chunk ||
	    sb.info.nstripes != g->nstripes || sb.info.data_offset != g->data_off)
		return TS_ERR_GEOMETRY;
	pthread_mutex_lock(&g->state_lock);
	if (memcmp(g->slot[idx].uuid, ts_member_info(mem)->uuid, 16) ||
	    sb.info.generation > g->generation)
		rc = TS_ERR_FOREIGN;
	else if (g->slot[idx].live)
		rc = -EEXIST;
	else
		g->slot[idx].m = mem;
	pthread_mutex_unlock(&g->state_lock);
	if (rc) {
		ts_log(TS_LOG_WARN, "agrp", "member refused name=%s slot=%u err=\"%s\"",
		       ts_member_info(mem)->name, idx, ts_strerror(rc));
		return rc;
	}
	rc = agrp_resync_slot(g, idx);
	if (rc)
		ts_log(TS_LOG_WARN, "agrp", "resync failed name=%s slot=%u err=\"%s\"",
		       ts_member_info(mem)->name, idx, ts_strerror(rc));
	return rc;
}

int ts_agrp_replace(struct ts_agrp *g, unsigned sl, struct ts_member *mem)
{
	const struct ts_member_info *mi;
	int rc = 0;

	if (!g || !mem || sl >= g->n)
		return -EINVAL;
	if (agrp_fenced(g))
		return TS_ERR_FENCED;
	mi = ts_member_info(mem);
	if (mi->block_size != g->bs)
		return TS_ERR_GEOMETRY;
	if (mi->size < g->data_off + g->nstripes * g->chunk)
		return TS_ERR_TOO_SMALL;
	pthread_mutex_lock(&g->state_lock);
	if (g->slot[sl].live)
		rc = -EEXIST;
	pthread_mutex_unlock(&g->state_lock);
	if (rc)
		return rc;
	if ((unsigned)popcount64(agrp_live_mask(g)) < g->k)
		return TS_ERR_DEGRADED;
	/* 1. every region is out of date for the slot, durably */
	agrp_bm_mark(g, 0, g->nregions - 1, 0, 1ull << sl);
	/* 2. new identity in the slot table; the newcomer carries generation 0
	 *    (stale) until rebuilt, so a crash mid-rebuild never trusts it */
	pthread_mutex_lock(&g->state_lock);
	memcpy(g->slot[sl].uuid, mi->uuid, 16);
	g->slot[sl].node_id = mi->node_id;
	g->slot[sl].m = mem;
	g->generation++;
	rc = agrp_sb_write_locked(g, 1ull << sl, 0);
	if (!rc)
		rc = agrp_sb_write_locked(g, 1ull << sl, 0); /* both copies */
	pthread_mutex_unlock(&g->state_lock);
	if (!rc)
		rc = agrp_resync_slot(g, sl);
	ts_log(TS_LOG_INFO, "agrp", "replace slot=%u name=%s rc=%d", sl, mi->name, rc);
	return rc;
}

int ts_agrp_create(struct ts_member *const *members, unsigned n, unsigned k, unsigned m,
		   const struct ts_agrp_opts *opts, struct ts_agrp **out)
{
	struct ts_agrp *g = NULL;
	struct agrp_sb sb;
	uint64_t size = UINT64_MAX;
	uint32_t chunk = opts && opts->chunk_size ? opts->chunk_size : 64 * 1024, bs;
	int rc;

	if (!members || !out || k < 1 || k > TS_EC_MAX_K || m < 1 || m > TS_EC_MAX_M ||
	    n != k + m || n > MAXN)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!members[i])
			return -EINVAL;
	bs = ts_member_info(members[0])->block_size;
	if (chunk & (chunk - 1) || chunk % bs)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		const struct ts_member_info *mi = ts_member_info(members[i]);

		if (mi->block_size != bs || bs > AGRP_BM_BLOCK) {
			ts_log(TS_LOG_ERROR, "agrp", "block size mismatch name=%s", mi->name);
			return TS_ERR_GEOMETRY;
		}
		size = TS_MIN(size, mi->size);
	}
	memset(&sb, 0, sizeof(sb));
	rc = layout(size, n, m, chunk, &sb);
	if (rc)
		return rc;
	rc = ts_uuid_generate(sb.info.group_uuid);
	if (rc)
		return rc;
	sb.info.k = k;
	sb.info.m = m;
	sb.info.chunk_size = chunk;
	sb.info.generation = 1;
	sb.block_size = bs;
	for (unsigned i = 0; i < n; i++) {
		memcpy(sb.info.slots[i].uuid, ts_member_info(members[i])->uuid, 16);
		sb.info.slots[i].node_id = ts_member_info(members[i])->node_id;
	}
	rc = group_alloc(&sb, opts, &g);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n && !rc; i++) {
		g->slot[i].m = members[i];
		g->slot[i].live = 1;
		/* zero bitmaps; all-zero data has all-zero parity: unmap the data area */
		rc = agrp_bm_io_member(g, members[i], TS_MEMBER_WRITE, NULL);
		/* in pieces: a member may bound one IO (remote members: 1 GiB) */
		for (uint64_t o = 0, len = g->nstripes * g->chunk; !rc && o < len; o += 256ull << 20)
			rc = ts_member_rw_sync(members[i], TS_MEMBER_UNMAP, 0, g->data_off + o,
					       TS_MIN(len - o, 256ull << 20), NULL);
		if (!rc)
			rc = ts_member_rw_sync(members[i], TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	}
	if (rc)
		goto fail;
	agrp_rescue_clear(g);
	pthread_mutex_lock(&g->state_lock);
	rc = agrp_sb_write_locked(g, 0, 0);
	if (!rc) /* both copies, so no older group's copy survives */
		rc = agrp_sb_write_locked(g, 0, 0);
	pthread_mutex_unlock(&g->state_lock);
	if (!rc && agrp_live_mask(g) != (1ull << n) - 1)
		rc = TS_ERR_MEMBER_FAILED;
	if (!rc)
		rc = workers_start(g);
	if (rc)
		goto fail;
	*out = g;
	return 0;
fail:
	group_free(g);
	return rc;
}

int ts_agrp_assemble(struct ts_member *const *members, unsigned n, const struct ts_agrp_opts *opts,
		     struct ts_agrp **out)
{
	struct agrp_sb *sbs = NULL;
	int *st = NULL, top = -1, rc = 0, saw_corrupt = 0, saw_version = 0;
	struct ts_agrp *g = NULL;
	struct scratch sc = { 0 };
	uint8_t *tmp = NULL;
	unsigned ncur = 0;
	uint64_t curmask = 0;

	if (!members || !out || n == 0 || n > 2 * MAXN)
		return -EINVAL;
	sbs = ts_calloc(n, sizeof(*sbs));
	st = ts_calloc(n, sizeof(*st));
	if (!sbs || !st) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct ts_member_info *mi;

		if (!members[i]) {
			rc = -EINVAL;
			goto fail;
		}
		mi = ts_member_info(members[i]);
		st[i] = agrp_sb_read(members[i], &sbs[i]);
		if (!st[i] && memcmp(sbs[i].info.slots[sbs[i].info.member_index].uuid, mi->uuid, 16))
			st[i] = TS_ERR_FOREIGN; /* superblock copied from another disk */
		if (st[i]) {
			saw_corrupt |= st[i] == TS_ERR_CORRUPT;
			saw_version |= st[i] == TS_ERR_VERSION;
			ts_log(TS_LOG_WARN, "agrp", "member skipped name=%s err=\"%s\"", mi->name,
			       ts_strerror(st[i]));
			continue;
		}
		if (top >= 0 && memcmp(sbs[i].info.group_uuid, sbs[top].info.group_uuid, 16)) {
			ts_log(TS_LOG_ERROR, "agrp", "members of different groups name=%s other=%s",
			       mi->name, ts_member_info(members[top])->name);
			rc = TS_ERR_FOREIGN;
			goto fail;
		}
		if (top >= 0 && !same_geometry(&sbs[i], &sbs[top])) {
			ts_log(TS_LOG_ERROR, "agrp", "group geometry differs name=%s other=%s",
			       mi->name, ts_member_info(members[top])->name);
			rc = TS_ERR_GEOMETRY;
			goto fail;
		}
		if (top < 0 || sbs[i].info.generation > sbs[top].info.generation ||
		    (sbs[i].info.generation == sbs[top].info.generation && sbs[i].seq > sbs[top].seq))
			top = (int)i;
	}
	if (top < 0) {
		rc = saw_corrupt ? TS_ERR_CORRUPT : saw_version ? TS_ERR_VERSION : TS_ERR_FOREIGN;
		goto fail;
	}
	/* current members: the newest generation, listed in the newest slot table */
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation != sbs[top].info.generation ||
		    memcmp(sbs[top].info.slots[idx].uuid, ts_member_info(members[i])->uuid, 16) ||
		    (curmask & (1ull << idx)))
			continue;
		curmask |= 1ull << idx;
		ncur++;
	}
	if (ncur < sbs[top].info.k) {
		ts_log(TS_LOG_ERROR, "agrp", "not enough current members have=%u need=%u", ncur,
		       sbs[top].info.k);
		rc = TS_ERR_DEGRADED;
		goto fail;
	}
	rc = group_alloc(&sbs[top], opts, &g);
	if (rc)
		goto fail;
	curmask = 0;
	tmp = ts_aligned_alloc(4096, g->bitmap_bytes);
	rc = tmp ? agrp_scratch_alloc(g, &sc) : -ENOMEM;
	for (unsigned i = 0; i < n && !rc; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation != g->generation ||
		    memcmp(g->slot[idx].uuid, ts_member_info(members[i])->uuid, 16) ||
		    (curmask & (1ull << idx)))
			continue;
		curmask |= 1ull << idx;
		g->slot[idx].m = members[i];
		g->slot[idx].live = 1;
		rc = agrp_bm_io_member(g, members[i], TS_MEMBER_READ, tmp);
	}
	if (rc)
		goto fail;
	/*
	 * A current member with out-of-date bits of its own failed in the
	 * write that failed the group: the group could not move its generation
	 * on, so the member still carries the survivors' one. What it missed
	 * was never acknowledged (the group had failed), so those regions are
	 * writes in flight like any other dirty region, repaired below; left as
	 * they were, nothing would ever clear them (only a resync of a member
	 * that is not live does) and the group would stay "healing".
	 */
	for (unsigned i = 0; i < g->n; i++) {
		if (!g->slot[i].live)
			continue;
		for (uint64_t r = 0; r < g->nregions; r++) {
			if (!bit_get(g->bm[1 + i], r))
				continue;
			bit_set(g->bm[1 + i], r, 0);
			bit_set(g->bm[0], r, 1);
		}
	}
	if (ncur < g->n) {
		/* degraded: repair dirty stripes from rescue records where possible */
		rc = agrp_rescue_replay(g, &sc);
		if (rc)
			goto fail;
		pthread_mutex_lock(&g->state_lock);
		g->generation++;
		rc = agrp_sb_write_locked(g, 0, 0);
		pthread_mutex_unlock(&g->state_lock);
		if (rc)
			goto fail;
		ts_log(TS_LOG_WARN, "agrp", "assembled degraded members=%u of %u generation=%llu",
		       ncur, g->n, (unsigned long long)g->generation);
	} else {
		for (uint64_t r = 0; r < g->nregions && !rc; r++) {
			if (!bit_get(g->bm[0], r))
				continue;
			for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++)
				rc = agrp_stripe_resync_parity(g, &sc, s);
		}
		for (unsigned i = 0; i < g->n && !rc; i++)
			rc = ts_member_rw_sync(g->slot[i].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
		if (rc)
			goto fail;
		agrp_bm_clear_where(g, 0, 0, 0);
		agrp_rescue_clear(g);
	}
	if ((unsigned)popcount64(agrp_live_mask(g)) < g->k) {
		rc = TS_ERR_DEGRADED;
		goto fail;
	}
	rc = workers_start(g);
	if (rc)
		goto fail;
	/* stale members of this group: resync what they missed, then rejoin */
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation >= sbs[top].info.generation ||
		    g->slot[idx].live)
			continue;
		ts_log(TS_LOG_INFO, "agrp", "stale member name=%s slot=%u generation=%llu",
		       ts_member_info(members[i])->name, idx,
		       (unsigned long long)sbs[i].info.generation);
		ts_agrp_add_member(g, members[i]);
	}
	*out = g;
	g = NULL;
fail:
	group_free(g);
	agrp_scratch_free(&sc);
	ts_free(tmp);
	ts_free(sbs);
	ts_free(st);
	return rc;
}

void ts_agrp_close(struct ts_agrp *g)
{
	if (!g)
		return;
	if (!agrp_fenced(g)) /* a fenced group writes nothing, not even clean bits */
		agrp_do_flush(g);
	group_free(g);
}
