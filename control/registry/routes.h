/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Where each array group's engine runs, as the node records say, kept in
 * memory for the iSCSI login path: the redirect hook of a portal that does
 * not serve a volume itself (every node's, and `tessera dev`'s front portal)
 * answers from here. A thread of its own rereads the node records every
 * period; the hook never touches the store.
 *
 * A route is "group (the first 8 bytes of its uuid, the group part of its
 * volumes' IQNs) -> portal of the node listing it at the highest epoch": a
 * node that has not yet noticed it was replaced may still list the group at
 * an older epoch and is never chosen over the new owner.
 *
 * THREAD SAFETY: ts_routes_redirect from any thread (it is an iSCSI
 * redirect hook, ts_iscsi_server_opts.redirect); start/stop from one.
 */
#ifndef TS_CONTROL_ROUTES_H
#define TS_CONTROL_ROUTES_H

#include <stddef.h>

#include "control/registry/registry.h"

struct ts_routes;

/**
 * Start keeping routes from \p reg (borrowed), rereading every \p period_ms
 * (0: 500); the first read is done before it returns. \p self ("ip:port",
 * copied; may be NULL) is never a redirect answer: a portal that serves
 * a group finds its targets itself. 0 and *\p out, -EINVAL, -ENOMEM.
 */
int ts_routes_start(struct ts_registry *reg, const char *self, unsigned period_ms,
		    struct ts_routes **out);

/** Reread the node records now. */
void ts_routes_refresh(struct ts_routes *r);

/**
 * The redirect hook: \p iqn a volume IQN ("iqn.2026-01.io.tessera:vol-<uuid>")
 * of a group some other node serves: 0 and that node's portal in \p addr.
 * -ENOENT otherwise, and the node records are read again at once (a group
 * handed over moments ago is found by the initiator's retry).
 */
int ts_routes_redirect(void *r, const char *iqn, char *addr, size_t len);

/** Stop the thread and free. NULL: no-op. */
void ts_routes_stop(struct ts_routes *r);

#endif /* TS_CONTROL_ROUTES_H */
