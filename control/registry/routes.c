/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The route table (see routes.h). The refresh builds a new table off-lock
 * and swaps it in, so the login path waits at most for a pointer swap.
 */
#include "control/registry/routes.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dataplane/common/ts_common.h"

#define VOL_IQN_PREFIX "iqn.2026-01.io.tessera:vol-"
#define MAX_ROUTES (TS_REG_MAX_NODES * 4)

struct route {
	uint8_t prefix[8];
	uint64_t epoch;
	char portal[64];
};

struct ts_routes {
	struct ts_registry *reg;
	char self[64];
	unsigned period_ms;
	pthread_t thread;
	pthread_mutex_t lock; /* routes, nroutes; stop (with cond) */
	pthread_cond_t cond;
	bool stop;
	struct route *routes;
	unsigned nroutes;
};

void ts_routes_refresh(struct ts_routes *r)
{
	struct ts_reg_node *all = ts_calloc(TS_REG_MAX_NODES, sizeof(*all));
	struct route *rt = ts_calloc(MAX_ROUTES, sizeof(*rt)), *old;
	unsigned cnt = 0, nrt = 0;

	if (!all || !rt || ts_registry_list_nodes(r->reg, all, TS_REG_MAX_NODES, &cnt)) {
		ts_free(rt); /* keep the routes we have */
		ts_free(all);
		return;
	}
	for (unsigned i = 0; i < cnt; i++) {
		for (unsigned g = 0; g < all[i].nserved && g < TS_REG_MAX_SERVED; g++) {
			unsigned k;

			for (k = 0; k < nrt && memcmp(rt[k].prefix, all[i].served[g].uuid, 8); k++)
				;
			if (k == nrt) {
				if (nrt == MAX_ROUTES)
					continue;
				nrt++;
			} else if (rt[k].epoch >= all[i].served[g].epoch) {
				continue;
			}
			memcpy(rt[k].prefix, all[i].served[g].uuid, 8);
			rt[k].epoch = all[i].served[g].epoch;
			snprintf(rt[k].portal, sizeof(rt[k].portal), "%s", all[i].portal);
		}
	}
	pthread_mutex_lock(&r->lock);
	old = r->routes;
	r->routes = rt;
	r->nroutes = nrt;
	pthread_mutex_unlock(&r->lock);
	ts_free(old);
	ts_free(all);
}

int ts_routes_redirect(void *ctx, const char *iqn, char *addr, size_t len)
{
	struct ts_routes *r = ctx;
	uint8_t u[16];
	int rc = -ENOENT;

	if (strncasecmp(iqn, VOL_IQN_PREFIX, strlen(VOL_IQN_PREFIX)) ||
	    ts_uuid_parse(iqn + strlen(VOL_IQN_PREFIX), u))
		return -ENOENT;
	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nroutes; i++) {
		if (memcmp(r->routes[i].prefix, u, 8))
			continue;
		if (strcmp(r->routes[i].portal, r->self) &&
		    (size_t)snprintf(addr, len, "%s", r->routes[i].portal) < len)
			rc = 0;
		break;
	}
	if (rc)
		pthread_cond_signal(&r->cond); /* a miss: read the node records again now */
	pthread_mutex_unlock(&r->lock);
	return rc;
}

static void *routes_thread(void *arg)
{
	struct ts_routes *r = arg;
	struct timespec ts;

	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		ts_deadline_ms(&ts, r->period_ms);
		pthread_cond_timedwait(&r->cond, &r->lock, &ts);
		if (r->stop)
			break;
		pthread_mutex_unlock(&r->lock);
		ts_routes_refresh(r);
		pthread_mutex_lock(&r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

int ts_routes_start(struct ts_registry *reg, const char *self, unsigned period_ms,
		    struct ts_routes **out)
{
	struct ts_routes *r;
	int rc;

	*out = NULL;
	if (!reg || (self && strlen(self) >= 64))
		return -EINVAL;
	r = ts_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->reg = reg;
	snprintf(r->self, sizeof(r->self), "%s", self ? self : "");
	r->period_ms = period_ms ? period_ms : 500;
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	ts_routes_refresh(r);
	rc = -pthread_create(&r->thread, NULL, routes_thread, r);
	if (rc) {
		ts_free(r->routes);
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->lock);
		ts_free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void ts_routes_stop(struct ts_routes *r)
{
	if (!r)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	ts_free(r->routes);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->lock);
	ts_free(r);
}
