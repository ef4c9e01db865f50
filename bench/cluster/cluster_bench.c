/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Multi-node benchmark (issue 6): an EC 4+2 group against a 3-replica group
 * on the same three hosts, measured in the same run, and heal throughput.
 *
 * Set-up. Three real node daemons (`tessera node`, one process each) listen
 * on 127.0.0.31-33 (port 3260 unless -p), each over one sparse file disk in
 * a temp dir (/dev/shm when it has room, else /tmp; -d to choose). This
 * process is the controller: it opens two groups with ts_cluster_open() over
 * user-mode iSCSI to the nodes,
 *   ec42: k=4 m=2, two fragments per node, member = usable/4;
 *   rep3: k=1 m=2, one fragment per node, member = usable (a 1+m group is
 *         (m+1)-way replication: its parity rows are all ones);
 * both with the same usable size and the default 64 KiB chunk, and drives
 * each through ts_cluster_device() (the group as a struct ts_member) with
 * a closed loop of asynchronous IOs.
 *
 * Workloads, alternating between the groups (the order flips every run) so
 * drift in the load of this shared machine hits both alike; median of the
 * runs: sequential write and read (1 MiB, QD 8), 4 KiB random write and
 * read (QD 32), over the whole usable range, which is filled first. Every
 * 4 KiB block written carries a stamp derived from its offset only, so any
 * later read can be checked, whatever wrote it last: the whole range is
 * verified after the workloads, after the rebuild and after the heal.
 *
 * Heal throughput.
 *  (a) rebuild: node 3 is SIGKILLed, its disk file wiped (truncated to 0
 *      and back) and restarted; the node formats the blank disk and comes
 *      back without its vdisks. ts_cluster_tick() then rebuilds each of its
 *      slots onto a new vdisk (ts_agrp_replace: reconstruct + re-fragment).
 *      Figures: bytes written to the new members / wall time of the tick,
 *      minus the time of a ts_cluster_rejoin() call made just before it
 *      (the tick first offers the lost members back, which costs the
 *      transport's IO timeout per slot before they are given up), and the
 *      status counters (rebuild_bytes / rebuild_rate_bps: the last slot).
 *      Compared with Longhorn's replica rebuild (~37 MB/s; goal 10x).
 *      Before that, the rebuild's data movement is replayed on scratch
 *      vdisks of the same nodes in today's shape and in batched/pipelined
 *      shapes (probe_rebuild_shapes): what the rebuild would reach here.
 *  (b) replica heal: node 2 is SIGKILLed, W MiB are written to each group
 *      (degraded: replicated into the journals on the live nodes), node 2
 *      restarts; once it heartbeats and its sessions had time to reconnect
 *      (2.5 s, above the transport's reconnect backoff cap), the group is
 *      taken back: ts_cluster_rejoin() until every slot is live (resync of
 *      the out-of-date regions; the tick's first step), then
 *      ts_cluster_tick() until the status says "healthy" (verify against
 *      the replicas, reclaim). Figure: W / the sum of both.
 *
 * CPU: the share of a core each process used during the rebuild is printed
 * (from /proc/<pid>/stat), to tell waiting from working.
 *
 * Not a test: nothing asserts on timings. Exit status 1 if the set-up fails
 * or a verification finds a wrong block. Last line: key=value.
 *
 * Usage: cluster_bench [-b tessera] [-s usable_MiB=1000] [-t secs=2] [-r runs=3]
 *                      [-w heal_MiB=128] [-d dir] [-p port=3260] [-k (keep dir)]
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"
#include "dataplane/member/member.h"
#include "control/cluster/cluster.h"
#include "control/registry/registry.h"
#include "dataplane/transport/export.h"
#include "dataplane/transport/transport.h"
#include "e2e/multinode/nodes.h"

#define NNODES 3
#define MIB (1024ull * 1024ull)
#define BLK 4096u
#define SEQ_BS (1024u * 1024u)
#define SEQ_QD 8u
#define RAND_QD 32u
#define META_SLACK (8 * MIB) /* per member: agrp superblocks, bitmaps, rescue slots */
#define USER "tessera-bench"
#define SECRET "cluster-bench-secret"
#define LONGHORN_MBPS 37.0

/* ---- configuration and node processes ---- */

static struct {
	const char *bin;
	char dir[256];
	uint64_t usable, heal_bytes, disk_size;
	double secs;
	unsigned runs;
	uint16_t port;
	bool keep;
	char cluster[37];
	pid_t pid[NNODES + 1];
} g_cfg = { .usable = 1000 * MIB, .heal_bytes = 128 * MIB, .secs = 2.0, .runs = 3, .port = 3260 };

static void node_addr(unsigned id, char *out, size_t len)
{
	snprintf(out, len, "127.0.0.%u", 30 + id);
}

static void node_path(unsigned id, const char *what, char *out, size_t len)
{
	snprintf(out, len, "%s/node%u.%s", g_cfg.dir, id, what);
}

static pid_t start_node(unsigned id)
{
	char addr[16], disk[PATH_MAX], reg[PATH_MAX], log[PATH_MAX];
	struct mn_node_spec spec = { .bin = g_cfg.bin, .id = id, .cluster = g_cfg.cluster,
				     .addr = addr, .port = g_cfg.port, .registry = reg, .disk = disk,
				     .heartbeat_ms = 200, .log = log, .chap_user = USER,
				     .chap_secret = SECRET };

	node_addr(id, addr, sizeof(addr));
	node_path(id, "disk", disk, sizeof(disk));
	node_path(id, "log", log, sizeof(log));
	snprintf(reg, sizeof(reg), "%s/registry", g_cfg.dir);
	return mn_spawn_node(&spec); /* dies with this process */
}

static void stop_node(unsigned id, int sig)
{
	if (g_cfg.pid[id] > 0) {
		kill(g_cfg.pid[id], sig);
		waitpid(g_cfg.pid[id], NULL, 0);
		g_cfg.pid[id] = 0;
	}
}

static int make_disk(unsigned id)
{
	char path[PATH_MAX];
	int fd, rc = 0;

	node_path(id, "disk", path, sizeof(path));
	fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		return -errno;
	/* wipe: every byte gone, the node sees a blank disk and formats it */
	if (ftruncate(fd, 0) || ftruncate(fd, (off_t)g_cfg.disk_size))
		rc = -errno;
	close(fd);
	return rc;
}

/* ---- load generator: a closed loop of async IOs on a struct ts_member ---- */

struct load {
	struct ts_member *dev;
	enum ts_member_op op;
	uint32_t bs;
	bool seq, once, verify;
	uint64_t span, end_ns;
	atomic_uint_fast64_t next, ios, errors, bad;
	atomic_uint active;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct lslot {
	struct ts_member_io io;
	struct load *l;
	uint8_t *buf;
	uint64_t rnd;
};

static uint8_t g_filler[BLK]; /* bytes 16.. of every block */

static void stamp(uint8_t *buf, uint64_t off, uint32_t len)
{
	for (uint32_t b = 0; b < len; b += BLK) {
		uint64_t w[2] = { 0x5453424e43484d4bull ^ (off + b), off + b };

		memcpy(buf + b, w, sizeof(w));
	}
}

static uint64_t check(const uint8_t *buf, uint64_t off, uint32_t len)
{
	uint64_t bad = 0;

	for (uint32_t b = 0; b < len; b += BLK) {
		uint64_t w[2] = { 0x5453424e43484d4bull ^ (off + b), off + b };

		bad += memcmp(buf + b, w, sizeof(w)) || memcmp(buf + b + 16, g_filler + 16, BLK - 16);
	}
	return bad;
}

static void slot_end(struct load *l)
{
	pthread_mutex_lock(&l->lock);
	if (atomic_fetch_sub(&l->active, 1) == 1)
		pthread_cond_signal(&l->cond);
	pthread_mutex_unlock(&l->lock);
}

static void issue(struct lslot *s);

static void load_done(struct ts_member_io *io, int status)
{
	struct lslot *s = io->cb_arg;
	struct load *l = s->l;

	if (status) {
		if (atomic_fetch_add(&l->errors, 1) < 4)
			fprintf(stderr, "io error op=%d off=%llu: %s\n", (int)io->op,
				(unsigned long long)io->offset, ts_strerror(status));
	} else if (l->verify) {
		atomic_fetch_add(&l->bad, check(s->buf, io->offset, (uint32_t)io->len));
	}
	atomic_fetch_add(&l->ios, 1);
	if (!status && (l->once || ts_now_ns() < l->end_ns)) {
		issue(s);
		return;
	}
	slot_end(l);
}

static void issue(struct lslot *s)
{
	struct load *l = s->l;
	uint64_t off;
	int rc;

	if (l->seq) {
		off = atomic_fetch_add(&l->next, l->bs);
		if (l->once && off + l->bs > l->span) {
			slot_end(l);
			return;
		}
		off %= l->span;
	} else {
		s->rnd ^= s->rnd << 13;
		s->rnd ^= s->rnd >> 7;
		s->rnd ^= s->rnd << 17;
		off = (s->rnd % (l->span / l->bs)) * l->bs;
	}
	s->io = (struct ts_member_io){ .op = l->op, .offset = off, .len = l->bs, .buf = s->buf,
				       .cb = load_done, .cb_arg = s };
	if (l->op == TS_MEMBER_WRITE)
		stamp(s->buf, off, l->bs);
	rc = ts_member_submit(l->dev, &s->io);
	if (rc) {
		atomic_fetch_add(&l->errors, 1);
		fprintf(stderr, "submit: %s\n", ts_strerror(rc));
		slot_end(l);
	}
}

struct result {
	double secs, iops, mbps;
	uint64_t errors, bad;
};

/*
 * Run a closed loop of \p qd IOs of \p bs bytes on \p dev over [0, span),
 * sequential (wrapping) or uniformly random, for \p secs seconds (secs <= 0:
 * one sequential pass over the span). Writes stamp every block; \p verify
 * checks every block read.
 */
static struct result run_load(struct ts_member *dev, enum ts_member_op op, uint32_t bs, bool seq,
			      unsigned qd, uint64_t span, double secs, bool verify)
{
	struct load l = { .dev = dev, .op = op, .bs = bs, .seq = seq, .once = secs <= 0,
			  .verify = verify, .span = span };
	struct lslot *slots = calloc(qd, sizeof(*slots));
	struct result r = { 0 };
	uint64_t t0 = ts_now_ns();

	if (!slots)
		return (struct result){ .errors = 1 };
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.cond, NULL);
	l.end_ns = t0 + (uint64_t)(secs * 1e9);
	atomic_store(&l.active, qd);
	for (unsigned i = 0; i < qd; i++) {
		slots[i].l = &l;
		slots[i].rnd = 0x9e3779b97f4a7c15ull * (i + 1) ^ t0;
		slots[i].buf = ts_aligned_alloc(4096, bs);
		if (!slots[i].buf) {
			fprintf(stderr, "out of memory\n");
			exit(1);
		}
		for (uint32_t b = 0; b < bs; b += BLK)
			memcpy(slots[i].buf + b, g_filler, BLK);
	}
	for (unsigned i = 0; i < qd; i++)
		issue(&slots[i]);
	pthread_mutex_lock(&l.lock);
	while (atomic_load(&l.active))
		pthread_cond_wait(&l.cond, &l.lock);
	pthread_mutex_unlock(&l.lock);
	r.secs = (double)(ts_now_ns() - t0) / 1e9;
	r.iops = (double)atomic_load(&l.ios) / r.secs;
	r.mbps = r.iops * bs / 1e6;
	r.errors = atomic_load(&l.errors);
	r.bad = atomic_load(&l.bad);
	for (unsigned i = 0; i < qd; i++)
		ts_free(slots[i].buf);
	free(slots);
	pthread_mutex_destroy(&l.lock);
	pthread_cond_destroy(&l.cond);
	return r;
}

/* ---- the two groups ---- */

enum { EC = 0, REP = 1, NGROUPS = 2 };
static const char *const g_name[NGROUPS] = { "ec42", "rep3" };
static const unsigned g_k[NGROUPS] = { 4, 1 };
static struct ts_cluster *g_cl[NGROUPS];
static bool g_failed;

static int open_group(struct ts_registry *reg, int i)
{
	struct ts_cluster_opts co = { .reg = reg, .k = g_k[i], .m = 2, .chap_user = USER,
				      .chap_secret = SECRET, .io_timeout_ms = 3000 };
	uint64_t size;
	int rc;

	rc = ts_uuid_generate(co.group_uuid);
	if (rc)
		return rc;
	co.member_size = TS_ALIGN_UP(g_cfg.usable / g_k[i] + META_SLACK, MIB);
	co.journal_size = TS_ALIGN_UP(g_cfg.heal_bytes + g_cfg.heal_bytes / 8 + 16 * MIB, MIB);
	rc = ts_cluster_open(&co, &g_cl[i]);
	if (rc) {
		fprintf(stderr, "%s: cluster open: %s\n", g_name[i], ts_strerror(rc));
		if (rc == -EINVAL && co.member_size > (1ull << 30))
			fprintf(stderr, "(a remote member refuses IOs over 1 GiB, and ts_agrp_create "
					"unmaps a member's data area in one IO: use -s 1000 or less)\n");
		return rc;
	}
	size = ts_agrp_size(ts_cluster_agrp(g_cl[i]));
	printf("%s: k=%u m=2 member=%llu MiB x %u, journal=%llu MiB per node, usable=%llu MiB "
	       "(benchmarked: %llu MiB)\n",
	       g_name[i], g_k[i], (unsigned long long)(co.member_size / MIB), g_k[i] + 2,
	       (unsigned long long)(co.journal_size / MIB), (unsigned long long)(size / MIB),
	       (unsigned long long)(g_cfg.usable / MIB));
	if (size < g_cfg.usable) {
		fprintf(stderr, "%s: group smaller than the usable size\n", g_name[i]);
		return -ENOSPC;
	}
	return 0;
}

static struct ts_member *dev(int i)
{
	return ts_cluster_device(g_cl[i]);
}

static void note(const char *what, int i, const struct result *r)
{
	if (r->errors || r->bad) {
		fprintf(stderr, "%s %s: errors=%llu bad_blocks=%llu\n", what, g_name[i],
			(unsigned long long)r->errors, (unsigned long long)r->bad);
		g_failed = true;
	}
}

static void verify_all(const char *when)
{
	for (int i = 0; i < NGROUPS; i++) {
		struct result r = run_load(dev(i), TS_MEMBER_READ, SEQ_BS, true, SEQ_QD, g_cfg.usable, 0,
					   true);

		printf("verify %-13s %s: %llu MiB read at %.0f MB/s, wrong blocks=%llu errors=%llu\n",
		       when, g_name[i], (unsigned long long)(g_cfg.usable / MIB), r.mbps,
		       (unsigned long long)r.bad, (unsigned long long)r.errors);
		note("verify", i, &r);
	}
	fflush(stdout);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct metric {
	const char *name, *unit;
	enum ts_member_op op;
	uint32_t bs;
	bool seq;
	unsigned qd;
	double med[NGROUPS];
};

static struct metric g_metrics[] = {
	{ "seqwrite1m", "MB/s", TS_MEMBER_WRITE, SEQ_BS, true, SEQ_QD, { 0 } },
	{ "seqread1m", "MB/s", TS_MEMBER_READ, SEQ_BS, true, SEQ_QD, { 0 } },
	{ "randwrite4k", "IOPS", TS_MEMBER_WRITE, BLK, false, RAND_QD, { 0 } },
	{ "randread4k", "IOPS", TS_MEMBER_READ, BLK, false, RAND_QD, { 0 } },
};

static void run_metrics(void)
{
	for (size_t mi = 0; mi < TS_ARRAY_SIZE(g_metrics); mi++) {
		struct metric *m = &g_metrics[mi];
		double v[NGROUPS][16];

		for (unsigned r = 0; r < g_cfg.runs; r++) {
			for (int j = 0; j < NGROUPS; j++) {
				int i = (int)(r % 2 ? NGROUPS - 1 - j : j);
				struct result res = run_load(dev(i), m->op, m->bs, m->seq, m->qd, g_cfg.usable,
							     g_cfg.secs, m->op == TS_MEMBER_READ);

				note(m->name, i, &res);
				v[i][r] = m->seq ? res.mbps : res.iops;
			}
		}
		for (int i = 0; i < NGROUPS; i++)
			m->med[i] = median(v[i], g_cfg.runs);
		printf("%-12s qd=%-2u ec42=%.0f %s rep3=%.0f %s ratio=%.2f  (median of %u x %.1f s)\n",
		       m->name, m->qd, m->med[EC], m->unit, m->med[REP], m->unit,
		       m->med[EC] / m->med[REP], g_cfg.runs, g_cfg.secs);
		fflush(stdout);
	}
}


/* ---- the rebuild's data movement, replayed with other shapes ---- */

/*
 * Scratch vdisks on the real nodes (created through the mailbox like
 * members, reached over iSCSI like remote members): k sources placed like
 * the surviving fragments (ec42: two on node 1, two on node 2; rep3: one on
 * node 1) and destinations on node 3. A step reads a run of stripes from
 * every source in parallel, decodes each stripe (ts_ec_decode; the lost
 * roles are data roles, the expensive case) and writes the lost
 * fragment(s). Shapes:
 *   today    one 64 KiB stripe per step, FUA write, one step at a time (what
 *            ts_agrp_replace -> resync_slot -> rebuild_region does);
 *   runs     16 stripes (1 MiB per member) per step, plain writes, one flush
 *            at the end, one step at a time;
 *   runs x4  the same with 4 steps in flight (4 threads);
 *   both x4  ec42 only: runs x4 writing both fragments the lost node held
 *            from the same reads (one pass per node instead of one per slot).
 * The figure is bytes written to the destinations per second: what the
 * rebuild would reach on this machine in each shape.
 */
#define CHUNK (64u * 1024u)
#define PROBE_SIZE (64 * MIB)
#define PROBE_SRC 4u
#define PROBE_DST 2u

struct waiter {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned pending;
	int err;
};

static void waiter_cb(struct ts_member_io *io, int status)
{
	struct waiter *w = io->cb_arg;

	pthread_mutex_lock(&w->lock);
	if (status && !w->err)
		w->err = status;
	if (--w->pending == 0)
		pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}

/* Submit io[i] to mem[i] for every i < n at once, wait for all; first error or 0. */
static int batch_io(struct ts_member *const *mem, struct ts_member_io *io, unsigned n)
{
	struct waiter w = { .pending = n };
	int rc = 0;

	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	for (unsigned i = 0; i < n; i++) {
		io[i].cb = waiter_cb;
		io[i].cb_arg = &w;
		rc = ts_member_submit(mem[i], &io[i]);
		if (rc) {
			pthread_mutex_lock(&w.lock);
			w.pending -= n - i;
			pthread_mutex_unlock(&w.lock);
			break;
		}
	}
	pthread_mutex_lock(&w.lock);
	while (w.pending)
		pthread_cond_wait(&w.cond, &w.lock);
	pthread_mutex_unlock(&w.lock);
	pthread_mutex_destroy(&w.lock);
	pthread_cond_destroy(&w.cond);
	return rc ? rc : w.err;
}

struct proto {
	struct ts_member *src[PROBE_SRC], *dst[PROBE_DST];
	unsigned k, ndst;
	uint32_t run, wflags;
	struct ts_ec *ec;
	uint64_t end_ns;
	atomic_uint_fast64_t next, bytes, steps;
	atomic_int err;
};

static void *proto_worker(void *arg)
{
	struct proto *p = arg;
	const uint64_t len = (uint64_t)p->run * CHUNK, runs = PROBE_SIZE / len;
	const unsigned n = p->k + 2;
	uint8_t *rb = ts_aligned_alloc(4096, (size_t)(p->k + PROBE_DST) * len);

	if (!rb) {
		atomic_store(&p->err, -ENOMEM);
		return NULL;
	}
	memset(rb, 0x5a, (size_t)(p->k + PROBE_DST) * len);
	while (!atomic_load(&p->err) && ts_now_ns() < p->end_ns) {
		uint64_t off = (atomic_fetch_add(&p->next, 1) % runs) * len;
		struct ts_member_io io[PROBE_SRC] = { 0 };
		int rc;

		/* roles 0..ndst-1 are lost and rebuilt into rb; k survivors after them */
		for (unsigned j = 0; j < p->k; j++)
			io[j] = (struct ts_member_io){ .op = TS_MEMBER_READ, .offset = off, .len = len,
						       .buf = rb + (size_t)(PROBE_DST + j) * len };
		rc = batch_io(p->src, io, p->k);
		for (uint32_t t = 0; t < p->run && !rc; t++) {
			uint8_t *frags[PROBE_SRC + PROBE_DST] = { 0 };

			for (unsigned r = 0; r < n; r++) {
				unsigned b = r < p->ndst ? r : PROBE_DST + (r - p->ndst) % p->k;

				frags[r] = rb + (size_t)b * len + (size_t)t * CHUNK;
			}
			rc = ts_ec_decode(p->ec, CHUNK, frags, (1ull << p->ndst) - 1);
		}
		for (unsigned d = 0; d < p->ndst; d++)
			io[d] = (struct ts_member_io){ .op = TS_MEMBER_WRITE, .flags = p->wflags,
						       .offset = off, .len = len,
						       .buf = rb + (size_t)d * len };
		if (!rc)
			rc = batch_io(p->dst, io, p->ndst);
		if (rc) {
			atomic_store(&p->err, rc);
			break;
		}
		atomic_fetch_add(&p->bytes, len * p->ndst);
		atomic_fetch_add(&p->steps, 1);
	}
	ts_free(rb);
	return NULL;
}

/* One shape for \p secs; bytes written per second (MB/s), <0 on error. */
static double proto_run(struct proto *p, uint32_t run, uint32_t wflags, unsigned threads,
			unsigned ndst, double secs, double *us_per_step)
{
	pthread_t th[8];
	uint64_t t0 = ts_now_ns();
	double el;
	unsigned started = 0;

	p->run = run;
	p->wflags = wflags;
	p->ndst = ndst;
	p->end_ns = t0 + (uint64_t)(secs * 1e9);
	atomic_store(&p->bytes, 0);
	atomic_store(&p->steps, 0);
	atomic_store(&p->err, 0);
	for (unsigned i = 0; i < threads && i < 8; i++)
		if (pthread_create(&th[i], NULL, proto_worker, p) == 0)
			started++;
	for (unsigned i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	for (unsigned d = 0; d < ndst && !atomic_load(&p->err) && !(wflags & TS_MEMBER_FUA); d++)
		if (ts_member_rw_sync(p->dst[d], TS_MEMBER_FLUSH, 0, 0, 0, NULL))
			atomic_store(&p->err, -EIO);
	el = (double)(ts_now_ns() - t0) / 1e9;
	if (atomic_load(&p->err) || !started || !atomic_load(&p->steps)) {
		fprintf(stderr, "probe: %s\n", ts_strerror(atomic_load(&p->err)));
		return -1;
	}
	*us_per_step = el * 1e6 * started / (double)atomic_load(&p->steps);
	return (double)atomic_load(&p->bytes) / 1e6 / el;
}

/* A scratch vdisk of PROBE_SIZE on \p node, as a remote member. */
static int scratch_vdisk(struct ts_registry *reg, unsigned node, struct ts_member **out)
{
	struct ts_reg_request req = { .op = TS_REG_CREATE_VDISK, .size = PROBE_SIZE };
	struct ts_transport_opts to = { 0 };
	char iqn[80], url[192], addr[16];
	int rc, st;

	rc = ts_uuid_generate(req.uuid);
	if (rc)
		return rc;
	ts_registry_new_request_id(req.id);
	rc = ts_registry_post_request(reg, node, &req);
	if (rc == 0)
		rc = ts_registry_wait_request(reg, node, req.id, 10000, &st);
	if (rc)
		return rc;
	if (st)
		return st;
	ts_transport_vdisk_iqn(req.uuid, iqn);
	node_addr(node, addr, sizeof(addr));
	snprintf(url, sizeof(url), "iscsi://%s:%u/%s/0", addr, g_cfg.port, iqn);
	to.url = url;
	to.initiator_iqn = "iqn.2026-01.io.tessera:cluster-bench";
	to.chap_user = USER;
	to.chap_secret = SECRET;
	to.node_id = node;
	to.uuid = req.uuid;
	to.size = PROBE_SIZE;
	to.io_timeout_ms = 10000;
	return ts_transport_iscsi_member(&to, out);
}

static double g_proto[NGROUPS][4]; /* MB/s: today, runs, runs x4, both x4 */

static int probe_rebuild_shapes(struct ts_registry *reg)
{
	static const unsigned src_node[PROBE_SRC] = { 1, 1, 2, 2 };
	struct ts_member *src[PROBE_SRC] = { 0 }, *dst[PROBE_DST] = { 0 };
	uint8_t *buf = ts_aligned_alloc(4096, MIB);
	int rc = buf ? 0 : -ENOMEM;

	for (unsigned j = 0; j < PROBE_SRC && !rc; j++)
		rc = scratch_vdisk(reg, src_node[j], &src[j]);
	for (unsigned d = 0; d < PROBE_DST && !rc; d++)
		rc = scratch_vdisk(reg, 3, &dst[d]);
	if (!rc)
		memset(buf, 0xc3, MIB);
	for (unsigned j = 0; j < PROBE_SRC && !rc; j++) /* the sources hold data */
		for (uint64_t off = 0; off < PROBE_SIZE && !rc; off += MIB)
			rc = ts_member_rw_sync(src[j], TS_MEMBER_WRITE, 0, off, MIB, buf);
	for (int i = 0; i < NGROUPS && !rc; i++) {
		/* shape: stripes per step, write flags, steps in flight, fragments written */
		static const uint32_t run[4] = { 1, 16, 16, 16 }, fl[4] = { TS_MEMBER_FUA, 0, 0, 0 };
		static const unsigned thr[4] = { 1, 1, 4, 4 }, nd[4] = { 1, 1, 1, 2 };
		const unsigned nshapes = i == EC ? 4 : 3;
		struct proto p = { .k = g_k[i] };
		double v[4][16], us[4][16];

		memcpy(p.src, src, sizeof(src));
		memcpy(p.dst, dst, sizeof(dst));
		rc = ts_ec_create(g_k[i], 2, &p.ec);
		for (unsigned r = 0; r < g_cfg.runs && !rc; r++)
			for (unsigned sh = 0; sh < nshapes && !rc; sh++) {
				v[sh][r] = proto_run(&p, run[sh], fl[sh], thr[sh], nd[sh], 1.0, &us[sh][r]);
				rc = v[sh][r] < 0 ? -EIO : 0;
			}
		ts_ec_destroy(p.ec);
		if (rc)
			break;
		for (unsigned sh = 0; sh < nshapes; sh++)
			g_proto[i][sh] = median(v[sh], g_cfg.runs);
		printf("rebuild shapes %s (%u source vdisk(s) on nodes 1-2 -> node 3; MB/s written, "
		       "median of %u x 1 s): today %.0f (%.0f us/stripe), 1 MiB runs %.0f, "
		       "1 MiB runs x4 in flight %.0f",
		       g_name[i], g_k[i], g_cfg.runs, g_proto[i][0], median(us[0], g_cfg.runs), g_proto[i][1],
		       g_proto[i][2]);
		if (i == EC)
			printf(", both lost fragments per read x4 %.0f", g_proto[i][3]);
		printf("\n");
	}
	fflush(stdout);
	if (rc)
		fprintf(stderr, "probe: %s\n", ts_strerror(rc));
	for (unsigned j = 0; j < PROBE_SRC; j++)
		ts_member_destroy(src[j]);
	for (unsigned d = 0; d < PROBE_DST; d++)
		ts_member_destroy(dst[d]);
	ts_free(buf);
	return rc;
}

/* CPU seconds (user + system) used so far by process \p pid. */
static double cpu_secs(pid_t pid)
{
	char path[64], line[1024], *p;
	unsigned long ut = 0, stime = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	p = fgets(line, sizeof(line), f) ? strrchr(line, ')') : NULL;
	fclose(f);
	/* after "pid (comm)": state is field 3, utime 14, stime 15 */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut,
			 &stime) != 2)
		return 0;
	return (double)(ut + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void cpu_snapshot(double *v)
{
	v[0] = cpu_secs(getpid());
	for (unsigned i = 1; i <= NNODES; i++)
		v[i] = g_cfg.pid[i] > 0 ? cpu_secs(g_cfg.pid[i]) : 0;
}

/* ---- heal ---- */

struct rebuild_fig {
	double own_mbps, status_mbps, tick_s, rejoin_s;
	uint64_t bytes;
};

static struct rebuild_fig g_rebuild[NGROUPS];

/* Slots of group \p i on node \p id. */
static unsigned slots_on(int i, uint32_t id)
{
	struct ts_cluster_status st;
	unsigned n = 0;

	ts_cluster_status(g_cl[i], &st);
	for (unsigned s = 0; s < st.n; s++)
		n += st.slot_node[s] == id;
	return n;
}

/* Write 1 MiB at 0 to every group: IO to a dead node's members fails them. */
static void touch_all(void)
{
	for (int i = 0; i < NGROUPS; i++) {
		struct result r = run_load(dev(i), TS_MEMBER_WRITE, SEQ_BS, true, 1, SEQ_BS, 0, false);

		note("touch", i, &r);
	}
}

/* Tick until healthy (up to \p max_s); returns seconds, <0 on timeout. */
static double tick_until_healthy(int i, double max_s, double *live_s)
{
	uint64_t t0 = ts_now_ns(), all = (1ull << (g_k[i] + 2)) - 1;
	struct ts_cluster_status st;

	*live_s = -1;
	for (;;) {
		int rc = ts_cluster_tick(g_cl[i]);
		double el = (double)(ts_now_ns() - t0) / 1e9;

		ts_cluster_status(g_cl[i], &st);
		if (st.live_mask == all && *live_s < 0)
			*live_s = el;
		if (!strcmp(st.state, "healthy"))
			return el;
		if (el > max_s) {
			fprintf(stderr, "%s: not healthy after %.0f s: state=%s live=0x%llx rc=%s\n",
				g_name[i], el, st.state, (unsigned long long)st.live_mask,
				ts_strerror(rc));
			return -1;
		}
		usleep(20000);
	}
}

static int bench_rebuild(struct ts_registry *reg)
{
	const unsigned victim = 3;
	uint64_t t0;
	int rc;

	printf("rebuild: kill -9 node %u, wipe its disk, restart it\n", victim);
	fflush(stdout);
	stop_node(victim, SIGKILL);
	rc = make_disk(victim);
	if (rc)
		return rc;
	touch_all(); /* the groups notice the loss */
	t0 = ts_registry_now_ms();
	g_cfg.pid[victim] = start_node(victim);
	if (!mn_wait_nodes(reg, victim, 1, t0 + 1))
		return -ETIMEDOUT;
	for (int i = 0; i < NGROUPS; i++) {
		struct rebuild_fig *f = &g_rebuild[i];
		struct ts_cluster_status st;
		uint64_t t1 = ts_now_ns();
		double live_s, work_s, c0[NNODES + 1], c1[NNODES + 1];

		(void)ts_cluster_rejoin(g_cl[i]); /* lost members: refused after the IO timeout */
		f->rejoin_s = (double)(ts_now_ns() - t1) / 1e9;
		cpu_snapshot(c0);
		t1 = ts_now_ns();
		rc = ts_cluster_tick(g_cl[i]);
		f->tick_s = (double)(ts_now_ns() - t1) / 1e9;
		cpu_snapshot(c1);
		ts_cluster_status(g_cl[i], &st);
		f->bytes = (uint64_t)slots_on(i, victim) * (st.size / st.k);
		f->own_mbps = (double)f->bytes / 1e6 / TS_MAX(f->tick_s - f->rejoin_s, 1e-3);
		f->status_mbps = (double)st.rebuild_rate_bps / 1e6;
		printf("rebuild %s: %u slot(s) on node %u, %llu MiB rebuilt; tick %.2f s (of which "
		       "~%.2f s offering the lost members back) -> %.0f MB/s; status: rebuilds=%llu "
		       "last slot %llu MiB at %.0f MB/s, state=%s\n",
		       g_name[i], slots_on(i, victim), victim, (unsigned long long)(f->bytes / MIB),
		       f->tick_s, f->rejoin_s, f->own_mbps, (unsigned long long)st.rebuilds,
		       (unsigned long long)(st.rebuild_bytes / MIB), f->status_mbps, st.state);
		work_s = TS_MAX(f->tick_s - f->rejoin_s, 1e-3);
		printf("rebuild %s: CPU busy over those %.2f s (100%% = one core): controller %.0f%%, "
		       "node1 %.0f%%, node2 %.0f%%, node3 %.0f%%\n",
		       g_name[i], work_s, 100 * (c1[0] - c0[0]) / work_s,
		       100 * (c1[1] - c0[1]) / work_s, 100 * (c1[2] - c0[2]) / work_s,
		       100 * (c1[3] - c0[3]) / work_s);
		fflush(stdout);
		if (rc < 0 || st.rebuilds == 0) {
			fprintf(stderr, "%s: rebuild failed: %s\n", g_name[i], ts_strerror(rc));
			g_failed = true;
		}
		if (tick_until_healthy(i, 60, &live_s) < 0)
			g_failed = true;
	}
	printf("rebuild vs Longhorn (%.0f MB/s; goal 10x = %.0f MB/s): ec42 %.1fx, rep3 %.1fx\n",
	       LONGHORN_MBPS, 10 * LONGHORN_MBPS, g_rebuild[EC].own_mbps / LONGHORN_MBPS,
	       g_rebuild[REP].own_mbps / LONGHORN_MBPS);
	fflush(stdout);
	return 0;
}

struct heal_fig {
	double write_mbps, live_s, healthy_s, mbps, status_mbps;
	uint64_t replicated, degraded_stripes;
};

static struct heal_fig g_heal[NGROUPS];

static int bench_heal(struct ts_registry *reg)
{
	const unsigned victim = 2;
	uint64_t t0;

	printf("heal: kill -9 node %u, write %llu MiB to each group, restart it\n", victim,
	       (unsigned long long)(g_cfg.heal_bytes / MIB));
	fflush(stdout);
	stop_node(victim, SIGKILL);
	touch_all();
	for (int i = 0; i < NGROUPS; i++) {
		struct result r = run_load(dev(i), TS_MEMBER_WRITE, SEQ_BS, true, SEQ_QD, g_cfg.heal_bytes,
					   0, false);
		struct ts_cluster_status st;

		note("degraded write", i, &r);
		ts_cluster_status(g_cl[i], &st);
		g_heal[i].write_mbps = r.mbps;
		g_heal[i].replicated = st.replicated_bytes;
		g_heal[i].degraded_stripes = st.degraded_stripes;
		printf("degraded %s: %.0f MB/s, state=%s replicated=%llu MiB (copies=%llu) "
		       "unreplicated=%llu degraded_stripes=%llu\n",
		       g_name[i], r.mbps, st.state, (unsigned long long)(st.replicated_bytes / MIB),
		       (unsigned long long)st.replica_copies, (unsigned long long)st.unreplicated_bytes,
		       (unsigned long long)st.degraded_stripes);
		fflush(stdout);
	}
	t0 = ts_registry_now_ms();
	g_cfg.pid[victim] = start_node(victim);
	if (!mn_wait_nodes(reg, victim, 1, t0 + 1))
		return -ETIMEDOUT;
	usleep(2500000); /* the members' sessions reconnect (backoff cap 2 s) */
	for (int i = 0; i < NGROUPS; i++) {
		struct heal_fig *f = &g_heal[i];
		struct ts_cluster_status st;
		struct ts_reg_group rec;

		uint64_t all = (1ull << (g_k[i] + 2)) - 1, t1 = ts_now_ns();
		double unused;

		/* 1. rejoin: resync of the regions the node missed (the tick's first step) */
		while (ts_agrp_live_mask(ts_cluster_agrp(g_cl[i])) != all &&
		       ts_now_ns() - t1 < 60ull * 1000000000ull)
			if (ts_cluster_rejoin(g_cl[i]) == 0)
				usleep(20000);
		f->live_s = (double)(ts_now_ns() - t1) / 1e9;
		/* 2. the rest of the tick: verify against the replicas, reclaim */
		f->healthy_s = tick_until_healthy(i, 120, &unused);
		ts_cluster_status(g_cl[i], &st);
		if (f->healthy_s < 0 || ts_agrp_live_mask(ts_cluster_agrp(g_cl[i])) != all) {
			g_failed = true;
			continue;
		}
		f->healthy_s += f->live_s;
		f->mbps = (double)g_cfg.heal_bytes / 1e6 / f->healthy_s;
		f->status_mbps = (double)st.heal_rate_bps / 1e6;
		/* the verify reads each run from the first journal that answers (see
		 * docs/benchmarking.md): say whether that is the one that missed the writes */
		if (ts_registry_get_group(reg, st.group_uuid, &rec) || !rec.njournals)
			rec.journals[0].node_id = 0;
		printf("heal %s: resync (rejoin) %.2f s + verify/reclaim %.2f s = %.2f s -> %.0f MB/s "
		       "of data written during the outage; status: heals=%llu verify %llu MiB at %.0f "
		       "MB/s; first journal on node %u%s\n",
		       g_name[i], f->live_s, f->healthy_s - f->live_s, f->healthy_s, f->mbps,
		       (unsigned long long)st.heals, (unsigned long long)(st.heal_total_bytes / MIB),
		       f->status_mbps, rec.journals[0].node_id,
		       rec.journals[0].node_id == victim ? " (the restarted one)" : "");
		fflush(stdout);
	}
	return 0;
}

/* ---- main ---- */

static int pick_dir(const char *want)
{
	const char *cands[2] = { "/dev/shm", "/tmp" };
	struct statfs fs;
	struct statvfs vs;

	for (int c = 0; c < 2; c++) {
		const char *d = want ? want : cands[c];

		if (strlen(d) > 200)
			return -ENAMETOOLONG;

		/* room for every disk file written in full */
		if (statvfs(d, &vs) == 0 &&
		    (uint64_t)vs.f_bavail * vs.f_frsize >= NNODES * g_cfg.disk_size + 256 * MIB) {
			snprintf(g_cfg.dir, sizeof(g_cfg.dir), "%s/ts_cbench_XXXXXX", d);
			if (!mkdtemp(g_cfg.dir))
				return -errno;
			printf("disks: %s (%s)\n", g_cfg.dir,
			       statfs(d, &fs) == 0 && fs.f_type == TMPFS_MAGIC ? "tmpfs" : "not tmpfs");
			return 0;
		}
		fprintf(stderr, "%s: not enough room for %u x %llu MiB\n", d, NNODES,
			(unsigned long long)(g_cfg.disk_size / MIB));
		if (want)
			break;
	}
	return -ENOSPC;
}

static void find_bin(const char *argv0_bin)
{
	static char path[PATH_MAX];
	ssize_t n;

	if (argv0_bin) {
		g_cfg.bin = argv0_bin;
		return;
	}
	n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	if (n > 0) {
		path[n] = '\0';
		char *slash = strrchr(path, '/');

		if (slash) {
			strcpy(slash + 1, "tessera");
			g_cfg.bin = path;
			return;
		}
	}
	g_cfg.bin = "tessera";
}

static void usage(void)
{
	fprintf(stderr, "usage: cluster_bench [-b tessera] [-s usable_MiB] [-t secs] [-r runs] "
			"[-w heal_MiB] [-d dir] [-p port] [-k]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *bin = NULL, *dir = NULL;
	struct ts_registry *reg = NULL;
	char path[PATH_MAX + 32];
	uint64_t t0;
	int opt, rc = 0;

	while ((opt = getopt(argc, argv, "b:s:t:r:w:d:p:k")) != -1) {
		switch (opt) {
		case 'b': bin = optarg; break;
		case 's': g_cfg.usable = strtoull(optarg, NULL, 10) * MIB; break;
		case 't': g_cfg.secs = atof(optarg); break;
		case 'r': g_cfg.runs = (unsigned)atoi(optarg); break;
		case 'w': g_cfg.heal_bytes = strtoull(optarg, NULL, 10) * MIB; break;
		case 'd': dir = optarg; break;
		case 'p': g_cfg.port = (uint16_t)atoi(optarg); break;
		case 'k': g_cfg.keep = true; break;
		default: usage();
		}
	}
	if (g_cfg.usable < 64 * MIB || g_cfg.usable % (4 * MIB) || !g_cfg.runs || g_cfg.runs > 16 || g_cfg.secs <= 0 ||
	    !g_cfg.heal_bytes || g_cfg.heal_bytes > g_cfg.usable || !g_cfg.port)
		usage();
	find_bin(bin);
	if (access(g_cfg.bin, X_OK)) {
		fprintf(stderr, "no tessera binary at %s (-b PATH)\n", g_cfg.bin);
		return 1;
	}
	if (!mn_addr_bindable("127.0.0.32")) {
		fprintf(stderr, "cannot bind 127.0.0.32\n");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!getenv("TS_LOG_LEVEL"))
		ts_log_set_level(TS_LOG_ERROR); /* the outages below are on purpose */
	for (unsigned b = 0; b < BLK; b++)
		g_filler[b] = (uint8_t)(b * 131u + 7u);
	/* per node: 2 ec42 members, 1 rep3 member, 2 journals, the probe's vdisks, PEM metadata */
	g_cfg.disk_size = 2 * TS_ALIGN_UP(g_cfg.usable / 4 + META_SLACK, MIB) +
		      TS_ALIGN_UP(g_cfg.usable + META_SLACK, MIB) +
		      2 * TS_ALIGN_UP(g_cfg.heal_bytes + g_cfg.heal_bytes / 8 + 16 * MIB, MIB) + 2 * PROBE_SIZE +
		      128 * MIB;
	rc = pick_dir(dir);
	if (rc)
		return 1;
	{
		uint8_t cu[16];

		rc = ts_uuid_generate(cu);
		ts_uuid_format(cu, g_cfg.cluster);
	}
	for (unsigned i = 1; i <= NNODES && rc == 0; i++)
		rc = make_disk(i);
	snprintf(path, sizeof(path), "%s/registry", g_cfg.dir);
	if (rc == 0)
		rc = ts_registry_dir_open(path, &reg);
	if (rc) {
		fprintf(stderr, "set-up: %s\n", ts_strerror(rc));
		goto out;
	}
	printf("nodes: %s node on 127.0.0.31-33:%u, disk files of %llu MiB (sparse), load "
	       "average at start: ",
	       g_cfg.bin, g_cfg.port, (unsigned long long)(g_cfg.disk_size / MIB));
	{
		double la[3];

		if (getloadavg(la, 3) == 3)
			printf("%.1f %.1f %.1f\n", la[0], la[1], la[2]);
		else
			printf("?\n");
	}
	t0 = ts_registry_now_ms();
	for (unsigned i = 1; i <= NNODES; i++)
		g_cfg.pid[i] = start_node(i);
	if (!mn_wait_nodes(reg, 0, NNODES, t0)) {
		fprintf(stderr, "nodes did not register (logs: %s/node*.log)\n", g_cfg.dir);
		rc = -ETIMEDOUT;
		goto out;
	}
	for (int i = 0; i < NGROUPS && rc == 0; i++)
		rc = open_group(reg, i);
	if (rc)
		goto out;
	for (int i = 0; i < NGROUPS; i++) {
		struct result r = run_load(dev(i), TS_MEMBER_WRITE, SEQ_BS, true, SEQ_QD, g_cfg.usable, 0,
					   false);

		note("fill", i, &r);
		printf("fill %s: %llu MiB at %.0f MB/s\n", g_name[i],
		       (unsigned long long)(g_cfg.usable / MIB), r.mbps);
	}
	fflush(stdout);
	run_metrics();
	verify_all("after load");
	if (probe_rebuild_shapes(reg))
		g_failed = true;
	rc = bench_rebuild(reg);
	if (rc == 0)
		verify_all("after rebuild");
	if (rc == 0)
		rc = bench_heal(reg);
	if (rc == 0)
		verify_all("after heal");
	if (rc)
		fprintf(stderr, "heal phase: %s\n", ts_strerror(rc));
	printf("usable_mib=%llu", (unsigned long long)(g_cfg.usable / MIB));
	for (size_t mi = 0; mi < TS_ARRAY_SIZE(g_metrics); mi++)
		printf(" %s_ec42=%.0f %s_rep3=%.0f %s_ratio=%.2f", g_metrics[mi].name,
		       g_metrics[mi].med[EC], g_metrics[mi].name, g_metrics[mi].med[REP],
		       g_metrics[mi].name, g_metrics[mi].med[EC] / g_metrics[mi].med[REP]);
	for (int i = 0; i < NGROUPS; i++)
		printf(" rebuild_mbps_%s=%.0f", g_name[i], g_rebuild[i].own_mbps);
	printf(" rebuild_vs_longhorn_ec42=%.2f", g_rebuild[EC].own_mbps / LONGHORN_MBPS);
	for (int i = 0; i < NGROUPS; i++)
		printf(" shape_today_%s=%.0f shape_runs_%s=%.0f shape_runs_x4_%s=%.0f", g_name[i],
		       g_proto[i][0], g_name[i], g_proto[i][1], g_name[i], g_proto[i][2]);
	printf(" shape_both_x4_ec42=%.0f", g_proto[EC][3]);
	for (int i = 0; i < NGROUPS; i++)
		printf(" heal_mbps_%s=%.0f", g_name[i], g_heal[i].mbps);
	printf(" ok=%s\n", rc == 0 && !g_failed ? "yes" : "no");
out:
	for (int i = 0; i < NGROUPS; i++)
		ts_cluster_close(g_cl[i]);
	for (unsigned i = 1; i <= NNODES; i++)
		stop_node(i, SIGTERM);
	ts_registry_close(reg);
	if (!g_cfg.keep && g_cfg.dir[0]) {
		snprintf(path, sizeof(path), "rm -rf '%s'", g_cfg.dir);
		if (system(path))
			fprintf(stderr, "could not remove %s\n", g_cfg.dir);
	} else if (g_cfg.dir[0]) {
		printf("kept %s\n", g_cfg.dir);
	}
	return rc == 0 && !g_failed ? 0 : 1;
}
