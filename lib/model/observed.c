/* What runs, as one record for the planner, the state file and the
 * backends: names of states and health, and the making, freeing and
 * verdict of an observed resource. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/observed.h"

static const char *const state_names[] = { "running", "stopped", "failed", "pending" };
static const char *const health_names[] = { "unknown", "healthy", "unhealthy" };

const char *gw_state_to_string(enum gw_state s)
{
	return (unsigned)s < 4 ? state_names[s] : "pending";
}

int gw_state_from_string(enum gw_state *out, const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, state_names[i]) == 0) {
			*out = (enum gw_state)i;
			return 0;
		}
	return -EINVAL;
}

const char *gw_health_to_string(enum gw_health h)
{
	return (unsigned)h < 3 ? health_names[h] : "unknown";
}

int gw_health_from_string(enum gw_health *out, const char *s)
{
	for (int i = 0; i < 3; i++)
		if (strcmp(s, health_names[i]) == 0) {
			*out = (enum gw_health)i;
			return 0;
		}
	return -EINVAL;
}

void gw_observed_clear(struct gw_observed *o)
{
	free(o->name);
	free(o->canonical);
	free(o->handle);
	gw_strlist_free(&o->depends_on);
	gw_strmap_free(&o->env_digests);
	free(o->env_changed);
	memset(o, 0, sizeof(*o));
}

bool gw_observed_converged(const struct gw_observed *o)
{
	if (o->not_converged)
		return false;
	if (o->state == GW_STATE_RUNNING)
		return o->health != GW_HEALTH_UNHEALTHY;
	return o->state == GW_STATE_STOPPED && o->restart != GW_RESTART_ALWAYS;
}

void gw_observed_start(struct gw_observed *o, const struct gw_resource *r)
{
	memset(o, 0, sizeof(*o));
	o->kind = r->kind;
	o->name = gw_xstrdup(r->name);
	memcpy(o->spec_hash, r->spec_hash, sizeof(o->spec_hash));
	o->canonical = gw_xstrdup(r->canonical);
	o->state = GW_STATE_RUNNING;
	o->restart = r->restart;
	o->started_at = gw_now_ms() / 1000;
	if (r->depends_on.n) {
		o->depends_on.v = gw_xcalloc(r->depends_on.n + 1, sizeof(char *));
		for (size_t i = 0; i < r->depends_on.n; i++)
			o->depends_on.v[o->depends_on.n++] = gw_xstrdup(r->depends_on.v[i]);
	}
}
