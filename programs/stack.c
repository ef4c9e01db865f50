/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The serving stack shared by `tessera dev` and `tessera controller`: the
 * layers between "a block device" and "a CSI socket and an iSCSI portal".
 *
 * The two daemons differ only below the device (an in-process pool, or an
 * array group of remote node members) and in what they can say about nodes
 * and groups; everything above is this file, so a volume made on one is
 * served the same way by the other. The admin service's view is split the
 * same way: the caller's status callback fills nodes and array groups, this
 * file adds the volume pool and answers the snapshot tree itself.
 *
 * Why try ts_vpool_open before formatting (the marker alone was enough when
 * only `tessera dev` used this): the controller's state directory and its
 * array group live in different places (the group's record is in the
 * registry, its data on the nodes), so a fresh state directory may sit on a
 * group that already holds a pool. Only a device with no pool superblock at
 * all (TS_ERR_FOREIGN) is formatted, and only while the marker is absent.
 *
 * Ownership: the stack owns the pool, the iSCSI server, the backend, the
 * store, the driver and the server; the device and the callbacks' arguments
 * are borrowed and must outlive ts_stack_stop().
 */
#include "programs/stack.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/admin.h"
#include "csi/backend/backend_dataplane.h"
#include "csi/csi.h"
#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"

struct ts_stack {
	struct ts_stack_opts o;
	char name[32];
	struct ts_vpool *vp;
	struct ts_iscsi_server *isrv;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	const struct ts_csi_store_ops *st;
	void *st_ctx;
	struct ts_csi_driver *d;
	struct ts_csi_server *srv;
};

static int parse_portal(const char *portal, char *addr, size_t addr_len, uint16_t *port)
{
	const char *colon = portal ? strrchr(portal, ':') : NULL;
	unsigned long p;
	char *end;

	if (!colon || colon == portal || (size_t)(colon - portal) >= addr_len)
		return -EINVAL;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p == 0 || p > 65535)
		return -EINVAL;
	memcpy(addr, portal, (size_t)(colon - portal));
	addr[colon - portal] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int ts_stack_parse_ec(const char *s, unsigned *k, unsigned *m)
{
	char tail;

	if (sscanf(s, "%u+%u%c", k, m, &tail) != 2 || *k < 1 || *m < 1 ||
	    *k + *m > TS_AGRP_MAX_MEMBERS)
		return -EINVAL;
	return 0;
}

static int check_endpoint(const char *ep)
{
	return ep && strncmp(ep, "unix:///", 8) == 0 ? 0 : -EINVAL;
}

int ts_stack_check_opts(const char *name, const char *portal, const char *state_dir,
			const char **endpoint, char *buf, size_t buf_len)
{
	uint16_t port;
	char addr[80];

	if (parse_portal(portal, addr, sizeof(addr), &port) < 0) {
		fprintf(stderr, "tessera %s: --portal wants HOST:PORT (port 1-65535), not '%s'\n", name,
			portal ? portal : "");
		return -EINVAL;
	}
	if (!*endpoint) {
		snprintf(buf, buf_len, "unix://%s/csi.sock", state_dir);
		*endpoint = buf;
	}
	if (check_endpoint(*endpoint) < 0) {
		fprintf(stderr, "tessera %s: --csi-endpoint must be unix:///absolute/path.sock\n", name);
		return -EINVAL;
	}
	return 0;
}

void ts_stack_block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* ---- the admin service's view (csi/admin.h) ---- */

static int stack_admin_status(void *ctx, struct ts_admin_status *out)
{
	struct ts_stack *s = ctx;
	struct ts_vpool_stats vs;
	int rc = s->o.status(s->o.status_arg, out);

	if (rc < 0 || !s->vp)
		return rc; /* no pool here: the caller's status filled it */
	ts_vpool_stats(s->vp, &vs);
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

static int stack_admin_tree(void *ctx, char **out)
{
	struct ts_stack *s = ctx;

	if (!s->vp) /* the pools are the engines' */
		return s->o.tree ? s->o.tree(s->o.tree_arg, out) : -EOPNOTSUPP;
	return ts_stack_tree_json(s->vp, out);
}

int ts_stack_tree_json(struct ts_vpool *vp, char **out)
{
	json_t *arr;
	struct tree_walk w;
	char *text;
	int rc;

	arr = json_array();
	if (!arr)
		return -ENOMEM;
	w = (struct tree_walk){ arr, vp };
	rc = ts_chain_walk(vp, tree_visit, &w);
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

static const struct ts_admin_ops g_stack_admin_ops = { .status = stack_admin_status,
							.tree = stack_admin_tree };

/* ---- start / stop ---- */

/* Open the thin pool on the device, formatting a device that holds none (see top). */
static int open_vpool(struct ts_stack *s)
{
	char marker[4200];
	bool fresh;
	int rc;

	snprintf(marker, sizeof(marker), "%s/volumes.formatted", s->o.state_dir);
	fresh = access(marker, F_OK) != 0;
	rc = ts_vpool_open(s->o.device, &s->vp);
	if (rc == TS_ERR_FOREIGN && fresh) {
		ts_log(TS_LOG_INFO, s->name, "formatting the volume pool");
		rc = ts_vpool_format(s->o.device);
		if (rc == 0)
			rc = ts_vpool_open(s->o.device, &s->vp);
	}
	if (rc == 0 && fresh)
		rc = ts_file_write_atomic(marker, "1\n", 2);
	if (rc == 0)
		rc = ts_chain_gc(s->vp);
	if (rc < 0) {
		ts_vpool_close(s->vp);
		s->vp = NULL;
	}
	return rc;
}

int ts_stack_start(const struct ts_stack_opts *o, struct ts_stack **out)
{
	struct ts_csi_config cfg = { .controller = true, .node = true };
	struct ts_iscsi_server_opts so = { .threads = 2 };
	struct ts_csi_dataplane_opts dpo = { 0 };
	struct ts_stack *s;
	char addr[80], path[4200];
	const char *what, *arg = NULL;
	int rc;

	*out = NULL;
	if (!o || !o->device == !o->backend || !o->state_dir || !o->portal || !o->node_id ||
	    !o->status || check_endpoint(o->csi_endpoint) ||
	    parse_portal(o->portal, addr, sizeof(addr), &so.port)) {
		if (o && o->backend && !o->device)
			o->backend->destroy(o->backend_ctx);
		if (o && o->store)
			o->store->destroy(o->store_ctx);
		return -EINVAL;
	}
	s = ts_calloc(1, sizeof(*s));
	if (!s) {
		if (o->backend && !o->device)
			o->backend->destroy(o->backend_ctx);
		if (o->store)
			o->store->destroy(o->store_ctx);
		return -ENOMEM;
	}
	s->o = *o;
	s->st = o->store; /* ours from here on: stopped with the stack */
	s->st_ctx = o->store_ctx;
	snprintf(s->name, sizeof(s->name), "%s", o->name ? o->name : "stack");
	so.addr = addr;
	if (o->backend) {
		s->be = o->backend;
		s->be_ctx = o->backend_ctx;
		goto store;
	}

	what = "volume pool";
	rc = open_vpool(s);
	if (rc < 0)
		goto fail;
	what = "iSCSI portal";
	arg = o->portal;
	rc = ts_iscsi_server_create(&so, &s->isrv);
	if (rc < 0)
		goto fail;
	dpo.vpool = s->vp;
	dpo.iscsi = s->isrv;
	dpo.portal = o->portal;
	dpo.state_dir = o->state_dir;
	dpo.k = o->k;
	dpo.m = o->m;
	dpo.probe = o->probe;
	dpo.probe_arg = o->probe_arg;
	memcpy(dpo.group_uuid, o->group_uuid, 16);
	what = "backend";
	arg = NULL;
	rc = ts_csi_backend_dataplane_create(&dpo, &s->be, &s->be_ctx);
	if (rc < 0)
		goto fail;
store:
	what = "metadata store";
	snprintf(path, sizeof(path), "%s/meta", o->state_dir);
	arg = path;
	rc = s->st ? 0 : ts_csi_store_file_open(path, &s->st, &s->st_ctx);
	if (rc < 0)
		goto fail;
	what = "CSI endpoint";
	arg = o->csi_endpoint;
	cfg.node_id = o->node_id;
	cfg.state_dir = o->state_dir;
	rc = ts_csi_driver_create(&cfg, s->be, s->be_ctx, s->st, s->st_ctx, &s->d);
	if (rc == 0)
		rc = ts_csi_driver_set_admin(s->d, &g_stack_admin_ops, s);
	if (rc == 0)
		rc = ts_csi_driver_set_gate(s->d, o->gate, o->gate_arg);
	if (rc == 0)
		rc = ts_csi_server_start(s->d, o->csi_endpoint, 0, &s->srv);
	if (rc < 0)
		goto fail;
	*out = s;
	return 0;
fail:
	fprintf(stderr, "tessera %s: %s%s%s: %s\n", s->name, what, arg ? " " : "", arg ? arg : "",
		ts_strerror(rc));
	ts_stack_stop(s);
	return rc;
}

struct ts_vpool *ts_stack_vpool(struct ts_stack *s)
{
	return s->vp;
}

struct ts_csi_driver *ts_stack_driver(struct ts_stack *s)
{
	return s->d;
}

void ts_stack_backend(struct ts_stack *s, const struct ts_csi_backend_ops **ops, void **ctx)
{
	*ops = s->be;
	*ctx = s->be_ctx;
}

void ts_stack_stop(struct ts_stack *s)
{
	if (!s)
		return;
	ts_csi_server_stop(s->srv, 5000);
	ts_csi_driver_destroy(s->d);
	if (s->st)
		s->st->destroy(s->st_ctx);
	if (s->be)
		s->be->destroy(s->be_ctx);
	ts_iscsi_server_destroy(s->isrv);
	ts_vpool_close(s->vp);
	ts_free(s);
}
