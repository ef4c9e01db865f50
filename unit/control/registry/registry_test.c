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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "control/registry/registry.h"

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

Test(node_registry, node_records)
{
	struct ts_reg_node n = { .node_id = 3, .heartbeat_ms = 111, .free_bytes = 1 << 30, .nvdisks = 2 };
	struct ts_reg_node *out = ts_calloc(TS_REG_MAX_NODES, sizeof(*out));
	unsigned cnt = 0;

	snprintf(n.portal, sizeof(n.portal), "127.0.0.4:3260");
	ts_uuid_generate(n.vdisks[0].uuid);
	ts_uuid_generate(n.vdisks[1].uuid);
	n.vdisks[0].size = 4096;
	n.vdisks[1].size = 1ull << 40;
	n.nserved = 2;
	snprintf(n.served[0].engine, sizeof(n.served[0].engine), "127.0.0.4:3270");
	snprintf(n.served[1].engine, sizeof(n.served[1].engine), "127.0.0.4:3271");
	ts_uuid_generate(n.served[0].uuid);
	ts_uuid_generate(n.served[1].uuid);
	n.served[0].epoch = 7;
	n.served[1].epoch = 1ull << 40;
	cr_assert_eq(ts_registry_put_node(g_a, &n), 0);
	n.heartbeat_ms = 222;
	cr_assert_eq(ts_registry_put_node(g_a, &n), 0);
	struct ts_reg_node other = { .node_id = 9 };
	snprintf(other.portal, sizeof(other.portal), "127.0.0.9:3260");
	cr_assert_eq(ts_registry_put_node(g_a, &other), 0);

	cr_assert_eq(ts_registry_list_nodes(g_b, out, TS_REG_MAX_NODES, &cnt), 0);
	cr_assert_eq(cnt, 2u);
	struct ts_reg_node *got = out[0].node_id == 3 ? &out[0] : &out[1];
	cr_assert_eq(got->node_id, 3u);
	cr_assert_eq(got->heartbeat_ms, 222u);
	cr_assert_str_eq(got->portal, "127.0.0.4:3260");
	cr_assert_eq(got->nvdisks, 2u);
	cr_assert_eq(memcmp(got->vdisks, n.vdisks, sizeof(n.vdisks[0]) * 2), 0);
	cr_assert_eq(got->free_bytes, 1u << 30);
	cr_assert_eq(got->nserved, 2u);
	cr_assert_eq(memcmp(got->served, n.served, sizeof(n.served[0]) * 2), 0);
	got = out[0].node_id == 9 ? &out[0] : &out[1];
	cr_assert_eq(got->nserved, 0u);
	/* max bounds the output */
	cr_assert_eq(ts_registry_list_nodes(g_b, out, 1, &cnt), 0);
	cr_assert_eq(cnt, 1u);
	ts_free(out);
}

Test(node_registry, requests_mailbox)
{
	struct ts_reg_request r1 = { .op = TS_REG_CREATE_VDISK, .size = 8192 }, r2 = r1, got;

	r2.op = TS_REG_SERVE_GROUP;
	r2.size = 0;
	r2.epoch = 42;
	int st = 0;

	ts_registry_new_request_id(r1.id);
	ts_registry_new_request_id(r2.id);
	cr_assert_str_neq(r1.id, r2.id);
	ts_uuid_generate(r1.uuid);
	ts_uuid_generate(r2.uuid);
	cr_assert_eq(ts_registry_next_request(g_b, 5, &got), -ENOENT);
	cr_assert_eq(ts_registry_post_request(g_a, 5, &r1), 0);
	usleep(20000); /* distinct mtimes: served oldest first */
	cr_assert_eq(ts_registry_post_request(g_a, 5, &r2), 0);
	cr_assert_eq(ts_registry_next_request(g_b, 6, &got), -ENOENT); /* other node's box */

	cr_assert_eq(ts_registry_next_request(g_b, 5, &got), 0);
	cr_assert_str_eq(got.id, r1.id);
	cr_assert_eq(got.op, TS_REG_CREATE_VDISK);
	cr_assert_eq(got.size, 8192u);
	cr_assert_eq(memcmp(got.uuid, r1.uuid, 16), 0);
	/* still pending until completed */
	cr_assert_eq(ts_registry_wait_request(g_a, 5, r1.id, 50, &st), -ETIMEDOUT);
	cr_assert_eq(ts_registry_complete_request(g_b, 5, r1.id, -28), 0);
	cr_assert_eq(ts_registry_wait_request(g_a, 5, r1.id, 1000, &st), 0);
	cr_assert_eq(st, -28);
	cr_assert_eq(ts_registry_next_request(g_b, 5, &got), 0);
	cr_assert_str_eq(got.id, r2.id);
	cr_assert_eq(got.op, TS_REG_SERVE_GROUP);
	cr_assert_eq(got.epoch, 42u);
	cr_assert_eq(ts_registry_complete_request(g_b, 5, r2.id, 0), 0);
	cr_assert_eq(ts_registry_next_request(g_b, 5, &got), -ENOENT);
	cr_assert_eq(ts_registry_wait_request(g_a, 5, r2.id, 1000, &st), 0);
	cr_assert_eq(st, 0);
}

Test(node_registry, group_records)
{
	struct ts_reg_group g = { .k = 4, .m = 2, .member_size = 24 << 20 }, got;
	uint8_t missing[16];

	ts_uuid_generate(g.uuid);
	ts_uuid_generate(missing);
	for (unsigned i = 0; i < 6; i++) {
		g.slots[i].node_id = 1 + i % 3;
		ts_uuid_generate(g.slots[i].vdisk);
	}
	cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), -ENOENT);
	cr_assert_eq(ts_registry_put_group(g_a, &g), 0);
	cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), 0);
	cr_assert_eq(memcmp(&got, &g, sizeof(g)), 0);
	cr_assert_eq(ts_registry_get_group(g_b, missing, &got), -ENOENT);
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

static struct ts_reg_group make_group(void)
{
	struct ts_reg_group g = { .k = 4, .m = 2, .member_size = 24 << 20 };

	ts_uuid_generate(g.uuid);
	for (unsigned i = 0; i < 6; i++) {
		g.slots[i].node_id = 1 + i % 3;
		ts_uuid_generate(g.slots[i].vdisk);
	}
	return g;
}

Test(node_registry, raise_epoch_hands_the_group_over_and_refuses_stale_records)
{
	struct ts_reg_group g = make_group(), got, stale;
	uint64_t e = 0;

	cr_assert_eq(ts_registry_raise_epoch(g_a, g.uuid, 2, &e), -ENOENT);
	cr_assert_eq(ts_registry_raise_epoch(g_a, g.uuid, 0, &e), -EINVAL);
	cr_assert_eq(ts_registry_put_group(g_a, &g), 0);
	cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 0);
	cr_assert_eq(got.epoch, 0);

	cr_assert_eq(ts_registry_raise_epoch(g_a, g.uuid, 2, &e), 0);
	cr_assert_eq(e, 1);
	cr_assert_eq(ts_registry_get_group(g_b, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 2);
	cr_assert_eq(got.epoch, 1);
	cr_assert_eq(memcmp(got.slots, g.slots, sizeof(g.slots)), 0, "slots kept");

	/* the owner at epoch 1 rewrites its slots: accepted */
	got.slots[3].node_id = 3;
	cr_assert_eq(ts_registry_put_group(g_b, &got), 0);
	stale = got;
	cr_assert_eq(ts_registry_raise_epoch(g_b, g.uuid, 3, &e), 0);
	cr_assert_eq(e, 2);
	/* the old owner's view (epoch 1) can no longer be written back */
	stale.slots[3].node_id = 1;
	cr_assert_eq(ts_registry_put_group(g_a, &stale), -ESTALE);
	cr_assert_eq(ts_registry_get_group(g_a, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 3);
	cr_assert_eq(got.epoch, 2);
	cr_assert_eq(got.slots[3].node_id, 3);
	/* nor the record as first written (epoch 0) */
	cr_assert_eq(ts_registry_put_group(g_a, &g), -ESTALE);
}

struct raiser {
	struct ts_registry *r;
	const uint8_t *uuid;
	uint32_t owner;
	uint64_t got[100];
	int rc;
};

static void *raise_many(void *arg)
{
	struct raiser *w = arg;

	for (unsigned i = 0; i < 100 && !w->rc; i++)
		w->rc = ts_registry_raise_epoch(w->r, w->uuid, w->owner, &w->got[i]);
	return NULL;
}

Test(node_registry, concurrent_epoch_raises_are_distinct)
{
	struct ts_reg_group g = make_group(), got;
	struct raiser w[2] = { { .r = g_a, .uuid = g.uuid, .owner = 1 },
			       { .r = g_b, .uuid = g.uuid, .owner = 2 } };
	pthread_t t[2];
	static bool seen[201];

	cr_assert_eq(ts_registry_put_group(g_a, &g), 0);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, raise_many, &w[i]), 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_eq(w[i].rc, 0);
		for (unsigned j = 0; j < 100; j++) {
			cr_assert(w[i].got[j] >= 1 && w[i].got[j] <= 200, "epoch %lu",
				  (unsigned long)w[i].got[j]);
			cr_assert(!seen[w[i].got[j]], "epoch %lu handed out twice",
				  (unsigned long)w[i].got[j]);
			seen[w[i].got[j]] = true;
			if (j)
				cr_assert_gt(w[i].got[j], w[i].got[j - 1]);
		}
	}
	cr_assert_eq(ts_registry_get_group(g_a, g.uuid, &got), 0);
	cr_assert_eq(got.epoch, 200);
	cr_assert(got.owner_node == 1 || got.owner_node == 2);
}

Test(node_registry, group_owner_fields_are_validated)
{
	struct ts_reg_group g = make_group(), got;
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
