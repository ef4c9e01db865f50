/* SPDX-License-Identifier: Apache-2.0 */
/*
 * snapshots/chain against a plain reference model: every volume and snapshot
 * is an array of write tokens (0 = zeroes). Random writes, discards,
 * snapshots, snapshot deletes (middle, leaf, bases of clones), clones of
 * snapshots and of live volumes, restores, volume deletes, expansions and
 * reopen-from-disk; every read is checked against the model, every delta and
 * allocated-ranges query against the set computed from the model, paging
 * through small pages. A second test crashes the device at random points
 * inside operations and checks the tree and every flushed write after
 * reopening.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "snapshots/chain/chain.h"
#include "unit/support/member/test_member.h"

#define BS TS_VOLUME_BLOCK
#define MAXG 512u /* grains per model object (2 MiB) */
#define MAXV 6
#define MAXS 48

struct mobj {
	uint64_t id;
	uint64_t ngr; /* size in grains */
	uint64_t tok[MAXG];
};

struct model {
	struct mobj vol[MAXV];
	int nv;
	struct mobj snap[MAXS];
	int ns;
	uint64_t next_tok;
};

static uint64_t g_seed;

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

struct env {
	struct ts_member *m;
	struct tmem *ram;
	struct ts_vpool *p;
	struct model md;
};

static void env_open(struct env *e)
{
	cr_assert_eq(ts_vpool_open(e->m, &e->p), 0);
	cr_assert_geq(ts_chain_gc(e->p), 0);
}

static void env_init(struct env *e, uint64_t seed)
{
	memset(e, 0, sizeof(*e));
	g_seed = seed;
	cr_assert_eq(tm_ram_create(96ull << 20, 4096, 0, &e->m, &e->ram), 0);
	cr_assert_eq(ts_vpool_format(e->m), 0);
	env_open(e);
}

static void env_fini(struct env *e)
{
	ts_vpool_close(e->p);
	ts_member_destroy(e->m);
}

static int write_vol(struct env *e, struct mobj *v, uint64_t g, uint64_t n, int flush)
{
	struct ts_volume *h;
	uint8_t *buf = malloc(n * BS);
	uint64_t i;
	int rc;

	cr_assert_eq(ts_volume_open(e->p, v->id, &h), 0);
	for (i = 0; i < n; i++)
		stamp(buf + i * BS, e->md.next_tok + i + 1, g + i);
	rc = ts_volume_write_sync(h, g * BS, n * BS, buf);
	if (rc == 0 && flush)
		rc = ts_volume_flush_sync(h);
	if (rc == 0)
		for (i = 0; i < n; i++)
			v->tok[g + i] = e->md.next_tok + i + 1;
	e->md.next_tok += n;
	ts_volume_close(h);
	free(buf);
	return rc;
}

static void check_vol(struct env *e, const struct mobj *v)
{
	struct ts_volume *h;
	uint8_t *buf = malloc(v->ngr * BS), *want = malloc(BS);
	uint64_t g;

	cr_assert_eq(ts_volume_open(e->p, v->id, &h), 0);
	cr_assert_eq(ts_volume_size(h), v->ngr * BS);
	cr_assert_eq(ts_volume_read_sync(h, 0, v->ngr * BS, buf), 0);
	for (g = 0; g < v->ngr; g++) {
		if (v->tok[g])
			stamp(want, v->tok[g], g);
		else
			memset(want, 0, BS);
		cr_assert(memcmp(buf + g * BS, want, BS) == 0, "vol %llu grain %llu want tok %llu",
			  (unsigned long long)v->id, (unsigned long long)g,
			  (unsigned long long)v->tok[g]);
	}
	ts_volume_close(h);
	free(buf);
	free(want);
}

/* Compare ts_chain_delta(base, target) paged by \p page with the model's set. */
static void check_delta(struct env *e, const struct mobj *a, const struct mobj *b, size_t page)
{
	uint8_t got[MAXG] = { 0 };
	struct ts_chain_range r[8];
	uint64_t start = 0, next, g, i;
	int n, k;

	for (;;) {
		n = a ? ts_chain_delta(e->p, a->id, b->id, start, r, page, &next)
		      : ts_chain_allocated(e->p, b->id, start, r, page, &next);
		cr_assert_geq(n, 0, "delta rc %d", n);
		cr_assert_leq((size_t)n, page);
		for (k = 0; k < n; k++) {
			cr_assert_eq(r[k].offset % BS, 0);
			cr_assert_gt(r[k].length, 0);
			cr_assert_geq(r[k].offset, start);
			if (k)
				cr_assert_gt(r[k].offset, r[k - 1].offset + r[k - 1].length,
					     "ranges must be coalesced and ordered");
			for (i = r[k].offset / BS; i < (r[k].offset + r[k].length) / BS; i++) {
				cr_assert_lt(i, b->ngr);
				cr_assert_eq(got[i], 0);
				got[i] = 1;
			}
		}
		if (next == TS_CHAIN_END)
			break;
		cr_assert_eq((size_t)n, page);
		cr_assert_gt(next, start);
		start = next;
	}
	for (g = 0; g < b->ngr; g++) {
		uint64_t ta = a && g < a->ngr ? a->tok[g] : 0;
		cr_assert_eq(got[g], ta != b->tok[g], "delta %llu->%llu grain %llu: got %d want %d",
			     (unsigned long long)(a ? a->id : 0), (unsigned long long)b->id,
			     (unsigned long long)g, got[g], ta != b->tok[g]);
	}
}

/* A snapshot's content, read through a temporary clone. */
static void check_snap(struct env *e, const struct mobj *s)
{
	struct mobj c = *s;

	cr_assert_eq(ts_chain_clone(e->p, TS_CHAIN_FROM_SNAPSHOT, s->id, "probe", 0, &c.id), 0);
	check_vol(e, &c);
	cr_assert_eq(ts_chain_volume_delete(e->p, c.id), 0);
}

static int visit_inv(void *arg, const struct ts_vpool_layer_info *l, unsigned depth)
{
	int *counts = arg;

	(void)depth;
	if (l->flags & TS_LAYER_HIDDEN)
		cr_assert_geq(l->children, 2, "hidden layer %llu with %u children",
			      (unsigned long long)l->id, l->children);
	if (l->flags & TS_LAYER_HEAD) {
		cr_assert_eq(l->children, 0);
		counts[0]++;
	} else if (!(l->flags & TS_LAYER_HIDDEN)) {
		counts[1]++;
	}
	return 0;
}

static void check_tree(struct env *e)
{
	int counts[2] = { 0, 0 };
	struct ts_chain_snapshot_info si[MAXS + 1];
	int i;

	cr_assert_eq(ts_chain_walk(e->p, visit_inv, counts), 0);
	cr_assert_eq(counts[0], e->md.nv);
	cr_assert_eq(counts[1], e->md.ns);
	cr_assert_eq(ts_chain_snapshot_list(e->p, 0, 0, si, MAXS + 1), e->md.ns);
	for (i = 0; i < e->md.ns; i++) {
		int j, found = 0;
		if (i)
			cr_assert_gt(si[i].id, si[i - 1].id);
		for (j = 0; j < e->md.ns; j++)
			found += si[j].id == e->md.snap[i].id;
		cr_assert_eq(found, 1);
	}
}

static void reopen(struct env *e)
{
	ts_vpool_close(e->p);
	env_open(e);
}

static void op_random(struct env *e, int allow_reopen)
{
	struct model *md = &e->md;
	unsigned op = (unsigned)(rnd() % 100);
	struct mobj *v = &md->vol[rnd() % (uint64_t)md->nv];

	if (op < 40) { /* write */
		uint64_t n = 1 + rnd() % 4, g = rnd() % (v->ngr - n + 1);
		cr_assert_eq(write_vol(e, v, g, n, 0), 0);
	} else if (op < 45) { /* discard */
		struct ts_volume *h;
		uint64_t n = 1 + rnd() % 8, g = rnd() % (v->ngr - n + 1), i;
		cr_assert_eq(ts_volume_open(e->p, v->id, &h), 0);
		cr_assert_eq(ts_volume_unmap_sync(h, g * BS, n * BS), 0);
		ts_volume_close(h);
		for (i = 0; i < n; i++)
			v->tok[g + i] = 0;
	} else if (op < 57) { /* snapshot */
		if (md->ns == MAXS)
			return;
		struct mobj *s = &md->snap[md->ns];
		*s = *v;
		cr_assert_eq(ts_chain_snapshot(e->p, v->id, "s", &s->id), 0);
		md->ns++;
	} else if (op < 66) { /* delete a snapshot (any position) */
		if (!md->ns)
			return;
		int i = (int)(rnd() % (uint64_t)md->ns);
		cr_assert_eq(ts_chain_snapshot_delete(e->p, md->snap[i].id), 0);
		cr_assert_eq(ts_chain_snapshot_delete(e->p, md->snap[i].id), -ENOENT);
		memmove(&md->snap[i], &md->snap[i + 1], (size_t)(md->ns - i - 1) * sizeof(struct mobj));
		md->ns--;
	} else if (op < 72) { /* clone */
		if (md->nv == MAXV)
			return;
		struct mobj *c = &md->vol[md->nv];
		uint64_t grow = rnd() % 3 == 0 ? 16 : 0;
		if (md->ns && rnd() % 2) {
			struct mobj *s = &md->snap[rnd() % (uint64_t)md->ns];
			if (s->ngr + grow > MAXG)
				grow = 0;
			*c = *s;
			cr_assert_eq(ts_chain_clone(e->p, TS_CHAIN_FROM_SNAPSHOT, s->id, "c",
						    (s->ngr + grow) * BS, &c->id), 0);
		} else {
			if (v->ngr + grow > MAXG)
				grow = 0;
			*c = *v;
			cr_assert_eq(ts_chain_clone(e->p, TS_CHAIN_FROM_VOLUME, v->id, "c",
						    (v->ngr + grow) * BS, &c->id), 0);
		}
		c->ngr += grow;
		md->nv++;
	} else if (op < 77) { /* restore in place */
		if (!md->ns)
			return;
		struct mobj *s = &md->snap[rnd() % (uint64_t)md->ns];
		uint64_t id = v->id, ngr = TS_MAX(v->ngr, s->ngr);
		cr_assert_eq(ts_chain_restore(e->p, v->id, s->id), 0);
		*v = *s;
		v->id = id;
		v->ngr = ngr;
	} else if (op < 81) { /* delete a volume */
		if (md->nv < 2)
			return;
		int i = (int)(v - md->vol);
		cr_assert_eq(ts_chain_volume_delete(e->p, v->id), 0);
		memmove(&md->vol[i], &md->vol[i + 1], (size_t)(md->nv - i - 1) * sizeof(struct mobj));
		md->nv--;
	} else if (op < 84) { /* expand */
		if (v->ngr + 32 > MAXG)
			return;
		cr_assert_eq(ts_vpool_volume_expand(e->p, v->id, (v->ngr + 32) * BS), 0);
		v->ngr += 32;
	} else if (op < 90) {
		check_vol(e, v);
	} else if (op < 96) {
		if (!md->ns)
			return;
		const struct mobj *b = &md->snap[rnd() % (uint64_t)md->ns];
		const struct mobj *a = rnd() % 4 ? &md->snap[rnd() % (uint64_t)md->ns] : NULL;
		check_delta(e, a, b, 1 + rnd() % 4);
	} else if (op < 98) {
		if (md->ns)
			check_snap(e, &md->snap[rnd() % (uint64_t)md->ns]);
	} else if (allow_reopen) {
		reopen(e);
		check_tree(e);
	}
}

static void check_all(struct env *e)
{
	int i, j;

	check_tree(e);
	for (i = 0; i < e->md.nv; i++)
		check_vol(e, &e->md.vol[i]);
	for (i = 0; i < e->md.ns; i++) {
		check_snap(e, &e->md.snap[i]);
		check_delta(e, NULL, &e->md.snap[i], 8);
		for (j = 0; j < e->md.ns; j++)
			if (rnd() % 4 == 0)
				check_delta(e, &e->md.snap[j], &e->md.snap[i], 8);
	}
}

static void start_model(struct env *e, uint64_t ngr)
{
	struct mobj *v = &e->md.vol[0];

	memset(v, 0, sizeof(*v));
	v->ngr = ngr;
	cr_assert_eq(ts_vpool_volume_create(e->p, "v0", ngr * BS, 0, &v->id), 0);
	e->md.nv = 1;
}

/* Delete everything and check every block came back. */
static void drain(struct env *e)
{
	struct ts_vpool_stats st;

	while (e->md.ns) {
		cr_assert_eq(ts_chain_snapshot_delete(e->p, e->md.snap[e->md.ns - 1].id), 0);
		e->md.ns--;
		if (e->md.nv)
			check_vol(e, &e->md.vol[0]);
	}
	while (e->md.nv) {
		cr_assert_eq(ts_chain_volume_delete(e->p, e->md.vol[e->md.nv - 1].id), 0);
		e->md.nv--;
	}
	cr_assert_eq(ts_vpool_commit(e->p), 0);
	ts_vpool_stats(e->p, &st);
	cr_assert_eq(st.layers, 0);
	cr_assert_eq(st.volumes, 0);
	cr_assert_eq(st.pending_free, 0);
	cr_assert_eq(st.free_blocks, st.data_blocks);
	reopen(e);
	ts_vpool_stats(e->p, &st);
	cr_assert_eq(st.free_blocks, st.data_blocks);
}

Test(chain, model_random_ops)
{
	struct env e;
	int round, i;

	for (round = 0; round < 3; round++) {
		env_init(&e, 0x9e3779b97f4a7c15ull * (uint64_t)(round + 1));
		start_model(&e, 256);
		for (i = 0; i < 700; i++)
			op_random(&e, 1);
		check_all(&e);
		reopen(&e);
		check_all(&e);
		drain(&e);
		env_fini(&e);
	}
}

Test(chain, delete_middle_merges_without_copy)
{
	struct env e;
	struct mobj *v;
	struct ts_vpool_stats st0, st1;
	struct ts_vpool_layer_info li;
	uint64_t s1, s2, s3, g;

	env_init(&e, 7);
	start_model(&e, 128);
	v = &e.md.vol[0];
	for (g = 0; g < 128; g++)
		write_vol(&e, v, g, 1, 0);
	cr_assert_eq(ts_chain_snapshot(e.p, v->id, "a", &s1), 0);
	for (g = 0; g < 64; g++)
		write_vol(&e, v, g, 1, 0);
	cr_assert_eq(ts_chain_snapshot(e.p, v->id, "b", &s2), 0);
	for (g = 32; g < 48; g++)
		write_vol(&e, v, g, 1, 0);
	cr_assert_eq(ts_chain_snapshot(e.p, v->id, "c", &s3), 0);
	cr_assert_eq(ts_vpool_commit(e.p), 0);
	ts_vpool_stats(e.p, &st0);
	/* deleting b (middle) folds it into c: c already overrides 32..47, so
	 * those 16 of b's 64 blocks are freed and 48 move */
	cr_assert_eq(ts_chain_snapshot_delete(e.p, s2), 0);
	cr_assert_eq(ts_vpool_layer_info(e.p, s3, &li), 0);
	cr_assert_eq(li.parent, s1);
	cr_assert_eq(li.entries, 64);
	cr_assert_eq(ts_vpool_commit(e.p), 0);
	ts_vpool_stats(e.p, &st1);
	cr_assert_eq(st1.free_blocks, st0.free_blocks + 16);
	check_vol(&e, v);
	reopen(&e);
	ts_vpool_stats(e.p, &st1);
	cr_assert_eq(st1.free_blocks, st0.free_blocks + 16);
	check_vol(&e, v);
	env_fini(&e);
}

Test(chain, clone_base_is_hidden_then_folded)
{
	struct env e;
	struct mobj *v;
	struct ts_vpool_layer_info li;
	uint64_t s, c;

	env_init(&e, 11);
	start_model(&e, 64);
	v = &e.md.vol[0];
	write_vol(&e, v, 3, 4, 0);
	cr_assert_eq(ts_chain_snapshot(e.p, v->id, "s", &s), 0);
	cr_assert_eq(ts_chain_clone(e.p, TS_CHAIN_FROM_SNAPSHOT, s, "c", 0, &c), 0);
	cr_assert_eq(ts_chain_snapshot_delete(e.p, s), 0);
	cr_assert_eq(ts_vpool_layer_info(e.p, s, &li), 0);
	cr_assert(li.flags & TS_LAYER_HIDDEN);
	cr_assert_eq(ts_chain_snapshot_info(e.p, s, &(struct ts_chain_snapshot_info){ 0 }), -ENOENT);
	cr_assert_eq(ts_chain_volume_delete(e.p, c), 0);
	cr_assert_eq(ts_vpool_layer_info(e.p, s, &li), -ENOENT); /* folded into v's head */
	check_vol(&e, v);
	env_fini(&e);
}

Test(chain, hundreds_of_snapshots)
{
	struct env e;
	struct mobj *v;
	int i;

	env_init(&e, 13);
	start_model(&e, 64);
	v = &e.md.vol[0];
	for (i = 0; i < 600; i++) {
		uint64_t id;
		write_vol(&e, v, rnd() % 64, 1, 0);
		cr_assert_eq(ts_chain_snapshot(e.p, v->id, "s", &id), 0);
	}
	check_vol(&e, v);
	reopen(&e);
	check_vol(&e, v);
	env_fini(&e);
}

/* ---------------------------------------------------------- crashes */

enum cop { C_WRITE, C_SNAP, C_DELSNAP, C_CLONE_SNAP, C_CLONE_VOL, C_RESTORE, C_DELVOL, C_NOPS };

static struct mobj *find_obj(struct mobj *arr, int n, uint64_t id)
{
	int i;

	for (i = 0; i < n; i++)
		if (arr[i].id == id)
			return &arr[i];
	return NULL;
}

static void read_obj(struct env *e, uint64_t vol, uint64_t ngr, uint64_t *tok)
{
	struct ts_volume *h;
	uint8_t *buf = malloc(ngr * BS);
	uint64_t g, t, gg;

	cr_assert_eq(ts_volume_open(e->p, vol, &h), 0);
	cr_assert_eq(ts_volume_read_sync(h, 0, ngr * BS, buf), 0);
	for (g = 0; g < ngr; g++) {
		memcpy(&t, buf + g * BS, 8);
		memcpy(&gg, buf + g * BS + 8, 8);
		cr_assert(t == 0 || gg == g, "grain %llu holds another grain's data",
			  (unsigned long long)g);
		tok[g] = t;
	}
	ts_volume_close(h);
	free(buf);
}

/*
 * After a crash inside \p op (on \p vid / \p sid, writing grains [g0, g0+n)
 * with tokens from tok0), the pool must show the model before the op or
 * after it, per operation; every flushed write must be there. Brings the
 * model in line with what the pool shows.
 */
static void reconcile(struct env *e, enum cop op, uint64_t vid, uint64_t sid, uint64_t g0,
		      uint64_t n, uint64_t tok0)
{
	struct model *md = &e->md;
	uint64_t ids[MAXV + 2], tok[MAXG], g;
	struct ts_chain_snapshot_info si[MAXS + 2];
	int nv, ns, i;

	nv = ts_vpool_volume_list(e->p, 0, ids, MAXV + 2);
	/* volumes that vanished: only the one being deleted */
	for (i = 0; i < md->nv; i++) {
		int j, found = 0;
		for (j = 0; j < nv; j++)
			found |= ids[j] == md->vol[i].id;
		if (!found) {
			cr_assert(op == C_DELVOL && md->vol[i].id == vid, "volume %llu lost",
				  (unsigned long long)md->vol[i].id);
			memmove(&md->vol[i], &md->vol[i + 1],
				(size_t)(md->nv - i - 1) * sizeof(struct mobj));
			md->nv--;
			i--;
		}
	}
	/* a volume that appeared: only a clone's, with its source's content */
	for (i = 0; i < nv; i++) {
		struct ts_vpool_volume_info vi;
		struct mobj *src;
		if (find_obj(md->vol, md->nv, ids[i]))
			continue;
		cr_assert(op == C_CLONE_SNAP || op == C_CLONE_VOL, "unexpected volume");
		src = op == C_CLONE_SNAP ? find_obj(md->snap, md->ns, sid) : find_obj(md->vol, md->nv, vid);
		cr_assert_not_null(src);
		cr_assert_eq(ts_vpool_volume_info(e->p, ids[i], &vi), 0);
		md->vol[md->nv] = *src;
		md->vol[md->nv].id = ids[i];
		md->vol[md->nv].ngr = vi.size / BS;
		md->nv++;
	}
	ns = ts_chain_snapshot_list(e->p, 0, 0, si, MAXS + 2);
	for (i = 0; i < md->ns; i++) {
		int j, found = 0;
		for (j = 0; j < ns; j++)
			found |= si[j].id == md->snap[i].id;
		if (!found) {
			cr_assert(op == C_DELSNAP && md->snap[i].id == sid, "snapshot lost");
			memmove(&md->snap[i], &md->snap[i + 1],
				(size_t)(md->ns - i - 1) * sizeof(struct mobj));
			md->ns--;
			i--;
		}
	}
	for (i = 0; i < ns; i++) {
		struct mobj *src;
		if (find_obj(md->snap, md->ns, si[i].id))
			continue;
		cr_assert(op == C_SNAP, "unexpected snapshot");
		src = find_obj(md->vol, md->nv, vid);
		cr_assert_not_null(src);
		md->snap[md->ns] = *src;
		md->snap[md->ns].id = si[i].id;
		md->ns++;
	}
	/* contents */
	for (i = 0; i < md->nv; i++) {
		struct mobj *v = &md->vol[i];
		int is_pre = 1, is_post = 1;
		const struct mobj *s = op == C_RESTORE && v->id == vid ? find_obj(md->snap, md->ns, sid) : NULL;
		read_obj(e, v->id, v->ngr, tok);
		for (g = 0; g < v->ngr; g++) {
			if (op == C_WRITE && v->id == vid && g >= g0 && g < g0 + n) {
				cr_assert(tok[g] == v->tok[g] || tok[g] == tok0 + (g - g0),
					  "grain %llu neither old nor new", (unsigned long long)g);
				v->tok[g] = tok[g];
				continue;
			}
			is_pre &= tok[g] == v->tok[g];
			is_post &= s && tok[g] == (g < s->ngr ? s->tok[g] : 0);
		}
		cr_assert(is_pre || is_post, "volume %llu content is neither before nor after",
			  (unsigned long long)v->id);
		if (!is_pre)
			memcpy(v->tok, tok, sizeof(v->tok));
	}
	check_tree(e);
}

Test(chain, crash_during_tree_operations)
{
	struct env e;
	int it, crashes = 0, per_op[C_NOPS] = { 0 };

	env_init(&e, 0xdeadbeefcafef00dull);
	start_model(&e, 128);
	for (it = 0; it < 400; it++) {
		struct model *md = &e.md;
		enum cop op = (enum cop)(rnd() % C_NOPS);
		struct mobj *v = &md->vol[rnd() % (uint64_t)md->nv];
		struct mobj *s = md->ns ? &md->snap[rnd() % (uint64_t)md->ns] : NULL;
		uint64_t vid = v->id, sid = s ? s->id : 0, n = 1 + rnd() % 4, g0 = rnd() % (v->ngr - n + 1);
		uint64_t tok0 = md->next_tok + 1, newid = 0;
		int armed = rnd() % 2 == 0, rc = 0;

		if ((op == C_DELSNAP || op == C_CLONE_SNAP || op == C_RESTORE) && !s)
			op = C_WRITE;
		if ((op == C_CLONE_SNAP || op == C_CLONE_VOL) && md->nv == MAXV)
			op = C_DELVOL;
		if (op == C_DELVOL && md->nv < 2)
			op = C_SNAP;
		if (op == C_SNAP && md->ns == MAXS)
			op = C_WRITE;
		if (armed)
			tm_ram_fail_after(e.ram, (long)(rnd() % 8));
		switch (op) {
		case C_WRITE:
			rc = write_vol(&e, v, g0, n, 1);
			break;
		case C_SNAP:
			rc = ts_chain_snapshot(e.p, vid, "s", &newid);
			if (rc == 0) {
				md->snap[md->ns] = *v;
				md->snap[md->ns++].id = newid;
			}
			break;
		case C_DELSNAP:
			rc = ts_chain_snapshot_delete(e.p, sid);
			if (rc == 0) {
				int i = (int)(s - md->snap);
				memmove(&md->snap[i], &md->snap[i + 1],
					(size_t)(md->ns - i - 1) * sizeof(struct mobj));
				md->ns--;
			}
			break;
		case C_CLONE_SNAP:
		case C_CLONE_VOL:
			rc = ts_chain_clone(e.p, op == C_CLONE_SNAP ? TS_CHAIN_FROM_SNAPSHOT : TS_CHAIN_FROM_VOLUME,
					    op == C_CLONE_SNAP ? sid : vid, "c", 0, &newid);
			if (rc == 0) {
				md->vol[md->nv] = op == C_CLONE_SNAP ? *s : *v;
				md->vol[md->nv++].id = newid;
			}
			break;
		case C_RESTORE:
			rc = ts_chain_restore(e.p, vid, sid);
			if (rc == 0) {
				*v = *s;
				v->id = vid;
				v->ngr = TS_MAX(v->ngr, s->ngr);
			}
			break;
		case C_DELVOL:
			rc = ts_chain_volume_delete(e.p, vid);
			if (rc == 0) {
				int i = (int)(v - md->vol);
				memmove(&md->vol[i], &md->vol[i + 1],
					(size_t)(md->nv - i - 1) * sizeof(struct mobj));
				md->nv--;
			}
			break;
		default:
			break;
		}
		tm_ram_fail_after(e.ram, -1);
		if (rc == 0 && armed)
			continue; /* finished before the device died: nothing lost, carry on */
		cr_assert(rc == 0 || armed, "op %d failed without injection: %d", op, rc);
		if (rc == 0)
			continue;
		/* the device died mid-operation: crash and come back */
		tm_ram_fail_after(e.ram, 0);
		ts_vpool_close(e.p);
		tm_ram_crash(e.ram, (unsigned)(rnd() % 101), (unsigned)rnd());
		env_open(&e);
		reconcile(&e, op, vid, sid, g0, n, tok0);
		crashes++;
		per_op[op]++;
	}
	cr_log_info("crashes=%d write=%d snap=%d delsnap=%d clone=%d/%d restore=%d delvol=%d", crashes,
		    per_op[0], per_op[1], per_op[2], per_op[3], per_op[4], per_op[5], per_op[6]);
	for (it = 0; it < C_NOPS; it++)
		cr_assert_geq(per_op[it], 2, "op %d crashed only %d times", it, per_op[it]);
	check_all(&e);
	drain(&e);
	env_fini(&e);
}

Test(chain, find_by_name_and_info)
{
	struct env e;
	struct ts_chain_snapshot_info si;
	uint64_t s1, s2, id, c;
	int i;

	env_init(&e, 17);
	start_model(&e, 64);
	cr_assert_eq(ts_chain_snapshot(e.p, e.md.vol[0].id, "snap-one", &s1), 0);
	cr_assert_eq(ts_vpool_volume_expand(e.p, e.md.vol[0].id, 128 * BS), 0);
	cr_assert_eq(ts_chain_snapshot(e.p, e.md.vol[0].id, "snap-two", &s2), 0);
	cr_assert_eq(ts_chain_clone(e.p, TS_CHAIN_FROM_VOLUME, e.md.vol[0].id, "pvc-clone", 0, &c), 0);
	for (i = 0; i < 40; i++) /* more than one page of the lists */
		cr_assert_eq(ts_chain_snapshot(e.p, c, "filler", &id), 0);
	cr_assert_eq(ts_chain_snapshot_find(e.p, "snap-two", &si), 0);
	cr_assert_eq(si.id, s2);
	cr_assert_eq(si.volume, e.md.vol[0].id);
	cr_assert_eq(si.size, 128 * BS);
	cr_assert_gt(si.ctime, 0);
	cr_assert_eq(ts_chain_snapshot_info(e.p, s1, &si), 0);
	cr_assert_eq(si.size, 64 * BS);
	cr_assert_str_eq(si.name, "snap-one");
	cr_assert_eq(ts_chain_snapshot_find(e.p, "nope", &si), -ENOENT);
	cr_assert_eq(ts_chain_volume_find(e.p, "pvc-clone", &id), 0);
	cr_assert_eq(id, c);
	cr_assert_eq(ts_chain_volume_find(e.p, "v0", &id), 0);
	cr_assert_eq(id, e.md.vol[0].id);
	cr_assert_eq(ts_chain_volume_find(e.p, "nope", &id), -ENOENT);
	cr_assert_eq(ts_chain_snapshot_list(e.p, c, 0, (struct ts_chain_snapshot_info[64]){ 0 }, 64), 40);
	/* the clone's hidden base is not a snapshot */
	cr_assert_eq(ts_chain_snapshot_list(e.p, e.md.vol[0].id, 0, (struct ts_chain_snapshot_info[64]){ 0 }, 64), 2);
	reopen(&e);
	cr_assert_eq(ts_chain_snapshot_find(e.p, "snap-one", &si), 0);
	cr_assert_eq(si.id, s1);
	env_fini(&e);
}
