/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera csi`: serve Identity, Controller and Node on one unix socket with
 * the file backend and the embedded metadata store, until SIGTERM/SIGINT.
 *
 * Layout of --state-dir: volumes/ (the file backend's images),
 * meta/ (the store's records), node/ (staging records). SIGTERM and SIGINT
 * are blocked in every thread and taken with sigwait() here, so the gRPC
 * threads never see them and shutdown runs on this thread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "csi/csi.h"
#include "dataplane/common/ts_common.h"
#include "programs/programs.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tessera csi --endpoint unix:///path.sock --state-dir DIR --node-id ID [options]\n"
		"  --capacity BYTES       file backend capacity limit (default: free space)\n"
		"  --max-volumes N        NodeGetInfo max_volumes_per_node (default 0 = unlimited)\n"
		"  --default-size BYTES   size for CreateVolume without capacity range (default 1 GiB)\n"
		"  --path-prefix DIR      only stage/publish below DIR (default: anywhere)\n"
		"  --workers N            gRPC worker threads (default 4)\n");
}

int ts_csi_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "endpoint", required_argument, NULL, 'e' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "node-id", required_argument, NULL, 'n' },
		{ "capacity", required_argument, NULL, 'c' },
		{ "max-volumes", required_argument, NULL, 'm' },
		{ "default-size", required_argument, NULL, 'd' },
		{ "path-prefix", required_argument, NULL, 'p' },
		{ "workers", required_argument, NULL, 'w' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *endpoint = NULL, *state = NULL;
	struct ts_csi_config cfg = { .controller = true, .node = true };
	const struct ts_csi_backend_ops *be = NULL;
	const struct ts_csi_store_ops *st = NULL;
	void *be_ctx = NULL, *st_ctx = NULL;
	struct ts_csi_driver *d = NULL;
	struct ts_csi_server *srv = NULL;
	uint64_t capacity = 0, v;
	unsigned workers = 0;
	char path[4096];
	sigset_t sigs;
	int opt, sig, rc = 2;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'e': endpoint = optarg; break;
		case 's': state = optarg; break;
		case 'n': cfg.node_id = optarg; break;
		case 'p': cfg.path_prefix = optarg; break;
		case 'c':
		case 'm':
		case 'd':
		case 'w':
			if (ts_parse_size(optarg, &v)) {
				fprintf(stderr, "tessera csi: bad number '%s'\n", optarg);
				return 2;
			}
			if (opt == 'c')
				capacity = v;
			else if (opt == 'm')
				cfg.max_volumes_per_node = (uint32_t)v;
			else if (opt == 'd')
				cfg.default_volume_bytes = v;
			else
				workers = (unsigned)v;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (!endpoint || !state || !cfg.node_id) {
		usage(stderr);
		return 2;
	}
	if (strncmp(endpoint, "unix:///", 8)) {
		fprintf(stderr, "tessera csi: --endpoint must be unix:///absolute/path.sock\n");
		return 2;
	}
	cfg.state_dir = state;
	if (mkdir(state, 0700) && errno != EEXIST) {
		fprintf(stderr, "tessera csi: cannot create %s: %s\n", state, strerror(errno));
		return 1;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);

	rc = 1;
	snprintf(path, sizeof(path), "%s/volumes", state);
	if ((errno = -ts_csi_backend_file_create(path, capacity, &be, &be_ctx)))
		goto fail_msg;
	snprintf(path, sizeof(path), "%s/meta", state);
	if ((errno = -ts_csi_store_file_open(path, &st, &st_ctx)))
		goto fail_msg;
	if ((errno = -ts_csi_driver_create(&cfg, be, be_ctx, st, st_ctx, &d)))
		goto fail_msg;
	if ((errno = -ts_csi_server_start(d, endpoint, workers, &srv)))
		goto fail_msg;
	printf("ready csi=%s\n", endpoint);
	fflush(stdout);
	sigwait(&sigs, &sig);
	ts_log(TS_LOG_INFO, "csi", "signal %d, shutting down", sig);
	ts_csi_server_stop(srv, 5000);
	rc = 0;
	goto out;
fail_msg:
	fprintf(stderr, "tessera csi: %s\n", ts_strerror(-errno));
out:
	ts_csi_driver_destroy(d);
	if (st)
		st->destroy(st_ctx);
	if (be)
		be->destroy(be_ctx);
	return rc;
}
