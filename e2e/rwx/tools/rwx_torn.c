/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ts-rwx-torn: a multi-initiator torn-write detector for one iSCSI volume.
 *
 * Load. One iSCSI session (libiscsi, asynchronous, --qd commands in flight)
 * on a small hot region of the volume: random multi-block WRITE(16)s and
 * READ(16)s of 1..--max-blocks blocks, so IOs of this process and of every
 * other process running against the same volume overlap all the time. Each
 * process has its own --writer id; every block it writes carries a stamp
 * (magic, writer, sequence number, the write's first block and length, the
 * block's index in it) and a fill derived from the stamp, so any block read
 * back names the one write it came from, and a block mixing two writes (or
 * damaged) fails its fill check.
 *
 * What a read proves. If a read shows write W at block x and write V != W at
 * block y, and W also covered y, then V reached y after W did: V came after
 * W in the order the volume applied them ("W before V"). A zero block where
 * W also wrote means W's data vanished from it (counted as torn at once).
 * If V also covered x, the same read proves "V before W" too: that read
 * is torn (it saw part of W and part of V). Every such pair is appended to
 * the --edges log as (W, V). If the volume applies each write atomically and
 * each read sees one state of its range, all those facts, from every read of
 * every process, fit one serial order: the graph of edges has no cycle.
 * `--check LOG...` builds the graph of every process's log and looks for a
 * cycle (Kahn's algorithm): a cycle is a torn read that no single read could
 * show on its own.
 *
 * `--selftest` runs the checks on fabricated reads (whole, torn in one read,
 * torn across two reads, a block mixing two writes, a lost block) and exits
 * non-zero unless every fabricated fault is caught and the clean case passes.
 *
 * Usage:
 *   ts-rwx-torn --writer N --ios N [--qd Q] [--hot B] [--max-blocks M]
 *               [--read-pct P] [--seed S] [--initiator IQN] --edges FILE URL
 *   ts-rwx-torn --check FILE...
 *   ts-rwx-torn --selftest
 * Output: one summary line `writer=N ios=.. reads=.. writes=.. torn=..
 * edges=.. iops=..`; `--check`: `writes=.. edges=.. cyclic=..`. Exit 0 iff
 * nothing torn (and for --check, no cycle).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#define BLK 4096u
#define MAGIC 0x5453525758544f52ull /* "TSRWXTOR" */
#define MAXB 64
#define IO_TIMEOUT_S 60.0

struct stamp {
	uint64_t magic;
	uint32_t writer, seq;
	uint64_t start;
	uint32_t nblocks, idx;
};

static uint64_t wid(uint32_t writer, uint32_t seq)
{
	return (uint64_t)writer << 32 | seq;
}

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void fill_block(uint8_t *b, const struct stamp *s)
{
	uint64_t st = wid(s->writer, s->seq) * 31 + s->idx;

	memcpy(b, s, sizeof(*s));
	for (size_t o = sizeof(*s); o < BLK; o += 8) {
		uint64_t v = splitmix(&st);

		memcpy(b + o, &v, 8);
	}
}

/* 1: a whole block of a write that covers \p lba; 0: all zero; -1: damaged or foreign. */
static int decode_block(const uint8_t *b, uint64_t lba, struct stamp *out)
{
	static uint8_t want[BLK];
	struct stamp s;
	size_t i;

	memcpy(&s, b, sizeof(s));
	if (s.magic != MAGIC) {
		for (i = 0; i < BLK && !b[i]; i++)
			;
		return i == BLK ? 0 : -1;
	}
	if (!s.nblocks || s.nblocks > MAXB || s.idx >= s.nblocks || s.start + s.idx != lba)
		return -1;
	fill_block(want, &s);
	if (memcmp(want, b, BLK))
		return -1;
	*out = s;
	return 1;
}

static bool covers(const struct stamp *s, uint64_t lba)
{
	return lba >= s->start && lba < s->start + s->nblocks;
}

/* ---- the edge log ---- */

struct edges {
	FILE *f;        /* the log, or NULL: keep them in mem (self-test) */
	uint64_t n;
	uint64_t mem[64];
};

static int edge_put(struct edges *e, uint64_t before, uint64_t after)
{
	uint64_t p[2] = {before, after};

	if (e->f && fwrite(p, sizeof(p), 1, e->f) != 1)
		return -1;
	if (!e->f && 2 * e->n + 2 <= 64) {
		e->mem[2 * e->n] = before;
		e->mem[2 * e->n + 1] = after;
	}
	e->n++;
	return 0;
}

/*
 * Check one read of \p n blocks at \p lba. Returns the number of faults it
 * proves on its own (0: consistent so far); appends its order facts to \p e.
 */
static int check_read(const uint8_t *buf, uint64_t lba, uint32_t n, struct edges *e)
{
	static uint64_t facts[MAXB * MAXB][2];
	struct stamp s[MAXB];
	int kind[MAXB], faults = 0;
	uint32_t nfacts = 0;

	for (uint32_t i = 0; i < n; i++) {
		kind[i] = decode_block(buf + (size_t)i * BLK, lba + i, &s[i]);
		if (kind[i] < 0)
			faults++;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (kind[i] != 1)
			continue;
		for (uint32_t j = 0; j < n; j++) {
			uint64_t wi, wj;

			if (j == i || kind[j] < 0 || !covers(&s[i], lba + j))
				continue;
			if (kind[j] == 0) {
				faults++; /* W wrote j too, yet j reads as never written */
				continue;
			}
			wi = wid(s[i].writer, s[i].seq);
			wj = wid(s[j].writer, s[j].seq);
			if (wi == wj)
				continue;
			if (covers(&s[j], lba + i) && i < j)
				faults++; /* each overwrote the other: a mix of two writes */
			bool seen = false; /* log each fact once per read */
			for (uint32_t k = 0; k < nfacts && !seen; k++)
				seen = facts[k][0] == wi && facts[k][1] == wj;
			if (seen)
				continue;
			facts[nfacts][0] = wi;
			facts[nfacts][1] = wj;
			nfacts++;
			if (edge_put(e, wi, wj))
				return -1000;
		}
	}
	return faults;
}

/* ---- the checker: a cycle in the union of every log ---- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static size_t index_of(const uint64_t *ids, size_t n, uint64_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (ids[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Returns the number of writes on or behind a cycle (0: acyclic), or -1. */
static long find_cycles(const uint64_t *pairs, size_t ne, size_t *nwrites)
{
	uint64_t *ids = malloc(sizeof(*ids) * (2 * ne + 1));
	size_t n = 0, *start = NULL, *adj = NULL, *indeg = NULL, *queue = NULL, *fillp = NULL;
	long left = -1;

	if (!ids)
		return -1;
	for (size_t i = 0; i < 2 * ne; i++)
		ids[i] = pairs[i];
	qsort(ids, 2 * ne, sizeof(*ids), cmp_u64);
	for (size_t i = 0; i < 2 * ne; i++)
		if (!n || ids[n - 1] != ids[i])
			ids[n++] = ids[i];
	*nwrites = n;
	start = calloc(n + 1, sizeof(*start));
	fillp = calloc(n + 1, sizeof(*fillp));
	indeg = calloc(n + 1, sizeof(*indeg));
	queue = calloc(n + 1, sizeof(*queue));
	adj = calloc(ne + 1, sizeof(*adj));
	if (!start || !fillp || !indeg || !queue || !adj)
		goto out;
	for (size_t i = 0; i < ne; i++) {
		start[index_of(ids, n, pairs[2 * i]) + 1]++;
		indeg[index_of(ids, n, pairs[2 * i + 1])]++;
	}
	for (size_t i = 0; i < n; i++)
		start[i + 1] += start[i];
	memcpy(fillp, start, sizeof(*start) * (n + 1));
	for (size_t i = 0; i < ne; i++)
		adj[fillp[index_of(ids, n, pairs[2 * i])]++] = index_of(ids, n, pairs[2 * i + 1]);
	size_t qh = 0, qt = 0, done = 0;

	for (size_t i = 0; i < n; i++)
		if (!indeg[i])
			queue[qt++] = i;
	while (qh < qt) {
		size_t u = queue[qh++];

		done++;
		for (size_t k = start[u]; k < start[u + 1]; k++)
			if (--indeg[adj[k]] == 0)
				queue[qt++] = adj[k];
	}
	left = (long)(n - done);
out:
	free(ids);
	free(start);
	free(fillp);
	free(indeg);
	free(queue);
	free(adj);
	return left;
}

static int run_check(int nfiles, char **files)
{
	uint64_t *pairs = NULL;
	size_t ne = 0, cap = 0, nwrites = 0;
	long cyc;

	for (int f = 0; f < nfiles; f++) {
		FILE *fp = fopen(files[f], "rb");
		uint64_t p[2];

		if (!fp) {
			fprintf(stderr, "check: %s: %s\n", files[f], strerror(errno));
			free(pairs);
			return 2;
		}
		while (fread(p, sizeof(p), 1, fp) == 1) {
			if (ne == cap) {
				uint64_t *np;

				cap = cap ? cap * 2 : 1 << 16;
				np = realloc(pairs, cap * 2 * sizeof(*pairs));
				if (!np) {
					fclose(fp);
					free(pairs);
					return 2;
				}
				pairs = np;
			}
			pairs[2 * ne] = p[0];
			pairs[2 * ne + 1] = p[1];
			ne++;
		}
		fclose(fp);
	}
	cyc = ne ? find_cycles(pairs, ne, &nwrites) : 0;
	free(pairs);
	if (cyc < 0) {
		fprintf(stderr, "check: out of memory\n");
		return 2;
	}
	printf("writes=%zu edges=%zu cyclic=%ld\n", nwrites, ne, cyc);
	return cyc ? 1 : 0;
}

/* ---- self-test on fabricated reads ---- */

static void put_write(uint8_t *img, uint32_t writer, uint32_t seq, uint64_t start, uint32_t nb)
{
	for (uint32_t i = 0; i < nb; i++) {
		struct stamp s = {MAGIC, writer, seq, start, nb, i};

		fill_block(img + (start + i) * BLK, &s);
	}
}

static int selftest(void)
{
	static uint8_t img[16 * BLK], img2[16 * BLK];
	struct edges e = {0};
	size_t nw;
	int bad = 0, f;

	/* clean: W1 [0,8), then W2 [4,12) over it; a read of [0,12) is whole */
	memset(img, 0, sizeof(img));
	put_write(img, 1, 1, 0, 8);
	put_write(img, 2, 1, 4, 8);
	f = check_read(img, 0, 12, &e);
	if (f != 0 || e.n != 1) {
		fprintf(stderr, "selftest: clean read: faults=%d edges=%" PRIu64 "\n", f, e.n);
		bad++;
	}
	/* torn in one read: W1 and W2 both cover [0,8); blocks 0-3 from W2, 4-7 from W1 */
	put_write(img, 1, 2, 0, 8);
	put_write(img2, 2, 2, 0, 8);
	memcpy(img, img2, 4 * BLK);
	if (check_read(img, 0, 8, &e) == 0) {
		fprintf(stderr, "selftest: a read mixing two whole-range writes passed\n");
		bad++;
	}
	/* torn across reads: read 1 proves W1 before W2, read 2 proves W2 before W1 */
	e = (struct edges){0};
	memset(img, 0, sizeof(img));
	put_write(img, 1, 3, 0, 2); /* W1 covers 0,1 */
	put_write(img, 2, 3, 1, 2); /* W2 covers 1,2: read [0,2) sees W1@0, W2@1: W1 before W2 */
	f = check_read(img, 0, 2, &e);
	put_write(img, 1, 3, 0, 2); /* as if W1 landed after W2: read [1,3) sees W1@1, W2@2: W2 before W1 */
	f += check_read(img + BLK, 1, 2, &e);
	if (f != 0 || e.n != 2) {
		fprintf(stderr, "selftest: cross-read case: faults=%d edges=%" PRIu64 "\n", f, e.n);
		bad++;
	}
	if (find_cycles(e.mem, 2, &nw) <= 0) {
		fprintf(stderr, "selftest: a cycle across two reads was not found\n");
		bad++;
	}
	if (find_cycles(e.mem, 1, &nw) != 0) {
		fprintf(stderr, "selftest: one edge reported as a cycle\n");
		bad++;
	}
	/* a block mixing two writes (sector-level tear) */
	memset(img, 0, sizeof(img));
	put_write(img, 1, 4, 0, 1);
	put_write(img2, 2, 4, 0, 1);
	memcpy(img + 2048, img2 + 2048, 2048);
	if (check_read(img, 0, 1, &e) == 0) {
		fprintf(stderr, "selftest: a block mixing two writes passed\n");
		bad++;
	}
	/* a lost block: W covers [0,4) but block 2 reads as zero */
	memset(img, 0, sizeof(img));
	put_write(img, 1, 5, 0, 4);
	memset(img + 2 * BLK, 0, BLK);
	if (check_read(img, 0, 4, &e) == 0) {
		fprintf(stderr, "selftest: a lost block passed\n");
		bad++;
	}
	printf("selftest: %s\n", bad ? "FAILED" : "ok (clean passes; torn, cross-read cycle, mixed block, lost block caught)");
	return bad ? 1 : 0;
}

/* ---- the load ---- */

struct lane {
	struct run *r;
	struct scsi_task *task;
	bool busy, write;
	uint64_t lba;
	uint32_t n, seq;
	uint8_t *buf;
};

struct run {
	struct iscsi_context *ctx;
	int lun;
	uint32_t writer, seq, hot, maxb, read_pct;
	uint64_t rng, target, issued, done, reads, writes, torn;
	struct edges e;
	const char *err;
};

static void io_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct lane *l = private_data;
	struct run *r = l->r;
	struct scsi_task *t = command_data;

	(void)iscsi;
	l->busy = false;
	l->task = NULL;
	if (status != SCSI_STATUS_GOOD) {
		r->err = status == SCSI_STATUS_RESERVATION_CONFLICT ? "RESERVATION CONFLICT" :
			 iscsi_get_error(r->ctx);
		scsi_free_scsi_task(t);
		return;
	}
	r->done++;
	if (l->write) {
		r->writes++;
	} else {
		int f;

		r->reads++;
		if (!t->datain.data || t->datain.size != (int)(l->n * BLK)) {
			r->err = "short read";
		} else {
			f = check_read(t->datain.data, l->lba, l->n, &r->e);
			if (f < 0)
				r->err = "edge log write failed";
			else
				r->torn += (uint64_t)(f > 0);
		}
	}
	scsi_free_scsi_task(t);
}

static int issue(struct lane *l)
{
	struct run *r = l->r;
	uint64_t x = splitmix(&r->rng);

	l->lba = x % r->hot;
	l->n = 1 + (uint32_t)((x >> 20) % r->maxb);
	if (l->lba + l->n > r->hot)
		l->n = (uint32_t)(r->hot - l->lba);
	l->write = (x >> 40) % 100 >= r->read_pct;
	if (l->write) {
		l->seq = ++r->seq;
		for (uint32_t i = 0; i < l->n; i++) {
			struct stamp s = {MAGIC, r->writer, l->seq, l->lba, l->n, i};

			fill_block(l->buf + (size_t)i * BLK, &s);
		}
		l->task = iscsi_write16_task(r->ctx, r->lun, l->lba, l->buf, l->n * BLK, BLK, 0, 0, 0, 0,
					     0, io_done, l);
	} else {
		l->task = iscsi_read16_task(r->ctx, r->lun, l->lba, l->n * BLK, BLK, 0, 0, 0, 0, 0,
					    io_done, l);
	}
	if (!l->task)
		return -1;
	l->busy = true;
	r->issued++;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: ts-rwx-torn --writer N --ios N [--qd Q] [--hot B] [--max-blocks M] "
			"[--read-pct P] [--seed S] [--initiator IQN] --edges FILE URL\n"
			"       ts-rwx-torn --check FILE...\n       ts-rwx-torn --selftest\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"writer", 1, 0, 'w'}, {"ios", 1, 0, 'n'}, {"qd", 1, 0, 'q'},
		{"hot", 1, 0, 'h'}, {"max-blocks", 1, 0, 'm'}, {"read-pct", 1, 0, 'r'},
		{"seed", 1, 0, 's'}, {"initiator", 1, 0, 'i'}, {"edges", 1, 0, 'e'},
		{"check", 0, 0, 'c'}, {"selftest", 0, 0, 'T'}, {0, 0, 0, 0},
	};
	struct run r = {.hot = 64, .maxb = 16, .read_pct = 50};
	const char *initiator = "iqn.2026-12.io.tessera:rwx-torn", *edges = NULL;
	unsigned qd = 8;
	uint64_t seed = 0;
	bool check = false;
	struct iscsi_url *u = NULL;
	struct lane lanes[64];
	double t0, dt, last;
	uint64_t seen;
	int c, rc = 1;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'w': r.writer = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'n': r.target = strtoull(optarg, NULL, 0); break;
		case 'q': qd = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'h': r.hot = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'm': r.maxb = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'r': r.read_pct = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'i': initiator = optarg; break;
		case 'e': edges = optarg; break;
		case 'c': check = true; break;
		case 'T': return selftest();
		default: usage(); return 2;
		}
	}
	if (check)
		return optind < argc ? run_check(argc - optind, argv + optind) : (usage(), 2);
	if (optind + 1 != argc || !r.writer || !r.target || !edges || !qd || qd > 64 || !r.hot ||
	    !r.maxb || r.maxb > MAXB || r.read_pct > 100) {
		usage();
		return 2;
	}
	r.rng = seed ? seed : (uint64_t)time(NULL) ^ ((uint64_t)r.writer << 40);
	r.e.f = fopen(edges, "wb");
	if (!r.e.f) {
		fprintf(stderr, "rwx-torn: %s: %s\n", edges, strerror(errno));
		return 2;
	}
	memset(lanes, 0, sizeof(lanes));
	for (unsigned i = 0; i < qd; i++) {
		lanes[i].r = &r;
		lanes[i].buf = malloc((size_t)MAXB * BLK);
		if (!lanes[i].buf)
			goto out;
	}
	r.ctx = iscsi_create_context(initiator);
	u = r.ctx ? iscsi_parse_full_url(r.ctx, argv[optind]) : NULL;
	if (!u) {
		fprintf(stderr, "rwx-torn: bad URL %s: %s\n", argv[optind],
			r.ctx ? iscsi_get_error(r.ctx) : "no memory");
		goto out;
	}
	r.lun = u->lun;
	iscsi_set_targetname(r.ctx, u->target);
	iscsi_set_session_type(r.ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(r.ctx, ISCSI_HEADER_DIGEST_NONE);
	if (u->user[0])
		iscsi_set_initiator_username_pwd(r.ctx, u->user, u->passwd);
	iscsi_set_noautoreconnect(r.ctx, 1); /* a lost session is a failure here, not a retry loop */
	if (iscsi_full_connect_sync(r.ctx, u->portal, u->lun)) {
		fprintf(stderr, "rwx-torn: login to %s: %s\n", u->portal, iscsi_get_error(r.ctx));
		goto out;
	}
	t0 = now_s();
	last = t0;
	seen = 0;
	while (!r.err && r.done < r.target) {
		struct pollfd pfd;
		double t = now_s();

		if (r.done != seen) {
			seen = r.done;
			last = t;
		} else if (t - last > IO_TIMEOUT_S) {
			r.err = "no IO completed for 60 s";
			break;
		}

		for (unsigned i = 0; i < qd && !r.err; i++)
			if (!lanes[i].busy && r.issued < r.target && issue(&lanes[i]))
				r.err = iscsi_get_error(r.ctx);
		pfd.fd = iscsi_get_fd(r.ctx);
		pfd.events = (short)iscsi_which_events(r.ctx);
		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
			r.err = strerror(errno);
			break;
		}
		if (pfd.revents & (POLLHUP | POLLERR | POLLNVAL))
			r.err = "connection lost";
		else if (iscsi_service(r.ctx, pfd.revents) < 0)
			r.err = iscsi_get_error(r.ctx);
	}
	dt = now_s() - t0;
	if (fflush(r.e.f))
		r.err = "edge log write failed";
	printf("writer=%u ios=%" PRIu64 " reads=%" PRIu64 " writes=%" PRIu64 " torn=%" PRIu64
	       " edges=%" PRIu64 " iops=%.0f%s%s\n",
	       r.writer, r.done, r.reads, r.writes, r.torn, r.e.n, dt > 0 ? r.done / dt : 0.0,
	       r.err ? " error=" : "", r.err ? r.err : "");
	rc = r.err || r.torn ? 1 : 0;
	iscsi_logout_sync(r.ctx);
out:
	if (u)
		iscsi_destroy_url(u);
	if (r.ctx)
		iscsi_destroy_context(r.ctx);
	for (unsigned i = 0; i < qd; i++)
		free(lanes[i].buf);
	fclose(r.e.f);
	return rc;
}
