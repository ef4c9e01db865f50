/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Array group (AGRP): k+m members (LDM virtual disks, local or remote, each
 * tagged with its node) presented as one block volume, Reed-Solomon coded
 * through dataplane/ec.
 *
 * Layout (docs/ec-layout.md): each member holds a metadata area (group
 * superblock, double-buffered, in its first 1 MiB; then the write-intent
 * bitmap and one out-of-date bitmap per slot) and a data area of equal-sized
 * chunks. Stripe s is chunk s of every member; the k data and m parity roles
 * rotate by one member per stripe so parity is spread evenly. The volume's
 * byte b lives in stripe b / (k*chunk), data role (b % (k*chunk)) / chunk.
 *
 * Invariants:
 *  - While a region's write-intent bit is clear on disk, parity of every
 *    stripe in it agrees with its data (bits are set durably before writing,
 *    cleared only after a flush made the writes durable).
 *  - While data roles of a stripe are missing, a write to it is preceded by a
 *    durable rescue record of those roles' post-write values (the degraded
 *    write hole; docs/ec-layout.md).
 *  - A slot that missed a write has its out-of-date bit set for that region,
 *    durably on the live members, before the write is issued.
 *  - The generation in the superblocks of the live members is bumped on every
 *    membership change; a member with an older generation is stale: never
 *    read, only resynced (its out-of-date regions rebuilt) before rejoining.
 *
 * IO: asynchronous calls return 0 and the callback fires exactly once (on a
 * group worker thread), or return <0 and it never fires. The sync wrappers
 * submit and wait. With up to m members out, reads decode and writes
 * continue; member IO errors mark the member failed instead of failing the
 * user IO.
 *
 * Ownership: members are borrowed. They must outlive the group (or, for a
 * replaced slot, until ts_agrp_replace() returns); the caller destroys them.
 *
 * THREAD SAFETY: every function may be called from any thread, except
 * ts_agrp_close(), which must be the last call. Internally, lock order:
 * (1) the stripe range lock (in-flight stripe ranges; a request holds one
 * range covering all its stripes, shared for reads and exclusive for
 * writes, and waits, in arrival order, for the overlapping holds before it:
 * dataplane/rangelock),
 * (2) state_lock (member states, generation, superblock writes),
 * (3) bm_lock (bitmaps, their persistence), (4) queue_lock (request queue,
 * leaf). A thread never holds two of them out of this order, and never holds
 * (2)-(4) across a user callback. Member completions take no group lock.
 * ts_agrp_add_member()/ts_agrp_replace() may run while IO flows; they take
 * the range lock of what they rebuild, and the whole volume's to rejoin.
 */
#ifndef TS_AGRP_H
#define TS_AGRP_H

#include <stdint.h>

#include "dataplane/member/member.h"

#define TS_AGRP_MAX_MEMBERS 40
#define TS_AGRP_SB_AREA (1024u * 1024u) /**< first MiB of each member: superblocks */

/* ---- placement (used by the controller) ---- */

/** A node offered to placement: its id and how many member slots it can host. */
struct ts_agrp_node {
	uint32_t node_id;
	uint32_t slots;
};

/**
 * Place \p nfrag fragments on \p nnodes nodes as evenly as possible: the
 * number of fragments on any two nodes differs by at most one where slot
 * counts allow, and consecutive fragments go to different nodes where
 * possible (so 4+2 on 3 nodes puts two on each). out_node[i] receives the
 * node id for fragment i. Returns 0, -EINVAL (bad args, duplicate node id)
 * or TS_ERR_NO_SPACE (fewer slots than fragments).
 */
int ts_agrp_place(const struct ts_agrp_node *nodes, unsigned nnodes, unsigned nfrag,
		  uint32_t *out_node);

/* ---- on-disk identity ---- */

/** What a member's group superblock says (ts_agrp_probe()). */
struct ts_agrp_info {
	uint8_t group_uuid[16];
	uint32_t k, m;
	uint32_t chunk_size;
	uint32_t member_index;       /**< this member's slot */
	uint64_t generation;
	uint64_t nstripes;
	uint64_t data_offset;        /**< bytes: start of the chunk area */
	struct {
		uint8_t uuid[16];
		uint32_t node_id;
	} slots[TS_AGRP_MAX_MEMBERS]; /**< k+m entries valid */
};

/**
 * Read and check a member's group superblock (both copies; the valid one
 * with the highest sequence wins). Returns 0 and fills *info,
 * TS_ERR_CORRUPT (no copy passes CRC/sanity; or a blank member),
 * TS_ERR_VERSION, or a member IO error.
 */
int ts_agrp_probe(struct ts_member *m, struct ts_agrp_info *info);

/* ---- group lifecycle ---- */

struct ts_agrp;

/**
 * Called before every write is applied (the hook of the replica journal,
 * dataplane/replog): \p missing is the bitmask of slots that will not
 * receive the write (0 when every member is live). Return 0 to proceed, <0
 * to fail the write with that error. If members fail while the write is
 * applied, the hook is called once more afterwards (before the write
 * completes) with the slots that missed it. Called on a worker thread, with the
 * write's stripe range locked, so overlapping writes reach it in the order
 * they are applied. Synchronous member IO is allowed.
 */
typedef int (*ts_agrp_write_hook_fn)(void *ctx, uint64_t offset, uint64_t len, const void *buf,
				     uint64_t missing);

/** Options; zero-initialise and set what you need (the struct may grow). */
struct ts_agrp_opts {
	uint32_t chunk_size;     /**< create: stripe unit, bytes (default 64 KiB) */
	unsigned nthreads;       /**< worker threads (default 4) */
	ts_agrp_write_hook_fn write_hook; /**< optional, see above */
	void *write_hook_ctx;
};

/**
 * Format \p n = k+m members as a new group and open it. members[i] becomes
 * slot i. Every member needs the same block size; the group uses the
 * smallest member size. Returns 0 and *out, -EINVAL (NULLs, k or m out of
 * range [1,TS_EC_MAX_K]/[1,TS_EC_MAX_M], n != k+m, chunk size not a multiple
 * of the block size or not a power of two), TS_ERR_GEOMETRY (block sizes
 * differ), TS_ERR_TOO_SMALL (a member cannot hold the metadata and one
 * stripe), -ENOMEM, or a member IO error. Existing data is overwritten.
 */
int ts_agrp_create(struct ts_member *const *members, unsigned n, unsigned k, unsigned m,
		   const struct ts_agrp_opts *opts, struct ts_agrp **out);

/**
 * Assemble a group from the members found (any order, any subset). The
 * group comes up as soon as >= k members carry the current generation
 * (degraded; the generation is bumped), fully once all are. Stale members
 * (older generation) are resynced and rejoin. Dirty write-intent regions are
 * resynced when all members are present; when degraded, stripes written
 * degraded are repaired from their rescue records and the rest of a dirty
 * region is not trusted (reads that would decode a missing fragment there
 * fail with -EIO) until the members return. Returns 0 and *out, -EINVAL, TS_ERR_FOREIGN (members of
 * different groups), TS_ERR_GEOMETRY (same group, different k/m/chunk),
 * TS_ERR_CORRUPT (no usable member: all superblocks corrupt),
 * TS_ERR_DEGRADED (fewer than k current members), -ENOMEM, or an IO error.
 */
int ts_agrp_assemble(struct ts_member *const *members, unsigned n,
		     const struct ts_agrp_opts *opts, struct ts_agrp **out);

/**
 * Hand a member that appeared (late at assembly, or back after a failure) to
 * a running group. Its superblock picks the slot; if its generation is
 * current or older it is resynced (out-of-date regions rebuilt) and rejoins
 * with a generation bump. Returns 0, TS_ERR_FOREIGN (another group, or a
 * uuid that is not the slot's), -EEXIST (slot already live), or an error.
 */
int ts_agrp_add_member(struct ts_agrp *g, struct ts_member *m);

/**
 * Mark every region out of date for every slot that is not live now, so
 * that each of those members, when it comes back, is resynced in full and
 * not only where this group wrote without it. An engine that takes a group
 * over calls it right after assembly: a member it could not reach (and so
 * not fence) may have received writes from the previous owner that no
 * bitmap of this group records (docs/scale-out.md). Returns how many slots
 * were marked (0: all live), or an error (a fenced group: TS_ERR_FENCED).
 */
int ts_agrp_distrust_absent(struct ts_agrp *g);

/**
 * Replace slot \p slot (which must not be live) with blank member \p m:
 * formats it, rebuilds every stripe from the others, and records its uuid
 * and node in the superblocks (generation bump). Returns 0, -EINVAL, -EEXIST
 * (slot live), TS_ERR_TOO_SMALL, TS_ERR_DEGRADED (too few members to
 * rebuild), or an IO error.
 */
int ts_agrp_replace(struct ts_agrp *g, unsigned slot, struct ts_member *m);

/**
 * Flush (makes completed writes durable), clear idle intent bits, stop the
 * workers and free the group. NULL is a no-op. No IO may be in flight.
 */
void ts_agrp_close(struct ts_agrp *g);

/* ---- state ---- */

/** Volume size in bytes. */
uint64_t ts_agrp_size(const struct ts_agrp *g);
/** Block size in bytes: offsets and lengths must be multiples of it. */
uint32_t ts_agrp_block_size(const struct ts_agrp *g);
/** Current generation. */
uint64_t ts_agrp_generation(struct ts_agrp *g);
/** Bitmask of live slots. */
uint64_t ts_agrp_live_mask(struct ts_agrp *g);
/** Health counters (ts_agrp_stats()). */
struct ts_agrp_stats {
	uint64_t live_mask;
	uint64_t ood_regions;     /**< regions some slot missed writes in (resync pending) */
	uint64_t ood_stripes;     /**< stripes in those regions: the degraded stripes */
	uint32_t region_stripes;  /**< stripes per bitmap region */
};
/** Fill *st (walks the out-of-date bitmaps; cheap enough for status calls). */
void ts_agrp_stats(struct ts_agrp *g, struct ts_agrp_stats *st);
/**
 * Non-zero once the group is fenced: a member refused an IO with
 * TS_ERR_FENCED, i.e. another engine took ownership of the group at a
 * newer epoch (docs/fencing.md). Sticky: from then on every read, write,
 * flush, add_member and replace fails with TS_ERR_FENCED before touching a
 * member, no member is marked failed, and no superblock, bitmap or rescue
 * record is written (close writes nothing either). The engine's way out is
 * to close the group; a new ownership (a new epoch) assembles it afresh.
 * 0 for NULL.
 */
int ts_agrp_fenced(struct ts_agrp *g);
/** Fill info (geometry, uuid, slots, generation) of the running group. */
void ts_agrp_get_info(struct ts_agrp *g, struct ts_agrp_info *info);

/* ---- IO ---- */

typedef void (*ts_agrp_cb)(void *arg, int status);

/**
 * Asynchronous read/write of \p len bytes at volume offset \p off (both
 * multiples of the block size, inside the volume). \p buf must stay valid
 * until the callback. Returns 0 (callback fires exactly once with 0, -EIO /
 * TS_ERR_DEGRADED when more than m members are out, or another error) or
 * -EINVAL / -ENOMEM (callback never fires).
 */
int ts_agrp_read(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf, ts_agrp_cb cb,
		 void *arg);
int ts_agrp_write(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf, ts_agrp_cb cb,
		  void *arg);
/** Asynchronous flush: every write completed before the call is durable at callback. */
int ts_agrp_flush(struct ts_agrp *g, ts_agrp_cb cb, void *arg);

/** Synchronous wrappers: submit and wait; return the IO status. */
int ts_agrp_read_sync(struct ts_agrp *g, uint64_t off, uint64_t len, void *buf);
int ts_agrp_write_sync(struct ts_agrp *g, uint64_t off, uint64_t len, const void *buf);
int ts_agrp_flush_sync(struct ts_agrp *g);

/* ---- the group as a block device ---- */

/**
 * Owner hooks and identity for ts_agrp_device_create(); every field is
 * optional (a zeroed struct, or NULL opts, serves one fixed group).
 */
struct ts_agrp_device_opts {
	const char *name;    /**< ts_member_info()->name; NULL: "agrp" */
	const uint8_t *uuid; /**< 16 bytes for ts_member_info()->uuid; NULL: zeroes */
	void *ctx;           /**< handed to the hooks */
	/**
	 * Called at every submission before the group is used: returns the
	 * group to serve this IO, or NULL to refuse it (the submission then
	 * fails with TS_ERR_DEGRADED). Without it: the group given at creation.
	 * Every call is matched by exactly one call of \p leave: after the
	 * IO's callback has returned, or before the failed submission returns.
	 * An owner that swaps the group underneath counts IOs between the two
	 * and waits for none to be left.
	 */
	struct ts_agrp *(*enter)(void *ctx);
	void (*leave)(void *ctx);
	/**
	 * A read the group failed: return 0 if the owner served it into \p buf
	 * some other way (e.g. from replicas), else nonzero and the read fails
	 * with the group's error. Runs on a group worker thread, where
	 * synchronous member IO is allowed.
	 */
	int (*read_fallback)(void *ctx, uint64_t off, uint64_t len, void *buf);
};

/**
 * Present array group \p g as a member (a block device of the group's size
 * and block size), for the layers above that consume members (the volume
 * pool, tests, benches). Reads, writes and flushes map to the group's
 * asynchronous calls and complete on a group worker thread; a FUA write is
 * the write and then a flush, chained from the write's completion, so the
 * submitter never waits; UNMAP is refused with -EOPNOTSUPP. The member
 * follows the contract of member.h (0 and the callback fires exactly once,
 * or <0 and it never fires).
 *
 * \p g is borrowed and must outlive the device (with an \p enter hook, the
 * groups it returns must live until the matching \p leave). \p opts is
 * copied; the strings and uuid it points to are copied too. Returns 0 and
 * sets *\p out, -EINVAL (g or out NULL) or -ENOMEM.
 */
int ts_agrp_device_create(struct ts_agrp *g, const struct ts_agrp_device_opts *opts,
			  struct ts_member **out);

/** Destroy a device made by ts_agrp_device_create(); no IO may be in flight. NULL is a no-op. */
void ts_agrp_device_destroy(struct ts_member *dev);

#endif /* TS_AGRP_H */
