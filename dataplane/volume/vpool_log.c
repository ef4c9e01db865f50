/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The volume pool's crash-safe metadata: the log, commits, checkpoints,
 * format and open (superblock, checkpoint load, log replay).
 *
 * On disk (blocks of 4 KiB from the member's start):
 *   0, 1          superblock copies; the valid one with the highest
 *                 generation wins. Copy and checkpoint slot = gen % 2.
 *   2 ..          checkpoint slot 0, then slot 1 (slot_blocks each)
 *   log_start ..  the log (log_blocks), restarted at 0 by every checkpoint
 *   data_start .. data blocks (pba = block number from the member's start)
 * A checkpoint is a stream of records that rebuilds the whole tree (ids
 * counter, layers parent-first, their maps as runs, volumes each followed by
 * its attributes). The log holds
 * the same record types; each commit is one transaction spanning one or more
 * log blocks, the last flagged END; a block carries the pool uuid, the
 * generation and its index, and a CRC32C, so stale or torn blocks end replay
 * and a torn transaction is dropped whole.
 *
 * Ordering (why a crash leaves a consistent tree and keeps flushed writes):
 *  - a write to a block the head does not own goes to a newly allocated
 *    block; its R_MAP record is appended when the data write completes, so a
 *    record never precedes its data; a commit captures the records, flushes
 *    the member (making that data durable), then writes the log and flushes.
 *  - a freed block is only reusable after the commit that frees it is durable
 *    (pending list), so the last committed tree never points at reused data.
 *  - a checkpoint goes to the inactive slot and is flushed before the
 *    superblock that names it is written (FUA + flush).
 *  - open replays, then checkpoints if the log held anything, so the log always
 *    restarts empty after a restart (no stale block can follow new ones).
 *
 * THREAD SAFETY: see volume.h (tree rwlock -> commit mutex -> pool mutex).
 * A commit holds the commit mutex across its member IO and takes p->mu only
 * to capture the records and to release pending frees. Format and open own
 * the pool alone; close must be the last call.
 */
#include "dataplane/volume/vpool_int.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dataplane/common/ts_common.h"

#define SB_MAGIC "TSVPOOL1"
/* 2: volume attributes (R_VOL_ATTR*). Version 1 pools open as they are and
 * are written as version 2 from their next checkpoint on. */
#define SB_VERSION 2u
#define SB_VERSION_MIN 1u
#define LOG_MAGIC 0x474f4c56u /* "VLOG" */
#define LOG_END 0x1u
#define LOG_HDR 40u
#define LOG_PAYLOAD (BS - LOG_HDR)
#define RUN_MAX 1024u
#define LOG_CHUNK 64u

struct sb {
	char magic[8];
	uint32_t version, crc;
	uint64_t gen, total_blocks, slot_blocks, log_blocks, data_start, ckpt_len;
	uint32_t ckpt_crc, pad;
	uint8_t uuid[16];
};

struct logh {
	uint32_t magic, crc;
	uint64_t uuid_lo, gen, seq;
	uint32_t used, flags;
};


static uint32_t crc(const void *b, size_t n)
{
	return crc32_iscsi((unsigned char *)b, (int)n, 0xffffffffu);
}



static int mio(struct ts_vpool *p, enum ts_member_op op, uint32_t fl, uint64_t blk, uint64_t n,
	       void *buf)
{
	return ts_member_rw_sync(p->m, op, fl, blk * BS, n * BS, buf);
}

static int mflush(struct ts_vpool *p)
{
	return ts_member_rw_sync(p->m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
}


/* -------------------------------------------------------- checkpoints */

struct sbuf {
	uint8_t *b;
	size_t len, cap;
};

static int sb_put2(struct sbuf *s, unsigned type, const void *pl, size_t plen, const void *tail,
		   size_t tlen)
{
	uint16_t l16 = (uint16_t)(R_HDR + plen + tlen);

	if (vp_grow((void **)&s->b, &s->cap, s->len + R_HDR + plen + tlen, 1))
		return -ENOMEM;
	s->b[s->len] = (uint8_t)type;
	s->b[s->len + 1] = 0;
	memcpy(s->b + s->len + 2, &l16, 2);
	memcpy(s->b + s->len + R_HDR, pl, plen);
	if (tlen)
		memcpy(s->b + s->len + R_HDR + plen, tail, tlen);
	s->len += R_HDR + plen + tlen;
	return 0;
}

static int sb_put(struct sbuf *s, unsigned type, const void *pl, size_t plen)
{
	return sb_put2(s, type, pl, plen, NULL, 0);
}

void vp_layer_rec(const struct layer *l, struct r_layer *r)
{
	memset(r, 0, sizeof(*r));
	r->id = l->id;
	r->parent = l->parent ? l->parent->id : 0;
	r->vol = l->vol_id;
	r->size = l->size;
	r->ctime = l->ctime;
	r->flags = l->flags;
	memcpy(r->name, l->name, sizeof(r->name));
}

void vp_vol_rec(const struct vol *v, struct r_vol *r)
{
	memset(r, 0, sizeof(*r));
	r->id = v->id;
	r->head = v->head->id;
	r->size = v->size;
	r->ctime = v->ctime;
	memcpy(r->name, v->name, sizeof(r->name));
}

static int serialize(struct ts_vpool *p, struct sbuf *s)
{
	uint8_t run[sizeof(struct r_run) + 8 * RUN_MAX];
	size_t i;

	if (sb_put(s, R_IDS, &p->next_id, 8))
		return -ENOMEM;
	/* parent ids are always smaller than their children's: id order is parent-first */
	for (i = 0; i < p->nlayers; i++) {
		const struct layer *l = p->layers[i];
		struct r_layer r;
		struct r_run hdr = { .layer = l->id };
		uint64_t g = 0, v;

		vp_layer_rec(l, &r);
		if (sb_put(s, R_LAYER_NEW, &r, sizeof(r)))
			return -ENOMEM;
		while (rmap_next(&l->map, g, &g, &v)) {
			if (hdr.n && (g != hdr.start + hdr.n || hdr.n == RUN_MAX)) {
				memcpy(run, &hdr, sizeof(hdr));
				if (sb_put(s, R_MAP_RUN, run, sizeof(hdr) + 8ull * hdr.n))
					return -ENOMEM;
				hdr.n = 0;
			}
			if (!hdr.n)
				hdr.start = g;
			memcpy(run + sizeof(hdr) + 8ull * hdr.n, &v, 8);
			hdr.n++;
			g++;
		}
		if (hdr.n) {
			memcpy(run, &hdr, sizeof(hdr));
			if (sb_put(s, R_MAP_RUN, run, sizeof(hdr) + 8ull * hdr.n))
				return -ENOMEM;
		}
	}
	for (i = 0; i < p->nvols; i++) {
		const struct vol *v = p->vols[i];
		struct r_vol r;
		uint32_t a;

		vp_vol_rec(v, &r);
		if (sb_put(s, R_VOL_NEW, &r, sizeof(r)))
			return -ENOMEM;
		for (a = 0; a < v->nattrs; a++) {
			struct r_attr ra = { .vol = v->id, .len = v->attrs[a].len };

			memcpy(ra.name, v->attrs[a].name, sizeof(ra.name));
			if (sb_put2(s, R_VOL_ATTR, &ra, sizeof(ra), v->attrs[a].val, ra.len))
				return -ENOMEM;
		}
	}
	return 0;
}

static int write_sb(struct ts_vpool *p, uint64_t gen, uint64_t ckpt_len, uint32_t ckpt_crc)
{
	uint8_t *blk = ts_aligned_alloc(BS, BS);
	struct sb s;
	int rc;

	if (!blk)
		return -ENOMEM;
	memset(blk, 0, BS);
	memset(&s, 0, sizeof(s));
	memcpy(s.magic, SB_MAGIC, 8);
	s.version = SB_VERSION;
	s.gen = gen;
	s.total_blocks = p->total_blocks;
	s.slot_blocks = p->slot_blocks;
	s.log_blocks = p->log_blocks;
	s.data_start = p->data_start;
	s.ckpt_len = ckpt_len;
	s.ckpt_crc = ckpt_crc;
	memcpy(s.uuid, p->uuid, 16);
	s.crc = crc(&s, sizeof(s));
	memcpy(blk, &s, sizeof(s));
	rc = mio(p, TS_MEMBER_WRITE, TS_MEMBER_FUA, gen % 2, 1, blk);
	if (rc == 0)
		rc = mflush(p);
	ts_free(blk);
	return rc;
}

/* Write a checkpoint of the whole state. Called with commit_mu held. */
static int checkpoint(struct ts_vpool *p)
{
	struct sbuf s = { 0 };
	size_t nfree, nblk;
	uint8_t *io = NULL;
	uint64_t gen;
	int rc;

	pthread_mutex_lock(&p->mu);
	rc = serialize(p, &s);
	if (rc == 0) {
		p->rlen = 0; /* the checkpoint covers every record */
		p->need_ckpt = 1; /* until it is durable */
	}
	nfree = p->npending;
	pthread_mutex_unlock(&p->mu);
	if (rc)
		goto out;
	nblk = TS_DIV_ROUND_UP(s.len, BS);
	if (nblk > p->slot_blocks) {
		ts_log(TS_LOG_ERROR, "volume", "metadata full bytes=%zu slot=%llu", s.len,
		       (unsigned long long)(p->slot_blocks * BS));
		rc = TS_ERR_NO_SPACE;
		goto out;
	}
	io = ts_aligned_alloc(BS, nblk * BS);
	if (!io) {
		rc = -ENOMEM;
		goto out;
	}
	memset(io, 0, nblk * BS);
	memcpy(io, s.b, s.len);
	gen = p->gen + 1;
	rc = mflush(p); /* the data the captured maps point at */
	if (rc == 0)
		rc = mio(p, TS_MEMBER_WRITE, 0, 2 + (gen % 2) * p->slot_blocks, nblk, io);
	if (rc == 0)
		rc = mflush(p);
	if (rc == 0)
		rc = write_sb(p, gen, s.len, crc(s.b, s.len));
	if (rc)
		goto out;
	pthread_mutex_lock(&p->mu);
	p->gen = gen;
	p->log_pos = 0;
	p->need_ckpt = 0;
	p->last_ckpt_bytes = s.len;
	vp_release_pending(p, nfree);
	pthread_mutex_unlock(&p->mu);
out:
	ts_free(io);
	ts_free(s.b);
	return rc;
}

/*
 * Commit: log the records since the last commit, or checkpoint. The log path
 * never allocates: it streams the records through the pool's fixed log buffer
 * (LOG_CHUNK blocks per member write); only the last block of the
 * transaction carries LOG_END, so a torn multi-write commit is dropped whole.
 */
int vp_commit(struct ts_vpool *p)
{
	size_t len, nfree, nblk, done;
	int rc = 0;

	pthread_mutex_lock(&p->commit_mu);
	pthread_mutex_lock(&p->mu);
	len = p->rlen;
	nfree = p->npending;
	nblk = TS_DIV_ROUND_UP(len, LOG_PAYLOAD);
	if (p->need_ckpt || p->log_pos + nblk > p->log_blocks) {
		pthread_mutex_unlock(&p->mu);
		rc = checkpoint(p);
		goto out;
	}
	if (len)
		p->need_ckpt = 1; /* until the log write is durable */
	pthread_mutex_unlock(&p->mu);
	rc = mflush(p); /* the data the captured records point at */
	for (done = 0; rc == 0 && done < nblk;) {
		size_t n = TS_MIN(LOG_CHUNK, nblk - done), i;

		memset(p->logbuf, 0, n * BS);
		pthread_mutex_lock(&p->mu); /* p->rec may move while we are outside */
		for (i = 0; i < n; i++) {
			uint64_t blk = done + i;
			struct logh h = { .magic = LOG_MAGIC, .uuid_lo = p->uuid_lo, .gen = p->gen,
					  .seq = p->log_pos + blk };
			size_t chunk = TS_MIN(LOG_PAYLOAD, len - blk * LOG_PAYLOAD);
			uint8_t *b = p->logbuf + i * BS;
			h.used = (uint32_t)chunk;
			h.flags = blk + 1 == nblk ? LOG_END : 0;
			memcpy(b + LOG_HDR, p->rec + blk * LOG_PAYLOAD, chunk);
			memcpy(b, &h, sizeof(h));
			h.crc = crc(b, BS);
			memcpy(b, &h, sizeof(h));
		}
		pthread_mutex_unlock(&p->mu);
		rc = mio(p, TS_MEMBER_WRITE, TS_MEMBER_FUA, p->log_start + p->log_pos + done, n,
			 p->logbuf);
		done += n;
	}
	if (rc == 0 && len)
		rc = mflush(p);
	pthread_mutex_lock(&p->mu);
	/* the captured records leave the buffer either way: on failure the
	 * forced checkpoint covers them */
	if (len)
		memmove(p->rec, p->rec + len, p->rlen - len);
	p->rlen -= len;
	if (rc == 0) {
		p->log_pos += nblk;
		if (len)
			p->need_ckpt = 0;
		vp_release_pending(p, nfree);
	}
	pthread_mutex_unlock(&p->mu);
out:
	pthread_mutex_unlock(&p->commit_mu);
	return rc;
}

int ts_vpool_commit(struct ts_vpool *p)
{
	return p ? vp_commit(p) : -EINVAL;
}

/* ------------------------------------------------------- format, open */

static void geometry(struct ts_vpool *p, uint64_t total)
{
	p->total_blocks = total;
	p->slot_blocks = TS_MAX(64, total / 96);
	p->log_blocks = TS_MAX(64, total / 256);
	p->log_start = 2 + 2 * p->slot_blocks;
	p->data_start = p->log_start + p->log_blocks;
	p->data_blocks = total - p->data_start;
}

static struct ts_vpool *pool_new(struct ts_member *m)
{
	struct ts_vpool *p = ts_calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->m = m;
	p->next_id = 1;
	p->logbuf = ts_aligned_alloc(BS, LOG_CHUNK * BS);
	if (!p->logbuf) {
		ts_free(p);
		return NULL;
	}
	pthread_rwlock_init(&p->tree, NULL);
	pthread_mutex_init(&p->commit_mu, NULL);
	pthread_mutex_init(&p->mu, NULL);
	{
		/* CLOCK_MONOTONIC: ts_vpool_volume_hold() waits on it with a monotonic deadline */
		pthread_condattr_t ca;
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&p->cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	return p;
}

static void pool_free(struct ts_vpool *p)
{
	size_t i;

	for (i = 0; i < p->nvols; i++)
		vp_vol_free(p->vols[i]);
	for (i = 0; i < p->nlayers; i++)
		vp_layer_free(p->layers[i]);
	ts_free(p->vols);
	ts_free(p->layers);
	ts_free(p->bitmap);
	ts_free(p->pending);
	ts_free(p->rec);
	ts_free(p->logbuf);
	pthread_rwlock_destroy(&p->tree);
	pthread_mutex_destroy(&p->commit_mu);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cond);
	ts_free(p);
}

static int check_member(struct ts_member *m, uint64_t *total)
{
	const struct ts_member_info *mi;

	if (!m)
		return -EINVAL;
	mi = ts_member_info(m);
	if (mi->block_size > BS || BS % mi->block_size)
		return -EINVAL;
	*total = mi->size / BS;
	return *total < 1024 ? TS_ERR_TOO_SMALL : 0;
}

int ts_vpool_format(struct ts_member *m)
{
	struct ts_vpool *p;
	uint64_t total;
	uint8_t *zero = NULL;
	int rc = check_member(m, &total);

	if (rc)
		return rc;
	p = pool_new(m);
	if (!p)
		return -ENOMEM;
	geometry(p, total);
	rc = ts_uuid_generate(p->uuid);
	if (rc)
		goto out;
	memcpy(&p->uuid_lo, p->uuid, 8);
	zero = ts_aligned_alloc(BS, BS);
	if (!zero) {
		rc = -ENOMEM;
		goto out;
	}
	memset(zero, 0, BS);
	/* invalidate both superblocks, then checkpoint gen 1 */
	rc = mio(p, TS_MEMBER_WRITE, 0, 0, 1, zero);
	if (rc == 0)
		rc = mio(p, TS_MEMBER_WRITE, 0, 1, 1, zero);
	if (rc == 0)
		rc = mflush(p);
	if (rc == 0) {
		p->gen = 0;
		pthread_mutex_lock(&p->commit_mu);
		rc = checkpoint(p);
		pthread_mutex_unlock(&p->commit_mu);
	}
out:
	ts_free(zero);
	pool_free(p);
	return rc;
}

static int read_sb(struct ts_vpool *p, struct sb *out)
{
	uint8_t *blk = ts_aligned_alloc(BS, BS);
	struct sb s[2];
	int ok[2] = { 0, 0 }, any_magic = 0, i, rc = 0;

	if (!blk)
		return -ENOMEM;
	for (i = 0; i < 2; i++) {
		uint32_t c;
		rc = mio(p, TS_MEMBER_READ, 0, (uint64_t)i, 1, blk);
		if (rc)
			goto out;
		memcpy(&s[i], blk, sizeof(s[i]));
		if (memcmp(s[i].magic, SB_MAGIC, 8))
			continue;
		any_magic = 1;
		c = s[i].crc;
		s[i].crc = 0;
		ok[i] = crc(&s[i], sizeof(s[i])) == c;
	}
	if (!ok[0] && !ok[1]) {
		rc = any_magic ? TS_ERR_CORRUPT : TS_ERR_FOREIGN;
		goto out;
	}
	i = ok[0] && (!ok[1] || s[0].gen > s[1].gen) ? 0 : 1;
	*out = s[i];
	rc = out->version >= SB_VERSION_MIN && out->version <= SB_VERSION ? 0 : TS_ERR_VERSION;
out:
	ts_free(blk);
	return rc;
}

/* Rebuild a volume's merged index from its head's chain. */
int vp_build_index(const struct layer *top, struct rmap *out)
{
	const struct layer *chain[64], **c = chain, *l;
	size_t n = 0, depth = 0, i;
	int rc = 0;

	for (l = top; l; l = l->parent)
		depth++;
	if (depth > TS_ARRAY_SIZE(chain)) {
		c = ts_malloc(depth * sizeof(*c));
		if (!c)
			return -ENOMEM;
	}
	for (l = top; l; l = l->parent)
		c[n++] = l;
	for (i = n; i-- > 0 && rc == 0;) {
		uint64_t g = 0, v;
		while (rc == 0 && rmap_next(&c[i]->map, g, &g, &v)) {
			if (v == VP_TOMB)
				rmap_del(out, g);
			else if (rmap_set(out, g, v) == RMAP_ENOMEM)
				rc = -ENOMEM;
			g++;
		}
	}
	if (c != chain)
		ts_free((void *)c);
	if (rc)
		rmap_clear(out);
	return rc;
}

static int rebuild(struct ts_vpool *p)
{
	size_t i;
	int rc;

	p->bitmap = ts_calloc(TS_DIV_ROUND_UP(p->data_blocks, 64), 8);
	if (!p->bitmap)
		return -ENOMEM;
	p->nfree = p->data_blocks;
	for (i = 0; i < p->nlayers; i++) {
		struct layer *l = p->layers[i];
		uint64_t g = 0, v;
		while (rmap_next(&l->map, g, &g, &v)) {
			if (v != VP_TOMB) {
				if (v < p->data_start || v >= p->total_blocks || vp_bit_test_set(p, v))
					return TS_ERR_CORRUPT;
				p->nfree--;
			}
			g++;
		}
		if ((l->flags & TS_LAYER_HEAD) && !vp_vol_find(p, l->vol_id))
			return TS_ERR_CORRUPT;
	}
	for (i = 0; i < p->nvols; i++) {
		struct vol *v = p->vols[i];
		if (!(v->head->flags & TS_LAYER_HEAD) || v->head->nkids)
			return TS_ERR_CORRUPT;
		rc = vp_build_index(v->head, &v->index);
		if (rc)
			return rc;
	}
	return 0;
}

static int replay_log(struct ts_vpool *p, int *applied)
{
	const uint64_t chunk = 64;
	uint8_t *io = ts_aligned_alloc(BS, chunk * BS);
	struct sbuf txn = { 0 };
	uint64_t i, base;
	int rc = 0, stop = 0;

	*applied = 0;
	if (!io)
		return -ENOMEM;
	for (base = 0; base < p->log_blocks && !stop && rc == 0; base += chunk) {
		uint64_t n = TS_MIN(chunk, p->log_blocks - base);
		rc = mio(p, TS_MEMBER_READ, 0, p->log_start + base, n, io);
		for (i = 0; i < n && !stop && rc == 0; i++) {
			uint8_t *b = io + i * BS;
			struct logh h;
			uint32_t c;
			memcpy(&h, b, sizeof(h));
			c = h.crc;
			h.crc = 0;
			memcpy(b, &h, sizeof(h));
			if (h.magic != LOG_MAGIC || h.uuid_lo != p->uuid_lo || h.gen != p->gen ||
			    h.seq != base + i || h.used > LOG_PAYLOAD || crc(b, BS) != c) {
				stop = 1;
				break;
			}
			if (vp_grow((void **)&txn.b, &txn.cap, txn.len + h.used, 1)) {
				rc = -ENOMEM;
				break;
			}
			memcpy(txn.b + txn.len, b + LOG_HDR, h.used);
			txn.len += h.used;
			if (h.flags & LOG_END) {
				rc = vp_apply_stream(p, txn.b, txn.len);
				txn.len = 0;
				*applied = 1;
			}
		}
	}
	ts_free(txn.b);
	ts_free(io);
	return rc;
}

int ts_vpool_open(struct ts_member *m, struct ts_vpool **out)
{
	struct ts_vpool *p;
	struct sb s;
	uint64_t total, nblk;
	uint8_t *ck = NULL;
	int rc = check_member(m, &total), applied = 0;

	if (rc)
		return rc;
	if (!out)
		return -EINVAL;
	p = pool_new(m);
	if (!p)
		return -ENOMEM;
	rc = read_sb(p, &s);
	if (rc)
		goto fail;
	geometry(p, s.total_blocks);
	if (s.total_blocks > total || s.slot_blocks != p->slot_blocks ||
	    s.log_blocks != p->log_blocks || s.data_start != p->data_start ||
	    s.ckpt_len > s.slot_blocks * BS) {
		rc = TS_ERR_GEOMETRY;
		goto fail;
	}
	memcpy(p->uuid, s.uuid, 16);
	memcpy(&p->uuid_lo, s.uuid, 8);
	p->gen = s.gen;
	p->last_ckpt_bytes = s.ckpt_len;
	nblk = TS_DIV_ROUND_UP(s.ckpt_len, BS);
	ck = ts_aligned_alloc(BS, TS_MAX(nblk, 1) * BS);
	if (!ck) {
		rc = -ENOMEM;
		goto fail;
	}
	p->replaying = 1;
	rc = mio(p, TS_MEMBER_READ, 0, 2 + (s.gen % 2) * p->slot_blocks, nblk, ck);
	if (rc == 0 && crc(ck, s.ckpt_len) != s.ckpt_crc)
		rc = TS_ERR_CORRUPT;
	if (rc == 0)
		rc = vp_apply_stream(p, ck, s.ckpt_len);
	if (rc == 0)
		rc = replay_log(p, &applied);
	p->replaying = 0;
	if (rc == 0)
		rc = rebuild(p);
	if (rc)
		goto fail;
	if (applied) {
		pthread_mutex_lock(&p->commit_mu);
		rc = checkpoint(p);
		pthread_mutex_unlock(&p->commit_mu);
		if (rc)
			goto fail;
	}
	ts_free(ck);
	*out = p;
	return 0;
fail:
	ts_log(TS_LOG_WARN, "volume", "open failed err=\"%s\"", ts_strerror(rc));
	ts_free(ck);
	pool_free(p);
	return rc;
}

void ts_vpool_close(struct ts_vpool *p)
{
	int rc;

	if (!p)
		return;
	rc = vp_commit(p);
	if (rc)
		ts_log(TS_LOG_WARN, "volume", "final commit failed err=\"%s\"", ts_strerror(rc));
	pool_free(p);
}

void ts_vpool_stats(struct ts_vpool *p, struct ts_vpool_stats *o)
{
	pthread_mutex_lock(&p->mu);
	memset(o, 0, sizeof(*o));
	o->data_blocks = p->data_blocks;
	o->free_blocks = p->nfree;
	o->pending_free = p->npending;
	o->volumes = p->nvols;
	o->layers = p->nlayers;
	o->generation = p->gen;
	o->meta_slot_bytes = p->slot_blocks * BS;
	o->meta_last_bytes = p->last_ckpt_bytes;
	o->log_blocks = p->log_blocks;
	o->log_used = p->log_pos;
	o->dirty_bytes = p->rlen;
	pthread_mutex_unlock(&p->mu);
}
