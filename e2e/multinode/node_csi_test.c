/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CSI Node service of `tessera node --csi-endpoint` (node_csi.sh starts
 * three nodes, node 1 with the endpoint, and `tessera controller --engines
 * nodes`): what kubelet does on a host of the chart's DaemonSet, over gRPC
 * on the real sockets. The volume is created through the controller; the
 * node stages it by its attach context (the user-space iSCSI initiator
 * logging in at the volume's URL) and publishes it.
 *
 *  - NodeGetInfo reports the name given (the Kubernetes node name) and the
 *    per-node volume limit;
 *  - a Block volume: stage, publish, 256 stamped 4 KiB blocks written
 *    through the published device; stage and publish again are idempotent;
 *    unpublish, unstage; staged and published again, every block reads back;
 *  - a Mount volume (ext4): a file written, the volume unstaged, staged
 *    again, the file reads back;
 *  - the node endpoint serves no Controller service, and a stage without
 *    the attach context is INVALID_ARGUMENT.
 *
 * Environment (from node_csi.sh): TS_CTL_CSI, TS_NODE_CSI (unix:// endpoints),
 * TS_NODE_NAME, TS_WORK (a scratch directory). Needs root (FUSE, loop
 * devices, mounts).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "csi.pb-c.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"

#define BLK 4096
#define NBLK 256

static struct ts_client *g_ctl, *g_node;
static char g_msg[1024];

static const char *env(const char *name)
{
	const char *v = getenv(name);

	cr_assert(v && v[0], "%s is not set: run through node_csi.sh", name);
	return v;
}

static void setup(void)
{
	g_ctl = gc_connect(env("TS_CTL_CSI"));
	g_node = gc_connect(env("TS_NODE_CSI"));
	cr_assert(g_ctl && g_node);
}

static void teardown(void)
{
	gc_close(g_ctl);
	gc_close(g_node);
	tfree_all();
}

TestSuite(node_csi, .init = setup, .fini = teardown, .timeout = 240);

static int call(struct ts_client *c, const char *method, const void *req,
		const ProtobufCMessageDescriptor *desc, void **resp)
{
	return gc_call(c, method, req, desc, resp, 60000, g_msg, sizeof(g_msg));
}

static Csi__V1__Volume *create(const char *name, int64_t bytes, Csi__V1__VolumeCapability *cap,
			       Csi__V1__CreateVolumeResponse **keep)
{
	Csi__V1__CreateVolumeRequest *r = tcreate_req(name, bytes, cap, NULL, NULL);

	cr_assert_eq(call(g_ctl, "/csi.v1.Controller/CreateVolume", r,
			  &csi__v1__create_volume_response__descriptor, (void **)keep),
		     0, "CreateVolume %s: %s", name, g_msg);
	return (*keep)->volume;
}

static void path_in(char *out, size_t len, const char *name, bool dir)
{
	snprintf(out, len, "%s/%s", env("TS_WORK"), name);
	if (dir)
		cr_assert(mkdir(out, 0750) == 0 || errno == EEXIST, "%s: %s", out, strerror(errno));
}

static void stage(const Csi__V1__Volume *v, const char *staging, Csi__V1__VolumeCapability *c)
{
	Csi__V1__NodeStageVolumeRequest r = tstage_req(v, staging, c);

	cr_assert_eq(call(g_node, "/csi.v1.Node/NodeStageVolume", &r, NULL, NULL), 0, "stage: %s",
		     g_msg);
}

static void publish(const Csi__V1__Volume *v, const char *staging, const char *target,
		    Csi__V1__VolumeCapability *c)
{
	Csi__V1__NodePublishVolumeRequest r = tpublish_req(v, staging, target, c, false);

	cr_assert_eq(call(g_node, "/csi.v1.Node/NodePublishVolume", &r, NULL, NULL), 0,
		     "publish: %s", g_msg);
}

static void release(const Csi__V1__Volume *v, const char *staging, const char *target)
{
	Csi__V1__NodeUnpublishVolumeRequest u = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnstageVolumeRequest s = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;

	u.volume_id = s.volume_id = v->volume_id;
	u.target_path = (char *)target;
	s.staging_target_path = (char *)staging;
	cr_assert_eq(call(g_node, "/csi.v1.Node/NodeUnpublishVolume", &u, NULL, NULL), 0,
		     "unpublish: %s", g_msg);
	cr_assert_eq(call(g_node, "/csi.v1.Node/NodeUnstageVolume", &s, NULL, NULL), 0,
		     "unstage: %s", g_msg);
}

static void stamp(uint8_t *b, unsigned i)
{
	for (unsigned j = 0; j < BLK; j += 4) {
		uint32_t w = (i * 2654435761u) ^ j;

		memcpy(b + j, &w, 4);
	}
}

Test(node_csi, info_block_and_mount_volumes)
{
	Csi__V1__NodeGetInfoRequest ni = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
	Csi__V1__NodeGetInfoResponse *info;
	Csi__V1__CreateVolumeResponse *bk, *fk;
	Csi__V1__Volume *bv, *fv;
	char staging[300], target[300], fstaging[300], ftarget[300], file[400];
	static uint8_t buf[BLK], want[BLK];
	int fd;

	cr_assert_eq(call(g_node, "/csi.v1.Node/NodeGetInfo", &ni,
			  &csi__v1__node_get_info_response__descriptor, (void **)&info),
		     0, "%s", g_msg);
	cr_assert_str_eq(info->node_id, env("TS_NODE_NAME"));
	cr_assert_eq(info->max_volumes_per_node, 64);
	protobuf_c_message_free_unpacked(&info->base, NULL);

	/* a Block volume */
	bv = create("nc-block", 16 << 20, tcap_block(), &bk);
	path_in(staging, sizeof(staging), "staging-b", true);
	path_in(target, sizeof(target), "target-b", false);
	stage(bv, staging, tcap_block());
	stage(bv, staging, tcap_block()); /* kubelet retries: idempotent */
	publish(bv, staging, target, tcap_block());
	publish(bv, staging, target, tcap_block());
	fd = open(target, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", target, strerror(errno));
	for (unsigned i = 0; i < NBLK; i++) {
		stamp(buf, i);
		cr_assert_eq(pwrite(fd, buf, BLK, (off_t)i * BLK * 15), BLK, "block %u", i);
	}
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	release(bv, staging, target);
	cr_assert_neq(access(target, F_OK), 0, "the target is gone after unpublish");
	stage(bv, staging, tcap_block());
	publish(bv, staging, target, tcap_block());
	fd = open(target, O_RDONLY);
	cr_assert_geq(fd, 0);
	for (unsigned i = 0; i < NBLK; i++) {
		stamp(want, i);
		cr_assert_eq(pread(fd, buf, BLK, (off_t)i * BLK * 15), BLK);
		cr_assert_eq(memcmp(buf, want, BLK), 0, "block %u differs after re-stage", i);
	}
	close(fd);
	release(bv, staging, target);

	/* a Mount volume */
	fv = create("nc-fs", 32 << 20, tcap_mount("ext4"), &fk);
	path_in(fstaging, sizeof(fstaging), "staging-f", true);
	path_in(ftarget, sizeof(ftarget), "target-f", true);
	stage(fv, fstaging, tcap_mount("ext4"));
	publish(fv, fstaging, ftarget, tcap_mount("ext4"));
	snprintf(file, sizeof(file), "%s/hello", ftarget);
	FILE *f = fopen(file, "w");

	cr_assert_not_null(f, "%s: %s", file, strerror(errno));
	cr_assert_gt(fprintf(f, "written through node 1's CSI Node service\n"), 0);
	cr_assert_eq(fflush(f), 0);
	cr_assert_eq(fsync(fileno(f)), 0);
	fclose(f);
	release(fv, fstaging, ftarget);
	stage(fv, fstaging, tcap_mount("ext4"));
	publish(fv, fstaging, ftarget, tcap_mount("ext4"));
	f = fopen(file, "r");
	cr_assert_not_null(f, "the file is gone after re-stage");
	cr_assert_not_null(fgets((char *)buf, sizeof(buf), f));
	fclose(f);
	cr_assert_str_eq((char *)buf, "written through node 1's CSI Node service\n");
	release(fv, fstaging, ftarget);
	protobuf_c_message_free_unpacked(&bk->base, NULL);
	protobuf_c_message_free_unpacked(&fk->base, NULL);
}

Test(node_csi, refuses_what_it_does_not_serve)
{
	Csi__V1__CreateVolumeRequest *cr = tcreate_req("nc-no", 1 << 20, tcap_block(), NULL, NULL);
	Csi__V1__Volume v = CSI__V1__VOLUME__INIT;
	char staging[300];
	int code;

	code = call(g_node, "/csi.v1.Controller/CreateVolume", cr, NULL, NULL);
	cr_assert_eq(code, 12, "CreateVolume on a node endpoint: %d %s", code, g_msg); /* UNIMPLEMENTED */
	v.volume_id = "vol-without-context";
	path_in(staging, sizeof(staging), "staging-x", true);
	Csi__V1__NodeStageVolumeRequest r = tstage_req(&v, staging, tcap_block());

	cr_assert_eq(call(g_node, "/csi.v1.Node/NodeStageVolume", &r, NULL, NULL), 3, "%s", g_msg);
}
