/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The iSCSI full-feature phase: what each PDU asks for and how a task ends.
 * SCSI Command (with immediate and unsolicited data), Data-Out and R2T,
 * NOP-Out/In, task management (ABORT TASK, LUN RESET, ...), Logout and
 * Reject; the SCSI Response and Data-In that complete a command.
 *
 * Workload. Every command of every connection comes through here on its
 * loop thread: a read is one SCSI Command PDU and Data-In plus status; a
 * write adds R2T / Data-Out rounds up to the negotiated burst lengths.
 *
 * Invariants: StatSN advances once per status-bearing PDU; commands outside
 * [ExpCmdSN, MaxCmdSN] are dropped silently (RFC 7143 3.2.2.1); a command
 * executes only once its data-out is complete, and completes exactly once
 * (cmd_complete()); an aborted command sends no response. Protocol
 * violations return an error, which closes the connection.
 *
 * THREAD SAFETY: runs on the connection's loop thread, which owns the
 * connection, its session and its commands (no lock). LUN state is touched
 * only through scsi.c, under lun->lock; srv->lock is taken only for LUN
 * lookup. Lock order: srv->lock, then lun->lock.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

/* ------------------------------------------------------------------ */
/* responses                                                           */

static void fill_residual(struct cmd *cmd, uint8_t *hdr, uint32_t wanted, uint32_t sent_or_got)
{
	(void)sent_or_got;
	if (wanted > cmd->edtl) {
		hdr[1] |= ISCSI_RSP_O;
		put_be32(hdr + ISCSI_RSP_OFF_RESID, wanted - cmd->edtl);
	} else if (wanted < cmd->edtl) {
		hdr[1] |= ISCSI_RSP_U;
		put_be32(hdr + ISCSI_RSP_OFF_RESID, cmd->edtl - wanted);
	}
}

void cmd_complete(struct cmd *cmd)
{
	struct conn *c = cmd->conn;
	bool is_read = cmd->iflags & ISCSI_CMD_R;
	uint32_t wanted = is_read ? cmd->data_in_len : cmd->scsi_len;
	uint32_t datasn = 0;

	cmd->state = CMD_DONE;
	if (cmd->has_range)
		scsi_range_release(cmd);
	if (cmd->aborted || c->state == CONN_DEAD) {
		cmd_put(cmd);
		return;
	}
	if (!is_read && !(cmd->iflags & ISCSI_CMD_W))
		wanted = cmd->data_in_len ? cmd->data_in_len : 0;
	if (is_read && cmd->data_in_len && cmd->edtl) {
		uint32_t total = TS_MIN(cmd->data_in_len, cmd->edtl);
		uint32_t seg = c->p.max_send_dsl ? c->p.max_send_dsl : 8192;
		bool phase_collapse = cmd->status == SCSI_STATUS_GOOD && !cmd->sense_len;
		for (uint32_t off = 0; off < total;) {
			uint32_t len = TS_MIN(seg, total - off);
			bool last = off + len == total;
			struct txpdu *t = tx_alloc(c);
			if (!t)
				goto fail;
			t->hdr[0] = ISCSI_OP_DATA_IN;
			t->hdr[1] = (last || ((off + len) % c->p.max_burst) == 0) ? ISCSI_BHS_F : 0;
			memcpy(t->hdr + ISCSI_OFF_LUN, &cmd->lun_raw, 8);
			put_be32(t->hdr + ISCSI_OFF_ITT, cmd->itt);
			put_be32(t->hdr + ISCSI_DATA_OFF_TTT, ISCSI_RSVD_TAG);
			put_be32(t->hdr + ISCSI_DATA_OFF_DATASN, datasn++);
			put_be32(t->hdr + ISCSI_DATA_OFF_BUFOFF, off);
			if (last && phase_collapse) {
				t->hdr[1] |= ISCSI_BHS_F | ISCSI_DATAIN_S;
				t->hdr[3] = cmd->status;
				fill_residual(cmd, t->hdr, wanted, total);
				conn_fill_sn(c, t->hdr, true);
			} else {
				conn_fill_sn(c, t->hdr, false);
			}
			tx_set_data(c, t, cmd->buf + off, len);
			t->cmd = cmd;
			cmd->refs++;
			tx_queue(c, t);
			off += len;
		}
		if (phase_collapse) {
			cmd_put(cmd);
			return;
		}
	}
	struct txpdu *t = tx_alloc(c);
	if (!t)
		goto fail;
	t->hdr[0] = ISCSI_OP_SCSI_RSP;
	t->hdr[1] = ISCSI_BHS_F;
	t->hdr[3] = cmd->status;
	put_be32(t->hdr + ISCSI_OFF_ITT, cmd->itt);
	conn_fill_sn(c, t->hdr, true);
	put_be32(t->hdr + ISCSI_RSP_OFF_EXPDATASN, is_read ? datasn : cmd->r2tsn);
	fill_residual(cmd, t->hdr, wanted, 0);
	if (cmd->sense_len) {
		uint8_t *d = ts_malloc(cmd->sense_len + 2);
		if (!d) {
			tx_release(c->loop, t);
			goto fail;
		}
		put_be16(d, (uint16_t)cmd->sense_len);
		memcpy(d + 2, cmd->sense, cmd->sense_len);
		t->owned = d;
		tx_set_data(c, t, d, cmd->sense_len + 2);
	}
	tx_queue(c, t);
	cmd_put(cmd);
	return;
fail:
	conn_close(c);
	cmd_put(cmd);
}

static void send_r2t(struct cmd *cmd)
{
	struct conn *c = cmd->conn;
	struct txpdu *t = tx_alloc(c);
	if (!t) {
		conn_close(c);
		return;
	}
	cmd->r2t_off = cmd->received;
	cmd->r2t_len = TS_MIN(c->p.max_burst, cmd->edtl - cmd->received);
	cmd->ttt = c->next_ttt++;
	if (cmd->ttt == ISCSI_RSVD_TAG)
		cmd->ttt = c->next_ttt++;
	cmd->datasn_exp = 0;
	t->hdr[0] = ISCSI_OP_R2T;
	t->hdr[1] = ISCSI_BHS_F;
	memcpy(t->hdr + ISCSI_OFF_LUN, &cmd->lun_raw, 8);
	put_be32(t->hdr + ISCSI_OFF_ITT, cmd->itt);
	put_be32(t->hdr + ISCSI_DATA_OFF_TTT, cmd->ttt);
	conn_fill_sn(c, t->hdr, false);
	put_be32(t->hdr + ISCSI_R2T_OFF_R2TSN, cmd->r2tsn++);
	put_be32(t->hdr + ISCSI_DATA_OFF_BUFOFF, cmd->r2t_off);
	put_be32(t->hdr + ISCSI_R2T_OFF_LEN, cmd->r2t_len);
	tx_queue(c, t);
}

static void send_reject(struct conn *c, uint8_t reason, const uint8_t *bhs)
{
	struct txpdu *t = tx_alloc(c);
	uint8_t *d = ts_malloc(ISCSI_BHS_LEN);
	if (!t || !d) {
		ts_free(d);
		if (t)
			tx_release(c->loop, t);
		return;
	}
	memcpy(d, bhs, ISCSI_BHS_LEN);
	t->hdr[0] = ISCSI_OP_REJECT;
	t->hdr[1] = ISCSI_BHS_F;
	t->hdr[2] = reason;
	put_be32(t->hdr + ISCSI_OFF_ITT, ISCSI_RSVD_TAG);
	conn_fill_sn(c, t->hdr, true);
	t->owned = d;
	tx_set_data(c, t, d, ISCSI_BHS_LEN);
	tx_queue(c, t);
}

/* ------------------------------------------------------------------ */
/* full feature phase                                                  */

static struct cmd *cmd_find(struct conn *c, uint32_t itt)
{
	for (struct cmd *cmd = c->hash[itt % ISCSI_CMD_HASH]; cmd; cmd = cmd->hnext)
		if (cmd->itt == itt)
			return cmd;
	return NULL;
}

static uint16_t lun_from_raw(const uint8_t *p)
{
	return (uint16_t)(((p[0] & 0x3f) << 8) | p[1]);
}

static struct lun *lun_lookup(struct conn *c, const uint8_t *raw)
{
	struct session *s = c->sess;
	struct lun *l = NULL;
	uint16_t id = lun_from_raw(raw);
	if ((raw[0] >> 6) > 1 || id >= ISCSI_MAX_LUNS || memcmp(raw + 2, "\0\0\0\0\0\0", 6) != 0)
		return NULL;
	/* fast path: the session's nexus already holds a reference to a live LUN */
	struct nexus *nx = s->nexus[id];
	if (nx && !atomic_load(&nx->lun->removed)) {
		lun_get(nx->lun);
		return nx->lun;
	}
	pthread_mutex_lock(&c->loop->srv->lock);
	if (s->tgt && !s->tgt->removed) {
		l = s->tgt->luns[id];
		if (l)
			lun_get(l);
	}
	pthread_mutex_unlock(&c->loop->srv->lock);
	return l;
}

/* Accept or drop by CmdSN. Returns false if the PDU must be ignored. */
static bool cmdsn_check(struct conn *c, const uint8_t *bhs)
{
	struct session *s = c->sess;
	uint32_t sn = get_be32(bhs + ISCSI_CMD_OFF_CMDSN);
	if (bhs[0] & ISCSI_BHS_I)
		return true;
	if (sn_lt(sn, s->expcmdsn) || sn_gt(sn, s->expcmdsn + ISCSI_CMD_WINDOW - 1))
		return false;
	if (sn == s->expcmdsn)
		s->expcmdsn++;
	else
		s->expcmdsn = sn + 1;
	return true;
}

static void cmd_start_exec(struct cmd *cmd)
{
	cmd->state = CMD_EXEC;
	scsi_exec(cmd);
}

static int handle_scsi_cmd(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	struct cmd *cmd;
	bool is_write_cdb;

	if (c->sess->discovery)
		return -EPROTO;
	if (!cmdsn_check(c, bhs))
		return 0;
	cmd = cmd_alloc(c);
	if (!cmd)
		return -ENOMEM;
	cmd->iflags = bhs[1];
	cmd->itt = get_be32(bhs + ISCSI_OFF_ITT);
	cmd->edtl = get_be32(bhs + ISCSI_CMD_OFF_EDTL);
	cmd->cmdsn = get_be32(bhs + ISCSI_CMD_OFF_CMDSN);
	memcpy(&cmd->lun_raw, bhs + ISCSI_OFF_LUN, 8);
	memcpy(cmd->cdb, bhs + ISCSI_CMD_OFF_CDB, 16);
	cmd->status = SCSI_STATUS_GOOD;
	if (cmd_find(c, cmd->itt)) {
		/* task tag in use: protocol violation */
		cmd_put(cmd);
		return -EPROTO;
	}
	cmd->hnext = c->hash[cmd->itt % ISCSI_CMD_HASH];
	c->hash[cmd->itt % ISCSI_CMD_HASH] = cmd;
	cmd->anext = &c->active;
	cmd->aprev = c->active.aprev;
	c->active.aprev->anext = cmd;
	c->active.aprev = cmd;
	cmd->hashed = true;
	cmd->lun = lun_lookup(c, bhs + ISCSI_OFF_LUN);
	cmd->scsi_len = scsi_cdb_xfer_len(cmd->cdb, cmd->lun ? cmd->lun->bs : 512, &is_write_cdb);

	if (!(cmd->iflags & ISCSI_CMD_W) || cmd->edtl == 0) {
		if (dsl)
			return -EPROTO;
		cmd_start_exec(cmd);
		return 0;
	}
	if (dsl > cmd->edtl || (dsl && !c->p.immediate_data) || dsl > c->p.first_burst)
		return -EPROTO;
	if (cmd->edtl > ISCSI_MAX_XFER) {
		scsi_set_sense(cmd, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		cmd_complete(cmd);
		return 0;
	}
	if (cmd_buf_reserve(cmd, cmd->edtl)) {
		cmd->status = SCSI_STATUS_TASK_SET_FULL;
		cmd_complete(cmd);
		return 0;
	}
	if (dsl)
		memcpy(cmd->buf, data, dsl);
	cmd->received = dsl;
	cmd->state = CMD_DATA_OUT;
	if (!(cmd->iflags & ISCSI_BHS_F) && !c->p.initial_r2t) {
		uint32_t fb = TS_MIN(c->p.first_burst, cmd->edtl);
		cmd->unsol_left = fb > dsl ? fb - dsl : 0;
		if (!cmd->unsol_left)
			return -EPROTO;
	}
	if (cmd->received == cmd->edtl)
		cmd_start_exec(cmd);
	else if (!cmd->unsol_left)
		send_r2t(cmd);
	return 0;
}

static int handle_data_out(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	struct cmd *cmd = cmd_find(c, get_be32(bhs + ISCSI_OFF_ITT));
	uint32_t ttt = get_be32(bhs + ISCSI_DATA_OFF_TTT);
	uint32_t off = get_be32(bhs + ISCSI_DATA_OFF_BUFOFF);
	uint32_t sn = get_be32(bhs + ISCSI_DATA_OFF_DATASN);
	bool final = bhs[1] & ISCSI_BHS_F;

	if (!cmd || cmd->state != CMD_DATA_OUT)
		return 0; /* data for a command already answered or aborted: drop it */
	if (sn != cmd->datasn_exp) {
		/* out-of-order DataSN: fail the task, keep the connection (ERL 0 cannot recover it) */
		cmd->state = CMD_EXEC;
		scsi_set_sense(cmd, SK_ABORTED_COMMAND, 0x4b00); /* DATA PHASE ERROR */
		cmd_complete(cmd);
		return 0;
	}
	if (off != cmd->received || off + dsl > cmd->edtl)
		return -EPROTO;
	if (ttt == ISCSI_RSVD_TAG) {
		if (dsl > cmd->unsol_left)
			return -EPROTO;
		cmd->unsol_left -= dsl;
		if (final != (cmd->unsol_left == 0))
			return -EPROTO;
	} else {
		if (ttt != cmd->ttt || cmd->unsol_left || off + dsl > cmd->r2t_off + cmd->r2t_len)
			return -EPROTO;
		if (final != (off + dsl == cmd->r2t_off + cmd->r2t_len))
			return -EPROTO;
	}
	if (dsl)
		memcpy(cmd->buf + off, data, dsl);
	cmd->received += dsl;
	cmd->datasn_exp++;
	if (!final)
		return 0;
	cmd->datasn_exp = 0;
	if (cmd->received == cmd->edtl)
		cmd_start_exec(cmd);
	else
		send_r2t(cmd);
	return 0;
}

static int handle_nop_out(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	uint32_t itt = get_be32(bhs + ISCSI_OFF_ITT);
	if (itt != ISCSI_RSVD_TAG && !cmdsn_check(c, bhs))
		return 0;
	if (itt == ISCSI_RSVD_TAG)
		return 0; /* answer to a ping of ours (we send none) */
	struct txpdu *t = tx_alloc(c);
	if (!t)
		return -ENOMEM;
	t->hdr[0] = ISCSI_OP_NOP_IN;
	t->hdr[1] = ISCSI_BHS_F;
	memcpy(t->hdr + ISCSI_OFF_LUN, bhs + ISCSI_OFF_LUN, 8);
	put_be32(t->hdr + ISCSI_OFF_ITT, itt);
	put_be32(t->hdr + ISCSI_DATA_OFF_TTT, ISCSI_RSVD_TAG);
	conn_fill_sn(c, t->hdr, true);
	if (dsl) {
		uint32_t n = TS_MIN(dsl, c->p.max_send_dsl);
		t->owned = ts_malloc(n);
		if (!t->owned) {
			tx_release(c->loop, t);
			return -ENOMEM;
		}
		memcpy(t->owned, data, n);
		tx_set_data(c, t, t->owned, n);
	}
	tx_queue(c, t);
	return 0;
}

void abort_cmd(struct cmd *cmd)
{
	if (cmd->state == CMD_DONE || cmd->aborted)
		return;
	cmd->aborted = true;
	cmd_unhash(cmd);
	if (cmd->state == CMD_DATA_OUT || cmd->state == CMD_NEW) {
		cmd->state = CMD_DONE;
		cmd_put(cmd);
	}
	/* CMD_EXEC: the continuation sees aborted and drops it */
}

static int handle_tmf(struct conn *c, const uint8_t *bhs)
{
	uint8_t fn = bhs[1] & ISCSI_TMF_FUNC_MASK;
	uint8_t rsp = ISCSI_TMF_RSP_COMPLETE;
	struct lun *l = NULL;

	if (c->sess->discovery)
		return -EPROTO;
	if (!cmdsn_check(c, bhs))
		return 0;
	switch (fn) {
	case ISCSI_TMF_ABORT_TASK: {
		struct cmd *cmd = cmd_find(c, get_be32(bhs + ISCSI_TMF_OFF_RTT));
		if (cmd)
			abort_cmd(cmd);
		else
			rsp = ISCSI_TMF_RSP_NO_TASK;
		break;
	}
	case ISCSI_TMF_ABORT_TASK_SET:
	case ISCSI_TMF_CLEAR_TASK_SET:
	case ISCSI_TMF_LUN_RESET:
		l = lun_lookup(c, bhs + ISCSI_OFF_LUN);
		if (!l) {
			rsp = ISCSI_TMF_RSP_NO_LUN;
			break;
		}
		for (struct cmd *cmd = c->active.anext, *n; cmd != &c->active; cmd = n) {
			n = cmd->anext;
			if (cmd->lun == l)
				abort_cmd(cmd);
		}
		if (fn == ISCSI_TMF_LUN_RESET)
			scsi_lun_reset(l, NULL); /* every nexus, the issuer too (SAM-5) */
		lun_put(l);
		break;
	case ISCSI_TMF_TARGET_WARM_RESET:
	case ISCSI_TMF_TARGET_COLD_RESET: {
		for (struct cmd *cmd = c->active.anext, *n; cmd != &c->active; cmd = n) {
			n = cmd->anext;
			abort_cmd(cmd);
		}
		for (uint16_t i = 0; i < ISCSI_MAX_LUNS; i++) {
			uint8_t raw[8] = { (uint8_t)(i >> 8), (uint8_t)i };
			l = lun_lookup(c, raw);
			if (l) {
				scsi_lun_reset(l, c->sess->nexus[i]);
				lun_put(l);
			}
		}
		break;
	}
	case ISCSI_TMF_CLEAR_ACA:
		break;
	default:
		rsp = ISCSI_TMF_RSP_NOT_SUPPORTED;
		break;
	}
	struct txpdu *t = tx_alloc(c);
	if (!t)
		return -ENOMEM;
	t->hdr[0] = ISCSI_OP_TMF_RSP;
	t->hdr[1] = ISCSI_BHS_F;
	t->hdr[2] = rsp;
	put_be32(t->hdr + ISCSI_OFF_ITT, get_be32(bhs + ISCSI_OFF_ITT));
	conn_fill_sn(c, t->hdr, true);
	tx_queue(c, t);
	if (fn == ISCSI_TMF_TARGET_COLD_RESET) {
		conn_flush(c);
		return -ECONNRESET;
	}
	return 0;
}

static int handle_logout(struct conn *c, const uint8_t *bhs)
{
	uint8_t reason = bhs[1] & ISCSI_LOGOUT_REASON_MASK;
	cmdsn_check(c, bhs);
	struct txpdu *t = tx_alloc(c);
	if (!t)
		return -ENOMEM;
	t->hdr[0] = ISCSI_OP_LOGOUT_RSP;
	t->hdr[1] = ISCSI_BHS_F;
	t->hdr[2] = reason <= ISCSI_LOGOUT_CLOSE_CONN ? 0 : 2; /* 2: recovery not supported */
	put_be32(t->hdr + ISCSI_OFF_ITT, get_be32(bhs + ISCSI_OFF_ITT));
	conn_fill_sn(c, t->hdr, true);
	tx_queue(c, t);
	conn_flush(c);
	if (reason <= ISCSI_LOGOUT_CLOSE_CONN) {
		shutdown(c->fd, SHUT_WR);
		return -ECONNRESET;
	}
	return 0;
}

int dispatch_full(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	switch (iscsi_bhs_op(bhs)) {
	case ISCSI_OP_SCSI_CMD:
		return handle_scsi_cmd(c, bhs, data, dsl);
	case ISCSI_OP_DATA_OUT:
		return handle_data_out(c, bhs, data, dsl);
	case ISCSI_OP_NOP_OUT:
		return handle_nop_out(c, bhs, data, dsl);
	case ISCSI_OP_TMF_REQ:
		return handle_tmf(c, bhs);
	case ISCSI_OP_LOGOUT_REQ:
		return handle_logout(c, bhs);
	case ISCSI_OP_TEXT_REQ:
		if (!cmdsn_check(c, bhs))
			return 0;
		return text_handle(c, bhs, data, dsl);
	case ISCSI_OP_SNACK_REQ:
		send_reject(c, ISCSI_REJECT_SNACK, bhs);
		return 0;
	case ISCSI_OP_LOGIN_REQ:
		return -EPROTO;
	default:
		send_reject(c, ISCSI_REJECT_NOT_SUPPORTED, bhs);
		return 0;
	}
}
