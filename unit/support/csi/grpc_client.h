/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The unit tests' CSI client: protobuf-c encoding and decoding around the
 * product's gRPC client (csi/rpc/client.h), for tests that go through the
 * real server. Status codes and messages are the server's, unchanged.
 */
#ifndef TS_UNIT_CSI_GRPC_CLIENT_H
#define TS_UNIT_CSI_GRPC_CLIENT_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct ts_client;

/* Connect to \p endpoint ("unix:///path"); NULL on failure. */
struct ts_client *gc_connect(const char *endpoint);
void gc_close(struct ts_client *ch);

/*
 * Unary call of \p method with \p req; \p timeout_ms -1 means no deadline,
 * other negative values a deadline already past.
 * Returns the gRPC status code (UNKNOWN when the call could not be run,
 * DATA_LOSS when an OK response does not decode); on OK with \p resp_desc,
 * *resp gets the decoded response (protobuf_c_message_free_unpacked(*resp,
 * NULL)). The status message goes to \p msg.
 */
int gc_call(struct ts_client *ch, const char *method, const void *req,
	    const ProtobufCMessageDescriptor *resp_desc, void **resp, int timeout_ms, char *msg,
	    size_t msg_len);

/*
 * Server-streaming call: sends \p req, collects every response decoded with
 * \p resp_desc into a malloc'd array (*resps, *n; free each with
 * protobuf_c_message_free_unpacked(.., NULL), then free(*resps)), whatever
 * the final status. Returns the gRPC status code; message into \p msg.
 */
int gc_stream(struct ts_client *ch, const char *method, const void *req,
	      const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n, int timeout_ms,
	      char *msg, size_t msg_len);

/*
 * gc_stream() that cancels the call once \p max responses have arrived (the
 * status is then CANCELLED).
 */
int gc_stream_max(struct ts_client *ch, const char *method, const void *req,
		  const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n,
		  size_t max, int timeout_ms, char *msg, size_t msg_len);

#endif
