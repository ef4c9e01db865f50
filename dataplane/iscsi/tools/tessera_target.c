/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tessera-target: serve file-backed or RAM LUNs over iSCSI with Tessera's
 * target engine. The test and bench vehicle until the data plane registers
 * volumes itself.
 *
 *   tessera-target --portal 127.0.0.1:3260 \
 *       --lun iqn.2026-01.io.tessera:test:/var/tmp/disk.img:1G \
 *       --lun iqn.2026-01.io.tessera:test:ram:64M \
 *       [--chap user:secret] [--mutual user:secret] [--threads N]
 *       [--block-size 512|4096] [--pr-dir DIR] [--port-file FILE]
 *
 * Each --lun names target:path:size (path "ram" for memory); repeated
 * targets get LUN 0, 1, ... CHAP options apply to every target. Runs until
 * SIGINT/SIGTERM.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataplane/common/ts_common.h"
#include "dataplane/iscsi/iscsi.h"
#include "dataplane/iscsi/lun_file.h"

static volatile sig_atomic_t g_stop;

static void on_signal(int s)
{
	(void)s;
	g_stop = 1;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end || !v)
		return -EINVAL;
	*out = v;
	return 0;
}

static int split_pair(char *s, char **a, char **b)
{
	char *c = strchr(s, ':');
	if (!c)
		return -EINVAL;
	*c = 0;
	*a = s;
	*b = c + 1;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "portal", required_argument, 0, 'p' }, { "lun", required_argument, 0, 'l' },
		{ "chap", required_argument, 0, 'c' },   { "mutual", required_argument, 0, 'm' },
		{ "threads", required_argument, 0, 't' }, { "block-size", required_argument, 0, 'b' },
		{ "pr-dir", required_argument, 0, 'r' }, { "port-file", required_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },         { 0, 0, 0, 0 } };
	struct ts_iscsi_server_opts so = { .addr = "127.0.0.1", .port = 3260, .threads = 1 };
	char *luns[64];
	int nluns = 0, opt, rc = 1;
	char *chap_u = NULL, *chap_s = NULL, *mut_u = NULL, *mut_s = NULL;
	const char *pr_dir = NULL, *port_file = NULL;
	uint32_t bs = 512;
	struct ts_iscsi_server *srv = NULL;

	while ((opt = getopt_long(argc, argv, "p:l:c:m:t:b:r:f:h", lo, NULL)) != -1) {
		switch (opt) {
		case 'p': {
			char *colon = strrchr(optarg, ':');
			if (!colon)
				goto usage;
			*colon = 0;
			so.addr = optarg;
			so.port = (uint16_t)atoi(colon + 1);
			break;
		}
		case 'l':
			if (nluns == 64)
				goto usage;
			luns[nluns++] = optarg;
			break;
		case 'c':
			if (split_pair(optarg, &chap_u, &chap_s))
				goto usage;
			break;
		case 'm':
			if (split_pair(optarg, &mut_u, &mut_s))
				goto usage;
			break;
		case 't': so.threads = (unsigned)atoi(optarg); break;
		case 'b': bs = (uint32_t)atoi(optarg); break;
		case 'r': pr_dir = optarg; break;
		case 'f': port_file = optarg; break;
		default: goto usage;
		}
	}
	if (!nluns)
		goto usage;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	rc = ts_iscsi_server_create(&so, &srv);
	if (rc) {
		fprintf(stderr, "tessera-target: cannot listen on %s:%u: %s\n", so.addr, so.port, ts_strerror(rc));
		return 1;
	}
	for (int i = 0; i < nluns; i++) {
		char *spec = luns[i];
		char *sz = strrchr(spec, ':');
		if (!sz)
			goto bad_lun;
		*sz++ = 0;
		char *path = strrchr(spec, ':');
		if (!path)
			goto bad_lun;
		*path++ = 0;
		uint64_t size;
		if (parse_size(sz, &size) || size % bs)
			goto bad_lun;
		struct ts_iscsi_target_opts to = { .iqn = spec, .chap_user = chap_u, .chap_secret = chap_s,
						   .mutual_user = mut_u, .mutual_secret = mut_s };
		int r = ts_iscsi_target_add(srv, &to);
		if (r && r != -EEXIST)
			goto bad_lun;
		struct ts_iscsi_file_lun *fl;
		r = ts_iscsi_file_lun_create(strcmp(path, "ram") ? path : NULL, size, 4, &fl);
		if (r) {
			fprintf(stderr, "tessera-target: %s: %s\n", path, ts_strerror(r));
			goto out;
		}
		struct ts_iscsi_lun_info info = { .size = size, .block_size = bs, .thin = true };
		char prp[4096];
		/* the identity is derived from target and lun so it is stable across restarts */
		for (size_t k = 0; spec[k]; k++)
			info.uuid[k % 16] = (uint8_t)(info.uuid[k % 16] * 31 + (uint8_t)spec[k]);
		uint16_t lun_id = 0;
		for (int j = 0; j < i; j++)
			if (!strcmp(luns[j], spec))
				lun_id++;
		info.uuid[15] ^= (uint8_t)lun_id;
		if (pr_dir) {
			snprintf(prp, sizeof(prp), "%s/%s-%u.pr", pr_dir, spec, lun_id);
			info.pr_state_path = prp;
		}
		r = ts_iscsi_lun_add(srv, spec, lun_id, ts_iscsi_file_lun_ops(), fl, &info);
		if (r) {
			ts_iscsi_file_lun_destroy(fl);
			fprintf(stderr, "tessera-target: lun %s/%u: %s\n", spec, lun_id, ts_strerror(r));
			goto out;
		}
		continue;
bad_lun:
		fprintf(stderr, "tessera-target: bad --lun (want iqn:path:size or iqn:ram:size)\n");
		goto out;
	}
	if (port_file) {
		FILE *f = fopen(port_file, "w");
		if (f) {
			fprintf(f, "%u\n", ts_iscsi_server_port(srv));
			fclose(f);
		}
	}
	fprintf(stderr, "tessera-target: listening on %s:%u\n", so.addr, ts_iscsi_server_port(srv));
	while (!g_stop)
		pause();
	rc = 0;
out:
	ts_iscsi_server_destroy(srv);
	return rc;
usage:
	fprintf(stderr, "usage: tessera-target --portal ADDR:PORT --lun IQN:PATH:SIZE|IQN:ram:SIZE [--lun ...]\n"
			"       [--chap USER:SECRET] [--mutual USER:SECRET] [--threads N]\n"
			"       [--block-size 512|4096] [--pr-dir DIR] [--port-file FILE]\n");
	return 2;
}
