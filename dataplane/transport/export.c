/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exporting members as iSCSI LUNs.
 *
 * The iSCSI engine and the member interface have the same asynchronous
 * contract (0 and exactly one callback, or an error and none), so the
 * provider is a thin translation: each LUN IO gets a member IO allocated
 * beside it, submitted to the member, and the member's completion completes
 * the LUN IO with the same status. Nothing is buffered or reordered here;
 * FUA, flush (a member FLUSH covers every write completed before it) and
 * unmap pass straight through, so the durability a peer asks for is the
 * durability the local disk gives.
 *
 * Fencing: every vdisk export is a fencing LU (dataplane/iscsi, "Fencing
 * LUs"; docs/fencing.md): the engine enforces the ownership epochs, and its
 * floor is kept in the vdisk's LDM descriptor (ts_ldm_set_fence), so a node
 * daemon restart keeps it. A LUN made by ts_transport_member_lun_create()
 * over some other member has no vdisk and cannot be fenced.
 *
 * Lifetime: the engine owns the LUN context once registered and calls
 * ops->destroy on its own loop thread after the last IO completed (never
 * from a member completion), which is where the owned member adapter is
 * destroyed (joining its worker threads is safe there).
 *
 * THREAD SAFETY: no shared mutable state: each op allocates its own
 * request; the member synchronises internally.
 */
#include "dataplane/transport/export.h"

#include <stdio.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

struct ts_transport_lun {
	struct ts_member *m;
	bool owned;
	struct ts_ldm_vdisk *vd; /* the exported vdisk (fencing floor), NULL for other members */
};

struct xio {
	struct ts_member_io mio;
	struct ts_iscsi_lun_io *lio;
};

static void xio_done(struct ts_member_io *mio, int status)
{
	struct xio *x = (struct xio *)mio; /* mio is the first member */
	struct ts_iscsi_lun_io *lio = x->lio;

	ts_free(x);
	lio->cb(lio, status);
}

static int xio_submit(void *ctx, struct ts_iscsi_lun_io *lio, enum ts_member_op op)
{
	struct ts_transport_lun *l = ctx;
	struct xio *x = ts_malloc(sizeof(*x));
	int rc;

	if (!x)
		return -ENOMEM;
	memset(x, 0, sizeof(*x));
	x->lio = lio;
	x->mio.op = op;
	x->mio.flags = (op == TS_MEMBER_WRITE && (lio->flags & TS_ISCSI_LUN_FUA)) ? TS_MEMBER_FUA : 0;
	x->mio.offset = op == TS_MEMBER_FLUSH ? 0 : lio->offset;
	x->mio.len = op == TS_MEMBER_FLUSH ? 0 : lio->len;
	x->mio.buf = (op == TS_MEMBER_READ || op == TS_MEMBER_WRITE) ? lio->buf : NULL;
	x->mio.cb = xio_done;
	x->mio.cb_arg = l;
	rc = ts_member_submit(l->m, &x->mio);
	if (rc)
		ts_free(x);
	return rc;
}

static int lun_read(void *ctx, struct ts_iscsi_lun_io *io)
{
	return xio_submit(ctx, io, TS_MEMBER_READ);
}

static int lun_write(void *ctx, struct ts_iscsi_lun_io *io)
{
	return xio_submit(ctx, io, TS_MEMBER_WRITE);
}

static int lun_flush(void *ctx, struct ts_iscsi_lun_io *io)
{
	return xio_submit(ctx, io, TS_MEMBER_FLUSH);
}

static int lun_unmap(void *ctx, struct ts_iscsi_lun_io *io)
{
	return xio_submit(ctx, io, TS_MEMBER_UNMAP);
}

static int lun_fence_save(void *ctx, uint32_t epoch, uint32_t node)
{
	struct ts_transport_lun *l = ctx;

	return l->vd ? ts_ldm_set_fence(l->vd, epoch, node) : -EOPNOTSUPP;
}

static int lun_fence_load(void *ctx, uint32_t *epoch, uint32_t *node)
{
	struct ts_transport_lun *l = ctx;
	struct ts_ldm_vdisk_info vi;

	*epoch = *node = 0;
	if (!l->vd)
		return -EOPNOTSUPP;
	ts_ldm_vdisk_info(l->vd, &vi);
	*epoch = vi.fence_epoch;
	*node = vi.fence_node;
	return 0;
}

static void lun_destroy(void *ctx)
{
	ts_transport_member_lun_destroy(ctx);
}

static const struct ts_iscsi_lun_ops g_member_lun_ops = {
	.read = lun_read,
	.write = lun_write,
	.flush = lun_flush,
	.unmap = lun_unmap,
	.fence_save = lun_fence_save,
	.fence_load = lun_fence_load,
	.destroy = lun_destroy,
};

int ts_transport_member_lun_create(struct ts_member *m, bool owned, struct ts_transport_lun **out)
{
	struct ts_transport_lun *l;

	if (!m || !out)
		return -EINVAL;
	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->m = m;
	l->owned = owned;
	*out = l;
	return 0;
}

const struct ts_iscsi_lun_ops *ts_transport_member_lun_ops(void)
{
	return &g_member_lun_ops;
}

void ts_transport_member_lun_destroy(struct ts_transport_lun *l)
{
	if (!l)
		return;
	if (l->owned)
		ts_member_destroy(l->m);
	ts_free(l);
}

void ts_transport_vdisk_iqn(const uint8_t uuid[16], char out[80])
{
	char u[37];

	ts_uuid_format(uuid, u);
	snprintf(out, 80, "iqn.2026-01.io.tessera:vd-%s", u);
}

int ts_transport_export_vdisk(struct ts_iscsi_server *srv, struct ts_ldm_vdisk *vd,
			      const char *chap_user, const char *chap_secret)
{
	struct ts_ldm_vdisk_info vi;
	struct ts_iscsi_target_opts to = { 0 };
	struct ts_iscsi_lun_info li = { 0 };
	struct ts_transport_lun *l = NULL;
	struct ts_member *m = NULL;
	char iqn[80], alias[TS_LDM_NAME_MAX + 8];
	bool target_added = false;
	int rc;

	if (!srv || !vd || !chap_user || !chap_secret || !chap_user[0] || !chap_secret[0])
		return -EINVAL;
	ts_ldm_vdisk_info(vd, &vi);
	ts_transport_vdisk_iqn(vi.uuid, iqn);
	snprintf(alias, sizeof(alias), "vdisk %s", vi.name);
	to.iqn = iqn;
	to.alias = alias;
	to.chap_user = chap_user;
	to.chap_secret = chap_secret;
	rc = ts_iscsi_target_add(srv, &to);
	if (rc)
		goto fail;
	target_added = true;
	rc = ts_ldm_vdisk_member(vd, &m);
	if (rc)
		goto fail;
	rc = ts_transport_member_lun_create(m, true, &l);
	if (rc)
		goto fail;
	l->vd = vd;
	li.fencing = true;
	li.size = vi.size;
	li.block_size = TS_LDM_BLOCK_SIZE;
	memcpy(li.uuid, vi.uuid, 16);
	li.thin = true;
	li.product = "MEMBER";
	rc = ts_iscsi_lun_add(srv, iqn, 0, &g_member_lun_ops, l, &li);
	if (rc)
		goto fail;
	ts_log(TS_LOG_INFO, "transport", "exported vdisk iqn=%s size=%llu fence_epoch=%u fence_node=%u",
	       iqn, (unsigned long long)vi.size, vi.fence_epoch, vi.fence_node);
	return 0;
fail:
	if (l)
		ts_transport_member_lun_destroy(l); /* destroys m too */
	else
		ts_member_destroy(m);
	if (target_added)
		(void)ts_iscsi_target_remove(srv, iqn);
	return rc;
}

int ts_transport_unexport_vdisk(struct ts_iscsi_server *srv, const uint8_t uuid[16])
{
	char iqn[80];

	if (!srv || !uuid)
		return -EINVAL;
	ts_transport_vdisk_iqn(uuid, iqn);
	return ts_iscsi_target_remove(srv, iqn);
}

int ts_transport_export_fence_stats(struct ts_iscsi_server *srv, const uint8_t uuid[16],
				    struct ts_iscsi_fence_stats *st)
{
	char iqn[80];

	if (!srv || !uuid || !st)
		return -EINVAL;
	ts_transport_vdisk_iqn(uuid, iqn);
	return ts_iscsi_lun_fence_stats(srv, iqn, 0, st);
}
