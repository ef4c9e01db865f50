/* SPDX-License-Identifier: Apache-2.0 */
/* EC: encode, delta update and decode of every erasure pattern up to m. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/ec/ec.h"

#define LEN 1000 /* odd on purpose: no alignment assumptions */

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
}

/* Every subset of <= m missing fragments of a k+m stripe decodes back. */
static void all_erasures(unsigned k, unsigned m)
{
	unsigned n = k + m;
	struct ts_ec *ec;
	uint8_t *frag[TS_EC_MAX_K + TS_EC_MAX_M], *orig[TS_EC_MAX_K + TS_EC_MAX_M];
	unsigned combos = 0;

	cr_assert_eq(ts_ec_create(k, m, &ec), 0);
	for (unsigned i = 0; i < n; i++) {
		frag[i] = malloc(LEN);
		orig[i] = malloc(LEN);
		if (i < k)
			fill(orig[i], LEN, i + 1);
	}
	ts_ec_encode(ec, LEN, orig, orig + k);
	for (uint64_t mask = 1; mask < (1ull << n); mask++) {
		if ((unsigned)__builtin_popcountll(mask) > m)
			continue;
		for (unsigned i = 0; i < n; i++) {
			if (mask & (1ull << i))
				memset(frag[i], 0xee, LEN);
			else
				memcpy(frag[i], orig[i], LEN);
		}
		cr_assert_eq(ts_ec_decode(ec, LEN, frag, mask), 0);
		for (unsigned i = 0; i < n; i++)
			cr_assert_arr_eq(frag[i], orig[i], LEN, "k=%u m=%u mask=%llx frag %u", k, m,
					 (unsigned long long)mask, i);
		combos++;
	}
	cr_assert_gt(combos, n);
	/* m+1 missing is refused */
	cr_assert_eq(ts_ec_decode(ec, LEN, frag, (1ull << (m + 1)) - 1), -EINVAL);
	for (unsigned i = 0; i < n; i++) {
		free(frag[i]);
		free(orig[i]);
	}
	ts_ec_destroy(ec);
}

Test(ec, every_erasure_4_2) { all_erasures(4, 2); }
Test(ec, every_erasure_8_3) { all_erasures(8, 3); }
Test(ec, every_erasure_1_2) { all_erasures(1, 2); }

Test(ec, one_data_fragment_is_replication)
{
	struct ts_ec *ec;
	uint8_t *d = malloc(LEN), *p[2] = { malloc(LEN), malloc(LEN) };

	cr_assert_eq(ts_ec_create(1, 2, &ec), 0);
	fill(d, LEN, 7);
	ts_ec_encode(ec, LEN, &d, p);
	cr_assert_arr_eq(p[0], d, LEN);
	cr_assert_arr_eq(p[1], d, LEN);
	ts_ec_destroy(ec);
	free(d);
	free(p[0]);
	free(p[1]);
}

Test(ec, delta_update_matches_reencode)
{
	const unsigned k = 6, m = 3;
	struct ts_ec *ec;
	uint8_t *d[6], *p[3], *q[3], delta[LEN], newd[LEN];

	cr_assert_eq(ts_ec_create(k, m, &ec), 0);
	for (unsigned i = 0; i < k; i++) {
		d[i] = malloc(LEN);
		fill(d[i], LEN, 77 + i);
	}
	for (unsigned i = 0; i < m; i++) {
		p[i] = malloc(LEN);
		q[i] = malloc(LEN);
	}
	ts_ec_encode(ec, LEN, d, p);
	for (unsigned round = 0; round < 20; round++) {
		unsigned di = round % k, off = (round * 37) % 500, len = 100 + round * 7;
		uint8_t *skip[3] = { p[0], round % 2 ? NULL : p[1], p[2] };

		fill(newd, len, round * 13);
		for (unsigned b = 0; b < len; b++)
			delta[b] = d[di][off + b] ^ newd[b];
		memcpy(d[di] + off, newd, len);
		for (unsigned i = 0; i < m; i++)
			skip[i] = skip[i] ? skip[i] + off : NULL;
		ts_ec_update(ec, len, di, delta, skip);
		if (round % 2) { /* parity 1 was skipped: bring it back by re-encoding */
			ts_ec_encode(ec, LEN, d, q);
			memcpy(p[1], q[1], LEN);
		}
		ts_ec_encode(ec, LEN, d, q);
		for (unsigned i = 0; i < m; i++)
			cr_assert_arr_eq(p[i], q[i], LEN, "round %u parity %u", round, i);
	}
	for (unsigned i = 0; i < k; i++)
		free(d[i]);
	for (unsigned i = 0; i < m; i++) {
		free(p[i]);
		free(q[i]);
	}
	ts_ec_destroy(ec);
}

Test(ec, bad_parameters)
{
	struct ts_ec *ec = NULL;

	cr_assert_eq(ts_ec_create(0, 2, &ec), -EINVAL);
	cr_assert_eq(ts_ec_create(4, 0, &ec), -EINVAL);
	cr_assert_eq(ts_ec_create(TS_EC_MAX_K + 1, 2, &ec), -EINVAL);
	cr_assert_eq(ts_ec_create(4, TS_EC_MAX_M + 1, &ec), -EINVAL);
	ts_alloc_fail_after(1);
	cr_assert_eq(ts_ec_create(4, 2, &ec), -ENOMEM);
	ts_alloc_fail_after(-1);
	cr_assert_eq(ts_ec_create(4, 2, &ec), 0);
	cr_assert_eq(ts_ec_decode(ec, 16, NULL, 1ull << 6), -EINVAL);
	ts_ec_destroy(ec);
	ts_ec_destroy(NULL);
}
