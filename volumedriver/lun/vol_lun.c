/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volume -> iSCSI LUN provider.
 *
 * Reads, writes and unmaps go straight to the volume's asynchronous IO; its
 * completion (on a data-plane thread) completes the engine's IO. Flushes
 * and FUA writes need a pool commit, which is synchronous: they are queued
 * to this LUN's worker thread, which runs them in order. A FUA write is the
 * write followed by a commit, acknowledged only after both.
 *
 * Lifetime: the engine owns a reference to the LUN from lun_add until its
 * ops->destroy; unexport removes the target and waits on `released` before
 * closing the volume handle, so nothing touches the volume afterwards.
 *
 * THREAD SAFETY: l->lock protects the worker queue and `released`; it is a
 * leaf lock, never held across a volume call or an engine callback.
 */
#include "volumedriver/lun/vol_lun.h"

#include <pthread.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"

struct work {
	struct work *next;
	struct ts_iscsi_lun_io *io;
	int fua_write; /* 1: write then flush; 0: flush */
};

struct ts_vol_lun {
	struct ts_iscsi_server *srv;
	struct ts_vpool *pool;
	struct ts_volume *vol;
	uint64_t vol_id;
	char *iqn;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *head, **tail;
	int stop;
	int released;
	pthread_t worker;
	int worker_started;
};

static void io_done(void *arg, int status)
{
	struct ts_iscsi_lun_io *io = arg;
	io->cb(io, status);
}

static int lun_read(void *ctx, struct ts_iscsi_lun_io *io)
{
	struct ts_vol_lun *l = ctx;
	return ts_volume_read(l->vol, io->offset, io->len, io->buf, io_done, io);
}

static int queue_work(struct ts_vol_lun *l, struct ts_iscsi_lun_io *io, int fua_write)
{
	struct work *w = ts_malloc(sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->next = NULL;
	w->io = io;
	w->fua_write = fua_write;
	pthread_mutex_lock(&l->lock);
	*l->tail = w;
	l->tail = &w->next;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int lun_write(void *ctx, struct ts_iscsi_lun_io *io)
{
	struct ts_vol_lun *l = ctx;

	if (io->flags & TS_ISCSI_LUN_FUA)
		return queue_work(l, io, 1);
	return ts_volume_write(l->vol, io->offset, io->len, io->buf, io_done, io);
}

static int lun_flush(void *ctx, struct ts_iscsi_lun_io *io)
{
	return queue_work(ctx, io, 0);
}

static int lun_unmap(void *ctx, struct ts_iscsi_lun_io *io)
{
	struct ts_vol_lun *l = ctx;
	return ts_volume_unmap(l->vol, io->offset, io->len, io_done, io);
}

static void lun_destroy(void *ctx)
{
	struct ts_vol_lun *l = ctx;

	pthread_mutex_lock(&l->lock);
	l->released = 1;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static const struct ts_iscsi_lun_ops g_vol_lun_ops = {
	.read = lun_read,
	.write = lun_write,
	.flush = lun_flush,
	.unmap = lun_unmap,
	.destroy = lun_destroy,
};

static void *worker_main(void *arg)
{
	struct ts_vol_lun *l = arg;

	for (;;) {
		struct work *w;
		int rc = 0;

		pthread_mutex_lock(&l->lock);
		while (!l->head && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		w = l->head;
		if (!w) {
			pthread_mutex_unlock(&l->lock);
			return NULL;
		}
		l->head = w->next;
		if (!l->head)
			l->tail = &l->head;
		pthread_mutex_unlock(&l->lock);

		if (w->fua_write)
			rc = ts_volume_write_sync(l->vol, w->io->offset, w->io->len, w->io->buf);
		if (rc == 0)
			rc = ts_volume_flush_sync(l->vol);
		w->io->cb(w->io, rc);
		ts_free(w);
	}
}

static void vol_lun_free(struct ts_vol_lun *l)
{
	if (l->worker_started) {
		pthread_mutex_lock(&l->lock);
		l->stop = 1;
		pthread_cond_broadcast(&l->cond);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->worker, NULL);
	}
	ts_volume_close(l->vol);
	ts_free(l->iqn);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	ts_free(l);
}

int ts_vol_lun_export(struct ts_iscsi_server *srv, struct ts_vpool *pool, uint64_t vol_id,
		      const struct ts_vol_lun_opts *opts, struct ts_vol_lun **out)
{
	struct ts_iscsi_target_opts to = { 0 };
	struct ts_iscsi_lun_info li = { 0 };
	struct ts_vol_lun *l;
	int rc;

	if (!srv || !pool || !opts || !opts->iqn || !opts->pr_state_path || !out ||
	    (!opts->chap_user != !opts->chap_secret))
		return -EINVAL;
	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	l->tail = &l->head;
	l->srv = srv;
	l->pool = pool;
	l->vol_id = vol_id;
	l->iqn = ts_strdup(opts->iqn);
	if (!l->iqn) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = ts_volume_open(pool, vol_id, &l->vol);
	if (rc < 0)
		goto fail;
	rc = pthread_create(&l->worker, NULL, worker_main, l);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	l->worker_started = 1;

	to.iqn = opts->iqn;
	to.chap_user = opts->chap_user;
	to.chap_secret = opts->chap_secret;
	rc = ts_iscsi_target_add(srv, &to);
	if (rc < 0)
		goto fail;
	li.size = ts_volume_size(l->vol);
	li.block_size = TS_VOLUME_BLOCK;
	memcpy(li.uuid, opts->uuid, 16);
	li.thin = true;
	li.pr_state_path = opts->pr_state_path;
	rc = ts_iscsi_lun_add(srv, opts->iqn, 0, &g_vol_lun_ops, l, &li);
	if (rc < 0) {
		ts_iscsi_target_remove(srv, opts->iqn);
		goto fail;
	}
	*out = l;
	return 0;
fail:
	vol_lun_free(l);
	return rc;
}

int ts_vol_lun_unexport(struct ts_vol_lun *l)
{
	int rc;

	if (!l)
		return 0;
	rc = ts_iscsi_target_remove(l->srv, l->iqn);
	/* Without the target the engine may still hold the LUN: drop it too. If
	 * neither is known to the engine it holds no reference and will not call
	 * destroy, so there is nothing to wait for. */
	if (rc < 0 && ts_iscsi_lun_remove(l->srv, l->iqn, 0) < 0)
		l->released = 1;
	pthread_mutex_lock(&l->lock);
	while (!l->released)
		pthread_cond_wait(&l->cond, &l->lock);
	pthread_mutex_unlock(&l->lock);
	vol_lun_free(l);
	return rc;
}

int ts_vol_lun_refresh(struct ts_vol_lun *l)
{
	return ts_iscsi_lun_resize(l->srv, l->iqn, 0, ts_volume_size(l->vol));
}
