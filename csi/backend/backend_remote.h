/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The remote backend: a struct ts_csi_backend_ops whose controller side
 * calls engine services (csi/engine.h) over gRPC and whose node side is the
 * local iSCSI attach every iSCSI-served backend does (iscsi_attach.h). A
 * controller that carries no volume data runs its CSI Controller service
 * over it; docs/engines.md is the design.
 *
 * Routing. Each array group with its volumes is served by one engine at a
 * time; the owner of that mapping (the controller's placement, later the
 * fenced ownership records) supplies a router. A group has a key
 * (1..TS_ENGINE_GROUP_MAX bytes of [A-Za-z0-9-], stable for the group's
 * life, e.g. hex of its uuid), and the ids this backend hands the CSI layer
 * are "<group>.<engine id>": locating an existing volume or snapshot is
 * parsing its id, then asking the router for the group's current engine;
 * no table of volumes is kept anywhere but in the engines. Engine ids may
 * then be at most TS_CSI_ID_MAX - len(group) - 1 bytes (the data-plane
 * backend's are 19).
 *
 * Idempotency by name across a controller restart: before a new volume is
 * placed, every engine is asked whether it already has that name (Find);
 * one that has it gets the create (a retry after a crash between the
 * engine's create and the CSI store's write lands where the first attempt
 * did). An engine that cannot be asked fails the create with -EAGAIN
 * rather than risk a second volume of the same name. Snapshot names are
 * kept unique across engines the same way (SnapFind on the others).
 *
 * Errors: the engine's rc is returned as is (so the CSI layer maps it as
 * for an in-process backend). A transport failure (nothing listening,
 * connection lost, deadline, an engine that says it no longer serves the
 * group) is -EAGAIN (UNAVAILABLE), with a log line naming group, endpoint
 * and method; a malformed reply is -EPROTO. Volumes of a group snapshot on
 * different engines are -EXDEV (FAILED_PRECONDITION).
 *
 * THREAD SAFETY: every op may run on any thread at once; each call takes a
 * client of its endpoint from a small pool (clients are not shared by two
 * calls at a time). The router's ops are called from those threads too.
 */
#ifndef TS_CSI_BACKEND_REMOTE_H
#define TS_CSI_BACKEND_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "csi/backend/backend.h"
#include "csi/backend/engine_wire.h"

#define TS_REMOTE_ENDPOINT_MAX 255
/** Most engines a router may list. */
#define TS_REMOTE_MAX_ENGINES 64

/** One engine: the group it serves and where (a gRPC target: unix:///path, host:port). */
struct ts_remote_engine {
	char group[TS_ENGINE_GROUP_MAX + 1];
	char endpoint[TS_REMOTE_ENDPOINT_MAX + 1];
};

struct ts_remote_router_ops {
	/**
	 * The engine a new volume of \p spec (not found on any engine) goes
	 * to. 0 and *\p out; -ENOSPC when none fits; -EAGAIN when none is
	 * reachable now.
	 */
	int (*pick)(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_remote_engine *out);
	/**
	 * The engine serving \p group now. 0 and *\p out; -ENOENT when no
	 * such group exists (its volumes cannot exist either); -EAGAIN when it
	 * has no owner at the moment (failover).
	 */
	int (*locate)(void *ctx, const char *group, struct ts_remote_engine *out);
	/** Every group with its engine (any order, distinct groups): at most \p max, *\p n. */
	int (*list)(void *ctx, struct ts_remote_engine *out, size_t max, size_t *n);
};

struct ts_csi_remote_opts {
	const struct ts_remote_router_ops *router; /**< required, borrowed */
	void *router_ctx;
	const char *state_dir;   /**< required: attach mounts go to <state_dir>/attach */
	int timeout_ms;          /**< deadline of one engine call; 0 = 30 s */
	int group_timeout_ms;    /**< of GroupSnapCreate (holds IO still); 0 = 60 s */
	bool multi_node_writers; /**< what the engines' backend promises (backend.h) */
};

/**
 * Create the backend. Nothing is contacted yet. 0 and \p ops / \p ctx (free
 * with ops->destroy(ctx): detaches what it attached, closes its clients);
 * -EINVAL, -ENOMEM.
 */
int ts_csi_backend_remote_create(const struct ts_csi_remote_opts *o,
				 const struct ts_csi_backend_ops **ops, void **ctx);

/**
 * Split a remote id "<group>.<engine id>": the group key into \p group and
 * a pointer into \p id at the engine's id. 0 or -EINVAL (not of that form).
 */
int ts_csi_remote_id_split(const char *id, char group[TS_ENGINE_GROUP_MAX + 1],
			   const char **inner);

#endif /* TS_CSI_BACKEND_REMOTE_H */
