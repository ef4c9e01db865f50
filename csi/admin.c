/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The admin service (`/tessera.admin.v1.Admin/...`), served by the CSI
 * server loop beside Identity, Controller and Node.
 *
 * Why JSON bodies rather than a second .proto: the only client is the
 * `tessera` CLI, whose `-o json` output is exactly these bodies, and the
 * messages are small and read by people; jansson already is a dependency.
 * A method is a `raw` entry of the method table (csi_priv.h): csi_dispatch()
 * hands it the request bytes and it returns the response bytes. Errors are
 * gRPC status codes through csi_fail(), as for CSI.
 *
 * Volume create and delete go through the CSI Controller's handlers (built
 * as CSI requests, dispatched on the same call), so validation, the backend
 * call, the metadata store and its locking are exactly those of CSI: a
 * volume made here is a CSI volume and the other way round. Lookups and
 * lists read the metadata store. ClusterStatus asks the data plane through
 * d->admin_ops (csi/admin.h).
 *
 * Memory: request JSON is freed before return; the response is one
 * ts_malloc'd buffer owned by the caller (the server loop).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#define LIST_BATCH 64

int ts_csi_driver_set_admin(struct ts_csi_driver *d, const struct ts_admin_ops *ops, void *ctx)
{
	if (!d || !ops || !ops->status || !d->controller)
		return -EINVAL;
	d->admin_ops = ops;
	d->admin_ctx = ctx;
	return 0;
}

/* ---- JSON in and out ---- */

static json_t *parse_req(struct csi_call *c, const uint8_t *req, size_t len)
{
	json_error_t jerr;
	json_t *j;

	if (len == 0)
		return json_object();
	j = json_loadb((const char *)req, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!j) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "request is not JSON: %s", jerr.text);
		return NULL;
	}
	if (!json_is_object(j)) {
		json_decref(j);
		csi_fail(c, CSI_INVALID_ARGUMENT, "request must be a JSON object");
		return NULL;
	}
	return j;
}

/* Serialize \p j (consumed) into *resp. 0 or -1 with a status. */
static int reply(struct csi_call *c, json_t *j, uint8_t **resp, size_t *resp_len)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	int rc = -1;

	json_decref(j);
	if (!s)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	*resp_len = strlen(s);
	*resp = ts_malloc(*resp_len + 1);
	if (*resp) {
		memcpy(*resp, s, *resp_len + 1);
		rc = 0;
	} else {
		*resp_len = 0;
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	}
	free(s);
	return rc;
}

/* A string field: NULL when absent; -1 (with status) when not a string. */
static int get_str(struct csi_call *c, json_t *req, const char *key, const char **out)
{
	json_t *v = json_object_get(req, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "field '%s' must be a string", key);
	*out = json_string_value(v);
	return 0;
}

static int need_controller(struct ts_csi_driver *d, struct csi_call *c)
{
	if (!d->controller || !d->st)
		return csi_fail(c, CSI_UNIMPLEMENTED, "this endpoint does not run the controller");
	return 0;
}

/* ---- volumes ---- */

/* The default erasure code (the first array group's), or 0+0 when unknown. */
static void default_ec(struct ts_csi_driver *d, uint32_t *k, uint32_t *m)
{
	struct ts_admin_status *st;

	*k = *m = 0;
	if (!d->admin_ops)
		return;
	st = ts_calloc(1, sizeof(*st));
	if (st && d->admin_ops->status(d->admin_ctx, st) == 0 && st->nagrps > 0) {
		*k = st->agrps[0].k;
		*m = st->agrps[0].m;
	}
	ts_free(st);
}

/* The volume's QoS limits (only those set) and, when the engine has them, its counters. */
static json_t *qos_json(struct ts_csi_driver *d, const struct ts_csi_volume *v)
{
	const struct ts_csi_qos *q = &v->qos;
	const struct {
		const char *key;
		uint64_t val;
	} f[] = { { "iopsLimit", q->iops },	      { "readIopsLimit", q->read_iops },
		  { "writeIopsLimit", q->write_iops }, { "bpsLimit", q->bps },
		  { "readBpsLimit", q->read_bps },     { "writeBpsLimit", q->write_bps },
		  { "burstMs", q->burst_ms },	      { "iopsReservation", q->reserve_iops } };
	struct ts_csi_qos_stats st;
	json_t *j = json_object();

	for (size_t i = 0; j && i < TS_ARRAY_SIZE(f); i++)
		if (f[i].val)
			json_object_set_new(j, f[i].key, json_integer((json_int_t)f[i].val));
	if (j && d->be->qos_stats && d->be->qos_stats(d->be_ctx, v->id, &st) == 0)
		json_object_set_new(
			j, "stats",
			json_pack("{s:I, s:I, s:I, s:I, s:I}", "admitted", (json_int_t)st.admitted,
				  "delayed", (json_int_t)st.delayed, "queued_now",
				  (json_int_t)st.queued_now, "delay_ms_total",
				  (json_int_t)(st.delay_ns_total / 1000000), "reservation_cap_iops",
				  (json_int_t)st.dyn_cap_iops));
	return j;
}

static json_t *vol_json(struct ts_csi_driver *d, const struct ts_csi_volume *v, uint32_t dk,
			uint32_t dm)
{
	uint32_t k = v->ec_k || v->ec_m ? v->ec_k : dk, m = v->ec_k || v->ec_m ? v->ec_m : dm;
	char ec[24] = "";
	json_t *j;

	if (k)
		snprintf(ec, sizeof(ec), "%" PRIu32 "+%" PRIu32, k, m);
	j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s}", "id", v->id, "name", v->name, "size_bytes",
		      (json_int_t)v->capacity_bytes, "ec", ec, "access", v->block ? "block" : "mount",
		      "fs_type", v->fs_type);
	if (j)
		json_object_set_new(j, "qos", qos_json(d, v));
	if (j && strncmp(v->attach, "iscsi://", 8) == 0)
		json_object_set_new(j, "iscsi_url", json_string(v->attach));
	else if (j)
		json_object_set_new(j, "attach", json_string(v->attach));
	return j;
}

/*
 * Resolve "volume" (an id or a name) to its record: the id is tried first,
 * then the name. -1 with NOT_FOUND naming it when neither matches.
 */
static int resolve(struct ts_csi_driver *d, struct csi_call *c, json_t *req,
		   struct ts_csi_volume *out)
{
	const char *ref;
	int rc;

	if (get_str(c, req, "volume", &ref))
		return -1;
	if (!ref || !ref[0])
		return csi_fail(c, CSI_INVALID_ARGUMENT, "field 'volume' (id or name) is required");
	if (strlen(ref) > TS_CSI_NAME_MAX)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume '%.40s...' is longer than %d bytes",
				ref, TS_CSI_NAME_MAX);
	rc = d->st->get(d->st_ctx, ref, out);
	if (rc == -ENOENT)
		rc = d->st->get_by_name(d->st_ctx, ref, out);
	if (rc == -ENOENT)
		return csi_fail(c, CSI_NOT_FOUND, "volume '%s' not found", ref);
	if (rc < 0)
		return csi_fail_err(c, rc, "metadata store");
	return 0;
}

/* Pack \p msg, dispatch it to the CSI method \p path on this call. */
static int csi_call_method(struct ts_csi_driver *d, struct csi_call *c, const char *path,
			   const ProtobufCMessage *msg, ProtobufCMessage **out)
{
	const struct csi_method *m =
		csi_method_in(csi_controller_methods, csi_controller_method_count, path);
	size_t n = protobuf_c_message_get_packed_size(msg), resp_len = 0;
	uint8_t *buf = ts_malloc(n ? n : 1), *resp = NULL;
	int rc;

	*out = NULL;
	if (!buf)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	protobuf_c_message_pack(msg, buf);
	rc = csi_dispatch(d, m, c, buf, n, &resp, &resp_len);
	ts_free(buf);
	if (rc)
		return -1;
	*out = protobuf_c_message_unpack(m->resp_desc, NULL, resp_len, resp);
	ts_free(resp);
	if (!*out)
		return csi_fail(c, CSI_INTERNAL, "cannot decode the %s response", path);
	return 0;
}

static int volume_create(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
			 size_t req_len, uint8_t **resp, size_t *resp_len)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange range = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability cap = CSI__V1__VOLUME_CAPABILITY__INIT;
	Csi__V1__VolumeCapability__BlockVolume blk = CSI__V1__VOLUME_CAPABILITY__BLOCK_VOLUME__INIT;
	Csi__V1__VolumeCapability__AccessMode mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry ec_e =
		CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry *params[1] = { &ec_e };
	Csi__V1__VolumeCapability *caps[1] = { &cap };
	ProtobufCMessage *out = NULL;
	struct ts_csi_volume v;
	const char *name, *ec;
	json_t *req, *size;
	uint32_t dk, dm;
	int rc = -1;

	if (need_controller(d, c) || !(req = parse_req(c, reqb, req_len)))
		return -1;
	if (get_str(c, req, "name", &name) || get_str(c, req, "ec", &ec))
		goto out;
	if (!name || !name[0]) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "field 'name' is required");
		goto out;
	}
	size = json_object_get(req, "size_bytes");
	if (!json_is_integer(size) || json_integer_value(size) <= 0) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "field 'size_bytes' must be a positive integer");
		goto out;
	}
	if (csi_check_name(c, "name", name))
		goto out;
	if ((uint64_t)json_integer_value(size) > d->max_volume_bytes) {
		csi_fail(c, CSI_OUT_OF_RANGE, "size %" PRIu64 " bytes exceeds the largest volume (%" PRIu64 " bytes)",
			 (uint64_t)json_integer_value(size), d->max_volume_bytes);
		goto out;
	}
	/* A CLI create of a name in use is a mistake, not a retry: say so. */
	if (d->st->get_by_name(d->st_ctx, name, &v) == 0) {
		csi_fail(c, CSI_ALREADY_EXISTS, "volume '%s' already exists (id %s)", name, v.id);
		goto out;
	}
	/* The pool has one erasure code; name the mismatch rather than "invalid argument". */
	default_ec(d, &dk, &dm);
	if (ec && ec[0] && dk) {
		unsigned k, m;
		char tail;

		if (sscanf(ec, "%u+%u%c", &k, &m, &tail) == 2 && (k != dk || m != dm)) {
			csi_fail(c, CSI_INVALID_ARGUMENT,
				 "erasure code %s is not available: this cluster's array group is %" PRIu32
				 "+%" PRIu32,
				 ec, dk, dm);
			goto out;
		}
	}
	range.required_bytes = json_integer_value(size);
	mode.mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
	cap.access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
	cap.block = &blk;
	cap.access_mode = &mode;
	r.name = (char *)name;
	r.capacity_range = &range;
	r.n_volume_capabilities = 1;
	r.volume_capabilities = caps;
	if (ec && ec[0]) {
		ec_e.key = "ec";
		ec_e.value = (char *)ec;
		r.n_parameters = 1;
		r.parameters = params;
	}
	if (csi_call_method(d, c, "/csi.v1.Controller/CreateVolume", &r.base, &out))
		goto out;
	rc = d->st->get(d->st_ctx, ((Csi__V1__CreateVolumeResponse *)out)->volume->volume_id, &v);
	if (rc < 0) {
		csi_fail_err(c, rc, "metadata store");
		rc = -1;
		goto out;
	}
	ts_log(TS_LOG_INFO, "admin", "volume created name=%s id=%s size=%" PRIu64, v.name, v.id,
	       v.capacity_bytes);
	rc = reply(c, vol_json(d, &v, dk, dm), resp, resp_len);
out:
	if (out)
		protobuf_c_message_free_unpacked(out, NULL);
	json_decref(req);
	return rc;
}

static int volume_delete(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
			 size_t req_len, uint8_t **resp, size_t *resp_len)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	struct ts_csi_volume v;
	json_t *req;
	int rc = -1;

	if (need_controller(d, c) || !(req = parse_req(c, reqb, req_len)))
		return -1;
	if (resolve(d, c, req, &v))
		goto out;
	r.volume_id = v.id;
	if (csi_call_method(d, c, "/csi.v1.Controller/DeleteVolume", &r.base, &out))
		goto out;
	ts_log(TS_LOG_INFO, "admin", "volume deleted name=%s id=%s", v.name, v.id);
	rc = reply(c, json_pack("{s:s, s:s}", "id", v.id, "name", v.name), resp, resp_len);
out:
	if (out)
		protobuf_c_message_free_unpacked(out, NULL);
	json_decref(req);
	return rc;
}

/* {volume, parameters: {key: "value"}} -> ControllerModifyVolume; answers the volume. */
static int volume_modify(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
			 size_t req_len, uint8_t **resp, size_t *resp_len)
{
	Csi__V1__ControllerModifyVolumeRequest r = CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__INIT;
	Csi__V1__ControllerModifyVolumeRequest__MutableParametersEntry e[16], *ep[16];
	ProtobufCMessage *out = NULL;
	struct ts_csi_volume v;
	json_t *req, *params, *val;
	const char *key;
	uint32_t dk, dm;
	size_t n = 0;
	int rc = -1;

	if (need_controller(d, c) || !(req = parse_req(c, reqb, req_len)))
		return -1;
	if (resolve(d, c, req, &v))
		goto out;
	params = json_object_get(req, "parameters");
	if (!json_is_object(params) || !json_object_size(params) ||
	    json_object_size(params) > TS_ARRAY_SIZE(e)) {
		csi_fail(c, CSI_INVALID_ARGUMENT,
			 "field 'parameters' must be an object of 1 to %zu string values",
			 TS_ARRAY_SIZE(e));
		goto out;
	}
	json_object_foreach(params, key, val) {
		if (!json_is_string(val)) {
			csi_fail(c, CSI_INVALID_ARGUMENT, "parameter '%.64s' must be a string", key);
			goto out;
		}
		csi__v1__controller_modify_volume_request__mutable_parameters_entry__init(&e[n]);
		e[n].key = (char *)key;
		e[n].value = (char *)json_string_value(val);
		ep[n] = &e[n];
		n++;
	}
	r.volume_id = v.id;
	r.mutable_parameters = ep;
	r.n_mutable_parameters = n;
	if (csi_call_method(d, c, "/csi.v1.Controller/ControllerModifyVolume", &r.base, &out))
		goto out;
	rc = d->st->get(d->st_ctx, v.id, &v);
	if (rc < 0) {
		csi_fail_err(c, rc, "metadata store");
		rc = -1;
		goto out;
	}
	ts_log(TS_LOG_INFO, "admin", "volume modified name=%s id=%s", v.name, v.id);
	default_ec(d, &dk, &dm);
	rc = reply(c, vol_json(d, &v, dk, dm), resp, resp_len);
out:
	if (out)
		protobuf_c_message_free_unpacked(out, NULL);
	json_decref(req);
	return rc;
}

static int volume_get(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
		      size_t req_len, uint8_t **resp, size_t *resp_len)
{
	struct ts_csi_volume v;
	uint32_t dk, dm;
	json_t *req;
	int rc = -1;

	if (need_controller(d, c) || !(req = parse_req(c, reqb, req_len)))
		return -1;
	if (resolve(d, c, req, &v) == 0) {
		default_ec(d, &dk, &dm);
		rc = reply(c, vol_json(d, &v, dk, dm), resp, resp_len);
	}
	json_decref(req);
	return rc;
}

static int volume_list(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
		       size_t req_len, uint8_t **resp, size_t *resp_len)
{
	struct ts_csi_volume *batch = NULL;
	char after[TS_CSI_ID_MAX + 1] = "";
	json_t *req, *out = NULL, *arr;
	uint32_t dk, dm;
	bool more = true;
	size_t n;
	int rc = -1;

	if (need_controller(d, c) || !(req = parse_req(c, reqb, req_len)))
		return -1;
	batch = ts_calloc(LIST_BATCH, sizeof(*batch));
	out = json_pack("{s:[]}", "volumes");
	arr = json_object_get(out, "volumes"); /* borrowed from out */
	if (!batch || !arr) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	default_ec(d, &dk, &dm);
	while (more) {
		rc = d->st->list(d->st_ctx, after, batch, LIST_BATCH, &n, &more);
		if (rc < 0) {
			csi_fail_err(c, rc, "metadata store");
			rc = -1;
			goto out;
		}
		rc = -1;
		for (size_t i = 0; i < n; i++)
			if (json_array_append_new(arr, vol_json(d, &batch[i], dk, dm))) {
				csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
				goto out;
			}
		if (n == 0)
			break;
		snprintf(after, sizeof(after), "%s", batch[n - 1].id);
	}
	rc = reply(c, out, resp, resp_len);
	out = NULL;
out:
	json_decref(out);
	json_decref(req);
	ts_free(batch);
	return rc;
}

/* ---- cluster ---- */

/* The data plane's word for the group's state, or one derived from the slots. */
static const char *agrp_state(const struct ts_admin_agrp *g, unsigned *live)
{
	*live = 0;
	for (uint32_t i = 0; i < g->k + g->m && i < TS_ADMIN_MAX_SLOTS; i++)
		*live += g->slots[i].live;
	if (g->state[0])
		return g->state;
	if (*live == g->k + g->m)
		return "healthy";
	return *live >= g->k ? "degraded" : "failed";
}

static json_t *node_json(const struct ts_admin_node *n)
{
	json_t *j = json_pack("{s:I, s:s, s:I, s:I, s:I, s:I, s:I}", "id", (json_int_t)n->id,
			      "state", n->up ? "up" : "down", "disks", (json_int_t)n->disks,
			      "extents", (json_int_t)n->extents, "free_extents",
			      (json_int_t)n->free_extents, "extent_bytes",
			      (json_int_t)n->extent_bytes, "free_bytes", (json_int_t)n->free_bytes);

	if (j && n->portal[0] && json_object_set_new(j, "portal", json_string(n->portal))) {
		json_decref(j);
		return NULL;
	}
	return j;
}

static json_t *agrp_json(const struct ts_admin_agrp *g)
{
	json_t *members = json_array();
	unsigned live;
	const char *state = agrp_state(g, &live);

	for (uint32_t s = 0; members && s < g->k + g->m && s < TS_ADMIN_MAX_SLOTS; s++)
		if (json_array_append_new(members,
					  json_pack("{s:I, s:I, s:b}", "slot", (json_int_t)s, "node",
						    (json_int_t)g->slots[s].node, "live",
						    g->slots[s].live))) {
			json_decref(members);
			return NULL;
		}
	return json_pack("{s:s, s:I, s:I, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:I, "
			 "s:I, s:I, s:f, s:I, s:I, s:o*}",
			 "uuid", g->uuid, "k", (json_int_t)g->k, "m", (json_int_t)g->m, "state",
			 state, "live_members", (json_int_t)live, "generation",
			 (json_int_t)g->generation, "size_bytes", (json_int_t)g->size_bytes,
			 "degraded_stripes", (json_int_t)g->degraded_stripes, "replicated_bytes",
			 (json_int_t)g->replicated_bytes, "unreplicated_bytes",
			 (json_int_t)g->unreplicated_bytes, "heal_total_bytes",
			 (json_int_t)g->heal_total_bytes, "heal_done_bytes",
			 (json_int_t)g->heal_done_bytes, "heal_rate_mbps", g->heal_rate_mbps,
			 "heals", (json_int_t)g->heals, "rebuilds", (json_int_t)g->rebuilds,
			 "rebuild_bytes", (json_int_t)g->rebuild_bytes, "rebuild_rate_mbps",
			 g->rebuild_rate_mbps, "serving_node", (json_int_t)g->serving_node, "epoch",
			 (json_int_t)g->epoch, "members", members);
}

static json_t *status_json(const struct ts_admin_status *st)
{
	json_t *root = json_object(), *nodes = json_array(), *agrps = json_array(), *pool;
	bool ok = root && nodes && agrps;

	if (root) {
		json_object_set(root, "nodes", nodes);
		json_object_set(root, "array_groups", agrps);
	}
	for (size_t i = 0; ok && i < st->nnodes; i++)
		ok = !json_array_append_new(nodes, node_json(&st->nodes[i]));
	for (size_t i = 0; ok && i < st->nagrps; i++)
		ok = !json_array_append_new(agrps, agrp_json(&st->agrps[i]));
	pool = json_pack("{s:I, s:I, s:I, s:I}", "total_bytes", (json_int_t)st->vpool.total_bytes,
			 "used_bytes", (json_int_t)(st->vpool.total_bytes - st->vpool.free_bytes),
			 "free_bytes", (json_int_t)st->vpool.free_bytes, "volumes",
			 (json_int_t)st->vpool.volumes);
	if (ok && pool)
		ok = !json_object_set_new(root, "volume_pool", pool);
	else
		ok = false, json_decref(pool);
	json_decref(nodes);
	json_decref(agrps);
	if (!ok) {
		json_decref(root);
		return NULL;
	}
	return root;
}

static int cluster_status(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
			  size_t req_len, uint8_t **resp, size_t *resp_len)
{
	struct ts_admin_status *st;
	json_t *req;
	int rc;

	if (!(req = parse_req(c, reqb, req_len)))
		return -1;
	json_decref(req);
	if (!d->admin_ops)
		return csi_fail(c, CSI_UNAVAILABLE,
				"this endpoint serves no data plane status (it is not `tessera dev` or `tessera controller`)");
	st = ts_calloc(1, sizeof(*st));
	if (!st)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	rc = d->admin_ops->status(d->admin_ctx, st);
	if (rc < 0)
		rc = csi_fail_err(c, rc, "cluster status");
	else
		rc = reply(c, status_json(st), resp, resp_len);
	ts_free(st);
	return rc;
}

static int snapshot_tree(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *reqb,
			 size_t req_len, uint8_t **resp, size_t *resp_len)
{
	json_t *req, *layers;
	json_error_t jerr;
	char *text = NULL;
	int rc;

	if (!(req = parse_req(c, reqb, req_len)))
		return -1;
	json_decref(req);
	if (!d->admin_ops || !d->admin_ops->tree)
		return csi_fail(c, CSI_UNAVAILABLE,
				"this endpoint serves no snapshot tree (it is not `tessera dev` or `tessera controller`)");
	rc = d->admin_ops->tree(d->admin_ctx, &text);
	if (rc < 0)
		return csi_fail_err(c, rc, "snapshot tree");
	layers = json_loads(text, 0, &jerr);
	ts_free(text);
	if (!json_is_array(layers)) {
		json_decref(layers);
		return csi_fail(c, CSI_INTERNAL, "snapshot tree: malformed");
	}
	return reply(c, json_pack("{s:o}", "layers", layers), resp, resp_len);
}

#define A(name, fn) { TS_ADMIN_PREFIX name, NULL, NULL, NULL, fn }

const struct csi_method csi_admin_methods[] = {
	A("ClusterStatus", cluster_status), A("VolumeCreate", volume_create),
	A("VolumeList", volume_list),       A("VolumeGet", volume_get),
	A("VolumeDelete", volume_delete),   A("SnapshotTree", snapshot_tree),
	A("VolumeModify", volume_modify),
};
const size_t csi_admin_method_count = TS_ARRAY_SIZE(csi_admin_methods);
