/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Snapshots, clones and changed-block metadata through CSI, over gRPC, on
 * the whole in-process stack (the setup of dataplane_test.c: a 4+2 pool of
 * file disks, thin volumes, Tessera's iSCSI target, the data-plane backend).
 *
 * Data is written and read straight through the data plane (ts_volume on the
 * pool volume behind a CSI id) and, for one clone, through NodeStage (iSCSI
 * -> FUSE -> loop). Expected contents and changed ranges come from what the
 * test itself wrote, never from the code under test. Needs root for the
 * staged read (FUSE, loop devices).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi/backend/backend_dataplane.h"
#include "csi/csi.h"
#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"
#include "unit/support/cluster/cluster_fixture.h"

#define MIB (1 << 20)
#define BLK 4096

static struct dpenv g_dp;
static char g_msg[512];

#define RPC(method, req, desc, resp)                                                        \
	gc_call(g_dp.ch, "/csi.v1." method, req, desc, (void **)(resp), 60000, g_msg, sizeof(g_msg))

static void setup(void)
{
	dpenv_init(&g_dp, "snap");
}

static void teardown(void)
{
	dpenv_fini(&g_dp);
}

TestSuite(csi_snapshot, .init = setup, .fini = teardown, .timeout = 240);

/* ---- helpers ---- */

/*
 * CreateVolume \p name (block) of \p bytes (0: no capacity range) from
 * \p src (a "ts-" snapshot or "tv-" volume id, or NULL). Returns the code;
 * the id goes to \p id (when OK) and the size to *\p size.
 */
static int vcreate(const char *name, int64_t bytes, const char *src, char id[80], int64_t *size)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { tcap_block() };
	Csi__V1__VolumeContentSource cs = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
	Csi__V1__VolumeContentSource__SnapshotSource ss =
		CSI__V1__VOLUME_CONTENT_SOURCE__SNAPSHOT_SOURCE__INIT;
	Csi__V1__VolumeContentSource__VolumeSource vs =
		CSI__V1__VOLUME_CONTENT_SOURCE__VOLUME_SOURCE__INIT;
	Csi__V1__CreateVolumeResponse *resp;
	int code;

	r.name = (char *)name;
	if (bytes) {
		cr.required_bytes = bytes;
		r.capacity_range = &cr;
	}
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	if (src) {
		if (!strncmp(src, "ts-", 3)) {
			ss.snapshot_id = (char *)src;
			cs.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
			cs.snapshot = &ss;
		} else {
			vs.volume_id = (char *)src;
			cs.type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
			cs.volume = &vs;
		}
		r.volume_content_source = &cs;
	}
	code = RPC("Controller/CreateVolume", &r, &csi__v1__create_volume_response__descriptor,
		   &resp);
	if (code == 0) {
		snprintf(id, 80, "%s", resp->volume->volume_id);
		if (size)
			*size = resp->volume->capacity_bytes;
		if (src) {
			cr_assert_not_null(resp->volume->content_source, "content_source not echoed");
			cr_assert_eq(resp->volume->content_source->type_case, cs.type_case);
		}
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static int vdelete(const char *id)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

	r.volume_id = (char *)id;
	return RPC("Controller/DeleteVolume", &r, NULL, NULL);
}

/* CreateSnapshot; the id to \p id, the response fields checked for sanity. */
static int snap(const char *vol, const char *name, char id[80])
{
	Csi__V1__CreateSnapshotRequest r = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	Csi__V1__CreateSnapshotResponse *resp;
	int code;

	r.source_volume_id = (char *)vol;
	r.name = (char *)name;
	code = RPC("Controller/CreateSnapshot", &r, &csi__v1__create_snapshot_response__descriptor,
		   &resp);
	if (code == 0) {
		cr_assert_str_eq(resp->snapshot->source_volume_id, vol);
		cr_assert(resp->snapshot->ready_to_use);
		cr_assert_not_null(resp->snapshot->creation_time);
		cr_assert_gt(resp->snapshot->creation_time->seconds, 1600000000);
		cr_assert_gt(resp->snapshot->size_bytes, 0);
		snprintf(id, 80, "%s", resp->snapshot->snapshot_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return code;
}

static int snap_delete(const char *id)
{
	Csi__V1__DeleteSnapshotRequest r = CSI__V1__DELETE_SNAPSHOT_REQUEST__INIT;

	r.snapshot_id = (char *)id;
	return RPC("Controller/DeleteSnapshot", &r, NULL, NULL);
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

/* Write \p len bytes of pattern \p seed at \p off of CSI volume \p id, through the data plane. */
static void vwrite(const char *id, uint64_t off, size_t len, uint32_t seed)
{
	struct ts_volume *v;
	uint8_t *buf = malloc(len);

	fill(buf, len, seed);
	cr_assert_eq(ts_volume_open(g_dp.vp, pool_id(id), &v), 0);
	cr_assert_eq(ts_volume_write_sync(v, off, len, buf), 0);
	cr_assert_eq(ts_volume_flush_sync(v), 0);
	ts_volume_close(v);
	free(buf);
}

/* Check that CSI volume \p id holds pattern \p seed (0: zeroes) at [off, off+len). */
static void vcheck(const char *id, uint64_t off, size_t len, uint32_t seed)
{
	struct ts_volume *v;
	uint8_t *want = calloc(1, len), *got = malloc(len);

	if (seed)
		fill(want, len, seed);
	cr_assert_eq(ts_volume_open(g_dp.vp, pool_id(id), &v), 0);
	cr_assert_eq(ts_volume_read_sync(v, off, len, got), 0);
	ts_volume_close(v);
	cr_assert_eq(memcmp(want, got, len), 0, "%s at %lu+%zu is not pattern %u", id,
		     (unsigned long)off, len, seed);
	free(want);
	free(got);
}

struct range {
	int64_t off, len;
};

/*
 * GetMetadataAllocated (\p base NULL) or GetMetadataDelta, all messages;
 * returns the code and the ranges (at most \p max) in \p out, *n, the
 * capacity in *cap and the number of messages in *msgs.
 */
static int meta(const char *base, const char *target, int64_t start, int32_t max_results,
		struct range *out, size_t max, size_t *n, int64_t *cap, size_t *msgs)
{
	void **resps;
	size_t nr;
	int code;

	*n = 0;
	if (base) {
		Csi__V1__GetMetadataDeltaRequest r = CSI__V1__GET_METADATA_DELTA_REQUEST__INIT;

		r.base_snapshot_id = (char *)base;
		r.target_snapshot_id = (char *)target;
		r.starting_offset = start;
		r.max_results = max_results;
		code = gc_stream(g_dp.ch, "/csi.v1.SnapshotMetadata/GetMetadataDelta", &r,
				 &csi__v1__get_metadata_delta_response__descriptor, &resps, &nr,
				 60000, g_msg, sizeof(g_msg));
	} else {
		Csi__V1__GetMetadataAllocatedRequest r = CSI__V1__GET_METADATA_ALLOCATED_REQUEST__INIT;

		r.snapshot_id = (char *)target;
		r.starting_offset = start;
		r.max_results = max_results;
		code = gc_stream(g_dp.ch, "/csi.v1.SnapshotMetadata/GetMetadataAllocated", &r,
				 &csi__v1__get_metadata_allocated_response__descriptor, &resps, &nr,
				 60000, g_msg, sizeof(g_msg));
	}
	*msgs = nr;
	for (size_t i = 0; i < nr; i++) {
		/* Both response types share the layout {type, capacity, n, block_metadata}. */
		Csi__V1__GetMetadataDeltaResponse *m = resps[i];

		cr_assert_eq(m->block_metadata_type, CSI__V1__BLOCK_METADATA_TYPE__VARIABLE_LENGTH);
		if (max_results)
			cr_assert_leq(m->n_block_metadata, (size_t)max_results);
		*cap = m->volume_capacity_bytes;
		for (size_t j = 0; j < m->n_block_metadata; j++) {
			cr_assert_lt(*n, max);
			cr_assert_gt(m->block_metadata[j]->size_bytes, 0);
			out[(*n)++] = (struct range){ m->block_metadata[j]->byte_offset,
						      m->block_metadata[j]->size_bytes };
		}
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	free(resps);
	return code;
}

static void expect_ranges(const struct range *got, size_t n, const struct range *want, size_t nw)
{
	cr_assert_eq(n, nw, "%zu ranges, expected %zu", n, nw);
	for (size_t i = 0; i < n; i++)
		cr_assert(got[i].off == want[i].off && got[i].len == want[i].len,
			  "range %zu is %ld+%ld, expected %ld+%ld", i, (long)got[i].off,
			  (long)got[i].len, (long)want[i].off, (long)want[i].len);
}

/* ---- tests ---- */

Test(csi_snapshot, capabilities_are_advertised)
{
	Csi__V1__ControllerGetCapabilitiesRequest r = CSI__V1__CONTROLLER_GET_CAPABILITIES_REQUEST__INIT;
	Csi__V1__ControllerGetCapabilitiesResponse *resp;
	Csi__V1__GetPluginCapabilitiesRequest pr = CSI__V1__GET_PLUGIN_CAPABILITIES_REQUEST__INIT;
	Csi__V1__GetPluginCapabilitiesResponse *presp;
	unsigned seen = 0;
	bool meta_svc = false;

	cr_assert_eq(RPC("Controller/ControllerGetCapabilities", &r,
			 &csi__v1__controller_get_capabilities_response__descriptor, &resp), 0);
	for (size_t i = 0; i < resp->n_capabilities; i++) {
		switch (resp->capabilities[i]->rpc->type) {
		case CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT:
			seen |= 1;
			break;
		case CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__LIST_SNAPSHOTS:
			seen |= 2;
			break;
		case CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME:
			seen |= 4;
			break;
		default:
			break;
		}
	}
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	cr_assert_eq(seen, 7);
	cr_assert_eq(RPC("Identity/GetPluginCapabilities", &pr,
			 &csi__v1__get_plugin_capabilities_response__descriptor, &presp), 0);
	for (size_t i = 0; i < presp->n_capabilities; i++)
		if (presp->capabilities[i]->type_case == CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE &&
		    presp->capabilities[i]->service->type ==
			    CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__SNAPSHOT_METADATA_SERVICE)
			meta_svc = true;
	protobuf_c_message_free_unpacked(&presp->base, NULL);
	cr_assert(meta_svc);

	/* The file backend has no snapshots: nothing advertised, calls UNIMPLEMENTED. */
	struct tenv fe;
	Csi__V1__CreateSnapshotRequest sr = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;

	tenv_init(&fe, NULL, NULL, 64 * MIB);
	cr_assert_eq(tcall(fe.d, "/csi.v1.Controller/ControllerGetCapabilities", &r,
			   &csi__v1__controller_get_capabilities_response__descriptor, (void **)&resp),
		     0);
	for (size_t i = 0; i < resp->n_capabilities; i++)
		cr_assert(resp->capabilities[i]->rpc->type !=
				  CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CREATE_DELETE_SNAPSHOT &&
			  resp->capabilities[i]->rpc->type !=
				  CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__CLONE_VOLUME);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	sr.name = "s";
	sr.source_volume_id = "fv-0";
	cr_assert_eq(tcall(fe.d, "/csi.v1.Controller/CreateSnapshot", &sr, NULL, NULL),
		     12 /* UNIMPLEMENTED */);
	tenv_fini(&fe);
	tfree_all();
}

Test(csi_snapshot, clone_of_snapshot_sees_the_snapshot_not_later_writes)
{
	char vol[80], s1[80], s1again[80], clone[80], staging[400], target[400];
	static uint8_t want[64 * 1024], got[64 * 1024];
	int64_t size = 0;

	cr_assert_eq(vcreate("pvc-src", 16 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	vwrite(vol, 1 * MIB, 64 * 1024, 1);
	vwrite(vol, 9 * MIB, 8 * BLK, 2);
	cr_assert_eq(snap(vol, "snap-1", s1), 0, "%s", g_msg);
	cr_assert_eq(strncmp(s1, "ts-", 3), 0, "%s", s1);
	/* Idempotent by name and source. */
	cr_assert_eq(snap(vol, "snap-1", s1again), 0, "%s", g_msg);
	cr_assert_str_eq(s1, s1again);
	/* Write more after the snapshot: overwrite and new areas. */
	vwrite(vol, 1 * MIB, 64 * 1024, 3);
	vwrite(vol, 4 * MIB, BLK, 4);

	cr_assert_eq(vcreate("pvc-clone", 0, s1, clone, &size), 0, "%s", g_msg);
	cr_assert_eq(size, 16 * MIB, "a clone takes the snapshot's size");
	vcheck(clone, 1 * MIB, 64 * 1024, 1);
	vcheck(clone, 9 * MIB, 8 * BLK, 2);
	vcheck(clone, 4 * MIB, BLK, 0);
	vcheck(vol, 1 * MIB, 64 * 1024, 3);
	vcheck(vol, 4 * MIB, BLK, 4);

	/* The clone is writable without touching the snapshot or the source. */
	vwrite(clone, 9 * MIB, BLK, 5);
	vcheck(vol, 9 * MIB, BLK, 2);

	/* And the clone reads the same through iSCSI (NodeStage, block). */
	{
		Csi__V1__NodeStageVolumeRequest r = CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
		Csi__V1__NodeUnstageVolumeRequest u = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
		Csi__V1__NodePublishVolumeRequest p = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
		Csi__V1__NodeUnpublishVolumeRequest up = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
		Csi__V1__Volume__VolumeContextEntry ctx = CSI__V1__VOLUME__VOLUME_CONTEXT_ENTRY__INIT;
		Csi__V1__NodeStageVolumeRequest__VolumeContextEntry *ctxs[1];
		char url[300];
		int fd;

		/* The attach context is the volume's iSCSI URL, as CreateVolume returned it. */
		{
			Csi__V1__ListVolumesRequest lr = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
			Csi__V1__ListVolumesResponse *lresp;

			cr_assert_eq(RPC("Controller/ListVolumes", &lr,
					 &csi__v1__list_volumes_response__descriptor, &lresp), 0);
			url[0] = 0;
			for (size_t i = 0; i < lresp->n_entries; i++)
				if (!strcmp(lresp->entries[i]->volume->volume_id, clone))
					snprintf(url, sizeof(url), "%s",
						 lresp->entries[i]->volume->volume_context[0]->value);
			protobuf_c_message_free_unpacked(&lresp->base, NULL);
			cr_assert_eq(strncmp(url, "iscsi://", 8), 0, "%s", url);
		}
		ctx.key = "csi.tessera.io/attach";
		ctx.value = url;
		ctxs[0] = (void *)&ctx;
		snprintf(staging, sizeof(staging), "%s/st", g_dp.dir);
		snprintf(target, sizeof(target), "%s/tg", g_dp.dir);
		mkdir(staging, 0750);
		r.volume_id = clone;
		r.staging_target_path = staging;
		r.volume_capability = tcap_block();
		r.volume_context = ctxs;
		r.n_volume_context = 1;
		cr_assert_eq(RPC("Node/NodeStageVolume", &r, NULL, NULL), 0, "stage: %s", g_msg);
		p.volume_id = clone;
		p.staging_target_path = staging;
		p.target_path = target;
		p.volume_capability = r.volume_capability;
		cr_assert_eq(RPC("Node/NodePublishVolume", &p, NULL, NULL), 0, "publish: %s", g_msg);
		fd = open(target, O_RDONLY);
		cr_assert_geq(fd, 0);
		fill(want, sizeof(want), 1);
		cr_assert_eq(pread(fd, got, sizeof(got), 1 * MIB), (ssize_t)sizeof(got));
		cr_assert_eq(memcmp(want, got, sizeof(got)), 0, "clone over iSCSI differs");
		fill(want, BLK, 5);
		cr_assert_eq(pread(fd, got, BLK, 9 * MIB), BLK);
		cr_assert_eq(memcmp(want, got, BLK), 0);
		close(fd);
		up.volume_id = clone;
		up.target_path = target;
		cr_assert_eq(RPC("Node/NodeUnpublishVolume", &up, NULL, NULL), 0, "%s", g_msg);
		u.volume_id = clone;
		u.staging_target_path = staging;
		cr_assert_eq(RPC("Node/NodeUnstageVolume", &u, NULL, NULL), 0, "%s", g_msg);
	}

	/* Deleting the source keeps the snapshot (the chain keeps its layer). */
	cr_assert_eq(vdelete(vol), 0, "%s", g_msg);
	{
		char clone2[80];

		cr_assert_eq(vcreate("pvc-clone-2", 32 * MIB, s1, clone2, &size), 0, "%s", g_msg);
		cr_assert_eq(size, 32 * MIB);
		vcheck(clone2, 1 * MIB, 64 * 1024, 1);
		vcheck(clone2, 20 * MIB, BLK, 0);
		cr_assert_eq(vdelete(clone2), 0);
	}
	cr_assert_eq(snap_delete(s1), 0, "%s", g_msg);
	cr_assert_eq(snap_delete(s1), 0, "again: %s", g_msg);
	vcheck(clone, 1 * MIB, 64 * 1024, 1);
	cr_assert_eq(vdelete(clone), 0);
	tfree_all();
}

Test(csi_snapshot, clone_of_a_live_volume)
{
	char vol[80], clone[80], again[80];
	int64_t size;

	cr_assert_eq(vcreate("pvc-live", 8 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	vwrite(vol, 0, 4 * BLK, 7);
	vwrite(vol, 8 * BLK, 4 * BLK, 6);
	cr_assert_eq(vcreate("pvc-live-clone", 0, vol, clone, &size), 0, "%s", g_msg);
	cr_assert_eq(size, 8 * MIB);
	cr_assert_str_neq(clone, vol);
	/* Same name, same request: the same clone. */
	cr_assert_eq(vcreate("pvc-live-clone", 0, vol, again, NULL), 0, "%s", g_msg);
	cr_assert_str_eq(clone, again);
	vwrite(vol, 0, 4 * BLK, 8);
	vwrite(clone, 8 * BLK, 4 * BLK, 9);
	vcheck(clone, 0, 4 * BLK, 7);
	vcheck(vol, 0, 4 * BLK, 8);
	vcheck(clone, 8 * BLK, 4 * BLK, 9);
	vcheck(vol, 8 * BLK, 4 * BLK, 6); /* the clone's write stays in the clone */
	tfree_all();
}

Test(csi_snapshot, delete_a_snapshot_in_the_middle)
{
	char vol[80], s[3][80], c1[80], c3[80];
	struct range r[16];
	size_t n, msgs;
	int64_t cap;

	cr_assert_eq(vcreate("pvc-mid", 8 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	vwrite(vol, 0, BLK, 1);
	vwrite(vol, BLK, BLK, 1);
	cr_assert_eq(snap(vol, "mid-1", s[0]), 0, "%s", g_msg);
	vwrite(vol, 1 * MIB, 2 * BLK, 2);
	cr_assert_eq(snap(vol, "mid-2", s[1]), 0, "%s", g_msg);
	vwrite(vol, 0, BLK, 3);
	vwrite(vol, 2 * MIB, BLK, 3);
	cr_assert_eq(snap(vol, "mid-3", s[2]), 0, "%s", g_msg);
	vwrite(vol, 3 * MIB, BLK, 4);

	cr_assert_eq(snap_delete(s[1]), 0, "%s", g_msg);
	/* It is gone from the list; the others stay readable and exact. */
	{
		Csi__V1__ListSnapshotsRequest lr = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
		Csi__V1__ListSnapshotsResponse *resp;

		lr.snapshot_id = s[1];
		cr_assert_eq(RPC("Controller/ListSnapshots", &lr,
				 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
		cr_assert_eq(resp->n_entries, 0);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	cr_assert_eq(vcreate("pvc-mid-c1", 0, s[0], c1, NULL), 0, "%s", g_msg);
	cr_assert_eq(vcreate("pvc-mid-c3", 0, s[2], c3, NULL), 0, "%s", g_msg);
	vcheck(c1, 0, BLK, 1);
	vcheck(c1, BLK, BLK, 1);
	vcheck(c1, 1 * MIB, 2 * BLK, 0);
	vcheck(c3, BLK, BLK, 1);
	vcheck(c3, 1 * MIB, 2 * BLK, 2);
	vcheck(c3, 2 * MIB, BLK, 3);
	vcheck(c3, 3 * MIB, BLK, 0);
	{
		struct ts_volume *v;
		uint8_t a[BLK], b[BLK];

		fill(a, BLK, 3);
		cr_assert_eq(ts_volume_open(g_dp.vp, pool_id(c3), &v), 0);
		cr_assert_eq(ts_volume_read_sync(v, 0, BLK, b), 0);
		ts_volume_close(v);
		cr_assert_eq(memcmp(a, b, BLK), 0);
	}
	/* The delta across the deleted snapshot still covers what changed. */
	cr_assert_eq(meta(s[0], s[2], 0, 0, r, 16, &n, &cap, &msgs), 0, "%s", g_msg);
	expect_ranges(r, n,
		      (struct range[]){ { 0, BLK }, { MIB, 2 * BLK }, { 2 * MIB, BLK } }, 3);
	cr_assert_eq(cap, 8 * MIB);
	cr_assert_eq(meta(s[1], s[2], 0, 0, r, 16, &n, &cap, &msgs), 5 /* NOT_FOUND */, "%s",
		     g_msg);
	tfree_all();
}

Test(csi_snapshot, list_snapshots_pages_and_filters)
{
	char a[80], b[80], ids[7][80], name[32];
	Csi__V1__ListSnapshotsRequest r = CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	Csi__V1__ListSnapshotsResponse *resp;
	char token[128] = "";
	bool seen[7] = { false };
	int pages = 0;

	cr_assert_eq(vcreate("pvc-la", 4 * MIB, NULL, a, NULL), 0, "%s", g_msg);
	cr_assert_eq(vcreate("pvc-lb", 4 * MIB, NULL, b, NULL), 0, "%s", g_msg);
	for (int i = 0; i < 7; i++) {
		snprintf(name, sizeof(name), "list-%d", i);
		cr_assert_eq(snap(i < 5 ? a : b, name, ids[i]), 0, "%s", g_msg);
	}
	/* All, two at a time. */
	do {
		r.max_entries = 2;
		r.starting_token = token;
		cr_assert_eq(RPC("Controller/ListSnapshots", &r,
				 &csi__v1__list_snapshots_response__descriptor, &resp), 0, "%s", g_msg);
		cr_assert_leq(resp->n_entries, 2);
		for (size_t i = 0; i < resp->n_entries; i++) {
			int k;

			for (k = 0; k < 7; k++)
				if (!strcmp(ids[k], resp->entries[i]->snapshot->snapshot_id))
					break;
			cr_assert_lt(k, 7, "unknown snapshot %s", resp->entries[i]->snapshot->snapshot_id);
			cr_assert(!seen[k], "listed twice");
			seen[k] = true;
		}
		snprintf(token, sizeof(token), "%s", resp->next_token ? resp->next_token : "");
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		pages++;
		cr_assert_lt(pages, 10);
	} while (token[0]);
	cr_assert_eq(pages, 4);
	for (int k = 0; k < 7; k++)
		cr_assert(seen[k], "snapshot %d not listed", k);

	/* By source volume. */
	r = (Csi__V1__ListSnapshotsRequest)CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	r.source_volume_id = b;
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 2);
	cr_assert_str_eq(resp->entries[0]->snapshot->snapshot_id, ids[5]);
	cr_assert_str_eq(resp->entries[1]->snapshot->source_volume_id, b);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	/* By id, and by id of another volume. */
	r.snapshot_id = ids[6];
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 1);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	r.snapshot_id = ids[0];
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 0);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	/* Unknown and malformed filters list nothing. */
	r = (Csi__V1__ListSnapshotsRequest)CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	r.snapshot_id = "ts-00000000000fffff";
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 0);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	r.snapshot_id = "../x";
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 0);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	/* Bad tokens are ABORTED, negative max_entries INVALID_ARGUMENT. */
	r = (Csi__V1__ListSnapshotsRequest)CSI__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	r.starting_token = "nope";
	cr_assert_eq(RPC("Controller/ListSnapshots", &r, NULL, NULL), 10);
	r.starting_token = "s1:tv-0000000000000001";
	cr_assert_eq(RPC("Controller/ListSnapshots", &r, NULL, NULL), 10);
	r.starting_token = NULL;
	r.max_entries = -1;
	cr_assert_eq(RPC("Controller/ListSnapshots", &r, NULL, NULL), 3);
	/* Deleting a source volume leaves its snapshots listed under it. */
	cr_assert_eq(vdelete(b), 0);
	r.max_entries = 0;
	r.source_volume_id = b;
	cr_assert_eq(RPC("Controller/ListSnapshots", &r,
			 &csi__v1__list_snapshots_response__descriptor, &resp), 0);
	cr_assert_eq(resp->n_entries, 2);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	tfree_all();
}

Test(csi_snapshot, metadata_delta_is_what_was_written_between)
{
	char vol[80], s1[80], s2[80];
	struct range r[64];
	size_t n, msgs;
	int64_t cap = 0;

	cr_assert_eq(vcreate("pvc-cbt", 16 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	vwrite(vol, 0, 4 * BLK, 1);
	vwrite(vol, 5 * MIB, 2 * BLK, 1);
	cr_assert_eq(snap(vol, "cbt-1", s1), 0, "%s", g_msg);
	vwrite(vol, 2 * BLK, 4 * BLK, 2);  /* overlaps the end of the first write */
	vwrite(vol, 8 * MIB, 16 * BLK, 2);
	vwrite(vol, 12 * MIB, BLK, 2);
	cr_assert_eq(snap(vol, "cbt-2", s2), 0, "%s", g_msg);
	vwrite(vol, 14 * MIB, BLK, 3); /* after s2: in neither */

	/* Allocated of s1: what was written before it. */
	cr_assert_eq(meta(NULL, s1, 0, 0, r, 64, &n, &cap, &msgs), 0, "%s", g_msg);
	expect_ranges(r, n, (struct range[]){ { 0, 4 * BLK }, { 5 * MIB, 2 * BLK } }, 2);
	cr_assert_eq(cap, 16 * MIB);
	cr_assert_eq(msgs, 1);

	/* Delta s1 -> s2: what was written between. */
	const struct range want[] = { { 2 * BLK, 4 * BLK }, { 8 * MIB, 16 * BLK }, { 12 * MIB, BLK } };
	cr_assert_eq(meta(s1, s2, 0, 0, r, 64, &n, &cap, &msgs), 0, "%s", g_msg);
	expect_ranges(r, n, want, 3);

	/* One range per message: the same ranges over three messages. */
	cr_assert_eq(meta(s1, s2, 0, 1, r, 64, &n, &cap, &msgs), 0, "%s", g_msg);
	expect_ranges(r, n, want, 3);
	cr_assert_eq(msgs, 3);

	/* starting_offset inside the second range: it is returned (it ends after the start). */
	cr_assert_eq(meta(s1, s2, 8 * MIB + 5 * BLK + 100, 0, r, 64, &n, &cap, &msgs), 0, "%s",
		     g_msg);
	cr_assert_eq(n, 2);
	cr_assert_gt(r[0].off + r[0].len, 8 * MIB + 5 * BLK + 100);
	cr_assert_leq(r[0].off, 8 * MIB + 5 * BLK + 100);
	cr_assert_eq(r[0].off + r[0].len, 8 * MIB + 16 * BLK);
	cr_assert_eq(r[1].off, 12 * MIB);

	/* At the end: one message, no ranges, the capacity. */
	cr_assert_eq(meta(s1, s2, 16 * MIB, 0, r, 64, &n, &cap, &msgs), 0, "%s", g_msg);
	cr_assert_eq(n, 0);
	cr_assert_eq(msgs, 1);
	cr_assert_eq(cap, 16 * MIB);

	/* Allocated of s2 is the union of both. */
	cr_assert_eq(meta(NULL, s2, 0, 2, r, 64, &n, &cap, &msgs), 0, "%s", g_msg);
	expect_ranges(r, n,
		      (struct range[]){ { 0, 6 * BLK },
					{ 5 * MIB, 2 * BLK },
					{ 8 * MIB, 16 * BLK },
					{ 12 * MIB, BLK } },
		      4);
	cr_assert_eq(msgs, 2);
	tfree_all();
}

Test(csi_snapshot, bad_input)
{
	char vol[80], s1[80], id[80];
	struct range r[4];
	size_t n, msgs;
	int64_t cap;

	cr_assert_eq(vcreate("pvc-bad", 8 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	cr_assert_eq(snap(vol, "bad-1", s1), 0, "%s", g_msg);

	/* CreateSnapshot */
	cr_assert_eq(snap(vol, "", id), 3, "empty name");
	cr_assert_eq(snap("", "x", id), 3, "empty source");
	cr_assert_eq(snap("tv-00000000000fffff", "x", id), 5, "unknown volume: %s", g_msg);
	cr_assert_eq(snap("../etc", "x", id), 3);
	{
		char other[80];

		cr_assert_eq(vcreate("pvc-bad-2", 8 * MIB, NULL, other, NULL), 0, "%s", g_msg);
		cr_assert_eq(snap(other, "bad-1", id), 6, "same name, other source: %s", g_msg);
	}
	{
		Csi__V1__CreateSnapshotRequest sr = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
		Csi__V1__CreateSnapshotRequest__ParametersEntry pe =
			CSI__V1__CREATE_SNAPSHOT_REQUEST__PARAMETERS_ENTRY__INIT;
		Csi__V1__CreateSnapshotRequest__ParametersEntry *pes[1] = { &pe };

		sr.source_volume_id = vol;
		sr.name = "bad-param";
		pe.key = "colour";
		pe.value = "blue";
		sr.parameters = pes;
		sr.n_parameters = 1;
		cr_assert_eq(RPC("Controller/CreateSnapshot", &sr, NULL, NULL), 3);
	}
	/* DeleteSnapshot */
	cr_assert_eq(snap_delete(""), 3);
	cr_assert_eq(snap_delete("ts-00000000000fffff"), 0);
	cr_assert_eq(snap_delete("garbage"), 0);

	/* CreateVolume from a source */
	cr_assert_eq(vcreate("c-1", 0, "ts-00000000000fffff", id, NULL), 5, "%s", g_msg);
	cr_assert_eq(vcreate("c-2", 0, "tv-00000000000fffff", id, NULL), 5, "%s", g_msg);
	cr_assert_eq(vcreate("c-3", 0, "ts-garbage", id, NULL), 5, "%s", g_msg);
	cr_assert_eq(vcreate("c-4", 4 * MIB, s1, id, NULL), 11, "smaller than the source: %s",
		     g_msg);
	cr_assert_eq(vcreate("c-5", 4 * MIB, vol, id, NULL), 11, "%s", g_msg);
	{
		Csi__V1__CreateVolumeRequest cr = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
		Csi__V1__VolumeCapability *caps[1] = { tcap_block() };
		Csi__V1__VolumeContentSource cs = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;

		cr.name = "c-6";
		cr.volume_capabilities = caps;
		cr.n_volume_capabilities = 1;
		cr.volume_content_source = &cs; /* neither snapshot nor volume */
		cr_assert_eq(RPC("Controller/CreateVolume", &cr, NULL, NULL), 3);
	}
	/* A name is bound to its content source: same name, other source = ALREADY_EXISTS. */
	cr_assert_eq(vcreate("c-7", 0, s1, id, NULL), 0, "%s", g_msg);
	cr_assert_eq(vcreate("c-7", 0, s1, id, NULL), 0, "same request again: %s", g_msg);
	cr_assert_eq(vcreate("c-7", 0, vol, id, NULL), 6, "%s", g_msg);
	cr_assert_eq(vcreate("c-7", 8 * MIB, NULL, id, NULL), 6, "%s", g_msg);
	cr_assert_eq(vcreate("pvc-bad", 8 * MIB, s1, id, NULL), 6, "%s", g_msg);
	/* ListVolumes reports the content source from the record. */
	{
		Csi__V1__ListVolumesRequest lr = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
		Csi__V1__ListVolumesResponse *lresp;
		bool found = false;

		cr_assert_eq(RPC("Controller/ListVolumes", &lr,
				 &csi__v1__list_volumes_response__descriptor, &lresp), 0);
		for (size_t i = 0; i < lresp->n_entries; i++) {
			const Csi__V1__Volume *lv = lresp->entries[i]->volume;

			if (strcmp(lv->volume_id, id))
				continue;
			found = true;
			cr_assert_not_null(lv->content_source);
			cr_assert_eq(lv->content_source->type_case,
				     CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT);
			cr_assert_str_eq(lv->content_source->snapshot->snapshot_id, s1);
		}
		protobuf_c_message_free_unpacked(&lresp->base, NULL);
		cr_assert(found);
	}
	/* Nothing was left behind by the failures. */
	{
		uint64_t found;

		cr_assert_eq(ts_chain_volume_find(g_dp.vp, "c-4", &found), -ENOENT);
		cr_assert_eq(ts_chain_volume_find(g_dp.vp, "c-1", &found), -ENOENT);
	}

	/* SnapshotMetadata */
	cr_assert_eq(meta(NULL, "ts-00000000000fffff", 0, 0, r, 4, &n, &cap, &msgs), 5, "%s",
		     g_msg);
	cr_assert_eq(msgs, 0);
	cr_assert_eq(meta(NULL, "", 0, 0, r, 4, &n, &cap, &msgs), 3);
	cr_assert_eq(meta(NULL, s1, -1, 0, r, 4, &n, &cap, &msgs), 11, "negative offset");
	cr_assert_eq(meta(NULL, s1, 8 * MIB + 1, 0, r, 4, &n, &cap, &msgs), 11, "beyond the end");
	cr_assert_eq(msgs, 0);
	cr_assert_eq(meta(NULL, s1, 0, -1, r, 4, &n, &cap, &msgs), 3, "negative max_results");
	cr_assert_eq(meta("", s1, 0, 0, r, 4, &n, &cap, &msgs), 3, "empty base");
	cr_assert_eq(meta(s1, "", 0, 0, r, 4, &n, &cap, &msgs), 3, "empty target");
	cr_assert_eq(meta("ts-00000000000fffff", s1, 0, 0, r, 4, &n, &cap, &msgs), 5);
	cr_assert_eq(meta(s1, vol, 0, 0, r, 4, &n, &cap, &msgs), 5, "a volume is no snapshot");
	cr_assert_eq(meta(s1, s1, 0, 0, r, 4, &n, &cap, &msgs), 0, "%s", g_msg);
	cr_assert_eq(n, 0);
	tfree_all();
}

/* A client that reads one message of a long stream and cancels: the server
 * ends the stream (CANCELLED), frees it, and keeps serving. */
Test(csi_snapshot, stream_cancelled_by_the_client)
{
	char vol[80], s1[80];
	struct range r[600];
	size_t n, msgs;
	int64_t cap;

	cr_assert_eq(vcreate("pvc-many", 8 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
	for (int i = 0; i < 256; i++)
		vwrite(vol, (uint64_t)i * 2 * BLK, BLK, (uint32_t)i + 1); /* 256 separate ranges */
	cr_assert_eq(snap(vol, "many", s1), 0, "%s", g_msg);

	for (int round = 0; round < 3; round++) {
		Csi__V1__GetMetadataAllocatedRequest req = CSI__V1__GET_METADATA_ALLOCATED_REQUEST__INIT;
		void **resps;
		size_t got;
		int status;

		req.snapshot_id = s1;
		req.max_results = 1;
		status = gc_stream_max(g_dp.ch, "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
				       &req.base,
				       &csi__v1__get_metadata_allocated_response__descriptor, &resps,
				       &got, 1, -1, g_msg, sizeof(g_msg));
		cr_assert_eq(got, 1, "no first message");
		cr_assert_eq(status, 1 /* CANCELLED */, "%d: %s", status, g_msg);
		for (size_t k = 0; k < got; k++)
			protobuf_c_message_free_unpacked(resps[k], NULL);
		free(resps);
	}
	/* The server still streams the whole thing to a patient client. */
	cr_assert_eq(meta(NULL, s1, 0, 1, r, 600, &n, &cap, &msgs), 0, "%s", g_msg);
	cr_assert_eq(n, 256);
	cr_assert_eq(msgs, 256);
	for (size_t i = 0; i < n; i++)
		cr_assert(r[i].off == (int64_t)i * 2 * BLK && r[i].len == BLK, "range %zu", i);
	/* Default page size: 256 ranges in one message. */
	cr_assert_eq(meta(NULL, s1, 0, 0, r, 600, &n, &cap, &msgs), 0, "%s", g_msg);
	cr_assert_eq(n, 256);
	cr_assert_eq(msgs, 1);
	tfree_all();
}

/* The stream cycle on its own: undecodable bytes, and a backend without snap_delta. */
Test(csi_snapshot, stream_cycle_rejects_bad_bytes_and_missing_ops)
{
	static const uint8_t bad[] = { 0x0a, 0x64, 0x41, 0x41 }; /* length 100, 2 bytes present */
	struct csi_stream *st;
	struct tenv fe;
	const char *msg;
	uint8_t *buf;
	size_t len;

	st = csi_stream_open(g_dp.d, &csi_snapmeta_methods[0], bad, sizeof(bad), NULL, 0);
	cr_assert_not_null(st);
	cr_assert_eq(csi_stream_next(st, &buf, &len), -1);
	cr_assert_null(buf);
	cr_assert_eq(csi_stream_status(st, &msg), 3, "%s", msg);
	csi_stream_close(st);

	tenv_init(&fe, NULL, NULL, 64 * MIB);
	for (size_t i = 0; i < csi_snapmeta_method_count; i++) {
		st = csi_stream_open(fe.d, &csi_snapmeta_methods[i], NULL, 0, NULL, 0);
		cr_assert_not_null(st);
		cr_assert_eq(csi_stream_next(st, &buf, &len), -1);
		cr_assert_eq(csi_stream_status(st, &msg), 12, "%s", msg);
		csi_stream_close(st);
	}
	tenv_fini(&fe);
	csi_stream_close(NULL);

	/* Mutated requests of both methods: every stream ends with a known code. */
	{
		char vol[80], s1[80], s2[80];
		Csi__V1__GetMetadataDeltaRequest dr = CSI__V1__GET_METADATA_DELTA_REQUEST__INIT;
		uint8_t base[256], req[256];
		size_t blen;
		unsigned seed = 12345, ok = 0, failed = 0;

		cr_assert_eq(vcreate("pvc-fz", 4 * MIB, NULL, vol, NULL), 0, "%s", g_msg);
		vwrite(vol, 0, BLK, 1);
		cr_assert_eq(snap(vol, "fz-1", s1), 0, "%s", g_msg);
		vwrite(vol, MIB, BLK, 2);
		cr_assert_eq(snap(vol, "fz-2", s2), 0, "%s", g_msg);
		dr.base_snapshot_id = s1;
		dr.target_snapshot_id = s2;
		dr.starting_offset = 4096;
		dr.max_results = 1;
		blen = protobuf_c_message_pack(&dr.base, base);
		for (int it = 0; it < 3000; it++) {
			size_t rlen = blen;
			int code, rc;

			memcpy(req, base, blen);
			for (int k = 0; k < 1 + it % 4; k++) {
				seed = seed * 1103515245u + 12345u;
				req[(seed >> 8) % blen] = (uint8_t)(seed >> 16);
			}
			if (it % 7 == 0)
				rlen = (seed >> 4) % (blen + 1);
			st = csi_stream_open(g_dp.d, &csi_snapmeta_methods[it % 2], req, rlen, NULL, 0);
			cr_assert_not_null(st);
			for (int m = 0; m < 100 && (rc = csi_stream_next(st, &buf, &len)) == 1; m++)
				ts_free(buf);
			code = csi_stream_status(st, &msg);
			cr_assert(code == 0 || code == 3 || code == 5 || code == 11, "code %d: %s", code,
				  msg);
			ok += code == 0;
			failed += code != 0;
			csi_stream_close(st);
		}
		cr_assert(ok > 0 && failed > 0, "ok %u failed %u: the mutations explore too little",
			  ok, failed);
	}
	tfree_all();
}
