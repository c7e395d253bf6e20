/* Manifests: YAML bytes -> position-carrying nodes -> validated resources.
 * Every problem of a commit is collected as a diagnostic; nothing stops at
 * the first one. */
#ifndef GITWARD_MANIFEST_H
#define GITWARD_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gitward/resource.h"
#include "gitward/util.h"

/* Bounds on hostile input. */
#define GW_MANIFEST_FILE_MAX (1u << 20) /* bytes per file */
#define GW_MANIFEST_COMMIT_MAX (128u << 20) /* bytes per commit */
#define GW_MANIFEST_FILES_MAX 100000u /* files per commit */
#define GW_MANIFEST_DOCS_MAX 10000u /* documents per file */
#define GW_MANIFEST_DEPTH_MAX 32u /* nesting depth */
#define GW_MANIFEST_NODES_MAX 200000u /* nodes per file */
#define GW_IGNORE_GLOBS_MAX 1000u /* rules with wildcards in a .gitwardignore; literal ones are indexed */
#define GW_MANIFEST_TREE_DEPTH_MAX 64u /* folders inside folders, from the top of the tree */

/* Diagnostics kept: a hostile commit can hold millions of problems, so at
 * most GW_DIAGS_FILE_MAX per file and GW_DIAGS_COMMIT_MAX in all are kept;
 * the rest are counted into "… and N more" diagnostics. */
#define GW_DIAGS_FILE_MAX 100u
#define GW_DIAGS_COMMIT_MAX 1000u

struct gw_diag {
	char *file;
	unsigned line, col;
	char *msg;
	size_t more; /* > 0: the "… and N more" summary of its file ("" file: of the commit) */
};

struct gw_diags {
	struct gw_diag *v;
	size_t n, cap;
	size_t dropped; /* past the commit cap */
	char *cur; /* the file of the last diagnostic, and how many it has */
	size_t cur_n;
};

void gw_diags_init(struct gw_diags *d);
void gw_diags_free(struct gw_diags *d);
void gw_diags_add(struct gw_diags *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Order by file, line, column so output is stable whatever the read order;
 * apply the per-file cap exactly and add the "… and N more" summaries. */
void gw_diags_sort(struct gw_diags *d);
/* Would a diagnostic for file be dropped by the caps? (skip costly hints) */
int gw_diags_full(const struct gw_diags *d, const char *file);
/* Problems found, the ones folded into summaries included. */
size_t gw_diags_count(const struct gw_diags *d);

/* A parsed YAML node with its position (1-based). */
enum gw_ynode_type { GW_YNODE_SCALAR, GW_YNODE_SEQ, GW_YNODE_MAP };

struct gw_ynode {
	enum gw_ynode_type type;
	unsigned line, col;
	/* scalar */
	const char *value;
	size_t len;
	int plain; /* unquoted: may be null/number */
	/* sequence: items[0..n); mapping: items[2i] key, items[2i+1] value */
	struct gw_ynode **items;
	size_t n;
};

struct gw_arena;
struct gw_manifest_cache;

/* Parse one file into its documents. Syntax errors become diagnostics; the
 * documents parsed before the error are still returned. Nodes live in the
 * arena. */
int gw_yaml_parse(struct gw_ynode ***out_docs, size_t *out_n, struct gw_arena *arena, const char *file,
		  const char *data, size_t len, struct gw_diags *diags);

/* A set of resources: what one commit (or one validate run) declares. */
struct gw_manifest_set {
	struct gw_resource **v;
	size_t n, cap;
	size_t bytes, files; /* read so far, for the bounds above */
	struct gw_strlist invalid_names; /* declared by documents that failed validation */
	size_t invalid_cap;
	struct gw_diags diags;
	/* borrowed, set before reading: --exclude patterns (gitignore syntax),
	 * applied after the repository's .gitwardignore */
	const struct gw_strlist *exclude;
	/* files and folders left out by those rules: path -> the rule */
	struct gw_strmap skipped;
	size_t skipped_more; /* past GW_DIAGS_COMMIT_MAX entries: only counted */
	/* borrowed, optional: resources already parsed, by blob id
	 * (gitward/manifest_cache.h) */
	struct gw_manifest_cache *cache;
	/* borrowed, optional: the node's labels ("node" included); the files
	 * named by resources not selected for the node are not read, only their
	 * blob ids (lib/source/git.c). NULL: every resource's are read. */
	const struct gw_strmap *node_labels;
	/* the places read that held no manifest file at all ("the repository",
	 * "--path apps", a validate PATH): a warning, never a problem */
	struct gw_strlist empty;
};

void gw_manifest_set_init(struct gw_manifest_set *set);
void gw_manifest_set_free(struct gw_manifest_set *set);
/* Parse and validate one file's bytes; resources are appended, problems are
 * added to set->diags. */
void gw_manifest_set_add_file(struct gw_manifest_set *set, const char *file, const char *data, size_t len);
/* Cross-resource checks: duplicate names, dependsOn targets, cycles. */
void gw_manifest_set_finish(struct gw_manifest_set *set);
/* Is "name" a valid file to load? (*.yaml / *.yml) */
int gw_manifest_is_manifest_name(const char *name);
/* Load files and directories from disk (validate). Directories are walked
 * recursively, hidden entries skipped, symlinks not followed. */
void gw_manifest_set_add_path(struct gw_manifest_set *set, const char *path);

/* Exclusions in gitignore syntax (negation, folder patterns, "**", anchored
 * patterns), matched against paths relative to the repository root. */
struct gw_ignore;
struct gw_ignore *gw_ignore_new(void);
void gw_ignore_free(struct gw_ignore *ig);
/* The lines of a .gitwardignore; file names them in the origin of each rule. */
void gw_ignore_add_text(struct gw_ignore *ig, const char *file, const char *text, size_t len);
/* One --exclude GLOB (the same syntax); added last, it wins. */
void gw_ignore_add_pattern(struct gw_ignore *ig, const char *pattern);
/* NULL when path is kept; else the rule that excludes it (".gitwardignore:2:
 * docs/" or "--exclude ci/ci.yml"), the path's folders included: nothing
 * inside an excluded folder comes back. */
const char *gw_ignore_match(const struct gw_ignore *ig, const char *path, bool is_dir);
/* The same for an entry of a folder already found kept: only path itself is
 * matched, not its folders again (a tree walk prunes excluded folders). */
const char *gw_ignore_match_entry(const struct gw_ignore *ig, const char *path, bool is_dir);
/* The rules for a repository: its .gitwardignore (text may be NULL) then
 * set->exclude; too many rules with wildcards is a problem of set. */
struct gw_ignore *gw_manifest_ignore_new(struct gw_manifest_set *set, const char *text, size_t len);
/* Add to set->diags the problem of ig's .gitwardignore, if any (for rules
 * compiled for an earlier pass and kept). */
void gw_manifest_ignore_check(struct gw_manifest_set *set, const struct gw_ignore *ig);
/* Record that path was left out by rule `by` (manifest files and folders only). */
void gw_manifest_set_skip(struct gw_manifest_set *set, const char *path, const char *by);
/* Record that `where` (as set->empty names it) held no manifest file. */
void gw_manifest_set_empty(struct gw_manifest_set *set, const char *where);
/* The warning about set->empty into buf ("no manifest in --path apps (no
 * *.yaml or *.yml file)"), or NULL when every place read held one. */
const char *gw_manifest_set_empty_warning(char *buf, size_t size, const struct gw_manifest_set *set);

/* Per-node values (lib/manifest/values.c): in the strings of a spec,
 * ${node.name} and ${node.labels.KEY} are the node's name and label values;
 * $${ writes a literal ${. Not in nodeSelector, dependsOn, secretEnvFiles,
 * sources, plugin or config, nor in map keys (env names). */
#define GW_VALUE_REF_MAX 80u /* characters between ${ and } shown in a message */
#define GW_VALUE_STRING_MAX (1u << 20) /* bytes of one string with the values put in */
/* Expand s for a node (labels: its labels, "node" its name) into *out
 * (caller frees); labels NULL: only check the syntax (*out untouched).
 * -EINVAL: a syntax error; -ENOENT: a label the node lacks; -E2BIG: too
 * long. On failure msg says why and *at is the byte offset of its "$". */
int gw_values_expand(char **out, size_t *at, char *msg, size_t size, const char *s, const struct gw_strmap *labels);
/* Does field (a path like "spec.env.A" or "spec.command[0]") take node values? */
int gw_values_field(const char *path);
/* r as on the node with labels: NULL in *out when r holds no "${" (r
 * applies as it is), else a new finalized resource with the values put in
 * and validated. On failure (-ENOENT: a label the node lacks; -EINVAL: a
 * value that is not valid there) err says what, where and for which node,
 * without the resource's key, and *out is a copy of r as declared (for the
 * plan: it must never be started). */
int gw_manifest_node_values(struct gw_resource **out, const struct gw_resource *r, const struct gw_strmap *labels,
			    struct gw_error *err);

#endif
