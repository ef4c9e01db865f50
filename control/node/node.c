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
 * THREAD SAFETY: the heartbeat thread is the only one that creates or
 * exports vdisks after start; n->lock guards the stop flag (with n->cond).
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

struct ts_node {
	struct ts_node_opts o;
	char chap_user[128], chap_secret[128];
	struct ts_pem *pem;
	struct ts_ldm *ldm;
	struct ts_iscsi_server *srv;
	char portal[64];
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
};

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
	rec->heartbeat_ms = ts_registry_now_ms();
	rc = ts_registry_put_node(n->o.reg, rec);
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
		ts_log(rc ? TS_LOG_WARN : TS_LOG_INFO, "node", "request id=%s op=%d rc=%d", req.id,
		       (int)req.op, rc);
		if (rc == 0)
			(void)node_publish(n); /* the vdisk is visible before the request completes */
		if (!req.id[0] || ts_registry_complete_request(n->o.reg, n->o.node_id, req.id, rc))
			break;
	}
}

static void *node_thread(void *arg)
{
	struct ts_node *n = arg;
	uint64_t next_hb = 0;

	for (;;) {
		struct timespec ts;
		bool stop;
		uint64_t now;

		pthread_mutex_lock(&n->lock);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (!n->stop)
			pthread_cond_timedwait(&n->cond, &n->lock, &ts);
		stop = n->stop;
		pthread_mutex_unlock(&n->lock);
		if (stop)
			break;
		node_serve_requests(n);
		now = ts_registry_now_ms();
		if (now >= next_hb) {
			if (node_publish(n))
				ts_log(TS_LOG_WARN, "node", "heartbeat write failed node=%u", n->o.node_id);
			next_hb = now + n->o.heartbeat_ms;
		}
	}
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
	pthread_cond_init(&n->cond, NULL);
	rc = node_open_disks(n);
	if (rc)
		goto fail;
	so.addr = o->addr;
	so.port = n->o.port;
	so.threads = 2;
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

void ts_node_stop(struct ts_node *n)
{
	if (!n)
		return;
	if (n->thread_started) {
		pthread_mutex_lock(&n->lock);
		n->stop = true;
		pthread_cond_broadcast(&n->cond);
		pthread_mutex_unlock(&n->lock);
		pthread_join(n->thread, NULL);
	}
	ts_iscsi_server_destroy(n->srv);
	ts_ldm_close(n->ldm);
	ts_pem_close(n->pem);
	pthread_cond_destroy(&n->cond);
	pthread_mutex_destroy(&n->lock);
	ts_free(n);
}
