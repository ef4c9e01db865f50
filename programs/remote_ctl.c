/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The controller side of a cluster whose engines run in the nodes (see
 * remote_ctl.h).
 *
 * Handing a group over is always: raise the epoch in the group record
 * (stored before it is handed out), post the serve request, wait for its
 * status. Each attempt takes a new epoch, so a node that failed at one (the
 * members refused it: an older owner's key was still there at the same
 * epoch, say) succeeds at the next.
 *
 * After start, groups in the table are handed over by the watch thread
 * only; a group a pick creates is handed to its first owner by that pick
 * before it enters the table. r->lock guards the stop flag and the failover
 * count, r->glock the table, r->pick_lock serialises picks.
 */
#include "programs/remote_ctl.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/placement/placement.h"
#include "control/registry/registry.h"
#include "control/registry/routes.h"
#include "csi/admin.h"
#include "csi/backend/backend_remote.h"
#include "csi/rpc/client.h"
#include "csi/store/store.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "programs/engine_host.h"
#include "programs/maint.h"
#include "programs/stack.h"

#define SERVE_TIMEOUT_MS 60000
#define WATCH_MS 500
#define MAX_GROUPS TS_REMOTE_MAX_ENGINES
#define SHARES TS_PLACEMENT_MAX_SLOTS /* model disk ids: node * SHARES + share */

struct group {
	uint8_t uuid[16];
	char key[TS_ENGINE_GROUP_MAX + 1];
};

struct ts_remote_ctl {
	struct ts_remote_ctl_cfg cfg;
	struct ts_stack *stack;
	struct ts_routes *routes;
	struct ts_iscsi_server *front;
	pthread_t watch;
	bool watching;
	pthread_mutex_t lock; /* stop, failovers */
	pthread_cond_t cond;
	bool stop;
	unsigned failovers;
	/* picks (and the creation of a group for one) serialise on pick_lock */
	pthread_mutex_t pick_lock;
	/* the group table: held only to read or extend it */
	pthread_mutex_t glock;
	struct group groups[MAX_GROUPS];
	unsigned ngroups;
};

/* The node records read once, for one decision. */
struct nodes {
	struct ts_reg_node *all;
	unsigned cnt;
	uint64_t now;
};

static int nodes_read(struct ts_remote_ctl *r, struct nodes *v)
{
	v->cnt = 0;
	v->now = ts_registry_now_ms();
	v->all = ts_calloc(TS_REG_MAX_NODES, sizeof(*v->all));
	if (!v->all)
		return -ENOMEM;
	if (ts_registry_list_nodes(r->cfg.reg, v->all, TS_REG_MAX_NODES, &v->cnt))
		v->cnt = 0;
	return 0;
}

static bool node_live(const struct ts_remote_ctl *r, const struct nodes *v, unsigned i)
{
	return v->all[i].heartbeat_ms + r->cfg.heartbeat_max_age_ms >= v->now;
}

/*
 * The node serving group \p uuid now: the live node listing it at the
 * highest epoch (a dead node's record still lists what it served). 0 when
 * none; with \p engine its endpoint.
 */
static uint32_t group_server(const struct ts_remote_ctl *r, const struct nodes *v,
			     const uint8_t uuid[16], char engine[TS_REMOTE_ENDPOINT_MAX + 1])
{
	uint64_t best = 0;
	uint32_t who = 0;

	for (unsigned i = 0; i < v->cnt; i++) {
		if (!node_live(r, v, i))
			continue;
		for (unsigned g = 0; g < v->all[i].nserved; g++) {
			if (memcmp(v->all[i].served[g].uuid, uuid, 16) || v->all[i].served[g].epoch <= best)
				continue;
			best = v->all[i].served[g].epoch;
			who = v->all[i].node_id;
			if (engine)
				snprintf(engine, TS_REMOTE_ENDPOINT_MAX + 1, "%s",
					 v->all[i].served[g].engine);
		}
	}
	return who;
}

/* The live node serving the fewest groups (ties: the lowest id); 0 when none is live. */
static uint32_t least_loaded(const struct ts_remote_ctl *r, const struct nodes *v)
{
	uint32_t who = 0, load = 0;

	for (unsigned i = 0; i < v->cnt; i++) {
		if (!node_live(r, v, i))
			continue;
		if (!who || v->all[i].nserved < load ||
		    (v->all[i].nserved == load && v->all[i].node_id < who)) {
			who = v->all[i].node_id;
			load = v->all[i].nserved;
		}
	}
	return who;
}

/* The node serving \p uuid now (one read of the records); see group_server. */
static uint32_t serving_node(struct ts_remote_ctl *r, const uint8_t uuid[16],
			     char engine[TS_REMOTE_ENDPOINT_MAX + 1])
{
	struct nodes v;
	uint32_t who;

	if (nodes_read(r, &v))
		return 0;
	who = group_server(r, &v, uuid, engine);
	ts_free(v.all);
	return who;
}

/* A copy of the group table (the watch thread and the views work on it unlocked). */
static unsigned groups_copy(struct ts_remote_ctl *r, struct group *out)
{
	unsigned n;

	pthread_mutex_lock(&r->glock);
	n = r->ngroups;
	memcpy(out, r->groups, n * sizeof(*out));
	pthread_mutex_unlock(&r->glock);
	return n;
}

/* Whether another group in the table has \p uuid's key (glock held). */
static bool key_taken(const struct ts_remote_ctl *r, const uint8_t uuid[16])
{
	char key[TS_ENGINE_GROUP_MAX + 1];

	ts_engine_group_key(uuid, key);
	for (unsigned i = 0; i < r->ngroups; i++)
		if (!strcmp(r->groups[i].key, key) && memcmp(r->groups[i].uuid, uuid, 16))
			return true;
	return false;
}

/* Add \p uuid to the table (glock held). 0, -EEXIST (its key is taken), -ENOSPC. */
static int group_add(struct ts_remote_ctl *r, const uint8_t uuid[16])
{
	struct group g;

	memcpy(g.uuid, uuid, 16);
	ts_engine_group_key(uuid, g.key);
	for (unsigned i = 0; i < r->ngroups; i++)
		if (!strcmp(r->groups[i].key, g.key))
			return memcmp(r->groups[i].uuid, uuid, 16) ? -EEXIST : 0;
	if (r->ngroups == MAX_GROUPS)
		return -ENOSPC;
	r->groups[r->ngroups++] = g;
	return 0;
}

/* ---- the engines' reports ---- */

/*
 * Ask the engine serving \p g (as the node records \p v say) for a report
 * ("group", "tree" or "pool": the engine service's Report method). 0 and
 * the report's JSON text (ts_malloc'd), -EAGAIN when no engine answers, or
 * its rc.
 */
static int engine_report(struct ts_remote_ctl *r, const struct nodes *v, const struct group *g,
			 const char *what, char **text)
{
	char ep[TS_REMOTE_ENDPOINT_MAX + 1], msg[256], *resp = NULL, *req;
	struct ts_client *cl = NULL;
	json_t *j, *rep;
	size_t len = 0;
	int rc;

	*text = NULL;
	if (!group_server(r, v, g->uuid, ep))
		return -EAGAIN;
	j = json_pack("{s:s,s:s}", "group", g->key, "what", what);
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

/* A group's pool as its engine reports it (Report "pool"). */
struct pool_view {
	uint64_t data, free, volumes, provisioned;
};

static int pool_of(struct ts_remote_ctl *r, const struct nodes *v, const struct group *g,
		   struct pool_view *pv)
{
	json_int_t d, f, nv, p;
	char *text = NULL;
	json_t *j;
	int rc = engine_report(r, v, g, "pool", &text);

	if (rc)
		return rc;
	j = json_loads(text, 0, NULL);
	ts_free(text);
	if (!j || json_unpack(j, "{s:I,s:I,s:I,s:I}", "data_bytes", &d, "free_bytes", &f, "volumes",
			      &nv, "provisioned_bytes", &p) || d < 0 || f < 0 || nv < 0 || p < 0)
		rc = -EPROTO;
	else
		*pv = (struct pool_view){ (uint64_t)d, (uint64_t)f, (uint64_t)nv, (uint64_t)p };
	json_decref(j);
	return rc;
}

/* ---- the admin view ---- */

/* The snapshot trees of every served group, their volume ids as the CSI layer names them. */
static int ctl_tree(void *arg, char **out)
{
	struct ts_remote_ctl *r = arg;
	struct group *gs = ts_malloc(MAX_GROUPS * sizeof(*gs));
	json_t *all = json_array();
	unsigned n = gs ? groups_copy(r, gs) : 0;
	struct nodes v = { 0 };
	int rc = gs && all ? nodes_read(r, &v) : -ENOMEM;
	char *s;

	*out = NULL;
	for (unsigned gi = 0; gi < n && rc == 0; gi++) {
		json_t *arr, *l;
		char *text = NULL;
		size_t i;

		rc = engine_report(r, &v, &gs[gi], "tree", &text);
		if (rc)
			break;
		arr = json_loads(text, 0, NULL);
		ts_free(text);
		if (!json_is_array(arr)) {
			json_decref(arr);
			rc = -EPROTO;
			break;
		}
		json_array_foreach(arr, i, l) {
			json_t *vid = json_object_get(l, "volume_id");
			char id[TS_ENGINE_GROUP_MAX + 80];

			if (json_is_string(vid)) {
				snprintf(id, sizeof(id), "%s.%s", gs[gi].key, json_string_value(vid));
				json_object_set_new(l, "volume_id", json_string(id));
			}
		}
		json_array_extend(all, arr);
		json_decref(arr);
	}
	s = rc == 0 ? json_dumps(all, JSON_COMPACT) : NULL;
	json_decref(all);
	ts_free(v.all);
	ts_free(gs);
	if (rc)
		return rc;
	*out = s ? ts_strdup(s) : NULL;
	free(s);
	return *out ? 0 : -ENOMEM;
}

/* Group \p gr from its record, when its engine's own view is not at hand. */
static int record_view(struct ts_remote_ctl *r, const struct nodes *v, const struct group *gr,
		       struct ts_admin_agrp *a)
{
	struct ts_reg_group *g = ts_malloc(sizeof(*g));
	int rc;

	if (!g)
		return -ENOMEM;
	rc = ts_registry_get_group(r->cfg.reg, gr->uuid, g);
	if (rc == 0) {
		uint32_t who = group_server(r, v, gr->uuid, NULL);

		memset(a, 0, sizeof(*a));
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
	struct nodes v;
	struct group *gs;
	unsigned n;

	if (rc)
		return rc;
	if (r->cfg.groups)
		return r->cfg.groups(r->cfg.groups_arg, out);
	gs = ts_malloc(MAX_GROUPS * sizeof(*gs));
	if (!gs || nodes_read(r, &v)) {
		ts_free(gs);
		return -ENOMEM;
	}
	n = groups_copy(r, gs);
	/* each serving engine's own view; the record's while none answers */
	for (unsigned i = 0; i < n && out->nagrps < TS_ADMIN_MAX_AGRPS; i++) {
		struct ts_admin_agrp *a = &out->agrps[out->nagrps];
		struct pool_view pv;
		char *text = NULL;

		if (engine_report(r, &v, &gs[i], "group", &text) == 0 &&
		    ts_maint_agrp_from_json(text, a) == 0)
			out->nagrps++;
		else if (record_view(r, &v, &gs[i], a) == 0)
			out->nagrps++;
		ts_free(text);
		if (pool_of(r, &v, &gs[i], &pv) == 0) {
			out->vpool.total_bytes += pv.data;
			out->vpool.free_bytes += pv.free;
			out->vpool.volumes += pv.volumes;
		}
	}
	ts_free(v.all);
	ts_free(gs);
	return 0;
}

/* ---- handing a group over ---- */

static bool watch_sleep(struct ts_remote_ctl *r, unsigned ms);

/*
 * Hand group \p uuid to node \p owner at a new epoch and wait for it to
 * serve; retried (each time at a new epoch) until \p timeout_ms. Between
 * tries it waits on the caller's signals (startup, \p watch false) or the
 * stop flag (the watch thread and the CSI threads: signals are the main
 * thread's). 0, 1 when a signal or stop ended the wait, or the error.
 */
static int hand_over(struct ts_remote_ctl *r, const uint8_t uuid[16], uint32_t owner,
		     uint32_t timeout_ms, bool watch)
{
	const struct timespec wait = { 1, 0 };
	uint64_t deadline = ts_registry_now_ms() + timeout_ms;
	char key[TS_ENGINE_GROUP_MAX + 1];
	int rc, st = 0, last = 0;

	ts_engine_group_key(uuid, key);
	for (;;) {
		struct ts_reg_request q = { .op = TS_REG_SERVE_GROUP };

		memcpy(q.uuid, uuid, 16);
		ts_registry_new_request_id(q.id);
		rc = ts_registry_raise_epoch(r->cfg.reg, uuid, owner, &q.epoch);
		if (rc == 0)
			rc = ts_registry_post_request(r->cfg.reg, owner, &q);
		if (rc == 0)
			rc = ts_registry_wait_request(r->cfg.reg, owner, q.id, SERVE_TIMEOUT_MS, &st);
		if (rc == 0 && st == 0) {
			ts_log(TS_LOG_INFO, r->cfg.name, "group %s served by node=%u epoch=%llu", key,
			       owner, (unsigned long long)q.epoch);
			return 0;
		}
		rc = rc ? rc : st;
		if (ts_registry_now_ms() > deadline)
			return rc;
		if (rc != last)
			ts_log(TS_LOG_WARN, r->cfg.name,
			       "node %u cannot serve group %s yet (%s); retrying", owner, key,
			       ts_strerror(rc));
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

/* Failover: a group no live node serves goes to the least loaded live node. */
static void *watch_main(void *arg)
{
	struct ts_remote_ctl *r = arg;
	struct group *gs = ts_malloc(MAX_GROUPS * sizeof(*gs));

	while (gs && !watch_sleep(r, WATCH_MS)) {
		unsigned n = groups_copy(r, gs);

		for (unsigned i = 0; i < n; i++) {
			struct nodes v;
			uint32_t who, to;

			if (nodes_read(r, &v))
				break;
			who = group_server(r, &v, gs[i].uuid, NULL);
			to = who ? 0 : least_loaded(r, &v);
			ts_free(v.all);
			if (!to)
				continue;
			ts_log(TS_LOG_WARN, r->cfg.name,
			       "no live node serves group %s; handing it to node %u", gs[i].key, to);
			if (hand_over(r, gs[i].uuid, to, 10000, true) == 0) {
				pthread_mutex_lock(&r->lock);
				r->failovers++;
				pthread_mutex_unlock(&r->lock);
			}
		}
	}
	ts_free(gs);
	return NULL;
}

/* ---- creating groups ---- */

/*
 * Create group \p uuid (slots where \p slot_nodes says, NULL: the cluster
 * spreads them) and record epoch 1 as the creator's. \p wait_nodes: while too
 * few nodes are live, wait for them (startup). 0, 1 (a signal), or the error.
 */
static int create_group(struct ts_remote_ctl *r, const uint8_t uuid[16],
			const uint32_t *slot_nodes, bool wait_nodes)
{
	struct ts_cluster_opts co = r->cfg.co;
	struct ts_cluster *cl;
	uint64_t e;
	int rc;

	memcpy(co.group_uuid, uuid, 16);
	co.slot_nodes = slot_nodes;
	co.reg = r->cfg.reg;
	co.heartbeat_max_age_ms = r->cfg.heartbeat_max_age_ms;
	for (int last = 0;;) {
		const struct timespec wait = { 1, 0 };

		rc = ts_cluster_open(&co, &cl);
		if (!wait_nodes || (rc != TS_ERR_NO_SPACE && rc != -ETIMEDOUT && rc != -EAGAIN))
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
		ts_log(TS_LOG_ERROR, r->cfg.name, "creating an array group: %s", ts_strerror(rc));
		return rc;
	}
	ts_cluster_close(cl);
	/*
	 * The creator took the members at epoch 1 as the controller (the
	 * cluster's default owner); record that, so the first node gets epoch
	 * 2. (After a crash right here a serve at epoch 1 is refused by the
	 * members, and the next attempt raises again.)
	 */
	rc = ts_registry_raise_epoch(r->cfg.reg, uuid, TS_CLUSTER_CONTROLLER_OWNER, &e);
	if (rc)
		ts_log(TS_LOG_ERROR, r->cfg.name, "group record: %s", ts_strerror(rc));
	return rc;
}

/*
 * Where a new group's k+m members go: control/placement over the live
 * nodes, each node a failure domain. A node's LDM pools its disks, so what
 * it can hold is its free bytes F less one replica journal J (a node with
 * members of a group holds one of its journals too). It is given to the
 * model as m shares (a node takes at most m members of a group), share i of
 * F - J - i * member bytes: any i+1 members fit in F - J, and the fullest
 * share is the first one picked, so members spread over the nodes before a
 * node takes a second. 0 and the node of each slot, -ENOSPC with a line in
 * the log, or -errno.
 */
static int place_group(struct ts_remote_ctl *r, uint32_t slot_nodes[TS_REG_MAX_SLOTS])
{
	const struct ts_cluster_opts *co = &r->cfg.co;
	uint64_t journal = co->journal_size ? co->journal_size : co->member_size / 4;
	struct ts_placement_group_info gi;
	struct ts_placement *p = NULL;
	struct nodes v;
	char msg[256] = "";
	uint32_t gid;
	int rc = nodes_read(r, &v);

	if (rc == 0)
		rc = ts_placement_create(&(struct ts_placement_opts){ .k = co->k, .m = co->m,
								      .member_size = co->member_size },
					 &p);
	for (unsigned i = 0; rc == 0 && i < v.cnt; i++) {
		if (!node_live(r, &v, i) || v.all[i].node_id > UINT32_MAX / SHARES - 1)
			continue; /* (ids that large cannot name a share: not placed on) */
		rc = ts_placement_node_add(p, v.all[i].node_id, NULL);
		for (uint64_t share = 0; rc == 0 && share < co->m; share++) {
			uint64_t need = journal + share * co->member_size;

			if (v.all[i].free_bytes < need + co->member_size)
				break;
			rc = ts_placement_disk_add(p, v.all[i].node_id * SHARES + (uint32_t)share,
						   v.all[i].node_id, v.all[i].free_bytes - need);
		}
	}
	if (rc == 0)
		rc = ts_placement_group_place(p, co->k, co->m, co->member_size, &gid, msg,
					      sizeof(msg));
	if (rc == 0)
		rc = ts_placement_group_get(p, gid, &gi);
	for (unsigned s = 0; rc == 0 && s < co->k + co->m; s++)
		slot_nodes[s] = gi.disks[s] / SHARES;
	if (rc == -ENOSPC)
		ts_log(TS_LOG_INFO, r->cfg.name, "no room for another %u+%u group: %s", co->k, co->m,
		       msg);
	ts_placement_destroy(p);
	ts_free(v.all);
	return rc;
}

/*
 * A new group (pick_lock held, so no other group appears meanwhile):
 * placed, created, handed to the least loaded live node.
 */
static int grow(struct ts_remote_ctl *r, struct group *out)
{
	uint32_t slots[TS_REG_MAX_SLOTS], owner;
	uint8_t uuid[16];
	struct nodes v;
	bool taken;
	int rc;

	pthread_mutex_lock(&r->glock);
	rc = r->ngroups == MAX_GROUPS ? -ENOSPC : 0;
	pthread_mutex_unlock(&r->glock);
	if (rc == 0)
		rc = place_group(r, slots);
	if (rc)
		return rc;
	do {
		rc = ts_uuid_generate(uuid);
		pthread_mutex_lock(&r->glock);
		taken = key_taken(r, uuid); /* its key (8 bytes of it) names another group */
		pthread_mutex_unlock(&r->glock);
	} while (rc == 0 && taken);
	if (rc)
		return rc;
	rc = create_group(r, uuid, slots, false);
	if (rc)
		return rc < 0 ? rc : -EAGAIN;
	rc = nodes_read(r, &v);
	owner = rc == 0 ? least_loaded(r, &v) : 0;
	ts_free(v.all);
	ts_engine_group_key(uuid, out->key);
	memcpy(out->uuid, uuid, 16);
	ts_log(TS_LOG_INFO, r->cfg.name, "new array group %s (%u+%u); serving it on node %u",
	       out->key, r->cfg.co.k, r->cfg.co.m, owner);
	rc = owner ? hand_over(r, uuid, owner, SERVE_TIMEOUT_MS, true) : -EAGAIN;
	/*
	 * Into the table once served (or given up on: the watch thread then
	 * goes on trying, and the CO retries the volume), so that listings and
	 * other picks never meet a group still coming up.
	 */
	pthread_mutex_lock(&r->glock);
	int arc = group_add(r, uuid);
	pthread_mutex_unlock(&r->glock);
	if (arc)
		return arc;
	return rc == 0 ? 0 : -EAGAIN;
}

/* ---- the remote backend's router ---- */

static int group_find(struct ts_remote_ctl *r, const char *key, struct group *out)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&r->glock);
	for (unsigned i = 0; i < r->ngroups && rc; i++)
		if (!strcmp(r->groups[i].key, key)) {
			*out = r->groups[i];
			rc = 0;
		}
	pthread_mutex_unlock(&r->glock);
	return rc;
}

static int locate_group(struct ts_remote_ctl *r, const struct group *g, struct ts_remote_engine *out)
{
	if (!serving_node(r, g->uuid, out->endpoint))
		return -EAGAIN; /* between owners: UNAVAILABLE, the CO retries */
	snprintf(out->group, sizeof(out->group), "%s", g->key);
	return 0;
}

static int router_locate(void *ctx, const char *key, struct ts_remote_engine *out)
{
	struct ts_remote_ctl *r = ctx;
	struct group g;
	int rc = group_find(r, key, &g);

	return rc ? rc : locate_group(r, &g, out);
}

/*
 * Volume placement. A volume reserves its whole size in its group: it goes
 * to the served group with the least room left that still holds it (best
 * fit, room = pool data bytes - the sizes of its volumes); when none does,
 * to a new group placed over the nodes; when no new group fits either, the
 * group with the most room takes it thin-provisioned beyond its size (what
 * a single-group pool always did), logged. While a group has no owner the
 * answer is -EAGAIN: its room is unknown.
 */
static int router_pick(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_remote_engine *out)
{
	struct ts_remote_ctl *r = ctx;
	const struct ts_cluster_opts *co = &r->cfg.co;
	uint64_t best_room = 0, most_room = 0;
	int best = -1, most = -1, rc = 0;
	struct group g, *gs = ts_malloc(MAX_GROUPS * sizeof(*gs));
	struct nodes v;
	unsigned n;

	if (!gs || nodes_read(r, &v)) {
		ts_free(gs);
		return -ENOMEM;
	}
	pthread_mutex_lock(&r->pick_lock);
	n = groups_copy(r, gs);
	for (unsigned i = 0; i < n; i++) {
		struct pool_view pv;
		uint64_t room;

		rc = pool_of(r, &v, &gs[i], &pv);
		if (rc)
			break;
		room = pv.data > pv.provisioned ? pv.data - pv.provisioned : 0;
		if (room >= spec->capacity_bytes && (best < 0 || room < best_room)) {
			best = (int)i;
			best_room = room;
		}
		if (most < 0 || room > most_room) {
			most = (int)i;
			most_room = room;
		}
	}
	if (rc == 0 && best >= 0) {
		g = gs[best];
	} else if (rc == 0) {
		rc = spec->capacity_bytes <= (uint64_t)co->k * co->member_size ? grow(r, &g)
									     : -EFBIG;
		if ((rc == -ENOSPC || rc == -EFBIG) && most >= 0) {
			ts_log(TS_LOG_WARN, r->cfg.name,
			       "volume %s (%llu bytes): no group has room and no new group fits; "
			       "group %s takes it thin-provisioned beyond its size",
			       spec->name, (unsigned long long)spec->capacity_bytes,
			       gs[most].key);
			g = gs[most];
			rc = 0;
		}
	}
	pthread_mutex_unlock(&r->pick_lock);
	ts_free(v.all);
	ts_free(gs);
	if (rc == -EFBIG)
		rc = -ENOSPC;
	return rc ? rc : locate_group(r, &g, out);
}

/* Every group with its engine; -EAGAIN while one has no owner (a listing would miss its volumes). */
static int router_list(void *ctx, struct ts_remote_engine *out, size_t max, size_t *n)
{
	struct ts_remote_ctl *r = ctx;
	struct group *gs = ts_malloc(MAX_GROUPS * sizeof(*gs));
	unsigned cnt = gs ? groups_copy(r, gs) : 0;
	int rc = gs ? 0 : -ENOMEM;

	*n = 0;
	for (unsigned i = 0; i < cnt && rc == 0 && *n < max; i++) {
		rc = locate_group(r, &gs[i], &out[*n]);
		if (rc == 0)
			(*n)++;
	}
	ts_free(gs);
	return rc;
}

static const struct ts_remote_router_ops g_router = { .pick = router_pick,
						       .locate = router_locate,
						       .list = router_list };

/* ---- start / stop ---- */

/*
 * Startup: the groups in the store (the configured one created first if
 * asked); each one no live node serves goes to \p owner (the first) or the
 * least loaded live node. 0, 1 (a signal), or the error (after a line on
 * stderr).
 */
static int serve_all(struct ts_remote_ctl *r, uint32_t owner)
{
	uint8_t(*ids)[16] = ts_malloc(MAX_GROUPS * 16);
	unsigned n = 0;
	int rc;

	if (!ids)
		return -ENOMEM;
	rc = r->cfg.create ? create_group(r, r->cfg.co.group_uuid, NULL, true) : 0;
	if (rc) {
		if (rc < 0)
			fprintf(stderr, "tessera %s: creating the array group: %s\n", r->cfg.name,
				ts_strerror(rc));
		goto out;
	}
	rc = ts_registry_list_groups(r->cfg.reg, ids, MAX_GROUPS, &n);
	if (rc)
		fprintf(stderr, "tessera %s: the group records: %s\n", r->cfg.name, ts_strerror(rc));
	/* the configured group first: it gets --owner */
	if (rc == 0)
		rc = group_add(r, r->cfg.co.group_uuid);
	for (unsigned i = 0; i < n && rc == 0; i++)
		rc = group_add(r, ids[i]);
	for (unsigned i = 0; i < r->ngroups && rc == 0; i++) {
		struct group *g = &r->groups[i];
		struct nodes v;
		uint32_t who, to;

		rc = nodes_read(r, &v);
		if (rc)
			break;
		who = group_server(r, &v, g->uuid, NULL);
		to = i == 0 && owner ? owner : least_loaded(r, &v);
		ts_free(v.all);
		if (who) {
			/* a controller restarted while a live node serves it leaves it there */
			ts_log(TS_LOG_INFO, r->cfg.name, "group %s already served by node=%u; keeping it",
			       g->key, who);
			continue;
		}
		if (!to) {
			fprintf(stderr, "tessera %s: no live node to serve group %s\n", r->cfg.name,
				g->key);
			rc = -EAGAIN;
			break;
		}
		rc = hand_over(r, g->uuid, to, SERVE_TIMEOUT_MS, false);
		if (rc < 0)
			fprintf(stderr, "tessera %s: node %u cannot serve array group %s: %s\n",
				r->cfg.name, to, g->key, ts_strerror(rc));
	}
out:
	ts_free(ids);
	return rc;
}

int ts_remote_ctl_start(const struct ts_remote_ctl_cfg *cfg, struct ts_remote_ctl **out)
{
	struct ts_csi_remote_opts ro = { .router = &g_router, .state_dir = cfg->state_dir,
					 .multi_node_writers = true };
	struct ts_stack_opts so = { .name = cfg->name, .node_id = cfg->node_id,
				    .portal = cfg->portal, .state_dir = cfg->state_dir,
				    .csi_endpoint = cfg->csi_endpoint, .status = ctl_status,
				    .tree = ctl_tree, .store = cfg->store, .store_ctx = cfg->store_ctx,
				    .gate = cfg->gate, .gate_arg = cfg->gate_arg };
	struct ts_iscsi_server_opts fo = { .threads = 1, .redirect = ts_routes_redirect };
	const char *colon = cfg->portal ? strrchr(cfg->portal, ':') : NULL;
	struct ts_remote_ctl *r;
	char addr[80];
	int rc;

	*out = NULL;
	if (!cfg->reg || !colon || (size_t)(colon - cfg->portal) >= sizeof(addr)) {
		if (cfg->store)
			cfg->store->destroy(cfg->store_ctx);
		return -EINVAL;
	}
	r = ts_calloc(1, sizeof(*r));
	if (!r) {
		if (cfg->store)
			cfg->store->destroy(cfg->store_ctx);
		return -ENOMEM;
	}
	r->cfg = *cfg;
	if (!r->cfg.heartbeat_max_age_ms)
		r->cfg.heartbeat_max_age_ms = 3000;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->glock, NULL);
	pthread_mutex_init(&r->pick_lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	rc = serve_all(r, cfg->owner);
	if (rc)
		goto fail;
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
	if (rc == 0) {
		r->cfg.store = NULL; /* the stack's now, whatever its start says */
		rc = ts_stack_start(&so, &r->stack); /* says which layer failed */
	}
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
	if (r->cfg.store) /* never handed to a stack */
		r->cfg.store->destroy(r->cfg.store_ctx);
	ts_iscsi_server_destroy(r->front);
	ts_routes_stop(r->routes);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->glock);
	pthread_mutex_destroy(&r->pick_lock);
	pthread_mutex_destroy(&r->lock);
	ts_free(r);
}
