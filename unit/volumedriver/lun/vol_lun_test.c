/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volume LUN provider: QoS enforcement and persistent reservations. A
 * thin volume on a RAM member, exported on a loopback iSCSI server with a QoS
 * domain. Most QoS tests drive the provider's ops table directly (the .c is
 * included to reach it), with a closed loop of 16 IOs from the test thread;
 * one logs in with libiscsi to check that unexport waits for IOs queued in
 * the gate. Persistent reservations, through two libiscsi sessions:
 * registrations and the holder survive a new server and a pool reopen (they
 * live in the volume attribute), clones start without, and a legacy PR file
 * is imported once.
 */
#include <criterion/criterion.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#include "unit/support/member/test_member.h"
#include "volumedriver/lun/vol_lun.c"

#define BS 4096
#define VOL_BLOCKS 4096ull /* 16 MiB */
#define QD 16
#define IQN "iqn.2026-01.io.tessera:vol-lun-test"

static struct ts_member *g_m;
static struct ts_vpool *g_pool;
static struct ts_iscsi_server *g_srv;
static struct ts_qos_domain *g_dom;
static struct ts_vol_lun *g_lun;
static char g_pr[64];
static uint64_t g_vol;

static void setup(void)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 2 };
	struct tmem *t;

	cr_assert_eq(tm_ram_create(64ull << 20, BS, 1, &g_m, &t), 0);
	cr_assert_eq(ts_vpool_format(g_m), 0);
	cr_assert_eq(ts_vpool_open(g_m, &g_pool), 0);
	cr_assert_eq(ts_vpool_volume_create(g_pool, "v", VOL_BLOCKS * BS, 0, &g_vol), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	cr_assert_eq(ts_qos_domain_create(&g_dom), 0);
	snprintf(g_pr, sizeof(g_pr), "/tmp/ts-vol-lun-pr-%d", (int)getpid());
}

static void teardown(void)
{
	ts_iscsi_server_destroy(g_srv);
	ts_qos_domain_destroy(g_dom);
	ts_vpool_close(g_pool);
	ts_member_destroy(g_m);
	unlink(g_pr);
}

static void export(const struct ts_qos_limits *lim, struct ts_qos_domain *dom)
{
	struct ts_vol_lun_opts o = { .iqn = IQN, .pr_state_path = g_pr, .qos_domain = dom };

	if (lim)
		o.qos = *lim;
	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, &o, &g_lun), 0);
}

TestSuite(vol_lun, .init = setup, .fini = teardown);

/* ---- a closed loop on the ops table ---- */

struct loop {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ts_iscsi_lun_io io[QD];
	uint8_t *buf;
	int free[QD], nfree;
	uint64_t done, errors;
};

static struct loop g_loop = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER };

static void loop_cb(struct ts_iscsi_lun_io *io, int status)
{
	struct loop *lp = io->cb_arg;

	pthread_mutex_lock(&lp->lock);
	lp->free[lp->nfree++] = (int)(io - lp->io);
	lp->done++;
	if (status)
		lp->errors++;
	pthread_cond_signal(&lp->cond);
	pthread_mutex_unlock(&lp->lock);
}

static void loop_init(void)
{
	int i;

	g_loop.buf = ts_aligned_alloc(BS, (size_t)QD * BS);
	cr_assert_not_null(g_loop.buf);
	memset(g_loop.buf, 0xab, (size_t)QD * BS);
	for (i = 0; i < QD; i++)
		g_loop.free[i] = i;
	g_loop.nfree = QD;
}

/* Keep QD writes in flight for \p ms; returns the completions in that time (drained). */
static uint64_t loop_run(unsigned ms)
{
	uint64_t end = ts_now_ns() + (uint64_t)ms * 1000000ull, d0, seq = 0;

	pthread_mutex_lock(&g_loop.lock);
	d0 = g_loop.done;
	while (ts_now_ns() < end) {
		struct ts_iscsi_lun_io *io;
		int i;

		if (!g_loop.nfree) {
			pthread_cond_wait(&g_loop.cond, &g_loop.lock);
			continue;
		}
		i = g_loop.free[--g_loop.nfree];
		pthread_mutex_unlock(&g_loop.lock);
		io = &g_loop.io[i];
		memset(io, 0, sizeof(*io));
		io->offset = (seq++ * 7919 % VOL_BLOCKS) * BS;
		io->len = BS;
		io->buf = g_loop.buf + (size_t)i * BS;
		io->cb = loop_cb;
		io->cb_arg = &g_loop;
		cr_assert_eq(g_vol_lun_ops.write(g_lun, io), 0);
		pthread_mutex_lock(&g_loop.lock);
	}
	while (g_loop.nfree < QD)
		pthread_cond_wait(&g_loop.cond, &g_loop.lock);
	d0 = g_loop.done - d0;
	pthread_mutex_unlock(&g_loop.lock);
	return d0;
}

Test(vol_lun, write_iops_limit_and_lift_online)
{
	struct ts_qos_limits lim = { .write_iops = 200, .burst_ms = 50 };
	struct ts_qos_stats st;
	uint64_t n, lifted;

	export(&lim, g_dom);
	loop_init();
	/* 1.5 s at 200 IOPS: 300 (+ the 10-op burst, + the drain of up to QD) */
	n = loop_run(1500);
	cr_log_info("limited: %llu writes in 1.5 s", (unsigned long long)n);
	cr_assert_geq(n, 225, "%llu writes", (unsigned long long)n);
	cr_assert_leq(n, 375, "%llu writes", (unsigned long long)n);
	ts_vol_lun_qos_stats(g_lun, &st);
	cr_assert_gt(st.delayed, 0);
	cr_assert_eq(st.write_ops, n);
	cr_assert_eq(st.write_bytes, n * BS);
	cr_assert_eq(st.queued_now, 0);

	cr_assert_eq(ts_vol_lun_set_qos(g_lun, NULL), 0);
	lifted = loop_run(500);
	cr_log_info("lifted: %llu writes in 0.5 s", (unsigned long long)lifted);
	cr_assert_gt(lifted, 200, "still limited: %llu writes in 0.5 s", (unsigned long long)lifted);
	cr_assert_eq(g_loop.errors, 0);
	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);
	ts_free(g_loop.buf);
}

static int g_one_status;
static int g_one_done;

static void one_cb(struct ts_iscsi_lun_io *io, int status)
{
	(void)io;
	pthread_mutex_lock(&g_loop.lock);
	g_one_status = status;
	g_one_done = 1;
	pthread_cond_signal(&g_loop.cond);
	pthread_mutex_unlock(&g_loop.lock);
}

static int one(int (*op)(void *, struct ts_iscsi_lun_io *), uint64_t len, void *buf, uint32_t flags)
{
	struct ts_iscsi_lun_io io = { .offset = 8 * BS, .len = len, .buf = buf, .flags = flags,
				      .cb = one_cb };
	int rc;

	g_one_done = 0;
	rc = op(g_lun, &io);
	if (rc)
		return rc;
	pthread_mutex_lock(&g_loop.lock);
	while (!g_one_done)
		pthread_cond_wait(&g_loop.cond, &g_loop.lock);
	pthread_mutex_unlock(&g_loop.lock);
	return g_one_status;
}

Test(vol_lun, every_op_is_gated_but_flush)
{
	struct ts_qos_limits lim = { .iops = 1000 };
	struct ts_qos_stats st;
	uint8_t *buf = ts_aligned_alloc(BS, BS);

	cr_assert_not_null(buf);
	memset(buf, 0x5c, BS);
	export(&lim, g_dom);
	cr_assert_eq(one(g_vol_lun_ops.write, BS, buf, TS_ISCSI_LUN_FUA), 0);
	cr_assert_eq(one(g_vol_lun_ops.read, BS, buf, 0), 0);
	cr_assert_eq(buf[100], 0x5c);
	cr_assert_eq(one(g_vol_lun_ops.unmap, BS, NULL, 0), 0);
	cr_assert_eq(one(g_vol_lun_ops.flush, 0, NULL, 0), 0);
	ts_vol_lun_qos_stats(g_lun, &st);
	cr_assert_eq(st.admitted, 3, "flush went through the gate");
	cr_assert_eq(st.read_ops, 1);
	cr_assert_eq(st.read_bytes, BS);
	cr_assert_eq(st.write_ops, 2, "FUA write + unmap");
	cr_assert_eq(st.write_bytes, BS, "an unmap costs no bytes");
	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);
	ts_free(buf);
}

Test(vol_lun, no_domain)
{
	struct ts_qos_limits lim = { .iops = 10 };
	struct ts_vol_lun_opts o = { .iqn = IQN, .pr_state_path = g_pr, .qos = lim };
	struct ts_qos_stats st;

	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, &o, &g_lun), -EINVAL);
	export(NULL, NULL);
	cr_assert_eq(ts_vol_lun_set_qos(g_lun, &lim), -ENOTSUP);
	cr_assert_eq(ts_vol_lun_set_qos(g_lun, NULL), 0);
	ts_vol_lun_qos_stats(g_lun, &st);
	cr_assert_eq(st.write_ops, 0);
	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);
}

/* ---- over iSCSI: unexport with IOs queued in the gate ---- */

static int g_cb_calls;

static void wcb(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	(void)iscsi;
	(void)status;
	(void)private_data;
	if (command_data)
		scsi_free_scsi_task(command_data);
	g_cb_calls++;
}

Test(vol_lun, unexport_drains_queued_ios, .timeout = 60)
{
	struct ts_qos_limits lim = { .write_iops = 1, .burst_ms = 1000 }; /* one token */
	struct iscsi_context *ctx;
	struct ts_qos_stats st;
	char portal[64];
	static uint8_t data[BS];
	uint64_t t0, deadline;
	int i;

	export(&lim, g_dom);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", ts_iscsi_server_port(g_srv));
	ctx = iscsi_create_context("iqn.2026-01.io.tessera:test-init");
	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, IQN);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	cr_assert_eq(iscsi_full_connect_sync(ctx, portal, 0), 0, "%s", iscsi_get_error(ctx));
	for (i = 0; i < 20; i++)
		cr_assert_not_null(iscsi_write16_task(ctx, 0, (uint64_t)i, data, BS, BS, 0, 0, 0, 0, 0,
						      wcb, NULL));
	/* until all have reached the gate (19 queued: ~19 s of work at 1 IOPS) */
	deadline = ts_now_ns() + 20000000000ull;
	do {
		struct pollfd p = { .fd = iscsi_get_fd(ctx), .events = (short)iscsi_which_events(ctx) };

		if (poll(&p, 1, 10) > 0)
			cr_assert_geq(iscsi_service(ctx, p.revents), 0);
		ts_vol_lun_qos_stats(g_lun, &st);
	} while (st.delayed < 19 && ts_now_ns() < deadline);
	cr_assert_eq(st.delayed, 19);
	cr_assert_geq(st.queued_now, 10);
	t0 = ts_now_ns();
	ts_vol_lun_unexport(g_lun); /* must not take 19 s, must not leave IOs behind */
	cr_assert_lt(ts_now_ns() - t0, 10000000000ull);
	iscsi_destroy_context(ctx);
	(void)g_cb_calls;
}

/* ---- persistent reservations live in the volume ---- */

static struct iscsi_context *pr_login(const char *iname, uint8_t isid_tag)
{
	struct iscsi_context *ctx = iscsi_create_context(iname);
	char portal[64];

	cr_assert_not_null(ctx);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", ts_iscsi_server_port(g_srv));
	/* a fixed ISID: the same I_T nexus after a reconnect */
	cr_assert_eq(iscsi_set_isid_random(ctx, isid_tag, 0), 0);
	iscsi_set_targetname(ctx, IQN);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	cr_assert_eq(iscsi_full_connect_sync(ctx, portal, 0), 0, "%s", iscsi_get_error(ctx));
	return ctx;
}

static int pr_out(struct iscsi_context *ctx, int sa, int type, uint64_t rk, uint64_t sark)
{
	struct scsi_persistent_reserve_out_basic b = { .reservation_key = rk,
						       .service_action_reservation_key = sark };
	struct scsi_task *t = iscsi_persistent_reserve_out_sync(ctx, 0, sa, 0, type, &b);
	int st;

	cr_assert_not_null(t);
	st = t->status;
	scsi_free_scsi_task(t);
	return st;
}

static int pr_write(struct iscsi_context *ctx)
{
	static uint8_t data[BS];
	struct scsi_task *t;
	int st;

	/* a unit attention first (power on, reservations preempted) is not the answer */
	for (int i = 0; i < 4; i++) {
		t = iscsi_write16_sync(ctx, 0, 0, data, BS, BS, 0, 0, 0, 0, 0);
		cr_assert_not_null(t);
		st = t->status;
		if (!(st == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_UNIT_ATTENTION)) {
			scsi_free_scsi_task(t);
			return st;
		}
		scsi_free_scsi_task(t);
	}
	return -1;
}

/* READ KEYS (sorted) and READ RESERVATION: holder key and type, or 0 and -1. */
static void pr_read(struct iscsi_context *ctx, uint64_t *keys, int *nkeys, uint64_t *hkey, int *type)
{
	struct scsi_persistent_reserve_in_read_reservation *rr;
	struct scsi_persistent_reserve_in_read_keys *rk;
	struct scsi_task *t;

	t = iscsi_persistent_reserve_in_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_READ_KEYS, 512);
	cr_assert_not_null(t);
	if (t->status == SCSI_STATUS_CHECK_CONDITION) { /* the unit attention of a new LU */
		scsi_free_scsi_task(t);
		t = iscsi_persistent_reserve_in_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_READ_KEYS, 512);
		cr_assert_not_null(t);
	}
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	rk = scsi_datain_unmarshall(t);
	cr_assert_not_null(rk);
	*nkeys = rk->num_keys;
	for (int i = 0; i < rk->num_keys && i < 4; i++)
		keys[i] = rk->keys[i];
	if (*nkeys == 2 && keys[0] > keys[1]) {
		uint64_t k = keys[0];
		keys[0] = keys[1];
		keys[1] = k;
	}
	scsi_free_scsi_task(t);
	t = iscsi_persistent_reserve_in_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 512);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	rr = scsi_datain_unmarshall(t);
	cr_assert_not_null(rr);
	*hkey = rr->reserved ? rr->reservation_key : 0;
	*type = rr->reserved ? (int)rr->pr_type : -1;
	scsi_free_scsi_task(t);
}

/* Unexport, destroy the server, close and reopen the pool: a restart. */
static void pr_restart(void)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 2 };

	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);
	g_lun = NULL;
	ts_iscsi_server_destroy(g_srv);
	ts_vpool_close(g_pool);
	cr_assert_eq(ts_vpool_open(g_m, &g_pool), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
}

static void pr_logout(struct iscsi_context *c)
{
	iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

/* Both sessions out, restart, export again, both back in with their ISIDs. */
static void pr_cycle(const struct ts_vol_lun_opts *o, struct iscsi_context **a, const char *ia,
		     uint8_t ta, struct iscsi_context **b, const char *ib, uint8_t tb)
{
	pr_logout(*a);
	pr_logout(*b);
	pr_restart();
	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, o, &g_lun), 0);
	*a = pr_login(ia, ta);
	*b = pr_login(ib, tb);
}

Test(vol_lun, reservations_survive_a_new_server_and_pool_reopen, .timeout = 60)
{
	struct ts_vol_lun_opts o = { .iqn = IQN }; /* no legacy file */
	const char *ia = "iqn.2026-01.io.tessera:node-a", *ib = "iqn.2026-01.io.tessera:node-b";
	struct iscsi_context *a, *b;
	uint64_t keys[4], hkey;
	int nkeys, type;

	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, &o, &g_lun), 0);
	a = pr_login(ia, 1);
	b = pr_login(ib, 2);
	cr_assert_eq(pr_out(a, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xA), SCSI_STATUS_GOOD);
	cr_assert_eq(pr_out(b, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xB), SCSI_STATUS_GOOD);
	cr_assert_eq(pr_out(a, SCSI_PERSISTENT_RESERVE_RESERVE,
			    SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, 0xA, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(pr_write(a), SCSI_STATUS_GOOD);
	cr_assert_eq(pr_write(b), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_gt(ts_vpool_volume_attr_get(g_pool, g_vol, TS_VOL_LUN_PR_ATTR, NULL, 0), 0);
	pr_cycle(&o, &a, ia, 1, &b, ib, 2);
	pr_read(b, keys, &nkeys, &hkey, &type);
	cr_assert_eq(nkeys, 2);
	cr_assert_eq(keys[0], 0xA);
	cr_assert_eq(keys[1], 0xB);
	cr_assert_eq(hkey, 0xA);
	cr_assert_eq(type, SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE);
	cr_assert_eq(pr_write(a), SCSI_STATUS_GOOD); /* the same nexus still holds it */
	cr_assert_eq(pr_write(b), SCSI_STATUS_RESERVATION_CONFLICT);
	/* fence A off, then restart again: B holds it, A is gone */
	cr_assert_eq(pr_out(b, SCSI_PERSISTENT_RESERVE_PREEMPT,
			    SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, 0xB, 0xA), SCSI_STATUS_GOOD);
	pr_cycle(&o, &a, ia, 1, &b, ib, 2);
	pr_read(a, keys, &nkeys, &hkey, &type);
	cr_assert_eq(nkeys, 1);
	cr_assert_eq(keys[0], 0xB);
	cr_assert_eq(hkey, 0xB);
	cr_assert_eq(pr_write(a), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(pr_write(b), SCSI_STATUS_GOOD);
	pr_logout(a);
	pr_logout(b);
	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);

	/* a clone is a new LU: no reservations */
	{
		uint64_t snap, clone;
		cr_assert_eq(ts_vpool_snapshot(g_pool, g_vol, "s", 0, &snap), 0);
		cr_assert_eq(ts_vpool_volume_create(g_pool, "c", VOL_BLOCKS * BS, snap, &clone), 0);
		cr_assert_eq(ts_vpool_volume_attr_get(g_pool, clone, TS_VOL_LUN_PR_ATTR, NULL, 0),
			     -ENOENT);
	}
}

Test(vol_lun, legacy_pr_file_is_imported_once, .timeout = 60)
{
	static const char legacy[] = "tessera-pr 1\ngen 7\nres 1 1 iqn.2026-01.io.tessera:old,i,0x000000000001\n"
				     "reg 00000000000000c1 iqn.2026-01.io.tessera:old,i,0x000000000001\n";
	struct ts_vol_lun_opts o = { .iqn = IQN, .pr_state_path = g_pr };
	char imported[96];
	struct iscsi_context *c;
	uint64_t keys[4], hkey;
	int nkeys, type;

	cr_assert_eq(ts_file_write_atomic(g_pr, legacy, strlen(legacy)), 0);
	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, &o, &g_lun), 0);
	snprintf(imported, sizeof(imported), "%s.imported", g_pr);
	cr_assert_neq(access(g_pr, F_OK), 0);
	cr_assert_eq(access(imported, F_OK), 0);
	cr_assert_eq(ts_vpool_volume_attr_get(g_pool, g_vol, TS_VOL_LUN_PR_ATTR, NULL, 0),
		     (int)strlen(legacy));
	c = pr_login("iqn.2026-01.io.tessera:reader", 3);
	pr_read(c, keys, &nkeys, &hkey, &type);
	cr_assert_eq(nkeys, 1);
	cr_assert_eq(keys[0], 0xc1);
	cr_assert_eq(hkey, 0xc1);
	cr_assert_eq(type, SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE);
	cr_assert_eq(pr_write(c), SCSI_STATUS_RESERVATION_CONFLICT);
	pr_logout(c);
	/* a stale file written later is ignored: the attribute wins */
	cr_assert_eq(ts_file_write_atomic(g_pr, "tessera-pr 1\ngen 1\nres 0 0 -\n", 29), 0);
	pr_restart();
	cr_assert_eq(ts_vol_lun_export(g_srv, g_pool, g_vol, &o, &g_lun), 0);
	c = pr_login("iqn.2026-01.io.tessera:reader", 3);
	pr_read(c, keys, &nkeys, &hkey, &type);
	cr_assert_eq(nkeys, 1);
	cr_assert_eq(hkey, 0xc1);
	pr_logout(c);
	cr_assert_eq(ts_vol_lun_unexport(g_lun), 0);
	unlink(imported);
}
