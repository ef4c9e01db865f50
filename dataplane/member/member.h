/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The member interface: how an array group reaches one of its members.
 *
 * A member is a block device of fixed size: a local LDM virtual disk, or (in
 * the multi-node build) a remote LDM virtual disk reached through user-mode
 * iSCSI. The array group sees only this interface, so local and remote members
 * look the same.
 *
 * Providers fill a struct ts_member_ops and create a member with
 * ts_member_create(). Consumers submit asynchronous IOs with
 * ts_member_submit():
 *  - it returns 0 and the completion callback fires exactly once, later or
 *    before ts_member_submit() returns, on any thread; or
 *  - it returns a negative error and the callback never fires.
 * Many IOs may be in flight at once; they complete in any order. A provider
 * that loses its device completes IOs with an error (TS_ERR_MEMBER_FAILED or
 * -EIO) rather than blocking; a remote provider turns its timeouts into such
 * errors.
 *
 * Offsets and lengths are in bytes and multiples of the member's block size.
 * TS_MEMBER_FUA on a write means the data is durable when the callback fires;
 * a FLUSH makes every write completed before it was submitted durable.
 *
 * THREAD SAFETY: ts_member_submit() may be called from any thread
 * concurrently; providers synchronise internally. ts_member_destroy() must
 * only be called once no IO is in flight.
 */
#ifndef TS_MEMBER_H
#define TS_MEMBER_H

#include <pthread.h>
#include <stdint.h>

enum ts_member_op {
	TS_MEMBER_READ = 0,
	TS_MEMBER_WRITE,
	TS_MEMBER_FLUSH,
	TS_MEMBER_UNMAP, /**< discard; later reads of the range return zeroes */
};

#define TS_MEMBER_FUA 0x1u

struct ts_member_io;
typedef void (*ts_member_cb)(struct ts_member_io *io, int status);

/**
 * One IO request. Owned by the submitter, which must keep it (and \p buf)
 * alive until the callback fires. \p status passed to the callback is 0 or a
 * negative error.
 */
struct ts_member_io {
	enum ts_member_op op;
	uint32_t flags;     /**< TS_MEMBER_FUA */
	uint64_t offset;    /**< bytes */
	uint64_t len;       /**< bytes; 0 for FLUSH */
	void *buf;          /**< len bytes; NULL for FLUSH/UNMAP */
	ts_member_cb cb;
	void *cb_arg;       /**< for the submitter */
	void *priv[4];      /**< scratch for the provider while in flight */
};

/** Provider operations. All mandatory except \p destroy. */
struct ts_member_ops {
	/** Submit; same contract as ts_member_submit(). */
	int (*submit)(void *ctx, struct ts_member_io *io);
	/** Release the provider context. */
	void (*destroy)(void *ctx);
};

/** Static description of a member, filled by the provider. */
struct ts_member_info {
	uint64_t size;        /**< bytes */
	uint32_t block_size;  /**< bytes, power of two, >= 512 */
	uint32_t node_id;     /**< node the member's disk lives on */
	uint8_t uuid[16];     /**< identity of the underlying virtual disk */
	char name[64];        /**< for logs: "node1/vd3" or an iSCSI URL */
};

struct ts_member;

/**
 * Wrap a provider. \p ops must outlive the member; \p ctx is handed to every
 * op and to ops->destroy when the member is destroyed.
 * Returns 0 and sets *\p out, or -ENOMEM / -EINVAL (the ctx is then not
 * destroyed).
 */
int ts_member_create(const struct ts_member_ops *ops, void *ctx,
		     const struct ts_member_info *info, struct ts_member **out);

/** Destroy; calls ops->destroy(ctx). NULL is a no-op. No IO may be in flight. */
void ts_member_destroy(struct ts_member *m);

/** Description given at creation. Valid until destroy. */
const struct ts_member_info *ts_member_info(const struct ts_member *m);

/**
 * The provider context of \p m if it was created with \p ops, else NULL
 * (lets a provider offer extra calls on its own members). Valid until destroy.
 */
void *ts_member_provider_ctx(const struct ts_member *m, const struct ts_member_ops *ops);

/** Submit an IO: 0 and the callback fires exactly once, or <0 and it never fires. */
int ts_member_submit(struct ts_member *m, struct ts_member_io *io);

/**
 * Synchronous helper: submit and wait. Returns the IO's status.
 * Must not be called from a provider's completion context.
 */
int ts_member_rw_sync(struct ts_member *m, enum ts_member_op op, uint32_t flags,
		      uint64_t offset, uint64_t len, void *buf);

/* ---- submit and wait ---- */

/**
 * A one-shot completion to wait on, for any asynchronous call whose callback
 * is `void (*)(void *arg, int status)` with the contract "returns 0 and the
 * callback fires exactly once, or returns <0 and it never fires" (member IO
 * through ts_member_rw_sync(), ts_agrp_cb, ts_volume_cb, ...). Owned by the
 * waiting thread, usually on its stack; initialise with TS_MEMBER_WAITER_INIT:
 *
 *     struct ts_member_waiter w = TS_MEMBER_WAITER_INIT;
 *     return ts_member_wait(&w, ts_agrp_flush(g, ts_member_wake, &w));
 */
struct ts_member_waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
	int status;
};

#define TS_MEMBER_WAITER_INIT { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 }

/**
 * The callback to hand to the asynchronous call, with \p arg the waiter:
 * records \p status and wakes the waiting thread. Any thread; takes only the
 * waiter's lock. Must fire at most once per waiter.
 */
void ts_member_wake(void *arg, int status);

/**
 * Wait for the submission whose return code is \p submit_rc: if it is 0,
 * block until ts_member_wake() fired and return the status it got; otherwise
 * return \p submit_rc at once (the callback never fires). In both cases the
 * waiter is spent (its lock and condition destroyed) when this returns.
 * Must not be called from a context the callback needs to make progress
 * (e.g. a provider's completion thread).
 */
int ts_member_wait(struct ts_member_waiter *w, int submit_rc);

/* ---- fan-out: one request to several members ---- */

/**
 * A set of member IOs submitted together and waited for together (a write
 * to every live member, a stripe read from k of them). Owned by the
 * submitting thread, usually on its stack, with one struct
 * ts_member_fanout_io per IO that outlives the wait:
 *
 *     ts_member_fanout_init(&f);
 *     for each member i: x[i].io = (struct ts_member_io){ .op = ..., ... };
 *                        ts_member_fanout_add(&f, &x[i], member[i]);
 *     first_error = ts_member_fanout_wait(&f);
 *     then look at x[i].status for each IO.
 */
struct ts_member_fanout {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending; /**< submitted, not yet completed */
	int status;       /**< first error recorded (completion or submission order), or 0 */
};

/** One IO of a fan-out. The caller fills io.op/flags/offset/len/buf; add() sets the rest. */
struct ts_member_fanout_io {
	struct ts_member_io io;
	struct ts_member_fanout *f;
	int status; /**< the IO's status (or its submission error) once wait() returned */
};

/** Start an empty fan-out. */
void ts_member_fanout_init(struct ts_member_fanout *f);

/**
 * Submit \p x->io to \p m as part of \p f (io.cb and io.cb_arg are set
 * here). Returns 0, and the IO's completion is counted and its status lands
 * in x->status; or the submission error (x->status is set to it, and it
 * counts as the fan-out's error if it is the first): nothing is in flight
 * for \p x then. \p x and the IO's buffer must stay valid until
 * ts_member_fanout_wait() returns. Any thread may complete the IO.
 */
int ts_member_fanout_add(struct ts_member_fanout *f, struct ts_member_fanout_io *x,
			 struct ts_member *m);

/**
 * Wait until every IO added to \p f has completed. Returns 0 if all
 * succeeded, else the first error recorded (first in completion order;
 * a submission error counts when add() returned it). The fan-out is spent
 * (lock and condition destroyed); ts_member_fanout_init() starts it again.
 * Must not be called from a provider's completion context.
 */
int ts_member_fanout_wait(struct ts_member_fanout *f);

#endif /* TS_MEMBER_H */
