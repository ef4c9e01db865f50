/* SPDX-License-Identifier: Apache-2.0 */
#include "unit/support/csi/engine_env.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "csi/backend/backend_dataplane.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"

void ram_engine_init(struct ram_engine *e, const char *state_dir, uint64_t bytes)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 1 };
	struct ts_csi_dataplane_opts o = { 0 };
	char portal[64];

	memset(e, 0, sizeof(*e));
	cr_assert_eq(tm_ram_create(bytes, 4096, 0, &e->m, &e->ram), 0);
	cr_assert_eq(ts_vpool_format(e->m), 0);
	cr_assert_eq(ts_vpool_open(e->m, &e->vp), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &e->isrv), 0);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", ts_iscsi_server_port(e->isrv));
	o.vpool = e->vp;
	o.iscsi = e->isrv;
	o.portal = portal;
	o.state_dir = state_dir;
	o.k = 4;
	o.m = 2;
	static uint8_t serial;

	memset(o.group_uuid, 0x5a, sizeof(o.group_uuid));
	o.group_uuid[0] = ++serial; /* distinct IQNs per engine */
	cr_assert_eq(ts_csi_backend_dataplane_create(&o, &e->be, &e->be_ctx), 0);
}

void ram_engine_fini(struct ram_engine *e)
{
	if (e->be)
		e->be->destroy(e->be_ctx);
	ts_iscsi_server_destroy(e->isrv);
	ts_vpool_close(e->vp);
	ts_member_destroy(e->m);
	memset(e, 0, sizeof(*e));
}

/* ---- router ---- */

static int tr_pick(void *ctx, const struct ts_csi_vol_spec *spec, struct ts_remote_engine *out)
{
	struct trouter *r = ctx;

	(void)spec;
	if (r->pick_rc)
		return r->pick_rc;
	if (r->pick >= r->n)
		return -ENOSPC;
	*out = r->e[r->pick];
	return 0;
}

static int tr_locate(void *ctx, const char *group, struct ts_remote_engine *out)
{
	struct trouter *r = ctx;

	r->locates++;
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->e[i].group, group)) {
			*out = r->e[i];
			return 0;
		}
	return -ENOENT;
}

static int tr_list(void *ctx, struct ts_remote_engine *out, size_t max, size_t *n)
{
	struct trouter *r = ctx;

	*n = TS_MIN(r->n, max);
	memcpy(out, r->e, *n * sizeof(*out));
	return 0;
}

const struct ts_remote_router_ops trouter_ops = { .pick = tr_pick,
						   .locate = tr_locate,
						   .list = tr_list };

void trouter_add(struct trouter *r, const char *group, const char *endpoint)
{
	cr_assert_lt(r->n, TS_ARRAY_SIZE(r->e));
	snprintf(r->e[r->n].group, sizeof(r->e[r->n].group), "%s", group);
	snprintf(r->e[r->n].endpoint, sizeof(r->e[r->n].endpoint), "%s", endpoint);
	r->n++;
}

/* ---- controller over the remote backend ---- */

void remote_ctl_init(struct remote_ctl *c, struct trouter *r, const char *dir, bool node,
		     const char *sock)
{
	struct ts_csi_remote_opts o = { .router = &trouter_ops, .router_ctx = r, .state_dir = dir,
					.timeout_ms = 20000, .multi_node_writers = true };
	struct ts_csi_config cfg = { .controller = true, .node = node, .node_id = "n1",
				     .state_dir = dir };
	char meta[400];

	memset(c, 0, sizeof(*c));
	cr_assert_eq(ts_csi_backend_remote_create(&o, &c->be, &c->be_ctx), 0);
	snprintf(meta, sizeof(meta), "%s/meta", dir);
	cr_assert_eq(ts_csi_store_file_open(meta, &c->st, &c->st_ctx), 0);
	cr_assert_eq(ts_csi_driver_create(&cfg, c->be, c->be_ctx, c->st, c->st_ctx, &c->d), 0);
	if (sock)
		cr_assert_eq(ts_csi_server_start(c->d, sock, 0, &c->srv), 0);
}

void remote_ctl_fini(struct remote_ctl *c)
{
	ts_csi_server_stop(c->srv, 2000);
	ts_csi_driver_destroy(c->d);
	if (c->st)
		c->st->destroy(c->st_ctx);
	if (c->be)
		c->be->destroy(c->be_ctx);
	memset(c, 0, sizeof(*c));
}
