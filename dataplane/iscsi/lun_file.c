/* SPDX-License-Identifier: Apache-2.0 */
/*
 * File- and RAM-backed LUN provider for the iSCSI target.
 *
 * The engine submits IO from its loop threads and must never block on it.
 * A hand-off to a worker thread costs two context switches and a futex wake
 * per IO, which on a 2-core machine was most of the target's CPU time (see
 * docs/benchmarking.md, iSCSI), so reads and writes run inline on the
 * calling thread whenever they cannot wait on a device:
 *  - the file lives in memory (tmpfs, ramfs: detected with fstatfs at
 *    create): the file is mapped (MAP_SHARED) and reads are a memcpy from
 *    the mapping, no syscall; writes too while the file has no holes (a
 *    store into a hole allocates, and on a full tmpfs that is SIGBUS, not
 *    ENOSPC), else an inline pwrite; the first unmap (hole punch) turns
 *    mapped writes off for good. FUA needs nothing more there: the page
 *    cache is the medium. The file must not be truncated behind our back;
 *  - otherwise preadv2/pwritev2 with RWF_NOWAIT is tried first; the kernel
 *    does it only if it needs no IO or lock wait, else says EAGAIN and the
 *    op goes to the workers. A filesystem that refuses RWF_NOWAIT for an op
 *    (EOPNOTSUPP; ext4 for buffered writes) is remembered and not asked again.
 * Elsewhere FUA writes, flush and unmap always go to the workers (they wait
 * on the device by definition). Workers take IO from one FIFO queue (the
 * ts_iscsi_lun_io's priv[0] links it; no allocation per IO). RAM IO is a
 * memcpy and completes inline too. Unmap punches holes (zeroes on read
 * afterwards) and falls back to writing zeroes.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/lun_file.h"

enum { OP_READ = 1, OP_WRITE, OP_FLUSH, OP_UNMAP };

struct ts_iscsi_file_lun {
	int fd;
	uint8_t *ram;
	uint64_t size;
	bool mem_backed;          /* tmpfs/ramfs: pread/pwrite never wait on a device */
	uint8_t *map;             /* mem_backed: the file mapped shared (NULL if mmap failed) */
	atomic_bool map_writes;   /* writes through map: no holes, so no page is allocated
				     by a store (a store that must allocate on a full tmpfs
				     would be SIGBUS, where pwrite says ENOSPC) */
	atomic_bool nowait_read;  /* RWF_NOWAIT still worth trying for reads */
	atomic_bool nowait_write; /* ... and for writes */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ts_iscsi_lun_io *head, *tail;
	bool stop;
	unsigned nthreads;
	pthread_t threads[16];
};

static int do_io(struct ts_iscsi_file_lun *l, int op, struct ts_iscsi_lun_io *io)
{
	int rc = 0;
	switch (op) {
	case OP_READ:
		return ts_pread_full(l->fd, io->buf, io->len, io->offset);
	case OP_WRITE:
		rc = ts_pwrite_full(l->fd, io->buf, io->len, io->offset);
		if (!rc && (io->flags & TS_ISCSI_LUN_FUA) && fdatasync(l->fd))
			rc = -errno;
		return rc;
	case OP_FLUSH:
		return fdatasync(l->fd) ? -errno : 0;
	case OP_UNMAP:
		if (fallocate(l->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)io->offset,
			      (off_t)io->len) == 0)
			return 0;
		{
			static const uint8_t zero[65536];
			for (uint64_t off = 0; off < io->len && !rc; off += sizeof(zero))
				rc = ts_pwrite_full(l->fd, zero, TS_MIN(sizeof(zero), io->len - off),
						    io->offset + off);
		}
		return rc;
	}
	return -EINVAL;
}

static void *worker(void *arg)
{
	struct ts_iscsi_file_lun *l = arg;
	pthread_mutex_lock(&l->lock);
	for (;;) {
		while (!l->head && !l->stop)
			pthread_cond_wait(&l->cond, &l->lock);
		if (!l->head)
			break;
		struct ts_iscsi_lun_io *io = l->head;
		l->head = io->priv[0];
		if (!l->head)
			l->tail = NULL;
		pthread_mutex_unlock(&l->lock);
		int rc = do_io(l, (int)(intptr_t)io->priv[1], io);
		io->cb(io, rc);
		pthread_mutex_lock(&l->lock);
	}
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/*
 * Do a read or a non-FUA write on the calling thread if that cannot block:
 * 0 when it is done (successfully), -EAGAIN when the workers must do it (from
 * the start: a partial NOWAIT transfer is simply redone whole, which rewrites
 * the same bytes).
 */
static int try_inline(struct ts_iscsi_file_lun *l, int op, struct ts_iscsi_lun_io *io)
{
	bool wr = op == OP_WRITE;
	/* on tmpfs the page cache is the medium: FUA asks for nothing more */
	if ((op != OP_READ && !wr) || (wr && (io->flags & TS_ISCSI_LUN_FUA) && !l->mem_backed))
		return -EAGAIN;
	if (l->map && (!wr || atomic_load_explicit(&l->map_writes, memory_order_relaxed))) {
		if (wr)
			memcpy(l->map + io->offset, io->buf, io->len);
		else
			memcpy(io->buf, l->map + io->offset, io->len);
		return 0;
	}
	if (l->mem_backed)
		return do_io(l, op, io) ? -EAGAIN : 0; /* an error is retried, and reported, by a worker */
	atomic_bool *ok = wr ? &l->nowait_write : &l->nowait_read;
	if (!atomic_load_explicit(ok, memory_order_relaxed) || io->len > SSIZE_MAX)
		return -EAGAIN;
	struct iovec v = { .iov_base = io->buf, .iov_len = io->len };
	ssize_t n = wr ? pwritev2(l->fd, &v, 1, (off_t)io->offset, RWF_NOWAIT)
		       : preadv2(l->fd, &v, 1, (off_t)io->offset, RWF_NOWAIT);
	if (n == (ssize_t)io->len)
		return 0;
	if (n < 0 && (errno == EOPNOTSUPP || errno == EINVAL))
		atomic_store_explicit(ok, false, memory_order_relaxed);
	return -EAGAIN;
}

static int submit(void *ctx, struct ts_iscsi_lun_io *io, int op)
{
	struct ts_iscsi_file_lun *l = ctx;
	if (io->offset > l->size || io->len > l->size - io->offset)
		return -EINVAL;
	if (op == OP_UNMAP && l->map)
		atomic_store(&l->map_writes, false); /* holes from now on: writes by pwrite */
	if (l->ram) {
		switch (op) {
		case OP_READ: memcpy(io->buf, l->ram + io->offset, io->len); break;
		case OP_WRITE: memcpy(l->ram + io->offset, io->buf, io->len); break;
		case OP_UNMAP: memset(l->ram + io->offset, 0, io->len); break;
		default: break;
		}
		io->cb(io, 0);
		return 0;
	}
	if (try_inline(l, op, io) == 0) {
		io->cb(io, 0);
		return 0;
	}
	io->priv[0] = NULL;
	io->priv[1] = (void *)(intptr_t)op;
	pthread_mutex_lock(&l->lock);
	if (l->stop) {
		pthread_mutex_unlock(&l->lock);
		return -ESHUTDOWN;
	}
	if (l->tail)
		l->tail->priv[0] = io;
	else
		l->head = io;
	l->tail = io;
	pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int op_read(void *ctx, struct ts_iscsi_lun_io *io) { return submit(ctx, io, OP_READ); }
static int op_write(void *ctx, struct ts_iscsi_lun_io *io) { return submit(ctx, io, OP_WRITE); }
static int op_flush(void *ctx, struct ts_iscsi_lun_io *io) { return submit(ctx, io, OP_FLUSH); }
static int op_unmap(void *ctx, struct ts_iscsi_lun_io *io) { return submit(ctx, io, OP_UNMAP); }

static int op_lba_status(void *ctx, uint64_t offset, uint64_t *len, bool *mapped)
{
	struct ts_iscsi_file_lun *l = ctx;
	if (l->ram) {
		*mapped = true;
		return 0;
	}
	off_t data = lseek(l->fd, (off_t)offset, SEEK_DATA);
	if (data < 0 && errno == ENXIO)
		data = (off_t)l->size;
	if (data < 0)
		return -errno;
	if ((uint64_t)data > offset) {
		*mapped = false;
		*len = TS_MIN(*len, (uint64_t)data - offset);
		return 0;
	}
	off_t hole = lseek(l->fd, (off_t)offset, SEEK_HOLE);
	if (hole < 0)
		return -errno;
	*mapped = true;
	*len = TS_MIN(*len, (uint64_t)hole - offset);
	return 0;
}

static void op_destroy(void *ctx)
{
	ts_iscsi_file_lun_destroy(ctx);
}

static const struct ts_iscsi_lun_ops g_file_ops = {
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.unmap = op_unmap,
	.lba_status = op_lba_status,
	.destroy = op_destroy,
};

const struct ts_iscsi_lun_ops *ts_iscsi_file_lun_ops(void)
{
	return &g_file_ops;
}

int ts_iscsi_file_lun_create(const char *path, uint64_t size, unsigned threads, struct ts_iscsi_file_lun **out)
{
	struct ts_iscsi_file_lun *l;
	int rc = 0;
	if (!out || !size)
		return -EINVAL;
	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	l->size = size;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cond, NULL);
	if (!path) {
		l->ram = ts_calloc(1, size);
		if (!l->ram) {
			rc = -ENOMEM;
			goto fail;
		}
		*out = l;
		return 0;
	}
	l->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		rc = -errno;
		goto fail;
	}
	struct stat st;
	if (fstat(l->fd, &st) || ((uint64_t)st.st_size < size && ftruncate(l->fd, (off_t)size))) {
		rc = -errno;
		goto fail;
	}
	struct statfs sfs;
	if (fstatfs(l->fd, &sfs) == 0)
		l->mem_backed = sfs.f_type == TMPFS_MAGIC || sfs.f_type == RAMFS_MAGIC;
	if (l->mem_backed && size <= SIZE_MAX) {
		void *m = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, l->fd, 0);
		if (m != MAP_FAILED) {
			l->map = m;
			off_t hole = lseek(l->fd, 0, SEEK_HOLE);
			atomic_init(&l->map_writes, hole >= 0 && (uint64_t)hole >= size);
		}
	}
	atomic_init(&l->nowait_read, true);
	atomic_init(&l->nowait_write, true);
	threads = threads ? TS_MIN(threads, 16u) : 4;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&l->threads[i], NULL, worker, l)) {
			rc = -EAGAIN;
			goto fail;
		}
		l->nthreads++;
	}
	*out = l;
	return 0;
fail:
	ts_iscsi_file_lun_destroy(l);
	return rc;
}

void ts_iscsi_file_lun_destroy(struct ts_iscsi_file_lun *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_cond_broadcast(&l->cond);
	pthread_mutex_unlock(&l->lock);
	for (unsigned i = 0; i < l->nthreads; i++)
		pthread_join(l->threads[i], NULL);
	if (l->map)
		munmap(l->map, (size_t)l->size);
	if (l->fd >= 0)
		close(l->fd);
	ts_free(l->ram);
	pthread_mutex_destroy(&l->lock);
	pthread_cond_destroy(&l->cond);
	ts_free(l);
}
