/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every thread loops: pick a range in a small space (so most requests
 * overlap something) and a mode, take it one of three ways, mark the units
 * it covers in an occupancy array (writers: -1, readers: +1 each), check
 * nobody conflicting is there, yield, unmark, unlock. An asynchronous
 * request may be cancelled while it waits; a cancel that loses the race
 * (-EALREADY) must still see the grant callback and unlock.
 */
#include "unit/dataplane/rangelock/rl_stress.h"

#include "dataplane/rangelock/rangelock.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define SPACE 64

struct stress {
	struct ts_rl *rl;
	_Atomic int occ[SPACE]; /* >0 readers, -1 a writer */
	_Atomic int failed;
	int iters;
	pthread_mutex_t emu;
	char err[256];
};

struct worker {
	struct stress *s;
	unsigned seed;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int granted;
};

static unsigned rnd(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	return (*seed >> 8) & 0xffffff;
}

static void fail(struct stress *s, const char *what, uint64_t a, uint64_t b)
{
	pthread_mutex_lock(&s->emu);
	if (!atomic_exchange(&s->failed, 1))
		snprintf(s->err, sizeof(s->err), "%s [%llu, %llu)", what, (unsigned long long)a,
			 (unsigned long long)b);
	pthread_mutex_unlock(&s->emu);
}

static void occupy(struct stress *s, uint64_t a, uint64_t b, int excl)
{
	for (uint64_t i = a; i < b; i++) {
		if (excl) {
			int zero = 0;

			if (!atomic_compare_exchange_strong(&s->occ[i], &zero, -1))
				fail(s, "writer overlaps a holder", a, b);
		} else if (atomic_fetch_add(&s->occ[i], 1) < 0) {
			fail(s, "reader overlaps a writer", a, b);
		}
	}
	sched_yield();
	for (uint64_t i = a; i < b; i++) {
		if (excl) {
			int w = -1;

			if (!atomic_compare_exchange_strong(&s->occ[i], &w, 0))
				fail(s, "writer's units changed under it", a, b);
		} else if (atomic_fetch_sub(&s->occ[i], 1) <= 0) {
			fail(s, "reader count underflow", a, b);
		}
	}
}

static void granted_cb(struct ts_rl_req *r, void *arg)
{
	struct worker *w = arg;

	(void)r;
	pthread_mutex_lock(&w->mu);
	w->granted = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct stress *s = w->s;

	for (int i = 0; i < s->iters && !atomic_load(&s->failed); i++) {
		struct ts_rl_req r = {0};
		uint64_t a = rnd(&w->seed) % SPACE;
		uint64_t len = 1 + rnd(&w->seed) % 8;
		int excl = rnd(&w->seed) % 3 == 0;
		enum ts_rl_mode mode = excl ? TS_RL_EXCL : TS_RL_SHARED;
		int how = (int)(rnd(&w->seed) % 4);
		int rc;

		if (a + len > SPACE)
			len = SPACE - a;
		if (how == 0) {
			rc = ts_rl_lock(s->rl, &r, a, len, mode);
			if (rc) {
				fail(s, "ts_rl_lock failed", a, a + len);
				break;
			}
		} else if (how == 1) {
			rc = ts_rl_trylock(s->rl, &r, a, len, mode);
			if (rc == -EBUSY)
				continue;
			if (rc) {
				fail(s, "ts_rl_trylock failed", a, a + len);
				break;
			}
		} else {
			w->granted = 0;
			rc = ts_rl_lock_async(s->rl, &r, a, len, mode, granted_cb, w);
			if (rc < 0) {
				fail(s, "ts_rl_lock_async failed", a, a + len);
				break;
			}
			if (rc == 0 && how == 3) {
				rc = ts_rl_cancel(s->rl, &r);
				if (rc == 0)
					continue; /* withdrawn: the callback must never run */
				if (rc != -EALREADY) {
					fail(s, "ts_rl_cancel failed", a, a + len);
					break;
				}
				rc = 0;
			}
			if (rc == 0) {
				pthread_mutex_lock(&w->mu);
				while (!w->granted)
					pthread_cond_wait(&w->cond, &w->mu);
				pthread_mutex_unlock(&w->mu);
			}
		}
		occupy(s, a, a + len, excl);
		ts_rl_unlock(s->rl, &r);
	}
	return NULL;
}

int rl_stress_run(int threads, int iters, char *err, size_t errlen)
{
	struct stress s = {.iters = iters};
	struct worker w[16];
	pthread_t t[16];
	struct ts_rl_stats st;
	int n = threads > 16 ? 16 : threads;

	pthread_mutex_init(&s.emu, NULL);
	if (ts_rl_create(&s.rl)) {
		snprintf(err, errlen, "ts_rl_create failed");
		return -1;
	}
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){.s = &s, .seed = 7919u * (unsigned)(i + 1)};
		pthread_mutex_init(&w[i].mu, NULL);
		pthread_cond_init(&w[i].cond, NULL);
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	ts_rl_stats(s.rl, &st);
	if (!s.failed && (st.held || st.waiting)) {
		s.failed = 1;
		snprintf(s.err, sizeof(s.err), "left behind: %llu held, %llu waiting",
			 (unsigned long long)st.held, (unsigned long long)st.waiting);
	}
	if (!s.failed && !st.waited) {
		s.failed = 1;
		snprintf(s.err, sizeof(s.err), "no request ever waited: the stress did not contend");
	}
	for (int i = 0; i < n; i++) {
		pthread_mutex_destroy(&w[i].mu);
		pthread_cond_destroy(&w[i].cond);
	}
	ts_rl_destroy(s.rl);
	pthread_mutex_destroy(&s.emu);
	if (s.failed) {
		snprintf(err, errlen, "%s", s.err);
		return -1;
	}
	return 0;
}
