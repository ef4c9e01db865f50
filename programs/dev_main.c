/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera dev`: the embedded default, a whole multi-node cluster in one
 * process on loopback. It runs N node daemons (control/node/node.h: each a
 * PEM + LDM over its own disk files, exporting its vdisks through its own
 * iSCSI target on 127.0.1.<N>, CHAP on, registering in a directory registry)
 * and, beside them, the controller (programs/controller_main.h): the array group
 * assembled across the nodes over user-mode iSCSI with its replica journals
 * (control/cluster/cluster.h), the maintenance loop (rejoin, heal, rebuild),
 * and the serving stack (programs/stack.h): thin volumes, Tessera's iSCSI target
 * on the portal, CSI Identity/Controller/Node and the admin service the
 * `tessera` CLI talks to. Nothing is shortcut because the nodes share a
 * process: every member IO goes through a node's target, as between hosts.
 *
 * State directory:
 *   dev.json                    identities and first-start geometry (atomic)
 *   node<N>/disk<D>.img         the nodes' disks
 *   registry/                   node records, mailbox, group record
 *   volumes.formatted, meta/, node/, pr/, attach/   the stack (programs/stack.h)
 *
 * The nodes listen on 127.0.1.<N> at the portal's port, so several dev
 * instances on different portal ports never collide. The node-to-node CHAP
 * secret is random, made at first start and kept in dev.json (mode 0600).
 *
 * Startup order is bottom-up (nodes, group, stack) and shutdown the
 * reverse. Signals are blocked in every thread and taken with sigwait().
 */
#include "programs/dev.h"

#include "programs/programs.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "control/node/node.h"
#include "control/registry/registry.h"
#include "csi/admin.h"
#include "dataplane/common/ts_common.h"
#include "programs/controller_main.h"
#include "programs/engine_host.h"
#include "programs/remote_ctl.h"
#include "programs/stack.h"

#define DEV_MAX_NODES 16
#define DEV_MAX_DISKS 8
#define DEV_EXTENT (4ull << 20)
#define DEV_CHAP_USER "tessera-dev"
#define DEV_HEARTBEAT_MAX_AGE_MS 3000

/* What dev.json keeps: fixed at first start. */
struct dev_cfg {
	uint8_t cluster[16], group[16];
	char secret[33];
	unsigned nodes, disks, k, m;
	uint64_t disk_size, member_size, journal_size;
};

struct ts_dev {
	struct dev_cfg cfg;
	char state[4096];
	char paths[DEV_MAX_NODES][DEV_MAX_DISKS][4200];
	const char *pathv[DEV_MAX_NODES][DEV_MAX_DISKS];
	struct ts_node *node[DEV_MAX_NODES];
	struct ts_registry *reg;
	struct ts_controller_cfg cc; /* borrowed by ctl */
	struct ts_controller *ctl;
	/* node_engines: the nodes' engine hosts, the CSI stack over the remote
	 * backend, and the front portal that redirects to the serving node */
	bool node_engines;
	struct ts_engine_host *host[DEV_MAX_NODES];
	struct ts_remote_ctl_cfg rc; /* borrowed by remote */
	struct ts_remote_ctl *remote;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tessera dev [options]\n"
		"  --state-dir DIR      state (default $XDG_STATE_HOME/tessera/dev or ~/.local/state/tessera/dev)\n"
		"  --nodes N            data-plane nodes on first start (default 3)\n"
		"  --disks N            disk files per node on first start (default 2)\n"
		"  --disk-size BYTES    size of each disk file on first start (default 1Gi)\n"
		"  --ec K+M             erasure code on first start (default 4+2)\n"
		"  --member-size BYTES  bytes of each group member on first start (default: one\n"
		"                       group fills the disks); with --engines nodes more groups\n"
		"                       are created as volumes need room\n"
		"  --csi-endpoint EP    CSI socket (default unix://<state-dir>/csi.sock)\n"
		"  --portal HOST:PORT   iSCSI portal (default 127.0.0.1:3260); the nodes listen\n"
		"                       on 127.0.1.<N> at the same port\n"
		"  --node-id ID         CSI node id (default tessera-dev)\n"
		"  --engines WHERE      controller (default): the volume engine runs in this\n"
		"                       process's controller; nodes: in the node daemons (one\n"
		"                       engine per array group), and the controller side\n"
		"                       carries no volume data (loopback portals only)\n");
}

/* A positive size ("256Mi", "1G"). */
static int parse_size(const char *s, uint64_t *out)
{
	int rc = ts_parse_size(s, out);

	return rc == 0 && *out == 0 ? -EINVAL : rc;
}

/*
 * Member and journal sizes from the first-start geometry: each node holds
 * ceil((k+m)/nodes) members (at most m, so one node's loss leaves k) and
 * one journal of a quarter member, in whole extents, leaving a little room.
 */
static int size_group(struct dev_cfg *c)
{
	uint64_t per_disk = c->disk_size / DEV_EXTENT, ext, frag, member, journal;

	frag = (c->k + c->m + c->nodes - 1) / c->nodes;
	if (frag > c->m) {
		fprintf(stderr, "tessera dev: %u+%u needs at least %u nodes (at most %u fragments "
				"per node)\n", c->k, c->m, (c->k + c->m + c->m - 1) / c->m, c->m);
		return -EINVAL;
	}
	if (per_disk < 4) {
		fprintf(stderr, "tessera dev: --disk-size must be at least %llu MiB\n",
			(unsigned long long)(4 * DEV_EXTENT >> 20));
		return -EINVAL;
	}
	ext = (per_disk - 2) * c->disks; /* superblocks and metadata: 2 extents a disk */
	member = ext * 4 / (4 * frag + 1);
	if (c->member_size) {
		/* --member-size: groups of that size, as many as the pool takes */
		uint64_t want = (c->member_size + DEV_EXTENT - 1) / DEV_EXTENT;

		if (want > member) {
			fprintf(stderr, "tessera dev: --member-size %llu MiB does not fit a node "
					"(at most %llu MiB with %u+%u on %u nodes)\n",
				(unsigned long long)(c->member_size >> 20),
				(unsigned long long)(member * DEV_EXTENT >> 20), c->k, c->m,
				c->nodes);
			return -EINVAL;
		}
		member = want;
	}
	journal = TS_MAX(member / 4, 1ull);
	while (member > 1 && frag * member + journal > ext)
		member--;
	c->member_size = member * DEV_EXTENT;
	c->journal_size = journal * DEV_EXTENT;
	return 0;
}

static int cfg_save(const char *path, const struct dev_cfg *c)
{
	char cu[37], gu[37], *text;
	json_t *j;
	int rc;

	ts_uuid_format(c->cluster, cu);
	ts_uuid_format(c->group, gu);
	j = json_pack("{s:s,s:s,s:s,s:i,s:i,s:I,s:i,s:i,s:I,s:I}", "cluster", cu, "group", gu,
		      "chap_secret", c->secret, "nodes", (int)c->nodes, "disks", (int)c->disks,
		      "disk_size", (json_int_t)c->disk_size, "k", (int)c->k, "m", (int)c->m,
		      "member_size", (json_int_t)c->member_size, "journal_size",
		      (json_int_t)c->journal_size);
	text = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	json_decref(j);
	if (!text)
		return -ENOMEM;
	rc = ts_file_write_atomic(path, text, strlen(text));
	free(text);
	if (rc == 0 && chmod(path, 0600))
		rc = -errno;
	return rc;
}

static int cfg_load(const char *path, struct dev_cfg *c)
{
	const char *cu, *gu, *sec;
	json_int_t ds, ms, js;
	int n, d, k, m, rc = -EINVAL;
	json_error_t err;
	json_t *j = json_load_file(path, 0, &err);

	if (!j)
		return access(path, F_OK) ? -ENOENT : TS_ERR_CORRUPT;
	if (json_unpack(j, "{s:s,s:s,s:s,s:i,s:i,s:I,s:i,s:i,s:I,s:I}", "cluster", &cu, "group",
			&gu, "chap_secret", &sec, "nodes", &n, "disks", &d, "disk_size", &ds, "k",
			&k, "m", &m, "member_size", &ms, "journal_size", &js) == 0 &&
	    ts_uuid_parse(cu, c->cluster) == 0 && ts_uuid_parse(gu, c->group) == 0 &&
	    strlen(sec) == 32 && n >= 1 && n <= DEV_MAX_NODES && d >= 1 && d <= DEV_MAX_DISKS &&
	    ds > 0 && k >= 1 && m >= 1 && ms > 0 && js > 0) {
		snprintf(c->secret, sizeof(c->secret), "%s", sec);
		c->nodes = (unsigned)n;
		c->disks = (unsigned)d;
		c->disk_size = (uint64_t)ds;
		c->k = (unsigned)k;
		c->m = (unsigned)m;
		c->member_size = (uint64_t)ms;
		c->journal_size = (uint64_t)js;
		rc = 0;
	} else {
		rc = TS_ERR_CORRUPT;
	}
	json_decref(j);
	return rc;
}

/* Random hex secret (from a uuid's random bytes). */
static int make_secret(char out[33])
{
	uint8_t r[16];
	int rc = ts_uuid_generate(r);

	for (unsigned i = 0; rc == 0 && i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	return rc;
}

/* First start: identities, geometry, disk files. */
static int dev_create(struct ts_dev *d, const struct dev_cfg *want, const char *json_path)
{
	int rc;

	d->cfg = *want;
	rc = size_group(&d->cfg);
	if (rc == 0)
		rc = ts_uuid_generate(d->cfg.cluster);
	if (rc == 0)
		rc = ts_uuid_generate(d->cfg.group);
	if (rc == 0)
		rc = make_secret(d->cfg.secret);
	for (unsigned n = 0; rc == 0 && n < d->cfg.nodes; n++) {
		char dir[4200];

		snprintf(dir, sizeof(dir), "%s/node%u", d->state, n + 1);
		rc = ts_mkdir_p(dir);
		for (unsigned k = 0; rc == 0 && k < d->cfg.disks; k++) {
			char p[4300];
			int fd;

			snprintf(p, sizeof(p), "%s/disk%u.img", dir, k + 1);
			fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd < 0 || ftruncate(fd, (off_t)d->cfg.disk_size))
				rc = -errno;
			if (fd >= 0)
				close(fd);
		}
	}
	/* dev.json last: its presence says the rest exists */
	if (rc == 0)
		rc = cfg_save(json_path, &d->cfg);
	if (rc)
		fprintf(stderr, "tessera dev: first start in %s failed: %s\n", d->state,
			ts_strerror(rc));
	return rc;
}

static void stop_nodes(struct ts_dev *d)
{
	for (unsigned n = 0; n < DEV_MAX_NODES; n++) {
		ts_node_stop(d->node[n]); /* releases its engines */
		d->node[n] = NULL;
		ts_engine_host_destroy(d->host[n]);
		d->host[n] = NULL;
	}
}

static int start_nodes(struct ts_dev *d, struct ts_registry *reg, uint16_t port)
{
	for (unsigned n = 0; n < d->cfg.nodes; n++) {
		struct ts_node_opts o = { .node_id = n + 1, .ndisks = d->cfg.disks,
					  .extent_size = DEV_EXTENT, .port = port,
					  .chap_user = DEV_CHAP_USER, .chap_secret = d->cfg.secret,
					  .reg = reg };
		char addr[32];
		int rc;

		for (unsigned k = 0; k < d->cfg.disks; k++) {
			snprintf(d->paths[n][k], sizeof(d->paths[n][k]), "%s/node%u/disk%u.img",
				 d->state, n + 1, k + 1);
			d->pathv[n][k] = d->paths[n][k];
		}
		o.disks = d->pathv[n];
		memcpy(o.cluster_uuid, d->cfg.cluster, 16);
		snprintf(addr, sizeof(addr), "127.0.1.%u", n + 1);
		o.addr = addr;
		if (d->node_engines) {
			struct ts_engine_host_opts ho = { .reg = reg, .node_id = n + 1, .addr = addr,
							  .chap_user = DEV_CHAP_USER,
							  .chap_secret = d->cfg.secret };
			char dir[4200];

			snprintf(dir, sizeof(dir), "%s/node%u", d->state, n + 1);
			ho.state_dir = dir;
			rc = ts_engine_host_create(&ho, &d->host[n]);
			if (rc) {
				stop_nodes(d);
				return rc;
			}
			o.engine = ts_engine_host_ops();
			o.engine_ctx = d->host[n];
		}
		rc = ts_node_start(&o, &d->node[n]);
		if (rc) {
			fprintf(stderr, "tessera dev: node %u did not start: %s\n", n + 1,
				ts_strerror(rc));
			stop_nodes(d);
			return rc;
		}
	}
	return 0;
}

/* The admin service's node lines: the registry's, plus what our nodes' disks hold. */
static void node_detail(void *arg, struct ts_admin_node *an)
{
	struct ts_dev *d = arg;
	struct ts_node_stats st;

	if (an->id < 1 || an->id > d->cfg.nodes || !d->node[an->id - 1])
		return;
	ts_node_stats(d->node[an->id - 1], &st);
	an->disks = st.disks;
	an->extents = st.extents;
	an->free_extents = st.free_extents;
	an->extent_bytes = st.extent_size;
}

/* ---- engines in the nodes (ts_dev_opts.node_engines) ---- */

/* The engines' own view of the groups and pools: they run in this process. */
static int dev_groups(void *arg, struct ts_admin_status *out)
{
	struct ts_dev *d = arg;

	for (unsigned n = 0; n < d->cfg.nodes; n++) {
		if (!d->host[n])
			continue;
		out->nagrps += ts_engine_host_status(d->host[n], out->agrps + out->nagrps,
						     TS_ADMIN_MAX_AGRPS - (unsigned)out->nagrps);
		ts_engine_host_pools(d->host[n], &out->vpool.total_bytes, &out->vpool.free_bytes,
				     &out->vpool.volumes);
	}
	return 0;
}

/* The controller side without the engine (programs/remote_ctl.h), node 1 first. */
static int dev_start_node_engines(struct ts_dev *d, const struct ts_dev_opts *o)
{
	d->rc = (struct ts_remote_ctl_cfg){ .name = "dev", .reg = d->reg, .co = d->cc.co,
					    .create = d->cc.create, .owner = 1,
					    .portal = o->portal, .csi_endpoint = o->csi_endpoint,
					    .state_dir = d->state, .node_id = o->node_id,
					    .sigs = o->sigs,
					    .heartbeat_max_age_ms = DEV_HEARTBEAT_MAX_AGE_MS,
					    .node_detail = node_detail, .node_detail_arg = d,
					    .groups = dev_groups, .groups_arg = d };
	return ts_remote_ctl_start(&d->rc, &d->remote);
}

int ts_dev_start(const struct ts_dev_opts *o, struct ts_dev **out)
{
	struct dev_cfg want = { .nodes = o->nodes, .disks = o->disks, .disk_size = o->disk_size,
				.k = o->k, .m = o->m, .member_size = o->member_size };
	char json_path[4200], regdir[4200];
	const char *colon = strrchr(o->portal, ':');
	struct ts_dev *d;
	int rc;

	*out = NULL;
	if (!colon || want.nodes < 1 || want.nodes > DEV_MAX_NODES || want.disks < 1 ||
	    want.disks > DEV_MAX_DISKS || !o->state_dir || strlen(o->state_dir) >= 4096)
		return -EINVAL;
	d = ts_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	snprintf(d->state, sizeof(d->state), "%s", o->state_dir);
	d->node_engines = o->node_engines;
	d->cc = (struct ts_controller_cfg){ .name = "dev", .node_id = o->node_id,
					    .portal = o->portal, .csi_endpoint = o->csi_endpoint,
					    .state_dir = d->state, .sigs = o->sigs };
	rc = ts_mkdir_p(d->state);
	if (rc < 0) {
		fprintf(stderr, "tessera dev: cannot create %s: %s\n", d->state, ts_strerror(rc));
		goto fail;
	}
	snprintf(json_path, sizeof(json_path), "%s/dev.json", d->state);
	snprintf(regdir, sizeof(regdir), "%s/registry", d->state);
	rc = cfg_load(json_path, &d->cfg);
	if (rc == -ENOENT) {
		char old[4200];

		snprintf(old, sizeof(old), "%s/pool.json", d->state);
		if (access(old, F_OK) == 0) {
			fprintf(stderr, "tessera dev: %s holds a single-process pool from an older "
					"tessera dev; use another --state-dir\n", d->state);
			rc = -EEXIST;
			goto fail;
		}
		rc = dev_create(d, &want, json_path);
	} else if (rc) {
		fprintf(stderr, "tessera dev: %s: %s\n", json_path, ts_strerror(rc));
	} else if (o->geometry_given &&
		   (want.nodes != d->cfg.nodes || want.disks != d->cfg.disks ||
		    want.disk_size != d->cfg.disk_size || want.k != d->cfg.k ||
		    want.m != d->cfg.m)) {
		fprintf(stderr, "tessera dev: %s was created with --nodes %u --disks %u "
				"--disk-size %llu --ec %u+%u; those are fixed at first start\n",
			d->state, d->cfg.nodes, d->cfg.disks, (unsigned long long)d->cfg.disk_size,
			d->cfg.k, d->cfg.m);
		rc = -EINVAL;
	}
	if (rc)
		goto fail;
	rc = ts_registry_dir_open(regdir, &d->reg);
	if (rc == 0)
		rc = start_nodes(d, d->reg, (uint16_t)atoi(colon + 1));
	if (rc)
		goto fail;
	d->cc.reg = d->reg;
	memcpy(d->cc.co.group_uuid, d->cfg.group, 16);
	d->cc.co.k = d->cfg.k;
	d->cc.co.m = d->cfg.m;
	d->cc.co.member_size = d->cfg.member_size;
	d->cc.co.journal_size = d->cfg.journal_size;
	d->cc.co.chap_user = DEV_CHAP_USER;
	d->cc.co.chap_secret = d->cfg.secret;
	{
		struct ts_reg_group rec;

		d->cc.create = ts_registry_get_group(d->reg, d->cfg.group, &rec) == -ENOENT;
	}
	d->cc.node_detail = node_detail;
	d->cc.node_detail_arg = d;
	ts_log(TS_LOG_INFO, "dev", "nodes up state=%s nodes=%u ec=%u+%u engines=%s", d->state,
	       d->cfg.nodes, d->cfg.k, d->cfg.m, d->node_engines ? "nodes" : "controller");
	if (d->node_engines)
		rc = dev_start_node_engines(d, o);
	else
		rc = ts_controller_start(&d->cc, &d->ctl);
	if (rc)
		goto fail;
	*out = d;
	return 0;
fail:
	ts_dev_stop(d);
	return rc;
}

struct ts_stack *ts_dev_stack(struct ts_dev *d)
{
	return d->node_engines ? ts_remote_ctl_stack(d->remote) : ts_controller_stack(d->ctl);
}

void ts_dev_stop(struct ts_dev *d)
{
	if (!d)
		return;
	ts_controller_stop(d->ctl);
	ts_remote_ctl_stop(d->remote);
	stop_nodes(d);
	ts_registry_close(d->reg);
	ts_free(d);
}

int ts_dev_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state-dir", required_argument, NULL, 's' },
		{ "nodes", required_argument, NULL, 'n' },
		{ "disks", required_argument, NULL, 'D' },
		{ "disk-size", required_argument, NULL, 'd' },
		{ "ec", required_argument, NULL, 'e' },
		{ "member-size", required_argument, NULL, 'M' },
		{ "csi-endpoint", required_argument, NULL, 'c' },
		{ "portal", required_argument, NULL, 'p' },
		{ "node-id", required_argument, NULL, 'i' },
		{ "engines", required_argument, NULL, 'E' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ts_dev_opts o = { .nodes = 3, .disks = 2, .disk_size = 1ull << 30, .k = 4, .m = 2,
				 .node_id = "tessera-dev", .portal = "127.0.0.1:3260" };
	struct ts_controller_cfg ready;
	struct ts_dev *d = NULL;
	char state[4096] = "", sock[4200];
	uint64_t v;
	sigset_t sigs;
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (opt == 'n' || opt == 'D' || opt == 'd' || opt == 'e' || opt == 'M')
			o.geometry_given = true;
		switch (opt) {
		case 's':
			snprintf(state, sizeof(state), "%s", optarg);
			break;
		case 'n':
		case 'D':
			if (parse_size(optarg, &v) < 0 ||
			    v > (opt == 'n' ? DEV_MAX_NODES : DEV_MAX_DISKS)) {
				fprintf(stderr, "tessera dev: bad count '%s'\n", optarg);
				return 2;
			}
			if (opt == 'n')
				o.nodes = (unsigned)v;
			else
				o.disks = (unsigned)v;
			break;
		case 'd':
		case 'M':
			if (parse_size(optarg, opt == 'd' ? &o.disk_size : &o.member_size) < 0) {
				fprintf(stderr, "tessera dev: bad size '%s'\n", optarg);
				return 2;
			}
			break;
		case 'e':
			if (ts_stack_parse_ec(optarg, &o.k, &o.m) < 0) {
				fprintf(stderr, "tessera dev: bad erasure code '%s' (want K+M)\n", optarg);
				return 2;
			}
			break;
		case 'c': o.csi_endpoint = optarg; break;
		case 'p': o.portal = optarg; break;
		case 'i': o.node_id = optarg; break;
		case 'E':
			if (strcmp(optarg, "nodes") && strcmp(optarg, "controller")) {
				fprintf(stderr, "tessera dev: --engines wants nodes or controller\n");
				return 2;
			}
			o.node_engines = !strcmp(optarg, "nodes");
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (!state[0]) {
		const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");

		if (x && *x)
			snprintf(state, sizeof(state), "%s/tessera/dev", x);
		else
			snprintf(state, sizeof(state), "%s/.local/state/tessera/dev",
				 home && *home ? home : "/var/lib");
	}
	o.state_dir = state;
	if (ts_stack_check_opts("dev", o.portal, state, &o.csi_endpoint, sock, sizeof(sock)) < 0)
		return 2;

	/* Before any thread exists: TERM/INT are taken by sigwait, SIGPIPE never kills. */
	signal(SIGPIPE, SIG_IGN);
	ts_stack_block_signals(&sigs);
	o.sigs = &sigs;
	rc = ts_dev_start(&o, &d);
	if (rc)
		return rc == 1 ? 0 : 1;
	ready = (struct ts_controller_cfg){ .csi_endpoint = o.csi_endpoint, .portal = o.portal };
	ts_controller_print_ready(&ready);
	sigwait(&sigs, &opt);
	ts_log(TS_LOG_INFO, "dev", "signal %d, shutting down", opt);
	ts_dev_stop(d);
	return 0;
}
