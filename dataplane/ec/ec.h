/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Reed-Solomon erasure coding over ISA-L: a k+m code object that encodes k
 * data fragments into m parity fragments, updates parity from a data delta
 * (partial-stripe writes), and rebuilds any <= m missing fragments.
 *
 * The generator is ISA-L's Cauchy matrix (gf_gen_cauchy1_matrix): every k x k
 * submatrix of it is invertible, so any k surviving fragments decode. With
 * k = 1 the parity rows are all ones: 1+m is plain (m+1)-way replication. All
 * Galois-field work is ISA-L's (ec_init_tables, ec_encode_data,
 * ec_encode_data_update, gf_invert_matrix); this module only picks rows.
 *
 * Fragments are numbered 0..k-1 (data) and k..k+m-1 (parity). The code is
 * byte-wise: any byte range [o, o+len) of the fragments may be encoded,
 * updated or decoded on its own, which the array group uses to decode only
 * the blocks a read needs.
 *
 * THREAD SAFETY: a ts_ec is immutable after creation; every function may be
 * called concurrently on the same object.
 */
#ifndef TS_EC_H
#define TS_EC_H

#include <stddef.h>
#include <stdint.h>

#define TS_EC_MAX_K 32
#define TS_EC_MAX_M 8

struct ts_ec;

/**
 * Create a k+m code. 1 <= k <= TS_EC_MAX_K, 1 <= m <= TS_EC_MAX_M.
 * Returns 0 and sets *out, -EINVAL for k or m out of range, -ENOMEM.
 */
int ts_ec_create(unsigned k, unsigned m, struct ts_ec **out);

/** Destroy. NULL is a no-op. */
void ts_ec_destroy(struct ts_ec *ec);

unsigned ts_ec_k(const struct ts_ec *ec);
unsigned ts_ec_m(const struct ts_ec *ec);

/**
 * Encode: parity[0..m-1] (each \p len bytes) from data[0..k-1]. Buffers are
 * caller-owned; no alignment needed (aligned is faster).
 */
void ts_ec_encode(const struct ts_ec *ec, size_t len, uint8_t *const *data, uint8_t *const *parity);

/**
 * Parity update for a partial write of data fragment \p data_index:
 * \p delta is old ^ new for \p len bytes of that fragment; parity[0..m-1]
 * (the same byte range of each parity fragment) are updated in place.
 * A NULL parity[p] is skipped (missing parity member).
 */
void ts_ec_update(const struct ts_ec *ec, size_t len, unsigned data_index, const uint8_t *delta,
		  uint8_t *const *parity);

/**
 * Rebuild missing fragments. \p frags has k+m pointers to \p len-byte
 * buffers; bit i of \p missing set means fragment i is to be rebuilt into
 * frags[i]; every other fragment must hold valid bytes (only the first k of
 * them, in index order, are read; frags[i] may be NULL for a present fragment
 * beyond those k). Returns 0, -EINVAL if more than m are missing or
 * \p missing names a fragment >= k+m, -ENOMEM.
 */
int ts_ec_decode(const struct ts_ec *ec, size_t len, uint8_t *const *frags, uint64_t missing);

#endif /* TS_EC_H */
