/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unary and server-streaming gRPC calls on gRPC core, for the CLI and the
 * unit tests' CSI client (unit/support/csi). Each call has its own pluck
 * completion queue. A unary call is one batch with every op (send metadata,
 * message and half-close; receive metadata, message and status), so it is
 * one round trip and one wait; a streaming call sends the same way, then
 * receives one message per batch until the stream ends (or the caller's
 * callback asks to cancel), then the status. Requests are fail-fast (no wait-for-ready): a
 * missing socket answers UNAVAILABLE at once instead of hanging until the
 * deadline.
 */
#include "csi/rpc/client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "dataplane/common/ts_common.h"

struct ts_client {
	grpc_channel *ch;
};

int ts_client_open(const char *endpoint, struct ts_client **out)
{
	grpc_channel_credentials *creds;
	struct ts_client *c;
	char *target = NULL;

	*out = NULL;
	if (!endpoint || !endpoint[0])
		return -EINVAL;
	c = ts_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	if (endpoint[0] == '/') {
		target = ts_malloc(strlen(endpoint) + 8);
		if (!target) {
			ts_free(c);
			return -ENOMEM;
		}
		sprintf(target, "unix://%s", endpoint);
	}
	grpc_init();
	creds = grpc_insecure_credentials_create();
	c->ch = grpc_channel_create(target ? target : endpoint, creds, NULL);
	grpc_channel_credentials_release(creds);
	ts_free(target);
	if (!c->ch) {
		grpc_shutdown();
		ts_free(c);
		return -EINVAL;
	}
	*out = c;
	return 0;
}

void ts_client_close(struct ts_client *c)
{
	if (!c)
		return;
	grpc_channel_destroy(c->ch);
	ts_free(c);
	grpc_shutdown();
}

/* ---- one call: create, run batches, finish ---- */

struct rpc {
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_byte_buffer *send;
	grpc_metadata_array md_init, md_trail;
	grpc_status_code status;
	grpc_slice details;
};

/* Create the call; clears the caller's status message \p msg. */
static void rpc_start(struct rpc *r, struct ts_client *c, const char *method, const void *req,
		      size_t req_len, const struct timespec *deadline, char *msg, size_t msg_len)
{
	gpr_timespec dl = gpr_inf_future(GPR_CLOCK_REALTIME);
	grpc_slice s;

	if (msg && msg_len)
		msg[0] = '\0';

	if (deadline) {
		dl.tv_sec = deadline->tv_sec;
		dl.tv_nsec = (int32_t)deadline->tv_nsec;
	}
	memset(r, 0, sizeof(*r));
	r->status = GRPC_STATUS_UNKNOWN;
	r->details = grpc_empty_slice();
	r->cq = grpc_completion_queue_create_for_pluck(NULL);
	r->call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, r->cq,
					   grpc_slice_from_static_string(method), NULL, dl, NULL);
	s = grpc_slice_from_copied_buffer(req, req_len);
	r->send = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_metadata_array_init(&r->md_init);
	grpc_metadata_array_init(&r->md_trail);
}

/* Send metadata, the request and half-close, receive metadata: ops[0..3]. */
static size_t rpc_send_ops(struct rpc *r, grpc_op *ops)
{
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = r->send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &r->md_init;
	return 4;
}

static void rpc_status_op(struct rpc *r, grpc_op *op)
{
	op->op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	op->data.recv_status_on_client.trailing_metadata = &r->md_trail;
	op->data.recv_status_on_client.status = &r->status;
	op->data.recv_status_on_client.status_details = &r->details;
}

/* Run \p n ops as one batch and wait for it: 0, or -EIO when it cannot start. */
static int rpc_batch(struct rpc *r, const grpc_op *ops, size_t n)
{
	int tag;

	if (grpc_call_start_batch(r->call, ops, n, &tag, NULL) != GRPC_CALL_OK)
		return -EIO;
	grpc_completion_queue_pluck(r->cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	return 0;
}

/* Copy the status message to \p msg, free the call. */
static void rpc_finish(struct rpc *r, char *msg, size_t msg_len)
{
	if (msg && msg_len) {
		char *d = grpc_slice_to_c_string(r->details);

		snprintf(msg, msg_len, "%s", d);
		gpr_free(d);
	}
	grpc_byte_buffer_destroy(r->send);
	grpc_slice_unref(r->details);
	grpc_metadata_array_destroy(&r->md_init);
	grpc_metadata_array_destroy(&r->md_trail);
	grpc_call_unref(r->call);
	grpc_completion_queue_shutdown(r->cq);
	grpc_completion_queue_pluck(r->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_destroy(r->cq);
}

/* The bytes of \p bb as a NUL-terminated ts_malloc'd copy: 0, -EIO or -ENOMEM. */
static int copy_message(grpc_byte_buffer *bb, char **out, size_t *len)
{
	grpc_byte_buffer_reader r;
	grpc_slice all;
	int rc = 0;

	if (!grpc_byte_buffer_reader_init(&r, bb))
		return -EIO;
	all = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	*out = ts_malloc(GRPC_SLICE_LENGTH(all) + 1);
	if (*out) {
		memcpy(*out, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
		(*out)[GRPC_SLICE_LENGTH(all)] = '\0';
		*len = GRPC_SLICE_LENGTH(all);
	} else {
		rc = -ENOMEM;
	}
	grpc_slice_unref(all);
	return rc;
}

/* ---- API ---- */

int ts_client_call_at(struct ts_client *c, const char *method, const void *req, size_t req_len,
		      char **resp, size_t *resp_len, const struct timespec *deadline, char *msg,
		      size_t msg_len)
{
	grpc_byte_buffer *recv = NULL;
	struct rpc r;
	grpc_op ops[6];
	int rc;

	*resp = NULL;
	*resp_len = 0;
	rpc_start(&r, c, method, req, req_len, deadline, msg, msg_len);
	memset(ops, 0, sizeof(ops));
	rpc_send_ops(&r, ops);
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	rpc_status_op(&r, &ops[5]);
	rc = rpc_batch(&r, ops, 6);
	if (rc == 0)
		rc = (int)r.status;
	/* A reply the reader cannot open leaves *resp NULL with the status. */
	if (rc == GRPC_STATUS_OK && recv && copy_message(recv, resp, resp_len) == -ENOMEM)
		rc = -ENOMEM;
	if (recv)
		grpc_byte_buffer_destroy(recv);
	rpc_finish(&r, rc >= 0 ? msg : NULL, msg_len);
	return rc;
}

int ts_client_call(struct ts_client *c, const char *method, const void *req, size_t req_len,
		   char **resp, size_t *resp_len, int timeout_ms, char *msg, size_t msg_len)
{
	struct timespec dl;

	if (timeout_ms < 0)
		return ts_client_call_at(c, method, req, req_len, resp, resp_len, NULL, msg,
					 msg_len);
	ts_client_deadline(timeout_ms, &dl);
	return ts_client_call_at(c, method, req, req_len, resp, resp_len, &dl, msg, msg_len);
}

void ts_client_deadline(int64_t timeout_ms, struct timespec *out)
{
	int64_t ns;

	clock_gettime(CLOCK_REALTIME, out);
	ns = (int64_t)out->tv_nsec + (timeout_ms % 1000) * 1000000;
	out->tv_sec += (time_t)(timeout_ms / 1000);
	if (ns < 0) {
		ns += 1000000000;
		out->tv_sec--;
	} else if (ns >= 1000000000) {
		ns -= 1000000000;
		out->tv_sec++;
	}
	out->tv_nsec = (long)ns;
}

int ts_client_stream(struct ts_client *c, const char *method, const void *req, size_t req_len,
		     const struct timespec *deadline,
		     int (*on_msg)(void *arg, const char *buf, size_t len), void *arg, char *msg,
		     size_t msg_len)
{
	struct rpc r;
	grpc_op ops[4];
	int rc;

	rpc_start(&r, c, method, req, req_len, deadline, msg, msg_len);
	memset(ops, 0, sizeof(ops));
	rc = rpc_batch(&r, ops, rpc_send_ops(&r, ops));
	while (rc == 0) {
		grpc_byte_buffer *recv = NULL;
		char *buf = NULL;
		size_t len = 0;
		int stop;

		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recv;
		if (rpc_batch(&r, ops, 1) || !recv)
			break; /* end of stream: the status follows */
		stop = copy_message(recv, &buf, &len) ? 1 : on_msg(arg, buf, len);
		ts_free(buf);
		grpc_byte_buffer_destroy(recv);
		if (stop) {
			grpc_call_cancel(r.call, NULL);
			break;
		}
	}
	memset(ops, 0, sizeof(ops));
	rpc_status_op(&r, &ops[0]);
	if (rc == 0)
		rc = rpc_batch(&r, ops, 1);
	if (rc == 0)
		rc = (int)r.status;
	rpc_finish(&r, rc >= 0 ? msg : NULL, msg_len);
	return rc;
}
