/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded metadata store: the in-memory index (store_mem.c) over one
 * JSON file per record.
 *
 * `<dir>/<id>.json` per volume and `<dir>/groups/<id>.json` per group
 * snapshot, each written atomically (temp file, fsync, rename, fsync of the
 * directory) or unlinked followed by a directory fsync. A crash leaves
 * either the old or the new file, never a torn one; `*.tmp` leftovers are
 * removed at open.
 *
 * THREAD SAFETY: called under the index's lock only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "csi/store/store_impl.h"
#include "dataplane/common/ts_common.h"

struct file_persist {
	char *dir;
	char *gdir; /* <dir>/groups */
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

static int rec_path(const char *dir, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s.json", dir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Write the record object \p j (a reference this takes) as \p dir/\p id.json. */
static int write_rec(const char *dir, const char *id, json_t *j)
{
	char path[4200], *js;
	int rc = rec_path(dir, id, path, sizeof(path));

	js = j && !rc ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(j);
	if (rc)
		return rc;
	if (!js)
		return -ENOMEM;
	rc = ts_csi_write_atomic(path, js, strlen(js));
	free(js);
	return rc;
}

static int unlink_rec(const char *dir, const char *id)
{
	char path[4200];
	int rc = rec_path(dir, id, path, sizeof(path));

	if (rc)
		return rc;
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return fsync_dir(dir);
}

static int fp_put(void *p, const struct ts_csi_volume *v)
{
	struct file_persist *f = p;

	return write_rec(f->dir, v->id, ts_csi_vol_json(v));
}

static int fp_del(void *p, const char *id)
{
	return unlink_rec(((struct file_persist *)p)->dir, id);
}

static int fp_group_put(void *p, const struct ts_csi_group *g)
{
	struct file_persist *f = p;

	return write_rec(f->gdir, g->id, ts_csi_group_json(g));
}

static int fp_group_del(void *p, const char *id)
{
	return unlink_rec(((struct file_persist *)p)->gdir, id);
}

/*
 * Each `*.json` of \p dir parsed and handed to \p rec (\p group picks the
 * kind); `*.tmp` files are writes that never got renamed: removed.
 */
static int load_dir(const char *dir, bool group, int (*vol)(void *a, const struct ts_csi_volume *v),
		    int (*grp)(void *a, const struct ts_csi_group *g), void *a)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	if (!d)
		return -errno;
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		struct ts_csi_volume v;
		struct ts_csi_group g;
		char path[4200];
		json_t *j;

		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		if (len > 4 && !strcmp(e->d_name + len - 4, ".tmp")) {
			unlink(path);
			continue;
		}
		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		j = json_load_file(path, 0, NULL);
		rc = !j ? TS_ERR_CORRUPT : group ? ts_csi_group_parse(j, &g) : ts_csi_vol_parse(j, &v);
		json_decref(j);
		if (!rc)
			rc = group ? grp(a, &g) : vol(a, &v);
		if (rc)
			ts_log(TS_LOG_ERROR, "csi", "bad %s record path=%s err=\"%s\"",
			       group ? "group snapshot" : "volume", path, ts_strerror(rc));
	}
	closedir(d);
	return rc;
}

static int fp_load(void *p, int (*vol)(void *a, const struct ts_csi_volume *v),
		   int (*grp)(void *a, const struct ts_csi_group *g), void *a)
{
	struct file_persist *f = p;
	int rc = load_dir(f->dir, false, vol, grp, a);

	if (rc)
		return rc;
	if (mkdir(f->gdir, 0700) && errno != EEXIST)
		return -errno;
	return load_dir(f->gdir, true, vol, grp, a);
}

static void fp_destroy(void *p)
{
	struct file_persist *f = p;

	if (!f)
		return;
	ts_free(f->gdir);
	ts_free(f->dir);
	ts_free(f);
}

static const struct ts_csi_persist_ops g_file_persist = {
	.put = fp_put,
	.del = fp_del,
	.group_put = fp_group_put,
	.group_del = fp_group_del,
	.load = fp_load,
	.destroy = fp_destroy,
};

int ts_csi_store_file_open(const char *dir, const struct ts_csi_store_ops **ops, void **ctx)
{
	struct file_persist *f;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	f = ts_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->dir = ts_strdup(dir);
	f->gdir = f->dir ? ts_malloc(strlen(dir) + 8) : NULL;
	if (!f->gdir) {
		fp_destroy(f);
		return -ENOMEM;
	}
	sprintf(f->gdir, "%s/groups", dir);
	return ts_csi_store_mem_open(&g_file_persist, f, ops, ctx);
}
