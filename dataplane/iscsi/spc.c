/* SPDX-License-Identifier: Apache-2.0 */
/*
 * SCSI primary commands (SPC-4) that answer from LUN state without provider
 * IO: INQUIRY and its VPD pages, MODE SENSE / MODE SELECT, REPORT LUNS,
 * REQUEST SENSE and REPORT SUPPORTED OPERATION CODES.
 *
 * Workload. Discovery and configuration by initiators: rare, small, answered
 * at once into c->buf and clipped to the allocation length.
 *
 * Invariants. Data-In never exceeds the CDB's allocation length. MODE
 * SELECT changes only the parameters reported changeable, and raises MODE
 * PARAMETERS CHANGED on the other nexuses of the LUN. The opcode table of
 * REPORT SUPPORTED OPERATION CODES lists what scsi_exec() dispatches.
 *
 * THREAD SAFETY: mode parameters and unit attentions are read and changed
 * under lun->lock; everything else here is fixed at LUN creation. Runs on
 * the command's connection loop thread. Lock order: srv->lock, then
 * lun->lock.
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

void spc_exec_inquiry(struct cmd *c)
{
	uint32_t alloc = get_be16(c->cdb + 3);
	bool evpd = c->cdb[1] & 1;
	if (cmd_buf_reserve(c, 512)) {
		scsi_io_sense(c, -ENOMEM, false);
		return;
	}
	if (!evpd) {
		if (c->cdb[2]) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
			return;
		}
		scsi_send_data(c, inq_standard(c, c->buf, c->lun != NULL), alloc);
		return;
	}
	if (!c->lun) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_LUN_NOT_SUPPORTED);
		return;
	}
	bool ok;
	uint32_t n = vpd_page(c, c->cdb[2], c->buf, &ok);
	if (!ok) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	scsi_send_data(c, n, alloc);
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

void spc_exec_mode_sense(struct cmd *c)
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
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_SAVING_NOT_SUPPORTED);
		return;
	}
	if (cmd_buf_reserve(c, 1024)) {
		scsi_io_sense(c, -ENOMEM, false);
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
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (page == 0x3f) {
		for (size_t i = 0; i < sizeof(pages); i++)
			len += mode_page(l, pages[i], pc, b + len);
	} else {
		uint32_t n = sub == 0xff ? 0 : mode_page(l, page, pc, b + len);
		if (!n) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
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
	scsi_send_data(c, len, alloc);
}

void spc_exec_mode_select(struct cmd *c, struct nexus *nx)
{
	struct lun *l = c->lun;
	bool ten = c->cdb[0] == SCSI_MODE_SELECT10;
	uint32_t plen = ten ? get_be16(c->cdb + 7) : c->cdb[4];
	uint32_t hl = ten ? 8 : 4, bdl, off;
	bool d_sense = l->d_sense, swp = l->swp, wce = l->wce;

	if (c->cdb[1] & 0x01) { /* SP: nothing is savable */
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen == 0) {
		scsi_good(c);
		return;
	}
	if (plen < hl || c->received < plen) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	const uint8_t *b = c->buf;
	bdl = ten ? get_be16(b + 6) : b[3];
	off = hl + bdl;
	while (off + 2 <= plen) {
		uint8_t page = b[off] & 0x3f;
		uint32_t pl = b[off + 1] + 2u;
		if (b[off] & 0x40 || off + pl > plen) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
			return;
		}
		uint8_t cur[32];
		uint32_t cl = mode_page(l, page, 0, cur);
		if (!cl || cl != pl) {
			scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
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
		scsi_ua_all(l, nx, UA_MODE_CHANGED);
	l->d_sense = d_sense;
	l->swp = swp;
	l->wce = wce;
	pthread_mutex_unlock(&l->lock);
	scsi_good(c);
}

/* ------------------------------------------------------------------ */
/* misc                                                                */

void spc_exec_report_luns(struct cmd *c)
{
	uint32_t alloc = get_be32(c->cdb + 6);
	struct ts_iscsi_server *srv = c->conn->loop->srv;
	struct target *t = c->conn->sess->tgt;
	uint32_t n = 0;
	if (alloc < 16) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (c->cdb[2] > 2 && c->cdb[2] != 0x10 && c->cdb[2] != 0x11 && c->cdb[2] != 0x12) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (cmd_buf_reserve(c, 8 + 8 * ISCSI_MAX_LUNS)) {
		scsi_io_sense(c, -ENOMEM, false);
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
	scsi_send_data(c, 8 + 8 * n, alloc);
}


void spc_exec_request_sense(struct cmd *c, struct nexus *nx)
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
			asc = scsi_ua_asc(bit);
			key = SK_UNIT_ATTENTION;
		}
		pthread_mutex_unlock(&nx->lun->lock);
	} else {
		key = SK_ILLEGAL_REQUEST;
		asc = ASC_LUN_NOT_SUPPORTED;
	}
	if (cmd_buf_reserve(c, 32)) {
		scsi_io_sense(c, -ENOMEM, false);
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
	scsi_send_data(c, n, alloc);
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

void spc_exec_rsoc(struct cmd *c)
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
		scsi_io_sense(c, -ENOMEM, false);
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
		scsi_send_data(c, n, alloc);
		return;
	}
	if (opt > 3) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
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
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
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
	scsi_send_data(c, n, alloc);
}
