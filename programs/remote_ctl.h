/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The controller side of a cluster whose volume engine runs in a node
 * (docs/scale-out.md): `tessera dev --engines nodes` and `tessera controller
 * --engines nodes` both run it. It carries no volume data:
 *
 *  - on first use it creates the configured array group (the members'
 *    superblocks, as the controller always did) and records epoch 1 for
 *    itself, the creator; at start it knows every group in the store;
 *  - it hands each group to a node: a new ownership epoch, stored before it
 *    is handed out (ts_registry_raise_epoch), then a serve request, waited
 *    for; a restarted controller that finds a live node serving one leaves
 *    it there. The configured group goes to cfg.owner, others (and all
 *    failovers) to the live node serving the fewest groups;
 *  - it places volumes (router_pick in remote_ctl.c): best fit by the
 *    groups' own pool reports, a volume reserving its whole size; when no
 *    group has room it creates another one of cfg.co's geometry, its members
 *    placed by control/placement over the live nodes' free bytes ("groups
 *    are created as the pool needs capacity"), and only when none fits
 *    either does a group take the volume thin beyond its size;
 *  - it watches: a group whose serving node's heartbeat is older than the
 *    heartbeat age goes to another live node at a new epoch (failover; the
 *    members refuse the old owner from then on, docs/fencing.md);
 *  - it serves CSI and the admin service over the remote backend, routed by
 *    the node records (a group's engine endpoint at the highest epoch of a
 *    live node), and a front iSCSI portal that redirects every login to the
 *    serving node.
 *
 * At most TS_REMOTE_MAX_ENGINES groups.
 *
 * THREAD SAFETY: start/stop from one thread; the watch thread and the
 * stack's threads run in between.
 */
#ifndef TS_PROGRAMS_REMOTE_CTL_H
#define TS_PROGRAMS_REMOTE_CTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "control/cluster/cluster.h"

struct ts_admin_node;
struct ts_admin_status;
struct ts_remote_ctl;
struct ts_stack;

struct ts_remote_ctl_cfg {
	const char *name;          /**< "dev", "controller": log tag, message prefix */
	struct ts_registry *reg;   /**< borrowed */
	struct ts_cluster_opts co; /**< the first group, and the geometry of every new one */
	bool create;               /**< no group record yet: create it first */
	uint32_t owner;            /**< node to serve it first; 0: the lowest live id */
	const char *portal;        /**< front portal "host:port" (redirects only) */
	const char *csi_endpoint;  /**< "unix:///abs.sock" */
	const char *state_dir;     /**< CSI records, attach mounts */
	const char *node_id;       /**< CSI node id */
	const sigset_t *sigs;      /**< optional: signals that end the startup waits */
	unsigned heartbeat_max_age_ms; /**< a node is live within it; 0: 3000 */
	/** Optional: what the caller knows of node n->id (disks, extents). */
	void (*node_detail)(void *arg, struct ts_admin_node *n);
	void *node_detail_arg;
	/**
	 * Optional: fill out->agrps / nagrps / vpool (the engines' own view,
	 * when the caller can see them: `tessera dev`). Without it the groups
	 * are shown from their records (members, serving node, state "served"
	 * or "unserved").
	 */
	int (*groups)(void *arg, struct ts_admin_status *out);
	void *groups_arg;
	/** Optional, as ts_stack_opts: the CSI store (owned from start on, also on failure). */
	const struct ts_csi_store_ops *store;
	void *store_ctx;
	/** Optional, as ts_stack_opts: serve only while this answers 0. */
	int (*gate)(void *arg);
	void *gate_arg;
};

/**
 * Create the group if asked, hand it to its first owner (retrying for a
 * minute while the node cannot assemble it), start the watch thread and the
 * stack. \p cfg is borrowed until stop. 0 and *\p out; 1 when a signal in
 * *cfg->sigs stopped the startup; a negative error after a line on stderr.
 */
int ts_remote_ctl_start(const struct ts_remote_ctl_cfg *cfg, struct ts_remote_ctl **out);

/** The CSI stack (valid until stop). */
struct ts_stack *ts_remote_ctl_stack(struct ts_remote_ctl *r);

/** Failovers done since start (the watch thread's count). */
unsigned ts_remote_ctl_failovers(struct ts_remote_ctl *r);

/** Stop the stack, the watch thread and the front portal. NULL: no-op. */
void ts_remote_ctl_stop(struct ts_remote_ctl *r);

#endif /* TS_PROGRAMS_REMOTE_CTL_H */
