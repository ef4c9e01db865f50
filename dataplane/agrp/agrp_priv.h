/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to dataplane/agrp: the group object and the internal calls its
 * files make to each other (agrp.c lifecycle and membership, agrp_io.c IO
 * path, agrp_bitmap.c bitmaps, agrp_rescue.c rescue records, agrp_resync.c
 * rebuild and rejoin, meta.c superblock codec). Locks and their order: see
 * the THREAD SAFETY block of agrp.h and of each file.
 */
#ifndef TS_AGRP_PRIV_H
#define TS_AGRP_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/rangelock/rangelock.h"

#define AGRP_MAGIC 0x3130505247415354ull /* "TSAGRP01" little endian */
#define AGRP_VERSION 1u
#define AGRP_SB_SIZE 4096u      /* one superblock copy; copies at 0 and 4096 */
#define AGRP_BM_BLOCK 4096u     /* bitmaps are persisted in blocks of this size */
#define AGRP_MAX_REGION_BITS (1u << 20)
#define AGRP_RESCUE_SLOTS 16u    /* one per worker; see docs/ec-layout.md */

/** Decoded superblock: the public info plus layout fields. */
struct agrp_sb {
	struct ts_agrp_info info;
	uint64_t seq;
	uint32_t region_stripes;
	uint32_t bitmap_bytes;
	uint32_t block_size;
};

/** Serialise \p sb into a zeroed AGRP_SB_SIZE buffer with its CRC. */
void agrp_sb_encode(const struct agrp_sb *sb, uint8_t *buf);
/** Parse one copy: 0, TS_ERR_FOREIGN (no magic), TS_ERR_CORRUPT, TS_ERR_VERSION. */
int agrp_sb_decode(const uint8_t *buf, struct agrp_sb *sb);
/** Read both copies from \p m and pick the newest valid one. */
int agrp_sb_read(struct ts_member *m, struct agrp_sb *sb);

/* ---- the group object ---- */

#define MAXN TS_AGRP_MAX_MEMBERS
#define MAX_THREADS AGRP_RESCUE_SLOTS

struct agrp_req; /* queued request, agrp_io.c */

/* A request's hold on stripes [s0, s1] (inclusive) in the group's range lock. */
struct range {
	struct ts_rl_req rl;
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

	struct ts_rl *ranges; /* in-flight stripe ranges (dataplane/rangelock) */

	_Atomic int fenced;   /* a member refused IO with TS_ERR_FENCED: another engine owns us */

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
	struct agrp_req *qhead, *qtail; /* agrp_io.c */
	int stop;
	unsigned nworkers;
	struct worker workers[MAX_THREADS];
};


/* One member IO of a fan-out (dataplane/member), tagged with its slot. */
struct mio {
	struct ts_member_fanout_io fio; /* fio.status: the IO's status after the wait */
	unsigned slot;
};

struct bm_dirty {
	unsigned which;
	uint64_t block;
};

/* ---- geometry (no lock: fields fixed at allocation) ---- */

static inline unsigned slot_of(const struct ts_agrp *g, uint64_t s, unsigned role)
{
	return (unsigned)((role + s) % g->n);
}

static inline uint64_t region_of(const struct ts_agrp *g, uint64_t s)
{
	return s / g->region_stripes;
}

static inline uint64_t moff(const struct ts_agrp *g, uint64_t s, uint64_t o)
{
	return g->data_off + s * g->chunk + o;
}

static inline int bit_get(const uint8_t *bm, uint64_t i)
{
	return (bm[i / 8] >> (i % 8)) & 1;
}

static inline void bit_set(uint8_t *bm, uint64_t i, int v)
{
	if (v)
		bm[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		bm[i / 8] &= (uint8_t)~(1u << (i % 8));
}

/* roles of stripe s whose slots are not in live */
static inline uint64_t dead_roles(const struct ts_agrp *g, uint64_t s, uint64_t live)
{
	uint64_t dead = 0;

	for (unsigned r = 0; r < g->n; r++)
		if (!(live & (1ull << slot_of(g, s, r))))
			dead |= 1ull << r;
	return dead;
}

static inline int popcount64(uint64_t v)
{
	return __builtin_popcountll(v);
}

static inline uint64_t region_last(const struct ts_agrp *g, uint64_t r)
{
	return TS_MIN(g->nstripes, (r + 1) * g->region_stripes) - 1;
}

/* ---- agrp.c: membership and lifecycle ---- */

/** Mask of live slots (takes state_lock). */
uint64_t agrp_live_mask(struct ts_agrp *g);
/** Write superblocks to the live slots plus \p extra (state_lock held). */
int agrp_sb_write_locked(struct ts_agrp *g, uint64_t extra, uint64_t extra_gen);
/** Take slot \p i out after an IO error \p err; bumps the generation. */
void agrp_member_fail(struct ts_agrp *g, unsigned i, int err);
/* Non-zero once the group is fenced (sticky); see ts_agrp_fenced(). */
static inline int agrp_fenced(struct ts_agrp *g)
{
	return atomic_load(&g->fenced);
}
/* A member (slot, or -1: the write hook's journal) said TS_ERR_FENCED: fenced from now on (logged once). */
void agrp_set_fenced(struct ts_agrp *g, int slot);
/** Per-thread scratch buffers: 0 or -ENOMEM (nothing left allocated). */
int agrp_scratch_alloc(const struct ts_agrp *g, struct scratch *sc);
void agrp_scratch_free(struct scratch *sc);

/* ---- agrp_io.c: member IO batches, range lock, stripes, requests ---- */

/** Add one IO for slot \p slot to fan-out \p b; a NULL member fails it with
 * TS_ERR_MEMBER_FAILED (x->fio.status). Wait with ts_member_fanout_wait(). */
void agrp_batch_add(struct ts_member_fanout *b, struct mio *x, struct ts_member *m, unsigned slot,
		    enum ts_member_op op, uint32_t flags, uint64_t off, uint64_t len, void *buf);
void agrp_range_acquire(struct ts_agrp *g, struct range *r, uint64_t s0, uint64_t s1, int excl);
void agrp_range_release(struct ts_agrp *g, struct range *r);
int agrp_stripe_fetch(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint32_t o, uint32_t l,
		      uint64_t want, uint8_t **bufs, int trust_all);
int agrp_stripe_put(struct ts_agrp *g, uint64_t s, const uint32_t *o, const uint32_t *l,
		    uint64_t roles, uint8_t *const *bufs);
int agrp_stripe_resync_parity(struct ts_agrp *g, struct scratch *sc, uint64_t s);
/** Flush every live member and clear idle intent bits (the flush request). */
int agrp_do_flush(struct ts_agrp *g);
/** Worker thread body: \p arg is a struct worker. */
void *agrp_worker_main(void *arg);

/* ---- agrp_bitmap.c: write-intent and out-of-date bitmaps (bm_lock) ---- */

uint64_t agrp_bm_persist_locked(struct ts_agrp *g, uint64_t live, const struct bm_dirty *d,
				unsigned nd);
void agrp_bm_mark(struct ts_agrp *g, uint64_t r0, uint64_t r1, int intent, uint64_t ood);
void agrp_bm_write_done(struct ts_agrp *g, uint64_t r0, uint64_t r1);
void agrp_bm_clear_where(struct ts_agrp *g, unsigned which, uint64_t upto_seq, int check_idle);
/** agrp_member_fail() for every slot in \p bad. */
void agrp_fail_mask(struct ts_agrp *g, uint64_t bad, int err);
int agrp_region_untrusted(struct ts_agrp *g, uint64_t s);
int agrp_bm_io_member(struct ts_agrp *g, struct ts_member *mem, enum ts_member_op op,
		      uint8_t *tmp);
/** Bit \p r of bitmap \p which (~0u: the untrusted map). */
int agrp_bm_test(struct ts_agrp *g, unsigned which, uint64_t r);

/* ---- agrp_rescue.c: rescue records (degraded write hole) ---- */

uint64_t agrp_rescue_size(const struct ts_agrp *g);
/** 1 if a record was written (forget it after the write), 0 if none needed, <0 error. */
int agrp_rescue_record(struct ts_agrp *g, struct scratch *sc, uint64_t s, uint64_t soff,
		       uint64_t len, const uint8_t *src);
void agrp_rescue_forget(struct ts_agrp *g, struct scratch *sc);
void agrp_rescue_clear(struct ts_agrp *g);
int agrp_rescue_replay(struct ts_agrp *g, struct scratch *sc);

/* ---- agrp_resync.c: rebuild and rejoin ---- */

/** Rebuild slot \p sl's out-of-date regions and make it live. */
int agrp_resync_slot(struct ts_agrp *g, unsigned sl);

#endif
