/* SPDX-License-Identifier: Apache-2.0 */
/* Private to dataplane/volume: the pool's in-memory state, shared by the
 * tree and records (vpool.c), the log and checkpoints (vpool_log.c), the
 * metadata operations (vpool_meta.c) and the IO path (vio.c). */
#ifndef TS_VOLUME_VPOOL_INT_H
#define TS_VOLUME_VPOOL_INT_H

#include <pthread.h>
#include <stdint.h>

#include "dataplane/volume/rmap.h"
#include "dataplane/volume/volume.h"

/** Layer-map value meaning "discarded here: reads zero, hides older layers". */
#define VP_TOMB UINT64_MAX

struct layer {
	uint64_t id, parent_id, vol_id, size, ctime;
	uint32_t flags;
	char name[TS_VOLUME_NAME_MAX];
	struct layer *parent;
	struct layer **kids;
	uint32_t nkids, kcap;
	struct rmap map; /* grain -> pba or VP_TOMB */
};

/* An IO that arrived while its volume was quiesced, submitted afterwards. */
enum { VD_READ = 0, VD_WRITE, VD_UNMAP };
struct vdefer {
	struct vdefer *next;
	struct ts_volume *h;
	int op; /* VD_* */
	uint64_t off, len;
	void *buf;
	ts_volume_cb cb;
	void *arg;
};

/* A volume attribute (ts_vpool_volume_attr_*): the value is owned by the volume. */
struct vattr {
	char name[TS_VOLUME_ATTR_NAME_MAX];
	uint32_t len;
	uint8_t *val; /* NULL when len is 0 */
};

struct vol {
	uint64_t id, size, ctime;
	char name[TS_VOLUME_NAME_MAX];
	struct layer *head;
	struct rmap index; /* grain -> pba: what the volume reads (merged) */
	uint32_t inflight; /* IOs between submit and completion (member IO issued) */
	uint32_t quiesce;  /* snapshot/rebase/holds in progress: new IOs are queued */
	uint32_t holds;    /* ts_vpool_volume_hold()s not yet released (part of quiesce) */
	uint32_t draining; /* a thread is resubmitting the queue: new IOs queue behind it */
	uint32_t refs;     /* open handles */
	struct vdefer *defer, *defer_last; /* IOs held while quiesced, in submit order */
	struct vattr *attrs; /* unordered, at most TS_VOLUME_ATTRS_MAX */
	uint32_t nattrs;
};

struct ts_volume {
	struct ts_vpool *pool;
	struct vol *vol;
};

struct ts_vpool {
	struct ts_member *m;
	pthread_rwlock_t tree;
	pthread_mutex_t commit_mu;
	pthread_mutex_t mu;
	pthread_cond_t cond;

	/* geometry, in TS_VOLUME_BLOCK blocks from the start of the member */
	uint64_t total_blocks, slot_blocks, log_blocks, log_start, data_start, data_blocks;
	uint64_t uuid_lo;
	uint8_t uuid[16];

	/* durable state */
	uint64_t gen;       /* superblock generation; checkpoint slot = gen % 2 */
	uint64_t log_pos;   /* next log block to write */
	uint64_t last_ckpt_bytes;
	int need_ckpt;      /* a log write failed: next commit writes a checkpoint */
	int replaying;

	/* allocator: bit set = in use */
	uint64_t *bitmap;
	uint64_t nfree, cursor;
	uint64_t *pending;  /* freed since the last commit */
	size_t npending, pcap;
	size_t pres; /* slots held for writes in flight (vp_pending_reserve keeps pcap >= npending + pres) */

	/* tables, sorted by id (ids only grow, so appends keep them sorted) */
	struct layer **layers;
	size_t nlayers, lcap;
	struct vol **vols;
	size_t nvols, vcap;
	uint64_t next_id;

	/* records since the last commit; rres bytes are promised to in-flight writes */
	uint8_t *rec;
	size_t rlen, rcap, rres;
	uint8_t *logbuf; /* LOG_CHUNK blocks, used by commits only (commit_mu) */
};

/* record types */
enum {
	R_IDS = 1,
	R_LAYER_NEW,
	R_LAYER_SET,
	R_LAYER_REMOVE,
	R_VOL_NEW,
	R_VOL_SET,
	R_VOL_DEL,
	R_MAP,
	R_MAP_RUN,
	R_VOL_ATTR,     /* struct r_attr, then len value bytes: set */
	R_VOL_ATTR_DEL, /* struct r_attr with len 0: delete */
};

struct r_map {
	uint64_t layer, grain, val; /* val 0: remove the entry */
};

#define R_HDR 4u
#define R_MAP_SIZE (R_HDR + sizeof(struct r_map))

#define BS TS_VOLUME_BLOCK

/* record payloads (R_LAYER_*, R_VOL_*, R_MAP_RUN) */
struct r_layer {
	uint64_t id, parent, vol, size, ctime;
	uint32_t flags, pad;
	char name[TS_VOLUME_NAME_MAX];
};

struct r_vol {
	uint64_t id, head, size, ctime;
	char name[TS_VOLUME_NAME_MAX];
};

struct r_attr {
	uint64_t vol;
	uint32_t len, pad;
	char name[TS_VOLUME_ATTR_NAME_MAX];
};

struct r_run {
	uint64_t layer, start;
	uint32_t n, pad;
};

/* vpool.c (records, allocator) and vpool_log.c (vp_commit), called with p->mu held
 * (vp_commit() without it) */
int vp_rec_reserve(struct ts_vpool *p, size_t bytes);
void vp_rec_put_reserved(struct ts_vpool *p, unsigned type, const void *payload, size_t len);
void vp_rec_put_reserved2(struct ts_vpool *p, unsigned type, const void *a, size_t alen,
			  const void *b, size_t blen);
void vp_rec_unreserve(struct ts_vpool *p, size_t bytes);
uint64_t vp_alloc_block(struct ts_vpool *p);
void vp_free_now(struct ts_vpool *p, uint64_t pba);
int vp_pending_reserve(struct ts_vpool *p, size_t n);
void vp_free_later(struct ts_vpool *p, uint64_t pba);
uint64_t vp_resolve(const struct layer *l, uint64_t grain);
int vp_commit(struct ts_vpool *p);
/* vpool.c: tree lookups, tables, apply (p->mu held) */
struct layer *vp_layer_find(const struct ts_vpool *p, uint64_t id);
size_t vp_vol_pos(const struct ts_vpool *p, uint64_t id);
struct vol *vp_vol_find(const struct ts_vpool *p, uint64_t id);
size_t vp_layer_pos(const struct ts_vpool *p, uint64_t id);
int vp_grow(void **arr, size_t *cap, size_t need, size_t elem);
int vp_bit_test_set(struct ts_vpool *p, uint64_t pba);
void vp_release_pending(struct ts_vpool *p, size_t n);
void vp_layer_free(struct layer *l);
int vp_apply_layer_new(struct ts_vpool *p, const struct r_layer *r, struct layer *pre);
int vp_apply_layer_set(struct ts_vpool *p, const struct r_layer *r);
void vp_layer_unlink(struct ts_vpool *p, struct layer *l);
int vp_apply_layer_remove(struct ts_vpool *p, uint64_t id);
int vp_apply_vol_new(struct ts_vpool *p, const struct r_vol *r, struct vol *pre);
int vp_apply_vol_set(struct ts_vpool *p, const struct r_vol *r);
int vp_apply_vol_del(struct ts_vpool *p, uint64_t id);
void vp_vol_free(struct vol *v);
struct vattr *vp_attr_find(const struct vol *v, const char *name);
int vp_apply_attr_set(struct ts_vpool *p, const struct r_attr *r, const void *val);
int vp_apply_attr_del(struct ts_vpool *p, const struct r_attr *r);
int vp_apply_stream(struct ts_vpool *p, const uint8_t *b, size_t len);
/* vpool_log.c: records of the tree's objects, index rebuild */
void vp_layer_rec(const struct layer *l, struct r_layer *r);
void vp_vol_rec(const struct vol *v, struct r_vol *r);
int vp_build_index(const struct layer *top, struct rmap *out);

/* vio.c: submit, in order, the IOs queued while \p v was quiesced; called with no
 * lock held by the thread that dropped v->quiesce to 0 and set v->draining.
 * Stops (leaving the rest queued) if the volume is quiesced again meanwhile. */
void vio_drain(struct ts_vpool *p, struct vol *v);

#endif
