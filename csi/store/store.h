/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Controller metadata store: one record per volume, behind an ops table.
 *
 * The CSI controller keeps what it promised the CO here: the name -> id
 * mapping that makes CreateVolume idempotent, the size and parameters a
 * re-create is compared with, and the backend's attach context. The embedded
 * implementation (store_file.c) writes one JSON file per volume in the state
 * directory, atomically (temp file, fsync, rename, fsync dir), and keeps an
 * in-memory index. A Kubernetes-backed store (custom resources) implements
 * the same table later.
 *
 * Records are plain values: the store copies in and out, never keeps caller
 * pointers.
 *
 * Errors: 0 or -errno. get/del of an unknown id return -ENOENT.
 *
 * THREAD SAFETY: every op may be called from any thread; implementations
 * serialize internally. The controller still holds its own lock across a
 * read-modify-write sequence.
 */
#ifndef TS_CSI_STORE_H
#define TS_CSI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csi/backend/backend.h"

/** A volume record. All strings NUL-terminated. */
struct ts_csi_volume {
	char id[TS_CSI_ID_MAX + 1];
	char name[TS_CSI_NAME_MAX + 1];
	char attach[TS_CSI_ATTACH_MAX + 1];
	char fs_type[8];     /**< "" (node default), "ext4" or "xfs" */
	uint64_t capacity_bytes;
	uint32_t ec_k, ec_m; /**< 0+0 = backend default */
	bool block;          /**< created with a Block access type */
	/**
	 * Content source it was created from: "" (empty volume),
	 * "snapshot:<id>" or "volume:<id>". Records written before this field
	 * existed read as "".
	 */
	char source[TS_CSI_ID_MAX + 16];
	/** QoS from the StorageClass and ControllerModifyVolume (all 0: none). */
	struct ts_csi_qos qos;
	/**
	 * The access modes it was created with: bit (1u << mode) for each
	 * TS_CSI_MODE_* of the CreateVolume capabilities. 0 = a record written
	 * before access modes were recorded (such volumes were created with
	 * single-node modes or MULTI_NODE_READER_ONLY only).
	 */
	uint32_t access_modes;
};

/**
 * Access modes, numbered as CSI's VolumeCapability.AccessMode.Mode (the
 * controller checks the numbers against the generated enum at compile
 * time). The record's JSON holds their names.
 */
enum ts_csi_access_mode {
	TS_CSI_MODE_SINGLE_NODE_WRITER = 1,
	TS_CSI_MODE_SINGLE_NODE_READER_ONLY = 2,
	TS_CSI_MODE_MULTI_NODE_READER_ONLY = 3,
	TS_CSI_MODE_MULTI_NODE_SINGLE_WRITER = 4,
	TS_CSI_MODE_MULTI_NODE_MULTI_WRITER = 5,
	TS_CSI_MODE_SINGLE_NODE_SINGLE_WRITER = 6,
	TS_CSI_MODE_SINGLE_NODE_MULTI_WRITER = 7,
	TS_CSI_MODE_MAX = 7,
};

/**
 * The name of access mode \p mode as the CSI spec spells it
 * ("MULTI_NODE_MULTI_WRITER"); NULL for a number that is no mode. The
 * string is static.
 */
const char *ts_csi_mode_name(unsigned mode);

/** The mode named \p name (as ts_csi_mode_name() spells it), or -EINVAL. */
int ts_csi_mode_parse(const char *name);

/**
 * A group snapshot record (GroupController): the member snapshots of one
 * cut, in the order of the request's source volumes.
 */
struct ts_csi_group {
	char id[TS_CSI_ID_MAX + 1];
	char name[TS_CSI_NAME_MAX + 1];
	uint64_t ctime_ns;
	uint32_t n;
	char vol[TS_CSI_GROUP_MAX][TS_CSI_ID_MAX + 1];
	char snap[TS_CSI_GROUP_MAX][TS_CSI_ID_MAX + 1];
};

struct ts_csi_store_ops {
	/** Insert or replace the record with v->id. Durable when it returns 0. */
	int (*put)(void *ctx, const struct ts_csi_volume *v);
	/** Copy the record with \p id into \p out; -ENOENT if none. */
	int (*get)(void *ctx, const char *id, struct ts_csi_volume *out);
	/** Copy the record named \p name into \p out; -ENOENT if none. */
	int (*get_by_name)(void *ctx, const char *name, struct ts_csi_volume *out);
	/** Remove the record with \p id; -ENOENT if none. Durable on 0. */
	int (*del)(void *ctx, const char *id);
	/**
	 * Records with id > \p after (all when \p after is NULL or ""), in id
	 * order, at most \p max of them into \p out; *n gets the count and
	 * *more whether records remain after the last one returned.
	 */
	int (*list)(void *ctx, const char *after, struct ts_csi_volume *out, size_t max,
		    size_t *n, bool *more);
	/** Number of records. */
	size_t (*count)(void *ctx);

	/* Group snapshot records: the same rules, a table of their own. */
	int (*group_put)(void *ctx, const struct ts_csi_group *g);
	int (*group_get)(void *ctx, const char *id, struct ts_csi_group *out);
	int (*group_get_by_name)(void *ctx, const char *name, struct ts_csi_group *out);
	/** The group whose members include snapshot \p snap_id; -ENOENT if none. */
	int (*group_of_snap)(void *ctx, const char *snap_id, struct ts_csi_group *out);
	int (*group_del)(void *ctx, const char *id);
	/** Free \p ctx (NULL is a no-op). */
	void (*destroy)(void *ctx);
};

/**
 * The embedded store: `<dir>/<id>.json` per volume and
 * `<dir>/groups/<id>.json` per group snapshot, loaded at open. Files
 * left half-written by a crash (`*.tmp`) are removed; unreadable records
 * fail the open with TS_ERR_CORRUPT rather than being dropped silently.
 * Returns 0 and \p ops / \p ctx, or -errno.
 */
int ts_csi_store_file_open(const char *dir, const struct ts_csi_store_ops **ops, void **ctx);

/**
 * Write \p data (\p len bytes) to \p path atomically and durably: a
 * temporary file beside it, fsync, rename, fsync of the directory.
 * 0 or -errno. Shared with the node service's staging records.
 */
int ts_csi_write_atomic(const char *path, const void *data, size_t len);

#endif /* TS_CSI_STORE_H */
