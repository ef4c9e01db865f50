/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The iSCSI target's registry: targets (IQN, CHAP credentials, ACL) and
 * their LUNs, added, removed and resized by the embedding program while
 * sessions run.
 *
 * Workload. Control-plane calls (a volume is exported, unexported or
 * expanded), rare against the IO. Lookups on the IO path go through the
 * session's target reference and the LUN table, not through here.
 *
 * Invariants. A target and a LUN are reference counted: removal unlinks
 * them at once (new logins and commands no longer find them; a removed LUN
 * answers LOGICAL UNIT NOT SUPPORTED) and frees them when the last session
 * or command lets go (target_put(), lun_put()). A LUN's provider is
 * destroyed with its last reference.
 *
 * THREAD SAFETY: srv->lock guards the target list and each target's LUN
 * table; lun->lock guards the LUN's SCSI state (resize takes it). Lock
 * order: srv->lock, then lun->lock. Any thread may call these.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

/* ------------------------------------------------------------------ */
/* registry                                                            */

void target_put(struct target *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (t->luns[i])
			lun_put(t->luns[i]);
	ts_free(t->iqn);
	ts_free(t->alias);
	ts_free(t->chap_user);
	ts_free(t->chap_secret);
	ts_free(t->mutual_user);
	ts_free(t->mutual_secret);
	ts_free(t);
}

static struct target *target_find_locked(struct ts_iscsi_server *srv, const char *iqn)
{
	for (struct target *t = srv->targets; t; t = t->next)
		if (strcasecmp(t->iqn, iqn) == 0)
			return t;
	return NULL;
}

void ts_iscsi_iqn_for_volume(const uint8_t volume_uuid[16], char out[80])
{
	char u[37];
	ts_uuid_format(volume_uuid, u);
	snprintf(out, 80, "iqn.2026-01.io.tessera:vol-%s", u);
}

static char *dup_opt(const char *s, bool *fail)
{
	if (!s)
		return NULL;
	char *d = ts_strdup(s);
	if (!d)
		*fail = true;
	return d;
}

int ts_iscsi_target_add(struct ts_iscsi_server *srv, const struct ts_iscsi_target_opts *o)
{
	int rc = 0;
	bool fail = false;
	struct target *t = NULL;

	if (!srv || !o || !o->iqn || !*o->iqn || strlen(o->iqn) >= ISCSI_NAME_MAX ||
	    (!o->chap_user) != (!o->chap_secret) || (!o->mutual_user) != (!o->mutual_secret))
		return -EINVAL;
	t = ts_calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	atomic_init(&t->refs, 1);
	t->iqn = dup_opt(o->iqn, &fail);
	t->alias = dup_opt(o->alias, &fail);
	t->chap_user = dup_opt(o->chap_user, &fail);
	t->chap_secret = dup_opt(o->chap_secret, &fail);
	t->mutual_user = dup_opt(o->mutual_user, &fail);
	t->mutual_secret = dup_opt(o->mutual_secret, &fail);
	if (fail) {
		rc = -ENOMEM;
		goto fail;
	}
	pthread_mutex_lock(&srv->lock);
	if (target_find_locked(srv, o->iqn)) {
		pthread_mutex_unlock(&srv->lock);
		rc = -EEXIST;
		goto fail;
	}
	t->next = srv->targets;
	srv->targets = t;
	pthread_mutex_unlock(&srv->lock);
	ts_log(TS_LOG_INFO, "iscsi", "target added iqn=%s", o->iqn);
	return 0;
fail:
	target_put(t);
	return rc;
}

int ts_iscsi_target_remove(struct ts_iscsi_server *srv, const char *iqn)
{
	struct target *t, **pp;

	if (!srv || !iqn)
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	for (pp = &srv->targets; (t = *pp); pp = &t->next)
		if (strcasecmp(t->iqn, iqn) == 0)
			break;
	if (!t) {
		pthread_mutex_unlock(&srv->lock);
		return -ENOENT;
	}
	*pp = t->next;
	t->removed = true;
	for (int i = 0; i < ISCSI_MAX_LUNS; i++)
		if (t->luns[i])
			atomic_store(&t->luns[i]->removed, true);
	/* drop its sessions: the owning loops see EOF and clean up */
	for (struct session *s = srv->sessions; s; s = s->next)
		if (s->tgt == t && s->conn)
			shutdown(s->conn->fd, SHUT_RDWR);
	pthread_mutex_unlock(&srv->lock);
	target_put(t);
	ts_log(TS_LOG_INFO, "iscsi", "target removed iqn=%s", iqn);
	return 0;
}

int ts_iscsi_lun_add(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
		     const struct ts_iscsi_lun_ops *ops, void *ctx, const struct ts_iscsi_lun_info *info)
{
	struct target *t;
	struct lun *l;
	int rc = 0;

	if (!srv || !iqn || !ops || !info || !ops->read || !ops->write || !ops->flush || !ops->unmap ||
	    lun_id >= ISCSI_MAX_LUNS || (info->block_size != 512 && info->block_size != 4096) ||
	    info->size < info->block_size || info->size % info->block_size ||
	    (info->fencing && (!ops->fence_save || !ops->fence_load)))
		return -EINVAL;
	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->srv = srv;
	l->id = lun_id;
	l->ops = ops;
	l->ctx = ctx;
	l->info = *info;
	l->info.product = NULL;
	l->info.pr_state_path = NULL;
	snprintf(l->product, sizeof(l->product), "%s", info->product ? info->product : "VOLUME");
	if (info->pr_state_path) {
		l->pr_path = ts_strdup(info->pr_state_path);
		if (!l->pr_path) {
			ts_free(l);
			return -ENOMEM;
		}
	}
	l->bs = info->block_size;
	l->nblocks = info->size / info->block_size;
	l->wce = true;
	l->writes.next = l->writes.prev = &l->writes;
	/* a fencing LU whose floor cannot be read must not serve: it might let a stale owner in */
	if (info->fencing)
		rc = ops->fence_load(ctx, &l->fence_epoch, &l->fence_node);
	if (!rc && (!l->fence_epoch) != (!l->fence_node))
		rc = TS_ERR_CORRUPT;
	if (!rc)
		rc = ts_rl_create(&l->ranges);
	if (rc) {
		ts_free(l->pr_path);
		ts_free(l);
		return rc;
	}
	atomic_init(&l->refs, 1);
	pthread_mutex_init(&l->lock, NULL);
	pr_load_state(l);

	pthread_mutex_lock(&srv->lock);
	t = target_find_locked(srv, iqn);
	if (!t)
		rc = -ENOENT;
	else if (t->luns[lun_id])
		rc = -EEXIST;
	else
		t->luns[lun_id] = l;
	pthread_mutex_unlock(&srv->lock);
	if (rc) {
		l->ops = NULL; /* do not call destroy */
		lun_put(l);
	}
	return rc;
}

int ts_iscsi_lun_remove(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id)
{
	struct target *t;
	struct lun *l = NULL;

	if (!srv || !iqn || lun_id >= ISCSI_MAX_LUNS)
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	t = target_find_locked(srv, iqn);
	if (t) {
		l = t->luns[lun_id];
		t->luns[lun_id] = NULL;
	}
	pthread_mutex_unlock(&srv->lock);
	if (!l)
		return -ENOENT;
	atomic_store(&l->removed, true);
	lun_put(l);
	return 0;
}

int ts_iscsi_lun_resize(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
			uint64_t size)
{
	struct target *t;
	struct lun *l = NULL;

	if (!srv || !iqn || lun_id >= ISCSI_MAX_LUNS)
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	t = target_find_locked(srv, iqn);
	if (t)
		l = t->luns[lun_id];
	if (l && (size == 0 || size % l->bs || size < l->info.size)) {
		pthread_mutex_unlock(&srv->lock);
		return -EINVAL;
	}
	if (l)
		scsi_lun_resize(l, size);
	pthread_mutex_unlock(&srv->lock);
	return l ? 0 : -ENOENT;
}

int ts_iscsi_lun_fence_stats(struct ts_iscsi_server *srv, const char *iqn, uint16_t lun_id,
			     struct ts_iscsi_fence_stats *st)
{
	struct target *t;
	struct lun *l = NULL;

	if (!srv || !iqn || !st || lun_id >= ISCSI_MAX_LUNS)
		return -EINVAL;
	pthread_mutex_lock(&srv->lock);
	t = target_find_locked(srv, iqn);
	if (t)
		l = t->luns[lun_id];
	if (l) {
		pthread_mutex_lock(&l->lock);
		memset(st, 0, sizeof(*st));
		st->epoch = l->fence_epoch;
		st->node = l->fence_node;
		st->key = ((uint64_t)l->fence_epoch << 32) | l->fence_node;
		st->held = pr_fence_owner_holds(l);
		st->raises = l->fence_raises;
		st->refused_writes = l->refused_writes;
		st->refused_other = l->refused_other;
		st->refused_pr = l->refused_pr;
		pthread_mutex_unlock(&l->lock);
	}
	pthread_mutex_unlock(&srv->lock);
	return l ? 0 : -ENOENT;
}
