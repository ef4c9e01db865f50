/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine service's JSON codec (engine_wire.h). Both ends decode what
 * the other sent with the same checks: the engine must survive any request
 * bytes (a fuzzed or hostile caller), and the remote backend must not copy
 * an over-long id or an absurd count from a confused engine into the
 * fixed-size structs of backend.h.
 *
 * Why strict (unknown keys refused): the bodies are a private contract
 * between two builds of this code; a key the receiver does not know is a
 * version skew or a bug, and saying so beats silently ignoring, e.g., a
 * misspelt "capacity_bytes".
 */
#include "csi/backend/engine_wire.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

static int why_fail(char *why, size_t why_len, const char *fmt, const char *key)
{
	if (why && why_len)
		snprintf(why, why_len, fmt, key);
	return -EINVAL;
}

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

static bool id_char(char ch, bool group)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	    ch == '-')
		return true;
	return !group && (ch == '.' || ch == '_');
}

int ts_ew_check(enum ts_ew_kind kind, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!s)
		return -EINVAL;
	switch (kind) {
	case TS_EW_ID0:
		if (n == 0)
			return 0;
		/* fall through */
	case TS_EW_ID:
	case TS_EW_GROUP:
		if (!n || n > (kind == TS_EW_GROUP ? TS_ENGINE_GROUP_MAX : TS_CSI_ID_MAX) ||
		    s[0] == '.')
			return -EINVAL;
		for (const char *p = s; *p; p++)
			if (!id_char(*p, kind == TS_EW_GROUP))
				return -EINVAL;
		return 0;
	case TS_EW_NAME:
		return n && n <= TS_CSI_NAME_MAX && !has_ctl(s) ? 0 : -EINVAL;
	case TS_EW_ATTACH:
		return n && n <= TS_CSI_ATTACH_MAX && !has_ctl(s) ? 0 : -EINVAL;
	}
	return -EINVAL;
}

int ts_ew_only(const json_t *o, const char *const *keys, char *why, size_t why_len)
{
	const char *key;
	json_t *v;

	if (!json_is_object(o))
		return why_fail(why, why_len, "%s must be a JSON object", "the body");
	json_object_foreach((json_t *)o, key, v) {
		bool known = false;

		(void)v;
		for (size_t i = 0; keys[i] && !known; i++)
			known = !strcmp(keys[i], key);
		if (!known) {
			if (why && why_len)
				snprintf(why, why_len, "unknown field '%.40s'", key);
			return -EINVAL;
		}
	}
	return 0;
}

int ts_ew_str(const json_t *o, const char *key, enum ts_ew_kind kind, bool required,
	      const char **out, char *why, size_t why_len)
{
	static const char *const what[] = {
		[TS_EW_ID] = "an id of 1 to 64 bytes of [A-Za-z0-9._-]",
		[TS_EW_ID0] = "an id of at most 64 bytes of [A-Za-z0-9._-]",
		[TS_EW_NAME] = "a name of 1 to 128 bytes without control characters",
		[TS_EW_ATTACH] = "an attach context of 1 to 512 bytes without control characters",
		[TS_EW_GROUP] = "a group key of 1 to 24 bytes of [A-Za-z0-9-]",
	};
	json_t *v = json_object_get(o, key);
	const char *s;

	*out = NULL;
	if (!v || json_is_null(v))
		return required ? why_fail(why, why_len, "field '%s' is required", key) : 0;
	if (!json_is_string(v))
		return why_fail(why, why_len, "field '%s' must be a string", key);
	s = json_string_value(v);
	/* an embedded NUL would cut the value short behind our back */
	if (strlen(s) != json_string_length(v) || ts_ew_check(kind, s)) {
		if (why && why_len)
			snprintf(why, why_len, "field '%s' must be %s", key, what[kind]);
		return -EINVAL;
	}
	*out = s;
	return 0;
}

int ts_ew_u64(const json_t *o, const char *key, uint64_t max, bool required, uint64_t *out,
	      char *why, size_t why_len)
{
	json_t *v = json_object_get(o, key);
	json_int_t x;

	*out = 0;
	if (!v || json_is_null(v))
		return required ? why_fail(why, why_len, "field '%s' is required", key) : 0;
	if (!json_is_integer(v))
		return why_fail(why, why_len, "field '%s' must be an integer", key);
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x > max) {
		if (why && why_len)
			snprintf(why, why_len, "field '%s' is %" PRId64 ", must be 0 to %" PRIu64, key,
				 (int64_t)x, max);
		return -EINVAL;
	}
	*out = (uint64_t)x;
	return 0;
}

int ts_ew_bool(const json_t *o, const char *key, bool required, bool *out, char *why,
	       size_t why_len)
{
	json_t *v = json_object_get(o, key);

	*out = false;
	if (!v || json_is_null(v))
		return required ? why_fail(why, why_len, "field '%s' is required", key) : 0;
	if (!json_is_boolean(v))
		return why_fail(why, why_len, "field '%s' must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

int ts_ew_rc(const json_t *o, int *rc, const char **error, char *why, size_t why_len)
{
	json_t *v = json_object_get(o, "rc"), *e = json_object_get(o, "error");

	*rc = 0;
	*error = NULL;
	if (!json_is_object(o))
		return why_fail(why, why_len, "%s must be a JSON object", "the reply");
	if (!json_is_integer(v) || json_integer_value(v) > 0 ||
	    json_integer_value(v) < TS_ENGINE_RC_MIN)
		return why_fail(why, why_len, "field '%s' must be 0 or a negative error code", "rc");
	if (e && !json_is_string(e))
		return why_fail(why, why_len, "field '%s' must be a string", "error");
	*rc = (int)json_integer_value(v);
	*error = e ? json_string_value(e) : NULL;
	return 0;
}

/* ---- structs ---- */

static json_t *u64(uint64_t v)
{
	return json_integer((json_int_t)TS_MIN(v, TS_ENGINE_U64_MAX));
}

json_t *ts_ew_vol_json(const struct ts_csi_backend_vol *v)
{
	return json_pack("{s:s, s:s, s:o}", "id", v->id, "attach", v->attach, "capacity_bytes",
			 u64(v->capacity_bytes));
}

int ts_ew_vol_parse(const json_t *j, struct ts_csi_backend_vol *out, char *why, size_t why_len)
{
	static const char *const keys[] = { "id", "attach", "capacity_bytes", NULL };
	const char *id, *attach;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ts_ew_only(j, keys, why, why_len);
	if (!rc)
		rc = ts_ew_str(j, "id", TS_EW_ID, true, &id, why, why_len);
	if (!rc)
		rc = ts_ew_str(j, "attach", TS_EW_ATTACH, true, &attach, why, why_len);
	if (!rc)
		rc = ts_ew_u64(j, "capacity_bytes", TS_ENGINE_U64_MAX, true, &out->capacity_bytes, why,
			       why_len);
	if (rc)
		return rc;
	strcpy(out->id, id);
	strcpy(out->attach, attach);
	return 0;
}

json_t *ts_ew_snap_json(const struct ts_csi_backend_snap *s)
{
	return json_pack("{s:s, s:s, s:o, s:o, s:b}", "id", s->id, "source", s->source,
			 "size_bytes", u64(s->size_bytes), "ctime_ns", u64(s->ctime_ns), "ready",
			 s->ready);
}

int ts_ew_snap_parse(const json_t *j, struct ts_csi_backend_snap *out, char *why, size_t why_len)
{
	static const char *const keys[] = { "id", "source", "size_bytes", "ctime_ns", "ready", NULL };
	const char *id, *source;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = ts_ew_only(j, keys, why, why_len);
	if (!rc)
		rc = ts_ew_str(j, "id", TS_EW_ID, true, &id, why, why_len);
	if (!rc)
		rc = ts_ew_str(j, "source", TS_EW_ID0, false, &source, why, why_len);
	if (!rc)
		rc = ts_ew_u64(j, "size_bytes", TS_ENGINE_U64_MAX, true, &out->size_bytes, why,
			       why_len);
	if (!rc)
		rc = ts_ew_u64(j, "ctime_ns", TS_ENGINE_U64_MAX, false, &out->ctime_ns, why, why_len);
	if (!rc)
		rc = ts_ew_bool(j, "ready", true, &out->ready, why, why_len);
	if (rc)
		return rc;
	strcpy(out->id, id);
	snprintf(out->source, sizeof(out->source), "%s", source ? source : "");
	return 0;
}

/* The QoS and stats structs as (key, field) tables: one list per struct. */
#define QOS_FIELDS(X)                                                                         \
	X(iops) X(read_iops) X(write_iops) X(bps) X(read_bps) X(write_bps) X(burst_ms)        \
		X(reserve_iops)
#define STATS_FIELDS(X) X(admitted) X(delayed) X(queued_now) X(delay_ns_total) X(dyn_cap_iops)

json_t *ts_ew_qos_json(const struct ts_csi_qos *q)
{
	json_t *j = json_object();

#define PUT(f)                                                                                \
	if (j && json_object_set_new(j, #f, u64(q->f))) {                                     \
		json_decref(j);                                                               \
		j = NULL;                                                                     \
	}
	QOS_FIELDS(PUT)
#undef PUT
	return j;
}

int ts_ew_qos_parse(const json_t *j, struct ts_csi_qos *out, char *why, size_t why_len)
{
#define KEY(f) #f,
	static const char *const keys[] = { QOS_FIELDS(KEY) NULL };
#undef KEY
	uint64_t v;
	int rc = ts_ew_only(j, keys, why, why_len);

	memset(out, 0, sizeof(*out));
#define GET(f)                                                                                \
	if (!rc) {                                                                            \
		rc = ts_ew_u64(j, #f, !strcmp(#f, "burst_ms") ? UINT32_MAX : TS_ENGINE_U64_MAX, \
			       false, &v, why, why_len);                                      \
		out->f = (__typeof__(out->f))v;                                               \
	}
	QOS_FIELDS(GET)
#undef GET
	return rc;
}

json_t *ts_ew_qos_stats_json(const struct ts_csi_qos_stats *s)
{
	json_t *j = json_object();

#define PUT(f)                                                                                \
	if (j && json_object_set_new(j, #f, u64(s->f))) {                                     \
		json_decref(j);                                                               \
		j = NULL;                                                                     \
	}
	STATS_FIELDS(PUT)
#undef PUT
	return j;
}

int ts_ew_qos_stats_parse(const json_t *j, struct ts_csi_qos_stats *out, char *why,
			  size_t why_len)
{
#define KEY(f) #f,
	static const char *const keys[] = { STATS_FIELDS(KEY) NULL };
#undef KEY
	int rc = ts_ew_only(j, keys, why, why_len);

	memset(out, 0, sizeof(*out));
#define GET(f)                                                                                \
	if (!rc)                                                                              \
		rc = ts_ew_u64(j, #f, TS_ENGINE_U64_MAX, false, &out->f, why, why_len);
	STATS_FIELDS(GET)
#undef GET
	return rc;
}

json_t *ts_ew_ranges_json(const struct ts_csi_range *r, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		if (json_array_append_new(a, json_pack("[o, o]", u64(r[i].offset), u64(r[i].length)))) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

int ts_ew_ranges_parse(const json_t *j, struct ts_csi_range *out, size_t max, size_t *n,
		       char *why, size_t why_len)
{
	size_t i;
	json_t *p;

	*n = 0;
	if (!json_is_array(j) || json_array_size(j) > max)
		return why_fail(why, why_len, "field '%s' must be an array of at most the asked count",
				"ranges");
	json_array_foreach(j, i, p) {
		json_t *o = json_array_get(p, 0), *l = json_array_get(p, 1);

		if (!json_is_array(p) || json_array_size(p) != 2 || !json_is_integer(o) ||
		    !json_is_integer(l) || json_integer_value(o) < 0 || json_integer_value(l) <= 0)
			return why_fail(why, why_len, "field '%s' must hold [offset, length] pairs",
					"ranges");
		out[i] = (struct ts_csi_range){ (uint64_t)json_integer_value(o),
						(uint64_t)json_integer_value(l) };
	}
	*n = json_array_size(j);
	return 0;
}
