/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The shared membership-store cases (registry_cases.h). Moved here from the
 * directory store's suite so the Kubernetes store runs the very same
 * assertions.
 */
#include "unit/support/registry/registry_cases.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

struct ts_reg_group reg_case_make_group(void)
{
	struct ts_reg_group g = { .k = 4, .m = 2, .member_size = 24 << 20 };

	ts_uuid_generate(g.uuid);
	for (unsigned i = 0; i < 6; i++) {
		g.slots[i].node_id = 1 + i % 3;
		ts_uuid_generate(g.slots[i].vdisk);
	}
	return g;
}

void reg_case_node_records(struct ts_registry *a, struct ts_registry *b, bool heartbeat_stored)
{
	struct ts_reg_node n = { .node_id = 3, .heartbeat_ms = 111, .free_bytes = 1 << 30, .nvdisks = 2 };
	struct ts_reg_node *out = ts_calloc(TS_REG_MAX_NODES, sizeof(*out));
	uint64_t t0 = ts_registry_now_ms();
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
	cr_assert_eq(ts_registry_put_node(a, &n), 0);
	n.heartbeat_ms = 222;
	cr_assert_eq(ts_registry_put_node(a, &n), 0);
	struct ts_reg_node other = { .node_id = 9 };
	snprintf(other.portal, sizeof(other.portal), "127.0.0.9:3260");
	cr_assert_eq(ts_registry_put_node(a, &other), 0);

	cr_assert_eq(ts_registry_list_nodes(b, out, TS_REG_MAX_NODES, &cnt), 0);
	cr_assert_eq(cnt, 2u);
	struct ts_reg_node *got = out[0].node_id == 3 ? &out[0] : &out[1];
	cr_assert_eq(got->node_id, 3u);
	if (heartbeat_stored)
		cr_assert_eq(got->heartbeat_ms, 222u);
	else
		cr_assert(got->heartbeat_ms + 1000 >= t0 &&
				  got->heartbeat_ms <= ts_registry_now_ms() + 1000,
			  "heartbeat %lu: the time of the write", (unsigned long)got->heartbeat_ms);
	cr_assert_str_eq(got->portal, "127.0.0.4:3260");
	cr_assert_eq(got->nvdisks, 2u);
	cr_assert_eq(memcmp(got->vdisks, n.vdisks, sizeof(n.vdisks[0]) * 2), 0);
	cr_assert_eq(got->free_bytes, 1u << 30);
	cr_assert_eq(got->nserved, 2u);
	cr_assert_eq(memcmp(got->served, n.served, sizeof(n.served[0]) * 2), 0);
	got = out[0].node_id == 9 ? &out[0] : &out[1];
	cr_assert_eq(got->nserved, 0u);
	/* max bounds the output */
	cr_assert_eq(ts_registry_list_nodes(b, out, 1, &cnt), 0);
	cr_assert_eq(cnt, 1u);
	ts_free(out);
}

void reg_case_requests_mailbox(struct ts_registry *a, struct ts_registry *b)
{
	struct ts_reg_request r1 = { .op = TS_REG_CREATE_VDISK, .size = 8192 }, r2 = r1, got;
	int st = 0;

	r2.op = TS_REG_SERVE_GROUP;
	r2.size = 0;
	r2.epoch = 42;

	ts_registry_new_request_id(r1.id);
	ts_registry_new_request_id(r2.id);
	cr_assert_str_neq(r1.id, r2.id);
	ts_uuid_generate(r1.uuid);
	ts_uuid_generate(r2.uuid);
	cr_assert_eq(ts_registry_next_request(b, 5, &got), -ENOENT);
	cr_assert_eq(ts_registry_post_request(a, 5, &r1), 0);
	usleep(20000); /* distinct times: served oldest first */
	cr_assert_eq(ts_registry_post_request(a, 5, &r2), 0);
	cr_assert_eq(ts_registry_next_request(b, 6, &got), -ENOENT); /* other node's box */

	cr_assert_eq(ts_registry_next_request(b, 5, &got), 0);
	cr_assert_str_eq(got.id, r1.id);
	cr_assert_eq(got.op, TS_REG_CREATE_VDISK);
	cr_assert_eq(got.size, 8192u);
	cr_assert_eq(memcmp(got.uuid, r1.uuid, 16), 0);
	/* still pending until completed */
	cr_assert_eq(ts_registry_wait_request(a, 5, r1.id, 50, &st), -ETIMEDOUT);
	cr_assert_eq(ts_registry_complete_request(b, 5, r1.id, -28), 0);
	cr_assert_eq(ts_registry_wait_request(a, 5, r1.id, 5000, &st), 0);
	cr_assert_eq(st, -28);
	cr_assert_eq(ts_registry_next_request(b, 5, &got), 0);
	cr_assert_str_eq(got.id, r2.id);
	cr_assert_eq(got.op, TS_REG_SERVE_GROUP);
	cr_assert_eq(got.epoch, 42u);
	cr_assert_eq(ts_registry_complete_request(b, 5, r2.id, 0), 0);
	cr_assert_eq(ts_registry_next_request(b, 5, &got), -ENOENT);
	cr_assert_eq(ts_registry_wait_request(a, 5, r2.id, 5000, &st), 0);
	cr_assert_eq(st, 0);
}

void reg_case_group_records(struct ts_registry *a, struct ts_registry *b)
{
	struct ts_reg_group g = reg_case_make_group(), got;
	uint8_t missing[16];

	ts_uuid_generate(missing);
	g.njournals = 2;
	g.journal_size = 1 << 20;
	g.journals[0].node_id = 1;
	g.journals[1].node_id = 2;
	g.flags = TS_REG_GROUP_POOL;
	ts_uuid_generate(g.journals[0].vdisk);
	ts_uuid_generate(g.journals[1].vdisk);
	cr_assert_eq(ts_registry_get_group(b, g.uuid, &got), -ENOENT);
	cr_assert_eq(ts_registry_put_group(a, &g), 0);
	cr_assert_eq(ts_registry_get_group(b, g.uuid, &got), 0);
	cr_assert_eq(memcmp(&got, &g, sizeof(g)), 0);
	cr_assert_eq(ts_registry_get_group(b, missing, &got), -ENOENT);
}

void reg_case_list_groups(struct ts_registry *a, struct ts_registry *b)
{
	struct ts_reg_group g[3] = { reg_case_make_group(), reg_case_make_group(),
				     reg_case_make_group() };
	uint8_t got[4][16];
	unsigned n = 99;

	cr_assert_eq(ts_registry_list_groups(b, got, 4, &n), 0);
	cr_assert_eq(n, 0);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(ts_registry_put_group(a, &g[i]), 0);
	cr_assert_eq(ts_registry_list_groups(b, got, 4, &n), 0);
	cr_assert_eq(n, 3);
	for (unsigned i = 0; i < 3; i++) {
		unsigned found = 0;

		for (unsigned j = 0; j < 3; j++)
			found += !memcmp(got[j], g[i].uuid, 16);
		cr_assert_eq(found, 1, "group %u listed %u times", i, found);
	}
	cr_assert_lt(memcmp(got[0], got[1], 16), 0);
	cr_assert_lt(memcmp(got[1], got[2], 16), 0);
	cr_assert_eq(ts_registry_list_groups(a, got, 2, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(ts_registry_list_groups(a, NULL, 2, &n), -EINVAL);
}

void reg_case_raise_epoch_and_stale(struct ts_registry *a, struct ts_registry *b)
{
	struct ts_reg_group g = reg_case_make_group(), got, stale;
	uint64_t e = 0;

	cr_assert_eq(ts_registry_raise_epoch(a, g.uuid, 2, &e), -ENOENT);
	cr_assert_eq(ts_registry_raise_epoch(a, g.uuid, 0, &e), -EINVAL);
	cr_assert_eq(ts_registry_put_group(a, &g), 0);
	cr_assert_eq(ts_registry_get_group(b, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 0);
	cr_assert_eq(got.epoch, 0);

	cr_assert_eq(ts_registry_raise_epoch(a, g.uuid, 2, &e), 0);
	cr_assert_eq(e, 1);
	cr_assert_eq(ts_registry_get_group(b, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 2);
	cr_assert_eq(got.epoch, 1);
	cr_assert_eq(memcmp(got.slots, g.slots, sizeof(g.slots)), 0, "slots kept");

	/* the owner at epoch 1 rewrites its slots: accepted */
	got.slots[3].node_id = 3;
	cr_assert_eq(ts_registry_put_group(b, &got), 0);
	stale = got;
	cr_assert_eq(ts_registry_raise_epoch(b, g.uuid, 3, &e), 0);
	cr_assert_eq(e, 2);
	/* the old owner's view (epoch 1) can no longer be written back */
	stale.slots[3].node_id = 1;
	cr_assert_eq(ts_registry_put_group(a, &stale), -ESTALE);
	cr_assert_eq(ts_registry_get_group(a, g.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 3);
	cr_assert_eq(got.epoch, 2);
	cr_assert_eq(got.slots[3].node_id, 3);
	/* nor the record as first written (epoch 0) */
	cr_assert_eq(ts_registry_put_group(a, &g), -ESTALE);
}

#define RAISES_MAX 100

struct raiser {
	struct ts_registry *r;
	const uint8_t *uuid;
	uint32_t owner;
	unsigned n;
	uint64_t got[RAISES_MAX];
	int rc;
};

static void *raise_many(void *arg)
{
	struct raiser *w = arg;

	for (unsigned i = 0; i < w->n && !w->rc; i++)
		w->rc = ts_registry_raise_epoch(w->r, w->uuid, w->owner, &w->got[i]);
	return NULL;
}

void reg_case_concurrent_raises(struct ts_registry *a, struct ts_registry *b, unsigned per_thread)
{
	struct ts_reg_group g = reg_case_make_group(), got;
	struct raiser w[2] = { { .r = a, .uuid = g.uuid, .owner = 1, .n = per_thread },
			       { .r = b, .uuid = g.uuid, .owner = 2, .n = per_thread } };
	bool seen[2 * RAISES_MAX + 1] = { false };
	pthread_t t[2];

	cr_assert(per_thread <= RAISES_MAX);
	cr_assert_eq(ts_registry_put_group(a, &g), 0);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, raise_many, &w[i]), 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < 2; i++) {
		cr_assert_eq(w[i].rc, 0, "%s", ts_strerror(w[i].rc));
		for (unsigned j = 0; j < per_thread; j++) {
			cr_assert(w[i].got[j] >= 1 && w[i].got[j] <= 2 * per_thread, "epoch %lu",
				  (unsigned long)w[i].got[j]);
			cr_assert(!seen[w[i].got[j]], "epoch %lu handed out twice",
				  (unsigned long)w[i].got[j]);
			seen[w[i].got[j]] = true;
			if (j)
				cr_assert_gt(w[i].got[j], w[i].got[j - 1]);
		}
	}
	cr_assert_eq(ts_registry_get_group(a, g.uuid, &got), 0);
	cr_assert_eq(got.epoch, 2 * per_thread);
	cr_assert(got.owner_node == 1 || got.owner_node == 2);
}
