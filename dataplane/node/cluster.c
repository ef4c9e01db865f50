/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Controller-side group assembly across nodes.
 *
 * The controller owns placement and the group record; nodes own disks.
 * First use: list live nodes (fresh heartbeat), place k+m fragments with
 * ts_agrp_place(), have each node create + export its member vdisks (a
 * request through the registry mailbox; local members are created directly
 * in this process's LDM), connect a member per slot, format the group, and
 * only then write the group record. A crash before the record is written
 * leaves unused vdisks on the nodes (a leak the heal/GC task will collect,
 * see docs/multinode.md) but never a record naming an unformatted group.
 *
 * Later opens read the record, connect every slot's member (remote members
 * are created with their known size, so a node that is down does not block:
 * the member connects in the background), keep those whose group superblock
 * answers, and assemble. The rest stay in c->members and are offered back
 * by ts_cluster_rejoin().
 *
 * Members are owned here and borrowed by the group; close the group first.
 *
 * THREAD SAFETY: see cluster.h; no locks of its own.
 */
#include "dataplane/node/cluster.h"

#include <stdio.h>
#include <string.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/node/node.h"
#include "dataplane/transport/export.h"
#include "dataplane/transport/transport.h"

struct ts_cluster {
	struct ts_cluster_opts o;
	char chap_user[128], chap_secret[128];
	char initiator[64]; /* our identity towards the nodes' targets */
	struct ts_reg_group grp;
	unsigned n;
	struct ts_member *members[TS_REG_MAX_SLOTS];
	struct ts_agrp *agrp;
	struct ts_member *device; /* the group as a block device (ts_cluster_device) */
};

static int device_open(struct ts_cluster *c);

/* Live node records (heartbeat within max age). Caller frees *out. */
static int live_nodes(struct ts_cluster *c, struct ts_reg_node **out, unsigned *cnt)
{
	struct ts_reg_node *all = ts_calloc(TS_REG_MAX_NODES, sizeof(*all));
	uint64_t now = ts_registry_now_ms();
	unsigned n = 0, live = 0;
	int rc;

	if (!all)
		return -ENOMEM;
	rc = ts_registry_list_nodes(c->o.reg, all, TS_REG_MAX_NODES, &n);
	if (rc) {
		ts_free(all);
		return rc;
	}
	for (unsigned i = 0; i < n; i++) {
		if (all[i].heartbeat_ms + c->o.heartbeat_max_age_ms >= now)
			all[live++] = all[i];
	}
	*out = all;
	*cnt = live;
	return 0;
}

/* Connect slot \p s's member. */
static int slot_member(struct ts_cluster *c, unsigned s, const struct ts_reg_node *nodes,
		       unsigned nn, struct ts_member **out)
{
	uint32_t node = c->grp.slots[s].node_id;
	const uint8_t *vd = c->grp.slots[s].vdisk;
	struct ts_transport_opts to = { 0 };
	char iqn[80], url[192];

	if (c->o.local_ldm && node == c->o.local_node_id) {
		struct ts_ldm_vdisk *v;
		int rc = ts_ldm_get(c->o.local_ldm, vd, &v);

		return rc ? rc : ts_ldm_vdisk_member(v, out);
	}
	for (unsigned i = 0; i < nn; i++) {
		if (nodes[i].node_id != node)
			continue;
		ts_transport_vdisk_iqn(vd, iqn);
		snprintf(url, sizeof(url), "iscsi://%s/%s/0", nodes[i].portal, iqn);
		to.url = url;
		to.initiator_iqn = c->initiator;
		to.chap_user = c->chap_user;
		to.chap_secret = c->chap_secret;
		to.node_id = node;
		to.uuid = vd;
		to.size = c->grp.member_size;
		to.block_size = TS_LDM_BLOCK_SIZE;
		to.io_timeout_ms = c->o.io_timeout_ms;
		to.connect_timeout_ms = TS_MIN(c->o.io_timeout_ms, 2000u);
		return ts_transport_iscsi_member(&to, out);
	}
	return -ENOENT; /* node not registered (yet) */
}

static int cluster_create(struct ts_cluster *c)
{
	struct ts_agrp_node places[TS_REG_MAX_NODES];
	uint32_t where[TS_REG_MAX_SLOTS];
	struct ts_reg_request req[TS_REG_MAX_SLOTS];
	struct ts_reg_node *nodes = NULL;
	struct ts_agrp_opts ao = { .chunk_size = c->o.chunk_size };
	unsigned nn = 0;
	int rc, st;

	rc = live_nodes(c, &nodes, &nn);
	if (rc)
		return rc;
	/* at most m fragments per node: losing any one node must leave k */
	for (unsigned i = 0; i < nn; i++)
		places[i] = (struct ts_agrp_node){ .node_id = nodes[i].node_id, .slots = c->o.m };
	rc = ts_agrp_place(places, nn, c->n, where);
	if (rc)
		goto out;
	memset(&c->grp, 0, sizeof(c->grp));
	memcpy(c->grp.uuid, c->o.group_uuid, 16);
	c->grp.k = c->o.k;
	c->grp.m = c->o.m;
	c->grp.member_size = c->o.member_size;
	/* 1. ask every node for its vdisks (all requests out before waiting) */
	for (unsigned s = 0; s < c->n; s++) {
		c->grp.slots[s].node_id = where[s];
		rc = ts_uuid_generate(c->grp.slots[s].vdisk);
		if (rc)
			goto out;
		if (c->o.local_ldm && where[s] == c->o.local_node_id) {
			rc = ts_ldm_create(c->o.local_ldm, c->grp.slots[s].vdisk, c->o.member_size, "local",
					   TS_NODE_MEMBER_TAG, NULL);
			req[s].id[0] = '\0';
		} else {
			memset(&req[s], 0, sizeof(req[s]));
			ts_registry_new_request_id(req[s].id);
			req[s].op = TS_REG_CREATE_VDISK;
			memcpy(req[s].uuid, c->grp.slots[s].vdisk, 16);
			req[s].size = c->o.member_size;
			rc = ts_registry_post_request(c->o.reg, where[s], &req[s]);
		}
		if (rc)
			goto out;
	}
	for (unsigned s = 0; s < c->n; s++) {
		if (!req[s].id[0])
			continue;
		rc = ts_registry_wait_request(c->o.reg, where[s], req[s].id, c->o.request_timeout_ms, &st);
		if (rc == 0)
			rc = st;
		if (rc) {
			ts_log(TS_LOG_ERROR, "cluster", "create request failed node=%u err=\"%s\"", where[s],
			       ts_strerror(rc));
			goto out;
		}
	}
	/* 2. connect, format, record */
	for (unsigned s = 0; s < c->n; s++) {
		rc = slot_member(c, s, nodes, nn, &c->members[s]);
		if (rc)
			goto out;
	}
	rc = ts_agrp_create(c->members, c->n, c->o.k, c->o.m, &ao, &c->agrp);
	if (rc)
		goto out;
	rc = ts_registry_put_group(c->o.reg, &c->grp);
	if (rc)
		goto out;
	ts_log(TS_LOG_INFO, "cluster", "group created k=%u m=%u nodes=%u member_size=%llu", c->o.k,
	       c->o.m, nn, (unsigned long long)c->o.member_size);
out:
	ts_free(nodes);
	return rc;
}

static int cluster_assemble(struct ts_cluster *c)
{
	struct ts_member *found[TS_REG_MAX_SLOTS];
	struct ts_reg_node *nodes = NULL;
	struct ts_agrp_info info;
	unsigned nn = 0, nf = 0;
	int rc;

	rc = live_nodes(c, &nodes, &nn);
	if (rc)
		return rc;
	for (unsigned s = 0; s < c->n; s++) {
		if (slot_member(c, s, nodes, nn, &c->members[s]))
			continue;
		if (ts_agrp_probe(c->members[s], &info) == 0)
			found[nf++] = c->members[s];
	}
	ts_free(nodes);
	rc = ts_agrp_assemble(found, nf, NULL, &c->agrp);
	ts_log(rc ? TS_LOG_ERROR : TS_LOG_INFO, "cluster", "group assembled members=%u/%u err=\"%s\"", nf,
	       c->n, ts_strerror(rc));
	return rc;
}

int ts_cluster_open(const struct ts_cluster_opts *o, struct ts_cluster **out)
{
	struct ts_cluster *c;
	int rc;

	if (!o || !out || !o->reg || !o->chap_user || !o->chap_secret ||
	    strlen(o->chap_user) >= 128 || strlen(o->chap_secret) >= 128 ||
	    (o->local_node_id && !o->local_ldm))
		return -EINVAL;
	c = ts_calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *o;
	snprintf(c->chap_user, sizeof(c->chap_user), "%s", o->chap_user);
	snprintf(c->chap_secret, sizeof(c->chap_secret), "%s", o->chap_secret);
	if (o->local_node_id)
		snprintf(c->initiator, sizeof(c->initiator), "iqn.2026-01.io.tessera:node%u",
			 o->local_node_id);
	else
		snprintf(c->initiator, sizeof(c->initiator), "iqn.2026-01.io.tessera:controller");
	if (!c->o.io_timeout_ms)
		c->o.io_timeout_ms = 2000;
	if (!c->o.heartbeat_max_age_ms)
		c->o.heartbeat_max_age_ms = 3000;
	if (!c->o.request_timeout_ms)
		c->o.request_timeout_ms = 10000;
	rc = ts_registry_get_group(o->reg, o->group_uuid, &c->grp);
	if (rc == -ENOENT) {
		rc = -EINVAL;
		c->n = o->k + o->m;
		if (o->k && o->m && c->n <= TS_REG_MAX_SLOTS && o->member_size &&
		    o->member_size % TS_LDM_BLOCK_SIZE == 0)
			rc = cluster_create(c);
	} else if (rc == 0) {
		c->n = c->grp.k + c->grp.m;
		rc = cluster_assemble(c);
	}
	if (rc == 0)
		rc = device_open(c);
	if (rc) {
		ts_cluster_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

struct ts_agrp *ts_cluster_agrp(struct ts_cluster *c)
{
	return c->agrp;
}

int ts_cluster_rejoin(struct ts_cluster *c)
{
	uint64_t live = ts_agrp_live_mask(c->agrp);
	struct ts_reg_node *nodes = NULL;
	unsigned nn = 0;
	int joined = 0;

	for (unsigned s = 0; s < c->n; s++) {
		if (live & (1ull << s))
			continue;
		if (!c->members[s]) {
			if (!nodes && live_nodes(c, &nodes, &nn))
				break;
			if (slot_member(c, s, nodes, nn, &c->members[s]))
				continue;
		}
		if (ts_agrp_add_member(c->agrp, c->members[s]) == 0) {
			ts_log(TS_LOG_INFO, "cluster", "member rejoined slot=%u node=%u", s,
			       c->grp.slots[s].node_id);
			joined++;
		}
	}
	ts_free(nodes);
	return joined;
}

/* ---- the group as a block device ---- */

static void device_done(void *arg, int status)
{
	struct ts_member_io *io = arg;

	io->cb(io, status);
}

static int device_submit(void *ctx, struct ts_member_io *io)
{
	struct ts_cluster *c = ctx;
	int rc;

	switch (io->op) {
	case TS_MEMBER_READ:
		return ts_agrp_read(c->agrp, io->offset, io->len, io->buf, device_done, io);
	case TS_MEMBER_WRITE:
		if (io->flags & TS_MEMBER_FUA) {
			/* the group has no FUA: write, then flush, completing once */
			rc = ts_agrp_write_sync(c->agrp, io->offset, io->len, io->buf);
			if (rc == 0)
				rc = ts_agrp_flush_sync(c->agrp);
			io->cb(io, rc);
			return 0;
		}
		return ts_agrp_write(c->agrp, io->offset, io->len, io->buf, device_done, io);
	case TS_MEMBER_FLUSH:
		return ts_agrp_flush(c->agrp, device_done, io);
	default:
		return -EOPNOTSUPP;
	}
}

static const struct ts_member_ops g_device_ops = { .submit = device_submit };

static int device_open(struct ts_cluster *c)
{
	struct ts_member_info info = { 0 };
	char u[37];

	info.size = ts_agrp_size(c->agrp);
	info.block_size = ts_agrp_block_size(c->agrp);
	memcpy(info.uuid, c->grp.uuid, 16);
	ts_uuid_format(c->grp.uuid, u);
	snprintf(info.name, sizeof(info.name), "agrp-%.8s", u);
	return ts_member_create(&g_device_ops, c, &info, &c->device);
}

struct ts_member *ts_cluster_device(struct ts_cluster *c)
{
	return c->device;
}

int ts_cluster_tick(struct ts_cluster *c)
{
	return ts_cluster_rejoin(c);
}

void ts_cluster_status(struct ts_cluster *c, struct ts_cluster_status *st)
{
	uint64_t all = (1ull << c->n) - 1;

	memset(st, 0, sizeof(*st));
	memcpy(st->group_uuid, c->grp.uuid, 16);
	st->k = c->grp.k;
	st->m = c->grp.m;
	st->n = c->n;
	st->size = ts_agrp_size(c->agrp);
	st->generation = ts_agrp_generation(c->agrp);
	st->live_mask = ts_agrp_live_mask(c->agrp);
	for (unsigned s = 0; s < c->n; s++)
		st->slot_node[s] = c->grp.slots[s].node_id;
	if (st->live_mask == all)
		snprintf(st->state, sizeof(st->state), "healthy");
	else if ((unsigned)__builtin_popcountll(st->live_mask) >= st->k)
		snprintf(st->state, sizeof(st->state), "degraded");
	else
		snprintf(st->state, sizeof(st->state), "failed");
}

void ts_cluster_close(struct ts_cluster *c)
{
	if (!c)
		return;
	ts_member_destroy(c->device);
	ts_agrp_close(c->agrp);
	for (unsigned s = 0; s < TS_REG_MAX_SLOTS; s++)
		ts_member_destroy(c->members[s]);
	ts_free(c);
}
