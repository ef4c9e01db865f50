/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The `tessera` CLI: `volume create|list|show|delete`, `node list`,
 * `agrp list` (or `array-group list`) and `status`, each one unary call to
 * the admin service (`/tessera.admin.v1.Admin/...`, JSON bodies) on the
 * cluster's endpoint.
 *
 * The pipeline is parse (argv -> struct ts_cli_args, no side effects) ->
 * one call -> render (response JSON -> table or JSON on stdout). Parse and
 * render are pure so unit tests cover them without a cluster. Anything that
 * goes wrong ends as one line on stderr starting with "tessera: " and exit
 * status 1 (the cluster refused or was unreachable) or 2 (bad command
 * line). With `-o json` the response body is printed as is (indented), so
 * scripts read the same fields the admin service documents.
 *
 * Tables are built as rows of strings in a JSON array (jansson owns the
 * memory), then printed with columns padded to their widest cell.
 */
#include "cli/cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "csi/admin.h"
#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"

#define CALL_TIMEOUT_MS 60000

/* gRPC status codes the CLI words differently (numbers: csi/ owns grpc). */
#define ST_DEADLINE 4
#define ST_NOT_FOUND 5
#define ST_UNAVAILABLE 14

static const char *const g_code_names[] = {
	"OK",		 "CANCELLED",	       "UNKNOWN",	   "INVALID_ARGUMENT",
	"DEADLINE_EXCEEDED", "NOT_FOUND",	       "ALREADY_EXISTS",   "PERMISSION_DENIED",
	"RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",	   "OUT_OF_RANGE",
	"UNIMPLEMENTED",	 "INTERNAL",	       "UNAVAILABLE",	   "DATA_LOSS",
	"UNAUTHENTICATED",
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: tessera [--endpoint EP] [-o table|json] <command>\n"
		"commands:\n"
		"  volume create NAME --size SIZE [--ec K+M]   create a volume (SIZE: 1Gi, 512Mi, ...)\n"
		"  volume list                                 list volumes\n"
		"  volume show NAME|ID                         one volume, with its iSCSI URL\n"
		"  volume delete NAME|ID                       delete a volume\n"
		"  volume tree [NAME|ID]                       snapshot trees (of one volume's tree)\n"
		"  volume qos NAME|ID KEY=VALUE...             change QoS online (iopsLimit=5000,\n"
		"                                              writeBpsLimit=100Mi, iopsReservation=..;\n"
		"                                              0 lifts a limit; see docs/cli.md)\n"
		"  node list                                   data-plane nodes and their disks\n"
		"  agrp list (or array-group list)             array groups and their members\n"
		"  status                                      nodes, array groups, pool usage\n"
		"  dev, controller, node, csi                  run daemons (see tessera dev --help)\n"
		"options:\n"
		"  --endpoint EP   cluster endpoint (default $TESSERA_ENDPOINT, else the dev\n"
		"                  cluster's unix://$XDG_STATE_HOME/tessera/dev/csi.sock)\n"
		"  -o, --output    table (default) or json\n"
		"exit status: 0 ok, 1 the cluster refused or could not be reached, 2 bad usage\n");
}

/* ---- sizes ---- */

int ts_cli_parse_size(const char *s, uint64_t *out)
{
	uint64_t v;
	int rc = ts_parse_size(s, &v);

	if (rc == 0 && v == 0)
		rc = -EINVAL;
	if (rc == 0)
		*out = v;
	return rc;
}

void ts_cli_fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
	int u = -1;

	while (u < 5 && bytes >> (10 * (u + 2)) > 0)
		u++;
	if (u < 0)
		snprintf(buf, len, "%" PRIu64 "B", bytes);
	else if (bytes % (1ull << (10 * (u + 1))) == 0)
		snprintf(buf, len, "%" PRIu64 "%s", bytes >> (10 * (u + 1)), units[u]);
	else
		snprintf(buf, len, "%.1f%s", (double)bytes / (double)(1ull << (10 * (u + 1))),
			 units[u]);
}

/* ---- arguments ---- */

/* Option \p name at argv[*i]: "--name V", "--name=V" (or "-oV" for -o). */
static int opt_value(int argc, char **argv, int *i, const char *name, const char *shrt,
		     const char **val)
{
	const char *arg = argv[*i];
	size_t n = strlen(name);

	if (!strncmp(arg, name, n) && arg[n] == '=') {
		*val = arg + n + 1;
		return 1;
	}
	if (shrt && !strncmp(arg, shrt, 2) && arg[2]) {
		*val = arg + 2;
		return 1;
	}
	if (strcmp(arg, name) && (!shrt || strcmp(arg, shrt)))
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

static bool is(const char *s, const char *a, const char *b, const char *c)
{
	return s && (!strcmp(s, a) || (b && !strcmp(s, b)) || (c && !strcmp(s, c)));
}

int ts_cli_parse_args(int argc, char **argv, struct ts_cli_args *a, char *err, size_t err_len)
{
	static const struct {
		const char *name, *shrt;
	} opts[] = { { "--endpoint", NULL }, { "--output", "-o" }, { "--size", NULL },
		     { "--ec", NULL } };
	const char *pos[4 + TS_CLI_MAX_KV] = { NULL }, *size = NULL, *out = NULL;
	int npos = 0;
	bool dashdash = false;

	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		const char *val = NULL;
		int o, r = 0;

		if (!dashdash && argv[i][0] == '-' && argv[i][1]) {
			if (!strcmp(argv[i], "--")) {
				dashdash = true;
				continue;
			}
			if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
				a->help = true;
				continue;
			}
			for (o = 0; o < (int)TS_ARRAY_SIZE(opts); o++)
				if ((r = opt_value(argc, argv, &i, opts[o].name, opts[o].shrt, &val)))
					break;
			if (r < 0) {
				snprintf(err, err_len, "option %s needs a value", argv[i]);
				return TS_CLI_USAGE;
			}
			if (r == 0) {
				snprintf(err, err_len, "unknown option '%s'", argv[i]);
				return TS_CLI_USAGE;
			}
			switch (o) {
			case 0: a->endpoint = val; break;
			case 1: out = val; break;
			case 2: size = val; break;
			default: a->ec = val; break;
			}
			continue;
		}
		if (npos == (int)TS_ARRAY_SIZE(pos)) {
			snprintf(err, err_len, "too many arguments ('%s')", argv[i]);
			return TS_CLI_USAGE;
		}
		pos[npos++] = argv[i];
	}
	if (out && strcmp(out, "json") && strcmp(out, "table")) {
		snprintf(err, err_len, "unknown output format '%s' (want table or json)", out);
		return TS_CLI_USAGE;
	}
	a->json = out && !strcmp(out, "json");
	if (a->endpoint && !a->endpoint[0]) {
		snprintf(err, err_len, "--endpoint is empty");
		return TS_CLI_USAGE;
	}
	if (a->help)
		return 0;
	if (npos == 0) {
		snprintf(err, err_len, "no command (try tessera --help)");
		return TS_CLI_USAGE;
	}
	if (is(pos[0], "volume", "volumes", "vol")) {
		const char *v = pos[1];
		int want = 1;

		if (is(v, "create", NULL, NULL))
			a->cmd = TS_CLI_VOLUME_CREATE;
		else if (is(v, "list", "ls", NULL))
			a->cmd = TS_CLI_VOLUME_LIST, want = 0;
		else if (is(v, "show", "get", "describe"))
			a->cmd = TS_CLI_VOLUME_SHOW;
		else if (is(v, "delete", "rm", "remove"))
			a->cmd = TS_CLI_VOLUME_DELETE;
		else if (is(v, "tree", "snapshots", NULL))
			a->cmd = TS_CLI_VOLUME_TREE, want = npos - 2 ? 1 : 0;
		else if (is(v, "qos", "modify", NULL)) {
			a->cmd = TS_CLI_VOLUME_QOS;
			if (npos < 4 || npos - 3 > TS_CLI_MAX_KV) {
				snprintf(err, err_len, "volume qos: takes a volume and 1 to %d KEY=VALUE",
					 TS_CLI_MAX_KV);
				return TS_CLI_USAGE;
			}
			for (int k = 3; k < npos; k++) {
				const char *eq = strchr(pos[k], '=');

				if (!eq || eq == pos[k]) {
					snprintf(err, err_len, "volume qos: '%s' is not KEY=VALUE", pos[k]);
					return TS_CLI_USAGE;
				}
				a->kv[a->nkv++] = pos[k];
			}
			want = npos - 2;
		} else {
			snprintf(err, err_len, "volume: unknown or missing action '%s' "
				 "(want create, list, show, delete, tree or qos)", v ? v : "");
			return TS_CLI_USAGE;
		}
		if (npos - 2 != want) {
			snprintf(err, err_len, "volume %s: %s", v,
				 want ? "takes one volume name (or id)" : "takes no argument");
			return TS_CLI_USAGE;
		}
		a->volume = pos[2];
	} else if (is(pos[0], "node", "nodes", NULL) || is(pos[0], "agrp", "array-group", "array-groups") ||
		   is(pos[0], "agrps", NULL, NULL)) {
		if (npos > 2 || (npos == 2 && !is(pos[1], "list", "ls", NULL))) {
			snprintf(err, err_len, "%s: unknown action '%s' (want list)", pos[0],
				 npos > 1 ? pos[1] : "");
			return TS_CLI_USAGE;
		}
		a->cmd = pos[0][0] == 'n' ? TS_CLI_NODE_LIST : TS_CLI_AGRP_LIST;
	} else if (is(pos[0], "status", NULL, NULL)) {
		if (npos > 1) {
			snprintf(err, err_len, "status takes no argument");
			return TS_CLI_USAGE;
		}
		a->cmd = TS_CLI_STATUS;
	} else {
		snprintf(err, err_len, "unknown command '%s' (try tessera --help)", pos[0]);
		return TS_CLI_USAGE;
	}
	if ((size || a->ec) && a->cmd != TS_CLI_VOLUME_CREATE) {
		snprintf(err, err_len, "--size and --ec only go with volume create");
		return TS_CLI_USAGE;
	}
	if (a->cmd == TS_CLI_VOLUME_CREATE) {
		int rc;

		if (!size) {
			snprintf(err, err_len, "volume create: --size is required (e.g. --size 1Gi)");
			return TS_CLI_USAGE;
		}
		rc = ts_cli_parse_size(size, &a->size);
		if (rc) {
			snprintf(err, err_len, "bad size '%s'%s", size,
				 rc == -ERANGE ? " (too large)"
					       : " (want a positive number with an optional unit: 512Mi, 1Gi, 2T)");
			return TS_CLI_USAGE;
		}
		if (a->ec) {
			unsigned k, m;
			char tail;

			if (sscanf(a->ec, "%u+%u%c", &k, &m, &tail) != 2 || k < 1) {
				snprintf(err, err_len, "bad erasure code '%s' (want K+M, e.g. 4+2)", a->ec);
				return TS_CLI_USAGE;
			}
		}
	}
	return 0;
}

void ts_cli_endpoint(const struct ts_cli_args *a, char *buf, size_t len)
{
	const char *env = getenv("TESSERA_ENDPOINT"), *x, *home;

	if (a->endpoint) {
		snprintf(buf, len, "%s", a->endpoint);
		return;
	}
	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	/* Same default as `tessera dev` (programs/dev_main.c). */
	x = getenv("XDG_STATE_HOME");
	home = getenv("HOME");
	if (x && *x)
		snprintf(buf, len, "unix://%s/tessera/dev/csi.sock", x);
	else
		snprintf(buf, len, "unix://%s/.local/state/tessera/dev/csi.sock",
			 home && *home ? home : "/var/lib");
}

/* ---- rendering ---- */

static const char *jstr(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

static uint64_t jint(json_t *o, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(o, key));
	return v > 0 ? (uint64_t)v : 0;
}

/* Append a row of \p n cells (printf-free strings) to \p rows. */
static void row(json_t *rows, int n, ...)
{
	json_t *r = json_array();
	va_list ap;

	va_start(ap, n);
	for (int i = 0; i < n; i++)
		json_array_append_new(r, json_string(va_arg(ap, const char *)));
	va_end(ap);
	json_array_append_new(rows, r);
}

/* Print rows with each column padded to its widest cell (the last unpadded). */
static void table_print(json_t *rows, FILE *out, const char *indent)
{
	size_t width[16] = { 0 }, i, j, ncol = 0;
	json_t *r, *cell;

	json_array_foreach(rows, i, r) {
		json_array_foreach(r, j, cell) {
			size_t w = strlen(json_string_value(cell));

			if (j < TS_ARRAY_SIZE(width) && w > width[j])
				width[j] = w;
		}
		ncol = TS_MAX(ncol, json_array_size(r));
	}
	json_array_foreach(rows, i, r) {
		fputs(indent, out);
		json_array_foreach(r, j, cell) {
			const char *s = json_string_value(cell);

			if (j + 1 < json_array_size(r) && j < TS_ARRAY_SIZE(width))
				fprintf(out, "%-*s  ", (int)width[j], s);
			else
				fputs(s, out);
		}
		fputc('\n', out);
	}
	(void)ncol;
}

/* "qos: iopsLimit=500 ..." (or "none") and the engine's counters when it reports them. */
static void volume_qos(json_t *q, FILE *out)
{
	json_t *st = json_object_get(q, "stats"), *val;
	const char *key;
	int n = 0;

	if (!json_is_object(q))
		return; /* a server from before QoS */
	fprintf(out, "qos:       ");
	json_object_foreach(q, key, val)
		if (json_is_integer(val)) {
			fprintf(out, " %s=%" JSON_INTEGER_FORMAT, key, json_integer_value(val));
			n++;
		}
	fprintf(out, "%s\n", n ? "" : " none");
	if (st)
		fprintf(out,
			"qos_stats:  admitted=%" PRIu64 " delayed=%" PRIu64 " queued=%" PRIu64
			" delay_ms=%" PRIu64 " reservation_cap_iops=%" PRIu64 "\n",
			jint(st, "admitted"), jint(st, "delayed"), jint(st, "queued_now"),
			jint(st, "delay_ms_total"), jint(st, "reservation_cap_iops"));
}

static void volume_detail(json_t *v, FILE *out)
{
	char sz[32], full[96];

	ts_cli_fmt_size(jint(v, "size_bytes"), sz, sizeof(sz));
	snprintf(full, sizeof(full), "%s (%" PRIu64 " bytes)", sz, jint(v, "size_bytes"));
	fprintf(out, "name:       %s\n", jstr(v, "name"));
	fprintf(out, "id:         %s\n", jstr(v, "id"));
	fprintf(out, "size:       %s\n", full);
	fprintf(out, "ec:         %s\n", jstr(v, "ec")[0] ? jstr(v, "ec") : "-");
	fprintf(out, "access:     %s%s%s\n", jstr(v, "access"), jstr(v, "fs_type")[0] ? " " : "",
		jstr(v, "fs_type"));
	if (json_object_get(v, "iscsi_url"))
		fprintf(out, "iscsi_url:  %s\n", jstr(v, "iscsi_url"));
	else
		fprintf(out, "attach:     %s\n", jstr(v, "attach"));
	volume_qos(json_object_get(v, "qos"), out);
}

static int render_volumes(json_t *resp, FILE *out)
{
	json_t *vols = json_object_get(resp, "volumes"), *rows, *v;
	size_t i;

	if (!json_is_array(vols))
		return -EINVAL;
	if (json_array_size(vols) == 0) {
		fprintf(out, "no volumes\n");
		return 0;
	}
	bool all_iscsi = true;

	json_array_foreach(vols, i, v)
		all_iscsi = all_iscsi && json_object_get(v, "iscsi_url");
	rows = json_array();
	row(rows, 5, "NAME", "ID", "SIZE", "EC", all_iscsi ? "ISCSI URL" : "ATTACH");
	json_array_foreach(vols, i, v) {
		char sz[32];

		ts_cli_fmt_size(jint(v, "size_bytes"), sz, sizeof(sz));
		row(rows, 5, jstr(v, "name"), jstr(v, "id"), sz,
		    jstr(v, "ec")[0] ? jstr(v, "ec") : "-",
		    json_object_get(v, "iscsi_url") ? jstr(v, "iscsi_url") : jstr(v, "attach"));
	}
	table_print(rows, out, "");
	json_decref(rows);
	return 0;
}

/* A node's FREE: free_bytes when the server sends it, else free extents x extent size. */
static uint64_t node_free(json_t *n)
{
	if (json_is_integer(json_object_get(n, "free_bytes")))
		return jint(n, "free_bytes");
	return jint(n, "free_extents") * jint(n, "extent_bytes");
}

static int render_nodes(json_t *resp, FILE *out, const char *indent)
{
	json_t *nodes = json_object_get(resp, "nodes"), *rows, *n;
	size_t i;

	if (!json_is_array(nodes))
		return -EINVAL;
	rows = json_array();
	row(rows, 6, "NODE", "STATE", "DISKS", "EXTENTS", "FREE EXTENTS", "FREE");
	json_array_foreach(nodes, i, n) {
		char id[24], disks[24] = "-", ext[24] = "-", fext[24] = "-", fb[32];

		snprintf(id, sizeof(id), "%" PRIu64, jint(n, "id"));
		/* extent_bytes 0: a remote node whose disks the server does not see */
		if (jint(n, "extent_bytes")) {
			snprintf(disks, sizeof(disks), "%" PRIu64, jint(n, "disks"));
			snprintf(ext, sizeof(ext), "%" PRIu64, jint(n, "extents"));
			snprintf(fext, sizeof(fext), "%" PRIu64, jint(n, "free_extents"));
		}
		ts_cli_fmt_size(node_free(n), fb, sizeof(fb));
		row(rows, 6, id, jstr(n, "state"), disks, ext, fext, fb);
	}
	table_print(rows, out, indent);
	json_decref(rows);
	return 0;
}

/* HEAL cell: progress while healing, else how many heals completed. */
static void heal_cell(json_t *g, char *buf, size_t len)
{
	uint64_t total = jint(g, "heal_total_bytes"), done = jint(g, "heal_done_bytes");
	double rate = json_number_value(json_object_get(g, "heal_rate_mbps"));

	if (!strcmp(jstr(g, "state"), "healing"))
		snprintf(buf, len, "%" PRIu64 "%%", total ? TS_MIN(done, total) * 100 / total : 0);
	else if (jint(g, "heals") && rate > 0)
		snprintf(buf, len, "%" PRIu64 " done, %.1fMB/s", jint(g, "heals"), rate);
	else if (jint(g, "heals"))
		snprintf(buf, len, "%" PRIu64 " done", jint(g, "heals"));
	else
		snprintf(buf, len, "-");
}

static int render_agrps(json_t *resp, FILE *out, const char *indent)
{
	json_t *agrps = json_object_get(resp, "array_groups"), *rows, *g;
	size_t i;

	if (!json_is_array(agrps))
		return -EINVAL;
	rows = json_array();
	row(rows, 11, "UUID", "EC", "STATE", "LIVE", "DEGRADED STRIPES", "REPLICATED", "HEAL",
	    "GENERATION", "SIZE", "MEMBERS (slot:node)", "SERVED BY");
	json_array_foreach(agrps, i, g) {
		char ec[48], live[48], deg[24], repl[32], heal[64], gen[24], sz[32], members[1024] = "",
		     by[64];
		size_t used = 0, j;
		json_t *mem;

		snprintf(ec, sizeof(ec), "%" PRIu64 "+%" PRIu64, jint(g, "k"), jint(g, "m"));
		snprintf(live, sizeof(live), "%" PRIu64 "/%" PRIu64, jint(g, "live_members"),
			 jint(g, "k") + jint(g, "m"));
		snprintf(deg, sizeof(deg), "%" PRIu64, jint(g, "degraded_stripes"));
		ts_cli_fmt_size(jint(g, "replicated_bytes"), repl, sizeof(repl));
		heal_cell(g, heal, sizeof(heal));
		snprintf(gen, sizeof(gen), "%" PRIu64, jint(g, "generation"));
		ts_cli_fmt_size(jint(g, "size_bytes"), sz, sizeof(sz));
		json_array_foreach(json_object_get(g, "members"), j, mem) {
			int w = snprintf(members + used, sizeof(members) - used, "%s%" PRIu64 ":n%" PRIu64 "%s",
					 j ? " " : "", jint(mem, "slot"), jint(mem, "node"),
					 json_is_true(json_object_get(mem, "live")) ? "" : "(down)");

			if (w < 0 || (size_t)w >= sizeof(members) - used)
				break;
			used += (size_t)w;
		}
		if (jint(g, "serving_node"))
			snprintf(by, sizeof(by), "n%" PRIu64 " (epoch %" PRIu64 ")",
				 jint(g, "serving_node"), jint(g, "epoch"));
		else
			snprintf(by, sizeof(by), "controller");
		row(rows, 11, jstr(g, "uuid"), ec, jstr(g, "state"), live, deg, repl, heal, gen, sz,
		    members, by);
	}
	table_print(rows, out, indent);
	json_decref(rows);
	return 0;
}

static int render_status(json_t *resp, FILE *out)
{
	json_t *pool = json_object_get(resp, "volume_pool"), *nodes = json_object_get(resp, "nodes"),
	       *agrps = json_object_get(resp, "array_groups"), *x;
	size_t i, up = 0, healthy = 0;
	char used[32], total[32], fr[32];

	if (!json_is_object(pool) || !json_is_array(nodes) || !json_is_array(agrps))
		return -EINVAL;
	json_array_foreach(nodes, i, x)
		up += !strcmp(jstr(x, "state"), "up");
	json_array_foreach(agrps, i, x)
		healthy += !strcmp(jstr(x, "state"), "healthy");
	fprintf(out, "nodes:        %zu (%zu up)\n", json_array_size(nodes), up);
	fprintf(out, "array groups: %zu (%zu healthy)\n", json_array_size(agrps), healthy);
	ts_cli_fmt_size(jint(pool, "used_bytes"), used, sizeof(used));
	ts_cli_fmt_size(jint(pool, "total_bytes"), total, sizeof(total));
	ts_cli_fmt_size(jint(pool, "free_bytes"), fr, sizeof(fr));
	fprintf(out, "volume pool:  %s used of %s (%s free), %" PRIu64 " volume%s\n", used, total,
		fr, jint(pool, "volumes"), jint(pool, "volumes") == 1 ? "" : "s");
	/* One line per group that is not simply healthy, or has held replicas. */
	json_array_foreach(agrps, i, x) {
		char repl[32], unrepl[32], ht[32], hd[32];

		if (!strcmp(jstr(x, "state"), "healthy") && !jint(x, "degraded_stripes") &&
		    !jint(x, "replicated_bytes") && !jint(x, "unreplicated_bytes") &&
		    !jint(x, "rebuilds"))
			continue;
		ts_cli_fmt_size(jint(x, "replicated_bytes"), repl, sizeof(repl));
		ts_cli_fmt_size(jint(x, "unreplicated_bytes"), unrepl, sizeof(unrepl));
		fprintf(out, "group %.8s:  %s, %" PRIu64 " degraded stripes, %s replicated, %s unreplicated",
			jstr(x, "uuid"), jstr(x, "state"), jint(x, "degraded_stripes"), repl, unrepl);
		if (!strcmp(jstr(x, "state"), "healing")) {
			ts_cli_fmt_size(jint(x, "heal_done_bytes"), hd, sizeof(hd));
			ts_cli_fmt_size(jint(x, "heal_total_bytes"), ht, sizeof(ht));
			fprintf(out, ", heal %s of %s", hd, ht);
		}
		if (jint(x, "rebuilds"))
			fprintf(out, ", %" PRIu64 " member%s rebuilt", jint(x, "rebuilds"),
				jint(x, "rebuilds") == 1 ? "" : "s");
		fputc('\n', out);
	}
	fprintf(out, "\n");
	render_nodes(resp, out, "");
	fprintf(out, "\n");
	return render_agrps(resp, out, "");
}

/*
 * The snapshot forest, or (with \p volume, a name or "tv-<hex>" id) only the
 * tree that holds that volume's head. Each line: indent by depth, kind, name,
 * layer id, size, blocks the layer itself maps.
 */
int ts_cli_render_tree(json_t *resp, const char *volume, FILE *out)
{
	json_t *layers = json_object_get(resp, "layers"), *l;
	uint64_t want_vol = 0, root = 0, id_of_root = 0;
	size_t i;
	int printed = 0;

	if (!json_is_array(layers))
		return -EINVAL;
	if (volume) {
		if (!strncmp(volume, "tv-", 3))
			want_vol = strtoull(volume + 3, NULL, 16);
		/* Find the volume's head, then the root of its tree. */
		json_array_foreach(layers, i, l) {
			if (strcmp(jstr(l, "kind"), "head"))
				continue;
			if ((want_vol && jint(l, "volume") == want_vol) ||
			    (!want_vol && !strcmp(jstr(l, "volume_name"), volume))) {
				want_vol = jint(l, "volume");
				break;
			}
		}
		if (i == json_array_size(layers))
			return -ENOENT;
		/* Depth-first order: the root is the last depth-0 layer before the head. */
		json_array_foreach(layers, i, l) {
			if (jint(l, "depth") == 0)
				id_of_root = jint(l, "id");
			if (!strcmp(jstr(l, "kind"), "head") && jint(l, "volume") == want_vol) {
				root = id_of_root;
				break;
			}
		}
	}
	fprintf(out, "%-40s %-9s %-8s %-10s %s\n", "LAYER", "KIND", "ID", "SIZE", "BLOCKS");
	id_of_root = 0;
	json_array_foreach(layers, i, l) {
		char line[160], size[32];
		uint64_t depth = jint(l, "depth");

		if (depth == 0)
			id_of_root = jint(l, "id");
		if (root && id_of_root != root)
			continue;
		const char *name = !strcmp(jstr(l, "kind"), "head") ? jstr(l, "volume_name")
								     : jstr(l, "name");
		snprintf(line, sizeof(line), "%*s%s%s", (int)(2 * depth), "", depth ? "└ " : "",
			 name[0] ? name : "-");
		ts_cli_fmt_size(jint(l, "size_bytes"), size, sizeof(size));
		fprintf(out, "%-40s %-9s %-8" PRIu64 " %-10s %" PRIu64 "\n", line, jstr(l, "kind"),
			jint(l, "id"), size, jint(l, "blocks"));
		printed++;
	}
	if (!printed)
		fprintf(out, "(no volumes)\n");
	return 0;
}

int ts_cli_render(const struct ts_cli_args *a, json_t *resp, FILE *out)
{
	json_t *sub = NULL;
	int rc = 0;

	if (!json_is_object(resp))
		return -EINVAL;
	if (a->json) {
		/* node list / agrp list print only their part of the status. */
		if (a->cmd == TS_CLI_NODE_LIST || a->cmd == TS_CLI_AGRP_LIST) {
			const char *key = a->cmd == TS_CLI_NODE_LIST ? "nodes" : "array_groups";

			if (!json_is_array(json_object_get(resp, key)))
				return -EINVAL;
			sub = json_pack("{s:O}", key, json_object_get(resp, key));
		}
		rc = json_dumpf(sub ? sub : resp, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
		fputc('\n', out);
		json_decref(sub);
		return rc ? -EIO : 0;
	}
	switch (a->cmd) {
	case TS_CLI_VOLUME_CREATE:
		if (!json_is_string(json_object_get(resp, "id")))
			return -EINVAL;
		fprintf(out, "created volume '%s' (%s)\n", jstr(resp, "name"), jstr(resp, "id"));
		volume_detail(resp, out);
		return 0;
	case TS_CLI_VOLUME_SHOW:
	case TS_CLI_VOLUME_QOS:
		if (!json_is_string(json_object_get(resp, "id")))
			return -EINVAL;
		volume_detail(resp, out);
		return 0;
	case TS_CLI_VOLUME_DELETE:
		if (!json_is_string(json_object_get(resp, "id")))
			return -EINVAL;
		fprintf(out, "deleted volume '%s' (%s)\n", jstr(resp, "name"), jstr(resp, "id"));
		return 0;
	case TS_CLI_VOLUME_LIST: return render_volumes(resp, out);
	case TS_CLI_NODE_LIST: return render_nodes(resp, out, "");
	case TS_CLI_AGRP_LIST: return render_agrps(resp, out, "");
	case TS_CLI_STATUS: return render_status(resp, out);
	case TS_CLI_VOLUME_TREE: return ts_cli_render_tree(resp, a->volume, out);
	default: return -EINVAL;
	}
}

/* ---- main ---- */

static int request(const struct ts_cli_args *a, const char **method, json_t **body)
{
	switch (a->cmd) {
	case TS_CLI_VOLUME_CREATE:
		*method = TS_ADMIN_PREFIX "VolumeCreate";
		*body = json_pack("{s:s, s:I}", "name", a->volume, "size_bytes", (json_int_t)a->size);
		if (*body && a->ec)
			json_object_set_new(*body, "ec", json_string(a->ec));
		break;
	case TS_CLI_VOLUME_LIST:
		*method = TS_ADMIN_PREFIX "VolumeList";
		*body = json_object();
		break;
	case TS_CLI_VOLUME_TREE:
		*method = TS_ADMIN_PREFIX "SnapshotTree";
		*body = json_object();
		break;
	case TS_CLI_VOLUME_SHOW:
	case TS_CLI_VOLUME_DELETE:
		*method = a->cmd == TS_CLI_VOLUME_SHOW ? TS_ADMIN_PREFIX "VolumeGet"
						       : TS_ADMIN_PREFIX "VolumeDelete";
		*body = json_pack("{s:s}", "volume", a->volume);
		break;
	case TS_CLI_VOLUME_QOS: {
		json_t *p = json_object();

		for (int i = 0; p && i < a->nkv; i++) {
			const char *eq = strchr(a->kv[i], '=');
			char key[64];

			snprintf(key, sizeof(key), "%.*s", (int)(eq - a->kv[i]), a->kv[i]);
			json_object_set_new(p, key, json_string(eq + 1));
		}
		*method = TS_ADMIN_PREFIX "VolumeModify";
		*body = p ? json_pack("{s:s, s:o}", "volume", a->volume, "parameters", p) : NULL;
		break;
	}
	default:
		*method = TS_ADMIN_PREFIX "ClusterStatus";
		*body = json_object();
		break;
	}
	return *body ? 0 : -ENOMEM;
}

int ts_cli_main(int argc, char **argv)
{
	struct ts_cli_args a;
	struct ts_client *cl = NULL;
	char err[512], ep[4200], msg[1024], *req = NULL, *resp = NULL;
	const char *method;
	json_t *body = NULL, *rj = NULL;
	json_error_t jerr;
	size_t resp_len;
	int rc, st;

	rc = ts_cli_parse_args(argc, argv, &a, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "tessera: %s\n", err);
		return TS_CLI_USAGE;
	}
	if (a.help) {
		usage(stdout);
		return TS_CLI_OK;
	}
	ts_cli_endpoint(&a, ep, sizeof(ep));
	rc = TS_CLI_FAIL;
	if (request(&a, &method, &body) || !(req = json_dumps(body, JSON_COMPACT))) {
		fprintf(stderr, "tessera: out of memory\n");
		goto out;
	}
	if (ts_client_open(ep, &cl)) {
		fprintf(stderr, "tessera: bad endpoint '%s'\n", ep);
		goto out;
	}
	st = ts_client_call(cl, method, req, strlen(req), &resp, &resp_len, CALL_TIMEOUT_MS, msg,
			    sizeof(msg));
	if (st < 0) {
		fprintf(stderr, "tessera: call to %s failed: %s\n", ep, ts_strerror(st));
		goto out;
	}
	if (st == ST_UNAVAILABLE && (strstr(msg, "connect") || strstr(msg, "No such file") ||
				     strstr(msg, "refused"))) {
		fprintf(stderr, "tessera: cannot reach the cluster at %s (is `tessera dev` running?)\n",
			ep);
		goto out;
	}
	if (st == ST_DEADLINE) {
		fprintf(stderr, "tessera: no answer from %s within %d s\n", ep,
			CALL_TIMEOUT_MS / 1000);
		goto out;
	}
	if (st == 12 && strstr(msg, "not implemented")) { /* UNIMPLEMENTED from the generic slot */
		fprintf(stderr, "tessera: %s serves no admin service (an older or non-Tessera server?)\n",
			ep);
		goto out;
	}
	if (st != 0) {
		if (st == ST_NOT_FOUND)
			fprintf(stderr, "tessera: %s\n", msg[0] ? msg : "not found");
		else
			fprintf(stderr, "tessera: %s (%s)\n", msg[0] ? msg : "request failed",
				st < (int)TS_ARRAY_SIZE(g_code_names) ? g_code_names[st] : "error");
		goto out;
	}
	rj = json_loadb(resp, resp_len, 0, &jerr);
	if (rj && a.cmd == TS_CLI_VOLUME_TREE && !a.json) {
		int r = ts_cli_render_tree(rj, a.volume, stdout);

		if (r == -ENOENT) {
			fprintf(stderr, "tessera: volume '%s' not found\n", a.volume);
			goto out;
		}
		if (r) {
			fprintf(stderr, "tessera: unexpected answer from %s: %.200s\n", ep, resp);
			goto out;
		}
	} else if (!rj || ts_cli_render(&a, rj, stdout)) {
		fprintf(stderr, "tessera: unexpected answer from %s: %.200s\n", ep, resp);
		goto out;
	}
	rc = TS_CLI_OK;
out:
	if (fflush(stdout) && rc == TS_CLI_OK) {
		fprintf(stderr, "tessera: cannot write the output\n");
		rc = TS_CLI_FAIL;
	}
	json_decref(rj);
	json_decref(body);
	free(req);
	ts_free(resp);
	ts_client_close(cl);
	return rc;
}
