/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The engine service's wire contract: method names and the JSON bodies of
 * `/tessera.engine.v1.Engine/<Method>` (docs/engines.md lists them), with
 * the encoders and the checking decoders both ends share. The server
 * (csi/engine.c) decodes requests and encodes replies with these; the
 * remote backend (backend_remote.c) does the reverse, so a field's rules
 * (type, range, length, id charset) are written once.
 *
 * No gRPC here: this module only turns structs of backend.h into jansson
 * values and back. Every decoder returns 0, or -EINVAL with a message
 * naming the field in \p why (size \p why_len), and never trusts a length,
 * count or type it was sent.
 *
 * Every reply carries "rc": 0 or the backend's -errno / TS_ERR_* (never
 * positive, never below TS_ENGINE_RC_MIN), and "error" (a short text) when
 * rc is not 0. Transport and request-shape failures are gRPC statuses
 * instead (UNAVAILABLE, DEADLINE_EXCEEDED, INVALID_ARGUMENT), so a backend
 * error is never confused with "the engine could not be asked".
 *
 * Every request carries "group": the group key (TS_ENGINE_GROUP_MAX bytes
 * of [A-Za-z0-9-]) the caller believes the engine serves; an engine serving
 * another group answers rc -ESTALE and touches nothing.
 *
 * Ownership: encoders return a new reference (NULL on ENOMEM); decoders
 * borrow \p j and point string results into it (valid while \p j lives).
 */
#ifndef TS_CSI_ENGINE_WIRE_H
#define TS_CSI_ENGINE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "csi/backend/backend.h"

#define TS_ENGINE_PREFIX "/tessera.engine.v1.Engine/"
#define TS_ENGINE_M(name) TS_ENGINE_PREFIX name

/** Longest group key ([A-Za-z0-9-]); a remote id is "<group>.<engine id>". */
#define TS_ENGINE_GROUP_MAX 24
/** Most snapshots one SnapList reply may carry. */
#define TS_ENGINE_LIST_MAX 1024
/** Most ranges one SnapDelta reply may carry. */
#define TS_ENGINE_DELTA_MAX 4096
/** Largest erasure-code k or m a request may name. */
#define TS_ENGINE_EC_MAX 64
/** The lowest rc a reply may carry (TS_ERR_* sit just below the errno range). */
#define TS_ENGINE_RC_MIN (-100000)
/** Largest byte count or rate on the wire (jansson integers are signed 64-bit). */
#define TS_ENGINE_U64_MAX ((uint64_t)INT64_MAX)

/** What a string field must look like. */
enum ts_ew_kind {
	TS_EW_ID,     /**< 1..TS_CSI_ID_MAX of [A-Za-z0-9._-], not starting with '.' */
	TS_EW_ID0,    /**< an id or "" (a snapshot's source may be unknown) */
	TS_EW_NAME,   /**< 1..TS_CSI_NAME_MAX bytes, no control characters */
	TS_EW_ATTACH, /**< 1..TS_CSI_ATTACH_MAX bytes, no control characters */
	TS_EW_GROUP,  /**< 1..TS_ENGINE_GROUP_MAX of [A-Za-z0-9-] */
};

/** 0 when \p s is a valid value of \p kind, else -EINVAL. */
int ts_ew_check(enum ts_ew_kind kind, const char *s);

/* ---- field readers (0 or -EINVAL with why) ---- */

/** Reject keys of \p o not in the NULL-terminated \p keys; -EINVAL when \p o is no object. */
int ts_ew_only(const json_t *o, const char *const *keys, char *why, size_t why_len);
/** String \p key of \p o checked as \p kind; absent or null: NULL (-EINVAL if \p required). */
int ts_ew_str(const json_t *o, const char *key, enum ts_ew_kind kind, bool required,
	      const char **out, char *why, size_t why_len);
/** Integer \p key in [0, max]; absent: 0 (-EINVAL if \p required). */
int ts_ew_u64(const json_t *o, const char *key, uint64_t max, bool required, uint64_t *out,
	      char *why, size_t why_len);
/** Boolean \p key; absent: false (-EINVAL if \p required). */
int ts_ew_bool(const json_t *o, const char *key, bool required, bool *out, char *why,
	       size_t why_len);
/** The reply's rc (required, in [TS_ENGINE_RC_MIN, 0]) and error text (may be NULL). */
int ts_ew_rc(const json_t *o, int *rc, const char **error, char *why, size_t why_len);

/* ---- structs ---- */

json_t *ts_ew_vol_json(const struct ts_csi_backend_vol *v);
int ts_ew_vol_parse(const json_t *j, struct ts_csi_backend_vol *out, char *why, size_t why_len);

json_t *ts_ew_snap_json(const struct ts_csi_backend_snap *s);
int ts_ew_snap_parse(const json_t *j, struct ts_csi_backend_snap *out, char *why, size_t why_len);

json_t *ts_ew_qos_json(const struct ts_csi_qos *q);
int ts_ew_qos_parse(const json_t *j, struct ts_csi_qos *out, char *why, size_t why_len);

json_t *ts_ew_qos_stats_json(const struct ts_csi_qos_stats *s);
int ts_ew_qos_stats_parse(const json_t *j, struct ts_csi_qos_stats *out, char *why,
			  size_t why_len);

/** An array of [offset, length] pairs. */
json_t *ts_ew_ranges_json(const struct ts_csi_range *r, size_t n);
/** At most \p max pairs into \p out, their count in *\p n. */
int ts_ew_ranges_parse(const json_t *j, struct ts_csi_range *out, size_t max, size_t *n,
		       char *why, size_t why_len);

#endif /* TS_CSI_ENGINE_WIRE_H */
