/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness over the target's receive path: PDU framing, login
 * negotiation (including CHAP) and the full-feature phase with SCSI command
 * execution against a RAM LUN.
 *
 * The engine's sources are included so the harness can drive one connection
 * synchronously without loop threads: the input is written into a socketpair
 * as the initiator's byte stream, conn_rx() parses it, completions and
 * transmit queues are drained inline. The first input byte picks the mode:
 * odd starts at login (CHAP required when bit 1 is set), even starts with a
 * session already in full-feature phase (digests per bits 2 and 3).
 * Invariant checked: no crash, no leak, no hang, whatever the bytes.
 */
#include "dataplane/iscsi/conn.c"
#include "dataplane/iscsi/target.c"
#include "dataplane/iscsi/task.c"
#include "dataplane/iscsi/login.c"
#include "dataplane/iscsi/scsi.c"
#include "dataplane/iscsi/sbc.c"
#include "dataplane/iscsi/spc.c"
#include "dataplane/iscsi/spc_pr.c"
#include "dataplane/iscsi/lun_file.c"
#include "dataplane/rangelock/rangelock.c"

#define FUZZ_IQN "iqn.2026-01.io.tessera:fuzz"

static struct ts_iscsi_server *g_srv;

static void setup(void)
{
	ts_log_set_level(TS_LOG_ERROR);
	g_srv = ts_calloc(1, sizeof(*g_srv));
	pthread_mutex_init(&g_srv->lock, NULL);
	g_srv->next_tsih = 1;
	struct loop *lp = &g_srv->loops[0];
	lp->srv = g_srv;
	lp->epfd = epoll_create1(EPOLL_CLOEXEC);
	lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	lp->lfd = -1;
	struct ts_iscsi_target_opts to = { .iqn = FUZZ_IQN, .chap_user = "u", .chap_secret = "secretsecret" };
	ts_iscsi_target_add(g_srv, &to);
	struct ts_iscsi_file_lun *fl;
	ts_iscsi_file_lun_create(NULL, 1 << 20, 0, &fl);
	struct ts_iscsi_lun_info info = { .size = 1 << 20, .block_size = 512, .thin = true };
	ts_iscsi_lun_add(g_srv, FUZZ_IQN, 0, ts_iscsi_file_lun_ops(), fl, &info);
}

static void drain(int peer, struct loop *lp)
{
	char sink[65536];
	loop_drain_done(lp);
	loop_flush_dirty(lp);
	while (recv(peer, sink, sizeof(sink), MSG_DONTWAIT) > 0)
		;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (!g_srv)
		setup();
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	data++;
	size--;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		return 0;
	int big = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	struct loop *lp = &g_srv->loops[0];
	struct conn *c = ts_calloc(1, sizeof(*c));
	c->in = ts_malloc(CONN_INBUF);
	c->fd = sv[0];
	c->loop = lp;
	c->state = CONN_LOGIN;
	c->active.anext = c->active.aprev = &c->active;
	c->p.max_send_dsl = 8192;
	c->p.max_burst = 262144;
	c->p.first_burst = 65536;
	c->next_ttt = 1;
	snprintf(c->local_addr, sizeof(c->local_addr), "127.0.0.1:3260");
	rx_expect(c, RX_BHS, c->bhs, ISCSI_BHS_LEN);
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
	epoll_ctl(lp->epfd, EPOLL_CTL_ADD, c->fd, &ev);
	c->next = lp->conns;
	if (lp->conns)
		lp->conns->prev = c;
	lp->conns = c;

	if (!(mode & 1)) {
		/* start in full-feature phase with a session on the fuzz target */
		struct login *lg = &c->lg;
		snprintf(lg->iname, sizeof(lg->iname), "iqn.fuzz:init");
		pthread_mutex_lock(&g_srv->lock);
		lg->tgt = g_srv->targets;
		atomic_fetch_add(&lg->tgt->refs, 1);
		pthread_mutex_unlock(&g_srv->lock);
		if (session_start(c) == 0) {
			c->state = CONN_FULL;
			c->p.initial_r2t = mode & 0x10;
			c->p.immediate_data = true;
			c->p.hdigest = mode & 0x04;
			c->p.ddigest = mode & 0x08;
			c->p.max_r2t = 1;
			c->sess->expcmdsn = 0;
		}
	}
	/* feed the stream in slices so partial reads are exercised */
	size_t off = 0;
	bool closed = false; /* conn_close() may free c */
	for (int rounds = 0; off < size && !closed && rounds < 4096; rounds++) {
		size_t n = TS_MIN(size - off, (size_t)(mode & 0x20 ? 7 : 65536));
		ssize_t w = send(sv[1], data + off, n, MSG_NOSIGNAL);
		if (w <= 0)
			break;
		off += (size_t)w;
		int rc = conn_rx(c);
		if (rc < 0) {
			closed = true;
			if (c->state == CONN_DEAD)
				conn_maybe_free(c);
			else
				conn_close(c);
		} else {
			drain(sv[1], lp);
		}
	}
	if (!closed)
		conn_close(c);
	for (int i = 0; i < 1000 && lp->conns; i++)
		drain(sv[1], lp);
	close(sv[1]);
	return 0;
}
