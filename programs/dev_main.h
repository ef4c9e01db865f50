/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * `tessera dev`: controller and data-plane nodes in one process on loopback
 * with file-backed disks (see dev.c).
 */
#ifndef TS_CSI_DEV_H
#define TS_CSI_DEV_H

/** Run `tessera dev` (argv[0] is "dev") until SIGINT/SIGTERM. Exit status. */
int ts_dev_main(int argc, char **argv);

#endif /* TS_CSI_DEV_H */
