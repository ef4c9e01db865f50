/* SPDX-License-Identifier: Apache-2.0 */
/* The file/RAM LUN provider against its contract: one callback per accepted op, data round trips, unmap reads back zeroes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/iscsi/lun_file.h"

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int calls, status;
};

static void done(struct ts_iscsi_lun_io *io, int status)
{
	struct waiter *w = io->cb_arg;
	pthread_mutex_lock(&w->lock);
	w->calls++;
	w->status = status;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int run(int (*op)(void *, struct ts_iscsi_lun_io *), void *ctx, uint64_t off, uint64_t len, void *buf,
	       uint32_t flags)
{
	struct waiter w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	struct ts_iscsi_lun_io io = { .offset = off, .len = len, .buf = buf, .flags = flags, .cb = done, .cb_arg = &w };
	int rc = op(ctx, &io);
	if (rc)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.calls)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	usleep(1000);
	cr_assert_eq(w.calls, 1, "callback fired %d times", w.calls);
	return w.status;
}

static void exercise(const char *path, bool prefilled)
{
	struct ts_iscsi_file_lun *l;
	const struct ts_iscsi_lun_ops *ops = ts_iscsi_file_lun_ops();
	const uint64_t size = 4 << 20;
	cr_assert_eq(ts_iscsi_file_lun_create(path, size, 2, &l), 0);
	static uint8_t wbuf[65536], rbuf[65536];
	for (size_t i = 0; i < sizeof(wbuf); i++)
		wbuf[i] = (uint8_t)(i * 13 + 1);
	cr_assert_eq(run(ops->write, l, 1 << 20, sizeof(wbuf), wbuf, TS_ISCSI_LUN_FUA), 0);
	cr_assert_eq(run(ops->read, l, 1 << 20, sizeof(rbuf), rbuf, 0), 0);
	cr_assert_eq(memcmp(wbuf, rbuf, sizeof(rbuf)), 0);
	/* a plain (non-FUA) write over part of it, read back across the seam */
	static uint8_t w2[8192];
	memset(w2, 0xa5, sizeof(w2));
	cr_assert_eq(run(ops->write, l, (1 << 20) + 16384, sizeof(w2), w2, 0), 0);
	cr_assert_eq(run(ops->read, l, 1 << 20, sizeof(rbuf), rbuf, 0), 0);
	cr_assert_eq(memcmp(rbuf + 16384, w2, sizeof(w2)), 0);
	cr_assert_eq(memcmp(rbuf, wbuf, 16384), 0);
	memcpy(wbuf + 16384, w2, sizeof(w2)); /* the expected content from here on */
	cr_assert_eq(run(ops->flush, l, 0, 0, NULL, 0), 0);
	cr_assert_eq(run(ops->unmap, l, 1 << 20, 4096, NULL, 0), 0);
	cr_assert_eq(run(ops->read, l, 1 << 20, sizeof(rbuf), rbuf, 0), 0);
	for (size_t i = 0; i < 4096; i++)
		cr_assert_eq(rbuf[i], 0);
	cr_assert_eq(memcmp(wbuf + 4096, rbuf + 4096, sizeof(rbuf) - 4096), 0);
	/* out of range: refused, no callback */
	struct ts_iscsi_lun_io io = { .offset = size, .len = 512, .buf = rbuf, .cb = NULL };
	cr_assert_eq(ops->read(l, &io), -EINVAL);
	/* LBA status: the start of the LUN was never written */
	uint64_t len = size;
	bool mapped = true;
	cr_assert_eq(ops->lba_status(l, 0, &len, &mapped), 0);
	if (path && !prefilled) {
		/* never written, then the punched 4 KiB: unmapped up to 1 MiB + 4 KiB */
		cr_assert(!mapped);
		cr_assert_leq(len, (uint64_t)(1 << 20) + 4096);
		len = size;
		cr_assert_eq(ops->lba_status(l, (1 << 20) + 4096, &len, &mapped), 0);
		cr_assert(mapped);
		cr_assert_geq(len, 4096);
	}
	ops->destroy(l);
}

Test(lun_file, ram) { exercise(NULL, false); }

Test(lun_file, file)
{
	char path[] = "/tmp/ts-lunfile-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	close(fd);
	exercise(path, false);
	unlink(path);
}

/* tmpfs: reads and non-FUA writes complete inline on the caller's thread */
Test(lun_file, tmpfs)
{
	char path[] = "/dev/shm/ts-lunfile-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		cr_skip_test("no /dev/shm");
	close(fd);
	exercise(path, false);
	unlink(path);
}

/* a fully allocated tmpfs file: writes go through the mapping until an unmap punches a hole */
Test(lun_file, tmpfs_allocated)
{
	char path[] = "/dev/shm/ts-lunfile-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		cr_skip_test("no /dev/shm");
	cr_assert_eq(posix_fallocate(fd, 0, 4 << 20), 0);
	close(fd);
	exercise(path, true);
	unlink(path);
}
