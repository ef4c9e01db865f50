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
 * Engines. The control plane may ask a node to serve an array group at an
 * ownership epoch (TS_REG_SERVE_GROUP) or to stop (TS_REG_RELEASE_GROUP);
 * the node hands that to its engine host (struct ts_node_engine_ops, wired
 * by programs/: it assembles the group and serves its volumes on this
 * node's iSCSI server) and lists the groups it serves, with their epochs, in
 * its node record. The node itself still never interprets group data.
 * A request never goes back in time: serving a group at a lower epoch than
 * the one it serves it at, or releasing a newer service, is -ESTALE.
 *
 * Redirects. A login to this node's portal for a volume of a group served by
 * another node is redirected there (iSCSI "target moved temporarily"), from
 * the node records the heartbeat thread reads; so a consumer can always log
 * in to its own node (docs/scale-out.md).
 *
 * THREAD SAFETY: ts_node_start/ts_node_stop from one thread. The node runs
 * two threads: requests (they may block, e.g. an assembly) and heartbeats
 * (liveness and routes never wait for a request); the iSCSI server runs its
 * loops. The other functions may be called from any thread, the engine ops'
 * included, except ts_node_stop.
 */
#ifndef TS_NODE_H
#define TS_NODE_H

#include <stddef.h>
#include <stdint.h>

#include "control/registry/registry.h"

struct ts_node;
struct ts_iscsi_server;
struct ts_ldm;

/**
 * The engine host of a node. Called from the node's request thread, one call
 * at a time; they may block.
 */
struct ts_node_engine_ops {
	/**
	 * Serve group \p uuid, fencing its members at \p epoch first; write the
	 * endpoint of its engine service ("host:port", < \p len) into
	 * \p endpoint. 0 or -errno.
	 */
	int (*serve)(void *ctx, struct ts_node *n, const uint8_t uuid[16], uint64_t epoch,
		     char *endpoint, size_t len);
	/** Stop serving it: drain IO, drop its LUNs. 0 also when it is not served. */
	int (*release)(void *ctx, struct ts_node *n, const uint8_t uuid[16]);
	/**
	 * Optional, every request tick (50 ms): notice engines that ended on
	 * their own (fenced by a newer owner) and report them with
	 * ts_node_engine_lost().
	 */
	void (*poll)(void *ctx, struct ts_node *n);
};

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
	const struct ts_node_engine_ops *engine; /**< NULL: serve requests fail -EOPNOTSUPP */
	void *engine_ctx;
};

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

/** The node's iSCSI server (borrowed): engines add their volumes' targets to it. */
struct ts_iscsi_server *ts_node_iscsi(struct ts_node *n);

/** The node's LDM (borrowed): an engine opens the members that are local. */
struct ts_ldm *ts_node_ldm(struct ts_node *n);

/** "ip:port" of the node's iSCSI portal. */
const char *ts_node_portal(const struct ts_node *n);

/**
 * The engine host lost group \p uuid on its own (fenced by a newer owner, or
 * failed): it is no longer listed as served. No-op when not served.
 */
void ts_node_engine_lost(struct ts_node *n, const uint8_t uuid[16]);

/**
 * The groups this node serves now: up to \p max uuids and epochs. Returns
 * how many it serves.
 */
unsigned ts_node_served(struct ts_node *n, uint8_t (*uuids)[16], uint64_t *epochs, unsigned max);

/** Stop serving (drops peers' sessions), close the disks. NULL: no-op. */
void ts_node_stop(struct ts_node *n);

#endif /* TS_NODE_H */
