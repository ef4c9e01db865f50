/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The array group as a block device: a member provider (dataplane/member)
 * in front of a group, so whatever consumes members (the volume pool, the
 * benches, the tests) can sit on an array group. The one adapter used by
 * the pool test vehicle and by the cluster (tessera dev, the controller).
 *
 * Workload. Every IO of the volumes above: reads and writes pass straight
 * to the group's asynchronous calls; flushes and FUA writes are rarer but
 * on the commit path of the volume log.
 *
 * Invariants. Each member IO completes exactly once: its callback runs on a
 * group worker thread from the group's completion. The group has no FUA: a
 * FUA write is the write and then a flush of the same group, queued from
 * the write's completion, so no thread ever blocks in submit. Each enter
 * hook call is matched by exactly one leave call, after the callback
 * returned (or at once, if the submission fails), so an owner that swaps
 * the group can wait for the IO in flight to drain.
 *
 * THREAD SAFETY: no lock of its own. The device's state is fixed at
 * creation; per-IO state lives in the member IO's provider scratch
 * (priv[0] the device, priv[1] the group serving it). Submissions may come
 * from any thread, completions run on group workers; the hooks must be
 * thread safe.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"

struct agrp_dev {
	struct ts_agrp *g;
	struct ts_agrp_device_opts o;
};

static void dev_complete(struct ts_member_io *io, int status)
{
	struct agrp_dev *d = io->priv[0];
	void (*leave)(void *) = d->o.leave;
	void *ctx = d->o.ctx;

	/* once the callback ran, the submitter may destroy the device: keep
	 * what leave needs on the stack (its owner, ctx, outlives its IO) */
	io->cb(io, status);
	if (leave)
		leave(ctx);
}

static void dev_done(void *arg, int status)
{
	dev_complete(arg, status);
}

static void dev_read_done(void *arg, int status)
{
	struct ts_member_io *io = arg;
	struct agrp_dev *d = io->priv[0];

	/* a fenced group's reads are not served from the replicas either */
	if (status && status != TS_ERR_FENCED && d->o.read_fallback &&
	    d->o.read_fallback(d->o.ctx, io->offset, io->len, io->buf) == 0)
		status = 0;
	dev_complete(io, status);
}

/* The write is done: now the flush that makes it durable, then complete. */
static void dev_fua_done(void *arg, int status)
{
	struct ts_member_io *io = arg;

	if (status == 0)
		status = ts_agrp_flush(io->priv[1], dev_done, io);
	if (status)
		dev_complete(io, status);
}

static int dev_submit(void *ctx, struct ts_member_io *io)
{
	struct agrp_dev *d = ctx;
	struct ts_agrp *g = d->o.enter ? d->o.enter(d->o.ctx) : d->g;
	int rc;

	io->priv[0] = d;
	io->priv[1] = g;
	if (!g) {
		rc = TS_ERR_DEGRADED;
	} else {
		switch (io->op) {
		case TS_MEMBER_READ:
			rc = ts_agrp_read(g, io->offset, io->len, io->buf, dev_read_done, io);
			break;
		case TS_MEMBER_WRITE:
			rc = ts_agrp_write(g, io->offset, io->len, io->buf,
					   (io->flags & TS_MEMBER_FUA) ? dev_fua_done : dev_done, io);
			break;
		case TS_MEMBER_FLUSH:
			rc = ts_agrp_flush(g, dev_done, io);
			break;
		default:
			rc = -EOPNOTSUPP;
		}
	}
	if (rc && d->o.leave)
		d->o.leave(d->o.ctx);
	return rc;
}

static void dev_destroy(void *ctx)
{
	ts_free(ctx);
}

static const struct ts_member_ops g_dev_ops = { .submit = dev_submit, .destroy = dev_destroy };

int ts_agrp_device_create(struct ts_agrp *g, const struct ts_agrp_device_opts *opts,
			  struct ts_member **out)
{
	struct ts_member_info info = { 0 };
	struct agrp_dev *d;
	int rc;

	if (!g || !out)
		return -EINVAL;
	d = ts_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->g = g;
	if (opts)
		d->o = *opts;
	d->o.name = NULL; /* both copied into info below: the caller's may go */
	d->o.uuid = NULL;
	info.size = ts_agrp_size(g);
	info.block_size = ts_agrp_block_size(g);
	if (opts && opts->uuid)
		memcpy(info.uuid, opts->uuid, 16);
	snprintf(info.name, sizeof(info.name), "%s", opts && opts->name ? opts->name : "agrp");
	rc = ts_member_create(&g_dev_ops, d, &info, out);
	if (rc)
		dev_destroy(d); /* not handed over: ts_member_create() failed */
	return rc;
}

void ts_agrp_device_destroy(struct ts_member *dev)
{
	ts_member_destroy(dev);
}
