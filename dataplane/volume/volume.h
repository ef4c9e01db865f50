/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Thin volumes and their layer tree on one backing device (a pool).
 *
 * A pool lives on a struct ts_member (in production an erasure-coded array
 * group; in tests a RAM or file provider). It holds volumes and layers:
 *  - a *layer* owns a sparse map grain -> physical block (4 KiB grains,
 *    TS_VOLUME_BLOCK). Layers form a tree through their parent link.
 *  - a *volume* has one writable *head* layer; what it reads is the merge of
 *    its head and the head's ancestors, newest first. A per-volume merged
 *    index (grain -> physical block) is kept current, so a read costs one
 *    index lookup however many layers lie below.
 *  - a *snapshot* freezes a volume's head (it becomes an ordinary, read-only
 *    layer) and gives the volume a new empty head on top.
 *  - a clone is a new volume whose head's parent is an existing layer: no data
 *    is copied. Clones and restores make the chains a tree.
 *  - removing a layer with one child folds its map into the child (blocks the
 *    child overrides are freed); with no child its blocks are freed. A layer
 *    with two or more children cannot be removed (-EBUSY): snapshots/chain
 *    hides it instead and removes it when its children drop to one.
 *
 * Invariants: every physical block is owned by exactly one layer or is free;
 * a head never shares a block with another layer, so writes to blocks the
 * head owns go in place and all other writes allocate (copy-on-write at grain
 * granularity; no read-modify-write since a grain is the IO unit).
 *
 * Durability: data written and acknowledged before a completed flush
 * (ts_volume_flush() or ts_vpool_commit()) survives a crash; metadata
 * operations (create, delete, expand, snapshot, clone, rebase, layer remove,
 * volume attributes) commit before they return. A crash at any point leaves
 * the last committed tree. See docs/volumes.md for the on-disk format.
 *
 * IDs: volume and layer ids are non-zero, never reused within a pool.
 *
 * THREAD SAFETY: every function may be called from any thread. Locks, in the
 * order they are taken: tree (rwlock: topology changes take it for writing,
 * queries through ts_vpool_tree_rdlock() for reading), commit (serialises
 * commits), pool mutex (maps, allocator, record buffer; held only briefly, never
 * across a member submit). Volume IO takes only the pool mutex. Overlapping
 * IOs to the same range in flight at once complete in an undefined order
 * (volumedriver/arbiter, above this layer, serialises them: frontends use it). ts_volume_flush(), and
 * every metadata call, do synchronous member IO and must not be called from a
 * member completion context.
 */
#ifndef TS_VOLUME_H
#define TS_VOLUME_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/member/member.h"

/** Grain and IO unit: offsets and lengths of volume IO are multiples of it. */
#define TS_VOLUME_BLOCK 4096u
/** Longest volume or snapshot name (including the NUL). */
#define TS_VOLUME_NAME_MAX 64

struct ts_vpool;
struct ts_volume;

/* ------------------------------------------------------------------ pool */

/**
 * Write an empty pool onto \p m (destroys what was there). The member's block
 * size must divide TS_VOLUME_BLOCK and it must hold at least 1024 blocks.
 * Returns 0, -EINVAL, TS_ERR_TOO_SMALL, -ENOMEM or a member error.
 */
int ts_vpool_format(struct ts_member *m);

/**
 * Open the pool on \p m: loads the last checkpoint, replays the log, rebuilds
 * the read indexes and the free-space map, then writes a fresh checkpoint if
 * the log held anything. \p m must outlive the pool (not owned).
 * Returns 0 and *\p out, or TS_ERR_FOREIGN (no pool), TS_ERR_CORRUPT,
 * TS_ERR_VERSION, -ENOMEM, a member error.
 */
int ts_vpool_open(struct ts_member *m, struct ts_vpool **out);

/** Commit and free. All volume handles must be closed. NULL is a no-op. */
void ts_vpool_close(struct ts_vpool *p);

/**
 * Make every write completed before the call durable, with the metadata
 * that maps it. 0 or a member error / TS_ERR_NO_SPACE (metadata area full).
 * Nothing commits on its own: metadata of unflushed writes accumulates in RAM
 * (stats.dirty_bytes, ~28 bytes per newly allocated grain) until a flush, a
 * metadata operation or this call; callers that never flush should commit
 * periodically.
 */
int ts_vpool_commit(struct ts_vpool *p);

struct ts_vpool_stats {
	uint64_t data_blocks;    /**< blocks of TS_VOLUME_BLOCK for data */
	uint64_t free_blocks;    /**< allocatable now */
	uint64_t pending_free;   /**< freed, allocatable after the next commit */
	uint64_t volumes;
	uint64_t layers;         /**< including heads and hidden layers */
	uint64_t generation;     /**< checkpoint generation */
	uint64_t meta_slot_bytes; /**< capacity of one checkpoint slot */
	uint64_t meta_last_bytes; /**< size of the last checkpoint */
	uint64_t log_blocks;     /**< log capacity */
	uint64_t log_used;       /**< log blocks used since the last checkpoint */
	uint64_t dirty_bytes;    /**< metadata records waiting for the next commit */
};
void ts_vpool_stats(struct ts_vpool *p, struct ts_vpool_stats *out);

/* --------------------------------------------------------------- volumes */

struct ts_vpool_volume_info {
	uint64_t id;
	uint64_t size;        /**< bytes */
	uint64_t head;        /**< head layer id */
	uint64_t ctime;       /**< creation, ns since the epoch */
	char name[TS_VOLUME_NAME_MAX];
};

/**
 * Create a volume of \p size bytes (multiple of TS_VOLUME_BLOCK, > 0) named
 * \p name (may be NULL; truncated). \p parent_layer 0 makes an empty volume;
 * otherwise the head's parent is that layer (a clone: reads see the layer's
 * content, nothing is copied) and \p size must be >= the layer's size.
 * Returns 0 and *\p vol_id, -EINVAL, -ENOENT (no such layer), -ENOMEM, or a
 * commit error.
 */
int ts_vpool_volume_create(struct ts_vpool *p, const char *name, uint64_t size,
			   uint64_t parent_layer, uint64_t *vol_id);

/**
 * Delete a volume: frees its head's blocks. Its head's parent is left in the
 * tree (snapshots/chain decides what becomes of it). -ENOENT, -EBUSY (a
 * handle is open, or the volume is held or being snapshotted), or a commit
 * error.
 */
int ts_vpool_volume_delete(struct ts_vpool *p, uint64_t vol_id);

/** Grow to \p new_size bytes (online; shrinking is -EINVAL). */
int ts_vpool_volume_expand(struct ts_vpool *p, uint64_t vol_id, uint64_t new_size);

/** 0 and *\p out, or -ENOENT. */
int ts_vpool_volume_info(struct ts_vpool *p, uint64_t vol_id, struct ts_vpool_volume_info *out);

/**
 * List volume ids in ascending order, starting at the first id >= \p start,
 * at most \p max. Returns the number written (>= 0).
 */
int ts_vpool_volume_list(struct ts_vpool *p, uint64_t start, uint64_t *ids, size_t max);

/**
 * Freeze the volume's head into a snapshot layer named \p name and give the
 * volume a fresh head. \p flags may hold TS_LAYER_HIDDEN (an internal
 * snapshot, e.g. the base of a clone of a live volume), set atomically. Waits for the volume's in-flight writes; flushes and
 * commits. Returns 0 and *\p layer_id (the snapshot), -ENOENT, -ENOMEM, or
 * a commit error (the tree is then unchanged).
 */
int ts_vpool_snapshot(struct ts_vpool *p, uint64_t vol_id, const char *name, uint32_t flags,
		      uint64_t *layer_id);

/**
 * Hold a volume still at one point in time, for a group snapshot
 * (snapshots/group): stop admitting new IO and wait until the IO already
 * admitted has completed. From the moment the hold is raised, new reads,
 * writes and unmaps on the volume are queued (never blocked, as during a
 * snapshot; flushes still run), and a queued IO is neither admitted nor
 * acknowledged until the hold is released. Returns once nothing is in
 * flight, so the volume's head then holds exactly the writes admitted
 * before the hold.
 *
 * \p deadline_ns is an absolute CLOCK_MONOTONIC time (ts_now_ns() scale).
 * Returns 0 (held: pair with ts_vpool_volume_release()), -ENOENT, -EINVAL,
 * or -ETIMEDOUT if in-flight IO has not drained by then: the hold is then
 * already undone (queued IO resubmitted) and there is nothing to release.
 *
 * Holds nest with each other (two group snapshots over the same volume) and
 * with ts_vpool_snapshot() / ts_vpool_volume_rebase() on the held volume,
 * which then run at once (nothing is in flight) and leave the queue alone:
 * IO queued during a hold stays queued until the last hold is released. A
 * held volume cannot be deleted (-EBUSY).
 *
 * A hold does not expire on its own: the holder (in-process, see
 * docs/volumes.md "Group snapshots") always releases it. Release every hold
 * before ts_vpool_close(). Takes the pool mutex only; must not be called
 * from a member completion context (it waits for completions).
 */
int ts_vpool_volume_hold(struct ts_vpool *p, uint64_t vol_id, uint64_t deadline_ns);

/**
 * Drop one hold taken by ts_vpool_volume_hold(). When it was the volume's
 * last quiesce, the IOs queued meanwhile are resubmitted in the order they
 * were submitted, from this thread (their callbacks may run in it), and
 * IO submitted while that drain runs queues behind them. A release without
 * a hold is logged and ignored.
 */
void ts_vpool_volume_release(struct ts_vpool *p, uint64_t vol_id);

/**
 * Restore in place: discard the volume's head (freeing its blocks) and give it
 * a new empty head whose parent is \p layer_id. The volume's size becomes
 * max(size, layer's size). The old head's parent stays in the tree.
 * -ENOENT, -EINVAL (\p layer_id is a head), -ENOMEM, commit errors.
 */
int ts_vpool_volume_rebase(struct ts_vpool *p, uint64_t vol_id, uint64_t layer_id);

/* ----------------------------------------------------- volume attributes */

/** Longest attribute name (including the NUL). */
#define TS_VOLUME_ATTR_NAME_MAX 32
/** Largest attribute value, bytes. */
#define TS_VOLUME_ATTR_VALUE_MAX 32768u
/** Most attributes one volume holds. */
#define TS_VOLUME_ATTRS_MAX 8

/*
 * A volume carries a few small named byte strings (e.g. "scsi.pr": the LU's
 * persistent reservations) that belong to the volume itself, not to its
 * data: they live in the pool's metadata (log records and checkpoints, so
 * they are as crash-safe as the tree), go with ts_vpool_volume_delete(),
 * stay with the volume through snapshots, expansion and rebase, and are
 * neither copied into snapshot layers nor inherited by clones (a clone is a
 * new volume). Their bytes count against the checkpoint slot
 * (stats.meta_slot_bytes). Names are NUL-terminated, 1 to
 * TS_VOLUME_ATTR_NAME_MAX - 1 bytes; values are opaque.
 */

/**
 * Set (create or replace) attribute \p name of volume \p vol_id to the \p len
 * bytes at \p value (copied; \p value may be NULL when \p len is 0) and commit.
 * Returns 0 once the value is durable; -EINVAL (NULL pool or name, empty or
 * too long name), -E2BIG (\p len > TS_VOLUME_ATTR_VALUE_MAX), -ENOSPC (a new
 * name on a volume that already has TS_VOLUME_ATTRS_MAX), -ENOENT (no such
 * volume), -ENOMEM (nothing changed), or a commit error (the value is set in
 * memory and written by the next successful commit, as for other metadata
 * operations). Takes the pool mutex and the commit mutex, not the tree lock;
 * does synchronous member IO.
 */
int ts_vpool_volume_attr_set(struct ts_vpool *p, uint64_t vol_id, const char *name,
			     const void *value, size_t len);

/**
 * Read attribute \p name of volume \p vol_id into \p buf (\p cap bytes).
 * Returns the value's length (>= 0) after copying it; with \p cap 0 (\p buf
 * may then be NULL) only the length. -ENOENT (no such volume or attribute),
 * -ERANGE (\p cap > 0 but smaller than the value: nothing copied), -EINVAL.
 * Memory only: no IO.
 */
int ts_vpool_volume_attr_get(struct ts_vpool *p, uint64_t vol_id, const char *name, void *buf,
			     size_t cap);

/**
 * Delete attribute \p name of volume \p vol_id and commit. 0, -ENOENT (no such
 * volume or attribute), -EINVAL, -ENOMEM, or a commit error (deleted in
 * memory, as for ts_vpool_volume_attr_set()).
 */
int ts_vpool_volume_attr_del(struct ts_vpool *p, uint64_t vol_id, const char *name);

/* ---------------------------------------------------------------- layers */

#define TS_LAYER_HEAD 0x1u   /**< a volume's writable head (set by the pool) */
#define TS_LAYER_HIDDEN 0x2u /**< deleted by the user, kept for its children */

struct ts_vpool_layer_info {
	uint64_t id;
	uint64_t parent;      /**< 0 for a root */
	uint64_t volume;      /**< volume whose head it is or was when frozen */
	uint64_t size;        /**< volume size when frozen (heads: current) */
	uint64_t ctime;       /**< ns since the epoch: frozen (snapshot) or created */
	uint64_t entries;     /**< grains mapped by this layer itself */
	uint32_t flags;       /**< TS_LAYER_* */
	uint32_t children;
	char name[TS_VOLUME_NAME_MAX];
};

/** 0 and *\p out, or -ENOENT. */
int ts_vpool_layer_info(struct ts_vpool *p, uint64_t layer_id, struct ts_vpool_layer_info *out);

/** Layer ids >= \p start ascending, at most \p max; returns the count written. */
int ts_vpool_layer_list(struct ts_vpool *p, uint64_t start, uint64_t *ids, size_t max);

/** Children of \p layer_id ascending, at most \p max; returns the total child count or -ENOENT. */
int ts_vpool_layer_children(struct ts_vpool *p, uint64_t layer_id, uint64_t *ids, size_t max);

/** Set or clear TS_LAYER_HIDDEN (other bits are ignored); commits. -ENOENT, -EINVAL on a head. */
int ts_vpool_layer_set_hidden(struct ts_vpool *p, uint64_t layer_id, int hidden);

/**
 * Remove a non-head layer from the tree. No child: its blocks are freed. One
 * child: its map is folded into the child (entries the child already has are
 * freed, the rest move) and the child takes its parent. No data is copied.
 * Every volume reads the same after as before. Commits.
 * -ENOENT, -EINVAL (a head), -EBUSY (two or more children), -ENOMEM (the tree
 * is unchanged), commit errors.
 */
int ts_vpool_layer_remove(struct ts_vpool *p, uint64_t layer_id);

/**
 * The layer's own map: first grain >= \p from it maps. Returns 1 and
 * *\p grain (and *\p present: 1 for data, 0 for a discard marker that hides
 * older layers), 0 at the end, -ENOENT. Call under ts_vpool_tree_rdlock() for a
 * consistent walk.
 */
int ts_vpool_layer_next(struct ts_vpool *p, uint64_t layer_id, uint64_t from, uint64_t *grain,
			int *present);

/**
 * What \p layer_id reads at \p grain: the physical block number (an opaque,
 * non-zero token: equal tokens mean equal content) or 0 for zeroes, or a
 * negative error. Walks the layer's ancestors (query path, not the IO path).
 */
int64_t ts_vpool_resolve(struct ts_vpool *p, uint64_t layer_id, uint64_t grain);

/** Hold the tree still (no snapshot/clone/remove/delete) across several queries. */
void ts_vpool_tree_rdlock(struct ts_vpool *p);
void ts_vpool_tree_unlock(struct ts_vpool *p);

/* ------------------------------------------------------------- volume IO */

/** Completion of a volume IO: \p status is 0 or a negative error. */
typedef void (*ts_volume_cb)(void *arg, int status);

/**
 * Open an IO handle on a volume. 0 and *\p out, -ENOENT, -ENOMEM. The volume
 * cannot be deleted while a handle is open (-EBUSY).
 */
int ts_volume_open(struct ts_vpool *p, uint64_t vol_id, struct ts_volume **out);
/** Close; no IO may be in flight. NULL is a no-op. */
void ts_volume_close(struct ts_volume *v);
/** Current size in bytes (changes with expansion). */
uint64_t ts_volume_size(struct ts_volume *v);

/**
 * Asynchronous IO. \p off and \p len are multiples of TS_VOLUME_BLOCK, len > 0,
 * within the volume's size; \p buf (len bytes) stays valid until the callback.
 * Returns 0 and \p cb fires exactly once (maybe before the call returns, on
 * any thread), or a negative error and \p cb never fires: -EINVAL, -ENOMEM,
 * TS_ERR_NO_SPACE (write: pool full). A callback status may be a member error.
 * While a snapshot or restore of the volume waits for in-flight IO, or a hold
 * (ts_vpool_volume_hold()) is in place, new reads, writes and unmaps are
 * queued and submitted in order when it is done (never blocked), so they may
 * be submitted from a completion callback.
 * Unmap makes the range read as zeroes and frees what the head owned.
 * Flush commits the pool (synchronously, in the caller's thread) then fires
 * \p cb with the result.
 */
int ts_volume_read(struct ts_volume *v, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		   void *arg);
int ts_volume_write(struct ts_volume *v, uint64_t off, uint64_t len, const void *buf,
		    ts_volume_cb cb, void *arg);
int ts_volume_unmap(struct ts_volume *v, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg);
int ts_volume_flush(struct ts_volume *v, ts_volume_cb cb, void *arg);

/** Synchronous wrappers: submit and wait; return the IO's status. */
int ts_volume_read_sync(struct ts_volume *v, uint64_t off, uint64_t len, void *buf);
int ts_volume_write_sync(struct ts_volume *v, uint64_t off, uint64_t len, const void *buf);
int ts_volume_unmap_sync(struct ts_volume *v, uint64_t off, uint64_t len);
int ts_volume_flush_sync(struct ts_volume *v);

#endif /* TS_VOLUME_H */
