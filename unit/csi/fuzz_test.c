/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Fuzz harness for the request handlers: random bytes and mutated valid
 * requests go through decode -> handler -> encode (ts_csi_handle) for every
 * method, some with allocation failures injected. Every call must return a
 * gRPC code in range, a message with every error, and a response that
 * decodes with every success; ASan/UBSan catch the rest.
 *
 * Bounded and deterministic: TS_FUZZ_ITERS calls (default 100000) from seed
 * TS_FUZZ_SEED (default 1; printed so a failure can be replayed). The driver
 * runs on the in-memory backend, with node paths confined to its scratch
 * directory, so no input can reach a device or a path outside it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"

struct seed {
	const char *method;
	uint8_t *buf;
	size_t len;
};

static struct seed g_seeds[64];
static size_t g_nseeds;
static uint64_t g_rng;

static uint64_t rnd(void)
{
	/* xorshift64* */
	g_rng ^= g_rng >> 12;
	g_rng ^= g_rng << 25;
	g_rng ^= g_rng >> 27;
	return g_rng * 2685821657736338717ull;
}

static void add_seed(const char *method, const void *msg)
{
	struct seed *s = &g_seeds[g_nseeds++];

	cr_assert_leq(g_nseeds, TS_ARRAY_SIZE(g_seeds));
	s->method = method;
	s->len = protobuf_c_message_get_packed_size(msg);
	s->buf = malloc(s->len + 1);
	protobuf_c_message_pack(msg, s->buf);
}

static void make_seeds(const char *dir)
{
	static char staging[300], target[300];
	Csi__V1__VolumeCapability *caps[2] = { tcap_mount("ext4"), tcap_block() };
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry pe =
		CSI__V1__CREATE_VOLUME_REQUEST__PARAMETERS_ENTRY__INIT;
	Csi__V1__CreateVolumeRequest__ParametersEntry *pp[1] = { &pe };
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry ce =
		CSI__V1__NODE_STAGE_VOLUME_REQUEST__VOLUME_CONTEXT_ENTRY__INIT;
	Csi__V1__NodeStageVolumeRequest__VolumeContextEntry *cp[1] = { &ce };

	snprintf(staging, sizeof(staging), "%s/staging", dir);
	snprintf(target, sizeof(target), "%s/target", dir);
	cr.required_bytes = 4 << 20;
	pe.key = "ec";
	pe.value = "4+2";
	ce.key = "csi.tessera.io/attach";
	ce.value = "mem://mv-1";
	{
		Csi__V1__GetPluginInfoRequest r = CSI__V1__GET_PLUGIN_INFO_REQUEST__INIT;
		add_seed("/csi.v1.Identity/GetPluginInfo", &r);
	}
	{
		Csi__V1__GetPluginCapabilitiesRequest r = CSI__V1__GET_PLUGIN_CAPABILITIES_REQUEST__INIT;
		add_seed("/csi.v1.Identity/GetPluginCapabilities", &r);
	}
	{
		Csi__V1__ProbeRequest r = CSI__V1__PROBE_REQUEST__INIT;
		add_seed("/csi.v1.Identity/Probe", &r);
	}
	{
		Csi__V1__CreateVolumeRequest r = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
		r.name = "fuzz-vol";
		r.capacity_range = &cr;
		r.volume_capabilities = caps;
		r.n_volume_capabilities = 1;
		r.parameters = pp;
		r.n_parameters = 1;
		add_seed("/csi.v1.Controller/CreateVolume", &r);
		r.volume_capabilities = &caps[1];
		r.n_parameters = 0;
		add_seed("/csi.v1.Controller/CreateVolume", &r);
	}
	{
		Csi__V1__DeleteVolumeRequest r = CSI__V1__DELETE_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		add_seed("/csi.v1.Controller/DeleteVolume", &r);
	}
	{
		Csi__V1__ValidateVolumeCapabilitiesRequest r =
			CSI__V1__VALIDATE_VOLUME_CAPABILITIES_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.volume_capabilities = caps;
		r.n_volume_capabilities = 2;
		add_seed("/csi.v1.Controller/ValidateVolumeCapabilities", &r);
	}
	{
		Csi__V1__ListVolumesRequest r = CSI__V1__LIST_VOLUMES_REQUEST__INIT;
		r.max_entries = 2;
		r.starting_token = "v1:mv-0";
		add_seed("/csi.v1.Controller/ListVolumes", &r);
	}
	{
		Csi__V1__GetCapacityRequest r = CSI__V1__GET_CAPACITY_REQUEST__INIT;
		r.volume_capabilities = caps;
		r.n_volume_capabilities = 1;
		add_seed("/csi.v1.Controller/GetCapacity", &r);
	}
	{
		Csi__V1__ControllerExpandVolumeRequest r =
			CSI__V1__CONTROLLER_EXPAND_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.capacity_range = &cr;
		r.volume_capability = caps[0];
		add_seed("/csi.v1.Controller/ControllerExpandVolume", &r);
	}
	{
		Csi__V1__ControllerGetCapabilitiesRequest r =
			CSI__V1__CONTROLLER_GET_CAPABILITIES_REQUEST__INIT;
		add_seed("/csi.v1.Controller/ControllerGetCapabilities", &r);
	}
	{
		Csi__V1__NodeStageVolumeRequest r = CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.staging_target_path = staging;
		r.volume_capability = caps[0];
		r.volume_context = cp;
		r.n_volume_context = 1;
		add_seed("/csi.v1.Node/NodeStageVolume", &r);
	}
	{
		Csi__V1__NodeUnstageVolumeRequest r = CSI__V1__NODE_UNSTAGE_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.staging_target_path = staging;
		add_seed("/csi.v1.Node/NodeUnstageVolume", &r);
	}
	{
		Csi__V1__NodePublishVolumeRequest r = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.staging_target_path = staging;
		r.target_path = target;
		r.volume_capability = caps[1];
		r.readonly = 1;
		add_seed("/csi.v1.Node/NodePublishVolume", &r);
	}
	{
		Csi__V1__NodeUnpublishVolumeRequest r = CSI__V1__NODE_UNPUBLISH_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.target_path = target;
		add_seed("/csi.v1.Node/NodeUnpublishVolume", &r);
	}
	{
		Csi__V1__NodeGetVolumeStatsRequest r = CSI__V1__NODE_GET_VOLUME_STATS_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.volume_path = target;
		add_seed("/csi.v1.Node/NodeGetVolumeStats", &r);
	}
	{
		Csi__V1__NodeExpandVolumeRequest r = CSI__V1__NODE_EXPAND_VOLUME_REQUEST__INIT;
		r.volume_id = "mv-0123456789abcdef";
		r.volume_path = target;
		r.capacity_range = &cr;
		add_seed("/csi.v1.Node/NodeExpandVolume", &r);
	}
	{
		Csi__V1__NodeGetCapabilitiesRequest r = CSI__V1__NODE_GET_CAPABILITIES_REQUEST__INIT;
		add_seed("/csi.v1.Node/NodeGetCapabilities", &r);
	}
	{
		Csi__V1__NodeGetInfoRequest r = CSI__V1__NODE_GET_INFO_REQUEST__INIT;
		add_seed("/csi.v1.Node/NodeGetInfo", &r);
	}
}

/* 1..8 random edits of a copy of \p s: flips, overwrites, inserts, deletes, truncation. */
static size_t mutate(const struct seed *s, uint8_t *out, size_t cap)
{
	size_t len = TS_MIN(s->len, cap);
	int edits = 1 + (int)(rnd() % 8);

	memcpy(out, s->buf, len);
	for (int i = 0; i < edits; i++) {
		size_t at = len ? rnd() % len : 0;

		switch (rnd() % 5) {
		case 0:
			if (len)
				out[at] ^= (uint8_t)(1u << (rnd() % 8));
			break;
		case 1:
			if (len)
				out[at] = (uint8_t)rnd();
			break;
		case 2:
			if (len < cap) {
				memmove(out + at + 1, out + at, len - at);
				out[at] = (uint8_t)rnd();
				len++;
			}
			break;
		case 3:
			if (len) {
				memmove(out + at, out + at + 1, len - at - 1);
				len--;
			}
			break;
		default:
			len = at;
			break;
		}
	}
	return len;
}

static const ProtobufCMessageDescriptor *resp_desc(const char *method);

Test(csi_fuzz, handlers_survive_random_input, .timeout = 240)
{
	const char *it = getenv("TS_FUZZ_ITERS"), *sd = getenv("TS_FUZZ_SEED");
	long iters = it ? atol(it) : 100000;
	uint64_t seed = sd ? strtoull(sd, NULL, 0) : 1;
	long ok = 0, errors = 0;
	struct tenv e;
	uint8_t buf[1024];

	g_tenv_base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	tenv_init(&e, &tmem_backend_ops, tmem_backend_new(1ull << 40), 0);
	make_seeds(e.dir);
	g_rng = seed * 0x9e3779b97f4a7c15ull + 1;
	fprintf(stderr, "csi_fuzz: seed=%llu iters=%ld\n", (unsigned long long)seed, iters);
	for (long i = 0; i < iters; i++) {
		const struct seed *s = &g_seeds[rnd() % g_nseeds];
		size_t len;
		uint8_t *out = NULL;
		size_t out_len = 0;
		int code = -1;
		char msg[512] = "";
		bool inject = rnd() % 10 == 0;

		if (rnd() % 2) {
			len = rnd() % 300;
			for (size_t k = 0; k < len; k++)
				buf[k] = (uint8_t)rnd();
		} else {
			len = mutate(s, buf, sizeof(buf));
		}
		if (inject)
			ts_alloc_fail_after((long)(rnd() % 24));
		cr_assert_eq(ts_csi_handle(e.d, s->method, buf, len, &out, &out_len, &code, msg,
					   sizeof(msg)), 0);
		if (inject)
			ts_alloc_fail_after(-1);
		cr_assert(code >= 0 && code <= 16, "iter %ld %s: code %d", i, s->method, code);
		if (code == 0) {
			ProtobufCMessage *m = protobuf_c_message_unpack(resp_desc(s->method), NULL,
									 out_len, out);

			cr_assert_not_null(m, "iter %ld %s: response does not decode", i, s->method);
			protobuf_c_message_free_unpacked(m, NULL);
			ok++;
		} else {
			cr_assert_null(out);
			cr_assert(msg[0], "iter %ld %s: code %d without message", i, s->method, code);
			errors++;
		}
		ts_free(out);
	}
	fprintf(stderr, "csi_fuzz: ok=%ld errors=%ld\n", ok, errors);
	cr_expect_gt(ok, 0, "some mutated requests must still be valid");
	cr_expect_gt(errors, 0);
	for (size_t i = 0; i < g_nseeds; i++)
		free(g_seeds[i].buf);
	tenv_fini(&e);
}

static const ProtobufCMessageDescriptor *resp_desc(const char *method)
{
	static const struct {
		const char *m;
		const ProtobufCMessageDescriptor *d;
	} t[] = {
		{ "GetPluginInfo", &csi__v1__get_plugin_info_response__descriptor },
		{ "GetPluginCapabilities", &csi__v1__get_plugin_capabilities_response__descriptor },
		{ "Probe", &csi__v1__probe_response__descriptor },
		{ "CreateVolume", &csi__v1__create_volume_response__descriptor },
		{ "DeleteVolume", &csi__v1__delete_volume_response__descriptor },
		{ "ValidateVolumeCapabilities",
		  &csi__v1__validate_volume_capabilities_response__descriptor },
		{ "ListVolumes", &csi__v1__list_volumes_response__descriptor },
		{ "GetCapacity", &csi__v1__get_capacity_response__descriptor },
		{ "ControllerExpandVolume", &csi__v1__controller_expand_volume_response__descriptor },
		{ "ControllerGetCapabilities",
		  &csi__v1__controller_get_capabilities_response__descriptor },
		{ "NodeStageVolume", &csi__v1__node_stage_volume_response__descriptor },
		{ "NodeUnstageVolume", &csi__v1__node_unstage_volume_response__descriptor },
		{ "NodePublishVolume", &csi__v1__node_publish_volume_response__descriptor },
		{ "NodeUnpublishVolume", &csi__v1__node_unpublish_volume_response__descriptor },
		{ "NodeGetVolumeStats", &csi__v1__node_get_volume_stats_response__descriptor },
		{ "NodeExpandVolume", &csi__v1__node_expand_volume_response__descriptor },
		{ "NodeGetCapabilities", &csi__v1__node_get_capabilities_response__descriptor },
		{ "NodeGetInfo", &csi__v1__node_get_info_response__descriptor },
	};
	const char *name = strrchr(method, '/') + 1;

	for (size_t i = 0; i < TS_ARRAY_SIZE(t); i++)
		if (!strcmp(t[i].m, name))
			return t[i].d;
	cr_assert_fail("no response descriptor for %s", method);
	return NULL;
}
