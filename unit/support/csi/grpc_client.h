/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal unary gRPC client on gRPC core, for tests that go through the real server. */
#ifndef TS_UNIT_CSI_GRPC_CLIENT_H
#define TS_UNIT_CSI_GRPC_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

/* Connect to \p endpoint ("unix:///path"). */
grpc_channel *gc_connect(const char *endpoint);
void gc_close(grpc_channel *ch);

/*
 * Unary call of \p method with \p req; \p timeout_ms -1 means no deadline, other negative values a deadline already past.
 * Returns the gRPC status code; on OK with \p resp_desc, *resp gets the
 * decoded response (protobuf_c_message_free_unpacked(*resp, NULL)).
 * The status message goes to \p msg.
 */
int gc_call(grpc_channel *ch, const char *method, const void *req,
	    const ProtobufCMessageDescriptor *resp_desc, void **resp, int timeout_ms, char *msg,
	    size_t msg_len);

/*
 * Server-streaming call: sends \p req, collects every response decoded with
 * \p resp_desc into a malloc'd array (*resps, *n; free each with
 * protobuf_c_message_free_unpacked(.., NULL), then free(*resps)), whatever
 * the final status. Returns the gRPC status code; message into \p msg.
 */
int gc_stream(grpc_channel *ch, const char *method, const void *req,
	      const ProtobufCMessageDescriptor *resp_desc, void ***resps, size_t *n, int timeout_ms,
	      char *msg, size_t msg_len);

#endif
