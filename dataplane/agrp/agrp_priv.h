/* SPDX-License-Identifier: Apache-2.0 */
/* Private to dataplane/agrp: on-disk superblock codec shared by agrp.c and meta.c. */
#ifndef TS_AGRP_PRIV_H
#define TS_AGRP_PRIV_H

#include <stdint.h>

#include "dataplane/agrp/agrp.h"

#define AGRP_MAGIC 0x3130505247415354ull /* "TSAGRP01" little endian */
#define AGRP_VERSION 1u
#define AGRP_SB_SIZE 4096u      /* one superblock copy; copies at 0 and 4096 */
#define AGRP_BM_BLOCK 4096u     /* bitmaps are persisted in blocks of this size */
#define AGRP_MAX_REGION_BITS (1u << 20)
#define AGRP_RESCUE_SLOTS 16u    /* one per worker; see docs/ec-layout.md */

/** Decoded superblock: the public info plus layout fields. */
struct agrp_sb {
	struct ts_agrp_info info;
	uint64_t seq;
	uint32_t region_stripes;
	uint32_t bitmap_bytes;
	uint32_t block_size;
};

/** Serialise \p sb into a zeroed AGRP_SB_SIZE buffer with its CRC. */
void agrp_sb_encode(const struct agrp_sb *sb, uint8_t *buf);
/** Parse one copy: 0, TS_ERR_FOREIGN (no magic), TS_ERR_CORRUPT, TS_ERR_VERSION. */
int agrp_sb_decode(const uint8_t *buf, struct agrp_sb *sb);
/** Read both copies from \p m and pick the newest valid one. */
int agrp_sb_read(struct ts_member *m, struct agrp_sb *sb);

#endif
