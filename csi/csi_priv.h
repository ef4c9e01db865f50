/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to csi/: the driver object and the services' method tables. The
 * per-call context and the helpers every handler uses are in call.h.
 */
#ifndef TS_CSI_PRIV_H
#define TS_CSI_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "csi.pb-c.h"
#include "csi/admin.h"
#include "csi/call.h"
#include "csi/csi.h"

/* A volume staged on this node (persisted as <state>/node/<id>.json). */
struct node_vol {
	struct node_vol *next;
	char id[TS_CSI_ID_MAX + 1];
	char staging[4097];
	char dev[TS_CSI_DEV_MAX];
	char fs_type[8];
	bool block;
	bool ro;
};

struct ts_csi_driver {
	char *node_id;
	char *state_dir;
	char *node_dir;    /* <state_dir>/node */
	char *path_prefix; /* "" = any absolute path */
	uint32_t max_volumes_per_node;
	uint64_t default_volume_bytes;
	uint64_t max_volume_bytes;
	bool controller, node;
	const struct ts_csi_backend_ops *be;
	void *be_ctx;
	const struct ts_csi_store_ops *st;
	void *st_ctx;
	pthread_mutex_t ctl_lock;  /* controller read-modify-write sequences */
	pthread_mutex_t node_lock; /* the staged list and mount changes */
	struct node_vol *staged;
	const struct ts_admin_ops *admin_ops; /* csi/admin.h; NULL = no admin service */
	void *admin_ctx;
	struct csi_engine *engine; /* csi/engine.c; NULL = no engine service */
	int (*gate)(void *arg);    /* ts_csi_driver_set_gate; NULL = always serve */
	void *gate_arg;
};

/* engine.c: free what ts_csi_driver_set_engine made (NULL is a no-op). */
void csi_engine_free(struct csi_engine *e);

extern const struct csi_method csi_identity_methods[];
extern const size_t csi_identity_method_count;
extern const struct csi_method csi_controller_methods[];
extern const size_t csi_controller_method_count;
extern const struct csi_method csi_node_methods[];
extern const size_t csi_node_method_count;
extern const struct csi_method csi_admin_methods[]; /* admin.c */
extern const size_t csi_admin_method_count;
extern const struct csi_method csi_engine_methods[]; /* engine.c */
extern const size_t csi_engine_method_count;

/* A method table, for csi_server_start. */
struct csi_method_table {
	const struct csi_method *m;
	size_t n;
};

/*
 * server.c: serve the methods of \p tables (and the SnapshotMetadata streams
 * when \p streams) for \p d on \p endpoint: `unix:///abs/path` (a stale
 * socket file is replaced) or any other gRPC listen address (TCP,
 * "127.0.0.1:0" picks a port: *\p port gets it; 0 for unix). Returns as
 * ts_csi_server_start; stop with ts_csi_server_stop.
 */
int csi_server_start(struct ts_csi_driver *d, const char *endpoint, unsigned workers,
		     const struct csi_method_table *tables, size_t ntables, bool streams,
		     struct ts_csi_server **out, int *port);

/*
 * A server-streaming method (one request, a stream of responses): open()
 * checks the decoded request and builds the stream state in the call's
 * arena (0, or -1 with the status set); next() fills the next response
 * (allocations from its own call arena, freed once the message is packed)
 * and returns 1, 0 at the end of the stream, or -1 with the status set.
 */
struct csi_stream_method {
	const char *path;
	const ProtobufCMessageDescriptor *req_desc;
	const ProtobufCMessageDescriptor *resp_desc;
	int (*open)(struct ts_csi_driver *d, struct csi_call *c, const void *req, void **state);
	int (*next)(struct ts_csi_driver *d, struct csi_call *c, void *state, void *resp);
};

extern const struct csi_stream_method csi_snapmeta_methods[];
extern const size_t csi_snapmeta_method_count;

/*
 * The stream cycle the server drives (csi/snapmeta.c): open decodes the
 * request and runs m->open (NULL only on ENOMEM; a failed open still
 * returns a stream whose first next() reports the status); next packs the
 * next response into a ts_malloc'd buffer (1), or ends (0 = OK, -1 = error);
 * csi_stream_status gives the final code and message.
 */
struct csi_stream;
struct csi_stream *csi_stream_open(struct ts_csi_driver *d, const struct csi_stream_method *m,
				   const uint8_t *req, size_t req_len, const atomic_bool *cancelled,
				   uint64_t deadline_ns);
int csi_stream_next(struct csi_stream *st, uint8_t **buf, size_t *len);
int csi_stream_status(const struct csi_stream *st, const char **msg);
void csi_stream_close(struct csi_stream *st);

extern const struct csi_method csi_group_methods[]; /* group.c: GroupController */
extern const size_t csi_group_method_count;
/* The backend and store can take group snapshots (GROUP_CONTROLLER_SERVICE). */
bool csi_groups_supported(const struct ts_csi_driver *d);

/* controller.c: UNIMPLEMENTED (-1) when this instance runs no controller, else 0. */
int csi_need_controller(struct ts_csi_driver *d, struct csi_call *c);
/* controller.c: a Snapshot message (group_id NULL or "" = not in a group). */
Csi__V1__Snapshot *csi_snap_msg(struct csi_call *c, const struct ts_csi_backend_snap *s,
				 const char *group_id);

/* qos.c: the QoS parameter keys and ControllerModifyVolume. */
bool csi_qos_is_key(const char *key);
/* Set the field of \p key in \p q from \p value; -1 with INVALID_ARGUMENT naming \p field. */
int csi_qos_apply(struct csi_call *c, const char *field, const char *key, const char *value,
		  struct ts_csi_qos *q);
/* Every entry of a map must be a QoS key (mutable_parameters). */
int csi_qos_parse_mutable(struct csi_call *c, const char *field, void *const *kv, size_t n,
			  struct ts_csi_qos *q);
/* Cross-field checks (a reservation within the limit); -1 with INVALID_ARGUMENT. */
int csi_qos_check(struct csi_call *c, const struct ts_csi_qos *q);
int csi_modify_volume(struct ts_csi_driver *d, struct csi_call *c, const void *req, void *resp);
/* At start: hand every stored volume's QoS to the backend. 0 or -errno. */
int csi_qos_reapply(struct ts_csi_driver *d);

/* The method entry for \p path, or NULL. */
const struct csi_method *csi_method_find(const char *path);

/* Volume context key carrying the backend's attach context. */
#define CSI_CTX_ATTACH "csi.tessera.io/attach"
#define CSI_CTX_FSTYPE "csi.tessera.io/fsType"
#define CSI_CTX_EC "csi.tessera.io/ec"
/* The access modes the volume was created with ("NAME,NAME"; csi_modes_str). */
#define CSI_CTX_MODES "csi.tessera.io/accessModes"

/* node.c: load / free the staging records. */
int csi_node_load(struct ts_csi_driver *d);
void csi_node_free(struct ts_csi_driver *d);

#endif /* TS_CSI_PRIV_H */
