/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera node`: argument parsing and signal handling around the node agent
 * (control/node/node.h) over a directory registry or the Kubernetes store.
 * CHAP credentials for peers come from the environment so they never show in `ps`.
 */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "programs/engine_host.h"
#include "programs/programs.h"
#include "control/node/node.h"
#include "control/kube/registry_kube.h"
#include "control/registry/registry.h"
#include "dataplane/common/ts_common.h"

static void node_usage(FILE *f)
{
	fprintf(f, "usage: tessera node --id N --cluster UUID --addr IP [--port P]\n"
		   "                    (--registry DIR | --kube-namespace NS [--kubeconfig FILE])\n"
		   "                    --disk PATH [--disk PATH...] [--extent-size BYTES] [--heartbeat-ms MS]\n"
		   "                    [--state-dir DIR [--io-timeout-ms MS]]\n"
		   "--state-dir: run an engine host (serve array groups the controller hands over).\n"
		   "--kube-namespace: register in Tessera's custom resources in NS and heartbeat\n"
		   "  with a Lease (docs/kubernetes-store.md); --kubeconfig, else in-cluster.\n"
		   "CHAP credentials for peers: env TESSERA_CHAP_USER, TESSERA_CHAP_SECRET.\n");
}

int ts_node_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "id", required_argument, NULL, 'i' },      { "addr", required_argument, NULL, 'a' },
		{ "port", required_argument, NULL, 'p' },    { "registry", required_argument, NULL, 'r' },
		{ "disk", required_argument, NULL, 'd' },    { "cluster", required_argument, NULL, 'c' },
		{ "extent-size", required_argument, NULL, 'e' },
		{ "heartbeat-ms", required_argument, NULL, 'h' }, { "help", no_argument, NULL, 'H' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "io-timeout-ms", required_argument, NULL, 't' },
		{ "kube-namespace", required_argument, NULL, 'K' },
		{ "kubeconfig", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	const char *disks[16];
	struct ts_node_opts o = { 0 };
	const char *regdir = NULL, *state = NULL, *kube_ns = NULL, *kubeconfig = NULL;
	struct ts_engine_host *host = NULL;
	uint32_t io_timeout = 0;
	struct ts_registry *reg = NULL;
	struct ts_node *n = NULL;
	sigset_t set;
	int c, sig, rc;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'i': o.node_id = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'a': o.addr = optarg; break;
		case 'p': o.port = (uint16_t)strtoul(optarg, NULL, 10); break;
		case 'r': regdir = optarg; break;
		case 'd':
			if (o.ndisks == 16) {
				fprintf(stderr, "tessera node: at most 16 disks\n");
				return 2;
			}
			disks[o.ndisks++] = optarg;
			break;
		case 'c':
			if (ts_uuid_parse(optarg, o.cluster_uuid)) {
				fprintf(stderr, "tessera node: bad cluster uuid\n");
				return 2;
			}
			break;
		case 'e': o.extent_size = strtoull(optarg, NULL, 0); break;
		case 'h': o.heartbeat_ms = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 's': state = optarg; break;
		case 't': io_timeout = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'K': kube_ns = optarg; break;
		case 'C': kubeconfig = optarg; break;
		case 'H': node_usage(stdout); return 0;
		default: node_usage(stderr); return 2;
		}
	}
	o.disks = disks;
	if (kube_ns && !o.heartbeat_ms)
		o.heartbeat_ms = 2000; /* each heartbeat renews a Lease: an API write */
	o.chap_user = getenv("TESSERA_CHAP_USER");
	o.chap_secret = getenv("TESSERA_CHAP_SECRET");
	static const uint8_t zero[16];
	if (!o.node_id || !o.addr || !regdir == !kube_ns || (kubeconfig && !kube_ns) || !o.ndisks ||
	    !o.chap_user || !o.chap_secret || !memcmp(o.cluster_uuid, zero, 16)) {
		node_usage(stderr);
		return 2;
	}
	/* SIGPIPE: a peer that vanishes must not kill the node. TERM/INT: sigwait below. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	rc = kube_ns ? ts_registry_kube_open(kubeconfig, kube_ns, &reg)
		     : ts_registry_dir_open(regdir, &reg);
	o.reg = reg;
	if (rc == 0 && state) {
		struct ts_engine_host_opts ho = { .reg = reg, .node_id = o.node_id, .addr = o.addr,
						  .state_dir = state, .chap_user = o.chap_user,
						  .chap_secret = o.chap_secret,
						  .io_timeout_ms = io_timeout };

		rc = ts_mkdir_p(state);
		if (rc == 0)
			rc = ts_engine_host_create(&ho, &host);
		o.engine = ts_engine_host_ops();
		o.engine_ctx = host;
	}
	if (rc == 0)
		rc = ts_node_start(&o, &n);
	if (rc) {
		fprintf(stderr, "tessera node: %s\n", ts_strerror(rc));
		ts_engine_host_destroy(host);
		ts_registry_close(reg);
		return 1;
	}
	printf("node=%u ready\n", o.node_id);
	fflush(stdout);
	if (sigwait(&set, &sig) == 0)
		ts_log(TS_LOG_INFO, "node", "stopping node=%u signal=%d", o.node_id, sig);
	ts_node_stop(n); /* releases the engines */
	ts_engine_host_destroy(host);
	ts_registry_close(reg);
	return 0;
}
