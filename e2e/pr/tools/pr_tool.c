/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ts-pr-tool: one initiator's side of a persistent-reservation scenario.
 *
 * It logs in to an iSCSI URL as one initiator port (an initiator name and a
 * fixed ISID, so a reconnect is the same I_T nexus), then runs its steps in
 * order and stops at the first that does not go as expected (exit 1). Two
 * of them, each in its own network namespace, play "node A" and "node B" of
 * e2e/pr/pr.sh; they take turns through marker files (wait:/signal:).
 *
 * Steps (one argument each):
 *   register:KEY             REGISTER AND IGNORE EXISTING KEY: KEY (0: unregister)
 *   reserve:KEY:TYPE         RESERVE, TYPE we|ea|wero|earo|wear|eaar
 *   release:KEY:TYPE         RELEASE
 *   preempt:KEY:SARK:TYPE    PREEMPT; preempt-abort:... PREEMPT AND ABORT
 *   write:EXPECT[:UA]        WRITE(10) of one block, EXPECT good|conflict; with
 *   read:EXPECT[:UA]         UA (hex ASC/ASCQ, e.g. 2a05) that unit attention
 *                            must come first; without, unit attentions are
 *                            skipped (up to 8)
 *   keys:K1,K2,..            READ KEYS holds exactly these (any order; empty: none)
 *   holder:KEY:TYPE          READ RESERVATION: held by KEY with TYPE; holder:none
 *   wait:PATH / signal:PATH  wait (60 s at most) for PATH / create it
 *   reconnect                log out and in again (same I_T nexus)
 * Every step prints one line "step ... ok" or "step ... FAILED: why".
 *
 * Usage: ts-pr-tool URL INITIATOR-NAME ISID-NUMBER STEP...
 */
#include <errno.h>
#include <fcntl.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct tool {
	const char *url, *iname;
	unsigned isid;
	struct iscsi_context *ctx;
	struct iscsi_url *u;
	uint32_t bs;
};

static int connect_lu(struct tool *t)
{
	struct scsi_task *task;

	t->ctx = iscsi_create_context(t->iname);
	if (!t->ctx)
		return -1;
	t->u = iscsi_parse_full_url(t->ctx, t->url);
	if (!t->u || iscsi_set_isid_random(t->ctx, t->isid, 0) ||
	    iscsi_set_session_type(t->ctx, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(t->ctx, ISCSI_HEADER_DIGEST_NONE_CRC32C) ||
	    iscsi_full_connect_sync(t->ctx, t->u->portal, t->u->lun)) {
		fprintf(stderr, "login %s: %s\n", t->url, iscsi_get_error(t->ctx));
		return -1;
	}
	/* the unit attentions of a new nexus (power on, ...) are not what we test */
	for (int i = 0; i < 8; i++) {
		task = iscsi_testunitready_sync(t->ctx, t->u->lun);
		if (!task)
			return -1;
		int st = task->status;
		scsi_free_scsi_task(task);
		if (st == SCSI_STATUS_GOOD)
			break;
	}
	task = iscsi_readcapacity16_sync(t->ctx, t->u->lun);
	if (!task || task->status != SCSI_STATUS_GOOD) {
		fprintf(stderr, "READ CAPACITY failed\n");
		return -1;
	}
	struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(task);
	t->bs = rc ? rc->block_length : 512;
	scsi_free_scsi_task(task);
	return 0;
}

static void disconnect_lu(struct tool *t)
{
	if (!t->ctx)
		return;
	iscsi_logout_sync(t->ctx);
	if (t->u)
		iscsi_destroy_url(t->u);
	iscsi_destroy_context(t->ctx);
	t->ctx = NULL;
	t->u = NULL;
}

static int pr_type(const char *s)
{
	static const struct { const char *n; int v; } types[] = {
		{ "we", SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE },
		{ "ea", SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS },
		{ "wero", SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY },
		{ "earo", SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS_REGISTRANTS_ONLY },
		{ "wear", SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_ALL_REGISTRANTS },
		{ "eaar", SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS_ALL_REGISTRANTS },
	};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (s && !strcmp(s, types[i].n))
			return types[i].v;
	return -1;
}

/* Split "a:b:c" in place into at most \p max fields; returns the count. */
static int fields(char *s, char **f, int max)
{
	int n = 0;
	char *save = NULL;

	for (char *p = strtok_r(s, ":", &save); p && n < max; p = strtok_r(NULL, ":", &save))
		f[n++] = p;
	return n;
}

static int fail(const char *step, const char *fmt, const char *detail)
{
	printf("step %s FAILED: ", step);
	printf(fmt, detail);
	printf("\n");
	return -1;
}

static int prout(struct tool *t, const char *step, int sa, int type, uint64_t rk, uint64_t sark)
{
	struct scsi_persistent_reserve_out_basic b = { .reservation_key = rk,
						       .service_action_reservation_key = sark };
	struct scsi_task *task = iscsi_persistent_reserve_out_sync(t->ctx, t->u->lun, sa, 0, type, &b);
	int st = task ? task->status : -1;
	char why[64];

	if (task)
		scsi_free_scsi_task(task);
	if (st == SCSI_STATUS_GOOD)
		return 0;
	snprintf(why, sizeof(why), "status 0x%02x", st < 0 ? 0xff : st);
	return fail(step, "%s", why);
}

/* One block at LBA 1 (read or write); unit attentions as described above. */
static int io(struct tool *t, const char *step, int write, const char *expect, const char *ua)
{
	unsigned char *buf = calloc(1, t->bs);
	int want = !strcmp(expect, "good") ? SCSI_STATUS_GOOD : SCSI_STATUS_RESERVATION_CONFLICT;
	int seen_ua = 0, st = -1;
	char why[96];

	if (!buf || (strcmp(expect, "good") && strcmp(expect, "conflict"))) {
		free(buf);
		return fail(step, "%s", "bad step");
	}
	memset(buf, 0x5a, t->bs);
	for (int i = 0; i < 9; i++) {
		struct scsi_task *task =
			write ? iscsi_write10_sync(t->ctx, t->u->lun, 1, buf, t->bs, t->bs, 0, 0, 0, 0, 0)
			      : iscsi_read10_sync(t->ctx, t->u->lun, 1, t->bs, t->bs, 0, 0, 0, 0, 0);
		if (!task)
			break;
		st = task->status;
		if (st == SCSI_STATUS_CHECK_CONDITION && task->sense.key == SCSI_SENSE_UNIT_ATTENTION) {
			unsigned asc = (unsigned)task->sense.ascq;
			scsi_free_scsi_task(task);
			if (ua && !seen_ua) {
				if (asc != strtoul(ua, NULL, 16)) {
					snprintf(why, sizeof(why), "unit attention %04x, wanted %s", asc, ua);
					free(buf);
					return fail(step, "%s", why);
				}
				seen_ua = 1;
			}
			continue;
		}
		scsi_free_scsi_task(task);
		break;
	}
	free(buf);
	if (ua && !seen_ua)
		return fail(step, "no unit attention %s", ua);
	if (st != want) {
		snprintf(why, sizeof(why), "status 0x%02x, wanted %s", st < 0 ? 0xff : st, expect);
		return fail(step, "%s", why);
	}
	return 0;
}

static int check_keys(struct tool *t, const char *step, char *list)
{
	struct scsi_task *task =
		iscsi_persistent_reserve_in_sync(t->ctx, t->u->lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 4096);
	struct scsi_persistent_reserve_in_read_keys *rk;
	uint64_t want[16];
	int nwant = 0, rc = 0;
	char *save = NULL, got[512];
	size_t off = 0;

	for (char *p = list ? strtok_r(list, ",", &save) : NULL; p && nwant < 16; p = strtok_r(NULL, ",", &save))
		want[nwant++] = strtoull(p, NULL, 0);
	if (!task || task->status != SCSI_STATUS_GOOD || !(rk = scsi_datain_unmarshall(task))) {
		if (task)
			scsi_free_scsi_task(task);
		return fail(step, "%s", "READ KEYS failed");
	}
	got[0] = 0;
	for (int i = 0; i < rk->num_keys; i++)
		off += (size_t)snprintf(got + off, sizeof(got) - off, "%s0x%llx", i ? "," : "",
					(unsigned long long)rk->keys[i]);
	if (rk->num_keys != nwant)
		rc = -1;
	for (int i = 0; i < nwant && rc == 0; i++) {
		int found = 0;
		for (int j = 0; j < rk->num_keys; j++)
			found |= rk->keys[j] == want[i];
		if (!found)
			rc = -1;
	}
	scsi_free_scsi_task(task);
	return rc ? fail(step, "keys are [%s]", got) : 0;
}

static int check_holder(struct tool *t, const char *step, char **f, int n)
{
	struct scsi_task *task = iscsi_persistent_reserve_in_sync(t->ctx, t->u->lun,
								  SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 4096);
	struct scsi_persistent_reserve_in_read_reservation *rr;
	char why[96];
	int rc = 0;

	if (!task || task->status != SCSI_STATUS_GOOD || !(rr = scsi_datain_unmarshall(task))) {
		if (task)
			scsi_free_scsi_task(task);
		return fail(step, "%s", "READ RESERVATION failed");
	}
	if (n >= 1 && !strcmp(f[0], "none")) {
		rc = rr->reserved ? -1 : 0;
	} else if (n == 2) {
		rc = rr->reserved && rr->reservation_key == strtoull(f[0], NULL, 0) &&
				     (int)rr->pr_type == pr_type(f[1])
			     ? 0
			     : -1;
	} else {
		rc = -1;
	}
	snprintf(why, sizeof(why), "reserved=%d key=0x%llx type=%d", rr->reserved,
		 (unsigned long long)rr->reservation_key, (int)rr->pr_type);
	scsi_free_scsi_task(task);
	return rc ? fail(step, "%s", why) : 0;
}

static int wait_for(const char *step, const char *path)
{
	for (int i = 0; i < 600; i++) {
		if (access(path, F_OK) == 0)
			return 0;
		usleep(100000);
	}
	return fail(step, "%s never appeared", path);
}

static int run_step(struct tool *t, const char *arg)
{
	char buf[1024], *f[5];
	int n, type, rc = 0;

	snprintf(buf, sizeof(buf), "%s", arg);
	n = fields(buf, f, 5);
	if (n < 1)
		return fail(arg, "%s", "empty step");
	if (!strcmp(f[0], "register") && n == 2) {
		rc = prout(t, arg, SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY, 0, 0,
			   strtoull(f[1], NULL, 0));
	} else if ((!strcmp(f[0], "reserve") || !strcmp(f[0], "release")) && n == 3 &&
		   (type = pr_type(f[2])) >= 0) {
		rc = prout(t, arg, !strcmp(f[0], "reserve") ? SCSI_PERSISTENT_RESERVE_RESERVE
							      : SCSI_PERSISTENT_RESERVE_RELEASE,
			   type, strtoull(f[1], NULL, 0), 0);
	} else if ((!strcmp(f[0], "preempt") || !strcmp(f[0], "preempt-abort")) && n == 4 &&
		   (type = pr_type(f[3])) >= 0) {
		rc = prout(t, arg, !strcmp(f[0], "preempt") ? SCSI_PERSISTENT_RESERVE_PREEMPT
							      : SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT,
			   type, strtoull(f[1], NULL, 0), strtoull(f[2], NULL, 0));
	} else if ((!strcmp(f[0], "write") || !strcmp(f[0], "read")) && (n == 2 || n == 3)) {
		rc = io(t, arg, !strcmp(f[0], "write"), f[1], n == 3 ? f[2] : NULL);
	} else if (!strcmp(f[0], "keys")) {
		rc = check_keys(t, arg, n == 2 ? f[1] : NULL);
	} else if (!strcmp(f[0], "holder") && n >= 2) {
		rc = check_holder(t, arg, f + 1, n - 1);
	} else if (!strcmp(f[0], "wait") && n == 2) {
		rc = wait_for(arg, f[1]);
	} else if (!strcmp(f[0], "signal") && n == 2) {
		int fd = open(f[1], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		rc = fd < 0 ? fail(arg, "%s", strerror(errno)) : close(fd);
	} else if (!strcmp(f[0], "reconnect") && n == 1) {
		disconnect_lu(t);
		rc = connect_lu(t) ? fail(arg, "%s", "login failed") : 0;
	} else {
		return fail(arg, "%s", "unknown step");
	}
	if (rc == 0)
		printf("step %s ok\n", arg);
	fflush(stdout);
	return rc;
}

int main(int argc, char **argv)
{
	struct tool t = { 0 };
	int rc = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: %s URL INITIATOR-NAME ISID-NUMBER STEP...\n", argv[0]);
		return 2;
	}
	t.url = argv[1];
	t.iname = argv[2];
	t.isid = (unsigned)strtoul(argv[3], NULL, 0);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (connect_lu(&t)) {
		disconnect_lu(&t);
		return 1;
	}
	for (int i = 4; i < argc && rc == 0; i++)
		rc = run_step(&t, argv[i]);
	disconnect_lu(&t);
	return rc ? 1 : 0;
}
