/* The floor for the dry-run benchmark: read the same manifest bytes from disk
 * and run libyaml's event parser over them, nothing else. */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>

#include "gitward/util.h"

static size_t events, files;

static void parse(const char *path)
{
	char *data;
	size_t len;
	struct gw_error err;
	yaml_parser_t p;
	yaml_event_t ev;

	if (gw_file_read(&data, &len, path, 1u << 20, &err) < 0)
		return;
	yaml_parser_initialize(&p);
	yaml_parser_set_input_string(&p, (const unsigned char *)data, len);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev))
			break;
		int end = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		events++;
		if (end)
			break;
	}
	yaml_parser_delete(&p);
	free(data);
	files++;
}

static void walk(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[4096];
		struct stat st;
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (lstat(path, &st) < 0)
			continue;
		if (S_ISDIR(st.st_mode))
			walk(path);
		else if (S_ISREG(st.st_mode) && strstr(de->d_name, ".yaml"))
			parse(path);
	}
	closedir(d);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		walk(argv[i]);
	printf("%zu files, %zu events\n", files, events);
	return 0;
}
