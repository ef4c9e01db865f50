/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI GroupController service: volume group snapshots (CSI 1.11+).
 *
 * CreateVolumeGroupSnapshot asks the backend for one cut over every source
 * volume (backend group_snap_create: hold every member's engine still
 * behind one barrier, snapshot each, release; see snapshots/group) and then
 * records the group in the metadata store. The group id is derived from the
 * name ("gs-" + 32 hex of its SHA-256), and the backend's cut is itself
 * idempotent by name, so a crash between the cut and the record is repaired
 * by the CO's retry: the backend returns the complete earlier cut (or
 * removes a partial one and cuts again) and the record is written.
 *
 * Idempotency: the same name with the same set of source volumes (in any
 * order) answers the recorded group; another set is ALREADY_EXISTS.
 * Parameters: only keys under "csi.storage.k8s.io/" (the sidecars' own) are
 * accepted. At most TS_CSI_GROUP_MAX volumes; a volume listed twice is
 * INVALID_ARGUMENT.
 *
 * Members are ordinary snapshots (restorable, listed by ListSnapshots with
 * their group_snapshot_id) but are deleted with their group only:
 * DeleteSnapshot on one is FAILED_PRECONDITION (controller.c), as the spec
 * allows for a snapshot that reports a group_snapshot_id.
 * DeleteVolumeGroupSnapshot deletes the members, then the record; it is OK
 * for an unknown id. Get and Delete check a non-empty snapshot_ids list
 * against the record (INVALID_ARGUMENT on a mismatch).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

static int need_groups(struct ts_csi_driver *d, struct csi_call *c)
{
	if (csi_need_controller(d, c))
		return -1;
	if (!d->be->group_snap_create || !d->be->snap_delete || !d->st->group_put)
		return csi_fail(c, CSI_UNIMPLEMENTED, "backend %s has no group snapshots",
				d->be->name);
	return 0;
}

static void group_id(const char *name, char out[TS_CSI_ID_MAX + 1])
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	int n = snprintf(out, TS_CSI_ID_MAX + 1, "gs-");

	SHA256((const unsigned char *)name, strlen(name), md);
	for (int i = 0; i < 16; i++)
		n += snprintf(out + n, (size_t)(TS_CSI_ID_MAX + 1 - n), "%02x", md[i]);
}

/* Is \p id one of \p ids[0..n)? */
static bool in_list(char *const *ids, size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(ids[i], id))
			return true;
	return false;
}

/* The record's members equal \p ids as a set (ids has no duplicates). */
static bool same_set(const struct ts_csi_group *g, bool snaps, char *const *ids, size_t n)
{
	if (g->n != n)
		return false;
	for (uint32_t i = 0; i < g->n; i++)
		if (!in_list(ids, n, snaps ? g->snap[i] : g->vol[i]))
			return false;
	return true;
}

static int check_unique(struct csi_call *c, const char *field, char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (csi_check_id(c, field, ids[i]))
			return -1;
		if (in_list(ids, i, ids[i]))
			return csi_fail(c, CSI_INVALID_ARGUMENT, "%s: %s is listed twice", field,
					ids[i]);
	}
	return 0;
}

/* The VolumeGroupSnapshot message of a record, members as the backend has them now. */
static Csi__V1__VolumeGroupSnapshot *group_msg(struct ts_csi_driver *d, struct csi_call *c,
					       const struct ts_csi_group *g)
{
	Csi__V1__VolumeGroupSnapshot *m = csi_alloc(c, sizeof(*m));
	Google__Protobuf__Timestamp *t = csi_alloc(c, sizeof(*t));
	Csi__V1__Snapshot **snaps = csi_alloc(c, (g->n ? g->n : 1) * sizeof(*snaps));
	bool ready = true;

	if (!m || !t || !snaps) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	csi__v1__volume_group_snapshot__init(m);
	google__protobuf__timestamp__init(t);
	for (uint32_t i = 0; i < g->n; i++) {
		struct ts_csi_backend_snap s;
		size_t n = 0;
		bool more = false;
		int rc = d->be->snap_list(d->be_ctx, g->snap[i], NULL, NULL, &s, 1, &n, &more);

		if (rc) {
			csi_fail_err(c, rc, "backend snapshot list");
			return NULL;
		}
		if (!n) {
			csi_fail(c, CSI_INTERNAL, "group snapshot %s: member snapshot %s is missing",
				 g->id, g->snap[i]);
			return NULL;
		}
		ready = ready && s.ready;
		snaps[i] = csi_snap_msg(c, &s, g->id);
		if (!snaps[i]) {
			csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
			return NULL;
		}
	}
	t->seconds = (int64_t)(g->ctime_ns / 1000000000ull);
	t->nanos = (int32_t)(g->ctime_ns % 1000000000ull);
	m->group_snapshot_id = csi_strdup(c, g->id);
	m->snapshots = snaps;
	m->n_snapshots = g->n;
	m->creation_time = t;
	m->ready_to_use = ready;
	if (!m->group_snapshot_id) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		return NULL;
	}
	return m;
}

static int create_group(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			void *respp)
{
	const Csi__V1__CreateVolumeGroupSnapshotRequest *req = reqp;
	Csi__V1__CreateVolumeGroupSnapshotResponse *resp = respp;
	struct ts_csi_backend_snap *out = NULL;
	const char *vols[TS_CSI_GROUP_MAX];
	struct ts_csi_group g;
	int rc;

	if (need_groups(d, c) || csi_check_name(c, "name", req->name))
		return -1;
	if (!req->n_source_volume_ids)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "source_volume_ids is required");
	if (req->n_source_volume_ids > TS_CSI_GROUP_MAX)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"source_volume_ids: %zu volumes, at most %d in one group snapshot",
				req->n_source_volume_ids, TS_CSI_GROUP_MAX);
	if (check_unique(c, "source_volume_ids", req->source_volume_ids, req->n_source_volume_ids))
		return -1;
	for (size_t i = 0; i < req->n_parameters; i++) {
		const struct csi_kv *kv = (const struct csi_kv *)req->parameters[i];

		if (!kv->key || strncmp(kv->key, "csi.storage.k8s.io/", 19))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"unknown group snapshot parameter '%.64s' (none are supported)",
					kv->key ? kv->key : "");
	}
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->group_get_by_name(d->st_ctx, req->name, &g);
	if (rc == 0) {
		if (!same_set(&g, false, req->source_volume_ids, req->n_source_volume_ids)) {
			rc = csi_fail(c, CSI_ALREADY_EXISTS,
				      "group snapshot '%s' exists as %s with other source volumes",
				      req->name, g.id);
			goto out;
		}
		goto reply;
	}
	if (rc != -ENOENT) {
		rc = csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	for (size_t i = 0; i < req->n_source_volume_ids; i++) {
		struct ts_csi_volume v;

		rc = d->st->get(d->st_ctx, req->source_volume_ids[i], &v);
		if (rc) {
			rc = rc == -ENOENT ? csi_fail(c, CSI_NOT_FOUND,
						      "source_volume_ids: volume %s does not exist",
						      req->source_volume_ids[i])
					   : csi_fail_err(c, rc, "metadata store lookup");
			goto out;
		}
		vols[i] = req->source_volume_ids[i];
	}
	rc = csi_check_live(c);
	if (rc)
		goto out;
	out = ts_calloc(req->n_source_volume_ids, sizeof(*out));
	if (!out) {
		rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	rc = d->be->group_snap_create(d->be_ctx, req->name, vols, req->n_source_volume_ids, out);
	if (rc == -ENOENT) {
		rc = csi_fail(c, CSI_NOT_FOUND, "source_volume_ids: a volume does not exist");
		goto out;
	}
	if (rc == -ETIMEDOUT) {
		rc = csi_fail(c, CSI_UNAVAILABLE,
			      "group snapshot '%s': the volumes could not be held still in time; nothing was kept, retry",
			      req->name);
		goto out;
	}
	if (rc) {
		rc = csi_fail_err(c, rc, "backend group snapshot");
		goto out;
	}
	memset(&g, 0, sizeof(g));
	group_id(req->name, g.id);
	snprintf(g.name, sizeof(g.name), "%s", req->name);
	g.n = (uint32_t)req->n_source_volume_ids;
	g.ctime_ns = out[0].ctime_ns;
	for (uint32_t i = 0; i < g.n; i++) {
		snprintf(g.vol[i], sizeof(g.vol[i]), "%s", vols[i]);
		snprintf(g.snap[i], sizeof(g.snap[i]), "%s", out[i].id);
		g.ctime_ns = TS_MIN(g.ctime_ns, out[i].ctime_ns);
	}
	rc = d->st->group_put(d->st_ctx, &g);
	if (rc) {
		/* The cut stays in the backend; the CO's retry finds it and records it. */
		rc = csi_fail_err(c, rc, "metadata store write");
		goto out;
	}
	ts_log(TS_LOG_INFO, "csi", "group snapshot created id=%s name=%s members=%u", g.id, g.name,
	       g.n);
reply:
	resp->group_snapshot = group_msg(d, c, &g);
	rc = resp->group_snapshot ? 0 : -1;
out:
	pthread_mutex_unlock(&d->ctl_lock);
	ts_free(out);
	return rc;
}

/* Look a group up and check the request's snapshot_ids against it. 1 = found, 0 = none. */
static int find_group(struct ts_csi_driver *d, struct csi_call *c, const char *id,
		      char *const *snaps, size_t n, struct ts_csi_group *g)
{
	int rc = d->st->group_get(d->st_ctx, id, g);

	if (rc == -ENOENT)
		return 0;
	if (rc)
		return csi_fail_err(c, rc, "metadata store lookup");
	if (n && (check_unique(c, "snapshot_ids", snaps, n) || !same_set(g, true, snaps, n)))
		return c->code ? -1
			       : csi_fail(c, CSI_INVALID_ARGUMENT,
					  "snapshot_ids do not match the members of group snapshot %s",
					  id);
	return 1;
}

static int delete_group(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			void *respp)
{
	const Csi__V1__DeleteVolumeGroupSnapshotRequest *req = reqp;
	struct ts_csi_group g;
	int rc;

	(void)respp;
	if (need_groups(d, c) || csi_check_id(c, "group_snapshot_id", req->group_snapshot_id))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	rc = find_group(d, c, req->group_snapshot_id, req->snapshot_ids, req->n_snapshot_ids, &g);
	if (rc <= 0)
		goto out; /* error, or already gone: OK */
	for (uint32_t i = 0; i < g.n; i++) {
		rc = d->be->snap_delete(d->be_ctx, g.snap[i]);
		if (rc) {
			rc = csi_fail_err(c, rc, "backend snapshot delete");
			goto out;
		}
	}
	rc = d->st->group_del(d->st_ctx, g.id);
	if (rc && rc != -ENOENT) {
		rc = csi_fail_err(c, rc, "metadata store delete");
		goto out;
	}
	rc = 0;
	ts_log(TS_LOG_INFO, "csi", "group snapshot deleted id=%s name=%s", g.id, g.name);
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int get_group(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__GetVolumeGroupSnapshotRequest *req = reqp;
	Csi__V1__GetVolumeGroupSnapshotResponse *resp = respp;
	struct ts_csi_group g;
	int rc;

	if (need_groups(d, c) || csi_check_id(c, "group_snapshot_id", req->group_snapshot_id))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	rc = find_group(d, c, req->group_snapshot_id, req->snapshot_ids, req->n_snapshot_ids, &g);
	if (rc == 0)
		rc = csi_fail(c, CSI_NOT_FOUND, "group snapshot %s does not exist",
			      req->group_snapshot_id);
	else if (rc > 0)
		rc = (resp->group_snapshot = group_msg(d, c, &g)) ? 0 : -1;
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int get_capabilities(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			    void *respp)
{
	Csi__V1__GroupControllerGetCapabilitiesResponse *resp = respp;
	Csi__V1__GroupControllerServiceCapability *cap;
	Csi__V1__GroupControllerServiceCapability__RPC *rpc;

	(void)reqp;
	if (need_groups(d, c))
		return -1;
	cap = csi_alloc(c, sizeof(*cap));
	rpc = csi_alloc(c, sizeof(*rpc));
	resp->capabilities = csi_alloc(c, sizeof(*resp->capabilities));
	if (!cap || !rpc || !resp->capabilities)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	csi__v1__group_controller_service_capability__init(cap);
	csi__v1__group_controller_service_capability__rpc__init(rpc);
	rpc->type =
		CSI__V1__GROUP_CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT;
	cap->type_case = CSI__V1__GROUP_CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
	cap->rpc = rpc;
	resp->capabilities[0] = cap;
	resp->n_capabilities = 1;
	return 0;
}

bool csi_groups_supported(const struct ts_csi_driver *d)
{
	return d->controller && d->be->group_snap_create && d->be->snap_delete && d->st &&
	       d->st->group_put;
}

#define M(name, lname, fn)                                                            \
	{ "/csi.v1.GroupController/" name, &csi__v1__##lname##_request__descriptor,     \
	  &csi__v1__##lname##_response__descriptor, fn, NULL }

const struct csi_method csi_group_methods[] = {
	M("GroupControllerGetCapabilities", group_controller_get_capabilities, get_capabilities),
	M("CreateVolumeGroupSnapshot", create_volume_group_snapshot, create_group),
	M("DeleteVolumeGroupSnapshot", delete_volume_group_snapshot, delete_group),
	M("GetVolumeGroupSnapshot", get_volume_group_snapshot, get_group),
};
const size_t csi_group_method_count = TS_ARRAY_SIZE(csi_group_methods);
