/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The whole stack behind CSI, in one process, driven over gRPC: the
 * production assembly of `tessera dev` (unit/support/cluster: three node
 * daemons with file disks and their own iSCSI targets, a 4+2 array group over
 * them through user-mode iSCSI, thin volumes on it, Tessera's iSCSI target on
 * a free loopback port, the data-plane backend), and the node side attaching
 * through libiscsi -> FUSE -> loop device.
 *
 * Filesystem: create, stage (mkfs + mount), publish, write files, unpublish,
 * unstage, stage again, read back; expand (controller + node) grows the
 * filesystem. Block: a byte pattern written through the published device is
 * found in the pool volume itself (read straight from the data plane), and
 * survives unstage/restage. Delete removes the volume from the pool and its
 * target from the portal. A portal that cannot be reached makes
 * NodeStageVolume say so (UNAVAILABLE, target + portal + reason). Needs
 * root (FUSE, loop devices, mounts).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <linux/fs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "csi/backend/backend_dataplane.h"
#include "csi/csi.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"
#include "snapshots/chain/chain.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"
#include "unit/support/cluster/cluster_fixture.h"

static struct dpenv g_dp;
static char g_msg[512];
static Csi__V1__CreateVolumeResponse *g_created[4];
static int g_ncreated;

#define RPC(method, req, desc, resp)                                                        \
	gc_call(g_dp.ch, "/csi.v1." method, req, desc, (void **)(resp), 60000, g_msg, sizeof(g_msg))

static void setup(void)
{
	dpenv_init(&g_dp, "dp");
}

static void teardown(void)
{
	dpenv_fini(&g_dp);
	while (g_ncreated)
		protobuf_c_message_free_unpacked(&g_created[--g_ncreated]->base, NULL);
}

TestSuite(csi_dataplane, .init = setup, .fini = teardown, .timeout = 240);

static Csi__V1__Volume *create(const char *name, int64_t bytes, Csi__V1__VolumeCapability *cap)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { cap };
	Csi__V1__CreateVolumeResponse *resp;

	r.name = (char *)name;
	cr.required_bytes = bytes;
	r.capacity_range = &cr;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	cr_assert_eq(RPC("Controller/CreateVolume", &r,
			 &csi__v1__create_volume_response__descriptor, &resp), 0, "%s", g_msg);
	cr_assert_lt(g_ncreated, 4);
	g_created[g_ncreated++] = resp;
	return resp->volume;
}

static void stage(const Csi__V1__Volume *v, const char *staging, Csi__V1__VolumeCapability *cap)
{
	Csi__V1__NodeStageVolumeRequest r = tstage_req(v, staging, cap);

	cr_assert_eq(RPC("Node/NodeStageVolume", &r, NULL, NULL), 0, "stage: %s", g_msg);
}

static void unstage(const Csi__V1__Volume *v, const char *staging)
{
	Csi__V1__NodeUnstageVolumeRequest r = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	r.staging_target_path = (char *)staging;
	cr_assert_eq(RPC("Node/NodeUnstageVolume", &r, NULL, NULL), 0, "unstage: %s", g_msg);
}

static void publish(const Csi__V1__Volume *v, const char *staging, const char *target,
		    Csi__V1__VolumeCapability *cap)
{
	Csi__V1__NodePublishVolumeRequest r = tpublish_req(v, staging, target, cap, false);

	cr_assert_eq(RPC("Node/NodePublishVolume", &r, NULL, NULL), 0, "publish: %s", g_msg);
}

static void unpublish(const Csi__V1__Volume *v, const char *target)
{
	Csi__V1__NodeUnpublishVolumeRequest r = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	r.target_path = (char *)target;
	cr_assert_eq(RPC("Node/NodeUnpublishVolume", &r, NULL, NULL), 0, "unpublish: %s", g_msg);
}

static void delete_vol(const Csi__V1__Volume *v)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	cr_assert_eq(RPC("Controller/DeleteVolume", &r, NULL, NULL), 0, "%s", g_msg);
	cr_assert_eq(RPC("Controller/DeleteVolume", &r, NULL, NULL), 0, "again: %s", g_msg);
}

static uint64_t pool_vol_id(const Csi__V1__Volume *v)
{
	cr_assert_eq(strncmp(v->volume_id, "tv-", 3), 0, "id %s", v->volume_id);
	return strtoull(v->volume_id + 3, NULL, 16);
}

static void pattern(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 131 + seed * 7 + (i >> 12)) & 0xff);
}

Test(csi_dataplane, filesystem_volume_round_trip_through_the_data_plane)
{
	Csi__V1__VolumeCapability *cap = tcap_mount("ext4");
	char staging[400], target[400], file[500];
	static uint8_t data[1 << 20], back[(1 << 20) + 1];
	struct statvfs sv1, sv2;
	const Csi__V1__Volume *v;

	v = create("pvc-fs-1", 64 << 20, cap);
	cr_assert_eq(strncmp(v->volume_context[0]->value, "iscsi://127.0.0.1:", 18), 0,
		     "attach context %s", v->volume_context[0]->value);
	snprintf(staging, sizeof(staging), "%s/staging", g_dp.dir);
	snprintf(target, sizeof(target), "%s/target", g_dp.dir);
	mkdir(staging, 0750);
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	pattern(data, sizeof(data), 1);
	snprintf(file, sizeof(file), "%s/data.bin", target);
	int fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, data, sizeof(data)), (ssize_t)sizeof(data));
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	cr_assert_eq(statvfs(target, &sv1), 0);
	unpublish(v, target);
	unstage(v, staging);

	/* Nothing cached on the node survives unstage: read it back fresh. */
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	fd = open(file, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(read(fd, back, sizeof(back)), (ssize_t)sizeof(data));
	close(fd);
	cr_assert_eq(memcmp(data, back, sizeof(data)), 0);

	/* Online expansion: controller grows the volume, node grows ext4. */
	{
		Csi__V1__ControllerExpandVolumeRequest cr = CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
		Csi__V1__ControllerExpandVolumeResponse *cresp;
		Csi__V1__CapacityRange range = CSI__V1__CAPACITY_RANGE__INIT;
		Csi__V1__NodeExpandVolumeRequest nr = CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
		Csi__V1__NodeExpandVolumeResponse *nresp;

		range.required_bytes = 128 << 20;
		cr.volume_id = v->volume_id;
		cr.capacity_range = &range;
		cr_assert_eq(RPC("Controller/ControllerExpandVolume", &cr,
				 &csi__v1__controller_expand_volume_response__descriptor, &cresp),
			     0, "%s", g_msg);
		cr_assert_geq(cresp->capacity_bytes, 128 << 20);
		protobuf_c_message_free_unpacked(&cresp->base, NULL);
		nr.volume_id = v->volume_id;
		nr.volume_path = target;
		nr.staging_target_path = staging;
		nr.capacity_range = &range;
		nr.volume_capability = cap;
		int code = RPC("Node/NodeExpandVolume", &nr,
			       &csi__v1__node_expand_volume_response__descriptor, &nresp);
		if (code == 0) {
			protobuf_c_message_free_unpacked(&nresp->base, NULL);
		} else {
			/* ext4 online growth needs CAP_SYS_RESOURCE; then it grows at restage. */
			cr_assert_eq(code, 9, "node expand: %d %s", code, g_msg);
			unpublish(v, target);
			unstage(v, staging);
			stage(v, staging, cap);
			publish(v, staging, target, cap);
		}
		cr_assert_eq(statvfs(target, &sv2), 0);
		cr_assert_gt((uint64_t)sv2.f_blocks * sv2.f_frsize,
			     (uint64_t)sv1.f_blocks * sv1.f_frsize + (32ull << 20),
			     "filesystem did not grow");
	}
	unpublish(v, target);
	unstage(v, staging);
	uint64_t id = pool_vol_id(v), found;
	struct ts_vpool_volume_info info;
	cr_assert_eq(ts_vpool_volume_info(g_dp.vp, id, &info), 0);
	cr_assert_eq(info.size, 128 << 20);
	delete_vol(v);
	cr_assert_eq(ts_vpool_volume_info(g_dp.vp, id, &info), -ENOENT);
	cr_assert_eq(ts_chain_volume_find(g_dp.vp, "pvc-fs-1", &found), -ENOENT);
	tfree_all();
}

Test(csi_dataplane, block_volume_pattern_lands_in_the_pool)
{
	Csi__V1__VolumeCapability *cap = tcap_block();
	char staging[400], target[400];
	static uint8_t data[3 << 20], back[3 << 20];
	const Csi__V1__Volume *v;
	struct ts_volume *vol;

	v = create("pvc-block-1", 32 << 20, cap);
	snprintf(staging, sizeof(staging), "%s/bstaging", g_dp.dir);
	snprintf(target, sizeof(target), "%s/btarget", g_dp.dir);
	mkdir(staging, 0750);
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	pattern(data, sizeof(data), 9);
	int fd = open(target, O_WRONLY);
	cr_assert_geq(fd, 0, "%s: %s", target, strerror(errno));
	uint64_t devsize = 0;
	cr_assert_eq(ioctl(fd, BLKGETSIZE64, &devsize), 0);
	cr_assert_eq(devsize, 32 << 20);
	cr_assert_eq(pwrite(fd, data, sizeof(data), 5 << 20), (ssize_t)sizeof(data));
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	unpublish(v, target);
	unstage(v, staging);

	/* The bytes are in the pool volume, read straight from the data plane. */
	cr_assert_eq(ts_volume_open(g_dp.vp, pool_vol_id(v), &vol), 0);
	cr_assert_eq(ts_volume_read_sync(vol, 5 << 20, sizeof(back), back), 0);
	ts_volume_close(vol);
	cr_assert_eq(memcmp(data, back, sizeof(data)), 0);

	/* And through a fresh attach. */
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	fd = open(target, O_RDONLY);
	cr_assert_geq(fd, 0);
	memset(back, 0, sizeof(back));
	cr_assert_eq(pread(fd, back, sizeof(back), 5 << 20), (ssize_t)sizeof(back));
	close(fd);
	cr_assert_eq(memcmp(data, back, sizeof(data)), 0);
	unpublish(v, target);
	unstage(v, staging);
	delete_vol(v);
	tfree_all();
}

static void read_file_is(const char *path, const char *want)
{
	char got[64] = "";
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "%s: %s (the staging path was handed out empty)", path,
		      strerror(errno));
	cr_assert_gt(read(fd, got, sizeof(got) - 1), 0);
	close(fd);
	cr_assert_str_eq(got, want);
}

/*
 * A failed unstage (kubelet's case: a container's mount namespace still held a
 * copy of the mount, so the device stayed busy after the unmount) must not leave
 * the record pointing at an empty directory: the next stage, or a publish the CO
 * makes without staging again, mounts the still-attached device there again, and
 * the Pod finds its data (it once found an empty /data and no file).
 */
Test(csi_dataplane, failed_unstage_leaves_no_empty_staging_path)
{
	Csi__V1__VolumeCapability *cap = tcap_mount("ext4");
	Csi__V1__NodeUnstageVolumeRequest ur = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
	char staging[400], target[400], file[500];
	const Csi__V1__Volume *v;
	int hold[2], fd, status;
	pid_t child;
	char c;

	v = create("pvc-fs-busy", 32 << 20, cap);
	snprintf(staging, sizeof(staging), "%s/busy-staging", g_dp.dir);
	snprintf(target, sizeof(target), "%s/busy-target", g_dp.dir);
	snprintf(file, sizeof(file), "%s/f", target);
	mkdir(staging, 0750);
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "busy-data", 9), 9);
	cr_assert_eq(fsync(fd), 0);
	close(fd);

	/* A child in its own mount namespace keeps a copy of the mounts. */
	cr_assert_eq(pipe(hold), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(hold[1]);
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			_exit(1);
		(void)!read(hold[0], &c, 1); /* until the parent closes its end */
		_exit(0);
	}
	close(hold[0]);
	/* Wait until the child's namespace exists (its mountinfo differs from ours). */
	for (int i = 0; i < 200; i++) {
		char ns_child[64], ns_self[64], p[64];
		ssize_t a, b;

		snprintf(p, sizeof(p), "/proc/%d/ns/mnt", (int)child);
		a = readlink(p, ns_child, sizeof(ns_child) - 1);
		b = readlink("/proc/self/ns/mnt", ns_self, sizeof(ns_self) - 1);
		if (a > 0 && b > 0 && (a != b || memcmp(ns_child, ns_self, (size_t)a)))
			break;
		usleep(10000);
	}

	unpublish(v, target);
	ur.volume_id = v->volume_id;
	ur.staging_target_path = staging;
	cr_assert_eq(RPC("Node/NodeUnstageVolume", &ur, NULL, NULL), 9 /* FAILED_PRECONDITION */,
		     "unstage with the device held elsewhere: %s", g_msg);
	cr_assert(strstr(g_msg, "busy"), "%s", g_msg);

	/* Publish without a new stage (kubelet still counts it staged). */
	publish(v, staging, target, cap);
	read_file_is(file, "busy-data");
	unpublish(v, target);

	/* A stage again, then publish. */
	stage(v, staging, cap);
	publish(v, staging, target, cap);
	read_file_is(file, "busy-data");
	unpublish(v, target);

	/* The holder gone, the unstage completes. (With it still there, a second
	 * unstage may already succeed: the kernel can drop the device's claim once a
	 * second mount of the same superblock is unmounted; the holder's copy then
	 * fails its IO, which is why unstage flushes before it unmounts.) */
	close(hold[1]);
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	unstage(v, staging);
	delete_vol(v);
	tfree_all();
}

/*
 * The data plane's portal cannot be reached (here: the volume's attach URL
 * points at a loopback port nothing listens on, as when the data plane is
 * down): NodeStageVolume answers UNAVAILABLE and names the target, the
 * portal and the reason, never the CHAP secret in the URL; it leaves nothing
 * staged, and the same stage succeeds once the portal is the live one.
 */
Test(csi_dataplane, stage_with_unreachable_target_says_so)
{
	Csi__V1__VolumeCapability *cap = tcap_mount("ext4");
	Csi__V1__NodeStageVolumeRequest r = CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry e =
		CSI__V1__NODE_STAGE_VOLUME_REQUEST__VOLUME_CONTEXT_ENTRY__INIT;
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry *ctx[1] = { &e };
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	char staging[400], url[512], want[300];
	const char *iqn;
	const Csi__V1__Volume *v;
	int fd;

	v = create("pvc-unreachable", 16 << 20, cap);
	cr_assert_eq(strcmp(v->volume_context[0]->key, "csi.tessera.io/attach"), 0);
	iqn = strchr(v->volume_context[0]->value + 8, '/');
	cr_assert_not_null(iqn);
	/* A port that is bound but not listening: every connect to it is refused. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "iscsi://node1%%s3cr3t@127.0.0.1:%d%s", ntohs(a.sin_port), iqn);
	e.key = "csi.tessera.io/attach";
	e.value = url;
	snprintf(staging, sizeof(staging), "%s/staging", g_dp.dir);
	mkdir(staging, 0750);
	r.volume_id = v->volume_id;
	r.staging_target_path = staging;
	r.volume_capability = cap;
	r.volume_context = ctx;
	r.n_volume_context = 1;
	cr_assert_eq(RPC("Node/NodeStageVolume", &r, NULL, NULL), 14 /* UNAVAILABLE */, "%s", g_msg);
	snprintf(want, sizeof(want), "cannot reach the volume's iSCSI target %.*s at 127.0.0.1:%d: ",
		 (int)(strrchr(iqn, '/') - iqn - 1), iqn + 1, ntohs(a.sin_port));
	cr_assert_not_null(strstr(g_msg, want), "message: %s\nwanted: %s", g_msg, want);
	cr_assert_not_null(strstr(g_msg, "Connection refused"), "%s", g_msg);
	cr_assert_not_null(strstr(g_msg, "data plane"), "%s", g_msg);
	cr_assert_null(strstr(g_msg, "3cr3t"), "the CHAP secret leaked: %s", g_msg);
	close(fd);

	/* Nothing was left staged: the real context stages and unstages cleanly. */
	stage(v, staging, cap);
	unstage(v, staging);
	delete_vol(v);
	tfree_all();
}

Test(csi_dataplane, create_is_idempotent_and_rejects_foreign_ec)
{
	Csi__V1__VolumeCapability *cap = tcap_mount("ext4");
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { cap };
	Csi__V1__CreateVolumeRequest__ParametersEntry pe = CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry *params[1] = { &pe };
	const Csi__V1__Volume *a, *b;

	a = create("pvc-same", 16 << 20, cap);
	b = create("pvc-same", 16 << 20, cap);
	cr_assert_str_eq(a->volume_id, b->volume_id);

	r.name = "pvc-ec";
	cr.required_bytes = 16 << 20;
	r.capacity_range = &cr;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	pe.key = "ec";
	pe.value = "8+3";
	r.parameters = params;
	r.n_parameters = 1;
	cr_assert_eq(RPC("Controller/CreateVolume", &r, NULL, NULL), 3 /* INVALID_ARGUMENT */,
		     "%s", g_msg);
	pe.value = "4+2";
	Csi__V1__CreateVolumeResponse *resp;
	cr_assert_eq(RPC("Controller/CreateVolume", &r,
			 &csi__v1__create_volume_response__descriptor, &resp), 0, "%s", g_msg);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	tfree_all();
}
