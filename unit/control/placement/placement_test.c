/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement: the domain rule on fixed shapes (4+2 on 3 nodes, refused on
 * 2; zone labels), and over random clusters driven by random operations
 * with every invariant re-derived after each step by a checker that sees
 * only the public API (per-disk used bytes and member counts recomputed
 * from the groups, the domain rule from the nodes' labels, group fill from
 * the test's own list of volumes); a refused group placement is checked to
 * be really impossible. Balance after many placements, growth (a new node
 * leaves groups alone and takes new ones; 6 nodes give twice the capacity
 * of 3), a 90% fill, drain (everything moves, rules kept; a refused drain
 * changes nothing), refused removals, JSON round trips and rejected input,
 * and allocation failure at every allocation of each mutating call.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/placement/placement.h"
#include "dataplane/common/ts_common.h"

#define GiB (1ull << 30)
#define TiB (1ull << 40)

static uint64_t g_rnd = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	g_rnd ^= g_rnd >> 12;
	g_rnd ^= g_rnd << 25;
	g_rnd ^= g_rnd >> 27;
	return g_rnd * 0x2545f4914f6cdd1dull;
}

static uint64_t rnd_in(uint64_t lo, uint64_t hi) /* [lo, hi] */
{
	return lo + rnd() % (hi - lo + 1);
}

static struct ts_placement *model(uint32_t k, uint32_t m, uint64_t ms)
{
	struct ts_placement_opts o = { .k = k, .m = m, .member_size = ms };
	struct ts_placement *p;

	cr_assert_eq(ts_placement_create(&o, &p), 0);
	return p;
}

/* Nodes first..first+n-1, each with ndisks disks of cap bytes (disk id node*100+j). */
static void add_nodes(struct ts_placement *p, uint32_t first, uint32_t n, uint32_t ndisks,
		      uint64_t cap, const char *label)
{
	for (uint32_t i = first; i < first + n; i++) {
		cr_assert_eq(ts_placement_node_add(p, i, label), 0);
		for (uint32_t j = 0; j < ndisks; j++)
			cr_assert_eq(ts_placement_disk_add(p, i * 100 + j, i, cap), 0);
	}
}

static char *dump(const struct ts_placement *p)
{
	char *s;
	size_t len;

	cr_assert_eq(ts_placement_to_json(p, &s, &len), 0);
	cr_assert_eq(strlen(s), len);
	return s;
}

/* ---- the reference checker ---- */

struct vol {
	uint64_t id, size;
	uint32_t group;
};

struct ref {
	struct vol *v;
	size_t n, cap;
};

static void ref_add(struct ref *r, uint64_t id, uint64_t size, uint32_t group)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		cr_assert_not_null(r->v);
	}
	r->v[r->n++] = (struct vol){ id, size, group };
}

static void ref_del(struct ref *r, size_t i)
{
	r->v[i] = r->v[--r->n];
}

/* The failure-domain key of a node: its label, or the node itself. */
static void domain_key(const struct ts_placement_node_info *nodes, size_t nn, uint32_t node,
		       char out[80])
{
	for (size_t i = 0; i < nn; i++) {
		if (nodes[i].id != node)
			continue;
		if (nodes[i].domain[0])
			snprintf(out, 80, "L:%s", nodes[i].domain);
		else
			snprintf(out, 80, "N:%u", node);
		return;
	}
	cr_assert_fail("disk on unknown node %u", node);
}

/* Every invariant, from the public API only; r may be NULL (volumes not tracked). */
static void check_model(struct ts_placement *p, const struct ref *r)
{
	struct ts_placement_stats st;
	struct ts_placement_node_info *nodes;
	struct ts_placement_disk_info di;
	struct ts_placement_group_info g;
	uint64_t *used, *members, raw_used = 0;
	size_t nn, nd, i, ng;

	ts_placement_stats(p, &st);
	nodes = calloc(st.nnodes + 1, sizeof(*nodes));
	used = calloc(st.ndisks + 1, sizeof(*used));
	members = calloc(st.ndisks + 1, sizeof(*members));
	ts_placement_nodes(p, nodes, st.nnodes, &nn);
	cr_assert_eq(nn, st.nnodes);
	for (nd = 0; ts_placement_disk_at(p, nd, &di) == 0; nd++)
		;
	cr_assert_eq(nd, st.ndisks);
	for (ng = 0; ts_placement_group_at(p, ng, &g) == 0; ng++) {
		uint32_t n = g.k + g.m;
		char keys[TS_PLACEMENT_MAX_SLOTS][80];
		uint64_t vused = 0, nv = 0;

		cr_assert(g.k >= 1 && g.m >= 1 && n <= TS_PLACEMENT_MAX_SLOTS);
		for (uint32_t s = 0; s < n; s++) {
			uint32_t same = 0;
			size_t at;

			cr_assert_eq(ts_placement_disk_get(p, g.disks[s], &di), 0,
				     "group %u slot %u on unknown disk %u", g.id, s, g.disks[s]);
			for (at = 0; at < nd; at++) {
				struct ts_placement_disk_info x;

				ts_placement_disk_at(p, at, &x);
				if (x.id == di.id)
					break;
			}
			used[at] += g.member_size;
			members[at]++;
			domain_key(nodes, nn, di.node_id, keys[s]);
			for (uint32_t t = 0; t < s; t++) {
				cr_assert_neq(g.disks[t], g.disks[s], "group %u: two members on disk %u",
					      g.id, g.disks[s]);
				same += !strcmp(keys[t], keys[s]);
			}
			cr_assert_lt(same, g.m, "group %u (%u+%u): more than m members in %s", g.id,
				     g.k, g.m, keys[s]);
		}
		if (r) {
			for (i = 0; i < r->n; i++)
				if (r->v[i].group == g.id) {
					vused += r->v[i].size;
					nv++;
				}
			cr_assert_eq(g.used, vused, "group %u fill", g.id);
			cr_assert_eq(g.nvolumes, nv);
		}
		cr_assert_leq(g.used, (uint64_t)g.k * g.member_size);
	}
	cr_assert_eq(ng, st.ngroups);
	for (i = 0; i < nd; i++) {
		ts_placement_disk_at(p, i, &di);
		cr_assert_eq(di.used, used[i], "disk %u used", di.id);
		cr_assert_eq(di.members, members[i], "disk %u members", di.id);
		cr_assert_leq(di.used, di.capacity);
		raw_used += di.used;
	}
	cr_assert_eq(st.raw_used, raw_used);
	if (r) {
		cr_assert_eq(st.nvolumes, r->n);
		for (i = 0; i < r->n; i++) {
			struct ts_placement_volume_info v;

			cr_assert_eq(ts_placement_volume_get(p, r->v[i].id, &v), 0);
			cr_assert_eq(v.size, r->v[i].size);
			cr_assert_eq(v.group, r->v[i].group);
		}
	}
	free(nodes);
	free(used);
	free(members);
}

/*
 * Is a k+m group of ms members possible at all? Per domain, the number of
 * uncordoned disks with room, capped at m, must add up to k+m.
 */
static bool group_possible(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t ms)
{
	struct ts_placement_stats st;
	struct ts_placement_node_info *nodes;
	struct ts_placement_disk_info di;
	char (*keys)[80];
	uint32_t *cnt, total = 0;
	size_t nn, nkeys = 0;

	ts_placement_stats(p, &st);
	nodes = calloc(st.nnodes + 1, sizeof(*nodes));
	keys = calloc(st.ndisks + 1, sizeof(*keys));
	cnt = calloc(st.ndisks + 1, sizeof(*cnt));
	ts_placement_nodes(p, nodes, st.nnodes, &nn);
	for (size_t i = 0; ts_placement_disk_at(p, i, &di) == 0; i++) {
		char key[80];
		size_t j;
		bool cordoned = false;

		for (j = 0; j < nn; j++)
			if (nodes[j].id == di.node_id)
				cordoned = nodes[j].cordoned;
		if (cordoned || di.capacity - di.used < ms)
			continue;
		domain_key(nodes, nn, di.node_id, key);
		for (j = 0; j < nkeys && strcmp(keys[j], key); j++)
			;
		if (j == nkeys)
			strcpy(keys[nkeys++], key);
		cnt[j]++;
	}
	for (size_t j = 0; j < nkeys; j++)
		total += cnt[j] < m ? cnt[j] : m;
	free(nodes);
	free(keys);
	free(cnt);
	return total >= k + m;
}

/* Members of group gid per node id (nodes 1..max). */
static void members_per_node(struct ts_placement *p, uint32_t gid, uint32_t *per, uint32_t max)
{
	struct ts_placement_group_info g;
	struct ts_placement_disk_info di;

	memset(per, 0, (max + 1) * sizeof(*per));
	cr_assert_eq(ts_placement_group_get(p, gid, &g), 0);
	for (uint32_t s = 0; s < g.k + g.m; s++) {
		cr_assert_eq(ts_placement_disk_get(p, g.disks[s], &di), 0);
		cr_assert_leq(di.node_id, max);
		per[di.node_id]++;
	}
}

/* ---- fixed shapes ---- */

Test(placement, four_plus_two_on_three_nodes_and_refused_on_two)
{
	struct ts_placement *p = model(4, 2, 10 * GiB);
	uint32_t gid, per[4];
	char msg[256];

	add_nodes(p, 1, 2, 3, TiB, NULL);
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 10 * GiB, &gid, msg, sizeof(msg)), -ENOSPC);
	cr_assert(strstr(msg, "at least 3 failure domains"), "message: %s", msg);
	check_model(p, NULL);
	add_nodes(p, 3, 1, 3, TiB, NULL);
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 10 * GiB, &gid, msg, sizeof(msg)), 0, "%s",
		     msg);
	cr_assert_eq(gid, 1u);
	cr_assert_str_empty(msg);
	members_per_node(p, gid, per, 3);
	cr_assert(per[1] == 2 && per[2] == 2 && per[3] == 2);
	/* 8+2 cannot: 5 domains needed */
	cr_assert_eq(ts_placement_group_place(p, 8, 2, GiB, &gid, msg, sizeof(msg)), -ENOSPC);
	cr_assert_eq(ts_placement_group_place(p, 0, 2, GiB, &gid, msg, sizeof(msg)), -EINVAL);
	cr_assert_eq(ts_placement_group_place(p, 39, 2, GiB, &gid, msg, sizeof(msg)), -EINVAL);
	check_model(p, NULL);
	ts_placement_destroy(p);
	ts_placement_destroy(NULL);
}

Test(placement, spreads_over_all_domains_when_it_can)
{
	struct ts_placement *p = model(4, 2, 10 * GiB);
	uint32_t gid, per[7];

	add_nodes(p, 1, 6, 2, TiB, NULL);
	for (int i = 0; i < 20; i++) {
		cr_assert_eq(ts_placement_group_place(p, 4, 2, 10 * GiB, &gid, NULL, 0), 0);
		members_per_node(p, gid, per, 6);
		for (int n = 1; n <= 6; n++)
			cr_assert_eq(per[n], 1u, "group %u has %u members on node %d", gid, per[n], n);
	}
	ts_placement_destroy(p);
}

Test(placement, zone_labels_are_the_domains)
{
	struct ts_placement *p = model(4, 2, 10 * GiB);
	struct ts_placement_domain_info dom[8];
	uint32_t gid;
	size_t nd;
	char msg[256];

	/* six nodes, but in two zones: 4+2 needs three */
	add_nodes(p, 1, 3, 2, TiB, "zone-a");
	add_nodes(p, 4, 3, 2, TiB, "zone-b");
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 10 * GiB, &gid, msg, sizeof(msg)), -ENOSPC);
	cr_assert(strstr(msg, "2 domain(s)"), "message: %s", msg);
	add_nodes(p, 7, 1, 2, TiB, "zone-c");
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 10 * GiB, &gid, msg, sizeof(msg)), 0, "%s",
		     msg);
	ts_placement_domains(p, dom, 8, &nd);
	cr_assert_eq(nd, 3u);
	cr_assert_str_eq(dom[0].label, "zone-a");
	cr_assert_eq(dom[0].nnodes, 3u);
	cr_assert_eq(dom[0].members, 2u);
	cr_assert_eq(dom[1].members, 2u);
	cr_assert_str_eq(dom[2].label, "zone-c");
	cr_assert_eq(dom[2].members, 2u);
	cr_assert_eq(dom[2].capacity, 2 * TiB);
	/* inside a zone the two members go to different nodes */
	uint32_t per[8];
	members_per_node(p, gid, per, 7);
	for (int n = 1; n <= 6; n++)
		cr_assert_leq(per[n], 1u);
	/* a node without a label is a domain of its own */
	add_nodes(p, 8, 1, 1, TiB, NULL);
	ts_placement_domains(p, dom, 8, &nd);
	cr_assert_eq(nd, 4u);
	cr_assert_str_empty(dom[3].label);
	cr_assert_eq(dom[3].node_id, 8u);
	char label[TS_PLACEMENT_LABEL_MAX + 1];
	memset(label, 'x', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	cr_assert_eq(ts_placement_node_add(p, 9, label), -EINVAL);
	cr_assert_eq(ts_placement_node_add(p, 8, NULL), -EEXIST);
	check_model(p, NULL);
	ts_placement_destroy(p);
}

Test(placement, skips_cordoned_nodes_and_full_disks)
{
	struct ts_placement *p = model(2, 1, 100 * GiB);
	struct ts_placement_group_info g;
	struct ts_placement_disk_info di;
	uint32_t gid;

	add_nodes(p, 1, 4, 1, 150 * GiB, NULL);
	cr_assert_eq(ts_placement_node_cordon(p, 2, true), 0);
	cr_assert_eq(ts_placement_group_place(p, 2, 1, 100 * GiB, &gid, NULL, 0), 0);
	ts_placement_group_get(p, gid, &g);
	for (int s = 0; s < 3; s++) {
		ts_placement_disk_get(p, g.disks[s], &di);
		cr_assert_neq(di.node_id, 2u);
	}
	/* the three others are now too full for a second 100 GiB member */
	cr_assert_eq(ts_placement_group_place(p, 2, 1, 100 * GiB, &gid, NULL, 0), -ENOSPC);
	cr_assert_eq(ts_placement_node_cordon(p, 2, false), 0);
	cr_assert_eq(ts_placement_group_place(p, 2, 1, 50 * GiB, &gid, NULL, 0), 0);
	cr_assert_eq(ts_placement_node_cordon(p, 99, true), -ENOENT);
	check_model(p, NULL);
	ts_placement_destroy(p);
}

/* ---- random clusters against the checker ---- */

static void random_cluster(struct ts_placement *p, uint32_t nnodes)
{
	static const char *const zones[] = { NULL, "z1", "z2", "z3", "z4" };
	bool labels = rnd() % 2;

	for (uint32_t n = 1; n <= nnodes; n++)
		add_nodes(p, n, 1, (uint32_t)rnd_in(1, 4), rnd_in(2, 40) * 50 * GiB,
			  labels ? zones[rnd() % TS_ARRAY_SIZE(zones)] : NULL);
}

Test(placement, random_operations_keep_every_rule, .timeout = 120)
{
	char msg[512];

	g_rnd = 0x1234567;
	for (int round = 0; round < 60; round++) {
		uint32_t k = (uint32_t)rnd_in(1, 6), m = (uint32_t)rnd_in(1, 3);
		struct ts_placement *p = model(k, m, rnd_in(1, 8) * 25 * GiB);
		struct ref r = { 0 };
		uint32_t nnodes = (uint32_t)rnd_in(2, 12), next_node = nnodes + 1;
		uint64_t next_vol = 1;

		random_cluster(p, nnodes);
		for (int step = 0; step < 150; step++) {
			uint32_t gid, gk = (uint32_t)rnd_in(1, 6), gm = (uint32_t)rnd_in(1, 3);
			uint64_t ms = rnd_in(1, 8) * 25 * GiB;
			int op = (int)(rnd() % 100), rc;

			if (op < 25) {
				rc = ts_placement_group_place(p, gk, gm, ms, &gid, msg, sizeof(msg));
				if (rc) {
					cr_assert_eq(rc, -ENOSPC);
					cr_assert(!group_possible(p, gk, gm, ms),
						  "refused a possible %u+%u group: %s", gk, gm, msg);
					cr_assert(msg[0]);
				}
			} else if (op < 60) {
				uint64_t size = rnd_in(1, 400) * GiB;

				rc = ts_placement_volume_place(p, next_vol, size, &gid, msg,
							       sizeof(msg));
				if (!rc)
					ref_add(&r, next_vol, size, gid);
				else
					cr_assert(rc == -ENOSPC || rc == -EFBIG, "%d %s", rc, msg);
				next_vol++;
			} else if (op < 75 && r.n) {
				size_t i = rnd() % r.n;

				cr_assert_eq(ts_placement_volume_delete(p, r.v[i].id), 0);
				ref_del(&r, i);
			} else if (op < 82) {
				struct ts_placement_move *mv;
				size_t nmv;
				char *before = dump(p), *after;
				uint32_t node = (uint32_t)rnd_in(1, next_node - 1);

				rc = ts_placement_drain(p, node, &mv, &nmv, msg, sizeof(msg));
				if (rc == -ENOSPC) {
					after = dump(p);
					cr_assert_str_eq(before, after, "refused drain changed the model");
					ts_free(after);
				} else if (!rc) {
					struct ts_placement_node_info ni[64];
					size_t nn;

					ts_placement_nodes(p, ni, 64, &nn);
					for (size_t i = 0; i < nn; i++)
						if (ni[i].id == node)
							cr_assert(ni[i].cordoned && !ni[i].members);
					ts_placement_node_cordon(p, node, rnd() % 2 == 0);
				} else {
					cr_assert_eq(rc, -ENOENT); /* removed earlier */
				}
				ts_free(mv);
				ts_free(before);
			} else if (op < 88) {
				add_nodes(p, next_node++, 1, (uint32_t)rnd_in(1, 3),
					  rnd_in(2, 40) * 50 * GiB, rnd() % 2 ? "z1" : NULL);
			} else if (op < 94) {
				struct ts_placement_disk_info di;
				size_t nd = 0;

				while (ts_placement_disk_at(p, nd, &di) == 0)
					nd++;
				if (nd && ts_placement_disk_at(p, rnd() % nd, &di) == 0) {
					rc = ts_placement_disk_remove(p, di.id, msg, sizeof(msg));
					cr_assert_eq(rc, di.members ? -EBUSY : 0);
				}
			} else {
				uint32_t node = (uint32_t)rnd_in(1, next_node - 1);

				rc = ts_placement_node_remove(p, node, msg, sizeof(msg));
				cr_assert(rc == 0 || rc == -EBUSY || rc == -ENOENT);
			}
			check_model(p, &r);
		}
		/* and the model survives its own serialisation */
		char *a = dump(p), *b;
		struct ts_placement *q;

		cr_assert_eq(ts_placement_from_json(a, strlen(a), &q, msg, sizeof(msg)), 0, "%s", msg);
		check_model(q, &r);
		b = dump(q);
		cr_assert_str_eq(a, b);
		ts_free(a);
		ts_free(b);
		ts_placement_destroy(q);
		ts_placement_destroy(p);
		free(r.v);
	}
}

/* ---- balance and growth ---- */

Test(placement, balance_after_many_placements)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_stats st;
	uint32_t gid;
	int placed = 0;

	g_rnd = 77;
	/* ten nodes of unequal disks: 2-5 disks of 1-4 TiB */
	for (uint32_t n = 1; n <= 10; n++)
		for (uint32_t d = 0, nd = (uint32_t)rnd_in(2, 5); d < nd; d++) {
			if (!d)
				cr_assert_eq(ts_placement_node_add(p, n, NULL), 0);
			cr_assert_eq(ts_placement_disk_add(p, n * 100 + d, n, rnd_in(1, 4) * TiB), 0);
		}
	do {
		cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
		placed++;
		ts_placement_stats(p, &st);
	} while (st.raw_used < st.raw_capacity / 2);
	/*
	 * Every disk sits within about one member of the same fill: at half
	 * full, one 64 GiB member on the smallest (1 TiB) disk is 6.25%, so
	 * max/min stays well under (0.5 + 0.0625) / (0.5 - 0.0625) = 1.29.
	 */
	cr_assert_lt(st.balance, 1.29, "balance %.3f after %d groups", st.balance, placed);
	cr_assert_gt(st.balance, 0.99);
	check_model(p, NULL);
	ts_placement_destroy(p);
}

Test(placement, new_node_leaves_groups_and_takes_new_ones)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_group_info before[10], g;
	struct ts_placement_disk_info di;
	uint32_t gid;
	bool used_new = false;

	add_nodes(p, 1, 6, 4, 4 * TiB, NULL);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
		ts_placement_group_get(p, gid, &before[i]);
	}
	add_nodes(p, 7, 4, 4, 4 * TiB, NULL);
	for (int i = 0; i < 10; i++) {
		ts_placement_group_at(p, (size_t)i, &g);
		cr_assert_eq(memcmp(&g, &before[i], sizeof(g)), 0, "group %u changed", g.id);
	}
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
	ts_placement_group_get(p, gid, &g);
	for (int s = 0; s < 6; s++) {
		ts_placement_disk_get(p, g.disks[s], &di);
		used_new |= di.node_id >= 7;
	}
	cr_assert(used_new, "the empty new nodes were passed over");
	ts_placement_destroy(p);
}

static uint64_t usable_of(uint32_t nodes)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_stats st;

	add_nodes(p, 1, nodes, 4, 4 * TiB, NULL);
	ts_placement_stats(p, &st);
	ts_placement_destroy(p);
	return st.usable_free;
}

Test(placement, six_nodes_offer_twice_three)
{
	uint64_t u3 = usable_of(3), u6 = usable_of(6);
	double ratio = (double)u6 / (double)u3;

	/* 3 nodes x 4 disks x 4 TiB = 48 TiB raw, 4+2 keeps 2/3 of it */
	cr_assert_eq(u3, 32 * TiB);
	cr_assert(ratio > 1.95 && ratio < 2.05, "ratio %.3f", ratio);
	/* and of two nodes nothing is usable */
	cr_assert_eq(usable_of(2), 0u);
}

Test(placement, usable_capacity_is_what_placement_achieves)
{
	g_rnd = 4242;
	for (int round = 0; round < 150; round++) {
		uint32_t k = (uint32_t)rnd_in(1, 6), m = (uint32_t)rnd_in(1, 3);
		uint64_t ms = rnd_in(1, 4) * 32 * GiB;
		struct ts_placement *p = model(k, m, ms);
		struct ts_placement_stats st;
		uint32_t gid, predicted, placed = 0;

		random_cluster(p, (uint32_t)rnd_in(2, 10));
		ts_placement_stats(p, &st);
		predicted = st.new_groups;
		while (ts_placement_group_place(p, k, m, ms, &gid, NULL, 0) == 0)
			placed++;
		ts_placement_stats(p, &st);
		/* the count is a bound, and placement keeps to it to the last group */
		cr_assert_eq(placed, predicted, "round %d (%u+%u): placed %u of %u", round, k, m,
			     placed, predicted);
		cr_assert_eq(st.new_groups, 0u);
		cr_assert_eq(st.usable_free, st.group_free);
		check_model(p, NULL);
		ts_placement_destroy(p);
	}
}

Test(placement, fill_six_nodes_to_ninety_percent)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_stats st0, st;
	struct ts_placement_disk_info di;
	uint64_t id = 1, placed = 0;
	uint32_t gid, share;
	struct ref r = { 0 };
	char msg[256];

	g_rnd = 9;
	add_nodes(p, 1, 6, 4, 4 * TiB, NULL);
	ts_placement_stats(p, &st0);
	while (placed < st0.usable_free / 10 * 9) {
		uint64_t size = rnd_in(1, 64) * GiB;
		int rc = ts_placement_volume_place(p, id, size, &gid, msg, sizeof(msg));

		cr_assert_eq(rc, 0, "volume %llu at %.1f%%: %s", (unsigned long long)id,
			     100.0 * (double)placed / (double)st0.usable_free, msg);
		ref_add(&r, id++, size, gid);
		placed += size;
	}
	ts_placement_stats(p, &st);
	cr_assert_eq(st.volume_bytes, placed);
	cr_assert_eq(st.usable_free, st0.usable_free - placed);
	/* equal disks: each holds its share of the members, plus one at most */
	share = (uint32_t)TS_DIV_ROUND_UP(st.ngroups * 6u, st.ndisks);
	for (size_t i = 0; ts_placement_disk_at(p, i, &di) == 0; i++)
		cr_assert_leq(di.members, share + 1, "disk %u: %u members, share %u", di.id,
			      di.members, share);
	cr_assert_leq(st.max_members - st.min_members, 1u);
	check_model(p, &r);
	ts_placement_destroy(p);
	free(r.v);
}

/* ---- volumes ---- */

Test(placement, volumes_best_fit_then_new_groups)
{
	struct ts_placement *p = model(2, 1, 10 * GiB); /* 20 GiB per group */
	struct ts_placement_group_info g;
	uint32_t g1, g2, g3, gid;
	char msg[256];

	add_nodes(p, 1, 3, 2, TiB, NULL);
	cr_assert_eq(ts_placement_volume_place(p, 1, 15 * GiB, &g1, NULL, 0), 0);
	cr_assert_eq(ts_placement_volume_place(p, 2, 10 * GiB, &g2, NULL, 0), 0);
	cr_assert_neq(g1, g2, "15 + 10 > 20: a second group");
	/* 4 GiB fits both (5 and 10 free): best fit takes the fuller */
	cr_assert_eq(ts_placement_volume_place(p, 3, 4 * GiB, &gid, NULL, 0), 0);
	cr_assert_eq(gid, g1);
	cr_assert_eq(ts_placement_volume_place(p, 4, 6 * GiB, &gid, NULL, 0), 0);
	cr_assert_eq(gid, g2);
	cr_assert_eq(ts_placement_volume_place(p, 4, GiB, &gid, NULL, 0), -EEXIST);
	cr_assert_eq(ts_placement_volume_place(p, 5, 0, &gid, NULL, 0), -EINVAL);
	cr_assert_eq(ts_placement_volume_place(p, 5, 21 * GiB, &gid, msg, sizeof(msg)), -EFBIG);
	cr_assert(strstr(msg, "larger than a 2+1 group"), "%s", msg);
	/* deleting frees the space in its group */
	cr_assert_eq(ts_placement_volume_delete(p, 1), 0);
	cr_assert_eq(ts_placement_volume_delete(p, 1), -ENOENT);
	ts_placement_group_get(p, g1, &g);
	cr_assert_eq(g.used, 4 * GiB);
	cr_assert_eq(g.nvolumes, 1u);
	cr_assert_eq(ts_placement_volume_place(p, 6, 16 * GiB, &g3, NULL, 0), 0);
	cr_assert_eq(g3, g1);
	ts_placement_destroy(p);
}

Test(placement, volume_refused_when_no_group_can_be_made)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	uint32_t gid;
	char msg[256];

	add_nodes(p, 1, 2, 4, TiB, NULL);
	cr_assert_eq(ts_placement_volume_place(p, 1, GiB, &gid, msg, sizeof(msg)), -ENOSPC);
	cr_assert(strstr(msg, "no group has 1 GiB free"), "%s", msg);
	cr_assert(strstr(msg, "failure domains"), "%s", msg);
	ts_placement_destroy(p);
}

/* ---- drain and removal ---- */

Test(placement, drain_moves_everything_and_keeps_the_rules)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_group_info g;
	struct ts_placement_disk_info di;
	struct ts_placement_node_info ni[9];
	struct ts_placement_move *mv;
	size_t nmv, nn;
	uint32_t gid, on_node = 0, slots_before[40][6];
	char msg[256];

	add_nodes(p, 1, 8, 3, 2 * TiB, NULL);
	for (int i = 0; i < 40; i++) {
		cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
		ts_placement_group_get(p, gid, &g);
		memcpy(slots_before[i], g.disks, sizeof(slots_before[i]));
	}
	ts_placement_nodes(p, ni, 9, &nn);
	on_node = ni[2].members;
	cr_assert_gt(on_node, 0u);
	cr_assert_eq(ts_placement_drain(p, 3, &mv, &nmv, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(nmv, on_node);
	/* the moves, replayed on the old layout, give the new one */
	for (size_t i = 0; i < nmv; i++) {
		uint32_t *s = &slots_before[mv[i].group - 1][mv[i].slot];

		cr_assert_eq(*s, mv[i].from_disk);
		cr_assert_eq(mv[i].from_disk / 100, 3u);
		cr_assert_neq(mv[i].to_disk / 100, 3u);
		*s = mv[i].to_disk;
	}
	for (int i = 0; i < 40; i++) {
		ts_placement_group_at(p, (size_t)i, &g);
		cr_assert_eq(memcmp(g.disks, slots_before[i], sizeof(slots_before[i])), 0);
	}
	for (uint32_t d = 300; d < 303; d++) {
		ts_placement_disk_get(p, d, &di);
		cr_assert_eq(di.members, 0u);
		cr_assert_eq(di.used, 0u);
	}
	ts_placement_nodes(p, ni, 9, &nn);
	cr_assert(ni[2].cordoned);
	check_model(p, NULL);
	/* nothing placed there any more, so new groups keep off it */
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
	ts_placement_nodes(p, ni, 9, &nn);
	cr_assert_eq(ni[2].members, 0u);
	ts_free(mv);
	/* draining it again moves nothing */
	cr_assert_eq(ts_placement_drain(p, 3, &mv, &nmv, NULL, 0), 0);
	cr_assert_eq(nmv, 0u);
	cr_assert_null(mv);
	cr_assert_eq(ts_placement_drain(p, 42, &mv, &nmv, NULL, 0), -ENOENT);
	/* and now it can go */
	cr_assert_eq(ts_placement_node_remove(p, 3, msg, sizeof(msg)), 0, "%s", msg);
	check_model(p, NULL);
	ts_placement_destroy(p);
}

Test(placement, drain_refused_leaves_the_model_unchanged)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	struct ts_placement_move *mv = (void *)1;
	uint32_t gid;
	size_t nmv = 7;
	char msg[256], *before, *after;

	/* 4+2 on 3 nodes: the third node's two members have nowhere to go */
	add_nodes(p, 1, 3, 2, TiB, NULL);
	cr_assert_eq(ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0), 0);
	before = dump(p);
	cr_assert_eq(ts_placement_drain(p, 2, &mv, &nmv, msg, sizeof(msg)), -ENOSPC);
	cr_assert(strstr(msg, "group 1 (4+2) slot"), "%s", msg);
	cr_assert_null(mv);
	cr_assert_eq(nmv, 0u);
	after = dump(p);
	cr_assert_str_eq(before, after);
	ts_free(after);
	ts_free(before);

	/* a fourth node with room for one member only: the first move is undone */
	add_nodes(p, 4, 1, 1, 100 * GiB, NULL);
	before = dump(p);
	cr_assert_eq(ts_placement_drain(p, 2, &mv, &nmv, msg, sizeof(msg)), -ENOSPC);
	after = dump(p);
	cr_assert_str_eq(before, after);
	ts_free(after);
	ts_free(before);
	/* with room for both it works */
	cr_assert_eq(ts_placement_disk_add(p, 401, 4, TiB), 0);
	cr_assert_eq(ts_placement_drain(p, 2, &mv, &nmv, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(nmv, 2u);
	cr_assert_eq(mv[0].to_disk / 100, 4u);
	cr_assert_eq(mv[1].to_disk / 100, 4u);
	ts_free(mv);
	check_model(p, NULL);
	ts_placement_destroy(p);
}

Test(placement, removal_refused_with_a_message)
{
	struct ts_placement *p = model(2, 1, 64 * GiB);
	struct ts_placement_group_info g;
	uint32_t gid;
	char msg[256], *before, *after;

	add_nodes(p, 1, 3, 2, TiB, NULL);
	cr_assert_eq(ts_placement_group_place(p, 2, 1, 64 * GiB, &gid, NULL, 0), 0);
	ts_placement_group_get(p, gid, &g);
	before = dump(p);
	cr_assert_eq(ts_placement_disk_remove(p, g.disks[0], msg, sizeof(msg)), -EBUSY);
	cr_assert(strstr(msg, "group 1 (2+1)"), "%s", msg);
	cr_assert(strstr(msg, "2 of 3 members"), "%s", msg);
	cr_assert_eq(ts_placement_node_remove(p, g.disks[1] / 100, msg, sizeof(msg)), -EBUSY);
	cr_assert(strstr(msg, "drain node"), "%s", msg);
	after = dump(p);
	cr_assert_str_eq(before, after);
	/* the empty disk of a node goes; a node with nothing placed goes */
	uint32_t node = g.disks[0] / 100, other = node * 100 + (g.disks[0] % 100 ? 0 : 1);
	cr_assert_eq(ts_placement_disk_remove(p, other, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_str_empty(msg);
	add_nodes(p, 9, 1, 2, TiB, NULL);
	cr_assert_eq(ts_placement_node_remove(p, 9, msg, sizeof(msg)), 0);
	cr_assert_eq(ts_placement_node_remove(p, 9, msg, sizeof(msg)), -ENOENT);
	cr_assert_eq(ts_placement_disk_remove(p, 900, msg, sizeof(msg)), -ENOENT);
	cr_assert_eq(ts_placement_disk_add(p, 900, 9, TiB), -ENOENT);
	cr_assert_eq(ts_placement_disk_add(p, g.disks[1], 1, TiB), -EEXIST);
	cr_assert_eq(ts_placement_disk_add(p, 999, 1, 0), -EINVAL);
	check_model(p, NULL);
	ts_free(after);
	ts_free(before);
	ts_placement_destroy(p);
}

/* ---- JSON ---- */

static struct ts_placement *sample(struct ref *r)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	uint32_t gid;

	add_nodes(p, 1, 3, 2, 4 * TiB, "rack-1");
	add_nodes(p, 4, 3, 2, 4 * TiB, NULL);
	add_nodes(p, 7, 2, 3, 2 * TiB, "rack \"2\"");
	ts_placement_node_cordon(p, 5, true);
	for (uint64_t v = 1; v <= 40; v++) {
		uint64_t size = (v % 7 + 1) * 13 * GiB;

		cr_assert_eq(ts_placement_volume_place(p, v * 1000, size, &gid, NULL, 0), 0);
		if (r)
			ref_add(r, v * 1000, size, gid);
	}
	cr_assert_eq(ts_placement_group_place(p, 2, 1, GiB, &gid, NULL, 0), 0);
	return p;
}

Test(placement, json_round_trip)
{
	struct ref r = { 0 };
	struct ts_placement *p = sample(&r), *q;
	struct ts_placement_stats sp, sq;
	uint32_t gp, gq;
	char *a, *b, msg[256];

	a = dump(p);
	cr_assert(strstr(a, "\"version\":1"));
	cr_assert_eq(ts_placement_from_json(a, strlen(a), &q, msg, sizeof(msg)), 0, "%s", msg);
	b = dump(q);
	cr_assert_str_eq(a, b);
	check_model(q, &r);
	ts_placement_stats(p, &sp);
	ts_placement_stats(q, &sq);
	sp.heap_bytes = sq.heap_bytes = 0;
	cr_assert_eq(memcmp(&sp, &sq, sizeof(sp)), 0);
	/* the same next decisions */
	for (uint64_t v = 1; v < 20; v++) {
		cr_assert_eq(ts_placement_volume_place(p, v, 50 * GiB, &gp, NULL, 0), 0);
		cr_assert_eq(ts_placement_volume_place(q, v, 50 * GiB, &gq, NULL, 0), 0);
		cr_assert_eq(gp, gq);
	}
	ts_free(a);
	ts_free(b);
	a = dump(p);
	b = dump(q);
	cr_assert_str_eq(a, b);
	ts_free(a);
	ts_free(b);
	ts_placement_destroy(p);
	ts_placement_destroy(q);
	free(r.v);
}

static void rejected(const char *json, const char *why)
{
	struct ts_placement *q = (void *)1;
	char msg[256];
	int rc = ts_placement_from_json(json, strlen(json), &q, msg, sizeof(msg));

	cr_assert_eq(rc, -EINVAL, "accepted (%s): %s", why, json);
	cr_assert_eq(q, (void *)1);
	cr_assert(msg[0], "no message for %s", why);
}

#define HEAD "{\"version\":1,\"pool\":{\"k\":2,\"m\":1,\"member_size\":100},\"next_group\":2,"
#define NODES "\"nodes\":[{\"id\":1,\"domain\":\"\",\"cordoned\":false},"                    \
	      "{\"id\":2,\"domain\":\"\",\"cordoned\":false},"                                 \
	      "{\"id\":3,\"domain\":\"\",\"cordoned\":true}],"
#define DISKS "\"disks\":[{\"id\":1,\"node\":1,\"capacity\":1000},"                           \
	      "{\"id\":2,\"node\":2,\"capacity\":1000},{\"id\":3,\"node\":3,\"capacity\":1000}],"
#define GROUP "\"groups\":[{\"id\":1,\"k\":2,\"m\":1,\"member_size\":100,\"disks\":[1,2,3]}],"

Test(placement, json_rejects_malformed_and_unknown_versions)
{
	const char *ok = HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":5,\"size\":200,\"group\":1}]}";
	struct ts_placement *q;
	char msg[256];

	cr_assert_eq(ts_placement_from_json(ok, strlen(ok), &q, msg, sizeof(msg)), 0, "%s", msg);
	check_model(q, NULL);
	ts_placement_destroy(q);

	rejected("", "empty");
	rejected("{", "truncated");
	rejected("[]", "not an object");
	rejected("{\"version\":2}", "unknown version");
	rejected("{\"version\":\"1\"}", "version a string");
	rejected("{\"pool\":{}}", "no version");
	rejected(HEAD "\"nodes\":{},\"disks\":[],\"groups\":[],\"volumes\":[]}", "nodes an object");
	rejected(HEAD "\"nodes\":[1],\"disks\":[],\"groups\":[],\"volumes\":[]}", "node a number");
	rejected(HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":5,\"size\":201,\"group\":1}]}",
		 "group over capacity");
	rejected(HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":5,\"size\":2,\"group\":9}]}",
		 "unknown group");
	rejected(HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":5,\"size\":2,\"group\":1},"
					"{\"id\":5,\"size\":2,\"group\":1}]}",
		 "duplicate volume");
	rejected(HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":-5,\"size\":2,\"group\":1}]}",
		 "negative id");
	rejected(HEAD NODES DISKS GROUP "\"volumes\":[{\"id\":5,\"size\":2.5,\"group\":1}]}",
		 "real size");
	rejected(HEAD NODES DISKS
		 "\"groups\":[{\"id\":1,\"k\":2,\"m\":1,\"member_size\":100,\"disks\":[1,2,2]}],"
		 "\"volumes\":[]}",
		 "two members on one disk");
	rejected(HEAD NODES DISKS
		 "\"groups\":[{\"id\":1,\"k\":2,\"m\":1,\"member_size\":100,\"disks\":[1,2,7]}],"
		 "\"volumes\":[]}",
		 "unknown disk");
	rejected(HEAD NODES DISKS
		 "\"groups\":[{\"id\":1,\"k\":2,\"m\":1,\"member_size\":100,\"disks\":[1,2]}],"
		 "\"volumes\":[]}",
		 "too few slots");
	rejected(HEAD NODES DISKS
		 "\"groups\":[{\"id\":1,\"k\":2,\"m\":1,\"member_size\":1001,\"disks\":[1,2,3]}],"
		 "\"volumes\":[]}",
		 "disk over capacity");
	rejected(HEAD NODES DISKS
		 "\"groups\":[{\"id\":1,\"k\":2,\"m\":0,\"member_size\":100,\"disks\":[1,2]}],"
		 "\"volumes\":[]}",
		 "m of 0");
	rejected(HEAD NODES DISKS GROUP
		 "\"groups\":[],\"volumes\":[]}", "duplicate key");
	rejected(HEAD
		 "\"nodes\":[{\"id\":1,\"domain\":\"z\",\"cordoned\":false},"
		 "{\"id\":2,\"domain\":\"z\",\"cordoned\":false},"
		 "{\"id\":3,\"domain\":\"\",\"cordoned\":false}]," DISKS GROUP "\"volumes\":[]}",
		 "two members in one zone with m=1");
	rejected("{\"version\":1,\"pool\":{\"k\":2,\"m\":1,\"member_size\":100},\"next_group\":1,"
		 NODES DISKS GROUP "\"volumes\":[]}", "next_group not above the groups");
	rejected(HEAD NODES "\"disks\":[{\"id\":1,\"node\":4,\"capacity\":1000}],"
			    "\"groups\":[],\"volumes\":[]}",
		 "disk on unknown node");
	rejected(HEAD NODES "\"disks\":[{\"id\":1,\"node\":1,\"capacity\":1000},"
			    "{\"id\":1,\"node\":2,\"capacity\":1000}],\"groups\":[],\"volumes\":[]}",
		 "duplicate disk");
	rejected(HEAD NODES "\"disks\":[{\"id\":1,\"node\":1,\"capacity\":99999999999999999999}],"
			    "\"groups\":[],\"volumes\":[]}",
		 "capacity beyond 64 bits");
	rejected(HEAD NODES "\"disks\":[{\"id\":4294967296,\"node\":1,\"capacity\":10}],"
			    "\"groups\":[],\"volumes\":[]}",
		 "disk id beyond 32 bits");
	/* every strict prefix of a valid document */
	for (size_t n = 0; n < strlen(ok); n++) {
		cr_assert_eq(ts_placement_from_json(ok, n, &q, msg, sizeof(msg)), -EINVAL,
			     "prefix of %zu accepted", n);
	}
	cr_assert_eq(ts_placement_from_json(NULL, 0, &q, NULL, 0), -EINVAL);
}

Test(placement, json_mutations_never_crash)
{
	struct ts_placement *p = sample(NULL), *q;
	char *a = dump(p), *b;
	size_t len = strlen(a);
	static const char pool[] = "0123456789-,:{}[]\"aeltrufsn ";

	g_rnd = 31337;
	b = malloc(len + 1);
	for (int i = 0; i < 3000; i++) {
		memcpy(b, a, len + 1);
		for (int e = 0, ne = (int)rnd_in(1, 4); e < ne; e++)
			b[rnd() % len] = pool[rnd() % (sizeof(pool) - 1)];
		int rc = ts_placement_from_json(b, len, &q, NULL, 0);

		cr_assert(rc == 0 || rc == -EINVAL);
		if (!rc) {
			check_model(q, NULL);
			ts_placement_destroy(q);
		}
	}
	free(b);
	ts_free(a);
	ts_placement_destroy(p);
}

/* ---- allocation failure ---- */

/*
 * One call of a scenario that crosses every table's growth (each starts at
 * 8 entries and doubles): 9 nodes, 18 disks, 10 groups, 20 volumes (the
 * later ones in new groups), a drain, a delete, a save and a load (of
 * \p json, saved before the failure is armed).
 */
#define CALLS 62

static int call(struct ts_placement *p, int i, const char *json)
{
	struct ts_placement_move *mv = NULL;
	struct ts_placement *q = NULL;
	uint32_t gid;
	size_t n;
	char *s = NULL;
	int rc;

	if (i < 9)
		return ts_placement_node_add(p, (uint32_t)i + 1, (i + 1) % 3 ? NULL : "z");
	if (i < 27)
		return ts_placement_disk_add(p, (uint32_t)i - 8, (uint32_t)(i - 9) % 9 + 1, 2 * TiB);
	if (i < 37)
		return ts_placement_group_place(p, 4, 2, 64 * GiB, &gid, NULL, 0);
	if (i < 57)
		return ts_placement_volume_place(p, (uint64_t)i, 200 * GiB, &gid, NULL, 0);
	switch (i) {
	case 57:
		rc = ts_placement_drain(p, 4, &mv, &n, NULL, 0);
		cr_assert(rc || n > 0);
		ts_free(mv);
		return rc;
	case 58:
		return ts_placement_volume_delete(p, 40);
	case 59:
		rc = ts_placement_to_json(p, &s, &n);
		ts_free(s);
		return rc;
	case 60:
		rc = ts_placement_from_json(json, strlen(json), &q, NULL, 0);
		ts_placement_destroy(q);
		return rc;
	case 61:
		rc = ts_placement_create(NULL, &q);
		ts_placement_destroy(q);
		return rc;
	}
	return -EINVAL;
}

Test(placement, allocation_failure_changes_nothing_and_leaks_nothing)
{
	struct ts_placement *p = model(4, 2, 64 * GiB);
	int failures = 0;

	for (int i = 0; i < CALLS; i++) {
		for (long n = 0;; n++) {
			char *before = dump(p), *after;
			int rc;

			ts_alloc_fail_after(n);
			rc = call(p, i, before);
			ts_alloc_fail_after(-1);
			if (!rc) {
				ts_free(before);
				break;
			}
			cr_assert_eq(rc, -ENOMEM, "call %d after %ld allocations: %d", i, n, rc);
			failures++;
			after = dump(p);
			cr_assert_str_eq(before, after, "call %d changed the model on -ENOMEM", i);
			ts_free(after);
			ts_free(before);
		}
		check_model(p, NULL);
	}
	/* every table grew under injection at least once, and the load failed often */
	cr_assert_gt(failures, 40, "%d", failures);
	ts_placement_destroy(p);
}
