/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Volume -> iSCSI LUN provider.
 *
 * Reads, writes and unmaps go to the volume's arbiter (volumedriver/arbiter:
 * the one every frontend of the volume shares, which serialises overlapping
 * IO) and from there to the volume's asynchronous IO; the completion (on a
 * data-plane thread) completes the engine's IO. Flushes need a pool commit,
 * which is synchronous: they are queued to this LUN's worker thread, which
 * runs them in order. A FUA write is the arbitrated write followed, once it
 * has completed, by a commit on the worker, acknowledged only after both.
 *
 * QoS: with a domain, every read, write and unmap first passes l->qos
 * (ts_qos_admit). Admitted at once, it is submitted as above; queued, the
 * gate's go callback (qos_go, on the domain's thread) submits it later and
 * completes the engine's IO with the error if that submission fails. Each
 * completion reports to ts_qos_done before the engine's callback. The IO
 * remembers its LUN, kind and submission time in io->priv[0..2].
 *
 * Persistent reservations: the engine hands its PR blob to pr_save after
 * every change and asks pr_load for it when the LUN is added; both go to the
 * volume attribute "scsi.pr" (dataplane/volume), so the reservation is the
 * volume's, committed with the pool's metadata before the PR OUT command
 * completes, and whichever engine serves the volume next (a restart, a
 * failover) exports it with the same registrations and holder. A clone is a
 * new LU and starts with none. Legacy: an older release kept the blob in a
 * file (opts.pr_state_path); if the attribute is absent and that file exists,
 * pr_load imports it into the attribute once and renames the file to
 * "<path>.imported".
 *
 * Lifetime: the engine owns a reference to the LUN from lun_add until its
 * ops->destroy; unexport removes the target and waits on `released` before
 * closing the volume handle, so nothing touches the volume afterwards.
 *
 * THREAD SAFETY: l->lock protects the worker queue and `released`; it is a
 * leaf lock, never held across a volume call or an engine callback.
 */
#include "volumedriver/lun/vol_lun.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"
#include "volumedriver/arbiter/arbiter.h"

enum io_kind { K_READ, K_WRITE, K_FUA, K_UNMAP };

struct work {
	struct work *next;
	struct ts_iscsi_lun_io *io;
	int fua_write; /* 1: a FUA write's data is written: flush, account, complete; 0: flush */
};

struct ts_vol_lun {
	struct ts_iscsi_server *srv;
	struct ts_vpool *pool;
	struct ts_arb *arb;     /* the volume's arbiter: all IO goes through it */
	struct ts_volume *vol;  /* its volume handle (size, flush) */
	struct ts_qos *qos; /* NULL without a QoS domain */
	uint64_t vol_id;
	char *iqn;
	char *pr_legacy; /* opts.pr_state_path, or NULL */

	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct work *head, **tail;
	int stop;
	int released;
	pthread_t worker;
	int worker_started;
};

static int queue_work(struct ts_vol_lun *l, struct ts_iscsi_lun_io *io, int fua_write);

static enum io_kind io_kind(const struct ts_iscsi_lun_io *io)
{
	return (enum io_kind)(uintptr_t)io->priv[1];
}

/* Report one completion of an admitted IO to the gate. */
static void qos_account(struct ts_vol_lun *l, struct ts_iscsi_lun_io *io)
{
	enum io_kind k = io_kind(io);
	uint64_t t0 = (uint64_t)(uintptr_t)io->priv[2];

	ts_qos_done(l->qos, k != K_READ, k == K_UNMAP ? 0 : io->len, t0 ? ts_now_ns() - t0 : 0);
}

static void io_done(void *arg, int status)
{
	struct ts_iscsi_lun_io *io = arg;
	struct ts_vol_lun *l = io->priv[0];

	if (l->qos)
		qos_account(l, io);
	io->cb(io, status);
}

/* A FUA write's data is in: commit it on the worker before acknowledging. */
static void fua_written(void *arg, int status)
{
	struct ts_iscsi_lun_io *io = arg;
	struct ts_vol_lun *l = io->priv[0];

	if (status == 0)
		status = queue_work(l, io, 1);
	if (status < 0)
		io_done(io, status);
}

static int submit(struct ts_vol_lun *l, struct ts_iscsi_lun_io *io)
{
	if (l->qos)
		io->priv[2] = (void *)(uintptr_t)ts_now_ns();
	switch (io_kind(io)) {
	case K_READ:
		return ts_arb_read(l->arb, io->offset, io->len, io->buf, io_done, io);
	case K_WRITE:
		return ts_arb_write(l->arb, io->offset, io->len, io->buf, io_done, io);
	case K_FUA:
		return ts_arb_write(l->arb, io->offset, io->len, io->buf, fua_written, io);
	case K_UNMAP:
		return ts_arb_unmap(l->arb, io->offset, io->len, io_done, io);
	}
	return -EINVAL;
}

/* A queued IO may go (the QoS domain's thread, no lock held). */
static void qos_go(void *arg)
{
	struct ts_iscsi_lun_io *io = arg;
	struct ts_vol_lun *l = io->priv[0];
	int rc = submit(l, io);

	if (rc < 0) {
		qos_account(l, io);
		io->cb(io, rc);
	}
}

static int gate(struct ts_vol_lun *l, struct ts_iscsi_lun_io *io, enum io_kind k)
{
	int rc;

	io->priv[0] = l;
	io->priv[1] = (void *)(uintptr_t)k;
	io->priv[2] = NULL;
	if (!l->qos)
		return submit(l, io);
	rc = ts_qos_admit(l->qos, k != K_READ, k == K_UNMAP ? 0 : io->len, qos_go, io);
	if (rc <= 0)
		return rc; /* queued: qos_go submits it; or -ENOMEM */
	rc = submit(l, io);
	if (rc < 0)
		qos_account(l, io); /* admitted but never in flight */
	return rc;
}

static int lun_read(void *ctx, struct ts_iscsi_lun_io *io)
{
	return gate(ctx, io, K_READ);
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
	return gate(ctx, io, (io->flags & TS_ISCSI_LUN_FUA) ? K_FUA : K_WRITE);
}

static int lun_flush(void *ctx, struct ts_iscsi_lun_io *io)
{
	return queue_work(ctx, io, 0);
}

static int lun_unmap(void *ctx, struct ts_iscsi_lun_io *io)
{
	return gate(ctx, io, K_UNMAP);
}

/* Runs on an engine loop thread with the LUN's SCSI lock held: a PR change and
 * its commit are one step (PR changes are rare; the commit is a log write). */
static int lun_pr_save(void *ctx, const void *blob, size_t len)
{
	struct ts_vol_lun *l = ctx;

	return ts_vpool_volume_attr_set(l->pool, l->vol_id, TS_VOL_LUN_PR_ATTR, blob, len);
}

/* Import the legacy PR file into the attribute (once: the file is renamed). */
static int pr_import_legacy(struct ts_vol_lun *l, void *buf, size_t cap)
{
	char done[4200];
	ssize_t n;
	int fd, rc;

	fd = open(l->pr_legacy, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0; /* no file: no reservations */
	n = read(fd, buf, cap);
	close(fd);
	if (n <= 0 || (size_t)n >= cap)
		return n < 0 ? -errno : 0;
	rc = ts_vpool_volume_attr_set(l->pool, l->vol_id, TS_VOL_LUN_PR_ATTR, buf, (size_t)n);
	if (rc < 0) {
		ts_log(TS_LOG_WARN, "vol_lun", "cannot import PR state path=%s err=\"%s\"", l->pr_legacy,
		       ts_strerror(rc));
		return (int)n; /* serve it anyway; the next PR change persists it */
	}
	snprintf(done, sizeof(done), "%s.imported", l->pr_legacy);
	if (rename(l->pr_legacy, done))
		ts_log(TS_LOG_WARN, "vol_lun", "cannot rename imported PR state path=%s", l->pr_legacy);
	ts_log(TS_LOG_INFO, "vol_lun", "imported PR state vol=%llu path=%s",
	       (unsigned long long)l->vol_id, l->pr_legacy);
	return (int)n;
}

static int lun_pr_load(void *ctx, void *buf, size_t cap)
{
	struct ts_vol_lun *l = ctx;
	int rc = ts_vpool_volume_attr_get(l->pool, l->vol_id, TS_VOL_LUN_PR_ATTR, buf, cap);

	if (rc == -ENOENT)
		return l->pr_legacy ? pr_import_legacy(l, buf, cap) : 0;
	return rc;
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
	.pr_save = lun_pr_save,
	.pr_load = lun_pr_load,
	.destroy = lun_destroy,
};

static void *worker_main(void *arg)
{
	struct ts_vol_lun *l = arg;

	for (;;) {
		struct work *w;
		int rc;

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

		rc = ts_volume_flush_sync(l->vol);
		if (w->fua_write && l->qos)
			qos_account(l, w->io);
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
	ts_qos_destroy(l->qos); /* nothing queued or in flight any more */
	ts_arb_close(l->arb);
	ts_free(l->iqn);
	ts_free(l->pr_legacy);
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

	if (!srv || !pool || !opts || !opts->iqn || !out ||
	    (!opts->chap_user != !opts->chap_secret) ||
	    (!opts->qos_domain && !ts_qos_limits_none(&opts->qos)))
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
	l->pr_legacy = opts->pr_state_path ? ts_strdup(opts->pr_state_path) : NULL;
	if (!l->iqn || (opts->pr_state_path && !l->pr_legacy)) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = ts_arb_open(pool, vol_id, &l->arb);
	if (rc < 0)
		goto fail;
	l->vol = ts_arb_volume(l->arb);
	if (opts->qos_domain) {
		rc = ts_qos_create(opts->qos_domain, &opts->qos, &l->qos);
		if (rc < 0)
			goto fail;
	}
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
	/* IOs waiting in the gate are in flight for the engine: let them go now. */
	if (l->qos)
		(void)ts_qos_set(l->qos, NULL);
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

int ts_vol_lun_set_qos(struct ts_vol_lun *l, const struct ts_qos_limits *q)
{
	if (!l)
		return -EINVAL;
	if (!l->qos)
		return ts_qos_limits_none(q) ? 0 : -ENOTSUP;
	return ts_qos_set(l->qos, q);
}

void ts_vol_lun_qos_stats(struct ts_vol_lun *l, struct ts_qos_stats *out)
{
	if (!l || !l->qos) {
		memset(out, 0, sizeof(*out));
		return;
	}
	ts_qos_stats(l->qos, out);
}
