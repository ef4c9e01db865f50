/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Multi-node test: three node daemons as separate processes on loopback
 * addresses 127.0.0.2-4, a 4+2 array group across them (two members per
 * node) assembled from this process over user-mode iSCSI.
 *
 *  1. fill a region with a versioned pattern (every block stamped with its
 *     index and version);
 *  2. a writer thread keeps rewriting random blocks and reading random blocks
 *     back while node 2 is SIGKILLed, stays down, and is restarted;
 *  3. the group takes node 2's members back (ts_cluster_rejoin: resync);
 *  4. every block is read and compared with the last acknowledged version;
 *  5. node 3 is then SIGKILLed and every block is read again: with node 3's
 *     fragments gone, decoding needs node 2's resynced fragments, so this
 *     checks the resync itself, not just the degraded reads.
 *
 * A write that returns an error is not acknowledged: its block may hold the
 * old or the new version (both accepted) and it counts as unacked; an
 * acknowledged write that reads back wrong counts as lost. Last line:
 * `acked=N unacked=U lost=L verified=V rejoined=yes|no`; exit 0 iff lost=0,
 * rejoined=yes and nothing failed.
 *
 * With --netns, each node runs in its own network namespace (ip netns +
 * veth, bridged to this process's namespace on 10.200.X.0/24; needs root)
 * and one more phase runs before the kill: node 1's link is cut (no RST,
 * packets vanish), so its members fail by IO timeout rather than by a reset
 * connection; the load continues degraded; the link comes back and node 1's
 * members rejoin.
 *
 * Usage: multinode-test [--netns] <tessera binary> <work dir>
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "control/cluster/cluster.h"
#include "control/registry/registry.h"
#include "e2e/multinode/nodes.h"

#define NNODES 3
#define BLK (64u * 1024u)
#define NBLK 256u /* 16 MiB region */
#define MEMBER_SIZE (24ull << 20)
#define USER "tessera-nodes"
#define SECRET "multinode-test-secret"

static const char *g_bin, *g_work;
static uint16_t g_port;
static char g_cluster[37];
static bool g_netns;
static unsigned g_tag; /* names and subnet of this run's namespaces */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}

static void node_addr(unsigned id, char *out, size_t len)
{
	if (g_netns)
		snprintf(out, len, "10.200.%u.%u", g_tag % 200, id + 1);
	else
		snprintf(out, len, "127.0.0.%u", id + 1);
}

static void netns_down(void)
{
	for (unsigned i = 1; i <= 3; i++)
		(void)sh("ip netns del tsmn%un%u 2>/dev/null", g_tag, i);
	(void)sh("ip link del tsmnbr%u 2>/dev/null", g_tag);
}

static bool netns_up(void)
{
	int rc = sh("ip link add tsmnbr%u type bridge && ip addr add 10.200.%u.1/24 dev tsmnbr%u && "
		    "ip link set tsmnbr%u up", g_tag, g_tag % 200, g_tag, g_tag);

	for (unsigned i = 1; i <= 3 && rc == 0; i++)
		rc = sh("ip netns add tsmn%un%u && "
			"ip link add tsmn%uh%u type veth peer name tsmn%uv%u && "
			"ip link set tsmn%uv%u netns tsmn%un%u && "
			"ip -n tsmn%un%u addr add 10.200.%u.%u/24 dev tsmn%uv%u && "
			"ip -n tsmn%un%u link set tsmn%uv%u up && ip -n tsmn%un%u link set lo up && "
			"ip link set tsmn%uh%u master tsmnbr%u && ip link set tsmn%uh%u up",
			g_tag, i, g_tag, i, g_tag, i, g_tag, i, g_tag, i, g_tag, i, g_tag % 200, i + 1,
			g_tag, i, g_tag, i, g_tag, i, g_tag, i, g_tag, i, g_tag, g_tag, i);
	return rc == 0;
}

/* Cut (up=false) or restore node \p id's link: packets vanish, no RST. */
static void netns_link(unsigned id, bool up)
{
	(void)sh("ip link set tsmn%uh%u %s", g_tag, id, up ? "up" : "down");
}
static pid_t g_pid[NNODES + 1];
static struct ts_agrp *g_grp;

/* shadow: last acked version of each block; prev: the version before an unacked write */
static uint32_t g_ver[NBLK], g_alt[NBLK];
static bool g_uncertain[NBLK];
static atomic_bool g_stop;
static atomic_uint_fast64_t g_acked, g_unacked, g_lost, g_reads;

static void stamp(uint8_t *buf, uint32_t blk, uint32_t ver)
{
	uint32_t *w = (uint32_t *)buf;

	for (uint32_t i = 0; i < BLK / 4; i++)
		w[i] = (blk * 2654435761u) ^ (ver * 40503u) ^ (i * 2246822519u);
	w[0] = blk;
	w[1] = ver;
}

static bool matches(const uint8_t *buf, uint32_t blk, uint32_t ver)
{
	static _Thread_local uint8_t exp[BLK];

	stamp(exp, blk, ver);
	return memcmp(exp, buf, BLK) == 0;
}

static bool check_block(const uint8_t *buf, uint32_t b)
{
	return matches(buf, b, g_ver[b]) || (g_uncertain[b] && matches(buf, b, g_alt[b]));
}

static pid_t start_node(unsigned id)
{
	char addr[16], disk[512], reg[512], log[512], ns[32];
	struct mn_node_spec spec = { .bin = g_bin, .id = id, .cluster = g_cluster, .addr = addr,
				     .port = g_port, .registry = reg, .disk = disk,
				     .extent_size = 1u << 20, .heartbeat_ms = 200, .log = log,
				     .chap_user = USER, .chap_secret = SECRET };

	node_addr(id, addr, sizeof(addr));
	snprintf(disk, sizeof(disk), "%s/node%u.disk", g_work, id);
	snprintf(reg, sizeof(reg), "%s/registry", g_work);
	snprintf(log, sizeof(log), "%s/node%u.log", g_work, id);
	snprintf(ns, sizeof(ns), "tsmn%un%u", g_tag, id);
	if (g_netns)
		spec.netns = ns;
	return mn_spawn_node(&spec);
}

static void kill_node(unsigned id, int sig)
{
	if (g_pid[id] > 0) {
		kill(g_pid[id], sig);
		waitpid(g_pid[id], NULL, 0);
		g_pid[id] = 0;
	}
}

static int write_block(uint8_t *buf, uint32_t b)
{
	uint32_t nv = g_ver[b] + 1;
	int rc;

	stamp(buf, b, nv);
	rc = ts_agrp_write_sync(g_grp, (uint64_t)b * BLK, BLK, buf);
	if (rc == 0) {
		g_ver[b] = nv;
		g_uncertain[b] = false;
		atomic_fetch_add(&g_acked, 1);
	} else {
		/* not acknowledged: either version may be there now */
		g_alt[b] = nv;
		g_uncertain[b] = true;
		g_ver[b] = nv - 1;
		atomic_fetch_add(&g_unacked, 1);
		fprintf(stderr, "write blk=%u failed: %s\n", b, ts_strerror(rc));
	}
	return rc;
}

static void read_check(uint8_t *buf, uint32_t b, const char *phase)
{
	int rc = ts_agrp_read_sync(g_grp, (uint64_t)b * BLK, BLK, buf);

	atomic_fetch_add(&g_reads, 1);
	if (rc || !check_block(buf, b)) {
		atomic_fetch_add(&g_lost, 1);
		fprintf(stderr, "%s: blk=%u rc=%d ver=%u got=(%u,%u)\n", phase, b, rc, g_ver[b],
			((uint32_t *)buf)[0], ((uint32_t *)buf)[1]);
	}
}

static void *writer(void *arg)
{
	uint8_t *buf = malloc(BLK);
	unsigned seed = 12345;

	(void)arg;
	while (!atomic_load(&g_stop)) {
		uint32_t b = (uint32_t)rand_r(&seed) % NBLK;

		(void)write_block(buf, b);
		read_check(buf, (uint32_t)rand_r(&seed) % NBLK, "load");
	}
	free(buf);
	return NULL;
}

int main(int argc, char **argv)
{
	struct ts_cluster_opts co = { 0 };
	struct ts_registry *reg = NULL;
	struct ts_cluster *cl = NULL;
	char path[512];
	uint8_t *buf;
	pthread_t wt;
	bool rejoined = false, ok = true;
	uint64_t t0;
	int rc;

	if (argc == 4 && !strcmp(argv[1], "--netns")) {
		g_netns = true;
		argv++;
		argc--;
	}
	if (argc != 3) {
		fprintf(stderr, "usage: multinode-test [--netns] <tessera> <workdir>\n");
		return 2;
	}
	g_tag = (unsigned)getpid() % 10000;
	if (g_netns) {
		if (geteuid() != 0) {
			printf("skip: --netns needs root\n");
			return 77;
		}
		netns_down();
		if (!netns_up()) {
			netns_down();
			printf("skip: cannot create network namespaces\n");
			return 77;
		}
	} else if (!mn_addr_bindable("127.0.0.3")) {
		printf("skip: cannot bind 127.0.0.3\n");
		return 77;
	}
	signal(SIGPIPE, SIG_IGN);
	g_bin = argv[1];
	g_work = argv[2];
	g_port = (uint16_t)(28000 + getpid() % 4000); /* below the ephemeral range */
	{
		uint8_t cu[16];
		ts_uuid_generate(cu);
		ts_uuid_format(cu, g_cluster);
	}
	snprintf(path, sizeof(path), "rm -rf '%s' && mkdir -p '%s'", g_work, g_work);
	if (system(path))
		return 1;
	for (unsigned i = 1; i <= NNODES; i++) {
		snprintf(path, sizeof(path), "%s/node%u.disk", g_work, i);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, 128ll << 20))
			return 1;
		close(fd);
	}
	snprintf(path, sizeof(path), "%s/registry", g_work);
	if (ts_registry_dir_open(path, &reg))
		return 1;
	t0 = ts_registry_now_ms();
	for (unsigned i = 1; i <= NNODES; i++)
		g_pid[i] = start_node(i);
	if (!mn_wait_nodes(reg, 0, NNODES, t0)) {
		fprintf(stderr, "nodes did not register\n");
		ok = false;
		goto out;
	}

	/* the group: 4+2, two members per node */
	co.reg = reg;
	ts_uuid_generate(co.group_uuid);
	co.k = 4;
	co.m = 2;
	co.member_size = MEMBER_SIZE;
	co.chap_user = USER;
	co.chap_secret = SECRET;
	co.io_timeout_ms = 1000;
	rc = ts_cluster_open(&co, &cl);
	if (rc) {
		fprintf(stderr, "cluster open: %s\n", ts_strerror(rc));
		ok = false;
		goto out;
	}
	g_grp = ts_cluster_agrp(cl);
	if (ts_agrp_size(g_grp) < (uint64_t)NBLK * BLK) {
		fprintf(stderr, "group too small\n");
		ok = false;
		goto out;
	}
	printf("group up size=%llu live=0x%llx\n", (unsigned long long)ts_agrp_size(g_grp),
	       (unsigned long long)ts_agrp_live_mask(g_grp));
	fflush(stdout);

	/* 1. fill */
	buf = malloc(BLK);
	for (uint32_t b = 0; b < NBLK; b++)
		if (write_block(buf, b))
			ok = false;

	/* 2. load while node 2 dies and returns */
	pthread_create(&wt, NULL, writer, NULL);
	usleep(500000);
	if (g_netns) {
		uint64_t a0 = atomic_load(&g_acked);

		printf("cut node 1's link\n");
		fflush(stdout);
		netns_link(1, false);
		sleep(3); /* members on node 1 fail by timeout; IO continues degraded */
		printf("partitioned live=0x%llx acked_while_cut=%llu\n",
		       (unsigned long long)ts_agrp_live_mask(g_grp),
		       (unsigned long long)(atomic_load(&g_acked) - a0));
		fflush(stdout);
		if (atomic_load(&g_acked) == a0 || ts_agrp_live_mask(g_grp) == 0x3f) {
			fprintf(stderr, "partition: IO stalled or no member failed\n");
			ok = false;
		}
		netns_link(1, true);
		for (int i = 0; i < 100 && ts_agrp_live_mask(g_grp) != 0x3f; i++) {
			ts_cluster_rejoin(cl);
			if (ts_agrp_live_mask(g_grp) != 0x3f)
				usleep(200000);
		}
		printf("healed partition live=0x%llx\n", (unsigned long long)ts_agrp_live_mask(g_grp));
		fflush(stdout);
		if (ts_agrp_live_mask(g_grp) != 0x3f)
			ok = false;
	}
	printf("kill -9 node 2\n");
	fflush(stdout);
	kill_node(2, SIGKILL);
	{
		uint64_t a0 = atomic_load(&g_acked), r0 = atomic_load(&g_reads);

		sleep(3); /* degraded: writes and reads continue */
		printf("degraded live=0x%llx acked_while_down=%llu reads_while_down=%llu\n",
		       (unsigned long long)ts_agrp_live_mask(g_grp),
		       (unsigned long long)(atomic_load(&g_acked) - a0),
		       (unsigned long long)(atomic_load(&g_reads) - r0));
		fflush(stdout);
		if (atomic_load(&g_acked) == a0 || atomic_load(&g_reads) == r0) {
			fprintf(stderr, "IO stalled during the outage\n");
			ok = false;
		}
	}
	t0 = ts_registry_now_ms();
	g_pid[2] = start_node(2);
	if (!mn_wait_nodes(reg, 0, NNODES, t0))
		fprintf(stderr, "node 2 did not come back\n");
	/* 3. rejoin (resync) while the load runs */
	for (int i = 0; i < 100 && ts_agrp_live_mask(g_grp) != 0x3f; i++) {
		ts_cluster_rejoin(cl);
		if (ts_agrp_live_mask(g_grp) != 0x3f)
			usleep(200000);
	}
	rejoined = ts_agrp_live_mask(g_grp) == 0x3f;
	printf("rejoined=%d live=0x%llx\n", rejoined, (unsigned long long)ts_agrp_live_mask(g_grp));
	fflush(stdout);
	usleep(500000);
	atomic_store(&g_stop, true);
	pthread_join(wt, NULL);

	/* 4. verify everything with all members */
	for (uint32_t b = 0; b < NBLK; b++)
		read_check(buf, b, "verify");
	/* 5. and again without node 3: needs node 2's resynced fragments */
	printf("kill -9 node 3\n");
	fflush(stdout);
	kill_node(3, SIGKILL);
	for (uint32_t b = 0; b < NBLK; b++)
		read_check(buf, b, "verify-without-node3");
	free(buf);
out:
	ts_cluster_close(cl);
	for (unsigned i = 1; i <= NNODES; i++)
		kill_node(i, SIGTERM);
	ts_registry_close(reg);
	if (g_netns)
		netns_down();
	printf("acked=%llu unacked=%llu lost=%llu verified=%llu rejoined=%s\n",
	       (unsigned long long)atomic_load(&g_acked), (unsigned long long)atomic_load(&g_unacked),
	       (unsigned long long)atomic_load(&g_lost), (unsigned long long)atomic_load(&g_reads),
	       rejoined ? "yes" : "no");
	return ok && rejoined && atomic_load(&g_lost) == 0 ? 0 : 1;
}
