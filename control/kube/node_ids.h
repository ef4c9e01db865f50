/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * Node ids for hosts that only know their name: a `tessera node` started by
 * the chart's DaemonSet has its Kubernetes node name, and the data plane
 * wants a small number (1..TS_REG_MAX_NODES) in every record, extent and
 * member. The id of each host is kept in the ConfigMap `tessera-node-ids`
 * of the namespace (data: host name -> decimal id), claimed once per host
 * and the same at every restart; two hosts claiming at once get distinct
 * ids (every write is conditioned on the resourceVersion read).
 *
 * Ids are never reused while the ConfigMap remembers their host; removing a
 * host for good is deleting its key (docs/kubernetes-store.md).
 *
 * THREAD SAFETY: any thread; the ConfigMap serialises claims.
 */
#ifndef TS_CONTROL_KUBE_NODE_IDS_H
#define TS_CONTROL_KUBE_NODE_IDS_H

#include <stdint.h>

#define TS_NODE_IDS_CONFIGMAP "tessera-node-ids"

/**
 * The id of host \p host (a ConfigMap key: letters, digits, '-', '_', '.',
 * at most 253) in namespace \p ns of the cluster \p kubeconfig describes
 * (NULL: in-cluster): the one recorded, else the lowest free one, recorded
 * now. 0 and *\p id; -EINVAL (bad name, or a recorded value that is not an
 * id), -ENOSPC (every id taken), or the client's errors (-EAGAIN while the
 * API server is unreachable, -EACCES without RBAC rights on ConfigMaps).
 */
int ts_node_id_claim(const char *kubeconfig, const char *ns, const char *host, uint32_t *id);

#endif /* TS_CONTROL_KUBE_NODE_IDS_H */
