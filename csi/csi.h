/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Tessera's CSI driver: Identity, Controller and Node services on one
 * driver object, served over gRPC (gRPC C core, protobuf-c messages generated
 * at build time from the CSI spec's csi.proto).
 *
 * A driver (struct ts_csi_driver) holds the configuration, a backend
 * (csi/backend/backend.h) and, when it runs the controller, a metadata store
 * (csi/store/store.h). A server (struct ts_csi_server) exposes one driver on one
 * endpoint with a small worker pool. gRPC status codes never leave csi/.
 *
 * THREAD SAFETY: a driver may be used by any number of threads at once
 * (controller mutations take the controller lock, node mutations the node
 * lock; never both). create/destroy are not thread safe against use.
 */
#ifndef TS_CSI_H
#define TS_CSI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "csi/backend/backend.h"
#include "csi/store/store.h"

/** Name returned by GetPluginInfo (a DNS-style name, as the spec asks). */
#define TS_CSI_DRIVER_NAME "csi.tessera.io"
/** Topology key NodeGetInfo reports and CreateVolume honours. */
#define TS_CSI_TOPOLOGY_KEY "topology.csi.tessera.io/node"

struct ts_csi_config {
	const char *node_id;     /**< required when the node service is on */
	const char *state_dir;   /**< node staging records live in <state_dir>/node */
	/**
	 * Node paths (staging/target) must lie below this prefix; NULL or "/"
	 * allows any absolute path. Tests and the fuzz harness confine it.
	 */
	const char *path_prefix;
	uint32_t max_volumes_per_node; /**< NodeGetInfo; 0 = unlimited */
	uint64_t default_volume_bytes; /**< CreateVolume with no capacity range; 0 = 1 GiB */
	uint64_t max_volume_bytes;     /**< larger requests are OUT_OF_RANGE; 0 = 64 TiB */
	bool controller;               /**< serve the Controller service */
	bool node;                     /**< serve the Node service */
};

struct ts_csi_driver;
struct ts_csi_server;

/**
 * Create a driver. \p be / \p be_ctx are required; \p st / \p st_ctx are
 * required when cfg->controller. The driver borrows the backend and store
 * (the caller destroys them after the driver). Strings in \p cfg are copied.
 * Loads node staging records from <state_dir>/node. 0, -EINVAL, -ENOMEM.
 */
int ts_csi_driver_create(const struct ts_csi_config *cfg,
			 const struct ts_csi_backend_ops *be, void *be_ctx,
			 const struct ts_csi_store_ops *st, void *st_ctx,
			 struct ts_csi_driver **out);
/** Destroy a driver (NULL is a no-op). Attached devices stay attached. */
void ts_csi_driver_destroy(struct ts_csi_driver *d);

/**
 * Serve only while \p gate(\p arg) answers 0: every call but the Identity
 * service's is refused with UNAVAILABLE ("not the active controller") when
 * it answers anything else. For a controller replica that holds its role on
 * a Lease (control/kube/leader.h): a replica that was paused past its renew
 * deadline refuses work from the moment it runs again. Call before
 * ts_csi_server_start(); \p gate must be cheap and callable from any
 * thread. NULL removes it. 0 or -EINVAL.
 */
int ts_csi_driver_set_gate(struct ts_csi_driver *d, int (*gate)(void *arg), void *arg);

/**
 * Handle one request without gRPC: decode \p req (\p req_len bytes) for the
 * full method name \p method ("/csi.v1.Node/NodeStageVolume"), run the
 * handler, encode the response into a ts_malloc'd buffer (*resp, *resp_len;
 * caller ts_free()s; NULL/0 on error). *code gets the gRPC status code and
 * \p msg (size \p msg_len) its message. Returns 0 when the method exists,
 * -ENOENT otherwise. Used by the server loop, tests and the fuzz harness.
 */
int ts_csi_handle(struct ts_csi_driver *d, const char *method, const uint8_t *req,
		  size_t req_len, uint8_t **resp, size_t *resp_len, int *code, char *msg,
		  size_t msg_len);

/**
 * Create a gRPC server for \p d on \p endpoint (`unix:///abs/path`; an
 * existing socket file there is replaced) with \p workers threads
 * (0 = 4). Starts serving before it returns. 0, -EINVAL (bad endpoint),
 * -EADDRINUSE / -EIO (bind failed), -ENOMEM.
 */
int ts_csi_server_start(struct ts_csi_driver *d, const char *endpoint, unsigned workers,
			struct ts_csi_server **out);

/**
 * Graceful shutdown: stop accepting calls, let running ones finish for up to
 * \p grace_ms, cancel the rest, join the workers, free everything and remove
 * the socket file. NULL is a no-op.
 */
void ts_csi_server_stop(struct ts_csi_server *s, unsigned grace_ms);

#endif /* TS_CSI_H */
