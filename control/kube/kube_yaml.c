/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The YAML a kubeconfig is written in, read into jansson values; and base64.
 *
 * A kubeconfig is YAML, and the project's JSON library does not read YAML, so
 * this is the subset kubeconfigs use in practice: what `kubectl config`
 * writes (block mappings and sequences, "- key: value" items, plain scalars)
 * and what people and scripts write by hand (flow collections such as
 * `clusters: [{name: e2e, cluster: {server: "https://..."}}]`, quoted
 * scalars, comments, one leading "---"). Anything beyond it (anchors and
 * aliases, tags, block scalars `|` `>`, multi-line plain scalars, several
 * documents, tabs in indentation) is refused with -EINVAL rather than read
 * wrongly.
 *
 * Design: the text is cut into lines (indent, content without the comment);
 * a recursive descent reads a block node at the current line: a sequence if
 * it starts with "- ", a mapping if it has a "key:" outside quotes, else an
 * inline value (a scalar or a flow collection, which may continue on more
 * indented lines). A sequence item's inline content ("- name: x") is read by
 * turning the rest of the line into a line of its own, indented where its
 * text starts, which is exactly YAML's rule for compact nested collections.
 * Plain scalars become true/false, null, integers, or strings; quoted ones
 * always strings. Depth is bounded (64) so hostile input cannot exhaust the
 * stack.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/kube/kube_internal.h"
#include "dataplane/common/ts_common.h"

#define YAML_DEPTH_MAX 64

struct yline {
	const char *p;  /* content (after the indentation) */
	size_t len;     /* without trailing blanks and comment */
	int indent;
};

struct yparser {
	struct yline *lines;
	size_t n, i;
	int depth;
};

/* ---- lines ---- */

/* Length of a line's content without its comment and trailing blanks; -1: unterminated quote. */
static long content_len(const char *p, size_t len)
{
	char q = 0;
	size_t i, end;

	for (i = 0; i < len; i++) {
		char ch = p[i];

		if (q) {
			if (q == '"' && ch == '\\')
				i++;
			else if (ch == q)
				q = 0;
			continue;
		}
		if ((ch == '"' || ch == '\'') && (i == 0 || strchr(" \t[{,:-", p[i - 1])))
			q = ch;
		else if (ch == '#' && (i == 0 || p[i - 1] == ' ' || p[i - 1] == '\t'))
			break;
	}
	end = i;
	while (end > 0 && (p[end - 1] == ' ' || p[end - 1] == '\t' || p[end - 1] == '\r'))
		end--;
	return (long)end;
}

static int split_lines(const char *text, size_t len, struct yparser *y)
{
	size_t cap = 0, pos = 0;
	bool first = true;

	while (pos < len) {
		const char *s = text + pos;
		const char *nl = memchr(s, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - s) : len - pos;
		size_t ind = 0;
		long cl;

		pos += ll + (nl ? 1 : 0);
		for (size_t k = 0; k < ll; k++)
			if (s[k] == '\0')
				return -EINVAL;
		while (ind < ll && s[ind] == ' ')
			ind++;
		if (ind < ll && s[ind] == '\t')
			return -EINVAL; /* tabs are not indentation in YAML */
		cl = content_len(s + ind, ll - ind);
		if (cl <= 0)
			continue;
		if (ind == 0 && cl >= 3 && !strncmp(s, "---", 3) && (cl == 3 || s[3] == ' ')) {
			if (!first || cl != 3)
				return -EINVAL; /* a second document, or content after the marker */
			first = false;
			continue;
		}
		if (ind == 0 && cl == 3 && !strncmp(s, "...", 3))
			return -EINVAL;
		if (s[ind] == '%')
			return -EINVAL; /* directives */
		first = false;
		if (y->n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct yline *nl2 = ts_realloc(y->lines, nc * sizeof(*nl2));

			if (!nl2)
				return -ENOMEM;
			y->lines = nl2;
			cap = nc;
		}
		if (ind > 10000)
			return -EINVAL;
		y->lines[y->n++] = (struct yline){ s + ind, (size_t)cl, (int)ind };
	}
	return 0;
}

/* ---- scalars ---- */

static int put_utf8(char *out, size_t *o, unsigned cp)
{
	if (cp < 0x80) {
		out[(*o)++] = (char)cp;
	} else if (cp < 0x800) {
		out[(*o)++] = (char)(0xc0 | (cp >> 6));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		if (cp >= 0xd800 && cp < 0xe000)
			return -EINVAL;
		out[(*o)++] = (char)(0xe0 | (cp >> 12));
		out[(*o)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[(*o)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		return -EINVAL;
	}
	return 0;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = (char)tolower((unsigned char)ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/*
 * A quoted scalar starting at s[0] (' or "), within len bytes: its string in
 * *out, and *used the bytes it took (quotes included).
 */
static int quoted(const char *s, size_t len, json_t **out, size_t *used)
{
	char q = s[0], *buf;
	size_t i, o = 0;
	int rc = -EINVAL;

	buf = ts_malloc(len * 3 + 1);
	if (!buf)
		return -ENOMEM;
	for (i = 1; i < len; i++) {
		char ch = s[i];

		if (ch == q) {
			if (q == '\'' && i + 1 < len && s[i + 1] == '\'') {
				buf[o++] = '\'';
				i++;
				continue;
			}
			break;
		}
		if (q == '"' && ch == '\\') {
			if (++i >= len)
				goto out;
			switch (s[i]) {
			case '"': buf[o++] = '"'; break;
			case '\\': buf[o++] = '\\'; break;
			case '/': buf[o++] = '/'; break;
			case 'n': buf[o++] = '\n'; break;
			case 't': buf[o++] = '\t'; break;
			case 'r': buf[o++] = '\r'; break;
			case ' ': buf[o++] = ' '; break;
			case 'x':
			case 'u': {
				unsigned n = s[i] == 'x' ? 2 : 4, cp = 0;

				if (i + n >= len)
					goto out;
				for (unsigned k = 1; k <= n; k++) {
					int h = hexval(s[i + k]);

					if (h < 0)
						goto out;
					cp = cp * 16 + (unsigned)h;
				}
				if (cp == 0 || put_utf8(buf, &o, cp))
					goto out;
				i += n;
				break;
			}
			default:
				goto out;
			}
			continue;
		}
		buf[o++] = ch;
	}
	if (i >= len)
		goto out; /* unterminated */
	buf[o] = '\0';
	*out = json_stringn(buf, o);
	*used = i + 1;
	rc = *out ? 0 : -EINVAL; /* jansson refuses invalid UTF-8 */
out:
	ts_free(buf);
	return rc;
}

static json_t *plain(const char *s, size_t len)
{
	static const char *const yes[] = { "true", "True", "TRUE" };
	static const char *const no[] = { "false", "False", "FALSE" };
	static const char *const nul[] = { "null", "Null", "NULL", "~" };
	char num[32];

	for (unsigned i = 0; i < 3; i++) {
		if (strlen(yes[i]) == len && !memcmp(s, yes[i], len))
			return json_true();
		if (strlen(no[i]) == len && !memcmp(s, no[i], len))
			return json_false();
	}
	if (len == 0)
		return json_null();
	for (unsigned i = 0; i < 4; i++)
		if (strlen(nul[i]) == len && !memcmp(s, nul[i], len))
			return json_null();
	if (len < sizeof(num)) {
		size_t k = s[0] == '-' ? 1 : 0;
		bool digits = k < len;

		for (size_t j = k; j < len; j++)
			digits = digits && isdigit((unsigned char)s[j]);
		if (digits) {
			char *end;
			long long v;

			memcpy(num, s, len);
			num[len] = '\0';
			errno = 0;
			v = strtoll(num, &end, 10);
			if (!errno && *end == '\0')
				return json_integer(v);
		}
	}
	return json_stringn(s, len);
}

/* A plain scalar may not start with an indicator we do not implement. */
static bool bad_start(char ch)
{
	return strchr("&*!|>%@`", ch) != NULL;
}

/* ---- flow collections ---- */

struct flow {
	const char *s;
	size_t len, i;
	int depth;
};

static void fskip(struct flow *f)
{
	while (f->i < f->len && (f->s[f->i] == ' ' || f->s[f->i] == '\t'))
		f->i++;
}

static int flow_value(struct flow *f, bool key, json_t **out);

static int flow_plain(struct flow *f, bool key, json_t **out)
{
	size_t st = f->i, end;

	if (f->i < f->len && bad_start(f->s[f->i]))
		return -EINVAL;
	while (f->i < f->len) {
		char ch = f->s[f->i];

		if (ch == ',' || ch == ']' || ch == '}' || ch == '[' || ch == '{')
			break;
		if (ch == ':' && (f->i + 1 == f->len || strchr(" ,]}", f->s[f->i + 1])))
			break;
		f->i++;
	}
	end = f->i;
	while (end > st && f->s[end - 1] == ' ')
		end--;
	*out = key ? json_stringn(f->s + st, end - st) : plain(f->s + st, end - st);
	return *out ? 0 : -EINVAL;
}

static int flow_collection(struct flow *f, json_t **out)
{
	bool map = f->s[f->i] == '{';
	char close = map ? '}' : ']';
	json_t *c = map ? json_object() : json_array();
	int rc = -EINVAL;

	if (!c)
		return -ENOMEM;
	if (++f->depth > YAML_DEPTH_MAX)
		goto fail;
	f->i++;
	fskip(f);
	if (f->i < f->len && f->s[f->i] == close) {
		f->i++;
		f->depth--;
		*out = c;
		return 0;
	}
	for (;;) {
		json_t *k = NULL, *v = NULL;

		fskip(f);
		if (map) {
			rc = flow_value(f, true, &k);
			if (rc)
				goto fail;
			fskip(f);
			if (!json_is_string(k) || f->i >= f->len || f->s[f->i] != ':' ||
			    json_object_get(c, json_string_value(k))) {
				json_decref(k);
				rc = -EINVAL;
				goto fail;
			}
			f->i++;
			fskip(f);
			if (f->i < f->len && (f->s[f->i] == ',' || f->s[f->i] == '}'))
				v = json_null();
			else
				rc = flow_value(f, false, &v);
			if (rc || !v || json_object_set_new(c, json_string_value(k), v)) {
				json_decref(k);
				rc = rc ? rc : -ENOMEM;
				goto fail;
			}
			json_decref(k);
		} else {
			rc = flow_value(f, false, &v);
			if (rc)
				goto fail;
			if (json_array_append_new(c, v)) {
				rc = -ENOMEM;
				goto fail;
			}
		}
		fskip(f);
		rc = -EINVAL;
		if (f->i >= f->len)
			goto fail;
		if (f->s[f->i] == close) {
			f->i++;
			break;
		}
		if (f->s[f->i] != ',')
			goto fail;
		f->i++;
		fskip(f);
		if (f->i < f->len && f->s[f->i] == close) { /* trailing comma */
			f->i++;
			break;
		}
	}
	f->depth--;
	*out = c;
	return 0;
fail:
	json_decref(c);
	return rc ? rc : -EINVAL;
}

static int flow_value(struct flow *f, bool key, json_t **out)
{
	fskip(f);
	if (f->i >= f->len)
		return -EINVAL;
	if (f->s[f->i] == '{' || f->s[f->i] == '[')
		return key ? -EINVAL : flow_collection(f, out);
	if (f->s[f->i] == '"' || f->s[f->i] == '\'') {
		size_t used = 0;
		int rc = quoted(f->s + f->i, f->len - f->i, out, &used);

		f->i += used;
		return rc;
	}
	return flow_plain(f, key, out);
}

/* ---- block structure ---- */

static int block(struct yparser *y, json_t **out);

static bool is_item(const struct yline *l)
{
	return l->p[0] == '-' && (l->len == 1 || l->p[1] == ' ');
}

/*
 * Offset of the ':' ending a mapping key on the line, or -1. The key is a
 * quoted scalar or plain text; a line starting a flow collection has none.
 */
static long key_colon(const struct yline *l)
{
	size_t i = 0;

	if (l->p[0] == '[' || l->p[0] == '{')
		return -1;
	if (l->p[0] == '"' || l->p[0] == '\'') {
		json_t *k = NULL;
		size_t used = 0;

		if (quoted(l->p, l->len, &k, &used))
			return -1;
		json_decref(k);
		i = used;
		while (i < l->len && l->p[i] == ' ')
			i++;
		return i < l->len && l->p[i] == ':' && (i + 1 == l->len || l->p[i + 1] == ' ')
			       ? (long)i
			       : -1;
	}
	for (; i < l->len; i++)
		if (l->p[i] == ':' && (i + 1 == l->len || l->p[i + 1] == ' '))
			return (long)i;
	return -1;
}

/* An inline value: rest of line \p l from \p off; flow collections may run on. */
static int inline_value(struct yparser *y, const struct yline *l, size_t off, json_t **out)
{
	const char *s = l->p + off;
	size_t len = l->len - off;
	int rc;

	if (bad_start(s[0]))
		return -EINVAL;
	if (s[0] == '[' || s[0] == '{') {
		/* join this line and the more indented ones after it until the collection closes */
		size_t cap = len + 1, total = len;
		char *buf = ts_malloc(cap);
		struct flow f;

		if (!buf)
			return -ENOMEM;
		memcpy(buf, s, len);
		for (;;) {
			f = (struct flow){ buf, total, 0, y->depth };
			rc = flow_collection(&f, out);
			if (rc == 0 || y->i + 1 >= y->n || y->lines[y->i + 1].indent <= l->indent)
				break;
			const struct yline *nx = &y->lines[++y->i];
			char *nb = ts_realloc(buf, total + nx->len + 2);

			if (!nb) {
				ts_free(buf);
				return -ENOMEM;
			}
			buf = nb;
			buf[total++] = ' ';
			memcpy(buf + total, nx->p, nx->len);
			total += nx->len;
		}
		if (rc == 0) {
			fskip(&f);
			if (f.i != f.len) {
				json_decref(*out);
				rc = -EINVAL;
			}
		}
		ts_free(buf);
		y->i++;
		return rc;
	}
	if (s[0] == '"' || s[0] == '\'') {
		size_t used = 0;

		rc = quoted(s, len, out, &used);
		if (rc == 0 && used != len) {
			json_decref(*out);
			rc = -EINVAL;
		}
	} else {
		*out = plain(s, len);
		rc = *out ? 0 : -EINVAL;
	}
	y->i++;
	return rc;
}

static int sequence(struct yparser *y, int ind, json_t **out)
{
	json_t *arr = json_array();
	int rc = 0;

	if (!arr)
		return -ENOMEM;
	while (y->i < y->n && y->lines[y->i].indent >= ind) {
		struct yline *l = &y->lines[y->i];
		json_t *v = NULL;

		if (l->indent != ind || !is_item(l))
			break; /* the parent decides whether this line is wrong */
		if (l->len == 1) {
			y->i++;
			if (y->i < y->n && y->lines[y->i].indent > ind)
				rc = block(y, &v);
			else
				v = json_null();
		} else {
			size_t off = 1;

			while (off < l->len && l->p[off] == ' ')
				off++;
			/* the rest of the line as a line of its own */
			l->indent += (int)off;
			l->p += off;
			l->len -= off;
			rc = block(y, &v);
		}
		if (rc || !v || json_array_append_new(arr, v)) {
			rc = rc ? rc : -ENOMEM;
			break;
		}
	}
	if (rc) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return 0;
}

static int mapping(struct yparser *y, int ind, json_t **out)
{
	json_t *map = json_object();
	int rc = 0;

	if (!map)
		return -ENOMEM;
	while (y->i < y->n && y->lines[y->i].indent >= ind) {
		const struct yline *l = &y->lines[y->i];
		long c = key_colon(l);
		json_t *k = NULL, *v = NULL;
		size_t off;

		if (l->indent != ind || c <= 0) {
			if (l->indent == ind && is_item(l))
				break; /* the sequence after "key:" at the same indent ended */
			rc = -EINVAL;
			break;
		}
		if (l->p[0] == '"' || l->p[0] == '\'') {
			size_t used;

			rc = quoted(l->p, (size_t)c, &k, &used);
		} else {
			size_t kl = (size_t)c;

			while (kl > 0 && l->p[kl - 1] == ' ')
				kl--;
			if (bad_start(l->p[0]) || l->p[0] == '?')
				rc = -EINVAL;
			else
				k = json_stringn(l->p, kl);
		}
		if (rc || !k || json_object_get(map, json_string_value(k))) {
			json_decref(k);
			rc = rc ? rc : -EINVAL; /* duplicate key */
			break;
		}
		off = (size_t)c + 1;
		while (off < l->len && l->p[off] == ' ')
			off++;
		if (off >= l->len) {
			y->i++;
			if (y->i < y->n && (y->lines[y->i].indent > ind ||
					    (y->lines[y->i].indent == ind && is_item(&y->lines[y->i]))))
				rc = block(y, &v);
			else
				v = json_null();
		} else {
			rc = inline_value(y, l, off, &v);
		}
		if (rc || !v || json_object_set_new(map, json_string_value(k), v)) {
			json_decref(k);
			rc = rc ? rc : -ENOMEM;
			break;
		}
		json_decref(k);
	}
	if (rc) {
		json_decref(map);
		return rc;
	}
	*out = map;
	return 0;
}

static int block(struct yparser *y, json_t **out)
{
	struct yline *l = &y->lines[y->i];
	int rc;

	if (++y->depth > YAML_DEPTH_MAX)
		return -EINVAL;
	if (l->p[0] == '?' && (l->len == 1 || l->p[1] == ' '))
		return -EINVAL; /* complex keys */
	if (is_item(l))
		rc = sequence(y, l->indent, out);
	else if (key_colon(l) > 0)
		rc = mapping(y, l->indent, out);
	else
		rc = inline_value(y, l, 0, out);
	y->depth--;
	return rc;
}

int kube_yaml_parse(const char *text, size_t len, json_t **out)
{
	struct yparser y = { 0 };
	json_t *v = NULL;
	int rc;

	if (!text || !out)
		return -EINVAL;
	rc = split_lines(text, len, &y);
	if (rc)
		goto out;
	if (y.n == 0) {
		v = json_null();
		rc = v ? 0 : -ENOMEM;
		goto out;
	}
	if (y.lines[0].indent != 0) {
		rc = -EINVAL;
		goto out;
	}
	rc = block(&y, &v);
	if (rc == 0 && y.i != y.n) {
		rc = -EINVAL; /* a line the structure did not take (bad indentation) */
		json_decref(v);
	}
out:
	ts_free(y.lines);
	if (rc == 0)
		*out = v;
	return rc;
}

/* ---- base64 ---- */

int kube_base64_decode(const char *in, size_t len, uint8_t **out, size_t *outlen)
{
	uint8_t *buf;
	uint32_t acc = 0;
	size_t o = 0;
	unsigned bits = 0, pad = 0;

	buf = ts_malloc(len / 4 * 3 + 4);
	if (!buf)
		return -ENOMEM;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];
		int v;

		if (ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t')
			continue;
		if (ch == '=') {
			pad++;
			continue;
		}
		if (pad)
			goto bad; /* data after padding */
		if (ch >= 'A' && ch <= 'Z')
			v = ch - 'A';
		else if (ch >= 'a' && ch <= 'z')
			v = ch - 'a' + 26;
		else if (ch >= '0' && ch <= '9')
			v = ch - '0' + 52;
		else if (ch == '+')
			v = 62;
		else if (ch == '/')
			v = 63;
		else
			goto bad;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (uint8_t)(acc >> bits);
		}
	}
	/* 6 leftover bits (one lone char) or padding that does not fit: not base64 */
	if (bits >= 6 || pad > 2 || (pad && (bits / 2 != pad)) || (acc & ((1u << bits) - 1)))
		goto bad;
	*out = buf;
	*outlen = o;
	return 0;
bad:
	ts_free(buf);
	return -EINVAL;
}
