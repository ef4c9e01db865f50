/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Erasure coding: a thin layer over ISA-L.
 *
 * Workload: the array group encodes whole stripes on full-stripe writes,
 * updates parity from old^new deltas on partial writes, and decodes byte
 * ranges of missing fragments on degraded reads and rebuilds. The hot paths
 * (encode, update) use tables expanded once at creation; decode builds its
 * tables per call from the surviving rows (a k x k inversion is a few
 * microseconds, far below the IO it serves).
 *
 * Invariants: enc is the (k+m) x k Cauchy generator with the identity on top;
 * ptbls are ec_init_tables() of its m parity rows. Nothing mutates after
 * ts_ec_create(), so the object is shared freely between threads.
 *
 * Decode strategy: take the first k surviving fragments, invert their k x k
 * submatrix, recover missing data fragments with rows of the inverse, then
 * re-encode any missing parity fragments from the (now complete) data with
 * their generator rows. No Galois-field arithmetic is written here.
 */
#include "dataplane/ec/ec.h"

#include <errno.h>
#include <isa-l/erasure_code.h>
#include <string.h>

#include "dataplane/common/ts_common.h"

struct ts_ec {
	unsigned k, m;
	uint8_t *enc;   /* (k+m) * k */
	uint8_t *ptbls; /* 32 * k * m */
};

int ts_ec_create(unsigned k, unsigned m, struct ts_ec **out)
{
	struct ts_ec *ec;

	if (!out || k < 1 || k > TS_EC_MAX_K || m < 1 || m > TS_EC_MAX_M)
		return -EINVAL;
	ec = ts_calloc(1, sizeof(*ec));
	if (!ec)
		return -ENOMEM;
	ec->k = k;
	ec->m = m;
	ec->enc = ts_malloc((size_t)(k + m) * k);
	ec->ptbls = ts_malloc((size_t)32 * k * m);
	if (!ec->enc || !ec->ptbls)
		goto fail;
	gf_gen_cauchy1_matrix(ec->enc, (int)(k + m), (int)k);
	if (k == 1) /* 1+m is (m+1)-way replication: every parity is a copy */
		memset(ec->enc + 1, 1, m);
	ec_init_tables((int)k, (int)m, ec->enc + (size_t)k * k, ec->ptbls);
	*out = ec;
	return 0;
fail:
	ts_ec_destroy(ec);
	return -ENOMEM;
}

void ts_ec_destroy(struct ts_ec *ec)
{
	if (!ec)
		return;
	ts_free(ec->enc);
	ts_free(ec->ptbls);
	ts_free(ec);
}

unsigned ts_ec_k(const struct ts_ec *ec)
{
	return ec->k;
}

unsigned ts_ec_m(const struct ts_ec *ec)
{
	return ec->m;
}

void ts_ec_encode(const struct ts_ec *ec, size_t len, uint8_t *const *data, uint8_t *const *parity)
{
	ec_encode_data((int)len, (int)ec->k, (int)ec->m, ec->ptbls, (unsigned char **)data,
		       (unsigned char **)parity);
}

void ts_ec_update(const struct ts_ec *ec, size_t len, unsigned data_index, const uint8_t *delta,
		  uint8_t *const *parity)
{
	unsigned p, all = 1;

	for (p = 0; p < ec->m; p++)
		all &= parity[p] != NULL;
	if (all) {
		ec_encode_data_update((int)len, (int)ec->k, (int)ec->m, (int)data_index, ec->ptbls,
				      (unsigned char *)delta, (unsigned char **)parity);
		return;
	}
	/* Some parity members are missing: update the present rows one by one
	 * with that row's slice of the tables (32*k bytes per row). */
	for (p = 0; p < ec->m; p++) {
		unsigned char *one[1];

		if (!parity[p])
			continue;
		one[0] = parity[p];
		ec_encode_data_update((int)len, (int)ec->k, 1, (int)data_index,
				      ec->ptbls + (size_t)32 * ec->k * p, (unsigned char *)delta, one);
	}
}

int ts_ec_decode(const struct ts_ec *ec, size_t len, uint8_t *const *frags, uint64_t missing)
{
	unsigned k = ec->k, n = ec->k + ec->m, i, j, r, nmiss = 0, ndata_miss = 0;
	uint8_t sub[TS_EC_MAX_K * TS_EC_MAX_K], inv[TS_EC_MAX_K * TS_EC_MAX_K];
	uint8_t rows[TS_EC_MAX_M * TS_EC_MAX_K];
	unsigned char *src[TS_EC_MAX_K], *dst[TS_EC_MAX_M];
	uint8_t *tbls = NULL;
	int rc = 0;

	if (n < 64 && (missing >> n))
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (missing & (1ull << i))
			nmiss++;
	if (nmiss > ec->m)
		return -EINVAL;
	if (nmiss == 0)
		return 0;
	tbls = ts_malloc((size_t)32 * k * ec->m);
	if (!tbls)
		return -ENOMEM;
	/* Survivors: the first k present fragments. */
	for (i = 0, r = 0; i < n && r < k; i++) {
		if (missing & (1ull << i))
			continue;
		memcpy(sub + (size_t)r * k, ec->enc + (size_t)i * k, k);
		src[r++] = frags[i];
	}
	for (i = 0; i < k; i++)
		if (missing & (1ull << i))
			ndata_miss++;
	if (ndata_miss) {
		if (gf_invert_matrix(sub, inv, (int)k) < 0) {
			rc = TS_ERR_CORRUPT; /* cannot happen with a Cauchy generator */
			goto out;
		}
		for (i = 0, j = 0; i < k; i++) {
			if (!(missing & (1ull << i)))
				continue;
			memcpy(rows + (size_t)j * k, inv + (size_t)i * k, k);
			dst[j++] = frags[i];
		}
		ec_init_tables((int)k, (int)j, rows, tbls);
		ec_encode_data((int)len, (int)k, (int)j, tbls, src, dst);
	}
	if (nmiss > ndata_miss) {
		/* Data is complete now: re-encode the missing parity rows. */
		for (i = k, j = 0; i < n; i++) {
			if (!(missing & (1ull << i)))
				continue;
			memcpy(rows + (size_t)j * k, ec->enc + (size_t)i * k, k);
			dst[j++] = frags[i];
		}
		for (i = 0; i < k; i++)
			src[i] = frags[i];
		ec_init_tables((int)k, (int)j, rows, tbls);
		ec_encode_data((int)len, (int)k, (int)j, tbls, src, dst);
	}
out:
	ts_free(tbls);
	return rc;
}
