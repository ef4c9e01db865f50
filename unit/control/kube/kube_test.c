/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes client's pure parts, no server: the YAML subset and the
 * kubeconfig reader (kubectl's block style, hand-written flow style,
 * malformed inputs), in-cluster configuration, base64, the status -> errno
 * table, MicroTime, the watch stream splitter at every chunk boundary and the
 * event checks, and a seeded fuzz of a few thousand mutated event streams
 * and kubeconfigs (nothing may crash or leak; run under ASan).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "control/kube/kube_internal.h"
#include "dataplane/common/ts_common.h"

static json_t *yaml(const char *s)
{
	json_t *j = NULL;

	cr_assert_eq(kube_yaml_parse(s, strlen(s), &j), 0, "%s", s);
	return j;
}

static void yaml_bad(const char *s)
{
	json_t *j = NULL;
	int rc = kube_yaml_parse(s, strlen(s), &j);

	cr_assert_eq(rc, -EINVAL, "accepted: %s", s);
}

static void same(json_t *j, const char *want_json)
{
	json_error_t e;
	json_t *w = json_loads(want_json, JSON_DECODE_ANY, &e);

	cr_assert_not_null(w, "%s", want_json);
	char *got = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);

	cr_assert(json_equal(j, w), "got %s want %s", got, want_json);
	free(got);
	json_decref(w);
	json_decref(j);
}

Test(kube_yaml, block_flow_scalars)
{
	same(yaml("a: 1\nb: -2\nc: true\nd: ~\ne: text with spaces\nf: 'it''s'\n"
		  "g: \"q\\\"\\u00e9\\n\"\nh:\n"),
	     "{\"a\":1,\"b\":-2,\"c\":true,\"d\":null,\"e\":\"text with spaces\",\"f\":\"it's\","
	     "\"g\":\"q\\\"\\u00e9\\n\",\"h\":null}");
	same(yaml("# comment\n---\nlist:\n- a\n-   b # trailing\n- - x\n  - y\nm:\n  - k: v\n    k2: v2\n  - {x: 1}\n"),
	     "{\"list\":[\"a\",\"b\",[\"x\",\"y\"]],\"m\":[{\"k\":\"v\",\"k2\":\"v2\"},{\"x\":1}]}");
	same(yaml("s: https://127.0.0.1:6443/x#frag\nurl: a:b\n"),
	     "{\"s\":\"https://127.0.0.1:6443/x#frag\",\"url\":\"a:b\"}");
	same(yaml("f: [{name: e2e, cluster: {server: \"https://h:1\", x: [1, 2,]}},\n   {name: b}]\n"),
	     "{\"f\":[{\"name\":\"e2e\",\"cluster\":{\"server\":\"https://h:1\",\"x\":[1,2]}},{\"name\":\"b\"}]}");
	same(yaml("e: {}\nl: []\n"), "{\"e\":{},\"l\":[]}");
	same(yaml("  \n# only comments\n"), "null");
	same(yaml("\"quoted key\": 1\n"), "{\"quoted key\":1}");
}

Test(kube_yaml, refuses_what_it_does_not_implement)
{
	static const char *const bad[] = {
		"a: &x 1\n", "a: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  t\n",
		"a: 1\na: 2\n", "a:\n\tb: 1\n", "a: 'open\n", "a: \"open\n", "a: [1, 2\n",
		"a: {b: 1\n", "---\na: 1\n---\nb: 2\n", "a: 1\n  b: 2\n", " a: 1\nb: 2\n",
		"a:\n  b: 1\n c: 2\n", "- a\nb: 1\n", "a: \"\\q\"\n", "a: \"\\u0000\"\n",
		"%YAML 1.2\na: 1\n", "a: [1] x\n", "a: 'x' y\n", "? complex\n",
	};

	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad); i++)
		yaml_bad(bad[i]);
	char nul[] = "a: 1\nb\0: 2\n";
	json_t *j = NULL;

	cr_assert_eq(kube_yaml_parse(nul, sizeof(nul) - 1, &j), -EINVAL);
	/* deep nesting is bounded, not a stack overflow */
	char deep[4096];
	size_t o = 0;

	o += (size_t)snprintf(deep, sizeof(deep), "a: ");
	for (unsigned i = 0; i < 1000; i++)
		deep[o++] = '[';
	deep[o++] = '\n';
	deep[o] = 0;
	yaml_bad(deep);
}

Test(kube_base64, decode)
{
	uint8_t *out = NULL;
	size_t len = 0;

	cr_assert_eq(kube_base64_decode("aGVsbG8=", 8, &out, &len), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(memcmp(out, "hello", 5), 0);
	ts_free(out);
	cr_assert_eq(kube_base64_decode("aGVs\nbG8", 8, &out, &len), 0, "unpadded, wrapped");
	cr_assert_eq(len, 5);
	ts_free(out);
	static const char *const bad[] = { "a", "aGVsbG8==", "aG=Vs", "aGV*", "aGVsbG9=" };

	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad); i++)
		cr_assert_eq(kube_base64_decode(bad[i], strlen(bad[i]), &out, &len), -EINVAL, "%s",
			     bad[i]);
}

/* ---- kubeconfig ---- */

static const char *const g_kubectl_style =
	"apiVersion: v1\n"
	"clusters:\n"
	"- cluster:\n"
	"    certificate-authority-data: Y2EtcGVt\n"
	"    server: https://10.0.0.1:6443/\n"
	"  name: prod\n"
	"- cluster:\n"
	"    certificate-authority: certs/ca.crt\n"
	"    insecure-skip-tls-verify: true\n"
	"    server: http://127.0.0.1:8080\n"
	"  name: dev\n"
	"contexts:\n"
	"- context:\n"
	"    cluster: prod\n"
	"    user: admin\n"
	"  name: prod-admin\n"
	"- context:\n"
	"    cluster: dev\n"
	"    user: dev-user\n"
	"  name: dev\n"
	"current-context: prod-admin\n"
	"kind: Config\n"
	"preferences: {}\n"
	"users:\n"
	"- name: admin\n"
	"  user:\n"
	"    client-certificate-data: Y2VydA==\n"
	"    client-key-data: a2V5\n"
	"- name: dev-user\n"
	"  user:\n"
	"    token: abc.def\n";

Test(kube_config, kubectl_style_current_context_only)
{
	struct kube_config cfg;

	cr_assert_eq(kube_config_parse(g_kubectl_style, strlen(g_kubectl_style), "/etc/k", &cfg), 0);
	cr_assert_str_eq(cfg.server, "https://10.0.0.1:6443");
	cr_assert_eq(cfg.ca.len, 6);
	cr_assert_eq(memcmp(cfg.ca.data, "ca-pem", 6), 0);
	cr_assert_eq(memcmp(cfg.cert.data, "cert", 4), 0);
	cr_assert_eq(memcmp(cfg.key.data, "key", 3), 0);
	cr_assert_null(cfg.token);
	cr_assert(!cfg.insecure);
	kube_config_clear(&cfg);

	char *dev = strdup(g_kubectl_style);
	char *p = strstr(dev, "current-context: prod-admin");

	memcpy(p, "current-context: dev       ", 27);
	cr_assert_eq(kube_config_parse(dev, strlen(dev), "/etc/k", &cfg), 0);
	cr_assert_str_eq(cfg.server, "http://127.0.0.1:8080");
	cr_assert_str_eq(cfg.ca_file, "/etc/k/certs/ca.crt", "relative to the kubeconfig");
	cr_assert_str_eq(cfg.token, "abc.def");
	cr_assert(cfg.insecure);
	kube_config_clear(&cfg);
	free(dev);
}

Test(kube_config, flow_style_of_e2e)
{
	static const char *const k =
		"apiVersion: v1\nkind: Config\n"
		"clusters: [{name: e2e, cluster: {server: \"https://127.0.0.1:1\", certificate-authority: \"/p/ca.crt\"}}]\n"
		"contexts: [{name: e2e, context: {cluster: e2e, user: u}}]\n"
		"current-context: e2e\n"
		"users: [{name: u, user: {client-certificate: \"/p/a.crt\", client-key: \"/p/a.key\"}}]\n";
	struct kube_config cfg;

	cr_assert_eq(kube_config_parse(k, strlen(k), "/x", &cfg), 0);
	cr_assert_str_eq(cfg.server, "https://127.0.0.1:1");
	cr_assert_str_eq(cfg.ca_file, "/p/ca.crt");
	cr_assert_str_eq(cfg.cert_file, "/p/a.crt");
	cr_assert_str_eq(cfg.key_file, "/p/a.key");
	kube_config_clear(&cfg);
}

Test(kube_config, malformed)
{
	static const char *const bad[] = {
		"",
		"[1, 2]\n",
		"current-context: x\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'ftp://h'}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 5}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://h h'}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: '!!'}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {server: 'https://h', insecure-skip-tls-verify: 'yes'}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: x}}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {client-certificate: /a}}]\n",
		"current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {token: [1]}}]\n",
	};
	struct kube_config cfg;

	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad); i++)
		cr_assert_eq(kube_config_parse(bad[i], strlen(bad[i]), "/", &cfg), -EINVAL, "%u: %s", i,
			     bad[i]);
}

Test(kube_config, in_cluster)
{
	char dir[] = "/tmp/ts_kube_sa_XXXXXX", path[128];
	struct ts_kube *c = NULL;
	struct ts_kube_opts o = { 0 };
	FILE *f;

	cr_assert_not_null(mkdtemp(dir));
	unsetenv("KUBERNETES_SERVICE_HOST");
	o.sa_dir = dir;
	cr_assert_eq(ts_kube_open(NULL, &o, &c), -ENOENT, "no environment");
	setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), -ENOENT, "no ca.crt");
	snprintf(path, sizeof(path), "%s/ca.crt", dir);
	f = fopen(path, "w");
	fputs("pem", f);
	fclose(f);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), -ENOENT, "no token");
	snprintf(path, sizeof(path), "%s/token", dir);
	f = fopen(path, "w");
	fputs("bad token\n", f);
	fclose(f);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), -EINVAL, "a token with a blank");
	f = fopen(path, "w");
	fputs("eyJ.abc.def\n", f);
	fclose(f);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), 0);
	cr_assert_str_eq(ts_kube_server(c), "https://10.96.0.1:443");
	ts_kube_close(c);
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), 0);
	cr_assert_str_eq(ts_kube_server(c), "https://[fd00::1]:443");
	ts_kube_close(c);
	setenv("KUBERNETES_SERVICE_PORT", "44x", 1);
	cr_assert_eq(ts_kube_open(NULL, &o, &c), -EINVAL);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	cr_assert_eq(system(path), 0);
	ts_kube_close(NULL);
}

/* ---- errors, times ---- */

Test(kube_errors, status_table)
{
	cr_assert_eq(kube_status_errno(200, KV_GET), 0);
	cr_assert_eq(kube_status_errno(201, KV_CREATE), 0);
	cr_assert_eq(kube_status_errno(404, KV_GET), -ENOENT);
	cr_assert_eq(kube_status_errno(409, KV_CREATE), -EEXIST);
	cr_assert_eq(kube_status_errno(409, KV_UPDATE), -ESTALE);
	cr_assert_eq(kube_status_errno(409, KV_PATCH), -ESTALE);
	cr_assert_eq(kube_status_errno(410, KV_WATCH), -ESTALE);
	cr_assert_eq(kube_status_errno(401, KV_GET), -EACCES);
	cr_assert_eq(kube_status_errno(403, KV_LIST), -EACCES);
	cr_assert_eq(kube_status_errno(422, KV_CREATE), -EINVAL);
	cr_assert_eq(kube_status_errno(400, KV_UPDATE), -EINVAL);
	cr_assert_eq(kube_status_errno(429, KV_GET), -EAGAIN);
	cr_assert_eq(kube_status_errno(500, KV_GET), -EAGAIN);
	cr_assert_eq(kube_status_errno(503, KV_UPDATE), -EAGAIN);
	cr_assert_eq(kube_status_errno(302, KV_GET), -EPROTO);
	cr_assert_eq(kube_status_errno(0, KV_GET), -EPROTO);
	cr_assert_eq(kube_curl_errno(CURLE_COULDNT_CONNECT), -EAGAIN);
	cr_assert_eq(kube_curl_errno(CURLE_OPERATION_TIMEDOUT), -EAGAIN);
	cr_assert_eq(kube_curl_errno(CURLE_PEER_FAILED_VERIFICATION), -EACCES);
}

Test(kube_time, microtime)
{
	uint64_t us = 0;
	char s[32];

	cr_assert_eq(ts_kube_microtime_parse("2026-01-02T03:04:05.123456Z", &us), 0);
	ts_kube_microtime_format(us, s);
	cr_assert_str_eq(s, "2026-01-02T03:04:05.123456Z");
	cr_assert_eq(ts_kube_microtime_parse("2026-01-02T05:04:05.123456+02:00", &us), 0);
	ts_kube_microtime_format(us, s);
	cr_assert_str_eq(s, "2026-01-02T03:04:05.123456Z");
	cr_assert_eq(ts_kube_microtime_parse("2026-01-02T03:04:05Z", &us), 0);
	cr_assert_eq(us % 1000000, 0);
	cr_assert_eq(ts_kube_microtime_parse("2026-01-02T03:04:05.1Z", &us), 0);
	cr_assert_eq(us % 1000000, 100000);
	static const char *const bad[] = { "", "2026-01-02", "2026-13-02T03:04:05Z",
					   "2026-02-30T03:04:05Z", "2026-01-02T03:04:05",
					   "2026-01-02T03:04:05.Z", "2026-01-02T03:04:05.1234567890Z",
					   "2026-01-02T03:04:05+0200", "1969-12-31T23:59:59Z",
					   "2026-01-02T03:04:05Zjunk", "2026-01-02 03:04:05Z" };

	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad); i++)
		cr_assert_eq(ts_kube_microtime_parse(bad[i], &us), -EINVAL, "%s", bad[i]);
}

/* ---- watch stream ---- */

static const char g_stream[] =
	"{\"type\":\"ADDED\",\"object\":{\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"10\"},\"data\":{\"v\":\"}{\\\"\"}}}\n"
	"{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"11\"},\"data\":{\"v\":\"\\u00e9[\"}}}\n"
	"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"15\"}}}\r\n"
	"  {\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"16\"}}}"
	"{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"message\":\"too old\"}}\n";

struct got {
	unsigned n, errors, bad;
	enum ts_kube_event_type types[16];
	char rv[16][8];
	long code;
};

static int on_obj(void *arg, json_t *obj)
{
	struct got *g = arg;
	struct kube_event e;
	int rc = kube_event_check(obj, &e);

	if (rc < 0) {
		g->bad++;
		return 0;
	}
	if (rc == 1) {
		g->errors++;
		g->code = e.error_code;
		return 0;
	}
	if (g->n < 16) {
		g->types[g->n] = e.type;
		snprintf(g->rv[g->n], 8, "%s", e.rv);
	}
	g->n++;
	return 0;
}

Test(kube_stream, any_chunking_gives_the_same_events)
{
	size_t len = sizeof(g_stream) - 1;

	for (size_t cut1 = 0; cut1 <= len; cut1 += 1) {
		for (size_t step = 1; step <= 7; step += 3) {
			struct kube_stream s;
			struct got g = { 0 };

			kube_stream_init(&s, 4096);
			cr_assert_eq(kube_stream_feed(&s, g_stream, cut1, on_obj, &g), 0);
			for (size_t o = cut1; o < len; o += step)
				cr_assert_eq(kube_stream_feed(&s, g_stream + o, TS_MIN(step, len - o),
							      on_obj, &g),
					     0);
			cr_assert_eq(kube_stream_pending(&s), 0);
			kube_stream_free(&s);
			cr_assert_eq(g.n, 4);
			cr_assert_eq(g.bad, 0);
			cr_assert_eq(g.types[0], TS_KUBE_ADDED);
			cr_assert_eq(g.types[1], TS_KUBE_MODIFIED);
			cr_assert_eq(g.types[2], TS_KUBE_BOOKMARK);
			cr_assert_eq(g.types[3], TS_KUBE_DELETED);
			cr_assert_str_eq(g.rv[2], "15");
			cr_assert_str_eq(g.rv[3], "16");
			cr_assert_eq(g.errors, 1);
			cr_assert_eq(g.code, 410);
		}
	}
}

Test(kube_stream, malformed)
{
	static const char *const bad_stream[] = { "x{}", "[1]", "{\"a\":1}}", "{\"a\":}",
						  "{\"a\":1,\"a\":2}" };
	static const char *const bad_event[] = {
		"{}", "{\"type\":\"ADDED\"}", "{\"type\":\"ADDED\",\"object\":[]}",
		"{\"type\":\"NOPE\",\"object\":{}}", "{\"type\":1,\"object\":{}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":5}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"\"}}}",
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"1&x=2\"}}}",
		"{\"type\":\"ERROR\",\"object\":{\"code\":\"410\"}}",
	};

	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad_stream); i++) {
		struct kube_stream s;
		struct got g = { 0 };

		kube_stream_init(&s, 4096);
		cr_assert_eq(kube_stream_feed(&s, bad_stream[i], strlen(bad_stream[i]), on_obj, &g),
			     -EPROTO, "%s", bad_stream[i]);
		kube_stream_free(&s);
	}
	for (unsigned i = 0; i < TS_ARRAY_SIZE(bad_event); i++) {
		json_error_t e;
		json_t *j = json_loads(bad_event[i], 0, &e);
		struct kube_event ev;

		cr_assert_eq(kube_event_check(j, &ev), -EPROTO, "%s", bad_event[i]);
		json_decref(j);
	}
	/* an object beyond the bound */
	struct kube_stream s;
	struct got g = { 0 };
	char big[300];

	memset(big, ' ', sizeof(big));
	memcpy(big, "{\"a\":\"", 6);
	kube_stream_init(&s, 128);
	cr_assert_eq(kube_stream_feed(&s, big, sizeof(big), on_obj, &g), -EPROTO);
	kube_stream_free(&s);
}

/* ---- fuzz ---- */

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

/* A mutated copy of \p in (flips, inserts of structural bytes, deletes, truncation). */
static char *mutate(const char *in, size_t len, size_t *outlen)
{
	static const char pieces[] = "{}[]\",:\\\n 0a-";
	char *b = ts_malloc(len * 2 + 64);
	size_t n = len;
	unsigned k = 1 + (unsigned)(rnd() % 8);

	memcpy(b, in, len);
	for (unsigned i = 0; i < k && n; i++) {
		size_t at = (size_t)(rnd() % n);

		switch (rnd() % 4) {
		case 0: b[at] ^= (char)(1u << (rnd() % 8)); break;
		case 1:
			if (n < len * 2 + 32) {
				memmove(b + at + 1, b + at, n - at);
				b[at] = pieces[rnd() % (sizeof(pieces) - 1)];
				n++;
			}
			break;
		case 2: memmove(b + at, b + at + 1, n - at - 1); n--; break;
		default: n = at; break;
		}
	}
	*outlen = n;
	return b;
}

Test(kube_fuzz, mutated_event_streams)
{
	size_t len = sizeof(g_stream) - 1;
	unsigned ok = 0, refused = 0;

	for (unsigned it = 0; it < 4000; it++) {
		size_t n = 0;
		char *m = mutate(g_stream, len, &n);
		struct kube_stream s;
		struct got g = { 0 };
		int rc = 0;

		kube_stream_init(&s, 1024);
		for (size_t o = 0; o < n && rc == 0;) {
			size_t step = 1 + (size_t)(rnd() % 40);

			step = TS_MIN(step, n - o);
			rc = kube_stream_feed(&s, m + o, step, on_obj, &g);
			o += step;
		}
		cr_assert(rc == 0 || rc == -EPROTO, "rc %d", rc);
		if (rc)
			refused++;
		else
			ok++;
		kube_stream_free(&s);
		ts_free(m);
	}
	cr_assert_gt(ok, 0);
	cr_assert_gt(refused, 0);
}

Test(kube_fuzz, mutated_kubeconfigs)
{
	size_t len = strlen(g_kubectl_style);
	unsigned ok = 0, refused = 0;

	for (unsigned it = 0; it < 3000; it++) {
		size_t n = 0;
		char *m = mutate(g_kubectl_style, len, &n);
		struct kube_config cfg;
		int rc = kube_config_parse(m, n, "/k", &cfg);

		cr_assert(rc == 0 || rc == -EINVAL, "rc %d", rc);
		if (rc == 0) {
			ok++;
			cr_assert_not_null(cfg.server);
			kube_config_clear(&cfg);
		} else {
			refused++;
		}
		ts_free(m);
	}
	cr_assert_gt(ok, 0);
	cr_assert_gt(refused, 0);
}
