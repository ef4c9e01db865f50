/* SPDX-License-Identifier: Apache-2.0 */
/* The threaded range-lock stress under ThreadSanitizer (its own build flags: see CMakeLists.txt). */
#include "unit/dataplane/rangelock/rl_stress.h"

#include <stdio.h>

int main(void)
{
	char err[256];

	if (rl_stress_run(4, 20000, err, sizeof(err))) {
		fprintf(stderr, "rangelock stress: %s\n", err);
		return 1;
	}
	printf("rangelock stress under TSan: ok\n");
	return 0;
}
