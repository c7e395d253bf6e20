/* YAML bytes -> nodes with positions, on libyaml's event parser. Hostile
 * input is refused here: NUL bytes (raw, or escaped as \0, \x00, \u0000),
 * invalid UTF-8, anchors and aliases (no "billion laughs"), explicit tags,
 * deep nesting, too many nodes or documents, duplicate keys. A leading UTF-8
 * byte order mark is skipped, as editors on some systems write one. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "gitward/manifest.h"

void gw_diags_init(struct gw_diags *d)
{
	memset(d, 0, sizeof(*d));
}

void gw_diags_free(struct gw_diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	free(d->cur);
	gw_diags_init(d);
}

static struct gw_diag *diags_push(struct gw_diags *d, const char *file, unsigned line, unsigned col, char *msg,
				  size_t more)
{
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->v = gw_xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	d->v[d->n] = (struct gw_diag){ .file = gw_xstrdup(file), .line = line, .col = col, .msg = msg, .more = more };
	return &d->v[d->n++];
}

static int same_file(const struct gw_diags *d, const char *file)
{
	return d->cur && strcmp(d->cur, file) == 0;
}

int gw_diags_full(const struct gw_diags *d, const char *file)
{
	return d->n >= GW_DIAGS_COMMIT_MAX || (same_file(d, file ? file : "") && d->cur_n >= GW_DIAGS_FILE_MAX);
}

void gw_diags_add(struct gw_diags *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
	struct gw_strbuf sb;
	va_list ap;

	if (!file)
		file = "";
	if (!same_file(d, file)) {
		free(d->cur);
		d->cur = gw_xstrdup(file);
		d->cur_n = 0;
	}
	if (d->n >= GW_DIAGS_COMMIT_MAX) {
		d->dropped++;
		return;
	}
	if (d->cur_n >= GW_DIAGS_FILE_MAX) {
		/* the file's summary is the last entry while its diagnostics run */
		if (d->n && d->v[d->n - 1].more && strcmp(d->v[d->n - 1].file, file) == 0)
			d->v[d->n - 1].more++;
		else
			diags_push(d, file, 0, 0, gw_xstrdup(""), 1);
		return;
	}
	d->cur_n++;
	gw_strbuf_init(&sb);
	va_start(ap, fmt);
	gw_strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	diags_push(d, file, line, col, gw_strbuf_detach(&sb), 0);
}

size_t gw_diags_count(const struct gw_diags *d)
{
	size_t n = d->dropped;
	for (size_t i = 0; i < d->n; i++)
		n += d->v[i].more ? d->v[i].more : 1;
	return n;
}

static int is_commit_summary(const struct gw_diag *x)
{
	return x->more && !x->file[0];
}

static int diag_cmp(const void *a, const void *b)
{
	const struct gw_diag *x = a, *y = b;
	if (is_commit_summary(x) != is_commit_summary(y))
		return is_commit_summary(x) ? 1 : -1;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	if (!x->more != !y->more) /* a file's summary after its diagnostics */
		return x->more ? 1 : -1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return strcmp(x->msg, y->msg);
}

static char *more_msg(size_t n, const char *where, unsigned cap)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "\u2026 and %zu more problem%s %s (at most %u are reported)", n, n == 1 ? "" : "s", where,
			 cap);
	return gw_strbuf_detach(&sb);
}

void gw_diags_sort(struct gw_diags *d)
{
	size_t w = 0, commit_more = d->dropped;

	if (d->n > 1)
		qsort(d->v, d->n, sizeof(*d->v), diag_cmp);
	/* per file: keep the first GW_DIAGS_FILE_MAX, fold the rest and every
	 * summary of the file into one summary */
	for (size_t i = 0; i < d->n;) {
		size_t j = i, kept = 0, more = 0;
		if (is_commit_summary(&d->v[i])) {
			commit_more += d->v[i].more;
			free(d->v[i].file);
			free(d->v[i].msg);
			i++;
			continue;
		}
		for (; j < d->n && !is_commit_summary(&d->v[j]) && strcmp(d->v[j].file, d->v[i].file) == 0; j++) {
			if (!d->v[j].more && kept < GW_DIAGS_FILE_MAX) {
				d->v[w++] = d->v[j];
				kept++;
				continue;
			}
			more += d->v[j].more ? d->v[j].more : 1;
			if (more ==
			    (d->v[j].more ? d->v[j].more : 1)) { /* the first folded entry becomes the summary */
				free(d->v[j].msg);
				d->v[j].line = d->v[j].col = 0;
				d->v[w++] = d->v[j];
			} else {
				free(d->v[j].file);
				free(d->v[j].msg);
			}
		}
		if (more) {
			d->v[w - 1].more = more;
			d->v[w - 1].msg = more_msg(more, "in this file", GW_DIAGS_FILE_MAX);
		}
		i = j;
	}
	d->n = w;
	d->dropped = 0;
	if (commit_more)
		diags_push(d, "", 0, 0, more_msg(commit_more, "in this commit", GW_DIAGS_COMMIT_MAX), commit_more);
}

/* Position of a byte offset, 1-based, columns counted in characters. */
static void offset_position(const char *data, size_t off, unsigned *line, unsigned *col)
{
	unsigned l = 1, c = 1;
	for (size_t i = 0; i < off; i++) {
		unsigned char ch = (unsigned char)data[i];
		if (ch == '\n') {
			l++;
			c = 1;
		} else if ((ch & 0xC0) != 0x80) {
			c++;
		}
	}
	*line = l;
	*col = c;
}

/* NUL bytes and invalid UTF-8, with an exact position (libyaml only gives an
 * offset for reader errors). */
static int check_bytes(const char *file, const char *data, size_t len, struct gw_diags *diags)
{
	const unsigned char *s = (const unsigned char *)data;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n;
		unsigned min;
		if (c == 0) {
			unsigned l, col;
			offset_position(data, i, &l, &col);
			gw_diags_add(diags, file, l, col, "NUL byte in manifest");
			return -EINVAL;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0) {
			n = 2;
			min = 0x80;
		} else if ((c & 0xF0) == 0xE0) {
			n = 3;
			min = 0x800;
		} else if ((c & 0xF8) == 0xF0) {
			n = 4;
			min = 0x10000;
		} else {
			goto bad;
		}
		if (i + n > len)
			goto bad;
		unsigned cp = c & (0xFF >> (n + 1));
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				goto bad;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			goto bad;
		i += n;
	}
	return 0;
bad : {
	unsigned l, col;
	offset_position(data, i, &l, &col);
	gw_diags_add(diags, file, l, col, "invalid UTF-8 byte 0x%02x", s[i]);
	return -EINVAL;
}
}

/* One parse: the nodes built so far, the documents read, and how it went. */
struct builder {
	struct gw_arena *arena;
	const char *file;
	struct gw_diags *diags;
	size_t nodes;
	/* open collections */
	struct frame {
		struct gw_ynode *node;
		size_t cap;
	} stack[GW_MANIFEST_DEPTH_MAX + 1];
	size_t depth;
	struct gw_ynode **docs, *root;
	size_t ndocs, capdocs;
	bool doc_bad; /* the current document has a problem: it is not returned */
	bool done; /* the stream ended, or the rest of the file cannot be read */
	int rc; /* 0, or the first problem: -EINVAL (content), -E2BIG (a limit) */
};

/* A problem already recorded as a diagnostic; stop: the rest of the file
 * is not read. */
static void problem(struct builder *b, int code, bool stop)
{
	if (!b->rc)
		b->rc = code;
	if (stop)
		b->done = true;
}

static struct gw_ynode *new_node(struct builder *b, enum gw_ynode_type type, const yaml_mark_t *mark)
{
	struct gw_ynode *n = gw_arena_alloc(b->arena, sizeof(*n));
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->line = (unsigned)mark->line + 1;
	n->col = (unsigned)mark->column + 1;
	return n;
}

static void append(struct builder *b, struct gw_ynode *child)
{
	struct frame *f = &b->stack[b->depth - 1];
	if (f->node->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 8;
		struct gw_ynode **items = gw_arena_alloc(b->arena, cap * sizeof(*items));
		if (f->node->n)
			memcpy(items, f->node->items, f->node->n * sizeof(*items));
		f->node->items = items;
		f->cap = cap;
	}
	f->node->items[f->node->n++] = child;
}

static int scalar_eq(const struct gw_ynode *a, const struct gw_ynode *b)
{
	return a->type == GW_YNODE_SCALAR && b->type == GW_YNODE_SCALAR && a->len == b->len &&
		memcmp(a->value, b->value, a->len) == 0;
}

struct key_ref {
	const struct gw_ynode *k;
	size_t idx;
};

static int key_ref_cmp(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	size_t n = x->k->len < y->k->len ? x->k->len : y->k->len;
	int c = memcmp(x->k->value, y->k->value, n);
	if (c)
		return c;
	if (x->k->len != y->k->len)
		return x->k->len < y->k->len ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Keys must be scalars and unique; checked when a mapping closes, by sorting
 * the keys (n log n: a mapping may hold 100,000 keys). */
static int check_mapping(struct builder *b, const struct gw_ynode *map)
{
	int bad = 0;
	size_t n = 0;
	struct key_ref *keys = gw_xcalloc(map->n / 2 + 1, sizeof(*keys));

	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct gw_ynode *k = map->items[i];
		if (k->type != GW_YNODE_SCALAR) {
			gw_diags_add(b->diags, b->file, k->line, k->col, "mapping keys must be plain strings");
			bad = 1;
			continue;
		}
		keys[n++] = (struct key_ref){ .k = k, .idx = i };
	}
	if (n > 1)
		qsort(keys, n, sizeof(*keys), key_ref_cmp);
	for (size_t i = 1, first = 0; i < n; i++) {
		if (!scalar_eq(keys[first].k, keys[i].k)) {
			first = i;
			continue;
		}
		gw_diags_add(b->diags, b->file, keys[i].k->line, keys[i].k->col,
			     "duplicate key \"%.*s\" (first at line %u)",
			     (int)(keys[i].k->len > 60 ? 60 : keys[i].k->len), keys[i].k->value, keys[first].k->line);
		bad = 1;
	}
	free(keys);
	return bad ? -EINVAL : 0;
}

static const char *event_anchor(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		return (const char *)ev->data.scalar.anchor;
	case YAML_SEQUENCE_START_EVENT:
		return (const char *)ev->data.sequence_start.anchor;
	case YAML_MAPPING_START_EVENT:
		return (const char *)ev->data.mapping_start.anchor;
	default:
		return NULL;
	}
}

static const char *event_tag(const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		/* an implicit tag is what the resolver would pick: fine */
		if (ev->data.scalar.plain_implicit || ev->data.scalar.quoted_implicit)
			return NULL;
		return (const char *)ev->data.scalar.tag;
	case YAML_SEQUENCE_START_EVENT:
		return ev->data.sequence_start.implicit ? NULL : (const char *)ev->data.sequence_start.tag;
	case YAML_MAPPING_START_EVENT:
		return ev->data.mapping_start.implicit ? NULL : (const char *)ev->data.mapping_start.tag;
	default:
		return NULL;
	}
}

static void at(unsigned *line, unsigned *col, const yaml_mark_t *mark)
{
	*line = (unsigned)mark->line + 1;
	*col = (unsigned)mark->column + 1;
}

static void syntax_error(struct builder *b, const yaml_parser_t *parser, const char *data, size_t len)
{
	unsigned l, c;
	at(&l, &c, &parser->problem_mark);
	if (parser->error == YAML_READER_ERROR)
		offset_position(data, parser->problem_offset < len ? parser->problem_offset : len, &l, &c);
	gw_diags_add(b->diags, b->file, l, c, "YAML syntax error: %s%s%s",
		     parser->problem ? parser->problem : "invalid document", parser->context ? " " : "",
		     parser->context ? parser->context : "");
	problem(b, -EINVAL, true);
}

/* Anchors, aliases and explicit tags end the file: 0 when ev has none. */
static int refuse_event(struct builder *b, const yaml_event_t *ev)
{
	unsigned l, c;
	at(&l, &c, &ev->start_mark);
	if (event_anchor(ev) || ev->type == YAML_ALIAS_EVENT) {
		gw_diags_add(b->diags, b->file, l, c, "YAML anchors and aliases are not allowed in manifests");
		problem(b, -EINVAL, true);
		return -EINVAL;
	}
	if (event_tag(ev)) {
		gw_diags_add(b->diags, b->file, l, c, "YAML tags are not allowed in manifests (got \"%s\")",
			     event_tag(ev));
		problem(b, -EINVAL, true);
		return -EINVAL;
	}
	return 0;
}

static void end_document(struct builder *b, const yaml_mark_t *mark)
{
	unsigned l, c;
	if (b->ndocs >= GW_MANIFEST_DOCS_MAX) {
		at(&l, &c, mark);
		gw_diags_add(b->diags, b->file, l, c, "more than %u documents in one file", GW_MANIFEST_DOCS_MAX);
		problem(b, -E2BIG, true);
		return;
	}
	if (b->ndocs == b->capdocs) {
		b->capdocs = b->capdocs ? b->capdocs * 2 : 4;
		struct gw_ynode **nd = gw_arena_alloc(b->arena, b->capdocs * sizeof(*nd));
		if (b->ndocs)
			memcpy(nd, b->docs, b->ndocs * sizeof(*nd));
		b->docs = nd;
	}
	/* NULL for an empty document, or one already refused */
	b->docs[b->ndocs++] = b->doc_bad ? NULL : b->root;
}

static struct gw_ynode *scalar_node(struct builder *b, const yaml_event_t *ev)
{
	unsigned l, c;
	/* values are C strings from here on: a NUL would cut them short */
	if (memchr(ev->data.scalar.value, '\0', ev->data.scalar.length)) {
		at(&l, &c, &ev->start_mark);
		gw_diags_add(b->diags, b->file, l, c, "NUL character in a string (escaped as \\0, \\x00 or \\u0000)");
		problem(b, -EINVAL, false);
		b->doc_bad = true;
	}
	struct gw_ynode *node = new_node(b, GW_YNODE_SCALAR, &ev->start_mark);
	node->value = gw_arena_strndup(b->arena, (const char *)ev->data.scalar.value, ev->data.scalar.length);
	node->len = ev->data.scalar.length;
	node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	return node;
}

/* Hang a new node into the tree, and open it when it is a collection. */
static void add_node(struct builder *b, struct gw_ynode *node)
{
	if (++b->nodes > GW_MANIFEST_NODES_MAX) {
		gw_diags_add(b->diags, b->file, node->line, node->col, "more than %u YAML nodes in one file",
			     GW_MANIFEST_NODES_MAX);
		problem(b, -E2BIG, true);
		return;
	}
	if (b->depth)
		append(b, node);
	else
		b->root = node;
	if (node->type == GW_YNODE_SCALAR)
		return;
	if (b->depth >= GW_MANIFEST_DEPTH_MAX) {
		gw_diags_add(b->diags, b->file, node->line, node->col, "nesting deeper than %u levels",
			     GW_MANIFEST_DEPTH_MAX);
		problem(b, -E2BIG, true);
		return;
	}
	b->stack[b->depth].node = node;
	b->stack[b->depth].cap = 0;
	b->depth++;
}

static void on_event(struct builder *b, const yaml_event_t *ev)
{
	struct gw_ynode *node = NULL;

	if (refuse_event(b, ev) < 0)
		return;
	switch (ev->type) {
	case YAML_STREAM_END_EVENT:
		b->done = true;
		break;
	case YAML_DOCUMENT_START_EVENT:
		b->root = NULL;
		b->doc_bad = false;
		break;
	case YAML_DOCUMENT_END_EVENT:
		end_document(b, &ev->start_mark);
		break;
	case YAML_SCALAR_EVENT:
		node = scalar_node(b, ev);
		break;
	case YAML_SEQUENCE_START_EVENT:
	case YAML_MAPPING_START_EVENT:
		node = new_node(b, ev->type == YAML_MAPPING_START_EVENT ? GW_YNODE_MAP : GW_YNODE_SEQ, &ev->start_mark);
		break;
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT: {
		struct gw_ynode *closed = b->stack[--b->depth].node;
		if (closed->type == GW_YNODE_MAP && check_mapping(b, closed) < 0)
			problem(b, -EINVAL, false);
		break;
	}
	default:
		break;
	}
	if (node)
		add_node(b, node);
}

int gw_yaml_parse(struct gw_ynode ***out_docs, size_t *out_n, struct gw_arena *arena, const char *file,
		  const char *data, size_t len, struct gw_diags *diags)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct builder b = { .arena = arena, .file = file, .diags = diags };
	int rc;

	*out_docs = NULL;
	*out_n = 0;
	if (len > GW_MANIFEST_FILE_MAX) {
		gw_diags_add(diags, file, 0, 0, "file is %zu bytes, larger than the limit of %u", len,
			     GW_MANIFEST_FILE_MAX);
		return -EFBIG;
	}
	/* the BOM is invisible in editors: positions count from what follows it */
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
		data += 3;
		len -= 3;
	}
	rc = check_bytes(file, data, len, diags);
	if (rc < 0)
		return rc;
	if (!yaml_parser_initialize(&parser)) {
		gw_diags_add(diags, file, 0, 0, "cannot start the YAML parser: out of memory");
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	while (!b.done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			syntax_error(&b, &parser, data, len);
			break;
		}
		on_event(&b, &ev);
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	*out_docs = b.docs;
	*out_n = b.ndocs;
	return b.rc;
}
