/* SPDX-License-Identifier: Apache-2.0 */
/* Private structures of the iSCSI target; see iscsi.h and the essay atop conn.c. */
#ifndef TS_ISCSI_PRIV_H
#define TS_ISCSI_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "dataplane/rangelock/rangelock.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/iscsi/iscsi_proto.h"

#define ISCSI_MAX_LUNS 64
#define ISCSI_MAX_LOOPS 16
#define ISCSI_CMD_WINDOW 128u         /* MaxCmdSN - ExpCmdSN + 1 */
#define ISCSI_OUR_MAX_RECV_DSL 262144u /* we declare this MaxRecvDataSegmentLength */
#define ISCSI_MAX_DSL_ACCEPT (ISCSI_OUR_MAX_RECV_DSL) /* larger segments drop the connection */
#define ISCSI_LOGIN_MAX_DSL 65536u    /* login/text segments */
#define ISCSI_MAX_XFER (64u << 20)     /* largest data transfer per command */
#define ISCSI_NAME_MAX 224
#define ISCSI_PORT_NAME_MAX 256
#define ISCSI_MAX_PR_REGS 64
#define ISCSI_SENSE_MAX 32
#define ISCSI_CMD_HASH 128

struct conn;
struct session;
struct lun;
struct cmd;

/* ---- unit attention bits, in reporting priority order ---- */
enum {
	UA_POWER_ON = 1u << 0,
	UA_BUS_RESET = 1u << 1,
	UA_NEXUS_LOSS = 1u << 2,
	UA_MODE_CHANGED = 1u << 3,
	UA_RES_PREEMPTED = 1u << 4,
	UA_RES_RELEASED = 1u << 5,
	UA_REG_PREEMPTED = 1u << 6,
	UA_CAPACITY_CHANGED = 1u << 7,
};

/* Per (session, LUN) state: the I_T_L nexus. Lives on lun->nexuses under lun->lock. */
struct nexus {
	struct nexus *next;
	struct lun *lun;          /* holds a reference */
	struct session *sess;
	uint32_t ua;              /* UA_* bits; under lun->lock */
	bool prevent;             /* PREVENT ALLOW MEDIUM REMOVAL */
};

struct pr_reg {
	uint64_t key;
	char port[ISCSI_PORT_NAME_MAX]; /* "iqn...,i,0x<isid>" */
	bool all_tg_pt;                 /* registered with ALL_TG_PT (reported in READ FULL STATUS) */
};

/* A write holding its range, on the LUN's list of writes in flight (for PREEMPT AND ABORT). */
struct wrange {
	struct wrange *next, *prev;
	bool fenced; /* its I_T nexus was preempted by a PREEMPT AND ABORT waiting for it */
};

struct lun {
	struct ts_iscsi_server *srv;
	uint16_t id;
	const struct ts_iscsi_lun_ops *ops;
	void *ctx;
	struct ts_iscsi_lun_info info;
	char product[17];
	char *pr_path;
	uint64_t nblocks;
	uint32_t bs;
	atomic_int refs;
	atomic_bool removed;

	pthread_mutex_t lock;     /* everything below */
	struct nexus *nexuses;
	char res2_holder[ISCSI_PORT_NAME_MAX]; /* SPC-2 RESERVE holder, "" if none */
	uint32_t pr_gen;
	unsigned fenced_writes;   /* write ranges marked fenced, not yet released */
	struct pr_reg regs[ISCSI_MAX_PR_REGS];
	unsigned nregs;
	bool pr_held;
	uint8_t pr_type;
	char pr_holder[ISCSI_PORT_NAME_MAX];  /* "" for all-registrants types */
	bool aptpl;
	/* fencing LUs (info.fencing): the floor and what it refused */
	uint32_t fence_epoch, fence_node;
	bool fence_logged;        /* a refusal since the last raise was logged */
	uint64_t fence_raises, refused_writes, refused_other, refused_pr;
	bool d_sense, swp, wce;
	struct wrange writes;     /* sentinel: writes holding their range */
	struct cmd *abort_waiters;/* PREEMPT AND ABORTs waiting for fenced_writes to drain */
	struct ts_rl *ranges;     /* write ranges (own mutex, never taken under lock) */
};

struct target {
	struct target *next;
	char *iqn, *alias;
	char *chap_user, *chap_secret, *mutual_user, *mutual_secret;
	atomic_int refs;
	bool removed;
	struct lun *luns[ISCSI_MAX_LUNS]; /* under srv->lock */
};

/* Negotiated session/connection parameters. */
struct params {
	uint32_t max_send_dsl;   /* initiator's MaxRecvDataSegmentLength */
	uint32_t first_burst, max_burst, max_r2t;
	bool initial_r2t, immediate_data;
	bool hdigest, ddigest;
};

struct session {
	struct session *next;     /* srv->sessions, under srv->lock */
	struct target *tgt;       /* NULL for discovery */
	struct conn *conn;
	char iname[ISCSI_NAME_MAX];
	char port[ISCSI_PORT_NAME_MAX];
	uint8_t isid[6];
	uint16_t tsih;
	bool discovery;
	uint32_t expcmdsn;
	struct nexus *nexus[ISCSI_MAX_LUNS];
};

struct txpdu {
	struct txpdu *next;
	uint8_t hdr[ISCSI_BHS_LEN + ISCSI_DIGEST_LEN];
	uint32_t hlen;
	const uint8_t *data;
	uint32_t dlen;
	uint8_t tail[8];          /* pad + data digest */
	uint32_t tlen;
	struct cmd *cmd;          /* reference dropped once sent */
	uint8_t *owned;           /* ts_free()d once sent */
};

typedef void (*cmd_cont)(struct cmd *c, int status);

enum cmd_state { CMD_NEW = 0, CMD_DATA_OUT, CMD_EXEC, CMD_DONE };

struct cmd {
	struct cmd *next;         /* free list / done stack / range waiters */
	struct cmd *hnext;        /* conn ITT hash */
	struct cmd *anext, *aprev;/* conn active list */
	struct conn *conn;
	struct lun *lun;          /* reference, may be NULL */
	struct nexus *nx;
	struct loop *loop;
	int refs;
	enum cmd_state state;
	bool aborted, hashed, has_range;
	uint8_t iflags;           /* byte 1 of the SCSI command BHS */
	uint32_t itt, cmdsn, edtl;
	uint64_t lun_raw;
	uint8_t cdb[16];
	/* data */
	uint8_t *buf;
	size_t cap;
	uint8_t *buf2;
	size_t cap2;
	uint32_t received;        /* data-out bytes received */
	uint32_t ttt, r2tsn, datasn_exp;
	uint32_t r2t_off, r2t_len;/* outstanding R2T */
	uint32_t unsol_left;      /* unsolicited bytes still expected */
	uint32_t data_in_len;     /* bytes of buf to send as Data-In */
	/* SCSI result */
	uint8_t status;
	uint8_t sense[ISCSI_SENSE_MAX];
	uint32_t sense_len;
	uint32_t scsi_len;        /* transfer length implied by the CDB, bytes */
	/* execution */
	uint64_t lba;
	uint32_t nblocks;
	uint64_t pos, end;        /* multi-step progress */
	struct ts_rl_req range;   /* its hold in lun->ranges while has_range */
	struct wrange wlink;      /* on lun->writes while has_range */
	cmd_cont cont;
	int io_status;
	struct ts_iscsi_lun_io io;
};

struct loop {
	struct ts_iscsi_server *srv;
	int epfd, evfd, lfd;
	pthread_t thread;
	_Atomic(struct cmd *) done;
	atomic_bool stop;
	struct cmd *cmd_free;
	unsigned ncmd_free;
	struct txpdu *tx_free;
	unsigned ntx_free;
	struct conn *conns;
	struct conn *tx_dirty;   /* conns with queued tx, flushed once per iteration */
};

struct ts_iscsi_server {
	struct loop loops[ISCSI_MAX_LOOPS];
	unsigned nloops;
	uint16_t port;
	char *disc_user, *disc_secret;
	int (*redirect)(void *ctx, const char *target_iqn, char *addr, size_t len);
	void *redirect_ctx;
	pthread_mutex_t lock;     /* targets, sessions, tsih */
	struct target *targets;
	struct session *sessions;
	uint16_t next_tsih;
};

/* ---- scsi.c, sbc.c, spc.c, spc_pr.c: SCSI command execution ---- */
#define MAX_WS_BLOCKS (1u << 22)       /* WRITE SAME / UNMAP per command */
#define MAX_UNMAP_DESC 64u
#define MAX_UNMAP_BLOCKS (1u << 20)
#define MAX_CAW_BLOCKS 255u
#define WS_CHUNK (1u << 20)

/** A decoded READ/WRITE-family CDB. */
struct rw {
	uint64_t lba;
	uint32_t nb;
	uint8_t flags; /* cdb[1] */
};

/* scsi.c: shared by the command sets */
void scsi_set_sense_info(struct cmd *c, uint8_t key, uint16_t asc, bool has_info, uint64_t info);
void scsi_fail(struct cmd *c, uint8_t key, uint16_t asc);
void scsi_io_sense(struct cmd *c, int err, bool write);
void scsi_good(struct cmd *c);
void scsi_send_data(struct cmd *c, uint32_t len, uint32_t alloc);
void scsi_ua_all(struct lun *l, struct nexus *except, uint32_t bit);
void scsi_ua_port(struct lun *l, const char *port, uint32_t bit);
uint16_t scsi_ua_asc(uint32_t bit);
/* sbc.c: block commands */
bool sbc_check_range(struct cmd *c, uint64_t lba, uint64_t nb);
void sbc_exec_read(struct cmd *c, struct rw *rw);
void sbc_exec_write(struct cmd *c, struct rw *rw);
void sbc_exec_verify(struct cmd *c, struct rw *rw);
void sbc_exec_caw(struct cmd *c, struct rw *rw);
void sbc_exec_write_same(struct cmd *c, struct rw *rw);
void sbc_exec_unmap(struct cmd *c);
void sbc_flush_done(struct cmd *c, int st);
void sbc_exec_read_capacity(struct cmd *c, bool sixteen);
void sbc_exec_get_lba_status(struct cmd *c);
/* spc.c: primary commands */
void spc_exec_inquiry(struct cmd *c);
void spc_exec_mode_sense(struct cmd *c);
void spc_exec_mode_select(struct cmd *c, struct nexus *nx);
void spc_exec_report_luns(struct cmd *c);
void spc_exec_request_sense(struct cmd *c, struct nexus *nx);
void spc_exec_rsoc(struct cmd *c);
/* spc_pr.c: reservations; pr_res_conflict() is called under lun->lock */
bool pr_res_conflict(struct cmd *c);
/* Under lun->lock: does the fencing owner (the floor key) hold the reservation? */
bool pr_fence_owner_holds(struct lun *l);
void pr_exec_out(struct cmd *c, struct nexus *nx);
void pr_exec_in(struct cmd *c);
void pr_exec_reserve(struct cmd *c, bool reserve);
/* ---- scsi.c (entry points) ---- */
/** Execute a SCSI command whose data-out (if any) is complete. Ends with cmd_complete(). */
void scsi_exec(struct cmd *c);
/** Build sense data in c (fixed or descriptor format per the LUN's D_SENSE). */
void scsi_set_sense(struct cmd *c, uint8_t key, uint16_t asc);
/** Transfer length implied by the CDB in bytes, and whether the command writes. */
uint32_t scsi_cdb_xfer_len(const uint8_t *cdb, uint32_t bs, bool *is_write);
void lun_put(struct lun *l);
void lun_get(struct lun *l);
void scsi_nexus_lost(struct session *s);
/* New capacity (bytes, multiple of the block size); raises CAPACITY DATA HAS CHANGED. */
void scsi_lun_resize(struct lun *l, uint64_t size);
void scsi_lun_reset(struct lun *l, struct nexus *from);
void pr_load_state(struct lun *l);
/* Complete the PREEMPT AND ABORT commands of \p list (taken off lun->abort_waiters). */
void pr_abort_wake(struct cmd *list);
void scsi_range_release(struct cmd *c);

/* ---- conn.c, used by scsi.c ---- */
/** Submit a provider op for c; cont runs on c's loop thread with the status. */
void cmd_submit(struct cmd *c, int (*op)(void *, struct ts_iscsi_lun_io *), uint64_t off,
		uint64_t len, void *buf, uint32_t flags, cmd_cont cont);
/** Run cont(c, 0) on c's loop later (the caller took a reference for it). */
void cmd_requeue(struct cmd *c, cmd_cont cont);
/** Send status (and Data-In from c->buf[0..data_in_len]) and retire c. */
void cmd_complete(struct cmd *c);
/** Ensure c->buf holds \p len bytes. 0 or -ENOMEM. */
int cmd_buf_reserve(struct cmd *c, size_t len);
int cmd_buf2_reserve(struct cmd *c, size_t len);

/* ---- chap.c / login ---- */
int chap_md5(uint8_t id, const char *secret, const uint8_t *chal, size_t chal_len, uint8_t out[16]);


/* ---- connection (conn.c, login.c) ---- */
enum conn_state { CONN_LOGIN = 0, CONN_FULL, CONN_DEAD };
enum rx_phase { RX_BHS = 0, RX_AHS, RX_DATA };

struct login {
	bool started;
	int stage;                /* current stage */
	bool auth_ok;             /* security stage passed (or not required) */
	bool discovery;
	struct target *tgt;       /* reference */
	char iname[ISCSI_NAME_MAX];
	uint8_t isid[6];
	uint16_t tsih;
	int chap;                 /* 0 none, 1 challenge sent, 2 done */
	uint8_t chap_id;
	uint8_t chal[16];
	bool need_chap;
	struct params p;          /* proposed */
};

#define CONN_INBUF 65536u

struct conn {
	struct conn *next, *prev; /* loop->conns */
	struct conn *dnext;       /* dirty list (tx to flush) */
	bool dirty;
	struct loop *loop;
	int fd;
	enum conn_state state;
	struct session *sess;
	struct params p;
	/* rx */
	enum rx_phase phase;
	uint8_t bhs[ISCSI_BHS_LEN];
	uint8_t ahs[1024 + 8];
	uint8_t *dst;
	uint32_t need, got;
	uint8_t *rxbuf;
	uint32_t rxcap, dsl, ahslen;
	uint8_t *in;
	uint32_t in_pos, in_len;
	/* tx */
	struct txpdu *txh, *txt;
	size_t tx_off;
	bool pollout;
	uint32_t statsn;
	/* commands */
	struct cmd *hash[ISCSI_CMD_HASH];
	struct cmd active;        /* sentinel */
	int ncmds;
	uint32_t next_ttt;
	struct login lg;
	char local_addr[64];
};

int login_handle(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl);
int text_handle(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl);
struct txpdu *tx_alloc(struct conn *c);
void tx_queue(struct conn *c, struct txpdu *t);
void tx_set_data(struct conn *c, struct txpdu *t, const uint8_t *data, uint32_t len);
void conn_fill_sn(struct conn *c, uint8_t *hdr, bool advance_statsn);
void login_release(struct login *lg);
void target_put(struct target *t);

/* ---- conn.c, used by task.c: pools, transmit, connection end ---- */
struct cmd *cmd_alloc(struct conn *c);
void cmd_unhash(struct cmd *cmd);
void cmd_put(struct cmd *cmd);
void tx_release(struct loop *lp, struct txpdu *t);
int conn_flush(struct conn *c);
void conn_close(struct conn *c);
/* ---- task.c, used by conn.c: full-feature PDUs ---- */
void abort_cmd(struct cmd *cmd);
int dispatch_full(struct conn *c, const uint8_t *bhs, const uint8_t *data, uint32_t dsl);

#endif /* TS_ISCSI_PRIV_H */
