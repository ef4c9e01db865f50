/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine service (csi/engine.h): a backend ops table served over gRPC.
 *
 * Why it lives in csi/ and not in csi/backend/: it is a gRPC service, and
 * gRPC status codes exist only in csi/; it is a method table of the CSI
 * server loop (raw entries, like admin.c), so a CSI server can carry it
 * beside CSI and admin, and csi_server_start can serve it alone on a node
 * daemon's engine endpoint. The wire contract itself (method names, JSON
 * codec, field rules) sits below, in csi/backend/engine_wire.h, because the
 * remote backend in csi/backend/ speaks it too and must not include csi/.
 *
 * One request, one cycle (serve()): parse the body (JSON object, no
 * duplicate keys, nothing after it), refuse keys the method does not know,
 * check the group key, decode and check every field with engine_wire's
 * readers, and only then call the backend op. A malformed request is an
 * INVALID_ARGUMENT status and never reaches the backend; everything the
 * backend says travels as "rc" in an OK reply (see engine_wire.h for why
 * the two are kept apart). Sizes above the engine's largest volume are the
 * backend-level -ERANGE (OUT_OF_RANGE at the CSI layer), not a malformed
 * request: a controller configured for larger volumes than this engine is
 * a policy mismatch, not a bug.
 *
 * Memory: request JSON is freed before return; the reply is one ts_malloc'd
 * buffer the server loop owns. Arrays for SnapList/SnapDelta/GroupSnapCreate
 * are bounded by the request's checked count before they are allocated.
 *
 * THREAD SAFETY: e->lock serialises the mutating ops (engine.h); it is the
 * service's own lock and is never held while calling out of the process.
 */
#include "csi/engine.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#define ENGINE_MAX_BYTES_DEFAULT (64ull << 40)

struct csi_engine {
	pthread_mutex_t lock; /* the mutating ops, one at a time */
	char group[TS_ENGINE_GROUP_MAX + 1];
	const struct ts_csi_backend_ops *ops;
	void *ctx;
	uint64_t max_bytes;
	int (*report)(void *arg, const char *what, char **json);
	void *report_arg;
	int (*heal)(void *arg, bool run, char **json);
	void *heal_arg;
};

struct ts_engine_server {
	struct ts_csi_driver *d; /* holds only the engine */
	struct ts_csi_server *srv;
	int port;
};

/* ---- one request ---- */

/*
 * A method's work: decode the fields of \p req (checked), run the op, put
 * the result fields into \p reply when *brc is 0. 0, or -EINVAL with \p why
 * for a malformed request (then the op was not called).
 */
typedef int (*eng_fn)(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		      char *why, size_t why_len);

static int set(json_t *reply, const char *key, json_t *v)
{
	return v && json_object_set_new(reply, key, v) == 0 ? 0 : -ENOMEM;
}

static int serve(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb, size_t len,
		 uint8_t **resp, size_t *resp_len, const char *const *keys, eng_fn fn, bool mut)
{
	struct csi_engine *e = d->engine;
	json_t *req = NULL, *reply = NULL;
	const char *group;
	char why[256] = "", err[160];
	json_error_t jerr;
	char *text = NULL;
	int brc = 0, rc = -1;

	if (!e)
		return csi_fail(c, CSI_UNAVAILABLE, "this endpoint serves no volume engine");
	req = json_loadb((const char *)reqb, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!req) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "engine request is not JSON: %s", jerr.text);
		goto out;
	}
	if (ts_ew_only(req, keys, why, sizeof(why)) ||
	    ts_ew_str(req, "group", TS_EW_GROUP, true, &group, why, sizeof(why))) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "engine request: %s", why);
		goto out;
	}
	reply = json_object();
	if (!reply) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	snprintf(err, sizeof(err), "%s", "");
	if (strcmp(group, e->group)) {
		/* a stale route: this process does not (or no longer does) serve that group */
		brc = -ESTALE;
		snprintf(err, sizeof(err), "this engine serves group %s, not %s", e->group, group);
	} else {
		if (mut)
			pthread_mutex_lock(&e->lock);
		rc = fn(e, req, reply, &brc, why, sizeof(why));
		if (mut)
			pthread_mutex_unlock(&e->lock);
		if (rc == -EINVAL) {
			rc = csi_fail(c, CSI_INVALID_ARGUMENT, "engine request: %s", why);
			goto out;
		}
		if (rc) {
			rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
			goto out;
		}
	}
	if (brc > 0 || brc < TS_ENGINE_RC_MIN) {
		ts_log(TS_LOG_WARN, "engine", "backend %s returned %d: sent as EIO", e->ops->name, brc);
		brc = -EIO;
	}
	if (brc && !err[0])
		snprintf(err, sizeof(err), "%s", ts_strerror(brc));
	if (json_object_set_new(reply, "rc", json_integer(brc)) ||
	    (brc && json_object_set_new(reply, "error", json_string(err)))) {
		rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	text = json_dumps(reply, JSON_COMPACT);
	*resp_len = text ? strlen(text) : 0;
	*resp = text ? ts_malloc(*resp_len + 1) : NULL;
	if (!*resp) {
		*resp_len = 0;
		rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	memcpy(*resp, text, *resp_len + 1);
	rc = 0;
out:
	free(text);
	json_decref(reply);
	json_decref(req);
	return rc;
}

/* ---- the methods ---- */

static int too_big(struct csi_engine *e, uint64_t bytes, int *brc)
{
	if (bytes <= e->max_bytes)
		return 0;
	*brc = -ERANGE;
	return 1;
}

static int m_probe(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		   size_t why_len)
{
	(void)req, (void)reply, (void)why, (void)why_len;
	*brc = e->ops->probe ? e->ops->probe(e->ctx) : 0;
	return 0;
}

static int m_capacity(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		      char *why, size_t why_len)
{
	uint64_t avail = 0;

	(void)req, (void)why, (void)why_len;
	*brc = e->ops->capacity(e->ctx, &avail);
	return *brc ? 0 : set(reply, "available_bytes", json_integer((json_int_t)TS_MIN(avail, TS_ENGINE_U64_MAX)));
}

/* name, capacity_bytes (required unless \p clone), ec_k, ec_m */
static int get_spec(const json_t *req, bool clone, struct ts_csi_vol_spec *spec, char *why,
		    size_t why_len)
{
	uint64_t k = 0, m = 0;
	int rc;

	memset(spec, 0, sizeof(*spec));
	rc = ts_ew_str(req, "name", TS_EW_NAME, true, &spec->name, why, why_len);
	if (!rc)
		rc = ts_ew_u64(req, "capacity_bytes", TS_ENGINE_U64_MAX, !clone, &spec->capacity_bytes,
			       why, why_len);
	if (!rc && !clone && !spec->capacity_bytes) {
		snprintf(why, why_len, "field 'capacity_bytes' must be positive");
		rc = -EINVAL;
	}
	if (!rc)
		rc = ts_ew_u64(req, "ec_k", TS_ENGINE_EC_MAX, false, &k, why, why_len);
	if (!rc)
		rc = ts_ew_u64(req, "ec_m", TS_ENGINE_EC_MAX, false, &m, why, why_len);
	spec->ec_k = (uint32_t)(rc ? 0 : k);
	spec->ec_m = (uint32_t)(rc ? 0 : m);
	return rc;
}

static int vol_reply(json_t *reply, int brc, const struct ts_csi_backend_vol *v)
{
	return brc ? 0 : set(reply, "volume", ts_ew_vol_json(v));
}

static int m_create(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		    size_t why_len)
{
	struct ts_csi_backend_vol v;
	struct ts_csi_vol_spec spec;
	int rc = get_spec(req, false, &spec, why, why_len);

	if (rc || too_big(e, spec.capacity_bytes, brc))
		return rc;
	memset(&v, 0, sizeof(v));
	*brc = e->ops->create(e->ctx, &spec, &v);
	return vol_reply(reply, *brc, &v);
}

static int m_find(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		  size_t why_len)
{
	struct ts_csi_backend_vol v;
	const char *name;
	int rc = ts_ew_str(req, "name", TS_EW_NAME, true, &name, why, why_len);

	if (rc)
		return rc;
	memset(&v, 0, sizeof(v));
	*brc = e->ops->find ? e->ops->find(e->ctx, name, &v) : -EOPNOTSUPP;
	return vol_reply(reply, *brc, &v);
}

static int m_remove(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		    size_t why_len)
{
	const char *id;
	int rc = ts_ew_str(req, "id", TS_EW_ID, true, &id, why, why_len);

	(void)reply;
	if (!rc)
		*brc = e->ops->remove(e->ctx, id);
	return rc;
}

static int m_expand(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		    size_t why_len)
{
	uint64_t bytes = 0, got = 0;
	const char *id;
	int rc = ts_ew_str(req, "id", TS_EW_ID, true, &id, why, why_len);

	if (!rc)
		rc = ts_ew_u64(req, "bytes", TS_ENGINE_U64_MAX, true, &bytes, why, why_len);
	if (rc || too_big(e, bytes, brc))
		return rc;
	*brc = e->ops->expand(e->ctx, id, bytes, &got);
	return *brc ? 0 : set(reply, "capacity_bytes", json_integer((json_int_t)TS_MIN(got, TS_ENGINE_U64_MAX)));
}

static int m_snap_create(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
			 char *why, size_t why_len)
{
	struct ts_csi_backend_snap s;
	const char *vol, *name;
	int rc = ts_ew_str(req, "volume", TS_EW_ID, true, &vol, why, why_len);

	if (!rc)
		rc = ts_ew_str(req, "name", TS_EW_NAME, true, &name, why, why_len);
	if (rc)
		return rc;
	memset(&s, 0, sizeof(s));
	*brc = e->ops->snap_create ? e->ops->snap_create(e->ctx, vol, name, &s) : -EOPNOTSUPP;
	return *brc ? 0 : set(reply, "snapshot", ts_ew_snap_json(&s));
}

static int m_snap_find(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		       char *why, size_t why_len)
{
	struct ts_csi_backend_snap s;
	const char *name;
	int rc = ts_ew_str(req, "name", TS_EW_NAME, true, &name, why, why_len);

	if (rc)
		return rc;
	memset(&s, 0, sizeof(s));
	*brc = e->ops->snap_find ? e->ops->snap_find(e->ctx, name, &s) : -EOPNOTSUPP;
	return *brc ? 0 : set(reply, "snapshot", ts_ew_snap_json(&s));
}

static int m_snap_delete(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
			 char *why, size_t why_len)
{
	const char *id;
	int rc = ts_ew_str(req, "id", TS_EW_ID, true, &id, why, why_len);

	(void)reply;
	if (!rc)
		*brc = e->ops->snap_delete ? e->ops->snap_delete(e->ctx, id) : -EOPNOTSUPP;
	return rc;
}

static int snaps_reply(json_t *reply, const struct ts_csi_backend_snap *s, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, ts_ew_snap_json(&s[i]))) {
			json_decref(a);
			a = NULL;
		}
	return set(reply, "snapshots", a);
}

static int m_snap_list(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		       char *why, size_t why_len)
{
	const char *snap, *vol, *after;
	struct ts_csi_backend_snap *out;
	uint64_t max;
	size_t n = 0;
	bool more = false;
	int rc = ts_ew_str(req, "snapshot", TS_EW_ID, false, &snap, why, why_len);

	if (!rc)
		rc = ts_ew_str(req, "volume", TS_EW_ID, false, &vol, why, why_len);
	if (!rc)
		rc = ts_ew_str(req, "after", TS_EW_ID, false, &after, why, why_len);
	if (!rc)
		rc = ts_ew_u64(req, "max", TS_ENGINE_LIST_MAX, true, &max, why, why_len);
	if (!rc && !max) {
		snprintf(why, why_len, "field 'max' must be 1 to %d", TS_ENGINE_LIST_MAX);
		rc = -EINVAL;
	}
	if (rc)
		return rc;
	if (!e->ops->snap_list) {
		*brc = -EOPNOTSUPP;
		return 0;
	}
	out = ts_calloc(max, sizeof(*out));
	if (!out)
		return -ENOMEM;
	*brc = e->ops->snap_list(e->ctx, snap, vol, after, out, max, &n, &more);
	if (!*brc && n > max)
		*brc = -EIO; /* the backend broke its contract: say so, do not overrun */
	rc = *brc ? 0 : snaps_reply(reply, out, n);
	if (!rc && !*brc)
		rc = set(reply, "more", json_boolean(more));
	ts_free(out);
	return rc;
}

static int m_create_from(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
			 char *why, size_t why_len)
{
	struct ts_csi_backend_vol v;
	struct ts_csi_vol_spec spec;
	const char *kind, *src;
	int rc = get_spec(req, true, &spec, why, why_len);

	if (!rc)
		rc = ts_ew_str(req, "kind", TS_EW_ID, true, &kind, why, why_len);
	if (!rc && strcmp(kind, "snapshot") && strcmp(kind, "volume")) {
		snprintf(why, why_len, "field 'kind' must be \"snapshot\" or \"volume\"");
		rc = -EINVAL;
	}
	if (!rc)
		rc = ts_ew_str(req, "source", TS_EW_ID, true, &src, why, why_len);
	if (rc || too_big(e, spec.capacity_bytes, brc))
		return rc;
	memset(&v, 0, sizeof(v));
	*brc = e->ops->create_from
		       ? e->ops->create_from(e->ctx, &spec,
					     strcmp(kind, "snapshot") ? TS_CSI_SRC_VOLUME : TS_CSI_SRC_SNAPSHOT,
					     src, &v)
		       : -EOPNOTSUPP;
	return vol_reply(reply, *brc, &v);
}

static int m_snap_delta(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
			char *why, size_t why_len)
{
	uint64_t start, max, next = UINT64_MAX, size = 0;
	struct ts_csi_range *out;
	const char *base, *target;
	size_t n = 0;
	int rc = ts_ew_str(req, "base", TS_EW_ID, false, &base, why, why_len);

	if (!rc)
		rc = ts_ew_str(req, "target", TS_EW_ID, true, &target, why, why_len);
	if (!rc)
		rc = ts_ew_u64(req, "start", TS_ENGINE_U64_MAX, false, &start, why, why_len);
	if (!rc)
		rc = ts_ew_u64(req, "max", TS_ENGINE_DELTA_MAX, true, &max, why, why_len);
	if (!rc && !max) {
		snprintf(why, why_len, "field 'max' must be 1 to %d", TS_ENGINE_DELTA_MAX);
		rc = -EINVAL;
	}
	if (rc)
		return rc;
	if (!e->ops->snap_delta) {
		*brc = -EOPNOTSUPP;
		return 0;
	}
	out = ts_calloc(max, sizeof(*out));
	if (!out)
		return -ENOMEM;
	*brc = e->ops->snap_delta(e->ctx, base, target, start, out, max, &n, &next, &size);
	if (!*brc && n > max)
		*brc = -EIO;
	if (!*brc) {
		rc = set(reply, "ranges", ts_ew_ranges_json(out, n));
		if (!rc)
			rc = set(reply, "size_bytes", json_integer((json_int_t)TS_MIN(size, TS_ENGINE_U64_MAX)));
		if (!rc)
			rc = set(reply, "done", json_boolean(next == UINT64_MAX));
		if (!rc && next != UINT64_MAX)
			rc = set(reply, "next", json_integer((json_int_t)TS_MIN(next, TS_ENGINE_U64_MAX)));
	}
	ts_free(out);
	return rc;
}

static int m_set_qos(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		     char *why, size_t why_len)
{
	const json_t *qj = json_object_get(req, "qos");
	struct ts_csi_qos q;
	const char *id;
	int rc = ts_ew_str(req, "id", TS_EW_ID, true, &id, why, why_len);

	(void)reply;
	if (!rc && !qj) {
		snprintf(why, why_len, "field 'qos' is required");
		rc = -EINVAL;
	}
	if (!rc)
		rc = ts_ew_qos_parse(qj, &q, why, why_len);
	if (!rc)
		*brc = e->ops->set_qos ? e->ops->set_qos(e->ctx, id, &q) : -EOPNOTSUPP;
	return rc;
}

static int m_qos_stats(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
		       char *why, size_t why_len)
{
	struct ts_csi_qos_stats st;
	const char *id;
	int rc = ts_ew_str(req, "id", TS_EW_ID, true, &id, why, why_len);

	if (rc)
		return rc;
	memset(&st, 0, sizeof(st));
	*brc = e->ops->qos_stats ? e->ops->qos_stats(e->ctx, id, &st) : -EOPNOTSUPP;
	return *brc ? 0 : set(reply, "stats", ts_ew_qos_stats_json(&st));
}

static int m_group_snap(struct csi_engine *e, const json_t *req, json_t *reply, int *brc,
			char *why, size_t why_len)
{
	const json_t *vj = json_object_get(req, "volumes");
	const char *vols[TS_CSI_GROUP_MAX], *name;
	struct ts_csi_backend_snap *out;
	size_t n, i;
	json_t *v;
	int rc = ts_ew_str(req, "name", TS_EW_NAME, true, &name, why, why_len);

	if (rc)
		return rc;
	if (!json_is_array(vj) || !json_array_size(vj) || json_array_size(vj) > TS_CSI_GROUP_MAX) {
		snprintf(why, why_len, "field 'volumes' must be an array of 1 to %d volume ids",
			 TS_CSI_GROUP_MAX);
		return -EINVAL;
	}
	n = json_array_size(vj);
	json_array_foreach(vj, i, v) {
		if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
		    ts_ew_check(TS_EW_ID, json_string_value(v))) {
			snprintf(why, why_len, "field 'volumes' item %zu is not a volume id", i);
			return -EINVAL;
		}
		vols[i] = json_string_value(v);
		for (size_t j = 0; j < i; j++)
			if (!strcmp(vols[j], vols[i])) {
				snprintf(why, why_len, "field 'volumes' names %s twice", vols[i]);
				return -EINVAL;
			}
	}
	if (!e->ops->group_snap_create) {
		*brc = -EOPNOTSUPP;
		return 0;
	}
	out = ts_calloc(n, sizeof(*out));
	if (!out)
		return -ENOMEM;
	*brc = e->ops->group_snap_create(e->ctx, name, vols, n, out);
	rc = *brc ? 0 : snaps_reply(reply, out, n);
	ts_free(out);
	return rc;
}

/*
 * The host's JSON text (taken, may be NULL when *brc says it failed) into
 * \p key of the reply as a value; a text that does not parse is the host's
 * bug, not the caller's: *brc -EPROTO.
 */
static int host_json(json_t *reply, const char *key, char *text, int *brc)
{
	json_error_t jerr;
	json_t *v;

	if (*brc) {
		ts_free(text);
		return 0;
	}
	v = json_loads(text, 0, &jerr);
	ts_free(text);
	if (!v) {
		*brc = -EPROTO;
		return 0;
	}
	return set(reply, key, v);
}

/* what: "group" | "tree" | "pool"; the host's JSON goes into "report" as a value */
static int m_report(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		    size_t why_len)
{
	const char *what;
	char *text = NULL;

	if (ts_ew_str(req, "what", TS_EW_NAME, true, &what, why, why_len))
		return -EINVAL;
	if (strcmp(what, "group") && strcmp(what, "tree") && strcmp(what, "pool")) {
		snprintf(why, why_len, "what: '%s' is not a report (group, tree, pool)", what);
		return -EINVAL;
	}
	*brc = e->report ? e->report(e->report_arg, what, &text) : -EOPNOTSUPP;
	return host_json(reply, "report", text, brc);
}

/* run: true lets the host heal now; the host's status goes into "heal" */
static int m_heal(struct csi_engine *e, const json_t *req, json_t *reply, int *brc, char *why,
		  size_t why_len)
{
	bool run = false;
	char *text = NULL;

	if (ts_ew_bool(req, "run", false, &run, why, why_len))
		return -EINVAL;
	*brc = e->heal ? e->heal(e->heal_arg, run, &text) : -EOPNOTSUPP;
	return host_json(reply, "heal", text, brc);
}

/* ---- the method table ---- */

#define K(...) (const char *const[]){ "group", __VA_ARGS__ NULL }
#define E(name, fn, mut, keys)                                                                  \
	static int raw_##fn(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *req,    \
			    size_t len, uint8_t **resp, size_t *resp_len)                       \
	{                                                                                       \
		return serve(d, c, req, len, resp, resp_len, keys, fn, mut);                   \
	}
E("Probe", m_probe, false, K())
E("Capacity", m_capacity, false, K())
E("Create", m_create, true, K("name", "capacity_bytes", "ec_k", "ec_m", ))
E("Find", m_find, true, K("name", ))
E("Remove", m_remove, true, K("id", ))
E("Expand", m_expand, true, K("id", "bytes", ))
E("SnapCreate", m_snap_create, true, K("volume", "name", ))
E("SnapFind", m_snap_find, true, K("name", ))
E("SnapDelete", m_snap_delete, true, K("id", ))
E("SnapList", m_snap_list, false, K("snapshot", "volume", "after", "max", ))
E("CreateFrom", m_create_from, true,
  K("name", "capacity_bytes", "ec_k", "ec_m", "kind", "source", ))
E("SnapDelta", m_snap_delta, false, K("base", "target", "start", "max", ))
E("SetQos", m_set_qos, true, K("id", "qos", ))
E("QosStats", m_qos_stats, false, K("id", ))
E("GroupSnapCreate", m_group_snap, true, K("name", "volumes", ))
E("Report", m_report, false, K("what", ))
E("Heal", m_heal, false, K("run", ))
#undef E
#undef K

#define M(name, fn) { TS_ENGINE_PREFIX name, NULL, NULL, NULL, raw_##fn }

const struct csi_method csi_engine_methods[] = {
	M("Probe", m_probe),
	M("Capacity", m_capacity),
	M("Create", m_create),
	M("Find", m_find),
	M("Remove", m_remove),
	M("Expand", m_expand),
	M("SnapCreate", m_snap_create),
	M("SnapFind", m_snap_find),
	M("SnapDelete", m_snap_delete),
	M("SnapList", m_snap_list),
	M("CreateFrom", m_create_from),
	M("SnapDelta", m_snap_delta),
	M("SetQos", m_set_qos),
	M("QosStats", m_qos_stats),
	M("GroupSnapCreate", m_group_snap),
	M("Report", m_report),
	M("Heal", m_heal),
};
const size_t csi_engine_method_count = TS_ARRAY_SIZE(csi_engine_methods);

/* ---- setup ---- */

static int engine_new(const struct ts_engine_opts *o, struct csi_engine **out)
{
	struct csi_engine *e;

	*out = NULL;
	if (!o || !o->ops || !o->group || ts_ew_check(TS_EW_GROUP, o->group) || !o->ops->create ||
	    !o->ops->remove || !o->ops->expand || !o->ops->capacity)
		return -EINVAL;
	e = ts_calloc(1, sizeof(*e));
	if (!e)
		return -ENOMEM;
	pthread_mutex_init(&e->lock, NULL);
	strcpy(e->group, o->group);
	e->ops = o->ops;
	e->ctx = o->ctx;
	e->max_bytes = o->max_volume_bytes ? o->max_volume_bytes : ENGINE_MAX_BYTES_DEFAULT;
	e->report = o->report;
	e->report_arg = o->report_arg;
	e->heal = o->heal;
	e->heal_arg = o->heal_arg;
	*out = e;
	return 0;
}

void csi_engine_free(struct csi_engine *e)
{
	if (!e)
		return;
	pthread_mutex_destroy(&e->lock);
	ts_free(e);
}

int ts_csi_driver_set_engine(struct ts_csi_driver *d, const struct ts_engine_opts *o)
{
	if (!d || d->engine)
		return -EINVAL;
	return engine_new(o, &d->engine);
}

int ts_engine_server_start(const struct ts_engine_opts *o, const char *endpoint, unsigned workers,
			   struct ts_engine_server **out)
{
	const struct csi_method_table tables[] = { { csi_engine_methods, csi_engine_method_count } };
	/* A driver object that carries the engine and nothing else: no CSI service is registered. */
	struct ts_csi_config cfg = { .state_dir = "/", .controller = false, .node = false };
	struct ts_engine_server *s;
	int rc;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!o || !o->ops || !endpoint)
		return -EINVAL;
	s = ts_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rc = ts_csi_driver_create(&cfg, o->ops, o->ctx, NULL, NULL, &s->d);
	if (!rc)
		rc = ts_csi_driver_set_engine(s->d, o);
	if (!rc)
		rc = csi_server_start(s->d, endpoint, workers, tables, TS_ARRAY_SIZE(tables), false,
				      &s->srv, &s->port);
	if (rc) {
		ts_csi_driver_destroy(s->d);
		ts_free(s);
		return rc;
	}
	ts_log(TS_LOG_INFO, "engine", "serving group=%s backend=%s endpoint=%s", o->group,
	       o->ops->name, endpoint);
	*out = s;
	return 0;
}

int ts_engine_server_port(const struct ts_engine_server *s)
{
	return s ? s->port : 0;
}

void ts_engine_server_stop(struct ts_engine_server *s, unsigned grace_ms)
{
	if (!s)
		return;
	ts_csi_server_stop(s->srv, grace_ms);
	ts_csi_driver_destroy(s->d);
	ts_free(s);
}
