/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The local disk manager: virtual disks over PEM extents.
 *
 * Workload: block IO to vdisks is the hot path: a lookup in a small array
 * (vdisk offset / extent size -> PEM extent) and a pread/pwrite, under a
 * shared rwlock so IO never waits for other IO. Create, grow, delete and
 * relabel are rare and serialised by one LDM mutex.
 *
 * Persistence: nothing but the PEM's owner records. Each extent is owned by
 * (vdisk uuid, index); record 0's owner data holds the descriptor:
 *
 *   0 "LDV1" | 4 flags (bit 0 committed) | 8 size | 16 extent count |
 *   20 reserved | 24 tag | 32 name[48] | 80 fence epoch | 84 fence node |
 *   88 reserved (8)   (little-endian; the fencing floor of the vdisk's
 *   member LUN, docs/fencing.md; zeroes in vdisks that were never fenced)
 *
 * Invariant: a committed descriptor names exactly the extents with index <
 * its count, each present once, zeroed when allocated. Create allocates
 * all extents with an uncommitted record 0, zeroes them, then commits
 * record 0 (one superblock write). Grow allocates the new indices (invisible:
 * they are beyond the count), zeroes them, then rewrites record 0 with the
 * new count. Delete frees record 0 first. So after a crash, open finds
 * either the old or the new vdisk, and everything else (uncommitted groups,
 * indices beyond the count) is garbage it frees.
 *
 * Member adapter: a queue and TS_LDM_MEMBER_WORKERS threads per member; the
 * queue links IOs through io->priv[0], so submit allocates nothing.
 */
#include "dataplane/ldm/ldm.h"

#include <endian.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

#define DESC_MAGIC "LDV1"
#define DESC_COMMITTED 0x1u

struct ts_ldm_vdisk {
	struct ts_ldm *ldm;
	struct ts_ldm_vdisk *next;
	uint8_t uuid[16];
	uint64_t size;
	uint64_t tag;
	char name[TS_LDM_NAME_MAX];
	uint32_t fence_epoch, fence_node; /* under ldm->lock */
	pthread_rwlock_t map_lock;
	uint32_t count;
	struct ts_pem_extent *ext;  /* count entries, by index */
	uint64_t disk_mask;         /* disks holding any extent */
	int members;                /* live member adapters, under ldm->lock */
};

struct ts_ldm {
	struct ts_pem *pem;
	pthread_mutex_t lock;
	struct ts_ldm_vdisk *head;
	uint32_t nvdisks;
};

/* ---- descriptor ---- */

struct desc {
	uint32_t flags;
	uint64_t size;
	uint32_t count;
	uint64_t tag;
	char name[TS_LDM_NAME_MAX];
	uint32_t fence_epoch, fence_node;
};

static void desc_encode(const struct desc *d, uint8_t out[TS_PEM_OWNER_DATA])
{
	uint32_t v32;
	uint64_t v64;

	memset(out, 0, TS_PEM_OWNER_DATA);
	memcpy(out, DESC_MAGIC, 4);
	v32 = htole32(d->flags);
	memcpy(out + 4, &v32, 4);
	v64 = htole64(d->size);
	memcpy(out + 8, &v64, 8);
	v32 = htole32(d->count);
	memcpy(out + 16, &v32, 4);
	v64 = htole64(d->tag);
	memcpy(out + 24, &v64, 8);
	memcpy(out + 32, d->name, TS_LDM_NAME_MAX);
	out[32 + TS_LDM_NAME_MAX - 1] = '\0';
	v32 = htole32(d->fence_epoch);
	memcpy(out + 80, &v32, 4);
	v32 = htole32(d->fence_node);
	memcpy(out + 84, &v32, 4);
}

/* 0 if \p in holds a committed descriptor. */
static int desc_decode(const uint8_t in[TS_PEM_OWNER_DATA], struct desc *d)
{
	uint32_t v32;
	uint64_t v64;

	if (memcmp(in, DESC_MAGIC, 4))
		return -EINVAL;
	memcpy(&v32, in + 4, 4);
	d->flags = le32toh(v32);
	memcpy(&v64, in + 8, 8);
	d->size = le64toh(v64);
	memcpy(&v32, in + 16, 4);
	d->count = le32toh(v32);
	memcpy(&v64, in + 24, 8);
	d->tag = le64toh(v64);
	memcpy(d->name, in + 32, TS_LDM_NAME_MAX);
	d->name[TS_LDM_NAME_MAX - 1] = '\0';
	memcpy(&v32, in + 80, 4);
	d->fence_epoch = le32toh(v32);
	memcpy(&v32, in + 84, 4);
	d->fence_node = le32toh(v32);
	return (d->flags & DESC_COMMITTED) ? 0 : -EINVAL;
}

static void vd_desc(const struct ts_ldm_vdisk *vd, uint64_t size, uint32_t count, uint32_t flags,
		    struct ts_pem_owner *o)
{
	struct desc d = { .flags = flags, .size = size, .count = count, .tag = vd->tag,
			  .fence_epoch = vd->fence_epoch, .fence_node = vd->fence_node };

	memcpy(d.name, vd->name, TS_LDM_NAME_MAX);
	memset(o, 0, sizeof(*o));
	memcpy(o->uuid, vd->uuid, 16);
	o->index = 0;
	desc_encode(&d, o->data);
}

static int uuid_is_zero(const uint8_t u[16])
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}

static void vd_free(struct ts_ldm_vdisk *vd)
{
	if (!vd)
		return;
	pthread_rwlock_destroy(&vd->map_lock);
	ts_free(vd->ext);
	ts_free(vd);
}

static struct ts_ldm_vdisk *vd_alloc(struct ts_ldm *ldm, const uint8_t uuid[16])
{
	struct ts_ldm_vdisk *vd = ts_calloc(1, sizeof(*vd));

	if (!vd)
		return NULL;
	vd->ldm = ldm;
	memcpy(vd->uuid, uuid, 16);
	pthread_rwlock_init(&vd->map_lock, NULL);
	return vd;
}

static struct ts_ldm_vdisk *vd_find(struct ts_ldm *ldm, const uint8_t uuid[16])
{
	for (struct ts_ldm_vdisk *vd = ldm->head; vd; vd = vd->next)
		if (!memcmp(vd->uuid, uuid, 16))
			return vd;
	return NULL;
}

static void vd_link(struct ts_ldm *ldm, struct ts_ldm_vdisk *vd)
{
	vd->next = ldm->head;
	ldm->head = vd;
	ldm->nvdisks++;
}

static void vd_unlink(struct ts_ldm *ldm, struct ts_ldm_vdisk *vd)
{
	for (struct ts_ldm_vdisk **pp = &ldm->head; *pp; pp = &(*pp)->next)
		if (*pp == vd) {
			*pp = vd->next;
			ldm->nvdisks--;
			return;
		}
}

static uint64_t mask_of(const struct ts_pem_extent *ext, uint32_t n)
{
	uint64_t m = 0;

	for (uint32_t i = 0; i < n; i++)
		m |= 1ull << ext[i].disk;
	return m;
}

static int sync_mask(struct ts_pem *pem, uint64_t mask)
{
	for (uint32_t d = 0; d < 64; d++)
		if (mask & (1ull << d)) {
			int rc = ts_pem_sync(pem, d);

			if (rc)
				return rc;
		}
	return 0;
}

/* Zero \p n extents and make that durable. */
static int zero_extents(struct ts_pem *pem, const struct ts_pem_extent *ext, uint32_t n)
{
	uint64_t es = ts_pem_extent_size(pem);

	for (uint32_t i = 0; i < n; i++) {
		int rc = ts_pem_extent_zero(pem, ext[i], 0, es);

		if (rc)
			return rc;
	}
	return sync_mask(pem, mask_of(ext, n));
}

/* ---- open: rebuild from owner records ---- */

struct rec {
	struct ts_pem_extent ext;
	struct ts_pem_owner owner;
};

struct scan {
	struct rec *recs;
	size_t n, cap;
};

static int scan_one(void *arg, struct ts_pem_extent ext, const struct ts_pem_owner *owner)
{
	struct scan *s = arg;

	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct rec *r = ts_realloc(s->recs, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		s->recs = r;
		s->cap = cap;
	}
	s->recs[s->n].ext = ext;
	s->recs[s->n].owner = *owner;
	s->n++;
	return 0;
}

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	int c = memcmp(x->owner.uuid, y->owner.uuid, 16);

	if (c)
		return c;
	return x->owner.index < y->owner.index ? -1 : x->owner.index > y->owner.index;
}

/*
 * One uuid's records r[0..n) sorted by index. Either build the vdisk (0,
 * *out set), or mark garbage records in \p junk (count in *nj), or leave
 * an inconsistent group alone (logged).
 */
static int rebuild_one(struct ts_ldm *ldm, struct rec *r, size_t n, struct ts_pem_extent *junk,
		       size_t *nj, struct ts_ldm_vdisk **out)
{
	uint64_t es = ts_pem_extent_size(ldm->pem);
	struct ts_ldm_vdisk *vd;
	struct desc d;
	char u[37];
	size_t i;

	*out = NULL;
	ts_uuid_format(r[0].owner.uuid, u);
	for (i = 1; i < n; i++)
		if (r[i].owner.index == r[i - 1].owner.index) {
			/* never produced by create/grow/delete: damage; touch nothing */
			ts_log(TS_LOG_ERROR, "ldm", "vdisk has two extents with one index, leaving it out vdisk=%s index=%u disk=%s",
			       u, r[i].owner.index, ts_pem_disk_path(ldm->pem, r[i].ext.disk));
			return 0;
		}
	if (r[0].owner.index != 0 || desc_decode(r[0].owner.data, &d)) {
		ts_log(TS_LOG_WARN, "ldm", "freeing extents of an unfinished vdisk vdisk=%s extents=%zu",
		       u, n);
		for (i = 0; i < n; i++)
			junk[(*nj)++] = r[i].ext;
		return 0;
	}
	for (i = 0; i < n && r[i].owner.index < d.count; i++)
		if (r[i].owner.index != i)
			break;
	if (i != d.count || d.count == 0 || d.size == 0 || d.size % TS_LDM_BLOCK_SIZE ||
	    TS_DIV_ROUND_UP(d.size, es) != d.count) {
		ts_log(TS_LOG_ERROR, "ldm", "vdisk records inconsistent, leaving it out vdisk=%s count=%u found=%zu disk=%s",
		       u, d.count, i, ts_pem_disk_path(ldm->pem, r[0].ext.disk));
		return 0;
	}
	if (i < n)
		ts_log(TS_LOG_WARN, "ldm", "freeing extents of an unfinished grow vdisk=%s extents=%zu",
		       u, n - i);
	for (size_t j = i; j < n; j++)
		junk[(*nj)++] = r[j].ext;
	vd = vd_alloc(ldm, r[0].owner.uuid);
	if (!vd)
		return -ENOMEM;
	vd->ext = ts_malloc(d.count * sizeof(*vd->ext));
	if (!vd->ext) {
		vd_free(vd);
		return -ENOMEM;
	}
	for (i = 0; i < d.count; i++)
		vd->ext[i] = r[i].ext;
	vd->count = d.count;
	vd->size = d.size;
	vd->tag = d.tag;
	memcpy(vd->name, d.name, TS_LDM_NAME_MAX);
	vd->fence_epoch = d.fence_epoch;
	vd->fence_node = d.fence_node;
	vd->disk_mask = mask_of(vd->ext, vd->count);
	*out = vd;
	return 0;
}

int ts_ldm_open(struct ts_pem *pem, struct ts_ldm **out)
{
	struct scan s = { 0 };
	struct ts_pem_extent *junk = NULL;
	struct ts_ldm *ldm;
	size_t nj = 0;
	int rc;

	if (!pem || !out)
		return -EINVAL;
	ldm = ts_calloc(1, sizeof(*ldm));
	if (!ldm)
		return -ENOMEM;
	ldm->pem = pem;
	pthread_mutex_init(&ldm->lock, NULL);
	rc = ts_pem_foreach(pem, scan_one, &s);
	if (rc)
		goto fail;
	if (s.n) {
		junk = ts_malloc(s.n * sizeof(*junk));
		if (!junk) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	if (s.n > 1)
		qsort(s.recs, s.n, sizeof(*s.recs), rec_cmp);
	for (size_t i = 0; i < s.n;) {
		size_t j = i + 1;
		struct ts_ldm_vdisk *vd;

		while (j < s.n && !memcmp(s.recs[j].owner.uuid, s.recs[i].owner.uuid, 16))
			j++;
		rc = rebuild_one(ldm, s.recs + i, j - i, junk, &nj, &vd);
		if (rc)
			goto fail;
		if (vd)
			vd_link(ldm, vd);
		i = j;
	}
	if (nj) {
		rc = ts_pem_free(pem, (uint32_t)nj, junk);
		if (rc)
			goto fail;
	}
	ts_free(junk);
	ts_free(s.recs);
	*out = ldm;
	return 0;
fail:
	ts_free(junk);
	ts_free(s.recs);
	ts_ldm_close(ldm);
	return rc;
}

void ts_ldm_close(struct ts_ldm *ldm)
{
	if (!ldm)
		return;
	while (ldm->head) {
		struct ts_ldm_vdisk *vd = ldm->head;

		ldm->head = vd->next;
		vd_free(vd);
	}
	pthread_mutex_destroy(&ldm->lock);
	ts_free(ldm);
}

/* ---- create / get / list ---- */

static void set_name(char dst[TS_LDM_NAME_MAX], const char *name)
{
	memset(dst, 0, TS_LDM_NAME_MAX);
	if (name)
		strncpy(dst, name, TS_LDM_NAME_MAX - 1);
}

struct leftovers {
	const struct ts_ldm_vdisk *vd;  /* uuid, and the live map to keep */
	struct ts_pem_extent *ext;
	size_t n, cap;
};

static int leftover_one(void *arg, struct ts_pem_extent ext, const struct ts_pem_owner *owner)
{
	struct leftovers *l = arg;
	const struct ts_ldm_vdisk *vd = l->vd;

	if (memcmp(owner->uuid, vd->uuid, 16))
		return 0;
	if (owner->index < vd->count && vd->ext[owner->index].disk == ext.disk &&
	    vd->ext[owner->index].index == ext.index)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		struct ts_pem_extent *e = ts_realloc(l->ext, cap * sizeof(*e));

		if (!e)
			return -ENOMEM;
		l->ext = e;
		l->cap = cap;
	}
	l->ext[l->n++] = ext;
	return 0;
}

/*
 * Free the records of \p vd's uuid that are not in its live map (vd->count
 * 0: all of them): what a failed create or grow could not clean up. Without
 * this a retry would put a second record under the same (uuid, index).
 */
static int reclaim_leftovers(struct ts_ldm_vdisk *vd)
{
	struct leftovers l = { .vd = vd };
	int rc = ts_pem_foreach(vd->ldm->pem, leftover_one, &l);

	if (rc == 0 && l.n) {
		char u[37];

		ts_uuid_format(vd->uuid, u);
		ts_log(TS_LOG_WARN, "ldm", "freeing leftovers of a failed create or grow vdisk=%s extents=%zu",
		       u, l.n);
		rc = ts_pem_free(vd->ldm->pem, (uint32_t)l.n, l.ext);
	}
	ts_free(l.ext);
	return rc;
}

/* Allocate extents [from, to) of \p vd into ext[from..to), zeroed. Record
 * 0, if in range, is allocated with \p rec0 (uncommitted). */
static int alloc_range(struct ts_ldm_vdisk *vd, uint32_t from, uint32_t to,
		       const struct ts_pem_owner *rec0, struct ts_pem_extent *ext)
{
	struct ts_pem *pem = vd->ldm->pem;
	struct ts_pem_owner *owners;
	uint32_t n = to - from;
	int rc;

	owners = ts_calloc(n, sizeof(*owners));
	if (!owners)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		memcpy(owners[i].uuid, vd->uuid, 16);
		owners[i].index = from + i;
	}
	if (from == 0)
		owners[0] = *rec0;
	rc = ts_pem_alloc(pem, n, owners, ext + from);
	ts_free(owners);
	if (rc)
		return rc;
	rc = zero_extents(pem, ext + from, n);
	if (rc)
		ts_pem_free(pem, n, ext + from); /* best effort; else open reclaims */
	return rc;
}

int ts_ldm_create(struct ts_ldm *ldm, const uint8_t uuid[16], uint64_t size, const char *name,
		  uint64_t tag, struct ts_ldm_vdisk **out)
{
	struct ts_ldm_vdisk *vd = NULL;
	struct ts_pem_owner rec0;
	uint64_t es;
	uint64_t count;
	int rc;

	if (!ldm || !uuid || uuid_is_zero(uuid) || size == 0 || size % TS_LDM_BLOCK_SIZE)
		return -EINVAL;
	es = ts_pem_extent_size(ldm->pem);
	count = TS_DIV_ROUND_UP(size, es);
	if (count > UINT32_MAX)
		return -EINVAL;
	pthread_mutex_lock(&ldm->lock);
	if (vd_find(ldm, uuid)) {
		rc = -EEXIST;
		goto fail;
	}
	vd = vd_alloc(ldm, uuid);
	if (!vd) {
		rc = -ENOMEM;
		goto fail;
	}
	vd->ext = ts_calloc(count, sizeof(*vd->ext));
	if (!vd->ext) {
		rc = -ENOMEM;
		goto fail;
	}
	vd->tag = tag;
	set_name(vd->name, name);
	rc = reclaim_leftovers(vd);
	if (rc)
		goto fail;
	vd_desc(vd, size, (uint32_t)count, 0, &rec0);
	rc = alloc_range(vd, 0, (uint32_t)count, &rec0, vd->ext);
	if (rc)
		goto fail;
	vd_desc(vd, size, (uint32_t)count, DESC_COMMITTED, &rec0);
	rc = ts_pem_set_owner(ldm->pem, vd->ext[0], &rec0);
	if (rc) {
		ts_pem_free(ldm->pem, (uint32_t)count, vd->ext); /* best effort */
		goto fail;
	}
	vd->size = size;
	vd->count = (uint32_t)count;
	vd->disk_mask = mask_of(vd->ext, vd->count);
	vd_link(ldm, vd);
	pthread_mutex_unlock(&ldm->lock);
	if (out)
		*out = vd;
	return 0;
fail:
	pthread_mutex_unlock(&ldm->lock);
	vd_free(vd);
	return rc;
}

int ts_ldm_get(struct ts_ldm *ldm, const uint8_t uuid[16], struct ts_ldm_vdisk **out)
{
	struct ts_ldm_vdisk *vd;

	pthread_mutex_lock(&ldm->lock);
	vd = vd_find(ldm, uuid);
	pthread_mutex_unlock(&ldm->lock);
	if (!vd)
		return -ENOENT;
	*out = vd;
	return 0;
}

static void info_fill(struct ts_ldm_vdisk *vd, struct ts_ldm_vdisk_info *info)
{
	memcpy(info->uuid, vd->uuid, 16);
	info->size = vd->size;
	info->tag = vd->tag;
	info->extents = vd->count;
	memcpy(info->name, vd->name, TS_LDM_NAME_MAX);
	info->fence_epoch = vd->fence_epoch;
	info->fence_node = vd->fence_node;
}

int ts_ldm_list(struct ts_ldm *ldm, struct ts_ldm_vdisk_info *arr, uint32_t max)
{
	uint32_t i = 0;
	int n;

	pthread_mutex_lock(&ldm->lock);
	for (struct ts_ldm_vdisk *vd = ldm->head; vd && i < max; vd = vd->next)
		info_fill(vd, &arr[i++]);
	n = (int)ldm->nvdisks;
	pthread_mutex_unlock(&ldm->lock);
	return n;
}

void ts_ldm_vdisk_info(struct ts_ldm_vdisk *vd, struct ts_ldm_vdisk_info *info)
{
	pthread_mutex_lock(&vd->ldm->lock);
	info_fill(vd, info);
	pthread_mutex_unlock(&vd->ldm->lock);
}

/* ---- resize / label / delete ---- */

int ts_ldm_resize(struct ts_ldm_vdisk *vd, uint64_t new_size)
{
	struct ts_ldm *ldm = vd->ldm;
	struct ts_pem_extent *ext = NULL;
	struct ts_pem_owner rec0;
	uint64_t count;
	int rc = 0;

	pthread_mutex_lock(&ldm->lock);
	count = TS_DIV_ROUND_UP(new_size, ts_pem_extent_size(ldm->pem));
	if (new_size < vd->size || new_size % TS_LDM_BLOCK_SIZE || count > UINT32_MAX) {
		rc = -EINVAL;
		goto out;
	}
	if (new_size == vd->size)
		goto out;
	rc = reclaim_leftovers(vd);
	if (rc)
		goto out;
	ext = ts_calloc(count, sizeof(*ext));
	if (!ext) {
		rc = -ENOMEM;
		goto out;
	}
	memcpy(ext, vd->ext, vd->count * sizeof(*ext));
	if (count > vd->count) {
		rc = alloc_range(vd, vd->count, (uint32_t)count, NULL, ext);
		if (rc)
			goto out;
	}
	vd_desc(vd, new_size, (uint32_t)count, DESC_COMMITTED, &rec0);
	rc = ts_pem_set_owner(ldm->pem, ext[0], &rec0);
	if (rc) {
		if (count > vd->count) /* best effort; else open reclaims */
			ts_pem_free(ldm->pem, (uint32_t)count - vd->count, ext + vd->count);
		goto out;
	}
	pthread_rwlock_wrlock(&vd->map_lock);
	ts_free(vd->ext);
	vd->ext = ext;
	ext = NULL;
	vd->count = (uint32_t)count;
	vd->size = new_size;
	vd->disk_mask = mask_of(vd->ext, vd->count);
	pthread_rwlock_unlock(&vd->map_lock);
out:
	pthread_mutex_unlock(&ldm->lock);
	ts_free(ext);
	return rc;
}

int ts_ldm_set_label(struct ts_ldm_vdisk *vd, const char *name, uint64_t tag)
{
	struct ts_ldm *ldm = vd->ldm;
	char old_name[TS_LDM_NAME_MAX];
	uint64_t old_tag;
	struct ts_pem_owner rec0;
	int rc;

	pthread_mutex_lock(&ldm->lock);
	memcpy(old_name, vd->name, TS_LDM_NAME_MAX);
	old_tag = vd->tag;
	set_name(vd->name, name);
	vd->tag = tag;
	vd_desc(vd, vd->size, vd->count, DESC_COMMITTED, &rec0);
	rc = ts_pem_set_owner(ldm->pem, vd->ext[0], &rec0);
	if (rc) {
		memcpy(vd->name, old_name, TS_LDM_NAME_MAX);
		vd->tag = old_tag;
	}
	pthread_mutex_unlock(&ldm->lock);
	return rc;
}

int ts_ldm_set_fence(struct ts_ldm_vdisk *vd, uint32_t epoch, uint32_t node)
{
	struct ts_ldm *ldm;
	uint32_t old_epoch, old_node;
	struct ts_pem_owner rec0;
	int rc;

	if (!vd)
		return -EINVAL;
	ldm = vd->ldm;
	pthread_mutex_lock(&ldm->lock);
	old_epoch = vd->fence_epoch;
	old_node = vd->fence_node;
	vd->fence_epoch = epoch;
	vd->fence_node = node;
	vd_desc(vd, vd->size, vd->count, DESC_COMMITTED, &rec0);
	rc = ts_pem_set_owner(ldm->pem, vd->ext[0], &rec0);
	if (rc) {
		vd->fence_epoch = old_epoch;
		vd->fence_node = old_node;
	}
	pthread_mutex_unlock(&ldm->lock);
	return rc;
}

int ts_ldm_delete(struct ts_ldm_vdisk *vd)
{
	struct ts_ldm *ldm;
	int rc;

	if (!vd)
		return -EINVAL;
	ldm = vd->ldm;
	pthread_mutex_lock(&ldm->lock);
	if (vd->members) {
		rc = -EBUSY;
		goto out;
	}
	/* ext[0] is record 0: ts_pem_free writes its disk first. */
	rc = ts_pem_free(ldm->pem, vd->count, vd->ext);
	if (rc)
		goto out;
	vd_unlink(ldm, vd);
	vd_free(vd);
out:
	pthread_mutex_unlock(&ldm->lock);
	return rc;
}

/* ---- block IO ---- */

enum io_kind { IO_READ, IO_WRITE, IO_UNMAP };

static int vd_io(struct ts_ldm_vdisk *vd, enum io_kind kind, uint64_t off, void *buf,
		 uint64_t len, uint32_t flags)
{
	struct ts_pem *pem = vd->ldm->pem;
	uint64_t es = ts_pem_extent_size(pem), mask = 0;
	uint8_t *p = buf;
	int rc = 0;

	if (off % TS_LDM_BLOCK_SIZE || len % TS_LDM_BLOCK_SIZE || len == 0 ||
	    (kind != IO_UNMAP && !buf))
		return -EINVAL;
	pthread_rwlock_rdlock(&vd->map_lock);
	if (off > vd->size || len > vd->size - off) {
		rc = -EINVAL;
		goto out;
	}
	while (len && rc == 0) {
		struct ts_pem_extent x = vd->ext[off / es];
		uint64_t eoff = off % es, n = TS_MIN(len, es - eoff);

		if (kind == IO_READ)
			rc = ts_pem_extent_pread(pem, x, eoff, p, n);
		else if (kind == IO_WRITE)
			rc = ts_pem_extent_pwrite(pem, x, eoff, p, n);
		else
			rc = ts_pem_extent_zero(pem, x, eoff, n);
		mask |= 1ull << x.disk;
		off += n;
		len -= n;
		if (p)
			p += n;
	}
	if (rc == 0 && (flags & TS_LDM_FUA))
		rc = sync_mask(pem, mask);
out:
	pthread_rwlock_unlock(&vd->map_lock);
	return rc;
}

int ts_ldm_read(struct ts_ldm_vdisk *vd, uint64_t off, void *buf, uint64_t len)
{
	return vd_io(vd, IO_READ, off, buf, len, 0);
}

int ts_ldm_write(struct ts_ldm_vdisk *vd, uint64_t off, const void *buf, uint64_t len,
		 uint32_t flags)
{
	return vd_io(vd, IO_WRITE, off, (void *)buf, len, flags);
}

int ts_ldm_unmap(struct ts_ldm_vdisk *vd, uint64_t off, uint64_t len)
{
	return vd_io(vd, IO_UNMAP, off, NULL, len, 0);
}

int ts_ldm_flush(struct ts_ldm_vdisk *vd)
{
	uint64_t mask;

	pthread_rwlock_rdlock(&vd->map_lock);
	mask = vd->disk_mask;
	pthread_rwlock_unlock(&vd->map_lock);
	return sync_mask(vd->ldm->pem, mask);
}

/* ---- member adapter ---- */

struct ldm_member {
	struct ts_ldm_vdisk *vd;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ts_member_io *head, *tail; /* linked through priv[0] */
	int stop;
	int nthreads;
	pthread_t threads[TS_LDM_MEMBER_WORKERS];
};

static void member_run(struct ldm_member *m, struct ts_member_io *io)
{
	int rc;

	switch (io->op) {
	case TS_MEMBER_READ:
		rc = ts_ldm_read(m->vd, io->offset, io->buf, io->len);
		break;
	case TS_MEMBER_WRITE:
		rc = ts_ldm_write(m->vd, io->offset, io->buf, io->len,
				  (io->flags & TS_MEMBER_FUA) ? TS_LDM_FUA : 0);
		break;
	case TS_MEMBER_FLUSH:
		rc = ts_ldm_flush(m->vd);
		break;
	case TS_MEMBER_UNMAP:
		rc = ts_ldm_unmap(m->vd, io->offset, io->len);
		break;
	default:
		rc = -EINVAL;
	}
	io->cb(io, rc);
}

static void *member_worker(void *arg)
{
	struct ldm_member *m = arg;

	pthread_mutex_lock(&m->lock);
	for (;;) {
		struct ts_member_io *io;

		while (!m->head && !m->stop)
			pthread_cond_wait(&m->cond, &m->lock);
		if (!m->head)
			break; /* stop and drained */
		io = m->head;
		m->head = io->priv[0];
		if (!m->head)
			m->tail = NULL;
		pthread_mutex_unlock(&m->lock);
		member_run(m, io);
		pthread_mutex_lock(&m->lock);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

static int member_submit(void *ctx, struct ts_member_io *io)
{
	struct ldm_member *m = ctx;

	if (io->op > TS_MEMBER_UNMAP)
		return -EINVAL;
	io->priv[0] = NULL;
	pthread_mutex_lock(&m->lock);
	if (m->tail)
		m->tail->priv[0] = io;
	else
		m->head = io;
	m->tail = io;
	pthread_cond_signal(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void member_stop(struct ldm_member *m)
{
	pthread_mutex_lock(&m->lock);
	m->stop = 1;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	for (int i = 0; i < m->nthreads; i++)
		pthread_join(m->threads[i], NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
}

static void member_destroy(void *ctx)
{
	struct ldm_member *m = ctx;
	struct ts_ldm *ldm = m->vd->ldm;

	member_stop(m);
	pthread_mutex_lock(&ldm->lock);
	m->vd->members--;
	pthread_mutex_unlock(&ldm->lock);
	ts_free(m);
}

static const struct ts_member_ops g_member_ops = {
	.submit = member_submit,
	.destroy = member_destroy,
};

int ts_ldm_vdisk_member(struct ts_ldm_vdisk *vd, struct ts_member **out)
{
	struct ts_ldm *ldm;
	struct ts_member_info info = { .block_size = TS_LDM_BLOCK_SIZE };
	struct ldm_member *m;
	int rc = 0;

	if (!vd || !out)
		return -EINVAL;
	ldm = vd->ldm;
	m = ts_calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->vd = vd;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	for (int i = 0; i < TS_LDM_MEMBER_WORKERS; i++) {
		rc = -pthread_create(&m->threads[i], NULL, member_worker, m);
		if (rc)
			goto fail;
		m->nthreads++;
	}
	pthread_mutex_lock(&ldm->lock);
	info.size = vd->size;
	info.node_id = ts_pem_node_id(ldm->pem);
	memcpy(info.uuid, vd->uuid, 16);
	if (vd->name[0]) {
		snprintf(info.name, sizeof(info.name), "node%u/%s", info.node_id, vd->name);
	} else {
		char u[37];

		ts_uuid_format(vd->uuid, u);
		snprintf(info.name, sizeof(info.name), "node%u/%s", info.node_id, u);
	}
	vd->members++;
	pthread_mutex_unlock(&ldm->lock);
	rc = ts_member_create(&g_member_ops, m, &info, out);
	if (rc) {
		pthread_mutex_lock(&ldm->lock);
		vd->members--;
		pthread_mutex_unlock(&ldm->lock);
		goto fail;
	}
	return 0;
fail:
	member_stop(m);
	ts_free(m);
	return rc;
}
