/* SPDX-License-Identifier: Apache-2.0 */
/* Test members: see testmember.h. */
#include "unit/dataplane/volume/testmember.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

struct tm_ram {
	pthread_mutex_t mu;
	uint8_t *cur, *dur, *dirty;
	uint64_t size, nblk, ios;
	uint32_t bs;
	long fail_after; /* <0: off */
	int async;
	/* async completion queue */
	pthread_t thr;
	pthread_cond_t cond;
	struct ts_member_io **q;
	size_t qn, qcap;
	int stop;
};

static void ram_complete_inline(struct tm_ram *r, struct ts_member_io *io, int st)
{
	(void)r;
	io->cb(io, st);
}

static int ram_do(struct tm_ram *r, struct ts_member_io *io)
{
	uint64_t b, first = io->offset / r->bs, n = io->len / r->bs;

	r->ios++;
	if (r->fail_after == 0)
		return -EIO;
	if (r->fail_after > 0)
		r->fail_after--;
	switch (io->op) {
	case TS_MEMBER_READ:
		memcpy(io->buf, r->cur + io->offset, io->len);
		break;
	case TS_MEMBER_WRITE:
	case TS_MEMBER_UNMAP:
		if (io->op == TS_MEMBER_WRITE)
			memcpy(r->cur + io->offset, io->buf, io->len);
		else
			memset(r->cur + io->offset, 0, io->len);
		for (b = first; b < first + n; b++)
			r->dirty[b] = 1;
		if (io->flags & TS_MEMBER_FUA) {
			memcpy(r->dur + io->offset, r->cur + io->offset, io->len);
			for (b = first; b < first + n; b++)
				r->dirty[b] = 0;
		}
		break;
	case TS_MEMBER_FLUSH:
		for (b = 0; b < r->nblk; b++)
			if (r->dirty[b]) {
				memcpy(r->dur + b * r->bs, r->cur + b * r->bs, r->bs);
				r->dirty[b] = 0;
			}
		break;
	}
	return 0;
}

static void *ram_thread(void *arg)
{
	struct tm_ram *r = arg;

	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->qn && !r->stop)
			pthread_cond_wait(&r->cond, &r->mu);
		if (!r->qn && r->stop)
			break;
		struct ts_member_io *io = r->q[0];
		memmove(r->q, r->q + 1, (r->qn - 1) * sizeof(*r->q));
		r->qn--;
		int st = ram_do(r, io);
		pthread_mutex_unlock(&r->mu);
		io->cb(io, st);
		pthread_mutex_lock(&r->mu);
	}
	pthread_mutex_unlock(&r->mu);
	return NULL;
}

static int ram_submit(void *ctx, struct ts_member_io *io)
{
	struct tm_ram *r = ctx;
	int st;

	pthread_mutex_lock(&r->mu);
	if (r->async) {
		if (r->qn == r->qcap) {
			size_t nc = r->qcap ? r->qcap * 2 : 64;
			void *nq = realloc(r->q, nc * sizeof(*r->q));
			if (!nq) {
				pthread_mutex_unlock(&r->mu);
				return -ENOMEM;
			}
			r->q = nq;
			r->qcap = nc;
		}
		r->q[r->qn++] = io;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->mu);
		return 0;
	}
	st = ram_do(r, io);
	pthread_mutex_unlock(&r->mu);
	ram_complete_inline(r, io, st);
	return 0;
}

static void ram_destroy(void *ctx)
{
	struct tm_ram *r = ctx;

	if (r->async) {
		pthread_mutex_lock(&r->mu);
		r->stop = 1;
		pthread_cond_signal(&r->cond);
		pthread_mutex_unlock(&r->mu);
		pthread_join(r->thr, NULL);
	}
	free(r->q);
	free(r->cur);
	free(r->dur);
	free(r->dirty);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cond);
	free(r);
}

/* Large images on transparent huge pages where available, so a benchmark
 * measures the volume layer rather than TLB misses of a scattered image. */
static uint8_t *big_zeroed(uint64_t size)
{
	const size_t huge = 2u << 20;
	size_t len = (size_t)TS_ALIGN_UP(size, huge);
	void *b = NULL;

	if (posix_memalign(&b, huge, len))
		return NULL;
	(void)madvise(b, len, MADV_HUGEPAGE);
	memset(b, 0, len);
	return b;
}

static const struct ts_member_ops g_ram_ops = { .submit = ram_submit, .destroy = ram_destroy };

int tm_ram_create(uint64_t size, uint32_t bs, int async, struct ts_member **m, struct tm_ram **ctl)
{
	/* plain calloc: the pool's allocation-failure tests must not fail the device */
	struct tm_ram *r = calloc(1, sizeof(*r));
	struct ts_member_info info = { .size = size, .block_size = bs };
	int rc;

	if (!r)
		return -ENOMEM;
	r->size = size;
	r->bs = bs;
	r->nblk = size / bs;
	r->fail_after = -1;
	r->async = async;
	r->cur = big_zeroed(size);
	r->dur = big_zeroed(size);
	r->dirty = calloc(1, r->nblk);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cond, NULL);
	strcpy(info.name, "ram");
	if (!r->cur || !r->dur || !r->dirty) {
		r->async = 0;
		ram_destroy(r);
		return -ENOMEM;
	}
	if (async && pthread_create(&r->thr, NULL, ram_thread, r)) {
		r->async = 0;
		ram_destroy(r);
		return -EAGAIN;
	}
	rc = ts_member_create(&g_ram_ops, r, &info, m);
	if (rc) {
		ram_destroy(r);
		return rc;
	}
	*ctl = r;
	return 0;
}

void tm_ram_crash(struct tm_ram *r, unsigned keep_pct, unsigned seed)
{
	uint64_t b;

	pthread_mutex_lock(&r->mu);
	for (b = 0; b < r->nblk; b++)
		if (r->dirty[b]) {
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 100 < keep_pct)
				memcpy(r->dur + b * r->bs, r->cur + b * r->bs, r->bs);
			r->dirty[b] = 0;
		}
	memcpy(r->cur, r->dur, r->size);
	r->fail_after = -1;
	pthread_mutex_unlock(&r->mu);
}

void tm_ram_fail_after(struct tm_ram *r, long n)
{
	pthread_mutex_lock(&r->mu);
	r->fail_after = n;
	pthread_mutex_unlock(&r->mu);
}

uint64_t tm_ram_ios(struct tm_ram *r)
{
	uint64_t n;

	pthread_mutex_lock(&r->mu);
	n = r->ios;
	pthread_mutex_unlock(&r->mu);
	return n;
}

/* ------------------------------------------------------------- file */

struct tm_file {
	int fd;
};

static int file_submit(void *ctx, struct ts_member_io *io)
{
	struct tm_file *f = ctx;
	int st = 0;

	switch (io->op) {
	case TS_MEMBER_READ:
		st = ts_pread_full(f->fd, io->buf, io->len, io->offset);
		break;
	case TS_MEMBER_WRITE:
		st = ts_pwrite_full(f->fd, io->buf, io->len, io->offset);
		if (st == 0 && (io->flags & TS_MEMBER_FUA) && fdatasync(f->fd))
			st = -errno;
		break;
	case TS_MEMBER_UNMAP:
		if (fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
			      (off_t)io->len))
			st = -errno;
		break;
	case TS_MEMBER_FLUSH:
		if (fdatasync(f->fd))
			st = -errno;
		break;
	}
	io->cb(io, st);
	return 0;
}

static void file_destroy(void *ctx)
{
	struct tm_file *f = ctx;

	close(f->fd);
	free(f);
}

static const struct ts_member_ops g_file_ops = { .submit = file_submit, .destroy = file_destroy };

int tm_file_create(const char *path, uint64_t size, struct ts_member **m)
{
	struct ts_member_info info = { .size = size, .block_size = 4096 };
	struct tm_file *f = calloc(1, sizeof(*f));
	int rc;

	if (!f)
		return -ENOMEM;
	f->fd = open(path, O_RDWR | O_CREAT, 0600);
	if (f->fd < 0 || ftruncate(f->fd, (off_t)size)) {
		rc = -errno;
		if (f->fd >= 0)
			close(f->fd);
		free(f);
		return rc;
	}
	strcpy(info.name, "file");
	rc = ts_member_create(&g_file_ops, f, &info, m);
	if (rc)
		file_destroy(f);
	return rc;
}
