/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded metadata store: records survive a reopen, list pages in id
 * order, half-written temp files are discarded, corrupt records fail the
 * open, allocation failures leave memory and disk consistent. The behaviour
 * every store shares runs as the cases of unit/support/csistore (the
 * Kubernetes store runs them too, in e2e/kube); the rest is the file
 * store's own: temp files, corrupt files, records from older versions.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/store/store.h"
#include "unit/support/csistore/store_cases.h"
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

static void open_file(void *arg, struct csc_store *s)
{
	(void)arg;
	cr_assert_eq(ts_csi_store_file_open(g_dir, &s->ops, &s->ctx), 0);
}

Test(csi_store, put_get_del_reopen)
{
	csc_case_put_get_del_reopen(open_file, NULL);
}

/* A crash mid-write leaves a temp file: it is discarded at open. */
Test(csi_store, half_written_record_is_discarded)
{
	const struct ts_csi_store_ops *ops;
	struct ts_csi_volume v = csc_mkvol(1), out;
	void *ctx;
	char path[300];
	int fd;

	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_assert_eq(ops->put(ctx, &v), 0);
	ops->destroy(ctx);
	snprintf(path, sizeof(path), "%s/id-0042.json.tmp", g_dir);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "{\"ver", 5), 5);
	close(fd);
	cr_assert_eq(ts_csi_store_file_open(g_dir, &ops, &ctx), 0);
	cr_expect_neq(access(path, F_OK), 0);
	cr_expect_eq(ops->count(ctx), 1);
	cr_assert_eq(ops->get(ctx, v.id, &out), 0);
	csc_expect_same(&out, &v);
	ops->destroy(ctx);
}

Test(csi_store, list_pages_in_id_order)
{
	csc_case_list_pages(open_file, NULL);
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

/* Random operations against a reference model, with allocation failures and reopens. */
Test(csi_store, random_ops_match_model)
{
	csc_case_random_model(open_file, NULL, 600, true);
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

Test(csi_store, group_records_survive_reopen_and_find_by_member)
{
	csc_case_groups(open_file, NULL);
}

Test(csi_store, corrupt_group_record_fails_open)
{
	const struct ts_csi_store_ops *ops;
	struct ts_csi_group g = { .id = "gs-0001", .name = "g", .n = 1,
				     .vol = { "tv-1" }, .snap = { "ts-1" } };
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
