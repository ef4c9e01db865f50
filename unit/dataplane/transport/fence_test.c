/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fencing (docs/fencing.md) end to end with a real node target in-process:
 * one PEM + LDM with three member vdisks exported by a Tessera iSCSI server
 * (what a node daemon runs), and array groups over remote members carrying
 * owner keys. Owner A (epoch 1) creates and writes; owner B (epoch 2)
 * assembles over new sessions and writes; A's next IO is refused by the
 * members (TS_ERR_FENCED), A's group is fenced, marks no member failed and
 * calls its write hook (the replica journal) no more; the members count the
 * refused writes; the data is B's. A stale key is refused on reconnect, the
 * owner's reconnect works and leaves one registration, the floor survives a
 * restart of the target, raw PR commands (libiscsi) below the floor are
 * refused and bad keys and options are rejected.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/pem/pem.h"
#include "dataplane/transport/export.h"
#include "dataplane/transport/transport.h"

#define MIB (1024u * 1024u)
#define BS TS_LDM_BLOCK_SIZE
#define VD_SIZE (8 * MIB)
#define NV 3
#define USER "cluster"
#define SECRET "cluster-node-secret"
#define KEY(e, n) (((uint64_t)(e) << 32) | (n))

static char g_dir[64], g_disk[128];
static struct ts_pem *g_pem;
static struct ts_ldm *g_ldm;
static struct ts_iscsi_server *g_srv;
static uint16_t g_port;
static uint8_t g_vd[NV][16];

static void target_up(uint16_t port)
{
	const char *paths[1] = { g_disk };
	struct ts_pem_opts po = { .node_id = 2, .extent_size = MIB };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = port, .threads = 1 };
	struct ts_ldm_vdisk *vd;

	memset(po.cluster_uuid, 0x11, 16);
	cr_assert_eq(ts_pem_open(paths, 1, &po, &g_pem), 0);
	cr_assert_eq(ts_ldm_open(g_pem, &g_ldm), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	g_port = ts_iscsi_server_port(g_srv);
	for (int i = 0; i < NV; i++) {
		cr_assert_eq(ts_ldm_get(g_ldm, g_vd[i], &vd), 0);
		cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, USER, SECRET), 0);
	}
}

/* What a node daemon's stop does (and kill -9 skips): server, LDM, PEM. */
static void target_down(void)
{
	ts_iscsi_server_destroy(g_srv);
	ts_ldm_close(g_ldm);
	ts_pem_close(g_pem);
	g_srv = NULL;
	g_ldm = NULL;
	g_pem = NULL;
}

static void setup(void)
{
	const char *paths[1] = { g_disk };
	struct ts_pem_opts po = { .node_id = 2, .extent_size = MIB };
	struct ts_ldm_vdisk *vd;
	int fd;

	strcpy(g_dir, "/tmp/ts_fence_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	snprintf(g_disk, sizeof(g_disk), "%s/disk0", g_dir);
	fd = open(g_disk, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 * MIB), 0);
	close(fd);
	memset(po.cluster_uuid, 0x11, 16);
	cr_assert_eq(ts_pem_format(paths, 1, &po), 0);
	cr_assert_eq(ts_pem_open(paths, 1, &po, &g_pem), 0);
	cr_assert_eq(ts_ldm_open(g_pem, &g_ldm), 0);
	for (int i = 0; i < NV; i++) {
		cr_assert_eq(ts_uuid_generate(g_vd[i]), 0);
		cr_assert_eq(ts_ldm_create(g_ldm, g_vd[i], VD_SIZE, "m", 7, &vd), 0);
	}
	ts_ldm_close(g_ldm);
	ts_pem_close(g_pem);
	target_up(0);
}

static void teardown(void)
{
	char cmd[128];

	if (g_srv)
		target_down();
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

static int member_with(int i, uint32_t epoch, uint32_t node, struct ts_member **out)
{
	char iqn[80], url[160];
	struct ts_transport_opts o = { .url = url, .chap_user = USER, .chap_secret = SECRET,
				       .node_id = 2, .uuid = g_vd[i], .size = VD_SIZE, .block_size = BS,
				       .io_timeout_ms = 10000, .connect_timeout_ms = 5000,
				       .reconnect_min_ms = 20, .reconnect_max_ms = 100,
				       .owner_epoch = epoch, .owner_node = node };

	ts_transport_vdisk_iqn(g_vd[i], iqn);
	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/%s/0", g_port, iqn);
	return ts_transport_iscsi_member(&o, out);
}

static void members(uint32_t epoch, uint32_t node, struct ts_member **m)
{
	for (int i = 0; i < NV; i++)
		cr_assert_eq(member_with(i, epoch, node, &m[i]), 0);
}

static void members_destroy(struct ts_member **m)
{
	for (int i = 0; i < NV; i++)
		ts_member_destroy(m[i]);
}

static struct ts_iscsi_fence_stats fstats(int i)
{
	struct ts_iscsi_fence_stats st;

	cr_assert_eq(ts_transport_export_fence_stats(g_srv, g_vd[i], &st), 0);
	return st;
}

static uint64_t refused_writes(void)
{
	uint64_t n = 0;

	for (int i = 0; i < NV; i++)
		n += fstats(i).refused_writes;
	return n;
}

static atomic_int g_hook_calls;

static int count_hook(void *ctx, uint64_t off, uint64_t len, const void *buf, uint64_t missing)
{
	(void)ctx;
	(void)off;
	(void)len;
	(void)buf;
	(void)missing;
	atomic_fetch_add(&g_hook_calls, 1);
	return 0;
}

static void fill(uint8_t *b, size_t n, uint8_t v)
{
	memset(b, v, n);
}

/* A (epoch 1, node 1) makes the group and writes; B (epoch 2, node 2) takes it over. */
static void a_then_b(struct ts_member **ma, struct ts_agrp **ga, struct ts_member **mb,
		     struct ts_agrp **gb, uint8_t *buf)
{
	struct ts_agrp_opts oa = { .chunk_size = 64 * 1024, .nthreads = 2, .write_hook = count_hook };
	struct ts_agrp_opts ob = { .nthreads = 2 };

	members(1, 1, ma);
	cr_assert_eq(ts_agrp_create(ma, NV, 2, 1, &oa, ga), 0);
	fill(buf, 128 * 1024, 0xa1);
	cr_assert_eq(ts_agrp_write_sync(*ga, 0, 128 * 1024, buf), 0);
	cr_assert_eq(ts_agrp_flush_sync(*ga), 0);
	for (int i = 0; i < NV; i++) {
		cr_assert_eq(fstats(i).epoch, 1);
		cr_assert_eq(fstats(i).node, 1);
		cr_assert(fstats(i).held);
	}
	cr_assert_eq(refused_writes(), 0);

	members(2, 2, mb);
	cr_assert_eq(ts_agrp_assemble(mb, NV, &ob, gb), 0);
	for (int i = 0; i < NV; i++) {
		struct ts_iscsi_fence_stats st = fstats(i);

		cr_assert_eq(st.epoch, 2);
		cr_assert_eq(st.node, 2);
		cr_assert_eq(st.key, KEY(2, 2));
		cr_assert(st.held, "B holds the reservation of member %d", i);
	}
	fill(buf, 128 * 1024, 0xb2);
	cr_assert_eq(ts_agrp_write_sync(*gb, 0, 128 * 1024, buf), 0);
}

static void both_close(struct ts_agrp *ga, struct ts_agrp *gb, struct ts_member **ma,
		       struct ts_member **mb)
{
	ts_agrp_close(ga);
	ts_agrp_close(gb);
	members_destroy(ma);
	members_destroy(mb);
}

TestSuite(fence, .init = setup, .fini = teardown, .timeout = 120);

Test(fence, new_owner_fences_old)
{
	struct ts_member *ma[NV], *mb[NV];
	struct ts_agrp *ga, *gb;
	uint8_t *buf = ts_aligned_alloc(4096, 256 * 1024), *rd = ts_aligned_alloc(4096, 256 * 1024);
	uint64_t live_a, gen_a, refused0;
	int hooks;
	struct ts_transport_stats ts;

	a_then_b(ma, &ga, mb, &gb, buf);
	live_a = ts_agrp_live_mask(ga);
	gen_a = ts_agrp_generation(ga);
	hooks = atomic_load(&g_hook_calls);
	refused0 = refused_writes();

	/* A's next write: refused by the members, not a member failure */
	fill(buf, 128 * 1024, 0xa3);
	cr_assert_eq(ts_agrp_write_sync(ga, 128 * 1024, 128 * 1024, buf), TS_ERR_FENCED);
	cr_assert(ts_agrp_fenced(ga));
	cr_assert_gt(refused_writes(), refused0, "the members counted A's refused writes");
	cr_assert_eq(ts_agrp_live_mask(ga), live_a, "a fenced group marks no member failed");
	cr_assert_eq(ts_agrp_generation(ga), gen_a, "nor bumps its generation");
	/* fenced for good: reads, writes and flushes fail at once, without the hook */
	cr_assert_eq(ts_agrp_read_sync(ga, 0, 4096, rd), TS_ERR_FENCED);
	cr_assert_eq(ts_agrp_write_sync(ga, 0, 4096, buf), TS_ERR_FENCED);
	cr_assert_eq(ts_agrp_flush_sync(ga), TS_ERR_FENCED);
	cr_assert_eq(atomic_load(&g_hook_calls), hooks + 1,
		     "only the write that found out reached the hook (before any member IO)");
	cr_assert_eq(ts_agrp_add_member(ga, ma[0]), TS_ERR_FENCED);
	{
		int fenced_members = 0;

		for (int i = 0; i < NV; i++) {
			cr_assert_eq(ts_transport_member_stats(ma[i], &ts), 0);
			fenced_members += ts.fenced;
		}
		cr_assert_geq(fenced_members, 1);
	}

	/* the data is B's, and B goes on writing where A was refused */
	memset(rd, 0, 256 * 1024);
	cr_assert_eq(ts_agrp_read_sync(gb, 0, 128 * 1024, rd), 0);
	for (size_t i = 0; i < 128 * 1024; i++)
		cr_assert_eq(rd[i], 0xb2, "byte %zu", i);
	cr_assert_eq(ts_agrp_read_sync(gb, 128 * 1024, 128 * 1024, rd), 0);
	for (size_t i = 0; i < 128 * 1024; i++)
		cr_assert_neq(rd[i], 0xa3, "A's refused write reached the medium at byte %zu", i);
	fill(buf, 256 * 1024, 0xb4);
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 256 * 1024, buf), 0);
	cr_assert_eq(ts_agrp_read_sync(gb, 0, 256 * 1024, rd), 0);
	cr_assert_eq(memcmp(rd, buf, 256 * 1024), 0);
	cr_assert_eq(ts_agrp_live_mask(gb), (1u << NV) - 1);

	both_close(ga, gb, ma, mb); /* A's close writes nothing */
	ts_free(buf);
	ts_free(rd);
}

/* A stale key reconnecting is refused: older epoch, or the current epoch from another node. */
Test(fence, stale_key_refused_on_login)
{
	struct ts_member *ma[NV], *mb[NV], *m;
	struct ts_agrp *ga, *gb;
	uint8_t *buf = ts_aligned_alloc(4096, 128 * 1024);
	struct ts_transport_stats ts;
	const uint32_t stale[][2] = { { 1, 1 }, { 2, 1 }, { 1, 2 } };

	a_then_b(ma, &ga, mb, &gb, buf);
	for (unsigned t = 0; t < TS_ARRAY_SIZE(stale); t++) {
		uint64_t before = fstats(0).refused_pr;

		cr_assert_eq(member_with(0, stale[t][0], stale[t][1], &m), 0);
		cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, 0, 2 * MIB, 4096, buf), TS_ERR_FENCED,
			     "epoch %u node %u", stale[t][0], stale[t][1]);
		cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 2 * MIB, 4096, buf), TS_ERR_FENCED);
		cr_assert_eq(ts_transport_member_stats(m, &ts), 0);
		cr_assert_eq(ts.fenced, 1);
		cr_assert_eq(ts.fenced_ios, 2);
		cr_assert_gt(fstats(0).refused_pr, before);
		ts_member_destroy(m);
	}
	cr_assert_eq(fstats(0).epoch, 2);
	cr_assert_eq(fstats(0).node, 2);
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 128 * 1024, buf), 0, "B is untouched by the attempts");
	both_close(ga, gb, ma, mb);
	ts_free(buf);
}

static struct iscsi_context *raw_login(int i)
{
	struct iscsi_context *c = iscsi_create_context("iqn.2026-01.io.tessera:fence-test");
	char iqn[80], portal[64];

	cr_assert_not_null(c);
	ts_transport_vdisk_iqn(g_vd[i], iqn);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", g_port);
	cr_assert_eq(iscsi_set_targetname(c, iqn), 0);
	cr_assert_eq(iscsi_set_session_type(c, ISCSI_SESSION_NORMAL), 0);
	cr_assert_eq(iscsi_set_initiator_username_pwd(c, USER, SECRET), 0);
	cr_assert_eq(iscsi_full_connect_sync(c, portal, 0), 0, "%s", iscsi_get_error(c));
	/* consume the POWER ON unit attention */
	for (int t = 0; t < 3; t++) {
		struct scsi_task *k = iscsi_testunitready_sync(c, 0);
		int st = k ? k->status : -1;

		if (k)
			scsi_free_scsi_task(k);
		if (st == SCSI_STATUS_GOOD)
			break;
	}
	return c;
}

static void raw_logout(struct iscsi_context *c)
{
	(void)iscsi_logout_sync(c);
	iscsi_destroy_context(c);
}

/* Returns the status; *sense gets the sense key. */
static int raw_pr_out(struct iscsi_context *c, int sa, int type, uint64_t rk, uint64_t sark, int *sense)
{
	struct scsi_persistent_reserve_out_basic p = { .reservation_key = rk,
						      .service_action_reservation_key = sark };
	struct scsi_task *t = iscsi_persistent_reserve_out_sync(c, 0, sa, 0, type, &p);
	int st;

	cr_assert_not_null(t);
	st = t->status;
	if (sense)
		*sense = t->sense.key;
	scsi_free_scsi_task(t);
	return st;
}

static int raw_write(struct iscsi_context *c, uint64_t lba, uint8_t *buf)
{
	struct scsi_task *t = iscsi_write16_sync(c, 0, lba, buf, BS, BS, 0, 0, 0, 0, 0);
	int st;

	cr_assert_not_null(t);
	st = t->status;
	scsi_free_scsi_task(t);
	return st;
}

static int raw_read_keys(struct iscsi_context *c, uint64_t *keys, int max)
{
	struct scsi_task *t = iscsi_persistent_reserve_in_sync(c, 0, SCSI_PERSISTENT_RESERVE_READ_KEYS, 520);
	struct scsi_persistent_reserve_in_read_keys *rk;
	int n;

	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	rk = scsi_datain_unmarshall(t);
	cr_assert_not_null(rk);
	n = rk->num_keys;
	for (int i = 0; i < n && i < max; i++)
		keys[i] = rk->keys[i];
	scsi_free_scsi_task(t);
	return n;
}

/* Raw PR commands from another initiator, after B (epoch 2) took the members. */
Test(fence, raw_pr_below_floor_refused)
{
	struct ts_member *ma[NV], *mb[NV];
	struct ts_agrp *ga, *gb;
	uint8_t *buf = ts_aligned_alloc(4096, 128 * 1024);
	struct iscsi_context *c;
	uint64_t w0, keys[64];
	int sense = 0;

	a_then_b(ma, &ga, mb, &gb, buf);
	c = raw_login(1);
	/* not registered: writes and reads refused and counted */
	w0 = fstats(1).refused_writes;
	cr_assert_eq(raw_write(c, 600, buf), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(fstats(1).refused_writes, w0 + 1);
	{
		struct scsi_task *t = iscsi_read16_sync(c, 0, 600, BS, BS, 0, 0, 0, 0, 0);

		cr_assert_not_null(t);
		cr_assert_eq(t->status, SCSI_STATUS_RESERVATION_CONFLICT);
		scsi_free_scsi_task(t);
	}
	/* lower epoch, same epoch from another node: refused */
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KEY(1, 1), NULL),
		     SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, KEY(1, 7), NULL),
		     SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KEY(2, 7), NULL),
		     SCSI_STATUS_RESERVATION_CONFLICT);
	/* not a key: epoch or node zero */
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KEY(0, 7), &sense),
		     SCSI_STATUS_CHECK_CONDITION);
	cr_assert_eq(sense, SCSI_SENSE_ILLEGAL_REQUEST);
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KEY(9, 0), &sense),
		     SCSI_STATUS_CHECK_CONDITION);
	/* preempting without the floor key: refused */
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_PREEMPT, 3, KEY(1, 1), KEY(2, 2), NULL),
		     SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(fstats(1).epoch, 2);
	cr_assert(fstats(1).held);
	cr_assert_eq(raw_read_keys(c, keys, 64), 1, "only B is registered");
	cr_assert_eq(keys[0], KEY(2, 2));
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 128 * 1024, buf), 0);

	/* a higher epoch registered raw is a new owner: B is fenced from then on */
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0, KEY(3, 9), NULL),
		     SCSI_STATUS_GOOD);
	cr_assert_eq(fstats(1).epoch, 3);
	cr_assert_eq(fstats(1).node, 9);
	cr_assert(!fstats(1).held, "B still holds it, but is no owner any more");
	cr_assert_eq(ts_member_rw_sync(mb[1], TS_MEMBER_WRITE, 0, 2 * MIB, 4096, buf), TS_ERR_FENCED,
		     "holding the reservation is not enough below the floor");
	cr_assert_eq(raw_pr_out(c, SCSI_PERSISTENT_RESERVE_PREEMPT, 3, KEY(3, 9), KEY(2, 2), NULL),
		     SCSI_STATUS_GOOD);
	cr_assert(fstats(1).held);
	cr_assert_eq(raw_write(c, 600, buf), SCSI_STATUS_GOOD);
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 128 * 1024, buf), TS_ERR_FENCED);
	cr_assert(ts_agrp_fenced(gb));
	raw_logout(c);
	both_close(ga, gb, ma, mb);
	ts_free(buf);
}

static void wait_connects(struct ts_member *m, uint64_t n)
{
	struct ts_transport_stats ts;

	for (int t = 0; t < 2000; t++) { /* 20 s: valgrind on shared cores */
		cr_assert_eq(ts_transport_member_stats(m, &ts), 0);
		if (ts.connects >= n && ts.connected)
			return;
		usleep(10000);
	}
	cr_assert_fail("member did not reconnect");
}

/* The owner's sessions drop and come back: it re-registers its own key and works on. */
Test(fence, owner_reconnects)
{
	struct ts_member *ma[NV], *mb[NV];
	struct ts_agrp *ga, *gb;
	uint8_t *buf = ts_aligned_alloc(4096, 128 * 1024), *rd = ts_aligned_alloc(4096, 128 * 1024);
	struct ts_transport_stats ts;
	struct ts_ldm_vdisk *vd;
	struct iscsi_context *c;
	uint64_t keys[64];

	a_then_b(ma, &ga, mb, &gb, buf);
	cr_assert_eq(ts_transport_member_stats(mb[0], &ts), 0);
	/* unexport + export: every session of the member LUN is dropped */
	cr_assert_eq(ts_transport_unexport_vdisk(g_srv, g_vd[0]), 0);
	usleep(100000);
	cr_assert_eq(ts_ldm_get(g_ldm, g_vd[0], &vd), 0);
	for (int t = 0; t < 100 && ts_transport_export_vdisk(g_srv, vd, USER, SECRET); t++)
		usleep(20000); /* the old LUN goes once its last IO completed */
	cr_assert_eq(fstats(0).epoch, 2, "the floor came back with the export (LDM descriptor)");
	wait_connects(mb[0], ts.connects + 1);
	cr_assert_eq(ts_member_rw_sync(mb[0], TS_MEMBER_WRITE, 0, 4 * MIB, 4096, buf), 0);
	cr_assert_eq(ts_member_rw_sync(mb[0], TS_MEMBER_READ, 0, 4 * MIB, 4096, rd), 0);
	cr_assert_eq(memcmp(buf, rd, 4096), 0);
	cr_assert(fstats(0).held);
	fill(buf, 128 * 1024, 0xc5);
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 128 * 1024, buf), 0);
	cr_assert_eq(ts_agrp_read_sync(gb, 0, 128 * 1024, rd), 0);
	cr_assert_eq(memcmp(buf, rd, 128 * 1024), 0);
	cr_assert_eq(ts_agrp_live_mask(gb), (1u << NV) - 1);
	c = raw_login(0);
	cr_assert_eq(raw_read_keys(c, keys, 64), 1, "the earlier nexus's registration is gone");
	cr_assert_eq(keys[0], KEY(2, 2));
	raw_logout(c);
	/* A, reconnecting too, stays out */
	cr_assert_eq(ts_agrp_write_sync(ga, 0, 4096, buf), TS_ERR_FENCED);
	both_close(ga, gb, ma, mb);
	ts_free(buf);
	ts_free(rd);
}

/* The node daemon restarts: the floor (epoch, owner) is on its disks. */
Test(fence, target_restart_keeps_floor)
{
	struct ts_member *ma[NV], *mb[NV], *m;
	struct ts_agrp *ga, *gb;
	uint8_t *buf = ts_aligned_alloc(4096, 128 * 1024), *rd = ts_aligned_alloc(4096, 128 * 1024);
	struct ts_transport_stats ts;
	uint16_t port;

	a_then_b(ma, &ga, mb, &gb, buf);
	ts_agrp_close(ga);
	members_destroy(ma);
	port = g_port;
	cr_assert_eq(ts_transport_member_stats(mb[2], &ts), 0);
	target_down();
	target_up(port);
	for (int i = 0; i < NV; i++) {
		cr_assert_eq(fstats(i).epoch, 2);
		cr_assert_eq(fstats(i).node, 2);
		cr_assert(!fstats(i).held, "no session yet: nobody holds it, nobody may write");
	}
	/* the old owner, fresh from its pause, is refused */
	cr_assert_eq(member_with(1, 1, 1, &m), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, 0, 2 * MIB, 4096, buf), TS_ERR_FENCED);
	ts_member_destroy(m);
	/* the owner reconnects and carries on */
	wait_connects(mb[2], ts.connects + 1);
	fill(buf, 128 * 1024, 0xd6);
	cr_assert_eq(ts_agrp_write_sync(gb, 0, 128 * 1024, buf), 0);
	cr_assert_eq(ts_agrp_read_sync(gb, 0, 128 * 1024, rd), 0);
	cr_assert_eq(memcmp(buf, rd, 128 * 1024), 0);
	for (int i = 0; i < NV; i++)
		cr_assert(fstats(i).held);

	/* again with the owner gone too: nobody holds a reservation, yet an
	 * unregistered initiator is refused by the floor alone */
	ts_agrp_close(gb);
	members_destroy(mb);
	target_down();
	target_up(port);
	{
		struct iscsi_context *c = raw_login(0);
		uint64_t w0 = fstats(0).refused_writes;

		cr_assert(!fstats(0).held);
		cr_assert_eq(raw_write(c, 700, buf), SCSI_STATUS_RESERVATION_CONFLICT);
		cr_assert_eq(fstats(0).refused_writes, w0 + 1);
		raw_logout(c);
	}
	members(2, 2, mb);
	cr_assert_eq(ts_agrp_assemble(mb, NV, NULL, &gb), 0);
	cr_assert_eq(ts_agrp_read_sync(gb, 0, 128 * 1024, rd), 0);
	cr_assert_eq(memcmp(buf, rd, 128 * 1024), 0, "the owner's data, read back by its next session");
	ts_agrp_close(gb);
	members_destroy(mb);
	ts_free(buf);
	ts_free(rd);
}

static int dummy_io(void *ctx, struct ts_iscsi_lun_io *io)
{
	(void)ctx;
	io->cb(io, 0);
	return 0;
}

/* A provider without the fencing hooks. */
static const struct ts_iscsi_lun_ops g_plain_ops = { .read = dummy_io, .write = dummy_io,
						     .flush = dummy_io, .unmap = dummy_io };

Test(fence, bad_options)
{
	struct ts_member *m = NULL;

	cr_assert_eq(member_with(0, 1, 0, &m), -EINVAL);
	cr_assert_eq(member_with(0, 0, 4, &m), -EINVAL);
	cr_assert_null(m);
	/* a fencing LU needs its persistence hooks */
	cr_assert_eq(ts_iscsi_target_add(g_srv, &(struct ts_iscsi_target_opts){ .iqn = "iqn.x" }), 0);
	{
		struct ts_iscsi_lun_info li = { .size = MIB, .block_size = BS, .fencing = true };

		cr_assert_eq(ts_iscsi_lun_add(g_srv, "iqn.x", 1, &g_plain_ops, NULL, &li), -EINVAL);
		li.fencing = false;
		cr_assert_eq(ts_iscsi_lun_add(g_srv, "iqn.x", 1, &g_plain_ops, NULL, &li), 0);
	}
}
