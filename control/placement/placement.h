/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Placement of array groups over many nodes: an in-memory model of the
 * pool (nodes, their disks, the array groups whose k+m members sit on those
 * disks, the volumes inside the groups) and the decisions the controller
 * takes on it. Nothing here does IO; the controller applies the decisions
 * (creates member vdisks, moves members) and keeps the model in its
 * metadata store through ts_placement_to_json() / ts_placement_from_json().
 *
 * Invariants the model holds after every call, successful or not:
 *  - the domain rule: no failure domain holds more than m members of one
 *    group, so losing a whole domain leaves every group k members. A node's
 *    domain is its label; a node without a label is a domain by itself;
 *  - no two members of one group on the same disk;
 *  - a disk's used bytes (the sum of the member sizes on it) never exceed
 *    its capacity, and a group's volumes never exceed its data capacity
 *    (k * member_size);
 *  - a failed call leaves the model exactly as it was (decisions are
 *    computed first, then committed; allocations are made before any
 *    change).
 *
 * Decisions are deterministic: the same model and the same calls give the
 * same choices (ties are broken by ids), also after a JSON round trip.
 * Policies, complexity and the JSON format: docs/placement.md.
 *
 * Errors: 0 or -errno. -EINVAL bad arguments, -ENOENT unknown id, -EEXIST
 * duplicate id, -EBUSY a removal that would take members away from a group,
 * -ENOSPC no room that keeps the rules, -EFBIG a volume larger than a group,
 * -ENOMEM. Calls that take \p msg / \p msglen write a one-line human
 * readable reason into it on failure (NUL-terminated, truncated to msglen;
 * an empty string on success); \p msg may be NULL.
 *
 * Memory: allocations go through ts_malloc (dataplane/common), so tests can
 * make them fail; jansson's own allocations inside the JSON calls do not.
 *
 * THREAD SAFETY: none. A model belongs to one thread at a time (the
 * controller's), queries included: they use scratch space in the model.
 */
#ifndef TS_CONTROL_PLACEMENT_H
#define TS_CONTROL_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** Largest k+m of a group (the array group's member limit, TS_AGRP_MAX_MEMBERS). */
#define TS_PLACEMENT_MAX_SLOTS 40
/** Bytes of a failure-domain label, NUL included. */
#define TS_PLACEMENT_LABEL_MAX 64
/** The format version ts_placement_to_json() writes and the only one loaded. */
#define TS_PLACEMENT_JSON_VERSION 1

struct ts_placement;

/** Geometry of the groups volume placement creates. Zero fields take the defaults. */
struct ts_placement_opts {
	uint32_t k;              /**< data fragments; 0: 4 */
	uint32_t m;              /**< parity fragments; 0: 2 */
	uint64_t member_size;    /**< bytes of each member; 0: 64 GiB */
};

/**
 * New empty model. \p opts may be NULL (defaults). 0 and *\p out, -EINVAL
 * (k or m of 0 after defaults is impossible; k+m beyond
 * TS_PLACEMENT_MAX_SLOTS) or -ENOMEM. Free with ts_placement_destroy().
 */
int ts_placement_create(const struct ts_placement_opts *opts, struct ts_placement **out);
/** Free the model. NULL is a no-op. */
void ts_placement_destroy(struct ts_placement *p);

/* ---- nodes and disks ---- */

/**
 * Add node \p node_id in failure domain \p domain (NULL or "": the node is
 * its own domain; at most TS_PLACEMENT_LABEL_MAX-1 bytes). Existing groups
 * are not touched; new groups may use the node. 0, -EINVAL, -EEXIST, -ENOMEM.
 */
int ts_placement_node_add(struct ts_placement *p, uint32_t node_id, const char *domain);
/** Cordon (no new members go there) or uncordon a node. 0 or -ENOENT. */
int ts_placement_node_cordon(struct ts_placement *p, uint32_t node_id, bool cordoned);
/**
 * Remove a node and its disks. Refused with -EBUSY and a message naming the
 * group, the disk and the slot when any of its disks holds a member
 * (drain it first). 0, -ENOENT, -EBUSY.
 */
int ts_placement_node_remove(struct ts_placement *p, uint32_t node_id, char *msg, size_t msglen);
/**
 * Add disk \p disk_id (unique over the pool) of \p capacity bytes to node
 * \p node_id. 0, -EINVAL (capacity 0), -ENOENT (no such node), -EEXIST,
 * -ENOMEM.
 */
int ts_placement_disk_add(struct ts_placement *p, uint32_t disk_id, uint32_t node_id,
			  uint64_t capacity);
/** Remove an empty disk. 0, -ENOENT, or -EBUSY with a message as for nodes. */
int ts_placement_disk_remove(struct ts_placement *p, uint32_t disk_id, char *msg, size_t msglen);

/* ---- groups and volumes ---- */

/**
 * Place a new k+m group of \p member_size byte members: k+m distinct disks
 * on uncordoned nodes with room, at most m per failure domain, spread over
 * as many domains (then nodes) as possible and, among those, the disks with
 * the lowest used fraction after the member (then fewest members, then
 * lowest id); when the pool's remaining capacity is at stake, disks whose
 * use costs no future group come first (docs/placement.md). Refused only
 * when no valid choice exists. 0 and *\p group_id (ids start at 1, never reused), -EINVAL
 * (k or m 0, k+m > TS_PLACEMENT_MAX_SLOTS, member_size 0), -ENOSPC with a
 * message (e.g. fewer than ceil((k+m)/m) domains have a disk with room),
 * -ENOMEM.
 */
int ts_placement_group_place(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t member_size,
			     uint32_t *group_id, char *msg, size_t msglen);
/**
 * Place volume \p volume_id of \p size bytes: into the existing group with
 * the least free data space that still holds it (best fit; ties: lowest
 * group id), or, when none does, into a new group of the pool geometry
 * (ts_placement_opts) placed as ts_placement_group_place() does. 0 and
 * *\p group_id, -EINVAL (size 0), -EEXIST, -EFBIG (size beyond k *
 * member_size of the pool geometry and no group holds it), -ENOSPC with a
 * message, -ENOMEM.
 */
int ts_placement_volume_place(struct ts_placement *p, uint64_t volume_id, uint64_t size,
			      uint32_t *group_id, char *msg, size_t msglen);
/** Delete a volume; its bytes are free in its group again (the group stays). 0 or -ENOENT. */
int ts_placement_volume_delete(struct ts_placement *p, uint64_t volume_id);

/* ---- drain ---- */

/** One member move: the member in \p slot of \p group goes from one disk to another. */
struct ts_placement_move {
	uint32_t group;
	uint32_t slot;
	uint32_t from_disk;
	uint32_t to_disk;
};

/**
 * Drain node \p node_id: cordon it and move every member off its disks,
 * each to the disk ts_placement_group_place() would choose for that slot
 * (keeping the domain rule and distinct disks). The moves are applied to
 * the model and returned in order in *\p moves (*\p nmoves entries; NULL
 * when there are none), which the caller frees with ts_free(). When some
 * member has nowhere to go the call fails with -ENOSPC and a message naming
 * it, and the model is unchanged (the node's cordon flag included).
 * 0, -ENOENT, -ENOSPC, -ENOMEM.
 */
int ts_placement_drain(struct ts_placement *p, uint32_t node_id, struct ts_placement_move **moves,
		       size_t *nmoves, char *msg, size_t msglen);

/* ---- queries ---- */

struct ts_placement_stats {
	uint32_t nnodes, ndisks, ndomains, ngroups;
	uint64_t nvolumes;
	uint64_t raw_capacity;     /**< bytes over all disks */
	uint64_t raw_used;         /**< bytes of members */
	uint64_t group_free;       /**< data bytes still free inside existing groups */
	uint32_t new_groups;       /**< pool-geometry groups the free disk space can still take */
	uint64_t usable_free;      /**< group_free + new_groups * k * member_size: what volumes can still get */
	uint64_t volume_bytes;     /**< bytes of placed volumes */
	double balance;            /**< max/min used fraction over disks holding members; 0 if none */
	uint32_t min_members, max_members; /**< members per disk, over all disks */
	uint64_t heap_bytes;       /**< bytes the model holds through ts_malloc */
};

/**
 * Fill \p st. new_groups is the largest G for which the domain rule and
 * the disks' free space admit G more groups of the pool geometry on
 * uncordoned nodes (an exact count of slots, not a simulation of the
 * greedy choice; docs/placement.md). O(disks * log(disks)).
 */
void ts_placement_stats(struct ts_placement *p, struct ts_placement_stats *st);

struct ts_placement_disk_info {
	uint32_t id, node_id;
	uint64_t capacity, used;
	uint32_t members;
};

struct ts_placement_node_info {
	uint32_t id;
	char domain[TS_PLACEMENT_LABEL_MAX]; /**< "" when the node is its own domain */
	bool cordoned;
	uint32_t ndisks, members;
	uint64_t capacity, used;
};

struct ts_placement_domain_info {
	char label[TS_PLACEMENT_LABEL_MAX];  /**< "" for a node without a label */
	uint32_t node_id;                    /**< with an empty label: that node */
	uint32_t nnodes, ndisks, members;
	uint64_t capacity, used;
};

struct ts_placement_group_info {
	uint32_t id, k, m;
	uint64_t member_size;
	uint64_t used;                       /**< bytes of its volumes */
	uint64_t nvolumes;
	uint32_t disks[TS_PLACEMENT_MAX_SLOTS]; /**< slot -> disk id, k+m valid */
};

struct ts_placement_volume_info {
	uint64_t id, size;
	uint32_t group;
};

/** Disk by id, or the \p i-th disk in id order (_at). 0 or -ENOENT. */
int ts_placement_disk_get(const struct ts_placement *p, uint32_t disk_id,
			  struct ts_placement_disk_info *out);
int ts_placement_disk_at(const struct ts_placement *p, size_t i, struct ts_placement_disk_info *out);
/** Group by id, or the \p i-th group in id order (_at). 0 or -ENOENT. */
int ts_placement_group_get(const struct ts_placement *p, uint32_t group_id,
			   struct ts_placement_group_info *out);
int ts_placement_group_at(const struct ts_placement *p, size_t i,
			  struct ts_placement_group_info *out);
/** Volume by id. 0 or -ENOENT. */
int ts_placement_volume_get(const struct ts_placement *p, uint64_t volume_id,
			    struct ts_placement_volume_info *out);
/**
 * Per-node capacity: up to \p max nodes in id order into \p out; *\p n gets
 * the number of nodes. O(nodes + disks).
 */
void ts_placement_nodes(const struct ts_placement *p, struct ts_placement_node_info *out,
			size_t max, size_t *n);
/**
 * Per-domain capacity: up to \p max domains, in the order their first node
 * comes in node id order, into \p out; *\p n gets the number of domains.
 * O(nodes + disks).
 */
void ts_placement_domains(struct ts_placement *p, struct ts_placement_domain_info *out,
			  size_t max, size_t *n);

/* ---- persistence ---- */

/**
 * The whole model as compact JSON (format in docs/placement.md), in a
 * NUL-terminated buffer of *\p len bytes the caller frees with ts_free().
 * 0 or -ENOMEM.
 */
int ts_placement_to_json(const struct ts_placement *p, char **out, size_t *len);
/**
 * Rebuild a model from ts_placement_to_json() output. Everything is checked
 * (types, ranges, references, capacities, the domain rule); -EINVAL with a
 * message on malformed input or a version other than
 * TS_PLACEMENT_JSON_VERSION, -ENOMEM. 0 and *\p out.
 */
int ts_placement_from_json(const char *buf, size_t len, struct ts_placement **out, char *msg,
			   size_t msglen);

#endif /* TS_CONTROL_PLACEMENT_H */
