/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to csi/: the driver object, the per-call context handlers use, the
 * method tables of the three services and the validation helpers.
 */
#ifndef TS_CSI_PRIV_H
#define TS_CSI_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "csi.pb-c.h"
#include "csi/admin.h"
#include "csi/csi.h"

/* gRPC status codes, as numbers (grpc/status.h is only included by server.c). */
enum csi_code {
	CSI_OK = 0,
	CSI_CANCELLED = 1,
	CSI_UNKNOWN = 2,
	CSI_INVALID_ARGUMENT = 3,
	CSI_DEADLINE_EXCEEDED = 4,
	CSI_NOT_FOUND = 5,
	CSI_ALREADY_EXISTS = 6,
	CSI_PERMISSION_DENIED = 7,
	CSI_RESOURCE_EXHAUSTED = 8,
	CSI_FAILED_PRECONDITION = 9,
	CSI_ABORTED = 10,
	CSI_OUT_OF_RANGE = 11,
	CSI_UNIMPLEMENTED = 12,
	CSI_INTERNAL = 13,
	CSI_UNAVAILABLE = 14,
};

/* A volume staged on this node (persisted as <state>/node/<id>.json). */
struct node_vol {
	struct node_vol *next;
	char id[TS_CSI_ID_MAX + 1];
	char staging[4097];
	char dev[TS_CSI_DEV_MAX];
	char fs_type[8];
	bool block;
	bool ro;
};

struct ts_csi_driver {
	char *node_id;
	char *state_dir;
	char *node_dir;    /* <state_dir>/node */
	char *path_prefix; /* "" = any absolute path */
	uint32_t max_volumes_per_node;
	uint64_t default_volume_bytes;
	uint64_t max_volume_bytes;
	bool controller, node;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	const struct ts_csi_store_ops *st;
	void *st_ctx;
	pthread_mutex_t ctl_lock;  /* controller read-modify-write sequences */
	pthread_mutex_t node_lock; /* the staged list and mount changes */
	struct node_vol *staged;
	const struct ts_admin_ops *admin_ops; /* csi/admin.h; NULL = no admin service */
	void *admin_ctx;
};

/* Per-call context: response memory arena, status, deadline, cancellation. */
struct csi_arena_blk;
struct csi_call {
	struct csi_arena_blk *arena;
	int code;
	char msg[512];
	uint64_t deadline_ns;       /* monotonic (ts_now_ns); 0 = none */
	const atomic_bool *cancelled; /* set by the server when the client goes away; may be NULL */
};

typedef int (*csi_handler_fn)(struct ts_csi_driver *d, struct csi_call *c, const void *req,
			      void *resp);

struct csi_method {
	const char *path;
	const ProtobufCMessageDescriptor *req_desc;
	const ProtobufCMessageDescriptor *resp_desc;
	csi_handler_fn fn;
	/*
	 * Methods whose messages are not protobuf (the admin service's JSON):
	 * req_desc/resp_desc/fn are NULL and this gets the raw request bytes and
	 * returns a ts_malloc'd response (0), or -1 after csi_fail().
	 */
	int (*raw)(struct ts_csi_driver *d, struct csi_call *c, const uint8_t *req, size_t req_len,
		   uint8_t **resp, size_t *resp_len);
};

extern const struct csi_method csi_identity_methods[];
extern const size_t csi_identity_method_count;
extern const struct csi_method csi_controller_methods[];
extern const size_t csi_controller_method_count;
extern const struct csi_method csi_node_methods[];
extern const size_t csi_node_method_count;
extern const struct csi_method csi_admin_methods[]; /* admin.c */
extern const size_t csi_admin_method_count;

/*
 * A server-streaming method (one request, a stream of responses): open()
 * checks the decoded request and builds the stream state in the call's
 * arena (0, or -1 with the status set); next() fills the next response
 * (allocations from its own call arena, freed once the message is packed)
 * and returns 1, 0 at the end of the stream, or -1 with the status set.
 */
struct csi_stream_method {
	const char *path;
	const ProtobufCMessageDescriptor *req_desc;
	const ProtobufCMessageDescriptor *resp_desc;
	int (*open)(struct ts_csi_driver *d, struct csi_call *c, const void *req, void **state);
	int (*next)(struct ts_csi_driver *d, struct csi_call *c, void *state, void *resp);
};

extern const struct csi_stream_method csi_snapmeta_methods[];
extern const size_t csi_snapmeta_method_count;

/*
 * The stream cycle the server drives (csi/snapmeta.c): open decodes the
 * request and runs m->open (NULL only on ENOMEM; a failed open still
 * returns a stream whose first next() reports the status); next packs the
 * next response into a ts_malloc'd buffer (1), or ends (0 = OK, -1 = error);
 * csi_stream_status gives the final code and message.
 */
struct csi_stream;
struct csi_stream *csi_stream_open(struct ts_csi_driver *d, const struct csi_stream_method *m,
				   const uint8_t *req, size_t req_len, const atomic_bool *cancelled,
				   uint64_t deadline_ns);
int csi_stream_next(struct csi_stream *st, uint8_t **buf, size_t *len);
int csi_stream_status(const struct csi_stream *st, const char **msg);
void csi_stream_close(struct csi_stream *st);

/* The method entry for \p path, or NULL. */
const struct csi_method *csi_method_find(const char *path);

/* Run one decoded-request cycle (also used by the server loop). */
int csi_dispatch(struct ts_csi_driver *d, const struct csi_method *m, struct csi_call *c,
		 const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len);

/* ---- call helpers ---- */
void *csi_alloc(struct csi_call *c, size_t size); /* zeroed; freed with the call */
char *csi_strdup(struct csi_call *c, const char *s);
/* Record a status and message; returns -1 so handlers can `return csi_fail(...)`. */
int csi_fail(struct csi_call *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Map a Tessera error (0/-errno/TS_ERR_*) to a code: the one place that does. */
int csi_code_from_err(int err);
int csi_fail_err(struct csi_call *c, int err, const char *what);
/* -1 (with CANCELLED / DEADLINE_EXCEEDED set) when the call should stop now. */
int csi_check_live(struct csi_call *c);
void csi_call_init(struct csi_call *c);
void csi_call_fini(struct csi_call *c);

/*
 * Map entries: protobuf-c generates one struct per map type, all laid out as
 * {base, key, value}; these helpers work on any string->string map.
 */
struct csi_kv {
	ProtobufCMessage base;
	char *key;
	char *value;
};
/* Value for \p key in a map field (entries, n), or NULL. */
const char *csi_kv_get(void *const *entries, size_t n, const char *key);
/* A new map entry of type \p desc in the call arena; NULL on ENOMEM. */
void *csi_kv_new(struct csi_call *c, const ProtobufCMessageDescriptor *desc, const char *key,
		 const char *value);

/* ---- validation (each sets INVALID_ARGUMENT with a message naming the field) ---- */
int csi_check_id(struct csi_call *c, const char *field, const char *s);
int csi_check_name(struct csi_call *c, const char *field, const char *s);
int csi_check_path(struct ts_csi_driver *d, struct csi_call *c, const char *field, const char *s);
/* Volume capability: access type set, access mode known, fs type/flags sane. */
int csi_check_cap(struct csi_call *c, const Csi__V1__VolumeCapability *cap);
/* Flags for the mount_flags of a capability; -1 with INVALID_ARGUMENT for unknown ones. */
int csi_mount_flags(struct csi_call *c, const Csi__V1__VolumeCapability *cap,
		    unsigned long *flags);

/* Volume context key carrying the backend's attach context. */
#define CSI_CTX_ATTACH "csi.tessera.io/attach"
#define CSI_CTX_FSTYPE "csi.tessera.io/fsType"
#define CSI_CTX_EC "csi.tessera.io/ec"

/* node.c: load / free the staging records. */
int csi_node_load(struct ts_csi_driver *d);
void csi_node_free(struct ts_csi_driver *d);

#endif /* TS_CSI_PRIV_H */
