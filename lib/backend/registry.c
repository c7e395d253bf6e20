/* The one place that lists backends, and the instances a pass builds from
 * them. Adding a backend: its own file exporting one ops table, plus one
 * line below. The planner, apply and the loop only go through the set. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/backend.h"

const struct gw_backend_ops *const gw_backend_registry[] = {
	&gw_backend_process,
	&gw_backend_container,
	&gw_backend_vm,
	&gw_backend_external, /* plugins speaking contrib/plugins/PROTOCOL.md */
	NULL,
};

static char *dup_or_null(const char *s)
{
	return s ? gw_xstrdup(s) : NULL;
}

static void config_copy(struct gw_backend_config *dst, const struct gw_backend_config *src)
{
	dst->state_dir = dup_or_null(src->state_dir);
	dst->run_dir = dup_or_null(src->run_dir);
	dst->log_dir = dup_or_null(src->log_dir);
	dst->container_socket = dup_or_null(src->container_socket);
	dst->self_exe = dup_or_null(src->self_exe);
	dst->qemu_binary = dup_or_null(src->qemu_binary);
	dst->age_identity = dup_or_null(src->age_identity);
	dst->plugin_dir = dup_or_null(src->plugin_dir);
}

static void config_free(struct gw_backend_config *c)
{
	free((char *)c->state_dir);
	free((char *)c->run_dir);
	free((char *)c->log_dir);
	free((char *)c->container_socket);
	free((char *)c->self_exe);
	free((char *)c->qemu_binary);
	free((char *)c->age_identity);
	free((char *)c->plugin_dir);
}

int gw_backend_set_open(struct gw_backend_set *out, const struct gw_backend_ops *const *ops,
			const struct gw_backend_config *cfg, struct gw_error *err)
{
	struct gw_backend_set set = { 0 };
	size_t n = 0;

	(void)err; /* a backend that cannot start fails its own resources only */
	if (!ops)
		ops = gw_backend_registry;
	while (ops[n])
		n++;
	set.v = gw_xcalloc(n + 1, sizeof(*set.v));
	for (size_t i = 0; i < n; i++) {
		struct gw_backend *b = gw_xcalloc(1, sizeof(*b));
		struct gw_error ierr;
		b->ops = ops[i];
		config_copy(&b->cfg, cfg);
		if (b->ops->init && b->ops->init(&b->priv, b, &ierr) < 0) {
			snprintf(b->error, sizeof(b->error), "%s backend: %s", b->ops->name, ierr.msg);
			b->priv = NULL;
			gw_log(GW_LOG_WARN, "", "%s", b->error);
		}
		set.v[set.n++] = b;
	}
	*out = set;
	return 0;
}

void gw_backend_set_close(struct gw_backend_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct gw_backend *b = set->v[i];
		if (b->ops->done && !b->error[0])
			b->ops->done(b->priv);
		config_free(&b->cfg);
		free(b);
	}
	free(set->v);
	memset(set, 0, sizeof(*set));
}

struct gw_backend *gw_backend_set_for(const struct gw_backend_set *set, enum gw_kind kind)
{
	for (size_t i = 0; set && i < set->n; i++)
		if (set->v[i]->ops->kind == kind)
			return set->v[i];
	return NULL;
}

void gw_backend_set_pass_begin(const struct gw_backend_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i]->ops->pass_begin && !set->v[i]->error[0])
			set->v[i]->ops->pass_begin(set->v[i]);
}

void gw_backend_set_pass_end(const struct gw_backend_set *set)
{
	for (size_t i = 0; i < set->n; i++)
		if (set->v[i]->ops->pass_end && !set->v[i]->error[0])
			set->v[i]->ops->pass_end(set->v[i]);
}

void gw_backend_set_describe(json_t *fields, char *text, size_t size, const struct gw_observed *o, void *set)
{
	const struct gw_backend *b = gw_backend_set_for(set, o->kind);
	if (b && b->ops->describe)
		b->ops->describe(fields, text, size, b, o->handle);
}
