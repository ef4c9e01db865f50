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

struct ts_controller;
struct ts_stack;

/**
 * Open the group (waiting while nodes are missing, and while a restarted
 * group's volume pool is unreadable until its members are back), start the
 * maintenance thread (ts_cluster_tick every 500 ms) and the serving stack.
 * \p cfg is borrowed and must outlive the controller. With cfg->sigs NULL
 * nothing stops the waits early (in-process use: tests, `tessera dev`'s
 * library form). Returns 0 and *\p out; 1 when a signal in *cfg->sigs asked
 * to stop before the group came up (nothing left running); a negative
 * error, after one line "tessera <name>: ..." on stderr.
 */
int ts_controller_start(const struct ts_controller_cfg *cfg, struct ts_controller **out);

/** The serving stack of a started controller (valid until ts_controller_stop). */
struct ts_stack *ts_controller_stack(struct ts_controller *t);

/** Stop the stack, the maintenance thread and close the group. NULL is a no-op. */
void ts_controller_stop(struct ts_controller *t);

/** Print the daemons' `ready csi=… portal=…` line on stdout. */
void ts_controller_print_ready(const struct ts_controller_cfg *cfg);

/**
 * ts_controller_start(), `ready csi=… portal=…`, serve until a signal in
 * *cfg->sigs (required here), then stop in reverse order. Returns the exit
 * status (0 or 1).
 */
int ts_controller_serve(const struct ts_controller_cfg *cfg);

#endif /* TS_PROGRAMS_CONTROLLER_MAIN_H */
