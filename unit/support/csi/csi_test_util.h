/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Helpers shared by the CSI suites: a scratch state directory, a driver on the
 * file backend (or a caller's backend), and one-call wrappers that pack a
 * request, run it through ts_csi_handle() (no gRPC) and unpack the response.
 */
#ifndef TS_UNIT_CSI_TEST_UTIL_H
#define TS_UNIT_CSI_TEST_UTIL_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "csi.pb-c.h"
#include "csi/csi.h"

struct tenv {
	char dir[256];
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	const struct ts_csi_store_ops *st;
	void *st_ctx;
	struct ts_csi_driver *d;
};

/* Where tenv_init makes its scratch dir (default /tmp). */
extern const char *g_tenv_base;

/*
 * Make a scratch dir and a driver (controller + node, node id "n1", path
 * prefix = the scratch dir). \p be NULL: the file backend with \p cap bytes.
 */
void tenv_init(struct tenv *e, const struct ts_csi_backend_ops *be, void *be_ctx, uint64_t cap);
/* Destroy the driver and remove the scratch dir (after unmounting anything below it). */
void tenv_fini(struct tenv *e);

/*
 * Call \p method with \p req; returns the gRPC code. On OK and \p resp_desc,
 * *resp gets the unpacked response (free with protobuf_c_message_free_unpacked(*resp, NULL)).
 * The status message is copied into a static buffer, see tmsg().
 */
int tcall(struct ts_csi_driver *d, const char *method, const void *req,
	  const ProtobufCMessageDescriptor *resp_desc, void **resp);
const char *tmsg(void);

/* Builders (the returned messages live until tfree_all()). */
Csi__V1__VolumeCapability *tcap_mount(const char *fs);
Csi__V1__VolumeCapability *tcap_block(void);
void tfree_all(void);
/*
 * A CreateVolume request: \p bytes 0 = no capacity range; content from
 * snapshot \p snap or volume \p vol when one is given.
 */
Csi__V1__CreateVolumeRequest *tcreate_req(const char *name, int64_t bytes,
					  Csi__V1__VolumeCapability *cap, const char *snap,
					  const char *vol);

/* A NodeStageVolume request for volume \p v (its id and volume context) at \p staging. */
Csi__V1__NodeStageVolumeRequest tstage_req(const Csi__V1__Volume *v, const char *staging,
					   Csi__V1__VolumeCapability *cap);

/* A NodePublishVolume request for volume \p v (its id and volume context). */
Csi__V1__NodePublishVolumeRequest tpublish_req(const Csi__V1__Volume *v, const char *staging,
					       const char *target, Csi__V1__VolumeCapability *cap,
					       bool readonly);

/* CreateVolume \p name of \p bytes; writes the id and attach context. Returns the code. */
int tcreate(struct ts_csi_driver *d, const char *name, int64_t bytes, bool block, char *id,
	    char *attach);



/*
 * An in-memory backend for suites that must not touch devices: volumes are
 * records in an array, capacity is fixed, attach fails with -ENODEV. probe
 * returns g_mem_probe_rc.
 */
extern const struct ts_csi_backend_ops tmem_backend_ops;
extern int g_mem_probe_rc;
void *tmem_backend_new(uint64_t capacity);
/* The same with set_qos (MODIFY_VOLUME): it records the last limits per volume. */
extern const struct ts_csi_backend_ops tmem_qos_backend_ops;
/* The limits set_qos last gave volume \p id and how many calls it got; -ENOENT. */
int tmem_qos(void *ctx, const char *id, struct ts_csi_qos *out, unsigned *calls);
#endif
