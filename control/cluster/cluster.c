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
#include "control/cluster/cluster.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ldm/ldm.h"
#include "control/node/node.h"
#include "dataplane/replog/replog.h"
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
	struct ts_member *journals[TS_REG_MAX_NODES];
	int jindex[TS_REG_MAX_NODES]; /* journal i's index in the replog, or -1 */
	struct ts_member *retired[TS_REG_MAX_NODES]; /* replaced journals (replog may still read) */
	unsigned nretired;
	struct ts_replog *rl;     /* NULL: no journal (older record, or none reachable) */
	int heal_err;             /* last heal result */
	bool (*may_heal)(void *arg); /* ts_cluster_set_heal_gate; NULL: always */
	void *may_heal_arg;
	_Atomic int rebuilding;   /* a lost member is being rebuilt */
	pthread_mutex_t grp_lock; /* c->grp and c->agrp writes (tick thread) vs status readers */
	_Atomic long inflight;    /* device IOs submitted and not yet completed */
	_Atomic int reassembling; /* device submissions refused meanwhile */
	uint64_t reassembled_ms;  /* last re-assembly attempt (CLOCK_REALTIME ms) */
	uint64_t rebuilds, rebuild_bytes, rebuild_ns; /* last rebuild */
};

static int device_open(struct ts_cluster *c);
static int vdisk_present(struct ts_cluster *c, uint32_t node, const uint8_t vd[16],
			 const struct ts_reg_node *nodes, unsigned nn);

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

/* Connect vdisk \p vd of \p size on \p node (local LDM or remote). */
static int vdisk_member(struct ts_cluster *c, uint32_t node, const uint8_t vd[16], uint64_t size,
			const struct ts_reg_node *nodes, unsigned nn, struct ts_member **out)
{
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
		to.size = size;
		to.block_size = TS_LDM_BLOCK_SIZE;
		to.io_timeout_ms = c->o.io_timeout_ms;
		to.connect_timeout_ms = TS_MIN(c->o.io_timeout_ms, 2000u);
		to.owner_epoch = c->o.owner_epoch;
		to.owner_node = c->o.owner_node;
		return ts_transport_iscsi_member(&to, out);
	}
	return -ENOENT; /* node not registered (yet) */
}

/* Connect slot \p s's member. */
static int slot_member(struct ts_cluster *c, unsigned s, const struct ts_reg_node *nodes,
		       unsigned nn, struct ts_member **out)
{
	return vdisk_member(c, c->grp.slots[s].node_id, c->grp.slots[s].vdisk, c->grp.member_size,
			    nodes, nn, out);
}

/* Every registered node, live or not (remote members connect in the background). */
static int all_nodes(struct ts_cluster *c, struct ts_reg_node **out, unsigned *cnt)
{
	struct ts_reg_node *all = ts_calloc(TS_REG_MAX_NODES, sizeof(*all));
	int rc;

	if (!all)
		return -ENOMEM;
	rc = ts_registry_list_nodes(c->o.reg, all, TS_REG_MAX_NODES, cnt);
	if (rc) {
		ts_free(all);
		return rc;
	}
	*out = all;
	return 0;
}

/*
 * Connect the journals and open the replica journal (\p format: write empty
 * ones first). A journal whose node is unknown is left out. Without any
 * journal the group runs unreplicated (logged).
 */
static int journal_open(struct ts_cluster *c, int format)
{
	struct ts_member *js[TS_REG_MAX_NODES];
	uint32_t slot_node[TS_REG_MAX_SLOTS];
	struct ts_reg_node *nodes = NULL;
	struct ts_replog_opts ro = { 0 };
	struct ts_replog *rl = NULL;
	unsigned nn = 0, nj = 0;
	int rc;

	if (!c->grp.njournals) {
		ts_log(TS_LOG_WARN, "cluster", "group has no replica journal: degraded writes are not replicated");
		return 0;
	}
	rc = all_nodes(c, &nodes, &nn);
	if (rc)
		return rc;
	for (unsigned i = 0; i < c->grp.njournals; i++) {
		c->jindex[i] = -1;
		if (!c->journals[i] &&
		    vdisk_member(c, c->grp.journals[i].node_id, c->grp.journals[i].vdisk,
				 c->grp.journal_size, nodes, nn, &c->journals[i]))
			continue;
		c->jindex[i] = (int)nj;
		js[nj++] = c->journals[i];
	}
	ts_free(nodes);
	for (unsigned s = 0; s < c->n; s++)
		slot_node[s] = c->grp.slots[s].node_id;
	ro.journals = js;
	ro.njournals = nj;
	memcpy(ro.group_uuid, c->grp.uuid, 16);
	ro.block_size = TS_LDM_BLOCK_SIZE;
	ro.slot_node = slot_node;
	ro.nslots = c->n;
	if (!nj) {
		ts_log(TS_LOG_ERROR, "cluster", "no replica journal reachable: degraded writes are not replicated");
		return format ? -ENOENT : 0;
	}
	if (format) {
		rc = ts_replog_format(&ro);
		if (rc)
			return rc;
	}
	rc = ts_replog_open(&ro, &rl);
	pthread_mutex_lock(&c->grp_lock);
	c->rl = rc ? NULL : rl;
	pthread_mutex_unlock(&c->grp_lock);
	if (rc && !format) {
		ts_log(TS_LOG_ERROR, "cluster", "replica journal unusable err=\"%s\": degraded writes are not replicated",
		       ts_strerror(rc));
		rc = 0;
	}
	return rc;
}

static void hook_opts(struct ts_cluster *c, struct ts_agrp_opts *ao)
{
	if (c->rl) {
		ao->write_hook = ts_replog_write_hook;
		ao->write_hook_ctx = c->rl;
	}
}

static int cluster_create(struct ts_cluster *c)
{
	struct ts_agrp_node places[TS_REG_MAX_NODES];
	uint32_t where[TS_REG_MAX_SLOTS];
	struct ts_reg_request req[TS_REG_MAX_SLOTS + TS_REG_MAX_NODES];
	uint32_t req_node[TS_REG_MAX_SLOTS + TS_REG_MAX_NODES];
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
	if ((uint64_t)nn * c->o.m < c->n) {
		rc = TS_ERR_NO_SPACE; /* too few live nodes for at most m fragments each */
		goto out;
	}
	if (c->o.slot_nodes) {
		/* the control plane's placement: live nodes, at most m slots each */
		for (unsigned s = 0; s < c->n && rc == 0; s++) {
			unsigned i = 0, same = 0;

			while (i < nn && nodes[i].node_id != c->o.slot_nodes[s])
				i++;
			for (unsigned t = 0; t < c->n; t++)
				same += c->o.slot_nodes[t] == c->o.slot_nodes[s];
			if (i == nn || same > c->o.m) {
				ts_log(TS_LOG_ERROR, "cluster", "placement puts slot %u on node %u: %s", s,
				       c->o.slot_nodes[s],
				       i == nn ? "not a live node" : "more than m slots there");
				rc = -EINVAL;
			}
			where[s] = c->o.slot_nodes[s];
		}
	} else {
		rc = ts_agrp_place(places, nn, c->n, where);
	}
	if (rc)
		goto out;
	memset(&c->grp, 0, sizeof(c->grp));
	memcpy(c->grp.uuid, c->o.group_uuid, 16);
	c->grp.k = c->o.k;
	c->grp.m = c->o.m;
	c->grp.member_size = c->o.member_size;
	/* one replica journal per node that holds fragments */
	c->grp.journal_size = c->o.journal_size ? c->o.journal_size : c->o.member_size / 4;
	c->grp.journal_size -= c->grp.journal_size % TS_LDM_BLOCK_SIZE;
	for (unsigned i = 0; i < nn; i++) {
		int used = 0;

		for (unsigned s = 0; s < c->n; s++)
			used |= where[s] == nodes[i].node_id;
		if (used)
			c->grp.journals[c->grp.njournals++].node_id = nodes[i].node_id;
	}
	/* 1. ask every node for its vdisks (all requests out before waiting) */
	for (unsigned s = 0; s < c->n + c->grp.njournals; s++) {
		int journal = s >= c->n;
		uint32_t node = journal ? c->grp.journals[s - c->n].node_id : where[s];
		uint8_t *vd = journal ? c->grp.journals[s - c->n].vdisk : c->grp.slots[s].vdisk;
		uint64_t size = journal ? c->grp.journal_size : c->o.member_size;

		if (!journal)
			c->grp.slots[s].node_id = node;
		rc = ts_uuid_generate(vd);
		if (rc)
			goto out;
		if (c->o.local_ldm && node == c->o.local_node_id) {
			rc = ts_ldm_create(c->o.local_ldm, vd, size, journal ? "journal" : "local",
					   TS_NODE_MEMBER_TAG, NULL);
			req[s].id[0] = '\0';
		} else {
			memset(&req[s], 0, sizeof(req[s]));
			ts_registry_new_request_id(req[s].id);
			req[s].op = TS_REG_CREATE_VDISK;
			memcpy(req[s].uuid, vd, 16);
			req[s].size = size;
			rc = ts_registry_post_request(c->o.reg, node, &req[s]);
		}
		req_node[s] = node;
		if (rc)
			goto out;
	}
	for (unsigned s = 0; s < c->n + c->grp.njournals; s++) {
		if (!req[s].id[0])
			continue;
		rc = ts_registry_wait_request(c->o.reg, req_node[s], req[s].id,
					      c->o.request_timeout_ms, &st);
		if (rc == 0)
			rc = st;
		if (rc) {
			ts_log(TS_LOG_ERROR, "cluster", "create request failed node=%u err=\"%s\"",
			       req_node[s], ts_strerror(rc));
			goto out;
		}
	}
	/* 2. connect, format, record */
	for (unsigned s = 0; s < c->n; s++) {
		rc = slot_member(c, s, nodes, nn, &c->members[s]);
		if (rc)
			goto out;
	}
	rc = journal_open(c, 1);
	if (rc)
		goto out;
	hook_opts(c, &ao);
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
	struct ts_agrp_opts ao = { 0 };
	struct ts_agrp *g = NULL;
	unsigned nn = 0, nf = 0;
	int rc;

	rc = live_nodes(c, &nodes, &nn);
	if (rc)
		return rc;
	for (unsigned s = 0; s < c->n; s++) {
		if (!c->members[s] && slot_member(c, s, nodes, nn, &c->members[s]))
			continue;
		if (ts_agrp_probe(c->members[s], &info) == 0)
			found[nf++] = c->members[s];
	}
	ts_free(nodes);
	rc = journal_open(c, 0);
	if (rc)
		return rc;
	hook_opts(c, &ao);
	rc = ts_agrp_assemble(found, nf, &ao, &g);
	pthread_mutex_lock(&c->grp_lock);
	c->agrp = rc ? NULL : g;
	pthread_mutex_unlock(&c->grp_lock);
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
	pthread_mutex_init(&c->grp_lock, NULL);
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
	if (!c->o.owner_epoch)
		c->o.owner_epoch = 1;
	if (!c->o.owner_node)
		c->o.owner_node = o->local_node_id ? o->local_node_id : TS_CLUSTER_CONTROLLER_OWNER;
	ts_log(TS_LOG_INFO, "cluster", "owner epoch=%u node=%u", c->o.owner_epoch, c->o.owner_node);
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
	uint64_t live = c->agrp ? ts_agrp_live_mask(c->agrp) : 0;
	struct ts_reg_node *nodes = NULL;
	unsigned nn = 0;
	int joined = 0;

	if (!c->agrp || ts_agrp_fenced(c->agrp) || live == (1ull << c->n) - 1 ||
	    live_nodes(c, &nodes, &nn))
		return 0;
	for (unsigned s = 0; s < c->n; s++) {
		uint32_t node = c->grp.slots[s].node_id;
		int up = c->o.local_ldm && node == c->o.local_node_id;

		if (live & (1ull << s))
			continue;
		/* only members on nodes that heartbeat: a down node's member
		 * would only time out (seconds per try) */
		for (unsigned i = 0; i < nn && !up; i++)
			up = nodes[i].node_id == node;
		/* a vdisk gone from its node is rebuilt, not offered back */
		if (!up || vdisk_present(c, node, c->grp.slots[s].vdisk, nodes, nn) == 0)
			continue;
		if (!c->members[s] && slot_member(c, s, nodes, nn, &c->members[s]))
			continue;
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

/*
 * Every device IO is counted in c->inflight from submission until its
 * callback has returned, so a re-assembly (reassemble()) can wait until
 * none is left before it swaps the array group underneath.
 */
static struct ts_agrp *device_enter(void *ctx)
{
	struct ts_cluster *c = ctx;

	atomic_fetch_add(&c->inflight, 1);
	if (atomic_load(&c->reassembling) || !c->agrp)
		return NULL; /* being re-assembled: the group serves nothing */
	return c->agrp;
}

static void device_leave(void *ctx)
{
	struct ts_cluster *c = ctx;

	atomic_fetch_sub(&c->inflight, 1);
}

/*
 * A read the group could not serve (more than m members out) is served from
 * the replicas when they cover all of it. Runs on a group worker thread,
 * where synchronous member IO is allowed.
 */
static int device_read_fallback(void *ctx, uint64_t off, uint64_t len, void *buf)
{
	struct ts_cluster *c = ctx;

	return c->rl ? ts_replog_read(c->rl, off, len, buf) : -EIO;
}

static int device_open(struct ts_cluster *c)
{
	struct ts_agrp_device_opts o = { .uuid = c->grp.uuid, .ctx = c, .enter = device_enter,
					 .leave = device_leave,
					 .read_fallback = device_read_fallback };
	char u[37], name[64];

	ts_uuid_format(c->grp.uuid, u);
	snprintf(name, sizeof(name), "agrp-%.8s", u);
	o.name = name;
	return ts_agrp_device_create(c->agrp, &o, &c->device);
}

struct ts_member *ts_cluster_device(struct ts_cluster *c)
{
	return c->device;
}

/* Is slot \p s's vdisk still on its node? (-1: cannot tell, node not live) */
static int vdisk_present(struct ts_cluster *c, uint32_t node, const uint8_t vd[16],
			 const struct ts_reg_node *nodes, unsigned nn)
{
	if (c->o.local_ldm && node == c->o.local_node_id) {
		struct ts_ldm_vdisk *v;

		return ts_ldm_get(c->o.local_ldm, vd, &v) == 0;
	}
	for (unsigned i = 0; i < nn; i++) {
		if (nodes[i].node_id != node)
			continue;
		for (unsigned j = 0; j < nodes[i].nvdisks && j < TS_REG_MAX_VDISKS; j++)
			if (!memcmp(nodes[i].vdisks[j].uuid, vd, 16))
				return 1;
		return 0;
	}
	return -1;
}

/* Create vdisk \p vd of \p size on \p node (mailbox, or our LDM). */
static int vdisk_create(struct ts_cluster *c, uint32_t node, const uint8_t vd[16], uint64_t size)
{
	struct ts_reg_request req = { .op = TS_REG_CREATE_VDISK, .size = size };
	int rc, st;

	if (c->o.local_ldm && node == c->o.local_node_id)
		return ts_ldm_create(c->o.local_ldm, vd, size, "local", TS_NODE_MEMBER_TAG, NULL);
	ts_registry_new_request_id(req.id);
	memcpy(req.uuid, vd, 16);
	rc = ts_registry_post_request(c->o.reg, node, &req);
	if (rc == 0)
		rc = ts_registry_wait_request(c->o.reg, node, req.id, c->o.request_timeout_ms, &st);
	return rc ? rc : st;
}

/*
 * A live node that no longer has a slot's vdisk lost the disk under it
 * (replaced, wiped): rebuild the slot onto a new vdisk, on the same node
 * (placement unchanged), from the other members, then record it.
 */
static int replace_lost(struct ts_cluster *c, unsigned s, const struct ts_reg_node *nodes,
			unsigned nn)
{
	uint32_t node = c->grp.slots[s].node_id;
	struct ts_reg_group g = c->grp;
	struct ts_member *m = NULL;
	uint64_t t0 = ts_now_ns();
	int rc;

	rc = ts_uuid_generate(g.slots[s].vdisk);
	if (rc == 0)
		rc = vdisk_create(c, node, g.slots[s].vdisk, g.member_size);
	if (rc == 0)
		rc = vdisk_member(c, node, g.slots[s].vdisk, g.member_size, nodes, nn, &m);
	if (rc == 0) {
		ts_log(TS_LOG_INFO, "cluster", "rebuilding slot=%u node=%u onto a new vdisk", s, node);
		c->rebuilding = 1;
		rc = ts_agrp_replace(c->agrp, s, m);
		c->rebuilding = 0;
	}
	if (rc == 0)
		rc = ts_registry_put_group(c->o.reg, &g);
	if (rc) {
		ts_log(TS_LOG_ERROR, "cluster", "rebuild failed slot=%u node=%u err=\"%s\"", s, node,
		       ts_strerror(rc));
		/* a vdisk created but not recorded is garbage for a later GC */
		ts_member_destroy(m);
		return rc;
	}
	ts_member_destroy(c->members[s]);
	c->members[s] = m;
	pthread_mutex_lock(&c->grp_lock);
	c->grp = g;
	pthread_mutex_unlock(&c->grp_lock);
	c->rebuilds++;
	c->rebuild_bytes = ts_agrp_size(c->agrp) / c->grp.k;
	c->rebuild_ns = ts_now_ns() - t0;
	ts_log(TS_LOG_INFO, "cluster", "rebuilt slot=%u node=%u bytes=%llu ms=%llu", s, node,
	       (unsigned long long)c->rebuild_bytes, (unsigned long long)(c->rebuild_ns / 1000000));
	return 0;
}

/* Same for a replica journal whose vdisk is gone: a fresh one on that node. */
static int replace_lost_journal(struct ts_cluster *c, unsigned i, const struct ts_reg_node *nodes,
				unsigned nn)
{
	uint32_t node = c->grp.journals[i].node_id;
	struct ts_reg_group g = c->grp;
	struct ts_member *m = NULL;
	int rc;

	if (c->nretired == TS_REG_MAX_NODES)
		return -ENOSPC;
	rc = ts_uuid_generate(g.journals[i].vdisk);
	if (rc == 0)
		rc = vdisk_create(c, node, g.journals[i].vdisk, g.journal_size);
	if (rc == 0)
		rc = vdisk_member(c, node, g.journals[i].vdisk, g.journal_size, nodes, nn, &m);
	if (rc == 0)
		rc = ts_replog_replace_journal(c->rl, (unsigned)c->jindex[i], m);
	if (rc == 0)
		rc = ts_registry_put_group(c->o.reg, &g);
	if (rc) {
		ts_log(TS_LOG_ERROR, "cluster", "journal replacement failed node=%u err=\"%s\"", node,
		       ts_strerror(rc));
		if (m && c->journals[i] != m)
			ts_member_destroy(m); /* not handed over */
		return rc;
	}
	c->retired[c->nretired++] = c->journals[i];
	c->journals[i] = m;
	pthread_mutex_lock(&c->grp_lock);
	c->grp = g;
	pthread_mutex_unlock(&c->grp_lock);
	ts_log(TS_LOG_INFO, "cluster", "replica journal replaced node=%u", node);
	return 0;
}

static int replace_lost_members(struct ts_cluster *c)
{
	uint64_t live = ts_agrp_live_mask(c->agrp);
	struct ts_reg_node *nodes = NULL;
	unsigned nn = 0;
	int rc = 0;

	if (live_nodes(c, &nodes, &nn))
		return 0;
	for (unsigned s = 0; s < c->n && rc == 0; s++) {
		if (live & (1ull << s))
			continue;
		if (vdisk_present(c, c->grp.slots[s].node_id, c->grp.slots[s].vdisk, nodes, nn) == 0)
			rc = replace_lost(c, s, nodes, nn);
	}
	for (unsigned i = 0; c->rl && i < c->grp.njournals && rc == 0; i++) {
		if (c->jindex[i] < 0)
			continue;
		if (vdisk_present(c, c->grp.journals[i].node_id, c->grp.journals[i].vdisk, nodes,
				  nn) == 0)
			rc = replace_lost_journal(c, i, nodes, nn);
	}
	ts_free(nodes);
	return rc;
}

/*
 * The group failed (fewer than k live) and rejoining cannot bring it back:
 * members that failed in the same burst (a partition of this host) carry
 * out-of-date marks for the writes that were in flight, and a resync needs
 * k live members to read from. Do what a restart would: with no device IO
 * in flight, close the group and assemble it again from the members'
 * superblocks (the members lost last are current, docs/ec-layout.md), which
 * repairs or fences the dirty regions and resyncs the stale members.
 * Attempted at most every 5 s; until it succeeds the device refuses IO.
 */
static int reassemble(struct ts_cluster *c)
{
	uint64_t now = ts_registry_now_ms();
	struct ts_replog *oldrl;
	struct ts_agrp *old;
	int rc;

	if (now < c->reassembled_ms + 5000)
		return TS_ERR_DEGRADED;
	c->reassembled_ms = now;
	ts_log(TS_LOG_WARN, "cluster", "group failed and members are back: re-assembling");
	atomic_store(&c->reassembling, 1);
	while (atomic_load(&c->inflight))
		usleep(1000);
	pthread_mutex_lock(&c->grp_lock);
	old = c->agrp;
	oldrl = c->rl;
	c->agrp = NULL;
	c->rl = NULL;
	pthread_mutex_unlock(&c->grp_lock);
	ts_agrp_close(old);
	ts_replog_close(oldrl);
	rc = cluster_assemble(c);
	atomic_store(&c->reassembling, 0);
	return rc;
}

/* Slots whose node heartbeats and still lists the slot's vdisk. */
static unsigned slots_reachable(struct ts_cluster *c)
{
	struct ts_reg_node *nodes = NULL;
	unsigned nn = 0, cnt = 0;

	if (live_nodes(c, &nodes, &nn))
		return 0;
	for (unsigned s = 0; s < c->n; s++)
		cnt += vdisk_present(c, c->grp.slots[s].node_id, c->grp.slots[s].vdisk, nodes, nn) ==
		       1;
	ts_free(nodes);
	return cnt;
}

static int heal_read(void *ctx, uint64_t off, uint64_t len, void *buf)
{
	return ts_agrp_read_sync(ctx, off, len, buf);
}

static int heal_write(void *ctx, uint64_t off, uint64_t len, const void *buf)
{
	int rc = ts_agrp_write_sync(ctx, off, len, buf);

	return rc ? rc : ts_agrp_flush_sync(ctx);
}

void ts_cluster_set_heal_gate(struct ts_cluster *c, bool (*may_heal)(void *arg), void *arg)
{
	c->may_heal = may_heal;
	c->may_heal_arg = arg;
}

int ts_cluster_tick(struct ts_cluster *c)
{
	uint64_t all = (1ull << c->n) - 1;
	struct ts_agrp_stats as;
	int joined, rc;

	if (ts_agrp_fenced(c->agrp))
		return TS_ERR_FENCED; /* a stale owner repairs nothing */
	if (!c->agrp ||
	    ((unsigned)__builtin_popcountll(ts_agrp_live_mask(c->agrp)) < c->grp.k &&
	     ts_cluster_rejoin(c) == 0 && slots_reachable(c) >= c->grp.k)) {
		rc = reassemble(c);
		if (rc)
			return rc;
	}
	joined = ts_cluster_rejoin(c);
	rc = replace_lost_members(c);
	if (rc)
		return rc;
	if (!c->rl || ts_agrp_live_mask(c->agrp) != all)
		return joined;
	ts_agrp_stats(c->agrp, &as);
	if (as.ood_regions)
		return joined; /* resync first */
	ts_replog_retry_journals(c->rl);
	if (c->may_heal && !c->may_heal(c->may_heal_arg))
		return joined; /* delegated: heal when the control plane says so */
	{
		struct ts_replog_ec ec = { .read = heal_read, .write = heal_write, .ctx = c->agrp };

		rc = ts_replog_heal(c->rl, &ec);
	}
	if (rc != c->heal_err)
		ts_log(rc ? TS_LOG_ERROR : TS_LOG_INFO, "cluster", "heal err=\"%s\"", ts_strerror(rc));
	c->heal_err = rc;
	return rc ? rc : joined;
}

void ts_cluster_status(struct ts_cluster *c, struct ts_cluster_status *st)
{
	uint64_t all = (1ull << c->n) - 1;
	struct ts_agrp_stats as;
	int pending = 0;

	memset(st, 0, sizeof(*st));
	memcpy(st->group_uuid, c->grp.uuid, 16);
	st->k = c->grp.k;
	st->m = c->grp.m;
	st->n = c->n;
	st->owner_epoch = c->o.owner_epoch;
	st->owner_node = c->o.owner_node;
	/* under grp_lock: a re-assembly swaps c->agrp and c->rl */
	pthread_mutex_lock(&c->grp_lock);
	for (unsigned s = 0; s < c->n; s++)
		st->slot_node[s] = c->grp.slots[s].node_id;
	if (!c->agrp) {
		pthread_mutex_unlock(&c->grp_lock);
		snprintf(st->state, sizeof(st->state), "failed");
		return;
	}
	st->size = ts_agrp_size(c->agrp);
	st->generation = ts_agrp_generation(c->agrp);
	st->live_mask = ts_agrp_live_mask(c->agrp);
	st->fenced = ts_agrp_fenced(c->agrp);
	ts_agrp_stats(c->agrp, &as);
	st->degraded_stripes = as.ood_stripes;
	if (c->rl) {
		struct ts_replog_stats rs;

		ts_replog_stats(c->rl, &rs);
		st->replicated_bytes = rs.replicated_bytes;
		st->replica_copies = rs.last_copies;
		st->unreplicated_bytes = rs.unreplicated_bytes;
		st->heal_total_bytes = rs.heal_total_bytes;
		st->heal_done_bytes = rs.heal_done_bytes;
		st->heal_rate_bps = rs.heal_ns ? (uint64_t)((double)rs.heal_total_bytes * 1e9 /
							     (double)rs.heal_ns)
					       : 0;
		st->heals = rs.heals;
		pending = rs.covered_bytes || rs.used_bytes > 4096 || rs.healing;
	}
	pthread_mutex_unlock(&c->grp_lock);
	st->rebuilds = c->rebuilds;
	st->rebuild_bytes = c->rebuild_bytes;
	st->rebuild_rate_bps = c->rebuild_ns ? (uint64_t)((double)c->rebuild_bytes * 1e9 /
							   (double)c->rebuild_ns)
					     : 0;
	if (st->fenced)
		snprintf(st->state, sizeof(st->state), "fenced");
	else if (c->rebuilding)
		snprintf(st->state, sizeof(st->state), "rebuilding");
	else if (st->live_mask != all)
		snprintf(st->state, sizeof(st->state), "%s",
			 (unsigned)__builtin_popcountll(st->live_mask) >= st->k ? "degraded" : "failed");
	else if (as.ood_regions || pending)
		snprintf(st->state, sizeof(st->state), "healing");
	else
		snprintf(st->state, sizeof(st->state), "healthy");
}

void ts_cluster_close(struct ts_cluster *c)
{
	if (!c)
		return;
	ts_agrp_device_destroy(c->device);
	ts_agrp_close(c->agrp);
	ts_replog_close(c->rl);
	for (unsigned s = 0; s < TS_REG_MAX_SLOTS; s++)
		ts_member_destroy(c->members[s]);
	for (unsigned i = 0; i < TS_REG_MAX_NODES; i++)
		ts_member_destroy(c->journals[i]);
	for (unsigned i = 0; i < c->nretired; i++)
		ts_member_destroy(c->retired[i]);
	pthread_mutex_destroy(&c->grp_lock);
	ts_free(c);
}
