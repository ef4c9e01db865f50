/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test member providers: see test_member.h. One provider serves RAM and
 * file members; what a member does is chosen by which images it has (a
 * durable RAM image makes it crashable, an fd makes it a file) and by its
 * switches (sync, accounting, async completion).
 *
 * Invariants. A crashable member changes its images and dirty map only
 * under mu, so tm_ram_crash() sees a consistent state; a plain RAM or file
 * member does its IO without a lock (tests issue non-overlapping IO or
 * order it themselves), taking mu only for the counters and the write log.
 * Every IO completes exactly once: inline, or on the helper thread of an
 * async member, which drains its queue before it stops.
 *
 * THREAD SAFETY: mu guards the counters (ios, fail_after), the write log,
 * the async queue and a crashable member's images; mode and delay are
 * atomics. Callbacks run with no lock held.
 */
#include "unit/support/member/test_member.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

struct tmem {
	pthread_mutex_t mu;
	uint8_t *cur;           /* RAM image (the volatile one when crashable) */
	uint8_t *dur, *dirty;   /* crashable RAM: durable image, dirty block map */
	int fd;                 /* file member, else -1 */
	int sync;               /* file: fdatasync on FLUSH/FUA */
	int account;            /* keep the write log (tm_written) */
	uint64_t size, nblk, ios;
	uint32_t bs;
	long fail_after;        /* <0: off */
	_Atomic int mode;
	_Atomic unsigned delay_us;
	_Atomic int stall;      /* park IOs (checked without mu, then under it) */
	struct ts_member_io **parked;
	size_t np, pcap;
	uint64_t *log_off;      /* write log: (offset, len) pairs */
	size_t nlog, cap;
	/* async completion */
	int async;
	pthread_t thr;
	pthread_cond_t cond;
	struct ts_member_io **q;
	size_t qn, qcap;
	int stop;
};

/* A crashable member's IO, under mu. */
static void crashable_do(struct tmem *t, struct ts_member_io *io)
{
	uint64_t b, first = io->offset / t->bs, n = io->len / t->bs;

	switch (io->op) {
	case TS_MEMBER_READ:
		memcpy(io->buf, t->cur + io->offset, io->len);
		break;
	case TS_MEMBER_WRITE:
	case TS_MEMBER_UNMAP:
		if (io->op == TS_MEMBER_WRITE)
			memcpy(t->cur + io->offset, io->buf, io->len);
		else
			memset(t->cur + io->offset, 0, io->len);
		for (b = first; b < first + n; b++)
			t->dirty[b] = 1;
		if (io->flags & TS_MEMBER_FUA) {
			memcpy(t->dur + io->offset, t->cur + io->offset, io->len);
			for (b = first; b < first + n; b++)
				t->dirty[b] = 0;
		}
		break;
	case TS_MEMBER_FLUSH:
		for (b = 0; b < t->nblk; b++)
			if (t->dirty[b]) {
				memcpy(t->dur + b * t->bs, t->cur + b * t->bs, t->bs);
				t->dirty[b] = 0;
			}
		break;
	}
}

/* A plain RAM or file member's IO, no lock held. */
static int plain_do(struct tmem *t, struct ts_member_io *io)
{
	int rc = 0;

	switch (io->op) {
	case TS_MEMBER_READ:
		if (t->cur)
			memcpy(io->buf, t->cur + io->offset, io->len);
		else
			rc = ts_pread_full(t->fd, io->buf, io->len, io->offset);
		break;
	case TS_MEMBER_WRITE:
		if (t->cur) {
			memcpy(t->cur + io->offset, io->buf, io->len);
		} else {
			rc = ts_pwrite_full(t->fd, io->buf, io->len, io->offset);
			if (!rc && t->sync && (io->flags & TS_MEMBER_FUA) && fdatasync(t->fd))
				rc = -errno;
		}
		break;
	case TS_MEMBER_UNMAP:
		if (t->cur)
			memset(t->cur + io->offset, 0, io->len);
		else if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)io->offset, (off_t)io->len))
			rc = -errno;
		break;
	case TS_MEMBER_FLUSH:
		if (!t->cur && t->sync && fdatasync(t->fd))
			rc = -errno;
		break;
	}
	return rc;
}

static int tm_do(struct tmem *t, struct ts_member_io *io)
{
	if (io->op == TS_MEMBER_WRITE && atomic_load(&t->delay_us) && !(io->flags & TS_MEMBER_FUA))
		usleep(atomic_load(&t->delay_us));
	pthread_mutex_lock(&t->mu);
	t->ios++;
	if (t->fail_after == 0) {
		pthread_mutex_unlock(&t->mu);
		return -EIO;
	}
	if (t->fail_after > 0)
		t->fail_after--;
	if (t->account && io->op == TS_MEMBER_WRITE) {
		if (t->nlog == t->cap) {
			t->cap = t->cap ? 2 * t->cap : 64;
			t->log_off = realloc(t->log_off, t->cap * 2 * sizeof(uint64_t));
		}
		t->log_off[2 * t->nlog] = io->offset;
		t->log_off[2 * t->nlog + 1] = io->len;
		t->nlog++;
	}
	if (t->dur) {
		crashable_do(t, io);
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	pthread_mutex_unlock(&t->mu);
	return plain_do(t, io);
}

static void *tm_thread(void *arg)
{
	struct tmem *t = arg;

	pthread_mutex_lock(&t->mu);
	for (;;) {
		while (!t->qn && !t->stop)
			pthread_cond_wait(&t->cond, &t->mu);
		if (!t->qn && t->stop)
			break;
		struct ts_member_io *io = t->q[0];
		memmove(t->q, t->q + 1, (t->qn - 1) * sizeof(*t->q));
		t->qn--;
		pthread_mutex_unlock(&t->mu);
		io->cb(io, tm_do(t, io));
		pthread_mutex_lock(&t->mu);
	}
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

/* Park \p io if the member is stalled: 1 parked, 0 not stalled, -ENOMEM. */
static int tm_park(struct tmem *t, struct ts_member_io *io)
{
	int rc = 0;

	pthread_mutex_lock(&t->mu);
	if (atomic_load(&t->stall)) {
		rc = 1;
		if (t->np == t->pcap) {
			size_t nc = t->pcap ? t->pcap * 2 : 64;
			void *nq = realloc(t->parked, nc * sizeof(*t->parked));

			if (nq) {
				t->parked = nq;
				t->pcap = nc;
			} else {
				rc = -ENOMEM;
			}
		}
		if (rc == 1)
			t->parked[t->np++] = io;
	}
	pthread_mutex_unlock(&t->mu);
	return rc;
}

static int tm_submit(void *ctx, struct ts_member_io *io)
{
	struct tmem *t = ctx;
	int mode = atomic_load(&t->mode);

	if (atomic_load(&t->stall)) {
		int rc = tm_park(t, io);
		if (rc)
			return rc < 0 ? rc : 0;
	}

	if (mode == TM_MISSING) {
		io->cb(io, TS_ERR_MEMBER_FAILED);
		return 0;
	}
	if (mode == TM_FAIL_ALL || (mode == TM_FAIL_WRITES && io->op != TS_MEMBER_READ)) {
		io->cb(io, -EIO);
		return 0;
	}
	if (t->async) {
		pthread_mutex_lock(&t->mu);
		if (t->qn == t->qcap) {
			size_t nc = t->qcap ? t->qcap * 2 : 64;
			void *nq = realloc(t->q, nc * sizeof(*t->q));

			if (!nq) {
				pthread_mutex_unlock(&t->mu);
				return -ENOMEM;
			}
			t->q = nq;
			t->qcap = nc;
		}
		t->q[t->qn++] = io;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->mu);
		return 0;
	}
	io->cb(io, tm_do(t, io));
	return 0;
}

static void tm_destroy(void *ctx)
{
	struct tmem *t = ctx;

	if (t->async) {
		pthread_mutex_lock(&t->mu);
		t->stop = 1;
		pthread_cond_signal(&t->cond);
		pthread_mutex_unlock(&t->mu);
		pthread_join(t->thr, NULL);
	}
	if (t->fd >= 0)
		close(t->fd);
	free(t->q);
	free(t->parked);
	free(t->cur);
	free(t->dur);
	free(t->dirty);
	free(t->log_off);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cond);
	free(t);
}

static const struct ts_member_ops g_tm_ops = { .submit = tm_submit, .destroy = tm_destroy };

static struct tmem *tm_new(uint64_t size, uint32_t bs)
{
	struct tmem *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->fd = -1;
	t->size = size;
	t->bs = bs;
	t->nblk = size / bs;
	t->fail_after = -1;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->cond, NULL);
	return t;
}

/* Hand \p t to a new member; on failure \p t is destroyed. */
static int tm_wrap(struct tmem *t, const struct ts_member_info *info, struct ts_member **m)
{
	int rc = ts_member_create(&g_tm_ops, t, info, m);

	if (rc)
		tm_destroy(t);
	return rc;
}

/* The identity of the members of the array-group suites: node, uuid from id. */
static struct ts_member *tm_wrap_id(struct tmem *t, uint32_t node, uint32_t id, const char *kind,
				    struct tmem **out)
{
	struct ts_member_info info;
	struct ts_member *m = NULL;

	memset(&info, 0, sizeof(info));
	info.size = t->size;
	info.block_size = t->bs;
	info.node_id = node;
	for (int i = 0; i < 16; i++)
		info.uuid[i] = (uint8_t)(0xa0 + i + id * 7);
	memcpy(info.uuid, &id, sizeof(id));
	snprintf(info.name, sizeof(info.name), "node%u/%s%u", node, kind, id);
	if (tm_wrap(t, &info, &m))
		return NULL;
	if (out)
		*out = t;
	return m;
}

struct ts_member *tm_ram(uint64_t size, uint32_t node, uint32_t id, struct tmem **out)
{
	struct tmem *t = tm_new(size, 4096);

	if (!t)
		return NULL;
	t->account = 1;
	t->cur = calloc(1, size);
	if (!t->cur) {
		tm_destroy(t);
		return NULL;
	}
	return tm_wrap_id(t, node, id, "ram", out);
}

static int tm_open_file(struct tmem *t, const char *path, uint64_t size)
{
	t->fd = open(path, O_RDWR | O_CREAT, 0600);
	if (t->fd < 0 || ftruncate(t->fd, (off_t)size))
		return -errno;
	return 0;
}

struct ts_member *tm_file(const char *path, uint64_t size, uint32_t node, uint32_t id, int sync,
			  struct tmem **out)
{
	struct tmem *t = tm_new(size, 4096);

	if (!t)
		return NULL;
	t->account = 1;
	t->sync = sync;
	if (tm_open_file(t, path, size)) {
		tm_destroy(t);
		return NULL;
	}
	return tm_wrap_id(t, node, id, "file", out);
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

int tm_ram_create(uint64_t size, uint32_t bs, int async, struct ts_member **m, struct tmem **ctl)
{
	struct ts_member_info info = { .size = size, .block_size = bs };
	struct tmem *t = tm_new(size, bs);
	int rc;

	if (!t)
		return -ENOMEM;
	t->cur = big_zeroed(size);
	t->dur = big_zeroed(size);
	t->dirty = calloc(1, t->nblk);
	if (!t->cur || !t->dur || !t->dirty) {
		tm_destroy(t);
		return -ENOMEM;
	}
	if (async && pthread_create(&t->thr, NULL, tm_thread, t)) {
		tm_destroy(t);
		return -EAGAIN;
	}
	t->async = async;
	strcpy(info.name, "ram");
	rc = tm_wrap(t, &info, m);
	if (rc == 0)
		*ctl = t;
	return rc;
}

int tm_file_create(const char *path, uint64_t size, struct ts_member **m)
{
	struct ts_member_info info = { .size = size, .block_size = 4096 };
	struct tmem *t = tm_new(size, 4096);
	int rc;

	if (!t)
		return -ENOMEM;
	t->sync = 1;
	rc = tm_open_file(t, path, size);
	if (rc) {
		tm_destroy(t);
		return rc;
	}
	strcpy(info.name, "file");
	return tm_wrap(t, &info, m);
}

void tm_set_mode(struct tmem *t, enum tm_mode mode)
{
	atomic_store(&t->mode, (int)mode);
}

void tm_set_stall(struct tmem *t, int on)
{
	struct ts_member_io **q;
	size_t i, n;

	pthread_mutex_lock(&t->mu);
	atomic_store(&t->stall, on);
	if (on) {
		pthread_mutex_unlock(&t->mu);
		return;
	}
	q = t->parked;
	n = t->np;
	t->parked = NULL;
	t->np = t->pcap = 0;
	pthread_mutex_unlock(&t->mu);
	for (i = 0; i < n; i++)
		q[i]->cb(q[i], tm_do(t, q[i]));
	free(q);
}

unsigned tm_stalled(struct tmem *t)
{
	unsigned n;

	pthread_mutex_lock(&t->mu);
	n = (unsigned)t->np;
	pthread_mutex_unlock(&t->mu);
	return n;
}

void tm_set_write_delay(struct tmem *t, unsigned usec)
{
	atomic_store(&t->delay_us, usec);
}

uint64_t tm_written(struct tmem *t, uint64_t from)
{
	uint64_t sum = 0;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < t->nlog; i++)
		if (t->log_off[2 * i] >= from)
			sum += t->log_off[2 * i + 1];
	pthread_mutex_unlock(&t->mu);
	return sum;
}

void tm_reset_counters(struct tmem *t)
{
	pthread_mutex_lock(&t->mu);
	t->nlog = 0;
	pthread_mutex_unlock(&t->mu);
}

uint8_t *tm_ram_data(struct tmem *t)
{
	return t->cur;
}

void tm_ram_crash(struct tmem *t, unsigned keep_pct, unsigned seed)
{
	uint64_t b;

	if (!t->dur)
		return;
	pthread_mutex_lock(&t->mu);
	for (b = 0; b < t->nblk; b++)
		if (t->dirty[b]) {
			seed = seed * 1103515245u + 12345u;
			if ((seed >> 16) % 100 < keep_pct)
				memcpy(t->dur + b * t->bs, t->cur + b * t->bs, t->bs);
			t->dirty[b] = 0;
		}
	memcpy(t->cur, t->dur, t->size);
	t->fail_after = -1;
	pthread_mutex_unlock(&t->mu);
}

void tm_ram_fail_after(struct tmem *t, long n)
{
	pthread_mutex_lock(&t->mu);
	t->fail_after = n;
	pthread_mutex_unlock(&t->mu);
}

uint64_t tm_ram_ios(struct tmem *t)
{
	uint64_t n;

	pthread_mutex_lock(&t->mu);
	n = t->ios;
	pthread_mutex_unlock(&t->mu);
	return n;
}
