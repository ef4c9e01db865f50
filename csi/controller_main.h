/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * `tessera controller`: serves the volumes of one multi-node array group
 * (dataplane/node/cluster.h) through the iSCSI target, CSI and the admin
 * service (see controller_main.c and docs/multinode.md).
 */
#ifndef TS_CSI_CONTROLLER_MAIN_H
#define TS_CSI_CONTROLLER_MAIN_H

/**
 * Run `tessera controller` (argv[0] is "controller") until SIGINT/SIGTERM.
 * CHAP credentials for the nodes come from TESSERA_CHAP_USER and
 * TESSERA_CHAP_SECRET. Returns the exit status (0, 1 failure, 2 usage).
 */
int ts_controller_main(int argc, char **argv);

#endif /* TS_CSI_CONTROLLER_MAIN_H */
