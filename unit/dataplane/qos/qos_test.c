/* SPDX-License-Identifier: Apache-2.0 */
/*
 * QoS gate: every bucket, burst depth, FIFO order, online changes, destroy
 * with queued IOs, the unlimited fast path, IOs larger than a bucket, and
 * the reservation policy against a simulated shared device. All on a fake
 * clock (ts_qos_domain_set_clock), so nothing depends on timing except the
 * one real-clock sanity test, whose bounds are generous.
 *
 * The .c is included to reach the gate state (SPDK style).
 */
#include <criterion/criterion.h>
#include <pthread.h>

#include "dataplane/qos/qos.c"

#define MS 1000000ull
#define S 1000000000ull
#define MAXREC 4096

static uint64_t g_now;
static unsigned g_clock_reads;
static int g_order[MAXREC];
static unsigned g_fired[MAXREC];
static unsigned g_nfired;
static int g_ids[MAXREC];

static uint64_t fake_now(void *arg)
{
	(void)arg;
	g_clock_reads++;
	return g_now;
}

static void go_rec(void *arg)
{
	int id = *(int *)arg;

	cr_assert_lt(g_nfired, MAXREC);
	g_order[g_nfired++] = id;
	g_fired[id]++;
}

static struct ts_qos_domain *g_d;

static void setup(void)
{
	int i;

	g_now = 1000 * S;
	g_nfired = 0;
	memset(g_fired, 0, sizeof(g_fired));
	for (i = 0; i < MAXREC; i++)
		g_ids[i] = i;
	cr_assert_eq(ts_qos_domain_create(&g_d), 0);
	ts_qos_domain_set_clock(g_d, fake_now, NULL);
}

static void teardown(void)
{
	ts_qos_domain_destroy(g_d);
	g_d = NULL;
}

static struct ts_qos *mk(const struct ts_qos_limits *l)
{
	struct ts_qos *q;

	cr_assert_eq(ts_qos_create(g_d, l, &q), 0);
	return q;
}

static void advance(uint64_t ns)
{
	g_now += ns;
	ts_qos_domain_tick(g_d);
}

/* Admit ids [from, from + n) as \p write IOs of \p bytes; returns how many went at once. */
static int submit(struct ts_qos *q, int from, int n, bool write, uint64_t bytes)
{
	int i, now = 0, rc;

	for (i = from; i < from + n; i++) {
		rc = ts_qos_admit(q, write, bytes, go_rec, &g_ids[i]);
		cr_assert_geq(rc, 0);
		if (rc == 1) {
			g_fired[i]++;
			now++;
		}
	}
	return now;
}

TestSuite(qos, .init = setup, .fini = teardown);

Test(qos, limits_none)
{
	struct ts_qos_limits l = { 0 };

	cr_assert(ts_qos_limits_none(NULL));
	cr_assert(ts_qos_limits_none(&l));
	l.burst_ms = 10; /* a depth alone limits nothing */
	cr_assert(ts_qos_limits_none(&l));
	l.write_bps = 1;
	cr_assert_not(ts_qos_limits_none(&l));
	l = (struct ts_qos_limits){ .reserve_iops = 5 };
	cr_assert_not(ts_qos_limits_none(&l));
}

Test(qos, unlimited_fast_path)
{
	struct ts_qos *q = mk(NULL);
	struct ts_qos_stats st;
	unsigned reads;
	int i;

	cr_assert_eq(atomic_load(&q->gate), GATE_OPEN);
	reads = g_clock_reads;
	for (i = 0; i < 10000; i++)
		cr_assert_eq(ts_qos_admit(q, i & 1, 4096, go_rec, &g_ids[0]), 1);
	cr_assert_eq(g_clock_reads, reads, "the fast path read the clock");
	for (i = 0; i < 10; i++)
		ts_qos_done(q, i & 1, 4096, 1000);
	ts_qos_stats(q, &st);
	cr_assert_eq(st.admitted, 0);
	cr_assert_eq(st.queued_now, 0);
	cr_assert_eq(st.read_ops, 5);
	cr_assert_eq(st.write_ops, 5);
	cr_assert_eq(st.write_bytes, 5 * 4096);
	cr_assert_eq(st.lat_ns_total, 10000);
	cr_assert_eq(g_nfired, 0);
	ts_qos_destroy(q);
	ts_qos_destroy(NULL);
}

/* Each IOPS bucket: depth = rate * burst, then one op per 1/rate. */
Test(qos, every_iops_bucket)
{
	static const struct {
		struct ts_qos_limits l;
		bool limited_write; /* direction the bucket applies to */
		bool both;
	} cases[] = {
		{ { .iops = 100, .burst_ms = 100 }, true, true },
		{ { .read_iops = 100, .burst_ms = 100 }, false, false },
		{ { .write_iops = 100, .burst_ms = 100 }, true, false },
	};
	size_t c;

	for (c = 0; c < TS_ARRAY_SIZE(cases); c++) {
		struct ts_qos *q = mk(&cases[c].l);
		bool w = cases[c].limited_write;
		int base = (int)c * 100;

		g_nfired = 0;
		cr_assert_eq(submit(q, base, 10, w, 4096), 10, "case %zu: the burst (10 ops)", c);
		if (!cases[c].both) /* the other direction is free while nothing is queued */
			cr_assert_eq(submit(q, base + 10, 5, !w, 4096), 5);
		cr_assert_eq(submit(q, base + 20, 5, w, 4096), 0, "case %zu", c);
		advance(9 * MS);
		cr_assert_eq(g_nfired, 0, "case %zu: released before 10 ms", c);
		advance(1 * MS);
		cr_assert_eq(g_nfired, 1, "case %zu", c);
		advance(40 * MS);
		cr_assert_eq(g_nfired, 5, "case %zu", c);
		ts_qos_destroy(q);
	}
}

/* Each bandwidth bucket, and that bytes cost bytes. */
Test(qos, every_bps_bucket)
{
	static const struct {
		struct ts_qos_limits l;
		bool limited_write;
		bool both;
	} cases[] = {
		{ { .bps = 1 << 20 }, false, true },
		{ { .read_bps = 1 << 20 }, false, false },
		{ { .write_bps = 1 << 20 }, true, false },
	};
	size_t c;

	for (c = 0; c < TS_ARRAY_SIZE(cases); c++) {
		struct ts_qos *q = mk(&cases[c].l);
		bool w = cases[c].limited_write;
		int base = (int)c * 400;

		g_nfired = 0;
		/* default burst: 1 s of rate = 256 IOs of 4 KiB */
		cr_assert_eq(submit(q, base, 256, w, 4096), 256, "case %zu", c);
		if (!cases[c].both)
			cr_assert_eq(submit(q, base + 256, 4, !w, 1 << 20), 4);
		cr_assert_eq(submit(q, base + 260, 8, w, 4096), 0);
		advance(3 * MS); /* 4096 B at 1 MiB/s: 3.9 ms */
		cr_assert_eq(g_nfired, 0, "case %zu", c);
		advance(1 * MS);
		cr_assert_eq(g_nfired, 1, "case %zu", c);
		advance(28 * MS);
		cr_assert_eq(g_nfired, 8, "case %zu", c);
		/* unmaps (0-byte writes) pass a bandwidth bucket untouched once the queue is empty */
		if (cases[c].limited_write || cases[c].both)
			cr_assert_eq(submit(q, base + 300, 3, true, 0), 3);
		ts_qos_destroy(q);
	}
}

Test(qos, burst_depth)
{
	struct ts_qos_limits l = { .iops = 100, .burst_ms = 500 };
	struct ts_qos *q = mk(&l);

	cr_assert_eq(submit(q, 0, 60, true, 4096), 50);
	advance(3600 * S); /* releases the 10 queued */
	cr_assert_eq(g_nfired, 10);
	advance(3600 * S); /* idle for an hour: the bucket still holds only 50 */
	cr_assert_eq(submit(q, 100, 60, true, 4096), 50);
	ts_qos_destroy(q);

	l = (struct ts_qos_limits){ .iops = 100 }; /* default burst: 1000 ms */
	q = mk(&l);
	cr_assert_eq(submit(q, 200, 120, false, 4096), 100);
	ts_qos_destroy(q);

	l = (struct ts_qos_limits){ .iops = 3, .burst_ms = 1 }; /* depth below one op: one */
	q = mk(&l);
	cr_assert_eq(submit(q, 400, 3, false, 4096), 1);
	ts_qos_destroy(q);
}

Test(qos, fifo_no_overtaking)
{
	struct ts_qos_limits l = { .read_iops = 1000, .burst_ms = 1 };
	struct ts_qos *q = mk(&l);
	struct ts_qos_stats st;
	int i, id = 0, got = 0;

	/* one read goes, then reads and (unlimited) writes interleaved all queue */
	cr_assert_eq(submit(q, id++, 1, false, 4096), 1);
	for (i = 0; i < 200; i++) {
		got += submit(q, id, 1, (i % 3) == 1, 4096);
		id++;
	}
	cr_assert_eq(got, 0, "a write overtook queued reads");
	for (i = 0; i < 400 && g_nfired < 200; i++)
		advance(MS / 2);
	cr_assert_eq(g_nfired, 200);
	for (i = 0; i < 200; i++) {
		cr_assert_eq(g_order[i], i + 1, "out of order at %d", i);
		cr_assert_eq(g_fired[i + 1], 1);
	}
	ts_qos_stats(q, &st);
	cr_assert_eq(st.admitted, 201);
	cr_assert_eq(st.delayed, 200);
	cr_assert_eq(st.queued_now, 0);
	cr_assert_gt(st.delay_ns_total, 0);
	/* drained and no bucket in the way of writes: still gated (read bucket on) */
	cr_assert_eq(atomic_load(&q->gate), GATE_CLOSED);
	ts_qos_destroy(q);
}

Test(qos, big_io_never_starves)
{
	struct ts_qos_limits l = { .bps = 64 << 10 }; /* depth 64 KiB */
	struct ts_qos *q = mk(&l);

	/* a 1 MiB IO from a full bucket goes at once and drives it to -960 KiB */
	cr_assert_eq(submit(q, 0, 1, true, 1 << 20), 1);
	cr_assert_eq(submit(q, 1, 1, true, 4096), 0);
	advance(14 * S);
	cr_assert_eq(g_nfired, 0);
	advance(2 * S); /* (960 + 4) KiB at 64 KiB/s: 15.06 s */
	cr_assert_eq(g_nfired, 1);
	/* a big IO behind a partly drained bucket (60 KiB left) waits until it is full */
	cr_assert_eq(submit(q, 2, 1, true, 2 << 20), 0);
	advance(50 * MS);
	cr_assert_eq(g_nfired, 1);
	advance(20 * MS); /* 4 KiB at 64 KiB/s: 62.5 ms */
	cr_assert_eq(g_nfired, 2);
	cr_assert_eq(g_order[1], 2);
	ts_qos_destroy(q);
}

Test(qos, set_online_with_queued)
{
	struct ts_qos_limits l = { .iops = 10, .burst_ms = 100 }; /* depth 1 */
	struct ts_qos_limits fast = { .iops = 1000, .burst_ms = 100 };
	struct ts_qos *q = mk(&l);
	int i;

	cr_assert_eq(submit(q, 0, 41, true, 4096), 1);
	advance(100 * MS);
	cr_assert_eq(g_nfired, 1);
	/* raise: the drained bucket refills at the new rate */
	cr_assert_eq(ts_qos_set(q, &fast), 0);
	advance(10 * MS);
	cr_assert_eq(g_nfired, 11);
	/* lower again: tokens clamp to the new depth */
	cr_assert_eq(ts_qos_set(q, &l), 0);
	advance(100 * MS);
	cr_assert_eq(g_nfired, 12);
	/* lift: everything queued goes at the next pass, then the gate opens */
	cr_assert_eq(ts_qos_set(q, NULL), 0);
	cr_assert_eq(atomic_load(&q->gate), GATE_CLOSED); /* still queued */
	ts_qos_domain_tick(g_d);
	cr_assert_eq(g_nfired, 40);
	for (i = 0; i < 40; i++)
		cr_assert_eq(g_order[i], i + 1);
	cr_assert_eq(atomic_load(&q->gate), GATE_OPEN);
	/* limiting an unlimited volume: the new bucket starts full */
	cr_assert_eq(ts_qos_set(q, &l), 0);
	cr_assert_eq(submit(q, 100, 2, false, 4096), 1);
	ts_qos_destroy(q);
	cr_assert_eq(g_fired[101], 1);
}

Test(qos, destroy_releases_queued_once)
{
	struct ts_qos_limits l = { .write_iops = 1, .burst_ms = 1000 };
	struct ts_qos *q = mk(&l), *other = mk(&l);
	int i;

	cr_assert_eq(submit(q, 0, 300, true, 4096), 1);
	cr_assert_eq(submit(other, 1000, 5, true, 4096), 1);
	advance(1500 * MS);
	cr_assert_eq(g_nfired, 2);
	ts_qos_destroy(q);
	cr_assert_eq(g_nfired, 300);
	for (i = 0; i < 300; i++)
		cr_assert_eq(g_fired[i], 1, "id %d fired %u times", i, g_fired[i]);
	/* the other volume is untouched */
	for (i = 1001; i < 1005; i++)
		cr_assert_eq(g_fired[i], i == 1001 ? 1 : 0);
	ts_qos_destroy(other);
	for (i = 1000; i < 1005; i++)
		cr_assert_eq(g_fired[i], 1);
}

Test(qos, queue_alloc_failure)
{
	struct ts_qos_limits l = { .iops = 1, .burst_ms = 1000 };
	struct ts_qos *q = mk(&l);
	struct ts_qos_stats st;

	cr_assert_eq(submit(q, 0, 1, true, 4096), 1);
	ts_alloc_fail_after(0);
	cr_assert_eq(ts_qos_admit(q, true, 4096, go_rec, &g_ids[1]), -ENOMEM);
	ts_alloc_fail_after(-1);
	ts_qos_stats(q, &st);
	cr_assert_eq(st.queued_now, 0);
	cr_assert_eq(ts_qos_admit(q, true, 4096, go_rec, &g_ids[2]), 0);
	ts_qos_destroy(q);
	cr_assert_eq(g_fired[1], 0);
	cr_assert_eq(g_fired[2], 1);
}

/*
 * Reservation against a simulated device: CAP ops per ms, served round
 * robin between the volumes that have IOs at the device. A (reserve 7000
 * IOPS) and B (nothing) each keep QD 32 outstanding. Fair share is 5000
 * each, so A's reservation is unmet until B is capped.
 */
struct sim {
	struct ts_qos *q;
	int outstanding, at_dev, qd;
	uint64_t done;
};

static struct sim g_sim[2];

static void sim_go(void *arg)
{
	((struct sim *)arg)->at_dev++;
}

static void sim_ms(void)
{
	int k, served = 0, turn = 0, idle = 0;

	while (served < 10 && idle < 2) {
		struct sim *s = &g_sim[turn];

		turn ^= 1;
		if (!s->at_dev) {
			idle++;
			continue;
		}
		idle = 0;
		s->at_dev--;
		s->outstanding--;
		s->done++;
		ts_qos_done(s->q, true, 4096, 100000);
		served++;
	}
	for (k = 0; k < 2; k++) {
		struct sim *s = &g_sim[k];

		while (s->outstanding < s->qd) {
			int rc = ts_qos_admit(s->q, true, 4096, sim_go, s);

			cr_assert_geq(rc, 0);
			s->outstanding++;
			if (rc == 1)
				s->at_dev++;
		}
	}
	advance(MS);
}

/* Run \p ms steps; returns each volume's IOPS over them. */
static void sim_run(int ms, double iops[2], uint64_t *min_cap, uint64_t *max_cap)
{
	uint64_t d0 = g_sim[0].done, d1 = g_sim[1].done;
	int i;

	for (i = 0; i < ms; i++) {
		struct ts_qos_stats st;

		sim_ms();
		ts_qos_stats(g_sim[1].q, &st);
		if (min_cap && st.dyn_cap_iops && (!*min_cap || st.dyn_cap_iops < *min_cap))
			*min_cap = st.dyn_cap_iops;
		if (max_cap && st.dyn_cap_iops > *max_cap)
			*max_cap = st.dyn_cap_iops;
	}
	iops[0] = (double)(g_sim[0].done - d0) * 1000.0 / ms;
	iops[1] = (double)(g_sim[1].done - d1) * 1000.0 / ms;
}

Test(qos, reservation_caps_the_unreserved)
{
	struct ts_qos_limits res = { .reserve_iops = 7000 };
	struct ts_qos_stats st;
	uint64_t min_cap = 0, max_cap = 0;
	double iops[2];

	memset(g_sim, 0, sizeof(g_sim));
	g_sim[0].q = mk(NULL);
	g_sim[1].q = mk(NULL);
	g_sim[0].qd = g_sim[1].qd = 32;

	/* no reservation: fair share, no cap, no periodic pass */
	sim_run(1000, iops, NULL, NULL);
	cr_assert_float_eq(iops[0], 5000, 200);
	cr_assert_float_eq(iops[1], 5000, 200);
	ts_qos_stats(g_sim[1].q, &st);
	cr_assert_eq(st.dyn_cap_iops, 0);
	cr_assert_eq(atomic_load(&g_sim[1].q->gate), GATE_OPEN);

	/* reservation: B's cap appears and comes down; A gets well above its fair share */
	cr_assert_eq(ts_qos_set(g_sim[0].q, &res), 0);
	sim_run(1500, iops, &min_cap, &max_cap);
	cr_assert_gt(max_cap, 0, "B was never capped");
	cr_assert_lt(min_cap, max_cap, "B's cap never went down");
	cr_assert_geq(min_cap, 50, "below the floor");
	sim_run(2000, iops, NULL, NULL);
	cr_log_info("with reservation: A %.0f B %.0f IOPS (cap %llu..%llu)", iops[0], iops[1],
		    (unsigned long long)min_cap, (unsigned long long)max_cap);
	cr_assert_geq(iops[0], 6300, "A got %.0f IOPS", iops[0]);
	cr_assert_geq(iops[1], 1000, "B starved: %.0f IOPS", iops[1]);

	/* A stops: its reservation is met (no demand), B's cap grows and goes away */
	g_sim[0].qd = 0;
	sim_run(3000, iops, NULL, NULL);
	ts_qos_stats(g_sim[1].q, &st);
	cr_assert_eq(st.dyn_cap_iops, 0, "cap still %llu", (unsigned long long)st.dyn_cap_iops);
	sim_run(500, iops, NULL, NULL);
	cr_assert_float_eq(iops[1], 10000, 100);

	/* A comes back, then loses its reservation: caps lifted at once */
	g_sim[0].qd = 32;
	sim_run(1000, iops, NULL, NULL);
	ts_qos_stats(g_sim[1].q, &st);
	cr_assert_gt(st.dyn_cap_iops, 0);
	cr_assert_eq(ts_qos_set(g_sim[0].q, NULL), 0);
	ts_qos_stats(g_sim[1].q, &st);
	cr_assert_eq(st.dyn_cap_iops, 0);
	sim_run(10, iops, NULL, NULL);
	cr_assert_eq(atomic_load(&g_sim[1].q->gate), GATE_OPEN);
	g_sim[0].qd = g_sim[1].qd = 0;
	sim_run(10, iops, NULL, NULL);
	ts_qos_destroy(g_sim[0].q);
	ts_qos_destroy(g_sim[1].q);
}

/* ---- real clock: the timer thread ---- */

struct rt {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int fired;
};

static void rt_go(void *arg)
{
	struct rt *r = arg;

	pthread_mutex_lock(&r->lock);
	r->fired++;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

Test(qos_rt, timer_thread_releases_at_the_rate)
{
	struct ts_qos_limits l = { .write_iops = 200, .burst_ms = 50 }; /* depth 10 */
	struct rt r = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0 };
	struct ts_qos_domain *d;
	struct ts_qos *q;
	struct ts_qos_stats st;
	uint64_t t0, el;
	int i, now = 0;

	cr_assert_eq(ts_qos_domain_create(&d), 0);
	cr_assert_eq(ts_qos_create(d, &l, &q), 0);
	t0 = ts_now_ns();
	for (i = 0; i < 300; i++) {
		int rc = ts_qos_admit(q, true, 4096, rt_go, &r);
		cr_assert_geq(rc, 0);
		now += rc;
	}
	/* the 10-op burst, plus whatever refilled while submitting (slow under valgrind) */
	cr_assert_geq(now, 10);
	cr_assert_lt(now, 150);
	pthread_mutex_lock(&r.lock);
	while (r.fired < 300 - now) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 30;
		cr_assert_eq(pthread_cond_timedwait(&r.cond, &r.lock, &ts), 0, "stuck at %d", r.fired);
	}
	pthread_mutex_unlock(&r.lock);
	el = ts_now_ns() - t0;
	/* 300 ops, 10 of them burst, at 200/s: 1.45 s whoever admitted them; never faster
	 * than the rate, slower only by load */
	cr_assert_geq(el, 1300 * MS, "released too fast: %llu ms", (unsigned long long)(el / MS));
	cr_assert_leq(el, 10 * S);
	ts_qos_stats(q, &st);
	cr_assert_eq(st.queued_now, 0);
	cr_assert_eq(st.delayed, (uint64_t)(300 - now));
	cr_assert_eq(st.admitted, 300);
	ts_qos_destroy(q);
	ts_qos_domain_destroy(d);
	cr_assert_eq(r.fired, 300 - now);
}
