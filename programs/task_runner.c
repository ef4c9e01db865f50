/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The task runner (task_runner.h). One thread; each round reads the node
 * records, asks every served group's engine about its heal, then walks the
 * heal tasks: posts the due ones, claims what the role allows, drives and
 * finishes what it owns. Everything it knows lives in the TesseraTask
 * objects and the engines, so a runner that dies leaves nothing behind but
 * a Running task another one takes over.
 */
#include "programs/task_runner.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "control/kube/kube.h"
#include "control/kube/tasks.h"
#include "control/registry/registry.h"
#include "csi/backend/engine_wire.h"
#include "csi/rpc/client.h"
#include "dataplane/common/ts_common.h"
#include "programs/engine_host.h"

struct heal_state {
	char key[TS_ENGINE_GROUP_MAX + 1];
	char engine[80];
	uint64_t epoch;
	bool known, pending;
	uint64_t done, total, heals;
};

struct ts_task_runner {
	struct ts_task_runner_opts o;
	char ns[64], identity[254];
	struct ts_kube *c;
	atomic_bool active;
	pthread_t thread;
	struct ts_stop stop;
	struct ts_reg_node nodes[TS_REG_MAX_NODES];
	struct heal_state groups[TS_REG_MAX_NODES * TS_REG_MAX_SERVED];
	unsigned ngroups;
};

/* Heal on \p g's engine (run: let it heal). 0 and g's fields, or -errno. */
static int engine_heal(struct heal_state *g, bool run)
{
	char req[128], msg[256], *resp = NULL;
	struct ts_client *cl = NULL;
	size_t len = 0;
	json_t *j, *h;
	int rc;

	snprintf(req, sizeof(req), "{\"group\":\"%s\",\"run\":%s}", g->key, run ? "true" : "false");
	rc = ts_client_open(g->engine, &cl);
	if (rc == 0)
		rc = ts_client_call(cl, TS_ENGINE_M("Heal"), req, strlen(req), &resp, &len, 5000, msg,
				    sizeof(msg));
	ts_client_close(cl);
	if (rc) {
		ts_free(resp);
		return rc < 0 ? rc : -EAGAIN;
	}
	j = json_loadb(resp, len, 0, NULL);
	ts_free(resp);
	h = j ? json_object_get(j, "heal") : NULL;
	if (!j || !json_is_integer(json_object_get(j, "rc")))
		rc = -EPROTO;
	else
		rc = (int)json_integer_value(json_object_get(j, "rc"));
	if (rc == 0 && (!json_is_object(h) || !json_is_boolean(json_object_get(h, "pending"))))
		rc = -EPROTO;
	if (rc == 0) {
		g->pending = json_is_true(json_object_get(h, "pending"));
		g->done = (uint64_t)json_integer_value(json_object_get(h, "heal_done_bytes"));
		g->total = (uint64_t)json_integer_value(json_object_get(h, "heal_total_bytes"));
		g->heals = (uint64_t)json_integer_value(json_object_get(h, "heals"));
		g->known = true;
	}
	json_decref(j);
	return rc;
}

/* The served groups, one entry each (the highest epoch's engine), and their heal state. */
static void survey(struct ts_task_runner *r)
{
	unsigned n = 0;

	r->ngroups = 0;
	if (ts_registry_list_nodes(r->o.reg, r->nodes, TS_REG_MAX_NODES, &n))
		return;
	for (unsigned i = 0; i < n; i++) {
		for (unsigned s = 0; s < r->nodes[i].nserved; s++) {
			const uint8_t *uuid = r->nodes[i].served[s].uuid;
			const char *engine = r->nodes[i].served[s].engine;
			uint64_t epoch = r->nodes[i].served[s].epoch;
			char key[TS_ENGINE_GROUP_MAX + 1];
			struct heal_state *g = NULL;

			if (!engine[0])
				continue;
			ts_engine_group_key(uuid, key);
			for (unsigned k = 0; k < r->ngroups && !g; k++)
				if (!strcmp(r->groups[k].key, key))
					g = &r->groups[k];
			if (g && g->epoch >= epoch)
				continue;
			if (!g) {
				if (r->ngroups == TS_ARRAY_SIZE(r->groups))
					continue;
				g = &r->groups[r->ngroups++];
			}
			memset(g, 0, sizeof(*g));
			snprintf(g->key, sizeof(g->key), "%s", key);
			snprintf(g->engine, sizeof(g->engine), "%s", engine);
			g->epoch = epoch;
		}
	}
	for (unsigned k = 0; k < r->ngroups; k++)
		if (engine_heal(&r->groups[k], false))
			r->groups[k].known = false;
}

static struct heal_state *group_of(struct ts_task_runner *r, const char *key)
{
	for (unsigned k = 0; k < r->ngroups; k++)
		if (!strcmp(r->groups[k].key, key))
			return &r->groups[k];
	return NULL;
}

/* Post the heal task of every group with a heal due (a name per occurrence). */
static void post(struct ts_task_runner *r)
{
	for (unsigned k = 0; k < r->ngroups; k++) {
		struct heal_state *g = &r->groups[k];
		struct ts_task t = { .priority = TS_TASK_LOW, .total = 0 };
		int rc;

		if (!g->known || !g->pending)
			continue;
		snprintf(t.name, sizeof(t.name), "heal-%s-%" PRIu64, g->key, g->heals + 1);
		snprintf(t.kind, sizeof(t.kind), "heal");
		snprintf(t.target, sizeof(t.target), "%s", g->key);
		t.total = g->total;
		rc = ts_task_create(r->c, r->ns, &t);
		if (rc == 0)
			ts_log(TS_LOG_INFO, "tasks", "posted %s (group %s: heal due)", t.name, g->key);
		else if (rc != -EEXIST)
			ts_log(TS_LOG_WARN, "tasks", "posting %s: %s", t.name, ts_strerror(rc));
	}
}

/* Claim, drive and finish the heal tasks the role allows. */
static void work(struct ts_task_runner *r)
{
	bool active = atomic_load(&r->active);
	struct ts_task *all = NULL;
	size_t n = 0;

	if (ts_task_list(r->c, r->ns, &all, &n))
		return;
	for (size_t i = 0; i < n; i++) {
		struct ts_task *t = &all[i];
		struct heal_state *g = group_of(r, t->target);
		const char *dash = strrchr(t->name, '-');
		uint64_t occurrence;
		bool due;
		int rc;

		if (strcmp(t->kind, "heal") || t->phase == TS_TASK_DONE || t->phase == TS_TASK_FAILED ||
		    !dash)
			continue; /* not ours to run (a heal task another writer named) */
		if (!g || !g->known)
			continue; /* its engine does not answer now: later */
		if (t->phase != TS_TASK_RUNNING || strcmp(t->owner, r->identity)) {
			rc = ts_task_claim(r->c, r->ns, t->name, r->identity,
					   active ? TS_TASK_ACTIVE_STALE_MS : TS_TASK_PASSIVE_STALE_MS,
					   active ? TS_TASK_ACTIVE_WAIT_MS : 0, t);
			if (rc)
				continue; /* someone else's, or not yet ours to take */
			ts_log(TS_LOG_INFO, "tasks", "claimed %s (attempt %" PRIu64 ", %s replica)",
			       t->name, t->attempts, active ? "active" : "passive");
		}
		/* this occurrence is over once the engine counts a heal past it, or has none due */
		occurrence = strtoull(dash + 1, NULL, 10);
		due = g->pending && g->heals < occurrence;
		if (!due) {
			rc = ts_task_finish(r->c, r->ns, t, 1, "healed");
			if (rc == 0)
				ts_log(TS_LOG_INFO, "tasks", "%s done (group %s, %" PRIu64 " heals)",
				       t->name, g->key, g->heals);
			continue;
		}
		rc = engine_heal(g, true);
		if (rc == 0)
			rc = ts_task_progress(r->c, r->ns, t, g->done, g->total, "healing");
		if (rc == -EBUSY)
			ts_log(TS_LOG_WARN, "tasks", "%s: taken over by another runner", t->name);
	}
	ts_free(all);
}

static void *runner_main(void *arg)
{
	struct ts_task_runner *r = arg;

	while (!ts_stop_nap(&r->stop, r->o.period_ms)) {
		survey(r);
		post(r);
		work(r);
	}
	return NULL;
}

int ts_task_runner_start(const struct ts_task_runner_opts *o, struct ts_task_runner **out)
{
	struct ts_task_runner *r;
	int rc;

	*out = NULL;
	if (!o || !o->ns || !o->identity || !o->reg || strlen(o->ns) >= sizeof(r->ns) ||
	    strlen(o->identity) >= sizeof(r->identity))
		return -EINVAL;
	r = ts_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->o = *o;
	if (!r->o.period_ms)
		r->o.period_ms = 1000;
	snprintf(r->ns, sizeof(r->ns), "%s", o->ns);
	snprintf(r->identity, sizeof(r->identity), "%s", o->identity);
	ts_stop_init(&r->stop);
	rc = ts_kube_open(o->kubeconfig, NULL, &r->c);
	if (rc == 0)
		rc = -pthread_create(&r->thread, NULL, runner_main, r);
	if (rc) {
		ts_kube_close(r->c);
		ts_stop_fini(&r->stop);
		ts_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void ts_task_runner_set_active(struct ts_task_runner *r, bool active)
{
	if (r)
		atomic_store(&r->active, active);
}

void ts_task_runner_stop(struct ts_task_runner *r)
{
	if (!r)
		return;
	ts_stop_set(&r->stop);
	pthread_join(r->thread, NULL);
	ts_kube_close(r->c);
	ts_stop_fini(&r->stop);
	ts_free(r);
}
