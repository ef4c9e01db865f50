/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Loop device control with ioctls, the way losetup does it: LOOP_CTL_GET_FREE
 * on /dev/loop-control, then LOOP_CONFIGURE on /dev/loopN (one call that sets
 * the backing fd, flags and name; LOOP_SET_FD + LOOP_SET_STATUS64 on kernels
 * older than 5.8). A container's /dev may lack the node the kernel just
 * allocated; it is created with mknod (block major 7).
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
#include <unistd.h>

#include "csi/loop.h"
#include "dataplane/common/ts_common.h"

#ifndef LOOP_CONFIGURE
#define LOOP_CONFIGURE 0x4C0A
struct loop_config {
	uint32_t fd;
	uint32_t block_size;
	struct loop_info64 info;
	uint64_t __reserved[8];
};
#endif

static void set_name(uint8_t name[LO_NAME_SIZE], const char *s)
{
	size_t n = s ? TS_MIN(strlen(s), (size_t)LO_NAME_SIZE - 1) : 0;

	memcpy(name, s ? s : "", n);
	name[n] = '\0';
}

static int open_loop(int n)
{
	char dev[32];
	int fd;

	snprintf(dev, sizeof(dev), "/dev/loop%d", n);
	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT) {
		if (mknod(dev, S_IFBLK | 0660, makedev(7, (unsigned)n)) && errno != EEXIST)
			return -errno;
		fd = open(dev, O_RDWR | O_CLOEXEC);
	}
	return fd < 0 ? -errno : fd;
}

static int configure(int lfd, int ffd, bool ro, const char *tag)
{
	struct loop_config cfg;
	struct loop_info64 info;

	memset(&cfg, 0, sizeof(cfg));
	cfg.fd = (uint32_t)ffd;
	cfg.info.lo_flags = ro ? LO_FLAGS_READ_ONLY : 0;
	set_name(cfg.info.lo_file_name, tag);
	if (ioctl(lfd, LOOP_CONFIGURE, &cfg) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOTTY)
		return -errno;
	memset(&info, 0, sizeof(info));
	set_name(info.lo_file_name, tag);
	if (ioctl(lfd, LOOP_SET_FD, ffd))
		return -errno;
	if (ioctl(lfd, LOOP_SET_STATUS64, &info)) {
		int rc = -errno;

		ioctl(lfd, LOOP_CLR_FD, 0);
		return rc;
	}
	return 0;
}

int ts_csi_loop_attach(const char *path, bool ro, const char *tag, char *dev, size_t dev_len)
{
	int ffd, ctl, rc = -EBUSY;

	ffd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
	if (ffd < 0)
		return -errno;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0) {
		rc = -errno;
		goto out;
	}
	for (int tries = 0; tries < 16 && rc == -EBUSY; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE), lfd;

		if (n < 0) {
			rc = -errno;
			break;
		}
		lfd = open_loop(n);
		if (lfd < 0) {
			rc = lfd;
			break;
		}
		rc = configure(lfd, ffd, ro, tag);
		if (rc == 0)
			snprintf(dev, dev_len, "/dev/loop%d", n);
		close(lfd);
	}
	close(ctl);
out:
	close(ffd);
	return rc;
}

int ts_csi_loop_detach(const char *dev)
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

int ts_csi_loop_refresh(const char *dev, uint64_t *out_bytes)
{
	int fd, rc = 0;

	fd = open(dev, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, LOOP_SET_CAPACITY, 0) || ioctl(fd, BLKGETSIZE64, out_bytes))
		rc = -errno;
	close(fd);
	return rc;
}

int ts_csi_loop_tag(const char *node, char *tag, size_t tag_len, char *dev, size_t dev_len)
{
	struct loop_info64 info;
	struct stat sb;
	int fd, rc = 0;

	if (stat(node, &sb))
		return -errno;
	if (!S_ISBLK(sb.st_mode) || major(sb.st_rdev) != 7)
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
