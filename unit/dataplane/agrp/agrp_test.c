/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AGRP suite: placement, superblocks, IO against an in-memory reference
 * volume with members failing, returning and being replaced, decode of every
 * combination of up to m missing members, stale generations, bad input.
 * The crash test lives in agrp_crash_test.c.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/member/test_member.h"

#define BS 4096u
#define MSIZE (2u * 1024 * 1024) /* 1 MiB superblock area + bitmaps + ~60 chunks of 16 KiB */

struct fixture {
	unsigned k, m, n;
	struct ts_member *mem[TS_AGRP_MAX_MEMBERS + 8];
	struct tmem *tm[TS_AGRP_MAX_MEMBERS + 8];
	struct ts_agrp *g;
	uint8_t *ref;
	uint64_t size;
};

static uint64_t g_rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static void fill_rand(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd();
		memcpy(p + i, &v, TS_MIN(8, n - i));
	}
}

static void fx_create(struct fixture *f, unsigned k, unsigned m, uint32_t chunk, uint64_t msize)
{
	struct ts_agrp_opts o = { .chunk_size = chunk, .nthreads = 3 };

	memset(f, 0, sizeof(*f));
	f->k = k;
	f->m = m;
	f->n = k + m;
	for (unsigned i = 0; i < f->n; i++)
		f->mem[i] = tm_ram(msize, i % 3, i, &f->tm[i]);
	cr_assert_eq(ts_agrp_create(f->mem, f->n, k, m, &o, &f->g), 0);
	f->size = ts_agrp_size(f->g);
	f->ref = calloc(1, f->size);
}

static void fx_destroy(struct fixture *f)
{
	ts_agrp_close(f->g);
	for (unsigned i = 0; i < TS_ARRAY_SIZE(f->mem); i++)
		ts_member_destroy(f->mem[i]);
	free(f->ref);
}

static void check_all(struct fixture *f)
{
	uint8_t *buf = malloc(f->size);

	cr_assert_eq(ts_agrp_read_sync(f->g, 0, f->size, buf), 0);
	for (uint64_t i = 0; i < f->size; i += BS)
		cr_assert_arr_eq(buf + i, f->ref + i, BS, "block at %llu differs", (unsigned long long)i);
	free(buf);
}

static void do_write(struct fixture *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);

	fill_rand(buf, len);
	cr_assert_eq(ts_agrp_write_sync(f->g, off, len, buf), 0, "write %llu+%llu",
		     (unsigned long long)off, (unsigned long long)len);
	memcpy(f->ref + off, buf, len);
	free(buf);
}

/* ---------------------------------------------------------------- */

Test(agrp_place, even_over_fewer_nodes)
{
	struct ts_agrp_node three[3] = { { 1, 4 }, { 2, 4 }, { 3, 4 } };
	struct ts_agrp_node four[4] = { { 10, 8 }, { 11, 8 }, { 12, 8 }, { 13, 8 } };
	struct ts_agrp_node tight[3] = { { 1, 1 }, { 2, 5 }, { 3, 5 } };
	uint32_t out[11];
	unsigned cnt[14];

	cr_assert_eq(ts_agrp_place(three, 3, 6, out), 0);
	memset(cnt, 0, sizeof(cnt));
	for (unsigned i = 0; i < 6; i++)
		cnt[out[i]]++;
	cr_assert(cnt[1] == 2 && cnt[2] == 2 && cnt[3] == 2);
	for (unsigned i = 1; i < 6; i++) /* consecutive fragments on different nodes */
		cr_assert_neq(out[i], out[i - 1]);

	cr_assert_eq(ts_agrp_place(four, 4, 11, out), 0);
	memset(cnt, 0, sizeof(cnt));
	for (unsigned i = 0; i < 11; i++)
		cnt[out[i]]++;
	for (unsigned nd = 10; nd <= 13; nd++)
		cr_assert(cnt[nd] == 2 || cnt[nd] == 3, "node %u got %u", nd, cnt[nd]);

	/* slot limits respected, rest spread as evenly as possible */
	cr_assert_eq(ts_agrp_place(tight, 3, 6, out), 0);
	memset(cnt, 0, sizeof(cnt));
	for (unsigned i = 0; i < 6; i++)
		cnt[out[i]]++;
	cr_assert(cnt[1] == 1 && cnt[2] == 3 && cnt[3] == 2, "%u %u %u", cnt[1], cnt[2], cnt[3]);

	cr_assert_eq(ts_agrp_place(tight, 3, 12, out), TS_ERR_NO_SPACE);
	tight[1].node_id = 1;
	cr_assert_eq(ts_agrp_place(tight, 3, 3, out), -EINVAL);
	cr_assert_eq(ts_agrp_place(NULL, 3, 3, out), -EINVAL);
}

Test(agrp, create_probe_and_layout)
{
	struct fixture f;
	struct ts_agrp_info info, gi;

	memset(&info, 0, sizeof(info));
	fx_create(&f, 4, 2, 16384, MSIZE);
	ts_agrp_get_info(f.g, &gi);
	for (unsigned i = 0; i < f.n; i++) {
		cr_assert_eq(ts_agrp_probe(f.mem[i], &info), 0);
		cr_assert_eq(info.member_index, i);
		cr_assert_eq(info.k, 4);
		cr_assert_eq(info.m, 2);
		cr_assert_eq(info.chunk_size, 16384);
		cr_assert_eq(info.generation, gi.generation);
		cr_assert_arr_eq(info.group_uuid, gi.group_uuid, 16);
		cr_assert_eq(info.slots[i].node_id, i % 3);
		cr_assert_arr_eq(info.slots[i].uuid, ts_member_info(f.mem[i])->uuid, 16);
		cr_assert_geq(info.data_offset, TS_AGRP_SB_AREA);
	}
	cr_assert_eq(f.size, info.nstripes * 4 * 16384);
	/* parity rotates: over n stripes every member holds each role once, so a
	 * full-volume write lands the same number of bytes on every member */
	for (unsigned i = 0; i < f.n; i++)
		tm_reset_counters(f.tm[i]);
	{
		uint64_t stripes = (f.size / (4 * 16384)) / f.n * f.n;
		do_write(&f, 0, stripes * 4 * 16384);
		for (unsigned i = 1; i < f.n; i++)
			cr_assert_eq(tm_written(f.tm[i], info.data_offset),
				     tm_written(f.tm[0], info.data_offset));
	}
	/* a small read while healthy touches one member only: make the others
	 * fail and the read still succeeds without failing anyone */
	{
		uint8_t buf[BS];
		uint64_t gen = ts_agrp_generation(f.g);
		unsigned owner = 1; /* volume block 16384 is stripe 0, data role 1 -> slot 1 */

		for (unsigned i = 0; i < f.n; i++)
			if (i != owner)
				tm_set_mode(f.tm[i], TM_FAIL_ALL);
		cr_assert_eq(ts_agrp_read_sync(f.g, 16384, BS, buf), 0);
		cr_assert_arr_eq(buf, f.ref + 16384, BS);
		cr_assert_eq(ts_agrp_generation(f.g), gen);
		for (unsigned i = 0; i < f.n; i++)
			tm_set_mode(f.tm[i], TM_OK);
	}
	fx_destroy(&f);
}

/* Random IO against the reference with failures, returns and replacements. */
static void random_ops(unsigned k, unsigned m, unsigned nops)
{
	struct fixture f;
	uint32_t chunk = 16384;
	uint64_t kc;
	unsigned next_id = 100;
	uint64_t injected = 0;

	if (getenv("TS_AGRP_SEED")) /* explore other sequences by hand */
		g_rng = strtoull(getenv("TS_AGRP_SEED"), NULL, 0) | 1;
	fx_create(&f, k, m, chunk, MSIZE);
	kc = (uint64_t)k * chunk;
	for (unsigned op = 0; op < nops; op++) {
		unsigned r = (unsigned)(rnd() % 100);
		/* members the test broke (the group may not have noticed yet) */
		uint64_t out_mask = injected | (((1ull << f.n) - 1) & ~ts_agrp_live_mask(f.g));
		unsigned nout = (unsigned)__builtin_popcountll(out_mask);

		if (r < 40) { /* small or mid write */
			uint64_t len = (1 + rnd() % 12) * BS, off = (rnd() % (f.size / BS)) * BS;

			if (off + len > f.size)
				len = f.size - off;
			do_write(&f, off, len);
		} else if (r < 48) { /* full stripes */
			uint64_t ns = 1 + rnd() % 3, s = rnd() % (f.size / kc - ns);
			do_write(&f, s * kc, ns * kc);
		} else if (r < 75) { /* read compare */
			uint64_t len = (1 + rnd() % 24) * BS, off = (rnd() % (f.size / BS)) * BS;
			uint8_t *buf;

			if (off + len > f.size)
				len = f.size - off;
			buf = malloc(len);
			cr_assert_eq(ts_agrp_read_sync(f.g, off, len, buf), 0);
			cr_assert_arr_eq(buf, f.ref + off, len, "op %u read %llu+%llu", op,
					 (unsigned long long)off, (unsigned long long)len);
			free(buf);
		} else if (r < 83 && nout < m) { /* a member fails or goes missing */
			unsigned i = (unsigned)(rnd() % f.n);
			if (out_mask & (1ull << i))
				continue;
			injected |= 1ull << i;
			tm_set_mode(f.tm[i], (rnd() & 1) ? TM_MISSING : TM_FAIL_WRITES);
			if (rnd() & 1) { /* let the group notice right away */
				uint8_t *buf = malloc(kc * 2);
				cr_assert_eq(ts_agrp_read_sync(f.g, 0, kc * 2, buf), 0);
				cr_assert_arr_eq(buf, f.ref, kc * 2);
				free(buf);
			}
		} else if (r < 93 && nout) { /* a failed member returns */
			for (unsigned i = 0; i < f.n; i++) {
				if (!(out_mask & (1ull << i)))
					continue;
				tm_set_mode(f.tm[i], TM_OK);
				injected &= ~(1ull << i);
				if (!(ts_agrp_live_mask(f.g) & (1ull << i)))
					cr_assert_eq(ts_agrp_add_member(f.g, f.mem[i]), 0);
				break;
			}
		} else if (r < 96 && nout) { /* replaced by a blank member */
			for (unsigned i = 0; i < f.n; i++) {
				if (!(out_mask & (1ull << i)))
					continue;
				if (ts_agrp_live_mask(f.g) & (1ull << i))
					break; /* not noticed yet: nothing to replace */
				ts_member_destroy(f.mem[i]);
				injected &= ~(1ull << i);
				f.mem[i] = tm_ram(MSIZE, i % 3, next_id++, &f.tm[i]);
				cr_assert_eq(ts_agrp_replace(f.g, i, f.mem[i]), 0);
				break;
			}
		} else if (r < 98) {
			cr_assert_eq(ts_agrp_flush_sync(f.g), 0);
		} else { /* restart: close and reassemble from every member */
			ts_agrp_close(f.g);
			for (unsigned i = 0; i < f.n; i++)
				tm_set_mode(f.tm[i], TM_OK);
			injected = 0;
			cr_assert_eq(ts_agrp_assemble(f.mem, f.n, NULL, &f.g), 0);
		}
		/* untouched modes may have been noticed only now: reads must hold */
	}
	for (unsigned i = 0; i < f.n; i++) {
		tm_set_mode(f.tm[i], TM_OK);
		if (ts_agrp_live_mask(f.g) & (1ull << i))
			continue;
		cr_assert_eq(ts_agrp_add_member(f.g, f.mem[i]), 0);
	}
	check_all(&f);
	/* with all members back, every member's fragments must be right: read
	 * the whole volume with each member missing in turn */
	for (unsigned i = 0; i < f.n; i++) {
		tm_set_mode(f.tm[i], TM_MISSING);
		check_all(&f);
		tm_set_mode(f.tm[i], TM_OK);
		cr_assert_eq(ts_agrp_add_member(f.g, f.mem[i]), 0);
	}
	fx_destroy(&f);
}

Test(agrp, random_io_with_failures_4_2) { random_ops(4, 2, 600); }
Test(agrp, random_io_with_failures_3_1) { random_ops(3, 1, 300); }

/* Every combination of up to m missing members decodes the whole volume. */
static void every_missing_combination(unsigned k, unsigned m)
{
	struct fixture f;
	unsigned combos = 0;

	fx_create(&f, k, m, 4096, MSIZE);
	do_write(&f, 0, f.size);
	do_write(&f, 3 * BS, 5 * BS); /* and a partial-stripe parity update */
	for (uint64_t mask = 1; mask < (1ull << f.n); mask++) {
		if ((unsigned)__builtin_popcountll(mask) > m)
			continue;
		for (unsigned i = 0; i < f.n; i++)
			if (mask & (1ull << i))
				tm_set_mode(f.tm[i], TM_MISSING);
		check_all(&f);
		cr_assert_eq(ts_agrp_live_mask(f.g), ((1ull << f.n) - 1) & ~mask);
		for (unsigned i = 0; i < f.n; i++) {
			if (!(mask & (1ull << i)))
				continue;
			tm_set_mode(f.tm[i], TM_OK);
			cr_assert_eq(ts_agrp_add_member(f.g, f.mem[i]), 0);
		}
		combos++;
	}
	cr_assert_gt(combos, f.n);
	/* m+1 missing: reads fail cleanly */
	for (unsigned i = 0; i <= m; i++)
		tm_set_mode(f.tm[i], TM_MISSING);
	{
		uint8_t *buf = malloc(f.size);
		cr_assert_eq(ts_agrp_read_sync(f.g, 0, f.size, buf), TS_ERR_DEGRADED);
		free(buf);
	}
	fx_destroy(&f);
}

Test(agrp, decode_every_combination_4_2) { every_missing_combination(4, 2); }
Test(agrp, decode_every_combination_8_3) { every_missing_combination(8, 3); }

Test(agrp, resync_touches_only_changed_regions)
{
	struct fixture f;
	struct ts_agrp_info info;
	uint64_t gen;

	fx_create(&f, 4, 2, 16384, MSIZE);
	do_write(&f, 0, f.size);
	cr_assert_eq(ts_agrp_probe(f.mem[0], &info), 0);
	gen = ts_agrp_generation(f.g);
	tm_set_mode(f.tm[2], TM_MISSING);
	do_write(&f, 2 * 16384 + BS, BS); /* stripe 0, data role 2: slot 2 */
	cr_assert_eq(ts_agrp_live_mask(f.g) & (1u << 2), 0);
	cr_assert_gt(ts_agrp_generation(f.g), gen);
	check_all(&f);
	tm_set_mode(f.tm[2], TM_OK);
	tm_reset_counters(f.tm[2]);
	cr_assert_eq(ts_agrp_add_member(f.g, f.mem[2]), 0);
	/* the region size is 1 stripe for such small members: one chunk rebuilt */
	cr_assert_eq(tm_written(f.tm[2], info.data_offset), 16384);
	tm_set_mode(f.tm[0], TM_MISSING);
	tm_set_mode(f.tm[1], TM_MISSING);
	check_all(&f); /* member 2 must be right: it is needed to decode */
	fx_destroy(&f);
}

Test(agrp, write_errors_fail_member_not_io)
{
	struct fixture f;

	fx_create(&f, 4, 2, 16384, MSIZE);
	tm_set_mode(f.tm[1], TM_FAIL_WRITES);
	tm_set_mode(f.tm[4], TM_FAIL_ALL);
	do_write(&f, 0, 4 * 16384);
	do_write(&f, 7 * BS, 3 * BS);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3f & ~0x12);
	check_all(&f);
	tm_set_mode(f.tm[0], TM_FAIL_ALL); /* a third failure: the write fails */
	{
		uint8_t buf[BS] = { 1 };
		cr_assert_eq(ts_agrp_write_sync(f.g, 0, BS, buf), TS_ERR_DEGRADED);
	}
	fx_destroy(&f);
}

Test(agrp, stale_generation_detected_and_resynced)
{
	struct fixture f;
	struct ts_agrp_info i0, i1;

	fx_create(&f, 4, 2, 16384, MSIZE);
	do_write(&f, 0, 8 * 16384);
	ts_agrp_close(f.g);
	/* member 0 is away at restart: the group comes up degraded */
	cr_assert_eq(ts_agrp_assemble(f.mem + 1, 5, NULL, &f.g), 0);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3e);
	do_write(&f, 2 * BS, 20 * BS);
	ts_agrp_close(f.g);
	cr_assert_eq(ts_agrp_probe(f.mem[0], &i0), 0);
	cr_assert_eq(ts_agrp_probe(f.mem[1], &i1), 0);
	cr_assert_lt(i0.generation, i1.generation);
	/* the stale member plus k-1 current ones are not enough */
	{
		struct ts_member *few[4] = { f.mem[0], f.mem[1], f.mem[2], f.mem[3] };
		cr_assert_eq(ts_agrp_assemble(few, 4, NULL, &f.g), TS_ERR_DEGRADED);
	}
	/* all present: the stale member is resynced and rejoins */
	cr_assert_eq(ts_agrp_assemble(f.mem, 6, NULL, &f.g), 0);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3f);
	tm_set_mode(f.tm[1], TM_MISSING);
	tm_set_mode(f.tm[2], TM_MISSING);
	check_all(&f);
	fx_destroy(&f);
}

Test(agrp, failed_group_keeps_last_lost_members_current)
{
	struct fixture f;
	struct ts_agrp_info a, b;

	fx_create(&f, 4, 2, 16384, MSIZE);
	do_write(&f, 0, 8 * 16384);
	/* two members go (degraded), writes continue */
	tm_set_mode(f.tm[0], TM_MISSING);
	tm_set_mode(f.tm[1], TM_MISSING);
	do_write(&f, 4 * BS, 40 * BS);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3c);
	/* a third goes: the write that finds it out fails (its range is
	 * indeterminate, as for any failed write: the test rewrites it after);
	 * the group has failed and refuses the next */
	tm_set_mode(f.tm[2], TM_MISSING);
	{
		uint8_t *buf = calloc(1, 16 * BS);

		cr_assert_neq(ts_agrp_write_sync(f.g, 0, 16 * BS, buf), 0);
		cr_assert_eq(ts_agrp_write_sync(f.g, 0, 16 * BS, buf), TS_ERR_DEGRADED);
		free(buf);
	}
	ts_agrp_close(f.g);
	/* member 2 comes back carrying the survivors' generation: not stale */
	tm_set_mode(f.tm[2], TM_OK);
	cr_assert_eq(ts_agrp_probe(f.mem[2], &a), 0);
	cr_assert_eq(ts_agrp_probe(f.mem[3], &b), 0);
	cr_assert_eq(a.generation, b.generation);
	/* with 3,4,5 that is k current members; 0 and 1 are stale: resynced */
	tm_set_mode(f.tm[0], TM_OK);
	tm_set_mode(f.tm[1], TM_OK);
	cr_assert_eq(ts_agrp_assemble(f.mem, 6, NULL, &f.g), 0);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3f);
	/* complete again, nothing left out of date (the state would say healing for ever) */
	{
		struct ts_agrp_stats st;

		ts_agrp_stats(f.g, &st);
		cr_assert_eq(st.ood_regions, 0, "%llu regions still out of date",
			     (unsigned long long)st.ood_regions);
	}
	do_write(&f, 0, 16 * BS);
	check_all(&f);
	/* and the resync was real: the data decodes without 4 and 5 */
	tm_set_mode(f.tm[4], TM_MISSING);
	tm_set_mode(f.tm[5], TM_MISSING);
	check_all(&f);
	fx_destroy(&f);
}

Test(agrp, degraded_assembly_distrusts_dirty_regions)
{
	struct fixture f;
	struct ts_agrp_info info;
	uint8_t *buf;
	const uint64_t kc = 4 * 16384;

	fx_create(&f, 4, 2, 16384, MSIZE);
	do_write(&f, 0, 4 * kc);
	cr_assert_eq(ts_agrp_flush_sync(f.g), 0);
	do_write(&f, kc + BS, BS); /* stripe 1 dirty, no flush */
	cr_assert_eq(ts_agrp_probe(f.mem[0], &info), 0);
	/* simulate a crash: copy the members' bytes as they are, no close */
	{
		struct tmem *t2[6];
		struct ts_member *m2[6];
		for (unsigned i = 0; i < 6; i++) {
			m2[i] = tm_ram(MSIZE, i % 3, i, &t2[i]);
			memcpy(tm_ram_data(t2[i]), tm_ram_data(f.tm[i]), MSIZE);
		}
		/* slot owning data role 0 of stripe 1 is slot 1: leave it out */
		cr_assert_eq(ts_agrp_assemble(m2, 1, NULL, &f.g) , TS_ERR_DEGRADED);
		{
			struct ts_member *some[5] = { m2[0], m2[2], m2[3], m2[4], m2[5] };
			struct ts_agrp *g2;
			cr_assert_eq(ts_agrp_assemble(some, 5, NULL, &g2), 0);
			buf = malloc(kc);
			/* stripe 1 was dirty: decoding slot 1's chunk is refused */
			cr_assert_eq(ts_agrp_read_sync(g2, kc, BS, buf), -EIO);
			/* stripe 0 was clean: decoding is fine */
			cr_assert_eq(ts_agrp_read_sync(g2, 0, kc, buf), 0);
			cr_assert_arr_eq(buf, f.ref, kc);
			/* partial writes needing the missing bytes are refused there,
			 * full-stripe writes are not */
			cr_assert_eq(ts_agrp_write_sync(g2, kc + 2 * BS, BS, buf), -EIO);
			fill_rand(f.ref + kc, kc);
			cr_assert_eq(ts_agrp_write_sync(g2, kc, kc, f.ref + kc), 0);
			/* slot 1 returns: parity recomputed, the region is trusted again */
			cr_assert_eq(ts_agrp_add_member(g2, m2[1]), 0);
			tm_set_mode(t2[1], TM_MISSING);
			cr_assert_eq(ts_agrp_read_sync(g2, kc, kc, buf), 0);
			cr_assert_arr_eq(buf, f.ref + kc, kc);
			free(buf);
			ts_agrp_close(g2);
		}
		for (unsigned i = 0; i < 6; i++)
			ts_member_destroy(m2[i]);
	}
	fx_destroy(&f);
}

Test(agrp, bad_input)
{
	struct fixture a, b;
	struct ts_agrp *g = NULL;
	struct ts_agrp_info info;
	struct tmem *t;
	struct ts_member *blank = tm_ram(MSIZE, 0, 77, &t), *tiny = tm_ram(1 << 20, 0, 78, NULL);
	struct ts_agrp_opts odd = { .chunk_size = 12288 };

	fx_create(&a, 4, 2, 16384, MSIZE);
	fx_create(&b, 4, 2, 16384, MSIZE);
	cr_assert_eq(ts_agrp_create(a.mem, 6, 0, 6, NULL, &g), -EINVAL);
	cr_assert_eq(ts_agrp_create(a.mem, 6, 4, 9, NULL, &g), -EINVAL);
	cr_assert_eq(ts_agrp_create(a.mem, 5, 4, 2, NULL, &g), -EINVAL);
	cr_assert_eq(ts_agrp_create(a.mem, 6, 4, 2, &odd, &g), -EINVAL);
	{
		struct ts_member *small[3] = { blank, tiny, blank };
		cr_assert_eq(ts_agrp_create(small, 3, 2, 1, NULL, &g), TS_ERR_TOO_SMALL);
	}
	cr_assert_eq(ts_agrp_probe(blank, &info), TS_ERR_FOREIGN);
	ts_agrp_close(a.g);
	ts_agrp_close(b.g);
	a.g = b.g = NULL;
	/* members of two groups */
	{
		struct ts_member *mix[6] = { a.mem[0], a.mem[1], a.mem[2], b.mem[3], b.mem[4], b.mem[5] };
		cr_assert_eq(ts_agrp_assemble(mix, 6, NULL, &g), TS_ERR_FOREIGN);
	}
	/* one corrupt copy: the other one of the double buffer is used */
	memset(tm_ram_data(a.tm[0]) + 100, 0x55, 8);
	cr_assert_eq(ts_agrp_probe(a.mem[0], &info), 0);
	/* both copies corrupt: clear error, and the member is left out */
	memset(tm_ram_data(a.tm[0]) + 4096 + 100, 0x55, 8);
	cr_assert_eq(ts_agrp_probe(a.mem[0], &info), TS_ERR_CORRUPT);
	cr_assert_eq(ts_agrp_assemble(a.mem, 6, NULL, &g), 0);
	cr_assert_eq(ts_agrp_live_mask(g), 0x3e);
	ts_agrp_close(g);
	g = NULL;
	for (unsigned i = 0; i < 6; i++) {
		memset(tm_ram_data(a.tm[i]) + 100, 0x55, 8);
		memset(tm_ram_data(a.tm[i]) + 4096 + 100, 0x55, 8);
	}
	cr_assert_eq(ts_agrp_assemble(a.mem, 6, NULL, &g), TS_ERR_CORRUPT);
	cr_assert_null(g);
	/* a member of another group is refused by a running group */
	cr_assert_eq(ts_agrp_assemble(b.mem, 6, NULL, &b.g), 0);
	cr_assert_eq(ts_agrp_add_member(b.g, a.mem[1]), TS_ERR_CORRUPT);
	cr_assert_eq(ts_agrp_add_member(b.g, b.mem[1]), -EEXIST);
	{
		uint8_t buf[BS];
		cr_assert_eq(ts_agrp_read_sync(b.g, 100, BS, buf), -EINVAL);
		cr_assert_eq(ts_agrp_read_sync(b.g, ts_agrp_size(b.g), BS, buf), -EINVAL);
	}
	fx_destroy(&a);
	fx_destroy(&b);
	ts_member_destroy(blank);
	ts_member_destroy(tiny);
	ts_agrp_close(NULL);
}

/* Concurrent async submitters on disjoint and overlapping ranges. */
struct cctx {
	struct fixture *f;
	unsigned id;
};

static void *hammer(void *arg)
{
	struct cctx *c = arg;
	uint64_t span = c->f->size / 4, base = c->id * span;
	uint8_t *buf = malloc(8 * BS), *back = malloc(8 * BS);

	for (unsigned i = 0; i < 60; i++) {
		uint64_t off = base + ((i * 7919u) % (span / BS - 8)) * BS;
		memset(buf, (int)(c->id * 16 + i), 8 * BS);
		cr_assert_eq(ts_agrp_write_sync(c->f->g, off, 8 * BS, buf), 0);
		cr_assert_eq(ts_agrp_read_sync(c->f->g, off, 8 * BS, back), 0);
		cr_assert_arr_eq(buf, back, 8 * BS);
	}
	free(buf);
	free(back);
	return NULL;
}

Test(agrp, concurrent_submitters)
{
	struct fixture f;
	pthread_t th[4];
	struct cctx c[4];

	fx_create(&f, 4, 2, 16384, MSIZE);
	tm_set_mode(f.tm[3], TM_MISSING); /* degraded paths too */
	for (unsigned i = 0; i < 4; i++) {
		c[i].f = &f;
		c[i].id = i;
		pthread_create(&th[i], NULL, hammer, &c[i]);
	}
	for (unsigned i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	fx_destroy(&f);
}

/* Allocation failures anywhere in create, assemble and IO: clean errors, no leaks. */
Test(agrp, allocation_failures)
{
	struct ts_member *mem[6];
	struct tmem *tm[6];
	struct ts_agrp *g = NULL;
	struct ts_agrp_opts o = { .chunk_size = 16384, .nthreads = 2 };
	uint8_t *buf = malloc(64 * 1024);
	unsigned ok = 0;

	memset(buf, 0x5a, 64 * 1024);
	for (unsigned i = 0; i < 6; i++)
		mem[i] = tm_ram(MSIZE, i % 3, i, &tm[i]);
	for (long n = 0; n < 80; n++) {
		int rc;

		ts_alloc_fail_after(n);
		rc = ts_agrp_create(mem, 6, 4, 2, &o, &g);
		ts_alloc_fail_after(-1);
		cr_assert(rc == 0 || rc == -ENOMEM, "create n=%ld rc=%d", n, rc);
		if (rc)
			continue;
		ts_alloc_fail_after(n / 4);
		rc = ts_agrp_write_sync(g, 4096, 8192, buf);
		ts_alloc_fail_after(-1);
		cr_assert(rc == 0 || rc == -ENOMEM, "write n=%ld rc=%d", n, rc);
		ts_agrp_close(g);
		ts_alloc_fail_after(n / 2);
		rc = ts_agrp_assemble(mem, 6, &o, &g);
		ts_alloc_fail_after(-1);
		cr_assert(rc == 0 || rc == -ENOMEM, "assemble n=%ld rc=%d", n, rc);
		if (!rc) {
			ok++;
			ts_agrp_close(g);
		}
	}
	cr_assert_gt(ok, 0);
	for (unsigned i = 0; i < 6; i++)
		ts_member_destroy(mem[i]);
	free(buf);
}

/* ---- the group as a block device ---- */

struct dev_owner {
	struct ts_agrp *g;
	int refuse, fallback_calls;
	_Atomic int inflight, entered;
};

static struct ts_agrp *owner_enter(void *ctx)
{
	struct dev_owner *o = ctx;

	o->inflight++;
	o->entered++;
	return o->refuse ? NULL : o->g;
}

static void owner_leave(void *ctx)
{
	((struct dev_owner *)ctx)->inflight--;
}

/* leave runs after the callback returned, on the group's worker: poll */
static int drained(struct dev_owner *o)
{
	for (int i = 0; i < 5000 && o->inflight; i++)
		usleep(1000);
	return o->inflight == 0;
}

static int owner_fallback(void *ctx, uint64_t off, uint64_t len, void *buf)
{
	struct dev_owner *o = ctx;

	(void)off;
	o->fallback_calls++;
	memset(buf, 0x5a, len);
	return 0;
}

Test(agrp_device, fua_write_then_flush_and_owner_hooks)
{
	static const uint8_t uuid[16] = { 1, 2, 3 };
	struct fixture f;
	struct dev_owner own = { 0 };
	struct ts_agrp_device_opts o = { .name = "dev0", .uuid = uuid, .ctx = &own,
					 .enter = owner_enter, .leave = owner_leave,
					 .read_fallback = owner_fallback };
	struct ts_member *dev;
	uint8_t buf[4 * BS], back[4 * BS];

	fx_create(&f, 4, 2, 16384, MSIZE);
	own.g = f.g;
	cr_assert_eq(ts_agrp_device_create(NULL, &o, &dev), -EINVAL);
	cr_assert_eq(ts_agrp_device_create(f.g, &o, &dev), 0);
	cr_assert_eq(ts_member_info(dev)->size, f.size);
	cr_assert_eq(ts_member_info(dev)->block_size, BS);
	cr_assert_str_eq(ts_member_info(dev)->name, "dev0");
	cr_assert_arr_eq(ts_member_info(dev)->uuid, uuid, 16);

	fill_rand(buf, sizeof(buf));
	for (unsigned i = 0; i < f.n; i++)
		tm_reset_counters(f.tm[i]);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, TS_MEMBER_FUA, BS, sizeof(buf), buf), 0);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, BS, sizeof(back), back), 0);
	cr_assert_arr_eq(buf, back, sizeof(buf));
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_FLUSH, 0, 0, 0, NULL), 0);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_UNMAP, 0, 0, BS, NULL), -EOPNOTSUPP);
	cr_assert_eq(own.entered, 4);
	cr_assert(drained(&own));

	own.refuse = 1; /* the owner is swapping the group: refused, still balanced */
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, BS, back), TS_ERR_DEGRADED);
	cr_assert_eq(own.inflight, 0);
	own.refuse = 0;

	/* more than m members out: the owner's fallback serves the read */
	for (unsigned i = 0; i < 3; i++)
		tm_set_mode(f.tm[i], TM_MISSING);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, BS, back), 0);
	cr_assert_eq(own.fallback_calls, 1);
	cr_assert_eq(back[0], 0x5a);
	cr_assert(drained(&own));
	ts_agrp_device_destroy(dev);
	ts_agrp_device_destroy(NULL);

	/* no opts: the group itself, default name */
	cr_assert_eq(ts_agrp_device_create(f.g, NULL, &dev), 0);
	cr_assert_str_eq(ts_member_info(dev)->name, "agrp");
	ts_agrp_device_destroy(dev);
	fx_destroy(&f);
}

/*
 * A member away at a takeover may have been written by the previous owner
 * behind this group's back: distrusting it makes its rejoin rebuild every
 * region, not only those written without it.
 */
Test(agrp, distrusted_absent_member_is_resynced_in_full)
{
	struct fixture f;
	struct ts_agrp_info info;
	struct ts_agrp_stats st;

	fx_create(&f, 4, 2, 16384, MSIZE);
	do_write(&f, 0, f.size);
	cr_assert_eq(ts_agrp_probe(f.mem[0], &info), 0);
	cr_assert_eq(ts_agrp_distrust_absent(f.g), 0, "all live: nothing to mark");
	ts_agrp_close(f.g);
	/* the new owner assembles without member 3 */
	{
		struct ts_member *five[5] = { f.mem[0], f.mem[1], f.mem[2], f.mem[4], f.mem[5] };

		cr_assert_eq(ts_agrp_assemble(five, 5, NULL, &f.g), 0);
	}
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x37);
	cr_assert_eq(ts_agrp_distrust_absent(f.g), 1);
	ts_agrp_stats(f.g, &st);
	cr_assert_gt(st.ood_regions, 0);
	/* the old owner's stray write lands on member 3 only (its own node) */
	{
		uint8_t junk[BS];

		memset(junk, 0xa5, sizeof(junk));
		cr_assert_eq(ts_member_rw_sync(f.mem[3], TS_MEMBER_WRITE, 0,
					       info.data_offset + 5 * BS, BS, junk), 0);
	}
	tm_reset_counters(f.tm[3]);
	cr_assert_eq(ts_agrp_add_member(f.g, f.mem[3]), 0);
	cr_assert_eq(ts_agrp_live_mask(f.g), 0x3f);
	/* every chunk of member 3 rewritten (the group wrote nothing meanwhile) */
	cr_assert_geq(tm_written(f.tm[3], info.data_offset), MSIZE - info.data_offset - 16384,
		      "rebuilt %llu bytes", (unsigned long long)tm_written(f.tm[3], info.data_offset));
	/* member 3 is now needed to decode: the stray write must be gone */
	tm_set_mode(f.tm[0], TM_MISSING);
	tm_set_mode(f.tm[1], TM_MISSING);
	check_all(&f);
	fx_destroy(&f);
}
