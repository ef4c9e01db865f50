/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The iSCSI target end to end in one process: a server on a free loopback
 * port with a RAM LUN, driven by libiscsi's synchronous initiator API.
 * Covers CHAP (wrong secret refused, mutual CHAP verified by libiscsi),
 * CRC32C header digests, garbage on one connection not disturbing another
 * session, targets added and removed at runtime, and persistent reservation
 * registrations surviving a restart of the server.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/iscsi/lun_file.h"

#define IQN "iqn.2026-01.io.tessera:unit"
#define INAME "iqn.2026-01.io.tessera:initiator"

static struct ts_iscsi_server *g_srv;
static char g_portal[64];

static void start(const struct ts_iscsi_target_opts *to, const char *pr_path)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 2 };
	struct ts_iscsi_file_lun *fl;
	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	snprintf(g_portal, sizeof(g_portal), "127.0.0.1:%u", ts_iscsi_server_port(g_srv));
	cr_assert_eq(ts_iscsi_target_add(g_srv, to), 0);
	cr_assert_eq(ts_iscsi_file_lun_create(NULL, 8 << 20, 0, &fl), 0);
	struct ts_iscsi_lun_info info = { .size = 8 << 20, .block_size = 512, .thin = true,
					  .pr_state_path = pr_path };
	memset(info.uuid, 0x5a, 16);
	cr_assert_eq(ts_iscsi_lun_add(g_srv, to->iqn, 0, ts_iscsi_file_lun_ops(), fl, &info), 0);
}

static void stop(void)
{
	ts_iscsi_server_destroy(g_srv);
	g_srv = NULL;
}

static struct iscsi_context *login(const char *user, const char *secret, const char *tuser,
				   const char *tsecret, enum iscsi_header_digest hd)
{
	struct iscsi_context *ctx = iscsi_create_context(INAME);
	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, IQN);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	iscsi_set_header_digest(ctx, hd);
	if (user)
		iscsi_set_initiator_username_pwd(ctx, user, secret);
	if (tuser)
		iscsi_set_target_username_pwd(ctx, tuser, tsecret);
	if (iscsi_full_connect_sync(ctx, g_portal, 0) != 0) {
		iscsi_destroy_context(ctx);
		return NULL;
	}
	return ctx;
}

static void logout(struct iscsi_context *ctx)
{
	iscsi_logout_sync(ctx);
	iscsi_destroy_context(ctx);
}

static int tur(struct iscsi_context *ctx)
{
	struct scsi_task *t = iscsi_testunitready_sync(ctx, 0);
	int st = t ? t->status : -1;
	if (t)
		scsi_free_scsi_task(t);
	return st;
}

/* Write a pattern and read it back. */
static void roundtrip(struct iscsi_context *ctx, uint64_t lba, uint8_t seed)
{
	unsigned char buf[8192];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(seed + i * 7);
	struct scsi_task *t = iscsi_write16_sync(ctx, 0, lba, buf, sizeof(buf), 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	t = iscsi_read16_sync(ctx, 0, lba, sizeof(buf), 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	cr_assert_eq(t->datain.size, (int)sizeof(buf));
	cr_assert_eq(memcmp(t->datain.data, buf, sizeof(buf)), 0);
	scsi_free_scsi_task(t);
}

Test(iscsi, no_auth_roundtrip)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	cr_assert_eq(tur(ctx), SCSI_STATUS_GOOD);
	roundtrip(ctx, 100, 3);
	logout(ctx);
	stop();
}

Test(iscsi, header_digest_crc32c)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_CRC32C);
	cr_assert_not_null(ctx);
	roundtrip(ctx, 7, 9);
	logout(ctx);
	stop();
}

Test(iscsi, chap_wrong_secret_refused)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN, .chap_user = "alice", .chap_secret = "secret-secret1" };
	start(&to, NULL);
	cr_assert_null(login("alice", "wrong-secret12", NULL, NULL, ISCSI_HEADER_DIGEST_NONE));
	cr_assert_null(login("mallory", "secret-secret1", NULL, NULL, ISCSI_HEADER_DIGEST_NONE));
	cr_assert_null(login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE));
	struct iscsi_context *ctx = login("alice", "secret-secret1", NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	roundtrip(ctx, 0, 1);
	logout(ctx);
	stop();
}

Test(iscsi, mutual_chap)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN, .chap_user = "alice", .chap_secret = "secret-secret1",
					   .mutual_user = "target", .mutual_secret = "target-secret2" };
	start(&to, NULL);
	/* libiscsi checks the target's answer: a target secret it does not expect fails the login */
	cr_assert_null(login("alice", "secret-secret1", "target", "other-secret99", ISCSI_HEADER_DIGEST_NONE));
	struct iscsi_context *ctx =
		login("alice", "secret-secret1", "target", "target-secret2", ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	roundtrip(ctx, 64, 5);
	logout(ctx);
	stop();
}

static int raw_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(ts_iscsi_server_port(g_srv)) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* The server must close the connection: recv returns 0 (or ECONNRESET), not a timeout. */
static void expect_closed(int fd)
{
	char b[512];
	ssize_t n;
	do {
		n = recv(fd, b, sizeof(b), 0);
	} while (n > 0);
	cr_assert(n == 0 || errno == ECONNRESET, "connection not closed (errno %d)", errno);
	close(fd);
}

Test(iscsi, garbage_drops_only_that_connection)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);

	/* a SCSI command before login */
	int fd = raw_connect();
	uint8_t bhs[48] = { 0x01, 0x80 }; /* SCSI Command */
	cr_assert_eq(send(fd, bhs, sizeof(bhs), 0), 48);
	expect_closed(fd);

	/* an oversized data segment in a login request */
	fd = raw_connect();
	memset(bhs, 0, sizeof(bhs));
	bhs[0] = 0x43;
	bhs[5] = 0xff; bhs[6] = 0xff; bhs[7] = 0xff;
	cr_assert_eq(send(fd, bhs, sizeof(bhs), 0), 48);
	expect_closed(fd);

	/* random bytes */
	fd = raw_connect();
	uint8_t junk[4096];
	srand(42);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)rand();
	junk[0] = 0x43;
	send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
	expect_closed(fd);

	/* the healthy session carries on */
	cr_assert_eq(tur(ctx), SCSI_STATUS_GOOD);
	roundtrip(ctx, 200, 11);
	logout(ctx);
	stop();
}

Test(iscsi, targets_come_and_go)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to), -EEXIST);
	cr_assert_eq(ts_iscsi_target_remove(g_srv, IQN), 0);
	cr_assert_eq(ts_iscsi_target_remove(g_srv, IQN), -ENOENT);
	/* the removed target's session is gone and a new login is refused */
	iscsi_set_noautoreconnect(ctx, 1);
	cr_assert_neq(tur(ctx), SCSI_STATUS_GOOD);
	iscsi_destroy_context(ctx);
	cr_assert_null(login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE));
	/* and it comes back without a restart */
	struct ts_iscsi_file_lun *fl;
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to), 0);
	cr_assert_eq(ts_iscsi_file_lun_create(NULL, 1 << 20, 0, &fl), 0);
	struct ts_iscsi_lun_info info = { .size = 1 << 20, .block_size = 512 };
	cr_assert_eq(ts_iscsi_lun_add(g_srv, IQN, 0, ts_iscsi_file_lun_ops(), fl, &info), 0);
	ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	roundtrip(ctx, 0, 2);
	logout(ctx);
	stop();
}

static int read_keys(struct iscsi_context *ctx, uint64_t *keys, int max)
{
	struct scsi_task *t = iscsi_persistent_reserve_in_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_READ_KEYS, 512);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	struct scsi_persistent_reserve_in_read_keys *rk = scsi_datain_unmarshall(t);
	cr_assert_not_null(rk);
	int n = rk->num_keys;
	for (int i = 0; i < n && i < max; i++)
		keys[i] = rk->keys[i];
	scsi_free_scsi_task(t);
	return n;
}

Test(iscsi, pr_registrations_survive_restart)
{
	char dir[] = "/tmp/ts-iscsi-pr-XXXXXX";
	char path[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lun0.pr", dir);
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, path);
	struct iscsi_context *ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	struct scsi_persistent_reserve_out_basic reg = { .service_action_reservation_key = 0xabcdef12345ull };
	struct scsi_task *t = iscsi_persistent_reserve_out_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, &reg);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	struct scsi_persistent_reserve_out_basic res = { .reservation_key = 0xabcdef12345ull };
	t = iscsi_persistent_reserve_out_sync(ctx, 0, SCSI_PERSISTENT_RESERVE_RESERVE, 0,
					      SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE, &res);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	logout(ctx);
	stop();

	/* restart: the registration and the reservation are back */
	start(&to, path);
	ctx = login(NULL, NULL, NULL, NULL, ISCSI_HEADER_DIGEST_NONE);
	cr_assert_not_null(ctx);
	uint64_t keys[4];
	cr_assert_eq(read_keys(ctx, keys, 4), 1);
	cr_assert_eq(keys[0], 0xabcdef12345ull);
	/* another initiator is fenced off writes by the persisted WRITE EXCLUSIVE reservation */
	struct iscsi_context *other = iscsi_create_context("iqn.2026-01.io.tessera:other");
	iscsi_set_targetname(other, IQN);
	iscsi_set_session_type(other, ISCSI_SESSION_NORMAL);
	cr_assert_eq(iscsi_full_connect_sync(other, g_portal, 0), 0);
	unsigned char buf[512] = { 0 };
	t = iscsi_write16_sync(other, 0, 0, buf, 512, 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_RESERVATION_CONFLICT);
	scsi_free_scsi_task(t);
	logout(other);
	logout(ctx);
	stop();
	unlink(path);
	rmdir(dir);
}

Test(iscsi, discovery_sendtargets)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct ts_iscsi_target_opts to2 = { .iqn = "iqn.2026-01.io.tessera:second" };
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to2), 0);
	struct iscsi_context *ctx = iscsi_create_context(INAME);
	iscsi_set_session_type(ctx, ISCSI_SESSION_DISCOVERY);
	cr_assert_eq(iscsi_connect_sync(ctx, g_portal), 0);
	cr_assert_eq(iscsi_login_sync(ctx), 0);
	struct iscsi_discovery_address *da = iscsi_discovery_sync(ctx);
	cr_assert_not_null(da);
	int found = 0;
	for (struct iscsi_discovery_address *a = da; a; a = a->next) {
		if (!strcmp(a->target_name, IQN) || !strcmp(a->target_name, "iqn.2026-01.io.tessera:second"))
			found++;
		cr_assert_not_null(a->portals);
		cr_assert(strstr(a->portals->portal, "127.0.0.1:") != NULL);
	}
	cr_assert_eq(found, 2);
	iscsi_free_discovery_data(ctx, da);
	logout(ctx);
	/* a removed target disappears from discovery at once */
	cr_assert_eq(ts_iscsi_target_remove(g_srv, "iqn.2026-01.io.tessera:second"), 0);
	ctx = iscsi_create_context(INAME);
	iscsi_set_session_type(ctx, ISCSI_SESSION_DISCOVERY);
	cr_assert_eq(iscsi_connect_sync(ctx, g_portal), 0);
	cr_assert_eq(iscsi_login_sync(ctx), 0);
	da = iscsi_discovery_sync(ctx);
	cr_assert_not_null(da);
	cr_assert_str_eq(da->target_name, IQN);
	cr_assert_null(da->next);
	iscsi_free_discovery_data(ctx, da);
	logout(ctx);
	stop();
}

Test(iscsi, allocation_failures_do_not_crash)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *ctx = iscsi_create_context(INAME);
	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, IQN);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	/* no immediate or unsolicited data: the 1 MiB write below needs a buffer first */
	iscsi_set_immediate_data(ctx, ISCSI_IMMEDIATE_DATA_NO);
	iscsi_set_initial_r2t(ctx, ISCSI_INITIAL_R2T_YES);
	cr_assert_eq(iscsi_full_connect_sync(ctx, g_portal, 0), 0);
	roundtrip(ctx, 0, 4);

	ts_alloc_fail_after(0); /* every engine allocation fails from here */
	static unsigned char big[1 << 20];
	struct scsi_task *t = iscsi_write16_sync(ctx, 0, 0, big, sizeof(big), 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_TASK_SET_FULL);
	scsi_free_scsi_task(t);
	/* a new connection cannot be served, but is answered or closed, not hung */
	int fd = raw_connect();
	uint8_t bhs[48] = { 0x43, 0x87 };
	cr_assert_eq(send(fd, bhs, sizeof(bhs), 0), 48);
	expect_closed(fd);
	ts_alloc_fail_after(-1);

	/* the session carries on once memory is back */
	roundtrip(ctx, 32, 6);
	t = iscsi_write16_sync(ctx, 0, 0, big, sizeof(big), 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	scsi_free_scsi_task(t);
	logout(ctx);
	stop();
}

static struct iscsi_context *login_as(const char *iname)
{
	struct iscsi_context *ctx = iscsi_create_context(iname);
	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, IQN);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	cr_assert_eq(iscsi_full_connect_sync(ctx, g_portal, 0), 0);
	return ctx;
}

static int prout(struct iscsi_context *ctx, int sa, int type, uint64_t rk, uint64_t sark)
{
	struct scsi_persistent_reserve_out_basic p = { .reservation_key = rk, .service_action_reservation_key = sark };
	struct scsi_task *t = iscsi_persistent_reserve_out_sync(ctx, 0, sa, 0, type, &p);
	cr_assert_not_null(t);
	int st = t->status;
	scsi_free_scsi_task(t);
	return st;
}

static int write1(struct iscsi_context *ctx, struct scsi_sense *sense)
{
	unsigned char buf[512] = { 1 };
	struct scsi_task *t = iscsi_write10_sync(ctx, 0, 10, buf, 512, 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	int st = t->status;
	if (sense)
		*sense = t->sense;
	scsi_free_scsi_task(t);
	return st;
}

static int read1(struct iscsi_context *ctx)
{
	struct scsi_task *t = iscsi_read10_sync(ctx, 0, 10, 512, 512, 0, 0, 0, 0, 0);
	cr_assert_not_null(t);
	int st = t->status;
	scsi_free_scsi_task(t);
	return st;
}

/* The persistent reservation state machine with two initiators. */
Test(iscsi, pr_state_machine)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	struct iscsi_context *a = login_as("iqn.2026-01.io.tessera:a");
	struct iscsi_context *b = login_as("iqn.2026-01.io.tessera:b");
	const int REG = SCSI_PERSISTENT_RESERVE_REGISTER, RES = SCSI_PERSISTENT_RESERVE_RESERVE;
	const int REL = SCSI_PERSISTENT_RESERVE_RELEASE, PRE = SCSI_PERSISTENT_RESERVE_PREEMPT;
	const int WE = SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE;
	const int EA = SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS;

	/* an unregistered initiator cannot reserve; a wrong key is a conflict */
	cr_assert_eq(prout(a, RES, WE, 0xa, 0), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(prout(a, REG, 0, 0, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(b, REG, 0, 0, 0xb), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(a, REG, 0, 0x99, 0xaa), SCSI_STATUS_RESERVATION_CONFLICT);
	uint64_t keys[4];
	cr_assert_eq(read_keys(a, keys, 4), 2);

	/* WRITE EXCLUSIVE: the holder writes, the other reads but cannot write */
	cr_assert_eq(prout(a, RES, WE, 0xa, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_GOOD);
	cr_assert_eq(read1(b), SCSI_STATUS_GOOD);
	cr_assert_eq(write1(b, NULL), SCSI_STATUS_RESERVATION_CONFLICT);
	/* a second reservation by another registrant conflicts */
	cr_assert_eq(prout(b, RES, WE, 0xb, 0), SCSI_STATUS_RESERVATION_CONFLICT);

	/* upgrade to EXCLUSIVE ACCESS: release then reserve again; b cannot even read */
	cr_assert_eq(prout(a, REL, WE, 0xa, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(a, RES, EA, 0xa, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(read1(b), SCSI_STATUS_RESERVATION_CONFLICT);

	/* b preempts a: a's registration is gone, a gets a unit attention, b holds WE */
	cr_assert_eq(prout(b, PRE, WE, 0xb, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(read_keys(b, keys, 4), 1);
	cr_assert_eq(keys[0], 0xb);
	struct scsi_sense sense;
	cr_assert_eq(write1(a, &sense), SCSI_STATUS_CHECK_CONDITION);
	cr_assert_eq(sense.key, SCSI_SENSE_UNIT_ATTENTION);
	cr_assert_eq(sense.ascq, 0x2a05); /* registrations preempted */
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(write1(b, NULL), SCSI_STATUS_GOOD);

	/* CLEAR by the holder drops everything */
	cr_assert_eq(prout(b, SCSI_PERSISTENT_RESERVE_CLEAR, 0, 0xb, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(read_keys(b, keys, 4), 0);
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_GOOD);
	logout(a);
	logout(b);
	stop();
}

/* PR OUT with a raw parameter list (REGISTER AND MOVE, flags libiscsi does not send). */
static int prout_raw(struct iscsi_context *ctx, int sa, int type, const uint8_t *param, uint32_t len)
{
	unsigned char cdb[10] = { 0x5f, (unsigned char)sa, (unsigned char)type };
	struct iscsi_data d = { .size = len, .data = (unsigned char *)param };
	struct scsi_task *t = scsi_create_task(10, cdb, SCSI_XFER_WRITE, len);
	cr_assert_not_null(t);
	cdb[5] = (unsigned char)(len >> 24);
	cdb[6] = (unsigned char)(len >> 16);
	cdb[7] = (unsigned char)(len >> 8);
	cdb[8] = (unsigned char)len;
	memcpy(t->cdb, cdb, 10);
	cr_assert_not_null(iscsi_scsi_command_sync(ctx, 0, t, &d));
	int st = t->status;
	scsi_free_scsi_task(t);
	return st;
}

static void put_be64_test(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/*
 * READ FULL STATUS: the flags byte (ALL_TG_PT, R_HOLDER) of the descriptor
 * with \p key, or -1; its TransportID's name into \p port if not NULL.
 */
static int full_status(struct iscsi_context *ctx, uint64_t key, char *port, size_t cap)
{
	struct scsi_task *t = iscsi_persistent_reserve_in_sync(ctx, 0, 3 /* READ FULL STATUS */, 4096);
	cr_assert_not_null(t);
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	const uint8_t *b = t->datain.data;
	uint32_t n = (uint32_t)b[4] << 24 | (uint32_t)b[5] << 16 | (uint32_t)b[6] << 8 | b[7];
	int flags = -1;
	for (uint32_t off = 8; off + 24 <= 8 + n && off + 24 <= (uint32_t)t->datain.size;) {
		const uint8_t *d = b + off;
		uint32_t al = (uint32_t)d[20] << 24 | (uint32_t)d[21] << 16 | (uint32_t)d[22] << 8 | d[23];
		uint64_t k = 0;
		for (int i = 0; i < 8; i++)
			k = k << 8 | d[i];
		if (k == key) {
			flags = d[12];
			if (port)
				snprintf(port, cap, "%.*s", (int)(al - 4), (const char *)d + 28);
		}
		off += 24 + al;
	}
	scsi_free_scsi_task(t);
	return flags;
}

static int full_status_flags(struct iscsi_context *ctx, uint64_t key)
{
	return full_status(ctx, key, NULL, 0);
}

/* The first unit attention a command on \p ctx gets (ASC/ASCQ), then GOOD or CONFLICT. */
static int ua_of(struct iscsi_context *ctx)
{
	struct scsi_sense sense;
	int st = write1(ctx, &sense);
	return st == SCSI_STATUS_CHECK_CONDITION && sense.key == SCSI_SENSE_UNIT_ATTENTION ? (int)sense.ascq
											 : -st;
}

/* SPC-4 corners: ALL_TG_PT, SPEC_I_PT, PREEMPT edge cases, REGISTER AND MOVE, APTPL. */
Test(iscsi, pr_spc4_service_actions)
{
	char dir[] = "/tmp/ts-iscsi-pr4-XXXXXX", path[128];
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/lun0.pr", dir);
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, path);
	struct iscsi_context *a = login_as("iqn.2026-01.io.tessera:a");
	struct iscsi_context *b = login_as("iqn.2026-01.io.tessera:b");
	const int REG = SCSI_PERSISTENT_RESERVE_REGISTER, RES = SCSI_PERSISTENT_RESERVE_RESERVE;
	const int PRE = SCSI_PERSISTENT_RESERVE_PREEMPT, PRA = SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT;
	const int WE = SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE;
	const int EA = SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS;
	const int WERO = SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY;
	uint8_t pl[24 + 64];
	uint64_t keys[4];

	/* ALL_TG_PT registers (one target port: the same registration), shown by READ FULL STATUS */
	memset(pl, 0, sizeof(pl));
	put_be64_test(pl + 8, 0xa);
	pl[20] = 0x04 | 0x01; /* ALL_TG_PT, APTPL */
	cr_assert_eq(prout_raw(a, REG, 0, pl, 24), SCSI_STATUS_GOOD);
	cr_assert_eq(full_status_flags(a, 0xa), 0x02);
	/* SPEC_I_PT is not supported: INVALID FIELD IN PARAMETER LIST */
	pl[20] = 0x08;
	put_be64_test(pl + 8, 0xb);
	cr_assert_eq(prout_raw(b, REG, 0, pl, 24), SCSI_STATUS_CHECK_CONDITION);
	cr_assert_eq(prout(b, REG, 0, 0, 0xb), SCSI_STATUS_GOOD);

	/* PREEMPT with a key nobody has is a conflict, even while a reservation exists */
	cr_assert_eq(prout(a, RES, WE, 0xa, 0), SCSI_STATUS_GOOD);
	cr_assert_eq(full_status_flags(b, 0xa), 0x03);
	cr_assert_eq(prout(b, PRE, WE, 0xb, 0x77), SCSI_STATUS_RESERVATION_CONFLICT);
	/* a zero key outside all-registrants: INVALID FIELD IN PARAMETER LIST */
	cr_assert_eq(prout(b, PRE, WE, 0xb, 0), SCSI_STATUS_CHECK_CONDITION);
	/* the holder preempting itself changes the type; b (still registered) hears RESERVATIONS RELEASED */
	cr_assert_eq(prout(a, PRE, WERO, 0xa, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(ua_of(b), 0x2a04);
	cr_assert_eq(write1(b, NULL), SCSI_STATUS_GOOD); /* registrants only: b may write */

	/* REGISTER AND MOVE: a hands the reservation to b's I_T nexus and unregisters */
	{
		char port[160];
		memset(pl, 0, sizeof(pl));
		put_be64_test(pl, 0xa);
		put_be64_test(pl + 8, 0xb2);
		pl[17] = 0x02; /* UNREG */
		pl[19] = 1;    /* relative target port 1 */
		/* b's initiator port, as the target reports it, in upper case: the ISID is hex */
		cr_assert_eq(full_status(a, 0xb, port, sizeof(port)), 0);
		char *sep = strstr(port, ",i,0x");
		cr_assert_not_null(sep);
		for (char *q = sep; *q; q++)
			*q = (char)(*q >= 'a' && *q <= 'z' ? *q - 'a' + 'A' : *q);
		size_t sl = strlen(port) + 1, tl = (4 + sl + 3) & ~(size_t)3;
		if (tl < 24)
			tl = 24;
		pl[23] = (uint8_t)tl;
		pl[24] = 0x45; /* initiator port format, iSCSI */
		pl[26] = (uint8_t)((tl - 4) >> 8);
		pl[27] = (uint8_t)(tl - 4);
		memcpy(pl + 28, port, sl);
		/* b is not the holder: conflict; a to itself: invalid */
		cr_assert_eq(prout_raw(b, 7, WERO, pl, (uint32_t)(24 + tl)), SCSI_STATUS_RESERVATION_CONFLICT);
		cr_assert_eq(prout_raw(a, 7, WERO, pl, (uint32_t)(24 + tl)), SCSI_STATUS_GOOD);
	}
	cr_assert_eq(read_keys(b, keys, 4), 1); /* b kept its own key 0xb, a is gone */
	cr_assert_eq(keys[0], 0xb);
	cr_assert_eq(full_status_flags(b, 0xb), 0x01); /* b holds it now */
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_RESERVATION_CONFLICT);

	/* PREEMPT AND ABORT of a (registered again, so it may write under WERO):
	 * a's key is not the holder's, so b's WERO stays and a is only unregistered */
	cr_assert_eq(prout(a, REG, 0, 0, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(b, PRA, EA, 0xb, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(ua_of(a), 0x2a05);
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(read1(a), SCSI_STATUS_GOOD);
	cr_assert_eq(read_keys(b, keys, 4), 1);
	/* b preempting its own reservation into EXCLUSIVE ACCESS keeps a from reading too */
	cr_assert_eq(prout(b, PRE, EA, 0xb, 0xb), SCSI_STATUS_GOOD);
	cr_assert_eq(read1(a), SCSI_STATUS_RESERVATION_CONFLICT);
	logout(a);
	logout(b);
	stop();

	/* the APTPL and ALL_TG_PT flags come back with the state */
	start(&to, path);
	a = login_as("iqn.2026-01.io.tessera:a");
	struct scsi_task *t = iscsi_persistent_reserve_in_sync(a, 0, SCSI_PERSISTENT_RESERVE_REPORT_CAPABILITIES, 8);
	cr_assert_not_null(t);
	if (t->status == SCSI_STATUS_CHECK_CONDITION) { /* power on */
		scsi_free_scsi_task(t);
		t = iscsi_persistent_reserve_in_sync(a, 0, SCSI_PERSISTENT_RESERVE_REPORT_CAPABILITIES, 8);
	}
	cr_assert_eq(t->status, SCSI_STATUS_GOOD);
	cr_assert_eq(t->datain.data[2] & 0x05, 0x05); /* ATP_C, PTPL_C */
	cr_assert_eq(t->datain.data[3] & 0x01, 0x00); /* the last REGISTER (a, again) had APTPL 0 */
	scsi_free_scsi_task(t);
	logout(a);
	stop();
	unlink(path);
	rmdir(dir);
}

/* ---- PREEMPT AND ABORT waits for the preempted nexus' writes at the provider ---- */

/* A file LUN whose writes can be held at the provider. */
static struct {
	struct ts_iscsi_file_lun *fl;
	pthread_mutex_t mu;
	int hold, nheld;
	struct ts_iscsi_lun_io *held[4];
} g_gate = { .mu = PTHREAD_MUTEX_INITIALIZER };

static int gate_read(void *ctx, struct ts_iscsi_lun_io *io)
{
	(void)ctx;
	return ts_iscsi_file_lun_ops()->read(g_gate.fl, io);
}

static int gate_write(void *ctx, struct ts_iscsi_lun_io *io)
{
	(void)ctx;
	pthread_mutex_lock(&g_gate.mu);
	if (g_gate.hold && g_gate.nheld < 4) {
		g_gate.held[g_gate.nheld++] = io;
		pthread_mutex_unlock(&g_gate.mu);
		return 0;
	}
	pthread_mutex_unlock(&g_gate.mu);
	return ts_iscsi_file_lun_ops()->write(g_gate.fl, io);
}

static int gate_flush(void *ctx, struct ts_iscsi_lun_io *io)
{
	(void)ctx;
	return ts_iscsi_file_lun_ops()->flush(g_gate.fl, io);
}

static int gate_unmap(void *ctx, struct ts_iscsi_lun_io *io)
{
	(void)ctx;
	return ts_iscsi_file_lun_ops()->unmap(g_gate.fl, io);
}

static void gate_destroy(void *ctx)
{
	(void)ctx;
	ts_iscsi_file_lun_ops()->destroy(g_gate.fl);
}

static const struct ts_iscsi_lun_ops g_gate_ops = {
	.read = gate_read, .write = gate_write, .flush = gate_flush, .unmap = gate_unmap,
	.destroy = gate_destroy,
};

static void task_cb(struct iscsi_context *ctx, int status, void *data, void *priv)
{
	int *out = priv;
	(void)ctx;
	*out = status == SCSI_STATUS_GOOD ? 1 : 100 + status;
	scsi_free_scsi_task(data);
}

/* Drive \p ctx for up to \p ms or until *\p flag is set. */
static void service(struct iscsi_context *ctx, unsigned ms, const int *flag, int *held)
{
	uint64_t end = ts_now_ns() + (uint64_t)ms * 1000000ull;
	while (ts_now_ns() < end && !(flag && *flag)) {
		struct pollfd p = { .fd = iscsi_get_fd(ctx), .events = (short)iscsi_which_events(ctx) };
		if (poll(&p, 1, 10) > 0)
			cr_assert_geq(iscsi_service(ctx, p.revents), 0);
		if (held) {
			pthread_mutex_lock(&g_gate.mu);
			int n = g_gate.nheld;
			pthread_mutex_unlock(&g_gate.mu);
			if (n >= *held)
				return;
		}
	}
}

Test(iscsi, pr_preempt_and_abort_waits_for_the_preempted_writes, .timeout = 60)
{
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 0, .threads = 2 };
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	struct ts_iscsi_lun_info info = { .size = 8 << 20, .block_size = 512 };
	static unsigned char data[512];
	int wa = 0, pa = 0, one = 1;

	cr_assert_eq(ts_iscsi_server_create(&so, &g_srv), 0);
	snprintf(g_portal, sizeof(g_portal), "127.0.0.1:%u", ts_iscsi_server_port(g_srv));
	cr_assert_eq(ts_iscsi_target_add(g_srv, &to), 0);
	cr_assert_eq(ts_iscsi_file_lun_create(NULL, 8 << 20, 0, &g_gate.fl), 0);
	cr_assert_eq(ts_iscsi_lun_add(g_srv, IQN, 0, &g_gate_ops, NULL, &info), 0);
	struct iscsi_context *a = login_as("iqn.2026-01.io.tessera:a");
	struct iscsi_context *b = login_as("iqn.2026-01.io.tessera:b");
	const int WE = SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE;
	cr_assert_eq(prout(a, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xa), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(b, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xb), SCSI_STATUS_GOOD);
	cr_assert_eq(prout(a, SCSI_PERSISTENT_RESERVE_RESERVE, WE, 0xa, 0), SCSI_STATUS_GOOD);

	/* a's write reaches the provider and stays there */
	g_gate.hold = 1;
	cr_assert_not_null(iscsi_write10_task(a, 0, 20, data, 512, 512, 0, 0, 0, 0, 0, task_cb, &wa));
	service(a, 5000, NULL, &one);
	cr_assert_eq(g_gate.nheld, 1);
	/* b's PREEMPT AND ABORT does not complete while it is in flight */
	struct scsi_persistent_reserve_out_basic p = { .reservation_key = 0xb,
						       .service_action_reservation_key = 0xa };
	cr_assert_not_null(iscsi_persistent_reserve_out_task(b, 0, SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT,
							     0, WE, &p, task_cb, &pa));
	service(b, 300, &pa, NULL);
	cr_assert_eq(pa, 0);
	/* the preemption is in effect already: b holds it, a's new commands are refused */
	cr_assert_eq(full_status_flags(b, 0xb), 0x01);
	/* let the write go: it completes (it was admitted before), then the PREEMPT AND ABORT */
	pthread_mutex_lock(&g_gate.mu);
	g_gate.hold = 0;
	pthread_mutex_unlock(&g_gate.mu);
	cr_assert_eq(ts_iscsi_file_lun_ops()->write(g_gate.fl, g_gate.held[0]), 0);
	service(a, 5000, &wa, NULL);
	cr_assert_eq(wa, 1);
	service(b, 5000, &pa, NULL);
	cr_assert_eq(pa, 1);
	cr_assert_eq(ua_of(a), 0x2a05);
	cr_assert_eq(write1(a, NULL), SCSI_STATUS_RESERVATION_CONFLICT);
	cr_assert_eq(write1(b, NULL), SCSI_STATUS_GOOD);
	logout(a);
	logout(b);
	stop();
	g_gate.nheld = 0;
}

/* Bitwise CRC32C (Castagnoli, reflected), independent of ISA-L. */
static uint32_t ref_crc32c(const uint8_t *p, size_t n)
{
	uint32_t crc = 0xffffffffu;
	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xffffffffu;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void recv_all(int fd, uint8_t *b, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = recv(fd, b + got, n - got, 0);
		cr_assert_gt(r, 0, "short read");
		got += (size_t)r;
	}
}

static void raw_nop(int fd, const char *payload, bool corrupt)
{
	uint8_t pdu[48 + 4 + 16 + 4] = { 0 };
	size_t dl = strlen(payload), padded = (dl + 3) & ~(size_t)3;
	pdu[0] = 0x40; /* immediate NOP-Out */
	pdu[1] = 0x80;
	pdu[7] = (uint8_t)dl;
	pdu[19] = 2;   /* ITT */
	memset(pdu + 20, 0xff, 4);
	put_le32(pdu + 48, ref_crc32c(pdu, 48));
	memcpy(pdu + 52, payload, dl);
	put_le32(pdu + 52 + padded, ref_crc32c(pdu + 52, padded) ^ (corrupt ? 1u : 0u));
	cr_assert_eq(send(fd, pdu, 52 + padded + 4, 0), (ssize_t)(52 + padded + 4));
}

/* Raw login with CRC32C header and data digests, then digest-checked NOP ping-pong. */
Test(iscsi, data_digest_raw)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	start(&to, NULL);
	int fd = raw_connect();
	char keys[256];
	int kl = snprintf(keys, sizeof(keys), "InitiatorName=%s%cTargetName=%s%cSessionType=Normal%c"
			  "HeaderDigest=CRC32C%cDataDigest=CRC32C%c", INAME, 0, IQN, 0, 0, 0, 0);
	uint8_t login[48 + 256] = { 0x43, 0x87 }; /* operational -> full feature */
	login[7] = (uint8_t)kl;
	login[8] = 0x80; login[13] = 1;             /* ISID */
	login[19] = 1;                               /* ITT */
	memcpy(login + 48, keys, (size_t)kl);
	size_t ll = 48 + (((size_t)kl + 3) & ~(size_t)3);
	cr_assert_eq(send(fd, login, ll, 0), (ssize_t)ll);
	uint8_t rsp[48];
	recv_all(fd, rsp, 48);
	cr_assert_eq(rsp[0] & 0x3f, 0x23);
	cr_assert_eq(rsp[36], 0, "login status class %u", rsp[36]);
	cr_assert(rsp[1] & 0x80);
	uint32_t dsl = (uint32_t)rsp[5] << 16 | (uint32_t)rsp[6] << 8 | rsp[7];
	uint8_t text[1024];
	cr_assert_leq(dsl, sizeof(text));
	recv_all(fd, text, (dsl + 3) & ~3u);
	bool hd = false, dd = false;
	for (uint32_t off = 0; off < dsl; off += (uint32_t)strlen((char *)text + off) + 1) {
		hd |= !strcmp((char *)text + off, "HeaderDigest=CRC32C");
		dd |= !strcmp((char *)text + off, "DataDigest=CRC32C");
	}
	cr_assert(hd && dd, "digests not accepted");

	raw_nop(fd, "hello", false);
	uint8_t in[48 + 4 + 8 + 4];
	recv_all(fd, in, sizeof(in));
	cr_assert_eq(in[0] & 0x3f, 0x20);                      /* NOP-In */
	cr_assert_eq(get_le32(in + 48), ref_crc32c(in, 48));    /* header digest */
	cr_assert_eq(in[7], 5);
	cr_assert_eq(memcmp(in + 52, "hello", 5), 0);
	cr_assert_eq(get_le32(in + 60), ref_crc32c(in + 52, 8)); /* data digest over data + pad */

	/* a wrong data digest drops the connection */
	raw_nop(fd, "world", true);
	expect_closed(fd);
	stop();
}

struct redirect_map {
	const char *iqn, *addr; /* where iqn lives; addr NULL: "not known" */
	unsigned calls;
};

static int redirect_hook(void *ctx, const char *iqn, char *addr, size_t len)
{
	struct redirect_map *m = ctx;

	m->calls++;
	if (strcmp(iqn, m->iqn) || !m->addr)
		return -ENOENT;
	snprintf(addr, len, "%s", m->addr);
	return 0;
}

/* "host:port" or "host:port,tpgt" (what libiscsi keeps after a redirect) is \p portal */
static bool same_portal(const char *addr, const char *portal)
{
	size_t n = strlen(portal);

	return addr && !strncmp(addr, portal, n) && (addr[n] == 0 || addr[n] == ',');
}

static struct iscsi_context *login_at(const char *portal, const char *iqn)
{
	struct iscsi_context *ctx = iscsi_create_context(INAME);

	cr_assert_not_null(ctx);
	iscsi_set_targetname(ctx, iqn);
	iscsi_set_session_type(ctx, ISCSI_SESSION_NORMAL);
	if (iscsi_full_connect_sync(ctx, portal, 0) != 0) {
		iscsi_destroy_context(ctx);
		return NULL;
	}
	return ctx;
}

Test(iscsi, login_redirected_to_the_portal_that_serves_the_target)
{
	struct ts_iscsi_target_opts to = { .iqn = IQN };
	struct redirect_map map = { .iqn = IQN };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .threads = 1,
					   .redirect = redirect_hook, .redirect_ctx = &map };
	struct ts_iscsi_server *front;
	struct iscsi_context *ctx;
	char fportal[64];

	start(&to, NULL); /* g_srv serves IQN */
	cr_assert_eq(ts_iscsi_server_create(&so, &front), 0);
	snprintf(fportal, sizeof(fportal), "127.0.0.1:%u", ts_iscsi_server_port(front));
	map.addr = g_portal;

	ctx = login_at(fportal, IQN);
	cr_assert_not_null(ctx, "login through the redirecting portal failed");
	cr_assert_eq(map.calls, 1);
	cr_assert_eq(tur(ctx), SCSI_STATUS_GOOD);
	/* the session is on the serving portal, not the front one */
	cr_assert(same_portal(iscsi_get_target_address(ctx), g_portal), "%s",
		  iscsi_get_target_address(ctx));
	logout(ctx);

	/* a target nobody knows: refused, not redirected */
	cr_assert_null(login_at(fportal, "iqn.2026-01.io.tessera:nowhere"));
	cr_assert_eq(map.calls, 2);
	/* the hook does not know where IQN is now: refused */
	map.addr = NULL;
	cr_assert_null(login_at(fportal, IQN));
	/* a hook answer that is not host:port, or would break the key syntax: refused */
	static const char *const bad[] = { "", "no-port", "1.2.3.4:3260,2", "a b:1", "x=y:1" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		map.addr = bad[i];
		cr_assert_null(login_at(fportal, IQN), "redirect to '%s' accepted", bad[i]);
	}
	/* a target the front portal serves itself is never redirected */
	map.addr = g_portal;
	map.calls = 0;
	cr_assert_eq(ts_iscsi_target_add(front, &to), 0);
	struct ts_iscsi_file_lun *fl;
	struct ts_iscsi_lun_info info = { .size = 8 << 20, .block_size = 512 };

	memset(info.uuid, 0x6b, 16);
	cr_assert_eq(ts_iscsi_file_lun_create(NULL, 8 << 20, 0, &fl), 0);
	cr_assert_eq(ts_iscsi_lun_add(front, IQN, 0, ts_iscsi_file_lun_ops(), fl, &info), 0);
	ctx = login_at(fportal, IQN);
	cr_assert_not_null(ctx);
	cr_assert_eq(map.calls, 0, "the hook was asked about a target served here");
	cr_assert_eq(tur(ctx), SCSI_STATUS_GOOD);
	logout(ctx);
	ts_iscsi_server_destroy(front);
	stop();
}
