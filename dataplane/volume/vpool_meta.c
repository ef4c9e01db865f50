/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volume pool's metadata operations: volume create, delete, expand,
 * info and list; snapshot and rebase (new heads); layer info, list,
 * children, hide and remove; map walks for changed-block queries; volume
 * attributes.
 *
 * Workload. Rare control-plane calls, each a small transaction on the tree:
 * reserve everything it needs, apply its records to the tree (vpool.c),
 * then commit them (vpool_log.c) before returning. Volumes whose head
 * changes are quiesced first: IOs submitted meanwhile are queued, not
 * blocked, and resubmitted after the operation.
 *
 * Invariants. An operation that fails leaves the tree as it was (ENOMEM is
 * reserved up front). A call returns only after its records are durable. A
 * volume's merged index always equals the resolution of its head chain.
 *
 * THREAD SAFETY: see volume.h (tree rwlock -> commit mutex -> pool mutex).
 * Every operation takes the tree rwlock for writing and p->mu
 * (meta_begin), drops p->mu before the commit and the rwlock after it
 * (meta_done); queries take the rwlock for reading. Quiesce waits on
 * p->cond with p->mu held. A hold (ts_vpool_volume_hold) is a quiesce that
 * outlives the call: it takes only p->mu (never the tree lock, so snapshots
 * of the held volume can run under it) and its timed wait is on p->cond,
 * which runs on CLOCK_MONOTONIC.
 */
#include "dataplane/volume/vpool_int.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ts_common.h"

static uint64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void copy_name(char dst[TS_VOLUME_NAME_MAX], const char *src)
{
	memset(dst, 0, TS_VOLUME_NAME_MAX);
	if (src)
		strncpy(dst, src, TS_VOLUME_NAME_MAX - 1);
}

/* ------------------------------------------------ metadata operations */

/*
 * Wait until no IO is in flight on v (p->mu held). IOs submitted meanwhile
 * are queued, not blocked (a submitter may be a completion callback whose
 * thread other completions need), and resubmitted after the operation.
 */
static void quiesce(struct ts_vpool *p, struct vol *v)
{
	v->quiesce++;
	while (v->inflight)
		pthread_cond_wait(&p->cond, &p->mu);
}

/*
 * End one quiesce (p->mu held). Only the last one hands the queue back: IO
 * queued while a hold is in place stays queued through a snapshot taken
 * under it. Returns 1 when the caller must call vio_drain(p, v) once it has
 * dropped its locks (v stays valid: queued IOs hold open handles, so the
 * volume cannot be deleted).
 */
static int unquiesce(struct vol *v)
{
	if (--v->quiesce || !v->defer || v->draining)
		return 0;
	v->draining = 1;
	return 1;
}

int ts_vpool_volume_hold(struct ts_vpool *p, uint64_t vol_id, uint64_t deadline_ns)
{
	struct timespec ts;
	struct vol *v;
	int rc = 0;

	if (!p)
		return -EINVAL;
	ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
	ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	if (!v) {
		pthread_mutex_unlock(&p->mu);
		return -ENOENT;
	}
	/* the volume cannot go while we wait: delete refuses a quiesced volume */
	v->quiesce++;
	while (v->inflight && rc == 0)
		if (pthread_cond_timedwait(&p->cond, &p->mu, &ts) == ETIMEDOUT && v->inflight)
			rc = -ETIMEDOUT;
	if (rc == 0) {
		v->holds++;
		pthread_mutex_unlock(&p->mu);
		return 0;
	}
	if (unquiesce(v)) {
		pthread_mutex_unlock(&p->mu);
		vio_drain(p, v);
		return rc;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

void ts_vpool_volume_release(struct ts_vpool *p, uint64_t vol_id)
{
	struct vol *v;
	int drain = 0;

	if (!p)
		return;
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	if (v && v->holds) {
		v->holds--;
		drain = unquiesce(v);
	} else {
		ts_log(TS_LOG_WARN, "volume", "release without a hold vol=%llu",
		       (unsigned long long)vol_id);
	}
	pthread_mutex_unlock(&p->mu);
	if (drain)
		vio_drain(p, v);
}

/* Finish a metadata operation: commit (which writes its records). */
static int meta_done(struct ts_vpool *p, int rc)
{
	pthread_mutex_unlock(&p->mu);
	if (rc == 0)
		rc = vp_commit(p);
	pthread_rwlock_unlock(&p->tree);
	return rc;
}

static void meta_begin(struct ts_vpool *p)
{
	pthread_rwlock_wrlock(&p->tree);
	pthread_mutex_lock(&p->mu);
}

int ts_vpool_volume_create(struct ts_vpool *p, const char *name, uint64_t size,
			   uint64_t parent_layer, uint64_t *vol_id)
{
	struct layer *parent = NULL, *h = NULL;
	struct vol *v = NULL;
	struct r_layer rl;
	struct r_vol rv;
	int rc = 0;

	if (!p || !vol_id || !size || size % BS || size / BS > RMAP_KEY_LIMIT)
		return -EINVAL;
	meta_begin(p);
	if (parent_layer) {
		parent = vp_layer_find(p, parent_layer);
		if (!parent || (parent->flags & TS_LAYER_HEAD)) {
			rc = parent ? -EINVAL : -ENOENT;
			goto out;
		}
		if (size < parent->size) {
			rc = -EINVAL;
			goto out;
		}
	}
	h = ts_calloc(1, sizeof(*h));
	v = ts_calloc(1, sizeof(*v));
	if (!h || !v || vp_rec_reserve(p, 2 * R_HDR + sizeof(rl) + sizeof(rv))) {
		rc = -ENOMEM;
		goto out;
	}
	if (parent && vp_build_index(parent, &v->index)) {
		vp_rec_unreserve(p, 2 * R_HDR + sizeof(rl) + sizeof(rv));
		rc = -ENOMEM;
		goto out;
	}
	memset(&rl, 0, sizeof(rl));
	rl.id = p->next_id;
	rl.parent = parent_layer;
	rl.vol = p->next_id + 1;
	rl.size = size;
	rl.ctime = wall_ns();
	rl.flags = TS_LAYER_HEAD;
	memset(&rv, 0, sizeof(rv));
	rv.id = rl.vol;
	rv.head = rl.id;
	rv.size = size;
	rv.ctime = rl.ctime;
	copy_name(rv.name, name);
	rc = vp_apply_layer_new(p, &rl, h);
	if (rc) {
		rmap_clear(&v->index);
		vp_rec_unreserve(p, 2 * R_HDR + sizeof(rl) + sizeof(rv));
		goto out;
	}
	h = NULL;
	rc = vp_apply_vol_new(p, &rv, v);
	if (rc) {
		/* undo the layer: it is the last one, with no entries */
		struct layer *l = p->layers[p->nlayers - 1];
		vp_layer_unlink(p, l);
		vp_layer_free(l);
		rmap_clear(&v->index);
		vp_rec_unreserve(p, 2 * R_HDR + sizeof(rl) + sizeof(rv));
		goto out;
	}
	v = NULL;
	vp_rec_put_reserved(p, R_LAYER_NEW, &rl, sizeof(rl));
	vp_rec_put_reserved(p, R_VOL_NEW, &rv, sizeof(rv));
	*vol_id = rv.id;
out:
	ts_free(h);
	ts_free(v);
	return meta_done(p, rc);
}

int ts_vpool_volume_delete(struct ts_vpool *p, uint64_t vol_id)
{
	struct vol *v;
	uint64_t id = vol_id;
	int rc;

	if (!p)
		return -EINVAL;
	meta_begin(p);
	v = vp_vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	if (v->refs || v->quiesce) {
		rc = -EBUSY;
		goto out;
	}
	rc = vp_rec_reserve(p, R_HDR + 8);
	if (rc)
		goto out;
	rc = vp_apply_vol_del(p, vol_id);
	if (rc) {
		vp_rec_unreserve(p, R_HDR + 8);
		goto out;
	}
	vp_rec_put_reserved(p, R_VOL_DEL, &id, 8);
out:
	return meta_done(p, rc);
}

int ts_vpool_volume_expand(struct ts_vpool *p, uint64_t vol_id, uint64_t new_size)
{
	struct vol *v;
	struct r_vol rv;
	struct r_layer rl;
	int rc;

	if (!p || !new_size || new_size % BS || new_size / BS > RMAP_KEY_LIMIT)
		return -EINVAL;
	meta_begin(p);
	v = vp_vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	if (new_size < v->size) {
		rc = -EINVAL;
		goto out;
	}
	if (new_size == v->size) {
		rc = 0;
		goto out;
	}
	rc = vp_rec_reserve(p, 2 * R_HDR + sizeof(rv) + sizeof(rl));
	if (rc)
		goto out;
	vp_vol_rec(v, &rv);
	rv.size = new_size;
	vp_apply_vol_set(p, &rv);
	vp_layer_rec(v->head, &rl);
	rl.size = new_size;
	vp_apply_layer_set(p, &rl);
	vp_rec_put_reserved(p, R_VOL_SET, &rv, sizeof(rv));
	vp_rec_put_reserved(p, R_LAYER_SET, &rl, sizeof(rl));
out:
	return meta_done(p, rc);
}

int ts_vpool_volume_info(struct ts_vpool *p, uint64_t vol_id, struct ts_vpool_volume_info *o)
{
	struct vol *v;

	if (!p || !o)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	if (v) {
		o->id = v->id;
		o->size = v->size;
		o->head = v->head->id;
		o->ctime = v->ctime;
		memcpy(o->name, v->name, sizeof(o->name));
	}
	pthread_mutex_unlock(&p->mu);
	return v ? 0 : -ENOENT;
}

int ts_vpool_volume_list(struct ts_vpool *p, uint64_t start, uint64_t *ids, size_t max)
{
	size_t i, n = 0;

	pthread_mutex_lock(&p->mu);
	for (i = vp_vol_pos(p, start); i < p->nvols && n < max; i++)
		ids[n++] = p->vols[i]->id;
	pthread_mutex_unlock(&p->mu);
	return (int)n;
}

/* Snapshot and rebase both put a fresh head on a volume. */
static int new_head(struct ts_vpool *p, struct vol *v, struct layer *parent, const char *snap_name,
		    uint32_t snap_flags, uint64_t *snap_id)
{
	struct layer *old = v->head, *h;
	struct r_layer rn, rs;
	struct r_vol rv;
	struct rmap idx = { 0 };
	size_t need = 3 * R_HDR + 2 * sizeof(rn) + sizeof(rv) + (snap_name ? 0 : R_HDR + 8);
	int rc;

	h = ts_calloc(1, sizeof(*h));
	if (!h || vp_rec_reserve(p, need)) {
		ts_free(h);
		return -ENOMEM;
	}
	if (!snap_name && (vp_pending_reserve(p, old->map.count) ||
			   (parent && vp_build_index(parent, &idx)))) {
		rc = -ENOMEM;
		goto fail;
	}
	/* the old head stops being a head: record it first so replay sees a
	 * consistent layer when the new head arrives */
	memset(&rn, 0, sizeof(rn));
	rn.id = p->next_id;
	rn.parent = parent ? parent->id : 0;
	rn.vol = v->id;
	rn.size = TS_MAX(v->size, parent ? parent->size : 0);
	rn.ctime = wall_ns();
	rn.flags = TS_LAYER_HEAD;
	rc = vp_apply_layer_new(p, &rn, h);
	if (rc)
		goto fail;
	vp_layer_rec(old, &rs);
	rs.flags &= ~TS_LAYER_HEAD;
	rs.flags |= snap_flags & TS_LAYER_HIDDEN;
	if (snap_name) {
		rs.ctime = rn.ctime;
		copy_name(rs.name, snap_name);
	}
	vp_apply_layer_set(p, &rs);
	vp_vol_rec(v, &rv);
	rv.head = rn.id;
	rv.size = rn.size;
	vp_apply_vol_set(p, &rv);
	vp_rec_put_reserved(p, R_LAYER_NEW, &rn, sizeof(rn));
	vp_rec_put_reserved(p, R_LAYER_SET, &rs, sizeof(rs));
	vp_rec_put_reserved(p, R_VOL_SET, &rv, sizeof(rv));
	if (snap_id)
		*snap_id = old->id;
	if (!snap_name) {
		/* rebase: the old head goes (it has no children) with its blocks */
		uint64_t oid = old->id;
		vp_apply_layer_remove(p, oid); /* cannot fail: no child, pending reserved */
		vp_rec_put_reserved(p, R_LAYER_REMOVE, &oid, 8);
		rmap_clear(&v->index);
		v->index = idx;
	}
	return 0;
fail:
	rmap_clear(&idx);
	vp_rec_unreserve(p, need);
	ts_free(h);
	return rc;
}

int ts_vpool_snapshot(struct ts_vpool *p, uint64_t vol_id, const char *name, uint32_t flags,
		      uint64_t *layer_id)
{
	int drain = 0;
	struct vol *v;
	int rc;

	if (!p || !layer_id)
		return -EINVAL;
	meta_begin(p);
	v = vp_vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	quiesce(p, v);
	rc = new_head(p, v, v->head, name ? name : "", flags, layer_id);
	drain = unquiesce(v);
out:
	rc = meta_done(p, rc);
	if (drain)
		vio_drain(p, v);
	return rc;
}

int ts_vpool_volume_rebase(struct ts_vpool *p, uint64_t vol_id, uint64_t layer_id)
{
	int drain = 0;
	struct layer *l;
	struct vol *v;
	int rc;

	if (!p)
		return -EINVAL;
	meta_begin(p);
	v = vp_vol_find(p, vol_id);
	l = vp_layer_find(p, layer_id);
	if (!v || !l) {
		rc = -ENOENT;
		goto out;
	}
	if (l->flags & TS_LAYER_HEAD) {
		rc = -EINVAL;
		goto out;
	}
	quiesce(p, v);
	rc = new_head(p, v, l, NULL, 0, NULL);
	drain = unquiesce(v);
out:
	rc = meta_done(p, rc);
	if (drain)
		vio_drain(p, v);
	return rc;
}

int ts_vpool_layer_info(struct ts_vpool *p, uint64_t id, struct ts_vpool_layer_info *o)
{
	struct layer *l;

	if (!p || !o)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	l = vp_layer_find(p, id);
	if (l) {
		o->id = l->id;
		o->parent = l->parent ? l->parent->id : 0;
		o->volume = l->vol_id;
		o->size = l->size;
		o->ctime = l->ctime;
		o->entries = l->map.count;
		o->flags = l->flags;
		o->children = l->nkids;
		memcpy(o->name, l->name, sizeof(o->name));
	}
	pthread_mutex_unlock(&p->mu);
	return l ? 0 : -ENOENT;
}

int ts_vpool_layer_list(struct ts_vpool *p, uint64_t start, uint64_t *ids, size_t max)
{
	size_t i, n = 0;

	pthread_mutex_lock(&p->mu);
	for (i = vp_layer_pos(p, start); i < p->nlayers && n < max; i++)
		ids[n++] = p->layers[i]->id;
	pthread_mutex_unlock(&p->mu);
	return (int)n;
}

int ts_vpool_layer_children(struct ts_vpool *p, uint64_t id, uint64_t *ids, size_t max)
{
	struct layer *l;
	int n = -ENOENT;
	size_t i;

	pthread_mutex_lock(&p->mu);
	l = vp_layer_find(p, id);
	if (l) {
		for (i = 0; i < l->nkids && i < max; i++)
			ids[i] = l->kids[i]->id;
		n = (int)l->nkids;
	}
	pthread_mutex_unlock(&p->mu);
	return n;
}

int ts_vpool_layer_set_hidden(struct ts_vpool *p, uint64_t id, int hidden)
{
	struct r_layer r;
	struct layer *l;
	int rc;

	if (!p)
		return -EINVAL;
	meta_begin(p);
	l = vp_layer_find(p, id);
	rc = !l ? -ENOENT : (l->flags & TS_LAYER_HEAD) ? -EINVAL : vp_rec_reserve(p, R_HDR + sizeof(r));
	if (rc == 0) {
		vp_layer_rec(l, &r);
		r.flags = hidden ? (r.flags | TS_LAYER_HIDDEN) : (r.flags & ~TS_LAYER_HIDDEN);
		vp_apply_layer_set(p, &r);
		vp_rec_put_reserved(p, R_LAYER_SET, &r, sizeof(r));
	}
	return meta_done(p, rc);
}

int ts_vpool_layer_remove(struct ts_vpool *p, uint64_t id)
{
	struct layer *l;
	int rc;

	if (!p)
		return -EINVAL;
	meta_begin(p);
	l = vp_layer_find(p, id);
	rc = !l ? -ENOENT : (l->flags & TS_LAYER_HEAD) ? -EINVAL : l->nkids > 1 ? -EBUSY : 0;
	if (rc == 0)
		rc = vp_rec_reserve(p, R_HDR + 8);
	if (rc == 0) {
		rc = vp_apply_layer_remove(p, id);
		if (rc)
			vp_rec_unreserve(p, R_HDR + 8);
		else
			vp_rec_put_reserved(p, R_LAYER_REMOVE, &id, 8);
	}
	return meta_done(p, rc);
}

int ts_vpool_layer_next(struct ts_vpool *p, uint64_t id, uint64_t from, uint64_t *grain, int *present)
{
	struct layer *l;
	uint64_t g, v;
	int rc;

	pthread_mutex_lock(&p->mu);
	l = vp_layer_find(p, id);
	rc = !l ? -ENOENT : rmap_next(&l->map, from, &g, &v);
	if (rc == 1) {
		*grain = g;
		if (present)
			*present = v != VP_TOMB;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int64_t ts_vpool_resolve(struct ts_vpool *p, uint64_t id, uint64_t grain)
{
	struct layer *l;
	int64_t r;

	pthread_mutex_lock(&p->mu);
	l = vp_layer_find(p, id);
	r = l ? (int64_t)vp_resolve(l, grain) : -ENOENT;
	pthread_mutex_unlock(&p->mu);
	return r;
}

void ts_vpool_tree_rdlock(struct ts_vpool *p)
{
	pthread_rwlock_rdlock(&p->tree);
}

void ts_vpool_tree_unlock(struct ts_vpool *p)
{
	pthread_rwlock_unlock(&p->tree);
}

/* ------------------------------------------------- volume attributes */
/*
 * An attribute change is one record on the volume, applied under p->mu and
 * committed before the call returns. It needs no tree lock: it changes no
 * topology, and a concurrent delete (tree lock + p->mu) either runs before
 * (-ENOENT) or after (the record precedes R_VOL_DEL in the stream).
 */

static int attr_name_ok(const char *name, struct r_attr *r)
{
	size_t n = name ? strnlen(name, TS_VOLUME_ATTR_NAME_MAX) : 0;

	if (!n || n >= TS_VOLUME_ATTR_NAME_MAX)
		return 0;
	memset(r->name, 0, sizeof(r->name));
	memcpy(r->name, name, n);
	return 1;
}

int ts_vpool_volume_attr_set(struct ts_vpool *p, uint64_t vol_id, const char *name,
			     const void *value, size_t len)
{
	struct r_attr r = { .vol = vol_id };
	struct vol *v;
	size_t need;
	int rc;

	if (!p || !attr_name_ok(name, &r) || (len && !value))
		return -EINVAL;
	if (len > TS_VOLUME_ATTR_VALUE_MAX)
		return -E2BIG;
	r.len = (uint32_t)len;
	need = R_HDR + sizeof(r) + len;
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	if (!vp_attr_find(v, r.name) && v->nattrs >= TS_VOLUME_ATTRS_MAX) {
		rc = -ENOSPC;
		goto out;
	}
	rc = vp_rec_reserve(p, need);
	if (rc)
		goto out;
	rc = vp_apply_attr_set(p, &r, value);
	if (rc) {
		vp_rec_unreserve(p, need);
		goto out;
	}
	vp_rec_put_reserved2(p, R_VOL_ATTR, &r, sizeof(r), value, len);
out:
	pthread_mutex_unlock(&p->mu);
	return rc ? rc : vp_commit(p);
}

int ts_vpool_volume_attr_get(struct ts_vpool *p, uint64_t vol_id, const char *name, void *buf,
			     size_t cap)
{
	struct r_attr r;
	const struct vattr *a;
	struct vol *v;
	int rc;

	if (!p || !attr_name_ok(name, &r) || (cap && !buf))
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	a = v ? vp_attr_find(v, r.name) : NULL;
	if (!a) {
		rc = -ENOENT;
	} else if (cap && cap < a->len) {
		rc = -ERANGE;
	} else {
		if (cap && a->len)
			memcpy(buf, a->val, a->len);
		rc = (int)a->len;
	}
	pthread_mutex_unlock(&p->mu);
	return rc;
}

int ts_vpool_volume_attr_del(struct ts_vpool *p, uint64_t vol_id, const char *name)
{
	struct r_attr r = { .vol = vol_id };
	struct vol *v;
	int rc;

	if (!p || !attr_name_ok(name, &r))
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	v = vp_vol_find(p, vol_id);
	if (!v || !vp_attr_find(v, r.name)) {
		rc = -ENOENT;
		goto out;
	}
	rc = vp_rec_reserve(p, R_HDR + sizeof(r));
	if (rc)
		goto out;
	vp_apply_attr_del(p, &r); /* cannot fail: it exists */
	vp_rec_put_reserved(p, R_VOL_ATTR_DEL, &r, sizeof(r));
out:
	pthread_mutex_unlock(&p->mu);
	return rc ? rc : vp_commit(p);
}
