/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The membership store over custom resources and Leases.
 *
 * The directory store's rules carried over to the API server, which offers
 * exactly one primitive: a write conditioned on the resourceVersion that
 * was read (409 Conflict otherwise). Every rule that needs atomicity is a
 * loop of read, decide, conditional write, and again on conflict:
 *  - put_group: read; a stored epoch above the record's is -ESTALE (the
 *    writer's view is out of date, it must not retry); otherwise write with
 *    the read resourceVersion; a conflict means someone wrote in between,
 *    so read again and decide again (their write may have raised the epoch).
 *  - raise_epoch: read, epoch + 1, owner, conditional write; on conflict
 *    again. Two callers can never both succeed from one read, so epochs
 *    are distinct; each success is above the one it read, so increasing.
 * Conflicts are retried after a short random pause so two contenders do not
 * stay in lock-step.
 *
 * Requests carry their own order (postedNs, wall-clock ns at post) because
 * creationTimestamp has second resolution; ties go by name. They are never
 * deleted here (like the directory store's audit trail); a later task
 * expires completed ones.
 *
 * THREAD SAFETY: node_lock guards nodes[] (what put_node last wrote per
 * node id: spec text and Lease); it is released before any request. The
 * client is thread-safe.
 */
#include "control/kube/registry_kube.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

#define API "/apis/" TS_REGISTRY_KUBE_GROUP "/" TS_REGISTRY_KUBE_VERSION
#define CONFLICT_RETRIES 1000
/* group_rmw: the write conflicted, read and decide again (not an errno: -EAGAIN is the server's) */
#define AGAIN 1

struct knode {
	uint32_t id;
	bool used, have_lease;
	char *spec;                /* compact JSON of the spec last written */
	struct ts_kube_lease lease;
};

struct kreg {
	struct ts_kube *c;
	char ns[64];
	int32_t lease_s;
	pthread_mutex_t node_lock;
	struct knode nodes[TS_REG_MAX_NODES];
};

/* ---- helpers ---- */

static void path_of(char *buf, size_t n, const struct kreg *k, const char *plural,
		    const char *name)
{
	snprintf(buf, n, API "/namespaces/%s/%s%s%s", k->ns, plural, name ? "/" : "",
		 name ? name : "");
}

static json_t *object(const struct kreg *k, const char *kind, const char *name, json_t *labels,
		      json_t *spec)
{
	json_t *o;

	if (!labels)
		labels = json_object();
	if (labels)
		json_object_set_new(labels, "app.kubernetes.io/managed-by", json_string("tessera"));
	o = json_pack("{s:s,s:s,s:{s:s,s:s,s:o},s:o}", "apiVersion",
		      TS_REGISTRY_KUBE_GROUP "/" TS_REGISTRY_KUBE_VERSION, "kind", kind, "metadata",
		      "name", name, "namespace", k->ns, "labels", labels, "spec", spec);
	return o;
}

static const char *rv_of(json_t *obj)
{
	json_t *v = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");

	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* An integer field in [0, max]; absent: *out = dflt if \p optional, else -EINVAL. */
static int get_uint(json_t *o, const char *key, uint64_t max, bool optional, uint64_t dflt,
		    uint64_t *out)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*out = dflt;
		return optional ? 0 : -EINVAL;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 ||
	    (uint64_t)json_integer_value(v) > max)
		return -EINVAL;
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_uuid(json_t *o, const char *key, uint8_t out[16])
{
	json_t *v = json_object_get(o, key);

	return json_is_string(v) ? ts_uuid_parse(json_string_value(v), out) : -EINVAL;
}

static json_t *uuid_json(const uint8_t u[16])
{
	char s[37];

	ts_uuid_format(u, s);
	return json_string(s);
}

/* A pause of 0..4 ms between conflicting attempts. */
static void conflict_pause(unsigned attempt)
{
	static _Thread_local unsigned seed;

	if (!seed)
		seed = (unsigned)ts_now_ns() | 1u;
	usleep((useconds_t)(rand_r(&seed) % (1000u + TS_MIN(attempt, 4u) * 1000u)));
}

/* ---- nodes ---- */

static json_t *node_spec(const struct ts_reg_node *n)
{
	json_t *arr = json_array(), *spec;

	for (uint32_t i = 0; arr && i < n->nvdisks && i < TS_REG_MAX_VDISKS; i++)
		if (json_array_append_new(arr, json_pack("{s:o,s:I}", "uuid",
							 uuid_json(n->vdisks[i].uuid), "size",
							 (json_int_t)n->vdisks[i].size))) {
			json_decref(arr);
			return NULL;
		}
	json_t *sarr = arr ? json_array() : NULL;

	for (uint32_t i = 0; sarr && i < n->nserved && i < TS_REG_MAX_SERVED; i++)
		if (json_array_append_new(sarr, json_pack("{s:o,s:I,s:s}", "uuid",
							  uuid_json(n->served[i].uuid), "epoch",
							  (json_int_t)n->served[i].epoch, "engine",
							  n->served[i].engine))) {
			json_decref(sarr);
			sarr = NULL;
		}
	if (!sarr) {
		json_decref(arr);
		return NULL;
	}
	spec = json_pack("{s:I,s:s,s:I,s:o,s:o}", "nodeId", (json_int_t)n->node_id, "portal",
			 n->portal, "freeBytes", (json_int_t)n->free_bytes, "vdisks", arr, "served",
			 sarr);
	return spec;
}

static int node_from_spec(json_t *spec, struct ts_reg_node *n)
{
	json_t *arr = json_object_get(spec, "vdisks"), *v, *portal = json_object_get(spec, "portal");
	uint64_t id, fb;
	size_t i;

	memset(n, 0, sizeof(*n));
	if (!json_is_object(spec) || get_uint(spec, "nodeId", UINT32_MAX, false, 0, &id) ||
	    get_uint(spec, "freeBytes", INT64_MAX, false, 0, &fb) || !json_is_string(portal) ||
	    json_string_length(portal) >= sizeof(n->portal) ||
	    (arr && !json_is_array(arr)) || json_array_size(arr) > TS_REG_MAX_VDISKS)
		return -EINVAL;
	n->node_id = (uint32_t)id;
	n->free_bytes = fb;
	snprintf(n->portal, sizeof(n->portal), "%s", json_string_value(portal));
	json_array_foreach(arr, i, v) {
		uint64_t sz;

		if (get_uuid(v, "uuid", n->vdisks[i].uuid) ||
		    get_uint(v, "size", INT64_MAX, false, 0, &sz))
			return -EINVAL;
		n->vdisks[i].size = sz;
		n->nvdisks++;
	}
	/* served: absent in objects written before engines ran in nodes */
	arr = json_object_get(spec, "served");
	if (arr && (!json_is_array(arr) || json_array_size(arr) > TS_REG_MAX_SERVED))
		return -EINVAL;
	json_array_foreach(arr, i, v) {
		json_t *ep = json_object_get(v, "engine");
		uint64_t e;

		if (get_uuid(v, "uuid", n->served[i].uuid) ||
		    get_uint(v, "epoch", INT64_MAX, false, 0, &e) || !json_is_string(ep) ||
		    json_string_length(ep) >= sizeof(n->served[i].engine))
			return -EINVAL;
		n->served[i].epoch = e;
		snprintf(n->served[i].engine, sizeof(n->served[i].engine), "%s", json_string_value(ep));
		n->nserved = (uint32_t)i + 1;
	}
	return 0;
}

/* Create or replace TesseraNode node-<id> with \p spec (borrowed). */
static int write_node(struct kreg *k, uint32_t id, json_t *spec)
{
	char name[32], path[512], coll[512];
	int rc = -ESTALE;

	snprintf(name, sizeof(name), "node-%" PRIu32, id);
	path_of(path, sizeof(path), k, "tesseranodes", name);
	path_of(coll, sizeof(coll), k, "tesseranodes", NULL);
	for (unsigned attempt = 0; attempt < CONFLICT_RETRIES && rc == -ESTALE; attempt++) {
		json_t *cur = NULL, *obj;

		rc = ts_kube_get(k->c, path, &cur);
		if (rc && rc != -ENOENT)
			return rc;
		obj = object(k, "TesseraNode", name, NULL, json_incref(spec));
		if (!obj) {
			json_decref(cur);
			return -ENOMEM;
		}
		if (rc == -ENOENT) {
			rc = ts_kube_create(k->c, coll, obj, NULL);
			if (rc == -EEXIST)
				rc = -ESTALE; /* created meanwhile: replace it */
		} else if (!rv_of(cur)) {
			rc = -EPROTO;
		} else {
			json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion",
					    json_string(rv_of(cur)));
			rc = ts_kube_update(k->c, path, obj, NULL);
		}
		json_decref(obj);
		json_decref(cur);
		if (rc == -ESTALE)
			conflict_pause(attempt);
	}
	return rc;
}

static struct knode *node_slot(struct kreg *k, uint32_t id)
{
	struct knode *free_slot = NULL;

	for (unsigned i = 0; i < TS_REG_MAX_NODES; i++) {
		if (k->nodes[i].used && k->nodes[i].id == id)
			return &k->nodes[i];
		if (!k->nodes[i].used && !free_slot)
			free_slot = &k->nodes[i];
	}
	if (free_slot) {
		free_slot->used = true;
		free_slot->id = id;
	}
	return free_slot;
}

static int kube_put_node(void *ctx, const struct ts_reg_node *n)
{
	struct kreg *k = ctx;
	char holder[32];
	json_t *spec = node_spec(n);
	char *text = spec ? json_dumps(spec, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	struct ts_kube_lease lease;
	struct knode *slot;
	bool same, have_lease;
	int rc;

	if (!text) {
		json_decref(spec);
		return -ENOMEM;
	}
	pthread_mutex_lock(&k->node_lock);
	slot = node_slot(k, n->node_id);
	same = slot && slot->spec && !strcmp(slot->spec, text);
	have_lease = slot && slot->have_lease;
	if (have_lease)
		lease = slot->lease;
	pthread_mutex_unlock(&k->node_lock);
	rc = same ? 0 : write_node(k, n->node_id, spec);
	json_decref(spec);
	if (rc)
		goto out;
	/* the heartbeat: renew what we hold, or (first time, lost, deleted) take it */
	snprintf(holder, sizeof(holder), "tessera-node-%" PRIu32, n->node_id);
	rc = have_lease ? ts_kube_lease_renew(k->c, k->ns, &lease, holder) : -ENOENT;
	if (rc)
		rc = ts_kube_lease_acquire(k->c, k->ns, holder, holder, k->lease_s, &lease);
	pthread_mutex_lock(&k->node_lock);
	if (slot) {
		slot->have_lease = rc == 0;
		if (rc == 0)
			slot->lease = lease;
		if (!same) {
			free(slot->spec); /* jansson's allocator */
			slot->spec = text;
			text = NULL;
		}
	}
	pthread_mutex_unlock(&k->node_lock);
out:
	free(text);
	return rc;
}

static int kube_list_nodes(void *ctx, struct ts_reg_node *out, unsigned max, unsigned *cnt)
{
	struct kreg *k = ctx;
	char path[512], rv[80];
	json_t *nodes = NULL, *leases = NULL, *v;
	size_t i;
	int rc;

	*cnt = 0;
	path_of(path, sizeof(path), k, "tesseranodes", NULL);
	rc = ts_kube_list(k->c, path, NULL, &nodes, rv, sizeof(rv));
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases", k->ns);
	rc = ts_kube_list(k->c, path, NULL, &leases, rv, sizeof(rv));
	if (rc)
		goto out;
	json_array_foreach(nodes, i, v) {
		struct ts_reg_node *n = &out[*cnt];
		char lname[32];
		size_t j;
		json_t *l;

		if (*cnt >= max)
			break;
		if (node_from_spec(json_object_get(v, "spec"), n))
			continue; /* as the directory store: an unreadable record is skipped */
		snprintf(lname, sizeof(lname), "tessera-node-%" PRIu32, n->node_id);
		json_array_foreach(leases, j, l) {
			struct ts_kube_lease ls;

			if (ts_kube_lease_from_json(l, &ls) == 0 && !strcmp(ls.name, lname))
				n->heartbeat_ms = ls.renew_us / 1000u;
		}
		(*cnt)++;
	}
out:
	json_decref(nodes);
	json_decref(leases);
	return rc;
}

/* ---- requests ---- */

static int req_name(char *buf, size_t n, uint32_t node, const char *id)
{
	int len = snprintf(buf, n, "req-%" PRIu32 "-%s", node, id);

	if (len < 0 || (size_t)len >= n)
		return -EINVAL;
	for (const char *p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return -EINVAL;
	return id[0] ? 0 : -EINVAL;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int kube_post_request(void *ctx, uint32_t node_id, const struct ts_reg_request *r)
{
	struct kreg *k = ctx;
	char name[96], coll[512], node[16];
	json_t *obj;
	int rc;

	if (req_name(name, sizeof(name), node_id, r->id))
		return -EINVAL;
	snprintf(node, sizeof(node), "%" PRIu32, node_id);
	path_of(coll, sizeof(coll), k, "tesserarequests", NULL);
	obj = object(k, "TesseraRequest", name, json_pack("{s:s}", "tessera.io/node", node),
		     json_pack("{s:I,s:s,s:i,s:o,s:I,s:I,s:I}", "nodeId", (json_int_t)node_id,
			       "requestId", r->id, "op", (int)r->op, "uuid", uuid_json(r->uuid),
			       "size", (json_int_t)r->size, "epoch", (json_int_t)r->epoch,
			       "postedNs", (json_int_t)realtime_ns()));
	if (!obj)
		return -ENOMEM;
	rc = ts_kube_create(k->c, coll, obj, NULL);
	json_decref(obj);
	return rc;
}

static bool completed(json_t *item)
{
	return json_is_true(json_object_get(json_object_get(item, "status"), "completed"));
}

static int kube_next_request(void *ctx, uint32_t node_id, struct ts_reg_request *r)
{
	struct kreg *k = ctx;
	char coll[512], sel[48], rv[80];
	json_t *items = NULL, *v, *best = NULL, *spec, *id;
	uint64_t best_t = 0, t, op, size, epoch;
	size_t i;
	int rc;

	path_of(coll, sizeof(coll), k, "tesserarequests", NULL);
	snprintf(sel, sizeof(sel), "tessera.io/node=%" PRIu32, node_id);
	rc = ts_kube_list(k->c, coll, sel, &items, rv, sizeof(rv));
	if (rc)
		return rc;
	json_array_foreach(items, i, v) {
		json_t *nm = json_object_get(json_object_get(v, "metadata"), "name");

		if (completed(v) || !json_is_string(nm))
			continue;
		if (get_uint(json_object_get(v, "spec"), "postedNs", INT64_MAX, true, 0, &t))
			t = 0;
		if (!best || t < best_t ||
		    (t == best_t &&
		     strcmp(json_string_value(nm),
			    json_string_value(json_object_get(json_object_get(best, "metadata"),
							      "name"))) < 0)) {
			best = v;
			best_t = t;
		}
	}
	rc = -ENOENT;
	if (!best)
		goto out;
	memset(r, 0, sizeof(*r));
	spec = json_object_get(best, "spec");
	id = json_object_get(spec, "requestId");
	if (json_is_string(id) && json_string_length(id) < sizeof(r->id)) {
		snprintf(r->id, sizeof(r->id), "%s", json_string_value(id));
	} else {
		/* from the name, so even an unreadable request can be completed */
		const char *nm = json_string_value(json_object_get(json_object_get(best, "metadata"),
								   "name"));
		const char *dash = strchr(nm + 4, '-');

		snprintf(r->id, sizeof(r->id), "%s", dash ? dash + 1 : "");
	}
	rc = -EINVAL;
	if (!r->id[0] || get_uint(spec, "op", INT32_MAX, false, 0, &op) ||
	    get_uint(spec, "size", INT64_MAX, false, 0, &size) || get_uuid(spec, "uuid", r->uuid) ||
	    get_uint(spec, "epoch", INT64_MAX, true, 0, &epoch))
		goto out;
	r->op = (enum ts_reg_op)op;
	r->size = size;
	r->epoch = epoch;
	rc = 0;
out:
	json_decref(items);
	return rc;
}

static int kube_complete_request(void *ctx, uint32_t node_id, const char *req_id, int status)
{
	struct kreg *k = ctx;
	char name[96], path[600];
	json_t *patch;
	int rc;

	if (req_name(name, sizeof(name), node_id, req_id))
		return -EINVAL;
	path_of(path, sizeof(path), k, "tesserarequests", name);
	strcat(path, "/status");
	patch = json_pack("{s:{s:b,s:i}}", "status", "completed", 1, "result", status);
	if (!patch)
		return -ENOMEM;
	rc = ts_kube_patch(k->c, path, patch, NULL);
	json_decref(patch);
	return rc;
}

static int kube_request_status(void *ctx, uint32_t node_id, const char *req_id, int *status)
{
	struct kreg *k = ctx;
	char name[96], path[600];
	json_t *obj = NULL, *st;
	int rc;

	if (req_name(name, sizeof(name), node_id, req_id))
		return -EINVAL;
	path_of(path, sizeof(path), k, "tesserarequests", name);
	rc = ts_kube_get(k->c, path, &obj);
	if (rc)
		return rc;
	st = json_object_get(obj, "status");
	rc = -ENOENT; /* pending */
	if (completed(obj)) {
		json_t *res = json_object_get(st, "result");

		if (json_is_integer(res) && json_integer_value(res) >= INT32_MIN &&
		    json_integer_value(res) <= INT32_MAX) {
			*status = (int)json_integer_value(res);
			rc = 0;
		} else {
			rc = -EINVAL;
		}
	}
	json_decref(obj);
	return rc;
}

/* ---- groups ---- */

static json_t *slots_json(const struct ts_reg_group *g, bool journals)
{
	uint32_t n = journals ? TS_MIN(g->njournals, (uint32_t)TS_REG_MAX_NODES)
			      : TS_MIN(g->k + g->m, (uint32_t)TS_REG_MAX_SLOTS);
	json_t *arr = json_array();

	for (uint32_t i = 0; arr && i < n; i++) {
		uint32_t node = journals ? g->journals[i].node_id : g->slots[i].node_id;
		const uint8_t *vd = journals ? g->journals[i].vdisk : g->slots[i].vdisk;

		if (json_array_append_new(arr, json_pack("{s:I,s:o}", "nodeId", (json_int_t)node,
							 "vdisk", uuid_json(vd)))) {
			json_decref(arr);
			return NULL;
		}
	}
	return arr;
}

static json_t *group_spec(const struct ts_reg_group *g)
{
	return json_pack("{s:i,s:i,s:I,s:I,s:I,s:I,s:o,s:I,s:o}", "k", (int)g->k, "m", (int)g->m,
			 "memberSize", (json_int_t)g->member_size, "ownerNode",
			 (json_int_t)g->owner_node, "epoch", (json_int_t)g->epoch, "flags",
			 (json_int_t)g->flags, "slots", slots_json(g, false), "journalSize",
			 (json_int_t)g->journal_size, "journals", slots_json(g, true));
}

static int slot_from(json_t *v, uint32_t *node, uint8_t vdisk[16])
{
	uint64_t id;

	if (get_uint(v, "nodeId", UINT32_MAX, false, 0, &id) || get_uuid(v, "vdisk", vdisk))
		return -EINVAL;
	*node = (uint32_t)id;
	return 0;
}

static int group_from(json_t *obj, const uint8_t uuid[16], struct ts_reg_group *g)
{
	json_t *spec = json_object_get(obj, "spec"), *slots, *jarr, *v;
	uint64_t k, m, ms, owner, epoch, js, flags;
	size_t i;

	memset(g, 0, sizeof(*g));
	memcpy(g->uuid, uuid, 16);
	if (!json_is_object(spec) || get_uint(spec, "k", TS_REG_MAX_SLOTS, false, 0, &k) ||
	    get_uint(spec, "m", TS_REG_MAX_SLOTS, false, 0, &m) || k < 1 ||
	    k + m > TS_REG_MAX_SLOTS || get_uint(spec, "memberSize", INT64_MAX, false, 0, &ms) ||
	    get_uint(spec, "ownerNode", UINT32_MAX, true, 0, &owner) ||
	    get_uint(spec, "epoch", INT64_MAX, true, 0, &epoch) ||
	    get_uint(spec, "flags", UINT32_MAX, true, 0, &flags) ||
	    get_uint(spec, "journalSize", INT64_MAX, true, 0, &js))
		return -EINVAL;
	g->flags = (uint32_t)flags;
	g->k = (uint32_t)k;
	g->m = (uint32_t)m;
	g->member_size = ms;
	g->owner_node = (uint32_t)owner;
	g->epoch = epoch;
	slots = json_object_get(spec, "slots");
	if (!json_is_array(slots) || json_array_size(slots) != k + m)
		return -EINVAL;
	json_array_foreach(slots, i, v)
		if (slot_from(v, &g->slots[i].node_id, g->slots[i].vdisk))
			return -EINVAL;
	jarr = json_object_get(spec, "journals");
	if (jarr) {
		if (!json_is_array(jarr) || json_array_size(jarr) > TS_REG_MAX_NODES ||
		    (json_array_size(jarr) && js == 0))
			return -EINVAL;
		json_array_foreach(jarr, i, v)
			if (slot_from(v, &g->journals[i].node_id, g->journals[i].vdisk))
				return -EINVAL;
		g->njournals = (uint32_t)json_array_size(jarr);
		g->journal_size = js;
	}
	return 0;
}

static int group_valid(const struct ts_reg_group *g)
{
	return g->k >= 1 && g->k + g->m <= TS_REG_MAX_SLOTS && g->njournals <= TS_REG_MAX_NODES &&
			       g->member_size <= INT64_MAX && g->epoch <= INT64_MAX &&
			       g->journal_size <= INT64_MAX
		       ? 0
		       : -EINVAL;
}

/*
 * The read-modify-write both group writers share: read the group, let
 * \p decide turn the stored record (NULL when there is none) into the one to
 * write (or refuse with an error), write it conditioned on what was read,
 * and start again on conflict.
 */
typedef int (*group_decide)(void *arg, const struct ts_reg_group *cur, struct ts_reg_group *next);

static int group_rmw(struct kreg *k, const uint8_t uuid[16], group_decide decide, void *arg,
		     struct ts_reg_group *next)
{
	char name[37], path[512], coll[512];
	struct ts_reg_group *cur = ts_malloc(sizeof(*cur));
	int rc = -ESTALE;

	if (!cur)
		return -ENOMEM;
	ts_uuid_format(uuid, name);
	path_of(path, sizeof(path), k, "tesseragroups", name);
	path_of(coll, sizeof(coll), k, "tesseragroups", NULL);
	for (unsigned attempt = 0; attempt < CONFLICT_RETRIES; attempt++) {
		json_t *obj = NULL, *out = NULL;
		bool exists;

		rc = ts_kube_get(k->c, path, &obj);
		exists = rc == 0;
		if (exists)
			rc = group_from(obj, uuid, cur); /* a corrupt record is not overwritten */
		else if (rc == -ENOENT)
			rc = 0;
		if (rc == 0)
			rc = decide(arg, exists ? cur : NULL, next);
		if (rc == 0)
			rc = group_valid(next);
		if (rc == 0) {
			out = object(k, "TesseraGroup", name, NULL, group_spec(next));
			if (!out || (exists && !rv_of(obj)))
				rc = out ? -EPROTO : -ENOMEM;
		}
		if (rc == 0 && exists) {
			json_object_set_new(json_object_get(out, "metadata"), "resourceVersion",
					    json_string(rv_of(obj)));
			rc = ts_kube_update(k->c, path, out, NULL);
			rc = rc == -ESTALE ? AGAIN : rc; /* written in between: again */
		} else if (rc == 0) {
			rc = ts_kube_create(k->c, coll, out, NULL);
			rc = rc == -EEXIST ? AGAIN : rc; /* created in between: again */
		}
		json_decref(out);
		json_decref(obj);
		if (rc != AGAIN)
			goto done;
		conflict_pause(attempt);
	}
	rc = -EBUSY; /* conflicts all the way: give up */
done:
	ts_free(cur);
	return rc;
}

static int decide_put(void *arg, const struct ts_reg_group *cur, struct ts_reg_group *next)
{
	const struct ts_reg_group *g = arg;

	if (cur && cur->epoch > g->epoch)
		return -ESTALE; /* a newer owner has the group: this view is out of date */
	*next = *g;
	return 0;
}

struct raise {
	uint32_t owner;
};

static int decide_raise(void *arg, const struct ts_reg_group *cur, struct ts_reg_group *next)
{
	const struct raise *r = arg;

	if (!cur)
		return -ENOENT;
	if (cur->epoch >= INT64_MAX)
		return -EOVERFLOW;
	*next = *cur;
	next->owner_node = r->owner;
	next->epoch = cur->epoch + 1;
	return 0;
}

static int kube_put_group(void *ctx, const struct ts_reg_group *g)
{
	struct ts_reg_group *next = ts_malloc(sizeof(*next));
	int rc;

	if (!next)
		return -ENOMEM;
	rc = group_valid(g);
	if (rc == 0)
		rc = group_rmw(ctx, g->uuid, decide_put, (void *)g, next);
	ts_free(next);
	return rc;
}

static int kube_get_group(void *ctx, const uint8_t uuid[16], struct ts_reg_group *g)
{
	struct kreg *k = ctx;
	char name[37], path[512];
	json_t *obj = NULL;
	int rc;

	ts_uuid_format(uuid, name);
	path_of(path, sizeof(path), k, "tesseragroups", name);
	rc = ts_kube_get(k->c, path, &obj);
	if (rc == 0)
		rc = group_from(obj, uuid, g);
	json_decref(obj);
	return rc;
}

static int kube_raise_epoch(void *ctx, const uint8_t uuid[16], uint32_t owner, uint64_t *epoch)
{
	struct ts_reg_group *next = ts_malloc(sizeof(*next));
	struct raise r = { owner };
	int rc;

	if (!next)
		return -ENOMEM;
	rc = group_rmw(ctx, uuid, decide_raise, &r, next);
	if (rc == 0)
		*epoch = next->epoch;
	ts_free(next);
	return rc;
}

static int kube_list_groups(void *ctx, uint8_t (*out)[16], unsigned max, unsigned *cnt)
{
	struct kreg *k = ctx;
	char path[512], rv[80];
	json_t *items = NULL, *v;
	size_t i;
	int rc;

	*cnt = 0;
	path_of(path, sizeof(path), k, "tesseragroups", NULL);
	rc = ts_kube_list(k->c, path, NULL, &items, rv, sizeof(rv));
	if (rc)
		return rc;
	json_array_foreach(items, i, v) {
		const char *name = json_string_value(
			json_object_get(json_object_get(v, "metadata"), "name"));

		if (*cnt >= max)
			break;
		/* the name is the uuid (group_rmw); anything else is not ours */
		if (name && strlen(name) == 36 && ts_uuid_parse(name, out[*cnt]) == 0)
			(*cnt)++;
	}
	json_decref(items);
	return rc;
}

static void kube_destroy(void *ctx)
{
	struct kreg *k = ctx;

	for (unsigned i = 0; i < TS_REG_MAX_NODES; i++)
		free(k->nodes[i].spec); /* jansson's allocator */
	pthread_mutex_destroy(&k->node_lock);
	ts_kube_close(k->c);
	ts_free(k);
}

static const struct ts_registry_ops g_kube_ops = {
	.put_node = kube_put_node,
	.list_nodes = kube_list_nodes,
	.post_request = kube_post_request,
	.next_request = kube_next_request,
	.complete_request = kube_complete_request,
	.request_status = kube_request_status,
	.put_group = kube_put_group,
	.get_group = kube_get_group,
	.raise_epoch = kube_raise_epoch,
	.list_groups = kube_list_groups,
	.destroy = kube_destroy,
};

int ts_registry_kube_open_opts(const char *kubeconfig, const char *ns,
			       const struct ts_registry_kube_opts *o, struct ts_registry **out)
{
	struct kreg *k;
	int rc;

	if (!out || !ns || strlen(ns) > 63 || !ns[0])
		return -EINVAL;
	for (const char *p = ns; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return -EINVAL;
	k = ts_calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	snprintf(k->ns, sizeof(k->ns), "%s", ns);
	k->lease_s = o && o->lease_s > 0 ? o->lease_s : 10;
	rc = ts_kube_open(kubeconfig, o ? &o->kube : NULL, &k->c);
	if (rc) {
		ts_free(k);
		return rc;
	}
	pthread_mutex_init(&k->node_lock, NULL);
	rc = ts_registry_create(&g_kube_ops, k, out);
	if (rc)
		kube_destroy(k);
	return rc;
}

int ts_registry_kube_open(const char *kubeconfig, const char *ns, struct ts_registry **out)
{
	return ts_registry_kube_open_opts(kubeconfig, ns, NULL, out);
}
