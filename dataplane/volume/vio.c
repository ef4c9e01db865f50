/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volume IO: the hot path.
 *
 * A read looks every grain up in the volume's merged index (one radix lookup,
 * independent of how many layers lie below), zero-fills holes and reads the
 * rest from the member, one member IO per run of physically contiguous
 * blocks. A write goes in place where the head owns the block; elsewhere it
 * allocates a fresh block, writes it, and only when the data write has
 * completed installs the mapping (head map + index) and appends an R_MAP
 * record, so readers never see a block before its data and the log never
 * names a block before its data (see vpool_log.c). Everything a completion needs
 * (record bytes, radix paths, a pending-list slot) is reserved at submit, so a
 * completion cannot fail. The pool mutex is held only to look up, allocate and
 * install, never across ts_member_submit().
 */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/vpool_int.h"

struct vgrain {
	uint64_t grain, pba;
	int fresh;
};

struct vchild {
	struct ts_member_io io;
	struct vreq *req;
};

struct vreq {
	struct ts_volume *v;
	struct layer *head; /* writes: the head at submit (stable while inflight) */
	ts_volume_cb cb;
	void *arg;
	atomic_int remaining;
	atomic_int status;
	int write;
	size_t ng, nc;
	struct vgrain *g;
	struct vchild *c;
};

static void req_free(struct vreq *r)
{
	ts_free(r->g);
	ts_free(r->c);
	ts_free(r);
}

static struct vreq *req_new(struct ts_volume *v, size_t ng, ts_volume_cb cb, void *arg)
{
	struct vreq *r = ts_calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->g = ts_calloc(ng, sizeof(*r->g));
	r->c = ts_calloc(ng, sizeof(*r->c));
	if (!r->g || !r->c) {
		req_free(r);
		return NULL;
	}
	r->v = v;
	r->cb = cb;
	r->arg = arg;
	r->ng = ng;
	return r;
}

/*
 * Quiesce queue. While a volume is quiesced (a snapshot or restore waits for
 * its in-flight IO, or a ts_vpool_volume_hold() is in place) reads, writes and
 * unmaps are appended to v->defer instead of being admitted; they are never
 * blocked, since the submitter may be a completion callback whose thread other
 * completions need. When the last quiesce ends, the thread that ended it
 * drains the queue (vio_drain) in submit order; new IOs arriving while it
 * drains queue behind it (v->draining), so an IO never overtakes one submitted
 * before it. If the volume is quiesced again mid-drain, the IO being
 * resubmitted goes back to the front of the queue and the drain stops; the
 * next unquiesce resumes it.
 */

/* Queue a new IO at the tail (p->mu held). */
static int defer_io(struct ts_volume *h, int op, uint64_t off, uint64_t len, const void *buf,
		    ts_volume_cb cb, void *arg)
{
	struct vdefer *d = ts_calloc(1, sizeof(*d));
	struct vol *v = h->vol;

	if (!d)
		return -ENOMEM;
	d->h = h;
	d->op = op;
	d->off = off;
	d->len = len;
	d->buf = (void *)(uintptr_t)buf;
	d->cb = cb;
	d->arg = arg;
	if (v->defer_last)
		v->defer_last->next = d;
	else
		v->defer = d;
	v->defer_last = d;
	return 0;
}

/*
 * Admission (p->mu held, range already checked). \p from is the queued entry
 * when the drain resubmits it, else NULL. Returns 0: go on; 1: queued (a new
 * IO at the tail, a resubmitted one back at the front); or -ENOMEM.
 */
static int admit(struct ts_volume *h, int op, uint64_t off, uint64_t len, const void *buf,
		 ts_volume_cb cb, void *arg, struct vdefer *from)
{
	struct vol *v = h->vol;
	int rc;

	if (from) {
		if (!v->quiesce)
			return 0;
		from->next = v->defer;
		v->defer = from;
		if (!v->defer_last)
			v->defer_last = from;
		return 1;
	}
	if (!v->quiesce && !v->draining)
		return 0;
	rc = defer_io(h, op, off, len, buf, cb, arg);
	return rc ? rc : 1;
}

static int vio_read(struct ts_volume *h, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		    void *arg, struct vdefer *from);
static int vio_write(struct ts_volume *h, uint64_t off, uint64_t len, const void *buf,
		     ts_volume_cb cb, void *arg, struct vdefer *from);
static int vio_unmap(struct ts_volume *h, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg,
		     struct vdefer *from);

void vio_drain(struct ts_vpool *p, struct vol *v)
{
	for (;;) {
		struct vdefer *d;
		int rc;

		pthread_mutex_lock(&p->mu);
		d = v->defer;
		if (!d || v->quiesce) {
			v->draining = 0;
			pthread_mutex_unlock(&p->mu);
			return;
		}
		v->defer = d->next;
		if (!v->defer)
			v->defer_last = NULL;
		d->next = NULL;
		pthread_mutex_unlock(&p->mu);
		switch (d->op) {
		case VD_WRITE:
			rc = vio_write(d->h, d->off, d->len, d->buf, d->cb, d->arg, d);
			break;
		case VD_UNMAP:
			rc = vio_unmap(d->h, d->off, d->len, d->cb, d->arg, d);
			break;
		default:
			rc = vio_read(d->h, d->off, d->len, d->buf, d->cb, d->arg, d);
			break;
		}
		if (rc == 1)
			continue; /* quiesced again: back at the front, the next pass stops */
		if (rc)
			d->cb(d->arg, rc); /* we returned 0 for it: the callback must fire */
		ts_free(d);
	}
}

static int range_ok(struct vol *v, uint64_t off, uint64_t len)
{
	return len && off % BS == 0 && len % BS == 0 && off <= v->size && len <= v->size - off;
}

/* Build children: one member IO per run of contiguous grains on contiguous blocks. */
static void build_children(struct vreq *r, enum ts_member_op op, uint8_t *buf)
{
	size_t i;
	struct vchild *c = NULL;

	for (i = 0; i < r->ng; i++) {
		struct vgrain *g = &r->g[i];
		if (!g->pba)
			continue;
		if (c && i > 0 && r->g[i - 1].pba && r->g[i - 1].pba + 1 == g->pba &&
		    c->io.len < (1u << 20)) {
			c->io.len += BS;
			continue;
		}
		c = &r->c[r->nc++];
		c->req = r;
		c->io.op = op;
		c->io.offset = g->pba * BS;
		c->io.len = BS;
		c->io.buf = buf + i * BS;
	}
}

static void write_finish(struct vreq *r)
{
	struct ts_vpool *p = r->v->pool;
	struct vol *v = r->v->vol;
	int st = atomic_load(&r->status);
	size_t i;

	pthread_mutex_lock(&p->mu);
	for (i = 0; i < r->ng; i++) {
		struct vgrain *g = &r->g[i];
		if (!g->fresh)
			continue;
		p->pres--; /* the slot held since submit: vp_free_later below may use it */
		if (st == 0) {
			struct r_map m = { r->head->id, g->grain, g->pba };
			uint64_t old = rmap_set(&r->head->map, g->grain, g->pba);
			/* a racing write to the same grain installed its own block */
			if (old && old != VP_TOMB && old != g->pba)
				vp_free_later(p, old);
			rmap_set(&v->index, g->grain, g->pba);
			vp_rec_put_reserved(p, R_MAP, &m, sizeof(m));
		} else {
			vp_free_now(p, g->pba);
			vp_rec_unreserve(p, R_MAP_SIZE);
		}
	}
	if (--v->inflight == 0 && v->quiesce)
		pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->mu);
}

static void child_done(struct ts_member_io *io, int status)
{
	struct vchild *c = io->cb_arg;
	struct vreq *r = c->req;
	int zero = 0;

	if (status)
		atomic_compare_exchange_strong(&r->status, &zero, status);
	if (atomic_fetch_sub(&r->remaining, 1) != 1)
		return;
	if (r->write) {
		write_finish(r);
	} else {
		struct ts_vpool *p = r->v->pool;
		pthread_mutex_lock(&p->mu);
		if (--r->v->vol->inflight == 0 && r->v->vol->quiesce)
			pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->mu);
	}
	r->cb(r->arg, atomic_load(&r->status));
	req_free(r);
}

static void submit_children(struct vreq *r)
{
	size_t i, n = r->nc;

	atomic_store(&r->remaining, (int)n);
	for (i = 0; i < n; i++) {
		struct vchild *c = &r->c[i];
		int rc;
		c->io.cb = child_done;
		c->io.cb_arg = c;
		rc = ts_member_submit(r->v->pool->m, &c->io);
		if (rc)
			child_done(&c->io, rc);
	}
}

static int vio_read(struct ts_volume *h, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		    void *arg, struct vdefer *from)
{
	struct ts_vpool *p = h->pool;
	struct vreq *r;
	size_t i;
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = range_ok(h->vol, off, len) ? admit(h, VD_READ, off, len, buf, cb, arg, from) : -EINVAL;
	if (rc) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	r = req_new(h, len / BS, cb, arg);
	if (!r) {
		pthread_mutex_unlock(&p->mu);
		return -ENOMEM;
	}
	for (i = 0; i < r->ng; i++) {
		r->g[i].grain = off / BS + i;
		r->g[i].pba = rmap_get(&h->vol->index, r->g[i].grain);
	}
	build_children(r, TS_MEMBER_READ, buf);
	/* in flight until the member reads complete: a restore or snapshot
	 * waits, so blocks it frees are not reused under a running read */
	if (r->nc)
		h->vol->inflight++;
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < r->ng; i++)
		if (!r->g[i].pba)
			memset((uint8_t *)buf + i * BS, 0, BS);
	if (!r->nc) {
		req_free(r);
		cb(arg, 0);
		return 0;
	}
	submit_children(r);
	return 0;
}

static int vio_write(struct ts_volume *h, uint64_t off, uint64_t len, const void *buf,
		     ts_volume_cb cb, void *arg, struct vdefer *from)
{
	struct ts_vpool *p = h->pool;
	struct vol *v = h->vol;
	struct vreq *r;
	size_t i;
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = range_ok(v, off, len) ? admit(h, VD_WRITE, off, len, buf, cb, arg, from) : -EINVAL;
	if (rc)
		goto unlock;
	r = req_new(h, len / BS, cb, arg);
	if (!r) {
		rc = -ENOMEM;
		goto unlock;
	}
	r->write = 1;
	r->head = v->head;
	for (i = 0; i < r->ng && rc == 0; i++) {
		struct vgrain *g = &r->g[i];
		uint64_t cur;
		g->grain = off / BS + i;
		cur = rmap_get(&v->index, g->grain);
		if (cur && rmap_get(&v->head->map, g->grain) == cur) {
			g->pba = cur; /* the head owns it: in place */
			continue;
		}
		if (rmap_reserve(&v->head->map, g->grain) || rmap_reserve(&v->index, g->grain) ||
		    vp_pending_reserve(p, 1) || vp_rec_reserve(p, R_MAP_SIZE)) {
			rc = -ENOMEM;
			break;
		}
		g->pba = vp_alloc_block(p);
		if (!g->pba) {
			vp_rec_unreserve(p, R_MAP_SIZE);
			rc = TS_ERR_NO_SPACE;
			break;
		}
		g->fresh = 1;
		p->pres++; /* its slot in the pending list, until write_finish */
	}
	if (rc) {
		for (i = 0; i < r->ng; i++)
			if (r->g[i].fresh) {
				p->pres--;
				vp_free_now(p, r->g[i].pba);
				vp_rec_unreserve(p, R_MAP_SIZE);
			}
		req_free(r);
		goto unlock;
	}
	v->inflight++;
	pthread_mutex_unlock(&p->mu);
	build_children(r, TS_MEMBER_WRITE, (uint8_t *)(uintptr_t)buf);
	submit_children(r);
	return 0;
unlock:
	pthread_mutex_unlock(&p->mu);
	return rc;
}

static int vio_unmap(struct ts_volume *h, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg,
		     struct vdefer *from)
{
	struct ts_vpool *p = h->pool;
	struct vol *v = h->vol;
	uint64_t g;
	int rc;

	pthread_mutex_lock(&p->mu);
	/* queued like reads and writes: an unmap must not change the head under
	 * a snapshot or hold, nor overtake a write queued before it */
	rc = range_ok(v, off, len) ? admit(h, VD_UNMAP, off, len, NULL, cb, arg, from) : -EINVAL;
	if (rc) {
		pthread_mutex_unlock(&p->mu);
		return rc;
	}
	/* grain by grain: an -ENOMEM part way leaves the grains before it discarded */
	for (g = off / BS; g < (off + len) / BS && rc == 0; g++) {
		uint64_t cur = rmap_get(&v->index, g);
		struct r_map m = { v->head->id, g, 0 };
		if (!cur)
			continue;
		if (rmap_reserve(&v->head->map, g) || vp_pending_reserve(p, 1) ||
		    vp_rec_reserve(p, R_MAP_SIZE)) {
			rc = -ENOMEM;
			break;
		}
		if (rmap_get(&v->head->map, g) == cur)
			vp_free_later(p, cur);
		if (v->head->parent && vp_resolve(v->head->parent, g)) {
			m.val = VP_TOMB;
			rmap_set(&v->head->map, g, VP_TOMB);
		} else {
			rmap_del(&v->head->map, g);
		}
		rmap_del(&v->index, g);
		vp_rec_put_reserved(p, R_MAP, &m, sizeof(m));
	}
	pthread_mutex_unlock(&p->mu);
	if (rc)
		return rc;
	cb(arg, 0);
	return 0;
}

int ts_volume_read(struct ts_volume *h, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		   void *arg)
{
	int rc;

	if (!h || !buf || !cb)
		return -EINVAL;
	rc = vio_read(h, off, len, buf, cb, arg, NULL);
	return rc == 1 ? 0 : rc;
}

int ts_volume_write(struct ts_volume *h, uint64_t off, uint64_t len, const void *buf,
		    ts_volume_cb cb, void *arg)
{
	int rc;

	if (!h || !buf || !cb)
		return -EINVAL;
	rc = vio_write(h, off, len, buf, cb, arg, NULL);
	return rc == 1 ? 0 : rc;
}

int ts_volume_unmap(struct ts_volume *h, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg)
{
	int rc;

	if (!h || !cb)
		return -EINVAL;
	rc = vio_unmap(h, off, len, cb, arg, NULL);
	return rc == 1 ? 0 : rc;
}

/* Not queued while quiesced: it commits what has completed, which a hold or
 * snapshot does not change. */
int ts_volume_flush(struct ts_volume *h, ts_volume_cb cb, void *arg)
{
	if (!h || !cb)
		return -EINVAL;
	cb(arg, vp_commit(h->pool));
	return 0;
}

int ts_volume_open(struct ts_vpool *p, uint64_t vol_id, struct ts_volume **out)
{
	struct ts_volume *h;
	size_t i;
	int rc = -ENOENT;

	if (!p || !out)
		return -EINVAL;
	h = ts_calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	pthread_mutex_lock(&p->mu);
	for (i = 0; i < p->nvols; i++)
		if (p->vols[i]->id == vol_id) {
			h->pool = p;
			h->vol = p->vols[i];
			h->vol->refs++;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&p->mu);
	if (rc) {
		ts_free(h);
		return rc;
	}
	*out = h;
	return 0;
}

void ts_volume_close(struct ts_volume *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->pool->mu);
	h->vol->refs--;
	pthread_mutex_unlock(&h->pool->mu);
	ts_free(h);
}

uint64_t ts_volume_size(struct ts_volume *h)
{
	uint64_t s;

	pthread_mutex_lock(&h->pool->mu);
	s = h->vol->size;
	pthread_mutex_unlock(&h->pool->mu);
	return s;
}

/* ------------------------------------------------------------- sync */

int ts_volume_read_sync(struct ts_volume *h, uint64_t off, uint64_t len, void *buf)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;

	return ts_member_wait(&w, ts_volume_read(h, off, len, buf, ts_member_wake, &w));
}

int ts_volume_write_sync(struct ts_volume *h, uint64_t off, uint64_t len, const void *buf)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;

	return ts_member_wait(&w, ts_volume_write(h, off, len, buf, ts_member_wake, &w));
}

int ts_volume_unmap_sync(struct ts_volume *h, uint64_t off, uint64_t len)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;

	return ts_member_wait(&w, ts_volume_unmap(h, off, len, ts_member_wake, &w));
}

int ts_volume_flush_sync(struct ts_volume *h)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;

	return ts_member_wait(&w, ts_volume_flush(h, ts_member_wake, &w));
}
