/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A remote member over user-mode iSCSI.
 *
 * Workload. An array group sends each member a steady stream of fragment
 * reads and writes (a chunk or less each), FUA writes for its
 * metadata, flushes, and now and then an unmap; dozens may be in flight. The
 * member must never block the caller and must turn a dead peer into errors
 * quickly, because the group only degrades (and keeps serving) once a member
 * has failed an IO.
 *
 * Structure. One event thread per member owns the libiscsi context and every
 * list below; nothing else touches them. Submitters allocate a small request
 * (struct tio), push it on the submit queue under sq_lock and kick an
 * eventfd. The thread polls the eventfd and the session socket with a
 * timeout no longer than POLL_TICK_MS, and each turn:
 *   1. drains the submit queue into the wait list (FIFO);
 *   2. services the socket (completions run the submitters' callbacks here);
 *   3. issues waiting IOs if the session is up;
 *   4. fails IOs past their deadline: waiting ones individually, and if an IO
 *      on the wire is overdue the whole session is dropped (teardown);
 *   5. drives the connection state machine: DOWN -(backoff elapsed)->
 *      CONNECTING -(TCP connect, then login ok)-> UP -(socket error,
 *      overdue IO)-> DOWN; a connect past connect_timeout goes back to DOWN.
 *
 * Invariants. Every tio is on exactly one of: the submit queue, the wait
 * list, the in-flight list (task != NULL, sent on the current context). A tio
 * leaves its list only in tio_finish(), which calls the user's callback once
 * and frees it. Teardown cancels every libiscsi task (their callbacks see
 * `tearing` and finish with TS_ERR_MEMBER_FAILED) before destroying the
 * context, then finishes anything still listed, so no callback can reach a
 * freed tio and no IO outlives its deadline by more than one tick.
 *
 * Fencing (opts.owner_epoch, docs/fencing.md). With an owner key
 * K = (epoch << 32) | node, every login is followed by the acquisition,
 * before any IO is issued (state ACQUIRING, bounded by the connect
 * deadline): REGISTER AND IGNORE EXISTING KEY with K (the fencing point:
 * the target refuses it if a newer epoch registered, and completes it only
 * once the writes of every other nexus have drained), READ RESERVATION,
 * then PREEMPT of the holder's key or RESERVE (exclusive access), then READ
 * KEYS and a PREEMPT of every other key left (stale owners, our own earlier
 * nexuses). The member only ever registers K, after every reconnect; it
 * never invents a newer epoch. A RESERVATION CONFLICT on the REGISTER, or on
 * any IO, means another engine owns the group now: the member becomes
 * fenced for good (state FENCED): the IO fails with TS_ERR_FENCED, so does
 * everything queued and submitted later, at once, and it never reconnects.
 * A conflict on a later acquisition step (a key that vanished meanwhile)
 * restarts the acquisition; the REGISTER then says which case it is.
 *
 * We disable libiscsi's own reconnect: it would replay commands on the new
 * session past their deadline, and we want one owner of the retry policy.
 *
 * THREAD SAFETY: sq_lock guards the submit queue and the stop flag; the
 * stats are atomics. Everything else belongs to the event thread.
 */
#include "dataplane/transport/transport.h"

#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

#define POLL_TICK_MS 20
#define MAX_TRIES 4
#define MS 1000000ull

enum rm_state { RM_DOWN = 0, RM_CONNECTING, RM_ACQUIRING, RM_UP, RM_FENCED };

/* Acquisition steps (fencing): one PR command at a time. */
enum pr_step { PR_REGISTER = 0, PR_READ_RES, PR_TAKE, PR_READ_KEYS, PR_PREEMPT_STALE };

#define PR_TYPE_EA 3 /* EXCLUSIVE ACCESS: a stale owner's reads are refused too */
#define PR_MAX_KEYS 64
#define PR_MAX_RESTARTS 3

struct rm;

struct tio {
	struct tio *prev, *next;
	struct rm *rm;
	struct ts_member_io *io;
	uint64_t deadline; /* ns */
	struct scsi_task *task;
	struct scsi_iovec iov;
	struct unmap_list um;
	int tries;
};

struct tlist {
	struct tio *head, *tail;
	uint32_t n;
};

struct rm {
	/* configuration (immutable after create) */
	char portal[256];
	char target[224];
	int lun;
	char initiator[128];
	char chap_user[128], chap_secret[128];
	char mutual_user[128], mutual_secret[128];
	uint32_t bs;
	uint64_t io_timeout, connect_timeout, backoff_min, backoff_max; /* ns */
	uint64_t key;              /* fencing key, 0: no fencing */

	/* submit queue */
	pthread_mutex_t sq_lock;
	struct tio *sq_head, *sq_tail;
	bool stop;
	int efd;
	pthread_t thread;
	bool thread_started;

	/* event-thread state */
	struct iscsi_context *ctx;
	enum rm_state state;
	bool tearing;
	uint64_t next_attempt, connect_deadline, backoff;
	struct tlist wait, inflight;
	/* acquisition (fencing) */
	enum pr_step pr_step;
	struct scsi_task *pr_task;
	struct scsi_persistent_reserve_out_basic pr_params;
	uint64_t pr_keys[PR_MAX_KEYS];
	unsigned pr_nkeys, pr_idx, pr_tries, pr_restarts;
	bool fence_pending;        /* a RESERVATION CONFLICT was seen: fence after iscsi_service() */

	/* stats */
	atomic_uint_fast64_t ok, failed, timeouts, connects, connect_failures, fenced_ios;
	atomic_uint inflight_n, connected, fenced;
};

static const struct ts_member_ops g_rm_ops;

static void list_push(struct tlist *l, struct tio *t)
{
	t->next = NULL;
	t->prev = l->tail;
	if (l->tail)
		l->tail->next = t;
	else
		l->head = t;
	l->tail = t;
	l->n++;
}

static void list_del(struct tlist *l, struct tio *t)
{
	if (t->prev)
		t->prev->next = t->next;
	else
		l->head = t->next;
	if (t->next)
		t->next->prev = t->prev;
	else
		l->tail = t->prev;
	t->prev = t->next = NULL;
	l->n--;
}

/* Complete a tio that is on list \p l (the wait or in-flight list). */
static void tio_finish(struct tlist *l, struct tio *t, int status)
{
	struct rm *rm = t->rm;
	struct ts_member_io *io = t->io;

	list_del(l, t);
	if (l == &rm->inflight)
		atomic_store(&rm->inflight_n, rm->inflight.n);
	if (t->task)
		scsi_free_scsi_task(t->task);
	ts_free(t);
	if (status)
		atomic_fetch_add(&rm->failed, 1);
	else
		atomic_fetch_add(&rm->ok, 1);
	if (status == TS_ERR_FENCED)
		atomic_fetch_add(&rm->fenced_ios, 1);
	io->cb(io, status);
}

static int sense_errno(const struct scsi_task *task)
{
	switch (task->sense.key) {
	case SCSI_SENSE_ILLEGAL_REQUEST:
		return -EINVAL;
	case SCSI_SENSE_DATA_PROTECTION:
		return -EROFS;
	default:
		return -EIO;
	}
}

static bool status_transient(int status, const struct scsi_task *task)
{
	if (status == SCSI_STATUS_BUSY || status == SCSI_STATUS_TASK_SET_FULL)
		return true;
	return status == SCSI_STATUS_CHECK_CONDITION && task &&
	       task->sense.key == SCSI_SENSE_UNIT_ATTENTION;
}

static int tio_issue(struct tio *t);

static void tio_done(struct iscsi_context *iscsi, int status, void *command_data,
		     void *private_data)
{
	struct tio *t = private_data;
	struct rm *rm = t->rm;
	int err;

	(void)iscsi;
	(void)command_data; /* == t->task, or NULL when cancelled */
	if (status == SCSI_STATUS_GOOD) {
		tio_finish(&rm->inflight, t, 0);
		return;
	}
	if (rm->tearing || status == SCSI_STATUS_CANCELLED || status == SCSI_STATUS_ERROR ||
	    status == SCSI_STATUS_TIMEOUT) {
		if (!rm->tearing)
			ts_log(TS_LOG_WARN, "transport", "command lost target=%s op=%d status=0x%x",
			       rm->target, (int)t->io->op, (unsigned)status);
		tio_finish(&rm->inflight, t, TS_ERR_MEMBER_FAILED);
		return;
	}
	if (status == SCSI_STATUS_RESERVATION_CONFLICT && rm->key) {
		/* another engine owns the group: never retried, not a member failure */
		rm->fence_pending = true;
		tio_finish(&rm->inflight, t, TS_ERR_FENCED);
		return;
	}
	if (status_transient(status, t->task) && ++t->tries < MAX_TRIES &&
	    ts_now_ns() < t->deadline) {
		scsi_free_scsi_task(t->task);
		t->task = NULL;
		if (tio_issue(t) == 0)
			return;
		tio_finish(&rm->inflight, t, TS_ERR_MEMBER_FAILED);
		return;
	}
	err = status == SCSI_STATUS_CHECK_CONDITION ? sense_errno(t->task) : -EIO;
	ts_log(TS_LOG_WARN, "transport", "command failed target=%s op=%d off=%llu status=0x%x sense=0x%x",
	       rm->target, (int)t->io->op, (unsigned long long)t->io->offset, (unsigned)status,
	       (unsigned)t->task->sense.key);
	tio_finish(&rm->inflight, t, err);
}

/* Send \p t (already on the in-flight list) on the current session. 0 or -ENOMEM. */
static int tio_issue(struct tio *t)
{
	struct rm *rm = t->rm;
	struct ts_member_io *io = t->io;
	uint64_t lba = io->offset / rm->bs;
	uint32_t nb = (uint32_t)(io->len / rm->bs);

	switch (io->op) {
	case TS_MEMBER_READ:
		t->iov.iov_base = io->buf;
		t->iov.iov_len = io->len;
		t->task = iscsi_read16_iov_task(rm->ctx, rm->lun, lba, (uint32_t)io->len, (int)rm->bs,
						0, 0, 0, 0, 0, tio_done, t, &t->iov, 1);
		break;
	case TS_MEMBER_WRITE:
		t->iov.iov_base = io->buf;
		t->iov.iov_len = io->len;
		t->task = iscsi_write16_iov_task(rm->ctx, rm->lun, lba, NULL, (uint32_t)io->len,
						 (int)rm->bs, 0, 0, (io->flags & TS_MEMBER_FUA) ? 1 : 0,
						 0, 0, tio_done, t, &t->iov, 1);
		break;
	case TS_MEMBER_FLUSH:
		t->task = iscsi_synchronizecache16_task(rm->ctx, rm->lun, 0, 0, 0, 0, tio_done, t);
		break;
	case TS_MEMBER_UNMAP:
		t->um.lba = lba;
		t->um.num = nb;
		t->task = iscsi_unmap_task(rm->ctx, rm->lun, 0, 0, &t->um, 1, tio_done, t);
		break;
	}
	return t->task ? 0 : -ENOMEM;
}

static int rm_submit(void *arg, struct ts_member_io *io)
{
	struct rm *rm = arg;
	struct tio *t;
	uint64_t one = 1;
	bool kick;

	/* One command per IO: 32-bit transfer length, 32-bit unmap block count. */
	if (io->op > TS_MEMBER_UNMAP || io->len > (1ull << 30))
		return -EINVAL;
	t = ts_calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->rm = rm;
	t->io = io;
	t->deadline = ts_now_ns() + rm->io_timeout;
	pthread_mutex_lock(&rm->sq_lock);
	if (rm->stop) {
		pthread_mutex_unlock(&rm->sq_lock);
		ts_free(t);
		return -ESHUTDOWN;
	}
	kick = rm->sq_head == NULL;
	if (rm->sq_tail)
		rm->sq_tail->next = t;
	else
		rm->sq_head = t;
	rm->sq_tail = t;
	pthread_mutex_unlock(&rm->sq_lock);
	/* The thread drains the whole queue on each wake-up: kick only an empty queue. */
	if (kick && write(rm->efd, &one, sizeof(one)) < 0)
		ts_log(TS_LOG_WARN, "transport", "eventfd write failed errno=%d", errno);
	return 0;
}

/*
 * libiscsi writes with plain send()/writev(): a peer that died turns the next
 * write into a SIGPIPE, which would kill the whole process. SIGPIPE from a
 * write is directed at the writing thread, so blocking it there is enough; the
 * write then fails with EPIPE and the session is torn down. The signal stays
 * pending on this thread and is discarded here.
 */
static void block_sigpipe(sigset_t *old)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &s, old);
}

static void discard_sigpipe(const sigset_t *old)
{
	struct timespec zero = { 0, 0 };
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGPIPE);
	while (sigtimedwait(&s, NULL, &zero) == SIGPIPE)
		;
	if (old)
		pthread_sigmask(SIG_SETMASK, old, NULL);
}

/* Close the context: every IO on it fails with \p status. */
static void rm_drop_ctx(struct rm *rm, int status)
{
	rm->tearing = true;
	iscsi_scsi_cancel_all_tasks(rm->ctx);
	iscsi_destroy_context(rm->ctx);
	rm->ctx = NULL;
	rm->tearing = false;
	discard_sigpipe(NULL);
	while (rm->inflight.head)
		tio_finish(&rm->inflight, rm->inflight.head, status);
	atomic_store(&rm->connected, 0);
}

/* Drop the session: every IO on it fails; reconnect after the backoff. */
static void rm_teardown(struct rm *rm, const char *why)
{
	uint64_t now = ts_now_ns();

	if (!rm->ctx || rm->state == RM_FENCED)
		return;
	if (rm->state == RM_UP || rm->inflight.n)
		ts_log(strcmp(why, "shutdown") ? TS_LOG_WARN : TS_LOG_INFO, "transport",
		       "session lost target=%s portal=%s why=\"%s\" inflight=%u", rm->target,
		       rm->portal, why, rm->inflight.n);
	rm_drop_ctx(rm, TS_ERR_MEMBER_FAILED);
	if (rm->state != RM_UP)
		atomic_fetch_add(&rm->connect_failures, 1);
	rm->state = RM_DOWN;
	rm->next_attempt = now + rm->backoff;
	rm->backoff = rm->backoff * 2 > rm->backoff_max ? rm->backoff_max : rm->backoff * 2;
}

/*
 * Another engine owns the group: drop the session, fail everything in
 * flight and waiting with TS_ERR_FENCED, and stay down for good.
 */
static void rm_fence(struct rm *rm, const char *why)
{
	if (rm->state == RM_FENCED)
		return;
	ts_log(TS_LOG_WARN, "transport",
	       "fenced target=%s portal=%s epoch=%u node=%u why=\"%s\" inflight=%u waiting=%u", rm->target,
	       rm->portal, (unsigned)(rm->key >> 32), (unsigned)rm->key, why, rm->inflight.n, rm->wait.n);
	if (rm->ctx)
		rm_drop_ctx(rm, TS_ERR_FENCED);
	rm->state = RM_FENCED;
	rm->fence_pending = false;
	atomic_store(&rm->fenced, 1);
	while (rm->wait.head)
		tio_finish(&rm->wait, rm->wait.head, TS_ERR_FENCED);
}

/* A fresh, configured, not yet connected context; NULL on failure. */
static struct iscsi_context *rm_new_ctx(const struct rm *rm)
{
	struct iscsi_context *c = iscsi_create_context(rm->initiator);

	if (!c)
		return NULL;
	if (iscsi_set_targetname(c, rm->target) ||
	    iscsi_set_session_type(c, ISCSI_SESSION_NORMAL) ||
	    iscsi_set_header_digest(c, ISCSI_HEADER_DIGEST_NONE_CRC32C) ||
	    (rm->chap_user[0] && iscsi_set_initiator_username_pwd(c, rm->chap_user, rm->chap_secret)) ||
	    (rm->mutual_user[0] && iscsi_set_target_username_pwd(c, rm->mutual_user, rm->mutual_secret))) {
		iscsi_destroy_context(c);
		return NULL;
	}
	iscsi_set_noautoreconnect(c, 1);
	iscsi_set_reconnect_max_retries(c, 0);
	iscsi_set_tcp_syncnt(c, 2);
	iscsi_set_tcp_user_timeout(c, (int)(rm->io_timeout / MS));
	return c;
}

/* The session is usable: IOs may go. */
static void rm_session_up(struct rm *rm)
{
	rm->state = RM_UP;
	rm->backoff = rm->backoff_min;
	atomic_fetch_add(&rm->connects, 1);
	atomic_store(&rm->connected, 1);
	if (rm->key)
		ts_log(TS_LOG_INFO, "transport", "session up target=%s portal=%s epoch=%u node=%u",
		       rm->target, rm->portal, (unsigned)(rm->key >> 32), (unsigned)rm->key);
	else
		ts_log(TS_LOG_INFO, "transport", "session up target=%s portal=%s", rm->target, rm->portal);
}

static void pr_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data);

/* Send the current acquisition step. */
static void pr_issue(struct rm *rm)
{
	struct scsi_persistent_reserve_out_basic *p = &rm->pr_params;
	int sa = -1, type = 0;

	memset(p, 0, sizeof(*p));
	switch (rm->pr_step) {
	case PR_REGISTER:
		sa = SCSI_PERSISTENT_RESERVE_REGISTER_AND_IGNORE_EXISTING_KEY;
		p->service_action_reservation_key = rm->key;
		break;
	case PR_READ_RES:
		rm->pr_task = iscsi_persistent_reserve_in_task(rm->ctx, rm->lun,
							       SCSI_PERSISTENT_RESERVE_READ_RESERVATION, 24,
							       pr_done, rm);
		break;
	case PR_TAKE: /* pr_keys[0]: the holder's key to preempt, 0: RESERVE */
		p->reservation_key = rm->key;
		p->service_action_reservation_key = rm->pr_keys[0];
		sa = rm->pr_keys[0] ? SCSI_PERSISTENT_RESERVE_PREEMPT : SCSI_PERSISTENT_RESERVE_RESERVE;
		type = PR_TYPE_EA;
		break;
	case PR_READ_KEYS:
		rm->pr_task = iscsi_persistent_reserve_in_task(rm->ctx, rm->lun,
							       SCSI_PERSISTENT_RESERVE_READ_KEYS,
							       8 + 8 * PR_MAX_KEYS, pr_done, rm);
		break;
	case PR_PREEMPT_STALE:
		p->reservation_key = rm->key;
		p->service_action_reservation_key = rm->pr_keys[rm->pr_idx];
		sa = SCSI_PERSISTENT_RESERVE_PREEMPT;
		type = PR_TYPE_EA;
		break;
	}
	if (sa >= 0)
		rm->pr_task = iscsi_persistent_reserve_out_task(rm->ctx, rm->lun, sa, 0, type, p, pr_done,
								rm);
	if (!rm->pr_task)
		rm->connect_deadline = 0; /* tear down after iscsi_service() */
}

/* Next step after \p t (GOOD) of the acquisition; false when done. */
static bool pr_advance(struct rm *rm, struct scsi_task *t)
{
	switch (rm->pr_step) {
	case PR_REGISTER:
		rm->pr_step = PR_READ_RES;
		return true;
	case PR_READ_RES: {
		struct scsi_persistent_reserve_in_read_reservation *rr = scsi_datain_unmarshall(t);

		if (!rr) {
			rm->connect_deadline = 0;
			return false;
		}
		rm->pr_keys[0] = rr->reserved ? rr->reservation_key : 0;
		rm->pr_step = PR_TAKE;
		return true;
	}
	case PR_TAKE:
		rm->pr_step = PR_READ_KEYS;
		return true;
	case PR_READ_KEYS: {
		struct scsi_persistent_reserve_in_read_keys *rk = scsi_datain_unmarshall(t);
		unsigned mine = 0;

		if (!rk) {
			rm->connect_deadline = 0;
			return false;
		}
		rm->pr_nkeys = 0;
		for (int i = 0; i < rk->num_keys; i++) {
			bool seen = false;

			if (rk->keys[i] == rm->key && ++mine < 2)
				continue; /* ours (this nexus, or an earlier one when seen twice) */
			for (unsigned j = 0; j < rm->pr_nkeys; j++)
				seen |= rm->pr_keys[j] == rk->keys[i];
			if (!seen && rm->pr_nkeys < PR_MAX_KEYS)
				rm->pr_keys[rm->pr_nkeys++] = rk->keys[i];
		}
		rm->pr_idx = 0;
		rm->pr_step = PR_PREEMPT_STALE;
		return rm->pr_nkeys > 0;
	}
	case PR_PREEMPT_STALE:
		return ++rm->pr_idx < rm->pr_nkeys;
	}
	return false;
}

/* An acquisition command completed. Runs inside iscsi_service(). */
static void pr_done(struct iscsi_context *iscsi, int status, void *command_data, void *private_data)
{
	struct rm *rm = private_data;
	struct scsi_task *t = rm->pr_task;
	bool more = false;

	(void)iscsi;
	(void)command_data;
	rm->pr_task = NULL;
	if (rm->tearing || rm->state != RM_ACQUIRING) {
		if (t)
			scsi_free_scsi_task(t);
		return;
	}
	if (status == SCSI_STATUS_RESERVATION_CONFLICT && rm->pr_step == PR_REGISTER) {
		rm->fence_pending = true; /* a newer epoch registered: we are not the owner */
	} else if (status == SCSI_STATUS_RESERVATION_CONFLICT) {
		/* a key vanished under us (or a newer owner came): register again to know */
		if (++rm->pr_restarts > PR_MAX_RESTARTS) {
			rm->connect_deadline = 0;
		} else {
			rm->pr_step = PR_REGISTER;
			more = true;
		}
	} else if (status_transient(status, t) && ++rm->pr_tries < 2 * MAX_TRIES) {
		more = true; /* the POWER ON unit attention of the new nexus, BUSY: same step again */
	} else if (status != SCSI_STATUS_GOOD) {
		ts_log(TS_LOG_WARN, "transport", "acquisition failed target=%s step=%d status=0x%x sense=0x%x",
		       rm->target, (int)rm->pr_step, (unsigned)status, t ? (unsigned)t->sense.key : 0u);
		rm->connect_deadline = 0;
	} else {
		more = pr_advance(rm, t);
		if (!more && rm->connect_deadline)
			rm_session_up(rm);
	}
	if (t)
		scsi_free_scsi_task(t);
	if (more)
		pr_issue(rm);
}

/* Login finished (or failed). Runs inside iscsi_service(). */
static void rm_logged_in(struct iscsi_context *iscsi, int status, void *command_data,
			 void *private_data)
{
	struct rm *rm = private_data;

	(void)iscsi;
	(void)command_data;
	if (rm->state != RM_CONNECTING || rm->tearing)
		return;
	if (status != SCSI_STATUS_GOOD) {
		/* Tear down after iscsi_service() returns, not inside libiscsi. */
		rm->connect_deadline = 0;
		return;
	}
	if (!rm->key) {
		rm_session_up(rm);
		return;
	}
	rm->state = RM_ACQUIRING;
	rm->pr_step = PR_REGISTER;
	rm->pr_tries = rm->pr_restarts = 0;
	pr_issue(rm);
}

/* TCP connected (or failed): start the login. */
static void rm_tcp_connected(struct iscsi_context *iscsi, int status, void *command_data,
			     void *private_data)
{
	struct rm *rm = private_data;

	(void)command_data;
	if (rm->state != RM_CONNECTING || rm->tearing)
		return;
	if (status != SCSI_STATUS_GOOD || iscsi_login_async(iscsi, rm_logged_in, rm))
		rm->connect_deadline = 0;
}

/*
 * Connect in two steps (TCP, then login) rather than with
 * iscsi_full_connect_async(): the latter keeps state that only its callback
 * frees, and destroying a context mid-connect (timeout, shutdown) would leak
 * it. Both steps here keep their state in the context itself.
 */
static void rm_connect(struct rm *rm)
{
	rm->ctx = rm_new_ctx(rm);
	rm->state = RM_CONNECTING;
	rm->connect_deadline = ts_now_ns() + rm->connect_timeout;
	if (!rm->ctx || iscsi_connect_async(rm->ctx, rm->portal, rm_tcp_connected, rm)) {
		if (!rm->ctx) {
			rm->state = RM_DOWN;
			atomic_fetch_add(&rm->connect_failures, 1);
			rm->next_attempt = ts_now_ns() + rm->backoff;
			return;
		}
		rm_teardown(rm, "connect failed");
	}
}

static void rm_issue_waiting(struct rm *rm)
{
	while (rm->state == RM_UP && rm->wait.head) {
		struct tio *t = rm->wait.head;

		list_del(&rm->wait, t);
		list_push(&rm->inflight, t);
		if (tio_issue(t)) {
			tio_finish(&rm->inflight, t, -ENOMEM);
			continue;
		}
		atomic_store(&rm->inflight_n, rm->inflight.n);
	}
}

/*
 * Deadlines are submission time + one constant, and both lists keep
 * submission order (the wait list is FIFO, the in-flight list is filled from
 * it in order and a retried IO keeps its place), so the heads are the
 * oldest: no scan needed.
 */
static void rm_expire(struct rm *rm, uint64_t now)
{
	unsigned expired = 0;

	while (rm->wait.head && now >= rm->wait.head->deadline) {
		atomic_fetch_add(&rm->timeouts, 1);
		tio_finish(&rm->wait, rm->wait.head, TS_ERR_MEMBER_FAILED);
		expired++;
	}
	if (expired)
		ts_log(TS_LOG_WARN, "transport", "IOs expired waiting for the session target=%s count=%u",
		       rm->target, expired);
	if (rm->inflight.head && now >= rm->inflight.head->deadline) {
		atomic_fetch_add(&rm->timeouts, 1);
		rm_teardown(rm, "IO timeout");
	}
	if ((rm->state == RM_CONNECTING || rm->state == RM_ACQUIRING) && now >= rm->connect_deadline)
		rm_teardown(rm, "connect timeout");
}

static void *rm_thread(void *arg)
{
	struct rm *rm = arg;

	block_sigpipe(NULL);

	for (;;) {
		struct pollfd pfd[2];
		nfds_t n = 1;
		struct tio *q;
		uint64_t now, cnt;
		bool stop;

		pfd[0].fd = rm->efd;
		pfd[0].events = POLLIN;
		pfd[0].revents = 0;
		if (rm->ctx && iscsi_get_fd(rm->ctx) >= 0) {
			pfd[1].fd = iscsi_get_fd(rm->ctx);
			pfd[1].events = (short)iscsi_which_events(rm->ctx);
			pfd[1].revents = 0;
			n = 2;
		}
		if (poll(pfd, n, POLL_TICK_MS) < 0) {
			/* never leave the loop on an error: queued IOs would hang */
			pfd[0].revents = 0;
			if (n == 2)
				pfd[1].revents = 0;
			if (errno != EINTR)
				usleep(1000);
		}
		if (pfd[0].revents & POLLIN) {
			if (read(rm->efd, &cnt, sizeof(cnt)) < 0)
				cnt = 0;
		}
		pthread_mutex_lock(&rm->sq_lock);
		q = rm->sq_head;
		rm->sq_head = rm->sq_tail = NULL;
		stop = rm->stop;
		pthread_mutex_unlock(&rm->sq_lock);
		while (q) {
			struct tio *nx = q->next;

			list_push(&rm->wait, q);
			q = nx;
		}
		if (n == 2 && pfd[1].revents && rm->ctx) {
			if (iscsi_service(rm->ctx, pfd[1].revents) < 0 && !rm->fence_pending)
				rm_teardown(rm, iscsi_get_error(rm->ctx));
		}
		if (rm->fence_pending)
			rm_fence(rm, "reservation conflict");
		if (rm->state == RM_FENCED) {
			while (rm->wait.head)
				tio_finish(&rm->wait, rm->wait.head, TS_ERR_FENCED);
		}
		if (rm->state == RM_CONNECTING && rm->connect_deadline == 0)
			rm_teardown(rm, "login failed");
		if (rm->state == RM_ACQUIRING && rm->connect_deadline == 0)
			rm_teardown(rm, "acquisition failed");
		rm_issue_waiting(rm);
		now = ts_now_ns();
		rm_expire(rm, now);
		if (stop)
			break;
		if (rm->state == RM_DOWN && now >= rm->next_attempt)
			rm_connect(rm);
	}
	rm_teardown(rm, "shutdown");
	while (rm->wait.head)
		tio_finish(&rm->wait, rm->wait.head, -ESHUTDOWN);
	return NULL;
}

static void rm_free(struct rm *rm)
{
	if (rm->thread_started) {
		pthread_mutex_lock(&rm->sq_lock);
		rm->stop = true;
		pthread_mutex_unlock(&rm->sq_lock);
		uint64_t one = 1;
		if (write(rm->efd, &one, sizeof(one)) < 0)
			ts_log(TS_LOG_WARN, "transport", "eventfd write failed errno=%d", errno);
		pthread_join(rm->thread, NULL);
	}
	if (rm->efd >= 0)
		close(rm->efd);
	pthread_mutex_destroy(&rm->sq_lock);
	ts_free(rm);
}

static void rm_destroy(void *arg)
{
	rm_free(arg);
}

static const struct ts_member_ops g_rm_ops = {
	.submit = rm_submit,
	.destroy = rm_destroy,
};

static int copy_str(char *dst, size_t cap, const char *src)
{
	size_t n = src ? strlen(src) : 0;

	if (n >= cap)
		return -EINVAL;
	memcpy(dst, src ? src : "", n + 1);
	return 0;
}

/* Connect once synchronously and read the capacity (size 0 in the options). */
static int rm_probe(struct rm *rm, uint64_t *size, uint32_t *bs)
{
	struct iscsi_context *c = rm_new_ctx(rm);
	struct scsi_task *task = NULL;
	struct scsi_readcapacity16 *rc16;
	int rc = TS_ERR_MEMBER_FAILED;
	sigset_t old;

	if (!c)
		return -ENOMEM;
	block_sigpipe(&old); /* the probe runs on the caller's thread */
	iscsi_set_timeout(c, (int)((rm->connect_timeout + 999 * MS) / (1000 * MS)));
	if (iscsi_full_connect_sync(c, rm->portal, rm->lun)) {
		ts_log(TS_LOG_WARN, "transport", "probe connect failed target=%s err=\"%s\"", rm->target,
		       iscsi_get_error(c));
		goto out;
	}
	task = iscsi_readcapacity16_sync(c, rm->lun);
	if (!task || task->status != SCSI_STATUS_GOOD)
		goto out;
	rc16 = scsi_datain_unmarshall(task);
	if (!rc16)
		goto out;
	*bs = rc16->block_length;
	*size = (rc16->returned_lba + 1) * (uint64_t)rc16->block_length;
	rc = 0;
out:
	if (task)
		scsi_free_scsi_task(task);
	if (iscsi_is_logged_in(c))
		(void)iscsi_logout_sync(c);
	iscsi_destroy_context(c);
	discard_sigpipe(&old);
	return rc;
}

int ts_transport_iscsi_member(const struct ts_transport_opts *o, struct ts_member **out)
{
	struct ts_member_info info;
	struct iscsi_context *pc = NULL;
	struct iscsi_url *url = NULL;
	struct rm *rm;
	int rc;

	if (!o || !o->url || !out || (!o->chap_user) != (!o->chap_secret) ||
	    (!o->mutual_user) != (!o->mutual_secret))
		return -EINVAL;
	rm = ts_calloc(1, sizeof(*rm));
	if (!rm)
		return -ENOMEM;
	rm->efd = -1;
	pthread_mutex_init(&rm->sq_lock, NULL);
	rm->io_timeout = (o->io_timeout_ms ? o->io_timeout_ms : 5000) * MS;
	rm->connect_timeout = (o->connect_timeout_ms ? o->connect_timeout_ms : 2000) * MS;
	rm->backoff_min = (o->reconnect_min_ms ? o->reconnect_min_ms : 50) * MS;
	rm->backoff_max = (o->reconnect_max_ms ? o->reconnect_max_ms : 2000) * MS;
	if (rm->backoff_max < rm->backoff_min)
		rm->backoff_max = rm->backoff_min;
	if ((!o->owner_epoch) != (!o->owner_node)) {
		rc = -EINVAL; /* both or neither: a key needs an epoch and a node */
		goto fail;
	}
	rm->key = ((uint64_t)o->owner_epoch << 32) | o->owner_node;
	rm->backoff = rm->backoff_min;
	if (o->initiator_iqn)
		rc = copy_str(rm->initiator, sizeof(rm->initiator), o->initiator_iqn);
	else
		rc = copy_str(rm->initiator, sizeof(rm->initiator), "iqn.2026-01.io.tessera:client");
	if (rc || copy_str(rm->chap_user, sizeof(rm->chap_user), o->chap_user) ||
	    copy_str(rm->chap_secret, sizeof(rm->chap_secret), o->chap_secret) ||
	    copy_str(rm->mutual_user, sizeof(rm->mutual_user), o->mutual_user) ||
	    copy_str(rm->mutual_secret, sizeof(rm->mutual_secret), o->mutual_secret)) {
		rc = -EINVAL;
		goto fail;
	}
	pc = iscsi_create_context(rm->initiator);
	if (!pc) {
		rc = -ENOMEM;
		goto fail;
	}
	url = iscsi_parse_full_url(pc, o->url);
	if (!url || copy_str(rm->portal, sizeof(rm->portal), url->portal) ||
	    copy_str(rm->target, sizeof(rm->target), url->target) || url->user[0]) {
		ts_log(TS_LOG_ERROR, "transport", "bad iSCSI URL url=\"%s\" err=\"%s\"", o->url,
		       iscsi_get_error(pc));
		rc = -EINVAL;
		goto fail;
	}
	rm->lun = url->lun;
	memset(&info, 0, sizeof(info));
	info.node_id = o->node_id;
	if (o->uuid)
		memcpy(info.uuid, o->uuid, 16);
	snprintf(info.name, sizeof(info.name), "n%u:%.40s", o->node_id, rm->portal);
	if (o->size) {
		info.size = o->size;
		info.block_size = o->block_size ? o->block_size : 4096;
	} else {
		rc = rm_probe(rm, &info.size, &info.block_size);
		if (rc)
			goto fail;
	}
	rm->bs = info.block_size;
	rm->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rm->efd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = -pthread_create(&rm->thread, NULL, rm_thread, rm);
	if (rc)
		goto fail;
	rm->thread_started = true;
	rc = ts_member_create(&g_rm_ops, rm, &info, out);
	if (rc)
		goto fail;
	iscsi_destroy_url(url);
	iscsi_destroy_context(pc);
	return 0;
fail:
	if (url)
		iscsi_destroy_url(url);
	if (pc)
		iscsi_destroy_context(pc);
	rm_free(rm);
	return rc;
}

int ts_transport_member_stats(struct ts_member *m, struct ts_transport_stats *st)
{
	struct rm *rm = ts_member_provider_ctx(m, &g_rm_ops);

	if (!rm || !st)
		return -EINVAL;
	st->ios_ok = atomic_load(&rm->ok);
	st->ios_failed = atomic_load(&rm->failed);
	st->timeouts = atomic_load(&rm->timeouts);
	st->connects = atomic_load(&rm->connects);
	st->connect_failures = atomic_load(&rm->connect_failures);
	st->inflight = atomic_load(&rm->inflight_n);
	st->connected = atomic_load(&rm->connected);
	st->fenced = atomic_load(&rm->fenced);
	st->fenced_ios = atomic_load(&rm->fenced_ios);
	return 0;
}
