/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exporting an LDM vdisk over iSCSI and reaching it with a remote member:
 * data written remotely lands in the vdisk (checked through the LDM
 * directly), data written locally reads back remotely, FUA/flush/unmap pass
 * through, CHAP is required, unexport cuts the peer off.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/pem/pem.h"
#include "dataplane/transport/export.h"
#include "dataplane/transport/transport.h"

#define MIB (1024u * 1024u)
#define BS TS_LDM_BLOCK_SIZE
#define VD_SIZE (4 * MIB)
#define USER "cluster"
#define SECRET "cluster-node-secret"

static char g_dir[64], g_disk[128];
static struct ts_pem *g_pem;
static struct ts_ldm *g_ldm;
static struct ts_iscsi_server *g_srv;

static void setup(void)
{
	const char *paths[1] = { g_disk };
	struct ts_pem_opts po = { .node_id = 2, .extent_size = MIB };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .threads = 1 };
	int fd;

	strcpy(g_dir, "/tmp/ts_export_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	snprintf(g_disk, sizeof(g_disk), "%s/disk0", g_dir);
	fd = open(g_disk, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 32 * MIB), 0);
	close(fd);
	memset(po.cluster_uuid, 0x11, 16);
	cr_assert_eq(ts_pem_format(paths, 1, &po), 0);
	cr_assert_eq(ts_pem_open(paths, 1, &po, &g_pem), 0);
	cr_assert_eq(ts_ldm_open(g_pem, &g_ldm), 0);
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
}

static void teardown(void)
{
	char cmd[128];

	ts_iscsi_server_destroy(g_srv); /* releases the LUNs (and their member adapters) first */
	ts_ldm_close(g_ldm);
	ts_pem_close(g_pem);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

static struct ts_member *connect_vdisk(const uint8_t uuid[16], const char *secret, uint64_t size)
{
	char iqn[80], url[160];
	struct ts_transport_opts o = { .url = url, .chap_user = USER, .chap_secret = secret,
				       .node_id = 2, .uuid = uuid, .size = size, .block_size = size ? BS : 0,
				       .io_timeout_ms = 5000, .connect_timeout_ms = 5000 };
	struct ts_member *m = NULL;

	ts_transport_vdisk_iqn(uuid, iqn);
	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/%s/0", ts_iscsi_server_port(g_srv), iqn);
	if (ts_transport_iscsi_member(&o, &m))
		return NULL;
	return m;
}

TestSuite(transport_export, .init = setup, .fini = teardown);

Test(transport_export, remote_io_lands_in_the_vdisk)
{
	uint8_t uuid[16];
	struct ts_ldm_vdisk *vd;
	uint8_t *w = ts_malloc(8 * BS), *r = ts_malloc(8 * BS);

	cr_assert_eq(ts_uuid_generate(uuid), 0);
	cr_assert_eq(ts_ldm_create(g_ldm, uuid, VD_SIZE, "m0", 0, &vd), 0);
	cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, USER, SECRET), 0);
	cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, USER, SECRET), -EEXIST);

	struct ts_member *m = connect_vdisk(uuid, SECRET, 0);
	cr_assert_not_null(m);
	cr_assert_eq(ts_member_info(m)->size, VD_SIZE);
	cr_assert_eq(ts_member_info(m)->block_size, BS);

	for (unsigned i = 0; i < 8 * BS; i++)
		w[i] = (uint8_t)(i * 7 + 3);
	/* remote write (FUA) -> local read */
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_WRITE, TS_MEMBER_FUA, MIB + BS, 8 * BS, w), 0);
	cr_assert_eq(ts_ldm_read(vd, MIB + BS, r, 8 * BS), 0);
	cr_assert_eq(memcmp(w, r, 8 * BS), 0);
	/* local write -> remote read, across an extent boundary */
	cr_assert_eq(ts_ldm_write(vd, 2 * MIB - 4 * BS, w, 8 * BS, 0), 0);
	memset(r, 0, 8 * BS);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 2 * MIB - 4 * BS, 8 * BS, r), 0);
	cr_assert_eq(memcmp(w, r, 8 * BS), 0);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_FLUSH, 0, 0, 0, NULL), 0);
	/* remote unmap -> zeroes locally */
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_UNMAP, 0, MIB + BS, 8 * BS, NULL), 0);
	cr_assert_eq(ts_ldm_read(vd, MIB + BS, r, 8 * BS), 0);
	for (unsigned i = 0; i < 8 * BS; i++)
		cr_assert_eq(r[i], 0);
	/* Unexport: the peer is cut off and its IO fails as a member failure. */
	cr_assert_eq(ts_transport_unexport_vdisk(g_srv, uuid), 0);
	cr_assert_eq(ts_transport_unexport_vdisk(g_srv, uuid), -ENOENT);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, BS, r), TS_ERR_MEMBER_FAILED);
	ts_member_destroy(m);

	/* Re-export works (the engine released the previous LUN). */
	cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, USER, SECRET), 0);
	m = connect_vdisk(uuid, SECRET, VD_SIZE);
	cr_assert_not_null(m);
	cr_assert_eq(ts_member_rw_sync(m, TS_MEMBER_READ, 0, 2 * MIB - 4 * BS, 8 * BS, r), 0);
	cr_assert_eq(memcmp(w, r, 8 * BS), 0);
	ts_member_destroy(m);
	ts_free(w);
	ts_free(r);
}

Test(transport_export, chap_is_required)
{
	uint8_t uuid[16];
	struct ts_ldm_vdisk *vd;

	cr_assert_eq(ts_uuid_generate(uuid), 0);
	cr_assert_eq(ts_ldm_create(g_ldm, uuid, VD_SIZE, "m1", 0, &vd), 0);
	cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, NULL, NULL), -EINVAL);
	cr_assert_eq(ts_transport_export_vdisk(g_srv, vd, USER, SECRET), 0);
	cr_assert_null(connect_vdisk(uuid, "wrong", 0));
	struct ts_member *m = connect_vdisk(uuid, SECRET, 0);
	cr_assert_not_null(m);
	ts_member_destroy(m);
}
