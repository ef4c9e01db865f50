/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The record encoding every store shares: a volume or group snapshot record
 * as a JSON object (version 1). The file store writes these objects as its
 * files; the Kubernetes store keeps them as the spec of its custom
 * resources. Optional fields ("source", "qos", "access_modes") read as
 * none when absent, so records written before they existed still load.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "csi/store/store_impl.h"
#include "dataplane/common/ts_common.h"

static json_t *qos_json(const struct ts_csi_qos *q)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "iops", (json_int_t)q->iops,
			 "read_iops", (json_int_t)q->read_iops, "write_iops",
			 (json_int_t)q->write_iops, "bps", (json_int_t)q->bps, "read_bps",
			 (json_int_t)q->read_bps, "write_bps", (json_int_t)q->write_bps,
			 "burst_ms", (int)q->burst_ms, "reserve_iops",
			 (json_int_t)q->reserve_iops);
}

static int qos_from_json(json_t *j, struct ts_csi_qos *q)
{
	json_int_t f[7];
	int burst;

	memset(q, 0, sizeof(*q));
	if (!j)
		return 0; /* records from before QoS existed */
	if (json_unpack(j, "{s:I, s:I, s:I, s:I, s:I, s:I, s:i, s:I}", "iops", &f[0], "read_iops",
			&f[1], "write_iops", &f[2], "bps", &f[3], "read_bps", &f[4], "write_bps",
			&f[5], "burst_ms", &burst, "reserve_iops", &f[6]))
		return TS_ERR_CORRUPT;
	for (size_t i = 0; i < TS_ARRAY_SIZE(f); i++)
		if (f[i] < 0)
			return TS_ERR_CORRUPT;
	if (burst < 0)
		return TS_ERR_CORRUPT;
	*q = (struct ts_csi_qos){ (uint64_t)f[0], (uint64_t)f[1], (uint64_t)f[2],
				  (uint64_t)f[3], (uint64_t)f[4], (uint64_t)f[5],
				  (uint32_t)burst,  (uint64_t)f[6] };
	return 0;
}

static const char *const g_mode_names[TS_CSI_MODE_MAX + 1] = {
	[TS_CSI_MODE_SINGLE_NODE_WRITER] = "SINGLE_NODE_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_READER_ONLY] = "SINGLE_NODE_READER_ONLY",
	[TS_CSI_MODE_MULTI_NODE_READER_ONLY] = "MULTI_NODE_READER_ONLY",
	[TS_CSI_MODE_MULTI_NODE_SINGLE_WRITER] = "MULTI_NODE_SINGLE_WRITER",
	[TS_CSI_MODE_MULTI_NODE_MULTI_WRITER] = "MULTI_NODE_MULTI_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_SINGLE_WRITER] = "SINGLE_NODE_SINGLE_WRITER",
	[TS_CSI_MODE_SINGLE_NODE_MULTI_WRITER] = "SINGLE_NODE_MULTI_WRITER",
};

const char *ts_csi_mode_name(unsigned mode)
{
	return mode <= TS_CSI_MODE_MAX ? g_mode_names[mode] : NULL;
}

int ts_csi_mode_parse(const char *name)
{
	for (unsigned m = 1; m <= TS_CSI_MODE_MAX; m++)
		if (!strcmp(g_mode_names[m], name))
			return (int)m;
	return -EINVAL;
}

/* The access-mode bit set as an array of mode names, in mode order. */
static json_t *modes_json(uint32_t modes)
{
	json_t *a = json_array();

	for (unsigned m = 1; a && m <= TS_CSI_MODE_MAX; m++)
		if ((modes & (1u << m)) && json_array_append_new(a, json_string(g_mode_names[m]))) {
			json_decref(a);
			a = NULL;
		}
	return a;
}

static int modes_from_json(json_t *a, uint32_t *modes)
{
	json_t *e;
	size_t i;

	*modes = 0;
	if (!a)
		return 0; /* records from before access modes were recorded */
	if (!json_is_array(a))
		return TS_ERR_CORRUPT;
	json_array_foreach(a, i, e) {
		int m = json_is_string(e) ? ts_csi_mode_parse(json_string_value(e)) : -EINVAL;

		if (m < 0)
			return TS_ERR_CORRUPT;
		*modes |= 1u << m;
	}
	return 0;
}

json_t *ts_csi_vol_json(const struct ts_csi_volume *v)
{
	return json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:b, s:s, s:o, s:o}",
			      "version", 1, "id", v->id, "name", v->name, "attach", v->attach,
			      "fs_type", v->fs_type, "capacity_bytes", (json_int_t)v->capacity_bytes,
			      "ec_k", (int)v->ec_k, "ec_m", (int)v->ec_m, "block", v->block,
			      "source", v->source, "qos", qos_json(&v->qos), "access_modes",
			      modes_json(v->access_modes));
}

int ts_csi_vol_parse(json_t *j, struct ts_csi_volume *v)
{
	const char *id, *name, *attach, *fs, *src = "";
	json_t *qos = NULL, *modes = NULL;
	json_int_t cap;
	int ver, k, m, blk;

	/* "source", "qos" and "access_modes" are optional: older records lack them. */
	if (json_unpack(j, "{s:i, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:b, s?s, s?o, s?o}",
			"version", &ver, "id", &id, "name", &name, "attach", &attach, "fs_type",
			&fs, "capacity_bytes", &cap, "ec_k", &k, "ec_m", &m, "block", &blk,
			"source", &src, "qos", &qos, "access_modes", &modes))
		return TS_ERR_CORRUPT;
	if (ver != 1)
		return TS_ERR_VERSION;
	if (strlen(id) > TS_CSI_ID_MAX || strlen(name) > TS_CSI_NAME_MAX ||
	    strlen(attach) > TS_CSI_ATTACH_MAX || strlen(fs) >= sizeof(v->fs_type) || cap < 0 ||
	    k < 0 || m < 0 || strlen(src) >= sizeof(v->source))
		return TS_ERR_CORRUPT;
	memset(v, 0, sizeof(*v));
	if (qos_from_json(qos, &v->qos) || modes_from_json(modes, &v->access_modes))
		return TS_ERR_CORRUPT;
	snprintf(v->id, sizeof(v->id), "%s", id);
	snprintf(v->name, sizeof(v->name), "%s", name);
	snprintf(v->attach, sizeof(v->attach), "%s", attach);
	snprintf(v->fs_type, sizeof(v->fs_type), "%s", fs);
	v->capacity_bytes = (uint64_t)cap;
	v->ec_k = (uint32_t)k;
	v->ec_m = (uint32_t)m;
	v->block = blk;
	snprintf(v->source, sizeof(v->source), "%s", src);
	return 0;
}


json_t *ts_csi_group_json(const struct ts_csi_group *g)
{
	json_t *mem = json_array();

	for (uint32_t i = 0; mem && i < g->n; i++)
		if (json_array_append_new(mem, json_pack("{s:s, s:s}", "volume", g->vol[i],
							 "snapshot", g->snap[i]))) {
			json_decref(mem);
			mem = NULL;
		}
	return mem ? json_pack("{s:i, s:s, s:s, s:I, s:o}", "version", 1, "id", g->id, "name",
			       g->name, "ctime_ns", (json_int_t)g->ctime_ns, "members", mem)
		   : NULL;
}

int ts_csi_group_parse(json_t *j, struct ts_csi_group *g)
{
	const char *id, *name;
	json_int_t ctime;
	json_t *mem, *e;
	size_t i;
	int ver;

	if (json_unpack(j, "{s:i, s:s, s:s, s:I, s:o}", "version", &ver, "id", &id, "name", &name,
			"ctime_ns", &ctime, "members", &mem) ||
	    !json_is_array(mem))
		return TS_ERR_CORRUPT;
	if (ver != 1)
		return TS_ERR_VERSION;
	if (strlen(id) > TS_CSI_ID_MAX || strlen(name) > TS_CSI_NAME_MAX || ctime < 0 ||
	    json_array_size(mem) > TS_CSI_GROUP_MAX)
		return TS_ERR_CORRUPT;
	memset(g, 0, sizeof(*g));
	snprintf(g->id, sizeof(g->id), "%s", id);
	snprintf(g->name, sizeof(g->name), "%s", name);
	g->ctime_ns = (uint64_t)ctime;
	json_array_foreach(mem, i, e) {
		const char *vol, *snap;

		if (json_unpack(e, "{s:s, s:s}", "volume", &vol, "snapshot", &snap) ||
		    strlen(vol) > TS_CSI_ID_MAX || strlen(snap) > TS_CSI_ID_MAX)
			return TS_ERR_CORRUPT;
		snprintf(g->vol[i], sizeof(g->vol[i]), "%s", vol);
		snprintf(g->snap[i], sizeof(g->snap[i]), "%s", snap);
	}
	g->n = (uint32_t)json_array_size(mem);
	return 0;
}

