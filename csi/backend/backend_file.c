/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The file backend: volumes as sparse files, attached with loop devices.
 *
 * This is the honest test backend of the CSI layer, not a stand-in for the
 * data plane: a volume is `<dir>/<id>.img`, created sparse with ftruncate,
 * grown with ftruncate, removed with unlink. Ids are derived from the volume
 * name (two FNV-1a 64-bit hashes with different offsets, "fv-" + 32 hex
 * digits), so create is idempotent across a crash between the backend and
 * the metadata store. The attach context is "file://<path>".
 *
 * Attach puts the image on a loop device (volumedriver/attach/loop.h: ioctls on
 * /dev/loop-control and /dev/loopN, no losetup); detach is LOOP_CLR_FD;
 * refresh is LOOP_SET_CAPACITY after a grow.
 *
 * Capacity is the configured limit minus the sum of volume sizes, or the
 * free space of the filesystem under dir when no limit is set.
 *
 * THREAD SAFETY: a mutex serializes everything; the ops are short.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "csi/backend/backend.h"
#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/loop.h"

struct file_be {
	char *dir;
	uint64_t limit;
	pthread_mutex_t lock;
};

static uint64_t fnv1a(const char *s, uint64_t h)
{
	for (; *s; s++) {
		h ^= (uint8_t)*s;
		h *= 0x100000001b3ull;
	}
	return h;
}

static int vol_path(struct file_be *b, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s.img", b->dir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int file_probe(void *ctx)
{
	struct file_be *b = ctx;

	return access(b->dir, W_OK) ? -EAGAIN : 0;
}

static int used_bytes(struct file_be *b, uint64_t *out)
{
	DIR *d = opendir(b->dir);
	struct dirent *e;

	*out = 0;
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		size_t n = strlen(e->d_name);
		struct stat sb;

		if (n > 4 && !strcmp(e->d_name + n - 4, ".img") &&
		    !fstatat(dirfd(d), e->d_name, &sb, 0))
			*out += (uint64_t)sb.st_size;
	}
	closedir(d);
	return 0;
}

static int avail_locked(struct file_be *b, uint64_t *avail)
{
	struct statvfs s;
	uint64_t used;
	int rc;

	if (!b->limit) {
		if (statvfs(b->dir, &s))
			return -errno;
		*avail = (uint64_t)s.f_bavail * s.f_frsize;
		return 0;
	}
	rc = used_bytes(b, &used);
	if (rc)
		return rc;
	*avail = used >= b->limit ? 0 : b->limit - used;
	return 0;
}

static int file_capacity(void *ctx, uint64_t *avail)
{
	struct file_be *b = ctx;
	int rc;

	pthread_mutex_lock(&b->lock);
	rc = avail_locked(b, avail);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int file_create(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_csi_backend_vol *out)
{
	struct file_be *b = ctx;
	char path[4200];
	struct stat sb;
	uint64_t avail;
	int fd = -1, rc;

	snprintf(out->id, sizeof(out->id), "fv-%016" PRIx64 "%016" PRIx64,
		 fnv1a(spec->name, 0xcbf29ce484222325ull), fnv1a(spec->name, 0x84222325cbf29ce4ull));
	rc = vol_path(b, out->id, path, sizeof(path));
	if (rc)
		return rc;
	pthread_mutex_lock(&b->lock);
	if (stat(path, &sb) == 0) {
		/* A retry after a crash: the file is the volume. */
		out->capacity_bytes = (uint64_t)sb.st_size;
		goto done;
	}
	rc = avail_locked(b, &avail);
	if (rc)
		goto out;
	if (spec->capacity_bytes > avail) {
		rc = -ENOSPC;
		goto out;
	}
	fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	if (ftruncate(fd, (off_t)spec->capacity_bytes) || fsync(fd)) {
		rc = errno == EFBIG || errno == EINVAL ? -ERANGE : -errno;
		unlink(path);
		goto out;
	}
	out->capacity_bytes = spec->capacity_bytes;
done:
	if (strlen(path) + 7 >= sizeof(out->attach)) {
		rc = -ENAMETOOLONG;
		goto out;
	}
	snprintf(out->attach, sizeof(out->attach), "file://%.*s", (int)(sizeof(out->attach) - 8),
		 path);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int file_remove(void *ctx, const char *id)
{
	struct file_be *b = ctx;
	char path[4200];
	int rc = vol_path(b, id, path, sizeof(path));

	if (rc)
		return rc;
	if (unlink(path) && errno != ENOENT)
		return -errno;
	return 0;
}

static int file_expand(void *ctx, const char *id, uint64_t bytes, uint64_t *out)
{
	struct file_be *b = ctx;
	char path[4200];
	struct stat sb;
	uint64_t avail;
	int rc = vol_path(b, id, path, sizeof(path));

	if (rc)
		return rc;
	pthread_mutex_lock(&b->lock);
	if (stat(path, &sb)) {
		rc = -errno;
		goto out;
	}
	if ((uint64_t)sb.st_size >= bytes) {
		*out = (uint64_t)sb.st_size;
		goto out;
	}
	rc = avail_locked(b, &avail);
	if (rc)
		goto out;
	if (bytes - (uint64_t)sb.st_size > avail) {
		rc = -ENOSPC;
		goto out;
	}
	if (truncate(path, (off_t)bytes)) {
		rc = -errno;
		goto out;
	}
	*out = bytes;
out:
	pthread_mutex_unlock(&b->lock);
	return rc;
}

static int file_attach(void *ctx, const char *id, const char *attach, char *dev, size_t dev_len)
{
	struct file_be *b = ctx;
	char path[4200];
	int rc;

	(void)attach; /* the id names the file; the context is for other initiators */
	rc = vol_path(b, id, path, sizeof(path));
	if (rc)
		return rc;
	return ts_loop_attach(path, false, path, dev, dev_len);
}

static int file_detach(void *ctx, const char *id, const char *dev)
{
	(void)ctx;
	(void)id;
	return ts_loop_detach(dev);
}

static int file_refresh(void *ctx, const char *id, const char *dev, uint64_t *out)
{
	(void)ctx;
	(void)id;
	return ts_loop_refresh(dev, out);
}

static void file_destroy(void *ctx)
{
	struct file_be *b = ctx;

	if (!b)
		return;
	pthread_mutex_destroy(&b->lock);
	ts_free(b->dir);
	ts_free(b);
}

static const struct ts_csi_backend_ops g_file_ops = {
	.name = "file",
	.probe = file_probe,
	.create = file_create,
	.remove = file_remove,
	.expand = file_expand,
	.capacity = file_capacity,
	.attach = file_attach,
	.detach = file_detach,
	.refresh = file_refresh,
	.destroy = file_destroy,
};

int ts_csi_backend_file_create(const char *dir, uint64_t capacity_bytes,
			       const struct ts_csi_backend_ops **ops, void **ctx)
{
	struct file_be *b;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	b = ts_calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->dir = ts_strdup(dir);
	if (!b->dir) {
		ts_free(b);
		return -ENOMEM;
	}
	b->limit = capacity_bytes;
	pthread_mutex_init(&b->lock, NULL);
	*ops = &g_file_ops;
	*ctx = b;
	return 0;
}
