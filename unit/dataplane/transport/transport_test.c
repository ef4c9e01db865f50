/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote member over iSCSI against an in-process Tessera target on loopback:
 * round trips (read/write/FUA/flush/unmap), many IOs in flight, the target
 * going away mid-IO (errors, not hangs), coming back (IO works again), a
 * target that accepts commands but never answers (per-IO timeout), and CHAP.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/iscsi/lun_file.h"
#include "dataplane/transport/transport.h"

#define IQN "iqn.2026-01.io.tessera:transport-unit"
#define USER "node1"
#define SECRET "secret-of-node-1"
#define LUN_SIZE (8u << 20)
#define BS 4096u

static struct ts_iscsi_server *g_srv;
static uint16_t g_port;
static char g_url[160];

/* A LUN whose IOs never complete until released: a hung peer. */
struct hole {
	pthread_mutex_t lock;
	struct ts_iscsi_lun_io *held[256];
	unsigned n;
};

static int hole_op(void *ctx, struct ts_iscsi_lun_io *io)
{
	struct hole *h = ctx;
	int rc = 0;

	pthread_mutex_lock(&h->lock);
	if (h->n < 256)
		h->held[h->n++] = io;
	else
		rc = -EBUSY;
	pthread_mutex_unlock(&h->lock);
	return rc;
}

static void hole_release(struct hole *h)
{
	pthread_mutex_lock(&h->lock);
	while (h->n) {
		struct ts_iscsi_lun_io *io = h->held[--h->n];
		pthread_mutex_unlock(&h->lock);
		io->cb(io, -EIO);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
}

static const struct ts_iscsi_lun_ops g_hole_ops = {
	.read = hole_op, .write = hole_op, .flush = hole_op, .unmap = hole_op,
};

static void start_at(uint16_t port, bool chap)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = port, .threads = 1 };
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	struct ts_iscsi_file_lun *fl;
	struct ts_iscsi_lun_info info = { .size = LUN_SIZE, .block_size = BS, .thin = true };

	if (chap) {
		to.chap_user = USER;
		to.chap_secret = SECRET;
	}
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	g_port = ts_iscsi_server_port(g_srv);
	snprintf(g_url, sizeof(g_url), "iscsi://127.0.0.1:%u/%s/0", g_port, IQN);
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to), 0);
	cr_assert_eq(ts_iscsi_file_lun_create(NULL, LUN_SIZE, 0, &fl), 0);
	memset(info.uuid, 0x3c, 16);
	cr_assert_eq(ts_iscsi_lun_add(g_srv, IQN, 0, ts_iscsi_file_lun_ops(), fl, &info), 0);
}

static void stop(void)
{
	ts_iscsi_server_destroy(g_srv);
	g_srv = NULL;
}

static struct ts_member *open_member(uint64_t size, uint32_t timeout_ms)
{
	struct ts_transport_opts o = {
		.url = g_url, .chap_user = USER, .chap_secret = SECRET, .node_id = 7,
		.size = size, .block_size = size ? BS : 0, .io_timeout_ms = timeout_ms,
		.connect_timeout_ms = 500, .reconnect_min_ms = 20, .reconnect_max_ms = 200,
	};
	struct ts_member *m = NULL;

	cr_assert_eq(ts_transport_iscsi_member(&o, &m), 0);
	return m;
}

/* Completion tracking for async batches. */
struct batch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned done, ok, member_failed, other;
};

static void batch_init(struct batch *b)
{
	memset(b, 0, sizeof(*b));
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
}

static void batch_cb(struct ts_member_io *io, int status)
{
	struct batch *b = io->cb_arg;

	pthread_mutex_lock(&b->lock);
	b->done++;
	if (status == 0)
		b->ok++;
	else if (status == TS_ERR_MEMBER_FAILED)
		b->member_failed++;
	else
		b->other++;
	pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

/* Wait for n completions; false if they did not all arrive within limit_s (a hang). */
static bool batch_wait(struct batch *b, unsigned n, unsigned limit_s)
{
	struct timespec ts;
	bool all;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += limit_s;
	pthread_mutex_lock(&b->lock);
	while (b->done < n && pthread_cond_timedwait(&b->cond, &b->lock, &ts) == 0)
		;
	all = b->done >= n;
	pthread_mutex_unlock(&b->lock);
	return all;
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 131u) ^ (seed * 2654435761u) ^ (i >> 9));
}

Test(transport, probe_reads_capacity_and_round_trips)
{
	start_at(0, true);
	struct ts_member *m = open_member(0, 2000);
	const struct ts_member_info *mi = ts_member_info(m);
	cr_assert_eq(mi->size, LUN_SIZE);
	cr_assert_eq(mi->block_size, BS);
	cr_assert_eq(mi->node_id, 7u);

	uint8_t *w = ts_malloc(64 * 1024), *r = ts_malloc(64 * 1024);
	fill(w, 64 * 1024, 1);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, 0, 1 << 20, 64 * 1024, w), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, TS_MEMBER_FUA, LUN_SIZE - BS, BS, w), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_FLUSH, 0, 0, 0, NULL), 0);
	memset(r, 0, 64 * 1024);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 1 << 20, 64 * 1024, r), 0);
	cr_assert_eq(memcmp(w, r, 64 * 1024), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, LUN_SIZE - BS, BS, r), 0);
	cr_assert_eq(memcmp(w, r, BS), 0);

	/* Unmap the middle of the written range: zeroes there, data around it. */
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_UNMAP, 0, (1 << 20) + 4 * BS, 4 * BS, NULL), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 1 << 20, 64 * 1024, r), 0);
	cr_assert_eq(memcmp(w, r, 4 * BS), 0);
	for (unsigned i = 4 * BS; i < 8 * BS; i++)
		cr_assert_eq(r[i], 0, "byte %u not zero after unmap", i);
	cr_assert_eq(memcmp(w + 8 * BS, r + 8 * BS, 64 * 1024 - 8 * BS), 0);

	/* Out of range: the target's ILLEGAL REQUEST is -EINVAL, not a member failure. */
	struct ts_transport_stats st;
	cr_assert_eq(ts_transport_member_stats(m, &st), 0);
	cr_assert_eq(st.connected, 1u);
	cr_assert_eq(st.connects, 1u);
	cr_assert_eq(st.ios_failed, 0u);

	ts_free(w);
	ts_free(r);
	ts_member_destroy(m);
	stop();
}

Test(transport, many_in_flight_distinct_blocks)
{
	enum { N = 128 };
	start_at(0, true);
	struct ts_member *m = open_member(LUN_SIZE, 5000);
	uint8_t *w = ts_malloc((size_t)N * BS), *r = ts_calloc(N, BS);
	struct ts_member_io *ios = ts_calloc(N, sizeof(*ios));
	struct batch b;

	fill(w, (size_t)N * BS, 2);
	batch_init(&b);
	/* Scattered offsets so neighbouring requests are not contiguous. */
	for (unsigned i = 0; i < N; i++) {
		ios[i] = (struct ts_member_io){ .op = TS_MEMBER_WRITE, .offset = (uint64_t)((i * 37u) % N) * BS * 2,
						.len = BS, .buf = w + (size_t)i * BS, .cb = batch_cb, .cb_arg = &b };
		cr_assert_eq(ts_member_submit(m, &ios[i]), 0);
	}
	cr_assert(batch_wait(&b, N, 30));
	cr_assert_eq(b.ok, (unsigned)N);
	batch_init(&b);
	for (unsigned i = 0; i < N; i++) {
		ios[i].op = TS_MEMBER_READ;
		ios[i].buf = r + (size_t)i * BS;
		cr_assert_eq(ts_member_submit(m, &ios[i]), 0);
	}
	cr_assert(batch_wait(&b, N, 30));
	cr_assert_eq(b.ok, (unsigned)N);
	cr_assert_eq(memcmp(w, r, (size_t)N * BS), 0);

	ts_free(ios);
	ts_free(w);
	ts_free(r);
	ts_member_destroy(m);
	stop();
}

/*
 * A closed loop of SLOTS writers: each completion resubmits (from the
 * member's event thread) until the first error, which retires the slot.
 */
enum { SLOTS = 32 };
struct loop {
	struct ts_member *m;
	struct ts_member_io ios[SLOTS];
	uint8_t *buf;
	struct batch retired; /* one completion per retired slot, with its error */
	atomic_uint ok;
};

static void loop_cb(struct ts_member_io *io, int status)
{
	struct loop *l = io->cb_arg;

	if (status == 0) {
		atomic_fetch_add(&l->ok, 1);
		io->offset = (io->offset + SLOTS * BS) % LUN_SIZE;
		if (ts_member_submit(l->m, io) == 0)
			return;
		status = -EIO;
	}
	io->cb_arg = &l->retired;
	batch_cb(io, status);
}

Test(transport, target_stops_mid_io_then_returns)
{
	/* a fixed port below the ephemeral range: our reconnect attempts cannot take it meanwhile */
	uint16_t port = (uint16_t)(28000 + getpid() % 4000);
	start_at(port, true);
	struct loop *l = ts_calloc(1, sizeof(*l));
	struct ts_transport_stats st;
	uint8_t *r = ts_malloc(BS);
	int rc;

	l->m = open_member(LUN_SIZE, 800);
	l->buf = ts_malloc((size_t)SLOTS * BS);
	fill(l->buf, (size_t)SLOTS * BS, 3);
	batch_init(&l->retired);
	for (unsigned i = 0; i < SLOTS; i++) {
		l->ios[i] = (struct ts_member_io){ .op = TS_MEMBER_WRITE, .offset = (uint64_t)i * BS,
						   .len = BS, .buf = l->buf + (size_t)i * BS,
						   .cb = loop_cb, .cb_arg = l };
		cr_assert_eq(ts_member_submit(l->m, &l->ios[i]), 0);
	}
	/* Let the loop run, then pull the target out from under it. */
	for (int i = 0; i < 200 && atomic_load(&l->ok) < 2000; i++)
		usleep(10000);
	cr_assert_gt(atomic_load(&l->ok), 0u);
	stop();
	cr_assert(batch_wait(&l->retired, SLOTS, 20), "IOs hung after the target stopped: %u/%u",
		  l->retired.done, SLOTS);
	cr_assert_eq(l->retired.member_failed, (unsigned)SLOTS, "failed=%u other=%u",
		     l->retired.member_failed, l->retired.other);

	/* While it is down, IO fails as a member failure (after the timeout at most). */
	rc = ts_member_rw_sync(l->m, TS_MEMBER_READ, 0, 0, BS, r);
	cr_assert_eq(rc, TS_ERR_MEMBER_FAILED, "rc=%d", rc);
	cr_assert_eq(ts_transport_member_stats(l->m, &st), 0);
	cr_assert_eq(st.connected, 0u);
	cr_assert_eq(st.inflight, 0u);

	/* Target back on the same portal (a RAM LUN: fresh zeroes): IO works again. */
	start_at(port, true);
	rc = TS_ERR_MEMBER_FAILED;
	for (int tries = 0; tries < 50 && rc == TS_ERR_MEMBER_FAILED; tries++)
		rc = ts_member_rw_sync(l->m, TS_MEMBER_WRITE, TS_MEMBER_FUA, 2 * BS, BS, l->buf);
	cr_assert_eq(rc, 0, "rc=%d", rc);
	memset(r, 0, BS);
	cr_assert_eq(ts_member_rw_sync(l->m, TS_MEMBER_READ, 0, 2 * BS, BS, r), 0);
	cr_assert_eq(memcmp(r, l->buf, BS), 0);
	cr_assert_eq(ts_transport_member_stats(l->m, &st), 0);
	cr_assert_eq(st.connected, 1u);
	cr_assert_geq(st.connects, 2u);

	ts_member_destroy(l->m);
	ts_free(l->buf);
	ts_free(l);
	ts_free(r);
	stop();
}

Test(transport, hung_target_times_out_as_member_failure)
{
	enum { N = 8 };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 1 };
	struct ts_iscsi_target_opts to = { .iqn = IQN, .chap_user = USER, .chap_secret = SECRET };
	struct ts_iscsi_lun_info info = { .size = LUN_SIZE, .block_size = BS };
	struct hole h = { .n = 0 };
	struct ts_transport_stats st;
	struct batch b;

	pthread_mutex_init(&h.lock, NULL);
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	g_port = ts_iscsi_server_port(g_srv);
	snprintf(g_url, sizeof(g_url), "iscsi://127.0.0.1:%u/%s/0", g_port, IQN);
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to), 0);
	cr_assert_eq(ts_iscsi_lun_add(g_srv, IQN, 0, &g_hole_ops, &h, &info), 0);

	struct ts_member *m = open_member(LUN_SIZE, 300);
	uint8_t *buf = ts_calloc(N, BS);
	struct ts_member_io ios[N];
	batch_init(&b);
	for (unsigned i = 0; i < N; i++) {
		ios[i] = (struct ts_member_io){ .op = i % 2 ? TS_MEMBER_READ : TS_MEMBER_WRITE,
						.offset = (uint64_t)i * BS, .len = BS,
						.buf = buf + (size_t)i * BS, .cb = batch_cb, .cb_arg = &b };
		cr_assert_eq(ts_member_submit(m, &ios[i]), 0);
	}
	cr_assert(batch_wait(&b, N, 20), "IOs to a hung target never completed: %u/%u", b.done, N);
	cr_assert_eq(b.member_failed, (unsigned)N, "ok=%u failed=%u other=%u", b.ok, b.member_failed,
		     b.other);
	cr_assert_eq(ts_transport_member_stats(m, &st), 0);
	cr_assert_geq(st.timeouts, 1u);

	ts_member_destroy(m);
	hole_release(&h);
	stop();
	ts_free(buf);
	pthread_mutex_destroy(&h.lock);
}

Test(transport, chap_wrong_secret_is_refused)
{
	start_at(0, true);
	struct ts_transport_opts o = { .url = g_url, .chap_user = USER, .chap_secret = "not-the-secret",
				       .connect_timeout_ms = 500, .io_timeout_ms = 300 };
	struct ts_member *m = NULL;
	struct ts_transport_stats st;
	uint8_t buf[BS];

	/* Probe path: create fails. */
	cr_assert_eq(ts_transport_iscsi_member(&o, &m), TS_ERR_MEMBER_FAILED);
	cr_assert_null(m);
	/* No CHAP at all against a CHAP target: refused too. */
	o.chap_user = o.chap_secret = NULL;
	cr_assert_eq(ts_transport_iscsi_member(&o, &m), TS_ERR_MEMBER_FAILED);

	/* Known-size path: create succeeds, IO fails as a member failure, logins keep failing. */
	o.chap_user = USER;
	o.chap_secret = "not-the-secret";
	o.size = LUN_SIZE;
	o.block_size = BS;
	cr_assert_eq(ts_transport_iscsi_member(&o, &m), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, BS, buf), TS_ERR_MEMBER_FAILED);
	cr_assert_eq(ts_transport_member_stats(m, &st), 0);
	cr_assert_eq(st.connects, 0u);
	cr_assert_gt(st.connect_failures, 0u);
	ts_member_destroy(m);

	/* Right secret: works. */
	m = open_member(0, 2000);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, BS, buf), 0);
	ts_member_destroy(m);
	stop();
}

Test(transport, bad_options)
{
	struct ts_member *m = NULL;
	struct ts_transport_opts o = { .url = "not a url", .size = LUN_SIZE };

	cr_assert_eq(ts_transport_iscsi_member(NULL, &m), -EINVAL);
	cr_assert_eq(ts_transport_iscsi_member(&o, &m), -EINVAL);
	o.url = "iscsi://127.0.0.1:1/iqn.x:y/0";
	o.chap_user = "u"; /* secret missing */
	cr_assert_eq(ts_transport_iscsi_member(&o, &m), -EINVAL);
	cr_assert_null(m);
	cr_assert_eq(ts_transport_member_stats(NULL, NULL), -EINVAL);
}

Test(transport, allocation_failures)
{
	start_at(0, true);
	struct ts_transport_opts o = { .url = g_url, .chap_user = USER, .chap_secret = SECRET,
				       .size = LUN_SIZE, .block_size = BS };
	struct ts_member *m = NULL;
	uint8_t buf[BS];
	int rc;

	/* create: every early failure is a clean -ENOMEM (ASan checks for leaks) */
	for (long n = 0; n < 8; n++) {
		ts_alloc_fail_after(n);
		rc = ts_transport_iscsi_member(&o, &m);
		ts_alloc_fail_after(-1);
		if (rc == 0) {
			ts_member_destroy(m);
			m = NULL;
			break;
		}
		cr_assert_eq(rc, -ENOMEM, "n=%ld rc=%d", n, rc);
		cr_assert_null(m);
	}
	/* submit: -ENOMEM and no callback; then IO works */
	m = open_member(LUN_SIZE, 2000);
	struct batch b;
	struct ts_member_io io = { .op = TS_MEMBER_READ, .len = BS, .buf = buf, .cb = batch_cb };
	batch_init(&b);
	io.cb_arg = &b;
	ts_alloc_fail_after(0);
	rc = ts_member_submit(m, &io);
	ts_alloc_fail_after(-1);
	cr_assert_eq(rc, -ENOMEM);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, BS, buf), 0);
	cr_assert_eq(b.done, 0u);
	ts_member_destroy(m);
	stop();
}
