/* Exclusions: the rules of a .gitwardignore (gitignore syntax) and of
 * --exclude, matched against paths relative to the repository root before
 * any file is parsed. Patterns are matched segment by segment: a "**"
 * segment spans any number of folders, other segments go to fnmatch(3). */
#define _GNU_SOURCE
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"

struct rule {
	char **seg; /* the pattern split at '/' */
	size_t nseg;
	bool negate;
	bool dir_only;
	char *origin; /* ".gitwardignore:3: docs/" or "--exclude docs/" */
};

struct gw_ignore {
	struct rule *v;
	size_t n, cap;
};

struct gw_ignore *gw_ignore_new(void)
{
	return gw_xcalloc(1, sizeof(struct gw_ignore));
}

void gw_ignore_free(struct gw_ignore *ig)
{
	if (!ig)
		return;
	for (size_t i = 0; i < ig->n; i++) {
		for (size_t s = 0; s < ig->v[i].nseg; s++)
			free(ig->v[i].seg[s]);
		free(ig->v[i].seg);
		free(ig->v[i].origin);
	}
	free(ig->v);
	free(ig);
}

/* One gitignore line: comments and blank lines add nothing. */
static void add_line(struct gw_ignore *ig, const char *line, size_t len, const char *origin)
{
	struct rule r = { 0 };
	char *p, *tok, *save = NULL;
	size_t cap;

	/* trailing spaces go, unless escaped with a backslash */
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r') &&
	       !(len > 1 && line[len - 2] == '\\'))
		len--;
	if (len == 0 || line[0] == '#')
		return;
	if (line[0] == '!') {
		r.negate = true;
		line++;
		len--;
	} else if (line[0] == '\\' && len > 1 && (line[1] == '#' || line[1] == '!')) {
		line++; /* "\#" and "\!" start a literal pattern */
		len--;
	}
	if (len > 0 && line[len - 1] == '/') {
		r.dir_only = true;
		while (len > 0 && line[len - 1] == '/')
			len--;
	}
	if (len == 0)
		return;
	p = gw_xstrndup(line, len);
	/* a slash at the start or in the middle anchors the pattern at the
	 * root; without one it matches at any depth, like a leading "**" */
	bool anchored = strchr(p, '/') != NULL;
	cap = 2;
	for (const char *c = p; *c; c++)
		cap += *c == '/';
	r.seg = gw_xcalloc(cap, sizeof(char *));
	if (!anchored)
		r.seg[r.nseg++] = gw_xstrdup("**");
	for (tok = strtok_r(p, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
		r.seg[r.nseg++] = gw_xstrdup(tok);
	free(p);
	if (r.nseg == 0) {
		free(r.seg);
		return;
	}
	r.origin = gw_xstrdup(origin);
	if (ig->n == ig->cap) {
		ig->cap = ig->cap ? ig->cap * 2 : 8;
		ig->v = gw_xrealloc(ig->v, ig->cap * sizeof(*ig->v));
	}
	ig->v[ig->n++] = r;
}

void gw_ignore_add_text(struct gw_ignore *ig, const char *file, const char *text, size_t len)
{
	unsigned lineno = 0;
	const char *end = text + len;

	while (text < end) {
		const char *nl = memchr(text, '\n', (size_t)(end - text));
		size_t n = nl ? (size_t)(nl - text) : (size_t)(end - text);
		char origin[512];
		lineno++;
		snprintf(origin, sizeof(origin), "%s:%u: %.*s", file, lineno, (int)(n > 300 ? 300 : n), text);
		add_line(ig, text, n, origin);
		text += n + (nl ? 1 : 0);
	}
}

void gw_ignore_add_pattern(struct gw_ignore *ig, const char *pattern)
{
	char origin[512];
	snprintf(origin, sizeof(origin), "--exclude %s", pattern);
	add_line(ig, pattern, strlen(pattern), origin);
}

/* Segments of the pattern against segments of the path; "**" spans zero or
 * more of them, but a last "**" at least one (what is inside a folder, not
 * the folder). A table over (pattern, path) positions, filled from the
 * ends, so patterns full of "**" cost np * nn steps, never a backtracking
 * blow-up. */
static bool match_segs(char *const *pat, size_t np, char *const *path, size_t nn)
{
	bool *next = gw_xcalloc(nn + 2, sizeof(bool)), *cur = gw_xcalloc(nn + 2, sizeof(bool)), res;

	next[nn] = true; /* the empty pattern matches the empty rest */
	for (size_t i = np; i-- > 0;) {
		if (!strcmp(pat[i], "**")) {
			size_t min = i == np - 1 ? 1 : 0;
			bool any = false;
			for (size_t j = nn + 1; j-- > 0;) {
				/* any = some rest from j + min on matches */
				if (j + min <= nn)
					any = any || next[j + min];
				cur[j] = any;
			}
		} else {
			for (size_t j = 0; j <= nn; j++)
				cur[j] = j < nn && next[j + 1] && fnmatch(pat[i], path[j], 0) == 0;
		}
		bool *t = next;
		next = cur;
		cur = t;
	}
	res = next[0];
	free(next);
	free(cur);
	return res;
}

/* The last rule that matches path itself decides (a negation re-includes). */
static const struct rule *decide(const struct gw_ignore *ig, char *const *segs, size_t n, bool is_dir)
{
	const struct rule *hit = NULL;
	for (size_t i = 0; i < ig->n; i++) {
		const struct rule *r = &ig->v[i];
		if (r->dir_only && !is_dir)
			continue;
		if (match_segs(r->seg, r->nseg, segs, n))
			hit = r;
	}
	return hit && !hit->negate ? hit : NULL;
}

const char *gw_ignore_match(const struct gw_ignore *ig, const char *path, bool is_dir)
{
	char *copy, *tok, *save = NULL, **segs;
	size_t n = 0, cap = 2;
	const char *by = NULL;

	if (!ig || ig->n == 0)
		return NULL;
	for (const char *c = path; *c; c++)
		cap += *c == '/';
	segs = gw_xcalloc(cap, sizeof(char *));
	copy = gw_xstrdup(path);
	for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save))
		segs[n++] = tok;
	/* as in git, nothing inside an excluded folder can be re-included */
	for (size_t k = 1; k <= n && !by; k++) {
		const struct rule *r = decide(ig, segs, k, k < n || is_dir);
		if (r)
			by = r->origin;
	}
	free(segs);
	free(copy);
	return by;
}

struct gw_ignore *gw_manifest_ignore_new(const struct gw_manifest_set *set, const char *text, size_t len)
{
	struct gw_ignore *ig = gw_ignore_new();
	if (text)
		gw_ignore_add_text(ig, ".gitwardignore", text, len);
	for (size_t i = 0; set->exclude && i < set->exclude->n; i++)
		gw_ignore_add_pattern(ig, set->exclude->v[i]);
	return ig;
}

void gw_manifest_set_skip(struct gw_manifest_set *set, const char *path, const char *by)
{
	/* bounded like the diagnostics: a commit may hold 100,000 files */
	if (set->skipped.n >= GW_DIAGS_COMMIT_MAX && !gw_strmap_get(&set->skipped, path))
		set->skipped_more++;
	else
		gw_strmap_set(&set->skipped, path, by);
}

void gw_manifest_set_empty(struct gw_manifest_set *set, const char *where)
{
	set->empty.v = gw_xrealloc(set->empty.v, (set->empty.n + 1) * sizeof(char *));
	set->empty.v[set->empty.n++] = gw_xstrdup(where);
}

const char *gw_manifest_set_empty_warning(char *buf, size_t size, const struct gw_manifest_set *set)
{
	struct gw_strbuf sb;
	if (!set->empty.n)
		return NULL;
	gw_strbuf_init(&sb);
	gw_strbuf_puts(&sb, "no manifest in ");
	for (size_t i = 0; i < set->empty.n; i++)
		gw_strbuf_printf(&sb, "%s%s", i ? ", " : "", set->empty.v[i]);
	/* everything excluded is the likelier mistake then: say so */
	gw_strbuf_printf(&sb, " (no *.yaml or *.yml file%s)",
			 set->skipped.n || set->skipped_more ? " that .gitwardignore and --exclude keep" : "");
	snprintf(buf, size, "%s", sb.s);
	gw_strbuf_free(&sb);
	return buf;
}
