/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The behaviour every CSI metadata store (csi/store/store.h) shows, as
 * cases a test runs against its store: records survive a reopen, list pages
 * in id order, random operations match a plain model, group snapshot
 * records have a table of their own. Failures are Criterion assertions.
 */
#ifndef TS_UNIT_CSI_STORE_CASES_H
#define TS_UNIT_CSI_STORE_CASES_H

#include <stdbool.h>

#include "csi/store/store.h"

/** An open store. */
struct csc_store {
	const struct ts_csi_store_ops *ops;
	void *ctx;
};

/** Open the store under test (the same records every time); asserts success. */
typedef void (*csc_open_fn)(void *arg, struct csc_store *s);

/** Record \p i of the cases' set: every field set, strings with quotes and UTF-8. */
struct ts_csi_volume csc_mkvol(int i);
void csc_expect_same(const struct ts_csi_volume *a, const struct ts_csi_volume *b);

/** Ten puts, a replace, a delete; reopened, every record reads back (by id and name). */
void csc_case_put_get_del_reopen(csc_open_fn open, void *arg);
/** Pages of three in id order; a token naming a deleted record continues after it. */
void csc_case_list_pages(csc_open_fn open, void *arg);
/**
 * \p steps random puts/deletes/reopens over 40 ids checked against a model;
 * with \p inject, some puts run with allocation failures (-ENOMEM, nothing
 * changed).
 */
void csc_case_random_model(csc_open_fn open, void *arg, int steps, bool inject);
/** Group snapshot records: put, find by id/name/member, replace, delete, reopen. */
void csc_case_groups(csc_open_fn open, void *arg);

#endif /* TS_UNIT_CSI_STORE_CASES_H */
