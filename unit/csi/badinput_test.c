/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bad input for every CSI RPC: missing and invalid fields, unknown ids, path
 * traversal in names, ids and paths, absurd sizes, undecodable bytes. Each
 * must give the code the CSI spec prescribes and a message, never a crash.
 * Requests go through ts_csi_handle() (decode -> handler -> encode) on a
 * driver with the file backend; nothing here mounts.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"

#define C_OK 0
#define C_INVALID 3
#define C_NOT_FOUND 5
#define C_EXISTS 6
#define C_EXHAUSTED 8
#define C_PRECONDITION 9
#define C_ABORTED 10
#define C_RANGE 11

static struct tenv e;

static void setup(void)
{
	tenv_init(&e, NULL, NULL, 256 << 20);
}

static void teardown(void)
{
	tenv_fini(&e);
}

TestSuite(csi_badinput, .init = setup, .fini = teardown);

#define EXPECT(code, method, req)                                                            \
	do {                                                                                  \
		int got_ = tcall(e.d, "/csi.v1." method, &(req), NULL, NULL);                 \
		cr_expect_eq(got_, code, "%s (line %d): want %d got %d msg=\"%s\"", method,   \
			     __LINE__, code, got_, tmsg());                                    \
	} while (0)

/* ---- Identity ---- */

Test(csi_badinput, identity)
{
	Csi__V1__GetPluginInfoRequest gi = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
	Csi__V1__ProbeRequest pr = CSI__V1__PROBE_REQUEST__INIT;
	Csi__V1__GetPluginInfoResponse *info;
	Csi__V1__ProbeResponse *probe;

	cr_assert_eq(tcall(e.d, "/csi.v1.Identity/GetPluginInfo", &gi,
			   &csi__v1__get_plugin_info_response__descriptor, (void **)&info), 0);
	cr_expect_str_eq(info->name, TS_CSI_DRIVER_NAME);
	cr_expect(info->vendor_version[0]);
	protobuf_c_message_free_unpacked(&info->base, NULL);
	cr_assert_eq(tcall(e.d, "/csi.v1.Identity/Probe", &pr,
			   &csi__v1__probe_response__descriptor, (void **)&probe), 0);
	cr_expect(probe->ready && probe->ready->value, "file backend on a writable dir is ready");
	protobuf_c_message_free_unpacked(&probe->base, NULL);
}

Test(csi_badinput, probe_follows_backend)
{
	struct tenv m;
	Csi__V1__ProbeRequest pr = CSI__V1__PROBE_REQUEST__INIT;
	Csi__V1__ProbeResponse *probe;

	tenv_init(&m, &tmem_backend_ops, tmem_backend_new(1 << 30), 0);
	g_mem_probe_rc = -EAGAIN;
	cr_assert_eq(tcall(m.d, "/csi.v1.Identity/Probe", &pr,
			   &csi__v1__probe_response__descriptor, (void **)&probe), 0);
	cr_expect(probe->ready && !probe->ready->value, "not ready while the backend says EAGAIN");
	protobuf_c_message_free_unpacked(&probe->base, NULL);
	g_mem_probe_rc = -EIO;
	cr_expect_eq(tcall(m.d, "/csi.v1.Identity/Probe", &pr, NULL, NULL), C_PRECONDITION);
	g_mem_probe_rc = 0;
	cr_assert_eq(tcall(m.d, "/csi.v1.Identity/Probe", &pr,
			   &csi__v1__probe_response__descriptor, (void **)&probe), 0);
	cr_expect(probe->ready->value);
	protobuf_c_message_free_unpacked(&probe->base, NULL);
	tenv_fini(&m);
}

/* The gate (a controller replica's Lease): Identity always, the rest only while it answers 0. */
static int g_gate_rc;
static unsigned g_gate_calls;

static int gate(void *arg)
{
	cr_expect_eq(arg, &g_gate_rc);
	g_gate_calls++;
	return g_gate_rc;
}

Test(csi_badinput, gate_refuses_all_but_identity)
{
	Csi__V1__ProbeRequest pr = CSI__V1__PROBE_REQUEST__INIT;
	Csi__V1__ListVolumesRequest lv = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	Csi__V1__NodeGetInfoRequest ni = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
	char id[256], attach[1024];

	cr_assert_eq(ts_csi_driver_set_gate(NULL, gate, NULL), -EINVAL);
	cr_assert_eq(ts_csi_driver_set_gate(e.d, gate, &g_gate_rc), 0);
	g_gate_rc = 0;
	EXPECT(C_OK, "Controller/ListVolumes", lv);
	cr_assert_eq(tcreate(e.d, "gated", 1 << 20, true, id, attach), C_OK, "%s", tmsg());
	cr_expect_geq(g_gate_calls, 2u);
	g_gate_rc = -EBUSY;
	EXPECT(C_OK, "Identity/Probe", pr);
	EXPECT(14, "Controller/ListVolumes", lv); /* UNAVAILABLE */
	cr_expect(strstr(tmsg(), "not the active one"), "%s", tmsg());
	EXPECT(14, "Node/NodeGetInfo", ni);
	cr_expect_eq(tcreate(e.d, "gated2", 1 << 20, true, id, attach), 14);
	g_gate_rc = 0;
	EXPECT(C_OK, "Controller/ListVolumes", lv);
	cr_assert_eq(ts_csi_driver_set_gate(e.d, NULL, NULL), 0);
	g_gate_rc = -EBUSY;
	EXPECT(C_OK, "Controller/ListVolumes", lv);
}

/* ---- CreateVolume ---- */

static Csi__V1__CreateVolumeRequest cv_req(const char *name, Csi__V1__VolumeCapability **caps,
					   size_t ncaps)
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;

	r.name = (char *)name;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = ncaps;
	return r;
}

Test(csi_badinput, create_names_and_caps)
{
	Csi__V1__VolumeCapability *caps[2] = { tcap_mount(NULL), tcap_block() };
	Csi__V1__CreateVolumeRequest r;
	char longname[200];

	r = cv_req(NULL, caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("../../etc/passwd", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("a/b", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("..", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("tab\there", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	memset(longname, 'x', 129);
	longname[129] = '\0';
	r = cv_req(longname, caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	longname[128] = '\0';
	r = cv_req(longname, caps, 1);
	EXPECT(C_OK, "Controller/CreateVolume", r);

	r = cv_req("nocaps", caps, 0);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);
	r = cv_req("mixed", caps, 2);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	caps[0] = tcap_mount("btrfs");
	r = cv_req("badfs", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	caps[0] = tcap_mount(NULL);
	caps[0]->access_mode = NULL;
	r = cv_req("nomode", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	caps[0] = tcap_mount(NULL);
	caps[0]->access_mode->mode = 99;
	r = cv_req("badmode", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	caps[0] = tcap_mount(NULL);
	caps[0]->access_mode->mode =
		CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER;
	r = cv_req("rwx", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	caps[0] = tcap_mount(NULL);
	caps[0]->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE__NOT_SET;
	r = cv_req("notype", caps, 1);
	EXPECT(C_INVALID, "Controller/CreateVolume", r);

	{
		char *flags[] = { "noatime", "bogus=1" };

		caps[0] = tcap_mount(NULL);
		caps[0]->mount->mount_flags = flags;
		caps[0]->mount->n_mount_flags = 2;
		r = cv_req("badflag", caps, 1);
		EXPECT(C_INVALID, "Controller/CreateVolume", r);
	}
}

Test(csi_badinput, create_parameters)
{
	static const struct {
		const char *k, *v;
		int code;
	} cases[] = {
		{ "ec", "4+2", C_OK },	    { "ec", "1+0", C_OK },       { "ec", "4+", C_INVALID },
		{ "ec", "+2", C_INVALID },   { "ec", "0+2", C_INVALID },  { "ec", "33+1", C_INVALID },
		{ "ec", "4+17", C_INVALID }, { "ec", "4+2x", C_INVALID }, { "ec", "x+y", C_INVALID },
		{ "ec", "", C_INVALID },     { "ec", "-4+2", C_INVALID },
		{ "fsType", "ext4", C_OK },  { "fsType", "xfs", C_OK },   { "fsType", "btrfs", C_INVALID },
		{ "fsType", "", C_INVALID }, { "replicas", "3", C_INVALID },
		{ "csi.storage.k8s.io/pvc/name", "claim", C_OK },
	};
	Csi__V1__VolumeCapability *caps[1] = { tcap_mount(NULL) };

	for (size_t i = 0; i < TS_ARRAY_SIZE(cases); i++) {
		Csi__V1__CreateVolumeRequest__ParametersEntry pe =
			CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
		Csi__V1__CreateVolumeRequest__ParametersEntry *pp[1] = { &pe };
		Csi__V1__CreateVolumeRequest r;
		char name[32];

		snprintf(name, sizeof(name), "param-%zu", i);
		r = cv_req(name, caps, 1);
		pe.key = (char *)cases[i].k;
		pe.value = (char *)cases[i].v;
		r.parameters = pp;
		r.n_parameters = 1;
		EXPECT(cases[i].code, "Controller/CreateVolume", r);
	}
	{
		/* fsType parameter against a different capability fs_type */
		Csi__V1__CreateVolumeRequest__ParametersEntry pe =
			CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
		Csi__V1__CreateVolumeRequest__ParametersEntry *pp[1] = { &pe };
		Csi__V1__VolumeCapability *xc[1] = { tcap_mount("xfs") };
		Csi__V1__CreateVolumeRequest r = cv_req("fsconflict", xc, 1);

		pe.key = "fsType";
		pe.value = "ext4";
		r.parameters = pp;
		r.n_parameters = 1;
		EXPECT(C_INVALID, "Controller/CreateVolume", r);
	}
}

Test(csi_badinput, create_sizes)
{
	static const struct {
		int64_t req, lim;
		int code;
	} cases[] = {
		{ -1, 0, C_INVALID },
		{ 0, -1, C_INVALID },
		{ 10 << 20, 5 << 20, C_INVALID },
		{ INT64_MAX, 0, C_RANGE },
		{ 1ll << 62, 0, C_RANGE },
		{ 0, 1000, C_RANGE },           /* no whole MiB below the limit */
		{ 1000, 1000, C_RANGE },
		{ 1 << 30, 0, C_EXHAUSTED },    /* the backend has 256 MiB */
		{ 1, 0, C_OK },                 /* rounds up to 1 MiB */
		{ (1 << 20) + 1, 3 << 20, C_OK },
		{ 0, 3 << 20, C_OK },
	};
	Csi__V1__VolumeCapability *caps[1] = { tcap_mount(NULL) };

	for (size_t i = 0; i < TS_ARRAY_SIZE(cases); i++) {
		Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
		Csi__V1__CreateVolumeRequest r;
		Csi__V1__CreateVolumeResponse *resp;
		char name[32];
		int code;

		snprintf(name, sizeof(name), "size-%zu", i);
		r = cv_req(name, caps, 1);
		cr.required_bytes = cases[i].req;
		cr.limit_bytes = cases[i].lim;
		r.capacity_range = &cr;
		code = tcall(e.d, "/csi.v1.Controller/CreateVolume", &r,
			     &csi__v1__create_volume_response__descriptor, (void **)&resp);
		cr_expect_eq(code, cases[i].code, "case %zu: want %d got %d (%s)", i, cases[i].code,
			     code, tmsg());
		if (code == 0) {
			int64_t got = resp->volume->capacity_bytes;

			cr_expect_geq(got, cases[i].req, "case %zu: %lld below required", i,
				      (long long)got);
			cr_expect(!cases[i].lim || got <= cases[i].lim, "case %zu: above limit", i);
			cr_expect_eq(got % (1 << 20), 0);
			protobuf_c_message_free_unpacked(&resp->base, NULL);
		}
	}
}

Test(csi_badinput, create_idempotent_and_conflicts)
{
	char id1[80], id2[80];
	Csi__V1__VolumeCapability *caps[1] = { tcap_mount(NULL) };
	Csi__V1__CreateVolumeRequest r = cv_req("vol", caps, 1);
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry pe =
		CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry *pp[1] = { &pe };

	cr_assert_eq(tcreate(e.d, "vol", 4 << 20, false, id1, NULL), 0, "%s", tmsg());
	cr_assert_eq(tcreate(e.d, "vol", 4 << 20, false, id2, NULL), 0, "%s", tmsg());
	cr_expect_str_eq(id1, id2, "same name, same request: same volume");
	cr_expect_eq(tcreate(e.d, "vol", 8 << 20, false, NULL, NULL), C_EXISTS);
	cr_expect_eq(tcreate(e.d, "vol", 4 << 20, true, NULL, NULL), C_EXISTS, "block vs mount");
	cr.required_bytes = 4 << 20;
	r.capacity_range = &cr;
	pe.key = "ec";
	pe.value = "4+2";
	r.parameters = pp;
	r.n_parameters = 1;
	EXPECT(C_EXISTS, "Controller/CreateVolume", r);

	{
		Csi__V1__VolumeContentSource src = CSI__V1__VOLUME_CONTENT_SOURCE__INIT;
		Csi__V1__CreateVolumeRequest r2 = cv_req("clone", caps, 1);

		r2.volume_content_source = &src;
		EXPECT(C_INVALID, "Controller/CreateVolume", r2);
	}
	{
		Csi__V1__TopologyRequirement tr = CSI__V1__TOPOLOGY_REQUIREMENT__INIT;
		Csi__V1__Topology t = CSI__V1__TOPOLOGY__INIT;
		Csi__V1__Topology__SegmentsEntry se = CSI__V1__TOPOLOGY__SEGMENTS_ENTRY__INIT;
		Csi__V1__Topology__SegmentsEntry *sp[1] = { &se };
		Csi__V1__Topology *tp[1] = { &t };
		Csi__V1__CreateVolumeRequest r3 = cv_req("topo", caps, 1);

		se.key = TS_CSI_TOPOLOGY_KEY;
		se.value = "some-other-node";
		t.segments = sp;
		t.n_segments = 1;
		tr.requisite = tp;
		tr.n_requisite = 1;
		r3.accessibility_requirements = &tr;
		EXPECT(C_EXHAUSTED, "Controller/CreateVolume", r3);
		se.value = "n1";
		EXPECT(C_OK, "Controller/CreateVolume", r3);
	}
}

/* ---- other controller RPCs ---- */

Test(csi_badinput, delete_validate_expand)
{
	Csi__V1__DeleteVolumeRequest dv = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
	Csi__V1__ValidateVolumeCapabilitiesRequest vv =
		CSI__V1__VALIDATE_VOLUME_CAPABILITIES_REQUEST__INIT;
	Csi__V1__ControllerExpandVolumeRequest ex = CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { tcap_mount(NULL) };
	Csi__V1__ValidateVolumeCapabilitiesResponse *vr;
	char id[80];

	EXPECT(C_INVALID, "Controller/DeleteVolume", dv);
	dv.volume_id = "../../meta/x";
	EXPECT(C_INVALID, "Controller/DeleteVolume", dv);
	dv.volume_id = "fv-0000";
	EXPECT(C_OK, "Controller/DeleteVolume", dv); /* unknown: idempotent success */

	EXPECT(C_INVALID, "Controller/ValidateVolumeCapabilities", vv);
	vv.volume_id = "fv-unknown";
	EXPECT(C_INVALID, "Controller/ValidateVolumeCapabilities", vv); /* no caps */
	vv.volume_capabilities = caps;
	vv.n_volume_capabilities = 1;
	EXPECT(C_NOT_FOUND, "Controller/ValidateVolumeCapabilities", vv);
	vv.volume_id = "a/b";
	EXPECT(C_INVALID, "Controller/ValidateVolumeCapabilities", vv);

	cr_assert_eq(tcreate(e.d, "v", 2 << 20, false, id, NULL), 0);
	vv.volume_id = id;
	cr_assert_eq(tcall(e.d, "/csi.v1.Controller/ValidateVolumeCapabilities", &vv,
			   &csi__v1__validate_volume_capabilities_response__descriptor, (void **)&vr),
		     0);
	cr_expect_not_null(vr->confirmed);
	protobuf_c_message_free_unpacked(&vr->base, NULL);
	caps[0]->access_mode->mode =
		CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER;
	cr_assert_eq(tcall(e.d, "/csi.v1.Controller/ValidateVolumeCapabilities", &vv,
			   &csi__v1__validate_volume_capabilities_response__descriptor, (void **)&vr),
		     0);
	cr_expect_null(vr->confirmed, "RWX is not confirmed");
	cr_expect(vr->message && vr->message[0]);
	protobuf_c_message_free_unpacked(&vr->base, NULL);

	EXPECT(C_INVALID, "Controller/ControllerExpandVolume", ex);
	ex.volume_id = id;
	EXPECT(C_INVALID, "Controller/ControllerExpandVolume", ex); /* no range */
	ex.capacity_range = &cr;
	EXPECT(C_INVALID, "Controller/ControllerExpandVolume", ex); /* empty range */
	cr.required_bytes = -5;
	EXPECT(C_INVALID, "Controller/ControllerExpandVolume", ex);
	cr.required_bytes = 1ll << 62;
	EXPECT(C_RANGE, "Controller/ControllerExpandVolume", ex);
	cr.required_bytes = 1 << 30;
	EXPECT(C_EXHAUSTED, "Controller/ControllerExpandVolume", ex);
	cr.required_bytes = 0;
	cr.limit_bytes = 1 << 20;
	EXPECT(C_RANGE, "Controller/ControllerExpandVolume", ex); /* would shrink */
	cr.limit_bytes = 0;
	cr.required_bytes = 4 << 20;
	EXPECT(C_OK, "Controller/ControllerExpandVolume", ex);
	ex.volume_id = "fv-unknown";
	EXPECT(C_NOT_FOUND, "Controller/ControllerExpandVolume", ex);
	ex.volume_id = "..";
	EXPECT(C_INVALID, "Controller/ControllerExpandVolume", ex);

	dv.volume_id = id;
	EXPECT(C_OK, "Controller/DeleteVolume", dv);
	EXPECT(C_OK, "Controller/DeleteVolume", dv);
	vv.volume_id = id;
	EXPECT(C_NOT_FOUND, "Controller/ValidateVolumeCapabilities", vv);
}

Test(csi_badinput, list_and_capacity)
{
	Csi__V1__ListVolumesRequest lv = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	Csi__V1__GetCapacityRequest gc = CSI__V1__GET_CAPACITY_REQUEST__INIT;
	Csi__V1__GetCapacityResponse *cap;
	char seen[5][80];
	size_t nseen = 0;
	char *token = NULL;

	lv.max_entries = -1;
	EXPECT(C_INVALID, "Controller/ListVolumes", lv);
	lv.max_entries = 0;
	lv.starting_token = "invalid-token";
	EXPECT(C_ABORTED, "Controller/ListVolumes", lv);
	lv.starting_token = "v1:../x";
	EXPECT(C_ABORTED, "Controller/ListVolumes", lv);

	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "l%d", i);
		cr_assert_eq(tcreate(e.d, name, 1 << 20, false, NULL, NULL), 0);
	}
	lv.max_entries = 2;
	for (int page = 0; page < 5; page++) {
		Csi__V1__ListVolumesResponse *lr;

		lv.starting_token = token;
		cr_assert_eq(tcall(e.d, "/csi.v1.Controller/ListVolumes", &lv,
				   &csi__v1__list_volumes_response__descriptor, (void **)&lr),
			     0, "%s", tmsg());
		cr_assert_leq(lr->n_entries, 2);
		for (size_t i = 0; i < lr->n_entries; i++) {
			for (size_t j = 0; j < nseen; j++)
				cr_assert_str_neq(seen[j], lr->entries[i]->volume->volume_id,
						  "listed twice");
			cr_assert_lt(nseen, 5);
			strcpy(seen[nseen++], lr->entries[i]->volume->volume_id);
		}
		free(token);
		token = lr->next_token && lr->next_token[0] ? strdup(lr->next_token) : NULL;
		protobuf_c_message_free_unpacked(&lr->base, NULL);
		if (!token)
			break;
	}
	cr_expect_eq(nseen, 5, "pagination returns every volume once");
	free(token);

	cr_assert_eq(tcall(e.d, "/csi.v1.Controller/GetCapacity", &gc,
			   &csi__v1__get_capacity_response__descriptor, (void **)&cap),
		     0);
	cr_expect_eq(cap->available_capacity, (256 << 20) - 5 * (1 << 20));
	protobuf_c_message_free_unpacked(&cap->base, NULL);
	{
		Csi__V1__GetCapacityRequest__ParametersEntry pe =
			CSI__V1__GET_CAPACITY_REQUEST__PARAMETERS_ENTRY__INIT;
		Csi__V1__GetCapacityRequest__ParametersEntry *pp[1] = { &pe };
		Csi__V1__VolumeCapability *caps[1] = { tcap_mount("zfs") };

		pe.key = "ec";
		pe.value = "nonsense";
		gc.parameters = pp;
		gc.n_parameters = 1;
		EXPECT(C_INVALID, "Controller/GetCapacity", gc);
		gc.n_parameters = 0;
		gc.volume_capabilities = caps;
		gc.n_volume_capabilities = 1;
		EXPECT(C_INVALID, "Controller/GetCapacity", gc);
	}
}

/* ---- Node ---- */

Test(csi_badinput, node_stage_unstage)
{
	Csi__V1__NodeStageVolumeRequest st = CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnstageVolumeRequest us = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry ce =
		CSI__V1__NODE_STAGE_VOLUME_REQUEST__VOLUME_CONTEXT_ENTRY__INIT;
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry *cp[1] = { &ce };
	char staging[400], outside[] = "/etc", trav[420], id[80], attach[600];

	snprintf(staging, sizeof(staging), "%s/staging", e.dir);
	snprintf(trav, sizeof(trav), "%s/../../etc", e.dir);
	cr_assert_eq(tcreate(e.d, "n", 2 << 20, false, id, attach), 0);

	EXPECT(C_INVALID, "Node/NodeStageVolume", st);
	st.volume_id = id;
	EXPECT(C_INVALID, "Node/NodeStageVolume", st); /* no staging path */
	st.staging_target_path = "relative/path";
	EXPECT(C_INVALID, "Node/NodeStageVolume", st);
	st.staging_target_path = trav;
	EXPECT(C_INVALID, "Node/NodeStageVolume", st);
	st.staging_target_path = outside;
	EXPECT(C_INVALID, "Node/NodeStageVolume", st); /* outside the prefix */
	st.staging_target_path = staging;
	EXPECT(C_INVALID, "Node/NodeStageVolume", st); /* no capability */
	st.volume_capability = tcap_mount(NULL);
	EXPECT(C_INVALID, "Node/NodeStageVolume", st); /* no attach context */
	ce.key = "csi.tessera.io/attach";
	ce.value = attach;
	st.volume_context = cp;
	st.n_volume_context = 1;
	EXPECT(C_PRECONDITION, "Node/NodeStageVolume", st); /* staging dir does not exist */
	st.volume_capability = tcap_mount("ntfs");
	EXPECT(C_INVALID, "Node/NodeStageVolume", st);
	st.volume_id = "../x";
	EXPECT(C_INVALID, "Node/NodeStageVolume", st);

	EXPECT(C_INVALID, "Node/NodeUnstageVolume", us);
	us.volume_id = id;
	EXPECT(C_INVALID, "Node/NodeUnstageVolume", us);
	us.staging_target_path = trav;
	EXPECT(C_INVALID, "Node/NodeUnstageVolume", us);
	us.staging_target_path = staging;
	EXPECT(C_OK, "Node/NodeUnstageVolume", us); /* not staged: idempotent */
}

Test(csi_badinput, node_publish_unpublish)
{
	Csi__V1__NodePublishVolumeRequest pu = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
	Csi__V1__NodeUnpublishVolumeRequest un = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
	char staging[400], target[400], trav[420];

	snprintf(staging, sizeof(staging), "%s/staging", e.dir);
	snprintf(target, sizeof(target), "%s/target", e.dir);
	snprintf(trav, sizeof(trav), "%s/a/../../../root", e.dir);

	EXPECT(C_INVALID, "Node/NodePublishVolume", pu);
	pu.volume_id = "fv-x";
	EXPECT(C_INVALID, "Node/NodePublishVolume", pu); /* no target */
	pu.target_path = trav;
	EXPECT(C_INVALID, "Node/NodePublishVolume", pu);
	pu.target_path = target;
	EXPECT(C_INVALID, "Node/NodePublishVolume", pu); /* no staging path */
	pu.staging_target_path = staging;
	EXPECT(C_INVALID, "Node/NodePublishVolume", pu); /* no capability */
	pu.volume_capability = tcap_mount(NULL);
	EXPECT(C_PRECONDITION, "Node/NodePublishVolume", pu); /* not staged */
	pu.staging_target_path = target;
	EXPECT(C_INVALID, "Node/NodePublishVolume", pu); /* target == staging */

	EXPECT(C_INVALID, "Node/NodeUnpublishVolume", un);
	un.volume_id = "fv-x";
	EXPECT(C_INVALID, "Node/NodeUnpublishVolume", un);
	un.target_path = trav;
	EXPECT(C_INVALID, "Node/NodeUnpublishVolume", un);
	un.target_path = "/";
	EXPECT(C_INVALID, "Node/NodeUnpublishVolume", un); /* outside the prefix */
	un.target_path = target;
	EXPECT(C_OK, "Node/NodeUnpublishVolume", un); /* nothing there: idempotent */
}

Test(csi_badinput, node_stats_expand_info)
{
	Csi__V1__NodeGetVolumeStatsRequest vs = CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
	Csi__V1__NodeExpandVolumeRequest ne = CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
	Csi__V1__NodeGetInfoRequest ni = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
	Csi__V1__NodeGetCapabilitiesRequest nc = CSI__V1__NODE_GET_CAPABILITIES_REQUEST__INIT;
	Csi__V1__NodeGetInfoResponse *info;
	Csi__V1__NodeGetCapabilitiesResponse *caps;

	EXPECT(C_INVALID, "Node/NodeGetVolumeStats", vs);
	vs.volume_id = "fv-x";
	EXPECT(C_INVALID, "Node/NodeGetVolumeStats", vs);
	vs.volume_path = "/tmp";
	EXPECT(C_NOT_FOUND, "Node/NodeGetVolumeStats", vs);
	vs.volume_id = "x/../../y";
	EXPECT(C_INVALID, "Node/NodeGetVolumeStats", vs);

	EXPECT(C_INVALID, "Node/NodeExpandVolume", ne);
	ne.volume_id = "fv-x";
	EXPECT(C_INVALID, "Node/NodeExpandVolume", ne);
	ne.volume_path = "some/path";
	EXPECT(C_NOT_FOUND, "Node/NodeExpandVolume", ne);

	cr_assert_eq(tcall(e.d, "/csi.v1.Node/NodeGetInfo", &ni,
			   &csi__v1__node_get_info_response__descriptor, (void **)&info), 0);
	cr_expect_str_eq(info->node_id, "n1");
	cr_expect_eq(info->max_volumes_per_node, 8);
	cr_assert_not_null(info->accessible_topology);
	cr_assert_eq(info->accessible_topology->n_segments, 1);
	cr_expect_str_eq(info->accessible_topology->segments[0]->key, TS_CSI_TOPOLOGY_KEY);
	cr_expect_str_eq(info->accessible_topology->segments[0]->value, "n1");
	protobuf_c_message_free_unpacked(&info->base, NULL);
	cr_assert_eq(tcall(e.d, "/csi.v1.Node/NodeGetCapabilities", &nc,
			   &csi__v1__node_get_capabilities_response__descriptor, (void **)&caps), 0);
	cr_expect_eq(caps->n_capabilities, 4);
	protobuf_c_message_free_unpacked(&caps->base, NULL);
}

/* Undecodable bytes: INVALID_ARGUMENT for every method; unknown methods are not found. */
Test(csi_badinput, malformed_bytes)
{
	static const char *methods[] = {
		"/csi.v1.Identity/GetPluginInfo", "/csi.v1.Identity/GetPluginCapabilities",
		"/csi.v1.Identity/Probe", "/csi.v1.Controller/CreateVolume",
		"/csi.v1.Controller/DeleteVolume", "/csi.v1.Controller/ValidateVolumeCapabilities",
		"/csi.v1.Controller/ListVolumes", "/csi.v1.Controller/GetCapacity",
		"/csi.v1.Controller/ControllerExpandVolume",
		"/csi.v1.Controller/ControllerGetCapabilities", "/csi.v1.Node/NodeStageVolume",
		"/csi.v1.Node/NodeUnstageVolume", "/csi.v1.Node/NodePublishVolume",
		"/csi.v1.Node/NodeUnpublishVolume", "/csi.v1.Node/NodeGetVolumeStats",
		"/csi.v1.Node/NodeExpandVolume", "/csi.v1.Node/NodeGetCapabilities",
		"/csi.v1.Node/NodeGetInfo",
	};
	/* field 1, wire type 2, length 100 with 2 bytes present */
	static const uint8_t bad[] = { 0x0a, 0x64, 0x41, 0x41 };

	for (size_t i = 0; i < TS_ARRAY_SIZE(methods); i++) {
		uint8_t *out = NULL;
		size_t out_len;
		int code = -1;
		char msg[256];

		cr_assert_eq(ts_csi_handle(e.d, methods[i], bad, sizeof(bad), &out, &out_len, &code,
					   msg, sizeof(msg)), 0);
		cr_expect_eq(code, C_INVALID, "%s: %d", methods[i], code);
		cr_expect_null(out);
	}
	{
		uint8_t *out = NULL;
		size_t out_len;
		int code;

		cr_expect_eq(ts_csi_handle(e.d, "/csi.v1.Controller/ControllerPublishVolume", bad, 0, &out,
					   &out_len, &code, NULL, 0), -ENOENT);
	}
}

/* ---- deadlines, cancellation, error mapping (internal API) ---- */

Test(csi_badinput, deadline_and_cancel_stop_before_handler)
{
	const struct csi_method *m = csi_method_find("/csi.v1.Controller/CreateVolume");
	Csi__V1__VolumeCapability *caps[1] = { tcap_mount(NULL) };
	Csi__V1__CreateVolumeRequest r = cv_req("late", caps, 1);
	Csi__V1__ListVolumesRequest lv = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
	Csi__V1__ListVolumesResponse *lr;
	uint8_t buf[256], *out;
	size_t n = protobuf_c_message_pack(&r.base, buf), out_len;
	atomic_bool cancelled = true;
	struct csi_call c;

	cr_assert_not_null(m);
	csi_call_init(&c);
	c.deadline_ns = 1; /* long past */
	cr_expect_eq(csi_dispatch(e.d, m, &c, buf, n, &out, &out_len), -1);
	cr_expect_eq(c.code, CSI_DEADLINE_EXCEEDED);
	csi_call_fini(&c);
	csi_call_init(&c);
	c.cancelled = &cancelled;
	cr_expect_eq(csi_dispatch(e.d, m, &c, buf, n, &out, &out_len), -1);
	cr_expect_eq(c.code, CSI_CANCELLED);
	csi_call_fini(&c);
	/* Neither call created anything. */
	cr_assert_eq(tcall(e.d, "/csi.v1.Controller/ListVolumes", &lv,
			   &csi__v1__list_volumes_response__descriptor, (void **)&lr), 0);
	cr_expect_eq(lr->n_entries, 0);
	protobuf_c_message_free_unpacked(&lr->base, NULL);
	/* A live call with a future deadline runs. */
	csi_call_init(&c);
	c.deadline_ns = ts_now_ns() + 60ull * 1000000000ull;
	cancelled = false;
	c.cancelled = &cancelled;
	cr_expect_eq(csi_dispatch(e.d, m, &c, buf, n, &out, &out_len), 0, "%s", c.msg);
	ts_free(out);
	csi_call_fini(&c);
}

Test(csi_badinput, error_mapping)
{
	cr_expect_eq(csi_code_from_err(0), CSI_OK);
	cr_expect_eq(csi_code_from_err(-ENOENT), CSI_NOT_FOUND);
	cr_expect_eq(csi_code_from_err(-EEXIST), CSI_ALREADY_EXISTS);
	cr_expect_eq(csi_code_from_err(-EINVAL), CSI_INVALID_ARGUMENT);
	cr_expect_eq(csi_code_from_err(-ERANGE), CSI_OUT_OF_RANGE);
	cr_expect_eq(csi_code_from_err(-ENOSPC), CSI_RESOURCE_EXHAUSTED);
	cr_expect_eq(csi_code_from_err(TS_ERR_NO_SPACE), CSI_RESOURCE_EXHAUSTED);
	cr_expect_eq(csi_code_from_err(-ENOMEM), CSI_RESOURCE_EXHAUSTED);
	cr_expect_eq(csi_code_from_err(TS_ERR_DEGRADED), CSI_UNAVAILABLE);
	cr_expect_eq(csi_code_from_err(-EAGAIN), CSI_UNAVAILABLE);
	cr_expect_eq(csi_code_from_err(-EBUSY), CSI_FAILED_PRECONDITION);
	cr_expect_eq(csi_code_from_err(-ETIMEDOUT), CSI_DEADLINE_EXCEEDED);
	cr_expect_eq(csi_code_from_err(-ECANCELED), CSI_CANCELLED);
	cr_expect_eq(csi_code_from_err(-EIO), CSI_INTERNAL);
	cr_expect_eq(csi_code_from_err(TS_ERR_CORRUPT), CSI_INTERNAL);
}
