/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The controller's task runner (docs/kubernetes-store.md, "Tasks"): one
 * thread in each controller replica that turns low-priority work into
 * TesseraTask objects and runs them. Today one kind: `heal`, a group's
 * heal (verify the data written while a member was out against the
 * erasure-coded copy, reclaim the replica journal), which engine hosts
 * started with delegate_heal leave to the control plane.
 *
 * Every second the runner asks each serving engine about its heal (the
 * engine service's Heal method, which also tells the engine a controller is
 * there), posts a task `heal-<group key>-<n>` when one is due, and claims
 * the tasks it may: the passive replica at once, the active one only tasks
 * left Pending for TS_TASK_ACTIVE_WAIT_MS or whose owner went silent for
 * TS_TASK_ACTIVE_STALE_MS (so with a passive replica the active one does
 * none of this work, without one it does all of it). The owner lets the
 * engine heal (Heal with run), records its progress (the heartbeat), and
 * marks the task Done when the engine no longer has a heal due; a task
 * whose owner died is claimed by the next runner and finished where the
 * engine got to (heal steps are idempotent).
 *
 * THREAD SAFETY: start/stop/set_role from one thread.
 */
#ifndef TS_PROGRAMS_TASK_RUNNER_H
#define TS_PROGRAMS_TASK_RUNNER_H

#include <stdbool.h>

struct ts_registry;
struct ts_task_runner;

#define TS_TASK_PASSIVE_STALE_MS 5000
#define TS_TASK_ACTIVE_WAIT_MS 10000
#define TS_TASK_ACTIVE_STALE_MS 15000

struct ts_task_runner_opts {
	const char *kubeconfig; /**< NULL: in-cluster */
	const char *ns;
	const char *identity;   /**< the owner name it claims with */
	struct ts_registry *reg; /**< borrowed: node records (engines and what they serve) */
	unsigned period_ms;     /**< 0: 1000 */
};

/** Start (as the passive replica). 0 and *\p out, -EINVAL, -ENOMEM, the client's errors. */
int ts_task_runner_start(const struct ts_task_runner_opts *o, struct ts_task_runner **out);

/** The replica became the active one: from now on it claims only what the passive leaves. */
void ts_task_runner_set_active(struct ts_task_runner *r, bool active);

/** Stop and free (NULL is a no-op). Owned tasks stay Running: the next runner takes them over. */
void ts_task_runner_stop(struct ts_task_runner *r);

#endif /* TS_PROGRAMS_TASK_RUNNER_H */
