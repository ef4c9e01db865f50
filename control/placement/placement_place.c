/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement decisions: where a new group's members go, which group a
 * volume goes into, where a drained node's members move, and how much the
 * pool can still take.
 *
 * One rule is never bent: at most m members of a group in one failure
 * domain (so a lost domain costs every group at most m members and k
 * remain), and never two on one disk. Choosing k+m disks under it is a
 * partition matroid (each domain a part with capacity m, each disk an
 * element), so picking one disk at a time, any disk that keeps the rule,
 * never paints the choice into a corner: the greedy choice succeeds
 * whenever any choice does. That frees the order of picks to serve
 * balance. Each pick takes, among the disks that keep the rule and have
 * room, the one that is best by, in order:
 *   1. fewest members of this group already in its domain, then on its
 *      node (spread a group as wide as the pool allows: with k+m domains
 *      or more every member lands in a different one);
 *   2. lowest used fraction of the disk once the member is on it (so disks
 *      of different sizes fill at the same rate);
 *   3. fewest members on the disk, then lowest disk id (deterministic).
 * Scratch counters per domain and per node (zero between calls) make each
 * check O(1), so a group costs O((k+m) * disks).
 *
 * Drain applies the same pick to each member on the node in turn (group id
 * order, slot order), with the group's other members counted in the
 * scratch; the disks it fills count for the next pick. It is greedy, not a
 * matching: it does not move a second member out of the way to make room
 * for the first, so it can refuse a drain that a cleverer reshuffle would
 * do (docs/placement.md). A refusal undoes the moves made so far.
 *
 * What the pool can still take (ts_placement_stats) is counted, not
 * simulated: a disk with f free bytes has s = f / member_size free member
 * slots, and G more groups fit iff
 *     sum over domains of min(m * G, sum over its disks of min(s, G)) >= (k+m) * G
 * (each group takes at most one slot of a disk and at most m of a
 * domain). The left side grows more slowly than the right once G is past
 * the answer, so the largest G is found by bisection, O(disks) a step.
 *
 * THREAD SAFETY: none; one owner thread (placement.h).
 */
#include "control/placement/placement_int.h"

#include <string.h>

#include "dataplane/common/ts_common.h"

/* ---- one pick ---- */

static bool fits(const struct ts_placement *p, const struct pl_disk *d, uint32_t m, uint64_t ms)
{
	return !d->mark && !p->nodes[d->node].cordoned && d->capacity - d->used >= ms &&
	       p->dom_cnt[pl_disk_dom(p, d)] < m;
}

/*
 * What a group placement keeps of the pool's capacity (see "capacity"
 * below): after this group, the pool must still take g1 = G-1 groups of
 * its geometry, G being what it takes now. dom_acc holds, per domain, the
 * slots that count towards those g1 (each disk min(free slots, g1)); a
 * pick costs one unit of slack when it lowers the domain's term of the
 * bound. While slack is short of the picks left, picks that cost nothing
 * come first.
 */
struct plan {
	uint64_t g1;
	uint64_t slack;
	bool tight;
};

static bool costs(const struct ts_placement *p, const struct plan *pl, const struct pl_disk *d,
		  uint32_t m)
{
	return d->slots <= pl->g1 &&
	       p->dom_acc[pl_disk_dom(p, d)] <= (uint64_t)m * pl->g1;
}

/* Is a a better home than b for one more member of ms bytes? */
static bool better(const struct ts_placement *p, const struct plan *pl, const struct pl_disk *a,
		   const struct pl_disk *b, uint32_t m, uint64_t ms)
{
	uint32_t ca = p->dom_cnt[pl_disk_dom(p, a)], cb = p->dom_cnt[pl_disk_dom(p, b)];
	unsigned __int128 fa, fb;

	if (pl && pl->tight) {
		bool xa = costs(p, pl, a, m), xb = costs(p, pl, b, m);

		if (xa != xb)
			return xb;
	}
	if (ca != cb)
		return ca < cb;
	ca = p->node_cnt[a->node];
	cb = p->node_cnt[b->node];
	if (ca != cb)
		return ca < cb;
	/* (a.used + ms) / a.cap < (b.used + ms) / b.cap, exactly */
	fa = (unsigned __int128)(a->used + ms) * b->capacity;
	fb = (unsigned __int128)(b->used + ms) * a->capacity;
	if (fa != fb)
		return fa < fb;
	if (a->members != b->members)
		return a->members < b->members;
	return a->id < b->id;
}

/* The best disk for one more member under the scratch counts, or -1. pl may be NULL. */
static ssize_t pick(const struct ts_placement *p, const struct plan *pl, uint32_t m, uint64_t ms)
{
	ssize_t best = -1;
	size_t i;

	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];

		if (fits(p, d, m, ms) && (best < 0 || better(p, pl, d, &p->disks[best], m, ms)))
			best = (ssize_t)i;
	}
	return best;
}

/* Count disk di as holding a member of the group being placed (or not). */
static void take(struct ts_placement *p, size_t di, bool on)
{
	struct pl_disk *d = &p->disks[di];
	int step = on ? 1 : -1;

	d->mark = on;
	p->dom_cnt[pl_disk_dom(p, d)] += (uint32_t)step;
	p->node_cnt[d->node] += (uint32_t)step;
}

static void member_move(struct pl_disk *from, struct pl_disk *to, uint64_t ms)
{
	from->used -= ms;
	from->members--;
	to->used += ms;
	to->members++;
}

/* ---- groups ---- */

static bool geometry_ok(uint32_t k, uint32_t m, uint64_t ms)
{
	return k && m && k + m <= TS_PLACEMENT_MAX_SLOTS && ms && ms <= UINT64_MAX / k;
}

int pl_group_commit(struct ts_placement *p, uint32_t id, uint32_t k, uint32_t m,
		    uint64_t member_size, const size_t *disk_idx)
{
	struct pl_group *g;
	uint32_t s;
	int rc;

	rc = pl_reserve((void **)&p->groups, &p->groups_cap, p->ngroups + 1, sizeof(*p->groups));
	if (!rc)
		rc = pl_reserve((void **)&p->slots, &p->slots_cap, p->nslots + k + m,
				sizeof(*p->slots));
	if (rc)
		return rc;
	if (!id)
		id = p->next_group;
	if (id >= p->next_group)
		p->next_group = id + 1;
	g = &p->groups[p->ngroups++];
	*g = (struct pl_group){ .id = id, .k = k, .m = m, .member_size = member_size,
				.slot = p->nslots };
	for (s = 0; s < k + m; s++) {
		struct pl_disk *d = &p->disks[disk_idx[s]];

		p->slots[p->nslots++] = d->id;
		d->used += member_size;
		d->members++;
	}
	return 0;
}

/* Why no k+m disks keep the rule: how many domains have a disk with room. */
static void explain(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t ms, char *msg,
		    size_t msglen)
{
	size_t i, doms = 0, cordoned = 0;
	uint32_t fit = 0, need_doms = TS_DIV_ROUND_UP(k + m, m);
	char sz[32];

	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];

		if (!p->nodes[d->node].cordoned && d->capacity - d->used >= ms)
			p->dom_cnt[pl_disk_dom(p, d)]++;
	}
	for (i = 0; i < p->ndomains; i++) {
		doms += p->dom_cnt[i] > 0;
		fit += TS_MIN(p->dom_cnt[i], m);
	}
	memset(p->dom_cnt, 0, p->ndomains * sizeof(*p->dom_cnt));
	for (i = 0; i < p->nnodes; i++)
		cordoned += p->nodes[i].cordoned;
	pl_size_str(ms, sz);
	if (doms < need_doms)
		pl_say(msg, msglen,
		       "a %u+%u group needs disks with %s free in at least %u failure domains "
		       "(at most %u members per domain); %zu domain(s) have one (%zu nodes, %zu "
		       "cordoned)",
		       k, m, sz, need_doms, m, doms, p->nnodes, cordoned);
	else
		pl_say(msg, msglen,
		       "a %u+%u group needs %u disks with %s free, at most %u per failure domain; "
		       "only %u such disks exist over %zu domain(s)",
		       k, m, k + m, sz, m, fit, doms);
}

static uint64_t max_groups(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t ms);

/* The plan for one k+m group: g1, the slots that count per domain, the slack. */
static void plan_init(struct ts_placement *p, struct plan *pl, uint64_t G, uint32_t k, uint32_t m)
{
	uint64_t total = 0;
	size_t i;

	pl->g1 = G - 1;
	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];

		p->dom_acc[pl_disk_dom(p, d)] += TS_MIN(d->slots, pl->g1);
	}
	for (i = 0; i < p->ndomains; i++)
		total += TS_MIN(p->dom_acc[i], (uint64_t)m * pl->g1);
	/* G-1 groups fit, so total >= (k+m) * g1 */
	pl->slack = total - (uint64_t)(k + m) * pl->g1;
}

/* Account the pick of disk d in the plan (before it is taken). */
static void plan_pick(struct ts_placement *p, struct plan *pl, const struct pl_disk *d, uint32_t m)
{
	if (d->slots > pl->g1)
		return; /* its slots beyond g1 did not count */
	if (costs(p, pl, d, m) && pl->slack)
		pl->slack--;
	p->dom_acc[pl_disk_dom(p, d)]--;
}

/*
 * Choose k+m disks (indices into idx) for a group; the scratch is zero
 * again after. The disks of the group being chosen keep their used bytes,
 * so a disk's free slots in the plan are those before this group: each disk
 * takes at most one member of it. 0 or -ENOSPC.
 */
static int choose(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t ms, size_t *idx)
{
	uint64_t G = max_groups(p, k, m, ms);
	struct plan pl = { 0 };
	uint32_t got = 0, i;

	if (!G)
		return -ENOSPC; /* the bound is exact for one group */
	plan_init(p, &pl, G, k, m);
	for (; got < k + m; got++) {
		ssize_t di;

		pl.tight = pl.slack < k + m - got;
		di = pick(p, &pl, m, ms);
		if (di < 0)
			break;
		idx[got] = (size_t)di;
		plan_pick(p, &pl, &p->disks[di], m);
		take(p, (size_t)di, true);
	}
	for (i = 0; i < got; i++)
		take(p, idx[i], false);
	memset(p->dom_acc, 0, p->ndomains * sizeof(*p->dom_acc));
	return got == k + m ? 0 : -ENOSPC;
}

int ts_placement_group_place(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t member_size,
			     uint32_t *group_id, char *msg, size_t msglen)
{
	size_t idx[TS_PLACEMENT_MAX_SLOTS];
	int rc;

	pl_say(msg, msglen, "%s", "");
	if (!p || !group_id || !geometry_ok(k, m, member_size)) {
		pl_say(msg, msglen, "invalid geometry %u+%u member_size=%llu", k, m,
		       (unsigned long long)member_size);
		return -EINVAL;
	}
	rc = choose(p, k, m, member_size, idx);
	if (rc) {
		explain(p, k, m, member_size, msg, msglen);
		return rc;
	}
	rc = pl_group_commit(p, 0, k, m, member_size, idx);
	if (rc) {
		pl_say(msg, msglen, "out of memory");
		return rc;
	}
	*group_id = p->groups[p->ngroups - 1].id;
	return 0;
}

/* ---- volumes ---- */

int pl_volume_commit(struct ts_placement *p, uint64_t id, uint64_t size, size_t gi)
{
	size_t pos;
	int rc;

	rc = pl_reserve((void **)&p->volumes, &p->volumes_cap, p->nvolumes + 1, sizeof(*p->volumes));
	if (rc)
		return rc;
	pos = pl_lower_bound(p->volumes, p->nvolumes, sizeof(*p->volumes), id, true);
	memmove(&p->volumes[pos + 1], &p->volumes[pos], (p->nvolumes - pos) * sizeof(*p->volumes));
	p->volumes[pos] = (struct pl_volume){ .id = id, .size = size, .group = p->groups[gi].id };
	p->nvolumes++;
	p->groups[gi].used += size;
	p->groups[gi].nvolumes++;
	return 0;
}

static uint64_t group_free(const struct pl_group *g)
{
	return (uint64_t)g->k * g->member_size - g->used;
}

int ts_placement_volume_place(struct ts_placement *p, uint64_t volume_id, uint64_t size,
			      uint32_t *group_id, char *msg, size_t msglen)
{
	const struct ts_placement_opts *o;
	char why[256], sz[32], cap[32];
	ssize_t best = -1;
	size_t i;
	int rc;

	pl_say(msg, msglen, "%s", "");
	if (!p || !group_id || !size) {
		pl_say(msg, msglen, "invalid volume size 0");
		return -EINVAL;
	}
	if (pl_volume_find(p, volume_id) >= 0) {
		pl_say(msg, msglen, "volume %llu exists", (unsigned long long)volume_id);
		return -EEXIST;
	}
	/* reserve first: the new group below must not be left without its volume */
	rc = pl_reserve((void **)&p->volumes, &p->volumes_cap, p->nvolumes + 1, sizeof(*p->volumes));
	if (rc)
		goto fail;
	for (i = 0; i < p->ngroups; i++) {
		uint64_t f = group_free(&p->groups[i]);

		if (f >= size && (best < 0 || f < group_free(&p->groups[best])))
			best = (ssize_t)i;
	}
	if (best < 0) {
		uint32_t gid;

		o = &p->opts;
		if (size > (uint64_t)o->k * o->member_size) {
			pl_say(msg, msglen,
			       "volume of %s is larger than a %u+%u group of %s members holds (%s)",
			       pl_size_str(size, sz), o->k, o->m, pl_size_str(o->member_size, cap),
			       pl_size_str((uint64_t)o->k * o->member_size, why));
			return -EFBIG;
		}
		rc = ts_placement_group_place(p, o->k, o->m, o->member_size, &gid, why, sizeof(why));
		if (rc) {
			pl_say(msg, msglen, "no group has %s free and a new one cannot be placed: %s",
			       pl_size_str(size, sz), why);
			return rc;
		}
		best = (ssize_t)p->ngroups - 1;
	}
	rc = pl_volume_commit(p, volume_id, size, (size_t)best);
	if (rc)
		goto fail; /* not reached: reserved above */
	*group_id = p->groups[best].id;
	return 0;
fail:
	pl_say(msg, msglen, "out of memory");
	return rc;
}

int ts_placement_volume_delete(struct ts_placement *p, uint64_t volume_id)
{
	ssize_t vi = p ? pl_volume_find(p, volume_id) : -1;
	struct pl_group *g;

	if (vi < 0)
		return -ENOENT;
	g = &p->groups[pl_group_find(p, p->volumes[vi].group)];
	g->used -= p->volumes[vi].size;
	g->nvolumes--;
	memmove(&p->volumes[vi], &p->volumes[vi + 1],
		(p->nvolumes - (size_t)vi - 1) * sizeof(*p->volumes));
	p->nvolumes--;
	return 0;
}

/* ---- drain ---- */

/* Resolve group gi's slots to disk indices. */
static void group_disks(const struct ts_placement *p, const struct pl_group *g, size_t *idx)
{
	uint32_t s;

	for (s = 0; s < g->k + g->m; s++)
		idx[s] = (size_t)pl_disk_find(p, p->slots[g->slot + s]);
}

static void undo_moves(struct ts_placement *p, const struct ts_placement_move *mv, size_t n)
{
	while (n--) {
		const struct pl_group *g = &p->groups[pl_group_find(p, mv[n].group)];
		struct pl_disk *to = &p->disks[pl_disk_find(p, mv[n].to_disk)];
		struct pl_disk *from = &p->disks[pl_disk_find(p, mv[n].from_disk)];

		member_move(to, from, g->member_size);
		p->slots[g->slot + mv[n].slot] = mv[n].from_disk;
	}
}

/* Move slot s of group g (disks idx) off its disk. 0, or -ENOSPC with the message. */
static int drain_one(struct ts_placement *p, const struct pl_group *g, size_t *idx, uint32_t s,
		     struct ts_placement_move *mv, char *msg, size_t msglen)
{
	uint32_t t, n = g->k + g->m;
	ssize_t to;
	char sz[32];

	for (t = 0; t < n; t++)
		take(p, idx[t], true); /* the leaving disk too: its node is cordoned anyway */
	p->dom_cnt[pl_disk_dom(p, &p->disks[idx[s]])]--; /* ...but its member is leaving */
	to = pick(p, NULL, g->m, g->member_size);
	p->dom_cnt[pl_disk_dom(p, &p->disks[idx[s]])]++;
	for (t = 0; t < n; t++)
		take(p, idx[t], false);
	if (to < 0) {
		pl_say(msg, msglen,
		       "group %u (%u+%u) slot %u on disk %u: no disk on another uncordoned node "
		       "has %s free without a failure domain holding more than %u of the group's "
		       "members",
		       g->id, g->k, g->m, s, p->disks[idx[s]].id, pl_size_str(g->member_size, sz),
		       g->m);
		return -ENOSPC;
	}
	*mv = (struct ts_placement_move){ .group = g->id, .slot = s,
					  .from_disk = p->disks[idx[s]].id,
					  .to_disk = p->disks[to].id };
	member_move(&p->disks[idx[s]], &p->disks[to], g->member_size);
	p->slots[g->slot + s] = p->disks[to].id;
	idx[s] = (size_t)to;
	return 0;
}

int ts_placement_drain(struct ts_placement *p, uint32_t node_id, struct ts_placement_move **moves,
		       size_t *nmoves, char *msg, size_t msglen)
{
	size_t idx[TS_PLACEMENT_MAX_SLOTS], i, count = 0, n = 0;
	struct ts_placement_move *mv = NULL;
	ssize_t ni = p ? pl_node_find(p, node_id) : -1;
	bool was;
	int rc = 0;

	pl_say(msg, msglen, "%s", "");
	if (moves)
		*moves = NULL;
	if (nmoves)
		*nmoves = 0;
	if (ni < 0 || !moves || !nmoves) {
		pl_say(msg, msglen, "no node %u", node_id);
		return ni < 0 ? -ENOENT : -EINVAL;
	}
	for (i = 0; i < p->ndisks; i++)
		if (p->disks[i].node == (uint32_t)ni)
			count += p->disks[i].members;
	was = p->nodes[ni].cordoned;
	if (count) {
		mv = ts_malloc(count * sizeof(*mv));
		if (!mv) {
			pl_say(msg, msglen, "out of memory");
			return -ENOMEM;
		}
	}
	p->nodes[ni].cordoned = true;
	for (i = 0; i < p->ngroups && n < count; i++) {
		const struct pl_group *g = &p->groups[i];
		uint32_t s;

		group_disks(p, g, idx);
		for (s = 0; s < g->k + g->m && !rc; s++) {
			if (p->disks[idx[s]].node != (uint32_t)ni)
				continue;
			rc = drain_one(p, g, idx, s, &mv[n], msg, msglen);
			if (!rc)
				n++;
		}
		if (rc)
			goto fail;
	}
	*moves = mv;
	*nmoves = n;
	return 0;
fail:
	undo_moves(p, mv, n);
	p->nodes[ni].cordoned = was;
	ts_free(mv);
	return rc;
}

/* ---- capacity ---- */

/* Can G more k+m groups be placed (the bound above, over the disks' slots)? */
static bool groups_fit(struct ts_placement *p, uint64_t G, uint32_t k, uint32_t m)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];

		p->dom_acc[pl_disk_dom(p, d)] += TS_MIN(d->slots, G);
	}
	for (i = 0; i < p->ndomains; i++) {
		total += TS_MIN(p->dom_acc[i], (uint64_t)m * G);
		p->dom_acc[i] = 0;
	}
	return total >= (uint64_t)(k + m) * G;
}

/*
 * The largest G that groups_fit(), by bisection over [0, free slots /
 * (k+m)]. Leaves each disk's free slots for ms byte members in its scratch
 * (0 on cordoned nodes) for the plan.
 */
static uint64_t max_groups(struct ts_placement *p, uint32_t k, uint32_t m, uint64_t ms)
{
	uint64_t slots = 0, lo = 0, hi;
	size_t i;

	for (i = 0; i < p->ndisks; i++) {
		struct pl_disk *d = &p->disks[i];

		d->slots = p->nodes[d->node].cordoned ? 0 : (d->capacity - d->used) / ms;
		slots += d->slots;
	}
	hi = slots / (k + m);
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;

		if (groups_fit(p, mid, k, m))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

static uint64_t heap_bytes(const struct ts_placement *p)
{
	return sizeof(*p) + p->domains_cap * sizeof(*p->domains) +
	       p->nodes_cap * sizeof(*p->nodes) + p->disks_cap * sizeof(*p->disks) +
	       p->groups_cap * sizeof(*p->groups) + p->slots_cap * sizeof(*p->slots) +
	       p->volumes_cap * sizeof(*p->volumes) + p->dom_cnt_cap * sizeof(*p->dom_cnt) +
	       p->dom_acc_cap * sizeof(*p->dom_acc) + p->node_cnt_cap * sizeof(*p->node_cnt);
}

void ts_placement_stats(struct ts_placement *p, struct ts_placement_stats *st)
{
	const struct ts_placement_opts *o = &p->opts;
	double fmin = 0, fmax = 0;
	uint64_t G;
	size_t i;

	memset(st, 0, sizeof(*st));
	st->nnodes = (uint32_t)p->nnodes;
	st->ndisks = (uint32_t)p->ndisks;
	st->ngroups = (uint32_t)p->ngroups;
	st->nvolumes = p->nvolumes;
	st->min_members = p->ndisks ? UINT32_MAX : 0;
	for (i = 0; i < p->ndomains; i++)
		st->ndomains += p->domains[i].nnodes > 0;
	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];
		double f = (double)d->used / (double)d->capacity;

		st->raw_capacity += d->capacity;
		st->raw_used += d->used;
		st->min_members = TS_MIN(st->min_members, d->members);
		st->max_members = TS_MAX(st->max_members, d->members);
		if (!d->members)
			continue;
		fmin = fmin == 0 ? f : TS_MIN(fmin, f);
		fmax = TS_MAX(fmax, f);
	}
	st->balance = fmin > 0 ? fmax / fmin : 0;
	for (i = 0; i < p->ngroups; i++)
		st->group_free += group_free(&p->groups[i]);
	for (i = 0; i < p->nvolumes; i++)
		st->volume_bytes += p->volumes[i].size;
	G = max_groups(p, o->k, o->m, o->member_size);
	st->new_groups = (uint32_t)TS_MIN(G, UINT32_MAX);
	st->usable_free = st->group_free + (uint64_t)st->new_groups * o->k * o->member_size;
	st->heap_bytes = heap_bytes(p);
}
