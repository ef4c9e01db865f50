/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The serving stack both daemons run on top of their data plane: the thin
 * volume pool (dataplane/volume) on a block device, Tessera's iSCSI target
 * on a portal, the data-plane CSI backend (backend_dataplane.h), the CSI
 * metadata store, and the CSI driver with its admin service on a unix
 * socket. `tessera dev` and `tessera controller` both give it the
 * multi-node group's block device (ts_cluster_device, through
 * ts_controller_start); what each knows about nodes and array groups
 * reaches the admin service through a status callback.
 *
 * Start is bottom-up (pool, target, backend, store, driver, server) and stop
 * the reverse, so nothing is served that cannot do IO.
 *
 * Formatting: the pool is formatted only when `<state_dir>/volumes.formatted`
 * is absent and the device holds no pool (ts_vpool_open answers
 * TS_ERR_FOREIGN); the marker is then written. With the marker present a
 * missing pool is an error, never a reason to format.
 *
 * State directory (beside whatever the caller keeps there):
 *   volumes.formatted   the pool was formatted on this device
 *   meta/               CSI controller records (unless the caller gives a store)
 *   node/               CSI node staging records
 *   pr/                 SCSI persistent reservations per volume
 *   attach/             private FUSE mounts of attached volumes
 *
 * THREAD SAFETY: start/stop from one thread. The callbacks are called from
 * gRPC worker threads, several at once.
 */
#ifndef TS_PROGRAMS_STACK_H
#define TS_PROGRAMS_STACK_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

struct ts_member;
struct ts_admin_status;
struct ts_csi_backend_ops;
struct ts_csi_store_ops;
struct ts_stack;

struct ts_stack_opts {
	const char *name;          /**< "dev", "controller": log tag, message prefix */
	/**
	 * The block device under the pool (borrowed). NULL with \p backend
	 * set: the stack then runs no pool and no iSCSI target, only the CSI
	 * driver and admin service over \p backend (the remote backend of a
	 * controller whose engines run in the nodes: docs/scale-out.md).
	 */
	struct ts_member *device;
	const struct ts_csi_backend_ops *backend; /**< with device NULL; owned from start on */
	void *backend_ctx;
	/** With a backend: the snapshot tree (JSON array text, ts_malloc'd); NULL: EOPNOTSUPP. */
	int (*tree)(void *arg, char **out);
	void *tree_arg;
	const char *state_dir;     /**< required, must exist */
	const char *portal;        /**< required, "host:port" (ts_stack_parse_portal) */
	const char *csi_endpoint;  /**< required, "unix:///absolute/path.sock" */
	const char *node_id;       /**< required: CSI node id */
	uint8_t group_uuid[16];    /**< the device's identity: stable volume IQNs */
	unsigned k, m;             /**< the device's erasure code */
	/** Optional readiness check (CSI Probe): 0 when IO can be served. */
	int (*probe)(void *arg);
	void *probe_arg;
	/**
	 * Required: fill the nodes and array groups of \p out (zeroed by the
	 * caller; the stack adds the volume pool). 0 or -errno.
	 */
	int (*status)(void *arg, struct ts_admin_status *out);
	void *status_arg;
	/**
	 * Optional: the CSI metadata store (csi/store/store.h), e.g. the
	 * Kubernetes one; owned from start on, also when start fails. NULL:
	 * the file store in <state_dir>/meta.
	 */
	const struct ts_csi_store_ops *store;
	void *store_ctx;
	/** Optional: serve only while this answers 0 (ts_csi_driver_set_gate). */
	int (*gate)(void *arg);
	void *gate_arg;
};

/**
 * Bring the stack up. On failure one line naming the failed layer has been
 * written to stderr ("tessera <name>: ...") and everything started is
 * stopped again. Returns 0 and *\p out, -EINVAL, or the failing layer's
 * error (ts_strerror()).
 */
int ts_stack_start(const struct ts_stack_opts *o, struct ts_stack **out);

/** Stop serving and close the pool (top-down). NULL is a no-op. */
void ts_stack_stop(struct ts_stack *s);

struct ts_vpool;
struct ts_csi_driver;

/**
 * The snapshot tree of pool \p vp as the admin service shows it (a JSON
 * array of layers, ts_malloc'd text into *\p out). 0 or -errno.
 */
int ts_stack_tree_json(struct ts_vpool *vp, char **out);

/** The thin-volume pool the stack serves (borrowed; valid until ts_stack_stop; NULL without a device). */
struct ts_vpool *ts_stack_vpool(struct ts_stack *s);

/** The CSI driver object behind the stack's gRPC server (borrowed, same lifetime). */
struct ts_csi_driver *ts_stack_driver(struct ts_stack *s);

struct ts_csi_backend_ops;
/**
 * The stack's volume engine: its data-plane backend (borrowed, same
 * lifetime), e.g. to serve it as an engine service (csi/engine.h).
 */
void ts_stack_backend(struct ts_stack *s, const struct ts_csi_backend_ops **ops, void **ctx);

/**
 * Check a daemon's --portal ("host:port", port 1-65535) and CSI endpoint
 * ("unix:///absolute/path.sock"; when *\p endpoint is NULL it becomes
 * "unix://<state_dir>/csi.sock", written to \p buf of \p buf_len bytes).
 * On a bad value prints one line "tessera <name>: ..." to stderr.
 * 0 or -EINVAL.
 */
int ts_stack_check_opts(const char *name, const char *portal, const char *state_dir,
			const char **endpoint, char *buf, size_t buf_len);

/** "K+M" with k, m >= 1 and k + m within an array group. 0 or -EINVAL. */
int ts_stack_parse_ec(const char *s, unsigned *k, unsigned *m);

/**
 * Block SIGTERM and SIGINT in the calling thread, and so in every thread it
 * starts afterwards (call it before starting any); *\p set gets them for
 * sigwait().
 */
void ts_stack_block_signals(sigset_t *set);

#endif /* TS_PROGRAMS_STACK_H */
