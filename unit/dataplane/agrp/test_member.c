/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test member providers: RAM and plain files, inline completion, failure
 * injection by mode. Write accounting lets tests check that a resync touched
 * only what it had to.
 */
#include "unit/dataplane/agrp/test_member.h"

#include <fcntl.h>
#include <stdio.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

struct tmem {
	uint8_t *ram;
	int fd;
	int sync;
	uint64_t size;
	_Atomic int mode;
	_Atomic unsigned delay_us;
	pthread_mutex_t lock; /* write log */
	uint64_t *log_off;
	size_t nlog, cap;
};

static int tm_submit(void *ctx, struct ts_member_io *io)
{
	struct tmem *t = ctx;
	int mode = atomic_load(&t->mode), rc = 0;

	if (mode == TM_MISSING) {
		io->cb(io, TS_ERR_MEMBER_FAILED);
		return 0;
	}
	if (mode == TM_FAIL_ALL || (mode == TM_FAIL_WRITES && io->op != TS_MEMBER_READ)) {
		io->cb(io, -EIO);
		return 0;
	}
	switch (io->op) {
	case TS_MEMBER_READ:
		if (t->ram)
			memcpy(io->buf, t->ram + io->offset, io->len);
		else
			rc = ts_pread_full(t->fd, io->buf, io->len, io->offset);
		break;
	case TS_MEMBER_WRITE:
		if (atomic_load(&t->delay_us) && !(io->flags & TS_MEMBER_FUA))
			usleep(atomic_load(&t->delay_us));
		pthread_mutex_lock(&t->lock);
		if (t->nlog == t->cap) {
			t->cap = t->cap ? 2 * t->cap : 64;
			t->log_off = realloc(t->log_off, t->cap * 2 * sizeof(uint64_t));
		}
		t->log_off[2 * t->nlog] = io->offset;
		t->log_off[2 * t->nlog + 1] = io->len;
		t->nlog++;
		pthread_mutex_unlock(&t->lock);
		if (t->ram) {
			memcpy(t->ram + io->offset, io->buf, io->len);
		} else {
			rc = ts_pwrite_full(t->fd, io->buf, io->len, io->offset);
			if (!rc && t->sync && (io->flags & TS_MEMBER_FUA) && fdatasync(t->fd))
				rc = -errno;
		}
		break;
	case TS_MEMBER_UNMAP:
		if (t->ram)
			memset(t->ram + io->offset, 0, io->len);
		else if (fallocate(t->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)io->offset, (off_t)io->len))
			rc = -errno;
		break;
	case TS_MEMBER_FLUSH:
		if (!t->ram && t->sync && fdatasync(t->fd))
			rc = -errno;
		break;
	}
	io->cb(io, rc);
	return 0;
}

static void tm_destroy(void *ctx)
{
	struct tmem *t = ctx;

	if (t->fd >= 0)
		close(t->fd);
	free(t->ram);
	free(t->log_off);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

static const struct ts_member_ops g_tm_ops = { .submit = tm_submit, .destroy = tm_destroy };

static struct ts_member *tm_wrap(struct tmem *t, uint64_t size, uint32_t node, uint32_t id,
				 const char *kind, struct tmem **out)
{
	struct ts_member_info info;
	struct ts_member *m = NULL;

	memset(&info, 0, sizeof(info));
	info.size = size;
	info.block_size = 4096;
	info.node_id = node;
	for (int i = 0; i < 16; i++)
		info.uuid[i] = (uint8_t)(0xa0 + i + id * 7);
	memcpy(info.uuid, &id, sizeof(id));
	snprintf(info.name, sizeof(info.name), "node%u/%s%u", node, kind, id);
	if (ts_member_create(&g_tm_ops, t, &info, &m)) {
		tm_destroy(t);
		return NULL;
	}
	if (out)
		*out = t;
	return m;
}

struct ts_member *tm_ram(uint64_t size, uint32_t node, uint32_t id, struct tmem **out)
{
	struct tmem *t = calloc(1, sizeof(*t));

	t->fd = -1;
	t->size = size;
	t->ram = calloc(1, size);
	pthread_mutex_init(&t->lock, NULL);
	return tm_wrap(t, size, node, id, "ram", out);
}

struct ts_member *tm_file(const char *path, uint64_t size, uint32_t node, uint32_t id, int sync,
			  struct tmem **out)
{
	struct tmem *t = calloc(1, sizeof(*t));

	t->fd = open(path, O_RDWR | O_CREAT, 0600);
	if (t->fd < 0 || ftruncate(t->fd, (off_t)size)) {
		free(t);
		return NULL;
	}
	t->sync = sync;
	t->size = size;
	pthread_mutex_init(&t->lock, NULL);
	return tm_wrap(t, size, node, id, "file", out);
}

void tm_set_mode(struct tmem *t, enum tm_mode mode)
{
	atomic_store(&t->mode, (int)mode);
}

void tm_set_write_delay(struct tmem *t, unsigned usec)
{
	atomic_store(&t->delay_us, usec);
}

uint64_t tm_written(struct tmem *t, uint64_t from)
{
	uint64_t sum = 0;

	pthread_mutex_lock(&t->lock);
	for (size_t i = 0; i < t->nlog; i++)
		if (t->log_off[2 * i] >= from)
			sum += t->log_off[2 * i + 1];
	pthread_mutex_unlock(&t->lock);
	return sum;
}

void tm_reset_counters(struct tmem *t)
{
	pthread_mutex_lock(&t->lock);
	t->nlog = 0;
	pthread_mutex_unlock(&t->lock);
}

uint8_t *tm_ram_data(struct tmem *t)
{
	return t->ram;
}
