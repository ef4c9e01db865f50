/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The data-plane backend: CSI volumes are thin volumes (dataplane/volume)
 * on the erasure-coded pool, each exported as its own iSCSI target by
 * Tessera's target engine, and attached on the node through the user-space
 * initiator (libiscsi -> FUSE file -> loop device, volumedriver/attach).
 *
 * Identity: a volume's CSI id is "tv-<16 hex of the pool volume id>"; its
 * target IQN and LUN serial derive from the pool's group uuid and that id,
 * so they are stable across restarts. The volume's name in the pool is the
 * CSI name (or "h-" + SHA-256 prefix when the name is longer than the pool
 * keeps), which makes create idempotent by name after a crash.
 *
 * Exports are rebuilt at start from the pool (every volume is served); the
 * attach context handed to the node is the volume's iSCSI URL.
 *
 * Snapshots are snapshots/chain snapshots: the CSI id is "ts-<16 hex of the
 * frozen layer id>", the pool keeps the CSI name (hashed like volume names
 * when long), so CreateSnapshot is idempotent by name across restarts, and
 * the source volume id is the layer's volume. Clones (CreateVolume from a
 * snapshot or a volume) are ts_chain_clone: a new head on the snapshot's
 * layer, or on a hidden snapshot of the live volume; nothing is copied.
 * Deleting a volume keeps the layers its snapshots need (ts_chain folds them
 * when the last user goes). Changed-block metadata is ts_chain_delta, in
 * pages.
 *
 * QoS: every export shares the backend's QoS domain (dataplane/qos: the
 * volumes this engine serves contend for the same pool), and set_qos hands a
 * volume's limits to its LUN online (volumedriver/lun enforces them on
 * every IO path). The limits live in the CSI store; the CSI layer re-applies
 * them after a restart.
 *
 * Group snapshots: member i of group G is the chain snapshot named
 * pool_name("G/<volume id>"), cut by snapshots/group (hold every member
 * still, snapshot each, release) so all members are one point in time. A
 * retry finds a complete earlier cut by those names and returns it; a
 * partial one (a crash between two members' snapshots) is removed and the
 * group is cut again.
 *
 * The node side (attach, detach, refresh) is the shared iSCSI attach table
 * (iscsi_attach.h), which the remote backend uses as well.
 *
 * THREAD SAFETY: b->lock protects the export table; the attach table has
 * its own lock. The CSI layer (or the engine service, csi/engine.c)
 * serialises controller and node mutations; the lock covers
 * capacity/probe/find running beside them.
 */
#include "csi/backend/backend_dataplane.h"
#include "csi/backend/iscsi_attach.h"

#include <inttypes.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/qos/qos.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"
#include "snapshots/group/group.h"
#include "volumedriver/lun/vol_lun.h"

#define DP_MAX_EXPORTS 4096
/* How long a group snapshot may wait for its members' in-flight IO. */
#define DP_GROUP_HOLD_NS (10ull * 1000000000ull)

struct dp_export {
	uint64_t vol_id;
	struct ts_vol_lun *lun;
	struct ts_qos_limits qos;
};

struct dp_backend {
	pthread_mutex_t lock;
	struct ts_vpool *vp;
	struct ts_iscsi_server *srv;
	char portal[64];
	char *state_dir;
	uint8_t group_uuid[16];
	struct dp_export exports[DP_MAX_EXPORTS];
	unsigned nexports;
	struct ts_csi_iscsi_attach *attach; /* the node side (iscsi_attach.h) */
	int (*probe_fn)(void *);
	void *probe_arg;
	unsigned k, m;
	struct ts_qos_domain *qd;
};

static void vol_uuid(const struct dp_backend *b, uint64_t vol_id, uint8_t out[16])
{
	memcpy(out, b->group_uuid, 8);
	for (int i = 0; i < 8; i++)
		out[8 + i] = (uint8_t)(vol_id >> (56 - 8 * i));
}

static void vol_iqn(const struct dp_backend *b, uint64_t vol_id, char out[80])
{
	uint8_t u[16];

	vol_uuid(b, vol_id, u);
	ts_iscsi_iqn_for_volume(u, out);
}

static int parse_id(const char *id, uint64_t *vol_id)
{
	char *end;

	if (strncmp(id, "tv-", 3) != 0 || strlen(id) != 19)
		return -ENOENT;
	*vol_id = strtoull(id + 3, &end, 16);
	return *end ? -ENOENT : 0;
}

static int parse_snap_id(const char *id, uint64_t *snap_id)
{
	char *end;

	if (!id || strncmp(id, "ts-", 3) != 0 || strlen(id) != 19)
		return -ENOENT;
	*snap_id = strtoull(id + 3, &end, 16);
	return *end || !*snap_id ? -ENOENT : 0;
}

/* The pool keeps names shorter than TS_VOLUME_NAME_MAX. */
static void pool_name(const char *name, char out[TS_VOLUME_NAME_MAX])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	if (strlen(name) < TS_VOLUME_NAME_MAX) {
		snprintf(out, TS_VOLUME_NAME_MAX, "%s", name);
		return;
	}
	SHA256((const unsigned char *)name, strlen(name), md);
	strcpy(out, "h-");
	for (int i = 0; i < 30; i++)
		snprintf(out + 2 + 2 * i, 3, "%02x", md[i]);
}

static struct dp_export *export_find(struct dp_backend *b, uint64_t vol_id)
{
	for (unsigned i = 0; i < b->nexports; i++)
		if (b->exports[i].vol_id == vol_id)
			return &b->exports[i];
	return NULL;
}

static int export_volume(struct dp_backend *b, uint64_t vol_id)
{
	struct ts_vol_lun_opts o = { 0 };
	char iqn[80], pr[4200];
	int rc;

	if (export_find(b, vol_id))
		return 0;
	if (b->nexports == DP_MAX_EXPORTS)
		return -ENOSPC;
	vol_iqn(b, vol_id, iqn);
	/* PR state lives in the volume (volumedriver/lun); a file here is an
	 * older release's, imported once */
	snprintf(pr, sizeof(pr), "%s/pr/tv-%016" PRIx64 ".pr", b->state_dir, vol_id);
	o.iqn = iqn;
	o.pr_state_path = pr;
	o.qos_domain = b->qd;
	vol_uuid(b, vol_id, o.uuid);
	memset(&b->exports[b->nexports].qos, 0, sizeof(b->exports[b->nexports].qos));
	rc = ts_vol_lun_export(b->srv, b->vp, vol_id, &o, &b->exports[b->nexports].lun);
	if (rc < 0) {
		ts_log(TS_LOG_ERROR, "backend", "export failed vol=tv-%016" PRIx64 ": %s", vol_id,
		       ts_strerror(rc));
		return rc;
	}
	b->exports[b->nexports++].vol_id = vol_id;
	return 0;
}

static int unexport_volume(struct dp_backend *b, uint64_t vol_id)
{
	struct dp_export *e = export_find(b, vol_id);
	int rc;

	if (!e)
		return 0;
	rc = ts_vol_lun_unexport(e->lun);
	*e = b->exports[--b->nexports];
	return rc == -ENOENT ? 0 : rc;
}

static void fill_vol(struct dp_backend *b, uint64_t vol_id, uint64_t size,
		     struct ts_csi_backend_vol *out)
{
	char iqn[80];

	vol_iqn(b, vol_id, iqn);
	snprintf(out->id, sizeof(out->id), "tv-%016" PRIx64, vol_id);
	snprintf(out->attach, sizeof(out->attach), "iscsi://%s/%s/0", b->portal, iqn);
	out->capacity_bytes = size;
}

/* ---- controller side ---- */

static int dp_probe(void *ctx)
{
	struct dp_backend *b = ctx;
	return b->probe_fn ? b->probe_fn(b->probe_arg) : 0;
}

static int dp_create(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_csi_backend_vol *out)
{
	struct dp_backend *b = ctx;
	struct ts_vpool_volume_info info;
	char name[TS_VOLUME_NAME_MAX];
	uint64_t vol_id, size;
	int rc;

	if ((spec->ec_k || spec->ec_m) && (spec->ec_k != b->k || spec->ec_m != b->m)) {
		ts_log(TS_LOG_WARN, "backend", "volume %s asks for ec %u+%u; this pool is %u+%u",
		       spec->name, spec->ec_k, spec->ec_m, b->k, b->m);
		return -EINVAL;
	}
	size = TS_ALIGN_UP(spec->capacity_bytes, TS_VOLUME_BLOCK);
	pool_name(spec->name, name);
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_volume_find(b->vp, name, &vol_id);
	if (rc == -ENOENT)
		rc = ts_vpool_volume_create(b->vp, name, size, 0, &vol_id);
	if (rc == 0)
		rc = ts_vpool_volume_info(b->vp, vol_id, &info);
	if (rc == 0)
		rc = export_volume(b, vol_id);
	if (rc == 0)
		fill_vol(b, vol_id, info.size, out);
	pthread_mutex_unlock(&b->lock);
	if (rc == TS_ERR_NO_SPACE)
		rc = -ENOSPC;
	return rc;
}

static int dp_find(void *ctx, const char *name, struct ts_csi_backend_vol *out)
{
	struct dp_backend *b = ctx;
	struct ts_vpool_volume_info info;
	char pname[TS_VOLUME_NAME_MAX];
	uint64_t vol_id;
	int rc;

	pool_name(name, pname);
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_volume_find(b->vp, pname, &vol_id);
	if (rc == 0)
		rc = ts_vpool_volume_info(b->vp, vol_id, &info);
	if (rc == 0 && !export_find(b, vol_id))
		rc = export_volume(b, vol_id);
	if (rc == 0)
		fill_vol(b, vol_id, info.size, out);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int dp_remove(void *ctx, const char *id)
{
	struct dp_backend *b = ctx;
	uint64_t vol_id;
	int rc;

	if (parse_id(id, &vol_id) < 0)
		return 0;
	pthread_mutex_lock(&b->lock);
	rc = unexport_volume(b, vol_id);
	if (rc == 0) {
		rc = ts_chain_volume_delete(b->vp, vol_id);
		if (rc == -ENOENT)
			rc = 0;
	}
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int dp_expand(void *ctx, const char *id, uint64_t bytes, uint64_t *out_bytes)
{
	struct dp_backend *b = ctx;
	struct ts_vpool_volume_info info;
	struct dp_export *e;
	uint64_t vol_id;
	int rc;

	if (parse_id(id, &vol_id) < 0)
		return -ENOENT;
	pthread_mutex_lock(&b->lock);
	rc = ts_vpool_volume_info(b->vp, vol_id, &info);
	if (rc == 0 && bytes > info.size)
		rc = ts_vpool_volume_expand(b->vp, vol_id, TS_ALIGN_UP(bytes, TS_VOLUME_BLOCK));
	if (rc == 0 && (e = export_find(b, vol_id)))
		rc = ts_vol_lun_refresh(e->lun);
	if (rc == 0)
		rc = ts_vpool_volume_info(b->vp, vol_id, &info);
	if (rc == 0)
		*out_bytes = info.size;
	pthread_mutex_unlock(&b->lock);
	if (rc == TS_ERR_NO_SPACE)
		rc = -ENOSPC;
	return rc;
}

static int dp_capacity(void *ctx, uint64_t *avail)
{
	struct dp_backend *b = ctx;
	struct ts_vpool_stats st;

	ts_vpool_stats(b->vp, &st);
	*avail = st.free_blocks * TS_VOLUME_BLOCK;
	return 0;
}

/* ---- snapshots and clones ---- */

static void fill_snap(const struct ts_chain_snapshot_info *si, struct ts_csi_backend_snap *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->id, sizeof(out->id), "ts-%016" PRIx64, si->id);
	snprintf(out->source, sizeof(out->source), "tv-%016" PRIx64, si->volume);
	out->size_bytes = si->size;
	out->ctime_ns = si->ctime;
	out->ready = true; /* a snapshot is a metadata operation: usable at once */
}

static int dp_snap_create(void *ctx, const char *vol, const char *name,
			  struct ts_csi_backend_snap *out)
{
	struct dp_backend *b = ctx;
	struct ts_chain_snapshot_info si;
	struct ts_vpool_volume_info vi;
	char pname[TS_VOLUME_NAME_MAX];
	uint64_t vol_id, snap_id;
	int rc;

	if (parse_id(vol, &vol_id) < 0)
		return -ENOENT;
	pool_name(name, pname);
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_snapshot_find(b->vp, pname, &si);
	if (rc == 0) {
		rc = si.volume == vol_id ? 0 : -EEXIST;
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	rc = ts_vpool_volume_info(b->vp, vol_id, &vi);
	if (rc == 0)
		rc = ts_chain_snapshot(b->vp, vol_id, pname, &snap_id);
	if (rc == 0)
		rc = ts_chain_snapshot_info(b->vp, snap_id, &si);
	if (rc == 0)
		ts_log(TS_LOG_INFO, "backend", "snapshot created id=ts-%016" PRIx64 " vol=%s", snap_id,
		       vol);
out:
	pthread_mutex_unlock(&b->lock);
	if (rc == 0)
		fill_snap(&si, out);
	return rc == TS_ERR_NO_SPACE ? -ENOSPC : rc;
}

static int dp_snap_find(void *ctx, const char *name, struct ts_csi_backend_snap *out)
{
	struct dp_backend *b = ctx;
	struct ts_chain_snapshot_info si;
	char pname[TS_VOLUME_NAME_MAX];
	int rc;

	pool_name(name, pname);
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_snapshot_find(b->vp, pname, &si);
	pthread_mutex_unlock(&b->lock);
	if (rc == 0)
		fill_snap(&si, out);
	return rc;
}

/* ---- QoS ---- */

static int dp_set_qos(void *ctx, const char *id, const struct ts_csi_qos *q)
{
	struct dp_backend *b = ctx;
	struct ts_qos_limits l = { .iops = q->iops,
				   .read_iops = q->read_iops,
				   .write_iops = q->write_iops,
				   .bps = q->bps,
				   .read_bps = q->read_bps,
				   .write_bps = q->write_bps,
				   .burst_ms = q->burst_ms,
				   .reserve_iops = q->reserve_iops };
	struct dp_export *e;
	uint64_t vol_id;
	int rc;

	if (parse_id(id, &vol_id) < 0)
		return -ENOENT;
	pthread_mutex_lock(&b->lock);
	e = export_find(b, vol_id);
	rc = e ? ts_vol_lun_set_qos(e->lun, &l) : -ENOENT;
	if (rc == 0)
		e->qos = l;
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int dp_qos_stats(void *ctx, const char *id, struct ts_csi_qos_stats *out)
{
	struct dp_backend *b = ctx;
	struct ts_qos_stats st;
	struct dp_export *e;
	uint64_t vol_id;

	if (parse_id(id, &vol_id) < 0)
		return -ENOENT;
	pthread_mutex_lock(&b->lock);
	e = export_find(b, vol_id);
	if (e)
		ts_vol_lun_qos_stats(e->lun, &st);
	pthread_mutex_unlock(&b->lock);
	if (!e)
		return -ENOENT;
	*out = (struct ts_csi_qos_stats){ .admitted = st.admitted,
					  .delayed = st.delayed,
					  .queued_now = st.queued_now,
					  .delay_ns_total = st.delay_ns_total,
					  .dyn_cap_iops = st.dyn_cap_iops };
	return 0;
}

/* ---- group snapshots ---- */

static void member_name(const char *group, uint64_t vol_id, char out[TS_VOLUME_NAME_MAX])
{
	char full[TS_CSI_NAME_MAX + 32];

	snprintf(full, sizeof(full), "%s/tv-%016" PRIx64, group, vol_id);
	pool_name(full, out);
}

static int dp_group_snap_create(void *ctx, const char *name, const char *const *vols, size_t n,
				struct ts_csi_backend_snap *out)
{
	struct dp_backend *b = ctx;
	struct ts_gsnap_member *m = NULL;
	struct ts_gsnap_timing t = { 0 };
	char (*pn)[TS_VOLUME_NAME_MAX] = NULL;
	struct ts_chain_snapshot_info si;
	size_t found = 0;
	int rc = 0;

	if (!n || n > TS_CSI_GROUP_MAX)
		return -EINVAL;
	m = ts_calloc(n, sizeof(*m));
	pn = ts_calloc(n, sizeof(*pn));
	if (!m || !pn) {
		rc = -ENOMEM;
		goto free;
	}
	pthread_mutex_lock(&b->lock);
	for (size_t i = 0; i < n && !rc; i++) {
		struct ts_vpool_volume_info vi;

		rc = parse_id(vols[i], &m[i].vol_id);
		if (!rc)
			rc = ts_vpool_volume_info(b->vp, m[i].vol_id, &vi);
		if (rc)
			break;
		member_name(name, m[i].vol_id, pn[i]);
		m[i].ops = &ts_gsnap_vpool_ops;
		m[i].ctx = b->vp;
		m[i].name = pn[i];
		rc = ts_chain_snapshot_find(b->vp, pn[i], &si);
		if (rc == 0) {
			if (si.volume != m[i].vol_id)
				rc = -EEXIST;
			m[i].snap_id = si.id;
			found++;
		} else if (rc == -ENOENT) {
			rc = 0;
		}
	}
	if (rc)
		goto out;
	if (found && found < n) {
		/* A cut interrupted between members: not one point in time; cut again. */
		ts_log(TS_LOG_WARN, "backend", "group snapshot name=%s: removing a partial cut (%zu of %zu)",
		       name, found, n);
		for (size_t i = 0; i < n && !rc; i++)
			if (m[i].snap_id) {
				rc = ts_chain_snapshot_delete(b->vp, m[i].snap_id);
				m[i].snap_id = 0;
			}
		if (rc)
			goto out;
	}
	if (found < n) {
		rc = ts_gsnap_take(m, n, DP_GROUP_HOLD_NS, &t);
		if (rc)
			goto out;
		ts_log(TS_LOG_INFO, "backend",
		       "group snapshot cut name=%s members=%zu hold_us=%" PRIu64 " snap_us=%" PRIu64
		       " pause_us=%" PRIu64,
		       name, n, t.hold_ns / 1000, t.snap_ns / 1000, t.total_pause_ns / 1000);
	}
	for (size_t i = 0; i < n && !rc; i++) {
		rc = ts_chain_snapshot_info(b->vp, m[i].snap_id, &si);
		if (!rc)
			fill_snap(&si, &out[i]);
	}
out:
	pthread_mutex_unlock(&b->lock);
free:
	ts_free(m);
	ts_free(pn);
	return rc == TS_ERR_NO_SPACE ? -ENOSPC : rc;
}

static int dp_snap_delete(void *ctx, const char *id)
{
	struct dp_backend *b = ctx;
	uint64_t snap_id;
	int rc;

	if (parse_snap_id(id, &snap_id) < 0)
		return 0;
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_snapshot_delete(b->vp, snap_id);
	pthread_mutex_unlock(&b->lock);
	return rc == -ENOENT ? 0 : rc;
}

static int dp_snap_list(void *ctx, const char *snap, const char *vol, const char *after,
			struct ts_csi_backend_snap *out, size_t max, size_t *n, bool *more)
{
	struct dp_backend *b = ctx;
	struct ts_chain_snapshot_info *si;
	uint64_t vol_id = 0, start = 0, snap_id;
	int got;

	*n = 0;
	*more = false;
	if (after) {
		if (parse_snap_id(after, &start) < 0)
			return -EINVAL;
		start++;
	}
	if (vol && (parse_id(vol, &vol_id) < 0 || !vol_id))
		return 0; /* not one of ours: no snapshots */
	if (snap) {
		struct ts_chain_snapshot_info one;

		if (!max || parse_snap_id(snap, &snap_id) < 0 || snap_id < start ||
		    ts_chain_snapshot_info(b->vp, snap_id, &one) < 0 ||
		    (vol_id && one.volume != vol_id))
			return 0;
		fill_snap(&one, &out[0]);
		*n = 1;
		return 0;
	}
	si = ts_malloc((max + 1) * sizeof(*si));
	if (!si)
		return -ENOMEM;
	got = ts_chain_snapshot_list(b->vp, vol_id, start, si, max + 1);
	if (got > 0) {
		*n = TS_MIN((size_t)got, max);
		*more = (size_t)got > max;
		for (size_t i = 0; i < *n; i++)
			fill_snap(&si[i], &out[i]);
	}
	ts_free(si);
	return got < 0 ? got : 0;
}

static int dp_create_from(void *ctx, const struct ts_csi_vol_spec *spec, enum ts_csi_src_kind kind,
			  const char *src, struct ts_csi_backend_vol *out)
{
	struct dp_backend *b = ctx;
	struct ts_chain_snapshot_info si;
	struct ts_vpool_volume_info info;
	char name[TS_VOLUME_NAME_MAX];
	uint64_t src_id, vol_id, size, src_size;
	int rc;

	if ((spec->ec_k || spec->ec_m) && (spec->ec_k != b->k || spec->ec_m != b->m))
		return -EINVAL;
	rc = kind == TS_CSI_SRC_SNAPSHOT ? parse_snap_id(src, &src_id) : parse_id(src, &src_id);
	if (rc < 0)
		return -ENOENT;
	size = TS_ALIGN_UP(spec->capacity_bytes, TS_VOLUME_BLOCK);
	pool_name(spec->name, name);
	pthread_mutex_lock(&b->lock);
	rc = ts_chain_volume_find(b->vp, name, &vol_id);
	if (rc == 0)
		goto found; /* a retry after a crash: the clone is there */
	if (rc != -ENOENT)
		goto out;
	if (kind == TS_CSI_SRC_SNAPSHOT) {
		rc = ts_chain_snapshot_info(b->vp, src_id, &si);
		src_size = si.size;
	} else {
		rc = ts_vpool_volume_info(b->vp, src_id, &info);
		src_size = info.size;
	}
	if (rc)
		goto out;
	if (size && size < src_size) {
		rc = -ERANGE;
		goto out;
	}
	rc = ts_chain_clone(b->vp,
			    kind == TS_CSI_SRC_SNAPSHOT ? TS_CHAIN_FROM_SNAPSHOT : TS_CHAIN_FROM_VOLUME,
			    src_id, name, size, &vol_id);
	if (rc)
		goto out;
	ts_log(TS_LOG_INFO, "backend", "clone created vol=tv-%016" PRIx64 " from=%s", vol_id, src);
found:
	rc = ts_vpool_volume_info(b->vp, vol_id, &info);
	if (rc == 0)
		rc = export_volume(b, vol_id);
	if (rc == 0)
		fill_vol(b, vol_id, info.size, out);
out:
	pthread_mutex_unlock(&b->lock);
	return rc == TS_ERR_NO_SPACE ? -ENOSPC : rc;
}

static int dp_snap_delta(void *ctx, const char *base, const char *target, uint64_t start,
			 struct ts_csi_range *out, size_t max, size_t *n, uint64_t *next,
			 uint64_t *size)
{
	struct dp_backend *b = ctx;
	struct ts_chain_snapshot_info si;
	struct ts_chain_range *r;
	uint64_t base_id = 0, target_id;
	int got;

	*n = 0;
	*next = TS_CHAIN_END;
	if (!max)
		return -EINVAL;
	if (parse_snap_id(target, &target_id) < 0 || (base && parse_snap_id(base, &base_id) < 0))
		return -ENOENT;
	got = ts_chain_snapshot_info(b->vp, target_id, &si);
	if (got == 0 && base)
		got = ts_chain_snapshot_info(b->vp, base_id, &(struct ts_chain_snapshot_info){ 0 });
	if (got < 0)
		return got;
	*size = si.size;
	if (start > si.size)
		return -ERANGE;
	if (start == si.size)
		return 0;
	/* The first range may begin before start (it must only end after it). */
	start = start / TS_VOLUME_BLOCK * TS_VOLUME_BLOCK;
	r = ts_malloc(max * sizeof(*r));
	if (!r)
		return -ENOMEM;
	got = ts_chain_delta(b->vp, base_id, target_id, start, r, max, next);
	for (int i = 0; i < got; i++)
		out[i] = (struct ts_csi_range){ r[i].offset, r[i].length };
	ts_free(r);
	if (got < 0)
		return got;
	*n = (size_t)got;
	if (*next == TS_CHAIN_END)
		*next = UINT64_MAX;
	return 0;
}

/* ---- node side: the shared iSCSI attach table (iscsi_attach.h) ---- */

static int dp_attach(void *ctx, const char *id, const char *attach, char *dev, size_t dev_len)
{
	struct dp_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_open(b->attach, attach, dev, dev_len);
}

static int dp_detach(void *ctx, const char *id, const char *dev)
{
	struct dp_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_close(b->attach, dev);
}

static int dp_refresh(void *ctx, const char *id, const char *dev, uint64_t *out_bytes)
{
	struct dp_backend *b = ctx;

	(void)id;
	return ts_csi_iscsi_attach_refresh(b->attach, dev, out_bytes);
}

static void dp_destroy(void *ctx)
{
	struct dp_backend *b = ctx;

	if (!b)
		return;
	ts_csi_iscsi_attach_destroy(b->attach);
	for (unsigned i = 0; i < b->nexports; i++)
		ts_vol_lun_unexport(b->exports[i].lun);
	ts_qos_domain_destroy(b->qd); /* after the LUNs: their QoS handles are gone */
	ts_free(b->state_dir);
	pthread_mutex_destroy(&b->lock);
	ts_free(b);
}

static const struct ts_csi_backend_ops g_dp_ops = {
	.name = "dataplane",
	.probe = dp_probe,
	.create = dp_create,
	.find = dp_find,
	.remove = dp_remove,
	.expand = dp_expand,
	.capacity = dp_capacity,
	.snap_create = dp_snap_create,
	.snap_find = dp_snap_find,
	.snap_delete = dp_snap_delete,
	.snap_list = dp_snap_list,
	.create_from = dp_create_from,
	.snap_delta = dp_snap_delta,
	.set_qos = dp_set_qos,
	.qos_stats = dp_qos_stats,
	.group_snap_create = dp_group_snap_create,
	.attach = dp_attach,
	.detach = dp_detach,
	.refresh = dp_refresh,
	.destroy = dp_destroy,
	/* every IO of a volume passes its arbiter (volumedriver/arbiter) and one
	 * iSCSI engine's reservation state, whichever node it comes from */
	.multi_node_writers = true,
};

int ts_csi_backend_dataplane_create(const struct ts_csi_dataplane_opts *o,
				    const struct ts_csi_backend_ops **ops, void **ctx)
{
	struct dp_backend *b;
	char dir[4200];
	uint64_t ids[256], start = 0;
	int n, rc;

	if (!o || !o->vpool || !o->iscsi || !o->portal || !o->state_dir || !ops || !ctx ||
	    strlen(o->portal) >= sizeof(b->portal))
		return -EINVAL;
	b = ts_calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	pthread_mutex_init(&b->lock, NULL);
	b->vp = o->vpool;
	b->srv = o->iscsi;
	b->k = o->k;
	b->m = o->m;
	b->probe_fn = o->probe;
	b->probe_arg = o->probe_arg;
	memcpy(b->group_uuid, o->group_uuid, 16);
	strcpy(b->portal, o->portal);
	b->state_dir = ts_strdup(o->state_dir);
	if (!b->state_dir) {
		rc = -ENOMEM;
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s/pr", o->state_dir);
	rc = ts_mkdir_p(dir);
	if (rc < 0)
		goto fail;
	rc = ts_csi_iscsi_attach_create(o->state_dir, &b->attach);
	if (rc < 0)
		goto fail;
	rc = ts_qos_domain_create(&b->qd);
	if (rc < 0)
		goto fail;
	/* Serve every volume the pool holds. */
	while ((n = ts_vpool_volume_list(b->vp, start, ids, TS_ARRAY_SIZE(ids))) > 0) {
		for (int i = 0; i < n; i++) {
			rc = export_volume(b, ids[i]);
			if (rc < 0)
				goto fail;
		}
		start = ids[n - 1] + 1;
	}
	if (n < 0) {
		rc = n;
		goto fail;
	}
	*ops = &g_dp_ops;
	*ctx = b;
	return 0;
fail:
	dp_destroy(b);
	return rc;
}
