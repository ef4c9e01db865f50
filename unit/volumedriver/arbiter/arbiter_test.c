/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-volume arbitration on a real thin volume over a RAM member whose IO
 * can be parked (tm_set_stall), so what waits and in which order it reaches
 * the volume is observable: overlapping writes in arrival order, reads
 * behind an overlapping write see all of it, a waiting writer is not
 * overtaken by later readers, disjoint IO does not wait, a waiting IO's
 * submit error arrives through its callback, the registry shares one
 * arbiter per volume; then threads hammer overlapping ranges with stamped
 * writes and every read must be wholly one write.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "unit/support/member/test_member.h"
#include "volumedriver/arbiter/arbiter.h"

#define BS TS_VOLUME_BLOCK
#define VOL_BLOCKS 1024ull

static struct ts_member *g_m;
static struct tmem *g_t;
static struct ts_vpool *g_pool;
static uint64_t g_vol;

static void setup_mode(int async)
{
	cr_assert_eq(tm_ram_create(32ull << 20, BS, async, &g_m, &g_t), 0);
	cr_assert_eq(ts_vpool_format(g_m), 0);
	cr_assert_eq(ts_vpool_open(g_m, &g_pool), 0);
	cr_assert_eq(ts_vpool_volume_create(g_pool, "v", VOL_BLOCKS * BS, 0, &g_vol), 0);
}

static void setup_inline(void)
{
	setup_mode(0);
}

static void setup_async(void)
{
	setup_mode(1);
}

static void teardown(void)
{
	ts_vpool_close(g_pool);
	ts_member_destroy(g_m);
}

/* ---- completion log ---- */

#define MAXDONE 64
static int g_done[MAXDONE];
static int g_status[MAXDONE];
static atomic_int g_ndone;

struct tag {
	int id;
};

static void log_cb(void *arg, int status)
{
	int i = atomic_fetch_add(&g_ndone, 1);

	g_done[i] = ((struct tag *)arg)->id;
	g_status[i] = status;
}

static int pos_of(int id)
{
	for (int i = 0; i < atomic_load(&g_ndone); i++)
		if (g_done[i] == id)
			return i;
	return -1;
}

static void fill(uint8_t *b, size_t n, uint8_t v)
{
	memset(b, v, n);
}

TestSuite(arbiter, .init = setup_inline, .fini = teardown);

Test(arbiter, overlapping_writes_in_arrival_order_reads_see_whole_writes)
{
	struct ts_arb *a;
	static uint8_t wa[8 * BS], wb[8 * BS], rc_[BS], wd[BS], out[16 * BS];
	struct tag A = {1}, B = {2}, C = {3}, D = {4};
	struct ts_arb_stats st;

	atomic_store(&g_ndone, 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	fill(wa, sizeof(wa), 0xaa);
	fill(wb, sizeof(wb), 0xbb);
	fill(wd, sizeof(wd), 0xdd);
	tm_set_stall(g_t, 1);
	cr_assert_eq(ts_arb_write(a, 0, 8 * BS, wa, log_cb, &A), 0);
	cr_assert_eq(ts_arb_write(a, 4 * BS, 8 * BS, wb, log_cb, &B), 0);
	cr_assert_eq(ts_arb_read(a, 6 * BS, BS, rc_, log_cb, &C), 0);
	cr_assert_eq(ts_arb_write(a, 100 * BS, BS, wd, log_cb, &D), 0);
	ts_arb_stats(a, &st);
	cr_assert_eq(st.waiting, 2, "B waits for A, C for B");
	cr_assert_eq(st.in_flight, 2, "A and the disjoint D run");
	cr_assert_eq(tm_stalled(g_t), 2, "only A and D reached the member");
	cr_assert_eq(atomic_load(&g_ndone), 0);
	tm_set_stall(g_t, 0);
	cr_assert_eq(atomic_load(&g_ndone), 4);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(g_status[i], 0);
	/* The callbacks' order says nothing (a hold is released before its callback,
	 * so the next IO may complete first); the data says who went first. */
	for (size_t i = 0; i < BS; i++)
		cr_assert_eq(rc_[i], 0xbb, "the read behind B sees B");
	cr_assert_eq(ts_volume_read_sync(ts_arb_volume(a), 0, sizeof(out), out), 0);
	for (size_t i = 0; i < sizeof(out); i++)
		cr_assert_eq(out[i], i < 4 * BS ? 0xaa : i < 12 * BS ? 0xbb : 0, "byte %zu: B after A", i);
	ts_arb_stats(a, &st);
	cr_assert_eq(st.writes, 3);
	cr_assert_eq(st.reads, 1);
	cr_assert_eq(st.waited, 2);
	cr_assert_eq(st.in_flight + st.waiting, 0);
	ts_arb_close(a);
}

Test(arbiter, waiting_writer_not_overtaken_by_readers)
{
	struct ts_arb *a;
	static uint8_t r1[4 * BS], r2[4 * BS], w[4 * BS];
	struct tag R1 = {1}, W = {2}, R2 = {3}, R3 = {4};
	static uint8_t r3[BS];
	struct ts_arb_stats st;

	atomic_store(&g_ndone, 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	fill(w, sizeof(w), 0x11);
	cr_assert_eq(ts_volume_write_sync(ts_arb_volume(a), 0, sizeof(w), w), 0); /* reads reach the member */
	cr_assert_eq(ts_volume_write_sync(ts_arb_volume(a), 50 * BS, BS, w), 0);
	fill(w, sizeof(w), 0x22);
	tm_set_stall(g_t, 1);
	cr_assert_eq(ts_arb_read(a, 0, 4 * BS, r1, log_cb, &R1), 0);
	cr_assert_eq(ts_arb_write(a, 0, 4 * BS, w, log_cb, &W), 0);
	cr_assert_eq(ts_arb_read(a, 2 * BS, 2 * BS, r2, log_cb, &R2), 0);
	cr_assert_eq(ts_arb_read(a, 50 * BS, BS, r3, log_cb, &R3), 0);
	ts_arb_stats(a, &st);
	cr_assert_eq(st.waiting, 2, "W behind R1, R2 behind W although R1 is a read");
	tm_set_stall(g_t, 0);
	cr_assert_eq(atomic_load(&g_ndone), 4);
	cr_assert_eq(r1[0], 0x11, "R1 ran before W");
	cr_assert_eq(r2[0], 0x22, "R2 waited for W");
	cr_assert_eq(r2[2 * BS - 1], 0x22);
	ts_arb_close(a);
}

Test(arbiter, waiting_io_submit_error_through_callback)
{
	struct ts_arb *a;
	static uint8_t w[2 * BS];
	struct tag A = {1}, B = {2};
	struct ts_arb_stats st;

	atomic_store(&g_ndone, 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	tm_set_stall(g_t, 1);
	cr_assert_eq(ts_arb_write(a, (VOL_BLOCKS - 1) * BS, BS, w, log_cb, &A), 0);
	/* Overlaps A but runs past the end: it waits, then the volume refuses it. */
	cr_assert_eq(ts_arb_write(a, (VOL_BLOCKS - 1) * BS, 2 * BS, w, log_cb, &B), 0);
	tm_set_stall(g_t, 0);
	cr_assert_eq(atomic_load(&g_ndone), 2);
	cr_assert_eq(g_status[pos_of(1)], 0);
	cr_assert_eq(g_status[pos_of(2)], -EINVAL);
	/* Refused at once when nothing is in the way; nothing stays held. */
	cr_assert_eq(ts_arb_write(a, VOL_BLOCKS * BS, BS, w, log_cb, &B), -EINVAL);
	cr_assert_eq(ts_arb_write(a, 1, BS, w, log_cb, &B), -EINVAL);
	cr_assert_eq(ts_arb_write(a, 0, 0, w, log_cb, &B), -EINVAL);
	cr_assert_eq(ts_arb_read(a, 0, BS, NULL, log_cb, &B), -EINVAL);
	cr_assert_eq(ts_arb_unmap(a, 0, BS, NULL, NULL), -EINVAL);
	ts_arb_stats(a, &st);
	cr_assert_eq(st.in_flight + st.waiting, 0);
	cr_assert_eq(atomic_load(&g_ndone), 2);
	ts_arb_close(a);
}

Test(arbiter, unmap_is_exclusive)
{
	struct ts_arb *a;
	static uint8_t w[4 * BS], r[4 * BS];
	struct tag U = {1}, R = {2};

	atomic_store(&g_ndone, 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	fill(w, sizeof(w), 0x33);
	cr_assert_eq(ts_volume_write_sync(ts_arb_volume(a), 0, sizeof(w), w), 0);
	tm_set_stall(g_t, 1);
	cr_assert_eq(ts_arb_read(a, 0, 4 * BS, r, log_cb, &R), 0);
	cr_assert_eq(ts_arb_unmap(a, 0, 4 * BS, log_cb, &U), 0);
	cr_assert_eq(atomic_load(&g_ndone), 0, "the unmap waits for the read in flight");
	tm_set_stall(g_t, 0);
	cr_assert_eq(atomic_load(&g_ndone), 2);
	cr_assert_eq(r[0], 0x33, "the read was not cut short by the unmap");
	cr_assert_eq(ts_volume_read_sync(ts_arb_volume(a), 0, sizeof(r), r), 0);
	cr_assert_eq(r[0], 0);
	ts_arb_close(a);
}

Test(arbiter, registry_shares_one_arbiter_per_volume)
{
	struct ts_arb *a, *b, *c;
	uint64_t v2;

	cr_assert_eq(ts_vpool_volume_create(g_pool, "w", 64 * BS, 0, &v2), 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &b), 0);
	cr_assert_eq(ts_arb_open(g_pool, v2, &c), 0);
	cr_assert_eq(a, b);
	cr_assert_neq(a, c);
	cr_assert_eq(ts_arb_volume(a), ts_arb_volume(b));
	cr_assert_eq(ts_arb_open(g_pool, 999999, &b), -ENOENT);
	cr_assert_eq(ts_arb_open(NULL, g_vol, &b), -EINVAL);
	cr_assert_eq(ts_vpool_volume_delete(g_pool, v2), -EBUSY, "the arbiter holds the volume open");
	ts_arb_close(c);
	cr_assert_eq(ts_vpool_volume_delete(g_pool, v2), 0);
	ts_arb_close(a);
	cr_assert_eq(ts_arb_open(g_pool, g_vol, &b), 0, "still registered after one close");
	ts_arb_close(b);
	ts_arb_close(a == b ? NULL : b);
	ts_arb_close(NULL);
}

Test(arbiter, allocation_failure_is_returned)
{
	struct ts_arb *a;
	static uint8_t w[BS];
	struct tag A = {1};
	struct ts_arb_stats st;

	cr_assert_eq(ts_arb_open(g_pool, g_vol, &a), 0);
	ts_alloc_fail_after(0);
	cr_assert_eq(ts_arb_write(a, 0, BS, w, log_cb, &A), -ENOMEM);
	ts_alloc_fail_after(-1);
	ts_arb_stats(a, &st);
	cr_assert_eq(st.writes + st.in_flight, 0);
	ts_arb_close(a);
}

/* ---- threads: overlapping stamped writes, every read wholly one write ---- */

#define HOT 32 /* blocks */
#define STRESS_THREADS 4
#define STRESS_IOS 3000

struct stamp {
	uint32_t writer, seq, start, nblocks;
};

struct stress_io {
	uint8_t buf[8 * BS];
	pthread_mutex_t mu;
	pthread_cond_t cond;
	int done, status;
};

static struct ts_arb *g_sa;
static atomic_int g_torn, g_reads_checked;

static void stress_cb(void *arg, int status)
{
	struct stress_io *io = arg;

	pthread_mutex_lock(&io->mu);
	io->done = 1;
	io->status = status;
	pthread_cond_signal(&io->cond);
	pthread_mutex_unlock(&io->mu);
}

static int stress_wait(struct stress_io *io)
{
	pthread_mutex_lock(&io->mu);
	while (!io->done)
		pthread_cond_wait(&io->cond, &io->mu);
	io->done = 0;
	pthread_mutex_unlock(&io->mu);
	return io->status;
}

static void *stress_main(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed = id * 2654435761u;
	struct stress_io io = {0};

	pthread_mutex_init(&io.mu, NULL);
	pthread_cond_init(&io.cond, NULL);
	for (uint32_t n = 0; n < STRESS_IOS; n++) {
		uint32_t start = rand_r(&seed) % HOT, nb = 1 + rand_r(&seed) % 8;

		if (start + nb > HOT)
			nb = HOT - start;
		if (rand_r(&seed) % 2) {
			for (uint32_t b = 0; b < nb; b++) {
				struct stamp s = {id, n, start, nb};

				memset(io.buf + b * BS, (int)(id * 16 + n % 16), BS);
				memcpy(io.buf + b * BS, &s, sizeof(s));
			}
			cr_assert_eq(ts_arb_write(g_sa, start * BS, nb * BS, io.buf, stress_cb, &io), 0);
			cr_assert_eq(stress_wait(&io), 0);
		} else {
			struct stamp st[8];

			cr_assert_eq(ts_arb_read(g_sa, start * BS, nb * BS, io.buf, stress_cb, &io), 0);
			cr_assert_eq(stress_wait(&io), 0);
			for (uint32_t b = 0; b < nb; b++) {
				const uint8_t *blk = io.buf + b * BS;

				memcpy(&st[b], blk, sizeof(st[b]));
				if (!st[b].nblocks)
					continue; /* never written */
				/* the block is whole and is where its write put it */
				if (st[b].start > start + b || start + b >= st[b].start + st[b].nblocks ||
				    blk[BS - 1] != (uint8_t)(st[b].writer * 16 + st[b].seq % 16))
					atomic_fetch_add(&g_torn, 1);
			}
			/*
			 * If block b shows write W and W also covered block c, then c shows W
			 * or a write newer than W. Newer is known for the same writer (seq);
			 * across writers the e2e checker (e2e/rwx) orders them.
			 */
			for (uint32_t b = 0; b < nb; b++) {
				if (!st[b].nblocks)
					continue;
				for (uint32_t c = 0; c < nb; c++) {
					uint32_t blk = start + c;

					if (blk < st[b].start || blk >= st[b].start + st[b].nblocks)
						continue;
					if (!st[c].nblocks ||
					    (st[c].writer == st[b].writer && st[c].seq < st[b].seq))
						atomic_fetch_add(&g_torn, 1);
				}
			}
			atomic_fetch_add(&g_reads_checked, 1);
		}
	}
	pthread_mutex_destroy(&io.mu);
	pthread_cond_destroy(&io.cond);
	return NULL;
}

Test(arbiter_threads, overlapping_stamped_writes_never_torn, .init = setup_async, .fini = teardown,
     .timeout = 120)
{
	pthread_t t[STRESS_THREADS];
	struct ts_arb_stats st;

	cr_assert_eq(ts_arb_open(g_pool, g_vol, &g_sa), 0);
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_create(&t[i], NULL, stress_main, (void *)(uintptr_t)(i + 1));
	for (int i = 0; i < STRESS_THREADS; i++)
		pthread_join(t[i], NULL);
	ts_arb_stats(g_sa, &st);
	cr_assert_eq(atomic_load(&g_torn), 0, "%d torn reads", atomic_load(&g_torn));
	cr_assert_gt(atomic_load(&g_reads_checked), STRESS_THREADS * STRESS_IOS / 4);
	cr_assert_gt(st.waited, 0, "the threads must have contended");
	cr_assert_eq(st.in_flight + st.waiting, 0);
	ts_arb_close(g_sa);
}
