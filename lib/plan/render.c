/* Plans for people (one line per change and a summary) and for scripts (the
 * SPEC JSON object). Secrets never reach here: envFiles are paths only, and a
 * secretEnvFiles file shows as its path and blob id ("secret F changed"). */
#define _GNU_SOURCE
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gitward/plan.h"

static const char marks[] = { ' ', '+', '~', '-', '!' };

/* An env key that names a secret: its value is never shown in a comment. */
static bool secret_key(const char *key)
{
	static const char *const words[] = { "PASSWORD", "PASSWD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "AUTH" };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (strcasestr(key, words[i]))
			return true;
	return false;
}

/* A value of a change as shown (caller frees): compact JSON; when absent,
 * the default the field then takes, else "(unset)". */
static char *shown(enum gw_kind kind, const char *path, const char *compact)
{
	char *def;
	if (compact)
		return gw_xstrdup(compact);
	def = gw_resource_default_json(kind, path);
	return def ? def : gw_xstrdup("(unset)");
}

/* A value as shown with secret-looking env values masked: path is
 * "spec.env.KEY" (the value) or "spec.env" (an object of them). */
static char *masked(enum gw_kind kind, const char *path, const char *compact)
{
	if (!compact)
		return shown(kind, path, compact);
	if (!strncmp(path, "spec.env.", 9))
		return gw_xstrdup(secret_key(path + 9) ? "\"***\"" : compact);
	if (strcmp(path, "spec.env") != 0)
		return gw_xstrdup(compact);
	json_t *v = json_loads(compact, JSON_DECODE_ANY, NULL);
	const char *k;
	json_t *x;
	if (!json_is_object(v)) {
		json_decref(v);
		return gw_xstrdup("\"***\"");
	}
	json_object_foreach(v, k, x)
	{
		if (secret_key(k))
			json_object_set_new(v, k, json_string("***"));
	}
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(v);
	return s;
}

/* What a reviewer needs of a resource to create: what it runs, what it
 * exposes and its environment (secret-looking values masked). */
static const char *const main_fields[] = { "image", "command", "kernel", "disk", "plugin", "ports", "forwards", "env" };
#define NMAIN (sizeof(main_fields) / sizeof(main_fields[0]))

/* The main fields a create sets: names[i] and values[i] (masked compact
 * JSON, caller frees each); returns how many. */
static size_t created_fields(const char *names[NMAIN], char *values[NMAIN], const struct gw_action *a)
{
	size_t n = 0;
	if (a->type != GW_ACTION_CREATE || !a->desired || !a->desired->canonical)
		return 0;
	json_t *doc = json_loads(a->desired->canonical, 0, NULL), *spec = json_object_get(doc, "spec");
	for (size_t i = 0; i < NMAIN; i++) {
		json_t *v = json_object_get(spec, main_fields[i]);
		if (!v)
			continue;
		char path[32], *compact = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
		snprintf(path, sizeof(path), "spec.%s", main_fields[i]);
		names[n] = main_fields[i];
		values[n++] = masked(a->kind, path, compact);
		free(compact);
	}
	json_decref(doc);
	return n;
}

static void text_changes(FILE *f, const struct gw_action *a)
{
	char esc[1024];
	for (size_t c = 0; c < a->nchanges; c++) {
		const struct gw_change *ch = &a->changes[c];
		const char *path = strncmp(ch->path, "spec.", 5) == 0 ? ch->path + 5 : ch->path;
		if (strncmp(path, "secrets.", 8) == 0) {
			fprintf(f, "%ssecret %s %s", c ? ", " : "", gw_escape(esc, sizeof(esc), path + 8),
				!ch->from	  ? "added"
					: !ch->to ? "removed"
						  : "changed");
			continue;
		}
		char *from = shown(a->kind, ch->path, ch->from), *to = shown(a->kind, ch->path, ch->to);
		fprintf(f, "%s%s: ", c ? ", " : "", gw_escape(esc, sizeof(esc), path));
		fprintf(f, "%s -> ", gw_escape(esc, sizeof(esc), from));
		fputs(gw_escape(esc, sizeof(esc), to), f);
		free(from);
		free(to);
	}
}

static void text_created(FILE *f, const struct gw_action *a)
{
	const char *names[NMAIN];
	char *values[NMAIN], esc[1024];
	size_t n = created_fields(names, values, a);
	for (size_t i = 0; i < n; i++) {
		fprintf(f, "%s%s: %s", i ? ", " : "  ", names[i], gw_escape(esc, sizeof(esc), values[i]));
		free(values[i]);
	}
}

void gw_plan_render_text(FILE *f, const struct gw_plan *plan)
{
	size_t width = 20;
	char key[200], esc[1024];

	for (size_t i = 0; i < plan->n; i++) {
		const struct gw_action *a = &plan->v[i];
		size_t n = strlen(gw_kind_to_string(a->kind)) + 1 + strlen(a->name);
		if (a->type != GW_ACTION_NONE && n > width)
			width = n;
	}
	for (size_t i = 0; i < plan->n; i++) {
		const struct gw_action *a = &plan->v[i];
		if (a->type == GW_ACTION_NONE)
			continue;
		snprintf(esc, sizeof(esc), "%s/%s", gw_kind_to_string(a->kind), a->name);
		gw_escape(key, sizeof(key), esc);
		fprintf(f, "  %c %-*s %s", marks[a->type], (int)width, key, gw_action_to_string(a->type));
		if (a->nchanges) {
			fputs("  ", f);
			text_changes(f, a);
		} else if (a->reason[0]) {
			fprintf(f, "  %s", gw_escape(esc, sizeof(esc), a->reason));
		}
		text_created(f, a);
		fputc('\n', f);
	}
	fprintf(f, "Plan: %zu to create, %zu to update, %zu to delete, %zu to restart, %zu unchanged.\n",
		plan->count[GW_ACTION_CREATE], plan->count[GW_ACTION_UPDATE], plan->count[GW_ACTION_DELETE],
		plan->count[GW_ACTION_RESTART], plan->count[GW_ACTION_NONE]);
}

static json_t *value_or_null(const char *compact)
{
	json_t *v;
	if (!compact)
		return json_null();
	v = json_loads(compact, JSON_DECODE_ANY, NULL);
	return v ? v : gw_json_string(compact);
}

char *gw_plan_render_json(const struct gw_plan *plan, const struct gw_plan_meta *meta, const struct gw_diags *diags,
			  const struct gw_error *fatal)
{
	json_t *root = json_object(), *actions = json_array(), *summary = json_object(), *errors = json_array();
	char *out;

	json_object_set_new(root, "commit", gw_json_string(meta ? meta->commit : NULL));
	json_object_set_new(root, "ref", gw_json_string(meta ? meta->ref : NULL));
	json_object_set_new(root, "node", gw_json_string(meta ? meta->node : NULL));
	for (size_t i = 0; plan && i < plan->n; i++) {
		const struct gw_action *a = &plan->v[i];
		if (a->type == GW_ACTION_NONE)
			continue;
		json_t *o = json_object(), *changes = json_array();
		json_object_set_new(o, "kind", json_string(gw_kind_to_string(a->kind)));
		json_object_set_new(o, "name", gw_json_string(a->name));
		json_object_set_new(o, "action", json_string(gw_action_to_string(a->type)));
		for (size_t c = 0; c < a->nchanges; c++) {
			json_t *ch = json_object();
			json_object_set_new(ch, "path", gw_json_string(a->changes[c].path));
			json_object_set_new(ch, "from", value_or_null(a->changes[c].from));
			json_object_set_new(ch, "to", value_or_null(a->changes[c].to));
			json_array_append_new(changes, ch);
		}
		json_object_set_new(o, "changes", changes);
		if (a->reason[0])
			json_object_set_new(o, "reason", gw_json_string(a->reason));
		json_array_append_new(actions, o);
	}
	static const char *const names[] = { "create", "update", "delete", "restart" };
	static const enum gw_action_type types[] = { GW_ACTION_CREATE, GW_ACTION_UPDATE, GW_ACTION_DELETE,
						     GW_ACTION_RESTART };
	for (int i = 0; i < 4; i++)
		json_object_set_new(summary, names[i], json_integer(plan ? (json_int_t)plan->count[types[i]] : 0));
	json_object_set_new(summary, "unchanged", json_integer(plan ? (json_int_t)plan->count[GW_ACTION_NONE] : 0));
	for (size_t i = 0; diags && i < diags->n; i++) {
		json_t *e = json_object();
		json_object_set_new(e, "file", gw_json_string(diags->v[i].file));
		json_object_set_new(e, "line", json_integer(diags->v[i].line));
		json_object_set_new(e, "column", json_integer(diags->v[i].col));
		json_object_set_new(e, "message", gw_json_string(diags->v[i].msg));
		json_array_append_new(errors, e);
	}
	if (fatal) {
		json_t *e = json_object();
		json_object_set_new(e, "file", gw_json_string(fatal->file[0] ? fatal->file : NULL));
		json_object_set_new(e, "line", fatal->line ? json_integer(fatal->line) : json_null());
		json_object_set_new(e, "column", fatal->line ? json_integer(fatal->col) : json_null());
		json_object_set_new(e, "message", gw_json_string(fatal->msg));
		json_array_append_new(errors, e);
	}
	json_object_set_new(root, "actions", actions);
	json_object_set_new(root, "summary", summary);
	json_object_set_new(root, "errors", errors);
	out = json_dumps(root, JSON_INDENT(0) | JSON_COMPACT);
	json_decref(root);
	return out;
}

/* ---- markdown, for a pull-request comment ---- */

/* Would the byte at s[i] start markdown that GitHub renders live: a link or
 * image ('['), emphasis, a backslash escape, an autolink (a scheme's
 * "://", "www.", an e-mail's '@')? Written as a character reference it is
 * literal text (CommonMark: references never count as structure). */
static bool md_live(const char *s, size_t i)
{
	switch (s[i]) {
	case '[': /* no link text, so no link nor image */
	case '*':
	case '\\':
	case '@':
		return true;
	case ':':
		return s[i + 1] == '/' && s[i + 2] == '/';
	case '.':
		return i >= 3 && !strncasecmp(s + i - 3, "www", 3);
	default:
		return false;
	}
}

/* Inside an HTML element of a table cell: nothing may close it, start a
 * tag, split the cell or the line, nor become a link, an image or
 * emphasis; invisible characters (U+202E) show as \u202e. */
static void md_text(struct gw_strbuf *sb, const char *s)
{
	struct gw_strbuf esc;
	gw_strbuf_init(&esc);
	gw_strbuf_add_escaped(&esc, s);
	for (size_t i = 0; i < esc.len; i++) {
		switch (esc.s[i]) {
		case '&':
			gw_strbuf_puts(sb, "&amp;");
			break;
		case '<':
			gw_strbuf_puts(sb, "&lt;");
			break;
		case '>':
			gw_strbuf_puts(sb, "&gt;");
			break;
		case '|':
			gw_strbuf_puts(sb, "&#124;");
			break;
		case '`':
			gw_strbuf_puts(sb, "&#96;");
			break;
		default:
			if (md_live(esc.s, i))
				gw_strbuf_printf(sb, "&#%d;", (unsigned char)esc.s[i]);
			else
				gw_strbuf_add(sb, &esc.s[i], 1);
		}
	}
	gw_strbuf_free(&esc);
}

static void md_code(struct gw_strbuf *sb, const char *s)
{
	gw_strbuf_puts(sb, "<code>");
	md_text(sb, s);
	gw_strbuf_puts(sb, "</code>");
}

/* The main fields of a create, in its Detail cell: name <code>value</code> */
static void md_created(struct gw_strbuf *sb, const struct gw_action *a)
{
	const char *names[NMAIN];
	char *values[NMAIN];
	size_t n = created_fields(names, values, a);
	for (size_t i = 0; i < n; i++) {
		gw_strbuf_printf(sb, "%s%s ", i ? ", " : a->reason[0] ? "; " : "", names[i]);
		md_code(sb, values[i]);
		free(values[i]);
	}
}

static void md_summary(struct gw_strbuf *sb, const struct gw_plan *p)
{
	gw_strbuf_printf(sb, "%zu to create, %zu to update, %zu to delete, %zu to restart, %zu unchanged.",
			 p->count[GW_ACTION_CREATE], p->count[GW_ACTION_UPDATE], p->count[GW_ACTION_DELETE],
			 p->count[GW_ACTION_RESTART], p->count[GW_ACTION_NONE]);
}

static void md_node(struct gw_strbuf *sb, const struct gw_plan_node *nd)
{
	const struct gw_plan *p = nd->plan;
	size_t changes = 0;

	gw_strbuf_puts(sb, "**");
	md_text(sb, nd->node);
	gw_strbuf_puts(sb, "**: ");
	if (p->count[GW_ACTION_NONE] == p->n) {
		gw_strbuf_printf(sb, "no changes (%zu unchanged).\n\n", p->n);
		return;
	}
	md_summary(sb, p);
	gw_strbuf_puts(sb, "\n\n| | Resource | Action | Detail |\n|:-:|---|---|---|\n");
	for (size_t i = 0; i < p->n; i++) {
		const struct gw_action *a = &p->v[i];
		if (a->type == GW_ACTION_NONE)
			continue;
		gw_strbuf_printf(sb, "| %c | %s/", marks[a->type], gw_kind_to_string(a->kind));
		md_text(sb, a->name);
		gw_strbuf_printf(sb, " | %s | ", gw_action_to_string(a->type));
		if (a->nchanges)
			gw_strbuf_printf(sb, "%zu field%s changed", a->nchanges, a->nchanges == 1 ? "" : "s");
		else
			md_text(sb, a->reason);
		md_created(sb, a);
		gw_strbuf_puts(sb, " |\n");
		changes += a->nchanges;
	}
	gw_strbuf_puts(sb, "\n");
	if (!changes)
		return;
	gw_strbuf_puts(sb, "<details><summary>Field changes on ");
	md_text(sb, nd->node);
	gw_strbuf_puts(sb, "</summary>\n\n| Resource | Field | From | To |\n|---|---|---|---|\n");
	for (size_t i = 0; i < p->n; i++) {
		const struct gw_action *a = &p->v[i];
		for (size_t c = 0; c < a->nchanges; c++) {
			const struct gw_change *ch = &a->changes[c];
			char *from = masked(a->kind, ch->path, ch->from), *to = masked(a->kind, ch->path, ch->to);
			gw_strbuf_printf(sb, "| %s/", gw_kind_to_string(a->kind));
			md_text(sb, a->name);
			gw_strbuf_puts(sb, " | ");
			md_code(sb, strncmp(ch->path, "spec.", 5) == 0 ? ch->path + 5 : ch->path);
			gw_strbuf_puts(sb, " | ");
			md_code(sb, from);
			gw_strbuf_puts(sb, " | ");
			md_code(sb, to);
			gw_strbuf_puts(sb, " |\n");
			free(from);
			free(to);
		}
	}
	gw_strbuf_puts(sb, "\n</details>\n\n");
}

void gw_plan_render_markdown(FILE *f, const char *title, const struct gw_plan_node *nodes, size_t n,
			     const struct gw_diags *diags, const struct gw_error *fatal)
{
	struct gw_strbuf sb;
	gw_strbuf_init(&sb);
	gw_strbuf_printf(&sb, "### gitward plan\n\n%s\n\n", title);
	for (size_t i = 0; i < n; i++)
		md_node(&sb, &nodes[i]);
	if ((diags && diags->n) || fatal) {
		gw_strbuf_puts(&sb, "**Errors** (nothing of this commit would be applied):\n\n");
		for (size_t i = 0; diags && i < diags->n; i++) {
			const struct gw_diag *d = &diags->v[i];
			gw_strbuf_puts(&sb, "- ");
			if (d->file[0]) {
				char pos[64] = "";
				struct gw_strbuf where;
				gw_strbuf_init(&where);
				if (d->line)
					snprintf(pos, sizeof(pos), ":%u:%u", d->line, d->col);
				gw_strbuf_printf(&where, "%s%s", d->file, pos);
				md_code(&sb, where.s);
				gw_strbuf_free(&where);
				gw_strbuf_puts(&sb, " ");
			}
			md_text(&sb, d->msg);
			gw_strbuf_puts(&sb, "\n");
		}
		if (fatal) {
			char buf[GW_ERROR_MSG_MAX + 300];
			gw_strbuf_puts(&sb, "- ");
			md_text(&sb, gw_error_format(buf, sizeof(buf), fatal));
			gw_strbuf_puts(&sb, "\n");
		}
		gw_strbuf_puts(&sb, "\n");
	}
	/* one trailing newline */
	while (sb.len > 1 && sb.s[sb.len - 1] == '\n' && sb.s[sb.len - 2] == '\n')
		sb.s[--sb.len] = '\0';
	fputs(sb.s, f);
	gw_strbuf_free(&sb);
}
