/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The serving side of the node-to-node transport: a node exports its member
 * vdisks to peers as iSCSI LUNs through its own Tessera target, so a peer's
 * remote member (transport.h) reaches them.
 *
 * Naming: each exported vdisk is its own target, IQN
 * "iqn.2026-01.io.tessera:vd-<uuid>", with the vdisk as LUN 0. Identity is
 * therefore in the IQN: a peer that reconnects after a restart reaches the
 * same vdisk or nothing (no LUN renumbering). Every export requires CHAP
 * (the cluster's node credential).
 *
 * Two layers:
 *  - ts_transport_member_lun_*: a LUN provider (struct ts_iscsi_lun_ops) over
 *    any struct ts_member, translating LUN IOs into member IOs (FUA, flush,
 *    unmap pass through);
 *  - ts_transport_export_vdisk(): the LDM convenience that makes the vdisk's
 *    member adapter, wraps it and registers target + LUN on a server.
 *
 * Every vdisk export is a fencing LU (iscsi.h, docs/fencing.md): the
 * PR keys are ownership epochs, and the floor (highest epoch registered and
 * its node) lives in the vdisk's LDM descriptor, so it survives a restart
 * of the node daemon.
 *
 * THREAD SAFETY: the LUN ops follow the iSCSI provider contract (any thread).
 * export/unexport may be called from any thread except from inside an op or
 * a callback; they take the iSCSI server's locks only.
 */
#ifndef TS_TRANSPORT_EXPORT_H
#define TS_TRANSPORT_EXPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "dataplane/iscsi/iscsi.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/member/member.h"

struct ts_transport_lun;

/**
 * A LUN provider over member \p m. If \p owned, ts_transport_member_lun_destroy()
 * (or the engine's ops->destroy) also destroys \p m; otherwise \p m must
 * outlive the LUN. Returns 0 and *\p out, -EINVAL or -ENOMEM.
 */
int ts_transport_member_lun_create(struct ts_member *m, bool owned, struct ts_transport_lun **out);

/** The ops table to pass to ts_iscsi_lun_add() with the ts_transport_lun as ctx. */
const struct ts_iscsi_lun_ops *ts_transport_member_lun_ops(void);

/** Free (and destroy the member if owned). NULL is a no-op. No IO in flight. */
void ts_transport_member_lun_destroy(struct ts_transport_lun *l);

/** IQN under which a vdisk is exported. \p out holds 80 bytes. */
void ts_transport_vdisk_iqn(const uint8_t uuid[16], char out[80]);

/**
 * Export \p vd on \p srv as target ts_transport_vdisk_iqn(uuid), LUN 0,
 * requiring CHAP \p chap_user / \p chap_secret (both mandatory). The vdisk
 * must stay alive until the LUN is released: unexport, then the engine
 * drops it once its last IO completes (ts_iscsi_server_destroy() waits for
 * that). Returns 0, -EINVAL, -EEXIST (already exported), -ENOMEM or -errno.
 */
int ts_transport_export_vdisk(struct ts_iscsi_server *srv, struct ts_ldm_vdisk *vd,
			      const char *chap_user, const char *chap_secret);

/**
 * Remove the export of vdisk \p uuid (its sessions are dropped; the member
 * adapter is destroyed when the engine lets go of the LUN). 0 or -ENOENT.
 */
int ts_transport_unexport_vdisk(struct ts_iscsi_server *srv, const uint8_t uuid[16]);

/**
 * Fencing state and refused-IO counters of vdisk \p uuid's export (see
 * struct ts_iscsi_fence_stats; the counters restart at 0 with the export).
 * 0, -EINVAL or -ENOENT.
 */
int ts_transport_export_fence_stats(struct ts_iscsi_server *srv, const uint8_t uuid[16],
				    struct ts_iscsi_fence_stats *st);

#endif /* TS_TRANSPORT_EXPORT_H */
