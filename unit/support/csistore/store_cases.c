/* SPDX-License-Identifier: Apache-2.0 */
/* The CSI metadata-store cases (store_cases.h). */
#include "unit/support/csistore/store_cases.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

/* (Re)open the store under test into the case's ops/ctx. */
#define OPEN()                                  \
	do {                                    \
		struct csc_store s_;            \
		open(arg, &s_);                 \
		ops = s_.ops;                   \
		ctx = s_.ctx;                   \
	} while (0)

struct ts_csi_volume csc_mkvol(int i)
{
	struct ts_csi_volume v = { 0 };

	snprintf(v.id, sizeof(v.id), "id-%04d", i);
	snprintf(v.name, sizeof(v.name), "name \"%d\" ünïcode", i);
	snprintf(v.attach, sizeof(v.attach), "iscsi://127.0.0.1:3260/iqn.2026-11.io.tessera:%d/0", i);
	snprintf(v.fs_type, sizeof(v.fs_type), "%s", i % 2 ? "xfs" : "");
	v.capacity_bytes = (uint64_t)i << 30;
	v.ec_k = (uint32_t)(i % 5);
	v.ec_m = (uint32_t)(i % 3);
	v.block = i % 3 == 0;
	if (i % 4 == 1)
		snprintf(v.source, sizeof(v.source), "%s:ts-%016d", i % 8 == 1 ? "snapshot" : "volume", i);
	if (i % 3 == 1)
		v.qos = (struct ts_csi_qos){ .iops = 100u * (unsigned)i, .write_bps = 1u << 20,
					     .burst_ms = 250, .reserve_iops = (unsigned)i };
	v.access_modes = 1u << (1 + i % TS_CSI_MODE_MAX);
	if (i % 5 == 2)
		v.access_modes |= 1u << TS_CSI_MODE_MULTI_NODE_READER_ONLY;
	return v;
}

void csc_expect_same(const struct ts_csi_volume *a, const struct ts_csi_volume *b)
{
	cr_expect_str_eq(a->id, b->id);
	cr_expect_str_eq(a->name, b->name);
	cr_expect_str_eq(a->attach, b->attach);
	cr_expect_str_eq(a->fs_type, b->fs_type);
	cr_expect_eq(a->capacity_bytes, b->capacity_bytes);
	cr_expect_eq(a->ec_k, b->ec_k);
	cr_expect_eq(a->ec_m, b->ec_m);
	cr_expect_eq(a->block, b->block);
	cr_expect_str_eq(a->source, b->source);
	cr_expect_eq(memcmp(&a->qos, &b->qos, sizeof(a->qos)), 0, "qos of %s", a->id);
	cr_expect_eq(a->access_modes, b->access_modes, "access modes of %s", a->id);
}

void csc_case_put_get_del_reopen(csc_open_fn open, void *arg)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume v, out;

	OPEN();
	for (int i = 9; i >= 0; i--) {
		v = csc_mkvol(i);
		cr_assert_eq(ops->put(ctx, &v), 0);
	}
	v = csc_mkvol(3);
	v.capacity_bytes = 77;
	cr_assert_eq(ops->put(ctx, &v), 0); /* replace */
	cr_assert_eq(ops->del(ctx, "id-0005"), 0);
	cr_assert_eq(ops->del(ctx, "id-0005"), -ENOENT);
	cr_assert_eq(ops->get(ctx, "id-0005", &out), -ENOENT);
	cr_assert_eq(ops->count(ctx), 9);
	ops->destroy(ctx);

	OPEN();
	cr_assert_eq(ops->count(ctx), 9);
	for (int i = 0; i < 10; i++) {
		char id[32];
		struct ts_csi_volume want = csc_mkvol(i);

		snprintf(id, sizeof(id), "id-%04d", i);
		if (i == 5) {
			cr_expect_eq(ops->get(ctx, id, &out), -ENOENT);
			continue;
		}
		if (i == 3)
			want.capacity_bytes = 77;
		cr_assert_eq(ops->get(ctx, id, &out), 0, "%s after reopen", id);
		csc_expect_same(&out, &want);
		cr_assert_eq(ops->get_by_name(ctx, want.name, &out), 0);
		cr_expect_str_eq(out.id, id);
	}
	ops->destroy(ctx);
}

void csc_case_list_pages(csc_open_fn open, void *arg)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume v, page[3];
	char after[TS_CSI_ID_MAX + 1] = "";
	size_t n, total = 0;
	bool more = true;

	OPEN();
	for (int i = 0; i < 10; i++) {
		v = csc_mkvol((i * 7) % 10);
		cr_assert_eq(ops->put(ctx, &v), 0);
	}
	while (more) {
		cr_assert_eq(ops->list(ctx, after, page, 3, &n, &more), 0);
		for (size_t i = 0; i < n; i++) {
			char want[32];

			snprintf(want, sizeof(want), "id-%04zu", total + i);
			cr_assert_str_eq(page[i].id, want);
		}
		total += n;
		if (n)
			snprintf(after, sizeof(after), "%s", page[n - 1].id);
		cr_assert_leq(total, 10);
	}
	cr_expect_eq(total, 10);
	/* A token naming a deleted record still continues after it. */
	cr_assert_eq(ops->del(ctx, "id-0004"), 0);
	cr_assert_eq(ops->list(ctx, "id-0004", page, 3, &n, &more), 0);
	cr_assert_eq(n, 3);
	cr_expect_str_eq(page[0].id, "id-0005");
	ops->destroy(ctx);
}

/* Random operations against a reference array, with allocation failures and reopens. */
void csc_case_random_model(csc_open_fn open, void *arg, int steps, bool inject_failures)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume model[40];
	bool present[40] = { false };
	unsigned seed = 12345;

	OPEN();
	for (int step = 0; step < steps; step++) {
		int i = (int)(rand_r(&seed) % 40), op = (int)(rand_r(&seed) % 10);
		struct ts_csi_volume v = csc_mkvol(i), out;
		int rc;

		v.capacity_bytes += (uint64_t)step;
		if (op < 5) {
			bool inject = rand_r(&seed) % 8 == 0 && inject_failures;

			if (inject)
				ts_alloc_fail_after(0);
			rc = ops->put(ctx, &v);
			ts_alloc_fail_after(-1);
			if (rc == 0) {
				model[i] = v;
				present[i] = true;
			} else {
				cr_assert(inject, "put failed without injection: %d", rc);
				cr_assert_eq(rc, -ENOMEM);
			}
		} else if (op < 8) {
			rc = ops->del(ctx, v.id);
			cr_assert_eq(rc, present[i] ? 0 : -ENOENT);
			present[i] = false;
		} else if (op == 8) {
			ops->destroy(ctx);
			OPEN();
		}
		rc = ops->get(ctx, v.id, &out);
		cr_assert_eq(rc, present[i] ? 0 : -ENOENT, "step %d", step);
		if (present[i])
			csc_expect_same(&out, &model[i]);
	}
	{
		size_t n = 0;

		for (int i = 0; i < 40; i++)
			n += present[i];
		cr_expect_eq(ops->count(ctx), n);
	}
	ops->destroy(ctx);
	/* What is on disk equals the model too. */
	OPEN();
	for (int i = 0; i < 40; i++) {
		struct ts_csi_volume v = csc_mkvol(i), out;

		cr_assert_eq(ops->get(ctx, v.id, &out), present[i] ? 0 : -ENOENT);
	}
	ops->destroy(ctx);
}

static struct ts_csi_group mkgroup(int i, uint32_t n)
{
	struct ts_csi_group g = { 0 };

	snprintf(g.id, sizeof(g.id), "gs-%04d", i);
	snprintf(g.name, sizeof(g.name), "group \"%d\"", i);
	g.ctime_ns = 1700000000000000000ull + (uint64_t)i;
	g.n = n;
	for (uint32_t k = 0; k < n; k++) {
		snprintf(g.vol[k], sizeof(g.vol[k]), "tv-%d-%u", i, k);
		snprintf(g.snap[k], sizeof(g.snap[k]), "ts-%d-%u", i, k);
	}
	return g;
}

static void expect_group(const struct ts_csi_group *a, const struct ts_csi_group *b)
{
	cr_expect_str_eq(a->id, b->id);
	cr_expect_str_eq(a->name, b->name);
	cr_expect_eq(a->ctime_ns, b->ctime_ns);
	cr_assert_eq(a->n, b->n);
	for (uint32_t k = 0; k < a->n; k++) {
		cr_expect_str_eq(a->vol[k], b->vol[k]);
		cr_expect_str_eq(a->snap[k], b->snap[k]);
	}
}

void csc_case_groups(csc_open_fn open, void *arg)
{
	const struct ts_csi_store_ops *ops;
	struct ts_csi_group g1 = mkgroup(1, 3), g2 = mkgroup(2, TS_CSI_GROUP_MAX), out, big;
	struct ts_csi_volume v = csc_mkvol(7), vout;
	void *ctx;

	OPEN();
	cr_assert_eq(ops->group_put(ctx, &g1), 0);
	cr_assert_eq(ops->group_put(ctx, &g2), 0);
	cr_assert_eq(ops->put(ctx, &v), 0);
	big = mkgroup(3, 1);
	big.n = TS_CSI_GROUP_MAX + 1;
	cr_expect_eq(ops->group_put(ctx, &big), -EINVAL);
	ops->destroy(ctx);

	OPEN();
	cr_expect_eq(ops->count(ctx), 1, "group records are not volumes");
	cr_assert_eq(ops->get(ctx, v.id, &vout), 0);
	csc_expect_same(&v, &vout);
	cr_assert_eq(ops->group_get(ctx, "gs-0001", &out), 0);
	expect_group(&g1, &out);
	cr_assert_eq(ops->group_get_by_name(ctx, "group \"2\"", &out), 0);
	expect_group(&g2, &out);
	cr_assert_eq(ops->group_of_snap(ctx, "ts-2-63", &out), 0);
	cr_expect_str_eq(out.id, "gs-0002");
	cr_expect_eq(ops->group_of_snap(ctx, "ts-9-0", &out), -ENOENT);
	cr_expect_eq(ops->group_get(ctx, "gs-0003", &out), -ENOENT);

	g1.snap[0][3] = 'X';
	cr_assert_eq(ops->group_put(ctx, &g1), 0, "replace");
	cr_assert_eq(ops->group_del(ctx, "gs-0002"), 0);
	cr_expect_eq(ops->group_del(ctx, "gs-0002"), -ENOENT);
	ops->destroy(ctx);

	OPEN();
	cr_assert_eq(ops->group_get(ctx, "gs-0001", &out), 0);
	expect_group(&g1, &out);
	cr_expect_eq(ops->group_get(ctx, "gs-0002", &out), -ENOENT);
	cr_expect_eq(ops->group_of_snap(ctx, "ts-2-0", &out), -ENOENT);
	ops->destroy(ctx);
}

