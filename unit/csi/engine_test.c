/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine seam without root: two real engines (each a data-plane backend
 * on a RAM pool with its own iSCSI target; unit/support/csi/engine_env.h),
 * one served on a unix socket, one on TCP, each by an engine server of its
 * own, plus a third over the in-memory test backend (for the out-of-space
 * case a RAM pool cannot stage); a CSI controller over the remote backend
 * and a table router in front of them. Checked: CreateVolume idempotent by
 * name, also after a "crash" between the engine's create and the store's
 * write (the retry lands on the first engine though the router would now
 * pick another); error codes the same as the in-process backend's; snapshots
 * and clones on both engines, ListSnapshots paged across them with a cursor
 * that survives the deletion of its snapshot; a snapshot name taken on the
 * other engine is ALREADY_EXISTS; group snapshots within one engine only;
 * an engine that goes away answers UNAVAILABLE at once and works again when
 * it is back; a few thousand malformed engine requests (seeded) answer
 * INVALID_ARGUMENT or a backend rc and never crash the engine.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <jansson.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csi/backend/backend_remote.h"
#include "csi/csi.h"
#include "csi/engine.h"
#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/engine_env.h"

static char g_dir[256];
static struct ram_engine g_a, g_b;
static void *g_mem;
static struct ts_engine_server *g_sa, *g_sb, *g_sc;
static struct trouter g_r;
static struct remote_ctl g_ctl;
static struct tenv g_local; /* the in-process driver over engine A's backend */
static char g_ep_a[300], g_ep_b[64];

#define GIB (1ull << 30)
#define MIB (1ull << 20)

static void start_b(void)
{
	struct ts_engine_opts o = { .group = "gb", .ops = g_b.be, .ctx = g_b.be_ctx,
				    .max_volume_bytes = 256 * MIB };

	cr_assert_eq(ts_engine_server_start(&o, g_ep_b[0] ? g_ep_b : "127.0.0.1:0", 2, &g_sb), 0);
	if (!g_ep_b[0])
		snprintf(g_ep_b, sizeof(g_ep_b), "127.0.0.1:%d", ts_engine_server_port(g_sb));
}

static void setup(void)
{
	struct ts_engine_opts oa = { .group = "ga" }, oc = { .group = "gc" };
	char sub[300], ep_c[300];

	snprintf(g_dir, sizeof(g_dir), "/tmp/ts_engine_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	snprintf(sub, sizeof(sub), "%s/a", g_dir);
	ram_engine_init(&g_a, sub, 64 * MIB);
	snprintf(sub, sizeof(sub), "%s/b", g_dir);
	ram_engine_init(&g_b, sub, 64 * MIB);
	oa.ops = g_a.be;
	oa.ctx = g_a.be_ctx;
	snprintf(g_ep_a, sizeof(g_ep_a), "unix://%s/engine-a.sock", g_dir);
	cr_assert_eq(ts_engine_server_start(&oa, g_ep_a, 2, &g_sa), 0);
	g_ep_b[0] = '\0';
	start_b();
	g_mem = tmem_backend_new(100 * MIB);
	oc.ops = &tmem_backend_ops;
	oc.ctx = g_mem;
	snprintf(ep_c, sizeof(ep_c), "unix://%s/engine-c.sock", g_dir);
	cr_assert_eq(ts_engine_server_start(&oc, ep_c, 1, &g_sc), 0);
	memset(&g_r, 0, sizeof(g_r));
	trouter_add(&g_r, "ga", g_ep_a);
	trouter_add(&g_r, "gb", g_ep_b);
	snprintf(sub, sizeof(sub), "%s/ctl", g_dir);
	mkdir(sub, 0700);
	remote_ctl_init(&g_ctl, &g_r, sub, false, NULL);
	tenv_init(&g_local, g_a.be, g_a.be_ctx, 0);
	(void)ep_c;
}

static void teardown(void)
{
	char cmd[300];

	remote_ctl_fini(&g_ctl);
	ts_engine_server_stop(g_sa, 1000);
	ts_engine_server_stop(g_sb, 1000);
	ts_engine_server_stop(g_sc, 1000);
	tenv_fini(&g_local); /* destroys engine A's backend */
	g_a.be = NULL;
	ram_engine_fini(&g_a);
	ram_engine_fini(&g_b);
	tmem_backend_ops.destroy(g_mem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
	tfree_all();
}

TestSuite(csi_engine, .init = setup, .fini = teardown, .timeout = 240);

/* ---- CSI helpers (through ts_csi_handle; the engine link is gRPC) ---- */

static int create_vol(struct ts_csi_driver *d, const char *name, uint64_t bytes, const char *snap,
		      const char *vol, char *id)
{
	Csi__V1__CreateVolumeRequest *r = tcreate_req(name, (int64_t)bytes, tcap_block(), snap, vol);
	Csi__V1__CreateVolumeResponse *resp;
	int code;

	code = tcall(d, "/csi.v1.Controller/CreateVolume", r,
		     &csi__v1__create_volume_response__descriptor, (void **)&resp);
	if (code == 0) {
		if (id)
			snprintf(id, TS_CSI_ID_MAX + 1, "%s", resp->volume->volume_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static int snap(struct ts_csi_driver *d, const char *vol, const char *name, char *id)
{
	Csi__V1__CreateSnapshotRequest r = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	Csi__V1__CreateSnapshotResponse *resp;
	int code;

	r.source_volume_id = (char *)vol;
	r.name = (char *)name;
	code = tcall(d, "/csi.v1.Controller/CreateSnapshot", &r,
		     &csi__v1__create_snapshot_response__descriptor, (void **)&resp);
	if (code == 0) {
		if (id)
			snprintf(id, TS_CSI_ID_MAX + 1, "%s", resp->snapshot->snapshot_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static int expand(struct ts_csi_driver *d, const char *id, uint64_t bytes)
{
	Csi__V1__ControllerExpandVolumeRequest r = CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;

	cr.required_bytes = (int64_t)bytes;
	r.volume_id = (char *)id;
	r.capacity_range = &cr;
	return tcall(d, "/csi.v1.Controller/ControllerExpandVolume", &r, NULL, NULL);
}

static int del_snap(struct ts_csi_driver *d, const char *id)
{
	Csi__V1__DeleteSnapshotRequest r = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;

	r.snapshot_id = (char *)id;
	return tcall(d, "/csi.v1.Controller/DeleteSnapshot", &r, NULL, NULL);
}

static int del_vol(struct ts_csi_driver *d, const char *id)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

	r.volume_id = (char *)id;
	return tcall(d, "/csi.v1.Controller/DeleteVolume", &r, NULL, NULL);
}

/* ListSnapshots page by page (max_entries \p page); ids into \p ids, count returned. */
static size_t list_all(const char *source, size_t page, char ids[][TS_CSI_ID_MAX + 1], size_t max,
		       void (*between)(const char *token))
{
	char token[200] = "";
	size_t n = 0, pages = 0;

	do {
		Csi__V1__ListSnapshotsRequest r = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
		Csi__V1__ListSnapshotsResponse *resp;

		r.max_entries = (int32_t)page;
		r.starting_token = token;
		r.source_volume_id = (char *)source;
		cr_assert_eq(tcall(g_ctl.d, "/csi.v1.Controller/ListSnapshots", &r,
				   &csi__v1__list_snapshots_response__descriptor, (void **)&resp),
			     0, "%s", tmsg());
		cr_assert_leq(resp->n_entries, page);
		for (size_t i = 0; i < resp->n_entries; i++) {
			cr_assert_lt(n, max);
			snprintf(ids[n++], TS_CSI_ID_MAX + 1, "%s", resp->entries[i]->snapshot->snapshot_id);
		}
		snprintf(token, sizeof(token), "%s", resp->next_token ? resp->next_token : "");
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		if (token[0] && between)
			between(token);
		cr_assert_lt(++pages, 50);
	} while (token[0]);
	return n;
}

/* ---- tests ---- */

Test(csi_engine, create_is_idempotent_across_a_controller_crash)
{
	char id1[80], id2[80], id3[80], crashed[80];
	struct ts_csi_vol_spec spec = { .name = "pvc-crash", .capacity_bytes = 16 * MIB };
	struct ts_csi_backend_vol bv;
	unsigned before;

	g_r.pick = 1; /* gb */
	cr_assert_eq(create_vol(g_ctl.d, "pvc-1", 16 * MIB, NULL, NULL, id1), 0, "%s", tmsg());
	cr_assert_eq(strncmp(id1, "gb.tv-", 6), 0, "%s", id1);
	g_r.pick = 0;
	cr_assert_eq(create_vol(g_ctl.d, "pvc-1", 16 * MIB, NULL, NULL, id2), 0, "%s", tmsg());
	cr_assert_str_eq(id1, id2);

	/* The engine created it, the controller died before its store write. */
	cr_assert_eq(g_ctl.be->create(g_ctl.be_ctx, &spec, &bv), 0);
	cr_assert_eq(strncmp(bv.id, "ga.", 3), 0, "%s", bv.id);
	snprintf(crashed, sizeof(crashed), "%s", bv.id);
	g_r.pick = 1; /* the router would now place it elsewhere */
	cr_assert_eq(create_vol(g_ctl.d, "pvc-crash", 16 * MIB, NULL, NULL, id3), 0, "%s", tmsg());
	cr_assert_str_eq(id3, crashed, "the retry did not land on the first engine");

	/* An existing id needs no lookup beyond its group's location. */
	before = g_r.locates;
	cr_assert_eq(expand(g_ctl.d, id1, 32 * MIB), 0, "%s", tmsg());
	cr_assert_eq(g_r.locates - before, 1);

	cr_assert_eq(del_vol(g_ctl.d, id1), 0, "%s", tmsg());
	cr_assert_eq(del_vol(g_ctl.d, id1), 0, "%s", tmsg());
	cr_assert_eq(del_vol(g_ctl.d, id3), 0, "%s", tmsg());
}

Test(csi_engine, errors_map_as_with_the_in_process_backend)
{
	char rv[80], lv[80], rs[80], ls[80], rv2[80], lv2[80];

	g_r.pick = 0; /* ga: the same backend the in-process driver runs on */
	cr_assert_eq(create_vol(g_ctl.d, "e-1", 16 * MIB, NULL, NULL, rv), 0, "%s", tmsg());
	cr_assert_eq(create_vol(g_local.d, "l-1", 16 * MIB, NULL, NULL, lv), 0, "%s", tmsg());
	cr_assert_eq(create_vol(g_ctl.d, "e-2", 16 * MIB, NULL, NULL, rv2), 0, "%s", tmsg());
	cr_assert_eq(create_vol(g_local.d, "l-2", 16 * MIB, NULL, NULL, lv2), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, rv, "es-1", rs), 0, "%s", tmsg());
	cr_assert_eq(snap(g_local.d, lv, "ls-1", ls), 0, "%s", tmsg());

	/* ALREADY_EXISTS: a snapshot name on another source (6) */
	cr_assert_eq(snap(g_ctl.d, rv2, "es-1", NULL), snap(g_local.d, lv2, "ls-1", NULL));
	cr_assert_eq(snap(g_ctl.d, rv2, "es-1", NULL), 6, "%s", tmsg());
	/* NOT_FOUND: a clone of a snapshot that does not exist (5) */
	cr_assert_eq(create_vol(g_ctl.d, "c-x", 0, "ga.ts-00000000000fffff", NULL, NULL),
		     create_vol(g_local.d, "c-y", 0, "ts-00000000000fffff", NULL, NULL));
	cr_assert_eq(create_vol(g_ctl.d, "c-x", 0, "ga.ts-00000000000fffff", NULL, NULL), 5);
	cr_assert_eq(create_vol(g_ctl.d, "c-z", 0, "gx.ts-0000000000000001", NULL, NULL), 5,
		     "a group nobody serves: %s", tmsg());
	/* OUT_OF_RANGE: a clone smaller than its source (11) */
	cr_assert_eq(create_vol(g_ctl.d, "c-small", 8 * MIB, rs, NULL, NULL),
		     create_vol(g_local.d, "c-small", 8 * MIB, ls, NULL, NULL));
	cr_assert_eq(create_vol(g_ctl.d, "c-small", 8 * MIB, rs, NULL, NULL), 11, "%s", tmsg());
	/* OUT_OF_RANGE from the engine's own size limit (gb: 256 MiB) */
	g_r.pick = 1;
	cr_assert_eq(create_vol(g_ctl.d, "big", 512 * MIB, NULL, NULL, NULL), 11, "%s", tmsg());

	/* RESOURCE_EXHAUSTED: the in-memory engine is full; in process and through an engine */
	{
		struct tenv mem;
		struct trouter r = { 0 };
		struct remote_ctl c;
		char ep[300], sub[300];

		tenv_init(&mem, &tmem_backend_ops, tmem_backend_new(100 * MIB), 0);
		snprintf(ep, sizeof(ep), "unix://%s/engine-c.sock", g_dir);
		trouter_add(&r, "gc", ep);
		snprintf(sub, sizeof(sub), "%s/ctl-c", g_dir);
		mkdir(sub, 0700);
		remote_ctl_init(&c, &r, sub, false, NULL);
		cr_assert_eq(create_vol(c.d, "m-1", 64 * MIB, NULL, NULL, NULL), 0, "%s", tmsg());
		cr_assert_eq(create_vol(mem.d, "m-1", 64 * MIB, NULL, NULL, NULL), 0, "%s", tmsg());
		cr_assert_eq(create_vol(c.d, "m-2", 64 * MIB, NULL, NULL, NULL),
			     create_vol(mem.d, "m-2", 64 * MIB, NULL, NULL, NULL));
		cr_assert_eq(create_vol(c.d, "m-2", 64 * MIB, NULL, NULL, NULL), 8, "%s", tmsg());
		/* and the router having no room says the same */
		r.pick_rc = -ENOSPC;
		cr_assert_eq(create_vol(c.d, "m-3", 1 * MIB, NULL, NULL, NULL), 8, "%s", tmsg());
		remote_ctl_fini(&c);
		tenv_fini(&mem); /* and its backend */
	}
}

static const char *g_drop; /* deleted between two pages of a listing */

static void drop_between(const char *token)
{
	(void)token;
	if (g_drop) {
		cr_assert_eq(del_snap(g_ctl.d, g_drop), 0, "%s", tmsg());
		g_drop = NULL;
	}
}

Test(csi_engine, snapshots_clones_and_listing_across_two_engines)
{
	char va[80], vb[80], s[5][80], c1[80], c2[80], ids[16][TS_CSI_ID_MAX + 1], dropped[80];
	size_t n;

	g_r.pick = 0;
	cr_assert_eq(create_vol(g_ctl.d, "va", 16 * MIB, NULL, NULL, va), 0, "%s", tmsg());
	g_r.pick = 1;
	cr_assert_eq(create_vol(g_ctl.d, "vb", 16 * MIB, NULL, NULL, vb), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, va, "sa-1", s[0]), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, vb, "sb-1", s[1]), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, va, "sa-2", s[2]), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, vb, "sb-2", s[3]), 0, "%s", tmsg());
	cr_assert_eq(snap(g_ctl.d, vb, "sb-3", s[4]), 0, "%s", tmsg());
	cr_assert_eq(strncmp(s[1], "gb.ts-", 6), 0, "%s", s[1]);
	/* idempotent; a name of the other engine's is taken */
	cr_assert_eq(snap(g_ctl.d, va, "sa-1", dropped), 0, "%s", tmsg());
	cr_assert_str_eq(dropped, s[0]);
	cr_assert_eq(snap(g_ctl.d, va, "sb-1", NULL), 6, "%s", tmsg());

	/* Every page size lists all five, in order, once. */
	for (size_t page = 1; page <= 6; page++) {
		n = list_all(NULL, page, ids, 16, NULL);
		cr_assert_eq(n, 5, "page %zu: %zu", page, n);
		for (size_t i = 1; i < n; i++)
			cr_assert_lt(strcmp(ids[i - 1], ids[i]), 0, "order at %zu", i);
		cr_assert_eq(strncmp(ids[0], "ga.", 3), 0);
		cr_assert_eq(strncmp(ids[4], "gb.", 3), 0);
	}
	cr_assert_eq(list_all(vb, 2, ids, 16, NULL), 3);
	for (size_t i = 0; i < 3; i++)
		cr_assert_eq(strncmp(ids[i], "gb.", 3), 0);
	/* The cursor's own snapshot goes away between two pages: the listing goes on. */
	snprintf(dropped, sizeof(dropped), "%s", s[2]); /* ga's second: the first page's last */
	g_drop = dropped;
	n = list_all(NULL, 2, ids, 16, drop_between);
	cr_assert_eq(n, 5, "%zu", n); /* the dropped one was on the first page */
	cr_assert_str_eq(ids[1], s[2]);
	cr_assert_str_eq(ids[2], s[1]);
	cr_assert_eq(list_all(NULL, 3, ids, 16, NULL), 4);

	/* Clones land on their source's engine, whatever the router would pick. */
	g_r.pick = 0;
	cr_assert_eq(create_vol(g_ctl.d, "clone-b", 0, s[1], NULL, c1), 0, "%s", tmsg());
	cr_assert_eq(strncmp(c1, "gb.", 3), 0, "%s", c1);
	g_r.pick = 1;
	cr_assert_eq(create_vol(g_ctl.d, "clone-a", 16 * MIB, NULL, va, c2), 0, "%s", tmsg());
	cr_assert_eq(strncmp(c2, "ga.", 3), 0, "%s", c2);

	/* Group snapshots: one engine yes, two engines FAILED_PRECONDITION. */
	{
		Csi__V1__CreateVolumeGroupSnapshotRequest r =
			CSI__V1__CREATE_VOLUME_GROUP_SNAPSHOT_REQUEST__INIT;
		char *same[2] = { va, c2 }, *mixed[2] = { va, vb };

		r.name = "grp-1";
		r.source_volume_ids = same;
		r.n_source_volume_ids = 2;
		cr_assert_eq(tcall(g_ctl.d, "/csi.v1.GroupController/CreateVolumeGroupSnapshot", &r,
				   NULL, NULL), 0, "%s", tmsg());
		r.name = "grp-2";
		r.source_volume_ids = mixed;
		cr_assert_eq(tcall(g_ctl.d, "/csi.v1.GroupController/CreateVolumeGroupSnapshot", &r,
				   NULL, NULL), 9, "%s", tmsg());
	}
	for (int i = 0; i < 5; i++) /* s[2] already gone: idempotent */
		cr_assert_eq(del_snap(g_ctl.d, s[i]), 0, "%s", tmsg());
}

static uint64_t now_ms(void)
{
	return ts_now_ns() / 1000000ull;
}

Test(csi_engine, unreachable_engine_is_unavailable_then_back)
{
	char vb[80], va[80];
	uint64_t t0;

	g_r.pick = 1;
	cr_assert_eq(create_vol(g_ctl.d, "vb", 16 * MIB, NULL, NULL, vb), 0, "%s", tmsg());
	g_r.pick = 0;
	cr_assert_eq(create_vol(g_ctl.d, "va", 16 * MIB, NULL, NULL, va), 0, "%s", tmsg());
	ts_engine_server_stop(g_sb, 1000);
	g_sb = NULL;
	t0 = now_ms();
	cr_assert_eq(expand(g_ctl.d, vb, 32 * MIB), 14, "%s", tmsg());
	cr_assert_lt(now_ms() - t0, 5000, "took %" PRIu64 " ms", now_ms() - t0);
	/* a new name cannot be placed while an engine cannot say it lacks it */
	cr_assert_eq(create_vol(g_ctl.d, "vnew", 16 * MIB, NULL, NULL, NULL), 14, "%s", tmsg());
	/* the other engine still serves */
	cr_assert_eq(expand(g_ctl.d, va, 32 * MIB), 0, "%s", tmsg());
	{
		Csi__V1__GetCapacityRequest r = CSI__V1__GET_CAPACITY_REQUEST__INIT;

		cr_assert_eq(tcall(g_ctl.d, "/csi.v1.Controller/GetCapacity", &r, NULL, NULL), 0,
			     "%s", tmsg());
	}
	start_b(); /* back on the same port */
	cr_assert_eq(expand(g_ctl.d, vb, 32 * MIB), 0, "%s", tmsg());
	cr_assert_eq(create_vol(g_ctl.d, "vnew", 16 * MIB, NULL, NULL, NULL), 0, "%s", tmsg());
}

/* ---- malformed engine requests ---- */

static unsigned g_seed;

/* seeded: a failure replays */
static uint64_t rnd(void)
{
	return (uint64_t)rand_r(&g_seed) << 31 | (uint64_t)rand_r(&g_seed);
}

static json_t *odd_value(void)
{
	static const char *const strs[] = { "", "tv-0000000000000001", "../../etc", "a/b", "x y",
					    "ts-ffffffffffffffff", "snapshot", "volume", "\x01\x02",
					    "ga.tv-1" };
	char longs[700];

	switch (rnd() % 9) {
	case 0:
		return json_null();
	case 1:
		return json_integer((json_int_t)(rnd() % 2 ? -1 : (rnd() % 2 ? INT64_MAX : 0)));
	case 2:
		return json_integer((json_int_t)(rnd() % (1ull << 40)));
	case 3:
		return json_string(strs[rnd() % TS_ARRAY_SIZE(strs)]);
	case 4:
		memset(longs, 'a' + (int)(rnd() % 26), sizeof(longs) - 1);
		longs[rnd() % sizeof(longs)] = '\0';
		return json_string(longs);
	case 5:
		return json_pack("[s, i]", "tv-0000000000000001", 7);
	case 6:
		return json_pack("{s:i}", "iops", -5);
	case 7:
		return json_real(1.5);
	default:
		return rnd() % 2 ? json_true() : json_false();
	}
}

static const struct {
	const char *method, *body;
} g_base[] = {
	{ "Probe", "{\"group\":\"ga\"}" },
	{ "Capacity", "{\"group\":\"ga\"}" },
	{ "Create", "{\"group\":\"ga\",\"name\":\"fz\",\"capacity_bytes\":1048576,\"ec_k\":0,\"ec_m\":0}" },
	{ "Find", "{\"group\":\"ga\",\"name\":\"fz\"}" },
	{ "Remove", "{\"group\":\"ga\",\"id\":\"tv-00000000000000aa\"}" },
	{ "Expand", "{\"group\":\"ga\",\"id\":\"tv-0000000000000001\",\"bytes\":2097152}" },
	{ "SnapCreate", "{\"group\":\"ga\",\"volume\":\"tv-0000000000000001\",\"name\":\"fs\"}" },
	{ "SnapFind", "{\"group\":\"ga\",\"name\":\"fs\"}" },
	{ "SnapDelete", "{\"group\":\"ga\",\"id\":\"ts-00000000000000aa\"}" },
	{ "SnapList", "{\"group\":\"ga\",\"max\":10,\"after\":\"ts-0000000000000001\"}" },
	{ "CreateFrom", "{\"group\":\"ga\",\"name\":\"fc\",\"kind\":\"volume\",\"source\":\"tv-0000000000000001\"}" },
	{ "SnapDelta", "{\"group\":\"ga\",\"target\":\"ts-0000000000000002\",\"start\":0,\"max\":8}" },
	{ "SetQos", "{\"group\":\"ga\",\"id\":\"tv-0000000000000001\",\"qos\":{\"iops\":100}}" },
	{ "QosStats", "{\"group\":\"ga\",\"id\":\"tv-0000000000000001\"}" },
	{ "GroupSnapCreate", "{\"group\":\"ga\",\"name\":\"fg\",\"volumes\":[\"tv-0000000000000001\"]}" },
};

/* Mutate \p body: bytes (returned text, caller frees) or JSON fields; *typed when a field got a wrong type. */
static char *mutate(const char *body, bool *must_fail)
{
	json_t *j = json_loads(body, 0, NULL);
	const char *key;
	json_t *v;
	char *out;
	size_t nkeys = json_object_size(j), pick = rnd() % (nkeys ? nkeys : 1), i = 0;

	*must_fail = false;
	cr_assert_not_null(j);
	switch (rnd() % 5) {
	case 0: { /* byte damage */
		size_t len = strlen(body);

		json_decref(j);
		out = ts_malloc(len + 8);
		memcpy(out, body, len + 1);
		for (int k = 0; k < 1 + (int)(rnd() % 4); k++)
			out[rnd() % len] = (char)(rnd() % 256);
		if (rnd() % 3 == 0)
			out[rnd() % len] = '\0';
		return out;
	}
	case 1: /* an unknown key */
		json_object_set_new(j, rnd() % 2 ? "capacity" : "x", json_integer(1));
		*must_fail = true;
		break;
	case 2: /* a key dropped */
		json_object_foreach(j, key, v) {
			if (i++ == pick) {
				json_object_del(j, key);
				break;
			}
		}
		break;
	default: /* a value replaced */
		json_object_foreach(j, key, v) {
			if (i++ == pick) {
				json_t *nv = odd_value();

				/* a wrong JSON type can never be right for any of our fields */
				*must_fail = !strcmp(key, "group") ? !json_is_string(nv) || ts_ew_check(TS_EW_GROUP, json_string_value(nv))
					     : (json_is_real(nv) || (json_is_integer(nv) && json_integer_value(nv) < 0));
				json_object_set_new(j, key, nv);
				break;
			}
		}
		break;
	}
	out = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	return out;
}

Test(csi_engine, malformed_engine_requests_never_crash)
{
	struct ts_client *c;
	unsigned counts[16] = { 0 }, total = 0;
	char msg[256], method[80], *resp;
	size_t resp_len;

	g_seed = 0x9e3779b9u;
	cr_assert_eq(ts_client_open(g_ep_a, &c), 0);
	/* the base requests are well formed */
	for (size_t i = 0; i < TS_ARRAY_SIZE(g_base); i++) {
		snprintf(method, sizeof(method), TS_ENGINE_PREFIX "%s", g_base[i].method);
		cr_assert_eq(ts_client_call(c, method, g_base[i].body, strlen(g_base[i].body), &resp,
					    &resp_len, 10000, msg, sizeof(msg)),
			     0, "%s: %s", g_base[i].method, msg);
		ts_free(resp);
	}
	for (int it = 0; it < 3000; it++) {
		size_t b = rnd() % TS_ARRAY_SIZE(g_base);
		bool must_fail;
		char *body = mutate(g_base[b].body, &must_fail);
		int code;

		snprintf(method, sizeof(method), TS_ENGINE_PREFIX "%s", g_base[b].method);
		code = ts_client_call(c, method, body, strlen(body), &resp, &resp_len, 10000, msg,
				      sizeof(msg));
		cr_assert(code == 0 || code == 3, "%s %s: code %d %s", g_base[b].method, body, code, msg);
		if (must_fail)
			cr_assert_eq(code, 3, "%s %s was accepted", g_base[b].method, body);
		if (code == 0) {
			json_t *r = json_loadb(resp, resp_len, 0, NULL);

			cr_assert(json_is_integer(json_object_get(r, "rc")), "%s", resp);
			json_decref(r);
			ts_free(resp);
		}
		counts[code]++;
		total++;
		free(body);
	}
	cr_assert_gt(counts[3], total / 3, "only %u of %u refused", counts[3], total);
	cr_assert_gt(counts[0], 50, "only %u accepted", counts[0]);
	/* the engine is whole */
	cr_assert_eq(ts_client_call(c, TS_ENGINE_PREFIX "Probe", g_base[0].body, strlen(g_base[0].body),
				    &resp, &resp_len, 10000, msg, sizeof(msg)), 0, "%s", msg);
	ts_free(resp);
	ts_client_close(c);
}

/* The engine methods on a CSI driver's own server (ts_csi_driver_set_engine), no gRPC. */
Test(csi_engine, served_beside_csi_checks_the_same)
{
	struct ts_engine_opts o = { .group = "ga", .ops = g_a.be, .ctx = g_a.be_ctx };
	uint8_t *resp;
	size_t len;
	int code;
	char msg[256];
	const char *bad = "{\"group\":\"ga\",\"id\":\"a/b\"}", *ok = "{\"group\":\"ga\"}",
		   *other = "{\"group\":\"gz\",\"id\":\"tv-0000000000000001\"}";

	cr_assert_eq(ts_csi_handle(g_local.d, TS_ENGINE_PREFIX "Probe", (const uint8_t *)ok,
				   strlen(ok), &resp, &len, &code, msg, sizeof(msg)), 0);
	cr_assert_eq(code, 14, "without set_engine: %d %s", code, msg);
	cr_assert_eq(ts_csi_driver_set_engine(g_local.d, &o), 0);
	cr_assert_eq(ts_csi_driver_set_engine(g_local.d, &o), -EINVAL);
	ts_csi_handle(g_local.d, TS_ENGINE_PREFIX "Probe", (const uint8_t *)ok, strlen(ok), &resp,
		      &len, &code, msg, sizeof(msg));
	cr_assert_eq(code, 0, "%s", msg);
	cr_assert_not_null(strstr((char *)resp, "\"rc\":0"), "%s", resp);
	ts_free(resp);
	ts_csi_handle(g_local.d, TS_ENGINE_PREFIX "Remove", (const uint8_t *)bad, strlen(bad), &resp,
		      &len, &code, msg, sizeof(msg));
	cr_assert_eq(code, 3, "%s", msg);
	cr_assert_not_null(strstr(msg, "'id'"), "%s", msg);
	ts_csi_handle(g_local.d, TS_ENGINE_PREFIX "Remove", (const uint8_t *)other, strlen(other),
		      &resp, &len, &code, msg, sizeof(msg));
	cr_assert_eq(code, 0, "%s", msg);
	cr_assert_not_null(strstr((char *)resp, "serves group ga, not gz"), "%s", resp);
	ts_free(resp);
}

/* One engine call per case: its gRPC code, and a piece its reply must hold. */
struct body_case {
	const char *body;
	int code;
	const char *has;
};

static void run_cases(const char *method, const struct body_case *cases, size_t n)
{
	uint8_t *resp;
	size_t len;
	int code;
	char msg[256];

	for (size_t i = 0; i < n; i++) {
		resp = NULL;
		ts_csi_handle(g_local.d, method, (const uint8_t *)cases[i].body,
			      strlen(cases[i].body), &resp, &len, &code, msg, sizeof(msg));
		cr_assert_eq(code, cases[i].code, "%s: %d %s", cases[i].body, code, msg);
		if (cases[i].has)
			cr_assert_not_null(strstr((char *)resp, cases[i].has), "%s: %s", cases[i].body,
					   resp);
		ts_free(resp);
	}
}

static int test_report(void *arg, const char *what, char **json)
{
	(void)arg;
	if (!strcmp(what, "group")) {
		*json = ts_strdup("{\"state\":\"healthy\",\"k\":4}");
		return *json ? 0 : -ENOMEM;
	}
	*json = ts_strdup("not json"); /* a broken host: the caller gets -EPROTO */
	return *json ? 0 : -ENOMEM;
}

/* Report: the host's JSON passes through as a value; a bad `what` is refused. */
Test(csi_engine, report_passes_the_hosts_view_through)
{
	struct ts_engine_opts o = { .group = "ga", .ops = g_a.be, .ctx = g_a.be_ctx,
				    .report = test_report };
	static const struct body_case cases[] = {
		{ "{\"group\":\"ga\",\"what\":\"group\"}", 0, "\"report\":{\"state\":\"healthy\",\"k\":4}" },
		{ "{\"group\":\"ga\",\"what\":\"tree\"}", 0, "\"rc\":-71" }, /* -EPROTO */
		{ "{\"group\":\"ga\",\"what\":\"disks\"}", 3, NULL },
		{ "{\"group\":\"ga\"}", 3, NULL },
		{ "{\"group\":\"ga\",\"what\":7}", 3, NULL },
		{ "{\"group\":\"gz\",\"what\":\"group\"}", 0, "\"rc\":-116" }, /* -ESTALE */
	};
	cr_assert_eq(ts_csi_driver_set_engine(g_local.d, &o), 0);
	run_cases(TS_ENGINE_PREFIX "Report", cases, TS_ARRAY_SIZE(cases));
}

static unsigned g_heal_runs, g_heal_asks;

static int test_heal(void *arg, bool run, char **json)
{
	(void)arg;
	run ? g_heal_runs++ : g_heal_asks++;
	*json = ts_strdup("{\"pending\":true,\"state\":\"healing\"}");
	return *json ? 0 : -ENOMEM;
}

/* Heal: run optional and boolean, the host's answer passed through, none without a host hook. */
Test(csi_engine, heal_asks_and_runs_through_the_host)
{
	struct ts_engine_opts o = { .group = "ga", .ops = g_a.be, .ctx = g_a.be_ctx,
				    .heal = test_heal };
	static const struct body_case cases[] = {
		{ "{\"group\":\"ga\"}", 0, "\"heal\":{\"pending\":true,\"state\":\"healing\"}" },
		{ "{\"group\":\"ga\",\"run\":false}", 0, "\"rc\":0" },
		{ "{\"group\":\"ga\",\"run\":true}", 0, "\"pending\":true" },
		{ "{\"group\":\"ga\",\"run\":\"yes\"}", 3, NULL },
		{ "{\"group\":\"ga\",\"run\":true,\"force\":1}", 3, NULL },
		{ "{\"group\":\"gz\",\"run\":true}", 0, "\"rc\":-116" }, /* -ESTALE */
	};
	cr_assert_eq(ts_csi_driver_set_engine(g_local.d, &o), 0);
	run_cases(TS_ENGINE_PREFIX "Heal", cases, TS_ARRAY_SIZE(cases));
	cr_assert_eq(g_heal_asks, 2u);
	cr_assert_eq(g_heal_runs, 1u, "only the valid run reached the host");
}

Test(csi_engine, heal_without_a_host_hook_is_eopnotsupp)
{
	struct ts_engine_opts o = { .group = "ga", .ops = g_a.be, .ctx = g_a.be_ctx };
	const char *body = "{\"group\":\"ga\",\"run\":true}";
	uint8_t *resp = NULL;
	size_t len;
	int code;
	char msg[256];

	cr_assert_eq(ts_csi_driver_set_engine(g_local.d, &o), 0);
	ts_csi_handle(g_local.d, TS_ENGINE_PREFIX "Heal", (const uint8_t *)body, strlen(body), &resp,
		      &len, &code, msg, sizeof(msg));
	cr_assert_eq(code, 0, "%s", msg);
	cr_assert_not_null(strstr((char *)resp, "\"rc\":-95"), "%s", resp); /* -EOPNOTSUPP */
	ts_free(resp);
}
