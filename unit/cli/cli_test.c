/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI without a cluster: size parsing (against a reference computed
 * here, and round trips through the formatter), argument parsing (commands,
 * options anywhere, every usage error), rendering of admin responses as
 * tables and JSON. Then the admin service's handlers (csi/admin.c) through
 * ts_csi_handle() on the in-memory backend: create/list/get/delete share the
 * CSI store with CSI CreateVolume, errors carry the right gRPC code.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/admin.h"
#include "cli/cli.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csi/csi_test_util.h"

/* ---- sizes ---- */

Test(csi_cli, parse_size_units)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "1", 1 },	      { "4096", 4096 },	      { "1K", 1024 },
		{ "1Ki", 1024 },      { "1KiB", 1024 },	      { "1kb", 1024 },
		{ "512Mi", 512ull << 20 }, { "1G", 1ull << 30 }, { "1Gi", 1ull << 30 },
		{ "3gi", 3ull << 30 }, { "2T", 2ull << 40 },  { "1Pi", 1ull << 50 },
		{ "7B", 7 },
	};
	static const char *const bad[] = { "", "0", "0Gi", "-1", "1.5Gi", "Gi", "1X", "1Gx",
					   "1 Gi", "1GiBB", "1iB", " 1" };
	uint64_t v;

	for (size_t i = 0; i < TS_ARRAY_SIZE(ok); i++) {
		v = 0;
		cr_assert_eq(ts_cli_parse_size(ok[i].s, &v), 0, "%s", ok[i].s);
		cr_assert_eq(v, ok[i].v, "%s -> %llu", ok[i].s, (unsigned long long)v);
	}
	for (size_t i = 0; i < TS_ARRAY_SIZE(bad); i++)
		cr_assert_eq(ts_cli_parse_size(bad[i], &v), -EINVAL, "'%s' accepted", bad[i]);
	cr_assert_eq(ts_cli_parse_size("99999999999999999999999", &v), -ERANGE);
	cr_assert_eq(ts_cli_parse_size("8192Pi", &v), -ERANGE);
	cr_assert_eq(ts_cli_parse_size("8191Pi", &v), 0);
	cr_assert_eq(v, 8191ull << 50);
}

Test(csi_cli, fmt_size_and_round_trip)
{
	char buf[32];
	uint64_t v;

	ts_cli_fmt_size(0, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0B");
	ts_cli_fmt_size(1023, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1023B");
	ts_cli_fmt_size(1536, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.5Ki");
	ts_cli_fmt_size(48ull << 20, buf, sizeof(buf));
	cr_assert_str_eq(buf, "48Mi");
	ts_cli_fmt_size(1025ull << 20, buf, sizeof(buf));
	cr_assert_str_eq(buf, "1.0Gi");
	/* Exact multiples format without a fraction and parse back to themselves. */
	srand(7);
	for (int i = 0; i < 2000; i++) {
		unsigned shift = 10 * (unsigned)(rand() % 5);
		uint64_t n = (uint64_t)(rand() % 1000000) + 1;

		ts_cli_fmt_size(n << shift, buf, sizeof(buf));
		if (strchr(buf, '.'))
			continue; /* not an exact multiple of its unit */
		cr_assert_eq(ts_cli_parse_size(buf, &v), 0, "%s", buf);
		cr_assert_eq(v, n << shift, "%s", buf);
	}
}

/* ---- arguments ---- */

static int parse(struct ts_cli_args *a, char *err, const char *line)
{
	static char copy[512]; /* argv strings must outlive the call */
	char *argv[32], *save = NULL;
	int argc = 0;

	snprintf(copy, sizeof(copy), "tessera %s", line);
	for (char *t = strtok_r(copy, " ", &save); t && argc < 31; t = strtok_r(NULL, " ", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	err[0] = '\0';
	return ts_cli_parse_args(argc, argv, a, err, 256);
}

Test(csi_cli, parse_commands)
{
	struct ts_cli_args a;
	char err[256];

	cr_assert_eq(parse(&a, err, "volume create v1 --size 1Gi"), 0, "%s", err);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_CREATE);
	cr_assert_str_eq(a.volume, "v1");
	cr_assert_eq(a.size, 1ull << 30);
	cr_assert_null(a.ec);
	cr_assert(!a.json);

	cr_assert_eq(parse(&a, err, "-o json --size=64Mi volume --ec=4+2 create v2 --endpoint=unix:///x.sock"), 0, "%s", err);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_CREATE);
	cr_assert_str_eq(a.volume, "v2");
	cr_assert_eq(a.size, 64ull << 20);
	cr_assert_str_eq(a.ec, "4+2");
	cr_assert(a.json);
	cr_assert_str_eq(a.endpoint, "unix:///x.sock");

	cr_assert_eq(parse(&a, err, "volume ls -ojson"), 0);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_LIST);
	cr_assert(a.json);
	cr_assert_eq(parse(&a, err, "volume show tv-0000000000000002 --output table"), 0);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_SHOW);
	cr_assert(!a.json);
	cr_assert_eq(parse(&a, err, "volume rm v1"), 0);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_DELETE);
	cr_assert_eq(parse(&a, err, "volume delete -- -odd-name"), 0);
	cr_assert_str_eq(a.volume, "-odd-name");
	cr_assert_eq(parse(&a, err, "node list"), 0);
	cr_assert_eq(a.cmd, TS_CLI_NODE_LIST);
	cr_assert_eq(parse(&a, err, "nodes"), 0);
	cr_assert_eq(a.cmd, TS_CLI_NODE_LIST);
	cr_assert_eq(parse(&a, err, "agrp list"), 0);
	cr_assert_eq(a.cmd, TS_CLI_AGRP_LIST);
	cr_assert_eq(parse(&a, err, "array-group list"), 0);
	cr_assert_eq(a.cmd, TS_CLI_AGRP_LIST);
	cr_assert_eq(parse(&a, err, "status --endpoint /run/t.sock"), 0);
	cr_assert_eq(a.cmd, TS_CLI_STATUS);
	cr_assert_eq(parse(&a, err, "volume qos v1 iopsLimit=100 writeBpsLimit=1Mi"), 0, "%s", err);
	cr_assert_eq(a.cmd, TS_CLI_VOLUME_QOS);
	cr_assert_str_eq(a.volume, "v1");
	cr_assert_eq(a.nkv, 2);
	cr_assert_str_eq(a.kv[1], "writeBpsLimit=1Mi");
	cr_assert_eq(parse(&a, err, "--help"), 0);
	cr_assert(a.help);
	cr_assert_eq(parse(&a, err, "volume create -h"), 0);
	cr_assert(a.help);
}

Test(csi_cli, parse_errors)
{
	static const struct {
		const char *line, *msg;
	} bad[] = {
		{ "", "no command" },
		{ "frob", "unknown command 'frob'" },
		{ "volume", "unknown or missing action" },
		{ "volume grow v1", "unknown or missing action 'grow'" },
		{ "volume create", "takes one volume name" },
		{ "volume create a b --size 1Gi", "takes one volume name" },
		{ "volume create v1", "--size is required" },
		{ "volume create v1 --size", "option --size needs a value" },
		{ "volume create v1 --size 0", "bad size '0'" },
		{ "volume create v1 --size 1.5G", "bad size '1.5G'" },
		{ "volume create v1 --size 99999999Pi", "too large" },
		{ "volume create v1 --size 1Gi --ec 4", "bad erasure code '4'" },
		{ "volume create v1 --size 1Gi --ec 0+2", "bad erasure code" },
		{ "volume list extra", "takes no argument" },
		{ "volume show", "takes one volume name" },
		{ "volume list --size 1Gi", "only go with volume create" },
		{ "node delete", "unknown action 'delete'" },
		{ "status now", "takes no argument" },
		{ "status -o yaml", "unknown output format 'yaml'" },
		{ "status --verbose", "unknown option '--verbose'" },
		{ "status --endpoint=", "--endpoint is empty" },
		{ "a b c d e f g h i j k l m", "too many arguments" },
		{ "volume qos v1", "takes a volume and 1 to 8 KEY=VALUE" },
		{ "volume qos v1 iopsLimit", "'iopsLimit' is not KEY=VALUE" },
		{ "volume qos v1 =5", "'=5' is not KEY=VALUE" },
		{ "volume qos v1 a=1 b=2 c=3 d=4 e=5 f=6 g=7 h=8 i=9", "takes a volume and 1 to 8" },
	};
	struct ts_cli_args a;
	char err[256];

	for (size_t i = 0; i < TS_ARRAY_SIZE(bad); i++) {
		cr_assert_eq(parse(&a, err, bad[i].line), TS_CLI_USAGE, "'%s' accepted", bad[i].line);
		cr_assert(strstr(err, bad[i].msg), "'%s': message '%s' lacks '%s'", bad[i].line, err,
			  bad[i].msg);
		cr_assert_null(strchr(err, '\n'));
	}
}

Test(csi_cli, endpoint_default)
{
	struct ts_cli_args a = { 0 };
	char ep[512];

	unsetenv("TESSERA_ENDPOINT");
	setenv("XDG_STATE_HOME", "/st", 1);
	ts_cli_endpoint(&a, ep, sizeof(ep));
	cr_assert_str_eq(ep, "unix:///st/tessera/dev/csi.sock");
	unsetenv("XDG_STATE_HOME");
	setenv("HOME", "/home/u", 1);
	ts_cli_endpoint(&a, ep, sizeof(ep));
	cr_assert_str_eq(ep, "unix:///home/u/.local/state/tessera/dev/csi.sock");
	setenv("TESSERA_ENDPOINT", "unix:///env.sock", 1);
	ts_cli_endpoint(&a, ep, sizeof(ep));
	cr_assert_str_eq(ep, "unix:///env.sock");
	a.endpoint = "unix:///flag.sock";
	ts_cli_endpoint(&a, ep, sizeof(ep));
	cr_assert_str_eq(ep, "unix:///flag.sock");
}

/* ---- rendering ---- */

static char *render(enum ts_cli_cmd cmd, bool json, const char *resp, int *rc)
{
	struct ts_cli_args a = { .cmd = cmd, .json = json };
	json_t *j = json_loads(resp, 0, NULL);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	cr_assert_not_null(j);
	*rc = ts_cli_render(&a, j, f);
	fclose(f);
	json_decref(j);
	return buf;
}

static const char *g_status =
	"{\"nodes\":[{\"id\":1,\"state\":\"up\",\"disks\":2,\"extents\":126,\"free_extents\":2,"
	"\"extent_bytes\":4194304},{\"id\":2,\"state\":\"down\",\"disks\":0,\"extents\":0,"
	"\"free_extents\":0,\"extent_bytes\":4194304}],"
	"\"array_groups\":[{\"uuid\":\"d4c1864d-3cf9-4788-9677-38478454d722\",\"k\":1,\"m\":1,"
	"\"state\":\"degraded\",\"live_members\":1,\"generation\":3,\"size_bytes\":1048576,"
	"\"members\":[{\"slot\":0,\"node\":1,\"live\":true},{\"slot\":1,\"node\":2,\"live\":false}]}],"
	"\"volume_pool\":{\"total_bytes\":2097152,\"used_bytes\":1048576,\"free_bytes\":1048576,"
	"\"volumes\":1}}";

Test(csi_cli, render_tables)
{
	char *out;
	int rc;

	out = render(TS_CLI_NODE_LIST, false, g_status, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "NODE  STATE  DISKS  EXTENTS  FREE EXTENTS  FREE\n"
			      "1     up     2      126      2             8Mi\n"
			      "2     down   0      0        0             0B\n");
	free(out);
	out = render(TS_CLI_AGRP_LIST, false, g_status, &rc);
	cr_assert_eq(rc, 0);
	/* a server without the health or owner fields: zeros, no heal, the controller's */
	cr_assert(strstr(out, "d4c1864d-3cf9-4788-9677-38478454d722  1+1  degraded  1/2   0                 "
			      "0B          -     3           1Mi   0:n1 1:n2(down)      controller\n"),
		  "%s", out);
	free(out);
	out = render(TS_CLI_STATUS, false, g_status, &rc);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(out, "nodes:        2 (1 up)\n"), "%s", out);
	cr_assert(strstr(out, "array groups: 1 (0 healthy)\n"), "%s", out);
	cr_assert(strstr(out, "volume pool:  1Mi used of 2Mi (1Mi free), 1 volume\n"), "%s", out);
	free(out);
	out = render(TS_CLI_VOLUME_LIST, false, "{\"volumes\":[]}", &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "no volumes\n");
	free(out);
	out = render(TS_CLI_VOLUME_LIST, false,
		     "{\"volumes\":[{\"id\":\"tv-1\",\"name\":\"a-long-name\",\"size_bytes\":1073741824,"
		     "\"ec\":\"4+2\",\"iscsi_url\":\"iscsi://h:1/iqn.x/0\"},{\"id\":\"tv-2\",\"name\":\"b\","
		     "\"size_bytes\":1536,\"ec\":\"\",\"attach\":\"file:///v\"}]}",
		     &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "NAME         ID    SIZE   EC   ATTACH\n"
			      "a-long-name  tv-1  1Gi    4+2  iscsi://h:1/iqn.x/0\n"
			      "b            tv-2  1.5Ki  -    file:///v\n");
	free(out);
	out = render(TS_CLI_VOLUME_CREATE, false,
		     "{\"id\":\"tv-1\",\"name\":\"v\",\"size_bytes\":1048576,\"ec\":\"4+2\","
		     "\"access\":\"block\",\"fs_type\":\"\",\"iscsi_url\":\"iscsi://h:1/q/0\"}",
		     &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "created volume 'v' (tv-1)\n"
			      "name:       v\n"
			      "id:         tv-1\n"
			      "size:       1Mi (1048576 bytes)\n"
			      "ec:         4+2\n"
			      "access:     block\n"
			      "iscsi_url:  iscsi://h:1/q/0\n");
	free(out);
	out = render(TS_CLI_VOLUME_SHOW, false,
		     "{\"id\":\"tv-1\",\"name\":\"v\",\"size_bytes\":1048576,\"ec\":\"4+2\","
		     "\"access\":\"block\",\"fs_type\":\"\",\"iscsi_url\":\"iscsi://h:1/q/0\","
		     "\"qos\":{\"iopsLimit\":500,\"stats\":{\"admitted\":7,\"delayed\":3,\"queued_now\":1,"
		     "\"delay_ms_total\":12,\"reservation_cap_iops\":0}}}",
		     &rc);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(out, "qos:        iopsLimit=500\n"
			      "qos_stats:  admitted=7 delayed=3 queued=1 delay_ms=12 reservation_cap_iops=0\n"),
		  "%s", out);
	free(out);
	out = render(TS_CLI_VOLUME_SHOW, false,
		     "{\"id\":\"tv-1\",\"name\":\"v\",\"size_bytes\":1048576,\"ec\":\"4+2\","
		     "\"access\":\"block\",\"fs_type\":\"\",\"iscsi_url\":\"iscsi://h:1/q/0\",\"qos\":{}}",
		     &rc);
	cr_assert(strstr(out, "qos:        none\n"), "%s", out);
	free(out);
	/* A response that lacks what the command shows is an error, not a blank table. */
	out = render(TS_CLI_VOLUME_LIST, false, "{\"nodes\":[]}", &rc);
	cr_assert_eq(rc, -EINVAL);
	free(out);
	out = render(TS_CLI_VOLUME_SHOW, false, "{}", &rc);
	cr_assert_eq(rc, -EINVAL);
	free(out);
}

/* What `tessera controller` answers: remote nodes, a group that is healing. */
static const char *g_ctl_status =
	"{\"nodes\":[{\"id\":12,\"state\":\"up\",\"disks\":0,\"extents\":0,\"free_extents\":0,"
	"\"extent_bytes\":0,\"free_bytes\":3145728,\"portal\":\"127.0.0.12:3270\"}],"
	"\"array_groups\":[{\"uuid\":\"d4c1864d-3cf9-4788-9677-38478454d722\",\"k\":4,\"m\":2,"
	"\"state\":\"healing\",\"live_members\":6,\"generation\":9,\"size_bytes\":4194304,"
	"\"degraded_stripes\":0,\"replicated_bytes\":2097152,\"unreplicated_bytes\":0,"
	"\"heal_total_bytes\":1048576,\"heal_done_bytes\":262144,\"heal_rate_mbps\":0.0,"
	"\"heals\":2,\"members\":[]},"
	"{\"uuid\":\"11111111-0000-0000-0000-000000000002\",\"k\":4,\"m\":2,"
	"\"state\":\"healthy\",\"live_members\":6,\"generation\":1,\"size_bytes\":4194304,"
	"\"degraded_stripes\":0,\"replicated_bytes\":0,\"unreplicated_bytes\":0,"
	"\"heal_total_bytes\":0,\"heal_done_bytes\":0,\"heal_rate_mbps\":12.5,"
	"\"heals\":3,\"members\":[]},"
	"{\"uuid\":\"00000000-0000-0000-0000-000000000003\",\"k\":4,\"m\":2,"
	"\"state\":\"rebuilding\",\"live_members\":5,\"generation\":2,\"size_bytes\":4194304,"
	"\"degraded_stripes\":9,\"rebuilds\":1,\"members\":[]}],"
	"\"volume_pool\":{\"total_bytes\":2097152,\"used_bytes\":0,\"free_bytes\":2097152,"
	"\"volumes\":0}}";

Test(csi_cli, render_health)
{
	char *out;
	int rc;

	out = render(TS_CLI_NODE_LIST, false, g_ctl_status, &rc);
	cr_assert_eq(rc, 0);
	cr_assert_str_eq(out, "NODE  STATE  DISKS  EXTENTS  FREE EXTENTS  FREE\n"
			      "12    up     -      -        -             3Mi\n");
	free(out);
	out = render(TS_CLI_AGRP_LIST, false, g_ctl_status, &rc);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(out, "  4+2  healing     6/6   0                 2Mi         25%               9           4Mi"), "%s",
		  out);
	cr_assert(strstr(out, "  4+2  healthy     6/6   0                 0B          3 done, 12.5MB/s  1           4Mi"),
		  "%s", out);
	cr_assert(strstr(out, "  4+2  rebuilding  5/6   9                 0B          -                 2   "),
		  "%s", out);
	free(out);
	out = render(TS_CLI_STATUS, false, g_ctl_status, &rc);
	cr_assert_eq(rc, 0);
	cr_assert(strstr(out, "array groups: 3 (1 healthy)\n"), "%s", out);
	cr_assert(strstr(out, "group 00000000:  rebuilding, 9 degraded stripes, 0B replicated, "
			      "0B unreplicated, 1 member rebuilt\n"),
		  "%s", out);
	cr_assert(strstr(out, "group d4c1864d:  healing, 0 degraded stripes, 2Mi replicated, "
			      "0B unreplicated, heal 256Ki of 1Mi\n"),
		  "%s", out);
	cr_assert_null(strstr(out, "group 11111111"), "%s", out); /* healthy, nothing held: no line */
	free(out);
}

Test(csi_cli, render_json)
{
	json_t *j;
	char *out;
	int rc;

	out = render(TS_CLI_NODE_LIST, true, g_status, &rc);
	cr_assert_eq(rc, 0);
	j = json_loads(out, 0, NULL);
	cr_assert_not_null(j, "%s", out);
	cr_assert_eq(json_object_size(j), 1);
	cr_assert_eq(json_array_size(json_object_get(j, "nodes")), 2);
	json_decref(j);
	free(out);
	out = render(TS_CLI_STATUS, true, g_status, &rc);
	cr_assert_eq(rc, 0);
	j = json_loads(out, 0, NULL);
	cr_assert_not_null(j);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(j, "volume_pool"), "volumes")), 1);
	json_decref(j);
	free(out);
	out = render(TS_CLI_AGRP_LIST, true, "{\"nodes\":[]}", &rc);
	cr_assert_eq(rc, -EINVAL);
	free(out);
}

/* ---- the admin service's handlers ---- */

static int g_status_calls;

static int fake_status(void *ctx, struct ts_admin_status *out)
{
	(void)ctx;
	g_status_calls++;
	out->nnodes = 3;
	for (int i = 0; i < 3; i++) {
		out->nodes[i].id = (uint32_t)i + 1;
		out->nodes[i].up = i != 2;
		out->nodes[i].disks = 2;
	}
	out->nagrps = 1;
	strcpy(out->agrps[0].uuid, "00000000-0000-0000-0000-000000000001");
	out->agrps[0].k = 4;
	out->agrps[0].m = 2;
	for (int i = 0; i < 6; i++) {
		out->agrps[0].slots[i].node = (uint32_t)(i % 3) + 1;
		out->agrps[0].slots[i].live = i % 3 != 2;
	}
	out->agrps[0].degraded_stripes = 7;
	out->agrps[0].replicated_bytes = 3 << 20;
	out->agrps[0].heal_rate_mbps = 1.5;
	out->agrps[0].heals = 1;
	out->agrps[0].rebuilds = 2;
	out->agrps[0].rebuild_rate_mbps = 40.0;
	/* a second group whose state the data plane names */
	out->nagrps = 2;
	strcpy(out->agrps[1].uuid, "00000000-0000-0000-0000-000000000002");
	out->agrps[1].k = 1;
	out->agrps[1].m = 1;
	strcpy(out->agrps[1].state, "healing");
	out->nodes[0].free_bytes = 5;
	strcpy(out->nodes[0].portal, "127.0.0.12:3270");
	out->vpool.total_bytes = 100 << 20;
	out->vpool.free_bytes = 60 << 20;
	return 0;
}

static const struct ts_admin_ops g_fake_ops = { .status = fake_status };

/* Call admin method \p m with JSON \p req; returns the code, *out the response JSON. */
static int acall(struct ts_csi_driver *d, const char *m, const char *req, json_t **out,
		 char *msg)
{
	char path[128];
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int code = -1;

	snprintf(path, sizeof(path), "%s%s", TS_ADMIN_PREFIX, m);
	cr_assert_eq(ts_csi_handle(d, path, (const uint8_t *)req, strlen(req), &resp, &resp_len,
				   &code, msg, 512),
		     0);
	*out = NULL;
	if (code == 0) {
		*out = json_loadb((const char *)resp, resp_len, 0, NULL);
		cr_assert_not_null(*out);
	} else {
		cr_assert_null(resp);
	}
	ts_free(resp);
	return code;
}

Test(csi_cli, admin_service)
{
	struct tenv e;
	char msg[512], id[80], attach[600];
	json_t *r;

	tenv_init(&e, &tmem_backend_ops, tmem_backend_new(1ull << 30), 0);
	/* No data plane attached: volumes work, status says why it cannot answer. */
	cr_assert_eq(acall(e.d, "ClusterStatus", "{}", &r, msg), 14);
	cr_assert(strstr(msg, "no data plane status"), "%s", msg);
	cr_assert_eq(ts_csi_driver_set_admin(e.d, &g_fake_ops, NULL), 0);

	cr_assert_eq(acall(e.d, "ClusterStatus", "", &r, msg), 0);
	cr_assert_eq(json_array_size(json_object_get(r, "nodes")), 3);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(r, "nodes"), 2), "state")), "down");
	json_t *g = json_array_get(json_object_get(r, "array_groups"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(g, "state")), "degraded");
	cr_assert_eq(json_integer_value(json_object_get(g, "live_members")), 4);
	cr_assert_eq(json_integer_value(json_object_get(g, "degraded_stripes")), 7);
	cr_assert_eq(json_integer_value(json_object_get(g, "replicated_bytes")), 3 << 20);
	cr_assert_eq(json_integer_value(json_object_get(g, "unreplicated_bytes")), 0);
	cr_assert_eq(json_integer_value(json_object_get(g, "heal_total_bytes")), 0);
	cr_assert_eq(json_integer_value(json_object_get(g, "heals")), 1);
	cr_assert_float_eq(json_real_value(json_object_get(g, "heal_rate_mbps")), 1.5, 1e-9);
	cr_assert_eq(json_integer_value(json_object_get(g, "rebuilds")), 2);
	cr_assert_eq(json_integer_value(json_object_get(g, "rebuild_bytes")), 0);
	cr_assert_float_eq(json_real_value(json_object_get(g, "rebuild_rate_mbps")), 40.0, 1e-9);
	g = json_array_get(json_object_get(r, "array_groups"), 1);
	cr_assert_str_eq(json_string_value(json_object_get(g, "state")), "healing");
	{
		json_t *n0 = json_array_get(json_object_get(r, "nodes"), 0),
		       *n1 = json_array_get(json_object_get(r, "nodes"), 1);

		cr_assert_eq(json_integer_value(json_object_get(n0, "free_bytes")), 5);
		cr_assert_str_eq(json_string_value(json_object_get(n0, "portal")), "127.0.0.12:3270");
		cr_assert_null(json_object_get(n1, "portal"));
	}
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "volume_pool"), "used_bytes")), 40 << 20);
	json_decref(r);

	cr_assert_eq(acall(e.d, "VolumeCreate", "{\"name\":\"v1\",\"size_bytes\":5000000}", &r, msg), 0, "%s", msg);
	cr_assert_eq(json_integer_value(json_object_get(r, "size_bytes")), 5ull << 20); /* whole MiB */
	cr_assert_str_eq(json_string_value(json_object_get(r, "ec")), "4+2");
	cr_assert_str_eq(json_string_value(json_object_get(r, "access")), "block");
	snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(r, "id")));
	json_decref(r);
	/* A CSI-created volume shows up through the admin service too. */
	cr_assert_eq(tcreate(e.d, "from-csi", 1 << 20, false, id + 40, attach), 0);
	cr_assert_eq(acall(e.d, "VolumeList", "{}", &r, msg), 0);
	cr_assert_eq(json_array_size(json_object_get(r, "volumes")), 2);
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeGet", "{\"volume\":\"from-csi\"}", &r, msg), 0);
	cr_assert_str_eq(json_string_value(json_object_get(r, "access")), "mount");
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeGet", "{\"volume\":\"v1\"}", &r, msg), 0);
	cr_assert_str_eq(json_string_value(json_object_get(r, "id")), id);
	json_decref(r);
	{
		char req[200];

		snprintf(req, sizeof(req), "{\"volume\":\"%s\"}", id);
		cr_assert_eq(acall(e.d, "VolumeGet", req, &r, msg), 0);
		cr_assert_str_eq(json_string_value(json_object_get(r, "name")), "v1");
		json_decref(r);
	}

	/* Errors and their codes. */
	static const struct {
		const char *m, *req, *msg;
		int code;
	} bad[] = {
		{ "VolumeCreate", "{\"name\":\"v1\",\"size_bytes\":1048576}", "already exists", 6 },
		{ "VolumeCreate", "{\"name\":\"v2\"}", "size_bytes", 3 },
		{ "VolumeCreate", "{\"name\":\"v2\",\"size_bytes\":-1}", "size_bytes", 3 },
		{ "VolumeCreate", "{\"name\":\"v2\",\"size_bytes\":\"1Gi\"}", "size_bytes", 3 },
		{ "VolumeCreate", "{\"size_bytes\":1048576}", "'name' is required", 3 },
		{ "VolumeCreate", "{\"name\":7,\"size_bytes\":1048576}", "'name' must be a string", 3 },
		{ "VolumeCreate", "{\"name\":\"../x\",\"size_bytes\":1048576}", "name", 3 },
		{ "VolumeCreate", "{\"name\":\"v2\",\"size_bytes\":1048576,\"ec\":\"3+1\"}", "not available", 3 },
		{ "VolumeCreate", "{\"name\":\"v2\",\"size_bytes\":1048576,\"ec\":\"x\"}", "ec", 3 },
		{ "VolumeCreate", "{\"name\":\"v2\",\"size_bytes\":1000000000000000}", "exceeds", 11 },
		{ "VolumeCreate", "[1]", "JSON object", 3 },
		{ "VolumeCreate", "{\"name\":", "not JSON", 3 },
		{ "VolumeGet", "{}", "'volume'", 3 },
		{ "VolumeGet", "{\"volume\":\"nope\"}", "volume 'nope' not found", 5 },
		{ "VolumeDelete", "{\"volume\":\"nope\"}", "volume 'nope' not found", 5 },
	};
	for (size_t i = 0; i < TS_ARRAY_SIZE(bad); i++) {
		cr_assert_eq(acall(e.d, bad[i].m, bad[i].req, &r, msg), bad[i].code, "%s %s: %s",
			     bad[i].m, bad[i].req, msg);
		cr_assert(strstr(msg, bad[i].msg), "%s %s: '%s' lacks '%s'", bad[i].m, bad[i].req,
			  msg, bad[i].msg);
	}

	cr_assert_eq(acall(e.d, "VolumeDelete", "{\"volume\":\"v1\"}", &r, msg), 0);
	cr_assert_str_eq(json_string_value(json_object_get(r, "id")), id);
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeGet", "{\"volume\":\"v1\"}", &r, msg), 5);
	cr_assert_eq(e.st->count(e.st_ctx), 1);
	tenv_fini(&e);
}

/*
 * Random and mutated requests to every admin method (1 in 8 with
 * allocation failures injected): every answer is a known gRPC code, an OK
 * answer is a JSON object, nothing crashes or leaks (ASan), and afterwards
 * the store and VolumeList agree. TS_FUZZ_ITERS and TS_FUZZ_SEED override
 * the count and the seed.
 */
Test(csi_cli, admin_fuzz, .timeout = 120)
{
	static const char *const methods[] = { "ClusterStatus", "VolumeCreate", "VolumeList",
					       "VolumeGet", "VolumeDelete" };
	static const char *const seeds[] = {
		"{}",
		"{\"name\":\"f1\",\"size_bytes\":1048576}",
		"{\"name\":\"f2\",\"size_bytes\":2097152,\"ec\":\"4+2\"}",
		"{\"volume\":\"f1\"}",
		"{\"volume\":\"f2\"}",
		"{\"name\":\"f3\",\"size_bytes\":1,\"ec\":\"3+1\"}",
	};
	const char *env = getenv("TS_FUZZ_ITERS");
	long iters = env ? atol(env) : 3000;
	const char *seed = getenv("TS_FUZZ_SEED");
	uint64_t x = seed ? strtoull(seed, NULL, 0) | 1 : 0x9e3779b97f4a7c15ull;
	struct tenv e;
	json_t *r;

	tenv_init(&e, &tmem_backend_ops, tmem_backend_new(1ull << 30), 0);
	cr_assert_eq(ts_csi_driver_set_admin(e.d, &g_fake_ops, NULL), 0);
	for (long i = 0; i < iters; i++) {
		char path[128], msg[512];
		uint8_t buf[256], *resp = NULL;
		size_t len, resp_len = 0;
		int code = -1;

#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
		snprintf(path, sizeof(path), "%s%s", TS_ADMIN_PREFIX,
			 methods[RND() % TS_ARRAY_SIZE(methods)]);
		if (RND() % 4 == 0) { /* random bytes */
			len = RND() % sizeof(buf);
			for (size_t j = 0; j < len; j++)
				buf[j] = (uint8_t)RND();
		} else { /* a valid request, mutated a few times */
			const char *s = seeds[RND() % TS_ARRAY_SIZE(seeds)];

			len = strlen(s);
			memcpy(buf, s, len);
			for (int k = (int)(RND() % 4); k > 0 && len > 0; k--) {
				size_t at = RND() % len;

				switch (RND() % 3) {
				case 0: buf[at] = (uint8_t)RND(); break;
				case 1: len = at; break;
				default: buf[at] = "{}[]\":,0123456789-ae+/."[RND() % 24]; break;
				}
			}
		}
		if (RND() % 8 == 0)
			ts_alloc_fail_after((long)(RND() % 16));
		cr_assert_eq(ts_csi_handle(e.d, path, buf, len, &resp, &resp_len, &code, msg,
					   sizeof(msg)),
			     0);
		ts_alloc_fail_after(-1);
		cr_assert(code >= 0 && code <= 14, "code %d", code);
		if (code == 0) {
			r = json_loadb((const char *)resp, resp_len, 0, NULL);
			cr_assert(json_is_object(r), "%s: OK with a non-object", path);
			json_decref(r);
		} else {
			cr_assert_null(resp);
			cr_assert(msg[0], "%s: code %d without a message", path, code);
		}
		ts_free(resp);
#undef RND
	}
	cr_assert_eq(acall(e.d, "VolumeList", "{}", &r, (char[512]){ 0 }), 0);
	cr_assert_eq(json_array_size(json_object_get(r, "volumes")), e.st->count(e.st_ctx));
	json_decref(r);
	tenv_fini(&e);
}

/* The snapshot forest, whole and narrowed to one volume's tree. */
Test(csi_cli, render_snapshot_tree)
{
	const char *resp =
		"{\"layers\":["
		"{\"id\":1,\"parent\":0,\"depth\":0,\"kind\":\"snapshot\",\"name\":\"snap-1\","
		"\"volume\":2,\"size_bytes\":67108864,\"blocks\":5,\"volume_id\":\"tv-0000000000000002\","
		"\"volume_name\":\"db\"},"
		"{\"id\":3,\"parent\":1,\"depth\":1,\"kind\":\"head\",\"name\":\"\",\"volume\":2,"
		"\"size_bytes\":67108864,\"blocks\":1,\"volume_id\":\"tv-0000000000000002\",\"volume_name\":\"db\"},"
		"{\"id\":4,\"parent\":1,\"depth\":1,\"kind\":\"head\",\"name\":\"\",\"volume\":5,"
		"\"size_bytes\":67108864,\"blocks\":0,\"volume_id\":\"tv-0000000000000005\",\"volume_name\":\"db-clone\"},"
		"{\"id\":6,\"parent\":0,\"depth\":0,\"kind\":\"head\",\"name\":\"\",\"volume\":7,"
		"\"size_bytes\":1048576,\"blocks\":0,\"volume_id\":\"tv-0000000000000007\",\"volume_name\":\"other\"}]}";
	json_error_t jerr;
	json_t *j = json_loads(resp, 0, &jerr);
	char *buf = NULL;
	size_t len = 0;
	FILE *f;

	cr_assert_not_null(j);
	f = open_memstream(&buf, &len);
	cr_assert_eq(ts_cli_render_tree(j, NULL, f), 0);
	fclose(f);
	cr_assert_not_null(strstr(buf, "snap-1"));
	cr_assert_not_null(strstr(buf, "  └ db "));
	cr_assert_not_null(strstr(buf, "  └ db-clone"));
	cr_assert_not_null(strstr(buf, "\nother "));
	free(buf);

	f = open_memstream(&buf, &len);
	cr_assert_eq(ts_cli_render_tree(j, "db-clone", f), 0);
	fclose(f);
	cr_assert_not_null(strstr(buf, "snap-1"), "the clone's tree includes its base");
	cr_assert_null(strstr(buf, "other"), "other trees are left out");
	free(buf);

	f = open_memstream(&buf, &len);
	cr_assert_eq(ts_cli_render_tree(j, "tv-0000000000000007", f), 0);
	fclose(f);
	cr_assert_null(strstr(buf, "snap-1"));
	cr_assert_not_null(strstr(buf, "other"));
	free(buf);

	f = open_memstream(&buf, &len);
	cr_assert_eq(ts_cli_render_tree(j, "missing", f), -ENOENT);
	fclose(f);
	free(buf);
	json_decref(j);
}

/* VolumeModify: the CLI's `volume qos`, through ControllerModifyVolume. */
Test(csi_cli, admin_volume_modify)
{
	struct tenv e;
	char msg[512];
	json_t *r;

	tenv_init(&e, &tmem_qos_backend_ops, tmem_backend_new(1ull << 30), 0);
	cr_assert_eq(acall(e.d, "VolumeCreate", "{\"name\":\"q\",\"size_bytes\":1048576}", &r, msg),
		     0, "%s", msg);
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeModify",
			   "{\"volume\":\"q\",\"parameters\":{\"iopsLimit\":\"100\",\"readBpsLimit\":\"2Mi\"}}",
			   &r, msg),
		     0, "%s", msg);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "qos"), "iopsLimit")), 100);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "qos"), "readBpsLimit")),
		     2 << 20);
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeGet", "{\"volume\":\"q\"}", &r, msg), 0, "%s", msg);
	cr_assert_eq(json_integer_value(json_object_get(json_object_get(r, "qos"), "iopsLimit")), 100);
	json_decref(r);
	cr_assert_eq(acall(e.d, "VolumeModify",
			   "{\"volume\":\"q\",\"parameters\":{\"frob\":\"1\"}}", &r, msg),
		     3);
	cr_assert(strstr(msg, "unknown key 'frob'"), "%s", msg);
	cr_assert_eq(acall(e.d, "VolumeModify", "{\"volume\":\"q\",\"parameters\":{\"iopsLimit\":5}}",
			   &r, msg),
		     3);
	cr_assert_eq(acall(e.d, "VolumeModify", "{\"volume\":\"q\"}", &r, msg), 3);
	cr_assert_eq(acall(e.d, "VolumeModify",
			   "{\"volume\":\"nope\",\"parameters\":{\"iopsLimit\":\"1\"}}", &r, msg),
		     5);
	tenv_fini(&e);
}
