/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Control-plane tasks as TesseraTask objects (docs/kubernetes-store.md,
 * "Tasks"): what to do (kind, target, priority; immutable), and who runs it
 * and how far it got (phase, owner, heartbeat, progress, attempts).
 *
 * Exactly once in effect: a task is run by one owner at a time, claimed with
 * a write conditioned on the resourceVersion read, so of several claimers
 * exactly one wins. An owner proves it is alive by writing progress; one
 * whose heartbeat is older than the claimer's stale time loses the task to
 * the next claim, which keeps the recorded progress (the new owner resumes
 * there; steps must be idempotent) and counts an attempt. Every write of an
 * owner is conditioned too: once someone else has claimed, the old owner's
 * next write is -EBUSY and it must stop. Done and Failed are final.
 *
 * This is the store only; which replica runs which priority is the
 * controller's (not wired yet: docs/kubernetes-store.md).
 *
 * THREAD SAFETY: any thread (the API server serialises the writes).
 */
#ifndef TS_CONTROL_KUBE_TASKS_H
#define TS_CONTROL_KUBE_TASKS_H

#include <stddef.h>
#include <stdint.h>

struct ts_kube;

enum ts_task_priority { TS_TASK_HIGH, TS_TASK_LOW };
enum ts_task_phase { TS_TASK_PENDING, TS_TASK_RUNNING, TS_TASK_DONE, TS_TASK_FAILED };

struct ts_task {
	char name[64];   /**< object name (a DNS label) */
	char kind[32];   /**< "heal", "rebuild", "scrub", ... ([a-z][a-z0-9-]*) */
	char target[64]; /**< what it works on (a group uuid, a volume id) */
	enum ts_task_priority priority;
	enum ts_task_phase phase;
	char owner[254];       /**< the claimer's identity while Running ("" otherwise) */
	uint64_t heartbeat_us; /**< CLOCK_REALTIME µs of the owner's last write (Pending: of the post) */
	uint64_t attempts;     /**< claims so far */
	uint64_t done, total;  /**< progress, in the kind's units */
	char message[256];
	char rv[65]; /**< resourceVersion as last read or written */
};

/** "Pending", ..., "high", "low": the names the CRD uses. */
const char *ts_task_phase_name(enum ts_task_phase p);
const char *ts_task_priority_name(enum ts_task_priority p);

/**
 * Create task \p t->name (Pending, no owner, progress 0 of \p t->total) in
 * \p ns. 0, -EEXIST when a task of that name exists (whatever its state: the
 * creator of a recurring kind names each occurrence), -EINVAL, or the
 * client's errors. \p t->rv is set.
 */
int ts_task_create(struct ts_kube *c, const char *ns, struct ts_task *t);

/** Read task \p name. 0, -ENOENT, -EPROTO (not a task), or the client's errors. */
int ts_task_get(struct ts_kube *c, const char *ns, const char *name, struct ts_task *out);

/** Every task in \p ns, sorted by name (ts_free(*out)). 0 or errors. */
int ts_task_list(struct ts_kube *c, const char *ns, struct ts_task **out, size_t *n);

/**
 * Claim task \p name for \p owner: it must be Pending for at least
 * \p pending_ms (0: at once; a fallback claimer waits so the preferred one
 * gets it first), or Running with a heartbeat older than \p stale_ms (or
 * already \p owner's). 0 and *\p out
 * (Running, owner, attempts + 1 unless it was ours, progress kept),
 * -EBUSY (a live owner has it, or another claimer won), -EALREADY (Done
 * or Failed), -ENOENT, or the client's errors.
 */
int ts_task_claim(struct ts_kube *c, const char *ns, const char *name, const char *owner,
		  uint64_t stale_ms, uint64_t pending_ms, struct ts_task *out);

/**
 * The owner records progress (and its heartbeat) on \p t, as last returned
 * to it. 0 (\p t updated), -EBUSY when it is no longer the owner (stop), or
 * the client's errors (retry; the heartbeat ages meanwhile).
 */
int ts_task_progress(struct ts_kube *c, const char *ns, struct ts_task *t, uint64_t done,
		     uint64_t total, const char *message);

/** The owner ends \p t: Done (\p ok) or Failed with \p message. As progress. */
int ts_task_finish(struct ts_kube *c, const char *ns, struct ts_task *t, int ok,
		   const char *message);

#endif /* TS_CONTROL_KUBE_TASKS_H */
