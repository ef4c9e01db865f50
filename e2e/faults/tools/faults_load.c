/* SPDX-License-Identifier: Apache-2.0 */
/*
 * ts-faults-load: a verifying iSCSI load that rides through target outages.
 *
 *   ts-faults-load [options] URL
 *     -n, --blocks N           4 KiB blocks used from LBA 0 (default: the LUN, at most 1Mi)
 *     -q, --qd N               writers in flight (default 4, at most 64)
 *     -d, --duration SEC       stop after SEC seconds (default: at SIGTERM/SIGINT)
 *     -l, --log FILE           write-ahead log of attempts and acknowledgements;
 *                              an existing log is replayed first (versions continue)
 *     -V, --verify             no load: replay --log, verify every block, exit
 *     -s, --seed S             block choice (default: from the clock)
 *     -t, --io-timeout-ms MS   a command older than this drops the session (30000)
 *     -T, --verify-timeout-ms  budget of the final verification (300000)
 *     -u USER -p SECRET        CHAP (credentials in the URL work too)
 *     -i, --interval-ms MS     progress line on stderr every MS (1000; 0 = never)
 *     -x, --exit-on-error      exit (status 3) at the first command that fails or
 *                              session lost while loading, instead of riding through:
 *                              a test that must see no IO error keeps checking it runs
 *     -F, --fill               no random load: write every block once, in order, 32
 *                              blocks (128 KiB) per WRITE, then verify them all (a
 *                              volume filled with checkable data)
 *
 * The pattern. Every 4 KiB block written carries a header (magic, block
 * number, version, pattern seed) and 4064 bytes of a pseudo-random stream
 * seeded from (seed, block, version). A block read back is therefore either
 * all zeroes (version 0, never written), or names the one (block, version)
 * whose full content it must equal, or is corrupt. Versions count the writes
 * attempted on a block: 1, 2, 3, ...
 *
 * What "acknowledged" means. Each writer issues WRITE(16) of one block and,
 * once that returned GOOD, SYNCHRONIZE CACHE(16) on the same session; the
 * write is acknowledged only when both returned GOOD. Anything else - a
 * CHECK CONDITION (in particular UNIT ATTENTION: the Tessera target raises
 * POWER ON on every new I_T nexus, and its volumes keep a volatile write
 * cache, so a flush answered after a reconnect would vouch for writes the
 * previous instance may have lost), a dropped connection, a timeout - leaves
 * the write unacknowledged and the writer issues the same (block, version)
 * again, after a reconnect if the session is gone, until it is acknowledged
 * or the load stops. An unacknowledged write may or may not have landed.
 *
 * The rule checked. Let acked(b) be the last acknowledged version of block b
 * and attempted(b) the highest version ever sent. Every read of b, during the
 * run (a random idle block after each acknowledgement) and in the final
 * pass over all blocks, must find a version v with acked(b) <= v <=
 * attempted(b) and exactly that version's content. v < acked(b) is a lost
 * write; anything else is corruption. Both count in `lost`, once per block.
 * A block that cannot be read before the verification budget runs out is
 * `unreadable`: unavailable, not proven lost, but a failure all the same.
 *
 * Sessions. One libiscsi context at a time, driven by this single thread
 * with poll(2); libiscsi's own reconnect is off (it would replay commands
 * and consume unit attentions behind our back). On a lost session every
 * command on it is cancelled and the tool reconnects with backoff (100 ms
 * doubling to 2 s). A login answered "target moved" (an engine served by
 * another node, docs/scale-out.md) is followed at once to the address given;
 * every later reconnect starts again at the URL's portal, so after a
 * failover the redirect leads to the new owner. After login, TEST UNIT READY is repeated until GOOD (it
 * consumes the unit attention) and READ CAPACITY(16) checks the size before
 * any write is sent. A command older than the IO timeout drops the session.
 *
 * The log. "S seed blocks" first, then "I blk ver" written before a version
 * is first sent and "A blk ver" after its acknowledgement, each with one
 * write(2): the log survives kill -9 of this process, so a later
 * `--verify` (or a new load on the same log) knows every attempted version.
 *
 * On SIGTERM/SIGINT (or after --duration) the load stops issuing, lets the
 * commands in flight finish (pending writes stay unacknowledged), verifies
 * every block and prints, as its last line:
 *   acked=A unacked=U retries=R sessions=C reads=N read_errors=E verified=V unreadable=X lost=L
 * (acked counts acknowledgements in the log, earlier runs included.)
 * Exit status: 0 every block verified, 1 lost or unreadable blocks, 2 usage or
 * setup error, 3 an IO failed with --exit-on-error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

#define BLK 4096u
#define WORDS (BLK / 8u)
#define MAGIC 0x31544c5541465354ull /* "TSFAULT1" */
#define MAX_QD 64u
#define MAX_BLOCKS (1u << 20)
#define SPAN 32u /* blocks per read in the final pass */
#define MS 1000000ull
#define CONNECT_TIMEOUT (5000 * MS)
#define BACKOFF_MIN (100 * MS)
#define BACKOFF_MAX (2000 * MS)
#define ERROR_DELAY (200 * MS) /* before re-issuing after a SCSI error */
#define SETUP_TRIES 16
#define INITIATOR "iqn.2026-01.io.tessera:faults-load"

enum sess { S_DOWN, S_CONNECTING, S_SETUP, S_UP };
enum op { OP_NONE, OP_WRITE, OP_FLUSH, OP_READ };
enum phase { P_LOAD, P_DRAIN, P_VERIFY, P_DONE };

struct load;

struct lane {
	struct load *ld;
	enum op op; /* command in flight */
	struct scsi_task *task;
	uint64_t deadline;
	uint64_t not_before; /* no new command before (after a SCSI error) */
	bool wpending;       /* (wblk.., wver) sent or to send, not acknowledged */
	uint32_t wblk, wver, wcnt; /* wcnt blocks from wblk (1 but with --fill) */
	bool rpending;       /* a read of [rblk, rblk + rcnt) to (re)issue */
	bool want_read;      /* a random check read is due */
	uint32_t rblk, rcnt;
	uint64_t *buf; /* SPAN blocks */
	struct scsi_iovec iov;
};

struct load {
	/* target */
	char portal[300], target[300], user[300], secret[300];
	char home[300];        /* the URL's portal: every reconnect starts here */
	unsigned redirects;    /* followed in a row (a loop of redirects ends) */
	bool redirected;       /* the next connect goes to portal, at once */
	int lun;
	/* session */
	struct iscsi_context *ctx;
	enum sess sess;
	bool tearing, broken;
	char why[160]; /* why the session is broken */
	uint64_t connect_deadline, next_attempt, backoff;
	struct scsi_task *setup_task;
	uint64_t setup_deadline;
	int setup_step, setup_tries;
	uint32_t lbsize;    /* LUN logical block size */
	uint64_t lun_bytes; /* from READ CAPACITY(16) */
	/* model */
	uint32_t nblk;
	uint64_t pseed, rng;
	uint32_t *acked, *att;
	uint8_t *busy, *bad;
	/* lanes */
	struct lane lanes[MAX_QD];
	unsigned qd;
	enum phase phase;
	uint32_t vnext; /* next block of the final pass */
	uint64_t io_timeout, verify_budget, verify_deadline, drain_deadline;
	int logfd;
	bool exit_on_error;
	bool fill;             /* --fill: every block once, in order */
	uint32_t fnext;        /* --fill: the next block to send */
	/* counters */
	uint64_t n_acked, n_unacked, n_retries, n_sessions, n_reads, n_read_errors;
	uint64_t n_verified, n_unreadable, n_lost;
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
	(void)sig;
	g_stop++;
	if (g_stop > 2)
		_exit(3);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	fputs("faults-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rnd(struct load *ld)
{
	ld->rng = splitmix(ld->rng);
	return ld->rng;
}

/* The content of version \p ver of block \p blk. */
static void stamp(uint64_t *w, uint64_t pseed, uint32_t blk, uint32_t ver)
{
	uint64_t x = splitmix(pseed ^ splitmix(((uint64_t)blk << 32) | ver));

	w[0] = MAGIC;
	w[1] = blk;
	w[2] = ver;
	w[3] = pseed;
	for (unsigned i = 4; i < WORDS; i++) {
		x ^= x >> 12; /* xorshift64* */
		x ^= x << 25;
		x ^= x >> 27;
		w[i] = x * 2685821657736338717ull;
	}
}

/* The version block \p b holds according to \p w, or -1 if it is corrupt. */
static int64_t decode(const struct load *ld, uint32_t b, const uint64_t *w)
{
	static uint64_t exp[WORDS];

	if (w[0] != MAGIC) {
		for (unsigned i = 0; i < WORDS; i++)
			if (w[i])
				return -1;
		return 0;
	}
	if (w[1] != b || w[3] != ld->pseed || w[2] == 0 || w[2] > UINT32_MAX)
		return -1;
	stamp(exp, ld->pseed, b, (uint32_t)w[2]);
	return memcmp(exp, w, BLK) ? -1 : (int64_t)w[2];
}

/* Check one block read back; counts it lost once. */
static void check(struct load *ld, uint32_t b, const uint64_t *w, const char *when)
{
	int64_t v = decode(ld, b, w);

	if (v >= ld->acked[b] && v <= ld->att[b])
		return;
	if (!ld->bad[b]) {
		ld->bad[b] = 1;
		ld->n_lost++;
	}
	if (v < 0)
		say("%s: block %u corrupt (header blk=%llu ver=%llu; acked %u, attempted %u)", when, b,
		    (unsigned long long)w[1], (unsigned long long)w[2], ld->acked[b], ld->att[b]);
	else
		say("%s: block %u holds version %lld; acked %u, attempted %u", when, b, (long long)v,
		    ld->acked[b], ld->att[b]);
}

static int log_line(struct load *ld, char kind, uint32_t b, uint32_t v)
{
	char line[64];
	int n;

	if (ld->logfd < 0)
		return 0;
	n = snprintf(line, sizeof(line), "%c %u %u\n", kind, b, v);
	if (write(ld->logfd, line, (size_t)n) != n) {
		say("log write failed: %s", strerror(errno));
		return -1;
	}
	return 0;
}

/* Replay an existing log (or start one with \p seed). 0 or -1. */
static int log_open(struct load *ld, const char *path, bool must_exist)
{
	FILE *f = fopen(path, "r");
	char line[128];
	unsigned long long a, b;
	char kind;

	if (f) {
		bool head = false;

		while (fgets(line, sizeof(line), f)) {
			if (sscanf(line, " %c %llu %llu", &kind, &a, &b) != 3)
				continue; /* a torn last line after kill -9 */
			if (kind == 'S') {
				if (head || b == 0 || b > MAX_BLOCKS) {
					say("log %s: bad header: %s", path, line);
					fclose(f);
					return -1;
				}
				ld->pseed = a;
				if (ld->nblk == 0)
					ld->nblk = (uint32_t)b;
				if (b != ld->nblk) {
					say("log %s is for %llu blocks, not %u", path, b, ld->nblk);
					fclose(f);
					return -1;
				}
				head = true;
				ld->acked = calloc(ld->nblk, sizeof(uint32_t));
				ld->att = calloc(ld->nblk, sizeof(uint32_t));
				if (!ld->acked || !ld->att) {
					fclose(f);
					return -1;
				}
				continue;
			}
			if (!head || a >= ld->nblk || b > UINT32_MAX) {
				say("log %s: bad line: %s", path, line);
				fclose(f);
				return -1;
			}
			if (kind == 'I' && b > ld->att[a])
				ld->att[a] = (uint32_t)b;
			if (kind == 'A') {
				if (b > ld->acked[a])
					ld->acked[a] = (uint32_t)b;
				if (b > ld->att[a])
					ld->att[a] = (uint32_t)b;
				ld->n_acked++;
			}
		}
		fclose(f);
		if (!head) {
			say("log %s has no header", path);
			return -1;
		}
	} else if (must_exist) {
		say("cannot read log %s: %s", path, strerror(errno));
		return -1;
	}
	ld->logfd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (ld->logfd < 0) {
		say("cannot open log %s: %s", path, strerror(errno));
		return -1;
	}
	if (!f) {
		char head[64];
		int n = snprintf(head, sizeof(head), "S %llu %u\n", (unsigned long long)ld->pseed,
				 ld->nblk);

		if (write(ld->logfd, head, (size_t)n) != n)
			return -1;
	}
	return 0;
}

/* ---- session ------------------------------------------------------------ */

static void lane_reset(struct lane *l);

/* The session cannot go on; torn down by the loop, outside libiscsi. */
static void broken(struct load *ld, const char *why)
{
	if (!ld->broken)
		snprintf(ld->why, sizeof(ld->why), "%s", why);
	ld->broken = true;
}

/* With --exit-on-error, an IO that failed while loading ends the process. */
static void io_failed(const struct load *ld, const char *what)
{
	if (!ld->exit_on_error || ld->phase != P_LOAD)
		return;
	say("%s: stopping (--exit-on-error)", what);
	exit(3);
}

/* Drop the session (\p why: logged unless NULL); what was in flight stays pending. */
static void teardown(struct load *ld, const char *why)
{
	uint64_t now = ts_now_ns();

	if (!ld->ctx)
		return;
	if (why)
		say("session %s (%s)", ld->sess == S_UP ? "lost" : "attempt failed", why);
	if (why && ld->sess == S_UP)
		io_failed(ld, "session lost");
	ld->tearing = true;
	iscsi_scsi_cancel_all_tasks(ld->ctx);
	iscsi_destroy_context(ld->ctx);
	ld->ctx = NULL;
	ld->tearing = false;
	ld->broken = false;
	if (ld->setup_task) {
		scsi_free_scsi_task(ld->setup_task);
		ld->setup_task = NULL;
	}
	for (unsigned i = 0; i < ld->qd; i++)
		lane_reset(&ld->lanes[i]);
	ld->sess = S_DOWN;
	if (ld->redirected) {
		ld->redirected = false;
		ld->next_attempt = now; /* portal: the address the redirect gave */
		return;
	}
	snprintf(ld->portal, sizeof(ld->portal), "%s", ld->home);
	ld->redirects = 0;
	ld->next_attempt = now + ld->backoff;
	ld->backoff = ld->backoff * 2 > BACKOFF_MAX ? BACKOFF_MAX : ld->backoff * 2;
}

static void setup_next(struct load *ld);

static void setup_done(struct iscsi_context *iscsi, int status, void *command_data,
		       void *private_data)
{
	struct load *ld = private_data;
	struct scsi_task *t = ld->setup_task;

	(void)iscsi;
	(void)command_data;
	ld->setup_task = NULL;
	if (ld->tearing || status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
	    status == SCSI_STATUS_TIMEOUT) {
		if (t)
			scsi_free_scsi_task(t);
		broken(ld, "setup command lost");
		return;
	}
	if (status != SCSI_STATUS_GOOD) {
		if (t)
			scsi_free_scsi_task(t);
		if (++ld->setup_tries > SETUP_TRIES)
			broken(ld, "TEST UNIT READY keeps failing");
		else
			setup_next(ld);
		return;
	}
	if (ld->setup_step == 0) { /* TEST UNIT READY: the unit attention is consumed */
		ld->setup_step = 1;
		scsi_free_scsi_task(t);
		setup_next(ld);
		return;
	}
	{
		struct scsi_readcapacity16 *rc = scsi_datain_unmarshall(t);

		if (!rc || rc->block_length == 0 || rc->block_length > BLK ||
		    BLK % rc->block_length) {
			broken(ld, "READ CAPACITY(16): unusable block length");
		} else {
			ld->lbsize = rc->block_length;
			ld->lun_bytes = (rc->returned_lba + 1) * (uint64_t)rc->block_length;
			ld->sess = S_UP;
			ld->backoff = BACKOFF_MIN;
			say("session up (lun %llu bytes, block %u)", (unsigned long long)ld->lun_bytes,
			    ld->lbsize);
		}
		scsi_free_scsi_task(t);
	}
}

static void setup_next(struct load *ld)
{
	if (ld->setup_step == 0)
		ld->setup_task = iscsi_testunitready_task(ld->ctx, ld->lun, setup_done, ld);
	else
		ld->setup_task = iscsi_readcapacity16_task(ld->ctx, ld->lun, setup_done, ld);
	ld->setup_deadline = ts_now_ns() + ld->io_timeout;
	if (!ld->setup_task)
		broken(ld, "cannot queue a setup command");
}

static void logged_in(struct iscsi_context *iscsi, int status, void *command_data,
		      void *private_data)
{
	struct load *ld = private_data;

	(void)iscsi;
	(void)command_data;
	if (ld->tearing || ld->sess != S_CONNECTING)
		return;
	if (status == SCSI_STATUS_REDIRECT && ld->redirects < 4 && iscsi_get_target_address(iscsi)) {
		const char *to = iscsi_get_target_address(iscsi);
		size_t n = strcspn(to, ",");

		if (n > 0 && n < sizeof(ld->portal)) {
			snprintf(ld->portal, sizeof(ld->portal), "%.*s", (int)n, to);
			ld->redirects++;
			say("login redirected to %s", ld->portal);
			ld->redirected = true; /* reconnect there now, no backoff */
			broken(ld, "redirected");
			return;
		}
	}
	if (status != SCSI_STATUS_GOOD) {
		broken(ld, iscsi_get_error(iscsi));
		return;
	}
	ld->redirects = 0;
	ld->n_sessions++;
	ld->sess = S_SETUP;
	ld->setup_step = 0;
	ld->setup_tries = 0;
	setup_next(ld);
}

static void tcp_connected(struct iscsi_context *iscsi, int status, void *command_data,
			  void *private_data)
{
	struct load *ld = private_data;

	(void)command_data;
	if (ld->tearing || ld->sess != S_CONNECTING)
		return;
	if (status != SCSI_STATUS_GOOD || iscsi_login_async(iscsi, logged_in, ld))
		broken(ld, iscsi_get_error(iscsi));
}

/*
 * TCP connect and login as two steps: iscsi_full_connect_async() keeps state
 * only its callback frees, so giving up on it (timeout) would leak.
 */
static void connect_start(struct load *ld)
{
	struct iscsi_context *c = iscsi_create_context(INITIATOR);

	ld->sess = S_CONNECTING;
	ld->connect_deadline = ts_now_ns() + CONNECT_TIMEOUT;
	ld->ctx = c;
	if (!c) {
		ld->sess = S_DOWN;
		ld->next_attempt = ts_now_ns() + ld->backoff;
		return;
	}
	if (iscsi_set_targetname(c, ld->target) || iscsi_set_session_type(c, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE_CRC32C) ||
	    (ld->user[0] && iscsi_set_initiator_username_pwd(c, ld->user, ld->secret))) {
		teardown(ld, "context setup failed");
		return;
	}
	iscsi_set_noautoreconnect(c, 1);
	iscsi_set_reconnect_max_retries(c, 0);
	iscsi_set_tcp_syncnt(c, 2);
	iscsi_set_tcp_user_timeout(c, (int)(ld->io_timeout / MS));
	if (iscsi_connect_async(c, ld->portal, tcp_connected, ld))
		teardown(ld, iscsi_get_error(c));
}

/* ---- lanes -------------------------------------------------------------- */

/* Forget the command in flight; what it was for stays pending. */
static void lane_reset(struct lane *l)
{
	if (l->task) {
		scsi_free_scsi_task(l->task);
		l->task = NULL;
	}
	if (l->op == OP_READ && l->ld->phase != P_VERIFY) {
		for (uint32_t i = 0; i < l->rcnt; i++)
			l->ld->busy[l->rblk + i] = 0;
		l->rpending = false;
	}
	if (l->op == OP_WRITE || l->op == OP_FLUSH)
		l->ld->n_retries++;
	l->op = OP_NONE;
}

static void lane_done(struct iscsi_context *iscsi, int status, void *command_data,
		      void *private_data);

static int lane_issue(struct lane *l, enum op op)
{
	struct load *ld = l->ld;
	uint32_t per = BLK / ld->lbsize;

	l->op = op;
	l->deadline = ts_now_ns() + ld->io_timeout;
	switch (op) {
	case OP_WRITE:
		for (uint32_t i = 0; i < l->wcnt; i++)
			stamp(l->buf + (size_t)i * WORDS, ld->pseed, l->wblk + i, l->wver);
		l->iov.iov_base = l->buf;
		l->iov.iov_len = (size_t)l->wcnt * BLK;
		l->task = iscsi_write16_iov_task(ld->ctx, ld->lun, (uint64_t)l->wblk * per, NULL,
						 l->wcnt * BLK, (int)ld->lbsize, 0, 0, 0, 0, 0,
						 lane_done, l, &l->iov, 1);
		break;
	case OP_FLUSH:
		l->task = iscsi_synchronizecache16_task(ld->ctx, ld->lun, 0, 0, 0, 0, lane_done, l);
		break;
	case OP_READ:
		l->iov.iov_base = l->buf;
		l->iov.iov_len = (size_t)l->rcnt * BLK;
		l->task = iscsi_read16_iov_task(ld->ctx, ld->lun, (uint64_t)l->rblk * per,
						l->rcnt * BLK, (int)ld->lbsize, 0, 0, 0, 0, 0,
						lane_done, l, &l->iov, 1);
		break;
	default:
		break;
	}
	if (!l->task) {
		l->op = OP_NONE;
		broken(ld, "cannot queue a command");
		return -1;
	}
	return 0;
}

static bool transient(int status, const struct scsi_task *t)
{
	return status == SCSI_STATUS_BUSY || status == SCSI_STATUS_TASK_SET_FULL ||
	       (status == SCSI_STATUS_CHECK_CONDITION && t &&
		t->sense.key == SCSI_SENSE_UNIT_ATTENTION);
}

static void lane_done(struct iscsi_context *iscsi, int status, void *command_data,
		      void *private_data)
{
	struct lane *l = private_data;
	struct load *ld = l->ld;
	struct scsi_task *t = l->task;
	enum op op = l->op;

	(void)iscsi;
	(void)command_data;
	if (ld->tearing || status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
	    status == SCSI_STATUS_TIMEOUT) {
		lane_reset(l); /* the session is going (or must go) */
		broken(ld, status == SCSI_STATUS_CANCELLED ? "command cancelled" : "command failed");
		return;
	}
	l->task = NULL;
	l->op = OP_NONE;
	if (status != SCSI_STATUS_GOOD) {
		bool tr = transient(status, t);

		if (!tr || (ld->exit_on_error && ld->phase == P_LOAD))
			say("%s of block %u: status 0x%x sense %s/%s", op == OP_READ ? "read" :
			    op == OP_WRITE ? "write" : "flush", op == OP_READ ? l->rblk : l->wblk,
			    (unsigned)status, scsi_sense_key_str(t->sense.key),
			    scsi_sense_ascq_str(t->sense.ascq));
		io_failed(ld, "command failed");
		if (!tr)
			l->not_before = ts_now_ns() + ERROR_DELAY;
		if (op == OP_READ) {
			ld->n_read_errors++;
			if (ld->phase != P_VERIFY) { /* a check read: skip it */
				for (uint32_t i = 0; i < l->rcnt; i++)
					ld->busy[l->rblk + i] = 0;
				l->rpending = false;
				l->want_read = false;
			}
		} else {
			ld->n_retries++; /* the write is sent again, then flushed again */
		}
		scsi_free_scsi_task(t);
		return;
	}
	scsi_free_scsi_task(t);
	switch (op) {
	case OP_WRITE:
		lane_issue(l, OP_FLUSH);
		break;
	case OP_FLUSH:
		for (uint32_t i = 0; i < l->wcnt; i++) {
			ld->acked[l->wblk + i] = l->wver;
			ld->busy[l->wblk + i] = 0;
			ld->n_acked++;
			if (log_line(ld, 'A', l->wblk + i, l->wver))
				g_stop = 2;
		}
		l->wpending = false;
		l->want_read = !ld->fill;
		break;
	case OP_READ:
		for (uint32_t i = 0; i < l->rcnt; i++) {
			check(ld, l->rblk + i, l->buf + (size_t)i * WORDS,
			      ld->phase == P_VERIFY ? "verify" : "read");
			if (ld->phase != P_VERIFY)
				ld->busy[l->rblk + i] = 0;
		}
		ld->n_reads++;
		if (ld->phase == P_VERIFY)
			ld->n_verified += l->rcnt;
		l->rpending = false;
		l->want_read = false;
		break;
	default:
		break;
	}
}

/* An idle block, or UINT32_MAX (all busy: only with nblk <= qd). */
static uint32_t pick(struct load *ld)
{
	for (int tries = 0; tries < 64; tries++) {
		uint32_t b = (uint32_t)(rnd(ld) % ld->nblk);

		if (!ld->busy[b])
			return b;
	}
	return UINT32_MAX;
}

/*
 * --fill: the next up to SPAN blocks in order that share a version, written
 * as one command; once every block was sent and acknowledged, the load stops
 * (verify follows).
 */
static void fill_next(struct lane *l)
{
	struct load *ld = l->ld;
	uint32_t b = ld->fnext, n = 0;

	if (b >= ld->nblk) {
		bool pending = false;

		for (unsigned i = 0; i < ld->qd; i++)
			pending |= ld->lanes[i].wpending;
		if (!pending && !g_stop)
			g_stop = 1;
		return;
	}
	if (ld->att[b] == UINT32_MAX)
		return;
	while (n < SPAN && b + n < ld->nblk && ld->att[b + n] == ld->att[b])
		n++;
	l->wblk = b;
	l->wcnt = n;
	l->wver = ld->att[b] + 1;
	ld->fnext = b + n;
	for (uint32_t i = 0; i < n; i++) {
		ld->att[b + i] = l->wver;
		ld->busy[b + i] = 1;
		if (log_line(ld, 'I', b + i, l->wver)) {
			g_stop = 2;
			return;
		}
	}
	l->wpending = true;
	lane_issue(l, OP_WRITE);
}

/* Give an idle lane its next command. */
static void lane_next(struct lane *l, uint64_t now)
{
	struct load *ld = l->ld;

	if (l->op != OP_NONE || now < l->not_before)
		return;
	if (ld->phase == P_VERIFY) {
		if (!l->rpending && ld->vnext < ld->nblk) {
			l->rblk = ld->vnext;
			l->rcnt = ld->nblk - ld->vnext < SPAN ? ld->nblk - ld->vnext : SPAN;
			ld->vnext += l->rcnt;
			l->rpending = true;
		}
		if (l->rpending)
			lane_issue(l, OP_READ);
		return;
	}
	if (ld->phase != P_LOAD)
		return;
	if (l->wpending) {
		lane_issue(l, OP_WRITE);
		return;
	}
	if (l->want_read) {
		uint32_t b = pick(ld);

		l->want_read = false;
		if (b != UINT32_MAX) {
			ld->busy[b] = 1;
			l->rblk = b;
			l->rcnt = 1;
			l->rpending = true;
			lane_issue(l, OP_READ);
			return;
		}
	}
	if (ld->fill) {
		fill_next(l);
		return;
	}
	{
		uint32_t b = pick(ld);

		if (b == UINT32_MAX || ld->att[b] == UINT32_MAX)
			return;
		ld->busy[b] = 1;
		l->wblk = b;
		l->wcnt = 1;
		l->wver = ++ld->att[b];
		l->wpending = true;
		if (log_line(ld, 'I', b, l->wver)) {
			g_stop = 2;
			return;
		}
		lane_issue(l, OP_WRITE);
	}
}

static bool lanes_idle(const struct load *ld)
{
	for (unsigned i = 0; i < ld->qd; i++)
		if (ld->lanes[i].op != OP_NONE)
			return false;
	return true;
}

/* Phase changes: stop -> drain (in flight finishes) -> verify -> done. */
static void advance(struct load *ld, uint64_t now)
{
	if (ld->phase == P_LOAD && g_stop) {
		ld->phase = P_DRAIN;
		ld->drain_deadline = now + ld->io_timeout;
		say("stopping: draining");
	}
	if (ld->phase == P_DRAIN && (lanes_idle(ld) || now >= ld->drain_deadline || g_stop > 1)) {
		if (!lanes_idle(ld))
			teardown(ld, "drain timeout");
		for (unsigned i = 0; i < ld->qd; i++) {
			struct lane *l = &ld->lanes[i];

			if (l->wpending) {
				ld->n_unacked++;
				ld->busy[l->wblk] = 0;
				l->wpending = false;
			}
			l->rpending = l->want_read = false;
			l->not_before = 0;
		}
		memset(ld->busy, 0, ld->nblk);
		ld->phase = P_VERIFY;
		ld->vnext = 0;
		ld->verify_deadline = now + ld->verify_budget;
		say("verifying %u blocks", ld->nblk);
	}
	if (ld->phase == P_VERIFY) {
		bool pending = ld->vnext < ld->nblk;

		for (unsigned i = 0; i < ld->qd; i++)
			pending = pending || ld->lanes[i].rpending;
		if (!pending) {
			ld->phase = P_DONE;
		} else if (now >= ld->verify_deadline || g_stop > 1) {
			teardown(ld, "verify budget exhausted");
			for (unsigned i = 0; i < ld->qd; i++)
				if (ld->lanes[i].rpending)
					ld->n_unreadable += ld->lanes[i].rcnt;
			ld->n_unreadable += ld->nblk - ld->vnext;
			ld->phase = P_DONE;
		}
	}
}

static void expire(struct load *ld, uint64_t now)
{
	if (ld->sess == S_CONNECTING && now >= ld->connect_deadline) {
		teardown(ld, "connect timeout");
		return;
	}
	if (ld->sess == S_SETUP && ld->setup_task && now >= ld->setup_deadline) {
		teardown(ld, "setup timeout");
		return;
	}
	for (unsigned i = 0; i < ld->qd; i++)
		if (ld->lanes[i].op != OP_NONE && now >= ld->lanes[i].deadline) {
			teardown(ld, "IO timeout");
			return;
		}
}

/* One turn of the event loop: (re)connect, wait up to 20 ms, service, time out. */
static void pump(struct load *ld, bool may_connect)
{
	struct pollfd pfd = { .fd = -1 };

	if (ld->sess == S_DOWN && may_connect && ts_now_ns() >= ld->next_attempt)
		connect_start(ld);
	if (ld->ctx && !ld->broken) {
		pfd.fd = iscsi_get_fd(ld->ctx);
		pfd.events = (short)iscsi_which_events(ld->ctx);
	}
	if (poll(&pfd, 1, 20) > 0 && pfd.revents && ld->ctx && !ld->broken &&
	    iscsi_service(ld->ctx, pfd.revents) < 0)
		broken(ld, iscsi_get_error(ld->ctx));
	if (ld->broken)
		teardown(ld, ld->why);
	expire(ld, ts_now_ns());
}

static void progress(struct load *ld, uint64_t t0, uint64_t now)
{
	static const char *names[] = { "down", "connecting", "setup", "up" };

	say("t=%.1fs session=%s acked=%llu retries=%llu sessions=%llu reads=%llu "
	    "read_errors=%llu lost=%llu", (double)(now - t0) / 1e9, names[ld->sess],
	    (unsigned long long)ld->n_acked, (unsigned long long)ld->n_retries,
	    (unsigned long long)ld->n_sessions, (unsigned long long)ld->n_reads,
	    (unsigned long long)ld->n_read_errors, (unsigned long long)ld->n_lost);
}

static void run(struct load *ld, uint64_t duration, uint64_t interval)
{
	uint64_t t0 = ts_now_ns(), last = t0;

	while (ld->phase != P_DONE) {
		uint64_t now = ts_now_ns();

		if (duration && now - t0 >= duration && !g_stop)
			g_stop = 1;
		advance(ld, now);
		if (ld->phase == P_DONE)
			break;
		if (ld->sess == S_UP)
			for (unsigned i = 0; i < ld->qd && ld->ctx && !ld->broken; i++)
				lane_next(&ld->lanes[i], now);
		pump(ld, ld->phase != P_DRAIN);
		now = ts_now_ns();
		if (interval && now - last >= interval) {
			last = now;
			progress(ld, t0, now);
		}
	}
	teardown(ld, NULL);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: ts-faults-load [-n blocks] [-q qd] [-d seconds] [-l log] [-V] [-s seed]\n"
		"                      [-t io_timeout_ms] [-T verify_timeout_ms] [-u user -p secret]\n"
		"                      [-i interval_ms] [-x] [-F] URL\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "blocks", required_argument, NULL, 'n' },
		{ "qd", required_argument, NULL, 'q' },
		{ "duration", required_argument, NULL, 'd' },
		{ "log", required_argument, NULL, 'l' },
		{ "verify", no_argument, NULL, 'V' },
		{ "seed", required_argument, NULL, 's' },
		{ "io-timeout-ms", required_argument, NULL, 't' },
		{ "verify-timeout-ms", required_argument, NULL, 'T' },
		{ "interval-ms", required_argument, NULL, 'i' },
		{ "exit-on-error", no_argument, NULL, 'x' },
		{ "fill", no_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	static struct load L;
	struct load *ld = &L;
	struct iscsi_context *pc;
	struct iscsi_url *u;
	const char *logpath = NULL, *user = NULL, *secret = NULL;
	unsigned long long blocks = 0, seed = 0;
	double duration = 0;
	uint64_t interval = 1000 * MS;
	bool verify_only = false, have_seed = false;
	struct sigaction sa = { .sa_handler = on_signal };
	int c, rc = 2;

	ld->qd = 4;
	ld->io_timeout = 30000 * MS;
	ld->verify_budget = 300000 * MS;
	ld->logfd = -1;
	ld->backoff = BACKOFF_MIN;
	while ((c = getopt_long(argc, argv, "n:q:d:l:Vs:t:T:u:p:i:xF", opts, NULL)) != -1) {
		switch (c) {
		case 'n': blocks = strtoull(optarg, NULL, 0); break;
		case 'q': ld->qd = (unsigned)strtoul(optarg, NULL, 0); break;
		case 'd': duration = strtod(optarg, NULL); break;
		case 'l': logpath = optarg; break;
		case 'V': verify_only = true; break;
		case 's': seed = strtoull(optarg, NULL, 0); have_seed = true; break;
		case 't': ld->io_timeout = strtoull(optarg, NULL, 0) * MS; break;
		case 'T': ld->verify_budget = strtoull(optarg, NULL, 0) * MS; break;
		case 'u': user = optarg; break;
		case 'p': secret = optarg; break;
		case 'i': interval = strtoull(optarg, NULL, 0) * MS; break;
		case 'x': ld->exit_on_error = true; break;
		case 'F': ld->fill = true; break;
		default: usage(); return 2;
		}
	}
	if (optind != argc - 1 || ld->qd == 0 || ld->qd > MAX_QD || blocks > MAX_BLOCKS ||
	    ld->io_timeout == 0 || duration < 0 || (verify_only && !logpath) || !user != !secret) {
		usage();
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	pc = iscsi_create_context(INITIATOR);
	u = pc ? iscsi_parse_full_url(pc, argv[optind]) : NULL;
	if (!u) {
		say("bad URL %s: %s", argv[optind], pc ? iscsi_get_error(pc) : "no memory");
		goto out;
	}
	snprintf(ld->portal, sizeof(ld->portal), "%s", u->portal);
	snprintf(ld->home, sizeof(ld->home), "%s", u->portal);
	snprintf(ld->target, sizeof(ld->target), "%s", u->target);
	snprintf(ld->user, sizeof(ld->user), "%s", user ? user : u->user);
	snprintf(ld->secret, sizeof(ld->secret), "%s", secret ? secret : u->passwd);
	ld->lun = u->lun;
	iscsi_destroy_url(u);
	iscsi_destroy_context(pc);
	pc = NULL;

	ld->rng = have_seed ? seed : ts_now_ns() ^ (uint64_t)getpid();
	ld->pseed = splitmix(ld->rng ^ 0x5453464c54ull);
	ld->nblk = (uint32_t)blocks;

	/* Size: from the log, from -n, or from the LUN (first session). */
	if (logpath && (verify_only || ld->nblk || access(logpath, F_OK) == 0) &&
	    log_open(ld, logpath, verify_only))
		goto out;
	if (ld->nblk == 0) {
		uint64_t t0 = ts_now_ns();

		while (ld->sess != S_UP && !g_stop && ts_now_ns() - t0 < ld->io_timeout)
			pump(ld, true);
		if (ld->sess != S_UP) {
			say("no session with %s within the IO timeout", ld->portal);
			goto out;
		}
		ld->nblk = ld->lun_bytes / BLK > MAX_BLOCKS ? MAX_BLOCKS : (uint32_t)(ld->lun_bytes / BLK);
		if (ld->nblk == 0) {
			say("LUN smaller than one block");
			goto out;
		}
		if (logpath && ld->logfd < 0 && log_open(ld, logpath, false))
			goto out;
	}
	if (!ld->acked) {
		ld->acked = calloc(ld->nblk, sizeof(uint32_t));
		ld->att = calloc(ld->nblk, sizeof(uint32_t));
	}
	ld->busy = calloc(ld->nblk, 1);
	ld->bad = calloc(ld->nblk, 1);
	if (!ld->acked || !ld->att || !ld->busy || !ld->bad)
		goto out;
	for (unsigned i = 0; i < ld->qd; i++) {
		ld->lanes[i].ld = ld;
		ld->lanes[i].buf = aligned_alloc(64, (size_t)SPAN * BLK);
		if (!ld->lanes[i].buf)
			goto out;
	}
	if (ld->lun_bytes && (uint64_t)ld->nblk * BLK > ld->lun_bytes) {
		say("%u blocks do not fit in the LUN (%llu bytes)", ld->nblk,
		    (unsigned long long)ld->lun_bytes);
		goto out;
	}
	if (verify_only)
		g_stop = 1;
	say("%s %u blocks of %s, qd %u", verify_only ? "verifying" : "loading", ld->nblk,
	    argv[optind], ld->qd);
	run(ld, (uint64_t)(duration * 1e9), interval);
	if (ld->lun_bytes && (uint64_t)ld->nblk * BLK > ld->lun_bytes)
		say("the LUN shrank to %llu bytes", (unsigned long long)ld->lun_bytes);
	printf("acked=%llu unacked=%llu retries=%llu sessions=%llu reads=%llu read_errors=%llu "
	       "verified=%llu unreadable=%llu lost=%llu\n",
	       (unsigned long long)ld->n_acked, (unsigned long long)ld->n_unacked,
	       (unsigned long long)ld->n_retries, (unsigned long long)ld->n_sessions,
	       (unsigned long long)ld->n_reads, (unsigned long long)ld->n_read_errors,
	       (unsigned long long)ld->n_verified, (unsigned long long)ld->n_unreadable,
	       (unsigned long long)ld->n_lost);
	rc = ld->n_lost || ld->n_unreadable ? 1 : 0;
out:
	if (pc)
		iscsi_destroy_context(pc);
	teardown(ld, NULL);
	if (ld->logfd >= 0 && close(ld->logfd) && rc == 0)
		rc = 2;
	for (unsigned i = 0; i < ld->qd && i < MAX_QD; i++)
		free(ld->lanes[i].buf);
	free(ld->acked);
	free(ld->att);
	free(ld->busy);
	free(ld->bad);
	return rc;
}
