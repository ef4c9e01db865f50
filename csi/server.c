/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gRPC server loop: gRPC C core, one completion queue, a small pool of
 * worker threads.
 *
 * Every CSI method (and every admin and engine method, csi/admin.c and
 * csi/engine.c: same dispatch, JSON bodies) is registered with GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER
 * (a unary request arrives with its one message), and two requests per method
 * are kept armed. A worker that receives a new call re-arms its slot first,
 * then starts a RECV_CLOSE_ON_SERVER batch (its completion tells us the client
 * cancelled or went away, which the handler sees through csi_check_live()),
 * converts the call's deadline into a monotonic deadline for the handler, runs
 * the handler synchronously through csi_dispatch(), and sends initial
 * metadata, the response and the status in one batch. A call's state is freed
 * when both of its batches have completed (a refcount of two). Calls to
 * methods that are not registered are taken by a generic request and answered
 * UNIMPLEMENTED, so they never hang.
 *
 * Server-streaming methods (csi_snapmeta_methods) are registered the same
 * way (their one request arrives with the call). Their responses are sent
 * one batch at a time: each SEND_MESSAGE batch (the first with the initial
 * metadata) completes on the queue as TAG_STREAM, and only then is the next
 * message produced (csi_stream_next); at the end, or on the first error, the
 * status goes out through finish() as for a unary call. No worker ever waits
 * for a client, and a failed send (client gone, server cancelling) ends the
 * stream with CANCELLED.
 *
 * One loop, several method sets: ts_csi_server_start serves every table
 * (CSI, admin, engine) on a unix socket; csi_server_start takes the tables
 * and any gRPC endpoint, which is how an engine service runs on a server of
 * its own (ts_engine_server_start, unix socket or TCP).
 *
 * Shutdown (ts_csi_server_stop, called on SIGTERM by `tessera csi`):
 * grpc_server_shutdown_and_notify stops new calls; running calls get the
 * grace period, then grpc_server_cancel_all_calls; when the shutdown tag has
 * fired and the last call state is gone, the completion queue is shut down,
 * the workers drain it and exit, and everything is destroyed.
 *
 * THREAD SAFETY: s->lock guards s->live (count of call states) and
 * s->shutdown_done, with s->cond signalled when either changes. Call states
 * are touched by the thread that runs the handler and by whichever threads
 * process its two tags; the refcount decides who frees.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

#define ARMED_PER_METHOD 2

enum tag_kind { TAG_NEW, TAG_GENERIC, TAG_CLOSE, TAG_SENT, TAG_SHUTDOWN, TAG_STREAM };

struct tag {
	enum tag_kind kind;
};

struct ts_csi_server;

/* An armed request slot for one registered method (or the generic one). */
struct slot {
	struct tag tag;
	struct ts_csi_server *s;
	const struct csi_method *m; /* NULL for the generic slot and streams */
	const struct csi_stream_method *sm; /* a streaming method's slot */
	void *reg;
	grpc_call *call;
	gpr_timespec deadline;
	grpc_metadata_array md;
	grpc_byte_buffer *payload;
	grpc_call_details details;
};

/* A call in progress. */
struct call_state {
	struct tag close_tag;
	struct tag sent_tag;
	struct ts_csi_server *s;
	grpc_call *call;
	atomic_int refs;
	atomic_bool cancelled;
	int close_cancelled;
	grpc_byte_buffer *resp;
	grpc_slice details;
	/* streaming calls */
	struct tag stream_tag;
	struct csi_stream *st;
	grpc_byte_buffer *smsg; /* the message in flight */
	bool md_sent;
};

struct ts_csi_server {
	struct ts_csi_driver *d;
	grpc_server *server;
	grpc_completion_queue *cq;
	pthread_t *threads;
	unsigned nthreads;
	char *sock_path;
	bool bound; /* the socket file is ours to remove */
	struct tag shutdown_tag;
	atomic_bool stopping;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned live;
	bool shutdown_done;
	void **reg;
	const struct csi_method **methods;
	size_t nmethods;
	void **sreg; /* streaming methods: csi_snapmeta_methods */
	size_t nstreams;
};

static int arm(struct ts_csi_server *s, const struct csi_method *m,
	       const struct csi_stream_method *sm, void *reg)
{
	struct slot *sl = ts_calloc(1, sizeof(*sl));
	grpc_call_error e;

	if (!sl)
		return -ENOMEM;
	sl->s = s;
	sl->m = m;
	sl->sm = sm;
	sl->reg = reg;
	sl->tag.kind = m || sm ? TAG_NEW : TAG_GENERIC;
	grpc_metadata_array_init(&sl->md);
	if (m || sm) {
		e = grpc_server_request_registered_call(s->server, reg, &sl->call, &sl->deadline,
							 &sl->md, &sl->payload, s->cq, s->cq, sl);
	} else {
		grpc_call_details_init(&sl->details);
		e = grpc_server_request_call(s->server, &sl->call, &sl->details, &sl->md, s->cq,
					     s->cq, sl);
	}
	if (e != GRPC_CALL_OK) {
		grpc_metadata_array_destroy(&sl->md);
		if (!m && !sm)
			grpc_call_details_destroy(&sl->details);
		ts_free(sl);
		return -EIO;
	}
	return 0;
}

static void slot_free(struct slot *sl)
{
	grpc_metadata_array_destroy(&sl->md);
	if (!sl->m && !sl->sm)
		grpc_call_details_destroy(&sl->details);
	if (sl->payload)
		grpc_byte_buffer_destroy(sl->payload);
	ts_free(sl);
}

static void cs_unref(struct call_state *cs)
{
	struct ts_csi_server *s = cs->s;

	if (atomic_fetch_sub(&cs->refs, 1) != 1)
		return;
	if (cs->resp)
		grpc_byte_buffer_destroy(cs->resp);
	csi_stream_close(cs->st);
	grpc_slice_unref(cs->details);
	grpc_call_unref(cs->call);
	ts_free(cs);
	pthread_mutex_lock(&s->lock);
	s->live--;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

/* Send (response or nothing) + status; takes ownership of \p resp. */
static void finish(struct call_state *cs, grpc_byte_buffer *resp, int code, const char *msg)
{
	grpc_op ops[3];
	size_t n = 0;

	memset(ops, 0, sizeof(ops));
	cs->resp = resp;
	cs->details = grpc_slice_from_copied_string(msg ? msg : "");
	if (!cs->md_sent) { /* a stream sent it with its first message */
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
	}
	if (resp) {
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = resp;
		n++;
	}
	ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
	ops[n].data.send_status_from_server.status = (grpc_status_code)code;
	ops[n].data.send_status_from_server.status_details = &cs->details;
	n++;
	if (grpc_call_start_batch(cs->call, ops, n, &cs->sent_tag, NULL) != GRPC_CALL_OK)
		cs_unref(cs); /* the tag will never come */
}

static void deadline_to_call(gpr_timespec dl, struct csi_call *c)
{
	gpr_timespec now, mono;

	if (gpr_time_cmp(dl, gpr_inf_future(dl.clock_type)) == 0)
		return;
	mono = gpr_convert_clock_type(dl, GPR_CLOCK_MONOTONIC);
	now = gpr_now(GPR_CLOCK_MONOTONIC);
	if (gpr_time_cmp(mono, now) <= 0) {
		c->deadline_ns = ts_now_ns() ? ts_now_ns() : 1; /* already passed */
		return;
	}
	c->deadline_ns = ts_now_ns() + (uint64_t)gpr_time_to_millis(gpr_time_sub(mono, now)) * 1000000ull;
}

/* Send a stream's next message, or its status when it has ended. */
static void stream_pump(struct call_state *cs)
{
	grpc_op ops[2];
	grpc_slice sl;
	uint8_t *buf;
	size_t len, n = 0;
	const char *msg;
	int rc = csi_stream_next(cs->st, &buf, &len);

	if (rc <= 0) {
		int code = csi_stream_status(cs->st, &msg);

		if (code != CSI_OK)
			ts_log(code == CSI_INTERNAL ? TS_LOG_WARN : TS_LOG_DEBUG, "csi",
			       "stream failed code=%d msg=\"%s\"", code, msg);
		finish(cs, NULL, code, msg);
		return;
	}
	sl = grpc_slice_from_copied_buffer((const char *)buf, len);
	ts_free(buf);
	cs->smsg = grpc_raw_byte_buffer_create(&sl, 1);
	grpc_slice_unref(sl);
	memset(ops, 0, sizeof(ops));
	if (!cs->md_sent) {
		ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
		cs->md_sent = true;
	}
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n++].data.send_message.send_message = cs->smsg;
	if (grpc_call_start_batch(cs->call, ops, n, &cs->stream_tag, NULL) != GRPC_CALL_OK) {
		grpc_byte_buffer_destroy(cs->smsg);
		cs->smsg = NULL;
		finish(cs, NULL, GRPC_STATUS_INTERNAL, "cannot send a stream message");
	}
}

/* TAG_STREAM: the message went out (or the call is gone). */
static void stream_sent(struct call_state *cs, bool ok)
{
	grpc_byte_buffer_destroy(cs->smsg);
	cs->smsg = NULL;
	if (!ok) {
		finish(cs, NULL, GRPC_STATUS_CANCELLED, "stream send failed: client gone");
		return;
	}
	stream_pump(cs);
}

static void handle(struct ts_csi_server *s, struct slot *sl)
{
	struct call_state *cs = ts_calloc(1, sizeof(*cs));
	grpc_byte_buffer *out = NULL;
	uint8_t *req = NULL, *resp = NULL;
	size_t req_len = 0, resp_len = 0;
	grpc_slice in = grpc_empty_slice();
	struct csi_call c;
	grpc_op op;

	if (!cs) {
		grpc_call_cancel_with_status(sl->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
					     "out of memory", NULL);
		grpc_call_unref(sl->call);
		return;
	}
	cs->s = s;
	cs->call = sl->call;
	cs->close_tag.kind = TAG_CLOSE;
	cs->sent_tag.kind = TAG_SENT;
	cs->stream_tag.kind = TAG_STREAM;
	cs->details = grpc_empty_slice();
	atomic_init(&cs->refs, 2);
	atomic_init(&cs->cancelled, false);
	pthread_mutex_lock(&s->lock);
	s->live++;
	pthread_mutex_unlock(&s->lock);

	memset(&op, 0, sizeof(op));
	op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	op.data.recv_close_on_server.cancelled = &cs->close_cancelled;
	if (grpc_call_start_batch(cs->call, &op, 1, &cs->close_tag, NULL) != GRPC_CALL_OK)
		atomic_fetch_sub(&cs->refs, 1);

	if (!sl->m && !sl->sm) {
		finish(cs, NULL, GRPC_STATUS_UNIMPLEMENTED, "method not implemented");
		return;
	}
	if (sl->payload) {
		grpc_byte_buffer_reader r;

		if (grpc_byte_buffer_reader_init(&r, sl->payload)) {
			in = grpc_byte_buffer_reader_readall(&r);
			grpc_byte_buffer_reader_destroy(&r);
		}
		req = GRPC_SLICE_START_PTR(in);
		req_len = GRPC_SLICE_LENGTH(in);
	}
	csi_call_init(&c);
	c.cancelled = &cs->cancelled;
	deadline_to_call(sl->deadline, &c);
	if (sl->sm) {
		cs->st = csi_stream_open(s->d, sl->sm, req, req_len, &cs->cancelled, c.deadline_ns);
		grpc_slice_unref(in);
		if (cs->st)
			stream_pump(cs);
		else
			finish(cs, NULL, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	if (csi_dispatch(s->d, sl->m, &c, req, req_len, &resp, &resp_len) == 0) {
		grpc_slice sl_out = grpc_slice_from_copied_buffer((const char *)resp, resp_len);

		out = grpc_raw_byte_buffer_create(&sl_out, 1);
		grpc_slice_unref(sl_out);
	} else {
		ts_log(c.code == CSI_INTERNAL ? TS_LOG_WARN : TS_LOG_DEBUG, "csi",
		       "call failed method=%s code=%d msg=\"%s\"", sl->m->path, c.code, c.msg);
	}
	grpc_slice_unref(in);
	ts_free(resp);
	finish(cs, out, c.code, c.msg);
	csi_call_fini(&c);
}

static void *worker(void *arg)
{
	struct ts_csi_server *s = arg;

	for (;;) {
		grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
							   NULL);
		struct tag *t = ev.tag;

		if (ev.type == GRPC_QUEUE_SHUTDOWN)
			break;
		if (ev.type != GRPC_OP_COMPLETE)
			continue;
		switch (t->kind) {
		case TAG_NEW:
		case TAG_GENERIC: {
			struct slot *sl = (struct slot *)t;

			if (!ev.success) { /* server shutting down */
				slot_free(sl);
				break;
			}
			if (!atomic_load(&s->stopping))
				arm(s, sl->m, sl->sm, sl->reg);
			handle(s, sl);
			slot_free(sl);
			break;
		}
		case TAG_CLOSE: {
			struct call_state *cs =
				(struct call_state *)((char *)t - offsetof(struct call_state, close_tag));

			if (cs->close_cancelled)
				atomic_store(&cs->cancelled, true);
			cs_unref(cs);
			break;
		}
		case TAG_SENT:
			cs_unref((struct call_state *)((char *)t - offsetof(struct call_state, sent_tag)));
			break;
		case TAG_STREAM:
			stream_sent((struct call_state *)((char *)t -
							  offsetof(struct call_state, stream_tag)),
				    ev.success);
			break;
		case TAG_SHUTDOWN:
			pthread_mutex_lock(&s->lock);
			s->shutdown_done = true;
			pthread_cond_broadcast(&s->cond);
			pthread_mutex_unlock(&s->lock);
			break;
		}
	}
	return NULL;
}

static void server_free(struct ts_csi_server *s)
{
	if (s->server)
		grpc_server_destroy(s->server);
	if (s->cq)
		grpc_completion_queue_destroy(s->cq);
	if (s->bound && s->sock_path)
		unlink(s->sock_path);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	ts_free(s->sock_path);
	ts_free(s->threads);
	ts_free(s->reg);
	ts_free(s->methods);
	ts_free(s->sreg);
	ts_free(s);
	grpc_shutdown();
}

int csi_server_start(struct ts_csi_driver *d, const char *endpoint, unsigned workers,
		     const struct csi_method_table *tables, size_t ntables, bool streams,
		     struct ts_csi_server **out, int *port)
{
	struct ts_csi_server *s;
	grpc_server_credentials *creds;
	size_t nstreams = streams ? csi_snapmeta_method_count : 0;
	bool unix_ep;
	struct stat sb;
	int rc = -EINVAL, bound;

	*out = NULL;
	if (port)
		*port = 0;
	if (!endpoint || !endpoint[0])
		return -EINVAL;
	unix_ep = strncmp(endpoint, "unix:", 5) == 0;
	if (unix_ep && strncmp(endpoint, "unix:///", 8))
		return -EINVAL;
	s = ts_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	grpc_init();
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->d = d;
	s->shutdown_tag.kind = TAG_SHUTDOWN;
	s->nthreads = workers ? workers : 4;
	s->sock_path = unix_ep ? ts_strdup(endpoint + 7) : NULL;
	s->threads = ts_calloc(s->nthreads, sizeof(*s->threads));
	s->nmethods = 0;
	for (size_t t = 0; t < ntables; t++)
		s->nmethods += tables[t].n;
	s->nstreams = nstreams;
	s->reg = ts_calloc(s->nmethods ? s->nmethods : 1, sizeof(*s->reg));
	s->methods = ts_calloc(s->nmethods ? s->nmethods : 1, sizeof(*s->methods));
	s->sreg = ts_calloc(nstreams ? nstreams : 1, sizeof(*s->sreg));
	rc = -ENOMEM;
	if ((unix_ep && !s->sock_path) || !s->threads || !s->reg || !s->methods || !s->sreg)
		goto fail;
	/* Replace a stale socket from an earlier run; refuse to clobber anything else. */
	if (unix_ep && lstat(s->sock_path, &sb) == 0) {
		rc = -EADDRINUSE;
		if (!S_ISSOCK(sb.st_mode) || unlink(s->sock_path))
			goto fail;
	}
	s->cq = grpc_completion_queue_create_for_next(NULL);
	s->server = grpc_server_create(NULL, NULL);
	grpc_server_register_completion_queue(s->server, s->cq, NULL);
	for (size_t t = 0, k = 0; t < ntables; t++)
		for (size_t i = 0; i < tables[t].n; i++, k++) {
			s->methods[k] = &tables[t].m[i];
			s->reg[k] = grpc_server_register_method(s->server, tables[t].m[i].path, NULL,
								GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
		}
	for (size_t i = 0; i < nstreams; i++)
		s->sreg[i] = grpc_server_register_method(s->server, csi_snapmeta_methods[i].path, NULL,
							 GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
	creds = grpc_insecure_server_credentials_create();
	bound = grpc_server_add_http2_port(s->server, endpoint, creds);
	rc = bound ? 0 : -EIO;
	grpc_server_credentials_release(creds);
	if (rc) {
		ts_log(TS_LOG_ERROR, "csi", "cannot listen endpoint=%s", endpoint);
		/* grpc_server_destroy needs a completed shutdown. */
		grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
		for (bool done = false; !done;) {
			grpc_event ev = grpc_completion_queue_next(
				s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);

			done = ev.type != GRPC_OP_COMPLETE || ev.tag == &s->shutdown_tag;
		}
		grpc_completion_queue_shutdown(s->cq);
		while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
		       GRPC_QUEUE_SHUTDOWN)
			;
		goto fail;
	}
	s->bound = unix_ep;
	if (port && !unix_ep)
		*port = bound; /* the TCP port, useful with ":0" */
	grpc_server_start(s->server);
	for (size_t k = 0; k < s->nmethods; k++)
		for (int j = 0; j < ARMED_PER_METHOD; j++)
			arm(s, s->methods[k], NULL, s->reg[k]);
	for (size_t i = 0; i < nstreams; i++)
		arm(s, NULL, &csi_snapmeta_methods[i], s->sreg[i]);
	arm(s, NULL, NULL, NULL);
	for (unsigned i = 0; i < s->nthreads; i++)
		pthread_create(&s->threads[i], NULL, worker, s);
	ts_log(TS_LOG_INFO, "csi", "serving endpoint=%s workers=%u", endpoint, s->nthreads);
	*out = s;
	return 0;
fail:
	server_free(s);
	return rc;
}

int ts_csi_server_start(struct ts_csi_driver *d, const char *endpoint, unsigned workers,
			struct ts_csi_server **out)
{
	const struct csi_method_table tables[] = {
		{ csi_identity_methods, csi_identity_method_count },
		{ csi_controller_methods, csi_controller_method_count },
		{ csi_group_methods, csi_group_method_count },
		{ csi_node_methods, csi_node_method_count },
		{ csi_admin_methods, csi_admin_method_count }, /* csi/admin.h */
		{ csi_engine_methods, csi_engine_method_count }, /* csi/engine.h */
	};

	*out = NULL;
	if (!endpoint || strncmp(endpoint, "unix:///", 8))
		return -EINVAL;
	return csi_server_start(d, endpoint, workers, tables, TS_ARRAY_SIZE(tables), true, out,
				NULL);
}

void ts_csi_server_stop(struct ts_csi_server *s, unsigned grace_ms)
{
	struct timespec until;

	if (!s)
		return;
	atomic_store(&s->stopping, true);
	grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
	ts_deadline_ms(&until, grace_ms);
	pthread_mutex_lock(&s->lock);
	while (!s->shutdown_done)
		if (pthread_cond_timedwait(&s->cond, &s->lock, &until) == ETIMEDOUT)
			break;
	if (!s->shutdown_done) {
		pthread_mutex_unlock(&s->lock);
		ts_log(TS_LOG_WARN, "csi", "grace period over, cancelling calls");
		grpc_server_cancel_all_calls(s->server);
		pthread_mutex_lock(&s->lock);
	}
	while (!s->shutdown_done || s->live)
		pthread_cond_wait(&s->cond, &s->lock);
	pthread_mutex_unlock(&s->lock);
	grpc_completion_queue_shutdown(s->cq);
	for (unsigned i = 0; i < s->nthreads; i++)
		pthread_join(s->threads[i], NULL);
	ts_log(TS_LOG_INFO, "csi", "server stopped");
	server_free(s);
}
