/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The subcommands of the `tessera` binary (programs/tessera.c dispatches on
 * argv[1]). Each takes the arguments after `tessera` (argv[0] is the
 * subcommand's name), runs to completion or until SIGTERM/SIGINT, and
 * returns the process exit status: 0, 1 on failure, 2 on a usage error.
 * Everything here is argument parsing and wiring; the work is done by the
 * libraries below (docs/architecture.md).
 */
#ifndef TS_PROGRAMS_H
#define TS_PROGRAMS_H

/** `tessera dev`: controller and data-plane nodes in one process on loopback
 *  with file-backed disks (dev_main.c). */
int ts_dev_main(int argc, char **argv);

/** `tessera controller`: serve the volumes of a multi-node array group
 *  (controller_main.c). CHAP credentials for the nodes come from
 *  TESSERA_CHAP_USER and TESSERA_CHAP_SECRET. */
int ts_controller_main(int argc, char **argv);

/** `tessera csi`: Identity+Controller+Node with the file backend
 *  (csi_main.c). */
int ts_csi_main(int argc, char **argv);

/** `tessera task ls`: the control plane's tasks (task_main.c). */
int ts_task_main(int argc, char **argv);

/** `tessera node`: one host's data plane (node_main.c; docs/multinode.md).
 *  CHAP credentials come from TESSERA_CHAP_USER and TESSERA_CHAP_SECRET. */
int ts_node_main(int argc, char **argv);

#endif /* TS_PROGRAMS_H */
