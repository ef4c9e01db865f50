/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node daemon.
 *
 * A node is deliberately dumb: it owns disks and serves blocks. Its state
 * lives on its disks (PEM superblocks, LDM records: which vdisks exist and
 * which are members), so a restart re-exports exactly what it exported
 * before, under the same IQNs, and peers' remote members reconnect to the
 * same vdisks. The registry record is derived state, rewritten every
 * heartbeat; losing it loses nothing.
 *
 * Order of shutdown: stop the heartbeat thread (no more requests served),
 * destroy the iSCSI server (drops peer sessions, waits for provider IO, and
 * releases each LUN, which destroys its LDM member adapter), then close the
 * LDM and the PEM. A kill -9 skips all of it; the disks are crash-safe on
 * their own (PEM/LDM) and the array group repairs what peers missed.
 *
 * Two threads: the request thread serves the mailbox (creating and
 * exporting vdisks, and the engine requests, which may block for an
 * assembly); the heartbeat thread rewrites the node record, so liveness
 * never waits for a request.
 *
 * THREAD SAFETY: the request thread is the only one that creates or exports
 * vdisks or calls the engine ops after start. n->lock guards the stop flag
 * (with n->cond) and the served list; n->pub_lock serializes record writes
 * (a record is built and written under it, so an older one never lands
 * last). The redirect routes are control/registry/routes.h's, with their own
 * thread and lock.
 */
#include "control/node/node.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/pem/pem.h"
#include "dataplane/transport/export.h"
#include "control/registry/routes.h"

struct ts_node {
	struct ts_node_opts o;
	char chap_user[128], chap_secret[128];
	struct ts_pem *pem;
	struct ts_ldm *ldm;
	struct ts_iscsi_server *srv;
	char portal[64];
	pthread_t thread, hb_thread;
	bool thread_started, hb_started;
	pthread_mutex_t lock, pub_lock;
	pthread_cond_t cond;
	bool stop;
	unsigned nserved;
	uint8_t served[TS_REG_MAX_SERVED][16];
	uint64_t served_epoch[TS_REG_MAX_SERVED];
	char served_ep[TS_REG_MAX_SERVED][80];
	struct ts_routes *routes;
};

static int served_find(const struct ts_node *n, const uint8_t uuid[16])
{
	for (unsigned i = 0; i < n->nserved; i++)
		if (!memcmp(n->served[i], uuid, 16))
			return (int)i;
	return -1;
}

static int node_publish(struct ts_node *n)
{
	struct ts_ldm_vdisk_info *vi = ts_calloc(TS_REG_MAX_VDISKS, sizeof(*vi));
	struct ts_reg_node *rec = ts_calloc(1, sizeof(*rec));
	int cnt, rc = -ENOMEM;

	if (!vi || !rec)
		goto out;
	rec->node_id = n->o.node_id;
	snprintf(rec->portal, sizeof(rec->portal), "%s", n->portal);
	rec->free_bytes = ts_pem_free_extents(n->pem) * ts_pem_extent_size(n->pem);
	cnt = ts_ldm_list(n->ldm, vi, TS_REG_MAX_VDISKS);
	for (int i = 0; i < cnt && i < TS_REG_MAX_VDISKS; i++) {
		if (vi[i].tag != TS_NODE_MEMBER_TAG)
			continue;
		memcpy(rec->vdisks[rec->nvdisks].uuid, vi[i].uuid, 16);
		rec->vdisks[rec->nvdisks++].size = vi[i].size;
	}
	pthread_mutex_lock(&n->pub_lock);
	pthread_mutex_lock(&n->lock);
	rec->nserved = n->nserved;
	for (unsigned i = 0; i < n->nserved; i++) {
		memcpy(rec->served[i].uuid, n->served[i], 16);
		rec->served[i].epoch = n->served_epoch[i];
		snprintf(rec->served[i].engine, sizeof(rec->served[i].engine), "%s",
			 n->served_ep[i]);
	}
	pthread_mutex_unlock(&n->lock);
	rec->heartbeat_ms = ts_registry_now_ms();
	rc = ts_registry_put_node(n->o.reg, rec);
	pthread_mutex_unlock(&n->pub_lock);
out:
	ts_free(vi);
	ts_free(rec);
	return rc;
}

/* Create (or find) a member vdisk and make sure it is exported. Idempotent. */
static int node_create_member(struct ts_node *n, const uint8_t uuid[16], uint64_t size)
{
	struct ts_ldm_vdisk *vd;
	struct ts_ldm_vdisk_info vi;
	char name[40];
	int rc;

	rc = ts_ldm_get(n->ldm, uuid, &vd);
	if (rc == 0) {
		ts_ldm_vdisk_info(vd, &vi);
		if (vi.size != size || vi.tag != TS_NODE_MEMBER_TAG)
			return -EEXIST;
	} else {
		ts_uuid_format(uuid, name);
		name[8] = '\0';
		rc = ts_ldm_create(n->ldm, uuid, size, name, TS_NODE_MEMBER_TAG, &vd);
		if (rc)
			return rc;
	}
	rc = ts_transport_export_vdisk(n->srv, vd, n->chap_user, n->chap_secret);
	return rc == -EEXIST ? 0 : rc;
}

/* Serve group \p uuid at \p epoch. Idempotent at the same epoch. */
static int node_serve_group(struct ts_node *n, const uint8_t uuid[16], uint64_t epoch)
{
	char ep[80] = "";
	int i, rc;

	if (!n->o.engine)
		return -EOPNOTSUPP;
	if (!epoch)
		return -EINVAL;
	pthread_mutex_lock(&n->lock);
	i = served_find(n, uuid);
	rc = i < 0 ? 1 : epoch == n->served_epoch[i] ? 0 : epoch < n->served_epoch[i] ? -ESTALE : 2;
	if (rc == 1 && n->nserved == TS_REG_MAX_SERVED)
		rc = -ENOSPC;
	pthread_mutex_unlock(&n->lock);
	if (rc <= 0)
		return rc;
	if (rc == 2) {
		/* a newer epoch for a group served here: start over, fencing at it */
		rc = n->o.engine->release(n->o.engine_ctx, n, uuid);
		if (rc)
			return rc;
		ts_node_engine_lost(n, uuid);
	}
	rc = n->o.engine->serve(n->o.engine_ctx, n, uuid, epoch, ep, sizeof(ep));
	if (rc)
		return rc;
	pthread_mutex_lock(&n->lock);
	i = served_find(n, uuid);
	if (i < 0)
		i = (int)n->nserved++;
	memcpy(n->served[i], uuid, 16);
	n->served_epoch[i] = epoch;
	snprintf(n->served_ep[i], sizeof(n->served_ep[i]), "%s", ep);
	pthread_mutex_unlock(&n->lock);
	return 0;
}

/* Stop serving \p uuid unless this node serves it at a newer epoch. */
static int node_release_group(struct ts_node *n, const uint8_t uuid[16], uint64_t epoch)
{
	int i, rc;

	pthread_mutex_lock(&n->lock);
	i = served_find(n, uuid);
	rc = i < 0 ? 0 : epoch < n->served_epoch[i] ? -ESTALE : 1;
	pthread_mutex_unlock(&n->lock);
	if (rc <= 0)
		return rc;
	rc = n->o.engine->release(n->o.engine_ctx, n, uuid);
	if (rc == 0)
		ts_node_engine_lost(n, uuid);
	return rc;
}

static void node_serve_requests(struct ts_node *n)
{
	struct ts_reg_request req;

	/* bounded: a handful per tick, the rest next tick */
	for (int i = 0; i < 16; i++) {
		int rc = ts_registry_next_request(n->o.reg, n->o.node_id, &req);

		if (rc && rc != -EINVAL)
			break; /* none pending (-ENOENT), or the store failed: next tick */
		rc = -EINVAL; /* unparsable or unknown: completed with an error */
		if (req.op == TS_REG_CREATE_VDISK)
			rc = node_create_member(n, req.uuid, req.size);
		else if (req.op == TS_REG_SERVE_GROUP)
			rc = node_serve_group(n, req.uuid, req.epoch);
		else if (req.op == TS_REG_RELEASE_GROUP)
			rc = node_release_group(n, req.uuid, req.epoch);
		ts_log(rc ? TS_LOG_WARN : TS_LOG_INFO, "node", "request id=%s op=%d rc=%d", req.id,
		       (int)req.op, rc);
		if (rc == 0)
			(void)node_publish(n); /* the vdisk is visible before the request completes */
		if (!req.id[0] || ts_registry_complete_request(n->o.reg, n->o.node_id, req.id, rc))
			break;
	}
}

/* Wait \p ms or until stopped. True when stopped. */
static bool node_sleep(struct ts_node *n, unsigned ms)
{
	struct timespec ts;
	bool stop;

	pthread_mutex_lock(&n->lock);
	ts_deadline_ms(&ts, ms);
	if (!n->stop)
		pthread_cond_timedwait(&n->cond, &n->lock, &ts);
	stop = n->stop;
	pthread_mutex_unlock(&n->lock);
	return stop;
}

static void *node_thread(void *arg)
{
	struct ts_node *n = arg;

	while (!node_sleep(n, 50)) {
		node_serve_requests(n);
		if (n->o.engine && n->o.engine->poll)
			n->o.engine->poll(n->o.engine_ctx, n);
	}
	return NULL;
}

static void *node_hb_thread(void *arg)
{
	struct ts_node *n = arg;

	do {
		if (node_publish(n))
			ts_log(TS_LOG_WARN, "node", "heartbeat write failed node=%u", n->o.node_id);
	} while (!node_sleep(n, n->o.heartbeat_ms));
	return NULL;
}

/* True if the first 64 KiB of \p path are zeroes: a never-used disk. */
static bool disk_blank(const char *path)
{
	uint8_t *b = ts_calloc(1, 65536);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool blank = false;

	if (b && fd >= 0 && ts_pread_full(fd, b, 65536, 0) == 0) {
		blank = true;
		for (unsigned i = 0; i < 65536 && blank; i++)
			blank = b[i] == 0;
	}
	if (fd >= 0)
		close(fd);
	ts_free(b);
	return blank;
}

static int node_open_disks(struct ts_node *n)
{
	struct ts_pem_opts po = { .node_id = n->o.node_id, .extent_size = n->o.extent_size };
	int rc;

	memcpy(po.cluster_uuid, n->o.cluster_uuid, 16);
	rc = ts_pem_open(n->o.disks, n->o.ndisks, &po, &n->pem);
	for (uint32_t i = 0; rc && i < n->o.ndisks; i++)
		if (!disk_blank(n->o.disks[i]))
			return rc; /* never format a disk that holds anything */
	if (rc) {
		/* every disk is blank: first start */
		ts_log(TS_LOG_INFO, "node", "formatting blank disks node=%u disks=%u", n->o.node_id,
		       n->o.ndisks);
		rc = ts_pem_format(n->o.disks, n->o.ndisks, &po);
		if (rc == 0)
			rc = ts_pem_open(n->o.disks, n->o.ndisks, &po, &n->pem);
	}
	if (rc)
		return rc;
	return ts_ldm_open(n->pem, &n->ldm);
}

static int node_export_all(struct ts_node *n)
{
	struct ts_ldm_vdisk_info *vi = ts_calloc(TS_REG_MAX_VDISKS, sizeof(*vi));
	int cnt, rc = 0;

	if (!vi)
		return -ENOMEM;
	cnt = ts_ldm_list(n->ldm, vi, TS_REG_MAX_VDISKS);
	for (int i = 0; i < cnt && i < TS_REG_MAX_VDISKS && !rc; i++) {
		struct ts_ldm_vdisk *vd;

		if (vi[i].tag != TS_NODE_MEMBER_TAG)
			continue;
		rc = ts_ldm_get(n->ldm, vi[i].uuid, &vd);
		if (!rc)
			rc = ts_transport_export_vdisk(n->srv, vd, n->chap_user, n->chap_secret);
	}
	ts_free(vi);
	return rc;
}

int ts_node_start(const struct ts_node_opts *o, struct ts_node **out)
{
	struct ts_iscsi_server_opts so = { 0 };
	struct ts_node *n;
	int rc;

	static const uint8_t zero[16];

	if (!o || !out || !o->node_id || !memcmp(o->cluster_uuid, zero, 16) || !o->disks ||
	    !o->ndisks || !o->addr || !o->reg ||
	    !o->chap_user || !o->chap_secret || strlen(o->chap_user) >= 128 ||
	    strlen(o->chap_secret) >= 128 || strlen(o->addr) > 40)
		return -EINVAL;
	n = ts_calloc(1, sizeof(*n));
	if (!n)
		return -ENOMEM;
	n->o = *o;
	if (!n->o.extent_size)
		n->o.extent_size = 4u << 20;
	if (!n->o.port)
		n->o.port = 3260;
	if (!n->o.heartbeat_ms)
		n->o.heartbeat_ms = 500;
	snprintf(n->chap_user, sizeof(n->chap_user), "%s", o->chap_user);
	snprintf(n->chap_secret, sizeof(n->chap_secret), "%s", o->chap_secret);
	n->o.chap_user = n->chap_user;
	n->o.chap_secret = n->chap_secret;
	n->o.addr = NULL; /* not kept */
	pthread_mutex_init(&n->lock, NULL);
	pthread_mutex_init(&n->pub_lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	rc = node_open_disks(n);
	if (rc)
		goto fail;
	so.addr = o->addr;
	so.port = n->o.port;
	so.threads = 2;
	snprintf(n->portal, sizeof(n->portal), "%s:%u", o->addr, n->o.port);
	rc = ts_routes_start(n->o.reg, n->portal, n->o.heartbeat_ms, &n->routes);
	if (rc)
		goto fail;
	so.redirect = ts_routes_redirect;
	so.redirect_ctx = n->routes;
	rc = ts_iscsi_server_create(&so, &n->srv);
	if (rc)
		goto fail;
	snprintf(n->portal, sizeof(n->portal), "%s:%u", o->addr, ts_iscsi_server_port(n->srv));
	rc = node_export_all(n);
	if (rc)
		goto fail;
	rc = node_publish(n);
	if (rc)
		goto fail;
	rc = -pthread_create(&n->thread, NULL, node_thread, n);
	if (rc)
		goto fail;
	n->thread_started = true;
	rc = -pthread_create(&n->hb_thread, NULL, node_hb_thread, n);
	if (rc)
		goto fail;
	n->hb_started = true;
	ts_log(TS_LOG_INFO, "node", "node up id=%u portal=%s", n->o.node_id, n->portal);
	*out = n;
	return 0;
fail:
	ts_log(TS_LOG_ERROR, "node", "node start failed id=%u err=\"%s\"", o->node_id, ts_strerror(rc));
	ts_node_stop(n);
	return rc;
}

void ts_node_stats(struct ts_node *n, struct ts_node_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->disks = ts_pem_disk_count(n->pem);
	for (uint32_t d = 0; d < st->disks; d++)
		st->extents += ts_pem_disk_extents(n->pem, d);
	st->free_extents = ts_pem_free_extents(n->pem);
	st->extent_size = ts_pem_extent_size(n->pem);
}

struct ts_iscsi_server *ts_node_iscsi(struct ts_node *n)
{
	return n->srv;
}

struct ts_ldm *ts_node_ldm(struct ts_node *n)
{
	return n->ldm;
}

const char *ts_node_portal(const struct ts_node *n)
{
	return n->portal;
}

void ts_node_engine_lost(struct ts_node *n, const uint8_t uuid[16])
{
	int i;

	pthread_mutex_lock(&n->lock);
	i = served_find(n, uuid);
	if (i >= 0) {
		n->nserved--;
		memmove(n->served[i], n->served[n->nserved], 16);
		n->served_epoch[i] = n->served_epoch[n->nserved];
		memcpy(n->served_ep[i], n->served_ep[n->nserved], sizeof(n->served_ep[i]));
	}
	pthread_mutex_unlock(&n->lock);
	if (i >= 0 && node_publish(n))
		ts_log(TS_LOG_WARN, "node", "record write failed node=%u", n->o.node_id);
}

unsigned ts_node_served(struct ts_node *n, uint8_t (*uuids)[16], uint64_t *epochs, unsigned max)
{
	unsigned cnt;

	pthread_mutex_lock(&n->lock);
	cnt = n->nserved;
	for (unsigned i = 0; i < cnt && i < max; i++) {
		memcpy(uuids[i], n->served[i], 16);
		epochs[i] = n->served_epoch[i];
	}
	pthread_mutex_unlock(&n->lock);
	return cnt;
}

void ts_node_stop(struct ts_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&n->lock);
	n->stop = true;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	if (n->thread_started)
		pthread_join(n->thread, NULL);
	if (n->hb_started)
		pthread_join(n->hb_thread, NULL);
	/* engines first: their LUNs are on our server and their members on our LDM */
	while (n->o.engine && n->nserved) {
		uint8_t u[16];

		memcpy(u, n->served[n->nserved - 1], 16);
		if (n->o.engine->release(n->o.engine_ctx, n, u))
			ts_log(TS_LOG_WARN, "node", "engine release failed at stop node=%u", n->o.node_id);
		n->nserved--;
	}
	ts_iscsi_server_destroy(n->srv);
	ts_ldm_close(n->ldm);
	ts_pem_close(n->pem);
	ts_routes_stop(n->routes);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	pthread_mutex_destroy(&n->pub_lock);
	ts_free(n);
}
