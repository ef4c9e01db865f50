/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The whole stack behind CSI in one process, for the suites that drive it
 * over gRPC: a 4+2 pool on three simulated nodes (96 MiB disk files), thin
 * volumes on it, Tessera's iSCSI target on a free loopback port, the
 * data-plane backend, a driver (tenv) and its gRPC server + a client channel.
 */
#ifndef TS_UNIT_CSI_DP_FIXTURE_H
#define TS_UNIT_CSI_DP_FIXTURE_H

#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"

struct dpenv {
	struct tenv e;                 /* driver, scratch dir */
	struct ts_pool *pool;
	struct ts_vpool *vp;
	struct ts_iscsi_server *isrv;
	struct ts_csi_server *srv;
	struct ts_client *ch;
	char dir[300];                 /* the pool's state dir */
};

/* Build everything (asserts on failure); \p tag names the scratch dir. */
void dpenv_init(struct dpenv *d, const char *tag);
/* Tear down in reverse and remove the scratch dirs. */
void dpenv_fini(struct dpenv *d);

#endif
