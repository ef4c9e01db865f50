/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * LDM: the local disk manager. Virtual disks (vdisks) carved from the
 * extents of one node's PEM, plus a member adapter so an array group can use
 * a vdisk through the asynchronous member interface.
 *
 * A vdisk is identified by a 16-byte uuid and has a size (a multiple of
 * TS_LDM_BLOCK_SIZE), a name (up to TS_LDM_NAME_MAX - 1 bytes) and a 64-bit
 * user tag. It owns ceil(size / extent_size) extents, which may lie on any
 * of the node's disks. There is no LDM metadata outside the PEM: each extent
 * carries the PEM owner record (vdisk uuid, index in the vdisk), and the
 * extent with index 0 also carries the vdisk descriptor (size, extent count,
 * name, tag) in the owner data. ts_ldm_open() rebuilds every vdisk from
 * those records; nothing else is needed after a restart.
 *
 * Crash safety: a descriptor only becomes visible ("committed") once every
 * extent it names is allocated and zeroed; create and grow allocate first,
 * zero, then commit record 0 in one superblock update. Delete frees record 0
 * first. ts_ldm_open() reclaims (frees) what a crash left behind: extents of
 * a uuid with no committed record 0, and extents beyond a committed
 * descriptor's count. The PEM only opens a complete disk set, so a record 0
 * is never merely "on a missing disk". A create or grow that fails part-way
 * (-ENOMEM, IO error) may leave such records too; the next create or grow of
 * the same uuid frees them first, so a retry never doubles a (uuid, index).
 *
 * The first 1 MiB of a vdisk is the array group's (it keeps its member
 * superblock there); the LDM never reads or writes vdisk data on its own.
 * New vdisks and grown ranges read as zeroes.
 *
 * Data IO is plain pread/pwrite on the PEM disks (page cache). A write
 * returns once the data is in the page cache; TS_LDM_FUA makes it durable
 * (fdatasync of the disks it touched) before returning; ts_ldm_flush()
 * makes every write that returned before it durable.
 *
 * Errors: 0 or -errno / TS_ERR_*: -EINVAL (bad argument or unaligned IO),
 * -ENOENT (no such vdisk), -EEXIST (uuid taken), -EBUSY (delete with a
 * member adapter alive), TS_ERR_NO_SPACE, -ENOMEM, -errno from IO.
 *
 * THREAD SAFETY: every function may be called from any thread. Locks, in
 * the order taken: ldm->lock (the vdisk list; create, delete, resize,
 * label) -> vd->map_lock (rwlock; IO holds it shared, resize exclusive) ->
 * the PEM's lock. A vdisk handle stays valid until ts_ldm_delete() of it or
 * ts_ldm_close(); the caller must not delete a vdisk with IO in flight.
 */
#ifndef TS_LDM_H
#define TS_LDM_H

#include <stddef.h>
#include <stdint.h>

#include "dataplane/member/member.h"
#include "dataplane/pem/pem.h"

/** Block size of every vdisk: IO offsets and lengths are multiples of it. */
#define TS_LDM_BLOCK_SIZE 4096u
/** Name buffer size, NUL included. */
#define TS_LDM_NAME_MAX 48
/** Bytes at the start of each vdisk reserved for the array group's superblock. */
#define TS_LDM_AGRP_RESERVED (1024u * 1024u)
/** ts_ldm_write() flag: durable before return. */
#define TS_LDM_FUA 0x1u
/** Worker threads per member adapter. */
#define TS_LDM_MEMBER_WORKERS 2

struct ts_ldm;
struct ts_ldm_vdisk;

/** What ts_ldm_list() and ts_ldm_vdisk_info() report. */
struct ts_ldm_vdisk_info {
	uint8_t uuid[16];
	uint64_t size;                /**< bytes */
	uint64_t tag;                 /**< user tag (the array group marks its members) */
	uint32_t extents;
	char name[TS_LDM_NAME_MAX];
	uint32_t fence_epoch;         /**< fencing floor of its member LUN (ts_ldm_set_fence), 0: never set */
	uint32_t fence_node;
};

/**
 * Open the LDM over \p pem (borrowed: it must stay open until
 * ts_ldm_close()). Rebuilds every vdisk from the PEM's owner records and
 * frees the leftovers of interrupted creates, grows and deletes (logged).
 * A vdisk whose records are inconsistent (an index missing, or twice) is
 * logged and left out, its extents untouched.
 * Returns 0 and *\p out, -ENOMEM, or -errno from freeing leftovers.
 */
int ts_ldm_open(struct ts_pem *pem, struct ts_ldm **out);

/** Free the LDM and its vdisk handles (data stays on disk). NULL: no-op. No IO in flight, no member adapter alive. */
void ts_ldm_close(struct ts_ldm *ldm);

/**
 * Create a vdisk of \p size bytes (a non-zero multiple of
 * TS_LDM_BLOCK_SIZE), named \p name (NULL: "", truncated to
 * TS_LDM_NAME_MAX - 1) with user tag \p tag. Its data reads as zeroes.
 * Durable when this returns. *\p out (may be NULL) gets the handle.
 * Returns 0, -EINVAL (zero uuid, bad size), -EEXIST, TS_ERR_NO_SPACE,
 * -ENOMEM, -errno.
 */
int ts_ldm_create(struct ts_ldm *ldm, const uint8_t uuid[16], uint64_t size, const char *name,
		  uint64_t tag, struct ts_ldm_vdisk **out);

/** Find a vdisk by uuid. 0 and *\p out, or -ENOENT. */
int ts_ldm_get(struct ts_ldm *ldm, const uint8_t uuid[16], struct ts_ldm_vdisk **out);

/**
 * Describe up to \p max vdisks into \p arr (may be NULL when max is 0), in
 * no particular order. Returns the total number of vdisks (may exceed max).
 */
int ts_ldm_list(struct ts_ldm *ldm, struct ts_ldm_vdisk_info *arr, uint32_t max);

/** Describe one vdisk. */
void ts_ldm_vdisk_info(struct ts_ldm_vdisk *vd, struct ts_ldm_vdisk_info *info);

/**
 * Grow \p vd to \p new_size bytes (multiple of the block size, >= the
 * current size; equal is a no-op). The new range reads as zeroes. Durable
 * on return. Member adapters made before keep reporting the old size.
 * Returns 0, -EINVAL (shrink or unaligned), TS_ERR_NO_SPACE, -ENOMEM, -errno.
 */
int ts_ldm_resize(struct ts_ldm_vdisk *vd, uint64_t new_size);

/** Change name and tag (durable on return). 0, -ENOMEM or -errno. */
int ts_ldm_set_label(struct ts_ldm_vdisk *vd, const char *name, uint64_t tag);

/**
 * Store the fencing floor of the vdisk's member LUN (docs/fencing.md) in its
 * descriptor: durable on return (one superblock write). The LDM only keeps
 * it; the member LUN decides when it changes. 0, -EINVAL or -errno (the old
 * value stays).
 */
int ts_ldm_set_fence(struct ts_ldm_vdisk *vd, uint32_t epoch, uint32_t node);

/**
 * Delete \p vd and free its extents; the handle is freed too. Returns 0,
 * -EBUSY (a member adapter is alive), -ENOMEM or -errno (the vdisk may then
 * be half freed on disk; the next ts_ldm_open() finishes the job).
 */
int ts_ldm_delete(struct ts_ldm_vdisk *vd);

/**
 * Block IO. \p off and \p len multiples of TS_LDM_BLOCK_SIZE, len > 0, within
 * the vdisk. write with TS_LDM_FUA is durable on return. unmap makes the
 * range read as zeroes (hole punch / BLKZEROOUT / zero writes). flush makes
 * every write that returned before it durable.
 * Returns 0, -EINVAL, or -errno from the disks.
 */
int ts_ldm_read(struct ts_ldm_vdisk *vd, uint64_t off, void *buf, uint64_t len);
int ts_ldm_write(struct ts_ldm_vdisk *vd, uint64_t off, const void *buf, uint64_t len,
		 uint32_t flags);
int ts_ldm_unmap(struct ts_ldm_vdisk *vd, uint64_t off, uint64_t len);
int ts_ldm_flush(struct ts_ldm_vdisk *vd);

/**
 * Member adapter: a struct ts_member over \p vd (size and uuid of the vdisk,
 * block size TS_LDM_BLOCK_SIZE, node id of the PEM, name "node<N>/<name>").
 * IOs run on TS_LDM_MEMBER_WORKERS threads owned by the member, so several
 * proceed in parallel; callbacks fire on those threads. Destroy it with
 * ts_member_destroy() (joins the workers) before deleting the vdisk or
 * closing the LDM, and never from one of its own completion callbacks (it
 * joins the workers that run them). Returns 0 and *\p out, -ENOMEM, or
 * -errno (threads).
 */
int ts_ldm_vdisk_member(struct ts_ldm_vdisk *vd, struct ts_member **out);

#endif /* TS_LDM_H */
