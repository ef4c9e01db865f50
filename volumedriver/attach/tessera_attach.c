/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tessera-attach: a debug program that attaches one iSCSI LUN through the
 * user-space path, prints the device path, and detaches on SIGTERM/SIGINT.
 *
 *   tessera-attach [-u chap_user -p chap_secret] [-U target_user -P target_secret]
 *                  [-r] [-m mount_parent] [-i initiator_iqn] [-t io_timeout_s] URL
 *
 * Output (stdout, one line each): "device=/dev/loopN file=<fuse file>
 * size=<bytes> block_size=<bytes>" once attached, and "detached" at the end.
 * If the device is still in use at SIGTERM it retries for 10 s, then exits 1
 * with everything still attached (the loop device autoclears when freed).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach.h"

static void usage(void)
{
	fprintf(stderr,
		"usage: tessera-attach [-u user -p secret] [-U target_user -P target_secret] [-r]\n"
		"                      [-m mount_parent] [-i initiator_iqn] [-t io_timeout_s] URL\n"
		"URL: iscsi://[user[%%secret]@]host[:port]/target-iqn/lun\n");
}

int main(int argc, char **argv)
{
	struct ts_attach_opts o = { 0 };
	struct ts_attach *a;
	sigset_t set;
	int c, rc, sig;

	while ((c = getopt(argc, argv, "u:p:U:P:rm:i:t:h")) != -1) {
		switch (c) {
		case 'u': o.chap_user = optarg; break;
		case 'p': o.chap_secret = optarg; break;
		case 'U': o.target_user = optarg; break;
		case 'P': o.target_secret = optarg; break;
		case 'r': o.read_only = true; break;
		case 'm': o.mount_parent = optarg; break;
		case 'i': o.initiator_name = optarg; break;
		case 't': o.io_timeout_s = atoi(optarg); break;
		default: usage(); return 2;
		}
	}
	if (optind != argc - 1) {
		usage();
		return 2;
	}
	o.url = argv[optind];
	/* Block the signals before any thread starts so only sigwait sees them. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	rc = ts_attach_open(&o, &a);
	if (rc) {
		fprintf(stderr, "tessera-attach: %s\n", ts_strerror(rc));
		return 1;
	}
	printf("device=%s file=%s size=%llu block_size=%u\n", ts_attach_device_path(a),
	       ts_attach_file_path(a), (unsigned long long)ts_attach_size(a), ts_attach_block_size(a));
	fflush(stdout);
	if (sigwait(&set, &sig))
		sig = SIGTERM;
	for (int i = 0; i < 100; i++) {
		rc = ts_attach_close(a);
		if (rc != -EBUSY)
			break;
		usleep(100 * 1000);
	}
	if (rc) {
		fprintf(stderr, "tessera-attach: detach: %s\n", ts_strerror(rc));
		return 1;
	}
	printf("detached\n");
	return 0;
}
