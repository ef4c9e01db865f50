/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real-mount integration through the gRPC server: `tessera csi`'s stack
 * (server loop, driver, file backend with loop devices, embedded store) is
 * started on a unix socket in a scratch dir and driven by a gRPC core client.
 *
 * Filesystem (ext4, xfs): create, stage (mkfs once + mount), publish
 * (bind mount), write files, unpublish, unstage, stage again (no mkfs), publish
 * read-only, read the files back, writes refused, expand on controller and
 * node, stats, delete. Block: the device bind-mounted onto a target file,
 * a byte pattern written through it, checked in the backing file and after
 * re-stage through a read-only publish; the driver is restarted between
 * stage and publish to prove the staging records reload.
 *
 * Needs root (loop devices, mounts); skipped otherwise.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"

#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif

static struct tenv e;
static Csi__V1__CreateVolumeResponse *g_created[4];
static int g_ncreated;
static struct ts_csi_server *g_srv;
static struct ts_client *g_ch;
static char g_ep[320];
static char g_msg[512];

static void start(void)
{
	snprintf(g_ep, sizeof(g_ep), "unix://%s/csi.sock", e.dir);
	cr_assert_eq(ts_csi_server_start(e.d, g_ep, 2, &g_srv), 0);
	g_ch = gc_connect(g_ep);
}

static void stop(void)
{
	gc_close(g_ch);
	g_ch = NULL;
	ts_csi_server_stop(g_srv, 2000);
	g_srv = NULL;
}

static void setup(void)
{
	if (geteuid() != 0)
		return;
	tenv_init(&e, NULL, NULL, 2ull << 30);
	start();
}

static void teardown(void)
{
	if (geteuid() != 0)
		return;
	stop();
	tenv_fini(&e);
	while (g_ncreated)
		protobuf_c_message_free_unpacked(&g_created[--g_ncreated]->base, NULL);
}

TestSuite(csi_mount, .init = setup, .fini = teardown, .timeout = 120);

#define RPC(method, req, desc, resp)                                                        \
	gc_call(g_ch, "/csi.v1." method, req, desc, (void **)(resp), 30000, g_msg, sizeof(g_msg))


static bool is_mountpoint(const char *path)
{
	char parent[600];
	struct stat a, b;

	snprintf(parent, sizeof(parent), "%s/..", path);
	cr_assert_eq(stat(path, &a), 0);
	cr_assert_eq(stat(parent, &b), 0);
	return a.st_dev != b.st_dev;
}

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
	cr_assert_geq(resp->volume->capacity_bytes, bytes);
	cr_assert_lt(g_ncreated, 4);
	g_created[g_ncreated++] = resp; /* freed by teardown */
	return resp->volume;
}

static void stage(const Csi__V1__Volume *v, const char *staging, Csi__V1__VolumeCapability *cap)
{
	Csi__V1__NodeStageVolumeRequest r = tstage_req(v, staging, cap);

	cr_assert_eq(RPC("Node/NodeStageVolume", &r, NULL, NULL), 0, "stage: %s", g_msg);
	/* idempotent */
	cr_assert_eq(RPC("Node/NodeStageVolume", &r, NULL, NULL), 0, "restage: %s", g_msg);
}

static void unstage(const Csi__V1__Volume *v, const char *staging)
{
	Csi__V1__NodeUnstageVolumeRequest r = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	r.staging_target_path = (char *)staging;
	cr_assert_eq(RPC("Node/NodeUnstageVolume", &r, NULL, NULL), 0, "unstage: %s", g_msg);
	cr_assert_eq(RPC("Node/NodeUnstageVolume", &r, NULL, NULL), 0, "unstage again: %s", g_msg);
}

static void publish(const Csi__V1__Volume *v, const char *staging, const char *target,
		    Csi__V1__VolumeCapability *cap, bool ro)
{
	Csi__V1__NodePublishVolumeRequest r = tpublish_req(v, staging, target, cap, ro);

	cr_assert_eq(RPC("Node/NodePublishVolume", &r, NULL, NULL), 0, "publish: %s", g_msg);
	cr_assert_eq(RPC("Node/NodePublishVolume", &r, NULL, NULL), 0, "republish: %s", g_msg);
}

static void unpublish(const Csi__V1__Volume *v, const char *target)
{
	Csi__V1__NodeUnpublishVolumeRequest r = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	struct stat sb;

	r.volume_id = v->volume_id;
	r.target_path = (char *)target;
	cr_assert_eq(RPC("Node/NodeUnpublishVolume", &r, NULL, NULL), 0, "unpublish: %s", g_msg);
	cr_assert_neq(lstat(target, &sb), 0, "target must be removed");
	cr_assert_eq(RPC("Node/NodeUnpublishVolume", &r, NULL, NULL), 0, "again: %s", g_msg);
}

static void delete(const Csi__V1__Volume *v)
{
	Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
	char img[400];

	r.volume_id = v->volume_id;
	cr_assert_eq(RPC("Controller/DeleteVolume", &r, NULL, NULL), 0, "%s", g_msg);
	snprintf(img, sizeof(img), "%s/volumes/%s.img", e.dir, v->volume_id);
	cr_assert_neq(access(img, F_OK), 0, "backing file must be gone");
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, data, len), (ssize_t)len);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
}

static void check_file(const char *path, const void *data, size_t len)
{
	uint8_t *buf = malloc(len + 1);
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(read(fd, buf, len + 1), (ssize_t)len, "%s: wrong length", path);
	cr_assert_eq(memcmp(buf, data, len), 0, "%s: content differs", path);
	close(fd);
	free(buf);
}

static int64_t stats_total(const Csi__V1__Volume *v, const char *path, bool *abnormal)
{
	Csi__V1__NodeGetVolumeStatsRequest r = CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
	Csi__V1__NodeGetVolumeStatsResponse *resp;
	int64_t total;

	r.volume_id = v->volume_id;
	r.volume_path = (char *)path;
	cr_assert_eq(RPC("Node/NodeGetVolumeStats", &r,
			 &csi__v1__node_get_volume_stats_response__descriptor, &resp),
		     0, "stats: %s", g_msg);
	cr_assert_geq(resp->n_usage, 1);
	cr_assert_eq(resp->usage[0]->unit, CSI__V1__VOLUME_USAGE__UNIT__BYTES);
	cr_assert_not_null(resp->volume_condition);
	*abnormal = resp->volume_condition->abnormal;
	total = resp->usage[0]->total;
	if (resp->n_usage > 1)
		cr_expect_gt(resp->usage[0]->used, 0, "a filesystem with files uses space");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return total;
}

/* CAP_SYS_RESOURCE (bit 24) in the effective set: needed for online ext4 growth. */
static bool has_cap_sys_resource(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	unsigned long long eff = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &eff) == 1)
			break;
	if (f)
		fclose(f);
	return eff & (1ull << 24);
}

/* Returns the NodeExpandVolume code (0, or FAILED_PRECONDITION without CAP_SYS_RESOURCE). */
static int expand(const Csi__V1__Volume *v, const char *path, int64_t bytes, bool fs)
{
	Csi__V1__ControllerExpandVolumeRequest cr = CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
	Csi__V1__NodeExpandVolumeRequest nr = CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange range = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__ControllerExpandVolumeResponse *cresp;
	Csi__V1__NodeExpandVolumeResponse *nresp;
	int code;

	range.required_bytes = bytes;
	cr.volume_id = v->volume_id;
	cr.capacity_range = &range;
	cr_assert_eq(RPC("Controller/ControllerExpandVolume", &cr,
			 &csi__v1__controller_expand_volume_response__descriptor, &cresp),
		     0, "%s", g_msg);
	cr_expect_eq(cresp->capacity_bytes, bytes);
	cr_expect_eq(cresp->node_expansion_required, fs);
	protobuf_c_message_free_unpacked(&cresp->base, NULL);
	nr.volume_id = v->volume_id;
	nr.volume_path = (char *)path;
	nr.capacity_range = &range;
	code = RPC("Node/NodeExpandVolume", &nr, &csi__v1__node_expand_volume_response__descriptor,
		   &nresp);
	if (code == 9 && fs && !has_cap_sys_resource())
		return code;
	cr_assert_eq(code, 0, "%s", g_msg);
	cr_expect_eq(nresp->capacity_bytes, bytes);
	protobuf_c_message_free_unpacked(&nresp->base, NULL);
	return 0;
}

static void fs_roundtrip(const char *fs, int64_t size, int64_t grown, long magic)
{
	char staging[400], target[400], target2[400], path[500], sub[500];
	Csi__V1__VolumeCapability *cap = tcap_mount(fs);
	Csi__V1__Volume *v;
	uint8_t *blob = malloc(1 << 20);
	struct statfs sf;
	bool abnormal;
	int64_t before, after;

	if (geteuid() != 0)
		cr_skip_test("needs root for loop devices and mounts");
	for (int i = 0; i < (1 << 20); i++)
		blob[i] = (uint8_t)(i * 31 + 7);
	snprintf(staging, sizeof(staging), "%s/staging", e.dir);
	snprintf(target, sizeof(target), "%s/pod1", e.dir);
	snprintf(target2, sizeof(target2), "%s/pod2", e.dir);
	cr_assert_eq(mkdir(staging, 0750), 0);

	v = create(fs, size, cap);
	stage(v, staging, cap);
	cr_assert_eq(statfs(staging, &sf), 0);
	cr_assert_eq((long)sf.f_type, magic, "staging path holds %s", fs);
	cr_assert(is_mountpoint(staging));
	publish(v, staging, target, cap, false);
	snprintf(path, sizeof(path), "%s/hello.txt", target);
	write_file(path, "hello tessera\n", 14);
	snprintf(sub, sizeof(sub), "%s/dir", target);
	cr_assert_eq(mkdir(sub, 0755), 0);
	snprintf(path, sizeof(path), "%s/dir/blob.bin", target);
	write_file(path, blob, 1 << 20);
	before = stats_total(v, target, &abnormal);
	cr_expect(!abnormal);
	cr_expect_gt(before, size / 2);
	unpublish(v, target);
	unstage(v, staging);
	cr_assert(!is_mountpoint(staging), "staging path is unmounted");

	/* Stage again: the filesystem (and the files) must still be there. */
	stage(v, staging, cap);
	publish(v, staging, target2, cap, true);
	snprintf(path, sizeof(path), "%s/hello.txt", target2);
	check_file(path, "hello tessera\n", 14);
	snprintf(path, sizeof(path), "%s/dir/blob.bin", target2);
	check_file(path, blob, 1 << 20);
	snprintf(path, sizeof(path), "%s/new.txt", target2);
	cr_assert_lt(open(path, O_CREAT | O_WRONLY, 0644), 0, "read-only publish accepts writes");
	cr_assert_eq(errno, EROFS);

	if (expand(v, target2, grown, true)) {
		/* No online ext4 growth here: it must happen at the next stage. */
		unpublish(v, target2);
		unstage(v, staging);
		stage(v, staging, cap);
		publish(v, staging, target2, cap, true);
		snprintf(path, sizeof(path), "%s/dir/blob.bin", target2);
		check_file(path, blob, 1 << 20);
	}
	after = stats_total(v, target2, &abnormal);
	cr_expect_gt(after, before + (grown - size) / 2, "filesystem grew: %lld -> %lld",
		     (long long)before, (long long)after);

	unpublish(v, target2);
	unstage(v, staging);
	delete(v);
	free(blob);
}

Test(csi_mount, filesystem_ext4)
{
	fs_roundtrip("ext4", 64 << 20, 128 << 20, EXT4_SUPER_MAGIC);
}

Test(csi_mount, filesystem_xfs)
{
	fs_roundtrip("xfs", 320 << 20, 400 << 20, XFS_SUPER_MAGIC);
}

Test(csi_mount, block_pattern_and_restart)
{
	const size_t off = 1 << 20, len = 4 << 20;
	char staging[400], tdir[400], target[500], img[500];
	Csi__V1__VolumeCapability *cap = tcap_block();
	Csi__V1__Volume *v;
	uint8_t *pat = malloc(len), *buf = malloc(len);
	uint64_t devsize = 0;
	bool abnormal;
	int fd;

	if (geteuid() != 0)
		cr_skip_test("needs root for loop devices and mounts");
	for (size_t i = 0; i < len; i++)
		pat[i] = (uint8_t)(i * 7 + 13 + (i >> 12));
	snprintf(staging, sizeof(staging), "%s/staging", e.dir);
	snprintf(tdir, sizeof(tdir), "%s/pod", e.dir);
	snprintf(target, sizeof(target), "%s/dev", tdir);
	cr_assert_eq(mkdir(staging, 0750), 0);
	cr_assert_eq(mkdir(tdir, 0750), 0);

	v = create("blk", 16 << 20, cap);
	stage(v, staging, cap);

	/* Restart the driver and server: the staging record must reload. */
	stop();
	ts_csi_driver_destroy(e.d);
	{
		struct ts_csi_config cfg = { .node_id = "n1", .controller = true, .node = true,
					     .state_dir = e.dir, .path_prefix = e.dir };

		cr_assert_eq(ts_csi_driver_create(&cfg, e.be, e.be_ctx, e.st, e.st_ctx, &e.d), 0);
	}
	start();

	publish(v, staging, target, cap, false);
	fd = open(target, O_RDWR);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	cr_assert_eq(ioctl(fd, BLKGETSIZE64, &devsize), 0, "target is a block device");
	cr_expect_eq(devsize, 16u << 20);
	cr_assert_eq(pwrite(fd, pat, len, off), (ssize_t)len);
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	cr_expect_eq(stats_total(v, target, &abnormal), 16 << 20);
	cr_expect(!abnormal);
	unpublish(v, target);
	unstage(v, staging);

	/* The pattern is in the volume's backing file... */
	snprintf(img, sizeof(img), "%s/volumes/%s.img", e.dir, v->volume_id);
	fd = open(img, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, buf, len, off), (ssize_t)len);
	cr_assert_eq(memcmp(buf, pat, len), 0, "backing file holds the pattern");
	close(fd);

	/* ...and reads back through a fresh stage and a read-only publish. */
	stage(v, staging, cap);
	publish(v, staging, target, cap, true);
	fd = open(target, O_RDONLY);
	cr_assert_geq(fd, 0);
	memset(buf, 0, len);
	cr_assert_eq(pread(fd, buf, len, off), (ssize_t)len);
	cr_assert_eq(memcmp(buf, pat, len), 0, "pattern read back through the device");
	close(fd);
	fd = open(target, O_WRONLY);
	if (fd >= 0) { /* some kernels open a read-only device for writing; writes fail */
		cr_assert_lt(pwrite(fd, pat + 1, 4096, off), 0, "read-only block publish took a write");
		fsync(fd);
		close(fd);
	}

	/* Still the pattern in the backing file after the refused write. */
	fd = open(img, O_RDONLY);
	cr_assert_eq(pread(fd, buf, len, off), (ssize_t)len);
	cr_assert_eq(memcmp(buf, pat, len), 0, "read-only publish changed the volume");
	close(fd);

	expand(v, target, 32 << 20, false);
	unpublish(v, target);
	unstage(v, staging);
	delete(v);
	free(pat);
	free(buf);
}

Test(csi_mount, grpc_unimplemented_and_shutdown)
{
	Csi__V1__ProbeRequest pr = CSI__V1__PROBE_REQUEST__INIT;
	Csi__V1__ProbeResponse *probe;

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_assert_eq(RPC("Identity/Probe", &pr, &csi__v1__probe_response__descriptor, &probe), 0);
	cr_expect(probe->ready->value);
	protobuf_c_message_free_unpacked(&probe->base, NULL);
	/* Methods we do not serve answer UNIMPLEMENTED instead of hanging. */
	cr_expect_eq(gc_call(g_ch, "/csi.v1.Controller/CreateSnapshot", &pr, NULL, NULL, 5000,
			     g_msg, sizeof(g_msg)), 12);
	cr_expect_eq(gc_call(g_ch, "/csi.v1.Controller/ControllerPublishVolume", &pr, NULL, NULL,
			     5000, g_msg, sizeof(g_msg)), 12);
	/*
	 * A deadline already past fails DEADLINE_EXCEEDED and never hangs. (A
	 * deadline of "now" races the server's answer on a unix socket, so the
	 * call uses one a second in the past; the server-side check is covered
	 * by the handler tests.)
	 */
	{
		int code = gc_call(g_ch, "/csi.v1.Identity/Probe", &pr, NULL, NULL, -1000, g_msg,
				   sizeof(g_msg));

		cr_expect_eq(code, 4, "got %d: %s", code, g_msg);
	}
	/* After a graceful stop, the socket is gone and calls fail UNAVAILABLE. */
	ts_csi_server_stop(g_srv, 1000);
	g_srv = NULL;
	cr_expect_neq(access(g_ep + 7, F_OK), 0, "socket file removed");
	cr_expect_eq(gc_call(g_ch, "/csi.v1.Identity/Probe", &pr, NULL, NULL, 2000, g_msg,
			     sizeof(g_msg)), 14);
	gc_close(g_ch);
	start(); /* for teardown */
}

/* Concurrent CreateVolume calls for one name through the worker pool: one volume. */
static void *create_same(void *arg)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__VolumeCapability *caps[1] = { arg };
	Csi__V1__CreateVolumeResponse *resp;
	char msg[256], *id = NULL;

	r.name = "shared-name";
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	if (gc_call(g_ch, "/csi.v1.Controller/CreateVolume", &r,
		    &csi__v1__create_volume_response__descriptor, (void **)&resp, 30000, msg,
		    sizeof(msg)) == 0) {
		id = strdup(resp->volume->volume_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	return id;
}

Test(csi_mount, concurrent_creates_are_idempotent)
{
	Csi__V1__ListVolumesRequest lv = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	Csi__V1__ListVolumesResponse *lr;
	Csi__V1__VolumeCapability *cap = tcap_mount(NULL);
	pthread_t t[8];
	char *ids[8];

	if (geteuid() != 0)
		cr_skip_test("needs root");
	for (int i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, create_same, cap), 0);
	for (int i = 0; i < 8; i++)
		pthread_join(t[i], (void **)&ids[i]);
	for (int i = 0; i < 8; i++) {
		cr_assert_not_null(ids[i], "call %d failed", i);
		cr_expect_str_eq(ids[i], ids[0]);
	}
	for (int i = 0; i < 8; i++)
		free(ids[i]);
	cr_assert_eq(RPC("Controller/ListVolumes", &lv, &csi__v1__list_volumes_response__descriptor,
			 &lr), 0);
	cr_expect_eq(lr->n_entries, 1);
	protobuf_c_message_free_unpacked(&lr->base, NULL);
}

Test(csi_mount, bad_endpoints)
{
	struct ts_csi_server *srv = NULL;
	char ep[400], file[300];
	FILE *f;

	if (geteuid() != 0)
		cr_skip_test("needs root");
	cr_expect_eq(ts_csi_server_start(e.d, "tcp://127.0.0.1:1", 1, &srv), -EINVAL);
	cr_expect_eq(ts_csi_server_start(e.d, "unix://relative.sock", 1, &srv), -EINVAL);
	snprintf(ep, sizeof(ep), "unix://%s/no/such/dir/x.sock", e.dir);
	cr_expect_eq(ts_csi_server_start(e.d, ep, 1, &srv), -EIO);
	/* A regular file where the socket should go is not ours to replace. */
	snprintf(file, sizeof(file), "%s/not-a-socket", e.dir);
	f = fopen(file, "w");
	fclose(f);
	snprintf(ep, sizeof(ep), "unix://%s", file);
	cr_expect_eq(ts_csi_server_start(e.d, ep, 1, &srv), -EADDRINUSE);
	cr_expect_eq(access(file, F_OK), 0, "the file is still there");
	cr_expect_null(srv);
}
