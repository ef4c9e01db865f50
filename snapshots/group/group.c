/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group snapshot coordinator: hold all, snapshot all, release all.
 *
 * Workload. A rare control-plane call (CSI CreateVolumeGroupSnapshot) over a
 * handful of volumes, while applications keep writing to them. What matters
 * is the pause: from the first hold to the last release, new IO on the held
 * members is queued. The pause is one drain of in-flight IO per member (held
 * one after the other, the drains overlap with IO still completing on the
 * members not yet held) plus one snapshot commit per member.
 *
 * Why hold everything before snapshotting anything: a snapshot is taken at
 * the instant its member is held. Were member A snapshotted and released
 * before B was held, a write to B acknowledged after A's release but
 * causally after a write to A that A's snapshot missed ... would be in B's
 * snapshot, and the group would show an effect without its cause. With every
 * hold in place before the first snapshot, one instant T (the last hold
 * established) separates every member's "in" writes (admitted before T)
 * from its "out" writes (acknowledged after T).
 *
 * Failure. Holds are taken in canonical order with one shared deadline;
 * snapshots follow in the same order. The first failure stops the protocol:
 * every hold is released at once (shortest pause), then the snapshots
 * already taken are removed through unsnap, then every member's snap_id is
 * cleared. unsnap runs without the holds: removing a snapshot does not need
 * the volume to be still.
 *
 * THREAD SAFETY: no state outside the call; engines synchronise themselves.
 */
#include "snapshots/group/group.h"

#include <errno.h>
#include <stdlib.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"

/* ---------------------------------------------------- the vpool engine */

static int vpool_hold(void *ctx, uint64_t vol_id, uint64_t deadline_ns)
{
	return ts_vpool_volume_hold(ctx, vol_id, deadline_ns);
}

static int vpool_snap(void *ctx, uint64_t vol_id, const char *name, uint64_t *snap_id)
{
	return ts_chain_snapshot(ctx, vol_id, name, snap_id);
}

static int vpool_unsnap(void *ctx, uint64_t snap_id)
{
	return ts_chain_snapshot_delete(ctx, snap_id);
}

static void vpool_release(void *ctx, uint64_t vol_id)
{
	ts_vpool_volume_release(ctx, vol_id);
}

const struct ts_gsnap_engine_ops ts_gsnap_vpool_ops = {
	.hold = vpool_hold,
	.snap = vpool_snap,
	.unsnap = vpool_unsnap,
	.release = vpool_release,
};

/* ---------------------------------------------------- the coordinator */

static int member_cmp(const void *a, const void *b)
{
	const struct ts_gsnap_member *x = *(struct ts_gsnap_member *const *)a;
	const struct ts_gsnap_member *y = *(struct ts_gsnap_member *const *)b;
	uintptr_t cx = (uintptr_t)x->ctx, cy = (uintptr_t)y->ctx;

	if (cx != cy)
		return cx < cy ? -1 : 1;
	if (x->vol_id != y->vol_id)
		return x->vol_id < y->vol_id ? -1 : 1;
	return 0;
}

static int ops_ok(const struct ts_gsnap_engine_ops *o)
{
	return o && o->hold && o->snap && o->unsnap && o->release;
}

/* The members sorted in canonical order, or NULL (-EINVAL / -ENOMEM in *rc). */
static struct ts_gsnap_member **sorted(struct ts_gsnap_member *m, size_t n, int *rc)
{
	struct ts_gsnap_member **o;
	size_t i;

	for (i = 0; i < n; i++)
		if (!ops_ok(m[i].ops)) {
			*rc = -EINVAL;
			return NULL;
		}
	o = ts_calloc(n, sizeof(*o));
	if (!o) {
		*rc = -ENOMEM;
		return NULL;
	}
	for (i = 0; i < n; i++)
		o[i] = &m[i];
	qsort(o, n, sizeof(*o), member_cmp);
	for (i = 1; i < n; i++)
		if (member_cmp(&o[i - 1], &o[i]) == 0) {
			ts_free(o);
			*rc = -EINVAL;
			return NULL;
		}
	return o;
}

int ts_gsnap_take(struct ts_gsnap_member *m, size_t n, uint64_t timeout_ns,
		  struct ts_gsnap_timing *t)
{
	struct ts_gsnap_member **o = NULL;
	uint64_t t0, t1 = 0, t2 = 0, deadline;
	size_t i, held = 0, snapped = 0;
	int rc = 0;

	if (t)
		*t = (struct ts_gsnap_timing){ 0 };
	if (!m || !n)
		return -EINVAL;
	for (i = 0; i < n; i++)
		m[i].snap_id = 0;
	o = sorted(m, n, &rc);
	if (!o)
		return rc;

	t0 = ts_now_ns();
	deadline = timeout_ns > UINT64_MAX - t0 ? UINT64_MAX : t0 + timeout_ns;
	for (held = 0; held < n; held++) {
		rc = o[held]->ops->hold(o[held]->ctx, o[held]->vol_id, deadline);
		if (rc)
			goto release;
	}
	t1 = ts_now_ns();
	for (snapped = 0; snapped < n; snapped++) {
		struct ts_gsnap_member *x = o[snapped];
		rc = x->ops->snap(x->ctx, x->vol_id, x->name ? x->name : "", &x->snap_id);
		if (rc) {
			x->snap_id = 0;
			break;
		}
	}
	t2 = ts_now_ns();
release:
	for (i = held; i-- > 0;)
		o[i]->ops->release(o[i]->ctx, o[i]->vol_id);
	if (t) {
		uint64_t t3 = ts_now_ns();
		t->hold_ns = (t1 ? t1 : t3) - t0;
		t->snap_ns = t1 ? t2 - t1 : 0;
		t->total_pause_ns = t3 - t0;
	}
	if (rc) {
		ts_log(TS_LOG_WARN, "gsnap", "group snapshot failed err=%d members=%zu held=%zu snapped=%zu",
		       rc, n, held, snapped);
		for (i = 0; i < snapped; i++) {
			int urc = o[i]->ops->unsnap(o[i]->ctx, o[i]->snap_id);
			if (urc)
				ts_log(TS_LOG_ERROR, "gsnap",
				       "cannot remove snapshot of failed group snap=%llu err=%d",
				       (unsigned long long)o[i]->snap_id, urc);
		}
		for (i = 0; i < n; i++)
			m[i].snap_id = 0;
	}
	ts_free(o);
	return rc;
}
