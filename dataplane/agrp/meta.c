/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Group superblock codec and fragment placement.
 *
 * The superblock is the group's truth on each member (as in RAID): identity,
 * geometry, the slot table (member uuid + node of all k+m slots) and the
 * generation. It is double-buffered: copy (seq % 2) of two 4 KiB copies at
 * offsets 0 and 4096 is rewritten on each update, so a torn write destroys at
 * most the copy being written and the other one, one sequence older, stays
 * valid. Each copy carries an ISA-L CRC32C over its first 4092 bytes.
 * Fields are little endian at fixed offsets (see docs/ec-layout.md).
 *
 * Placement is a greedy fill: each fragment goes to the node with the fewest
 * fragments so far among nodes with a free slot (ties: the most free slots,
 * then the lowest index). That keeps counts within one of each other whenever
 * slot counts allow, and round-robins consecutive fragments over nodes.
 */
#include <errno.h>
#include <isa-l/crc.h>
#include <string.h>

#include "dataplane/agrp/agrp_priv.h"
#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

#define SLOTS_OFF 96u
#define SLOT_SIZE 24u
#define CRC_OFF (AGRP_SB_SIZE - 4u)

void agrp_sb_encode(const struct agrp_sb *sb, uint8_t *buf)
{
	const struct ts_agrp_info *in = &sb->info;

	memset(buf, 0, AGRP_SB_SIZE);
	put64(buf + 0, AGRP_MAGIC);
	put32(buf + 8, AGRP_VERSION);
	put32(buf + 12, AGRP_SB_SIZE);
	memcpy(buf + 16, in->group_uuid, 16);
	put32(buf + 32, in->k);
	put32(buf + 36, in->m);
	put32(buf + 40, in->chunk_size);
	put32(buf + 44, in->member_index);
	put64(buf + 48, in->generation);
	put64(buf + 56, sb->seq);
	put64(buf + 64, in->data_offset);
	put64(buf + 72, in->nstripes);
	put32(buf + 80, sb->region_stripes);
	put32(buf + 84, sb->bitmap_bytes);
	put32(buf + 88, sb->block_size);
	for (unsigned i = 0; i < in->k + in->m && i < TS_AGRP_MAX_MEMBERS; i++) {
		memcpy(buf + SLOTS_OFF + i * SLOT_SIZE, in->slots[i].uuid, 16);
		put32(buf + SLOTS_OFF + i * SLOT_SIZE + 16, in->slots[i].node_id);
	}
	put32(buf + CRC_OFF, crc32_iscsi(buf, (int)CRC_OFF, 0xffffffffu));
}

int agrp_sb_decode(const uint8_t *buf, struct agrp_sb *sb)
{
	struct ts_agrp_info *in = &sb->info;

	memset(sb, 0, sizeof(*sb));
	if (get64(buf) != AGRP_MAGIC)
		return TS_ERR_FOREIGN;
	if (get32(buf + CRC_OFF) != crc32_iscsi((unsigned char *)buf, (int)CRC_OFF, 0xffffffffu))
		return TS_ERR_CORRUPT;
	if (get32(buf + 8) != AGRP_VERSION)
		return TS_ERR_VERSION;
	memcpy(in->group_uuid, buf + 16, 16);
	in->k = get32(buf + 32);
	in->m = get32(buf + 36);
	in->chunk_size = get32(buf + 40);
	in->member_index = get32(buf + 44);
	in->generation = get64(buf + 48);
	sb->seq = get64(buf + 56);
	in->data_offset = get64(buf + 64);
	in->nstripes = get64(buf + 72);
	sb->region_stripes = get32(buf + 80);
	sb->bitmap_bytes = get32(buf + 84);
	sb->block_size = get32(buf + 88);
	if (get32(buf + 12) != AGRP_SB_SIZE || in->k < 1 || in->k > TS_EC_MAX_K || in->m < 1 ||
	    in->m > TS_EC_MAX_M || in->member_index >= in->k + in->m || in->chunk_size == 0 ||
	    sb->block_size < 512 || in->chunk_size % sb->block_size || sb->region_stripes == 0 ||
	    sb->bitmap_bytes % AGRP_BM_BLOCK || in->nstripes == 0 ||
	    in->data_offset < TS_AGRP_SB_AREA ||
	    (uint64_t)sb->bitmap_bytes * 8 * sb->region_stripes < in->nstripes)
		return TS_ERR_CORRUPT;
	for (unsigned i = 0; i < in->k + in->m; i++) {
		memcpy(in->slots[i].uuid, buf + SLOTS_OFF + i * SLOT_SIZE, 16);
		in->slots[i].node_id = get32(buf + SLOTS_OFF + i * SLOT_SIZE + 16);
	}
	return 0;
}

int agrp_sb_read(struct ts_member *m, struct agrp_sb *sb)
{
	struct agrp_sb a, b;
	uint8_t *buf;
	int rc, ra, rb;

	buf = ts_aligned_alloc(4096, 2 * AGRP_SB_SIZE);
	if (!buf)
		return -ENOMEM;
	rc = ts_member_rw_sync(m, TS_MEMBER_READ, 0, 0, 2 * AGRP_SB_SIZE, buf);
	if (rc < 0)
		goto out;
	ra = agrp_sb_decode(buf, &a);
	rb = agrp_sb_decode(buf + AGRP_SB_SIZE, &b);
	if (ra == 0 && (rb != 0 || a.seq >= b.seq))
		*sb = a;
	else if (rb == 0)
		*sb = b;
	else /* prefer the more telling error: corrupt over foreign */
		rc = (ra == TS_ERR_FOREIGN) ? rb : ra;
out:
	ts_free(buf);
	return rc;
}

int ts_agrp_probe(struct ts_member *m, struct ts_agrp_info *info)
{
	struct agrp_sb sb;
	int rc;

	if (!m || !info)
		return -EINVAL;
	rc = agrp_sb_read(m, &sb);
	if (rc == 0)
		*info = sb.info;
	return rc;
}

int ts_agrp_place(const struct ts_agrp_node *nodes, unsigned nnodes, unsigned nfrag,
		  uint32_t *out_node)
{
	unsigned used[256];
	uint64_t total = 0;

	if (!nodes || !out_node || nnodes == 0 || nnodes > TS_ARRAY_SIZE(used) || nfrag == 0)
		return -EINVAL;
	for (unsigned i = 0; i < nnodes; i++) {
		for (unsigned j = 0; j < i; j++)
			if (nodes[j].node_id == nodes[i].node_id)
				return -EINVAL;
		total += nodes[i].slots;
		used[i] = 0;
	}
	if (total < nfrag)
		return TS_ERR_NO_SPACE;
	for (unsigned f = 0; f < nfrag; f++) {
		int best = -1;

		for (unsigned i = 0; i < nnodes; i++) {
			if (used[i] >= nodes[i].slots)
				continue;
			if (best < 0 || used[i] < used[best] ||
			    (used[i] == used[best] &&
			     nodes[i].slots - used[i] > nodes[best].slots - used[best]))
				best = (int)i;
		}
		if (best < 0) /* cannot happen: total slots >= nfrag */
			return TS_ERR_NO_SPACE;
		used[best]++;
		out_node[f] = nodes[best].node_id;
	}
	return 0;
}
