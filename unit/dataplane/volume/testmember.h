/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test members for the volume suites (and the volume bench):
 *  - RAM: a volatile image plus a durable one. Writes land in the volatile
 *    image and mark blocks dirty; FLUSH (and FUA) make them durable.
 *    tm_ram_crash() simulates power loss / kill -9: each dirty block reaches
 *    the durable image or not (a seeded coin), then the volatile image is
 *    reset to the durable one. tm_ram_fail_after() makes every IO after the
 *    next n fail with -EIO (a dying device, or a process stopped mid-way).
 *    Optionally completes on a helper thread (async) to exercise callbacks
 *    arriving on another thread.
 *  - file: pread/pwrite on a file, fdatasync on FLUSH/FUA.
 */
#ifndef TS_UNIT_TESTMEMBER_H
#define TS_UNIT_TESTMEMBER_H

#include <stdint.h>

#include "dataplane/member/member.h"

struct tm_ram;

/** RAM member of \p size bytes, block size \p bs; *ctl stays valid until the member is destroyed. */
int tm_ram_create(uint64_t size, uint32_t bs, int async, struct ts_member **m, struct tm_ram **ctl);
/** Drop unflushed writes (each kept with probability keep_pct/100, seeded), disarm failures. */
void tm_ram_crash(struct tm_ram *r, unsigned keep_pct, unsigned seed);
/** After \p n more IOs every IO fails with -EIO; n < 0 disarms. */
void tm_ram_fail_after(struct tm_ram *r, long n);
/** IOs submitted so far. */
uint64_t tm_ram_ios(struct tm_ram *r);

/** File member on \p path (created/extended to \p size). */
int tm_file_create(const char *path, uint64_t size, struct ts_member **m);

#endif
