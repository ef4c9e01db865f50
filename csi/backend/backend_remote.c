/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The remote backend (backend_remote.h): the controller side of
 * struct ts_csi_backend_ops forwarded to engine services, the node side
 * attached locally.
 *
 * Shape of a call (rcall): add the group key to the request body, take a
 * client for the engine's endpoint from the pool, one unary call with a
 * deadline, then sort what came back into three kinds: a transport failure
 * (any non-OK gRPC status, or a call that could not start) becomes -EAGAIN
 * and a log line; a reply that breaks the contract (not JSON, rc missing,
 * a field out of range) becomes -EPROTO and a log line; otherwise the
 * engine's rc is the op's result. A client whose call failed in transport
 * is closed, not pooled: a fresh channel connects at once when the engine
 * is back, where a pooled one would sit in gRPC's reconnect backoff.
 *
 * Ids: "<group>.<engine id>" (backend_remote.h). Every id going to an
 * engine is split and its group located; every id coming back is prefixed
 * (volume ids, snapshot ids, snapshot sources). An id that does not split
 * names nothing: remove/snap_delete answer 0, lookups -ENOENT, lists
 * nothing, exactly what the in-process backend does with a foreign id.
 *
 * Listing across engines: snapshots are listed group by group in group-key
 * order and, inside a group, in the engine's own order; the cursor is the
 * last id returned, "<group>.<engine cursor>", so resuming needs only the
 * group (skip the groups before it) and the engine's cursor (handed to that
 * engine), and stays valid when that snapshot, or its whole engine, is
 * gone. One more entry than asked is gathered to tell whether more remain.
 *
 * THREAD SAFETY: b->lock guards the client pool only; a call never holds
 * it while on the wire.
 */
#include "csi/backend/backend_remote.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "csi/backend/iscsi_attach.h"
#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"

#define POOL_EPS 64  /* endpoints with pooled clients */
#define POOL_IDLE 4  /* idle clients kept per endpoint */
#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_GROUP_TIMEOUT_MS 60000

/* gRPC status codes the client reports (csi/call.h has them as CSI_*; not included here). */
enum { RPC_OK = 0, RPC_INVALID_ARGUMENT = 3, RPC_UNIMPLEMENTED = 12 };

struct pool_ent {
	char ep[TS_REMOTE_ENDPOINT_MAX + 1];
	struct ts_client *idle[POOL_IDLE];
	unsigned n;
};

struct rm_backend {
	const struct ts_remote_router_ops *router;
	void *router_ctx;
	int timeout_ms, group_timeout_ms;
	struct ts_csi_iscsi_attach *attach;
	pthread_mutex_t lock; /* the pool */
	struct pool_ent pool[POOL_EPS];
	unsigned npool;
	struct ts_csi_backend_ops ops; /* per instance: multi_node_writers is an option */
};

/* ---- ids ---- */

int ts_csi_remote_id_split(const char *id, char group[TS_ENGINE_GROUP_MAX + 1], const char **inner)
{
	const char *dot = id ? strchr(id, '.') : NULL;
	size_t glen;

	if (!dot)
		return -EINVAL;
	glen = (size_t)(dot - id);
	if (!glen || glen > TS_ENGINE_GROUP_MAX || ts_ew_check(TS_EW_ID, dot + 1))
		return -EINVAL;
	memcpy(group, id, glen);
	group[glen] = '\0';
	if (ts_ew_check(TS_EW_GROUP, group))
		return -EINVAL;
	*inner = dot + 1;
	return 0;
}

/* "<group>.<inner>" into \p out (TS_CSI_ID_MAX + 1); -ENAMETOOLONG when it does not fit. */
static int id_join(const char *group, const char *inner, char *out)
{
	if (!inner[0]) {
		out[0] = '\0'; /* an unknown source stays unknown */
		return 0;
	}
	if (strlen(group) + 1 + strlen(inner) > TS_CSI_ID_MAX) {
		ts_log(TS_LOG_ERROR, "remote", "engine id too long for group=%s id=%s", group, inner);
		return -ENAMETOOLONG;
	}
	memcpy(out, group, strlen(group));
	out[strlen(group)] = '.';
	memcpy(out + strlen(group) + 1, inner, strlen(inner) + 1); /* length checked above */
	return 0;
}

static int prefix_vol(const char *group, struct ts_csi_backend_vol *v)
{
	char inner[TS_CSI_ID_MAX + 1];

	strcpy(inner, v->id);
	return id_join(group, inner, v->id);
}

static int prefix_snap(const char *group, struct ts_csi_backend_snap *s)
{
	char inner[TS_CSI_ID_MAX + 1];
	int rc;

	strcpy(inner, s->id);
	rc = id_join(group, inner, s->id);
	strcpy(inner, s->source);
	return rc ? rc : id_join(group, inner, s->source);
}

/* ---- the client pool ---- */

static struct ts_client *client_get(struct rm_backend *b, const char *ep)
{
	struct ts_client *c = NULL;

	pthread_mutex_lock(&b->lock);
	for (unsigned i = 0; i < b->npool && !c; i++)
		if (!strcmp(b->pool[i].ep, ep) && b->pool[i].n)
			c = b->pool[i].idle[--b->pool[i].n];
	pthread_mutex_unlock(&b->lock);
	if (!c && ts_client_open(ep, &c) < 0)
		return NULL;
	return c;
}

/* Return \p c to the pool (\p ok) or close it (a transport failure, or no room). */
static void client_put(struct rm_backend *b, const char *ep, struct ts_client *c, bool ok)
{
	struct pool_ent *e = NULL;

	if (ok) {
		pthread_mutex_lock(&b->lock);
		for (unsigned i = 0; i < b->npool && !e; i++)
			if (!strcmp(b->pool[i].ep, ep))
				e = &b->pool[i];
		if (!e && b->npool < POOL_EPS) {
			e = &b->pool[b->npool++];
			snprintf(e->ep, sizeof(e->ep), "%s", ep);
			e->n = 0;
		}
		if (e && e->n < POOL_IDLE) {
			e->idle[e->n++] = c;
			c = NULL;
		}
		pthread_mutex_unlock(&b->lock);
	}
	ts_client_close(c);
}

/* ---- one engine call ---- */

/*
 * Call \p method of engine \p en with \p req (consumed). Returns the
 * engine's rc, -EAGAIN (transport), -EPROTO (malformed reply), -ENOMEM;
 * on 0, *\p reply is the reply object (caller json_decref()s).
 */
static int rcall(struct rm_backend *b, const struct ts_remote_engine *en, const char *method,
		 json_t *req, json_t **reply, int timeout_ms)
{
	char msg[512], why[256], *body = NULL, *resp = NULL;
	const char *error;
	struct ts_client *c = NULL;
	json_error_t jerr;
	json_t *r = NULL;
	size_t resp_len = 0;
	int code, rc;

	if (reply)
		*reply = NULL;
	if (!req || json_object_set_new(req, "group", json_string(en->group)) ||
	    !(body = json_dumps(req, JSON_COMPACT))) {
		rc = -ENOMEM;
		goto out;
	}
	c = client_get(b, en->endpoint);
	if (!c) {
		ts_log(TS_LOG_WARN, "remote", "engine group=%s endpoint=%s: cannot open a channel",
		       en->group, en->endpoint);
		rc = -EAGAIN;
		goto out;
	}
	code = ts_client_call(c, method, body, strlen(body), &resp, &resp_len, timeout_ms, msg,
			      sizeof(msg));
	if (code != RPC_OK) {
		client_put(b, en->endpoint, c, false);
		c = NULL;
		ts_log(TS_LOG_WARN, "remote",
		       "engine call failed group=%s endpoint=%s method=%s code=%d msg=\"%s\"",
		       en->group, en->endpoint, method + strlen(TS_ENGINE_PREFIX), code, msg);
		rc = code == RPC_INVALID_ARGUMENT ? -EINVAL
		     : code == RPC_UNIMPLEMENTED  ? -EOPNOTSUPP
						  : -EAGAIN;
		goto out;
	}
	client_put(b, en->endpoint, c, true);
	c = NULL;
	r = json_loadb(resp, resp_len, JSON_REJECT_DUPLICATES, &jerr);
	if (!r || ts_ew_rc(r, &rc, &error, why, sizeof(why))) {
		ts_log(TS_LOG_ERROR, "remote", "engine reply malformed group=%s method=%s: %s",
		       en->group, method + strlen(TS_ENGINE_PREFIX), r ? why : jerr.text);
		rc = -EPROTO;
		goto out;
	}
	if (rc == -ESTALE) {
		/* the router's view is behind the engines': retriable once it catches up */
		ts_log(TS_LOG_WARN, "remote", "stale route group=%s endpoint=%s: %s", en->group,
		       en->endpoint, error ? error : "");
		rc = -EAGAIN;
	} else if (rc) {
		ts_log(TS_LOG_DEBUG, "remote", "engine group=%s method=%s rc=%d: %s", en->group,
		       method + strlen(TS_ENGINE_PREFIX), rc, error ? error : "");
	}
	if (rc == 0 && reply) {
		*reply = r;
		r = NULL;
	}
out:
	json_decref(r);
	json_decref(req);
	free(body);
	ts_free(resp);
	return rc;
}

/* Malformed-reply exit: log, -EPROTO. */
static int bad_reply(const struct ts_remote_engine *en, const char *what, const char *why)
{
	ts_log(TS_LOG_ERROR, "remote", "engine reply malformed group=%s %s: %s", en->group, what, why);
	return -EPROTO;
}

/* The engine serving \p id's group; *\p inner points into \p id. -ENOENT for a foreign id. */
static int locate_id(struct rm_backend *b, const char *id, struct ts_remote_engine *en,
		     const char **inner)
{
	char group[TS_ENGINE_GROUP_MAX + 1];
	int rc;

	if (ts_csi_remote_id_split(id, group, inner) < 0)
		return -ENOENT;
	memset(en, 0, sizeof(*en));
	rc = b->router->locate(b->router_ctx, group, en);
	if (rc == 0 && strcmp(en->group, group)) {
		ts_log(TS_LOG_ERROR, "remote", "router located group=%s as group=%s", group, en->group);
		rc = -EPROTO;
	}
	return rc;
}

/*
 * Locate \p id's engine (*\p en) and call \p method with \p req (consumed)
 * plus \p field set to the engine's id. Returns as rcall(); -ENOENT for a
 * foreign id or a group that is gone.
 */
static int id_call(struct rm_backend *b, const char *id, const char *field, const char *method,
		   json_t *req, struct ts_remote_engine *en, json_t **reply)
{
	const char *inner;
	int rc = locate_id(b, id, en, &inner);

	if (rc || !req || json_object_set_new(req, field, json_string(inner))) {
		json_decref(req);
		return rc ? rc : -ENOMEM;
	}
	return rcall(b, en, method, req, reply, b->timeout_ms);
}

static int cmp_engine(const void *a, const void *b)
{
	return strcmp(((const struct ts_remote_engine *)a)->group,
		      ((const struct ts_remote_engine *)b)->group);
}

/* Every engine, in group-key order. *\p out is ts_malloc'd (caller ts_free()s). */
static int engines(struct rm_backend *b, struct ts_remote_engine **out, size_t *n)
{
	struct ts_remote_engine *e = ts_calloc(TS_REMOTE_MAX_ENGINES, sizeof(*e));
	int rc;

	*out = NULL;
	*n = 0;
	if (!e)
		return -ENOMEM;
	rc = b->router->list(b->router_ctx, e, TS_REMOTE_MAX_ENGINES, n);
	if (rc == 0 && *n > TS_REMOTE_MAX_ENGINES)
		rc = -EPROTO;
	for (size_t i = 0; rc == 0 && i < *n; i++)
		if (ts_ew_check(TS_EW_GROUP, e[i].group))
			rc = -EPROTO;
	if (rc) {
		ts_free(e);
		*n = 0;
		return rc;
	}
	qsort(e, *n, sizeof(*e), cmp_engine);
	*out = e;
	return 0;
}

/* ---- controller side ---- */

static int rm_probe(void *ctx)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine *e;
	size_t n;
	int rc = engines(b, &e, &n), first = -EAGAIN;

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		rc = rcall(b, &e[i], TS_ENGINE_M("Probe"), json_object(), NULL, b->timeout_ms);
		if (rc == 0)
			break; /* one engine ready: the controller can serve */
		if (i == 0)
			first = rc;
	}
	ts_free(e);
	return n && rc == 0 ? 0 : first;
}

static int vol_from(const struct ts_remote_engine *en, json_t *reply, struct ts_csi_backend_vol *out)
{
	char why[256];

	if (ts_ew_vol_parse(json_object_get(reply, "volume"), out, why, sizeof(why)))
		return bad_reply(en, "volume", why);
	return prefix_vol(en->group, out);
}

static json_t *spec_json(const struct ts_csi_vol_spec *spec)
{
	return json_pack("{s:s, s:I, s:I, s:I}", "name", spec->name, "capacity_bytes",
			 (json_int_t)TS_MIN(spec->capacity_bytes, TS_ENGINE_U64_MAX), "ec_k",
			 (json_int_t)spec->ec_k, "ec_m", (json_int_t)spec->ec_m);
}

/*
 * The engine that already has a volume named \p name: 0 and *\p found (and
 * the volume, when \p out), -ENOENT when none has, -EAGAIN when one could
 * not be asked.
 */
static int find_name(struct rm_backend *b, const char *name, struct ts_remote_engine *found,
		     struct ts_csi_backend_vol *out)
{
	struct ts_remote_engine *e;
	json_t *reply;
	size_t n;
	int rc = engines(b, &e, &n);

	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n && rc == -ENOENT; i++) {
		rc = rcall(b, &e[i], TS_ENGINE_M("Find"), json_pack("{s:s}", "name", name), &reply,
			   b->timeout_ms);
		if (rc == -EOPNOTSUPP) {
			ts_log(TS_LOG_WARN, "remote", "engine group=%s cannot look names up", e[i].group);
			rc = -ENOENT;
		}
		if (rc == 0) {
			*found = e[i];
			rc = vol_from(&e[i], reply, out);
			json_decref(reply);
		} else if (rc != -ENOENT) {
			ts_log(TS_LOG_WARN, "remote",
			       "volume name=%s: engine group=%s cannot be asked whether it has it (%s); not placing it elsewhere",
			       name, e[i].group, ts_strerror(rc));
		}
	}
	ts_free(e);
	return rc;
}

static int rm_create(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_csi_backend_vol *out)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine en;
	json_t *reply;
	int rc;

	/* A retry (after a crash before the CSI store's write) lands where the first did. */
	rc = find_name(b, spec->name, &en, out);
	if (rc != -ENOENT)
		return rc;
	memset(&en, 0, sizeof(en));
	rc = b->router->pick(b->router_ctx, spec, &en);
	if (rc)
		return rc;
	if (ts_ew_check(TS_EW_GROUP, en.group))
		return -EPROTO;
	rc = rcall(b, &en, TS_ENGINE_M("Create"), spec_json(spec), &reply, b->timeout_ms);
	if (rc)
		return rc;
	rc = vol_from(&en, reply, out);
	json_decref(reply);
	if (rc == 0)
		ts_log(TS_LOG_INFO, "remote", "volume created id=%s name=%s group=%s", out->id,
		       spec->name, en.group);
	return rc;
}

static int rm_find(void *ctx, const char *name, struct ts_csi_backend_vol *out)
{
	struct ts_remote_engine en;

	return find_name(ctx, name, &en, out);
}

static int rm_remove(void *ctx, const char *id)
{
	struct ts_remote_engine en;
	int rc = id_call(ctx, id, "id", TS_ENGINE_M("Remove"), json_object(), &en, NULL);

	return rc == -ENOENT ? 0 : rc; /* a foreign id or a group that is gone: nothing to remove */
}

static int rm_expand(void *ctx, const char *id, uint64_t bytes, uint64_t *out_bytes)
{
	struct ts_remote_engine en;
	char why[256];
	json_t *reply;
	int rc = id_call(ctx, id, "id", TS_ENGINE_M("Expand"),
			 json_pack("{s:I}", "bytes", (json_int_t)TS_MIN(bytes, TS_ENGINE_U64_MAX)),
			 &en, &reply);

	if (rc)
		return rc;
	if (ts_ew_u64(reply, "capacity_bytes", TS_ENGINE_U64_MAX, true, out_bytes, why, sizeof(why)))
		rc = bad_reply(&en, "expand", why);
	json_decref(reply);
	return rc;
}

static int rm_capacity(void *ctx, uint64_t *avail)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine *e;
	size_t n, answered = 0;
	char why[256];
	int rc = engines(b, &e, &n);

	*avail = 0;
	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++) {
		uint64_t one;
		json_t *reply;

		/* capacity is advice to the CO: an engine that cannot answer counts 0 */
		if (rcall(b, &e[i], TS_ENGINE_M("Capacity"), json_object(), &reply, b->timeout_ms))
			continue;
		if (ts_ew_u64(reply, "available_bytes", TS_ENGINE_U64_MAX, true, &one, why,
			      sizeof(why)) == 0) {
			*avail = *avail > UINT64_MAX - one ? UINT64_MAX : *avail + one;
			answered++;
		} else {
			bad_reply(&e[i], "capacity", why);
		}
		json_decref(reply);
	}
	ts_free(e);
	return n && !answered ? -EAGAIN : 0;
}

/* ---- snapshots and clones ---- */

static int snap_from(const struct ts_remote_engine *en, const json_t *j,
		     struct ts_csi_backend_snap *out)
{
	char why[256];

	if (ts_ew_snap_parse(j, out, why, sizeof(why)))
		return bad_reply(en, "snapshot", why);
	return prefix_snap(en->group, out);
}

static int rm_snap_create(void *ctx, const char *vol, const char *name,
			  struct ts_csi_backend_snap *out)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine en, *e;
	const char *inner;
	json_t *reply;
	size_t n;
	int rc = locate_id(b, vol, &en, &inner);

	if (rc)
		return rc;
	/* The name must not be taken on another engine (the source's engine checks its own). */
	rc = engines(b, &e, &n);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (!strcmp(e[i].group, en.group))
			continue;
		rc = rcall(b, &e[i], TS_ENGINE_M("SnapFind"), json_pack("{s:s}", "name", name), NULL,
			   b->timeout_ms);
		if (rc == 0) {
			ts_log(TS_LOG_INFO, "remote", "snapshot name=%s exists on group=%s", name,
			       e[i].group);
			rc = -EEXIST;
		} else if (rc == -ENOENT || rc == -EOPNOTSUPP) {
			rc = 0;
		}
	}
	ts_free(e);
	if (rc)
		return rc;
	rc = rcall(b, &en, TS_ENGINE_M("SnapCreate"), json_pack("{s:s, s:s}", "volume", inner, "name", name),
		   &reply, b->timeout_ms);
	if (rc)
		return rc;
	rc = snap_from(&en, json_object_get(reply, "snapshot"), out);
	json_decref(reply);
	return rc;
}

static int rm_snap_find(void *ctx, const char *name, struct ts_csi_backend_snap *out)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine *e;
	json_t *reply;
	size_t n;
	int rc = engines(b, &e, &n);

	if (rc)
		return rc;
	rc = -ENOENT;
	for (size_t i = 0; i < n && (rc == -ENOENT || rc == -EOPNOTSUPP); i++) {
		rc = rcall(b, &e[i], TS_ENGINE_M("SnapFind"), json_pack("{s:s}", "name", name), &reply,
			   b->timeout_ms);
		if (rc == 0) {
			rc = snap_from(&e[i], json_object_get(reply, "snapshot"), out);
			json_decref(reply);
		}
	}
	ts_free(e);
	return rc == -EOPNOTSUPP ? -ENOENT : rc;
}

static int rm_snap_delete(void *ctx, const char *id)
{
	struct ts_remote_engine en;
	int rc = id_call(ctx, id, "id", TS_ENGINE_M("SnapDelete"), json_object(), &en, NULL);

	return rc == -ENOENT ? 0 : rc;
}

/*
 * One engine's share of a listing: entries after \p cursor (NULL: from its
 * start) appended to out[*total..want), asking in pages. \p snap / \p vol
 * are engine ids (filters) or NULL.
 */
static int list_one(struct rm_backend *b, const struct ts_remote_engine *en, const char *snap,
		    const char *vol, const char *cursor, struct ts_csi_backend_snap *out,
		    size_t want, size_t *total)
{
	char last[TS_CSI_ID_MAX + 1], why[256];
	bool more = true;
	int rc = 0;

	snprintf(last, sizeof(last), "%s", cursor ? cursor : "");
	while (more && *total < want && !rc) {
		size_t ask = TS_MIN(want - *total, (size_t)TS_ENGINE_LIST_MAX), i;
		json_t *req = json_pack("{s:I}", "max", (json_int_t)ask), *reply, *arr, *s;

		if (req && snap)
			json_object_set_new(req, "snapshot", json_string(snap));
		if (req && vol)
			json_object_set_new(req, "volume", json_string(vol));
		if (req && last[0])
			json_object_set_new(req, "after", json_string(last));
		rc = rcall(b, en, TS_ENGINE_M("SnapList"), req, &reply, b->timeout_ms);
		if (rc)
			break;
		arr = json_object_get(reply, "snapshots");
		if (!json_is_array(arr) || json_array_size(arr) > ask ||
		    ts_ew_bool(reply, "more", true, &more, why, sizeof(why))) {
			rc = bad_reply(en, "snapshot list", "'snapshots' or 'more' malformed");
			json_decref(reply);
			break;
		}
		json_array_foreach(arr, i, s) {
			if (rc)
				break;
			rc = ts_ew_snap_parse(s, &out[*total], why, sizeof(why))
				     ? bad_reply(en, "snapshot list", why)
				     : 0;
			if (!rc) {
				strcpy(last, out[*total].id);
				rc = prefix_snap(en->group, &out[*total]);
				(*total)++;
			}
		}
		if (!rc && more && json_array_size(arr) == 0)
			rc = bad_reply(en, "snapshot list", "an empty page that says more remain");
		json_decref(reply);
	}
	return rc;
}

static int rm_snap_list(void *ctx, const char *snap, const char *vol, const char *after,
			struct ts_csi_backend_snap *out, size_t max, size_t *n, bool *more)
{
	struct rm_backend *b = ctx;
	char ag[TS_ENGINE_GROUP_MAX + 1] = "", sg[TS_ENGINE_GROUP_MAX + 1] = "",
	     vg[TS_ENGINE_GROUP_MAX + 1] = "";
	const char *ai = NULL, *si = NULL, *vi = NULL, *only = NULL;
	struct ts_csi_backend_snap *tmp = NULL;
	struct ts_remote_engine *e = NULL, one;
	size_t ne = 0, total = 0;
	int rc;

	*n = 0;
	*more = false;
	if (after && ts_csi_remote_id_split(after, ag, &ai) < 0)
		return -EINVAL;
	if (snap && ts_csi_remote_id_split(snap, sg, &si) < 0)
		return 0;
	if (vol && ts_csi_remote_id_split(vol, vg, &vi) < 0)
		return 0;
	if (snap && vol && strcmp(sg, vg))
		return 0; /* a snapshot and a source on different engines: no match */
	only = snap ? sg : vol ? vg : NULL;
	if (!max)
		return 0;
	if (only) {
		rc = b->router->locate(b->router_ctx, only, &one);
		if (rc == -ENOENT)
			return 0;
		if (rc)
			return rc;
		snprintf(one.group, sizeof(one.group), "%s", only);
		e = ts_malloc(sizeof(*e));
		if (!e)
			return -ENOMEM;
		e[0] = one;
		ne = 1;
	} else {
		rc = engines(b, &e, &ne);
		if (rc)
			return rc;
	}
	tmp = ts_calloc(max + 1, sizeof(*tmp));
	if (!tmp) {
		ts_free(e);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ne && total < max + 1 && !rc; i++) {
		int c = after ? strcmp(e[i].group, ag) : 1;

		if (c < 0)
			continue; /* listed before the cursor */
		rc = list_one(b, &e[i], si, vi, c == 0 ? ai : NULL, tmp, max + 1, &total);
	}
	if (!rc) {
		*n = TS_MIN(total, max);
		*more = total > max;
		memcpy(out, tmp, *n * sizeof(*out));
	}
	ts_free(tmp);
	ts_free(e);
	return rc;
}

static int rm_create_from(void *ctx, const struct ts_csi_vol_spec *spec, enum ts_csi_src_kind kind,
			  const char *src, struct ts_csi_backend_vol *out)
{
	struct rm_backend *b = ctx;
	struct ts_remote_engine en;
	const char *inner;
	json_t *req, *reply;
	int rc = locate_id(b, src, &en, &inner);

	if (rc)
		return rc; /* the clone goes where its source is: nowhere else has the layers */
	req = spec_json(spec);
	if (req && (json_object_set_new(req, "kind", json_string(kind == TS_CSI_SRC_SNAPSHOT ? "snapshot" : "volume")) ||
		    json_object_set_new(req, "source", json_string(inner)))) {
		json_decref(req);
		req = NULL;
	}
	rc = rcall(b, &en, TS_ENGINE_M("CreateFrom"), req, &reply, b->timeout_ms);
	if (rc)
		return rc;
	rc = vol_from(&en, reply, out);
	json_decref(reply);
	return rc;
}

static int rm_snap_delta(void *ctx, const char *base, const char *target, uint64_t start,
			 struct ts_csi_range *out, size_t max, size_t *n, uint64_t *next,
			 uint64_t *size)
{
	struct rm_backend *b = ctx;
	char bg[TS_ENGINE_GROUP_MAX + 1];
	const char *ti, *bi = NULL;
	struct ts_remote_engine en;
	size_t ask = TS_MIN(max, (size_t)TS_ENGINE_DELTA_MAX);
	json_t *req, *reply;
	char why[256];
	bool done;
	int rc;

	*n = 0;
	*next = UINT64_MAX;
	if (!max)
		return -EINVAL;
	rc = locate_id(b, target, &en, &ti);
	if (rc)
		return rc;
	if (base && (ts_csi_remote_id_split(base, bg, &bi) < 0 || strcmp(bg, en.group)))
		return -ENOENT; /* the base is not a snapshot of the target's engine */
	req = json_pack("{s:s, s:I, s:I}", "target", ti, "start",
			(json_int_t)TS_MIN(start, TS_ENGINE_U64_MAX), "max", (json_int_t)ask);
	if (req && bi)
		json_object_set_new(req, "base", json_string(bi));
	rc = rcall(b, &en, TS_ENGINE_M("SnapDelta"), req, &reply, b->timeout_ms);
	if (rc)
		return rc;
	if (ts_ew_ranges_parse(json_object_get(reply, "ranges"), out, ask, n, why, sizeof(why)) ||
	    ts_ew_u64(reply, "size_bytes", TS_ENGINE_U64_MAX, true, size, why, sizeof(why)) ||
	    ts_ew_bool(reply, "done", true, &done, why, sizeof(why)) ||
	    (!done && ts_ew_u64(reply, "next", TS_ENGINE_U64_MAX, true, next, why, sizeof(why)))) {
		*n = 0;
		rc = bad_reply(&en, "snapshot delta", why);
	} else if (done) {
		*next = UINT64_MAX;
	}
	json_decref(reply);
	return rc;
}

/* ---- QoS and group snapshots ---- */

static int rm_set_qos(void *ctx, const char *id, const struct ts_csi_qos *q)
{
	struct ts_remote_engine en;

	return id_call(ctx, id, "id", TS_ENGINE_M("SetQos"), json_pack("{s:o}", "qos", ts_ew_qos_json(q)),
		       &en, NULL);
}

static int rm_qos_stats(void *ctx, const char *id, struct ts_csi_qos_stats *out)
{
	struct ts_remote_engine en;
	char why[256];
	json_t *reply;
	int rc = id_call(ctx, id, "id", TS_ENGINE_M("QosStats"), json_object(), &en, &reply);

	if (rc)
		return rc;
	if (ts_ew_qos_stats_parse(json_object_get(reply, "stats"), out, why, sizeof(why)))
		rc = bad_reply(&en, "qos stats", why);
	json_decref(reply);
	return rc;
}

static int rm_group_snap_create(void *ctx, const char *name, const char *const *vols, size_t n,
				struct ts_csi_backend_snap *out)
{
	struct rm_backend *b = ctx;
	char group[TS_ENGINE_GROUP_MAX + 1], g[TS_ENGINE_GROUP_MAX + 1];
	struct ts_remote_engine en;
	const char *inner;
	json_t *arr, *reply, *snaps;
	int rc;

	if (!n || n > TS_CSI_GROUP_MAX)
		return -EINVAL;
	rc = locate_id(b, vols[0], &en, &inner);
	if (rc)
		return rc;
	strcpy(group, en.group);
	arr = json_array();
	for (size_t i = 0; i < n && arr; i++) {
		if (ts_csi_remote_id_split(vols[i], g, &inner) < 0) {
			json_decref(arr);
			return -ENOENT;
		}
		if (strcmp(g, group)) {
			/* one engine holds every member still: a cut across engines is no one point in time */
			ts_log(TS_LOG_WARN, "remote",
			       "group snapshot name=%s: %s is on group %s, %s on group %s", name,
			       vols[0], group, vols[i], g);
			json_decref(arr);
			return -EXDEV;
		}
		if (json_array_append_new(arr, json_string(inner))) {
			json_decref(arr);
			arr = NULL;
		}
	}
	if (!arr)
		return -ENOMEM;
	rc = rcall(b, &en, TS_ENGINE_M("GroupSnapCreate"),
		   json_pack("{s:s, s:o}", "name", name, "volumes", arr), &reply, b->group_timeout_ms);
	if (rc)
		return rc;
	snaps = json_object_get(reply, "snapshots");
	if (!json_is_array(snaps) || json_array_size(snaps) != n)
		rc = bad_reply(&en, "group snapshot", "'snapshots' is not one per volume");
	for (size_t i = 0; i < n && !rc; i++)
		rc = snap_from(&en, json_array_get(snaps, i), &out[i]);
	json_decref(reply);
	return rc;
}

/* ---- node side: local iSCSI attach (iscsi_attach.h) ---- */

static int rm_attach(void *ctx, const char *id, const char *attach, char *dev, size_t dev_len)
{
	struct rm_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_open(b->attach, attach, dev, dev_len);
}

static int rm_detach(void *ctx, const char *id, const char *dev)
{
	struct rm_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_close(b->attach, dev);
}

static int rm_refresh(void *ctx, const char *id, const char *dev, uint64_t *out_bytes)
{
	struct rm_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_refresh(b->attach, dev, out_bytes);
}

static void rm_destroy(void *ctx)
{
	struct rm_backend *b = ctx;

	if (!b)
		return;
	ts_csi_iscsi_attach_destroy(b->attach);
	for (unsigned i = 0; i < b->npool; i++)
		for (unsigned j = 0; j < b->pool[i].n; j++)
			ts_client_close(b->pool[i].idle[j]);
	pthread_mutex_destroy(&b->lock);
	ts_free(b);
}

static const struct ts_csi_backend_ops g_rm_ops = {
	.name = "remote",
	.probe = rm_probe,
	.create = rm_create,
	.find = rm_find,
	.remove = rm_remove,
	.expand = rm_expand,
	.capacity = rm_capacity,
	.snap_create = rm_snap_create,
	.snap_find = rm_snap_find,
	.snap_delete = rm_snap_delete,
	.snap_list = rm_snap_list,
	.create_from = rm_create_from,
	.snap_delta = rm_snap_delta,
	.set_qos = rm_set_qos,
	.qos_stats = rm_qos_stats,
	.group_snap_create = rm_group_snap_create,
	.attach = rm_attach,
	.detach = rm_detach,
	.refresh = rm_refresh,
	.destroy = rm_destroy,
};

int ts_csi_backend_remote_create(const struct ts_csi_remote_opts *o,
				 const struct ts_csi_backend_ops **ops, void **ctx)
{
	struct rm_backend *b;
	int rc;

	if (!o || !o->router || !o->router->pick || !o->router->locate || !o->router->list ||
	    !o->state_dir || !ops || !ctx || o->timeout_ms < 0 || o->group_timeout_ms < 0)
		return -EINVAL;
	b = ts_calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->router = o->router;
	b->router_ctx = o->router_ctx;
	b->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	b->group_timeout_ms = o->group_timeout_ms ? o->group_timeout_ms : DEFAULT_GROUP_TIMEOUT_MS;
	b->ops = g_rm_ops;
	b->ops.multi_node_writers = o->multi_node_writers;
	rc = ts_csi_iscsi_attach_create(o->state_dir, &b->attach);
	if (rc) {
		rm_destroy(b);
		return rc;
	}
	*ops = &b->ops;
	*ctx = b;
	return 0;
}
