/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The membership store (control/registry/registry.h) over the Kubernetes
 * API: custom resources of the group tessera.io, version v1alpha1 (the
 * CRDs are charts/tessera/crds/), and one coordination.k8s.io Lease per node
 * for its heartbeat. docs/kubernetes-store.md has the schema with examples.
 *
 *  - TesseraNode "node-<id>": spec = portal, free bytes, member vdisks. The
 *    node writes it through put_node, which rewrites the object only when
 *    its content changed, and renews the Lease "tessera-node-<id>" every
 *    time. list_nodes reports heartbeat_ms = the Lease's renewTime (ms), 0
 *    without a Lease: "node up" means the Lease has not expired (renewTime +
 *    leaseDurationSeconds in the future), so the controller's maximum
 *    heartbeat age should equal opts.lease_s. The record's own heartbeat_ms
 *    is not stored: the Lease is the clock.
 *  - TesseraRequest "req-<node>-<request id>", label tessera.io/node=<node>:
 *    spec = op, uuid, size, postedNs (the oldest pending is served first);
 *    status (a subresource, written by the node) = completed, result.
 *  - TesseraGroup "<uuid>": spec = k, m, member size, owner node, epoch,
 *    slots, journals. put_group and raise_epoch are read-modify-writes
 *    conditioned on the resourceVersion read, retried on conflict, so their
 *    rules hold across any number of processes: put_group refuses a record
 *    whose epoch is below the stored one (-ESTALE), raise_epoch hands out
 *    distinct, increasing epochs.
 *
 * Request ids must be valid in an object name (lowercase letters, digits,
 * '-', '.'): ts_registry_new_request_id() makes such ids; others are
 * -EINVAL.
 *
 * Errors: those of registry.h, plus the client's (kube.h): -EAGAIN while
 * the API server is unreachable, -EACCES without RBAC rights, -EPROTO for
 * objects that do not parse. A stored object that fails the schema
 * (impossible through the CRD validation, but checked anyway) is -EINVAL as
 * in the directory store.
 *
 * THREAD SAFETY: any thread. One mutex guards the per-node cache of what
 * was last written (spec text, Lease); it is never held across a request.
 */
#ifndef TS_CONTROL_REGISTRY_KUBE_H
#define TS_CONTROL_REGISTRY_KUBE_H

#include <stdint.h>

#include "control/kube/kube.h"
#include "control/registry/registry.h"

#define TS_REGISTRY_KUBE_GROUP "tessera.io"
#define TS_REGISTRY_KUBE_VERSION "v1alpha1"

/** Options; zeroed fields take the defaults. Can grow. */
struct ts_registry_kube_opts {
	int32_t lease_s;              /**< heartbeat Lease duration (default 10) */
	struct ts_kube_opts kube;     /**< the client's */
};

/**
 * The store in namespace \p ns of the cluster \p kubeconfig describes (NULL:
 * in-cluster). The CRDs must be installed. 0 and *\p out, -EINVAL, -ENOMEM,
 * or ts_kube_open's errors. Nothing is contacted yet.
 */
int ts_registry_kube_open(const char *kubeconfig, const char *ns, struct ts_registry **out);
/** The same with options (\p o may be NULL). */
int ts_registry_kube_open_opts(const char *kubeconfig, const char *ns,
			       const struct ts_registry_kube_opts *o, struct ts_registry **out);

#endif /* TS_CONTROL_REGISTRY_KUBE_H */
