/* SPDX-License-Identifier: Apache-2.0 */
/*
 * TesseraTask objects (tasks.h). Every write after the create is a PUT of
 * the whole object carrying the resourceVersion read, so a write that lost
 * a race is -ESTALE from the server; claim reads and decides again, an
 * owner's write reports -EBUSY (someone else wrote: it claimed, or it is
 * about to).
 */
#include "control/kube/tasks.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "control/kube/kube.h"
#include "dataplane/common/ts_common.h"

#define API "/apis/tessera.io/v1alpha1/namespaces/"
#define CLAIM_ROUNDS 20

static const char *const g_phase[] = { "Pending", "Running", "Done", "Failed" };
static const char *const g_prio[] = { "high", "low" };

const char *ts_task_phase_name(enum ts_task_phase p)
{
	return (unsigned)p < 4 ? g_phase[p] : "?";
}

const char *ts_task_priority_name(enum ts_task_priority p)
{
	return (unsigned)p < 2 ? g_prio[p] : "?";
}

static int index_of(const char *const *names, int n, const char *s)
{
	for (int i = 0; s && i < n; i++)
		if (!strcmp(names[i], s))
			return i;
	return -1;
}

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (!n || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

static void path_of(char *buf, size_t len, const char *ns, const char *name)
{
	snprintf(buf, len, API "%s/tesseratasks%s%s", ns, name ? "/" : "", name ? name : "");
}

static json_t *to_json(const struct ts_task *t)
{
	char hb[32] = "";
	json_t *o;

	if (t->heartbeat_us)
		ts_kube_microtime_format(t->heartbeat_us, hb);
	o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:i, s:s, s:s, s:s}, "
		      "s:{s:s, s:s, s:s, s:I, s:I, s:I, s:s}}",
		      "apiVersion", "tessera.io/v1alpha1", "kind", "TesseraTask", "metadata", "name",
		      t->name, "resourceVersion", t->rv, "spec", "version", 1, "kind", t->kind,
		      "target", t->target, "priority", ts_task_priority_name(t->priority), "status",
		      "phase", ts_task_phase_name(t->phase), "owner", t->owner, "heartbeat", hb,
		      "attempts", (json_int_t)t->attempts, "done", (json_int_t)t->done, "total",
		      (json_int_t)t->total, "message", t->message);
	if (o && !t->rv[0])
		json_object_del(json_object_get(o, "metadata"), "resourceVersion");
	return o;
}

static int from_json(json_t *o, struct ts_task *t)
{
	const char *name, *rv, *kind, *target, *prio, *phase, *owner = "", *hb = "", *msg = "";
	json_int_t att = 0, done = 0, total = 0;
	int ver, p, ph;

	memset(t, 0, sizeof(*t));
	if (json_unpack(o,
			"{s:{s:s, s:s}, s:{s:i, s:s, s:s, s:s}, s:{s:s, s?s, s?s, s:I, s:I, s:I, s?s}}",
			"metadata", "name", &name, "resourceVersion", &rv, "spec", "version", &ver,
			"kind", &kind, "target", &target, "priority", &prio, "status", "phase", &phase,
			"owner", &owner, "heartbeat", &hb, "attempts", &att, "done", &done, "total",
			&total, "message", &msg) ||
	    ver != 1 || (p = index_of(g_prio, 2, prio)) < 0 ||
	    (ph = index_of(g_phase, 4, phase)) < 0 ||
	    att < 0 || done < 0 || total < 0 || strlen(name) >= sizeof(t->name) ||
	    strlen(rv) >= sizeof(t->rv) || strlen(kind) >= sizeof(t->kind) ||
	    strlen(target) >= sizeof(t->target) || strlen(owner) >= sizeof(t->owner))
		return -EPROTO;
	if (hb[0] && ts_kube_microtime_parse(hb, &t->heartbeat_us))
		return -EPROTO;
	snprintf(t->name, sizeof(t->name), "%s", name);
	snprintf(t->rv, sizeof(t->rv), "%s", rv);
	snprintf(t->kind, sizeof(t->kind), "%s", kind);
	snprintf(t->target, sizeof(t->target), "%s", target);
	snprintf(t->owner, sizeof(t->owner), "%s", owner);
	snprintf(t->message, sizeof(t->message), "%s", msg);
	t->priority = (enum ts_task_priority)p;
	t->phase = (enum ts_task_phase)ph;
	t->attempts = (uint64_t)att;
	t->done = (uint64_t)done;
	t->total = (uint64_t)total;
	return 0;
}

/* PUT \p t (conditioned on t->rv); on success t holds what the server stored. */
static int put(struct ts_kube *c, const char *ns, struct ts_task *t)
{
	char path[256];
	json_t *o = to_json(t), *got = NULL;
	int rc;

	if (!o)
		return -ENOMEM;
	path_of(path, sizeof(path), ns, t->name);
	rc = ts_kube_update(c, path, o, &got);
	json_decref(o);
	if (rc == 0)
		rc = got ? from_json(got, t) : -EPROTO;
	json_decref(got);
	return rc;
}

int ts_task_create(struct ts_kube *c, const char *ns, struct ts_task *t)
{
	char path[256];
	json_t *o, *got = NULL;
	int rc;

	if (!c || !ns || !t || !name_ok(t->name) || !t->kind[0] ||
	    (t->priority != TS_TASK_HIGH && t->priority != TS_TASK_LOW))
		return -EINVAL;
	t->phase = TS_TASK_PENDING;
	t->owner[0] = '\0';
	t->heartbeat_us = ts_kube_now_us(); /* while Pending: when it was posted */
	t->attempts = 0;
	t->done = 0;
	t->rv[0] = '\0';
	o = to_json(t);
	if (!o)
		return -ENOMEM;
	path_of(path, sizeof(path), ns, NULL);
	rc = ts_kube_create(c, path, o, &got);
	json_decref(o);
	if (rc == 0)
		rc = got ? from_json(got, t) : -EPROTO;
	json_decref(got);
	return rc;
}

int ts_task_get(struct ts_kube *c, const char *ns, const char *name, struct ts_task *out)
{
	char path[256];
	json_t *o = NULL;
	int rc;

	if (!c || !ns || !name || !name_ok(name) || !out)
		return -EINVAL;
	path_of(path, sizeof(path), ns, name);
	rc = ts_kube_get(c, path, &o);
	if (rc == 0)
		rc = from_json(o, out);
	json_decref(o);
	return rc;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct ts_task *)a)->name, ((const struct ts_task *)b)->name);
}

int ts_task_list(struct ts_kube *c, const char *ns, struct ts_task **out, size_t *n)
{
	char path[256], rv[65];
	json_t *items = NULL, *it;
	struct ts_task *v;
	size_t i, k = 0;
	int rc;

	*out = NULL;
	*n = 0;
	path_of(path, sizeof(path), ns, NULL);
	rc = ts_kube_list(c, path, NULL, &items, rv, sizeof(rv));
	if (rc)
		return rc;
	v = ts_calloc(json_array_size(items) + 1, sizeof(*v));
	if (!v) {
		json_decref(items);
		return -ENOMEM;
	}
	json_array_foreach(items, i, it) {
		const char *nm = json_string_value(json_object_get(json_object_get(it, "metadata"),
								   "name"));

		if (from_json(it, &v[k]) == 0)
			k++;
		else
			ts_log(TS_LOG_WARN, "tasks", "%s/%s: not a task, skipped", ns, nm ? nm : "?");
	}
	json_decref(items);
	qsort(v, k, sizeof(*v), by_name);
	*out = v;
	*n = k;
	return 0;
}

int ts_task_claim(struct ts_kube *c, const char *ns, const char *name, const char *owner,
		  uint64_t stale_ms, uint64_t pending_ms, struct ts_task *out)
{
	if (!owner || !owner[0] || strlen(owner) >= sizeof(out->owner))
		return -EINVAL;
	for (unsigned round = 0; round < CLAIM_ROUNDS; round++) {
		struct ts_task t;
		uint64_t now = ts_kube_now_us();
		int rc = ts_task_get(c, ns, name, &t);

		if (rc)
			return rc;
		if (t.phase == TS_TASK_DONE || t.phase == TS_TASK_FAILED)
			return -EALREADY;
		if (t.phase == TS_TASK_RUNNING && strcmp(t.owner, owner) &&
		    t.heartbeat_us + stale_ms * 1000u > now)
			return -EBUSY; /* a live owner */
		if (t.phase == TS_TASK_PENDING && t.heartbeat_us + pending_ms * 1000u > now)
			return -EBUSY; /* left to the claimers that do not wait */
		if (strcmp(t.owner, owner) || t.phase != TS_TASK_RUNNING)
			t.attempts++;
		t.phase = TS_TASK_RUNNING;
		snprintf(t.owner, sizeof(t.owner), "%s", owner);
		t.heartbeat_us = now;
		rc = put(c, ns, &t);
		if (rc == -ESTALE)
			continue; /* someone wrote in between: read and decide again */
		if (rc == 0)
			*out = t;
		return rc;
	}
	return -EBUSY;
}

/* An owner's write: -EBUSY once someone else has written. */
static int owner_write(struct ts_kube *c, const char *ns, struct ts_task *t)
{
	struct ts_task next = *t;
	int rc;

	next.heartbeat_us = ts_kube_now_us();
	rc = put(c, ns, &next);
	if (rc == -ESTALE)
		return -EBUSY;
	if (rc == 0)
		*t = next;
	return rc;
}

int ts_task_progress(struct ts_kube *c, const char *ns, struct ts_task *t, uint64_t done,
		     uint64_t total, const char *message)
{
	struct ts_task next;

	if (!t || t->phase != TS_TASK_RUNNING)
		return -EINVAL;
	next = *t;
	next.done = done;
	next.total = total;
	snprintf(next.message, sizeof(next.message), "%s", message ? message : "");
	int rc = owner_write(c, ns, &next);

	if (rc == 0)
		*t = next;
	return rc;
}

int ts_task_finish(struct ts_kube *c, const char *ns, struct ts_task *t, int ok,
		   const char *message)
{
	struct ts_task next;
	int rc;

	if (!t || t->phase != TS_TASK_RUNNING)
		return -EINVAL;
	next = *t;
	next.phase = ok ? TS_TASK_DONE : TS_TASK_FAILED;
	snprintf(next.message, sizeof(next.message), "%s", message ? message : "");
	rc = owner_write(c, ns, &next);
	if (rc == 0)
		*t = next;
	return rc;
}
