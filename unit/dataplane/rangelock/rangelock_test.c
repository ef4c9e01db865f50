/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Range locks: edge cases, FIFO fairness, re-entrant callbacks, a plain
 * array reference model driven by random lock / trylock / unlock / cancel
 * operations with the tree's red-black and max-end invariants checked after
 * every step, and the threaded stress (rl_stress.c, also run under TSan by
 * unit_rangelock_tsan).
 *
 * The .c is included to reach the tree (SPDK style).
 */
#include <criterion/criterion.h>

#include "dataplane/rangelock/rangelock.c"
#include "unit/dataplane/rangelock/rl_stress.h"

/* ---- tree invariants ---- */

/* Returns the black height of n's subtree; counts its nodes into *count. */
static int check_node(const struct ts_rl_req *n, const struct ts_rl_req *parent, size_t *count)
{
	int lh, rh;

	if (!n)
		return 1;
	cr_assert_eq(n->parent, parent, "parent link broken");
	cr_assert_lt(n->start, n->end);
	cr_assert_eq(n->max_end, rl_node_max(n), "max_end stale at [%llu,%llu)",
		     (unsigned long long)n->start, (unsigned long long)n->end);
	if (n->child[0])
		cr_assert(rl_before(n->child[0], n), "tree order broken");
	if (n->child[1])
		cr_assert(rl_before(n, n->child[1]), "tree order broken");
	if (n->color == RL_RED) {
		cr_assert_eq(rl_color(n->child[0]), RL_BLACK, "red node with a red child");
		cr_assert_eq(rl_color(n->child[1]), RL_BLACK, "red node with a red child");
	}
	cr_assert(n->state == RL_HELD || n->state == RL_WAITING);
	(*count)++;
	lh = check_node(n->child[0], n, count);
	rh = check_node(n->child[1], n, count);
	cr_assert_eq(lh, rh, "black heights differ");
	return lh + (n->color == RL_BLACK);
}

static void check_tree(struct ts_rl *rl)
{
	size_t count = 0;

	cr_assert_eq(rl_color(rl->root), RL_BLACK);
	check_node(rl->root, NULL, &count);
	cr_assert_eq(count, rl->st.held + rl->st.waiting);
}

/* ---- callbacks ---- */

#define NREQ 48
static struct ts_rl_req g_req[NREQ];
static int g_fired[NREQ];
static int g_nfired;

static void rec_cb(struct ts_rl_req *r, void *arg)
{
	(void)arg;
	g_fired[r - g_req]++;
	g_nfired++;
}

Test(rangelock, rejects_bad_requests)
{
	struct ts_rl *rl;
	struct ts_rl_req a = {0}, b = {0};

	cr_assert_eq(ts_rl_create(&rl), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 0, 0, TS_RL_EXCL, rec_cb, NULL), -EINVAL);
	cr_assert_eq(ts_rl_lock_async(rl, &a, UINT64_MAX, 1, TS_RL_EXCL, rec_cb, NULL), -EINVAL);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 10, UINT64_MAX - 5, TS_RL_EXCL, rec_cb, NULL), -EINVAL);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 0, 1, (enum ts_rl_mode)7, rec_cb, NULL), -EINVAL);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 0, 1, TS_RL_EXCL, NULL, NULL), -EINVAL);
	cr_assert_eq(ts_rl_trylock(rl, &a, 5, 0, TS_RL_SHARED), -EINVAL);
	cr_assert_eq(ts_rl_lock(rl, &a, 5, 0, TS_RL_SHARED), -EINVAL);
	cr_assert_eq(ts_rl_cancel(rl, &a), -EINVAL, "cancel of an idle request");

	/* The last unit of the space is reachable; a request in use cannot be reused. */
	cr_assert_eq(ts_rl_lock(rl, &a, UINT64_MAX - 1, 1, TS_RL_EXCL), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 0, 1, TS_RL_EXCL, rec_cb, NULL), -EINVAL);
	cr_assert_eq(ts_rl_trylock(rl, &a, 0, 1, TS_RL_EXCL), -EINVAL);
	cr_assert_eq(ts_rl_cancel(rl, &a), -EALREADY);
	cr_assert_eq(ts_rl_trylock(rl, &b, UINT64_MAX - 3, 3, TS_RL_SHARED), -EBUSY);
	ts_rl_unlock(rl, &a);
	cr_assert_eq(ts_rl_trylock(rl, &b, UINT64_MAX - 3, 3, TS_RL_SHARED), 0);
	ts_rl_unlock(rl, &b);
	ts_rl_destroy(rl);
	ts_rl_destroy(NULL);
}

Test(rangelock, adjacent_and_shared_do_not_wait)
{
	struct ts_rl *rl;
	struct ts_rl_req a = {0}, b = {0}, c = {0}, d = {0};
	struct ts_rl_stats st;

	cr_assert_eq(ts_rl_create(&rl), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &a, 0, 4, TS_RL_EXCL, rec_cb, NULL), 1);
	cr_assert_eq(ts_rl_lock_async(rl, &b, 4, 4, TS_RL_EXCL, rec_cb, NULL), 1, "[4,8) touches [0,4) only");
	cr_assert_eq(ts_rl_lock_async(rl, &c, 8, 8, TS_RL_SHARED, rec_cb, NULL), 1);
	cr_assert_eq(ts_rl_lock_async(rl, &d, 10, 2, TS_RL_SHARED, rec_cb, NULL), 1, "readers share");
	ts_rl_stats(rl, &st);
	cr_assert_eq(st.held, 4);
	cr_assert_eq(st.waiting, 0);
	cr_assert_eq(st.waited, 0);
	ts_rl_unlock(rl, &a);
	ts_rl_unlock(rl, &b);
	ts_rl_unlock(rl, &c);
	ts_rl_unlock(rl, &d);
	ts_rl_destroy(rl);
}

Test(rangelock, fifo_writer_is_not_overtaken_by_readers)
{
	struct ts_rl *rl;

	memset(g_req, 0, sizeof(g_req));
	memset(g_fired, 0, sizeof(g_fired));
	cr_assert_eq(ts_rl_create(&rl), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[0], 0, 10, TS_RL_SHARED, rec_cb, NULL), 1);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[1], 5, 10, TS_RL_EXCL, rec_cb, NULL), 0);
	/* A reader overlapping only the waiting writer waits behind it. */
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[2], 12, 2, TS_RL_SHARED, rec_cb, NULL), 0);
	/* A reader overlapping neither runs. */
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[3], 20, 2, TS_RL_SHARED, rec_cb, NULL), 1);
	cr_assert_eq(ts_rl_trylock(rl, &g_req[4], 0, 1, TS_RL_SHARED), 0, "no waiter over [0,1)");
	ts_rl_unlock(rl, &g_req[4]);
	ts_rl_unlock(rl, &g_req[0]);
	cr_assert_eq(g_fired[1], 1, "the writer is next");
	cr_assert_eq(g_fired[2], 0);
	ts_rl_unlock(rl, &g_req[1]);
	cr_assert_eq(g_fired[2], 1);
	ts_rl_unlock(rl, &g_req[2]);
	ts_rl_unlock(rl, &g_req[3]);
	ts_rl_destroy(rl);
}

Test(rangelock, overlapping_writers_in_arrival_order)
{
	struct ts_rl *rl;
	int order[8], n = 0;

	memset(g_req, 0, sizeof(g_req));
	cr_assert_eq(ts_rl_create(&rl), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[0], 0, 100, TS_RL_EXCL, rec_cb, NULL), 1);
	for (int i = 1; i < 8; i++)
		cr_assert_eq(ts_rl_lock_async(rl, &g_req[i], (uint64_t)(7 - i) * 10, 15, TS_RL_EXCL,
					      rec_cb, NULL), 0);
	memset(g_fired, 0, sizeof(g_fired));
	ts_rl_unlock(rl, &g_req[0]);
	/* Writers i and i+1 overlap, so one at a time, oldest first... except those
	 * whose older overlapping writers are all gone: [60,75) and [40,55) etc. */
	for (int round = 0; round < 8 && n < 7; round++) {
		for (int i = 1; i < 8; i++) {
			if (g_fired[i] == 1 && g_req[i].state == RL_HELD) {
				order[n++] = i;
				g_fired[i] = 2;
			}
		}
		for (int k = 0; k < n; k++)
			if (g_req[order[k]].state == RL_HELD)
				ts_rl_unlock(rl, &g_req[order[k]]);
	}
	cr_assert_eq(n, 7);
	/* Every writer was granted only after each older writer it overlaps. */
	for (int a = 0; a < 7; a++)
		for (int b = a + 1; b < 7; b++) {
			struct ts_rl_req *x = &g_req[order[a]], *y = &g_req[order[b]];
			bool overlap = x->start < y->end && y->start < x->end;

			if (overlap)
				cr_assert_lt(x->seq, y->seq, "overlapping writers out of order");
		}
	ts_rl_destroy(rl);
}

/* A callback that unlocks its own hold: grants chain through re-entrant calls. */
static struct ts_rl *g_rl;
static void unlock_cb(struct ts_rl_req *r, void *arg)
{
	(void)arg;
	g_fired[r - g_req]++;
	ts_rl_unlock(g_rl, r);
}

Test(rangelock, reentrant_callbacks)
{
	memset(g_req, 0, sizeof(g_req));
	memset(g_fired, 0, sizeof(g_fired));
	cr_assert_eq(ts_rl_create(&g_rl), 0);
	cr_assert_eq(ts_rl_lock_async(g_rl, &g_req[0], 0, 8, TS_RL_EXCL, rec_cb, NULL), 1);
	for (int i = 1; i < 10; i++)
		cr_assert_eq(ts_rl_lock_async(g_rl, &g_req[i], 0, 8, TS_RL_EXCL, unlock_cb, NULL), 0);
	ts_rl_unlock(g_rl, &g_req[0]);
	for (int i = 1; i < 10; i++)
		cr_assert_eq(g_fired[i], 1, "waiter %d granted once", i);
	cr_assert_eq(g_rl->st.held + g_rl->st.waiting, 0);
	ts_rl_destroy(g_rl);
}

Test(rangelock, cancel_unblocks_later_waiters)
{
	struct ts_rl *rl;

	memset(g_req, 0, sizeof(g_req));
	memset(g_fired, 0, sizeof(g_fired));
	cr_assert_eq(ts_rl_create(&rl), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[0], 0, 4, TS_RL_SHARED, rec_cb, NULL), 1);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[1], 2, 4, TS_RL_EXCL, rec_cb, NULL), 0);
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[2], 4, 4, TS_RL_SHARED, rec_cb, NULL), 0);
	cr_assert_eq(ts_rl_cancel(rl, &g_req[1]), 0);
	cr_assert_eq(g_fired[1], 0, "a cancelled request is never called back");
	cr_assert_eq(g_fired[2], 1, "the reader behind it runs on the cancelling thread");
	cr_assert_eq(ts_rl_cancel(rl, &g_req[1]), -EINVAL);
	cr_assert_eq(ts_rl_cancel(rl, &g_req[2]), -EALREADY);
	ts_rl_unlock(rl, &g_req[0]);
	ts_rl_unlock(rl, &g_req[2]);
	/* Reuse after cancel. */
	cr_assert_eq(ts_rl_lock_async(rl, &g_req[1], 2, 4, TS_RL_EXCL, rec_cb, NULL), 1);
	ts_rl_unlock(rl, &g_req[1]);
	ts_rl_destroy(rl);
}

/* ---- reference model ---- */

struct mreq {
	uint64_t s, e, seq;
	int mode, state; /* RL_IDLE / RL_WAITING / RL_HELD */
};

static bool m_blocked(const struct mreq *m, int i)
{
	for (int j = 0; j < NREQ; j++) {
		if (j == i || m[j].state == RL_IDLE)
			continue;
		if (!(m[j].s < m[i].e && m[i].s < m[j].e))
			continue;
		if (m[j].mode != TS_RL_EXCL && m[i].mode != TS_RL_EXCL)
			continue;
		if (m[j].state == RL_HELD || m[j].seq < m[i].seq)
			return true;
	}
	return false;
}

/* After a removal: the model grants every waiter that became grantable. */
static void m_wake(struct mreq *m, int *expect)
{
	for (int i = 0; i < NREQ; i++)
		if (m[i].state == RL_WAITING && !m_blocked(m, i)) {
			m[i].state = RL_HELD;
			expect[i]++;
		}
}

static void run_model(unsigned seed, int steps, uint64_t space, int maxlen)
{
	struct ts_rl *rl;
	struct mreq m[NREQ] = {0};
	int expect[NREQ];
	uint64_t seq = 0;
	unsigned long nwaits = 0, ncancels = 0;

	memset(g_req, 0, sizeof(g_req));
	memset(g_fired, 0, sizeof(g_fired));
	memset(expect, 0, sizeof(expect));
	srand(seed);
	cr_assert_eq(ts_rl_create(&rl), 0);
	for (int step = 0; step < steps; step++) {
		int i = rand() % NREQ;
		int op = rand() % 8;

		if (m[i].state == RL_IDLE) {
			uint64_t s = (uint64_t)rand() % space;
			uint64_t len = 1 + (uint64_t)(rand() % maxlen);
			int mode = rand() % 3 == 0 ? TS_RL_EXCL : TS_RL_SHARED;
			int rc;

			m[i] = (struct mreq){.s = s, .e = s + len, .seq = ++seq, .mode = mode};
			m[i].state = RL_WAITING;
			bool blocked = m_blocked(m, i);

			if (op == 0) { /* trylock */
				rc = ts_rl_trylock(rl, &g_req[i], s, len, (enum ts_rl_mode)mode);
				cr_assert_eq(rc, blocked ? -EBUSY : 0, "step %d trylock", step);
				if (blocked) {
					m[i].state = RL_IDLE;
					seq--; /* nothing entered */
				} else {
					m[i].state = RL_HELD;
				}
			} else {
				rc = ts_rl_lock_async(rl, &g_req[i], s, len, (enum ts_rl_mode)mode, rec_cb,
						      NULL);
				cr_assert_eq(rc, blocked ? 0 : 1, "step %d lock", step);
				m[i].state = blocked ? RL_WAITING : RL_HELD;
				nwaits += blocked;
			}
		} else if (m[i].state == RL_HELD) {
			if (op == 1) {
				cr_assert_eq(ts_rl_cancel(rl, &g_req[i]), -EALREADY);
			} else {
				ts_rl_unlock(rl, &g_req[i]);
				m[i].state = RL_IDLE;
				m_wake(m, expect);
			}
		} else if (op < 3) { /* waiting: cancel it */
			cr_assert_eq(ts_rl_cancel(rl, &g_req[i]), 0, "step %d cancel", step);
			m[i].state = RL_IDLE;
			ncancels++;
			m_wake(m, expect);
		}
		for (int j = 0; j < NREQ; j++) {
			cr_assert_eq(g_fired[j], expect[j], "step %d: request %d called back %d times, model %d",
				     step, j, g_fired[j], expect[j]);
			cr_assert_eq(g_req[j].state, m[j].state, "step %d: request %d state", step, j);
		}
		check_tree(rl);
	}
	cr_assert_gt(nwaits, (unsigned long)steps / 50, "the model run must contend");
	cr_assert_gt(ncancels, 0ul);
	/* Cancelling a waiter may grant a later one: look at the requests, not the model. */
	for (int i = 0; i < NREQ; i++)
		if (g_req[i].state == RL_WAITING)
			cr_assert_eq(ts_rl_cancel(rl, &g_req[i]), 0);
	for (int i = 0; i < NREQ; i++)
		if (g_req[i].state == RL_HELD)
			ts_rl_unlock(rl, &g_req[i]);
	cr_assert_null(rl->root);
	ts_rl_destroy(rl);
}

Test(rangelock, model_dense, .timeout = 120)
{
	run_model(1, 100000, 64, 8);
}

Test(rangelock, model_sparse_long_ranges, .timeout = 120)
{
	run_model(2, 100000, 1u << 20, 1 << 16);
}

Test(rangelock, model_unit_ranges, .timeout = 120)
{
	run_model(3, 50000, 16, 1);
}

Test(rangelock, threaded_stress, .timeout = 120)
{
	char err[256];

	cr_assert_eq(rl_stress_run(4, 20000, err, sizeof(err)), 0, "%s", err);
}
