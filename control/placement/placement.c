/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Placement model: the tables (domains, nodes, disks, groups, slots,
 * volumes), their upkeep, and the queries.
 *
 * The workload is a controller deciding, one call at a time, where the
 * members of array groups go on a pool of up to a few thousand nodes with
 * tens of disks each, tens of thousands of groups and many more volumes.
 * Decisions scan the disks (placement_place.c), so what matters here is
 * that a disk is one small struct in one array (the scan is a walk over
 * contiguous memory) and that lookups by id are cheap. Every table is an
 * array sorted by id, found by bisection; additions and removals shift the
 * tail, which is cheap at these sizes and keeps no second index to get out
 * of step. Group ids are handed out in increasing order and groups are
 * never removed, so groups and their slots only ever append.
 *
 * Failure domains are interned: each node points at a domain entry, shared
 * by all nodes with the same label, private for a node without one. The
 * entry of a domain whose last node left stays as a free entry the next
 * node reuses, so domains never outnumber nodes and no index moves. Which
 * entry a domain gets depends on history, so nothing observable depends on
 * entry order: decisions break ties by disk id and ts_placement_domains()
 * lists domains in node id order.
 *
 * Every mutation first reserves the memory it needs, then checks, then
 * changes: a failed call changes nothing.
 *
 * THREAD SAFETY: none; one owner thread (placement.h).
 */
#include "control/placement/placement_int.h"

#include <stdio.h>
#include <string.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"

_Static_assert(TS_PLACEMENT_MAX_SLOTS == TS_AGRP_MAX_MEMBERS, "a group is an array group");

#define DEFAULT_K 4
#define DEFAULT_M 2
#define DEFAULT_MEMBER (64ull << 30)

/* ---- helpers ---- */

int pl_reserve(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return 0;
	ncap = *cap ? *cap : 8;
	while (ncap < need)
		ncap *= 2;
	n = ts_realloc(*arr, ncap * elem);
	if (!n)
		return -ENOMEM;
	/* the scratch arrays rely on zeroed growth; the tables do not mind */
	memset((char *)n + *cap * elem, 0, (ncap - *cap) * elem);
	*arr = n;
	*cap = ncap;
	return 0;
}

size_t pl_lower_bound(const void *base, size_t n, size_t stride, uint64_t id, bool wide)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const char *e = (const char *)base + mid * stride;
		uint64_t v;

		if (wide) {
			memcpy(&v, e, sizeof(v));
		} else {
			uint32_t v32;

			memcpy(&v32, e, sizeof(v32));
			v = v32;
		}
		if (v < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

#define PL_FIND(arr, n, id, wide)                                                        \
	do {                                                                              \
		size_t i_ = pl_lower_bound((arr), (n), sizeof(*(arr)), (id), (wide));      \
		return i_ < (n) && (arr)[i_].id == (id) ? (ssize_t)i_ : -1;              \
	} while (0)

ssize_t pl_node_find(const struct ts_placement *p, uint32_t id)
{
	PL_FIND(p->nodes, p->nnodes, id, false);
}

ssize_t pl_disk_find(const struct ts_placement *p, uint32_t id)
{
	PL_FIND(p->disks, p->ndisks, id, false);
}

ssize_t pl_group_find(const struct ts_placement *p, uint32_t id)
{
	PL_FIND(p->groups, p->ngroups, id, false);
}

ssize_t pl_volume_find(const struct ts_placement *p, uint64_t id)
{
	PL_FIND(p->volumes, p->nvolumes, id, true);
}

void pl_say(char *msg, size_t msglen, const char *fmt, ...)
{
	va_list ap;

	if (!msg || !msglen)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, msglen, fmt, ap);
	va_end(ap);
}

const char *pl_size_str(uint64_t bytes, char buf[32])
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	int u = -1;
	uint64_t v = bytes;

	while (u + 1 < (int)TS_ARRAY_SIZE(unit) && v && v % 1024 == 0) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, 32, "%llu bytes", (unsigned long long)bytes);
	else
		snprintf(buf, 32, "%llu %s", (unsigned long long)v, unit[u]);
	return buf;
}

/* ---- model ---- */

int ts_placement_create(const struct ts_placement_opts *opts, struct ts_placement **out)
{
	struct ts_placement_opts o = opts ? *opts : (struct ts_placement_opts){ 0 };
	struct ts_placement *p;

	if (!out)
		return -EINVAL;
	if (!o.k)
		o.k = DEFAULT_K;
	if (!o.m)
		o.m = DEFAULT_M;
	if (!o.member_size)
		o.member_size = DEFAULT_MEMBER;
	if (o.k + o.m > TS_PLACEMENT_MAX_SLOTS || o.member_size > UINT64_MAX / o.k)
		return -EINVAL;
	p = ts_calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->opts = o;
	p->next_group = 1;
	*out = p;
	return 0;
}

void ts_placement_destroy(struct ts_placement *p)
{
	if (!p)
		return;
	ts_free(p->domains);
	ts_free(p->nodes);
	ts_free(p->disks);
	ts_free(p->groups);
	ts_free(p->slots);
	ts_free(p->volumes);
	ts_free(p->dom_cnt);
	ts_free(p->dom_acc);
	ts_free(p->node_cnt);
	ts_free(p);
}

/* ---- nodes ---- */

/* Room for one more node, one more domain and their scratch. */
static int reserve_node(struct ts_placement *p)
{
	int rc;

	rc = pl_reserve((void **)&p->nodes, &p->nodes_cap, p->nnodes + 1, sizeof(*p->nodes));
	if (!rc)
		rc = pl_reserve((void **)&p->domains, &p->domains_cap, p->ndomains + 1,
				sizeof(*p->domains));
	if (!rc)
		rc = pl_reserve((void **)&p->dom_cnt, &p->dom_cnt_cap, p->domains_cap,
				sizeof(*p->dom_cnt));
	if (!rc)
		rc = pl_reserve((void **)&p->dom_acc, &p->dom_acc_cap, p->domains_cap,
				sizeof(*p->dom_acc));
	if (!rc)
		rc = pl_reserve((void **)&p->node_cnt, &p->node_cnt_cap, p->nodes_cap,
				sizeof(*p->node_cnt));
	return rc;
}

/* The domain entry for a node with this label (room is reserved). */
static uint32_t domain_for(struct ts_placement *p, const char *label)
{
	size_t i, free_entry = p->ndomains;

	for (i = 0; i < p->ndomains; i++) {
		if (*label && p->domains[i].nnodes && !strcmp(p->domains[i].label, label))
			return (uint32_t)i;
		if (!p->domains[i].nnodes && free_entry == p->ndomains)
			free_entry = i;
	}
	if (free_entry == p->ndomains)
		p->ndomains++;
	snprintf(p->domains[free_entry].label, sizeof(p->domains[free_entry].label), "%s", label);
	return (uint32_t)free_entry;
}

int ts_placement_node_add(struct ts_placement *p, uint32_t node_id, const char *domain)
{
	const char *label = domain ? domain : "";
	size_t pos, i;
	uint32_t dom;
	int rc;

	if (!p || strlen(label) >= TS_PLACEMENT_LABEL_MAX)
		return -EINVAL;
	if (pl_node_find(p, node_id) >= 0)
		return -EEXIST;
	rc = reserve_node(p);
	if (rc)
		return rc;
	dom = domain_for(p, label);
	p->domains[dom].nnodes++;
	pos = pl_lower_bound(p->nodes, p->nnodes, sizeof(*p->nodes), node_id, false);
	memmove(&p->nodes[pos + 1], &p->nodes[pos], (p->nnodes - pos) * sizeof(*p->nodes));
	p->nodes[pos] = (struct pl_node){ .id = node_id, .dom = dom };
	p->nnodes++;
	for (i = 0; i < p->ndisks; i++)
		if (p->disks[i].node >= pos)
			p->disks[i].node++;
	return 0;
}

int ts_placement_node_cordon(struct ts_placement *p, uint32_t node_id, bool cordoned)
{
	ssize_t ni = p ? pl_node_find(p, node_id) : -1;

	if (ni < 0)
		return -ENOENT;
	p->nodes[ni].cordoned = cordoned;
	return 0;
}

/* -EBUSY and the message when disk index di holds a member. */
static int disk_busy(const struct ts_placement *p, size_t di, char *msg, size_t msglen)
{
	const struct pl_disk *d = &p->disks[di];
	size_t g;
	uint32_t s;

	if (!d->members)
		return 0;
	for (g = 0; g < p->ngroups; g++) {
		const struct pl_group *gr = &p->groups[g];

		for (s = 0; s < gr->k + gr->m; s++) {
			if (p->slots[gr->slot + s] != d->id)
				continue;
			pl_say(msg, msglen,
			       "disk %u on node %u holds slot %u of group %u (%u+%u) and %u other "
			       "member(s): removing it would leave the group %u of %u members; "
			       "drain node %u first",
			       d->id, p->nodes[d->node].id, s, gr->id, gr->k, gr->m, d->members - 1,
			       gr->k + gr->m - 1, gr->k + gr->m, p->nodes[d->node].id);
			return -EBUSY;
		}
	}
	return -EBUSY; /* not reached while the member counts are right */
}

int ts_placement_node_remove(struct ts_placement *p, uint32_t node_id, char *msg, size_t msglen)
{
	ssize_t ni = p ? pl_node_find(p, node_id) : -1;
	size_t i, j;
	int rc;

	pl_say(msg, msglen, "%s", "");
	if (ni < 0) {
		pl_say(msg, msglen, "no node %u", node_id);
		return -ENOENT;
	}
	for (i = 0; i < p->ndisks; i++) {
		if (p->disks[i].node != (uint32_t)ni)
			continue;
		rc = disk_busy(p, i, msg, msglen);
		if (rc)
			return rc;
	}
	for (i = 0, j = 0; i < p->ndisks; i++) {
		if (p->disks[i].node == (uint32_t)ni)
			continue;
		p->disks[j] = p->disks[i];
		if (p->disks[j].node > (uint32_t)ni)
			p->disks[j].node--;
		j++;
	}
	p->ndisks = j;
	p->domains[p->nodes[ni].dom].nnodes--;
	memmove(&p->nodes[ni], &p->nodes[ni + 1], (p->nnodes - (size_t)ni - 1) * sizeof(*p->nodes));
	p->nnodes--;
	return 0;
}

/* ---- disks ---- */

int ts_placement_disk_add(struct ts_placement *p, uint32_t disk_id, uint32_t node_id,
			  uint64_t capacity)
{
	ssize_t ni;
	size_t pos;
	int rc;

	if (!p || !capacity)
		return -EINVAL;
	ni = pl_node_find(p, node_id);
	if (ni < 0)
		return -ENOENT;
	if (pl_disk_find(p, disk_id) >= 0)
		return -EEXIST;
	rc = pl_reserve((void **)&p->disks, &p->disks_cap, p->ndisks + 1, sizeof(*p->disks));
	if (rc)
		return rc;
	pos = pl_lower_bound(p->disks, p->ndisks, sizeof(*p->disks), disk_id, false);
	memmove(&p->disks[pos + 1], &p->disks[pos], (p->ndisks - pos) * sizeof(*p->disks));
	p->disks[pos] = (struct pl_disk){ .id = disk_id, .node = (uint32_t)ni, .capacity = capacity };
	p->ndisks++;
	return 0;
}

int ts_placement_disk_remove(struct ts_placement *p, uint32_t disk_id, char *msg, size_t msglen)
{
	ssize_t di = p ? pl_disk_find(p, disk_id) : -1;
	int rc;

	pl_say(msg, msglen, "%s", "");
	if (di < 0) {
		pl_say(msg, msglen, "no disk %u", disk_id);
		return -ENOENT;
	}
	rc = disk_busy(p, (size_t)di, msg, msglen);
	if (rc)
		return rc;
	memmove(&p->disks[di], &p->disks[di + 1], (p->ndisks - (size_t)di - 1) * sizeof(*p->disks));
	p->ndisks--;
	return 0;
}

/* ---- queries ---- */

static void disk_info(const struct ts_placement *p, const struct pl_disk *d,
		      struct ts_placement_disk_info *out)
{
	*out = (struct ts_placement_disk_info){ .id = d->id, .node_id = p->nodes[d->node].id,
						.capacity = d->capacity, .used = d->used,
						.members = d->members };
}

int ts_placement_disk_at(const struct ts_placement *p, size_t i, struct ts_placement_disk_info *out)
{
	if (!p || i >= p->ndisks)
		return -ENOENT;
	disk_info(p, &p->disks[i], out);
	return 0;
}

int ts_placement_disk_get(const struct ts_placement *p, uint32_t disk_id,
			  struct ts_placement_disk_info *out)
{
	ssize_t di = p ? pl_disk_find(p, disk_id) : -1;

	return di < 0 ? -ENOENT : ts_placement_disk_at(p, (size_t)di, out);
}

int ts_placement_group_at(const struct ts_placement *p, size_t i,
			  struct ts_placement_group_info *out)
{
	const struct pl_group *g;

	if (!p || i >= p->ngroups)
		return -ENOENT;
	g = &p->groups[i];
	*out = (struct ts_placement_group_info){ .id = g->id, .k = g->k, .m = g->m,
						 .member_size = g->member_size, .used = g->used,
						 .nvolumes = g->nvolumes };
	memcpy(out->disks, &p->slots[g->slot], (g->k + g->m) * sizeof(out->disks[0]));
	return 0;
}

int ts_placement_group_get(const struct ts_placement *p, uint32_t group_id,
			   struct ts_placement_group_info *out)
{
	ssize_t gi = p ? pl_group_find(p, group_id) : -1;

	return gi < 0 ? -ENOENT : ts_placement_group_at(p, (size_t)gi, out);
}

int ts_placement_volume_get(const struct ts_placement *p, uint64_t volume_id,
			    struct ts_placement_volume_info *out)
{
	ssize_t vi = p ? pl_volume_find(p, volume_id) : -1;

	if (vi < 0)
		return -ENOENT;
	*out = (struct ts_placement_volume_info){ .id = p->volumes[vi].id,
						  .size = p->volumes[vi].size,
						  .group = p->volumes[vi].group };
	return 0;
}

void ts_placement_nodes(const struct ts_placement *p, struct ts_placement_node_info *out,
			size_t max, size_t *n)
{
	size_t i;

	*n = p->nnodes;
	for (i = 0; i < p->nnodes && i < max; i++) {
		const struct pl_node *nd = &p->nodes[i];

		out[i] = (struct ts_placement_node_info){ .id = nd->id, .cordoned = nd->cordoned };
		snprintf(out[i].domain, sizeof(out[i].domain), "%s", p->domains[nd->dom].label);
	}
	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];

		if (d->node >= max)
			continue;
		out[d->node].ndisks++;
		out[d->node].members += d->members;
		out[d->node].capacity += d->capacity;
		out[d->node].used += d->used;
	}
}

void ts_placement_domains(struct ts_placement *p, struct ts_placement_domain_info *out,
			  size_t max, size_t *n)
{
	uint32_t *slot = p->dom_cnt; /* scratch: domain entry -> output position + 1 */
	size_t i, cnt = 0;

	for (i = 0; i < p->nnodes; i++) {
		const struct pl_node *nd = &p->nodes[i];
		uint32_t d = nd->dom;

		if (!slot[d]) {
			slot[d] = (uint32_t)++cnt;
			if (cnt <= max) {
				out[cnt - 1] = (struct ts_placement_domain_info){ 0 };
				snprintf(out[cnt - 1].label, sizeof(out[cnt - 1].label), "%s",
					 p->domains[d].label);
				if (!p->domains[d].label[0])
					out[cnt - 1].node_id = nd->id;
			}
		}
		if (slot[d] <= max)
			out[slot[d] - 1].nnodes++;
	}
	for (i = 0; i < p->ndisks; i++) {
		const struct pl_disk *d = &p->disks[i];
		uint32_t s = slot[pl_disk_dom(p, d)];

		if (s > max)
			continue;
		out[s - 1].ndisks++;
		out[s - 1].members += d->members;
		out[s - 1].capacity += d->capacity;
		out[s - 1].used += d->used;
	}
	memset(slot, 0, p->ndomains * sizeof(*slot));
	*n = cnt;
}
