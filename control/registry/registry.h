/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Cluster membership and the controller-to-node mailbox, behind one small
 * interface so the dev/test directory store and a Kubernetes-backed store
 * (custom resources / leases) are interchangeable.
 *
 * Three kinds of record:
 *  - node records: written by each node daemon (id, iSCSI portal, member
 *    vdisks with sizes, free bytes, heartbeat time in wall-clock ms, and the
 *    array groups whose engine it runs, with the epoch it serves each at and
 *    the engine service's endpoint);
 *  - requests: the controller asks a node to do something (create a member
 *    vdisk and export it; serve an array group's engine at an epoch; release
 *    it); the node takes it, acts, and completes it
 *    with a status the controller waits for. Requests are idempotent by
 *    design (create of an existing vdisk with the same size succeeds), so a
 *    request replayed after a crash is harmless;
 *  - group records: where each array-group slot lives (node id + vdisk
 *    uuid), so a controller restart assembles the same group; and who owns
 *    the group (the node serving it) at which epoch (docs/scale-out.md).
 *    Epochs of a group only ever increase: ts_registry_raise_epoch() is the
 *    only way to change the owner, and ts_registry_put_group() refuses a
 *    record carrying an epoch lower than the stored one (-ESTALE), so a stale
 *    owner can never write its view of the group back over a newer one.
 *
 * The directory store (ts_registry_dir_open) keeps them as small JSON files
 * written atomically (temp file, fsync, rename, directory fsync):
 *   <dir>/nodes/<id>.json, <dir>/requests/<node>/<reqid>.req|.done,
 *   <dir>/groups/<uuid>.json.
 * Several processes share the directory; each file has one writer.
 *
 * Errors: 0 or -errno (-ENOENT for a missing record, -ETIMEDOUT from
 * ts_registry_wait_request, -ESTALE for a group record older than the
 * stored one, -EINVAL for bad arguments).
 *
 * THREAD SAFETY: every function may be called from any thread; the
 * directory store has no in-memory state besides its path.
 */
#ifndef TS_CONTROL_REGISTRY_H
#define TS_CONTROL_REGISTRY_H

#include <stdint.h>

#define TS_REG_MAX_VDISKS 64
#define TS_REG_MAX_NODES 64
#define TS_REG_MAX_SLOTS 40
#define TS_REG_MAX_SERVED 64

/** Group record flag: its thin volume pool was formatted (never format again). */
#define TS_REG_GROUP_POOL 0x1u

struct ts_reg_vdisk {
	uint8_t uuid[16];
	uint64_t size;
};

struct ts_reg_node {
	uint32_t node_id;
	char portal[64];            /**< "ip:port" of the node's iSCSI target */
	uint64_t heartbeat_ms;      /**< CLOCK_REALTIME ms of the last write */
	uint64_t free_bytes;
	uint32_t nvdisks;
	struct ts_reg_vdisk vdisks[TS_REG_MAX_VDISKS];
	uint32_t nserved;           /**< array groups whose engine runs here */
	struct {
		uint8_t uuid[16];
		uint64_t epoch;     /**< the ownership epoch it fenced the members with */
		char engine[80];    /**< the engine service's endpoint (host:port) */
	} served[TS_REG_MAX_SERVED];
};

enum ts_reg_op {
	TS_REG_CREATE_VDISK = 1,  /**< uuid, size: create + export a member vdisk */
	TS_REG_SERVE_GROUP = 2,   /**< uuid, epoch: run the group's engine at that epoch */
	TS_REG_RELEASE_GROUP = 3, /**< uuid, epoch: stop it (a planned handover) */
};

struct ts_reg_request {
	char id[40];                /**< unique, filename-safe */
	enum ts_reg_op op;
	uint8_t uuid[16];
	uint64_t size;
	uint64_t epoch;             /**< SERVE/RELEASE; 0 otherwise */
};

struct ts_reg_group {
	uint8_t uuid[16];
	uint32_t k, m;
	uint64_t member_size;
	uint32_t owner_node;         /**< node serving the group; 0 = none chosen yet */
	uint64_t epoch;              /**< ownership epoch: raised on every owner change */
	uint32_t flags;              /**< TS_REG_GROUP_* */
	struct {
		uint32_t node_id;
		uint8_t vdisk[16];
	} slots[TS_REG_MAX_SLOTS];  /**< k+m valid */
	uint32_t njournals;          /**< replica journals (dataplane/replog), one per node */
	uint64_t journal_size;
	struct {
		uint32_t node_id;
		uint8_t vdisk[16];
	} journals[TS_REG_MAX_NODES];
};

/** Store operations (what another backend implements). All mandatory. */
struct ts_registry_ops {
	int (*put_node)(void *ctx, const struct ts_reg_node *n);
	int (*list_nodes)(void *ctx, struct ts_reg_node *out, unsigned max, unsigned *n);
	int (*post_request)(void *ctx, uint32_t node_id, const struct ts_reg_request *r);
	/**
	 * Oldest pending (not completed) request for the node, or -ENOENT;
	 * -EINVAL if it cannot be parsed (r->id is still set, to complete it).
	 */
	int (*next_request)(void *ctx, uint32_t node_id, struct ts_reg_request *r);
	int (*complete_request)(void *ctx, uint32_t node_id, const char *req_id, int status);
	/** -ENOENT while pending, else 0 and *status. */
	int (*request_status)(void *ctx, uint32_t node_id, const char *req_id, int *status);
	/** Write \p g unless the stored record has a higher epoch (-ESTALE). Atomic. */
	int (*put_group)(void *ctx, const struct ts_reg_group *g);
	int (*get_group)(void *ctx, const uint8_t uuid[16], struct ts_reg_group *g);
	/**
	 * One atomic step: read the group record, set its owner to \p owner and
	 * its epoch to the stored one + 1, write it, return the new epoch.
	 * Concurrent callers get distinct epochs. -ENOENT without a record.
	 */
	int (*raise_epoch)(void *ctx, const uint8_t uuid[16], uint32_t owner, uint64_t *epoch);
	/**
	 * The uuids of up to \p max group records into \p out (any order), *\p n
	 * the count written; unreadable records are skipped.
	 */
	int (*list_groups)(void *ctx, uint8_t (*out)[16], unsigned max, unsigned *n);
	void (*destroy)(void *ctx);
};

struct ts_registry;

/** Wrap a backend. 0 and *out, or -EINVAL/-ENOMEM (ctx then not destroyed). */
int ts_registry_create(const struct ts_registry_ops *ops, void *ctx, struct ts_registry **out);
/** The directory store rooted at \p dir (created if needed). 0 or -errno. */
int ts_registry_dir_open(const char *dir, struct ts_registry **out);
/** Destroy. NULL is a no-op. */
void ts_registry_close(struct ts_registry *r);

/** Insert or replace a node record (heartbeat_ms is set by the caller). */
int ts_registry_put_node(struct ts_registry *r, const struct ts_reg_node *n);
/** Up to \p max node records into \p out, *\p n gets the count. */
int ts_registry_list_nodes(struct ts_registry *r, struct ts_reg_node *out, unsigned max,
			   unsigned *n);
/** Post request \p req (fill id with ts_registry_new_request_id()) to \p node_id. */
int ts_registry_post_request(struct ts_registry *r, uint32_t node_id,
			     const struct ts_reg_request *req);
int ts_registry_next_request(struct ts_registry *r, uint32_t node_id, struct ts_reg_request *req);
int ts_registry_complete_request(struct ts_registry *r, uint32_t node_id, const char *req_id,
				 int status);
/**
 * Wait (polling every 20 ms) until the request completes or \p timeout_ms
 * passes. 0 and *\p status (the node's result), or -ETIMEDOUT.
 */
int ts_registry_wait_request(struct ts_registry *r, uint32_t node_id, const char *req_id,
			     uint32_t timeout_ms, int *status);
int ts_registry_put_group(struct ts_registry *r, const struct ts_reg_group *g);
int ts_registry_get_group(struct ts_registry *r, const uint8_t uuid[16], struct ts_reg_group *g);
/**
 * Hand group \p uuid to node \p owner (non-zero) at a new epoch, stored
 * before it is returned in *\p epoch: the epoch to fence the members with.
 * Only the control plane calls it. 0, -ENOENT, -EINVAL or -errno.
 */
int ts_registry_raise_epoch(struct ts_registry *r, const uint8_t uuid[16], uint32_t owner,
			    uint64_t *epoch);

/**
 * The uuids of the stored group records, up to \p max, in ascending byte
 * order, into \p out; *\p n gets the count. 0 or -errno.
 */
int ts_registry_list_groups(struct ts_registry *r, uint8_t (*out)[16], unsigned max, unsigned *n);

/** A fresh request id (uuid text). \p out holds 40 bytes. */
void ts_registry_new_request_id(char out[40]);
/** CLOCK_REALTIME in ms (heartbeats compare across processes). */
uint64_t ts_registry_now_ms(void);

#endif /* TS_CONTROL_REGISTRY_H */
