/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The embedded default's assembly (programs/dev.h) as the tests' in-process
 * cluster: three node daemons with file disks and their own CHAP iSCSI
 * targets, a 4+2 group over them through user-mode iSCSI, the serving stack.
 * Restarted on the same state directory it reassembles from the superblocks
 * and serves the same volumes with the same data; first-start geometry that
 * contradicts dev.json and an unreadable dev.json are refused; a process
 * running it SIGKILLed mid-write loses no flushed write. Every read is
 * checked against what the test itself wrote.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "programs/dev.h"
#include "programs/stack.h"
#include "unit/support/cluster/cluster_fixture.h"

#define BS 4096u
#define NBLK 256u /* the exercised range: 1 MiB of a 16 MiB volume */

static char g_dir[64], g_state[128], g_endpoint[160], g_portal[32];

static void setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	strcpy(g_dir, "/tmp/ts_dev_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	snprintf(g_state, sizeof(g_state), "%s/state", g_dir);
	snprintf(g_endpoint, sizeof(g_endpoint), "unix://%s/csi.sock", g_dir);
	snprintf(g_portal, sizeof(g_portal), "127.0.0.1:%u", cluster_free_port());
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

static struct ts_dev_opts opts(void)
{
	struct ts_dev_opts o = { .state_dir = g_state, .nodes = 3, .disks = 2,
				 .disk_size = 128ull << 20, .k = 4, .m = 2, .geometry_given = true,
				 .portal = g_portal, .csi_endpoint = g_endpoint,
				 .node_id = "unit-dev" };
	return o;
}

static struct ts_vpool *vpool(struct ts_dev *d)
{
	return ts_stack_vpool(ts_dev_stack(d));
}

/* Block contents are a function of (block, version) so reads can be checked. */
static void fill(uint8_t *buf, uint32_t blk, uint32_t ver)
{
	for (unsigned i = 0; i < BS; i += 8) {
		uint64_t v = ((uint64_t)blk << 32 | ver) * 0x9e3779b97f4a7c15ull + i;
		memcpy(buf + i, &v, 8);
	}
}

static void check_blocks(struct ts_volume *v, const uint32_t *ver, const uint32_t *inflight)
{
	static uint8_t got[NBLK * BS];
	uint8_t want[BS];

	cr_assert_eq(ts_volume_read_sync(v, 0, sizeof(got), got), 0);
	for (uint32_t b = 0; b < NBLK; b++) {
		if (ver[b] == 0)
			memset(want, 0, BS);
		else
			fill(want, b, ver[b]);
		if (memcmp(got + (size_t)b * BS, want, BS) == 0)
			continue;
		cr_assert(inflight && inflight[b], "block %u lost its flushed version %u", b, ver[b]);
		fill(want, b, inflight[b]);
		cr_assert(memcmp(got + (size_t)b * BS, want, BS) == 0,
			  "block %u holds neither its flushed nor its in-flight version", b);
	}
}

TestSuite(dev, .init = setup, .fini = teardown, .timeout = 120);

Test(dev, restart_serves_the_same_volume_with_its_data)
{
	struct ts_dev_opts o = opts();
	struct ts_dev *d;
	struct ts_volume *v;
	uint32_t ver[NBLK] = { 0 };
	uint64_t id;
	uint8_t buf[BS];

	cr_assert_eq(ts_dev_start(&o, &d), 0);
	cr_assert_eq(ts_vpool_volume_create(vpool(d), "restart", 16ull << 20, 0, &id), 0);
	cr_assert_eq(ts_volume_open(vpool(d), id, &v), 0);
	srand(7);
	for (int i = 0; i < 400; i++) {
		uint32_t b = (uint32_t)rand() % NBLK;

		fill(buf, b, ++ver[b]);
		cr_assert_eq(ts_volume_write_sync(v, (uint64_t)b * BS, BS, buf), 0);
	}
	cr_assert_eq(ts_volume_flush_sync(v), 0);
	check_blocks(v, ver, NULL);
	ts_volume_close(v);
	ts_dev_stop(d);

	for (int round = 0; round < 2; round++) {
		cr_assert_eq(ts_dev_start(&o, &d), 0, "restart %d", round);
		cr_assert_eq(ts_volume_open(vpool(d), id, &v), 0, "the volume is back");
		check_blocks(v, ver, NULL);
		ts_volume_close(v);
		ts_dev_stop(d);
	}
}

Test(dev, contradicting_geometry_or_corrupt_description_is_refused)
{
	struct ts_dev_opts o = opts();
	struct ts_dev *d;
	char path[200];

	cr_assert_eq(ts_dev_start(&o, &d), 0);
	ts_dev_stop(d);
	o.nodes = 4;
	cr_assert_eq(ts_dev_start(&o, &d), -EINVAL, "nodes differ from dev.json");
	cr_assert_null(d);
	o.geometry_given = false; /* what dev.json says wins when none is given */
	cr_assert_eq(ts_dev_start(&o, &d), 0);
	ts_dev_stop(d);
	snprintf(path, sizeof(path), "%s/dev.json", g_state);
	cr_assert_eq(ts_file_write_atomic(path, "{\"version\":1}", 13), 0);
	cr_assert_lt(ts_dev_start(&o, &d), 0, "an unreadable dev.json is an error, not a reformat");
	cr_assert_null(d);
}

/*
 * A child runs the cluster and writes blocks one at a time, each followed by
 * a flush (what an initiator's SYNCHRONIZE CACHE does); it announces each
 * write before issuing it and reports it acknowledged once the flush
 * returned. The parent SIGKILLs it after a random number of acks, restarts
 * the cluster on the same state and checks every block holds its last
 * acknowledged version (or the one in flight at the kill).
 */
Test(dev, sigkilled_process_loses_no_flushed_write)
{
	struct ts_dev_opts o = opts();
	struct ts_dev *d;
	struct ts_volume *v;
	uint32_t acked[NBLK] = { 0 }, next[NBLK];
	uint64_t id;

	cr_assert_eq(ts_dev_start(&o, &d), 0);
	cr_assert_eq(ts_vpool_volume_create(vpool(d), "crash", 16ull << 20, 0, &id), 0);
	ts_dev_stop(d);
	srand(3);
	for (int round = 0; round < 3; round++) {
		unsigned target = 1 + (unsigned)rand() % 200, nacks = 0;
		uint32_t seed = (uint32_t)rand(), msg[3];
		int fds[2], status, killed = 0;
		pid_t pid;

		cr_assert_eq(pipe(fds), 0);
		fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
		pid = fork();
		cr_assert(pid >= 0);
		if (pid == 0) {
			struct ts_dev *cd;
			struct ts_volume *cv;
			uint8_t buf[BS];

			close(fds[0]);
			if (ts_dev_start(&o, &cd) != 0 || ts_volume_open(vpool(cd), id, &cv) != 0)
				_exit(3);
			srand(seed);
			for (;;) {
				uint32_t m[3] = { 0, (uint32_t)rand() % NBLK, (uint32_t)rand() | 1u };

				if (write(fds[1], m, sizeof(m)) != sizeof(m))
					_exit(4);
				fill(buf, m[1], m[2]);
				if (ts_volume_write_sync(cv, (uint64_t)m[1] * BS, BS, buf) != 0 ||
				    ts_volume_flush_sync(cv) != 0)
					_exit(5);
				m[0] = 1;
				if (write(fds[1], m, sizeof(m)) != sizeof(m))
					_exit(4);
			}
		}
		close(fds[1]);
		memset(next, 0, sizeof(next));
		while (read(fds[0], msg, sizeof(msg)) == (ssize_t)sizeof(msg)) {
			if (msg[0] == 0) {
				next[msg[1]] = msg[2];
				continue;
			}
			acked[msg[1]] = msg[2];
			next[msg[1]] = 0;
			if (++nacks == target && !killed) {
				usleep((useconds_t)(rand() % 2000));
				kill(pid, SIGKILL);
				killed = 1;
			}
		}
		waitpid(pid, &status, 0);
		close(fds[0]);
		cr_assert(killed && WIFSIGNALED(status), "child exited early status=%d acks=%u",
			  status, nacks);
		cr_assert_eq(ts_dev_start(&o, &d), 0, "round %d: restart after SIGKILL", round);
		cr_assert_eq(ts_volume_open(vpool(d), id, &v), 0);
		check_blocks(v, acked, next);
		for (uint32_t b = 0; b < NBLK; b++) /* what survived is the new reference */
			if (next[b]) {
				uint8_t got[BS], want[BS];

				cr_assert_eq(ts_volume_read_sync(v, (uint64_t)b * BS, BS, got), 0);
				fill(want, b, next[b]);
				if (!memcmp(got, want, BS))
					acked[b] = next[b];
			}
		ts_volume_close(v);
		ts_dev_stop(d);
	}
}
