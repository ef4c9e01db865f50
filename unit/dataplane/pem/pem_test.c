/* SPDX-License-Identifier: Apache-2.0 */
/*
 * PEM suite: allocation against a reference model with reopen in between,
 * superblock writes cut or torn at every step, every bad-input case (error
 * code, log line naming the disk, disk bytes unchanged), allocation-failure
 * injection.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <isa-l/crc64.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/pem/pem.h"
#include "dataplane/pem/pem_internal.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define ES (64 * KIB)

static char g_dir[64];
static char g_path[4][128];
static const char *g_paths[4];

static void setup(void)
{
	strcpy(g_dir, "/tmp/ts_pem_XXXXXX");
	cr_assert_not_null(mkdtemp(g_dir));
	for (int i = 0; i < 4; i++) {
		snprintf(g_path[i], sizeof(g_path[i]), "%s/disk%d", g_dir, i);
		g_paths[i] = g_path[i];
	}
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(pem, .init = setup, .fini = teardown);

static void mkdisk(const char *path, uint64_t size)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	int fd = open(path, O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_eq(ts_pread_full(fd, buf, (size_t)st.st_size, 0), 0);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

static void spit(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ts_pwrite_full(fd, buf, len, 0), 0);
	close(fd);
}

static void poke(const char *path, uint64_t off, uint8_t xor)
{
	uint8_t b;
	int fd = open(path, O_RDWR);

	cr_assert_eq(ts_pread_full(fd, &b, 1, off), 0);
	b ^= xor;
	cr_assert_eq(ts_pwrite_full(fd, &b, 1, off), 0);
	close(fd);
}

static struct ts_pem_opts opts_for(uint32_t node)
{
	struct ts_pem_opts o = { .node_id = node, .extent_size = ES };

	memset(o.cluster_uuid, 0xc1, 16);
	return o;
}

/* ---- stderr capture, to check the log line names the disk ---- */

static int g_saved_err = -1;
static char g_cap_path[160];

static void capture_begin(void)
{
	int fd;

	snprintf(g_cap_path, sizeof(g_cap_path), "%s/stderr", g_dir);
	fd = open(g_cap_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	fflush(stderr);
	g_saved_err = dup(2);
	dup2(fd, 2);
	close(fd);
}

/* Returns the captured text (malloc'ed). */
static char *capture_end(void)
{
	size_t len;
	char *s;

	fflush(stderr);
	dup2(g_saved_err, 2);
	close(g_saved_err);
	s = (char *)slurp(g_cap_path, &len);
	s[len] = '\0';
	return s;
}

/*
 * Open expecting \p err; assert the disk bytes are unchanged and a log line
 * names \p name_path with "disk=".
 */
static void expect_open_fails(const char *const *paths, uint32_t n, struct ts_pem_opts *o,
			      int err, const char *name_path)
{
	uint8_t *before[4];
	size_t len[4], len2;
	struct ts_pem *pem = NULL;
	char want[200], *log;

	for (uint32_t i = 0; i < n; i++)
		before[i] = slurp(paths[i], &len[i]);
	capture_begin();
	int rc = ts_pem_open(paths, n, o, &pem);
	log = capture_end();
	cr_assert_eq(rc, err, "open: got %d (%s) want %d (%s)", rc, ts_strerror(rc), err,
		     ts_strerror(err));
	cr_assert_null(pem);
	snprintf(want, sizeof(want), "disk=%s", name_path);
	cr_assert_not_null(strstr(log, want), "log does not name the disk: %s", log);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *after = slurp(paths[i], &len2);

		cr_assert_eq(len[i], len2);
		cr_assert_eq(memcmp(before[i], after, len2), 0, "open changed %s", paths[i]);
		free(after);
		free(before[i]);
	}
	free(log);
}

/* ---- snapshot of the whole allocation state, for comparisons ---- */

struct snap {
	uint32_t n;
	struct {
		struct ts_pem_extent ext;
		struct ts_pem_owner o;
	} r[512];
};

static int snap_one(void *arg, struct ts_pem_extent ext, const struct ts_pem_owner *o)
{
	struct snap *s = arg;

	cr_assert_lt(s->n, 512);
	s->r[s->n].ext = ext;
	s->r[s->n].o = *o;
	s->n++;
	return 0;
}

static void snap_take(struct ts_pem *pem, struct snap *s)
{
	memset(s, 0, sizeof(*s));
	cr_assert_eq(ts_pem_foreach(pem, snap_one, s), 0);
}

static int snap_eq(const struct snap *a, const struct snap *b)
{
	return a->n == b->n && !memcmp(a->r, b->r, sizeof(a->r[0]) * a->n);
}

static struct ts_pem_owner owner(uint8_t id, uint32_t index)
{
	struct ts_pem_owner o;

	memset(&o, 0, sizeof(o));
	memset(o.uuid, id, 16);
	o.index = index;
	o.flags = id * 7u;
	for (int i = 0; i < TS_PEM_OWNER_DATA; i++)
		o.data[i] = (uint8_t)(id + index + i);
	return o;
}

/* ---- tests ---- */

Test(pem, format_open_geometry)
{
	struct ts_pem_opts o = opts_for(3);
	struct ts_pem *pem;

	mkdisk(g_paths[0], 4 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 2, &o), 0);
	/* paths in another order: positions come from the superblocks */
	const char *rev[2] = { g_paths[1], g_paths[0] };
	cr_assert_eq(ts_pem_open(rev, 2, &o, &pem), 0);
	cr_assert_eq(ts_pem_node_id(pem), 3);
	cr_assert_eq(ts_pem_extent_size(pem), ES);
	cr_assert_eq(ts_pem_disk_count(pem), 2);
	cr_assert_str_eq(ts_pem_disk_path(pem, 0), g_paths[0]);
	cr_assert_str_eq(ts_pem_disk_path(pem, 1), g_paths[1]);
	/* 4 MiB: 64 extents would need data at 64 KiB + 64*64 KiB > 4 MiB, so 63 */
	cr_assert_eq(ts_pem_disk_extents(pem, 0), 63);
	cr_assert_eq(ts_pem_disk_extents(pem, 1), 31);
	cr_assert_eq(ts_pem_free_extents(pem), 94);
	ts_pem_close(pem);
	ts_pem_close(NULL);
}

Test(pem, extent_io_stays_in_extent)
{
	struct ts_pem_opts o = opts_for(1);
	struct ts_pem *pem;
	struct ts_pem_owner ow = owner(9, 0);
	struct ts_pem_extent x;
	uint8_t buf[4096], back[4096];

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 1, &ow, &x), 0);
	memset(buf, 0x5a, sizeof(buf));
	cr_assert_eq(ts_pem_extent_pwrite(pem, x, ES - 4096, buf, 4096), 0);
	cr_assert_eq(ts_pem_extent_pwrite(pem, x, ES - 2048, buf, 4096), -EINVAL);
	cr_assert_eq(ts_pem_extent_pread(pem, x, ES - 4096, back, 4096), 0);
	cr_assert_arr_eq(buf, back, 4096);
	cr_assert_eq(ts_pem_extent_zero(pem, x, ES - 4096, 4096), 0);
	cr_assert_eq(ts_pem_extent_pread(pem, x, ES - 4096, back, 4096), 0);
	memset(buf, 0, sizeof(buf));
	cr_assert_arr_eq(buf, back, 4096);
	cr_assert_eq(ts_pem_sync(pem, UINT32_MAX), 0);
	cr_assert_eq(ts_pem_sync(pem, 5), -EINVAL);
	ts_pem_close(pem);
}

/* Random alloc / free / set_owner against a plain model, reopening in between. */
Test(pem, random_ops_against_model)
{
	struct ts_pem_opts o = opts_for(7);
	struct ts_pem *pem;
	/* model: owner per (disk, index); id 0 = free */
	static struct ts_pem_owner model[3][64];
	static uint8_t used[3][64];
	uint64_t total;
	unsigned seed = 12345;

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 3 * MIB);
	mkdisk(g_paths[2], 1 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 3, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 3, &o, &pem), 0);
	total = ts_pem_free_extents(pem);
	for (int step = 0; step < 600; step++) {
		int op = rand_r(&seed) % 10;

		if (op < 5) {
			uint32_t n = 1 + rand_r(&seed) % 6;
			struct ts_pem_owner ow[6];
			struct ts_pem_extent ex[6];
			uint64_t nfree = ts_pem_free_extents(pem);
			uint8_t id = (uint8_t)(1 + rand_r(&seed) % 250);

			for (uint32_t i = 0; i < n; i++)
				ow[i] = owner(id, i);
			int rc = ts_pem_alloc(pem, n, ow, ex);
			if (nfree < n) {
				cr_assert_eq(rc, TS_ERR_NO_SPACE);
				continue;
			}
			cr_assert_eq(rc, 0);
			for (uint32_t i = 0; i < n; i++) {
				cr_assert_lt(ex[i].disk, 3);
				cr_assert_lt(ex[i].index, ts_pem_disk_extents(pem, ex[i].disk));
				cr_assert_eq(used[ex[i].disk][ex[i].index], 0, "handed out a used extent");
				used[ex[i].disk][ex[i].index] = 1;
				model[ex[i].disk][ex[i].index] = ow[i];
			}
		} else if (op < 8) {
			struct ts_pem_extent ex[4];
			uint32_t n = 0;

			for (int t = 0; t < 40 && n < 4; t++) {
				uint32_t d = rand_r(&seed) % 3;
				uint32_t i = rand_r(&seed) % (uint32_t)ts_pem_disk_extents(pem, d);
				int dup = 0;

				for (uint32_t k = 0; k < n; k++)
					dup |= ex[k].disk == d && ex[k].index == i;
				if (used[d][i] && !dup)
					ex[n++] = (struct ts_pem_extent){ d, i };
			}
			if (n == 0)
				continue;
			cr_assert_eq(ts_pem_free(pem, n, ex), 0);
			for (uint32_t k = 0; k < n; k++)
				used[ex[k].disk][ex[k].index] = 0;
			/* freeing again is refused and changes nothing */
			cr_assert_eq(ts_pem_free(pem, 1, ex), -EINVAL);
		} else if (op < 9) {
			uint32_t d = rand_r(&seed) % 3;
			uint32_t i = rand_r(&seed) % (uint32_t)ts_pem_disk_extents(pem, d);
			struct ts_pem_owner ow = owner((uint8_t)(1 + rand_r(&seed) % 250), step);
			int rc = ts_pem_set_owner(pem, (struct ts_pem_extent){ d, i }, &ow);

			cr_assert_eq(rc, used[d][i] ? 0 : -EINVAL);
			if (used[d][i])
				model[d][i] = ow;
		} else {
			ts_pem_close(pem);
			cr_assert_eq(ts_pem_open(g_paths, 3, &o, &pem), 0);
		}
		/* compare everything */
		uint64_t nused = 0;
		for (uint32_t d = 0; d < 3; d++)
			for (uint32_t i = 0; i < ts_pem_disk_extents(pem, d); i++) {
				struct ts_pem_owner got;
				int rc = ts_pem_get_owner(pem, (struct ts_pem_extent){ d, i }, &got);

				if (used[d][i]) {
					nused++;
					cr_assert_eq(rc, 0);
					cr_assert_eq(memcmp(&got, &model[d][i], sizeof(got)), 0,
						     "owner of %u/%u differs at step %d", d, i, step);
				} else {
					cr_assert_eq(rc, -ENOENT);
				}
			}
		cr_assert_eq(ts_pem_free_extents(pem), total - nused);
	}
	ts_pem_close(pem);
}

Test(pem, alloc_spreads_over_disks)
{
	struct ts_pem_opts o = opts_for(1);
	struct ts_pem *pem;
	struct ts_pem_owner ow[8];
	struct ts_pem_extent ex[8];
	int per[2] = { 0, 0 };

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 2, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 2, &o, &pem), 0);
	for (int i = 0; i < 8; i++)
		ow[i] = owner(4, (uint32_t)i);
	cr_assert_eq(ts_pem_alloc(pem, 8, ow, ex), 0);
	for (int i = 0; i < 8; i++)
		per[ex[i].disk]++;
	cr_assert_eq(per[0], 4);
	cr_assert_eq(per[1], 4);
	ts_pem_close(pem);
}

static int do_update(struct ts_pem *pem, int kind, struct ts_pem_extent *ex,
		     struct ts_pem_owner *extra)
{
	struct ts_pem_extent x2;

	if (kind == 0)
		return ts_pem_alloc(pem, 1, extra, &x2);
	if (kind == 1)
		return ts_pem_free(pem, 2, ex);
	return ts_pem_set_owner(pem, ex[2], extra);
}

/*
 * Build a base state on one disk, then for every cut point of the next
 * superblock write (each sector boundary and mid-sector), start from the
 * base bytes, do the update with the cut armed, "crash", reopen: the state
 * must be exactly the old or the new one. Then a further update and reopen
 * must work and be exact (the slot we failed in is reused correctly).
 */
static void cut_sweep(int update_kind)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem;
	struct snap *old = calloc(1, sizeof(*old)), *neu = calloc(1, sizeof(*neu)),
		    *got = calloc(1, sizeof(*got));
	struct ts_pem_owner ow[3] = { owner(1, 0), owner(1, 1), owner(2, 0) };
	struct ts_pem_owner extra = owner(3, 9);
	struct ts_pem_extent ex[3], x2;
	uint8_t *base;
	size_t len;
	int saw_old = 0, saw_new = 0;

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 3, ow, ex), 0);
	snap_take(pem, old);
	ts_pem_close(pem);
	base = slurp(g_paths[0], &len);
	/* the image: 512 header + 31 * 128 table = 4480 bytes -> 9 sectors */
	uint64_t img = TS_ALIGN_UP(PEM_HDR_SIZE + 31 * PEM_ENTRY_SIZE, PEM_SECTOR);

	/* the new state, from an uncut run */
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(do_update(pem, update_kind, ex, &extra), 0);
	snap_take(pem, neu);
	ts_pem_close(pem);
	cr_assert(!snap_eq(old, neu));
	for (uint64_t cut = 0; cut <= img + PEM_SECTOR; cut += PEM_SECTOR / 2) {
		int rc;

		spit(g_paths[0], base, len);
		cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
		pem_test_cut_after((long)cut);
		rc = do_update(pem, update_kind, ex, &extra);
		pem_test_cut_after(-1);
		if (cut >= img) {
			cr_assert_eq(rc, 0);
		} else {
			cr_assert_eq(rc, -EIO);
			/* a failed PEM refuses further updates */
			cr_assert_eq(ts_pem_alloc(pem, 1, &extra, &x2), -EIO);
		}
		ts_pem_close(pem);
		cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0, "reopen after cut %llu",
			     (unsigned long long)cut);
		snap_take(pem, got);
		if (snap_eq(got, old)) {
			cr_assert_lt(cut, img, "completed update lost");
			saw_old = 1;
		} else {
			cr_assert(snap_eq(got, neu), "neither old nor new state after cut %llu",
				  (unsigned long long)cut);
			saw_new = 1;
		}
		/* keep going: one more update survives a reopen */
		struct ts_pem_owner more = owner(5, (uint32_t)cut);
		cr_assert_eq(ts_pem_alloc(pem, 1, &more, &x2), 0);
		snap_take(pem, got);
		ts_pem_close(pem);
		cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
		struct snap *again = calloc(1, sizeof(*again));
		snap_take(pem, again);
		cr_assert(snap_eq(got, again));
		free(again);
		ts_pem_close(pem);
	}
	cr_assert(saw_old && saw_new);
	free(base);
	free(old);
	free(neu);
	free(got);
}

Test(pem, cut_alloc_at_every_step)
{
	cut_sweep(0);
}

Test(pem, cut_free_at_every_step)
{
	cut_sweep(1);
}

Test(pem, cut_set_owner_at_every_step)
{
	cut_sweep(2);
}

/* Random subsets of the new copy's sectors reach the disk: old state, never garbage. */
Test(pem, torn_writes_random_sectors)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem;
	struct snap *old = calloc(1, sizeof(*old)), *got = calloc(1, sizeof(*got)),
		    *neu = calloc(1, sizeof(*neu));
	struct ts_pem_owner ow[2] = { owner(1, 0), owner(1, 1) }, extra = owner(8, 0);
	struct ts_pem_extent ex[2], x2;
	uint8_t *base;
	size_t len;
	int saw_old = 0;

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 2, ow, ex), 0);
	cr_assert_eq(ts_pem_free(pem, 1, ex), 0); /* seq 4: both slots hold real copies */
	snap_take(pem, old);
	ts_pem_close(pem);
	base = slurp(g_paths[0], &len);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 1, &extra, &x2), 0);
	snap_take(pem, neu);
	ts_pem_close(pem);
	for (uint32_t seed = 1; seed <= 150; seed++) {
		spit(g_paths[0], base, len);
		cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
		pem_test_torn(seed);
		cr_assert_eq(ts_pem_alloc(pem, 1, &extra, &x2), -EIO);
		ts_pem_close(pem);
		cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
		snap_take(pem, got);
		/* the new state only if every sector that differs made it */
		if (snap_eq(got, old))
			saw_old = 1;
		else
			cr_assert(snap_eq(got, neu), "torn write seed %u: garbage state", seed);
		ts_pem_close(pem);
	}
	cr_assert(saw_old);
	free(neu);
	free(base);
	free(old);
	free(got);
}

/* ---- bad input ---- */

Test(pem, one_corrupt_copy_falls_back)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem;
	struct ts_pem_owner ow = owner(1, 0);
	struct ts_pem_extent x;

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 1, &ow, &x), 0); /* seq 3 -> slot 1 */
	ts_pem_close(pem);
	/* destroy slot 0 completely (magic too): slot 1 is found by probing */
	for (int i = 0; i < 8; i++)
		poke(g_paths[0], (uint64_t)i, 0xff);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_free_extents(pem), 30);
	ts_pem_close(pem);
	/* now corrupt slot 1's table (newest) too: both bad */
	poke(g_paths[0], 8192 + 600, 0x01);
	expect_open_fails(g_paths, 1, &o, TS_ERR_CORRUPT, g_paths[0]);
}

Test(pem, both_copies_corrupt)
{
	struct ts_pem_opts o = opts_for(2);

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	poke(g_paths[0], 40, 0x10);        /* slot 0: cluster uuid byte */
	poke(g_paths[0], 8192 + 700, 0x2); /* slot 1: a table byte */
	expect_open_fails(g_paths, 1, &o, TS_ERR_CORRUPT, g_paths[0]);
}

Test(pem, foreign_format)
{
	struct ts_pem_opts o = opts_for(2);
	uint8_t junk[8192];

	mkdisk(g_paths[0], 2 * MIB); /* zeroes */
	expect_open_fails(g_paths, 1, &o, TS_ERR_FOREIGN, g_paths[0]);
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 31 + 7);
	memcpy(junk, "\x7f" "ELF", 4);
	spit(g_paths[0], junk, sizeof(junk));
	cr_assert_eq(truncate(g_paths[0], (off_t)(2 * MIB)), 0);
	expect_open_fails(g_paths, 1, &o, TS_ERR_FOREIGN, g_paths[0]);
}

Test(pem, other_cluster_and_node)
{
	struct ts_pem_opts o = opts_for(2), other = opts_for(2), node = opts_for(3);

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	other.cluster_uuid[5] ^= 1;
	expect_open_fails(g_paths, 1, &other, TS_ERR_FOREIGN, g_paths[0]);
	expect_open_fails(g_paths, 1, &node, TS_ERR_FOREIGN, g_paths[0]);
}

Test(pem, mismatched_extent_sizes)
{
	struct ts_pem_opts a = opts_for(2), b = opts_for(2);

	b.extent_size = 128 * KIB;
	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	cr_assert_eq(ts_pem_format(&g_paths[0], 1, &a), 0);
	cr_assert_eq(ts_pem_format(&g_paths[1], 1, &b), 0);
	expect_open_fails(g_paths, 2, &a, TS_ERR_GEOMETRY, g_paths[1]);
}

Test(pem, disk_of_another_set_or_missing)
{
	struct ts_pem_opts o = opts_for(2);
	const char *set2[2] = { g_paths[2], g_paths[3] };
	const char *mix[2] = { g_paths[0], g_paths[3] };

	for (int i = 0; i < 4; i++)
		mkdisk(g_paths[i], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 2, &o), 0);
	cr_assert_eq(ts_pem_format(set2, 2, &o), 0);
	expect_open_fails(mix, 2, &o, TS_ERR_FOREIGN, g_paths[3]);
	expect_open_fails(g_paths, 1, &o, -ENODEV, g_paths[0]);
}

Test(pem, too_small)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem;
	uint8_t *before, *after;
	size_t l1, l2;

	/* 64 KiB of metadata alignment + one 64 KiB extent do not fit 100 KiB */
	mkdisk(g_paths[0], 100 * KIB);
	before = slurp(g_paths[0], &l1);
	capture_begin();
	int rc = ts_pem_format(g_paths, 1, &o);
	char *log = capture_end();
	cr_assert_eq(rc, TS_ERR_TOO_SMALL);
	cr_assert_not_null(strstr(log, g_paths[0]));
	after = slurp(g_paths[0], &l2);
	cr_assert_eq(l1, l2);
	cr_assert_eq(memcmp(before, after, l1), 0);
	free(before);
	free(after);
	free(log);
	/* exactly enough for one */
	cr_assert_eq(truncate(g_paths[0], (off_t)(128 * KIB)), 0);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_free_extents(pem), 1);
	ts_pem_close(pem);
	/* a disk cut shorter than its superblock says */
	cr_assert_eq(truncate(g_paths[0], (off_t)(120 * KIB)), 0);
	expect_open_fails(g_paths, 1, &o, TS_ERR_TOO_SMALL, g_paths[0]);
}

Test(pem, bad_extent_size)
{
	struct ts_pem_opts o = opts_for(2);

	mkdisk(g_paths[0], 2 * MIB);
	o.extent_size = 96 * KIB;
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), TS_ERR_GEOMETRY);
	o.extent_size = 32 * KIB;
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), TS_ERR_GEOMETRY);
}

Test(pem, unsupported_version)
{
	struct ts_pem_opts o = opts_for(2);
	uint8_t hdr[PEM_HDR_SIZE + 31 * PEM_ENTRY_SIZE];
	uint32_t v = 2;
	uint64_t crc;
	int fd;

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	/* rewrite both copies as version 2 with a valid CRC */
	fd = open(g_paths[0], O_RDWR);
	for (uint64_t off = 0; off <= 8192; off += 8192) {
		cr_assert_eq(ts_pread_full(fd, hdr, sizeof(hdr), off), 0);
		memcpy(hdr + 8, &v, 4);
		memset(hdr + 24, 0, 8);
		crc = crc64_ecma_refl(0, hdr, sizeof(hdr));
		memcpy(hdr + 24, &crc, 8);
		cr_assert_eq(ts_pwrite_full(fd, hdr, sizeof(hdr), off), 0);
	}
	close(fd);
	expect_open_fails(g_paths, 1, &o, TS_ERR_VERSION, g_paths[0]);
}

Test(pem, format_refuses_tessera_disk_without_force)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem;
	struct ts_pem_owner ow = owner(1, 0);
	struct ts_pem_extent x;
	uint8_t *before, *after;
	size_t l1, l2;

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	cr_assert_eq(ts_pem_format(&g_paths[0], 1, &o), 0);
	cr_assert_eq(ts_pem_open(&g_paths[0], 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_alloc(pem, 1, &ow, &x), 0);
	ts_pem_close(pem);
	before = slurp(g_paths[0], &l1);
	/* the fresh disk 1 comes first: nothing may be written to it either */
	const char *two[2] = { g_paths[1], g_paths[0] };
	capture_begin();
	int rc = ts_pem_format(two, 2, &o);
	char *log = capture_end();
	cr_assert_eq(rc, -EEXIST);
	cr_assert_not_null(strstr(log, g_paths[0]));
	free(log);
	after = slurp(g_paths[0], &l2);
	cr_assert_eq(memcmp(before, after, l1), 0);
	free(after);
	after = slurp(g_paths[1], &l2);
	for (size_t i = 0; i < l2; i++)
		cr_assert_eq(after[i], 0);
	free(after);
	free(before);
	/* with force: a fresh, empty set of two */
	o.flags = TS_PEM_FORMAT_FORCE;
	cr_assert_eq(ts_pem_format(two, 2, &o), 0);
	cr_assert_eq(ts_pem_open(two, 2, &o, &pem), 0);
	cr_assert_eq(ts_pem_free_extents(pem), 62);
	ts_pem_close(pem);
}

/* ---- allocation-failure injection ---- */

Test(pem, alloc_failure_injection)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem = NULL;
	struct ts_pem_owner ow[4] = { owner(1, 0), owner(1, 1), owner(1, 2), owner(1, 3) };
	struct ts_pem_extent ex[4];
	long k;
	int rc;

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	for (k = 0;; k++) {
		ts_alloc_fail_after(k);
		rc = ts_pem_format(g_paths, 2, &o);
		ts_alloc_fail_after(-1);
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOMEM);
		o.flags = TS_PEM_FORMAT_FORCE; /* a half-formatted set may exist now */
	}
	for (k = 0;; k++) {
		ts_alloc_fail_after(k);
		rc = ts_pem_open(g_paths, 2, &o, &pem);
		ts_alloc_fail_after(-1);
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_null(pem);
	}
	cr_assert_gt(k, 0);
	for (k = 0;; k++) {
		ts_alloc_fail_after(k);
		rc = ts_pem_alloc(pem, 4, ow, ex);
		ts_alloc_fail_after(-1);
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_eq(ts_pem_free_extents(pem), 62, "failed alloc changed state");
	}
	cr_assert_gt(k, 0);
	for (k = 0;; k++) {
		ts_alloc_fail_after(k);
		rc = ts_pem_free(pem, 4, ex);
		ts_alloc_fail_after(-1);
		if (rc == 0)
			break;
		cr_assert_eq(rc, -ENOMEM);
		cr_assert_eq(ts_pem_free_extents(pem), 58);
	}
	cr_assert_eq(ts_pem_free_extents(pem), 62);
	ts_pem_close(pem);
	/* and what is on disk agrees */
	cr_assert_eq(ts_pem_open(g_paths, 2, &o, &pem), 0);
	cr_assert_eq(ts_pem_free_extents(pem), 62);
	ts_pem_close(pem);
}

/* ---- kill -9 during updates ---- */

/*
 * The op sequence both the child and the model run: step s allocates one
 * extent for owner (s % 200 + 1) or frees the oldest live one.
 */
struct killmodel {
	struct ts_pem_extent live[64];
	struct ts_pem_owner own[64];
	int head, n;
};

static int kill_step(struct ts_pem *pem, struct killmodel *m, int s)
{
	if (m->n < 20 && (s % 3 != 2 || m->n == 0)) {
		struct ts_pem_owner o = owner((uint8_t)(s % 200 + 1), (uint32_t)s);
		struct ts_pem_extent x;
		int rc = ts_pem_alloc(pem, 1, &o, &x);

		if (rc)
			return rc;
		m->live[(m->head + m->n) % 64] = x;
		m->own[(m->head + m->n) % 64] = o;
		m->n++;
		return 0;
	}
	int rc = ts_pem_free(pem, 1, &m->live[m->head]);
	if (rc)
		return rc;
	m->head = (m->head + 1) % 64;
	m->n--;
	return 0;
}

static int kill_matches(struct ts_pem *pem, const struct killmodel *m)
{
	struct ts_pem_owner got;
	uint64_t total = ts_pem_disk_extents(pem, 0) + ts_pem_disk_extents(pem, 1);

	if (ts_pem_free_extents(pem) != total - (uint64_t)m->n)
		return 0;
	for (int i = 0; i < m->n; i++) {
		int k = (m->head + i) % 64;

		if (ts_pem_get_owner(pem, m->live[k], &got) ||
		    memcmp(&got, &m->own[k], sizeof(got)))
			return 0;
	}
	return 1;
}

Test(pem, sigkill_during_updates)
{
	struct ts_pem_opts o = opts_for(2);
	unsigned seed = 4242;

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	for (int round = 0; round < 12; round++) {
		int fds[2];
		pid_t pid;
		int acked = 0, v;
		struct ts_pem *pem;

		o.flags = TS_PEM_FORMAT_FORCE;
		cr_assert_eq(ts_pem_format(g_paths, 2, &o), 0);
		cr_assert_eq(pipe(fds), 0);
		pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			struct killmodel m = { .n = 0 };

			close(fds[0]);
			if (ts_pem_open(g_paths, 2, &o, &pem))
				_exit(2);
			for (int s = 0; s < 100000; s++) {
				if (kill_step(pem, &m, s))
					_exit(3);
				if (write(fds[1], &s, sizeof(s)) != sizeof(s))
					_exit(4);
			}
			_exit(0);
		}
		close(fds[1]);
		/* let it run for a random number of acknowledged steps, then kill */
		int target = 1 + (int)(rand_r(&seed) % 120);
		while (acked < target && read(fds[0], &v, sizeof(v)) == sizeof(v))
			acked = v + 1;
		kill(pid, SIGKILL);
		while (read(fds[0], &v, sizeof(v)) == sizeof(v))
			acked = v + 1;
		close(fds[0]);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status), "child ended on its own: %d", status);
		/* on disk: the state after `acked` steps, or after the one in flight */
		cr_assert_eq(ts_pem_open(g_paths, 2, &o, &pem), 0);
		struct killmodel m = { .n = 0 };
		int ok = 0;
		/* replay the same steps on a scratch set: allocation is deterministic */
		{
			char c0[160], c1[160];
			const char *cp[2] = { c0, c1 };
			struct ts_pem *sp;

			snprintf(c0, sizeof(c0), "%s/s0", g_dir);
			snprintf(c1, sizeof(c1), "%s/s1", g_dir);
			mkdisk(c0, 2 * MIB);
			mkdisk(c1, 2 * MIB);
			cr_assert_eq(ts_pem_format(cp, 2, &o), 0);
			cr_assert_eq(ts_pem_open(cp, 2, &o, &sp), 0);
			for (int s = 0; s < acked; s++)
				cr_assert_eq(kill_step(sp, &m, s), 0);
			ts_pem_close(sp);
			ok = kill_matches(pem, &m);
			if (!ok) {
				cr_assert_eq(ts_pem_open(cp, 2, &o, &sp), 0);
				cr_assert_eq(kill_step(sp, &m, acked), 0);
				ts_pem_close(sp);
				ok = kill_matches(pem, &m);
			}
		}
		cr_assert(ok, "round %d: state after %d acked steps is neither it nor the next",
			  round, acked);
		ts_pem_close(pem);
	}
}

Test(pem, one_pem_per_disk_and_no_duplicates)
{
	struct ts_pem_opts o = opts_for(2);
	struct ts_pem *pem, *again = NULL;
	const char *dup[2] = { g_paths[0], g_paths[0] };

	mkdisk(g_paths[0], 2 * MIB);
	mkdisk(g_paths[1], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &pem), 0);
	cr_assert_eq(ts_pem_open(g_paths, 1, &o, &again), -EBUSY);
	cr_assert_null(again);
	o.flags = TS_PEM_FORMAT_FORCE;
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), -EBUSY);
	ts_pem_close(pem);
	/* the same disk twice (a symlink or a repeated path) */
	o.flags = TS_PEM_FORMAT_FORCE;
	cr_assert_eq(ts_pem_format(g_paths, 2, &o), 0);
	o.flags = 0;
	cr_assert_eq(ts_pem_open(dup, 2, &o, &again), -EBUSY);
	cr_assert_eq(ts_pem_open(g_paths, 2, &o, &pem), 0);
	ts_pem_close(pem);
}

/* A valid copy in the wrong slot (slot 1 copied over slot 0) is not trusted. */
Test(pem, copy_in_wrong_slot_is_refused)
{
	struct ts_pem_opts o = opts_for(2);
	uint8_t img[8192];
	int fd;

	mkdisk(g_paths[0], 2 * MIB);
	cr_assert_eq(ts_pem_format(g_paths, 1, &o), 0);
	fd = open(g_paths[0], O_RDWR);
	cr_assert_eq(ts_pread_full(fd, img, sizeof(img), 8192), 0); /* seq 1 */
	cr_assert_eq(ts_pwrite_full(fd, img, sizeof(img), 0), 0);
	memset(img, 0, sizeof(img));
	cr_assert_eq(ts_pwrite_full(fd, img, sizeof(img), 8192), 0);
	close(fd);
	expect_open_fails(g_paths, 1, &o, TS_ERR_CORRUPT, g_paths[0]);
}
