/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dataplane/volume: the radix map against a reference array; volume IO
 * round trips, bounds, expansion and reload (RAM and file members); crashes
 * at random points (device stops, unflushed writes partly lost) with every
 * flushed write and every snapshot checked after reopening; allocation
 * failure injection on every metadata and IO path (-ENOMEM, state unchanged,
 * nothing leaked); a full pool; concurrent writers racing snapshots; volume
 * attributes (limits, reload, not inherited by clones, gone with the volume).
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/rmap.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"

#define BS TS_VOLUME_BLOCK

static uint64_t g_seed = 88172645463325252ull;

static uint64_t rnd(void)
{
	g_seed ^= g_seed << 13;
	g_seed ^= g_seed >> 7;
	g_seed ^= g_seed << 17;
	return g_seed;
}

static void stamp(uint8_t *b, uint64_t tok, uint64_t g)
{
	uint64_t i;

	for (i = 0; i < BS / 16; i++) {
		memcpy(b + 16 * i, &tok, 8);
		memcpy(b + 16 * i + 8, &g, 8);
	}
}

/* Token in a block read back: 0 for zeroes, UINT64_MAX for garbage. */
static uint64_t token_of(const uint8_t *b, uint64_t g)
{
	uint64_t tok, gg, i;

	memcpy(&tok, b, 8);
	memcpy(&gg, b + 8, 8);
	for (i = 0; i < BS / 16; i++)
		if (memcmp(b + 16 * i, &tok, 8) || memcmp(b + 16 * i + 8, &gg, 8))
			return UINT64_MAX;
	if (tok == 0 && gg == 0)
		return 0;
	return gg == g ? tok : UINT64_MAX;
}

/* ------------------------------------------------------------- rmap */

Test(volume, rmap_matches_reference)
{
	enum { NK = 3000 };
	static uint64_t keys[NK], ref[NK];
	struct rmap m = { 0 };
	uint64_t i, step, count = 0;

	for (i = 0; i < NK; i++) {
		/* clusters and far-apart keys, all levels of the tree */
		keys[i] = i < NK / 2 ? 1000 + i : rnd() % RMAP_KEY_LIMIT;
		ref[i] = 0;
	}
	for (step = 0; step < 60000; step++) {
		uint64_t k = rnd() % NK, op = rnd() % 10;
		int dup = 0;
		for (i = 0; i < k; i++)
			if (keys[i] == keys[k])
				dup = 1;
		if (dup)
			continue;
		if (op < 6) {
			uint64_t v = 1 + rnd() % 1000000, old = rmap_set(&m, keys[k], v);
			cr_assert_eq(old, ref[k]);
			count += !ref[k];
			ref[k] = v;
		} else if (op < 9) {
			cr_assert_eq(rmap_del(&m, keys[k]), ref[k]);
			count -= !!ref[k];
			ref[k] = 0;
		} else {
			/* next() from a random point equals the smallest mapped key >= it */
			uint64_t from = rnd() % 2 ? keys[k] : rnd() % RMAP_KEY_LIMIT, best = UINT64_MAX,
				 bv = 0, gk, gv;
			for (i = 0; i < NK; i++)
				if (ref[i] && keys[i] >= from && keys[i] < best) {
					best = keys[i];
					bv = ref[i];
				}
			if (best == UINT64_MAX) {
				cr_assert_eq(rmap_next(&m, from, &gk, &gv), 0);
			} else {
				cr_assert_eq(rmap_next(&m, from, &gk, &gv), 1);
				cr_assert_eq(gk, best);
				cr_assert_eq(gv, bv);
			}
		}
		cr_assert_eq(rmap_get(&m, keys[k]), ref[k]);
		cr_assert_eq(m.count, count);
	}
	for (i = 0; i < NK; i++)
		rmap_del(&m, keys[i]);
	cr_assert_null(m.root); /* every node freed as it emptied */
	rmap_set(&m, 5, 5);
	rmap_clear(&m);
	cr_assert_null(m.root);
}

/* ---------------------------------------------------- basic IO, reload */

static void roundtrip(struct ts_member *m)
{
	struct ts_vpool *p;
	struct ts_volume *v;
	uint64_t id, g, tok;
	uint8_t *buf = malloc(64 * BS), *back = malloc(64 * BS);

	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "v", 1000, 0, &id), -EINVAL);
	cr_assert_eq(ts_vpool_volume_create(p, "v", 64 * BS, 0, &id), 0);
	cr_assert_eq(ts_volume_open(p, id, &v), 0);
	for (g = 0; g < 64; g++)
		stamp(buf + g * BS, 100 + g, g);
	cr_assert_eq(ts_volume_write_sync(v, 0, 64 * BS, buf), 0);
	cr_assert_eq(ts_volume_read_sync(v, 0, 64 * BS, back), 0);
	cr_assert_arr_eq(buf, back, 64 * BS);
	/* bounds and alignment */
	cr_assert_eq(ts_volume_read_sync(v, 512, BS, back), -EINVAL);
	cr_assert_eq(ts_volume_read_sync(v, 63 * BS, 2 * BS, back), -EINVAL);
	cr_assert_eq(ts_volume_write_sync(v, 64 * BS, BS, buf), -EINVAL);
	cr_assert_eq(ts_volume_read_sync(v, 0, 0, back), -EINVAL);
	/* discard reads zeroes */
	cr_assert_eq(ts_volume_unmap_sync(v, 8 * BS, 4 * BS), 0);
	cr_assert_eq(ts_volume_read_sync(v, 8 * BS, 4 * BS, back), 0);
	for (g = 0; g < 4 * BS; g++)
		cr_assert_eq(back[g], 0);
	/* online expansion */
	cr_assert_eq(ts_vpool_volume_expand(p, id, 32 * BS), -EINVAL);
	cr_assert_eq(ts_vpool_volume_expand(p, id, 128 * BS), 0);
	cr_assert_eq(ts_volume_size(v), 128 * BS);
	cr_assert_eq(ts_volume_read_sync(v, 100 * BS, BS, back), 0);
	cr_assert_eq(token_of(back, 100), 0);
	stamp(buf, 7777, 120);
	cr_assert_eq(ts_volume_write_sync(v, 120 * BS, BS, buf), 0);
	{
		struct ts_vpool_stats st;
		ts_vpool_stats(p, &st);
		cr_assert_gt(st.dirty_bytes, 0);
		cr_assert_eq(ts_volume_flush_sync(v), 0);
		ts_vpool_stats(p, &st);
		cr_assert_eq(st.dirty_bytes, 0);
		cr_assert_gt(st.log_used, 0);
	}
	cr_assert_eq(ts_vpool_volume_delete(p, id), -EBUSY);
	ts_volume_close(v);
	ts_vpool_close(p);

	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_volume_open(p, id, &v), 0);
	cr_assert_eq(ts_volume_size(v), 128 * BS);
	cr_assert_eq(ts_volume_read_sync(v, 0, 64 * BS, back), 0);
	for (g = 0; g < 64; g++) {
		tok = token_of(back + g * BS, g);
		cr_assert_eq(tok, g >= 8 && g < 12 ? 0 : 100 + g);
	}
	cr_assert_eq(ts_volume_read_sync(v, 120 * BS, BS, back), 0);
	cr_assert_eq(token_of(back, 120), 7777);
	ts_volume_close(v);
	cr_assert_eq(ts_vpool_volume_delete(p, id), 0);
	ts_vpool_close(p);
	free(buf);
	free(back);
}

Test(volume, roundtrip_ram_512_and_reload)
{
	struct ts_member *m;
	struct tmem *r;

	cr_assert_eq(tm_ram_create(32ull << 20, 512, 0, &m, &r), 0);
	roundtrip(m);
	ts_member_destroy(m);
}

Test(volume, roundtrip_async_member)
{
	struct ts_member *m;
	struct tmem *r;

	cr_assert_eq(tm_ram_create(32ull << 20, 4096, 1, &m, &r), 0);
	roundtrip(m);
	ts_member_destroy(m);
}

Test(volume, roundtrip_file_and_reload)
{
	char path[] = "/tmp/ts_volume_testXXXXXX";
	int fd = mkstemp(path);
	struct ts_member *m;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(tm_file_create(path, 32ull << 20, &m), 0);
	roundtrip(m);
	ts_member_destroy(m);
	unlink(path);
}

Test(volume, open_rejects_foreign_and_small)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;

	cr_assert_eq(tm_ram_create(1ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), TS_ERR_TOO_SMALL);
	ts_member_destroy(m);
	cr_assert_eq(tm_ram_create(8ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_open(m, &p), TS_ERR_FOREIGN);
	ts_member_destroy(m);
}

/* ------------------------------------------------------------ crashes */

#define CG 128 /* grains in the crash test's volume */

struct crash_model {
	uint64_t fv[CG];  /* token durable as of the last completed flush */
	uint64_t mv[CG];  /* first token written since (0: none) */
	int zap[CG];      /* discarded since the last flush */
	uint64_t snap_id[64];
	uint64_t snap_tok[64][CG];
	int nsnap;
};

static int token_allowed(const struct crash_model *cm, uint64_t g, uint64_t t)
{
	return t == cm->fv[g] || (cm->mv[g] && t != UINT64_MAX && t >= cm->mv[g]) ||
	       (cm->zap[g] && t == 0);
}

static void crash_settle(struct crash_model *cm, const uint64_t cur[CG])
{
	memcpy(cm->fv, cur, sizeof(cm->fv));
	memset(cm->mv, 0, sizeof(cm->mv));
	memset(cm->zap, 0, sizeof(cm->zap));
}

static void read_tokens(struct ts_vpool *p, uint64_t vol, uint64_t out[CG])
{
	struct ts_volume *v;
	uint8_t *buf = malloc(CG * BS);
	uint64_t g;

	cr_assert_eq(ts_volume_open(p, vol, &v), 0);
	cr_assert_eq(ts_volume_read_sync(v, 0, CG * BS, buf), 0);
	for (g = 0; g < CG; g++)
		out[g] = token_of(buf + g * BS, g);
	ts_volume_close(v);
	free(buf);
}

Test(volume, crash_at_random_points)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	struct crash_model cm;
	uint64_t vol, tok = 0, cur[CG], g;
	uint8_t *buf = malloc(4 * BS);
	int round, i;

	memset(&cm, 0, sizeof(cm));
	cr_assert_eq(tm_ram_create(64ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "c", CG * BS, 0, &vol), 0);
	cr_assert_eq(ts_vpool_commit(p), 0);
	for (round = 0; round < 40; round++) {
		struct ts_volume *v;
		int dead = 0;
		long arm = (long)(rnd() % 120);

		memcpy(cur, cm.fv, sizeof(cur));
		cr_assert_eq(ts_volume_open(p, vol, &v), 0);
		tm_ram_fail_after(r, arm);
		for (i = 0; i < 60 && !dead; i++) {
			unsigned op = (unsigned)(rnd() % 100);
			uint64_t n = 1 + rnd() % 4, g0 = rnd() % (CG - n + 1);
			int rc;
			if (op < 60) {
				for (g = 0; g < n; g++) {
					stamp(buf + g * BS, ++tok, g0 + g);
					if (!cm.mv[g0 + g])
						cm.mv[g0 + g] = tok;
				}
				rc = ts_volume_write_sync(v, g0 * BS, n * BS, buf);
				if (rc == 0)
					for (g = 0; g < n; g++)
						cur[g0 + g] = tok - n + 1 + g;
			} else if (op < 68) {
				for (g = 0; g < n; g++)
					cm.zap[g0 + g] = 1;
				rc = ts_volume_unmap_sync(v, g0 * BS, n * BS);
				if (rc == 0)
					for (g = 0; g < n; g++)
						cur[g0 + g] = 0;
			} else if (op < 88) {
				rc = ts_volume_flush_sync(v);
				if (rc == 0)
					crash_settle(&cm, cur);
			} else {
				uint64_t sid;
				if (cm.nsnap == 64)
					continue;
				/* a snapshot flushes: on success it holds cur and cur is durable */
				ts_volume_close(v);
				rc = ts_vpool_snapshot(p, vol, "s", 0, &sid);
				cr_assert_eq(ts_volume_open(p, vol, &v), 0);
				if (rc == 0) {
					cm.snap_id[cm.nsnap] = sid;
					memcpy(cm.snap_tok[cm.nsnap++], cur, sizeof(cur));
					crash_settle(&cm, cur);
				}
			}
			dead = rc != 0;
		}
		ts_volume_close(v);
		ts_vpool_close(p); /* its commit may fail: the device is "dead" */
		tm_ram_crash(r, (unsigned)(rnd() % 101), (unsigned)rnd());
		if (rnd() % 2) {
			/* die again inside open (replay, then its checkpoint) */
			tm_ram_fail_after(r, (long)(rnd() % 8));
			if (ts_vpool_open(m, &p) == 0)
				ts_vpool_close(p);
			tm_ram_crash(r, (unsigned)(rnd() % 101), (unsigned)rnd());
		}
		cr_assert_eq(ts_vpool_open(m, &p), 0, "round %d", round);
		read_tokens(p, vol, cur);
		for (g = 0; g < CG; g++)
			cr_assert(token_allowed(&cm, g, cur[g]),
				  "round %d grain %llu: read %llu, flushed %llu, since %llu", round,
				  (unsigned long long)g, (unsigned long long)cur[g],
				  (unsigned long long)cm.fv[g], (unsigned long long)cm.mv[g]);
		crash_settle(&cm, cur);
		/* every snapshot that reported success is intact (and maybe one more) */
		for (i = 0; i < cm.nsnap; i++) {
			uint64_t cl, st[CG];
			struct ts_vpool_layer_info li;
			cr_assert_eq(ts_vpool_layer_info(p, cm.snap_id[i], &li), 0);
			cr_assert_eq(ts_vpool_volume_create(p, "probe", CG * BS, cm.snap_id[i], &cl), 0);
			read_tokens(p, cl, st);
			cr_assert_arr_eq(st, cm.snap_tok[i], sizeof(st));
			cr_assert_eq(ts_vpool_volume_delete(p, cl), 0);
		}
	}
	ts_vpool_close(p);
	ts_member_destroy(m);
	free(buf);
}

/* -------------------------------------------------- allocation failure */

struct afenv {
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	uint64_t vol, snap, clone;
};

static void af_setup(struct afenv *e)
{
	uint8_t buf[BS];
	struct ts_volume *v;
	uint64_t g;

	cr_assert_eq(tm_ram_create(32ull << 20, 4096, 0, &e->m, &e->r), 0);
	cr_assert_eq(ts_vpool_format(e->m), 0);
	cr_assert_eq(ts_vpool_open(e->m, &e->p), 0);
	cr_assert_eq(ts_vpool_volume_create(e->p, "a", 2048 * BS, 0, &e->vol), 0);
	cr_assert_eq(ts_volume_open(e->p, e->vol, &v), 0);
	for (g = 0; g < 2048; g += 3) {
		stamp(buf, g + 1, g);
		cr_assert_eq(ts_volume_write_sync(v, g * BS, BS, buf), 0);
	}
	ts_volume_close(v);
	cr_assert_eq(ts_vpool_snapshot(e->p, e->vol, "s", 0, &e->snap), 0);
	cr_assert_eq(ts_vpool_volume_create(e->p, "cl", 2048 * BS, e->snap, &e->clone), 0);
	cr_assert_eq(ts_vpool_commit(e->p), 0);
}

static void af_check(struct afenv *e, uint64_t vol, int wrote)
{
	struct ts_volume *v;
	uint8_t *buf = malloc(2048 * BS);
	uint64_t g;

	cr_assert_eq(ts_volume_open(e->p, vol, &v), 0);
	cr_assert_eq(ts_volume_read_sync(v, 0, 2048 * BS, buf), 0);
	for (g = 0; g < 2048; g += 3)
		cr_assert_eq(token_of(buf + g * BS, g), g == 0 && wrote ? 999 : g + 1);
	ts_volume_close(v);
	free(buf);
}

static int af_op(struct afenv *e, int which)
{
	uint64_t id;
	uint8_t buf[BS * 2];
	struct ts_volume *v = NULL;
	int rc;

	switch (which) {
	case 0:
		return ts_vpool_snapshot(e->p, e->vol, "x", 0, &id);
	case 1:
		return ts_vpool_volume_create(e->p, "y", 2048 * BS, e->snap, &id);
	case 2:
		return ts_vpool_volume_rebase(e->p, e->clone, e->snap);
	case 3:
		return ts_vpool_layer_remove(e->p, e->snap) == -EBUSY ? 0 : -1;
	case 4:
		return ts_vpool_volume_delete(e->p, e->clone);
	case 5:
		rc = ts_volume_open(e->p, e->vol, &v);
		if (rc)
			return rc;
		stamp(buf, 999, 0);
		stamp(buf + BS, 999, 3);
		rc = ts_volume_write_sync(v, 0, BS, buf);
		ts_volume_close(v);
		return rc;
	case 6:
		return ts_vpool_commit(e->p);
	default:
		return ts_vpool_volume_expand(e->p, e->vol, 4096 * BS);
	}
}

Test(volume, allocation_failures_leave_state_and_leak_nothing)
{
	int which;

	for (which = 0; which < 8; which++) {
		struct afenv e;
		struct ts_vpool_stats s0, s1;
		long k;
		int rc = -ENOMEM;

		af_setup(&e);
		ts_vpool_stats(e.p, &s0);
		for (k = 0; rc == -ENOMEM && k < 100000; k++) {
			ts_alloc_fail_after(k);
			rc = af_op(&e, which);
			ts_alloc_fail_after(-1);
			if (rc == -ENOMEM) {
				ts_vpool_stats(e.p, &s1);
				cr_assert_eq(s1.layers, s0.layers, "op %d k %ld", which, k);
				cr_assert_eq(s1.volumes, s0.volumes);
				cr_assert_eq(s1.free_blocks + s1.pending_free,
					     s0.free_blocks + s0.pending_free, "op %d k %ld", which, k);
				af_check(&e, e.vol, 0);
			}
		}
		cr_assert_eq(rc, 0, "op %d: rc %d after %ld tries", which, rc, k);
		cr_assert_eq(ts_vpool_commit(e.p), 0);
		ts_vpool_close(e.p);
		cr_assert_eq(ts_vpool_open(e.m, &e.p), 0);
		af_check(&e, e.vol, which == 5);
		ts_vpool_close(e.p);
		ts_member_destroy(e.m);
	}
}

Test(volume, full_pool_returns_no_space_and_recovers)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	struct ts_volume *v;
	struct ts_vpool_stats st;
	uint64_t id, g, written = 0;
	uint8_t buf[BS];
	int rc = 0;

	cr_assert_eq(tm_ram_create(8ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "big", 1ull << 30, 0, &id), 0);
	cr_assert_eq(ts_volume_open(p, id, &v), 0);
	memset(buf, 1, sizeof(buf));
	for (g = 0; g < 4096 && rc == 0; g++) {
		rc = ts_volume_write_sync(v, g * 7 * BS, BS, buf);
		written += rc == 0;
	}
	cr_assert_eq(rc, TS_ERR_NO_SPACE);
	ts_vpool_stats(p, &st);
	cr_assert_eq(st.free_blocks, 0);
	cr_assert_eq(written, st.data_blocks);
	ts_volume_close(v);
	cr_assert_eq(ts_vpool_volume_delete(p, id), 0);
	cr_assert_eq(ts_vpool_commit(p), 0);
	ts_vpool_stats(p, &st);
	cr_assert_eq(st.free_blocks, st.data_blocks);
	ts_vpool_close(p);
	ts_member_destroy(m);
}

/* ---------------------------------------------------------- threads */

struct writer {
	struct ts_vpool *p;
	uint64_t vol, first, n, last_tok[64];
	int id;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	struct ts_volume *v;
	uint8_t buf[BS];
	uint64_t i;

	cr_assert_eq(ts_volume_open(w->p, w->vol, &v), 0);
	for (i = 0; i < 400; i++) {
		uint64_t g = w->first + (i * 7) % w->n, tok = ((uint64_t)w->id << 32) | (i + 1);
		stamp(buf, tok, g);
		cr_assert_eq(ts_volume_write_sync(v, g * BS, BS, buf), 0);
		w->last_tok[g - w->first] = tok;
		if (i % 50 == 0)
			cr_assert_eq(ts_volume_flush_sync(v), 0);
	}
	ts_volume_close(v);
	return NULL;
}

Test(volume, concurrent_writers_and_snapshots)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	struct writer w[3];
	pthread_t t[3];
	uint64_t vol, sid, cur[CG], g;
	int i, snaps = 0;

	cr_assert_eq(tm_ram_create(64ull << 20, 4096, 1, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "t", CG * BS, 0, &vol), 0);
	for (i = 0; i < 3; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].p = p;
		w[i].vol = vol;
		w[i].first = (uint64_t)i * 40;
		w[i].n = 40;
		w[i].id = i + 1;
		cr_assert_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (i = 0; i < 20; i++) {
		cr_assert_eq(ts_vpool_snapshot(p, vol, "live", 0, &sid), 0);
		snaps++;
	}
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	read_tokens(p, vol, cur);
	for (i = 0; i < 3; i++)
		for (g = 0; g < 40; g++)
			cr_assert_eq(cur[w[i].first + g], w[i].last_tok[g]);
	ts_vpool_close(p);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	read_tokens(p, vol, cur);
	for (i = 0; i < 3; i++)
		for (g = 0; g < 40; g++)
			cr_assert_eq(cur[w[i].first + g], w[i].last_tok[g]);
	cr_assert_eq(snaps, 20);
	ts_vpool_close(p);
	ts_member_destroy(m);
}

/* IOs submitted from completion callbacks (on the member's single completion
 * thread) while snapshots run: the quiesce must queue them, not block the
 * thread the in-flight IOs need to complete. */
struct chainer {
	struct ts_volume *v;
	uint8_t buf[BS];
	uint64_t i, n;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done, err;
};

static void chain_next(void *arg, int status)
{
	struct chainer *c = arg;
	int rc;

	if (status)
		c->err = status;
	if (status || ++c->i == c->n) {
		pthread_mutex_lock(&c->mu);
		c->done = 1;
		pthread_cond_signal(&c->cond);
		pthread_mutex_unlock(&c->mu);
		return;
	}
	stamp(c->buf, c->i + 1, c->i % CG);
	rc = ts_volume_write(c->v, (c->i % CG) * BS, BS, c->buf, chain_next, c);
	if (rc)
		chain_next(c, rc);
}

Test(volume, io_from_callbacks_during_snapshots)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	struct chainer c;
	uint64_t vol, sid, cur[CG], g;
	int snaps = 0;

	cr_assert_eq(tm_ram_create(64ull << 20, 4096, 1, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "cb", CG * BS, 0, &vol), 0);
	memset(&c, 0, sizeof(c));
	pthread_mutex_init(&c.mu, NULL);
	pthread_cond_init(&c.cond, NULL);
	c.n = 3000;
	cr_assert_eq(ts_volume_open(p, vol, &c.v), 0);
	stamp(c.buf, 1, 0);
	cr_assert_eq(ts_volume_write(c.v, 0, BS, c.buf, chain_next, &c), 0);
	for (;;) {
		int done;
		pthread_mutex_lock(&c.mu);
		done = c.done;
		pthread_mutex_unlock(&c.mu);
		if (done)
			break;
		cr_assert_eq(ts_vpool_snapshot(p, vol, "cb", 0, &sid), 0);
		snaps++;
	}
	cr_assert_eq(c.err, 0);
	cr_assert_gt(snaps, 0);
	ts_volume_close(c.v);
	read_tokens(p, vol, cur);
	for (g = 0; g < CG; g++) {
		/* the last write to grain g was number i with i % CG == g */
		uint64_t last = ((c.n - 1 - g) / CG) * CG + g;
		cr_assert_eq(cur[g], last + 1, "grain %llu", (unsigned long long)g);
	}
	ts_vpool_close(p);
	ts_member_destroy(m);
	pthread_mutex_destroy(&c.mu);
	pthread_cond_destroy(&c.cond);
}

/* ------------------------------------------------------------- holds */

/* Completion log of asynchronous IOs: which ones fired, in what order. */
struct iolog {
	pthread_mutex_t mu;
	int order[64];
	int status[64];
	int n;
};

struct iotag {
	struct iolog *log;
	int id;
};

static void iolog_cb(void *arg, int status)
{
	struct iotag *t = arg;

	pthread_mutex_lock(&t->log->mu);
	t->log->status[t->id] = status;
	t->log->order[t->log->n++] = t->id;
	pthread_mutex_unlock(&t->log->mu);
}

static int iolog_count(struct iolog *l)
{
	int n;

	pthread_mutex_lock(&l->mu);
	n = l->n;
	pthread_mutex_unlock(&l->mu);
	return n;
}

static uint64_t in_ms(unsigned ms)
{
	return ts_now_ns() + (uint64_t)ms * 1000000ull;
}

static uint64_t token_at(struct ts_volume *v, uint64_t g)
{
	uint8_t buf[BS];

	cr_assert_eq(ts_volume_read_sync(v, g * BS, BS, buf), 0);
	return token_of(buf, g);
}

/* What a snapshot layer reads at grain g: through a clone (the read path). */
static uint64_t layer_token(struct ts_vpool *p, uint64_t layer, uint64_t g)
{
	struct ts_volume *v;
	uint64_t cl, tok;

	cr_assert_eq(ts_vpool_volume_create(p, "peek", CG * BS, layer, &cl), 0);
	cr_assert_eq(ts_volume_open(p, cl, &v), 0);
	tok = token_at(v, g);
	ts_volume_close(v);
	cr_assert_eq(ts_vpool_volume_delete(p, cl), 0);
	return tok;
}

/*
 * Reads, writes and unmaps submitted while a volume is held are queued, not
 * completed; a snapshot under the hold runs at once, captures the pre-hold
 * content and leaves the queue alone; release resubmits the queue in submit
 * order (a synchronous member completes each IO inline, so completion order
 * is admission order and the final content shows the order).
 */
Test(volume, hold_queues_io_through_snapshot_until_release)
{
	struct ts_member *m = tm_ram(32ull << 20, 1, 1, NULL);
	struct iolog log = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct iotag tag[8];
	static uint8_t bufs[8][BS];
	struct ts_vpool *p;
	struct ts_volume *v;
	uint64_t vol, snap;
	int i;

	cr_assert_not_null(m);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "h", CG * BS, 0, &vol), 0);
	cr_assert_eq(ts_volume_open(p, vol, &v), 0);
	stamp(bufs[7], 100, 0);
	cr_assert_eq(ts_volume_write_sync(v, 0, BS, bufs[7]), 0);
	stamp(bufs[7], 101, 1);
	cr_assert_eq(ts_volume_write_sync(v, BS, BS, bufs[7]), 0);

	cr_assert_eq(ts_vpool_volume_hold(p, vol, in_ms(1000)), 0);
	for (i = 0; i < 8; i++)
		tag[i] = (struct iotag){ &log, i };
	/* 0: write g0=1, 1: write g0=2, 2: unmap g1, 3: read g0, 4: write g1=3,
	 * 5: write g2=4, 6: unmap g2 */
	stamp(bufs[0], 1, 0);
	stamp(bufs[1], 2, 0);
	stamp(bufs[4], 3, 1);
	stamp(bufs[5], 4, 2);
	cr_assert_eq(ts_volume_write(v, 0, BS, bufs[0], iolog_cb, &tag[0]), 0);
	cr_assert_eq(ts_volume_write(v, 0, BS, bufs[1], iolog_cb, &tag[1]), 0);
	cr_assert_eq(ts_volume_unmap(v, BS, BS, iolog_cb, &tag[2]), 0);
	cr_assert_eq(ts_volume_read(v, 0, BS, bufs[3], iolog_cb, &tag[3]), 0);
	cr_assert_eq(ts_volume_write(v, BS, BS, bufs[4], iolog_cb, &tag[4]), 0);
	cr_assert_eq(ts_volume_write(v, 2 * BS, BS, bufs[5], iolog_cb, &tag[5]), 0);
	cr_assert_eq(ts_volume_unmap(v, 2 * BS, BS, iolog_cb, &tag[6]), 0);
	cr_assert_eq(ts_volume_write(v, 0, 0, bufs[0], iolog_cb, &tag[7]), -EINVAL);
	cr_assert_eq(iolog_count(&log), 0);
	cr_assert_eq(ts_vpool_volume_delete(p, vol), -EBUSY);

	/* a snapshot under the hold: the pre-hold content, queue untouched */
	cr_assert_eq(ts_vpool_snapshot(p, vol, "held", 0, &snap), 0);
	cr_assert_eq(iolog_count(&log), 0);
	/* a second, nested hold: the first release does not drain */
	cr_assert_eq(ts_vpool_volume_hold(p, vol, in_ms(1000)), 0);
	ts_vpool_volume_release(p, vol);
	usleep(10000);
	cr_assert_eq(iolog_count(&log), 0);
	cr_assert_eq(layer_token(p, snap, 0), 100);
	cr_assert_eq(layer_token(p, snap, 1), 101);
	cr_assert_eq(layer_token(p, snap, 2), 0);

	ts_vpool_volume_release(p, vol);
	cr_assert_eq(iolog_count(&log), 7);
	for (i = 0; i < 7; i++) {
		cr_assert_eq(log.order[i], i, "completion %d was IO %d", i, log.order[i]);
		cr_assert_eq(log.status[i], 0);
	}
	cr_assert_eq(token_of(bufs[3], 0), 2); /* the read ran after both writes */
	cr_assert_eq(token_at(v, 0), 2);
	cr_assert_eq(token_at(v, 1), 3); /* unmap, then the write */
	cr_assert_eq(token_at(v, 2), 0); /* write, then the unmap */
	cr_assert_eq(layer_token(p, snap, 0), 100);
	/* a release without a hold is ignored; IO flows */
	ts_vpool_volume_release(p, vol);
	cr_assert_eq(ts_volume_write_sync(v, 0, BS, bufs[0]), 0);
	cr_assert_eq(ts_vpool_volume_hold(p, 999, in_ms(10)), -ENOENT);
	ts_volume_close(v);
	ts_vpool_close(p);
	ts_member_destroy(m);
	pthread_mutex_destroy(&log.mu);
}

struct holder {
	struct ts_vpool *p;
	uint64_t vol, deadline;
	int rc;
	_Atomic int done;
};

static void probe_cb(void *arg, int status)
{
	cr_assert_eq(status, 0);
	atomic_fetch_add((_Atomic int *)arg, 1);
}

/* Return once \p v is quiesced: a read of hole grain \p g completes inline
 * unless it is queued. Every probe read completes (later); *\p fired counts
 * them, *\p sent is how many were submitted. */
static void wait_queued(struct ts_volume *v, uint64_t g, uint8_t *buf, _Atomic int *fired, int *sent)
{
	for (;;) {
		int before = atomic_load(fired);
		cr_assert_eq(ts_volume_read(v, g * BS, BS, buf, probe_cb, fired), 0);
		(*sent)++;
		if (atomic_load(fired) == before + 1)
			usleep(1000); /* not yet quiesced */
		else
			return;
	}
}

static void *holder_main(void *arg)
{
	struct holder *h = arg;

	h->rc = ts_vpool_volume_hold(h->p, h->vol, h->deadline);
	atomic_store(&h->done, 1);
	return NULL;
}

/*
 * A hold waits for in-flight IO (a stalled member parks a write); on its
 * deadline it returns -ETIMEDOUT with the hold undone (IO submitted during
 * the attempt is resubmitted, new IO is admitted); once IO can drain, a hold
 * returns as soon as it has.
 */
Test(volume, hold_waits_for_inflight_and_times_out)
{
	struct tmem *t;
	struct ts_member *m = tm_ram(32ull << 20, 1, 1, &t);
	struct iolog log = { .mu = PTHREAD_MUTEX_INITIALIZER };
	struct iotag tag[4];
	static uint8_t bufs[4][BS];
	struct holder h;
	static uint8_t pbuf[BS];
	_Atomic int fired = 0;
	int sent = 0;
	pthread_t th;
	struct ts_vpool *p;
	struct ts_volume *v;
	uint64_t vol, t0, el;
	int i;

	cr_assert_not_null(m);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "h", CG * BS, 0, &vol), 0);
	cr_assert_eq(ts_volume_open(p, vol, &v), 0);
	for (i = 0; i < 4; i++) {
		tag[i] = (struct iotag){ &log, i };
		stamp(bufs[i], (uint64_t)i + 1, (uint64_t)i);
	}
	tm_set_stall(t, 1);
	cr_assert_eq(ts_volume_write(v, 0, BS, bufs[0], iolog_cb, &tag[0]), 0);
	cr_assert_eq(tm_stalled(t), 1);

	/* times out: an IO queued during the attempt goes to the member after it */
	memset(&h, 0, sizeof(h));
	h.p = p;
	h.vol = vol;
	t0 = ts_now_ns();
	h.deadline = t0 + 80000000ull;
	cr_assert_eq(pthread_create(&th, NULL, holder_main, &h), 0);
	wait_queued(v, 100, pbuf, &fired, &sent);
	cr_assert_eq(ts_volume_write(v, BS, BS, bufs[1], iolog_cb, &tag[1]), 0);
	cr_assert_eq(tm_stalled(t), 1); /* queued by the hold */
	pthread_join(th, NULL);
	el = ts_now_ns() - t0;
	cr_assert_eq(h.rc, -ETIMEDOUT);
	cr_assert_geq(el, 80000000ull);
	cr_assert_lt(el, 2000000000ull);
	cr_assert_eq(tm_stalled(t), 2); /* undone: the queued write was submitted */
	cr_assert_eq(atomic_load(&fired), sent); /* and the queued probe read */
	cr_assert_eq(ts_volume_write(v, 2 * BS, BS, bufs[2], iolog_cb, &tag[2]), 0);
	cr_assert_eq(tm_stalled(t), 3);
	cr_assert_eq(ts_vpool_volume_delete(p, vol), -EBUSY); /* handle open, but not held */

	/* waits while IO is stuck, returns when it drains */
	memset(&h, 0, sizeof(h));
	h.p = p;
	h.vol = vol;
	h.deadline = in_ms(5000);
	cr_assert_eq(pthread_create(&th, NULL, holder_main, &h), 0);
	usleep(30000);
	cr_assert_eq(atomic_load(&h.done), 0);
	cr_assert_eq(ts_volume_write(v, 3 * BS, BS, bufs[3], iolog_cb, &tag[3]), 0);
	tm_set_stall(t, 0);
	pthread_join(th, NULL);
	cr_assert_eq(h.rc, 0);
	cr_assert_eq(iolog_count(&log), 3); /* the three stalled ones; #3 is queued */
	ts_vpool_volume_release(p, vol);
	cr_assert_eq(iolog_count(&log), 4);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(log.status[i], 0);
		cr_assert_eq(token_at(v, (uint64_t)i), (uint64_t)i + 1);
	}
	/* deadline already past, nothing in flight: held at once */
	cr_assert_eq(ts_vpool_volume_hold(p, vol, 0), 0);
	ts_vpool_volume_release(p, vol);
	ts_volume_close(v);
	ts_vpool_close(p);
	ts_member_destroy(m);
	pthread_mutex_destroy(&log.mu);
}

/*
 * Writers (and their callbacks) keep going while holds and snapshots under
 * holds come and go from another thread: every write completes, the last
 * token of each grain is what the volume reads.
 */
Test(volume, holds_and_snapshots_race_writers)
{
	struct ts_member *m;
	struct tmem *r;
	struct ts_vpool *p;
	struct writer w[3];
	pthread_t t[3];
	uint64_t vol, sid, cur[CG], g;
	int i;

	cr_assert_eq(tm_ram_create(64ull << 20, 4096, 1, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "t", CG * BS, 0, &vol), 0);
	for (i = 0; i < 3; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].p = p;
		w[i].vol = vol;
		w[i].first = (uint64_t)i * 40;
		w[i].n = 40;
		w[i].id = i + 1;
		cr_assert_eq(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (i = 0; i < 30; i++) {
		cr_assert_eq(ts_vpool_volume_hold(p, vol, in_ms(5000)), 0);
		if (i % 2)
			cr_assert_eq(ts_vpool_snapshot(p, vol, "h", 0, &sid), 0);
		usleep(500);
		ts_vpool_volume_release(p, vol);
		usleep(500);
	}
	for (i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	read_tokens(p, vol, cur);
	for (i = 0; i < 3; i++)
		for (g = 0; g < 40; g++)
			cr_assert_eq(cur[w[i].first + g], w[i].last_tok[g]);
	ts_vpool_close(p);
	ts_member_destroy(m);
}

/* ---------------------------------------------------- volume attributes */

static void attr_expect(struct ts_vpool *p, uint64_t vol, const char *name, const void *val,
			size_t len)
{
	uint8_t *buf = malloc(TS_VOLUME_ATTR_VALUE_MAX);

	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, name, NULL, 0), (int)len, "%s", name);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, name, buf, TS_VOLUME_ATTR_VALUE_MAX), (int)len);
	if (len)
		cr_assert_arr_eq(buf, val, len, "%s", name);
	free(buf);
}

Test(volume, attributes_set_get_delete_reload_and_clones)
{
	char name[TS_VOLUME_ATTR_NAME_MAX + 1];
	uint8_t *big = malloc(TS_VOLUME_ATTR_VALUE_MAX + 1), small[4];
	uint64_t vol, snap, clone, live_clone, hidden, other;
	struct ts_member *m;
	struct ts_vpool *p;
	struct tmem *r;
	int i;

	for (i = 0; i < (int)TS_VOLUME_ATTR_VALUE_MAX + 1; i++)
		big[i] = (uint8_t)(i * 7 + 3);
	cr_assert_eq(tm_ram_create(32ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "a", 64 * BS, 0, &vol), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "b", 64 * BS, 0, &other), 0);

	/* set, get, overwrite, delete */
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "scsi.pr", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "scsi.pr", "hello", 5), 0);
	attr_expect(p, vol, "scsi.pr", "hello", 5);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "scsi.pr", small, 4), -ERANGE);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "scsi.pr", "a longer value", 14), 0);
	attr_expect(p, vol, "scsi.pr", "a longer value", 14);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "empty", NULL, 0), 0);
	attr_expect(p, vol, "empty", NULL, 0);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "gone", "x", 1), 0);
	cr_assert_eq(ts_vpool_volume_attr_del(p, vol, "gone"), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "gone", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_del(p, vol, "gone"), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_get(p, other, "scsi.pr", NULL, 0), -ENOENT);

	/* limits */
	memset(name, 'n', sizeof(name));
	name[TS_VOLUME_ATTR_NAME_MAX] = 0; /* one byte too long */
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, name, "x", 1), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, name, NULL, 0), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_del(p, vol, name), -EINVAL);
	name[TS_VOLUME_ATTR_NAME_MAX - 1] = 0; /* the longest */
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, name, "long name", 9), 0);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "", "x", 1), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, NULL, "x", 1), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "v", NULL, 1), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_set(NULL, vol, "v", "x", 1), -EINVAL);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "big", big, TS_VOLUME_ATTR_VALUE_MAX + 1),
		     -E2BIG);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "big", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "big", big, TS_VOLUME_ATTR_VALUE_MAX), 0);
	cr_assert_eq(ts_vpool_volume_attr_set(p, 9999, "v", "x", 1), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_del(p, 9999, "v"), -ENOENT);
	/* scsi.pr, empty, the long name, big: fill up to the maximum */
	for (i = 4; i < TS_VOLUME_ATTRS_MAX; i++) {
		char n[8];
		snprintf(n, sizeof(n), "f%d", i);
		cr_assert_eq(ts_vpool_volume_attr_set(p, vol, n, n, strlen(n)), 0);
	}
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "one.more", "x", 1), -ENOSPC);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "empty", "now set", 7), 0); /* replace: fine */

	/* snapshots keep them on the volume; clones (of a snapshot, of the live
	 * volume through a hidden snapshot) start with none */
	cr_assert_eq(ts_vpool_snapshot(p, vol, "s", 0, &snap), 0);
	attr_expect(p, vol, "scsi.pr", "a longer value", 14);
	cr_assert_eq(ts_vpool_volume_create(p, "c", 64 * BS, snap, &clone), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, clone, "scsi.pr", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_snapshot(p, vol, "", TS_LAYER_HIDDEN, &hidden), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "lc", 64 * BS, hidden, &live_clone), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, live_clone, "big", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_set(p, clone, "scsi.pr", "clone's own", 11), 0);
	cr_assert_eq(ts_vpool_volume_expand(p, vol, 128 * BS), 0);

	/* reload: first from the log, then from the checkpoint that open wrote */
	for (i = 0; i < 2; i++) {
		ts_vpool_close(p);
		cr_assert_eq(ts_vpool_open(m, &p), 0, "reload %d", i);
		attr_expect(p, vol, "scsi.pr", "a longer value", 14);
		attr_expect(p, vol, "empty", "now set", 7);
		attr_expect(p, vol, name, "long name", 9);
		attr_expect(p, vol, "big", big, TS_VOLUME_ATTR_VALUE_MAX);
		attr_expect(p, vol, "f5", "f5", 2);
		cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "gone", NULL, 0), -ENOENT);
		attr_expect(p, clone, "scsi.pr", "clone's own", 11);
		cr_assert_eq(ts_vpool_volume_attr_get(p, live_clone, "scsi.pr", NULL, 0), -ENOENT);
		cr_assert_eq(ts_vpool_volume_attr_get(p, other, "scsi.pr", NULL, 0), -ENOENT);
	}

	/* a rebase (restore in place) keeps them; a delete takes them along */
	cr_assert_eq(ts_vpool_volume_rebase(p, vol, snap), 0);
	attr_expect(p, vol, "scsi.pr", "a longer value", 14);
	cr_assert_eq(ts_vpool_volume_delete(p, vol), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "scsi.pr", NULL, 0), -ENOENT);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "scsi.pr", "x", 1), -ENOENT);
	ts_vpool_close(p);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "scsi.pr", NULL, 0), -ENOENT);
	attr_expect(p, clone, "scsi.pr", "clone's own", 11);
	ts_vpool_close(p);
	ts_member_destroy(m);
	free(big);
}

Test(volume, attribute_allocation_failures_change_nothing)
{
	static const char *const names[] = { "scsi.pr", "new", "scsi.pr" };
	struct ts_member *m;
	struct ts_vpool *p;
	struct tmem *r;
	uint64_t vol;
	int which;

	cr_assert_eq(tm_ram_create(32ull << 20, 4096, 0, &m, &r), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "a", 64 * BS, 0, &vol), 0);
	cr_assert_eq(ts_vpool_volume_attr_set(p, vol, "scsi.pr", "old", 3), 0);
	/* 0: overwrite, 1: add, 2: delete */
	for (which = 0; which < 3; which++) {
		int rc = -ENOMEM;
		long k;

		for (k = 0; rc == -ENOMEM && k < 1000; k++) {
			ts_alloc_fail_after(k);
			rc = which == 2 ? ts_vpool_volume_attr_del(p, vol, names[which])
					: ts_vpool_volume_attr_set(p, vol, names[which], "value", 5);
			ts_alloc_fail_after(-1);
			if (rc != -ENOMEM)
				continue;
			if (which == 0)
				attr_expect(p, vol, "scsi.pr", "old", 3);
			else if (which == 1)
				cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "new", NULL, 0), -ENOENT);
			else
				attr_expect(p, vol, "scsi.pr", "value", 5);
		}
		cr_assert_eq(rc, 0, "op %d: rc %d", which, rc);
	}
	ts_vpool_close(p);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(p, vol, "scsi.pr", NULL, 0), -ENOENT);
	attr_expect(p, vol, "new", "value", 5);
	ts_vpool_close(p);
	ts_member_destroy(m);
}

/*
 * Racing fresh writes to the same grains (what unarbitrated overlapping IO
 * does): each pair allocates two blocks and the later completion frees the
 * earlier one, so 64 frees land in the pending list at once. Each in-flight
 * write holds its slot there from submit; before it did, the list was sized
 * for one entry per write at its own submit and overflowed.
 */
static void count_cb(void *arg, int status)
{
	cr_assert_eq(status, 0);
	atomic_fetch_add((atomic_int *)arg, 1);
}

Test(volume, racing_fresh_writes_hold_their_pending_slots)
{
	struct ts_member *m;
	struct tmem *t;
	struct ts_vpool *p;
	struct ts_volume *v;
	struct ts_vpool_stats before, after;
	static uint8_t bufs[2][64][BS], out[BS];
	atomic_int done = 0;
	uint64_t vol;

	cr_assert_eq(tm_ram_create(32ull << 20, 4096, 0, &m, &t), 0);
	cr_assert_eq(ts_vpool_format(m), 0);
	cr_assert_eq(ts_vpool_open(m, &p), 0);
	cr_assert_eq(ts_vpool_volume_create(p, "race", 256 * BS, 0, &vol), 0);
	cr_assert_eq(ts_volume_open(p, vol, &v), 0);
	ts_vpool_stats(p, &before);
	tm_set_stall(t, 1);
	for (int k = 0; k < 2; k++)
		for (uint64_t g = 0; g < 64; g++) {
			stamp(bufs[k][g], (uint64_t)k + 1, g);
			cr_assert_eq(ts_volume_write(v, g * BS, BS, bufs[k][g], count_cb, &done), 0);
		}
	cr_assert_eq(tm_stalled(t), 128, "every write allocated its own block");
	tm_set_stall(t, 0);
	cr_assert_eq(atomic_load(&done), 128);
	for (uint64_t g = 0; g < 64; g++) {
		cr_assert_eq(ts_volume_read_sync(v, g * BS, BS, out), 0);
		cr_assert_eq(token_of(out, g), 2, "grain %llu: the later completion wins",
			     (unsigned long long)g);
	}
	cr_assert_eq(ts_vpool_commit(p), 0);
	ts_vpool_stats(p, &after);
	cr_assert_eq(after.pending_free, 0);
	cr_assert_eq(before.free_blocks - after.free_blocks, 64, "the losing blocks are free again");
	ts_volume_close(v);
	ts_vpool_close(p);
	ts_member_destroy(m);
}
