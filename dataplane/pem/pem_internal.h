/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to the PEM and its unit tests: on-disk constants and the fault
 * injection hooks for superblock writes. Not for other modules.
 */
#ifndef TS_PEM_INTERNAL_H
#define TS_PEM_INTERNAL_H

#include <stdint.h>

#define PEM_MAGIC "TESSPEM1"
#define PEM_VERSION 1u
#define PEM_HDR_SIZE 512u
#define PEM_ENTRY_SIZE 128u
#define PEM_SECTOR 512u
#define PEM_DATA_ALIGN (64u * 1024u)

/*
 * Fault injection (process-wide, for tests). pem_test_cut_after(n): the
 * superblock writes that follow put only their first n bytes (counted over
 * all of them) on disk, then fail with -EIO as if the process had died;
 * -1 disarms. pem_test_torn(seed): the next superblock write puts a random
 * subset of its 512-byte sectors on disk, then fails; 0 disarms.
 */
void pem_test_cut_after(long n);
void pem_test_torn(uint32_t seed);

#endif /* TS_PEM_INTERNAL_H */
