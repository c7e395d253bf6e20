/* Structure-aware fuzz target: the input is a program that writes manifests
 * with the shapes byte-level fuzzing rarely reaches (long dependsOn chains and
 * cycles, lists of repeated names, mappings of many keys, deep nesting, many
 * documents, files at the size limit), validates them as one commit, then
 * plans them against records that may repeat or cycle their dependsOn. It
 * aborts when a plan could wait on itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/manifest.h"
#include "gitward/plan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct prog {
	const uint8_t *p;
	size_t n;
};

static unsigned u8(struct prog *g)
{
	if (!g->n)
		return 0;
	g->n--;
	return *g->p++;
}

static unsigned u16(struct prog *g)
{
	unsigned lo = u8(g); /* sequenced: the same input, the same program */
	return lo | u8(g) << 8;
}

/* Most shapes small (fast runs), one in sixteen near the limits (slow ones). */
static unsigned size(struct prog *g, unsigned big, unsigned small)
{
	return u8(g) % 16 == 9 ? big : small;
}

/* A name from a small set, so names collide, repeat and close cycles. */
static void name(struct gw_strbuf *sb, struct prog *g)
{
	gw_strbuf_printf(sb, "r%u", u8(g) % 24);
}

static void head(struct gw_strbuf *sb, const char *kind, const char *nm)
{
	gw_strbuf_printf(sb, "---\napiVersion: gitward/v1\nkind: %s\nmetadata: {name: %s}\nspec:\n", kind, nm);
	if (!strcmp(kind, "Process"))
		gw_strbuf_puts(sb, "  command: [/bin/true]\n");
	else if (!strcmp(kind, "Container"))
		gw_strbuf_puts(sb, "  image: busybox\n");
	else
		gw_strbuf_puts(sb, "  kernel: /k\n");
}

static void one_doc(struct gw_strbuf *sb, struct prog *g)
{
	static const char *const kinds[] = { "Process", "Container", "VM" };
	struct gw_strbuf nm;
	gw_strbuf_init(&nm);
	name(&nm, g);
	head(sb, kinds[u8(g) % 3], nm.s);
	gw_strbuf_free(&nm);
	unsigned deps = u8(g) % 4;
	if (deps) {
		gw_strbuf_puts(sb, "  dependsOn: [");
		for (unsigned i = 0; i < deps; i++) {
			gw_strbuf_puts(sb, i ? ", " : "");
			name(sb, g);
		}
		gw_strbuf_puts(sb, "]\n");
	}
	if (u8(g) & 1) {
		gw_strbuf_puts(sb, "  nodeSelector: {role: ");
		gw_strbuf_puts(sb, u8(g) & 1 ? "a}\n" : "b}\n");
	}
}

/* op 1: c0 -> c1 -> ... -> c(K-1), closed into a cycle or not */
static void chain(struct gw_strbuf *sb, struct prog *g)
{
	unsigned max = size(g, 9000, 300), k = u16(g) % max + 1, cycle = u8(g) & 1;
	char nm[32];
	for (unsigned i = 0; i < k; i++) {
		snprintf(nm, sizeof(nm), "c%u", i);
		head(sb, "Process", nm);
		if (i + 1 < k || cycle)
			gw_strbuf_printf(sb, "  dependsOn: [c%u]\n", (i + 1) % k);
	}
}

/* op 2: dependsOn holding one name many times */
static void repeats(struct gw_strbuf *sb, struct prog *g)
{
	unsigned max = size(g, 30000, 500), k = u16(g) % max + 2;
	head(sb, "Process", "rep");
	gw_strbuf_puts(sb, "  dependsOn: [");
	for (unsigned i = 0; i < k; i++)
		gw_strbuf_puts(sb, i ? ", r1" : "r1");
	gw_strbuf_puts(sb, "]\n");
}

/* op 3: env of many keys (past the node limit when big), descending, maybe
 * with a repeat */
static void many_keys(struct gw_strbuf *sb, struct prog *g)
{
	unsigned max = size(g, 101000, 2000), k = u16(g) * 2u % max + 1, dup = u8(g) & 1;
	head(sb, "Process", "keys");
	gw_strbuf_puts(sb, "  env: {");
	for (unsigned i = k; i > 0; i--)
		gw_strbuf_printf(sb, "%sE%x: x", i == k ? "" : ", ", i);
	if (dup)
		gw_strbuf_printf(sb, ", E%x: y", k / 2 + 1);
	gw_strbuf_puts(sb, "}\n");
}

/* op 4: nesting around the limit, under a field that takes a mapping */
static void deep(struct gw_strbuf *sb, struct prog *g)
{
	unsigned d = u8(g) % 40;
	head(sb, "Process", "deep");
	gw_strbuf_puts(sb, "  healthCheck: ");
	for (unsigned i = 0; i < d; i++)
		gw_strbuf_puts(sb, "{a: ");
	gw_strbuf_puts(sb, "1");
	for (unsigned i = 0; i < d; i++)
		gw_strbuf_puts(sb, "}");
	gw_strbuf_puts(sb, "\n");
}

/* op 5: many documents, around the per-file limit */
static void many_docs(struct gw_strbuf *sb, struct prog *g)
{
	unsigned max = size(g, 10100, 50), k = u16(g) % max;
	for (unsigned i = 0; i < k; i++)
		gw_strbuf_puts(sb, "---\n");
}

/* op 6: raw bytes from the input */
static void raw(struct gw_strbuf *sb, struct prog *g)
{
	unsigned k = u8(g) % 64;
	if (k > g->n)
		k = (unsigned)g->n;
	gw_strbuf_add(sb, (const char *)g->p, k);
	g->p += k;
	g->n -= k;
}

/* op 7: a file padded to 4 KiB or to the size limit, or one byte past */
static void pad(struct gw_strbuf *sb, struct prog *g)
{
	size_t want = size(g, GW_MANIFEST_FILE_MAX, 4096) + (u8(g) & 1);
	gw_strbuf_puts(sb, "\n#");
	while (sb->len < want)
		gw_strbuf_puts(sb,
			       sb->len + 64 <= want ? "################################################################"
						    : "#");
}

static void check_plan(const struct gw_plan *plan)
{
	for (size_t i = 0; i < plan->n; i++)
		for (size_t k = 0; k < plan->v[i].nafter; k++)
			if (plan->v[i].after[k] >= i)
				abort(); /* an action waiting on itself or a later one */
}

/* Plan the commit against records of some of its resources plus records of
 * resources gone from Git, whose dependsOn may repeat and cycle. */
static void plan(struct gw_manifest_set *set, struct prog *g)
{
	size_t nrec = u8(g) % 8, nobs = 0;
	struct gw_observed *obs = gw_xcalloc(set->n + nrec + 1, sizeof(*obs));
	struct gw_resource **desired = gw_xcalloc(set->n + 1, sizeof(*desired));
	size_t nd = 0;
	for (size_t i = 0; i < set->n; i++) {
		unsigned b = u8(g);
		if (b & 1)
			desired[nd++] = set->v[i];
		if (b & 2)
			gw_observed_start(&obs[nobs++], set->v[i]);
	}
	for (size_t i = 0; i < nrec; i++) {
		struct gw_observed *o = &obs[nobs++];
		char nm[16];
		snprintf(nm, sizeof(nm), "gone%zu", i);
		o->kind = (enum gw_kind)(u8(g) % 3);
		o->name = gw_xstrdup(nm);
		memset(o->spec_hash, 'a', 64);
		size_t nd2 = u8(g) % 60;
		o->depends_on.v = gw_xcalloc(nd2 + 1, sizeof(char *));
		for (size_t k = 0; k < nd2; k++) {
			snprintf(nm, sizeof(nm), "gone%u", u8(g) % 8);
			o->depends_on.v[o->depends_on.n++] = gw_xstrdup(nm);
		}
	}
	struct gw_plan p;
	struct gw_error err;
	struct gw_plan_opts opts = { .prune = true, .allow_empty = true };
	if (gw_plan_build(&p, desired, nd, obs, nobs, &opts, &err) == 0) {
		check_plan(&p);
		gw_plan_free(&p);
	}
	for (size_t i = 0; i < nobs; i++)
		gw_observed_clear(&obs[i]);
	free(obs);
	free(desired);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct prog g = { data, size };
	struct gw_manifest_set set;
	unsigned nfiles = u8(&g) % 4 + 1;

	gw_manifest_set_init(&set);
	for (unsigned f = 0; f < nfiles; f++) {
		struct gw_strbuf sb;
		char file[32];
		gw_strbuf_init(&sb);
		for (unsigned steps = u8(&g) % 6 + 1; steps > 0 && sb.len <= GW_MANIFEST_FILE_MAX; steps--) {
			switch (u8(&g) % 8) {
			case 0:
				one_doc(&sb, &g);
				break;
			case 1:
				chain(&sb, &g);
				break;
			case 2:
				repeats(&sb, &g);
				break;
			case 3:
				many_keys(&sb, &g);
				break;
			case 4:
				deep(&sb, &g);
				break;
			case 5:
				many_docs(&sb, &g);
				break;
			case 6:
				raw(&sb, &g);
				break;
			default:
				pad(&sb, &g);
				break;
			}
		}
		snprintf(file, sizeof(file), "f%u.yaml", f);
		gw_manifest_set_add_file(&set, file, sb.s ? sb.s : "", sb.len);
		gw_strbuf_free(&sb);
	}
	gw_manifest_set_finish(&set);
	if (set.diags.n > GW_DIAGS_COMMIT_MAX + 1)
		abort(); /* the caps hold */
	plan(&set, &g);
	gw_manifest_set_free(&set);
	return 0;
}
