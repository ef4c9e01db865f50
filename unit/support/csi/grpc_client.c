/* SPDX-License-Identifier: Apache-2.0 */
#include "unit/support/csi/grpc_client.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

grpc_channel *gc_connect(const char *endpoint)
{
	grpc_channel_credentials *creds;
	grpc_channel *ch;

	grpc_init();
	creds = grpc_insecure_credentials_create();
	ch = grpc_channel_create(endpoint, creds, NULL);
	grpc_channel_credentials_release(creds);
	return ch;
}

void gc_close(grpc_channel *ch)
{
	if (ch)
		grpc_channel_destroy(ch);
	grpc_shutdown();
}

int gc_call(grpc_channel *ch, const char *method, const void *req,
	    const ProtobufCMessageDescriptor *resp_desc, void **resp, int timeout_ms, char *msg,
	    size_t msg_len)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec dl = timeout_ms == -1 ? gpr_inf_future(GPR_CLOCK_REALTIME)
					 : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
							gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
						   grpc_slice_from_static_string(method), NULL, dl,
						   NULL);
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(n + 1);
	grpc_slice s;
	grpc_byte_buffer *send, *recv = NULL;
	grpc_metadata_array md_init, md_trail;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[6];
	int tag;

	protobuf_c_message_pack(req, buf);
	s = grpc_slice_from_copied_buffer((const char *)buf, n);
	free(buf);
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
	if (grpc_call_start_batch(call, ops, 6, &tag, NULL) == GRPC_CALL_OK)
		grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	if (msg && msg_len) {
		char *d = grpc_slice_to_c_string(details);

		snprintf(msg, msg_len, "%s", d);
		gpr_free(d);
	}
	if (resp)
		*resp = NULL;
	if (status == GRPC_STATUS_OK && recv && resp && resp_desc) {
		grpc_byte_buffer_reader r;
		grpc_slice all;

		grpc_byte_buffer_reader_init(&r, recv);
		all = grpc_byte_buffer_reader_readall(&r);
		grpc_byte_buffer_reader_destroy(&r);
		*resp = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(all),
						  GRPC_SLICE_START_PTR(all));
		grpc_slice_unref(all);
		if (!*resp)
			status = GRPC_STATUS_DATA_LOSS;
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
	return (int)status;
}

static void gc_run(grpc_call *call, grpc_completion_queue *cq, grpc_op *ops, size_t n)
{
	int tag;

	if (grpc_call_start_batch(call, ops, n, &tag, NULL) == GRPC_CALL_OK)
		grpc_completion_queue_pluck(cq, &tag, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
}

int gc_stream(grpc_channel *ch, const char *method, const void *req,
	      const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n, int timeout_ms,
	      char *msg, size_t msg_len)
{
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	gpr_timespec dl = timeout_ms == -1 ? gpr_inf_future(GPR_CLOCK_REALTIME)
					 : gpr_time_add(gpr_now(GPR_CLOCK_REALTIME),
							gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
	grpc_call *call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
						   grpc_slice_from_static_string(method), NULL, dl,
						   NULL);
	size_t len = protobuf_c_message_get_packed_size(req), cap = 0;
	uint8_t *buf = malloc(len + 1);
	grpc_slice s;
	grpc_byte_buffer *send;
	grpc_metadata_array md_init, md_trail;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	grpc_slice details = grpc_empty_slice();
	grpc_op ops[4];

	*resps = NULL;
	*n = 0;
	protobuf_c_message_pack(req, buf);
	s = grpc_slice_from_copied_buffer((const char *)buf, len);
	free(buf);
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
	gc_run(call, cq, ops, 4);
	for (int i = 0; i < 1000000; i++) { /* bounded: a test stream is far shorter */
		grpc_byte_buffer *recv = NULL;
		grpc_byte_buffer_reader r;
		grpc_slice all;
		void *m;

		memset(ops, 0, sizeof(ops));
		ops[0].op = GRPC_OP_RECV_MESSAGE;
		ops[0].data.recv_message.recv_message = &recv;
		gc_run(call, cq, ops, 1);
		if (!recv)
			break;
		grpc_byte_buffer_reader_init(&r, recv);
		all = grpc_byte_buffer_reader_readall(&r);
		grpc_byte_buffer_reader_destroy(&r);
		m = protobuf_c_message_unpack(resp_desc, NULL, GRPC_SLICE_LENGTH(all),
					      GRPC_SLICE_START_PTR(all));
		grpc_slice_unref(all);
		grpc_byte_buffer_destroy(recv);
		if (!m)
			break;
		if (*n == cap) {
			cap = cap ? 2 * cap : 8;
			*resps = realloc(*resps, cap * sizeof(void *));
		}
		(*resps)[(*n)++] = m;
	}
	memset(ops, 0, sizeof(ops));
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &md_trail;
	ops[0].data.recv_status_on_client.status = &status;
	ops[0].data.recv_status_on_client.status_details = &details;
	gc_run(call, cq, ops, 1);
	if (msg && msg_len) {
		char *d = grpc_slice_to_c_string(details);

		snprintf(msg, msg_len, "%s", d);
		gpr_free(d);
	}
	grpc_byte_buffer_destroy(send);
	grpc_slice_unref(details);
	grpc_metadata_array_destroy(&md_init);
	grpc_metadata_array_destroy(&md_trail);
	grpc_call_unref(call);
	grpc_completion_queue_shutdown(cq);
	grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	grpc_completion_queue_destroy(cq);
	return (int)status;
}
