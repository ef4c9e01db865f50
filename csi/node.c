/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI Node service: turn a volume into a mounted filesystem or a block
 * device file on this node.
 *
 * Stage attaches the volume through the backend (a local block device:
 * a loop device over a file, later libiscsi -> FUSE -> loop) and, for
 * Filesystem volumes, makes the filesystem once (only when the device holds
 * no ext4/xfs superblock, detected by magic number, so data survives
 * unstage/stage) and mounts it at the staging path. Publish bind-mounts the
 * staging mount (Filesystem) or the device node (Block, onto a file the
 * driver creates) at the target path, remounting read-only when asked; a
 * read-only Block publish binds a read-only loop device stacked on the staged
 * device instead, because a read-only mount does not make a device node
 * read-only (unpublish finds it by its tag and detaches it).
 * Unpublish and unstage undo this and are idempotent: a missing target or an
 * unknown volume is success.
 *
 * Access modes: stage and publish refuse a capability the volume cannot
 * serve (check_mode: a filesystem written from several nodes, or a mode
 * beyond those the volume was created with, as the volume context says).
 * The *_READER_ONLY modes are read-only whatever the readonly flag says: the
 * staging mount is read-only (MULTI_NODE_READER_ONLY also without journal
 * replay, which would write from every node at once), such a stage makes no
 * filesystem, a read-only stage grows none, and every publish of a volume
 * staged read-only is read-only. Block volumes with multi-node writers (on a
 * backend with multi_node_writers) need nothing more here: each node
 * attaches the same target and the volume's engine orders the writes.
 *
 * The staged set is the node's state: one record per staged volume (id,
 * staging path, device, fs type), kept in memory and written as
 * <state>/node/<id>.json with ts_csi_write_atomic(), so a restarted driver
 * can still unstage what it staged. d->node_lock guards the list and is held
 * across each mount change, so the steps of one volume never interleave with
 * another call's.
 *
 * A failed attach is answered in the user's terms (attach_fail): which
 * iSCSI target at which portal, and why, with UNAVAILABLE when the target
 * cannot be reached, so the CO retries and its event (kubelet's FailedMount)
 * tells the user the data plane is down or unreachable.
 *
 * Paths from the CO are validated (absolute, no '..', no control
 * characters, under the configured prefix) before anything touches them.
 * NodeGetVolumeStats and NodeExpandVolume look the volume up first: an
 * unknown id or a path where the volume is not is NOT_FOUND, as the spec and
 * csi-sanity expect.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/loop.h"

/* Tag of the read-only loop devices a read-only Block publish creates. */
#define RO_TAG "tessera-ro:"

/* ---- small system helpers ---- */

/* Run \p argv (argv[0] looked up in PATH), stdout to /dev/null. 0 or -EIO. */
static int run(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		if (fd >= 0)
			dup2(fd, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		ts_log(TS_LOG_WARN, "csi", "command failed cmd=%s status=%d", argv[0], st);
		return -EIO;
	}
	return 0;
}

/* Undo the octal escapes (\040) of /proc/self/mountinfo in place. */
static void unescape(char *s)
{
	char *o = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/* 1 if \p path is a mount point, 0 if not, -errno on failure. */
static int is_mounted(const char *path)
{
	FILE *f;
	char *line = NULL, *real;
	size_t cap = 0;
	int found = 0;

	/* mountinfo has canonical paths: resolve symlinks and "//" first. */
	real = realpath(path, NULL);
	if (real)
		path = real;
	f = fopen("/proc/self/mountinfo", "re");
	if (!f) {
		free(real);
		return -errno;
	}
	while (!found && getline(&line, &cap, f) > 0) {
		char *save, *tok = strtok_r(line, " ", &save);

		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (tok) {
			unescape(tok);
			found = !strcmp(tok, path);
		}
	}
	free(line);
	free(real);
	fclose(f);
	return found;
}

static int umount_all(const char *path)
{
	/* Stacked mounts (a retried publish) come off one at a time; bounded. */
	for (int i = 0; i < 16; i++) {
		int m = is_mounted(path);

		if (m <= 0)
			return m;
		if (umount2(path, 0) && errno != EINVAL)
			return -errno;
	}
	return -EBUSY;
}

static uint64_t le32(const uint8_t *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

static uint64_t be32(const uint8_t *p)
{
	return (uint64_t)p[0] << 24 | (uint64_t)p[1] << 16 | (uint64_t)p[2] << 8 | (uint64_t)p[3];
}

/*
 * "ext4", "xfs" or "" for what the device holds, and the filesystem's size
 * in bytes from its superblock (ext4: s_blocks_count lo/hi and
 * s_log_block_size; xfs: sb_blocksize and sb_dblocks). -errno on read
 * failure.
 */
static int detect_fs(const char *dev, char *out, size_t len, uint64_t *fs_bytes)
{
	uint8_t buf[2048];
	int fd = open(dev, O_RDONLY | O_CLOEXEC);
	int rc;

	out[0] = '\0';
	*fs_bytes = 0;
	if (fd < 0)
		return -errno;
	rc = ts_pread_full(fd, buf, sizeof(buf), 0);
	close(fd);
	if (rc)
		return rc;
	if (!memcmp(buf, "XFSB", 4)) {
		snprintf(out, len, "xfs");
		*fs_bytes = be32(buf + 4) * (be32(buf + 8) << 32 | be32(buf + 12));
	} else if (buf[1080] == 0x53 && buf[1081] == 0xEF) {
		const uint8_t *sb = buf + 1024;
		bool is64 = le32(sb + 0x60) & 0x80; /* INCOMPAT_64BIT */
		uint64_t blocks = le32(sb + 0x4) | (is64 ? le32(sb + 0x150) << 32 : 0);

		snprintf(out, len, "ext4");
		*fs_bytes = blocks * (1024ull << TS_MIN(le32(sb + 0x18), 16));
	}
	return 0;
}

static int dev_size(const char *path, uint64_t *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (ioctl(fd, BLKGETSIZE64, out))
		rc = -errno;
	close(fd);
	return rc;
}

#ifndef EXT4_IOC_RESIZE_FS
#define EXT4_IOC_RESIZE_FS _IOW('f', 16, uint64_t)
#endif

/*
 * Online-grow the ext4 filesystem mounted at \p mnt to fill \p bytes, with the
 * ioctl resize2fs uses, on the read-write staging mount (resize2fs itself
 * may pick a read-only bind of the same device and give up).
 */
static int grow_ext4(const char *mnt, uint64_t bytes)
{
	struct statvfs s;
	uint64_t blocks;
	int fd, rc = 0;

	if (statvfs(mnt, &s))
		return -errno;
	blocks = bytes / s.f_frsize;
	fd = open(mnt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, EXT4_IOC_RESIZE_FS, &blocks))
		rc = -errno;
	close(fd);
	return rc;
}

/* ---- staging records ---- */

static struct node_vol *find_vol(struct ts_csi_driver *d, const char *id)
{
	for (struct node_vol *v = d->staged; v; v = v->next)
		if (!strcmp(v->id, id))
			return v;
	return NULL;
}

static size_t count_vols(struct ts_csi_driver *d)
{
	size_t n = 0;

	for (struct node_vol *v = d->staged; v; v = v->next)
		n++;
	return n;
}

static int rec_path(struct ts_csi_driver *d, const char *id, char *out, size_t len)
{
	int n = snprintf(out, len, "%s/%s.json", d->node_dir, id);

	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int save_vol(struct ts_csi_driver *d, const struct node_vol *v)
{
	char path[4200];
	json_t *j;
	char *s = NULL;
	int rc;

	rc = rec_path(d, v->id, path, sizeof(path));
	if (rc)
		return rc;
	j = json_pack("{s:s, s:s, s:s, s:s, s:b, s:b}", "id", v->id, "staging", v->staging, "dev",
		      v->dev, "fs_type", v->fs_type, "block", v->block, "ro", v->ro);
	if (j)
		s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	rc = ts_csi_write_atomic(path, s, strlen(s));
	free(s);
	return rc;
}

static void drop_vol(struct ts_csi_driver *d, struct node_vol *v)
{
	char path[4200];

	if (!rec_path(d, v->id, path, sizeof(path)))
		unlink(path);
	for (struct node_vol **pp = &d->staged; *pp; pp = &(*pp)->next)
		if (*pp == v) {
			*pp = v->next;
			break;
		}
	ts_free(v);
}

int csi_node_load(struct ts_csi_driver *d)
{
	DIR *dir;
	struct dirent *e;
	int rc = 0;

	if (mkdir(d->state_dir, 0700) && errno != EEXIST)
		return -errno;
	if (mkdir(d->node_dir, 0700) && errno != EEXIST)
		return -errno;
	dir = opendir(d->node_dir);
	if (!dir)
		return -errno;
	while ((e = readdir(dir))) {
		size_t n = strlen(e->d_name);
		char path[4200];
		struct node_vol *v;
		json_t *j;
		const char *id = NULL, *st = NULL, *dev = NULL, *fs = NULL;
		int blk = 0, ro = 0;

		if (n < 6 || strcmp(e->d_name + n - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/%s", d->node_dir, e->d_name);
		j = json_load_file(path, 0, NULL);
		if (!j || json_unpack(j, "{s:s, s:s, s:s, s:s, s:b, s:b}", "id", &id, "staging", &st,
				      "dev", &dev, "fs_type", &fs, "block", &blk, "ro", &ro)) {
			json_decref(j);
			ts_log(TS_LOG_ERROR, "csi", "unreadable staging record path=%s", path);
			rc = TS_ERR_CORRUPT;
			break;
		}
		v = ts_calloc(1, sizeof(*v));
		if (!v) {
			json_decref(j);
			rc = -ENOMEM;
			break;
		}
		snprintf(v->id, sizeof(v->id), "%s", id);
		snprintf(v->staging, sizeof(v->staging), "%s", st);
		snprintf(v->dev, sizeof(v->dev), "%s", dev);
		snprintf(v->fs_type, sizeof(v->fs_type), "%s", fs);
		v->block = blk;
		v->ro = ro;
		v->next = d->staged;
		d->staged = v;
		json_decref(j);
	}
	closedir(dir);
	return rc;
}

void csi_node_free(struct ts_csi_driver *d)
{
	while (d->staged) {
		struct node_vol *n = d->staged->next;

		ts_free(d->staged);
		d->staged = n;
	}
}

/* ---- attach failures, as the user reads them ---- */

/*
 * Copy the part of \p s up to the first of \p stops (or its end) into \p out,
 * keeping only characters that can appear in a host, port or IQN: the text
 * comes from the volume context and ends up in a Pod event.
 */
static void copy_field(const char *s, const char *stops, char *out, size_t len)
{
	size_t n = 0;

	for (; *s && !strchr(stops, *s) && n + 1 < len; s++)
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		    strchr(".:-_[]", *s))
			out[n++] = *s;
	out[n] = '\0';
}

/*
 * The portal ("host:port") and target IQN of an iSCSI attach context
 * "iscsi://[user[%secret]@]host[:port]/iqn/lun". The credentials are never
 * copied: the host starts after the last '@' (an IQN has none). false when
 * \p attach is not an iSCSI URL (another backend's context).
 */
static bool iscsi_where(const char *attach, char *portal, size_t plen, char *iqn, size_t ilen)
{
	const char *p, *at;

	if (strncmp(attach, "iscsi://", 8) != 0)
		return false;
	p = attach + 8;
	at = strrchr(p, '@');
	if (at)
		p = at + 1;
	copy_field(p, "/", portal, plen);
	p = strchr(p, '/');
	copy_field(p ? p + 1 : "", "/", iqn, ilen);
	return portal[0] != '\0';
}

/*
 * Answer a failed backend attach. When the volume is reached over iSCSI, say
 * which portal and target and what went wrong in words a user acts on: this
 * message is what kubelet puts in the Pod's FailedMount event. A target that
 * cannot be reached is UNAVAILABLE (transient: kubelet retries the stage,
 * and it succeeds once the data plane is back).
 */
static int attach_fail(struct csi_call *c, int err, const char *attach)
{
	char portal[128], iqn[224];

	if (!iscsi_where(attach, portal, sizeof(portal), iqn, sizeof(iqn)))
		return csi_fail_err(c, err, "backend attach");
	switch (err) {
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EHOSTUNREACH:
	case -EHOSTDOWN:
	case -ENETUNREACH:
	case -ENETDOWN:
	case -ETIMEDOUT:
		return csi_fail(c, CSI_UNAVAILABLE,
				"cannot reach the volume's iSCSI target %s at %s: %s (the Tessera data "
				"plane serving this volume is down or unreachable from this node)",
				iqn, portal, ts_strerror(err));
	case -ENOENT:
		return csi_fail(c, CSI_NOT_FOUND,
				"the iSCSI portal %s does not serve the volume's target %s (volume "
				"deleted, or not exported by the data plane)",
				portal, iqn);
	case -EACCES:
		return csi_fail(c, CSI_PERMISSION_DENIED,
				"the iSCSI target %s at %s refused this node's login (CHAP "
				"credentials?): %s",
				iqn, portal, ts_strerror(err));
	default:
		return csi_fail(c, csi_code_from_err(err), "attaching iSCSI target %s at %s: %s",
				iqn, portal, ts_strerror(err));
	}
}

/* ---- handlers ---- */

static int need_node(struct ts_csi_driver *d, struct csi_call *c)
{
	if (!d->node)
		return csi_fail(c, CSI_UNIMPLEMENTED, "this instance does not run the node service");
	return 0;
}

static bool cap_is_block(const Csi__V1__VolumeCapability *cap)
{
	return cap->access_type_case == CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
}

/*
 * The capability a CO stages or publishes with must be one the volume can
 * serve: its access mode possible with its access type (no filesystem
 * written from several nodes, no block writers on several nodes unless the
 * backend orders their writes), and within the modes the volume was created
 * with, which the controller put in the volume context (volumes created
 * before it did carry none and are not checked). Beyond them is the spec's
 * "Exceeds capabilities", FAILED_PRECONDITION.
 */
static int check_mode(struct ts_csi_driver *d, struct csi_call *c, const char *id,
		      const Csi__V1__VolumeCapability *cap, void *const *ctx, size_t n_ctx)
{
	const char *list = csi_kv_get(ctx, n_ctx, CSI_CTX_MODES);
	unsigned mode = (unsigned)cap->access_mode->mode;
	uint32_t modes;

	if (csi_mode_refusal(d->be, cap))
		return csi_fail(c, CSI_FAILED_PRECONDITION, "volume %s: %s", id,
				csi_mode_refusal(d->be, cap));
	if (!list)
		return 0;
	if (csi_modes_parse(list, &modes))
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"volume_context %s='%.200s' is not a list of access modes",
				CSI_CTX_MODES, list);
	if (!csi_modes_cover(modes, mode))
		return csi_fail(c, CSI_FAILED_PRECONDITION,
				"volume %s was created for access modes %.200s; %s is beyond them", id,
				list, ts_csi_mode_name(mode));
	return 0;
}

/*
 * A filesystem volume's record says it is staged, but nothing is mounted at
 * its staging path: an earlier NodeUnstageVolume unmounted it and then could
 * not detach the device (held elsewhere, e.g. by a mount namespace that still
 * had a copy of the mount), and failed, so the CO will retry it. Until then a
 * stage or publish must not hand out the empty directory (a Pod would see no
 * data and write into the node's own filesystem): mount the still-attached
 * device there again. 0, or a CSI failure already set on \p c.
 */
static int restore_staging_mount(struct csi_call *c, const struct node_vol *v,
				 unsigned long flags, bool no_replay)
{
	int m;

	if (v->block)
		return 0;
	m = is_mounted(v->staging);
	if (m < 0)
		return csi_fail_err(c, m, "reading mountinfo");
	if (m)
		return 0;
	if (v->ro)
		flags |= MS_RDONLY;
	if (mount(v->dev, v->staging, v->fs_type, flags,
		  !no_replay ? NULL : strcmp(v->fs_type, "xfs") ? "noload" : "norecovery"))
		return csi_fail_err(c, -errno, "mounting the staging path again");
	ts_log(TS_LOG_WARN, "csi",
	       "staging path was unmounted by a failed unstage: mounted again id=%s dev=%s path=%s",
	       v->id, v->dev, v->staging);
	return 0;
}

static int node_stage(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__NodeStageVolumeRequest *req = reqp;
	const char *attach, *fs_req = NULL, *ctx_fs;
	struct node_vol *v = NULL;
	char fs[8];
	unsigned long flags;
	struct stat sb;
	bool attached = false, no_replay;
	int rc;

	(void)respp;
	if (need_node(d, c) || csi_check_id(c, "volume_id", req->volume_id) ||
	    csi_check_path(d, c, "staging_target_path", req->staging_target_path) ||
	    csi_check_cap(c, req->volume_capability) ||
	    csi_mount_flags(c, req->volume_capability, &flags) ||
	    check_mode(d, c, req->volume_id, req->volume_capability,
		       (void *const *)req->volume_context, req->n_volume_context))
		return -1;
	if (csi_mode_read_only(req->volume_capability))
		flags |= MS_RDONLY;
	/*
	 * Readers on several nodes must not replay a journal (each would write
	 * the same blocks under the others): the filesystem is used as it is.
	 */
	no_replay = csi_mode_multi_node(req->volume_capability) && (flags & MS_RDONLY);
	attach = csi_kv_get((void *const *)req->volume_context, req->n_volume_context,
			    CSI_CTX_ATTACH);
	if (!attach || !attach[0] || strlen(attach) > TS_CSI_ATTACH_MAX)
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"volume_context lacks a valid %s (was the volume created by this driver?)",
				CSI_CTX_ATTACH);
	if (!cap_is_block(req->volume_capability))
		fs_req = req->volume_capability->mount->fs_type;
	ctx_fs = csi_kv_get((void *const *)req->volume_context, req->n_volume_context,
			    CSI_CTX_FSTYPE);
	if (!fs_req || !fs_req[0])
		fs_req = ctx_fs && ctx_fs[0] ? ctx_fs : "ext4";
	if (strcmp(fs_req, "ext4") && strcmp(fs_req, "xfs"))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "fsType must be ext4 or xfs");

	pthread_mutex_lock(&d->node_lock);
	v = find_vol(d, req->volume_id);
	if (v) {
		if (strcmp(v->staging, req->staging_target_path) ||
		    v->block != cap_is_block(req->volume_capability))
			rc = csi_fail(c, CSI_ALREADY_EXISTS,
				      "volume %s is already staged at %s with another access type or path",
				      v->id, v->staging);
		else
			rc = restore_staging_mount(c, v, flags, no_replay);
		v = NULL;
		goto out;
	}
	if (d->max_volumes_per_node && count_vols(d) >= d->max_volumes_per_node) {
		rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "node already has %u volumes staged",
			      d->max_volumes_per_node);
		goto out;
	}
	if (stat(req->staging_target_path, &sb) || !S_ISDIR(sb.st_mode)) {
		rc = csi_fail(c, CSI_FAILED_PRECONDITION,
			      "staging_target_path %s is not an existing directory",
			      req->staging_target_path);
		goto out;
	}
	v = ts_calloc(1, sizeof(*v));
	if (!v) {
		rc = csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	snprintf(v->id, sizeof(v->id), "%s", req->volume_id);
	snprintf(v->staging, sizeof(v->staging), "%s", req->staging_target_path);
	v->block = cap_is_block(req->volume_capability);
	v->ro = flags & MS_RDONLY;
	rc = d->be->attach(d->be_ctx, v->id, attach, v->dev, sizeof(v->dev));
	if (rc) {
		rc = attach_fail(c, rc, attach);
		goto out;
	}
	attached = true;
	if (!v->block) {
		uint64_t fs_bytes = 0, dev_bytes = 0;

		rc = detect_fs(v->dev, fs, sizeof(fs), &fs_bytes);
		if (!rc)
			rc = dev_size(v->dev, &dev_bytes);
		if (rc) {
			rc = csi_fail_err(c, rc, "reading the device");
			goto out;
		}
		if (fs[0] && strcmp(fs, fs_req)) {
			rc = csi_fail(c, CSI_FAILED_PRECONDITION,
				      "volume %s already holds %s, %s requested", v->id, fs, fs_req);
			goto out;
		}
		if (!fs[0] && csi_mode_read_only(req->volume_capability)) {
			/* Readers, perhaps on several nodes at once: none of them may mkfs. */
			rc = csi_fail(c, CSI_FAILED_PRECONDITION,
				      "volume %s holds no filesystem and access mode %s is read-only, so "
				      "none can be made: give it content first (create it from a "
				      "snapshot or a volume, or stage it writable once)",
				      v->id,
				      ts_csi_mode_name((unsigned)req->volume_capability->access_mode->mode));
			goto out;
		}
		if (!fs[0]) {
			char *ext4[] = { "mkfs.ext4", "-F", "-q", "-E",
					 "lazy_itable_init=1,lazy_journal_init=1", v->dev, NULL };
			char *xfs[] = { "mkfs.xfs", "-f", "-q", v->dev, NULL };

			if (csi_check_live(c)) {
				rc = -1;
				goto out;
			}
			rc = run(strcmp(fs_req, "xfs") ? ext4 : xfs);
			if (rc) {
				rc = csi_fail(c, CSI_INTERNAL, "mkfs.%s on %s failed", fs_req, v->dev);
				goto out;
			}
		}
		/* A read-only stage writes nothing: growing waits for a writable one. */
		if (!v->ro && !strcmp(fs, "ext4") && dev_bytes >= fs_bytes + (1 << 20)) {
			/* Expanded while unstaged (or online growth was refused): grow offline. */
			char *fsck[] = { "e2fsck", "-f", "-p", v->dev, NULL };
			char *grow[] = { "resize2fs", v->dev, NULL };

			if (run(fsck) || run(grow)) {
				rc = csi_fail(c, CSI_INTERNAL, "offline grow of ext4 on %s failed",
					      v->dev);
				goto out;
			}
		}
		snprintf(v->fs_type, sizeof(v->fs_type), "%s", fs_req);
		if (mount(v->dev, v->staging, v->fs_type, flags,
			  !no_replay ? NULL : strcmp(v->fs_type, "xfs") ? "noload" : "norecovery")) {
			rc = csi_fail_err(c, -errno, "mounting the staging path");
			goto out;
		}
		if (!v->ro && !strcmp(fs, "xfs") && dev_bytes >= fs_bytes + (1 << 20)) {
			char *grow[] = { "xfs_growfs", v->staging, NULL };

			if (run(grow)) {
				umount2(v->staging, 0);
				rc = csi_fail(c, CSI_INTERNAL, "growing xfs on %s failed", v->dev);
				goto out;
			}
		}
	}
	rc = save_vol(d, v);
	if (rc) {
		if (!v->block)
			umount2(v->staging, 0);
		rc = csi_fail_err(c, rc, "writing the staging record");
		goto out;
	}
	v->next = d->staged;
	d->staged = v;
	v = NULL;
	ts_log(TS_LOG_INFO, "csi", "volume staged id=%s dev=%s path=%s", req->volume_id,
	       d->staged->dev, req->staging_target_path);
out:
	if (v) {
		if (attached)
			d->be->detach(d->be_ctx, v->id, v->dev);
		ts_free(v);
	}
	pthread_mutex_unlock(&d->node_lock);
	return rc;
}

static int node_unstage(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			void *respp)
{
	const Csi__V1__NodeUnstageVolumeRequest *req = reqp;
	struct node_vol *v;
	int rc = 0;

	(void)respp;
	if (need_node(d, c) || csi_check_id(c, "volume_id", req->volume_id) ||
	    csi_check_path(d, c, "staging_target_path", req->staging_target_path))
		return -1;
	pthread_mutex_lock(&d->node_lock);
	v = find_vol(d, req->volume_id);
	if (!v)
		goto out; /* not staged here: nothing to undo */
	if (strcmp(v->staging, req->staging_target_path)) {
		rc = csi_fail(c, CSI_NOT_FOUND, "volume %s is staged at %s, not at %s", v->id,
			      v->staging, req->staging_target_path);
		goto out;
	}
	if (!v->block) {
		/*
		 * Flush first: if another mount namespace still holds a copy of the
		 * mount (a container being torn down), unmounting ours writes nothing
		 * back, and the device may be detached under that copy.
		 */
		int sfd = open(v->staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (sfd >= 0) {
			if (syncfs(sfd))
				ts_log(TS_LOG_WARN, "csi", "syncfs before unstage failed id=%s err=\"%s\"",
				       v->id, strerror(errno));
			close(sfd);
		}
		rc = umount_all(v->staging);
		if (rc) {
			rc = csi_fail_err(c, rc, "unmounting the staging path");
			goto out;
		}
	}
	rc = d->be->detach(d->be_ctx, v->id, v->dev);
	if (rc) {
		rc = csi_fail_err(c, rc, "backend detach");
		goto out;
	}
	ts_log(TS_LOG_INFO, "csi", "volume unstaged id=%s", v->id);
	drop_vol(d, v);
out:
	pthread_mutex_unlock(&d->node_lock);
	return rc;
}

static int node_publish(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			void *respp)
{
	const Csi__V1__NodePublishVolumeRequest *req = reqp;
	const char *tp = req->target_path;
	struct node_vol *v;
	unsigned long flags;
	bool created = false;
	char rodev[TS_CSI_DEV_MAX] = "";
	int rc, m;

	(void)respp;
	if (need_node(d, c) || csi_check_id(c, "volume_id", req->volume_id) ||
	    csi_check_path(d, c, "target_path", tp) ||
	    csi_check_path(d, c, "staging_target_path", req->staging_target_path) ||
	    csi_check_cap(c, req->volume_capability) ||
	    csi_mount_flags(c, req->volume_capability, &flags) ||
	    check_mode(d, c, req->volume_id, req->volume_capability,
		       (void *const *)req->volume_context, req->n_volume_context))
		return -1;
	if (!strcmp(tp, req->staging_target_path))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "target_path equals staging_target_path");
	if (req->readonly || csi_mode_read_only(req->volume_capability))
		flags |= MS_RDONLY;
	pthread_mutex_lock(&d->node_lock);
	v = find_vol(d, req->volume_id);
	if (!v || strcmp(v->staging, req->staging_target_path)) {
		rc = csi_fail(c, CSI_FAILED_PRECONDITION, "volume %s is not staged at %s",
			      req->volume_id, req->staging_target_path);
		goto out;
	}
	if (v->block != cap_is_block(req->volume_capability)) {
		rc = csi_fail(c, CSI_INVALID_ARGUMENT,
			      "volume %s was staged as %s, publish asks for %s", v->id,
			      v->block ? "block" : "filesystem", v->block ? "filesystem" : "block");
		goto out;
	}
	if (v->ro)
		flags |= MS_RDONLY; /* staged read-only: every publish is */
	/* The CO may publish without staging again after a failed unstage. */
	rc = restore_staging_mount(c, v, 0,
				   csi_mode_multi_node(req->volume_capability) && v->ro);
	if (rc)
		goto out;
	m = is_mounted(tp);
	if (m < 0) {
		rc = csi_fail_err(c, m, "reading mountinfo");
		goto out;
	}
	if (m) {
		rc = 0; /* already published: idempotent */
		goto out;
	}
	if (v->block) {
		int fd = open(tp, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);

		if (fd < 0) {
			rc = csi_fail_err(c, -errno, "creating the target file");
			goto out;
		}
		close(fd);
	} else if (mkdir(tp, 0750) == 0) {
		created = true;
	} else if (errno != EEXIST) {
		rc = csi_fail_err(c, -errno, "creating the target directory");
		goto out;
	}
	if (v->block && (flags & MS_RDONLY)) {
		/*
		 * A read-only bind mount does not stop writes to a device node:
		 * publish a read-only loop device over the staged one instead.
		 */
		char tag[TS_CSI_ID_MAX + 16];

		snprintf(tag, sizeof(tag), RO_TAG "%s", v->id);
		rc = ts_loop_attach(v->dev, true, tag, rodev, sizeof(rodev));
		if (rc) {
			rc = csi_fail_err(c, rc, "attaching a read-only loop device");
			goto undo;
		}
	}
	if (mount(rodev[0] ? rodev : v->block ? v->dev : v->staging, tp, NULL, MS_BIND, NULL)) {
		rc = csi_fail_err(c, -errno, "bind-mounting the target");
		goto undo;
	}
	if (flags && mount(NULL, tp, NULL, MS_REMOUNT | MS_BIND | flags, NULL)) {
		rc = csi_fail_err(c, -errno, "remounting the target with the requested flags");
		umount2(tp, 0);
		goto undo;
	}
	ts_log(TS_LOG_INFO, "csi", "volume published id=%s target=%s ro=%d", v->id, tp,
	       !!(flags & MS_RDONLY));
	rc = 0;
	goto out;
undo:
	if (rodev[0])
		ts_loop_detach(rodev);
	if (v->block)
		unlink(tp);
	else if (created)
		rmdir(tp);
out:
	pthread_mutex_unlock(&d->node_lock);
	return rc;
}

static int node_unpublish(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			  void *respp)
{
	const Csi__V1__NodeUnpublishVolumeRequest *req = reqp;
	char rodev[TS_CSI_DEV_MAX] = "";
	struct stat sb;
	int rc = 0;

	(void)respp;
	if (need_node(d, c) || csi_check_id(c, "volume_id", req->volume_id) ||
	    csi_check_path(d, c, "target_path", req->target_path))
		return -1;
	pthread_mutex_lock(&d->node_lock);
	if (lstat(req->target_path, &sb)) {
		if (errno != ENOENT)
			rc = csi_fail_err(c, -errno, "inspecting the target path");
		goto out; /* gone already: idempotent */
	}
	if (!find_vol(d, req->volume_id) && is_mounted(req->target_path) > 0) {
		rc = csi_fail(c, CSI_NOT_FOUND,
			      "volume %s is not staged on this node; refusing to unmount %s",
			      req->volume_id, req->target_path);
		goto out;
	}
	/* A read-only Block publish put its own loop device there (see publish). */
	if (S_ISREG(sb.st_mode) || S_ISBLK(sb.st_mode)) {
		char tag[80];

		if (ts_loop_tag(req->target_path, tag, sizeof(tag), rodev, sizeof(rodev)) ||
		    strncmp(tag, RO_TAG, strlen(RO_TAG)))
			rodev[0] = '\0';
	}
	rc = umount_all(req->target_path);
	if (rc) {
		rc = csi_fail_err(c, rc, "unmounting the target");
		goto out;
	}
	if (rodev[0]) {
		rc = ts_loop_detach(rodev);
		if (rc) {
			rc = csi_fail_err(c, rc, "detaching the read-only loop device");
			goto out;
		}
	}
	if ((S_ISDIR(sb.st_mode) ? rmdir(req->target_path) : unlink(req->target_path)) &&
	    errno != ENOENT) {
		rc = csi_fail_err(c, -errno, "removing the target path");
		goto out;
	}
	ts_log(TS_LOG_INFO, "csi", "volume unpublished id=%s target=%s", req->volume_id,
	       req->target_path);
out:
	pthread_mutex_unlock(&d->node_lock);
	return rc;
}

/*
 * Stats and expand: the volume must be staged here and \p path must be where
 * it is (its staging path or a mount/bind of it). Unknown id or path:
 * NOT_FOUND; a traversing path: INVALID_ARGUMENT. Copies the record to \p out.
 */
static int lookup_at(struct ts_csi_driver *d, struct csi_call *c, const char *id,
		     const char *path, const char *path_field, struct node_vol *out)
{
	struct node_vol *v;
	struct stat sb;
	int rc = 0;

	if (csi_check_id(c, "volume_id", id))
		return -1;
	if (!path || !path[0])
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is required", path_field);
	pthread_mutex_lock(&d->node_lock);
	v = find_vol(d, id);
	if (v)
		*out = *v;
	pthread_mutex_unlock(&d->node_lock);
	if (!v)
		return csi_fail(c, CSI_NOT_FOUND, "volume %s is not staged on this node", id);
	if (path[0] == '/' && csi_check_path(d, c, path_field, path))
		return -1;
	if (path[0] != '/' || stat(path, &sb))
		return csi_fail(c, CSI_NOT_FOUND, "volume %s is not at %s", id, path);
	if (strcmp(path, out->staging))
		rc = is_mounted(path);
	else
		rc = out->block ? 1 : is_mounted(path);
	if (rc <= 0)
		return csi_fail(c, CSI_NOT_FOUND, "volume %s is not mounted at %s", id, path);
	return 0;
}

static Csi__V1__VolumeUsage *usage(struct csi_call *c, Csi__V1__VolumeUsage__Unit unit,
				   uint64_t total, uint64_t avail, uint64_t used)
{
	Csi__V1__VolumeUsage *u = csi_alloc(c, sizeof(*u));

	if (u) {
		csi__v1__volume_usage__init(u);
		u->unit = unit;
		u->total = (int64_t)total;
		u->available = (int64_t)avail;
		u->used = (int64_t)used;
	}
	return u;
}

static int node_get_volume_stats(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
				 void *respp)
{
	const Csi__V1__NodeGetVolumeStatsRequest *req = reqp;
	Csi__V1__NodeGetVolumeStatsResponse *resp = respp;
	Csi__V1__VolumeCondition *cond;
	struct node_vol v;
	struct stat sb;
	char msg[320] = "ok";
	bool abnormal = false;

	if (need_node(d, c) ||
	    lookup_at(d, c, req->volume_id, req->volume_path, "volume_path", &v))
		return -1;
	resp->usage = csi_alloc(c, 2 * sizeof(*resp->usage));
	cond = csi_alloc(c, sizeof(*cond));
	if (!resp->usage || !cond)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	if (stat(v.dev, &sb) || !S_ISBLK(sb.st_mode)) {
		abnormal = true;
		snprintf(msg, sizeof(msg), "device %s is gone", v.dev);
	}
	if (v.block) {
		uint64_t size = 0;
		int rc = dev_size(v.dev, &size);

		if (rc)
			return csi_fail_err(c, rc, "reading the device size");
		resp->usage[0] = usage(c, CSI__V1__VOLUME_USAGE__UNIT__BYTES, size, 0, 0);
		resp->n_usage = 1;
	} else {
		struct statvfs s;

		if (statvfs(req->volume_path, &s))
			return csi_fail_err(c, -errno, "statvfs");
		resp->usage[0] = usage(c, CSI__V1__VOLUME_USAGE__UNIT__BYTES,
				       (uint64_t)s.f_blocks * s.f_frsize,
				       (uint64_t)s.f_bavail * s.f_frsize,
				       (uint64_t)(s.f_blocks - s.f_bfree) * s.f_frsize);
		resp->usage[1] = usage(c, CSI__V1__VOLUME_USAGE__UNIT__INODES, s.f_files, s.f_favail,
				       s.f_files - s.f_ffree);
		resp->n_usage = 2;
		if (!abnormal && (s.f_flag & ST_RDONLY) && !v.ro) {
			abnormal = true;
			snprintf(msg, sizeof(msg), "filesystem is read-only (errors?)");
		}
	}
	for (size_t i = 0; i < resp->n_usage; i++)
		if (!resp->usage[i])
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	csi__v1__volume_condition__init(cond);
	cond->abnormal = abnormal;
	cond->message = csi_strdup(c, msg);
	resp->volume_condition = cond;
	return cond->message ? 0 : csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
}

static int node_expand(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void *respp)
{
	const Csi__V1__NodeExpandVolumeRequest *req = reqp;
	Csi__V1__NodeExpandVolumeResponse *resp = respp;
	const Csi__V1__CapacityRange *r = req->capacity_range;
	struct node_vol v;
	uint64_t size = 0;
	int rc;

	if (need_node(d, c) || lookup_at(d, c, req->volume_id, req->volume_path, "volume_path", &v))
		return -1;
	if (req->volume_capability && csi_check_cap(c, req->volume_capability))
		return -1;
	if (r && (r->required_bytes < 0 || r->limit_bytes < 0 ||
		  (r->limit_bytes && r->required_bytes > r->limit_bytes)))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "capacity_range is invalid");
	pthread_mutex_lock(&d->node_lock);
	rc = d->be->refresh(d->be_ctx, v.id, v.dev, &size);
	if (rc) {
		rc = csi_fail_err(c, rc, "backend refresh");
		goto out;
	}
	if (r && r->required_bytes && size < (uint64_t)r->required_bytes) {
		rc = csi_fail(c, CSI_OUT_OF_RANGE,
			      "device is %" PRIu64 " bytes, below required_bytes (expand the volume on the controller first)",
			      size);
		goto out;
	}
	if (!v.block) {
		char *xfs[] = { "xfs_growfs", v.staging, NULL };
		uint64_t fs_bytes = 0;
		char fs[8];

		rc = detect_fs(v.dev, fs, sizeof(fs), &fs_bytes);
		if (rc) {
			rc = csi_fail_err(c, rc, "reading the filesystem superblock");
			goto out;
		}
		if (size < fs_bytes + (1 << 20))
			goto done; /* already spans the device */
		rc = strcmp(v.fs_type, "xfs") ? grow_ext4(v.staging, size) : run(xfs);
		if (rc == -EPERM) {
			rc = csi_fail(c, CSI_FAILED_PRECONDITION,
				      "online ext4 grow needs CAP_SYS_RESOURCE, which this node lacks; "
				      "the filesystem grows when the volume is staged next");
			goto out;
		}
		if (rc) {
			rc = csi_fail(c, CSI_INTERNAL, "growing the %s filesystem on %s failed: %s",
				      v.fs_type, v.dev, ts_strerror(rc));
			goto out;
		}
	}
done:
	resp->capacity_bytes = (int64_t)size;
	rc = 0;
out:
	pthread_mutex_unlock(&d->node_lock);
	return rc;
}

static int node_get_capabilities(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
				 void *respp)
{
	static const Csi__V1__NodeServiceCapability__RPC__Type types[] = {
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__STAGE_UNSTAGE_VOLUME,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__GET_VOLUME_STATS,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__EXPAND_VOLUME,
		CSI__V1__NODE_SERVICE_CAPABILITY__RPC__TYPE__VOLUME_CONDITION,
	};
	Csi__V1__NodeGetCapabilitiesResponse *resp = respp;

	(void)reqp;
	if (need_node(d, c))
		return -1;
	resp->capabilities = csi_alloc(c, TS_ARRAY_SIZE(types) * sizeof(*resp->capabilities));
	if (!resp->capabilities)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	for (size_t i = 0; i < TS_ARRAY_SIZE(types); i++) {
		Csi__V1__NodeServiceCapability *cap = csi_alloc(c, sizeof(*cap));
		Csi__V1__NodeServiceCapability__RPC *rpc = csi_alloc(c, sizeof(*rpc));

		if (!cap || !rpc)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		csi__v1__node_service_capability__init(cap);
		csi__v1__node_service_capability__rpc__init(rpc);
		rpc->type = types[i];
		cap->type_case = CSI__V1__NODE_SERVICE_CAPABILITY__TYPE_RPC;
		cap->rpc = rpc;
		resp->capabilities[i] = cap;
	}
	resp->n_capabilities = TS_ARRAY_SIZE(types);
	return 0;
}

static int node_get_info(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			 void *respp)
{
	Csi__V1__NodeGetInfoResponse *resp = respp;
	Csi__V1__Topology *t = csi_alloc(c, sizeof(*t));
	void **seg = csi_alloc(c, sizeof(void *));

	(void)reqp;
	if (need_node(d, c))
		return -1;
	if (!t || !seg)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	csi__v1__topology__init(t);
	seg[0] = csi_kv_new(c, &csi__v1__topology__segments_entry__descriptor, TS_CSI_TOPOLOGY_KEY,
			    d->node_id);
	resp->node_id = csi_strdup(c, d->node_id);
	if (!seg[0] || !resp->node_id)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	t->segments = (Csi__V1__Topology__SegmentsEntry **)seg;
	t->n_segments = 1;
	resp->accessible_topology = t;
	resp->max_volumes_per_node = d->max_volumes_per_node;
	return 0;
}

#define M(name, lname, fn)                                                            \
	{ "/csi.v1.Node/" name, &csi__v1__##lname##_request__descriptor,                \
	  &csi__v1__##lname##_response__descriptor, fn }

const struct csi_method csi_node_methods[] = {
	M("NodeStageVolume", node_stage_volume, node_stage),
	M("NodeUnstageVolume", node_unstage_volume, node_unstage),
	M("NodePublishVolume", node_publish_volume, node_publish),
	M("NodeUnpublishVolume", node_unpublish_volume, node_unpublish),
	M("NodeGetVolumeStats", node_get_volume_stats, node_get_volume_stats),
	M("NodeExpandVolume", node_expand_volume, node_expand),
	M("NodeGetCapabilities", node_get_capabilities, node_get_capabilities),
	M("NodeGetInfo", node_get_info, node_get_info),
};
const size_t csi_node_method_count = TS_ARRAY_SIZE(csi_node_methods);
