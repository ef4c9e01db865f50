/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The iSCSI target's event loops and connections: the server, its loop
 * threads, accepting and closing connections, PDU receive and transmit, the
 * command and tx pools, and the path by which provider completions come
 * back to their loop. What a PDU means in the full-feature phase is task.c;
 * the target/LUN registry is target.c; login and discovery are login.c; the
 * SCSI command sets are scsi.c, sbc.c, spc.c and spc_pr.c.
 *
 * Workload: many initiators, each with one connection per session and up to
 * ISCSI_CMD_WINDOW commands in flight, mostly 4 KiB reads and writes. The
 * server runs a fixed number of loop threads; each owns a listening socket
 * bound with SO_REUSEPORT to the same portal, so the kernel spreads
 * connections over the loops and a connection, its session and its commands
 * belong to exactly one thread for life. No locks on the per-command path
 * except the LUN mutex for SCSI state and in-flight write ranges.
 *
 * Provider IO completes on any thread: the callback pushes the command on
 * its loop's lock-free "done" stack and kicks the loop's eventfd; the loop
 * runs the command's continuation. A command holds a reference on its
 * connection (conn->ncmds) so a connection that dies with IO in flight is
 * freed only when the last completion has been drained.
 *
 * Receive: each connection reads into a 64 KiB staging buffer and parses
 * PDUs out of it (BHS, AHS + header digest, data + pad + data digest); large
 * data segments are received straight into the segment buffer. Transmit:
 * PDUs are queued per connection and written with one writev per batch at
 * the end of an epoll iteration. Commands, their buffers and tx descriptors
 * come from per-loop free lists, so steady-state IO does not allocate.
 *
 * Invariants: any framing error, digest error or protocol violation closes
 * the connection (error recovery level 0), which never affects other
 * connections. A connection is freed only when closed and with no command
 * left (conn_maybe_free()).
 *
 * THREAD SAFETY: a connection, its session, its commands and tx descriptors
 * are owned by its loop thread. The done stack is lock-free (any thread
 * pushes, the loop pops). srv->lock guards the target list and sessions;
 * lock order: srv->lock, then lun->lock. No lock is held across a provider
 * call or a socket write.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <isa-l.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi_priv.h"

#define LISTEN_TAG ((void *)1)
#define EVENT_TAG ((void *)2)

#define LISTEN_TAG ((void *)1)
#define EVENT_TAG ((void *)2)

static void conn_maybe_free(struct conn *c);
static void conn_mark_dirty(struct conn *c);

/* ------------------------------------------------------------------ */
/* digests                                                             */

static uint32_t crc32c(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
	uint32_t crc = crc32_iscsi((unsigned char *)a, (int)alen, 0xffffffffu);
	if (blen)
		crc = crc32_iscsi((unsigned char *)b, (int)blen, crc);
	return crc ^ 0xffffffffu;
}

static void put_digest(uint8_t *p, uint32_t crc)
{
	/* iSCSI sends CRC32C least significant byte first */
	p[0] = (uint8_t)crc; p[1] = (uint8_t)(crc >> 8); p[2] = (uint8_t)(crc >> 16); p[3] = (uint8_t)(crc >> 24);
}

static uint32_t get_digest(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}


/* ------------------------------------------------------------------ */
/* pools                                                               */

struct cmd *cmd_alloc(struct conn *c)
{
	struct loop *lp = c->loop;
	struct cmd *cmd = lp->cmd_free;
	uint8_t *buf = NULL, *buf2 = NULL;
	size_t cap = 0, cap2 = 0;

	if (cmd) {
		lp->cmd_free = cmd->next;
		lp->ncmd_free--;
		buf = cmd->buf; cap = cmd->cap;
		buf2 = cmd->buf2; cap2 = cmd->cap2;
		memset(cmd, 0, offsetof(struct cmd, io));
	} else {
		cmd = ts_calloc(1, sizeof(*cmd));
		if (!cmd)
			return NULL;
	}
	cmd->buf = buf; cmd->cap = cap;
	cmd->buf2 = buf2; cmd->cap2 = cap2;
	cmd->conn = c;
	cmd->loop = lp;
	cmd->refs = 1;
	c->ncmds++;
	return cmd;
}

int cmd_buf_reserve(struct cmd *c, size_t len)
{
	if (c->cap >= len && c->buf)
		return 0;
	ts_free(c->buf);
	c->cap = 0;
	c->buf = ts_aligned_alloc(4096, TS_MAX(TS_ALIGN_UP(len, 4096), 4096));
	if (!c->buf)
		return -ENOMEM;
	c->cap = TS_MAX(TS_ALIGN_UP(len, 4096), 4096);
	return 0;
}

int cmd_buf2_reserve(struct cmd *c, size_t len)
{
	if (c->cap2 >= len && c->buf2)
		return 0;
	ts_free(c->buf2);
	c->cap2 = 0;
	c->buf2 = ts_aligned_alloc(4096, TS_MAX(TS_ALIGN_UP(len, 4096), 4096));
	if (!c->buf2)
		return -ENOMEM;
	c->cap2 = TS_MAX(TS_ALIGN_UP(len, 4096), 4096);
	return 0;
}

void cmd_unhash(struct cmd *cmd)
{
	struct conn *c = cmd->conn;
	if (!cmd->hashed)
		return;
	struct cmd **pp = &c->hash[cmd->itt % ISCSI_CMD_HASH];
	while (*pp && *pp != cmd)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = cmd->hnext;
	cmd->aprev->anext = cmd->anext;
	cmd->anext->aprev = cmd->aprev;
	cmd->hashed = false;
}

void cmd_put(struct cmd *cmd)
{
	if (--cmd->refs > 0)
		return;
	struct conn *c = cmd->conn;
	struct loop *lp = cmd->loop;
	cmd_unhash(cmd);
	if (cmd->has_range)
		scsi_range_release(cmd);
	if (cmd->lun)
		lun_put(cmd->lun);
	cmd->lun = NULL;
	if (lp->ncmd_free < 512 && cmd->cap <= (1u << 20) && cmd->cap2 <= (1u << 20)) {
		cmd->next = lp->cmd_free;
		lp->cmd_free = cmd;
		lp->ncmd_free++;
	} else {
		ts_free(cmd->buf);
		ts_free(cmd->buf2);
		ts_free(cmd);
	}
	c->ncmds--;
	conn_maybe_free(c);
}

struct txpdu *tx_alloc(struct conn *c)
{
	struct loop *lp = c->loop;
	struct txpdu *t = lp->tx_free;
	if (t) {
		lp->tx_free = t->next;
		lp->ntx_free--;
		memset(t, 0, sizeof(*t));
	} else {
		t = ts_calloc(1, sizeof(*t));
	}
	if (t)
		t->hlen = ISCSI_BHS_LEN;
	return t;
}

void tx_release(struct loop *lp, struct txpdu *t)
{
	if (t->cmd)
		cmd_put(t->cmd);
	ts_free(t->owned);
	if (lp->ntx_free < 1024) {
		t->next = lp->tx_free;
		lp->tx_free = t;
		lp->ntx_free++;
	} else {
		ts_free(t);
	}
}

void tx_set_data(struct conn *c, struct txpdu *t, const uint8_t *data, uint32_t len)
{
	t->data = data;
	t->dlen = len;
	put_be24(t->hdr + ISCSI_OFF_DSL, len);
	t->tlen = (4 - (len & 3)) & 3;
	memset(t->tail, 0, sizeof(t->tail));
	if (len && c->p.ddigest) {
		uint32_t crc = crc32_iscsi((unsigned char *)data, (int)len, 0xffffffffu);
		if (t->tlen)
			crc = crc32_iscsi(t->tail, (int)t->tlen, crc);
		put_digest(t->tail + t->tlen, crc ^ 0xffffffffu);
		t->tlen += 4;
	}
}

void tx_queue(struct conn *c, struct txpdu *t)
{
	if (c->state == CONN_DEAD) {
		tx_release(c->loop, t);
		return;
	}
	if (c->p.hdigest) {
		put_digest(t->hdr + ISCSI_BHS_LEN, crc32c(t->hdr, ISCSI_BHS_LEN, NULL, 0));
		t->hlen = ISCSI_BHS_LEN + 4;
	}
	t->next = NULL;
	if (c->txt)
		c->txt->next = t;
	else
		c->txh = t;
	c->txt = t;
	conn_mark_dirty(c);
}

void conn_fill_sn(struct conn *c, uint8_t *hdr, bool advance)
{
	uint32_t exp = c->sess ? c->sess->expcmdsn : 0;
	put_be32(hdr + ISCSI_RSP_OFF_STATSN, c->statsn);
	if (advance)
		c->statsn++;
	put_be32(hdr + ISCSI_RSP_OFF_EXPCMDSN, exp);
	put_be32(hdr + ISCSI_RSP_OFF_MAXCMDSN, exp + ISCSI_CMD_WINDOW - 1);
}

/* Write out as much of the tx queue as the socket takes. */
int conn_flush(struct conn *c)
{
	while (c->txh) {
		struct iovec iov[64];
		int n = 0;
		size_t skip = c->tx_off;
		for (struct txpdu *t = c->txh; t && n < 61; t = t->next) {
			struct iovec parts[3] = {
				{ t->hdr, t->hlen }, { (void *)t->data, t->dlen }, { t->tail, t->tlen } };
			for (int i = 0; i < 3; i++) {
				if (!parts[i].iov_len)
					continue;
				if (skip >= parts[i].iov_len) {
					skip -= parts[i].iov_len;
					continue;
				}
				iov[n].iov_base = (uint8_t *)parts[i].iov_base + skip;
				iov[n].iov_len = parts[i].iov_len - skip;
				skip = 0;
				n++;
			}
		}
		ssize_t w = writev(c->fd, iov, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return -errno;
		}
		size_t left = (size_t)w + c->tx_off;
		while (c->txh) {
			struct txpdu *t = c->txh;
			size_t tot = t->hlen + t->dlen + t->tlen;
			if (left < tot)
				break;
			left -= tot;
			c->txh = t->next;
			if (!c->txh)
				c->txt = NULL;
			tx_release(c->loop, t);
		}
		c->tx_off = left;
	}
	bool want = c->txh != NULL;
	if (want != c->pollout) {
		struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c };
		epoll_ctl(c->loop->epfd, EPOLL_CTL_MOD, c->fd, &ev);
		c->pollout = want;
	}
	return 0;
}

static void conn_mark_dirty(struct conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dnext = NULL;
	c->dnext = c->loop->tx_dirty;
	c->loop->tx_dirty = c;
}

/* ------------------------------------------------------------------ */
/* provider IO                                                         */

/* The loop this thread runs, if any: completions on it need no eventfd kick. */
static _Thread_local struct loop *tl_loop;

static void cmd_io_done(struct ts_iscsi_lun_io *io, int status)
{
	struct cmd *cmd = io->cb_arg;
	struct loop *lp = cmd->loop;
	struct cmd *head;

	cmd->io_status = status;
	head = atomic_load(&lp->done);
	do {
		cmd->next = head;
	} while (!atomic_compare_exchange_weak(&lp->done, &head, cmd));
	/* inline completion on the loop itself: it drains the stack after this event batch */
	if (!head && tl_loop != lp) {
		uint64_t one = 1;
		ssize_t w = write(lp->evfd, &one, sizeof(one));
		(void)w;
	}
}

void cmd_requeue(struct cmd *c, cmd_cont cont)
{
	c->cont = cont;
	c->io.cb_arg = c;
	cmd_io_done(&c->io, 0);
}

void cmd_submit(struct cmd *c, int (*op)(void *, struct ts_iscsi_lun_io *), uint64_t off, uint64_t len,
		void *buf, uint32_t flags, cmd_cont cont)
{
	int rc;
	c->io.offset = off;
	c->io.len = len;
	c->io.buf = buf;
	c->io.flags = flags;
	c->io.cb = cmd_io_done;
	c->io.cb_arg = c;
	c->cont = cont;
	c->refs++;
	rc = op(c->lun->ctx, &c->io);
	if (rc) {
		c->refs--;
		cont(c, rc);
	}
}

static void loop_drain_list(struct cmd *list)
{
	struct cmd *rev = NULL;
	while (list) {
		struct cmd *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct cmd *c = rev;
		rev = rev->next;
		c->next = NULL;
		if (c->aborted || c->conn->state == CONN_DEAD) {
			/* nobody wants the answer: drop the command's own reference too */
			if (c->state != CMD_DONE) {
				c->state = CMD_DONE;
				cmd_put(c);
			}
			cmd_put(c);
			continue;
		}
		c->cont(c, c->io_status);
		cmd_put(c);
	}
}

static void loop_drain_done(struct loop *lp)
{
	/* continuations may complete more IO inline: drain until the stack stays empty */
	for (int round = 0; round < 1024; round++) {
		struct cmd *list = atomic_exchange(&lp->done, NULL);
		if (!list)
			return;
		loop_drain_list(list);
	}
	/* still busy after many rounds: make sure the loop comes back soon */
	uint64_t one = 1;
	ssize_t w = write(lp->evfd, &one, sizeof(one));
	(void)w;
}


/* ------------------------------------------------------------------ */
/* receive                                                             */

static void rx_expect(struct conn *c, enum rx_phase ph, uint8_t *dst, uint32_t need)
{
	c->phase = ph;
	c->dst = dst;
	c->need = need;
	c->got = 0;
}

static int rx_dispatch(struct conn *c)
{
	uint32_t dsl = c->dsl;
	if (dsl && c->p.ddigest && c->state == CONN_FULL) {
		uint32_t padded = TS_ALIGN_UP(dsl, 4);
		if (crc32c(c->rxbuf, padded, NULL, 0) != get_digest(c->rxbuf + padded))
			return -EBADMSG;
	}
	int rc = c->state == CONN_LOGIN ? login_handle(c, c->bhs, c->rxbuf, dsl)
					: dispatch_full(c, c->bhs, c->rxbuf, dsl);
	rx_expect(c, RX_BHS, c->bhs, ISCSI_BHS_LEN);
	return rc;
}

static int rx_step(struct conn *c)
{
	switch (c->phase) {
	case RX_BHS: {
		uint32_t limit = c->state == CONN_LOGIN ? ISCSI_LOGIN_MAX_DSL : ISCSI_MAX_DSL_ACCEPT;
		c->dsl = iscsi_bhs_dsl(c->bhs);
		c->ahslen = iscsi_bhs_ahs(c->bhs);
		if (c->dsl > limit)
			return -EMSGSIZE;
		uint32_t n = c->ahslen + (c->p.hdigest && c->state == CONN_FULL ? 4 : 0);
		if (n) {
			rx_expect(c, RX_AHS, c->ahs, n);
			return 0;
		}
	}
	/* fall through */
	case RX_AHS:
		if (c->phase == RX_AHS && c->p.hdigest && c->state == CONN_FULL) {
			uint32_t crc = crc32c(c->bhs, ISCSI_BHS_LEN, c->ahs, c->ahslen);
			if (crc != get_digest(c->ahs + c->ahslen))
				return -EBADMSG;
		}
		if (c->dsl) {
			uint32_t n = TS_ALIGN_UP(c->dsl, 4) + (c->p.ddigest && c->state == CONN_FULL ? 4 : 0);
			if (n > c->rxcap) {
				uint8_t *b = ts_aligned_alloc(64, TS_ALIGN_UP(n, 4096));
				if (!b)
					return -ENOMEM;
				ts_free(c->rxbuf);
				c->rxbuf = b;
				c->rxcap = TS_ALIGN_UP(n, 4096);
			}
			rx_expect(c, RX_DATA, c->rxbuf, n);
			return 0;
		}
		return rx_dispatch(c);
	case RX_DATA:
		return rx_dispatch(c);
	}
	return -EPROTO;
}

static int conn_rx_inner(struct conn *c);

/*
 * Read and process what the socket has. <0: close the connection. A handler
 * may close c on an allocation failure; the extra reference keeps c valid
 * until we return, and a dead connection reports -ECONNRESET.
 */
static int conn_rx(struct conn *c)
{
	c->ncmds++;
	int rc = conn_rx_inner(c);
	c->ncmds--;
	if (c->state == CONN_DEAD)
		return -ECONNRESET;
	return rc;
}

static int conn_rx_inner(struct conn *c)
{
	for (int iter = 0; iter < 256 && c->state != CONN_DEAD; iter++) {
		if (c->in_pos == c->in_len) {
			ssize_t n;
			c->in_pos = c->in_len = 0;
			if (c->need - c->got >= 16384) {
				n = recv(c->fd, c->dst + c->got, c->need - c->got, 0);
				if (n == 0)
					return -ECONNRESET;
				if (n < 0)
					return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
				c->got += (uint32_t)n;
				if (c->got == c->need) {
					int rc = rx_step(c);
					if (rc)
						return rc;
				}
				continue;
			}
			n = recv(c->fd, c->in, CONN_INBUF, 0);
			if (n == 0)
				return -ECONNRESET;
			if (n < 0)
				return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
			c->in_len = (uint32_t)n;
		}
		while (c->in_pos < c->in_len && c->state != CONN_DEAD) {
			uint32_t take = TS_MIN(c->in_len - c->in_pos, c->need - c->got);
			memcpy(c->dst + c->got, c->in + c->in_pos, take);
			c->in_pos += take;
			c->got += take;
			if (c->got == c->need) {
				int rc = rx_step(c);
				if (rc)
					return rc;
			}
		}
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* connection lifetime                                                 */

static void session_end(struct conn *c)
{
	struct session *s = c->sess;
	struct ts_iscsi_server *srv = c->loop->srv;
	if (!s)
		return;
	pthread_mutex_lock(&srv->lock);
	for (struct session **pp = &srv->sessions; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	pthread_mutex_unlock(&srv->lock);
	scsi_nexus_lost(s);
	target_put(s->tgt);
	ts_free(s);
	c->sess = NULL;
}

void conn_close(struct conn *c)
{
	if (c->state == CONN_DEAD)
		return;
	c->state = CONN_DEAD;
	c->ncmds++; /* keep c alive while aborting */
	epoll_ctl(c->loop->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	for (struct cmd *cmd = c->active.anext, *n; cmd != &c->active; cmd = n) {
		n = cmd->anext;
		abort_cmd(cmd);
	}
	while (c->txh) {
		struct txpdu *t = c->txh;
		c->txh = t->next;
		tx_release(c->loop, t);
	}
	c->txt = NULL;
	/* the session stays until the commands referring to it are gone */
	c->ncmds--;
	conn_maybe_free(c);
}

static void conn_maybe_free(struct conn *c)
{
	if (c->state != CONN_DEAD || c->ncmds > 0 || c->dirty)
		return;
	session_end(c);
	login_release(&c->lg);
	if (c->prev)
		c->prev->next = c->next;
	else
		c->loop->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	close(c->fd);
	ts_free(c->rxbuf);
	ts_free(c->in);
	ts_free(c);
}

static void loop_accept(struct loop *lp)
{
	for (int i = 0; i < 16; i++) {
		int fd = accept4(lp->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = ts_calloc(1, sizeof(*c));
		uint8_t *in = ts_malloc(CONN_INBUF);
		if (!c || !in) {
			ts_free(c);
			ts_free(in);
			close(fd);
			continue;
		}
		c->in = in;
		c->fd = fd;
		c->loop = lp;
		c->state = CONN_LOGIN;
		c->active.anext = c->active.aprev = &c->active;
		c->p.max_send_dsl = 8192;
		c->p.max_burst = 262144;
		c->p.first_burst = 65536;
		c->next_ttt = 1;
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			char host[INET6_ADDRSTRLEN] = "";
			uint16_t port = 0;
			if (ss.ss_family == AF_INET) {
				struct sockaddr_in *a = (struct sockaddr_in *)&ss;
				inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
				port = ntohs(a->sin_port);
				snprintf(c->local_addr, sizeof(c->local_addr), "%s:%u", host, port);
			} else {
				struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
				inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
				port = ntohs(a->sin6_port);
				snprintf(c->local_addr, sizeof(c->local_addr), "[%s]:%u", host, port);
			}
		}
		rx_expect(c, RX_BHS, c->bhs, ISCSI_BHS_LEN);
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
		if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			ts_free(in);
			ts_free(c);
			continue;
		}
		c->next = lp->conns;
		if (lp->conns)
			lp->conns->prev = c;
		lp->conns = c;
	}
}

static void loop_flush_dirty(struct loop *lp)
{
	while (lp->tx_dirty) {
		struct conn *c = lp->tx_dirty;
		lp->tx_dirty = c->dnext;
		c->dirty = false;
		if (c->state != CONN_DEAD && conn_flush(c) < 0)
			conn_close(c);
		conn_maybe_free(c);
	}
}

static void *loop_main(void *arg)
{
	struct loop *lp = arg;
	struct epoll_event evs[64];

	tl_loop = lp;
	while (!atomic_load(&lp->stop)) {
		int n = epoll_wait(lp->epfd, evs, 64, 200);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == LISTEN_TAG) {
				loop_accept(lp);
			} else if (p == EVENT_TAG) {
				uint64_t v;
				ssize_t r = read(lp->evfd, &v, sizeof(v));
				(void)r;
				loop_drain_done(lp);
			} else {
				struct conn *c = p;
				if (c->state == CONN_DEAD)
					continue;
				if (evs[i].events & EPOLLOUT)
					conn_mark_dirty(c);
				if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
					int rc = conn_rx(c);
					if (rc < 0) {
						if (rc != -ECONNRESET)
							ts_log(TS_LOG_INFO, "iscsi", "closing connection err=%s",
							       ts_strerror(rc));
						/* send what is queued (a Reject, a logout response) first */
						if (c->state == CONN_DEAD) {
							conn_maybe_free(c);
							continue;
						}
						if (c->txh)
							conn_flush(c);
						conn_close(c);
					}
				}
			}
		}
		loop_drain_done(lp);
		loop_flush_dirty(lp);
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* server                                                              */

static int listen_socket(const char *addr, uint16_t port, uint16_t *bound)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	int fd, one = 1;
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		return -EINVAL;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		int e = -errno;
		close(fd);
		return e;
	}
	socklen_t sl = sizeof(sa);
	getsockname(fd, (struct sockaddr *)&sa, &sl);
	*bound = ntohs(sa.sin_port);
	return fd;
}

int ts_iscsi_server_create(const struct ts_iscsi_server_opts *o, struct ts_iscsi_server **out)
{
	struct ts_iscsi_server *srv;
	int rc = 0;
	unsigned n = o && o->threads ? o->threads : 1;
	const char *addr = o && o->addr ? o->addr : "0.0.0.0";
	uint16_t port = o ? o->port : 0;

	if (!out || n > ISCSI_MAX_LOOPS)
		return -EINVAL;
	srv = ts_calloc(1, sizeof(*srv));
	if (!srv)
		return -ENOMEM;
	pthread_mutex_init(&srv->lock, NULL);
	srv->next_tsih = 1;
	for (unsigned i = 0; i < ISCSI_MAX_LOOPS; i++)
		srv->loops[i].epfd = srv->loops[i].evfd = srv->loops[i].lfd = -1;
	if (o) {
		srv->redirect = o->redirect;
		srv->redirect_ctx = o->redirect_ctx;
	}
	if (o && o->discovery_chap_user && o->discovery_chap_secret) {
		srv->disc_user = ts_strdup(o->discovery_chap_user);
		srv->disc_secret = ts_strdup(o->discovery_chap_secret);
		if (!srv->disc_user || !srv->disc_secret) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	for (unsigned i = 0; i < n; i++) {
		struct loop *lp = &srv->loops[i];
		uint16_t bound = 0;
		lp->srv = srv;
		lp->lfd = listen_socket(addr, port, &bound);
		if (lp->lfd < 0) {
			rc = lp->lfd;
			lp->lfd = -1;
			goto fail;
		}
		port = bound;
		lp->epfd = epoll_create1(EPOLL_CLOEXEC);
		lp->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (lp->epfd < 0 || lp->evfd < 0) {
			rc = -errno;
			goto fail;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = LISTEN_TAG };
		epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->lfd, &ev);
		ev.data.ptr = EVENT_TAG;
		epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->evfd, &ev);
		srv->nloops = i + 1;
		if (pthread_create(&lp->thread, NULL, loop_main, lp)) {
			srv->nloops = i;
			rc = -EAGAIN;
			goto fail;
		}
	}
	srv->port = port;
	*out = srv;
	return 0;
fail:
	ts_iscsi_server_destroy(srv);
	return rc;
}

uint16_t ts_iscsi_server_port(const struct ts_iscsi_server *srv)
{
	return srv ? srv->port : 0;
}

void ts_iscsi_server_destroy(struct ts_iscsi_server *srv)
{
	if (!srv)
		return;
	for (unsigned i = 0; i < srv->nloops; i++)
		atomic_store(&srv->loops[i].stop, true);
	for (unsigned i = 0; i < srv->nloops; i++) {
		uint64_t one = 1;
		ssize_t w = write(srv->loops[i].evfd, &one, sizeof(one));
		(void)w;
		pthread_join(srv->loops[i].thread, NULL);
	}
	for (unsigned i = 0; i < ISCSI_MAX_LOOPS; i++) {
		struct loop *lp = &srv->loops[i];
		if (lp->lfd >= 0)
			close(lp->lfd);
		lp->lfd = -1;
		for (struct conn *c = lp->conns, *nx; c; c = nx) {
			nx = c->next;
			conn_close(c);
		}
		/* wait for provider IO still in flight, then free what remains */
		for (int spin = 0; lp->conns && spin < 30000; spin++) {
			loop_drain_done(lp);
			loop_flush_dirty(lp);
			if (lp->conns)
				usleep(1000);
		}
		while (lp->cmd_free) {
			struct cmd *c = lp->cmd_free;
			lp->cmd_free = c->next;
			ts_free(c->buf);
			ts_free(c->buf2);
			ts_free(c);
		}
		while (lp->tx_free) {
			struct txpdu *t = lp->tx_free;
			lp->tx_free = t->next;
			ts_free(t);
		}
		if (lp->epfd >= 0)
			close(lp->epfd);
		if (lp->evfd >= 0)
			close(lp->evfd);
	}
	while (srv->targets) {
		struct target *t = srv->targets;
		srv->targets = t->next;
		target_put(t);
	}
	ts_free(srv->disc_user);
	ts_free(srv->disc_secret);
	pthread_mutex_destroy(&srv->lock);
	ts_free(srv);
}
