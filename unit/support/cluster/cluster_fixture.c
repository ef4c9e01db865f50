/* SPDX-License-Identifier: Apache-2.0 */
#include "unit/support/cluster/cluster_fixture.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "programs/dev.h"
#include "programs/stack.h"

/*
 * A port free on 127.0.0.1 and on the nodes' 127.0.1.1-3 (they listen on
 * the portal's port): asked of the kernel, then released for the cluster.
 */
unsigned cluster_free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in a = { .sin_family = AF_INET };
		socklen_t len = sizeof(a);
		unsigned port = 0;
		int ok = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		cr_assert_geq(fd, 0);
		a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
		cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
		port = ntohs(a.sin_port);
		close(fd);
		for (unsigned n = 1; ok && n <= 3; n++) {
			struct sockaddr_in b = { .sin_family = AF_INET, .sin_port = htons(port) };

			b.sin_addr.s_addr = htonl(0x7f000100u + n);
			fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			cr_assert_geq(fd, 0);
			ok = bind(fd, (struct sockaddr *)&b, sizeof(b)) == 0;
			close(fd);
		}
		if (ok)
			return port;
	}
	cr_assert_fail("no free port on 127.0.0.1 and 127.0.1.1-3");
	return 0;
}

void dpenv_init(struct dpenv *d, const char *tag)
{
	struct ts_dev_opts o = { .nodes = 3, .disks = 2, .disk_size = 128ull << 20, .k = 4,
				 .m = 2, .node_id = "tessera-unit", .geometry_given = true };
	char state[300];

	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "/tmp/ts_%s_XXXXXX", tag);
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(state, sizeof(state), "%s/state", d->dir);
	snprintf(d->portal, sizeof(d->portal), "127.0.0.1:%u", cluster_free_port());
	snprintf(d->endpoint, sizeof(d->endpoint), "unix://%s/csi.sock", d->dir);
	o.state_dir = state;
	o.portal = d->portal;
	o.csi_endpoint = d->endpoint;
	cr_assert_eq(ts_dev_start(&o, &d->dev), 0, "the in-process cluster did not start");
	d->vp = ts_stack_vpool(ts_dev_stack(d->dev));
	d->d = ts_stack_driver(ts_dev_stack(d->dev));
	d->ch = gc_connect(d->endpoint);
	cr_assert_not_null(d->ch);
}

void dpenv_fini(struct dpenv *d)
{
	char cmd[400];

	gc_close(d->ch);
	ts_dev_stop(d->dev); /* the stack first (detach, unexport), then the nodes */
	snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
	cr_assert_eq(system(cmd), 0);
}
