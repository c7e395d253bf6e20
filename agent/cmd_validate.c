/* `gitward validate PATH...` and `gitward version`. */
#define _GNU_SOURCE
#include <getopt.h>
#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "cli.h"
#include "gitward/schema.h"
#include "gitward/source.h"

static const char validate_usage[] =
	"usage: gitward validate [--output text|json|github] [--exclude GLOB] [--verbose] PATH...\n"
	"\n"
	"Check manifests on disk (files, or folders walked recursively for *.yaml and\n"
	"*.yml, hidden entries skipped). No git, no backend, files named by manifests\n"
	"need not exist. Every problem is reported as FILE:LINE:COL: MESSAGE.\n"
	"Exit 0 when all are valid, 1 when there is at least one problem.\n"
	"\n"
	"  --output text|json|github  github: one workflow annotation per problem\n"
	"  --exclude GLOB             leave matching files out (repeatable; gitignore syntax, after\n"
	"                             the .gitwardignore at the root of the work tree)\n"
	"  --verbose                  also list the files and folders left out, and by which rule\n";

/* validate -o json: the diagnostics, the resources and the skipped files */
static void print_json(const struct gw_manifest_set *set)
{
	json_t *root = json_object(), *errors = json_array(), *res = json_array();
	for (size_t i = 0; i < set->diags.n; i++) {
		json_t *e = json_object();
		json_object_set_new(e, "file", gw_json_string(set->diags.v[i].file));
		json_object_set_new(e, "line", json_integer(set->diags.v[i].line));
		json_object_set_new(e, "column", json_integer(set->diags.v[i].col));
		json_object_set_new(e, "message", gw_json_string(set->diags.v[i].msg));
		json_array_append_new(errors, e);
	}
	for (size_t i = 0; i < set->n; i++) {
		json_t *r = json_object();
		json_object_set_new(r, "kind", json_string(gw_kind_to_string(set->v[i]->kind)));
		json_object_set_new(r, "name", json_string(set->v[i]->name));
		json_object_set_new(r, "file", gw_json_string(set->v[i]->file));
		json_object_set_new(r, "spec_hash", json_string(set->v[i]->spec_hash));
		json_object_set_new(r, "spec", json_loads(set->v[i]->canonical, 0, NULL));
		json_array_append_new(res, r);
	}
	json_object_set_new(root, "valid", json_boolean(set->diags.n == 0));
	json_object_set_new(root, "files", json_integer((json_int_t)set->files));
	json_object_set_new(root, "resources", res);
	json_object_set_new(root, "errors", errors);
	json_t *skipped = json_array();
	for (size_t i = 0; i < set->skipped.n; i++)
		json_array_append_new(skipped,
				      json_pack("{s:o, s:o}", "path", gw_json_string(set->skipped.k[i]), "rule",
						gw_json_string(set->skipped.v[i])));
	json_object_set_new(root, "skipped", skipped);
	char *s = json_dumps(root, JSON_COMPACT);
	puts(s);
	free(s);
	json_decref(root);
}

int cmd_validate(int argc, char **argv)
{
	static const struct option opts[] = { { "output", required_argument, 0, 'o' },
					      { "exclude", required_argument, 0, 'x' },
					      { "verbose", no_argument, 0, 'v' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	enum output_format fmt = OUTPUT_TEXT;
	struct gw_manifest_set set;
	struct gw_config cfg; /* only its --exclude list, checked by the one setter */
	struct gw_error err;
	int c, verbose = 0;

	optind = 1;
	opterr = 0;
	gw_config_init(&cfg);
	while ((c = getopt_long(argc, argv, "ho:v", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(validate_usage, stdout);
			gw_config_free(&cfg);
			return 0;
		}
		if (c == 'v') {
			verbose = 1;
			continue;
		}
		if (c == 'x') {
			if (gw_config_set(&cfg, "exclude", optarg, &err) == 0)
				continue;
			fprintf(stderr, "gitward: %s\n", err.msg);
			gw_config_free(&cfg);
			return EXIT_USAGE;
		}
		if (c == 'o') {
			if (cli_parse_output(&fmt, optarg, "validate",
					     OUTPUT_BIT(OUTPUT_TEXT) | OUTPUT_BIT(OUTPUT_JSON) |
						     OUTPUT_BIT(OUTPUT_GITHUB)) == 0)
				continue;
			gw_config_free(&cfg);
			return EXIT_USAGE;
		}
		gw_config_free(&cfg);
		return cli_option_error("validate", opts, argv);
	}
	if (optind >= argc) {
		gw_config_free(&cfg);
		return cli_usage_error("validate", "validate needs at least one PATH (a manifest file or a folder)");
	}
	gw_manifest_set_init(&set);
	set.exclude = &cfg.excludes;
	for (int i = optind; i < argc; i++)
		gw_manifest_set_add_path(&set, argv[i]);
	gw_manifest_set_finish(&set);
	cli_warn_empty(&set);

	if (fmt == OUTPUT_JSON) {
		print_json(&set);
	} else if (fmt == OUTPUT_GITHUB) {
		cli_print_github(stdout, &set.diags);
	} else {
		if (verbose)
			cli_print_skipped(stdout, &set);
		cli_print_diags(&set.diags);
		size_t problems = gw_diags_count(&set.diags);
		if (problems)
			fprintf(stderr, "%zu problem%s found.\n", problems, problems == 1 ? "" : "s");
		else
			printf("%zu resource%s in %zu file%s: valid.\n", set.n, set.n == 1 ? "" : "s", set.files,
			       set.files == 1 ? "" : "s");
	}
	int rc = set.diags.n ? 1 : 0;
	gw_manifest_set_free(&set);
	gw_config_free(&cfg);
	return rc;
}

/* `schema` and `version` take no argument but --help. True when the command
 * is done here (--help or a usage error), with its exit code in *rc. */
static bool no_arguments(int *rc, const char *cmd, const char *usage, int argc, char **argv)
{
	static const struct option opts[] = { { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(usage, stdout);
			*rc = 0;
			return true;
		}
		*rc = cli_option_error(cmd, opts, argv);
		return true;
	}
	if (optind < argc) {
		char esc[300];
		*rc = cli_usage_error(cmd, "unexpected argument \"%s\": %s takes none",
				      gw_escape(esc, sizeof(esc), argv[optind]), cmd);
		return true;
	}
	return false;
}

int cmd_schema(int argc, char **argv)
{
	int rc;
	if (no_arguments(&rc, "schema",
			 "usage: gitward schema\n\nPrint the JSON Schema (draft 2020-12) of the manifests.\n", argc,
			 argv))
		return rc;
	char *s = gw_schema_json();
	puts(s);
	free(s);
	return 0;
}

static const char version_usage[] = "usage: gitward version [--output text|json]\n"
				    "\n"
				    "Print the version of gitward, the commit it was built from, and the versions\n"
				    "of the libraries it runs with (libgit2, libcurl, libyaml, jansson).\n";

int cmd_version(int argc, char **argv)
{
	static const struct option opts[] = { { "output", required_argument, 0, 'o' },
					      { "help", no_argument, 0, 'h' },
					      { 0, 0, 0, 0 } };
	enum output_format fmt = OUTPUT_TEXT;
	char libgit2[32];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "ho:", opts, NULL)) != -1) {
		if (c == 'h') {
			fputs(version_usage, stdout);
			return 0;
		}
		if (c == 'o') {
			if (cli_parse_output(&fmt, optarg, "version",
					     OUTPUT_BIT(OUTPUT_TEXT) | OUTPUT_BIT(OUTPUT_JSON)) == 0)
				continue;
			return EXIT_USAGE;
		}
		return cli_option_error("version", opts, argv);
	}
	if (optind < argc) {
		char esc[300];
		return cli_usage_error("version", "unexpected argument \"%s\": version takes none",
				       gw_escape(esc, sizeof(esc), argv[optind]));
	}
	/* the libraries' runtime versions, which a distribution upgrade can change
	 * under the same binary */
	gw_source_libgit2_version(libgit2, sizeof(libgit2));
	const char *curl = curl_version_info(CURLVERSION_NOW)->version;
	const char *yaml = yaml_get_version_string();
	const char *jansson = jansson_version_str();
	if (fmt == OUTPUT_JSON) {
		json_t *o = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "version", GW_VERSION, "commit", GW_COMMIT,
				      "libraries", "libgit2", libgit2, "libcurl", curl, "libyaml", yaml, "jansson",
				      jansson);
		char *text = o ? json_dumps(o, JSON_INDENT(2)) : NULL;
		if (!text) {
			json_decref(o);
			fprintf(stderr, "gitward: out of memory\n");
			return 1;
		}
		puts(text);
		free(text);
		json_decref(o);
		return 0;
	}
	printf("gitward %s\ncommit %s\nlibgit2 %s\nlibcurl %s\nlibyaml %s\njansson %s\n", GW_VERSION, GW_COMMIT,
	       libgit2, curl, yaml, jansson);
	return 0;
}
