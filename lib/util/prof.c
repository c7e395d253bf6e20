/* GW_PROFILE=1: phase timings printed to stderr at exit (see gitward/prof.h). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gitward/prof.h"

int gw_prof__state = -1;

#define PHASES_MAX 32

static struct {
	const char *name;
	int64_t ns;
	unsigned long calls;
} phases[PHASES_MAX];
static size_t nphases;
static int64_t started;

static clockid_t clock_id = CLOCK_MONOTONIC;

int64_t gw_prof__now(void)
{
	struct timespec ts;
	clock_gettime(clock_id, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void report(void)
{
	int64_t total = gw_prof__now() - started;
	fprintf(stderr, "gitward profile: %-28s %9s %8s\n", "phase", clock_id == CLOCK_MONOTONIC ? "ms" : "ms CPU",
		"calls");
	for (size_t i = 0; i < nphases; i++)
		fprintf(stderr, "gitward profile: %-28s %9.2f %8lu\n", phases[i].name, (double)phases[i].ns / 1e6,
			phases[i].calls);
	fprintf(stderr, "gitward profile: %-28s %9.2f\n", "total (first timer to exit)", (double)total / 1e6);
}

int gw_prof__init(void)
{
	const char *v = getenv("GW_PROFILE");
	gw_prof__state = v && *v && strcmp(v, "0") != 0;
	if (gw_prof__state && strcmp(v, "cpu") == 0)
		clock_id = CLOCK_PROCESS_CPUTIME_ID; /* this process's CPU time, not a child's */
	if (gw_prof__state) {
		started = gw_prof__now();
		atexit(report);
	}
	return gw_prof__state;
}

void gw_prof_add(const char *phase, int64_t ns)
{
	size_t i;
	for (i = 0; i < nphases; i++)
		if (phases[i].name == phase || strcmp(phases[i].name, phase) == 0)
			break;
	if (i == nphases) {
		if (nphases == PHASES_MAX)
			return;
		phases[nphases++].name = phase;
	}
	phases[i].ns += ns;
	phases[i].calls++;
}
