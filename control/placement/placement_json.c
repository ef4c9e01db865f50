/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The placement model as JSON, for the controller's metadata store.
 *
 * What is stored is what cannot be derived: the pool geometry, the next
 * group id, nodes (id, domain label, cordon), disks (id, node, capacity),
 * groups (id, geometry, the disk of each slot) and volumes (id, size,
 * group). Used bytes and member counts of disks, and used bytes of groups,
 * are recomputed on load, so a stored model cannot disagree with itself.
 *
 * Loading trusts nothing: every field must be present with its type and
 * range, ids unique, references resolved, capacities respected and the
 * domain rule kept; anything else is -EINVAL with a message naming the
 * first offending element. The model is rebuilt through the same calls
 * that build it live (ts_placement_node_add, ts_placement_disk_add), plus
 * the commit steps of group and volume placement after their own checks,
 * so a loaded model holds every invariant a live one does.
 *
 * THREAD SAFETY: none; one owner thread (placement.h).
 */
#include "control/placement/placement_int.h"

#include <jansson.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

/* ---- write ---- */

/* One element of a list: i-th node, disk, group or volume; NULL when out of memory. */
typedef json_t *(*elem_fn)(const struct ts_placement *p, size_t i);

static json_t *node_json(const struct ts_placement *p, size_t i)
{
	const struct pl_node *n = &p->nodes[i];

	return json_pack("{s:I,s:s,s:b}", "id", (json_int_t)n->id, "domain",
			 p->domains[n->dom].label, "cordoned", n->cordoned);
}

static json_t *disk_json(const struct ts_placement *p, size_t i)
{
	const struct pl_disk *d = &p->disks[i];

	return json_pack("{s:I,s:I,s:I}", "id", (json_int_t)d->id, "node",
			 (json_int_t)p->nodes[d->node].id, "capacity", (json_int_t)d->capacity);
}

static json_t *group_json(const struct ts_placement *p, size_t i)
{
	const struct pl_group *g = &p->groups[i];
	json_t *slots = json_array();
	uint32_t s;

	for (s = 0; slots && s < g->k + g->m; s++)
		if (json_array_append_new(slots, json_integer(p->slots[g->slot + s]))) {
			json_decref(slots);
			slots = NULL;
		}
	/* "o" takes the reference even when packing fails; NULL fails it */
	return json_pack("{s:I,s:I,s:I,s:I,s:o}", "id", (json_int_t)g->id, "k", (json_int_t)g->k,
			 "m", (json_int_t)g->m, "member_size", (json_int_t)g->member_size, "disks",
			 slots);
}

static json_t *volume_json(const struct ts_placement *p, size_t i)
{
	const struct pl_volume *v = &p->volumes[i];

	return json_pack("{s:I,s:I,s:I}", "id", (json_int_t)v->id, "size", (json_int_t)v->size,
			 "group", (json_int_t)v->group);
}

static json_t *list_json(const struct ts_placement *p, size_t n, elem_fn elem)
{
	json_t *a = json_array();
	size_t i;

	for (i = 0; a && i < n; i++)
		if (json_array_append_new(a, elem(p, i))) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

int ts_placement_to_json(const struct ts_placement *p, char **out, size_t *len)
{
	json_t *j;
	char *buf = NULL;
	size_t n;
	int rc = -ENOMEM;

	if (!p || !out || !len)
		return -EINVAL;
	j = json_pack("{s:i,s:{s:I,s:I,s:I},s:I,s:o,s:o,s:o,s:o}", "version",
		      TS_PLACEMENT_JSON_VERSION, "pool", "k", (json_int_t)p->opts.k, "m",
		      (json_int_t)p->opts.m, "member_size", (json_int_t)p->opts.member_size,
		      "next_group", (json_int_t)p->next_group, "nodes",
		      list_json(p, p->nnodes, node_json), "disks", list_json(p, p->ndisks, disk_json),
		      "groups", list_json(p, p->ngroups, group_json), "volumes",
		      list_json(p, p->nvolumes, volume_json));
	if (!j)
		return -ENOMEM;
	n = json_dumpb(j, NULL, 0, JSON_COMPACT);
	if (!n)
		goto out;
	buf = ts_malloc(n + 1);
	if (!buf || json_dumpb(j, buf, n, JSON_COMPACT) != n)
		goto out;
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
	rc = 0;
out:
	ts_free(buf);
	json_decref(j);
	return rc;
}

/* ---- read ---- */

struct rd {
	char *msg;
	size_t msglen;
};

#define NOINDEX SIZE_MAX

/* Member key of o (element i of list what) as an integer in [lo, hi]. 0 or -EINVAL with the message. */
static int get_int(struct rd *r, const json_t *o, const char *what, size_t i, const char *key,
		   uint64_t lo, uint64_t hi, uint64_t *out)
{
	const json_t *v = json_object_get(o, key);
	json_int_t x;

	char at[24] = "";

	if (i != NOINDEX)
		snprintf(at, sizeof(at), "[%zu]", i);
	if (!json_is_integer(v)) {
		pl_say(r->msg, r->msglen, "%s%s.%s: missing or not an integer", what, at, key);
		return -EINVAL;
	}
	x = json_integer_value(v);
	if (x < 0 || (uint64_t)x < lo || (uint64_t)x > hi) {
		pl_say(r->msg, r->msglen, "%s%s.%s: %lld out of range %llu..%llu", what, at, key,
		       (long long)x, (unsigned long long)lo, (unsigned long long)hi);
		return -EINVAL;
	}
	*out = (uint64_t)x;
	return 0;
}

/* Several integer members of o at once: fields[f] into out[f]. */
struct field {
	const char *key;
	uint64_t lo, hi;
};

static int get_ints(struct rd *r, const json_t *o, const char *what, size_t i,
		    const struct field *fields, size_t n, uint64_t *out)
{
	size_t f;
	int rc = 0;

	for (f = 0; f < n && !rc; f++)
		rc = get_int(r, o, what, i, fields[f].key, fields[f].lo, fields[f].hi, &out[f]);
	return rc;
}

/* Array member key of the root, each element an object. */
static const json_t *get_list(struct rd *r, const json_t *root, const char *key)
{
	const json_t *a = json_object_get(root, key);
	size_t i;

	if (!json_is_array(a)) {
		pl_say(r->msg, r->msglen, "%s: missing or not an array", key);
		return NULL;
	}
	for (i = 0; i < json_array_size(a); i++)
		if (!json_is_object(json_array_get(a, i))) {
			pl_say(r->msg, r->msglen, "%s[%zu]: not an object", key, i);
			return NULL;
		}
	return a;
}

/* A live call's error on element i of list what, as a load error. */
static int refused(struct rd *r, int rc, const char *what, size_t i, const char *why)
{
	if (rc == -ENOMEM) {
		pl_say(r->msg, r->msglen, "out of memory");
		return rc;
	}
	pl_say(r->msg, r->msglen, "%s[%zu]: %s (%s)", what, i, why, ts_strerror(rc));
	return -EINVAL;
}

static int read_nodes(struct rd *r, struct ts_placement *p, const json_t *list)
{
	size_t i;
	uint64_t id;
	int rc;

	for (i = 0; i < json_array_size(list); i++) {
		const json_t *o = json_array_get(list, i);
		const json_t *dom = json_object_get(o, "domain"), *c = json_object_get(o, "cordoned");

		rc = get_int(r, o, "nodes", i, "id", 0, UINT32_MAX, &id);
		if (rc)
			return rc;
		if (!json_is_string(dom) || !json_is_boolean(c)) {
			pl_say(r->msg, r->msglen, "nodes[%zu]: domain must be a string, cordoned a "
				       "boolean", i);
			return -EINVAL;
		}
		rc = ts_placement_node_add(p, (uint32_t)id, json_string_value(dom));
		if (rc)
			return refused(r, rc, "nodes", i, "duplicate id or bad domain");
		ts_placement_node_cordon(p, (uint32_t)id, json_is_true(c));
	}
	return 0;
}

static int read_disks(struct rd *r, struct ts_placement *p, const json_t *list)
{
	static const struct field fields[] = { { "id", 0, UINT32_MAX },
					       { "node", 0, UINT32_MAX },
					       { "capacity", 1, INT64_MAX } };
	uint64_t v[3];
	size_t i;
	int rc;

	for (i = 0; i < json_array_size(list); i++) {
		rc = get_ints(r, json_array_get(list, i), "disks", i, fields, 3, v);
		if (rc)
			return rc;
		rc = ts_placement_disk_add(p, (uint32_t)v[0], (uint32_t)v[1], v[2]);
		if (rc)
			return refused(r, rc, "disks", i, "duplicate id or unknown node");
	}
	return 0;
}

/* Check one stored group's slots: known, distinct disks with room, the domain rule. */
static int check_slots(struct rd *r, struct ts_placement *p, size_t i, uint32_t k, uint32_t m,
		       uint64_t ms, const json_t *disks, size_t *idx)
{
	const char *why = NULL;
	uint32_t s, t;

	if (!json_is_array(disks) || json_array_size(disks) != k + m) {
		pl_say(r->msg, r->msglen, "groups[%zu].disks: not an array of k+m=%u disk ids", i,
		       k + m);
		return -EINVAL;
	}
	for (s = 0; s < k + m; s++) {
		const json_t *v = json_array_get(disks, s);
		struct pl_disk *d;
		ssize_t di = -1;

		if (json_is_integer(v) && json_integer_value(v) >= 0 &&
		    json_integer_value(v) <= UINT32_MAX)
			di = pl_disk_find(p, (uint32_t)json_integer_value(v));
		if (di < 0) {
			why = "unknown disk";
			break;
		}
		d = &p->disks[di];
		if (d->mark)
			why = "two members on one disk";
		else if (d->capacity - d->used < ms)
			why = "disk over capacity";
		else if (p->dom_cnt[pl_disk_dom(p, d)] >= m)
			why = "more than m members in one failure domain";
		if (why)
			break;
		idx[s] = (size_t)di;
		d->mark = true;
		p->dom_cnt[pl_disk_dom(p, d)]++;
	}
	for (t = 0; t < s; t++) {
		p->disks[idx[t]].mark = false;
		p->dom_cnt[pl_disk_dom(p, &p->disks[idx[t]])]--;
	}
	if (why) {
		pl_say(r->msg, r->msglen, "groups[%zu].disks[%u]: %s", i, s, why);
		return -EINVAL;
	}
	return 0;
}

static int read_groups(struct rd *r, struct ts_placement *p, const json_t *list)
{
	size_t idx[TS_PLACEMENT_MAX_SLOTS], i;
	uint64_t id, k, m, ms, last = 0;
	int rc;

	for (i = 0; i < json_array_size(list); i++) {
		const json_t *o = json_array_get(list, i);

		rc = get_int(r, o, "groups", i, "id", last + 1, UINT32_MAX - 1, &id);
		if (!rc)
			rc = get_int(r, o, "groups", i, "k", 1, TS_PLACEMENT_MAX_SLOTS - 1, &k);
		if (!rc)
			rc = get_int(r, o, "groups", i, "m", 1, TS_PLACEMENT_MAX_SLOTS - k, &m);
		if (!rc)
			rc = get_int(r, o, "groups", i, "member_size", 1, INT64_MAX / k, &ms);
		if (!rc)
			rc = check_slots(r, p, i, (uint32_t)k, (uint32_t)m, ms,
					 json_object_get(o, "disks"), idx);
		if (!rc)
			rc = pl_group_commit(p, (uint32_t)id, (uint32_t)k, (uint32_t)m, ms, idx);
		if (rc)
			return rc == -ENOMEM ? refused(r, rc, "groups", i, "") : rc;
		last = id;
	}
	return 0;
}

static int read_volumes(struct rd *r, struct ts_placement *p, const json_t *list)
{
	static const struct field fields[] = { { "id", 0, INT64_MAX },
					       { "size", 1, INT64_MAX },
					       { "group", 1, UINT32_MAX } };
	uint64_t v[3], id, size;
	ssize_t gi;
	size_t i;
	int rc;

	for (i = 0; i < json_array_size(list); i++) {
		rc = get_ints(r, json_array_get(list, i), "volumes", i, fields, 3, v);
		if (rc)
			return rc;
		id = v[0];
		size = v[1];
		gi = pl_group_find(p, (uint32_t)v[2]);
		if (gi < 0 || pl_volume_find(p, id) >= 0 ||
		    (uint64_t)p->groups[gi].k * p->groups[gi].member_size - p->groups[gi].used <
			    size) {
			pl_say(r->msg, r->msglen,
			       "volumes[%zu]: unknown group, duplicate id or group over capacity", i);
			return -EINVAL;
		}
		rc = pl_volume_commit(p, id, size, (size_t)gi);
		if (rc)
			return refused(r, rc, "volumes", i, "");
	}
	return 0;
}

int ts_placement_from_json(const char *buf, size_t len, struct ts_placement **out, char *msg,
			   size_t msglen)
{
	struct rd r = { .msg = msg, .msglen = msglen };
	struct ts_placement_opts opts;
	struct ts_placement *p = NULL;
	const json_t *pool, *ver, *nodes, *disks, *groups, *volumes;
	uint64_t k, m, ms, next;
	json_error_t err;
	json_t *root;
	int rc = -EINVAL;

	pl_say(msg, msglen, "%s", "");
	if (!buf || !out)
		return -EINVAL;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
	if (!root) {
		pl_say(msg, msglen, "not JSON: %s at line %d column %d", err.text, err.line,
		       err.column);
		return -EINVAL;
	}
	ver = json_object_get(root, "version");
	if (!json_is_object(root) || !json_is_integer(ver)) {
		pl_say(msg, msglen, "not a placement model (no integer \"version\")");
		goto out;
	}
	if (json_integer_value(ver) != TS_PLACEMENT_JSON_VERSION) {
		pl_say(msg, msglen, "unknown placement model version %lld (this build reads %d)",
		       (long long)json_integer_value(ver), TS_PLACEMENT_JSON_VERSION);
		goto out;
	}
	pool = json_object_get(root, "pool");
	if (!json_is_object(pool)) {
		pl_say(msg, msglen, "pool: missing or not an object");
		goto out;
	}
	if (get_int(&r, pool, "pool", NOINDEX, "k", 1, TS_PLACEMENT_MAX_SLOTS - 1, &k) ||
	    get_int(&r, pool, "pool", NOINDEX, "m", 1, TS_PLACEMENT_MAX_SLOTS - k, &m) ||
	    get_int(&r, pool, "pool", NOINDEX, "member_size", 1, INT64_MAX / k, &ms) ||
	    get_int(&r, root, "model", NOINDEX, "next_group", 1, UINT32_MAX, &next))
		goto out;
	if (!(nodes = get_list(&r, root, "nodes")) || !(disks = get_list(&r, root, "disks")) ||
	    !(groups = get_list(&r, root, "groups")) || !(volumes = get_list(&r, root, "volumes")))
		goto out;
	opts = (struct ts_placement_opts){ .k = (uint32_t)k, .m = (uint32_t)m, .member_size = ms };
	rc = ts_placement_create(&opts, &p);
	if (!rc)
		rc = read_nodes(&r, p, nodes);
	if (!rc)
		rc = read_disks(&r, p, disks);
	if (!rc)
		rc = read_groups(&r, p, groups);
	if (!rc)
		rc = read_volumes(&r, p, volumes);
	if (!rc && next < p->next_group) {
		pl_say(msg, msglen, "next_group %llu is not above the last group id",
		       (unsigned long long)next);
		rc = -EINVAL;
	}
	if (rc)
		goto out;
	p->next_group = (uint32_t)next;
	*out = p;
	p = NULL;
out:
	ts_placement_destroy(p);
	json_decref(root);
	return rc;
}
