/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internals of the attach module: the iSCSI LUN engine (lun.c), the FUSE
 * front (fuse.c); the loop devices are loop.h. Not installed.
 */
#ifndef TS_ATTACH_PRIV_H
#define TS_ATTACH_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "volumedriver/attach/attach.h"

/* ---- byte range -> block span ---- */

/** The whole logical blocks a byte range touches, and whether it is aligned. */
struct attach_span {
	uint64_t lba;     /**< first block */
	uint64_t nblocks; /**< blocks covered */
	bool aligned;     /**< off and len are whole blocks */
};

/** Compute the span of [off, off+len) for block size \p bs (power of two). len > 0. */
static inline struct attach_span attach_span_of(uint64_t off, uint64_t len, uint32_t bs)
{
	struct attach_span s;
	uint64_t end = off + len;

	s.lba = off / bs;
	s.nblocks = (end + bs - 1) / bs - s.lba;
	s.aligned = (off % bs) == 0 && (len % bs) == 0;
	return s;
}

/* ---- LUN engine (lun.c) ---- */

enum lun_op { LUN_READ = 0, LUN_WRITE, LUN_FLUSH, LUN_UNMAP };

/** Completion: \p status is the byte count for reads/writes, 0 for flush, or -errno. */
typedef void (*lun_cb)(void *arg, long status);

struct lun;

/**
 * Connect and log in (blocking, caller's thread, at most the IO timeout), then
 * READ CAPACITY(16). Returns 0 or -errno as listed for ts_attach_open().
 */
int lun_connect(const struct ts_attach_opts *o, struct lun **out);
/** Log out (best effort) and free. No IO may be pending. NULL is a no-op. */
void lun_disconnect(struct lun *l);
uint64_t lun_size(const struct lun *l);
/** Publish a larger capacity (any thread; readers see old or new). */
void lun_set_size(struct lun *l, uint64_t size);
uint32_t lun_block_size(const struct lun *l);
/** true if the LUN unmaps (LBPME) and reads unmapped blocks as zeroes (LBPRZ). */
bool lun_can_unmap_zero(const struct lun *l);

/**
 * Submit an IO of \p len bytes at byte \p off (any alignment; LUN_UNMAP:
 * whole blocks, \p buf NULL). \p buf must stay valid until \p cb fires. 0: cb fires exactly once, later, from
 * lun_service()/lun_tick(). <0: it never fires. Owner thread only.
 */
int lun_submit(struct lun *l, enum lun_op op, uint64_t off, uint64_t len, void *buf, lun_cb cb,
	       void *arg);
/** fd to poll and the events wanted (0 = none right now: poll again within 100 ms). */
int lun_fd(struct lun *l);
int lun_events(struct lun *l);
/** Process \p revents on the fd (0: timeouts and deferred work only). 0 or -errno (session dead). */
int lun_service(struct lun *l, int revents);
/** Complete every pending IO with -EIO now (libiscsi cancels its tasks locally). */
void lun_fail_all(struct lun *l);
/** IOs submitted and not yet completed. */
unsigned lun_pending(const struct lun *l);

/* ---- FUSE front (fuse.c) ---- */

struct attach_fuse;

/**
 * Mount a FUSE file system with one file, "lun", of \p l's size at a new
 * directory under \p parent and start the attach thread, which then owns \p l.
 */
int attach_fuse_start(struct lun *l, const char *parent, bool read_only, struct attach_fuse **out);
/** Path of the file. */
const char *attach_fuse_file(const struct attach_fuse *f);
/** Unmount, stop and join the thread, remove the directory. Returns \p l's ownership. */
void attach_fuse_stop(struct attach_fuse *f);
/** Drop the kernel's cached attributes of the file (after a size change). */
int attach_fuse_invalidate(struct attach_fuse *f);

#endif /* TS_ATTACH_PRIV_H */
