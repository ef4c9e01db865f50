/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Access modes (issue 17, many writers on one volume), on the file backend
 * through ts_csi_handle(). The suite's backend says it orders writes from
 * several nodes (multi_node_writers, what the data plane's IO arbiter
 * provides); the plain file backend, which does not, keeps refusing them.
 * Block volumes take the multi-node modes, a filesystem refuses writers on
 * several nodes and says why; the modes are
 * recorded with the volume, survive a restart, make a re-create with other
 * modes ALREADY_EXISTS, bound what ValidateVolumeCapabilities confirms, and
 * reach the node in the volume context, which refuses to stage or publish
 * beyond them. Two node services (two drivers on the same backend, as two
 * kubelets on one volume) stage and publish one MULTI_NODE_MULTI_WRITER
 * Block volume at once and see each other's writes; the reader-only modes
 * are read-only on the node whatever the readonly flag says.
 *
 * The node cases that attach need root (loop devices, mounts); they skip
 * otherwise.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"

#define MNMW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER
#define MNSW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_SINGLE_WRITER
#define MNRO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY
#define SNW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER
#define SNRO CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY
#define SNMW CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER

static struct tenv g_e;
static Csi__V1__CreateVolumeResponse *g_made[16];
static size_t g_nmade;
/* The file backend's ops, saying they order writes from several nodes. */
static struct ts_csi_backend_ops g_rwx_ops;

/* Destroy the driver and make it again on g_e's backend and store (a restart). */
static void restart(void)
{
	struct ts_csi_config cfg = { .node_id = "n1", .controller = true, .node = true,
				     .max_volumes_per_node = 8, .default_volume_bytes = 8 << 20,
				     .state_dir = g_e.dir, .path_prefix = g_e.dir };

	ts_csi_driver_destroy(g_e.d);
	g_e.d = NULL;
	cr_assert_eq(ts_csi_driver_create(&cfg, g_e.be, g_e.be_ctx, g_e.st, g_e.st_ctx, &g_e.d), 0);
}

static void setup(void)
{
	tenv_init(&g_e, NULL, NULL, 1ull << 30);
	g_rwx_ops = *g_e.be;
	g_rwx_ops.multi_node_writers = true;
	g_e.be = &g_rwx_ops;
	restart();
}

static void teardown(void)
{
	while (g_nmade)
		protobuf_c_message_free_unpacked(&g_made[--g_nmade]->base, NULL);
	tenv_fini(&g_e);
}

TestSuite(csi_access, .init = setup, .fini = teardown, .timeout = 120);

static void need_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root for loop devices and mounts");
}

/* A Mount capability for \p fs (NULL: the node's default) in \p mode. */
static Csi__V1__VolumeCapability *capfs(const char *fs, int mode)
{
	Csi__V1__VolumeCapability *c = tcap_mount(fs);

	c->access_mode->mode = mode;
	return c;
}

/* A Block or Mount (fs type from the node's default) capability in \p mode. */
static Csi__V1__VolumeCapability *cap(bool block, int mode)
{
	Csi__V1__VolumeCapability *c = block ? tcap_block() : tcap_mount(NULL);

	c->access_mode->mode = mode;
	return c;
}

/* Size of the volumes create() makes (xfs needs 300 MiB). */
static int64_t g_bytes = 16 << 20;

/* CreateVolume \p name (g_bytes) with \p n capabilities; the volume (kept until teardown). */
static int create(const char *name, Csi__V1__VolumeCapability **caps, size_t n,
		  Csi__V1__Volume **out)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__CreateVolumeResponse *resp = NULL;
	int code;

	r.name = (char *)name;
	cr.required_bytes = g_bytes;
	r.capacity_range = &cr;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = n;
	code = tcall(g_e.d, "/csi.v1.Controller/CreateVolume", &r,
		     &csi__v1__create_volume_response__descriptor, (void **)&resp);
	if (out)
		*out = resp ? resp->volume : NULL;
	if (resp) {
		cr_assert_lt(g_nmade, TS_ARRAY_SIZE(g_made));
		g_made[g_nmade++] = resp;
	}
	return code;
}

/* CreateVolume with one capability that must succeed. */
static Csi__V1__Volume *create1(const char *name, bool block, int mode)
{
	Csi__V1__VolumeCapability *caps[1] = { cap(block, mode) };
	Csi__V1__Volume *v;

	cr_assert_eq(create(name, caps, 1, &v), 0, "%s: %s", name, tmsg());
	return v;
}

static const char *ctx_get(const Csi__V1__Volume *v, const char *key)
{
	return csi_kv_get((void *const *)v->volume_context, v->n_volume_context, key);
}

/* ValidateVolumeCapabilities of one capability: confirmed or not, the message into \p why. */
static bool confirmed(const char *id, Csi__V1__VolumeCapability *c, char *why, size_t len)
{
	Csi__V1__ValidateVolumeCapabilitiesRequest r =
		CSI__V1__VALIDATE_VOLUME_CAPABILITIES_REQUEST__INIT;
	Csi__V1__ValidateVolumeCapabilitiesResponse *resp;
	Csi__V1__VolumeCapability *caps[1] = { c };
	bool ok;

	r.volume_id = (char *)id;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	cr_assert_eq(tcall(g_e.d, "/csi.v1.Controller/ValidateVolumeCapabilities", &r,
			   &csi__v1__validate_volume_capabilities_response__descriptor,
			   (void **)&resp),
		     0, "%s", tmsg());
	ok = resp->confirmed != NULL;
	snprintf(why, len, "%s", resp->message ? resp->message : "");
	if (!ok)
		cr_expect(why[0], "not confirmed without a message");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return ok;
}

static int stage(struct ts_csi_driver *d, const Csi__V1__Volume *v, const char *staging,
		 Csi__V1__VolumeCapability *c)
{
	Csi__V1__NodeStageVolumeRequest r = tstage_req(v, staging, c);

	return tcall(d, "/csi.v1.Node/NodeStageVolume", &r, NULL, NULL);
}

static int publish(struct ts_csi_driver *d, const Csi__V1__Volume *v, const char *staging,
		   const char *target, Csi__V1__VolumeCapability *c, bool readonly)
{
	Csi__V1__NodePublishVolumeRequest r = tpublish_req(v, staging, target, c, readonly);

	return tcall(d, "/csi.v1.Node/NodePublishVolume", &r, NULL, NULL);
}

/* Unpublish \p target, then unstage \p staging; both must succeed. */
static void release(struct ts_csi_driver *d, const Csi__V1__Volume *v, const char *staging,
		    const char *target)
{
	Csi__V1__NodeUnpublishVolumeRequest u = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnstageVolumeRequest s = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;

	u.volume_id = s.volume_id = v->volume_id;
	u.target_path = (char *)target;
	s.staging_target_path = (char *)staging;
	if (target)
		cr_assert_eq(tcall(d, "/csi.v1.Node/NodeUnpublishVolume", &u, NULL, NULL), 0, "%s",
			     tmsg());
	cr_assert_eq(tcall(d, "/csi.v1.Node/NodeUnstageVolume", &s, NULL, NULL), 0, "%s", tmsg());
}

/* "<scratch>/<name>", made as a directory. */
static void dir_in(char *out, size_t len, const char *name)
{
	snprintf(out, len, "%s/%s", g_e.dir, name);
	cr_assert_eq(mkdir(out, 0750), 0, "%s: %s", out, strerror(errno));
}

/* ---- controller ---- */

Test(csi_access, block_takes_the_multi_node_modes)
{
	static const struct {
		int mode;
		const char *name;
	} modes[] = {
		{ MNMW, "MULTI_NODE_MULTI_WRITER" },
		{ MNSW, "MULTI_NODE_SINGLE_WRITER" },
		{ MNRO, "MULTI_NODE_READER_ONLY" },
		{ SNW, "SINGLE_NODE_WRITER" },
	};

	for (size_t i = 0; i < TS_ARRAY_SIZE(modes); i++) {
		char name[32];
		Csi__V1__Volume *v;
		struct ts_csi_volume rec;

		snprintf(name, sizeof(name), "blk-%zu", i);
		v = create1(name, true, modes[i].mode);
		cr_expect_str_eq(ctx_get(v, CSI_CTX_MODES), modes[i].name,
				 "the volume context carries the modes to the node");
		cr_assert_eq(g_e.st->get(g_e.st_ctx, v->volume_id, &rec), 0);
		cr_expect_eq(rec.access_modes, 1u << modes[i].mode, "%s recorded", modes[i].name);
		cr_expect(rec.block);
	}
}

Test(csi_access, a_filesystem_refuses_writers_on_several_nodes)
{
	Csi__V1__VolumeCapability *caps[2];
	Csi__V1__Volume *v;

	caps[0] = cap(false, MNMW);
	cr_expect_eq(create("fs-rwx", caps, 1, NULL), CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), "MULTI_NODE_MULTI_WRITER") && strstr(tmsg(), "cluster-aware") &&
			  strstr(tmsg(), "volumeMode: Block"),
		  "the message says why and what to do: %s", tmsg());
	caps[0] = cap(false, MNSW);
	cr_expect_eq(create("fs-mnsw", caps, 1, NULL), CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), "MULTI_NODE_SINGLE_WRITER"), "%s", tmsg());
	/* One refused capability among accepted ones refuses the request. */
	caps[0] = cap(false, SNW);
	caps[1] = cap(false, MNMW);
	cr_expect_eq(create("fs-mixed", caps, 2, NULL), CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), "volume_capabilities[1]"), "%s", tmsg());
	/* Readers on many nodes, and many writers on one node, are fine. */
	v = create1("fs-rox", false, MNRO);
	cr_expect_str_eq(ctx_get(v, CSI_CTX_MODES), "MULTI_NODE_READER_ONLY");
	create1("fs-snmw", false, SNMW);
	create1("fs-snw", false, SNW);
}

Test(csi_access, a_recreate_must_ask_for_the_same_modes)
{
	Csi__V1__VolumeCapability *caps[2] = { cap(true, SNW), cap(true, MNRO) };
	Csi__V1__Volume *v, *again;
	struct ts_csi_volume old;

	v = create1("rwx", true, MNMW);
	cr_assert_eq(create("rwx", (Csi__V1__VolumeCapability *[]){ cap(true, MNMW) }, 1, &again),
		     0, "%s", tmsg());
	cr_expect_str_eq(again->volume_id, v->volume_id, "same name, same modes: same volume");
	cr_expect_eq(create("rwx", caps, 1, NULL), CSI_ALREADY_EXISTS);
	cr_expect(strstr(tmsg(), "MULTI_NODE_MULTI_WRITER") && strstr(tmsg(), "SINGLE_NODE_WRITER"),
		  "the message names both sets: %s", tmsg());

	cr_assert_eq(create("two", caps, 2, &v), 0, "%s", tmsg());
	cr_expect_str_eq(ctx_get(v, CSI_CTX_MODES), "SINGLE_NODE_WRITER,MULTI_NODE_READER_ONLY");
	cr_expect_eq(create("two", caps, 1, NULL), CSI_ALREADY_EXISTS, "a subset is another set");
	cr_expect_eq(create("two", (Csi__V1__VolumeCapability *[]){ caps[1], caps[0] }, 2, NULL), 0,
		     "order does not matter: %s", tmsg());

	/* A record from before modes were kept: the modes accepted then match. */
	v = create1("legacy", true, SNW);
	cr_assert_eq(g_e.st->get(g_e.st_ctx, v->volume_id, &old), 0);
	old.access_modes = 0;
	cr_assert_eq(g_e.st->put(g_e.st_ctx, &old), 0);
	cr_expect_eq(create("legacy", caps, 2, NULL), 0, "%s", tmsg());
	cr_expect_eq(create("legacy", (Csi__V1__VolumeCapability *[]){ cap(true, MNMW) }, 1, NULL),
		     CSI_ALREADY_EXISTS, "an old volume was not created for multi-node writers");
}

Test(csi_access, validate_confirms_what_the_created_modes_cover)
{
	Csi__V1__Volume *rwx = create1("rwx", true, MNMW), *rwo = create1("rwo", true, SNW);
	Csi__V1__Volume *rox = create1("rox", false, MNRO);
	char why[512];

	cr_expect(confirmed(rwx->volume_id, cap(true, MNMW), why, sizeof(why)), "%s", why);
	cr_expect(confirmed(rwx->volume_id, cap(true, SNW), why, sizeof(why)),
		  "multi-node writers cover a single writer: %s", why);
	cr_expect(confirmed(rwx->volume_id, cap(true, MNRO), why, sizeof(why)), "%s", why);
	cr_expect(!confirmed(rwx->volume_id, cap(false, MNMW), why, sizeof(why)));
	cr_expect(strstr(why, "cluster-aware"), "%s", why);
	cr_expect(!confirmed(rwx->volume_id, cap(false, SNW), why, sizeof(why)),
		  "a block volume is not a filesystem");
	cr_expect(strstr(why, "block"), "%s", why);

	cr_expect(confirmed(rwo->volume_id, cap(true, SNRO), why, sizeof(why)), "%s", why);
	cr_expect(!confirmed(rwo->volume_id, cap(true, MNMW), why, sizeof(why)));
	cr_expect(strstr(why, "MULTI_NODE_MULTI_WRITER") && strstr(why, "SINGLE_NODE_WRITER"), "%s",
		  why);
	cr_expect(!confirmed(rwo->volume_id, cap(true, MNRO), why, sizeof(why)),
		  "one node does not cover many");

	cr_expect(confirmed(rox->volume_id, cap(false, MNRO), why, sizeof(why)), "%s", why);
	cr_expect(confirmed(rox->volume_id, cap(false, SNRO), why, sizeof(why)), "%s", why);
	cr_expect(!confirmed(rox->volume_id, cap(false, SNW), why, sizeof(why)),
		  "readers do not cover a writer");
}

Test(csi_access, the_modes_survive_a_restart)
{
	Csi__V1__VolumeCapability *caps[2] = { cap(true, MNMW), cap(true, MNRO) };
	Csi__V1__ListVolumesRequest lr = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	Csi__V1__ListVolumesResponse *list;
	Csi__V1__Volume *v;
	struct ts_csi_volume rec;
	char meta[300], why[512];

	cr_assert_eq(create("rwx", caps, 2, &v), 0, "%s", tmsg());
	ts_csi_driver_destroy(g_e.d);
	g_e.d = NULL;
	g_e.st->destroy(g_e.st_ctx);
	snprintf(meta, sizeof(meta), "%s/meta", g_e.dir);
	cr_assert_eq(ts_csi_store_file_open(meta, &g_e.st, &g_e.st_ctx), 0);
	restart();

	cr_assert_eq(g_e.st->get(g_e.st_ctx, v->volume_id, &rec), 0);
	cr_expect_eq(rec.access_modes, 1u << MNMW | 1u << MNRO, "reloaded from disk");
	cr_assert_eq(tcall(g_e.d, "/csi.v1.Controller/ListVolumes", &lr,
			   &csi__v1__list_volumes_response__descriptor, (void **)&list),
		     0);
	cr_assert_eq(list->n_entries, 1);
	cr_expect_str_eq(ctx_get(list->entries[0]->volume, CSI_CTX_MODES),
			 "MULTI_NODE_READER_ONLY,MULTI_NODE_MULTI_WRITER");
	protobuf_c_message_free_unpacked(&list->base, NULL);
	cr_expect_eq(create("rwx", caps, 2, NULL), 0, "%s", tmsg());
	cr_expect_eq(create("rwx", caps, 1, NULL), CSI_ALREADY_EXISTS);
	cr_expect(confirmed(v->volume_id, cap(true, MNMW), why, sizeof(why)), "%s", why);
}

/* A backend that does not order writes from several nodes keeps refusing them. */
Test(csi_access, writers_on_several_nodes_need_the_backend)
{
	Csi__V1__VolumeCapability *caps[1] = { cap(true, MNMW) };
	Csi__V1__Volume *v = create1("rwx", true, MNMW), *ro;
	char staging[300], why[512];

	g_rwx_ops.multi_node_writers = false;
	restart();
	cr_expect_eq(create("new-rwx", caps, 1, NULL), CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), "serializes writes"), "%s", tmsg());
	caps[0] = cap(true, MNSW);
	cr_expect_eq(create("new-mnsw", caps, 1, NULL), CSI_INVALID_ARGUMENT);
	cr_expect(!confirmed(v->volume_id, cap(true, MNMW), why, sizeof(why)));
	cr_expect(strstr(why, "serializes writes"), "%s", why);
	snprintf(staging, sizeof(staging), "%s/staging", g_e.dir);
	cr_expect_eq(stage(g_e.d, v, staging, cap(true, MNMW)), CSI_FAILED_PRECONDITION,
		     "a volume made while the backend could: %s", tmsg());
	/* Readers on many nodes and one-node writers need nothing of it. */
	ro = create1("rox", true, MNRO);
	cr_expect_str_eq(ctx_get(ro, CSI_CTX_MODES), "MULTI_NODE_READER_ONLY");
	create1("rwo", true, SNW);
}

/* ---- node ---- */

Test(csi_access, the_node_refuses_what_the_volume_cannot_serve)
{
	Csi__V1__Volume *rwo = create1("rwo", true, SNW), *fs = create1("fs", false, SNW);
	Csi__V1__Volume forged;
	Csi__V1__Volume__VolumeContextEntry bad = CSI__V1__VOLUME__VOLUME_CONTEXT_ENTRY__INIT;
	Csi__V1__Volume__VolumeContextEntry *ctx[2];
	char staging[300], target[300];

	/* All refused before anything is attached or mounted. */
	snprintf(staging, sizeof(staging), "%s/staging", g_e.dir);
	snprintf(target, sizeof(target), "%s/target", g_e.dir);
	cr_expect_eq(stage(g_e.d, rwo, staging, cap(true, MNMW)), CSI_FAILED_PRECONDITION,
		     "beyond the created modes is the spec's Exceeds capabilities");
	cr_expect(strstr(tmsg(), "SINGLE_NODE_WRITER") && strstr(tmsg(), "MULTI_NODE_MULTI_WRITER"),
		  "%s", tmsg());
	cr_expect_eq(publish(g_e.d, rwo, staging, target, cap(true, MNMW), false),
		     CSI_FAILED_PRECONDITION);
	cr_expect_eq(stage(g_e.d, fs, staging, cap(false, MNMW)), CSI_FAILED_PRECONDITION);
	cr_expect(strstr(tmsg(), "cluster-aware"), "%s", tmsg());
	cr_expect_eq(publish(g_e.d, fs, staging, target, cap(false, MNSW), false),
		     CSI_FAILED_PRECONDITION);

	/* A volume context whose mode list is not one. */
	forged = *rwo;
	ctx[0] = rwo->volume_context[0];
	bad.key = CSI_CTX_MODES;
	bad.value = "SINGLE_NODE_WRITER,EVERYONE";
	ctx[1] = &bad;
	forged.volume_context = ctx;
	forged.n_volume_context = 2;
	cr_expect_eq(stage(g_e.d, &forged, staging, cap(true, SNW)), CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), CSI_CTX_MODES), "%s", tmsg());
	bad.value = "";
	cr_expect_eq(stage(g_e.d, &forged, staging, cap(true, SNW)), CSI_INVALID_ARGUMENT);
}

/* Two kubelets on one MULTI_NODE_MULTI_WRITER Block volume: each sees the other's writes. */
Test(csi_access, two_nodes_write_one_block_volume)
{
	struct ts_csi_config cfg = { .node_id = "n2", .node = true, .path_prefix = g_e.dir };
	char state2[300], st1[300], st2[300], t1[300], t2[300];
	Csi__V1__VolumeCapability *c = cap(true, MNMW);
	struct ts_csi_driver *d2;
	Csi__V1__Volume *v;
	void *a, *b;
	int f1, f2;

	need_root();
	v = create1("shared", true, MNMW);
	dir_in(state2, sizeof(state2), "n2-state");
	cfg.state_dir = state2;
	cr_assert_eq(ts_csi_driver_create(&cfg, g_e.be, g_e.be_ctx, NULL, NULL, &d2), 0);
	dir_in(st1, sizeof(st1), "n1-staging");
	dir_in(st2, sizeof(st2), "n2-staging");
	snprintf(t1, sizeof(t1), "%s/n1-dev", g_e.dir);
	snprintf(t2, sizeof(t2), "%s/n2-dev", g_e.dir);
	cr_assert_eq(stage(g_e.d, v, st1, c), 0, "%s", tmsg());
	cr_assert_eq(stage(d2, v, st2, c), 0, "%s", tmsg());
	cr_assert_eq(publish(g_e.d, v, st1, t1, c, false), 0, "%s", tmsg());
	cr_assert_eq(publish(d2, v, st2, t2, c, false), 0, "%s", tmsg());

	/* O_DIRECT: each node's device has its own page cache, as two hosts would. */
	cr_assert_eq(posix_memalign(&a, 4096, 4096), 0);
	cr_assert_eq(posix_memalign(&b, 4096, 4096), 0);
	f1 = open(t1, O_RDWR | O_DIRECT);
	f2 = open(t2, O_RDWR | O_DIRECT);
	cr_assert(f1 >= 0 && f2 >= 0, "%s", strerror(errno));
	memset(a, 0x5a, 4096);
	cr_assert_eq(pwrite(f1, a, 4096, 8192), 4096);
	cr_assert_eq(pread(f2, b, 4096, 8192), 4096);
	cr_expect_eq(memcmp(a, b, 4096), 0, "node 2 reads what node 1 wrote");
	memset(b, 0xa5, 4096);
	cr_assert_eq(pwrite(f2, b, 4096, 4096), 4096);
	cr_assert_eq(pread(f1, a, 4096, 4096), 4096);
	cr_expect_eq(memcmp(a, b, 4096), 0, "node 1 reads what node 2 wrote");
	close(f1);
	close(f2);
	free(a);
	free(b);

	release(d2, v, st2, t2);
	release(g_e.d, v, st1, t1);
	ts_csi_driver_destroy(d2);
}

/* A file on the \p fs filesystem of \p v, written through a writable stage. */
static void fill_fs(const Csi__V1__Volume *v, const char *fs, const char *staging,
		    const char *target)
{
	char path[400];
	FILE *f;

	cr_assert_eq(stage(g_e.d, v, staging, capfs(fs, SNW)), 0, "%s", tmsg());
	cr_assert_eq(publish(g_e.d, v, staging, target, capfs(fs, SNW), false), 0, "%s", tmsg());
	snprintf(path, sizeof(path), "%s/hello", target);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", strerror(errno));
	fputs("written once", f);
	cr_assert_eq(fclose(f), 0);
	release(g_e.d, v, staging, target);
}

/* The mountinfo line of the mount at \p path holds \p opt. */
static bool mounted_with(const char *path, const char *opt)
{
	char line[1024], at[400];
	bool found = false;
	FILE *f = fopen("/proc/self/mountinfo", "r");

	cr_assert_not_null(f);
	snprintf(at, sizeof(at), " %s ", path);
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, at) && strstr(line, opt);
	fclose(f);
	return found;
}

/*
 * A filesystem written once, then staged by readers: read-only (on many
 * nodes without journal or log replay), even when publish does not ask.
 */
static void readers_only(const char *fs)
{
	Csi__V1__VolumeCapability *caps[2] = { capfs(fs, SNW), capfs(fs, MNRO) };
	Csi__V1__NodeGetVolumeStatsRequest sr = CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
	Csi__V1__NodeGetVolumeStatsResponse *stats;
	char staging[300], target[300], path[400], buf[32] = "";
	struct statvfs sv;
	Csi__V1__Volume *v, *empty;
	FILE *f;

	need_root();
	dir_in(staging, sizeof(staging), "staging");
	snprintf(target, sizeof(target), "%s/target", g_e.dir);
	cr_assert_eq(create("rox", caps, 2, &v), 0, "%s", tmsg());
	fill_fs(v, fs, staging, target);

	cr_assert_eq(stage(g_e.d, v, staging, capfs(fs, MNRO)), 0, "%s", tmsg());
	cr_assert_eq(statvfs(staging, &sv), 0);
	cr_expect(sv.f_flag & ST_RDONLY, "the staging mount is read-only");
	cr_expect(mounted_with(staging, "norecovery"), "readers on many nodes replay no journal");
	cr_assert_eq(publish(g_e.d, v, staging, target, capfs(fs, MNRO), false), 0, "%s", tmsg());
	snprintf(path, sizeof(path), "%s/hello", target);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	cr_expect_not_null(fgets(buf, sizeof(buf), f));
	fclose(f);
	cr_expect_str_eq(buf, "written once");
	cr_expect_lt(open(path, O_WRONLY), 0, "a reader-only publish took a writer");
	cr_expect_eq(errno, EROFS);
	sr.volume_id = v->volume_id;
	sr.volume_path = target;
	cr_assert_eq(tcall(g_e.d, "/csi.v1.Node/NodeGetVolumeStats", &sr,
			   &csi__v1__node_get_volume_stats_response__descriptor, (void **)&stats),
		     0, "%s", tmsg());
	cr_expect(!stats->volume_condition->abnormal,
		  "a read-only stage is not a filesystem gone read-only: %s",
		  stats->volume_condition->message);
	protobuf_c_message_free_unpacked(&stats->base, NULL);
	release(g_e.d, v, staging, target);

	/* A single-node reader, too. */
	cr_assert_eq(stage(g_e.d, v, staging, capfs(fs, SNRO)), 0, "%s", tmsg());
	cr_expect(!mounted_with(staging, "norecovery"), "one reader may replay its journal");
	cr_assert_eq(publish(g_e.d, v, staging, target, capfs(fs, SNRO), false), 0, "%s", tmsg());
	cr_expect_lt(open(path, O_WRONLY), 0, "a reader-only publish took a writer");
	release(g_e.d, v, staging, target);

	/* Nothing on the device: a read-only stage cannot make a filesystem. */
	caps[0] = capfs(fs, MNRO);
	cr_assert_eq(create("rox-empty", caps, 1, &empty), 0, "%s", tmsg());
	cr_expect_eq(stage(g_e.d, empty, staging, caps[0]), CSI_FAILED_PRECONDITION);
	cr_expect(strstr(tmsg(), "no filesystem"), "%s", tmsg());
}

Test(csi_access, reader_only_ext4_is_read_only)
{
	readers_only("ext4");
}

Test(csi_access, reader_only_xfs_is_read_only)
{
	g_bytes = 320 << 20;
	readers_only("xfs");
}

Test(csi_access, reader_only_block_publish_is_read_only)
{
	char staging[300], target[300];
	Csi__V1__VolumeCapability *c = cap(true, MNRO);
	Csi__V1__Volume *v;
	int fd;

	need_root();
	dir_in(staging, sizeof(staging), "staging");
	snprintf(target, sizeof(target), "%s/dev", g_e.dir);
	v = create1("rox-blk", true, MNRO);
	cr_assert_eq(stage(g_e.d, v, staging, c), 0, "%s", tmsg());
	cr_assert_eq(publish(g_e.d, v, staging, target, c, false), 0, "%s", tmsg());
	fd = open(target, O_WRONLY);
	if (fd >= 0) { /* some kernels open a read-only device for writing; writes fail */
		char buf[512] = { 1 };

		cr_expect_lt(pwrite(fd, buf, sizeof(buf), 0), 0, "a reader-only block publish took a write");
		close(fd);
	}
	fd = open(target, O_RDONLY);
	cr_expect_geq(fd, 0, "readers read: %s", strerror(errno));
	close(fd);
	release(g_e.d, v, staging, target);
}
