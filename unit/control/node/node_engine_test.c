/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A node's engine requests and redirects, with two in-process node daemons
 * and a recording engine host (it serves a group by adding one volume target
 * with a RAM LUN to the node's iSCSI server, as a real engine adds its
 * volumes' targets): SERVE through the mailbox is idempotent at an epoch,
 * refused below it (-ESTALE), restarted above it; RELEASE of a newer service
 * is refused; a node without an engine host says -EOPNOTSUPP; the node
 * record lists what is served; heartbeats go on while a serve blocks; a
 * login to the other node's portal is redirected to the serving node and
 * works, and is refused once the group is released; stopping a node
 * releases its engines.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/node/node.h"
#include "control/registry/registry.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/iscsi/lun_file.h"

#define MIB (1024ull * 1024ull)

static char g_dir[64], g_disk[3][128];
static const char *g_paths[3][1];
static uint8_t g_cluster[16], g_group[16];
static uint16_t g_port;
static struct ts_registry *g_reg;
static struct ts_node *g_node[3];

/* the recording engine host */
static atomic_uint g_serves, g_releases;
static atomic_int g_fail_serve;
static atomic_uint g_serve_sleep_ms;
static uint64_t g_last_epoch;

static void vol_iqn(const uint8_t group[16], char out[80])
{
	uint8_t u[16] = { 0 };

	memcpy(u, group, 8);
	u[15] = 1; /* volume 1 of the group */
	ts_iscsi_iqn_for_volume(u, out);
}

static int fake_serve(void *ctx, struct ts_node *n, const uint8_t uuid[16], uint64_t epoch,
		      char *endpoint, size_t len)
{
	struct ts_iscsi_target_opts to = { 0 };
	struct ts_iscsi_lun_info info = { .size = 8 * MIB, .block_size = 512 };
	struct ts_iscsi_file_lun *fl;
	char iqn[80];
	int rc;

	(void)ctx;
	if (g_serve_sleep_ms)
		usleep(g_serve_sleep_ms * 1000);
	if (g_fail_serve)
		return g_fail_serve;
	vol_iqn(uuid, iqn);
	to.iqn = iqn;
	rc = ts_iscsi_target_add(ts_node_iscsi(n), &to);
	if (rc)
		return rc;
	memset(info.uuid, 0x33, 16);
	rc = ts_iscsi_file_lun_create(NULL, 8 * MIB, 0, &fl);
	if (rc == 0)
		rc = ts_iscsi_lun_add(ts_node_iscsi(n), iqn, 0, ts_iscsi_file_lun_ops(), fl, &info);
	if (rc)
		return rc;
	g_last_epoch = epoch;
	g_serves++;
	snprintf(endpoint, len, "127.0.0.1:%u", g_port + 10 + (unsigned)epoch);
	return 0;
}

static int fake_release(void *ctx, struct ts_node *n, const uint8_t uuid[16])
{
	char iqn[80];
	int rc;

	(void)ctx;
	vol_iqn(uuid, iqn);
	rc = ts_iscsi_target_remove(ts_node_iscsi(n), iqn);
	g_releases++;
	return rc == -ENOENT ? 0 : rc;
}

static const struct ts_node_engine_ops g_fake = { .serve = fake_serve, .release = fake_release };

static int start_node(unsigned id, bool engine)
{
	struct ts_node_opts o = { .node_id = id, .disks = g_paths[id], .ndisks = 1,
				  .extent_size = MIB, .addr = "127.0.0.1",
				  .port = (uint16_t)(g_port + id), .chap_user = "nodes",
				  .chap_secret = "node-engine-secret", .reg = g_reg,
				  .heartbeat_ms = 100, .engine = engine ? &g_fake : NULL };

	memcpy(o.cluster_uuid, g_cluster, 16);
	return ts_node_start(&o, &g_node[id]);
}

static void setup(void)
{
	char reg[128];

	signal(SIGPIPE, SIG_IGN);
	strcpy(g_dir, "/tmp/ts_nodeeng_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	g_port = (uint16_t)(20000 + (getpid() % 4000) * 4);
	ts_uuid_generate(g_cluster);
	ts_uuid_generate(g_group);
	for (unsigned i = 1; i <= 2; i++) {
		int fd;

		snprintf(g_disk[i], sizeof(g_disk[i]), "%s/node%u.disk", g_dir, i);
		g_paths[i][0] = g_disk[i];
		fd = open(g_disk[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, 32 * MIB), 0);
		close(fd);
	}
	snprintf(reg, sizeof(reg), "%s/registry", g_dir);
	cr_assert_eq(ts_registry_dir_open(reg, &g_reg), 0);
	g_serves = g_releases = 0;
	g_fail_serve = 0;
	g_serve_sleep_ms = 0;
	cr_assert_eq(start_node(1, true), 0);
	cr_assert_eq(start_node(2, true), 0);
}

static void teardown(void)
{
	char cmd[128];

	ts_node_stop(g_node[1]);
	ts_node_stop(g_node[2]);
	ts_registry_close(g_reg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(node_engine, .init = setup, .fini = teardown, .timeout = 60);

/* Post a request to node \p id and wait for its status. */
static int ask(unsigned id, enum ts_reg_op op, const uint8_t uuid[16], uint64_t epoch)
{
	struct ts_reg_request r = { .op = op, .epoch = epoch };
	int st = 12345;

	memcpy(r.uuid, uuid, 16);
	ts_registry_new_request_id(r.id);
	cr_assert_eq(ts_registry_post_request(g_reg, id, &r), 0);
	cr_assert_eq(ts_registry_wait_request(g_reg, id, r.id, 10000, &st), 0, "no answer");
	return st;
}

/* The epoch node \p id's record lists for the group, 0 when not listed. */
static uint64_t listed_epoch(unsigned id, uint64_t *hb)
{
	struct ts_reg_node *all = ts_calloc(TS_REG_MAX_NODES, sizeof(*all));
	unsigned cnt = 0;
	uint64_t e = 0;

	cr_assert_not_null(all);
	cr_assert_eq(ts_registry_list_nodes(g_reg, all, TS_REG_MAX_NODES, &cnt), 0);
	for (unsigned i = 0; i < cnt; i++) {
		if (all[i].node_id != id)
			continue;
		if (hb)
			*hb = all[i].heartbeat_ms;
		for (unsigned g = 0; g < all[i].nserved; g++) {
			char want[32];

			if (memcmp(all[i].served[g].uuid, g_group, 16))
				continue;
			e = all[i].served[g].epoch;
			snprintf(want, sizeof(want), "127.0.0.1:%u", g_port + 10 + (unsigned)e);
			cr_assert_str_eq(all[i].served[g].engine, want, "engine endpoint published");
		}
	}
	ts_free(all);
	return e;
}

Test(node_engine, serve_and_release_follow_the_epochs)
{
	uint8_t u[4][16];
	uint64_t e[4];

	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 0), -EINVAL);
	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 3), 0);
	cr_assert_eq(g_serves, 1u);
	cr_assert_eq(g_last_epoch, 3u);
	cr_assert_eq(listed_epoch(1, NULL), 3u);
	cr_assert_eq(ts_node_served(g_node[1], u, e, 4), 1u);
	cr_assert_eq(memcmp(u[0], g_group, 16), 0);
	cr_assert_eq(e[0], 3u);

	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 3), 0, "same epoch again: idempotent");
	cr_assert_eq(g_serves, 1u);
	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 2), -ESTALE);
	cr_assert_eq(listed_epoch(1, NULL), 3u);
	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 5), 0, "newer epoch: served again");
	cr_assert_eq(g_releases, 1u);
	cr_assert_eq(g_serves, 2u);
	cr_assert_eq(g_last_epoch, 5u);
	cr_assert_eq(listed_epoch(1, NULL), 5u);

	cr_assert_eq(ask(1, TS_REG_RELEASE_GROUP, g_group, 4), -ESTALE, "an old release");
	cr_assert_eq(listed_epoch(1, NULL), 5u);
	cr_assert_eq(ask(1, TS_REG_RELEASE_GROUP, g_group, 5), 0);
	cr_assert_eq(g_releases, 2u);
	cr_assert_eq(listed_epoch(1, NULL), 0u);
	cr_assert_eq(ask(1, TS_REG_RELEASE_GROUP, g_group, 5), 0, "not served: nothing to do");
	cr_assert_eq(g_releases, 2u);

	/* a failing engine host: the error comes back, nothing is listed */
	g_fail_serve = -EIO;
	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 6), -EIO);
	cr_assert_eq(listed_epoch(1, NULL), 0u);
	g_fail_serve = 0;

	/* a node without an engine host */
	ts_node_stop(g_node[2]);
	cr_assert_eq(start_node(2, false), 0);
	cr_assert_eq(ask(2, TS_REG_SERVE_GROUP, g_group, 7), -EOPNOTSUPP);
}

Test(node_engine, heartbeats_go_on_while_a_serve_blocks)
{
	struct ts_reg_request r = { .op = TS_REG_SERVE_GROUP, .epoch = 1 };
	uint64_t hb0 = 0, hb1 = 0;
	int st;

	g_serve_sleep_ms = 1500;
	memcpy(r.uuid, g_group, 16);
	ts_registry_new_request_id(r.id);
	cr_assert_eq(ts_registry_post_request(g_reg, 1, &r), 0);
	usleep(300 * 1000); /* the request thread is inside serve now */
	(void)listed_epoch(1, &hb0);
	usleep(600 * 1000);
	(void)listed_epoch(1, &hb1);
	cr_assert_gt(hb1, hb0 + 300, "heartbeat stalled during a serve: %lu -> %lu",
		     (unsigned long)hb0, (unsigned long)hb1);
	cr_assert_eq(ts_registry_wait_request(g_reg, 1, r.id, 10000, &st), 0);
	cr_assert_eq(st, 0);
	cr_assert_eq(listed_epoch(1, NULL), 1u);
}

static struct iscsi_context *login(unsigned node)
{
	struct iscsi_context *ctx = iscsi_create_context("iqn.2026-01.io.tessera:unit-initiator");
	char iqn[80], portal[32];

	cr_assert_not_null(ctx);
	vol_iqn(g_group, iqn);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", g_port + node);
	iscsi_set_targetname(ctx, iqn);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	if (iscsi_full_connect_sync(ctx, portal, 0) != 0) {
		iscsi_destroy_context(ctx);
		return NULL;
	}
	return ctx;
}

Test(node_engine, a_login_to_any_node_reaches_the_serving_one)
{
	struct iscsi_context *ctx = NULL;
	struct scsi_task *t;

	cr_assert_null(login(2), "nobody serves the group yet");
	cr_assert_eq(ask(1, TS_REG_SERVE_GROUP, g_group, 1), 0);
	/* node 2 learns the route at its next heartbeat */
	for (int i = 0; i < 50 && !ctx; i++) {
		ctx = login(2);
		if (!ctx)
			usleep(100 * 1000);
	}
	cr_assert_not_null(ctx, "login through node 2 never reached node 1");
	t = iscsi_testunitready_sync(ctx, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	iscsi_logout_sync(ctx);
	iscsi_destroy_context(ctx);

	/* the engine loses the group on its own (fenced): no longer listed, no route */
	ts_node_engine_lost(g_node[1], g_group);
	cr_assert_eq(listed_epoch(1, NULL), 0u);
	cr_assert_eq(fake_release(NULL, g_node[1], g_group), 0);
	usleep(400 * 1000); /* a few heartbeats */
	cr_assert_null(login(2), "redirected to a node that no longer serves the group");
	cr_assert_null(login(1));
}

Test(node_engine, stopping_a_node_releases_its_engines)
{
	cr_assert_eq(ask(2, TS_REG_SERVE_GROUP, g_group, 4), 0);
	cr_assert_eq(g_releases, 0u);
	ts_node_stop(g_node[2]);
	g_node[2] = NULL;
	cr_assert_eq(g_releases, 1u);
}
