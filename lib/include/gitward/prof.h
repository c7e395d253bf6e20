/* Phase timings for the benchmarks: with GW_PROFILE=1 in the environment,
 * the wall time spent in each named phase (and how often it ran) is printed
 * to stderr when the process exits; GW_PROFILE=cpu counts the process's CPU
 * time instead. Off, a timer costs one branch. */
#ifndef GITWARD_PROF_H
#define GITWARD_PROF_H

#include <stdint.h>

extern int gw_prof__state; /* -1 not yet looked at, 0 off, 1 on */
int gw_prof__init(void);
int64_t gw_prof__now(void);
/* Add ns to phase (a string literal) */
void gw_prof_add(const char *phase, int64_t ns);

static inline int gw_prof_enabled(void)
{
	return gw_prof__state > 0 || (gw_prof__state < 0 && gw_prof__init());
}

#define GW_PROF_BEGIN(v) int64_t gw_prof_t_##v = gw_prof_enabled() ? gw_prof__now() : 0
#define GW_PROF_END(v, phase)                                                                                          \
	do {                                                                                                           \
		if (gw_prof_t_##v)                                                                                     \
			gw_prof_add(phase, gw_prof__now() - gw_prof_t_##v);                                            \
	} while (0)

#endif
