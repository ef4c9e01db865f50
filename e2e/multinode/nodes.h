/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Helpers shared by the programs that run `tessera node` processes on
 * loopback addresses and drive them through the registry: the multi-node
 * test (e2e/multinode) and the multi-node benchmark (bench/cluster).
 */
#ifndef TS_E2E_MULTINODE_NODES_H
#define TS_E2E_MULTINODE_NODES_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "control/registry/registry.h"

/**
 * True if a TCP socket can bind \p addr (an IPv4 literal such as
 * "127.0.0.3"; Linux routes all of 127/8 to lo, other systems may not).
 */
bool mn_addr_bindable(const char *addr);

/**
 * Wait up to 20 s until at least \p want node records (only node
 * \p node_id's when non-zero) carry a heartbeat newer than \p since_ms
 * (ts_registry_now_ms() time). True if they do.
 */
bool mn_wait_nodes(struct ts_registry *reg, uint32_t node_id, unsigned want, uint64_t since_ms);

/** How to run one `tessera node` process (strings borrowed for the call). */
struct mn_node_spec {
	const char *bin;          /**< the tessera binary */
	const char *netns;        /**< NULL, or run it in this network namespace (ip netns exec) */
	uint32_t id;
	const char *cluster;      /**< cluster uuid, text */
	const char *addr;         /**< listen address */
	uint16_t port;
	const char *registry;     /**< registry directory */
	const char *disk;         /**< disk file */
	uint64_t extent_size;     /**< 0: the node's default */
	uint32_t heartbeat_ms;    /**< 0: the node's default */
	const char *log;          /**< stdout and stderr are appended here */
	const char *chap_user, *chap_secret;
};

/**
 * Fork and exec a node as described by \p s. The child gets SIGKILL when
 * the calling thread exits, so a crashed test or bench leaves no node
 * behind. Returns the child's pid, or -1 (fork failed; errno set).
 */
pid_t mn_spawn_node(const struct mn_node_spec *s);

#endif /* TS_E2E_MULTINODE_NODES_H */
