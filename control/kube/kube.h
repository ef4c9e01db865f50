/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * A small Kubernetes API client: what Tessera's control plane needs to keep
 * its metadata in custom resources and its liveness in Leases, nothing more.
 *
 * Configuration comes from a kubeconfig file (its current context only:
 * server, certificate-authority or -data, client-certificate/-key or -data,
 * or a bearer token / tokenFile; insecure-skip-tls-verify is honoured) or,
 * with no file, from the in-cluster environment (KUBERNETES_SERVICE_HOST and
 * _PORT, the service account's token and ca.crt, the token re-read every
 * minute because kubelet rotates it). The kubeconfig reader understands the
 * YAML that kubectl and hand-written configs use (block and flow mappings and
 * sequences, plain and quoted scalars, comments); anchors, tags and block
 * scalars are refused with -EINVAL.
 *
 * Requests are JSON in, JSON out. Paths are the API's own
 * ("/apis/tessera.io/v1alpha1/namespaces/ns/tesseragroups/name"). Objects
 * passed in are borrowed; objects returned in *out belong to the caller
 * (json_decref). Every response is validated: a body that is not a JSON
 * object, or a field of the wrong type, is -EPROTO, never a crash.
 *
 * Errors (0 or -errno), the same for every call:
 *   -ENOENT   404 (no such object or resource)
 *   -EEXIST   409 on create (the name is taken)
 *   -ESTALE   409 on update/patch/delete (resourceVersion precondition
 *             failed: someone wrote in between), 410 Gone (expired
 *             resourceVersion or continue token)
 *   -EACCES   401/403, and a server certificate that does not verify
 *   -EINVAL   400/422 (the server rejected the object: schema validation),
 *             bad arguments or configuration
 *   -EAGAIN   5xx, 429, timeouts and transport errors (connection refused,
 *             reset): the API server may answer later
 *   -EPROTO   a malformed response or any other status
 *   -ENOMEM
 * Reads (get, list) are retried on -EAGAIN with bounded exponential backoff
 * and jitter (opts.retries times); writes are not retried, because a write
 * whose answer was lost may have happened: callers retry with a fresh read.
 *
 * THREAD SAFETY: a client may be used from any number of threads at once.
 * It keeps a small pool of idle connections under one mutex (taken only to
 * take or return a connection, never across a request) and the cached
 * in-cluster token under a second one; neither is held while the other is.
 */
#ifndef TS_CONTROL_KUBE_H
#define TS_CONTROL_KUBE_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct ts_kube;

/** Client options; zeroed fields take the defaults. Can grow. */
struct ts_kube_opts {
	uint32_t timeout_ms;       /**< one request, connect included (default 10000) */
	uint32_t retries;          /**< extra attempts of a read on -EAGAIN (default 4) */
	uint32_t backoff_ms;       /**< first backoff (default 100), doubled per retry */
	uint32_t backoff_max_ms;   /**< backoff cap (default 2000) */
	/** In-cluster only: the service account directory (default
	 *  /var/run/secrets/kubernetes.io/serviceaccount); tests point it elsewhere. */
	const char *sa_dir;
};

/**
 * A client for the cluster \p kubeconfig describes (its current context), or
 * with \p kubeconfig NULL the in-cluster service account. \p o may be NULL.
 * 0 and *\p out; -ENOENT (file or in-cluster environment missing), -EINVAL
 * (unreadable configuration, no current context, ...), -ENOMEM.
 */
int ts_kube_open(const char *kubeconfig, const struct ts_kube_opts *o, struct ts_kube **out);
/** Close; NULL is a no-op. No call may be running. */
void ts_kube_close(struct ts_kube *c);
/** The server URL ("https://host:port"), valid until close. */
const char *ts_kube_server(const struct ts_kube *c);

/** GET \p path into *\p out. */
int ts_kube_get(struct ts_kube *c, const char *path, json_t **out);
/** POST \p obj to the collection \p path; the created object in *\p out (may be NULL). */
int ts_kube_create(struct ts_kube *c, const char *path, json_t *obj, json_t **out);
/**
 * PUT \p obj at \p path. With metadata.resourceVersion set it is a
 * compare-and-swap: -ESTALE if the object changed since. *\p out may be NULL.
 */
int ts_kube_update(struct ts_kube *c, const char *path, json_t *obj, json_t **out);
/** JSON merge patch (RFC 7386) of \p patch into \p path. *\p out may be NULL. */
int ts_kube_patch(struct ts_kube *c, const char *path, json_t *patch, json_t **out);
/** DELETE \p path (0 also when the answer is a Status of success). */
int ts_kube_delete(struct ts_kube *c, const char *path);

/**
 * List the collection \p path (optionally filtered by \p label_selector, may
 * be NULL), following continue tokens (a token that expires restarts the
 * list). 0, *\p items (a JSON array the caller owns) and the list's
 * resourceVersion in \p rv (\p rvlen bytes, at most 64 used).
 */
int ts_kube_list(struct ts_kube *c, const char *path, const char *label_selector, json_t **items,
		 char *rv, size_t rvlen);

/* ---- watch ---- */

enum ts_kube_event_type {
	TS_KUBE_ADDED = 1,
	TS_KUBE_MODIFIED,
	TS_KUBE_DELETED,
	TS_KUBE_BOOKMARK,
	/**
	 * Synthetic: the complete current set, after the first list and after
	 * every relist (410 Gone). object is a JSON array of every item; the
	 * caller replaces its whole view with it (what is not in it is gone).
	 */
	TS_KUBE_RESYNC,
};

struct ts_kube_event {
	enum ts_kube_event_type type;
	json_t *object;              /**< borrowed: valid during the callback only */
	const char *resource_version; /**< of the object, or of the list for RESYNC */
};

/** Called per event; return 0 to go on, anything else stops the watch with it. */
typedef int (*ts_kube_watch_cb)(void *arg, const struct ts_kube_event *ev);

/** What a watch did (for tests and metrics). */
struct ts_kube_watch_stats {
	uint64_t events;      /**< ADDED/MODIFIED/DELETED delivered */
	uint64_t bookmarks;
	uint64_t streams;     /**< watch requests that opened a stream */
	uint64_t rewatches;   /**< streams reopened from the last resourceVersion */
	uint64_t relists;     /**< lists after 410 Gone (the first list not counted) */
	uint64_t bad_streams; /**< streams dropped for malformed data */
};

struct ts_kube_watch_opts {
	const char *path;            /**< the collection ("/api/v1/namespaces/ns/pods") */
	const char *label_selector;  /**< may be NULL */
	/** Start from here without listing (a view the caller has); NULL: list first. */
	const char *resource_version;
	uint32_t timeout_s;          /**< server-side end of each stream (default 60) */
	atomic_int *stop;            /**< may be NULL; set non-zero to end the watch */
	struct ts_kube_watch_stats *stats; /**< may be NULL */
};

/**
 * Watch a collection until \p cb returns non-zero (then that value is
 * returned) or *opts->stop is set (then 0). Blocking; run it on a thread of
 * its own.
 *
 * What the caller sees: without opts->resource_version, first a RESYNC with
 * the full list, then every change after it in order. A stream that ends or
 * breaks (server timeout, reset connection, restarted API server, malformed
 * data) is reopened from the resourceVersion of the last event or bookmark
 * delivered: nothing is lost and nothing delivered twice. When the server
 * answers 410 Gone (that resourceVersion is compacted away), or sends an
 * ERROR event with code 410, the collection is listed again and a RESYNC
 * with the full set is delivered before the watch resumes from the list's
 * resourceVersion: changes in between are not replayed one by one, the
 * RESYNC replaces them. Transport errors are retried forever with backoff
 * (the watch ends only by cb or stop); -EACCES, -ENOENT and -EINVAL from the
 * server end it with that error.
 */
int ts_kube_watch(struct ts_kube *c, const struct ts_kube_watch_opts *o, ts_kube_watch_cb cb,
		  void *arg);

/* ---- Leases (coordination.k8s.io/v1) ---- */

struct ts_kube_lease {
	char name[254];
	char holder[254];           /**< "" when nobody holds it */
	int32_t duration_s;         /**< leaseDurationSeconds */
	uint64_t acquire_us;        /**< acquireTime, CLOCK_REALTIME µs (0: unset) */
	uint64_t renew_us;          /**< renewTime, CLOCK_REALTIME µs (0: unset) */
	int32_t transitions;        /**< leaseTransitions */
	char resource_version[65];  /**< the CAS token of the next update */
};

/**
 * Read Lease \p name in \p ns. 0, -ENOENT, -EPROTO for a Lease whose fields
 * do not parse, or the errors above.
 */
int ts_kube_lease_get(struct ts_kube *c, const char *ns, const char *name,
		      struct ts_kube_lease *l);
/** A Lease object (from a list or a watch) into \p l: 0 or -EPROTO. */
int ts_kube_lease_from_json(json_t *obj, struct ts_kube_lease *l);
/** True when \p l has no holder or renewTime + leaseDurationSeconds <= \p now_us. */
bool ts_kube_lease_expired(const struct ts_kube_lease *l, uint64_t now_us);
/**
 * Take Lease \p name for \p holder for \p duration_s seconds: create it if
 * missing; take it over if it has expired or has no holder (acquireTime now,
 * leaseTransitions + 1); renew it if \p holder holds it already. Every write
 * is a compare-and-swap on the resourceVersion read, so of two holders
 * racing for an expired Lease exactly one gets it. 0 and *\p l (may be
 * NULL), -EBUSY when someone else holds it unexpired, or the errors above.
 */
int ts_kube_lease_acquire(struct ts_kube *c, const char *ns, const char *name,
			  const char *holder, int32_t duration_s, struct ts_kube_lease *l);
/**
 * Renew \p holder's Lease (renewTime now). \p l holds the Lease as last
 * read or written (its resourceVersion makes the write a CAS) and is updated.
 * A conflicting write by someone else is re-read: still ours, renewed; taken
 * over, -EBUSY (the holder has lost it and must stop acting as holder).
 */
int ts_kube_lease_renew(struct ts_kube *c, const char *ns, struct ts_kube_lease *l,
			const char *holder);
/** Give the Lease up (holder cleared) if \p holder holds it. 0, -EBUSY or errors. */
int ts_kube_lease_release(struct ts_kube *c, const char *ns, const char *name,
			  const char *holder);

/** Format CLOCK_REALTIME µs as a MicroTime ("2026-01-02T03:04:05.123456Z"); \p out 32 bytes. */
void ts_kube_microtime_format(uint64_t us, char out[32]);
/**
 * Parse an RFC 3339 time (MicroTime or Time: optional fraction, "Z" or an
 * offset) into CLOCK_REALTIME µs. 0 or -EINVAL.
 */
int ts_kube_microtime_parse(const char *s, uint64_t *us);
/** CLOCK_REALTIME in µs. */
uint64_t ts_kube_now_us(void);

#endif /* TS_CONTROL_KUBE_H */
