/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The embedded default as a library: N data-plane nodes (control/node, each
 * its own file disks and iSCSI target on 127.0.1.<N> at the portal's port)
 * and the controller over them, all in this process. The volume engine (the
 * array group over user-mode iSCSI, maintenance, the thin pool, the volumes'
 * targets) runs either in the controller (programs/controller_main.h) or in
 * node 1's engine host (programs/engine_host.h), which the controller's CSI
 * service reaches over the engine service; see ts_dev_opts.node_engines. `tessera dev` (dev_main.c) is argument parsing around it; tests
 * that need a whole cluster in-process (unit/support/cluster) start the
 * same assembly, so there is one way to put the data plane together.
 *
 * THREAD SAFETY: start/stop from one thread; the stack serves from its own
 * threads in between.
 */
#ifndef TS_PROGRAMS_DEV_H
#define TS_PROGRAMS_DEV_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

struct ts_dev;
struct ts_stack;

/** Options (the struct may grow; zero-initialise it). */
struct ts_dev_opts {
	const char *state_dir;    /**< required; created if missing */
	unsigned nodes, disks;    /**< first start: nodes (1-16), disks per node (1-8) */
	uint64_t disk_size;       /**< first start: bytes per disk file */
	unsigned k, m;            /**< first start: erasure code */
	uint64_t member_size;     /**< first start: bytes per member; 0: one group fills the disks */
	bool geometry_given;      /**< refuse a state dir created with another geometry */
	const char *portal;       /**< required, checked "host:port"; nodes use its port */
	const char *csi_endpoint; /**< required, checked "unix:///abs.sock" */
	const char *node_id;      /**< required: CSI node id */
	const sigset_t *sigs;     /**< optional: signals that end the startup waits */
	/**
	 * Where the volume engine runs. false: in this process's controller
	 * (one stack over the group, as `tessera controller` does). true: in
	 * the nodes — node 1 serves the first group under an ownership epoch,
	 * groups created later go to the least loaded node, and this
	 * process's CSI Controller reaches it through the engine service (the
	 * remote backend), carrying no volume data (docs/scale-out.md).
	 */
	bool node_engines;
};

/**
 * Create (first start: dev.json, disk files) or reopen the cluster in
 * o->state_dir and bring it up. \p o's strings are borrowed for the
 * lifetime of the cluster. Returns 0 and *\p out; 1 when a signal in
 * *o->sigs stopped the startup; a negative error after a line on stderr
 * (-EINVAL also for options out of range).
 */
int ts_dev_start(const struct ts_dev_opts *o, struct ts_dev **out);

/** The serving stack (vpool, driver, CSI endpoint) of a started cluster. */
struct ts_stack *ts_dev_stack(struct ts_dev *d);

/** Stop the controller, then the nodes. NULL is a no-op. */
void ts_dev_stop(struct ts_dev *d);

#endif /* TS_PROGRAMS_DEV_H */
