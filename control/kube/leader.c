/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leader election on a Lease (leader.h).
 *
 * The renew thread is the only writer of the Lease once held; `last_ok_ns`
 * (the monotonic start of the last renew that succeeded) and `lost` are
 * atomics the gate reads from any thread. A renew is judged by when it
 * started, not when it answered, so a slow answer never stretches the role
 * past the deadline the Lease's holder promised.
 */
#include "control/kube/leader.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "control/kube/kube.h"
#include "dataplane/common/ts_common.h"

struct ts_leader {
	struct ts_leader_opts o;
	char ns[64], name[254], identity[254], previous[254];
	struct ts_kube *c;
	struct ts_kube_lease lease;
	atomic_uint_fast64_t last_ok_ns;
	atomic_bool lost;
	pthread_t thread;
	bool running;
	struct ts_stop stop;
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void lose(struct ts_leader *l, const char *why)
{
	if (atomic_exchange(&l->lost, true))
		return;
	ts_log(TS_LOG_WARN, "leader", "lost Lease %s/%s as %s: %s", l->ns, l->name, l->identity,
	       why);
	if (l->o.lost)
		l->o.lost(l->o.lost_arg, why);
}

int ts_leader_gate(void *leader)
{
	struct ts_leader *l = leader;

	if (atomic_load(&l->lost))
		return -EBUSY;
	if (mono_ns() - atomic_load(&l->last_ok_ns) >= (uint64_t)l->o.renew_deadline_ms * 1000000u)
		return -EBUSY; /* the renew thread will say so too */
	return 0;
}

const char *ts_leader_previous(const struct ts_leader *l)
{
	return l->previous;
}


static void *renew_main(void *arg)
{
	struct ts_leader *l = arg;
	int last_rc = 0;

	while (!ts_stop_nap(&l->stop, l->o.retry_ms) && !atomic_load(&l->lost)) {
		uint64_t start = mono_ns();
		int rc;

		if (ts_leader_gate(l)) {
			lose(l, "no renew succeeded within the renew deadline");
			break;
		}
		rc = ts_kube_lease_renew(l->c, l->ns, &l->lease, l->identity);
		if (rc == 0) {
			atomic_store(&l->last_ok_ns, start);
		} else if (rc == -EBUSY) {
			lose(l, "someone else holds it");
			break;
		} else if (rc != last_rc) {
			ts_log(TS_LOG_WARN, "leader", "renewing Lease %s/%s: %s (retrying)", l->ns,
			       l->name, ts_strerror(rc));
		}
		last_rc = rc;
	}
	return NULL;
}

static void destroy(struct ts_leader *l)
{
	ts_kube_close(l->c);
	ts_stop_fini(&l->stop);
	ts_free(l);
}

/* Wait \p ms for one of \p sigs; true when one came. */
static bool wait_sig(const sigset_t *sigs, uint32_t ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	if (!sigs) {
		nanosleep(&ts, NULL);
		return false;
	}
	return sigtimedwait(sigs, NULL, &ts) > 0;
}

int ts_leader_acquire(const struct ts_leader_opts *o, struct ts_leader **out)
{
	struct ts_leader *l;
	int rc, last = 1;

	*out = NULL;
	if (!o || !o->ns || !o->name || !o->identity || !o->identity[0] ||
	    strlen(o->ns) >= sizeof(l->ns) || strlen(o->name) >= sizeof(l->name) ||
	    strlen(o->identity) >= sizeof(l->identity) || o->duration_s < 0)
		return -EINVAL;
	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->o = *o;
	if (!l->o.duration_s)
		l->o.duration_s = 10;
	if (!l->o.renew_deadline_ms)
		l->o.renew_deadline_ms = (uint32_t)l->o.duration_s * 2000u / 3u;
	if (!l->o.retry_ms)
		l->o.retry_ms = 1000;
	if (l->o.renew_deadline_ms >= (uint32_t)l->o.duration_s * 1000u ||
	    l->o.retry_ms >= l->o.renew_deadline_ms) {
		ts_free(l);
		return -EINVAL;
	}
	snprintf(l->ns, sizeof(l->ns), "%s", o->ns);
	snprintf(l->name, sizeof(l->name), "%s", o->name);
	snprintf(l->identity, sizeof(l->identity), "%s", o->identity);
	ts_stop_init(&l->stop);
	rc = ts_kube_open(o->kubeconfig, NULL, &l->c);
	while (rc == 0) {
		struct ts_kube_lease cur;
		uint64_t start = mono_ns();

		if (ts_kube_lease_get(l->c, l->ns, l->name, &cur) == 0)
			snprintf(l->previous, sizeof(l->previous), "%s", cur.holder);
		rc = ts_kube_lease_acquire(l->c, l->ns, l->name, l->identity, l->o.duration_s,
					   &l->lease);
		if (rc == 0) {
			atomic_store(&l->last_ok_ns, start);
			break;
		}
		if (rc != -EBUSY && rc != -EAGAIN && rc != -ESTALE)
			break; /* -EACCES, -EINVAL, ...: waiting will not fix it */
		if (rc != last)
			ts_log(TS_LOG_INFO, "leader", "passive: Lease %s/%s %s%s; retrying every %u ms",
			       l->ns, l->name, rc == -EBUSY ? "held by " : "unreachable: ",
			       rc == -EBUSY ? l->previous : ts_strerror(rc), l->o.retry_ms);
		last = rc;
		if (wait_sig(o->sigs, l->o.retry_ms)) {
			destroy(l);
			return 1;
		}
		rc = 0;
	}
	if (rc == 0)
		rc = -pthread_create(&l->thread, NULL, renew_main, l);
	if (rc) {
		destroy(l);
		return rc;
	}
	l->running = true;
	ts_log(TS_LOG_INFO, "leader", "active: holding Lease %s/%s as %s (previous holder \"%s\")",
	       l->ns, l->name, l->identity, l->previous);
	*out = l;
	return 0;
}

void ts_leader_release(struct ts_leader *l)
{
	if (!l)
		return;
	ts_stop_set(&l->stop);
	if (l->running)
		pthread_join(l->thread, NULL);
	if (!atomic_load(&l->lost)) {
		int rc = ts_kube_lease_release(l->c, l->ns, l->name, l->identity);

		if (rc)
			ts_log(TS_LOG_WARN, "leader", "releasing Lease %s/%s: %s", l->ns, l->name,
			       ts_strerror(rc));
	}
	destroy(l);
}
