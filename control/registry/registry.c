/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Membership registry: the dispatch layer and the directory store.
 *
 * The directory store is the dev/test stand-in for the controller's
 * embedded store (and later Kubernetes objects). Every record is one small
 * JSON file with a single writer: a node writes only its own node record and
 * the completions of its own requests; the controller writes requests and
 * group records. Writes are atomic (temp file + fsync + rename + directory
 * fsync), so a reader sees the old or the new record, never a torn one, and
 * the temp names carry the writer's pid so two processes never share one.
 *
 * Requests are files `<id>.req` under requests/<node>/; completion writes
 * `<id>.done` holding the status. "Pending" means a .req without a .done;
 * the node takes the oldest by modification time. The controller removes
 * neither (they are a small audit trail in tests); a real store would expire
 * them.
 *
 * Group records are the exception to "one writer": the owner's engine
 * rewrites its group's slots (rebuild), the control plane raises its epoch.
 * Both read-modify-write under an flock of groups/<uuid>.lock, and a write
 * carrying an epoch below the stored one is refused (-ESTALE).
 *
 * THREAD SAFETY: no mutable state beyond the path; the filesystem's rename
 * atomicity and the group lock are the only synchronisation.
 */
#include "control/registry/registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

struct ts_registry {
	const struct ts_registry_ops *ops;
	void *ctx;
};

struct dirreg {
	char root[3072];
};

uint64_t ts_registry_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ts_registry_new_request_id(char out[40])
{
	uint8_t u[16];

	if (ts_uuid_generate(u))
		memset(u, 0, sizeof(u));
	ts_uuid_format(u, out);
}

/* ---- files ---- */

static int write_json(const char *path, json_t *j)
{
	char *s;
	int rc;

	if (!j)
		return -ENOMEM;
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	rc = ts_file_write_atomic(path, s, strlen(s));
	free(s); /* jansson's allocator */
	return rc;
}

static json_t *read_json(const char *path)
{
	json_error_t err;

	return json_load_file(path, 0, &err);
}

static int mkdir_p(const char *path)
{
	char buf[4096];

	snprintf(buf, sizeof(buf), "%s", path);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) && errno != EEXIST)
		return -errno;
	return 0;
}

static json_t *uuid_json(const uint8_t u[16])
{
	char s[37];

	ts_uuid_format(u, s);
	return json_string(s);
}

static int uuid_of(json_t *j, uint8_t out[16])
{
	return json_is_string(j) ? ts_uuid_parse(json_string_value(j), out) : -EINVAL;
}

/* ---- directory store ops ---- */

static int dir_put_node(void *ctx, const struct ts_reg_node *n)
{
	struct dirreg *d = ctx;
	char path[4096];
	json_t *arr = json_array();

	for (uint32_t i = 0; arr && i < n->nvdisks && i < TS_REG_MAX_VDISKS; i++)
		json_array_append_new(arr, json_pack("{s:o,s:I}", "uuid", uuid_json(n->vdisks[i].uuid),
						     "size", (json_int_t)n->vdisks[i].size));
	json_t *sarr = json_array();

	for (uint32_t i = 0; sarr && i < n->nserved && i < TS_REG_MAX_SERVED; i++)
		json_array_append_new(sarr, json_pack("{s:o,s:I,s:s}", "uuid",
						      uuid_json(n->served[i].uuid), "epoch",
						      (json_int_t)n->served[i].epoch, "engine",
						      n->served[i].engine));
	snprintf(path, sizeof(path), "%s/nodes/%u.json", d->root, n->node_id);
	return write_json(path, json_pack("{s:i,s:s,s:I,s:I,s:o,s:o}", "node_id",
					  (int)n->node_id, "portal", n->portal, "heartbeat_ms",
					  (json_int_t)n->heartbeat_ms, "free_bytes",
					  (json_int_t)n->free_bytes, "vdisks", arr, "served", sarr));
}

static int node_from_json(json_t *j, struct ts_reg_node *n)
{
	json_t *arr = NULL, *v;
	json_int_t id = 0, hb = 0, fb = 0;
	const char *portal = NULL;
	size_t i;

	if (!j || json_unpack(j, "{s:I,s:s,s:I,s:I,s:o}", "node_id", &id, "portal", &portal,
			      "heartbeat_ms", &hb, "free_bytes", &fb, "vdisks", &arr) ||
	    !json_is_array(arr))
		return -EINVAL;
	memset(n, 0, sizeof(*n));
	n->node_id = (uint32_t)id;
	snprintf(n->portal, sizeof(n->portal), "%s", portal);
	n->heartbeat_ms = (uint64_t)hb;
	n->free_bytes = (uint64_t)fb;
	json_array_foreach(arr, i, v) {
		if (n->nvdisks == TS_REG_MAX_VDISKS)
			break;
		if (uuid_of(json_object_get(v, "uuid"), n->vdisks[n->nvdisks].uuid) ||
		    !json_is_integer(json_object_get(v, "size")))
			return -EINVAL;
		n->vdisks[n->nvdisks++].size = (uint64_t)json_integer_value(json_object_get(v, "size"));
	}
	/* served: absent in records written before engines ran in nodes */
	arr = json_object_get(j, "served");
	if (arr && (!json_is_array(arr) || json_array_size(arr) > TS_REG_MAX_SERVED))
		return -EINVAL;
	json_array_foreach(arr, i, v) {
		json_t *e = json_object_get(v, "epoch"), *ep = json_object_get(v, "engine");

		if (uuid_of(json_object_get(v, "uuid"), n->served[i].uuid) || !json_is_integer(e) ||
		    json_integer_value(e) < 0 || !json_is_string(ep) ||
		    strlen(json_string_value(ep)) >= sizeof(n->served[i].engine))
			return -EINVAL;
		n->served[i].epoch = (uint64_t)json_integer_value(e);
		snprintf(n->served[i].engine, sizeof(n->served[i].engine), "%s",
			 json_string_value(ep));
		n->nserved = (uint32_t)i + 1;
	}
	return 0;
}

static int dir_list_nodes(void *ctx, struct ts_reg_node *out, unsigned max, unsigned *cnt)
{
	struct dirreg *d = ctx;
	char path[4096];
	struct dirent *e;
	DIR *dir;

	*cnt = 0;
	snprintf(path, sizeof(path), "%s/nodes", d->root);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((e = readdir(dir)) && *cnt < max) {
		size_t len = strlen(e->d_name);
		json_t *j;

		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		snprintf(path, sizeof(path), "%s/nodes/%s", d->root, e->d_name);
		j = read_json(path);
		if (j && node_from_json(j, &out[*cnt]) == 0)
			(*cnt)++;
		json_decref(j);
	}
	closedir(dir);
	return 0;
}

static int dir_post_request(void *ctx, uint32_t node_id, const struct ts_reg_request *r)
{
	struct dirreg *d = ctx;
	char path[4096];
	int rc;

	snprintf(path, sizeof(path), "%s/requests/%u", d->root, node_id);
	rc = mkdir_p(path);
	if (rc)
		return rc;
	snprintf(path, sizeof(path), "%s/requests/%u/%s.req", d->root, node_id, r->id);
	return write_json(path, json_pack("{s:s,s:i,s:o,s:I,s:I}", "id", r->id, "op", (int)r->op,
					  "uuid", uuid_json(r->uuid), "size", (json_int_t)r->size,
					  "epoch", (json_int_t)r->epoch));
}

static int dir_next_request(void *ctx, uint32_t node_id, struct ts_reg_request *r)
{
	struct dirreg *d = ctx;
	char path[4096], best[256] = "";
	struct timespec best_t = { 0, 0 };
	struct dirent *e;
	struct stat st;
	DIR *dir;
	json_t *j;
	const char *id = NULL;
	int op = 0, rc = -ENOENT;
	json_int_t size = 0;

	snprintf(path, sizeof(path), "%s/requests/%u", d->root, node_id);
	dir = opendir(path);
	if (!dir)
		return -ENOENT;
	while ((e = readdir(dir))) {
		size_t len = strlen(e->d_name);

		if (len < 5 || len > 200 || strcmp(e->d_name + len - 4, ".req"))
			continue;
		snprintf(path, sizeof(path), "%s/requests/%u/%.*s.done", d->root, node_id,
			 (int)(len - 4), e->d_name);
		if (access(path, F_OK) == 0)
			continue;
		snprintf(path, sizeof(path), "%s/requests/%u/%s", d->root, node_id, e->d_name);
		if (stat(path, &st))
			continue;
		if (!best[0] || st.st_mtim.tv_sec < best_t.tv_sec ||
		    (st.st_mtim.tv_sec == best_t.tv_sec && st.st_mtim.tv_nsec < best_t.tv_nsec)) {
			snprintf(best, sizeof(best), "%s", e->d_name);
			best_t = st.st_mtim;
		}
	}
	closedir(dir);
	if (!best[0])
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/requests/%u/%s", d->root, node_id, best);
	j = read_json(path);
	memset(r, 0, sizeof(*r));
	/* the id from the file name, so even an unreadable request can be completed (with an error) */
	snprintf(r->id, sizeof(r->id), "%.*s", (int)TS_MIN(strlen(best) - 4, sizeof(r->id) - 1), best);
	json_t *ep = j ? json_object_get(j, "epoch") : NULL; /* absent in older requests */

	if (j && json_unpack(j, "{s:s,s:i,s:I}", "id", &id, "op", &op, "size", &size) == 0 &&
	    uuid_of(json_object_get(j, "uuid"), r->uuid) == 0 &&
	    (!ep || (json_is_integer(ep) && json_integer_value(ep) >= 0))) {
		snprintf(r->id, sizeof(r->id), "%s", id);
		r->op = (enum ts_reg_op)op;
		r->size = (uint64_t)size;
		r->epoch = ep ? (uint64_t)json_integer_value(ep) : 0;
		rc = 0;
	} else {
		rc = -EINVAL;
	}
	json_decref(j);
	return rc;
}

static int dir_complete_request(void *ctx, uint32_t node_id, const char *req_id, int status)
{
	struct dirreg *d = ctx;
	char path[4096];

	snprintf(path, sizeof(path), "%s/requests/%u/%s.done", d->root, node_id, req_id);
	return write_json(path, json_pack("{s:i}", "status", status));
}

static int dir_request_status(void *ctx, uint32_t node_id, const char *req_id, int *status)
{
	struct dirreg *d = ctx;
	char path[4096];
	json_t *j;
	int rc = -ENOENT;

	snprintf(path, sizeof(path), "%s/requests/%u/%s.done", d->root, node_id, req_id);
	j = read_json(path);
	if (j && json_is_integer(json_object_get(j, "status"))) {
		*status = (int)json_integer_value(json_object_get(j, "status"));
		rc = 0;
	}
	json_decref(j);
	return rc;
}

static int read_group(const struct dirreg *d, const uint8_t uuid[16], struct ts_reg_group *g)
{
	char path[4096], u[37];
	json_t *j, *arr = NULL, *v;
	int k = 0, m = 0, rc = -EINVAL;
	json_int_t ms = 0;
	size_t i;

	ts_uuid_format(uuid, u);
	snprintf(path, sizeof(path), "%s/groups/%s.json", d->root, u);
	j = read_json(path);
	if (!j)
		return access(path, F_OK) ? -ENOENT : -EINVAL;
	memset(g, 0, sizeof(*g));
	memcpy(g->uuid, uuid, 16);
	if (json_unpack(j, "{s:i,s:i,s:I,s:o}", "k", &k, "m", &m, "member_size", &ms, "slots", &arr) ||
	    k < 1 || m < 0 || k + m > TS_REG_MAX_SLOTS || json_array_size(arr) != (size_t)(k + m))
		goto out;
	g->k = (uint32_t)k;
	g->m = (uint32_t)m;
	g->member_size = (uint64_t)ms;
	/* owner and epoch: absent in records written before engines had owners */
	v = json_object_get(j, "owner_node");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
		  json_integer_value(v) > UINT32_MAX))
		goto out;
	g->owner_node = v ? (uint32_t)json_integer_value(v) : 0;
	v = json_object_get(j, "epoch");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0))
		goto out;
	g->epoch = v ? (uint64_t)json_integer_value(v) : 0;
	v = json_object_get(j, "flags");
	if (v && (!json_is_integer(v) || json_integer_value(v) < 0 ||
		  json_integer_value(v) > UINT32_MAX))
		goto out;
	g->flags = v ? (uint32_t)json_integer_value(v) : 0;
	json_array_foreach(arr, i, v) {
		if (!json_is_integer(json_object_get(v, "node_id")) ||
		    uuid_of(json_object_get(v, "vdisk"), g->slots[i].vdisk))
			goto out;
		g->slots[i].node_id = (uint32_t)json_integer_value(json_object_get(v, "node_id"));
	}
	/* journals: absent in records written before the replica journal */
	arr = json_object_get(j, "journals");
	if (arr) {
		json_t *js = json_object_get(j, "journal_size");

		if (!json_is_array(arr) || json_array_size(arr) > TS_REG_MAX_NODES ||
		    !json_is_integer(js) || json_integer_value(js) < 0 ||
		    (json_array_size(arr) && json_integer_value(js) == 0))
			goto out;
		g->journal_size = (uint64_t)json_integer_value(js);
		json_array_foreach(arr, i, v) {
			if (!json_is_integer(json_object_get(v, "node_id")) ||
			    uuid_of(json_object_get(v, "vdisk"), g->journals[i].vdisk))
				goto out;
			g->journals[i].node_id =
				(uint32_t)json_integer_value(json_object_get(v, "node_id"));
		}
		g->njournals = (uint32_t)json_array_size(arr);
	}
	rc = 0;
out:
	json_decref(j);
	return rc;
}

static int write_group(const struct dirreg *d, const struct ts_reg_group *g)
{
	char path[4096], u[37];
	json_t *arr = json_array();

	for (uint32_t i = 0; arr && i < g->k + g->m && i < TS_REG_MAX_SLOTS; i++)
		json_array_append_new(arr, json_pack("{s:i,s:o}", "node_id", (int)g->slots[i].node_id,
						     "vdisk", uuid_json(g->slots[i].vdisk)));
	json_t *jarr = json_array();

	for (uint32_t i = 0; jarr && i < g->njournals && i < TS_REG_MAX_NODES; i++)
		json_array_append_new(jarr, json_pack("{s:i,s:o}", "node_id",
						      (int)g->journals[i].node_id, "vdisk",
						      uuid_json(g->journals[i].vdisk)));
	ts_uuid_format(g->uuid, u);
	snprintf(path, sizeof(path), "%s/groups/%s.json", d->root, u);
	return write_json(path, json_pack("{s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:o,s:I,s:o}", "uuid",
					  u, "k", (int)g->k, "m", (int)g->m, "member_size",
					  (json_int_t)g->member_size, "owner_node",
					  (json_int_t)g->owner_node, "epoch", (json_int_t)g->epoch,
					  "flags", (json_int_t)g->flags, "slots", arr,
					  "journal_size", (json_int_t)g->journal_size, "journals",
					  jarr));
}

/*
 * Writers of one group record serialize on an flock of <uuid>.lock (every
 * process sharing the directory, every handle: the lock is per open file
 * description, and each call opens its own). A read-modify-write under it
 * is one step. Returns the locked fd or -errno.
 */
static int lock_group(const struct dirreg *d, const uint8_t uuid[16])
{
	char path[4096], u[37];
	int fd;

	ts_uuid_format(uuid, u);
	snprintf(path, sizeof(path), "%s/groups/%s.lock", d->root, u);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	while (flock(fd, LOCK_EX)) {
		if (errno != EINTR) {
			int rc = -errno;

			close(fd);
			return rc;
		}
	}
	return fd;
}

static int dir_put_group(void *ctx, const struct ts_reg_group *g)
{
	struct dirreg *d = ctx;
	struct ts_reg_group *cur = ts_malloc(sizeof(*cur));
	int fd, rc;

	if (!cur)
		return -ENOMEM;
	fd = lock_group(d, g->uuid);
	if (fd < 0) {
		ts_free(cur);
		return fd;
	}
	rc = read_group(d, g->uuid, cur);
	if (rc == 0 && cur->epoch > g->epoch)
		rc = -ESTALE; /* a newer owner has the group: this view is out of date */
	else if (rc == 0 || rc == -ENOENT)
		rc = write_group(d, g);
	close(fd);
	ts_free(cur);
	return rc;
}

static int dir_get_group(void *ctx, const uint8_t uuid[16], struct ts_reg_group *g)
{
	return read_group(ctx, uuid, g);
}

static int dir_raise_epoch(void *ctx, const uint8_t uuid[16], uint32_t owner, uint64_t *epoch)
{
	struct dirreg *d = ctx;
	struct ts_reg_group *g = ts_malloc(sizeof(*g));
	int fd, rc;

	if (!g)
		return -ENOMEM;
	fd = lock_group(d, uuid);
	if (fd < 0) {
		ts_free(g);
		return fd;
	}
	rc = read_group(d, uuid, g);
	if (rc == 0) {
		g->owner_node = owner;
		g->epoch++;
		rc = write_group(d, g);
		if (rc == 0)
			*epoch = g->epoch;
	}
	close(fd);
	ts_free(g);
	return rc;
}

static int dir_list_groups(void *ctx, uint8_t (*out)[16], unsigned max, unsigned *cnt)
{
	struct dirreg *d = ctx;
	char path[4096];
	struct dirent *e;
	DIR *dir;

	*cnt = 0;
	snprintf(path, sizeof(path), "%s/groups", d->root);
	dir = opendir(path);
	if (!dir)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(dir)) && *cnt < max) {
		size_t len = strlen(e->d_name);
		char u[37];

		if (len != 36 + 5 || strcmp(e->d_name + 36, ".json"))
			continue;
		snprintf(u, sizeof(u), "%.36s", e->d_name);
		if (ts_uuid_parse(u, out[*cnt]) == 0)
			(*cnt)++;
	}
	closedir(dir);
	return 0;
}

static void dir_destroy(void *ctx)
{
	ts_free(ctx);
}

static const struct ts_registry_ops g_dir_ops = {
	.put_node = dir_put_node,
	.list_nodes = dir_list_nodes,
	.post_request = dir_post_request,
	.next_request = dir_next_request,
	.complete_request = dir_complete_request,
	.request_status = dir_request_status,
	.put_group = dir_put_group,
	.get_group = dir_get_group,
	.raise_epoch = dir_raise_epoch,
	.list_groups = dir_list_groups,
	.destroy = dir_destroy,
};

int ts_registry_dir_open(const char *dir, struct ts_registry **out)
{
	static const char *const subdirs[] = { "nodes", "requests", "groups" };
	struct dirreg *d;
	char path[4096];
	int rc;

	if (!dir || !out || strlen(dir) >= sizeof(d->root))
		return -EINVAL;
	for (unsigned i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, subdirs[i]);
		rc = mkdir_p(path);
		if (rc)
			return rc;
	}
	d = ts_calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	snprintf(d->root, sizeof(d->root), "%s", dir);
	rc = ts_registry_create(&g_dir_ops, d, out);
	if (rc)
		ts_free(d);
	return rc;
}

/* ---- dispatch ---- */

int ts_registry_create(const struct ts_registry_ops *ops, void *ctx, struct ts_registry **out)
{
	struct ts_registry *r;

	if (!ops || !out || !ops->list_groups)
		return -EINVAL;
	r = ts_calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->ops = ops;
	r->ctx = ctx;
	*out = r;
	return 0;
}

void ts_registry_close(struct ts_registry *r)
{
	if (!r)
		return;
	r->ops->destroy(r->ctx);
	ts_free(r);
}

int ts_registry_put_node(struct ts_registry *r, const struct ts_reg_node *n)
{
	return r && n ? r->ops->put_node(r->ctx, n) : -EINVAL;
}

int ts_registry_list_nodes(struct ts_registry *r, struct ts_reg_node *out, unsigned max,
			   unsigned *n)
{
	return r && out && n ? r->ops->list_nodes(r->ctx, out, max, n) : -EINVAL;
}

int ts_registry_post_request(struct ts_registry *r, uint32_t node_id,
			     const struct ts_reg_request *req)
{
	return r && req && req->id[0] ? r->ops->post_request(r->ctx, node_id, req) : -EINVAL;
}

int ts_registry_next_request(struct ts_registry *r, uint32_t node_id, struct ts_reg_request *req)
{
	return r && req ? r->ops->next_request(r->ctx, node_id, req) : -EINVAL;
}

int ts_registry_complete_request(struct ts_registry *r, uint32_t node_id, const char *req_id,
				 int status)
{
	return r && req_id ? r->ops->complete_request(r->ctx, node_id, req_id, status) : -EINVAL;
}

int ts_registry_wait_request(struct ts_registry *r, uint32_t node_id, const char *req_id,
			     uint32_t timeout_ms, int *status)
{
	uint64_t end = ts_registry_now_ms() + timeout_ms;

	if (!r || !req_id || !status)
		return -EINVAL;
	for (;;) {
		int rc = r->ops->request_status(r->ctx, node_id, req_id, status);

		if (rc != -ENOENT)
			return rc;
		if (ts_registry_now_ms() >= end)
			return -ETIMEDOUT;
		usleep(20000);
	}
}

int ts_registry_put_group(struct ts_registry *r, const struct ts_reg_group *g)
{
	return r && g ? r->ops->put_group(r->ctx, g) : -EINVAL;
}

static int uuid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

int ts_registry_list_groups(struct ts_registry *r, uint8_t (*out)[16], unsigned max, unsigned *n)
{
	int rc;

	if (!r || !n || (max && !out))
		return -EINVAL;
	*n = 0;
	rc = r->ops->list_groups(r->ctx, out, max, n);
	if (rc == 0 && *n > 1)
		qsort(out, *n, 16, uuid_cmp);
	return rc;
}

int ts_registry_get_group(struct ts_registry *r, const uint8_t uuid[16], struct ts_reg_group *g)
{
	return r && uuid && g ? r->ops->get_group(r->ctx, uuid, g) : -EINVAL;
}

int ts_registry_raise_epoch(struct ts_registry *r, const uint8_t uuid[16], uint32_t owner,
			    uint64_t *epoch)
{
	return r && uuid && owner && epoch ? r->ops->raise_epoch(r->ctx, uuid, owner, epoch)
					   : -EINVAL;
}
