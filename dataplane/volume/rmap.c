/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Sparse radix map (see rmap.h). Design: fixed depth (4 x 9 bits = 2^36
 * grains, 256 TiB at 4 KiB) so paths never need re-rooting; interior nodes
 * and leaves are both 512-slot arrays plus a population count, so an empty
 * node is freed as soon as its last entry goes and memory tracks what is
 * mapped. Values are never 0 (0 means "absent").
 */
#include "dataplane/volume/rmap.h"

#include <errno.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

struct rnode {
	void *slot[RMAP_FAN];
};

struct rleaf {
	uint32_t used;
	uint64_t v[RMAP_FAN];
};

static inline unsigned idx_at(uint64_t key, unsigned level)
{
	/* level 0 is the root */
	return (unsigned)(key >> (RMAP_BITS * (RMAP_LEVELS - 1 - level))) & (RMAP_FAN - 1);
}

uint64_t rmap_get(const struct rmap *m, uint64_t key)
{
	const struct rnode *n = m->root;
	unsigned l;

	if (key >= RMAP_KEY_LIMIT)
		return 0;
	for (l = 0; l < RMAP_LEVELS - 1; l++) {
		if (!n)
			return 0;
		n = n->slot[idx_at(key, l)];
	}
	if (!n)
		return 0;
	return ((const struct rleaf *)(const void *)n)->v[idx_at(key, RMAP_LEVELS - 1)];
}

/* Walk to the leaf for key, creating nodes; NULL on -ENOMEM (nodes created
 * before the failure stay, empty, and are harmless). */
static struct rleaf *rmap_path(struct rmap *m, uint64_t key)
{
	void **pp = &m->root;
	unsigned l;

	for (l = 0; l < RMAP_LEVELS; l++) {
		if (!*pp) {
			void *fresh = l == RMAP_LEVELS - 1 ? ts_calloc(1, sizeof(struct rleaf))
							   : ts_calloc(1, sizeof(struct rnode));
			if (!fresh)
				return NULL;
			*pp = fresh;
		}
		if (l == RMAP_LEVELS - 1)
			break;
		pp = &((struct rnode *)*pp)->slot[idx_at(key, l)];
	}
	return *pp;
}

int rmap_reserve(struct rmap *m, uint64_t key)
{
	if (key >= RMAP_KEY_LIMIT)
		return -EINVAL;
	return rmap_path(m, key) ? 0 : -ENOMEM;
}

uint64_t rmap_set(struct rmap *m, uint64_t key, uint64_t val)
{
	struct rleaf *lf;
	unsigned i;
	uint64_t old;

	if (key >= RMAP_KEY_LIMIT)
		return RMAP_ENOMEM;
	lf = rmap_path(m, key);
	if (!lf)
		return RMAP_ENOMEM;
	i = idx_at(key, RMAP_LEVELS - 1);
	old = lf->v[i];
	if (!old) {
		lf->used++;
		m->count++;
	}
	lf->v[i] = val;
	return old;
}

static int node_empty(const struct rnode *n)
{
	unsigned i;

	for (i = 0; i < RMAP_FAN; i++)
		if (n->slot[i])
			return 0;
	return 1;
}

uint64_t rmap_del(struct rmap *m, uint64_t key)
{
	void **path[RMAP_LEVELS];
	void **pp = &m->root;
	struct rleaf *lf;
	uint64_t old;
	unsigned l, i;

	if (key >= RMAP_KEY_LIMIT)
		return 0;
	for (l = 0; l < RMAP_LEVELS; l++) {
		if (!*pp)
			return 0;
		path[l] = pp;
		if (l == RMAP_LEVELS - 1)
			break;
		pp = &((struct rnode *)*pp)->slot[idx_at(key, l)];
	}
	lf = *pp;
	i = idx_at(key, RMAP_LEVELS - 1);
	old = lf->v[i];
	if (!old)
		return 0;
	lf->v[i] = 0;
	lf->used--;
	m->count--;
	if (lf->used)
		return old;
	ts_free(lf);
	*path[RMAP_LEVELS - 1] = NULL;
	for (l = RMAP_LEVELS - 1; l-- > 0;) {
		struct rnode *n = *path[l];
		if (!node_empty(n))
			break;
		ts_free(n);
		*path[l] = NULL;
	}
	return old;
}

static int next_rec(const void *node, unsigned level, uint64_t prefix, uint64_t from, int bounded,
		    uint64_t *key, uint64_t *val)
{
	unsigned shift = RMAP_BITS * (RMAP_LEVELS - 1 - level);
	unsigned i = bounded ? idx_at(from, level) : 0;

	if (level == RMAP_LEVELS - 1) {
		const struct rleaf *lf = node;
		for (; i < RMAP_FAN; i++)
			if (lf->v[i]) {
				*key = prefix | i;
				*val = lf->v[i];
				return 1;
			}
		return 0;
	}
	for (; i < RMAP_FAN; i++) {
		const struct rnode *n = node;
		int b = bounded && i == idx_at(from, level);
		if (n->slot[i] &&
		    next_rec(n->slot[i], level + 1, prefix | ((uint64_t)i << shift), from, b, key, val))
			return 1;
	}
	return 0;
}

int rmap_next(const struct rmap *m, uint64_t from, uint64_t *key, uint64_t *val)
{
	if (!m->root || from >= RMAP_KEY_LIMIT)
		return 0;
	return next_rec(m->root, 0, 0, from, 1, key, val);
}

static void clear_rec(void *node, unsigned level)
{
	unsigned i;

	if (level < RMAP_LEVELS - 1) {
		struct rnode *n = node;
		for (i = 0; i < RMAP_FAN; i++)
			if (n->slot[i])
				clear_rec(n->slot[i], level + 1);
	}
	ts_free(node);
}

void rmap_clear(struct rmap *m)
{
	if (m->root)
		clear_rec(m->root, 0);
	m->root = NULL;
	m->count = 0;
}
