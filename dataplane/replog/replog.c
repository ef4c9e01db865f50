/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replica journal (see replog.h for the model and the on-disk layout).
 *
 * Index: an open-addressing hash table block -> (record seq, journal byte
 * offset of the block's copy, CRC32C of the block). Tombstoned or healed
 * blocks are deleted with backward-shift deletion, so lookups never see
 * stale tombstone markers.
 *
 * Appends are serialised by append_lock (one record in flight), which keeps
 * recovery simple: a scan stops at the first position where no journal holds
 * a valid record, and only that record can have been torn. Each record is
 * written as one member IO (header block + data) per journal, all journals
 * at once, with FUA.
 */
#include "dataplane/replog/replog.h"

#include <isa-l/crc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

#define SB_MAGIC 0x31474f4c50455254ull  /* "TREPLOG1" */
#define REC_MAGIC 0x31434552504c5254ull /* "TRLPREC1" */
#define HDR_SIZE 4096u
#define HDR_FIXED 64u
#define MAX_REC_BLOCKS ((HDR_SIZE - HDR_FIXED) / 4u)

enum { REC_DATA = 1, REC_TOMBSTONE = 2 };

struct rl_sb {
	uint64_t magic;
	uint8_t group_uuid[16];
	uint64_t epoch;
	uint32_t block_size;
	uint32_t crc; /* CRC32C of the bytes before it */
};

struct rec_hdr {
	uint64_t magic;
	uint64_t epoch;
	uint64_t seq;
	uint64_t offset;     /* volume bytes */
	uint64_t len;        /* volume bytes covered */
	uint32_t kind;
	uint32_t nblocks;    /* data blocks following (0 for a tombstone) */
	uint32_t data_bytes; /* nblocks * block size */
	uint32_t pad;
	uint32_t hcrc;       /* CRC32C of the header block with hcrc = 0 */
	uint32_t pad2;
	/* followed, at HDR_FIXED, by nblocks CRC32Cs */
};

struct ent {
	uint64_t blk;  /* volume block + 1; 0 = empty */
	uint64_t seq;
	uint64_t jpos; /* journal byte offset of this block's copy */
	uint64_t jmask; /* journals that took the record */
	uint32_t crc;
	uint16_t copies;
	uint16_t verified; /* equal to the EC copy at the last heal: kept (so
			    * writes still tombstone it) until the reclaim */
};

struct ts_replog {
	struct ts_replog_opts o;
	struct ts_member *j[TS_REPLOG_MAX_JOURNALS];
	uint32_t jnode[TS_REPLOG_MAX_JOURNALS];
	uint32_t slot_node[TS_REPLOG_MAX_SLOTS];
	uint32_t bs;
	uint64_t cap; /* journal bytes per member (smallest) */

	pthread_mutex_t append_lock; /* serialises appends, heal's reclaim */

	pthread_mutex_t lock; /* everything below */
	uint64_t epoch, seq, head;
	uint64_t jout;   /* journals marked out */
	int fenced;      /* a journal refused a write with TS_ERR_FENCED: appends stop for good */
	uint64_t jstale; /* journals whose superblock is behind the epoch */
	struct ent *tab;
	uint64_t tabsz, used; /* slots (power of two), entries */
	uint64_t nverified;   /* entries marked verified */
	uint64_t copies_bytes; /* sum over entries of bs * copies */
	/* the heal's repair in progress: its buffer, block and entry seq */
	const void *repair_buf;
	uint64_t repair_blk, repair_seq;
	struct ts_replog_stats st;
};

/* ---- helpers ---- */

static uint32_t crc32c(const void *p, size_t n)
{
	return crc32_iscsi((unsigned char *)p, (int)n, 0xffffffffu);
}

static int opts_valid(const struct ts_replog_opts *o)
{
	if (!o || !o->journals || !o->njournals || o->njournals > TS_REPLOG_MAX_JOURNALS ||
	    o->nslots > TS_REPLOG_MAX_SLOTS || (o->nslots && !o->slot_node))
		return 0;
	if (o->block_size < 512 || o->block_size > 65536 || (o->block_size & (o->block_size - 1)))
		return 0;
	for (unsigned i = 0; i < o->njournals; i++) {
		const struct ts_member_info *mi;

		if (!o->journals[i])
			return 0;
		mi = ts_member_info(o->journals[i]);
		if (mi->size % o->block_size || mi->size < 2ull * HDR_SIZE ||
		    o->block_size % mi->block_size)
			return 0;
	}
	return 1;
}

static void sb_encode(uint8_t *blk, const uint8_t uuid[16], uint64_t epoch, uint32_t bs)
{
	struct rl_sb sb = { .magic = SB_MAGIC, .epoch = epoch, .block_size = bs };

	memcpy(sb.group_uuid, uuid, 16);
	sb.crc = crc32c(&sb, offsetof(struct rl_sb, crc));
	memset(blk, 0, HDR_SIZE);
	memcpy(blk, &sb, sizeof(sb));
}

/* Write superblock \p epoch on journal \p i (FUA). */
static int sb_write(struct ts_member *m, const uint8_t uuid[16], uint64_t epoch, uint32_t bs)
{
	uint8_t *blk = ts_malloc(HDR_SIZE);
	int rc;

	if (!blk)
		return -ENOMEM;
	sb_encode(blk, uuid, epoch, bs);
	rc = ts_member_rw_sync(m, TS_MEMBER_WRITE, TS_MEMBER_FUA, 0, HDR_SIZE, blk);
	ts_free(blk);
	return rc;
}

int ts_replog_format(const struct ts_replog_opts *o)
{
	if (!opts_valid(o))
		return -EINVAL;
	for (unsigned i = 0; i < o->njournals; i++) {
		int rc = sb_write(o->journals[i], o->group_uuid, 1, o->block_size);

		if (rc) {
			ts_log(TS_LOG_ERROR, "replog", "format failed journal=%s err=\"%s\"",
			       ts_member_info(o->journals[i])->name, ts_strerror(rc));
			return rc;
		}
	}
	return 0;
}

/* ---- index ---- */

static uint64_t hash_blk(uint64_t b)
{
	b ^= b >> 33;
	b *= 0xff51afd7ed558ccdull;
	b ^= b >> 33;
	return b;
}

static struct ent *tab_find(struct ts_replog *rl, uint64_t blk)
{
	uint64_t mask = rl->tabsz - 1;

	for (uint64_t i = hash_blk(blk) & mask;; i = (i + 1) & mask) {
		if (rl->tab[i].blk == blk + 1)
			return &rl->tab[i];
		if (!rl->tab[i].blk)
			return NULL;
	}
}

static int tab_grow(struct ts_replog *rl)
{
	uint64_t nsz = rl->tabsz ? rl->tabsz * 2 : 1024;
	struct ent *old = rl->tab, *nt = ts_calloc(nsz, sizeof(*nt));
	uint64_t osz = rl->tabsz;

	if (!nt)
		return -ENOMEM;
	rl->tab = nt;
	rl->tabsz = nsz;
	for (uint64_t i = 0; i < osz; i++) {
		if (!old[i].blk)
			continue;
		for (uint64_t j = hash_blk(old[i].blk - 1) & (nsz - 1);; j = (j + 1) & (nsz - 1)) {
			if (!nt[j].blk) {
				nt[j] = old[i];
				break;
			}
		}
	}
	ts_free(old);
	return 0;
}

static void tab_del_at(struct ts_replog *rl, uint64_t i)
{
	uint64_t mask = rl->tabsz - 1;

	rl->copies_bytes -= (uint64_t)rl->bs * rl->tab[i].copies;
	rl->nverified -= rl->tab[i].verified;
	rl->tab[i].blk = 0;
	rl->used--;
	/* backward-shift: move later members of the probe run into the hole */
	for (uint64_t j = (i + 1) & mask; rl->tab[j].blk; j = (j + 1) & mask) {
		uint64_t home = hash_blk(rl->tab[j].blk - 1) & mask;

		/* can entry j move to hole i? only if its home is not in (i, j] */
		if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
			rl->tab[i] = rl->tab[j];
			rl->tab[j].blk = 0;
			i = j;
		}
	}
}

static void tab_del(struct ts_replog *rl, uint64_t blk)
{
	struct ent *e = tab_find(rl, blk);

	if (e)
		tab_del_at(rl, (uint64_t)(e - rl->tab));
}

/* Insert or replace (newer seq wins). */
static int tab_put(struct ts_replog *rl, const struct ent *in)
{
	struct ent *e;
	uint64_t mask;

	if ((rl->used + 1) * 4 > rl->tabsz * 3) {
		int rc = tab_grow(rl);

		if (rc)
			return rc;
	}
	e = tab_find(rl, in->blk - 1);
	if (e) {
		if (e->seq > in->seq)
			return 0;
		rl->copies_bytes -= (uint64_t)rl->bs * e->copies;
		rl->nverified -= e->verified;
		*e = *in;
		rl->nverified += e->verified;
		rl->copies_bytes += (uint64_t)rl->bs * e->copies;
		return 0;
	}
	mask = rl->tabsz - 1;
	for (uint64_t i = hash_blk(in->blk - 1) & mask;; i = (i + 1) & mask) {
		if (!rl->tab[i].blk) {
			rl->tab[i] = *in;
			rl->used++;
			rl->nverified += in->verified;
			rl->copies_bytes += (uint64_t)rl->bs * in->copies;
			return 0;
		}
	}
}

/* ---- records ---- */

static void hdr_encode(struct ts_replog *rl, uint8_t *blk, uint64_t seq, uint32_t kind,
		       uint64_t off, uint64_t len, const uint8_t *data, uint32_t nblocks)
{
	struct rec_hdr h = { .magic = REC_MAGIC, .epoch = rl->epoch, .seq = seq, .offset = off,
			     .len = len, .kind = kind, .nblocks = nblocks,
			     .data_bytes = nblocks * rl->bs };
	uint32_t *crcs = (uint32_t *)(void *)(blk + HDR_FIXED);

	memset(blk, 0, HDR_SIZE);
	for (uint32_t b = 0; b < nblocks; b++)
		crcs[b] = crc32c(data + (uint64_t)b * rl->bs, rl->bs);
	memcpy(blk, &h, sizeof(h));
	h.hcrc = crc32c(blk, HDR_SIZE);
	memcpy(blk, &h, sizeof(h));
}

/* 0 and *h when \p blk holds a valid header of \p epoch. */
static int hdr_decode(const struct ts_replog *rl, const uint8_t *blk, uint64_t epoch,
		      struct rec_hdr *h)
{
	uint8_t tmp[HDR_SIZE];
	uint32_t want;

	memcpy(h, blk, sizeof(*h));
	if (h->magic != REC_MAGIC || h->epoch != epoch)
		return -EINVAL;
	want = h->hcrc;
	memcpy(tmp, blk, HDR_SIZE);
	((struct rec_hdr *)(void *)tmp)->hcrc = 0;
	if (crc32c(tmp, HDR_SIZE) != want)
		return -EINVAL;
	if ((h->kind != REC_DATA && h->kind != REC_TOMBSTONE) || h->nblocks > MAX_REC_BLOCKS ||
	    h->data_bytes != h->nblocks * rl->bs || h->len % rl->bs || !h->len ||
	    (h->kind == REC_DATA && h->len != h->data_bytes) ||
	    (h->kind == REC_TOMBSTONE && h->nblocks))
		return -EINVAL;
	return 0;
}

/*
 * Write \p rec (header + data, \p bytes) at \p pos on every journal in
 * \p targets at once, FUA. Returns the mask of journals that took it.
 */
static uint64_t write_everywhere(struct ts_replog *rl, uint64_t targets, uint64_t pos, void *rec,
				 uint64_t bytes)
{
	struct ts_member_fanout_io w[TS_REPLOG_MAX_JOURNALS];
	struct ts_member_fanout f;
	uint64_t ok = 0;

	ts_member_fanout_init(&f);
	for (unsigned i = 0; i < rl->o.njournals; i++) {
		if (!(targets & (1ull << i)))
			continue;
		w[i].io = (struct ts_member_io){ .op = TS_MEMBER_WRITE, .flags = TS_MEMBER_FUA,
						 .offset = pos, .len = bytes, .buf = rec };
		if (ts_member_fanout_add(&f, &w[i], rl->j[i]))
			w[i].status = -EIO;
	}
	ts_member_fanout_wait(&f);
	for (unsigned i = 0; i < rl->o.njournals; i++) {
		if (!(targets & (1ull << i)))
			continue;
		if (w[i].status == 0) {
			ok |= 1ull << i;
		} else if (w[i].status == TS_ERR_FENCED) {
			pthread_mutex_lock(&rl->lock);
			if (!rl->fenced)
				ts_log(TS_LOG_WARN, "replog", "journal refused a write: fenced journal=%s",
				       ts_member_info(rl->j[i])->name);
			rl->fenced = 1;
			pthread_mutex_unlock(&rl->lock);
		} else {
			ts_log(TS_LOG_WARN, "replog", "journal write failed journal=%s err=\"%s\"",
			       ts_member_info(rl->j[i])->name, ts_strerror(w[i].status));
		}
	}
	return ok;
}

/* Journals an append may go to: not marked out, not on a node missing slots. */
static uint64_t append_targets(struct ts_replog *rl, uint64_t missing)
{
	uint64_t t = 0;

	pthread_mutex_lock(&rl->lock);
	for (unsigned i = 0; i < rl->o.njournals; i++) {
		int down = 0;

		for (unsigned s = 0; s < rl->o.nslots && !down; s++)
			down = (missing >> s & 1) && rl->slot_node[s] == rl->jnode[i];
		if (!down && !((rl->jout | rl->jstale) & (1ull << i)))
			t |= 1ull << i;
	}
	pthread_mutex_unlock(&rl->lock);
	return t;
}

/*
 * Append one record (append_lock held). For DATA, \p data holds len bytes.
 * Returns 0 (record written on \p *copies journals, indexed), -ENOSPC, or
 * -EIO when no journal took it.
 */
static int append_one(struct ts_replog *rl, uint64_t targets, uint32_t kind, uint64_t off,
		      uint64_t len, const uint8_t *data, unsigned *copies)
{
	uint32_t nblocks = kind == REC_DATA ? (uint32_t)(len / rl->bs) : 0;
	uint64_t bytes = HDR_SIZE + (uint64_t)nblocks * rl->bs, pos, seq, ok;
	uint8_t *rec;
	int rc = 0;

	pthread_mutex_lock(&rl->lock);
	pos = rl->head;
	seq = rl->seq + 1;
	rc = rl->fenced ? TS_ERR_FENCED : 0;
	pthread_mutex_unlock(&rl->lock);
	if (rc)
		return rc;
	if (pos + bytes > rl->cap)
		return -ENOSPC;
	rec = ts_malloc(bytes);
	if (!rec)
		return -ENOMEM;
	hdr_encode(rl, rec, seq, kind, off, len, data, nblocks);
	if (nblocks)
		memcpy(rec + HDR_SIZE, data, (size_t)nblocks * rl->bs);
	ok = write_everywhere(rl, targets, pos, rec, bytes);
	*copies = (unsigned)__builtin_popcountll(ok);
	pthread_mutex_lock(&rl->lock);
	if (rl->fenced) { /* another engine owns the group: this record counts for nothing */
		pthread_mutex_unlock(&rl->lock);
		ts_free(rec);
		return TS_ERR_FENCED;
	}
	rl->jout |= targets & ~ok;
	if (!ok) {
		rc = -EIO;
	} else {
		const uint32_t *crcs = (const uint32_t *)(const void *)(rec + HDR_FIXED);

		/* the position is consumed even if a later scan finds no copy */
		rl->head = pos + bytes;
		rl->seq = seq;
		rl->st.records++;
		for (uint64_t b = 0; b < len / rl->bs && !rc; b++) {
			uint64_t blk = off / rl->bs + b;

			if (kind == REC_TOMBSTONE) {
				tab_del(rl, blk);
			} else {
				struct ent e = { .blk = blk + 1, .seq = seq,
						 .jpos = pos + HDR_SIZE + b * rl->bs,
						 .crc = crcs[b], .copies = (uint16_t)*copies,
						 .jmask = ok };

				rc = tab_put(rl, &e);
			}
		}
		if (kind == REC_DATA)
			rl->st.last_copies = *copies;
	}
	pthread_mutex_unlock(&rl->lock);
	ts_free(rec);
	return rc;
}

/* Does [off, off+len) overlap a covered block? */
static int overlaps(struct ts_replog *rl, uint64_t off, uint64_t len)
{
	int hit = 0;

	pthread_mutex_lock(&rl->lock);
	if (rl->used)
		for (uint64_t b = off / rl->bs; b < (off + len) / rl->bs && !hit; b++)
			hit = tab_find(rl, b) != NULL;
	pthread_mutex_unlock(&rl->lock);
	return hit;
}

int ts_replog_write_hook(void *ctx, uint64_t off, uint64_t len, const void *buf, uint64_t missing)
{
	struct ts_replog *rl = ctx;
	uint64_t targets;
	unsigned copies = 0;
	int rc = 0;

	if (!rl || off % rl->bs || len % rl->bs || !len)
		return -EINVAL;
	pthread_mutex_lock(&rl->lock);
	if (buf && buf == rl->repair_buf) {
		/* the heal writing a replica back, now under the group's stripe
		 * lock: only if no newer write or tombstone replaced the entry */
		struct ent *e = tab_find(rl, rl->repair_blk);
		int ok = !missing && off == rl->repair_blk * rl->bs && len == rl->bs && e &&
			 e->seq == rl->repair_seq;

		pthread_mutex_unlock(&rl->lock);
		return ok ? 0 : -EAGAIN;
	}
	pthread_mutex_unlock(&rl->lock);
	if (!missing && !overlaps(rl, off, len))
		return 0; /* the common, healthy case: no journal IO */
	pthread_mutex_lock(&rl->append_lock);
	targets = append_targets(rl, missing);
	if (!missing) {
		/* every member live: the EC copy is about to be the newest; no
		 * replica of these blocks may outlive a restart */
		rc = targets ? append_one(rl, targets, REC_TOMBSTONE, off, len, NULL, &copies) : -EIO;
		if (rc && rc != TS_ERR_FENCED) {
			ts_log(TS_LOG_ERROR, "replog", "tombstone failed off=%llu len=%llu err=\"%s\"",
			       (unsigned long long)off, (unsigned long long)len, ts_strerror(rc));
			/* no copy of the tombstone: drop the index entries anyway so
			 * reads never prefer them; a restart could resurrect them, but
			 * the heal compares against EC before trusting any replica */
			pthread_mutex_lock(&rl->lock);
			for (uint64_t b = off / rl->bs; b < (off + len) / rl->bs; b++)
				tab_del(rl, b);
			pthread_mutex_unlock(&rl->lock);
			rc = 0;
		}
		pthread_mutex_unlock(&rl->append_lock);
		return rc;
	}
	for (uint64_t p = off; p < off + len && rc == 0;) {
		uint64_t n = TS_MIN(off + len - p, (uint64_t)TS_MIN(TS_REPLOG_MAX_RECORD,
								   MAX_REC_BLOCKS * rl->bs));

		rc = targets ? append_one(rl, targets, REC_DATA, p, n,
					  (const uint8_t *)buf + (p - off), &copies)
			     : -EIO;
		if (rc == TS_ERR_FENCED)
			break; /* the group write fails: a stale owner replicates nothing */
		if (rc) {
			pthread_mutex_lock(&rl->lock);
			if (rl->st.unreplicated_bytes == 0)
				ts_log(TS_LOG_WARN, "replog",
				       "degraded write not replicated off=%llu err=\"%s\"",
				       (unsigned long long)p, ts_strerror(rc));
			rl->st.unreplicated_bytes += off + len - p;
			/* blocks of this write already covered hold older data */
			for (uint64_t b = p / rl->bs; b < (off + len) / rl->bs; b++)
				tab_del(rl, b);
			pthread_mutex_unlock(&rl->lock);
			rc = rc == -ENOMEM ? rc : 0;
			break;
		}
		p += n;
		if (copies < 2 && __builtin_popcountll(targets) >= 2)
			targets = append_targets(rl, missing);
	}
	pthread_mutex_unlock(&rl->append_lock);
	return rc;
}

/* ---- read ---- */

/* Journal \p i (replaceable at run time: read the pointer under the lock). */
static struct ts_member *jget(struct ts_replog *rl, unsigned i)
{
	struct ts_member *m;

	pthread_mutex_lock(&rl->lock);
	m = rl->j[i];
	pthread_mutex_unlock(&rl->lock);
	return m;
}

int ts_replog_read(struct ts_replog *rl, uint64_t off, uint64_t len, void *buf)
{
	uint8_t *out = buf;

	if (!rl || !buf || off % rl->bs || len % rl->bs)
		return -EINVAL;
	for (uint64_t b = 0; b < len / rl->bs; b++) {
		struct ent e;
		struct ent *p;
		int got = 0;

		pthread_mutex_lock(&rl->lock);
		p = tab_find(rl, off / rl->bs + b);
		if (p)
			e = *p;
		pthread_mutex_unlock(&rl->lock);
		if (!p)
			return -ENOENT;
		/* the journals that took the record first, then the others */
		for (unsigned pass = 0; pass < 2 && !got; pass++)
			for (unsigned i = 0; i < rl->o.njournals && !got; i++) {
				uint8_t *dst = out + b * rl->bs;
				int holds = (int)(e.jmask >> i & 1);

				if (pass == 0 ? !holds : holds)
					continue;
				got = ts_member_rw_sync(jget(rl, i), TS_MEMBER_READ, 0, e.jpos, rl->bs,
							dst) == 0 &&
				      crc32c(dst, rl->bs) == e.crc;
			}
		if (!got)
			return -EIO;
	}
	return 0;
}

/* ---- open / scan ---- */

/* Read the header at \p pos from any journal; 0 and hdr + the copy mask. */
static int scan_at(struct ts_replog *rl, uint64_t pos, uint8_t *blk, struct rec_hdr *h,
		   uint64_t *have)
{
	int found = 0;

	*have = 0;
	for (unsigned i = 0; i < rl->o.njournals; i++) {
		struct rec_hdr hh;

		if (rl->jout & (1ull << i))
			continue;
		if (ts_member_rw_sync(rl->j[i], TS_MEMBER_READ, 0, pos, HDR_SIZE, blk))
			continue;
		if (hdr_decode(rl, blk, rl->epoch, &hh) || hh.seq != rl->seq + 1)
			continue;
		if (found && (hh.offset != h->offset || hh.len != h->len || hh.kind != h->kind))
			continue;
		if (!found)
			*h = hh;
		found = 1;
		*have |= 1ull << i;
	}
	return found ? 0 : -ENOENT;
}

static int scan(struct ts_replog *rl)
{
	uint8_t *blk = ts_malloc(HDR_SIZE);
	int rc = 0;

	if (!blk)
		return -ENOMEM;
	rl->head = HDR_SIZE;
	for (;;) {
		struct rec_hdr h = { 0 };
		uint64_t have, bytes;

		if (rl->head + HDR_SIZE > rl->cap || scan_at(rl, rl->head, blk, &h, &have))
			break;
		bytes = HDR_SIZE + (uint64_t)h.nblocks * rl->bs;
		if (rl->head + bytes > rl->cap)
			break;
		/* re-read a copy's header for the CRCs (blk holds the last journal read) */
		for (unsigned i = 0; i < rl->o.njournals; i++)
			if (have & (1ull << i)) {
				rc = ts_member_rw_sync(rl->j[i], TS_MEMBER_READ, 0, rl->head, HDR_SIZE,
						       blk);
				break;
			}
		if (rc)
			break;
		for (uint64_t b = 0; b < h.len / rl->bs && !rc; b++) {
			uint64_t vb = h.offset / rl->bs + b;

			if (h.kind == REC_TOMBSTONE) {
				tab_del(rl, vb);
			} else {
				const uint32_t *crcs = (const uint32_t *)(const void *)(blk + HDR_FIXED);
				struct ent e = { .blk = vb + 1, .seq = h.seq,
						 .jpos = rl->head + HDR_SIZE + b * rl->bs,
						 .crc = crcs[b],
						 .copies = (uint16_t)__builtin_popcountll(have),
						 .jmask = have };

				rc = tab_put(rl, &e);
			}
		}
		rl->seq = h.seq;
		rl->st.records++;
		rl->head += bytes;
	}
	ts_free(blk);
	return rc;
}

int ts_replog_open(const struct ts_replog_opts *o, struct ts_replog **out)
{
	uint64_t sb_epoch[TS_REPLOG_MAX_JOURNALS] = { 0 };
	struct ts_replog *rl;
	uint8_t *blk;
	int rc = 0, any = 0;

	if (!opts_valid(o) || !out)
		return -EINVAL;
	rl = ts_calloc(1, sizeof(*rl));
	blk = ts_malloc(HDR_SIZE);
	if (!rl || !blk) {
		ts_free(rl);
		ts_free(blk);
		return -ENOMEM;
	}
	rl->o = *o;
	rl->o.journals = NULL;
	rl->o.slot_node = NULL;
	rl->bs = o->block_size;
	rl->cap = UINT64_MAX;
	pthread_mutex_init(&rl->lock, NULL);
	pthread_mutex_init(&rl->append_lock, NULL);
	for (unsigned i = 0; i < o->njournals; i++) {
		const struct ts_member_info *mi = ts_member_info(o->journals[i]);

		rl->j[i] = o->journals[i];
		rl->jnode[i] = mi->node_id;
		rl->cap = TS_MIN(rl->cap, mi->size);
	}
	for (unsigned s = 0; s < o->nslots; s++)
		rl->slot_node[s] = o->slot_node[s];
	for (unsigned i = 0; i < o->njournals && rc == 0; i++) {
		struct rl_sb sb;

		if (ts_member_rw_sync(rl->j[i], TS_MEMBER_READ, 0, 0, HDR_SIZE, blk)) {
			rl->jout |= 1ull << i;
			ts_log(TS_LOG_WARN, "replog", "journal unreadable journal=%s",
			       ts_member_info(rl->j[i])->name);
			continue;
		}
		memcpy(&sb, blk, sizeof(sb));
		if (sb.magic != SB_MAGIC || sb.crc != crc32c(&sb, offsetof(struct rl_sb, crc)) ||
		    sb.block_size != rl->bs) {
			rl->jout |= 1ull << i;
			ts_log(TS_LOG_WARN, "replog", "journal superblock invalid journal=%s",
			       ts_member_info(rl->j[i])->name);
			continue;
		}
		if (memcmp(sb.group_uuid, o->group_uuid, 16)) {
			rc = TS_ERR_FOREIGN;
			break;
		}
		any = 1;
		sb_epoch[i] = sb.epoch;
		rl->epoch = TS_MAX(rl->epoch, sb.epoch);
	}
	for (unsigned i = 0; i < o->njournals; i++)
		if (!(rl->jout & (1ull << i)) && sb_epoch[i] < rl->epoch)
			rl->jstale |= 1ull << i;
	ts_free(blk);
	if (rc == 0 && !any)
		rc = TS_ERR_CORRUPT;
	if (rc == 0)
		rc = tab_grow(rl);
	if (rc == 0)
		rc = scan(rl);
	if (rc) {
		ts_replog_close(rl);
		return rc;
	}
	ts_log(TS_LOG_INFO, "replog", "journal open epoch=%llu records=%llu covered_blocks=%llu",
	       (unsigned long long)rl->epoch, (unsigned long long)rl->st.records,
	       (unsigned long long)rl->used);
	*out = rl;
	return 0;
}

void ts_replog_close(struct ts_replog *rl)
{
	if (!rl)
		return;
	pthread_mutex_destroy(&rl->lock);
	pthread_mutex_destroy(&rl->append_lock);
	ts_free(rl->tab);
	ts_free(rl);
}

int ts_replog_replace_journal(struct ts_replog *rl, unsigned i, struct ts_member *m)
{
	const struct ts_member_info *mi;
	uint64_t epoch;
	int rc;

	if (!rl || !m || i >= rl->o.njournals)
		return -EINVAL;
	mi = ts_member_info(m);
	if (mi->size < rl->cap || mi->size % rl->bs || rl->bs % mi->block_size)
		return -EINVAL;
	pthread_mutex_lock(&rl->append_lock);
	pthread_mutex_lock(&rl->lock);
	epoch = rl->epoch;
	pthread_mutex_unlock(&rl->lock);
	rc = sb_write(m, rl->o.group_uuid, epoch, rl->bs);
	if (rc == 0) {
		pthread_mutex_lock(&rl->lock);
		rl->j[i] = m;
		rl->jnode[i] = mi->node_id;
		rl->jout &= ~(1ull << i);
		rl->jstale &= ~(1ull << i);
		pthread_mutex_unlock(&rl->lock);
	}
	pthread_mutex_unlock(&rl->append_lock);
	return rc;
}

void ts_replog_retry_journals(struct ts_replog *rl)
{
	pthread_mutex_lock(&rl->lock);
	rl->jout = 0;
	pthread_mutex_unlock(&rl->lock);
}

/* ---- heal ---- */

static int cmp_ent(const void *a, const void *b)
{
	const struct ent *x = a, *y = b;

	return x->blk < y->blk ? -1 : x->blk > y->blk;
}

/* Reclaim: new epoch on every journal, empty index. append_lock held. */
static int reclaim(struct ts_replog *rl)
{
	uint64_t epoch;

	pthread_mutex_lock(&rl->lock);
	epoch = rl->epoch + 1;
	pthread_mutex_unlock(&rl->lock);
	uint64_t ok = 0;
	int rc = 0;

	for (unsigned i = 0; i < rl->o.njournals; i++) {
		rc = sb_write(rl->j[i], rl->o.group_uuid, epoch, rl->bs);
		if (rc == 0)
			ok |= 1ull << i;
		else
			ts_log(TS_LOG_WARN, "replog", "reclaim: journal left stale journal=%s err=\"%s\"",
			       ts_member_info(rl->j[i])->name, ts_strerror(rc));
	}
	if (!ok)
		return rc; /* still the old epoch everywhere: keep it all */
	/* The new epoch is on at least one journal, so the next open takes it
	 * and ignores every older record. Journals that missed it are stale:
	 * no appends (their superblock would hide the new records from a scan
	 * that reads only them) until heal_stale() rewrites them. */
	pthread_mutex_lock(&rl->lock);
	rl->jstale |= ((1ull << rl->o.njournals) - 1) & ~ok;
	rl->epoch = epoch;
	rl->seq = 0;
	rl->head = HDR_SIZE;
	memset(rl->tab, 0, rl->tabsz * sizeof(*rl->tab));
	rl->used = 0;
	rl->nverified = 0;
	rl->copies_bytes = 0;
	rl->st.records = 0;
	rl->st.unreplicated_bytes = 0;
	pthread_mutex_unlock(&rl->lock);
	return 0;
}

/* Bring stale journals to the current epoch (append_lock held). */
static void heal_stale(struct ts_replog *rl)
{
	uint64_t stale, epoch;

	pthread_mutex_lock(&rl->lock);
	stale = rl->jstale;
	epoch = rl->epoch;
	pthread_mutex_unlock(&rl->lock);
	for (unsigned i = 0; i < rl->o.njournals; i++) {
		if (!(stale & (1ull << i)) || sb_write(rl->j[i], rl->o.group_uuid, epoch, rl->bs))
			continue;
		pthread_mutex_lock(&rl->lock);
		rl->jstale &= ~(1ull << i);
		pthread_mutex_unlock(&rl->lock);
	}
}

/* Verify blocks snap[i..i+cnt) (consecutive in the volume and the journal). */
static int heal_run(struct ts_replog *rl, const struct ent *snap, uint64_t cnt, uint8_t *ec,
		    uint8_t *rep, const struct ts_replog_ec *x, uint64_t *mism)
{
	uint64_t vb0 = snap[0].blk - 1, bytes = cnt * rl->bs;
	uint64_t readable = 0;
	int rc;

	rc = x->read(x->ctx, vb0 * rl->bs, bytes, ec);
	if (rc)
		return rc;
	/* one read of the run from the first journal that answers; blocks whose
	 * CRC fails there are retried on the other journals one by one */
	for (unsigned j = 0; j < rl->o.njournals; j++)
		if ((snap[0].jmask >> j & 1) &&
		    ts_member_rw_sync(jget(rl, j), TS_MEMBER_READ, 0, snap[0].jpos, bytes, rep) == 0) {
			readable = 1;
			break;
		}
	for (uint64_t b = 0; b < cnt; b++) {
		uint8_t *r = rep + b * rl->bs;
		int got = readable && crc32c(r, rl->bs) == snap[b].crc;
		struct ent *e;

		for (unsigned j = 0; j < rl->o.njournals && !got; j++)
			got = ts_member_rw_sync(jget(rl, j), TS_MEMBER_READ, 0, snap[b].jpos, rl->bs, r) ==
				      0 &&
			      crc32c(r, rl->bs) == snap[b].crc;
		pthread_mutex_lock(&rl->lock);
		e = tab_find(rl, vb0 + b);
		/* judge only what is still the entry we verified: a newer record
		 * or a tombstone in between is not ours to judge */
		if (e && e->seq == snap[b].seq && got && memcmp(ec + b * rl->bs, r, rl->bs) &&
		    x->write) {
			/* differs: write the replica back through the group; the
			 * hook lets it through only if the entry is still this one */
			int wr;

			rl->repair_buf = r;
			rl->repair_blk = vb0 + b;
			rl->repair_seq = snap[b].seq;
			pthread_mutex_unlock(&rl->lock);
			wr = x->write(x->ctx, (vb0 + b) * rl->bs, rl->bs, r);
			pthread_mutex_lock(&rl->lock);
			rl->repair_buf = NULL;
			e = tab_find(rl, vb0 + b);
			if (wr == 0) {
				rl->st.heal_mismatches++;
				ts_log(TS_LOG_WARN, "replog",
				       "heal: EC copy differed, replica written back block=%llu",
				       (unsigned long long)(vb0 + b));
				memcpy(ec + b * rl->bs, r, rl->bs); /* now equal */
			} else if (wr != -EAGAIN) {
				(*mism)++; /* retried at the next heal */
			}
		}
		if (e && e->seq == snap[b].seq) {
			if (!got || memcmp(ec + b * rl->bs, r, rl->bs) == 0) {
				/* equal, or no intact replica left: the EC copy stands */
				if (!e->verified)
					rl->nverified++;
				e->verified = 1;
			} else if (!x->write) {
				(*mism)++;
				rl->st.heal_mismatches++;
			}
		}
		rl->st.heal_done_bytes += rl->bs;
		pthread_mutex_unlock(&rl->lock);
	}
	return 0;
}

#define HEAL_RUN_BLOCKS 256u

int ts_replog_heal(struct ts_replog *rl, const struct ts_replog_ec *x)
{
	struct ent *snap = NULL;
	uint64_t n = 0, t0 = ts_now_ns(), mism = 0;
	uint8_t *ec = NULL, *rep = NULL;
	int rc = 0, empty;

	if (!rl || !x || !x->read)
		return -EINVAL;
	pthread_mutex_lock(&rl->append_lock);
	heal_stale(rl);
	pthread_mutex_unlock(&rl->append_lock);
	pthread_mutex_lock(&rl->lock);
	if (!rl->used && rl->head == HDR_SIZE) {
		pthread_mutex_unlock(&rl->lock);
		return 0; /* nothing to heal */
	}
	if (rl->used > rl->nverified) {
		snap = ts_malloc((rl->used - rl->nverified) * sizeof(*snap));
		if (!snap) {
			pthread_mutex_unlock(&rl->lock);
			return -ENOMEM;
		}
		for (uint64_t i = 0; i < rl->tabsz; i++)
			if (rl->tab[i].blk && !rl->tab[i].verified)
				snap[n++] = rl->tab[i];
	}
	rl->st.healing = 1;
	rl->st.heal_total_bytes = n * rl->bs;
	rl->st.heal_done_bytes = 0;
	pthread_mutex_unlock(&rl->lock);
	if (n) {
		qsort(snap, n, sizeof(*snap), cmp_ent);
		ec = ts_malloc((size_t)HEAL_RUN_BLOCKS * rl->bs);
		rep = ts_malloc((size_t)HEAL_RUN_BLOCKS * rl->bs);
		if (!ec || !rep)
			rc = -ENOMEM;
	}
	for (uint64_t i = 0; i < n && rc == 0;) {
		uint64_t cnt = 1;

		while (i + cnt < n && cnt < HEAL_RUN_BLOCKS &&
		       snap[i + cnt].blk == snap[i + cnt - 1].blk + 1 &&
		       snap[i + cnt].jpos == snap[i + cnt - 1].jpos + rl->bs)
			cnt++;
		rc = heal_run(rl, snap + i, cnt, ec, rep, x, &mism);
		i += cnt;
	}
	ts_free(snap);
	ts_free(ec);
	ts_free(rep);
	if (rc == 0 && mism) {
		ts_log(TS_LOG_ERROR, "replog", "heal: blocks whose EC copy differs, not repaired blocks=%llu",
		       (unsigned long long)mism);
		rc = TS_ERR_CORRUPT;
	}
	if (rc == 0) {
		pthread_mutex_lock(&rl->append_lock);
		pthread_mutex_lock(&rl->lock);
		empty = rl->used == rl->nverified; /* everything verified */
		pthread_mutex_unlock(&rl->lock);
		if (empty)
			rc = reclaim(rl);
		pthread_mutex_unlock(&rl->append_lock);
		if (rc == 0 && empty) {
			uint64_t ns = ts_now_ns() - t0;

			pthread_mutex_lock(&rl->lock);
			rl->st.heals++;
			rl->st.heal_ns = ns;
			pthread_mutex_unlock(&rl->lock);
			ts_log(TS_LOG_INFO, "replog", "heal done verified_bytes=%llu ms=%llu",
			       (unsigned long long)(n * rl->bs), (unsigned long long)(ns / 1000000));
		}
	}
	pthread_mutex_lock(&rl->lock);
	rl->st.healing = 0;
	pthread_mutex_unlock(&rl->lock);
	return rc;
}

void ts_replog_stats(struct ts_replog *rl, struct ts_replog_stats *st)
{
	pthread_mutex_lock(&rl->lock);
	*st = rl->st;
	st->epoch = rl->epoch;
	st->covered_bytes = rl->used * rl->bs;
	st->replicated_bytes = rl->copies_bytes;
	st->used_bytes = rl->head;
	st->capacity_bytes = rl->cap;
	st->journals_out = rl->jout;
	st->journals_stale = rl->jstale;
	pthread_mutex_unlock(&rl->lock);
}
