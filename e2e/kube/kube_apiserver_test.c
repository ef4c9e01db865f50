/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The Kubernetes client and the CR membership store against a real
 * kube-apiserver + etcd (started by e2e/kube/run.sh, which passes the
 * kubeconfig and ctl.sh in the environment). Each test works in a namespace
 * of its own.
 *
 * What is shown:
 *  - every registry op round-trips through the CRs with the directory
 *    store's behaviour: the same cases (unit/support/registry) as
 *    unit/control/registry, plus what only this store has (Leases, CRD
 *    validation, names);
 *  - two writers of one group: each round both raise the epoch and write;
 *    exactly one write wins, the other gets -ESTALE and wins after raising
 *    again; 2 x 50 concurrent raise_epoch calls give 100 distinct epochs,
 *    increasing per caller;
 *  - a watch whose TCP connection is cut three times (a proxy in this
 *    process) delivers every change exactly once, in order;
 *  - the API server stopped: reads and writes fail with -EAGAIN; started
 *    again: they work; a watch from a resourceVersion compacted away (etcd
 *    compacted, the new server's watch cache newer) relists and resyncs;
 *  - Leases with two holders: exclusion, renewal, expiry, takeover, and the
 *    old holder's renew refused; two contenders for an expired Lease, one
 *    winner;
 *  - a kubeconfig with embedded (-data) credentials;
 *  - the CSI metadata store over TesseraVolume objects passes the cases of
 *    unit/support/csistore, refuses a second writer's stale writes
 *    (-ESTALE), adopts a write equal to what is stored, and fails its open
 *    on an object that is not what its name says;
 *  - leader election: the passive replica waits while the active one renews
 *    past the Lease's duration, takes over at its next try once the Lease is
 *    released, and an active replica whose Lease someone else wrote loses
 *    the role (lost called once, the gate closed); one cut off from the API
 *    server closes its gate at its renew deadline, before the passive one
 *    can take the expired Lease;
 *  - node ids by host name: one per host, kept across claims, eight hosts
 *    claiming at once get eight distinct ids, a broken value is refused;
 *  - tasks: one of eight simultaneous claimers wins, a live owner keeps its
 *    task, a stale one loses it to the next claimer with its progress kept,
 *    the old owner's writes are refused, Done is final.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "control/kube/kube.h"
#include "control/kube/leader.h"
#include "control/kube/node_ids.h"
#include "control/kube/tasks.h"
#include "control/kube/registry_kube.h"
#include "control/registry/registry.h"
#include "csi/store/store_kube.h"
#include "dataplane/common/ts_common.h"
#include "unit/support/csistore/store_cases.h"
#include "unit/support/registry/registry_cases.h"

static const char *kcfg(void)
{
	const char *k = getenv("TS_KUBE_KUBECONFIG");

	cr_assert_not_null(k, "run through e2e/kube/run.sh");
	return k;
}

static void ctl(const char *what)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s %s", getenv("TS_KUBE_CTL"), what);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static struct ts_kube *client(void)
{
	struct ts_kube *c = NULL;

	cr_assert_eq(ts_kube_open(kcfg(), NULL, &c), 0);
	return c;
}

/* A fresh namespace t-<random>. */
static void new_ns(struct ts_kube *c, char ns[32])
{
	uint8_t u[16];
	json_t *o;

	ts_uuid_generate(u);
	snprintf(ns, 32, "t-%02x%02x%02x%02x", u[0], u[1], u[2], u[3]);
	o = json_pack("{s:s,s:s,s:{s:s}}", "apiVersion", "v1", "kind", "Namespace", "metadata",
		      "name", ns);
	cr_assert_eq(ts_kube_create(c, "/api/v1/namespaces", o, NULL), 0);
	json_decref(o);
}

static struct ts_registry *registry(const char *ns)
{
	struct ts_registry *r = NULL;

	cr_assert_eq(ts_registry_kube_open(kcfg(), ns, &r), 0);
	return r;
}

TestSuite(kube_apiserver, .timeout = 300);

/* ---- the registry ops ---- */

Test(kube_apiserver, node_records_and_heartbeat_leases)
{
	struct ts_kube *c = client();
	struct ts_kube_lease l;
	char ns[32];

	new_ns(c, ns);
	struct ts_registry *a = registry(ns), *b = registry(ns);

	reg_case_node_records(a, b, false);
	/* the heartbeat is the Lease tessera-node-<id>, renewed by every put */
	cr_assert_eq(ts_kube_lease_get(c, ns, "tessera-node-3", &l), 0);
	cr_assert_str_eq(l.holder, "tessera-node-3");
	cr_assert_eq(l.duration_s, 10);
	uint64_t first = l.renew_us;
	struct ts_reg_node *out = ts_calloc(TS_REG_MAX_NODES, sizeof(*out));
	unsigned cnt = 0;

	cr_assert_eq(ts_registry_list_nodes(a, out, TS_REG_MAX_NODES, &cnt), 0);
	struct ts_reg_node n = out[0].node_id == 3 ? out[0] : out[1];

	usleep(20000);
	cr_assert_eq(ts_registry_put_node(a, &n), 0, "unchanged record: only the Lease renewed");
	cr_assert_eq(ts_kube_lease_get(c, ns, "tessera-node-3", &l), 0);
	cr_assert_gt(l.renew_us, first);
	cr_assert_eq(ts_registry_list_nodes(b, out, TS_REG_MAX_NODES, &cnt), 0);
	cr_assert_eq(cnt, 2u);
	ts_free(out);
	ts_registry_close(a);
	ts_registry_close(b);
	ts_kube_close(c);
}

Test(kube_apiserver, requests_mailbox)
{
	struct ts_kube *c = client();
	struct ts_reg_request r = { .op = TS_REG_CREATE_VDISK, .size = 1 };
	char ns[32];

	new_ns(c, ns);
	struct ts_registry *a = registry(ns), *b = registry(ns);

	reg_case_requests_mailbox(a, b);
	ts_registry_new_request_id(r.id);
	ts_uuid_generate(r.uuid);
	cr_assert_eq(ts_registry_post_request(a, 5, &r), 0);
	cr_assert_eq(ts_registry_post_request(a, 5, &r), -EEXIST, "ids are unique");
	cr_assert_eq(ts_registry_complete_request(b, 5, "no-such-request", 0), -ENOENT);
	strcpy(r.id, "Not_A_Name");
	cr_assert_eq(ts_registry_post_request(a, 5, &r), -EINVAL);
	ts_registry_close(a);
	ts_registry_close(b);
	ts_kube_close(c);
}

Test(kube_apiserver, group_records_epochs_and_validation)
{
	struct ts_kube *c = client();
	char ns[32], path[256], u[37];
	struct ts_reg_group g = reg_case_make_group(), got;
	uint64_t e = 0;
	json_t *obj = NULL;

	new_ns(c, ns);
	struct ts_registry *a = registry(ns), *b = registry(ns);

	reg_case_list_groups(a, b);
	reg_case_group_records(a, b);
	reg_case_raise_epoch_and_stale(a, b);
	cr_assert_eq(ts_registry_put_group(a, &g), 0);
	cr_assert_eq(ts_registry_raise_epoch(a, g.uuid, 2, &e), 0);
	cr_assert_eq(ts_registry_raise_epoch(b, g.uuid, 3, &e), 0);
	cr_assert_eq(e, 2);

	/* the CRD refuses what the schema forbids, and an epoch going down from any writer */
	ts_uuid_format(g.uuid, u);
	snprintf(path, sizeof(path), "/apis/tessera.io/v1alpha1/namespaces/%s/tesseragroups/%s", ns,
		 u);
	cr_assert_eq(ts_kube_get(c, path, &obj), 0);
	json_object_set_new(json_object_get(obj, "spec"), "epoch", json_integer(-5));
	cr_assert_eq(ts_kube_update(c, path, obj, NULL), -EINVAL);
	json_object_set_new(json_object_get(obj, "spec"), "epoch", json_integer(1));
	cr_assert_eq(ts_kube_update(c, path, obj, NULL), -EINVAL, "CEL: epoch never decreases");
	json_object_set_new(json_object_get(obj, "spec"), "epoch", json_integer(2));
	json_object_set_new(json_object_get(obj, "spec"), "k", json_string("4"));
	cr_assert_eq(ts_kube_update(c, path, obj, NULL), -EINVAL);
	json_decref(obj);

	/* a record without owner fields (written before owners): no owner, epoch 0 */
	struct ts_reg_group old = reg_case_make_group();
	char coll[200];

	ts_uuid_format(old.uuid, u);
	snprintf(coll, sizeof(coll), "/apis/tessera.io/v1alpha1/namespaces/%s/tesseragroups", ns);
	obj = json_pack("{s:s,s:s,s:{s:s},s:{s:i,s:i,s:i,s:[]}}", "apiVersion",
			"tessera.io/v1alpha1", "kind", "TesseraGroup", "metadata", "name", u, "spec",
			"k", 1, "m", 0, "memberSize", 4096, "slots");
	char vd[37];

	ts_uuid_format(old.slots[0].vdisk, vd);
	json_array_append_new(json_object_get(json_object_get(obj, "spec"), "slots"),
			      json_pack("{s:i,s:s}", "nodeId", 7, "vdisk", vd));
	cr_assert_eq(ts_kube_create(c, coll, obj, NULL), 0);
	json_decref(obj);
	cr_assert_eq(ts_registry_get_group(a, old.uuid, &got), 0);
	cr_assert_eq(got.owner_node, 0);
	cr_assert_eq(got.epoch, 0);
	cr_assert_eq(got.k, 1);
	cr_assert_eq(got.slots[0].node_id, 7);
	cr_assert_eq(memcmp(got.slots[0].vdisk, old.slots[0].vdisk, 16), 0);
	ts_registry_close(a);
	ts_registry_close(b);
	ts_kube_close(c);
}

/* ---- concurrency ---- */

Test(kube_apiserver, concurrent_epoch_raises_are_distinct)
{
	struct ts_kube *c = client();
	char ns[32];

	new_ns(c, ns);
	struct ts_registry *a = registry(ns), *b = registry(ns);

	reg_case_concurrent_raises(a, b, 50);
	ts_registry_close(a);
	ts_registry_close(b);
	ts_kube_close(c);
}

#define ROUNDS 10

struct writer {
	struct ts_registry *r;
	struct ts_reg_group g;
	uint32_t owner;
	pthread_barrier_t *bar;
	int put_rc[ROUNDS], retry_rc[ROUNDS];
	uint64_t epoch[ROUNDS];
	int rc;
};

static void *write_rounds(void *arg)
{
	struct writer *w = arg;
	struct ts_reg_group cur;

	for (unsigned i = 0; i < ROUNDS; i++) {
		w->rc = w->rc ? w->rc : ts_registry_raise_epoch(w->r, w->g.uuid, w->owner, &w->epoch[i]);
		pthread_barrier_wait(w->bar);
		/* both have raised: write the group as this owner sees it */
		if (!w->rc)
			w->rc = ts_registry_get_group(w->r, w->g.uuid, &cur);
		cur.epoch = w->epoch[i];
		cur.owner_node = w->owner;
		cur.slots[0].node_id = w->owner * 100 + i;
		w->put_rc[i] = w->rc ? w->rc : ts_registry_put_group(w->r, &cur);
		pthread_barrier_wait(w->bar);
		/* the loser raises again and writes: now it is the owner */
		w->retry_rc[i] = 0;
		if (w->put_rc[i] == -ESTALE) {
			uint64_t e;

			w->retry_rc[i] = ts_registry_raise_epoch(w->r, w->g.uuid, w->owner, &e);
			cur.epoch = e;
			if (!w->retry_rc[i])
				w->retry_rc[i] = ts_registry_put_group(w->r, &cur);
		}
		pthread_barrier_wait(w->bar);
	}
	return NULL;
}

Test(kube_apiserver, two_writers_one_group)
{
	struct ts_kube *c = client();
	char ns[32];
	struct ts_reg_group g = reg_case_make_group(), got;
	pthread_barrier_t bar;
	pthread_t t[2];

	new_ns(c, ns);
	pthread_barrier_init(&bar, NULL, 2);
	struct writer w[2] = { { .r = registry(ns), .g = g, .owner = 1, .bar = &bar },
			       { .r = registry(ns), .g = g, .owner = 2, .bar = &bar } };

	cr_assert_eq(ts_registry_put_group(w[0].r, &g), 0);
	for (unsigned i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, write_rounds, &w[i]), 0);
	for (unsigned i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < ROUNDS; i++) {
		int win = w[0].put_rc[i] == 0 ? 0 : 1;

		cr_assert_eq(w[0].rc, 0);
		cr_assert_eq(w[1].rc, 0);
		cr_assert_eq(w[win].put_rc[i], 0, "round %u", i);
		cr_assert_eq(w[!win].put_rc[i], -ESTALE, "round %u: exactly one wins", i);
		cr_assert_gt(w[win].epoch[i], w[!win].epoch[i], "the later raise wins");
		cr_assert_eq(w[!win].retry_rc[i], 0, "round %u: the loser's retry", i);
	}
	cr_assert_eq(ts_registry_get_group(w[0].r, g.uuid, &got), 0);
	cr_assert_eq(got.epoch, 3 * ROUNDS);
	pthread_barrier_destroy(&bar);
	ts_registry_close(w[0].r);
	ts_registry_close(w[1].r);
	ts_kube_close(c);
}

/* ---- a TCP proxy whose connections the test can cut ---- */

struct proxy {
	int lfd;
	uint16_t port, target;
	pthread_t th;
	pthread_mutex_t mu;
	int fds[128];
	unsigned nfds;
	unsigned cuts;
};

struct pipe_arg {
	struct proxy *p;
	int a, b;
};

static void proxy_forget(struct proxy *p, int fd)
{
	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < p->nfds; i++)
		if (p->fds[i] == fd)
			p->fds[i] = p->fds[--p->nfds];
	pthread_mutex_unlock(&p->mu);
}

static void *proxy_pipe(void *arg)
{
	struct pipe_arg *pa = arg;
	char buf[16384];

	for (;;) {
		struct pollfd pf[2] = { { pa->a, POLLIN, 0 }, { pa->b, POLLIN, 0 } };

		if (poll(pf, 2, 1000) < 0)
			break;
		bool done = false;

		for (unsigned i = 0; i < 2 && !done; i++) {
			if (!pf[i].revents)
				continue;
			ssize_t n = read(i ? pa->b : pa->a, buf, sizeof(buf));

			if (n <= 0 || write(i ? pa->a : pa->b, buf, (size_t)n) != n)
				done = true;
		}
		if (done)
			break;
	}
	proxy_forget(pa->p, pa->a);
	proxy_forget(pa->p, pa->b);
	close(pa->a);
	close(pa->b);
	free(pa);
	return NULL;
}

static void *proxy_accept(void *arg)
{
	struct proxy *p = arg;

	for (;;) {
		int a = accept(p->lfd, NULL, NULL), b;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(p->target),
					  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		pthread_t t;

		if (a < 0)
			return NULL;
		b = socket(AF_INET, SOCK_STREAM, 0);
		if (b < 0 || connect(b, (struct sockaddr *)&sa, sizeof(sa))) {
			close(a);
			if (b >= 0)
				close(b);
			continue;
		}
		struct pipe_arg *pa = malloc(sizeof(*pa));

		*pa = (struct pipe_arg){ p, a, b };
		pthread_mutex_lock(&p->mu);
		if (p->nfds + 2 <= 128) {
			p->fds[p->nfds++] = a;
			p->fds[p->nfds++] = b;
		}
		pthread_mutex_unlock(&p->mu);
		pthread_create(&t, NULL, proxy_pipe, pa);
		pthread_detach(t);
	}
}

static void proxy_start(struct proxy *p, uint16_t target)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->mu, NULL);
	p->target = target;
	p->lfd = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_geq(p->lfd, 0);
	cr_assert_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(p->lfd, 16), 0);
	cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
	p->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&p->th, NULL, proxy_accept, p), 0);
}

/* Cut every connection through the proxy (both directions, at once). */
static void proxy_cut(struct proxy *p)
{
	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < p->nfds; i++)
		shutdown(p->fds[i], SHUT_RDWR);
	p->cuts++;
	pthread_mutex_unlock(&p->mu);
}

/* The kubeconfig with the server's port replaced by \p port, written to \p out. */
static void kubeconfig_via(uint16_t port, char *out, size_t outlen, uint16_t *server_port)
{
	char *text = NULL, *p, *q;
	size_t len = 0;
	FILE *f;

	cr_assert_eq(ts_file_read_all(kcfg(), 1 << 20, &text, &len), 0);
	p = strstr(text, "https://127.0.0.1:");
	cr_assert_not_null(p);
	p += strlen("https://127.0.0.1:");
	*server_port = (uint16_t)strtoul(p, &q, 10);
	snprintf(out, outlen, "%s/via-%u.kubeconfig", getenv("TS_KUBE_WORK"), port);
	f = fopen(out, "w");
	cr_assert_not_null(f);
	fprintf(f, "%.*s%u%s", (int)(p - text), text, port, q);
	fclose(f);
	ts_free(text);
}

/* ---- watches ---- */

#define NOBJ 20

struct seen {
	pthread_mutex_t mu;
	unsigned resyncs, resync_items, n;
	struct {
		enum ts_kube_event_type type;
		char name[64];
		unsigned long long rv;
		char data[16];
	} ev[4 * NOBJ];
	unsigned want;
};

static int collect(void *arg, const struct ts_kube_event *e)
{
	struct seen *s = arg;
	int stop = 0;

	pthread_mutex_lock(&s->mu);
	if (e->type == TS_KUBE_RESYNC) {
		s->resyncs++;
		s->resync_items = (unsigned)json_array_size(e->object);
	} else if (e->type != TS_KUBE_BOOKMARK && s->n < 4 * NOBJ) {
		json_t *md = json_object_get(e->object, "metadata");
		json_t *d = json_object_get(json_object_get(e->object, "data"), "v");

		s->ev[s->n].type = e->type;
		snprintf(s->ev[s->n].name, 64, "%s", json_string_value(json_object_get(md, "name")));
		s->ev[s->n].rv = strtoull(e->resource_version, NULL, 10);
		snprintf(s->ev[s->n].data, 16, "%s", json_is_string(d) ? json_string_value(d) : "");
		s->n++;
	}
	stop = s->want && s->n >= s->want;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

struct watcher {
	struct ts_kube *c;
	struct ts_kube_watch_opts o;
	struct ts_kube_watch_stats st;
	struct seen *s;
	int rc;
};

static void *run_watch(void *arg)
{
	struct watcher *w = arg;

	w->o.stats = &w->st;
	w->rc = ts_kube_watch(w->c, &w->o, collect, w->s);
	return NULL;
}

static json_t *configmap(const char *name, const char *v)
{
	return json_pack("{s:s,s:s,s:{s:s},s:{s:s}}", "apiVersion", "v1", "kind", "ConfigMap",
			 "metadata", "name", name, "data", "v", v);
}

static unsigned wait_events(struct seen *s, unsigned n, unsigned timeout_ms)
{
	unsigned got = 0;

	for (unsigned t = 0; t < timeout_ms; t += 20) {
		pthread_mutex_lock(&s->mu);
		got = s->n;
		pthread_mutex_unlock(&s->mu);
		if (got >= n)
			break;
		usleep(20000);
	}
	return got;
}

/* Until the watch has listed: what is written after it comes as events. */
static void wait_resync(struct seen *s)
{
	for (unsigned i = 0; i < 600; i++) {
		pthread_mutex_lock(&s->mu);
		unsigned n = s->resyncs;

		pthread_mutex_unlock(&s->mu);
		if (n)
			return;
		usleep(50000);
	}
	cr_assert_fail("the watch did not list");
}

/* Every object: one ADDED then one MODIFIED to "2", resourceVersions increasing. */
static void check_exactly_once(struct seen *s)
{
	cr_assert_eq(s->n, 2 * NOBJ, "%u events", s->n);
	for (unsigned i = 0; i < NOBJ; i++) {
		char name[16];
		unsigned added = 0, modified = 0;

		snprintf(name, sizeof(name), "cm-%u", i);
		for (unsigned j = 0; j < s->n; j++) {
			if (strcmp(s->ev[j].name, name))
				continue;
			if (s->ev[j].type == TS_KUBE_ADDED) {
				cr_assert_eq(modified, 0, "%s: ADDED after MODIFIED", name);
				added++;
			} else {
				cr_assert_eq(s->ev[j].type, TS_KUBE_MODIFIED);
				cr_assert_str_eq(s->ev[j].data, "2");
				modified++;
			}
		}
		cr_assert_eq(added, 1, "%s added %u times", name, added);
		cr_assert_eq(modified, 1, "%s modified %u times", name, modified);
	}
	for (unsigned j = 1; j < s->n; j++)
		cr_assert_gt(s->ev[j].rv, s->ev[j - 1].rv, "events in order");
}

Test(kube_apiserver, watch_resumes_after_cut_connections)
{
	struct ts_kube *c = client(), *cw = NULL;
	char ns[32], coll[128], path[192], via[512];
	struct proxy px;
	uint16_t api_port;
	static struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER, .want = 2 * NOBJ };
	pthread_t t;

	new_ns(c, ns);
	snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/configmaps", ns);
	kubeconfig_via(0, via, sizeof(via), &api_port);
	proxy_start(&px, api_port);
	kubeconfig_via(px.port, via, sizeof(via), &api_port);
	cr_assert_eq(ts_kube_open(via, NULL, &cw), 0);
	struct watcher w = { .c = cw, .o = { .path = coll, .timeout_s = 30 }, .s = &s };

	cr_assert_eq(pthread_create(&t, NULL, run_watch, &w), 0);
	wait_resync(&s);
	for (unsigned i = 0; i < 2 * NOBJ; i++) {
		char name[16];
		json_t *o;

		snprintf(name, sizeof(name), "cm-%u", i % NOBJ);
		o = configmap(name, i < NOBJ ? "1" : "2");
		if (i < NOBJ) {
			cr_assert_eq(ts_kube_create(c, coll, o, NULL), 0);
		} else {
			snprintf(path, sizeof(path), "%s/%s", coll, name);
			cr_assert_eq(ts_kube_update(c, path, o, NULL), 0);
		}
		json_decref(o);
		if (i == 5 || i == 18 || i == 31) {
			wait_events(&s, i - 1, 10000); /* the stream is carrying events */
			proxy_cut(&px);
		}
	}
	pthread_join(t, NULL);
	cr_assert_eq(w.rc, 1, "stopped by the callback");
	cr_assert_eq(s.resyncs, 1, "only the first list: a cut stream is resumed, not relisted");
	cr_assert_eq(w.st.relists, 0);
	cr_assert_geq(w.st.rewatches, 3, "%lu rewatches", (unsigned long)w.st.rewatches);
	check_exactly_once(&s);
	ts_kube_close(cw);
	ts_kube_close(c);
}

Test(kube_apiserver, apiserver_restart_eagain_then_relist_after_compaction)
{
	struct ts_kube_opts fast = { .timeout_ms = 2000, .retries = 1, .backoff_ms = 50 };
	struct ts_kube *c = NULL, *cw = NULL;
	char ns[32], coll[128], path[192], rv[80];
	json_t *items = NULL, *o;
	static struct seen s = { .mu = PTHREAD_MUTEX_INITIALIZER };
	pthread_t t;

	cr_assert_eq(ts_kube_open(kcfg(), &fast, &c), 0);
	new_ns(c, ns);
	struct ts_registry *r = registry(ns);
	struct ts_reg_group g = reg_case_make_group(), got;

	cr_assert_eq(ts_registry_put_group(r, &g), 0);
	snprintf(coll, sizeof(coll), "/api/v1/namespaces/%s/configmaps", ns);
	cr_assert_eq(ts_kube_list(c, coll, NULL, &items, rv, sizeof(rv)), 0);
	json_decref(items);
	for (unsigned i = 0; i < NOBJ; i++) {
		char name[16];

		snprintf(name, sizeof(name), "cm-%u", i);
		o = configmap(name, "1");
		cr_assert_eq(ts_kube_create(c, coll, o, NULL), 0);
		json_decref(o);
	}

	ctl("compact");
	ctl("apiserver-stop");
	cr_assert_eq(ts_kube_get(c, "/api/v1/namespaces/default", &o), -EAGAIN);
	cr_assert_eq(ts_registry_get_group(r, g.uuid, &got), -EAGAIN);
	cr_assert_eq(ts_registry_raise_epoch(r, g.uuid, 1, &(uint64_t){ 0 }), -EAGAIN);
	ctl("apiserver-start");
	int rc = -EAGAIN;

	for (unsigned i = 0; i < 100 && rc == -EAGAIN; i++) {
		rc = ts_registry_get_group(r, g.uuid, &got);
		if (rc == -EAGAIN)
			usleep(200000);
	}
	cr_assert_eq(rc, 0, "works again: %s", ts_strerror(rc));
	cr_assert_eq(memcmp(&got, &g, sizeof(g)), 0);

	/* a watch from before the compaction: 410, relist, the full set */
	cr_assert_eq(ts_kube_open(kcfg(), NULL, &cw), 0);
	s.want = 1;
	struct watcher w = { .c = cw, .o = { .path = coll, .resource_version = rv }, .s = &s };

	cr_assert_eq(pthread_create(&t, NULL, run_watch, &w), 0);
	wait_resync(&s);
	/* one change after the relist, to see the watch resumed from the list */
	snprintf(path, sizeof(path), "%s/cm-3", coll);
	o = configmap("cm-3", "2");
	cr_assert_eq(ts_kube_update(c, path, o, NULL), 0);
	json_decref(o);
	pthread_join(t, NULL);
	cr_assert_eq(w.rc, 1);
	cr_assert_eq(s.resyncs, 1);
	cr_assert_eq(w.st.relists, 1);
	cr_assert_eq(s.resync_items, NOBJ, "the relist carries every object");
	cr_assert_eq(s.n, 1);
	cr_assert_eq(s.ev[0].type, TS_KUBE_MODIFIED);
	cr_assert_str_eq(s.ev[0].name, "cm-3");
	ts_registry_close(r);
	ts_kube_close(cw);
	ts_kube_close(c);
}

/* ---- Leases ---- */

struct contender {
	struct ts_kube *c;
	const char *ns, *holder;
	pthread_barrier_t *bar;
	int rc;
};

static void *contend(void *arg)
{
	struct contender *k = arg;

	pthread_barrier_wait(k->bar);
	k->rc = ts_kube_lease_acquire(k->c, k->ns, "race", k->holder, 2, NULL);
	return NULL;
}

Test(kube_apiserver, leases_two_holders)
{
	struct ts_kube *c = client(), *d = client();
	struct ts_kube_lease la, lb, l;
	char ns[32];

	new_ns(c, ns);
	cr_assert_eq(ts_kube_lease_get(c, ns, "leader", &l), -ENOENT);
	cr_assert_eq(ts_kube_lease_acquire(c, ns, "leader", "a", 2, &la), 0);
	cr_assert_str_eq(la.holder, "a");
	cr_assert_eq(la.duration_s, 2);
	cr_assert_eq(la.transitions, 0);
	cr_assert_eq(ts_kube_lease_acquire(d, ns, "leader", "b", 2, &lb), -EBUSY);
	cr_assert_eq(ts_kube_lease_acquire(c, ns, "leader", "a", 2, &la), 0, "re-acquire = renew");
	usleep(1200000);
	cr_assert_eq(ts_kube_lease_renew(c, ns, &la, "a"), 0);
	usleep(1200000); /* 2.4 s after the acquire, 1.2 s after the renewal: still held */
	cr_assert_eq(ts_kube_lease_acquire(d, ns, "leader", "b", 2, &lb), -EBUSY);
	usleep(1200000); /* now expired */
	cr_assert_eq(ts_kube_lease_get(d, ns, "leader", &l), 0);
	cr_assert(ts_kube_lease_expired(&l, ts_kube_now_us()));
	cr_assert_eq(ts_kube_lease_acquire(d, ns, "leader", "b", 2, &lb), 0);
	cr_assert_str_eq(lb.holder, "b");
	cr_assert_eq(lb.transitions, 1);
	cr_assert_eq(ts_kube_lease_renew(c, ns, &la, "a"), -EBUSY, "a lost it");
	cr_assert_eq(ts_kube_lease_release(c, ns, "leader", "a"), -EBUSY);
	cr_assert_eq(ts_kube_lease_release(d, ns, "leader", "b"), 0);
	cr_assert_eq(ts_kube_lease_acquire(c, ns, "leader", "a", 2, &la), 0, "released: free");
	cr_assert_eq(la.transitions, 2);

	/* two contenders for one free Lease at the same moment: one winner */
	for (unsigned round = 0; round < 5; round++) {
		pthread_barrier_t bar;
		pthread_t t[2];
		struct contender k[2] = { { c, ns, "x", &bar, 0 }, { d, ns, "y", &bar, 0 } };

		pthread_barrier_init(&bar, NULL, 2);
		for (unsigned i = 0; i < 2; i++)
			pthread_create(&t[i], NULL, contend, &k[i]);
		for (unsigned i = 0; i < 2; i++)
			pthread_join(t[i], NULL);
		pthread_barrier_destroy(&bar);
		cr_assert((k[0].rc == 0) != (k[1].rc == 0), "round %u: %d %d", round, k[0].rc,
			  k[1].rc);
		cr_assert_eq(k[0].rc ? k[0].rc : k[1].rc, -EBUSY);
		cr_assert_eq(ts_kube_lease_release(c, ns, "race", k[0].rc ? "y" : "x"), 0);
	}
	ts_kube_close(c);
	ts_kube_close(d);
}

/* ---- configuration ---- */

static char *b64(const char *path)
{
	static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *in = NULL, *out;
	size_t len = 0, o = 0;

	cr_assert_eq(ts_file_read_all(path, 1 << 20, &in, &len), 0);
	out = ts_malloc(len * 4 / 3 + 8);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)(uint8_t)in[i] << 16;

		v |= i + 1 < len ? (uint32_t)(uint8_t)in[i + 1] << 8 : 0;
		v |= i + 2 < len ? (uint8_t)in[i + 2] : 0;
		out[o++] = tbl[v >> 18];
		out[o++] = tbl[(v >> 12) & 63];
		out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < len ? tbl[v & 63] : '=';
	}
	out[o] = '\0';
	ts_free(in);
	return out;
}

Test(kube_apiserver, kubeconfig_with_embedded_credentials)
{
	char path[512], pki[400], f[420];
	const char *w = getenv("TS_KUBE_WORK");
	uint16_t port;
	struct ts_kube *c = NULL;
	json_t *o = NULL;
	FILE *fp;

	kubeconfig_via(0, path, sizeof(path), &port);
	snprintf(pki, sizeof(pki), "%s/pki", w);
	snprintf(path, sizeof(path), "%s/embedded.kubeconfig", w);
	fp = fopen(path, "w");
	cr_assert_not_null(fp);
	/* block style, as kubectl writes it */
	snprintf(f, sizeof(f), "%s/ca.crt", pki);
	char *ca = b64(f);

	snprintf(f, sizeof(f), "%s/admin.crt", pki);
	char *crt = b64(f);

	snprintf(f, sizeof(f), "%s/admin.key", pki);
	char *key = b64(f);

	fprintf(fp,
		"apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: %s\n"
		"    server: https://127.0.0.1:%u\n  name: other\n- cluster:\n    server: https://127.0.0.1:1\n"
		"  name: decoy\ncontexts:\n- context:\n    cluster: decoy\n    user: admin\n  name: d\n"
		"- context:\n    cluster: other\n    user: admin\n  name: e\ncurrent-context: e\nkind: Config\n"
		"preferences: {}\nusers:\n- name: admin\n  user:\n    client-certificate-data: %s\n"
		"    client-key-data: %s\n",
		ca, port, crt, key);
	fclose(fp);
	ts_free(ca);
	ts_free(crt);
	ts_free(key);
	cr_assert_eq(ts_kube_open(path, NULL, &c), 0);
	cr_assert_eq(ts_kube_get(c, "/api/v1/namespaces/default", &o), 0);
	cr_assert_str_eq(json_string_value(json_object_get(json_object_get(o, "metadata"), "name")),
			 "default");
	json_decref(o);
	cr_assert_eq(ts_kube_get(c, "/api/v1/namespaces/no-such-ns", &o), -ENOENT);
	ts_kube_close(c);

	/* no client certificate: the server answers 403 for anonymous (RBAC) */
	fp = fopen(path, "w");
	ca = (snprintf(f, sizeof(f), "%s/ca.crt", pki), b64(f));
	fprintf(fp,
		"apiVersion: v1\nclusters:\n- cluster: {certificate-authority-data: %s, server: 'https://127.0.0.1:%u'}\n"
		"  name: c\ncontexts:\n- {name: x, context: {cluster: c}}\ncurrent-context: x\n",
		ca, port);
	fclose(fp);
	ts_free(ca);
	cr_assert_eq(ts_kube_open(path, NULL, &c), 0);
	int rc = ts_kube_get(c, "/api/v1/namespaces/default", &o);

	cr_assert(rc == -EACCES, "anonymous: %s", ts_strerror(rc));
	ts_kube_close(c);
}

/* ---- the CSI metadata store (csi/store/store_kube.h) ---- */

static void open_kube_store(void *arg, struct csc_store *s)
{
	cr_assert_eq(ts_csi_store_kube_open(kcfg(), arg, &s->ops, &s->ctx), 0);
}

/* The cases every CSI store passes, each in a namespace of its own. */
Test(kube_apiserver, csi_store_cases)
{
	struct ts_kube *c = client();
	char ns[4][32];

	for (int i = 0; i < 4; i++)
		new_ns(c, ns[i]);
	csc_case_put_get_del_reopen(open_kube_store, ns[0]);
	csc_case_list_pages(open_kube_store, ns[1]);
	csc_case_random_model(open_kube_store, ns[2], 150, false);
	csc_case_groups(open_kube_store, ns[3]);
	ts_kube_close(c);
}

/*
 * Two stores on one namespace (an active controller and one that lost its
 * Lease without noticing): the second's write of a record the first changed,
 * or created, after the second loaded is -ESTALE and changes nothing; a
 * write equal to what is stored (a retry whose first answer was lost) is
 * adopted. Ids that are no object names are stored under "h-<sha>".
 */
Test(kube_apiserver, csi_store_second_writer_is_refused)
{
	struct ts_kube *c = client();
	struct csc_store a, b, r;
	struct ts_csi_volume v = csc_mkvol(1), w = csc_mkvol(2), out;
	char ns[32], name[64], path[256];
	json_t *obj;

	new_ns(c, ns);
	open_kube_store(ns, &a);
	cr_assert_eq(a.ops->put(a.ctx, &v), 0);
	open_kube_store(ns, &b); /* loads v */
	v.capacity_bytes += 4096;
	cr_assert_eq(a.ops->put(a.ctx, &v), 0, "the active writer resizes");
	struct ts_csi_volume stale = v;

	stale.capacity_bytes = 1;
	cr_expect_eq(b.ops->put(b.ctx, &stale), -ESTALE, "a stale writer's update");
	cr_assert_eq(b.ops->get(b.ctx, v.id, &out), 0);
	cr_expect_neq(out.capacity_bytes, 1, "a refused write changes nothing in memory");
	cr_assert_eq(b.ops->put(b.ctx, &v), 0, "the same record as stored: adopted");
	cr_assert_eq(a.ops->put(a.ctx, &w), 0, "a record the stale writer never loaded");
	w.capacity_bytes = 5;
	cr_expect_eq(b.ops->put(b.ctx, &w), -ESTALE, "a stale writer's create");
	b.ops->destroy(b.ctx);

	/* Ids with upper case or too long for a name. */
	struct ts_csi_volume odd = csc_mkvol(3);

	snprintf(odd.id, sizeof(odd.id), "Vol_%s", "UPPER.case");
	cr_assert_eq(a.ops->put(a.ctx, &odd), 0);
	ts_csi_store_kube_name(odd.id, name);
	cr_expect_eq(strncmp(name, "h-", 2), 0);
	cr_expect_eq(strlen(name), 42u);
	ts_csi_store_kube_name("tv-0123456789abcdef", name);
	cr_expect_str_eq(name, "tv-0123456789abcdef");
	ts_csi_store_kube_name("h-x", name);
	cr_expect_neq(strcmp(name, "h-x"), 0, "ids that look hashed are hashed");
	a.ops->destroy(a.ctx);
	open_kube_store(ns, &r);
	cr_assert_eq(r.ops->get(r.ctx, odd.id, &out), 0);
	csc_expect_same(&out, &odd);
	cr_expect_eq(r.ops->count(r.ctx), 3u);
	r.ops->destroy(r.ctx);

	/* An object whose name is not its id's fails the open: never guessed. */
	snprintf(path, sizeof(path), "/apis/tessera.io/v1alpha1/namespaces/%s/tesseravolumes", ns);
	obj = json_pack("{s:s,s:s,s:{s:s},s:o}", "apiVersion", "tessera.io/v1alpha1", "kind",
			"TesseraVolume", "metadata", "name", "not-its-id", "spec",
			json_pack("{s:i,s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:b}", "version", 1, "id",
				  "tv-other", "name", "n", "attach", "", "fs_type", "",
				  "capacity_bytes", 1, "ec_k", 0, "ec_m", 0, "block", 0));
	cr_assert_eq(ts_kube_create(c, path, obj, NULL), 0);
	json_decref(obj);
	cr_expect_eq(ts_csi_store_kube_open(kcfg(), ns, &r.ops, &r.ctx), TS_ERR_CORRUPT);
	/* and the CRD's validation refuses a record outside the schema */
	obj = json_pack("{s:s,s:s,s:{s:s},s:{s:i,s:s}}", "apiVersion", "tessera.io/v1alpha1",
			"kind", "TesseraVolume", "metadata", "name", "bad", "spec", "version", 2,
			"id", "bad");
	cr_expect_eq(ts_kube_create(c, path, obj, NULL), -EINVAL);
	json_decref(obj);
	ts_kube_close(c);
}

/* ---- leader election (control/kube/leader.h) ---- */

struct replica {
	struct ts_leader_opts o;
	struct ts_leader *l;
	atomic_int rc; /* 1 while acquire waits */
	atomic_uint lost;
	char why[128];
};

static void on_lost(void *arg, const char *why)
{
	struct replica *r = arg;

	snprintf(r->why, sizeof(r->why), "%s", why);
	atomic_fetch_add(&r->lost, 1);
}

static void replica_init(struct replica *r, const char *kubeconfig, const char *ns,
			 const char *id)
{
	memset(r, 0, sizeof(*r));
	r->o = (struct ts_leader_opts){ .kubeconfig = kubeconfig, .ns = ns, .name = "ctl",
					.identity = id, .duration_s = 3, .retry_ms = 200,
					.lost = on_lost, .lost_arg = r };
	atomic_store(&r->rc, 1);
}

static void *run_acquire(void *arg)
{
	struct replica *r = arg;

	atomic_store(&r->rc, ts_leader_acquire(&r->o, &r->l));
	return NULL;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wait until \p r's acquire returns, at most \p ms; its rc. */
static int acquired_within(struct replica *r, unsigned ms)
{
	uint64_t end = now_ms() + ms;

	while (atomic_load(&r->rc) == 1 && now_ms() < end)
		usleep(20000);
	return atomic_load(&r->rc);
}

Test(kube_apiserver, leader_active_passive_release_and_takeover)
{
	struct ts_kube *c = client();
	struct replica a, b;
	struct ts_kube_lease l;
	pthread_t tb;
	json_t *obj;
	char ns[32], path[256];

	new_ns(c, ns);
	replica_init(&a, kcfg(), ns, "a");
	replica_init(&b, kcfg(), ns, "b");
	{
		struct ts_leader_opts bad = a.o;

		bad.renew_deadline_ms = 3000; /* not shorter than the duration */
		cr_assert_eq(ts_leader_acquire(&bad, &a.l), -EINVAL);
		bad = a.o;
		bad.identity = "";
		cr_assert_eq(ts_leader_acquire(&bad, &a.l), -EINVAL);
	}
	cr_assert_eq(ts_leader_acquire(&a.o, &a.l), 0);
	cr_assert_eq(ts_leader_gate(a.l), 0);
	cr_assert_str_eq(ts_leader_previous(a.l), "");
	cr_assert_eq(pthread_create(&tb, NULL, run_acquire, &b), 0);
	/* twice the Lease's duration: a renews it, b keeps waiting */
	cr_assert_eq(acquired_within(&b, 6000), 1, "b took a Lease a renews");
	cr_assert_eq(ts_leader_gate(a.l), 0);
	cr_assert_eq(ts_kube_lease_get(c, ns, "ctl", &l), 0);
	cr_assert_str_eq(l.holder, "a");
	cr_assert_eq(atomic_load(&a.lost), 0u);

	/* a gives it up: b holds it at its next try, long before a's duration */
	uint64_t t0 = now_ms();

	ts_leader_release(a.l);
	cr_assert_eq(acquired_within(&b, 2000), 0);
	pthread_join(tb, NULL);
	cr_assert_lt(now_ms() - t0, 1500u);
	cr_assert_eq(ts_leader_gate(b.l), 0);
	cr_assert_eq(atomic_load(&a.lost), 0u, "a release is not a loss");
	cr_assert_eq(ts_kube_lease_get(c, ns, "ctl", &l), 0);
	cr_assert_str_eq(l.holder, "b");

	/* someone else writes the Lease over b's: b's next renew loses the role, once */
	snprintf(path, sizeof(path), "/apis/coordination.k8s.io/v1/namespaces/%s/leases/ctl", ns);
	cr_assert_eq(ts_kube_get(c, path, &obj), 0);
	json_object_set_new(json_object_get(obj, "spec"), "holderIdentity",
			    json_string("intruder"));
	cr_assert_eq(ts_kube_update(c, path, obj, NULL), 0);
	json_decref(obj);
	t0 = now_ms();
	while (!atomic_load(&b.lost) && now_ms() - t0 < 3000)
		usleep(20000);
	cr_assert_eq(atomic_load(&b.lost), 1u);
	cr_assert(strstr(b.why, "someone else"), "%s", b.why);
	cr_assert_eq(ts_leader_gate(b.l), -EBUSY);
	usleep(500000);
	cr_assert_eq(atomic_load(&b.lost), 1u, "lost is called once");
	ts_leader_release(b.l); /* lost: the intruder's Lease is left alone */
	cr_assert_eq(ts_kube_lease_get(c, ns, "ctl", &l), 0);
	cr_assert_str_eq(l.holder, "intruder");
	ts_kube_close(c);
}

/* A holder cut off from the API server steps down at its renew deadline, before expiry. */
Test(kube_apiserver, leader_cut_off_steps_down_before_expiry)
{
	struct ts_kube *c = client();
	struct replica a, b;
	struct proxy px;
	struct ts_kube_lease l;
	char ns[32], via[512];
	uint16_t api_port;
	pthread_t tb;

	new_ns(c, ns);
	kubeconfig_via(0, via, sizeof(via), &api_port);
	proxy_start(&px, api_port);
	kubeconfig_via(px.port, via, sizeof(via), &api_port);
	replica_init(&a, via, ns, "a");
	replica_init(&b, kcfg(), ns, "b");
	cr_assert_eq(ts_leader_acquire(&a.o, &a.l), 0);
	usleep(600000);
	cr_assert_eq(ts_kube_lease_get(c, ns, "ctl", &l), 0);
	uint64_t renewed_us = l.renew_us;

	cr_assert_eq(pthread_create(&tb, NULL, run_acquire, &b), 0);
	/* cut a off: no new connection, the open ones shut */
	shutdown(px.lfd, SHUT_RDWR);
	proxy_cut(&px);
	uint64_t t0 = now_ms(), stepped = 0;

	while (now_ms() - t0 < 5000) {
		if (!stepped && ts_leader_gate(a.l))
			stepped = now_ms() - t0;
		if (atomic_load(&b.rc) == 0)
			break;
		usleep(10000);
	}
	uint64_t took = now_ms() - t0;

	cr_assert_eq(acquired_within(&b, 0), 0, "b took over");
	pthread_join(tb, NULL);
	cr_assert_gt(stepped, 0u, "a stepped down");
	cr_assert_eq(atomic_load(&a.lost), 1u);
	cr_assert(strstr(a.why, "deadline"), "%s", a.why);
	/* a stopped acting before b started: a's deadline (2 s from its last renew) < the duration */
	cr_assert_lt(stepped, took, "a stepped down at %llu ms, b took over at %llu ms",
		     (unsigned long long)stepped, (unsigned long long)took);
	cr_assert_eq(ts_kube_lease_get(c, ns, "ctl", &l), 0);
	cr_assert_str_eq(l.holder, "b");
	cr_assert_geq(l.acquire_us, renewed_us + 2000000u, "taken over only once a's Lease expired");
	ts_leader_release(a.l);
	ts_leader_release(b.l);
	ts_kube_close(c);
}

/* ---- node ids by host name (control/kube/node_ids.h) ---- */

struct claimer {
	const char *ns;
	char host[32];
	uint32_t id;
	int rc;
	pthread_barrier_t *bar;
};

static void *run_claim(void *arg)
{
	struct claimer *k = arg;

	pthread_barrier_wait(k->bar);
	k->rc = ts_node_id_claim(kcfg(), k->ns, k->host, &k->id);
	return NULL;
}

Test(kube_apiserver, node_ids_claimed_once_per_host)
{
	struct ts_kube *c = client();
	char ns[32], path[256];
	uint32_t id = 0;
	json_t *cm;

	new_ns(c, ns);
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "worker-a", &id), 0);
	cr_assert_eq(id, 1u, "the first host gets 1 (the ConfigMap is created)");
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "worker-b", &id), 0);
	cr_assert_eq(id, 2u);
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "worker-a", &id), 0);
	cr_assert_eq(id, 1u, "a restart keeps its id");
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "bad/name", &id), -EINVAL);
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "", &id), -EINVAL);

	/* eight hosts at once: eight distinct ids, 3..10 */
	pthread_barrier_t bar;
	struct claimer k[8];
	pthread_t t[8];
	uint64_t seen = 0;

	pthread_barrier_init(&bar, NULL, 8);
	for (unsigned i = 0; i < 8; i++) {
		k[i] = (struct claimer){ .ns = ns, .bar = &bar };
		snprintf(k[i].host, sizeof(k[i].host), "racer-%u", i);
		cr_assert_eq(pthread_create(&t[i], NULL, run_claim, &k[i]), 0);
	}
	for (unsigned i = 0; i < 8; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned i = 0; i < 8; i++) {
		cr_assert_eq(k[i].rc, 0, "%s: %d", k[i].host, k[i].rc);
		cr_assert(k[i].id >= 3 && k[i].id <= 10, "%s got %u", k[i].host, k[i].id);
		cr_assert_eq(seen & (1ull << k[i].id), 0u, "id %u given twice", k[i].id);
		seen |= 1ull << k[i].id;
	}

	/* a value someone broke is refused, not replaced */
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/tessera-node-ids", ns);
	cr_assert_eq(ts_kube_get(c, path, &cm), 0);
	json_object_set_new(json_object_get(cm, "data"), "worker-b", json_string("zero"));
	cr_assert_eq(ts_kube_update(c, path, cm, NULL), 0);
	json_decref(cm);
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "worker-b", &id), -EINVAL);
	cr_assert_eq(ts_node_id_claim(kcfg(), ns, "worker-c", &id), 0);
	cr_assert_eq(id, 2u, "the broken entry's id is free again: the lowest free one");
	ts_kube_close(c);
}

/* ---- tasks (control/kube/tasks.h) ---- */

struct task_claimer {
	const char *ns, *name;
	char owner[16];
	int rc;
	pthread_barrier_t *bar;
};

static void *run_task_claim(void *arg)
{
	struct task_claimer *k = arg;
	struct ts_kube *c = client();
	struct ts_task t;

	pthread_barrier_wait(k->bar);
	k->rc = ts_task_claim(c, k->ns, k->name, k->owner, 60000, 0, &t);
	ts_kube_close(c);
	return NULL;
}

Test(kube_apiserver, tasks_claimed_once_resumed_after_a_stale_owner)
{
	struct ts_kube *c = client();
	struct ts_task t = { .name = "heal-g1", .kind = "heal", .target = "g1",
			     .priority = TS_TASK_LOW, .total = 10 }, a, b, got, dup;
	struct ts_task *all;
	size_t n;
	char ns[32];

	new_ns(c, ns);
	cr_assert_eq(ts_task_create(c, ns, &t), 0);
	cr_assert_eq(t.phase, TS_TASK_PENDING);
	dup = t;
	cr_assert_eq(ts_task_create(c, ns, &dup), -EEXIST);
	struct ts_task bad = t;

	snprintf(bad.name, sizeof(bad.name), "Not_A_Name");
	cr_assert_eq(ts_task_create(c, ns, &bad), -EINVAL);

	/* a claims; b cannot while a is alive; a's progress is kept */
	cr_assert_eq(ts_task_claim(c, ns, "heal-g1", "a", 1000, 0, &a), 0);
	cr_assert_eq(a.phase, TS_TASK_RUNNING);
	cr_assert_str_eq(a.owner, "a");
	cr_assert_eq(a.attempts, 1u);
	cr_assert_eq(ts_task_claim(c, ns, "heal-g1", "b", 1000, 0, &b), -EBUSY);
	cr_assert_eq(ts_task_progress(c, ns, &a, 3, 10, "3 of 10 regions"), 0);
	cr_assert_eq(ts_task_claim(c, ns, "heal-g1", "a", 1000, 0, &a), 0, "re-claim by the owner");
	cr_assert_eq(a.attempts, 1u, "a re-claim by its owner is no new attempt");
	cr_assert_eq(a.done, 3u);

	/* a goes silent: b takes over after the stale time and resumes at 3 */
	usleep(1300000);
	cr_assert_eq(ts_task_claim(c, ns, "heal-g1", "b", 1000, 0, &b), 0);
	cr_assert_str_eq(b.owner, "b");
	cr_assert_eq(b.attempts, 2u);
	cr_assert_eq(b.done, 3u, "progress survives the owner");
	cr_assert_eq(ts_task_progress(c, ns, &a, 4, 10, "a woke up"), -EBUSY, "a lost it: stop");
	cr_assert_eq(ts_task_finish(c, ns, &a, 1, "a thinks it is done"), -EBUSY);
	cr_assert_eq(ts_task_progress(c, ns, &b, 10, 10, ""), 0);
	cr_assert_eq(ts_task_finish(c, ns, &b, 1, "healed"), 0);
	cr_assert_eq(ts_task_get(c, ns, "heal-g1", &got), 0);
	cr_assert_eq(got.phase, TS_TASK_DONE);
	cr_assert_str_eq(got.message, "healed");
	cr_assert_eq(got.done, 10u);
	cr_assert_eq(ts_task_claim(c, ns, "heal-g1", "a", 1000, 0, &a), -EALREADY, "done is final");
	cr_assert_eq(ts_task_claim(c, ns, "nope", "a", 1000, 0, &a), -ENOENT);

	/* a fallback claimer leaves a fresh Pending task to the others */
	struct ts_task f = { .name = "scrub-g3", .kind = "scrub", .target = "g3",
			     .priority = TS_TASK_LOW };

	cr_assert_eq(ts_task_create(c, ns, &f), 0);
	cr_assert_eq(ts_task_claim(c, ns, "scrub-g3", "active", 1000, 800, &a), -EBUSY);
	usleep(900000);
	cr_assert_eq(ts_task_claim(c, ns, "scrub-g3", "active", 1000, 800, &a), 0, "then it may");

	/* eight claimers of one Pending task at once: exactly one owner */
	struct ts_task r = { .name = "rebuild-g2", .kind = "rebuild", .target = "g2",
			     .priority = TS_TASK_LOW, .total = 1 };
	pthread_barrier_t bar;
	struct task_claimer k[8];
	pthread_t th[8];
	unsigned won = 0;

	cr_assert_eq(ts_task_create(c, ns, &r), 0);
	pthread_barrier_init(&bar, NULL, 8);
	for (unsigned i = 0; i < 8; i++) {
		k[i] = (struct task_claimer){ .ns = ns, .name = "rebuild-g2", .bar = &bar };
		snprintf(k[i].owner, sizeof(k[i].owner), "w%u", i);
		cr_assert_eq(pthread_create(&th[i], NULL, run_task_claim, &k[i]), 0);
	}
	for (unsigned i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&bar);
	for (unsigned i = 0; i < 8; i++) {
		cr_assert(k[i].rc == 0 || k[i].rc == -EBUSY, "%s: %d", k[i].owner, k[i].rc);
		won += k[i].rc == 0;
	}
	cr_assert_eq(won, 1u);
	cr_assert_eq(ts_task_get(c, ns, "rebuild-g2", &got), 0);
	cr_assert_eq(got.attempts, 1u);
	cr_assert_eq(ts_task_list(c, ns, &all, &n), 0);
	cr_assert_eq(n, 3u);
	cr_assert_str_eq(all[0].name, "heal-g1");
	cr_assert_str_eq(all[1].name, "rebuild-g2");
	cr_assert_str_eq(all[2].name, "scrub-g3");
	cr_assert_eq(all[1].phase, TS_TASK_RUNNING);
	ts_free(all);
	ts_kube_close(c);
}
