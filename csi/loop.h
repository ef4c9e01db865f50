/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Loop devices without losetup: attach a file (or a block device) to a free
 * /dev/loopN with ioctls, detach it, make it see a new size.
 *
 * Used by the file backend (volume images) and by the node service (a
 * read-only loop over a staged device for read-only Block publishes, since a
 * read-only bind mount does not stop writes to a device node). The data-plane
 * attach path (libiscsi -> FUSE file -> loop) can use it too.
 *
 * THREAD SAFETY: any thread. Another process may take the free device
 * between LOOP_CTL_GET_FREE and LOOP_CONFIGURE; that shows as EBUSY and is
 * retried a bounded number of times.
 */
#ifndef TS_CSI_LOOP_H
#define TS_CSI_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Attach \p path to a free loop device, read-only when \p ro. \p tag (may be
 * NULL) is stored as the device's backing-file name (truncated to 63 bytes),
 * where ts_csi_loop_tag() reads it back. Writes "/dev/loopN" to \p dev
 * (\p dev_len bytes). 0 or -errno.
 */
int ts_csi_loop_attach(const char *path, bool ro, const char *tag, char *dev, size_t dev_len);

/** Detach \p dev; 0 also when it is not attached or does not exist. */
int ts_csi_loop_detach(const char *dev);

/** Re-read the backing size (LOOP_SET_CAPACITY); the new size in \p out_bytes. */
int ts_csi_loop_refresh(const char *dev, uint64_t *out_bytes);

/**
 * The tag of the loop device behind the device node \p node (a /dev/loopN or
 * a bind mount of one) into \p tag; -ENXIO when \p node is no attached loop
 * device. 0 or -errno. The device's path goes to \p dev when non-NULL.
 */
int ts_csi_loop_tag(const char *node, char *tag, size_t tag_len, char *dev, size_t dev_len);

#endif /* TS_CSI_LOOP_H */
