/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshot policy and changed-block queries over dataplane/volume's layers.
 *
 * Deletion without copying. A layer's blocks are referenced only through its
 * descendants, so a snapshot with one child can be folded into that child (a
 * map merge in RAM and one log record; blocks the child overrides are freed)
 * and a childless one simply freed. A snapshot that is the base of several
 * branches (clones, or a volume restored elsewhere) cannot be folded into
 * either without copying, so it is hidden: invisible to the user, kept while
 * two or more branches need it, folded as soon as deletes leave it with one.
 * Every call that can lower a layer's child count runs gc_up() on the
 * affected parent, which keeps "no hidden layer has fewer than two
 * children".
 *
 * Deltas. Content that differs between snapshots A and B can only come from
 * layers that are ancestors of exactly one of them: the layers on the two
 * paths up to the common ancestor. Those maps give the candidate grains (a
 * k-way merge of their ordered iterators), and a candidate is reported when
 * the block A resolves to differs from B's (blocks are never shared between
 * layers, so equal block means equal content; an unmapped grain and a
 * discarded one both read zeroes). Cost: proportional to the data written on
 * the two paths, not to the volume size, and independent of history above
 * the common ancestor.
 */
#include "snapshots/chain/chain.h"

#include <errno.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

#define BS TS_VOLUME_BLOCK

static int is_snapshot(const struct ts_vpool_layer_info *li)
{
	return !(li->flags & (TS_LAYER_HEAD | TS_LAYER_HIDDEN));
}

static int get_snapshot(struct ts_vpool *p, uint64_t id, struct ts_vpool_layer_info *li)
{
	int rc = id ? ts_vpool_layer_info(p, id, li) : -ENOENT;

	if (rc == 0 && !is_snapshot(li))
		rc = -ENOENT;
	return rc;
}

/* Fold hidden layers from \p id upwards while they have fewer than two children. */
static int gc_up(struct ts_vpool *p, uint64_t id)
{
	struct ts_vpool_layer_info li;
	int rc;

	while (id && ts_vpool_layer_info(p, id, &li) == 0 && (li.flags & TS_LAYER_HIDDEN) &&
	       li.children < 2) {
		rc = ts_vpool_layer_remove(p, id);
		if (rc)
			return rc;
		/* a childless layer going lowers its parent's count; a fold does not */
		id = li.children == 0 ? li.parent : 0;
	}
	return 0;
}

int ts_chain_snapshot(struct ts_vpool *p, uint64_t vol_id, const char *name, uint64_t *snap_id)
{
	return ts_vpool_snapshot(p, vol_id, name, 0, snap_id);
}

int ts_chain_snapshot_delete(struct ts_vpool *p, uint64_t snap_id)
{
	struct ts_vpool_layer_info li;
	int rc = get_snapshot(p, snap_id, &li);

	if (rc)
		return rc;
	if (li.children >= 2)
		return ts_vpool_layer_set_hidden(p, snap_id, 1);
	rc = ts_vpool_layer_remove(p, snap_id);
	if (rc == 0 && li.children == 0)
		rc = gc_up(p, li.parent);
	return rc;
}

int ts_chain_volume_delete(struct ts_vpool *p, uint64_t vol_id)
{
	struct ts_vpool_volume_info vi;
	struct ts_vpool_layer_info hi;
	int rc = ts_vpool_volume_info(p, vol_id, &vi);

	if (rc == 0)
		rc = ts_vpool_layer_info(p, vi.head, &hi);
	if (rc == 0)
		rc = ts_vpool_volume_delete(p, vol_id);
	if (rc == 0)
		rc = gc_up(p, hi.parent);
	return rc;
}

int ts_chain_clone(struct ts_vpool *p, enum ts_chain_src kind, uint64_t src_id, const char *name,
		   uint64_t size, uint64_t *vol_id)
{
	struct ts_vpool_layer_info li;
	struct ts_vpool_volume_info vi;
	uint64_t base;
	int rc;

	if (!p || !vol_id)
		return -EINVAL;
	if (kind == TS_CHAIN_FROM_SNAPSHOT) {
		rc = get_snapshot(p, src_id, &li);
		if (rc)
			return rc;
		return ts_vpool_volume_create(p, name, size ? size : li.size, src_id, vol_id);
	}
	if (kind != TS_CHAIN_FROM_VOLUME)
		return -EINVAL;
	rc = ts_vpool_volume_info(p, src_id, &vi);
	if (rc)
		return rc;
	if (size && size < vi.size)
		return -EINVAL;
	rc = ts_vpool_snapshot(p, src_id, "", TS_LAYER_HIDDEN, &base);
	if (rc)
		return rc;
	rc = ts_vpool_volume_create(p, name, size ? size : vi.size, base, vol_id);
	if (rc)
		gc_up(p, base); /* fold the hidden base back into the source's head */
	return rc;
}

int ts_chain_restore(struct ts_vpool *p, uint64_t vol_id, uint64_t snap_id)
{
	struct ts_vpool_volume_info vi;
	struct ts_vpool_layer_info li, hi;
	int rc = get_snapshot(p, snap_id, &li);

	if (rc == 0)
		rc = ts_vpool_volume_info(p, vol_id, &vi);
	if (rc == 0)
		rc = ts_vpool_layer_info(p, vi.head, &hi);
	if (rc == 0)
		rc = ts_vpool_volume_rebase(p, vol_id, snap_id);
	if (rc == 0)
		rc = gc_up(p, hi.parent);
	return rc;
}

static void fill_info(const struct ts_vpool_layer_info *li, struct ts_chain_snapshot_info *o)
{
	o->id = li->id;
	o->volume = li->volume;
	o->size = li->size;
	o->ctime = li->ctime;
	memcpy(o->name, li->name, sizeof(o->name));
}

int ts_chain_snapshot_info(struct ts_vpool *p, uint64_t snap_id, struct ts_chain_snapshot_info *out)
{
	struct ts_vpool_layer_info li;
	int rc = get_snapshot(p, snap_id, &li);

	if (rc == 0)
		fill_info(&li, out);
	return rc;
}

int ts_chain_snapshot_list(struct ts_vpool *p, uint64_t vol_id, uint64_t start,
			   struct ts_chain_snapshot_info *out, size_t max)
{
	uint64_t ids[64];
	size_t n = 0;
	int got, i;

	while (n < max) {
		got = ts_vpool_layer_list(p, start, ids, TS_ARRAY_SIZE(ids));
		if (got <= 0)
			break;
		for (i = 0; i < got && n < max; i++) {
			struct ts_vpool_layer_info li;
			if (ts_vpool_layer_info(p, ids[i], &li) == 0 && is_snapshot(&li) &&
			    (!vol_id || li.volume == vol_id))
				fill_info(&li, &out[n++]);
		}
		start = ids[got - 1] + 1;
	}
	return (int)n;
}

int ts_chain_snapshot_find(struct ts_vpool *p, const char *name, struct ts_chain_snapshot_info *out)
{
	struct ts_chain_snapshot_info si[32];
	uint64_t start = 0;
	int n, i;

	if (!p || !name || !out)
		return -EINVAL;
	while ((n = ts_chain_snapshot_list(p, 0, start, si, TS_ARRAY_SIZE(si))) > 0) {
		for (i = 0; i < n; i++)
			if (strncmp(si[i].name, name, TS_VOLUME_NAME_MAX) == 0) {
				*out = si[i];
				return 0;
			}
		start = si[n - 1].id + 1;
	}
	return -ENOENT;
}

int ts_chain_volume_find(struct ts_vpool *p, const char *name, uint64_t *vol_id)
{
	uint64_t ids[32], start = 0;
	int n, i;

	if (!p || !name || !vol_id)
		return -EINVAL;
	while ((n = ts_vpool_volume_list(p, start, ids, TS_ARRAY_SIZE(ids))) > 0) {
		for (i = 0; i < n; i++) {
			struct ts_vpool_volume_info vi;
			if (ts_vpool_volume_info(p, ids[i], &vi) == 0 &&
			    strncmp(vi.name, name, TS_VOLUME_NAME_MAX) == 0) {
				*vol_id = ids[i];
				return 0;
			}
		}
		start = ids[n - 1] + 1;
	}
	return -ENOENT;
}

/* ----------------------------------------------------------- deltas */

struct path {
	uint64_t *ids;
	size_t n, cap;
};

static int path_push(struct path *pa, uint64_t id)
{
	if (pa->n == pa->cap) {
		size_t ncap = pa->cap ? pa->cap * 2 : 32;
		uint64_t *nids = ts_realloc(pa->ids, ncap * sizeof(*nids));
		if (!nids)
			return -ENOMEM;
		pa->ids = nids;
		pa->cap = ncap;
	}
	pa->ids[pa->n++] = id;
	return 0;
}

/* Ancestors of id, itself first. */
static int ancestry(struct ts_vpool *p, uint64_t id, struct path *pa)
{
	struct ts_vpool_layer_info li;
	int rc = 0;

	while (id && rc == 0) {
		rc = ts_vpool_layer_info(p, id, &li);
		if (rc == 0)
			rc = path_push(pa, id);
		id = li.parent;
	}
	return rc;
}

static int contains(const struct path *pa, uint64_t id)
{
	size_t i;

	for (i = 0; i < pa->n; i++)
		if (pa->ids[i] == id)
			return 1;
	return 0;
}

static int delta_locked(struct ts_vpool *p, uint64_t base, uint64_t target, uint64_t start,
			struct ts_chain_range *out, size_t max, uint64_t *next)
{
	struct ts_vpool_layer_info bi, ti;
	struct path pa = { 0 }, pb = { 0 }, cand = { 0 };
	uint64_t *nxt = NULL, limit, cur;
	size_t i, n = 0;
	int rc;

	rc = get_snapshot(p, target, &ti);
	if (rc == 0 && base)
		rc = get_snapshot(p, base, &bi);
	if (rc)
		return rc;
	limit = ti.size / BS;
	if ((rc = ancestry(p, base, &pa)) || (rc = ancestry(p, target, &pb)))
		goto out;
	/* candidates: layers above exactly one of the two */
	for (i = 0; i < pa.n && rc == 0; i++)
		if (!contains(&pb, pa.ids[i]))
			rc = path_push(&cand, pa.ids[i]);
	for (i = 0; i < pb.n && rc == 0; i++)
		if (!contains(&pa, pb.ids[i]))
			rc = path_push(&cand, pb.ids[i]);
	if (rc)
		goto out;
	nxt = ts_calloc(TS_MAX(cand.n, 1), sizeof(*nxt));
	if (!nxt) {
		rc = -ENOMEM;
		goto out;
	}
	cur = start / BS;
	for (i = 0; i < cand.n; i++) {
		uint64_t g;
		nxt[i] = ts_vpool_layer_next(p, cand.ids[i], cur, &g, NULL) == 1 ? g : UINT64_MAX;
	}
	*next = TS_CHAIN_END;
	for (;;) {
		uint64_t g = UINT64_MAX;
		int64_t va, vb;
		for (i = 0; i < cand.n; i++)
			g = TS_MIN(g, nxt[i]);
		if (g >= limit)
			break;
		for (i = 0; i < cand.n; i++)
			if (nxt[i] == g) {
				uint64_t ng;
				nxt[i] = ts_vpool_layer_next(p, cand.ids[i], g + 1, &ng, NULL) == 1
						 ? ng
						 : UINT64_MAX;
			}
		va = base ? ts_vpool_resolve(p, base, g) : 0;
		vb = ts_vpool_resolve(p, target, g);
		if (va < 0 || vb < 0) {
			rc = va < 0 ? (int)va : (int)vb;
			goto out;
		}
		if (va == vb)
			continue;
		if (n && out[n - 1].offset + out[n - 1].length == g * BS) {
			out[n - 1].length += BS;
			continue;
		}
		if (n == max) {
			*next = g * BS;
			break;
		}
		out[n].offset = g * BS;
		out[n].length = BS;
		n++;
	}
	rc = (int)n;
out:
	ts_free(nxt);
	ts_free(pa.ids);
	ts_free(pb.ids);
	ts_free(cand.ids);
	return rc;
}

int ts_chain_delta(struct ts_vpool *p, uint64_t base, uint64_t target, uint64_t start,
		   struct ts_chain_range *out, size_t max, uint64_t *next)
{
	int rc;

	if (!p || !out || !next || !max || start % BS)
		return -EINVAL;
	ts_vpool_tree_rdlock(p);
	rc = delta_locked(p, base, target, start, out, max, next);
	ts_vpool_tree_unlock(p);
	return rc;
}

int ts_chain_allocated(struct ts_vpool *p, uint64_t snap_id, uint64_t start,
		       struct ts_chain_range *out, size_t max, uint64_t *next)
{
	return ts_chain_delta(p, 0, snap_id, start, out, max, next);
}

/* ------------------------------------------------------------ walk, gc */

static int walk_rec(struct ts_vpool *p, uint64_t id, unsigned depth,
		    int (*cb)(void *, const struct ts_vpool_layer_info *, unsigned), void *arg)
{
	struct ts_vpool_layer_info li;
	uint64_t *kids;
	int rc = ts_vpool_layer_info(p, id, &li), n, i;

	if (rc)
		return rc;
	rc = cb(arg, &li, depth);
	if (rc || !li.children)
		return rc;
	kids = ts_malloc(li.children * sizeof(*kids));
	if (!kids)
		return -ENOMEM;
	n = ts_vpool_layer_children(p, id, kids, li.children);
	for (i = 0; i < n && i < (int)li.children && rc == 0; i++)
		rc = walk_rec(p, kids[i], depth + 1, cb, arg);
	ts_free(kids);
	return rc;
}

int ts_chain_walk(struct ts_vpool *p,
		  int (*cb)(void *arg, const struct ts_vpool_layer_info *l, unsigned depth), void *arg)
{
	uint64_t ids[64], start = 1;
	int got, i, rc = 0;

	if (!p || !cb)
		return -EINVAL;
	ts_vpool_tree_rdlock(p);
	while (rc == 0 && (got = ts_vpool_layer_list(p, start, ids, TS_ARRAY_SIZE(ids))) > 0) {
		for (i = 0; i < got && rc == 0; i++) {
			struct ts_vpool_layer_info li;
			if (ts_vpool_layer_info(p, ids[i], &li) == 0 && !li.parent)
				rc = walk_rec(p, ids[i], 0, cb, arg);
		}
		start = ids[got - 1] + 1;
	}
	ts_vpool_tree_unlock(p);
	return rc;
}

int ts_chain_gc(struct ts_vpool *p)
{
	uint64_t ids[64], start = 1;
	int got, i, rc, folded = 0;

	if (!p)
		return -EINVAL;
	while ((got = ts_vpool_layer_list(p, start, ids, TS_ARRAY_SIZE(ids))) > 0) {
		for (i = 0; i < got; i++) {
			struct ts_vpool_layer_info li;
			if (ts_vpool_layer_info(p, ids[i], &li) == 0 && (li.flags & TS_LAYER_HIDDEN) &&
			    li.children < 2) {
				rc = gc_up(p, ids[i]);
				if (rc)
					return rc;
				folded++;
			}
		}
		start = ids[got - 1] + 1;
	}
	return folded;
}
