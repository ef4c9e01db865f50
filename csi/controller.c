/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI Controller service: volume lifecycle on the backend, promises kept in
 * the metadata store.
 *
 * The store is the controller's memory: CreateVolume looks the name up first
 * and answers the existing volume when size, EC scheme, fs type and access
 * type are compatible with the request, ALREADY_EXISTS when they are not.
 * Only when the name is new does it ask the backend (whose create is itself
 * idempotent by name, so a crash between backend create and store put is
 * repaired by the CO's retry) and then write the record. DeleteVolume is the
 * mirror image and answers OK for ids it does not know. Every
 * read-modify-write sequence holds d->ctl_lock.
 *
 * Capacity ranges follow the spec: required/limit non-negative, required <=
 * limit; an empty range gets the configured default (clamped to the limit);
 * sizes are provisioned in whole MiB, rounded up unless that would pass the
 * limit; beyond max_volume_bytes (or a limit below 1 MiB) is OUT_OF_RANGE.
 *
 * StorageClass parameters: `ec` = "k+m" (1 <= k <= 32, 0 <= m <= 16),
 * `fsType` = ext4 | xfs, the QoS keys of csi/qos.c; keys under
 * "csi.storage.k8s.io/" (set by the external-provisioner) are accepted and
 * ignored; any other key is INVALID_ARGUMENT. `mutable_parameters` (a
 * VolumeAttributesClass) may hold QoS keys only and take precedence; they
 * are accepted only when the backend can apply QoS (MODIFY_VOLUME). A
 * re-create of an existing name does not compare QoS: it may have been
 * modified since, and the volume is the same volume.
 *
 * Access modes (the policy is in call.c, the table in docs/csi.md): Block
 * volumes take every mode, multi-node writers included, because the volume's
 * engine serializes overlapping writes from every node; a filesystem with
 * writers on several nodes is refused (INVALID_ARGUMENT, saying why), as
 * ext4 and xfs are not cluster-aware. The modes of the request are recorded
 * with the volume: a re-create must ask for the same set (ALREADY_EXISTS
 * otherwise), ValidateVolumeCapabilities confirms only modes that set covers,
 * and the volume context carries them to the node, which refuses to stage
 * or publish beyond them. There is no ControllerPublish (attach happens in
 * NodeStage), so the controller cannot see which nodes use a volume.
 *
 * ListVolumes tokens are "v1:<last id>": listing continues after that id in
 * id order, so deleting or adding volumes between pages neither repeats nor
 * skips the volumes that stay. A token in any other form is ABORTED, as the
 * spec prescribes.
 *
 * Snapshots and clones are optional backend ops; the capabilities are
 * advertised only when the backend has them. The backend is the memory for
 * snapshots (it keeps their names, so CreateSnapshot is idempotent by name
 * there); the store keeps volumes only, clones included. CreateVolume with a
 * content source checks the source first (NOT_FOUND), then takes the
 * source's size when no required_bytes is given; a smaller size is
 * OUT_OF_RANGE. ListSnapshots tokens are "s1:<last snapshot id>", with the
 * same continue-after semantics as ListVolumes. A snapshot taken as a member
 * of a group snapshot (csi/group.c) reports its group_snapshot_id and is
 * deleted only with its group: DeleteSnapshot on it is FAILED_PRECONDITION.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#define MIB (1ull << 20)
#define TOKEN_PREFIX "v1:"
#define SNAP_TOKEN_PREFIX "s1:"

struct vol_params {
	uint32_t ec_k, ec_m;
	char fs_type[8];
	struct ts_csi_qos qos;
};

int csi_need_controller(struct ts_csi_driver *d, struct csi_call *c)
{
	if (!d->controller)
		return csi_fail(c, CSI_UNIMPLEMENTED, "this instance does not run the controller");
	return 0;
}

static int parse_ec(const char *s, uint32_t *k, uint32_t *m)
{
	char *end;
	unsigned long a, b;

	if (!s[0] || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	a = strtoul(s, &end, 10);
	if (*end != '+' || end[1] < '0' || end[1] > '9')
		return -EINVAL;
	b = strtoul(end + 1, &end, 10);
	if (*end || a < 1 || a > 32 || b > 16)
		return -EINVAL;
	*k = (uint32_t)a;
	*m = (uint32_t)b;
	return 0;
}

static int parse_params(struct csi_call *c, void *const *params, size_t n, struct vol_params *p)
{
	memset(p, 0, sizeof(*p));
	for (size_t i = 0; i < n; i++) {
		const struct csi_kv *kv = params[i];
		const char *k = kv->key ? kv->key : "", *v = kv->value ? kv->value : "";

		if (!strcmp(k, "ec")) {
			if (parse_ec(v, &p->ec_k, &p->ec_m))
				return csi_fail(c, CSI_INVALID_ARGUMENT,
						"parameter ec='%.32s' is not \"k+m\" with 1<=k<=32, 0<=m<=16",
						v);
		} else if (!strcmp(k, "fsType")) {
			if (strcmp(v, "ext4") && strcmp(v, "xfs"))
				return csi_fail(c, CSI_INVALID_ARGUMENT,
						"parameter fsType='%.32s' must be ext4 or xfs", v);
			snprintf(p->fs_type, sizeof(p->fs_type), "%s", v);
		} else if (csi_qos_is_key(k)) {
			if (csi_qos_apply(c, "parameters", k, v, &p->qos))
				return -1;
		} else if (strncmp(k, "csi.storage.k8s.io/", 19)) {
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"unknown parameter '%.64s' (known: ec, fsType and the QoS keys)",
					k);
		}
	}
	return 0;
}

/* The size to provision for \p r (see the capacity rules above). */
static int pick_size(struct ts_csi_driver *d, struct csi_call *c, const Csi__V1__CapacityRange *r,
		     uint64_t *out)
{
	int64_t req = r ? r->required_bytes : 0, lim = r ? r->limit_bytes : 0;
	uint64_t size;

	if (req < 0 || lim < 0)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"capacity_range: required_bytes and limit_bytes must not be negative");
	if (lim && req > lim)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"capacity_range: required_bytes %" PRId64 " exceeds limit_bytes %" PRId64,
				req, lim);
	if ((uint64_t)req > d->max_volume_bytes)
		return csi_fail(c, CSI_OUT_OF_RANGE,
				"capacity_range: required_bytes %" PRId64 " exceeds the maximum %" PRIu64,
				req, d->max_volume_bytes);
	if (req)
		size = (uint64_t)req;
	else if (lim)
		size = TS_MIN(d->default_volume_bytes, (uint64_t)lim);
	else
		size = d->default_volume_bytes;
	size = TS_MAX(TS_ALIGN_UP(size, MIB), MIB);
	if (lim && size > (uint64_t)lim) {
		size = (uint64_t)lim / MIB * MIB;
		if (!size || size < (uint64_t)req)
			return csi_fail(c, CSI_OUT_OF_RANGE,
					"capacity_range: no whole-MiB size between %" PRId64 " and %" PRId64,
					req, lim);
	}
	if (size > d->max_volume_bytes)
		return csi_fail(c, CSI_OUT_OF_RANGE, "capacity %" PRIu64 " exceeds the maximum %" PRIu64,
				size, d->max_volume_bytes);
	*out = size;
	return 0;
}

/*
 * A re-create of an existing name asks for the access modes the volume was
 * created with. Records from before modes were kept match any set of the
 * modes accepted then (all but the multi-node writer ones).
 */
static bool modes_match(uint32_t recorded, uint32_t asked)
{
	if (recorded)
		return recorded == asked;
	for (unsigned m = 1; m <= TS_CSI_MODE_MAX; m++)
		if ((asked & (1u << m)) && !csi_modes_cover(0, m))
			return false;
	return true;
}

static bool topo_is_ours(struct ts_csi_driver *d, const Csi__V1__Topology *t)
{
	const char *v = csi_kv_get((void *const *)t->segments, t->n_segments, TS_CSI_TOPOLOGY_KEY);

	return v && !strcmp(v, d->node_id);
}

/* The VolumeContentSource for a record's source ("snapshot:<id>" / "volume:<id>"). */
static Csi__V1__VolumeContentSource *source_msg(struct csi_call *c, const char *src)
{
	Csi__V1__VolumeContentSource *cs = csi_alloc(c, sizeof(*cs));

	if (!cs)
		return NULL;
	csi__v1__volume_content_source__init(cs);
	if (!strncmp(src, "snapshot:", 9)) {
		Csi__V1__VolumeContentSource__SnapshotSource *ss = csi_alloc(c, sizeof(*ss));

		if (!ss)
			return NULL;
		csi__v1__volume_content_source__snapshot_source__init(ss);
		ss->snapshot_id = csi_strdup(c, src + 9);
		cs->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		cs->snapshot = ss;
		return ss->snapshot_id ? cs : NULL;
	}
	Csi__V1__VolumeContentSource__VolumeSource *vs = csi_alloc(c, sizeof(*vs));

	if (!vs)
		return NULL;
	csi__v1__volume_content_source__volume_source__init(vs);
	vs->volume_id = csi_strdup(c, !strncmp(src, "volume:", 7) ? src + 7 : src);
	cs->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
	cs->volume = vs;
	return vs->volume_id ? cs : NULL;
}

/* Build the csi.v1.Volume for a record. */
static Csi__V1__Volume *vol_msg(struct ts_csi_driver *d, struct csi_call *c,
				const struct ts_csi_volume *v)
{
	Csi__V1__Volume *m = csi_alloc(c, sizeof(*m));
	void **ctx = csi_alloc(c, 4 * sizeof(void *));
	char ec[24], modes[CSI_MODES_STR_MAX];
	size_t n = 0;

	if (!m || !ctx)
		return NULL;
	csi__v1__volume__init(m);
	m->volume_id = csi_strdup(c, v->id);
	m->capacity_bytes = (int64_t)v->capacity_bytes;
	ctx[n++] = csi_kv_new(c, &csi__v1__volume__volume_context_entry__descriptor, CSI_CTX_ATTACH,
			      v->attach);
	if (v->fs_type[0])
		ctx[n++] = csi_kv_new(c, &csi__v1__volume__volume_context_entry__descriptor,
				      CSI_CTX_FSTYPE, v->fs_type);
	if (v->ec_k) {
		snprintf(ec, sizeof(ec), "%u+%u", v->ec_k, v->ec_m);
		ctx[n++] = csi_kv_new(c, &csi__v1__volume__volume_context_entry__descriptor, CSI_CTX_EC,
				      ec);
	}
	if (v->access_modes) {
		/* The node checks what it is asked to stage and publish against these. */
		csi_modes_str(v->access_modes, modes, sizeof(modes));
		ctx[n++] = csi_kv_new(c, &csi__v1__volume__volume_context_entry__descriptor,
				      CSI_CTX_MODES, modes);
	}
	for (size_t i = 0; i < n; i++)
		if (!ctx[i])
			return NULL;
	m->volume_context = (Csi__V1__Volume__VolumeContextEntry **)ctx;
	m->n_volume_context = n;
	if (v->source[0] && !(m->content_source = source_msg(c, v->source)))
		return NULL;
	if (d->node_id[0]) {
		Csi__V1__Topology **tp = csi_alloc(c, sizeof(*tp));
		Csi__V1__Topology *t = csi_alloc(c, sizeof(*t));
		void **seg = csi_alloc(c, sizeof(void *));

		if (!tp || !t || !seg)
			return NULL;
		csi__v1__topology__init(t);
		seg[0] = csi_kv_new(c, &csi__v1__topology__segments_entry__descriptor,
				    TS_CSI_TOPOLOGY_KEY, d->node_id);
		if (!seg[0])
			return NULL;
		t->segments = (Csi__V1__Topology__SegmentsEntry **)seg;
		t->n_segments = 1;
		tp[0] = t;
		m->accessible_topology = tp;
		m->n_accessible_topology = 1;
	}
	return m->volume_id ? m : NULL;
}

/* A CreateVolume content source, validated. */
struct vol_src {
	enum ts_csi_src_kind kind;
	const char *id; /* NULL: no source */
};

static int content_source(struct ts_csi_driver *d, struct csi_call *c,
			  const Csi__V1__VolumeContentSource *cs, struct vol_src *out)
{
	switch (cs->type_case) {
	case CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT:
		out->kind = TS_CSI_SRC_SNAPSHOT;
		out->id = cs->snapshot ? cs->snapshot->snapshot_id : NULL;
		if (csi_check_id(c, "volume_content_source.snapshot.snapshot_id", out->id))
			return -1;
		if (!d->be->create_from || !d->be->snap_create)
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"volume_content_source: backend %s cannot restore snapshots",
					d->be->name);
		return 0;
	case CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME:
		out->kind = TS_CSI_SRC_VOLUME;
		out->id = cs->volume ? cs->volume->volume_id : NULL;
		if (csi_check_id(c, "volume_content_source.volume.volume_id", out->id))
			return -1;
		if (!d->be->create_from)
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"volume_content_source: backend %s cannot clone volumes",
					d->be->name);
		return 0;
	default:
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"volume_content_source: snapshot or volume is required");
	}
}

static int create_volume(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			 void *respp)
{
	const Csi__V1__CreateVolumeRequest *req = reqp;
	Csi__V1__CreateVolumeResponse *resp = respp;
	struct ts_csi_volume v = { 0 }, old;
	struct ts_csi_vol_spec spec;
	struct ts_csi_backend_vol bv;
	struct vol_params p;
	struct vol_src src = { 0 };
	uint64_t size;
	uint32_t modes = 0;
	bool block = false, mount = false;
	int rc;

	if (csi_need_controller(d, c) || csi_check_name(c, "name", req->name))
		return -1;
	if (!req->n_volume_capabilities)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capabilities is required");
	if (parse_params(c, (void *const *)req->parameters, req->n_parameters, &p))
		return -1;
	for (size_t i = 0; i < req->n_volume_capabilities; i++) {
		const Csi__V1__VolumeCapability *cap = req->volume_capabilities[i];
		const char *fs;

		if (csi_check_cap(c, cap))
			return -1;
		if (csi_mode_refusal(d->be, cap))
			return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capabilities[%zu]: %s", i,
					csi_mode_refusal(d->be, cap));
		modes |= 1u << cap->access_mode->mode;
		if (cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK) {
			block = true;
			continue;
		}
		mount = true;
		fs = cap->mount->fs_type;
		if (fs && fs[0]) {
			if (p.fs_type[0] && strcmp(p.fs_type, fs))
				return csi_fail(c, CSI_INVALID_ARGUMENT,
						"fsType parameter %s conflicts with capability fs_type %s",
						p.fs_type, fs);
			snprintf(p.fs_type, sizeof(p.fs_type), "%s", fs);
		}
	}
	if (block && mount)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"volume_capabilities mix block and mount access types");
	if (req->volume_content_source && content_source(d, c, req->volume_content_source, &src))
		return -1;
	if (req->n_mutable_parameters && !d->be->set_qos)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"mutable_parameters: backend %s does not support MODIFY_VOLUME",
				d->be->name);
	if (csi_qos_parse_mutable(c, "mutable_parameters", (void *const *)req->mutable_parameters,
				  req->n_mutable_parameters, &p.qos) ||
	    csi_qos_check(c, &p.qos))
		return -1;
	if (!d->be->set_qos && memcmp(&p.qos, &(struct ts_csi_qos){ 0 }, sizeof(p.qos)))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "parameters: backend %s cannot apply QoS",
				d->be->name);
	if (src.id && !(req->capacity_range && req->capacity_range->required_bytes)) {
		/* A clone is the source's size unless a size is asked for. */
		const Csi__V1__CapacityRange *r = req->capacity_range;

		if (r && (r->required_bytes < 0 || r->limit_bytes < 0))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"capacity_range: required_bytes and limit_bytes must not be negative");
		size = 0;
	} else if (pick_size(d, c, req->capacity_range, &size)) {
		return -1;
	}
	if (req->accessibility_requirements && req->accessibility_requirements->n_requisite) {
		const Csi__V1__TopologyRequirement *tr = req->accessibility_requirements;
		bool ok = false;

		for (size_t i = 0; i < tr->n_requisite && !ok; i++)
			ok = topo_is_ours(d, tr->requisite[i]);
		if (!ok)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED,
					"accessibility_requirements: no requisite topology has %s=%s",
					TS_CSI_TOPOLOGY_KEY, d->node_id);
	}

	if (src.id)
		snprintf(v.source, sizeof(v.source), "%s:%s",
			 src.kind == TS_CSI_SRC_SNAPSHOT ? "snapshot" : "volume", src.id);
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->get_by_name(d->st_ctx, req->name, &old);
	if (rc == 0) {
		const Csi__V1__CapacityRange *r = req->capacity_range;
		bool fits = !r || ((uint64_t)r->required_bytes <= old.capacity_bytes &&
				   (!r->limit_bytes || old.capacity_bytes <= (uint64_t)r->limit_bytes));

		if (strcmp(old.source, v.source)) {
			rc = csi_fail(c, CSI_ALREADY_EXISTS,
				      "volume '%s' exists as %s with content source '%s'; the request has '%s'",
				      req->name, old.id, old.source[0] ? old.source : "none",
				      v.source[0] ? v.source : "none");
			goto out;
		}
		if (!modes_match(old.access_modes, modes)) {
			char had[CSI_MODES_STR_MAX], asked[CSI_MODES_STR_MAX];

			csi_modes_str(old.access_modes, had, sizeof(had));
			csi_modes_str(modes, asked, sizeof(asked));
			rc = csi_fail(c, CSI_ALREADY_EXISTS,
				      "volume '%s' exists as %s with access modes %s; the request asks for %s",
				      req->name, old.id, had[0] ? had : "(not recorded: single-node)",
				      asked);
			goto out;
		}
		if (!fits || old.ec_k != p.ec_k || old.ec_m != p.ec_m ||
		    strcmp(old.fs_type, p.fs_type) || old.block != block) {
			rc = csi_fail(c, CSI_ALREADY_EXISTS,
				      "volume '%s' exists as %s with %" PRIu64
				      " bytes, ec %u+%u, fsType '%s'; the request differs",
				      req->name, old.id, old.capacity_bytes, old.ec_k, old.ec_m,
				      old.fs_type);
			goto out;
		}
		v = old;
		goto reply;
	}
	if (rc != -ENOENT) {
		rc = csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	rc = csi_check_live(c);
	if (rc)
		goto out;
	spec = (struct ts_csi_vol_spec){ .name = req->name, .capacity_bytes = size,
					 .ec_k = p.ec_k, .ec_m = p.ec_m };
	memset(&bv, 0, sizeof(bv));
	if (src.id && src.kind == TS_CSI_SRC_VOLUME) {
		/* The source volume must be one the controller knows. */
		rc = d->st->get(d->st_ctx, src.id, &old);
		if (rc) {
			rc = rc == -ENOENT ? csi_fail(c, CSI_NOT_FOUND,
						      "volume_content_source: volume %s does not exist",
						      src.id)
					   : csi_fail_err(c, rc, "metadata store lookup");
			goto out;
		}
	}
	rc = src.id ? d->be->create_from(d->be_ctx, &spec, src.kind, src.id, &bv)
		    : d->be->create(d->be_ctx, &spec, &bv);
	if (rc == -ENOENT && src.id) {
		rc = csi_fail(c, CSI_NOT_FOUND, "volume_content_source: %s %s does not exist",
			      src.kind == TS_CSI_SRC_SNAPSHOT ? "snapshot" : "volume", src.id);
		goto out;
	}
	if (rc == -ERANGE && src.id) {
		rc = csi_fail(c, CSI_OUT_OF_RANGE,
			      "capacity_range: %" PRIu64 " bytes is smaller than the source %s", size,
			      src.id);
		goto out;
	}
	if (rc) {
		rc = csi_fail_err(c, rc, src.id ? "backend clone" : "backend create");
		goto out;
	}
	if (src.id && req->capacity_range && req->capacity_range->limit_bytes &&
	    bv.capacity_bytes > (uint64_t)req->capacity_range->limit_bytes) {
		d->be->remove(d->be_ctx, bv.id);
		rc = csi_fail(c, CSI_OUT_OF_RANGE,
			      "capacity_range: the source %s is %" PRIu64 " bytes, above limit_bytes",
			      src.id, bv.capacity_bytes);
		goto out;
	}
	snprintf(v.id, sizeof(v.id), "%s", bv.id);
	snprintf(v.name, sizeof(v.name), "%s", req->name);
	snprintf(v.attach, sizeof(v.attach), "%s", bv.attach);
	snprintf(v.fs_type, sizeof(v.fs_type), "%s", p.fs_type);
	v.capacity_bytes = bv.capacity_bytes;
	v.ec_k = p.ec_k;
	v.ec_m = p.ec_m;
	v.block = block;
	v.qos = p.qos;
	v.access_modes = modes;
	if (d->be->set_qos && memcmp(&v.qos, &(struct ts_csi_qos){ 0 }, sizeof(v.qos))) {
		rc = d->be->set_qos(d->be_ctx, v.id, &v.qos);
		if (rc) {
			d->be->remove(d->be_ctx, v.id);
			rc = csi_fail_err(c, rc, "backend set QoS");
			goto out;
		}
	}
	rc = d->st->put(d->st_ctx, &v);
	if (rc) {
		d->be->remove(d->be_ctx, v.id);
		rc = csi_fail_err(c, rc, "metadata store write");
		goto out;
	}
	ts_log(TS_LOG_INFO, "csi", "volume created id=%s name=%s bytes=%" PRIu64, v.id, v.name,
	       v.capacity_bytes);
reply:
	resp->volume = vol_msg(d, c, &v);
	rc = resp->volume ? 0 : csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int delete_volume(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			 void *respp)
{
	const Csi__V1__DeleteVolumeRequest *req = reqp;
	struct ts_csi_volume v;
	int rc;

	(void)respp;
	if (csi_need_controller(d, c) || csi_check_id(c, "volume_id", req->volume_id))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->get(d->st_ctx, req->volume_id, &v);
	if (rc == -ENOENT) {
		rc = 0; /* already gone: DeleteVolume is idempotent */
		goto out;
	}
	if (rc) {
		rc = csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	rc = d->be->remove(d->be_ctx, v.id);
	if (rc) {
		rc = csi_fail_err(c, rc, "backend remove");
		goto out;
	}
	rc = d->st->del(d->st_ctx, v.id);
	if (rc && rc != -ENOENT) {
		rc = csi_fail_err(c, rc, "metadata store delete");
		goto out;
	}
	rc = 0;
	ts_log(TS_LOG_INFO, "csi", "volume deleted id=%s name=%s", v.id, v.name);
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int validate_volume_capabilities(struct ts_csi_driver *d, struct csi_call *c,
					const void *reqp, void *respp)
{
	const Csi__V1__ValidateVolumeCapabilitiesRequest *req = reqp;
	Csi__V1__ValidateVolumeCapabilitiesResponse *resp = respp;
	Csi__V1__ValidateVolumeCapabilitiesResponse__Confirmed *conf;
	struct ts_csi_volume v;
	struct vol_params p;
	int rc;

	if (csi_need_controller(d, c) || csi_check_id(c, "volume_id", req->volume_id))
		return -1;
	if (!req->n_volume_capabilities)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capabilities is required");
	for (size_t i = 0; i < req->n_volume_capabilities; i++)
		if (csi_check_cap(c, req->volume_capabilities[i]))
			return -1;
	if (parse_params(c, (void *const *)req->parameters, req->n_parameters, &p))
		return -1;
	rc = d->st->get(d->st_ctx, req->volume_id, &v);
	if (rc == -ENOENT)
		return csi_fail(c, CSI_NOT_FOUND, "volume %s does not exist", req->volume_id);
	if (rc)
		return csi_fail_err(c, rc, "metadata store lookup");
	for (size_t i = 0; i < req->n_volume_capabilities; i++) {
		const Csi__V1__VolumeCapability *cap = req->volume_capabilities[i];
		bool is_block = cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
		const char *fs = is_block ? NULL : cap->mount->fs_type;
		char why[CSI_MODES_STR_MAX + 160];

		/* Not confirmed: an answer with a message, not an error (the spec's way). */
		if (csi_mode_refusal(d->be, cap)) {
			resp->message = csi_strdup(c, csi_mode_refusal(d->be, cap));
			return 0;
		}
		if (is_block != v.block) {
			resp->message = csi_strdup(c, v.block ? "the volume was created for block access"
							      : "the volume was created for a filesystem");
			return 0;
		}
		if (!csi_modes_cover(v.access_modes, (unsigned)cap->access_mode->mode)) {
			char had[CSI_MODES_STR_MAX];

			csi_modes_str(v.access_modes, had, sizeof(had));
			snprintf(why, sizeof(why),
				 "access mode %s is beyond the modes the volume was created with (%s)",
				 ts_csi_mode_name((unsigned)cap->access_mode->mode),
				 had[0] ? had : "single-node");
			resp->message = csi_strdup(c, why);
			return 0;
		}
		if (fs && fs[0] && v.fs_type[0] && strcmp(fs, v.fs_type)) {
			resp->message = csi_strdup(c, "fs_type differs from the volume's fsType");
			return 0;
		}
	}
	if ((req->n_parameters && (p.ec_k != v.ec_k || p.ec_m != v.ec_m ||
				   (p.fs_type[0] && strcmp(p.fs_type, v.fs_type))))) {
		resp->message = csi_strdup(c, "parameters differ from the volume's");
		return 0;
	}
	conf = csi_alloc(c, sizeof(*conf));
	if (!conf)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	csi__v1__validate_volume_capabilities_response__confirmed__init(conf);
	/* The request owns these; the response is packed before the request is freed. */
	conf->volume_capabilities = req->volume_capabilities;
	conf->n_volume_capabilities = req->n_volume_capabilities;
	conf->volume_context = (void *)req->volume_context;
	conf->n_volume_context = req->n_volume_context;
	conf->parameters = (void *)req->parameters;
	conf->n_parameters = req->n_parameters;
	resp->confirmed = conf;
	return 0;
}

static int list_volumes(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__ListVolumesRequest *req = reqp;
	Csi__V1__ListVolumesResponse *resp = respp;
	const char *after = NULL;
	struct ts_csi_volume *vols;
	size_t max, n = 0;
	bool more = false;
	int rc;

	if (csi_need_controller(d, c))
		return -1;
	if (req->max_entries < 0)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "max_entries must not be negative");
	if (req->starting_token && req->starting_token[0]) {
		after = req->starting_token + strlen(TOKEN_PREFIX);
		if (strncmp(req->starting_token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)) ||
		    csi_check_id(c, "starting_token", after))
			return csi_fail(c, CSI_ABORTED, "starting_token '%.80s' is not a token of ours",
					req->starting_token);
	}
	max = req->max_entries ? (size_t)req->max_entries : 1024;
	max = TS_MIN(max, 1024);
	vols = csi_alloc(c, max * sizeof(*vols));
	resp->entries = csi_alloc(c, max * sizeof(*resp->entries));
	if (!vols || !resp->entries)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	rc = d->st->list(d->st_ctx, after, vols, max, &n, &more);
	if (rc)
		return csi_fail_err(c, rc, "metadata store list");
	for (size_t i = 0; i < n; i++) {
		Csi__V1__ListVolumesResponse__Entry *e = csi_alloc(c, sizeof(*e));

		if (!e)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		csi__v1__list_volumes_response__entry__init(e);
		e->volume = vol_msg(d, c, &vols[i]);
		if (!e->volume)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		resp->entries[i] = e;
	}
	resp->n_entries = n;
	if (more && n) {
		char tok[sizeof(TOKEN_PREFIX) + TS_CSI_ID_MAX];

		snprintf(tok, sizeof(tok), TOKEN_PREFIX "%s", vols[n - 1].id);
		resp->next_token = csi_strdup(c, tok);
		if (!resp->next_token)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 0;
}

static Google__Protobuf__Int64Value *i64(struct csi_call *c, int64_t v)
{
	Google__Protobuf__Int64Value *m = csi_alloc(c, sizeof(*m));

	if (m) {
		google__protobuf__int64_value__init(m);
		m->value = v;
	}
	return m;
}

static int get_capacity(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__GetCapacityRequest *req = reqp;
	Csi__V1__GetCapacityResponse *resp = respp;
	struct vol_params p;
	uint64_t avail = 0;
	int rc;

	if (csi_need_controller(d, c))
		return -1;
	for (size_t i = 0; i < req->n_volume_capabilities; i++)
		if (csi_check_cap(c, req->volume_capabilities[i]))
			return -1;
	if (parse_params(c, (void *const *)req->parameters, req->n_parameters, &p))
		return -1;
	if (req->accessible_topology && req->accessible_topology->n_segments &&
	    !topo_is_ours(d, req->accessible_topology))
		return 0; /* nothing of ours there: capacity 0 */
	rc = d->be->capacity(d->be_ctx, &avail);
	if (rc)
		return csi_fail_err(c, rc, "backend capacity");
	avail = TS_MIN(avail, (uint64_t)INT64_MAX);
	resp->available_capacity = (int64_t)avail;
	resp->maximum_volume_size = i64(c, (int64_t)TS_MIN(avail, d->max_volume_bytes));
	resp->minimum_volume_size = i64(c, (int64_t)MIB);
	if (!resp->maximum_volume_size || !resp->minimum_volume_size)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

static int controller_expand_volume(struct ts_csi_driver *d, struct csi_call *c,
				    const void *reqp, void *respp)
{
	const Csi__V1__ControllerExpandVolumeRequest *req = reqp;
	Csi__V1__ControllerExpandVolumeResponse *resp = respp;
	struct ts_csi_volume v;
	uint64_t size, got;
	int rc;

	if (csi_need_controller(d, c) || csi_check_id(c, "volume_id", req->volume_id))
		return -1;
	if (!req->capacity_range)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "capacity_range is required");
	if (req->volume_capability && csi_check_cap(c, req->volume_capability))
		return -1;
	if (!req->capacity_range->required_bytes && !req->capacity_range->limit_bytes)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"capacity_range needs required_bytes or limit_bytes");
	if (pick_size(d, c, req->capacity_range, &size))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->get(d->st_ctx, req->volume_id, &v);
	if (rc) {
		rc = rc == -ENOENT ? csi_fail(c, CSI_NOT_FOUND, "volume %s does not exist",
					      req->volume_id)
				   : csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	if (req->capacity_range->limit_bytes &&
	    v.capacity_bytes > (uint64_t)req->capacity_range->limit_bytes) {
		rc = csi_fail(c, CSI_OUT_OF_RANGE,
			      "volume is already %" PRIu64 " bytes, above limit_bytes; shrinking is not supported",
			      v.capacity_bytes);
		goto out;
	}
	if (size > v.capacity_bytes) {
		rc = d->be->expand(d->be_ctx, v.id, size, &got);
		if (rc) {
			rc = csi_fail_err(c, rc, "backend expand");
			goto out;
		}
		v.capacity_bytes = got;
		rc = d->st->put(d->st_ctx, &v);
		if (rc) {
			rc = csi_fail_err(c, rc, "metadata store write");
			goto out;
		}
	}
	resp->capacity_bytes = (int64_t)v.capacity_bytes;
	resp->node_expansion_required =
		req->volume_capability
			? req->volume_capability->access_type_case ==
				  CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT
			: !v.block;
	rc = 0;
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int controller_get_capabilities(struct ts_csi_driver *d, struct csi_call *c,
				       const void *reqp, void *respp)
{
	static const Csi__V1__ControllerServiceCapability__RPC__Type types[] = {
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_VOLUME,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_VOLUMES,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__GET_CAPACITY,
		CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME,
	};
	Csi__V1__ControllerGetCapabilitiesResponse *resp = respp;
	Csi__V1__ControllerServiceCapability__RPC__Type have[TS_ARRAY_SIZE(types) + 4];
	size_t n = 0;

	(void)reqp;
	if (csi_need_controller(d, c))
		return -1;
	for (size_t i = 0; i < TS_ARRAY_SIZE(types); i++)
		have[n++] = types[i];
	if (d->be->snap_create && d->be->snap_delete)
		have[n++] = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT;
	if (d->be->snap_list)
		have[n++] = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS;
	if (d->be->create_from)
		have[n++] = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME;
	if (d->be->set_qos)
		have[n++] = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__MODIFY_VOLUME;
	resp->capabilities = csi_alloc(c, n * sizeof(*resp->capabilities));
	if (!resp->capabilities)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < n; i++) {
		Csi__V1__ControllerServiceCapability *cap = csi_alloc(c, sizeof(*cap));
		Csi__V1__ControllerServiceCapability__RPC *rpc = csi_alloc(c, sizeof(*rpc));

		if (!cap || !rpc)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		csi__v1__controller_service_capability__init(cap);
		csi__v1__controller_service_capability__rpc__init(rpc);
		rpc->type = have[i];
		cap->type_case = CSI__V1__CONTROLLER_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		resp->capabilities[i] = cap;
	}
	resp->n_capabilities = n;
	return 0;
}

/* ---- snapshots ---- */

Csi__V1__Snapshot *csi_snap_msg(struct csi_call *c, const struct ts_csi_backend_snap *s,
				 const char *group_id)
{
	Csi__V1__Snapshot *m = csi_alloc(c, sizeof(*m));
	Google__Protobuf__Timestamp *t = csi_alloc(c, sizeof(*t));

	if (!m || !t)
		return NULL;
	csi__v1__snapshot__init(m);
	google__protobuf__timestamp__init(t);
	t->seconds = (int64_t)(s->ctime_ns / 1000000000ull);
	t->nanos = (int32_t)(s->ctime_ns % 1000000000ull);
	m->size_bytes = (int64_t)TS_MIN(s->size_bytes, (uint64_t)INT64_MAX);
	m->snapshot_id = csi_strdup(c, s->id);
	m->source_volume_id = csi_strdup(c, s->source);
	m->creation_time = t;
	m->ready_to_use = s->ready;
	if (group_id && group_id[0] && !(m->group_snapshot_id = csi_strdup(c, group_id)))
		return NULL;
	return m->snapshot_id && m->source_volume_id ? m : NULL;
}

/* Snapshot message with the group it belongs to, if any. */
static Csi__V1__Snapshot *snap_msg(struct ts_csi_driver *d, struct csi_call *c,
				   const struct ts_csi_backend_snap *s)
{
	struct ts_csi_group g;

	if (d->st->group_of_snap && d->st->group_of_snap(d->st_ctx, s->id, &g) == 0)
		return csi_snap_msg(c, s, g.id);
	return csi_snap_msg(c, s, NULL);
}

static int need_snapshots(struct ts_csi_driver *d, struct csi_call *c, bool have)
{
	if (csi_need_controller(d, c))
		return -1;
	if (!have)
		return csi_fail(c, CSI_UNIMPLEMENTED, "backend %s does not support snapshots",
				d->be->name);
	return 0;
}

static int create_snapshot(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			   void *respp)
{
	const Csi__V1__CreateSnapshotRequest *req = reqp;
	Csi__V1__CreateSnapshotResponse *resp = respp;
	struct ts_csi_backend_snap s;
	struct ts_csi_volume v;
	int rc;

	if (need_snapshots(d, c, d->be->snap_create && d->be->snap_delete) ||
	    csi_check_name(c, "name", req->name) ||
	    csi_check_id(c, "source_volume_id", req->source_volume_id))
		return -1;
	for (size_t i = 0; i < req->n_parameters; i++) {
		const struct csi_kv *kv = (const struct csi_kv *)req->parameters[i];

		if (!kv->key || strncmp(kv->key, "csi.storage.k8s.io/", 19))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"unknown snapshot parameter '%.64s' (none are supported)",
					kv->key ? kv->key : "");
	}
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->get(d->st_ctx, req->source_volume_id, &v);
	if (rc) {
		rc = rc == -ENOENT ? csi_fail(c, CSI_NOT_FOUND, "volume %s does not exist",
					      req->source_volume_id)
				   : csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	rc = csi_check_live(c);
	if (rc)
		goto out;
	rc = d->be->snap_create(d->be_ctx, v.id, req->name, &s);
	if (rc == -EEXIST) {
		rc = csi_fail(c, CSI_ALREADY_EXISTS,
			      "snapshot '%s' exists with another source volume than %s", req->name,
			      v.id);
		goto out;
	}
	if (rc) {
		rc = csi_fail_err(c, rc, "backend snapshot");
		goto out;
	}
	resp->snapshot = snap_msg(d, c, &s);
	rc = resp->snapshot ? 0 : csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

static int delete_snapshot(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			   void *respp)
{
	const Csi__V1__DeleteSnapshotRequest *req = reqp;
	struct ts_csi_group g;
	int rc;

	(void)respp;
	if (need_snapshots(d, c, d->be->snap_create && d->be->snap_delete) ||
	    csi_check_id(c, "snapshot_id", req->snapshot_id))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	if (d->st->group_of_snap && d->st->group_of_snap(d->st_ctx, req->snapshot_id, &g) == 0) {
		pthread_mutex_unlock(&d->ctl_lock);
		return csi_fail(c, CSI_FAILED_PRECONDITION,
				"snapshot %s is a member of group snapshot %s (%s): delete the group",
				req->snapshot_id, g.id, g.name);
	}
	rc = d->be->snap_delete(d->be_ctx, req->snapshot_id);
	pthread_mutex_unlock(&d->ctl_lock);
	if (rc)
		return csi_fail_err(c, rc, "backend snapshot delete");
	return 0;
}

/* An id filter of ListSnapshots: NULL when absent; "" (matches nothing) when malformed. */
static const char *list_filter(struct csi_call *c, const char *s)
{
	struct csi_call tmp;

	if (!s || !s[0])
		return NULL;
	csi_call_init(&tmp);
	if (csi_check_id(&tmp, "id", s))
		s = "";
	csi_call_fini(&tmp);
	(void)c;
	return s;
}

static int list_snapshots(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			  void *respp)
{
	const Csi__V1__ListSnapshotsRequest *req = reqp;
	Csi__V1__ListSnapshotsResponse *resp = respp;
	const char *after = NULL, *snap, *vol;
	struct ts_csi_backend_snap *snaps;
	size_t max, n = 0;
	bool more = false;
	int rc;

	if (need_snapshots(d, c, d->be->snap_list != NULL))
		return -1;
	if (req->max_entries < 0)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "max_entries must not be negative");
	if (req->starting_token && req->starting_token[0]) {
		after = req->starting_token + strlen(SNAP_TOKEN_PREFIX);
		if (strncmp(req->starting_token, SNAP_TOKEN_PREFIX, strlen(SNAP_TOKEN_PREFIX)) ||
		    csi_check_id(c, "starting_token", after))
			return csi_fail(c, CSI_ABORTED, "starting_token '%.80s' is not a token of ours",
					req->starting_token);
	}
	snap = list_filter(c, req->snapshot_id);
	vol = list_filter(c, req->source_volume_id);
	if ((snap && !snap[0]) || (vol && !vol[0]))
		return 0; /* no such id can exist: an empty list, as the spec asks */
	max = req->max_entries ? (size_t)req->max_entries : 1024;
	max = TS_MIN(max, 1024);
	snaps = csi_alloc(c, max * sizeof(*snaps));
	resp->entries = csi_alloc(c, max * sizeof(*resp->entries));
	if (!snaps || !resp->entries)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	rc = d->be->snap_list(d->be_ctx, snap, vol, after, snaps, max, &n, &more);
	if (rc == -EINVAL)
		return csi_fail(c, CSI_ABORTED, "starting_token '%.80s' is not a token of ours",
				req->starting_token);
	if (rc)
		return csi_fail_err(c, rc, "backend snapshot list");
	for (size_t i = 0; i < n; i++) {
		Csi__V1__ListSnapshotsResponse__Entry *e = csi_alloc(c, sizeof(*e));

		if (!e)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		csi__v1__list_snapshots_response__entry__init(e);
		e->snapshot = snap_msg(d, c, &snaps[i]);
		if (!e->snapshot)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		resp->entries[i] = e;
	}
	resp->n_entries = n;
	if (more && n) {
		char tok[sizeof(SNAP_TOKEN_PREFIX) + TS_CSI_ID_MAX];

		snprintf(tok, sizeof(tok), SNAP_TOKEN_PREFIX "%s", snaps[n - 1].id);
		resp->next_token = csi_strdup(c, tok);
		if (!resp->next_token)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	}
	return 0;
}

#define M(name, lname, fn)                                                            \
	{ "/csi.v1.Controller/" name, &csi__v1__##lname##_request__descriptor,          \
	  &csi__v1__##lname##_response__descriptor, fn }

const struct csi_method csi_controller_methods[] = {
	M("CreateVolume", create_volume, create_volume),
	M("DeleteVolume", delete_volume, delete_volume),
	M("ValidateVolumeCapabilities", validate_volume_capabilities,
	  validate_volume_capabilities),
	M("ListVolumes", list_volumes, list_volumes),
	M("GetCapacity", get_capacity, get_capacity),
	M("ControllerExpandVolume", controller_expand_volume, controller_expand_volume),
	M("ControllerGetCapabilities", controller_get_capabilities, controller_get_capabilities),
	M("CreateSnapshot", create_snapshot, create_snapshot),
	M("DeleteSnapshot", delete_snapshot, delete_snapshot),
	M("ListSnapshots", list_snapshots, list_snapshots),
	M("ControllerModifyVolume", controller_modify_volume, csi_modify_volume),
};
const size_t csi_controller_method_count = TS_ARRAY_SIZE(csi_controller_methods);
