/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crash-writer URL LOG SEED: writes random 4 KiB blocks of a 16 MiB LUN with
 * libiscsi, each WRITE(16) followed by SYNCHRONIZE CACHE(16); logs "I blk ver"
 * before a write and "A blk ver" once both succeeded. Runs until killed or
 * until a command fails (the target went away).
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBLK 4096u

int main(int argc, char **argv)
{
	struct iscsi_context *is;
	struct iscsi_url *u;
	unsigned char buf[4096];
	unsigned long long seed;
	FILE *log;

	if (argc != 4) {
		fprintf(stderr, "usage: crash-writer URL LOG SEED\n");
		return 2;
	}
	seed = strtoull(argv[3], NULL, 10);
	is = iscsi_create_context("iqn.2026-11.io.tessera:crash-writer");
	u = is ? iscsi_parse_full_url(is, argv[1]) : NULL;
	if (!u || iscsi_set_targetname(is, u->target) ||
	    iscsi_set_session_type(is, ISCSI_SESSION_NORMAL) ||
	    iscsi_full_connect_sync(is, u->portal, u->lun)) {
		fprintf(stderr, "crash-writer: connect: %s\n", is ? iscsi_get_error(is) : "no memory");
		return 1;
	}
	log = fopen(argv[2], "a");
	if (!log)
		return 1;
	setvbuf(log, NULL, _IOLBF, 0);
	srand((unsigned)seed);
	for (unsigned long long s = 1;; s++) {
		unsigned long long blk = (unsigned)rand() % NBLK, ver = seed * 1000000ull + s;
		struct scsi_task *t;

		for (unsigned i = 0; i < sizeof(buf); i += 16) {
			memcpy(buf + i, &blk, 8);
			memcpy(buf + i + 8, &ver, 8);
		}
		fprintf(log, "I %llu %llu\n", blk, ver);
		t = iscsi_write16_sync(is, u->lun, blk, buf, sizeof(buf), sizeof(buf), 0, 0, 0, 0, 0);
		if (!t || t->status != SCSI_STATUS_GOOD)
			return 0;
		scsi_free_scsi_task(t);
		t = iscsi_synchronizecache16_sync(is, u->lun, 0, 0, 0, 0);
		if (!t || t->status != SCSI_STATUS_GOOD)
			return 0;
		scsi_free_scsi_task(t);
		fprintf(log, "A %llu %llu\n", blk, ver);
	}
}
