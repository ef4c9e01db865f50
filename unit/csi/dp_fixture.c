/* SPDX-License-Identifier: Apache-2.0 */
#include "unit/csi/dp_fixture.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csi/backend/backend_dataplane.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/pool/pool.h"
#include "dataplane/volume/volume.h"

void dpenv_init(struct dpenv *d, const char *tag)
{
	struct ts_pool_opts po = { .nodes = 3, .disks_per_node = 2, .disk_size = 96ull << 20,
				   .k = 4, .m = 2, .extent_size = 1u << 20 };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0 };
	struct ts_csi_dataplane_opts dpo = { 0 };
	struct ts_pool_status st;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	char portal[64], ep[400];

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/ts_%s_XXXXXX", tag);
	cr_assert_not_null(mkdtemp(d->dir));
	po.state_dir = d->dir;
	cr_assert_eq(ts_pool_open(&po, &d->pool), 0);
	cr_assert_eq(ts_vpool_format(ts_pool_device(d->pool)), 0);
	cr_assert_eq(ts_vpool_open(ts_pool_device(d->pool), &d->vp), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &d->isrv), 0);
	snprintf(portal, sizeof(portal), "127.0.0.1:%u", ts_iscsi_server_port(d->isrv));
	ts_pool_status(d->pool, &st);
	dpo.vpool = d->vp;
	dpo.iscsi = d->isrv;
	dpo.portal = portal;
	dpo.state_dir = d->dir;
	dpo.k = 4;
	dpo.m = 2;
	cr_assert_eq(ts_uuid_parse(st.group_uuid, dpo.group_uuid), 0);
	cr_assert_eq(ts_csi_backend_dataplane_create(&dpo, &be, &be_ctx), 0);
	tenv_init(&d->e, be, be_ctx, 0);
	snprintf(ep, sizeof(ep), "unix://%s/csi.sock", d->e.dir);
	cr_assert_eq(ts_csi_server_start(d->e.d, ep, 2, &d->srv), 0);
	d->ch = gc_connect(ep);
}

void dpenv_fini(struct dpenv *d)
{
	char cmd[400];

	gc_close(d->ch);
	ts_csi_server_stop(d->srv, 2000);
	tenv_fini(&d->e); /* destroys the driver and the backend: detach + unexport */
	ts_iscsi_server_destroy(d->isrv);
	ts_vpool_close(d->vp);
	ts_pool_close(d->pool);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	cr_assert_eq(system(cmd), 0);
}
