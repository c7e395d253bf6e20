/* Runs a fuzz target over every file of its corpus as an ordinary test, so
 * the seeds (and any crash found once) are checked on every build. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gitward/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
	size_t n = 0;
	for (int i = 1; i < argc; i++) {
		DIR *d = opendir(argv[i]);
		struct dirent *de;
		if (!d) {
			fprintf(stderr, "replay: cannot open %s\n", argv[i]);
			return 1;
		}
		while ((de = readdir(d))) {
			char path[4096];
			char *data;
			size_t len;
			struct gw_error err;
			if (de->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
			if (gw_file_read(&data, &len, path, 1u << 22, &err) < 0)
				continue;
			LLVMFuzzerTestOneInput((const uint8_t *)data, len);
			free(data);
			n++;
		}
		closedir(d);
	}
	printf("replayed %zu inputs\n", n);
	return n ? 0 : 1;
}
