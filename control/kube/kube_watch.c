/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Watches: the event stream splitter, event checks, and the watch loop.
 *
 * A watch response is a chunked HTTP body of JSON objects, one per event
 * ({"type": "ADDED", "object": {...}}). libcurl undoes the chunking; the
 * splitter here finds object boundaries by counting braces outside strings,
 * so chunks may cut an event anywhere (even inside a UTF-8 sequence or an
 * escape) and nothing depends on newlines. Each complete object is parsed
 * by jansson and checked (kube_event_check) before the caller sees it.
 *
 * The loop keeps one piece of state that matters: the resourceVersion of
 * the last event or bookmark delivered. Kubernetes guarantees that a watch
 * from resourceVersion R delivers exactly the changes after R, in order, so
 * reopening a broken stream from that R loses and repeats nothing. When R is
 * too old (compacted: HTTP 410, or an ERROR event carrying 410) there is no
 * way to get the missed changes one by one, so the collection is listed
 * again and delivered whole as a RESYNC, and the watch goes on from the
 * list's resourceVersion. Malformed data from the server ends that stream
 * (counted in bad_streams) and is handled like a break: nothing after the
 * last good event has been delivered, so reopening from R is exact.
 *
 * THREAD SAFETY: a watch's state lives on the stack of the thread running
 * ts_kube_watch; only *opts->stop is shared (an atomic).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "control/kube/kube_internal.h"
#include "dataplane/common/ts_common.h"

/* ---- the splitter ---- */

void kube_stream_init(struct kube_stream *s, size_t max)
{
	memset(s, 0, sizeof(*s));
	s->max = max;
}

void kube_stream_reset(struct kube_stream *s)
{
	s->len = 0;
	s->depth = 0;
	s->in_str = s->esc = false;
}

void kube_stream_free(struct kube_stream *s)
{
	ts_free(s->buf);
	memset(s, 0, sizeof(*s));
}

size_t kube_stream_pending(const struct kube_stream *s)
{
	return s->len;
}

static int stream_push(struct kube_stream *s, char ch)
{
	if (s->len + 1 > s->max)
		return -EPROTO;
	if (s->len + 1 > s->cap) {
		size_t nc = TS_MIN(TS_MAX(s->cap * 2, (size_t)4096), s->max + 1);
		char *nb = ts_realloc(s->buf, nc);

		if (!nb)
			return -ENOMEM;
		s->buf = nb;
		s->cap = nc;
	}
	s->buf[s->len++] = ch;
	return 0;
}

int kube_stream_feed(struct kube_stream *s, const char *data, size_t len, kube_obj_cb cb,
		     void *arg)
{
	for (size_t i = 0; i < len; i++) {
		char ch = data[i];
		int rc;

		if (s->depth == 0) {
			if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
				continue;
			if (ch != '{')
				return -EPROTO; /* only objects at the top level */
		}
		rc = stream_push(s, ch);
		if (rc)
			return rc;
		if (s->in_str) {
			if (s->esc)
				s->esc = false;
			else if (ch == '\\')
				s->esc = true;
			else if (ch == '"')
				s->in_str = false;
			continue;
		}
		if (ch == '"') {
			s->in_str = true;
		} else if (ch == '{' || ch == '[') {
			if (++s->depth > 512)
				return -EPROTO;
		} else if (ch == '}' || ch == ']') {
			json_error_t err;
			json_t *obj;

			if (--s->depth > 0)
				continue;
			if (s->depth < 0)
				return -EPROTO;
			obj = json_loadb(s->buf, s->len, JSON_REJECT_DUPLICATES, &err);
			s->len = 0;
			if (!json_is_object(obj)) {
				json_decref(obj);
				return -EPROTO;
			}
			rc = cb(arg, obj);
			json_decref(obj);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* ---- events ---- */

bool kube_rv_valid(const char *rv)
{
	size_t n = rv ? strlen(rv) : 0;

	if (n == 0 || n > KUBE_RV_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = rv[i];

		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      ch == '.' || ch == '_' || ch == '~' || ch == '-'))
			return false;
	}
	return true;
}

int kube_event_check(json_t *ev, struct kube_event *out)
{
	static const struct {
		const char *name;
		enum ts_kube_event_type type;
	} types[] = { { "ADDED", TS_KUBE_ADDED },
		      { "MODIFIED", TS_KUBE_MODIFIED },
		      { "DELETED", TS_KUBE_DELETED },
		      { "BOOKMARK", TS_KUBE_BOOKMARK } };
	json_t *t = json_object_get(ev, "type"), *obj = json_object_get(ev, "object"), *md, *rv;

	memset(out, 0, sizeof(*out));
	if (!json_is_string(t) || !json_is_object(obj))
		return -EPROTO;
	if (!strcmp(json_string_value(t), "ERROR")) {
		json_t *code = json_object_get(obj, "code");

		if (code && !json_is_integer(code))
			return -EPROTO;
		out->error_code = code ? (long)json_integer_value(code) : 0;
		out->object = obj;
		return 1;
	}
	for (unsigned i = 0; i < TS_ARRAY_SIZE(types); i++) {
		if (strcmp(json_string_value(t), types[i].name))
			continue;
		md = json_object_get(obj, "metadata");
		rv = json_object_get(md, "resourceVersion");
		if (!json_is_object(md) || !json_is_string(rv) ||
		    strlen(json_string_value(rv)) != json_string_length(rv) ||
		    !kube_rv_valid(json_string_value(rv)))
			return -EPROTO;
		out->type = types[i].type;
		out->object = obj;
		out->rv = json_string_value(rv);
		return 0;
	}
	return -EPROTO;
}

/* ---- the loop ---- */

struct wstate {
	struct ts_kube_watch_stats *st;
	ts_kube_watch_cb cb;
	void *arg;
	struct kube_stream split;
	char rv[KUBE_RV_MAX + 1];
	long http;         /* the stream's status, once known */
	char errbody[512]; /* the start of a non-200 answer, for the log */
	size_t errlen;
	int cb_rc;         /* the callback asked to stop with this */
	bool gone;         /* 410: relist */
	bool bad;          /* malformed data */
	bool got;          /* something was delivered on this stream */
};

static int on_event(void *arg, json_t *obj)
{
	struct wstate *w = arg;
	struct kube_event e;
	struct ts_kube_event pub;
	int rc = kube_event_check(obj, &e);

	if (rc < 0) {
		w->bad = true;
		return rc;
	}
	if (rc == 1) {
		if (e.error_code == 410) {
			w->gone = true;
		} else {
			json_t *m = json_object_get(e.object, "message");

			ts_log(TS_LOG_WARN, "kube", "watch: ERROR event code=%ld %s", e.error_code,
			       json_is_string(m) ? json_string_value(m) : "");
		}
		return -ECONNRESET; /* the server ends the stream after an ERROR */
	}
	pub = (struct ts_kube_event){ e.type, e.object, e.rv };
	w->cb_rc = w->cb(w->arg, &pub);
	if (e.type == TS_KUBE_BOOKMARK)
		w->st->bookmarks++;
	else
		w->st->events++;
	/* delivered: a stream reopened from here starts after it */
	snprintf(w->rv, sizeof(w->rv), "%s", e.rv);
	w->got = true;
	return w->cb_rc ? -ECANCELED : 0;
}

static size_t on_stream(void *arg, const char *data, size_t len)
{
	struct wstate *w = arg;
	int rc;

	if (w->http != 200) {
		size_t n = TS_MIN(len, sizeof(w->errbody) - 1 - w->errlen);

		memcpy(w->errbody + w->errlen, data, n);
		w->errlen += n;
		w->errbody[w->errlen] = '\0';
		return len;
	}
	rc = kube_stream_feed(&w->split, data, len, on_event, w);
	return rc ? 0 : len; /* 0 aborts the transfer */
}

struct wsink {
	struct kube_sink sink; /* first: kube_http writes through it */
	struct wstate *w;
};

static size_t on_stream_sink(void *arg, const char *data, size_t len)
{
	struct wsink *ws = arg;

	if (!ws->w->http)
		curl_easy_getinfo(ws->sink.handle, CURLINFO_RESPONSE_CODE, &ws->w->http);
	return on_stream(ws->w, data, len);
}

/* Sleep the backoff in steps, returning early on stop. */
static void watch_sleep(struct ts_kube *c, unsigned n, atomic_int *stop)
{
	for (unsigned i = 0; i < 4 && !(stop && atomic_load(stop)); i++)
		kube_backoff(c, n > 2 ? n - 2 : 0);
}

static bool stopped(atomic_int *stop)
{
	return stop && atomic_load(stop);
}

/* List and deliver a RESYNC; the list's resourceVersion in w->rv. */
static int relist(struct ts_kube *c, const struct ts_kube_watch_opts *o, struct wstate *w)
{
	unsigned fails = 0;

	for (;;) {
		json_t *items = NULL;
		char rv[KUBE_RV_MAX + 1];
		int rc;

		if (stopped(o->stop))
			return 0;
		rc = ts_kube_list(c, o->path, o->label_selector, &items, rv, sizeof(rv));
		if (rc == 0) {
			struct ts_kube_event ev = { TS_KUBE_RESYNC, items, rv };

			w->cb_rc = w->cb(w->arg, &ev);
			json_decref(items);
			snprintf(w->rv, sizeof(w->rv), "%s", rv);
			return w->cb_rc;
		}
		if (rc != -EAGAIN && rc != -EPROTO)
			return rc;
		watch_sleep(c, fails++, o->stop);
	}
}

int ts_kube_watch(struct ts_kube *c, const struct ts_kube_watch_opts *o, ts_kube_watch_cb cb,
		  void *arg)
{
	struct ts_kube_watch_stats dummy = { 0 };
	struct wstate w = { .cb = cb, .arg = arg };
	char *sel = NULL, *q = NULL;
	unsigned fails = 0;
	uint32_t tmo;
	int rc = 0;

	if (!c || !o || !o->path || o->path[0] != '/' || strchr(o->path, '?') || !cb ||
	    (o->resource_version && !kube_rv_valid(o->resource_version)))
		return -EINVAL;
	w.st = o->stats ? o->stats : &dummy;
	tmo = o->timeout_s ? o->timeout_s : 60;
	if (o->label_selector && !(sel = kube_escape(o->label_selector)))
		return -ENOMEM;
	q = ts_malloc(strlen(o->path) + (sel ? strlen(sel) : 0) + 200);
	if (!q) {
		rc = -ENOMEM;
		goto out;
	}
	kube_stream_init(&w.split, KUBE_EVENT_MAX);
	if (o->resource_version) {
		snprintf(w.rv, sizeof(w.rv), "%s", o->resource_version);
	} else {
		rc = relist(c, o, &w);
		if (rc)
			goto out;
	}
	while (!stopped(o->stop)) {
		struct wsink ws = { .sink = { .stream = on_stream_sink }, .w = &w };
		struct kube_req rq = { .verb = KV_WATCH, .method = "GET", .path = q,
				       .low_speed_s = tmo + 30, .stop = o->stop };
		long status = 0;
		int hrc;

		ws.sink.stream_arg = &ws;
		sprintf(q, "%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u%s%s",
			o->path, w.rv, tmo, sel ? "&labelSelector=" : "", sel ? sel : "");
		w.http = 0;
		w.errlen = 0;
		w.gone = w.bad = w.got = false;
		kube_stream_reset(&w.split);
		hrc = kube_http(c, &rq, &ws.sink, &status);
		if (w.cb_rc) {
			rc = w.cb_rc;
			goto out;
		}
		if (stopped(o->stop))
			break;
		if (hrc == -ENOMEM) {
			rc = hrc;
			goto out;
		}
		if (hrc == 0 && status != 200) {
			int mrc = kube_status_errno(status, KV_WATCH);

			if (status == 410) {
				w.gone = true;
			} else if (mrc != -EAGAIN) {
				ts_log(TS_LOG_ERROR, "kube", "watch %s: HTTP %ld %s", o->path, status,
				       w.errbody);
				rc = mrc;
				goto out;
			}
		} else if (w.http == 200 || status == 200) {
			w.st->streams++;
		}
		if (w.bad)
			w.st->bad_streams++;
		if (w.gone) {
			w.st->relists++;
			rc = relist(c, o, &w);
			if (rc)
				goto out;
			fails = 0;
			continue;
		}
		w.st->rewatches++;
		/* a clean end (timeoutSeconds) or a stream that delivered: reopen at once */
		if ((hrc == 0 && status == 200 && !w.bad) || w.got)
			fails = 0;
		else
			watch_sleep(c, fails++, o->stop);
	}
	rc = 0;
out:
	kube_stream_free(&w.split);
	ts_free(q);
	ts_free(sel);
	return rc;
}
