/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `tessera` program: CLI and daemons in one binary, dispatched on the
 * first argument.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "programs/programs.h"

#ifndef TS_VERSION
#define TS_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
	fprintf(f, "usage: tessera <command> [options]\n"
		   "commands:\n"
		   "  volume create|list|show|delete|tree, node list, agrp list, status\n"
		   "               the CLI (tessera --help for its options)\n"
		   "  dev          run the embedded default: controller + data-plane nodes on\n"
		   "               loopback with file-backed disks (CSI socket + iSCSI portal)\n"
		   "  csi          serve the CSI driver (file backend) on a unix socket\n"
		   "  task ls      the control plane's tasks (owner, progress) in a namespace\n"
		   "  node         run one host's data plane (disks, iSCSI exports, registration)\n"
		   "  controller   serve the volumes of a multi-node array group (CSI socket +\n"
		   "               iSCSI portal) assembled from the registered nodes\n"
		   "  --version    print the version\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("tessera %s\n", TS_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "dev"))
		return ts_dev_main(argc - 1, argv + 1);
	/* `tessera node list` is the CLI; `tessera node --id ...` the daemon. */
	if (!strcmp(argv[1], "node") &&
	    !(argc > 2 && (!strcmp(argv[2], "list") || !strcmp(argv[2], "ls"))))
		return ts_node_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "controller"))
		return ts_controller_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "csi"))
		return ts_csi_main(argc - 1, argv + 1);
	if (!strcmp(argv[1], "task"))
		return ts_task_main(argc - 1, argv + 1);
	/* Everything else (including --help) is the CLI, which explains itself. */
	return ts_cli_main(argc, argv);
}
