/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test member providers for the AGRP suites and bench: RAM-backed and
 * plain-file-backed, completing inline, with failure injection.
 */
#ifndef TS_TEST_MEMBER_H
#define TS_TEST_MEMBER_H

#include <stdint.h>

#include "dataplane/member/member.h"

enum tm_mode {
	TM_OK = 0,
	TM_FAIL_ALL,    /**< every IO completes with -EIO */
	TM_FAIL_WRITES, /**< writes and flushes complete with -EIO, reads work */
	TM_MISSING,     /**< every IO completes with TS_ERR_MEMBER_FAILED (gone) */
};

struct tmem;

/** RAM member of \p size bytes (4 KiB blocks) on \p node; uuid derived from \p id. */
struct ts_member *tm_ram(uint64_t size, uint32_t node, uint32_t id, struct tmem **out);
/** File member (created/extended to \p size); \p sync: FLUSH/FUA call fdatasync. */
struct ts_member *tm_file(const char *path, uint64_t size, uint32_t node, uint32_t id, int sync,
			  struct tmem **out);
void tm_set_mode(struct tmem *t, enum tm_mode mode);
/** Sleep \p usec before each non-FUA write (widens crash windows in data writes). */
void tm_set_write_delay(struct tmem *t, unsigned usec);
/** Bytes written at or after \p from since the last reset. */
uint64_t tm_written(struct tmem *t, uint64_t from);
void tm_reset_counters(struct tmem *t);
/** Raw access to the RAM backing (NULL for files). */
uint8_t *tm_ram_data(struct tmem *t);

#endif
