/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Per-volume IO arbitration (RWX): every read, write and unmap of a volume
 * served by this engine, from every frontend (each iSCSI session of every
 * node, the shared-memory channel, local attach), passes the volume's one
 * arbiter, which holds the IO's block range in a range lock
 * (dataplane/rangelock) from submission until the volume completes it.
 *
 * Guarantees, per volume, for IOs that overlap:
 *  - writes (and unmaps) are exclusive: two overlapping writes never run at
 *    once, and they reach the volume in the order they reached the arbiter;
 *  - reads are shared with reads and exclusive with writes: a read sees
 *    either all of an overlapping write or none of it, never a mix of two
 *    writes, and it waits behind writes that arrived before it (FIFO: a
 *    stream of reads cannot starve a writer);
 *  - IOs that do not overlap run in parallel, as without the arbiter.
 * So a multi-block write is atomic with respect to every other IO of the
 * volume, up to the largest IO a frontend passes down in one piece (for
 * iSCSI the LUN's MAXIMUM TRANSFER LENGTH from the Block Limits VPD page;
 * larger application writes are split by the initiator and each piece is
 * atomic on its own). Atomicity is about concurrency, not crashes: after a
 * crash a write that was not acknowledged may be partly on disk. Ordering
 * of *non*-overlapping IOs is not changed. IOs that bypass the arbiter (none
 * today: the volume handle is reachable only through ts_arb_volume()) are
 * not covered.
 *
 * Sharing: ts_arb_open() returns the one arbiter of (pool, volume) in this
 * process, creating it and its volume handle on first use; every frontend
 * of the volume opens it and closes it when done. The last close closes the
 * volume handle.
 *
 * THREAD SAFETY: every function may be called from any thread. A completion
 * callback runs on the volume's completion thread, or on the thread whose
 * completion let a waiting IO go (never under a lock of this module); it
 * may submit IO. A global registry mutex guards open/close; the IO path
 * takes only the range lock's mutex and the volume's.
 */
#ifndef TS_ARBITER_H
#define TS_ARBITER_H

#include <stdint.h>

#include "dataplane/volume/volume.h"

struct ts_arb;

/**
 * The arbiter of volume \p vol_id of \p pool: 0 and *\p out (a reference),
 * or -EINVAL, -ENOENT (no such volume), -ENOMEM.
 */
int ts_arb_open(struct ts_vpool *pool, uint64_t vol_id, struct ts_arb **out);

/** Drop a reference; the caller has no IO in flight through it. NULL: no-op. */
void ts_arb_close(struct ts_arb *a);

/**
 * The volume handle behind the arbiter, for size queries, flush and
 * metadata; valid until the last ts_arb_close(). IO must go through
 * ts_arb_read/write/unmap.
 */
struct ts_volume *ts_arb_volume(struct ts_arb *a);

/**
 * Arbitrated IO, same contract as ts_volume_read/write/unmap (\p off, \p len
 * multiples of TS_VOLUME_BLOCK, len > 0): 0 and \p cb fires exactly once
 * (maybe before the call returns), or a negative error (-EINVAL, -ENOMEM,
 * the volume's submit errors) and \p cb never fires. An IO that waits for
 * an overlapping one is submitted to the volume when that one completes; a
 * submit error then arrives through \p cb.
 */
int ts_arb_read(struct ts_arb *a, uint64_t off, uint64_t len, void *buf, ts_volume_cb cb,
		void *arg);
int ts_arb_write(struct ts_arb *a, uint64_t off, uint64_t len, const void *buf, ts_volume_cb cb,
		 void *arg);
int ts_arb_unmap(struct ts_arb *a, uint64_t off, uint64_t len, ts_volume_cb cb, void *arg);

/** Counters for metrics and tests. */
struct ts_arb_stats {
	uint64_t reads, writes, unmaps; /**< IOs admitted (total) */
	uint64_t waited;                /**< of those, how many waited for an overlapping IO */
	uint64_t in_flight;             /**< holding their range now */
	uint64_t waiting;               /**< waiting for their range now */
};
void ts_arb_stats(struct ts_arb *a, struct ts_arb_stats *out);

#endif /* TS_ARBITER_H */
