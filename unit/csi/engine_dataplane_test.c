/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine seam end to end, over the in-process cluster
 * (unit/support/cluster: three node daemons, a 4+2 array group over
 * user-mode iSCSI, the serving stack): the stack's data-plane backend is
 * served as an engine service on a socket of its own (group "g1"), a second
 * engine on a RAM pool on TCP (group "g2"), and a CSI driver over the
 * remote backend (controller + node, its own CSI socket) talks to them
 * through a router. Driven over gRPC: CreateVolume (idempotent), stage and
 * publish a filesystem volume through the engine's iSCSI URL, write,
 * snapshot, clone from the snapshot and from the volume (data read back),
 * GetMetadataAllocated/GetMetadataDelta equal to what was written to a
 * block volume, expand (the pool volume grows), QoS modify, deletes
 * idempotent, error codes equal to the stack's own in-process CSI driver,
 * listing across both engines. Needs root (FUSE, loop devices, mounts).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi/backend/backend_remote.h"
#include "csi/csi.h"
#include "csi/engine.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "programs/dev.h"
#include "programs/stack.h"
#include "unit/support/cluster/cluster_fixture.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/engine_env.h"
#include "unit/support/csi/grpc_client.h"

#define MIB (1ull << 20)

static struct dpenv g_dp;
static struct ram_engine g_two;
static struct ts_engine_server *g_s1, *g_s2;
static struct trouter g_r;
static struct remote_ctl g_ctl;
static struct ts_client *g_ch; /* to the remote driver's CSI socket */
static char g_msg[512];

#define RPC_ON(ch, method, req, desc, resp)                                                    \
	gc_call(ch, "/csi.v1." method, req, desc, (void **)(resp), 60000, g_msg, sizeof(g_msg))
#define RPC(method, req, desc, resp) RPC_ON(g_ch, method, req, desc, resp)

static void setup(void)
{
	struct ts_engine_opts o1 = { .group = "g1" }, o2 = { .group = "g2" };
	char ep[300], sub[300], sock[320];

	dpenv_init(&g_dp, "engdp");
	ts_stack_backend(ts_dev_stack(g_dp.dev), &o1.ops, &o1.ctx);
	snprintf(ep, sizeof(ep), "unix://%s/engine.sock", g_dp.dir);
	cr_assert_eq(ts_engine_server_start(&o1, ep, 2, &g_s1), 0);
	snprintf(sub, sizeof(sub), "%s/two", g_dp.dir);
	ram_engine_init(&g_two, sub, 64 * MIB);
	o2.ops = g_two.be;
	o2.ctx = g_two.be_ctx;
	cr_assert_eq(ts_engine_server_start(&o2, "127.0.0.1:0", 2, &g_s2), 0);
	memset(&g_r, 0, sizeof(g_r));
	trouter_add(&g_r, "g1", ep);
	snprintf(ep, sizeof(ep), "127.0.0.1:%d", ts_engine_server_port(g_s2));
	trouter_add(&g_r, "g2", ep);
	snprintf(sub, sizeof(sub), "%s/ctl", g_dp.dir);
	mkdir(sub, 0700);
	snprintf(sock, sizeof(sock), "unix://%s/remote.sock", g_dp.dir);
	remote_ctl_init(&g_ctl, &g_r, sub, true, sock);
	g_ch = gc_connect(sock);
	cr_assert_not_null(g_ch);
}

static void teardown(void)
{
	gc_close(g_ch);
	remote_ctl_fini(&g_ctl); /* detaches what it attached */
	ts_engine_server_stop(g_s1, 1000);
	ts_engine_server_stop(g_s2, 1000);
	ram_engine_fini(&g_two);
	dpenv_fini(&g_dp);
	tfree_all();
}

TestSuite(csi_engine_dataplane, .init = setup, .fini = teardown, .timeout = 400);

/* ---- helpers ---- */

static int vcreate_on(struct ts_client *ch, const char *name, uint64_t bytes, bool block,
		      const char *snap, const char *vol, Csi__V1__CreateVolumeResponse **out)
{
	Csi__V1__CreateVolumeRequest *r =
		tcreate_req(name, (int64_t)bytes, block ? tcap_block() : tcap_mount("ext4"), snap, vol);
	Csi__V1__CreateVolumeResponse *resp = NULL;
	int code;

	code = RPC_ON(ch, "Controller/CreateVolume", r, &csi__v1__create_volume_response__descriptor,
		      &resp);
	if (out)
		*out = resp;
	else if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	return code;
}

static Csi__V1__CreateVolumeResponse *vcreate(const char *name, uint64_t bytes, bool block,
					      const char *snap, const char *vol)
{
	Csi__V1__CreateVolumeResponse *resp;

	cr_assert_eq(vcreate_on(g_ch, name, bytes, block, snap, vol, &resp), 0, "%s: %s", name,
		     g_msg);
	return resp;
}

static int snap_on(struct ts_client *ch, const char *vol, const char *name, char *id)
{
	Csi__V1__CreateSnapshotRequest r = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	Csi__V1__CreateSnapshotResponse *resp;
	int code;

	r.source_volume_id = (char *)vol;
	r.name = (char *)name;
	code = RPC_ON(ch, "Controller/CreateSnapshot", &r,
		      &csi__v1__create_snapshot_response__descriptor, &resp);
	if (code == 0) {
		if (id)
			snprintf(id, 80, "%s", resp->snapshot->snapshot_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static void stage_publish(const Csi__V1__Volume *v, const char *tag, bool block, char *target,
			  size_t target_len)
{
	Csi__V1__VolumeCapability *cap = block ? tcap_block() : tcap_mount("ext4");
	char staging[400];
	Csi__V1__NodeStageVolumeRequest sr;
	Csi__V1__NodePublishVolumeRequest pr;

	snprintf(staging, sizeof(staging), "%s/%s-staging", g_dp.dir, tag);
	snprintf(target, target_len, "%s/%s-target", g_dp.dir, tag);
	mkdir(staging, 0750);
	sr = tstage_req(v, staging, cap);
	cr_assert_eq(RPC("Node/NodeStageVolume", &sr, NULL, NULL), 0, "stage %s: %s", tag, g_msg);
	pr = tpublish_req(v, staging, target, cap, false);
	cr_assert_eq(RPC("Node/NodePublishVolume", &pr, NULL, NULL), 0, "publish %s: %s", tag, g_msg);
}

static void unpublish_unstage(const Csi__V1__Volume *v, const char *tag)
{
	Csi__V1__NodeUnpublishVolumeRequest ur = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnstageVolumeRequest sr = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
	char staging[400], target[400];

	snprintf(staging, sizeof(staging), "%s/%s-staging", g_dp.dir, tag);
	snprintf(target, sizeof(target), "%s/%s-target", g_dp.dir, tag);
	ur.volume_id = v->volume_id;
	ur.target_path = target;
	cr_assert_eq(RPC("Node/NodeUnpublishVolume", &ur, NULL, NULL), 0, "%s", g_msg);
	sr.volume_id = v->volume_id;
	sr.staging_target_path = staging;
	cr_assert_eq(RPC("Node/NodeUnstageVolume", &sr, NULL, NULL), 0, "%s", g_msg);
}

static void pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

static void file_is(const char *dir, const uint8_t *want, size_t len)
{
	static uint8_t back[(1 << 20) + 1];
	char path[500];
	int fd;

	snprintf(path, sizeof(path), "%s/data.bin", dir);
	fd = open(path, O_RDONLY);
	cr_assert_geq(fd, 0, "%s", path);
	cr_assert_eq(read(fd, back, sizeof(back)), (ssize_t)len);
	close(fd);
	cr_assert_eq(memcmp(back, want, len), 0, "%s differs", path);
}

struct range {
	uint64_t off, len;
};

static size_t meta(const char *base, const char *target, struct range *out, size_t max)
{
	void **resps;
	size_t nr, n = 0;
	int code;

	if (base) {
		Csi__V1__GetMetadataDeltaRequest r = CSI__V1__GET_METADATA_DELTA_REQUEST__INIT;

		r.base_snapshot_id = (char *)base;
		r.target_snapshot_id = (char *)target;
		code = gc_stream(g_ch, "/csi.v1.SnapshotMetadata/GetMetadataDelta", &r,
				 &csi__v1__get_metadata_delta_response__descriptor, &resps, &nr,
				 60000, g_msg, sizeof(g_msg));
	} else {
		Csi__V1__GetMetadataAllocatedRequest r = CSI__V1__GET_METADATA_ALLOCATED_REQUEST__INIT;

		r.snapshot_id = (char *)target;
		code = gc_stream(g_ch, "/csi.v1.SnapshotMetadata/GetMetadataAllocated", &r,
				 &csi__v1__get_metadata_allocated_response__descriptor, &resps, &nr,
				 60000, g_msg, sizeof(g_msg));
	}
	cr_assert_eq(code, 0, "%s", g_msg);
	for (size_t i = 0; i < nr; i++) {
		Csi__V1__GetMetadataDeltaResponse *m = resps[i]; /* same layout for both */

		for (size_t j = 0; j < m->n_block_metadata; j++) {
			cr_assert_lt(n, max);
			out[n++] = (struct range){ (uint64_t)m->block_metadata[j]->byte_offset,
						   (uint64_t)m->block_metadata[j]->size_bytes };
		}
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	free(resps);
	return n;
}

static void del_vol(const char *id)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

	r.volume_id = (char *)id;
	cr_assert_eq(RPC("Controller/DeleteVolume", &r, NULL, NULL), 0, "%s", g_msg);
	cr_assert_eq(RPC("Controller/DeleteVolume", &r, NULL, NULL), 0, "again: %s", g_msg);
}

static void del_snap(const char *id)
{
	Csi__V1__DeleteSnapshotRequest r = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;

	r.snapshot_id = (char *)id;
	cr_assert_eq(RPC("Controller/DeleteSnapshot", &r, NULL, NULL), 0, "%s", g_msg);
	cr_assert_eq(RPC("Controller/DeleteSnapshot", &r, NULL, NULL), 0, "again: %s", g_msg);
}

static uint64_t pool_id(const char *remote_id)
{
	cr_assert_eq(strncmp(remote_id, "g1.tv-", 6), 0, "%s", remote_id);
	return strtoull(remote_id + 6, NULL, 16);
}

/* ---- tests ---- */

Test(csi_engine_dataplane, filesystem_volume_snapshot_and_clones_through_the_engine)
{
	static uint8_t data[1 << 20];
	Csi__V1__CreateVolumeResponse *v, *again, *c1, *c2;
	char target[400], path[500], sid[80];
	struct ts_vpool_volume_info info;
	int fd;

	g_r.pick = 0;
	v = vcreate("pvc-e-fs", 64 * MIB, false, NULL, NULL);
	again = vcreate("pvc-e-fs", 64 * MIB, false, NULL, NULL);
	cr_assert_str_eq(v->volume->volume_id, again->volume->volume_id);
	cr_assert_eq(ts_vpool_volume_info(g_dp.vp, pool_id(v->volume->volume_id), &info), 0,
		     "the volume is not in the stack's pool");
	cr_assert_str_eq(v->volume->volume_context[0]->key, "csi.tessera.io/attach");
	cr_assert_eq(strncmp(v->volume->volume_context[0]->value, "iscsi://", 8), 0);

	stage_publish(v->volume, "fs", false, target, sizeof(target));
	pattern(data, sizeof(data), 3);
	snprintf(path, sizeof(path), "%s/data.bin", target);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	unpublish_unstage(v->volume, "fs"); /* the filesystem is clean for the snapshot */

	cr_assert_eq(snap_on(g_ch, v->volume->volume_id, "snap-e-fs", sid), 0, "%s", g_msg);
	cr_assert_eq(strncmp(sid, "g1.ts-", 6), 0, "%s", sid);
	g_r.pick = 1; /* clones go to their source's engine anyway */
	c1 = vcreate("pvc-e-c1", 0, false, sid, NULL);
	c2 = vcreate("pvc-e-c2", 64 * MIB, false, NULL, v->volume->volume_id);
	cr_assert_eq(strncmp(c1->volume->volume_id, "g1.", 3), 0, "%s", c1->volume->volume_id);
	cr_assert_eq(strncmp(c2->volume->volume_id, "g1.", 3), 0, "%s", c2->volume->volume_id);
	stage_publish(c1->volume, "c1", false, target, sizeof(target));
	file_is(target, data, sizeof(data));
	unpublish_unstage(c1->volume, "c1");
	stage_publish(c2->volume, "c2", false, target, sizeof(target));
	file_is(target, data, sizeof(data));
	unpublish_unstage(c2->volume, "c2");

	del_vol(c1->volume->volume_id);
	del_vol(c2->volume->volume_id);
	del_snap(sid);
	del_vol(v->volume->volume_id);
	cr_assert_eq(ts_vpool_volume_info(g_dp.vp, pool_id(v->volume->volume_id), &info), -ENOENT);
	protobuf_c_message_free_unpacked(&v->base, NULL);
	protobuf_c_message_free_unpacked(&again->base, NULL);
	protobuf_c_message_free_unpacked(&c1->base, NULL);
	protobuf_c_message_free_unpacked(&c2->base, NULL);
}

Test(csi_engine_dataplane, block_metadata_expand_and_qos_through_the_engine)
{
	static uint8_t data[1 << 20];
	Csi__V1__CreateVolumeResponse *v;
	char target[400], s1[80], s2[80];
	struct ts_vpool_volume_info info;
	struct range r[16];
	size_t n;
	int fd;

	g_r.pick = 0;
	v = vcreate("pvc-e-blk", 32 * MIB, true, NULL, NULL);
	stage_publish(v->volume, "blk", true, target, sizeof(target));
	pattern(data, sizeof(data), 5);
	fd = open(target, O_WRONLY);
	cr_assert_geq(fd, 0, "%s", target);
	cr_assert_eq(pwrite(fd, data, sizeof(data), 4 * MIB), (ssize_t)sizeof(data));
	cr_assert_eq(pwrite(fd, data, 64 << 10, 20 * MIB), 64 << 10);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	unpublish_unstage(v->volume, "blk");
	cr_assert_eq(snap_on(g_ch, v->volume->volume_id, "snap-b1", s1), 0, "%s", g_msg);

	n = meta(NULL, s1, r, 16);
	cr_assert_eq(n, 2, "%zu ranges", n);
	cr_assert_eq(r[0].off, 4 * MIB);
	cr_assert_eq(r[0].len, 1 * MIB);
	cr_assert_eq(r[1].off, 20 * MIB);
	cr_assert_eq(r[1].len, 64 << 10);

	stage_publish(v->volume, "blk", true, target, sizeof(target));
	fd = open(target, O_WRONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, data, 4096, 8 * MIB), 4096);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	unpublish_unstage(v->volume, "blk");
	cr_assert_eq(snap_on(g_ch, v->volume->volume_id, "snap-b2", s2), 0, "%s", g_msg);
	n = meta(s1, s2, r, 16);
	cr_assert_eq(n, 1, "%zu ranges", n);
	cr_assert_eq(r[0].off, 8 * MIB);
	cr_assert_eq(r[0].len, 4096);

	/* expand: the pool volume grows */
	{
		Csi__V1__ControllerExpandVolumeRequest er = CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
		Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
		Csi__V1__ControllerExpandVolumeResponse *eresp;

		cr.required_bytes = 64 * MIB;
		er.volume_id = v->volume->volume_id;
		er.capacity_range = &cr;
		cr_assert_eq(RPC("Controller/ControllerExpandVolume", &er,
				 &csi__v1__controller_expand_volume_response__descriptor, &eresp),
			     0, "%s", g_msg);
		cr_assert_geq(eresp->capacity_bytes, 64 * MIB);
		protobuf_c_message_free_unpacked(&eresp->base, NULL);
		cr_assert_eq(ts_vpool_volume_info(g_dp.vp, pool_id(v->volume->volume_id), &info), 0);
		cr_assert_eq(info.size, 64 * MIB);
	}
	/* QoS modify reaches the engine's LUN */
	{
		Csi__V1__ControllerModifyVolumeRequest mr = CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__INIT;
		Csi__V1__ControllerModifyVolumeRequest__MutableParametersEntry e =
			CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__MUTABLE_PARAMETERS_ENTRY__INIT;
		Csi__V1__ControllerModifyVolumeRequest__MutableParametersEntry *ep[1] = { &e };
		const struct ts_csi_backend_ops *ops;
		struct ts_csi_qos_stats st;
		void *ctx;

		e.key = "iopsLimit";
		e.value = "500";
		mr.volume_id = v->volume->volume_id;
		mr.mutable_parameters = ep;
		mr.n_mutable_parameters = 1;
		cr_assert_eq(RPC("Controller/ControllerModifyVolume", &mr, NULL, NULL), 0, "%s", g_msg);
		cr_assert_eq(g_ctl.be->qos_stats(g_ctl.be_ctx, v->volume->volume_id, &st), 0);
		ts_stack_backend(ts_dev_stack(g_dp.dev), &ops, &ctx);
		cr_assert_eq(ops->qos_stats(ctx, v->volume->volume_id + 3, &st), 0);
		e.value = "-1";
		cr_assert_eq(RPC("Controller/ControllerModifyVolume", &mr, NULL, NULL), 3, "%s", g_msg);
	}
	del_snap(s1);
	del_snap(s2);
	del_vol(v->volume->volume_id);
	protobuf_c_message_free_unpacked(&v->base, NULL);
}

Test(csi_engine_dataplane, errors_as_in_process_and_two_engines_listed)
{
	Csi__V1__CreateVolumeResponse *rv, *rv2, *lv, *lv2, *w;
	char rs[80], ls[80], ws[80];

	g_r.pick = 0;
	rv = vcreate("e-err-1", 16 * MIB, true, NULL, NULL);
	rv2 = vcreate("e-err-2", 16 * MIB, true, NULL, NULL);
	cr_assert_eq(vcreate_on(g_dp.ch, "l-err-1", 16 * MIB, true, NULL, NULL, &lv), 0, "%s", g_msg);
	cr_assert_eq(vcreate_on(g_dp.ch, "l-err-2", 16 * MIB, true, NULL, NULL, &lv2), 0, "%s", g_msg);
	cr_assert_eq(snap_on(g_ch, rv->volume->volume_id, "e-err-s", rs), 0, "%s", g_msg);
	cr_assert_eq(snap_on(g_dp.ch, lv->volume->volume_id, "l-err-s", ls), 0, "%s", g_msg);

	/* ALREADY_EXISTS, NOT_FOUND, OUT_OF_RANGE: the same code from both drivers */
	cr_assert_eq(snap_on(g_ch, rv2->volume->volume_id, "e-err-s", NULL), 6, "%s", g_msg);
	cr_assert_eq(snap_on(g_dp.ch, lv2->volume->volume_id, "l-err-s", NULL), 6, "%s", g_msg);
	cr_assert_eq(vcreate_on(g_ch, "e-nf", 0, true, "g1.ts-00000000000fffff", NULL, NULL), 5);
	cr_assert_eq(vcreate_on(g_dp.ch, "l-nf", 0, true, "ts-00000000000fffff", NULL, NULL), 5);
	cr_assert_eq(vcreate_on(g_ch, "e-small", 8 * MIB, true, rs, NULL, NULL), 11, "%s", g_msg);
	cr_assert_eq(vcreate_on(g_dp.ch, "l-small", 8 * MIB, true, ls, NULL, NULL), 11, "%s", g_msg);
	/* RESOURCE_EXHAUSTED when no engine has room */
	g_r.pick_rc = -ENOSPC;
	cr_assert_eq(vcreate_on(g_ch, "e-full", 16 * MIB, true, NULL, NULL, NULL), 8, "%s", g_msg);
	g_r.pick_rc = 0;
	/* the in-process driver's objects share engine g1's pool: gone before the listing */
	{
		Csi__V1__DeleteSnapshotRequest ds = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;
		Csi__V1__DeleteVolumeRequest dv = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

		ds.snapshot_id = ls;
		cr_assert_eq(RPC_ON(g_dp.ch, "Controller/DeleteSnapshot", &ds, NULL, NULL), 0, "%s", g_msg);
		dv.volume_id = lv->volume->volume_id;
		cr_assert_eq(RPC_ON(g_dp.ch, "Controller/DeleteVolume", &dv, NULL, NULL), 0, "%s", g_msg);
		dv.volume_id = lv2->volume->volume_id;
		cr_assert_eq(RPC_ON(g_dp.ch, "Controller/DeleteVolume", &dv, NULL, NULL), 0, "%s", g_msg);
	}

	/* A volume and a snapshot on the second engine; ListSnapshots sees both engines. */
	g_r.pick = 1;
	w = vcreate("e-two", 16 * MIB, true, NULL, NULL);
	cr_assert_eq(strncmp(w->volume->volume_id, "g2.", 3), 0, "%s", w->volume->volume_id);
	cr_assert_eq(snap_on(g_ch, w->volume->volume_id, "e-two-s", ws), 0, "%s", g_msg);
	{
		Csi__V1__ListSnapshotsRequest r = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
		Csi__V1__ListSnapshotsResponse *resp;

		cr_assert_eq(RPC("Controller/ListSnapshots", &r,
				 &csi__v1__list_snapshots_response__descriptor, &resp), 0, "%s", g_msg);
		cr_assert_eq(resp->n_entries, 2);
		cr_assert_str_eq(resp->entries[0]->snapshot->snapshot_id, rs);
		cr_assert_str_eq(resp->entries[1]->snapshot->snapshot_id, ws);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	del_snap(ws);
	del_snap(rs);
	del_vol(w->volume->volume_id);
	del_vol(rv->volume->volume_id);
	del_vol(rv2->volume->volume_id);
	protobuf_c_message_free_unpacked(&rv->base, NULL);
	protobuf_c_message_free_unpacked(&rv2->base, NULL);
	protobuf_c_message_free_unpacked(&lv->base, NULL);
	protobuf_c_message_free_unpacked(&lv2->base, NULL);
	protobuf_c_message_free_unpacked(&w->base, NULL);
}
