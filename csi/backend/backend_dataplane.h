/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The data-plane CSI backend: volumes on the erasure-coded pool, served by
 * Tessera's iSCSI target, attached on the node through the user-space
 * initiator. See backend_dataplane.c for the design.
 */
#ifndef TS_CSI_BACKEND_DATAPLANE_H
#define TS_CSI_BACKEND_DATAPLANE_H

#include <stdint.h>

#include "csi/backend/backend.h"

struct ts_vpool;
struct ts_iscsi_server;

struct ts_csi_dataplane_opts {
	struct ts_vpool *vpool;           /**< borrowed; outlives the backend */
	struct ts_iscsi_server *iscsi;    /**< borrowed; outlives the backend */
	const char *portal;               /**< "host:port" initiators use */
	const char *state_dir;            /**< PR state (pr/) and attach mounts (attach/) */
	uint8_t group_uuid[16];           /**< the pool's identity: stable IQNs */
	unsigned k, m;                    /**< the pool's erasure code */
	int (*probe)(void *arg);          /**< optional readiness check */
	void *probe_arg;
};

/**
 * Create the backend and export every volume the pool already holds.
 * Returns 0 with \p ops / \p ctx (free with ops->destroy(ctx), which
 * detaches and unexports everything), -EINVAL, -ENOMEM, or an export error.
 */
int ts_csi_backend_dataplane_create(const struct ts_csi_dataplane_opts *o,
				    const struct ts_csi_backend_ops **ops, void **ctx);

#endif /* TS_CSI_BACKEND_DATAPLANE_H */
