/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers for programs that run node daemons as processes (nodes.h). They
 * poll: a heartbeat is a file rewritten every few hundred ms, and these
 * programs wait seconds at most, so a 100 ms poll costs nothing.
 */
#include "e2e/multinode/nodes.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

bool mn_addr_bindable(const char *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	bool ok;

	ok = fd >= 0 && inet_pton(AF_INET, addr, &sa.sin_addr) == 1 &&
	     bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

bool mn_wait_nodes(struct ts_registry *reg, uint32_t node_id, unsigned want, uint64_t since_ms)
{
	struct ts_reg_node *nodes = calloc(TS_REG_MAX_NODES, sizeof(*nodes));
	bool ok = false;

	for (int i = 0; nodes && i < 200 && !ok; i++) { /* <= 20 s */
		unsigned n = 0, live = 0;

		if (ts_registry_list_nodes(reg, nodes, TS_REG_MAX_NODES, &n) == 0)
			for (unsigned j = 0; j < n; j++)
				live += nodes[j].heartbeat_ms > since_ms &&
					(!node_id || nodes[j].node_id == node_id);
		ok = live >= want;
		if (!ok)
			usleep(100000);
	}
	free(nodes);
	return ok;
}

pid_t mn_spawn_node(const struct mn_node_spec *s)
{
	char id[12], port[8], ext[24], hb[12];
	const char *argv[32];
	unsigned n = 0;
	pid_t pid;

	snprintf(id, sizeof(id), "%u", s->id);
	snprintf(port, sizeof(port), "%u", s->port);
	snprintf(ext, sizeof(ext), "%llu", (unsigned long long)s->extent_size);
	snprintf(hb, sizeof(hb), "%u", s->heartbeat_ms);
	if (s->netns) {
		argv[n++] = "ip";
		argv[n++] = "netns";
		argv[n++] = "exec";
		argv[n++] = s->netns;
	}
	argv[n++] = s->bin;
	argv[n++] = "node";
	argv[n++] = "--id";
	argv[n++] = id;
	argv[n++] = "--cluster";
	argv[n++] = s->cluster;
	argv[n++] = "--addr";
	argv[n++] = s->addr;
	argv[n++] = "--port";
	argv[n++] = port;
	argv[n++] = "--registry";
	argv[n++] = s->registry;
	argv[n++] = "--disk";
	argv[n++] = s->disk;
	if (s->extent_size) {
		argv[n++] = "--extent-size";
		argv[n++] = ext;
	}
	if (s->heartbeat_ms) {
		argv[n++] = "--heartbeat-ms";
		argv[n++] = hb;
	}
	argv[n] = NULL;
	pid = fork();
	if (pid == 0) {
		int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setenv("TESSERA_CHAP_USER", s->chap_user, 1);
		setenv("TESSERA_CHAP_SECRET", s->chap_secret, 1);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}
