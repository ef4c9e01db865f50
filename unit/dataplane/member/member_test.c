/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <string.h>

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
