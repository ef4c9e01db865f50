/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI Identity service: who the plugin is, what it offers, whether it is
 * ready.
 *
 * The plugin name is TS_CSI_DRIVER_NAME ("csi.tessera.io"): a DNS-style name
 * under a domain the project controls, as the spec asks (reverse of the
 * earlier "tessera.csi.io" idea, which would claim csi.io). Capabilities
 * follow what this driver object serves: CONTROLLER_SERVICE and
 * VOLUME_ACCESSIBILITY_CONSTRAINTS when the controller is on, ONLINE volume
 * expansion always (ControllerExpandVolume grows the backing volume,
 * NodeExpandVolume the mounted filesystem).
 *
 * Probe asks the backend: ready=true only when backend->probe() returns 0;
 * -EAGAIN (still starting, not enough members) answers ready=false; any other
 * error answers FAILED_PRECONDITION with the reason.
 */
#include <errno.h>
#include <string.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#ifndef TS_VERSION
#define TS_VERSION "0.1.0"
#endif

static int get_plugin_info(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			   void *respp)
{
	Csi__V1__GetPluginInfoResponse *resp = respp;

	(void)d;
	(void)reqp;
	resp->name = csi_strdup(c, TS_CSI_DRIVER_NAME);
	resp->vendor_version = csi_strdup(c, TS_VERSION);
	if (!resp->name || !resp->vendor_version)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

static Csi__V1__PluginCapability *svc_cap(struct csi_call *c,
					  Csi__V1__PluginCapability__Service__Type t)
{
	Csi__V1__PluginCapability *cap = csi_alloc(c, sizeof(*cap));
	Csi__V1__PluginCapability__Service *s = csi_alloc(c, sizeof(*s));

	if (!cap || !s)
		return NULL;
	csi__v1__plugin_capability__init(cap);
	csi__v1__plugin_capability__service__init(s);
	s->type = t;
	cap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_SERVICE;
	cap->service = s;
	return cap;
}

static int get_plugin_capabilities(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
				   void *respp)
{
	Csi__V1__GetPluginCapabilitiesResponse *resp = respp;
	Csi__V1__PluginCapability **caps = csi_alloc(c, 5 * sizeof(*caps));
	Csi__V1__PluginCapability__VolumeExpansion *ve = csi_alloc(c, sizeof(*ve));
	Csi__V1__PluginCapability *vcap = csi_alloc(c, sizeof(*vcap));
	size_t n = 0;

	(void)reqp;
	if (!caps || !ve || !vcap)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	if (d->controller) {
		caps[n] = svc_cap(c, CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__CONTROLLER_SERVICE);
		caps[n + 1] = svc_cap(
			c, CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__VOLUME_ACCESSIBILITY_CONSTRAINTS);
		if (!caps[n] || !caps[n + 1])
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		n += 2;
		if (d->be->snap_delta) {
			caps[n] = svc_cap(
				c, CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__SNAPSHOT_METADATA_SERVICE);
			if (!caps[n++])
				return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		}
		if (csi_groups_supported(d)) {
			caps[n] = svc_cap(
				c, CSI__V1__PLUGIN_CAPABILITY__SERVICE__TYPE__GROUP_CONTROLLER_SERVICE);
			if (!caps[n++])
				return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		}
	}
	csi__v1__plugin_capability__init(vcap);
	csi__v1__plugin_capability__volume_expansion__init(ve);
	ve->type = CSI__V1__PLUGIN_CAPABILITY__VOLUME_EXPANSION__TYPE__ONLINE;
	vcap->type_case = CSI__V1__PLUGIN_CAPABILITY__TYPE_VOLUME_EXPANSION;
	vcap->volume_expansion = ve;
	caps[n++] = vcap;
	resp->capabilities = caps;
	resp->n_capabilities = n;
	return 0;
}

static int probe(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	Csi__V1__ProbeResponse *resp = respp;
	Google__Protobuf__BoolValue *ready = csi_alloc(c, sizeof(*ready));
	int rc;

	(void)reqp;
	if (!ready)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	google__protobuf__bool_value__init(ready);
	rc = d->be->probe(d->be_ctx);
	if (rc && rc != -EAGAIN && rc != TS_ERR_DEGRADED)
		return csi_fail(c, CSI_FAILED_PRECONDITION, "backend %s is unhealthy: %s",
				d->be->name, ts_strerror(rc));
	ready->value = rc == 0;
	resp->ready = ready;
	return 0;
}

#define M(svc, name, lname, fn)                                                     \
	{ "/csi.v1." svc "/" name, &csi__v1__##lname##_request__descriptor,           \
	  &csi__v1__##lname##_response__descriptor, fn }

const struct csi_method csi_identity_methods[] = {
	M("Identity", "GetPluginInfo", get_plugin_info, get_plugin_info),
	M("Identity", "GetPluginCapabilities", get_plugin_capabilities, get_plugin_capabilities),
	M("Identity", "Probe", probe, probe),
};
const size_t csi_identity_method_count = TS_ARRAY_SIZE(csi_identity_methods);
