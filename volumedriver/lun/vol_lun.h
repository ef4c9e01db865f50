/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The volume LUN provider: serves a thin volume (dataplane/volume) as a LUN
 * of Tessera's iSCSI target, through the engine's provider ops table.
 *
 * One ts_vol_lun per exported volume. ts_vol_lun_export() opens an IO
 * handle on the volume, adds a target (one per volume, IQN derived from the
 * volume's identity) and registers LUN 0 under it. ts_vol_lun_unexport()
 * removes the target and waits until the engine has let go of the LUN (its
 * last in-flight IO completed), then closes the volume handle, so the
 * volume can be deleted or expanded right after.
 *
 * Flushes and FUA writes commit the volume pool synchronously, which must
 * not run on the engine's event loop or a data-plane completion thread: a
 * per-LUN worker thread does them, in submission order.
 *
 * QoS (dataplane/qos): with opts.qos_domain set, every read, write (FUA or
 * not) and unmap passes the LUN's ts_qos gate before it reaches the volume
 * (an unmap counts as a write op of 0 bytes; flushes are never throttled),
 * and every completion is accounted. IOs over the limits wait in the gate's
 * FIFO and are submitted from the domain's timer thread; if that submission
 * fails the IO completes with the error. Unlimited volumes pay one relaxed
 * atomic load per IO. ts_vol_lun_unexport() lifts the limits first, so
 * queued IOs drain at once, and waits for them like for any in-flight IO.
 *
 * Persistent reservations belong to the volume: the engine's PR state is
 * kept in the volume attribute TS_VOL_LUN_PR_ATTR (ts_vpool_volume_attr_*),
 * committed before each PR OUT command completes and loaded at export, so
 * every session of the LU shares it and it survives an engine restart or a
 * failover to another engine serving the same pool. Clones start without.
 *
 * THREAD SAFETY: export/unexport/resize/set_qos for one LUN are called by
 * one thread at a time (the CSI backend serialises them); ts_vol_lun_qos_stats
 * from any thread while the LUN is exported. IO ops run on the engine's
 * threads; completions on data-plane threads, queued IOs are submitted on the
 * QoS domain's thread.
 */
#ifndef TS_VOL_LUN_H
#define TS_VOL_LUN_H

#include <stdint.h>

#include "dataplane/qos/qos.h"

struct ts_iscsi_server;
struct ts_vpool;
struct ts_vol_lun;

/** The volume attribute holding the LU's persistent-reservation state. */
#define TS_VOL_LUN_PR_ATTR "scsi.pr"

/** What to export. Strings are copied. */
struct ts_vol_lun_opts {
	const char *iqn;           /**< target name (required) */
	/** Optional legacy PR file of older releases: imported into the volume
	 *  attribute (then renamed "<path>.imported") when the volume has none. */
	const char *pr_state_path;
	const char *chap_user;     /**< optional CHAP (both or neither) */
	const char *chap_secret;
	uint8_t uuid[16];          /**< LUN identity (serial number, NAA id) */
	/** QoS domain the LUN contends in (borrowed; must outlive the LUN);
	 *  NULL: no QoS for this LUN (ts_vol_lun_set_qos then only accepts none). */
	struct ts_qos_domain *qos_domain;
	struct ts_qos_limits qos;  /**< initial limits (zero: none); must be none without a domain */
};

/**
 * Export volume \p vol_id of \p pool on \p srv. Returns 0 and *\p out;
 * -ENOENT (no such volume), -EEXIST (target exists), -EINVAL (also: QoS
 * limits without a domain), -ENOMEM.
 */
int ts_vol_lun_export(struct ts_iscsi_server *srv, struct ts_vpool *pool, uint64_t vol_id,
		      const struct ts_vol_lun_opts *opts, struct ts_vol_lun **out);

/**
 * Remove the target, wait for the engine to release the LUN, close the
 * volume handle and free \p l. NULL is a no-op. Returns 0 or the target
 * removal error (the LUN is released and freed either way).
 */
int ts_vol_lun_unexport(struct ts_vol_lun *l);

/**
 * After the volume grew: tell the engine the LUN's new capacity (it raises
 * CAPACITY DATA HAS CHANGED to every nexus). 0 or -errno.
 */
int ts_vol_lun_refresh(struct ts_vol_lun *l);

/**
 * Change the LUN's QoS limits online (\p q NULL or all zero: none). IOs
 * queued by the old limits are re-evaluated at once, in order. Returns 0,
 * -ENOTSUP (limits asked for but the LUN was exported without a QoS
 * domain), -EINVAL.
 */
int ts_vol_lun_set_qos(struct ts_vol_lun *l, const struct ts_qos_limits *q);

/**
 * The LUN's QoS counters (see struct ts_qos_stats); all zero without a QoS
 * domain.
 */
void ts_vol_lun_qos_stats(struct ts_vol_lun *l, struct ts_qos_stats *out);

#endif /* TS_VOL_LUN_H */
