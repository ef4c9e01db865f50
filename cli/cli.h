/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The `tessera` command-line client: volumes, nodes, array groups and
 * cluster status through the admin service (csi/admin.h) of a running
 * cluster. docs/cli.md is the user's manual; this header exposes the pure
 * pieces (argument and size parsing, output rendering) for unit tests.
 *
 * THREAD SAFETY: none needed (a CLI); the functions keep no global state.
 */
#ifndef TS_CLI_H
#define TS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/** Exit statuses. */
#define TS_CLI_OK 0
#define TS_CLI_FAIL 1  /**< the cluster said no, or could not be reached */
#define TS_CLI_USAGE 2 /**< bad command line */

enum ts_cli_cmd {
	TS_CLI_NONE = 0,
	TS_CLI_VOLUME_CREATE,
	TS_CLI_VOLUME_LIST,
	TS_CLI_VOLUME_SHOW,
	TS_CLI_VOLUME_DELETE,
	TS_CLI_NODE_LIST,
	TS_CLI_AGRP_LIST,
	TS_CLI_STATUS,
	TS_CLI_VOLUME_TREE,
	TS_CLI_VOLUME_QOS,
};

/** A parsed command line. Strings point into argv. */
#define TS_CLI_MAX_KV 8

struct ts_cli_args {
	enum ts_cli_cmd cmd;
	const char *endpoint; /**< --endpoint, NULL if not given */
	bool json;            /**< -o json */
	bool help;            /**< -h / --help: print usage, exit 0 */
	const char *volume;   /**< NAME (create) or NAME|ID (show, delete) */
	uint64_t size;        /**< --size in bytes (create) */
	const char *ec;       /**< --ec K+M (create), NULL if not given */
	const char *kv[TS_CLI_MAX_KV]; /**< KEY=VALUE arguments (volume qos) */
	int nkv;
};

/**
 * Parse a size: decimal digits, then an optional binary unit K, M, G, T, P
 * (each may be followed by `i` and/or `B`, any case; "1G" = "1Gi" = 2^30),
 * or `B`. Returns 0 and *out (> 0), or -EINVAL (empty, junk, zero) /
 * -ERANGE (beyond INT64_MAX).
 */
int ts_cli_parse_size(const char *s, uint64_t *out);

/** Format \p bytes with a binary unit ("1Gi", "1.5Gi", "512B") into \p buf. */
void ts_cli_fmt_size(uint64_t bytes, char *buf, size_t len);

/**
 * Parse argv (argv[0] is the program). Options may appear anywhere:
 * --endpoint EP, -o/--output json|table, --size SIZE, --ec K+M, -h/--help,
 * each also as --opt=value. Returns 0, or TS_CLI_USAGE with a one-line
 * message in \p err.
 */
int ts_cli_parse_args(int argc, char **argv, struct ts_cli_args *a, char *err, size_t err_len);

/**
 * Print the admin service's response \p resp to command \p a->cmd on \p out,
 * as a table (default) or JSON (a->json). Returns 0, or -EINVAL when \p resp
 * lacks what the command shows.
 */
int ts_cli_render(const struct ts_cli_args *a, json_t *resp, FILE *out);
/**
 * Render a SnapshotTree answer: the whole forest, or with \p volume (a name
 * or "tv-<hex>" id) only the tree holding that volume. 0, -EINVAL
 * (malformed), -ENOENT (no such volume).
 */
int ts_cli_render_tree(json_t *resp, const char *volume, FILE *out);

/** The endpoint to use: \p a->endpoint, $TESSERA_ENDPOINT, or the dev default. */
void ts_cli_endpoint(const struct ts_cli_args *a, char *buf, size_t len);

/** Run the CLI (argv[0] is the program name). Returns the exit status. */
int ts_cli_main(int argc, char **argv);

#endif /* TS_CLI_H */
