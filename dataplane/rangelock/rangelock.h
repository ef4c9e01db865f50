/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Range locks: an interval tree of held and waiting ranges of a linear
 * address space (LBAs, stripes, bytes: the caller's unit), with shared and
 * exclusive holds, FIFO fairness among overlapping requests, asynchronous
 * (callback) and blocking waits, and cancellation of a waiting request.
 *
 * Semantics. A request [start, start+len) in mode SHARED conflicts with an
 * overlapping EXCL request; an EXCL request conflicts with every overlapping
 * request. A request is granted when it conflicts with no held range and with
 * no *earlier* waiting request (arrival order): a waiting writer is not
 * overtaken by later overlapping readers, so nobody starves, and
 * overlapping writers are granted in the order they arrived. Requests that
 * do not overlap never wait for each other.
 *
 * Cost. O(log n + k) per lock, unlock and cancel, where n is the number of
 * held plus waiting requests and k the number of them that overlap the
 * range. One mutex per ts_rl; no allocation on the IO path (the caller owns
 * the struct ts_rl_req, typically embedded in its IO).
 *
 * Callbacks. A queued asynchronous request's callback runs exactly once,
 * when it is granted, on the thread that called ts_rl_unlock() or
 * ts_rl_cancel() (which made it grantable), after the lock's mutex was
 * dropped: the callback may lock, unlock or cancel on the same ts_rl.
 *
 * Requests. A struct ts_rl_req must be zeroed before its first use (`= {0}`
 * or calloc); after ts_rl_unlock() or a successful ts_rl_cancel() it is idle
 * again and may be reused. Only asynchronous waits can be cancelled.
 *
 * THREAD SAFETY: every function may be called from any thread; one mutex
 * per ts_rl guards the tree and every request in it (no other lock is taken
 * under it, and callbacks run without it). A ts_rl_req belongs to its
 * caller; it must not be touched between the lock call and its unlock
 * except through this API.
 */
#ifndef TS_RANGELOCK_H
#define TS_RANGELOCK_H

#include <stdbool.h>
#include <stdint.h>

enum ts_rl_mode {
	TS_RL_SHARED = 0, /**< readers: overlap other SHARED holds */
	TS_RL_EXCL = 1,   /**< writers: overlap nothing */
};

struct ts_rl;
struct ts_rl_req;

/** Called once when a queued request is granted. */
typedef void (*ts_rl_cb)(struct ts_rl_req *r, void *arg);

/**
 * One request. Caller-owned storage; the fields are private to the module
 * (they are visible only so the request can be embedded without allocation).
 */
struct ts_rl_req {
	uint64_t start, end;   /* [start, end) */
	uint64_t max_end;      /* interval-tree augmentation: max end in subtree */
	uint64_t seq;          /* arrival order */
	struct ts_rl_req *parent, *child[2]; /* tree links: left, right */
	struct ts_rl_req *link; /* scratch list while waking waiters */
	ts_rl_cb cb;
	void *arg;
	void *waiter;          /* blocking wait: the waiter's condition */
	uint8_t mode;          /* enum ts_rl_mode */
	uint8_t state;         /* idle, waiting, held */
	uint8_t color;
};

/** Create an empty lock. 0 or -ENOMEM. */
int ts_rl_create(struct ts_rl **out);

/** Free \p rl (no request may be held or waiting). NULL is a no-op. */
void ts_rl_destroy(struct ts_rl *rl);

/**
 * Ask for [start, start+len) in \p mode. Returns 1 when granted at once
 * (\p cb is not called), 0 when queued (\p cb(r, arg) will be called when
 * granted), or -EINVAL (len 0, start+len wraps, r waiting or held already,
 * cb NULL). Nothing is allocated, so nothing else can fail.
 */
int ts_rl_lock_async(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
		     enum ts_rl_mode mode, ts_rl_cb cb, void *arg);

/** Blocking form: returns 0 once granted, or -EINVAL. */
int ts_rl_lock(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
	       enum ts_rl_mode mode);

/** Non-blocking form: 0 and held, or -EBUSY (nothing queued), or -EINVAL. */
int ts_rl_trylock(struct ts_rl *rl, struct ts_rl_req *r, uint64_t start, uint64_t len,
		  enum ts_rl_mode mode);

/**
 * Withdraw a waiting request: 0 (removed, its callback will not run), or
 * -EALREADY (it was granted already: its callback has run or is about to
 * run on the granting thread, and the hold must be ts_rl_unlock()ed as
 * usual). Later waiters it was blocking may be granted (their callbacks run
 * on this thread). -EINVAL when r is neither waiting nor held, or is a
 * blocking wait.
 */
int ts_rl_cancel(struct ts_rl *rl, struct ts_rl_req *r);

/** Release a held request; grants the waiters that become grantable. */
void ts_rl_unlock(struct ts_rl *rl, struct ts_rl_req *r);

/** Counters for tests and metrics. */
struct ts_rl_stats {
	uint64_t held;      /**< requests held now */
	uint64_t waiting;   /**< requests waiting now */
	uint64_t granted;   /**< total grants */
	uint64_t waited;    /**< total grants that had to wait */
};
void ts_rl_stats(struct ts_rl *rl, struct ts_rl_stats *out);

#endif /* TS_RANGELOCK_H */
