/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Remote members: a struct ts_member whose disk lives on another node and is
 * reached over user-mode iSCSI (libiscsi), so an array group sees local and
 * remote members through the same interface (dataplane/member/member.h).
 *
 * Each remote member owns one libiscsi session driven by a dedicated event
 * thread (poll loop on the session socket and an eventfd). Submitters push
 * IOs onto a locked queue and kick the eventfd; the thread turns them into
 * READ(16), WRITE(16) (FUA bit for TS_MEMBER_FUA), SYNCHRONIZE CACHE(16) and
 * UNMAP commands, many in flight at once, and runs the completion callbacks.
 *
 * Failure model (what an array group relies on):
 *  - every IO completes within opts.io_timeout_ms of its submission (plus one
 *    poll tick), never later: an IO the target does not answer in time fails
 *    with TS_ERR_MEMBER_FAILED, and the session it was sent on is dropped
 *    (every other IO in flight on it fails the same way, since the target
 *    may or may not have executed them);
 *  - a lost session (peer killed, connection reset, timeout) is re-established
 *    in the background with exponential backoff (reconnect_min_ms doubling
 *    up to reconnect_max_ms, each attempt bounded by connect_timeout_ms);
 *  - IOs submitted while the session is down wait for it until their own
 *    deadline, then fail with TS_ERR_MEMBER_FAILED; once it is back, new IOs
 *    work again. The member never re-sends an IO that was on a lost session;
 *    resynchronising the member is the array group's job;
 *  - SCSI errors from a live target map to errnos: ILLEGAL REQUEST -> -EINVAL,
 *    DATA PROTECT -> -EROFS, MEDIUM/HARDWARE ERROR and others -> -EIO.
 *    Transient statuses (BUSY, TASK SET FULL, UNIT ATTENTION) are retried a
 *    few times within the deadline;
 *  - fencing (opts.owner_epoch != 0, docs/fencing.md): after every login,
 *    before any IO, the member registers the owner key
 *    (owner_epoch << 32) | owner_node on the LUN and takes its reservation
 *    (preempting older owners and its own earlier nexuses); it never
 *    registers any other key. RESERVATION CONFLICT (on that REGISTER or on
 *    any IO) means a newer epoch owns the disk: that IO fails with
 *    TS_ERR_FENCED (not retried, not a member failure), and from then on
 *    the member is fenced: every queued and later IO fails with
 *    TS_ERR_FENCED at once and it never reconnects.
 *
 * THREAD SAFETY: ts_member_submit() on a remote member may be called from any
 * thread, including from a completion callback (which runs on the member's
 * event thread). ts_transport_member_stats() may be called from any thread.
 * ts_member_destroy() joins the event thread; no IO may be in flight and it
 * must not be called from a completion callback of the same member.
 */
#ifndef TS_TRANSPORT_H
#define TS_TRANSPORT_H

#include <stdint.h>

#include "dataplane/member/member.h"

/** Options for ts_transport_iscsi_member(). Zero-initialise, then set. */
struct ts_transport_opts {
	/**
	 * Required: "iscsi://host[:port]/<target-iqn>/<lun>" (no credentials in
	 * the URL; use chap_user/chap_secret).
	 */
	const char *url;
	const char *chap_user;     /**< set both to log in with CHAP */
	const char *chap_secret;
	const char *mutual_user;   /**< set both to also authenticate the target */
	const char *mutual_secret;
	const char *initiator_iqn; /**< who we are; NULL: "iqn.2026-01.io.tessera:client" */
	uint32_t node_id;          /**< the node the disk lives on (for ts_member_info) */
	/**
	 * Size and block size of the remote disk. If size is 0, create connects
	 * synchronously once and reads the capacity (failing if the target is
	 * unreachable; an address that drops packets can block it for the TCP
	 * SYN timeout, a few seconds); otherwise create returns at once and
	 * connects in the background (for assembling a group while a node is
	 * down).
	 */
	uint64_t size;
	uint32_t block_size;       /**< with size; 0: 4096 */
	const uint8_t *uuid;       /**< 16 bytes for ts_member_info, NULL: zeroes */
	uint32_t io_timeout_ms;    /**< per IO, from submission; 0: 5000 */
	uint32_t connect_timeout_ms; /**< per connect+login attempt; 0: 2000 */
	uint32_t reconnect_min_ms; /**< first backoff; 0: 50 */
	uint32_t reconnect_max_ms; /**< backoff cap; 0: 2000 */
	/**
	 * Fencing: the epoch of the engine's ownership of the group, as the
	 * control plane handed it out, and the engine's node id. Both 0: no
	 * fencing (the LUN's reservations are left alone); both non-zero:
	 * the member acquires the LUN with key (owner_epoch << 32) | owner_node
	 * after every login. One zero and not the other: -EINVAL.
	 */
	uint32_t owner_epoch;
	uint32_t owner_node;
};

/** Counters of one remote member (monotonic since creation, except the gauges). */
struct ts_transport_stats {
	uint64_t ios_ok;
	uint64_t ios_failed;       /**< completed with any error */
	uint64_t timeouts;         /**< IOs failed by their deadline */
	uint64_t connects;         /**< successful logins */
	uint64_t connect_failures;
	uint32_t inflight;         /**< gauge: commands on the wire */
	uint32_t connected;        /**< gauge: 1 if logged in */
	uint32_t fenced;           /**< 1 once a newer owner fenced this member (for good) */
	uint64_t fenced_ios;       /**< IOs failed with TS_ERR_FENCED */
};

/**
 * Create a remote member. Returns 0 and *\p out (destroy with
 * ts_member_destroy()), -EINVAL (bad options or URL), -ENOMEM,
 * TS_ERR_MEMBER_FAILED (size 0 and the probe connection failed) or -errno.
 */
int ts_transport_iscsi_member(const struct ts_transport_opts *opts, struct ts_member **out);

/**
 * Counters of \p m, which must be a member made by ts_transport_iscsi_member().
 * Returns 0, or -EINVAL if \p m is not a remote member.
 */
int ts_transport_member_stats(struct ts_member *m, struct ts_transport_stats *st);

#endif /* TS_TRANSPORT_H */
