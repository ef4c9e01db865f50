/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The node agent (`tessera node`, programs/node_main.c): one host's data plane
 * as the control plane sees it.
 *
 * A node opens its disks (PEM, formatting blank disks on first start; LDM),
 * starts its iSCSI target on its portal, exports every member vdisk (LDM tag
 * TS_NODE_MEMBER_TAG) as a CHAP-protected LUN (dataplane/transport/export.h),
 * and registers with the controller through a struct ts_registry: its node
 * record (portal, member vdisks, free bytes) is rewritten every heartbeat.
 * The same loop serves the controller's requests (create + export a member
 * vdisk; idempotent).
 *
 * The node never interprets array-group data: groups are assembled by the
 * controller side (cluster.h) over local and remote members.
 *
 * THREAD SAFETY: ts_node_start/ts_node_stop from one thread; the node runs
 * its own heartbeat thread; the iSCSI server runs its loops.
 */
#ifndef TS_NODE_H
#define TS_NODE_H

#include <stdint.h>

#include "control/registry/registry.h"

/** LDM tag of vdisks that are array-group members exported to peers. */
#define TS_NODE_MEMBER_TAG 0x54534e4f44454d31ull /* "TSNODEM1" */

struct ts_node_opts {
	uint32_t node_id;            /**< required, non-zero */
	const char *const *disks;    /**< disk (file or block device) paths */
	uint32_t ndisks;
	uint8_t cluster_uuid[16];    /**< required (non-zero): identity stamped on formatted disks */
	uint64_t extent_size;        /**< format only; 0: 4 MiB */
	const char *addr;            /**< iSCSI listen address (required, e.g. "127.0.0.2") */
	uint16_t port;               /**< 0: 3260 */
	const char *chap_user;       /**< required: peers log in with it */
	const char *chap_secret;
	struct ts_registry *reg;     /**< borrowed; outlives the node */
	uint32_t heartbeat_ms;       /**< 0: 500 */
};

struct ts_node;

/**
 * Start a node. Returns 0 and *\p out, -EINVAL, -EADDRINUSE, or errors from
 * the PEM/LDM/iSCSI layers (a disk set that belongs to another cluster or
 * node: TS_ERR_FOREIGN).
 */
int ts_node_start(const struct ts_node_opts *opts, struct ts_node **out);

/** What a node's disks hold (for status displays). */
struct ts_node_stats {
	uint32_t disks;
	uint64_t extents, free_extents, extent_size;
};

/** Fill *\p st. Callable while the node runs. */
void ts_node_stats(struct ts_node *n, struct ts_node_stats *st);

/** Stop serving (drops peers' sessions), close the disks. NULL: no-op. */
void ts_node_stop(struct ts_node *n);

#endif /* TS_NODE_H */
