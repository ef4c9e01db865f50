/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Leader election on a coordination.k8s.io Lease: which of several replicas
 * of a daemon is the active one (DESIGN.md "Coordination: no home-made
 * consensus"; docs/kubernetes-store.md).
 *
 * ts_leader_acquire blocks until this process holds the Lease (the passive
 * replica waits there, retrying every retry_ms), then a thread renews it
 * every retry_ms. The role is held while the last successful renew started
 * less than renew_deadline_ms ago (CLOCK_MONOTONIC); renew_deadline_ms is
 * shorter than the Lease's duration, so a holder that was paused or cut off
 * knows it has lost the role before anyone else may take the Lease over.
 * When the deadline passes, or a renew finds someone else holding it, the
 * role is lost for good: ts_leader_gate answers -EBUSY from then on and the
 * \p lost callback runs once (a daemon exits there and is restarted as a
 * passive replica: nothing it started keeps acting).
 *
 * THREAD SAFETY: ts_leader_gate from any thread; acquire/release from one.
 */
#ifndef TS_CONTROL_KUBE_LEADER_H
#define TS_CONTROL_KUBE_LEADER_H

#include <signal.h>
#include <stdint.h>

struct ts_leader;

struct ts_leader_opts {
	const char *kubeconfig;     /**< NULL: in-cluster */
	const char *ns;             /**< the Lease's namespace (required) */
	const char *name;           /**< the Lease's name (required) */
	const char *identity;       /**< this replica's holderIdentity (required, unique) */
	int32_t duration_s;         /**< leaseDurationSeconds (default 10) */
	uint32_t renew_deadline_ms; /**< < duration (default duration * 2/3) */
	uint32_t retry_ms;          /**< renew / acquire period (default 1000) */
	/** Called once, from the renew thread, when the role is lost. May be NULL. */
	void (*lost)(void *arg, const char *why);
	void *lost_arg;
	/** Optional: signals that end the wait in acquire (it then returns 1). */
	const sigset_t *sigs;
};

/**
 * Wait until this process holds the Lease, then renew it in the background.
 * 0 and *\p out (held), 1 when one of \p o->sigs arrived first, -EINVAL,
 * -ENOMEM, or the client's errors (-EACCES: no RBAC right on Leases) that
 * waiting cannot fix. Unreachable API servers are waited out.
 */
int ts_leader_acquire(const struct ts_leader_opts *o, struct ts_leader **out);

/**
 * 0 while the role is held, -EBUSY once it is lost (for
 * ts_csi_driver_set_gate; \p leader is a struct ts_leader *).
 */
int ts_leader_gate(void *leader);

/** The holder the Lease named when acquire last read it ("" if none); for logs. */
const char *ts_leader_previous(const struct ts_leader *l);

/**
 * Stop renewing and give the Lease up if still held, so a passive replica
 * takes over at once instead of after the duration. NULL is a no-op.
 */
void ts_leader_release(struct ts_leader *l);

#endif /* TS_CONTROL_KUBE_LEADER_H */
