/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * PEM: the physical extent manager. One per node, over the node's disks
 * (regular files or block devices), each cut into fixed-size extents.
 *
 * Every disk carries a superblock (see docs/on-disk-format.md): identity
 * (cluster uuid, node id, disk uuid, position in the node's disk set),
 * geometry (extent size and count) and the allocation table: for each
 * extent, free or the owner record (owner uuid, index within the owner,
 * flags and TS_PEM_OWNER_DATA bytes of opaque owner data). The LDM is the
 * owner: it keeps its virtual disk descriptor in the owner data of a
 * vdisk's extent 0.
 *
 * Invariants:
 *  - The superblock is double-buffered: two slots, each a complete copy
 *    with a sequence number and a CRC64 over the whole copy. An update
 *    writes the next sequence number into the slot that does not hold the
 *    newest copy, then fdatasync()s. Open trusts the valid copy with the
 *    highest sequence number. A torn or cut write fails its CRC and the
 *    previous copy stays in force, so a crash at any instant leaves the old
 *    or the new state, never a mix.
 *  - An allocation, free or owner-data change is durable (written and
 *    fdatasync'd) before the call returns success. On failure the in-memory
 *    state is unchanged.
 *  - A node's disks form a set fixed at format time; open requires every
 *    disk of the set, so an owner never sees half of its extents.
 *  - Open never writes. Format refuses a disk that already carries a valid
 *    Tessera superblock unless TS_PEM_FORMAT_FORCE is given.
 *  - One PEM per disk: format and open take an exclusive flock() on every
 *    disk (-EBUSY if another PEM, in this or another process, holds it).
 *
 * Errors: 0 or -errno, or TS_ERR_CORRUPT (both copies invalid),
 * TS_ERR_FOREIGN (not a Tessera disk, or another cluster / node / disk set),
 * TS_ERR_GEOMETRY (extent sizes differ, bad extent size), TS_ERR_TOO_SMALL
 * (no room for one extent, or the device is shorter than its superblock
 * says), TS_ERR_VERSION, TS_ERR_NO_SPACE, -EEXIST (format without force over
 * a Tessera disk), -ENODEV (a disk of the set is missing), -EBUSY (a disk
 * is held by another PEM, or the same disk is given twice). Every refusal
 * logs one ts_log line with disk=<path>.
 *
 * THREAD SAFETY: one mutex per PEM (pem->lock) guards the allocation state
 * and serialises superblock writes; every function may be called from any
 * thread. Extent IO (ts_pem_extent_pread/pwrite/zero/sync) takes no lock:
 * it uses pread/pwrite on the disk's descriptor, safe concurrently. The
 * caller must not free an extent while it still does IO to it.
 */
#ifndef TS_PEM_H
#define TS_PEM_H

#include <stddef.h>
#include <stdint.h>

/** Bytes of opaque owner data persisted with each allocated extent. */
#define TS_PEM_OWNER_DATA 96
/** Smallest extent size (bytes); extent sizes are powers of two. */
#define TS_PEM_MIN_EXTENT (64u * 1024u)
/** Most disks in one node's set. */
#define TS_PEM_MAX_DISKS 64

/** Format flags. */
#define TS_PEM_FORMAT_FORCE 0x1u /**< overwrite a disk with a valid Tessera superblock */

struct ts_pem;

/** Address of one extent: disk position in the node's set and index on that disk. */
struct ts_pem_extent {
	uint32_t disk;
	uint32_t index;
};

/** Who owns an allocated extent. Persisted in the superblock. */
struct ts_pem_owner {
	uint8_t uuid[16];                  /**< owner (for the LDM: the vdisk uuid); not all-zero */
	uint32_t index;                    /**< position within the owner */
	uint32_t flags;                    /**< owner's flags, opaque to the PEM */
	uint8_t data[TS_PEM_OWNER_DATA];   /**< owner's bytes, opaque to the PEM */
};

/** Identity and geometry, for format and (identity only) open. */
struct ts_pem_opts {
	uint8_t cluster_uuid[16];
	uint32_t node_id;
	uint64_t extent_size; /**< format only: power of two >= TS_PEM_MIN_EXTENT */
	uint32_t flags;       /**< format only: TS_PEM_FORMAT_FORCE */
};

/**
 * Format \p n disks (paths) as one node's disk set. Each gets a fresh disk
 * uuid, its position in the set and an empty allocation table; both
 * superblock copies are written and fdatasync'd. Regular files keep their
 * size (create them with the size you want).
 * Returns 0; -EINVAL (bad opts, n == 0 or > TS_PEM_MAX_DISKS); TS_ERR_GEOMETRY
 * (extent size not a power of two or below TS_PEM_MIN_EXTENT);
 * TS_ERR_TOO_SMALL (a disk cannot hold one extent); -EEXIST (a disk holds a
 * valid Tessera superblock and no TS_PEM_FORMAT_FORCE); -EBUSY (a disk is
 * open in a PEM); -ENOMEM; -errno from IO.
 * Every disk is checked before any is written; writing is not atomic across
 * disks, so after a failure part-way re-run with TS_PEM_FORMAT_FORCE.
 */
int ts_pem_format(const char *const *paths, uint32_t n, const struct ts_pem_opts *opts);

/**
 * Open a node's disk set: read and validate every disk's superblock (newest
 * valid copy), check each belongs to opts->cluster_uuid / opts->node_id, that
 * they agree on the extent size and form one complete set. Writes nothing.
 * Paths may be given in any order; extents are addressed by the disk's
 * position in the set (struct ts_pem_extent.disk), not by the path's index.
 * Returns 0 and sets *\p out, or an error listed in the file comment.
 * Close with ts_pem_close().
 */
int ts_pem_open(const char *const *paths, uint32_t n, const struct ts_pem_opts *opts,
		struct ts_pem **out);

/** Close the disks and free the PEM. NULL is a no-op. No call may be in progress. */
void ts_pem_close(struct ts_pem *pem);

/** Node id of the set. */
uint32_t ts_pem_node_id(const struct ts_pem *pem);
/** Extent size in bytes. */
uint64_t ts_pem_extent_size(const struct ts_pem *pem);
/** Number of disks in the set. */
uint32_t ts_pem_disk_count(const struct ts_pem *pem);
/** Extents on disk \p disk (0 if out of range). */
uint64_t ts_pem_disk_extents(const struct ts_pem *pem, uint32_t disk);
/** Free extents over all disks. */
uint64_t ts_pem_free_extents(const struct ts_pem *pem);
/** Path of disk \p disk as given to open (valid until close), or NULL. */
const char *ts_pem_disk_path(const struct ts_pem *pem, uint32_t disk);

/**
 * Allocate \p n extents, extent i owned by owners[i]; the addresses go to
 * out[i]. Extents are taken from the disks with the most free extents first
 * (spreading an owner over the set). The records are persisted disk by disk,
 * one superblock write each; the disk that holds out[0] is written LAST, so
 * an owner that keeps its descriptor in record 0 sees it only once all its
 * other records are durable. On -EINVAL, TS_ERR_NO_SPACE or -ENOMEM
 * nothing changed. On an IO error (or a crash) part-way, the disks written
 * before keep their new records (owners clean those up: see ts_ldm_open())
 * and the PEM is failed: every later update returns -EIO; close and reopen.
 * Returns 0; -EINVAL (n == 0, zero owner uuid); TS_ERR_NO_SPACE; -ENOMEM;
 * -EIO (failed PEM); -errno from IO.
 */
int ts_pem_alloc(struct ts_pem *pem, uint32_t n, const struct ts_pem_owner *owners,
		 struct ts_pem_extent *out);

/**
 * Free \p n extents. The disk holding ext[0] is written FIRST (the reverse of
 * ts_pem_alloc), so an owner's record 0 disappears before its other records.
 * Returns 0; -EINVAL (out of range, an extent free or listed twice: nothing
 * changed); -ENOMEM (nothing changed); -EIO (failed PEM); -errno from IO
 * (as for ts_pem_alloc(): part may be freed, the PEM is failed).
 */
int ts_pem_free(struct ts_pem *pem, uint32_t n, const struct ts_pem_extent *ext);

/**
 * Replace the owner record of an allocated extent (same durability as
 * alloc). Returns 0; -EINVAL (free extent, out of range, zero uuid); -errno.
 */
int ts_pem_set_owner(struct ts_pem *pem, struct ts_pem_extent ext,
		     const struct ts_pem_owner *owner);

/**
 * Read the owner record of extent \p ext into *\p owner.
 * Returns 0, -ENOENT (extent free) or -EINVAL (out of range).
 */
int ts_pem_get_owner(struct ts_pem *pem, struct ts_pem_extent ext, struct ts_pem_owner *owner);

/**
 * Visit every allocated extent in (disk, index) order. \p fn returns 0 to go
 * on or non-zero to stop (that value is returned). The PEM lock is held:
 * \p fn must not call back into the PEM.
 */
int ts_pem_foreach(struct ts_pem *pem,
		   int (*fn)(void *arg, struct ts_pem_extent ext, const struct ts_pem_owner *owner),
		   void *arg);

/**
 * Data IO inside one extent: \p off + \p len must fit in the extent.
 * pread/pwrite return 0, -EINVAL or -errno. zero() makes the range read back
 * as zeroes (hole punch on files, BLKZEROOUT on block devices, or written
 * zeroes). sync() fdatasyncs disk \p disk (UINT32_MAX: all disks).
 */
int ts_pem_extent_pread(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off,
			void *buf, size_t len);
int ts_pem_extent_pwrite(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off,
			 const void *buf, size_t len);
int ts_pem_extent_zero(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off, uint64_t len);
int ts_pem_sync(struct ts_pem *pem, uint32_t disk);

#endif /* TS_PEM_H */
