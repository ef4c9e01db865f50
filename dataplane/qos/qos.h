/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Per-volume quality of service: IOPS and bandwidth limits (token buckets),
 * FIFO queueing of IOs over the limit, and IOPS reservations enforced by
 * capping the volumes without one.
 *
 * A struct ts_qos gates one volume's IOs. Before submitting an IO the
 * caller asks ts_qos_admit(): 1 means submit now; 0 means the IO waits in
 * the volume's FIFO queue and the caller's go callback fires later, on the
 * domain's timer thread, when the limits allow it (the caller submits it
 * from there); the caller reports each completion with ts_qos_done().
 *
 * Limits (struct ts_qos_limits, 0 = unlimited for every field): one token
 * bucket per limited dimension (combined / read / write IOPS, combined /
 * read / write bytes per second). A bucket refills at its rate by elapsed
 * time and holds at most burst_ms of rate (default 1000 ms, at least one
 * unit). An IO is admitted when every bucket that applies to it (the
 * combined ones always, the read_* or write_* ones by direction) holds its
 * cost (1 op, \p bytes bytes); an IO costing more than a bucket's depth is
 * admitted when that bucket is full and drives it negative, so large IOs
 * are slowed to the rate, never starved. Once an IO is queued every later
 * IO of that volume queues behind it: no overtaking, so go callbacks fire
 * in admission order.
 *
 * Unlimited costs nothing: on a ts_qos with no limit, no reservation, no
 * dynamic cap and an empty queue, ts_qos_admit() is one relaxed atomic load
 * (no lock, no clock read) and returns 1; ts_qos_done() is relaxed atomic
 * adds.
 *
 * Domains and reservations. A struct ts_qos_domain groups the volumes that
 * contend for the same resources (one per serving process or pool). It owns
 * one timer thread, which sleeps on a condition variable while nothing is
 * queued and no volume has a reservation (an idle domain costs no CPU);
 * otherwise it waits until the earliest time a queued head can go, or the
 * next reservation window.
 *
 * A volume with reserve_iops R asks for at least R IOPS under contention.
 * Policy (evaluated every 100 ms window while any volume has a reservation):
 *  - each volume's achieved IOPS is measured from its completions in the
 *    window and smoothed (EWMA, alpha 1/2);
 *  - a reserved volume has demand when it has IOs queued or in flight, or
 *    completed any in the window; its reservation is unmet when it has
 *    demand and its smoothed rate is below R;
 *  - while any reservation is unmet, every volume WITHOUT a reservation
 *    gets a dynamic IOPS cap (an extra combined-IOPS bucket, 100 ms deep):
 *    first 1/2 of its smoothed rate, then x0.7 per window (multiplicative
 *    decrease), never below a floor of max(50 IOPS, 5% of its rate when the
 *    cap was first imposed), so nobody starves;
 *  - while all reservations are met (or have no demand), each cap grows by
 *    x1.25 + 50 IOPS per window and is removed once it exceeds twice the
 *    rate the volume had when it was first capped.
 * Limits of the policy: it only throttles volumes of the same domain, and
 * only by IOPS (bandwidth-heavy neighbours are slowed through their op
 * count); a reserved volume whose own closed-loop demand is below R (e.g.
 * queue depth 1 on a slow device) looks unmet and keeps the others at the
 * floor; reservations are not admission-controlled (their sum may exceed
 * what the device can do); volumes with a reservation are never capped by
 * the policy, only by their own limits. Reaction time is a few windows
 * (halving the neighbours takes about 200 ms, reaching the floor from 10k
 * IOPS about 1.5 s).
 *
 * Test hook: ts_qos_domain_set_clock() replaces the clock and stops the
 * timer thread; nothing is then released until ts_qos_domain_tick() runs a
 * scheduling pass (on the caller's thread, which then runs the go
 * callbacks).
 *
 * THREAD SAFETY: every function may be called from any thread, except that
 * ts_qos_destroy() and ts_qos_domain_destroy() must not be called from a go
 * callback, and a ts_qos must not be used concurrently with or after its
 * destroy. Go callbacks run with no qos lock held and may call
 * ts_qos_admit()/ts_qos_done()/ts_qos_set() on any volume. Locks inside:
 * the domain mutex (volume list, thread state) is taken before a volume's
 * mutex (buckets, queue), never after.
 */
#ifndef TS_QOS_H
#define TS_QOS_H

#include <stdbool.h>
#include <stdint.h>

/** A volume's limits. 0 = unlimited (none) for every field. */
struct ts_qos_limits {
	uint64_t iops;         /**< combined ops per second */
	uint64_t read_iops;    /**< read ops per second */
	uint64_t write_iops;   /**< write (and unmap) ops per second */
	uint64_t bps;          /**< combined bytes per second */
	uint64_t read_bps;     /**< read bytes per second */
	uint64_t write_bps;    /**< written bytes per second */
	uint32_t burst_ms;     /**< bucket depth as ms of rate; 0 = 1000 */
	uint64_t reserve_iops; /**< reservation: minimum IOPS under contention; 0 = none */
};

/** True when \p l limits nothing and reserves nothing (NULL counts as none). */
bool ts_qos_limits_none(const struct ts_qos_limits *l);

/** Volumes that contend for the same resources. */
struct ts_qos_domain;

/** One volume's gate. */
struct ts_qos;

/**
 * Called when a queued IO may go: the caller submits it now. Runs on the
 * domain's timer thread (or in ts_qos_destroy()/ts_qos_domain_tick()), with
 * no qos lock held.
 */
typedef void (*ts_qos_go)(void *arg);

/**
 * Create a domain and start its timer thread (it sleeps until needed).
 * Returns 0 and *\p out, -EINVAL, -ENOMEM, or -errno from pthread_create.
 */
int ts_qos_domain_create(struct ts_qos_domain **out);

/**
 * Stop the timer thread and free \p d. Every ts_qos of the domain must have
 * been destroyed. NULL is a no-op.
 */
void ts_qos_domain_destroy(struct ts_qos_domain *d);

/**
 * Create a volume's gate in \p d with limits \p l (NULL = none; copied).
 * Returns 0 and *\p out, -EINVAL, -ENOMEM.
 */
int ts_qos_create(struct ts_qos_domain *d, const struct ts_qos_limits *l, struct ts_qos **out);

/**
 * Change the limits online (NULL = none). Buckets keep their fill (clamped
 * to the new depth; a newly limited dimension starts full); queued IOs are
 * re-evaluated against the new limits at once by the timer thread (in FIFO
 * order; with a fake clock at the next ts_qos_domain_tick()). 0 or -EINVAL.
 */
int ts_qos_set(struct ts_qos *q, const struct ts_qos_limits *l);

/**
 * Destroy \p q: IOs still queued are released first, in FIFO order, by
 * calling their go callbacks on the caller's thread (after any pass of the
 * timer thread that is running callbacks has finished). Afterwards nothing
 * may call ts_qos_admit() or ts_qos_done() on \p q, including the IOs just
 * released: callers that account completions should lift the limits
 * (ts_qos_set(q, NULL)) and wait for their IOs before destroying. NULL is a
 * no-op.
 */
void ts_qos_destroy(struct ts_qos *q);

/**
 * Gate one IO of \p bytes bytes (\p write: write or unmap; an unmap counts
 * as a write op of 0 bytes). Returns 1: submit now (no callback); 0: queued,
 * \p go(\p arg) fires exactly once later; -ENOMEM (nothing queued, no
 * callback) or -EINVAL.
 */
int ts_qos_admit(struct ts_qos *q, bool write, uint64_t bytes, ts_qos_go go, void *arg);

/**
 * An admitted IO completed (successfully or not) after \p latency_ns
 * (0 if unknown). Feeds reservations and statistics; relaxed atomics only.
 */
void ts_qos_done(struct ts_qos *q, bool write, uint64_t bytes, uint64_t latency_ns);

/** Counters since ts_qos_create(). */
struct ts_qos_stats {
	uint64_t admitted;       /**< IOs that passed a gate in force (at once or after queueing);
				      not counted on the unlimited fast path */
	uint64_t delayed;        /**< of those, IOs that were queued */
	uint64_t queued_now;     /**< IOs waiting now */
	uint64_t delay_ns_total; /**< time spent queued, summed over released IOs */
	uint64_t read_ops, write_ops, read_bytes, write_bytes; /**< completions (ts_qos_done) */
	uint64_t dyn_cap_iops;   /**< dynamic cap imposed by reservations now; 0 = none */
	uint64_t lat_ns_total;   /**< sum of latency_ns reported to ts_qos_done() */
};

/** Snapshot the counters of \p q into *\p out. */
void ts_qos_stats(struct ts_qos *q, struct ts_qos_stats *out);

/**
 * Tests: use \p now_ns(\p arg) as the clock (nanoseconds, monotonic) and
 * stop the timer thread; from now on queued IOs are released only by
 * ts_qos_domain_tick(). Call before creating volumes in \p d.
 */
void ts_qos_domain_set_clock(struct ts_qos_domain *d, uint64_t (*now_ns)(void *), void *arg);

/**
 * Run one scheduling pass now on the caller's thread: close the
 * reservation window if it is due, release every queued IO that may go and
 * call its go callback. Must not be called from a go callback.
 */
void ts_qos_domain_tick(struct ts_qos_domain *d);

#endif /* TS_QOS_H */
