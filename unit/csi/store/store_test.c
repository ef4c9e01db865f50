/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded metadata store: records survive a reopen, list pages in id
 * order, half-written temp files are discarded, corrupt records fail the
 * open, allocation failures leave memory and disk consistent. Checked against
 * a plain reference model with random operations. Group snapshot records
 * have a table of their own with the same guarantees.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/store/store.h"
#include "dataplane/common/ts_common.h"

static char g_dir[128];

static void setup(void)
{
	snprintf(g_dir, sizeof(g_dir), "/tmp/ts-csi-store-XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
}

static void teardown(void)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(csi_store, .init = setup, .fini = teardown);

static struct ts_csi_volume mkvol(int i)
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

static void expect_same(const struct ts_csi_volume *a, const struct ts_csi_volume *b)
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

Test(csi_store, put_get_del_reopen)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume v, out;
	char path[300];

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	for (int i = 9; i >= 0; i--) {
		v = mkvol(i);
		cr_assert_eq(ops->put(ctx, &v), 0);
	}
	v = mkvol(3);
	v.capacity_bytes = 77;
	cr_assert_eq(ops->put(ctx, &v), 0); /* replace */
	cr_assert_eq(ops->del(ctx, "id-0005"), 0);
	cr_assert_eq(ops->del(ctx, "id-0005"), -ENOENT);
	cr_assert_eq(ops->get(ctx, "id-0005", &out), -ENOENT);
	cr_assert_eq(ops->count(ctx), 9);
	ops->destroy(ctx);

	/* A crash mid-write leaves a temp file: it is discarded at open. */
	snprintf(path, sizeof(path), "%s/id-0042.json.tmp", g_dir);
	{
		int fd = open(path, O_CREAT | O_WRONLY, 0600);

		cr_assert_geq(fd, 0);
		cr_assert_eq(write(fd, "{\"ver", 5), 5);
		close(fd);
	}
	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_expect_neq(access(path, F_OK), 0);
	cr_assert_eq(ops->count(ctx), 9);
	for (int i = 0; i < 10; i++) {
		char id[32];
		struct ts_csi_volume want = mkvol(i);

		snprintf(id, sizeof(id), "id-%04d", i);
		if (i == 5) {
			cr_expect_eq(ops->get(ctx, id, &out), -ENOENT);
			continue;
		}
		if (i == 3)
			want.capacity_bytes = 77;
		cr_assert_eq(ops->get(ctx, id, &out), 0, "%s after reopen", id);
		expect_same(&out, &want);
		cr_assert_eq(ops->get_by_name(ctx, want.name, &out), 0);
		cr_expect_str_eq(out.id, id);
	}
	ops->destroy(ctx);
}

Test(csi_store, list_pages_in_id_order)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume v, page[3];
	char after[TS_CSI_ID_MAX + 1] = "";
	size_t n, total = 0;
	bool more = true;

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	for (int i = 0; i < 10; i++) {
		v = mkvol((i * 7) % 10);
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

Test(csi_store, corrupt_record_fails_open)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	char path[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s/id-0001.json", g_dir);
	f = fopen(path, "w");
	fputs("{\"version\": 1, \"id\": 5}", f);
	fclose(f);
	cr_expect_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), TS_ERR_CORRUPT);
	f = fopen(path, "w");
	fputs("{\"version\":9,\"id\":\"a\",\"name\":\"b\",\"attach\":\"\",\"fs_type\":\"\","
	      "\"capacity_bytes\":1,\"ec_k\":0,\"ec_m\":0,\"block\":false}",
	      f);
	fclose(f);
	cr_expect_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), TS_ERR_VERSION);
}

/* Random operations against a reference array, with allocation failures and reopens. */
Test(csi_store, random_ops_match_model)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	struct ts_csi_volume model[40];
	bool present[40] = { false };
	unsigned seed = 12345;

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	for (int step = 0; step < 600; step++) {
		int i = (int)(rand_r(&seed) % 40), op = (int)(rand_r(&seed) % 10);
		struct ts_csi_volume v = mkvol(i), out;
		int rc;

		v.capacity_bytes += (uint64_t)step;
		if (op < 5) {
			bool inject = rand_r(&seed) % 8 == 0;

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
			cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
		}
		rc = ops->get(ctx, v.id, &out);
		cr_assert_eq(rc, present[i] ? 0 : -ENOENT, "step %d", step);
		if (present[i])
			expect_same(&out, &model[i]);
	}
	{
		size_t n = 0;

		for (int i = 0; i < 40; i++)
			n += present[i];
		cr_expect_eq(ops->count(ctx), n);
	}
	ops->destroy(ctx);
	/* What is on disk equals the model too. */
	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	for (int i = 0; i < 40; i++) {
		struct ts_csi_volume v = mkvol(i), out;

		cr_assert_eq(ops->get(ctx, v.id, &out), present[i] ? 0 : -ENOENT);
	}
	ops->destroy(ctx);
}

/* The fields every record has, before the optional ones \p tail adds (with its "}"). */
#define REC_HEAD                                                                            \
	"{\"version\":1,\"id\":\"a\",\"name\":\"b\",\"attach\":\"x\",\"fs_type\":\"\","    \
	"\"capacity_bytes\":1048576,\"ec_k\":0,\"ec_m\":0,\"block\":true"

/* Write \p json as record "a", open the store; the open's result, *out = record "a". */
static int open_with(const char *json, struct ts_csi_volume *out)
{
	const struct ts_csi_store_ops *ops;
	void *ctx;
	char path[300];
	FILE *f;
	int rc;

	snprintf(path, sizeof(path), "%s/a.json", g_dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(json, f);
	fclose(f);
	rc = ts_csi_store_file_open(g_dir, &ops, &ctx);
	if (rc)
		return rc;
	cr_assert_eq(ops->get(ctx, "a", out), 0);
	ops->destroy(ctx);
	return 0;
}

/* Records written before volumes had a content source read with source "". */
Test(csi_store, record_without_source_reads_as_none)
{
	struct ts_csi_volume out;

	cr_assert_eq(open_with(REC_HEAD "}", &out), 0);
	cr_expect_str_eq(out.source, "");
	cr_expect_str_eq(out.name, "b");
}

Test(csi_store, record_without_qos_reads_as_none)
{
	struct ts_csi_volume out;

	cr_assert_eq(open_with(REC_HEAD ",\"source\":\"\"}", &out), 0);
	cr_expect_eq(out.qos.iops, 0);
	cr_expect_eq(out.qos.reserve_iops, 0);
}

/*
 * Access modes are kept by name; a record from before they were recorded
 * reads as 0, and a name that is no mode makes the record corrupt.
 */
Test(csi_store, access_modes_by_name)
{
	struct ts_csi_volume out;

	for (unsigned m = 1; m <= TS_CSI_MODE_MAX; m++)
		cr_expect_eq(ts_csi_mode_parse(ts_csi_mode_name(m)), (int)m);
	cr_expect_null(ts_csi_mode_name(0));
	cr_expect_null(ts_csi_mode_name(TS_CSI_MODE_MAX + 1));
	cr_expect_eq(ts_csi_mode_parse("RWX"), -EINVAL);
	cr_expect_str_eq(ts_csi_mode_name(TS_CSI_MODE_MULTI_NODE_MULTI_WRITER),
			 "MULTI_NODE_MULTI_WRITER");

	cr_assert_eq(open_with(REC_HEAD ",\"source\":\"\"}", &out), 0);
	cr_expect_eq(out.access_modes, 0, "a record without access_modes");
	cr_assert_eq(open_with(REC_HEAD ",\"access_modes\":[\"MULTI_NODE_MULTI_WRITER\","
				       "\"SINGLE_NODE_WRITER\"]}",
			       &out),
		     0);
	cr_expect_eq(out.access_modes, 1u << TS_CSI_MODE_MULTI_NODE_MULTI_WRITER |
					       1u << TS_CSI_MODE_SINGLE_NODE_WRITER);
	cr_expect_eq(open_with(REC_HEAD ",\"access_modes\":[\"READ_WRITE_MANY\"]}", &out),
		     TS_ERR_CORRUPT);
	cr_expect_eq(open_with(REC_HEAD ",\"access_modes\":5}", &out), TS_ERR_CORRUPT);
	cr_expect_eq(open_with(REC_HEAD ",\"access_modes\":[5]}", &out), TS_ERR_CORRUPT);
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

Test(csi_store, group_records_survive_reopen_and_find_by_member)
{
	const struct ts_csi_store_ops *ops;
	struct ts_csi_group g1 = mkgroup(1, 3), g2 = mkgroup(2, TS_CSI_GROUP_MAX), out, big;
	struct ts_csi_volume v = mkvol(7), vout;
	void *ctx;

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_assert_eq(ops->group_put(ctx, &g1), 0);
	cr_assert_eq(ops->group_put(ctx, &g2), 0);
	cr_assert_eq(ops->put(ctx, &v), 0);
	big = mkgroup(3, 1);
	big.n = TS_CSI_GROUP_MAX + 1;
	cr_expect_eq(ops->group_put(ctx, &big), -EINVAL);
	ops->destroy(ctx);

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_expect_eq(ops->count(ctx), 1, "group records are not volumes");
	cr_assert_eq(ops->get(ctx, v.id, &vout), 0);
	expect_same(&v, &vout);
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

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_assert_eq(ops->group_get(ctx, "gs-0001", &out), 0);
	expect_group(&g1, &out);
	cr_expect_eq(ops->group_get(ctx, "gs-0002", &out), -ENOENT);
	cr_expect_eq(ops->group_of_snap(ctx, "ts-2-0", &out), -ENOENT);
	ops->destroy(ctx);
}

Test(csi_store, corrupt_group_record_fails_open)
{
	const struct ts_csi_store_ops *ops;
	struct ts_csi_group g = mkgroup(1, 2);
	void *ctx;
	char path[300];
	FILE *f;

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_assert_eq(ops->group_put(ctx, &g), 0);
	ops->destroy(ctx);
	snprintf(path, sizeof(path), "%s/groups/left.json.tmp", g_dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{half", f);
	fclose(f);
	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0, "a temp file is discarded");
	ops->destroy(ctx);
	cr_expect_eq(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/groups/gs-0001.json", g_dir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs("{\"version\":1,\"id\":\"gs-0001\",\"members\":7}", f);
	fclose(f);
	cr_expect_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), TS_ERR_CORRUPT);
}
