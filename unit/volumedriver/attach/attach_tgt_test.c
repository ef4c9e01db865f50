/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The user-space attach path against a real iSCSI target: tgt on a private
 * loopback portal (e2e/lib/tgt.sh), one tgtd per test, file-backed LUN.
 *
 * What is checked: a file system made and filled through the loop device
 * survives detach and re-attach; unaligned writes through the FUSE file land
 * byte-exact (compared with a model, with the loop device's view and with
 * the target's backing file); CHAP with a wrong secret is refused and leaves
 * nothing behind; mutual CHAP verifies the target; IO issued while the
 * target is down completes once it is back on the same portal; and after
 * every close no loop device, mount or directory is left.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach.h"
#include "volumedriver/attach/attach_priv.h"

#define IQN "iqn.2026-11.io.tessera:attach-test"
#define LUN_SIZE (64u << 20)

static char g_dir[256];
static char g_img[300];
static int g_port;

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static void tgt_start_at(int port)
{
	char env[320], line[128];
	FILE *f;

	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh start %s %s >/dev/null", TS_SOURCE_DIR, g_dir,
			port ? (snprintf(line, sizeof(line), "%d", port), line) : ""),
		     0, "tgtd did not start");
	snprintf(env, sizeof(env), "%s/tgt.env", g_dir);
	f = fopen(env, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "TGT_PORT=", 9))
			g_port = atoi(line + 9);
	fclose(f);
	cr_assert_gt(g_port, 0);
	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh target %s 1 %s %s", TS_SOURCE_DIR, g_dir, IQN, g_img), 0);
}

static void tgt_stop(void)
{
	sh("%s/e2e/lib/tgt-ctl.sh stop %s", TS_SOURCE_DIR, g_dir);
}

static void setup(void)
{
	int fd;

	if (geteuid() != 0 || access("/usr/sbin/tgtd", X_OK) || access("/dev/fuse", F_OK) ||
	    access("/dev/loop-control", F_OK))
		cr_skip_test("needs root, tgtd, /dev/fuse and /dev/loop-control");
	snprintf(g_dir, sizeof(g_dir), "/tmp/ts-attach-test-XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	snprintf(g_img, sizeof(g_img), "%s/lun.img", g_dir);
	fd = open(g_img, O_CREAT | O_RDWR, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, LUN_SIZE), 0);
	close(fd);
	tgt_start_at(0);
}

static void teardown(void)
{
	tgt_stop();
	sh("rm -rf %s", g_dir);
}

static void opts_init(struct ts_attach_opts *o, char *url, size_t urllen)
{
	snprintf(url, urllen, "iscsi://127.0.0.1:%d/%s/1", g_port, IQN);
	memset(o, 0, sizeof(*o));
	o->url = url;
	o->mount_parent = g_dir;
	o->io_timeout_s = 10;
}

/* After close: the loop device is unbound, the FUSE mount and its directory gone. */
static void assert_nothing_left(const char *dev, const char *file)
{
	char sys[128], dir[512], line[1024];
	FILE *f;

	snprintf(sys, sizeof(sys), "/sys/block/%s/loop/backing_file", dev + 5);
	f = fopen(sys, "r");
	if (f) { /* bound: fine if another test took the device since, not if it is still ours */
		if (fgets(line, sizeof(line), f)) {
			line[strcspn(line, "\n")] = '\0';
			cr_assert_str_neq(line, file, "%s still bound", dev);
		}
		fclose(f);
	}
	snprintf(dir, sizeof(dir), "%s", file);
	*strrchr(dir, '/') = '\0';
	cr_assert(access(dir, F_OK) != 0, "mount dir %s still there", dir);
	f = fopen("/proc/self/mountinfo", "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		cr_assert_null(strstr(line, dir), "still mounted: %s", line);
	fclose(f);
}

static void fill(uint8_t *buf, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i++) {
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		buf[i] = (uint8_t)(seed >> 56);
	}
}

TestSuite(attach_tgt, .init = setup, .fini = teardown, .timeout = 120);

Test(attach_tgt, filesystem_survives_reattach)
{
	static const size_t sizes[] = { 1, 4095, 4096, 100000, 3u << 20 };
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256], mnt[300], dev[32], file[512], path[400];
	uint8_t *buf, *back;

	opts_init(&o, url, sizeof(url));
	snprintf(mnt, sizeof(mnt), "%s/mnt", g_dir);
	cr_assert_eq(mkdir(mnt, 0700), 0);
	buf = malloc(3u << 20);
	back = malloc(3u << 20);

	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(ts_attach_size(a), LUN_SIZE);
	cr_assert_eq(ts_attach_block_size(a), 512);
	snprintf(dev, sizeof(dev), "%s", ts_attach_device_path(a));
	snprintf(file, sizeof(file), "%s", ts_attach_file_path(a));
	cr_assert_eq(strncmp(dev, "/dev/loop", 9), 0);
	cr_assert_eq(sh("mkfs.ext4 -q -F -E nodiscard %s", dev), 0);
	cr_assert_eq(mount(dev, mnt, "ext4", 0, NULL), 0, "mount: %s", strerror(errno));
	for (size_t i = 0; i < TS_ARRAY_SIZE(sizes); i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/f%zu", mnt, i);
		fd = open(path, O_CREAT | O_WRONLY, 0644);
		cr_assert_geq(fd, 0);
		fill(buf, sizes[i], i + 1);
		cr_assert_eq(ts_pwrite_full(fd, buf, sizes[i], 0), 0);
		cr_assert_eq(fsync(fd), 0);
		close(fd);
	}
	cr_assert_eq(ts_attach_close(a), -EBUSY, "detach must refuse while mounted");
	cr_assert_eq(umount(mnt), 0);
	cr_assert_eq(ts_attach_close(a), 0);
	assert_nothing_left(dev, file);

	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(mount(ts_attach_device_path(a), mnt, "ext4", MS_RDONLY, NULL), 0);
	for (size_t i = 0; i < TS_ARRAY_SIZE(sizes); i++) {
		struct stat st;
		int fd;

		snprintf(path, sizeof(path), "%s/f%zu", mnt, i);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0, "%s missing after re-attach", path);
		cr_assert_eq(fstat(fd, &st), 0);
		cr_assert_eq((size_t)st.st_size, sizes[i]);
		fill(buf, sizes[i], i + 1);
		cr_assert_eq(ts_pread_full(fd, back, sizes[i], 0), 0);
		cr_assert_eq(memcmp(buf, back, sizes[i]), 0, "%s differs", path);
		close(fd);
	}
	cr_assert_eq(umount(mnt), 0);
	snprintf(dev, sizeof(dev), "%s", ts_attach_device_path(a));
	snprintf(file, sizeof(file), "%s", ts_attach_file_path(a));
	cr_assert_eq(ts_attach_close(a), 0);
	assert_nothing_left(dev, file);
	free(buf);
	free(back);
}

/* Random unaligned writes through the FUSE file, checked against a model and two other views. */
Test(attach_tgt, unaligned_pattern_through_file)
{
	const size_t span = 4u << 20; /* exercise the first 4 MiB and the last bytes of the LUN */
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256];
	uint8_t *model, *back, *piece;
	uint64_t seed = 99;
	int fd, dfd, bfd;

	opts_init(&o, url, sizeof(url));
	model = calloc(1, span);
	back = malloc(span);
	piece = malloc(70000);
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	fd = open(ts_attach_file_path(a), O_RDWR);
	cr_assert_geq(fd, 0);
	for (int i = 0; i < 400; i++) {
		uint64_t off, len;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		len = 1 + (seed >> 33) % 70000;
		off = (seed >> 7) % (span - len);
		if (i % 50 == 0)
			off = (off & ~511ull) + 511; /* straddle a block boundary by one byte */
		fill(piece, len, seed);
		cr_assert_eq(pwrite(fd, piece, len, (off_t)off), (ssize_t)len, "write %d: %s", i,
			     strerror(errno));
		memcpy(model + off, piece, len);
		if (i % 20 == 0) { /* unaligned reads of fresh data */
			cr_assert_eq(pread(fd, back, len, (off_t)off), (ssize_t)len);
			cr_assert_eq(memcmp(back, piece, len), 0, "read-back %d differs", i);
		}
	}
	/* The last 3 bytes of the LUN, and writes past its end. */
	cr_assert_eq(pwrite(fd, "xyz", 3, LUN_SIZE - 3), 3);
	cr_assert_eq(pwrite(fd, "xyz", 3, LUN_SIZE - 1), 1, "a write is cut at the end of the LUN");
	cr_assert_eq(pwrite(fd, "xyz", 3, LUN_SIZE), -1);
	cr_assert_eq(errno, ENOSPC);
	cr_assert_eq(pread(fd, back, 10, LUN_SIZE - 3), 3);
	cr_assert_eq(memcmp(back, "xyx", 3), 0);
	cr_assert_eq(fsync(fd), 0);

	cr_assert_eq(ts_pread_full(fd, back, span, 0), 0);
	cr_assert_eq(memcmp(back, model, span), 0, "FUSE file differs from the model");
	dfd = open(ts_attach_device_path(a), O_RDONLY | O_DIRECT);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(ts_pread_full(dfd, back, span, 0), 0);
	cr_assert_eq(memcmp(back, model, span), 0, "loop device differs from the model");
	close(dfd);
	bfd = open(g_img, O_RDONLY);
	cr_assert_eq(ts_pread_full(bfd, back, span, 0), 0);
	cr_assert_eq(memcmp(back, model, span), 0, "target's backing file differs from the model");
	close(bfd);
	close(fd);
	cr_assert_eq(ts_attach_close(a), 0);
	free(model);
	free(back);
	free(piece);
}

Test(attach_tgt, chap_wrong_secret_refused)
{
	struct ts_attach_opts o;
	struct ts_attach *a = NULL;
	char url[256];

	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh chap %s 1 alice alice-secret-1", TS_SOURCE_DIR, g_dir), 0);
	opts_init(&o, url, sizeof(url));
	cr_assert_eq(ts_attach_open(&o, &a), -EACCES, "no credentials");
	o.chap_user = "alice";
	o.chap_secret = "not-alices-secret";
	cr_assert_eq(ts_attach_open(&o, &a), -EACCES, "wrong secret");
	cr_assert_null(a);
	cr_assert_eq(sh("test -z \"$(ls -A %s | grep att-)\"", g_dir), 0, "failed opens left a mount dir");

	o.chap_secret = "alice-secret-1";
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(ts_attach_close(a), 0);

	/* Credentials in the URL work the same way. */
	snprintf(url, sizeof(url), "iscsi://alice%%alice-secret-1@127.0.0.1:%d/%s/1", g_port, IQN);
	o.chap_user = o.chap_secret = NULL;
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(ts_attach_close(a), 0);
}

Test(attach_tgt, mutual_chap_verifies_target)
{
	struct ts_attach_opts o;
	struct ts_attach *a = NULL;
	char url[256];

	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh chap %s 1 bob bob-secret-12", TS_SOURCE_DIR, g_dir), 0);
	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh chap-mutual %s 1 tgt-bob target-secret-34", TS_SOURCE_DIR,
			g_dir), 0);
	opts_init(&o, url, sizeof(url));
	o.chap_user = "bob";
	o.chap_secret = "bob-secret-12";
	o.target_user = "tgt-bob";
	o.target_secret = "a-different-secret";
	cr_assert_neq(ts_attach_open(&o, &a), 0, "a target that cannot prove the secret is refused");
	cr_assert_null(a);
	o.target_secret = "target-secret-34";
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(ts_attach_close(a), 0);
}

struct bg_io {
	int fd;
	const uint8_t *buf;
	size_t len;
	ssize_t wrote, read;
	uint8_t *back;
};

static void *bg_write(void *arg)
{
	struct bg_io *b = arg;

	b->wrote = pwrite(b->fd, b->buf, b->len, 12345);
	b->read = pread(b->fd, b->back, b->len, 12345);
	return NULL;
}

/* The target goes away with IO pending and comes back on the same portal. */
Test(attach_tgt, io_survives_target_restart)
{
	struct ts_attach_opts o;
	struct ts_attach *a;
	struct bg_io b = { 0 };
	char url[256];
	uint8_t *buf;
	pthread_t t;
	int port = g_port;

	opts_init(&o, url, sizeof(url));
	o.io_timeout_s = 60;
	buf = malloc(200000);
	b.back = malloc(200000);
	fill(buf, 200000, 7);
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	b.fd = open(ts_attach_file_path(a), O_RDWR);
	cr_assert_geq(b.fd, 0);
	cr_assert_eq(pwrite(b.fd, buf, 1000, 0), 1000);

	tgt_stop();
	b.buf = buf;
	b.len = 200000;
	cr_assert_eq(pthread_create(&t, NULL, bg_write, &b), 0);
	usleep(300 * 1000); /* let the write reach the dead session */
	tgt_start_at(port);
	pthread_join(t, NULL);
	cr_assert_eq(b.wrote, 200000, "write across the restart: %zd", b.wrote);
	cr_assert_eq(b.read, 200000);
	cr_assert_eq(memcmp(b.back, buf, 200000), 0);
	cr_assert_eq(pread(b.fd, b.back, 1000, 0), 1000);
	cr_assert_eq(memcmp(b.back, buf, 1000), 0, "data written before the restart");
	close(b.fd);
	cr_assert_eq(ts_attach_close(a), 0);
	free(buf);
	free(b.back);
}

/* ---- the LUN engine alone: many overlapping unaligned IOs in flight at once ---- */

#define REGION 65536
#define NIO 96

struct eng_io {
	uint8_t data[4000];
	uint8_t expect[4000]; /* reads: the model when the read was submitted */
	uint64_t off, len;
	enum lun_op op;
	long status;
	int done;
};

static int g_done;

static void eng_cb(void *arg, long status)
{
	struct eng_io *e = arg;

	e->status = status;
	e->done = 1;
	g_done++;
}

static void eng_run(struct lun *l)
{
	for (int spins = 0; lun_pending(l) && spins < 10000; spins++) {
		struct pollfd p = { .fd = lun_fd(l), .events = (short)lun_events(l) };

		if (poll(&p, p.events ? 1 : 0, 100) < 0)
			break;
		cr_assert_eq(lun_service(l, p.revents), 0);
	}
	cr_assert_eq(lun_pending(l), 0, "IOs never completed");
}

/*
 * Writes, reads and a flush to one 64 KiB region, all submitted before any
 * completes. Overlapping requests must behave as if run in submission order:
 * every read sees exactly the writes submitted before it, and the region
 * ends as the model says (no update lost by two read-modify-writes of one
 * block racing).
 */
Test(attach_tgt, engine_orders_overlapping_requests)
{
	struct ts_attach_opts o;
	struct lun *l = NULL;
	struct eng_io *ios;
	uint8_t *model, *final;
	char url[256];
	uint64_t seed = 4242;
	struct eng_io fl = { .op = LUN_FLUSH }, rd = { .op = LUN_READ };

	opts_init(&o, url, sizeof(url));
	cr_assert_eq(lun_connect(&o, &l), 0);
	ios = calloc(NIO, sizeof(*ios));
	model = calloc(1, REGION);
	final = malloc(REGION);
	g_done = 0;
	for (int i = 0; i < NIO; i++) {
		struct eng_io *e = &ios[i];

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		e->len = 1 + (seed >> 40) % sizeof(e->data);
		e->off = (seed >> 8) % (REGION - e->len);
		e->op = i % 4 == 3 ? LUN_READ : LUN_WRITE;
		if (e->op == LUN_WRITE) {
			fill(e->data, e->len, seed);
			memcpy(model + e->off, e->data, e->len);
		} else {
			memcpy(e->expect, model + e->off, e->len);
		}
		cr_assert_eq(lun_submit(l, e->op, e->off, e->len, e->data, eng_cb, e), 0);
		if (i == NIO / 2)
			cr_assert_eq(lun_submit(l, LUN_FLUSH, 0, 0, NULL, eng_cb, &fl), 0);
	}
	eng_run(l);
	cr_assert_eq(g_done, NIO + 1);
	cr_assert_eq(fl.status, 0);
	for (int i = 0; i < NIO; i++) {
		cr_assert_eq(ios[i].status, (long)ios[i].len, "io %d status %ld", i, ios[i].status);
		if (ios[i].op == LUN_READ)
			cr_assert_eq(memcmp(ios[i].data, ios[i].expect, ios[i].len), 0,
				     "read %d saw writes out of order", i);
	}
	rd.done = 0;
	cr_assert_eq(lun_submit(l, LUN_READ, 0, REGION, final, eng_cb, &rd), 0);
	eng_run(l);
	cr_assert_eq(rd.status, REGION);
	cr_assert_eq(memcmp(final, model, REGION), 0, "an update was lost");
	cr_assert_eq(lun_submit(l, LUN_READ, LUN_SIZE - 10, 11, final, eng_cb, &rd), -EINVAL,
		     "past the end");
	lun_disconnect(l);
	free(ios);
	free(model);
	free(final);
}

Test(attach_tgt, read_only_attach)
{
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256], buf[600];
	int fd, ro = 0;

	/* Put known bytes on the LUN through the target's backing file. */
	fd = open(g_img, O_WRONLY);
	cr_assert_geq(fd, 0);
	memset(buf, 0x5c, sizeof(buf));
	cr_assert_eq(ts_pwrite_full(fd, buf, sizeof(buf), 1000), 0);
	close(fd);
	opts_init(&o, url, sizeof(url));
	o.read_only = true;
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(open(ts_attach_file_path(a), O_RDWR), -1);
	cr_assert_eq(errno, EROFS);
	fd = open(ts_attach_device_path(a), O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ioctl(fd, BLKROGET, &ro), 0);
	cr_assert_eq(ro, 1, "loop device must be read-only");
	close(fd);
	fd = open(ts_attach_file_path(a), O_RDONLY);
	cr_assert_geq(fd, 0);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(pread(fd, buf, 600, 1000), 600);
	for (int i = 0; i < 600; i++)
		cr_assert_eq((uint8_t)buf[i], 0x5c);
	close(fd);
	cr_assert_eq(ts_attach_close(a), 0);
}

/* Detach must complete, and leave nothing, when the target is already gone. */
Test(attach_tgt, detach_after_target_died)
{
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256], dev[32], file[512];

	opts_init(&o, url, sizeof(url));
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	snprintf(dev, sizeof(dev), "%s", ts_attach_device_path(a));
	snprintf(file, sizeof(file), "%s", ts_attach_file_path(a));
	tgt_stop();
	cr_assert_eq(ts_attach_close(a), 0);
	assert_nothing_left(dev, file);
}

static long backing_blocks(void)
{
	struct stat st;

	cr_assert_eq(stat(g_img, &st), 0);
	return (long)st.st_blocks;
}

/*
 * Discard: PUNCH_HOLE through the file (unaligned edges zeroed, whole blocks
 * UNMAPped: tgt punches them out of its backing file) and BLKDISCARD on the
 * loop device; without thin provisioning on the LUN, EOPNOTSUPP.
 */
Test(attach_tgt, discard_unmaps_and_zeroes)
{
	const size_t len = 2u << 20;
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256];
	uint8_t *pat, *back;
	uint64_t range[2] = { 1u << 20, 512u << 10 };
	long before;
	int fd, dfd;

	pat = malloc(len);
	back = malloc(len);
	fill(pat, len, 5);
	opts_init(&o, url, sizeof(url));

	cr_assert_eq(ts_attach_open(&o, &a), 0);
	fd = open(ts_attach_file_path(a), O_RDWR);
	cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), -1);
	cr_assert_eq(errno, EOPNOTSUPP, "no thin provisioning: no discard");
	close(fd);
	cr_assert_eq(ts_attach_close(a), 0);

	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh thin %s 1", TS_SOURCE_DIR, g_dir), 0);
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	fd = open(ts_attach_file_path(a), O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ts_pwrite_full(fd, pat, len, 0), 0);
	cr_assert_eq(fsync(fd), 0);
	before = backing_blocks();

	/* Unaligned: [1000, 1000 + 300000) */
	cr_assert_eq(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 1000, 300000), 0,
		     "%s", strerror(errno));
	memset(pat + 1000, 0, 300000);
	/* Inside two blocks, no whole block: zeroes only. */
	cr_assert_eq(fallocate(fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 400000 + 100, 700), 0);
	memset(pat + 400000 + 100, 0, 700);
	/* Through the block device: [1 MiB, 1.5 MiB) */
	dfd = open(ts_attach_device_path(a), O_RDWR);
	cr_assert_geq(dfd, 0);
	cr_assert_eq(ioctl(dfd, BLKDISCARD, range), 0, "BLKDISCARD: %s", strerror(errno));
	close(dfd);
	memset(pat + range[0], 0, range[1]);

	cr_assert_eq(ts_pread_full(fd, back, len, 0), 0);
	cr_assert_eq(memcmp(back, pat, len), 0, "discarded ranges must read as zeroes, the rest intact");
	cr_assert_lt(backing_blocks(), before - (long)((range[1] + 290000) / 512),
		     "tgt must have deallocated the unmapped blocks");
	close(fd);
	cr_assert_eq(ts_attach_close(a), 0);
	free(pat);
	free(back);
}

/* A 4096-byte-block LUN: the loop device takes its block size; RMW works at that granularity. */
Test(attach_tgt, block_size_4096)
{
	struct ts_attach_opts o;
	struct ts_attach *a;
	char url[256], img[400], sys[128], line[32];
	uint8_t *model, *back;
	const size_t span = 1u << 20;
	FILE *f;
	int fd, dfd;

	snprintf(img, sizeof(img), "%s/lun4k.img", g_dir);
	fd = open(img, O_CREAT | O_RDWR, 0600);
	cr_assert_eq(ftruncate(fd, 16u << 20), 0);
	close(fd);
	cr_assert_eq(sh("%s/e2e/lib/tgt-ctl.sh target %s 2 %s-4k %s 4096", TS_SOURCE_DIR, g_dir, IQN, img), 0);
	opts_init(&o, url, sizeof(url));
	snprintf(url, sizeof(url), "iscsi://127.0.0.1:%d/%s-4k/1", g_port, IQN);
	cr_assert_eq(ts_attach_open(&o, &a), 0);
	cr_assert_eq(ts_attach_block_size(a), 4096);
	snprintf(sys, sizeof(sys), "/sys/block/%s/queue/logical_block_size", ts_attach_device_path(a) + 5);
	f = fopen(sys, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(line, sizeof(line), f));
	fclose(f);
	cr_assert_eq(atoi(line), 4096);

	model = calloc(1, span);
	back = aligned_alloc(4096, span);
	fd = open(ts_attach_file_path(a), O_RDWR);
	for (int i = 0; i < 60; i++) {
		uint64_t off = (uint64_t)i * 16411 % (span - 9000), len = 1 + (uint64_t)i * 137 % 9000;
		uint8_t piece[9000];

		fill(piece, len, (uint64_t)i + 100);
		cr_assert_eq(pwrite(fd, piece, len, (off_t)off), (ssize_t)len);
		memcpy(model + off, piece, len);
	}
	cr_assert_eq(fsync(fd), 0);
	close(fd);
	dfd = open(ts_attach_device_path(a), O_RDONLY | O_DIRECT);
	cr_assert_eq(ts_pread_full(dfd, back, span, 0), 0);
	close(dfd);
	cr_assert_eq(memcmp(back, model, span), 0);
	cr_assert_eq(ts_attach_close(a), 0);
	free(model);
	free(back);
}
