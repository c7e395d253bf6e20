/* What a review reads besides commits: inventories of nodes (`diff
 * --nodes`), and a node's recorded status (`--against`: a file or an
 * agent's GET /status) taken as what it runs. The plans themselves are
 * made by the one pass (lib/pass/pass.c) through its observers. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/config.h"
#include "gitward/review.h"
#include "gitward/state.h"

void gw_review_observed_free(struct gw_observed *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		gw_observed_clear(&v[i]);
	free(v);
}

/* ---- inventories ---- */

void gw_inventory_free(struct gw_inventory *inv)
{
	for (size_t i = 0; i < inv->n; i++) {
		free(inv->v[i].name);
		gw_strmap_free(&inv->v[i].labels);
	}
	free(inv->v);
	memset(inv, 0, sizeof(*inv));
}

static const struct gw_ynode *map_get(const struct gw_ynode *m, const char *key)
{
	for (size_t i = 0; m && m->type == GW_YNODE_MAP && i + 1 < m->n; i += 2)
		if (m->items[i]->type == GW_YNODE_SCALAR && !strcmp(m->items[i]->value, key))
			return m->items[i + 1];
	return NULL;
}

static void load_node(struct gw_inventory *inv, const char *path, const struct gw_ynode *n, struct gw_diags *d)
{
	struct gw_strmap node_labels = { 0 };
	struct gw_error err;
	const struct gw_ynode *name = map_get(n, "name"), *labels = map_get(n, "labels");

	if (n->type != GW_YNODE_MAP) {
		gw_diags_add(d, path, n->line, n->col, "nodes: expected a mapping with name and labels");
		return;
	}
	for (size_t i = 0; i + 1 < n->n; i += 2)
		if (strcmp(n->items[i]->value, "name") && strcmp(n->items[i]->value, "labels"))
			gw_diags_add(d, path, n->items[i]->line, n->items[i]->col, "%s: unknown field (name, labels)",
				     n->items[i]->value);
	if (!name || name->type != GW_YNODE_SCALAR) {
		gw_diags_add(d, path, name ? name->line : n->line, name ? name->col : n->col,
			     "name: expected the node's name");
		return;
	}
	if (gw_config_check_node(name->value, &err) < 0) /* the rule of --node */
		gw_diags_add(d, path, name->line, name->col, "name: %s", err.msg);
	for (size_t i = 0; i < inv->n; i++)
		if (!strcmp(inv->v[i].name, name->value))
			gw_diags_add(d, path, name->line, name->col, "name: node \"%s\" is listed twice", name->value);
	if (labels && labels->type != GW_YNODE_MAP)
		gw_diags_add(d, path, labels->line, labels->col, "labels: expected a mapping of label: value");
	for (size_t i = 0; labels && labels->type == GW_YNODE_MAP && i + 1 < labels->n; i += 2) {
		const struct gw_ynode *k = labels->items[i], *v = labels->items[i + 1];
		if (v->type != GW_YNODE_SCALAR || !strcmp(k->value, "node")) {
			gw_diags_add(d, path, k->line, k->col, "labels.%s: expected a string%s", k->value,
				     !strcmp(k->value, "node") ? " (and not \"node\", which is the name)" : "");
			continue;
		}
		gw_strmap_set(&node_labels, k->value, v->value);
	}
	struct gw_inventory_node *in = &inv->v[inv->n++];
	in->name = gw_xstrdup(name->value);
	in->labels = node_labels; /* now owned by the inventory */
	gw_strmap_set(&in->labels, "node", in->name);
}

int gw_inventory_load(struct gw_inventory *out, const char *path, struct gw_diags *diags)
{
	struct gw_error err;
	struct gw_arena *arena;
	struct gw_ynode **docs;
	size_t ndocs, before = diags->n, len;
	char *data;

	memset(out, 0, sizeof(*out));
	if (gw_file_read(&data, &len, path, GW_MANIFEST_FILE_MAX, &err) < 0) {
		gw_diags_add(diags, path, 0, 0, "%s", err.msg);
		return -EINVAL;
	}
	arena = gw_arena_new();
	gw_yaml_parse(&docs, &ndocs, arena, path, data, len, diags);
	free(data);
	const struct gw_ynode *nodes = ndocs == 1 ? map_get(docs[0], "nodes") : NULL;
	if (diags->n == before && (!nodes || nodes->type != GW_YNODE_SEQ || nodes->n == 0))
		gw_diags_add(diags, path, nodes ? nodes->line : 1, nodes ? nodes->col : 1,
			     "expected one document with \"nodes:\", a list of {name, labels}");
	else if (diags->n == before && nodes->n > GW_INVENTORY_NODES_MAX)
		gw_diags_add(diags, path, nodes->line, nodes->col, "more than %u nodes", GW_INVENTORY_NODES_MAX);
	else if (diags->n == before) {
		out->v = gw_xcalloc(nodes->n, sizeof(*out->v));
		for (size_t i = 0; i < nodes->n; i++)
			load_node(out, path, nodes->items[i], diags);
	}
	gw_arena_free(arena);
	if (diags->n != before) {
		gw_inventory_free(out);
		return -EINVAL;
	}
	return 0;
}

/* ---- a node's recorded status ---- */

static int bad_status(struct gw_error *err, const char *origin, const char *why)
{
	return gw_error_set(err, -EBADMSG, "%s: not the JSON of `gitward status --output json`: %s", origin, why);
}

void gw_review_node_free(struct gw_review_node *nd)
{
	free(nd->node);
	free(nd->commit);
	free(nd->ref);
	gw_strmap_free(&nd->labels);
	memset(nd, 0, sizeof(*nd));
}

/* The node the document describes: name, labels, commit. */
static int status_node(struct gw_review_node *out, json_t *root, const char *origin, struct gw_error *err)
{
	struct gw_review_node nd = { 0 };
	const char *node = json_string_value(json_object_get(root, "node"));
	const char *commit = json_string_value(json_object_get(root, "commit"));
	const char *ref = json_string_value(json_object_get(root, "ref"));
	json_t *labels = json_object_get(root, "labels");
	char why[100];

	nd.has_labels = labels && !json_is_null(labels);
	if (nd.has_labels && gw_state_labels_parse(&nd.labels, labels) < 0) {
		snprintf(why, sizeof(why), "\"labels\": expected an object of at most %d strings", GW_STATE_LABELS_MAX);
		return bad_status(err, origin, why);
	}
	nd.node = node ? gw_xstrdup(node) : NULL;
	nd.commit = commit ? gw_xstrdup(commit) : NULL;
	nd.ref = ref ? gw_xstrdup(ref) : NULL;
	*out = nd;
	return 0;
}

/* One resource of the document, as observed. */
static int status_resource(struct gw_observed *o, json_t *r)
{
	const char *kind = json_string_value(json_object_get(r, "kind"));
	const char *name = json_string_value(json_object_get(r, "name"));
	enum gw_kind k;

	if (!kind || gw_kind_from_string(&k, kind) < 0 || gw_record_parse(o, k, name, r) < 0)
		return -EBADMSG;
	gw_state_entry_status(o, r);
	return 0;
}

int gw_review_observed_from_status(struct gw_observed **out, size_t *out_n, struct gw_review_node *out_node,
				   const char *text, size_t len, const char *origin, struct gw_error *err)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr), *res;
	struct gw_observed *v = NULL;
	struct gw_review_node nd = { 0 };
	size_t n = 0;
	int rc = 0;

	if (!root)
		return bad_status(err, origin, jerr.text);
	res = json_object_get(root, "resources");
	if (!json_is_object(root) || !json_is_array(res)) {
		rc = bad_status(err, origin, "no \"resources\" list");
		goto out;
	}
	v = gw_xcalloc(json_array_size(res) + 1, sizeof(*v));
	for (size_t i = 0; i < json_array_size(res); i++, n++) {
		char why[200];
		if (status_resource(&v[n], json_array_get(res, i)) < 0) {
			snprintf(why, sizeof(why), "resources[%zu]: expected kind, name and a spec_hash of 64 hex", i);
			rc = bad_status(err, origin, why);
			goto out;
		}
	}
	if ((rc = status_node(&nd, root, origin, err)) < 0)
		goto out;
	if (out_node)
		*out_node = nd;
	else
		gw_review_node_free(&nd);
	*out = v;
	*out_n = n;
	v = NULL; /* now owned by *out */
out:
	gw_review_observed_free(v, n);
	json_decref(root);
	return rc;
}

struct body {
	struct gw_strbuf sb;
	bool too_big;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct body *b = ud;
	if (b->sb.len + size * n > GW_STATUS_BYTES_MAX) {
		b->too_big = true;
		return 0;
	}
	gw_strbuf_add(&b->sb, p, size * n);
	return size * n;
}

static int get_url(char **out, size_t *out_len, const char *url, struct gw_error *err)
{
	struct body b = { 0 };
	long code = 0;
	CURL *c = curl_easy_init();
	CURLcode cc;

	if (!c)
		return gw_error_set(err, -ENOMEM, "%s: cannot start libcurl", url);
	gw_strbuf_init(&b.sb);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 60000L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(c);
	if (cc != CURLE_OK || code != 200) {
		int rc = b.too_big
			? gw_error_set(err, -EFBIG, "--against %s: larger than %u bytes", url, GW_STATUS_BYTES_MAX)
			: cc != CURLE_OK ? gw_error_set(err, -EIO, "--against %s: %s", url, curl_easy_strerror(cc))
					 : gw_error_set(err, -EIO, "--against %s: HTTP status %ld", url, code);
		gw_strbuf_free(&b.sb);
		return rc;
	}
	gw_strbuf_add(&b.sb, "", 0);
	*out_len = b.sb.len;
	*out = gw_strbuf_detach(&b.sb);
	return 0;
}

int gw_review_status_read(char **out, size_t *out_len, const char *file_or_url, struct gw_error *err)
{
	if (!strncmp(file_or_url, "http://", 7) || !strncmp(file_or_url, "https://", 8))
		return get_url(out, out_len, file_or_url, err);
	int rc = gw_file_read(out, out_len, file_or_url, GW_STATUS_BYTES_MAX, err);
	return rc < 0 ? gw_error_prefix(err, "--against") : 0;
}
