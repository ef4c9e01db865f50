/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Group snapshots: one snapshot of each of several volumes, all at one point
 * in time, even when the volumes live in different pools (array groups) and,
 * later, in different processes (engines in node daemons).
 *
 * Protocol (ts_gsnap_take()):
 *  1. hold every member, one after the other in a canonical order, all with
 *     the same deadline: a hold stops admitting new IO on the member's volume
 *     (it is queued, never blocked) and returns once the IO already admitted
 *     has completed;
 *  2. once ALL members are held, snapshot each one;
 *  3. release every hold (queued IO is then admitted, in order).
 * A hold that misses the deadline, or any failing hold or snapshot, fails the
 * whole group: the snapshots already taken are removed (unsnap), every hold
 * is released, and the call returns the first error. Nothing is left behind.
 *
 * The cut. Let T be the instant the last member's hold was established.
 * Every member's snapshot contains exactly the writes its engine admitted
 * before that member's hold was raised (all of which completed before T);
 * every write admitted later is acknowledged only after the release, which
 * comes after T. Hence, for writes W to any members:
 *  - a write acknowledged before ts_gsnap_take() was called is in the group;
 *  - a write submitted after ts_gsnap_take() returned is not;
 *  - consistency: no write in the group was submitted after a write outside
 *    it was acknowledged (every write outside it is acknowledged after T,
 *    every write in it was submitted before T). So an application that
 *    issues a write only after another's acknowledgement (a journal commit
 *    record after its data, a write to volume B after one to volume A) never
 *    finds the later write in the group without the earlier one.
 * Writes in flight (submitted, not yet acknowledged) when the call runs may
 * fall on either side, per member. Reads are held too but do not matter to
 * the cut. Flushes are not held: a snapshot is of acknowledged data, not of
 * durable data, and each engine's snapshot commits itself.
 *
 * Canonical order: members are held (and snapshotted) sorted by engine
 * context pointer, then volume id, so two group snapshots over overlapping
 * members never hold in opposite orders (no deadlock with engines whose holds
 * exclude each other). The vpool engine's holds are shared (they nest), so
 * there it costs nothing.
 *
 * Engines. The coordinator sees only struct ts_gsnap_engine_ops: a remote
 * engine (a node daemon reached over the network) implements the four calls
 * as requests; see docs/volumes.md "Group snapshots" for what its hold must
 * guarantee (lease bounded by the deadline, fencing of late snaps).
 *
 * THREAD SAFETY: ts_gsnap_take() may run from any thread (not from a member
 * completion context: holds wait for completions), concurrently with IO and
 * with other group snapshots. It keeps no state between calls.
 */
#ifndef TS_GSNAP_H
#define TS_GSNAP_H

#include <stddef.h>
#include <stdint.h>

/**
 * One engine's side of the protocol. \p ctx is the engine instance (for the
 * vpool engine, the struct ts_vpool *). All four calls are mandatory.
 */
struct ts_gsnap_engine_ops {
	/**
	 * Stop admitting new IO on \p vol_id (queue it, never block the
	 * submitter) and wait until in-flight IO has completed, at the latest
	 * until \p deadline_ns (absolute CLOCK_MONOTONIC, ts_now_ns() scale).
	 * 0: held, and release() will be called exactly once; -ETIMEDOUT or
	 * another error: not held (already undone), release() is not called.
	 */
	int (*hold)(void *ctx, uint64_t vol_id, uint64_t deadline_ns);
	/** Snapshot the held volume as \p name: 0 and *\p snap_id, or an error. */
	int (*snap)(void *ctx, uint64_t vol_id, const char *name, uint64_t *snap_id);
	/** Remove a snapshot snap() made, for a group that failed. 0 or an error. */
	int (*unsnap)(void *ctx, uint64_t snap_id);
	/** Drop the hold; queued IO is admitted in the order it was submitted. */
	void (*release)(void *ctx, uint64_t vol_id);
};

/**
 * The in-process engine over dataplane/volume: ctx is a struct ts_vpool *;
 * hold/release are ts_vpool_volume_hold/release, snap is ts_chain_snapshot,
 * unsnap is ts_chain_snapshot_delete.
 */
extern const struct ts_gsnap_engine_ops ts_gsnap_vpool_ops;

/** One member of a group snapshot. */
struct ts_gsnap_member {
	const struct ts_gsnap_engine_ops *ops;
	void *ctx;            /**< engine instance handed to every op */
	uint64_t vol_id;
	const char *name;     /**< this member's snapshot name (may be NULL: "") */
	uint64_t snap_id;     /**< out: the member's snapshot on success, else 0 */
};

/** Optional timings of one call (CLOCK_MONOTONIC). */
struct ts_gsnap_timing {
	uint64_t hold_ns;        /**< from the first hold requested to all held */
	uint64_t snap_ns;        /**< all snapshots, while held */
	uint64_t total_pause_ns; /**< first hold requested to last release done:
				      the longest any member's IO was queued */
};

/**
 * Take a group snapshot of the \p n members in \p m at one point in time
 * (the protocol and the guarantee are in the file comment). Every hold must
 * be established within \p timeout_ns of the call; the snapshots themselves
 * are then taken without a deadline (each is a bounded metadata commit).
 *
 * Returns 0 and every m[i].snap_id set; or, with every m[i].snap_id 0, no
 * snapshot left and no hold in place:
 *  -EINVAL  n == 0, m NULL, a member without ops (or an op missing), or a
 *           member listed twice (same ctx and vol_id);
 *  -ENOMEM;
 *  -ETIMEDOUT  a member's in-flight IO did not drain by the deadline;
 *  the first error of a hold or snap (e.g. -ENOENT: no such volume).
 * If removing a snapshot of a failed group fails too, that is logged (the
 * snapshot stays, visible under its name) and the first error is returned.
 * \p t may be NULL; when set it is filled on success and on failure (the
 * phases not reached are 0). Members keep no reference to \p m after return.
 */
int ts_gsnap_take(struct ts_gsnap_member *m, size_t n, uint64_t timeout_ns,
		  struct ts_gsnap_timing *t);

#endif /* TS_GSNAP_H */
