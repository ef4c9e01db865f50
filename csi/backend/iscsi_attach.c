/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The attach table of iSCSI-served backends (iscsi_attach.h). It used to
 * live inside backend_dataplane.c; the remote backend needs exactly the same
 * node side (the engine is elsewhere, the attach is local), so it is one
 * small module both backends hold an instance of.
 *
 * A fixed table: a node attaches a bounded number of volumes (kubelet's
 * max volumes per node is far below it), and a fixed array keeps detach on
 * a failure path allocation-free.
 *
 * THREAD SAFETY: t->lock covers the table and is held across
 * ts_attach_open/close so two stages of one table never race for a slot.
 */
#include "csi/backend/iscsi_attach.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "csi/backend/backend.h"
#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach.h"

#define ATTACH_MAX 256

struct attach_ent {
	char dev[TS_CSI_DEV_MAX];
	struct ts_attach *a;
};

struct ts_csi_iscsi_attach {
	pthread_mutex_t lock;
	char *parent; /* <state_dir>/attach */
	struct attach_ent ents[ATTACH_MAX];
	unsigned n;
};

int ts_csi_iscsi_attach_create(const char *state_dir, struct ts_csi_iscsi_attach **out)
{
	struct ts_csi_iscsi_attach *t;

	if (!state_dir || !out)
		return -EINVAL;
	t = ts_calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->parent = ts_malloc(strlen(state_dir) + sizeof("/attach"));
	if (!t->parent) {
		ts_free(t);
		return -ENOMEM;
	}
	sprintf(t->parent, "%s/attach", state_dir);
	pthread_mutex_init(&t->lock, NULL);
	*out = t;
	return 0;
}

int ts_csi_iscsi_attach_open(struct ts_csi_iscsi_attach *t, const char *url, char *dev,
			     size_t dev_len)
{
	struct ts_attach_opts o = { 0 };
	struct ts_attach *a;
	const char *path;
	int rc;

	if (strncmp(url, "iscsi://", 8) != 0)
		return -EINVAL;
	rc = ts_mkdir_p(t->parent);
	if (rc < 0)
		return rc;
	o.url = url;
	o.mount_parent = t->parent;
	pthread_mutex_lock(&t->lock);
	if (t->n == ATTACH_MAX) {
		rc = -ENOSPC;
		goto out;
	}
	rc = ts_attach_open(&o, &a);
	if (rc < 0)
		goto out;
	path = ts_attach_device_path(a);
	if (strlen(path) >= dev_len || strlen(path) >= TS_CSI_DEV_MAX) {
		ts_attach_close(a);
		rc = -ENAMETOOLONG;
		goto out;
	}
	strcpy(dev, path);
	strcpy(t->ents[t->n].dev, path);
	t->ents[t->n++].a = a;
out:
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ts_csi_iscsi_attach_close(struct ts_csi_iscsi_attach *t, const char *dev)
{
	int rc = 0;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++) {
		if (strcmp(t->ents[i].dev, dev) != 0)
			continue;
		rc = ts_attach_close(t->ents[i].a);
		if (rc == 0) /* still held (-EBUSY): the attach stays, for the retry */
			t->ents[i] = t->ents[--t->n];
		break;
	}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

int ts_csi_iscsi_attach_refresh(struct ts_csi_iscsi_attach *t, const char *dev,
				uint64_t *out_bytes)
{
	int rc = -ENOENT;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->n; i++)
		if (!strcmp(t->ents[i].dev, dev)) {
			rc = ts_attach_refresh(t->ents[i].a, out_bytes);
			break;
		}
	pthread_mutex_unlock(&t->lock);
	return rc;
}

void ts_csi_iscsi_attach_destroy(struct ts_csi_iscsi_attach *t)
{
	if (!t)
		return;
	for (unsigned i = 0; i < t->n; i++)
		ts_attach_close(t->ents[i].a);
	pthread_mutex_destroy(&t->lock);
	ts_free(t->parent);
	ts_free(t);
}

/* ---- the attach-only backend ---- */

static int ab_probe(void *ctx)
{
	(void)ctx;
	return 0;
}

static int ab_create(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_csi_backend_vol *out)
{
	(void)ctx;
	(void)spec;
	(void)out;
	return -EOPNOTSUPP;
}

static int ab_remove(void *ctx, const char *id)
{
	(void)ctx;
	(void)id;
	return -EOPNOTSUPP;
}

static int ab_expand(void *ctx, const char *id, uint64_t bytes, uint64_t *out_bytes)
{
	(void)ctx;
	(void)id;
	(void)bytes;
	(void)out_bytes;
	return -EOPNOTSUPP;
}

static int ab_capacity(void *ctx, uint64_t *avail_bytes)
{
	(void)ctx;
	(void)avail_bytes;
	return -EOPNOTSUPP;
}

static int ab_attach(void *ctx, const char *id, const char *attach, char *dev, size_t dev_len)
{
	(void)id;
	return ts_csi_iscsi_attach_open(ctx, attach, dev, dev_len);
}

static int ab_detach(void *ctx, const char *id, const char *dev)
{
	(void)id;
	return ts_csi_iscsi_attach_close(ctx, dev);
}

static int ab_refresh(void *ctx, const char *id, const char *dev, uint64_t *out_bytes)
{
	(void)id;
	return ts_csi_iscsi_attach_refresh(ctx, dev, out_bytes);
}

static void ab_destroy(void *ctx)
{
	ts_csi_iscsi_attach_destroy(ctx);
}

static const struct ts_csi_backend_ops g_attach_only_ops = {
	.name = "attach",
	/* writers on several nodes are the engine's to order, wherever it runs */
	.multi_node_writers = true,
	.probe = ab_probe,
	.create = ab_create,
	.remove = ab_remove,
	.expand = ab_expand,
	.capacity = ab_capacity,
	.attach = ab_attach,
	.detach = ab_detach,
	.refresh = ab_refresh,
	.destroy = ab_destroy,
};

int ts_csi_iscsi_attach_backend(const char *state_dir, const struct ts_csi_backend_ops **ops,
				void **ctx)
{
	struct ts_csi_iscsi_attach *t;
	int rc;

	if (!ops || !ctx)
		return -EINVAL;
	rc = ts_csi_iscsi_attach_create(state_dir, &t);
	if (rc)
		return rc;
	*ops = &g_attach_only_ops;
	*ctx = t;
	return 0;
}
