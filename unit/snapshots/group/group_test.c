/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshots/group: group snapshots at one point in time.
 *
 * Consistency: three pools on three members (three array groups), one
 * volume each, several writers per volume doing QD1 4 KiB writes to their
 * own blocks, each write stamped with a unique id and, from one global
 * logical clock, a submit and an ack stamp. A group snapshot at a random
 * time is then read back block by block (through clones of the snapshots)
 * and checked against the write logs: S, the set of writes in the group,
 * must contain every write acked before the call, none submitted after it
 * returned, and be a consistent cut (no write in S submitted after a write
 * outside S was acked). The checker is shown to catch per-volume snapshots
 * taken one after the other. Failure paths: a member whose IO cannot drain
 * (stalled member) times the group out, a failing snapshot of the second
 * member removes the first, bad arguments; two threads take overlapping
 * groups concurrently.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"
#include "snapshots/group/group.h"
#include "unit/support/member/test_member.h"

#define BS TS_VOLUME_BLOCK
#define NP 3        /* pools = members = array groups */
#define NW 3        /* writers per volume */
#define WB 16       /* blocks per writer */
#define NB (NW * WB) /* blocks per volume */
#define LOGMAX 65536

static _Atomic uint64_t g_clock = 1; /* logical clock: submit and ack stamps */
static _Atomic uint64_t g_ids = 1;   /* write ids */

struct env {
	struct ts_member *m[NP];
	struct tmem *t[NP];
	struct ts_vpool *p[NP];
	uint64_t vol[NP];
	struct ts_volume *v[NP];
};

static void env_open(struct env *e)
{
	for (int i = 0; i < NP; i++) {
		cr_assert_eq(tm_ram_create(16ull << 20, 4096, 1, &e->m[i], &e->t[i]), 0);
		cr_assert_eq(ts_vpool_format(e->m[i]), 0);
		cr_assert_eq(ts_vpool_open(e->m[i], &e->p[i]), 0);
	}
}

static void vols_create(struct env *e)
{
	for (int i = 0; i < NP; i++) {
		cr_assert_eq(ts_vpool_volume_create(e->p[i], "g", NB * BS, 0, &e->vol[i]), 0);
		cr_assert_eq(ts_volume_open(e->p[i], e->vol[i], &e->v[i]), 0);
	}
}

static void vols_delete(struct env *e)
{
	for (int i = 0; i < NP; i++) {
		ts_volume_close(e->v[i]);
		e->v[i] = NULL;
		cr_assert_eq(ts_chain_volume_delete(e->p[i], e->vol[i]), 0);
	}
}

static void env_close(struct env *e)
{
	for (int i = 0; i < NP; i++) {
		ts_vpool_close(e->p[i]);
		ts_member_destroy(e->m[i]);
	}
}

static int snapshots_in(struct ts_vpool *p)
{
	struct ts_chain_snapshot_info si[8];

	return ts_chain_snapshot_list(p, 0, 0, si, 8);
}

static void members(struct env *e, struct ts_gsnap_member *gm, const struct ts_gsnap_engine_ops *ops)
{
	for (int i = 0; i < NP; i++)
		gm[i] = (struct ts_gsnap_member){ .ops = ops, .ctx = e->p[i], .vol_id = e->vol[i],
						  .name = "grp" };
}

/* ------------------------------------------------------------ writers */

struct wlog {
	uint64_t id, sub, ack;
	uint32_t blk;
};

struct writer {
	struct ts_volume *v;
	uint32_t first;
	uint64_t seed;
	_Atomic int *stop;
	struct wlog *log;
	_Atomic size_t n; /* entries of log complete (ack stamped) */
	int err;
};

static void stamp(uint8_t *b, uint64_t id, uint64_t blk)
{
	for (size_t i = 0; i < BS / 16; i++) {
		memcpy(b + 16 * i, &id, 8);
		memcpy(b + 16 * i + 8, &blk, 8);
	}
}

/* Write id a block holds: 0 for zeroes, UINT64_MAX for anything else. */
static uint64_t id_of(const uint8_t *b, uint64_t blk)
{
	uint64_t id, bb;

	memcpy(&id, b, 8);
	memcpy(&bb, b + 8, 8);
	for (size_t i = 0; i < BS / 16; i++)
		if (memcmp(b + 16 * i, &id, 8) || memcmp(b + 16 * i + 8, &bb, 8))
			return UINT64_MAX;
	if (id == 0 && bb == 0)
		return 0;
	return bb == blk ? id : UINT64_MAX;
}

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint8_t buf[BS];

	while (!atomic_load(w->stop) && w->n < LOGMAX) {
		struct wlog *l = &w->log[w->n];
		w->seed = w->seed * 6364136223846793005ull + 1442695040888963407ull;
		l->blk = w->first + (uint32_t)((w->seed >> 33) % WB);
		l->id = atomic_fetch_add(&g_ids, 1);
		stamp(buf, l->id, l->blk);
		l->sub = atomic_fetch_add(&g_clock, 1);
		w->err = ts_volume_write_sync(w->v, (uint64_t)l->blk * BS, BS, buf);
		l->ack = atomic_fetch_add(&g_clock, 1);
		if (w->err)
			break;
		w->n++;
	}
	return NULL;
}

struct writers {
	struct writer w[NP][NW];
	pthread_t th[NP][NW];
	_Atomic int stop;
};

static void writers_start(struct writers *ws, struct env *e, uint64_t seed)
{
	atomic_store(&ws->stop, 0);
	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++) {
			struct writer *w = &ws->w[i][j];
			memset(w, 0, sizeof(*w));
			w->v = e->v[i];
			w->first = (uint32_t)(j * WB);
			w->seed = seed * 131 + (uint64_t)(i * NW + j);
			w->stop = &ws->stop;
			w->log = malloc(LOGMAX * sizeof(*w->log));
			cr_assert_not_null(w->log);
			cr_assert_eq(pthread_create(&ws->th[i][j], NULL, writer_main, w), 0);
		}
}

static size_t writers_stop(struct writers *ws)
{
	size_t total = 0;

	atomic_store(&ws->stop, 1);
	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++) {
			pthread_join(ws->th[i][j], NULL);
			cr_assert_eq(ws->w[i][j].err, 0);
			total += ws->w[i][j].n;
		}
	return total;
}

/* Wait until every writer has completed \p k more writes than now. */
static void wait_progress(struct writers *ws, size_t k)
{
	size_t base[NP][NW];

	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++)
			base[i][j] = atomic_load(&ws->w[i][j].n);
	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++)
			while (atomic_load(&ws->w[i][j].n) < base[i][j] + k &&
			       atomic_load(&ws->w[i][j].n) < LOGMAX)
				usleep(200);
}

static void writers_free(struct writers *ws)
{
	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++)
			free(ws->w[i][j].log);
}

/* ------------------------------------------------------------ checker */

struct verdict {
	size_t in, out;        /* writes in S, outside S */
	size_t bad_a, bad_b;   /* acked before the call but out; submitted after return but in */
	size_t bad_content;    /* a block shows no write of its own log */
	uint64_t max_sub_in, min_ack_out;
};

/* What snapshot \p snap of pool \p p reads, block by block (through a clone). */
static void read_snapshot(struct ts_vpool *p, uint64_t snap, uint64_t ids[NB])
{
	static uint8_t buf[NB * BS];
	struct ts_volume *v;
	uint64_t cl;

	cr_assert_eq(ts_chain_clone(p, TS_CHAIN_FROM_SNAPSHOT, snap, "peek", 0, &cl), 0);
	cr_assert_eq(ts_volume_open(p, cl, &v), 0);
	cr_assert_eq(ts_volume_read_sync(v, 0, NB * BS, buf), 0);
	for (uint64_t b = 0; b < NB; b++)
		ids[b] = id_of(buf + b * BS, b);
	ts_volume_close(v);
	cr_assert_eq(ts_chain_volume_delete(p, cl), 0);
}

/*
 * Classify every write of the run against the snapshots' content and count
 * violations of the guarantee. \p call and \p ret are clock stamps taken just
 * before ts_gsnap_take() was called and just after it returned.
 */
static struct verdict check(struct writers *ws, uint64_t ids[NP][NB], uint64_t call, uint64_t ret)
{
	struct verdict vd = { .min_ack_out = UINT64_MAX };

	for (int i = 0; i < NP; i++)
		for (int j = 0; j < NW; j++) {
			struct writer *w = &ws->w[i][j];
			/* position in w's log of the write each block shows (-1: none) */
			long shown[WB];
			for (int b = 0; b < WB; b++) {
				uint64_t id = ids[i][w->first + (uint32_t)b];
				shown[b] = -1;
				if (id == 0)
					continue;
				for (size_t k = 0; k < w->n; k++)
					if (w->log[k].id == id)
						shown[b] = (long)k;
				vd.bad_content += shown[b] < 0;
			}
			for (size_t k = 0; k < w->n; k++) {
				const struct wlog *l = &w->log[k];
				/* writes to one block are ordered (one writer, QD1): the
				 * shown write and every earlier one to that block are in */
				int in = (long)k <= shown[l->blk - w->first];
				if (in) {
					vd.in++;
					vd.max_sub_in = TS_MAX(vd.max_sub_in, l->sub);
					vd.bad_b += l->sub > ret;
				} else {
					vd.out++;
					vd.min_ack_out = TS_MIN(vd.min_ack_out, l->ack);
					vd.bad_a += l->ack < call;
				}
			}
		}
	return vd;
}

static int cut_consistent(const struct verdict *vd)
{
	return vd->in == 0 || vd->out == 0 || vd->min_ack_out > vd->max_sub_in;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---------------------------------------------------------- consistency */

Test(group, snapshot_is_a_consistent_cut, .timeout = 120)
{
	enum { RUNS = 24 };
	static struct writers ws;
	static uint64_t ids[NP][NB];
	uint64_t pause[RUNS], hold[RUNS], snap[RUNS];
	struct ts_gsnap_member gm[NP];
	struct ts_gsnap_timing tm;
	struct env e;
	size_t writes = 0, in = 0, out = 0;
	uint64_t seed = 12345;

	env_open(&e);
	for (int run = 0; run < RUNS; run++) {
		uint64_t call, ret;
		struct verdict vd;

		vols_create(&e);
		members(&e, gm, &ts_gsnap_vpool_ops);
		writers_start(&ws, &e, (uint64_t)run + 1);
		seed = seed * 6364136223846793005ull + 1;
		wait_progress(&ws, 2); /* some writes acked before the cut, whatever the speed */
		usleep((useconds_t)(2000 + (seed >> 33) % 30000)); /* the cut: 2..32 ms in */
		call = atomic_fetch_add(&g_clock, 1);
		cr_assert_eq(ts_gsnap_take(gm, NP, 2000000000ull, &tm), 0);
		ret = atomic_fetch_add(&g_clock, 1);
		pause[run] = tm.total_pause_ns;
		hold[run] = tm.hold_ns;
		snap[run] = tm.snap_ns;
		cr_assert_leq(tm.hold_ns + tm.snap_ns, tm.total_pause_ns);
		wait_progress(&ws, 2); /* and some after it */
		writes += writers_stop(&ws);
		for (int i = 0; i < NP; i++) {
			cr_assert_neq(gm[i].snap_id, 0);
			read_snapshot(e.p[i], gm[i].snap_id, ids[i]);
		}
		vd = check(&ws, ids, call, ret);
		cr_assert_eq(vd.bad_content, 0, "run %d: a block shows a write not in its log", run);
		cr_assert_eq(vd.bad_a, 0, "run %d: %zu writes acked before the call are missing", run,
			     vd.bad_a);
		cr_assert_eq(vd.bad_b, 0, "run %d: %zu writes submitted after return are in", run,
			     vd.bad_b);
		cr_assert(cut_consistent(&vd),
			  "run %d: write in S submitted at %llu after one outside acked at %llu", run,
			  (unsigned long long)vd.max_sub_in, (unsigned long long)vd.min_ack_out);
		in += vd.in;
		out += vd.out;
		writers_free(&ws);
		vols_delete(&e);
		for (int i = 0; i < NP; i++) {
			cr_assert_eq(ts_chain_snapshot_delete(e.p[i], gm[i].snap_id), 0);
			cr_assert_eq(snapshots_in(e.p[i]), 0);
		}
	}
	cr_assert_gt(in, 0);
	cr_assert_gt(out, 0);
	qsort(pause, RUNS, sizeof(pause[0]), cmp_u64);
	qsort(hold, RUNS, sizeof(hold[0]), cmp_u64);
	qsort(snap, RUNS, sizeof(snap[0]), cmp_u64);
	fprintf(stderr,
		"group: %d runs, %zu writes (%zu in snapshots, %zu after); pause us min/median/max "
		"%llu/%llu/%llu, hold %llu/%llu/%llu, snap %llu/%llu/%llu\n",
		RUNS, writes, in, out, (unsigned long long)pause[0] / 1000,
		(unsigned long long)pause[RUNS / 2] / 1000, (unsigned long long)pause[RUNS - 1] / 1000,
		(unsigned long long)hold[0] / 1000, (unsigned long long)hold[RUNS / 2] / 1000,
		(unsigned long long)hold[RUNS - 1] / 1000, (unsigned long long)snap[0] / 1000,
		(unsigned long long)snap[RUNS / 2] / 1000, (unsigned long long)snap[RUNS - 1] / 1000);
	env_close(&e);
}

/* The checker has teeth: snapshots taken one volume after the other while the
 * writers run are not a consistent cut. Between two snapshots every writer
 * completes 3 writes (so pool i has a write outside its snapshot acked at
 * some a), then 3 more (so pool i+1 has a write submitted after a, acked
 * before its snapshot): a violation by construction, at any speed. */
Test(group, checker_catches_one_by_one_snapshots)
{
	static struct writers ws;
	static uint64_t ids[NP][NB];
	uint64_t sid[NP], call, ret;
	struct verdict vd;
	struct env e;

	env_open(&e);
	vols_create(&e);
	writers_start(&ws, &e, 7);
	wait_progress(&ws, 2);
	call = atomic_fetch_add(&g_clock, 1);
	for (int i = 0; i < NP; i++) {
		cr_assert_eq(ts_chain_snapshot(e.p[i], e.vol[i], "one", &sid[i]), 0);
		wait_progress(&ws, 3);
		wait_progress(&ws, 3);
	}
	ret = atomic_fetch_add(&g_clock, 1);
	writers_stop(&ws);
	for (int i = 0; i < NP; i++)
		read_snapshot(e.p[i], sid[i], ids[i]);
	vd = check(&ws, ids, call, ret);
	cr_assert_eq(vd.bad_content, 0);
	cr_assert_eq(vd.bad_a + vd.bad_b, 0); /* each snapshot alone is fine */
	cr_assert_not(cut_consistent(&vd), "one-by-one snapshots passed as a consistent cut");
	writers_free(&ws);
	vols_delete(&e);
	env_close(&e);
}

/* ------------------------------------------------------------- failures */

static void io_flows(struct env *e)
{
	uint8_t buf[BS];

	for (int i = 0; i < NP; i++) {
		stamp(buf, 77, 0);
		cr_assert_eq(ts_volume_write_sync(e->v[i], 0, BS, buf), 0);
		cr_assert_eq(ts_volume_read_sync(e->v[i], 0, BS, buf), 0);
		cr_assert_eq(id_of(buf, 0), 77);
	}
}

static void parked_cb(void *arg, int status)
{
	atomic_store((_Atomic int *)arg, status == 0 ? 1 : status);
}

/* A member whose in-flight IO cannot drain (its device stopped answering):
 * the group times out, no snapshot anywhere, every hold undone. */
Test(group, timeout_leaves_nothing_behind)
{
	struct ts_gsnap_member gm[NP];
	struct ts_gsnap_timing tm;
	static uint8_t buf[BS];
	_Atomic int done = 0;
	struct env e;

	env_open(&e);
	vols_create(&e);
	members(&e, gm, &ts_gsnap_vpool_ops);
	tm_set_stall(e.t[1], 1);
	stamp(buf, 5, 3);
	cr_assert_eq(ts_volume_write(e.v[1], 3 * BS, BS, buf, parked_cb, &done), 0);
	cr_assert_eq(ts_gsnap_take(gm, NP, 100000000ull, &tm), -ETIMEDOUT);
	cr_assert_geq(tm.total_pause_ns, 100000000ull);
	cr_assert_lt(tm.total_pause_ns, 2000000000ull);
	for (int i = 0; i < NP; i++) {
		cr_assert_eq(gm[i].snap_id, 0);
		cr_assert_eq(snapshots_in(e.p[i]), 0);
	}
	/* members 0 and 2 flow at once; 1 once its device answers */
	for (int i = 0; i < NP; i += 2) {
		uint8_t b[BS];
		stamp(b, 9, 1);
		cr_assert_eq(ts_volume_write_sync(e.v[i], BS, BS, b), 0);
	}
	cr_assert_eq(atomic_load(&done), 0);
	tm_set_stall(e.t[1], 0);
	cr_assert_eq(atomic_load(&done), 1);
	io_flows(&e);
	/* and the next group goes through */
	cr_assert_eq(ts_gsnap_take(gm, NP, 1000000000ull, NULL), 0);
	for (int i = 0; i < NP; i++)
		cr_assert_eq(snapshots_in(e.p[i]), 1);
	vols_delete(&e);
	env_close(&e);
}

/* An engine whose n-th snap fails (counted over the calls of one take). */
static _Atomic int g_snaps, g_fail_at;

static int f_hold(void *ctx, uint64_t vol, uint64_t deadline)
{
	return ts_gsnap_vpool_ops.hold(ctx, vol, deadline);
}

static int f_snap(void *ctx, uint64_t vol, const char *name, uint64_t *id)
{
	if (atomic_fetch_add(&g_snaps, 1) + 1 == atomic_load(&g_fail_at))
		return -EIO;
	return ts_gsnap_vpool_ops.snap(ctx, vol, name, id);
}

static int f_unsnap(void *ctx, uint64_t id)
{
	return ts_gsnap_vpool_ops.unsnap(ctx, id);
}

static void f_release(void *ctx, uint64_t vol)
{
	ts_gsnap_vpool_ops.release(ctx, vol);
}

static const struct ts_gsnap_engine_ops g_failing = { f_hold, f_snap, f_unsnap, f_release };

Test(group, failing_snap_removes_the_others)
{
	static struct writers ws;
	struct ts_gsnap_member gm[NP];
	struct env e;

	env_open(&e);
	vols_create(&e);
	members(&e, gm, &g_failing);
	writers_start(&ws, &e, 3);
	for (int at = 1; at <= NP; at++) {
		atomic_store(&g_snaps, 0);
		atomic_store(&g_fail_at, at);
		usleep(2000);
		cr_assert_eq(ts_gsnap_take(gm, NP, 1000000000ull, NULL), -EIO, "fail at %d", at);
		cr_assert_eq(atomic_load(&g_snaps), at); /* stopped at the failure */
		for (int i = 0; i < NP; i++) {
			cr_assert_eq(gm[i].snap_id, 0);
			cr_assert_eq(snapshots_in(e.p[i]), 0, "fail at %d: pool %d", at, i);
		}
	}
	writers_stop(&ws);
	writers_free(&ws);
	io_flows(&e);
	atomic_store(&g_fail_at, 0);
	cr_assert_eq(ts_gsnap_take(gm, NP, 1000000000ull, NULL), 0);
	vols_delete(&e);
	env_close(&e);
}

Test(group, bad_members)
{
	struct ts_gsnap_member gm[NP + 1];
	struct ts_gsnap_engine_ops half = { f_hold, f_snap, NULL, f_release };
	struct env e;

	env_open(&e);
	vols_create(&e);
	members(&e, gm, &ts_gsnap_vpool_ops);
	cr_assert_eq(ts_gsnap_take(gm, 0, 1000000000ull, NULL), -EINVAL);
	cr_assert_eq(ts_gsnap_take(NULL, 1, 1000000000ull, NULL), -EINVAL);
	gm[NP] = gm[1]; /* the same volume twice */
	cr_assert_eq(ts_gsnap_take(gm, NP + 1, 1000000000ull, NULL), -EINVAL);
	gm[NP].ops = &half;
	gm[NP].vol_id = 999;
	cr_assert_eq(ts_gsnap_take(gm, NP + 1, 1000000000ull, NULL), -EINVAL);
	gm[NP].ops = &ts_gsnap_vpool_ops; /* no such volume: hold fails, others released */
	cr_assert_eq(ts_gsnap_take(gm, NP + 1, 1000000000ull, NULL), -ENOENT);
	for (int i = 0; i < NP; i++)
		cr_assert_eq(snapshots_in(e.p[i]), 0);
	io_flows(&e);
	gm[1].name = NULL;
	cr_assert_eq(ts_gsnap_take(gm, NP, 1000000000ull, NULL), 0);
	vols_delete(&e);
	env_close(&e);
}

/* ----------------------------------------------------------- concurrency */

struct taker {
	struct ts_gsnap_member gm[NP];
	size_t n;
	int iters, ok;
	uint64_t ids[40][NP];
};

static void *taker_main(void *arg)
{
	struct taker *t = arg;

	for (int i = 0; i < t->iters; i++) {
		if (ts_gsnap_take(t->gm, t->n, 5000000000ull, NULL) == 0)
			t->ok++;
		for (size_t k = 0; k < t->n; k++)
			t->ids[i][k] = t->gm[k].snap_id;
	}
	return NULL;
}

Test(group, concurrent_overlapping_groups)
{
	static struct writers ws;
	struct taker ta, tb;
	pthread_t a, b;
	struct env e;

	env_open(&e);
	vols_create(&e);
	memset(&ta, 0, sizeof(ta));
	memset(&tb, 0, sizeof(tb));
	members(&e, ta.gm, &ts_gsnap_vpool_ops);
	/* b: members 2, 1 (listed in the opposite order) */
	tb.gm[0] = ta.gm[2];
	tb.gm[1] = ta.gm[1];
	tb.gm[0].name = tb.gm[1].name = "b";
	ta.n = NP;
	tb.n = 2;
	ta.iters = tb.iters = 20;
	writers_start(&ws, &e, 11);
	cr_assert_eq(pthread_create(&a, NULL, taker_main, &ta), 0);
	cr_assert_eq(pthread_create(&b, NULL, taker_main, &tb), 0);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	writers_stop(&ws);
	writers_free(&ws);
	cr_assert_eq(ta.ok, 20);
	cr_assert_eq(tb.ok, 20);
	cr_assert_eq(snapshots_in(e.p[0]), 8); /* listing stops at 8 */
	for (int i = 0; i < 20; i++) {
		for (int k = 0; k < NP; k++)
			cr_assert_eq(ts_chain_snapshot_delete(e.p[k], ta.ids[i][k]), 0);
		for (int k = 0; k < 2; k++)
			cr_assert_eq(ts_chain_snapshot_delete(e.p[2 - k], tb.ids[i][k]), 0);
	}
	for (int i = 0; i < NP; i++)
		cr_assert_eq(snapshots_in(e.p[i]), 0);
	io_flows(&e);
	vols_delete(&e);
	env_close(&e);
}
