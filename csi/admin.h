/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Tessera's admin service: what the `tessera` CLI talks to. It is served on
 * the same gRPC server (and so the same endpoint) as CSI, under
 * `/tessera.admin.v1.Admin/<Method>`. Request and response messages are
 * JSON objects (UTF-8, jansson) carried as the raw gRPC message bytes; the
 * status codes are gRPC's, as for CSI. docs/cli.md lists the methods and
 * their bodies.
 *
 * Volumes are created and deleted through the CSI Controller's own
 * CreateVolume / DeleteVolume handlers (same validation, backend and metadata
 * store), listed and looked up in the CSI metadata store. What the CSI layer
 * cannot know (nodes, disks, array groups, pool usage) comes from the ops
 * table below, which whoever runs the data plane implements (programs/stack.c,
 * with the node and group view of `tessera dev` (programs/dev_main.c) or
 * `tessera controller` (programs/controller_main.c)).
 *
 * THREAD SAFETY: the ops may be called from any gRPC worker thread at once;
 * an implementation must tolerate that. ts_csi_driver_set_admin() must be
 * called before the server starts and the ops context must outlive the
 * server.
 */
#ifndef TS_CSI_ADMIN_H
#define TS_CSI_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_ADMIN_PREFIX "/tessera.admin.v1.Admin/"
#define TS_ADMIN_MAX_NODES 32
#define TS_ADMIN_MAX_AGRPS 64
#define TS_ADMIN_MAX_SLOTS 64

struct ts_csi_driver;

/** One data-plane node. */
struct ts_admin_node {
	uint32_t id;            /**< non-zero */
	bool up;
	uint32_t disks;         /**< disks open (0 when down) */
	uint64_t extents;       /**< extents on them */
	uint64_t free_extents;  /**< of which unallocated */
	uint64_t extent_bytes;  /**< extent size; 0: the disk view is unknown (a remote node) */
	uint64_t free_bytes;    /**< raw space left for new members */
	char portal[64];        /**< "ip:port" of the node's iSCSI target; "" in-process */
};

/** One slot (member) of an array group. */
struct ts_admin_slot {
	uint32_t node; /**< node holding the member */
	bool live;     /**< serving IO */
};

/** One array group. */
struct ts_admin_agrp {
	char uuid[37];
	uint32_t k, m;
	uint64_t generation;
	uint64_t size_bytes; /**< usable bytes */
	struct ts_admin_slot slots[TS_ADMIN_MAX_SLOTS]; /**< k + m of them */
	/**
	 * "healthy", "degraded", "healing", "rebuilding" or "failed"; "" lets the admin
	 * service derive it from the slots (all live: healthy, >= k: degraded,
	 * else failed).
	 */
	char state[16];
	uint64_t degraded_stripes;   /**< stripes with a fragment out of date */
	uint64_t replicated_bytes;   /**< held in the replica journal (all copies) */
	uint64_t unreplicated_bytes; /**< degraded writes the journal had no room for */
	uint64_t heal_total_bytes;   /**< current (or last) heal: bytes to verify */
	uint64_t heal_done_bytes;    /**< of which done */
	double heal_rate_mbps;       /**< last heal's rate, MB/s (10^6 bytes) */
	uint64_t heals;              /**< heals completed */
	uint64_t rebuilds;           /**< lost members rebuilt onto new vdisks */
	uint64_t rebuild_bytes;      /**< last rebuild: bytes reconstructed */
	double rebuild_rate_mbps;    /**< last rebuild's rate, MB/s */
	uint32_t serving_node;       /**< node whose engine serves the group; 0: the controller itself */
	uint64_t epoch;              /**< the ownership epoch it serves at (0: unknown) */
};

/** The thin-volume pool on the array group(s). */
struct ts_admin_vpool {
	uint64_t total_bytes;
	uint64_t free_bytes;
	uint64_t volumes;
};

/** A snapshot of the cluster. */
struct ts_admin_status {
	size_t nnodes;
	struct ts_admin_node nodes[TS_ADMIN_MAX_NODES];
	size_t nagrps;
	struct ts_admin_agrp agrps[TS_ADMIN_MAX_AGRPS];
	struct ts_admin_vpool vpool;
};

struct ts_admin_ops {
	/** Fill \p out (zeroed by the caller). 0 or -errno. */
	int (*status)(void *ctx, struct ts_admin_status *out);
	/**
	 * Optional: the pool's snapshot forest as JSON text (ts_malloc'd, the
	 * caller ts_free()s): an array of layers in depth-first order, parents
	 * first, each {"id","parent","depth","kind":"head"|"snapshot"|"hidden",
	 * "name","volume","size_bytes","blocks","created_ns"}. 0 or -errno.
	 */
	int (*tree)(void *ctx, char **json);
};

/**
 * Serve the admin service on \p d's server with \p ops / \p ctx (borrowed;
 * they must outlive the server). Call before ts_csi_server_start(). Without
 * it every admin method answers UNAVAILABLE. \p d must run the controller.
 * 0 or -EINVAL.
 */
int ts_csi_driver_set_admin(struct ts_csi_driver *d, const struct ts_admin_ops *ops, void *ctx);

#endif /* TS_CSI_ADMIN_H */
