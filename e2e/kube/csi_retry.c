/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a CSI sidecar does across a controller failover, for failover.sh:
 * make CSI CreateVolume NAME (Block, SIZE bytes) and then CreateSnapshot
 * snap-NAME of it, each retried until it succeeds, against whichever of the
 * given controller sockets answers (the active replica; the passive has no
 * socket, a paused or lost one answers UNAVAILABLE). Prints one line
 * "volume=<id> snapshot=<id> tries=<n>" and exits 0, or exits 1 after the
 * deadline or on an answer a sidecar would not retry (INVALID_ARGUMENT,
 * ALREADY_EXISTS, ...).
 *
 * Usage: ts-csi-retry NAME SIZE DEADLINE_S ENDPOINT...
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "csi.pb-c.h"
#include "unit/support/csi/csi_test_util.h"
#include "unit/support/csi/grpc_client.h"

#define CODE_DEADLINE 4
#define CODE_ABORTED 10
#define CODE_UNAVAILABLE 14
#define CODE_UNKNOWN 2

static int retryable(int code)
{
	return code == CODE_UNAVAILABLE || code == CODE_DEADLINE || code == CODE_ABORTED ||
	       code == CODE_UNKNOWN;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	Csi__V1__CreateSnapshotRequest sr = CSI__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	char vol[256] = "", snap[256] = "", sname[300], msg[512] = "";
	unsigned tries = 0;
	double end;
	int code = 0;

	if (argc < 5) {
		fprintf(stderr, "usage: ts-csi-retry NAME SIZE DEADLINE_S ENDPOINT...\n");
		return 2;
	}
	end = now_s() + atof(argv[3]);
	snprintf(sname, sizeof(sname), "snap-%s", argv[1]);
	Csi__V1__CreateVolumeRequest *r = tcreate_req(argv[1], atoll(argv[2]), tcap_block(), NULL,
						      NULL);

	for (int step = 0; step < 2;) {
		for (int i = 4; i < argc && step < 2; i++) {
			struct ts_client *c = gc_connect(argv[i]);
			void *resp = NULL;

			if (!c)
				continue;
			tries++;
			if (step == 0) {
				code = gc_call(c, "/csi.v1.Controller/CreateVolume", r,
					       &csi__v1__create_volume_response__descriptor, &resp, 20000,
					       msg, sizeof(msg));
				if (code == 0) {
					Csi__V1__CreateVolumeResponse *v = resp;

					snprintf(vol, sizeof(vol), "%s", v->volume->volume_id);
				}
			} else {
				sr.name = sname;
				sr.source_volume_id = vol;
				code = gc_call(c, "/csi.v1.Controller/CreateSnapshot", &sr,
					       &csi__v1__create_snapshot_response__descriptor, &resp, 20000,
					       msg, sizeof(msg));
				if (code == 0) {
					Csi__V1__CreateSnapshotResponse *s = resp;

					snprintf(snap, sizeof(snap), "%s", s->snapshot->snapshot_id);
				}
			}
			if (resp)
				protobuf_c_message_free_unpacked(resp, NULL);
			gc_close(c);
			if (code == 0) {
				step++;
				i--; /* the next step on the same replica first */
			} else if (!retryable(code)) {
				fprintf(stderr, "ts-csi-retry %s: step %d: code %d: %s\n", argv[1], step,
					code, msg);
				tfree_all();
				return 1;
			}
		}
		if (step < 2) {
			if (now_s() > end) {
				fprintf(stderr, "ts-csi-retry %s: deadline; last code %d: %s\n", argv[1],
					code, msg);
				tfree_all();
				return 1;
			}
			usleep(200000);
		}
	}
	printf("volume=%s snapshot=%s tries=%u\n", vol, snap, tries);
	tfree_all();
	return 0;
}
