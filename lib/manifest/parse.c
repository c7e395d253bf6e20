/* YAML bytes -> nodes with positions, on libyaml's event parser. Hostile
 * input is refused here: NUL bytes (raw, or escaped as \0, \x00, \u0000),
 * invalid UTF-8, anchors and aliases (no "billion laughs"), explicit tags,
 * deep nesting, too many nodes or documents, duplicate keys. A leading UTF-8
 * byte order mark is skipped, as editors on some systems write one. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "gitward/manifest.h"

void gw_diags_init(struct gw_diags *d)
{
	d->v = NULL;
	d->n = d->cap = 0;
}

void gw_diags_free(struct gw_diags *d)
{
	for (size_t i = 0; i < d->n; i++) {
		free(d->v[i].file);
		free(d->v[i].msg);
	}
	free(d->v);
	gw_diags_init(d);
}

void gw_diags_add(struct gw_diags *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
	struct gw_strbuf sb;
	va_list ap;

	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->v = gw_xrealloc(d->v, d->cap * sizeof(*d->v));
	}
	gw_strbuf_init(&sb);
	va_start(ap, fmt);
	gw_strbuf_vprintf(&sb, fmt, ap);
	va_end(ap);
	d->v[d->n].file = gw_xstrdup(file ? file : "");
	d->v[d->n].line = line;
	d->v[d->n].col = col;
	d->v[d->n].msg = gw_strbuf_detach(&sb);
	d->n++;
}

static int diag_cmp(const void *a, const void *b)
{
	const struct gw_diag *x = a, *y = b;
	int c = strcmp(x->file, y->file);
	if (c)
		return c;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return strcmp(x->msg, y->msg);
}

void gw_diags_sort(struct gw_diags *d)
{
	if (d->n > 1)
		qsort(d->v, d->n, sizeof(*d->v), diag_cmp);
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
			return -1;
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
	return -1;
}
}

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
};

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

/* Keys must be scalars and unique; checked when a mapping closes. */
static int check_mapping(struct builder *b, const struct gw_ynode *map)
{
	int bad = 0;
	for (size_t i = 0; i + 1 < map->n; i += 2) {
		const struct gw_ynode *k = map->items[i];
		if (k->type != GW_YNODE_SCALAR) {
			gw_diags_add(b->diags, b->file, k->line, k->col, "mapping keys must be plain strings");
			bad = 1;
			continue;
		}
		for (size_t j = 0; j < i; j += 2) {
			if (scalar_eq(map->items[j], k)) {
				gw_diags_add(b->diags, b->file, k->line, k->col,
					     "duplicate key \"%.*s\" (first at line %u)", (int)k->len, k->value,
					     map->items[j]->line);
				bad = 1;
				break;
			}
		}
	}
	return bad ? -1 : 0;
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

int gw_yaml_parse(struct gw_ynode ***out_docs, size_t *out_n, struct gw_arena *arena, const char *file,
		  const char *data, size_t len, struct gw_diags *diags)
{
	yaml_parser_t parser;
	yaml_event_t ev;
	struct builder b = { .arena = arena, .file = file, .diags = diags };
	struct gw_ynode **docs = NULL, *root = NULL;
	size_t ndocs = 0, capdocs = 0;
	int rc = 0, done = 0, doc_bad = 0;

	*out_docs = NULL;
	*out_n = 0;
	if (len > GW_MANIFEST_FILE_MAX) {
		gw_diags_add(diags, file, 0, 0, "file is %zu bytes, larger than the limit of %u", len,
			     GW_MANIFEST_FILE_MAX);
		return -1;
	}
	/* the BOM is invisible in editors: positions count from what follows it */
	if (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
		data += 3;
		len -= 3;
	}
	if (check_bytes(file, data, len, diags) < 0)
		return -1;
	if (!yaml_parser_initialize(&parser))
		return -1;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);

	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			unsigned l = (unsigned)parser.problem_mark.line + 1,
				 c = (unsigned)parser.problem_mark.column + 1;
			if (parser.error == YAML_READER_ERROR)
				offset_position(data, parser.problem_offset < len ? parser.problem_offset : len, &l,
						&c);
			gw_diags_add(diags, file, l, c, "YAML syntax error: %s%s%s",
				     parser.problem ? parser.problem : "invalid document", parser.context ? " " : "",
				     parser.context ? parser.context : "");
			rc = -1;
			break;
		}
		const yaml_mark_t *mark = &ev.start_mark;
		struct gw_ynode *node = NULL;

		if (event_anchor(&ev) || ev.type == YAML_ALIAS_EVENT) {
			gw_diags_add(diags, file, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
				     "YAML anchors and aliases are not allowed in manifests");
			rc = -1;
			yaml_event_delete(&ev);
			break;
		}
		if (event_tag(&ev)) {
			gw_diags_add(diags, file, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
				     "YAML tags are not allowed in manifests (got \"%s\")", event_tag(&ev));
			rc = -1;
			yaml_event_delete(&ev);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			root = NULL;
			doc_bad = 0;
			break;
		case YAML_DOCUMENT_END_EVENT:
			if (ndocs >= GW_MANIFEST_DOCS_MAX) {
				gw_diags_add(diags, file, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
					     "more than %u documents in one file", GW_MANIFEST_DOCS_MAX);
				rc = -1;
				done = 1;
				break;
			}
			if (ndocs == capdocs) {
				capdocs = capdocs ? capdocs * 2 : 4;
				struct gw_ynode **nd = gw_arena_alloc(arena, capdocs * sizeof(*nd));
				if (ndocs)
					memcpy(nd, docs, ndocs * sizeof(*nd));
				docs = nd;
			}
			/* NULL for an empty document, or one already refused */
			docs[ndocs++] = doc_bad ? NULL : root;
			break;
		case YAML_SCALAR_EVENT:
			/* values are C strings from here on: a NUL would cut them short */
			if (memchr(ev.data.scalar.value, '\0', ev.data.scalar.length)) {
				gw_diags_add(diags, file, (unsigned)mark->line + 1, (unsigned)mark->column + 1,
					     "NUL character in a string (escaped as \\0, \\x00 or \\u0000)");
				rc = -1;
				doc_bad = 1;
			}
			node = new_node(&b, GW_YNODE_SCALAR, mark);
			node->value =
				gw_arena_strndup(arena, (const char *)ev.data.scalar.value, ev.data.scalar.length);
			node->len = ev.data.scalar.length;
			node->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			node = new_node(&b, ev.type == YAML_MAPPING_START_EVENT ? GW_YNODE_MAP : GW_YNODE_SEQ, mark);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT: {
			struct gw_ynode *closed = b.stack[--b.depth].node;
			if (closed->type == GW_YNODE_MAP && check_mapping(&b, closed) < 0)
				rc = -1;
			break;
		}
		default:
			break;
		}
		if (node) {
			if (++b.nodes > GW_MANIFEST_NODES_MAX) {
				gw_diags_add(diags, file, node->line, node->col, "more than %u YAML nodes in one file",
					     GW_MANIFEST_NODES_MAX);
				rc = -1;
				done = 1;
			} else {
				if (b.depth)
					append(&b, node);
				else
					root = node;
				if (node->type != GW_YNODE_SCALAR) {
					if (b.depth >= GW_MANIFEST_DEPTH_MAX) {
						gw_diags_add(diags, file, node->line, node->col,
							     "nesting deeper than %u levels", GW_MANIFEST_DEPTH_MAX);
						rc = -1;
						done = 1;
					} else {
						b.stack[b.depth].node = node;
						b.stack[b.depth].cap = 0;
						b.depth++;
					}
				}
			}
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&parser);
	*out_docs = docs;
	*out_n = ndocs;
	return rc;
}
