/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The FUSE front: a private file system with one regular file, "lun", whose
 * bytes are the LUN's, served by one thread.
 *
 * Why one thread and a poll loop. The attach thread owns both the FUSE
 * session and the libiscsi context and waits on three descriptors: /dev/fuse
 * (requests from the kernel), the iSCSI socket, and an eventfd the closer
 * rings. Requests are never served synchronously: a read or write becomes
 * an asynchronous LUN IO and the FUSE reply is sent from its completion, so
 * the kernel may have many requests outstanding, the iSCSI socket is
 * serviced while FUSE is idle (NOP-Ins, reconnects, timeouts), and nothing
 * needs a lock. libfuse's reply functions may be called at any time after
 * the handler has returned.
 *
 * The file is opened with direct_io: every read and write reaches us, so
 * there is no second page cache under the loop device (which keeps its own
 * and has direct IO off), and data written through the file is visible
 * through the device at once. A write's data lives in libfuse's receive
 * buffer only until the handler returns, so it is copied.
 *
 * Teardown. The closer rings the eventfd; the thread waits until no LUN IO
 * is pending (at most STOP_DRAIN_NS, then pending IO fails with EIO), unmounts (libfuse then closes /dev/fuse, which is why the
 * unmount happens on this thread and not under its poll) and returns.
 *
 * THREAD SAFETY: attach_fuse_start()/attach_fuse_stop() from the owner of
 * the attach handle; everything else runs on the attach thread.
 */
#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "volumedriver/attach/attach_priv.h"

#define FILE_INO 2
#define FILE_NAME "lun"
#define STOP_DRAIN_NS (10ull * 1000 * 1000 * 1000) /* IO may finish this long after detach starts */

struct attach_fuse {
	struct lun *lun;
	struct fuse_session *se;
	pthread_t thread;
	bool thread_started;
	bool read_only;
	int stop_fd;
	char dir[PATH_MAX];
	char file[PATH_MAX];
};

struct fuse_io {
	fuse_req_t req;
	enum lun_op op;
	uint8_t *buf;
};

static void fill_attr(struct attach_fuse *f, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = getuid();
	st->st_gid = getgid();
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0700;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | (f->read_only ? 0400 : 0600);
		st->st_nlink = 1;
		st->st_size = (off_t)lun_size(f->lun);
		st->st_blksize = lun_block_size(f->lun);
		st->st_blocks = (blkcnt_t)(lun_size(f->lun) / 512);
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	struct fuse_entry_param e;

	if (parent != FUSE_ROOT_ID || strcmp(name, FILE_NAME)) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = FILE_INO;
	e.attr_timeout = 3600;
	e.entry_timeout = 3600;
	fill_attr(f, FILE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != FILE_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(f, ino, &st);
	fuse_reply_attr(req, &st, 3600);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);

	/* The size is the LUN's: truncation (O_TRUNC included) is refused. */
	if ((to_set & FUSE_SET_ATTR_SIZE) && (ino != FILE_INO || (uint64_t)attr->st_size != lun_size(f->lun))) {
		fuse_reply_err(req, EPERM);
		return;
	}
	op_getattr(req, ino, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	static const char *const names[] = { ".", "..", FILE_NAME };
	char buf[512];
	size_t used = 0;

	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	for (off_t i = off; i < (off_t)TS_ARRAY_SIZE(names); i++) {
		struct stat st;
		size_t n;

		fill_attr(f, i == 2 ? FILE_INO : FUSE_ROOT_ID, &st);
		n = fuse_add_direntry(req, buf + used, TS_MIN(size, sizeof(buf)) - used, names[i], &st,
				      i + 1);
		if (n > TS_MIN(size, sizeof(buf)) - used)
			break;
		used += n;
	}
	fuse_reply_buf(req, buf, used);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);

	if (ino != FILE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	if (f->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->direct_io = 1;
	fi->keep_cache = 0;
	/*
	 * No FLUSH at close: there is nothing to flush, and a process that dies
	 * with the file open while serving it itself (a test, a debug tool)
	 * would otherwise wait forever in exit for its own reply.
	 */
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void io_complete(void *arg, long status)
{
	struct fuse_io *io = arg;

	if (status < 0)
		fuse_reply_err(io->req, (int)-status);
	else if (io->op == LUN_READ)
		fuse_reply_buf(io->req, (const char *)io->buf, (size_t)status);
	else if (io->op == LUN_WRITE)
		fuse_reply_write(io->req, (size_t)status);
	else
		fuse_reply_err(io->req, 0);
	ts_free(io->buf);
	ts_free(io);
}

static void submit(fuse_req_t req, enum lun_op op, uint64_t off, uint64_t len, const char *data)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	struct fuse_io *io;
	int rc = -ENOMEM;

	io = ts_calloc(1, sizeof(*io));
	if (!io)
		goto fail;
	io->req = req;
	io->op = op;
	if (op != LUN_FLUSH) {
		io->buf = ts_malloc(len);
		if (!io->buf)
			goto fail;
		if (data)
			memcpy(io->buf, data, len);
	}
	rc = lun_submit(f->lun, op, off, len, io->buf, io_complete, io);
	if (rc == 0)
		return;
fail:
	if (io)
		ts_free(io->buf);
	ts_free(io);
	fuse_reply_err(req, -rc);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	uint64_t end = lun_size(f->lun);

	(void)ino;
	(void)fi;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if ((uint64_t)off >= end || size == 0) {
		fuse_reply_buf(req, NULL, 0); /* EOF */
		return;
	}
	submit(req, LUN_READ, (uint64_t)off, TS_MIN((uint64_t)size, end - (uint64_t)off), NULL);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	uint64_t end = lun_size(f->lun);

	(void)ino;
	(void)fi;
	if (off < 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	if (size == 0) {
		fuse_reply_write(req, 0);
		return;
	}
	if ((uint64_t)off >= end) {
		fuse_reply_err(req, ENOSPC); /* a LUN does not grow */
		return;
	}
	submit(req, LUN_WRITE, (uint64_t)off, TS_MIN((uint64_t)size, end - (uint64_t)off), buf);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	submit(req, LUN_FLUSH, 0, 0, NULL);
}

/*
 * fallocate(PUNCH_HOLE|KEEP_SIZE) and (ZERO_RANGE|KEEP_SIZE), which the loop
 * device sends for discards and write-zeroes: when unmapped blocks read as
 * zeroes (LBPME and LBPRZ), the whole blocks inside the range are UNMAPped
 * and the partial blocks at its edges are written with zeroes; up to three
 * LUN IOs, and the reply goes out when the last completes (first error wins).
 * Anything else, or a LUN that cannot, gets EOPNOTSUPP.
 */
struct falloc_part {
	uint64_t off, len;
	enum lun_op op;
};

struct falloc_op {
	fuse_req_t req;
	int left;
	int err;
	uint8_t *zeroes;
};

static void falloc_done(void *arg, long status)
{
	struct falloc_op *op = arg;

	if (status < 0 && !op->err)
		op->err = (int)-status;
	if (--op->left > 0)
		return;
	fuse_reply_err(op->req, op->err);
	ts_free(op->zeroes);
	ts_free(op);
}

static void op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	struct attach_fuse *f = fuse_req_userdata(req);
	uint64_t size = lun_size(f->lun), bs = lun_block_size(f->lun), start, end, a0, a1;
	struct falloc_part part[3];
	struct falloc_op *op;
	int n = 0, rc = 0;

	(void)ino;
	(void)fi;
	if ((mode != (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) &&
	     mode != (FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE)) || !lun_can_unmap_zero(f->lun)) {
		fuse_reply_err(req, EOPNOTSUPP);
		return;
	}
	if (f->read_only) {
		fuse_reply_err(req, EROFS);
		return;
	}
	if (off < 0 || len <= 0) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	start = TS_MIN((uint64_t)off, size);
	end = TS_MIN((uint64_t)off + (uint64_t)len, size);
	if (start == end) {
		fuse_reply_err(req, 0);
		return;
	}
	a0 = TS_ALIGN_UP(start, bs);
	a1 = end / bs * bs;
	if (a0 >= a1) { /* no whole block inside: zeroes only, less than two blocks */
		part[n++] = (struct falloc_part){ start, end - start, LUN_WRITE };
	} else {
		if (start < a0)
			part[n++] = (struct falloc_part){ start, a0 - start, LUN_WRITE };
		part[n++] = (struct falloc_part){ a0, a1 - a0, LUN_UNMAP };
		if (a1 < end)
			part[n++] = (struct falloc_part){ a1, end - a1, LUN_WRITE };
	}
	op = ts_calloc(1, sizeof(*op));
	if (!op || !(op->zeroes = ts_calloc(2, bs))) {
		ts_free(op);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	op->req = req;
	op->left = n + 1; /* +1: ours, so no completion replies while we still submit */
	for (int i = 0; i < n; i++) {
		rc = lun_submit(f->lun, part[i].op, part[i].off, part[i].len,
				part[i].op == LUN_WRITE ? op->zeroes : NULL, falloc_done, op);
		if (rc) {
			op->err = -rc;
			op->left -= n - i; /* these never complete */
			break;
		}
	}
	falloc_done(op, 0);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0); /* close(): nothing buffered here; durability is fsync's job */
}

static const struct fuse_lowlevel_ops g_ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readdir = op_readdir,
	.open = op_open,
	.read = op_read,
	.write = op_write,
	.flush = op_flush,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
};

/* ---- the attach thread ---- */

static void *attach_thread(void *arg)
{
	struct attach_fuse *f = arg;
	struct fuse_buf fbuf = { .mem = NULL };
	bool stopping = false, fuse_gone = false, lun_bad = false;
	uint64_t stop_deadline = 0;

	for (;;) {
		struct pollfd p[3];
		int ev = lun_events(f->lun), n;

		p[0].fd = fuse_gone ? -1 : fuse_session_fd(f->se);
		p[0].events = POLLIN;
		/* After a session error, back off one round instead of spinning on POLLHUP. */
		p[1].fd = ev && !lun_bad ? lun_fd(f->lun) : -1;
		p[1].events = (short)ev;
		p[2].fd = f->stop_fd;
		p[2].events = POLLIN;
		p[0].revents = p[1].revents = p[2].revents = 0;
		n = poll(p, 3, ev && !lun_bad ? 1000 : 100);
		if (n < 0 && errno != EINTR)
			break;
		if ((p[2].revents & POLLIN) && !stopping) {
			stopping = true;
			stop_deadline = ts_now_ns() + STOP_DRAIN_NS;
		}
		if (!fuse_gone && (p[0].revents & (POLLIN | POLLERR | POLLHUP))) {
			int rc = fuse_session_receive_buf(f->se, &fbuf);

			if (rc > 0)
				fuse_session_process_buf(f->se, &fbuf);
			else if (rc != -EINTR && rc != -EAGAIN)
				fuse_gone = true; /* unmounted behind our back, or aborted */
		}
		lun_bad = lun_service(f->lun, p[1].fd >= 0 ? p[1].revents : 0) != 0;
		if (stopping && lun_pending(f->lun) && ts_now_ns() > stop_deadline)
			lun_fail_all(f->lun); /* the target is gone: do not hold detach hostage */
		if (stopping && lun_pending(f->lun) == 0)
			break;
	}
	fuse_session_unmount(f->se);
	free(fbuf.mem); /* allocated by libfuse */
	return NULL;
}

static int make_dir(const char *parent, char *out, size_t outlen)
{
	char tmp[PATH_MAX];

	/* mkdir -p of the parent; only the last level is private. */
	if (snprintf(tmp, sizeof(tmp), "%s", parent) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -errno;
	if (snprintf(out, outlen, "%s/att-XXXXXX", parent) >= (int)outlen)
		return -ENAMETOOLONG;
	if (!mkdtemp(out))
		return -errno;
	return 0;
}

int attach_fuse_start(struct lun *l, const char *parent, bool read_only, struct attach_fuse **out)
{
	struct attach_fuse *f;
	char *argv[] = { "tessera-attach", "-o",
			 "allow_other,fsname=tessera-attach,subtype=tessera", NULL };
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	bool mounted = false, dir_made = false;
	int rc;

	f = ts_calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->lun = l;
	f->read_only = read_only;
	f->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (f->stop_fd < 0) {
		rc = -errno;
		goto fail;
	}
	rc = make_dir(parent, f->dir, sizeof(f->dir));
	if (rc)
		goto fail;
	dir_made = true;
	if (strlen(f->dir) + sizeof("/" FILE_NAME) > sizeof(f->file)) {
		rc = -ENAMETOOLONG;
		goto fail;
	}
	memcpy(f->file, f->dir, strlen(f->dir));
	strcat(f->file, "/" FILE_NAME);
	f->se = fuse_session_new(&args, &g_ops, sizeof(g_ops), f);
	fuse_opt_free_args(&args);
	if (!f->se) {
		rc = -EIO;
		goto fail;
	}
	if (fuse_session_mount(f->se, f->dir)) {
		rc = access("/dev/fuse", R_OK | W_OK) ? -errno : -EIO;
		goto fail;
	}
	mounted = true;
	rc = -pthread_create(&f->thread, NULL, attach_thread, f);
	if (rc)
		goto fail;
	f->thread_started = true;
	*out = f;
	return 0;
fail:
	ts_log(TS_LOG_ERROR, "attach", "FUSE setup failed dir=%s err=\"%s\"", f->dir, ts_strerror(rc));
	if (mounted)
		fuse_session_unmount(f->se);
	if (f->se)
		fuse_session_destroy(f->se);
	if (dir_made)
		rmdir(f->dir);
	if (f->stop_fd >= 0)
		close(f->stop_fd);
	ts_free(f);
	return rc;
}

const char *attach_fuse_file(const struct attach_fuse *f)
{
	return f->file;
}

void attach_fuse_stop(struct attach_fuse *f)
{
	uint64_t one = 1;

	if (!f)
		return;
	if (f->thread_started) {
		if (write(f->stop_fd, &one, sizeof(one)) != sizeof(one))
			ts_log(TS_LOG_ERROR, "attach", "cannot signal the attach thread");
		pthread_join(f->thread, NULL);
	}
	fuse_session_destroy(f->se);
	if (rmdir(f->dir))
		ts_log(TS_LOG_WARN, "attach", "cannot remove mount dir=%s err=\"%s\"", f->dir,
		       strerror(errno));
	close(f->stop_fd);
	ts_free(f);
}

int attach_fuse_invalidate(struct attach_fuse *f)
{
	return fuse_lowlevel_notify_inval_inode(f->se, FILE_INO, 0, 0);
}
