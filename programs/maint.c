/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The maintenance loop of an assembled array group (see maint.h). The wait
 * between ticks is on CLOCK_MONOTONIC, so a wall-clock step neither stalls
 * nor hurries it.
 */
#include "programs/maint.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "control/cluster/cluster.h"
#include "control/registry/registry.h"
#include <jansson.h>
#include "csi/admin.h"
#include "dataplane/common/ts_common.h"

struct ts_maint {
	struct ts_cluster *cl;
	char tag[24];
	unsigned tick_ms;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC */
	bool stop;         /* under mu */
};

static void *maint_main(void *arg)
{
	struct ts_maint *m = arg;
	struct ts_cluster_status st;
	char state[sizeof(st.state)] = "";
	int last_rc = 0;

	pthread_mutex_lock(&m->mu);
	while (!m->stop) {
		struct timespec until;
		int rc;

		pthread_mutex_unlock(&m->mu);
		rc = ts_cluster_tick(m->cl);
		if (rc > 0)
			ts_log(TS_LOG_INFO, m->tag, "members rejoined count=%d", rc);
		else if (rc < 0 && rc != last_rc) /* retried every tick: say it once */
			ts_log(TS_LOG_WARN, m->tag, "maintenance step failed: %s", ts_strerror(rc));
		last_rc = rc < 0 ? rc : 0;
		ts_cluster_status(m->cl, &st);
		if (strcmp(st.state, state)) {
			ts_log(TS_LOG_INFO, m->tag,
			       "group state=%s live=0x%llx degraded_stripes=%llu replicated_bytes=%llu",
			       st.state, (unsigned long long)st.live_mask,
			       (unsigned long long)st.degraded_stripes,
			       (unsigned long long)st.replicated_bytes);
			snprintf(state, sizeof(state), "%s", st.state);
		}
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += (long)m->tick_ms * 1000000L;
		until.tv_sec += until.tv_nsec / 1000000000L;
		until.tv_nsec %= 1000000000L;
		pthread_mutex_lock(&m->mu);
		while (!m->stop && pthread_cond_timedwait(&m->cv, &m->mu, &until) != ETIMEDOUT)
			;
	}
	pthread_mutex_unlock(&m->mu);
	return NULL;
}

int ts_maint_start(struct ts_cluster *cl, const char *tag, unsigned tick_ms,
		   struct ts_maint **out)
{
	pthread_condattr_t ca;
	struct ts_maint *m;
	int rc;

	*out = NULL;
	if (!cl || !tick_ms)
		return -EINVAL;
	m = ts_calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->cl = cl;
	m->tick_ms = tick_ms;
	snprintf(m->tag, sizeof(m->tag), "%s", tag ? tag : "maint");
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	rc = -pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc) {
		ts_free(m);
		return rc;
	}
	pthread_mutex_init(&m->mu, NULL);
	rc = -pthread_create(&m->thread, NULL, maint_main, m);
	if (rc) {
		pthread_cond_destroy(&m->cv);
		pthread_mutex_destroy(&m->mu);
		ts_free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void ts_maint_stop(struct ts_maint *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	ts_free(m);
}

void ts_maint_agrp_view(const struct ts_cluster_status *st, struct ts_admin_agrp *g)
{
	ts_uuid_format(st->group_uuid, g->uuid);
	g->k = st->k;
	g->m = st->m;
	g->generation = st->generation;
	g->size_bytes = st->size;
	for (unsigned s = 0; s < st->n && s < TS_ADMIN_MAX_SLOTS && s < TS_REG_MAX_SLOTS; s++) {
		g->slots[s].node = st->slot_node[s];
		g->slots[s].live = st->live_mask >> s & 1;
	}
	snprintf(g->state, sizeof(g->state), "%s", st->state);
	g->degraded_stripes = st->degraded_stripes;
	g->replicated_bytes = st->replicated_bytes;
	g->unreplicated_bytes = st->unreplicated_bytes;
	g->heal_total_bytes = st->heal_total_bytes;
	g->heal_done_bytes = st->heal_done_bytes;
	g->heal_rate_mbps = (double)st->heal_rate_bps / 1e6;
	g->heals = st->heals;
	g->rebuilds = st->rebuilds;
	g->rebuild_bytes = st->rebuild_bytes;
	g->rebuild_rate_mbps = (double)st->rebuild_rate_bps / 1e6;
	g->serving_node = st->owner_node == TS_CLUSTER_CONTROLLER_OWNER ? 0 : st->owner_node;
	g->epoch = st->owner_epoch;
}

static int cmp_node(const void *a, const void *b)
{
	const struct ts_reg_node *x = a, *y = b;

	return x->node_id < y->node_id ? -1 : x->node_id > y->node_id;
}

int ts_maint_node_view(struct ts_registry *reg, unsigned max_age_ms,
		       void (*detail)(void *arg, struct ts_admin_node *n), void *arg,
		       struct ts_admin_status *out)
{
	struct ts_reg_node *nodes = ts_calloc(TS_REG_MAX_NODES, sizeof(*nodes));
	uint64_t now = ts_registry_now_ms();
	unsigned n = 0;
	int rc;

	if (!nodes)
		return -ENOMEM;
	rc = ts_registry_list_nodes(reg, nodes, TS_REG_MAX_NODES, &n);
	if (rc < 0) {
		ts_free(nodes);
		return rc;
	}
	qsort(nodes, n, sizeof(*nodes), cmp_node);
	out->nnodes = TS_MIN(n, TS_ADMIN_MAX_NODES);
	for (size_t i = 0; i < out->nnodes; i++) {
		struct ts_admin_node *an = &out->nodes[i];

		an->id = nodes[i].node_id;
		an->up = nodes[i].heartbeat_ms + max_age_ms >= now;
		an->free_bytes = nodes[i].free_bytes;
		snprintf(an->portal, sizeof(an->portal), "%s", nodes[i].portal);
		/* disks and extents are the node's own business (extent_bytes 0 says
		 * unknown) unless the caller runs the nodes itself (tessera dev) */
		if (detail)
			detail(arg, an);
	}
	ts_free(nodes);
	return 0;
}

int ts_maint_agrp_to_json(const struct ts_admin_agrp *g, char **text)
{
	json_t *slots = json_array(), *j;
	char *s;

	for (unsigned i = 0; slots && i < g->k + g->m && i < TS_ADMIN_MAX_SLOTS; i++)
		json_array_append_new(slots, json_pack("[i,b]", (int)g->slots[i].node,
						       (int)g->slots[i].live));
	j = json_pack("{s:s,s:i,s:i,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:f,s:I,s:I,s:I,s:f,s:I,s:I,s:o}",
		      "uuid", g->uuid, "k", (int)g->k, "m", (int)g->m, "generation",
		      (json_int_t)g->generation, "size_bytes", (json_int_t)g->size_bytes, "state",
		      g->state, "degraded_stripes", (json_int_t)g->degraded_stripes,
		      "replicated_bytes", (json_int_t)g->replicated_bytes, "unreplicated_bytes",
		      (json_int_t)g->unreplicated_bytes, "heal_total_bytes",
		      (json_int_t)g->heal_total_bytes, "heal_done_bytes",
		      (json_int_t)g->heal_done_bytes, "heal_rate_mbps", g->heal_rate_mbps, "heals",
		      (json_int_t)g->heals, "rebuilds", (json_int_t)g->rebuilds, "rebuild_bytes",
		      (json_int_t)g->rebuild_bytes, "rebuild_rate_mbps", g->rebuild_rate_mbps,
		      "serving_node", (json_int_t)g->serving_node, "epoch", (json_int_t)g->epoch,
		      "slots", slots);
	s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	*text = s ? ts_strdup(s) : NULL;
	free(s);
	return *text ? 0 : -ENOMEM;
}

int ts_maint_agrp_from_json(const char *text, struct ts_admin_agrp *g)
{
	json_int_t k = 0, m = 0, gen = 0, size = 0, ds = 0, rb = 0, ub = 0, ht = 0, hd = 0, heals = 0,
		   rbs = 0, rbb = 0, sn = 0, ep = 0;
	const char *uuid = NULL, *state = NULL;
	json_t *j = json_loads(text, 0, NULL), *slots = NULL, *v;
	double hr = 0, rr = 0;
	size_t i;
	int rc = -EPROTO;

	if (!j || json_unpack(j, "{s:s,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:F,s:I,s:I,s:I,s:F,s:I,s:I,s:o}",
			      "uuid", &uuid, "k", &k, "m", &m, "generation", &gen, "size_bytes",
			      &size, "state", &state, "degraded_stripes", &ds, "replicated_bytes",
			      &rb, "unreplicated_bytes", &ub, "heal_total_bytes", &ht,
			      "heal_done_bytes", &hd, "heal_rate_mbps", &hr, "heals", &heals,
			      "rebuilds", &rbs, "rebuild_bytes", &rbb, "rebuild_rate_mbps", &rr,
			      "serving_node", &sn, "epoch", &ep, "slots", &slots) ||
	    sn < 0 || sn > UINT32_MAX || ep < 0 ||
	    k < 1 || m < 0 || k + m > TS_ADMIN_MAX_SLOTS || !json_is_array(slots) ||
	    json_array_size(slots) != (size_t)(k + m) || strlen(uuid) >= sizeof(g->uuid) ||
	    strlen(state) >= sizeof(g->state))
		goto out;
	memset(g, 0, sizeof(*g));
	snprintf(g->uuid, sizeof(g->uuid), "%s", uuid);
	snprintf(g->state, sizeof(g->state), "%s", state);
	g->k = (uint32_t)k;
	g->m = (uint32_t)m;
	g->generation = (uint64_t)gen;
	g->size_bytes = (uint64_t)size;
	g->degraded_stripes = (uint64_t)ds;
	g->replicated_bytes = (uint64_t)rb;
	g->unreplicated_bytes = (uint64_t)ub;
	g->heal_total_bytes = (uint64_t)ht;
	g->heal_done_bytes = (uint64_t)hd;
	g->heal_rate_mbps = hr;
	g->heals = (uint64_t)heals;
	g->rebuilds = (uint64_t)rbs;
	g->rebuild_bytes = (uint64_t)rbb;
	g->rebuild_rate_mbps = rr;
	g->serving_node = (uint32_t)sn;
	g->epoch = (uint64_t)ep;
	json_array_foreach(slots, i, v) {
		json_int_t node = 0;
		int live = 0;

		if (json_unpack(v, "[I,b]", &node, &live) || node < 0 || node > UINT32_MAX)
			goto out;
		g->slots[i].node = (uint32_t)node;
		g->slots[i].live = live;
	}
	rc = 0;
out:
	json_decref(j);
	return rc;
}
