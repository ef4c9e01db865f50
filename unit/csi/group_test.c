/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group snapshots and QoS through CSI over gRPC, on the whole in-process
 * stack (the fixture of snapshot_test.c: a 4+2 pool of file disks on three
 * node daemons, thin volumes, Tessera's iSCSI target, the data-plane
 * backend).
 *
 * Group snapshots: the members hold what was written before the cut and not
 * what was written after (read back through restores), idempotency by name
 * in any member order, ALREADY_EXISTS for another set, members reporting
 * their group and refused by DeleteSnapshot, Get/Delete checking
 * snapshot_ids, deletion of the whole group, a partial cut left by a crash
 * removed and cut again, a complete cut without its record adopted, bad
 * input. Expected contents come from what the test wrote.
 *
 * QoS: a volume created with a VolumeAttributesClass limit is throttled on
 * the iSCSI path (the engine's counters show delayed IOs; no timing is
 * asserted) and ControllerModifyVolume lifts the limit online, on the same
 * iSCSI session.
 */
#include <criterion/criterion.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/csi.h"
#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"
#include "unit/support/cluster/cluster_fixture.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"

#define MIB (1 << 20)
#define BLK 4096

static struct dpenv g_dp;
static char g_msg[512];

#define RPC(method, req, desc, resp)                                                        \
	gc_call(g_dp.ch, "/csi.v1." method, req, desc, (void **)(resp), 60000, g_msg, sizeof(g_msg))

static void setup(void)
{
	dpenv_init(&g_dp, "group");
}

static void teardown(void)
{
	dpenv_fini(&g_dp);
	tfree_all();
}

TestSuite(csi_group, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

struct vol {
	char id[80], attach[TS_CSI_ATTACH_MAX + 1];
};

static int vcreate(const char *name, const char *src_snap, const char *const *mut, size_t nm,
		   struct vol *out)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { tcap_block() };
	Csi__V1__VolumeContentSource cs = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
	Csi__V1__VolumeContentSource__SnapshotSource ss =
		CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
	Csi__V1__CreateVolumeRequest__MutableParametersEntry e[4], *ep[4];
	Csi__V1__CreateVolumeResponse *resp;
	char kv[4][64];
	int code;

	r.name = (char *)name;
	cr.required_bytes = 8 * MIB;
	r.capacity_range = &cr;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	if (src_snap) {
		ss.snapshot_id = (char *)src_snap;
		cs.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		cs.snapshot = &ss;
		r.volume_content_source = &cs;
	}
	cr_assert_leq(nm, 4);
	for (size_t i = 0; i < nm; i++) {
		char *eq;

		csi__v1__create_volume_request__mutable_parameters_entry__init(&e[i]);
		snprintf(kv[i], sizeof(kv[i]), "%s", mut[i]);
		eq = strchr(kv[i], '=');
		*eq = '\0';
		e[i].key = kv[i];
		e[i].value = eq + 1;
		ep[i] = &e[i];
	}
	r.mutable_parameters = ep;
	r.n_mutable_parameters = nm;
	code = RPC("Controller/CreateVolume", &r, &csi__v1__create_volume_response__descriptor,
		   &resp);
	if (code == 0) {
		snprintf(out->id, sizeof(out->id), "%s", resp->volume->volume_id);
		for (size_t i = 0; i < resp->volume->n_volume_context; i++)
			if (!strcmp(resp->volume->volume_context[i]->key, CSI_CTX_ATTACH))
				snprintf(out->attach, sizeof(out->attach), "%s",
					 resp->volume->volume_context[i]->value);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static uint64_t pool_id(const char *csi_id)
{
	return strtoull(csi_id + 3, NULL, 16);
}

static void fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 31 + seed * 101 + (i >> 12) * 7) & 0xff) | 1;
}

static void vwrite(const char *id, uint32_t seed)
{
	struct ts_volume *v;
	uint8_t *buf = malloc(MIB);

	fill(buf, MIB, seed);
	cr_assert_eq(ts_volume_open(g_dp.vp, pool_id(id), &v), 0);
	cr_assert_eq(ts_volume_write_sync(v, 0, MIB, buf), 0);
	cr_assert_eq(ts_volume_flush_sync(v), 0);
	ts_volume_close(v);
	free(buf);
}

static void vcheck(const char *id, uint32_t seed)
{
	struct ts_volume *v;
	uint8_t *want = malloc(MIB), *got = malloc(MIB);

	fill(want, MIB, seed);
	cr_assert_eq(ts_volume_open(g_dp.vp, pool_id(id), &v), 0);
	cr_assert_eq(ts_volume_read_sync(v, 0, MIB, got), 0);
	ts_volume_close(v);
	cr_assert_eq(memcmp(want, got, MIB), 0, "%s does not hold pattern %u", id, seed);
	free(want);
	free(got);
}

/* CreateVolumeGroupSnapshot; the group id and member snapshot ids (in response order). */
static int gcreate(const char *name, const char *const *vols, size_t n, char gid[80],
		   char snaps[][80], char srcs[][80])
{
	Csi__V1__CreateVolumeGroupSnapshotRequest r =
		CSI__V1__CREATE_VOLUME_GROUP_SNAPSHOT_REQUEST__INIT;
	Csi__V1__CreateVolumeGroupSnapshotResponse *resp;
	int code;

	r.name = (char *)name;
	r.source_volume_ids = (char **)vols;
	r.n_source_volume_ids = n;
	code = RPC("GroupController/CreateVolumeGroupSnapshot", &r,
		   &csi__v1__create_volume_group_snapshot_response__descriptor, &resp);
	if (code)
		return code;
	cr_assert_eq(resp->group_snapshot->n_snapshots, n);
	cr_assert(resp->group_snapshot->ready_to_use);
	cr_assert_not_null(resp->group_snapshot->creation_time);
	snprintf(gid, 80, "%s", resp->group_snapshot->group_snapshot_id);
	for (size_t i = 0; i < n; i++) {
		Csi__V1__Snapshot *s = resp->group_snapshot->snapshots[i];

		cr_assert_str_eq(s->group_snapshot_id, gid, "member %zu does not name its group", i);
		cr_assert(s->ready_to_use);
		snprintf(snaps[i], 80, "%s", s->snapshot_id);
		snprintf(srcs[i], 80, "%s", s->source_volume_id);
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

static int gget(const char *gid, const char *const *snaps, size_t n, size_t *members)
{
	Csi__V1__GetVolumeGroupSnapshotRequest r = CSI__V1__GET_VOLUME_GROUP_SNAPSHOT_REQUEST__INIT;
	Csi__V1__GetVolumeGroupSnapshotResponse *resp;
	int code;

	r.group_snapshot_id = (char *)gid;
	r.snapshot_ids = (char **)snaps;
	r.n_snapshot_ids = n;
	code = RPC("GroupController/GetVolumeGroupSnapshot", &r,
		   &csi__v1__get_volume_group_snapshot_response__descriptor, &resp);
	if (code == 0) {
		cr_assert_str_eq(resp->group_snapshot->group_snapshot_id, gid);
		*members = resp->group_snapshot->n_snapshots;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static int gdelete(const char *gid, const char *const *snaps, size_t n)
{
	Csi__V1__DeleteVolumeGroupSnapshotRequest r =
		CSI__V1__DELETE_VOLUME_GROUP_SNAPSHOT_REQUEST__INIT;

	r.group_snapshot_id = (char *)gid;
	r.snapshot_ids = (char **)snaps;
	r.n_snapshot_ids = n;
	return RPC("GroupController/DeleteVolumeGroupSnapshot", &r, NULL, NULL);
}

/* ListSnapshots of one id: 1 and its group id (or "") when listed, 0 when not. */
static int listed(const char *snap, char group[80])
{
	Csi__V1__ListSnapshotsRequest r = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	Csi__V1__ListSnapshotsResponse *resp;
	int n;

	r.snapshot_id = (char *)snap;
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp),
		     0, "%s", g_msg);
	n = (int)resp->n_entries;
	if (n && group)
		snprintf(group, 80, "%s",
			 resp->entries[0]->snapshot->group_snapshot_id
				 ? resp->entries[0]->snapshot->group_snapshot_id
				 : "");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return n;
}

/* ---- group snapshots ---- */

Test(csi_group, capabilities_are_advertised)
{
	Csi__V1__GetPluginCapabilitiesRequest pr = CSI__V1__GET_PLUGIN_CAPABILITIES_REQUEST__INIT;
	Csi__V1__GetPluginCapabilitiesResponse *presp;
	Csi__V1__GroupControllerGetCapabilitiesRequest gr =
		CSI__V1__GROUP_CONTROLLER_GET_CAPABILITIES_REQUEST__INIT;
	Csi__V1__GroupControllerGetCapabilitiesResponse *gresp;
	bool group = false;

	cr_assert_eq(RPC("Identity/GetPluginCapabilities", &pr,
			 &csi__v1__get_plugin_capabilities_response__descriptor, &presp),
		     0);
	for (size_t i = 0; i < presp->n_capabilities; i++)
		group = group ||
			(presp->capabilities[i]->service &&
			 presp->capabilities[i]->service->type ==
				 CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__GROUP_CONTROLLER_SERVICE);
	protobuf_c_message_free_unpacked(&presp->base, NULL);
	cr_expect(group, "GROUP_CONTROLLER_SERVICE not advertised");
	cr_assert_eq(RPC("GroupController/GroupControllerGetCapabilities", &gr,
			 &csi__v1__group_controller_get_capabilities_response__descriptor, &gresp),
		     0, "%s", g_msg);
	cr_assert_eq(gresp->n_capabilities, 1);
	cr_expect_eq(
		gresp->capabilities[0]->rpc->type,
		CSI__V1__GROUP_CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT);
	protobuf_c_message_free_unpacked(&gresp->base, NULL);
}

Test(csi_group, members_hold_the_cut_and_the_group_is_one_object)
{
	struct vol v[3], r;
	const char *ids[3], *rev[3], *two[2];
	char gid[80], gid2[80], snaps[3][80], snaps2[3][80], srcs[3][80], grp[80], name[32];
	const char *sp[3];
	size_t members;

	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "gv%d", i);
		cr_assert_eq(vcreate(name, NULL, NULL, 0, &v[i]), 0, "%s", g_msg);
		ids[i] = v[i].id;
		rev[2 - i] = v[i].id;
		vwrite(v[i].id, 10 + (uint32_t)i);
	}
	cr_assert_eq(gcreate("g1", ids, 3, gid, snaps, srcs), 0, "%s", g_msg);
	for (int i = 0; i < 3; i++) {
		cr_expect_str_eq(srcs[i], ids[i], "members in the order of the request");
		vwrite(v[i].id, 20 + (uint32_t)i);
		sp[i] = snaps[i];
	}
	/* the same name and set, in another order: the same group */
	cr_assert_eq(gcreate("g1", rev, 3, gid2, snaps2, srcs), 0, "%s", g_msg);
	cr_expect_str_eq(gid2, gid);
	for (int i = 0; i < 3; i++)
		cr_expect_str_eq(snaps2[i], snaps[i], "a retry cut again");
	two[0] = ids[0];
	two[1] = ids[1];
	cr_expect_eq(gcreate("g1", two, 2, gid2, snaps2, srcs), CSI_ALREADY_EXISTS);
	/* members are ordinary snapshots: restorable, listed with their group */
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "r%d", i);
		cr_assert_eq(vcreate(name, snaps[i], NULL, 0, &r), 0, "%s", g_msg);
		vcheck(r.id, 10 + (uint32_t)i);
		cr_assert_eq(listed(snaps[i], grp), 1);
		cr_expect_str_eq(grp, gid);
	}
	/* ... but deleted only with their group */
	{
		Csi__V1__DeleteSnapshotRequest d = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;

		d.snapshot_id = snaps[1];
		cr_expect_eq(RPC("Controller/DeleteSnapshot", &d, NULL, NULL),
			     CSI_FAILED_PRECONDITION);
		cr_expect(strstr(g_msg, gid), "%s", g_msg);
	}
	cr_assert_eq(gget(gid, sp, 3, &members), 0, "%s", g_msg);
	cr_expect_eq(members, 3);
	cr_assert_eq(gget(gid, NULL, 0, &members), 0, "an empty snapshot_ids is no check");
	cr_expect_eq(gget(gid, sp, 2, &members), CSI_INVALID_ARGUMENT, "a mismatch is refused");
	cr_expect_eq(gdelete(gid, sp, 2), CSI_INVALID_ARGUMENT);
	cr_assert_eq(gdelete(gid, sp, 3), 0, "%s", g_msg);
	for (int i = 0; i < 3; i++)
		cr_expect_eq(listed(snaps[i], NULL), 0, "member %s left behind", snaps[i]);
	cr_expect_eq(gget(gid, NULL, 0, &members), CSI_NOT_FOUND);
	cr_expect_eq(gdelete(gid, NULL, 0), 0, "delete is idempotent");
	/* the restores outlive the group */
	for (int i = 0; i < 3; i++) {
		struct vol again;

		snprintf(name, sizeof(name), "r%d", i);
		cr_assert_eq(vcreate(name, snaps[i], NULL, 0, &again), 0, "%s", g_msg);
		vcheck(again.id, 10 + (uint32_t)i);
	}
}

Test(csi_group, crash_leftovers_are_repaired)
{
	struct vol a, b;
	const char *ids[2];
	char gid[80], snaps[2][80], srcs[2][80], pname[100];
	struct ts_csi_backend_snap out[2];
	struct ts_chain_snapshot_info si;
	uint64_t stale;

	cr_assert_eq(vcreate("ca", NULL, NULL, 0, &a), 0, "%s", g_msg);
	cr_assert_eq(vcreate("cb", NULL, NULL, 0, &b), 0, "%s", g_msg);
	ids[0] = a.id;
	ids[1] = b.id;
	vwrite(a.id, 1);
	vwrite(b.id, 2);
	/* a cut interrupted after its first member: that member's snapshot alone */
	snprintf(pname, sizeof(pname), "g2/%s", a.id);
	cr_assert_eq(ts_chain_snapshot(g_dp.vp, pool_id(a.id), pname, &stale), 0);
	vwrite(a.id, 3);
	cr_assert_eq(gcreate("g2", ids, 2, gid, snaps, srcs), 0, "%s", g_msg);
	cr_expect_eq(ts_chain_snapshot_info(g_dp.vp, stale, &si), -ENOENT,
		     "the partial cut was not removed");
	cr_assert_eq(listed(snaps[0], NULL), 1);
	{
		struct vol r;

		cr_assert_eq(vcreate("cr", snaps[0], NULL, 0, &r), 0, "%s", g_msg);
		vcheck(r.id, 3);
	}
	/* a complete cut whose record was never written: adopted, not cut again */
	cr_assert_eq(g_dp.d->be->group_snap_create(g_dp.d->be_ctx, "g3", ids, 2, out), 0);
	vwrite(a.id, 4);
	cr_assert_eq(gcreate("g3", ids, 2, gid, snaps, srcs), 0, "%s", g_msg);
	cr_expect_str_eq(snaps[0], out[0].id);
	cr_expect_str_eq(snaps[1], out[1].id);
}

Test(csi_group, bad_input)
{
	struct vol a;
	const char *one[1], *dup[2], *unknown[2] = { NULL, "tv-00000000000fffff" };
	const char *many[TS_CSI_GROUP_MAX + 1];
	char gid[80], snaps[TS_CSI_GROUP_MAX + 1][80], srcs[TS_CSI_GROUP_MAX + 1][80];
	size_t members;

	cr_assert_eq(vcreate("ba", NULL, NULL, 0, &a), 0, "%s", g_msg);
	one[0] = dup[0] = dup[1] = unknown[0] = a.id;
	cr_expect_eq(gcreate("", one, 1, gid, snaps, srcs), CSI_INVALID_ARGUMENT);
	cr_expect_eq(gcreate("x", one, 0, gid, snaps, srcs), CSI_INVALID_ARGUMENT);
	cr_expect_eq(gcreate("x", dup, 2, gid, snaps, srcs), CSI_INVALID_ARGUMENT);
	cr_expect_eq(gcreate("x", unknown, 2, gid, snaps, srcs), CSI_NOT_FOUND);
	for (size_t i = 0; i <= TS_CSI_GROUP_MAX; i++)
		many[i] = a.id;
	cr_expect_eq(gcreate("x", many, TS_CSI_GROUP_MAX + 1, gid, snaps, srcs),
		     CSI_INVALID_ARGUMENT);
	cr_expect_eq(gget("", NULL, 0, &members), CSI_INVALID_ARGUMENT);
	cr_expect_eq(gget("gs-nothere", NULL, 0, &members), CSI_NOT_FOUND);
	cr_expect_eq(gdelete("", NULL, 0), CSI_INVALID_ARGUMENT);
	cr_expect_eq(gdelete("gs-nothere", NULL, 0), 0);
	/* nothing was cut by the refused calls */
	cr_expect_eq(gcreate("x", one, 1, gid, snaps, srcs), 0, "%s", g_msg);
}

/* ---- QoS on the iSCSI path ---- */

static struct iscsi_context *login_url(const char *url)
{
	char host[64], iqn[256];
	struct iscsi_context *ctx;
	int port;

	cr_assert_eq(sscanf(url, "iscsi://%63[^:]:%d/%255[^/]/0", host, &port, iqn), 3, "%s", url);
	snprintf(host + strlen(host), sizeof(host) - strlen(host), ":%d", port);
	ctx = iscsi_create_context("iqn.2026-12.io.tessera:qos-test");
	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, iqn);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	cr_assert_eq(iscsi_full_connect_sync(ctx, host, 0), 0, "%s", iscsi_get_error(ctx));
	return ctx;
}

static void writes(struct iscsi_context *ctx, int n)
{
	uint8_t buf[BLK];

	for (int i = 0; i < n; i++) {
		struct scsi_task *t;

		fill(buf, BLK, (uint32_t)i);
		t = iscsi_write16_sync(ctx, 0, (uint64_t)i, buf, BLK, BLK, 0, 0, 0, 0, 0);
		cr_assert_not_null(t);
		cr_assert_eq(t->status, SCSI_STATUS_GOOD, "write %d", i);
		scsi_free_scsi_task(t);
	}
}

static struct ts_csi_qos_stats stats(const char *id)
{
	struct ts_csi_qos_stats st;

	cr_assert_eq(g_dp.d->be->qos_stats(g_dp.d->be_ctx, id, &st), 0);
	return st;
}

Test(csi_group, qos_limit_throttles_iscsi_and_is_lifted_online)
{
	const char *mut[] = { "writeIopsLimit=100", "burstMs=100" };
	Csi__V1__ControllerModifyVolumeRequest m = CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__INIT;
	Csi__V1__ControllerModifyVolumeRequest__MutableParametersEntry e =
		CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__MUTABLE_PARAMETERS_ENTRY__INIT;
	Csi__V1__ControllerModifyVolumeRequest__MutableParametersEntry *ep[1] = { &e };
	struct ts_csi_qos_stats s0, s1, s2;
	struct iscsi_context *ctx;
	struct vol v;

	cr_assert_eq(vcreate("qv", NULL, mut, 2, &v), 0, "%s", g_msg);
	ctx = login_url(v.attach);
	s0 = stats(v.id);
	writes(ctx, 60);
	s1 = stats(v.id);
	cr_expect_geq(s1.delayed - s0.delayed, 30,
		      "60 writes against a 10-IO bucket: only %lu delayed",
		      (unsigned long)(s1.delayed - s0.delayed));
	e.key = "writeIopsLimit";
	e.value = "0";
	m.volume_id = v.id;
	m.mutable_parameters = ep;
	m.n_mutable_parameters = 1;
	cr_assert_eq(RPC("Controller/ControllerModifyVolume", &m,
			 &csi__v1__controller_modify_volume_response__descriptor, NULL),
		     0, "%s", g_msg);
	writes(ctx, 60); /* the same session: nothing was detached */
	s2 = stats(v.id);
	cr_expect_eq(s2.delayed, s1.delayed, "IOs delayed after the limit was lifted");
	cr_expect_eq(s2.queued_now, 0);
	iscsi_logout_sync(ctx);
	iscsi_destroy_context(ctx);
}
