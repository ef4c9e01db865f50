/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node ids by host name in a ConfigMap (node_ids.h): read, decide, write
 * conditioned on the resourceVersion read; a conflict (another host
 * claimed in between) reads and decides again.
 */
#include "control/kube/node_ids.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/kube/kube.h"
#include "control/registry/registry.h"
#include "dataplane/common/ts_common.h"

#define ROUNDS 100

static bool key_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 253)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
			return false;
	return true;
}

static int id_of(json_t *v, uint32_t *id)
{
	const char *s = json_string_value(v);
	char *end;
	unsigned long x;

	if (!s || !s[0])
		return -EINVAL;
	errno = 0;
	x = strtoul(s, &end, 10);
	if (errno || *end || x < 1 || x > TS_REG_MAX_NODES)
		return -EINVAL;
	*id = (uint32_t)x;
	return 0;
}

/* One round: 0 and *id, 1 after a conflict (read and decide again), or -errno. */
static int claim_once(struct ts_kube *c, const char *ns, const char *host, uint32_t *id)
{
	char coll[160], path[256], val[16];
	bool used[TS_REG_MAX_NODES + 1] = { false };
	json_t *cm = NULL, *data, *v;
	const char *k;
	int rc;

	snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/configmaps", ns);
	snprintf(path, sizeof(path), "%s/%s", coll, TS_NODE_IDS_CONFIGMAP);
	rc = ts_kube_get(c, path, &cm);
	if (rc == -ENOENT) {
		cm = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}, s:{s:s}}", "apiVersion", "v1", "kind",
			       "ConfigMap", "metadata", "name", TS_NODE_IDS_CONFIGMAP, "labels",
			       "app.kubernetes.io/managed-by", "tessera", "data", host, "1");
		if (!cm)
			return -ENOMEM;
		rc = ts_kube_create(c, coll, cm, NULL);
		json_decref(cm);
		if (rc == 0)
			*id = 1;
		return rc == -EEXIST ? 1 : rc;
	}
	if (rc)
		return rc;
	data = json_object_get(cm, "data");
	if (!data) {
		data = json_object();
		json_object_set_new(cm, "data", data);
	}
	if (!json_is_object(data)) {
		rc = -EINVAL;
		goto out;
	}
	v = json_object_get(data, host);
	if (v) {
		rc = id_of(v, id);
		if (rc)
			ts_log(TS_LOG_ERROR, "node-ids", "%s/%s: host %s has '%s', not an id 1..%u", ns,
			       TS_NODE_IDS_CONFIGMAP, host,
			       json_is_string(v) ? json_string_value(v) : "?", TS_REG_MAX_NODES);
		goto out;
	}
	json_object_foreach(data, k, v) {
		uint32_t x;

		if (id_of(v, &x) == 0)
			used[x] = true;
	}
	*id = 0;
	for (uint32_t i = 1; i <= TS_REG_MAX_NODES && !*id; i++)
		if (!used[i])
			*id = i;
	if (!*id) {
		rc = -ENOSPC;
		goto out;
	}
	snprintf(val, sizeof(val), "%u", *id);
	json_object_set_new(data, host, json_string(val));
	rc = ts_kube_update(c, path, cm, NULL); /* carries the resourceVersion read */
	if (rc == -ESTALE)
		rc = 1;
out:
	json_decref(cm);
	return rc;
}

int ts_node_id_claim(const char *kubeconfig, const char *ns, const char *host, uint32_t *id)
{
	struct ts_kube *c = NULL;
	int rc;

	if (!ns || !ns[0] || strlen(ns) > 63 || !host || !key_ok(host) || !id)
		return -EINVAL;
	rc = ts_kube_open(kubeconfig, NULL, &c);
	if (rc)
		return rc;
	rc = 1;
	for (unsigned i = 0; rc == 1 && i < ROUNDS; i++)
		rc = claim_once(c, ns, host, id); /* 1: someone claimed in between, again */
	ts_kube_close(c);
	return rc == 1 ? -EBUSY : rc;
}
