/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The engine service: one array group's volume engine (any
 * struct ts_csi_backend_ops, in practice the data-plane backend of the node
 * that owns the group) served over gRPC under
 * `/tessera.engine.v1.Engine/<Method>`, so that a controller holding no
 * volume data can run the CSI Controller service against it through the
 * remote backend (csi/backend/backend_remote.h). Bodies are JSON, the
 * contract is csi/backend/engine_wire.h, the methods and bodies are listed
 * in docs/engines.md.
 *
 * The controller-side backend ops travel: Probe, Create, Find, Remove,
 * Expand, Capacity, SnapCreate, SnapFind, SnapDelete, SnapList (paged), CreateFrom,
 * SnapDelta (paged), SetQos, QosStats, GroupSnapCreate; Report (the
 * host's view of the group or its snapshot tree, ts_engine_opts.report);
 * and Heal (the control plane's hand on the group's heal, ts_engine_opts.heal). The node side
 * (attach) never does: the consumer node attaches the engine's iSCSI URL
 * itself.
 *
 * Status codes: a request that is not what the contract says (not JSON, an
 * unknown or mistyped field, an id outside backend.h's charset, a count or
 * size no backend could mean) is INVALID_ARGUMENT and reaches no backend op;
 * a request for another group is answered rc -ESTALE; otherwise the reply
 * is OK and carries the backend's own return code ("rc": 0 / -errno /
 * TS_ERR_*), so the controller's CSI layer maps it exactly as it maps an
 * in-process backend's.
 *
 * Two ways to serve it: on a driver's own gRPC server beside CSI and admin
 * (ts_csi_driver_set_engine, like ts_csi_driver_set_admin), or on a server
 * of its own (ts_engine_server_start: the node daemon's engine endpoint,
 * unix socket or TCP).
 *
 * THREAD SAFETY: the service serialises the mutating ops (Create, Find,
 * Remove, Expand, SnapCreate, SnapFind, SnapDelete, CreateFrom, SetQos,
 * GroupSnapCreate) under a lock of its own (never the driver's controller
 * lock: a controller on the same server may be waiting for this very
 * engine), and runs Probe, Capacity, SnapList, SnapDelta and QosStats
 * beside them, which is the concurrency backend.h promises a backend.
 */
#ifndef TS_CSI_ENGINE_H
#define TS_CSI_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "csi/backend/backend.h"
#include "csi/backend/engine_wire.h"

struct ts_csi_driver;
struct ts_engine_server;

struct ts_engine_opts {
	/** The group key this engine serves (1..TS_ENGINE_GROUP_MAX of [A-Za-z0-9-]). */
	const char *group;
	const struct ts_csi_backend_ops *ops; /**< borrowed; outlives the service */
	void *ctx;                            /**< borrowed */
	/** Larger Create/CreateFrom/Expand sizes answer rc -ERANGE; 0 = 64 TiB. */
	uint64_t max_volume_bytes;
	/**
	 * Optional: what the engine's host can tell about it beyond the backend
	 * ops, as JSON text (ts_malloc'd into *\p json) for the `Report`
	 * method: \p what is "group" (the array group as the admin service
	 * shows it), "tree" (the snapshot tree's layers) or "pool" (capacity:
	 * data_bytes, free_bytes, volumes, provisioned_bytes). 0, -EOPNOTSUPP for
	 * a report it does not have, or -errno. Called beside the other
	 * methods (any thread).
	 */
	int (*report)(void *arg, const char *what, char **json);
	void *report_arg;
	/**
	 * Optional: the `Heal` method, the control plane's hand on the group's
	 * heal (delegated heal, docs/kubernetes-store.md "Tasks"): \p run false
	 * only asks (and says a coordinator is there), true lets the host's
	 * maintenance loop heal for a while. The host's answer as JSON text
	 * (ts_malloc'd): pending (a heal is due), state, heal_done_bytes,
	 * heal_total_bytes, heals. 0, -EOPNOTSUPP or -errno. Any thread.
	 */
	int (*heal)(void *arg, bool run, char **json);
	void *heal_arg;
};

/**
 * Serve the engine service on \p d's server (call before
 * ts_csi_server_start; strings copied). Without it the engine methods of a
 * CSI server answer UNAVAILABLE. 0, -EINVAL (bad options, or already set),
 * -ENOMEM.
 */
int ts_csi_driver_set_engine(struct ts_csi_driver *d, const struct ts_engine_opts *o);

/**
 * Serve the engine service alone on \p endpoint: `unix:///abs/path` (a
 * stale socket there is replaced) or a TCP listen address ("host:port";
 * port 0 picks one, see ts_engine_server_port) with \p workers threads
 * (0 = 4). Serving when it returns. 0, -EINVAL, -EADDRINUSE / -EIO (cannot
 * listen), -ENOMEM. Stop with ts_engine_server_stop().
 */
int ts_engine_server_start(const struct ts_engine_opts *o, const char *endpoint, unsigned workers,
			   struct ts_engine_server **out);

/** The TCP port \p s listens on (0 for a unix socket). */
int ts_engine_server_port(const struct ts_engine_server *s);

/**
 * Stop serving (running calls get \p grace_ms, then are cancelled), free
 * everything, remove the socket file. The backend stays the caller's.
 * NULL is a no-op.
 */
void ts_engine_server_stop(struct ts_engine_server *s, unsigned grace_ms);

#endif /* TS_CSI_ENGINE_H */
