/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What the engine suites share (unit/csi/engine_test.c without root,
 * unit/csi/engine_dataplane_test.c over the in-process cluster): a small
 * real engine (a RAM-backed thin pool, its own iSCSI target on a free
 * loopback port, the data-plane backend over them), a router over a fixed
 * table of engines, and a CSI controller over the remote backend.
 */
#ifndef TS_UNIT_SUPPORT_CSI_ENGINE_ENV_H
#define TS_UNIT_SUPPORT_CSI_ENGINE_ENV_H

#include <stdint.h>

#include "csi/backend/backend_remote.h"
#include "csi/csi.h"
#include "csi/engine.h"

struct ts_member;
struct tmem;
struct ts_vpool;
struct ts_iscsi_server;

/* A data-plane backend on a RAM pool of \p bytes, served by its own target. */
struct ram_engine {
	struct ts_member *m;
	struct tmem *ram;
	struct ts_vpool *vp;
	struct ts_iscsi_server *isrv;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
};
void ram_engine_init(struct ram_engine *e, const char *state_dir, uint64_t bytes);
void ram_engine_fini(struct ram_engine *e);

/* A router over a table: pick answers engine[pick] (or pick_rc when set). */
struct trouter {
	struct ts_remote_engine e[4];
	size_t n;
	size_t pick;
	int pick_rc;
	unsigned locates; /* calls of locate, for the "no extra lookup" checks */
};
extern const struct ts_remote_router_ops trouter_ops;
void trouter_add(struct trouter *r, const char *group, const char *endpoint);

/* A controller (and, when \p node, node) driver over the remote backend behind \p r. */
struct remote_ctl {
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	const struct ts_csi_store_ops *st;
	void *st_ctx;
	struct ts_csi_driver *d;
	struct ts_csi_server *srv; /* on <dir>/ctl.sock when started with a socket */
};
/* \p dir: state (store in dir/meta, attach mounts); \p sock NULL: no gRPC server. */
void remote_ctl_init(struct remote_ctl *c, struct trouter *r, const char *dir, bool node,
		     const char *sock);
void remote_ctl_fini(struct remote_ctl *c);

#endif
