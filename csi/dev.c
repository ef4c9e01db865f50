/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera dev`: the embedded default. One process runs N data-plane nodes
 * (each a PEM + LDM over its own disk files), one erasure-coded array group
 * across them (dataplane/pool), and on that group's device the serving stack
 * (csi/stack.h): the thin-volume pool, Tessera's iSCSI target on a loopback
 * portal, and the CSI Identity/Controller/Node services (with the embedded
 * metadata store) on a unix socket, beside the admin service the `tessera`
 * CLI talks to (its node and group view: dev_status). It runs until SIGINT
 * or SIGTERM and keeps its state in --state-dir across restarts.
 *
 * State directory:
 *   pool.json, node<N>/disk<D>.img   the data plane (dataplane/pool)
 *   volumes.formatted, meta/, node/, pr/, attach/   the stack (csi/stack.h)
 *
 * Startup order is bottom-up (pool, then the stack) and shutdown the
 * reverse, so nothing is ever served that cannot do IO. Signals are blocked
 * in every thread and taken with sigwait() here.
 */
#include "csi/dev.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/admin.h"
#include "csi/stack.h"
#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/pool/pool.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tessera dev [options]\n"
		"  --state-dir DIR      state (default $XDG_STATE_HOME/tessera/dev or ~/.local/state/tessera/dev)\n"
		"  --nodes N            data-plane nodes on first start (default 3)\n"
		"  --disks N            disk files per node on first start (default 2)\n"
		"  --disk-size BYTES    size of each disk file on first start (default 1Gi)\n"
		"  --ec K+M             erasure code on first start (default 4+2)\n"
		"  --csi-endpoint EP    CSI socket (default unix://<state-dir>/csi.sock)\n"
		"  --portal HOST:PORT   iSCSI portal (default 127.0.0.1:3260)\n"
		"  --node-id ID         CSI node id (default tessera-dev)\n");
}

/* A positive size ("256Mi", "1G"). */
static int parse_size(const char *s, uint64_t *out)
{
	int rc = ts_parse_size(s, out);

	return rc == 0 && *out == 0 ? -EINVAL : rc;
}

static int probe_pool(void *arg)
{
	struct ts_pool_status st;

	ts_pool_status(arg, &st);
	return (unsigned)__builtin_popcountll(st.live_mask) >= st.k ? 0 : -EAGAIN;
}

/* The nodes and the group for the admin service (csi/admin.h, via the stack). */
static int dev_status(void *ctx, struct ts_admin_status *out)
{
	struct ts_pool *pool = ctx;
	struct ts_admin_agrp *g = &out->agrps[0];
	struct ts_agrp_stats as;
	struct ts_pool_status st;
	unsigned live;

	ts_pool_status(pool, &st);
	out->nnodes = TS_MIN(st.nodes, TS_ADMIN_MAX_NODES);
	for (size_t i = 0; i < out->nnodes; i++) {
		out->nodes[i].id = (uint32_t)i + 1;
		out->nodes[i].up = st.node_up_mask >> i & 1;
		out->nodes[i].disks = st.node_disks[i];
		out->nodes[i].extents = st.node_extents[i];
		out->nodes[i].free_extents = st.node_free_extents[i];
		out->nodes[i].extent_bytes = st.extent_size;
		out->nodes[i].free_bytes = st.node_free_extents[i] * st.extent_size;
	}
	out->nagrps = 1;
	snprintf(g->uuid, sizeof(g->uuid), "%s", st.group_uuid);
	g->k = st.k;
	g->m = st.m;
	g->generation = st.generation;
	g->size_bytes = st.size;
	for (unsigned i = 0; i < st.k + st.m && i < TS_ADMIN_MAX_SLOTS; i++) {
		g->slots[i].node = st.slot_node[i];
		g->slots[i].live = st.live_mask >> i & 1;
	}
	/* No replica journal here: degraded writes are EC-degraded, resynced on return. */
	live = (unsigned)__builtin_popcountll(st.live_mask);
	snprintf(g->state, sizeof(g->state), "%s",
		 live == st.k + st.m ? "healthy" : live >= st.k ? "degraded" : "failed");
	ts_agrp_stats(ts_pool_agrp(pool), &as);
	g->degraded_stripes = as.ood_stripes;
	return 0;
}

int ts_dev_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "disks", required_argument, NULL, 'D' },
		{ "disk-size", required_argument, NULL, 'd' },
		{ "ec", required_argument, NULL, 'e' },
		{ "csi-endpoint", required_argument, NULL, 'c' },
		{ "portal", required_argument, NULL, 'p' },
		{ "node-id", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ts_pool_opts po = { 0 };
	struct ts_stack_opts so = { .name = "dev", .node_id = "tessera-dev", .portal = "127.0.0.1:3260" };
	struct ts_stack *stack = NULL;
	struct ts_pool *pool = NULL;
	struct ts_pool_status pst;
	const char *endpoint = NULL;
	char state[4096], sock[4200];
	uint64_t v;
	sigset_t sigs;
	int opt, sig, rc = 2;

	state[0] = '\0';
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 's':
			snprintf(state, sizeof(state), "%s", optarg);
			break;
		case 'n':
		case 'D':
			if (parse_size(optarg, &v) < 0 || v > 32) {
				fprintf(stderr, "tessera dev: bad count '%s'\n", optarg);
				return 2;
			}
			if (opt == 'n')
				po.nodes = (unsigned)v;
			else
				po.disks_per_node = (unsigned)v;
			break;
		case 'd':
			if (parse_size(optarg, &po.disk_size) < 0) {
				fprintf(stderr, "tessera dev: bad size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'e':
			if (ts_stack_parse_ec(optarg, &po.k, &po.m) < 0) {
				fprintf(stderr, "tessera dev: bad erasure code '%s' (want K+M)\n", optarg);
				return 2;
			}
			break;
		case 'c': endpoint = optarg; break;
		case 'p': so.portal = optarg; break;
		case 'i': so.node_id = optarg; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!state[0]) {
		const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
		if (x && *x)
			snprintf(state, sizeof(state), "%s/tessera/dev", x);
		else
			snprintf(state, sizeof(state), "%s/.local/state/tessera/dev",
				 home && *home ? home : "/var/lib");
	}
	if (ts_stack_check_opts("dev", so.portal, state, &endpoint, sock, sizeof(sock)) < 0)
		return 2;

	ts_stack_block_signals(&sigs);

	rc = ts_mkdir_p(state);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: cannot create %s: %s\n", state, ts_strerror(rc));
		return 1;
	}
	po.state_dir = state;
	rc = ts_pool_open(&po, &pool);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: data plane did not come up: %s\n", ts_strerror(rc));
		goto out;
	}
	ts_pool_status(pool, &pst);
	so.device = ts_pool_device(pool);
	so.state_dir = state;
	so.csi_endpoint = endpoint;
	so.k = pst.k;
	so.m = pst.m;
	so.probe = probe_pool;
	so.probe_arg = pool;
	so.status = dev_status;
	so.status_arg = pool;
	rc = ts_uuid_parse(pst.group_uuid, so.group_uuid);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: bad group uuid '%s'\n", pst.group_uuid);
		goto out;
	}
	rc = ts_stack_start(&so, &stack);
	if (rc < 0)
		goto out; /* the stack said which layer failed */
	ts_log(TS_LOG_INFO, "dev", "serving state=%s nodes=%u ec=%u+%u size=%llu", state, pst.nodes,
	       pst.k, pst.m, (unsigned long long)pst.size);
	printf("ready csi=%s portal=%s\n", endpoint, so.portal);
	fflush(stdout);
	sigwait(&sigs, &sig);
	ts_log(TS_LOG_INFO, "dev", "signal %d, shutting down", sig);
	rc = 0;
out:
	ts_stack_stop(stack);
	ts_pool_close(pool);
	return rc < 0 ? 1 : rc;
}
