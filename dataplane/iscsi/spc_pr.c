/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Persistent reservations (SPC-4 PERSISTENT RESERVE IN/OUT) and SPC-2
 * RESERVE/RELEASE, and the reservation-conflict check every command passes.
 *
 * Workload. Clustered applications fence with PR: registrations and
 * reservation changes are rare, but every command is checked against the
 * reservation state (pr_res_conflict(), under lun->lock).
 *
 * Invariants. The PR state (generation, APTPL, holder, type,
 * registrations) is the LU's: one copy per struct lun, shared by every
 * session, connection and portal of the LU. It is persisted after every
 * change, before the command completes, through the provider's pr_save op
 * (volumes keep it in the volume's metadata: volumedriver/lun) or
 * atomically to the LUN's PR file (write, fsync, rename), and loaded when
 * the LUN is added, whatever APTPL says: an engine restart or failover is a
 * controller failover, not a power loss of the LU. APTPL is recorded and
 * reported (PTPL_A). An SPC-2 reservation and persistent reservations
 * exclude each other. Releasing or preempting a registrants-only or
 * all-registrants reservation raises a unit attention on the other
 * registrants.
 *
 * Service actions: REGISTER, REGISTER AND IGNORE EXISTING KEY (ALL_TG_PT
 * accepted: one target port per target), RESERVE, RELEASE, CLEAR, PREEMPT,
 * PREEMPT AND ABORT (see pr_preempt()), REGISTER AND MOVE (iSCSI
 * TransportIDs in initiator port format). SPEC_I_PT is refused; all six
 * reservation types, LU scope only.
 *
 * Fencing LUs (info.fencing; the member LUNs a node exports to array-group
 * engines, docs/fencing.md). Keys are (epoch << 32) | node. The floor
 * (lun->fence_epoch/node) is the highest key a REGISTER carried; it is
 * persisted through ops->fence_save before it changes, and only goes up.
 * With a floor set: a REGISTER of a key below it, or of the floor's epoch
 * from another node, is a RESERVATION CONFLICT; every other PR OUT action
 * needs the issuer registered with the floor key (REGISTER AND MOVE is
 * refused: ownership moves by a new epoch, never by handing a reservation
 * over); every read or write needs it too (pr_res_conflict()), whatever the
 * reservation type, so a stale owner that kept its registration or holds
 * the reservation is refused the moment a newer epoch registers. A
 * REGISTER of a non-zero key marks every write of the other nexuses
 * already at the provider and completes only once they are done (the
 * PREEMPT AND ABORT parking below), so after its GOOD nothing of a stale
 * owner reaches the medium. The persisted floor alone is enough after a
 * restart: registrations name I_T nexuses that die with the process, and
 * only the floor's owner can register again.
 *
 * THREAD SAFETY: lun->lock guards the registrations, the reservation and
 * the SPC-2 holder; pr_persist() runs with it held (a PR change and its
 * persistence are one step). It also guards the fenced marks on write ranges
 * and the PREEMPT AND ABORTs parked on lun->abort_waiters; a parked command
 * is requeued to its own loop thread when the last fenced write releases its
 * range (sbc.c). Runs on the command's connection loop thread. Lock order:
 * srv->lock, then lun->lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
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

static uint64_t fence_key(const struct lun *l)
{
	return ((uint64_t)l->fence_epoch << 32) | l->fence_node;
}

/* Is \p port registered with the floor key (the owner at the current epoch)? */
static bool fence_is_owner(struct lun *l, const char *port)
{
	int ri = reg_find(l, port);

	return ri >= 0 && l->regs[ri].key == fence_key(l);
}

bool pr_fence_owner_holds(struct lun *l)
{
	if (!l->pr_held || !l->fence_epoch)
		return false;
	if (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR) {
		for (unsigned i = 0; i < l->nregs; i++)
			if (l->regs[i].key == fence_key(l))
				return true;
		return false;
	}
	return fence_is_owner(l, l->pr_holder);
}

/* Commands that change the medium: what a fenced owner must never get through. */
static bool cmd_modifies(const uint8_t *cdb)
{
	switch (cdb[0]) {
	case SCSI_WRITE6: case SCSI_WRITE10: case SCSI_WRITE12: case SCSI_WRITE16:
	case SCSI_WRITE_VERIFY10: case SCSI_WRITE_VERIFY12: case SCSI_WRITE_VERIFY16:
	case SCSI_WRITE_SAME10: case SCSI_WRITE_SAME16: case SCSI_UNMAP: case SCSI_COMPARE_AND_WRITE:
		return true;
	}
	return false;
}

/* Count a refused command on a fencing LU, logging the first one after each raise. */
static void fence_refused(struct lun *l, struct cmd *c, const char *why)
{
	char u[37];
	int ri;

	if (cmd_modifies(c->cdb))
		l->refused_writes++;
	else
		l->refused_other++;
	if (l->fence_logged)
		return;
	l->fence_logged = true;
	ri = reg_find(l, c->conn->sess->port);
	ts_uuid_format(l->info.uuid, u);
	ts_log(TS_LOG_WARN, "iscsi",
	       "fenced IO refused lun=%s port=%s key=%016llx floor_epoch=%u floor_node=%u op=0x%02x why=%s "
	       "refused_writes=%llu",
	       u, c->conn->sess->port, ri >= 0 ? (unsigned long long)l->regs[ri].key : 0ull,
	       l->fence_epoch, l->fence_node, c->cdb[0], why, (unsigned long long)l->refused_writes);
}

static bool pr_res_conflict_spc(struct cmd *c);

/* Under lun->lock. True if the command conflicts with a reservation (or the fencing floor). */
bool pr_res_conflict(struct cmd *c)
{
	struct lun *l = c->lun;

	if (l->info.fencing && l->fence_epoch && cmd_access(c->cdb) != ACC_ALWAYS &&
	    !fence_is_owner(l, c->conn->sess->port)) {
		fence_refused(l, c, "not the owner");
		return true;
	}
	if (!pr_res_conflict_spc(c))
		return false;
	if (l->info.fencing && cmd_access(c->cdb) != ACC_ALWAYS)
		fence_refused(l, c, "reservation");
	return true;
}

static bool pr_res_conflict_spc(struct cmd *c)
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
	int n = snprintf(buf, cap, "tessera-pr 1\ngen %u\naptpl %d\nres %d %u %s\n", l->pr_gen,
			 l->aptpl ? 1 : 0, l->pr_held ? 1 : 0, l->pr_type,
			 l->pr_holder[0] ? l->pr_holder : "-");
	/* "reg KEY PORT FLAGS": FLAGS 1 = ALL_TG_PT (older readers ignore it) */
	for (unsigned i = 0; i < l->nregs && n > 0 && (size_t)n < cap; i++)
		n += snprintf(buf + n, cap - (size_t)n, "reg %016llx %s %u\n", (unsigned long long)l->regs[i].key,
			      l->regs[i].port, l->regs[i].all_tg_pt ? 1u : 0u);
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
			int rc = l->ops->pr_save(l->ctx, buf, (size_t)n);
			if (rc < 0)
				ts_log(TS_LOG_WARN, "iscsi", "cannot persist PR state err=\"%s\"", ts_strerror(rc));
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
		} else if (sscanf(line, "aptpl %u", &a) == 1) {
			l->aptpl = a != 0;
		} else if (sscanf(line, "res %u %u %255s", &a, &b, port) == 3) {
			l->pr_held = a != 0;
			l->pr_type = (uint8_t)b;
			snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", strcmp(port, "-") ? port : "");
		} else if ((b = 0, sscanf(line, "reg %llx %255s %u", &key, port, &b)) >= 2 &&
			   l->nregs < ISCSI_MAX_PR_REGS) {
			l->regs[l->nregs].key = key;
			l->regs[l->nregs].all_tg_pt = b & 1;
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

/* What a PR OUT service action decided; applied under lun->lock. */
struct pr_out {
	struct cmd *c;
	struct nexus *nx;
	const char *me;
	int ri;        /* the issuer's registration, -1 if none */
	bool conflict; /* RESERVATION CONFLICT */
	bool changed;  /* persist the new state */
	bool park;     /* PREEMPT AND ABORT: completes when the fenced writes drain */
	uint8_t key;   /* sense key of a CHECK CONDITION, 0 if none */
	uint16_t asc;
};

static void out_fail(struct pr_out *o, uint8_t key, uint16_t asc)
{
	o->key = key;
	o->asc = asc;
}

static bool reg_add(struct lun *l, struct pr_out *o, const char *port, uint64_t key, bool atp)
{
	if (l->nregs >= ISCSI_MAX_PR_REGS) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INSUFFICIENT_REG_RESOURCES);
		return false;
	}
	l->regs[l->nregs].key = key;
	l->regs[l->nregs].all_tg_pt = atp;
	snprintf(l->regs[l->nregs].port, ISCSI_PORT_NAME_MAX, "%s", port);
	l->nregs++;
	return true;
}

/* Unregister registration \p ri; a holder leaving releases (AR: the last one). */
static void reg_drop(struct lun *l, struct pr_out *o, unsigned ri)
{
	bool holder = pr_is_holder(l, l->regs[ri].port);

	reg_remove(l, ri);
	if (holder && (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR)) {
		if (!l->nregs)
			pr_release_locked(l, o->nx, false);
	} else if (holder) {
		pr_release_locked(l, o->nx, true);
	}
}

/*
 * REGISTER and REGISTER AND IGNORE EXISTING KEY. ALL_TG_PT registers the
 * initiator port with every target port of the target; a Tessera target has
 * one (one portal group, relative target port 1), so that is the same
 * registration, remembered only to be reported by READ FULL STATUS.
 */
static void pr_register(struct lun *l, struct pr_out *o, uint8_t sa, uint64_t rk, uint64_t sark,
			uint8_t pflags)
{
	if (o->ri < 0) {
		if (sa == PR_OUT_REGISTER && rk) {
			o->conflict = true;
			return;
		}
		if (!sark)
			return; /* nothing to do, GOOD */
		if (!reg_add(l, o, o->me, sark, pflags & 0x04))
			return;
	} else {
		if (sa == PR_OUT_REGISTER && rk != l->regs[o->ri].key) {
			o->conflict = true;
			return;
		}
		if (sark)
			l->regs[o->ri].key = sark;
		else
			reg_drop(l, o, (unsigned)o->ri);
	}
	l->aptpl = pflags & 0x01;
	l->pr_gen++;
	o->changed = true;
}

static void pr_reserve(struct lun *l, struct pr_out *o, uint8_t scope, uint8_t type)
{
	if (scope || !pr_type_valid(type)) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (l->pr_held) {
		/* the holder asking again for the same type: GOOD, nothing changes */
		if (!pr_is_holder(l, o->me) || l->pr_type != type)
			o->conflict = true;
		return;
	}
	l->pr_held = true;
	l->pr_type = type;
	if (type == PR_TYPE_WEAR || type == PR_TYPE_EAAR)
		l->pr_holder[0] = 0;
	else
		snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", o->me);
	o->changed = true;
}

static void pr_release(struct lun *l, struct pr_out *o, uint8_t scope, uint8_t type)
{
	if (!l->pr_held || !pr_is_holder(l, o->me))
		return; /* GOOD, nothing released */
	if (scope || l->pr_type != type) {
		out_fail(o, SK_ILLEGAL_REQUEST, 0x2604); /* invalid release of persistent reservation */
		return;
	}
	pr_release_locked(l, o->nx, true);
	o->changed = true;
}

static void pr_clear(struct lun *l, struct pr_out *o)
{
	for (unsigned i = 0; i < l->nregs; i++)
		if (strcmp(l->regs[i].port, o->me))
			scsi_ua_port(l, l->regs[i].port, UA_RES_PREEMPTED);
	l->nregs = 0;
	pr_release_locked(l, o->nx, false);
	l->pr_gen++;
	o->changed = true;
}

/* PREEMPT AND ABORT: mark the writes of \p port in flight at the provider. */
static void fence_port(struct lun *l, const char *port)
{
	for (struct wrange *r = l->writes.next; r != &l->writes; r = r->next) {
		const struct cmd *w = (const struct cmd *)((const char *)r - offsetof(struct cmd, wlink));
		if (!r->fenced && !strcmp(w->conn->sess->port, port)) {
			r->fenced = true;
			l->fenced_writes++;
		}
	}
}

/* Fencing REGISTER: mark the writes of every other nexus in flight at the provider. */
static void fence_others(struct lun *l, const char *me)
{
	for (struct wrange *r = l->writes.next; r != &l->writes; r = r->next) {
		const struct cmd *w = (const struct cmd *)((const char *)r - offsetof(struct cmd, wlink));
		if (!r->fenced && strcmp(w->conn->sess->port, me)) {
			r->fenced = true;
			l->fenced_writes++;
		}
	}
}

/*
 * The fencing rules of a PR OUT on a fencing LU, before the service action
 * runs. Returns true if the action may go on; otherwise \p o says why not.
 * A REGISTER above the floor raises it (persisted first).
 */
static bool fence_check_out(struct lun *l, struct pr_out *o, uint8_t sa, uint64_t sark)
{
	uint32_t e = (uint32_t)(sark >> 32), n = (uint32_t)sark;
	char u[37];
	int rc;

	if (sa == PR_OUT_REGISTER_MOVE) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return false;
	}
	if (sa != PR_OUT_REGISTER && sa != PR_OUT_REGISTER_IGNORE) {
		/* RESERVE, RELEASE, CLEAR, PREEMPT: the owner at the current epoch only */
		if (l->fence_epoch && !fence_is_owner(l, o->me)) {
			l->refused_pr++;
			o->conflict = true;
			return false;
		}
		return true;
	}
	if (!sark)
		return true; /* unregistering only gives up rights */
	if (!e || !n) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return false;
	}
	if (e < l->fence_epoch || (e == l->fence_epoch && n != l->fence_node)) {
		l->refused_pr++;
		ts_uuid_format(l->info.uuid, u);
		ts_log(TS_LOG_WARN, "iscsi",
		       "fenced REGISTER refused lun=%s port=%s epoch=%u node=%u floor_epoch=%u floor_node=%u",
		       u, o->me, e, n, l->fence_epoch, l->fence_node);
		o->conflict = true;
		return false;
	}
	if (e == l->fence_epoch)
		return true;
	rc = l->ops->fence_save(l->ctx, e, n);
	ts_uuid_format(l->info.uuid, u);
	if (rc) {
		ts_log(TS_LOG_ERROR, "iscsi", "cannot persist fencing epoch lun=%s epoch=%u node=%u err=\"%s\"",
		       u, e, n, ts_strerror(rc));
		out_fail(o, SK_HARDWARE_ERROR, ASC_INTERNAL_TARGET_FAILURE);
		return false;
	}
	ts_log(TS_LOG_INFO, "iscsi", "fencing epoch raised lun=%s epoch=%u node=%u previous_epoch=%u previous_node=%u",
	       u, e, n, l->fence_epoch, l->fence_node);
	l->fence_epoch = e;
	l->fence_node = n;
	l->fence_raises++;
	l->fence_logged = false;
	return true;
}

/*
 * PREEMPT and PREEMPT AND ABORT (SPC-4 "Preempting"). The victims are the
 * other I_T nexuses registered with SERVICE ACTION RESERVATION KEY (with an
 * all-registrants reservation and a zero key: every other registrant). They
 * lose their registrations (unit attention REGISTRATIONS PREEMPTED). If the
 * key is the holder's (or zero under all-registrants), the issuer also takes
 * the reservation with the new type, and the remaining registrants hear
 * RESERVATIONS RELEASED when the type changed. A key that matches no other
 * registration and no reservation is a RESERVATION CONFLICT.
 *
 * ABORT: the provider interface cannot recall an IO, so "abort the victims'
 * tasks" is: their queued and later commands fail (they are unregistered,
 * the reservation check refuses them, and range waiters are re-checked when
 * re-driven), and this command completes only after every write of theirs
 * already at the provider has completed (fence_port(); pr_abort_wake()).
 * After GOOD nothing of theirs reaches the medium.
 */
static void pr_preempt(struct lun *l, struct pr_out *o, uint8_t sa, uint8_t scope, uint8_t type,
		       uint64_t sark)
{
	bool all_reg = l->pr_held && (l->pr_type == PR_TYPE_WEAR || l->pr_type == PR_TYPE_EAAR);
	bool takes_res = false;
	unsigned victims = 0;

	if (!sark && !all_reg) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	if (l->pr_held) {
		int hi = reg_find(l, l->pr_holder);
		takes_res = all_reg ? !sark : hi >= 0 && l->regs[hi].key == sark;
	}
	if (takes_res && (scope || !pr_type_valid(type))) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	for (unsigned i = 0; i < l->nregs; i++)
		if (strcmp(l->regs[i].port, o->me) && ((all_reg && !sark) || l->regs[i].key == sark))
			victims++;
	if (!victims && !takes_res) {
		o->conflict = true;
		return;
	}
	for (unsigned i = 0; i < l->nregs;) {
		if (strcmp(l->regs[i].port, o->me) && ((all_reg && !sark) || l->regs[i].key == sark)) {
			scsi_ua_port(l, l->regs[i].port, UA_REG_PREEMPTED);
			if (sa == PR_OUT_PREEMPT_ABORT)
				fence_port(l, l->regs[i].port);
			reg_remove(l, i);
		} else {
			i++;
		}
	}
	if (takes_res) {
		bool type_changed = l->pr_type != type;
		l->pr_type = type;
		if (type == PR_TYPE_WEAR || type == PR_TYPE_EAAR)
			l->pr_holder[0] = 0;
		else
			snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", o->me);
		for (unsigned i = 0; type_changed && i < l->nregs; i++)
			if (strcmp(l->regs[i].port, o->me))
				scsi_ua_port(l, l->regs[i].port, UA_RES_RELEASED);
	}
	l->pr_gen++;
	o->changed = true;
	o->park = sa == PR_OUT_PREEMPT_ABORT && l->fenced_writes;
}

/*
 * The destination of a REGISTER AND MOVE: an iSCSI TransportID in initiator
 * port format ("<name>,i,0x<ISID>", SPC-4 7.6.4.6) -> our port name. The
 * name-only format does not name one I_T nexus and is refused.
 */
static bool tid_port(const uint8_t *t, uint32_t len, char out[ISCSI_PORT_NAME_MAX])
{
	char str[ISCSI_PORT_NAME_MAX + 8], isid[13];
	uint32_t alen;
	const char *sep;

	if (len < 24 || (t[0] & 0x0f) != 5 || (t[0] >> 6) != 1)
		return false;
	alen = get_be16(t + 2);
	if (4 + alen > len || alen >= sizeof(str) || !memchr(t + 4, 0, alen))
		return false;
	memcpy(str, t + 4, alen);
	str[alen] = 0;
	sep = strcasestr(str, ",i,0x");
	if (!sep || sep == str || (size_t)(sep - str) >= ISCSI_NAME_MAX || strlen(sep + 5) != 12)
		return false;
	for (int i = 0; i < 12; i++) {
		char ch = sep[5 + i];
		if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
			return false;
		isid[i] = (char)(ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch);
	}
	isid[12] = 0;
	snprintf(out, ISCSI_PORT_NAME_MAX, "%.*s,i,0x%s", (int)(sep - str), str, isid);
	return true;
}

/*
 * REGISTER AND MOVE: the holder hands its reservation (same type) to another
 * I_T nexus, registering it with SERVICE ACTION RESERVATION KEY if it is not
 * registered (an existing registration keeps its key), and unregisters
 * itself if UNREG is set. Relative target port 1 is the only one.
 */
static void pr_register_move(struct lun *l, struct pr_out *o, uint64_t sark)
{
	const uint8_t *p = o->c->buf;
	uint32_t tlen = get_be32(p + 20);
	char dest[ISCSI_PORT_NAME_MAX];
	int di;

	if (!l->pr_held || !pr_is_holder(l, o->me) || l->pr_type == PR_TYPE_WEAR ||
	    l->pr_type == PR_TYPE_EAAR) {
		o->conflict = true;
		return;
	}
	if (!sark || get_be16(p + 18) != 1 || !tid_port(p + 24, tlen, dest) || !strcmp(dest, o->me)) {
		out_fail(o, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	di = reg_find(l, dest);
	if (di < 0 && !reg_add(l, o, dest, sark, false))
		return;
	snprintf(l->pr_holder, sizeof(l->pr_holder), "%s", dest);
	if (p[17] & 0x02) /* UNREG */
		reg_remove(l, (unsigned)reg_find(l, o->me));
	l->aptpl = p[17] & 0x01;
	l->pr_gen++;
	o->changed = true;
}

static void pr_abort_done(struct cmd *c, int status)
{
	(void)status;
	scsi_good(c);
}

void pr_abort_wake(struct cmd *list)
{
	while (list) {
		struct cmd *n = list->next;
		cmd_requeue(list, pr_abort_done); /* on its own loop; drops the parking reference */
		list = n;
	}
}

void pr_exec_out(struct cmd *c, struct nexus *nx)
{
	struct lun *l = c->lun;
	uint8_t sa = c->cdb[1] & 0x1f, scope = c->cdb[2] >> 4, type = c->cdb[2] & 0x0f;
	uint32_t plen = get_be32(c->cdb + 5);
	struct pr_out o = { .c = c, .nx = nx, .me = c->conn->sess->port };

	if (sa > PR_OUT_REGISTER_MOVE) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_CDB);
		return;
	}
	if (sa == PR_OUT_REGISTER_MOVE ? plen < 24 || c->received < plen ||
						 24ull + get_be32(c->buf + 20) > plen
				       : plen != 24 || c->received < 24) {
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_PARAM_LIST_LENGTH);
		return;
	}
	const uint8_t *p = c->buf;
	uint64_t rk = get_be64(p), sark = get_be64(p + 8);
	uint8_t pflags = p[20];
	if (sa != PR_OUT_REGISTER_MOVE && (pflags & 0x08)) { /* SPEC_I_PT: not supported */
		scsi_fail(c, SK_ILLEGAL_REQUEST, ASC_INVALID_FIELD_PARAM);
		return;
	}
	pthread_mutex_lock(&l->lock);
	o.ri = reg_find(l, o.me);
	/* every service action but the two REGISTERs needs the issuer's key */
	if (sa != PR_OUT_REGISTER && sa != PR_OUT_REGISTER_IGNORE &&
	    (o.ri < 0 || l->regs[o.ri].key != rk)) {
		o.conflict = true;
	} else if (l->info.fencing && !fence_check_out(l, &o, sa, sark)) {
		/* refused by the floor: o says how */
	} else {
		switch (sa) {
		case PR_OUT_REGISTER:
		case PR_OUT_REGISTER_IGNORE:
			pr_register(l, &o, sa, rk, sark, pflags);
			break;
		case PR_OUT_RESERVE:
			pr_reserve(l, &o, scope, type);
			break;
		case PR_OUT_RELEASE:
			pr_release(l, &o, scope, type);
			break;
		case PR_OUT_CLEAR:
			pr_clear(l, &o);
			break;
		case PR_OUT_PREEMPT:
		case PR_OUT_PREEMPT_ABORT:
			pr_preempt(l, &o, sa, scope, type, sark);
			break;
		case PR_OUT_REGISTER_MOVE:
			pr_register_move(l, &o, sark);
			break;
		}
	}
	if (o.changed)
		pr_persist(l);
	if (l->info.fencing && o.changed && sark && !o.conflict && !o.key &&
	    (sa == PR_OUT_REGISTER || sa == PR_OUT_REGISTER_IGNORE)) {
		/* the fencing point: nothing of another nexus may land after our GOOD */
		fence_others(l, o.me);
		o.park = l->fenced_writes > 0;
	}
	if (o.park) {
		c->refs++; /* pr_abort_wake() requeues it */
		c->next = l->abort_waiters;
		l->abort_waiters = c;
	}
	pthread_mutex_unlock(&l->lock);
	if (o.park)
		return;
	if (o.conflict) {
		c->status = SCSI_STATUS_RESERVATION_CONFLICT;
		cmd_complete(c);
	} else if (o.key) {
		scsi_fail(c, o.key, o.asc);
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
		b[2] = 0x10 | 0x04 | 0x01;      /* CRH, ATP_C, PTPL_C */
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
			if (l->regs[i].all_tg_pt)
				d[12] |= 0x02;
			if (pr_is_holder(l, port)) {
				d[12] |= 0x01;
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
