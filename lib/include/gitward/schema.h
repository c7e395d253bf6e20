/* The manifest schema as data: one table drives validation (lib/manifest),
 * the canonical form and the spec hash (lib/model), so they cannot drift. */
#ifndef GITWARD_SCHEMA_H
#define GITWARD_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "gitward/resource.h"

enum gw_ftype {
	GW_F_STR,
	GW_F_STRLIST,
	GW_F_STRMAP,
	GW_F_DURATION, /* int64 ms */
	GW_F_SIZE, /* int64 bytes */
	GW_F_INT, /* int64 */
	GW_F_CPUS, /* int64 milli-cpus, written 0.5 */
	GW_F_ENUM, /* int */
	GW_F_SIGNAL, /* int */
	GW_F_OBJECT, /* nested table */
	GW_F_JSON, /* char *: any YAML value as canonical JSON (scalars as strings) */
};

#define GW_KMASK(k) (1u << (k))
#define GW_K_ALL                                                                                                       \
	(GW_KMASK(GW_KIND_PROCESS) | GW_KMASK(GW_KIND_CONTAINER) | GW_KMASK(GW_KIND_VM) | GW_KMASK(GW_KIND_EXTERNAL))

/* field flags */
#define GW_FF_NOHASH 0x1u /* placement only: not part of the spec hash */
#define GW_FF_NONEMPTY 0x2u /* lists/strings must not be empty */

struct gw_enum_name {
	const char *name;
	int value;
};

/* Extra check of one string value: returns NULL when fine, else what was
 * expected (used as `expected <that>, got "<value>"`). */
typedef const char *(*gw_fcheck)(const char *value);

struct gw_field {
	const char *name;
	enum gw_ftype type;
	size_t offset;
	unsigned kinds; /* kinds this field is valid for */
	unsigned required_kinds; /* kinds this field is required for */
	unsigned flags;
	int64_t min, max; /* numeric bounds (inclusive) when max > 0 */
	int64_t defval; /* a value equal to the default is stored as 0 */
	const struct gw_enum_name *enums; /* GW_F_ENUM / value names, NULL-terminated */
	const struct gw_field *sub; /* GW_F_OBJECT, terminated by name == NULL */
	gw_fcheck check; /* per string (or list item / map value) */
	gw_fcheck key_check; /* GW_F_STRMAP keys */
};

extern const struct gw_field gw_schema_spec[];
extern const struct gw_field gw_schema_metadata[];

const char *gw_check_name(const char *v);
/* NULL when v is a valid label key, else what one looks like. */
const char *gw_check_label_key(const char *v);
/* The JSON Schema of manifests, generated from the tables (caller frees). */
char *gw_schema_json(void);
const char *gw_enum_name(const struct gw_enum_name *e, int value);

#endif
