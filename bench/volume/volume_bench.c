/* SPDX-License-Identifier: Apache-2.0 */
/*
 * 4 KiB random reads on three volumes of one pool, with 0, 10 and 100
 * snapshots below them (each snapshot followed by random 4 KiB writes over
 * 2% of the volume), measured in the same run, interleaved over several
 * rounds (best round of each kept), printed as ratios to the 0-snapshot
 * volume. The member is the RAM test member, so the figure isolates the
 * volume layer's lookup cost. Last line: key=value.
 *
 * Usage: volume_bench [reads_per_round (default 200000)] [rounds (default 9)]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"

#define BS TS_VOLUME_BLOCK
#define GRAINS 16384ull /* 64 MiB volumes */

static uint64_t g_seed = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	g_seed ^= g_seed << 13;
	g_seed ^= g_seed >> 7;
	g_seed ^= g_seed << 17;
	return g_seed;
}

static int die(const char *what, int rc)
{
	fprintf(stderr, "volume_bench: %s: %s\n", what, ts_strerror(rc));
	exit(1);
}

static void fill(struct ts_volume *v, uint64_t g, uint8_t *buf)
{
	int rc;

	memset(buf, (int)(g & 0xff), BS);
	memcpy(buf, &g, 8);
	rc = ts_volume_write_sync(v, g * BS, BS, buf);
	if (rc)
		die("write", rc);
}

static uint64_t make_volume(struct ts_vpool *p, int snaps)
{
	struct ts_volume *v;
	uint8_t buf[BS];
	uint64_t id, g, sid;
	int s, rc;

	rc = ts_vpool_volume_create(p, "bench", GRAINS * BS, 0, &id);
	if (rc)
		die("create", rc);
	if ((rc = ts_volume_open(p, id, &v)))
		die("open", rc);
	/* write everything in chunks so the base is mapped */
	for (g = 0; g < GRAINS; g++)
		fill(v, g, buf);
	ts_volume_close(v);
	for (s = 0; s < snaps; s++) {
		if ((rc = ts_vpool_snapshot(p, id, "s", 0, &sid)))
			die("snapshot", rc);
		if ((rc = ts_volume_open(p, id, &v)))
			die("open", rc);
		for (g = 0; g < GRAINS / 50; g++)
			fill(v, rnd() % GRAINS, buf);
		ts_volume_close(v);
	}
	return id;
}

static double read_rate(struct ts_vpool *p, uint64_t id, long n)
{
	struct ts_volume *v;
	uint8_t *buf = ts_aligned_alloc(BS, BS);
	uint64_t t0, t1, g;
	long i;
	int rc;

	if (!buf || (rc = ts_volume_open(p, id, &v)))
		die("open", -ENOMEM);
	t0 = ts_now_ns();
	for (i = 0; i < n; i++) {
		g = rnd() % GRAINS;
		rc = ts_volume_read_sync(v, g * BS, BS, buf);
		if (rc)
			die("read", rc);
		if (memcmp(buf, &g, 8)) {
			fprintf(stderr, "volume_bench: bad data at grain %llu\n", (unsigned long long)g);
			exit(1);
		}
	}
	t1 = ts_now_ns();
	ts_volume_close(v);
	ts_free(buf);
	return (double)n * 1e9 / (double)(t1 - t0);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	int rounds = argc > 2 ? atoi(argv[2]) : 9, r, k;
	const int snaps[3] = { 0, 10, 100 };
	double best[3] = { 0, 0, 0 };
	uint64_t ids[3];
	struct ts_member *m;
	struct tmem *ram;
	struct ts_vpool *p;
	struct ts_vpool_stats st;
	int rc;

	if (n <= 0 || rounds <= 0)
		return 2;
	if ((rc = tm_ram_create(512ull << 20, 4096, 0, &m, &ram)))
		die("ram member", rc);
	if ((rc = ts_vpool_format(m)) || (rc = ts_vpool_open(m, &p)))
		die("pool", rc);
	for (k = 0; k < 3; k++)
		ids[k] = make_volume(p, snaps[k]);
	if ((rc = ts_vpool_commit(p)))
		die("commit", rc);
	ts_vpool_stats(p, &st);
	printf("pool: layers=%llu free_blocks=%llu of %llu, reads/round=%ld rounds=%d\n",
	       (unsigned long long)st.layers, (unsigned long long)st.free_blocks,
	       (unsigned long long)st.data_blocks, n, rounds);
	for (r = 0; r < rounds; r++)
		for (k = 0; k < 3; k++) {
			double rate = read_rate(p, ids[(k + r) % 3], n);
			int idx = (k + r) % 3;
			if (rate > best[idx])
				best[idx] = rate;
		}
	for (k = 0; k < 3; k++)
		printf("snapshots=%-3d  %10.0f reads/s  ratio_to_0=%.3f\n", snaps[k], best[k],
		       best[k] / best[0]);
	ts_vpool_close(p);
	ts_member_destroy(m);
	printf("read4k_iops_0=%.0f read4k_iops_10=%.0f read4k_iops_100=%.0f ratio_10=%.3f "
	       "ratio_100=%.3f\n",
	       best[0], best[1], best[2], best[1] / best[0], best[2] / best[0]);
	return 0;
}
