/* SPDX-License-Identifier: Apache-2.0 */
/**
 * \file
 * The CSI metadata store (store.h) over the Kubernetes API: one custom
 * resource per record, so whichever controller replica is active finds what
 * the previous one promised the CO. docs/kubernetes-store.md has the schema.
 *
 *  - TesseraVolume (tessera.io/v1alpha1, namespaced): spec = the volume
 *    record exactly as the file store writes it (store_json.c).
 *  - TesseraVolumeGroupSnapshot: spec = a group snapshot record.
 *
 * Object names: the record id itself when it is a valid name (lowercase
 * letters, digits, '-' and '.', at most 63, starting and ending with a
 * letter or digit, not starting with "h-"), otherwise "h-" and the first 40
 * hex digits of the id's SHA-256. spec.id is always the real id.
 *
 * The records are loaded at open into the same in-memory index the file
 * store uses; every change is written to the API server first. Writes are
 * conditioned on the resourceVersion this store last read or wrote, so a
 * second writer (a controller that lost its Lease and has not noticed yet)
 * is detected: a put of a record someone else changed or created since is
 * -ESTALE, unless the stored record already equals the one being written
 * (a retry of a write whose answer was lost). The store expects to be the
 * only writer of its namespace's records while it is open.
 *
 * Errors: those of store.h plus the client's (kube.h): -EAGAIN while the
 * API server is unreachable, -EACCES without RBAC rights, -ESTALE as above;
 * a stored object whose spec does not parse fails the open with
 * TS_ERR_CORRUPT.
 *
 * THREAD SAFETY: as store.h (one lock, held across each API request).
 */
#ifndef TS_CSI_STORE_KUBE_H
#define TS_CSI_STORE_KUBE_H

#include "csi/store/store.h"

/**
 * The store in namespace \p ns of the cluster \p kubeconfig describes (NULL:
 * in-cluster), loaded now. The CRDs must be installed. 0 and \p ops /
 * \p ctx, or -errno / the client's errors.
 */
int ts_csi_store_kube_open(const char *kubeconfig, const char *ns,
			   const struct ts_csi_store_ops **ops, void **ctx);

/** The object name of record \p id (see above) into \p out (64 bytes). */
void ts_csi_store_kube_name(const char *id, char out[64]);

#endif /* TS_CSI_STORE_KUBE_H */
