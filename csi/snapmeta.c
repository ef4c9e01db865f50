/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CSI SnapshotMetadata service (csi.proto v1.12, alpha): GetMetadataAllocated
 * and GetMetadataDelta, both server streaming, over the backend's optional
 * snap_delta op (the data plane answers it with ts_chain_delta), and the
 * stream cycle the server loop drives for streaming methods.
 *
 * A stream is produced lazily, one response per page: the server sends a
 * message, and only when that send has completed asks for the next one, so
 * a huge snapshot never sits in memory as a whole and no worker thread ever
 * waits for a client. open() already fetches the first page, so the errors
 * the spec defines (INVALID_ARGUMENT, NOT_FOUND for an unknown snapshot,
 * OUT_OF_RANGE for a negative starting_offset or one beyond the volume) are
 * the call's status with no message before it.
 *
 * Responses use VARIABLE_LENGTH block metadata: the backend returns coalesced
 * byte ranges (4 KiB grains), ascending and non-overlapping across the
 * whole stream. The first range may begin before starting_offset (an offset
 * inside a grain) but always ends after it, which is what the spec asks.
 * Every message carries the target snapshot's size as
 * volume_capacity_bytes; at least one message is sent (with no ranges when
 * nothing is allocated or changed), so a client always learns the size.
 * max_results caps the ranges per message (0 = 256, at most 4096).
 *
 * The base and target of a delta may be any two snapshots the backend
 * knows (the data plane computes deltas across a whole snapshot tree), not
 * only two of the same volume.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#define META_DEFAULT_MAX 256
#define META_LIMIT_MAX 4096

/* ---- the stream cycle ---- */

struct csi_stream {
	struct ts_csi_driver *d;
	const struct csi_stream_method *m;
	struct csi_call c; /* status, deadline, cancellation, the state's arena */
	void *state;
	bool failed, done;
};

static void *pb_alloc(void *data, size_t size)
{
	(void)data;
	return ts_malloc(size ? size : 1);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	ts_free(p);
}

static ProtobufCAllocator g_alloc = { .alloc = pb_alloc, .free = pb_free };

struct csi_stream *csi_stream_open(struct ts_csi_driver *d, const struct csi_stream_method *m,
				   const uint8_t *req, size_t req_len, const atomic_bool *cancelled,
				   uint64_t deadline_ns)
{
	struct csi_stream *st = ts_calloc(1, sizeof(*st));
	ProtobufCMessage *in;

	if (!st)
		return NULL;
	st->d = d;
	st->m = m;
	csi_call_init(&st->c);
	st->c.cancelled = cancelled;
	st->c.deadline_ns = deadline_ns;
	in = protobuf_c_message_unpack(m->req_desc, &g_alloc, req_len, req);
	if (!in) {
		csi_fail(&st->c, CSI_INVALID_ARGUMENT, "request is not a valid %s message",
			 m->req_desc->name);
		st->failed = true;
		return st;
	}
	if (csi_check_live(&st->c) || m->open(d, &st->c, in, &st->state))
		st->failed = true;
	protobuf_c_message_free_unpacked(in, &g_alloc);
	return st;
}

int csi_stream_next(struct csi_stream *st, uint8_t **buf, size_t *len)
{
	ProtobufCMessage *out;
	struct csi_call mc;
	int rc;

	*buf = NULL;
	*len = 0;
	if (st->failed)
		return -1;
	if (st->done)
		return 0;
	if (csi_check_live(&st->c)) {
		st->failed = true;
		return -1;
	}
	csi_call_init(&mc);
	mc.cancelled = st->c.cancelled;
	mc.deadline_ns = st->c.deadline_ns;
	out = csi_alloc(&mc, st->m->resp_desc->sizeof_message);
	if (!out) {
		rc = csi_fail(&st->c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	st->m->resp_desc->message_init(out);
	rc = st->m->next(st->d, &mc, st->state, out);
	if (rc < 0) {
		csi_fail(&st->c, mc.code, "%s", mc.msg);
		goto out;
	}
	if (rc == 0)
		goto out;
	*len = protobuf_c_message_get_packed_size(out);
	*buf = ts_malloc(*len ? *len : 1);
	if (!*buf) {
		rc = csi_fail(&st->c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	*len = protobuf_c_message_pack(out, *buf);
	rc = 1;
out:
	csi_call_fini(&mc);
	if (rc < 0)
		st->failed = true;
	else if (rc == 0)
		st->done = true;
	return rc;
}

int csi_stream_status(const struct csi_stream *st, const char **msg)
{
	*msg = st->failed ? st->c.msg : "";
	return st->failed ? st->c.code : CSI_OK;
}

void csi_stream_close(struct csi_stream *st)
{
	if (!st)
		return;
	csi_call_fini(&st->c);
	ts_free(st);
}

/* ---- SnapshotMetadata ---- */

struct meta_state {
	char base[TS_CSI_ID_MAX + 1], target[TS_CSI_ID_MAX + 1];
	bool delta;            /* GetMetadataDelta (base set) */
	size_t max;            /* ranges per message */
	uint64_t size;         /* the target's size */
	uint64_t next;         /* where the next page starts; UINT64_MAX = no more */
	struct ts_csi_range *page; /* the page fetched, not yet sent */
	size_t n;
	bool sent;             /* at least one message went out */
};

/* Fetch the page at st->next into st->page. */
static int meta_fetch(struct ts_csi_driver *d, struct csi_call *c, struct meta_state *st)
{
	uint64_t next;
	int rc;

	rc = d->be->snap_delta(d->be_ctx, st->delta ? st->base : NULL, st->target, st->next,
			       st->page, st->max, &st->n, &next, &st->size);
	if (rc == -ENOENT)
		return csi_fail(c, CSI_NOT_FOUND, "snapshot %s%s%s does not exist",
				st->delta ? st->base : st->target, st->delta ? " or " : "",
				st->delta ? st->target : "");
	if (rc == -ERANGE)
		return csi_fail(c, CSI_OUT_OF_RANGE,
				"starting_offset %" PRIu64 " is beyond the snapshot's %" PRIu64 " bytes",
				st->next, st->size);
	if (rc)
		return csi_fail_err(c, rc, "backend snapshot metadata");
	st->next = next;
	return 0;
}

static int meta_open(struct ts_csi_driver *d, struct csi_call *c, const char *base,
		     const char *target, int64_t start, int32_t max, void **state)
{
	struct meta_state *st;

	if (!d->controller)
		return csi_fail(c, CSI_UNIMPLEMENTED, "this instance does not run the controller");
	if (!d->be->snap_delta)
		return csi_fail(c, CSI_UNIMPLEMENTED, "backend %s has no snapshot metadata",
				d->be->name);
	if (base && csi_check_id(c, "base_snapshot_id", base))
		return -1;
	if (csi_check_id(c, base ? "target_snapshot_id" : "snapshot_id", target))
		return -1;
	if (max < 0)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "max_results must not be negative");
	if (start < 0)
		return csi_fail(c, CSI_OUT_OF_RANGE, "starting_offset must not be negative");
	st = csi_alloc(c, sizeof(*st));
	if (!st)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	st->delta = base != NULL;
	if (base)
		snprintf(st->base, sizeof(st->base), "%s", base);
	snprintf(st->target, sizeof(st->target), "%s", target);
	st->max = max ? TS_MIN((size_t)max, META_LIMIT_MAX) : META_DEFAULT_MAX;
	st->next = (uint64_t)start;
	st->page = csi_alloc(c, st->max * sizeof(*st->page));
	if (!st->page)
		return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	if (meta_fetch(d, c, st))
		return -1;
	*state = st;
	return 0;
}

/* Fill the common response fields from the current page; 0 or -1. */
static int meta_fill(struct csi_call *c, struct meta_state *st,
		     Csi__V1__BlockMetadataType *type, int64_t *cap, size_t *n_bm,
		     Csi__V1__BlockMetadata ***bm)
{
	Csi__V1__BlockMetadata *all = NULL, **ptrs = NULL;

	if (st->n) {
		all = csi_alloc(c, st->n * sizeof(*all));
		ptrs = csi_alloc(c, st->n * sizeof(*ptrs));
		if (!all || !ptrs)
			return csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
	}
	for (size_t i = 0; i < st->n; i++) {
		csi__v1__block_metadata__init(&all[i]);
		all[i].byte_offset = (int64_t)st->page[i].offset;
		all[i].size_bytes = (int64_t)st->page[i].length;
		ptrs[i] = &all[i];
	}
	*type = CSI__V1__BLOCK_METADATA_TYPE__VARIABLE_LENGTH;
	*cap = (int64_t)TS_MIN(st->size, (uint64_t)INT64_MAX);
	*n_bm = st->n;
	*bm = ptrs;
	return 0;
}

/* 1 when the current page is to be sent, 0 at the end, -1 on error. */
static int meta_step(struct ts_csi_driver *d, struct csi_call *c, struct meta_state *st)
{
	/* The first page was fetched by open; later ones here, skipping empty pages. */
	while (st->sent && !st->n) {
		if (st->next == UINT64_MAX)
			return 0;
		if (meta_fetch(d, c, st))
			return -1;
	}
	return 1;
}

static void meta_sent(struct meta_state *st)
{
	st->sent = true;
	st->n = 0;
}

static int allocated_open(struct ts_csi_driver *d, struct csi_call *c, const void *reqp,
			  void **state)
{
	const Csi__V1__GetMetadataAllocatedRequest *req = reqp;

	return meta_open(d, c, NULL, req->snapshot_id, req->starting_offset, req->max_results,
			 state);
}

static int allocated_next(struct ts_csi_driver *d, struct csi_call *c, void *state, void *respp)
{
	Csi__V1__GetMetadataAllocatedResponse *resp = respp;
	struct meta_state *st = state;
	int rc = meta_step(d, c, st);

	if (rc <= 0)
		return rc;
	if (meta_fill(c, st, &resp->block_metadata_type, &resp->volume_capacity_bytes,
		      &resp->n_block_metadata, &resp->block_metadata))
		return -1;
	meta_sent(st);
	return 1;
}

static int delta_open(struct ts_csi_driver *d, struct csi_call *c, const void *reqp, void **state)
{
	const Csi__V1__GetMetadataDeltaRequest *req = reqp;

	/* "" (not NULL) marks a delta: meta_open reports it as a missing base. */
	return meta_open(d, c, req->base_snapshot_id ? req->base_snapshot_id : "",
			 req->target_snapshot_id,
			 req->starting_offset, req->max_results, state);
}

static int delta_next(struct ts_csi_driver *d, struct csi_call *c, void *state, void *respp)
{
	Csi__V1__GetMetadataDeltaResponse *resp = respp;
	struct meta_state *st = state;
	int rc = meta_step(d, c, st);

	if (rc <= 0)
		return rc;
	if (meta_fill(c, st, &resp->block_metadata_type, &resp->volume_capacity_bytes,
		      &resp->n_block_metadata, &resp->block_metadata))
		return -1;
	meta_sent(st);
	return 1;
}

const struct csi_stream_method csi_snapmeta_methods[] = {
	{ "/csi.v1.SnapshotMetadata/GetMetadataAllocated",
	  &csi__v1__get_metadata_allocated_request__descriptor,
	  &csi__v1__get_metadata_allocated_response__descriptor, allocated_open, allocated_next },
	{ "/csi.v1.SnapshotMetadata/GetMetadataDelta", &csi__v1__get_metadata_delta_request__descriptor,
	  &csi__v1__get_metadata_delta_response__descriptor, delta_open, delta_next },
};
const size_t csi_snapmeta_method_count = TS_ARRAY_SIZE(csi_snapmeta_methods);
