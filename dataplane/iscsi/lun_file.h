/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * A LUN provider backed by a file (or by RAM): the test and bench vehicle of
 * the iSCSI target until the volume layer registers real volumes.
 *
 * Reads and writes that cannot block complete inline on the caller's thread:
 * on tmpfs/ramfs through a shared mapping of the file (writes by pwrite once
 * the file has holes), elsewhere by preadv2/pwritev2(RWF_NOWAIT) when the
 * kernel accepts it. The rest runs on a small pool of worker threads
 * (pread/pwrite/fdatasync, fallocate(PUNCH_HOLE) for unmap); LBA status uses
 * SEEK_DATA/SEEK_HOLE. RAM LUNs complete inline. All honour the
 * ts_iscsi_lun_ops contract: an op returns 0 and calls back exactly once, or
 * returns an error and never calls back. A file on tmpfs must not be
 * truncated by anyone else while it is a LUN (the mapping would fault).
 *
 * THREAD SAFETY: ops may be called from any thread; the work queue has one
 * mutex. ts_iscsi_file_lun_destroy() (or ops->destroy) joins the workers and
 * must be called with no IO in flight.
 */
#ifndef TS_ISCSI_LUN_FILE_H
#define TS_ISCSI_LUN_FILE_H

#include <stdint.h>

#include "dataplane/iscsi/iscsi.h"

struct ts_iscsi_file_lun;

/**
 * Open (creating and sizing it if needed) \p path as a LUN of \p size bytes;
 * \p path NULL makes a zero-filled RAM LUN. \p threads workers (0: 4).
 * 0 and *\p out, or -errno.
 */
int ts_iscsi_file_lun_create(const char *path, uint64_t size, unsigned threads,
			     struct ts_iscsi_file_lun **out);

/** The ops table to pass to ts_iscsi_lun_add() with the lun as ctx. */
const struct ts_iscsi_lun_ops *ts_iscsi_file_lun_ops(void);

/** Close and free. NULL is a no-op. Also reached through ops->destroy. */
void ts_iscsi_file_lun_destroy(struct ts_iscsi_file_lun *l);

#endif /* TS_ISCSI_LUN_FILE_H */
