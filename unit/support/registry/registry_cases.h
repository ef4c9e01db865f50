/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Test cases of the membership store (control/registry/registry.h) that every
 * implementation must pass, written once: the directory store's suite
 * (unit/control/registry) and the Kubernetes store's (e2e/kube) call them
 * with two handles \p a and \p b on one store (two processes sharing it).
 * Each asserts with Criterion, so call it from a Test().
 */
#ifndef TS_UNIT_SUPPORT_REGISTRY_CASES_H
#define TS_UNIT_SUPPORT_REGISTRY_CASES_H

#include <stdbool.h>

#include "control/registry/registry.h"

/** A 4+2 group with fresh uuids, slots on nodes 1..3. */
struct ts_reg_group reg_case_make_group(void);
/**
 * Node records round-trip, are replaced rather than duplicated, max bounds
 * the list. \p heartbeat_stored: the store keeps the record's heartbeat_ms
 * (directory); otherwise it must be "now" at the write (Lease-based).
 */
void reg_case_node_records(struct ts_registry *a, struct ts_registry *b, bool heartbeat_stored);
/** Requests pending until completed, oldest first, per node; statuses reach the waiter. */
void reg_case_requests_mailbox(struct ts_registry *a, struct ts_registry *b);
/** Group records (journals included) round-trip; unknown ones are -ENOENT. */
void reg_case_group_records(struct ts_registry *a, struct ts_registry *b);
/**
 * On an empty store: three group records are listed, in ascending uuid
 * order, from either handle; max bounds the list.
 */
void reg_case_list_groups(struct ts_registry *a, struct ts_registry *b);
/** raise_epoch hands the group over, keeps the slots; stale epochs are -ESTALE. */
void reg_case_raise_epoch_and_stale(struct ts_registry *a, struct ts_registry *b);
/** \p per_thread raises from each of two threads (one per handle): distinct, increasing. */
void reg_case_concurrent_raises(struct ts_registry *a, struct ts_registry *b, unsigned per_thread);

#endif /* TS_UNIT_SUPPORT_REGISTRY_CASES_H */
