/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The node side of every backend whose volumes are iSCSI targets: attach an
 * `iscsi://` URL (the volume's attach context) as a local block device
 * through the user-space initiator (volumedriver/attach: libiscsi -> FUSE
 * file -> loop device), and keep the table of what this process attached so
 * detach and refresh find it by device path.
 *
 * The data-plane backend (the volume's engine in this process) and the
 * remote backend (the engine elsewhere, csi/backend/backend_remote.h) both
 * attach this way: one table per backend object.
 *
 * THREAD SAFETY: every function may be called from any thread; one internal
 * lock covers the table (attach and detach of one set run one at a time).
 */
#ifndef TS_CSI_ISCSI_ATTACH_H
#define TS_CSI_ISCSI_ATTACH_H

#include <stddef.h>
#include <stdint.h>

struct ts_csi_iscsi_attach;

/**
 * A table whose FUSE mounts go under `<state_dir>/attach` (created on the
 * first attach). 0 and *\p out, -EINVAL, -ENOMEM. Free with
 * ts_csi_iscsi_attach_destroy().
 */
int ts_csi_iscsi_attach_create(const char *state_dir, struct ts_csi_iscsi_attach **out);

/**
 * Attach \p url (must start with `iscsi://`, else -EINVAL); the device path
 * goes to \p dev (< \p dev_len, and < TS_CSI_DEV_MAX, else -ENAMETOOLONG
 * and nothing stays attached). -ENOSPC when the table is full; an attach
 * error otherwise (ts_attach_open).
 */
int ts_csi_iscsi_attach_open(struct ts_csi_iscsi_attach *t, const char *url, char *dev,
			     size_t dev_len);

/** Detach \p dev; 0 also when this table did not attach it. */
int ts_csi_iscsi_attach_close(struct ts_csi_iscsi_attach *t, const char *dev);

/** Re-read the target's size into \p dev; 0 and *\p out_bytes, -ENOENT (not ours). */
int ts_csi_iscsi_attach_refresh(struct ts_csi_iscsi_attach *t, const char *dev,
				uint64_t *out_bytes);

/** Detach everything still attached and free \p t (NULL is a no-op). */
void ts_csi_iscsi_attach_destroy(struct ts_csi_iscsi_attach *t);

struct ts_csi_backend_ops;

/**
 * A backend that is only this table: the node side of a node-only CSI
 * driver (`tessera node --csi-endpoint`, the chart's DaemonSet), whose
 * controller side runs elsewhere. attach/detach/refresh as above, probe 0;
 * every controller op answers -EOPNOTSUPP (the driver never calls them with
 * its controller service off). 0 and \p ops / \p ctx (free with
 * ops->destroy(ctx)), -EINVAL, -ENOMEM.
 */
int ts_csi_iscsi_attach_backend(const char *state_dir, const struct ts_csi_backend_ops **ops,
				void **ctx);

#endif /* TS_CSI_ISCSI_ATTACH_H */
