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
 * volumes served over iSCSI, attached via libiscsi -> FUSE -> loop,
 * backend_dataplane.h) plugs in the same way; the remote backend
 * (backend_remote.h) forwards the controller side to engine services
 * (csi/engine.h) that serve one of the others.
 *
 * Errors: 0 or -errno / TS_ERR_*. The CSI layer maps them to gRPC codes in one
 * place (csi/driver.c: csi_code_from_err): -ENOENT NOT_FOUND, -EEXIST
 * ALREADY_EXISTS, -EINVAL INVALID_ARGUMENT, -ERANGE OUT_OF_RANGE, -ENOSPC /
 * TS_ERR_NO_SPACE / -ENOMEM RESOURCE_EXHAUSTED, -EAGAIN / TS_ERR_DEGRADED
 * UNAVAILABLE, -EBUSY / -EXDEV FAILED_PRECONDITION, anything else INTERNAL.
 *
 * THREAD SAFETY: the CSI layer serializes controller mutations
 * (create/delete/expand, snap_create/snap_delete/create_from) under its
 * controller lock and node mutations (attach/detach/refresh) under its node
 * lock; capacity, probe, snap_list and snap_delta may be called concurrently
 * with anything. A backend must tolerate that.
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

/** A snapshot as the backend reports it. */
struct ts_csi_backend_snap {
	char id[TS_CSI_ID_MAX + 1];     /**< snapshot id */
	char source[TS_CSI_ID_MAX + 1]; /**< id of the volume it was taken of (may be gone) */
	uint64_t size_bytes;            /**< size of the source volume when it was taken */
	uint64_t ctime_ns;              /**< creation time, ns since the epoch */
	bool ready;                     /**< usable as a content source now */
};

/** What a new volume's content comes from (CreateVolume volume_content_source). */
enum ts_csi_src_kind {
	TS_CSI_SRC_SNAPSHOT = 0,
	TS_CSI_SRC_VOLUME,
};

/** A byte range of a snapshot (SnapshotMetadata). */
struct ts_csi_range {
	uint64_t offset, length;
};

/**
 * Per-volume QoS (ControllerModifyVolume / StorageClass parameters, see
 * csi/qos.c). Every field 0 = unlimited / none. Rates are per second.
 */
struct ts_csi_qos {
	uint64_t iops, read_iops, write_iops; /**< IO operations per second */
	uint64_t bps, read_bps, write_bps;    /**< bytes per second */
	uint32_t burst_ms;                    /**< bucket depth as ms of the rate; 0 = 1000 */
	uint64_t reserve_iops;                /**< minimum kept under contention */
};

/** What the engine's QoS did to a volume (counters since it was served). */
struct ts_csi_qos_stats {
	uint64_t admitted;       /**< IOs that went at once */
	uint64_t delayed;        /**< IOs queued by a limit */
	uint64_t queued_now;     /**< IOs waiting now */
	uint64_t delay_ns_total; /**< time IOs spent queued */
	uint64_t dyn_cap_iops;   /**< cap imposed for others' reservations (0: none) */
};

/** Most volumes in one group snapshot. */
#define TS_CSI_GROUP_MAX 64

/** A provisioned volume as the backend reports it. */
struct ts_csi_backend_vol {
	char id[TS_CSI_ID_MAX + 1];
	char attach[TS_CSI_ATTACH_MAX + 1];
	uint64_t capacity_bytes;
};

struct ts_csi_backend_ops {
	const char *name; /**< short backend name for logs ("file", "dataplane") */
	/**
	 * Writers on several nodes are safe on one volume: the volume's engine
	 * serializes overlapping writes from every path (no read sees a mix of
	 * two writes) and SCSI persistent reservations are shared by every
	 * path. Block volumes are offered MULTI_NODE_SINGLE_WRITER and
	 * MULTI_NODE_MULTI_WRITER only when this is set.
	 */
	bool multi_node_writers;

	/** 0 when the backend can serve IO now; -EAGAIN (or other) when not. */
	int (*probe)(void *ctx);

	/**
	 * Provision a volume. Must be idempotent by spec->name: a retry after a
	 * crash returns the same id. Returns 0 and fills \p out; -ENOSPC when
	 * the space is not there; -ERANGE for an unsupported size.
	 */
	int (*create)(void *ctx, const struct ts_csi_vol_spec *spec,
		      struct ts_csi_backend_vol *out);

	/**
	 * Optional (NULL = not supported): the volume created under \p name
	 * (create's idempotency key), filled like create; -ENOENT when there
	 * is none. Never creates. The remote backend asks every engine with it
	 * before placing a new name (docs/engines.md).
	 */
	int (*find)(void *ctx, const char *name, struct ts_csi_backend_vol *out);

	/** Remove a volume; 0 also when it does not exist. */
	int (*remove)(void *ctx, const char *id);

	/**
	 * Grow a volume to at least \p bytes (never shrinks). 0 and the new
	 * size in \p out_bytes; -ENOENT if unknown.
	 */
	int (*expand)(void *ctx, const char *id, uint64_t bytes, uint64_t *out_bytes);

	/** Bytes available for new volumes. 0 or -errno. */
	int (*capacity)(void *ctx, uint64_t *avail_bytes);

	/* ---- snapshots and clones (optional: NULL = not supported) ---- */

	/**
	 * Snapshot volume \p vol_id under \p name (a CSI name, <= TS_CSI_NAME_MAX
	 * bytes). Idempotent by name: the same name and source return the
	 * existing snapshot; the same name on another source is -EEXIST.
	 * -ENOENT unknown volume, -ENOSPC.
	 */
	int (*snap_create)(void *ctx, const char *vol_id, const char *name,
			   struct ts_csi_backend_snap *out);

	/**
	 * Optional: the snapshot created under \p name (snap_create's key),
	 * -ENOENT when there is none. The remote backend asks the other
	 * engines with it, so a name stays unique across engines.
	 */
	int (*snap_find)(void *ctx, const char *name, struct ts_csi_backend_snap *out);

	/** Delete a snapshot; 0 also when it does not exist. */
	int (*snap_delete)(void *ctx, const char *snap_id);

	/**
	 * List snapshots in id order: only \p snap_id when not NULL, only those
	 * of source volume \p vol_id when not NULL, after the snapshot id
	 * \p after (a cursor from an earlier call; NULL = from the start). Fills
	 * at most \p max entries, *\p n and *\p more (entries remain). An
	 * unknown snap_id or vol_id lists nothing; a malformed \p after is -EINVAL.
	 */
	int (*snap_list)(void *ctx, const char *snap_id, const char *vol_id, const char *after,
			 struct ts_csi_backend_snap *out, size_t max, size_t *n, bool *more);

	/**
	 * Provision a volume with the content of a snapshot or a volume (no
	 * copy is implied). spec->capacity_bytes 0 = the source's size;
	 * smaller than the source is -ERANGE. Idempotent by spec->name like
	 * create (an existing volume of that name is returned as is).
	 * -ENOENT unknown source, -ENOSPC.
	 */
	int (*create_from)(void *ctx, const struct ts_csi_vol_spec *spec, enum ts_csi_src_kind kind,
			   const char *src_id, struct ts_csi_backend_vol *out);

	/**
	 * Changed-block metadata: the byte ranges that differ between snapshot
	 * \p base (NULL = the empty volume, i.e. the allocated ranges) and
	 * snapshot \p target, ascending and coalesced, from byte \p start.
	 * Fills at most \p max ranges, *\p n, *\p next (offset to resume from,
	 * UINT64_MAX when done) and *\p size (the target's size). -ENOENT
	 * unknown snapshot, -ERANGE start beyond the size, -EINVAL.
	 */
	int (*snap_delta)(void *ctx, const char *base, const char *target, uint64_t start,
			  struct ts_csi_range *out, size_t max, size_t *n, uint64_t *next,
			  uint64_t *size);

	/* ---- QoS and group snapshots (optional: NULL = not supported) ---- */

	/**
	 * Apply \p q to volume \p id now (online, IO keeps flowing) and whenever
	 * the backend serves it again (a restart re-applies what the CSI layer
	 * has stored, see ts_csi_driver_create). 0, -ENOENT, -EINVAL.
	 */
	int (*set_qos)(void *ctx, const char *id, const struct ts_csi_qos *q);

	/** What the engine's QoS did to volume \p id since it was served. 0, -ENOENT. */
	int (*qos_stats)(void *ctx, const char *id, struct ts_csi_qos_stats *out);

	/**
	 * Snapshot \p n volumes at one point in time (no write acknowledged
	 * after the cut in any member, none acknowledged before it missing).
	 * \p name is the group's CSI name; member i's snapshot gets a name
	 * derived from it and vols[i], so a retry after a crash finds a complete
	 * earlier cut (and returns it) or removes a partial one and cuts again.
	 * Fills out[0..n-1]. -ENOENT (a volume is unknown), -ETIMEDOUT (a member
	 * could not be held still in time; nothing is left behind), -ENOSPC.
	 */
	int (*group_snap_create)(void *ctx, const char *name, const char *const *vols, size_t n,
				 struct ts_csi_backend_snap *out);

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
