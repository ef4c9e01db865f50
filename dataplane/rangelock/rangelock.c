/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Range locks.
 *
 * Workload. Every IO of a volume (from every session and node that reaches
 * the volume's engine), every stripe update of an array group and every
 * COMPARE AND WRITE takes a range lock for as long as it is in flight:
 * tens to thousands of short holds per second per lock, almost all on
 * ranges that overlap nothing. So the common case must be one mutex, one
 * tree descent that finds no overlap and one insertion; the rare overlap
 * queues without allocation and is woken by the holder's unlock.
 *
 * Structure. One red-black tree per lock holds every request, held and
 * waiting, ordered by (start, seq) and augmented with the maximum end in
 * each subtree, so "which requests overlap [s, e)?" costs O(log n + k).
 * A request's fate is decided by the tree alone:
 *
 *   grantable(r)  <=>  no request q in the tree overlaps r and conflicts
 *                      with it (either is EXCL) while q is held or q is
 *                      waiting and arrived earlier (q.seq < r.seq).
 *
 * That rule is FIFO among overlapping requests: a request that arrives
 * after a waiting conflicting one waits behind it even if the holders would
 * let it in, so a stream of readers cannot starve a writer. Requests that
 * overlap nothing never look at each other.
 *
 * Waking. Only the removal of a request (unlock, or cancel of a waiter) can
 * make another grantable, and only one that overlaps the removed range.
 * Granting a waiter never makes another one grantable (a held request
 * blocks exactly what it blocked while it waited earlier), so the waiters
 * overlapping the removed range can be checked in any order, each against
 * the tree as it stands. The granted ones are marked held under the mutex
 * and their callbacks run after it is dropped, in the order found.
 *
 * THREAD SAFETY: rl->mu guards the tree, the counters and every field of
 * every request in the tree. No other lock is taken while it is held, and no
 * callback runs under it. A blocking waiter sleeps on a condition variable
 * that lives on its own stack and is signalled under rl->mu, so the waiter
 * cannot return (and free it) before the signal is done.
 */
#include "dataplane/rangelock/rangelock.h"

#include "dataplane/common/ts_common.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>

enum { RL_IDLE = 0, RL_WAITING = 1, RL_HELD = 2 };
enum { RL_RED = 0, RL_BLACK = 1 };

struct ts_rl {
	pthread_mutex_t mu;
	struct ts_rl_req *root;
	uint64_t next_seq;
	struct ts_rl_stats st;
};

/* A blocking waiter's wake-up. */
struct rl_waiter {
	pthread_cond_t cond;
};

/* ---- the augmented red-black tree ---- */

static bool rl_before(const struct ts_rl_req *a, const struct ts_rl_req *b)
{
	return a->start < b->start || (a->start == b->start && a->seq < b->seq);
}

static int rl_color(const struct ts_rl_req *n)
{
	return n ? n->color : RL_BLACK;
}

static uint64_t rl_node_max(const struct ts_rl_req *n)
{
	uint64_t m = n->end;

	if (n->child[0] && n->child[0]->max_end > m)
		m = n->child[0]->max_end;
	if (n->child[1] && n->child[1]->max_end > m)
		m = n->child[1]->max_end;
	return m;
}

/* Recompute max_end from n up to the root (n's subtree changed). */
static void rl_fix_max(struct ts_rl_req *n)
{
	for (; n; n = n->parent)
		n->max_end = rl_node_max(n);
}

static void rl_replace_child(struct ts_rl *rl, struct ts_rl_req *parent, struct ts_rl_req *old,
			     struct ts_rl_req *new_child)
{
	if (!parent)
		rl->root = new_child;
	else
		parent->child[parent->child[1] == old] = new_child;
}

/* Rotate x down towards side d (0: left rotation, 1: right): its other child rises. */
static void rl_rotate(struct ts_rl *rl, struct ts_rl_req *x, int d)
{
	struct ts_rl_req *y = x->child[!d];

	x->child[!d] = y->child[d];
	if (y->child[d])
		y->child[d]->parent = x;
	y->parent = x->parent;
	rl_replace_child(rl, x->parent, x, y);
	y->child[d] = x;
	x->parent = y;
	x->max_end = rl_node_max(x);
	y->max_end = rl_node_max(y);
}

static void rl_insert(struct ts_rl *rl, struct ts_rl_req *z)
{
	struct ts_rl_req *p = NULL, **link = &rl->root;

	while (*link) {
		p = *link;
		link = &p->child[!rl_before(z, p)];
	}
	z->parent = p;
	z->child[0] = z->child[1] = NULL;
	z->color = RL_RED;
	*link = z;
	rl_fix_max(z);

	while (z->parent && z->parent->color == RL_RED) {
		struct ts_rl_req *gp = z->parent->parent; /* exists: a red node is not the root */
		int d = z->parent == gp->child[1];     /* the side the parent is on */
		struct ts_rl_req *u = gp->child[!d];

		if (rl_color(u) == RL_RED) {
			z->parent->color = RL_BLACK;
			u->color = RL_BLACK;
			gp->color = RL_RED;
			z = gp;
			continue;
		}
		if (z == z->parent->child[!d]) {
			z = z->parent;
			rl_rotate(rl, z, d);
		}
		z->parent->color = RL_BLACK;
		gp->color = RL_RED;
		rl_rotate(rl, gp, !d);
	}
	rl->root->color = RL_BLACK;
}

/* Restore the red-black rules after a black node left from above x (x may be NULL; xp is its parent). */
static void rl_erase_fixup(struct ts_rl *rl, struct ts_rl_req *x, struct ts_rl_req *xp)
{
	while (x != rl->root && rl_color(x) == RL_BLACK) {
		int d = x != xp->child[0]; /* x's side (a NULL x is the missing left child if that is NULL) */
		struct ts_rl_req *w = xp->child[!d];

		if (rl_color(w) == RL_RED) {
			w->color = RL_BLACK;
			xp->color = RL_RED;
			rl_rotate(rl, xp, d);
			w = xp->child[!d];
		}
		if (rl_color(w->child[0]) == RL_BLACK && rl_color(w->child[1]) == RL_BLACK) {
			w->color = RL_RED;
			x = xp;
			xp = x->parent;
			continue;
		}
		if (rl_color(w->child[!d]) == RL_BLACK) {
			w->child[d]->color = RL_BLACK;
			w->color = RL_RED;
			rl_rotate(rl, w, !d);
			w = xp->child[!d];
		}
		w->color = xp->color;
		xp->color = RL_BLACK;
		w->child[!d]->color = RL_BLACK;
		rl_rotate(rl, xp, d);
		x = rl->root;
	}
	if (x)
		x->color = RL_BLACK;
}

static void rl_erase(struct ts_rl *rl, struct ts_rl_req *z)
{
	struct ts_rl_req *y = z, *x, *xp;
	int y_color;

	if (z->child[0] && z->child[1])
		for (y = z->child[1]; y->child[0]; y = y->child[0])
			;
	/* y has at most one child: splice it out. */
	x = y->child[0] ? y->child[0] : y->child[1];
	xp = y->parent;
	y_color = y->color;
	if (x)
		x->parent = y->parent;
	rl_replace_child(rl, y->parent, y, x);
	if (y != z) {
		/* The successor y takes z's place (nodes are the caller's: move links, not data). */
		if (xp == z)
			xp = y;
		y->child[0] = z->child[0];
		y->child[1] = z->child[1];
		y->parent = z->parent;
		y->color = z->color;
		for (int i = 0; i < 2; i++)
			if (y->child[i])
				y->child[i]->parent = y;
		rl_replace_child(rl, z->parent, z, y);
	}
	/* xp is the lowest node whose subtree lost a member; y (if moved) is above it. */
	rl_fix_max(xp);
	if (y_color == RL_BLACK)
		rl_erase_fixup(rl, x, xp);
	z->parent = z->child[0] = z->child[1] = NULL;
}

static bool rl_conflict(const struct ts_rl_req *a, const struct ts_rl_req *b)
{
	return a->mode == TS_RL_EXCL || b->mode == TS_RL_EXCL;
}

/* Does something in n's subtree block r (see grantable() in the essay)? */
static bool rl_blocked_in(const struct ts_rl_req *n, const struct ts_rl_req *r)
{
	while (n) {
		if (n->max_end <= r->start)
			return false;
		if (rl_blocked_in(n->child[0], r))
			return true;
		if (n->start >= r->end)
			return false; /* n and everything right of it start after r */
		if (n != r && n->end > r->start && rl_conflict(n, r) &&
		    (n->state == RL_HELD || n->seq < r->seq))
			return true;
		n = n->child[1];
	}
	return false;
}

/* Link every waiting request overlapping [s, e) onto *list (through ->link). */
static void rl_collect_waiting(struct ts_rl_req *n, uint64_t s, uint64_t e, struct ts_rl_req **list)
{
	while (n) {
		if (n->max_end <= s)
			return;
		rl_collect_waiting(n->child[0], s, e, list);
		if (n->start >= e)
			return;
		if (n->end > s && n->state == RL_WAITING) {
			n->link = *list;
			*list = n;
		}
		n = n->child[1];
	}
}

/* ---- granting ---- */

static void rl_grant_locked(struct ts_rl *rl, struct ts_rl_req *r)
{
	r->state = RL_HELD;
	rl->st.waiting--;
	rl->st.held++;
	rl->st.granted++;
	rl->st.waited++;
}

/*
 * [s, e) left the tree: grant the waiters over it that became grantable.
 * Blocking waiters are signalled here; asynchronous ones are returned as a
 * list for the caller to call back once the mutex is dropped.
 */
static struct ts_rl_req *rl_wake_locked(struct ts_rl *rl, uint64_t s, uint64_t e)
{
	struct ts_rl_req *cand = NULL, *granted = NULL, *tail = NULL;

	rl_collect_waiting(rl->root, s, e, &cand);
	while (cand) {
		struct ts_rl_req *r = cand;

		cand = r->link;
		r->link = NULL;
		if (rl_blocked_in(rl->root, r))
			continue;
		rl_grant_locked(rl, r);
		if (r->waiter) {
			pthread_cond_signal(&((struct rl_waiter *)r->waiter)->cond);
			continue;
		}
		/* Keep arrival order among the callbacks of one wake. */
		if (!granted || r->seq < granted->seq) {
			r->link = granted;
			granted = r;
			if (!tail)
				tail = r;
		} else if (r->seq > tail->seq) {
			tail->link = r;
			tail = r;
		} else {
			struct ts_rl_req *p = granted;

			while (p->link && p->link->seq < r->seq)
				p = p->link;
			r->link = p->link;
			p->link = r;
		}
	}
	return granted;
}

static void rl_run_callbacks(struct ts_rl_req *granted)
{
	while (granted) {
		struct ts_rl_req *r = granted;
		ts_rl_cb cb = r->cb;
		void *arg = r->arg;

		/* The callback may unlock and reuse r: read everything first. */
		granted = r->link;
		r->link = NULL;
		cb(r, arg);
	}
}

/* ---- public API ---- */

int ts_rl_create(struct ts_rl **out)
{
	struct ts_rl *rl = ts_calloc(1, sizeof(*rl));

	if (!rl)
		return -ENOMEM;
	if (pthread_mutex_init(&rl->mu, NULL)) {
		ts_free(rl);
		return -ENOMEM;
	}
	rl->next_seq = 1;
	*out = rl;
	return 0;
}

void ts_rl_destroy(struct ts_rl *rl)
{
	if (!rl)
		return;
	assert(!rl->root);
	pthread_mutex_destroy(&rl->mu);
	ts_free(rl);
}

/*
 * Enter r (with its callback or waiter) into the tree: 1 granted, 0 waiting, -EINVAL. With \p may_wait
 * false a request that would wait is not entered (-EBUSY).
 */
static int rl_enter_locked(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
			   enum ts_rl_mode mode, bool may_wait, ts_rl_cb cb, void *arg, void *waiter)
{
	if (!len || start + len < start || (mode != TS_RL_SHARED && mode != TS_RL_EXCL) ||
	    r->state != RL_IDLE)
		return -EINVAL;
	r->cb = cb;
	r->arg = arg;
	r->waiter = waiter;
	r->start = start;
	r->end = start + len;
	r->mode = (uint8_t)mode;
	r->seq = rl->next_seq;
	r->link = NULL;
	/* Everything in the tree arrived earlier: r is grantable iff nothing overlapping conflicts. */
	if (rl_blocked_in(rl->root, r)) {
		if (!may_wait)
			return -EBUSY;
		rl->next_seq++;
		r->state = RL_WAITING;
		rl->st.waiting++;
		rl_insert(rl, r);
		return 0;
	}
	rl->next_seq++;
	r->state = RL_HELD;
	rl->st.held++;
	rl->st.granted++;
	rl_insert(rl, r);
	return 1;
}

int ts_rl_lock_async(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
		     enum ts_rl_mode mode, ts_rl_cb cb, void *arg)
{
	int rc;

	if (!rl || !r || !cb)
		return -EINVAL;
	pthread_mutex_lock(&rl->mu);
	rc = rl_enter_locked(rl, r, start, len, mode, true, cb, arg, NULL);
	pthread_mutex_unlock(&rl->mu);
	return rc;
}

int ts_rl_lock(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
	       enum ts_rl_mode mode)
{
	struct rl_waiter w;
	int rc;

	if (!rl || !r)
		return -EINVAL;
	if (pthread_cond_init(&w.cond, NULL))
		return -ENOMEM;
	pthread_mutex_lock(&rl->mu);
	rc = rl_enter_locked(rl, r, start, len, mode, true, NULL, NULL, &w);
	if (rc == 0) {
		while (r->state != RL_HELD)
			pthread_cond_wait(&w.cond, &rl->mu);
	}
	if (rc >= 0) {
		r->waiter = NULL;
		rc = 0;
	}
	pthread_mutex_unlock(&rl->mu);
	pthread_cond_destroy(&w.cond);
	return rc;
}

int ts_rl_trylock(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
		  enum ts_rl_mode mode)
{
	int rc;

	if (!rl || !r)
		return -EINVAL;
	pthread_mutex_lock(&rl->mu);
	rc = rl_enter_locked(rl, r, start, len, mode, false, NULL, NULL, NULL);
	pthread_mutex_unlock(&rl->mu);
	return rc < 0 ? rc : 0;
}

int ts_rl_cancel(struct ts_rl *rl, struct ts_rl_req *r)
{
	struct ts_rl_req *granted;

	if (!rl || !r)
		return -EINVAL;
	pthread_mutex_lock(&rl->mu);
	if (r->state == RL_HELD) {
		pthread_mutex_unlock(&rl->mu);
		return -EALREADY;
	}
	if (r->state != RL_WAITING || r->waiter || !r->cb) {
		pthread_mutex_unlock(&rl->mu);
		return -EINVAL;
	}
	rl_erase(rl, r);
	r->state = RL_IDLE;
	rl->st.waiting--;
	granted = rl_wake_locked(rl, r->start, r->end);
	pthread_mutex_unlock(&rl->mu);
	rl_run_callbacks(granted);
	return 0;
}

void ts_rl_unlock(struct ts_rl *rl, struct ts_rl_req *r)
{
	struct ts_rl_req *granted;

	pthread_mutex_lock(&rl->mu);
	assert(r->state == RL_HELD);
	if (r->state != RL_HELD) {
		pthread_mutex_unlock(&rl->mu);
		return;
	}
	rl_erase(rl, r);
	r->state = RL_IDLE;
	rl->st.held--;
	granted = rl_wake_locked(rl, r->start, r->end);
	pthread_mutex_unlock(&rl->mu);
	rl_run_callbacks(granted);
}

void ts_rl_stats(struct ts_rl *rl, struct ts_rl_stats *out)
{
	pthread_mutex_lock(&rl->mu);
	*out = rl->st;
	pthread_mutex_unlock(&rl->mu);
}
