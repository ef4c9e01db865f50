/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-volume QoS over a real loopback iSCSI session: two thin volumes of one
 * pool on the RAM test member, exported by the volume LUN provider on
 * Tessera's target with one QoS domain; one libiscsi session per volume
 * (own thread) keeps QD 16 random 4 KiB WRITE(16)s in flight.
 *
 *  (a) volume A alone, write_iops = N (N = 500, 2000; burst 100 ms): the
 *      IOPS measured after a 0.5 s warm-up, and measured / N;
 *  (b) A and B both saturating: rounds alternate A without anything and
 *      A with reserve_iops R (R = 1.5 x A's share in the first round, so it
 *      cannot be met without taking from B); B never has limits. A's and
 *      B's IOPS per round and averaged.
 *
 * Time and throughput are only printed. Last line: key=value.
 *
 * Usage: qos_bench [seconds_per_run (default 3)] [rounds (default 3)]
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/qos/qos.h"
#include "dataplane/volume/volume.h"
#include "unit/support/member/test_member.h"
#include "volumedriver/lun/vol_lun.h"

#define BS 4096
#define VOL_BYTES (64ull << 20)
#define QD 16
#define WARM_NS 500000000ull

static char g_portal[64];

static void die(const char *what, int rc)
{
	fprintf(stderr, "qos_bench: %s: %s\n", what, ts_strerror(rc));
	exit(1);
}

struct load {
	const char *iqn;
	double seconds;
	uint64_t rng;
	uint64_t ios;      /* completed inside the measured interval */
	uint64_t errors;
	uint64_t t_meas, t_end;
	int inflight, issuing;
	struct iscsi_context *iscsi;
	uint8_t buf[BS];
};

static uint64_t rnd(struct load *ld)
{
	ld->rng ^= ld->rng << 13;
	ld->rng ^= ld->rng >> 7;
	ld->rng ^= ld->rng << 17;
	return ld->rng;
}

static void issue(struct load *ld);

static void done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct load *ld = private_data;
	uint64_t now = ts_now_ns();

	(void)iscsi;
	if (command_data)
		scsi_free_scsi_task(command_data);
	ld->inflight--;
	if (status != SCSI_STATUS_GOOD)
		ld->errors++;
	else if (now >= ld->t_meas && now <= ld->t_end)
		ld->ios++;
	if (ld->issuing && now < ld->t_end)
		issue(ld);
}

static void issue(struct load *ld)
{
	uint64_t lba = rnd(ld) % (VOL_BYTES / BS);

	if (!iscsi_write16_task(ld->iscsi, 0, lba, ld->buf, BS, BS, 0, 0, 0, 0, 0, done, ld)) {
		ld->errors++;
		return;
	}
	ld->inflight++;
}

static void *load_main(void *arg)
{
	struct load *ld = arg;
	uint64_t t0;
	int i;

	ld->iscsi = iscsi_create_context("iqn.2026-01.io.tessera:qos-bench");
	if (!ld->iscsi)
		die("iscsi context", -ENOMEM);
	iscsi_set_targetname(ld->iscsi, ld->iqn);
	iscsi_set_session_type(ld->iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ld->iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (iscsi_full_connect_sync(ld->iscsi, g_portal, 0)) {
		fprintf(stderr, "qos_bench: login %s: %s\n", ld->iqn, iscsi_get_error(ld->iscsi));
		exit(1);
	}
	t0 = ts_now_ns();
	ld->t_meas = t0 + WARM_NS;
	ld->t_end = ld->t_meas + (uint64_t)(ld->seconds * 1e9);
	ld->issuing = 1;
	for (i = 0; i < QD; i++)
		issue(ld);
	while (ld->inflight > 0) {
		struct pollfd p = { .fd = iscsi_get_fd(ld->iscsi),
				    .events = (short)iscsi_which_events(ld->iscsi) };

		if (ts_now_ns() >= ld->t_end)
			ld->issuing = 0;
		if (poll(&p, 1, 100) < 0)
			break;
		if (iscsi_service(ld->iscsi, p.revents) < 0) {
			fprintf(stderr, "qos_bench: session: %s\n", iscsi_get_error(ld->iscsi));
			exit(1);
		}
	}
	(void)iscsi_logout_sync(ld->iscsi);
	iscsi_destroy_context(ld->iscsi);
	return NULL;
}

/* Run one load per iqn at once; iops[i] = measured IOPS of iqns[i]. */
static void run(const char *const *iqns, int n, double seconds, double *iops)
{
	static struct load ld[2];
	pthread_t th[2];
	int i;

	for (i = 0; i < n; i++) {
		memset(&ld[i], 0, sizeof(ld[i]));
		ld[i].iqn = iqns[i];
		ld[i].seconds = seconds;
		ld[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		memset(ld[i].buf, 0x40 + i, BS);
		if (pthread_create(&th[i], NULL, load_main, &ld[i]))
			die("thread", -EAGAIN);
	}
	for (i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		if (ld[i].errors)
			die("IO errors", -EIO);
		iops[i] = (double)ld[i].ios / seconds;
	}
}

static struct ts_vol_lun *export(struct ts_iscsi_server *srv, struct ts_vpool *p,
				 struct ts_qos_domain *dom, const char *name, const char *iqn,
				 const char *pr)
{
	struct ts_vol_lun_opts o = { .iqn = iqn, .pr_state_path = pr, .qos_domain = dom };
	struct ts_vol_lun *l;
	uint64_t id;
	int rc;

	if ((rc = ts_vpool_volume_create(p, name, VOL_BYTES, 0, &id)))
		die("volume create", rc);
	if ((rc = ts_vol_lun_export(srv, p, id, &o, &l)))
		die("export", rc);
	return l;
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 3.0;
	int rounds = argc > 2 ? atoi(argv[2]) : 3, r, k;
	static const char *const iqns[2] = { "iqn.2026-01.io.tessera:qos-a",
					     "iqn.2026-01.io.tessera:qos-b" };
	static const uint64_t limits[2] = { 500, 2000 };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .threads = 2 };
	struct ts_iscsi_server *srv;
	struct ts_qos_domain *dom;
	struct ts_vol_lun *la, *lb;
	struct ts_member *m;
	struct tmem *ram;
	struct ts_vpool *p;
	double lim_iops[2], sum_wo[2] = { 0, 0 }, sum_w[2] = { 0, 0 }, iops[2], reserve = 0;
	char pra[64], prb[64];
	int rc;

	if (secs <= 0 || rounds <= 0)
		return 2;
	snprintf(pra, sizeof(pra), "/tmp/qos-bench-a-%d", (int)getpid());
	snprintf(prb, sizeof(prb), "/tmp/qos-bench-b-%d", (int)getpid());
	if ((rc = tm_ram_create(512ull << 20, BS, 0, &m, &ram)))
		die("ram member", rc);
	if ((rc = ts_vpool_format(m)) || (rc = ts_vpool_open(m, &p)))
		die("pool", rc);
	if ((rc = ts_iscsi_server_create(&so, &srv)))
		die("server", rc);
	if ((rc = ts_qos_domain_create(&dom)))
		die("domain", rc);
	snprintf(g_portal, sizeof(g_portal), "127.0.0.1:%u", ts_iscsi_server_port(srv));
	la = export(srv, p, dom, "a", iqns[0], pra);
	lb = export(srv, p, dom, "b", iqns[1], prb);

	/* warm both volumes up (first writes allocate blocks) */
	run(iqns, 2, 1.0, iops);
	printf("unlimited warm-up: A %.0f B %.0f IOPS\n", iops[0], iops[1]);

	/* (a) limits */
	for (k = 0; k < 2; k++) {
		struct ts_qos_limits q = { .write_iops = limits[k], .burst_ms = 100 };

		if ((rc = ts_vol_lun_set_qos(la, &q)))
			die("set_qos", rc);
		run(iqns, 1, secs, &lim_iops[k]);
		printf("(a) write_iops=%-5llu measured %7.1f IOPS  ratio %.3f\n",
		       (unsigned long long)limits[k], lim_iops[k], lim_iops[k] / (double)limits[k]);
	}
	ts_vol_lun_set_qos(la, NULL);

	/* (b) reservation, alternating without / with */
	for (r = 0; r < rounds; r++) {
		struct ts_qos_limits res = { 0 };

		ts_vol_lun_set_qos(la, NULL);
		run(iqns, 2, secs, iops);
		if (!reserve)
			reserve = 1.5 * iops[0];
		printf("(b) round %d without reservation: A %7.0f B %7.0f IOPS\n", r, iops[0], iops[1]);
		sum_wo[0] += iops[0];
		sum_wo[1] += iops[1];
		res.reserve_iops = (uint64_t)reserve;
		if ((rc = ts_vol_lun_set_qos(la, &res)))
			die("set_qos", rc);
		run(iqns, 2, secs, iops);
		printf("(b) round %d with reserve_iops=%.0f: A %7.0f B %7.0f IOPS\n", r, reserve, iops[0],
		       iops[1]);
		sum_w[0] += iops[0];
		sum_w[1] += iops[1];
	}
	ts_vol_lun_set_qos(la, NULL);
	for (k = 0; k < 2; k++) {
		sum_wo[k] /= rounds;
		sum_w[k] /= rounds;
	}
	printf("(b) average without: A %.0f B %.0f; with reserve %.0f: A %.0f (%.2fx) B %.0f (%.2fx)\n",
	       sum_wo[0], sum_wo[1], reserve, sum_w[0], sum_w[0] / sum_wo[0], sum_w[1],
	       sum_w[1] / sum_wo[1]);

	ts_vol_lun_unexport(la);
	ts_vol_lun_unexport(lb);
	ts_qos_domain_destroy(dom);
	ts_iscsi_server_destroy(srv);
	ts_vpool_close(p);
	ts_member_destroy(m);
	unlink(pra);
	unlink(prb);
	printf("limit500_iops=%.1f ratio500=%.3f limit2000_iops=%.1f ratio2000=%.3f "
	       "a_without=%.0f b_without=%.0f reserve=%.0f a_with=%.0f b_with=%.0f\n",
	       lim_iops[0], lim_iops[0] / 500, lim_iops[1], lim_iops[1] / 2000, sum_wo[0], sum_wo[1],
	       reserve, sum_w[0], sum_w[1]);
	return 0;
}
