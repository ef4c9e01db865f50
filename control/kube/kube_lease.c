/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leases (coordination.k8s.io/v1) and the MicroTime format.
 *
 * A Lease is a record with a holder, a duration and a renew time; the API
 * server gives it nothing but compare-and-swap on its resourceVersion.
 * Everything else is the holders' convention, the same as client-go's
 * leader election: a holder renews before renewTime + leaseDurationSeconds;
 * anyone may take a Lease over once that moment has passed (or the holder
 * is empty), and does so with a write conditioned on the resourceVersion it
 * read, so of several contenders exactly one succeeds and the others see a
 * conflict (-ESTALE), re-read and find it held.
 *
 * Writes are merge patches carrying metadata.resourceVersion, which the API
 * server treats as a precondition (409 on mismatch): a CAS that leaves the
 * rest of the object (labels, annotations) alone.
 *
 * Expiry is judged against this host's wall clock, so holders and
 * contenders need clocks within a small fraction of the duration (NTP);
 * docs/kubernetes-store.md says why that is acceptable here.
 *
 * THREAD SAFETY: stateless; any thread.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "control/kube/kube_internal.h"
#include "dataplane/common/ts_common.h"

uint64_t ts_kube_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void ts_kube_microtime_format(uint64_t us, char out[32])
{
	time_t s = (time_t)(us / 1000000u);
	struct tm tm;

	gmtime_r(&s, &tm);
	/* the year has 4 digits until 9999; the modulos bound the field widths for the compiler */
	snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ", (unsigned)(tm.tm_year + 1900) % 10000,
		 (unsigned)(tm.tm_mon + 1) % 100, (unsigned)tm.tm_mday % 100,
		 (unsigned)tm.tm_hour % 100, (unsigned)tm.tm_min % 100, (unsigned)tm.tm_sec % 100,
		 (unsigned)(us % 1000000u));
}

static int digits(const char *s, unsigned n, int *out)
{
	int v = 0;

	for (unsigned i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int ts_kube_microtime_parse(const char *s, uint64_t *us)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, mo, d, h, mi, sec, oh = 0, om = 0;
	uint64_t frac = 0;
	unsigned nf = 0;
	long long t;
	struct tm tm = { 0 };
	size_t i = 19;

	if (!s || !us || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
	    digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) || s[13] != ':' ||
	    digits(s + 14, 2, &mi) || s[16] != ':' || digits(s + 17, 2, &sec))
		return -EINVAL;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 ||
	    sec > 60)
		return -EINVAL;
	if (s[i] == '.') {
		for (i++; s[i] >= '0' && s[i] <= '9'; i++, nf++) {
			if (nf >= 9)
				return -EINVAL;
			if (nf < 6)
				frac = frac * 10 + (uint64_t)(s[i] - '0');
		}
		if (nf == 0)
			return -EINVAL;
		for (unsigned k = nf; k < 6; k++)
			frac *= 10;
	}
	if ((s[i] == 'Z' || s[i] == 'z') && s[i + 1] == '\0') {
		/* UTC */
	} else if ((s[i] == '+' || s[i] == '-') && strlen(s + i) == 6 && !digits(s + i + 1, 2, &oh) &&
		   s[i + 3] == ':' && !digits(s + i + 4, 2, &om) && oh < 24 && om < 60) {
		if (s[i] == '-') {
			oh = -oh;
			om = -om;
		}
	} else {
		return -EINVAL;
	}
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = (long long)timegm(&tm) - (oh * 3600 + om * 60);
	if (t < 0)
		return -EINVAL;
	*us = (uint64_t)t * 1000000u + frac;
	return 0;
}

/* ---- Leases ---- */

static int lease_path(char *buf, size_t n, const char *ns, const char *name)
{
	if (!kube_name_valid(ns, 63) || (name && !kube_name_valid(name, 253)))
		return -EINVAL;
	snprintf(buf, n, "/apis/coordination.k8s.io/v1/namespaces/%s/leases%s%s", ns,
		 name ? "/" : "", name ? name : "");
	return 0;
}

static int opt_time(json_t *spec, const char *key, uint64_t *us)
{
	json_t *v = json_object_get(spec, key);

	*us = 0;
	if (!v || json_is_null(v))
		return 0;
	return json_is_string(v) && ts_kube_microtime_parse(json_string_value(v), us) == 0
		       ? 0
		       : -EPROTO;
}

static int opt_i32(json_t *spec, const char *key, int32_t *out)
{
	json_t *v = json_object_get(spec, key);

	*out = 0;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
		return -EPROTO;
	*out = (int32_t)json_integer_value(v);
	return 0;
}

int ts_kube_lease_from_json(json_t *obj, struct ts_kube_lease *l)
{
	json_t *md = json_object_get(obj, "metadata"), *spec = json_object_get(obj, "spec");
	json_t *name = json_object_get(md, "name"), *rv = json_object_get(md, "resourceVersion");
	json_t *holder = json_object_get(spec, "holderIdentity");

	memset(l, 0, sizeof(*l));
	if (!json_is_object(md) || !json_is_string(name) || json_string_length(name) >= sizeof(l->name) ||
	    !json_is_string(rv) || !kube_rv_valid(json_string_value(rv)) ||
	    (spec && !json_is_object(spec)) ||
	    (holder && !json_is_null(holder) &&
	     (!json_is_string(holder) || json_string_length(holder) >= sizeof(l->holder) ||
	      strlen(json_string_value(holder)) != json_string_length(holder))))
		return -EPROTO;
	snprintf(l->name, sizeof(l->name), "%s", json_string_value(name));
	snprintf(l->resource_version, sizeof(l->resource_version), "%s", json_string_value(rv));
	if (json_is_string(holder))
		snprintf(l->holder, sizeof(l->holder), "%s", json_string_value(holder));
	if (opt_i32(spec, "leaseDurationSeconds", &l->duration_s) ||
	    opt_i32(spec, "leaseTransitions", &l->transitions) ||
	    opt_time(spec, "acquireTime", &l->acquire_us) ||
	    opt_time(spec, "renewTime", &l->renew_us))
		return -EPROTO;
	return 0;
}

int ts_kube_lease_get(struct ts_kube *c, const char *ns, const char *name,
		      struct ts_kube_lease *l)
{
	char path[512];
	json_t *obj = NULL;
	int rc;

	if (!l || !name || lease_path(path, sizeof(path), ns, name))
		return -EINVAL;
	rc = ts_kube_get(c, path, &obj);
	if (rc == 0)
		rc = ts_kube_lease_from_json(obj, l);
	json_decref(obj);
	return rc;
}

bool ts_kube_lease_expired(const struct ts_kube_lease *l, uint64_t now_us)
{
	return !l->holder[0] || l->renew_us + (uint64_t)l->duration_s * 1000000u <= now_us;
}

/* The CAS write: a merge patch of spec, conditioned on \p rv. */
static int lease_patch(struct ts_kube *c, const char *path, const char *rv, json_t *spec,
		       struct ts_kube_lease *l)
{
	json_t *patch, *out = NULL;
	int rc;

	patch = json_pack("{s:{s:s},s:o}", "metadata", "resourceVersion", rv, "spec", spec);
	if (!patch)
		return -ENOMEM;
	rc = ts_kube_patch(c, path, patch, &out);
	json_decref(patch);
	if (rc == 0)
		rc = ts_kube_lease_from_json(out, l);
	json_decref(out);
	return rc;
}

int ts_kube_lease_acquire(struct ts_kube *c, const char *ns, const char *name,
			  const char *holder, int32_t duration_s, struct ts_kube_lease *out)
{
	char coll[512], path[512], now[32];
	struct ts_kube_lease l;
	int rc = -EBUSY;

	if (!holder || !holder[0] || strlen(holder) >= sizeof(l.holder) || duration_s <= 0 ||
	    !name || lease_path(coll, sizeof(coll), ns, NULL) ||
	    lease_path(path, sizeof(path), ns, name))
		return -EINVAL;
	for (unsigned attempt = 0; attempt < 8; attempt++) {
		json_t *spec, *obj = NULL;
		uint64_t t = ts_kube_now_us();

		ts_kube_microtime_format(t, now);
		rc = ts_kube_lease_get(c, ns, name, &l);
		if (rc == -ENOENT) {
			obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:{s:s,s:i,s:s,s:s,s:i}}", "apiVersion",
					"coordination.k8s.io/v1", "kind", "Lease", "metadata", "name",
					name, "namespace", ns, "spec", "holderIdentity", holder,
					"leaseDurationSeconds", (int)duration_s, "acquireTime", now,
					"renewTime", now, "leaseTransitions", 0);
			if (!obj)
				return -ENOMEM;
			json_t *res = NULL;

			rc = ts_kube_create(c, coll, obj, &res);
			json_decref(obj);
			if (rc == 0)
				rc = ts_kube_lease_from_json(res, &l);
			json_decref(res);
			if (rc == -EEXIST)
				continue; /* someone created it first: read theirs */
			goto done;
		}
		if (rc)
			return rc;
		if (!strcmp(l.holder, holder)) {
			spec = json_pack("{s:s,s:i}", "renewTime", now, "leaseDurationSeconds",
					 (int)duration_s);
		} else if (!ts_kube_lease_expired(&l, t)) {
			return -EBUSY;
		} else {
			spec = json_pack("{s:s,s:i,s:s,s:s,s:i}", "holderIdentity", holder,
					 "leaseDurationSeconds", (int)duration_s, "acquireTime", now,
					 "renewTime", now, "leaseTransitions",
					 (int)(l.transitions < INT32_MAX ? l.transitions + 1 : 0));
		}
		if (!spec)
			return -ENOMEM;
		rc = lease_patch(c, path, l.resource_version, spec, &l);
		if (rc == -ESTALE)
			continue; /* written in between: decide again on what is there now */
		goto done;
	}
	return -EBUSY;
done:
	if (rc == 0 && out)
		*out = l;
	return rc;
}

int ts_kube_lease_renew(struct ts_kube *c, const char *ns, struct ts_kube_lease *l,
			const char *holder)
{
	char path[512], now[32];

	if (!l || !holder || !holder[0] || lease_path(path, sizeof(path), ns, l->name))
		return -EINVAL;
	for (unsigned attempt = 0; attempt < 8; attempt++) {
		json_t *spec;
		int rc;

		if (strcmp(l->holder, holder))
			return -EBUSY;
		ts_kube_microtime_format(ts_kube_now_us(), now);
		spec = json_pack("{s:s}", "renewTime", now);
		if (!spec)
			return -ENOMEM;
		rc = lease_patch(c, path, l->resource_version, spec, l);
		if (rc != -ESTALE)
			return rc;
		/* someone wrote it: still ours (a label changed) or taken over? */
		rc = ts_kube_lease_get(c, ns, l->name, l);
		if (rc)
			return rc;
	}
	return -EBUSY;
}

int ts_kube_lease_release(struct ts_kube *c, const char *ns, const char *name,
			  const char *holder)
{
	char path[512];
	struct ts_kube_lease l;

	if (!holder || !name || lease_path(path, sizeof(path), ns, name))
		return -EINVAL;
	for (unsigned attempt = 0; attempt < 8; attempt++) {
		json_t *spec;
		int rc = ts_kube_lease_get(c, ns, name, &l);

		if (rc)
			return rc;
		if (strcmp(l.holder, holder))
			return -EBUSY;
		spec = json_pack("{s:n}", "holderIdentity");
		if (!spec)
			return -ENOMEM;
		rc = lease_patch(c, path, l.resource_version, spec, &l);
		if (rc != -ESTALE)
			return rc;
	}
	return -EBUSY;
}
