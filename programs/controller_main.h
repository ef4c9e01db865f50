/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * `tessera controller`: serves the volumes of one multi-node array group
 * (control/cluster/cluster.h) through the iSCSI target, CSI and the admin
 * service (see controller_main.c and docs/multinode.md).
 */
#ifndef TS_PROGRAMS_CONTROLLER_MAIN_H
#define TS_PROGRAMS_CONTROLLER_MAIN_H

#include <signal.h>
#include <stdbool.h>

#include "control/cluster/cluster.h"

struct ts_admin_node;

/** What ts_controller_serve() runs (filled by `tessera controller` and `tessera dev`). */
struct ts_controller_cfg {
	const char *name;            /**< "controller" or "dev": log tag and message prefix */
	struct ts_registry *reg;     /**< borrowed: the nodes' registry */
	struct ts_cluster_opts co;   /**< the group (co.reg is taken from reg) */
	bool create;                 /**< no group record yet: wait for nodes, then create */
	const char *portal;          /**< checked "host:port" */
	const char *csi_endpoint;    /**< checked "unix:///abs.sock" */
	const char *state_dir;       /**< exists */
	const char *node_id;         /**< CSI node id */
	const sigset_t *sigs;        /**< blocked in every thread; taken with sigwait */
	/** Optional: add what the caller knows of node n->id (disks, extents). */
	void (*node_detail)(void *arg, struct ts_admin_node *n);
	void *node_detail_arg;
};

/**
 * Open the group (waiting while nodes are missing), start the maintenance
 * thread (ts_cluster_tick every 500 ms) and the serving stack, print
 * `ready csi=… portal=…`, serve until a signal in *sigs, then stop in
 * reverse order. Returns the exit status (0 or 1).
 */
int ts_controller_serve(const struct ts_controller_cfg *cfg);

#endif /* TS_PROGRAMS_CONTROLLER_MAIN_H */
