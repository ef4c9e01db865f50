/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Unit tests of the attach module's pure logic: block spans, the conflict
 * rule that orders IOs in the LUN engine, libiscsi error classification and
 * option validation; and how a login fails when the portal cannot be
 * reached (loopback sockets only: a closed port, a listener that never
 * answers). No root. The engine's .c is included to reach its static
 * functions.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "volumedriver/attach/lun.c"

Test(attach_span, aligned_and_unaligned)
{
	struct attach_span s;

	s = attach_span_of(0, 4096, 512);
	cr_assert(s.aligned);
	cr_assert_eq(s.lba, 0);
	cr_assert_eq(s.nblocks, 8);

	s = attach_span_of(1, 1, 512); /* one byte inside block 0 */
	cr_assert(!s.aligned);
	cr_assert_eq(s.lba, 0);
	cr_assert_eq(s.nblocks, 1);

	s = attach_span_of(511, 2, 512); /* straddles blocks 0 and 1 */
	cr_assert(!s.aligned);
	cr_assert_eq(s.lba, 0);
	cr_assert_eq(s.nblocks, 2);

	s = attach_span_of(4096, 100, 4096);
	cr_assert(!s.aligned);
	cr_assert_eq(s.lba, 1);
	cr_assert_eq(s.nblocks, 1);

	s = attach_span_of(8192 - 1, 4096 + 2, 4096); /* tail of 1, all of 2, head of 3 */
	cr_assert_eq(s.lba, 1);
	cr_assert_eq(s.nblocks, 3);
}

/* Every byte of [off, off+len) lies in the span, and the span has no spare block at either end. */
Test(attach_span, random_ranges_are_tight)
{
	uint64_t seed = 12345;

	for (int i = 0; i < 100000; i++) {
		uint32_t bs = 512u << (i % 4);
		uint64_t off, len;
		struct attach_span s;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		off = (seed >> 20) % (1u << 24);
		len = 1 + (seed >> 44) % 70000;
		s = attach_span_of(off, len, bs);
		cr_assert_leq(s.lba * bs, off);
		cr_assert_geq((s.lba + s.nblocks) * bs, off + len);
		cr_assert_gt((s.lba + 1) * bs, off);
		cr_assert_lt((s.lba + s.nblocks - 1) * bs, off + len);
		cr_assert_eq(s.aligned, off % bs == 0 && len % bs == 0);
	}
}

static struct lun_io mk(enum lun_op op, uint64_t lba, uint64_t n)
{
	struct lun_io io = { .op = op };
	io.span.lba = lba;
	io.span.nblocks = n;
	return io;
}

Test(attach_conflict, rules)
{
	struct lun_io r1 = mk(LUN_READ, 0, 8), r2 = mk(LUN_READ, 4, 8);
	struct lun_io w1 = mk(LUN_WRITE, 7, 1), w2 = mk(LUN_WRITE, 8, 4), w3 = mk(LUN_WRITE, 100, 1);
	struct lun_io f1 = mk(LUN_FLUSH, 0, 1000), f2 = mk(LUN_FLUSH, 0, 1000);

	cr_assert(!io_conflicts(&r1, &r2), "overlapping reads run together");
	cr_assert(io_conflicts(&r1, &w1) && io_conflicts(&w1, &r1), "read vs overlapping write");
	cr_assert(!io_conflicts(&r1, &w2), "adjacent ranges do not overlap");
	cr_assert(io_conflicts(&r2, &w2));
	cr_assert(!io_conflicts(&w1, &w2));
	cr_assert(io_conflicts(&w3, &f1) && io_conflicts(&f1, &w3), "flush waits for every write");
	cr_assert(!io_conflicts(&r1, &f1), "reads pass a flush");
	cr_assert(!io_conflicts(&f1, &f2));
}

Test(attach_conflict, unmap_is_a_write)
{
	struct lun_io u = mk(LUN_UNMAP, 10, 10), r = mk(LUN_READ, 19, 1), w = mk(LUN_WRITE, 5, 5);
	struct lun_io f = mk(LUN_FLUSH, 0, 1000), far = mk(LUN_READ, 20, 4);

	cr_assert(io_conflicts(&u, &r) && io_conflicts(&r, &u));
	cr_assert(!io_conflicts(&u, &w), "adjacent");
	cr_assert(!io_conflicts(&u, &far));
	cr_assert(io_conflicts(&u, &f) && io_conflicts(&f, &u), "a flush orders unmaps too");
}

Test(attach_errors, login_messages)
{
	cr_assert_eq(connect_errno("Failed to log in to target. Status: Authentication failure(513)"),
		     -EACCES);
	cr_assert_eq(connect_errno("Failed to log in to target. Status: Authorization failure(514)"),
		     -EACCES);
	cr_assert_eq(connect_errno("Failed to log in to target. Status: Target not found(515)"),
		     -ENOENT);
	cr_assert_eq(connect_errno("Failed to connect to iSCSI socket. Connection refused"),
		     -ECONNREFUSED);
	cr_assert_eq(connect_errno("command timed out"), -ETIMEDOUT);
	cr_assert_eq(connect_errno("iscsi_service_reconnect_if_loggedin. Can not reconnect right now."),
		     -ECONNRESET);
	cr_assert_eq(connect_errno(NULL), -EIO);
	cr_assert_eq(connect_errno("something else"), -EIO);
}

Test(attach_errors, sense_mapping)
{
	struct scsi_task t = { .status = SCSI_STATUS_CHECK_CONDITION };

	t.sense.key = SCSI_SENSE_DATA_PROTECTION;
	cr_assert_eq(sense_errno(&t), -EROFS);
	t.sense.key = SCSI_SENSE_ILLEGAL_REQUEST;
	cr_assert_eq(sense_errno(&t), -EINVAL);
	t.sense.key = SCSI_SENSE_MEDIUM_ERROR;
	cr_assert_eq(sense_errno(&t), -EIO);
	t.sense.key = SCSI_SENSE_UNIT_ATTENTION;
	cr_assert(status_transient(SCSI_STATUS_CHECK_CONDITION, &t));
	t.sense.key = SCSI_SENSE_MEDIUM_ERROR;
	cr_assert(!status_transient(SCSI_STATUS_CHECK_CONDITION, &t));
	cr_assert(status_transient(SCSI_STATUS_BUSY, NULL));
	cr_assert(status_transient(SCSI_STATUS_TIMEOUT, NULL));
	cr_assert(!status_transient(SCSI_STATUS_RESERVATION_CONFLICT, NULL));
}

Test(attach_opts, rejects_bad_input)
{
	struct ts_attach_opts o = { 0 };
	struct ts_attach *a = NULL;

	cr_assert_eq(ts_attach_open(NULL, &a), -EINVAL);
	cr_assert_eq(ts_attach_open(&o, &a), -EINVAL);
	o.url = "http://127.0.0.1/iqn.x/1";
	cr_assert_eq(ts_attach_open(&o, &a), -EINVAL);
	o.url = "iscsi://127.0.0.1:3260/iqn.2026-11.io.tessera:x/1";
	cr_assert_eq(ts_attach_open(&o, NULL), -EINVAL);
	cr_assert_null(a);
	cr_assert_eq(ts_attach_close(NULL), 0);
}

/* Mutual CHAP without CHAP, and URLs libiscsi cannot parse, fail before any network IO. */
Test(attach_opts, lun_connect_validates)
{
	struct ts_attach_opts o = { 0 };
	struct lun *l = NULL;

	o.url = "iscsi://127.0.0.1:1/iqn.2026-11.io.tessera:x/1";
	o.target_user = "t";
	o.target_secret = "s";
	cr_assert_eq(lun_connect(&o, &l), -EINVAL);
	o.target_user = NULL;
	o.url = "iscsi://127.0.0.1:1/no-lun-here";
	cr_assert_eq(lun_connect(&o, &l), -EINVAL);
	cr_assert_null(l);
}

/*
 * lun_connect() to a loopback portal on a free port that is bound but not
 * listening (every connect refused) or listening with nobody reading (the
 * kernel completes the handshake; the login is never answered).
 */
static int login_to_loopback(bool listening, int timeout_s)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct ts_attach_opts o = { 0 };
	struct lun *l = NULL;
	char url[128];
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	cr_assert_geq(fd, 0);
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (listening)
		cr_assert_eq(listen(fd, 1), 0);
	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%d/iqn.2026-11.io.tessera:x/0", ntohs(a.sin_port));
	o.url = url;
	o.io_timeout_s = timeout_s;
	o.reconnect_max = -1;
	rc = lun_connect(&o, &l);
	cr_assert_null(l);
	close(fd);
	return rc;
}

/* Nothing listens on the portal (a data plane that is down): refused, with its own errno. */
Test(attach_login, closed_port_is_refused)
{
	cr_assert_eq(login_to_loopback(false, 5), -ECONNREFUSED);
}

/*
 * A portal that takes the connection but never answers the login (a hung
 * target): the login gives up after the IO timeout with -ETIMEDOUT, instead
 * of waiting on its own or reporting a generic I/O error.
 */
Test(attach_login, silent_target_times_out, .timeout = 30)
{
	cr_assert_eq(login_to_loopback(true, 1), -ETIMEDOUT);
}
