/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SCSI block commands (SBC-3): READ, WRITE, WRITE AND VERIFY, VERIFY,
 * COMPARE AND WRITE, WRITE SAME, UNMAP, SYNCHRONIZE CACHE (completion),
 * READ CAPACITY and GET LBA STATUS, and the write ranges that make COMPARE
 * AND WRITE atomic.
 *
 * Workload. The data path: reads and writes map one to one onto provider
 * IO; multi-step commands (COMPARE AND WRITE, VERIFY with byte check, WRITE
 * SAME and UNMAP) keep their progress in the command and continue from the
 * provider's completion on the command's loop thread.
 *
 * Invariants. COMPARE AND WRITE is atomic against concurrent writers: every
 * write (WRITE, WRITE AND VERIFY, WRITE SAME, UNMAP: one range covering its
 * descriptors) holds its LBA range in lun->ranges (a range lock,
 * dataplane/rangelock) while in flight, shared with other writes; a COMPARE
 * AND WRITE holds its range exclusively, so it waits for the overlapping
 * writes before it and the writes after it wait for it, in arrival order. A
 * command that waits is re-driven on its own loop thread once granted and
 * goes through scsi_exec() again (reservation checks included), with its
 * range already held. An LBA range is
 * checked against the capacity before any IO; a write to a read-only or
 * software-write-protected LUN fails with DATA PROTECT. The ranges are also
 * the LUN's list of writes in flight at the provider: a PREEMPT AND ABORT
 * (spc_pr.c) marks those of the preempted I_T nexuses and completes when the
 * last of them releases its range.
 *
 * THREAD SAFETY: lun->ranges has its own mutex, never taken under lun->lock;
 * a grant callback runs on the releasing command's thread with no lock held
 * and only requeues the waiter. lun->lock is never held across a provider
 * call or cmd_requeue(). A command and its
 * buffers are owned by its connection's loop thread. Lock order: srv->lock,
 * then lun->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

/* ------------------------------------------------------------------ */
/* write ranges (COMPARE AND WRITE atomicity)                          */

/*
 * c holds its range now: enter it on the LUN's list of writes in flight, and
 * check the reservations again in the same step. A PREEMPT AND ABORT (or a
 * fencing REGISTER) marks only the writes on that list, so a write that
 * passed scsi_exec()'s check before it and entered the list after it (or
 * waited for its range meanwhile) must be refused here, or it would reach
 * the medium after the preempt completed. Returns false (and completes c
 * with RESERVATION CONFLICT) if it now conflicts.
 */
static bool range_held(struct cmd *c)
{
	struct lun *l = c->lun;
	bool conflict;

	pthread_mutex_lock(&l->lock);
	c->wlink.fenced = false;
	c->wlink.next = &l->writes;
	c->wlink.prev = l->writes.prev;
	l->writes.prev->next = &c->wlink;
	l->writes.prev = &c->wlink;
	c->has_range = true;
	conflict = pr_res_conflict(c);
	pthread_mutex_unlock(&l->lock);
	if (conflict) {
		c->status = SCSI_STATUS_RESERVATION_CONFLICT;
		cmd_complete(c); /* releases the range */
	}
	return !conflict;
}

static void range_retry(struct cmd *c, int status)
{
	(void)status;
	if (range_held(c)) /* granted while it waited */
		scsi_exec(c);
}

/* Granted after waiting: runs on the releasing thread; re-drive c on its own loop. */
static void range_granted(struct ts_rl_req *r, void *arg)
{
	(void)r;
	cmd_requeue(arg, range_retry);
}

/*
 * Try to hold [lba, lba+nb) (nb > 0, checked against the capacity). False:
 * c waits, holding a reference, and is re-executed with the range held; or
 * it was completed (an error, or a reservation conflict found by range_held()).
 */
static bool range_acquire(struct cmd *c, uint64_t lba, uint64_t nb, bool caw)
{
	int rc;

	memset(&c->range, 0, sizeof(c->range));
	c->refs++; /* the waiter's reference; cmd_requeue() hands it back */
	rc = ts_rl_lock_async(c->lun->ranges, &c->range, lba, nb, caw ? TS_RL_EXCL : TS_RL_SHARED,
			      range_granted, c);
	if (rc == 0)
		return false;
	c->refs--;
	if (rc < 0) { /* callers pass nb > 0 within the capacity: not expected */
		scsi_io_sense(c, rc, false);
		return false;
	}
	return range_held(c);
}

void scsi_range_release(struct cmd *c)
{
	struct lun *l = c->lun;
	struct cmd *aw = NULL;

	pthread_mutex_lock(&l->lock);
	c->wlink.prev->next = c->wlink.next;
	c->wlink.next->prev = c->wlink.prev;
	c->has_range = false;
	if (c->wlink.fenced) { /* a PREEMPT AND ABORT waits for the preempted writes */
		c->wlink.fenced = false;
		if (--l->fenced_writes == 0) {
			aw = l->abort_waiters;
			l->abort_waiters = NULL;
		}
	}
	pthread_mutex_unlock(&l->lock);
	ts_rl_unlock(l->ranges, &c->range);
	pr_abort_wake(aw);
}

/* ------------------------------------------------------------------ */
/* read / write family                                                 */

bool sbc_check_range(struct cmd *c, uint64_t lba, uint64_t nb)
{
	if (lba > c->lun->nblocks || nb > c->lun->nblocks - lba) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return false;
	}
	return true;
}

static bool write_protected(struct cmd *c)
{
	if (c->lun->info.read_only || c->lun->swp) {
		scsi_fail(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
		return true;
	}
	return false;
}

static void read_done(struct cmd *c, int st)
{
	if (st) {
		scsi_io_sense(c, st, false);
		return;
	}
	scsi_good(c);
}

static void write_done(struct cmd *c, int st)
{
	if (st) {
		scsi_io_sense(c, st, true);
		return;
	}
	scsi_good(c);
}

void sbc_exec_read(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	uint64_t bytes = (uint64_t)rw->nb * l->bs;
	if (c->cdb[0] != SCSI_READ6 && (rw->flags >> 5)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!sbc_check_range(c, rw->lba, rw->nb))
		return;
	if (bytes > ISCSI_MAX_XFER) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	c->data_in_len = (uint32_t)bytes;
	if (!rw->nb) {
		scsi_good(c);
		return;
	}
	/* read only what the initiator will take, in whole blocks */
	uint64_t want = TS_MIN(bytes, TS_ALIGN_UP((uint64_t)c->edtl, l->bs));
	if (!want) {
		scsi_good(c);
		return;
	}
	if (cmd_buf_reserve(c, want)) {
		scsi_io_sense(c, -ENOMEM, false);
		return;
	}
	cmd_submit(c, l->ops->read, rw->lba * l->bs, want, c->buf, 0, read_done);
}

void sbc_exec_write(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	uint64_t bytes = (uint64_t)rw->nb * l->bs;
	if (c->cdb[0] != SCSI_WRITE6 && (rw->flags >> 5)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!sbc_check_range(c, rw->lba, rw->nb) || write_protected(c))
		return;
	/* write min(TL, EDTL) in whole blocks (iSCSI residual rules) */
	uint64_t n = TS_MIN(bytes, (uint64_t)c->received) / l->bs;
	if (!n) {
		scsi_good(c);
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
		scsi_io_sense(c, st, false);
		return;
	}
	uint64_t n = c->nblocks;
	bool one = ((c->cdb[1] >> 1) & 3) == 3;
	for (uint64_t i = 0; i < n * l->bs; i++) {
		uint8_t want = one ? c->buf[i % l->bs] : c->buf[i];
		if (c->buf2[i] != want) {
			scsi_set_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, true, i);
			cmd_complete(c);
			return;
		}
	}
	scsi_good(c);
}

void sbc_exec_verify(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	unsigned bytchk = (rw->flags >> 1) & 3;
	if ((rw->flags >> 5) || bytchk == 2) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!sbc_check_range(c, rw->lba, rw->nb))
		return;
	if (!bytchk || !rw->nb) {
		scsi_good(c);
		return;
	}
	uint64_t need = bytchk == 3 ? l->bs : (uint64_t)rw->nb * l->bs;
	if (c->received < need || (uint64_t)rw->nb * l->bs > ISCSI_MAX_XFER) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	c->nblocks = rw->nb;
	if (cmd_buf2_reserve(c, (uint64_t)rw->nb * l->bs)) {
		scsi_io_sense(c, -ENOMEM, false);
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
		scsi_io_sense(c, st, false);
		return;
	}
	for (uint64_t i = 0; i < len; i++)
		if (c->buf2[i] != c->buf[i]) {
			scsi_set_sense_info(c, SK_MISCOMPARE, ASC_MISCOMPARE_VERIFY, true, i);
			cmd_complete(c);
			return;
		}
	bool fua = (c->cdb[1] & 0x08) || !l->wce;
	cmd_submit(c, l->ops->write, c->lba * l->bs, len, c->buf + len, fua ? TS_ISCSI_LUN_FUA : 0,
		   caw_write_done);
}

void sbc_exec_caw(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	if (rw->flags >> 5) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (rw->nb > MAX_CAW_BLOCKS) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!sbc_check_range(c, rw->lba, rw->nb) || write_protected(c))
		return;
	if (c->received != 2u * rw->nb * l->bs || c->edtl != 2u * rw->nb * l->bs) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (!rw->nb) {
		scsi_good(c);
		return;
	}
	if (!c->has_range && !range_acquire(c, rw->lba, rw->nb, true))
		return;
	c->lba = rw->lba;
	c->nblocks = rw->nb;
	if (cmd_buf2_reserve(c, (uint64_t)rw->nb * l->bs)) {
		scsi_io_sense(c, -ENOMEM, false);
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
		scsi_good(c);
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
		scsi_io_sense(c, st, true);
		return;
	}
	ws_next(c);
}

void sbc_exec_write_same(struct cmd *c, struct rw *rw)
{
	struct lun *l = c->lun;
	bool unmap = rw->flags & 0x08, anchor = rw->flags & 0x10;
	bool ndob = c->cdb[0] == SCSI_WRITE_SAME16 && (rw->flags & 0x01);
	uint64_t nb = rw->nb;
	if ((rw->flags >> 5) || anchor || (ndob && !unmap) || (unmap && !l->info.thin)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (nb == 0)
		nb = rw->lba < l->nblocks ? l->nblocks - rw->lba : 0;
	if (!sbc_check_range(c, rw->lba, nb))
		return;
	if (nb > MAX_WS_BLOCKS) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (write_protected(c))
		return;
	if (!ndob && (c->received != l->bs || c->edtl != l->bs)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (nb && !c->has_range && !range_acquire(c, rw->lba, nb, false))
		return;
	c->pos = rw->lba;
	c->end = rw->lba + nb;
	if (unmap) { /* UNMAP=1 deallocates whatever the data; LBPRZ makes reads return zeroes */
		c->nblocks = 0xffffffffu;
	} else {
		uint32_t chunk = (uint32_t)TS_MIN((uint64_t)WS_CHUNK, nb * l->bs);
		if (cmd_buf2_reserve(c, chunk)) {
			scsi_io_sense(c, -ENOMEM, true);
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
		scsi_good(c);
		return;
	}
	ws_next(c);
}

/* UNMAP: one descriptor per step. */
static void unmap_step(struct cmd *c, int st)
{
	struct lun *l = c->lun;
	if (st) {
		scsi_io_sense(c, st, true);
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
	scsi_good(c);
}

void sbc_exec_unmap(struct cmd *c)
{
	struct lun *l = c->lun;
	uint32_t plen = get_be16(c->cdb + 7);
	if (!l->info.thin) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
	if (c->cdb[1] & 1) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen == 0) {
		scsi_good(c);
		return;
	}
	if (write_protected(c))
		return;
	if (plen < 8 || c->received < plen) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	uint32_t bdl = get_be16(c->buf + 2);
	if (bdl > plen - 8)
		bdl = (plen - 8) & ~15u;
	uint32_t n = bdl / 16;
	uint64_t lo = UINT64_MAX, hi = 0;
	if (n > MAX_UNMAP_DESC) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *d = c->buf + 8 + i * 16;
		uint64_t lba = get_be64(d);
		uint32_t nb = get_be32(d + 8);
		if (nb > MAX_UNMAP_BLOCKS) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		if (!sbc_check_range(c, lba, nb))
			return;
		if (nb && lba < lo)
			lo = lba;
		if (nb && lba + nb > hi)
			hi = lba + nb;
	}
	/* one range covering every descriptor: it only excludes COMPARE AND WRITE */
	if (hi > lo && !c->has_range && !range_acquire(c, lo, hi - lo, false))
		return;
	c->pos = 0;
	c->end = n;
	unmap_step(c, 0);
}

void sbc_flush_done(struct cmd *c, int st)
{
	if (st) {
		scsi_io_sense(c, st, true);
		return;
	}
	scsi_good(c);
}


void sbc_exec_read_capacity(struct cmd *c, bool sixteen)
{
	struct lun *l = c->lun;
	if (cmd_buf_reserve(c, 32)) {
		scsi_io_sense(c, -ENOMEM, false);
		return;
	}
	memset(c->buf, 0, 32);
	if (!sixteen) {
		if (!(c->cdb[8] & 1) && get_be32(c->cdb + 2)) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		put_be32(c->buf, l->nblocks - 1 > 0xffffffffull ? 0xffffffffu : (uint32_t)(l->nblocks - 1));
		put_be32(c->buf + 4, l->bs);
		scsi_send_data(c, 8, 8);
		return;
	}
	put_be64(c->buf, l->nblocks - 1);
	put_be32(c->buf + 8, l->bs);
	if (l->info.thin)
		c->buf[14] = 0x80 | 0x40; /* LBPME, LBPRZ */
	scsi_send_data(c, 32, get_be32(c->cdb + 10));
}

void sbc_exec_get_lba_status(struct cmd *c)
{
	struct lun *l = c->lun;
	uint64_t lba = get_be64(c->cdb + 2);
	uint32_t alloc = get_be32(c->cdb + 10);
	if (lba >= l->nblocks) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_LBA_OUT_OF_RANGE);
		return;
	}
	if (cmd_buf_reserve(c, 8 + 16 * 32)) {
		scsi_io_sense(c, -ENOMEM, false);
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
	scsi_send_data(c, 8 + 16 * n, alloc);
}
