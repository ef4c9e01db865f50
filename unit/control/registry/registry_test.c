/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The directory registry: node records round-trip (and are replaced, not
 * duplicated), requests are pending until completed and served oldest
 * first, completion statuses reach a waiter, group records round-trip, and a
 * second handle on the same directory (another process) sees everything.
 * Group ownership: epochs raised concurrently from two handles are distinct
 * and strictly increasing, a record from a stale epoch is refused, records
 * without owner fields read as "no owner, epoch 0", malformed fields fail.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "control/registry/registry.h"
#include "unit/support/registry/registry_cases.h"

static char g_dir[64];
static struct ts_registry *g_a, *g_b;

static void setup(void)
{
	strcpy(g_dir, "/tmp/ts_reg_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	cr_assert_eq(ts_registry_dir_open(g_dir, &g_a), 0);
	cr_assert_eq(ts_registry_dir_open(g_dir, &g_b), 0);
}

static void teardown(void)
{
	char cmd[128];

	ts_registry_close(g_a);
	ts_registry_close(g_b);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(node_registry, .init = setup, .fini = teardown);

/* the cases every store passes (unit/support/registry), here over the directory */
Test(node_registry, node_records)
{
	reg_case_node_records(g_a, g_b, true);
}

Test(node_registry, requests_mailbox)
{
	reg_case_requests_mailbox(g_a, g_b);
}

Test(node_registry, group_records)
{
	reg_case_group_records(g_a, g_b);
}

Test(node_registry, group_records_are_listed)
{
	reg_case_list_groups(g_a, g_b);
}

Test(node_registry, unparsable_request_can_be_completed)
{
	struct ts_reg_request got;
	char path[160];
	int fd, st = 0;

	snprintf(path, sizeof(path), "%s/requests/4", g_dir);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/requests/4/garbage-1.req", g_dir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "{not json", 9), 9);
	close(fd);
	cr_assert_eq(ts_registry_next_request(g_a, 4, &got), -EINVAL);
	cr_assert_str_eq(got.id, "garbage-1");
	cr_assert_eq(ts_registry_complete_request(g_a, 4, got.id, -EINVAL), 0);
	cr_assert_eq(ts_registry_next_request(g_a, 4, &got), -ENOENT);
	cr_assert_eq(ts_registry_wait_request(g_b, 4, "garbage-1", 100, &st), 0);
	cr_assert_eq(st, -EINVAL);
}

Test(node_registry, raise_epoch_hands_the_group_over_and_refuses_stale_records)
{
	reg_case_raise_epoch_and_stale(g_a, g_b);
}

Test(node_registry, concurrent_epoch_raises_are_distinct)
{
	reg_case_concurrent_raises(g_a, g_b, 100);
}

Test(node_registry, group_owner_fields_are_validated)
{
	struct ts_reg_group g = reg_case_make_group(), got;
	static const char *const bad[] = { "\"owner_node\":-1", "\"owner_node\":\"2\"",
					   "\"owner_node\":4294967296", "\"epoch\":-5",
					   "\"epoch\":1.5", "\"flags\":-1" };
	char path[160], u[37], buf[8192];
	FILE *f;
	size_t len;

	cr_assert_eq(ts_registry_put_group(g_a, &g), 0);
	ts_uuid_format(g.uuid, u);
	snprintf(path, sizeof(path), "%s/groups/%s.json", g_dir, u);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	len = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[len] = 0;
	char *o = strstr(buf, "\"owner_node\":0,\"epoch\":0,\"flags\":0,");

	cr_assert_not_null(o, "%s", buf);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char rec[8400];

		/* the record with one field replaced by a bad value (the other one dropped) */
		snprintf(rec, sizeof(rec), "%.*s%s,%s", (int)(o - buf), buf, bad[i],
			 o + strlen("\"owner_node\":0,\"epoch\":0,\"flags\":0,"));
		f = fopen(path, "w");
		cr_assert_not_null(f);
		fputs(rec, f);
		fclose(f);
		cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), -EINVAL, "%s", rec);
		cr_assert_eq(ts_registry_put_group(g_a, &g), -EINVAL, "a corrupt record is not overwritten");
	}
	/* a record from before owners existed: no owner, epoch 0 */
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "%.*s%s", (int)(o - buf), buf,
		o + strlen("\"owner_node\":0,\"epoch\":0,\"flags\":0,"));
	fclose(f);
	cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 0);
	cr_assert_eq(got.epoch, 0);
	cr_assert_eq(memcmp(got.slots, g.slots, sizeof(g.slots)), 0);
}
