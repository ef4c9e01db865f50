/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The member handle: a provider's ops table plus its static description,
 * and the two ways of waiting for asynchronous IO that the data plane
 * shares: submit-and-wait (ts_member_wait(), ts_member_rw_sync(), for
 * superblock reads at assembly, rebuilds, tests and the sync wrappers of
 * the layers above) and the fan-out of one request to several members
 * (ts_member_fanout_*(): submit N, count completions, first error wins).
 *
 * THREAD SAFETY: a waiter or a fan-out is owned by the thread that waits on
 * it; completions on any thread take only its lock (a leaf: nothing else is
 * taken under it). The member handle itself is immutable after creation.
 */
#include "dataplane/member/member.h"

#include <pthread.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

struct ts_member {
	const struct ts_member_ops *ops;
	void *ctx;
	struct ts_member_info info;
};

int ts_member_create(const struct ts_member_ops *ops, void *ctx,
		     const struct ts_member_info *info, struct ts_member **out)
{
	struct ts_member *m;

	if (!ops || !ops->submit || !info || !out || info->block_size < 512 ||
	    (info->block_size & (info->block_size - 1)) || info->size % info->block_size)
		return -EINVAL;
	m = ts_calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->ops = ops;
	m->ctx = ctx;
	m->info = *info;
	m->info.name[sizeof(m->info.name) - 1] = '\0';
	*out = m;
	return 0;
}

void ts_member_destroy(struct ts_member *m)
{
	if (!m)
		return;
	if (m->ops->destroy)
		m->ops->destroy(m->ctx);
	ts_free(m);
}

const struct ts_member_info *ts_member_info(const struct ts_member *m)
{
	return &m->info;
}

void *ts_member_provider_ctx(const struct ts_member *m, const struct ts_member_ops *ops)
{
	return m && m->ops == ops ? m->ctx : NULL;
}

int ts_member_submit(struct ts_member *m, struct ts_member_io *io)
{
	uint64_t bs = m->info.block_size;

	if (!io || !io->cb)
		return -EINVAL;
	if (io->op != TS_MEMBER_FLUSH) {
		if (io->offset % bs || io->len % bs || io->len == 0 ||
		    io->offset > m->info.size || io->len > m->info.size - io->offset)
			return -EINVAL;
		if (io->op != TS_MEMBER_UNMAP && !io->buf)
			return -EINVAL;
	}
	return m->ops->submit(m->ctx, io);
}

/* ------------------------------------------------------------------ */
/* submit and wait                                                     */

void ts_member_wake(void *arg, int status)
{
	struct ts_member_waiter *w = arg;

	pthread_mutex_lock(&w->lock);
	w->status = status;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int ts_member_wait(struct ts_member_waiter *w, int submit_rc)
{
	int rc = submit_rc;

	if (rc == 0) {
		pthread_mutex_lock(&w->lock);
		while (!w->done)
			pthread_cond_wait(&w->cond, &w->lock);
		pthread_mutex_unlock(&w->lock);
		rc = w->status;
	}
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	return rc;
}

static void sync_cb(struct ts_member_io *io, int status)
{
	ts_member_wake(io->cb_arg, status);
}

int ts_member_rw_sync(struct ts_member *m, enum ts_member_op op, uint32_t flags,
		      uint64_t offset, uint64_t len, void *buf)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;
	struct ts_member_io io;

	memset(&io, 0, sizeof(io));
	io.op = op;
	io.flags = flags;
	io.offset = offset;
	io.len = len;
	io.buf = buf;
	io.cb = sync_cb;
	io.cb_arg = &w;
	return ts_member_wait(&w, ts_member_submit(m, &io));
}

/* ------------------------------------------------------------------ */
/* fan-out                                                             */

void ts_member_fanout_init(struct ts_member_fanout *f)
{
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->cond, NULL);
	f->pending = 0;
	f->status = 0;
}

static void fanout_cb(struct ts_member_io *io, int status)
{
	struct ts_member_fanout_io *x = io->cb_arg;
	struct ts_member_fanout *f = x->f;

	pthread_mutex_lock(&f->lock);
	x->status = status;
	if (status && !f->status)
		f->status = status;
	if (--f->pending == 0)
		pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->lock);
}

int ts_member_fanout_add(struct ts_member_fanout *f, struct ts_member_fanout_io *x,
			 struct ts_member *m)
{
	int rc;

	x->f = f;
	x->status = 0;
	x->io.cb = fanout_cb;
	x->io.cb_arg = x;
	pthread_mutex_lock(&f->lock);
	f->pending++;
	pthread_mutex_unlock(&f->lock);
	rc = ts_member_submit(m, &x->io);
	if (rc < 0) {
		pthread_mutex_lock(&f->lock);
		x->status = rc;
		if (!f->status)
			f->status = rc;
		f->pending--;
		pthread_mutex_unlock(&f->lock);
	}
	return rc;
}

int ts_member_fanout_wait(struct ts_member_fanout *f)
{
	int rc;

	pthread_mutex_lock(&f->lock);
	while (f->pending)
		pthread_cond_wait(&f->cond, &f->lock);
	rc = f->status;
	pthread_mutex_unlock(&f->lock);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->cond);
	return rc;
}
