/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persistent reservations (SPC-4 PERSISTENT RESERVE IN/OUT) and SPC-2
 * RESERVE/RELEASE, and the reservation-conflict check every command passes.
 *
 * Workload. Clustered applications fence with PR: registrations and
 * reservation changes are rare, but every command is checked against the
 * reservation state (pr_res_conflict(), under lun->lock).
 *
 * Invariants. The PR state (generation, holder, type, registrations) is
 * persisted after every change, through the provider's pr_save op or
 * atomically to the LUN's PR file (write, fsync, rename), and loaded when
 * the LUN is added. An SPC-2 reservation and persistent reservations
 * exclude each other. Releasing or preempting a registrants-only or
 * all-registrants reservation raises a unit attention on the other
 * registrants.
 *
 * THREAD SAFETY: lun->lock guards the registrations, the reservation and
 * the SPC-2 holder; pr_persist() runs with it held (a PR change and its
 * persistence are one step). Runs on the command's connection loop thread.
 * Lock order: srv->lock, then lun->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

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
bool pr_res_conflict(struct cmd *c)
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
				scsi_ua_port(l, l->regs[i].port, UA_RES_RELEASED);
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

void pr_exec_out(struct cmd *c, struct nexus *nx)
{
	struct lun *l = c->lun;
	uint8_t sa = c->cdb[1] & 0x1f, scope = c->cdb[2] >> 4, type = c->cdb[2] & 0x0f;
	uint32_t plen = get_be32(c->cdb + 5);
	const char *me = c->conn->sess->port;
	uint8_t key = 0;
	uint16_t asc = 0;
	bool conflict = false, changed = false;

	if (sa > PR_OUT_REGISTER_MOVE || sa == PR_OUT_REGISTER_MOVE) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (plen != 24 || c->received < 24) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	const uint8_t *p = c->buf;
	uint64_t rk = get_be64(p), sark = get_be64(p + 8);
	uint8_t pflags = p[20];
	if (pflags & 0x0c) { /* SPEC_I_PT, ALL_TG_PT unsupported */
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
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
				scsi_ua_port(l, l->regs[i].port, UA_RES_PREEMPTED);
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
				scsi_ua_port(l, l->regs[i].port, UA_REG_PREEMPTED);
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
		scsi_fail(c, key, asc);
	} else {
		scsi_good(c);
	}
}

void pr_exec_in(struct cmd *c)
{
	struct lun *l = c->lun;
	uint8_t sa = c->cdb[1] & 0x1f;
	uint32_t alloc = get_be16(c->cdb + 7);
	size_t cap = 8 + ISCSI_MAX_PR_REGS * (24 + ISCSI_PORT_NAME_MAX + 8);
	uint32_t n = 8;
	if (sa > PR_IN_READ_FULL_STATUS) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (cmd_buf_reserve(c, cap)) {
		scsi_io_sense(c, -ENOMEM, false);
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
	scsi_send_data(c, n, alloc);
}

void pr_exec_reserve(struct cmd *c, bool reserve)
{
	struct lun *l = c->lun;
	const char *me = c->conn->sess->port;
	bool conflict = false;
	if (reserve && c->cdb[0] == SCSI_RESERVE10 && (c->cdb[1] & 0x02)) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB); /* third-party */
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
