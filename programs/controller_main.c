/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera controller`: the daemon that serves multi-node volumes.
 *
 * Node daemons (`tessera node`, control/node/node.h) export their member
 * vdisks over iSCSI and register in a registry; this process assembles the
 * array group across them (ts_cluster_open, creating the group from the live
 * nodes on first use), and runs on the group's block device
 * (ts_cluster_device) the same serving stack as `tessera dev` (programs/stack.h):
 * thin volume pool, iSCSI target for the volumes, CSI services and the admin
 * service the `tessera` CLI talks to.
 *
 * Three kinds of thread touch the cluster:
 *  - this one: open, then close at the end (no IO in flight by then);
 *  - the maintenance thread: ts_cluster_tick() every 500 ms (members of
 *    nodes that came back rejoin and resync; heal once all are live), the
 *    only caller of tick as cluster.h asks, plus a log line whenever the
 *    group's state changes;
 *  - IO (iSCSI loops) and the admin/probe callbacks (gRPC workers), which
 *    only call ts_cluster_device IO and ts_cluster_status.
 * No lock of ours: the stop flag and its condition variable belong to the
 * maintenance thread's loop.
 *
 * Startup waits for the group: until enough nodes are registered and live
 * (first use) or at least k members answer (later starts), ts_cluster_open
 * is retried every second and a line says why; SIGTERM/SIGINT still stop it.
 * Startup order is registry, cluster, maintenance, stack; shutdown the
 * reverse. Restarting on the same --state-dir and registry reassembles the
 * same group and serves the same volumes under the same IQNs (they derive
 * from the group uuid and the volume ids, which live on the group).
 */
#include "programs/controller_main.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csi/admin.h"
#include "programs/maint.h"
#include "programs/remote_ctl.h"
#include "programs/stack.h"
#include "dataplane/common/ts_common.h"
#include "programs/programs.h"
#include "dataplane/ldm/ldm.h"
#include "control/cluster/cluster.h"
#include "control/kube/leader.h"
#include "programs/health.h"
#include "programs/task_runner.h"
#include "control/kube/registry_kube.h"
#include "control/registry/registry.h"
#include "csi/store/store_kube.h"

#define TICK_MS 500
#define HEARTBEAT_MAX_AGE_MS 3000 /* the cluster's default: a node is up within it */
/* With the Kubernetes store a node is up while its Lease is (registry_kube.h: 10 s). */
#define KUBE_HEARTBEAT_MAX_AGE_MS 10000
#define OPEN_RETRY_MS 1000

struct ctl {
	const struct ts_controller_cfg *cfg;
	struct ts_registry *reg;
	struct ts_cluster *cl;
	struct ts_maint *maint;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: TESSERA_CHAP_USER=U TESSERA_CHAP_SECRET=S tessera controller [options]\n"
		"  --registry DIR        the nodes' registry (or --kube-namespace below)\n"
		"  --group UUID          the array group to serve (required)\n"
		"  --state-dir DIR       controller state: CSI records, pool marker (required)\n"
		"  --portal HOST:PORT    iSCSI portal for the volumes (required)\n"
		"  --csi-endpoint EP     CSI + admin socket (default unix://<state-dir>/csi.sock)\n"
		"  --ec K+M              erasure code when the group is created (default 4+2)\n"
		"  --member-size BYTES   bytes per member vdisk when the group is created\n"
		"                        (required then, ignored later)\n"
		"  --journal-size BYTES  replica journal per node when the group is created\n"
		"                        (default member-size / 4)\n"
		"  --io-timeout-ms MS    IO timeout towards the nodes (default 2000)\n"
		"  --node-id ID          CSI node id (default tessera-controller)\n"
		"  --engines WHERE       controller (default): serve the volumes here; nodes: hand\n"
		"                        the group to a node's engine (tessera node --state-dir)\n"
		"                        and carry no volume data (docs/scale-out.md)\n"
		"  --owner N             with --engines nodes: the node to serve first (default:\n"
		"                        the lowest live node id); on its loss, the next live one\n"
		"  --kube-namespace NS   with --engines nodes, instead of --registry: keep nodes,\n"
		"                        groups and CSI records in Tessera's custom resources in\n"
		"                        namespace NS (docs/kubernetes-store.md)\n"
		"  --kubeconfig FILE     the cluster to use (default: in-cluster service account)\n"
		"  --leader-lease NAME   with --kube-namespace: serve only while holding the Lease\n"
		"                        NAME (active/passive replicas); a replica that loses it\n"
		"                        exits (status 3) so it restarts as the passive one\n"
		"  --identity ID         this replica's Lease holder identity (default: $POD_NAME,\n"
		"                        else the hostname, and _<12 random hex digits>: one per\n"
		"                        process, so a restarted replica waits like any other)\n"
		"  --lease-duration-s S  the Lease's duration (default 10; the renew deadline is\n"
		"                        2/3 of it): how long a dead active blocks the passive\n"
		"  --health-addr H:P     serve /healthz (alive) and /readyz (passive and waiting,\n"
		"                        or active, serving and holding the Lease) over HTTP\n"
		"TESSERA_CHAP_USER/SECRET: the credential the nodes' targets require.\n"
		"Exactly one of --registry and --kube-namespace.\n");
}

/* ---- the admin service's view: nodes from the registry, the group from the cluster ---- */

static int ctl_status(void *arg, struct ts_admin_status *out)
{
	struct ctl *c = arg;
	struct ts_admin_agrp *g = &out->agrps[0];
	struct ts_cluster_status st;
	int rc = ts_maint_node_view(c->reg, HEARTBEAT_MAX_AGE_MS, c->cfg->node_detail,
				    c->cfg->node_detail_arg, out);

	if (rc < 0)
		return rc;
	ts_cluster_status(c->cl, &st);
	out->nagrps = 1;
	ts_maint_agrp_view(&st, g);
	return 0;
}

/* CSI Probe: ready while at least k members serve. */
static int ctl_probe(void *arg)
{
	struct ctl *c = arg;
	struct ts_cluster_status st;

	ts_cluster_status(c->cl, &st);
	return (unsigned)__builtin_popcountll(st.live_mask) >= st.k ? 0 : -EAGAIN;
}

/* ---- startup ---- */

static bool open_retryable(int rc)
{
	return rc == TS_ERR_NO_SPACE || rc == TS_ERR_DEGRADED || rc == -ETIMEDOUT ||
	       rc == -EAGAIN || rc == -ECONNREFUSED || rc == -EHOSTUNREACH || rc == -ENOENT ||
	       rc == TS_ERR_MEMBER_FAILED;
}

/* Registered nodes whose heartbeat is fresh. */
static int live_node_count(struct ts_registry *reg, unsigned *live)
{
	struct ts_reg_node *nodes = ts_calloc(TS_REG_MAX_NODES, sizeof(*nodes));
	uint64_t now = ts_registry_now_ms();
	unsigned n = 0;
	int rc;

	if (!nodes)
		return -ENOMEM;
	rc = ts_registry_list_nodes(reg, nodes, TS_REG_MAX_NODES, &n);
	*live = 0;
	for (unsigned i = 0; rc == 0 && i < n; i++)
		*live += nodes[i].heartbeat_ms + HEARTBEAT_MAX_AGE_MS >= now;
	ts_free(nodes);
	return rc;
}

/*
 * Open the cluster, retrying while nodes are missing: when the group is to
 * be created, first until ceil((k+m)/m) nodes are live (at most m fragments
 * per node), then while the open fails for a reason time can fix. 0, 1 when
 * a signal asked to stop first, or the error.
 */
static int open_cluster(struct ctl *c, const struct ts_cluster_opts *co, bool create,
			const sigset_t *sigs)
{
	const struct timespec wait = { OPEN_RETRY_MS / 1000, (OPEN_RETRY_MS % 1000) * 1000000L };
	unsigned need = (co->k + co->m + co->m - 1) / co->m, live, last_live = ~0u;
	int rc, last = 0;

	for (;;) {
		if (create) {
			rc = live_node_count(c->reg, &live);
			if (rc < 0)
				return rc;
			if (live < need) {
				if (live != last_live)
					ts_log(TS_LOG_INFO, "controller",
					       "waiting for nodes to create the group: live=%u need=%u",
					       live, need);
				last_live = live;
				if (sigtimedwait(sigs, NULL, &wait) > 0)
					return 1;
				continue;
			}
		}
		rc = ts_cluster_open(co, &c->cl);
		if (rc == 0 || !open_retryable(rc))
			return rc;
		if (rc != last)
			ts_log(TS_LOG_WARN, "controller", "group not up yet (%s); retrying",
			       ts_strerror(rc));
		last = rc;
		if (sigtimedwait(sigs, NULL, &wait) > 0)
			return 1;
	}
}

static int parse_u64(const char *s, uint64_t *out, bool size)
{
	char *end;

	if (size)
		return ts_parse_size(s, out) == 0 && *out ? 0 : -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || !*out ? -EINVAL : 0;
}

/* A started controller: the cluster, its maintenance thread, the stack. */
struct ts_controller {
	struct ctl c;
	struct ts_stack *stack;
	sigset_t none; /* waited on when the caller gave no signals */
};

int ts_controller_start(const struct ts_controller_cfg *cfg, struct ts_controller **out)
{
	struct ts_stack_opts so = { .name = cfg->name, .node_id = cfg->node_id,
				    .portal = cfg->portal, .state_dir = cfg->state_dir,
				    .csi_endpoint = cfg->csi_endpoint };
	struct ts_cluster_opts co = cfg->co;
	struct ts_cluster_status cst;
	struct ts_controller *t;
	const sigset_t *sigs;
	char group[37];
	int rc;

	*out = NULL;
	t = ts_calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->c.cfg = cfg;
	t->c.reg = cfg->reg;
	sigemptyset(&t->none);
	sigs = cfg->sigs ? cfg->sigs : &t->none;
	ts_uuid_format(co.group_uuid, group);
	co.reg = t->c.reg;
	if (!co.heartbeat_max_age_ms)
		co.heartbeat_max_age_ms = HEARTBEAT_MAX_AGE_MS;
	rc = open_cluster(&t->c, &co, cfg->create, sigs);
	if (rc == 1)
		goto stopped;
	if (rc < 0) {
		fprintf(stderr, "tessera %s: group %s: %s\n", cfg->name, group, ts_strerror(rc));
		goto fail;
	}
	rc = ts_maint_start(t->c.cl, "controller", TICK_MS, &t->c.maint);
	if (rc < 0) {
		fprintf(stderr, "tessera %s: maintenance thread: %s\n", cfg->name, ts_strerror(rc));
		goto fail;
	}
	ts_cluster_status(t->c.cl, &cst);
	so.device = ts_cluster_device(t->c.cl);
	memcpy(so.group_uuid, cst.group_uuid, 16);
	so.k = cst.k;
	so.m = cst.m;
	so.probe = ctl_probe;
	so.probe_arg = &t->c;
	so.status = ctl_status;
	so.status_arg = &t->c;
	for (;;) {
		const struct timespec wait = { OPEN_RETRY_MS / 1000, (OPEN_RETRY_MS % 1000) * 1000000L };

		rc = ts_stack_start(&so, &t->stack);
		ts_cluster_status(t->c.cl, &cst);
		/* Restarted while degraded with writes in flight: regions the group
		 * cannot vouch for (the degraded write hole, docs/ec-layout.md) may
		 * keep the volume pool unreadable until the missing members are
		 * back and resynced, which the maintenance thread does. Wait for
		 * that instead of exiting. */
		if (rc != -EIO || !strcmp(cst.state, "healthy"))
			break;
		ts_log(TS_LOG_WARN, cfg->name,
		       "volume pool unreadable while the group is %s; waiting for members", cst.state);
		if (sigtimedwait(sigs, NULL, &wait) > 0)
			goto stopped;
	}
	if (rc < 0)
		goto fail; /* the stack said which layer failed */
	ts_log(TS_LOG_INFO, cfg->name, "serving group=%s ec=%u+%u size=%llu state=%s", group,
	       cst.k, cst.m, (unsigned long long)cst.size, cst.state);
	*out = t;
	return 0;
stopped:
	ts_log(TS_LOG_INFO, cfg->name, "stopped before the group came up");
	rc = 1;
fail:
	ts_controller_stop(t);
	return rc;
}

struct ts_stack *ts_controller_stack(struct ts_controller *t)
{
	return t->stack;
}

void ts_controller_stop(struct ts_controller *t)
{
	if (!t)
		return;
	ts_stack_stop(t->stack);
	ts_maint_stop(t->c.maint);
	ts_cluster_close(t->c.cl);
	ts_free(t);
}

/*
 * What /readyz answers (--health-addr). A passive replica waiting for the
 * Lease is doing its job, so it is ready (a rollout must be able to replace
 * either replica); the active one is ready once it serves and while it holds
 * the Lease; the answer names the role.
 */
enum { PH_STARTING, PH_PASSIVE, PH_TAKING_OVER, PH_SERVING };
static atomic_int g_phase;
static _Atomic(struct ts_leader *) g_leader;

static int health_ready(void *arg, char *why, size_t len)
{
	struct ts_leader *l = atomic_load(&g_leader);

	(void)arg;
	switch (atomic_load(&g_phase)) {
	case PH_PASSIVE:
		return 0;
	case PH_SERVING:
		if (l && ts_leader_gate(l)) {
			snprintf(why, len, "active replica that no longer holds the Lease");
			return 1;
		}
		return 0;
	case PH_TAKING_OVER:
		snprintf(why, len, "took the Lease: loading the records and the groups");
		return 1;
	default:
		snprintf(why, len, "starting: waiting for the group's nodes");
		return 1;
	}
}

void ts_controller_print_ready(const struct ts_controller_cfg *cfg)
{
	printf("ready csi=%s portal=%s\n", cfg->csi_endpoint, cfg->portal);
	fflush(stdout);
	atomic_store(&g_phase, PH_SERVING);
}

int ts_controller_serve(const struct ts_controller_cfg *cfg)
{
	struct ts_controller *t;
	int sig, rc;

	rc = ts_controller_start(cfg, &t);
	if (rc)
		return rc == 1 ? 0 : 1;
	ts_controller_print_ready(cfg);
	sigwait(cfg->sigs, &sig);
	ts_log(TS_LOG_INFO, cfg->name, "signal %d, shutting down", sig);
	ts_controller_stop(t);
	return 0;
}

/* Where a --engines nodes controller keeps its state, and whether it is one of a pair. */
struct kube_cfg {
	const char *ns;         /* NULL: the directory registry, the file store */
	const char *kubeconfig; /* NULL: in-cluster */
	const char *lease;      /* NULL: no leader election */
	const char *identity;
	int32_t duration_s; /* 0: the Lease default (10 s) */
};

/* The leader's lost callback: exit at once, so nothing this replica started acts on. */
static void leader_lost(void *arg, const char *why)
{
	(void)arg;
	fprintf(stderr, "tessera controller: no longer the active controller (%s); exiting\n", why);
	fflush(stderr);
	_exit(3);
}

/* --engines nodes: the group's engine in a node, this process without volume data. */
static int serve_remote(const struct ts_controller_cfg *cfg, uint32_t owner,
			const struct kube_cfg *kc)
{
	struct ts_leader_opts lo = { .kubeconfig = kc->kubeconfig, .ns = kc->ns, .name = kc->lease,
				     .identity = kc->identity, .duration_s = kc->duration_s,
				     .lost = leader_lost,
				     .sigs = cfg->sigs };
	struct ts_leader *leader = NULL;
	struct ts_task_runner *tasks = NULL;
	const struct ts_csi_store_ops *st = NULL;
	void *st_ctx = NULL;
	struct ts_remote_ctl_cfg rc_cfg = { .name = cfg->name, .reg = cfg->reg, .co = cfg->co,
					    .create = cfg->create, .owner = owner,
					    .portal = cfg->portal, .csi_endpoint = cfg->csi_endpoint,
					    .state_dir = cfg->state_dir, .node_id = cfg->node_id,
					    .sigs = cfg->sigs,
					    .heartbeat_max_age_ms = HEARTBEAT_MAX_AGE_MS };
	struct ts_remote_ctl *r;
	int sig, rc;

	if (kc->ns) {
		/* low-priority work: this replica runs it while passive (task_runner.h) */
		struct ts_task_runner_opts to = { .kubeconfig = kc->kubeconfig, .ns = kc->ns,
						  .identity = kc->identity ? kc->identity : cfg->name,
						  .reg = cfg->reg };

		rc = ts_task_runner_start(&to, &tasks);
		if (rc) {
			fprintf(stderr, "tessera %s: task runner: %s\n", cfg->name, ts_strerror(rc));
			return 1;
		}
		ts_task_runner_set_active(tasks, !kc->lease);
	}
	if (kc->lease) {
		atomic_store(&g_phase, PH_PASSIVE);
		rc = ts_leader_acquire(&lo, &leader);
		if (rc == 1) {
			ts_task_runner_stop(tasks);
			return 0; /* a signal while passive */
		}
		if (rc < 0) {
			ts_task_runner_stop(tasks);
			fprintf(stderr, "tessera %s: Lease %s/%s: %s\n", cfg->name, kc->ns, kc->lease,
				ts_strerror(rc));
			return 1;
		}
		rc_cfg.gate = ts_leader_gate;
		rc_cfg.gate_arg = leader;
		atomic_store(&g_leader, leader);
		atomic_store(&g_phase, PH_TAKING_OVER);
		ts_task_runner_set_active(tasks, true); /* the passive's work only if none is there */
	}
	if (kc->lease && rc_cfg.create) {
		/* decided before the wait: the previous active may have created it since */
		struct ts_reg_group rec;

		rc_cfg.create = ts_registry_get_group(cfg->reg, cfg->co.group_uuid, &rec) == -ENOENT;
	}
	if (kc->ns) {
		/* read once the role is ours: the previous active's last records included */
		rc = ts_csi_store_kube_open(kc->kubeconfig, kc->ns, &st, &st_ctx);
		if (rc < 0) {
			fprintf(stderr, "tessera %s: the CSI records in namespace %s: %s\n", cfg->name,
				kc->ns, ts_strerror(rc));
			ts_task_runner_stop(tasks);
			ts_leader_release(leader);
			return 1;
		}
		rc_cfg.store = st;
		rc_cfg.store_ctx = st_ctx;
		rc_cfg.heartbeat_max_age_ms = KUBE_HEARTBEAT_MAX_AGE_MS;
	}
	rc = ts_remote_ctl_start(&rc_cfg, &r);
	if (rc) {
		ts_task_runner_stop(tasks);
		ts_leader_release(leader);
		return rc == 1 ? 0 : 1;
	}
	ts_controller_print_ready(cfg);
	sigwait(cfg->sigs, &sig);
	ts_log(TS_LOG_INFO, cfg->name, "signal %d, shutting down", sig);
	atomic_store(&g_phase, PH_STARTING);
	ts_task_runner_stop(tasks);
	ts_remote_ctl_stop(r);
	atomic_store(&g_leader, NULL);
	ts_leader_release(leader); /* last: the passive takes over at once */
	return 0;
}

int ts_controller_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "registry", required_argument, NULL, 'r' },
		{ "group", required_argument, NULL, 'g' },
		{ "state-dir", required_argument, NULL, 's' },
		{ "portal", required_argument, NULL, 'p' },
		{ "csi-endpoint", required_argument, NULL, 'c' },
		{ "ec", required_argument, NULL, 'e' },
		{ "member-size", required_argument, NULL, 'M' },
		{ "journal-size", required_argument, NULL, 'J' },
		{ "io-timeout-ms", required_argument, NULL, 't' },
		{ "node-id", required_argument, NULL, 'i' },
		{ "engines", required_argument, NULL, 'E' },
		{ "owner", required_argument, NULL, 'O' },
		{ "kube-namespace", required_argument, NULL, 'K' },
		{ "kubeconfig", required_argument, NULL, 'C' },
		{ "leader-lease", required_argument, NULL, 'L' },
		{ "identity", required_argument, NULL, 'I' },
		{ "health-addr", required_argument, NULL, 'Z' },
		{ "lease-duration-s", required_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ts_controller_cfg cfg = { .name = "controller", .node_id = "tessera-controller" };
	struct ts_cluster_opts *co = &cfg.co;
	struct ts_reg_group rec;
	const char *regdir = NULL, *group = NULL, *endpoint = NULL;
	struct kube_cfg kc = { 0 };
	const char *health_addr = NULL;
	struct ts_health *health = NULL;
	char sock[4200], ident[300];
	uint64_t v, owner = 0;
	bool node_engines = false;
	sigset_t sigs;
	int opt, rc;

	co->k = 4;
	co->m = 2;
	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'r': regdir = optarg; break;
		case 'g': group = optarg; break;
		case 's': cfg.state_dir = optarg; break;
		case 'p': cfg.portal = optarg; break;
		case 'c': endpoint = optarg; break;
		case 'i': cfg.node_id = optarg; break;
		case 'e':
			if (ts_stack_parse_ec(optarg, &co->k, &co->m) < 0) {
				fprintf(stderr, "tessera controller: bad erasure code '%s' (want K+M)\n",
					optarg);
				return 2;
			}
			break;
		case 'M':
		case 'J':
			if (parse_u64(optarg, opt == 'M' ? &co->member_size : &co->journal_size, true)) {
				fprintf(stderr, "tessera controller: bad size '%s'\n", optarg);
				return 2;
			}
			break;
		case 't':
			if (parse_u64(optarg, &v, false) || v > 600000) {
				fprintf(stderr, "tessera controller: bad --io-timeout-ms '%s'\n", optarg);
				return 2;
			}
			co->io_timeout_ms = (uint32_t)v;
			break;
		case 'E':
			if (strcmp(optarg, "nodes") && strcmp(optarg, "controller")) {
				fprintf(stderr, "tessera controller: --engines wants nodes or controller\n");
				return 2;
			}
			node_engines = !strcmp(optarg, "nodes");
			break;
		case 'O':
			if (parse_u64(optarg, &owner, false) || owner > UINT32_MAX) {
				fprintf(stderr, "tessera controller: bad --owner '%s'\n", optarg);
				return 2;
			}
			break;
		case 'K': kc.ns = optarg; break;
		case 'C': kc.kubeconfig = optarg; break;
		case 'L': kc.lease = optarg; break;
		case 'I': kc.identity = optarg; break;
		case 'Z': health_addr = optarg; break;
		case 'D':
			if (parse_u64(optarg, &v, false) || v < 2 || v > 300) {
				fprintf(stderr, "tessera controller: --lease-duration-s wants 2..300\n");
				return 2;
			}
			kc.duration_s = (int32_t)v;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || !regdir == !kc.ns || !group || !cfg.state_dir || !cfg.portal) {
		fprintf(stderr, "tessera controller: --registry or --kube-namespace, --group, "
				"--state-dir and --portal are required\n");
		usage(stderr);
		return 2;
	}
	if (kc.ns && !node_engines) {
		fprintf(stderr, "tessera controller: --kube-namespace needs --engines nodes (a "
				"controller that serves the volumes itself keeps its records beside "
				"its data)\n");
		return 2;
	}
	if ((kc.lease || kc.kubeconfig) && !kc.ns) {
		fprintf(stderr, "tessera controller: --leader-lease and --kubeconfig need "
				"--kube-namespace\n");
		return 2;
	}
	if (kc.lease && !kc.identity) {
		/*
		 * One identity per process, not per Pod: a container restarted in the
		 * same Pod must not find "its" Lease and renew it at once, it waits
		 * like any other replica (client-go does the same).
		 */
		const char *pod = getenv("POD_NAME");
		char host[256] = "controller";
		uint8_t u[16];

		gethostname(host, sizeof(host) - 1);
		host[sizeof(host) - 1] = '\0';
		if (ts_uuid_generate(u)) { /* no randomness: the pid and the time still differ */
			uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);

			memcpy(u, &t, sizeof(t));
		}
		snprintf(ident, sizeof(ident), "%.200s_%02x%02x%02x%02x%02x%02x",
			 pod && pod[0] ? pod : host, u[0], u[1], u[2], u[3], u[4], u[5]);
		kc.identity = ident;
	}
	if (co->member_size % TS_LDM_BLOCK_SIZE) {
		fprintf(stderr, "tessera controller: --member-size must be a multiple of %u bytes\n",
			TS_LDM_BLOCK_SIZE);
		return 2;
	}
	if (ts_uuid_parse(group, co->group_uuid) < 0) {
		fprintf(stderr, "tessera controller: bad group uuid '%s'\n", group);
		return 2;
	}
	if (ts_stack_check_opts("controller", cfg.portal, cfg.state_dir, &endpoint, sock,
				sizeof(sock)) < 0)
		return 2;
	cfg.csi_endpoint = endpoint;
	co->chap_user = getenv("TESSERA_CHAP_USER");
	co->chap_secret = getenv("TESSERA_CHAP_SECRET");
	if (!co->chap_user || !co->chap_user[0] || !co->chap_secret || !co->chap_secret[0]) {
		fprintf(stderr, "tessera controller: set TESSERA_CHAP_USER and TESSERA_CHAP_SECRET "
				"(the nodes' CHAP credential)\n");
		return 2;
	}

	/* Before any thread exists: TERM/INT are taken by sigwait, SIGPIPE never kills. */
	signal(SIGPIPE, SIG_IGN);
	ts_stack_block_signals(&sigs);
	cfg.sigs = &sigs;
	if (health_addr) {
		rc = ts_health_start(health_addr, health_ready, NULL, &health);
		if (rc) {
			fprintf(stderr, "tessera controller: --health-addr %s: %s\n", health_addr,
				ts_strerror(rc));
			return rc == -EINVAL ? 2 : 1;
		}
	}

	rc = ts_mkdir_p(cfg.state_dir);
	if (rc < 0) {
		fprintf(stderr, "tessera controller: cannot create %s: %s\n", cfg.state_dir,
			ts_strerror(rc));
		return 1;
	}
	rc = kc.ns ? ts_registry_kube_open(kc.kubeconfig, kc.ns, &cfg.reg)
		   : ts_registry_dir_open(regdir, &cfg.reg);
	if (rc < 0) {
		fprintf(stderr, "tessera controller: registry %s: %s\n", kc.ns ? kc.ns : regdir,
			ts_strerror(rc));
		return 1;
	}
	/* A group that does not exist yet is created: that needs its member size. */
	rc = ts_registry_get_group(cfg.reg, co->group_uuid, &rec);
	if (rc == -ENOENT && !co->member_size) {
		fprintf(stderr, "tessera controller: group %s does not exist yet; creating it needs "
				"--member-size\n", group);
		ts_registry_close(cfg.reg);
		return 2;
	}
	if (rc < 0 && rc != -ENOENT) {
		fprintf(stderr, "tessera controller: group record %s: %s\n", group, ts_strerror(rc));
		ts_registry_close(cfg.reg);
		return 1;
	}
	cfg.create = rc == -ENOENT;
	rc = node_engines ? serve_remote(&cfg, (uint32_t)owner, &kc) : ts_controller_serve(&cfg);
	ts_registry_close(cfg.reg);
	ts_health_stop(health);
	return rc;
}
