/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ts-iscsi-load: a small iSCSI load generator on libiscsi's asynchronous API.
 *
 *   ts-iscsi-load [-m randread|randwrite|randrw] [-M read_pct] [-q depth]
 *                 [-t seconds] [-b io_bytes] [-s span_bytes] [-u user -p secret]
 *                 [-i initiator_iqn] URL
 *
 * One session, one thread: keep \p depth commands in flight, each a random
 * io_bytes-aligned READ(16) or WRITE(16) inside the first span_bytes of the
 * LUN; poll(2) on the session's socket and iscsi_service() the events; a
 * completion records its latency and immediately issues the next command.
 * After the duration, stop issuing and drain.
 *
 * Latencies go into a histogram with 1 us buckets up to 1 s (exact enough
 * for percentiles, fixed memory whatever the IOPS). Any failed command makes
 * the exit status 1. The last line is key=value for scripts:
 *   mode=randread qd=32 bs=4096 seconds=10.00 ios=N iops=N mib_s=N
 *   lat_us_avg=N lat_us_p50=N lat_us_p99=N lat_us_p999=N lat_us_max=N errors=N
 */
#include <getopt.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

#define HIST_US 1000000 /* 1 us buckets up to 1 s; beyond goes to the last */

struct slot {
	struct load *ld;
	uint8_t *buf;
	struct scsi_iovec iov;
	uint64_t start_ns;
	int is_write;
};

struct load {
	struct iscsi_context *iscsi;
	int lun;
	uint32_t bs;
	uint32_t io_bytes;
	uint64_t nslots_lba; /* io-sized slots in the span */
	int read_pct;
	uint64_t rng;
	int issuing;
	int inflight;
	uint64_t ios, errors, reads, writes;
	uint64_t lat_sum_ns, lat_max_ns;
	uint32_t *hist;
};

static uint64_t rnd(struct load *ld)
{
	uint64_t x = ld->rng; /* xorshift64* */

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ld->rng = x;
	return x * 2685821657736338717ull;
}

static int issue(struct slot *s);

static void done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct slot *s = private_data;
	struct load *ld = s->ld;
	uint64_t lat = ts_now_ns() - s->start_ns, us = lat / 1000;

	(void)iscsi;
	if (command_data)
		scsi_free_scsi_task(command_data);
	ld->inflight--;
	if (status != SCSI_STATUS_GOOD) {
		if (ld->errors++ < 5)
			fprintf(stderr, "ts-iscsi-load: command failed status=0x%x %s\n", (unsigned)status,
				iscsi_get_error(ld->iscsi));
	} else {
		ld->ios++;
		ld->lat_sum_ns += lat;
		if (lat > ld->lat_max_ns)
			ld->lat_max_ns = lat;
		ld->hist[us < HIST_US ? us : HIST_US - 1]++;
	}
	if (ld->issuing && issue(s))
		ld->issuing = 0;
}

static int issue(struct slot *s)
{
	struct load *ld = s->ld;
	uint64_t lba = (rnd(ld) % ld->nslots_lba) * (ld->io_bytes / ld->bs);
	struct scsi_task *t;

	s->is_write = (int)(rnd(ld) % 100) >= ld->read_pct;
	s->iov.iov_base = s->buf;
	s->iov.iov_len = ld->io_bytes;
	s->start_ns = ts_now_ns();
	if (s->is_write) {
		ld->writes++;
		t = iscsi_write16_iov_task(ld->iscsi, ld->lun, lba, NULL, ld->io_bytes, (int)ld->bs, 0, 0, 0,
					   0, 0, done, s, &s->iov, 1);
	} else {
		ld->reads++;
		t = iscsi_read16_iov_task(ld->iscsi, ld->lun, lba, ld->io_bytes, (int)ld->bs, 0, 0, 0, 0, 0,
					  done, s, &s->iov, 1);
	}
	if (!t) {
		fprintf(stderr, "ts-iscsi-load: cannot queue: %s\n", iscsi_get_error(ld->iscsi));
		return -ENOMEM;
	}
	ld->inflight++;
	return 0;
}

static uint64_t percentile(const struct load *ld, double p)
{
	uint64_t want = (uint64_t)((double)ld->ios * p), seen = 0;

	if (ld->ios == 0)
		return 0;
	if (want >= ld->ios)
		want = ld->ios - 1;
	for (uint64_t i = 0; i < HIST_US; i++) {
		seen += ld->hist[i];
		if (seen > want)
			return i;
	}
	return HIST_US;
}

static void usage(void)
{
	fprintf(stderr, "usage: ts-iscsi-load [-m randread|randwrite|randrw] [-M read_pct] [-q depth]\n"
			"                     [-t seconds] [-b io_bytes] [-s span_bytes] [-u user -p secret]\n"
			"                     [-i initiator_iqn] iscsi://host[:port]/iqn/lun\n");
}

int main(int argc, char **argv)
{
	const char *mode = "randread", *user = NULL, *secret = NULL;
	const char *initiator = "iqn.2026-11.io.tessera:load";
	struct load ld = { .read_pct = -1, .io_bytes = 4096, .rng = 0x9e3779b97f4a7c15ull };
	struct iscsi_url *url = NULL;
	struct scsi_task *cap;
	struct slot *slots = NULL;
	double seconds = 10;
	uint64_t span = 0, t0, t_end, t_stop;
	int qd = 1, c, rc = 1;

	while ((c = getopt(argc, argv, "m:M:q:t:b:s:u:p:i:h")) != -1) {
		switch (c) {
		case 'm': mode = optarg; break;
		case 'M': ld.read_pct = atoi(optarg); break;
		case 'q': qd = atoi(optarg); break;
		case 't': seconds = atof(optarg); break;
		case 'b': ld.io_bytes = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 's': span = strtoull(optarg, NULL, 0); break;
		case 'u': user = optarg; break;
		case 'p': secret = optarg; break;
		case 'i': initiator = optarg; break;
		default: usage(); return 2;
		}
	}
	if (optind != argc - 1 || qd < 1 || qd > 1024 || seconds <= 0 || ld.io_bytes == 0) {
		usage();
		return 2;
	}
	if (ld.read_pct < 0)
		ld.read_pct = !strcmp(mode, "randread") ? 100 : !strcmp(mode, "randwrite") ? 0 : 50;
	if (strcmp(mode, "randread") && strcmp(mode, "randwrite") && strcmp(mode, "randrw")) {
		usage();
		return 2;
	}
	ld.hist = calloc(HIST_US, sizeof(*ld.hist));
	ld.iscsi = iscsi_create_context(initiator);
	if (!ld.hist || !ld.iscsi)
		goto out;
	url = iscsi_parse_full_url(ld.iscsi, argv[optind]);
	if (!url) {
		fprintf(stderr, "ts-iscsi-load: %s\n", iscsi_get_error(ld.iscsi));
		goto out;
	}
	iscsi_set_targetname(ld.iscsi, url->target);
	iscsi_set_session_type(ld.iscsi, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ld.iscsi, ISCSI_HEADER_DIGEST_NONE);
	if (user || url->user[0])
		iscsi_set_initiator_username_pwd(ld.iscsi, user ? user : url->user,
						 user ? (secret ? secret : "") : url->passwd);
	if (iscsi_full_connect_sync(ld.iscsi, url->portal, url->lun)) {
		fprintf(stderr, "ts-iscsi-load: login: %s\n", iscsi_get_error(ld.iscsi));
		goto out;
	}
	ld.lun = url->lun;
	cap = iscsi_readcapacity16_sync(ld.iscsi, ld.lun);
	if (!cap || cap->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "ts-iscsi-load: READ CAPACITY(16): %s\n", iscsi_get_error(ld.iscsi));
		if (cap)
			scsi_free_scsi_task(cap);
		goto out;
	} else {
		struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(cap);
		uint64_t size = rc16 ? (rc16->returned_lba + 1) * rc16->block_length : 0;

		ld.bs = rc16 ? rc16->block_length : 0;
		scsi_free_scsi_task(cap);
		if (!ld.bs || ld.io_bytes % ld.bs || size < ld.io_bytes) {
			fprintf(stderr, "ts-iscsi-load: io size %u does not fit block size %u / LUN size\n",
				ld.io_bytes, ld.bs);
			goto out;
		}
		if (!span || span > size)
			span = size;
		ld.nslots_lba = span / ld.io_bytes;
	}
	slots = calloc((size_t)qd, sizeof(*slots));
	if (!slots)
		goto out;
	for (int i = 0; i < qd; i++) {
		slots[i].ld = &ld;
		slots[i].buf = ts_aligned_alloc(4096, ld.io_bytes);
		if (!slots[i].buf)
			goto out;
		memset(slots[i].buf, 0xa5 ^ i, ld.io_bytes);
	}
	ld.issuing = 1;
	t0 = ts_now_ns();
	t_end = t0 + (uint64_t)(seconds * 1e9);
	for (int i = 0; i < qd; i++)
		if (issue(&slots[i]))
			goto out;
	t_stop = 0;
	while (ld.inflight > 0) {
		struct pollfd p = { .fd = iscsi_get_fd(ld.iscsi), .events = (short)iscsi_which_events(ld.iscsi) };
		uint64_t now;

		if (poll(&p, 1, 1000) < 0)
			break;
		if (iscsi_service(ld.iscsi, p.revents) < 0) {
			fprintf(stderr, "ts-iscsi-load: session: %s\n", iscsi_get_error(ld.iscsi));
			goto out;
		}
		now = ts_now_ns();
		if (ld.issuing && now >= t_end) {
			ld.issuing = 0;
			t_stop = now;
		}
	}
	if (!t_stop)
		t_stop = ts_now_ns();
	{
		double secs = (double)(t_stop - t0) / 1e9;
		double iops = (double)ld.ios / secs;

		printf("%s qd=%d bs=%u: %.0f IOPS, %.1f MiB/s, avg %.1f us, p50 %llu us, p99 %llu us, "
		       "p99.9 %llu us, max %.0f us, errors %llu\n",
		       mode, qd, ld.io_bytes, iops, iops * ld.io_bytes / 1048576.0,
		       ld.ios ? (double)ld.lat_sum_ns / (double)ld.ios / 1000.0 : 0.0,
		       (unsigned long long)percentile(&ld, 0.50), (unsigned long long)percentile(&ld, 0.99),
		       (unsigned long long)percentile(&ld, 0.999), (double)ld.lat_max_ns / 1000.0,
		       (unsigned long long)ld.errors);
		printf("mode=%s qd=%d bs=%u seconds=%.2f ios=%llu reads=%llu writes=%llu iops=%.0f "
		       "mib_s=%.1f lat_us_avg=%.1f lat_us_p50=%llu lat_us_p99=%llu lat_us_p999=%llu "
		       "lat_us_max=%.0f errors=%llu\n",
		       mode, qd, ld.io_bytes, secs, (unsigned long long)ld.ios, (unsigned long long)ld.reads,
		       (unsigned long long)ld.writes, iops, iops * ld.io_bytes / 1048576.0,
		       ld.ios ? (double)ld.lat_sum_ns / (double)ld.ios / 1000.0 : 0.0,
		       (unsigned long long)percentile(&ld, 0.50), (unsigned long long)percentile(&ld, 0.99),
		       (unsigned long long)percentile(&ld, 0.999), (double)ld.lat_max_ns / 1000.0,
		       (unsigned long long)ld.errors);
	}
	rc = ld.errors ? 1 : 0;
	(void)iscsi_logout_sync(ld.iscsi);
out:
	if (slots)
		for (int i = 0; i < qd; i++)
			ts_free(slots[i].buf);
	free(slots);
	if (url)
		iscsi_destroy_url(url);
	if (ld.iscsi)
		iscsi_destroy_context(ld.iscsi);
	free(ld.hist);
	return rc;
}
