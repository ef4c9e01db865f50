/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unary gRPC calls on gRPC core for the CLI. Each call has its own pluck
 * completion queue and one batch with every op (send metadata, message and
 * half-close; receive metadata, message and status), so a call is one
 * round trip and one wait. Requests are fail-fast (no wait-for-ready): a
 * missing socket answers UNAVAILABLE at once instead of hanging until the
 * deadline.
 */
#include "csi/rpc/client.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

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

int ts_client_call(struct ts_client *c, const char *method, const void *req, size_t req_len,
		   char **resp, size_t *resp_len, int timeout_ms, char *msg, size_t msg_len)
{
	grpc_completion_queue *cq;
	gpr_timespec dl;
	grpc_call *call;
	grpc_slice s, details = grpc_empty_slice();
	grpc_byte_buffer *send, *recv = NULL;
	grpc_metadata_array md_init, md_trail;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_op ops[6];
	int tag, rc;

	*resp = NULL;
	*resp_len = 0;
	if (msg && msg_len)
		msg[0] = '\0';
	dl = timeout_ms < 0 ? gpr_inf_future(GPR_CLOCK_REALTIME)
			    : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
					   gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	cq = grpc_completion_queue_create_for_pluck(NULL);
	call = grpc_channel_create_call(c->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
					grpc_slice_from_static_string(method), NULL, dl, NULL);
	s = grpc_slice_from_copied_buffer(req, req_len);
	send = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	grpc_metadata_array_init(&md_init);
	grpc_metadata_array_init(&md_trail);
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = send;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_init;
	ops[4].op = GRPC_OP_RECV_MESSAGE;
	ops[4].data.recv_message.recv_message = &recv;
	ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
	ops[5].data.recv_status_on_client.status = &status;
	ops[5].data.recv_status_on_client.status_details = &details;
	if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK) {
		grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
		rc = (int)status;
	} else {
		rc = -EIO;
	}
	if (msg && msg_len && rc >= 0) {
		char *d = grpc_slice_to_c_string(details);

		snprintf(msg, msg_len, "%s", d);
		gpr_free(d);
	}
	if (rc == GRPC_STATUS_OK && recv) {
		grpc_byte_buffer_reader r;
		grpc_slice all;

		if (grpc_byte_buffer_reader_init(&r, recv)) {
			all = grpc_byte_buffer_reader_readall(&r);
			grpc_byte_buffer_reader_destroy(&r);
			*resp = ts_malloc(GRPC_SLICE_LENGTH(all) + 1);
			if (*resp) {
				memcpy(*resp, GRPC_SLICE_START_PTR(all), GRPC_SLICE_LENGTH(all));
				(*resp)[GRPC_SLICE_LENGTH(all)] = '\0';
				*resp_len = GRPC_SLICE_LENGTH(all);
			} else {
				rc = -ENOMEM;
			}
			grpc_slice_unref(all);
		}
	}
	if (recv)
		grpc_byte_buffer_destroy(recv);
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_init);
	grpc_metadata_array_destroy(&md_trail);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_destroy(cq);
	return rc;
}
