/* Operator controls without a Git commit (`gitward suspend`, `resume`,
 * `restart`): requests kept as files in STATE/control, read by every pass.
 *
 *   STATE/control/suspend              {"reason": "...", "since": "RFC3339"}
 *   STATE/control/restart/KIND.NAME    {"requested": "RFC3339"}
 *
 * The dirs are 0700; nothing in them is followed through a symlink; every
 * file is written atomically and read back bounded and validated. */
#ifndef GITWARD_CONTROL_H
#define GITWARD_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#include "gitward/resource.h"
#include "gitward/util.h"

#define GW_CONTROL_REASON_MAX 512

struct gw_suspend {
	bool on;
	char reason[GW_CONTROL_REASON_MAX]; /* as given, unescaped: escape when printed */
	char since[32]; /* RFC 3339, UTC */
};

struct gw_restart_req {
	enum gw_kind kind;
	char name[128];
};

/* STATE/control and STATE/control/restart (buf of size). */
char *gw_path_control(char *buf, size_t size, const char *state_dir);
char *gw_path_control_restart(char *buf, size_t size, const char *state_dir);

/* Make STATE/control and STATE/control/restart (0700), refusing a symlink
 * or a non-directory in their place. */
int gw_control_dirs(const char *state_dir, struct gw_error *err);

/* Suspend with reason (may be ""), since now. */
int gw_control_suspend(const char *state_dir, const char *reason, struct gw_error *err);
/* Remove the suspension; *was: there was one. */
int gw_control_resume(const char *state_dir, bool *was, struct gw_error *err);
/* out->on false when none; an unreadable or invalid file is an error (and
 * counts as suspended: on stays true, reason says why). */
int gw_control_suspend_read(struct gw_suspend *out, const char *state_dir, struct gw_error *err);

/* Request a restart of KIND/NAME. */
int gw_control_restart_request(const char *state_dir, enum gw_kind kind, const char *name, struct gw_error *err);
/* The pending restart requests (valid names only; others logged and
 * skipped). *out freed by the caller. */
int gw_control_restart_list(struct gw_restart_req **out, size_t *n, const char *state_dir, struct gw_error *err);
/* The request for KIND/NAME is done. */
void gw_control_restart_done(const char *state_dir, enum gw_kind kind, const char *name);

/* st's suspension as the file says now (a status read between passes, or
 * without an agent). */
struct gw_state_file;
void gw_control_overlay(struct gw_state_file *st, const char *state_dir);

#endif
