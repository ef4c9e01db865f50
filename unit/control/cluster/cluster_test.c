/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Cluster assembly in one process: two node daemons (ts_node_start, each on
 * its own loopback port and disk file) plus this process as a third node
 * with its own LDM (local members). A 4+2 group is created through the
 * registry mailbox (two members per node, placement checked against the
 * group record), written, closed and re-assembled from the record; a remote
 * node stops (IO continues degraded, writes are replicated on the two live
 * nodes' journals), a second one stops (reads come from the replicas),
 * both restart on the same disks, their members rejoin and the heal
 * reclaims the replicas; all data verifies.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ldm/ldm.h"
#include "control/cluster/cluster.h"
#include "control/node/node.h"
#include "control/registry/registry.h"
#include "dataplane/pem/pem.h"

#define MIB (1024ull * 1024ull)
#define USER "nodes"
#define SECRET "cluster-test-secret"

static char g_dir[64], g_disk[4][128];
static const char *g_paths[4][1];
static uint8_t g_cluster[16];
static uint16_t g_port;
static struct ts_registry *g_reg;
static struct ts_node *g_node[3];
static struct ts_pem *g_pem;
static struct ts_ldm *g_ldm;

static int start_node(unsigned id)
{
	struct ts_node_opts o = { .node_id = id, .disks = g_paths[id], .ndisks = 1,
				  .extent_size = MIB, .addr = "127.0.0.1",
				  .port = (uint16_t)(g_port + id), .chap_user = USER,
				  .chap_secret = SECRET, .reg = g_reg, .heartbeat_ms = 100 };

	memcpy(o.cluster_uuid, g_cluster, 16);
	return ts_node_start(&o, &g_node[id]);
}

static void publish_local(void)
{
	struct ts_reg_node n = { .node_id = 3, .heartbeat_ms = ts_registry_now_ms() };

	snprintf(n.portal, sizeof(n.portal), "127.0.0.1:1"); /* never dialled: members are local */
	cr_assert_eq(ts_registry_put_node(g_reg, &n), 0);
}

static void setup(void)
{
	struct ts_pem_opts po = { .node_id = 3, .extent_size = MIB };

	signal(SIGPIPE, SIG_IGN);
	strcpy(g_dir, "/tmp/ts_cluster_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	/* below the ephemeral range, so our own outgoing connections never hold it */
	g_port = (uint16_t)(10000 + (getpid() % 8999) * 2);
	ts_uuid_generate(g_cluster);
	for (unsigned i = 1; i <= 3; i++) {
		int fd;

		snprintf(g_disk[i], sizeof(g_disk[i]), "%s/node%u.disk", g_dir, i);
		g_paths[i][0] = g_disk[i];
		fd = open(g_disk[i], O_RDWR | O_CREAT | O_TRUNC, 0600);
		cr_assert_geq(fd, 0);
		cr_assert_eq(ftruncate(fd, 64 * MIB), 0);
		close(fd);
	}
	char reg[128];
	snprintf(reg, sizeof(reg), "%s/registry", g_dir);
	cr_assert_eq(ts_registry_dir_open(reg, &g_reg), 0);
	cr_assert_eq(start_node(1), 0);
	cr_assert_eq(start_node(2), 0);
	memcpy(po.cluster_uuid, g_cluster, 16);
	cr_assert_eq(ts_pem_format(g_paths[3], 1, &po), 0);
	cr_assert_eq(ts_pem_open(g_paths[3], 1, &po, &g_pem), 0);
	cr_assert_eq(ts_ldm_open(g_pem, &g_ldm), 0);
	publish_local();
}

static void teardown(void)
{
	char cmd[128];

	ts_node_stop(g_node[1]);
	ts_node_stop(g_node[2]);
	ts_ldm_close(g_ldm);
	ts_pem_close(g_pem);
	ts_registry_close(g_reg);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 31u) ^ (seed * 131u) ^ (i >> 12));
}

/* Run the controller's maintenance (as its loop does) until the group is
 * healthy, for at most \p seconds; asserts it got there. */
static void tick_until_healthy(struct ts_cluster *c, int seconds, struct ts_cluster_status *st)
{
	for (int i = 0; i < seconds * 10; i++) {
		publish_local();
		ts_cluster_tick(c);
		ts_cluster_status(c, st);
		if (!strcmp(st->state, "healthy"))
			break;
		usleep(100000);
	}
	cr_assert_str_eq(st->state, "healthy");
}

TestSuite(node_cluster, .init = setup, .fini = teardown, .timeout = 60);

Test(node_cluster, local_and_remote_members_survive_a_node)
{
	struct ts_cluster_opts co = { .reg = g_reg, .k = 4, .m = 2, .member_size = 8 * MIB,
				      .chap_user = USER, .chap_secret = SECRET, .io_timeout_ms = 800,
				      .local_node_id = 3, .local_ldm = g_ldm, .journal_size = 12 * MIB };
	struct ts_cluster *c = NULL;
	struct ts_reg_group grp;
	const size_t len = 4 * MIB;
	uint8_t *a = ts_malloc(len), *b = ts_malloc(len), *r = ts_malloc(len);
	unsigned per_node[4] = { 0 };
	struct ts_cluster_status st;
	struct ts_member *dev;

	ts_uuid_generate(co.group_uuid);
	fill(a, len, 1);
	fill(b, len, 2);
	cr_assert_eq(ts_cluster_open(&co, &c), 0);
	cr_assert_eq(ts_agrp_live_mask(ts_cluster_agrp(c)), 0x3fu);
	cr_assert_eq(ts_agrp_write_sync(ts_cluster_agrp(c), 0, len, a), 0);

	/* the record: 2 members per node; the local ones are in our LDM, tagged */
	cr_assert_eq(ts_registry_get_group(g_reg, co.group_uuid, &grp), 0);
	for (unsigned s = 0; s < 6; s++) {
		cr_assert(grp.slots[s].node_id >= 1 && grp.slots[s].node_id <= 3);
		per_node[grp.slots[s].node_id]++;
		if (grp.slots[s].node_id == 3) {
			struct ts_ldm_vdisk *vd;
			struct ts_ldm_vdisk_info vi;

			cr_assert_eq(ts_ldm_get(g_ldm, grp.slots[s].vdisk, &vd), 0);
			ts_ldm_vdisk_info(vd, &vi);
			cr_assert_eq(vi.tag, TS_NODE_MEMBER_TAG);
			cr_assert_eq(vi.size, 8 * MIB);
		}
	}
	cr_assert_eq(per_node[1], 2u);
	cr_assert_eq(per_node[2], 2u);
	cr_assert_eq(per_node[3], 2u);

	/* close and re-assemble from the record */
	ts_cluster_close(c);
	c = NULL;
	publish_local();
	cr_assert_eq(ts_cluster_open(&co, &c), 0);
	cr_assert_eq(ts_agrp_live_mask(ts_cluster_agrp(c)), 0x3fu);
	cr_assert_eq(ts_agrp_read_sync(ts_cluster_agrp(c), 0, len, r), 0);
	cr_assert_eq(memcmp(a, r, len), 0);

	/* node 1 stops: writes and reads continue degraded, and the writes
	 * are replicated on the two live nodes' journals */
	ts_node_stop(g_node[1]);
	g_node[1] = NULL;
	dev = ts_cluster_device(c);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, 0, len, b), 0);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, len, r), 0);
	cr_assert_eq(memcmp(b, r, len), 0);
	cr_assert_neq(ts_agrp_live_mask(ts_cluster_agrp(c)), 0x3fu);
	ts_cluster_status(c, &st);
	cr_assert_str_eq(st.state, "degraded");
	cr_assert_eq(st.replica_copies, 2);
	cr_assert_eq(st.replicated_bytes, 2 * len);
	cr_assert_gt(st.degraded_stripes, 0);

	/* node 2 stops too: the group cannot decode; what was written during
	 * the outage is still read, from the replica in our (node 3) journal */
	ts_node_stop(g_node[2]);
	g_node[2] = NULL;
	memset(r, 0, len);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, len, r), 0);
	cr_assert_eq(memcmp(b, r, len), 0);
	ts_cluster_status(c, &st);
	cr_assert_str_eq(st.state, "failed");

	/* both return on the same disks and ports: members rejoin (resync),
	 * then the heal verifies the replicas against EC and reclaims them */
	cr_assert_eq(start_node(1), 0);
	cr_assert_eq(start_node(2), 0);
	tick_until_healthy(c, 10, &st);
	cr_assert_eq(st.replicated_bytes, 0);
	cr_assert_eq(st.heals, 1);
	cr_assert_eq(st.heal_total_bytes, len);
	cr_assert_eq(st.degraded_stripes, 0);

	/* node 2 stops: node 1's resynced fragments must carry the data */
	ts_node_stop(g_node[2]);
	g_node[2] = NULL;
	memset(r, 0, len);
	cr_assert_eq(ts_agrp_read_sync(ts_cluster_agrp(c), 0, len, r), 0);
	cr_assert_eq(memcmp(b, r, len), 0);

	ts_cluster_close(c);
	ts_free(a);
	ts_free(b);
	ts_free(r);
}

Test(node_cluster, lost_disk_is_rebuilt_onto_a_new_vdisk)
{
	struct ts_cluster_opts co = { .reg = g_reg, .k = 4, .m = 2, .member_size = 8 * MIB,
				      .chap_user = USER, .chap_secret = SECRET, .io_timeout_ms = 800,
				      .local_node_id = 3, .local_ldm = g_ldm, .journal_size = 8 * MIB };
	struct ts_cluster *c = NULL;
	struct ts_cluster_status st;
	struct ts_reg_group before, after;
	const size_t len = 4 * MIB;
	uint8_t *a = ts_malloc(len), *b = ts_malloc(len), *r = ts_malloc(len);
	struct ts_member *dev;
	int fd;

	ts_uuid_generate(co.group_uuid);
	fill(a, len, 3);
	fill(b, len, 4);
	cr_assert_eq(ts_cluster_open(&co, &c), 0);
	dev = ts_cluster_device(c);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, 0, len, a), 0);
	cr_assert_eq(ts_registry_get_group(g_reg, co.group_uuid, &before), 0);
	cr_assert_eq(before.njournals, 3);

	/* node 1 goes down; half the data is rewritten meanwhile (replicated) */
	ts_node_stop(g_node[1]);
	g_node[1] = NULL;
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, 0, len / 2, b), 0);
	memcpy(a, b, len / 2);
	/* ... and comes back with a new, blank disk */
	fd = open(g_disk[1], O_RDWR | O_TRUNC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 64 * MIB), 0);
	close(fd);
	cr_assert_eq(start_node(1), 0);
	tick_until_healthy(c, 15, &st);
	cr_assert_eq(st.rebuilds, 2, "both of node 1's slots rebuilt");
	cr_assert_gt(st.rebuild_rate_bps, 0);
	cr_assert_eq(st.replicated_bytes, 0, "heal done with the replaced journal");
	cr_assert_eq(st.heals, 1);
	/* the record names the new vdisks, still two per node */
	cr_assert_eq(ts_registry_get_group(g_reg, co.group_uuid, &after), 0);
	for (unsigned s = 0; s < 6; s++) {
		cr_assert_eq(after.slots[s].node_id, before.slots[s].node_id);
		cr_assert_eq(!memcmp(after.slots[s].vdisk, before.slots[s].vdisk, 16),
			     before.slots[s].node_id != 1);
	}
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(!memcmp(after.journals[i].vdisk, before.journals[i].vdisk, 16),
			     before.journals[i].node_id != 1);
	/* node 2 stops: the rebuilt fragments carry the data */
	ts_node_stop(g_node[2]);
	g_node[2] = NULL;
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, len, r), 0);
	cr_assert_eq(memcmp(a, r, len), 0);
	ts_cluster_close(c);
	ts_free(a);
	ts_free(b);
	ts_free(r);
}

Test(node_cluster, failed_group_recovers_after_a_failed_write)
{
	struct ts_cluster_opts co = { .reg = g_reg, .k = 4, .m = 2, .member_size = 8 * MIB,
				      .chap_user = USER, .chap_secret = SECRET, .io_timeout_ms = 800,
				      .local_node_id = 3, .local_ldm = g_ldm, .journal_size = 8 * MIB };
	struct ts_cluster *c = NULL;
	struct ts_cluster_status st;
	const size_t len = 4 * MIB, half = len / 2;
	uint8_t *a = ts_malloc(len), *b = ts_malloc(len), *r = ts_malloc(len);
	struct ts_member *dev;
	int rc;

	ts_uuid_generate(co.group_uuid);
	fill(a, len, 5);
	fill(b, len, 6);
	cr_assert_eq(ts_cluster_open(&co, &c), 0);
	dev = ts_cluster_device(c);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, 0, len, a), 0);
	/* node 1 goes: degraded writes to the first half */
	ts_node_stop(g_node[1]);
	g_node[1] = NULL;
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, 0, half, b), 0);
	memcpy(a, b, half);
	/* node 2 goes while a write to the second half is under way: the group
	 * fails, the write fails (its range is indeterminate afterwards) and
	 * node 2's slots carry out-of-date marks for it */
	ts_node_stop(g_node[2]);
	g_node[2] = NULL;
	rc = ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, half, half, b + half);
	cr_assert_neq(rc, 0);
	ts_cluster_status(c, &st);
	cr_assert_str_eq(st.state, "failed");
	/* both come back and the group heals: node 2's members are current
	 * (a failed group keeps the generation). If the failing write left
	 * out-of-date marks on them (timing: it must have reached the stripe
	 * write), rejoining cannot resync them (fewer than k live to read
	 * from) and the tick re-assembles the group from its superblocks.
	 * The heal then finds the failed write's replicas differ from the EC
	 * copy and writes them back. */
	cr_assert_eq(start_node(1), 0);
	cr_assert_eq(start_node(2), 0);
	tick_until_healthy(c, 20, &st);
	cr_assert_eq(st.live_mask, 0x3fu);
	/* the acknowledged data is intact; the failed write's range holds old or new blocks */
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, len, r), 0);
	cr_assert_eq(memcmp(a, r, half), 0);
	for (size_t o = half; o < len; o += 4096)
		cr_assert(!memcmp(r + o, a + o, 4096) || !memcmp(r + o, b + o, 4096),
			  "block at %zu is neither the old nor the new data", o);
	/* and IO works again */
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, half, half, b + half), 0);
	memcpy(a + half, b + half, half);
	ts_node_stop(g_node[1]);
	g_node[1] = NULL;
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, len, r), 0);
	cr_assert_eq(memcmp(a, r, len), 0);
	ts_cluster_close(c);
	ts_free(a);
	ts_free(b);
	ts_free(r);
}

Test(node_cluster, placement_needs_enough_nodes)
{
	struct ts_cluster_opts co = { .k = 4, .m = 2, .member_size = 8 * MIB, .chap_user = USER,
				      .chap_secret = SECRET };
	struct ts_registry *two = NULL;
	struct ts_cluster *c = NULL;
	char dir[160];

	/* a registry that knows only two live nodes: 4+2 at most 2 per node does not fit */
	snprintf(dir, sizeof(dir), "%s/two", g_dir);
	cr_assert_eq(ts_registry_dir_open(dir, &two), 0);
	for (uint32_t id = 1; id <= 2; id++) {
		struct ts_reg_node n = { .node_id = id, .heartbeat_ms = ts_registry_now_ms() };
		snprintf(n.portal, sizeof(n.portal), "127.0.0.1:%u", g_port + id);
		cr_assert_eq(ts_registry_put_node(two, &n), 0);
	}
	co.reg = two;
	ts_uuid_generate(co.group_uuid);
	cr_assert_eq(ts_cluster_open(&co, &c), TS_ERR_NO_SPACE);
	cr_assert_null(c);
	cr_assert_eq(ts_registry_get_group(two, co.group_uuid, &(struct ts_reg_group){ 0 }), -ENOENT);
	cr_assert_eq(ts_cluster_open(NULL, &c), -EINVAL);
	co.chap_user = NULL;
	cr_assert_eq(ts_cluster_open(&co, &c), -EINVAL);
	ts_registry_close(two);
}

Test(node_cluster, slots_go_where_the_placement_says)
{
	static const uint32_t too_many[3] = { 1, 1, 2 }, dead[3] = { 1, 2, 9 },
			      chosen[3] = { 2, 3, 1 };
	struct ts_cluster_opts co = { .reg = g_reg, .k = 2, .m = 1, .member_size = 4 * MIB,
				      .chap_user = USER, .chap_secret = SECRET, .io_timeout_ms = 800,
				      .local_node_id = 3, .local_ldm = g_ldm, .journal_size = 2 * MIB };
	struct ts_cluster *c = NULL;
	struct ts_reg_group grp;

	ts_uuid_generate(co.group_uuid);
	/* more than m slots on a node, or a node that is not live: refused, nothing recorded */
	co.slot_nodes = too_many;
	cr_assert_eq(ts_cluster_open(&co, &c), -EINVAL);
	co.slot_nodes = dead;
	cr_assert_eq(ts_cluster_open(&co, &c), -EINVAL);
	cr_assert_null(c);
	cr_assert_eq(ts_registry_get_group(g_reg, co.group_uuid, &grp), -ENOENT);
	co.slot_nodes = chosen;
	cr_assert_eq(ts_cluster_open(&co, &c), 0);
	cr_assert_eq(ts_registry_get_group(g_reg, co.group_uuid, &grp), 0);
	for (unsigned s = 0; s < 3; s++)
		cr_assert_eq(grp.slots[s].node_id, chosen[s], "slot %u on node %u", s,
			     grp.slots[s].node_id);
	cr_assert_eq(ts_agrp_live_mask(ts_cluster_agrp(c)), 0x7u);
	ts_cluster_close(c);
}
