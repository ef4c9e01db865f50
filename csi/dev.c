/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera dev`: the embedded default. One process runs N data-plane nodes
 * (each a PEM + LDM over its own disk files), one erasure-coded array group
 * across them, the thin-volume pool on that group, Tessera's iSCSI target on
 * a loopback portal, and the CSI Identity/Controller/Node services (with
 * the embedded metadata store) on a unix socket, beside the admin service
 * the `tessera` CLI talks to (its data-plane view: dev_admin_status). It
 * runs until SIGINT or SIGTERM and keeps its state in --state-dir across
 * restarts.
 *
 * State directory:
 *   pool.json, node<N>/disk<D>.img   the data plane (dataplane/pool)
 *   volumes.formatted                the thin pool was formatted on the group
 *   meta/                            CSI controller records
 *   node/                            CSI node staging records
 *   pr/                              SCSI persistent reservations per volume
 *   attach/                          private FUSE mounts of attached volumes
 *
 * Startup order is bottom-up (pool, volumes, target, backend, CSI) and
 * shutdown the reverse, so nothing is ever served that cannot do IO.
 * Signals are blocked in every thread and taken with sigwait() here.
 */
#include "csi/dev.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/admin.h"
#include "csi/backend_dataplane.h"
#include "csi/csi.h"
#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/pool/pool.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"

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

static int parse_ec(const char *s, unsigned *k, unsigned *m)
{
	char tail;

	if (sscanf(s, "%u+%u%c", k, m, &tail) != 2 || *k < 1 || *m < 1 ||
	    *k + *m > TS_AGRP_MAX_MEMBERS)
		return -EINVAL;
	return 0;
}

static int probe_pool(void *arg)
{
	struct ts_pool_status st;

	ts_pool_status(arg, &st);
	return (unsigned)__builtin_popcountll(st.live_mask) >= st.k ? 0 : -EAGAIN;
}

/* ---- the admin service's view of the data plane (csi/admin.h) ---- */

struct dev_admin {
	struct ts_pool *pool;
	struct ts_vpool *vp;
};

static int dev_admin_status(void *ctx, struct ts_admin_status *out)
{
	struct dev_admin *a = ctx;
	struct ts_admin_agrp *g = &out->agrps[0];
	struct ts_vpool_stats vs;
	struct ts_pool_status st;

	ts_pool_status(a->pool, &st);
	out->nnodes = TS_MIN(st.nodes, TS_ADMIN_MAX_NODES);
	for (size_t i = 0; i < out->nnodes; i++) {
		out->nodes[i].id = (uint32_t)i + 1;
		out->nodes[i].up = st.node_up_mask >> i & 1;
		out->nodes[i].disks = st.node_disks[i];
		out->nodes[i].extents = st.node_extents[i];
		out->nodes[i].free_extents = st.node_free_extents[i];
		out->nodes[i].extent_bytes = st.extent_size;
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
	ts_vpool_stats(a->vp, &vs);
	out->vpool.total_bytes = vs.data_blocks * TS_VOLUME_BLOCK;
	out->vpool.free_bytes = vs.free_blocks * TS_VOLUME_BLOCK;
	out->vpool.volumes = vs.volumes;
	return 0;
}

struct tree_walk {
	json_t *arr;
	struct ts_vpool *vp;
};

static int tree_visit(void *arg, const struct ts_vpool_layer_info *l, unsigned depth)
{
	struct tree_walk *w = arg;
	struct ts_vpool_volume_info vi;
	char vid[24];
	const char *kind = (l->flags & TS_LAYER_HEAD)	  ? "head"
			   : (l->flags & TS_LAYER_HIDDEN) ? "hidden"
							  : "snapshot";
	json_t *o = json_pack("{s:I, s:I, s:i, s:s, s:s, s:I, s:I, s:I, s:I}", "id",
			      (json_int_t)l->id, "parent", (json_int_t)l->parent, "depth",
			      (int)depth, "kind", kind, "name", l->name, "volume",
			      (json_int_t)l->volume, "size_bytes", (json_int_t)l->size, "blocks",
			      (json_int_t)l->entries, "created_ns", (json_int_t)l->ctime);

	if (!o)
		return -ENOMEM;
	/* The volume the layer belongs to (or was frozen from), if it still exists. */
	if (l->volume && ts_vpool_volume_info(w->vp, l->volume, &vi) == 0) {
		snprintf(vid, sizeof(vid), "tv-%016llx", (unsigned long long)l->volume);
		json_object_set_new(o, "volume_id", json_string(vid));
		json_object_set_new(o, "volume_name", json_string(vi.name));
	}
	if (json_array_append_new(w->arr, o) != 0)
		return -ENOMEM;
	return 0;
}

static int dev_admin_tree(void *ctx, char **out)
{
	struct dev_admin *a = ctx;
	json_t *arr = json_array();
	struct tree_walk w = { arr, a->vp };
	char *text;
	int rc;

	if (!arr)
		return -ENOMEM;
	rc = ts_chain_walk(a->vp, tree_visit, &w);
	text = rc == 0 ? json_dumps(arr, JSON_COMPACT) : NULL;
	json_decref(arr);
	if (rc < 0)
		return rc;
	if (!text)
		return -ENOMEM;
	*out = ts_strdup(text);
	free(text);
	return *out ? 0 : -ENOMEM;
}

static const struct ts_admin_ops g_dev_admin_ops = { .status = dev_admin_status,
						      .tree = dev_admin_tree };

/* Open the thin pool on the group, formatting it on first use. */
static int open_vpool(const char *state, struct ts_pool *pool, struct ts_vpool **out)
{
	char marker[4200];
	int rc;

	snprintf(marker, sizeof(marker), "%s/volumes.formatted", state);
	if (access(marker, F_OK) != 0) {
		rc = ts_vpool_format(ts_pool_device(pool));
		if (rc < 0)
			return rc;
		rc = ts_file_write_atomic(marker, "1\n", 2);
		if (rc < 0)
			return rc;
	}
	rc = ts_vpool_open(ts_pool_device(pool), out);
	if (rc < 0)
		return rc;
	rc = ts_chain_gc(*out);
	if (rc < 0) {
		ts_vpool_close(*out);
		*out = NULL;
	}
	return rc;
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
	struct ts_csi_config cfg = { .controller = true, .node = true, .node_id = "tessera-dev" };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 3260, .threads = 2 };
	struct ts_csi_dataplane_opts dpo = { 0 };
	const struct ts_csi_backend_ops *be = NULL;
	const struct ts_csi_store_ops *st = NULL;
	void *be_ctx = NULL, *st_ctx = NULL;
	struct ts_csi_driver *d = NULL;
	struct ts_csi_server *srv = NULL;
	struct ts_iscsi_server *isrv = NULL;
	struct ts_pool *pool = NULL;
	struct ts_vpool *vp = NULL;
	struct ts_pool_status pst;
	struct dev_admin admin = { 0 };
	const char *endpoint = NULL, *portal = "127.0.0.1:3260";
	char state[4096], sock[4200], path[4200], addr[80], portal_buf[80], *colon;
	uint64_t v;
	unsigned long port;
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
			if (parse_ec(optarg, &po.k, &po.m) < 0) {
				fprintf(stderr, "tessera dev: bad erasure code '%s' (want K+M)\n", optarg);
				return 2;
			}
			break;
		case 'c': endpoint = optarg; break;
		case 'p': portal = optarg; break;
		case 'i': cfg.node_id = optarg; break;
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
	snprintf(portal_buf, sizeof(portal_buf), "%s", portal);
	colon = strrchr(portal_buf, ':');
	if (!colon || colon == portal_buf || (size_t)(colon - portal_buf) >= sizeof(addr)) {
		fprintf(stderr, "tessera dev: --portal wants HOST:PORT\n");
		return 2;
	}
	*colon = '\0';
	port = strtoul(colon + 1, NULL, 10);
	if (port == 0 || port > 65535) {
		fprintf(stderr, "tessera dev: bad portal port '%s'\n", colon + 1);
		return 2;
	}
	snprintf(addr, sizeof(addr), "%s", portal_buf);
	so.addr = addr;
	so.port = (uint16_t)port;
	if (!endpoint) {
		snprintf(sock, sizeof(sock), "unix://%s/csi.sock", state);
		endpoint = sock;
	}
	if (strncmp(endpoint, "unix:///", 8) != 0) {
		fprintf(stderr, "tessera dev: --csi-endpoint must be unix:///absolute/path.sock\n");
		return 2;
	}

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

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
	rc = open_vpool(state, pool, &vp);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: volume pool: %s\n", ts_strerror(rc));
		goto out;
	}
	rc = ts_iscsi_server_create(&so, &isrv);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: iSCSI portal %s: %s\n", portal, ts_strerror(rc));
		goto out;
	}
	dpo.vpool = vp;
	dpo.iscsi = isrv;
	dpo.portal = portal;
	dpo.state_dir = state;
	dpo.k = pst.k;
	dpo.m = pst.m;
	dpo.probe = probe_pool;
	dpo.probe_arg = pool;
	rc = ts_uuid_parse(pst.group_uuid, dpo.group_uuid);
	if (rc == 0)
		rc = ts_csi_backend_dataplane_create(&dpo, &be, &be_ctx);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: backend: %s\n", ts_strerror(rc));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/meta", state);
	rc = ts_csi_store_file_open(path, &st, &st_ctx);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: metadata store %s: %s\n", path, ts_strerror(rc));
		goto out;
	}
	cfg.state_dir = state;
	rc = ts_csi_driver_create(&cfg, be, be_ctx, st, st_ctx, &d);
	admin.pool = pool;
	admin.vp = vp;
	if (rc == 0)
		rc = ts_csi_driver_set_admin(d, &g_dev_admin_ops, &admin);
	if (rc == 0)
		rc = ts_csi_server_start(d, endpoint, 0, &srv);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: CSI endpoint %s: %s\n", endpoint, ts_strerror(rc));
		goto out;
	}
	ts_log(TS_LOG_INFO, "dev", "serving state=%s nodes=%u ec=%u+%u size=%llu", state, pst.nodes,
	       pst.k, pst.m, (unsigned long long)pst.size);
	printf("ready csi=%s portal=%s\n", endpoint, portal);
	fflush(stdout);
	sigwait(&sigs, &sig);
	ts_log(TS_LOG_INFO, "dev", "signal %d, shutting down", sig);
	rc = 0;
out:
	ts_csi_server_stop(srv, 5000);
	ts_csi_driver_destroy(d);
	if (st)
		st->destroy(st_ctx);
	if (be)
		be->destroy(be_ctx);
	ts_iscsi_server_destroy(isrv);
	ts_vpool_close(vp);
	ts_pool_close(pool);
	return rc < 0 ? 1 : rc;
}
