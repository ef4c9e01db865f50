/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded metadata store: one JSON file per volume record.
 *
 * Workload: a handful of writes per CSI call, rare reads of the whole set
 * (ListVolumes, name lookups), thousands of records at most in the embedded
 * setting. So the store keeps every record in memory, sorted by id (lookups
 * by id are a binary search, by name a scan), and each change writes one
 * small file: `<dir>/<id>.json`, written atomically (temp file, fsync,
 * rename, fsync of the directory), or unlinked followed by a directory
 * fsync. A crash leaves either the old or the new file, never a torn one;
 * `*.tmp` leftovers are removed at open.
 *
 * Group snapshot records live the same way in `<dir>/groups/<id>.json`, a
 * second table (few records: lookups are scans).
 *
 * Invariant: the in-memory array equals the directory's records whenever the
 * lock is not held; an op changes the file first and memory only when the
 * file change succeeded.
 *
 * THREAD SAFETY: one mutex (st->lock) around every op.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "csi/store/store.h"
#include "dataplane/common/ts_common.h"

struct file_store {
	char *dir;
	pthread_mutex_t lock;
	struct ts_csi_volume *v; /* sorted by id */
	size_t n, cap;
	char *gdir;             /* <dir>/groups */
	struct ts_csi_group *g; /* unsorted */
	size_t gn, gcap;
};

int ts_csi_write_atomic(const char *path, const void *data, size_t len)
{
	return ts_file_write_atomic(path, data, len);
}

static int fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	rc = fsync(fd) ? -errno : 0;
	close(fd);
	return rc;
}

/* Index of \p id, or -(insertion point + 1). */
static long find(struct file_store *s, const char *id)
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

static json_t *qos_json(const struct ts_csi_qos *q)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "iops", (json_int_t)q->iops,
			 "read_iops", (json_int_t)q->read_iops, "write_iops",
			 (json_int_t)q->write_iops, "bps", (json_int_t)q->bps, "read_bps",
			 (json_int_t)q->read_bps, "write_bps", (json_int_t)q->write_bps,
			 "burst_ms", (int)q->burst_ms, "reserve_iops",
			 (json_int_t)q->reserve_iops);
}

static int qos_from_json(json_t *j, struct ts_csi_qos *q)
{
	json_int_t f[7];
	int burst;

	memset(q, 0, sizeof(*q));
	if (!j)
		return 0; /* records from before QoS existed */
	if (json_unpack(j, "{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "iops", &f[0], "read_iops",
			&f[1], "write_iops", &f[2], "bps", &f[3], "read_bps", &f[4], "write_bps",
			&f[5], "burst_ms", &burst, "reserve_iops", &f[6]))
		return TS_ERR_CORRUPT;
	for (size_t i = 0; i < TS_ARRAY_SIZE(f); i++)
		if (f[i] < 0)
			return TS_ERR_CORRUPT;
	if (burst < 0)
		return TS_ERR_CORRUPT;
	*q = (struct ts_csi_qos){ (uint64_t)f[0], (uint64_t)f[1], (uint64_t)f[2],
				  (uint64_t)f[3], (uint64_t)f[4], (uint64_t)f[5],
				  (uint32_t)burst,  (uint64_t)f[6] };
	return 0;
}

static const char *const g_mode_names[TS_CSI_MODE_MAX + 1] = {
	[TS_CSI_MODE_SINGLE_NODE_WRITER] = "SINGLE_NODE_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_READER_ONLY] = "SINGLE_NODE_READER_ONLY",
	[TS_CSI_MODE_MULTI_NODE_READER_ONLY] = "MULTI_NODE_READER_ONLY",
	[TS_CSI_MODE_MULTI_NODE_SINGLE_WRITER] = "MULTI_NODE_SINGLE_WRITER",
	[TS_CSI_MODE_MULTI_NODE_MULTI_WRITER] = "MULTI_NODE_MULTI_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_SINGLE_WRITER] = "SINGLE_NODE_SINGLE_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_MULTI_WRITER] = "SINGLE_NODE_MULTI_WRITER",
};

const char *ts_csi_mode_name(unsigned mode)
{
	return mode <= TS_CSI_MODE_MAX ? g_mode_names[mode] : NULL;
}

int ts_csi_mode_parse(const char *name)
{
	for (unsigned m = 1; m <= TS_CSI_MODE_MAX; m++)
		if (!strcmp(g_mode_names[m], name))
			return (int)m;
	return -EINVAL;
}

/* The access-mode bit set as an array of mode names, in mode order. */
static json_t *modes_json(uint32_t modes)
{
	json_t *a = json_array();

	for (unsigned m = 1; a && m <= TS_CSI_MODE_MAX; m++)
		if ((modes & (1u << m)) && json_array_append_new(a, json_string(g_mode_names[m]))) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

static int modes_from_json(json_t *a, uint32_t *modes)
{
	json_t *e;
	size_t i;

	*modes = 0;
	if (!a)
		return 0; /* records from before access modes were recorded */
	if (!json_is_array(a))
		return TS_ERR_CORRUPT;
	json_array_foreach(a, i, e) {
		int m = json_is_string(e) ? ts_csi_mode_parse(json_string_value(e)) : -EINVAL;

		if (m < 0)
			return TS_ERR_CORRUPT;
		*modes |= 1u << m;
	}
	return 0;
}

static int to_json(const struct ts_csi_volume *v, char **out)
{
	json_t *j = json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:b, s:s, s:o, s:o}",
			      "version", 1, "id", v->id, "name", v->name, "attach", v->attach,
			      "fs_type", v->fs_type, "capacity_bytes", (json_int_t)v->capacity_bytes,
			      "ec_k", (int)v->ec_k, "ec_m", (int)v->ec_m, "block", v->block,
			      "source", v->source, "qos", qos_json(&v->qos), "access_modes",
			      modes_json(v->access_modes));

	*out = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	return *out ? 0 : -ENOMEM;
}

static int from_json(json_t *j, struct ts_csi_volume *v)
{
	const char *id, *name, *attach, *fs, *src = "";
	json_t *qos = NULL, *modes = NULL;
	json_int_t cap;
	int ver, k, m, blk;

	/* "source", "qos" and "access_modes" are optional: older records lack them. */
	if (json_unpack(j, "{s:i, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:b, s?s, s?o, s?o}",
			"version", &ver, "id", &id, "name", &name, "attach", &attach, "fs_type",
			&fs, "capacity_bytes", &cap, "ec_k", &k, "ec_m", &m, "block", &blk,
			"source", &src, "qos", &qos, "access_modes", &modes))
		return TS_ERR_CORRUPT;
	if (ver != 1)
		return TS_ERR_VERSION;
	if (strlen(id) > TS_CSI_ID_MAX || strlen(name) > TS_CSI_NAME_MAX ||
	    strlen(attach) > TS_CSI_ATTACH_MAX || strlen(fs) >= sizeof(v->fs_type) || cap < 0 ||
	    k < 0 || m < 0 || strlen(src) >= sizeof(v->source))
		return TS_ERR_CORRUPT;
	memset(v, 0, sizeof(*v));
	if (qos_from_json(qos, &v->qos) || modes_from_json(modes, &v->access_modes))
		return TS_ERR_CORRUPT;
	snprintf(v->id, sizeof(v->id), "%s", id);
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->attach, sizeof(v->attach), "%s", attach);
	snprintf(v->fs_type, sizeof(v->fs_type), "%s", fs);
	v->capacity_bytes = (uint64_t)cap;
	v->ec_k = (uint32_t)k;
	v->ec_m = (uint32_t)m;
	v->block = blk;
	snprintf(v->source, sizeof(v->source), "%s", src);
	return 0;
}

static int rec_path(struct file_store *s, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s.json", s->dir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int insert_at(struct file_store *s, size_t at, const struct ts_csi_volume *v)
{
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 16;
		struct ts_csi_volume *nv = ts_realloc(s->v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		s->v = nv;
		s->cap = nc;
	}
	memmove(&s->v[at + 1], &s->v[at], (s->n - at) * sizeof(*v));
	s->v[at] = *v;
	s->n++;
	return 0;
}

static int st_put(void *ctx, const struct ts_csi_volume *v)
{
	struct file_store *s = ctx;
	char path[4200], *js = NULL;
	long at;
	int rc;

	rc = rec_path(s, v->id, path, sizeof(path));
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	at = find(s, v->id);
	if (at < 0 && s->n == s->cap) {
		/* Grow before touching the disk so memory cannot lag behind it. */
		rc = insert_at(s, s->n, v);
		if (rc)
			goto out;
		s->n--;
	}
	rc = to_json(v, &js);
	if (rc)
		goto out;
	rc = ts_csi_write_atomic(path, js, strlen(js));
	if (rc)
		goto out;
	if (at >= 0)
		s->v[at] = *v;
	else
		rc = insert_at(s, (size_t)(-at - 1), v);
out:
	pthread_mutex_unlock(&s->lock);
	free(js);
	return rc;
}

static int st_get(void *ctx, const char *id, struct ts_csi_volume *out)
{
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
	char path[4200];
	long at;
	int rc;

	rc = rec_path(s, id, path, sizeof(path));
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	at = find(s, id);
	if (at < 0) {
		rc = -ENOENT;
		goto out;
	}
	if (unlink(path) && errno != ENOENT) {
		rc = -errno;
		goto out;
	}
	rc = fsync_dir(s->dir);
	memmove(&s->v[at], &s->v[at + 1], (s->n - (size_t)at - 1) * sizeof(s->v[0]));
	s->n--;
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static int st_list(void *ctx, const char *after, struct ts_csi_volume *out, size_t max, size_t *n,
		   bool *more)
{
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
	size_t n;

	pthread_mutex_lock(&s->lock);
	n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

/* ---- group snapshot records ---- */

static int group_to_json(const struct ts_csi_group *g, char **out)
{
	json_t *mem = json_array(), *j;

	for (uint32_t i = 0; mem && i < g->n; i++)
		if (json_array_append_new(mem, json_pack("{s:s, s:s}", "volume", g->vol[i],
							 "snapshot", g->snap[i]))) {
			json_decref(mem);
			mem = NULL;
		}
	j = mem ? json_pack("{s:i, s:s, s:s, s:I, s:o}", "version", 1, "id", g->id, "name",
			    g->name, "ctime_ns", (json_int_t)g->ctime_ns, "members", mem)
		: NULL;
	*out = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	return *out ? 0 : -ENOMEM;
}

static int group_from_json(json_t *j, struct ts_csi_group *g)
{
	const char *id, *name;
	json_int_t ctime;
	json_t *mem, *e;
	size_t i;
	int ver;

	if (json_unpack(j, "{s:i, s:s, s:s, s:I, s:o}", "version", &ver, "id", &id, "name", &name,
			"ctime_ns", &ctime, "members", &mem) ||
	    !json_is_array(mem))
		return TS_ERR_CORRUPT;
	if (ver != 1)
		return TS_ERR_VERSION;
	if (strlen(id) > TS_CSI_ID_MAX || strlen(name) > TS_CSI_NAME_MAX || ctime < 0 ||
	    json_array_size(mem) > TS_CSI_GROUP_MAX)
		return TS_ERR_CORRUPT;
	memset(g, 0, sizeof(*g));
	snprintf(g->id, sizeof(g->id), "%s", id);
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->ctime_ns = (uint64_t)ctime;
	json_array_foreach(mem, i, e) {
		const char *vol, *snap;

		if (json_unpack(e, "{s:s, s:s}", "volume", &vol, "snapshot", &snap) ||
		    strlen(vol) > TS_CSI_ID_MAX || strlen(snap) > TS_CSI_ID_MAX)
			return TS_ERR_CORRUPT;
		snprintf(g->vol[i], sizeof(g->vol[i]), "%s", vol);
		snprintf(g->snap[i], sizeof(g->snap[i]), "%s", snap);
	}
	g->n = (uint32_t)json_array_size(mem);
	return 0;
}

static int group_path(struct file_store *s, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s.json", s->gdir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static long group_find(struct file_store *s, const char *id)
{
	for (size_t i = 0; i < s->gn; i++)
		if (!strcmp(s->g[i].id, id))
			return (long)i;
	return -1;
}

static int group_reserve(struct file_store *s)
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
	struct file_store *s = ctx;
	char path[4200], *js = NULL;
	long at;
	int rc;

	if (g->n > TS_CSI_GROUP_MAX)
		return -EINVAL;
	rc = group_path(s, g->id, path, sizeof(path));
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	at = group_find(s, g->id);
	rc = at < 0 ? group_reserve(s) : 0;
	if (!rc)
		rc = group_to_json(g, &js);
	if (!rc)
		rc = ts_csi_write_atomic(path, js, strlen(js));
	if (!rc)
		s->g[at >= 0 ? (size_t)at : s->gn++] = *g;
	pthread_mutex_unlock(&s->lock);
	free(js);
	return rc;
}

static int st_group_get(void *ctx, const char *id, struct ts_csi_group *out)
{
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
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
	struct file_store *s = ctx;
	char path[4200];
	long at;
	int rc;

	rc = group_path(s, id, path, sizeof(path));
	if (rc)
		return rc;
	pthread_mutex_lock(&s->lock);
	at = group_find(s, id);
	if (at < 0) {
		rc = -ENOENT;
		goto out;
	}
	if (unlink(path) && errno != ENOENT) {
		rc = -errno;
		goto out;
	}
	rc = fsync_dir(s->gdir);
	s->g[at] = s->g[--s->gn];
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

static void st_destroy(void *ctx)
{
	struct file_store *s = ctx;

	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	ts_free(s->v);
	ts_free(s->g);
	ts_free(s->gdir);
	ts_free(s->dir);
	ts_free(s);
}

static const struct ts_csi_store_ops g_file_store_ops = {
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

static int load(struct file_store *s)
{
	DIR *d = opendir(s->dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return -errno;
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct ts_csi_volume v;
		char path[4200];
		json_t *j;
		long at;

		snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name);
		if (len > 4 && !strcmp(e->d_name + len - 4, ".tmp")) {
			unlink(path); /* a write that never got renamed */
			continue;
		}
		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		j = json_load_file(path, 0, NULL);
		rc = j ? from_json(j, &v) : TS_ERR_CORRUPT;
		json_decref(j);
		if (rc) {
			ts_log(TS_LOG_ERROR, "csi", "bad volume record path=%s err=\"%s\"", path,
			       ts_strerror(rc));
			break;
		}
		at = find(s, v.id);
		rc = at >= 0 ? TS_ERR_CORRUPT : insert_at(s, (size_t)(-at - 1), &v);
	}
	closedir(d);
	return rc;
}

static int load_groups(struct file_store *s)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (mkdir(s->gdir, 0700) && errno != EEXIST)
		return -errno;
	d = opendir(s->gdir);
	if (!d)
		return -errno;
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct ts_csi_group g;
		char path[4200];
		json_t *j;

		snprintf(path, sizeof(path), "%s/%s", s->gdir, e->d_name);
		if (len > 4 && !strcmp(e->d_name + len - 4, ".tmp")) {
			unlink(path);
			continue;
		}
		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		j = json_load_file(path, 0, NULL);
		rc = j ? group_from_json(j, &g) : TS_ERR_CORRUPT;
		json_decref(j);
		if (!rc && group_find(s, g.id) >= 0)
			rc = TS_ERR_CORRUPT;
		if (!rc)
			rc = group_reserve(s);
		if (rc) {
			ts_log(TS_LOG_ERROR, "csi", "bad group snapshot record path=%s err=\"%s\"",
			       path, ts_strerror(rc));
			break;
		}
		s->g[s->gn++] = g;
	}
	closedir(d);
	return rc;
}

int ts_csi_store_file_open(const char *dir, const struct ts_csi_store_ops **ops, void **ctx)
{
	struct file_store *s;
	int rc;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	s = ts_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->dir = ts_strdup(dir);
	s->gdir = s->dir ? ts_malloc(strlen(dir) + 8) : NULL;
	if (s->gdir)
		sprintf(s->gdir, "%s/groups", dir);
	rc = s->gdir ? load(s) : -ENOMEM;
	if (!rc)
		rc = load_groups(s);
	if (rc) {
		st_destroy(s);
		return rc;
	}
	*ops = &g_file_store_ops;
	*ctx = s;
	return 0;
}
