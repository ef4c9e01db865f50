/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Node attach: turn an iSCSI LUN into a local block device without a kernel
 * iSCSI initiator.
 *
 * ts_attach_open() logs in to the LUN with libiscsi (a user-mode initiator),
 * exposes it as one regular file through FUSE, binds that file to a loop
 * device and hands back the loop device's path (/dev/loopN). Everything the
 * kernel sends to the loop device reaches the FUSE file and becomes SCSI
 * READ(16) / WRITE(16) / SYNCHRONIZE CACHE(16) on the iSCSI session, and
 * discards become UNMAP where the LUN reads unmapped blocks as zeroes.
 *
 *   /dev/loopN --(buffered, no direct IO)--> <mountdir>/lun (FUSE, direct_io)
 *     --> attach thread --> libiscsi --> TCP --> target
 *
 * One attach owns: an iSCSI session, a private FUSE mount in a fresh
 * directory (mode 0700) under \p mount_parent, one thread that runs the FUSE
 * session and the iSCSI event loop, and one loop device. ts_attach_close()
 * releases all of them; after it returns 0 there is no mount, loop device or
 * session left behind.
 *
 * The FUSE file accepts any offset and length: requests that do not cover
 * whole logical blocks are served by read-modify-write, serialised against
 * every other request that touches the same blocks. The loop device is set
 * to the LUN's logical block size, so block-layer IO is always aligned.
 *
 * Connection loss: libiscsi reconnects and re-logs-in automatically and
 * replays in-flight commands; unit attentions raised by the target on the
 * new session are consumed. Commands that still fail transiently (BUSY, TASK
 * SET FULL, timeouts, a unit attention) are retried a bounded number of
 * times before the request fails with -EIO.
 *
 * Kernel initiator: where `iscsiadm` and the iscsi_tcp module exist, a node
 * could log in with the kernel instead (ts_attach_kernel_available() tells).
 * This module always uses the user-space path; see docs/attach.md.
 *
 * Requires root (FUSE mount with allow_other, /dev/loop-control).
 *
 * THREAD SAFETY: ts_attach_open() and ts_attach_close() may be called from
 * any thread; one handle must not be closed twice or used after close. The
 * accessors are safe from any thread while the handle is open. Internally
 * the attach thread alone owns the libiscsi context and the FUSE session
 * after open returns; the caller's thread touches them only before that
 * thread starts and after it has been joined.
 */
#ifndef TS_ATTACH_H
#define TS_ATTACH_H

#include <stdbool.h>
#include <stdint.h>

/**
 * What to attach and how. Zero-initialise, then set \p url; every other field
 * has a default when 0 / NULL. New fields are added at the end.
 */
struct ts_attach_opts {
	/**
	 * iscsi://[user[%secret]@]host[:port]/target-iqn/lun. Credentials in the
	 * URL are used unless \p chap_user is set.
	 */
	const char *url;
	/** Initiator IQN; default "iqn.2026-11.io.tessera:attach". */
	const char *initiator_name;
	/** CHAP: the initiator's user name and secret (the target checks them). */
	const char *chap_user;
	const char *chap_secret;
	/**
	 * Mutual CHAP: the name and secret the target must prove it knows. Needs
	 * chap_user too.
	 */
	const char *target_user;
	const char *target_secret;
	/** Directory in which the private FUSE mount directory is created; default /run/tessera/attach. */
	const char *mount_parent;
	/** Expose the device read-only (loop device and FUSE file). */
	bool read_only;
	/** Per-command timeout in seconds; 0 = default 30. */
	int io_timeout_s;
	/** Session reconnect attempts after a connection loss; 0 = default (retry forever), < 0 = never. */
	int reconnect_max;
};

struct ts_attach;

/**
 * Log in, mount, bind a loop device.
 * \param opts  read during the call only.
 * \param out   set to the new handle on success.
 * \return 0; -EINVAL (bad URL or options); -EACCES (login refused, e.g. CHAP
 *   failure); -ENOENT (the portal does not serve that target); the socket's
 *   errno when the portal cannot be reached: -ECONNREFUSED (nothing listens),
 *   -EHOSTUNREACH / -ENETUNREACH, -ECONNRESET (dropped during login),
 *   -ETIMEDOUT (no answer: connect + login are bounded by io_timeout_s);
 *   -EIO (other SCSI or session failure); -EPERM (not root); -ENOMEM. On
 *   failure nothing is left behind.
 */
int ts_attach_open(const struct ts_attach_opts *opts, struct ts_attach **out);

/** "/dev/loopN". Valid until ts_attach_close() succeeds. */
const char *ts_attach_device_path(const struct ts_attach *a);

/** Path of the FUSE file backing the loop device. Valid until close. */
const char *ts_attach_file_path(const struct ts_attach *a);

/** LUN size in bytes. */
uint64_t ts_attach_size(const struct ts_attach *a);

/** LUN logical block size in bytes (also the loop device's). */
uint32_t ts_attach_block_size(const struct ts_attach *a);

/**
 * Detach: unbind the loop device, unmount FUSE, log out, free the handle.
 * \return 0 (handle freed; NULL is a no-op returning 0), or -EBUSY when the
 *   loop device is still held exclusively (mounted, or opened O_EXCL):
 *   nothing is changed and the handle stays valid, so the caller may unmount
 *   and retry. Other errors during teardown are logged; the handle is freed
 *   and 0 returned once the loop device is released.
 */
int ts_attach_close(struct ts_attach *a);

/**
 * After the volume grew on the target: learn the LUN's new capacity (READ
 * CAPACITY over a short second session), show it in the FUSE file and
 * resize the loop device (LOOP_SET_CAPACITY). Returns 0 and the device's
 * size in bytes in *\p size, or -errno / a login error. Never shrinks.
 */
int ts_attach_refresh(struct ts_attach *a, uint64_t *size);

/**
 * true if this host could attach with the kernel initiator (an `iscsiadm`
 * on PATH and the iscsi_tcp module loaded or loadable). Informational only.
 */
bool ts_attach_kernel_available(void);

#endif /* TS_ATTACH_H */
