/* SPDX-License-Identifier: Apache-2.0 */
/*
 * crash-verify URL LOG: reads back every block the log says was
 * acknowledged; each must hold its last acknowledged version, or the version
 * of a write that was in flight when the writer stopped. Exit 0 when nothing
 * was lost, 1 otherwise; prints "checked=N lost=M".
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBLK 4096u

int main(int argc, char **argv)
{
	static unsigned long long acked[NBLK], infl[NBLK];
	struct iscsi_context *is;
	struct iscsi_url *u;
	unsigned long long blk, ver;
	int lost = 0, n = 0;
	char kind;
	FILE *f;

	if (argc != 3 || !(f = fopen(argv[2], "r"))) {
		fprintf(stderr, "usage: crash-verify URL LOG\n");
		return 2;
	}
	while (fscanf(f, " %c %llu %llu", &kind, &blk, &ver) == 3 && blk < NBLK) {
		if (kind == 'I') {
			infl[blk] = ver;
		} else {
			acked[blk] = ver;
			if (infl[blk] == ver)
				infl[blk] = 0;
		}
	}
	fclose(f);
	is = iscsi_create_context("iqn.2026-11.io.tessera:crash-verify");
	u = is ? iscsi_parse_full_url(is, argv[1]) : NULL;
	if (!u || iscsi_set_targetname(is, u->target) ||
	    iscsi_set_session_type(is, ISCSI_SESSION_NORMAL) ||
	    iscsi_full_connect_sync(is, u->portal, u->lun)) {
		fprintf(stderr, "crash-verify: connect: %s\n", is ? iscsi_get_error(is) : "no memory");
		return 2;
	}
	for (blk = 0; blk < NBLK; blk++) {
		struct scsi_task *t = NULL;
		unsigned long long gb, gv;

		if (!acked[blk])
			continue;
		n++;
		/* the first command of the session may carry a unit attention */
		for (int tries = 0; tries < 3 && (!t || t->status != SCSI_STATUS_GOOD); tries++) {
			if (t)
				scsi_free_scsi_task(t);
			t = iscsi_read16_sync(is, u->lun, blk, 4096, 4096, 0, 0, 0, 0, 0);
		}
		if (!t || t->status != SCSI_STATUS_GOOD) {
			fprintf(stderr, "crash-verify: read of block %llu failed\n", blk);
			return 2;
		}
		memcpy(&gb, t->datain.data, 8);
		memcpy(&gv, t->datain.data + 8, 8);
		scsi_free_scsi_task(t);
		if (gb == blk && (gv == acked[blk] || (infl[blk] && gv == infl[blk])))
			continue;
		if (lost++ < 5)
			printf("block %llu: want version %llu, found block %llu version %llu\n", blk,
			       acked[blk], gb, gv);
	}
	printf("checked=%d lost=%d\n", n, lost);
	iscsi_destroy_url(u);
	iscsi_logout_sync(is);
	iscsi_destroy_context(is);
	return lost ? 1 : 0;
}
