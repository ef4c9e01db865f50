/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A whole cluster in one process, for the suites that drive CSI over gRPC:
 * the production assembly of `tessera dev` (programs/dev.h) — three node
 * daemons, each with two sparse disk files and its own CHAP iSCSI target on
 * 127.0.1.<N>, a 4+2 array group over them through user-mode iSCSI with
 * replica journals and maintenance, and the serving stack (thin volumes,
 * Tessera's iSCSI target on 127.0.0.1 at a free port, CSI + admin services)
 * — and a gRPC client channel to its socket. Nothing is a test double.
 */
#ifndef TS_UNIT_SUPPORT_CLUSTER_FIXTURE_H
#define TS_UNIT_SUPPORT_CLUSTER_FIXTURE_H

#include "unit/support/csi/grpc_client.h"

struct ts_dev;
struct ts_vpool;
struct ts_csi_driver;

struct dpenv {
	struct ts_dev *dev;
	struct ts_vpool *vp;      /* the stack's volume pool: read data straight from it */
	struct ts_csi_driver *d;  /* the stack's CSI driver */
	struct ts_client *ch;     /* to the CSI socket */
	char dir[256];            /* scratch: the cluster's state in dir/state, paths for tests */
	char portal[32], endpoint[300];
};

/*
 * A port free on 127.0.0.1 and on the nodes' 127.0.1.1-3 (an in-process
 * cluster's nodes listen on its portal's port). Asserts when none is found.
 */
unsigned cluster_free_port(void);

/* Build everything (asserts on failure); \p tag names the scratch dir. */
void dpenv_init(struct dpenv *d, const char *tag);
/* Tear down in reverse and remove the scratch dir. */
void dpenv_fini(struct dpenv *d);

#endif
