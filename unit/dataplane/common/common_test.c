/* SPDX-License-Identifier: Apache-2.0 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"

Test(common, strerror_names_errno_and_project_codes)
{
	cr_assert_str_eq(ts_strerror(0), "success");
	cr_assert_str_eq(ts_strerror(-ENOENT), strerror(ENOENT));
	cr_assert_str_eq(ts_strerror(TS_ERR_CORRUPT), "on-disk structure is corrupt");
	cr_assert_str_eq(ts_strerror(TS_ERR_MEMBER_FAILED), "member IO failed");
	cr_assert_str_eq(ts_strerror(TS_ERR_FENCED), "fenced: another engine owns the array group");
	cr_assert_str_eq(ts_strerror(-99999), "unknown error");
}

Test(common, alloc_failure_injection_counts_down)
{
	ts_alloc_fail_after(2);
	void *a = ts_malloc(8), *b = ts_calloc(1, 8), *c = ts_malloc(8);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_null(c);
	cr_assert_null(ts_strdup("x"));
	ts_alloc_fail_after(-1);
	char *d = ts_strdup("tessera");
	cr_assert_str_eq(d, "tessera");
	ts_free(a);
	ts_free(b);
	ts_free(d);
}

Test(common, uuid_roundtrip)
{
	uint8_t u[16], v[16];
	char s[37];

	cr_assert_eq(ts_uuid_generate(u), 0);
	ts_uuid_format(u, s);
	cr_assert_eq(strlen(s), 36);
	cr_assert_eq(ts_uuid_parse(s, v), 0);
	cr_assert_arr_eq(u, v, 16);
	cr_assert_eq(ts_uuid_parse("not-a-uuid", v), -EINVAL);
	cr_assert_eq(ts_uuid_parse("zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz", v), -EINVAL);
}

Test(common, full_pread_pwrite_and_eof)
{
	char path[] = "/tmp/ts_common_XXXXXX";
	int fd = mkstemp(path);
	char buf[4096], back[4096];

	cr_assert(fd >= 0);
	unlink(path);
	memset(buf, 0xa5, sizeof(buf));
	cr_assert_eq(ts_pwrite_full(fd, buf, sizeof(buf), 8192), 0);
	cr_assert_eq(ts_pread_full(fd, back, sizeof(back), 8192), 0);
	cr_assert_arr_eq(buf, back, sizeof(buf));
	cr_assert_eq(ts_pread_full(fd, back, sizeof(back), 12288), -EIO);
	close(fd);
}

Test(common, atomic_file_write_replaces_and_reads_back)
{
	char dir[] = "/tmp/ts_atomic_XXXXXX", path[512], sub[256];
	char *got = NULL;
	size_t len = 0;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
	cr_assert_eq(ts_mkdir_p(sub), 0);
	snprintf(path, sizeof(path), "%s/state.json", sub);
	cr_assert_eq(ts_file_read_all(path, 1024, &got, &len), -ENOENT);
	cr_assert_eq(ts_file_write_atomic(path, "{\"v\":1}", 7), 0);
	cr_assert_eq(ts_file_write_atomic(path, "{\"v\":22}", 8), 0);
	cr_assert_eq(ts_file_read_all(path, 1024, &got, &len), 0);
	cr_assert_eq(len, 8);
	cr_assert_str_eq(got, "{\"v\":22}");
	ts_free(got);
	cr_assert_eq(ts_file_read_all(path, 4, &got, &len), -EFBIG);
	unlink(path);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a/b", dir); rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a", dir); rmdir(sub);
	rmdir(dir);
}

Test(common, parse_size_units_and_errors)
{
	uint64_t v = 7;

	cr_assert_eq(ts_parse_size("0", &v), 0);
	cr_assert_eq(v, 0);
	cr_assert_eq(ts_parse_size("512", &v), 0);
	cr_assert_eq(v, 512);
	cr_assert_eq(ts_parse_size("4k", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(ts_parse_size("256Mi", &v), 0);
	cr_assert_eq(v, 256ull << 20);
	cr_assert_eq(ts_parse_size("1GiB", &v), 0);
	cr_assert_eq(v, 1ull << 30);
	cr_assert_eq(ts_parse_size("3T", &v), 0);
	cr_assert_eq(v, 3ull << 40);
	cr_assert_eq(ts_parse_size("10B", &v), 0);
	cr_assert_eq(v, 10);
	cr_assert_eq(ts_parse_size("", &v), -EINVAL);
	cr_assert_eq(ts_parse_size("-1", &v), -EINVAL);
	cr_assert_eq(ts_parse_size("1.5G", &v), -EINVAL);
	cr_assert_eq(ts_parse_size("12Q", &v), -EINVAL);
	cr_assert_eq(ts_parse_size("9999999P", &v), -ERANGE);
	cr_assert_eq(ts_parse_size("99999999999999999999999", &v), -ERANGE);
}
