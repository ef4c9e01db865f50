/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The LUN engine: byte-addressed asynchronous IO on one iSCSI LUN.
 *
 * Workload. The FUSE front hands us reads and writes at any byte offset and
 * length (the loop device sends whole blocks, but anyone may pwrite() the
 * FUSE file directly), and fsyncs. We turn them into READ(16), WRITE(16) and
 * SYNCHRONIZE CACHE(16) (and UNMAP for discards) on a libiscsi context driven by the attach thread's
 * poll loop; many commands may be in flight at once.
 *
 * Alignment. A request covering whole logical blocks goes straight to the
 * target with the caller's buffer as the data buffer. Any other request is
 * widened to the blocks it touches: a read reads the span into a bounce
 * buffer and copies the asked bytes out; a write reads the span, patches the
 * bytes in and writes the span back (read-modify-write).
 *
 * Ordering invariant. Two requests conflict when their block spans overlap
 * and at least one of them writes (an unmap counts as a write); a flush
 * conflicts with every write and unmap. A
 * request is started only when it conflicts with nothing in flight, and
 * requests wait in one FIFO: once anything waits, later requests queue
 * behind it. So a read-modify-write never interleaves with another write to
 * the same blocks (no lost update), a flush covers every write completed
 * before it was submitted, and overlapping requests complete in submission
 * order.
 *
 * Failures. libiscsi reconnects a dropped session by itself and replays the
 * commands it had queued (with unit attentions of the new session consumed).
 * A command that still ends in a transient status (CHECK CONDITION / UNIT
 * ATTENTION, BUSY, TASK SET FULL, timeout, cancelled) is reissued up to
 * LUN_MAX_TRIES times; then, like any other failure, the request completes
 * with -EIO (-EROFS for a write-protected LUN, -EINVAL for an LBA out of
 * range). If libiscsi reports the session broken (no reconnect possible)
 * for longer than the IO timeout, every pending request fails with -EIO so
 * no caller waits forever; lun_fail_all() does the same on demand (detach).
 * The first connect and login are bounded by the IO timeout too, and fail
 * with the socket's own errno (refused, unreachable, timed out), which is
 * what the node service tells the user when the target cannot be reached.
 *
 * THREAD SAFETY: none. lun_connect() runs on the caller's thread; after
 * that, every call is made from the attach thread, which owns the context.
 */
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach_priv.h"

#define LUN_MAX_TRIES 8
#define LUN_DEFAULT_TIMEOUT_S 30
#define LUN_DEFAULT_INITIATOR "iqn.2026-11.io.tessera:attach"

struct lun_io {
	struct lun_io *prev, *next; /* in-flight list or wait FIFO */
	struct lun *l;
	enum lun_op op;
	uint64_t off, len;
	uint8_t *buf;
	struct attach_span span;
	uint8_t *bounce; /* span-sized, for unaligned requests */
	int stage;       /* unaligned write: 0 reading the span, 1 writing it */
	int tries;
	struct scsi_iovec iov;
	struct unmap_list unmap;
	lun_cb cb;
	void *arg;
};

struct lun {
	struct iscsi_context *iscsi;
	int lun_id;
	uint64_t size;
	uint32_t bs;
	bool lbpme, lbprz;
	struct lun_io *inflight;            /* doubly linked, unordered */
	struct lun_io *wait_head, *wait_tail;
	unsigned pending;
	bool failing;         /* lun_fail_all() running: no retries, no new commands */
	uint64_t bad_since;   /* ns; session errors without recovery since then, 0 = healthy */
	uint64_t fail_after;  /* ns of unrecovered session errors before IO fails */
	bool cache_lost;      /* a reset/power-on UA since the last flush: fail the next one */
};

static int io_issue(struct lun_io *io);

uint64_t lun_size(const struct lun *l)
{
	return __atomic_load_n(&l->size, __ATOMIC_ACQUIRE);
}

void lun_set_size(struct lun *l, uint64_t size)
{
	__atomic_store_n(&l->size, size, __ATOMIC_RELEASE);
}

uint32_t lun_block_size(const struct lun *l)
{
	return l->bs;
}

bool lun_can_unmap_zero(const struct lun *l)
{
	return l->lbpme && l->lbprz;
}

unsigned lun_pending(const struct lun *l)
{
	return l->pending;
}

int lun_fd(struct lun *l)
{
	return iscsi_get_fd(l->iscsi);
}

int lun_events(struct lun *l)
{
	return iscsi_which_events(l->iscsi);
}

/* ---- connect ---- */

/*
 * libiscsi reports login failures as text; sort them into errnos callers can
 * act on. Socket errors never get here: login() reads them from the socket.
 */
static int connect_errno(const char *msg)
{
	if (!msg)
		return -EIO;
	if (strstr(msg, "uthenticat") || strstr(msg, "uthoriz") || strstr(msg, "CHAP"))
		return -EACCES;
	if (strstr(msg, "not found") || strstr(msg, "Not Found"))
		return -ENOENT;
	if (strstr(msg, "timed out"))
		return -ETIMEDOUT; /* the target took the connection but never answered */
	if (strstr(msg, "reconnect"))
		return -ECONNRESET; /* the connection dropped before the login completed */
	if (strstr(msg, "onnection refused") || strstr(msg, "connect"))
		return -ECONNREFUSED;
	return -EIO;
}

struct login_state {
	bool done;
	int status;
};

static void login_done(struct iscsi_context *iscsi, int status, void *data, void *arg)
{
	struct login_state *st = arg;

	(void)iscsi;
	(void)data;
	st->done = true;
	st->status = status;
}

/*
 * Give up a connect or login still in flight: dissolve the socket's
 * association (connect with AF_UNSPEC) so the pending connect ends in an
 * error, and let libiscsi see that error once, which completes its connect
 * callback and frees what it allocated for it.
 */
static void abort_connect(struct lun *l)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };
	struct pollfd p = { .fd = iscsi_get_fd(l->iscsi), .events = POLLIN | POLLOUT };

	if (p.fd < 0)
		return;
	(void)connect(p.fd, &sa, sizeof(sa));
	if (poll(&p, 1, 100) > 0)
		(void)iscsi_service(l->iscsi, p.revents); /* fails: that is the point */
}

/*
 * TCP connect + iSCSI login, bounded by \p timeout_s in all. libiscsi's own
 * synchronous connect waits for the kernel's SYN retries (over two minutes
 * when the portal's host does not answer) and reports every socket error as
 * "Can not reconnect right now"; here a refused, unreachable or silent
 * portal fails with its own errno (-ECONNREFUSED, -EHOSTUNREACH,
 * -ENETUNREACH, -ETIMEDOUT...) within the bound, so the node's caller (a
 * CSI NodeStageVolume under the CO's deadline) can say what is wrong.
 */
static int login(struct lun *l, const char *portal, int lun_id, int timeout_s)
{
	struct login_state st = { 0 };
	uint64_t deadline = ts_now_ns() + (uint64_t)timeout_s * 1000000000ull;

	if (iscsi_full_connect_async(l->iscsi, portal, lun_id, login_done, &st))
		return connect_errno(iscsi_get_error(l->iscsi));
	while (!st.done) {
		struct pollfd p = { .fd = iscsi_get_fd(l->iscsi), .events = 0 };
		uint64_t now = ts_now_ns();
		int n, ms;

		if (now >= deadline) {
			abort_connect(l);
			return -ETIMEDOUT;
		}
		ms = (int)((deadline - now) / 1000000u) + 1;
		if (ms > 1000)
			ms = 1000; /* libiscsi scans its PDU timeouts on every service call */
		if (p.fd >= 0)
			p.events = (short)iscsi_which_events(l->iscsi);
		n = poll(&p, p.events ? 1 : 0, ms);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n > 0 && (p.revents & (POLLERR | POLLHUP))) {
			int err = 0;
			socklen_t len = sizeof(err);

			/* The socket's own error says refused / unreachable / reset. */
			if (getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) {
				/* Let libiscsi run its own error path (it frees its connect state). */
				(void)iscsi_service(l->iscsi, p.revents);
				return -err;
			}
		}
		if (iscsi_service(l->iscsi, n > 0 ? p.revents : 0) < 0)
			return connect_errno(iscsi_get_error(l->iscsi));
	}
	return st.status == SCSI_STATUS_GOOD ? 0 : connect_errno(iscsi_get_error(l->iscsi));
}

static int lun_read_capacity(struct lun *l)
{
	struct scsi_task *t;
	int rc = -EIO;

	t = iscsi_readcapacity16_sync(l->iscsi, l->lun_id);
	if (t && t->status == SCSI_STATUS_GOOD) {
		struct scsi_readcapacity16 *rc16 = scsi_datain_unmarshall(t);
		if (rc16) {
			l->bs = rc16->block_length;
			l->size = (rc16->returned_lba + 1) * (uint64_t)rc16->block_length;
			l->lbpme = rc16->lbpme;
			l->lbprz = rc16->lbprz;
			rc = 0;
		}
	}
	if (t)
		scsi_free_scsi_task(t);
	if (rc == 0)
		goto check;
	t = iscsi_readcapacity10_sync(l->iscsi, l->lun_id, 0, 0);
	if (t && t->status == SCSI_STATUS_GOOD) {
		struct scsi_readcapacity10 *rc10 = scsi_datain_unmarshall(t);
		if (rc10) {
			l->bs = rc10->block_size;
			l->size = ((uint64_t)rc10->lba + 1) * rc10->block_size;
			rc = 0;
		}
	}
	if (t)
		scsi_free_scsi_task(t);
check:
	if (rc == 0 && (l->bs < 512 || l->bs > 4096 || (l->bs & (l->bs - 1))))
		rc = -ENOTSUP; /* the loop device takes 512..PAGE_SIZE */
	return rc;
}

int lun_connect(const struct ts_attach_opts *o, struct lun **out)
{
	struct iscsi_url *url = NULL;
	struct lun *l;
	const char *user, *secret, *tuser, *tsecret;
	int rc, timeout_s;

	l = ts_calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->iscsi = iscsi_create_context(o->initiator_name ? o->initiator_name : LUN_DEFAULT_INITIATOR);
	if (!l->iscsi) {
		rc = -ENOMEM;
		goto fail;
	}
	url = iscsi_parse_full_url(l->iscsi, o->url);
	if (!url) {
		ts_log(TS_LOG_ERROR, "attach", "bad iSCSI URL err=\"%s\"", iscsi_get_error(l->iscsi));
		rc = -EINVAL;
		goto fail;
	}
	user = o->chap_user ? o->chap_user : url->user;
	secret = o->chap_user ? (o->chap_secret ? o->chap_secret : "") : url->passwd;
	tuser = o->target_user ? o->target_user : url->target_user;
	tsecret = o->target_user ? (o->target_secret ? o->target_secret : "") : url->target_passwd;
	if (tuser[0] && !user[0]) {
		rc = -EINVAL; /* mutual CHAP is a second step of CHAP */
		goto fail;
	}
	l->lun_id = url->lun;
	if (iscsi_set_targetname(l->iscsi, url->target) ||
	    iscsi_set_session_type(l->iscsi, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(l->iscsi, ISCSI_HEADER_DIGEST_NONE_CRC32C)) {
		rc = -EINVAL;
		goto fail;
	}
	if (user[0] && iscsi_set_initiator_username_pwd(l->iscsi, user, secret)) {
		rc = -EINVAL;
		goto fail;
	}
	if (tuser[0] && iscsi_set_target_username_pwd(l->iscsi, tuser, tsecret)) {
		rc = -EINVAL;
		goto fail;
	}
	timeout_s = o->io_timeout_s > 0 ? o->io_timeout_s : LUN_DEFAULT_TIMEOUT_S;
	iscsi_set_timeout(l->iscsi, timeout_s);
	l->fail_after = (uint64_t)timeout_s * 1000000000ull;
	iscsi_set_reconnect_max_retries(l->iscsi, o->reconnect_max == 0 ? -1
					: o->reconnect_max < 0 ? 0 : o->reconnect_max);
	/*
	 * Unit attentions after a reconnect must reach io_done: a POWER ON /
	 * RESET (ASC 0x29) means the target may have lost its volatile write
	 * cache, so writes acknowledged before it and not yet flushed may be
	 * gone, and the next flush must not report success for them.
	 */
	iscsi_set_no_ua_on_reconnect(l->iscsi, 0);
	rc = login(l, url->portal, url->lun, timeout_s);
	if (rc) {
		const char *err = iscsi_get_error(l->iscsi);
		char msg[256];
		size_t i;

		/* libiscsi's last text, on one line (it may end in a newline). */
		for (i = 0; err && err[i] && i < sizeof(msg) - 1; i++)
			msg[i] = (unsigned char)err[i] < 0x20 ? ' ' : err[i];
		while (i && msg[i - 1] == ' ')
			i--;
		msg[i] = '\0';
		ts_log(TS_LOG_ERROR, "attach",
		       "login failed portal=%s target=%s timeout=%ds err=\"%s\" libiscsi=\"%s\"",
		       url->portal, url->target, timeout_s, ts_strerror(rc), msg);
		goto fail;
	}
	rc = lun_read_capacity(l);
	if (rc) {
		ts_log(TS_LOG_ERROR, "attach", "READ CAPACITY failed target=%s err=\"%s\"",
		       url->target, iscsi_get_error(l->iscsi));
		goto fail;
	}
	iscsi_destroy_url(url);
	*out = l;
	return 0;
fail:
	if (url)
		iscsi_destroy_url(url);
	if (l->iscsi)
		iscsi_destroy_context(l->iscsi); /* also closes a half-open session */
	ts_free(l);
	return rc;
}

void lun_disconnect(struct lun *l)
{
	if (!l)
		return;
	/* A dead target must not turn logout into an endless reconnect loop. */
	iscsi_set_noautoreconnect(l->iscsi, 1);
	iscsi_set_timeout(l->iscsi, 5);
	if (iscsi_is_logged_in(l->iscsi))
		(void)iscsi_logout_sync(l->iscsi);
	iscsi_destroy_context(l->iscsi);
	ts_free(l);
}

/* ---- conflicts and queues ---- */

static bool io_conflicts(const struct lun_io *a, const struct lun_io *b)
{
	if (a->op == LUN_READ && b->op == LUN_READ)
		return false;
	if (a->op == LUN_FLUSH || b->op == LUN_FLUSH) /* a flush orders writes and unmaps */
		return a->op != LUN_READ && b->op != LUN_READ && a->op != b->op;
	return a->span.lba < b->span.lba + b->span.nblocks &&
	       b->span.lba < a->span.lba + a->span.nblocks;
}

static bool io_blocked(const struct lun *l, const struct lun_io *io)
{
	for (const struct lun_io *i = l->inflight; i; i = i->next)
		if (io_conflicts(i, io))
			return true;
	return false;
}

static void inflight_add(struct lun *l, struct lun_io *io)
{
	io->prev = NULL;
	io->next = l->inflight;
	if (l->inflight)
		l->inflight->prev = io;
	l->inflight = io;
}

static void inflight_del(struct lun *l, struct lun_io *io)
{
	if (io->prev)
		io->prev->next = io->next;
	else
		l->inflight = io->next;
	if (io->next)
		io->next->prev = io->prev;
	io->prev = io->next = NULL;
}

static void io_free(struct lun_io *io)
{
	ts_free(io->bounce);
	ts_free(io);
}

/* Complete: unlink, call back, then start waiters the completion unblocked. */
static void io_finish(struct lun_io *io, long status)
{
	struct lun *l = io->l;

	inflight_del(l, io);
	l->pending--;
	io->cb(io->arg, status);
	io_free(io);
	while (l->wait_head && !io_blocked(l, l->wait_head)) {
		struct lun_io *w = l->wait_head;
		int rc;

		l->wait_head = w->next;
		if (!l->wait_head)
			l->wait_tail = NULL;
		w->next = NULL;
		inflight_add(l, w);
		rc = l->failing ? -EIO : io_issue(w);
		if (rc) {
			/* Called from a completion: failing it now is "later" for its submitter. */
			io_finish(w, rc);
			return; /* the recursive call drained the rest */
		}
	}
}

/* ---- issuing and completions ---- */

static int sense_errno(const struct scsi_task *t)
{
	if (t->status != SCSI_STATUS_CHECK_CONDITION)
		return -EIO;
	if (t->sense.key == SCSI_SENSE_DATA_PROTECTION)
		return -EROFS;
	if (t->sense.key == SCSI_SENSE_ILLEGAL_REQUEST)
		return -EINVAL;
	return -EIO;
}

static bool status_transient(int status, const struct scsi_task *t)
{
	switch (status) {
	case SCSI_STATUS_BUSY:
	case SCSI_STATUS_TASK_SET_FULL:
	case SCSI_STATUS_TIMEOUT:
	case SCSI_STATUS_CANCELLED:
	case SCSI_STATUS_ERROR:
		return true;
	case SCSI_STATUS_CHECK_CONDITION:
		return t && t->sense.key == SCSI_SENSE_UNIT_ATTENTION;
	default:
		return false;
	}
}

static void io_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct lun_io *io = private_data;
	struct scsi_task *t = command_data;
	uint64_t skew = io->off - io->span.lba * io->l->bs;
	int err;

	(void)iscsi;
	if (status != SCSI_STATUS_GOOD) {
		bool again = !io->l->failing && status_transient(status, t) &&
			     ++io->tries < LUN_MAX_TRIES;

		if (t && status == SCSI_STATUS_CHECK_CONDITION &&
		    t->sense.key == SCSI_SENSE_UNIT_ATTENTION && (t->sense.ascq >> 8) == 0x29 &&
		    !io->l->cache_lost) {
			io->l->cache_lost = true;
			ts_log(TS_LOG_WARN, "attach",
			       "target reset or restarted (UA 0x%04x): the next flush fails",
			       (unsigned)t->sense.ascq);
		}

		err = t && !io->l->failing ? sense_errno(t) : -EIO;
		ts_log(again ? TS_LOG_DEBUG : TS_LOG_WARN, "attach",
		       "command failed op=%d lba=%llu status=0x%x sense=0x%x try=%d err=\"%s\"",
		       io->op, (unsigned long long)io->span.lba, (unsigned)status,
		       t ? (unsigned)t->sense.key : 0u, io->tries, iscsi_get_error(io->l->iscsi));
		if (t)
			scsi_free_scsi_task(t);
		if (again) {
			err = io_issue(io);
			if (err == 0)
				return;
		}
		io_finish(io, err);
		return;
	}
	if (t)
		scsi_free_scsi_task(t);
	if (io->op == LUN_READ) {
		if (io->bounce)
			memcpy(io->buf, io->bounce + skew, io->len);
		io_finish(io, (long)io->len);
		return;
	}
	if (io->op == LUN_WRITE && io->bounce && io->stage == 0) {
		memcpy(io->bounce + skew, io->buf, io->len);
		io->stage = 1;
		io->tries = 0;
		err = io_issue(io);
		if (err)
			io_finish(io, err);
		return;
	}
	if (io->op == LUN_FLUSH && io->l->cache_lost) {
		/* Writes acknowledged before the reset may not have survived it. */
		io->l->cache_lost = false;
		io_finish(io, -EIO);
		return;
	}
	io_finish(io, io->op == LUN_FLUSH ? 0 : (long)io->len);
}

/* Send the command for the io's current stage. 0 or -errno (nothing sent). */
static int io_issue(struct lun_io *io)
{
	struct lun *l = io->l;
	struct scsi_task *t;
	uint32_t bytes = (uint32_t)(io->span.nblocks * l->bs);
	bool rmw_read = io->op == LUN_WRITE && io->bounce && io->stage == 0;

	io->iov.iov_base = io->bounce ? io->bounce : io->buf;
	io->iov.iov_len = bytes;
	if (io->op == LUN_FLUSH) {
		t = iscsi_synchronizecache16_task(l->iscsi, l->lun_id, 0, 0, 0, 0, io_done, io);
	} else if (io->op == LUN_UNMAP) {
		io->unmap.lba = io->span.lba;
		io->unmap.num = (uint32_t)io->span.nblocks;
		t = iscsi_unmap_task(l->iscsi, l->lun_id, 0, 0, &io->unmap, 1, io_done, io);
	}
	else if (io->op == LUN_READ || rmw_read)
		t = iscsi_read16_iov_task(l->iscsi, l->lun_id, io->span.lba, bytes, (int)l->bs, 0, 0, 0,
					  0, 0, io_done, io, &io->iov, 1);
	else
		t = iscsi_write16_iov_task(l->iscsi, l->lun_id, io->span.lba, NULL, bytes, (int)l->bs, 0,
					   0, 0, 0, 0, io_done, io, &io->iov, 1);
	return t ? 0 : -ENOMEM;
}

int lun_submit(struct lun *l, enum lun_op op, uint64_t off, uint64_t len, void *buf, lun_cb cb,
	       void *arg)
{
	struct lun_io *io;
	int rc;

	if (!cb || op > LUN_UNMAP)
		return -EINVAL;
	if (l->failing)
		return -EIO;
	if (op == LUN_UNMAP) {
		/* One descriptor: whole blocks, fewer than 2^32 of them. */
		if (buf || len == 0 || off % l->bs || len % l->bs || len / l->bs > UINT32_MAX ||
		    off > l->size || len > l->size - off)
			return -EINVAL;
		if (!l->lbpme)
			return -EOPNOTSUPP;
	} else if (op != LUN_FLUSH) {
		/* One command per request: keep it well under a 32-bit transfer length. */
		if (!buf || len == 0 || len > (64u << 20) || off > l->size || len > l->size - off)
			return -EINVAL;
	}
	io = ts_calloc(1, sizeof(*io));
	if (!io)
		return -ENOMEM;
	io->l = l;
	io->op = op;
	io->off = off;
	io->len = len;
	io->buf = buf;
	io->cb = cb;
	io->arg = arg;
	if (op == LUN_FLUSH) {
		io->span.lba = 0;
		io->span.nblocks = l->size / l->bs;
		io->span.aligned = true;
	} else {
		io->span = attach_span_of(off, len, l->bs);
	}
	if (!io->span.aligned) {
		io->bounce = ts_malloc(io->span.nblocks * l->bs);
		if (!io->bounce) {
			io_free(io);
			return -ENOMEM;
		}
	}
	l->pending++;
	if (l->wait_head || io_blocked(l, io)) {
		if (l->wait_tail)
			l->wait_tail->next = io;
		else
			l->wait_head = io;
		l->wait_tail = io;
		return 0;
	}
	inflight_add(l, io);
	rc = io_issue(io);
	if (rc) {
		inflight_del(l, io);
		l->pending--;
		io_free(io);
	}
	return rc;
}

void lun_fail_all(struct lun *l)
{
	l->failing = true;
	/* Calls io_done() with CANCELLED for every task libiscsi holds; none is retried. */
	iscsi_scsi_cancel_all_tasks(l->iscsi);
	while (l->wait_head) { /* normally drained by the completions above */
		struct lun_io *w = l->wait_head;

		l->wait_head = w->next;
		if (!l->wait_head)
			l->wait_tail = NULL;
		inflight_add(l, w);
		io_finish(w, -EIO);
	}
	l->failing = false;
}

int lun_service(struct lun *l, int revents)
{
	uint64_t now;

	if (iscsi_service(l->iscsi, revents) >= 0) {
		l->bad_since = 0;
		return 0;
	}
	now = ts_now_ns();
	if (!l->bad_since) {
		l->bad_since = now;
		ts_log(TS_LOG_WARN, "attach", "iSCSI session error err=\"%s\"", iscsi_get_error(l->iscsi));
	} else if (l->pending && now - l->bad_since > l->fail_after) {
		ts_log(TS_LOG_ERROR, "attach", "session down too long, failing %u IOs", l->pending);
		lun_fail_all(l);
		l->bad_since = now;
	}
	return -EIO;
}
