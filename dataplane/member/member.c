/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The member handle: a provider's ops table plus its static description,
 * and a synchronous wrapper over the asynchronous submit for callers that
 * need one (superblock reads at assembly, tests).
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

struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	int status;
};

static void sync_cb(struct ts_member_io *io, int status)
{
	struct sync_wait *w = io->cb_arg;

	pthread_mutex_lock(&w->lock);
	w->status = status;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

int ts_member_rw_sync(struct ts_member *m, enum ts_member_op op, uint32_t flags,
		      uint64_t offset, uint64_t len, void *buf)
{
	struct sync_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	struct ts_member_io io;
	int rc;

	memset(&io, 0, sizeof(io));
	io.op = op;
	io.flags = flags;
	io.offset = offset;
	io.len = len;
	io.buf = buf;
	io.cb = sync_cb;
	io.cb_arg = &w;
	rc = ts_member_submit(m, &io);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	return w.status;
}
