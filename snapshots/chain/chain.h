/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Snapshot, clone, restore and delete on a pool's tree of disk chains, and
 * changed-block queries between any two snapshots (or from empty).
 *
 * This is the policy over dataplane/volume's layer primitives:
 *  - a snapshot is a frozen, visible layer; the CSI snapshot id is its layer id.
 *  - deleting a snapshot with at most one child folds it away at once (no
 *    data copied, overridden blocks freed); with two or more children (it is
 *    the base of clones) it is hidden, and folded away later when deletes of
 *    its descendants leave it with one child or none.
 *  - a clone of a snapshot is a new volume whose head sits on the snapshot; a
 *    clone of a live volume first takes a hidden snapshot of it, atomically.
 *  - restore (in place) gives a volume a new head on a snapshot and discards
 *    the old head.
 * Invariant kept by every call here (and restored by ts_chain_gc() after a
 * crash between two steps): no hidden layer has fewer than two children.
 *
 * Changed blocks: ts_chain_delta() returns the byte ranges whose content may
 * differ between two snapshots: the grains mapped by layers on the paths from
 * each snapshot up to their common ancestor, keeping those whose resolved
 * block differs. ts_chain_allocated() is the delta from empty. Both page
 * through results: start at a byte offset, return at most \p max ranges and
 * the offset to continue from (TS_CHAIN_END when done).
 *
 * THREAD SAFETY: every call may run from any thread; mutating calls serialise
 * on the pool's tree lock, queries hold it for reading for one page. Not from
 * a member completion context.
 */
#ifndef TS_CHAIN_H
#define TS_CHAIN_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/volume/volume.h"

#define TS_CHAIN_END UINT64_MAX

/** A byte range of a volume or snapshot. */
struct ts_chain_range {
	uint64_t offset, length;
};

struct ts_chain_snapshot_info {
	uint64_t id;
	uint64_t volume;  /**< source volume id (may no longer exist) */
	uint64_t size;    /**< bytes */
	uint64_t ctime;   /**< ns since the epoch */
	char name[TS_VOLUME_NAME_MAX];
};

/** Snapshot a volume. 0 and *\p snap_id, -ENOENT, -ENOMEM, commit errors. */
int ts_chain_snapshot(struct ts_vpool *p, uint64_t vol_id, const char *name, uint64_t *snap_id);

/**
 * Delete a snapshot (fold or hide, see above). -ENOENT if it is not a visible
 * snapshot (unknown, already deleted, or a volume head). -ENOMEM leaves it.
 */
int ts_chain_snapshot_delete(struct ts_vpool *p, uint64_t snap_id);

/** Delete a volume and fold away hidden ancestors it was keeping. -ENOENT, -EBUSY (open). */
int ts_chain_volume_delete(struct ts_vpool *p, uint64_t vol_id);

enum ts_chain_src {
	TS_CHAIN_FROM_SNAPSHOT = 0,
	TS_CHAIN_FROM_VOLUME,
};

/**
 * New volume with the content of a snapshot or of a live volume, sharing its
 * blocks. \p size 0 means the source's size; otherwise >= it.
 * 0 and *\p vol_id, -ENOENT, -EINVAL, -ENOMEM, commit errors.
 */
int ts_chain_clone(struct ts_vpool *p, enum ts_chain_src kind, uint64_t src_id, const char *name,
		   uint64_t size, uint64_t *vol_id);

/** Revert a volume in place to a snapshot (any snapshot of the pool). -ENOENT. */
int ts_chain_restore(struct ts_vpool *p, uint64_t vol_id, uint64_t snap_id);

/** 0 and *\p out for a visible snapshot, else -ENOENT. */
int ts_chain_snapshot_info(struct ts_vpool *p, uint64_t snap_id, struct ts_chain_snapshot_info *out);

/**
 * Visible snapshots with id >= \p start (of volume \p vol_id, or all when 0),
 * ascending, at most \p max. Returns the count written.
 */
int ts_chain_snapshot_list(struct ts_vpool *p, uint64_t vol_id, uint64_t start,
			   struct ts_chain_snapshot_info *out, size_t max);

/**
 * Find a visible snapshot by exact name (the first, by id, if several share
 * it): 0 and *\p out, or -ENOENT. For CSI's idempotent CreateSnapshot.
 */
int ts_chain_snapshot_find(struct ts_vpool *p, const char *name, struct ts_chain_snapshot_info *out);

/** Find a volume by exact name (lowest id first): 0 and *\p vol_id, or -ENOENT. */
int ts_chain_volume_find(struct ts_vpool *p, const char *name, uint64_t *vol_id);

/**
 * Ranges (ascending, coalesced) that differ between snapshot \p base (0: the
 * empty volume) and snapshot \p target, within target's size, from byte
 * \p start (a multiple of TS_VOLUME_BLOCK). Writes at most \p max ranges,
 * returns their count and sets *\p next to the offset to resume from or
 * TS_CHAIN_END. -ENOENT (not visible snapshots), -EINVAL, -ENOMEM.
 */
int ts_chain_delta(struct ts_vpool *p, uint64_t base, uint64_t target, uint64_t start,
		   struct ts_chain_range *out, size_t max, uint64_t *next);

/** Allocated ranges of a snapshot: ts_chain_delta(p, 0, snap, ...). */
int ts_chain_allocated(struct ts_vpool *p, uint64_t snap_id, uint64_t start,
		       struct ts_chain_range *out, size_t max, uint64_t *next);

/**
 * Visit the tree depth-first, parents before children, roots in id order:
 * \p cb(arg, layer, depth) for every layer (heads, snapshots, hidden). A
 * non-zero return from cb stops the walk and is returned.
 */
int ts_chain_walk(struct ts_vpool *p,
		  int (*cb)(void *arg, const struct ts_vpool_layer_info *l, unsigned depth), void *arg);

/**
 * Fold away hidden layers left with fewer than two children (after a crash
 * between the steps of a clone or delete). Call after ts_vpool_open().
 * Returns the number folded or a negative error.
 */
int ts_chain_gc(struct ts_vpool *p);

#endif /* TS_CHAIN_H */
