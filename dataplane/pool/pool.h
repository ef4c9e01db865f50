/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * A storage pool: several data-plane nodes, each a PEM + LDM over its own
 * disk files, and one erasure-coded array group whose members are LDM
 * virtual disks spread over the nodes (ts_agrp_place()).
 *
 * A test and bench vehicle (the unit suites of the volume and CSI layers):
 * all nodes live in one process, members are reached directly (no iSCSI),
 * each node with its own disk files under
 * `<state_dir>/node<N>/disk<D>.img`. The multi-node build replaces the local
 * members of remote nodes with user-mode iSCSI members; nothing above the
 * member interface changes.
 *
 * Lifecycle: ts_pool_open() formats on first use (a `pool.json` in the state
 * directory records the cluster uuid and geometry, written atomically) and
 * reassembles on every later start with no manual step: every node's PEM
 * scans its disks, its LDM rebuilds the virtual disks, the members are
 * probed and the array group comes up as soon as k of them are present
 * (degraded), fully once all are. A node whose disks fail to open is logged
 * (naming the disk) and left out.
 *
 * Outage simulation (tests, fault harnesses): ts_pool_node_stop() cuts a
 * node off (its members fail every IO from then on, its disks are closed);
 * ts_pool_node_start() reopens them and hands the members back to the
 * group, which resyncs what they missed.
 *
 * THREAD SAFETY: IO through ts_pool_device() may come from any thread.
 * ts_pool_node_stop()/start() and ts_pool_status() are serialised by the
 * pool's lock; ts_pool_close() must be the last call.
 */
#ifndef TS_POOL_H
#define TS_POOL_H

#include <stdint.h>

#include "dataplane/member/member.h"

struct ts_pool;
struct ts_agrp;

/** Options; zero fields take the defaults in brackets. The struct may grow. */
struct ts_pool_opts {
	const char *state_dir;   /**< required */
	unsigned nodes;          /**< [3] first start only */
	unsigned disks_per_node; /**< [2] first start only */
	uint64_t disk_size;      /**< [1 GiB] bytes per disk file, first start only */
	unsigned k, m;           /**< [4+2] first start only */
	uint64_t extent_size;    /**< [4 MiB] first start only */
	uint32_t chunk_size;     /**< [64 KiB] first start only */
};

/** A snapshot of the pool's state for status displays. */
struct ts_pool_status {
	unsigned nodes, k, m;
	uint64_t size;          /**< usable bytes */
	uint64_t generation;
	uint64_t live_mask;     /**< bit i: slot i is serving */
	uint32_t slot_node[64]; /**< node id of each of the k+m slots */
	uint64_t node_up_mask;  /**< bit n-1: node n is up */
	char group_uuid[37];
	/* Per node (index n-1 for node n, n <= nodes; 0 for a node that is down). */
	uint32_t node_disks[32];         /**< disks the node's PEM has open */
	uint64_t node_extents[32];       /**< extents on those disks */
	uint64_t node_free_extents[32];  /**< of which unallocated */
	uint64_t extent_size;            /**< bytes per extent */
};

/**
 * Open (or on first use create) the pool in opts->state_dir.
 * Returns 0 and *out; -EINVAL (bad options, or options that contradict a
 * pool.json already there), TS_ERR_DEGRADED (fewer than k members found),
 * TS_ERR_CORRUPT (unreadable pool.json), a PEM/LDM/AGRP error, -ENOMEM.
 */
int ts_pool_open(const struct ts_pool_opts *opts, struct ts_pool **out);

/** Flush and close everything. NULL is a no-op. No IO may be in flight. */
void ts_pool_close(struct ts_pool *p);

/**
 * The array group as a block device (a member handle): READ, WRITE and FLUSH
 * go to the group; UNMAP answers -EOPNOTSUPP. Owned by the pool; valid until
 * ts_pool_close().
 */
struct ts_member *ts_pool_device(struct ts_pool *p);

/** The array group itself (for status and tests). Owned by the pool. */
struct ts_agrp *ts_pool_agrp(struct ts_pool *p);

/** Fill *st. */
void ts_pool_status(struct ts_pool *p, struct ts_pool_status *st);

/**
 * Simulate node \p node_id (1-based) going down: its members fail all IO
 * from now on and its disks are closed. 0, -EINVAL, -EALREADY.
 */
int ts_pool_node_stop(struct ts_pool *p, uint32_t node_id);

/**
 * Bring node \p node_id back: reopen its disks and hand its members back to
 * the group (which resyncs them). 0, -EINVAL, -EALREADY, or an open error.
 */
int ts_pool_node_start(struct ts_pool *p, uint32_t node_id);

#endif /* TS_POOL_H */
