/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What placement (control/placement) gives and costs at scale, on
 * simulated pools (no IO; docs/placement.md, docs/benchmarking.md):
 *
 *  1. usable capacity of 6 nodes against 3 with the same disks per node
 *     (4 x 4 TiB, 4+2, 64 GiB members): the ratio;
 *  2. a 6-node pool filled with volumes of 1-64 GiB to 90% of its usable
 *     capacity: whether every volume found a home, members per disk
 *     against the even share;
 *  3. for 100 and 1,000 nodes of 10 disks each (2-8 TiB, seeded), 10,000
 *     volumes of 10-200 GiB: groups made, balance (max/min used fraction
 *     over disks holding members), the time of each placement decision
 *     (mean, p99, max; those that created a group separately), the heap
 *     the model holds (its own count through ts_malloc, and mallinfo2),
 *     the JSON size (total, per group, per volume) with save/load times,
 *     and the drain of one node (moves, time).
 *
 * Timings are printed, never asserted. Last line: key=value.
 *
 * Usage: placement_bench [seed (default 1)]
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/placement/placement.h"
#include "dataplane/common/ts_common.h"

#define GiB (1ull << 30)
#define TiB (1ull << 40)
#define MEMBER (64 * GiB)

static uint64_t g_rnd;

static uint64_t rnd(void) /* splitmix64 */
{
	uint64_t z = (g_rnd += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_in(uint64_t lo, uint64_t hi)
{
	return lo + rnd() % (hi - lo + 1);
}

static void die(const char *what, int rc, const char *msg)
{
	fprintf(stderr, "placement_bench: %s: %s%s%s\n", what, ts_strerror(rc), msg ? ": " : "",
		msg ? msg : "");
	exit(1);
}

/* nodes 1..n with ndisks disks each; cap 0: random 2-8 TiB per disk */
static struct ts_placement *pool(uint32_t n, uint32_t ndisks, uint64_t cap)
{
	struct ts_placement_opts o = { .k = 4, .m = 2, .member_size = MEMBER };
	struct ts_placement *p;
	int rc;

	if ((rc = ts_placement_create(&o, &p)))
		die("create", rc, NULL);
	for (uint32_t i = 1; i <= n; i++) {
		if ((rc = ts_placement_node_add(p, i, NULL)))
			die("node_add", rc, NULL);
		for (uint32_t d = 0; d < ndisks; d++)
			if ((rc = ts_placement_disk_add(p, i * 100 + d, i,
							cap ? cap : rnd_in(2, 8) * TiB)))
				die("disk_add", rc, NULL);
	}
	return p;
}

static double tib(uint64_t b)
{
	return (double)b / (double)TiB;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* ---- 1 and 2 ---- */

static double capacity_ratio(void)
{
	struct ts_placement *p3 = pool(3, 4, 4 * TiB), *p6 = pool(6, 4, 4 * TiB);
	struct ts_placement_stats s3, s6;
	double ratio;

	ts_placement_stats(p3, &s3);
	ts_placement_stats(p6, &s6);
	ratio = (double)s6.usable_free / (double)s3.usable_free;
	printf("usable capacity, 4 disks x 4 TiB per node, 4+2: 3 nodes %.1f TiB, 6 nodes %.1f TiB, "
	       "ratio %.3f\n", tib(s3.usable_free), tib(s6.usable_free), ratio);
	ts_placement_destroy(p3);
	ts_placement_destroy(p6);
	return ratio;
}

static void fill90(int *ok, uint32_t *max_members, uint32_t *share)
{
	struct ts_placement *p = pool(6, 4, 4 * TiB);
	struct ts_placement_stats st0, st;
	uint64_t placed = 0, id = 1;
	char msg[256];
	uint32_t gid;

	ts_placement_stats(p, &st0);
	*ok = 1;
	while (placed < st0.usable_free / 10 * 9) {
		uint64_t size = rnd_in(1, 64) * GiB;
		int rc = ts_placement_volume_place(p, id++, size, &gid, msg, sizeof(msg));

		if (rc) {
			printf("90%% fill: refused at %.1f%%: %s\n",
			       100.0 * (double)placed / (double)st0.usable_free, msg);
			*ok = 0;
			break;
		}
		placed += size;
	}
	ts_placement_stats(p, &st);
	*max_members = st.max_members;
	*share = (uint32_t)TS_DIV_ROUND_UP(st.ngroups * 6ull, st.ndisks);
	printf("90%% fill of 6 nodes: %s, %llu volumes, %u groups, %.1f%% of usable placed; members "
	       "per disk min %u max %u, even share %u; balance %.3f\n",
	       *ok ? "ok" : "FAILED", (unsigned long long)st.nvolumes, st.ngroups,
	       100.0 * (double)placed / (double)st0.usable_free, st.min_members, st.max_members,
	       *share, st.balance);
	ts_placement_destroy(p);
}

/* ---- 3 ---- */

struct scale {
	uint32_t groups;
	double balance, mean_us, p99_us, max_us, new_mean_us;
	uint64_t heap, mallinfo, json, json_per_group, json_per_volume;
	double save_ms, load_ms;
	size_t moves;
	double drain_ms, balance_after;
};

static void scale(uint32_t nodes, uint32_t nvol, struct scale *out)
{
	struct ts_placement *p, *q;
	struct ts_placement_stats st;
	struct ts_placement_move *mv;
	struct mallinfo2 m0, m1;
	uint64_t *ns = malloc(nvol * sizeof(*ns)), sum = 0, new_sum = 0, nnew = 0, t;
	size_t base_len, len, nmv, len2;
	char *json, *json2, msg[256];
	uint32_t gid, before = 0;
	int rc;

	if (!ns)
		die("malloc", -ENOMEM, NULL);
	m0 = mallinfo2();
	p = pool(nodes, 10, 0);
	if ((rc = ts_placement_to_json(p, &json, &base_len)))
		die("to_json", rc, NULL);
	ts_free(json);
	for (uint32_t v = 0; v < nvol; v++) {
		uint64_t size = rnd_in(10, 200) * GiB;

		t = ts_now_ns();
		rc = ts_placement_volume_place(p, v + 1, size, &gid, msg, sizeof(msg));
		ns[v] = ts_now_ns() - t;
		if (rc)
			die("volume_place", rc, msg);
		sum += ns[v];
		if (gid > before) { /* group ids only grow: this one made a group */
			new_sum += ns[v];
			nnew++;
			before = gid;
		}
	}
	m1 = mallinfo2();
	ts_placement_stats(p, &st);
	qsort(ns, nvol, sizeof(*ns), cmp_u64);
	out->groups = st.ngroups;
	out->balance = st.balance;
	out->mean_us = (double)sum / nvol / 1e3;
	out->p99_us = (double)ns[(size_t)nvol * 99 / 100] / 1e3;
	out->max_us = (double)ns[nvol - 1] / 1e3;
	out->new_mean_us = nnew ? (double)new_sum / (double)nnew / 1e3 : 0;
	out->heap = st.heap_bytes;
	/* large arrays are mmapped: hblkhd counts them */
	out->mallinfo = (m1.uordblks + m1.hblkhd) - (m0.uordblks + m0.hblkhd);

	t = ts_now_ns();
	if ((rc = ts_placement_to_json(p, &json, &len)))
		die("to_json", rc, NULL);
	out->save_ms = (double)(ts_now_ns() - t) / 1e6;
	t = ts_now_ns();
	if ((rc = ts_placement_from_json(json, len, &q, msg, sizeof(msg))))
		die("from_json", rc, msg);
	out->load_ms = (double)(ts_now_ns() - t) / 1e6;
	/* the volumes' share: the same model without them */
	for (uint32_t v = 0; v < nvol; v++)
		ts_placement_volume_delete(q, v + 1);
	if ((rc = ts_placement_to_json(q, &json2, &len2)))
		die("to_json", rc, NULL);
	out->json = len;
	out->json_per_volume = (len - len2) / nvol;
	out->json_per_group = st.ngroups ? (len2 - base_len) / st.ngroups : 0;
	ts_free(json);
	ts_free(json2);
	ts_placement_destroy(q);

	t = ts_now_ns();
	rc = ts_placement_drain(p, 1, &mv, &nmv, msg, sizeof(msg));
	out->drain_ms = (double)(ts_now_ns() - t) / 1e6;
	if (rc)
		die("drain", rc, msg);
	out->moves = nmv;
	ts_free(mv);
	ts_placement_stats(p, &st);
	out->balance_after = st.balance;
	ts_placement_destroy(p);
	free(ns);

	printf("%u nodes x 10 disks (2-8 TiB), %u volumes (10-200 GiB): %u groups, balance %.3f\n",
	       nodes, nvol, out->groups, out->balance);
	printf("  placement decision: mean %.1f us, p99 %.1f us, max %.1f us; the %llu that made a "
	       "group: mean %.1f us\n",
	       out->mean_us, out->p99_us, out->max_us, (unsigned long long)nnew, out->new_mean_us);
	printf("  model heap %.1f KiB (own count), mallinfo2 delta %.1f KiB\n",
	       (double)out->heap / 1024, (double)out->mallinfo / 1024);
	printf("  JSON %.1f KiB: %llu bytes per group, %llu per volume; save %.1f ms, load %.1f ms\n",
	       (double)out->json / 1024, (unsigned long long)out->json_per_group,
	       (unsigned long long)out->json_per_volume, out->save_ms, out->load_ms);
	printf("  drain of node 1: %zu moves in %.2f ms, balance after %.3f\n", out->moves,
	       out->drain_ms, out->balance_after);
}

int main(int argc, char **argv)
{
	struct scale s100, s1000;
	uint32_t maxm, share;
	double ratio;
	int ok;

	g_rnd = argc > 1 ? strtoull(argv[1], NULL, 0) : 1;
	if (argc > 2) {
		fprintf(stderr, "usage: placement_bench [seed]\n");
		return 2;
	}
	ratio = capacity_ratio();
	fill90(&ok, &maxm, &share);
	scale(100, 10000, &s100);
	scale(1000, 10000, &s1000);
	printf("capacity_ratio_6v3=%.3f fill90_ok=%d fill90_max_members=%u fill90_share=%u "
	       "n100_groups=%u n100_balance=%.3f n100_place_mean_us=%.1f n100_place_p99_us=%.1f "
	       "n100_place_max_us=%.1f n100_heap_kib=%.0f n100_json_kib=%.0f n100_drain_moves=%zu "
	       "n100_drain_ms=%.2f n1000_groups=%u n1000_balance=%.3f n1000_place_mean_us=%.1f "
	       "n1000_place_p99_us=%.1f n1000_place_max_us=%.1f n1000_heap_kib=%.0f "
	       "n1000_json_kib=%.0f n1000_drain_moves=%zu n1000_drain_ms=%.2f\n",
	       ratio, ok, maxm, share, s100.groups, s100.balance, s100.mean_us, s100.p99_us,
	       s100.max_us, (double)s100.heap / 1024, (double)s100.json / 1024, s100.moves,
	       s100.drain_ms, s1000.groups, s1000.balance, s1000.mean_us, s1000.p99_us,
	       s1000.max_us, (double)s1000.heap / 1024, (double)s1000.json / 1024, s1000.moves,
	       s1000.drain_ms);
	return ok ? 0 : 1;
}
