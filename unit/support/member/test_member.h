/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test member providers for the unit suites and the benches (one library,
 * ts_test_member): RAM-backed or plain-file-backed members with failure
 * injection, write accounting and, for RAM, simulated power loss.
 *
 *  - RAM (tm_ram(), tm_ram_create()): the image lives in memory. A
 *    crashable RAM member (tm_ram_create()) keeps a volatile image plus a
 *    durable one: writes land in the volatile image and mark blocks dirty;
 *    FLUSH (and FUA) make them durable; tm_ram_crash() simulates power
 *    loss / kill -9: each dirty block reaches the durable image or not (a
 *    seeded coin), then the volatile image is reset to the durable one. It
 *    may complete on a helper thread (async) to exercise callbacks arriving
 *    on another thread.
 *  - file (tm_file(), tm_file_create()): pread/pwrite on a file; with sync,
 *    FLUSH and FUA call fdatasync.
 *
 * Every member: tm_set_mode() injects failures (completing inline with the
 * error), tm_set_write_delay() widens crash windows, tm_written() counts the
 * bytes written since tm_reset_counters(), tm_ram_fail_after() makes every
 * IO after the next n fail with -EIO (a dying device, or a process stopped
 * mid-way), tm_ram_ios() counts IOs, tm_set_stall() parks IOs without
 * completing them (a device that stopped answering) until it is lifted. Memory comes from plain calloc, never
 * the project's allocator, so allocation-failure tests do not fail devices.
 *
 * THREAD SAFETY: IO may be submitted from any thread; the controls may be
 * called from any thread while IO flows. The handle (struct tmem) stays
 * valid until the member is destroyed.
 */
#ifndef TS_UNIT_SUPPORT_TEST_MEMBER_H
#define TS_UNIT_SUPPORT_TEST_MEMBER_H

#include <stdint.h>

#include "dataplane/member/member.h"

enum tm_mode {
	TM_OK = 0,
	TM_FAIL_ALL,    /**< every IO completes with -EIO */
	TM_FAIL_WRITES, /**< writes and flushes complete with -EIO, reads work */
	TM_MISSING,     /**< every IO completes with TS_ERR_MEMBER_FAILED (gone) */
};

struct tmem;

/** RAM member of \p size bytes (4 KiB blocks) on \p node; uuid and name derived from \p id. NULL on failure. */
struct ts_member *tm_ram(uint64_t size, uint32_t node, uint32_t id, struct tmem **out);
/** File member (created/extended to \p size); \p sync: FLUSH/FUA call fdatasync. NULL on failure. */
struct ts_member *tm_file(const char *path, uint64_t size, uint32_t node, uint32_t id, int sync,
			  struct tmem **out);
/**
 * Crashable RAM member of \p size bytes, block size \p bs (name "ram", zero
 * uuid); \p async: complete on a helper thread. 0, -ENOMEM or -EAGAIN.
 */
int tm_ram_create(uint64_t size, uint32_t bs, int async, struct ts_member **m, struct tmem **ctl);
/** File member on \p path (created/extended to \p size), fdatasync on FLUSH/FUA. 0 or -errno. */
int tm_file_create(const char *path, uint64_t size, struct ts_member **m);

void tm_set_mode(struct tmem *t, enum tm_mode mode);
/**
 * Stall: while \p on, every IO submitted is accepted (submit returns 0) and
 * parked, not performed or completed. Lifting it (\p on 0) performs and
 * completes the parked IOs in submission order, in the caller's thread,
 * before returning. Destroying a member with parked IOs is an error.
 */
void tm_set_stall(struct tmem *t, int on);
/** IOs parked by a stall right now. */
unsigned tm_stalled(struct tmem *t);
/** Sleep \p usec before each non-FUA write (widens crash windows in data writes). */
void tm_set_write_delay(struct tmem *t, unsigned usec);
/** Bytes written at or after \p from since the last reset. */
uint64_t tm_written(struct tmem *t, uint64_t from);
void tm_reset_counters(struct tmem *t);
/** Raw access to the RAM image (the volatile one; NULL for files). */
uint8_t *tm_ram_data(struct tmem *t);
/** Crashable RAM: drop unflushed writes (each kept with probability keep_pct/100, seeded), disarm failures. */
void tm_ram_crash(struct tmem *t, unsigned keep_pct, unsigned seed);
/** After \p n more IOs every IO fails with -EIO; n < 0 disarms. */
void tm_ram_fail_after(struct tmem *t, long n);
/** IOs submitted so far. */
uint64_t tm_ram_ios(struct tmem *t);

#endif
