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

#endif /* TS_MEMBER_H */
