/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * A node's engine host: what runs the volume engine of each array group the
 * control plane hands to this node (control/node's struct
 * ts_node_engine_ops). docs/scale-out.md is the design.
 *
 * Serving a group: assemble it from its record (control/cluster: every
 * member over iSCSI, this node's own through its member LUNs too, all fenced
 * at the epoch the control plane handed out: docs/fencing.md), start its maintenance
 * thread (rejoin, heal, rebuild: ts_cluster_tick every 500 ms), open its
 * thin volume pool (formatted once, the first time any node serves the
 * group: the group record's TS_REG_GROUP_POOL flag says it was), put its
 * volumes' targets on the node's own iSCSI server (the data-plane backend),
 * and serve the engine service (csi/engine.h) for the controller on a TCP
 * port of the node's address. Releasing is the reverse; a node stopping
 * releases everything (control/node does that).
 *
 * State: <state_dir>/engine-<group uuid>/ holds what the data-plane backend
 * keeps beside the pool (persistent reservations, pr/).
 *
 * THREAD SAFETY: serve/release are called from the node's request thread
 * (one at a time); ts_engine_host_status may be called from any thread.
 */
#ifndef TS_PROGRAMS_ENGINE_HOST_H
#define TS_PROGRAMS_ENGINE_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/node/node.h"

struct ts_admin_agrp;
struct ts_engine_host;

struct ts_engine_host_opts {
	struct ts_registry *reg;    /**< borrowed: group records, node records */
	uint32_t node_id;           /**< the node this host runs in */
	const char *addr;           /**< the node's address: engine services listen there */
	const char *state_dir;      /**< must exist (copied) */
	const char *chap_user;      /**< the nodes' CHAP credential (copied) */
	const char *chap_secret;
	uint32_t io_timeout_ms;     /**< remote members; 0: 2000 */
	/**
	 * Heal only when the control plane lets it (its heal task, through the
	 * engine service's Heal method; docs/kubernetes-store.md "Tasks"), or
	 * when no controller replica has asked for TS_ENGINE_HEAL_ALONE_MS: a
	 * group never goes without its heal because the control plane is away.
	 */
	bool delegate_heal;
};

/** How long a delegated heal waits for the control plane before it heals on its own. */
#define TS_ENGINE_HEAL_ALONE_MS 30000
/** How long one Heal(run) lets the maintenance loop heal. */
#define TS_ENGINE_HEAL_GRANT_MS 5000

/**
 * The key a group's engine service and remote ids use: the first 8 bytes of
 * its uuid in hex (also the group part of its volumes' IQNs).
 */
void ts_engine_group_key(const uint8_t uuid[16], char out[25]);

/** 0 and *\p out, -EINVAL or -ENOMEM. */
int ts_engine_host_create(const struct ts_engine_host_opts *o, struct ts_engine_host **out);

/** The ops table to give ts_node_start() with the host as engine_ctx. */
const struct ts_node_engine_ops *ts_engine_host_ops(void);

/**
 * The groups this host serves, as the admin service shows them: up to \p max
 * into \p out. Returns the count filled.
 */
unsigned ts_engine_host_status(struct ts_engine_host *h, struct ts_admin_agrp *out, unsigned max);

/**
 * Add the pools of the groups this host serves to *\p total_bytes,
 * *\p free_bytes and *\p volumes.
 */
void ts_engine_host_pools(struct ts_engine_host *h, uint64_t *total_bytes, uint64_t *free_bytes,
			  uint64_t *volumes);

/** Free. Every group must have been released (the node does it at stop). NULL: no-op. */
void ts_engine_host_destroy(struct ts_engine_host *h);

#endif /* TS_PROGRAMS_ENGINE_HOST_H */
