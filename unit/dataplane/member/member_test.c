/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/member/member.h"

/* A RAM provider that completes inline, to check the handle's contract. */
struct ram {
	uint8_t *data;
	int destroyed;
};

static int ram_submit(void *ctx, struct ts_member_io *io)
{
	struct ram *r = ctx;
	if (io->op == TS_MEMBER_READ)
		memcpy(io->buf, r->data + io->offset, io->len);
	else if (io->op == TS_MEMBER_WRITE)
		memcpy(r->data + io->offset, io->buf, io->len);
	else if (io->op == TS_MEMBER_UNMAP)
		memset(r->data + io->offset, 0, io->len);
	io->cb(io, 0);
	return 0;
}

static void ram_destroy(void *ctx)
{
	((struct ram *)ctx)->destroyed = 1;
}

static const struct ts_member_ops g_ram_ops = { .submit = ram_submit, .destroy = ram_destroy };

Test(member, validates_and_round_trips)
{
	static uint8_t store[64 * 1024];
	struct ram r = { store, 0 };
	struct ts_member_info info = { .size = sizeof(store), .block_size = 4096, .node_id = 2 };
	struct ts_member *m;
	uint8_t buf[8192], back[8192];

	strcpy(info.name, "ram0");
	info.block_size = 1000;
	cr_assert_eq(ts_member_create(&g_ram_ops, &r, &info, &m), -EINVAL);
	info.block_size = 4096;
	cr_assert_eq(ts_member_create(&g_ram_ops, &r, &info, &m), 0);
	cr_assert_eq(ts_member_info(m)->node_id, 2);

	memset(buf, 0x3c, sizeof(buf));
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, TS_MEMBER_FUA, 4096, 8192, buf), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 4096, 8192, back), 0);
	cr_assert_arr_eq(buf, back, sizeof(buf));
	/* misaligned, empty, past the end */
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 100, 4096, back), -EINVAL);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, 0, back), -EINVAL);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 61440, 8192, back), -EINVAL);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_UNMAP, 0, 4096, 4096, NULL), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 4096, 4096, back), 0);
	cr_assert_eq(back[0], 0);
	ts_member_destroy(m);
	cr_assert_eq(r.destroyed, 1);
	ts_member_destroy(NULL);
}

/* A provider that fails every IO in its completion with -EIO. */
static int fail_submit(void *ctx, struct ts_member_io *io)
{
	(void)ctx;
	io->cb(io, -EIO);
	return 0;
}

/* A provider that completes later, from another thread. */
struct late {
	struct ts_member_io *io;
	pthread_t tid;
};

static void *late_main(void *arg)
{
	struct late *l = arg;

	usleep(20000);
	l->io->cb(l->io, 0);
	return NULL;
}

static int late_submit(void *ctx, struct ts_member_io *io)
{
	struct late *l = ctx;

	l->io = io;
	return pthread_create(&l->tid, NULL, late_main, l) ? -EAGAIN : 0;
}

static const struct ts_member_ops g_fail_ops = { .submit = fail_submit };
static const struct ts_member_ops g_late_ops = { .submit = late_submit };

Test(member, fanout_counts_completions_first_error_wins)
{
	static uint8_t store[64 * 1024];
	struct ram r = { store, 0 };
	struct late lt = { 0 };
	struct ts_member_info info = { .size = sizeof(store), .block_size = 4096 };
	struct ts_member *ok, *bad, *late;
	struct ts_member_fanout_io x[4];
	struct ts_member_fanout f;
	uint8_t buf[4096] = { 7 };

	cr_assert_eq(ts_member_create(&g_ram_ops, &r, &info, &ok), 0);
	cr_assert_eq(ts_member_create(&g_fail_ops, NULL, &info, &bad), 0);
	cr_assert_eq(ts_member_create(&g_late_ops, &lt, &info, &late), 0);
	ts_member_fanout_init(&f);
	for (int i = 0; i < 4; i++)
		x[i].io = (struct ts_member_io){ .op = TS_MEMBER_WRITE, .offset = 0, .len = 4096,
						 .buf = buf };
	x[2].io.offset = 100; /* misaligned: a submission error */
	cr_assert_eq(ts_member_fanout_add(&f, &x[0], late), 0);
	cr_assert_eq(ts_member_fanout_add(&f, &x[1], bad), 0);
	cr_assert_eq(ts_member_fanout_add(&f, &x[2], ok), -EINVAL);
	cr_assert_eq(ts_member_fanout_add(&f, &x[3], ok), 0);
	cr_assert_eq(ts_member_fanout_wait(&f), -EIO);
	pthread_join(lt.tid, NULL);
	cr_assert_eq(x[0].status, 0);
	cr_assert_eq(x[1].status, -EIO);
	cr_assert_eq(x[2].status, -EINVAL);
	cr_assert_eq(x[3].status, 0);
	cr_assert_eq(store[0], 7);
	/* an empty fan-out waits for nothing */
	ts_member_fanout_init(&f);
	cr_assert_eq(ts_member_fanout_wait(&f), 0);
	ts_member_destroy(ok);
	ts_member_destroy(bad);
	ts_member_destroy(late);
}

static void wake_later(void *arg)
{
	usleep(10000);
	ts_member_wake(arg, -ENOSPC);
}

static void *wake_main(void *arg)
{
	wake_later(arg);
	return NULL;
}

Test(member, wait_returns_the_callback_status_or_the_submit_error)
{
	struct ts_member_waiter w = TS_MEMBER_WAITER_INIT, w2 = TS_MEMBER_WAITER_INIT;
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, wake_main, &w), 0);
	cr_assert_eq(ts_member_wait(&w, 0), -ENOSPC);
	pthread_join(t, NULL);
	cr_assert_eq(ts_member_wait(&w2, -EINVAL), -EINVAL);
}
