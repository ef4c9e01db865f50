/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The CSI backend seam: what the Controller and Node services need from the
 * storage underneath, as one ops table.
 *
 * The controller side creates, deletes and expands volumes and reports
 * capacity and readiness. A created volume is named by a backend-chosen id
 * (at most TS_CSI_ID_MAX bytes of [A-Za-z0-9._-]) and carries an opaque
 * attach context (at most TS_CSI_ATTACH_MAX bytes, e.g. an iSCSI URL
 * `iscsi://host:port/iqn/lun`) that the CSI layer hands to the node side in
 * the volume context. The node side turns (id, attach context) into a local
 * block device path and back.
 *
 * Implementations: backend_file.c (sparse files + loop devices, the test
 * backend, see ts_csi_backend_file_create()); the data-plane backend (EC
 * volumes served over iSCSI, attached via libiscsi -> FUSE -> loop) plugs in
 * the same way.
 *
 * Errors: 0 or -errno / TS_ERR_*. The CSI layer maps them to gRPC codes in one
 * place (csi/driver.c: csi_code_from_err): -ENOENT NOT_FOUND, -EEXIST
 * ALREADY_EXISTS, -EINVAL INVALID_ARGUMENT, -ERANGE OUT_OF_RANGE, -ENOSPC /
 * TS_ERR_NO_SPACE / -ENOMEM RESOURCE_EXHAUSTED, -EAGAIN / TS_ERR_DEGRADED
 * UNAVAILABLE, -EBUSY FAILED_PRECONDITION, anything else INTERNAL.
 *
 * THREAD SAFETY: the CSI layer serializes controller mutations
 * (create/delete/expand) under its controller lock and node mutations
 * (attach/detach/refresh) under its node lock; capacity and probe may be
 * called concurrently with anything. A backend must tolerate that.
 */
#ifndef TS_CSI_BACKEND_H
#define TS_CSI_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_CSI_ID_MAX 64
#define TS_CSI_ATTACH_MAX 512
#define TS_CSI_NAME_MAX 128
#define TS_CSI_DEV_MAX 256

/** What CreateVolume asks of the backend (already validated by the CSI layer). */
struct ts_csi_vol_spec {
	const char *name;        /**< CO-chosen name, idempotency key */
	uint64_t capacity_bytes; /**< exact size to provision (MiB-aligned) */
	uint32_t ec_k, ec_m;     /**< erasure code; 0+0 = backend default */
};

/** A provisioned volume as the backend reports it. */
struct ts_csi_backend_vol {
	char id[TS_CSI_ID_MAX + 1];
	char attach[TS_CSI_ATTACH_MAX + 1];
	uint64_t capacity_bytes;
};

struct ts_csi_backend_ops {
	const char *name; /**< short backend name for logs ("file", "dataplane") */

	/** 0 when the backend can serve IO now; -EAGAIN (or other) when not. */
	int (*probe)(void *ctx);

	/**
	 * Provision a volume. Must be idempotent by spec->name: a retry after a
	 * crash returns the same id. Returns 0 and fills \p out; -ENOSPC when
	 * the space is not there; -ERANGE for an unsupported size.
	 */
	int (*create)(void *ctx, const struct ts_csi_vol_spec *spec,
		      struct ts_csi_backend_vol *out);

	/** Remove a volume; 0 also when it does not exist. */
	int (*remove)(void *ctx, const char *id);

	/**
	 * Grow a volume to at least \p bytes (never shrinks). 0 and the new
	 * size in \p out_bytes; -ENOENT if unknown.
	 */
	int (*expand)(void *ctx, const char *id, uint64_t bytes, uint64_t *out_bytes);

	/** Bytes available for new volumes. 0 or -errno. */
	int (*capacity)(void *ctx, uint64_t *avail_bytes);

	/* ---- node side ---- */

	/**
	 * Make the volume available as a local block device. Writes its path
	 * (NUL-terminated, < \p dev_len) into \p dev. Not idempotent by itself:
	 * the CSI node service calls it once per stage.
	 */
	int (*attach)(void *ctx, const char *id, const char *attach, char *dev, size_t dev_len);

	/** Undo attach(); 0 also when \p dev is no longer attached. */
	int (*detach)(void *ctx, const char *id, const char *dev);

	/**
	 * After a controller-side expand: make \p dev show the new size.
	 * Returns 0 and the device size in \p out_bytes.
	 */
	int (*refresh)(void *ctx, const char *id, const char *dev, uint64_t *out_bytes);

	/** Free \p ctx. */
	void (*destroy)(void *ctx);
};

/**
 * The file backend: each volume is a sparse file `<dir>/<id>.img`, attached
 * with a loop device (ioctls on /dev/loop-control and /dev/loopN, no losetup
 * binary). Ids are derived from the volume name (FNV-1a, "fv-" + 32 hex), so
 * create is idempotent across restarts. The attach context is
 * `file://<path>`. \p capacity_bytes caps the sum of volume sizes (0 = the
 * free space of the filesystem under \p dir).
 *
 * Returns 0 and the ops table + context in \p ops / \p ctx (free with
 * ops->destroy(ctx)); -errno if \p dir cannot be created.
 */
int ts_csi_backend_file_create(const char *dir, uint64_t capacity_bytes,
			       const struct ts_csi_backend_ops **ops, void **ctx);

#endif /* TS_CSI_BACKEND_H */
