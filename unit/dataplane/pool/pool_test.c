/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The whole local data plane: PEM + LDM on file disks of three simulated
 * nodes, a 4+2 array group over them, reassembled after restarts, node
 * outages and a SIGKILLed writer. Every read is checked against a reference.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/pool/pool.h"

#define BS 4096u
#define NBLK 512u /* exercised region: 2 MiB */

static char g_dir[64];

static void setup(void)
{
	strcpy(g_dir, "/tmp/ts_pool_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

static struct ts_pool_opts small_opts(void)
{
	struct ts_pool_opts o = { .state_dir = g_dir, .nodes = 3, .disks_per_node = 2,
				  .disk_size = 48ull << 20, .k = 4, .m = 2,
				  .extent_size = 1u << 20, .chunk_size = 16384 };
	return o;
}

/* Block contents are a function of (block, version) so reads can be checked. */
static void fill(uint8_t *buf, uint32_t blk, uint32_t ver)
{
	for (unsigned i = 0; i < BS; i += 8) {
		uint64_t v = ((uint64_t)blk << 32 | ver) * 0x9e3779b97f4a7c15ull + i;
		memcpy(buf + i, &v, 8);
	}
}

static void write_blk(struct ts_member *dev, uint32_t blk, uint32_t ver)
{
	uint8_t buf[BS];
	fill(buf, blk, ver);
	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_WRITE, 0, (uint64_t)blk * BS, BS, buf), 0,
		     "write blk %u", blk);
}

static void check_all(struct ts_member *dev, const uint32_t *ver)
{
	static uint8_t got[NBLK * BS];
	uint8_t want[BS];

	cr_assert_eq(ts_member_rw_sync(dev, TS_MEMBER_READ, 0, 0, sizeof(got), got), 0);
	for (uint32_t b = 0; b < NBLK; b++) {
		if (ver[b] == 0)
			memset(want, 0, BS);
		else
			fill(want, b, ver[b]);
		cr_assert(memcmp(got + (size_t)b * BS, want, BS) == 0, "block %u version %u", b,
			  ver[b]);
	}
}

TestSuite(pool, .init = setup, .fini = teardown, .timeout = 120);

Test(pool, create_write_reassemble_after_restart)
{
	struct ts_pool_opts o = small_opts();
	struct ts_pool_status st;
	struct ts_pool *p;
	uint32_t ver[NBLK] = { 0 };

	cr_assert_eq(ts_pool_open(&o, &p), 0);
	ts_pool_status(p, &st);
	cr_assert_eq(st.k, 4);
	cr_assert_eq(st.live_mask, 0x3f);
	/* 4+2 on 3 nodes: two fragments on each node */
	unsigned per[4] = { 0 };
	for (unsigned i = 0; i < 6; i++)
		per[st.slot_node[i]]++;
	cr_assert(per[1] == 2 && per[2] == 2 && per[3] == 2);
	cr_assert(st.size >= NBLK * BS);
	/* Per-node disks and extents: two 48 MiB disks of 1 MiB extents each, two
	 * members' worth allocated on every node. */
	cr_assert_eq(st.extent_size, 1u << 20);
	for (unsigned n = 0; n < 3; n++) {
		cr_assert_eq(st.node_disks[n], 2);
		cr_assert(st.node_extents[n] > 0 && st.node_extents[n] <= 96, "%llu",
			  (unsigned long long)st.node_extents[n]);
		cr_assert_lt(st.node_free_extents[n], st.node_extents[n]);
	}
	srand(7);
	for (int i = 0; i < 600; i++) {
		uint32_t b = (uint32_t)rand() % NBLK;
		write_blk(ts_pool_device(p), b, ++ver[b]);
	}
	check_all(ts_pool_device(p), ver);
	ts_pool_close(p);

	/* Reopen with no options at all: pool.json and the superblocks say everything. */
	struct ts_pool_opts bare = { .state_dir = g_dir };
	cr_assert_eq(ts_pool_open(&bare, &p), 0);
	ts_pool_status(p, &st);
	cr_assert_eq(st.live_mask, 0x3f);
	check_all(ts_pool_device(p), ver);
	ts_pool_close(p);
}

Test(pool, writes_continue_through_node_outages_and_resync)
{
	struct ts_pool_opts o = small_opts();
	struct ts_pool_status st;
	struct ts_pool *p;
	uint32_t ver[NBLK] = { 0 };

	cr_assert_eq(ts_pool_open(&o, &p), 0);
	srand(11);
	for (int round = 0; round < 3; round++) {
		uint32_t node = (uint32_t)round % 3 + 1;
		cr_assert_eq(ts_pool_node_stop(p, node), 0);
		cr_assert_eq(ts_pool_node_stop(p, node), -EALREADY);
		for (int i = 0; i < 200; i++) {
			uint32_t b = (uint32_t)rand() % NBLK;
			write_blk(ts_pool_device(p), b, ++ver[b]);
		}
		check_all(ts_pool_device(p), ver); /* degraded reads decode */
		ts_pool_status(p, &st);
		cr_assert_neq(st.live_mask, 0x3f);
		cr_assert_eq(st.node_up_mask, 0x7u & ~(1u << (node - 1)));
		cr_assert_eq(st.node_disks[node - 1], 0, "a down node reports no disks");
		cr_assert_eq(ts_pool_node_start(p, node), 0);
		ts_pool_status(p, &st);
		cr_assert_eq(st.live_mask, 0x3f, "node %u rejoined", node);
	}
	/* Each node's members were resynced: with any other node now gone, the
	 * data must still be whole, which needs the returned fragments. */
	for (uint32_t node = 1; node <= 3; node++) {
		cr_assert_eq(ts_pool_node_stop(p, node), 0);
		check_all(ts_pool_device(p), ver);
		cr_assert_eq(ts_pool_node_start(p, node), 0);
	}
	ts_pool_close(p);
}

Test(pool, reassembles_degraded_when_a_node_is_missing_at_start)
{
	struct ts_pool_opts o = small_opts();
	struct ts_pool_status st;
	struct ts_pool *p;
	uint32_t ver[NBLK] = { 0 };
	char path[128];

	cr_assert_eq(ts_pool_open(&o, &p), 0);
	for (uint32_t b = 0; b < NBLK; b += 3)
		write_blk(ts_pool_device(p), b, ver[b] = 5);
	ts_pool_close(p);
	/* node 2 lost both of its disks */
	for (int d = 0; d < 2; d++) {
		snprintf(path, sizeof(path), "%s/node2/disk%d.img", g_dir, d);
		cr_assert_eq(unlink(path), 0);
	}
	cr_assert_eq(ts_pool_open(&o, &p), 0);
	ts_pool_status(p, &st);
	cr_assert_eq(__builtin_popcountll(st.live_mask), 4);
	cr_assert_eq(st.node_up_mask, 0x5);
	check_all(ts_pool_device(p), ver);
	ts_pool_close(p);
}

Test(pool, contradicting_or_corrupt_description_is_refused)
{
	struct ts_pool_opts o = small_opts();
	struct ts_pool *p;
	char path[128];

	cr_assert_eq(ts_pool_open(&o, &p), 0);
	ts_pool_close(p);
	snprintf(path, sizeof(path), "%s/pool.json", g_dir);
	cr_assert_eq(ts_file_write_atomic(path, "{\"version\":1}", 13), 0);
	cr_assert_eq(ts_pool_open(&o, &p), TS_ERR_CORRUPT);
}

/*
 * A child writes blocks one at a time and reports each acknowledged write
 * on a pipe just before it issues the next; the parent SIGKILLs it at a
 * random moment, reassembles the pool and checks every block holds its
 * last acknowledged version (or the one in flight at the kill).
 */
Test(pool, sigkilled_writer_loses_no_acknowledged_write)
{
	struct ts_pool_opts o = small_opts();
	struct ts_pool *p;
	uint32_t acked[NBLK] = { 0 }, next[NBLK] = { 0 };

	cr_assert_eq(ts_pool_open(&o, &p), 0);
	ts_pool_close(p);
	srand(3);
	for (int round = 0; round < 4; round++) {
		int fds[2];
		cr_assert_eq(pipe(fds), 0);
		fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
		uint32_t seed = (uint32_t)rand();
		pid_t pid = fork();
		cr_assert(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			struct ts_pool *cp;
			if (ts_pool_open(&o, &cp) != 0)
				_exit(3);
			srand(seed);
			for (;;) {
				uint32_t rec[2];
				rec[0] = (uint32_t)rand() % NBLK;
				rec[1] = (uint32_t)rand() | 1u;
				/* announce the intent, then the ack */
				uint8_t buf[BS];
				uint32_t msg[3] = { 0, rec[0], rec[1] };
				if (write(fds[1], msg, sizeof(msg)) != sizeof(msg))
					_exit(4);
				fill(buf, rec[0], rec[1]);
				if (ts_member_rw_sync(ts_pool_device(cp), TS_MEMBER_WRITE, 0,
						      (uint64_t)rec[0] * BS, BS, buf) != 0)
					_exit(5);
				msg[0] = 1;
				if (write(fds[1], msg, sizeof(msg)) != sizeof(msg))
					_exit(4);
			}
		}
		close(fds[1]);
		/* Kill after a random number of acknowledged writes (not after a
		 * fixed time: a loaded machine may not have started the child). */
		unsigned target = 1 + (unsigned)rand() % 400, nacks = 0;
		uint32_t msg[3];
		memset(next, 0, sizeof(next));
		int killed = 0;
		while (read(fds[0], msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
			if (msg[0] == 0) {
				next[msg[1]] = msg[2];
			} else {
				acked[msg[1]] = msg[2];
				next[msg[1]] = 0;
				if (++nacks == target && !killed) {
					usleep((useconds_t)(rand() % 2000));
					kill(pid, SIGKILL);
					killed = 1;
				}
			}
		}
		int status;
		waitpid(pid, &status, 0);
		cr_assert(killed && WIFSIGNALED(status), "child exited early status=%d acks=%u",
			  status, nacks);
		close(fds[0]);
		cr_assert_gt(nacks, 0);
		cr_assert_eq(ts_pool_open(&o, &p), 0);
		static uint8_t got[NBLK * BS];
		uint8_t want[BS];
		cr_assert_eq(ts_member_rw_sync(ts_pool_device(p), TS_MEMBER_READ, 0, 0, sizeof(got),
					       got), 0);
		for (uint32_t b = 0; b < NBLK; b++) {
			if (acked[b] == 0)
				memset(want, 0, BS);
			else
				fill(want, b, acked[b]);
			if (memcmp(got + (size_t)b * BS, want, BS) == 0)
				continue;
			cr_assert_neq(next[b], 0, "round %d block %u lost acked version %u", round,
				      b, acked[b]);
			fill(want, b, next[b]);
			cr_assert(memcmp(got + (size_t)b * BS, want, BS) == 0,
				  "round %d block %u holds neither acked nor in-flight data", round,
				  b);
			acked[b] = next[b];
		}
		ts_pool_close(p);
	}
}
