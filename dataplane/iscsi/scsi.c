/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SCSI command execution on top of a LUN provider: the common part. The
 * command sets live beside it, split as tgt splits them: sbc.c (SBC-3 block
 * commands), spc.c (SPC-4 primary commands), spc_pr.c (persistent
 * reservations and SPC-2 RESERVE/RELEASE).
 *
 * Each command runs on its connection's loop thread: scsi_exec() parses the
 * CDB, checks unit attentions and reservations under the LUN lock, then
 * hands the command to its command set, which either answers at once
 * (INQUIRY, MODE SENSE, ...) or issues provider IO through cmd_submit() and
 * continues in a callback. This file holds what every command set shares:
 * LUN references, sense data, CDB decoding, the I_T_L nexus and unit
 * attentions, and the dispatch. Every error becomes sense data in the
 * command sets and nowhere else: the provider's -errno is translated in
 * scsi_io_sense().
 *
 * Invariants. A command ends exactly once, through cmd_complete(). A nexus
 * is created on first use, starts with POWER ON unit attention, and is on
 * lun->nexuses for as long as the session holds it.
 *
 * THREAD SAFETY: lun->lock guards reservations, registrations, unit
 * attentions, mode parameters and write ranges; it is never held across a
 * provider call. Lock order: srv->lock, then lun->lock. session->nexus[] is
 * owned by the session's connection loop thread.
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
	ts_rl_destroy(l->ranges);
	ts_free(l->pr_path);
	ts_free(l);
}

/* ------------------------------------------------------------------ */
/* sense                                                               */

void scsi_set_sense_info(struct cmd *c, uint8_t key, uint16_t asc, bool has_info, uint64_t info)
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
	scsi_set_sense_info(c, key, asc, false, 0);
}

void scsi_fail(struct cmd *c, uint8_t key, uint16_t asc)
{
	scsi_set_sense(c, key, asc);
	c->data_in_len = 0;
	cmd_complete(c);
}

void scsi_io_sense(struct cmd *c, int err, bool write)
{
	if (err == -ENOSPC)
		scsi_fail(c, SK_DATA_PROTECT, 0x2707); /* space allocation failed write protect */
	else if (err == -EROFS)
		scsi_fail(c, SK_DATA_PROTECT, ASC_WRITE_PROTECTED);
	else if (err == -ENOMEM || err == -EAGAIN) {
		c->status = SCSI_STATUS_TASK_SET_FULL;
		c->data_in_len = 0;
		cmd_complete(c);
	} else
		scsi_fail(c, SK_MEDIUM_ERROR, write ? ASC_WRITE_ERROR : ASC_READ_ERROR);
}

void scsi_good(struct cmd *c)
{
	cmd_complete(c);
}

/* Data-In of \p len bytes already in c->buf, clipped to the allocation length. */
void scsi_send_data(struct cmd *c, uint32_t len, uint32_t alloc)
{
	c->data_in_len = TS_MIN(len, alloc);
	cmd_complete(c);
}

/* ------------------------------------------------------------------ */
/* CDB decoding                                                        */


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

void scsi_ua_all(struct lun *l, struct nexus *except, uint32_t bit)
{
	for (struct nexus *nx = l->nexuses; nx; nx = nx->next)
		if (nx != except)
			nx->ua |= bit;
}

void scsi_ua_port(struct lun *l, const char *port, uint32_t bit)
{
	for (struct nexus *nx = l->nexuses; nx; nx = nx->next)
		if (!strcmp(nx->sess->port, port))
			nx->ua |= bit;
}

uint16_t scsi_ua_asc(uint32_t bit)
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
	scsi_ua_all(l, NULL, UA_CAPACITY_CHANGED);
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
			spc_exec_inquiry(c);
		else if (op == SCSI_REPORT_LUNS)
			spc_exec_report_luns(c);
		else if (op == SCSI_REQUEST_SENSE)
			spc_exec_request_sense(c, NULL);
		else
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	if (atomic_load(&l->removed)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	nx = nexus_get(c);
	if (!nx) {
		scsi_io_sense(c, -ENOMEM, false);
		return;
	}
	if (!c->has_range) { /* a re-driven waiter passed these; range_held() re-checked the reservations */
		pthread_mutex_lock(&l->lock);
		if (nx->ua && op != SCSI_INQUIRY && op != SCSI_REPORT_LUNS && op != SCSI_REQUEST_SENSE) {
			uint32_t bit = nx->ua & -nx->ua;
			nx->ua &= ~bit;
			pthread_mutex_unlock(&l->lock);
			scsi_fail(c, SK_UNIT_ATTENTION, scsi_ua_asc(bit));
			return;
		}
		bool conflict = pr_res_conflict(c);
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
		scsi_good(c);
		return;
	case SCSI_INQUIRY:
		spc_exec_inquiry(c);
		return;
	case SCSI_REQUEST_SENSE:
		spc_exec_request_sense(c, nx);
		return;
	case SCSI_REPORT_LUNS:
		spc_exec_report_luns(c);
		return;
	case SCSI_READ_CAPACITY10:
		sbc_exec_read_capacity(c, false);
		return;
	case SCSI_SERVICE_ACTION_IN16:
		if ((c->cdb[1] & 0x1f) == SAI_READ_CAPACITY16)
			sbc_exec_read_capacity(c, true);
		else if ((c->cdb[1] & 0x1f) == SAI_GET_LBA_STATUS && l->info.thin)
			sbc_exec_get_lba_status(c);
		else
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	case SCSI_MAINTENANCE_IN:
		if ((c->cdb[1] & 0x1f) == MI_REPORT_SUPPORTED_OPCODES)
			spc_exec_rsoc(c);
		else
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	case SCSI_READ6: case SCSI_READ10: case SCSI_READ12: case SCSI_READ16:
		sbc_exec_read(c, &rw);
		return;
	case SCSI_WRITE6: case SCSI_WRITE10: case SCSI_WRITE12: case SCSI_WRITE16:
	case SCSI_WRITE_VERIFY10: case SCSI_WRITE_VERIFY12: case SCSI_WRITE_VERIFY16:
		if (op == SCSI_WRITE_VERIFY10 || op == SCSI_WRITE_VERIFY12 || op == SCSI_WRITE_VERIFY16)
			rw.flags &= (uint8_t)~0x08; /* no FUA bit in WRITE AND VERIFY; BYTCHK is bit 1 */
		sbc_exec_write(c, &rw);
		return;
	case SCSI_VERIFY10: case SCSI_VERIFY12: case SCSI_VERIFY16:
		sbc_exec_verify(c, &rw);
		return;
	case SCSI_COMPARE_AND_WRITE:
		sbc_exec_caw(c, &rw);
		return;
	case SCSI_WRITE_SAME10: case SCSI_WRITE_SAME16:
		sbc_exec_write_same(c, &rw);
		return;
	case SCSI_UNMAP:
		sbc_exec_unmap(c);
		return;
	case SCSI_SYNC_CACHE10: case SCSI_SYNC_CACHE16:
		if (!sbc_check_range(c, rw.lba, rw.nb))
			return;
		cmd_submit(c, l->ops->flush, 0, 0, NULL, 0, sbc_flush_done);
		return;
	case SCSI_PREFETCH10: case SCSI_PREFETCH16:
		if (!sbc_check_range(c, rw.lba, rw.nb))
			return;
		scsi_good(c);
		return;
	case SCSI_MODE_SENSE6: case SCSI_MODE_SENSE10:
		spc_exec_mode_sense(c);
		return;
	case SCSI_MODE_SELECT6: case SCSI_MODE_SELECT10:
		spc_exec_mode_select(c, nx);
		return;
	case SCSI_START_STOP_UNIT:
		scsi_good(c);
		return;
	case SCSI_PREVENT_ALLOW:
		pthread_mutex_lock(&l->lock);
		nx->prevent = c->cdb[4] & 1;
		pthread_mutex_unlock(&l->lock);
		scsi_good(c);
		return;
	case SCSI_RESERVE6: case SCSI_RESERVE10:
		pr_exec_reserve(c, true);
		return;
	case SCSI_RELEASE6: case SCSI_RELEASE10:
		pr_exec_reserve(c, false);
		return;
	case SCSI_PR_IN:
		pr_exec_in(c);
		return;
	case SCSI_PR_OUT:
		pr_exec_out(c, nx);
		return;
	case SCSI_READ_DEFECT10: case SCSI_READ_DEFECT12: {
		bool ten = op == SCSI_READ_DEFECT10;
		uint32_t alloc = ten ? get_be16(c->cdb + 7) : get_be32(c->cdb + 6);
		if (cmd_buf_reserve(c, 8)) {
			scsi_io_sense(c, -ENOMEM, false);
			return;
		}
		memset(c->buf, 0, 8);
		c->buf[1] = c->cdb[ten ? 2 : 1] & 0x1f;
		scsi_send_data(c, ten ? 4 : 8, alloc);
		return;
	}
	default:
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_OPCODE);
		return;
	}
}
