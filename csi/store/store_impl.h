/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to csi/store: the record encoding (store_json.c) and the
 * in-memory index (store_mem.c) that every store runs over a persistence of
 * its own (store_file.c: one file per record; store_kube.c: one custom
 * resource per record).
 *
 * The index holds every record, sorted by id, and answers all reads; each
 * change goes to the persistence first and reaches memory only when it
 * succeeded, so memory equals what is stored whenever the index's lock is
 * not held. Persistence calls run under that lock: one change at a time.
 */
#ifndef TS_CSI_STORE_IMPL_H
#define TS_CSI_STORE_IMPL_H

#include <jansson.h>

#include "csi/store/store.h"

/** \p v as a record object (new reference), NULL when out of memory. */
json_t *ts_csi_vol_json(const struct ts_csi_volume *v);
/** A record object into \p v: 0, TS_ERR_CORRUPT or TS_ERR_VERSION. */
int ts_csi_vol_parse(json_t *j, struct ts_csi_volume *v);
/** The same for group snapshot records. */
json_t *ts_csi_group_json(const struct ts_csi_group *g);
int ts_csi_group_parse(json_t *j, struct ts_csi_group *g);

/** Where an index keeps its records. Every op is durable when it returns 0. */
struct ts_csi_persist_ops {
	/** Store \p v (new or replacing the record with its id). */
	int (*put)(void *p, const struct ts_csi_volume *v);
	/** Remove the record \p id (known to the index); gone already is 0. */
	int (*del)(void *p, const char *id);
	int (*group_put)(void *p, const struct ts_csi_group *g);
	int (*group_del)(void *p, const char *id);
	/**
	 * Every stored record once: \p vol per volume record, \p group per group
	 * record; a non-zero result of theirs stops the load and is returned.
	 */
	int (*load)(void *p, int (*vol)(void *a, const struct ts_csi_volume *v),
		    int (*group)(void *a, const struct ts_csi_group *g), void *a);
	void (*destroy)(void *p);
};

/**
 * An index over \p po / \p p, loaded now: 0 and the store in \p ops /
 * \p ctx, the load's error (two records with one id: TS_ERR_CORRUPT), or
 * -ENOMEM. \p p belongs to the store from here on, also when this fails.
 */
int ts_csi_store_mem_open(const struct ts_csi_persist_ops *po, void *p,
			  const struct ts_csi_store_ops **ops, void **ctx);

#endif /* TS_CSI_STORE_IMPL_H */
