/* SPDX-License-Identifier: Apache-2.0 */
/*
 * QoS through CSI, on the in-memory backend with set_qos (no devices): the
 * parameter keys from a StorageClass and a VolumeAttributesClass, their
 * validation, ControllerModifyVolume's merge of only the keys it is given,
 * idempotent retries, what the store keeps, and the limits handed back to
 * the backend when the driver starts again. Enforcement is the data plane's
 * (unit/dataplane/qos, unit/csi/group for the whole stack).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "csi/csi.h"
#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"

static struct tenv g_e;

static void setup(void)
{
	tenv_init(&g_e, &tmem_qos_backend_ops, tmem_backend_new(1ull << 30), 0);
}

static void teardown(void)
{
	tenv_fini(&g_e);
	tfree_all();
}

TestSuite(csi_qos, .init = setup, .fini = teardown);

/* Map entries of type \p desc from "k=v" strings (at most 8). */
static void **kvs(const ProtobufCMessageDescriptor *desc, const char *const *kv, size_t n)
{
	static struct csi_kv e[4][8];
	static int slot;
	void **out = calloc(n ? n : 1, sizeof(void *));
	struct csi_kv *es = e[slot++ % 4];

	cr_assert_leq(n, 8);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(kv[i], '=');

		protobuf_c_message_init(desc, &es[i]);
		es[i].key = strndup(kv[i], (size_t)(eq - kv[i]));
		es[i].value = strdup(eq + 1);
		out[i] = &es[i];
	}
	return out;
}

static void kvs_free(void **m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(((struct csi_kv *)m[i])->key);
		free(((struct csi_kv *)m[i])->value);
	}
	free(m);
}

/* CreateVolume \p name with StorageClass \p params and mutable \p mut; the id into \p id. */
static int create(const char *name, const char *const *params, size_t np, const char *const *mut,
		  size_t nm, char id[TS_CSI_ID_MAX + 1])
{
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__VolumeCapability *caps[1] = { tcap_block() };
	Csi__V1__CreateVolumeResponse *resp = NULL;
	int code;

	r.name = (char *)name;
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	r.parameters = (void *)kvs(&csi__v1__create_volume_request__parameters_entry__descriptor,
				   params, np);
	r.n_parameters = np;
	r.mutable_parameters = (void *)kvs(
		&csi__v1__create_volume_request__mutable_parameters_entry__descriptor, mut, nm);
	r.n_mutable_parameters = nm;
	code = tcall(g_e.d, "/csi.v1.Controller/CreateVolume", &r,
		     &csi__v1__create_volume_response__descriptor, (void **)&resp);
	if (code == 0) {
		snprintf(id, TS_CSI_ID_MAX + 1, "%s", resp->volume->volume_id);
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	}
	kvs_free((void **)r.parameters, np);
	kvs_free((void **)r.mutable_parameters, nm);
	return code;
}

static int modify(const char *id, const char *const *mut, size_t nm)
{
	Csi__V1__ControllerModifyVolumeRequest r = CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__INIT;
	int code;

	r.volume_id = (char *)id;
	r.mutable_parameters = (void *)kvs(
		&csi__v1__controller_modify_volume_request__mutable_parameters_entry__descriptor, mut,
		nm);
	r.n_mutable_parameters = nm;
	code = tcall(g_e.d, "/csi.v1.Controller/ControllerModifyVolume", &r,
		     &csi__v1__controller_modify_volume_response__descriptor, NULL);
	kvs_free((void **)r.mutable_parameters, nm);
	return code;
}

/* What the backend was last told for \p id, and what the store keeps. */
static struct ts_csi_qos engine(const char *id, unsigned *calls)
{
	struct ts_csi_qos q, stored;
	struct ts_csi_volume v;
	unsigned c;

	cr_assert_eq(tmem_qos(g_e.be_ctx, id, &q, &c), 0);
	cr_assert_eq(g_e.st->get(g_e.st_ctx, id, &v), 0);
	stored = v.qos;
	cr_assert_eq(memcmp(&q, &stored, sizeof(q)), 0, "the store and the engine disagree");
	if (calls)
		*calls = c;
	return q;
}

Test(csi_qos, modify_volume_is_advertised)
{
	Csi__V1__ControllerGetCapabilitiesRequest r = CSI__V1__CONTROLLER_GET_CAPABILITIES_REQUEST__INIT;
	Csi__V1__ControllerGetCapabilitiesResponse *resp;
	bool have = false;

	cr_assert_eq(tcall(g_e.d, "/csi.v1.Controller/ControllerGetCapabilities", &r,
			   &csi__v1__controller_get_capabilities_response__descriptor,
			   (void **)&resp),
		     0);
	for (size_t i = 0; i < resp->n_capabilities; i++)
		have = have || resp->capabilities[i]->rpc->type ==
				       CSI__V1__CONTROLLER_SERVICE_CAPABILITY__RPC__TYPE__MODIFY_VOLUME;
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	cr_expect(have, "MODIFY_VOLUME not advertised with a backend that has set_qos");
}

Test(csi_qos, storage_class_then_class_take_precedence)
{
	const char *params[] = { "iopsLimit=500", "writeBpsLimit=8Mi", "ec=4+2" };
	const char *mut[] = { "iopsLimit=300", "burstMs=250" };
	char id[TS_CSI_ID_MAX + 1];
	struct ts_csi_qos q;
	unsigned calls;

	cr_assert_eq(create("v1", params, 3, mut, 2, id), 0, "%s", tmsg());
	q = engine(id, &calls);
	cr_expect_eq(q.iops, 300, "mutable_parameters take precedence");
	cr_expect_eq(q.write_bps, 8u << 20);
	cr_expect_eq(q.burst_ms, 250);
	cr_expect_eq(calls, 1);
	cr_assert_eq(create("v0", NULL, 0, NULL, 0, id), 0);
	q = engine(id, &calls);
	cr_expect_eq(calls, 0, "no QoS, no call");
}

Test(csi_qos, modify_changes_only_the_given_keys)
{
	const char *mut[] = { "iopsLimit=300", "readBpsLimit=1G" };
	const char *m1[] = { "writeIopsLimit=50" };
	const char *m2[] = { "iopsLimit=0", "iopsReservation=20" };
	char id[TS_CSI_ID_MAX + 1];
	struct ts_csi_qos q;
	unsigned calls;

	cr_assert_eq(create("v", NULL, 0, mut, 2, id), 0, "%s", tmsg());
	cr_assert_eq(modify(id, m1, 1), 0, "%s", tmsg());
	q = engine(id, &calls);
	cr_expect_eq(q.iops, 300);
	cr_expect_eq(q.read_bps, 1000000000ull);
	cr_expect_eq(q.write_iops, 50);
	cr_expect_eq(calls, 2);
	cr_assert_eq(modify(id, m1, 1), 0, "a retry succeeds");
	engine(id, &calls);
	cr_expect_eq(calls, 2, "a retry that changes nothing does not touch the engine");
	cr_assert_eq(modify(id, m2, 2), 0, "%s", tmsg());
	q = engine(id, &calls);
	cr_expect_eq(q.iops, 0, "0 lifts a limit");
	cr_expect_eq(q.reserve_iops, 20);
	cr_expect_eq(q.write_iops, 50);
	cr_assert_eq(modify(id, NULL, 0), 0, "no keys: nothing to change");
}

Test(csi_qos, bad_input_is_refused_and_changes_nothing)
{
	const char *mut[] = { "iopsLimit=100" };
	const char *bad[][2] = {
		{ "XXX_FakeKey=1", NULL },	    { "iopsLimit=abc", NULL },
		{ "iopsLimit=-5", NULL },	    { "bpsLimit=12Qi", NULL },
		{ "iopsLimit=12k", NULL },	    { "burstMs=60001", NULL },
		{ "iopsReservation=200", NULL }, { "iopsLimit=99999999999999999999", NULL },
		{ "ec=4+2", NULL },		    { "fsType=ext4", NULL },
	};
	const char *pbad[] = { "iopsLimit=x" };
	const char *over[] = { "iopsLimit=100", "iopsReservation=200" };
	char id[TS_CSI_ID_MAX + 1], id2[TS_CSI_ID_MAX + 1];
	struct ts_csi_qos q;

	cr_assert_eq(create("v", NULL, 0, mut, 1, id), 0, "%s", tmsg());
	for (size_t i = 0; i < TS_ARRAY_SIZE(bad); i++) {
		cr_expect_eq(modify(id, bad[i], 1), CSI_INVALID_ARGUMENT, "%s accepted", bad[i][0]);
		cr_expect(strlen(tmsg()) > 10, "no message for %s", bad[i][0]);
	}
	q = engine(id, NULL);
	cr_expect_eq(q.iops, 100, "a refused modify changed the volume");
	cr_expect_eq(modify("mv-0000000000000000", mut, 1), CSI_NOT_FOUND);
	cr_expect_eq(modify("", mut, 1), CSI_INVALID_ARGUMENT);
	cr_expect_eq(create("w", pbad, 1, NULL, 0, id2), CSI_INVALID_ARGUMENT);
	cr_expect_eq(create("w", NULL, 0, bad[0], 1, id2), CSI_INVALID_ARGUMENT,
		     "an unknown mutable key at creation");
	cr_expect_eq(create("w", NULL, 0, over, 2, id2), CSI_INVALID_ARGUMENT,
		     "a reservation above the limit at creation");
}

Test(csi_qos, limits_are_handed_back_after_a_restart)
{
	const char *mut[] = { "writeIopsLimit=40", "iopsReservation=10" };
	struct ts_csi_config cfg = { .node_id = "n1", .controller = true, .node = true,
				     .max_volumes_per_node = 8, .default_volume_bytes = 8 << 20,
				     .state_dir = g_e.dir, .path_prefix = g_e.dir };
	char id[TS_CSI_ID_MAX + 1], id0[TS_CSI_ID_MAX + 1];
	struct ts_csi_qos q;
	unsigned calls;

	cr_assert_eq(create("v", NULL, 0, mut, 2, id), 0, "%s", tmsg());
	cr_assert_eq(create("plain", NULL, 0, NULL, 0, id0), 0);
	ts_csi_driver_destroy(g_e.d);
	g_e.d = NULL;
	cr_assert_eq(ts_csi_driver_create(&cfg, g_e.be, g_e.be_ctx, g_e.st, g_e.st_ctx, &g_e.d), 0);
	q = engine(id, &calls);
	cr_expect_eq(calls, 2, "the restart did not re-apply the stored limits");
	cr_expect_eq(q.write_iops, 40);
	cr_expect_eq(q.reserve_iops, 10);
	engine(id0, &calls);
	cr_expect_eq(calls, 0);
}

Test(csi_qos, file_backend_refuses_qos)
{
	struct tenv f;
	Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__VolumeCapability *caps[1] = { tcap_block() };
	const char *mut[] = { "iopsLimit=1" };

	tenv_init(&f, NULL, NULL, 1 << 30);
	r.name = "x";
	r.volume_capabilities = caps;
	r.n_volume_capabilities = 1;
	r.mutable_parameters = (void *)kvs(
		&csi__v1__create_volume_request__mutable_parameters_entry__descriptor, mut, 1);
	r.n_mutable_parameters = 1;
	cr_expect_eq(tcall(f.d, "/csi.v1.Controller/CreateVolume", &r, NULL, NULL),
		     CSI_INVALID_ARGUMENT);
	cr_expect(strstr(tmsg(), "MODIFY_VOLUME"), "%s", tmsg());
	kvs_free((void **)r.mutable_parameters, 1);
	r.parameters = (void *)kvs(&csi__v1__create_volume_request__parameters_entry__descriptor,
				   mut, 1);
	r.n_parameters = 1;
	r.n_mutable_parameters = 0;
	r.mutable_parameters = NULL;
	cr_expect_eq(tcall(f.d, "/csi.v1.Controller/CreateVolume", &r, NULL, NULL),
		     CSI_INVALID_ARGUMENT, "a StorageClass QoS key the backend cannot apply");
	kvs_free((void **)r.parameters, 1);
	cr_expect_eq(tcall(f.d, "/csi.v1.Controller/ControllerModifyVolume",
			   &(Csi__V1__ControllerModifyVolumeRequest)
				   CSI__V1__CONTROLLER_MODIFY_VOLUME_REQUEST__INIT,
			   NULL, NULL),
		     CSI_UNIMPLEMENTED);
	tenv_fini(&f);
}
