/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pool: nodes (PEM + LDM over disk files), and one array group over LDM
 * virtual disks placed across the nodes.
 *
 * Truth lives on disk, as in RAID: the PEM superblocks say which extents
 * belong to which virtual disk, the virtual disk's label carries
 * POOL_MEMBER_TAG, and the array group's own superblock (in the member's
 * first MiB) says which group and slot it is. pool.json only records what
 * the operator chose at creation (geometry, cluster uuid) so later starts
 * need no options; it is written after the group is created, so a crash
 * during creation leaves no pool.json and the next start creates afresh
 * (formatting with force: nothing was ever acknowledged on those disks).
 *
 * Members reach the group through a fence: a thin member provider in front
 * of the LDM member that can be switched off. A stopped node's fences fail
 * every IO with TS_ERR_MEMBER_FAILED, wait for what is in flight, and only
 * then close the LDM member and the node's disks. The group borrows its
 * members until it closes, so fences live until ts_pool_close(); a node
 * that returns gets new fences, handed to ts_agrp_add_member().
 *
 * THREAD SAFETY: p->lock serialises stop/start/status; each fence has its
 * own lock (leaf) protecting online and inflight. Lock order: p->lock, then
 * a fence lock. IO callbacks never take p->lock.
 */
#include "dataplane/pool/pool.h"

#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/pem/pem.h"

#define POOL_MEMBER_TAG 0x5453504f4f4c4d31ull /* "TSPOOLM1" */
#define POOL_MAX_NODES 32
#define POOL_MAX_DISKS 8
#define POOL_MAX_FENCES 512

/* ---- fence: a member that can be cut off ---- */

struct fence {
	struct ts_member *inner; /* LDM member; NULL once cut */
	struct ts_member *outer; /* what the group holds */
	uint32_t node_id;
	pthread_mutex_t lock;
	pthread_cond_t idle;
	int online;
	unsigned inflight;
};

struct fence_io {
	struct ts_member_io inner;
	struct ts_member_io *outer;
	struct fence *f;
};

static void fence_done(struct ts_member_io *iio, int status)
{
	struct fence_io *fio = (struct fence_io *)iio;
	struct ts_member_io *outer = fio->outer;
	struct fence *f = fio->f;

	ts_free(fio);
	outer->cb(outer, status);
	pthread_mutex_lock(&f->lock);
	if (--f->inflight == 0)
		pthread_cond_broadcast(&f->idle);
	pthread_mutex_unlock(&f->lock);
}

static int fence_submit(void *ctx, struct ts_member_io *io)
{
	struct fence *f = ctx;
	struct fence_io *fio;
	int rc;

	fio = ts_malloc(sizeof(*fio));
	if (!fio)
		return -ENOMEM;
	pthread_mutex_lock(&f->lock);
	if (!f->online) {
		pthread_mutex_unlock(&f->lock);
		ts_free(fio);
		io->cb(io, TS_ERR_MEMBER_FAILED);
		return 0;
	}
	f->inflight++;
	pthread_mutex_unlock(&f->lock);

	fio->inner = *io;
	fio->inner.cb = fence_done;
	fio->inner.cb_arg = NULL;
	fio->outer = io;
	fio->f = f;
	rc = ts_member_submit(f->inner, &fio->inner);
	if (rc < 0) {
		ts_free(fio);
		pthread_mutex_lock(&f->lock);
		if (--f->inflight == 0)
			pthread_cond_broadcast(&f->idle);
		pthread_mutex_unlock(&f->lock);
	}
	return rc;
}

static const struct ts_member_ops g_fence_ops = { .submit = fence_submit };

/* Cut the fence off and release the LDM member once nothing is in flight. */
static void fence_cut(struct fence *f)
{
	pthread_mutex_lock(&f->lock);
	f->online = 0;
	while (f->inflight)
		pthread_cond_wait(&f->idle, &f->lock);
	pthread_mutex_unlock(&f->lock);
	ts_member_destroy(f->inner);
	f->inner = NULL;
}

static void fence_free(struct fence *f)
{
	if (!f)
		return;
	if (f->inner)
		fence_cut(f);
	ts_member_destroy(f->outer);
	pthread_mutex_destroy(&f->lock);
	pthread_cond_destroy(&f->idle);
	ts_free(f);
}

/* Takes ownership of inner (destroyed on failure). */
static int fence_create(struct ts_member *inner, struct fence **out)
{
	struct fence *f = ts_calloc(1, sizeof(*f));
	int rc;

	if (!f) {
		ts_member_destroy(inner);
		return -ENOMEM;
	}
	pthread_mutex_init(&f->lock, NULL);
	pthread_cond_init(&f->idle, NULL);
	f->inner = inner;
	f->online = 1;
	f->node_id = ts_member_info(inner)->node_id;
	rc = ts_member_create(&g_fence_ops, f, ts_member_info(inner), &f->outer);
	if (rc < 0) {
		fence_free(f);
		return rc;
	}
	*out = f;
	return 0;
}

/* ---- nodes ---- */

struct pool_node {
	uint32_t id;
	int up;
	struct ts_pem *pem;
	struct ts_ldm *ldm;
	char *paths[POOL_MAX_DISKS];
};

struct ts_pool {
	pthread_mutex_t lock;
	char *state_dir;
	uint8_t cluster_uuid[16];
	unsigned nnodes, ndisks, k, m;
	uint64_t disk_size, extent_size;
	uint32_t chunk_size;
	struct pool_node nodes[POOL_MAX_NODES];
	struct fence *fences[POOL_MAX_FENCES];
	unsigned nfences;
	struct ts_agrp *agrp;
	struct ts_member *device;
};

static int node_disk_paths(struct ts_pool *p, struct pool_node *n)
{
	char buf[4096];
	int rc;

	snprintf(buf, sizeof(buf), "%s/node%u", p->state_dir, n->id);
	rc = ts_mkdir_p(buf);
	if (rc < 0)
		return rc;
	for (unsigned d = 0; d < p->ndisks; d++) {
		if (snprintf(buf, sizeof(buf), "%s/node%u/disk%u.img", p->state_dir, n->id, d) >=
		    (int)sizeof(buf))
			return -ENAMETOOLONG;
		n->paths[d] = ts_strdup(buf);
		if (!n->paths[d])
			return -ENOMEM;
	}
	return 0;
}

static int node_create_disks(struct ts_pool *p, struct pool_node *n)
{
	struct ts_pem_opts o = { .node_id = n->id, .extent_size = p->extent_size,
				 .flags = TS_PEM_FORMAT_FORCE };

	for (unsigned d = 0; d < p->ndisks; d++) {
		int fd = open(n->paths[d], O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			return -errno;
		if (ftruncate(fd, (off_t)p->disk_size) != 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		close(fd);
	}
	memcpy(o.cluster_uuid, p->cluster_uuid, 16);
	return ts_pem_format((const char *const *)n->paths, p->ndisks, &o);
}

static int node_open(struct ts_pool *p, struct pool_node *n)
{
	struct ts_pem_opts o = { .node_id = n->id };
	int rc;

	memcpy(o.cluster_uuid, p->cluster_uuid, 16);
	rc = ts_pem_open((const char *const *)n->paths, p->ndisks, &o, &n->pem);
	if (rc < 0) {
		ts_log(TS_LOG_ERROR, "pool", "node %u: cannot open its disks (first=%s): %s", n->id,
		       n->paths[0], ts_strerror(rc));
		return rc;
	}
	rc = ts_ldm_open(n->pem, &n->ldm);
	if (rc < 0) {
		ts_log(TS_LOG_ERROR, "pool", "node %u: cannot open its virtual disks: %s", n->id,
		       ts_strerror(rc));
		ts_pem_close(n->pem);
		n->pem = NULL;
		return rc;
	}
	n->up = 1;
	return 0;
}

static void node_close(struct pool_node *n)
{
	ts_ldm_close(n->ldm);
	ts_pem_close(n->pem);
	n->ldm = NULL;
	n->pem = NULL;
	n->up = 0;
}

static int pool_add_fence(struct ts_pool *p, struct ts_member *inner, struct fence **out)
{
	int rc;

	if (p->nfences == POOL_MAX_FENCES) {
		ts_member_destroy(inner);
		return -ENOSPC;
	}
	rc = fence_create(inner, out);
	if (rc < 0)
		return rc;
	p->fences[p->nfences++] = *out;
	return 0;
}

/* Fences for every pool member vdisk of node n, appended to list (max entries). */
static int node_members(struct ts_pool *p, struct pool_node *n, struct ts_member **list,
			unsigned *cnt, unsigned max)
{
	struct ts_ldm_vdisk_info info[64];
	int nv = ts_ldm_list(n->ldm, info, TS_ARRAY_SIZE(info));

	if (nv < 0)
		return nv;
	for (int i = 0; i < nv && *cnt < max; i++) {
		struct ts_ldm_vdisk *vd;
		struct ts_member *mem;
		struct fence *f;
		int rc;

		if (info[i].tag != POOL_MEMBER_TAG)
			continue;
		rc = ts_ldm_get(n->ldm, info[i].uuid, &vd);
		if (rc == 0)
			rc = ts_ldm_vdisk_member(vd, &mem);
		if (rc == 0)
			rc = pool_add_fence(p, mem, &f);
		if (rc < 0)
			return rc;
		list[(*cnt)++] = f->outer;
	}
	return 0;
}

/* ---- pool.json ---- */

static int pool_save(struct ts_pool *p)
{
	char path[4096], uuid[37], guuid[37];
	struct ts_agrp_info gi;
	json_t *j;
	char *text;
	int rc;

	ts_uuid_format(p->cluster_uuid, uuid);
	ts_agrp_get_info(p->agrp, &gi);
	ts_uuid_format(gi.group_uuid, guuid);
	j = json_pack("{s:i, s:s, s:s, s:i, s:i, s:I, s:i, s:i, s:I, s:i}", "version", 1,
		      "cluster_uuid", uuid, "group_uuid", guuid, "nodes", (int)p->nnodes,
		      "disks_per_node", (int)p->ndisks, "disk_size", (json_int_t)p->disk_size, "k",
		      (int)p->k, "m", (int)p->m, "extent_size", (json_int_t)p->extent_size,
		      "chunk_size", (int)p->chunk_size);
	if (!j)
		return -ENOMEM;
	text = json_dumps(j, JSON_INDENT(2));
	json_decref(j);
	if (!text)
		return -ENOMEM;
	snprintf(path, sizeof(path), "%s/pool.json", p->state_dir);
	rc = ts_file_write_atomic(path, text, strlen(text));
	free(text);
	return rc;
}

/* 1 loaded, 0 absent, <0 error. */
static int pool_load(struct ts_pool *p)
{
	char path[4096];
	const char *uuid = NULL;
	json_int_t disk_size = 0, extent_size = 0;
	int version = 0, nodes = 0, disks = 0, k = 0, m = 0, chunk = 0;
	json_error_t jerr;
	char *text = NULL;
	json_t *j;
	int rc;

	snprintf(path, sizeof(path), "%s/pool.json", p->state_dir);
	rc = ts_file_read_all(path, 65536, &text, NULL);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	j = json_loads(text, 0, &jerr);
	ts_free(text);
	if (!j ||
	    json_unpack(j, "{s:i, s:s, s:i, s:i, s:I, s:i, s:i, s:I, s:i}", "version", &version,
			"cluster_uuid", &uuid, "nodes", &nodes, "disks_per_node", &disks,
			"disk_size", &disk_size, "k", &k, "m", &m, "extent_size", &extent_size,
			"chunk_size", &chunk) != 0 ||
	    version != 1 || ts_uuid_parse(uuid, p->cluster_uuid) != 0 || nodes < 1 ||
	    nodes > POOL_MAX_NODES || disks < 1 || disks > POOL_MAX_DISKS || k < 1 || m < 0 ||
	    disk_size <= 0 || extent_size <= 0 || chunk <= 0) {
		ts_log(TS_LOG_ERROR, "pool", "unreadable pool description path=%s", path);
		json_decref(j);
		return TS_ERR_CORRUPT;
	}
	p->nnodes = (unsigned)nodes;
	p->ndisks = (unsigned)disks;
	p->disk_size = (uint64_t)disk_size;
	p->k = (unsigned)k;
	p->m = (unsigned)m;
	p->extent_size = (uint64_t)extent_size;
	p->chunk_size = (uint32_t)chunk;
	json_decref(j);
	return 1;
}

/* ---- create / assemble ---- */

static int pool_create(struct ts_pool *p)
{
	unsigned n = p->k + p->m, per_node[POOL_MAX_NODES] = { 0 };
	struct ts_agrp_node places[POOL_MAX_NODES];
	uint32_t where[TS_AGRP_MAX_MEMBERS];
	struct ts_member *members[TS_AGRP_MAX_MEMBERS];
	struct ts_agrp_opts ao = { .chunk_size = p->chunk_size };
	uint64_t member_size = UINT64_MAX;
	int rc;

	rc = ts_uuid_generate(p->cluster_uuid);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < p->nnodes; i++) {
		struct pool_node *nd = &p->nodes[i];
		rc = node_create_disks(p, nd);
		if (rc == 0)
			rc = node_open(p, nd);
		if (rc < 0)
			return rc;
		places[i].node_id = nd->id;
		places[i].slots = n;
	}
	rc = ts_agrp_place(places, p->nnodes, n, where);
	if (rc < 0)
		return rc;
	for (unsigned i = 0; i < n; i++)
		per_node[where[i] - 1]++;
	for (unsigned i = 0; i < p->nnodes; i++) {
		uint64_t cap, each;
		if (!per_node[i])
			continue;
		/* Leave one extent per vdisk for LDM rounding. */
		cap = ts_pem_free_extents(p->nodes[i].pem);
		if (cap <= per_node[i])
			return TS_ERR_TOO_SMALL;
		each = (cap / per_node[i] - 1) * p->extent_size;
		member_size = TS_MIN(member_size, each);
	}
	if (member_size <= TS_AGRP_SB_AREA + 4ull * p->chunk_size) {
		ts_log(TS_LOG_ERROR, "pool", "disks too small for a %u+%u group", p->k, p->m);
		return TS_ERR_TOO_SMALL;
	}
	for (unsigned i = 0; i < n; i++) {
		struct pool_node *nd = &p->nodes[where[i] - 1];
		struct ts_ldm_vdisk *vd;
		struct ts_member *mem;
		struct fence *f;
		uint8_t uuid[16];
		char name[32];

		snprintf(name, sizeof(name), "pool-slot%u", i);
		rc = ts_uuid_generate(uuid);
		if (rc == 0)
			rc = ts_ldm_create(nd->ldm, uuid, member_size, name, POOL_MEMBER_TAG, &vd);
		if (rc == 0)
			rc = ts_ldm_vdisk_member(vd, &mem);
		if (rc == 0)
			rc = pool_add_fence(p, mem, &f);
		if (rc < 0)
			return rc;
		members[i] = f->outer;
	}
	rc = ts_agrp_create(members, n, p->k, p->m, &ao, &p->agrp);
	if (rc < 0)
		return rc;
	ts_log(TS_LOG_INFO, "pool", "created pool nodes=%u disks_per_node=%u ec=%u+%u member_size=%llu",
	       p->nnodes, p->ndisks, p->k, p->m, (unsigned long long)member_size);
	return pool_save(p);
}

static int pool_assemble(struct ts_pool *p)
{
	struct ts_member *members[POOL_MAX_FENCES];
	unsigned cnt = 0;
	int rc;

	for (unsigned i = 0; i < p->nnodes; i++) {
		struct pool_node *nd = &p->nodes[i];
		if (node_open(p, nd) < 0)
			continue; /* logged; the group may still come up degraded */
		rc = node_members(p, nd, members, &cnt, TS_ARRAY_SIZE(members));
		if (rc < 0)
			return rc;
	}
	rc = ts_agrp_assemble(members, cnt, NULL, &p->agrp);
	if (rc < 0) {
		ts_log(TS_LOG_ERROR, "pool", "array group did not assemble from %u members: %s", cnt,
		       ts_strerror(rc));
		return rc;
	}
	ts_log(TS_LOG_INFO, "pool", "assembled pool members=%u of %u live_mask=0x%llx", cnt,
	       p->k + p->m, (unsigned long long)ts_agrp_live_mask(p->agrp));
	return 0;
}

int ts_pool_open(const struct ts_pool_opts *o, struct ts_pool **out)
{
	struct ts_pool *p;
	int rc, loaded;

	if (!o || !o->state_dir || !out)
		return -EINVAL;
	p = ts_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	pthread_mutex_init(&p->lock, NULL);
	p->state_dir = ts_strdup(o->state_dir);
	if (!p->state_dir) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = ts_mkdir_p(p->state_dir);
	if (rc < 0)
		goto fail;
	loaded = pool_load(p);
	if (loaded < 0) {
		rc = loaded;
		goto fail;
	}
	if (!loaded) {
		p->nnodes = o->nodes ? o->nodes : 3;
		p->ndisks = o->disks_per_node ? o->disks_per_node : 2;
		p->disk_size = o->disk_size ? o->disk_size : (1ull << 30);
		p->k = o->k ? o->k : 4;
		p->m = o->k ? o->m : 2;
		p->extent_size = o->extent_size ? o->extent_size : (4ull << 20);
		p->chunk_size = o->chunk_size ? o->chunk_size : 65536;
		if (p->nnodes > POOL_MAX_NODES || p->ndisks > POOL_MAX_DISKS || p->m < 1 ||
		    p->k + p->m > TS_AGRP_MAX_MEMBERS) {
			rc = -EINVAL;
			goto fail;
		}
	}
	for (unsigned i = 0; i < p->nnodes; i++) {
		p->nodes[i].id = i + 1;
		rc = node_disk_paths(p, &p->nodes[i]);
		if (rc < 0)
			goto fail;
	}
	rc = loaded ? pool_assemble(p) : pool_create(p);
	if (rc < 0)
		goto fail;
	rc = ts_agrp_device_create(p->agrp, &(struct ts_agrp_device_opts){ .name = "pool" },
				   &p->device);
	if (rc < 0)
		goto fail;
	*out = p;
	return 0;
fail:
	ts_pool_close(p);
	return rc;
}

void ts_pool_close(struct ts_pool *p)
{
	if (!p)
		return;
	ts_agrp_device_destroy(p->device);
	ts_agrp_close(p->agrp);
	for (unsigned i = 0; i < p->nfences; i++)
		fence_free(p->fences[i]);
	for (unsigned i = 0; i < p->nnodes; i++) {
		node_close(&p->nodes[i]);
		for (unsigned d = 0; d < POOL_MAX_DISKS; d++)
			ts_free(p->nodes[i].paths[d]);
	}
	ts_free(p->state_dir);
	pthread_mutex_destroy(&p->lock);
	ts_free(p);
}

struct ts_member *ts_pool_device(struct ts_pool *p)
{
	return p->device;
}

struct ts_agrp *ts_pool_agrp(struct ts_pool *p)
{
	return p->agrp;
}

void ts_pool_status(struct ts_pool *p, struct ts_pool_status *st)
{
	struct ts_agrp_info gi;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	ts_agrp_get_info(p->agrp, &gi);
	st->nodes = p->nnodes;
	st->k = p->k;
	st->m = p->m;
	st->size = ts_agrp_size(p->agrp);
	st->generation = ts_agrp_generation(p->agrp);
	st->live_mask = ts_agrp_live_mask(p->agrp);
	_Static_assert(TS_AGRP_MAX_MEMBERS <= TS_ARRAY_SIZE(st->slot_node), "slot_node too small");
	for (unsigned i = 0; i < p->k + p->m && i < TS_ARRAY_SIZE(gi.slots); i++)
		st->slot_node[i] = gi.slots[i].node_id;
	for (unsigned i = 0; i < p->nnodes; i++)
		if (p->nodes[i].up)
			st->node_up_mask |= 1ull << i;
	st->extent_size = p->extent_size;
	for (unsigned i = 0; i < p->nnodes && i < TS_ARRAY_SIZE(st->node_disks); i++) {
		struct ts_pem *pem = p->nodes[i].up ? p->nodes[i].pem : NULL;

		if (!pem)
			continue;
		st->node_disks[i] = ts_pem_disk_count(pem);
		for (uint32_t d = 0; d < st->node_disks[i]; d++)
			st->node_extents[i] += ts_pem_disk_extents(pem, d);
		st->node_free_extents[i] = ts_pem_free_extents(pem);
	}
	ts_uuid_format(gi.group_uuid, st->group_uuid);
	pthread_mutex_unlock(&p->lock);
}

int ts_pool_node_stop(struct ts_pool *p, uint32_t node_id)
{
	struct pool_node *nd;
	int rc = 0;

	if (node_id < 1 || node_id > p->nnodes)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	nd = &p->nodes[node_id - 1];
	if (!nd->up) {
		rc = -EALREADY;
		goto out;
	}
	for (unsigned i = 0; i < p->nfences; i++)
		if (p->fences[i]->node_id == node_id && p->fences[i]->inner)
			fence_cut(p->fences[i]);
	node_close(nd);
	ts_log(TS_LOG_WARN, "pool", "node %u stopped", node_id);
out:
	pthread_mutex_unlock(&p->lock);
	return rc;
}

int ts_pool_node_start(struct ts_pool *p, uint32_t node_id)
{
	struct ts_member *members[64];
	struct pool_node *nd;
	unsigned cnt = 0;
	int rc;

	if (node_id < 1 || node_id > p->nnodes)
		return -EINVAL;
	pthread_mutex_lock(&p->lock);
	nd = &p->nodes[node_id - 1];
	if (nd->up) {
		rc = -EALREADY;
		goto out;
	}
	rc = node_open(p, nd);
	if (rc < 0)
		goto out;
	rc = node_members(p, nd, members, &cnt, TS_ARRAY_SIZE(members));
	for (unsigned i = 0; rc == 0 && i < cnt; i++) {
		rc = ts_agrp_add_member(p->agrp, members[i]);
		if (rc == -EEXIST)
			rc = 0; /* never dropped out: nothing to resync */
	}
	if (rc == 0)
		ts_log(TS_LOG_INFO, "pool", "node %u back, %u members rejoined", node_id, cnt);
out:
	pthread_mutex_unlock(&p->lock);
	return rc;
}
