/* The one place that lists backends, by kind. The planner, apply and the
 * loop only ever go through gw_backend_for(). */
#include <stddef.h>

#include "gitward/backend.h"

static const struct gw_backend_ops *const backends[] = {
	&gw_backend_process,
	&gw_backend_container,
	&gw_backend_vm,
	&gw_backend_external, /* plugins speaking contrib/plugins/PROTOCOL.md */
	NULL,
};

const struct gw_backend_ops *gw_backend_for(enum gw_kind kind)
{
	for (size_t i = 0; backends[i]; i++)
		if (backends[i]->kind == kind)
			return backends[i];
	return NULL;
}
