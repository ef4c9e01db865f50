/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement internals shared by placement.c (the model), placement_place.c
 * (the decisions) and placement_json.c (persistence). Not a public header.
 *
 * Every table is an array sorted by id and searched by bisection; entries
 * refer to each other by id (a group's slots name disk ids, a volume its
 * group id) except a disk, which keeps the index of its node, and a node,
 * which keeps the index of its domain (both are refreshed when a node is
 * removed, the only operation that shifts those arrays under them).
 */
#ifndef TS_CONTROL_PLACEMENT_INT_H
#define TS_CONTROL_PLACEMENT_INT_H

#include "control/placement/placement.h"

#include <stdarg.h>
#include <sys/types.h>

struct pl_domain {
	char label[TS_PLACEMENT_LABEL_MAX]; /* "" for one unlabeled node's own domain */
	uint32_t nnodes;                    /* 0: a free entry, reused by the next node */
};

struct pl_node {
	uint32_t id;
	uint32_t dom;                       /* index into domains */
	bool cordoned;
};

struct pl_disk {
	uint32_t id;
	uint32_t node;                      /* index into nodes */
	uint64_t capacity, used;
	uint32_t members;
	uint64_t slots;                     /* scratch: free member slots for the group being placed */
	bool mark;                          /* scratch: taken by the group being placed */
};

struct pl_group {
	uint32_t id, k, m;
	uint64_t member_size;
	uint64_t used;                      /* bytes of its volumes */
	uint64_t nvolumes;
	size_t slot;                        /* first of its k+m entries in slots */
};

struct pl_volume {
	uint64_t id, size;
	uint32_t group;
};

struct ts_placement {
	struct ts_placement_opts opts;
	uint32_t next_group;
	struct pl_domain *domains;
	size_t ndomains, domains_cap;
	struct pl_node *nodes;
	size_t nnodes, nodes_cap;
	struct pl_disk *disks;
	size_t ndisks, disks_cap;
	struct pl_group *groups;
	size_t ngroups, groups_cap;
	uint32_t *slots;                    /* disk ids, k+m per group, in group order */
	size_t nslots, slots_cap;
	struct pl_volume *volumes;
	size_t nvolumes, volumes_cap;
	/* scratch, as long as domains / nodes (grown with them, zero between calls) */
	uint32_t *dom_cnt;
	uint64_t *dom_acc;
	uint32_t *node_cnt;
	size_t dom_cnt_cap, dom_acc_cap, node_cnt_cap;
};

/* ---- placement.c ---- */

/* Grow *arr to hold at least need entries of elem bytes. 0 or -ENOMEM. */
int pl_reserve(void **arr, size_t *cap, size_t need, size_t elem);
/* Index of the entry with this id (or where it would go) in an array of
 * structs whose first member is a uint32_t (wide: uint64_t) id. */
size_t pl_lower_bound(const void *base, size_t n, size_t stride, uint64_t id, bool wide);
ssize_t pl_node_find(const struct ts_placement *p, uint32_t id);
ssize_t pl_disk_find(const struct ts_placement *p, uint32_t id);
ssize_t pl_group_find(const struct ts_placement *p, uint32_t id);
ssize_t pl_volume_find(const struct ts_placement *p, uint64_t id);
/* printf into a caller's message buffer (NULL / 0 allowed). */
void pl_say(char *msg, size_t msglen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "64 GiB" when exact, else bytes; into buf. */
const char *pl_size_str(uint64_t bytes, char buf[32]);
/* The domain a disk is in. */
static inline uint32_t pl_disk_dom(const struct ts_placement *p, const struct pl_disk *d)
{
	return p->nodes[d->node].dom;
}

/* ---- placement_place.c ---- */

/*
 * Append a group of the given geometry on these disks (indices), checking
 * nothing but room in the tables; id 0 takes next_group. Updates the disks'
 * used bytes and member counts. 0 or -ENOMEM (nothing changed).
 */
int pl_group_commit(struct ts_placement *p, uint32_t id, uint32_t k, uint32_t m,
		    uint64_t member_size, const size_t *disk_idx);
/* Insert a volume into group index gi (room checked by the caller). 0 or -ENOMEM. */
int pl_volume_commit(struct ts_placement *p, uint64_t id, uint64_t size, size_t gi);

#endif /* TS_CONTROL_PLACEMENT_INT_H */
