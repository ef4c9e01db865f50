/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private: a sparse radix map from a grain number (< 2^36) to a non-zero
 * 64-bit value. Four levels of 512 slots; leaves hold the values. Used for
 * every layer's own map and for each volume's merged read index, so a lookup
 * costs four dependent loads whatever the number of layers.
 *
 * Not thread-safe: the pool's mutex guards every map.
 */
#ifndef TS_VOLUME_RMAP_H
#define TS_VOLUME_RMAP_H

#include <stdint.h>

#define RMAP_BITS 9u
#define RMAP_FAN (1u << RMAP_BITS)
#define RMAP_LEVELS 4u
#define RMAP_KEY_LIMIT (1ull << (RMAP_BITS * RMAP_LEVELS))

struct rmap {
	void *root;
	uint64_t count;
};

/** Value at \p key, 0 when absent. */
uint64_t rmap_get(const struct rmap *m, uint64_t key);
/** Create the nodes on \p key's path so a later rmap_set() cannot fail. 0 or -ENOMEM. */
int rmap_reserve(struct rmap *m, uint64_t key);
/** Set key to val (non-zero). Returns the old value (0 if none) or, when a
 *  node could not be allocated, leaves the map unchanged and returns
 *  RMAP_ENOMEM. */
#define RMAP_ENOMEM (UINT64_MAX - 1)
uint64_t rmap_set(struct rmap *m, uint64_t key, uint64_t val);
/** Remove \p key; returns the old value (0 if none). Never allocates. */
uint64_t rmap_del(struct rmap *m, uint64_t key);
/** First entry with key >= \p from: 1 and fills *key and *val, or 0 when none. */
int rmap_next(const struct rmap *m, uint64_t from, uint64_t *key, uint64_t *val);
/** Free every node. */
void rmap_clear(struct rmap *m);

#endif
