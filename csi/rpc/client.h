/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * A small gRPC client on gRPC C core (unary and server-streaming calls),
 * used by the `tessera` CLI to reach the admin service and by the unit
 * tests' CSI client (unit/support/csi/grpc_client.h). Messages are raw
 * bytes: the caller encodes and decodes them.
 *
 * THREAD SAFETY: one client per thread; calls on one client are sequential.
 */
#ifndef TS_CSI_RPC_CLIENT_H
#define TS_CSI_RPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ts_client;

/**
 * Open a channel to \p endpoint (any gRPC target: `unix:///path`,
 * `host:port`; a bare absolute path is taken as `unix://` + path). No
 * connection is made until the first call. 0 and *out, -EINVAL, -ENOMEM.
 * Free with ts_client_close().
 */
int ts_client_open(const char *endpoint, struct ts_client **out);

/** Close the channel (NULL is a no-op). */
void ts_client_close(struct ts_client *c);

/**
 * One unary call of \p method with the request bytes \p req (\p req_len),
 * waiting at most \p timeout_ms (< 0: no deadline). The call fails fast
 * (UNAVAILABLE) when nothing listens at the endpoint.
 * Returns the gRPC status code (0 = OK, or a negative -errno when the call
 * could not be started). On OK, *resp is a NUL-terminated ts_malloc'd copy
 * of the response bytes (*resp_len without the NUL; caller ts_free()s);
 * otherwise *resp is NULL. The status message goes to \p msg.
 */
int ts_client_call(struct ts_client *c, const char *method, const void *req, size_t req_len,
		   char **resp, size_t *resp_len, int timeout_ms, char *msg, size_t msg_len);

/**
 * ts_client_call() with an absolute deadline: \p deadline is CLOCK_REALTIME
 * (NULL: none); one already past fails the call with DEADLINE_EXCEEDED.
 * Same returns, ownership and status message as ts_client_call().
 */
int ts_client_call_at(struct ts_client *c, const char *method, const void *req, size_t req_len,
		      char **resp, size_t *resp_len, const struct timespec *deadline, char *msg,
		      size_t msg_len);

/** *\p out = now (CLOCK_REALTIME) + \p timeout_ms; negative values give a past deadline. */
void ts_client_deadline(int64_t timeout_ms, struct timespec *out);

/**
 * A server-streaming call of \p method with the request bytes \p req:
 * \p on_msg gets each response's bytes (valid during the callback only,
 * NUL-terminated) in order and returns 0 to go on, or non-zero to cancel
 * the call (its status is then CANCELLED). \p deadline as for
 * ts_client_call_at(). Returns the gRPC status code, or -errno when the
 * call could not be run; the status message goes to \p msg.
 */
int ts_client_stream(struct ts_client *c, const char *method, const void *req, size_t req_len,
		     const struct timespec *deadline,
		     int (*on_msg)(void *arg, const char *buf, size_t len), void *arg, char *msg,
		     size_t msg_len);

#endif /* TS_CSI_RPC_CLIENT_H */
