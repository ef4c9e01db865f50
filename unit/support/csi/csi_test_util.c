/* SPDX-License-Identifier: Apache-2.0 */
#include "unit/support/csi/csi_test_util.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

static char g_msg[512];
const char *g_tenv_base = "/tmp";
static void *g_keep[4096];
static size_t g_nkeep;

static void *keep(void *p)
{
	cr_assert(g_nkeep < TS_ARRAY_SIZE(g_keep));
	g_keep[g_nkeep++] = p;
	return p;
}

void tfree_all(void)
{
	while (g_nkeep)
		free(g_keep[--g_nkeep]);
}

void tenv_init(struct tenv *e, const struct ts_csi_backend_ops *be, void *be_ctx, uint64_t cap)
{
	char sub[300];
	struct ts_csi_config cfg = { .node_id = "n1", .controller = true, .node = true,
				     .max_volumes_per_node = 8,
				     .default_volume_bytes = 8 << 20 };

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "%s/ts-csi-test-XXXXXX", g_tenv_base);
	cr_assert_not_null(mkdtemp(e->dir));
	cfg.state_dir = e->dir;
	cfg.path_prefix = e->dir;
	if (be) {
		e->be = be;
		e->be_ctx = be_ctx;
	} else {
		snprintf(sub, sizeof(sub), "%s/volumes", e->dir);
		cr_assert_eq(ts_csi_backend_file_create(sub, cap, &e->be, &e->be_ctx), 0);
	}
	snprintf(sub, sizeof(sub), "%s/meta", e->dir);
	cr_assert_eq(ts_csi_store_file_open(sub, &e->st, &e->st_ctx), 0);
	cr_assert_eq(ts_csi_driver_create(&cfg, e->be, e->be_ctx, e->st, e->st_ctx, &e->d), 0);
}

void tenv_fini(struct tenv *e)
{
	char cmd[2048];

	ts_csi_driver_destroy(e->d);
	e->st->destroy(e->st_ctx);
	if (e->be->destroy)
		e->be->destroy(e->be_ctx);
	/* Leftovers of a failed test: unmount, detach, remove. */
	snprintf(cmd, sizeof(cmd),
		 "grep -o ' %s/[^ ]*' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l;"
		 "for f in %s/volumes/*.img; do [ -e \"$f\" ] || continue;"
		 " for l in $(losetup -j \"$f\" -nO NAME); do"
		 "  losetup -j \"$l\" -nO NAME | xargs -r -n1 losetup -d; losetup -d \"$l\"; done; done;"
		 "rm -rf %s",
		 e->dir, e->dir, e->dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cleanup of %s incomplete\n", e->dir);
	tfree_all();
}

const char *tmsg(void)
{
	return g_msg;
}

int tcall(struct ts_csi_driver *d, const char *method, const void *req,
	  const ProtobufCMessageDescriptor *resp_desc, void **resp)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = malloc(n + 1), *out = NULL;
	size_t out_len = 0;
	int code = -1;

	cr_assert_not_null(buf);
	protobuf_c_message_pack(req, buf);
	cr_assert_eq(ts_csi_handle(d, method, buf, n, &out, &out_len, &code, g_msg, sizeof(g_msg)),
		     0, "unknown method %s", method);
	free(buf);
	if (resp)
		*resp = NULL;
	if (code == 0) {
		cr_assert_not_null(out);
		if (resp && resp_desc) {
			*resp = protobuf_c_message_unpack(resp_desc, NULL, out_len, out);
			cr_assert_not_null(*resp, "%s: response does not decode", method);
		}
	} else {
		cr_assert_null(out);
		cr_assert(g_msg[0], "%s: error code %d without a message", method, code);
	}
	ts_free(out);
	return code;
}

Csi__V1__VolumeCapability *tcap_mount(const char *fs)
{
	Csi__V1__VolumeCapability *c = keep(calloc(1, sizeof(*c)));
	Csi__V1__VolumeCapability__AccessMode *m = keep(calloc(1, sizeof(*m)));
	Csi__V1__VolumeCapability__MountVolume *mv = keep(calloc(1, sizeof(*mv)));

	csi__v1__volume_capability__init(c);
	csi__v1__volume_capability__access_mode__init(m);
	csi__v1__volume_capability__mount_volume__init(mv);
	m->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
	if (fs)
		mv->fs_type = (char *)fs;
	c->access_mode = m;
	c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT;
	c->mount = mv;
	return c;
}

Csi__V1__CreateVolumeRequest *tcreate_req(const char *name, int64_t bytes,
					  Csi__V1__VolumeCapability *cap, const char *snap,
					  const char *vol)
{
	Csi__V1__CreateVolumeRequest *r = keep(calloc(1, sizeof(*r)));
	Csi__V1__CapacityRange *cr = keep(calloc(1, sizeof(*cr)));
	Csi__V1__VolumeCapability **caps = keep(calloc(1, sizeof(*caps)));
	Csi__V1__VolumeContentSource *cs = keep(calloc(1, sizeof(*cs)));
	Csi__V1__VolumeContentSource__SnapshotSource *ss = keep(calloc(1, sizeof(*ss)));
	Csi__V1__VolumeContentSource__VolumeSource *vs = keep(calloc(1, sizeof(*vs)));

	csi__v1__create_volume_request__init(r);
	csi__v1__capacity_range__init(cr);
	csi__v1__volume_content_source__init(cs);
	csi__v1__volume_content_source__snapshot_source__init(ss);
	csi__v1__volume_content_source__volume_source__init(vs);
	r->name = (char *)name;
	cr->required_bytes = bytes;
	r->capacity_range = bytes ? cr : NULL;
	caps[0] = cap;
	r->volume_capabilities = caps;
	r->n_volume_capabilities = 1;
	if (snap) { /* a oneof: one union member */
		ss->snapshot_id = (char *)snap;
		cs->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_SNAPSHOT;
		cs->snapshot = ss;
		r->volume_content_source = cs;
	} else if (vol) {
		vs->volume_id = (char *)vol;
		cs->type_case = CSI__V1__VOLUME_CONTENT_SOURCE__TYPE_VOLUME;
		cs->volume = vs;
		r->volume_content_source = cs;
	}
	return r;
}

Csi__V1__VolumeCapability *tcap_block(void)
{
	Csi__V1__VolumeCapability *c = keep(calloc(1, sizeof(*c)));
	Csi__V1__VolumeCapability__AccessMode *m = keep(calloc(1, sizeof(*m)));
	Csi__V1__VolumeCapability__BlockVolume *b = keep(calloc(1, sizeof(*b)));

	csi__v1__volume_capability__init(c);
	csi__v1__volume_capability__access_mode__init(m);
	csi__v1__volume_capability__block_volume__init(b);
	m->mode = CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER;
	c->access_mode = m;
	c->access_type_case = CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK;
	c->block = b;
	return c;
}

Csi__V1__NodeStageVolumeRequest tstage_req(const Csi__V1__Volume *v, const char *staging,
					   Csi__V1__VolumeCapability *cap)
{
	Csi__V1__NodeStageVolumeRequest r = CSI__V1__NODE_STAGE_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	r.staging_target_path = (char *)staging;
	r.volume_capability = cap;
	/* Map entries of every map type share one layout (struct csi_kv). */
	r.volume_context = (Csi__V1__NodeStageVolumeRequest__VolumeContextEntry **)v->volume_context;
	r.n_volume_context = v->n_volume_context;
	return r;
}

Csi__V1__NodePublishVolumeRequest tpublish_req(const Csi__V1__Volume *v, const char *staging,
					       const char *target, Csi__V1__VolumeCapability *cap,
					       bool readonly)
{
	Csi__V1__NodePublishVolumeRequest r = CSI__V1__NODE_PUBLISH_VOLUME_REQUEST__INIT;

	r.volume_id = v->volume_id;
	r.staging_target_path = (char *)staging;
	r.target_path = (char *)target;
	r.volume_capability = cap;
	r.readonly = readonly;
	r.volume_context =
		(Csi__V1__NodePublishVolumeRequest__VolumeContextEntry **)v->volume_context;
	r.n_volume_context = v->n_volume_context;
	return r;
}

int tcreate(struct ts_csi_driver *d, const char *name, int64_t bytes, bool block, char *id,
	    char *attach)
{
	Csi__V1__CreateVolumeRequest req = CSI__V1__CREATE_VOLUME_REQUEST__INIT;
	Csi__V1__CapacityRange cr = CSI__V1__CAPACITY_RANGE__INIT;
	Csi__V1__VolumeCapability *caps[1] = { block ? tcap_block() : tcap_mount(NULL) };
	Csi__V1__CreateVolumeResponse *resp;
	int code;

	req.name = (char *)name;
	cr.required_bytes = bytes;
	req.capacity_range = &cr;
	req.volume_capabilities = caps;
	req.n_volume_capabilities = 1;
	code = tcall(d, "/csi.v1.Controller/CreateVolume", &req,
		     &csi__v1__create_volume_response__descriptor, (void **)&resp);
	if (code)
		return code;
	if (id)
		strcpy(id, resp->volume->volume_id);
	if (attach)
		for (size_t i = 0; i < resp->volume->n_volume_context; i++)
			if (!strcmp(resp->volume->volume_context[i]->key, "csi.tessera.io/attach"))
				strcpy(attach, resp->volume->volume_context[i]->value);
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

/* ---- in-memory backend ---- */

struct memvol {
	char id[TS_CSI_ID_MAX + 1];
	uint64_t bytes;
	struct ts_csi_qos qos;
	unsigned qos_calls;
};

struct membe {
	uint64_t cap, used;
	struct memvol v[256];
	size_t n;
};

int g_mem_probe_rc;

static int mem_probe(void *ctx)
{
	(void)ctx;
	return g_mem_probe_rc;
}

static struct memvol *mem_find(struct membe *m, const char *id)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->v[i].id, id))
			return &m->v[i];
	return NULL;
}

static int mem_create(void *ctx, const struct ts_csi_vol_spec *s, struct ts_csi_backend_vol *out)
{
	struct membe *m = ctx;
	struct memvol *v;
	uint64_t h = 1469598103934665603ull;

	for (const char *p = s->name; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	snprintf(out->id, sizeof(out->id), "mv-%016llx", (unsigned long long)h);
	snprintf(out->attach, sizeof(out->attach), "mem://%s", out->id);
	v = mem_find(m, out->id);
	if (v) {
		out->capacity_bytes = v->bytes;
		return 0;
	}
	if (m->n == TS_ARRAY_SIZE(m->v) || s->capacity_bytes > m->cap - m->used)
		return -ENOSPC;
	v = &m->v[m->n++];
	snprintf(v->id, sizeof(v->id), "%s", out->id);
	v->bytes = s->capacity_bytes;
	m->used += v->bytes;
	out->capacity_bytes = v->bytes;
	return 0;
}

static int mem_remove(void *ctx, const char *id)
{
	struct membe *m = ctx;
	struct memvol *v = mem_find(m, id);

	if (v) {
		m->used -= v->bytes;
		*v = m->v[--m->n];
	}
	return 0;
}

static int mem_expand(void *ctx, const char *id, uint64_t bytes, uint64_t *out)
{
	struct membe *m = ctx;
	struct memvol *v = mem_find(m, id);

	if (!v)
		return -ENOENT;
	if (bytes > v->bytes) {
		if (bytes - v->bytes > m->cap - m->used)
			return -ENOSPC;
		m->used += bytes - v->bytes;
		v->bytes = bytes;
	}
	*out = v->bytes;
	return 0;
}

static int mem_capacity(void *ctx, uint64_t *avail)
{
	struct membe *m = ctx;

	*avail = m->cap - m->used;
	return 0;
}

static int mem_attach(void *ctx, const char *id, const char *attach, char *dev, size_t len)
{
	(void)ctx, (void)id, (void)attach, (void)dev, (void)len;
	return -ENODEV;
}

static int mem_detach(void *ctx, const char *id, const char *dev)
{
	(void)ctx, (void)id, (void)dev;
	return 0;
}

static int mem_refresh(void *ctx, const char *id, const char *dev, uint64_t *out)
{
	(void)ctx, (void)id, (void)dev, (void)out;
	return -ENODEV;
}

static void mem_destroy(void *ctx)
{
	free(ctx);
}

const struct ts_csi_backend_ops tmem_backend_ops = {
	.name = "mem", .probe = mem_probe, .create = mem_create, .remove = mem_remove,
	.expand = mem_expand, .capacity = mem_capacity, .attach = mem_attach,
	.detach = mem_detach, .refresh = mem_refresh, .destroy = mem_destroy,
};

static int mem_set_qos(void *ctx, const char *id, const struct ts_csi_qos *q)
{
	struct memvol *v = mem_find(ctx, id);

	if (!v)
		return -ENOENT;
	v->qos = *q;
	v->qos_calls++;
	return 0;
}

const struct ts_csi_backend_ops tmem_qos_backend_ops = {
	.name = "mem-qos", .probe = mem_probe, .create = mem_create, .remove = mem_remove,
	.expand = mem_expand, .capacity = mem_capacity, .set_qos = mem_set_qos,
	.attach = mem_attach, .detach = mem_detach, .refresh = mem_refresh,
	.destroy = mem_destroy,
};

int tmem_qos(void *ctx, const char *id, struct ts_csi_qos *out, unsigned *calls)
{
	struct memvol *v = mem_find(ctx, id);

	if (!v)
		return -ENOENT;
	*out = v->qos;
	*calls = v->qos_calls;
	return 0;
}

void *tmem_backend_new(uint64_t capacity)
{
	struct membe *m = calloc(1, sizeof(*m));

	cr_assert_not_null(m);
	m->cap = capacity;
	return m;
}
