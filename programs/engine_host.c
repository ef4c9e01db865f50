/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A node's engine host (see engine_host.h): one engine per served group, each
 * the same layers `tessera controller` stacks over its group — cluster,
 * maintenance loop, thin pool, data-plane backend — minus the CSI driver,
 * plus the engine service the controller's remote backend calls.
 *
 * Formatting. A group's pool is formatted only while its record lacks
 * TS_REG_GROUP_POOL and the device holds no pool at all (TS_ERR_FOREIGN);
 * the flag is stored right after (with the epoch this host serves at, so a
 * newer owner is never overwritten) and before the pool is used. A later owner — another
 * node, after a failover — finds the flag and never formats, whatever the
 * device answers.
 *
 * Ownership: the host owns its engines; h->lock guards the table (status
 * readers on other threads). serve/release run on the node's request
 * thread only.
 */
#include "programs/engine_host.h"

#include <errno.h>
#include <stdatomic.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "control/cluster/cluster.h"
#include "dataplane/agrp/agrp.h"
#include "csi/admin.h"
#include "csi/backend/backend_dataplane.h"
#include "csi/engine.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "programs/maint.h"
#include "programs/stack.h"
#include "snapshots/chain/chain.h"

#define ENGINE_TICK_MS 500
#define ENGINE_POOL_WAIT_S 30

struct engine {
	uint8_t uuid[16];
	char key[TS_ENGINE_GROUP_MAX + 1];
	unsigned k;
	uint64_t epoch;        /* the ownership epoch it serves at */
	uint64_t next_check_ms; /* when to look at the group record again */
	struct ts_cluster *cl;
	struct ts_maint *maint;
	struct ts_vpool *vp;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	struct ts_engine_server *srv;
	bool delegate_heal;
	atomic_uint_fast64_t contact_ms; /* last Heal call (CLOCK_REALTIME ms) */
	atomic_uint_fast64_t heal_until_ms;
	atomic_bool alone_logged;
};

struct ts_engine_host {
	struct ts_engine_host_opts o;
	char addr[64], state_dir[4096], chap_user[128], chap_secret[128];
	pthread_mutex_t lock;
	struct engine *eng[TS_REG_MAX_SERVED];
	unsigned n;
};

void ts_engine_group_key(const uint8_t uuid[16], char out[TS_ENGINE_GROUP_MAX + 1])
{
	for (unsigned i = 0; i < 8; i++)
		snprintf(out + 2 * i, 3, "%02x", uuid[i]);
}

/* CSI Probe through the engine: IO can be served while k members are live. */
static int engine_probe(void *arg)
{
	struct engine *e = arg;
	struct ts_cluster_status st;

	ts_cluster_status(e->cl, &st);
	return (unsigned)__builtin_popcountll(st.live_mask) >= e->k ? 0 : -EAGAIN;
}

static void engine_free(struct engine *e)
{
	if (!e)
		return;
	ts_engine_server_stop(e->srv, 2000);
	if (e->be)
		e->be->destroy(e->be_ctx);
	ts_vpool_close(e->vp);
	ts_maint_stop(e->maint);
	ts_cluster_close(e->cl);
	ts_free(e);
}

/*
 * The pool's capacity for volume placement: data bytes, free bytes, volumes
 * and the sum of their sizes (what the controller counts against the pool:
 * a thin volume reserves its whole size, docs/scale-out.md).
 */
static int pool_report(struct engine *e, char **json)
{
	struct ts_vpool_stats vs;
	uint64_t ids[256], start = 0, provisioned = 0;
	char *s;
	int n;

	ts_vpool_stats(e->vp, &vs);
	while ((n = ts_vpool_volume_list(e->vp, start, ids, 256)) > 0) {
		for (int i = 0; i < n; i++) {
			struct ts_vpool_volume_info vi;

			if (ts_vpool_volume_info(e->vp, ids[i], &vi) == 0)
				provisioned += vi.size;
		}
		start = ids[n - 1] + 1;
	}
	json_t *j = json_pack("{s:I,s:I,s:I,s:I}", "data_bytes",
			      (json_int_t)(vs.data_blocks * TS_VOLUME_BLOCK), "free_bytes",
			      (json_int_t)(vs.free_blocks * TS_VOLUME_BLOCK), "volumes",
			      (json_int_t)vs.volumes, "provisioned_bytes", (json_int_t)provisioned);

	s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	*json = s ? ts_strdup(s) : NULL;
	free(s);
	return *json ? 0 : -ENOMEM;
}

/* The cluster's heal gate (delegated heal): granted, or nobody asked for a long time. */
static bool engine_may_heal(void *arg)
{
	struct engine *e = arg;
	uint64_t now = ts_registry_now_ms();

	if (now < atomic_load(&e->heal_until_ms))
		return true;
	if (now - atomic_load(&e->contact_ms) < TS_ENGINE_HEAL_ALONE_MS) {
		atomic_store(&e->alone_logged, false);
		return false;
	}
	if (!atomic_exchange(&e->alone_logged, true))
		ts_log(TS_LOG_WARN, "engine", "group %s: no controller asked about the heal for %u s: "
		       "healing on its own", e->key, TS_ENGINE_HEAL_ALONE_MS / 1000);
	return true;
}

/* The engine service's Heal: note the coordinator, grant a while of heal if asked, report. */
static int engine_heal(void *arg, bool run, char **json)
{
	struct engine *e = arg;
	struct ts_cluster_status st;
	uint64_t now = ts_registry_now_ms();
	json_t *j;
	char *s;

	atomic_store(&e->contact_ms, now);
	if (run)
		atomic_store(&e->heal_until_ms, now + TS_ENGINE_HEAL_GRANT_MS);
	ts_cluster_status(e->cl, &st);
	j = json_pack("{s:b, s:s, s:I, s:I, s:I, s:b}", "pending", !strcmp(st.state, "healing"),
		      "state", st.state, "heal_done_bytes", (json_int_t)st.heal_done_bytes,
		      "heal_total_bytes", (json_int_t)st.heal_total_bytes, "heals",
		      (json_int_t)st.heals, "delegated", e->delegate_heal);
	s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	*json = s ? ts_strdup(s) : NULL;
	free(s);
	return *json ? 0 : -ENOMEM;
}

/* The engine service's Report: the group as the admin service shows it, the tree, or the pool. */
static int engine_report(void *arg, const char *what, char **json)
{
	struct engine *e = arg;
	struct ts_cluster_status st;
	struct ts_admin_agrp *g;
	int rc;

	if (!strcmp(what, "tree"))
		return ts_stack_tree_json(e->vp, json);
	if (!strcmp(what, "pool"))
		return pool_report(e, json);
	if (strcmp(what, "group"))
		return -EOPNOTSUPP;
	g = ts_calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	ts_cluster_status(e->cl, &st);
	ts_maint_agrp_view(&st, g);
	rc = ts_maint_agrp_to_json(g, json);
	ts_free(g);
	return rc;
}

/* Open the pool, formatting it the first time the group is ever served (see top). */
static int engine_open_pool(struct ts_engine_host *h, struct engine *e,
			    const struct ts_reg_group *rec)
{
	struct ts_reg_group *g;
	int rc = ts_vpool_open(ts_cluster_device(e->cl), &e->vp);

	if (rc == TS_ERR_FOREIGN && !(rec->flags & TS_REG_GROUP_POOL)) {
		/*
		 * Never formatted: format, then record it (a crash in between
		 * leaves a pool the next open finds). Members a newer owner
		 * fenced refuse the format; the record write then says -ESTALE.
		 */
		ts_log(TS_LOG_INFO, "engine", "formatting the volume pool group=%s", e->key);
		rc = ts_vpool_format(ts_cluster_device(e->cl));
		g = rc == 0 ? ts_malloc(sizeof(*g)) : NULL;
		if (rc == 0 && !g)
			rc = -ENOMEM;
		if (rc == 0)
			rc = ts_registry_get_group(h->o.reg, e->uuid, g);
		if (rc == 0) {
			g->flags |= TS_REG_GROUP_POOL;
			rc = ts_registry_put_group(h->o.reg, g);
		}
		ts_free(g);
		if (rc == 0)
			rc = ts_vpool_open(ts_cluster_device(e->cl), &e->vp);
	}
	if (rc == 0)
		rc = ts_chain_gc(e->vp);
	if (rc && e->vp) { /* a retry opens it again */
		ts_vpool_close(e->vp);
		e->vp = NULL;
	}
	return rc;
}

static int host_serve(void *ctx, struct ts_node *n, const uint8_t uuid[16], uint64_t epoch,
		      char *endpoint, size_t len)
{
	struct ts_engine_host *h = ctx;
	/*
	 * No local members: even this node's own vdisks are reached through its
	 * member LUNs, which check the ownership epoch (docs/fencing.md); a
	 * direct LDM path would let a stale engine here write them.
	 */
	struct ts_cluster_opts co = { .reg = h->o.reg, .chap_user = h->chap_user,
				      .chap_secret = h->chap_secret,
				      .io_timeout_ms = h->o.io_timeout_ms,
				      .owner_epoch = (uint32_t)epoch, .owner_node = h->o.node_id };
	struct ts_csi_dataplane_opts dpo = { 0 };
	struct ts_engine_opts eo = { 0 };
	struct ts_reg_group *rec = ts_malloc(sizeof(*rec));
	char dir[4200], listen[80], u[37];
	struct engine *e = NULL;
	const char *what = "group record";
	int rc;

	if (!rec)
		return -ENOMEM;
	ts_uuid_format(uuid, u);
	if (!epoch || epoch > UINT32_MAX) {
		ts_free(rec);
		return -EOVERFLOW; /* the member LUNs' keys hold 32 bits of epoch */
	}
	pthread_mutex_lock(&h->lock);
	rc = h->n == TS_REG_MAX_SERVED ? -ENOSPC : 0;
	for (unsigned i = 0; i < h->n && !rc; i++)
		if (!memcmp(h->eng[i]->uuid, uuid, 16))
			rc = -EALREADY; /* the node releases before serving again */
	pthread_mutex_unlock(&h->lock);
	if (rc)
		goto fail;
	rc = ts_registry_get_group(h->o.reg, uuid, rec);
	if (rc)
		goto fail;
	e = ts_calloc(1, sizeof(*e));
	rc = e ? 0 : -ENOMEM;
	if (rc)
		goto fail;
	memcpy(e->uuid, uuid, 16);
	ts_engine_group_key(uuid, e->key);
	e->k = rec->k;
	e->epoch = epoch;
	memcpy(co.group_uuid, uuid, 16);
	co.k = rec->k;
	co.m = rec->m;
	co.member_size = rec->member_size;
	what = "assembly";
	rc = ts_cluster_open(&co, &e->cl);
	if (rc)
		goto fail;
	/*
	 * A member we could not reach now we could not fence either: the
	 * previous owner (paused, cut off) may still write it until we do, so
	 * when it returns it is rebuilt in full, not only where we wrote.
	 */
	rc = ts_agrp_distrust_absent(ts_cluster_agrp(e->cl));
	if (rc < 0)
		goto fail;
	e->delegate_heal = h->o.delegate_heal;
	atomic_store(&e->contact_ms, ts_registry_now_ms()); /* the control plane gets its chance */
	if (e->delegate_heal)
		ts_cluster_set_heal_gate(e->cl, engine_may_heal, e);
	what = "maintenance thread";
	rc = ts_maint_start(e->cl, "engine", ENGINE_TICK_MS, &e->maint);
	if (rc)
		goto fail;
	what = "volume pool";
	/*
	 * Taken over from an owner that died with writes in flight while a
	 * member was out: regions the group cannot vouch for (the degraded
	 * write hole, docs/ec-layout.md) may keep the pool unreadable until the
	 * missing members are back and resynced, which the maintenance thread
	 * does; wait for that (bounded) instead of failing the handover.
	 */
	for (unsigned tries = 0;; tries++) {
		struct ts_cluster_status st;
		const struct timespec second = { 1, 0 };

		rc = engine_open_pool(h, e, rec);
		ts_cluster_status(e->cl, &st);
		if (rc != -EIO || !strcmp(st.state, "healthy") || tries == ENGINE_POOL_WAIT_S)
			break;
		if (tries == 0)
			ts_log(TS_LOG_WARN, "engine",
			       "volume pool unreadable while the group is %s; waiting for members",
			       st.state);
		nanosleep(&second, NULL);
	}
	if (rc)
		goto fail;
	what = "state directory";
	snprintf(dir, sizeof(dir), "%s/engine-%s", h->state_dir, u);
	rc = mkdir(dir, 0700) && errno != EEXIST ? -errno : 0;
	if (rc)
		goto fail;
	dpo.vpool = e->vp;
	dpo.iscsi = ts_node_iscsi(n);
	dpo.portal = ts_node_portal(n);
	dpo.state_dir = dir;
	memcpy(dpo.group_uuid, uuid, 16);
	dpo.k = rec->k;
	dpo.m = rec->m;
	dpo.probe = engine_probe;
	dpo.probe_arg = e;
	what = "backend";
	rc = ts_csi_backend_dataplane_create(&dpo, &e->be, &e->be_ctx);
	if (rc)
		goto fail;
	eo.group = e->key;
	eo.ops = e->be;
	eo.ctx = e->be_ctx;
	eo.report = engine_report;
	eo.report_arg = e;
	eo.heal = engine_heal;
	eo.heal_arg = e;
	snprintf(listen, sizeof(listen), "%s:0", h->addr);
	what = "engine service";
	rc = ts_engine_server_start(&eo, listen, 0, &e->srv);
	if (rc)
		goto fail;
	if ((size_t)snprintf(endpoint, len, "%s:%d", h->addr, ts_engine_server_port(e->srv)) >= len) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	pthread_mutex_lock(&h->lock);
	h->eng[h->n++] = e;
	pthread_mutex_unlock(&h->lock);
	ts_log(TS_LOG_INFO, "engine", "serving group=%s key=%s epoch=%llu engine=%s", u, e->key,
	       (unsigned long long)epoch, endpoint);
	ts_free(rec);
	return 0;
fail:
	ts_log(TS_LOG_WARN, "engine", "cannot serve group=%s epoch=%llu: %s: %s", u,
	       (unsigned long long)epoch, what, ts_strerror(rc));
	engine_free(e);
	ts_free(rec);
	return rc;
}

static int host_release(void *ctx, struct ts_node *n, const uint8_t uuid[16])
{
	struct ts_engine_host *h = ctx;
	struct engine *e = NULL;

	(void)n;
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->n; i++) {
		if (memcmp(h->eng[i]->uuid, uuid, 16))
			continue;
		e = h->eng[i];
		h->eng[i] = h->eng[--h->n];
		break;
	}
	pthread_mutex_unlock(&h->lock);
	if (e)
		ts_log(TS_LOG_INFO, "engine", "released group key=%s", e->key);
	engine_free(e);
	return 0;
}

/*
 * True when engine \p e lost its group: its members refused it (fenced), or
 * the group record names a newer epoch (read at most once a second), which
 * an engine that was paused or cut off learns before its next IO would.
 */
static bool engine_replaced(struct ts_engine_host *h, struct engine *e, uint64_t now)
{
	struct ts_cluster_status st;
	struct ts_reg_group *g;
	bool gone = false;

	ts_cluster_status(e->cl, &st);
	if (st.fenced)
		return true;
	if (now < e->next_check_ms)
		return false;
	e->next_check_ms = now + 1000;
	g = ts_malloc(sizeof(*g));
	if (g && ts_registry_get_group(h->o.reg, e->uuid, g) == 0)
		gone = g->epoch > e->epoch;
	ts_free(g);
	return gone;
}

/*
 * An engine whose group a newer owner took serves nothing any more: release
 * it, so the node stops listing the group and its portal stops offering the
 * volumes' targets (logins are then redirected to the new owner). Its
 * members refuse whatever it still had in flight (docs/fencing.md).
 */
static void host_poll(void *ctx, struct ts_node *n)
{
	struct ts_engine_host *h = ctx;
	uint64_t now = ts_registry_now_ms();

	for (;;) {
		struct engine *e = NULL;

		pthread_mutex_lock(&h->lock);
		for (unsigned i = 0; i < h->n && !e; i++) {
			if (!engine_replaced(h, h->eng[i], now))
				continue;
			e = h->eng[i];
			h->eng[i] = h->eng[--h->n];
		}
		pthread_mutex_unlock(&h->lock);
		if (!e)
			return;
		ts_log(TS_LOG_WARN, "engine",
		       "a newer owner took group key=%s (this engine was at epoch %llu); releasing it",
		       e->key, (unsigned long long)e->epoch);
		ts_node_engine_lost(n, e->uuid);
		engine_free(e);
	}
}

static const struct ts_node_engine_ops g_host_ops = { .serve = host_serve,
						       .release = host_release,
						       .poll = host_poll };

const struct ts_node_engine_ops *ts_engine_host_ops(void)
{
	return &g_host_ops;
}

unsigned ts_engine_host_status(struct ts_engine_host *h, struct ts_admin_agrp *out, unsigned max)
{
	unsigned cnt = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->n && cnt < max; i++) {
		struct ts_cluster_status st;

		ts_cluster_status(h->eng[i]->cl, &st);
		memset(&out[cnt], 0, sizeof(out[cnt]));
		ts_maint_agrp_view(&st, &out[cnt++]);
	}
	pthread_mutex_unlock(&h->lock);
	return cnt;
}

void ts_engine_host_pools(struct ts_engine_host *h, uint64_t *total_bytes, uint64_t *free_bytes,
			  uint64_t *volumes)
{
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->n; i++) {
		struct ts_vpool_stats vs;

		ts_vpool_stats(h->eng[i]->vp, &vs);
		*total_bytes += vs.data_blocks * TS_VOLUME_BLOCK;
		*free_bytes += vs.free_blocks * TS_VOLUME_BLOCK;
		*volumes += vs.volumes;
	}
	pthread_mutex_unlock(&h->lock);
}

int ts_engine_host_create(const struct ts_engine_host_opts *o, struct ts_engine_host **out)
{
	struct ts_engine_host *h;

	*out = NULL;
	if (!o || !o->reg || !o->node_id || !o->addr || !o->state_dir || !o->chap_user ||
	    !o->chap_secret || strlen(o->addr) >= 64 || strlen(o->state_dir) >= 4096 ||
	    strlen(o->chap_user) >= 128 || strlen(o->chap_secret) >= 128)
		return -EINVAL;
	h = ts_calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->o = *o;
	snprintf(h->addr, sizeof(h->addr), "%s", o->addr);
	snprintf(h->state_dir, sizeof(h->state_dir), "%s", o->state_dir);
	snprintf(h->chap_user, sizeof(h->chap_user), "%s", o->chap_user);
	snprintf(h->chap_secret, sizeof(h->chap_secret), "%s", o->chap_secret);
	h->o.addr = h->o.state_dir = h->o.chap_user = h->o.chap_secret = NULL; /* copies above */
	pthread_mutex_init(&h->lock, NULL);
	*out = h;
	return 0;
}

void ts_engine_host_destroy(struct ts_engine_host *h)
{
	if (!h)
		return;
	for (unsigned i = 0; i < h->n; i++)
		engine_free(h->eng[i]); /* a node that was never stopped */
	pthread_mutex_destroy(&h->lock);
	ts_free(h);
}
