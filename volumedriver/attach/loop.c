/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loop devices (loop.h): bind a file to /dev/loopN, and unbind it, the way
 * losetup does it.
 *
 * Binding asks /dev/loop-control for a free device and configures it in
 * one LOOP_CONFIGURE call (backing fd, logical block size, flags, name),
 * falling back to LOOP_SET_FD + LOOP_SET_STATUS64 (+ LOOP_SET_BLOCK_SIZE
 * when a size is asked for) on kernels before 5.8. Another process may grab
 * the same free device between the two calls; configuring then fails with
 * EBUSY and we ask again (bounded). Containers often lack device nodes for
 * loop devices the kernel creates on demand, so a missing /dev/loopN is made
 * with mknod.
 *
 * The attach path binds a FUSE file opened with direct_io: direct IO stays
 * off, so the loop device's page cache is the only cache, and
 * LO_FLAGS_AUTOCLEAR makes the kernel release the device if we die without
 * unbinding it (at its last close, or at unmount if a file system holds it).
 *
 * ts_loop_detach_fd() refuses (-EBUSY) while anyone holds the device
 * exclusively (a mounted file system, mkfs), because clearing a device under
 * a mounted file system only defers the clear and would leave the FUSE file
 * pinned. A plain (non-exclusive) opener cannot be refused: the clear is
 * deferred to its close, and its IO fails once the FUSE session is gone.
 * ts_loop_detach() (by path, for the CSI users) just clears.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/loop.h"

#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
	uint32_t fd;
	uint32_t block_size;
	struct loop_info64 info;
	uint64_t __reserved[8];
};
#endif

#define LOOP_MAJOR 7
#define LOOP_GRAB_TRIES 16

static int open_loop(int n, int flags)
{
	char path[32];
	int fd;

	snprintf(path, sizeof(path), "/dev/loop%d", n);
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mknod(path, S_IFBLK | 0660, makedev(LOOP_MAJOR, n)) && errno != EEXIST)
			return -errno;
		fd = open(path, flags | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

static int configure_legacy(int fd, const struct loop_config *cfg)
{
	if (ioctl(fd, LOOP_SET_FD, cfg->fd))
		return -errno;
	if (ioctl(fd, LOOP_SET_STATUS64, &cfg->info) ||
	    (cfg->block_size && ioctl(fd, LOOP_SET_BLOCK_SIZE, (unsigned long)cfg->block_size))) {
		int rc = -errno;
		(void)ioctl(fd, LOOP_CLR_FD, 0);
		return rc;
	}
	return 0;
}

/* Bind with \p cfg, opening the loop device with \p flags: N and *loop_fd, or -errno. */
static int grab(const struct loop_config *cfg, int flags, int *loop_fd)
{
	int ctl, rc = -EBUSY;

	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -errno;
	for (int i = 0; i < LOOP_GRAB_TRIES; i++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), fd;

		if (n < 0) {
			rc = -errno;
			break;
		}
		fd = open_loop(n, flags);
		if (fd < 0) {
			rc = fd;
			break;
		}
		if (ioctl(fd, LOOP_CONFIGURE, cfg) == 0) {
			rc = 0;
		} else if (errno == EINVAL || errno == ENOTTY) {
			rc = configure_legacy(fd, cfg);
		} else {
			rc = -errno;
		}
		if (rc == 0) {
			close(ctl);
			*loop_fd = fd;
			return n;
		}
		close(fd);
		if (rc != -EBUSY)
			break; /* EBUSY: someone took it first; ask again */
	}
	close(ctl);
	return rc;
}

static void set_name(struct loop_info64 *info, const char *s)
{
	snprintf((char *)info->lo_file_name, sizeof(info->lo_file_name), "%s", s ? s : "");
}

int ts_loop_attach_fd(int backing_fd, const struct ts_loop_opts *o, int *loop_fd)
{
	struct loop_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)backing_fd;
	cfg.block_size = o->block_size;
	cfg.info.lo_flags = (o->autoclear ? LO_FLAGS_AUTOCLEAR : 0) |
			    (o->read_only ? LO_FLAGS_READ_ONLY : 0);
	set_name(&cfg.info, o->tag);
	return grab(&cfg, o->read_only ? O_RDONLY : O_RDWR, loop_fd);
}

static bool loop_bound(int n)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/block/loop%d/loop/backing_file", n);
	return access(path, F_OK) == 0;
}

int ts_loop_detach_fd(int loop_fd, int devnum)
{
	int probe;

	/* O_EXCL on a block device fails with EBUSY while it is mounted or claimed. */
	probe = open_loop(devnum, O_RDONLY | O_EXCL);
	if (probe == -EBUSY)
		return -EBUSY;
	if (probe >= 0)
		close(probe);
	if (ioctl(loop_fd, LOOP_CLR_FD, 0) && errno != ENXIO)
		ts_log(TS_LOG_WARN, "attach", "LOOP_CLR_FD failed dev=loop%d err=\"%s\"", devnum,
		       strerror(errno));
	close(loop_fd);
	/* The clear completes at our close; wait (bounded) until the kernel shows it. */
	for (int i = 0; i < 500 && loop_bound(devnum); i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	/* Someone still has it open (not exclusively): autoclear frees it at their close. */
	if (loop_bound(devnum))
		ts_log(TS_LOG_WARN, "attach", "loop device still open elsewhere dev=loop%d", devnum);
	return 0;
}

int ts_loop_refresh_fd(int loop_fd, uint64_t *size)
{
	if (ioctl(loop_fd, LOOP_SET_CAPACITY, 0) != 0)
		return -errno;
	if (ioctl(loop_fd, BLKGETSIZE64, size) != 0)
		return -errno;
	return 0;
}

/* ---- by path (the CSI file backend and node service) ---- */

int ts_loop_attach(const char *path, bool ro, const char *tag, char *dev, size_t dev_len)
{
	struct loop_config cfg;
	int ffd, lfd = -1, n;

	ffd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (ffd < 0)
		return -errno;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)ffd;
	cfg.info.lo_flags = ro ? LO_FLAGS_READ_ONLY : 0;
	set_name(&cfg.info, tag);
	/* The device is configured through a read-write fd even when read-only. */
	n = grab(&cfg, O_RDWR, &lfd);
	close(ffd);
	if (n < 0)
		return n;
	close(lfd);
	snprintf(dev, dev_len, "/dev/loop%d", n);
	return 0;
}

int ts_loop_detach(const char *dev)
{
	int fd, rc = 0;

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENXIO ? 0 : -errno;
	if (ioctl(fd, LOOP_CLR_FD, 0) && errno != ENXIO)
		rc = -errno;
	close(fd);
	return rc;
}

int ts_loop_refresh(const char *dev, uint64_t *out_bytes)
{
	int fd, rc;

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = ts_loop_refresh_fd(fd, out_bytes);
	close(fd);
	return rc;
}

int ts_loop_tag(const char *node, char *tag, size_t tag_len, char *dev, size_t dev_len)
{
	struct loop_info64 info;
	struct stat sb;
	int fd, rc = 0;

	if (stat(node, &sb))
		return -errno;
	if (!S_ISBLK(sb.st_mode) || major(sb.st_rdev) != LOOP_MAJOR)
		return -ENXIO;
	fd = open(node, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, LOOP_GET_STATUS64, &info))
		rc = -errno;
	close(fd);
	if (rc)
		return rc;
	info.lo_file_name[LO_NAME_SIZE - 1] = '\0';
	snprintf(tag, tag_len, "%s", (const char *)info.lo_file_name);
	if (dev)
		snprintf(dev, dev_len, "/dev/loop%u", minor(sb.st_rdev));
	return 0;
}
