/* Exclusions: the rules of a .gitwardignore (gitignore syntax) and of
 * --exclude, matched against paths relative to the repository root before
 * any file is parsed. Patterns are matched segment by segment: a "**"
 * segment spans any number of folders, other segments go to fnmatch(3). */
#define _GNU_SOURCE
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"

/* How a rule is matched. Literal rules (no wildcard) are found through a
 * hash index, so a file of 100,000 names costs one look-up per path; only
 * rules with wildcards are tried one by one, and there are at most
 * GW_IGNORE_GLOBS_MAX of those in a .gitwardignore. */
enum rule_kind {
	RULE_GLOB, /* tried against every path */
	RULE_NAME, /* "name" without a slash: the last segment equals it */
	RULE_PATH, /* "a/b" without wildcards: the whole path equals it */
};

#define NONE SIZE_MAX

struct rule {
	char **seg; /* the pattern split at '/' */
	size_t nseg;
	bool negate;
	bool dir_only;
	enum rule_kind kind;
	char *key; /* RULE_NAME, RULE_PATH: what the path must equal */
	size_t prev; /* the previous rule with the same key, or NONE */
	char *origin; /* ".gitwardignore:3: docs/" or "--exclude docs/" */
};

/* key -> the last rule with that key; open addressing, cap a power of two */
struct index {
	size_t *slot; /* rule index + 1; 0: empty */
	size_t n, cap;
};

struct gw_ignore {
	struct rule *v;
	size_t n, cap;
	size_t *glob; /* indexes of the RULE_GLOB rules, ascending */
	size_t nglob, globs_in_file;
	struct index names, paths;
	unsigned over_line; /* the line of the first rule past the limit; 0: none */
	char over_file[64];
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
		free(ig->v[i].key);
		free(ig->v[i].origin);
	}
	free(ig->v);
	free(ig->glob);
	free(ig->names.slot);
	free(ig->paths.slot);
	free(ig);
}

static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

/* The slot of key: the one holding a rule with that key, or an empty one. */
static size_t *index_slot(const struct index *x, const struct rule *v, const char *key, size_t len)
{
	size_t mask = x->cap - 1;
	for (size_t i = (size_t)hash(key, len) & mask;; i = (i + 1) & mask) {
		size_t r = x->slot[i];
		if (r == 0 || (strlen(v[r - 1].key) == len && !memcmp(v[r - 1].key, key, len)))
			return &x->slot[i];
	}
}

static void index_add(struct index *x, struct rule *v, size_t ri)
{
	if (2 * (x->n + 1) > x->cap) {
		struct index bigger = { .cap = x->cap ? x->cap * 2 : 64, .n = x->n };
		bigger.slot = gw_xcalloc(bigger.cap, sizeof(size_t));
		for (size_t i = 0; i < x->cap; i++)
			if (x->slot[i])
				*index_slot(&bigger, v, v[x->slot[i] - 1].key, strlen(v[x->slot[i] - 1].key)) =
					x->slot[i];
		free(x->slot);
		*x = bigger;
	}
	size_t *s = index_slot(x, v, v[ri].key, strlen(v[ri].key));
	v[ri].prev = *s ? *s - 1 : NONE;
	if (!*s)
		x->n++;
	*s = ri + 1;
}

/* The last rule with key that applies to a folder (or not); NONE: none. */
static size_t index_find(const struct index *x, const struct rule *v, const char *key, size_t len, bool is_dir)
{
	if (!x->cap)
		return NONE;
	size_t s = *index_slot(x, v, key, len);
	for (size_t r = s ? s - 1 : NONE; r != NONE; r = v[r].prev)
		if (is_dir || !v[r].dir_only)
			return r;
	return NONE;
}

static bool is_literal(const char *seg)
{
	return strcmp(seg, "**") != 0 && !strpbrk(seg, "*?[\\");
}

/* One gitignore line: comments and blank lines add nothing. Returns whether
 * a rule with wildcards was added. */
static bool add_line(struct gw_ignore *ig, const char *line, size_t len, const char *origin)
{
	struct rule r = { 0 };
	char *p, *tok, *save = NULL;
	size_t cap;

	/* trailing spaces go, unless escaped with a backslash */
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r') &&
	       !(len > 1 && line[len - 2] == '\\'))
		len--;
	if (len == 0 || line[0] == '#')
		return false;
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
		return false;
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
		return false;
	}
	r.kind = RULE_PATH;
	for (size_t s = anchored ? 0 : 1; s < r.nseg; s++)
		if (!is_literal(r.seg[s]))
			r.kind = RULE_GLOB;
	if (r.kind == RULE_PATH && !anchored) {
		r.kind = r.nseg == 2 ? RULE_NAME : RULE_GLOB;
	}
	if (r.kind == RULE_NAME) {
		r.key = gw_xstrdup(r.seg[1]);
	} else if (r.kind == RULE_PATH) {
		struct gw_strbuf sb;
		gw_strbuf_init(&sb);
		for (size_t s = 0; s < r.nseg; s++)
			gw_strbuf_printf(&sb, "%s%s", s ? "/" : "", r.seg[s]);
		r.key = gw_strbuf_detach(&sb);
	}
	r.origin = gw_xstrdup(origin);
	if (ig->n == ig->cap) {
		ig->cap = ig->cap ? ig->cap * 2 : 8;
		ig->v = gw_xrealloc(ig->v, ig->cap * sizeof(*ig->v));
	}
	size_t ri = ig->n++;
	ig->v[ri] = r;
	if (r.kind == RULE_NAME) {
		index_add(&ig->names, ig->v, ri);
	} else if (r.kind == RULE_PATH) {
		index_add(&ig->paths, ig->v, ri);
	} else {
		ig->glob = gw_xrealloc(ig->glob, (ig->nglob + 1) * sizeof(size_t));
		ig->glob[ig->nglob++] = ri;
	}
	return r.kind == RULE_GLOB;
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
		if (add_line(ig, text, n, origin) && ++ig->globs_in_file > GW_IGNORE_GLOBS_MAX) {
			/* the rest is not read: the commit is refused, not half-excluded */
			ig->over_line = lineno;
			snprintf(ig->over_file, sizeof(ig->over_file), "%s", file);
			return;
		}
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
 * blow-up. next and cur hold nn + 2 each, from the caller. */
static bool match_segs(char *const *pat, size_t np, char *const *path, size_t nn, bool *next, bool *cur)
{
	memset(next, 0, (nn + 2) * sizeof(bool));
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
	return next[0];
}

/* The last rule that matches the first n segments (joined: norm[0..plen))
 * decides; a negation re-includes. The indexes give the last literal rule
 * that matches, then only rules with wildcards after it are tried. */
static const struct rule *decide(const struct gw_ignore *ig, char *const *segs, size_t n, const char *norm, size_t plen,
				 bool is_dir, bool *scratch)
{
	size_t hit = index_find(&ig->paths, ig->v, norm, plen, is_dir);
	size_t byname = index_find(&ig->names, ig->v, segs[n - 1], strlen(segs[n - 1]), is_dir);
	if (byname != NONE && (hit == NONE || byname > hit))
		hit = byname;
	for (size_t g = ig->nglob; g-- > 0;) {
		const struct rule *r = &ig->v[ig->glob[g]];
		if (hit != NONE && ig->glob[g] < hit)
			break;
		if (r->dir_only && !is_dir)
			continue;
		if (match_segs(r->seg, r->nseg, segs, n, scratch, scratch + n + 2)) {
			hit = ig->glob[g];
			break;
		}
	}
	return hit != NONE && !ig->v[hit].negate ? &ig->v[hit] : NULL;
}

/* The folders of path from first_level on (1: all of them); the ones
 * before are known to be kept. */
static const char *match_from(const struct gw_ignore *ig, const char *path, bool is_dir, size_t first_level)
{
	char *copy, *norm, *tok, *save = NULL, **segs;
	size_t n = 0, cap = 2, *ends;
	const char *by = NULL;
	bool *scratch;

	if (!ig || ig->n == 0)
		return NULL;
	for (const char *c = path; *c; c++)
		cap += *c == '/';
	/* one allocation per path, none per rule */
	segs = gw_xcalloc(cap, sizeof(char *));
	ends = gw_xcalloc(cap, sizeof(size_t));
	scratch = gw_xcalloc(2 * (cap + 2), sizeof(bool));
	copy = gw_xstrdup(path);
	norm = gw_xcalloc(strlen(path) + 1, 1);
	size_t nlen = 0;
	for (tok = strtok_r(copy, "/", &save); tok; tok = strtok_r(NULL, "/", &save)) {
		if (n)
			norm[nlen++] = '/';
		size_t tl = strlen(tok);
		memcpy(norm + nlen, tok, tl);
		nlen += tl;
		ends[n] = nlen;
		segs[n++] = tok;
	}
	if (first_level > n)
		first_level = n ? n : 1;
	/* as in git, nothing inside an excluded folder can be re-included */
	for (size_t k = first_level; k <= n && !by; k++) {
		const struct rule *r = decide(ig, segs, k, norm, ends[k - 1], k < n || is_dir, scratch);
		if (r)
			by = r->origin;
	}
	free(segs);
	free(ends);
	free(scratch);
	free(norm);
	free(copy);
	return by;
}

const char *gw_ignore_match(const struct gw_ignore *ig, const char *path, bool is_dir)
{
	return match_from(ig, path, is_dir, 1);
}

const char *gw_ignore_match_entry(const struct gw_ignore *ig, const char *path, bool is_dir)
{
	size_t level = 1;
	for (const char *c = path; *c; c++)
		level += *c == '/';
	return match_from(ig, path, is_dir, level);
}

struct gw_ignore *gw_manifest_ignore_new(struct gw_manifest_set *set, const char *text, size_t len)
{
	struct gw_ignore *ig = gw_ignore_new();
	if (text)
		gw_ignore_add_text(ig, ".gitwardignore", text, len);
	for (size_t i = 0; set->exclude && i < set->exclude->n; i++)
		gw_ignore_add_pattern(ig, set->exclude->v[i]);
	gw_manifest_ignore_check(set, ig);
	return ig;
}

void gw_manifest_ignore_check(struct gw_manifest_set *set, const struct gw_ignore *ig)
{
	if (ig && ig->over_line)
		gw_diags_add(&set->diags, ig->over_file, ig->over_line, 1,
			     "more than %u rules with wildcards (*, ?, [ or \\); rules without them have no such limit",
			     GW_IGNORE_GLOBS_MAX);
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
