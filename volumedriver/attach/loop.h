/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Loop devices without losetup: bind a file (or a block device) to a free
 * /dev/loopN with ioctls, unbind it, make it see a new size, read back the
 * tag it was bound with.
 *
 * Two kinds of user, one implementation (loop.c):
 *  - the attach path (attach.c) binds its FUSE file by fd with the LUN's
 *    block size and LO_FLAGS_AUTOCLEAR, keeps the loop fd, and unbinds with
 *    ts_loop_detach_fd(), which refuses while the device is held;
 *  - the CSI file backend (volume images) and the CSI node service (a
 *    read-only loop over a staged device for read-only Block publishes,
 *    since a read-only bind mount does not stop writes to a device node)
 *    bind by path with a tag and find the device again by its node.
 *
 * Errors: 0 or -errno. THREAD SAFETY: any thread. Another process may take
 * the free device between LOOP_CTL_GET_FREE and LOOP_CONFIGURE; that shows
 * as EBUSY and is retried a bounded number of times.
 */
#ifndef TS_LOOP_H
#define TS_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** How to bind (ts_loop_attach_fd). Zeroed fields are the defaults. */
struct ts_loop_opts {
	uint32_t block_size; /**< logical block size; 0: the kernel's default (512) */
	bool read_only;      /**< LO_FLAGS_READ_ONLY; the loop fd is opened O_RDONLY */
	bool autoclear;      /**< LO_FLAGS_AUTOCLEAR: released at the last close */
	const char *tag;     /**< backing-file name (truncated to 63 bytes); NULL: "" */
};

/**
 * Bind \p backing_fd (the caller keeps it; the loop device takes its own
 * reference) to a free loop device as \p o says. Returns the device number
 * N of /dev/loopN and an open fd on it in *\p loop_fd (caller closes or
 * passes it to ts_loop_detach_fd()), or -errno.
 */
int ts_loop_attach_fd(int backing_fd, const struct ts_loop_opts *o, int *loop_fd);

/**
 * Unbind the device \p devnum open as \p loop_fd. -EBUSY (nothing changed)
 * while someone holds it exclusively (a mounted file system, mkfs).
 * Waits (bounded) until the kernel has dropped the backing file. Closes
 * \p loop_fd on success.
 */
int ts_loop_detach_fd(int loop_fd, int devnum);

/** Re-read the backing size (LOOP_SET_CAPACITY); 0 and the new size, or -errno. */
int ts_loop_refresh_fd(int loop_fd, uint64_t *size);

/**
 * Open \p path and bind it to a free loop device, read-only when \p ro, with
 * \p tag (may be NULL) as its backing-file name, where ts_loop_tag() reads
 * it back. No autoclear: the binding outlives this process. Writes
 * "/dev/loopN" to \p dev (\p dev_len bytes). 0 or -errno.
 */
int ts_loop_attach(const char *path, bool ro, const char *tag, char *dev, size_t dev_len);

/** Unbind \p dev; 0 also when it is not bound or does not exist. */
int ts_loop_detach(const char *dev);

/** ts_loop_refresh_fd() on the device node \p dev. */
int ts_loop_refresh(const char *dev, uint64_t *out_bytes);

/**
 * The tag of the loop device behind the device node \p node (a /dev/loopN or
 * a bind mount of one) into \p tag; -ENXIO when \p node is no loop device.
 * 0 or -errno. The device's path goes to \p dev when non-NULL.
 */
int ts_loop_tag(const char *node, char *tag, size_t tag_len, char *dev, size_t dev_len);

#endif /* TS_LOOP_H */
