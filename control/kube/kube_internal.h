/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes client's internals, shared by its files and reached by the
 * unit tests (unit/control/kube): the pure parts (YAML subset, base64,
 * kubeconfig, status mapping, the watch stream splitter and event checks) and
 * the request core the watch and lease files use.
 */
#ifndef TS_CONTROL_KUBE_INTERNAL_H
#define TS_CONTROL_KUBE_INTERNAL_H

#include <curl/curl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "control/kube/kube.h"

/* Longest resourceVersion accepted from a server (they are short decimal strings). */
#define KUBE_RV_MAX 64
/* Largest response body (a list of our objects is far smaller) and watch event. */
#define KUBE_BODY_MAX (64u << 20)
#define KUBE_EVENT_MAX (16u << 20)

enum kube_verb { KV_GET, KV_LIST, KV_CREATE, KV_UPDATE, KV_PATCH, KV_DELETE, KV_WATCH };

/** HTTP status -> 0/-errno for \p verb (the table in kube.h). */
int kube_status_errno(long status, enum kube_verb verb);
/** libcurl result -> -errno (transport: -EAGAIN; bad peer certificate: -EACCES). */
int kube_curl_errno(CURLcode cc);

/** The YAML subset of kube.h as a JSON value. 0 and *out, -EINVAL, -ENOMEM. */
int kube_yaml_parse(const char *text, size_t len, json_t **out);
/** Standard base64 (padding optional, whitespace skipped). *out from ts_malloc. */
int kube_base64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen);

struct kube_blob {
	uint8_t *data;
	size_t len;
};

/** A parsed configuration: every string and blob from ts_malloc. */
struct kube_config {
	char *server;                 /**< "https://host:port" without a trailing '/' */
	char *ca_file, *cert_file, *key_file;
	struct kube_blob ca, cert, key; /**< the *-data fields, decoded */
	char *token;                  /**< static token */
	char *token_file;             /**< re-read periodically (in-cluster, tokenFile) */
	bool insecure;                /**< insecure-skip-tls-verify */
};

/**
 * Parse kubeconfig text; relative file names are resolved against
 * \p base_dir. 0, -EINVAL (not a kubeconfig, no current context, fields of
 * the wrong type, unsupported auth such as exec plugins), -ENOMEM.
 */
int kube_config_parse(const char *text, size_t len, const char *base_dir,
		      struct kube_config *cfg);
/** In-cluster configuration from the environment and \p sa_dir. 0, -ENOENT, -EINVAL. */
int kube_config_in_cluster(const char *sa_dir, struct kube_config *cfg);
void kube_config_clear(struct kube_config *cfg);

/* ---- watch stream ---- */

/*
 * Splits a byte stream into top-level JSON objects, whatever the chunking:
 * the server writes one object per line, but nothing here relies on lines.
 * A byte outside an object that is not whitespace, an object longer than
 * max, or an object jansson refuses is -EPROTO; the splitter must then be
 * reset (the stream is dropped).
 */
struct kube_stream {
	char *buf;
	size_t len, cap, max;
	int depth;
	bool in_str, esc;
};

typedef int (*kube_obj_cb)(void *arg, json_t *obj);

void kube_stream_init(struct kube_stream *s, size_t max);
/** Feed bytes; \p cb gets each complete object (borrowed). Its non-zero return is returned. */
int kube_stream_feed(struct kube_stream *s, const char *data, size_t len, kube_obj_cb cb,
		     void *arg);
/** Bytes of an unfinished object pending (0 at an object boundary). */
size_t kube_stream_pending(const struct kube_stream *s);
void kube_stream_reset(struct kube_stream *s);
void kube_stream_free(struct kube_stream *s);

/** A checked watch event. object and rv point into the event. */
struct kube_event {
	enum ts_kube_event_type type;
	json_t *object;
	const char *rv;
	long error_code; /**< ERROR events: the Status code (410: relist) */
};

/**
 * Check one watch event: 0 (ADDED/MODIFIED/DELETED/BOOKMARK with an object
 * and a valid metadata.resourceVersion), 1 (an ERROR event: error_code set,
 * 0 if the Status has no code), -EPROTO (anything else).
 */
int kube_event_check(json_t *ev, struct kube_event *out);
/** A resourceVersion we accept: 1..64 of [A-Za-z0-9._~-]. */
bool kube_rv_valid(const char *rv);

/* ---- the request core (kube.c) ---- */

/** Where a response body goes: a buffer, or a stream callback (watch). */
struct kube_sink {
	char *buf;
	size_t len, cap, max;
	size_t (*stream)(void *arg, const char *data, size_t len); /**< NULL: buffer */
	void *stream_arg;
	CURL *handle;  /**< set by kube_http: a stream reads the status with it */
};

struct kube_req {
	enum kube_verb verb;
	const char *method;
	const char *path;            /**< with its query string */
	const char *content_type;    /**< of body */
	const char *body;
	size_t body_len;
	uint32_t timeout_ms;         /**< 0: the client's */
	uint32_t low_speed_s;        /**< watch: drop a stream silent this long (0: none) */
	atomic_int *stop;            /**< watch: abort the transfer when set */
};

/** One attempt. 0 (any HTTP status, in *status) or the transport's -errno. */
int kube_http(struct ts_kube *c, const struct kube_req *rq, struct kube_sink *sink, long *status);
/** A request with JSON in (may be NULL) and out (may be NULL), mapped and retried as kube.h says. */
int kube_json(struct ts_kube *c, enum kube_verb verb, const char *path, json_t *body,
	      json_t **out);
/** Sleep the backoff for attempt \p n (0-based) of the client: exponential, capped, jittered. */
void kube_backoff(struct ts_kube *c, unsigned n);
/** A DNS-1123 subdomain of at most \p max chars (names and namespaces in paths). */
bool kube_name_valid(const char *s, size_t max);
/** Percent-encode \p s for a query string into a ts_malloc'd string (NULL: -ENOMEM). */
char *kube_escape(const char *s);

#endif /* TS_CONTROL_KUBE_INTERNAL_H */
