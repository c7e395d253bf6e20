/* The operator's pin (`gitward rollback`): the node applies an earlier
 * commit instead of its ref's tip, kept as a file beside the other controls
 * (gitward/control.h):
 *
 *   STATE/control/pin   {"commit", "reason", "since", "tip"}
 *
 * tip is the ref's tip when the pin was made: the pin ends when a fetch
 * sees the ref at another commit (or on `rollback --clear`). Written
 * atomically, never followed through a symlink, read back bounded and
 * validated. */
#ifndef GITWARD_PIN_H
#define GITWARD_PIN_H

#include <stdbool.h>

#include "gitward/control.h"

struct gw_pin {
	bool on;
	char commit[41];
	char reason[GW_CONTROL_REASON_MAX]; /* as given: escape when printed */
	char since[32]; /* RFC 3339, UTC */
	char tip[41]; /* "" when no tip was known */
};

/* Pin state_dir to commit (40 hex), made while the ref stood at tip (40 hex
 * or ""), with reason (may be ""), since now. */
int gw_pin_write(const char *state_dir, const char *commit, const char *tip, const char *reason, struct gw_error *err);
/* Remove the pin; *was: there was one. */
int gw_pin_clear(const char *state_dir, bool *was, struct gw_error *err);
/* out->on false when none. A file that is not a valid pin fails (-EBADMSG,
 * err names it) with out->on false: the node follows its ref. */
int gw_pin_read(struct gw_pin *out, const char *state_dir, struct gw_error *err);

/* st's pinned_* as the pin file says now (status, GET /status, metrics). */
struct gw_state_file;
void gw_pin_overlay(struct gw_state_file *st, const char *state_dir);

#endif
