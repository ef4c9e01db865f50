/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller side of a cluster whose engine runs in a node (see
 * remote_ctl.h).
 *
 * Handing the group over is always: raise the epoch in the group record
 * (stored before it is handed out), post the serve request, wait for its
 * status. Each attempt takes a new epoch, so a node that failed at one (the
 * members refused it: an older owner's key was still there at the same
 * epoch, say) succeeds at the next.
 *
 * The watch thread is the only one that hands the group over after start;
 * r->lock guards the stop flag and the failover count.
 */
#include "programs/remote_ctl.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/registry/registry.h"
#include "control/registry/routes.h"
#include "csi/admin.h"
#include "csi/backend/backend_remote.h"
#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "programs/engine_host.h"
#include "programs/maint.h"
#include "programs/stack.h"

#define SERVE_TIMEOUT_MS 60000
#define WATCH_MS 500

struct ts_remote_ctl {
	struct ts_remote_ctl_cfg cfg;
	char key[TS_ENGINE_GROUP_MAX + 1];
	struct ts_stack *stack;
	struct ts_routes *routes;
	struct ts_iscsi_server *front;
	pthread_t watch;
	bool watching;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	unsigned failovers;
};

/*
 * The node serving the group now: the live node listing it at the highest
 * epoch (a dead node's record still lists what it served). 0 when none;
 * with \p engine its endpoint.
 */
static uint32_t serving_node(struct ts_remote_ctl *r, char engine[TS_REMOTE_ENDPOINT_MAX + 1],
			     uint32_t *lowest_live)
{
	struct ts_reg_node *all = ts_calloc(TS_REG_MAX_NODES, sizeof(*all));
	uint64_t best = 0, now = ts_registry_now_ms();
	uint32_t who = 0;
	unsigned cnt = 0;

	if (lowest_live)
		*lowest_live = 0;
	if (!all)
		return 0;
	if (ts_registry_list_nodes(r->cfg.reg, all, TS_REG_MAX_NODES, &cnt))
		cnt = 0;
	for (unsigned i = 0; i < cnt; i++) {
		if (all[i].heartbeat_ms + r->cfg.heartbeat_max_age_ms < now)
			continue;
		if (lowest_live && (!*lowest_live || all[i].node_id < *lowest_live))
			*lowest_live = all[i].node_id;
		for (unsigned g = 0; g < all[i].nserved; g++) {
			if (memcmp(all[i].served[g].uuid, r->cfg.co.group_uuid, 16) ||
			    all[i].served[g].epoch <= best)
				continue;
			best = all[i].served[g].epoch;
			who = all[i].node_id;
			if (engine)
				snprintf(engine, TS_REMOTE_ENDPOINT_MAX + 1, "%s",
					 all[i].served[g].engine);
		}
	}
	ts_free(all);
	return who;
}

/* ---- the remote backend's router: one group ---- */

static int router_locate(void *ctx, const char *group, struct ts_remote_engine *out)
{
	struct ts_remote_ctl *r = ctx;

	if (strcmp(group, r->key))
		return -ENOENT;
	if (!serving_node(r, out->endpoint, NULL))
		return -EAGAIN; /* between owners: UNAVAILABLE, the CO retries */
	snprintf(out->group, sizeof(out->group), "%s", r->key);
	return 0;
}

static int router_pick(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_remote_engine *out)
{
	struct ts_remote_ctl *r = ctx;

	(void)spec;
	return router_locate(ctx, r->key, out);
}

static int router_list(void *ctx, struct ts_remote_engine *out, size_t max, size_t *n)
{
	struct ts_remote_ctl *r = ctx;

	*n = 0;
	if (max && router_locate(ctx, r->key, out) == 0)
		*n = 1;
	return 0;
}

static const struct ts_remote_router_ops g_router = { .pick = router_pick,
						       .locate = router_locate,
						       .list = router_list };

/* ---- the admin view ---- */

/*
 * Ask the serving engine for a report ("group" or "tree": the engine
 * service's Report method). 0 and the report's JSON text (ts_malloc'd), or
 * -EAGAIN when no engine answers, or its rc.
 */
static int engine_report(struct ts_remote_ctl *r, const char *what, char **text)
{
	char ep[TS_REMOTE_ENDPOINT_MAX + 1], msg[256], *resp = NULL, *req;
	struct ts_client *cl = NULL;
	json_t *j, *rep;
	size_t len = 0;
	int rc;

	*text = NULL;
	if (!serving_node(r, ep, NULL))
		return -EAGAIN;
	j = json_pack("{s:s,s:s}", "group", r->key, "what", what);
	req = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!req)
		return -ENOMEM;
	rc = ts_client_open(ep, &cl);
	if (rc == 0)
		rc = ts_client_call(cl, TS_ENGINE_PREFIX "Report", req, strlen(req), &resp, &len, 5000,
				    msg, sizeof(msg));
	ts_client_close(cl);
	free(req);
	if (rc) {
		ts_log(TS_LOG_WARN, r->cfg.name, "engine %s: Report %s: %s", ep, what, msg);
		ts_free(resp);
		return -EAGAIN;
	}
	j = json_loads(resp, 0, NULL);
	ts_free(resp);
	rep = j ? json_object_get(j, "report") : NULL;
	if (!j || !json_is_integer(json_object_get(j, "rc")))
		rc = -EPROTO;
	else
		rc = (int)json_integer_value(json_object_get(j, "rc"));
	if (rc == 0 && !rep)
		rc = -EPROTO;
	if (rc == 0) {
		char *s = json_dumps(rep, JSON_COMPACT | JSON_ENCODE_ANY);

		*text = s ? ts_strdup(s) : NULL;
		free(s);
		rc = *text ? 0 : -ENOMEM;
	}
	json_decref(j);
	return rc;
}

/* The snapshot tree from the serving engine, its volume ids as the CSI layer names them. */
static int ctl_tree(void *arg, char **out)
{
	struct ts_remote_ctl *r = arg;
	json_t *arr, *l;
	char *text = NULL, *s;
	size_t i;
	int rc = engine_report(r, "tree", &text);

	*out = NULL;
	if (rc)
		return rc;
	arr = json_loads(text, 0, NULL);
	ts_free(text);
	if (!json_is_array(arr)) {
		json_decref(arr);
		return -EPROTO;
	}
	json_array_foreach(arr, i, l) {
		json_t *vid = json_object_get(l, "volume_id");
		char id[TS_ENGINE_GROUP_MAX + 80];

		if (!json_is_string(vid))
			continue;
		snprintf(id, sizeof(id), "%s.%s", r->key, json_string_value(vid));
		json_object_set_new(l, "volume_id", json_string(id));
	}
	s = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	*out = s ? ts_strdup(s) : NULL;
	free(s);
	return *out ? 0 : -ENOMEM;
}

/* The group from its record, when the engines' own view is not at hand. */
static int record_view(struct ts_remote_ctl *r, struct ts_admin_status *out)
{
	struct ts_reg_group *g = ts_malloc(sizeof(*g));
	struct ts_admin_agrp *a = &out->agrps[0];
	int rc;

	if (!g)
		return -ENOMEM;
	rc = ts_registry_get_group(r->cfg.reg, r->cfg.co.group_uuid, g);
	if (rc == 0) {
		uint32_t who = serving_node(r, NULL, NULL);

		out->nagrps = 1;
		ts_uuid_format(g->uuid, a->uuid);
		a->k = g->k;
		a->m = g->m;
		for (unsigned s = 0; s < g->k + g->m && s < TS_ADMIN_MAX_SLOTS; s++) {
			a->slots[s].node = g->slots[s].node_id;
			a->slots[s].live = who != 0; /* the engine's to say; not known here */
		}
		snprintf(a->state, sizeof(a->state), "%s", who ? "served" : "unserved");
		a->serving_node = who;
		a->epoch = g->epoch;
	}
	ts_free(g);
	return rc;
}

static int ctl_status(void *arg, struct ts_admin_status *out)
{
	struct ts_remote_ctl *r = arg;
	int rc = ts_maint_node_view(r->cfg.reg, r->cfg.heartbeat_max_age_ms, r->cfg.node_detail,
				    r->cfg.node_detail_arg, out);
	char *text = NULL;

	if (rc)
		return rc;
	if (r->cfg.groups)
		return r->cfg.groups(r->cfg.groups_arg, out);
	/* the serving engine's own view; the record's while none answers */
	if (engine_report(r, "group", &text) == 0 &&
	    ts_maint_agrp_from_json(text, &out->agrps[0]) == 0) {
		ts_free(text);
		out->nagrps = 1;
		return 0;
	}
	ts_free(text);
	return record_view(r, out);
}

/* ---- handing the group over ---- */

static bool watch_sleep(struct ts_remote_ctl *r, unsigned ms);

/*
 * Hand the group to node \p owner at a new epoch and wait for it to serve;
 * retried (each time at a new epoch) until \p timeout_ms. Between tries it
 * waits on the caller's signals (startup, \p watch false) or the stop flag
 * (the watch thread: signals are the main thread's). 0, 1 when a signal or
 * stop ended the wait, or the error.
 */
static int hand_over(struct ts_remote_ctl *r, uint32_t owner, uint32_t timeout_ms, bool watch)
{
	const struct timespec wait = { 1, 0 };
	uint64_t deadline = ts_registry_now_ms() + timeout_ms;
	int rc, st = 0, last = 0;

	for (;;) {
		struct ts_reg_request q = { .op = TS_REG_SERVE_GROUP };

		memcpy(q.uuid, r->cfg.co.group_uuid, 16);
		ts_registry_new_request_id(q.id);
		rc = ts_registry_raise_epoch(r->cfg.reg, r->cfg.co.group_uuid, owner, &q.epoch);
		if (rc == 0)
			rc = ts_registry_post_request(r->cfg.reg, owner, &q);
		if (rc == 0)
			rc = ts_registry_wait_request(r->cfg.reg, owner, q.id, SERVE_TIMEOUT_MS, &st);
		if (rc == 0 && st == 0) {
			ts_log(TS_LOG_INFO, r->cfg.name, "group served by node=%u epoch=%llu", owner,
			       (unsigned long long)q.epoch);
			return 0;
		}
		rc = rc ? rc : st;
		if (ts_registry_now_ms() > deadline)
			return rc;
		if (rc != last)
			ts_log(TS_LOG_WARN, r->cfg.name, "node %u cannot serve the group yet (%s); retrying",
			       owner, ts_strerror(rc));
		last = rc;
		if (watch) {
			if (watch_sleep(r, 1000))
				return 1;
		} else if (r->cfg.sigs) {
			if (sigtimedwait(r->cfg.sigs, NULL, &wait) > 0)
				return 1;
		} else {
			nanosleep(&wait, NULL);
		}
	}
}

/* Wait \p ms or until stopped. True when stopped. */
static bool watch_sleep(struct ts_remote_ctl *r, unsigned ms)
{
	struct timespec ts;
	bool stop;

	pthread_mutex_lock(&r->lock);
	ts_deadline_ms(&ts, ms);
	if (!r->stop)
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
	stop = r->stop;
	pthread_mutex_unlock(&r->lock);
	return stop;
}

/* Failover: nobody live serves the group -> the lowest live node takes it. */
static void *watch_main(void *arg)
{
	struct ts_remote_ctl *r = arg;

	while (!watch_sleep(r, WATCH_MS)) {
		uint32_t lowest = 0;

		if (serving_node(r, NULL, &lowest) || !lowest)
			continue;
		ts_log(TS_LOG_WARN, r->cfg.name, "no live node serves the group; handing it to node %u",
		       lowest);
		if (hand_over(r, lowest, 10000, true) == 0) {
			pthread_mutex_lock(&r->lock);
			r->failovers++;
			pthread_mutex_unlock(&r->lock);
		}
	}
	return NULL;
}

/* ---- start / stop ---- */

static int create_group(struct ts_remote_ctl *r)
{
	struct ts_cluster_opts co = r->cfg.co;
	struct ts_cluster *cl;
	uint64_t e;
	int rc;

	co.reg = r->cfg.reg;
	co.heartbeat_max_age_ms = r->cfg.heartbeat_max_age_ms;
	/* while too few nodes are live (or answer), wait for them, as the controller does */
	for (int last = 0;;) {
		const struct timespec wait = { 1, 0 };

		rc = ts_cluster_open(&co, &cl);
		if (rc != TS_ERR_NO_SPACE && rc != -ETIMEDOUT && rc != -EAGAIN)
			break;
		if (rc != last)
			ts_log(TS_LOG_INFO, r->cfg.name, "waiting for nodes to create the group (%s)",
			       ts_strerror(rc));
		last = rc;
		if (r->cfg.sigs ? sigtimedwait(r->cfg.sigs, NULL, &wait) > 0
				: nanosleep(&wait, NULL) != 0)
			return 1;
	}
	if (rc) {
		fprintf(stderr, "tessera %s: creating the array group: %s\n", r->cfg.name,
			ts_strerror(rc));
		return rc;
	}
	ts_cluster_close(cl);
	/*
	 * The creator took the members at epoch 1 as the controller (the
	 * cluster's default owner); record that, so the first node gets epoch
	 * 2. (After a crash right here a serve at epoch 1 is refused by the
	 * members, and the next attempt raises again.)
	 */
	rc = ts_registry_raise_epoch(r->cfg.reg, r->cfg.co.group_uuid, TS_CLUSTER_CONTROLLER_OWNER,
				     &e);
	if (rc)
		fprintf(stderr, "tessera %s: group record: %s\n", r->cfg.name, ts_strerror(rc));
	return rc;
}

int ts_remote_ctl_start(const struct ts_remote_ctl_cfg *cfg, struct ts_remote_ctl **out)
{
	struct ts_csi_remote_opts ro = { .router = &g_router, .state_dir = cfg->state_dir,
					 .multi_node_writers = true };
	struct ts_stack_opts so = { .name = cfg->name, .node_id = cfg->node_id,
				    .portal = cfg->portal, .state_dir = cfg->state_dir,
				    .csi_endpoint = cfg->csi_endpoint, .status = ctl_status,
				    .tree = ctl_tree };
	struct ts_iscsi_server_opts fo = { .threads = 1, .redirect = ts_routes_redirect };
	const char *colon = cfg->portal ? strrchr(cfg->portal, ':') : NULL;
	struct ts_remote_ctl *r;
	uint32_t owner = cfg->owner;
	char addr[80];
	int rc;

	*out = NULL;
	if (!cfg->reg || !colon || (size_t)(colon - cfg->portal) >= sizeof(addr))
		return -EINVAL;
	r = ts_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->cfg = *cfg;
	if (!r->cfg.heartbeat_max_age_ms)
		r->cfg.heartbeat_max_age_ms = 3000;
	ts_engine_group_key(cfg->co.group_uuid, r->key);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	rc = cfg->create ? create_group(r) : 0;
	if (rc)
		goto fail;
	/* a controller restarted while a live node serves the group leaves it there */
	uint32_t lowest = 0, now_serving = serving_node(r, NULL, &lowest);

	if (!owner)
		owner = lowest;
	if (now_serving) {
		ts_log(TS_LOG_INFO, cfg->name, "group already served by node=%u; keeping it",
		       now_serving);
		rc = 0;
	} else if (!owner) {
		fprintf(stderr, "tessera %s: no live node to serve the group\n", cfg->name);
		rc = -EAGAIN;
		goto fail;
	} else {
		rc = hand_over(r, owner, SERVE_TIMEOUT_MS, false);
	}
	if (rc) {
		if (rc < 0)
			fprintf(stderr, "tessera %s: node %u cannot serve the array group: %s\n",
				cfg->name, owner, ts_strerror(rc));
		goto fail;
	}
	rc = ts_routes_start(cfg->reg, cfg->portal, 0, &r->routes);
	if (rc == 0) {
		snprintf(addr, sizeof(addr), "%.*s", (int)(colon - cfg->portal), cfg->portal);
		fo.addr = addr;
		fo.port = (uint16_t)atoi(colon + 1);
		fo.redirect_ctx = r->routes;
		rc = ts_iscsi_server_create(&fo, &r->front);
		if (rc)
			fprintf(stderr, "tessera %s: iSCSI portal %s: %s\n", cfg->name, cfg->portal,
				ts_strerror(rc));
	}
	if (rc)
		goto fail;
	ro.router_ctx = r;
	so.status_arg = r;
	so.tree_arg = r;
	rc = ts_csi_backend_remote_create(&ro, &so.backend, &so.backend_ctx);
	if (rc == 0)
		rc = ts_stack_start(&so, &r->stack); /* says which layer failed */
	if (rc == 0)
		rc = -pthread_create(&r->watch, NULL, watch_main, r);
	if (rc)
		goto fail;
	r->watching = true;
	*out = r;
	return 0;
fail:
	ts_remote_ctl_stop(r);
	return rc;
}

struct ts_stack *ts_remote_ctl_stack(struct ts_remote_ctl *r)
{
	return r->stack;
}

unsigned ts_remote_ctl_failovers(struct ts_remote_ctl *r)
{
	unsigned n;

	pthread_mutex_lock(&r->lock);
	n = r->failovers;
	pthread_mutex_unlock(&r->lock);
	return n;
}

void ts_remote_ctl_stop(struct ts_remote_ctl *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	if (r->watching)
		pthread_join(r->watch, NULL);
	ts_stack_stop(r->stack);
	ts_iscsi_server_destroy(r->front);
	ts_routes_stop(r->routes);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	ts_free(r);
}
