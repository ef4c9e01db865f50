/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Replica journal suite: a 4+2 group on three "nodes" (slot i on node i % 3)
 * with one RAM journal per node. A node's outage makes its two members and
 * its journal fail every IO. Checks: healthy writes cost no journal IO;
 * degraded writes are replicated on both live nodes and survive a second
 * node loss (read back from the replicas while the group cannot decode);
 * the index is rebuilt from the journals after a restart; writes with every
 * member live tombstone covered blocks (also across a restart); heal
 * verifies against the EC copy and reclaims; a replica that differs from
 * the EC copy is reported, not reclaimed; a full journal lets writes
 * through unreplicated; a torn last record is ignored; bad input.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/agrp/agrp.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/replog/replog.h"
#include "unit/support/member/test_member.h"

#define BS 4096u
#define MSIZE (4u * 1024 * 1024)
#define JSIZE (2u * 1024 * 1024)
#define N 6

struct fx {
	struct ts_member *mem[N], *jm[3];
	struct tmem *tm[N], *tj[3];
	uint32_t slot_node[N];
	struct ts_replog_opts ro;
	struct ts_replog *rl;
	struct ts_agrp *g;
	uint8_t uuid[16];
	uint8_t *ref;
	uint64_t size;
};

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	g_rng ^= g_rng << 13;
	g_rng ^= g_rng >> 7;
	g_rng ^= g_rng << 17;
	return g_rng;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, 8);
	}
}

static void fx_open_replog(struct fx *f)
{
	cr_assert_eq(ts_replog_open(&f->ro, &f->rl), 0);
}

static void fx_init(struct fx *f, uint64_t jsize)
{
	struct ts_agrp_opts ao = { .chunk_size = 16384, .nthreads = 3 };

	memset(f, 0, sizeof(*f));
	memset(f->uuid, 0x5a, 16);
	for (unsigned i = 0; i < N; i++) {
		f->mem[i] = tm_ram(MSIZE, i % 3, i, &f->tm[i]);
		f->slot_node[i] = i % 3;
	}
	for (unsigned i = 0; i < 3; i++)
		f->jm[i] = tm_ram(jsize, i, 100 + i, &f->tj[i]);
	f->ro = (struct ts_replog_opts){ .journals = f->jm, .njournals = 3, .block_size = BS,
					 .slot_node = f->slot_node, .nslots = N };
	memcpy(f->ro.group_uuid, f->uuid, 16);
	cr_assert_eq(ts_replog_format(&f->ro), 0);
	fx_open_replog(f);
	ao.write_hook = ts_replog_write_hook;
	ao.write_hook_ctx = f->rl;
	cr_assert_eq(ts_agrp_create(f->mem, N, 4, 2, &ao, &f->g), 0);
	f->size = ts_agrp_size(f->g);
	f->ref = calloc(1, f->size);
	cr_assert(f->ref);
}

static void fx_fini(struct fx *f)
{
	ts_agrp_close(f->g);
	ts_replog_close(f->rl);
	for (unsigned i = 0; i < N; i++)
		ts_member_destroy(f->mem[i]);
	for (unsigned i = 0; i < 3; i++)
		ts_member_destroy(f->jm[i]);
	free(f->ref);
}

static void node_mode(struct fx *f, unsigned node, enum tm_mode mode)
{
	for (unsigned i = 0; i < N; i++)
		if (i % 3 == node)
			tm_set_mode(f->tm[i], mode);
	tm_set_mode(f->tj[node], mode);
}

/* Node goes down; a flush makes the group notice (fails its members). */
static void node_down(struct fx *f, unsigned node)
{
	node_mode(f, node, TM_MISSING);
	ts_agrp_flush_sync(f->g);
	for (unsigned i = 0; i < N; i++)
		if (i % 3 == node)
			cr_assert_eq(ts_agrp_live_mask(f->g) >> i & 1, 0);
}

static void node_up(struct fx *f, unsigned node)
{
	node_mode(f, node, TM_OK);
	for (unsigned i = 0; i < N; i++)
		if (i % 3 == node)
			cr_assert_eq(ts_agrp_add_member(f->g, f->mem[i]), 0);
	ts_replog_retry_journals(f->rl);
}

static void write_blocks(struct fx *f, uint64_t blk, uint64_t nblk)
{
	uint8_t *p = f->ref + blk * BS;

	fill(p, nblk * BS);
	cr_assert_eq(ts_agrp_write_sync(f->g, blk * BS, nblk * BS, p), 0);
}

static int agrp_rd(void *ctx, uint64_t off, uint64_t len, void *buf)
{
	return ts_agrp_read_sync(ctx, off, len, buf);
}

static int agrp_wr(void *ctx, uint64_t off, uint64_t len, const void *buf)
{
	return ts_agrp_write_sync(ctx, off, len, buf);
}

static int heal(struct fx *f)
{
	struct ts_replog_ec ec = { .read = agrp_rd, .write = agrp_wr, .ctx = f->g };

	return ts_replog_heal(f->rl, &ec);
}

static struct ts_replog_stats stats(struct fx *f)
{
	struct ts_replog_stats st;

	ts_replog_stats(f->rl, &st);
	return st;
}

Test(replog, healthy_writes_touch_no_journal)
{
	struct fx f;

	fx_init(&f, JSIZE);
	for (unsigned i = 0; i < 3; i++)
		tm_reset_counters(f.tj[i]);
	for (unsigned i = 0; i < 50; i++)
		write_blocks(&f, rnd() % (f.size / BS - 8), 1 + rnd() % 8);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(tm_written(f.tj[i], 0), 0);
	cr_assert_eq(stats(&f).records, 0);
	fx_fini(&f);
}

Test(replog, outage_replicated_survives_second_loss_and_restart)
{
	struct fx f;
	uint64_t blocks[40], nb = 0, covered, unreadable = 0;
	uint8_t *buf = malloc(8 * BS);
	struct ts_replog_stats st;

	fx_init(&f, JSIZE);
	write_blocks(&f, 0, f.size / BS); /* everything written once, healthy */
	node_down(&f, 0);
	tm_reset_counters(f.tj[0]);
	for (unsigned i = 0; i < 40; i++) {
		uint64_t b = rnd() % (f.size / BS - 4);

		write_blocks(&f, b, 1 + (i % 4));
		blocks[nb++] = b;
	}
	st = stats(&f);
	cr_assert_gt(st.records, 0);
	cr_assert_eq(st.last_copies, 2, "one copy per live node");
	cr_assert_eq(st.replicated_bytes, 2 * st.covered_bytes, "replicated=%llu covered=%llu", (unsigned long long)st.replicated_bytes, (unsigned long long)st.covered_bytes);
	cr_assert_eq(tm_written(f.tj[0], 0), 0);
	covered = st.covered_bytes;

	/* second node lost: the group cannot decode, the replicas still answer */
	node_mode(&f, 1, TM_MISSING);
	tm_set_mode(f.tj[1], TM_OK); /* journals are read independently below */
	for (unsigned i = 0; i < nb; i++) {
		uint64_t n = 1 + (i % 4), b = blocks[i];

		/* chunk-local reads of node 2's fragments still work; the rest fail */
		unreadable += ts_agrp_read_sync(f.g, b * BS, n * BS, buf) != 0;
		/* a later write may have overlapped: check block by block */
		for (uint64_t x = 0; x < n; x++) {
			cr_assert_eq(ts_replog_read(f.rl, (b + x) * BS, BS, buf), 0);
			cr_assert_eq(memcmp(buf, f.ref + (b + x) * BS, BS), 0);
		}
	}
	cr_assert_gt(unreadable, 0, "the group lost two nodes: it cannot decode");
	/* with only node 2's journal: still every covered block */
	tm_set_mode(f.tj[1], TM_MISSING);
	for (unsigned i = 0; i < nb; i++) {
		cr_assert_eq(ts_replog_read(f.rl, blocks[i] * BS, BS, buf), 0);
		cr_assert_eq(memcmp(buf, f.ref + blocks[i] * BS, BS), 0);
	}
	/* a block never written during the outage is not covered */
	{
		uint64_t b = 0;
		int hit = 1;

		while (hit) {
			hit = 0;
			for (unsigned i = 0; i < nb; i++)
				hit |= b >= blocks[i] && b < blocks[i] + 4;
			if (hit)
				b++;
		}
		if (b < f.size / BS) {
			int rc = ts_replog_read(f.rl, b * BS, BS, buf);

			cr_assert(rc == -ENOENT || rc == 0);
		}
	}

	/* restart of the journal (controller restart): same coverage */
	tm_set_mode(f.tj[1], TM_OK);
	ts_agrp_close(f.g);
	f.g = NULL;
	ts_replog_close(f.rl);
	fx_open_replog(&f);
	st = stats(&f);
	cr_assert_eq(st.covered_bytes, covered);
	for (unsigned i = 0; i < nb; i++) {
		cr_assert_eq(ts_replog_read(f.rl, blocks[i] * BS, BS, buf), 0);
		cr_assert_eq(memcmp(buf, f.ref + blocks[i] * BS, BS), 0);
	}
	/* reassemble the group once every node is back, then heal */
	node_mode(&f, 0, TM_OK);
	node_mode(&f, 1, TM_OK);
	{
		struct ts_agrp_opts ao = { .nthreads = 3, .write_hook = ts_replog_write_hook,
					   .write_hook_ctx = f.rl };
		struct ts_agrp_stats as;

		cr_assert_eq(ts_agrp_assemble(f.mem, N, &ao, &f.g), 0);
		cr_assert_eq(ts_agrp_live_mask(f.g), (1u << N) - 1);
		ts_agrp_stats(f.g, &as);
		cr_assert_eq(as.ood_regions, 0);
	}
	ts_replog_retry_journals(f.rl);
	cr_assert_eq(heal(&f), 0);
	st = stats(&f);
	cr_assert_eq(st.covered_bytes, 0);
	cr_assert_eq(st.replicated_bytes, 0);
	cr_assert_eq(st.used_bytes, 4096, "journal space reclaimed");
	cr_assert_eq(st.heals, 1);
	cr_assert_eq(st.heal_total_bytes, covered);
	cr_assert_eq(st.heal_done_bytes, covered);
	/* and the data is whole through EC */
	for (uint64_t b = 0; b < f.size / BS; b += 8) {
		uint64_t n = TS_MIN(8, f.size / BS - b);

		cr_assert_eq(ts_agrp_read_sync(f.g, b * BS, n * BS, buf), 0);
		cr_assert_eq(memcmp(buf, f.ref + b * BS, n * BS), 0);
	}
	/* a reopen after the reclaim finds nothing */
	ts_replog_close(f.rl);
	fx_open_replog(&f);
	cr_assert_eq(stats(&f).covered_bytes, 0);
	cr_assert_eq(stats(&f).epoch, 2);
	/* the group still points at the old journal object: swap it out */
	ts_agrp_close(f.g);
	f.g = NULL;
	free(buf);
	fx_fini(&f);
}

Test(replog, healthy_overwrite_tombstones_across_restart)
{
	struct fx f;
	uint8_t buf[BS];

	fx_init(&f, JSIZE);
	node_down(&f, 2);
	write_blocks(&f, 10, 4);
	cr_assert_eq(stats(&f).covered_bytes, 4 * BS);
	node_up(&f, 2);
	write_blocks(&f, 11, 2); /* every member live: tombstone */
	cr_assert_eq(stats(&f).covered_bytes, 2 * BS);
	cr_assert_eq(ts_replog_read(f.rl, 11 * BS, BS, buf), -ENOENT);
	cr_assert_eq(ts_replog_read(f.rl, 10 * BS, BS, buf), 0);
	cr_assert_eq(memcmp(buf, f.ref + 10 * BS, BS), 0);
	/* restart: the tombstone is on disk */
	{
		struct ts_replog *old = f.rl;

		cr_assert_eq(ts_replog_open(&f.ro, &f.rl), 0);
		cr_assert_eq(stats(&f).covered_bytes, 2 * BS);
		cr_assert_eq(ts_replog_read(f.rl, 12 * BS, BS, buf), -ENOENT);
		ts_replog_close(f.rl);
		f.rl = old;
	}
	cr_assert_eq(heal(&f), 0);
	cr_assert_eq(stats(&f).covered_bytes, 0);
	cr_assert_eq(stats(&f).heals, 1);
	fx_fini(&f);
}

Test(replog, heal_writes_back_a_replica_that_differs)
{
	struct fx f;
	struct ts_replog_ec ro;
	uint8_t other[BS], buf[BS];

	fx_init(&f, JSIZE);
	write_blocks(&f, 5, 1);
	write_blocks(&f, 9, 1);
	/* replicas that never reached the group (as if the EC write failed) */
	fill(other, BS);
	cr_assert_eq(ts_replog_write_hook(f.rl, 5 * BS, BS, other, 1), 0);
	cr_assert_eq(ts_replog_write_hook(f.rl, 9 * BS, BS, other, 1), 0);
	/* without a write fn a difference is only reported, and kept */
	ro = (struct ts_replog_ec){ .read = agrp_rd, .ctx = f.g };
	cr_assert_eq(ts_replog_heal(f.rl, &ro), TS_ERR_CORRUPT);
	cr_assert_eq(stats(&f).heal_mismatches, 2);
	cr_assert_eq(stats(&f).covered_bytes, 2 * BS, "kept, not reclaimed");
	cr_assert_eq(stats(&f).heals, 0);
	/* a newer healthy write to block 9 supersedes its replica (tombstone) */
	write_blocks(&f, 9, 1);
	/* with one: block 5 gets the replica back, block 9 keeps the newer data */
	cr_assert_eq(heal(&f), 0);
	cr_assert_eq(stats(&f).heals, 1);
	cr_assert_eq(stats(&f).used_bytes, 4096);
	cr_assert_eq(ts_agrp_read_sync(f.g, 5 * BS, BS, buf), 0);
	cr_assert_eq(memcmp(buf, other, BS), 0);
	cr_assert_eq(ts_agrp_read_sync(f.g, 9 * BS, BS, buf), 0);
	cr_assert_eq(memcmp(buf, f.ref + 9 * BS, BS), 0);
	fx_fini(&f);
}

Test(replog, failed_reclaim_keeps_tombstoning_verified_blocks)
{
	struct fx f;
	uint8_t buf[BS];

	fx_init(&f, JSIZE);
	node_down(&f, 0);
	write_blocks(&f, 20, 4);
	node_up(&f, 0);
	/* no journal takes the reclaim: verified, but not reclaimed */
	for (unsigned j = 0; j < 3; j++)
		tm_set_mode(f.tj[j], TM_FAIL_WRITES);
	cr_assert_neq(heal(&f), 0);
	cr_assert_eq(stats(&f).heals, 0);
	cr_assert_eq(stats(&f).covered_bytes, 4 * BS);
	cr_assert_eq(stats(&f).heal_done_bytes, 4 * BS);
	for (unsigned j = 0; j < 3; j++)
		tm_set_mode(f.tj[j], TM_OK);
	ts_replog_retry_journals(f.rl);
	/* a healthy overwrite of a verified block still tombstones it */
	write_blocks(&f, 21, 1);
	cr_assert_eq(stats(&f).covered_bytes, 3 * BS);
	/* restart: the records come back, minus the tombstoned block */
	{
		struct ts_replog *old = f.rl;

		cr_assert_eq(ts_replog_open(&f.ro, &f.rl), 0);
		cr_assert_eq(stats(&f).covered_bytes, 3 * BS);
		cr_assert_eq(ts_replog_read(f.rl, 21 * BS, BS, buf), -ENOENT);
		ts_replog_close(f.rl);
		f.rl = old;
	}
	cr_assert_eq(heal(&f), 0);
	cr_assert_eq(stats(&f).heals, 1);
	cr_assert_eq(stats(&f).used_bytes, 4096);
	fx_fini(&f);
}

Test(replog, reclaim_missed_by_one_journal_leaves_it_stale)
{
	struct fx f;
	struct ts_replog *rl2;
	struct ts_replog_stats st;

	fx_init(&f, JSIZE);
	node_down(&f, 0);
	write_blocks(&f, 30, 2);
	node_up(&f, 0);
	tm_set_mode(f.tj[2], TM_FAIL_WRITES);
	cr_assert_eq(heal(&f), 0, "reclaimed on journals 0 and 1");
	st = stats(&f);
	cr_assert_eq(st.epoch, 2);
	cr_assert_eq(st.covered_bytes, 0);
	cr_assert_eq(st.journals_stale, 1u << 2);
	/* the stale journal takes no appends: copies go to the others only */
	tm_set_mode(f.tj[2], TM_OK);
	node_down(&f, 1);
	write_blocks(&f, 40, 1);
	cr_assert_eq(stats(&f).last_copies, 1, "journal 0 only (1 is down, 2 stale)");
	/* a reopen takes the newest epoch and finds the new record */
	cr_assert_eq(ts_replog_open(&f.ro, &rl2), 0);
	ts_replog_stats(rl2, &st);
	cr_assert_eq(st.epoch, 2);
	cr_assert_eq(st.covered_bytes, BS);
	cr_assert_eq(st.journals_stale, 1u << 2);
	ts_replog_close(rl2);
	/* the next heal rewrites the stale superblock first */
	node_up(&f, 1);
	cr_assert_eq(heal(&f), 0);
	st = stats(&f);
	cr_assert_eq(st.journals_stale, 0);
	cr_assert_eq(st.epoch, 3);
	fx_fini(&f);
}

Test(replog, full_journal_lets_writes_through)
{
	struct fx f;
	uint8_t *buf = malloc(80 * BS);

	fx_init(&f, 64 * 1024); /* room for a few records only */
	node_down(&f, 1);
	for (unsigned i = 0; i < 20; i++)
		write_blocks(&f, i * 4, 4);
	cr_assert_gt(stats(&f).unreplicated_bytes, 0);
	cr_assert_gt(stats(&f).covered_bytes, 0);
	node_up(&f, 1);
	cr_assert_eq(ts_agrp_read_sync(f.g, 0, 80 * BS, buf), 0);
	cr_assert_eq(memcmp(buf, f.ref, 80 * BS), 0);
	cr_assert_eq(heal(&f), 0);
	cr_assert_eq(stats(&f).unreplicated_bytes, 0);
	cr_assert_eq(stats(&f).used_bytes, 4096);
	free(buf);
	fx_fini(&f);
}

Test(replog, torn_last_record_is_ignored)
{
	struct fx f;
	struct ts_replog_stats st;
	uint8_t buf[BS];
	uint64_t head;

	fx_init(&f, JSIZE);
	node_down(&f, 0);
	write_blocks(&f, 1, 1);
	head = stats(&f).used_bytes;
	write_blocks(&f, 2, 1);
	/* tear the second record's header on both copies */
	for (unsigned j = 1; j < 3; j++)
		tm_ram_data(f.tj[j])[head + 100] ^= 0xff;
	ts_agrp_close(f.g);
	f.g = NULL;
	ts_replog_close(f.rl);
	fx_open_replog(&f);
	st = stats(&f);
	cr_assert_eq(st.covered_bytes, BS);
	cr_assert_eq(st.used_bytes, head);
	cr_assert_eq(ts_replog_read(f.rl, BS, BS, buf), 0);
	cr_assert_eq(memcmp(buf, f.ref + BS, BS), 0);
	cr_assert_eq(ts_replog_read(f.rl, 2 * BS, BS, buf), -ENOENT);
	/* a torn data block is caught by its CRC on every copy */
	{
		struct ts_replog_stats s2 = stats(&f);
		uint64_t jpos = s2.used_bytes - BS; /* the first record's data block */

		for (unsigned j = 1; j < 3; j++)
			tm_ram_data(f.tj[j])[jpos + 7] ^= 0x1;
		cr_assert_eq(ts_replog_read(f.rl, BS, BS, buf), -EIO);
	}
	fx_fini(&f);
}

Test(replog, bad_input)
{
	struct fx f;
	struct ts_replog *rl = NULL;
	struct ts_replog_opts o;
	uint8_t buf[BS];

	fx_init(&f, JSIZE);
	o = f.ro;
	o.block_size = 3000;
	cr_assert_eq(ts_replog_open(&o, &rl), -EINVAL);
	o = f.ro;
	o.njournals = 0;
	cr_assert_eq(ts_replog_format(&o), -EINVAL);
	cr_assert_eq(ts_replog_open(NULL, &rl), -EINVAL);
	o = f.ro;
	o.group_uuid[0] ^= 1;
	cr_assert_eq(ts_replog_open(&o, &rl), TS_ERR_FOREIGN);
	cr_assert_eq(ts_replog_write_hook(f.rl, 100, BS, buf, 1), -EINVAL);
	cr_assert_eq(ts_replog_read(f.rl, 0, 100, buf), -EINVAL);
	cr_assert_eq(ts_replog_heal(f.rl, NULL), -EINVAL);
	/* blank journals: nothing to open */
	for (unsigned j = 0; j < 3; j++)
		memset(tm_ram_data(f.tj[j]), 0, BS);
	cr_assert_eq(ts_replog_open(&f.ro, &rl), TS_ERR_CORRUPT);
	fx_fini(&f);
}
