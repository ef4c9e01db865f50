/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Remote member vs local member, same run: 4 KiB random writes and reads at
 * a fixed queue depth on one LDM vdisk (file-backed PEM in a temp dir),
 * reached (a) directly through the LDM member adapter and (b) through the
 * node's own iSCSI export and a remote member (libiscsi, loopback, CHAP).
 * Alternating trials, best of each. Prints IOPS and the remote/local ratio;
 * the last line is key=value.
 *
 * Usage: transport_bench [seconds_per_trial=2] [qd=32] [trials=3]
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/ldm/ldm.h"
#include "dataplane/pem/pem.h"
#include "dataplane/transport/export.h"
#include "dataplane/transport/transport.h"

#define BS 4096u
#define VD_SIZE (256ull << 20)

struct run {
	struct ts_member *m;
	enum ts_member_op op;
	uint64_t end_ns;
	atomic_uint_fast64_t done;
	atomic_uint active, errors;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

struct slot {
	struct ts_member_io io;
	struct run *r;
	uint8_t *buf;
	unsigned seed;
};

static void issue(struct slot *s)
{
	struct run *r = s->r;

	s->io = (struct ts_member_io){ .op = r->op, .len = BS, .buf = s->buf, .cb = s->io.cb,
				       .cb_arg = s };
	s->io.offset = (uint64_t)(rand_r(&s->seed) % (unsigned)((VD_SIZE - (1u << 20)) / BS)) * BS +
		       (1u << 20);
	if (ts_member_submit(r->m, &s->io) == 0)
		return;
	atomic_fetch_add(&r->errors, 1);
	pthread_mutex_lock(&r->lock);
	if (atomic_fetch_sub(&r->active, 1) == 1)
		pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static void done(struct ts_member_io *io, int status)
{
	struct slot *s = io->cb_arg;
	struct run *r = s->r;

	if (status)
		atomic_fetch_add(&r->errors, 1);
	atomic_fetch_add(&r->done, 1);
	if (!status && ts_now_ns() < r->end_ns) {
		issue(s);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (atomic_fetch_sub(&r->active, 1) == 1)
		pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->lock);
}

static double measure(struct ts_member *m, enum ts_member_op op, unsigned qd, double secs)
{
	struct run r = { .m = m, .op = op };
	struct slot *slots = calloc(qd, sizeof(*slots));
	uint64_t t0 = ts_now_ns();

	pthread_mutex_init(&r.lock, NULL);
	pthread_cond_init(&r.cond, NULL);
	r.end_ns = t0 + (uint64_t)(secs * 1e9);
	atomic_store(&r.active, qd);
	for (unsigned i = 0; i < qd; i++) {
		slots[i].r = &r;
		slots[i].seed = 7 + i;
		slots[i].buf = ts_aligned_alloc(4096, BS);
		memset(slots[i].buf, (int)i, BS);
		slots[i].io.cb = done;
	}
	for (unsigned i = 0; i < qd; i++)
		issue(&slots[i]);
	pthread_mutex_lock(&r.lock);
	while (atomic_load(&r.active))
		pthread_cond_wait(&r.cond, &r.lock);
	pthread_mutex_unlock(&r.lock);
	double el = (double)(ts_now_ns() - t0) / 1e9;
	for (unsigned i = 0; i < qd; i++)
		ts_free(slots[i].buf);
	free(slots);
	if (atomic_load(&r.errors))
		fprintf(stderr, "errors=%u\n", (unsigned)atomic_load(&r.errors));
	return (double)atomic_load(&r.done) / el;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 2.0;
	unsigned qd = argc > 2 ? (unsigned)atoi(argv[2]) : 32;
	unsigned trials = argc > 3 ? (unsigned)atoi(argv[3]) : 3;
	char dir[] = "/tmp/ts_tbench_XXXXXX", disk[128], iqn[80], url[192];
	const char *paths[1] = { disk };
	struct ts_pem_opts po = { .node_id = 1, .extent_size = 4u << 20 };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .threads = 2 };
	struct ts_pem *pem;
	struct ts_ldm *ldm;
	struct ts_ldm_vdisk *vd;
	struct ts_iscsi_server *srv;
	struct ts_member *local, *remote;
	uint8_t uuid[16];
	double best[2][2] = { { 0 } };
	int fd;

	ts_log_set_level(TS_LOG_WARN);
	if (!mkdtemp(dir))
		return 1;
	snprintf(disk, sizeof(disk), "%s/disk", dir);
	fd = open(disk, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)VD_SIZE + (64 << 20)))
		return 1;
	close(fd);
	memset(po.cluster_uuid, 1, 16);
	ts_uuid_generate(uuid);
	if (ts_pem_format(paths, 1, &po) || ts_pem_open(paths, 1, &po, &pem) || ts_ldm_open(pem, &ldm) ||
	    ts_ldm_create(ldm, uuid, VD_SIZE, "bench", 0, &vd) || ts_iscsi_server_create(&so, &srv) ||
	    ts_transport_export_vdisk(srv, vd, "bench", "bench-secret") || ts_ldm_vdisk_member(vd, &local))
		return 1;
	ts_transport_vdisk_iqn(uuid, iqn);
	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/%s/0", ts_iscsi_server_port(srv), iqn);
	struct ts_transport_opts to = { .url = url, .chap_user = "bench", .chap_secret = "bench-secret",
					.node_id = 1 };
	if (ts_transport_iscsi_member(&to, &remote))
		return 1;
	/* pre-fill so reads hit allocated blocks */
	{
		uint8_t *b = ts_aligned_alloc(4096, 1u << 20);
		memset(b, 0x5a, 1u << 20);
		for (uint64_t off = 1u << 20; off < VD_SIZE; off += 1u << 20)
			ts_member_rw_sync(local, TS_MEMBER_WRITE, 0, off, 1u << 20, b);
		ts_free(b);
	}
	for (unsigned t = 0; t < trials; t++) {
		for (int op = 0; op < 2; op++) {
			enum ts_member_op o = op ? TS_MEMBER_READ : TS_MEMBER_WRITE;
			double l = measure(local, o, qd, secs), r = measure(remote, o, qd, secs);

			best[op][0] = l > best[op][0] ? l : best[op][0];
			best[op][1] = r > best[op][1] ? r : best[op][1];
		}
	}
	printf("4k randwrite qd=%u: local=%.0f iops remote=%.0f iops ratio=%.2f\n", qd, best[0][0],
	       best[0][1], best[0][1] / best[0][0]);
	printf("4k randread  qd=%u: local=%.0f iops remote=%.0f iops ratio=%.2f\n", qd, best[1][0],
	       best[1][1], best[1][1] / best[1][0]);
	printf("write_local_iops=%.0f write_remote_iops=%.0f write_ratio=%.2f read_local_iops=%.0f "
	       "read_remote_iops=%.0f read_ratio=%.2f\n",
	       best[0][0], best[0][1], best[0][1] / best[0][0], best[1][0], best[1][1],
	       best[1][1] / best[1][0]);
	ts_member_destroy(remote);
	ts_member_destroy(local);
	ts_iscsi_server_destroy(srv);
	ts_ldm_close(ldm);
	ts_pem_close(pem);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) ? 1 : 0;
}
