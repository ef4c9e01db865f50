/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Controller-side assembly of an array group across nodes.
 *
 * Given the registry (registry.h), ts_cluster_open() builds an EC k+m array
 * group whose members are vdisks on the registered nodes: local members
 * (vdisks of this process's own LDM, if it is a node) through the LDM member
 * adapter, remote ones through user-mode iSCSI (transport.h). On first use
 * (no group record) it places the k+m fragments on the live nodes with
 * ts_agrp_place(), at most m per node so that losing any one node leaves k
 * (4+2 on 3 nodes: two per node; 4+2 on 2 nodes is refused) or where
 * opts.slot_nodes says, asks each node through the
 * registry mailbox to create and export its member vdisks, formats the group
 * and stores the group record; later opens read the record and assemble.
 *
 * A member whose node is down is simply failed in the group (degraded IO);
 * ts_cluster_rejoin() hands members that answer again back to the group,
 * which resyncs what they missed. Call it periodically (or on a node's
 * heartbeat reappearing).
 *
 * Ownership and fencing (docs/fencing.md): the cluster is the group's
 * engine at epoch opts.owner_epoch, as owner opts.owner_node. Every remote
 * member and replica journal is reached with that owner key, so the nodes'
 * member LUNs refuse the IO of any older owner, and this cluster's once a
 * newer one registered: its group is then fenced (ts_agrp_fenced()), every
 * IO fails with TS_ERR_FENCED, and tick, rejoin, heal and rebuild stop
 * (status state "fenced"). Close it; a new epoch opens the group again.
 * The epoch must come from the control plane, which hands out strictly
 * increasing epochs per group; the default (epoch 1) is the single
 * controller's: a restarted controller takes over from its own earlier
 * sessions, and nothing protects against a second controller using it too.
 *
 * Local members (opts.local_ldm) go straight to the LDM and are not fenced:
 * only a process that is the sole engine for the group (the test fixture)
 * may use them; an engine that may lose ownership reaches even its own
 * node's vdisks through that node's member LUNs.
 *
 * THREAD SAFETY: IO goes through the array group (see agrp.h). open/close
 * from one thread; ts_cluster_rejoin() may run while IO flows, from one
 * thread at a time.
 */
#ifndef TS_CONTROL_CLUSTER_H
#define TS_CONTROL_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "control/registry/registry.h"

struct ts_agrp;
struct ts_ldm;

struct ts_cluster_opts {
	struct ts_registry *reg;     /**< borrowed */
	uint8_t group_uuid[16];      /**< which group (also the group record's key) */
	unsigned k, m;               /**< first use only */
	uint64_t member_size;        /**< first use only: bytes per member vdisk */
	uint32_t chunk_size;         /**< first use only; 0: agrp default */
	const char *chap_user;       /**< required: the nodes' CHAP credential */
	const char *chap_secret;
	uint32_t io_timeout_ms;      /**< remote member IO timeout; 0: 2000 */
	uint32_t heartbeat_max_age_ms; /**< node considered live within this; 0: 3000 */
	uint32_t request_timeout_ms; /**< wait for a node's answer; 0: 10000 */
	uint32_t local_node_id;      /**< 0: no local node */
	struct ts_ldm *local_ldm;    /**< with local_node_id: this process's LDM (borrowed) */
	uint64_t journal_size;       /**< first use only: bytes of replica journal per node; 0: member_size / 4 */
	/** Ownership epoch of this engine (from the control plane); 0: 1 (single controller). */
	uint32_t owner_epoch;
	/** Owner id in the key: 0: local_node_id, or TS_CLUSTER_CONTROLLER_OWNER without one. */
	uint32_t owner_node;
	/**
	 * First use only, optional: the node of each of the k+m slots (the
	 * control plane's placement, control/placement). Every node must be
	 * live and hold at most m slots (-EINVAL otherwise). NULL: spread over
	 * the live nodes with ts_agrp_place().
	 */
	const uint32_t *slot_nodes;
};

/** The owner id of the (single) controller process, which is no node. */
#define TS_CLUSTER_CONTROLLER_OWNER 0xffffffffu

struct ts_cluster;

/**
 * Open (creating on first use) the group. Returns 0 and *\p out,
 * -EINVAL, TS_ERR_NO_SPACE (fewer than ceil((k+m)/m) live nodes), -ETIMEDOUT (a node
 * did not answer a create request), TS_ERR_DEGRADED (assembly found fewer
 * than k members), or errors from the transport/agrp layers.
 */
int ts_cluster_open(const struct ts_cluster_opts *opts, struct ts_cluster **out);

/** The array group (valid until ts_cluster_close()). */
struct ts_agrp *ts_cluster_agrp(struct ts_cluster *c);

/**
 * Offer every non-live slot's member back to the group (ts_agrp_add_member:
 * resync, then live). Returns the number of slots that rejoined (>= 0).
 */
int ts_cluster_rejoin(struct ts_cluster *c);

/**
 * The group as a block device for the volume layer: READ, WRITE (FUA: write
 * then flush) and FLUSH. Writes made while members are out are also
 * replicated on the live nodes (the replica journal); a read the group cannot
 * serve (more than m members out) is served from those replicas where they
 * cover it. Owned by the cluster; valid until ts_cluster_close().
 */
struct ts_member *ts_cluster_device(struct ts_cluster *c);

/**
 * One round of the controller's maintenance (TS_ERR_FENCED at once, doing
 * nothing, once the group is fenced): ts_cluster_rejoin(); a member
 * whose node is live but no longer has its vdisk (the disk under it was
 * lost or replaced) is rebuilt onto a new vdisk on that node
 * (ts_agrp_replace: reconstruct + re-fragment) and the group record
 * updated; then, once
 * every member is live and resynced, heal: verify the replicated data against
 * the erasure-coded copy and reclaim the journal space. Call it periodically
 * (the controller loop: every 500 ms) from one thread. Returns the number of
 * members that rejoined, or <0 when the heal step failed (it is retried at
 * the next tick).
 */
int ts_cluster_tick(struct ts_cluster *c);

/**
 * Heal only when \p may_heal(\p arg) says so (checked by ts_cluster_tick
 * before each heal step; rejoin, resync and rebuild are not gated): the
 * heal is low-priority work the control plane schedules (a task it runs
 * through the engine host, programs/engine_host.c). NULL: heal at every
 * tick (the default). Call before the maintenance loop starts.
 */
void ts_cluster_set_heal_gate(struct ts_cluster *c, bool (*may_heal)(void *arg), void *arg);

/** Group health for the CLI and the admin service. */
struct ts_cluster_status {
	uint8_t group_uuid[16];
	unsigned k, m, n;
	uint64_t size;                /**< usable bytes */
	uint64_t generation;
	uint64_t live_mask;           /**< bit s: slot s serving */
	uint32_t slot_node[TS_REG_MAX_SLOTS];
	char state[16];               /**< "healthy", "degraded", "healing", "rebuilding", "failed" */
	uint64_t degraded_stripes;    /**< stripes with a fragment out of date */
	uint64_t replicated_bytes;    /**< journal bytes held (all copies) */
	uint64_t replica_copies;      /**< copies written per replicated write (last one) */
	uint64_t unreplicated_bytes;  /**< degraded writes the journal had no room for */
	uint64_t heal_total_bytes;    /**< current (or last) heal: bytes to verify */
	uint64_t heal_done_bytes;     /**< of which done */
	uint64_t heal_rate_bps;       /**< last heal's rate, bytes/s */
	uint64_t heals;               /**< completed heals */
	uint64_t rebuilds;            /**< lost members rebuilt onto new vdisks */
	uint64_t rebuild_bytes;       /**< last rebuild: bytes reconstructed */
	uint64_t rebuild_rate_bps;    /**< last rebuild's rate, bytes/s */
	uint32_t owner_epoch;         /**< the epoch this engine owns the group at */
	uint32_t owner_node;
	int fenced;                   /**< a newer owner fenced this engine (state "fenced") */
};

/** Fill *\p st (a consistent snapshot; cheap, callable while IO flows). */
void ts_cluster_status(struct ts_cluster *c, struct ts_cluster_status *st);

/** Close the group, then destroy the members. NULL: no-op. No IO in flight. */
void ts_cluster_close(struct ts_cluster *c);

#endif /* TS_CONTROL_CLUSTER_H */
