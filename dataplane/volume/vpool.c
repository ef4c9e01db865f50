/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volume pool: layers, volumes, the allocator and crash-safe metadata.
 * This file is the in-memory tree and the records that describe its
 * changes: lookups, the layer/volume tables, the record buffer, the block
 * allocator, and applying a record to the tree (one code path for the
 * metadata operations, the log replay and the checkpoint load). The log,
 * checkpoints, format and open are vpool_log.c; the metadata operations
 * (create, delete, expand, snapshot, rebase, layer operations) are
 * vpool_meta.c; the IO path is vio.c.
 *
 * Workload. Data IO is 4 KiB-grained and hot; metadata operations (create,
 * snapshot, clone, delete, merge) are rare, control-plane calls. So all
 * metadata lives in RAM in the shapes the IO path wants (a radix map per
 * layer, a merged radix index per volume) and the disk holds a *description*
 * of that state: a checkpoint plus a log of records since it.
 *
 * Invariants. Free space is not stored: it is every data block no layer map
 * references. A freed block is only reusable after the commit that frees it
 * is durable (pending list), so the last committed tree never points at
 * reused data. ENOMEM: each operation reserves what it needs (record bytes,
 * radix paths, pending-list slots, table slots) before changing anything,
 * so a failure leaves the state as it was and leaks nothing; the apply_*
 * functions take what was reserved and cannot fail for lack of memory when
 * called with it.
 *
 * THREAD SAFETY: see volume.h (tree rwlock -> commit mutex -> pool mutex).
 * Everything here is called with p->mu held.
 */
#include "dataplane/volume/vpool_int.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ts_common.h"

/* ------------------------------------------------------------- lookups */

struct layer *vp_layer_find(const struct ts_vpool *p, uint64_t id)
{
	size_t lo = 0, hi = p->nlayers;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->layers[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < p->nlayers && p->layers[lo]->id == id ? p->layers[lo] : NULL;
}

size_t vp_vol_pos(const struct ts_vpool *p, uint64_t id)
{
	size_t lo = 0, hi = p->nvols;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->vols[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vol *vp_vol_find(const struct ts_vpool *p, uint64_t id)
{
	size_t i = vp_vol_pos(p, id);

	return i < p->nvols && p->vols[i]->id == id ? p->vols[i] : NULL;
}

size_t vp_layer_pos(const struct ts_vpool *p, uint64_t id)
{
	size_t lo = 0, hi = p->nlayers;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (p->layers[mid]->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

uint64_t vp_resolve(const struct layer *l, uint64_t grain)
{
	for (; l; l = l->parent) {
		uint64_t v = rmap_get(&l->map, grain);
		if (v)
			return v == VP_TOMB ? 0 : v;
	}
	return 0;
}

/* ---------------------------------------------------- growable arrays */

int vp_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	n = ts_realloc(*arr, ncap * elem);
	if (!n)
		return -ENOMEM;
	*arr = n;
	*cap = ncap;
	return 0;
}

static int kids_reserve(struct layer *l, uint32_t extra)
{
	size_t cap = l->kcap;
	int rc = vp_grow((void **)&l->kids, &cap, (size_t)l->nkids + extra, sizeof(*l->kids));

	l->kcap = (uint32_t)cap;
	return rc;
}

static void kid_add(struct layer *parent, struct layer *kid)
{
	uint32_t i = parent->nkids;

	while (i > 0 && parent->kids[i - 1]->id > kid->id) {
		parent->kids[i] = parent->kids[i - 1];
		i--;
	}
	parent->kids[i] = kid;
	parent->nkids++;
}

static void kid_del(struct layer *parent, struct layer *kid)
{
	uint32_t i;

	for (i = 0; i < parent->nkids; i++)
		if (parent->kids[i] == kid) {
			memmove(&parent->kids[i], &parent->kids[i + 1],
				(parent->nkids - i - 1) * sizeof(*parent->kids));
			parent->nkids--;
			return;
		}
}

/* ------------------------------------------------------------ records */

int vp_rec_reserve(struct ts_vpool *p, size_t bytes)
{
	int rc = vp_grow((void **)&p->rec, &p->rcap, p->rlen + p->rres + bytes, 1);

	if (rc == 0)
		p->rres += bytes;
	return rc;
}

void vp_rec_unreserve(struct ts_vpool *p, size_t bytes)
{
	p->rres -= bytes;
}

/* A record whose payload is two pieces (a fixed part, then a variable one). */
void vp_rec_put_reserved2(struct ts_vpool *p, unsigned type, const void *a, size_t alen,
			  const void *b, size_t blen)
{
	uint8_t *d = p->rec + p->rlen;
	uint16_t l16 = (uint16_t)(R_HDR + alen + blen);

	p->rres -= R_HDR + alen + blen;
	if (p->replaying)
		return;
	d[0] = (uint8_t)type;
	d[1] = 0;
	memcpy(d + 2, &l16, 2);
	memcpy(d + R_HDR, a, alen);
	if (blen)
		memcpy(d + R_HDR + alen, b, blen);
	p->rlen += R_HDR + alen + blen;
}

void vp_rec_put_reserved(struct ts_vpool *p, unsigned type, const void *payload, size_t len)
{
	vp_rec_put_reserved2(p, type, payload, len, NULL, 0);
}

/* ---------------------------------------------------------- allocator */

uint64_t vp_alloc_block(struct ts_vpool *p)
{
	uint64_t words = TS_DIV_ROUND_UP(p->data_blocks, 64), w, i;

	if (!p->nfree)
		return 0;
	for (i = 0; i <= words; i++) {
		w = (p->cursor / 64 + i) % words;
		if (p->bitmap[w] != UINT64_MAX) {
			uint64_t bit = (uint64_t)__builtin_ctzll(~p->bitmap[w]);
			uint64_t b = w * 64 + bit;
			if (b >= p->data_blocks)
				continue;
			p->bitmap[w] |= 1ull << bit;
			p->nfree--;
			p->cursor = b + 1;
			return p->data_start + b;
		}
	}
	return 0;
}

int vp_bit_test_set(struct ts_vpool *p, uint64_t pba)
{
	uint64_t b = pba - p->data_start;
	int was = (int)((p->bitmap[b / 64] >> (b % 64)) & 1);

	p->bitmap[b / 64] |= 1ull << (b % 64);
	return was;
}

void vp_free_now(struct ts_vpool *p, uint64_t pba)
{
	uint64_t b = pba - p->data_start;

	p->bitmap[b / 64] &= ~(1ull << (b % 64));
	p->nfree++;
}

/*
 * Room for \p n more entries beyond those in the list and those held by
 * writes in flight (p->pres): a write holds one slot per fresh block from
 * submit to completion, where it may free the block a racing write put there.
 */
int vp_pending_reserve(struct ts_vpool *p, size_t n)
{
	return vp_grow((void **)&p->pending, &p->pcap, p->npending + p->pres + n, sizeof(*p->pending));
}

void vp_free_later(struct ts_vpool *p, uint64_t pba)
{
	if (p->replaying || pba == VP_TOMB || !pba)
		return;
	p->pending[p->npending++] = pba;
}

void vp_release_pending(struct ts_vpool *p, size_t n)
{
	size_t i;

	if (!n)
		return;
	for (i = 0; i < n; i++)
		vp_free_now(p, p->pending[i]);
	memmove(p->pending, p->pending + n, (p->npending - n) * sizeof(*p->pending));
	p->npending -= n;
}

/* ---------------------------------------------- state changes (apply) */
/*
 * Each apply_* changes the in-memory tree for one record; the runtime
 * operations build the records, reserve, then apply, so replay and runtime
 * run the same code. Applies that can fail do so before changing anything.
 */

void vp_layer_free(struct layer *l)
{
	if (!l)
		return;
	rmap_clear(&l->map);
	ts_free(l->kids);
	ts_free(l);
}

int vp_apply_layer_new(struct ts_vpool *p, const struct r_layer *r, struct layer *pre)
{
	struct layer *parent = NULL, *l;

	if (vp_layer_find(p, r->id) || (p->nlayers && p->layers[p->nlayers - 1]->id > r->id))
		return TS_ERR_CORRUPT;
	if (r->parent && !(parent = vp_layer_find(p, r->parent)))
		return TS_ERR_CORRUPT;
	if (vp_grow((void **)&p->layers, &p->lcap, p->nlayers + 1, sizeof(*p->layers)) ||
	    (parent && kids_reserve(parent, 1)))
		return -ENOMEM;
	l = pre ? pre : ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->id = r->id;
	l->parent_id = r->parent;
	l->vol_id = r->vol;
	l->size = r->size;
	l->ctime = r->ctime;
	l->flags = r->flags;
	memcpy(l->name, r->name, sizeof(l->name));
	l->name[TS_VOLUME_NAME_MAX - 1] = '\0';
	l->parent = parent;
	if (parent)
		kid_add(parent, l);
	p->layers[p->nlayers++] = l;
	if (r->id >= p->next_id)
		p->next_id = r->id + 1;
	return 0;
}

int vp_apply_layer_set(struct ts_vpool *p, const struct r_layer *r)
{
	struct layer *l = vp_layer_find(p, r->id);

	if (!l)
		return TS_ERR_CORRUPT;
	l->vol_id = r->vol;
	l->size = r->size;
	l->ctime = r->ctime;
	l->flags = r->flags;
	memcpy(l->name, r->name, sizeof(l->name));
	l->name[TS_VOLUME_NAME_MAX - 1] = '\0';
	return 0;
}

void vp_layer_unlink(struct ts_vpool *p, struct layer *l)
{
	size_t i = vp_layer_pos(p, l->id);

	memmove(&p->layers[i], &p->layers[i + 1], (p->nlayers - i - 1) * sizeof(*p->layers));
	p->nlayers--;
	if (l->parent)
		kid_del(l->parent, l);
}

/* Remove a layer with at most one child (see ts_vpool_layer_remove). */
int vp_apply_layer_remove(struct ts_vpool *p, uint64_t id)
{
	struct layer *l = vp_layer_find(p, id), *c;
	uint64_t g, v;

	if (!l || l->nkids > 1)
		return TS_ERR_CORRUPT;
	if (vp_pending_reserve(p, l->map.count))
		return -ENOMEM;
	c = l->nkids ? l->kids[0] : NULL;
	if (c) {
		/* phase 1: paths in the child for every grain that will move */
		for (g = 0; rmap_next(&l->map, g, &g, &v); g++)
			if (!rmap_get(&c->map, g) && rmap_reserve(&c->map, g))
				return -ENOMEM;
		if (l->parent && kids_reserve(l->parent, 1))
			return -ENOMEM;
	}
	/* phase 2: cannot fail */
	for (g = 0; rmap_next(&l->map, g, &g, &v); g++) {
		if (c && !rmap_get(&c->map, g))
			rmap_set(&c->map, g, v);
		else
			vp_free_later(p, v);
	}
	if (c) {
		c->parent = l->parent;
		c->parent_id = l->parent_id;
		kid_del(l, c);
		if (l->parent)
			kid_add(l->parent, c);
	}
	vp_layer_unlink(p, l);
	vp_layer_free(l);
	return 0;
}

int vp_apply_vol_new(struct ts_vpool *p, const struct r_vol *r, struct vol *pre)
{
	struct layer *h = vp_layer_find(p, r->head);
	struct vol *v;

	if (!h || vp_vol_find(p, r->id) || (p->nvols && p->vols[p->nvols - 1]->id > r->id))
		return TS_ERR_CORRUPT;
	if (vp_grow((void **)&p->vols, &p->vcap, p->nvols + 1, sizeof(*p->vols)))
		return -ENOMEM;
	v = pre ? pre : ts_calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->id = r->id;
	v->size = r->size;
	v->ctime = r->ctime;
	memcpy(v->name, r->name, sizeof(v->name));
	v->name[TS_VOLUME_NAME_MAX - 1] = '\0';
	v->head = h;
	p->vols[p->nvols++] = v;
	if (r->id >= p->next_id)
		p->next_id = r->id + 1;
	return 0;
}

int vp_apply_vol_set(struct ts_vpool *p, const struct r_vol *r)
{
	struct vol *v = vp_vol_find(p, r->id);
	struct layer *h = vp_layer_find(p, r->head);

	if (!v || !h)
		return TS_ERR_CORRUPT;
	v->head = h;
	v->size = r->size;
	return 0;
}

/* Delete a volume and its head layer (which must have no children). */
int vp_apply_vol_del(struct ts_vpool *p, uint64_t id)
{
	size_t i = vp_vol_pos(p, id);
	struct vol *v;
	int rc;

	if (i >= p->nvols || p->vols[i]->id != id || p->vols[i]->head->nkids)
		return TS_ERR_CORRUPT;
	v = p->vols[i];
	rc = vp_apply_layer_remove(p, v->head->id);
	if (rc)
		return rc;
	memmove(&p->vols[i], &p->vols[i + 1], (p->nvols - i - 1) * sizeof(*p->vols));
	p->nvols--;
	vp_vol_free(v);
	return 0;
}

/* Free a volume's in-memory state (its index and attributes), not its layers. */
void vp_vol_free(struct vol *v)
{
	uint32_t i;

	if (!v)
		return;
	rmap_clear(&v->index);
	for (i = 0; i < v->nattrs; i++)
		ts_free(v->attrs[i].val);
	ts_free(v->attrs);
	ts_free(v);
}

struct vattr *vp_attr_find(const struct vol *v, const char *name)
{
	uint32_t i;

	for (i = 0; i < v->nattrs; i++)
		if (!strncmp(v->attrs[i].name, name, TS_VOLUME_ATTR_NAME_MAX))
			return &v->attrs[i];
	return NULL;
}

/* Replace or add an attribute; fails (-ENOMEM, TS_ERR_CORRUPT) before changing anything. */
int vp_apply_attr_set(struct ts_vpool *p, const struct r_attr *r, const void *val)
{
	struct vol *v = vp_vol_find(p, r->vol);
	uint8_t *copy = NULL;
	struct vattr *a;

	if (!v || !r->name[0] || memchr(r->name, 0, sizeof(r->name)) == NULL ||
	    r->len > TS_VOLUME_ATTR_VALUE_MAX)
		return TS_ERR_CORRUPT;
	a = vp_attr_find(v, r->name);
	if (!a && v->nattrs >= TS_VOLUME_ATTRS_MAX)
		return TS_ERR_CORRUPT;
	if (r->len) {
		copy = ts_malloc(r->len);
		if (!copy)
			return -ENOMEM;
		memcpy(copy, val, r->len);
	}
	if (!a) {
		struct vattr *n = ts_realloc(v->attrs, (v->nattrs + 1) * sizeof(*n));
		if (!n) {
			ts_free(copy);
			return -ENOMEM;
		}
		v->attrs = n;
		a = &v->attrs[v->nattrs++];
		memcpy(a->name, r->name, sizeof(a->name));
		a->val = NULL;
	}
	ts_free(a->val);
	a->val = copy;
	a->len = r->len;
	return 0;
}

int vp_apply_attr_del(struct ts_vpool *p, const struct r_attr *r)
{
	struct vol *v = vp_vol_find(p, r->vol);
	struct vattr *a = v ? vp_attr_find(v, r->name) : NULL;

	if (!a)
		return TS_ERR_CORRUPT;
	ts_free(a->val);
	*a = v->attrs[--v->nattrs];
	return 0;
}

static int apply_map(struct ts_vpool *p, const struct r_map *r)
{
	struct layer *l = vp_layer_find(p, r->layer);

	if (!l)
		return TS_ERR_CORRUPT;
	if (!r->val) {
		rmap_del(&l->map, r->grain);
		return 0;
	}
	return rmap_set(&l->map, r->grain, r->val) == RMAP_ENOMEM ? -ENOMEM : 0;
}

/* Apply one record stream (checkpoint or log transaction). */
int vp_apply_stream(struct ts_vpool *p, const uint8_t *b, size_t len)
{
	size_t off = 0;
	int rc = 0;

	while (off + R_HDR <= len && rc == 0) {
		unsigned type = b[off];
		uint16_t rl;
		const uint8_t *pl = b + off + R_HDR;
		size_t plen;

		memcpy(&rl, b + off + 2, 2);
		if (rl < R_HDR || off + rl > len)
			return TS_ERR_CORRUPT;
		plen = rl - R_HDR;
		switch (type) {
		case R_IDS: {
			uint64_t n;
			if (plen != 8)
				return TS_ERR_CORRUPT;
			memcpy(&n, pl, 8);
			if (n > p->next_id)
				p->next_id = n;
			break;
		}
		case R_LAYER_NEW:
		case R_LAYER_SET: {
			struct r_layer r;
			if (plen != sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			rc = type == R_LAYER_NEW ? vp_apply_layer_new(p, &r, NULL) : vp_apply_layer_set(p, &r);
			break;
		}
		case R_LAYER_REMOVE:
		case R_VOL_DEL: {
			uint64_t id;
			if (plen != 8)
				return TS_ERR_CORRUPT;
			memcpy(&id, pl, 8);
			rc = type == R_VOL_DEL ? vp_apply_vol_del(p, id) : vp_apply_layer_remove(p, id);
			break;
		}
		case R_VOL_NEW:
		case R_VOL_SET: {
			struct r_vol r;
			if (plen != sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			rc = type == R_VOL_NEW ? vp_apply_vol_new(p, &r, NULL) : vp_apply_vol_set(p, &r);
			break;
		}
		case R_VOL_ATTR:
		case R_VOL_ATTR_DEL: {
			struct r_attr r;
			if (plen < sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			if (plen != sizeof(r) + (type == R_VOL_ATTR ? r.len : 0))
				return TS_ERR_CORRUPT;
			rc = type == R_VOL_ATTR ? vp_apply_attr_set(p, &r, pl + sizeof(r))
						: vp_apply_attr_del(p, &r);
			break;
		}
		case R_MAP: {
			struct r_map r;
			if (plen != sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			rc = apply_map(p, &r);
			break;
		}
		case R_MAP_RUN: {
			struct r_run r;
			struct r_map m;
			uint32_t i;
			if (plen < sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			if (plen != sizeof(r) + 8ull * r.n)
				return TS_ERR_CORRUPT;
			m.layer = r.layer;
			for (i = 0; i < r.n && rc == 0; i++) {
				m.grain = r.start + i;
				memcpy(&m.val, pl + sizeof(r) + 8ull * i, 8);
				rc = m.val ? apply_map(p, &m) : TS_ERR_CORRUPT;
			}
			break;
		}
		default:
			return TS_ERR_CORRUPT;
		}
		off += rl;
	}
	return rc ? rc : (off == len ? 0 : TS_ERR_CORRUPT);
}
