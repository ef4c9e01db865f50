/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The physical extent manager.
 *
 * Workload: allocations and frees are rare (volume create, grow, delete) and
 * small; extent IO is the hot path and never touches the allocation state.
 * So the allocation table lives in memory as the exact image of the newest
 * on-disk superblock copy, and every update rewrites a whole copy.
 *
 * Layout of one disk (little-endian; details in docs/on-disk-format.md):
 *
 *   [slot 0 @ 0][slot 1 @ slot_size][pad to 64 KiB][extent 0][extent 1]...
 *
 * slot_size is a power of two >= 4096 big enough for the 512-byte header
 * plus 128 bytes per extent. Because it is a power of two, open can find
 * slot 1 even when slot 0 is destroyed by probing each power-of-two offset.
 *
 * Crash safety: double buffering. Each copy carries a sequence number and a
 * CRC64 (ISA-L crc64_ecma_refl) over header and table. An update builds the
 * new image in memory with seq + 1, writes it into slot (seq + 1) % 2 (the
 * slot NOT holding the newest copy) and fdatasyncs. Open takes the valid copy
 * with the highest seq. A torn write (any subset of its sectors) fails the
 * CRC, so the older copy, still intact in the other slot, wins. We chose
 * this over a journal because the table is small and the update rate low:
 * one write plus one fdatasync per update, no replay logic.
 *
 * Multi-disk updates are per disk atomic, not across disks; ts_pem_alloc()
 * and ts_pem_free() order the disks so an owner's record 0 is the commit
 * point (see pem.h); the LDM cleans up records left by a crash.
 *
 * After an IO error during an update the PEM is "failed": the disk may hold
 * either copy, so we stop updating (every update returns -EIO) until the
 * caller closes and reopens, which re-reads the truth.
 */
#include "dataplane/pem/pem.h"

#include <endian.h>
#include <fcntl.h>
#include <isa-l/crc64.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/pem/pem_internal.h"

/* Header field offsets. */
enum {
	H_MAGIC = 0, H_VERSION = 8, H_HDRSIZE = 12, H_SEQ = 16, H_CRC = 24,
	H_CLUSTER = 32, H_DISK_UUID = 48, H_NODE = 64, H_DISK_INDEX = 68,
	H_DISK_COUNT = 72, H_ENTRY_SIZE = 76, H_EXTENT_SIZE = 80,
	H_EXTENT_COUNT = 88, H_DATA_OFF = 96, H_SLOT_SIZE = 104, H_SET_UUID = 112,
};
/* Entry field offsets. */
enum { E_STATE = 0, E_INDEX = 4, E_FLAGS = 8, E_UUID = 16, E_DATA = 32 };
#define E_USED 1u

struct pem_disk {
	char *path;
	int fd;
	int is_blk;
	uint8_t *img;      /* newest valid copy: header + table (used bytes) */
	uint64_t used;     /* bytes of img */
	uint64_t seq;
	uint64_t count;    /* extents */
	uint64_t nfree;
	uint64_t data_off;
	uint64_t slot_size;
};

struct ts_pem {
	pthread_mutex_t lock;
	uint32_t node_id;
	uint64_t extent_size;
	uint32_t ndisks;
	int failed;
	struct pem_disk disks[TS_PEM_MAX_DISKS]; /* by position in the set */
};

/* ---- fault injection ---- */

static atomic_long g_cut = -1;
static atomic_uint g_torn_seed = 0;

void pem_test_cut_after(long n)
{
	atomic_store(&g_cut, n);
}

void pem_test_torn(uint32_t seed)
{
	atomic_store(&g_torn_seed, seed);
}

/* ---- little-endian field access ---- */

static uint32_t get32(const uint8_t *p, size_t off)
{
	uint32_t v;
	memcpy(&v, p + off, 4);
	return le32toh(v);
}

static uint64_t get64(const uint8_t *p, size_t off)
{
	uint64_t v;
	memcpy(&v, p + off, 8);
	return le64toh(v);
}

static void put32(uint8_t *p, size_t off, uint32_t v)
{
	v = htole32(v);
	memcpy(p + off, &v, 4);
}

static void put64(uint8_t *p, size_t off, uint64_t v)
{
	v = htole64(v);
	memcpy(p + off, &v, 8);
}

static uint8_t *entry(uint8_t *img, uint64_t i)
{
	return img + PEM_HDR_SIZE + i * PEM_ENTRY_SIZE;
}

static int uuid_is_zero(const uint8_t u[16])
{
	for (int i = 0; i < 16; i++)
		if (u[i])
			return 0;
	return 1;
}

static uint64_t img_crc(const uint8_t *img, uint64_t used)
{
	uint8_t zero[8] = { 0 };
	uint64_t crc = crc64_ecma_refl(0, img, H_CRC);

	crc = crc64_ecma_refl(crc, zero, 8);
	return crc64_ecma_refl(crc, img + H_CRC + 8, used - H_CRC - 8);
}

/* ---- geometry ---- */

static uint64_t slot_size_for(uint64_t count)
{
	uint64_t need = PEM_HDR_SIZE + count * PEM_ENTRY_SIZE, s = 4096;

	while (s < need)
		s <<= 1;
	return s;
}

static uint64_t data_off_for(uint64_t count)
{
	return TS_ALIGN_UP(2 * slot_size_for(count), PEM_DATA_ALIGN);
}

/* Most extents that fit a device of \p size bytes; 0 if none. */
static uint64_t extents_for(uint64_t size, uint64_t es)
{
	uint64_t n = size / es;

	while (n > 0 && data_off_for(n) + n * es > size)
		n--;
	return n;
}

static int disk_size(int fd, int *is_blk, uint64_t *size)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	*is_blk = S_ISBLK(st.st_mode);
	if (*is_blk) {
		if (ioctl(fd, BLKGETSIZE64, size) < 0)
			return -errno;
		return 0;
	}
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	*size = (uint64_t)st.st_size;
	return 0;
}

/* One PEM per disk: an exclusive advisory lock, dropped when the fd closes. */
static int disk_lock(int fd, const char *path)
{
	if (flock(fd, LOCK_EX | LOCK_NB) == 0)
		return 0;
	if (errno == EWOULDBLOCK) {
		ts_log(TS_LOG_ERROR, "pem", "disk is in use by another PEM disk=%s", path);
		return -EBUSY;
	}
	return -errno;
}

/* ---- reading a superblock ---- */

/*
 * Read and check the copy at \p off. Returns 0 and a ts_malloc'ed image in
 * *img (used bytes in *used), or: 1 no magic, TS_ERR_CORRUPT magic but
 * insane or bad CRC, TS_ERR_VERSION, -ENOMEM, -errno.
 */
static int slot_read(int fd, uint64_t dsize, uint64_t off, int probe,
		     uint8_t **img, uint64_t *used)
{
	uint8_t hdr[PEM_HDR_SIZE];
	uint8_t *buf = NULL;
	uint64_t count, ss, u;
	int rc;

	if (off + PEM_HDR_SIZE > dsize)
		return 1;
	rc = ts_pread_full(fd, hdr, sizeof(hdr), off);
	if (rc)
		return rc;
	if (memcmp(hdr + H_MAGIC, PEM_MAGIC, 8))
		return 1;
	count = get64(hdr, H_EXTENT_COUNT);
	ss = get64(hdr, H_SLOT_SIZE);
	if (get32(hdr, H_HDRSIZE) != PEM_HDR_SIZE || get32(hdr, H_ENTRY_SIZE) != PEM_ENTRY_SIZE ||
	    count == 0 || count > (1ull << 32) || ss != slot_size_for(count) ||
	    (probe && off != ss) || 2 * ss > dsize)
		return TS_ERR_CORRUPT;
	u = PEM_HDR_SIZE + count * PEM_ENTRY_SIZE;
	buf = ts_calloc(1, TS_ALIGN_UP(u, PEM_SECTOR));
	if (!buf)
		return -ENOMEM;
	memcpy(buf, hdr, PEM_HDR_SIZE);
	rc = ts_pread_full(fd, buf + PEM_HDR_SIZE, u - PEM_HDR_SIZE, off + PEM_HDR_SIZE);
	if (rc)
		goto fail;
	if (img_crc(buf, u) != get64(buf, H_CRC)) {
		rc = TS_ERR_CORRUPT;
		goto fail;
	}
	if (get32(buf, H_VERSION) != PEM_VERSION) {
		rc = TS_ERR_VERSION;
		goto fail;
	}
	/* A copy with seq s is only ever written to slot s % 2; anything else is
	 * not ours to trust (and the next update would overwrite it). */
	if ((get64(buf, H_SEQ) & 1) != (off != 0)) {
		rc = TS_ERR_CORRUPT;
		goto fail;
	}
	*img = buf;
	*used = u;
	return 0;
fail:
	ts_free(buf);
	return rc;
}

/*
 * Newest valid copy of a disk. Slot 1 is found through slot 0's header, or
 * when slot 0 is unusable by probing power-of-two offsets. Returns 0 (image
 * in *img), TS_ERR_FOREIGN (no magic anywhere), TS_ERR_CORRUPT, TS_ERR_VERSION,
 * -ENOMEM or -errno.
 */
static int sb_read(int fd, uint64_t dsize, uint8_t **img, uint64_t *used)
{
	uint8_t *a = NULL, *b = NULL;
	uint64_t ua = 0, ub = 0;
	int ra, rb = 1, rc;

	ra = slot_read(fd, dsize, 0, 0, &a, &ua);
	if (ra < 0 && ra != TS_ERR_CORRUPT && ra != TS_ERR_VERSION)
		return ra;
	if (ra == 0) {
		rb = slot_read(fd, dsize, get64(a, H_SLOT_SIZE), 1, &b, &ub);
	} else {
		int bad = 1; /* remember a damaged copy seen while probing */

		for (uint64_t off = 4096; off <= dsize / 2 && rb != 0; off <<= 1) {
			rb = slot_read(fd, dsize, off, 1, &b, &ub);
			if (rb == TS_ERR_CORRUPT || rb == TS_ERR_VERSION)
				bad = rb;
			else if (rb < 0)
				break;
		}
		if (rb == 1)
			rb = bad;
	}
	if (rb < 0 && rb != TS_ERR_CORRUPT && rb != TS_ERR_VERSION) {
		rc = rb;
		goto fail;
	}
	if (ra == 0 && rb == 0 && get64(b, H_SEQ) > get64(a, H_SEQ)) {
		ts_free(a);
		a = b;
		ua = ub;
		b = NULL;
	} else if (ra != 0 && rb == 0) {
		a = b;
		ua = ub;
		b = NULL;
		ra = 0;
	}
	if (ra != 0) {
		if (ra == TS_ERR_VERSION || rb == TS_ERR_VERSION)
			rc = TS_ERR_VERSION;
		else if (ra == 1 && rb == 1)
			rc = TS_ERR_FOREIGN;
		else
			rc = TS_ERR_CORRUPT;
		goto fail;
	}
	ts_free(b);
	*img = a;
	*used = ua;
	return 0;
fail:
	ts_free(a);
	ts_free(b);
	return rc;
}

/* ---- writing a superblock ---- */

/* Image buffers are padded with zeroes to whole sectors: no allocation here. */
static int slot_write(struct pem_disk *d, const uint8_t *buf, uint64_t used, uint64_t off)
{
	long cut = atomic_load(&g_cut);
	unsigned seed = atomic_exchange(&g_torn_seed, 0);
	uint64_t len = TS_ALIGN_UP(used, PEM_SECTOR);
	int rc;

	(void)d;
	if (seed) {
		for (uint64_t s = 0; s < len; s += PEM_SECTOR)
			if (rand_r(&seed) & 1) {
				rc = ts_pwrite_full(d->fd, buf + s, PEM_SECTOR, off + s);
				if (rc)
					goto out;
			}
		rc = -EIO;
		goto out;
	}
	if (cut >= 0) {
		uint64_t n = TS_MIN((uint64_t)cut, len);

		atomic_store(&g_cut, cut - (long)n);
		rc = n ? ts_pwrite_full(d->fd, buf, n, off) : 0;
		if (rc == 0 && n < len)
			rc = -EIO;
		if (rc)
			goto out;
	} else {
		rc = ts_pwrite_full(d->fd, buf, len, off);
		if (rc)
			goto out;
	}
	rc = fdatasync(d->fd) < 0 ? -errno : 0;
out:
	return rc;
}

/* Seal and persist \p img (a modified copy of d->img) as the next copy. */
static int sb_commit(struct ts_pem *pem, struct pem_disk *d, uint8_t *img)
{
	uint64_t seq = d->seq + 1;
	int rc;

	if (pem->failed)
		return -EIO;
	put64(img, H_SEQ, seq);
	put64(img, H_CRC, img_crc(img, d->used));
	rc = slot_write(d, img, d->used, (seq % 2) * d->slot_size);
	if (rc) {
		if (rc != -ENOMEM) {
			pem->failed = 1;
			ts_log(TS_LOG_ERROR, "pem", "superblock write failed disk=%s err=\"%s\"",
			       d->path, ts_strerror(rc));
		}
		return rc;
	}
	return 0;
}

static void img_install(struct pem_disk *d, uint8_t *img)
{
	uint64_t nfree = 0;

	if (d->img != img)
		ts_free(d->img);
	d->img = img;
	d->seq = get64(img, H_SEQ);
	for (uint64_t i = 0; i < d->count; i++)
		if (!(get32(entry(img, i), E_STATE) & E_USED))
			nfree++;
	d->nfree = nfree;
}

/* ---- format ---- */

int ts_pem_format(const char *const *paths, uint32_t n, const struct ts_pem_opts *opts)
{
	int fds[TS_PEM_MAX_DISKS];
	uint64_t sizes[TS_PEM_MAX_DISKS];
	uint8_t set_uuid[16];
	uint8_t *img = NULL;
	uint32_t i;
	int rc = 0, is_blk;

	if (!paths || !opts || n == 0 || n > TS_PEM_MAX_DISKS || uuid_is_zero(opts->cluster_uuid))
		return -EINVAL;
	if (opts->extent_size < TS_PEM_MIN_EXTENT ||
	    (opts->extent_size & (opts->extent_size - 1))) {
		ts_log(TS_LOG_ERROR, "pem", "bad extent size extent_size=%llu",
		       (unsigned long long)opts->extent_size);
		return TS_ERR_GEOMETRY;
	}
	for (i = 0; i < n; i++)
		fds[i] = -1;
	/* Check every disk before writing any. */
	for (i = 0; i < n; i++) {
		uint64_t used;

		fds[i] = open(paths[i], O_RDWR | O_CLOEXEC);
		if (fds[i] < 0) {
			rc = -errno;
			ts_log(TS_LOG_ERROR, "pem", "cannot open disk=%s err=\"%s\"", paths[i],
			       ts_strerror(rc));
			goto fail;
		}
		rc = disk_lock(fds[i], paths[i]);
		if (rc)
			goto fail;
		rc = disk_size(fds[i], &is_blk, &sizes[i]);
		if (rc)
			goto fail;
		if (extents_for(sizes[i], opts->extent_size) == 0) {
			rc = TS_ERR_TOO_SMALL;
			ts_log(TS_LOG_ERROR, "pem", "disk too small for one extent disk=%s size=%llu extent_size=%llu",
			       paths[i], (unsigned long long)sizes[i],
			       (unsigned long long)opts->extent_size);
			goto fail;
		}
		rc = sb_read(fds[i], sizes[i], &img, &used);
		ts_free(img);
		img = NULL;
		if (rc == 0 && !(opts->flags & TS_PEM_FORMAT_FORCE)) {
			rc = -EEXIST;
			ts_log(TS_LOG_ERROR, "pem", "disk holds a Tessera superblock, not formatting without force disk=%s",
			       paths[i]);
			goto fail;
		}
		if (rc != 0 && rc != TS_ERR_FOREIGN && rc != TS_ERR_CORRUPT && rc != TS_ERR_VERSION)
			goto fail;
		rc = 0;
	}
	rc = ts_uuid_generate(set_uuid);
	if (rc)
		goto fail;
	for (i = 0; i < n; i++) {
		uint64_t count = extents_for(sizes[i], opts->extent_size);
		uint64_t ss = slot_size_for(count), used = PEM_HDR_SIZE + count * PEM_ENTRY_SIZE;
		uint8_t wipe[PEM_HDR_SIZE] = { 0 };
		struct pem_disk d = { .path = (char *)paths[i], .fd = fds[i], .used = used, .slot_size = ss };

		img = ts_calloc(1, TS_ALIGN_UP(used, PEM_SECTOR));
		if (!img) {
			rc = -ENOMEM;
			goto fail;
		}
		memcpy(img + H_MAGIC, PEM_MAGIC, 8);
		put32(img, H_VERSION, PEM_VERSION);
		put32(img, H_HDRSIZE, PEM_HDR_SIZE);
		memcpy(img + H_CLUSTER, opts->cluster_uuid, 16);
		rc = ts_uuid_generate(img + H_DISK_UUID);
		if (rc)
			goto fail;
		put32(img, H_NODE, opts->node_id);
		put32(img, H_DISK_INDEX, i);
		put32(img, H_DISK_COUNT, n);
		put32(img, H_ENTRY_SIZE, PEM_ENTRY_SIZE);
		put64(img, H_EXTENT_SIZE, opts->extent_size);
		put64(img, H_EXTENT_COUNT, count);
		put64(img, H_DATA_OFF, data_off_for(count));
		put64(img, H_SLOT_SIZE, ss);
		memcpy(img + H_SET_UUID, set_uuid, 16);
		/*
		 * Kill any older copies first (an old slot 1 could carry a higher
		 * seq than the new ones), then write both slots: seq 1 and 2.
		 */
		if ((rc = ts_pwrite_full(fds[i], wipe, sizeof(wipe), 0)) ||
		    (rc = ts_pwrite_full(fds[i], wipe, sizeof(wipe), ss)))
			goto fail;
		for (uint64_t off = 4096; off <= sizes[i] / 2; off <<= 1)
			if (off != ss) {
				uint8_t m[8];

				if (ts_pread_full(fds[i], m, 8, off) == 0 && !memcmp(m, PEM_MAGIC, 8) &&
				    (rc = ts_pwrite_full(fds[i], wipe, sizeof(wipe), off)))
					goto fail;
			}
		if (fdatasync(fds[i]) < 0) {
			rc = -errno;
			goto fail;
		}
		for (uint64_t seq = 1; seq <= 2; seq++) {
			put64(img, H_SEQ, seq);
			put64(img, H_CRC, img_crc(img, used));
			rc = slot_write(&d, img, used, (seq % 2) * ss);
			if (rc)
				goto fail;
		}
		ts_free(img);
		img = NULL;
		ts_log(TS_LOG_INFO, "pem", "formatted disk=%s node=%u extents=%llu extent_size=%llu",
		       paths[i], opts->node_id, (unsigned long long)count,
		       (unsigned long long)opts->extent_size);
	}
fail:
	ts_free(img);
	for (i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

/* ---- open / close ---- */

static int open_one(struct ts_pem *pem, const char *path, const struct ts_pem_opts *opts,
		    struct pem_disk *d)
{
	uint64_t size;
	int rc;

	d->fd = open(path, O_RDWR | O_CLOEXEC);
	if (d->fd < 0) {
		rc = -errno;
		ts_log(TS_LOG_ERROR, "pem", "cannot open disk=%s err=\"%s\"", path, ts_strerror(rc));
		return rc;
	}
	d->path = ts_strdup(path);
	if (!d->path)
		return -ENOMEM;
	rc = disk_lock(d->fd, path);
	if (rc)
		return rc;
	rc = disk_size(d->fd, &d->is_blk, &size);
	if (rc)
		goto fail;
	rc = sb_read(d->fd, size, &d->img, &d->used);
	if (rc)
		goto fail;
	d->count = get64(d->img, H_EXTENT_COUNT);
	d->slot_size = get64(d->img, H_SLOT_SIZE);
	d->data_off = get64(d->img, H_DATA_OFF);
	img_install(d, d->img);
	if (memcmp(d->img + H_CLUSTER, opts->cluster_uuid, 16)) {
		rc = TS_ERR_FOREIGN;
		ts_log(TS_LOG_ERROR, "pem", "disk belongs to another cluster disk=%s", path);
		return rc;
	}
	if (get32(d->img, H_NODE) != opts->node_id) {
		rc = TS_ERR_FOREIGN;
		ts_log(TS_LOG_ERROR, "pem", "disk belongs to another node disk=%s node=%u want=%u", path,
		       get32(d->img, H_NODE), opts->node_id);
		return rc;
	}
	if (pem->extent_size && get64(d->img, H_EXTENT_SIZE) != pem->extent_size) {
		rc = TS_ERR_GEOMETRY;
		ts_log(TS_LOG_ERROR, "pem", "extent size differs from the other disks disk=%s extent_size=%llu want=%llu",
		       path, (unsigned long long)get64(d->img, H_EXTENT_SIZE),
		       (unsigned long long)pem->extent_size);
		return rc;
	}
	pem->extent_size = get64(d->img, H_EXTENT_SIZE);
	if (pem->extent_size < TS_PEM_MIN_EXTENT || (pem->extent_size & (pem->extent_size - 1)) ||
	    d->data_off != data_off_for(d->count)) {
		rc = TS_ERR_CORRUPT;
		ts_log(TS_LOG_ERROR, "pem", "superblock geometry insane disk=%s", path);
		return rc;
	}
	if (d->data_off + d->count * pem->extent_size > size) {
		rc = TS_ERR_TOO_SMALL;
		ts_log(TS_LOG_ERROR, "pem", "disk shorter than its superblock says disk=%s size=%llu",
		       path, (unsigned long long)size);
		return rc;
	}
	return 0;
fail:
	if (rc == TS_ERR_FOREIGN)
		ts_log(TS_LOG_ERROR, "pem", "not a Tessera disk (no superblock) disk=%s", path);
	else if (rc == TS_ERR_CORRUPT)
		ts_log(TS_LOG_ERROR, "pem", "both superblock copies are corrupt disk=%s", path);
	else
		ts_log(TS_LOG_ERROR, "pem", "cannot read superblock disk=%s err=\"%s\"", path,
		       ts_strerror(rc));
	return rc;
}

static void disk_release(struct pem_disk *d)
{
	if (d->fd >= 0)
		close(d->fd);
	ts_free(d->path);
	ts_free(d->img);
	memset(d, 0, sizeof(*d));
	d->fd = -1;
}

int ts_pem_open(const char *const *paths, uint32_t n, const struct ts_pem_opts *opts,
		struct ts_pem **out)
{
	struct ts_pem *pem;
	struct pem_disk d = { .fd = -1 };
	uint32_t i, count = 0;
	uint8_t set[16];
	int rc = 0;

	if (!paths || !opts || !out || n == 0 || n > TS_PEM_MAX_DISKS)
		return -EINVAL;
	pem = ts_calloc(1, sizeof(*pem));
	if (!pem)
		return -ENOMEM;
	for (i = 0; i < TS_PEM_MAX_DISKS; i++)
		pem->disks[i].fd = -1;
	pthread_mutex_init(&pem->lock, NULL);
	pem->node_id = opts->node_id;
	for (i = 0; i < n; i++) {
		uint32_t pos;

		memset(&d, 0, sizeof(d));
		d.fd = -1;
		rc = open_one(pem, paths[i], opts, &d);
		if (rc)
			goto fail;
		pos = get32(d.img, H_DISK_INDEX);
		if (i == 0) {
			count = get32(d.img, H_DISK_COUNT);
			memcpy(set, d.img + H_SET_UUID, 16);
		}
		if (memcmp(set, d.img + H_SET_UUID, 16) || get32(d.img, H_DISK_COUNT) != count) {
			rc = TS_ERR_FOREIGN;
			ts_log(TS_LOG_ERROR, "pem", "disk belongs to another disk set of this node disk=%s",
			       paths[i]);
			goto fail;
		}
		if (count > TS_PEM_MAX_DISKS || pos >= count || pem->disks[pos].img) {
			rc = pos < count ? -EINVAL : TS_ERR_CORRUPT;
			ts_log(TS_LOG_ERROR, "pem", "disk position duplicated or invalid disk=%s pos=%u",
			       paths[i], pos);
			goto fail;
		}
		pem->disks[pos] = d;
		d.fd = -1;
		d.path = NULL;
		d.img = NULL;
	}
	if (n != count) {
		rc = -ENODEV;
		for (i = 0; i < count; i++)
			if (!pem->disks[i].img)
				ts_log(TS_LOG_ERROR, "pem", "disk of the set is missing pos=%u disks=%u given=%u disk=%s",
				       i, count, n, paths[0]);
		goto fail;
	}
	pem->ndisks = count;
	*out = pem;
	return 0;
fail:
	disk_release(&d);
	ts_pem_close(pem);
	return rc;
}

void ts_pem_close(struct ts_pem *pem)
{
	if (!pem)
		return;
	for (uint32_t i = 0; i < TS_PEM_MAX_DISKS; i++)
		if (pem->disks[i].fd >= 0 || pem->disks[i].img)
			disk_release(&pem->disks[i]);
	pthread_mutex_destroy(&pem->lock);
	ts_free(pem);
}

/* ---- queries ---- */

uint32_t ts_pem_node_id(const struct ts_pem *pem)
{
	return pem->node_id;
}

uint64_t ts_pem_extent_size(const struct ts_pem *pem)
{
	return pem->extent_size;
}

uint32_t ts_pem_disk_count(const struct ts_pem *pem)
{
	return pem->ndisks;
}

uint64_t ts_pem_disk_extents(const struct ts_pem *pem, uint32_t disk)
{
	return disk < pem->ndisks ? pem->disks[disk].count : 0;
}

uint64_t ts_pem_free_extents(const struct ts_pem *pem)
{
	uint64_t n = 0;

	pthread_mutex_lock((pthread_mutex_t *)&pem->lock);
	for (uint32_t i = 0; i < pem->ndisks; i++)
		n += pem->disks[i].nfree;
	pthread_mutex_unlock((pthread_mutex_t *)&pem->lock);
	return n;
}

const char *ts_pem_disk_path(const struct ts_pem *pem, uint32_t disk)
{
	return disk < pem->ndisks ? pem->disks[disk].path : NULL;
}

/* ---- allocation ---- */

static void entry_fill(uint8_t *e, const struct ts_pem_owner *o)
{
	memset(e, 0, PEM_ENTRY_SIZE);
	put32(e, E_STATE, E_USED);
	put32(e, E_INDEX, o->index);
	put32(e, E_FLAGS, o->flags);
	memcpy(e + E_UUID, o->uuid, 16);
	memcpy(e + E_DATA, o->data, TS_PEM_OWNER_DATA);
}

static int ext_valid(const struct ts_pem *pem, struct ts_pem_extent x)
{
	return x.disk < pem->ndisks && x.index < pem->disks[x.disk].count;
}

/*
 * Commit the new images imgs[] (NULL: disk untouched) in the order given by
 * \p order (disk positions), installing each on success. Frees all images.
 */
static int commit_images(struct ts_pem *pem, uint8_t **imgs, const uint32_t *order)
{
	int rc = 0;

	for (uint32_t k = 0; k < pem->ndisks; k++) {
		uint32_t i = order[k];

		if (!imgs[i])
			continue;
		if (rc == 0)
			rc = sb_commit(pem, &pem->disks[i], imgs[i]);
		if (rc == 0)
			img_install(&pem->disks[i], imgs[i]);
		else
			ts_free(imgs[i]);
		imgs[i] = NULL;
	}
	return rc;
}

static int image_copy(struct ts_pem *pem, uint8_t **imgs, uint32_t disk)
{
	if (imgs[disk])
		return 0;
	uint64_t len = TS_ALIGN_UP(pem->disks[disk].used, PEM_SECTOR);

	imgs[disk] = ts_malloc(len);
	if (!imgs[disk])
		return -ENOMEM;
	memcpy(imgs[disk], pem->disks[disk].img, len);
	return 0;
}

/* Disk order with \p key moved to the end (last) or the front (!last). */
static void make_order(const struct ts_pem *pem, uint32_t key, int last, uint32_t *order)
{
	uint32_t k = 0;

	if (!last)
		order[k++] = key;
	for (uint32_t i = 0; i < pem->ndisks; i++)
		if (i != key)
			order[k++] = i;
	if (last)
		order[k++] = key;
}

int ts_pem_alloc(struct ts_pem *pem, uint32_t n, const struct ts_pem_owner *owners,
		 struct ts_pem_extent *out)
{
	uint8_t *imgs[TS_PEM_MAX_DISKS] = { 0 };
	uint64_t left[TS_PEM_MAX_DISKS], cursor[TS_PEM_MAX_DISKS] = { 0 }, total = 0;
	uint32_t order[TS_PEM_MAX_DISKS], i;
	int rc = 0;

	if (!pem || !owners || !out || n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (uuid_is_zero(owners[i].uuid))
			return -EINVAL;
	pthread_mutex_lock(&pem->lock);
	if (pem->failed) {
		rc = -EIO;
		goto fail;
	}
	for (i = 0; i < pem->ndisks; i++) {
		left[i] = pem->disks[i].nfree;
		total += left[i];
	}
	if (total < n) {
		rc = TS_ERR_NO_SPACE;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		uint32_t best = 0;
		struct pem_disk *d;
		uint8_t *e;

		for (uint32_t j = 1; j < pem->ndisks; j++)
			if (left[j] > left[best])
				best = j;
		rc = image_copy(pem, imgs, best);
		if (rc)
			goto fail;
		d = &pem->disks[best];
		while (get32(entry(imgs[best], cursor[best]), E_STATE) & E_USED)
			cursor[best]++;
		e = entry(imgs[best], cursor[best]);
		entry_fill(e, &owners[i]);
		out[i].disk = best;
		out[i].index = (uint32_t)cursor[best];
		left[best]--;
		(void)d;
	}
	make_order(pem, out[0].disk, 1, order);
	rc = commit_images(pem, imgs, order);
	pthread_mutex_unlock(&pem->lock);
	return rc;
fail:
	for (i = 0; i < TS_PEM_MAX_DISKS; i++)
		ts_free(imgs[i]);
	pthread_mutex_unlock(&pem->lock);
	return rc;
}

int ts_pem_free(struct ts_pem *pem, uint32_t n, const struct ts_pem_extent *ext)
{
	uint8_t *imgs[TS_PEM_MAX_DISKS] = { 0 };
	uint32_t order[TS_PEM_MAX_DISKS], i;
	int rc = 0;

	if (!pem || !ext || n == 0)
		return -EINVAL;
	pthread_mutex_lock(&pem->lock);
	if (pem->failed) {
		rc = -EIO;
		goto fail;
	}
	for (i = 0; i < n; i++) {
		uint8_t *e;

		if (!ext_valid(pem, ext[i])) {
			rc = -EINVAL;
			goto fail;
		}
		rc = image_copy(pem, imgs, ext[i].disk);
		if (rc)
			goto fail;
		e = entry(imgs[ext[i].disk], ext[i].index);
		if (!(get32(e, E_STATE) & E_USED)) {
			rc = -EINVAL; /* free, or listed twice */
			goto fail;
		}
		memset(e, 0, PEM_ENTRY_SIZE);
	}
	make_order(pem, ext[0].disk, 0, order);
	rc = commit_images(pem, imgs, order);
	pthread_mutex_unlock(&pem->lock);
	return rc;
fail:
	for (i = 0; i < TS_PEM_MAX_DISKS; i++)
		ts_free(imgs[i]);
	pthread_mutex_unlock(&pem->lock);
	return rc;
}

int ts_pem_set_owner(struct ts_pem *pem, struct ts_pem_extent ext,
		     const struct ts_pem_owner *owner)
{
	uint8_t *imgs[TS_PEM_MAX_DISKS] = { 0 };
	uint32_t order[TS_PEM_MAX_DISKS];
	int rc;

	if (!pem || !owner || uuid_is_zero(owner->uuid))
		return -EINVAL;
	pthread_mutex_lock(&pem->lock);
	rc = pem->failed ? -EIO : ext_valid(pem, ext) ? 0 : -EINVAL;
	if (rc)
		goto fail;
	if (!(get32(entry(pem->disks[ext.disk].img, ext.index), E_STATE) & E_USED)) {
		rc = -EINVAL;
		goto fail;
	}
	rc = image_copy(pem, imgs, ext.disk);
	if (rc)
		goto fail;
	entry_fill(entry(imgs[ext.disk], ext.index), owner);
	make_order(pem, ext.disk, 0, order);
	rc = commit_images(pem, imgs, order);
fail:
	pthread_mutex_unlock(&pem->lock);
	return rc;
}

static void owner_decode(const uint8_t *e, struct ts_pem_owner *o)
{
	o->index = get32(e, E_INDEX);
	o->flags = get32(e, E_FLAGS);
	memcpy(o->uuid, e + E_UUID, 16);
	memcpy(o->data, e + E_DATA, TS_PEM_OWNER_DATA);
}

int ts_pem_get_owner(struct ts_pem *pem, struct ts_pem_extent ext, struct ts_pem_owner *owner)
{
	int rc = 0;

	pthread_mutex_lock(&pem->lock);
	if (!ext_valid(pem, ext)) {
		rc = -EINVAL;
	} else {
		const uint8_t *e = entry(pem->disks[ext.disk].img, ext.index);

		if (get32(e, E_STATE) & E_USED)
			owner_decode(e, owner);
		else
			rc = -ENOENT;
	}
	pthread_mutex_unlock(&pem->lock);
	return rc;
}

int ts_pem_foreach(struct ts_pem *pem,
		   int (*fn)(void *arg, struct ts_pem_extent ext, const struct ts_pem_owner *owner),
		   void *arg)
{
	struct ts_pem_owner o;
	int rc = 0;

	pthread_mutex_lock(&pem->lock);
	for (uint32_t d = 0; d < pem->ndisks && rc == 0; d++)
		for (uint64_t i = 0; i < pem->disks[d].count && rc == 0; i++) {
			const uint8_t *e = entry(pem->disks[d].img, i);

			if (!(get32(e, E_STATE) & E_USED))
				continue;
			owner_decode(e, &o);
			rc = fn(arg, (struct ts_pem_extent){ d, (uint32_t)i }, &o);
		}
	pthread_mutex_unlock(&pem->lock);
	return rc;
}

/* ---- extent IO ---- */

static int io_check(const struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off,
		    uint64_t len, uint64_t *abs)
{
	if (!ext_valid(pem, ext) || off > pem->extent_size || len > pem->extent_size - off)
		return -EINVAL;
	*abs = pem->disks[ext.disk].data_off + (uint64_t)ext.index * pem->extent_size + off;
	return 0;
}

int ts_pem_extent_pread(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off,
			void *buf, size_t len)
{
	uint64_t abs;
	int rc = io_check(pem, ext, off, len, &abs);

	return rc ? rc : ts_pread_full(pem->disks[ext.disk].fd, buf, len, abs);
}

int ts_pem_extent_pwrite(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off,
			 const void *buf, size_t len)
{
	uint64_t abs;
	int rc = io_check(pem, ext, off, len, &abs);

	return rc ? rc : ts_pwrite_full(pem->disks[ext.disk].fd, buf, len, abs);
}

int ts_pem_extent_zero(struct ts_pem *pem, struct ts_pem_extent ext, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[64 * 1024];
	struct pem_disk *d;
	uint64_t abs;
	int rc = io_check(pem, ext, off, len, &abs);

	if (rc || len == 0)
		return rc;
	d = &pem->disks[ext.disk];
	if (d->is_blk) {
		uint64_t range[2] = { abs, len };

		if (ioctl(d->fd, BLKZEROOUT, range) == 0)
			return 0;
	} else if (fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)abs,
			     (off_t)len) == 0) {
		return 0;
	}
	while (len) {
		uint64_t n = TS_MIN(len, sizeof(zeros));

		rc = ts_pwrite_full(d->fd, zeros, n, abs);
		if (rc)
			return rc;
		abs += n;
		len -= n;
	}
	return 0;
}

int ts_pem_sync(struct ts_pem *pem, uint32_t disk)
{
	for (uint32_t i = 0; i < pem->ndisks; i++) {
		if (disk != UINT32_MAX && disk != i)
			continue;
		if (fdatasync(pem->disks[i].fd) < 0)
			return -errno;
	}
	return disk == UINT32_MAX || disk < pem->ndisks ? 0 : -EINVAL;
}
