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
 * (4+2 on 3 nodes: two per node; 4+2 on 2 nodes is refused), asks each node through the
 * registry mailbox to create and export its member vdisks, formats the group
 * and stores the group record; later opens read the record and assemble.
 *
 * A member whose node is down is simply failed in the group (degraded IO);
 * ts_cluster_rejoin() hands members that answer again back to the group,
 * which resyncs what they missed. Call it periodically (or on a node's
 * heartbeat reappearing).
 *
 * THREAD SAFETY: IO goes through the array group (see agrp.h). open/close
 * from one thread; ts_cluster_rejoin() may run while IO flows, from one
 * thread at a time.
 */
#ifndef TS_NODE_CLUSTER_H
#define TS_NODE_CLUSTER_H

#include <stdint.h>

#include "dataplane/node/registry.h"

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
};

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

/** Close the group, then destroy the members. NULL: no-op. No IO in flight. */
void ts_cluster_close(struct ts_cluster *c);

#endif /* TS_NODE_CLUSTER_H */
