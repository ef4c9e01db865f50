/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Tessera's iSCSI target: an RFC 7143 protocol engine with the SBC-3/SPC-4
 * block command set, serving LUNs that providers register at runtime.
 *
 * Two sides:
 *  - the consumer API (server, targets, LUNs): create a server on a portal,
 *    add and remove targets (one per volume, IQN derived from the volume id)
 *    and LUNs while initiators are connected; nothing restarts;
 *  - the provider API: a provider fills a struct ts_iscsi_lun_ops (async
 *    read, write, flush, unmap, optional LBA status and reservation
 *    persistence) and hands it to ts_iscsi_lun_add(). The engine never
 *    includes a provider's header.
 *
 * Provider IO contract (same as the member interface): an op returns 0 and
 * later calls io->cb exactly once, on any thread, possibly before the op
 * returns; or it returns a negative error and the callback never fires.
 * Offsets and lengths are bytes, multiples of the LUN's block size.
 *
 * Persistent reservations survive restarts through a persistence hook: the
 * engine serialises the LUN's PR state to a small blob after each change and
 * hands it to ops->pr_save (or writes it atomically to info.pr_state_path),
 * and reads it back at ts_iscsi_lun_add() time through ops->pr_load (or the
 * path). See docs/iscsi.md.
 *
 * Fencing LUs (info.fencing, docs/fencing.md): the PR keys are ownership
 * keys, (epoch << 32) | node id, both halves non-zero. The LU keeps a floor,
 * the highest (epoch, node) any REGISTER has carried, persisted through
 * ops->fence_save before it takes effect. Once the floor is set, a
 * REGISTER below it (lower epoch, or the same epoch from another node) and
 * every other PR OUT service action from a nexus not registered with the
 * floor key get RESERVATION CONFLICT, and so does every read or write from
 * such a nexus: only the owner at the current epoch reaches the medium.
 * A REGISTER of a non-zero key completes only once the writes of every
 * other nexus already at the provider have completed, so after it returns
 * GOOD nothing of a stale owner reaches the medium. Refused commands are
 * counted (ts_iscsi_lun_fence_stats()).
 *
 * THREAD SAFETY: every function here may be called from any thread except
 * from inside a provider callback or an op. The server runs a small fixed
 * number of event-loop threads (epoll); one registry mutex guards targets and
 * sessions, one mutex per LUN guards its SCSI state (reservations, unit
 * attentions); the registry lock is taken before a LUN lock, never after.
 */
#ifndef TS_ISCSI_H
#define TS_ISCSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_ISCSI_LUN_FUA 0x1u /**< write: durable when the callback fires */

struct ts_iscsi_lun_io;
typedef void (*ts_iscsi_lun_cb)(struct ts_iscsi_lun_io *io, int status);

/** One provider IO. Owned by the engine; valid until the callback fires. */
struct ts_iscsi_lun_io {
	uint64_t offset;    /**< bytes */
	uint64_t len;       /**< bytes; 0 for flush */
	void *buf;          /**< len bytes (read/write); NULL for flush/unmap */
	uint32_t flags;     /**< TS_ISCSI_LUN_FUA */
	ts_iscsi_lun_cb cb; /**< status 0 or negative error (-EIO, -ENOSPC, ...) */
	void *cb_arg;       /**< engine's */
	void *priv[4];      /**< provider scratch while in flight */
};

/** Provider operations. read, write, flush and unmap are mandatory. */
struct ts_iscsi_lun_ops {
	int (*read)(void *ctx, struct ts_iscsi_lun_io *io);
	int (*write)(void *ctx, struct ts_iscsi_lun_io *io);
	/** Make every write completed before this call durable. */
	int (*flush)(void *ctx, struct ts_iscsi_lun_io *io);
	/** Deallocate; later reads return zeroes. */
	int (*unmap)(void *ctx, struct ts_iscsi_lun_io *io);
	/**
	 * Optional, synchronous, must not block on the network: is the range
	 * starting at \p offset mapped? Sets *\p len to the length (bytes, <= the
	 * value passed in) of the run that shares that state. NULL: all mapped.
	 */
	int (*lba_status)(void *ctx, uint64_t offset, uint64_t *len, bool *mapped);
	/** Optional: persist the PR blob (synchronous). 0 or -errno. */
	int (*pr_save)(void *ctx, const void *blob, size_t len);
	/** Optional: load the PR blob into \p buf; returns its length, 0 if none, or -errno. */
	int (*pr_load)(void *ctx, void *buf, size_t cap);
	/**
	 * Fencing LUs only (both mandatory then): persist the fencing floor
	 * durably before returning (synchronous, called with the LU's lock held,
	 * rarely: once per epoch raise). 0 or -errno; on error the REGISTER that
	 * raised it fails and the floor stays where it was.
	 */
	int (*fence_save)(void *ctx, uint32_t epoch, uint32_t node);
	/** Fencing LUs: load the floor at ts_iscsi_lun_add() (0/0 if never set). 0 or -errno. */
	int (*fence_load)(void *ctx, uint32_t *epoch, uint32_t *node);
	/** Optional: called when the engine drops its last reference to the LUN. */
	void (*destroy)(void *ctx);
};

/** Static description of a LUN. Strings are copied. */
struct ts_iscsi_lun_info {
	uint64_t size;           /**< bytes, multiple of block_size */
	uint32_t block_size;     /**< 512 or 4096 */
	uint8_t uuid[16];        /**< stable identity: serial number and NAA id */
	bool read_only;
	bool thin;               /**< advertise logical block provisioning (UNMAP) */
	const char *product;     /**< INQUIRY product id (<= 16 chars), NULL: "VOLUME" */
	const char *pr_state_path; /**< PR persistence file when ops->pr_save is NULL; may be NULL */
	bool fencing;            /**< ownership-epoch PR policy (see above); needs ops->fence_save/load */
};

/** Fencing state and counters of one LU (ts_iscsi_lun_fence_stats()). */
struct ts_iscsi_fence_stats {
	uint32_t epoch;          /**< floor: highest epoch registered, 0 if never */
	uint32_t node;           /**< the node that registered it (the owner) */
	uint64_t key;            /**< the floor key, (epoch << 32) | node */
	bool held;               /**< the owner holds the reservation right now */
	uint64_t raises;         /**< floor raises since the LUN was added */
	uint64_t refused_writes; /**< data-changing commands refused (WRITE, WRITE SAME, UNMAP, CAW, ...) */
	uint64_t refused_other;  /**< other reads/commands refused by the floor or the reservation */
	uint64_t refused_pr;     /**< PR OUT commands refused by the floor */
};

/** Server options. Zero-initialise, then set what you need. */
struct ts_iscsi_server_opts {
	const char *addr;     /**< listen address, e.g. "127.0.0.1" (default "0.0.0.0") */
	uint16_t port;        /**< 0: pick a free port (see ts_iscsi_server_port) */
	unsigned threads;     /**< event-loop threads, default 1, max 16 */
	const char *discovery_chap_user;   /**< optional CHAP for discovery sessions */
	const char *discovery_chap_secret;
	/**
	 * Optional: a normal-session login names a target this server does not
	 * serve. Return 0 with "host:port" (IPv4 or a name, NUL-terminated,
	 * < \p len) in \p addr to answer "target moved temporarily" (RFC 7143
	 * 11.13.5, status 0x0101, TargetAddress=host:port,1): the initiator logs
	 * in there instead. Anything else refuses the login as today (0x0203,
	 * not found). Runs on a loop thread with no lock held: it must not block
	 * (answer from memory). The engine that owns a volume may live on
	 * another node (docs/scale-out.md).
	 */
	int (*redirect)(void *ctx, const char *target_iqn, char *addr, size_t len);
	void *redirect_ctx;
};

/** Per-target options. Strings are copied. */
struct ts_iscsi_target_opts {
	const char *iqn;          /**< required, e.g. from ts_iscsi_iqn_for_volume() */
	const char *alias;        /**< optional TargetAlias */
	const char *chap_user;    /**< set both to require CHAP */
	const char *chap_secret;
	const char *mutual_user;  /**< set both to answer the initiator's challenge */
	const char *mutual_secret;
};

struct ts_iscsi_server;

/**
 * Start a server: bind the portal and start the loop threads.
 * Returns 0 and *\p out, or -errno (-EADDRINUSE, -ENOMEM, ...).
 */
int ts_iscsi_server_create(const struct ts_iscsi_server_opts *opts, struct ts_iscsi_server **out);

/** The bound TCP port (useful with opts.port = 0). */
uint16_t ts_iscsi_server_port(const struct ts_iscsi_server *srv);

/**
 * Stop the loops, close every connection, drop every target and LUN (waiting
 * for in-flight provider IO to complete). NULL is a no-op.
 */
void ts_iscsi_server_destroy(struct ts_iscsi_server *srv);

/** Add a target. 0, -EEXIST (same IQN), -EINVAL or -ENOMEM. */
int ts_iscsi_target_add(struct ts_iscsi_server *srv, const struct ts_iscsi_target_opts *opts);

/**
 * Remove a target: it disappears from discovery at once, its sessions are
 * dropped, and its LUNs are released when their last IO completes.
 * 0 or -ENOENT.
 */
int ts_iscsi_target_remove(struct ts_iscsi_server *srv, const char *iqn);

/**
 * Register a LUN under target \p iqn. \p ops must outlive the LUN; \p ctx is
 * passed to every op and to ops->destroy when the engine lets go of it
 * (after ts_iscsi_lun_remove/target removal and the last in-flight IO).
 * Returns 0, -ENOENT (no target), -EEXIST (LUN id taken), -EINVAL, -ENOMEM;
 * on error ops->destroy is not called.
 */
int ts_iscsi_lun_add(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
		     const struct ts_iscsi_lun_ops *ops, void *ctx,
		     const struct ts_iscsi_lun_info *info);

/** Unregister a LUN; new commands get LOGICAL UNIT NOT SUPPORTED. 0 or -ENOENT. */
int ts_iscsi_lun_remove(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id);

/**
 * Fencing state of LUN \p lun_id of target \p iqn (any LU; the counters
 * count on fencing LUs only). Returns 0, -ENOENT or -EINVAL.
 */
int ts_iscsi_lun_fence_stats(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
			     struct ts_iscsi_fence_stats *st);

/**
 * Grow a LUN to \p size bytes (a multiple of its block size, not smaller
 * than now). Every nexus gets a CAPACITY DATA HAS CHANGED unit attention.
 * 0, -ENOENT, -EINVAL (shrink or misaligned).
 */
int ts_iscsi_lun_resize(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
			uint64_t size);

/**
 * The IQN of a volume's target: "iqn.2026-01.io.tessera:vol-<uuid>".
 * \p out must hold 80 bytes.
 */
void ts_iscsi_iqn_for_volume(const uint8_t volume_uuid[16], char out[80]);

#endif /* TS_ISCSI_H */
