/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SCSI block command set (SBC-3) and primary commands (SPC-4) on top of a
 * LUN provider.
 *
 * Each command runs on its connection's loop thread: scsi_exec() parses the
 * CDB, checks unit attentions and reservations under the LUN lock, then
 * either answers at once (INQUIRY, MODE SENSE, ...) or issues provider IO
 * through cmd_submit() and continues in a callback (multi-step commands such
 * as COMPARE AND WRITE, VERIFY with byte check, WRITE SAME and UNMAP keep
 * their progress in the command). Every error becomes sense data here and
 * nowhere else: the provider's -errno is translated in io_sense().
 *
 * COMPARE AND WRITE is atomic against concurrent writers: every write holds
 * its LBA range on lun->ranges while in flight; a COMPARE AND WRITE waits for
 * overlapping writes to drain and holds its range exclusively, and writes
 * overlapping it wait. Waiters are re-driven on their own loop thread.
 *
 * THREAD SAFETY: lun->lock guards reservations, registrations, unit
 * attentions, mode parameters and write ranges; it is never held across a
 * provider call. Lock order: srv->lock, then lun->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

#define MAX_WS_BLOCKS (1u << 22)       /* WRITE SAME / UNMAP per command */
#define MAX_UNMAP_DESC 64u
#define MAX_UNMAP_BLOCKS (1u << 20)
#define MAX_CAW_BLOCKS 255u
#define WS_CHUNK (1u << 20)

/* ------------------------------------------------------------------ */
/* LUN references                                                      */

void lun_get(struct lun *l)
{
	atomic_fetch_add(&l->refs, 1);
}

void lun_put(struct lun *l)
{
	if (!l || atomic_fetch_sub(&l->refs, 1) != 1)
		return;
	if (l->ops && l->ops->destroy)
		l->ops->destroy(l->ctx);
	pthread_mutex_destroy(&l->lock);
	ts_free(l->pr_path);
	ts_free(l);
}

/* ------------------------------------------------------------------ */
/* sense                                                               */

static void set_sense_info(struct cmd *c, uint8_t key, uint16_t asc, bool has_info, uint64_t info)
{
	uint8_t *s = c->sense;
	bool desc = c->lun && c->lun->d_sense;
	memset(s, 0, sizeof(c->sense));
	c->status = SCSI_STATUS_CHECK_CONDITION;
	if (desc) {
		s[0] = 0x72;
		s[1] = key;
		s[2] = (uint8_t)(asc >> 8);
		s[3] = (uint8_t)asc;
		c->sense_len = 8;
		if (has_info) {
			s[7] = 12;
			s[8] = 0x00;
			s[9] = 0x0a;
			s[10] = 0x80;
			put_be64(s + 12, info);
			c->sense_len = 20;
		}
	} else {
		s[0] = 0x70 | (has_info ? 0x80 : 0);
		s[2] = key;
		if (has_info)
			put_be32(s + 3, (uint32_t)info);
		s[7] = 10;
		s[12] = (uint8_t)(asc >> 8);
		s[13] = (uint8_t)asc;
		c->sense_len = 18;
	}
}

void scsi_set_sense(struct cmd *c, uint8_t key, uint16_t asc)
{
	set_sense_info(c, key, asc, false, 0);
}

static void fail(struct cmd *c, uint8_t key, uint16_t asc)
{
	scsi_set_sense(c, key, asc);
	c->data_in_len = 0;
	cmd_complete(c);
}

static void io_sense(struct cmd *c, int err, bool write)
{
	if (err == -ENOSPC)
		fail(c, SK_DATA_PROTECT, 0x2707); /* space allocation failed write protect */
	else if (err == -EROFS)
		fail(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	else if (err == -ENOMEM || err == -EAGAIN) {
		c->status = SCSI_STATUS_TASK_SET_FULL;
		c->data_in_len = 0;
		cmd_complete(c);
	} else
		fail(c, SK_MEDIUM_ERROR, write ? ASC_WRITE_ERROR : ASC_READ_ERROR);
}

static void good(struct cmd *c)
{
	cmd_complete(c);
}

/* Data-In of \p len bytes already in c->buf, clipped to the allocation length. */
static void send_data(struct cmd *c, uint32_t len, uint32_t alloc)
{
	c->data_in_len = TS_MIN(len, alloc);
	cmd_complete(c);
}

/* ------------------------------------------------------------------ */
/* CDB decoding                                                        */

struct rw {
	uint64_t lba;
	uint32_t nb;
	uint8_t flags; /* cdb[1] */
};

static bool cdb_rw(const uint8_t *cdb, struct rw *rw)
{
	switch (cdb[0]) {
	case SCSI_READ6:
	case SCSI_WRITE6:
		rw->lba = get_be24(cdb + 1) & 0x1fffff;
		rw->nb = cdb[4] ? cdb[4] : 256;
		rw->flags = 0;
		return true;
	case SCSI_READ10: case SCSI_WRITE10: case SCSI_WRITE_VERIFY10: case SCSI_VERIFY10:
	case SCSI_PREFETCH10: case SCSI_SYNC_CACHE10: case SCSI_WRITE_SAME10:
		rw->lba = get_be32(cdb + 2);
		rw->nb = get_be16(cdb + 7);
		rw->flags = cdb[1];
		return true;
	case SCSI_READ12: case SCSI_WRITE12: case SCSI_WRITE_VERIFY12: case SCSI_VERIFY12:
		rw->lba = get_be32(cdb + 2);
		rw->nb = get_be32(cdb + 6);
		rw->flags = cdb[1];
		return true;
	case SCSI_READ16: case SCSI_WRITE16: case SCSI_WRITE_VERIFY16: case SCSI_VERIFY16:
	case SCSI_PREFETCH16: case SCSI_SYNC_CACHE16: case SCSI_WRITE_SAME16:
		rw->lba = get_be64(cdb + 2);
		rw->nb = get_be32(cdb + 10);
		rw->flags = cdb[1];
		return true;
	case SCSI_COMPARE_AND_WRITE:
		rw->lba = get_be64(cdb + 2);
		rw->nb = cdb[13];
		rw->flags = cdb[1];
		return true;
	}
	return false;
}

uint32_t scsi_cdb_xfer_len(const uint8_t *cdb, uint32_t bs, bool *is_write)
{
	struct rw rw;
	*is_write = false;
	switch (cdb[0]) {
	case SCSI_WRITE6: case SCSI_WRITE10: case SCSI_WRITE12: case SCSI_WRITE16:
	case SCSI_WRITE_VERIFY10: case SCSI_WRITE_VERIFY12: case SCSI_WRITE_VERIFY16:
		cdb_rw(cdb, &rw);
		*is_write = true;
		return (uint32_t)TS_MIN((uint64_t)rw.nb * bs, 0xffffffffull);
	case SCSI_VERIFY10: case SCSI_VERIFY12: case SCSI_VERIFY16:
		cdb_rw(cdb, &rw);
		if (((rw.flags >> 1) & 3) == 1)
			return (uint32_t)TS_MIN((uint64_t)rw.nb * bs, 0xffffffffull);
		if (((rw.flags >> 1) & 3) == 3)
			return bs;
		return 0;
	case SCSI_COMPARE_AND_WRITE:
		*is_write = true;
		return 2u * cdb[13] * bs;
	case SCSI_WRITE_SAME10: case SCSI_WRITE_SAME16:
		*is_write = true;
		return (cdb[0] == SCSI_WRITE_SAME16 && (cdb[1] & 1)) ? 0 : bs;
	case SCSI_UNMAP: case SCSI_MODE_SELECT10:
		return get_be16(cdb + 7);
	case SCSI_MODE_SELECT6:
		return cdb[4];
	case SCSI_PR_OUT:
		return get_be32(cdb + 5);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* nexus, unit attention, reservations                                 */

static struct nexus *nexus_get(struct cmd *c)
{
	struct session *s = c->conn->sess;
	struct lun *l = c->lun;
	struct nexus *nx = s->nexus[l->id];
	if (nx && nx->lun == l)
		return nx;
	if (nx) {
		/* stale: the LUN id was reused */
		pthread_mutex_lock(&nx->lun->lock);
		for (struct nexus **pp = &nx->lun->nexuses; *pp; pp = &(*pp)->next)
			if (*pp == nx) {
				*pp = nx->next;
				break;
			}
		pthread_mutex_unlock(&nx->lun->lock);
		lun_put(nx->lun);
		ts_free(nx);
		s->nexus[l->id] = NULL;
	}
	nx = ts_calloc(1, sizeof(*nx));
	if (!nx)
		return NULL;
	nx->lun = l;
	nx->sess = s;
	/*
	 * A new I_T nexus starts with POWER ON, RESET, OR BUS DEVICE RESET
	 * OCCURRED (SAM-5): after a target restart every nexus is new, and this
	 * is how an initiator learns that writes it had not yet flushed may be
	 * gone (the volume layer's volatile metadata died with the process).
	 */
	nx->ua = UA_POWER_ON;
	lun_get(l);
	pthread_mutex_lock(&l->lock);
	nx->next = l->nexuses;
	l->nexuses = nx;
	pthread_mutex_unlock(&l->lock);
	s->nexus[l->id] = nx;
	return nx;
}

static void ua_all(struct lun *l, struct nexus *except, uint32_t bit)
{
	for (struct nexus *nx = l->nexuses; nx; nx = nx->next)
		if (nx != except)
			nx->ua |= bit;
}

static void ua_port(struct lun *l, const char *port, uint32_t bit)
{
	for (struct nexus *nx = l->nexuses; nx; nx = nx->next)
		if (!strcmp(nx->sess->port, port))
			nx->ua |= bit;
}

static uint16_t ua_asc(uint32_t bit)
{
	switch (bit) {
	case UA_POWER_ON: return ASC_POWER_ON_RESET;
	case UA_BUS_RESET: return ASC_BUS_DEVICE_RESET;
	case UA_NEXUS_LOSS: return ASC_I_T_NEXUS_LOSS;
	case UA_MODE_CHANGED: return ASC_MODE_PARAMS_CHANGED;
	case UA_RES_PREEMPTED: return ASC_RESERVATIONS_PREEMPTED;
	case UA_RES_RELEASED: return ASC_RESERVATIONS_RELEASED;
	case UA_CAPACITY_CHANGED: return ASC_CAPACITY_CHANGED;
	default: return ASC_REGISTRATIONS_PREEMPTED;
	}
}

void scsi_lun_resize(struct lun *l, uint64_t size)
{
	pthread_mutex_lock(&l->lock);
	/* Readers on the IO path load these without the lock: store atomically. */
	__atomic_store_n(&l->info.size, size, __ATOMIC_RELEASE);
	__atomic_store_n(&l->nblocks, size / l->bs, __ATOMIC_RELEASE);
	ua_all(l, NULL, UA_CAPACITY_CHANGED);
	pthread_mutex_unlock(&l->lock);
}

void scsi_nexus_lost(struct session *s)
{
	for (int i = 0; i < ISCSI_MAX_LUNS; i++) {
		struct nexus *nx = s->nexus[i];
		if (!nx)
			continue;
		struct lun *l = nx->lun;
		pthread_mutex_lock(&l->lock);
		for (struct nexus **pp = &l->nexuses; *pp; pp = &(*pp)->next)
			if (*pp == nx) {
				*pp = nx->next;
				break;
			}
		if (!strcmp(l->res2_holder, s->port))
			l->res2_holder[0] = 0;
		pthread_mutex_unlock(&l->lock);
		lun_put(l);
		ts_free(nx);
		s->nexus[i] = NULL;
	}
}

void scsi_lun_reset(struct lun *l, struct nexus *from)
{
	pthread_mutex_lock(&l->lock);
	l->res2_holder[0] = 0;
	for (struct nexus *nx = l->nexuses; nx; nx = nx->next) {
		/* nx is never NULL here; `from` may be (every nexus). */
		// cppcheck-suppress nullPointerRedundantCheck
		nx->prevent = false;
		if (nx != from)
			nx->ua |= UA_BUS_RESET;
	}
	pthread_mutex_unlock(&l->lock);
}

static int reg_find(struct lun *l, const char *port)
{
	for (unsigned i = 0; i < l->nregs; i++)
		if (!strcmp(l->regs[i].port, port))
			return (int)i;
	return -1;
}

static bool pr_is_holder(struct lun *l, const char *port)
{
	if (!l->pr_held)
		return false;
	if (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR)
		return reg_find(l, port) >= 0;
	return !strcmp(l->pr_holder, port);
}

enum acc { ACC_ALWAYS, ACC_READ, ACC_WRITE };

static enum acc cmd_access(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case SCSI_INQUIRY: case SCSI_REPORT_LUNS: case SCSI_REQUEST_SENSE: case SCSI_PR_IN:
	case SCSI_PR_OUT: case SCSI_READ_CAPACITY10: case SCSI_TEST_UNIT_READY: case SCSI_MAINTENANCE_IN:
		return ACC_ALWAYS;
	case SCSI_SERVICE_ACTION_IN16:
		return (cdb[1] & 0x1f) == SAI_READ_CAPACITY16 ? ACC_ALWAYS : ACC_READ;
	case SCSI_READ6: case SCSI_READ10: case SCSI_READ12: case SCSI_READ16:
	case SCSI_VERIFY10: case SCSI_VERIFY12: case SCSI_VERIFY16: case SCSI_PREFETCH10:
	case SCSI_PREFETCH16: case SCSI_MODE_SENSE6: case SCSI_MODE_SENSE10:
	case SCSI_READ_DEFECT10: case SCSI_READ_DEFECT12:
		return ACC_READ;
	}
	return ACC_WRITE;
}

/* Under lun->lock. True if the command conflicts with a reservation. */
static bool res_conflict(struct cmd *c)
{
	struct lun *l = c->lun;
	const char *me = c->conn->sess->port;
	enum acc a = cmd_access(c->cdb);
	uint8_t op = c->cdb[0];

	if (l->res2_holder[0] && strcmp(l->res2_holder, me)) {
		if (op == SCSI_INQUIRY || op == SCSI_REPORT_LUNS || op == SCSI_REQUEST_SENSE ||
		    op == SCSI_RELEASE6 || op == SCSI_RELEASE10 || op == SCSI_MAINTENANCE_IN ||
		    (op == SCSI_SERVICE_ACTION_IN16 && (c->cdb[1] & 0x1f) == SAI_READ_CAPACITY16) ||
		    op == SCSI_READ_CAPACITY10)
			return false;
		return true;
	}
	if ((op == SCSI_RESERVE6 || op == SCSI_RESERVE10 || op == SCSI_RELEASE6 || op == SCSI_RELEASE10) &&
	    (l->pr_held || l->nregs))
		return op == SCSI_RESERVE6 || op == SCSI_RESERVE10 || l->pr_held;
	if (!l->pr_held || a == ACC_ALWAYS || pr_is_holder(l, me))
		return false;
	bool registered = reg_find(l, me) >= 0;
	switch (l->pr_type) {
	case PR_TYPE_WE:
		return a == ACC_WRITE;
	case PR_TYPE_EA:
		return true;
	case PR_TYPE_WERO: case PR_TYPE_WEAR:
		return !registered && a == ACC_WRITE;
	case PR_TYPE_EARO: case PR_TYPE_EAAR:
		return !registered;
	}
	return false;
}

/* ------------------------------------------------------------------ */
/* write ranges (COMPARE AND WRITE atomicity)                          */

static void range_retry(struct cmd *c, int status)
{
	(void)status;
	scsi_exec(c);
}

/* Try to hold [lba, lba+nb). False: c was queued and will be re-executed. */
static bool range_acquire(struct cmd *c, uint64_t lba, uint64_t nb, bool caw)
{
	struct lun *l = c->lun;
	pthread_mutex_lock(&l->lock);
	for (struct wrange *r = l->ranges.next; r != &l->ranges; r = r->next) {
		if (r->lba < lba + nb && lba < r->lba + r->nblocks && (caw || r->caw)) {
			c->next = NULL;
			struct cmd **pp = &l->range_waiters;
			while (*pp)
				pp = &(*pp)->next;
			*pp = c;
			c->refs++;
			pthread_mutex_unlock(&l->lock);
			return false;
		}
	}
	c->range.lba = lba;
	c->range.nblocks = nb;
	c->range.caw = caw;
	c->range.next = &l->ranges;
	c->range.prev = l->ranges.prev;
	l->ranges.prev->next = &c->range;
	l->ranges.prev = &c->range;
	c->has_range = true;
	pthread_mutex_unlock(&l->lock);
	return true;
}

void scsi_range_release(struct cmd *c)
{
	struct lun *l = c->lun;
	struct cmd *w;
	pthread_mutex_lock(&l->lock);
	c->range.prev->next = c->range.next;
	c->range.next->prev = c->range.prev;
	c->has_range = false;
	w = l->range_waiters;
	l->range_waiters = NULL;
	pthread_mutex_unlock(&l->lock);
	/* re-drive every waiter on its own loop; the loser queues again */
	while (w) {
		struct cmd *n = w->next;
		cmd_requeue(w, range_retry);
		w = n;
	}
}

/* ------------------------------------------------------------------ */
/* read / write family                                                 */

static bool check_range(struct cmd *c, uint64_t lba, uint64_t nb)
{
	if (lba > c->lun->nblocks || nb > c->lun->nblocks - lba) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	return true;
}

static bool write_protected(struct cmd *c)
{
	if (c->lun->info.read_only || c->lun->swp) {
		fail(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return true;
	}
	return false;
}

static void read_done(struct cmd *c, int st)
{
	if (st) {
		io_sense(c, st, false);
		return;
	}
	good(c);
}

static void write_done(struct cmd *c, int st)
{
	if (st) {
		io_sense(c, st, true);
		return;
	}
	good(c);
}

static void exec_read(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	uint64_t bytes = (uint64_t)rw->nb * l->bs;
	if (c->cdb[0] != SCSI_READ6 && (rw->flags >> 5)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!check_range(c, rw->lba, rw->nb))
		return;
	if (bytes > ISCSI_MAX_XFER) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	c->data_in_len = (uint32_t)bytes;
	if (!rw->nb) {
		good(c);
		return;
	}
	/* read only what the initiator will take, in whole blocks */
	uint64_t want = TS_MIN(bytes, TS_ALIGN_UP((uint64_t)c->edtl, l->bs));
	if (!want) {
		good(c);
		return;
	}
	if (cmd_buf_reserve(c, want)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	cmd_submit(c, l->ops->read, rw->lba * l->bs, want, c->buf, 0, read_done);
}

static void exec_write(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	uint64_t bytes = (uint64_t)rw->nb * l->bs;
	if (c->cdb[0] != SCSI_WRITE6 && (rw->flags >> 5)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!check_range(c, rw->lba, rw->nb) || write_protected(c))
		return;
	/* write min(TL, EDTL) in whole blocks (iSCSI residual rules) */
	uint64_t n = TS_MIN(bytes, (uint64_t)c->received) / l->bs;
	if (!n) {
		good(c);
		return;
	}
	if (!c->has_range && !range_acquire(c, rw->lba, n, false))
		return;
	bool fua = (rw->flags & 0x08) || !l->wce;
	cmd_submit(c, l->ops->write, rw->lba * l->bs, n * l->bs, c->buf, fua ? TS_ISCSI_LUN_FUA : 0,
		   write_done);
}

/* VERIFY with BYTCHK: read and compare with the data-out buffer. */
static void verify_done(struct cmd *c, int st)
{
	struct lun *l = c->lun;
	if (st) {
		io_sense(c, st, false);
		return;
	}
	uint64_t n = c->nblocks;
	bool one = ((c->cdb[1] >> 1) & 3) == 3;
	for (uint64_t i = 0; i < n * l->bs; i++) {
		uint8_t want = one ? c->buf[i % l->bs] : c->buf[i];
		if (c->buf2[i] != want) {
			set_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, true, i);
			cmd_complete(c);
			return;
		}
	}
	good(c);
}

static void exec_verify(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	unsigned bytchk = (rw->flags >> 1) & 3;
	if ((rw->flags >> 5) || bytchk == 2) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!check_range(c, rw->lba, rw->nb))
		return;
	if (!bytchk || !rw->nb) {
		good(c);
		return;
	}
	uint64_t need = bytchk == 3 ? l->bs : (uint64_t)rw->nb * l->bs;
	if (c->received < need || (uint64_t)rw->nb * l->bs > ISCSI_MAX_XFER) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	c->nblocks = rw->nb;
	if (cmd_buf2_reserve(c, (uint64_t)rw->nb * l->bs)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	cmd_submit(c, l->ops->read, rw->lba * l->bs, (uint64_t)rw->nb * l->bs, c->buf2, 0, verify_done);
}

/* COMPARE AND WRITE: read, compare the first half, write the second. */
static void caw_write_done(struct cmd *c, int st)
{
	write_done(c, st);
}

static void caw_read_done(struct cmd *c, int st)
{
	struct lun *l = c->lun;
	uint64_t len = (uint64_t)c->nblocks * l->bs;
	if (st) {
		io_sense(c, st, false);
		return;
	}
	for (uint64_t i = 0; i < len; i++)
		if (c->buf2[i] != c->buf[i]) {
			set_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, true, i);
			cmd_complete(c);
			return;
		}
	bool fua = (c->cdb[1] & 0x08) || !l->wce;
	cmd_submit(c, l->ops->write, c->lba * l->bs, len, c->buf + len, fua ? TS_ISCSI_LUN_FUA : 0,
		   caw_write_done);
}

static void exec_caw(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	if (rw->flags >> 5) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (rw->nb > MAX_CAW_BLOCKS) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!check_range(c, rw->lba, rw->nb) || write_protected(c))
		return;
	if (c->received != 2u * rw->nb * l->bs || c->edtl != 2u * rw->nb * l->bs) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!rw->nb) {
		good(c);
		return;
	}
	if (!c->has_range && !range_acquire(c, rw->lba, rw->nb, true))
		return;
	c->lba = rw->lba;
	c->nblocks = rw->nb;
	if (cmd_buf2_reserve(c, (uint64_t)rw->nb * l->bs)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	cmd_submit(c, l->ops->read, rw->lba * l->bs, (uint64_t)rw->nb * l->bs, c->buf2, 0, caw_read_done);
}

/* WRITE SAME: repeat the block over [pos, end) in chunks, or unmap. */
static void ws_step(struct cmd *c, int st);

static void ws_next(struct cmd *c)
{
	struct lun *l = c->lun;
	if (c->pos >= c->end) {
		good(c);
		return;
	}
	uint64_t nb = TS_MIN(c->end - c->pos, (uint64_t)WS_CHUNK / l->bs);
	if (c->nblocks == 0xffffffffu) /* unmap */
		cmd_submit(c, l->ops->unmap, c->pos * l->bs, nb * l->bs, NULL, 0, ws_step);
	else
		cmd_submit(c, l->ops->write, c->pos * l->bs, nb * l->bs, c->buf2, 0, ws_step);
	c->pos += nb;
}

static void ws_step(struct cmd *c, int st)
{
	if (st) {
		io_sense(c, st, true);
		return;
	}
	ws_next(c);
}

static void exec_write_same(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	bool unmap = rw->flags & 0x08, anchor = rw->flags & 0x10;
	bool ndob = c->cdb[0] == SCSI_WRITE_SAME16 && (rw->flags & 0x01);
	uint64_t nb = rw->nb;
	if ((rw->flags >> 5) || anchor || (ndob && !unmap) || (unmap && !l->info.thin)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (nb == 0)
		nb = rw->lba < l->nblocks ? l->nblocks - rw->lba : 0;
	if (!check_range(c, rw->lba, nb))
		return;
	if (nb > MAX_WS_BLOCKS) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (write_protected(c))
		return;
	if (!ndob && (c->received != l->bs || c->edtl != l->bs)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	c->pos = rw->lba;
	c->end = rw->lba + nb;
	if (unmap) { /* UNMAP=1 deallocates whatever the data; LBPRZ makes reads return zeroes */
		c->nblocks = 0xffffffffu;
	} else {
		uint32_t chunk = (uint32_t)TS_MIN((uint64_t)WS_CHUNK, nb * l->bs);
		if (cmd_buf2_reserve(c, chunk)) {
			io_sense(c, -ENOMEM, true);
			return;
		}
		for (uint32_t off = 0; off < chunk; off += l->bs) {
			if (ndob)
				memset(c->buf2 + off, 0, l->bs);
			else
				memcpy(c->buf2 + off, c->buf, l->bs);
		}
		c->nblocks = 0;
	}
	if (!nb) {
		good(c);
		return;
	}
	ws_next(c);
}

/* UNMAP: one descriptor per step. */
static void unmap_step(struct cmd *c, int st)
{
	struct lun *l = c->lun;
	if (st) {
		io_sense(c, st, true);
		return;
	}
	while (c->pos < c->end) {
		const uint8_t *d = c->buf + 8 + c->pos * 16;
		c->pos++;
		uint64_t lba = get_be64(d);
		uint32_t nb = get_be32(d + 8);
		if (!nb)
			continue;
		cmd_submit(c, l->ops->unmap, lba * l->bs, (uint64_t)nb * l->bs, NULL, 0, unmap_step);
		return;
	}
	good(c);
}

static void exec_unmap(struct cmd *c)
{
	struct lun *l = c->lun;
	uint32_t plen = get_be16(c->cdb + 7);
	if (!l->info.thin) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (c->cdb[1] & 1) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen == 0) {
		good(c);
		return;
	}
	if (write_protected(c))
		return;
	if (plen < 8 || c->received < plen) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	uint32_t bdl = get_be16(c->buf + 2);
	if (bdl > plen - 8)
		bdl = (plen - 8) & ~15u;
	uint32_t n = bdl / 16;
	if (n > MAX_UNMAP_DESC) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *d = c->buf + 8 + i * 16;
		uint64_t lba = get_be64(d);
		uint32_t nb = get_be32(d + 8);
		if (nb > MAX_UNMAP_BLOCKS) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		if (!check_range(c, lba, nb))
			return;
	}
	c->pos = 0;
	c->end = n;
	unmap_step(c, 0);
}

static void flush_done(struct cmd *c, int st)
{
	if (st) {
		io_sense(c, st, true);
		return;
	}
	good(c);
}

/* ------------------------------------------------------------------ */
/* INQUIRY                                                             */

static uint32_t inq_standard(struct cmd *c, uint8_t *b, bool present)
{
	memset(b, 0, 96);
	b[0] = present ? 0x00 : 0x7f;
	b[2] = 0x06;  /* SPC-4 */
	b[3] = 0x12;  /* HISUP, response data format 2 */
	b[4] = 96 - 5;
	b[7] = 0x02;  /* CMDQUE */
	memcpy(b + 8, "TESSERA ", 8);
	memset(b + 16, ' ', 16);
	if (c->lun)
		memcpy(b + 16, c->lun->product, strlen(c->lun->product));
	memcpy(b + 32, "0001", 4);
	put_be16(b + 58, 0x00c0); /* SAM-5 */
	put_be16(b + 60, 0x0960); /* iSCSI */
	put_be16(b + 62, 0x0460); /* SPC-4 */
	put_be16(b + 64, 0x04c0); /* SBC-3 */
	return 96;
}

static uint32_t vpd_page(struct cmd *c, uint8_t page, uint8_t *b, bool *ok)
{
	struct lun *l = c->lun;
	char hex[33];
	*ok = true;
	memset(b, 0, 256);
	b[1] = page;
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", l->info.uuid[i]);
	switch (page) {
	case 0x00: {
		static const uint8_t pages[] = { 0x00, 0x80, 0x83, 0xb0, 0xb1, 0xb2 };
		memcpy(b + 4, pages, sizeof(pages));
		put_be16(b + 2, sizeof(pages) - (l->info.thin ? 0 : 1));
		return 4 + get_be16(b + 2);
	}
	case 0x80:
		memcpy(b + 4, hex, 32);
		put_be16(b + 2, 32);
		return 36;
	case 0x83: {
		uint8_t *p = b + 4;
		/* NAA IEEE Registered Extended (6h) from the uuid: stable across restarts */
		p[0] = 0x01; p[1] = 0x03; p[3] = 16;
		p[4] = 0x60 | (l->info.uuid[0] & 0x0f);
		memcpy(p + 5, l->info.uuid + 1, 15);
		p += 20;
		/* T10 vendor id */
		p[0] = 0x02; p[1] = 0x01; p[3] = 8 + 32;
		memcpy(p + 4, "TESSERA ", 8);
		memcpy(p + 12, hex, 32);
		p += 4 + 8 + 32;
		/* relative target port 1 */
		p[0] = 0x01; p[1] = 0x14; p[3] = 4;
		put_be16(p + 6, 1);
		p += 8;
		/* target port group 1 */
		p[0] = 0x01; p[1] = 0x15; p[3] = 4;
		put_be16(p + 6, 1);
		p += 8;
		/* SCSI name string of the target */
		if (c->conn->sess->tgt) {
			size_t n = strlen(c->conn->sess->tgt->iqn);
			size_t padded = TS_ALIGN_UP(n + 1, 4);
			if (padded + 4 + (size_t)(p - b) <= 252) {
				p[0] = 0x53; p[1] = 0xa8; p[3] = (uint8_t)padded;
				memcpy(p + 4, c->conn->sess->tgt->iqn, n);
				p += 4 + padded;
			}
		}
		put_be16(b + 2, (uint16_t)(p - b - 4));
		return (uint32_t)(p - b);
	}
	case 0xb0:
		put_be16(b + 2, 0x3c);
		b[4] = 0x00;                 /* WSNZ = 0 */
		b[5] = MAX_CAW_BLOCKS;
		put_be16(b + 6, 1);          /* optimal transfer length granularity */
		put_be32(b + 8, ISCSI_MAX_XFER / l->bs);
		put_be32(b + 12, (1u << 20) / l->bs);
		if (l->info.thin) {
			put_be32(b + 20, MAX_UNMAP_BLOCKS);
			put_be32(b + 24, MAX_UNMAP_DESC);
			put_be32(b + 28, 1);
		}
		put_be64(b + 36, MAX_WS_BLOCKS);
		return 64;
	case 0xb1:
		put_be16(b + 2, 0x3c);
		put_be16(b + 4, 1);          /* non-rotating medium */
		return 64;
	case 0xb2:
		if (!l->info.thin)
			break;
		put_be16(b + 2, 4);
		b[5] = 0x80 | 0x40 | 0x20 | 0x04; /* LBPU, LBPWS, LBPWS10, LBPRZ */
		b[6] = 0x02;                 /* thin provisioned */
		return 8;
	}
	*ok = false;
	return 0;
}

static void exec_inquiry(struct cmd *c)
{
	uint32_t alloc = get_be16(c->cdb + 3);
	bool evpd = c->cdb[1] & 1;
	if (cmd_buf_reserve(c, 512)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	if (!evpd) {
		if (c->cdb[2]) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		send_data(c, inq_standard(c, c->buf, c->lun != NULL), alloc);
		return;
	}
	if (!c->lun) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	bool ok;
	uint32_t n = vpd_page(c, c->cdb[2], c->buf, &ok);
	if (!ok) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	send_data(c, n, alloc);
}

/* ------------------------------------------------------------------ */
/* MODE SENSE / MODE SELECT                                            */

static uint32_t mode_page(struct lun *l, uint8_t page, int pc, uint8_t *p)
{
	bool chg = pc == 1, def = pc == 2;
	switch (page) {
	case 0x01:
		memset(p, 0, 12);
		p[0] = 0x01; p[1] = 10;
		return 12;
	case 0x08:
		memset(p, 0, 20);
		p[0] = 0x08; p[1] = 18;
		if (chg)
			p[2] = 0x04;
		else if (def ? true : l->wce)
			p[2] = 0x04;
		return 20;
	case 0x0a:
		memset(p, 0, 12);
		p[0] = 0x0a; p[1] = 10;
		if (chg) {
			p[2] = 0x04;  /* D_SENSE */
			p[4] = 0x08;  /* SWP */
		} else if (!def) {
			p[2] = l->d_sense ? 0x04 : 0;
			p[4] = l->swp ? 0x08 : 0;
		}
		if (!chg)
			p[3] = 0x10; /* QUEUE ALGORITHM MODIFIER 1: unrestricted */
		put_be16(p + 8, 0xffff); /* busy timeout period: unlimited */
		if (chg)
			memset(p + 8, 0, 2);
		return 12;
	case 0x1c:
		memset(p, 0, 12);
		p[0] = 0x1c; p[1] = 10;
		return 12;
	}
	return 0;
}

static void exec_mode_sense(struct cmd *c)
{
	struct lun *l = c->lun;
	bool ten = c->cdb[0] == SCSI_MODE_SENSE10;
	bool dbd = c->cdb[1] & 0x08;
	int pc = c->cdb[2] >> 6;
	uint8_t page = c->cdb[2] & 0x3f, sub = c->cdb[3];
	uint32_t alloc = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	uint32_t hl = ten ? 8 : 4, len;
	static const uint8_t pages[] = { 0x01, 0x08, 0x0a, 0x1c };

	if (pc == 3) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if (cmd_buf_reserve(c, 1024)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	uint8_t *b = c->buf;
	memset(b, 0, 1024);
	len = hl;
	if (!dbd) {
		uint8_t *d = b + hl;
		put_be32(d, l->nblocks > 0xffffffffull ? 0xffffffffu : (uint32_t)l->nblocks);
		put_be24(d + 5, l->bs);
		len += 8;
	}
	if (sub != 0 && sub != 0xff) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (page == 0x3f) {
		for (size_t i = 0; i < sizeof(pages); i++)
			len += mode_page(l, pages[i], pc, b + len);
	} else {
		uint32_t n = sub == 0xff ? 0 : mode_page(l, page, pc, b + len);
		if (!n) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		len += n;
	}
	uint8_t dsp = 0x10 | ((l->info.read_only || l->swp) ? 0x80 : 0); /* DPOFUA, WP */
	if (ten) {
		put_be16(b, (uint16_t)(len - 2));
		b[3] = dsp;
		put_be16(b + 6, dbd ? 0 : 8);
	} else {
		b[0] = (uint8_t)(len - 1);
		b[2] = dsp;
		b[3] = dbd ? 0 : 8;
	}
	send_data(c, len, alloc);
}

static void exec_mode_select(struct cmd *c, struct nexus *nx)
{
	struct lun *l = c->lun;
	bool ten = c->cdb[0] == SCSI_MODE_SELECT10;
	uint32_t plen = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	uint32_t hl = ten ? 8 : 4, bdl, off;
	bool d_sense = l->d_sense, swp = l->swp, wce = l->wce;

	if (c->cdb[1] & 0x01) { /* SP: nothing is savable */
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen == 0) {
		good(c);
		return;
	}
	if (plen < hl || c->received < plen) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	const uint8_t *b = c->buf;
	bdl = ten ? get_be16(b + 6) : b[3];
	off = hl + bdl;
	while (off + 2 <= plen) {
		uint8_t page = b[off] & 0x3f;
		uint32_t pl = b[off + 1] + 2u;
		if (b[off] & 0x40 || off + pl > plen) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		uint8_t cur[32];
		uint32_t cl = mode_page(l, page, 0, cur);
		if (!cl || cl != pl) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		if (page == 0x0a) {
			d_sense = b[off + 2] & 0x04;
			swp = b[off + 4] & 0x08;
		} else if (page == 0x08) {
			wce = b[off + 2] & 0x04;
		}
		off += pl;
	}
	pthread_mutex_lock(&l->lock);
	if (d_sense != l->d_sense || swp != l->swp || wce != l->wce)
		ua_all(l, nx, UA_MODE_CHANGED);
	l->d_sense = d_sense;
	l->swp = swp;
	l->wce = wce;
	pthread_mutex_unlock(&l->lock);
	good(c);
}

/* ------------------------------------------------------------------ */
/* misc                                                                */

static void exec_report_luns(struct cmd *c)
{
	uint32_t alloc = get_be32(c->cdb + 6);
	struct ts_iscsi_server *srv = c->conn->loop->srv;
	struct target *t = c->conn->sess->tgt;
	uint32_t n = 0;
	if (alloc < 16) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (c->cdb[2] > 2 && c->cdb[2] != 0x10 && c->cdb[2] != 0x11 && c->cdb[2] != 0x12) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (cmd_buf_reserve(c, 8 + 8 * ISCSI_MAX_LUNS)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	memset(c->buf, 0, 8 + 8 * ISCSI_MAX_LUNS);
	if (c->cdb[2] != 1) {
		pthread_mutex_lock(&srv->lock);
		for (int i = 0; t && i < ISCSI_MAX_LUNS; i++)
			if (t->luns[i]) {
				uint8_t *e = c->buf + 8 + 8 * n++;
				e[0] = (uint8_t)(i >> 8);
				e[1] = (uint8_t)i;
			}
		pthread_mutex_unlock(&srv->lock);
	}
	put_be32(c->buf, 8 * n);
	send_data(c, 8 + 8 * n, alloc);
}

static void exec_read_capacity(struct cmd *c, bool sixteen)
{
	struct lun *l = c->lun;
	if (cmd_buf_reserve(c, 32)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	memset(c->buf, 0, 32);
	if (!sixteen) {
		if (!(c->cdb[8] & 1) && get_be32(c->cdb + 2)) {
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		put_be32(c->buf, l->nblocks - 1 > 0xffffffffull ? 0xffffffffu : (uint32_t)(l->nblocks - 1));
		put_be32(c->buf + 4, l->bs);
		send_data(c, 8, 8);
		return;
	}
	put_be64(c->buf, l->nblocks - 1);
	put_be32(c->buf + 8, l->bs);
	if (l->info.thin)
		c->buf[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
	send_data(c, 32, get_be32(c->cdb + 10));
}

static void exec_get_lba_status(struct cmd *c)
{
	struct lun *l = c->lun;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t alloc = get_be32(c->cdb + 10);
	if (lba >= l->nblocks) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	if (cmd_buf_reserve(c, 8 + 16 * 32)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	memset(c->buf, 0, 8 + 16 * 32);
	uint32_t n = 0;
	uint32_t maxd = alloc >= 8 ? TS_MIN((alloc - 8) / 16, 32u) : 0;
	if (maxd == 0)
		maxd = 1;
	while (lba < l->nblocks && n < maxd) {
		uint64_t len = (l->nblocks - lba) * l->bs;
		bool mapped = true;
		if (l->ops->lba_status && l->ops->lba_status(l->ctx, lba * l->bs, &len, &mapped))
			len = (l->nblocks - lba) * l->bs, mapped = true;
		uint64_t nb = TS_MAX(len / l->bs, 1);
		nb = TS_MIN(nb, 0xffffffffull);
		uint8_t *d = c->buf + 8 + 16 * n++;
		put_be64(d, lba);
		put_be32(d + 8, (uint32_t)nb);
		d[12] = mapped ? 0 : 1;
		lba += nb;
	}
	put_be32(c->buf, 4 + 16 * n);
	send_data(c, 8 + 16 * n, alloc);
}

static void exec_request_sense(struct cmd *c, struct nexus *nx)
{
	bool desc = c->cdb[1] & 1;
	uint32_t alloc = c->cdb[4];
	uint16_t asc = ASC_NONE;
	uint8_t key = SK_NO_SENSE;
	if (nx) {
		pthread_mutex_lock(&nx->lun->lock);
		if (nx->ua) {
			uint32_t bit = nx->ua & -nx->ua;
			nx->ua &= ~bit;
			asc = ua_asc(bit);
			key = SK_UNIT_ATTENTION;
		}
		pthread_mutex_unlock(&nx->lun->lock);
	} else {
		key = SK_ILLEGAL_REQUEST;
		asc = ASC_LUN_NOT_SUPPORTED;
	}
	if (cmd_buf_reserve(c, 32)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	memset(c->buf, 0, 32);
	uint32_t n;
	if (desc) {
		c->buf[0] = 0x72; c->buf[1] = key; c->buf[2] = (uint8_t)(asc >> 8); c->buf[3] = (uint8_t)asc;
		n = 8;
	} else {
		c->buf[0] = 0x70; c->buf[2] = key; c->buf[7] = 10;
		c->buf[12] = (uint8_t)(asc >> 8); c->buf[13] = (uint8_t)asc;
		n = 18;
	}
	send_data(c, n, alloc);
}

/* REPORT SUPPORTED OPERATION CODES */
struct opinfo {
	uint8_t op;
	uint16_t sa;
	bool has_sa;
	uint8_t len;
	uint8_t usage[16];
};

static const struct opinfo g_ops[] = {
	{ SCSI_TEST_UNIT_READY, 0, false, 6, { 0x00, 0, 0, 0, 0, 0x07 } },
	{ SCSI_REQUEST_SENSE, 0, false, 6, { 0x03, 0x01, 0, 0, 0xff, 0x07 } },
	{ SCSI_READ6, 0, false, 6, { 0x08, 0x1f, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_WRITE6, 0, false, 6, { 0x0a, 0x1f, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_INQUIRY, 0, false, 6, { 0x12, 0x01, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_MODE_SELECT6, 0, false, 6, { 0x15, 0x11, 0, 0, 0xff, 0x07 } },
	{ SCSI_RESERVE6, 0, false, 6, { 0x16, 0, 0, 0, 0, 0x07 } },
	{ SCSI_RELEASE6, 0, false, 6, { 0x17, 0, 0, 0, 0, 0x07 } },
	{ SCSI_MODE_SENSE6, 0, false, 6, { 0x1a, 0x08, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_START_STOP_UNIT, 0, false, 6, { 0x1b, 0x01, 0, 0x0f, 0xf7, 0x07 } },
	{ SCSI_PREVENT_ALLOW, 0, false, 6, { 0x1e, 0, 0, 0, 0x03, 0x07 } },
	{ SCSI_READ_CAPACITY10, 0, false, 10, { 0x25, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0x01, 0x07 } },
	{ SCSI_READ10, 0, false, 10, { 0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_WRITE10, 0, false, 10, { 0x2a, 0x18, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_WRITE_VERIFY10, 0, false, 10, { 0x2e, 0x12, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_VERIFY10, 0, false, 10, { 0x2f, 0x16, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_PREFETCH10, 0, false, 10, { 0x34, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_SYNC_CACHE10, 0, false, 10, { 0x35, 0x02, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_READ_DEFECT10, 0, false, 10, { 0x37, 0, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_WRITE_SAME10, 0, false, 10, { 0x41, 0x08, 0xff, 0xff, 0xff, 0xff, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_UNMAP, 0, false, 10, { 0x42, 0, 0, 0, 0, 0, 0x1f, 0xff, 0xff, 0x07 } },
	{ SCSI_MODE_SELECT10, 0, false, 10, { 0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_RESERVE10, 0, false, 10, { 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0x07 } },
	{ SCSI_RELEASE10, 0, false, 10, { 0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0x07 } },
	{ SCSI_MODE_SENSE10, 0, false, 10, { 0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_IN, 0, true, 10, { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_IN, 1, true, 10, { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_IN, 2, true, 10, { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_IN, 3, true, 10, { 0x5e, 0x1f, 0, 0, 0, 0, 0, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 0, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 1, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 2, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 3, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 4, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 5, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_PR_OUT, 6, true, 10, { 0x5f, 0x1f, 0xff, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07 } },
	{ SCSI_READ16, 0, false, 16, { 0x88, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_COMPARE_AND_WRITE, 0, false, 16, { 0x89, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0x1f, 0x07 } },
	{ SCSI_WRITE16, 0, false, 16, { 0x8a, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_WRITE_VERIFY16, 0, false, 16, { 0x8e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_VERIFY16, 0, false, 16, { 0x8f, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_PREFETCH16, 0, false, 16, { 0x90, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_SYNC_CACHE16, 0, false, 16, { 0x91, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_WRITE_SAME16, 0, false, 16, { 0x93, 0x09, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_SERVICE_ACTION_IN16, SAI_READ_CAPACITY16, true, 16, { 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07 } },
	{ SCSI_SERVICE_ACTION_IN16, SAI_GET_LBA_STATUS, true, 16, { 0x9e, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07 } },
	{ SCSI_REPORT_LUNS, 0, false, 12, { 0xa0, 0, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07 } },
	{ SCSI_MAINTENANCE_IN, MI_REPORT_SUPPORTED_OPCODES, true, 12, { 0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0x07 } },
	{ SCSI_READ12, 0, false, 12, { 0xa8, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_WRITE12, 0, false, 12, { 0xaa, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_WRITE_VERIFY12, 0, false, 12, { 0xae, 0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_VERIFY12, 0, false, 12, { 0xaf, 0x16, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0x07 } },
	{ SCSI_READ_DEFECT12, 0, false, 12, { 0xb7, 0x1f, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0x07 } },
};

static void exec_rsoc(struct cmd *c)
{
	uint8_t opt = c->cdb[2] & 7;
	bool rctd = c->cdb[2] & 0x80;
	uint8_t rop = c->cdb[3];
	uint16_t rsa = get_be16(c->cdb + 4);
	uint32_t alloc = get_be32(c->cdb + 6);
	uint32_t n = 4;
	const size_t nops = TS_ARRAY_SIZE(g_ops);
	const size_t cap = 4 + nops * 20 + 64;
	if (cmd_buf_reserve(c, cap)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	uint8_t *b = c->buf;
	memset(b, 0, cap);
	if (opt == 0) {
		for (size_t i = 0; i < TS_ARRAY_SIZE(g_ops); i++) {
			uint8_t *d = b + n;
			d[0] = g_ops[i].op;
			put_be16(d + 2, g_ops[i].sa);
			d[5] = (g_ops[i].has_sa ? 0x01 : 0) | (rctd ? 0x02 : 0);
			put_be16(d + 6, g_ops[i].len);
			n += 8;
			if (rctd) {
				put_be16(d + 8, 0x0a);
				n += 12;
			}
		}
		put_be32(b, n - 4);
		send_data(c, n, alloc);
		return;
	}
	if (opt > 3) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	const struct opinfo *hit = NULL;
	bool op_has_sa = false;
	for (size_t i = 0; i < TS_ARRAY_SIZE(g_ops); i++) {
		if (g_ops[i].op != rop)
			continue;
		op_has_sa = g_ops[i].has_sa;
		if (!g_ops[i].has_sa || g_ops[i].sa == rsa)
			hit = hit ? hit : &g_ops[i];
	}
	if ((opt == 1 && op_has_sa) || (opt == 2 && hit && !op_has_sa)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (opt == 2 && !op_has_sa && !hit) {
		/* unsupported opcode: report "not supported" */
	}
	memset(b, 0, 64);
	if (!hit) {
		b[1] = 0x01; /* not supported */
		n = 4;
	} else {
		b[1] = 0x03 | (rctd ? 0x80 : 0);
		put_be16(b + 2, hit->len);
		memcpy(b + 4, hit->usage, hit->len);
		n = 4u + hit->len;
		if (rctd) {
			put_be16(b + n, 0x0a);
			n += 12;
		}
	}
	send_data(c, n, alloc);
}

/* ------------------------------------------------------------------ */
/* persistent reservations                                             */

static int pr_serialise(struct lun *l, char *buf, size_t cap)
{
	int n = snprintf(buf, cap, "tessera-pr 1\ngen %u\nres %d %u %s\n", l->pr_gen, l->pr_held ? 1 : 0,
			 l->pr_type, l->pr_holder[0] ? l->pr_holder : "-");
	for (unsigned i = 0; i < l->nregs && n > 0 && (size_t)n < cap; i++)
		n += snprintf(buf + n, cap - (size_t)n, "reg %016llx %s\n", (unsigned long long)l->regs[i].key,
			      l->regs[i].port);
	return n > 0 && (size_t)n < cap ? n : -ENOSPC;
}

/* Called with lun->lock held after every PR change. */
static void pr_persist(struct lun *l)
{
	char *buf = ts_malloc(ISCSI_MAX_PR_REGS * (ISCSI_PORT_NAME_MAX + 32) + 512);
	size_t cap = ISCSI_MAX_PR_REGS * (ISCSI_PORT_NAME_MAX + 32) + 512;
	int n;
	if (!buf)
		return;
	n = pr_serialise(l, buf, cap);
	if (n > 0) {
		if (l->ops->pr_save) {
			l->ops->pr_save(l->ctx, buf, (size_t)n);
		} else if (l->pr_path) {
			char tmp[4096];
			snprintf(tmp, sizeof(tmp), "%s.tmp", l->pr_path);
			int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
			if (fd >= 0) {
				int ok = ts_pwrite_full(fd, buf, (size_t)n, 0) == 0 && fsync(fd) == 0;
				close(fd);
				if (!ok || rename(tmp, l->pr_path))
					ts_log(TS_LOG_WARN, "iscsi", "cannot persist PR state path=%s", l->pr_path);
			}
		}
	}
	ts_free(buf);
}

static void pr_parse(struct lun *l, char *buf)
{
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		unsigned a, b;
		char port[ISCSI_PORT_NAME_MAX];
		unsigned long long key;
		if (sscanf(line, "gen %u", &a) == 1) {
			l->pr_gen = a;
		} else if (sscanf(line, "res %u %u %255s", &a, &b, port) == 3) {
			l->pr_held = a != 0;
			l->pr_type = (uint8_t)b;
			snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", strcmp(port, "-") ? port : "");
		} else if (sscanf(line, "reg %llx %255s", &key, port) == 2 && l->nregs < ISCSI_MAX_PR_REGS) {
			l->regs[l->nregs].key = key;
			snprintf(l->regs[l->nregs].port, ISCSI_PORT_NAME_MAX, "%s", port);
			l->nregs++;
		}
	}
	if (l->pr_held && l->pr_type != PR_TYPE_WE && l->pr_type != PR_TYPE_EA && l->pr_type != PR_TYPE_WERO &&
	    l->pr_type != PR_TYPE_EARO && l->pr_type != PR_TYPE_WEAR && l->pr_type != PR_TYPE_EAAR)
		l->pr_held = false;
}

void pr_load_state(struct lun *l)
{
	size_t cap = ISCSI_MAX_PR_REGS * (ISCSI_PORT_NAME_MAX + 32) + 512;
	char *buf = ts_calloc(1, cap + 1);
	int n = 0;
	if (!buf)
		return;
	if (l->ops->pr_load) {
		n = l->ops->pr_load(l->ctx, buf, cap);
	} else if (l->pr_path) {
		int fd = open(l->pr_path, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			ssize_t r = read(fd, buf, cap);
			n = r > 0 ? (int)r : 0;
			close(fd);
		}
	}
	if (n > 0 && (size_t)n <= cap && !strncmp(buf, "tessera-pr 1\n", 13)) {
		buf[n] = 0;
		pr_parse(l, buf);
	}
	ts_free(buf);
}

static void reg_remove(struct lun *l, unsigned i)
{
	l->regs[i] = l->regs[l->nregs - 1];
	l->nregs--;
}

static void pr_release_locked(struct lun *l, struct nexus *me, bool ua)
{
	if (ua && (l->pr_type == PR_TYPE_WERO || l->pr_type == PR_TYPE_EARO || l->pr_type == PR_TYPE_WEAR ||
		   l->pr_type == PR_TYPE_EAAR)) {
		for (unsigned i = 0; i < l->nregs; i++)
			if (!me || strcmp(l->regs[i].port, me->sess->port))
				ua_port(l, l->regs[i].port, UA_RES_RELEASED);
	}
	l->pr_held = false;
	l->pr_type = 0;
	l->pr_holder[0] = 0;
}

static bool pr_type_valid(uint8_t t)
{
	return t == PR_TYPE_WE || t == PR_TYPE_EA || t == PR_TYPE_WERO || t == PR_TYPE_EARO ||
	       t == PR_TYPE_WEAR || t == PR_TYPE_EAAR;
}

static void exec_pr_out(struct cmd *c, struct nexus *nx)
{
	struct lun *l = c->lun;
	uint8_t sa = c->cdb[1] & 0x1f, scope = c->cdb[2] >> 4, type = c->cdb[2] & 0x0f;
	uint32_t plen = get_be32(c->cdb + 5);
	const char *me = c->conn->sess->port;
	uint8_t key = 0;
	uint16_t asc = 0;
	bool conflict = false, changed = false;

	if (sa > PR_OUT_REGISTER_MOVE || sa == PR_OUT_REGISTER_MOVE) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen != 24 || c->received < 24) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	const uint8_t *p = c->buf;
	uint64_t rk = get_be64(p), sark = get_be64(p + 8);
	uint8_t pflags = p[20];
	if (pflags & 0x0c) { /* SPEC_I_PT, ALL_TG_PT unsupported */
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	pthread_mutex_lock(&l->lock);
	int ri = reg_find(l, me);
	switch (sa) {
	case PR_OUT_REGISTER:
	case PR_OUT_REGISTER_IGNORE:
		if (ri < 0) {
			if (sa == PR_OUT_REGISTER && rk) {
				conflict = true;
				break;
			}
			if (!sark)
				break;
			if (l->nregs >= ISCSI_MAX_PR_REGS) {
				key = SK_ILLEGAL_REQUEST;
				asc = ASC_INSUFFICIENT_REG_RESOURCES;
				break;
			}
			l->regs[l->nregs].key = sark;
			snprintf(l->regs[l->nregs].port, ISCSI_PORT_NAME_MAX, "%s", me);
			l->nregs++;
		} else {
			if (sa == PR_OUT_REGISTER && rk != l->regs[ri].key) {
				conflict = true;
				break;
			}
			if (sark) {
				l->regs[ri].key = sark;
			} else {
				bool holder = pr_is_holder(l, me);
				reg_remove(l, (unsigned)ri);
				if (holder && (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR)) {
					if (!l->nregs)
						pr_release_locked(l, nx, false);
				} else if (holder) {
					pr_release_locked(l, nx, true);
				}
			}
		}
		l->aptpl = pflags & 0x01;
		l->pr_gen++;
		changed = true;
		break;
	case PR_OUT_RESERVE:
		if (ri < 0 || l->regs[ri].key != rk) {
			conflict = true;
			break;
		}
		if (scope) {
			key = SK_ILLEGAL_REQUEST;
			asc = ASC_INVALID_FIELD_CDB;
			break;
		}
		if (!pr_type_valid(type)) {
			key = SK_ILLEGAL_REQUEST;
			asc = ASC_INVALID_FIELD_CDB;
			break;
		}
		if (l->pr_held) {
			if (!pr_is_holder(l, me) || l->pr_type != type)
				conflict = true;
			break;
		}
		l->pr_held = true;
		l->pr_type = type;
		if (type == PR_TYPE_WEAR || type == PR_TYPE_EAAR)
			l->pr_holder[0] = 0;
		else
			snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", me);
		changed = true;
		break;
	case PR_OUT_RELEASE:
		if (ri < 0 || l->regs[ri].key != rk) {
			conflict = true;
			break;
		}
		if (!l->pr_held || !pr_is_holder(l, me))
			break;
		if (scope || l->pr_type != type) {
			key = SK_ILLEGAL_REQUEST;
			asc = 0x2604; /* invalid release of persistent reservation */
			break;
		}
		pr_release_locked(l, nx, true);
		changed = true;
		break;
	case PR_OUT_CLEAR:
		if (ri < 0 || l->regs[ri].key != rk) {
			conflict = true;
			break;
		}
		for (unsigned i = 0; i < l->nregs; i++)
			if (strcmp(l->regs[i].port, me))
				ua_port(l, l->regs[i].port, UA_RES_PREEMPTED);
		l->nregs = 0;
		pr_release_locked(l, nx, false);
		l->pr_gen++;
		changed = true;
		break;
	case PR_OUT_PREEMPT:
	case PR_OUT_PREEMPT_ABORT: {
		if (ri < 0 || l->regs[ri].key != rk) {
			conflict = true;
			break;
		}
		bool all_reg = l->pr_held && (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR);
		if (!sark && !all_reg) {
			key = SK_ILLEGAL_REQUEST;
			asc = ASC_INVALID_FIELD_PARAM;
			break;
		}
		if (l->pr_held && !pr_type_valid(type)) {
			key = SK_ILLEGAL_REQUEST;
			asc = ASC_INVALID_FIELD_CDB;
			break;
		}
		bool takes_res = false;
		if (l->pr_held) {
			if (all_reg)
				takes_res = !sark;
			else {
				int hi = reg_find(l, l->pr_holder);
				takes_res = hi >= 0 && l->regs[hi].key == sark;
			}
		}
		bool removed_any = false;
		for (unsigned i = 0; i < l->nregs;) {
			bool victim = strcmp(l->regs[i].port, me) && (all_reg && !sark ? true : l->regs[i].key == sark);
			if (victim) {
				ua_port(l, l->regs[i].port, UA_REG_PREEMPTED);
				reg_remove(l, i);
				removed_any = true;
			} else {
				i++;
			}
		}
		if (!removed_any && !takes_res && !l->pr_held) {
			conflict = true;
			break;
		}
		if (takes_res) {
			l->pr_type = type;
			if (type == PR_TYPE_WEAR || type == PR_TYPE_EAAR)
				l->pr_holder[0] = 0;
			else
				snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", me);
		}
		l->pr_gen++;
		changed = true;
		break;
	}
	}
	if (changed)
		pr_persist(l);
	pthread_mutex_unlock(&l->lock);
	if (conflict) {
		c->status = SCSI_STATUS_RESERVATION_CONFLICT;
		cmd_complete(c);
	} else if (key) {
		fail(c, key, asc);
	} else {
		good(c);
	}
}

static void exec_pr_in(struct cmd *c)
{
	struct lun *l = c->lun;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint32_t alloc = get_be16(c->cdb + 7);
	size_t cap = 8 + ISCSI_MAX_PR_REGS * (24 + ISCSI_PORT_NAME_MAX + 8);
	uint32_t n = 8;
	if (sa > PR_IN_READ_FULL_STATUS) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (cmd_buf_reserve(c, cap)) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	uint8_t *b = c->buf;
	memset(b, 0, cap);
	pthread_mutex_lock(&l->lock);
	switch (sa) {
	case PR_IN_READ_KEYS:
		put_be32(b, l->pr_gen);
		for (unsigned i = 0; i < l->nregs; i++, n += 8)
			put_be64(b + n, l->regs[i].key);
		put_be32(b + 4, n - 8);
		break;
	case PR_IN_READ_RESERVATION:
		put_be32(b, l->pr_gen);
		if (l->pr_held) {
			int hi = reg_find(l, l->pr_holder);
			if (l->pr_type != PR_TYPE_WEAR && l->pr_type != PR_TYPE_EAAR && hi >= 0)
				put_be64(b + 8, l->regs[hi].key);
			b[21] = l->pr_type;
			n = 24;
			put_be32(b + 4, 16);
		}
		break;
	case PR_IN_REPORT_CAPABILITIES:
		put_be16(b, 8);
		b[2] = 0x10 | 0x01;             /* CRH, PTPL_C */
		b[3] = 0x80 | (l->aptpl ? 1 : 0); /* TMV, PTPL_A */
		b[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
		b[5] = 0x01;
		n = 8;
		break;
	case PR_IN_READ_FULL_STATUS:
		put_be32(b, l->pr_gen);
		for (unsigned i = 0; i < l->nregs; i++) {
			uint8_t *d = b + n;
			const char *port = l->regs[i].port;
			size_t pl = strlen(port);
			size_t tl = TS_ALIGN_UP(4 + pl + 1, 4);
			if (tl < 24)
				tl = 24;
			put_be64(d, l->regs[i].key);
			if (pr_is_holder(l, port)) {
				d[12] = 0x01;
				d[13] = l->pr_type;
			}
			put_be16(d + 18, 1);
			put_be32(d + 20, (uint32_t)tl);
			d[24] = 0x45; /* iSCSI, initiator port format */
			put_be16(d + 26, (uint16_t)(tl - 4));
			memcpy(d + 28, port, pl);
			n += 24 + (uint32_t)tl;
		}
		put_be32(b + 4, n - 8);
		break;
	}
	pthread_mutex_unlock(&l->lock);
	send_data(c, n, alloc);
}

static void exec_reserve(struct cmd *c, bool reserve)
{
	struct lun *l = c->lun;
	const char *me = c->conn->sess->port;
	bool conflict = false;
	if (reserve && c->cdb[0] == SCSI_RESERVE10 && (c->cdb[1] & 0x02)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* third-party */
		return;
	}
	pthread_mutex_lock(&l->lock);
	if (reserve) {
		if (l->res2_holder[0] && strcmp(l->res2_holder, me))
			conflict = true;
		else
			snprintf(l->res2_holder, sizeof(l->res2_holder), "%s", me);
	} else if (!strcmp(l->res2_holder, me)) {
		l->res2_holder[0] = 0;
	}
	pthread_mutex_unlock(&l->lock);
	if (conflict)
		c->status = SCSI_STATUS_RESERVATION_CONFLICT;
	cmd_complete(c);
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */

static bool is_rw_op(uint8_t op)
{
	struct rw rw;
	uint8_t cdb[16] = { op };
	return cdb_rw(cdb, &rw);
}

void scsi_exec(struct cmd *c)
{
	struct lun *l = c->lun;
	struct nexus *nx = NULL;
	uint8_t op = c->cdb[0];
	struct rw rw;

	c->data_in_len = 0;
	if (!l) {
		if (op == SCSI_INQUIRY)
			exec_inquiry(c);
		else if (op == SCSI_REPORT_LUNS)
			exec_report_luns(c);
		else if (op == SCSI_REQUEST_SENSE)
			exec_request_sense(c, NULL);
		else
			fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	if (atomic_load(&l->removed)) {
		fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	nx = nexus_get(c);
	if (!nx) {
		io_sense(c, -ENOMEM, false);
		return;
	}
	if (!c->has_range) { /* a re-driven waiter already passed these checks */
		pthread_mutex_lock(&l->lock);
		if (nx->ua && op != SCSI_INQUIRY && op != SCSI_REPORT_LUNS && op != SCSI_REQUEST_SENSE) {
			uint32_t bit = nx->ua & -nx->ua;
			nx->ua &= ~bit;
			pthread_mutex_unlock(&l->lock);
			fail(c, SK_UNIT_ATTENTION, ua_asc(bit));
			return;
		}
		bool conflict = res_conflict(c);
		pthread_mutex_unlock(&l->lock);
		if (conflict) {
			c->status = SCSI_STATUS_RESERVATION_CONFLICT;
			cmd_complete(c);
			return;
		}
	}
	if (is_rw_op(op))
		cdb_rw(c->cdb, &rw);
	switch (op) {
	case SCSI_TEST_UNIT_READY:
		good(c);
		return;
	case SCSI_INQUIRY:
		exec_inquiry(c);
		return;
	case SCSI_REQUEST_SENSE:
		exec_request_sense(c, nx);
		return;
	case SCSI_REPORT_LUNS:
		exec_report_luns(c);
		return;
	case SCSI_READ_CAPACITY10:
		exec_read_capacity(c, false);
		return;
	case SCSI_SERVICE_ACTION_IN16:
		if ((c->cdb[1] & 0x1f) == SAI_READ_CAPACITY16)
			exec_read_capacity(c, true);
		else if ((c->cdb[1] & 0x1f) == SAI_GET_LBA_STATUS && l->info.thin)
			exec_get_lba_status(c);
		else
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	case SCSI_MAINTENANCE_IN:
		if ((c->cdb[1] & 0x1f) == MI_REPORT_SUPPORTED_OPCODES)
			exec_rsoc(c);
		else
			fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	case SCSI_READ6: case SCSI_READ10: case SCSI_READ12: case SCSI_READ16:
		exec_read(c, &rw);
		return;
	case SCSI_WRITE6: case SCSI_WRITE10: case SCSI_WRITE12: case SCSI_WRITE16:
	case SCSI_WRITE_VERIFY10: case SCSI_WRITE_VERIFY12: case SCSI_WRITE_VERIFY16:
		if (op == SCSI_WRITE_VERIFY10 || op == SCSI_WRITE_VERIFY12 || op == SCSI_WRITE_VERIFY16)
			rw.flags &= (uint8_t)~0x08; /* no FUA bit in WRITE AND VERIFY; BYTCHK is bit 1 */
		exec_write(c, &rw);
		return;
	case SCSI_VERIFY10: case SCSI_VERIFY12: case SCSI_VERIFY16:
		exec_verify(c, &rw);
		return;
	case SCSI_COMPARE_AND_WRITE:
		exec_caw(c, &rw);
		return;
	case SCSI_WRITE_SAME10: case SCSI_WRITE_SAME16:
		exec_write_same(c, &rw);
		return;
	case SCSI_UNMAP:
		exec_unmap(c);
		return;
	case SCSI_SYNC_CACHE10: case SCSI_SYNC_CACHE16:
		if (!check_range(c, rw.lba, rw.nb))
			return;
		cmd_submit(c, l->ops->flush, 0, 0, NULL, 0, flush_done);
		return;
	case SCSI_PREFETCH10: case SCSI_PREFETCH16:
		if (!check_range(c, rw.lba, rw.nb))
			return;
		good(c);
		return;
	case SCSI_MODE_SENSE6: case SCSI_MODE_SENSE10:
		exec_mode_sense(c);
		return;
	case SCSI_MODE_SELECT6: case SCSI_MODE_SELECT10:
		exec_mode_select(c, nx);
		return;
	case SCSI_START_STOP_UNIT:
		good(c);
		return;
	case SCSI_PREVENT_ALLOW:
		pthread_mutex_lock(&l->lock);
		nx->prevent = c->cdb[4] & 1;
		pthread_mutex_unlock(&l->lock);
		good(c);
		return;
	case SCSI_RESERVE6: case SCSI_RESERVE10:
		exec_reserve(c, true);
		return;
	case SCSI_RELEASE6: case SCSI_RELEASE10:
		exec_reserve(c, false);
		return;
	case SCSI_PR_IN:
		exec_pr_in(c);
		return;
	case SCSI_PR_OUT:
		exec_pr_out(c, nx);
		return;
	case SCSI_READ_DEFECT10: case SCSI_READ_DEFECT12: {
		bool ten = op == SCSI_READ_DEFECT10;
		uint32_t alloc = ten ? get_be16(c->cdb + 7) : get_be32(c->cdb + 6);
		if (cmd_buf_reserve(c, 8)) {
			io_sense(c, -ENOMEM, false);
			return;
		}
		memset(c->buf, 0, 8);
		c->buf[1] = c->cdb[ten ? 2 : 1] & 0x1f;
		send_data(c, ten ? 4 : 8, alloc);
		return;
	}
	default:
		fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
}
