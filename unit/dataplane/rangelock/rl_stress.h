/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Threaded range-lock stress shared by the ASan/UBSan suite and the TSan
 * program: threads lock random overlapping ranges (blocking, trylock and
 * asynchronous with cancellation) and check, in a per-unit occupancy array,
 * that no two holders conflict.
 */
#ifndef TS_UNIT_RL_STRESS_H
#define TS_UNIT_RL_STRESS_H

#include <stddef.h>

/**
 * Run \p threads threads for \p iters lock/unlock rounds each. Returns 0, or
 * -1 with a description of the first violation in \p err.
 */
int rl_stress_run(int threads, int iters, char *err, size_t errlen);

#endif
