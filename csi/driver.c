/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The driver object: one per process, shared by every service. It owns the
 * configuration, the backend and store handles, and the locks the services
 * take (csi_priv.h), and it is the one place that knows every service's
 * method table: ts_csi_handle() and the server loop find a method here and
 * run it through the request cycle of call.c.
 *
 * Dependencies point one way: driver.c calls the services (the node
 * service's staging records at create/destroy) and call.c; the services call
 * only call.c, never back into this file.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "csi/call.h"
#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

/* ---- methods ---- */

const struct csi_method *csi_method_find(const char *path)
{
	const struct {
		const struct csi_method *m;
		const size_t *n;
	} tables[] = {
		{ csi_identity_methods, &csi_identity_method_count },
		{ csi_controller_methods, &csi_controller_method_count },
		{ csi_group_methods, &csi_group_method_count },
		{ csi_node_methods, &csi_node_method_count },
		{ csi_admin_methods, &csi_admin_method_count },
		{ csi_engine_methods, &csi_engine_method_count },
	};

	for (size_t t = 0; t < TS_ARRAY_SIZE(tables); t++) {
		const struct csi_method *m = csi_method_in(tables[t].m, *tables[t].n, path);

		if (m)
			return m;
	}
	return NULL;
}

int ts_csi_handle(struct ts_csi_driver *d, const char *method, const uint8_t *req,
		  size_t req_len, uint8_t **resp, size_t *resp_len, int *code, char *msg,
		  size_t msg_len)
{
	const struct csi_method *m = csi_method_find(method);
	struct csi_call c;

	*resp = NULL;
	*resp_len = 0;
	if (!m)
		return -ENOENT;
	csi_call_init(&c);
	csi_dispatch(d, m, &c, req, req_len, resp, resp_len);
	*code = c.code;
	if (msg && msg_len)
		snprintf(msg, msg_len, "%s", c.msg);
	csi_call_fini(&c);
	return 0;
}

/* ---- driver ---- */

int ts_csi_driver_create(const struct ts_csi_config *cfg,
			 const struct ts_csi_backend_ops *be, void *be_ctx,
			 const struct ts_csi_store_ops *st, void *st_ctx,
			 struct ts_csi_driver **out)
{
	struct ts_csi_driver *d = NULL;
	const char *prefix;
	int rc = -EINVAL;

	*out = NULL;
	if (!cfg || !be || !cfg->state_dir || (cfg->controller && !st) ||
	    (cfg->node && (!cfg->node_id || !cfg->node_id[0])))
		goto fail;
	rc = -ENOMEM;
	d = ts_calloc(1, sizeof(*d));
	if (!d)
		goto fail;
	pthread_mutex_init(&d->ctl_lock, NULL);
	pthread_mutex_init(&d->node_lock, NULL);
	prefix = cfg->path_prefix && strcmp(cfg->path_prefix, "/") ? cfg->path_prefix : "";
	d->node_id = ts_strdup(cfg->node_id ? cfg->node_id : "");
	d->state_dir = ts_strdup(cfg->state_dir);
	d->path_prefix = ts_strdup(prefix);
	d->node_dir = ts_malloc(strlen(cfg->state_dir) + 6);
	if (!d->node_id || !d->state_dir || !d->path_prefix || !d->node_dir)
		goto fail;
	sprintf(d->node_dir, "%s/node", cfg->state_dir);
	/* A trailing '/' on the prefix would make every path fail the check. */
	for (size_t n = strlen(d->path_prefix); n > 1 && d->path_prefix[n - 1] == '/'; n--)
		d->path_prefix[n - 1] = '\0';
	d->max_volumes_per_node = cfg->max_volumes_per_node;
	d->default_volume_bytes = cfg->default_volume_bytes ? cfg->default_volume_bytes : 1ull << 30;
	d->max_volume_bytes = cfg->max_volume_bytes ? cfg->max_volume_bytes : 64ull << 40;
	d->controller = cfg->controller;
	d->node = cfg->node;
	d->be = be;
	d->be_ctx = be_ctx;
	d->st = st;
	d->st_ctx = st_ctx;
	if (d->node) {
		rc = csi_node_load(d);
		if (rc)
			goto fail;
	}
	/* The engines enforce QoS; the store remembers it: hand it back after a restart. */
	rc = csi_qos_reapply(d);
	if (rc)
		goto fail;
	*out = d;
	return 0;
fail:
	ts_csi_driver_destroy(d);
	return rc;
}

int ts_csi_driver_set_gate(struct ts_csi_driver *d, int (*gate)(void *arg), void *arg)
{
	if (!d)
		return -EINVAL;
	d->gate = gate;
	d->gate_arg = arg;
	return 0;
}

void ts_csi_driver_destroy(struct ts_csi_driver *d)
{
	if (!d)
		return;
	csi_node_free(d);
	csi_engine_free(d->engine);
	pthread_mutex_destroy(&d->ctl_lock);
	pthread_mutex_destroy(&d->node_lock);
	ts_free(d->node_id);
	ts_free(d->state_dir);
	ts_free(d->node_dir);
	ts_free(d->path_prefix);
	ts_free(d);
}
