/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-volume QoS as CSI sees it: the parameter keys (StorageClass
 * `parameters` at creation, VolumeAttributesClass `mutable_parameters` at
 * creation and in ControllerModifyVolume), their validation, and the
 * ControllerModifyVolume handler. The data plane enforces the limits
 * (dataplane/qos, applied by the backend's set_qos).
 *
 * Keys (values are decimal integers; 0 = unlimited / none):
 *   iopsLimit, readIopsLimit, writeIopsLimit   operations per second
 *   bpsLimit, readBpsLimit, writeBpsLimit      bytes per second; a suffix
 *                                              k, M, G (10^3..) or Ki, Mi,
 *                                              Gi (2^10..) is accepted
 *   burstMs                                    bucket depth in ms of rate
 *                                              (1..60000; 0 = 1000)
 *   iopsReservation                            IOPS kept under contention
 * A reservation above a set iopsLimit is INVALID_ARGUMENT.
 *
 * ControllerModifyVolume changes only the keys it is given (the spec: no
 * change based on absent keys), applies them to the serving engine online,
 * then records them; a retry with the same keys is a no-op that succeeds.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

enum qkind { Q_COUNT, Q_BYTES, Q_MS };

static const struct qkey {
	const char *key;
	size_t off;
	enum qkind kind;
} g_keys[] = {
	{ "iopsLimit", offsetof(struct ts_csi_qos, iops), Q_COUNT },
	{ "readIopsLimit", offsetof(struct ts_csi_qos, read_iops), Q_COUNT },
	{ "writeIopsLimit", offsetof(struct ts_csi_qos, write_iops), Q_COUNT },
	{ "bpsLimit", offsetof(struct ts_csi_qos, bps), Q_BYTES },
	{ "readBpsLimit", offsetof(struct ts_csi_qos, read_bps), Q_BYTES },
	{ "writeBpsLimit", offsetof(struct ts_csi_qos, write_bps), Q_BYTES },
	{ "burstMs", offsetof(struct ts_csi_qos, burst_ms), Q_MS },
	{ "iopsReservation", offsetof(struct ts_csi_qos, reserve_iops), Q_COUNT },
};

#define QOS_KEYS "iopsLimit, readIopsLimit, writeIopsLimit, bpsLimit, readBpsLimit, " \
		 "writeBpsLimit, burstMs, iopsReservation"

static const struct qkey *find_key(const char *k)
{
	for (size_t i = 0; i < TS_ARRAY_SIZE(g_keys); i++)
		if (!strcmp(g_keys[i].key, k))
			return &g_keys[i];
	return NULL;
}

bool csi_qos_is_key(const char *k)
{
	return k && find_key(k);
}

/* Decimal with an optional k/M/G/Ki/Mi/Gi suffix (bytes only); -EINVAL, -ERANGE. */
static int parse_value(const char *s, enum qkind kind, uint64_t *out)
{
	static const struct {
		const char *sfx;
		uint64_t mul;
	} sfx[] = { { "k", 1000ull },     { "M", 1000000ull },  { "G", 1000000000ull },
		    { "Ki", 1ull << 10 }, { "Mi", 1ull << 20 }, { "Gi", 1ull << 30 } };
	uint64_t v, mul = 1;
	char *end;

	if (!s || s[0] < '0' || s[0] > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	if (*end) {
		size_t i;

		if (kind != Q_BYTES)
			return -EINVAL;
		for (i = 0; i < TS_ARRAY_SIZE(sfx) && strcmp(end, sfx[i].sfx); i++)
			;
		if (i == TS_ARRAY_SIZE(sfx))
			return -EINVAL;
		mul = sfx[i].mul;
	}
	if (v > UINT64_MAX / mul || v * mul > (uint64_t)INT64_MAX)
		return -ERANGE;
	v *= mul;
	if (kind == Q_MS && v > 60000)
		return -ERANGE;
	*out = v;
	return 0;
}

int csi_qos_apply(struct csi_call *c, const char *field, const char *key, const char *value,
		  struct ts_csi_qos *q)
{
	const struct qkey *k = find_key(key);
	uint64_t v;
	int rc;

	if (!k)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s: unknown key '%.64s' (known: " QOS_KEYS ")",
				field, key);
	rc = parse_value(value, k->kind, &v);
	if (rc)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"%s: %s='%.32s' is not %s", field, key, value ? value : "",
				k->kind == Q_BYTES ? "a byte rate (integer, optional k/M/G/Ki/Mi/Gi)"
				: k->kind == Q_MS  ? "an integer from 0 to 60000"
						   : "a non-negative integer");
	if (k->kind == Q_MS)
		*(uint32_t *)(void *)((char *)q + k->off) = (uint32_t)v;
	else
		*(uint64_t *)(void *)((char *)q + k->off) = v;
	return 0;
}

int csi_qos_parse_mutable(struct csi_call *c, const char *field, void *const *kv, size_t n,
			  struct ts_csi_qos *q)
{
	for (size_t i = 0; i < n; i++) {
		const struct csi_kv *e = kv[i];

		if (csi_qos_apply(c, field, e->key ? e->key : "", e->value, q))
			return -1;
	}
	return 0;
}

int csi_qos_check(struct csi_call *c, const struct ts_csi_qos *q)
{
	uint64_t lim = q->iops;

	if (q->read_iops && q->write_iops && (!lim || q->read_iops + q->write_iops < lim))
		lim = q->read_iops + q->write_iops;
	if (q->reserve_iops && lim && q->reserve_iops > lim)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"iopsReservation %" PRIu64 " exceeds the IOPS limit %" PRIu64,
				q->reserve_iops, lim);
	return 0;
}

int csi_modify_volume(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__ControllerModifyVolumeRequest *req = reqp;
	struct ts_csi_volume v;
	struct ts_csi_qos q;
	int rc;

	(void)respp;
	if (csi_need_controller(d, c))
		return -1;
	if (!d->be->set_qos)
		return csi_fail(c, CSI_UNIMPLEMENTED, "backend %s has no mutable parameters",
				d->be->name);
	if (csi_check_id(c, "volume_id", req->volume_id))
		return -1;
	pthread_mutex_lock(&d->ctl_lock);
	rc = d->st->get(d->st_ctx, req->volume_id, &v);
	if (rc) {
		rc = rc == -ENOENT ? csi_fail(c, CSI_NOT_FOUND, "volume %s does not exist",
					      req->volume_id)
				   : csi_fail_err(c, rc, "metadata store lookup");
		goto out;
	}
	q = v.qos;
	rc = csi_qos_parse_mutable(c, "mutable_parameters", (void *const *)req->mutable_parameters,
				   req->n_mutable_parameters, &q);
	if (!rc)
		rc = csi_qos_check(c, &q);
	if (rc || !memcmp(&q, &v.qos, sizeof(q)))
		goto out; /* invalid, or nothing changes (a retry) */
	rc = csi_check_live(c);
	if (rc)
		goto out;
	rc = d->be->set_qos(d->be_ctx, v.id, &q);
	if (rc) {
		rc = csi_fail_err(c, rc, "backend set QoS");
		goto out;
	}
	v.qos = q;
	rc = d->st->put(d->st_ctx, &v);
	if (rc) {
		/* The engine runs the new limits; the CO retries and we write again. */
		rc = csi_fail_err(c, rc, "metadata store write");
		goto out;
	}
	ts_log(TS_LOG_INFO, "csi",
	       "volume modified id=%s iops=%" PRIu64 " read_iops=%" PRIu64 " write_iops=%" PRIu64
	       " bps=%" PRIu64 " read_bps=%" PRIu64 " write_bps=%" PRIu64 " burst_ms=%u"
	       " reserve_iops=%" PRIu64,
	       v.id, q.iops, q.read_iops, q.write_iops, q.bps, q.read_bps, q.write_bps, q.burst_ms,
	       q.reserve_iops);
out:
	pthread_mutex_unlock(&d->ctl_lock);
	return rc;
}

int csi_qos_reapply(struct ts_csi_driver *d)
{
	struct ts_csi_volume *batch;
	static const struct ts_csi_qos none;
	char after[TS_CSI_ID_MAX + 1] = "";
	size_t n;
	bool more = true;
	int rc = 0;

	if (!d->controller || !d->st || !d->be->set_qos)
		return 0;
	batch = ts_malloc(64 * sizeof(*batch));
	if (!batch)
		return -ENOMEM;
	while (more && !rc) {
		rc = d->st->list(d->st_ctx, after, batch, 64, &n, &more);
		for (size_t i = 0; !rc && i < n; i++) {
			if (!memcmp(&batch[i].qos, &none, sizeof(none)))
				continue;
			rc = d->be->set_qos(d->be_ctx, batch[i].id, &batch[i].qos);
			if (rc == -ENOENT) {
				ts_log(TS_LOG_WARN, "csi", "QoS for a volume the backend lacks id=%s",
				       batch[i].id);
				rc = 0;
			} else if (rc == -EAGAIN) {
				/* a remote engine down at start must not keep the controller down */
				ts_log(TS_LOG_WARN, "csi",
				       "QoS not re-applied now, the volume's engine is unreachable id=%s",
				       batch[i].id);
				rc = 0;
			}
		}
		if (n)
			snprintf(after, sizeof(after), "%s", batch[n - 1].id);
		else
			more = false;
	}
	ts_free(batch);
	return rc;
}
