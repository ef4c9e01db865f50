/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes client: configuration, the request core, errors, CRUD, list.
 *
 * Workload: the control plane's metadata (a few hundred small objects),
 * node heartbeats twice a second per node, a handful of watches. So one
 * libcurl easy handle per request in flight, kept in a small pool of idle
 * handles so the TLS session and connection are reused (a fresh TLS
 * handshake per heartbeat would cost more than the heartbeat). No multi
 * handle, no event loop: callers are threads that block.
 *
 * Configuration is resolved once at open into a struct kube_config (files
 * read, -data fields decoded); every request sets the same TLS options
 * from it (blobs for *-data, file names otherwise). In-cluster tokens are
 * re-read every 60 s (bound service account tokens rotate).
 *
 * Errors follow kube.h. Reads are retried on -EAGAIN (5xx, 429, transport)
 * with exponential backoff and jitter; writes never, since a lost answer
 * does not mean a lost write.
 *
 * THREAD SAFETY: pool_lock guards the idle-handle pool, token_lock the
 * token cache and the jitter state; never both at once. Everything else is
 * immutable after open.
 */
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "control/kube/kube_internal.h"
#include "dataplane/common/ts_common.h"

#define POOL_MAX 8
#define TOKEN_REFRESH_NS (60ull * 1000000000ull)
#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct ts_kube {
	struct kube_config cfg;
	struct ts_kube_opts o;
	pthread_mutex_t pool_lock;
	CURL *pool[POOL_MAX];
	unsigned npool;
	pthread_mutex_t token_lock;
	char *token;             /* current bearer token (cfg.token or the file's) */
	uint64_t token_read_ns;
	uint64_t rng;
};

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init;

static void curl_init_once(void)
{
	g_curl_init = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- errors ---- */

int kube_status_errno(long status, enum kube_verb verb)
{
	if (status >= 200 && status < 300)
		return 0;
	switch (status) {
	case 400:
	case 422:
		return -EINVAL;
	case 401:
	case 403:
		return -EACCES;
	case 404:
		return -ENOENT;
	case 409:
		return verb == KV_CREATE ? -EEXIST : -ESTALE;
	case 410:
		return -ESTALE;
	case 429:
		return -EAGAIN;
	default:
		return status >= 500 && status < 600 ? -EAGAIN : -EPROTO;
	}
}

int kube_curl_errno(CURLcode cc)
{
	switch (cc) {
	case CURLE_OK:
		return 0;
	case CURLE_OUT_OF_MEMORY:
		return -ENOMEM;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
		return -EACCES;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return -EINVAL;
	case CURLE_ABORTED_BY_CALLBACK:
		return -ECANCELED;
	case CURLE_WRITE_ERROR:
		return -EPROTO; /* our sink refused the body (too large, malformed stream) */
	default:
		return -EAGAIN;
	}
}

/* ---- configuration ---- */

void kube_config_clear(struct kube_config *cfg)
{
	ts_free(cfg->server);
	ts_free(cfg->ca_file);
	ts_free(cfg->cert_file);
	ts_free(cfg->key_file);
	ts_free(cfg->ca.data);
	ts_free(cfg->cert.data);
	ts_free(cfg->key.data);
	ts_free(cfg->token);
	ts_free(cfg->token_file);
	memset(cfg, 0, sizeof(*cfg));
}

/* The entry of list \p arr whose "name" is \p name, its member \p field (an object), or NULL. */
static json_t *named(json_t *arr, const char *name, const char *field)
{
	size_t i;
	json_t *e;

	if (!json_is_array(arr))
		return NULL;
	json_array_foreach(arr, i, e) {
		json_t *n = json_object_get(e, "name");

		if (json_is_string(n) && !strcmp(json_string_value(n), name)) {
			json_t *v = json_object_get(e, field);

			return json_is_object(v) ? v : NULL;
		}
	}
	return NULL;
}

/* A string field: absent is fine (*out untouched), a non-string -EINVAL. */
static int opt_str(json_t *obj, const char *key, const char **out)
{
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 4096 ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return -EINVAL;
	*out = json_string_value(v);
	return 0;
}

/* \p name relative to \p base_dir unless absolute. */
static char *resolve(const char *base_dir, const char *name)
{
	size_t n;
	char *s;

	if (name[0] == '/' || !base_dir)
		return ts_strdup(name);
	n = strlen(base_dir) + strlen(name) + 2;
	s = ts_malloc(n);
	if (s)
		snprintf(s, n, "%s/%s", base_dir, name);
	return s;
}

static int set_server(struct kube_config *cfg, const char *server)
{
	size_t n = strlen(server);

	if (n < 8 || n > 512 || (strncmp(server, "https://", 8) && strncmp(server, "http://", 7)))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)server[i] <= ' ' || server[i] == 0x7f)
			return -EINVAL;
	while (n > 8 && server[n - 1] == '/')
		n--;
	cfg->server = ts_malloc(n + 1);
	if (!cfg->server)
		return -ENOMEM;
	memcpy(cfg->server, server, n);
	cfg->server[n] = '\0';
	return 0;
}

static int set_file_or_data(const char *base_dir, const char *file, const char *data,
			    char **fout, struct kube_blob *bout)
{
	if (data)
		return kube_base64_decode(data, strlen(data), &bout->data, &bout->len);
	if (file) {
		*fout = resolve(base_dir, file);
		return *fout ? 0 : -ENOMEM;
	}
	return 0;
}

int kube_config_parse(const char *text, size_t len, const char *base_dir,
		      struct kube_config *cfg)
{
	const char *cur = NULL, *cname = NULL, *uname = NULL, *server = NULL, *s1 = NULL,
		   *s2 = NULL, *tok = NULL, *tokf = NULL;
	json_t *root = NULL, *ctx, *cl, *us = NULL, *v;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	rc = kube_yaml_parse(text, len, &root);
	if (rc)
		return rc;
	rc = -EINVAL;
	if (!json_is_object(root) || opt_str(root, "current-context", &cur) || !cur)
		goto fail;
	ctx = named(json_object_get(root, "contexts"), cur, "context");
	if (!ctx || opt_str(ctx, "cluster", &cname) || opt_str(ctx, "user", &uname) || !cname)
		goto fail;
	cl = named(json_object_get(root, "clusters"), cname, "cluster");
	if (!cl || opt_str(cl, "server", &server) || !server)
		goto fail;
	rc = set_server(cfg, server);
	if (rc)
		goto fail;
	rc = -EINVAL;
	v = json_object_get(cl, "insecure-skip-tls-verify");
	if (v && !json_is_boolean(v))
		goto fail;
	cfg->insecure = json_is_true(v);
	if (opt_str(cl, "certificate-authority", &s1) ||
	    opt_str(cl, "certificate-authority-data", &s2))
		goto fail;
	rc = set_file_or_data(base_dir, s1, s2, &cfg->ca_file, &cfg->ca);
	if (rc)
		goto fail;
	rc = -EINVAL;
	if (uname) {
		us = named(json_object_get(root, "users"), uname, "user");
		if (!us)
			goto fail;
		if (json_object_get(us, "exec") || json_object_get(us, "auth-provider") ||
		    json_object_get(us, "username")) {
			ts_log(TS_LOG_ERROR, "kube",
			       "kubeconfig user=%s: exec, auth-provider and basic auth are not supported",
			       uname);
			goto fail;
		}
		s1 = s2 = NULL;
		if (opt_str(us, "client-certificate", &s1) ||
		    opt_str(us, "client-certificate-data", &s2))
			goto fail;
		rc = set_file_or_data(base_dir, s1, s2, &cfg->cert_file, &cfg->cert);
		if (rc)
			goto fail;
		rc = -EINVAL;
		s1 = s2 = NULL;
		if (opt_str(us, "client-key", &s1) || opt_str(us, "client-key-data", &s2))
			goto fail;
		rc = set_file_or_data(base_dir, s1, s2, &cfg->key_file, &cfg->key);
		if (rc)
			goto fail;
		rc = -EINVAL;
		if (opt_str(us, "token", &tok) || opt_str(us, "tokenFile", &tokf))
			goto fail;
		/* a certificate needs its key and the other way round */
		if ((cfg->cert_file || cfg->cert.data) != (cfg->key_file || cfg->key.data))
			goto fail;
		if (tok && !(cfg->token = ts_strdup(tok)))
			goto nomem;
		if (tokf && !(cfg->token_file = resolve(base_dir, tokf)))
			goto nomem;
	}
	json_decref(root);
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	json_decref(root);
	kube_config_clear(cfg);
	return rc;
}

int kube_config_in_cluster(const char *sa_dir, struct kube_config *cfg)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	char url[600], path[4096];
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	if (!sa_dir)
		sa_dir = SA_DIR;
	if (!host || !port || !*host || !*port)
		return -ENOENT;
	if (strlen(host) > 256 || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
		return -EINVAL;
	/* an IPv6 service address goes in brackets */
	snprintf(url, sizeof(url), strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
		 port);
	rc = set_server(cfg, url);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/ca.crt", sa_dir);
	if (access(path, R_OK)) {
		rc = -ENOENT;
		goto fail;
	}
	rc = -ENOMEM;
	if (!(cfg->ca_file = ts_strdup(path)))
		goto fail;
	snprintf(path, sizeof(path), "%s/token", sa_dir);
	if (!(cfg->token_file = ts_strdup(path)))
		goto fail;
	return 0;
fail:
	kube_config_clear(cfg);
	return rc;
}

/* Read the token file: trimmed, printable, bounded. 0 and *out (ts_malloc) or -errno. */
static int read_token(const char *path, char **out)
{
	char *buf = NULL;
	size_t len = 0;
	int rc = ts_file_read_all(path, 64 << 10, &buf, &len);

	if (rc)
		return rc;
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)buf[i] <= ' ' || (unsigned char)buf[i] >= 0x7f)
			rc = -EINVAL;
	if (len == 0)
		rc = -EINVAL;
	if (rc) {
		ts_free(buf);
		return rc;
	}
	*out = buf;
	return 0;
}

/* ---- open/close ---- */

int ts_kube_open(const char *kubeconfig, const struct ts_kube_opts *o, struct ts_kube **out)
{
	struct ts_kube *c;
	int rc;

	if (!out)
		return -EINVAL;
	pthread_once(&g_curl_once, curl_init_once);
	if (g_curl_init != CURLE_OK)
		return -ENOMEM;
	c = ts_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (o)
		c->o = *o;
	if (!c->o.timeout_ms)
		c->o.timeout_ms = 10000;
	if (!o || !o->retries)
		c->o.retries = 4;
	if (!c->o.backoff_ms)
		c->o.backoff_ms = 100;
	if (!c->o.backoff_max_ms)
		c->o.backoff_max_ms = 2000;
	c->o.sa_dir = NULL; /* not kept: the path is only read now */
	if (kubeconfig) {
		char *text = NULL, *dir = ts_strdup(kubeconfig);
		size_t len = 0;

		rc = dir ? ts_file_read_all(kubeconfig, 1 << 20, &text, &len) : -ENOMEM;
		if (rc == 0)
			rc = kube_config_parse(text, len, dirname(dir), &c->cfg);
		ts_free(text);
		ts_free(dir);
	} else {
		rc = kube_config_in_cluster(o ? o->sa_dir : NULL, &c->cfg);
	}
	if (rc)
		goto fail;
	if (c->cfg.token_file) {
		rc = read_token(c->cfg.token_file, &c->token);
		if (rc)
			goto fail;
		c->token_read_ns = ts_now_ns();
	} else if (c->cfg.token && !(c->token = ts_strdup(c->cfg.token))) {
		rc = -ENOMEM;
		goto fail;
	}
	{
		uint8_t seed[16];

		if (ts_uuid_generate(seed))
			memset(seed, 0, sizeof(seed));
		memcpy(&c->rng, seed, sizeof(c->rng));
		c->rng ^= ts_now_ns();
		if (!c->rng)
			c->rng = 1;
	}
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_mutex_init(&c->token_lock, NULL);
	*out = c;
	return 0;
fail:
	kube_config_clear(&c->cfg);
	ts_free(c->token);
	ts_free(c);
	return rc;
}

void ts_kube_close(struct ts_kube *c)
{
	if (!c)
		return;
	for (unsigned i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_mutex_destroy(&c->token_lock);
	kube_config_clear(&c->cfg);
	ts_free(c->token);
	ts_free(c);
}

const char *ts_kube_server(const struct ts_kube *c)
{
	return c->cfg.server;
}

/* ---- the request core ---- */

static CURL *take_handle(struct ts_kube *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->npool)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	if (h)
		curl_easy_reset(h);
	else
		h = curl_easy_init();
	return h;
}

static void give_handle(struct ts_kube *c, CURL *h, bool reusable)
{
	if (reusable) {
		pthread_mutex_lock(&c->pool_lock);
		if (c->npool < POOL_MAX) {
			c->pool[c->npool++] = h;
			h = NULL;
		}
		pthread_mutex_unlock(&c->pool_lock);
	}
	if (h)
		curl_easy_cleanup(h);
}

/* "Authorization: Bearer ..." for this request, or NULL without a token; ts_malloc'd. */
static char *auth_header(struct ts_kube *c)
{
	char *h = NULL;

	pthread_mutex_lock(&c->token_lock);
	if (c->cfg.token_file && ts_now_ns() - c->token_read_ns > TOKEN_REFRESH_NS) {
		char *t = NULL;

		/* keep the old token when the file is briefly unreadable (being replaced) */
		if (read_token(c->cfg.token_file, &t) == 0) {
			ts_free(c->token);
			c->token = t;
		}
		c->token_read_ns = ts_now_ns();
	}
	if (c->token) {
		size_t n = strlen(c->token) + 32;

		h = ts_malloc(n);
		if (h)
			snprintf(h, n, "Authorization: Bearer %s", c->token);
	}
	pthread_mutex_unlock(&c->token_lock);
	return h;
}

static size_t on_body(char *data, size_t sz, size_t n, void *arg)
{
	struct kube_sink *s = arg;
	size_t len = sz * n;

	if (s->stream)
		return s->stream(s->stream_arg, data, len);
	if (len > s->max - s->len)
		return 0; /* too large: the transfer fails with CURLE_WRITE_ERROR */
	if (s->len + len + 1 > s->cap) {
		size_t nc = TS_MAX(s->cap * 2, s->len + len + 1);
		char *nb = ts_realloc(s->buf, TS_MAX(nc, 4096));

		if (!nb)
			return 0;
		s->buf = nb;
		s->cap = TS_MAX(nc, 4096);
	}
	memcpy(s->buf + s->len, data, len);
	s->len += len;
	s->buf[s->len] = '\0';
	return len;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
	atomic_int *stop = arg;

	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	return stop && atomic_load(stop) ? 1 : 0;
}

int kube_http(struct ts_kube *c, const struct kube_req *rq, struct kube_sink *sink, long *status)
{
	struct curl_slist *hdrs = NULL, *nh;
	char *url = NULL, *auth = NULL, ctype[96];
	CURL *h;
	CURLcode cc = CURLE_OK;
	size_t ul;
	int rc = -ENOMEM;

	*status = 0;
	h = take_handle(c);
	if (!h)
		return -ENOMEM;
	ul = strlen(c->cfg.server) + strlen(rq->path) + 1;
	url = ts_malloc(ul);
	if (!url)
		goto out;
	snprintf(url, ul, "%s%s", c->cfg.server, rq->path);
	auth = auth_header(c);
	if ((c->cfg.token || c->cfg.token_file) && !auth)
		goto out;
	if (!(nh = curl_slist_append(hdrs, "Accept: application/json")))
		goto out;
	hdrs = nh;
	if (auth) {
		if (!(nh = curl_slist_append(hdrs, auth)))
			goto out;
		hdrs = nh;
	}
	if (rq->body) {
		snprintf(ctype, sizeof(ctype), "Content-Type: %s", rq->content_type);
		if (!(nh = curl_slist_append(hdrs, ctype)))
			goto out;
		hdrs = nh;
	}
	cc |= curl_easy_setopt(h, CURLOPT_URL, url);
	cc |= curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	cc |= curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	cc |= curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
	cc |= curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cc |= curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)TS_MIN(c->o.timeout_ms, 5000u));
	if (rq->low_speed_s) {
		cc |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
		cc |= curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)rq->low_speed_s);
	} else {
		cc |= curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
				       (long)(rq->timeout_ms ? rq->timeout_ms : c->o.timeout_ms));
	}
	if (rq->body) {
		cc |= curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
		cc |= curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len);
	} else if (!strcmp(rq->method, "GET")) {
		cc |= curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	}
	cc |= curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	cc |= curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
	sink->handle = h;
	if (rq->stop) {
		cc |= curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
		cc |= curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
		cc |= curl_easy_setopt(h, CURLOPT_XFERINFODATA, rq->stop);
	}
	if (c->cfg.insecure) {
		cc |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
		cc |= curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (c->cfg.ca.data) {
		struct curl_blob b = { c->cfg.ca.data, c->cfg.ca.len, CURL_BLOB_COPY };

		cc |= curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &b);
	} else if (c->cfg.ca_file) {
		cc |= curl_easy_setopt(h, CURLOPT_CAINFO, c->cfg.ca_file);
	}
	if (c->cfg.cert.data) {
		struct curl_blob b = { c->cfg.cert.data, c->cfg.cert.len, CURL_BLOB_COPY };

		cc |= curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &b);
	} else if (c->cfg.cert_file) {
		cc |= curl_easy_setopt(h, CURLOPT_SSLCERT, c->cfg.cert_file);
	}
	if (c->cfg.key.data) {
		struct curl_blob b = { c->cfg.key.data, c->cfg.key.len, CURL_BLOB_COPY };

		cc |= curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &b);
	} else if (c->cfg.key_file) {
		cc |= curl_easy_setopt(h, CURLOPT_SSLKEY, c->cfg.key_file);
	}
	if (cc != CURLE_OK) {
		rc = -EINVAL;
		goto out;
	}
	cc = curl_easy_perform(h);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
		rc = 0;
	} else {
		rc = kube_curl_errno(cc);
		ts_log(TS_LOG_DEBUG, "kube", "%s %s: %s", rq->method, rq->path, curl_easy_strerror(cc));
	}
out:
	curl_slist_free_all(hdrs);
	ts_free(auth);
	ts_free(url);
	give_handle(c, h, rc == 0);
	return rc;
}

void kube_backoff(struct ts_kube *c, unsigned n)
{
	uint64_t d = c->o.backoff_ms, x;

	for (unsigned i = 0; i < n && d < c->o.backoff_max_ms; i++)
		d *= 2;
	d = TS_MIN(d, (uint64_t)c->o.backoff_max_ms);
	pthread_mutex_lock(&c->token_lock);
	c->rng ^= c->rng << 13; /* xorshift64 */
	c->rng ^= c->rng >> 7;
	c->rng ^= c->rng << 17;
	x = c->rng;
	pthread_mutex_unlock(&c->token_lock);
	/* "equal jitter": between half and all of the delay, so racing clients spread out */
	d = d / 2 + (d / 2 ? x % (d / 2 + 1) : 0);
	usleep((useconds_t)(d * 1000));
}

bool kube_name_valid(const char *s, size_t max)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');

		if (!alnum && ((ch != '-' && ch != '.') || i == 0 || i == n - 1))
			return false;
	}
	return true;
}

char *kube_escape(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), o = 0;
	char *out = ts_malloc(n * 3 + 1);

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = '\0';
	return out;
}

static const char *verb_method(enum kube_verb v)
{
	switch (v) {
	case KV_CREATE: return "POST";
	case KV_UPDATE: return "PUT";
	case KV_PATCH: return "PATCH";
	case KV_DELETE: return "DELETE";
	default: return "GET";
	}
}

/* A failed request's Status message, for the log. */
static void log_status(const struct kube_req *rq, long status, json_t *body)
{
	json_t *m = json_object_get(body, "message");

	ts_log(status >= 500 ? TS_LOG_WARN : TS_LOG_DEBUG, "kube", "%s %s: HTTP %ld %s", rq->method,
	       rq->path, status, json_is_string(m) ? json_string_value(m) : "");
}

int kube_json(struct ts_kube *c, enum kube_verb verb, const char *path, json_t *body,
	      json_t **out)
{
	struct kube_req rq = { .verb = verb, .method = verb_method(verb), .path = path };
	char *text = NULL;
	bool idempotent = verb == KV_GET || verb == KV_LIST;
	int rc = -EINVAL;

	if (out)
		*out = NULL;
	if (!c || !path || path[0] != '/')
		return -EINVAL;
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return -ENOMEM;
		rq.body = text;
		rq.body_len = strlen(text);
		rq.content_type = verb == KV_PATCH ? "application/merge-patch+json"
						   : "application/json";
	}
	for (unsigned attempt = 0;; attempt++) {
		struct kube_sink sink = { .max = KUBE_BODY_MAX };
		json_t *resp = NULL;
		long status = 0;

		rc = kube_http(c, &rq, &sink, &status);
		if (rc == 0) {
			if (sink.len) {
				json_error_t err;

				resp = json_loadb(sink.buf, sink.len, 0, &err);
			}
			rc = kube_status_errno(status, verb);
			if (rc)
				log_status(&rq, status, resp);
			else if (!json_is_object(resp) && (out || verb != KV_DELETE))
				rc = -EPROTO; /* a success must carry an object */
		}
		ts_free(sink.buf);
		if (rc == 0 && out) {
			*out = resp;
			resp = NULL;
		}
		json_decref(resp);
		if (rc != -EAGAIN || !idempotent || attempt >= c->o.retries)
			break;
		kube_backoff(c, attempt);
	}
	free(text); /* jansson's allocator */
	return rc;
}

/* ---- CRUD ---- */

int ts_kube_get(struct ts_kube *c, const char *path, json_t **out)
{
	return out ? kube_json(c, KV_GET, path, NULL, out) : -EINVAL;
}

int ts_kube_create(struct ts_kube *c, const char *path, json_t *obj, json_t **out)
{
	return json_is_object(obj) ? kube_json(c, KV_CREATE, path, obj, out) : -EINVAL;
}

int ts_kube_update(struct ts_kube *c, const char *path, json_t *obj, json_t **out)
{
	return json_is_object(obj) ? kube_json(c, KV_UPDATE, path, obj, out) : -EINVAL;
}

int ts_kube_patch(struct ts_kube *c, const char *path, json_t *patch, json_t **out)
{
	return json_is_object(patch) ? kube_json(c, KV_PATCH, path, patch, out) : -EINVAL;
}

int ts_kube_delete(struct ts_kube *c, const char *path)
{
	return kube_json(c, KV_DELETE, path, NULL, NULL);
}

/* ---- list ---- */

int ts_kube_list(struct ts_kube *c, const char *path, const char *label_selector, json_t **items,
		 char *rv, size_t rvlen)
{
	char *sel = NULL, *cont = NULL, *q = NULL;
	json_t *all = NULL;
	int rc = -ENOMEM, restarts = 0;

	if (!c || !path || !items || !rv || rvlen == 0 || strchr(path, '?'))
		return -EINVAL;
	if (label_selector && !(sel = kube_escape(label_selector)))
		return -ENOMEM;
restart:
	json_decref(all);
	ts_free(cont);
	cont = NULL;
	all = json_array();
	if (!all)
		goto out;
	for (;;) {
		size_t ql = strlen(path) + (sel ? strlen(sel) : 0) + (cont ? strlen(cont) : 0) + 64;
		json_t *resp = NULL, *arr, *md, *v;
		const char *r = NULL, *next = NULL;
		size_t i;

		ts_free(q);
		q = ts_malloc(ql);
		rc = -ENOMEM;
		if (!q)
			goto out;
		snprintf(q, ql, "%s?limit=500%s%s%s%s", path, sel ? "&labelSelector=" : "",
			 sel ? sel : "", cont ? "&continue=" : "", cont ? cont : "");
		rc = kube_json(c, KV_LIST, q, NULL, &resp);
		if (rc == -ESTALE && cont && restarts++ < 3)
			goto restart; /* the continue token expired: list again from the start */
		if (rc)
			goto out;
		rc = -EPROTO;
		arr = json_object_get(resp, "items");
		md = json_object_get(resp, "metadata");
		if (!json_is_object(md) || (arr && !json_is_null(arr) && !json_is_array(arr)) ||
		    opt_str(md, "resourceVersion", &r) || !r || !kube_rv_valid(r)) {
			json_decref(resp);
			goto out;
		}
		/* custom resource lists send "continue": "" on the last page */
		v = json_object_get(md, "continue");
		if (json_is_string(v) && json_string_length(v) == 0)
			v = NULL;
		if (v && (opt_str(md, "continue", &next))) {
			json_decref(resp);
			goto out;
		}
		json_array_foreach(arr, i, v) {
			if (!json_is_object(v) || !json_is_object(json_object_get(v, "metadata")) ||
			    json_array_append(all, v)) {
				json_decref(resp);
				goto out;
			}
		}
		snprintf(rv, rvlen, "%s", r);
		ts_free(cont);
		cont = NULL;
		if (next && strlen(next) > 8192) {
			json_decref(resp);
			goto out;
		}
		if (next && !(cont = kube_escape(next))) {
			json_decref(resp);
			rc = -ENOMEM;
			goto out;
		}
		json_decref(resp);
		if (!cont)
			break;
	}
	*items = all;
	all = NULL;
	rc = 0;
out:
	json_decref(all);
	ts_free(cont);
	ts_free(q);
	ts_free(sel);
	return rc;
}
