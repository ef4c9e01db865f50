/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The request cycle every CSI method goes through, and the helpers its
 * handlers share. Nothing here knows a service: the services (identity.c,
 * controller.c, node.c, snapmeta.c, admin.c) and the driver (driver.c) call
 * into this file, never the other way round (call.h).
 *
 * A request is decoded with protobuf-c (allocations through ts_malloc so the
 * failure injection of ts_common reaches it), handed to the service's
 * handler with a zeroed response message, and the response is packed into
 * one buffer. Handlers build responses out of a per-call arena (csi_alloc),
 * so nothing they return needs a matching free and an error path cannot
 * leak. A handler returns 0 or -1 after csi_fail() recorded a gRPC code and
 * a message.
 *
 * This file is the one place where Tessera errors (0, -errno, TS_ERR_*)
 * become gRPC status codes (csi_code_from_err), and where request fields are
 * validated against the rules all three services share (ids, names, paths,
 * volume capabilities), so every handler answers a bad field with the same
 * code and the same kind of message.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#include "csi/call.h"
#include "csi/csi_priv.h"
#include "dataplane/common/ts_common.h"

/* ---- arena ---- */

struct csi_arena_blk {
	struct csi_arena_blk *next;
	max_align_t data[];
};

void *csi_alloc(struct csi_call *c, size_t size)
{
	struct csi_arena_blk *b = ts_calloc(1, sizeof(*b) + size);

	if (!b)
		return NULL;
	b->next = c->arena;
	c->arena = b;
	return b->data;
}

char *csi_strdup(struct csi_call *c, const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = csi_alloc(c, n);

	if (p)
		memcpy(p, s, n);
	return p;
}

void csi_call_init(struct csi_call *c)
{
	memset(c, 0, sizeof(*c));
}

void csi_call_fini(struct csi_call *c)
{
	while (c->arena) {
		struct csi_arena_blk *n = c->arena->next;

		ts_free(c->arena);
		c->arena = n;
	}
}

const char *csi_kv_get(void *const *entries, size_t n, const char *key)
{
	for (size_t i = 0; i < n; i++) {
		const struct csi_kv *kv = entries[i];

		if (kv->key && !strcmp(kv->key, key))
			return kv->value ? kv->value : "";
	}
	return NULL;
}

void *csi_kv_new(struct csi_call *c, const ProtobufCMessageDescriptor *desc, const char *key,
		 const char *value)
{
	struct csi_kv *kv = csi_alloc(c, desc->sizeof_message);

	if (!kv)
		return NULL;
	desc->message_init(&kv->base);
	kv->key = csi_strdup(c, key);
	kv->value = csi_strdup(c, value);
	return kv->key && kv->value ? kv : NULL;
}

/* ---- status ---- */

int csi_fail(struct csi_call *c, int code, const char *fmt, ...)
{
	va_list ap;

	c->code = code;
	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return -1;
}

int csi_code_from_err(int err)
{
	switch (err) {
	case 0:
		return CSI_OK;
	case -ENOENT:
	case -ENXIO:
		return CSI_NOT_FOUND;
	case -EEXIST:
		return CSI_ALREADY_EXISTS;
	case -EINVAL:
	case -ENAMETOOLONG:
		return CSI_INVALID_ARGUMENT;
	case -ERANGE:
	case -EOVERFLOW:
	case -EFBIG:
		return CSI_OUT_OF_RANGE;
	case -ENOSPC:
	case -EDQUOT:
	case -ENOMEM:
	case -EMFILE:
	case -ENFILE:
	case TS_ERR_NO_SPACE:
	case TS_ERR_TOO_SMALL:
		return CSI_RESOURCE_EXHAUSTED;
	case -EAGAIN:
	case -ECONNREFUSED:
	case -EHOSTUNREACH:
	case -ENODEV:
	case TS_ERR_DEGRADED:
	case TS_ERR_MEMBER_FAILED:
	case TS_ERR_FENCED:
		return CSI_UNAVAILABLE;
	case -EBUSY:
	case -ENOTEMPTY:
	case -EROFS:
	case -EXDEV: /* e.g. a group snapshot of volumes on different engines */
		return CSI_FAILED_PRECONDITION;
	case -ETIMEDOUT:
		return CSI_DEADLINE_EXCEEDED;
	case -ECANCELED:
		return CSI_CANCELLED;
	case -EALREADY:
		return CSI_ABORTED;
	case -EOPNOTSUPP:
	case -ENOSYS:
		return CSI_UNIMPLEMENTED;
	case -EPERM:
	case -EACCES:
		return CSI_PERMISSION_DENIED;
	default:
		return CSI_INTERNAL;
	}
}

int csi_fail_err(struct csi_call *c, int err, const char *what)
{
	return csi_fail(c, csi_code_from_err(err), "%s: %s", what, ts_strerror(err));
}

int csi_check_live(struct csi_call *c)
{
	if (c->cancelled && atomic_load(c->cancelled))
		return csi_fail(c, CSI_CANCELLED, "call cancelled by the client");
	if (c->deadline_ns && ts_now_ns() >= c->deadline_ns)
		return csi_fail(c, CSI_DEADLINE_EXCEEDED, "deadline exceeded");
	return 0;
}

/* ---- validation ---- */

static bool has_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

int csi_check_id(struct csi_call *c, const char *field, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is required", field);
	if (n > TS_CSI_ID_MAX)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is %zu bytes, at most %d allowed", field,
				n, TS_CSI_ID_MAX);
	if (s[0] == '.')
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s must not start with '.'", field);
	for (const char *p = s; *p; p++) {
		char ch = *p;

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		      ch == '-' || ch == '_' || ch == '.'))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"%s contains '%s' (only [A-Za-z0-9._-] allowed)", field,
					ch == '/' ? "/" : "a disallowed character");
	}
	return 0;
}

int csi_check_name(struct csi_call *c, const char *field, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is required", field);
	if (n > TS_CSI_NAME_MAX)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is %zu bytes, at most %d allowed", field,
				n, TS_CSI_NAME_MAX);
	if (has_ctl(s))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s contains control characters", field);
	if (strchr(s, '/') || strchr(s, '\\') || !strcmp(s, ".") || !strcmp(s, "..") ||
	    strstr(s, ".."))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s must not contain '/', '\\' or '..'",
				field);
	return 0;
}

int csi_check_path(struct ts_csi_driver *d, struct csi_call *c, const char *field, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (!n)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is required", field);
	if (n > 4000)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is too long (%zu bytes)", field, n);
	if (s[0] != '/')
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s must be an absolute path", field);
	if (has_ctl(s))
		return csi_fail(c, CSI_INVALID_ARGUMENT, "%s contains control characters", field);
	for (const char *p = s; *p;) {
		const char *e = strchrnul(p + 1, '/');
		size_t len = (size_t)(e - p - 1);

		if (len == 2 && p[1] == '.' && p[2] == '.')
			return csi_fail(c, CSI_INVALID_ARGUMENT, "%s must not contain '..'", field);
		p = e;
	}
	if (d->path_prefix[0]) {
		size_t pl = strlen(d->path_prefix);

		if (strncmp(s, d->path_prefix, pl) || (s[pl] != '/' && s[pl] != '\0'))
			return csi_fail(c, CSI_INVALID_ARGUMENT, "%s is outside %s", field,
					d->path_prefix);
	}
	return 0;
}

int csi_check_cap(struct csi_call *c, const Csi__V1__VolumeCapability *cap)
{
	if (!cap)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capability is required");
	if (!cap->access_mode)
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capability.access_mode is required");
	switch (cap->access_mode->mode) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_READER_ONLY:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_READER_ONLY:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_SINGLE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_SINGLE_WRITER:
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__SINGLE_NODE_MULTI_WRITER:
		break;
	default:
		return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capability.access_mode %d is unknown",
				(int)cap->access_mode->mode);
	}
	switch (cap->access_type_case) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_BLOCK:
		if (!cap->block)
			return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capability.block is empty");
		return 0;
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT: {
		const char *fs = cap->mount ? cap->mount->fs_type : NULL;
		unsigned long fl;

		if (!cap->mount)
			return csi_fail(c, CSI_INVALID_ARGUMENT, "volume_capability.mount is empty");
		if (fs && fs[0] && strcmp(fs, "ext4") && strcmp(fs, "xfs"))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"volume_capability.mount.fs_type must be ext4 or xfs");
		return csi_mount_flags(c, cap, &fl);
	}
	default:
		return csi_fail(c, CSI_INVALID_ARGUMENT,
				"volume_capability.access_type (block or mount) is required");
	}
}

int csi_mount_flags(struct csi_call *c, const Csi__V1__VolumeCapability *cap,
		    unsigned long *flags)
{
	static const struct {
		const char *name;
		unsigned long flag;
	} known[] = {
		{ "ro", MS_RDONLY },	 { "rw", 0 },		 { "noatime", MS_NOATIME },
		{ "nodiratime", MS_NODIRATIME }, { "relatime", MS_RELATIME }, { "nodev", MS_NODEV },
		{ "nosuid", MS_NOSUID }, { "noexec", MS_NOEXEC }, { "sync", MS_SYNCHRONOUS },
		{ "defaults", 0 },
	};

	*flags = 0;
	/* mount and block share a oneof union: look at mount only when it is the case. */
	if (cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT || !cap->mount)
		return 0;
	for (size_t i = 0; i < cap->mount->n_mount_flags; i++) {
		const char *f = cap->mount->mount_flags[i];
		size_t k;

		for (k = 0; k < TS_ARRAY_SIZE(known); k++)
			if (f && !strcmp(f, known[k].name))
				break;
		if (k == TS_ARRAY_SIZE(known))
			return csi_fail(c, CSI_INVALID_ARGUMENT,
					"volume_capability.mount.mount_flags: unsupported flag '%.64s'",
					f ? f : "");
		*flags |= known[k].flag;
	}
	return 0;
}

/* ---- access modes ---- */

#define SAME_MODE(x) \
	((int)TS_CSI_MODE_##x == (int)CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__##x)
_Static_assert(SAME_MODE(SINGLE_NODE_WRITER) && SAME_MODE(SINGLE_NODE_READER_ONLY) &&
		       SAME_MODE(MULTI_NODE_READER_ONLY) && SAME_MODE(MULTI_NODE_SINGLE_WRITER) &&
		       SAME_MODE(MULTI_NODE_MULTI_WRITER) && SAME_MODE(SINGLE_NODE_SINGLE_WRITER) &&
		       SAME_MODE(SINGLE_NODE_MULTI_WRITER),
	       "the store's access modes are numbered as CSI's");
#undef SAME_MODE

/*
 * How far a mode reaches: nodes 1 (one) or 2 (several); writers 0 (none),
 * 1 (one publish may write) or 2 (several may). Unknown modes reach nothing.
 */
static void mode_reach(unsigned mode, unsigned *nodes, unsigned *writers)
{
	static const uint8_t reach[TS_CSI_MODE_MAX + 1][2] = {
		[TS_CSI_MODE_SINGLE_NODE_WRITER] = { 1, 1 },
		[TS_CSI_MODE_SINGLE_NODE_READER_ONLY] = { 1, 0 },
		[TS_CSI_MODE_MULTI_NODE_READER_ONLY] = { 2, 0 },
		[TS_CSI_MODE_MULTI_NODE_SINGLE_WRITER] = { 2, 1 },
		[TS_CSI_MODE_MULTI_NODE_MULTI_WRITER] = { 2, 2 },
		[TS_CSI_MODE_SINGLE_NODE_SINGLE_WRITER] = { 1, 1 },
		[TS_CSI_MODE_SINGLE_NODE_MULTI_WRITER] = { 1, 2 },
	};

	*nodes = mode <= TS_CSI_MODE_MAX ? reach[mode][0] : 0;
	*writers = mode <= TS_CSI_MODE_MAX ? reach[mode][1] : 0;
}

const char *csi_mode_refusal(const struct ts_csi_backend_ops *be,
			     const Csi__V1__VolumeCapability *cap)
{
	if (cap->access_type_case != CSI__V1__VOLUME_CAPABILITY__ACCESS_TYPE_MOUNT) {
		unsigned nodes, writers;

		mode_reach((unsigned)cap->access_mode->mode, &nodes, &writers);
		if (nodes > 1 && writers && !be->multi_node_writers)
			return "access modes with writers on several nodes need a backend whose "
			       "volume engine serializes writes from every node, and this "
			       "driver's backend does not (the data-plane backend of tessera "
			       "dev and tessera controller does)";
		return NULL;
	}
	switch (cap->access_mode->mode) {
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_MULTI_WRITER:
		return "access mode MULTI_NODE_MULTI_WRITER with a filesystem volume needs a "
		       "cluster-aware filesystem, which Tessera does not provide; use volumeMode: "
		       "Block";
	case CSI__V1__VOLUME_CAPABILITY__ACCESS_MODE__MODE__MULTI_NODE_SINGLE_WRITER:
		return "access mode MULTI_NODE_SINGLE_WRITER with a filesystem volume needs a "
		       "cluster-aware filesystem (readers on other nodes would see the writer's "
		       "filesystem change under them), which Tessera does not provide; use "
		       "volumeMode: Block";
	default:
		return NULL;
	}
}

bool csi_mode_read_only(const Csi__V1__VolumeCapability *cap)
{
	unsigned nodes, writers;

	mode_reach((unsigned)cap->access_mode->mode, &nodes, &writers);
	return nodes && !writers;
}

bool csi_mode_multi_node(const Csi__V1__VolumeCapability *cap)
{
	unsigned nodes, writers;

	mode_reach((unsigned)cap->access_mode->mode, &nodes, &writers);
	return nodes > 1;
}

bool csi_modes_cover(uint32_t modes, unsigned mode)
{
	unsigned nodes, writers;

	if (!modes)
		modes = ~(1u << TS_CSI_MODE_MULTI_NODE_SINGLE_WRITER |
			  1u << TS_CSI_MODE_MULTI_NODE_MULTI_WRITER);
	mode_reach(mode, &nodes, &writers);
	if (!nodes)
		return false;
	for (unsigned m = 1; m <= TS_CSI_MODE_MAX; m++) {
		unsigned n, w;

		mode_reach(m, &n, &w);
		if ((modes & (1u << m)) && nodes <= n && writers <= w)
			return true;
	}
	return false;
}

void csi_modes_str(uint32_t modes, char *buf, size_t len)
{
	size_t used = 0;

	if (len)
		buf[0] = '\0';
	for (unsigned m = 1; m <= TS_CSI_MODE_MAX && used < len; m++) {
		int n;

		if (!(modes & (1u << m)))
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? "," : "", ts_csi_mode_name(m));
		used += n > 0 ? (size_t)n : 0;
	}
}

int csi_modes_parse(const char *s, uint32_t *modes)
{
	char name[40];

	*modes = 0;
	while (*s) {
		size_t n = strcspn(s, ",");
		int m;

		if (n >= sizeof(name))
			return -EINVAL;
		memcpy(name, s, n);
		name[n] = '\0';
		m = ts_csi_mode_parse(name);
		if (m < 0)
			return -EINVAL;
		*modes |= 1u << m;
		s += n + (s[n] == ',');
	}
	return *modes ? 0 : -EINVAL;
}

/* ---- dispatch ---- */

static void *pb_alloc(void *data, size_t size)
{
	(void)data;
	return ts_malloc(size ? size : 1);
}

static void pb_free(void *data, void *p)
{
	(void)data;
	ts_free(p);
}

static ProtobufCAllocator g_pb_alloc = { .alloc = pb_alloc, .free = pb_free };

const struct csi_method *csi_method_in(const struct csi_method *tab, size_t n,
				      const char *path)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(tab[i].path, path))
			return &tab[i];
	return NULL;
}

int csi_dispatch(struct ts_csi_driver *d, const struct csi_method *m, struct csi_call *c,
		 const uint8_t *req, size_t req_len, uint8_t **resp, size_t *resp_len)
{
	ProtobufCMessage *in = NULL, *out = NULL;
	size_t n;
	int rc = -1;

	*resp = NULL;
	*resp_len = 0;
	if (d->gate && strncmp(m->path, "/csi.v1.Identity/", 17) && d->gate(d->gate_arg)) {
		csi_fail(c, CSI_UNAVAILABLE,
			 "this controller is not the active one (it does not hold its Lease)");
		return -1;
	}
	if (m->raw) {
		if (csi_check_live(c) || m->raw(d, c, req, req_len, resp, resp_len))
			return -1;
		c->code = CSI_OK;
		return 0;
	}
	in = protobuf_c_message_unpack(m->req_desc, &g_pb_alloc, req_len, req);
	if (!in) {
		csi_fail(c, CSI_INVALID_ARGUMENT, "request is not a valid %s message",
			 m->req_desc->name);
		goto out;
	}
	out = csi_alloc(c, m->resp_desc->sizeof_message);
	if (!out) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	m->resp_desc->message_init(out);
	if (csi_check_live(c) || m->fn(d, c, in, out))
		goto out;
	n = protobuf_c_message_get_packed_size(out);
	*resp = ts_malloc(n ? n : 1);
	if (!*resp) {
		csi_fail(c, CSI_RESOURCE_EXHAUSTED, "out of memory");
		goto out;
	}
	*resp_len = protobuf_c_message_pack(out, *resp);
	c->code = CSI_OK;
	rc = 0;
out:
	if (in)
		protobuf_c_message_free_unpacked(in, &g_pb_alloc);
	return rc;
}
