/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The tests' CSI client: packs the request, calls ts_client_call_at() or
 * ts_client_stream() (csi/rpc/client.c does all of the gRPC work, so the
 * tests exercise the same client code the CLI runs), and unpacks the
 * responses. Only the test conventions live here: timeout -1 is no
 * deadline and any other negative one a deadline already past; a call that
 * cannot run is UNKNOWN; an OK response that does not decode is DATA_LOSS.
 */
#include "unit/support/csi/grpc_client.h"

#include <stdint.h>
#include <stdlib.h>

#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"

enum { GC_UNKNOWN = 2, GC_DATA_LOSS = 15 };

struct ts_client *gc_connect(const char *endpoint)
{
	struct ts_client *c;

	return ts_client_open(endpoint, &c) ? NULL : c;
}

void gc_close(struct ts_client *ch)
{
	ts_client_close(ch);
}

/* The deadline for \p timeout_ms into *\p dl; NULL for none (-1). */
static const struct timespec *deadline(int timeout_ms, struct timespec *dl)
{
	if (timeout_ms == -1)
		return NULL;
	ts_client_deadline(timeout_ms, dl);
	return dl;
}

/* \p req packed into a malloc'd buffer (*len bytes); NULL on ENOMEM. */
static uint8_t *pack(const void *req, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(req);
	buf = malloc(*len + 1);
	if (buf)
		protobuf_c_message_pack(req, buf);
	return buf;
}

int gc_call(struct ts_client *ch, const char *method, const void *req,
	    const ProtobufCMessageDescriptor *resp_desc, void **resp, int timeout_ms, char *msg,
	    size_t msg_len)
{
	struct timespec dl;
	size_t len, raw_len = 0;
	uint8_t *buf = pack(req, &len);
	char *raw = NULL;
	int st;

	if (resp)
		*resp = NULL;
	if (msg && msg_len)
		msg[0] = '\0';
	if (!buf)
		return GC_UNKNOWN;
	st = ts_client_call_at(ch, method, buf, len, &raw, &raw_len, deadline(timeout_ms, &dl), msg,
			       msg_len);
	free(buf);
	if (st < 0)
		st = GC_UNKNOWN;
	if (st == 0 && raw && resp && resp_desc) {
		*resp = protobuf_c_message_unpack(resp_desc, NULL, raw_len, (const uint8_t *)raw);
		if (!*resp)
			st = GC_DATA_LOSS;
	}
	ts_free(raw);
	return st;
}

struct collect {
	const ProtobufCMessageDescriptor *desc;
	void **v;
	size_t n, cap, max;
};

static int collect_one(void *arg, const char *buf, size_t len)
{
	struct collect *col = arg;
	void *m = protobuf_c_message_unpack(col->desc, NULL, len, (const uint8_t *)buf);

	if (!m)
		return 1;
	if (col->n == col->cap) {
		size_t cap = col->cap ? 2 * col->cap : 8;
		void **v = realloc(col->v, cap * sizeof(void *));

		if (!v) {
			protobuf_c_message_free_unpacked(m, NULL);
			return 1;
		}
		col->v = v;
		col->cap = cap;
	}
	col->v[col->n++] = m;
	return col->n >= col->max;
}

int gc_stream_max(struct ts_client *ch, const char *method, const void *req,
		  const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n,
		  size_t max, int timeout_ms, char *msg, size_t msg_len)
{
	struct collect col = { .desc = resp_desc, .max = max };
	struct timespec dl;
	size_t len;
	uint8_t *buf = pack(req, &len);
	int st = GC_UNKNOWN;

	if (msg && msg_len)
		msg[0] = '\0';
	if (buf)
		st = ts_client_stream(ch, method, buf, len, deadline(timeout_ms, &dl), collect_one,
				      &col, msg, msg_len);
	free(buf);
	*resps = col.v;
	*n = col.n;
	return st < 0 ? GC_UNKNOWN : st;
}

int gc_stream(struct ts_client *ch, const char *method, const void *req,
	      const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n, int timeout_ms,
	      char *msg, size_t msg_len)
{
	return gc_stream_max(ch, method, req, resp_desc, resps, n, SIZE_MAX, timeout_ms, msg,
			     msg_len);
}
