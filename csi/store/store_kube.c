/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CSI metadata store over custom resources (store_kube.h): the
 * in-memory index (store_mem.c) over TesseraVolume and
 * TesseraVolumeGroupSnapshot objects.
 *
 * Each object's resourceVersion, as last read or written, is kept beside
 * the index (a small table per kind, linear: thousands of records at most),
 * and every update carries it as a precondition. A write that finds the
 * object changed, created or deleted by someone else re-reads it: equal to
 * what we are writing means an earlier attempt of ours landed (its answer
 * was lost) and is adopted; anything else is another writer, -ESTALE.
 *
 * THREAD SAFETY: called under the index's lock only.
 */
#include "csi/store/store_kube.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "control/kube/kube.h"
#include "csi/store/store_impl.h"
#include "dataplane/common/ts_common.h"

#define API "/apis/tessera.io/v1alpha1"
#define VOLS "tesseravolumes"
#define GROUPS "tesseravolumegroupsnapshots"

/* name -> resourceVersion of one kind's objects */
struct rv_ent {
	char name[64];
	char rv[65];
};

struct rv_table {
	struct rv_ent *e;
	size_t n, cap;
};

struct kube_persist {
	struct ts_kube *c;
	char ns[64];
	struct rv_table vols, groups;
};

static bool name_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.';
}

void ts_csi_store_kube_name(const char *id, char out[64])
{
	size_t len = strlen(id);
	bool ok = len && len <= 63 && strncmp(id, "h-", 2) && name_char(id[0]) && id[0] != '-' &&
		  id[0] != '.' && id[len - 1] != '-' && id[len - 1] != '.';
	unsigned char md[SHA256_DIGEST_LENGTH];

	for (size_t i = 0; ok && i < len; i++)
		ok = name_char(id[i]);
	if (ok) {
		memcpy(out, id, len + 1);
		return;
	}
	SHA256((const unsigned char *)id, len, md);
	memcpy(out, "h-", 2);
	for (int i = 0; i < 20; i++)
		snprintf(out + 2 + 2 * i, 3, "%02x", md[i]);
}

static struct rv_ent *rv_find(struct rv_table *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (!strcmp(t->e[i].name, name))
			return &t->e[i];
	return NULL;
}

/* Remember \p rv for \p name (NULL rv: forget it). */
static int rv_set(struct rv_table *t, const char *name, const char *rv)
{
	struct rv_ent *e = rv_find(t, name);

	if (!rv) {
		if (e)
			*e = t->e[--t->n];
		return 0;
	}
	if (strlen(rv) >= sizeof(e->rv))
		return -EPROTO;
	if (!e) {
		if (t->n == t->cap) {
			size_t nc = t->cap ? t->cap * 2 : 32;
			struct rv_ent *ne = ts_realloc(t->e, nc * sizeof(*ne));

			if (!ne)
				return -ENOMEM;
			t->e = ne;
			t->cap = nc;
		}
		e = &t->e[t->n++];
		snprintf(e->name, sizeof(e->name), "%s", name);
	}
	snprintf(e->rv, sizeof(e->rv), "%s", rv);
	return 0;
}

static const char *rv_of(json_t *obj)
{
	json_t *v = json_object_get(json_object_get(obj, "metadata"), "resourceVersion");

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void path_of(char *buf, size_t n, const struct kube_persist *k, const char *plural,
		    const char *name)
{
	snprintf(buf, n, API "/namespaces/%s/%s%s%s", k->ns, plural, name ? "/" : "",
		 name ? name : "");
}

/*
 * Write \p spec (a reference this takes) as object \p name of \p plural
 * (\p kind): an update conditioned on the remembered resourceVersion, or a
 * create when none is remembered.
 */
static int write_obj(struct kube_persist *k, struct rv_table *t, const char *plural,
		     const char *kind, const char *name, json_t *spec)
{
	struct rv_ent *e = rv_find(t, name);
	char path[512];
	json_t *obj, *out = NULL, *cur = NULL;
	int rc;

	if (!spec)
		return -ENOMEM;
	obj = json_pack("{s:s,s:s,s:{s:s,s:s,s:{s:s}},s:O}", "apiVersion", "tessera.io/v1alpha1",
			"kind", kind, "metadata", "name", name, "namespace", k->ns, "labels",
			"app.kubernetes.io/managed-by", "tessera", "spec", spec);
	if (!obj) {
		json_decref(spec);
		return -ENOMEM;
	}
	if (e) {
		json_object_set_new(json_object_get(obj, "metadata"), "resourceVersion",
				    json_string(e->rv));
		path_of(path, sizeof(path), k, plural, name);
		rc = ts_kube_update(k->c, path, obj, &out);
		if (rc == -ENOENT)
			rc = -ESTALE; /* deleted by someone else */
	} else {
		path_of(path, sizeof(path), k, plural, NULL);
		rc = ts_kube_create(k->c, path, obj, &out);
		if (rc == -EEXIST)
			rc = -ESTALE; /* created by someone else, or by our lost attempt */
	}
	if (rc == -ESTALE || rc == -EAGAIN) {
		/* Ours if the stored spec is what we are writing (a lost answer). */
		int grc;

		path_of(path, sizeof(path), k, plural, name);
		grc = ts_kube_get(k->c, path, &cur);
		if (grc == 0 && json_equal(json_object_get(cur, "spec"), spec) && rv_of(cur)) {
			json_decref(out);
			out = json_incref(cur);
			rc = 0;
		} else if (rc == -ESTALE) {
			ts_log(TS_LOG_ERROR, "csi-store",
			       "%s %s changed by another writer: refusing to overwrite it", kind, name);
		}
	}
	if (rc == 0)
		rc = rv_of(out) ? rv_set(t, name, rv_of(out)) : -EPROTO;
	json_decref(cur);
	json_decref(out);
	json_decref(obj);
	json_decref(spec);
	return rc;
}

static int del_obj(struct kube_persist *k, struct rv_table *t, const char *plural,
		   const char *name)
{
	char path[512];
	int rc;

	path_of(path, sizeof(path), k, plural, name);
	rc = ts_kube_delete(k->c, path);
	if (rc == -ENOENT)
		rc = 0;
	if (rc == 0)
		rv_set(t, name, NULL);
	return rc;
}

static int kp_put(void *p, const struct ts_csi_volume *v)
{
	struct kube_persist *k = p;
	char name[64];

	ts_csi_store_kube_name(v->id, name);
	return write_obj(k, &k->vols, VOLS, "TesseraVolume", name, ts_csi_vol_json(v));
}

static int kp_del(void *p, const char *id)
{
	struct kube_persist *k = p;
	char name[64];

	ts_csi_store_kube_name(id, name);
	return del_obj(k, &k->vols, VOLS, name);
}

static int kp_group_put(void *p, const struct ts_csi_group *g)
{
	struct kube_persist *k = p;
	char name[64];

	ts_csi_store_kube_name(g->id, name);
	return write_obj(k, &k->groups, GROUPS, "TesseraVolumeGroupSnapshot", name,
			 ts_csi_group_json(g));
}

static int kp_group_del(void *p, const char *id)
{
	struct kube_persist *k = p;
	char name[64];

	ts_csi_store_kube_name(id, name);
	return del_obj(k, &k->groups, GROUPS, name);
}

/* One listed object: its spec parsed, its name checked against its id, its version kept. */
static int load_one(struct kube_persist *k, bool group, json_t *obj,
		    int (*vol)(void *a, const struct ts_csi_volume *v),
		    int (*grp)(void *a, const struct ts_csi_group *g), void *a)
{
	json_t *n = json_object_get(json_object_get(obj, "metadata"), "name");
	json_t *spec = json_object_get(obj, "spec");
	const char *name = json_is_string(n) ? json_string_value(n) : "?";
	struct ts_csi_volume v;
	struct ts_csi_group g;
	char want[64];
	int rc;

	rc = !json_is_object(spec) ? TS_ERR_CORRUPT
	     : group		   ? ts_csi_group_parse(spec, &g)
				   : ts_csi_vol_parse(spec, &v);
	if (rc == 0) {
		ts_csi_store_kube_name(group ? g.id : v.id, want);
		if (strcmp(want, name) || !rv_of(obj))
			rc = TS_ERR_CORRUPT;
	}
	if (rc == 0)
		rc = rv_set(group ? &k->groups : &k->vols, name, rv_of(obj));
	if (rc == 0)
		rc = group ? grp(a, &g) : vol(a, &v);
	if (rc)
		ts_log(TS_LOG_ERROR, "csi-store", "bad %s object name=%s err=\"%s\"",
		       group ? GROUPS : VOLS, name, ts_strerror(rc));
	return rc;
}

static int kp_load(void *p, int (*vol)(void *a, const struct ts_csi_volume *v),
		   int (*grp)(void *a, const struct ts_csi_group *g), void *a)
{
	struct kube_persist *k = p;
	int rc = 0;

	for (int kind = 0; kind < 2 && rc == 0; kind++) {
		char path[512], rv[65];
		json_t *items = NULL, *obj;
		size_t i;

		path_of(path, sizeof(path), k, kind ? GROUPS : VOLS, NULL);
		rc = ts_kube_list(k->c, path, NULL, &items, rv, sizeof(rv));
		if (rc)
			ts_log(TS_LOG_ERROR, "csi-store", "listing %s: %s", kind ? GROUPS : VOLS,
			       ts_strerror(rc));
		json_array_foreach(items, i, obj) {
			if (rc)
				break;
			rc = load_one(k, kind, obj, vol, grp, a);
		}
		json_decref(items);
	}
	return rc;
}

static void kp_destroy(void *p)
{
	struct kube_persist *k = p;

	if (!k)
		return;
	ts_kube_close(k->c);
	ts_free(k->vols.e);
	ts_free(k->groups.e);
	ts_free(k);
}

static const struct ts_csi_persist_ops g_kube_persist = {
	.put = kp_put,
	.del = kp_del,
	.group_put = kp_group_put,
	.group_del = kp_group_del,
	.load = kp_load,
	.destroy = kp_destroy,
};

int ts_csi_store_kube_open(const char *kubeconfig, const char *ns,
			   const struct ts_csi_store_ops **ops, void **ctx)
{
	struct kube_persist *k;
	int rc;

	if (!ns || !ns[0] || strlen(ns) >= sizeof(k->ns) || !ops || !ctx)
		return -EINVAL;
	k = ts_calloc(1, sizeof(*k));
	if (!k)
		return -ENOMEM;
	snprintf(k->ns, sizeof(k->ns), "%s", ns);
	rc = ts_kube_open(kubeconfig, NULL, &k->c);
	if (rc) {
		kp_destroy(k);
		return rc;
	}
	return ts_csi_store_mem_open(&g_kube_persist, k, ops, ctx);
}
