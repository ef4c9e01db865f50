/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash test (healthy and degraded writers): a forked writer runs an array group over file-backed members
 * and is SIGKILLed at a random point. It reports each write before it starts
 * and after it is acknowledged through a pipe. The parent reassembles the
 * group, checks every acknowledged write (the one write in flight may be old
 * or new, block by block), then reads everything again with members missing,
 * which only works if parity agrees with data after the resync.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/member/test_member.h"

#define BS 4096u
#define MSIZE (3u * 1024 * 1024)
#define K 4
#define M 2
#define N (K + M)
#define CHUNK 16384u

struct rec {
	uint32_t type; /* 1 start, 2 ack */
	uint32_t pad;
	uint64_t off, len, seed;
};

static void gen(uint8_t *p, uint64_t len, uint64_t seed)
{
	uint64_t x = seed | 1;

	for (uint64_t i = 0; i < len; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

static void open_members(const char *dir, struct ts_member **mem, struct tmem **tm)
{
	char path[256];

	for (unsigned i = 0; i < N; i++) {
		snprintf(path, sizeof(path), "%s/m%u", dir, i);
		mem[i] = tm_file(path, MSIZE, i % 3, i, 0, &tm[i]);
	}
}

static void close_members(struct ts_member **mem)
{
	for (unsigned i = 0; i < N; i++)
		ts_member_destroy(mem[i]);
}

static void child(const char *dir, int fd, uint64_t seed, int missing)
{
	struct ts_member *mem[N];
	struct tmem *tm[N];
	struct ts_agrp *g;
	uint64_t x = seed, size, kc = (uint64_t)K * CHUNK;
	uint8_t *buf = malloc(4 * kc);

	open_members(dir, mem, tm);
	if (missing >= 0) /* this run is degraded from the start */
		tm_set_mode(tm[missing], TM_MISSING);
	if (ts_agrp_assemble(mem, N, NULL, &g))
		_exit(3);
	for (unsigned i = 0; i < N; i++) /* the kill then lands inside stripe writes */
		tm_set_write_delay(tm[i], 200 + 50 * i);
	size = ts_agrp_size(g);
	for (unsigned i = 0; i < 100000; i++) {
		struct rec r = { 1, 0, 0, 0, 0 };

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if ((x >> 60) < 3) { /* full stripes */
			r.len = ((x >> 20) % 3 + 1) * kc;
			r.off = ((x >> 8) % (size / kc - 3)) * kc;
		} else {
			r.len = ((x >> 20) % 8 + 1) * BS;
			r.off = ((x >> 8) % (size / BS - 8)) * BS;
		}
		r.seed = x;
		if ((x >> 56) == 7 && ts_agrp_flush_sync(g))
			_exit(4);
		gen(buf, r.len, r.seed);
		if (write(fd, &r, sizeof(r)) != sizeof(r))
			_exit(5);
		if (ts_agrp_write_sync(g, r.off, r.len, buf))
			_exit(6);
		r.type = 2;
		if (write(fd, &r, sizeof(r)) != sizeof(r))
			_exit(5);
	}
	_exit(0);
}

Test(agrp_crash, sigkill_writer_then_reassemble, .timeout = 120)
{
	char dir[] = "/tmp/ts_agrp_crash_XXXXXX";
	struct ts_member *mem[N];
	struct tmem *tm[N];
	struct ts_agrp *g;
	struct ts_agrp_opts o = { .chunk_size = CHUNK };
	uint8_t *ref, *got, *tmp, *unsure;
	uint64_t size, rng = 0x9e3779b97f4a7c15ull;

	cr_assert_not_null(mkdtemp(dir));
	open_members(dir, mem, tm);
	cr_assert_eq(ts_agrp_create(mem, N, K, M, &o, &g), 0);
	size = ts_agrp_size(g);
	ts_agrp_close(g);
	close_members(mem);
	ref = calloc(1, size);
	got = malloc(size);
	tmp = malloc(4 * K * CHUNK);
	unsure = calloc(size / BS, 1);

	for (unsigned round = 0; round < 10; round++) {
		int p[2], st;
		pid_t pid;
		struct rec r, pending = { 0, 0, 0, 0, 0 };
		unsigned acks = 0, kill_after;
		int killed = 0;
		ssize_t rd;

		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		kill_after = 5 + (unsigned)((rng >> 33) % 120);
		cr_assert_eq(pipe(p), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			close(p[0]);
			/* odd rounds: the writer runs degraded, the member returns after */
			child(dir, p[1], rng, round % 2 ? (int)(round % N) : -1);
		}
		close(p[1]);
		while ((rd = read(p[0], &r, sizeof(r))) == sizeof(r)) {
			if (r.type == 1) {
				pending = r;
				if (acks >= kill_after && !killed) {
					/* land somewhere inside this write's member IOs */
					usleep((unsigned)((rng >> 20) % 1200));
					kill(pid, SIGKILL);
					killed = 1;
				}
				continue;
			}
			cr_assert(r.type == 2 && r.off == pending.off && r.seed == pending.seed);
			gen(tmp, r.len, r.seed);
			memcpy(ref + r.off, tmp, r.len);
			pending.type = 0;
			acks++;
		}
		close(p[0]);
		cr_assert_eq(waitpid(pid, &st, 0), pid);
		cr_assert(WIFSIGNALED(st), "writer ended on its own: status %d", st);
		memset(unsure, 0, size / BS);
		if (pending.type == 1) /* in flight at the kill: each block old or new */
			for (uint64_t b = pending.off / BS; b < (pending.off + pending.len) / BS; b++)
				unsure[b] = 1;

		open_members(dir, mem, tm);
		cr_assert_eq(ts_agrp_assemble(mem, N, NULL, &g), 0, "round %u", round);
		cr_assert_eq(ts_agrp_live_mask(g), (1u << N) - 1);
		cr_assert_eq(ts_agrp_read_sync(g, 0, size, got), 0);
		if (pending.type == 1)
			gen(tmp, pending.len, pending.seed);
		for (uint64_t b = 0; b < size / BS; b++) {
			if (!unsure[b]) {
				cr_assert_arr_eq(got + b * BS, ref + b * BS, BS,
						 "round %u: acknowledged block %llu lost", round,
						 (unsigned long long)b);
				continue;
			}
			cr_assert(!memcmp(got + b * BS, ref + b * BS, BS) ||
				  !memcmp(got + b * BS, tmp + (b * BS - pending.off), BS),
				  "round %u: block %llu is neither old nor new", round,
				  (unsigned long long)b);
			memcpy(ref + b * BS, got + b * BS, BS);
		}
		/* parity agrees with data: decode everything with two members out */
		tm_set_mode(tm[round % N], TM_MISSING);
		tm_set_mode(tm[(round + 1) % N], TM_MISSING);
		cr_assert_eq(ts_agrp_read_sync(g, 0, size, got), 0);
		cr_assert_arr_eq(got, ref, size, "round %u: decoded volume differs", round);
		tm_set_mode(tm[round % N], TM_OK);
		tm_set_mode(tm[(round + 1) % N], TM_OK);
		cr_assert_eq(ts_agrp_add_member(g, mem[round % N]), 0);
		cr_assert_eq(ts_agrp_add_member(g, mem[(round + 1) % N]), 0);
		ts_agrp_close(g);
		close_members(mem);
	}
	for (unsigned i = 0; i < N; i++) {
		char path[256];
		snprintf(path, sizeof(path), "%s/m%u", dir, i);
		unlink(path);
	}
	rmdir(dir);
	free(ref);
	free(got);
	free(tmp);
	free(unsure);
}
