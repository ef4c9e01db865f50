/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera node`: argument parsing and signal handling around the node agent
 * (control/node/node.h) over a directory registry or the Kubernetes store,
 * and, with --csi-endpoint, the CSI Node service of this host (a node-only
 * driver whose backend attaches the volume's iSCSI URL, csi/backend/
 * iscsi_attach.h): what kubelet talks to in the chart's DaemonSet. CHAP
 * credentials for peers come from the environment so they never show in `ps`.
 */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csi/backend/iscsi_attach.h"
#include "csi/csi.h"
#include "programs/engine_host.h"
#include "programs/health.h"
#include "programs/programs.h"
#include "control/node/node.h"
#include "control/kube/node_ids.h"
#include "control/kube/registry_kube.h"
#include "control/registry/registry.h"
#include "dataplane/common/ts_common.h"

static void node_usage(FILE *f)
{
	fprintf(f, "usage: tessera node --id N|auto --cluster UUID --addr IP [--port P]\n"
		   "                    (--registry DIR | --kube-namespace NS [--kubeconfig FILE])\n"
		   "                    --disk PATH [--disk PATH...] [--extent-size BYTES] [--heartbeat-ms MS]\n"
		   "                    [--state-dir DIR [--io-timeout-ms MS]]\n"
		   "                    [--csi-endpoint unix:///PATH [--csi-node-id NAME] [--max-volumes N]]\n"
		   "--state-dir: run an engine host (serve array groups the controller hands over).\n"
		   "--csi-endpoint: serve this host's CSI Node service there (kubelet stages and\n"
		   "  publishes volumes through it; state in <state-dir>/csi, so --state-dir is\n"
		   "  needed); --csi-node-id: the name NodeGetInfo reports (default $NODE_NAME,\n"
		   "  else the hostname); --max-volumes: kubelet's per-node limit (default 64).\n"
		   "--kube-namespace: register in Tessera's custom resources in NS and heartbeat\n"
		   "  with a Lease (docs/kubernetes-store.md); --kubeconfig, else in-cluster.\n"
		   "--id auto (with --kube-namespace): this host's id from the ConfigMap\n"
		   "  tessera-node-ids, claimed on first start (the host's name as for\n"
		   "  --csi-node-id).\n"
		   "--health-addr HOST:PORT: /healthz and /readyz (registered) for kubelet.\n"
		   "CHAP credentials for peers: env TESSERA_CHAP_USER, TESSERA_CHAP_SECRET.\n");
}

/* What /readyz answers (--health-addr): registered and serving. */
static atomic_bool g_node_ready;

static int node_ready(void *arg, char *why, size_t len)
{
	(void)arg;
	if (atomic_load(&g_node_ready))
		return 0;
	snprintf(why, len, "starting: opening the disks, registering");
	return 1;
}

/* This host's name: \p given, else $NODE_NAME (the chart sets it), else the hostname. */
static int host_name(const char *given, char *out, size_t len)
{
	const char *env = getenv("NODE_NAME");

	if (given)
		snprintf(out, len, "%s", given);
	else if (env && env[0])
		snprintf(out, len, "%s", env);
	else if (gethostname(out, len - 1))
		return -errno;
	out[len - 1] = '\0';
	return 0;
}

/* The CSI Node service of this host (--csi-endpoint). */
struct node_csi {
	char node_id[256];
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	struct ts_csi_driver *d;
	struct ts_csi_server *srv;
};

static void node_csi_stop(struct node_csi *c)
{
	ts_csi_server_stop(c->srv, 5000);
	ts_csi_driver_destroy(c->d);
	if (c->be)
		c->be->destroy(c->be_ctx);
	*c = (struct node_csi){ 0 };
}

static int node_csi_start(struct node_csi *c, const char *endpoint, const char *node_id,
			  const char *state, uint32_t max_volumes)
{
	struct ts_csi_config cfg = { .node = true, .max_volumes_per_node = max_volumes };
	char dir[4096];
	int rc = host_name(node_id, c->node_id, sizeof(c->node_id));

	if (rc)
		return rc;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/csi", state) >= sizeof(dir))
		return -ENAMETOOLONG;
	rc = ts_mkdir_p(dir);
	if (rc == 0)
		rc = ts_csi_iscsi_attach_backend(dir, &c->be, &c->be_ctx);
	cfg.node_id = c->node_id;
	cfg.state_dir = dir;
	if (rc == 0)
		rc = ts_csi_driver_create(&cfg, c->be, c->be_ctx, NULL, NULL, &c->d);
	if (rc == 0)
		rc = ts_csi_server_start(c->d, endpoint, 0, &c->srv);
	if (rc) {
		ts_log(TS_LOG_ERROR, "node", "CSI Node service on %s: %s", endpoint, ts_strerror(rc));
		node_csi_stop(c);
	}
	return rc;
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
		{ "csi-endpoint", required_argument, NULL, 'E' },
		{ "csi-node-id", required_argument, NULL, 'N' },
		{ "max-volumes", required_argument, NULL, 'M' },
		{ "health-addr", required_argument, NULL, 'Z' },
		{ NULL, 0, NULL, 0 },
	};
	const char *disks[16];
	struct ts_node_opts o = { 0 };
	const char *regdir = NULL, *state = NULL, *kube_ns = NULL, *kubeconfig = NULL;
	struct ts_engine_host *host = NULL;
	uint32_t io_timeout = 0, max_volumes = 64;
	bool auto_id = false;
	char hostname[256];
	const char *csi_ep = NULL, *csi_node = NULL, *health_addr = NULL;
	struct ts_health *health = NULL;
	struct node_csi csi = { 0 };
	struct ts_registry *reg = NULL;
	struct ts_node *n = NULL;
	sigset_t set;
	int c, sig, rc;

	while ((c = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		switch (c) {
		case 'i':
			auto_id = !strcmp(optarg, "auto");
			o.node_id = auto_id ? 0 : (uint32_t)strtoul(optarg, NULL, 10);
			break;
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
		case 'E': csi_ep = optarg; break;
		case 'N': csi_node = optarg; break;
		case 'M': max_volumes = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'Z': health_addr = optarg; break;
		case 'H': node_usage(stdout); return 0;
		default: node_usage(stderr); return 2;
		}
	}
	o.disks = disks;
	if (kube_ns && !o.heartbeat_ms)
		o.heartbeat_ms = 2000; /* each heartbeat renews a Lease: an API write */
	if (auto_id && !kube_ns) {
		fprintf(stderr, "tessera node: --id auto needs --kube-namespace (the ids are kept "
				"there)\n");
		return 2;
	}
	if (auto_id) {
		int r = host_name(csi_node, hostname, sizeof(hostname));

		if (r == 0)
			r = ts_node_id_claim(kubeconfig, kube_ns, hostname, &o.node_id);
		if (r) {
			fprintf(stderr, "tessera node: an id for host '%s' in %s/%s: %s\n", hostname,
				kube_ns, TS_NODE_IDS_CONFIGMAP, ts_strerror(r));
			return 1;
		}
		ts_log(TS_LOG_INFO, "node", "host %s is node %u (%s/%s)", hostname, o.node_id,
		       kube_ns, TS_NODE_IDS_CONFIGMAP);
	}
	o.chap_user = getenv("TESSERA_CHAP_USER");
	o.chap_secret = getenv("TESSERA_CHAP_SECRET");
	static const uint8_t zero[16];
	if (!o.node_id || !o.addr || !regdir == !kube_ns || (kubeconfig && !kube_ns) || !o.ndisks ||
	    !o.chap_user || !o.chap_secret || !memcmp(o.cluster_uuid, zero, 16)) {
		node_usage(stderr);
		return 2;
	}
	if ((csi_ep || csi_node) && !state) {
		fprintf(stderr, "tessera node: --csi-endpoint needs --state-dir (its staging "
				"records)\n");
		return 2;
	}
	/* SIGPIPE: a peer that vanishes must not kill the node. TERM/INT: sigwait below. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (health_addr) {
		rc = ts_health_start(health_addr, node_ready, NULL, &health);
		if (rc) {
			fprintf(stderr, "tessera node: --health-addr %s: %s\n", health_addr,
				ts_strerror(rc));
			return rc == -EINVAL ? 2 : 1;
		}
	}
	rc = kube_ns ? ts_registry_kube_open(kubeconfig, kube_ns, &reg)
		     : ts_registry_dir_open(regdir, &reg);
	o.reg = reg;
	if (rc == 0 && state) {
		struct ts_engine_host_opts ho = { .reg = reg, .node_id = o.node_id, .addr = o.addr,
						  .state_dir = state, .chap_user = o.chap_user,
						  .chap_secret = o.chap_secret,
						  .io_timeout_ms = io_timeout,
						  /* the heal is the control plane's task there */
						  .delegate_heal = kube_ns != NULL };

		rc = ts_mkdir_p(state);
		if (rc == 0)
			rc = ts_engine_host_create(&ho, &host);
		o.engine = ts_engine_host_ops();
		o.engine_ctx = host;
	}
	if (rc == 0)
		rc = ts_node_start(&o, &n);
	if (rc == 0 && csi_ep)
		rc = node_csi_start(&csi, csi_ep, csi_node, state, max_volumes);
	if (rc) {
		fprintf(stderr, "tessera node: %s\n", ts_strerror(rc));
		ts_node_stop(n);
		ts_engine_host_destroy(host);
		ts_registry_close(reg);
		ts_health_stop(health);
		return 1;
	}
	if (csi_ep)
		printf("node=%u ready csi=%s csi_node_id=%s\n", o.node_id, csi_ep, csi.node_id);
	else
		printf("node=%u ready\n", o.node_id);
	fflush(stdout);
	atomic_store(&g_node_ready, true);
	if (sigwait(&set, &sig) == 0)
		ts_log(TS_LOG_INFO, "node", "stopping node=%u signal=%d", o.node_id, sig);
	node_csi_stop(&csi); /* attached volumes stay attached (kubelet unstages them) */
	ts_node_stop(n);     /* releases the engines */
	ts_engine_host_destroy(host);
	ts_registry_close(reg);
	ts_health_stop(health);
	return 0;
}
