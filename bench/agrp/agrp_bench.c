/* SPDX-License-Identifier: Apache-2.0 */
/*
 * AGRP benchmark (not a test). Three measurements in one run:
 *  1. encode: the AGRP full-stripe write path over null members (writes are
 *     discarded, so what is left is queueing, locking, bitmaps and encode)
 *     against a raw ISA-L ec_encode_data loop over the same buffers; printed
 *     as a ratio (goal >= 0.8).
 *  2. full-stripe sequential writes on file-backed members (MB/s).
 *  3. 4 KiB random writes and reads on file-backed members (IOPS).
 * Usage: agrp_bench [-k K] [-m M] [-c chunk_bytes] [-s member_MiB] [-d dir] [-t seconds]
 * The last line is key=value pairs.
 */
#include <errno.h>
#include <isa-l/erasure_code.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/ec/ec.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/member/test_member.h"

/* ---- null member: reads return zeroes, writes vanish ---- */
static int null_submit(void *ctx, struct ts_member_io *io)
{
	(void)ctx;
	if (io->op == TS_MEMBER_READ)
		memset(io->buf, 0, io->len);
	io->cb(io, 0);
	return 0;
}

static const struct ts_member_ops g_null_ops = { .submit = null_submit };

static struct ts_member *null_member(uint64_t size, uint32_t id)
{
	struct ts_member_info info = { .size = size, .block_size = 4096, .node_id = id };
	struct ts_member *m = NULL;

	memcpy(info.uuid, &id, sizeof(id));
	snprintf(info.name, sizeof(info.name), "null%u", id);
	ts_member_create(&g_null_ops, NULL, &info, &m);
	return m;
}

/* ---- a small async driver with a fixed queue depth ---- */
struct drv {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned inflight;
	int err;
};

static void drv_cb(void *arg, int status)
{
	struct drv *d = arg;

	pthread_mutex_lock(&d->lock);
	d->inflight--;
	if (status)
		d->err = status;
	pthread_cond_signal(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

static void drv_wait_below(struct drv *d, unsigned qd)
{
	pthread_mutex_lock(&d->lock);
	while (d->inflight >= qd)
		pthread_cond_wait(&d->cond, &d->lock);
	d->inflight++;
	pthread_mutex_unlock(&d->lock);
}

static uint64_t g_x = 0x2545F4914F6CDD1Dull;
static uint64_t rnd(void)
{
	g_x ^= g_x << 13;
	g_x ^= g_x >> 7;
	g_x ^= g_x << 17;
	return g_x;
}

/*
 * Run IOs of \p len bytes for \p secs seconds at queue depth \p qd; random
 * block-aligned offsets unless \p seq. Returns IOs done; *elapsed in s.
 */
static uint64_t run(struct ts_agrp *g, int write, int seq, uint64_t len, unsigned qd,
		    double secs, uint8_t *bufs, double *elapsed)
{
	struct drv d = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0 };
	uint64_t size = ts_agrp_size(g), n = 0, pos = 0, t0 = ts_now_ns(), deadline;

	deadline = t0 + (uint64_t)(secs * 1e9);
	while (ts_now_ns() < deadline && !d.err) {
		uint64_t off;
		uint8_t *b = bufs + (n % qd) * len;
		int rc;

		if (seq) {
			if (pos + len > size)
				pos = 0;
			off = pos;
			pos += len;
		} else {
			off = (rnd() % (size / len)) * len;
		}
		drv_wait_below(&d, qd);
		rc = write ? ts_agrp_write(g, off, len, b, drv_cb, &d)
			   : ts_agrp_read(g, off, len, b, drv_cb, &d);
		if (rc) {
			fprintf(stderr, "submit: %s\n", ts_strerror(rc));
			exit(1);
		}
		n++;
	}
	drv_wait_below(&d, 1); /* drain: wait for inflight to reach 0 */
	*elapsed = (double)(ts_now_ns() - t0) / 1e9;
	if (d.err) {
		fprintf(stderr, "io error: %s\n", ts_strerror(d.err));
		exit(1);
	}
	return n;
}

int main(int argc, char **argv)
{
	unsigned k = 4, m = 2, n, opt;
	uint32_t chunk = 64 * 1024;
	uint64_t msize = 256ull << 20;
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	double secs = 3, el;
	struct ts_member *mem[TS_AGRP_MAX_MEMBERS];
	struct ts_agrp *g;
	struct ts_agrp_opts o = { 0 };
	uint8_t *buf, *par[TS_EC_MAX_M] = { 0 }, *dat[TS_EC_MAX_K], *tbl, *a;
	uint64_t kc, ios, stripes = 16;
	double agrp_gbps, raw_gbps, seq_mbps, rw_iops, rr_iops;
	char tmpl[512];

	ts_log_set_level(TS_LOG_WARN);
	while ((opt = (unsigned)getopt(argc, argv, "k:m:c:s:d:t:")) != (unsigned)-1) {
		switch (opt) {
		case 'k': k = (unsigned)atoi(optarg); break;
		case 'm': m = (unsigned)atoi(optarg); break;
		case 'c': chunk = (uint32_t)atoi(optarg); break;
		case 's': msize = (uint64_t)atoll(optarg) << 20; break;
		case 'd': dir = optarg; break;
		case 't': secs = atof(optarg); break;
		default:
			fprintf(stderr, "usage: %s [-k K] [-m M] [-c chunk] [-s member_MiB] [-d dir] [-t s]\n",
				argv[0]);
			return 2;
		}
	}
	n = k + m;
	kc = (uint64_t)k * chunk;
	buf = ts_aligned_alloc(4096, 16 * stripes * kc);
	for (uint64_t i = 0; i < 16 * stripes * kc; i++)
		buf[i] = (uint8_t)(i * 131 + (i >> 12));

	/* 1. AGRP write path over null members (one worker, queue depth 4) and
	 * the raw ISA-L loop, in alternating short trials; the best trial of
	 * each counts, so load from other processes hits both alike. */
	for (unsigned i = 0; i < n; i++)
		mem[i] = null_member(msize, i);
	o.chunk_size = chunk;
	o.nthreads = 1;
	if (ts_agrp_create(mem, n, k, m, &o, &g)) {
		fprintf(stderr, "create failed\n");
		return 1;
	}
	a = malloc((size_t)n * k);
	tbl = malloc((size_t)32 * k * m);
	gf_gen_cauchy1_matrix(a, (int)n, (int)k);
	ec_init_tables((int)k, (int)m, a + (size_t)k * k, tbl);
	for (unsigned p = 0; p < m; p++)
		par[p] = ts_aligned_alloc(64, chunk);
	run(g, 1, 1, stripes * kc, 4, 0.2, buf, &el); /* warm up */
	agrp_gbps = raw_gbps = 0;
	for (unsigned trial = 0; trial < 8; trial++) {
		uint64_t t0, iters = 0, total = stripes * 4; /* the 4 buffers of QD 4 */
		double gbps;

		ios = run(g, 1, 1, stripes * kc, 4, secs / 8, buf, &el);
		gbps = (double)ios * stripes * kc / el / 1e9;
		agrp_gbps = gbps > agrp_gbps ? gbps : agrp_gbps;
		t0 = ts_now_ns();
		while (ts_now_ns() - t0 < (uint64_t)(secs / 8 * 1e9)) {
			uint64_t s = iters % total;

			for (unsigned d = 0; d < k; d++)
				dat[d] = buf + s * kc + (uint64_t)d * chunk;
			ec_encode_data((int)chunk, (int)k, (int)m, tbl, dat, par);
			iters++;
		}
		gbps = (double)iters * kc / ((double)(ts_now_ns() - t0) / 1e9) / 1e9;
		raw_gbps = gbps > raw_gbps ? gbps : raw_gbps;
	}
	ts_agrp_close(g);
	for (unsigned i = 0; i < n; i++)
		ts_member_destroy(mem[i]);

	/* 2-3. file-backed members */
	for (unsigned i = 0; i < n; i++) {
		snprintf(tmpl, sizeof(tmpl), "%s/ts_agrp_bench_%d_%u", dir, (int)getpid(), i);
		mem[i] = tm_file(tmpl, msize, i % 3, i, 0, NULL);
		if (!mem[i]) {
			fprintf(stderr, "cannot create %s: %s\n", tmpl, strerror(errno));
			return 1;
		}
	}
	o.nthreads = 4;
	if (ts_agrp_create(mem, n, k, m, &o, &g)) {
		fprintf(stderr, "create on files failed\n");
		return 1;
	}
	ios = run(g, 1, 1, kc, 8, secs, buf, &el);
	seq_mbps = (double)ios * kc / el / 1e6;
	ios = run(g, 1, 0, 4096, 16, secs, buf, &el);
	rw_iops = (double)ios / el;
	ios = run(g, 0, 0, 4096, 16, secs, buf, &el);
	rr_iops = (double)ios / el;
	ts_agrp_flush_sync(g);
	ts_agrp_close(g);
	for (unsigned i = 0; i < n; i++) {
		ts_member_destroy(mem[i]);
		snprintf(tmpl, sizeof(tmpl), "%s/ts_agrp_bench_%d_%u", dir, (int)getpid(), i);
		unlink(tmpl);
	}

	printf("agrp %u+%u chunk=%u: write-path encode %.2f GB/s vs raw ISA-L %.2f GB/s (ratio %.2f)\n",
	       k, m, chunk, agrp_gbps, raw_gbps, agrp_gbps / raw_gbps);
	printf("files in %s: full-stripe write %.0f MB/s, 4k random write %.0f IOPS, 4k random read %.0f IOPS\n",
	       dir, seq_mbps, rw_iops, rr_iops);
	printf("k=%u m=%u chunk=%u encode_ratio=%.3f agrp_encode_gbps=%.3f raw_encode_gbps=%.3f "
	       "fullstripe_write_mbps=%.0f randwrite_4k_iops=%.0f randread_4k_iops=%.0f\n",
	       k, m, chunk, agrp_gbps / raw_gbps, agrp_gbps, raw_gbps, seq_mbps, rw_iops, rr_iops);
	for (unsigned p = 0; p < m; p++)
		ts_free(par[p]);
	free(a);
	free(tbl);
	ts_free(buf);
	return 0;
}
