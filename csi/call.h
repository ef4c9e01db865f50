/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to csi/: the request cycle (call.c). A call's context (arena,
 * status, deadline, cancellation), a method-table entry, dispatch of one
 * decoded request, and the helpers and validation every service's handlers
 * share. This layer knows no service and calls none; services and the
 * driver include it.
 */
#ifndef TS_CSI_CALL_H
#define TS_CSI_CALL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "csi.pb-c.h"

struct ts_csi_driver;
struct ts_csi_backend_ops;

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

/* The entry of \p path in the table \p tab of \p n methods, or NULL. */
const struct csi_method *csi_method_in(const struct csi_method *tab, size_t n,
				      const char *path);

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

/*
 * ---- access modes ----
 *
 * Which access mode each access type can serve (the table in docs/csi.md):
 * Block serves every mode, writers on several nodes included when the
 * backend orders their writes (ts_csi_backend_ops.multi_node_writers: the
 * volume's engine serializes overlapping writes); Mount serves every mode
 * but MULTI_NODE_SINGLE_WRITER and MULTI_NODE_MULTI_WRITER, because ext4 and
 * xfs mounted on several nodes at once, one of them writing, corrupt
 * themselves and their readers' caches. Bit sets are those of
 * ts_csi_volume.access_modes.
 */
/*
 * NULL when \p cap's mode can be served with its access type on backend
 * \p be, else why not (static text naming the mode).
 */
const char *csi_mode_refusal(const struct ts_csi_backend_ops *be,
			     const Csi__V1__VolumeCapability *cap);
/* \p cap's mode lets nobody write (SINGLE_NODE_READER_ONLY, MULTI_NODE_READER_ONLY). */
bool csi_mode_read_only(const Csi__V1__VolumeCapability *cap);
/* \p cap's mode reaches several nodes (MULTI_NODE_*). */
bool csi_mode_multi_node(const Csi__V1__VolumeCapability *cap);
/*
 * A volume created with the modes \p modes (bits; 0 = a record from before
 * modes were kept: any mode but the multi-node writer ones) can be used in
 * mode \p mode: some mode of the set reaches as many nodes and allows as
 * many writers (MULTI_NODE_MULTI_WRITER covers every mode, SINGLE_NODE_WRITER
 * covers SINGLE_NODE_READER_ONLY and SINGLE_NODE_SINGLE_WRITER).
 */
bool csi_modes_cover(uint32_t modes, unsigned mode);
/* Room for every mode's name, comma-separated. */
#define CSI_MODES_STR_MAX 192
/* \p modes as "NAME,NAME" in mode order into \p buf ("" for 0); truncates at \p len. */
void csi_modes_str(uint32_t modes, char *buf, size_t len);
/* The bits of a "NAME,NAME" list; -EINVAL for a name that is no mode or an empty list. */
int csi_modes_parse(const char *s, uint32_t *modes);

#endif /* TS_CSI_CALL_H */
