/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Array group: Reed-Solomon k+m over members reached through the async
 * member interface.
 *
 * Workload. Block IO from the main cache: small random reads and writes,
 * large sequential writes, flushes. Reads must stay cheap while healthy: a
 * read touches only the members holding its bytes (never whole stripes).
 * Writes covering whole stripes encode; smaller writes update parity from
 * old^new deltas (read-modify-write with ec_encode_data_update).
 *
 * Structure. Requests are queued to a few worker threads; a worker runs one
 * request at a time, issuing its member IOs in parallel and waiting for them
 * (member completions only signal). Overlapping requests are ordered by a
 * stripe range lock (shared for reads, exclusive for writes and resync):
 * degraded reads decode from several chunks of a stripe and must not see a
 * half-applied parity update.
 *
 * Crash consistency: a write-intent bitmap (one bit per region of
 * region_stripes stripes) is set durably on the live members before any
 * stripe in the region is written; it is cleared lazily by flushes, for
 * regions with no write in flight and none completed after the flush began.
 * At assembly with all members present, dirty regions get their parity
 * recomputed from data. Degraded write hole: before writing a stripe whose
 * data roles are partly missing, the worker durably records the missing
 * roles' post-write values in its rescue slot on the live members, and
 * invalidates the record once the stripe write is done. A degraded assembly
 * repairs dirty stripes from data (no data role missing) or data + record;
 * whatever is left is marked untrusted: a read that would decode a missing
 * fragment there fails with -EIO rather than return bytes rebuilt from
 * parity that may disagree with data; when the missing members come back,
 * parity is recomputed from data. docs/ec-layout.md discusses the choice.
 *
 * Degraded mode and resync: writes that skip a slot first set that slot's
 * out-of-date bit for the region, durably on the live members. A returning
 * member has only those regions rebuilt (decode) and rejoins under an
 * exclusive lock of the whole volume; a replacement starts with every bit
 * set. Member IO errors fail the member (generation bump on the others) and
 * the request carries on degraded.
 *
 * THREAD SAFETY: see agrp.h. range_lock/range_cond guard the in-flight range
 * list; state_lock guards slot states, generation and superblock writes;
 * bm_lock guards bitmaps, region counters and bitmap persistence;
 * queue_lock guards the request queue. Order: range -> state -> bm -> queue.
 * Worker i owns rescue slot i on every member (no lock); rescue_clear() runs
 * only under an exclusive lock of the whole volume or before workers start.
 * Slot member pointers change only in add_member/replace for a slot that is
 * not live; IO paths dereference them only for slots they saw live.
 */
#include "dataplane/agrp/agrp.h"

#include <errno.h>
#include <isa-l/crc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

#define MAXN TS_AGRP_MAX_MEMBERS
#define MAX_THREADS AGRP_RESCUE_SLOTS
#define RESCUE_MAGIC 0x4555435345525354ull /* "TSRESCUE" */

enum req_op { REQ_READ, REQ_WRITE, REQ_FLUSH };

struct agrp_req {
	enum req_op op;
	uint64_t off, len;
	void *buf;
	ts_agrp_cb cb;
	void *arg;
	struct agrp_req *next;
};

struct range {
	uint64_t s0, s1; /* inclusive stripes */
	int excl;
	struct range *next;
};

struct slot {
	struct ts_member *m; /* attached member or NULL */
	int live;
	uint8_t uuid[16];
	uint32_t node_id;
};

/* Per-thread scratch: (2n+1) chunks. */
struct scratch {
	uint8_t *fetch; /* n chunks: decode temporaries */
	uint8_t *work;  /* n chunks: old data / parity by role */
	uint8_t *delta; /* 1 chunk */
	uint8_t *rescue; /* header block + m chunks */
	int wid;         /* worker index = rescue slot; -1 outside workers */
};

struct worker {
	struct ts_agrp *g;
	pthread_t tid;
	struct scratch sc;
};

struct ts_agrp {
	struct ts_ec *ec;
	unsigned k, m, n;
	uint32_t chunk, bs;
	uint64_t nstripes, data_off, nregions;
	uint32_t region_stripes, bitmap_bytes;
	uint8_t uuid[16];
	struct ts_agrp_opts opts;

	pthread_mutex_t range_lock;
	pthread_cond_t range_cond;
	struct range *ranges;

	pthread_mutex_t state_lock;
	struct slot slot[MAXN];
	uint64_t generation, sb_seq;

	pthread_mutex_t bm_lock;
	uint8_t *bm[MAXN + 1];  /* [0] intent, [1+i] out-of-date for slot i */
	uint8_t *untrusted;     /* in memory only: derived from intent at degraded assembly */
	uint32_t *inflight;     /* writes in flight per region */
	uint64_t *last_done;    /* done_seq of the last write completed per region */
	uint64_t done_seq;
	_Atomic uint64_t rescue_seq;

	pthread_mutex_t queue_lock;
	pthread_cond_t queue_cond;
	struct agrp_req *qhead, *qtail;
	int stop;
	unsigned nworkers;
	struct worker workers[MAX_THREADS];
};

/* ------------------------------------------------------------------ */
/* member IO batches */

struct batch {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int pending;
};

struct mio {
	struct ts_member_io io;
	struct batch *b;
	int status;
	unsigned slot;
};

static void batch_init(struct batch *b)
{
	pthread_mutex_init(&b->lock, NULL);
	pthread_cond_init(&b->cond, NULL);
	b->pending = 0;
}

static void batch_cb(struct ts_member_io *io, int status)
{
	struct mio *x = io->cb_arg;
	struct batch *b = x->b;

	x->status = status;
	pthread_mutex_lock(&b->lock);
	if (--b->pending == 0)
		pthread_cond_broadcast(&b->cond);
	pthread_mutex_unlock(&b->lock);
}

static void batch_add(struct batch *b, struct mio *x, struct ts_member *m, unsigned slot,
		      enum ts_member_op op, uint32_t flags, uint64_t off, uint64_t len, void *buf)
{
	int rc;

	memset(x, 0, sizeof(*x));
	x->b = b;
	x->slot = slot;
	x->io.op = op;
	x->io.flags = flags;
	x->io.offset = off;
	x->io.len = len;
	x->io.buf = buf;
	x->io.cb = batch_cb;
	x->io.cb_arg = x;
	pthread_mutex_lock(&b->lock);
	b->pending++;
	pthread_mutex_unlock(&b->lock);
	rc = m ? ts_member_submit(m, &x->io) : TS_ERR_MEMBER_FAILED;
	if (rc < 0) {
		x->status = rc;
		pthread_mutex_lock(&b->lock);
		b->pending--;
		pthread_mutex_unlock(&b->lock);
	}
}

static void batch_wait(struct batch *b)
{
	pthread_mutex_lock(&b->lock);
	while (b->pending)
		pthread_cond_wait(&b->cond, &b->lock);
	pthread_mutex_unlock(&b->lock);
	pthread_mutex_destroy(&b->lock);
	pthread_cond_destroy(&b->cond);
}

/* ------------------------------------------------------------------ */
/* geometry */

static unsigned slot_of(const struct ts_agrp *g, uint64_t s, unsigned role)
{
	return (unsigned)((role + s) % g->n);
}

static uint64_t region_of(const struct ts_agrp *g, uint64_t s)
{
	return s / g->region_stripes;
}

static uint64_t moff(const struct ts_agrp *g, uint64_t s, uint64_t o)
{
	return g->data_off + s * g->chunk + o;
}

static int bit_get(const uint8_t *bm, uint64_t i)
{
	return (bm[i / 8] >> (i % 8)) & 1;
}

static void bit_set(uint8_t *bm, uint64_t i, int v)
{
	if (v)
		bm[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		bm[i / 8] &= (uint8_t)~(1u << (i % 8));
}

static uint64_t live_mask(struct ts_agrp *g)
{
	uint64_t mask = 0;

	pthread_mutex_lock(&g->state_lock);
	for (unsigned i = 0; i < g->n; i++)
		if (g->slot[i].live)
			mask |= 1ull << i;
	pthread_mutex_unlock(&g->state_lock);
	return mask;
}

/* roles of stripe s whose slots are not in live */
static uint64_t dead_roles(const struct ts_agrp *g, uint64_t s, uint64_t live)
{
	uint64_t dead = 0;

	for (unsigned r = 0; r < g->n; r++)
		if (!(live & (1ull << slot_of(g, s, r))))
			dead |= 1ull << r;
	return dead;
}

/* ------------------------------------------------------------------ */
/* range lock */

static void range_acquire(struct ts_agrp *g, struct range *r, uint64_t s0, uint64_t s1, int excl)
{
	struct range *it;

	r->s0 = s0;
	r->s1 = s1;
	r->excl = excl;
	pthread_mutex_lock(&g->range_lock);
	for (;;) {
		for (it = g->ranges; it; it = it->next)
			if (it->s0 <= s1 && s0 <= it->s1 && (excl || it->excl))
				break;
		if (!it)
			break;
		pthread_cond_wait(&g->range_cond, &g->range_lock);
	}
	r->next = g->ranges;
	g->ranges = r;
	pthread_mutex_unlock(&g->range_lock);
}

static void range_release(struct ts_agrp *g, struct range *r)
{
	struct range **pp;

	pthread_mutex_lock(&g->range_lock);
	for (pp = &g->ranges; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	pthread_cond_broadcast(&g->range_cond);
	pthread_mutex_unlock(&g->range_lock);
}

/* ------------------------------------------------------------------ */
/* superblocks and membership (state_lock) */

static void fill_sb(struct ts_agrp *g, struct agrp_sb *sb, unsigned idx, uint64_t gen)
{
	memset(sb, 0, sizeof(*sb));
	memcpy(sb->info.group_uuid, g->uuid, 16);
	sb->info.k = g->k;
	sb->info.m = g->m;
	sb->info.chunk_size = g->chunk;
	sb->info.member_index = idx;
	sb->info.generation = gen;
	sb->info.nstripes = g->nstripes;
	sb->info.data_offset = g->data_off;
	for (unsigned i = 0; i < g->n; i++) {
		memcpy(sb->info.slots[i].uuid, g->slot[i].uuid, 16);
		sb->info.slots[i].node_id = g->slot[i].node_id;
	}
	sb->seq = g->sb_seq;
	sb->region_stripes = g->region_stripes;
	sb->bitmap_bytes = g->bitmap_bytes;
	sb->block_size = g->bs;
}

/*
 * Write the superblock (current generation) to every live slot plus the
 * slots in \p extra with generation \p extra_gen. A live member whose write
 * fails is failed, which bumps the generation, and the round is redone.
 * Called with state_lock held. Returns 0, or the extra members' error.
 */
static int sb_write_locked(struct ts_agrp *g, uint64_t extra, uint64_t extra_gen)
{
	uint8_t *bufs = ts_aligned_alloc(4096, (size_t)g->n * AGRP_SB_SIZE);
	int rc = 0;

	if (!bufs)
		return -ENOMEM;
	for (unsigned round = 0; round <= g->n; round++) {
		struct mio x[MAXN];
		struct batch b;
		struct agrp_sb sb;
		unsigned cnt = 0, failed = 0;

		g->sb_seq++;
		batch_init(&b);
		for (unsigned i = 0; i < g->n; i++) {
			int ex = !!(extra & (1ull << i));

			if (!g->slot[i].live && !ex)
				continue;
			fill_sb(g, &sb, i, ex && !g->slot[i].live ? extra_gen : g->generation);
			agrp_sb_encode(&sb, bufs + (size_t)i * AGRP_SB_SIZE);
			batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  (g->sb_seq % 2) * AGRP_SB_SIZE, AGRP_SB_SIZE,
				  bufs + (size_t)i * AGRP_SB_SIZE);
		}
		batch_wait(&b);
		for (unsigned j = 0; j < cnt; j++) {
			unsigned i = x[j].slot;

			if (!x[j].status)
				continue;
			if (g->slot[i].live) {
				ts_log(TS_LOG_WARN, "agrp", "superblock write failed slot=%u err=%s", i,
				       ts_strerror(x[j].status));
				g->slot[i].live = 0;
				failed = 1;
			} else {
				rc = x[j].status;
			}
		}
		if (!failed)
			break;
		g->generation++;
	}
	ts_free(bufs);
	return rc;
}

/* Member \p i failed an IO: take it out, bump the generation on the others. */
static void member_fail(struct ts_agrp *g, unsigned i, int err)
{
	pthread_mutex_lock(&g->state_lock);
	if (g->slot[i].live) {
		unsigned left = 0;

		g->slot[i].live = 0;
		for (unsigned j = 0; j < g->n; j++)
			left += g->slot[j].live != 0;
		if (left < g->k) {
			/* the group has failed (no IO can succeed): leave the
			 * superblocks alone, as md does, so the members lost last
			 * are still current when they come back, instead of being
			 * made stale by a generation only the survivors carry */
			ts_log(TS_LOG_ERROR, "agrp",
			       "member failed slot=%u node=%u err=\"%s\" group failed live=%u k=%u",
			       i, g->slot[i].node_id, ts_strerror(err), left, g->k);
		} else {
			g->generation++;
			ts_log(TS_LOG_WARN, "agrp",
			       "member failed slot=%u node=%u err=\"%s\" generation=%llu", i,
			       g->slot[i].node_id, ts_strerror(err),
			       (unsigned long long)g->generation);
			sb_write_locked(g, 0, 0);
		}
	}
	pthread_mutex_unlock(&g->state_lock);
}

/* ------------------------------------------------------------------ */
/* bitmaps (bm_lock) */

static uint64_t bm_member_off(const struct ts_agrp *g, unsigned which, uint64_t block)
{
	return TS_AGRP_SB_AREA + (uint64_t)which * g->bitmap_bytes + block * AGRP_BM_BLOCK;
}

/*
 * Persist the bitmap blocks flagged in \p dirty (pairs of bitmap index and
 * block) to the members in \p live. Called with bm_lock held; returns the
 * mask of slots whose write failed (the caller fails them after unlocking).
 */
struct bm_dirty {
	unsigned which;
	uint64_t block;
};

static uint64_t bm_persist_locked(struct ts_agrp *g, uint64_t live, const struct bm_dirty *d,
				  unsigned nd)
{
	struct mio x[MAXN * 4];
	uint64_t bad = 0;
	unsigned done = 0;

	while (done < nd) {
		unsigned cnt = 0, upto = done;
		struct batch b;

		batch_init(&b);
		for (; upto < nd && cnt + g->n <= TS_ARRAY_SIZE(x); upto++) {
			for (unsigned i = 0; i < g->n; i++) {
				if (!(live & (1ull << i)))
					continue;
				batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
					  bm_member_off(g, d[upto].which, d[upto].block),
					  AGRP_BM_BLOCK,
					  g->bm[d[upto].which] + d[upto].block * AGRP_BM_BLOCK);
			}
		}
		batch_wait(&b);
		for (unsigned j = 0; j < cnt; j++)
			if (x[j].status) /* cppcheck-suppress uninitvar ; x[0..cnt) set by batch_add */
				bad |= 1ull << x[j].slot;
		done = upto;
	}
	return bad;
}

static void fail_mask(struct ts_agrp *g, uint64_t bad, int err)
{
	for (unsigned i = 0; i < g->n; i++)
		if (bad & (1ull << i))
			member_fail(g, i, err);
}

/*
 * Set bits durably: intent bit for regions r0..r1 (if \p intent) and the
 * out-of-date bit of every slot in \p ood for those regions. Bumps the
 * in-flight count of the regions when \p intent.
 */
static void bm_mark(struct ts_agrp *g, uint64_t r0, uint64_t r1, int intent, uint64_t ood)
{
	struct bm_dirty d[64];
	uint64_t live = live_mask(g), bad = 0;
	unsigned nd = 0;

	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = r0; r <= r1; r++) {
		if (intent)
			g->inflight[r]++;
		for (unsigned w = 0; w <= g->n; w++) {
			if (w == 0 ? !intent : !(ood & (1ull << (w - 1))))
				continue;
			if (bit_get(g->bm[w], r))
				continue;
			bit_set(g->bm[w], r, 1);
			if (nd && d[nd - 1].which == w && d[nd - 1].block == r / 8 / AGRP_BM_BLOCK)
				continue;
			if (nd == TS_ARRAY_SIZE(d)) {
				bad |= bm_persist_locked(g, live, d, nd);
				nd = 0;
			}
			d[nd].which = w;
			d[nd].block = r / 8 / AGRP_BM_BLOCK;
			nd++;
		}
	}
	if (nd)
		bad |= bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	fail_mask(g, bad, -EIO);
}

static void bm_write_done(struct ts_agrp *g, uint64_t r0, uint64_t r1)
{
	pthread_mutex_lock(&g->bm_lock);
	g->done_seq++;
	for (uint64_t r = r0; r <= r1; r++) {
		g->inflight[r]--;
		g->last_done[r] = g->done_seq;
	}
	pthread_mutex_unlock(&g->bm_lock);
}

/* Clear bits of bitmap \p which for the regions in which pred holds; persist. */
static void bm_clear_where(struct ts_agrp *g, unsigned which, uint64_t upto_seq, int check_idle)
{
	uint64_t live = live_mask(g), bad = 0;
	struct bm_dirty d[64];
	unsigned nd = 0;

	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = 0; r < g->nregions; r++) {
		if (!bit_get(g->bm[which], r))
			continue;
		if (check_idle && (g->inflight[r] || g->last_done[r] > upto_seq ||
				   bit_get(g->untrusted, r)))
			continue;
		bit_set(g->bm[which], r, 0);
		if (nd && d[nd - 1].block == r / 8 / AGRP_BM_BLOCK)
			continue;
		if (nd == TS_ARRAY_SIZE(d)) {
			bad |= bm_persist_locked(g, live, d, nd);
			nd = 0;
		}
		d[nd].which = which;
		d[nd].block = r / 8 / AGRP_BM_BLOCK;
		nd++;
	}
	if (nd)
		bad |= bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	fail_mask(g, bad, -EIO);
}

static int region_untrusted(struct ts_agrp *g, uint64_t s)
{
	int v;

	pthread_mutex_lock(&g->bm_lock);
	v = bit_get(g->untrusted, region_of(g, s));
	pthread_mutex_unlock(&g->bm_lock);
	return v;
}

/* ------------------------------------------------------------------ */
/* stripe primitives (caller holds the stripe's range lock) */

static int popcount64(uint64_t v)
{
	return __builtin_popcountll(v);
}

/*
 * Make bufs[r] hold bytes [o, o+l) of every role r in \p want of stripe s,
 * reading live members and decoding the rest. Read errors fail the member
 * and the fetch is retried. \p trust_all ignores the untrusted marks
 * (rebuild of a member that must be rebuilt anyway).
 */
static int stripe_fetch(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint32_t o, uint32_t l,
			uint64_t want, uint8_t **bufs, int trust_all)
{
	for (unsigned attempt = 0; attempt <= g->n; attempt++) {
		uint64_t live = live_mask(g), dead = dead_roles(g, s, live), rd = want & ~dead;
		uint8_t *frags[MAXN];
		struct mio x[MAXN];
		struct batch b;
		unsigned cnt = 0, got = 0, bad = 0;

		if ((unsigned)popcount64(dead) > g->m)
			return TS_ERR_DEGRADED;
		if (want & dead) {
			if (!trust_all && region_untrusted(g, s))
				return -EIO;
			for (unsigned r = 0; r < g->n && got < g->k; r++)
				if (!(dead & (1ull << r))) {
					rd |= 1ull << r;
					got++;
				}
		}
		for (unsigned r = 0; r < g->n; r++) {
			frags[r] = (want & (1ull << r)) ? bufs[r] : sc->fetch + (size_t)r * g->chunk;
		}
		batch_init(&b);
		for (unsigned r = 0; r < g->n; r++) {
			unsigned sl = slot_of(g, s, r);

			if (rd & (1ull << r))
				batch_add(&b, &x[cnt++], g->slot[sl].m, sl, TS_MEMBER_READ, 0,
					  moff(g, s, o), l, frags[r]);
		}
		batch_wait(&b);
		for (unsigned j = 0; j < cnt; j++) {
			if (x[j].status) {
				member_fail(g, x[j].slot, x[j].status);
				bad = 1;
			}
		}
		if (bad)
			continue;
		if (want & dead)
			return ts_ec_decode(g->ec, l, frags, dead);
		return 0;
	}
	return TS_ERR_DEGRADED;
}

/*
 * Write pieces to members: for each role in \p roles, \p l bytes at chunk
 * offset o from bufs[r]. Slots not live are skipped. Failed writes fail the
 * member and set its out-of-date bit. Returns 0 unless more than m are out.
 */
static int stripe_put(struct ts_agrp *g, uint64_t s, const uint32_t *o, const uint32_t *l,
		      uint64_t roles, uint8_t *const *bufs)
{
	uint64_t live = live_mask(g), failed = 0, ood = 0;
	struct mio x[MAXN];
	struct batch b;
	unsigned cnt = 0;

	/* slots not live miss this write: out of date from now on (durably first) */
	ood = ((1ull << g->n) - 1) & ~live;
	if (ood)
		bm_mark(g, region_of(g, s), region_of(g, s), 0, ood);
	live = live_mask(g);
	batch_init(&b);
	for (unsigned r = 0; r < g->n; r++) {
		unsigned sl = slot_of(g, s, r);

		if (!(roles & (1ull << r)) || !(live & (1ull << sl)))
			continue;
		batch_add(&b, &x[cnt++], g->slot[sl].m, sl, TS_MEMBER_WRITE, 0, moff(g, s, o[r]),
			  l[r], bufs[r]);
	}
	batch_wait(&b);
	for (unsigned j = 0; j < cnt; j++) {
		if (x[j].status) {
			member_fail(g, x[j].slot, x[j].status);
			failed |= 1ull << x[j].slot;
		}
	}
	if (failed)
		bm_mark(g, region_of(g, s), region_of(g, s), 0, failed);
	if ((unsigned)popcount64(~live_mask(g) & ((g->n == 64) ? ~0ull : ((1ull << g->n) - 1))) >
	    g->m)
		return TS_ERR_DEGRADED;
	return 0;
}

/* Recompute and write all parity of stripe s from its data (resync). */
static int stripe_resync_parity(struct ts_agrp *g, struct scratch *sc, uint64_t s)
{
	uint8_t *bufs[MAXN];
	uint32_t o[MAXN] = { 0 }, l[MAXN];
	uint64_t data = (1ull << g->k) - 1;
	int rc;

	for (unsigned r = 0; r < g->n; r++) {
		bufs[r] = sc->work + (size_t)r * g->chunk;
		l[r] = g->chunk;
	}
	rc = stripe_fetch(g, sc, s, 0, g->chunk, data, bufs, 1);
	if (rc)
		return rc;
	ts_ec_encode(g->ec, g->chunk, bufs, bufs + g->k);
	return stripe_put(g, s, o, l, ((1ull << g->n) - 1) & ~data, bufs);
}

/* ---- rescue records: the degraded write hole ---- */

static uint64_t rescue_off(const struct ts_agrp *g, unsigned slot)
{
	return TS_AGRP_SB_AREA + (uint64_t)(1 + g->n) * g->bitmap_bytes +
	       (uint64_t)slot * (AGRP_BM_BLOCK + (uint64_t)g->m * g->chunk);
}

static uint64_t rescue_size(const struct ts_agrp *g)
{
	return AGRP_BM_BLOCK + (uint64_t)g->m * g->chunk;
}

static void put64le(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64le(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* Header: magic, seq, stripe, dead-role mask, payload crc; crc of the header at 4092. */
static void rescue_seal(uint8_t *rec, uint64_t seq, uint64_t s, uint64_t dead, uint64_t plen)
{
	uint32_t pcrc = crc32_iscsi(rec + AGRP_BM_BLOCK, (int)plen, 0xffffffffu), hcrc;

	memset(rec, 0, AGRP_BM_BLOCK);
	put64le(rec, RESCUE_MAGIC);
	put64le(rec + 8, seq);
	put64le(rec + 16, s);
	put64le(rec + 24, dead);
	put64le(rec + 32, plen);
	put64le(rec + 40, pcrc);
	hcrc = crc32_iscsi(rec, (int)AGRP_BM_BLOCK - 4, 0xffffffffu);
	memcpy(rec + AGRP_BM_BLOCK - 4, &hcrc, 4);
}

static int rescue_check(const struct ts_agrp *g, const uint8_t *rec, uint64_t *seq, uint64_t *s,
			uint64_t *dead)
{
	uint32_t hcrc;
	uint64_t plen;

	memcpy(&hcrc, rec + AGRP_BM_BLOCK - 4, 4);
	if (get64le(rec) != RESCUE_MAGIC ||
	    hcrc != crc32_iscsi((unsigned char *)rec, (int)AGRP_BM_BLOCK - 4, 0xffffffffu))
		return 0;
	*seq = get64le(rec + 8);
	*s = get64le(rec + 16);
	*dead = get64le(rec + 24);
	plen = get64le(rec + 32);
	if (*s >= g->nstripes || plen != (uint64_t)popcount64(*dead) * g->chunk ||
	    plen > (uint64_t)g->m * g->chunk || (*dead >> g->k))
		return 0;
	return get64le(rec + 40) == crc32_iscsi((unsigned char *)rec + AGRP_BM_BLOCK, (int)plen,
						 0xffffffffu);
}

/*
 * Before a write to stripe s while data roles are missing: record, durably
 * on every live member, the values the missing data roles will have after
 * this write (decoded now, merged with the new bytes). Parity torn by a crash
 * can then be recomputed from the live data plus this record.
 */
static int rescue_record(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			 uint64_t len, const uint8_t *src)
{
	uint64_t live = live_mask(g), dd = dead_roles(g, s, live) & ((1ull << g->k) - 1);
	uint8_t *bufs[MAXN] = { 0 }, *pay = sc->rescue + AGRP_BM_BLOCK;
	struct mio x[MAXN];
	struct batch b;
	unsigned j = 0, cnt = 0;
	int rc;

	uint64_t need = 0;

	if (!dd || sc->wid < 0)
		return 0;
	/* members failed since the write began: more than m out, nothing can
	 * be written (and the record has room for m roles) */
	if ((unsigned)popcount64(dead_roles(g, s, live)) > g->m)
		return TS_ERR_DEGRADED;
	for (unsigned r = 0; r < g->k; r++) {
		if (!(dd & (1ull << r)))
			continue;
		bufs[r] = pay + (size_t)(j++) * g->chunk;
		/* roles the write covers whole need no old bytes */
		if (soff > (uint64_t)r * g->chunk || soff + len < (uint64_t)(r + 1) * g->chunk)
			need |= 1ull << r;
	}
	rc = need ? stripe_fetch(g, sc, s, 0, g->chunk, need, bufs, 0) : 0;
	if (rc)
		return rc;
	for (unsigned r = 0; r < g->k; r++) {
		uint64_t a = (uint64_t)r * g->chunk, e = a + g->chunk;
		uint64_t lo = TS_MAX(a, soff), hi = TS_MIN(e, soff + len);

		if ((dd & (1ull << r)) && lo < hi)
			memcpy(bufs[r] + (lo - a), src + (lo - soff), hi - lo);
	}
	rescue_seal(sc->rescue, atomic_fetch_add(&g->rescue_seq, 1) + 1, s, dd, (uint64_t)j * g->chunk);
	batch_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  rescue_off(g, (unsigned)sc->wid),
				  AGRP_BM_BLOCK + (uint64_t)j * g->chunk, sc->rescue);
	batch_wait(&b);
	for (unsigned i = 0; i < cnt; i++)
		if (x[i].status)
			member_fail(g, x[i].slot, x[i].status);
	return 1;
}

/*
 * The write the record covered is complete: invalidate the record (FUA)
 * before the stripe lock is released, so at most one valid record per
 * stripe exists and it describes the stripe's last write.
 */
static void rescue_forget(struct ts_agrp *g, struct scratch *sc)
{
	uint64_t live = live_mask(g);
	struct mio x[MAXN];
	struct batch b;
	unsigned cnt = 0;

	memset(sc->rescue, 0, AGRP_BM_BLOCK);
	batch_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
				  rescue_off(g, (unsigned)sc->wid), AGRP_BM_BLOCK, sc->rescue);
	batch_wait(&b);
	for (unsigned i = 0; i < cnt; i++)
		if (x[i].status)
			member_fail(g, x[i].slot, x[i].status);
}

/* Forget every rescue record (the group went through a rejoin). */
static void rescue_clear(struct ts_agrp *g)
{
	uint8_t *zero = ts_aligned_alloc(4096, AGRP_BM_BLOCK);
	uint64_t live = live_mask(g);

	if (!zero)
		return;
	memset(zero, 0, AGRP_BM_BLOCK);
	for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++) {
		struct mio x[MAXN];
		struct batch b;
		unsigned cnt = 0;

		batch_init(&b);
		for (unsigned i = 0; i < g->n; i++)
			if (live & (1ull << i))
				batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_WRITE, TS_MEMBER_FUA,
					  rescue_off(g, w), AGRP_BM_BLOCK, zero);
		batch_wait(&b);
	}
	ts_free(zero);
}

/*
 * Write \p len bytes of stripe data at stripe-relative offset \p soff
 * (0 <= soff < k*chunk) from \p src.
 */
static int stripe_write_inner(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			      uint64_t len, const uint8_t *src)
{
	uint8_t *bufs[MAXN];
	uint32_t o[MAXN], l[MAXN];
	unsigned k = g->k, d0 = (unsigned)(soff / g->chunk), d1 = (unsigned)((soff + len - 1) / g->chunk);
	uint64_t roles = 0, want = 0;
	uint32_t lo = g->chunk, hi = 0;
	int rc;

	if (soff == 0 && len == (uint64_t)k * g->chunk) {
		for (unsigned r = 0; r < k; r++)
			bufs[r] = (uint8_t *)src + (size_t)r * g->chunk;
		for (unsigned p = 0; p < g->m; p++)
			bufs[k + p] = sc->work + (size_t)(k + p) * g->chunk;
		ts_ec_encode(g->ec, g->chunk, bufs, bufs + k);
		for (unsigned r = 0; r < g->n; r++) {
			o[r] = 0;
			l[r] = g->chunk;
		}
		return stripe_put(g, s, o, l, (g->n == 64) ? ~0ull : (1ull << g->n) - 1, bufs);
	}
	/* read-modify-write over the union [lo, hi) of the touched chunk ranges */
	for (unsigned d = d0; d <= d1; d++) {
		uint64_t a = TS_MAX(soff, (uint64_t)d * g->chunk), e = TS_MIN(soff + len, (uint64_t)(d + 1) * g->chunk);

		o[d] = (uint32_t)(a - (uint64_t)d * g->chunk);
		l[d] = (uint32_t)(e - a);
		lo = TS_MIN(lo, o[d]);
		hi = TS_MAX(hi, o[d] + l[d]);
		want |= 1ull << d;
	}
	for (unsigned r = 0; r < g->n; r++)
		bufs[r] = sc->work + (size_t)r * g->chunk;
	{
		uint64_t dead = dead_roles(g, s, live_mask(g));

		for (unsigned p = k; p < g->n; p++)
			if (!(dead & (1ull << p)))
				want |= 1ull << p;
	}
	rc = stripe_fetch(g, sc, s, lo, hi - lo, want, bufs, 0);
	if (rc)
		return rc;
	{
		uint8_t *par[TS_EC_MAX_M];

		for (unsigned d = d0; d <= d1; d++) {
			const uint8_t *nw = src + ((uint64_t)d * g->chunk + o[d] - soff);
			uint8_t *old = bufs[d] + (o[d] - lo);

			for (uint32_t i = 0; i < l[d]; i++)
				sc->delta[i] = old[i] ^ nw[i];
			for (unsigned p = 0; p < g->m; p++)
				par[p] = (want & (1ull << (k + p))) ? bufs[k + p] + (o[d] - lo) : NULL;
			ts_ec_update(g->ec, l[d], d, sc->delta, par);
			bufs[d] = (uint8_t *)nw; /* write the new data straight from the caller */
			roles |= 1ull << d;
		}
	}
	for (unsigned p = k; p < g->n; p++) {
		if (!(want & (1ull << p)))
			continue;
		o[p] = lo;
		l[p] = hi - lo;
		roles |= 1ull << p;
	}
	return stripe_put(g, s, o, l, roles, bufs);
}

static int stripe_write(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
			uint64_t len, const uint8_t *src)
{
	int rec = rescue_record(g, sc, s, soff, len, src), rc;

	if (rec < 0)
		return rec;
	rc = stripe_write_inner(g, sc, s, soff, len, src);
	if (rec)
		rescue_forget(g, sc);
	return rc;
}

/* ------------------------------------------------------------------ */
/* requests */

static int do_read(struct ts_agrp *g, struct scratch *sc, uint64_t off, uint64_t len, uint8_t *buf)
{
	uint64_t kc = (uint64_t)g->k * g->chunk, s0 = off / kc, s1 = (off + len - 1) / kc;
	uint64_t npieces = TS_DIV_ROUND_UP(len, g->chunk) + 1, live = live_mask(g), pos;
	struct mio *x = ts_calloc(npieces, sizeof(*x));
	uint64_t *vpos = ts_calloc(npieces, sizeof(*vpos));
	struct range rg;
	struct batch b;
	unsigned cnt = 0;
	int rc = 0;

	if (!x || !vpos) {
		rc = -ENOMEM;
		goto fail;
	}
	range_acquire(g, &rg, s0, s1, 0);
	live = live_mask(g); /* after the range lock: a rejoin holds it while it changes membership */
	/* healthy fast path: one member IO per chunk piece, all in parallel */
	batch_init(&b);
	for (pos = off; pos < off + len; cnt++) {
		uint64_t s = pos / kc, so = pos % kc, e = TS_MIN(off + len, (pos / g->chunk + 1) * g->chunk);
		unsigned d = (unsigned)(so / g->chunk), sl = slot_of(g, s, d);

		if (live & (1ull << sl)) {
			batch_add(&b, &x[cnt], g->slot[sl].m, sl, TS_MEMBER_READ, 0,
				  moff(g, s, so % g->chunk), e - pos, buf + (pos - off));
		} else {
			/* absent from the snapshot: decode, but do not fail the slot (it may have rejoined since) */
			x[cnt].slot = sl;
			x[cnt].status = TS_ERR_DEGRADED;
		}
		vpos[cnt] = pos;
		pos = e;
	}
	batch_wait(&b);
	/* failed or missing pieces: decode */
	for (unsigned j = 0; j < cnt && !rc; j++) {
		uint64_t s = vpos[j] / kc, so = vpos[j] % kc;
		uint64_t e = (j + 1 < cnt) ? vpos[j + 1] : off + len;
		unsigned d = (unsigned)(so / g->chunk);
		uint8_t *bufs[MAXN] = { 0 };

		if (!x[j].status)
			continue;
		if (x[j].status != TS_ERR_DEGRADED)
			member_fail(g, x[j].slot, x[j].status); /* no-op if already out */
		bufs[d] = buf + (vpos[j] - off);
		rc = stripe_fetch(g, sc, s, (uint32_t)(so % g->chunk), (uint32_t)(e - vpos[j]),
				  1ull << d, bufs, 0);
	}
	range_release(g, &rg);
fail:
	ts_free(x);
	ts_free(vpos);
	return rc;
}

static int do_write(struct ts_agrp *g, struct scratch *sc, uint64_t off, uint64_t len,
		    const uint8_t *buf)
{
	uint64_t kc = (uint64_t)g->k * g->chunk, s0 = off / kc, s1 = (off + len - 1) / kc;
	uint64_t r0 = region_of(g, s0), r1 = region_of(g, s1), all, live;
	struct range rg;
	int rc = 0;

	range_acquire(g, &rg, s0, s1, 1);
	all = (g->n == 64) ? ~0ull : (1ull << g->n) - 1;
	live = live_mask(g);
	if ((unsigned)popcount64(all & ~live) > g->m) {
		rc = TS_ERR_DEGRADED;
		goto out;
	}
	if (g->opts.write_hook) {
		rc = g->opts.write_hook(g->opts.write_hook_ctx, off, len, buf, all & ~live);
		if (rc)
			goto out;
	}
	bm_mark(g, r0, r1, 1, all & ~live);
	for (uint64_t pos = off; pos < off + len && !rc;) {
		uint64_t s = pos / kc, e = TS_MIN(off + len, (s + 1) * kc);

		rc = stripe_write(g, sc, s, pos % kc, e - pos, buf + (pos - off));
		pos = e;
	}
	/* members failed while it was applied: the hook sees the write again,
	 * with the slots that missed it (the data is the same, now final) */
	if (rc == 0 && g->opts.write_hook && (live & ~live_mask(g)))
		rc = g->opts.write_hook(g->opts.write_hook_ctx, off, len, buf, all & ~live_mask(g));
	bm_write_done(g, r0, r1);
out:
	range_release(g, &rg);
	return rc;
}

static int do_flush(struct ts_agrp *g)
{
	uint64_t live, seq;
	struct mio x[MAXN];
	struct batch b;
	unsigned cnt = 0;

	pthread_mutex_lock(&g->bm_lock);
	seq = g->done_seq;
	pthread_mutex_unlock(&g->bm_lock);
	live = live_mask(g);
	batch_init(&b);
	for (unsigned i = 0; i < g->n; i++)
		if (live & (1ull << i))
			batch_add(&b, &x[cnt++], g->slot[i].m, i, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	batch_wait(&b);
	for (unsigned j = 0; j < cnt; j++)
		if (x[j].status)
			member_fail(g, x[j].slot, x[j].status);
	if ((unsigned)popcount64(live_mask(g)) < g->k)
		return TS_ERR_DEGRADED;
	/* everything completed up to seq is durable: idle regions are clean */
	bm_clear_where(g, 0, seq, 1);
	return 0;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct ts_agrp *g = w->g;

	for (;;) {
		struct agrp_req *rq;
		int rc;

		pthread_mutex_lock(&g->queue_lock);
		while (!g->qhead && !g->stop)
			pthread_cond_wait(&g->queue_cond, &g->queue_lock);
		rq = g->qhead;
		if (!rq) {
			pthread_mutex_unlock(&g->queue_lock);
			break;
		}
		g->qhead = rq->next;
		if (!g->qhead)
			g->qtail = NULL;
		pthread_mutex_unlock(&g->queue_lock);
		if (rq->op == REQ_READ)
			rc = do_read(g, &w->sc, rq->off, rq->len, rq->buf);
		else if (rq->op == REQ_WRITE)
			rc = do_write(g, &w->sc, rq->off, rq->len, rq->buf);
		else
			rc = do_flush(g);
		rq->cb(rq->arg, rc);
		ts_free(rq);
	}
	return NULL;
}

static int enqueue(struct ts_agrp *g, enum req_op op, uint64_t off, uint64_t len, void *buf,
		   ts_agrp_cb cb, void *arg)
{
	struct agrp_req *rq;

	if (!g || !cb)
		return -EINVAL;
	if (op != REQ_FLUSH &&
	    (!buf || len == 0 || off % g->bs || len % g->bs || off > ts_agrp_size(g) ||
	     len > ts_agrp_size(g) - off))
		return -EINVAL;
	rq = ts_calloc(1, sizeof(*rq));
	if (!rq)
		return -ENOMEM;
	rq->op = op;
	rq->off = off;
	rq->len = len;
	rq->buf = buf;
	rq->cb = cb;
	rq->arg = arg;
	pthread_mutex_lock(&g->queue_lock);
	if (g->qtail)
		g->qtail->next = rq;
	else
		g->qhead = rq;
	g->qtail = rq;
	pthread_cond_signal(&g->queue_cond);
	pthread_mutex_unlock(&g->queue_lock);
	return 0;
}

int ts_agrp_read(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf, ts_agrp_cb cb, void *arg)
{
	return enqueue(g, REQ_READ, off, len, buf, cb, arg);
}

int ts_agrp_write(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf, ts_agrp_cb cb,
		  void *arg)
{
	return enqueue(g, REQ_WRITE, off, len, (void *)buf, cb, arg);
}

int ts_agrp_flush(struct ts_agrp *g, ts_agrp_cb cb, void *arg)
{
	return enqueue(g, REQ_FLUSH, 0, 0, NULL, cb, arg);
}

struct sync_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done, status;
};

static void sync_cb(void *arg, int status)
{
	struct sync_wait *w = arg;

	pthread_mutex_lock(&w->lock);
	w->status = status;
	w->done = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

static int sync_io(struct ts_agrp *g, enum req_op op, uint64_t off, uint64_t len, void *buf)
{
	struct sync_wait w = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	int rc = enqueue(g, op, off, len, buf, sync_cb, &w);

	if (rc)
		return rc;
	pthread_mutex_lock(&w.lock);
	while (!w.done)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	return w.status;
}

int ts_agrp_read_sync(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf)
{
	return sync_io(g, REQ_READ, off, len, buf);
}

int ts_agrp_write_sync(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf)
{
	return sync_io(g, REQ_WRITE, off, len, (void *)buf);
}

int ts_agrp_flush_sync(struct ts_agrp *g)
{
	return sync_io(g, REQ_FLUSH, 0, 0, NULL);
}

/* ------------------------------------------------------------------ */
/* state queries */

uint64_t ts_agrp_size(const struct ts_agrp *g)
{
	return g->nstripes * g->k * g->chunk;
}

uint32_t ts_agrp_block_size(const struct ts_agrp *g)
{
	return g->bs;
}

uint64_t ts_agrp_generation(struct ts_agrp *g)
{
	uint64_t v;

	pthread_mutex_lock(&g->state_lock);
	v = g->generation;
	pthread_mutex_unlock(&g->state_lock);
	return v;
}

uint64_t ts_agrp_live_mask(struct ts_agrp *g)
{
	return live_mask(g);
}

void ts_agrp_stats(struct ts_agrp *g, struct ts_agrp_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->live_mask = live_mask(g);
	st->region_stripes = g->region_stripes;
	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = 0; r < g->nregions; r++) {
		int ood = 0;

		for (unsigned i = 0; i < g->n && !ood; i++)
			ood = bit_get(g->bm[1 + i], r);
		if (ood) {
			uint64_t first = r * g->region_stripes;

			st->ood_regions++;
			st->ood_stripes += TS_MIN((uint64_t)g->region_stripes, g->nstripes - first);
		}
	}
	pthread_mutex_unlock(&g->bm_lock);
}

void ts_agrp_get_info(struct ts_agrp *g, struct ts_agrp_info *info)
{
	struct agrp_sb sb;

	pthread_mutex_lock(&g->state_lock);
	fill_sb(g, &sb, 0, g->generation);
	pthread_mutex_unlock(&g->state_lock);
	*info = sb.info;
}

/* ------------------------------------------------------------------ */
/* lifecycle */

static void scratch_free(struct scratch *sc)
{
	ts_free(sc->fetch);
	ts_free(sc->work);
	ts_free(sc->delta);
	ts_free(sc->rescue);
	memset(sc, 0, sizeof(*sc));
	sc->wid = -1;
}

static int scratch_alloc(const struct ts_agrp *g, struct scratch *sc)
{
	sc->fetch = ts_aligned_alloc(64, (size_t)g->n * g->chunk);
	sc->work = ts_aligned_alloc(64, (size_t)g->n * g->chunk);
	sc->delta = ts_aligned_alloc(64, g->chunk);
	sc->rescue = ts_aligned_alloc(4096, rescue_size(g));
	sc->wid = -1;
	if (!sc->fetch || !sc->work || !sc->delta || !sc->rescue) {
		scratch_free(sc);
		return -ENOMEM;
	}
	return 0;
}

/* Member layout for a member of \p size bytes (docs/ec-layout.md). */
static int layout(uint64_t size, unsigned n, unsigned m, uint32_t chunk, struct agrp_sb *sb)
{
	uint64_t approx, rs, nbits, bb, doff;

	if (size <= TS_AGRP_SB_AREA + chunk)
		return TS_ERR_TOO_SMALL;
	approx = (size - TS_AGRP_SB_AREA) / chunk;
	rs = TS_DIV_ROUND_UP(approx, AGRP_MAX_REGION_BITS);
	nbits = TS_DIV_ROUND_UP(approx, rs);
	bb = TS_ALIGN_UP(TS_DIV_ROUND_UP(nbits, 8), AGRP_BM_BLOCK);
	doff = TS_ALIGN_UP(TS_AGRP_SB_AREA + (1 + n) * bb +
				   AGRP_RESCUE_SLOTS * (AGRP_BM_BLOCK + (uint64_t)m * chunk),
			   chunk);
	if (doff + chunk > size)
		return TS_ERR_TOO_SMALL;
	sb->region_stripes = (uint32_t)rs;
	sb->bitmap_bytes = (uint32_t)bb;
	sb->info.data_offset = doff;
	sb->info.nstripes = (size - doff) / chunk;
	return 0;
}

static void workers_stop(struct ts_agrp *g)
{
	pthread_mutex_lock(&g->queue_lock);
	g->stop = 1;
	pthread_cond_broadcast(&g->queue_cond);
	pthread_mutex_unlock(&g->queue_lock);
	for (unsigned i = 0; i < g->nworkers; i++) {
		pthread_join(g->workers[i].tid, NULL);
		scratch_free(&g->workers[i].sc);
	}
	g->nworkers = 0;
}

static int workers_start(struct ts_agrp *g)
{
	unsigned want = g->opts.nthreads ? g->opts.nthreads : 4;

	want = TS_MIN(want, MAX_THREADS);
	for (unsigned i = 0; i < want; i++) {
		struct worker *w = &g->workers[i];

		w->g = g;
		if (scratch_alloc(g, &w->sc))
			goto fail;
		w->sc.wid = (int)i;
		if (pthread_create(&w->tid, NULL, worker_main, w)) {
			scratch_free(&w->sc);
			goto fail;
		}
		g->nworkers++;
	}
	return 0;
fail:
	workers_stop(g);
	return -ENOMEM;
}

static void group_free(struct ts_agrp *g)
{
	if (!g)
		return;
	workers_stop(g);
	for (unsigned w = 0; w <= MAXN; w++)
		ts_free(g->bm[w]);
	ts_free(g->untrusted);
	ts_free(g->inflight);
	ts_free(g->last_done);
	ts_ec_destroy(g->ec);
	pthread_mutex_destroy(&g->range_lock);
	pthread_cond_destroy(&g->range_cond);
	pthread_mutex_destroy(&g->state_lock);
	pthread_mutex_destroy(&g->bm_lock);
	pthread_mutex_destroy(&g->queue_lock);
	pthread_cond_destroy(&g->queue_cond);
	ts_free(g);
}

static int group_alloc(const struct agrp_sb *sb, const struct ts_agrp_opts *opts,
		       struct ts_agrp **out)
{
	struct ts_agrp *g = ts_calloc(1, sizeof(*g));
	int rc = -ENOMEM;

	if (!g)
		return -ENOMEM;
	pthread_mutex_init(&g->range_lock, NULL);
	pthread_cond_init(&g->range_cond, NULL);
	pthread_mutex_init(&g->state_lock, NULL);
	pthread_mutex_init(&g->bm_lock, NULL);
	pthread_mutex_init(&g->queue_lock, NULL);
	pthread_cond_init(&g->queue_cond, NULL);
	if (opts)
		g->opts = *opts;
	g->k = sb->info.k;
	g->m = sb->info.m;
	g->n = g->k + g->m;
	g->chunk = sb->info.chunk_size;
	g->bs = sb->block_size;
	g->nstripes = sb->info.nstripes;
	g->data_off = sb->info.data_offset;
	g->region_stripes = sb->region_stripes;
	g->bitmap_bytes = sb->bitmap_bytes;
	g->nregions = TS_DIV_ROUND_UP(g->nstripes, g->region_stripes);
	g->generation = sb->info.generation;
	g->sb_seq = sb->seq;
	memcpy(g->uuid, sb->info.group_uuid, 16);
	for (unsigned i = 0; i < g->n; i++) {
		memcpy(g->slot[i].uuid, sb->info.slots[i].uuid, 16);
		g->slot[i].node_id = sb->info.slots[i].node_id;
	}
	rc = ts_ec_create(g->k, g->m, &g->ec);
	if (rc)
		goto fail;
	rc = -ENOMEM;
	for (unsigned w = 0; w <= g->n; w++) {
		g->bm[w] = ts_aligned_alloc(4096, g->bitmap_bytes);
		if (!g->bm[w])
			goto fail;
		memset(g->bm[w], 0, g->bitmap_bytes);
	}
	g->untrusted = ts_calloc(1, g->bitmap_bytes);
	g->inflight = ts_calloc(g->nregions, sizeof(*g->inflight));
	g->last_done = ts_calloc(g->nregions, sizeof(*g->last_done));
	if (!g->untrusted || !g->inflight || !g->last_done)
		goto fail;
	*out = g;
	return 0;
fail:
	group_free(g);
	return rc;
}

/* Write/read all bitmaps of member \p mem (sync). */
static int bm_io_member(struct ts_agrp *g, struct ts_member *mem, enum ts_member_op op,
			uint8_t *tmp)
{
	for (unsigned w = 0; w <= g->n; w++) {
		uint8_t *buf = op == TS_MEMBER_READ ? tmp : g->bm[w];
		int rc = ts_member_rw_sync(mem, op, op == TS_MEMBER_WRITE ? TS_MEMBER_FUA : 0,
					   bm_member_off(g, w, 0), g->bitmap_bytes, buf);

		if (rc)
			return rc;
		if (op == TS_MEMBER_READ)
			for (uint32_t i = 0; i < g->bitmap_bytes; i++)
				g->bm[w][i] |= tmp[i];
	}
	return 0;
}

/* Clear one bit durably on the live members. */
static int bm_test(struct ts_agrp *g, unsigned which, uint64_t r)
{
	int v;

	pthread_mutex_lock(&g->bm_lock);
	v = bit_get(which == ~0u ? g->untrusted : g->bm[which], r);
	pthread_mutex_unlock(&g->bm_lock);
	return v;
}

static uint64_t region_last(const struct ts_agrp *g, uint64_t r)
{
	return TS_MIN(g->nstripes, (r + 1) * g->region_stripes) - 1;
}

#define RB_STRIPES 32u /* stripes rebuilt per batch: one IO per member of 32 chunks */

/*
 * Rebuild slot \p sl's chunks of stripes [s, s+cnt) (cnt <= RB_STRIPES) onto
 * its (not live) member, without FUA. Stripe s is chunk s of every member,
 * so the run is one contiguous range on each member: read it from k live
 * members at once (one IO each), decode every stripe in memory, write the
 * rebuilt chunks with one IO. \p rb holds n * RB_STRIPES chunks.
 */
static int rebuild_stripes(struct ts_agrp *g, struct scratch *sc, uint8_t *rb, unsigned sl,
			   uint64_t s, uint64_t cnt)
{
	const size_t span = (size_t)RB_STRIPES * g->chunk;

	for (unsigned attempt = 0; attempt <= g->n; attempt++) {
		uint64_t live = live_mask(g) & ~(1ull << sl), src = 0;
		struct mio x[MAXN];
		struct batch b;
		unsigned nsrc = 0, bad = 0;
		int rc = 0;

		for (unsigned i = 0; i < g->n && nsrc < g->k; i++)
			if (live & (1ull << i)) {
				src |= 1ull << i;
				nsrc++;
			}
		if (nsrc < g->k)
			return TS_ERR_DEGRADED;
		batch_init(&b);
		for (unsigned i = 0, j = 0; i < g->n; i++)
			if (src & (1ull << i))
				batch_add(&b, &x[j++], g->slot[i].m, i, TS_MEMBER_READ, 0,
					  moff(g, s, 0), cnt * g->chunk, rb + i * span);
		batch_wait(&b);
		for (unsigned j = 0; j < nsrc; j++)
			if (x[j].status) {
				member_fail(g, x[j].slot, x[j].status);
				bad = 1;
			}
		if (bad)
			continue; /* again with the members still live */
		for (uint64_t j = 0; j < cnt && rc == 0; j++) {
			uint8_t *frags[MAXN];
			uint64_t missing = 0;

			for (unsigned role = 0; role < g->n; role++) {
				unsigned i = slot_of(g, s + j, role);

				if (src & (1ull << i)) {
					frags[role] = rb + i * span + j * g->chunk;
				} else {
					missing |= 1ull << role;
					frags[role] = i == sl ? rb + sl * span + j * g->chunk
							      : sc->fetch + (size_t)role * g->chunk;
				}
			}
			rc = ts_ec_decode(g->ec, g->chunk, frags, missing);
		}
		if (rc == 0)
			rc = ts_member_rw_sync(g->slot[sl].m, TS_MEMBER_WRITE, 0, moff(g, s, 0),
					       cnt * g->chunk, rb + sl * span);
		return rc;
	}
	return TS_ERR_DEGRADED;
}

/*
 * Rebuild slot \p sl's out-of-date regions among [r0, r1] (the caller holds
 * their stripes' range lock): runs of consecutive out-of-date stripes in
 * batches, one flush of the member, then the regions' bits are cleared with
 * one bitmap write. Regions are one stripe on members below 64 GiB, so
 * batching across regions is what makes a rebuild stream.
 */
static int rebuild_span(struct ts_agrp *g, struct scratch *sc, uint8_t *rb, unsigned sl,
			uint64_t r0, uint64_t r1)
{
	uint64_t run0 = 0, runlen = 0, nbits = 0;
	struct bm_dirty d[2];
	uint64_t live, bad;
	unsigned nd = 0;
	int rc = 0;

	for (uint64_t r = r0; r <= r1 + 1 && rc == 0; r++) {
		int ood = r <= r1 && bm_test(g, 1 + sl, r);

		if (ood && bm_test(g, ~0u, r))
			ts_log(TS_LOG_WARN, "agrp",
			       "rebuilding from a region dirty at a degraded assembly slot=%u region=%llu",
			       sl, (unsigned long long)r);
		if (ood && runlen && run0 + runlen == r * g->region_stripes) {
			runlen = region_last(g, r) + 1 - run0; /* extends the run */
		} else {
			/* flush the run so far, in batches */
			for (uint64_t o = 0; o < runlen && rc == 0; o += RB_STRIPES)
				rc = rebuild_stripes(g, sc, rb, sl, run0 + o,
						     TS_MIN((uint64_t)RB_STRIPES, runlen - o));
			runlen = 0;
			if (ood) {
				run0 = r * g->region_stripes;
				runlen = region_last(g, r) + 1 - run0;
			}
		}
		nbits += ood;
	}
	if (rc || !nbits)
		return rc;
	rc = ts_member_rw_sync(g->slot[sl].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	if (rc)
		return rc;
	live = live_mask(g);
	pthread_mutex_lock(&g->bm_lock);
	for (uint64_t r = r0; r <= r1; r++) {
		uint64_t blk = r / 8 / AGRP_BM_BLOCK;

		if (!bit_get(g->bm[1 + sl], r))
			continue;
		bit_set(g->bm[1 + sl], r, 0);
		if (!nd || d[nd - 1].block != blk)
			d[nd++] = (struct bm_dirty){ 1 + sl, blk };
	}
	bad = bm_persist_locked(g, live, d, nd);
	pthread_mutex_unlock(&g->bm_lock);
	fail_mask(g, bad, -EIO);
	return 0;
}

/*
 * Bring slot \p sl (member attached, not live) up to date and make it live:
 * rebuild its out-of-date regions region by region under each region's
 * lock, then once more under a lock of the whole volume, and flip it live
 * with a generation bump. If the group is then complete, regions left
 * untrusted by a degraded assembly get parity recomputed from data.
 */
static int resync_slot(struct ts_agrp *g, unsigned sl)
{
	struct scratch sc = { 0 };
	struct range rg;
	uint64_t per = TS_MAX(1u, RB_STRIPES / g->region_stripes); /* regions per span */
	uint8_t *rb;
	int rc, any_untrusted = 0;

	rc = scratch_alloc(g, &sc);
	if (rc)
		return rc;
	rb = ts_aligned_alloc(4096, (size_t)g->n * RB_STRIPES * g->chunk);
	if (!rb) {
		scratch_free(&sc);
		return -ENOMEM;
	}
	/* spans of regions covering up to RB_STRIPES stripes, each under its
	 * own range lock, so IO elsewhere keeps flowing */
	for (uint64_t r0 = 0; r0 < g->nregions && !rc; r0 += per) {
		uint64_t r1 = TS_MIN(g->nregions, r0 + per) - 1;
		int any = 0;

		for (uint64_t r = r0; r <= r1 && !any; r++)
			any = bm_test(g, 1 + sl, r);
		if (!any)
			continue;
		range_acquire(g, &rg, r0 * g->region_stripes, region_last(g, r1), 1);
		rc = rebuild_span(g, &sc, rb, sl, r0, r1);
		range_release(g, &rg);
	}
	if (rc)
		goto out;
	range_acquire(g, &rg, 0, g->nstripes - 1, 1);
	for (uint64_t r0 = 0; r0 < g->nregions && !rc; r0 += per)
		rc = rebuild_span(g, &sc, rb, sl, r0, TS_MIN(g->nregions, r0 + per) - 1);
	if (!rc) { /* the returning member gets the current bitmaps */
		pthread_mutex_lock(&g->bm_lock);
		rc = bm_io_member(g, g->slot[sl].m, TS_MEMBER_WRITE, NULL);
		pthread_mutex_unlock(&g->bm_lock);
	}
	if (!rc) {
		pthread_mutex_lock(&g->state_lock);
		g->slot[sl].live = 1;
		g->generation++;
		rc = sb_write_locked(g, 0, 0);
		if (!rc && !g->slot[sl].live)
			rc = TS_ERR_MEMBER_FAILED;
		if (rc)
			g->slot[sl].live = 0;
		ts_log(TS_LOG_INFO, "agrp", "member rejoined slot=%u generation=%llu rc=%d", sl,
		       (unsigned long long)g->generation, rc);
		pthread_mutex_unlock(&g->state_lock);
	}
	if (!rc)
		rescue_clear(g); /* writes before the rejoin are whole now */
	if (!rc && live_mask(g) == (1ull << g->n) - 1) {
		for (uint64_t r = 0; r < g->nregions && !rc; r++) {
			if (!bm_test(g, ~0u, r))
				continue;
			any_untrusted = 1;
			for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++)
				rc = stripe_resync_parity(g, &sc, s);
		}
		if (!rc && any_untrusted) {
			pthread_mutex_lock(&g->bm_lock);
			memset(g->untrusted, 0, g->bitmap_bytes); /* next flush clears intent */
			pthread_mutex_unlock(&g->bm_lock);
		}
	}
	range_release(g, &rg);
out:
	ts_free(rb);
	scratch_free(&sc);
	return rc;
}

/*
 * Degraded assembly: for every stripe of a dirty region, make parity agree
 * with data again if we can: all data present -> recompute from data; data
 * roles missing but covered by the newest rescue record of the stripe ->
 * recompute from the live data plus the record. Otherwise the region is
 * marked untrusted.
 */
static int rescue_replay(struct ts_agrp *g, struct scratch *sc)
{
	const uint64_t rs = rescue_size(g), datamask = (1ull << g->k) - 1;
	uint8_t *recs = ts_aligned_alloc(4096, rs * AGRP_RESCUE_SLOTS);
	uint64_t seq[AGRP_RESCUE_SLOTS] = { 0 }, st[AGRP_RESCUE_SLOTS], dm[AGRP_RESCUE_SLOTS];
	uint64_t live = live_mask(g), maxseq = 0, nuntrusted = 0;
	int rc = 0;

	if (!recs)
		return -ENOMEM;
	for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++) {
		for (unsigned i = 0; i < g->n && !seq[w]; i++) {
			if (!(live & (1ull << i)) ||
			    ts_member_rw_sync(g->slot[i].m, TS_MEMBER_READ, 0, rescue_off(g, w), rs,
					      recs + w * rs))
				continue;
			if (!rescue_check(g, recs + w * rs, &seq[w], &st[w], &dm[w]))
				seq[w] = 0;
		}
		maxseq = TS_MAX(maxseq, seq[w]);
	}
	atomic_store(&g->rescue_seq, maxseq);
	for (uint64_t r = 0; r < g->nregions && !rc; r++) {
		if (!bit_get(g->bm[0], r))
			continue;
		for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++) {
			uint64_t dd = dead_roles(g, s, live) & datamask;
			uint8_t *bufs[MAXN];
			uint32_t o[MAXN] = { 0 }, l[MAXN];
			int best = -1;

			if (!dd) {
				rc = stripe_resync_parity(g, sc, s);
				continue;
			}
			for (unsigned w = 0; w < AGRP_RESCUE_SLOTS; w++)
				if (seq[w] && st[w] == s && (best < 0 || seq[w] > seq[best]))
					best = (int)w;
			if (best < 0 || (dd & ~dm[best])) {
				bit_set(g->untrusted, r, 1);
				nuntrusted++;
				break;
			}
			for (unsigned ro = 0; ro < g->n; ro++) {
				bufs[ro] = sc->work + (size_t)ro * g->chunk;
				l[ro] = g->chunk;
			}
			rc = stripe_fetch(g, sc, s, 0, g->chunk, datamask & ~dd, bufs, 1);
			if (rc)
				break;
			for (unsigned ro = 0, j = 0; ro < g->k; ro++) {
				if (!(dm[best] & (1ull << ro)))
					continue;
				if (dd & (1ull << ro))
					memcpy(bufs[ro], recs + best * rs + AGRP_BM_BLOCK + (size_t)j * g->chunk,
					       g->chunk);
				j++;
			}
			ts_ec_encode(g->ec, g->chunk, bufs, bufs + g->k);
			rc = stripe_put(g, s, o, l, ((1ull << g->n) - 1) & ~datamask, bufs);
		}
	}
	for (unsigned i = 0; i < g->n && !rc; i++)
		if (live & (1ull << i))
			rc = ts_member_rw_sync(g->slot[i].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	/* repairs are durable: the records are spent (a stale one left behind
	 * could later outlive the invalidated record of a newer write) */
	if (!rc)
		rescue_clear(g);
	if (nuntrusted)
		ts_log(TS_LOG_WARN, "agrp", "dirty regions not recoverable while degraded regions=%llu",
		       (unsigned long long)nuntrusted);
	ts_free(recs);
	return rc;
}

static int same_geometry(const struct agrp_sb *a, const struct agrp_sb *b)
{
	return a->info.k == b->info.k && a->info.m == b->info.m &&
	       a->info.chunk_size == b->info.chunk_size && a->info.nstripes == b->info.nstripes &&
	       a->info.data_offset == b->info.data_offset &&
	       a->region_stripes == b->region_stripes && a->bitmap_bytes == b->bitmap_bytes &&
	       a->block_size == b->block_size;
}

int ts_agrp_add_member(struct ts_agrp *g, struct ts_member *mem)
{
	struct agrp_sb sb;
	unsigned idx;
	int rc;

	if (!g || !mem)
		return -EINVAL;
	rc = agrp_sb_read(mem, &sb);
	if (rc)
		return rc;
	if (memcmp(sb.info.group_uuid, g->uuid, 16))
		return TS_ERR_FOREIGN;
	idx = sb.info.member_index;
	if (idx >= g->n || sb.info.k != g->k || sb.info.m != g->m || sb.info.chunk_size != g->chunk ||
	    sb.info.nstripes != g->nstripes || sb.info.data_offset != g->data_off)
		return TS_ERR_GEOMETRY;
	pthread_mutex_lock(&g->state_lock);
	if (memcmp(g->slot[idx].uuid, ts_member_info(mem)->uuid, 16) ||
	    sb.info.generation > g->generation)
		rc = TS_ERR_FOREIGN;
	else if (g->slot[idx].live)
		rc = -EEXIST;
	else
		g->slot[idx].m = mem;
	pthread_mutex_unlock(&g->state_lock);
	if (rc) {
		ts_log(TS_LOG_WARN, "agrp", "member refused name=%s slot=%u err=\"%s\"",
		       ts_member_info(mem)->name, idx, ts_strerror(rc));
		return rc;
	}
	rc = resync_slot(g, idx);
	if (rc)
		ts_log(TS_LOG_WARN, "agrp", "resync failed name=%s slot=%u err=\"%s\"",
		       ts_member_info(mem)->name, idx, ts_strerror(rc));
	return rc;
}

int ts_agrp_replace(struct ts_agrp *g, unsigned sl, struct ts_member *mem)
{
	const struct ts_member_info *mi;
	int rc = 0;

	if (!g || !mem || sl >= g->n)
		return -EINVAL;
	mi = ts_member_info(mem);
	if (mi->block_size != g->bs)
		return TS_ERR_GEOMETRY;
	if (mi->size < g->data_off + g->nstripes * g->chunk)
		return TS_ERR_TOO_SMALL;
	pthread_mutex_lock(&g->state_lock);
	if (g->slot[sl].live)
		rc = -EEXIST;
	pthread_mutex_unlock(&g->state_lock);
	if (rc)
		return rc;
	if ((unsigned)popcount64(live_mask(g)) < g->k)
		return TS_ERR_DEGRADED;
	/* 1. every region is out of date for the slot, durably */
	bm_mark(g, 0, g->nregions - 1, 0, 1ull << sl);
	/* 2. new identity in the slot table; the newcomer carries generation 0
	 *    (stale) until rebuilt, so a crash mid-rebuild never trusts it */
	pthread_mutex_lock(&g->state_lock);
	memcpy(g->slot[sl].uuid, mi->uuid, 16);
	g->slot[sl].node_id = mi->node_id;
	g->slot[sl].m = mem;
	g->generation++;
	rc = sb_write_locked(g, 1ull << sl, 0);
	if (!rc)
		rc = sb_write_locked(g, 1ull << sl, 0); /* both copies */
	pthread_mutex_unlock(&g->state_lock);
	if (!rc)
		rc = resync_slot(g, sl);
	ts_log(TS_LOG_INFO, "agrp", "replace slot=%u name=%s rc=%d", sl, mi->name, rc);
	return rc;
}

int ts_agrp_create(struct ts_member *const *members, unsigned n, unsigned k, unsigned m,
		   const struct ts_agrp_opts *opts, struct ts_agrp **out)
{
	struct ts_agrp *g = NULL;
	struct agrp_sb sb;
	uint64_t size = UINT64_MAX;
	uint32_t chunk = opts && opts->chunk_size ? opts->chunk_size : 64 * 1024, bs;
	int rc;

	if (!members || !out || k < 1 || k > TS_EC_MAX_K || m < 1 || m > TS_EC_MAX_M ||
	    n != k + m || n > MAXN)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++)
		if (!members[i])
			return -EINVAL;
	bs = ts_member_info(members[0])->block_size;
	if (chunk & (chunk - 1) || chunk % bs)
		return -EINVAL;
	for (unsigned i = 0; i < n; i++) {
		const struct ts_member_info *mi = ts_member_info(members[i]);

		if (mi->block_size != bs || bs > AGRP_BM_BLOCK) {
			ts_log(TS_LOG_ERROR, "agrp", "block size mismatch name=%s", mi->name);
			return TS_ERR_GEOMETRY;
		}
		size = TS_MIN(size, mi->size);
	}
	memset(&sb, 0, sizeof(sb));
	rc = layout(size, n, m, chunk, &sb);
	if (rc)
		return rc;
	rc = ts_uuid_generate(sb.info.group_uuid);
	if (rc)
		return rc;
	sb.info.k = k;
	sb.info.m = m;
	sb.info.chunk_size = chunk;
	sb.info.generation = 1;
	sb.block_size = bs;
	for (unsigned i = 0; i < n; i++) {
		memcpy(sb.info.slots[i].uuid, ts_member_info(members[i])->uuid, 16);
		sb.info.slots[i].node_id = ts_member_info(members[i])->node_id;
	}
	rc = group_alloc(&sb, opts, &g);
	if (rc)
		return rc;
	for (unsigned i = 0; i < n && !rc; i++) {
		g->slot[i].m = members[i];
		g->slot[i].live = 1;
		/* zero bitmaps; all-zero data has all-zero parity: unmap the data area */
		rc = bm_io_member(g, members[i], TS_MEMBER_WRITE, NULL);
		/* in pieces: a member may bound one IO (remote members: 1 GiB) */
		for (uint64_t o = 0, len = g->nstripes * g->chunk; !rc && o < len; o += 256ull << 20)
			rc = ts_member_rw_sync(members[i], TS_MEMBER_UNMAP, 0, g->data_off + o,
					       TS_MIN(len - o, 256ull << 20), NULL);
		if (!rc)
			rc = ts_member_rw_sync(members[i], TS_MEMBER_FLUSH, 0, 0, 0, NULL);
	}
	if (rc)
		goto fail;
	rescue_clear(g);
	pthread_mutex_lock(&g->state_lock);
	rc = sb_write_locked(g, 0, 0);
	if (!rc) /* both copies, so no older group's copy survives */
		rc = sb_write_locked(g, 0, 0);
	pthread_mutex_unlock(&g->state_lock);
	if (!rc && live_mask(g) != (1ull << n) - 1)
		rc = TS_ERR_MEMBER_FAILED;
	if (!rc)
		rc = workers_start(g);
	if (rc)
		goto fail;
	*out = g;
	return 0;
fail:
	group_free(g);
	return rc;
}

int ts_agrp_assemble(struct ts_member *const *members, unsigned n, const struct ts_agrp_opts *opts,
		     struct ts_agrp **out)
{
	struct agrp_sb *sbs = NULL;
	int *st = NULL, top = -1, rc = 0, saw_corrupt = 0, saw_version = 0;
	struct ts_agrp *g = NULL;
	struct scratch sc = { 0 };
	uint8_t *tmp = NULL;
	unsigned ncur = 0;
	uint64_t curmask = 0;

	if (!members || !out || n == 0 || n > 2 * MAXN)
		return -EINVAL;
	sbs = ts_calloc(n, sizeof(*sbs));
	st = ts_calloc(n, sizeof(*st));
	if (!sbs || !st) {
		rc = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < n; i++) {
		const struct ts_member_info *mi;

		if (!members[i]) {
			rc = -EINVAL;
			goto fail;
		}
		mi = ts_member_info(members[i]);
		st[i] = agrp_sb_read(members[i], &sbs[i]);
		if (!st[i] && memcmp(sbs[i].info.slots[sbs[i].info.member_index].uuid, mi->uuid, 16))
			st[i] = TS_ERR_FOREIGN; /* superblock copied from another disk */
		if (st[i]) {
			saw_corrupt |= st[i] == TS_ERR_CORRUPT;
			saw_version |= st[i] == TS_ERR_VERSION;
			ts_log(TS_LOG_WARN, "agrp", "member skipped name=%s err=\"%s\"", mi->name,
			       ts_strerror(st[i]));
			continue;
		}
		if (top >= 0 && memcmp(sbs[i].info.group_uuid, sbs[top].info.group_uuid, 16)) {
			ts_log(TS_LOG_ERROR, "agrp", "members of different groups name=%s other=%s",
			       mi->name, ts_member_info(members[top])->name);
			rc = TS_ERR_FOREIGN;
			goto fail;
		}
		if (top >= 0 && !same_geometry(&sbs[i], &sbs[top])) {
			ts_log(TS_LOG_ERROR, "agrp", "group geometry differs name=%s other=%s",
			       mi->name, ts_member_info(members[top])->name);
			rc = TS_ERR_GEOMETRY;
			goto fail;
		}
		if (top < 0 || sbs[i].info.generation > sbs[top].info.generation ||
		    (sbs[i].info.generation == sbs[top].info.generation && sbs[i].seq > sbs[top].seq))
			top = (int)i;
	}
	if (top < 0) {
		rc = saw_corrupt ? TS_ERR_CORRUPT : saw_version ? TS_ERR_VERSION : TS_ERR_FOREIGN;
		goto fail;
	}
	/* current members: the newest generation, listed in the newest slot table */
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation != sbs[top].info.generation ||
		    memcmp(sbs[top].info.slots[idx].uuid, ts_member_info(members[i])->uuid, 16) ||
		    (curmask & (1ull << idx)))
			continue;
		curmask |= 1ull << idx;
		ncur++;
	}
	if (ncur < sbs[top].info.k) {
		ts_log(TS_LOG_ERROR, "agrp", "not enough current members have=%u need=%u", ncur,
		       sbs[top].info.k);
		rc = TS_ERR_DEGRADED;
		goto fail;
	}
	rc = group_alloc(&sbs[top], opts, &g);
	if (rc)
		goto fail;
	curmask = 0;
	tmp = ts_aligned_alloc(4096, g->bitmap_bytes);
	rc = tmp ? scratch_alloc(g, &sc) : -ENOMEM;
	for (unsigned i = 0; i < n && !rc; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation != g->generation ||
		    memcmp(g->slot[idx].uuid, ts_member_info(members[i])->uuid, 16) ||
		    (curmask & (1ull << idx)))
			continue;
		curmask |= 1ull << idx;
		g->slot[idx].m = members[i];
		g->slot[idx].live = 1;
		rc = bm_io_member(g, members[i], TS_MEMBER_READ, tmp);
	}
	if (rc)
		goto fail;
	if (ncur < g->n) {
		/* degraded: repair dirty stripes from rescue records where possible */
		rc = rescue_replay(g, &sc);
		if (rc)
			goto fail;
		pthread_mutex_lock(&g->state_lock);
		g->generation++;
		rc = sb_write_locked(g, 0, 0);
		pthread_mutex_unlock(&g->state_lock);
		if (rc)
			goto fail;
		ts_log(TS_LOG_WARN, "agrp", "assembled degraded members=%u of %u generation=%llu",
		       ncur, g->n, (unsigned long long)g->generation);
	} else {
		for (uint64_t r = 0; r < g->nregions && !rc; r++) {
			if (!bit_get(g->bm[0], r))
				continue;
			for (uint64_t s = r * g->region_stripes; s <= region_last(g, r) && !rc; s++)
				rc = stripe_resync_parity(g, &sc, s);
		}
		for (unsigned i = 0; i < g->n && !rc; i++)
			rc = ts_member_rw_sync(g->slot[i].m, TS_MEMBER_FLUSH, 0, 0, 0, NULL);
		if (rc)
			goto fail;
		bm_clear_where(g, 0, 0, 0);
		rescue_clear(g);
	}
	if ((unsigned)popcount64(live_mask(g)) < g->k) {
		rc = TS_ERR_DEGRADED;
		goto fail;
	}
	rc = workers_start(g);
	if (rc)
		goto fail;
	/* stale members of this group: resync what they missed, then rejoin */
	for (unsigned i = 0; i < n; i++) {
		unsigned idx = sbs[i].info.member_index;

		if (st[i] || sbs[i].info.generation >= sbs[top].info.generation ||
		    g->slot[idx].live)
			continue;
		ts_log(TS_LOG_INFO, "agrp", "stale member name=%s slot=%u generation=%llu",
		       ts_member_info(members[i])->name, idx,
		       (unsigned long long)sbs[i].info.generation);
		ts_agrp_add_member(g, members[i]);
	}
	*out = g;
	g = NULL;
fail:
	group_free(g);
	scratch_free(&sc);
	ts_free(tmp);
	ts_free(sbs);
	ts_free(st);
	return rc;
}

void ts_agrp_close(struct ts_agrp *g)
{
	if (!g)
		return;
	do_flush(g);
	group_free(g);
}
