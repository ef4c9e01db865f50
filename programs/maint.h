/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The maintenance loop of an assembled array group, shared by every process
 * that serves one (`tessera controller` today, a node's engine host): one
 * thread calling ts_cluster_tick() every tick (rejoin of members whose node
 * came back, then heal, then lost-disk rebuild), logging each change of the
 * group's state once and each distinct failure once. It is the only caller
 * of tick for its group; status readers use ts_cluster_status() from any
 * thread meanwhile.
 *
 * Also here: the admin service's view of a group (ts_maint_agrp_view), which
 * both the controller and the engine host report.
 *
 * THREAD SAFETY: start/stop from one thread.
 */
#ifndef TS_PROGRAMS_MAINT_H
#define TS_PROGRAMS_MAINT_H

struct ts_admin_agrp;
struct ts_cluster;
struct ts_cluster_status;
struct ts_maint;

/**
 * Start the loop on \p cl (borrowed: outlives the loop) with \p tag as the
 * log module and \p tick_ms between ticks. 0 and *\p out, or -errno.
 */
int ts_maint_start(struct ts_cluster *cl, const char *tag, unsigned tick_ms,
		   struct ts_maint **out);

/** Stop and join (a tick in progress finishes first). NULL: no-op. */
void ts_maint_stop(struct ts_maint *m);

/** Fill the admin view \p g of a group from its status \p st. */
void ts_maint_agrp_view(const struct ts_cluster_status *st, struct ts_admin_agrp *g);

struct ts_admin_node;
struct ts_admin_status;
struct ts_registry;

/**
 * The admin view of one group as JSON text (ts_malloc'd: an engine's
 * `Report` "group"), and back. 0, -ENOMEM; from_json: -EPROTO when \p text
 * is not such a view.
 */
int ts_maint_agrp_to_json(const struct ts_admin_agrp *g, char **text);
int ts_maint_agrp_from_json(const char *text, struct ts_admin_agrp *g);

/**
 * Fill the admin view's nodes (out->nodes, out->nnodes) from \p reg's node
 * records, in id order: up while the heartbeat is younger than
 * \p max_age_ms; \p detail (optional) adds what the caller knows of a node
 * (disks, extents). 0 or -errno.
 */
int ts_maint_node_view(struct ts_registry *reg, unsigned max_age_ms,
		       void (*detail)(void *arg, struct ts_admin_node *n), void *arg,
		       struct ts_admin_status *out);

#endif /* TS_PROGRAMS_MAINT_H */
