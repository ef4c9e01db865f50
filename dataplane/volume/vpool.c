/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volume pool: layers, volumes, the allocator and crash-safe metadata.
 *
 * Workload. Data IO is 4 KiB-grained and hot; metadata operations (create,
 * snapshot, clone, delete, merge) are rare, control-plane calls. So all
 * metadata lives in RAM in the shapes the IO path wants (a radix map per
 * layer, a merged radix index per volume) and the disk holds a *description*
 * of that state: a checkpoint plus a log of records since it.
 *
 * On disk (blocks of 4 KiB from the member's start):
 *   0, 1          superblock copies; the valid one with the highest
 *                 generation wins. Copy and checkpoint slot = gen % 2.
 *   2 ..          checkpoint slot 0, then slot 1 (slot_blocks each)
 *   log_start ..  the log (log_blocks), restarted at 0 by every checkpoint
 *   data_start .. data blocks (pba = block number from the member's start)
 * A checkpoint is a stream of records that rebuilds the whole tree (ids
 * counter, layers parent-first, their maps as runs, volumes). The log holds
 * the same record types; each commit is one transaction spanning one or more
 * log blocks, the last flagged END; a block carries the pool uuid, the
 * generation and its index, and a CRC32C, so stale or torn blocks end replay
 * and a torn transaction is dropped whole.
 *
 * Ordering (why a crash leaves a consistent tree and keeps flushed writes):
 *  - a write to a block the head does not own goes to a newly allocated
 *    block; its R_MAP record is appended when the data write completes, so a
 *    record never precedes its data; a commit captures the records, flushes
 *    the member (making that data durable), then writes the log and flushes.
 *  - a freed block is only reusable after the commit that frees it is durable
 *    (pending list), so the last committed tree never points at reused data.
 *  - a checkpoint goes to the inactive slot and is flushed before the
 *    superblock that names it is written (FUA + flush).
 *  - open replays, then checkpoints if the log held anything, so the log always
 *    restarts empty after a restart (no stale block can follow new ones).
 * Free space is not stored: it is every data block no layer map references.
 *
 * ENOMEM: each operation reserves what it needs (record bytes, radix paths,
 * pending-list slots, table slots) before changing anything, so a failure
 * leaves the state as it was and leaks nothing.
 *
 * THREAD SAFETY: see volume.h (tree rwlock -> commit mutex -> pool mutex).
 */
#include "dataplane/volume/vpool_int.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ts_common.h"

#define BS TS_VOLUME_BLOCK
#define SB_MAGIC "TSVPOOL1"
#define SB_VERSION 1u
#define LOG_MAGIC 0x474f4c56u /* "VLOG" */
#define LOG_END 0x1u
#define LOG_HDR 40u
#define LOG_PAYLOAD (BS - LOG_HDR)
#define RUN_MAX 1024u
#define LOG_CHUNK 64u

struct sb {
	char magic[8];
	uint32_t version, crc;
	uint64_t gen, total_blocks, slot_blocks, log_blocks, data_start, ckpt_len;
	uint32_t ckpt_crc, pad;
	uint8_t uuid[16];
};

struct logh {
	uint32_t magic, crc;
	uint64_t uuid_lo, gen, seq;
	uint32_t used, flags;
};

struct r_layer {
	uint64_t id, parent, vol, size, ctime;
	uint32_t flags, pad;
	char name[TS_VOLUME_NAME_MAX];
};

struct r_vol {
	uint64_t id, head, size, ctime;
	char name[TS_VOLUME_NAME_MAX];
};

struct r_run {
	uint64_t layer, start;
	uint32_t n, pad;
};

static uint32_t crc(const void *b, size_t n)
{
	return crc32_iscsi((unsigned char *)b, (int)n, 0xffffffffu);
}

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

static int mio(struct ts_vpool *p, enum ts_member_op op, uint32_t fl, uint64_t blk, uint64_t n,
	       void *buf)
{
	return ts_member_rw_sync(p->m, op, fl, blk * BS, n * BS, buf);
}

static int mflush(struct ts_vpool *p)
{
	return ts_member_rw_sync(p->m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
}

/* ------------------------------------------------------------- lookups */

static struct layer *layer_find(const struct ts_vpool *p, uint64_t id)
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

static size_t vol_pos(const struct ts_vpool *p, uint64_t id)
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

static struct vol *vol_find(const struct ts_vpool *p, uint64_t id)
{
	size_t i = vol_pos(p, id);

	return i < p->nvols && p->vols[i]->id == id ? p->vols[i] : NULL;
}

static size_t layer_pos(const struct ts_vpool *p, uint64_t id)
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

static int grow(void **arr, size_t *cap, size_t need, size_t elem)
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
	int rc = grow((void **)&l->kids, &cap, (size_t)l->nkids + extra, sizeof(*l->kids));

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
	int rc = grow((void **)&p->rec, &p->rcap, p->rlen + p->rres + bytes, 1);

	if (rc == 0)
		p->rres += bytes;
	return rc;
}

void vp_rec_unreserve(struct ts_vpool *p, size_t bytes)
{
	p->rres -= bytes;
}

void vp_rec_put_reserved(struct ts_vpool *p, unsigned type, const void *payload, size_t len)
{
	uint8_t *d = p->rec + p->rlen;
	uint16_t l16 = (uint16_t)(R_HDR + len);

	p->rres -= R_HDR + len;
	if (p->replaying)
		return;
	d[0] = (uint8_t)type;
	d[1] = 0;
	memcpy(d + 2, &l16, 2);
	memcpy(d + R_HDR, payload, len);
	p->rlen += R_HDR + len;
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

static int bit_test_set(struct ts_vpool *p, uint64_t pba)
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

int vp_pending_reserve(struct ts_vpool *p, size_t n)
{
	return grow((void **)&p->pending, &p->pcap, p->npending + n, sizeof(*p->pending));
}

void vp_free_later(struct ts_vpool *p, uint64_t pba)
{
	if (p->replaying || pba == VP_TOMB || !pba)
		return;
	p->pending[p->npending++] = pba;
}

static void release_pending(struct ts_vpool *p, size_t n)
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

static void layer_free(struct layer *l)
{
	if (!l)
		return;
	rmap_clear(&l->map);
	ts_free(l->kids);
	ts_free(l);
}

static int apply_layer_new(struct ts_vpool *p, const struct r_layer *r, struct layer *pre)
{
	struct layer *parent = NULL, *l;

	if (layer_find(p, r->id) || (p->nlayers && p->layers[p->nlayers - 1]->id > r->id))
		return TS_ERR_CORRUPT;
	if (r->parent && !(parent = layer_find(p, r->parent)))
		return TS_ERR_CORRUPT;
	if (grow((void **)&p->layers, &p->lcap, p->nlayers + 1, sizeof(*p->layers)) ||
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

static int apply_layer_set(struct ts_vpool *p, const struct r_layer *r)
{
	struct layer *l = layer_find(p, r->id);

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

static void layer_unlink(struct ts_vpool *p, struct layer *l)
{
	size_t i = layer_pos(p, l->id);

	memmove(&p->layers[i], &p->layers[i + 1], (p->nlayers - i - 1) * sizeof(*p->layers));
	p->nlayers--;
	if (l->parent)
		kid_del(l->parent, l);
}

/* Remove a layer with at most one child (see ts_vpool_layer_remove). */
static int apply_layer_remove(struct ts_vpool *p, uint64_t id)
{
	struct layer *l = layer_find(p, id), *c;
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
	layer_unlink(p, l);
	layer_free(l);
	return 0;
}

static int apply_vol_new(struct ts_vpool *p, const struct r_vol *r, struct vol *pre)
{
	struct layer *h = layer_find(p, r->head);
	struct vol *v;

	if (!h || vol_find(p, r->id) || (p->nvols && p->vols[p->nvols - 1]->id > r->id))
		return TS_ERR_CORRUPT;
	if (grow((void **)&p->vols, &p->vcap, p->nvols + 1, sizeof(*p->vols)))
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

static int apply_vol_set(struct ts_vpool *p, const struct r_vol *r)
{
	struct vol *v = vol_find(p, r->id);
	struct layer *h = layer_find(p, r->head);

	if (!v || !h)
		return TS_ERR_CORRUPT;
	v->head = h;
	v->size = r->size;
	return 0;
}

/* Delete a volume and its head layer (which must have no children). */
static int apply_vol_del(struct ts_vpool *p, uint64_t id)
{
	size_t i = vol_pos(p, id);
	struct vol *v;
	int rc;

	if (i >= p->nvols || p->vols[i]->id != id || p->vols[i]->head->nkids)
		return TS_ERR_CORRUPT;
	v = p->vols[i];
	rc = apply_layer_remove(p, v->head->id);
	if (rc)
		return rc;
	memmove(&p->vols[i], &p->vols[i + 1], (p->nvols - i - 1) * sizeof(*p->vols));
	p->nvols--;
	rmap_clear(&v->index);
	ts_free(v);
	return 0;
}

static int apply_map(struct ts_vpool *p, const struct r_map *r)
{
	struct layer *l = layer_find(p, r->layer);

	if (!l)
		return TS_ERR_CORRUPT;
	if (!r->val) {
		rmap_del(&l->map, r->grain);
		return 0;
	}
	return rmap_set(&l->map, r->grain, r->val) == RMAP_ENOMEM ? -ENOMEM : 0;
}

/* Apply one record stream (checkpoint or log transaction). */
static int apply_stream(struct ts_vpool *p, const uint8_t *b, size_t len)
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
			rc = type == R_LAYER_NEW ? apply_layer_new(p, &r, NULL) : apply_layer_set(p, &r);
			break;
		}
		case R_LAYER_REMOVE:
		case R_VOL_DEL: {
			uint64_t id;
			if (plen != 8)
				return TS_ERR_CORRUPT;
			memcpy(&id, pl, 8);
			rc = type == R_VOL_DEL ? apply_vol_del(p, id) : apply_layer_remove(p, id);
			break;
		}
		case R_VOL_NEW:
		case R_VOL_SET: {
			struct r_vol r;
			if (plen != sizeof(r))
				return TS_ERR_CORRUPT;
			memcpy(&r, pl, sizeof(r));
			rc = type == R_VOL_NEW ? apply_vol_new(p, &r, NULL) : apply_vol_set(p, &r);
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

/* -------------------------------------------------------- checkpoints */

struct sbuf {
	uint8_t *b;
	size_t len, cap;
};

static int sb_put(struct sbuf *s, unsigned type, const void *pl, size_t plen)
{
	uint16_t l16 = (uint16_t)(R_HDR + plen);

	if (grow((void **)&s->b, &s->cap, s->len + R_HDR + plen, 1))
		return -ENOMEM;
	s->b[s->len] = (uint8_t)type;
	s->b[s->len + 1] = 0;
	memcpy(s->b + s->len + 2, &l16, 2);
	memcpy(s->b + s->len + R_HDR, pl, plen);
	s->len += R_HDR + plen;
	return 0;
}

static void layer_rec(const struct layer *l, struct r_layer *r)
{
	memset(r, 0, sizeof(*r));
	r->id = l->id;
	r->parent = l->parent ? l->parent->id : 0;
	r->vol = l->vol_id;
	r->size = l->size;
	r->ctime = l->ctime;
	r->flags = l->flags;
	memcpy(r->name, l->name, sizeof(r->name));
}

static void vol_rec(const struct vol *v, struct r_vol *r)
{
	memset(r, 0, sizeof(*r));
	r->id = v->id;
	r->head = v->head->id;
	r->size = v->size;
	r->ctime = v->ctime;
	memcpy(r->name, v->name, sizeof(r->name));
}

static int serialize(struct ts_vpool *p, struct sbuf *s)
{
	uint8_t run[sizeof(struct r_run) + 8 * RUN_MAX];
	size_t i;

	if (sb_put(s, R_IDS, &p->next_id, 8))
		return -ENOMEM;
	/* parent ids are always smaller than their children's: id order is parent-first */
	for (i = 0; i < p->nlayers; i++) {
		const struct layer *l = p->layers[i];
		struct r_layer r;
		struct r_run hdr = { .layer = l->id };
		uint64_t g = 0, v;

		layer_rec(l, &r);
		if (sb_put(s, R_LAYER_NEW, &r, sizeof(r)))
			return -ENOMEM;
		while (rmap_next(&l->map, g, &g, &v)) {
			if (hdr.n && (g != hdr.start + hdr.n || hdr.n == RUN_MAX)) {
				memcpy(run, &hdr, sizeof(hdr));
				if (sb_put(s, R_MAP_RUN, run, sizeof(hdr) + 8ull * hdr.n))
					return -ENOMEM;
				hdr.n = 0;
			}
			if (!hdr.n)
				hdr.start = g;
			memcpy(run + sizeof(hdr) + 8ull * hdr.n, &v, 8);
			hdr.n++;
			g++;
		}
		if (hdr.n) {
			memcpy(run, &hdr, sizeof(hdr));
			if (sb_put(s, R_MAP_RUN, run, sizeof(hdr) + 8ull * hdr.n))
				return -ENOMEM;
		}
	}
	for (i = 0; i < p->nvols; i++) {
		struct r_vol r;
		vol_rec(p->vols[i], &r);
		if (sb_put(s, R_VOL_NEW, &r, sizeof(r)))
			return -ENOMEM;
	}
	return 0;
}

static int write_sb(struct ts_vpool *p, uint64_t gen, uint64_t ckpt_len, uint32_t ckpt_crc)
{
	uint8_t *blk = ts_aligned_alloc(BS, BS);
	struct sb s;
	int rc;

	if (!blk)
		return -ENOMEM;
	memset(blk, 0, BS);
	memset(&s, 0, sizeof(s));
	memcpy(s.magic, SB_MAGIC, 8);
	s.version = SB_VERSION;
	s.gen = gen;
	s.total_blocks = p->total_blocks;
	s.slot_blocks = p->slot_blocks;
	s.log_blocks = p->log_blocks;
	s.data_start = p->data_start;
	s.ckpt_len = ckpt_len;
	s.ckpt_crc = ckpt_crc;
	memcpy(s.uuid, p->uuid, 16);
	s.crc = crc(&s, sizeof(s));
	memcpy(blk, &s, sizeof(s));
	rc = mio(p, TS_MEMBER_WRITE, TS_MEMBER_FUA, gen % 2, 1, blk);
	if (rc == 0)
		rc = mflush(p);
	ts_free(blk);
	return rc;
}

/* Write a checkpoint of the whole state. Called with commit_mu held. */
static int checkpoint(struct ts_vpool *p)
{
	struct sbuf s = { 0 };
	size_t nfree, nblk;
	uint8_t *io = NULL;
	uint64_t gen;
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = serialize(p, &s);
	if (rc == 0) {
		p->rlen = 0; /* the checkpoint covers every record */
		p->need_ckpt = 1; /* until it is durable */
	}
	nfree = p->npending;
	pthread_mutex_unlock(&p->mu);
	if (rc)
		goto out;
	nblk = TS_DIV_ROUND_UP(s.len, BS);
	if (nblk > p->slot_blocks) {
		ts_log(TS_LOG_ERROR, "volume", "metadata full bytes=%zu slot=%llu", s.len,
		       (unsigned long long)(p->slot_blocks * BS));
		rc = TS_ERR_NO_SPACE;
		goto out;
	}
	io = ts_aligned_alloc(BS, nblk * BS);
	if (!io) {
		rc = -ENOMEM;
		goto out;
	}
	memset(io, 0, nblk * BS);
	memcpy(io, s.b, s.len);
	gen = p->gen + 1;
	rc = mflush(p); /* the data the captured maps point at */
	if (rc == 0)
		rc = mio(p, TS_MEMBER_WRITE, 0, 2 + (gen % 2) * p->slot_blocks, nblk, io);
	if (rc == 0)
		rc = mflush(p);
	if (rc == 0)
		rc = write_sb(p, gen, s.len, crc(s.b, s.len));
	if (rc)
		goto out;
	pthread_mutex_lock(&p->mu);
	p->gen = gen;
	p->log_pos = 0;
	p->need_ckpt = 0;
	p->last_ckpt_bytes = s.len;
	release_pending(p, nfree);
	pthread_mutex_unlock(&p->mu);
out:
	ts_free(io);
	ts_free(s.b);
	return rc;
}

/*
 * Commit: log the records since the last commit, or checkpoint. The log path
 * never allocates: it streams the records through the pool's fixed log buffer
 * (LOG_CHUNK blocks per member write); only the last block of the
 * transaction carries LOG_END, so a torn multi-write commit is dropped whole.
 */
int vp_commit(struct ts_vpool *p)
{
	size_t len, nfree, nblk, done;
	int rc = 0;

	pthread_mutex_lock(&p->commit_mu);
	pthread_mutex_lock(&p->mu);
	len = p->rlen;
	nfree = p->npending;
	nblk = TS_DIV_ROUND_UP(len, LOG_PAYLOAD);
	if (p->need_ckpt || p->log_pos + nblk > p->log_blocks) {
		pthread_mutex_unlock(&p->mu);
		rc = checkpoint(p);
		goto out;
	}
	if (len)
		p->need_ckpt = 1; /* until the log write is durable */
	pthread_mutex_unlock(&p->mu);
	rc = mflush(p); /* the data the captured records point at */
	for (done = 0; rc == 0 && done < nblk;) {
		size_t n = TS_MIN(LOG_CHUNK, nblk - done), i;

		memset(p->logbuf, 0, n * BS);
		pthread_mutex_lock(&p->mu); /* p->rec may move while we are outside */
		for (i = 0; i < n; i++) {
			uint64_t blk = done + i;
			struct logh h = { .magic = LOG_MAGIC, .uuid_lo = p->uuid_lo, .gen = p->gen,
					  .seq = p->log_pos + blk };
			size_t chunk = TS_MIN(LOG_PAYLOAD, len - blk * LOG_PAYLOAD);
			uint8_t *b = p->logbuf + i * BS;
			h.used = (uint32_t)chunk;
			h.flags = blk + 1 == nblk ? LOG_END : 0;
			memcpy(b + LOG_HDR, p->rec + blk * LOG_PAYLOAD, chunk);
			memcpy(b, &h, sizeof(h));
			h.crc = crc(b, BS);
			memcpy(b, &h, sizeof(h));
		}
		pthread_mutex_unlock(&p->mu);
		rc = mio(p, TS_MEMBER_WRITE, TS_MEMBER_FUA, p->log_start + p->log_pos + done, n,
			 p->logbuf);
		done += n;
	}
	if (rc == 0 && len)
		rc = mflush(p);
	pthread_mutex_lock(&p->mu);
	/* the captured records leave the buffer either way: on failure the
	 * forced checkpoint covers them */
	if (len)
		memmove(p->rec, p->rec + len, p->rlen - len);
	p->rlen -= len;
	if (rc == 0) {
		p->log_pos += nblk;
		if (len)
			p->need_ckpt = 0;
		release_pending(p, nfree);
	}
	pthread_mutex_unlock(&p->mu);
out:
	pthread_mutex_unlock(&p->commit_mu);
	return rc;
}

int ts_vpool_commit(struct ts_vpool *p)
{
	return p ? vp_commit(p) : -EINVAL;
}

/* ------------------------------------------------------- format, open */

static void geometry(struct ts_vpool *p, uint64_t total)
{
	p->total_blocks = total;
	p->slot_blocks = TS_MAX(64, total / 96);
	p->log_blocks = TS_MAX(64, total / 256);
	p->log_start = 2 + 2 * p->slot_blocks;
	p->data_start = p->log_start + p->log_blocks;
	p->data_blocks = total - p->data_start;
}

static struct ts_vpool *pool_new(struct ts_member *m)
{
	struct ts_vpool *p = ts_calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->m = m;
	p->next_id = 1;
	p->logbuf = ts_aligned_alloc(BS, LOG_CHUNK * BS);
	if (!p->logbuf) {
		ts_free(p);
		return NULL;
	}
	pthread_rwlock_init(&p->tree, NULL);
	pthread_mutex_init(&p->commit_mu, NULL);
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cond, NULL);
	return p;
}

static void pool_free(struct ts_vpool *p)
{
	size_t i;

	for (i = 0; i < p->nvols; i++) {
		rmap_clear(&p->vols[i]->index);
		ts_free(p->vols[i]);
	}
	for (i = 0; i < p->nlayers; i++)
		layer_free(p->layers[i]);
	ts_free(p->vols);
	ts_free(p->layers);
	ts_free(p->bitmap);
	ts_free(p->pending);
	ts_free(p->rec);
	ts_free(p->logbuf);
	pthread_rwlock_destroy(&p->tree);
	pthread_mutex_destroy(&p->commit_mu);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cond);
	ts_free(p);
}

static int check_member(struct ts_member *m, uint64_t *total)
{
	const struct ts_member_info *mi;

	if (!m)
		return -EINVAL;
	mi = ts_member_info(m);
	if (mi->block_size > BS || BS % mi->block_size)
		return -EINVAL;
	*total = mi->size / BS;
	return *total < 1024 ? TS_ERR_TOO_SMALL : 0;
}

int ts_vpool_format(struct ts_member *m)
{
	struct ts_vpool *p;
	uint64_t total;
	uint8_t *zero = NULL;
	int rc = check_member(m, &total);

	if (rc)
		return rc;
	p = pool_new(m);
	if (!p)
		return -ENOMEM;
	geometry(p, total);
	rc = ts_uuid_generate(p->uuid);
	if (rc)
		goto out;
	memcpy(&p->uuid_lo, p->uuid, 8);
	zero = ts_aligned_alloc(BS, BS);
	if (!zero) {
		rc = -ENOMEM;
		goto out;
	}
	memset(zero, 0, BS);
	/* invalidate both superblocks, then checkpoint gen 1 */
	rc = mio(p, TS_MEMBER_WRITE, 0, 0, 1, zero);
	if (rc == 0)
		rc = mio(p, TS_MEMBER_WRITE, 0, 1, 1, zero);
	if (rc == 0)
		rc = mflush(p);
	if (rc == 0) {
		p->gen = 0;
		pthread_mutex_lock(&p->commit_mu);
		rc = checkpoint(p);
		pthread_mutex_unlock(&p->commit_mu);
	}
out:
	ts_free(zero);
	pool_free(p);
	return rc;
}

static int read_sb(struct ts_vpool *p, struct sb *out)
{
	uint8_t *blk = ts_aligned_alloc(BS, BS);
	struct sb s[2];
	int ok[2] = { 0, 0 }, any_magic = 0, i, rc = 0;

	if (!blk)
		return -ENOMEM;
	for (i = 0; i < 2; i++) {
		uint32_t c;
		rc = mio(p, TS_MEMBER_READ, 0, (uint64_t)i, 1, blk);
		if (rc)
			goto out;
		memcpy(&s[i], blk, sizeof(s[i]));
		if (memcmp(s[i].magic, SB_MAGIC, 8))
			continue;
		any_magic = 1;
		c = s[i].crc;
		s[i].crc = 0;
		ok[i] = crc(&s[i], sizeof(s[i])) == c;
	}
	if (!ok[0] && !ok[1]) {
		rc = any_magic ? TS_ERR_CORRUPT : TS_ERR_FOREIGN;
		goto out;
	}
	i = ok[0] && (!ok[1] || s[0].gen > s[1].gen) ? 0 : 1;
	*out = s[i];
	rc = out->version == SB_VERSION ? 0 : TS_ERR_VERSION;
out:
	ts_free(blk);
	return rc;
}

/* Rebuild a volume's merged index from its head's chain. */
static int build_index(const struct layer *top, struct rmap *out)
{
	const struct layer *chain[64], **c = chain, *l;
	size_t n = 0, depth = 0, i;
	int rc = 0;

	for (l = top; l; l = l->parent)
		depth++;
	if (depth > TS_ARRAY_SIZE(chain)) {
		c = ts_malloc(depth * sizeof(*c));
		if (!c)
			return -ENOMEM;
	}
	for (l = top; l; l = l->parent)
		c[n++] = l;
	for (i = n; i-- > 0 && rc == 0;) {
		uint64_t g = 0, v;
		while (rc == 0 && rmap_next(&c[i]->map, g, &g, &v)) {
			if (v == VP_TOMB)
				rmap_del(out, g);
			else if (rmap_set(out, g, v) == RMAP_ENOMEM)
				rc = -ENOMEM;
			g++;
		}
	}
	if (c != chain)
		ts_free((void *)c);
	if (rc)
		rmap_clear(out);
	return rc;
}

static int rebuild(struct ts_vpool *p)
{
	size_t i;
	int rc;

	p->bitmap = ts_calloc(TS_DIV_ROUND_UP(p->data_blocks, 64), 8);
	if (!p->bitmap)
		return -ENOMEM;
	p->nfree = p->data_blocks;
	for (i = 0; i < p->nlayers; i++) {
		struct layer *l = p->layers[i];
		uint64_t g = 0, v;
		while (rmap_next(&l->map, g, &g, &v)) {
			if (v != VP_TOMB) {
				if (v < p->data_start || v >= p->total_blocks || bit_test_set(p, v))
					return TS_ERR_CORRUPT;
				p->nfree--;
			}
			g++;
		}
		if ((l->flags & TS_LAYER_HEAD) && !vol_find(p, l->vol_id))
			return TS_ERR_CORRUPT;
	}
	for (i = 0; i < p->nvols; i++) {
		struct vol *v = p->vols[i];
		if (!(v->head->flags & TS_LAYER_HEAD) || v->head->nkids)
			return TS_ERR_CORRUPT;
		rc = build_index(v->head, &v->index);
		if (rc)
			return rc;
	}
	return 0;
}

static int replay_log(struct ts_vpool *p, int *applied)
{
	const uint64_t chunk = 64;
	uint8_t *io = ts_aligned_alloc(BS, chunk * BS);
	struct sbuf txn = { 0 };
	uint64_t i, base;
	int rc = 0, stop = 0;

	*applied = 0;
	if (!io)
		return -ENOMEM;
	for (base = 0; base < p->log_blocks && !stop && rc == 0; base += chunk) {
		uint64_t n = TS_MIN(chunk, p->log_blocks - base);
		rc = mio(p, TS_MEMBER_READ, 0, p->log_start + base, n, io);
		for (i = 0; i < n && !stop && rc == 0; i++) {
			uint8_t *b = io + i * BS;
			struct logh h;
			uint32_t c;
			memcpy(&h, b, sizeof(h));
			c = h.crc;
			h.crc = 0;
			memcpy(b, &h, sizeof(h));
			if (h.magic != LOG_MAGIC || h.uuid_lo != p->uuid_lo || h.gen != p->gen ||
			    h.seq != base + i || h.used > LOG_PAYLOAD || crc(b, BS) != c) {
				stop = 1;
				break;
			}
			if (grow((void **)&txn.b, &txn.cap, txn.len + h.used, 1)) {
				rc = -ENOMEM;
				break;
			}
			memcpy(txn.b + txn.len, b + LOG_HDR, h.used);
			txn.len += h.used;
			if (h.flags & LOG_END) {
				rc = apply_stream(p, txn.b, txn.len);
				txn.len = 0;
				*applied = 1;
			}
		}
	}
	ts_free(txn.b);
	ts_free(io);
	return rc;
}

int ts_vpool_open(struct ts_member *m, struct ts_vpool **out)
{
	struct ts_vpool *p;
	struct sb s;
	uint64_t total, nblk;
	uint8_t *ck = NULL;
	int rc = check_member(m, &total), applied = 0;

	if (rc)
		return rc;
	if (!out)
		return -EINVAL;
	p = pool_new(m);
	if (!p)
		return -ENOMEM;
	rc = read_sb(p, &s);
	if (rc)
		goto fail;
	geometry(p, s.total_blocks);
	if (s.total_blocks > total || s.slot_blocks != p->slot_blocks ||
	    s.log_blocks != p->log_blocks || s.data_start != p->data_start ||
	    s.ckpt_len > s.slot_blocks * BS) {
		rc = TS_ERR_GEOMETRY;
		goto fail;
	}
	memcpy(p->uuid, s.uuid, 16);
	memcpy(&p->uuid_lo, s.uuid, 8);
	p->gen = s.gen;
	p->last_ckpt_bytes = s.ckpt_len;
	nblk = TS_DIV_ROUND_UP(s.ckpt_len, BS);
	ck = ts_aligned_alloc(BS, TS_MAX(nblk, 1) * BS);
	if (!ck) {
		rc = -ENOMEM;
		goto fail;
	}
	p->replaying = 1;
	rc = mio(p, TS_MEMBER_READ, 0, 2 + (s.gen % 2) * p->slot_blocks, nblk, ck);
	if (rc == 0 && crc(ck, s.ckpt_len) != s.ckpt_crc)
		rc = TS_ERR_CORRUPT;
	if (rc == 0)
		rc = apply_stream(p, ck, s.ckpt_len);
	if (rc == 0)
		rc = replay_log(p, &applied);
	p->replaying = 0;
	if (rc == 0)
		rc = rebuild(p);
	if (rc)
		goto fail;
	if (applied) {
		pthread_mutex_lock(&p->commit_mu);
		rc = checkpoint(p);
		pthread_mutex_unlock(&p->commit_mu);
		if (rc)
			goto fail;
	}
	ts_free(ck);
	*out = p;
	return 0;
fail:
	ts_log(TS_LOG_WARN, "volume", "open failed err=\"%s\"", ts_strerror(rc));
	ts_free(ck);
	pool_free(p);
	return rc;
}

void ts_vpool_close(struct ts_vpool *p)
{
	int rc;

	if (!p)
		return;
	rc = vp_commit(p);
	if (rc)
		ts_log(TS_LOG_WARN, "volume", "final commit failed err=\"%s\"", ts_strerror(rc));
	pool_free(p);
}

void ts_vpool_stats(struct ts_vpool *p, struct ts_vpool_stats *o)
{
	pthread_mutex_lock(&p->mu);
	memset(o, 0, sizeof(*o));
	o->data_blocks = p->data_blocks;
	o->free_blocks = p->nfree;
	o->pending_free = p->npending;
	o->volumes = p->nvols;
	o->layers = p->nlayers;
	o->generation = p->gen;
	o->meta_slot_bytes = p->slot_blocks * BS;
	o->meta_last_bytes = p->last_ckpt_bytes;
	o->log_blocks = p->log_blocks;
	o->log_used = p->log_pos;
	o->dirty_bytes = p->rlen;
	pthread_mutex_unlock(&p->mu);
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

static struct vdefer *unquiesce(struct vol *v)
{
	struct vdefer *d = v->defer;

	v->quiesce--;
	v->defer = v->defer_last = NULL;
	return d;
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
		parent = layer_find(p, parent_layer);
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
	if (parent && build_index(parent, &v->index)) {
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
	rc = apply_layer_new(p, &rl, h);
	if (rc) {
		rmap_clear(&v->index);
		vp_rec_unreserve(p, 2 * R_HDR + sizeof(rl) + sizeof(rv));
		goto out;
	}
	h = NULL;
	rc = apply_vol_new(p, &rv, v);
	if (rc) {
		/* undo the layer: it is the last one, with no entries */
		struct layer *l = p->layers[p->nlayers - 1];
		layer_unlink(p, l);
		layer_free(l);
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
	v = vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	if (v->refs) {
		rc = -EBUSY;
		goto out;
	}
	rc = vp_rec_reserve(p, R_HDR + 8);
	if (rc)
		goto out;
	rc = apply_vol_del(p, vol_id);
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
	v = vol_find(p, vol_id);
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
	vol_rec(v, &rv);
	rv.size = new_size;
	apply_vol_set(p, &rv);
	layer_rec(v->head, &rl);
	rl.size = new_size;
	apply_layer_set(p, &rl);
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
	v = vol_find(p, vol_id);
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
	for (i = vol_pos(p, start); i < p->nvols && n < max; i++)
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
			   (parent && build_index(parent, &idx)))) {
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
	rc = apply_layer_new(p, &rn, h);
	if (rc)
		goto fail;
	layer_rec(old, &rs);
	rs.flags &= ~TS_LAYER_HEAD;
	rs.flags |= snap_flags & TS_LAYER_HIDDEN;
	if (snap_name) {
		rs.ctime = rn.ctime;
		copy_name(rs.name, snap_name);
	}
	apply_layer_set(p, &rs);
	vol_rec(v, &rv);
	rv.head = rn.id;
	rv.size = rn.size;
	apply_vol_set(p, &rv);
	vp_rec_put_reserved(p, R_LAYER_NEW, &rn, sizeof(rn));
	vp_rec_put_reserved(p, R_LAYER_SET, &rs, sizeof(rs));
	vp_rec_put_reserved(p, R_VOL_SET, &rv, sizeof(rv));
	if (snap_id)
		*snap_id = old->id;
	if (!snap_name) {
		/* rebase: the old head goes (it has no children) with its blocks */
		uint64_t oid = old->id;
		apply_layer_remove(p, oid); /* cannot fail: no child, pending reserved */
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
	struct vdefer *held = NULL;
	struct vol *v;
	int rc;

	if (!p || !layer_id)
		return -EINVAL;
	meta_begin(p);
	v = vol_find(p, vol_id);
	if (!v) {
		rc = -ENOENT;
		goto out;
	}
	quiesce(p, v);
	rc = new_head(p, v, v->head, name ? name : "", flags, layer_id);
	held = unquiesce(v);
out:
	rc = meta_done(p, rc);
	vio_resubmit(held);
	return rc;
}

int ts_vpool_volume_rebase(struct ts_vpool *p, uint64_t vol_id, uint64_t layer_id)
{
	struct vdefer *held = NULL;
	struct layer *l;
	struct vol *v;
	int rc;

	if (!p)
		return -EINVAL;
	meta_begin(p);
	v = vol_find(p, vol_id);
	l = layer_find(p, layer_id);
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
	held = unquiesce(v);
out:
	rc = meta_done(p, rc);
	vio_resubmit(held);
	return rc;
}

int ts_vpool_layer_info(struct ts_vpool *p, uint64_t id, struct ts_vpool_layer_info *o)
{
	struct layer *l;

	if (!p || !o)
		return -EINVAL;
	pthread_mutex_lock(&p->mu);
	l = layer_find(p, id);
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
	for (i = layer_pos(p, start); i < p->nlayers && n < max; i++)
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
	l = layer_find(p, id);
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
	l = layer_find(p, id);
	rc = !l ? -ENOENT : (l->flags & TS_LAYER_HEAD) ? -EINVAL : vp_rec_reserve(p, R_HDR + sizeof(r));
	if (rc == 0) {
		layer_rec(l, &r);
		r.flags = hidden ? (r.flags | TS_LAYER_HIDDEN) : (r.flags & ~TS_LAYER_HIDDEN);
		apply_layer_set(p, &r);
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
	l = layer_find(p, id);
	rc = !l ? -ENOENT : (l->flags & TS_LAYER_HEAD) ? -EINVAL : l->nkids > 1 ? -EBUSY : 0;
	if (rc == 0)
		rc = vp_rec_reserve(p, R_HDR + 8);
	if (rc == 0) {
		rc = apply_layer_remove(p, id);
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
	l = layer_find(p, id);
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
	l = layer_find(p, id);
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
