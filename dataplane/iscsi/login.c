/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Login phase and text negotiation (RFC 7143 sections 6, 12, 13).
 *
 * A connection starts in CONN_LOGIN and walks the stages the initiator asks
 * for: security (AuthMethod, CHAP), operational (digests, burst sizes, R2T
 * policy) and full feature. Keys arrive as "key=value\0" pairs; every
 * negotiated key gets an answer, unknown keys get NotUnderstood, and the
 * values only take effect when the final login response (T bit, NSG=3) is
 * sent. The target of a normal session is fixed by the first login PDU's
 * TargetName and held by reference for the session's life.
 *
 * CHAP (RFC 1994 with MD5, as profiled by RFC 7143 12.1.3): the target sends
 * CHAP_A/CHAP_I/CHAP_C, the initiator answers CHAP_N/CHAP_R and may add its
 * own CHAP_I/CHAP_C to ask the target to authenticate itself (mutual CHAP);
 * the target refuses a challenge equal to its own (reflection).
 *
 * Any malformed login (wrong opcode, stage, missing InitiatorName, unknown
 * target, failed authentication) gets a login response with an error status
 * and the connection is closed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/evp.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

#define OUR_MAX_BURST (1u << 20)
#define OUR_FIRST_BURST 262144u
#define RSP_MAX 8192

struct kvout {
	char buf[RSP_MAX];
	size_t len;
	bool overflow;
};

static void kv_add(struct kvout *o, const char *k, const char *v)
{
	int n = snprintf(o->buf + o->len, sizeof(o->buf) - o->len, "%s=%s", k, v);
	if (n < 0 || (size_t)n + 1 > sizeof(o->buf) - o->len) {
		o->overflow = true;
		return;
	}
	o->len += (size_t)n + 1;
}

static void kv_addu(struct kvout *o, const char *k, unsigned long v)
{
	char b[24];
	snprintf(b, sizeof(b), "%lu", v);
	kv_add(o, k, b);
}

int chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len, uint8_t out[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	int ok;
	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) && EVP_DigestUpdate(ctx, &id, 1) &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) && EVP_DigestUpdate(ctx, chal, chal_len) &&
	     EVP_DigestFinal_ex(ctx, out, &n);
	EVP_MD_CTX_free(ctx);
	return ok && n == 16 ? 0 : -EIO;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* "0x..." -> bytes. Returns length or -EINVAL. */
static int parse_hex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0, l;
	if (strncasecmp(s, "0x", 2) != 0)
		return -EINVAL;
	s += 2;
	l = strlen(s);
	if (l == 0 || l % 2 || l / 2 > cap)
		return -EINVAL;
	for (size_t i = 0; i < l; i += 2) {
		int a = hexval(s[i]), b = hexval(s[i + 1]);
		if (a < 0 || b < 0)
			return -EINVAL;
		out[n++] = (uint8_t)(a << 4 | b);
	}
	return (int)n;
}

static void to_hex(const uint8_t *b, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < n; i++) {
		out[2 + 2 * i] = d[b[i] >> 4];
		out[3 + 2 * i] = d[b[i] & 15];
	}
	out[2 + 2 * n] = 0;
}

static bool list_has(const char *list, const char *want)
{
	size_t wl = strlen(want);
	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == wl && strncasecmp(p, want, l) == 0)
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

static bool parse_num(const char *v, unsigned long lo, unsigned long hi, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long x = strtoul(v, &end, 0);
	if (errno || end == v || *end || x < lo || x > hi)
		return false;
	*out = x;
	return true;
}

void login_release(struct login *lg)
{
	target_put(lg->tgt);
	lg->tgt = NULL;
}

struct chap_in {
	const char *a, *n, *r, *i, *c;
};

/* Negotiate one operational key. Returns false on an invalid value. */
static bool negotiate_key(struct conn *c, struct kvout *o, const char *k, const char *v)
{
	struct params *p = &c->lg.p;
	unsigned long x;

	if (!strcmp(k, "HeaderDigest") || !strcmp(k, "DataDigest")) {
		const char *pick = NULL;
		for (const char *s = v; *s;) {
			const char *e = strchr(s, ',');
			size_t l = e ? (size_t)(e - s) : strlen(s);
			if (l == 6 && !strncasecmp(s, "CRC32C", 6)) { pick = "CRC32C"; break; }
			if (l == 4 && !strncasecmp(s, "None", 4)) { pick = "None"; break; }
			if (!e)
				break;
			s = e + 1;
		}
		if (!pick) {
			kv_add(o, k, "Reject");
			return true;
		}
		bool on = pick[0] == 'C';
		if (k[0] == 'H')
			p->hdigest = on;
		else
			p->ddigest = on;
		kv_add(o, k, pick);
	} else if (!strcmp(k, "MaxRecvDataSegmentLength")) {
		if (!parse_num(v, 512, 16777215, &x))
			return false;
		p->max_send_dsl = (uint32_t)x;
	} else if (!strcmp(k, "MaxBurstLength")) {
		if (!parse_num(v, 512, 16777215, &x))
			return false;
		p->max_burst = (uint32_t)TS_MIN(x, OUR_MAX_BURST);
		kv_addu(o, k, p->max_burst);
	} else if (!strcmp(k, "FirstBurstLength")) {
		if (!parse_num(v, 512, 16777215, &x))
			return false;
		p->first_burst = (uint32_t)TS_MIN(x, OUR_FIRST_BURST);
		kv_addu(o, k, p->first_burst);
	} else if (!strcmp(k, "InitialR2T")) {
		if (strcmp(v, "Yes") && strcmp(v, "No"))
			return false;
		p->initial_r2t = !strcmp(v, "Yes");
		kv_add(o, k, v);
	} else if (!strcmp(k, "ImmediateData")) {
		if (strcmp(v, "Yes") && strcmp(v, "No"))
			return false;
		p->immediate_data = !strcmp(v, "Yes");
		kv_add(o, k, v);
	} else if (!strcmp(k, "MaxOutstandingR2T")) {
		if (!parse_num(v, 1, 65535, &x))
			return false;
		p->max_r2t = 1;
		kv_add(o, k, "1");
	} else if (!strcmp(k, "MaxConnections")) {
		if (!parse_num(v, 1, 65535, &x))
			return false;
		kv_add(o, k, "1");
	} else if (!strcmp(k, "DataPDUInOrder") || !strcmp(k, "DataSequenceInOrder")) {
		kv_add(o, k, "Yes");
	} else if (!strcmp(k, "ErrorRecoveryLevel")) {
		if (!parse_num(v, 0, 2, &x))
			return false;
		kv_add(o, k, "0");
	} else if (!strcmp(k, "DefaultTime2Wait")) {
		if (!parse_num(v, 0, 3600, &x))
			return false;
		kv_addu(o, k, x);
	} else if (!strcmp(k, "DefaultTime2Retain")) {
		if (!parse_num(v, 0, 3600, &x))
			return false;
		kv_add(o, k, "0");
	} else if (!strcmp(k, "IFMarker") || !strcmp(k, "OFMarker")) {
		kv_add(o, k, "No");
	} else if (!strcmp(k, "OFMarkInt") || !strcmp(k, "IFMarkInt")) {
		kv_add(o, k, "Reject");
	} else if (!strcmp(k, "InitiatorAlias") || !strcmp(k, "TargetAlias") ||
		   !strcmp(k, "TargetPortalGroupTag")) {
		/* declarative, nothing to answer */
	} else {
		kv_add(o, k, "NotUnderstood");
	}
	return true;
}

static int send_login_rsp(struct conn *c, const uint8_t *req, uint8_t flags, uint16_t status,
			  const struct kvout *o)
{
	struct txpdu *t = tx_alloc(c);
	if (!t)
		return -ENOMEM;
	t->hdr[0] = ISCSI_OP_LOGIN_RSP;
	t->hdr[1] = flags;
	t->hdr[2] = 0;
	t->hdr[3] = 0;
	memcpy(t->hdr + ISCSI_LOGIN_OFF_ISID, req + ISCSI_LOGIN_OFF_ISID, 6);
	put_be16(t->hdr + ISCSI_LOGIN_OFF_TSIH, c->lg.tsih);
	put_be32(t->hdr + ISCSI_OFF_ITT, get_be32(req + ISCSI_OFF_ITT));
	put_be32(t->hdr + ISCSI_RSP_OFF_STATSN, c->statsn++);
	uint32_t cmdsn = get_be32(req + ISCSI_CMD_OFF_CMDSN);
	uint32_t exp = c->sess ? c->sess->expcmdsn : cmdsn;
	put_be32(t->hdr + ISCSI_RSP_OFF_EXPCMDSN, exp);
	put_be32(t->hdr + ISCSI_RSP_OFF_MAXCMDSN, exp + ISCSI_CMD_WINDOW - 1);
	t->hdr[ISCSI_LOGIN_OFF_STATUS] = (uint8_t)(status >> 8);
	t->hdr[ISCSI_LOGIN_OFF_STATUS + 1] = (uint8_t)status;
	if (o && o->len) {
		t->owned = ts_malloc(o->len);
		if (!t->owned) {
			ts_free(t);
			return -ENOMEM;
		}
		memcpy(t->owned, o->buf, o->len);
		tx_set_data(c, t, t->owned, (uint32_t)o->len);
	}
	tx_queue(c, t);
	return 0;
}

static int login_fail(struct conn *c, const uint8_t *req, uint16_t status)
{
	ts_log(TS_LOG_INFO, "iscsi", "login refused status=0x%04x initiator=%s", status, c->lg.iname);
	send_login_rsp(c, req, 0, status, NULL);
	return -EACCES;
}

/*
 * A login for a target this server does not serve: redirect it when the
 * server's redirect hook knows where the target is, else refuse it. Either
 * way the connection closes after the response (-EACCES), as RFC 7143 has the
 * initiator do after a redirect.
 */
static int login_redirect_or_fail(struct conn *c, const uint8_t *req, const char *tname,
				  struct kvout *o)
{
	struct ts_iscsi_server *srv = c->loop->srv;
	char addr[256], val[270];
	size_t n;

	if (!srv->redirect || srv->redirect(srv->redirect_ctx, tname, addr, sizeof(addr)))
		return login_fail(c, req, ISCSI_LOGIN_NOT_FOUND);
	n = strnlen(addr, sizeof(addr));
	/* host:port, printable, no separators the key syntax gives meaning to */
	if (n == 0 || n == sizeof(addr) || !strchr(addr, ':') || strpbrk(addr, ",= \t")) {
		ts_log(TS_LOG_WARN, "iscsi", "redirect hook gave a bad address for target=%s", tname);
		return login_fail(c, req, ISCSI_LOGIN_NOT_FOUND);
	}
	for (size_t i = 0; i < n; i++)
		if (addr[i] < 0x21 || addr[i] > 0x7e)
			return login_fail(c, req, ISCSI_LOGIN_NOT_FOUND);
	snprintf(val, sizeof(val), "%s,1", addr);
	o->len = 0;
	kv_add(o, "TargetAddress", val);
	ts_log(TS_LOG_INFO, "iscsi", "login redirected target=%s to=%s initiator=%s", tname, addr,
	       c->lg.iname);
	send_login_rsp(c, req, 0, ISCSI_LOGIN_MOVED_TEMP, o);
	return -EACCES;
}

/* Create the session when the login reaches full feature phase. */
static int session_start(struct conn *c)
{
	struct ts_iscsi_server *srv = c->loop->srv;
	struct session *s = ts_calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->conn = c;
	s->discovery = c->lg.discovery;
	s->tgt = c->lg.tgt;
	c->lg.tgt = NULL;
	memcpy(s->isid, c->lg.isid, 6);
	snprintf(s->iname, sizeof(s->iname), "%s", c->lg.iname);
	snprintf(s->port, sizeof(s->port), "%s,i,0x%02x%02x%02x%02x%02x%02x", s->iname, s->isid[0],
		 s->isid[1], s->isid[2], s->isid[3], s->isid[4], s->isid[5]);
	pthread_mutex_lock(&srv->lock);
	/* session reinstatement: same initiator port and target drops the old one */
	for (struct session *o = srv->sessions; o; o = o->next)
		if (!s->discovery && o->tgt == s->tgt && !strcmp(o->port, s->port) && o->conn)
			shutdown(o->conn->fd, SHUT_RDWR);
	s->tsih = srv->next_tsih++;
	if (!srv->next_tsih)
		srv->next_tsih = 1;
	s->next = srv->sessions;
	srv->sessions = s;
	pthread_mutex_unlock(&srv->lock);
	c->lg.tsih = s->tsih;
	c->sess = s;
	return 0;
}

static int do_chap(struct conn *c, const uint8_t *req, struct chap_in *ch, struct kvout *o, bool *fail)
{
	struct login *lg = &c->lg;
	const char *user, *secret, *muser, *msecret;
	if (lg->discovery) {
		user = c->loop->srv->disc_user;
		secret = c->loop->srv->disc_secret;
		muser = msecret = NULL;
	} else {
		user = lg->tgt->chap_user;
		secret = lg->tgt->chap_secret;
		muser = lg->tgt->mutual_user;
		msecret = lg->tgt->mutual_secret;
	}
	(void)req;
	if (lg->chap == 0) {
		if (!ch->a)
			return 0;
		if (!list_has(ch->a, "5")) {
			kv_add(o, "CHAP_A", "Reject");
			*fail = true;
			return 0;
		}
		uint8_t rnd[16];
		if (ts_uuid_generate(lg->chal) || ts_uuid_generate(rnd))
			return -EIO;
		lg->chap_id = rnd[0];
		char hex[40];
		to_hex(lg->chal, 16, hex);
		kv_add(o, "CHAP_A", "5");
		kv_addu(o, "CHAP_I", lg->chap_id);
		kv_add(o, "CHAP_C", hex);
		lg->chap = 1;
		return 0;
	}
	if (lg->chap == 1) {
		uint8_t r[16], want[16];
		if (!ch->n || !ch->r || !user || strcmp(ch->n, user) != 0 || parse_hex(ch->r, r, 16) != 16 ||
		    chap_md5(lg->chap_id, secret, lg->chal, 16, want) || memcmp(r, want, 16) != 0) {
			*fail = true;
			return 0;
		}
		if (ch->i || ch->c) {
			uint8_t chal[1024];
			unsigned long id;
			int cl;
			if (!ch->i || !ch->c || !muser || !parse_num(ch->i, 0, 255, &id) ||
			    (cl = parse_hex(ch->c, chal, sizeof(chal))) <= 0 ||
			    ((size_t)cl == 16 && memcmp(chal, lg->chal, 16) == 0)) {
				*fail = true;
				return 0;
			}
			uint8_t mr[16];
			char hex[40];
			if (chap_md5((uint8_t)id, msecret, chal, (size_t)cl, mr))
				return -EIO;
			to_hex(mr, 16, hex);
			kv_add(o, "CHAP_N", muser);
			kv_add(o, "CHAP_R", hex);
		}
		lg->chap = 2;
		lg->auth_ok = true;
	}
	return 0;
}

int login_handle(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	struct login *lg = &c->lg;
	struct kvout *o;
	struct chap_in ch = { 0 };
	const char *auth_method = NULL;
	uint8_t b1 = bhs[1];
	int csg = (int)ISCSI_LOGIN_CSG(b1), nsg = (int)ISCSI_LOGIN_NSG(b1);
	bool transit = b1 & ISCSI_LOGIN_T, fail = false, first = !lg->started;
	int rc = 0;

	if (iscsi_bhs_op(bhs) != ISCSI_OP_LOGIN_REQ)
		return -EPROTO;
	if ((b1 & ISCSI_LOGIN_C) || bhs[3] > 0 || csg == 2 || csg == 3 ||
	    (transit && (nsg == 2 || nsg <= csg)))
		return login_fail(c, bhs, ISCSI_LOGIN_INVALID_REQ);
	o = ts_calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	if (first) {
		lg->started = true;
		lg->stage = csg;
		memcpy(lg->isid, bhs + ISCSI_LOGIN_OFF_ISID, 6);
		lg->p.max_send_dsl = 8192;
		lg->p.first_burst = 65536;
		lg->p.max_burst = 262144;
		lg->p.initial_r2t = true;
		lg->p.immediate_data = true;
		lg->p.max_r2t = 1;
		if (get_be16(bhs + ISCSI_LOGIN_OFF_TSIH) != 0) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_NO_SESSION);
			goto out;
		}
	} else if (csg != lg->stage || memcmp(lg->isid, bhs + ISCSI_LOGIN_OFF_ISID, 6)) {
		rc = login_fail(c, bhs, ISCSI_LOGIN_INVALID_REQ);
		goto out;
	}

	/* walk the keys */
	const char *tname = NULL, *stype = NULL;
	for (uint32_t off = 0; off < dsl;) {
		const char *kv = (const char *)data + off;
		size_t l = strnlen(kv, dsl - off);
		if (l == dsl - off) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_INVALID_REQ);
			goto out;
		}
		off += (uint32_t)l + 1;
		if (l == 0)
			continue;
		char *eq = strchr(kv, '=');
		if (!eq || eq == kv || (size_t)(eq - kv) > 63) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_INVALID_REQ);
			goto out;
		}
		char k[64];
		memcpy(k, kv, (size_t)(eq - kv));
		k[eq - kv] = 0;
		const char *v = eq + 1;
		if (!strcmp(k, "InitiatorName")) {
			if (strlen(v) >= ISCSI_NAME_MAX || !*v) {
				rc = login_fail(c, bhs, ISCSI_LOGIN_INIT_ERR);
				goto out;
			}
			snprintf(lg->iname, sizeof(lg->iname), "%s", v);
		} else if (!strcmp(k, "TargetName")) {
			tname = v;
		} else if (!strcmp(k, "SessionType")) {
			stype = v;
		} else if (!strcmp(k, "AuthMethod")) {
			auth_method = v;
		} else if (!strcmp(k, "CHAP_A")) {
			ch.a = v;
		} else if (!strcmp(k, "CHAP_N")) {
			ch.n = v;
		} else if (!strcmp(k, "CHAP_R")) {
			ch.r = v;
		} else if (!strcmp(k, "CHAP_I")) {
			ch.i = v;
		} else if (!strcmp(k, "CHAP_C")) {
			ch.c = v;
		} else if (csg == ISCSI_STAGE_OPERATIONAL || csg == ISCSI_STAGE_SECURITY) {
			if (!negotiate_key(c, o, k, v)) {
				rc = login_fail(c, bhs, ISCSI_LOGIN_INIT_ERR);
				goto out;
			}
		}
	}

	if (first) {
		if (!lg->iname[0]) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_MISSING_PARAM);
			goto out;
		}
		lg->discovery = stype && !strcmp(stype, "Discovery");
		if (stype && !lg->discovery && strcmp(stype, "Normal")) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_INIT_ERR);
			goto out;
		}
		if (!lg->discovery) {
			struct ts_iscsi_server *srv = c->loop->srv;
			if (!tname) {
				rc = login_fail(c, bhs, ISCSI_LOGIN_MISSING_PARAM);
				goto out;
			}
			pthread_mutex_lock(&srv->lock);
			for (struct target *t = srv->targets; t; t = t->next)
				if (!strcasecmp(t->iqn, tname) && !t->removed) {
					lg->tgt = t;
					atomic_fetch_add(&t->refs, 1);
					break;
				}
			pthread_mutex_unlock(&srv->lock);
			if (!lg->tgt) {
				rc = login_redirect_or_fail(c, bhs, tname, o);
				goto out;
			}
			lg->need_chap = lg->tgt->chap_user != NULL;
			kv_add(o, "TargetPortalGroupTag", "1");
			if (lg->tgt->alias)
				kv_add(o, "TargetAlias", lg->tgt->alias);
		} else {
			lg->need_chap = c->loop->srv->disc_user != NULL;
		}
		lg->auth_ok = !lg->need_chap;
		if (csg != ISCSI_STAGE_SECURITY && lg->need_chap) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_AUTH_FAILED);
			goto out;
		}
	}

	if (csg == ISCSI_STAGE_SECURITY) {
		if (auth_method) {
			if (lg->need_chap) {
				if (!list_has(auth_method, "CHAP")) {
					rc = login_fail(c, bhs, ISCSI_LOGIN_AUTH_FAILED);
					goto out;
				}
				kv_add(o, "AuthMethod", "CHAP");
			} else if (list_has(auth_method, "None")) {
				kv_add(o, "AuthMethod", "None");
			} else {
				kv_add(o, "AuthMethod", "Reject");
			}
		}
		if (lg->need_chap) {
			rc = do_chap(c, bhs, &ch, o, &fail);
			if (rc)
				goto out;
			if (fail) {
				rc = login_fail(c, bhs, ISCSI_LOGIN_AUTH_FAILED);
				goto out;
			}
		}
	}

	if (transit && !lg->auth_ok)
		transit = false; /* stay in security negotiation until CHAP completes */
	uint8_t flags = (uint8_t)(csg << 2);
	if (transit)
		flags |= ISCSI_LOGIN_T | (uint8_t)nsg;
	if (transit && nsg == ISCSI_STAGE_FULL) {
		kv_addu(o, "MaxRecvDataSegmentLength", ISCSI_OUR_MAX_RECV_DSL);
		rc = session_start(c);
		if (rc) {
			rc = login_fail(c, bhs, ISCSI_LOGIN_NO_RESOURCES);
			goto out;
		}
		c->sess->expcmdsn = get_be32(bhs + ISCSI_CMD_OFF_CMDSN);
		rc = send_login_rsp(c, bhs, flags, ISCSI_LOGIN_SUCCESS, o);
		/* digests and sizes apply from the first full-feature PDU on */
		c->p = lg->p;
		if (!c->p.first_burst || c->p.first_burst > c->p.max_burst)
			c->p.first_burst = c->p.max_burst;
		c->state = CONN_FULL;
		ts_log(TS_LOG_DEBUG, "iscsi", "session up initiator=%s discovery=%d", lg->iname,
		       (int)lg->discovery);
		goto out;
	}
	if (transit && nsg == ISCSI_STAGE_OPERATIONAL && csg == ISCSI_STAGE_SECURITY)
		kv_addu(o, "MaxRecvDataSegmentLength", ISCSI_OUR_MAX_RECV_DSL);
	if (transit)
		lg->stage = nsg;
	rc = send_login_rsp(c, bhs, flags, ISCSI_LOGIN_SUCCESS, o);
out:
	ts_free(o);
	return rc;
}

int text_handle(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl)
{
	struct kvout *o = ts_calloc(1, sizeof(*o));
	struct ts_iscsi_server *srv = c->loop->srv;
	int rc = 0;
	if (!o)
		return -ENOMEM;
	for (uint32_t off = 0; off < dsl;) {
		const char *kv = (const char *)data + off;
		size_t l = strnlen(kv, dsl - off);
		if (l == dsl - off)
			break; /* unterminated pair */
		off += (uint32_t)l + 1;
		if (!strncmp(kv, "SendTargets=", 12)) {
			const char *v = kv + 12;
			char addr[80];
			snprintf(addr, sizeof(addr), "%s,1", c->local_addr);
			pthread_mutex_lock(&srv->lock);
			for (struct target *t = srv->targets; t; t = t->next) {
				if (t->removed)
					continue;
				if (!c->sess->discovery && t != c->sess->tgt)
					continue;
				if (strcmp(v, "All") && *v && strcasecmp(v, t->iqn))
					continue;
				kv_add(o, "TargetName", t->iqn);
				kv_add(o, "TargetAddress", addr);
			}
			pthread_mutex_unlock(&srv->lock);
		} else if (l) {
			char k[64];
			const char *eq = memchr(kv, '=', l);
			size_t kl = eq ? (size_t)(eq - kv) : l;
			if (kl > 63)
				kl = 63;
			memcpy(k, kv, kl);
			k[kl] = 0;
			kv_add(o, k, "NotUnderstood");
		}
	}
	struct txpdu *t = tx_alloc(c);
	if (!t) {
		rc = -ENOMEM;
		goto out;
	}
	t->hdr[0] = ISCSI_OP_TEXT_RSP;
	t->hdr[1] = ISCSI_BHS_F;
	memcpy(t->hdr + ISCSI_OFF_LUN, bhs + ISCSI_OFF_LUN, 8);
	put_be32(t->hdr + ISCSI_OFF_ITT, get_be32(bhs + ISCSI_OFF_ITT));
	put_be32(t->hdr + ISCSI_DATA_OFF_TTT, ISCSI_RSVD_TAG);
	conn_fill_sn(c, t->hdr, true);
	size_t len = TS_MIN(o->len, (size_t)c->p.max_send_dsl);
	if (len) {
		t->owned = ts_malloc(len);
		if (!t->owned) {
			ts_free(t);
			rc = -ENOMEM;
			goto out;
		}
		memcpy(t->owned, o->buf, len);
		tx_set_data(c, t, t->owned, (uint32_t)len);
	}
	tx_queue(c, t);
out:
	ts_free(o);
	return rc;
}
