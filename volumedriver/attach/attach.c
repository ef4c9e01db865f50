/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Node attach, the user-space path: libiscsi -> FUSE file -> loop device.
 *
 * Open builds the stack bottom-up (session, then FUSE mount and its thread,
 * then the loop device); close takes it down top-down, and refuses before
 * changing anything while the loop device is held exclusively. Each layer
 * is owned by exactly one object: the lun by the FUSE front once its thread
 * runs (handed back when the thread is joined), the loop fd by the handle.
 *
 * The kernel-initiator path (iscsiadm + iscsi_tcp) is only detected here;
 * see docs/attach.md for why the user-space path is the tested one.
 */
#include "volumedriver/attach/attach.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach_priv.h"
#include "volumedriver/attach/loop.h"

#define DEFAULT_MOUNT_PARENT "/run/tessera/attach"

struct ts_attach {
	struct lun *lun;
	struct attach_fuse *fuse;
	int loop_fd;
	int loop_n;
	char dev[32];
	struct ts_attach_opts opts; /* strings below are owned copies (refresh) */
};

static void opts_free(struct ts_attach_opts *o)
{
	ts_free((char *)o->url);
	ts_free((char *)o->initiator_name);
	ts_free((char *)o->chap_user);
	ts_free((char *)o->chap_secret);
	ts_free((char *)o->target_user);
	ts_free((char *)o->target_secret);
	memset(o, 0, sizeof(*o));
}

static int opts_copy(const struct ts_attach_opts *in, struct ts_attach_opts *o)
{
	const char *const src[] = { in->url, in->initiator_name, in->chap_user, in->chap_secret,
				    in->target_user, in->target_secret };
	const char **dst[] = { &o->url, &o->initiator_name, &o->chap_user, &o->chap_secret,
			       &o->target_user, &o->target_secret };

	*o = *in;
	o->mount_parent = NULL;
	for (size_t i = 0; i < TS_ARRAY_SIZE(src); i++)
		*dst[i] = NULL;
	for (size_t i = 0; i < TS_ARRAY_SIZE(src); i++) {
		if (src[i] && !(*dst[i] = ts_strdup(src[i]))) {
			opts_free(o);
			return -ENOMEM;
		}
	}
	return 0;
}

int ts_attach_open(const struct ts_attach_opts *opts, struct ts_attach **out)
{
	struct ts_attach *a;
	int fd = -1, rc;

	if (!opts || !opts->url || !out || strncmp(opts->url, "iscsi://", 8))
		return -EINVAL;
	if (geteuid() != 0)
		return -EPERM;
	a = ts_calloc(1, sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->loop_fd = -1;
	rc = opts_copy(opts, &a->opts);
	if (rc)
		goto fail;
	rc = lun_connect(opts, &a->lun);
	if (rc)
		goto fail;
	rc = attach_fuse_start(a->lun, opts->mount_parent ? opts->mount_parent : DEFAULT_MOUNT_PARENT,
			       opts->read_only, &a->fuse);
	if (rc)
		goto fail;
	fd = open(attach_fuse_file(a->fuse), (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = ts_loop_attach_fd(fd,
			       &(struct ts_loop_opts){ .block_size = lun_block_size(a->lun),
						       .read_only = opts->read_only,
						       .autoclear = true,
						       .tag = "tessera-attach" },
			       &a->loop_fd);
	if (rc < 0)
		goto fail;
	a->loop_n = rc;
	close(fd); /* the loop device holds its own reference */
	snprintf(a->dev, sizeof(a->dev), "/dev/loop%d", a->loop_n);
	ts_log(TS_LOG_INFO, "attach", "attached dev=%s file=%s size=%llu bs=%u", a->dev,
	       attach_fuse_file(a->fuse), (unsigned long long)lun_size(a->lun), lun_block_size(a->lun));
	*out = a;
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	attach_fuse_stop(a->fuse);
	lun_disconnect(a->lun);
	opts_free(&a->opts);
	ts_free(a);
	return rc;
}

const char *ts_attach_device_path(const struct ts_attach *a)
{
	return a->dev;
}

const char *ts_attach_file_path(const struct ts_attach *a)
{
	return attach_fuse_file(a->fuse);
}

uint64_t ts_attach_size(const struct ts_attach *a)
{
	return lun_size(a->lun);
}

uint32_t ts_attach_block_size(const struct ts_attach *a)
{
	return lun_block_size(a->lun);
}

int ts_attach_close(struct ts_attach *a)
{
	int rc;

	if (!a)
		return 0;
	rc = ts_loop_detach_fd(a->loop_fd, a->loop_n);
	if (rc)
		return rc; /* still held: nothing changed */
	attach_fuse_stop(a->fuse);
	lun_disconnect(a->lun);
	ts_log(TS_LOG_INFO, "attach", "detached dev=%s", a->dev);
	opts_free(&a->opts);
	ts_free(a);
	return 0;
}

int ts_attach_refresh(struct ts_attach *a, uint64_t *size)
{
	struct lun *probe;
	uint64_t now;
	int rc;

	if (!a || !size)
		return -EINVAL;
	rc = lun_connect(&a->opts, &probe);
	if (rc)
		return rc;
	now = lun_size(probe);
	lun_disconnect(probe);
	if (now > lun_size(a->lun))
		lun_set_size(a->lun, now);
	rc = attach_fuse_invalidate(a->fuse);
	if (rc && rc != -ENOENT)
		return rc;
	rc = ts_loop_refresh_fd(a->loop_fd, size);
	if (rc == 0)
		ts_log(TS_LOG_INFO, "attach", "refreshed dev=%s size=%llu", a->dev,
		       (unsigned long long)*size);
	return rc;
}

static bool module_present(const char *name)
{
	char path[512], line[1024];
	struct utsname u;
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/module/%s", name);
	if (access(path, F_OK) == 0)
		return true;
	if (uname(&u))
		return false;
	snprintf(path, sizeof(path), "/lib/modules/%s/modules.dep", u.release);
	f = fopen(path, "re");
	if (!f)
		return false;
	snprintf(path, sizeof(path), "/%s.ko", name);
	while (!found && fgets(line, sizeof(line), f)) {
		char *colon = strchr(line, ':');
		if (colon) {
			*colon = '\0';
			found = strstr(line, path) != NULL;
		}
	}
	fclose(f);
	return found;
}

bool ts_attach_kernel_available(void)
{
	static const char *const dirs[] = { "/usr/sbin", "/sbin", "/usr/bin", "/bin" };
	bool tool = false;

	for (size_t i = 0; i < TS_ARRAY_SIZE(dirs) && !tool; i++) {
		char p[64];
		snprintf(p, sizeof(p), "%s/iscsiadm", dirs[i]);
		tool = access(p, X_OK) == 0;
	}
	return tool && module_present("iscsi_tcp");
}
