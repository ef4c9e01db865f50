/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Replica journal: temporary replication of the writes an array group takes
 * while members are out (DESIGN.md capability 9; docs/ec-layout.md,
 * "Temporary replication").
 *
 * A degraded EC write leaves its stripes with less redundancy than the code
 * promises: 4+2 on three nodes with one node down keeps exactly k fragments,
 * so one more loss would lose them. The journal keeps a whole copy of every
 * such write on each live node (one journal member per node, an ordinary
 * vdisk), written with FUA *before* the group applies the write, so the data
 * survives one more node loss. When every member is back and resynced, the
 * heal step verifies that the erasure-coded data equals the replicas and
 * reclaims the journal (ts_replog_heal()).
 *
 * Journal layout (every journal member has the same layout; a record sits at
 * the same offset on each live journal):
 *   block 0     superblock: magic, group uuid, epoch, CRC
 *   block 1...  records, appended: a header block (magic, epoch, seq, kind,
 *               volume offset, length, one CRC32C per data block, header CRC)
 *               followed by the data blocks. Kinds: DATA (a write's
 *               blocks) and TOMBSTONE (these blocks are no longer covered: a
 *               write with every member live overwrote them).
 * Reclaiming writes epoch + 1 to every superblock: older records no longer
 * count. Opening scans the journals from block 1 taking, at each position,
 * any copy whose header is valid for the current epoch with the next
 * sequence number; the first position where none is stops the scan (appends
 * are serialised, so only the last record can be torn, and it was never
 * acknowledged).
 *
 * The index (block -> record position, sequence) lives in memory. Writes to
 * covered blocks with every member live append a TOMBSTONE first, so a
 * restart never resurrects replicas older than the erasure-coded data.
 *
 * THREAD SAFETY: all calls may run from any thread. One mutex guards the
 * index and the counters; an append mutex serialises journal appends. Member
 * IO is never done under the index mutex. Must not be called from a member
 * completion context (journal IO is synchronous).
 */
#ifndef TS_REPLOG_H
#define TS_REPLOG_H

#include <stdint.h>

#include "dataplane/member/member.h"

#define TS_REPLOG_MAX_JOURNALS 64
#define TS_REPLOG_MAX_SLOTS 64
/** Longest record payload; longer writes are split into several records. */
#define TS_REPLOG_MAX_RECORD (2u * 1024u * 1024u)

struct ts_replog_opts {
	struct ts_member *const *journals; /**< one per node, borrowed; outlive the journal */
	unsigned njournals;
	uint8_t group_uuid[16];
	uint32_t block_size;               /**< the group's block size (index unit) */
	const uint32_t *slot_node;         /**< node of each group slot (journal nodes come from their members) */
	unsigned nslots;
};

struct ts_replog;

/**
 * Write an empty journal (superblock, epoch 1) on every member.
 * Returns 0, -EINVAL (NULLs, no journal, block size not a power of two in
 * [512, 64 KiB] or not dividing the member size) or a member IO error.
 */
int ts_replog_format(const struct ts_replog_opts *o);

/**
 * Open: read the superblocks (journals that do not answer are skipped and
 * marked out), take the highest valid epoch, scan its records, rebuild the
 * index. Returns 0 and *\p out, -EINVAL, TS_ERR_FOREIGN (a superblock of
 * another group), TS_ERR_CORRUPT (no journal has a valid superblock),
 * -ENOMEM.
 */
int ts_replog_open(const struct ts_replog_opts *o, struct ts_replog **out);

/** Free. NULL is a no-op. */
void ts_replog_close(struct ts_replog *rl);

/**
 * The array group's write hook (ts_agrp_opts.write_hook; \p ctx is the
 * journal). Called before every write is applied, with the write's stripes
 * locked. \p missing != 0 (degraded): append the data to every journal on a
 * node that holds none of the missing slots (FUA), then index it.
 * \p missing == 0: if the range overlaps covered blocks, append a tombstone
 * and drop them. Returns 0 (also when the journal is full or has no live
 * journal: the write proceeds unreplicated and is counted), a journal IO
 * error only for a tombstone that could be written nowhere, or
 * TS_ERR_FENCED once a journal refused a write because another engine owns
 * the group (docs/fencing.md; sticky: every later append fails the same way
 * without journal IO).
 */
int ts_replog_write_hook(void *ctx, uint64_t off, uint64_t len, const void *buf, uint64_t missing);

/**
 * Read [off, off+len) from the replicas. 0 when every block is covered (buf
 * filled, each block checked against its CRC, trying every copy), -ENOENT
 * when some block is not covered, -EIO when no copy of a covered block is
 * readable and intact.
 */
int ts_replog_read(struct ts_replog *rl, uint64_t off, uint64_t len, void *buf);

/** The erasure-coded copy, for the heal (e.g. ts_agrp_read_sync/write_sync). */
struct ts_replog_ec {
	int (*read)(void *ctx, uint64_t off, uint64_t len, void *buf);
	/** Repairs a block from its replica; optional (without it a differing
	 *  block is only reported). Must go through the group, so the write hook
	 *  runs: that is how a repair is checked against newer writes. */
	int (*write)(void *ctx, uint64_t off, uint64_t len, const void *buf);
	void *ctx;
};

/**
 * Heal: for every covered block not yet verified, read the erasure-coded
 * copy and compare it with the replica. Equal: verified. Different: the
 * block's last write was not acknowledged by the group (it failed, or the
 * controller died under it) — both contents are valid outcomes of it — or
 * the erasure-coded copy lost it; either way the replica is written back
 * through \p ec->write (a repair, counted in heal_mismatches), unless a newer
 * write reached the block meanwhile (the hook refuses the repair then, and
 * the next heal looks again). When every covered block is verified, reclaim
 * the journal (new epoch on every journal, index emptied, append position
 * back to the start). Verified blocks stay indexed until that reclaim
 * succeeds, so writes to them keep appending tombstones (a reopen must not
 * resurrect them). The caller guarantees every group member is live and
 * resynced. Appends may continue meanwhile. Returns 0, TS_ERR_CORRUPT when a
 * differing block could not be repaired (no write fn), or an IO error (e.g.
 * a journal refused the reclaim).
 */
int ts_replog_heal(struct ts_replog *rl, const struct ts_replog_ec *ec);

/**
 * Journal \p i (its index in opts.journals) lost its vdisk: use blank member
 * \p m instead (formatted here with the current epoch; it holds none of the
 * current records, which keep their other copies). The old member must stay
 * valid until ts_replog_close() (a read may still hold it). Returns 0,
 * -EINVAL (bad index, \p m smaller than the journal), or an IO error.
 */
int ts_replog_replace_journal(struct ts_replog *rl, unsigned i, struct ts_member *m);

/** Let journals marked out (an IO failed) take appends again. */
void ts_replog_retry_journals(struct ts_replog *rl);

struct ts_replog_stats {
	uint64_t epoch;
	uint64_t records;             /**< appended in this epoch */
	uint64_t covered_bytes;       /**< volume bytes with a replica */
	uint64_t replicated_bytes;    /**< journal bytes held, all copies */
	uint64_t used_bytes;          /**< append position (per journal) */
	uint64_t capacity_bytes;      /**< per journal */
	uint32_t last_copies;         /**< copies of the last DATA record */
	uint64_t unreplicated_bytes;  /**< degraded writes that found no room / no journal */
	uint64_t heal_total_bytes;    /**< current or last heal */
	uint64_t heal_done_bytes;
	uint64_t heal_ns;             /**< duration of the last completed heal */
	uint64_t heals;               /**< completed heals (journal reclaimed) */
	uint64_t heal_mismatches;     /**< blocks whose EC copy differed (repaired from the replica) */
	uint64_t journals_out;        /**< bitmask of journals marked out */
	uint64_t journals_stale;      /**< bitmask of journals that missed a reclaim (no appends) */
	int healing;
};

void ts_replog_stats(struct ts_replog *rl, struct ts_replog_stats *st);

#endif /* TS_REPLOG_H */
