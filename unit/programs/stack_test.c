/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The serving stack (programs/stack.c) on a RAM block device: option checks, the
 * admin status (the owner's nodes and groups plus the pool), and the format
 * rule: a device is formatted only while `volumes.formatted` is absent and
 * the device holds no pool; an existing pool is reopened under a fresh state
 * dir; with the marker present a device without a pool is refused and left
 * untouched.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "csi/admin.h"
#include "csi/rpc/client.h"
#include "programs/stack.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"

#define DEV_SIZE (64ull << 20)

Test(csi_stack, check_opts)
{
	static const char *const bad[] = { "127.0.0.1", ":3260", "h:", "h:0", "h:65536", "h:12x",
					   "h:-1", "" };
	const char *ep = NULL;
	char buf[256];
	unsigned k, m;

	cr_assert_eq(ts_stack_check_opts("t", "127.0.0.1:3260", "/s", &ep, buf, sizeof(buf)), 0);
	cr_assert_str_eq(ep, "unix:///s/csi.sock");
	ep = "unix:///x/y.sock";
	cr_assert_eq(ts_stack_check_opts("t", "[::1]:3260", "/s", &ep, buf, sizeof(buf)), 0);
	cr_assert_str_eq(ep, "unix:///x/y.sock");
	for (size_t i = 0; i < TS_ARRAY_SIZE(bad); i++) {
		ep = NULL;
		cr_assert_eq(ts_stack_check_opts("t", bad[i], "/s", &ep, buf, sizeof(buf)), -EINVAL,
			     "%s", bad[i]);
	}
	ep = "unix://relative.sock";
	cr_assert_eq(ts_stack_check_opts("t", "h:1", "/s", &ep, buf, sizeof(buf)), -EINVAL);
	ep = "127.0.0.1:50051";
	cr_assert_eq(ts_stack_check_opts("t", "h:1", "/s", &ep, buf, sizeof(buf)), -EINVAL);

	cr_assert_eq(ts_stack_parse_ec("4+2", &k, &m), 0);
	cr_assert(k == 4 && m == 2);
	cr_assert_eq(ts_stack_parse_ec("4+0", &k, &m), -EINVAL);
	cr_assert_eq(ts_stack_parse_ec("0+2", &k, &m), -EINVAL);
	cr_assert_eq(ts_stack_parse_ec("4+2x", &k, &m), -EINVAL);
	cr_assert_eq(ts_stack_parse_ec("60+60", &k, &m), -EINVAL);
}

/* ---- a stack on a RAM device ---- */

static int fake_status(void *arg, struct ts_admin_status *out)
{
	(void)arg;
	out->nnodes = 1;
	out->nodes[0].id = 7;
	out->nodes[0].up = true;
	out->nagrps = 1;
	snprintf(out->agrps[0].uuid, sizeof(out->agrps[0].uuid), "%s",
		 "00000000-0000-0000-0000-0000000000aa");
	out->agrps[0].k = 1;
	out->agrps[0].m = 1;
	snprintf(out->agrps[0].state, sizeof(out->agrps[0].state), "healing");
	out->agrps[0].heals = 4;
	return 0;
}

static uint16_t free_port(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	cr_assert(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

struct env {
	char dir[128], portal[64], ep[200];
	struct ts_stack_opts o;
};

static void env_init(struct env *e, struct ts_member *dev)
{
	snprintf(e->dir, sizeof(e->dir), "/tmp/ts-stack-test.XXXXXX");
	cr_assert_not_null(mkdtemp(e->dir));
	snprintf(e->portal, sizeof(e->portal), "127.0.0.1:%u", free_port());
	snprintf(e->ep, sizeof(e->ep), "unix://%s/csi.sock", e->dir);
	memset(&e->o, 0, sizeof(e->o));
	e->o.name = "test";
	e->o.device = dev;
	e->o.state_dir = e->dir;
	e->o.portal = e->portal;
	e->o.csi_endpoint = e->ep;
	e->o.node_id = "n1";
	e->o.group_uuid[0] = 0xaa;
	e->o.k = 1;
	e->o.m = 1;
	e->o.status = fake_status;
}

static void env_fini(struct env *e)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", e->dir);
	cr_assert_eq(system(cmd), 0);
}

static bool marker(const struct env *e)
{
	char p[200];

	snprintf(p, sizeof(p), "%s/volumes.formatted", e->dir);
	return access(p, F_OK) == 0;
}

/* ClusterStatus over the stack's socket. */
static json_t *cluster_status(const struct env *e)
{
	struct ts_client *cl = NULL;
	char *resp = NULL, msg[256];
	size_t len = 0;
	json_t *j;

	cr_assert_eq(ts_client_open(e->ep, &cl), 0);
	cr_assert_eq(ts_client_call(cl, TS_ADMIN_PREFIX "ClusterStatus", "{}", 2, &resp, &len, 10000,
				    msg, sizeof(msg)),
		     0, "%s", msg);
	j = json_loadb(resp, len, 0, NULL);
	cr_assert_not_null(j);
	ts_free(resp);
	ts_client_close(cl);
	return j;
}

static uint64_t pool_volumes(json_t *st)
{
	return (uint64_t)json_integer_value(
		json_object_get(json_object_get(st, "volume_pool"), "volumes"));
}

Test(csi_stack, serves_and_formats_only_a_device_without_a_pool)
{
	struct ts_member *dev = NULL, *blank = NULL;
	struct ts_stack *s = NULL;
	struct ts_vpool *vp;
	struct tmem *ram;
	uint64_t vol;
	uint8_t *b0 = ts_aligned_alloc(4096, 4096), zero[4096] = { 0 };
	struct env e;
	json_t *st, *g;

	cr_assert_eq(tm_ram_create(DEV_SIZE, 4096, 0, &dev, &ram), 0);
	env_init(&e, dev);

	/* first start: formats, writes the marker, serves the owner's view + the pool */
	cr_assert_eq(ts_stack_start(&e.o, &s), 0);
	cr_assert(marker(&e));
	st = cluster_status(&e);
	cr_assert_eq(json_integer_value(json_object_get(json_array_get(json_object_get(st, "nodes"), 0), "id")), 7);
	g = json_array_get(json_object_get(st, "array_groups"), 0);
	cr_assert_str_eq(json_string_value(json_object_get(g, "state")), "healing");
	cr_assert_eq(json_integer_value(json_object_get(g, "heals")), 4);
	cr_assert_gt(json_integer_value(json_object_get(json_object_get(st, "volume_pool"), "total_bytes")), 0);
	cr_assert_eq(pool_volumes(st), 0);
	json_decref(st);
	ts_stack_stop(s);
	s = NULL;

	/* a volume made behind the stack's back, then a fresh state dir: reopened, not formatted */
	cr_assert_eq(ts_vpool_open(dev, &vp), 0);
	cr_assert_eq(ts_vpool_volume_create(vp, "kept", 1 << 20, 0, &vol), 0);
	ts_vpool_close(vp);
	env_fini(&e);
	env_init(&e, dev);
	cr_assert_not(marker(&e));
	cr_assert_eq(ts_stack_start(&e.o, &s), 0);
	cr_assert(marker(&e));
	st = cluster_status(&e);
	cr_assert_eq(pool_volumes(st), 1);
	json_decref(st);
	ts_stack_stop(s);
	s = NULL;

	/* marker present, a device with no pool: refused, and the device left as it was */
	cr_assert_eq(tm_ram_create(DEV_SIZE, 4096, 0, &blank, &ram), 0);
	e.o.device = blank;
	cr_assert_eq(ts_stack_start(&e.o, &s), TS_ERR_FOREIGN);
	cr_assert_null(s);
	cr_assert_eq(ts_member_rw_sync(blank, TS_MEMBER_READ, 0, 0, 4096, b0), 0);
	cr_assert_eq(memcmp(b0, zero, sizeof(zero)), 0);

	ts_free(b0);
	ts_member_destroy(blank);
	ts_member_destroy(dev);
	env_fini(&e);
}
