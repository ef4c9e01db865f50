/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `tessera task ls`: the control plane's tasks (TesseraTask objects,
 * control/kube/tasks.h) with their owner and progress, read from the API
 * server directly (the tasks live there, not in a controller).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "control/kube/kube.h"
#include "control/kube/tasks.h"
#include "dataplane/common/ts_common.h"
#include "programs/programs.h"

static void task_usage(FILE *f)
{
	fprintf(f, "usage: tessera task ls --kube-namespace NS [--kubeconfig FILE] [-o table|json]\n"
		   "  the control plane's tasks: kind, target, priority, phase, owner, progress\n"
		   "  (docs/kubernetes-store.md, \"Tasks\"); --kubeconfig, else in-cluster.\n");
}

static int print_json(const struct ts_task *v, size_t n)
{
	json_t *a = json_array();

	for (size_t i = 0; a && i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:s}",
						   "name", v[i].name, "kind", v[i].kind, "target",
						   v[i].target, "priority",
						   ts_task_priority_name(v[i].priority), "phase",
						   ts_task_phase_name(v[i].phase), "owner", v[i].owner,
						   "attempts", (json_int_t)v[i].attempts, "done",
						   (json_int_t)v[i].done, "total", (json_int_t)v[i].total,
						   "message", v[i].message));
	json_t *o = a ? json_pack("{s:o}", "tasks", a) : NULL;
	int rc = o && json_dumpf(o, stdout, JSON_INDENT(2)) == 0 ? 0 : -ENOMEM;

	json_decref(o);
	printf("\n");
	return rc;
}

int ts_task_main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "kube-namespace", required_argument, NULL, 'K' },
		{ "kubeconfig", required_argument, NULL, 'C' },
		{ "output", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *ns = NULL, *kubeconfig = NULL, *out = "table";
	struct ts_kube *c = NULL;
	struct ts_task *v = NULL;
	size_t n = 0;
	int ch, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "o:h", lopts, NULL)) != -1) {
		switch (ch) {
		case 'K': ns = optarg; break;
		case 'C': kubeconfig = optarg; break;
		case 'o': out = optarg; break;
		case 'h': task_usage(stdout); return 0;
		default: task_usage(stderr); return 2;
		}
	}
	if (optind != argc - 1 || (strcmp(argv[optind], "ls") && strcmp(argv[optind], "list")) ||
	    !ns || (strcmp(out, "table") && strcmp(out, "json"))) {
		task_usage(stderr);
		return 2;
	}
	rc = ts_kube_open(kubeconfig, NULL, &c);
	if (rc == 0)
		rc = ts_task_list(c, ns, &v, &n);
	ts_kube_close(c);
	if (rc) {
		fprintf(stderr, "tessera task: the tasks in namespace %s: %s\n", ns, ts_strerror(rc));
		return 1;
	}
	if (!strcmp(out, "json")) {
		rc = print_json(v, n);
	} else {
		printf("%-28s %-8s %-18s %-5s %-8s %-28s %-9s %s\n", "NAME", "KIND", "TARGET", "PRIO",
		       "PHASE", "OWNER", "PROGRESS", "ATTEMPTS");
		for (size_t i = 0; i < n; i++) {
			char prog[32];

			if (v[i].total)
				snprintf(prog, sizeof(prog), "%" PRIu64 "%%",
					 v[i].done * 100 / v[i].total);
			else
				snprintf(prog, sizeof(prog), "-");
			printf("%-28s %-8s %-18s %-5s %-8s %-28s %-9s %" PRIu64 "\n", v[i].name,
			       v[i].kind, v[i].target, ts_task_priority_name(v[i].priority),
			       ts_task_phase_name(v[i].phase), v[i].owner[0] ? v[i].owner : "-", prog,
			       v[i].attempts);
		}
	}
	ts_free(v);
	return rc ? 1 : 0;
}
