/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The in-memory index every metadata store runs over (store_impl.h).
 *
 * Workload: a handful of writes per CSI call, rare reads of the whole set
 * (ListVolumes, name lookups), thousands of records at most. So every
 * record lives in memory, sorted by id (lookups by id are a binary search,
 * by name a scan); each change is handed to the persistence (a file, a
 * custom resource) and applied to memory only when that succeeded.
 *
 * Group snapshot records are a second, unsorted table (few records: lookups
 * are scans).
 *
 * Invariant: memory equals the persistence's records whenever the lock is
 * not held; an op grows its arrays before it touches the persistence, so
 * an allocation failure can never leave memory behind what is stored.
 *
 * THREAD SAFETY: one mutex (s->lock) around every op, persistence included.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "csi/store/store_impl.h"
#include "dataplane/common/ts_common.h"

struct mem_store {
	const struct ts_csi_persist_ops *po;
	void *p;
	pthread_mutex_t lock;
	struct ts_csi_volume *v; /* sorted by id */
	size_t n, cap;
	struct ts_csi_group *g; /* unsorted */
	size_t gn, gcap;
};

/* Index of \p id, or -(insertion point + 1). */
static long find(struct mem_store *s, const char *id)
{
	size_t lo = 0, hi = s->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(s->v[mid].id, id);

		if (!c)
			return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -(long)lo - 1;
}

/* Room for one more volume record. */
static int reserve(struct mem_store *s)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		struct ts_csi_volume *nv = ts_realloc(s->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	return 0;
}

static void insert_at(struct mem_store *s, size_t at, const struct ts_csi_volume *v)
{
	memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof(*v));
	s->v[at] = *v;
	s->n++;
}

static int st_put(void *ctx, const struct ts_csi_volume *v)
{
	struct mem_store *s = ctx;
	long at;
	int rc;

	pthread_mutex_lock(&s->lock);
	at = find(s, v->id);
	rc = at < 0 ? reserve(s) : 0;
	if (!rc)
		rc = s->po->put(s->p, v);
	if (!rc && at >= 0)
		s->v[at] = *v;
	else if (!rc)
		insert_at(s, (size_t)(-at - 1), v);
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_get(void *ctx, const char *id, struct ts_csi_volume *out)
{
	struct mem_store *s = ctx;
	long at;

	pthread_mutex_lock(&s->lock);
	at = find(s, id);
	if (at >= 0)
		*out = s->v[at];
	pthread_mutex_unlock(&s->lock);
	return at >= 0 ? 0 : -ENOENT;
}

static int st_get_by_name(void *ctx, const char *name, struct ts_csi_volume *out)
{
	struct mem_store *s = ctx;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i].name, name)) {
			*out = s->v[i];
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_del(void *ctx, const char *id)
{
	struct mem_store *s = ctx;
	long at;
	int rc;

	pthread_mutex_lock(&s->lock);
	at = find(s, id);
	rc = at < 0 ? -ENOENT : s->po->del(s->p, id);
	if (!rc) {
		memmove(&s->v[at], &s->v[at + 1], (s->n - (size_t)at - 1) * sizeof(s->v[0]));
		s->n--;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_list(void *ctx, const char *after, struct ts_csi_volume *out, size_t max, size_t *n,
		   bool *more)
{
	struct mem_store *s = ctx;
	size_t i = 0;

	pthread_mutex_lock(&s->lock);
	if (after && after[0]) {
		long at = find(s, after);

		i = at >= 0 ? (size_t)at + 1 : (size_t)(-at - 1);
	}
	*n = 0;
	for (; i < s->n && *n < max; i++)
		out[(*n)++] = s->v[i];
	*more = i < s->n;
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static size_t st_count(void *ctx)
{
	struct mem_store *s = ctx;
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- group snapshot records ---- */

static long group_find(struct mem_store *s, const char *id)
{
	for (size_t i = 0; i < s->gn; i++)
		if (!strcmp(s->g[i].id, id))
			return (long)i;
	return -1;
}

static int group_reserve(struct mem_store *s)
{
	if (s->gn == s->gcap) {
		size_t nc = s->gcap ? s->gcap * 2 : 4;
		struct ts_csi_group *ng = ts_realloc(s->g, nc * sizeof(*ng));

		if (!ng)
			return -ENOMEM;
		s->g = ng;
		s->gcap = nc;
	}
	return 0;
}

static int st_group_put(void *ctx, const struct ts_csi_group *g)
{
	struct mem_store *s = ctx;
	long at;
	int rc;

	if (g->n > TS_CSI_GROUP_MAX)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	at = group_find(s, g->id);
	rc = at < 0 ? group_reserve(s) : 0;
	if (!rc)
		rc = s->po->group_put(s->p, g);
	if (!rc)
		s->g[at >= 0 ? (size_t)at : s->gn++] = *g;
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_group_get(void *ctx, const char *id, struct ts_csi_group *out)
{
	struct mem_store *s = ctx;
	long at;

	pthread_mutex_lock(&s->lock);
	at = group_find(s, id);
	if (at >= 0)
		*out = s->g[at];
	pthread_mutex_unlock(&s->lock);
	return at >= 0 ? 0 : -ENOENT;
}

static int st_group_get_by_name(void *ctx, const char *name, struct ts_csi_group *out)
{
	struct mem_store *s = ctx;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->gn && rc; i++)
		if (!strcmp(s->g[i].name, name)) {
			*out = s->g[i];
			rc = 0;
		}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_group_of_snap(void *ctx, const char *snap_id, struct ts_csi_group *out)
{
	struct mem_store *s = ctx;
	int rc = -ENOENT;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->gn && rc; i++)
		for (uint32_t k = 0; k < s->g[i].n && rc; k++)
			if (!strcmp(s->g[i].snap[k], snap_id)) {
				*out = s->g[i];
				rc = 0;
			}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_group_del(void *ctx, const char *id)
{
	struct mem_store *s = ctx;
	long at;
	int rc;

	pthread_mutex_lock(&s->lock);
	at = group_find(s, id);
	rc = at < 0 ? -ENOENT : s->po->group_del(s->p, id);
	if (!rc)
		s->g[at] = s->g[--s->gn];
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void st_destroy(void *ctx)
{
	struct mem_store *s = ctx;

	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	s->po->destroy(s->p);
	ts_free(s->v);
	ts_free(s->g);
	ts_free(s);
}

static const struct ts_csi_store_ops g_mem_store_ops = {
	.put = st_put,
	.get = st_get,
	.get_by_name = st_get_by_name,
	.del = st_del,
	.list = st_list,
	.count = st_count,
	.group_put = st_group_put,
	.group_get = st_group_get,
	.group_get_by_name = st_group_get_by_name,
	.group_of_snap = st_group_of_snap,
	.group_del = st_group_del,
	.destroy = st_destroy,
};

/* ---- loading ---- */

static int load_vol(void *a, const struct ts_csi_volume *v)
{
	struct mem_store *s = a;
	long at = find(s, v->id);
	int rc;

	if (at >= 0)
		return TS_ERR_CORRUPT; /* two records, one id */
	rc = reserve(s);
	if (!rc)
		insert_at(s, (size_t)(-at - 1), v);
	return rc;
}

static int load_group(void *a, const struct ts_csi_group *g)
{
	struct mem_store *s = a;
	int rc;

	if (group_find(s, g->id) >= 0)
		return TS_ERR_CORRUPT;
	rc = group_reserve(s);
	if (!rc)
		s->g[s->gn++] = *g;
	return rc;
}

int ts_csi_store_mem_open(const struct ts_csi_persist_ops *po, void *p,
			  const struct ts_csi_store_ops **ops, void **ctx)
{
	struct mem_store *s = ts_calloc(1, sizeof(*s));
	int rc;

	if (!s) {
		po->destroy(p);
		return -ENOMEM;
	}
	s->po = po;
	s->p = p;
	pthread_mutex_init(&s->lock, NULL);
	rc = po->load(p, load_vol, load_group, s);
	if (rc) {
		st_destroy(s);
		return rc;
	}
	*ops = &g_mem_store_ops;
	*ctx = s;
	return 0;
}
