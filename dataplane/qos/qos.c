/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-volume QoS: token buckets, FIFO queues, one timer thread per domain,
 * and the reservation policy (see qos.h for the contract and the policy).
 *
 * The workload: every IO of a served volume passes ts_qos_admit() on the
 * engine's threads. Most volumes are unlimited, so the common case is a
 * single relaxed load of q->gate (GATE_OPEN) and nothing else. A limited
 * volume takes its own mutex, refills its buckets by elapsed time and either
 * admits the IO (consuming tokens) or appends it to its FIFO. The domain's
 * timer thread sleeps until the earliest time any queued head can go (the
 * deficit of its emptiest applicable bucket divided by that bucket's rate),
 * releases every head that fits, and calls their go callbacks after
 * dropping every lock.
 *
 * Invariants:
 *  - q->gate is GATE_CLOSED whenever a bucket is active or the queue is not
 *    empty (written under q->lock); GATE_COUNT when only a reservation is
 *    set (admit just counts the op as in flight); GATE_OPEN otherwise;
 *  - a queued IO is never overtaken: admit only consumes tokens directly
 *    when the queue is empty, the pass releases strictly from the head;
 *  - tokens never exceed a bucket's depth; they go negative only when an IO
 *    costing more than the depth was admitted from a full bucket;
 *  - every queued item leaves the queue exactly once, either in a pass or in
 *    ts_qos_destroy(), and its go callback is then called exactly once.
 *
 * Reservations: window_close() runs every WINDOW_NS while d->nreserved > 0
 * and implements the policy in qos.h; the dynamic cap is the B_DYN bucket
 * of each unreserved volume.
 *
 * THREAD SAFETY:
 *  - d->lock: the volume list, nreserved, window state and every volume's
 *    reservation fields (ewma, base, win_mark), the thread's kick/stop
 *    flags, `dispatching`;
 *  - q->lock: the buckets, the queue, the gate, q->dyn_cap and the locked
 *    counters;
 *  - order: d->lock before q->lock. ts_qos_admit() holds q->lock alone and
 *    takes d->lock only after dropping it (to kick the thread);
 *  - the relaxed atomics (completion counters, `submitted`) are read by the
 *    window without any ordering requirement: they are statistics.
 */
#include "dataplane/qos/qos.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ts_common.h"

#define WINDOW_NS 100000000ull     /* reservation window: 100 ms */
#define DYN_DEPTH_S 0.1            /* dynamic-cap bucket: 100 ms of rate */
#define DYN_FIRST 0.5              /* first cap: half the smoothed rate */
#define DYN_DECREASE 0.7           /* per window while a reservation is unmet */
#define DYN_INCREASE 1.25          /* per window while all are met ... */
#define DYN_ADD 50.0               /* ... plus this */
#define DYN_FLOOR_MIN 50.0         /* never cap below this many IOPS ... */
#define DYN_FLOOR_FRAC 0.05        /* ... nor below 5% of the rate when first capped */
#define EPS 1e-6                   /* token comparisons */

enum { B_IOPS, B_RIOPS, B_WIOPS, B_BPS, B_RBPS, B_WBPS, B_DYN, B_N };
enum { GATE_OPEN = 0, GATE_COUNT = 1, GATE_CLOSED = 2 };

struct bucket {
	double rate;   /* units per second; 0 = off */
	double depth;  /* units */
	double tokens; /* units, <= depth, may be negative */
};

struct item {
	struct item *next;
	ts_qos_go go;
	void *arg;
	uint64_t bytes;
	uint64_t t_enq;
	bool write;
};

struct ts_qos {
	struct ts_qos_domain *d;
	struct ts_qos *next, *prev; /* d->lock */
	atomic_int gate;

	pthread_mutex_t lock;
	struct ts_qos_limits lim;
	struct bucket b[B_N];
	uint64_t last_ns;
	struct item *head, **tail;
	uint64_t queued, admitted, delayed, delay_ns;
	uint64_t dyn_cap; /* written under d->lock and q->lock */

	/* reservation state, d->lock */
	double ewma, base;
	bool ewma_valid;
	uint64_t win_mark;

	atomic_uint_fast64_t submitted;
	atomic_uint_fast64_t rops, wops, rbytes, wbytes, lat;
};

struct ts_qos_domain {
	pthread_mutex_t lock;
	pthread_cond_t cond; /* wakes the thread */
	pthread_cond_t idle; /* dispatching dropped to 0 */
	struct ts_qos *qs;
	unsigned nreserved;
	uint64_t win_start;
	unsigned dispatching;
	bool kick, stop, manual, thread_started;
	pthread_t thread;
	uint64_t (*now)(void *);
	void *now_arg;
};

static uint64_t real_now(void *arg)
{
	(void)arg;
	return ts_now_ns();
}

bool ts_qos_limits_none(const struct ts_qos_limits *l)
{
	return !l || (!l->iops && !l->read_iops && !l->write_iops && !l->bps && !l->read_bps &&
		      !l->write_bps && !l->reserve_iops);
}

/* ---- buckets (q->lock) ---- */

static bool applies(int i, bool write)
{
	if (i == B_RIOPS || i == B_RBPS)
		return !write;
	if (i == B_WIOPS || i == B_WBPS)
		return write;
	return true;
}

static double cost(int i, uint64_t bytes)
{
	return (i == B_BPS || i == B_RBPS || i == B_WBPS) ? (double)bytes : 1.0;
}

static void refill(struct ts_qos *q, uint64_t now)
{
	double dt;
	int i;

	if (now <= q->last_ns)
		return;
	dt = (double)(now - q->last_ns) / 1e9;
	q->last_ns = now;
	for (i = 0; i < B_N; i++) {
		struct bucket *b = &q->b[i];
		if (b->rate > 0)
			b->tokens = fmin(b->depth, b->tokens + b->rate * dt);
	}
}

/* 0 if the IO may go now, else the nanoseconds until it may. */
static uint64_t wait_ns(const struct ts_qos *q, bool write, uint64_t bytes)
{
	uint64_t w = 0;
	int i;

	for (i = 0; i < B_N; i++) {
		const struct bucket *b = &q->b[i];
		double c = cost(i, bytes), need;

		if (b->rate <= 0 || !applies(i, write) || c <= 0)
			continue;
		need = fmin(c, b->depth);
		if (b->tokens + EPS < need) {
			double ns = ceil((need - b->tokens) / b->rate * 1e9);
			uint64_t n = ns < 1 ? 1 : ns > 1e18 ? (uint64_t)1e18 : (uint64_t)ns;
			w = TS_MAX(w, n);
		}
	}
	return w;
}

static void consume(struct ts_qos *q, bool write, uint64_t bytes)
{
	int i;

	for (i = 0; i < B_N; i++)
		if (q->b[i].rate > 0 && applies(i, write))
			q->b[i].tokens -= cost(i, bytes);
}

static void set_bucket(struct bucket *b, double rate, double depth)
{
	if (rate <= 0) {
		b->rate = 0;
		return;
	}
	depth = fmax(1.0, depth);
	b->tokens = b->rate > 0 ? fmin(b->tokens, depth) : depth;
	b->rate = rate;
	b->depth = depth;
}

static void update_gate(struct ts_qos *q)
{
	int g = q->lim.reserve_iops ? GATE_COUNT : GATE_OPEN;
	int i;

	for (i = 0; i < B_N; i++)
		if (q->b[i].rate > 0)
			g = GATE_CLOSED;
	if (q->head)
		g = GATE_CLOSED;
	atomic_store_explicit(&q->gate, g, memory_order_relaxed);
}

static void apply_limits(struct ts_qos *q, const struct ts_qos_limits *l, uint64_t now)
{
	static const struct ts_qos_limits none;
	double s;

	if (!l)
		l = &none;
	refill(q, now);
	q->lim = *l;
	s = (l->burst_ms ? l->burst_ms : 1000) / 1000.0;
	set_bucket(&q->b[B_IOPS], (double)l->iops, (double)l->iops * s);
	set_bucket(&q->b[B_RIOPS], (double)l->read_iops, (double)l->read_iops * s);
	set_bucket(&q->b[B_WIOPS], (double)l->write_iops, (double)l->write_iops * s);
	set_bucket(&q->b[B_BPS], (double)l->bps, (double)l->bps * s);
	set_bucket(&q->b[B_RBPS], (double)l->read_bps, (double)l->read_bps * s);
	set_bucket(&q->b[B_WBPS], (double)l->write_bps, (double)l->write_bps * s);
	update_gate(q);
}

static void set_dyn_cap(struct ts_qos *q, uint64_t cap, uint64_t now)
{
	pthread_mutex_lock(&q->lock);
	refill(q, now);
	q->dyn_cap = cap;
	set_bucket(&q->b[B_DYN], (double)cap, (double)cap * DYN_DEPTH_S);
	update_gate(q);
	pthread_mutex_unlock(&q->lock);
}

/* Move every head that may go now to *out (tail pointer *tailp); returns the
 * time the remaining head may go, or UINT64_MAX. q->lock held. */
static uint64_t release(struct ts_qos *q, uint64_t now, struct item ***tailp)
{
	uint64_t w, ready = UINT64_MAX;

	refill(q, now);
	while (q->head) {
		struct item *it = q->head;

		w = wait_ns(q, it->write, it->bytes);
		if (w) {
			ready = now + w;
			break;
		}
		consume(q, it->write, it->bytes);
		q->head = it->next;
		if (!q->head)
			q->tail = &q->head;
		q->queued--;
		q->admitted++;
		q->delay_ns += now - it->t_enq;
		atomic_fetch_add_explicit(&q->submitted, 1, memory_order_relaxed);
		it->next = NULL;
		**tailp = it;
		*tailp = &it->next;
	}
	update_gate(q);
	return ready;
}

static void run_items(struct item *it)
{
	while (it) {
		struct item *next = it->next;
		it->go(it->arg);
		ts_free(it);
		it = next;
	}
}

/* ---- reservations (d->lock) ---- */

static uint64_t done_ops(struct ts_qos *q)
{
	return atomic_load_explicit(&q->rops, memory_order_relaxed) +
	       atomic_load_explicit(&q->wops, memory_order_relaxed);
}

static void reset_window(struct ts_qos_domain *d, uint64_t now)
{
	struct ts_qos *q;

	d->win_start = now;
	for (q = d->qs; q; q = q->next)
		q->win_mark = done_ops(q);
}

static void lift_caps(struct ts_qos_domain *d, uint64_t now)
{
	struct ts_qos *q;

	for (q = d->qs; q; q = q->next)
		if (q->dyn_cap)
			set_dyn_cap(q, 0, now);
}

static void window_close(struct ts_qos_domain *d, uint64_t now)
{
	double secs = (double)(now - d->win_start) / 1e9;
	bool unmet = false;
	struct ts_qos *q;

	if (now - d->win_start > 4 * WINDOW_NS) { /* stale (thread was idle): start over */
		reset_window(d, now);
		return;
	}
	for (q = d->qs; q; q = q->next) {
		uint64_t total = done_ops(q), ops = total - q->win_mark;
		uint64_t sub = atomic_load_explicit(&q->submitted, memory_order_relaxed);
		double rate = (double)ops / secs;
		bool demand;

		q->win_mark = total;
		q->ewma = q->ewma_valid ? (q->ewma + rate) / 2 : rate;
		q->ewma_valid = true;
		if (!q->lim.reserve_iops)
			continue;
		pthread_mutex_lock(&q->lock);
		demand = q->queued > 0 || sub > total || ops > 0;
		pthread_mutex_unlock(&q->lock);
		if (demand && q->ewma < (double)q->lim.reserve_iops)
			unmet = true;
	}
	d->win_start = now;
	for (q = d->qs; q; q = q->next) {
		double cap, floor;

		if (q->lim.reserve_iops)
			continue;
		cap = (double)q->dyn_cap;
		if (unmet) {
			if (!q->dyn_cap) {
				if (q->ewma < DYN_FLOOR_MIN)
					continue; /* idle enough: capping it frees nothing */
				q->base = q->ewma;
				cap = q->ewma * DYN_FIRST;
			} else {
				cap *= DYN_DECREASE;
			}
			floor = fmax(DYN_FLOOR_MIN, DYN_FLOOR_FRAC * q->base);
			cap = fmax(cap, floor);
		} else if (q->dyn_cap) {
			cap = cap * DYN_INCREASE + DYN_ADD;
			if (cap > 2 * q->base)
				cap = 0;
		} else {
			continue;
		}
		set_dyn_cap(q, (uint64_t)cap, now);
	}
}

/* ---- the scheduling pass ---- */

/* d->lock held; dropped while go callbacks run. Returns the next time the
 * thread must wake, or UINT64_MAX. */
static uint64_t pass_locked(struct ts_qos_domain *d)
{
	struct item *out = NULL, **tail = &out;
	uint64_t now, next = UINT64_MAX;
	struct ts_qos *q;

	d->kick = false;
	now = d->now(d->now_arg);
	if (d->nreserved && now - d->win_start >= WINDOW_NS)
		window_close(d, now);
	for (q = d->qs; q; q = q->next) {
		uint64_t r;

		pthread_mutex_lock(&q->lock);
		r = q->head ? release(q, now, &tail) : UINT64_MAX;
		pthread_mutex_unlock(&q->lock);
		next = TS_MIN(next, r);
	}
	if (d->nreserved)
		next = TS_MIN(next, d->win_start + WINDOW_NS);
	if (out) {
		d->dispatching++;
		pthread_mutex_unlock(&d->lock);
		run_items(out);
		pthread_mutex_lock(&d->lock);
		if (--d->dispatching == 0)
			pthread_cond_broadcast(&d->idle);
	}
	return next;
}

static void *domain_main(void *arg)
{
	struct ts_qos_domain *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->stop) {
		uint64_t next = pass_locked(d);

		if (d->stop || d->kick)
			continue;
		if (next == UINT64_MAX) {
			pthread_cond_wait(&d->cond, &d->lock);
		} else {
			struct timespec ts = { .tv_sec = (time_t)(next / 1000000000ull),
					       .tv_nsec = (long)(next % 1000000000ull) };
			pthread_cond_timedwait(&d->cond, &d->lock, &ts);
		}
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

static void kick(struct ts_qos_domain *d)
{
	pthread_mutex_lock(&d->lock);
	d->kick = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* ---- domain ---- */

int ts_qos_domain_create(struct ts_qos_domain **out)
{
	struct ts_qos_domain *d;
	pthread_condattr_t ca;
	int rc;

	if (!out)
		return -EINVAL;
	d = ts_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->now = real_now;
	pthread_mutex_init(&d->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* ts_now_ns() is CLOCK_MONOTONIC */
	pthread_cond_init(&d->cond, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&d->idle, NULL);
	rc = pthread_create(&d->thread, NULL, domain_main, d);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	d->thread_started = true;
	*out = d;
	return 0;
fail:
	pthread_cond_destroy(&d->idle);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	ts_free(d);
	return rc;
}

static void stop_thread(struct ts_qos_domain *d)
{
	pthread_mutex_lock(&d->lock);
	if (!d->thread_started) {
		pthread_mutex_unlock(&d->lock);
		return;
	}
	d->stop = true;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	pthread_mutex_lock(&d->lock);
	d->thread_started = false;
	d->stop = false;
	pthread_mutex_unlock(&d->lock);
}

void ts_qos_domain_destroy(struct ts_qos_domain *d)
{
	if (!d)
		return;
	stop_thread(d);
	if (d->qs)
		ts_log(TS_LOG_ERROR, "qos", "domain destroyed with volumes still in it");
	pthread_cond_destroy(&d->idle);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	ts_free(d);
}

void ts_qos_domain_set_clock(struct ts_qos_domain *d, uint64_t (*now_ns)(void *), void *arg)
{
	struct ts_qos *q;
	uint64_t now;

	if (!d || !now_ns)
		return;
	stop_thread(d);
	pthread_mutex_lock(&d->lock);
	d->manual = true;
	d->now = now_ns;
	d->now_arg = arg;
	now = now_ns(arg);
	for (q = d->qs; q; q = q->next) {
		pthread_mutex_lock(&q->lock);
		q->last_ns = now;
		pthread_mutex_unlock(&q->lock);
	}
	reset_window(d, now);
	pthread_mutex_unlock(&d->lock);
}

void ts_qos_domain_tick(struct ts_qos_domain *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&d->lock);
	(void)pass_locked(d);
	pthread_mutex_unlock(&d->lock);
}

/* ---- volumes ---- */

/* d->lock held: the reservation count moved by \p delta. */
static void reserved_changed(struct ts_qos_domain *d, int delta, uint64_t now)
{
	unsigned before = d->nreserved;

	d->nreserved = (unsigned)((int)d->nreserved + delta);
	if (!before && d->nreserved)
		reset_window(d, now);
	else if (before && !d->nreserved)
		lift_caps(d, now);
}

int ts_qos_create(struct ts_qos_domain *d, const struct ts_qos_limits *l, struct ts_qos **out)
{
	struct ts_qos *q;
	uint64_t now;

	if (!d || !out)
		return -EINVAL;
	q = ts_calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	pthread_mutex_init(&q->lock, NULL);
	q->d = d;
	q->tail = &q->head;
	pthread_mutex_lock(&d->lock);
	now = d->now(d->now_arg);
	q->last_ns = now;
	apply_limits(q, l, now); /* not yet visible: no q->lock needed */
	q->win_mark = 0;
	q->next = d->qs;
	if (d->qs)
		d->qs->prev = q;
	d->qs = q;
	if (q->lim.reserve_iops)
		reserved_changed(d, 1, now);
	pthread_mutex_unlock(&d->lock);
	if (q->lim.reserve_iops)
		kick(d);
	*out = q;
	return 0;
}

int ts_qos_set(struct ts_qos *q, const struct ts_qos_limits *l)
{
	struct ts_qos_domain *d;
	bool was_res, is_res;
	uint64_t now;

	if (!q)
		return -EINVAL;
	d = q->d;
	pthread_mutex_lock(&d->lock);
	now = d->now(d->now_arg);
	pthread_mutex_lock(&q->lock);
	was_res = q->lim.reserve_iops != 0;
	apply_limits(q, l, now);
	is_res = q->lim.reserve_iops != 0;
	pthread_mutex_unlock(&q->lock);
	if (was_res != is_res) {
		reserved_changed(d, is_res ? 1 : -1, now);
		if (is_res && q->dyn_cap) /* reserved volumes are never capped */
			set_dyn_cap(q, 0, now);
	}
	pthread_mutex_unlock(&d->lock);
	kick(d);
	return 0;
}

void ts_qos_destroy(struct ts_qos *q)
{
	struct ts_qos_domain *d;
	struct item *items;

	if (!q)
		return;
	d = q->d;
	pthread_mutex_lock(&d->lock);
	if (q->prev)
		q->prev->next = q->next;
	else
		d->qs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	if (q->lim.reserve_iops)
		reserved_changed(d, -1, d->now(d->now_arg));
	while (d->dispatching)
		pthread_cond_wait(&d->idle, &d->lock);
	pthread_mutex_lock(&q->lock);
	items = q->head;
	q->head = NULL;
	q->tail = &q->head;
	pthread_mutex_unlock(&q->lock);
	pthread_mutex_unlock(&d->lock);
	run_items(items);
	pthread_mutex_destroy(&q->lock);
	ts_free(q);
}

int ts_qos_admit(struct ts_qos *q, bool write, uint64_t bytes, ts_qos_go go, void *arg)
{
	struct item *it;
	bool was_empty;
	uint64_t now;
	int g = atomic_load_explicit(&q->gate, memory_order_relaxed);

	if (g == GATE_OPEN)
		return 1;
	if (g == GATE_COUNT) {
		atomic_fetch_add_explicit(&q->submitted, 1, memory_order_relaxed);
		return 1;
	}
	if (!go)
		return -EINVAL;
	pthread_mutex_lock(&q->lock);
	now = q->d->now(q->d->now_arg);
	if (!q->head) {
		refill(q, now);
		if (!wait_ns(q, write, bytes)) {
			consume(q, write, bytes);
			q->admitted++;
			atomic_fetch_add_explicit(&q->submitted, 1, memory_order_relaxed);
			pthread_mutex_unlock(&q->lock);
			return 1;
		}
	}
	it = ts_malloc(sizeof(*it));
	if (!it) {
		pthread_mutex_unlock(&q->lock);
		return -ENOMEM;
	}
	it->next = NULL;
	it->go = go;
	it->arg = arg;
	it->bytes = bytes;
	it->write = write;
	it->t_enq = now;
	was_empty = !q->head;
	*q->tail = it;
	q->tail = &it->next;
	q->queued++;
	q->delayed++;
	atomic_store_explicit(&q->gate, GATE_CLOSED, memory_order_relaxed);
	pthread_mutex_unlock(&q->lock);
	if (was_empty)
		kick(q->d);
	return 0;
}

void ts_qos_done(struct ts_qos *q, bool write, uint64_t bytes, uint64_t latency_ns)
{
	if (write) {
		atomic_fetch_add_explicit(&q->wops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&q->wbytes, bytes, memory_order_relaxed);
	} else {
		atomic_fetch_add_explicit(&q->rops, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&q->rbytes, bytes, memory_order_relaxed);
	}
	if (latency_ns)
		atomic_fetch_add_explicit(&q->lat, latency_ns, memory_order_relaxed);
}

void ts_qos_stats(struct ts_qos *q, struct ts_qos_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	out->admitted = q->admitted;
	out->delayed = q->delayed;
	out->queued_now = q->queued;
	out->delay_ns_total = q->delay_ns;
	out->dyn_cap_iops = q->dyn_cap;
	pthread_mutex_unlock(&q->lock);
	out->read_ops = atomic_load_explicit(&q->rops, memory_order_relaxed);
	out->write_ops = atomic_load_explicit(&q->wops, memory_order_relaxed);
	out->read_bytes = atomic_load_explicit(&q->rbytes, memory_order_relaxed);
	out->write_bytes = atomic_load_explicit(&q->wbytes, memory_order_relaxed);
	out->lat_ns_total = atomic_load_explicit(&q->lat, memory_order_relaxed);
}
