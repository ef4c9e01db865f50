/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the per-volume arbiter costs and what it does to parallel writers:
 * 4 KiB random writes (one outstanding per writer thread, in place on a
 * fully written volume) by 1, 2 and 4 writers, on disjoint ranges (each
 * writer its own region) and on overlapping ones (every writer in the same
 * 64 blocks), each through the arbiter and straight to the volume, all in
 * the same run, interleaved over rounds (best kept), printed as ratios. The
 * member is the RAM test member, so the figures isolate the volume layer and
 * the arbiter from device latency; the arbiter's cost per IO (ns) is the
 * difference of the single-writer times. Straight-to-volume overlapping
 * writers are the unarbitrated baseline (what a volume without RWX
 * arbitration would do; their data may interleave, which is the point of
 * the arbiter). Last line: key=value.
 *
 * Usage: arbiter_bench [seconds_per_run (default 1)] [rounds (default 3)]
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/rangelock/rangelock.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"
#include "volumedriver/arbiter/arbiter.h"

#define BS TS_VOLUME_BLOCK
#define GRAINS 16384ull /* 64 MiB */
#define REGION (GRAINS / 4)
#define HOT 64

struct cfg {
	int writers, overlap, arb;
	double best;
};

struct wr {
	struct cfg *c;
	struct ts_arb *a;
	struct ts_volume *v;
	int id;
	double secs;
	uint64_t n;
};

static int die(const char *what, int rc)
{
	fprintf(stderr, "arbiter_bench: %s: %s\n", what, ts_strerror(rc));
	exit(1);
}

static void *writer_main(void *arg)
{
	struct wr *w = arg;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (uint64_t)(w->id + 1), t0 = ts_now_ns(), end;
	uint8_t *buf = ts_aligned_alloc(4096, BS);

	if (!buf)
		die("alloc", -ENOMEM);
	memset(buf, w->id, BS);
	end = t0 + (uint64_t)(w->secs * 1e9);
	while (ts_now_ns() < end) {
		for (int k = 0; k < 64; k++) {
			struct ts_member_waiter mw = TS_MEMBER_WAITER_INIT;
			uint64_t g, off;
			int rc;

			seed ^= seed << 13;
			seed ^= seed >> 7;
			seed ^= seed << 17;
			g = w->c->overlap ? seed % HOT : (uint64_t)w->id * REGION + seed % REGION;
			off = g * BS;
			if (w->c->arb)
				rc = ts_member_wait(&mw, ts_arb_write(w->a, off, BS, buf, ts_member_wake, &mw));
			else
				rc = ts_volume_write_sync(w->v, off, BS, buf);
			if (rc)
				die("write", rc);
			w->n++;
		}
	}
	ts_free(buf);
	return NULL;
}

static double run(struct cfg *c, struct ts_arb *a, double secs)
{
	pthread_t t[4];
	struct wr w[4];
	uint64_t t0 = ts_now_ns(), n = 0;

	for (int i = 0; i < c->writers; i++) {
		w[i] = (struct wr){.c = c, .a = a, .v = ts_arb_volume(a), .id = i, .secs = secs};
		pthread_create(&t[i], NULL, writer_main, &w[i]);
	}
	for (int i = 0; i < c->writers; i++) {
		pthread_join(t[i], NULL);
		n += w[i].n;
	}
	return (double)n / ((double)(ts_now_ns() - t0) / 1e9);
}

/* Uncontended lock + unlock of the range lock alone. */
static double rl_ns(void)
{
	struct ts_rl *rl;
	struct ts_rl_req r = {0}, held[64] = {{0}};
	uint64_t t0, n = 2000000;

	if (ts_rl_create(&rl))
		die("ts_rl_create", -ENOMEM);
	for (int i = 0; i < 64; i++) /* a realistic tree: 64 other IOs in flight */
		if (ts_rl_trylock(rl, &held[i], (uint64_t)i * 1000, 8, TS_RL_EXCL))
			die("trylock", -EBUSY);
	t0 = ts_now_ns();
	for (uint64_t i = 0; i < n; i++) {
		if (ts_rl_trylock(rl, &r, 500 + (i % 64) * 1000, 8, TS_RL_EXCL))
			die("trylock", -EBUSY);
		ts_rl_unlock(rl, &r);
	}
	t0 = ts_now_ns() - t0;
	for (int i = 0; i < 64; i++)
		ts_rl_unlock(rl, &held[i]);
	ts_rl_destroy(rl);
	return (double)t0 / (double)n;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	int rounds = argc > 2 ? atoi(argv[2]) : 3;
	struct cfg cfgs[12];
	int nc = 0;
	struct ts_member *m;
	struct ts_vpool *p;
	struct ts_arb *a;
	uint64_t id;
	uint8_t *buf;
	int rc;

	if (secs <= 0 || rounds < 1) {
		fprintf(stderr, "usage: arbiter_bench [seconds_per_run] [rounds]\n");
		return 2;
	}
	m = tm_ram(GRAINS * BS + (64ull << 20), 1, 1, NULL);
	if (!m)
		die("tm_ram", -ENOMEM);
	if ((rc = ts_vpool_format(m)) || (rc = ts_vpool_open(m, &p)))
		die("pool", rc);
	if ((rc = ts_vpool_volume_create(p, "bench", GRAINS * BS, 0, &id)) || (rc = ts_arb_open(p, id, &a)))
		die("volume", rc);
	buf = ts_calloc(1, 1 << 20);
	if (!buf)
		die("alloc", -ENOMEM);
	for (uint64_t off = 0; off < GRAINS * BS; off += 1 << 20) /* in place from now on */
		if ((rc = ts_volume_write_sync(ts_arb_volume(a), off, 1 << 20, buf)))
			die("prefill", rc);
	ts_free(buf);
	for (int ov = 0; ov < 2; ov++)
		for (int wn = 1; wn <= 4; wn *= 2)
			for (int ar = 0; ar < 2; ar++)
				cfgs[nc++] = (struct cfg){.writers = wn, .overlap = ov, .arb = ar};
	for (int r = 0; r < rounds; r++)
		for (int i = 0; i < nc; i++) {
			double iops = run(&cfgs[i], a, secs);

			if (iops > cfgs[i].best)
				cfgs[i].best = iops;
		}
	printf("4 KiB random writes, one outstanding per writer, RAM member, %.1f s x %d rounds (best)\n",
	       secs, rounds);
	for (int i = 0; i < nc; i += 2)
		printf("writers=%d %-11s direct=%8.0f IOPS  arbiter=%8.0f IOPS  ratio=%.3f\n", cfgs[i].writers,
		       cfgs[i].overlap ? "overlapping" : "disjoint", cfgs[i].best, cfgs[i + 1].best,
		       cfgs[i + 1].best / cfgs[i].best);
	double ns = 1e9 / cfgs[1].best - 1e9 / cfgs[0].best, lock_ns = rl_ns();

	printf("arbiter cost per IO (1 writer): %.0f ns; range lock+unlock alone (64 held): %.0f ns\n", ns,
	       lock_ns);
	printf("w1_disjoint_ratio=%.3f w4_disjoint_ratio=%.3f w4_overlap_ratio=%.3f arb_ns_per_io=%.0f "
	       "rl_ns=%.0f\n",
	       cfgs[1].best / cfgs[0].best, cfgs[5].best / cfgs[4].best, cfgs[11].best / cfgs[10].best, ns,
	       lock_ns);
	ts_arb_close(a);
	ts_vpool_close(p);
	ts_member_destroy(m);
	return 0;
}
